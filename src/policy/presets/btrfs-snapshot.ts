/**
 * The btrfs-snapshot preset: the backup reads a read-only snapshot of the btrfs subvolume(s)
 * holding the policy's sources, one point in time (a database on it restores as after a power
 * cut: crash recovery makes it consistent), and records the files under their original paths
 * (a Source that maps them), so `ls` and `restore` show the sources as they are named.
 *
 * start:  for each subvolume holding a source (the topmost directory above it on the same device;
 *         its inode is 256), `btrfs subvolume snapshot -r SUBVOL DIR/meshback-POLICY-TIME-PID-N`,
 *         DIR being `snapshot-dir` or, by default, .meshback-snapshots in the directory above the
 *         subvolume when that is on the same filesystem, else in the subvolume itself (and then
 *         left out of the backup). Snapshots of this policy left behind by a run that was killed
 *         (their PID is no longer running) are deleted first.
 * finish: the snapshots are deleted (also when the backup failed; and by an 'exit' hook when
 *         meshback is interrupted).
 *
 * Subvolumes nested inside a source are not part of its snapshot (btrfs shows them as empty
 * directories there): give them as sources of their own. Needs root (or a filesystem mounted
 * with user_subvol_rm_allowed and a user who owns the subvolume).
 */
import { execFileSync } from 'node:child_process';
import type { BigIntStats } from 'node:fs';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError, errMessage, errnoCode } from '../../errors/index.ts';
import { run, which } from '../../host/process.ts';
import { mappedSource } from '../../source/mapped.ts';
import { about, v } from '../../util/schema.ts';
import { mountOf } from '../../volumes/index.ts';
import type { PresetContext, PresetRun } from './types.ts';
import { presetType } from './types.ts';

export const BtrfsSnapshotPresetSchema = v.strictObject({
  type: v.literal('btrfs-snapshot'),
  'snapshot-dir': v.optional(about(v.pipe(v.string(), v.minLength(1)), 'where the snapshots are made, on the same btrfs filesystem (relative to the policy file; default: .meshback-snapshots beside the subvolume)')),
});
export type BtrfsSnapshotPresetConfig = v.InferOutput<typeof BtrfsSnapshotPresetSchema>;

const BTRFS_MAGIC = 0x9123683e;
const SUBVOL_INO = 256n;
const fail = (message: string): MeshbackError => new MeshbackError('HOOK', `btrfs-snapshot preset: ${message}`);
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const firstLine = (err: unknown): string => errMessage(err).split('\n')[0]!;

/** The root of the btrfs subvolume holding `p` (realpath): the topmost directory above it on its device. */
async function subvolumeOf(p: string): Promise<string> {
  const st = await fsp.stat(p, { bigint: true });
  let dir = st.isDirectory() ? p : path.dirname(p);
  let dst: BigIntStats = st.isDirectory() ? st : await fsp.stat(dir, { bigint: true });
  while (dir !== '/') {
    const up = path.dirname(dir);
    const ust = await fsp.stat(up, { bigint: true });
    if (ust.dev !== dst.dev) break;
    dir = up;
    dst = ust;
  }
  if (dst.ino !== SUBVOL_INO) throw fail(`cannot find the subvolume holding ${p} (${dir} is the top of its device but not a subvolume root)`);
  return dir;
}

/** Is process `pid` running on this host? */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

