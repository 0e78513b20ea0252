/**
 * volumes: the one place that makes, mounts, snapshots and throws away the volumes a backup reads
 * from. Today two kinds:
 *
 * - 'dir': a plain directory. Its snapshot is the live path itself (crash-inconsistent: files
 *   change while they are read; `atomic: false`); release does nothing.
 * - 'btrfs': a sparse image file (truncate + mkfs.btrfs) loop-mounted (`mount -o loop`) on a mount
 *   point, the data in the subvolume MOUNT/NAME (named like the volume, so a backup of a snapshot
 *   shows the volume's name). snapshot() is `btrfs subvolume snapshot -r` into
 *   MOUNT/.snapshots/SLOT/NAME: a point-in-time, read-only view, as a CSI VolumeSnapshot gives
 *   (`atomic: true`); release deletes it. SLOT is the lowest free number, claimed with mkdir (so
 *   two processes never share one, and a tool that finds its parent snapshot by path sees the same
 *   path from backup to backup when each snapshot is released before the next).
 *
 * A volume is described by a VolumeSpec (plain data: what a testbed keeps in its state file) and
 * handled through a Volume, which openVolume() makes from a spec. Volumes made with
 * `unmountOnExit` are recorded in a process-wide table and, if the process ends first, unmounted
 * (lazily) and detached synchronously by an 'exit' hook, so no mount outlives a benchmark.
 *
 * The CSI VolumeSnapshot adapter of the Kubernetes front end goes beside this module.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { MeshbackError, UsageError, errMessage } from '../errors/index.ts';
import { aptInstall, isRoot } from '../host/packages.ts';
import { run, which } from '../host/process.ts';

const MiB = 1024 * 1024;
/** mkfs.btrfs refuses smaller images */
export const MIN_BTRFS_BYTES = 128 * MiB;

export type VolumeKind = 'dir' | 'btrfs';

/** A volume as plain data. btrfs: `path` is MOUNT/NAME, the subvolume holding the data. */
export interface VolumeSpec {
  name: string;
  kind: VolumeKind;
  path: string;
  /** btrfs: the loop-mounted image file (the "block device" a corruption fault may damage) */
  image?: string;
  /** btrfs: where the image is mounted */
  mount?: string;
}

/** A point-in-time view of a volume to back up from. */
export interface PointInTime {
  path: string;
  /** true: a real snapshot (btrfs); false: the live path (crash-inconsistent) */
  atomic: boolean;
  release(): Promise<void>;
}

export interface Volume extends VolumeSpec {
  /** bytes a non-root writer may still use on the volume's filesystem (statfs bavail) */
  free(): Promise<number>;
  snapshot(): Promise<PointInTime>;
  /** btrfs: mount the image on its mount point (no-op when mounted); dir: nothing */
  attach(): Promise<void>;
  /** btrfs: unmount and detach the loop device (retrying while busy, then lazily); returns a problem worth reporting */
  detach(): Promise<string | undefined>;
  /** unmount and delete everything on the volume (the node-outage fault, or the end of a run) */
  destroy(): Promise<void>;
}

export interface CreateOptions {
  kind: VolumeKind;
  name: string;
  /** dir: the directory (made if missing; `fresh` empties it); btrfs: the folder holding NAME.img and the mount point NAME */
  dir: string;
  /** btrfs: the image size in bytes (sparse; at least MIN_BTRFS_BYTES) */
  sizeBytes?: number;
  /** dir: start from an empty directory */
  fresh?: boolean;
  /** unmount and detach when this process exits (benchmarks); a testbed's volumes outlive the process that made them */
  unmountOnExit?: boolean;
}

/** Mounted btrfs volumes with unmountOnExit not yet destroyed: mount point -> image. */
const mounted = new Map<string, string>();
let exitHookInstalled = false;

