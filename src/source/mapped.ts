/**
 * source/mapped: a Source that reads other paths than the ones a snapshot records. A backup of a
 * btrfs snapshot records the sources' own paths while it reads the snapshot; a node agent records
 * `/volume` while it reads the kubelet's mount of a PersistentVolume.
 */
import type { Source } from './index.ts';

/** A Source reading `map`'s targets for paths below its keys (longest key first). */
export function mappedSource(inner: Source, map: [string, string][], kind: string): Source {
  const pairs = map.map(([from, to]) => [Buffer.from(from), Buffer.from(to)] as const).sort((a, b) => b[0].length - a[0].length);
  const to = (p: Buffer): Buffer => {
    for (const [f, t] of pairs) {
      if (p.length >= f.length && p.subarray(0, f.length).equals(f) && (p.length === f.length || p[f.length] === 0x2f || f.length === 1)) return Buffer.concat([t, p.subarray(f.length)]);
    }
    return p;
  };
  return {
    kind,
    lstat: (p) => inner.lstat(to(p)),
    lstatSync: (p) => inner.lstatSync(to(p)),
    readdirSync: (p) => inner.readdirSync(to(p)),
    readdir: (p) => inner.readdir(to(p)),
    readlink: (p) => inner.readlink(to(p)),
    openSync: (p) => inner.openSync(to(p)),
    open: (p) => inner.open(to(p)),
  };
}
