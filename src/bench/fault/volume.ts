/**
 * bench/fault/volume: the volumes a fault-tolerance scenario runs on (see types.ts Volume).
 *
 * - 'dir': a plain directory on the work directory's filesystem. snapshot() returns the live path
 *   (a crash-inconsistent view: the tool reads files while they change); release is a no-op;
 *   destroy() removes the directory.
 * - 'btrfs': a sparse image file, formatted with mkfs.btrfs and loop-mounted (`mount -o loop`) on
 *   a mount point next to it; the data lives in the subvolume `data` of that filesystem.
 *   snapshot() = `btrfs subvolume snapshot -r` (a point-in-time, read-only view, as a CSI
 *   VolumeSnapshot gives), release = `btrfs subvolume delete`; destroy() = umount, detach the loop
 *   device, delete the image. free() is statfs of the mounted filesystem.
 *
 * Every mounted volume is recorded in a process-wide table until it is destroyed. If the process
 * ends first (an error, SIGINT/SIGTERM through process.exit), an 'exit' hook unmounts (lazily) and
 * detaches whatever is still mounted, synchronously, so no mount outlives the benchmark.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { aptInstall, isRoot, run, which } from '../measure.ts';
import type { Volume, VolumeKind } from './types.ts';

const MiB = 1024 * 1024;

export interface VolumeOptions {
  /** btrfs: the size of the filesystem image in bytes (sparse; at least 128 MiB) */
  imageBytes?: number;
}

/** Mounted btrfs volumes not yet destroyed: mount point -> image. */
const mounted = new Map<string, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', unmountAllSync);
}

