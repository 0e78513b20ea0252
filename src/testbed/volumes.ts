/**
 * testbed/volumes: a service's persistent volume, either a plain directory (DIR/volumes/NAME) or
 * a loop-mounted btrfs filesystem: a sparse image DIR/btrfs/NAME.img (truncate + mkfs.btrfs),
 * mounted at DIR/btrfs/NAME, whose data lives in the subvolume DIR/btrfs/NAME/NAME (so that a
 * read-only snapshot of it can be taken at any moment, as a CSI VolumeSnapshot would). The
 * subvolume is named like the volume so that a backup of several volumes shows one entry per
 * volume by its name.
 */
import { existsSync, promises as fsp, readFileSync, statfsSync } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError, errMessage } from '../errors/index.ts';
import { run } from '../bench/measure.ts';
import { sleep } from './procs.ts';
import { paths } from './state.ts';
import type { VolumeKind, VolumeRecord } from './state.ts';

const MiB = 1024 * 1024;

/** Runs a command; a failure is a MeshbackError naming the command and its last output line. */
async function sh(argv: string[]): Promise<string> {
  try {
    return (await run(argv)).stdout;
  } catch (err) {
    throw new MeshbackError('INTERNAL', errMessage(err).split('\n')[0]!);
  }
}

export async function createVolume(dir: string, name: string, kind: VolumeKind, sizeBytes: number): Promise<VolumeRecord> {
  const p = paths(dir);
  if (kind === 'dir') {
    const vpath = path.join(p.volumes, name);
    await fsp.mkdir(vpath, { recursive: true, mode: 0o755 });
    await fsp.chmod(vpath, 0o755);
    return { name, kind, path: vpath };
  }
  if (sizeBytes < 128 * MiB) throw new MeshbackError('USAGE', `a btrfs volume needs at least 128 MiB (--volume-size ${Math.floor(sizeBytes / MiB)}MiB is too small)`);
  await fsp.mkdir(p.btrfs, { recursive: true, mode: 0o755 });
  const image = path.join(p.btrfs, `${name}.img`);
  const mount = path.join(p.btrfs, name);
  const rec: VolumeRecord = { name, kind, path: path.join(mount, name), image, mount };
  await sh(['truncate', '-s', String(Math.ceil(sizeBytes / MiB) * MiB), image]);
  await sh(['mkfs.btrfs', '-q', '-f', '-L', `tb-${name}`.slice(0, 255), image]);
  await mountVolume(rec);
  await sh(['btrfs', 'subvolume', 'create', rec.path]);
  await fsp.chmod(rec.path, 0o755);
  return rec;
}

/** Is `dir` a mount point (listed in /proc/self/mountinfo)? */
export function isMountPoint(dir: string): boolean {
  try {
    const want = path.resolve(dir);
    return readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .some((l) => l.split(' ')[4]?.replace(/\\040/g, ' ') === want);
  } catch {
    return false;
  }
}

/** Mounts a btrfs volume's image (no-op when mounted, or for a directory volume). */
export async function mountVolume(v: VolumeRecord): Promise<void> {
  if (v.kind !== 'btrfs' || v.mount === undefined || v.image === undefined) return;
  if (isMountPoint(v.mount)) return;
  if (!existsSync(v.image)) throw new MeshbackError('NOT_FOUND', `the image ${v.image} of volume ${v.name} is gone (thrown away by a node outage?): restore the volume and run 'meshback testbed verify --volumes DIR'`);
  await fsp.mkdir(v.mount, { recursive: true, mode: 0o755 });
  await sh(['mount', '-o', 'loop', v.image, v.mount]);
}

/** Unmounts a btrfs volume and detaches its loop device; safe to call when not mounted. */
export async function unmountVolume(v: VolumeRecord): Promise<string | undefined> {
  if (v.kind !== 'btrfs' || v.mount === undefined) return undefined;
  let problem: string | undefined;
  if (isMountPoint(v.mount)) {
    let done = false;
    let last = '';
    for (let i = 0; i < 30 && !done; i++) {
      try {
        await run(['umount', v.mount]);
        done = true;
      } catch (err) {
        last = errMessage(err).split('\n')[0]!;
        await sleep(100); // busy for a moment: a process of the volume is still exiting
      }
    }
    if (!done) {
      try {
        await run(['umount', '-l', v.mount]);
        problem = `${v.mount} was busy (${last}): detached lazily`;
      } catch (err) {
        return `cannot unmount ${v.mount}: ${errMessage(err).split('\n')[0]}`;
      }
    }
  }
  if (v.image !== undefined && existsSync(v.image)) {
    // mount -o loop sets autoclear; detach explicitly whatever still holds the image
    try {
      const { stdout } = await run(['losetup', '-j', v.image]);
      for (const l of stdout.split('\n')) {
        const dev = l.split(':')[0];
        if (dev !== undefined && dev.startsWith('/dev/')) await run(['losetup', '-d', dev]).catch(() => undefined);
      }
    } catch {
      /* nothing attached */
    }
  }
  return problem;
}

/** Unmounts (btrfs) and deletes a volume with everything on it: the node-outage fault. */
export async function destroyVolume(v: VolumeRecord): Promise<void> {
  const problem = await unmountVolume(v);
  if (problem !== undefined && v.mount !== undefined && isMountPoint(v.mount)) throw new MeshbackError('INTERNAL', problem);
  if (v.kind === 'btrfs') {
    if (v.image !== undefined) await fsp.rm(v.image, { force: true });
    if (v.mount !== undefined) await fsp.rm(v.mount, { recursive: true, force: true });
  } else {
    await fsp.rm(v.path, { recursive: true, force: true });
  }
}

/** Free bytes of the filesystem holding the volume (bavail: what a non-root writer can use). */
export function volumeFree(v: VolumeRecord): number {
  const s = statfsSync(v.path);
  return s.bavail * s.bsize;
}

/**
 * A point-in-time read-only view of the volume. btrfs: `btrfs subvolume snapshot -r` into
 * MOUNT/.snapshots/NAME-<time> (named like the volume, so a backup of it shows the volume's name;
 * release() deletes it). Directory volumes have no snapshots: the live path itself
 * (crash-inconsistent), release() does nothing.
 */
export async function snapshotVolume(v: VolumeRecord): Promise<{ path: string; atomic: boolean; release(): Promise<void> }> {
  if (v.kind !== 'btrfs' || v.mount === undefined) return { path: v.path, atomic: false, release: async () => undefined };
  const parent = path.join(v.mount, '.snapshots', `${Date.now()}-${process.pid}`);
  await fsp.mkdir(parent, { recursive: true, mode: 0o755 });
  const snap = path.join(parent, v.name);
  await sh(['btrfs', 'subvolume', 'snapshot', '-r', v.path, snap]);
  return {
    path: snap,
    atomic: true,
    async release() {
      await sh(['btrfs', 'subvolume', 'delete', snap]);
      await fsp.rm(parent, { recursive: true, force: true });
    },
  };
}