/** The btrfs-snapshot preset of one run (the factory the registry calls). */
export function btrfsSnapshotPreset(cfg: BtrfsSnapshotPresetConfig, ctx: PresetContext): PresetRun {
  const made: string[] = []; // snapshot paths, to delete
  const map: [string, string][] = []; // source -> its path in a snapshot
  const omit: string[] = [];
  let deleteOnExit: (() => void) | undefined;
  const note = (message: string): void => ctx.events({ type: 'note', op: 'run', subject: 'preset btrfs-snapshot', message });
  const nameRe = new RegExp(`^meshback-${escapeRe(ctx.policy)}-\\d{8}T\\d{6}Z-(\\d+)-\\d+$`);

  const remove = async (snap: string): Promise<void> => {
    await run(['btrfs', 'subvolume', 'delete', snap]);
  };

  return {
    name: 'btrfs-snapshot',
    omit,

    async start() {
      if ((await which('btrfs')) === undefined) throw fail('the btrfs program is not installed: install the Debian package btrfs-progs');
      // the subvolume of each source
      const groups = new Map<string, string[]>();
      for (const s of ctx.sources) {
        let real: string;
        try {
          real = await fsp.realpath(s);
        } catch (err) {
          throw fail(`cannot read the source ${s} (${firstLine(err)})`);
        }
        const fs = await fsp.statfs(real);
        if (fs.type !== BTRFS_MAGIC) throw fail(`the source ${s} is not on a btrfs filesystem (it is on ${mountOf(real)?.fstype ?? 'another filesystem'}): drop the preset, or keep the data on a btrfs subvolume`);
        const sub = await subvolumeOf(real);
        groups.set(sub, [...(groups.get(sub) ?? []), s]);
        if (real !== s) map.push([s, real]); // a source given through a symlink
      }
      const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
      let i = 0;
      for (const [sub, srcs] of groups) {
        let dir: string;
        if (cfg['snapshot-dir'] !== undefined) dir = cfg['snapshot-dir'];
        else {
          const up = path.dirname(sub);
          dir = sub !== '/' && mountOf(up)?.dev === mountOf(sub)?.dev && (await fsp.statfs(up)).type === BTRFS_MAGIC ? path.join(up, '.meshback-snapshots') : path.join(sub, '.meshback-snapshots');
        }
        await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
        // leftovers of this policy from runs that were killed
        for (const n of await fsp.readdir(dir)) {
          const m = nameRe.exec(n);
          if (m === null || alive(Number(m[1]))) continue;
          try {
            await remove(path.join(dir, n));
            note(`deleted ${path.join(dir, n)}, a snapshot left behind by a run that was killed`);
          } catch (err) {
            throw fail(`cannot delete ${path.join(dir, n)}, left behind by a killed run (${firstLine(err)}): delete it with btrfs subvolume delete`);
          }
        }
        const snap = path.join(dir, `meshback-${ctx.policy}-${stamp}-${process.pid}-${i++}`);
        try {
          await run(['btrfs', 'subvolume', 'snapshot', '-r', sub, snap]);
        } catch (err) {
          throw fail(`btrfs subvolume snapshot -r ${sub} failed (${firstLine(err).replace(/^.*?: /, '')}): run meshback as root; snapshot-dir must be on the same btrfs filesystem`);
        }
        made.push(snap);
        if (deleteOnExit === undefined) {
          deleteOnExit = (): void => {
            for (const x of made.splice(0)) {
              try {
                execFileSync('btrfs', ['subvolume', 'delete', x], { stdio: 'ignore' });
              } catch {
                // the next run deletes it
              }
            }
          };
          process.on('exit', deleteOnExit);
        }
        for (const s of srcs) {
          const real = map.find(([f]) => f === s)?.[1] ?? s;
          map.push([s, path.join(snap, path.relative(sub, real))]);
          if (dir.startsWith(`${s}/`) || (s === '/' && dir !== '/')) omit.push(dir);
        }
        note(`snapshot ${snap} of ${sub}`);
      }
    },

    source(inner) {
      // the symlink entries (source -> its real path) are superseded by the snapshot's
      const bySource = new Map<string, string>();
      for (const [f, t] of map) bySource.set(f, t);
      return mappedSource(inner, [...bySource.entries()], `btrfs snapshot of the ${inner.kind}`);
    },

    async finish(ok) {
      if (deleteOnExit !== undefined) process.off('exit', deleteOnExit);
      deleteOnExit = undefined;
      const problems: string[] = [];
      for (const snap of made.splice(0)) {
        try {
          await remove(snap);
          note(`deleted ${snap}`);
        } catch (err) {
          problems.push(`${snap} (${firstLine(err)})`);
        }
      }
      if (ok && problems.length > 0) throw fail(`cannot delete the snapshot ${problems[0]}: the next run deletes it, or delete it with btrfs subvolume delete`);
    },
  };
}

export const btrfsSnapshot = presetType({
  type: 'btrfs-snapshot',
  schema: BtrfsSnapshotPresetSchema,
  resolve(cfg, r) {
    return cfg['snapshot-dir'] !== undefined ? { ...cfg, 'snapshot-dir': path.resolve(r.dir, cfg['snapshot-dir']) } : cfg;
  },
  create: btrfsSnapshotPreset,
});