/** Unmount (lazily) and detach every volume still mounted, synchronously (for exit paths). */
export function unmountAllSync(): void {
  for (const [mnt, image] of mounted) {
    try {
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    detachSync(image);
  }
  mounted.clear();
}

function detachSync(image: string): void {
  try {
    const out = execFileSync('losetup', ['-j', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const dev of loopDevices(out)) execFileSync('losetup', ['-d', dev], { stdio: 'ignore' });
  } catch {
    // nothing attached, or losetup missing
  }
}

/** The devices in `losetup -j IMAGE` output ("/dev/loop0: [65024]:123 (/path/img)"). */
function loopDevices(out: string): string[] {
  return out
    .split('\n')
    .map((l) => /^(\/dev\/loop\d+):/.exec(l)?.[1])
    .filter((d): d is string => d !== undefined);
}

async function detach(image: string): Promise<void> {
  let out: string;
  try {
    out = (await run(['losetup', '-j', image])).stdout;
  } catch {
    return;
  }
  for (const dev of loopDevices(out)) {
    try {
      await run(['losetup', '-d', dev]);
    } catch {
      // detached meanwhile (autoclear)
    }
  }
}

/** Bytes available to an unprivileged writer on the filesystem holding `p`. */
export async function freeBytes(p: string): Promise<number> {
  const s = await fsp.statfs(p);
  return Number(s.bavail) * Number(s.bsize);
}

/** A plain directory volume at `dir/data` (made fresh). */
export async function dirVolume(dir: string): Promise<Volume> {
  const data = path.join(dir, 'data');
  await fsp.rm(data, { recursive: true, force: true });
  await fsp.mkdir(data, { recursive: true });
  let destroyed = false;
  return {
    kind: 'dir',
    path: data,
    free: () => freeBytes(data),
    async snapshot() {
      if (destroyed) throw new Error(`volume ${data} was destroyed`);
      return { path: data, release: async () => {} };
    },
    async destroy() {
      destroyed = true;
      await fsp.rm(data, { recursive: true, force: true });
    },
  };
}

/** The image size for a data set of `dataBytes`: room for the data, the workload and a restore. */
export function btrfsImageBytes(dataBytes: number): number {
  return Math.max(256 * MiB, Math.ceil((2 * dataBytes + 128 * MiB) / MiB) * MiB);
}

/**
 * A btrfs volume in `dir`: `dir/volume.img` mounted on `dir/mnt`, data in the subvolume
 * `dir/mnt/data`. Needs root, mkfs.btrfs, btrfs and loop devices (see btrfsSupport()).
 */
export async function btrfsVolume(dir: string, opts: VolumeOptions = {}): Promise<Volume> {
  const image = path.join(dir, 'volume.img');
  const mnt = path.join(dir, 'mnt');
  const data = path.join(mnt, 'data');
  const bytes = Math.max(128 * MiB, opts.imageBytes ?? 256 * MiB);
  await fsp.mkdir(dir, { recursive: true });
  if (mounted.has(mnt)) throw new Error(`a volume is already mounted on ${mnt}`);
  await fsp.rm(image, { force: true });
  await fsp.rm(mnt, { recursive: true, force: true });
  await fsp.mkdir(mnt);
  await run(['truncate', '-s', String(bytes), image]);
  await run(['mkfs.btrfs', '-q', '-f', image]);
  installExitHook();
  mounted.set(mnt, image);
  try {
    await run(['mount', '-o', 'loop', image, mnt]);
    await run(['btrfs', 'subvolume', 'create', data]);
  } catch (err) {
    await unmount(mnt, image);
    throw err;
  }
  const live = new Set<string>();
  let seq = 0;
  let destroyed = false;
  return {
    kind: 'btrfs',
    path: data,
    image,
    free: () => freeBytes(data),
    async snapshot() {
      if (destroyed) throw new Error(`volume ${data} was destroyed`);
      // the first snapshot is always at the same path, so that the tools see one source path
      // from backup to backup (restic and borg find their parent by path)
      const name = live.has('snapshot') ? `snapshot-${++seq}` : 'snapshot';
      const snap = path.join(mnt, name);
      await run(['btrfs', 'subvolume', 'snapshot', '-r', data, snap]);
      live.add(name);
      return {
        path: snap,
        async release() {
          if (!live.has(name) || destroyed) return;
          try {
            await run(['btrfs', 'subvolume', 'delete', snap]);
          } finally {
            live.delete(name); // only now may a new snapshot take this path
          }
        },
      };
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      await unmount(mnt, image);
      await fsp.rm(image, { force: true });
      await fsp.rm(mnt, { recursive: true, force: true });
    },
  };
}

async function unmount(mnt: string, image: string): Promise<void> {
  try {
    await run(['umount', mnt]);
  } catch {
    // busy (a process still has a file open) or not mounted: detach it from the tree now, the
    // kernel finishes when the last user goes
    try {
      await run(['umount', '-l', mnt]);
    } catch {
      // not mounted
    }
  }
  await detach(image);
  mounted.delete(mnt);
}

/** Make a fresh volume of `kind` in `dir`. */
export function createVolume(kind: VolumeKind, dir: string, opts: VolumeOptions = {}): Promise<Volume> {
  return kind === 'btrfs' ? btrfsVolume(dir, opts) : dirVolume(dir);
}

/** Mount points of btrfs volumes this process has mounted and not yet destroyed. */
export function mountedVolumes(): string[] {
  return [...mounted.keys()];
}

/**
 * Can btrfs volumes be made here? Installs btrfs-progs with apt-get when root and `install` is
 * set, then makes, snapshots and destroys a small volume in `probeDir`. Returns true, or the reason
 * (one line) the snapshot strategy cannot run.
 */
export async function btrfsSupport(probeDir: string, install: boolean): Promise<true | string> {
  if (!isRoot()) return 'btrfs volumes need root (mkfs.btrfs and a loop mount): run the benchmark as root';
  const missing = async () => (await which('mkfs.btrfs')) === undefined || (await which('btrfs')) === undefined;
  if (await missing()) {
    if (!install) return 'mkfs.btrfs/btrfs missing (Debian package btrfs-progs) and installation is off (--no-install)';
    const err = await aptInstall(['btrfs-progs']);
    if (err !== undefined) return `mkfs.btrfs/btrfs missing and apt-get install btrfs-progs failed: ${err.split('\n')[0]}`;
    if (await missing()) return 'mkfs.btrfs/btrfs missing although btrfs-progs was installed';
  }
  let v: Volume | undefined;
  try {
    v = await btrfsVolume(probeDir, { imageBytes: 128 * MiB });
    await fsp.writeFile(path.join(v.path, 'probe'), 'probe');
    const s = await v.snapshot();
    await fsp.readFile(path.join(s.path, 'probe'));
    await s.release();
    return true;
  } catch (err) {
    const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
    return `cannot make a loop-mounted btrfs volume here: ${msg}`;
  } finally {
    await v?.destroy().catch(() => {});
    await fsp.rm(probeDir, { recursive: true, force: true }).catch(() => {});
  }
}