/** Runs a command; a failure is a MeshbackError naming the command and its last output line. */
async function sh(argv: string[]): Promise<string> {
  try {
    return (await run(argv)).stdout;
  } catch (err) {
    throw new MeshbackError('INTERNAL', errMessage(err).split('\n')[0]!);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

/** A mount of /proc/self/mountinfo: where, its filesystem's device (major:minor, one per filesystem: every bind mount and btrfs subvolume of one filesystem shares it), type and source. */
export interface MountInfo {
  mountPoint: string;
  dev: string;
  fstype: string;
  source: string;
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The mounts of this process's mount namespace (the last of several on one point is the visible one). */
export function mounts(): MountInfo[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: MountInfo[] = [];
  for (const l of text.split('\n')) {
    const f = l.split(' ');
    const dash = f.indexOf('-');
    if (f.length < 10 || dash < 0) continue;
    out.push({ mountPoint: unescapeMount(f[4]!), dev: f[2]!, fstype: f[dash + 1]!, source: unescapeMount(f[dash + 2]!) });
  }
  return out;
}

/** The mount holding the absolute, symlink-free path `p` (the one with the longest mount point above it). */
export function mountOf(p: string): MountInfo | undefined {
  let best: MountInfo | undefined;
  for (const m of mounts()) {
    const under = m.mountPoint === '/' || p === m.mountPoint || p.startsWith(`${m.mountPoint}/`);
    if (under && (best === undefined || m.mountPoint.length >= best.mountPoint.length)) best = m;
  }
  return best;
}

/** Bytes available to an unprivileged writer on the filesystem holding `p`. */
export async function freeBytes(p: string): Promise<number> {
  const s = await fsp.statfs(p);
  return Number(s.bavail) * Number(s.bsize);
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
    return; // nothing attached, or losetup missing
  }
  // mount -o loop sets autoclear; detach explicitly whatever still holds the image
  for (const dev of loopDevices(out)) await run(['losetup', '-d', dev]).catch(() => undefined);
}

/** Unmount (lazily) and detach every unmountOnExit volume still mounted, synchronously (for exit paths). */
export function unmountAllSync(): void {
  for (const [mnt, image] of mounted) {
    try {
      execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
    } catch {
      // already gone
    }
    try {
      const out = execFileSync('losetup', ['-j', image], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      for (const dev of loopDevices(out)) execFileSync('losetup', ['-d', dev], { stdio: 'ignore' });
    } catch {
      // nothing attached, or losetup missing
    }
  }
  mounted.clear();
}

/** Mount points of unmountOnExit volumes this process has mounted and not yet destroyed. */
export function mountedVolumes(): string[] {
  return [...mounted.keys()];
}

/** A Volume over an existing volume's spec (a testbed reopening its volumes from its state). */
export function openVolume(spec: VolumeSpec, opts: { unmountOnExit?: boolean } = {}): Volume {
  let destroyed = false;
  const track = opts.unmountOnExit === true;
  const alive = (): void => {
    if (destroyed) throw new MeshbackError('INTERNAL', `volume ${spec.name} (${spec.path}) was destroyed`);
  };

  if (spec.kind === 'dir') {
    return {
      ...spec,
      free: () => freeBytes(spec.path),
      async snapshot() {
        alive();
        return { path: spec.path, atomic: false, release: async () => undefined };
      },
      attach: async () => undefined,
      detach: async () => undefined,
      async destroy() {
        destroyed = true;
        await fsp.rm(spec.path, { recursive: true, force: true });
      },
    };
  }

  const image = spec.image;
  const mnt = spec.mount;
  if (image === undefined || mnt === undefined) throw new MeshbackError('INTERNAL', `btrfs volume ${spec.name} has no image or mount point`);

  const unmount = async (): Promise<string | undefined> => {
    let problem: string | undefined;
    if (isMountPoint(mnt)) {
      let done = false;
      let last = '';
      for (let i = 0; i < 30 && !done; i++) {
        try {
          await run(['umount', mnt]);
          done = true;
        } catch (err) {
          last = errMessage(err).split('\n')[0]!;
          await sleep(100); // busy for a moment: a process of the volume is still exiting
        }
      }
      if (!done) {
        try {
          await run(['umount', '-l', mnt]);
          problem = `${mnt} was busy (${last}): detached lazily`;
        } catch (err) {
          return `cannot unmount ${mnt}: ${errMessage(err).split('\n')[0]}`;
        }
      }
    }
    if (existsSync(image)) await detach(image);
    mounted.delete(mnt);
    return problem;
  };

  return {
    ...spec,
    free: () => freeBytes(spec.path),
    async snapshot() {
      alive();
      const root = path.join(mnt, '.snapshots');
      await fsp.mkdir(root, { recursive: true, mode: 0o755 });
      let parent = '';
      for (let slot = 0; ; slot++) {
        parent = path.join(root, String(slot));
        try {
          await fsp.mkdir(parent, { mode: 0o755 });
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || slot > 10_000) throw err;
        }
      }
      const snap = path.join(parent, spec.name);
      try {
        await sh(['btrfs', 'subvolume', 'snapshot', '-r', spec.path, snap]);
      } catch (err) {
        await fsp.rm(parent, { recursive: true, force: true });
        throw err;
      }
      let released = false;
      return {
        path: snap,
        atomic: true,
        async release() {
          if (released || destroyed) return;
          released = true;
          await sh(['btrfs', 'subvolume', 'delete', snap]);
          await fsp.rm(parent, { recursive: true, force: true }); // only now may a new snapshot take this slot
        },
      };
    },
    async attach() {
      alive();
      if (isMountPoint(mnt)) return;
      if (!existsSync(image)) throw new MeshbackError('NOT_FOUND', `the image ${image} of volume ${spec.name} is gone (thrown away by a node outage?): restore the volume from a backup`);
      await fsp.mkdir(mnt, { recursive: true, mode: 0o755 });
      if (track) {
        installExitHook();
        mounted.set(mnt, image);
      }
      await sh(['mount', '-o', 'loop', image, mnt]);
    },
    detach: unmount,
    async destroy() {
      if (destroyed) return;
      const problem = await unmount();
      if (problem !== undefined && isMountPoint(mnt)) throw new MeshbackError('INTERNAL', problem);
      destroyed = true;
      await fsp.rm(image, { force: true });
      await fsp.rm(mnt, { recursive: true, force: true });
    },
  };
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', unmountAllSync);
}

/**
 * Makes a volume. dir: DIR itself. btrfs: DIR/NAME.img mounted on DIR/NAME, data in DIR/NAME/NAME.
 * btrfs needs root, mkfs.btrfs, btrfs and loop devices (see btrfsSupport()).
 */
export async function createVolume(o: CreateOptions): Promise<Volume> {
  if (o.kind === 'dir') {
    if (o.fresh === true) await fsp.rm(o.dir, { recursive: true, force: true });
    await fsp.mkdir(o.dir, { recursive: true, mode: 0o755 });
    await fsp.chmod(o.dir, 0o755);
    return openVolume({ name: o.name, kind: 'dir', path: o.dir });
  }
  const bytes = o.sizeBytes ?? 256 * MiB;
  if (bytes < MIN_BTRFS_BYTES) throw new UsageError(`a btrfs volume needs at least 128 MiB (${Math.floor(bytes / MiB)} MiB asked for volume ${o.name})`);
  await fsp.mkdir(o.dir, { recursive: true, mode: 0o755 });
  const image = path.join(o.dir, `${o.name}.img`);
  const mnt = path.join(o.dir, o.name);
  if (isMountPoint(mnt)) throw new MeshbackError('INTERNAL', `a volume is already mounted on ${mnt}`);
  await fsp.rm(image, { force: true });
  await fsp.rm(mnt, { recursive: true, force: true });
  await sh(['truncate', '-s', String(Math.ceil(bytes / MiB) * MiB), image]);
  await sh(['mkfs.btrfs', '-q', '-f', '-L', o.name.slice(0, 255), image]);
  const v = openVolume({ name: o.name, kind: 'btrfs', path: path.join(mnt, o.name), image, mount: mnt }, { unmountOnExit: o.unmountOnExit === true });
  try {
    await v.attach();
    await sh(['btrfs', 'subvolume', 'create', v.path]);
    await fsp.chmod(v.path, 0o755);
  } catch (err) {
    await v.destroy().catch(() => undefined);
    throw err;
  }
  return v;
}

/**
 * Can btrfs volumes be made here? Installs btrfs-progs with apt-get when root and `install` is
 * set, then makes, snapshots and destroys a small volume in `probeDir`. Returns true, or the reason
 * (one line) they cannot.
 */
export async function btrfsSupport(probeDir: string, install: boolean): Promise<true | string> {
  if (!isRoot()) return 'btrfs volumes need root (mkfs.btrfs and a loop mount): run as root';
  const missing = async (): Promise<boolean> => (await which('mkfs.btrfs')) === undefined || (await which('btrfs')) === undefined;
  if (await missing()) {
    if (!install) return 'mkfs.btrfs/btrfs missing (Debian package btrfs-progs) and installation is off (--no-install)';
    const err = await aptInstall(['btrfs-progs']);
    if (err !== undefined) return `mkfs.btrfs/btrfs missing and apt-get install btrfs-progs failed: ${err.split('\n')[0]}`;
    if (await missing()) return 'mkfs.btrfs/btrfs missing although btrfs-progs was installed';
  }
  let v: Volume | undefined;
  try {
    v = await createVolume({ kind: 'btrfs', name: 'probe', dir: probeDir, sizeBytes: MIN_BTRFS_BYTES, unmountOnExit: true });
    await fsp.writeFile(path.join(v.path, 'probe'), 'probe');
    const s = await v.snapshot();
    await fsp.readFile(path.join(s.path, 'probe'));
    await s.release();
    return true;
  } catch (err) {
    return `cannot make a loop-mounted btrfs volume here: ${errMessage(err).split('\n')[0]}`;
  } finally {
    await v?.destroy().catch(() => undefined);
    await fsp.rm(probeDir, { recursive: true, force: true }).catch(() => undefined);
  }
}
