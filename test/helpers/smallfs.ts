/**
 * Small real filesystems for the tests of a full disk: an ext4 image on a loop device (needs
 * root), a probe saying why one cannot be made here, and a filler that leaves N bytes free.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, fsyncSync, mkdirSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { tmpdir } from './cli.ts';

const MiB = 1024 * 1024;

/** A small ext4 filesystem on a loop device; `unmount` is safe to call more than once. */
export class SmallFs {
  readonly dir: string;
  private readonly img: string;
  private mounted = false;
  constructor(base: string, name: string) {
    this.img = path.join(base, `${name}.img`);
    this.dir = path.join(base, name);
  }
  /** -m 0: no blocks reserved for root (the tests run as root and must see the real limit). */
  mount(sizeMiB: number, mkfsArgs: string[] = []): void {
    execFileSync('truncate', ['-s', `${sizeMiB}M`, this.img]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', ...mkfsArgs, this.img], { stdio: 'pipe' });
    mkdirSync(this.dir, { recursive: true });
    execFileSync('mount', ['-o', 'loop', this.img, this.dir], { stdio: 'pipe' });
    this.mounted = true;
  }
  unmount(): void {
    if (this.mounted) {
      for (let i = 0; ; i++) {
        try {
          execFileSync('umount', [this.dir], { stdio: 'pipe' });
          break;
        } catch {
          // busy for a moment (a child process still exiting): retry, then detach it lazily
          if (i >= 20) {
            execFileSync('umount', ['-l', this.dir], { stdio: 'pipe' });
            break;
          }
          execFileSync('sleep', ['0.1']);
        }
      }
      this.mounted = false;
    }
    // mount -o loop sets autoclear; detach explicitly whatever is still attached to the image
    try {
      const lines = execFileSync('losetup', ['-j', this.img], { encoding: 'utf8' }).split('\n');
      for (const l of lines) {
        const dev = l.split(':')[0];
        if (dev !== undefined && dev.startsWith('/dev/')) execFileSync('losetup', ['-d', dev], { stdio: 'pipe' });
      }
    } catch {
      /* no losetup or nothing attached */
    }
    rmSync(this.img, { force: true });
  }
  freeBytes(): number {
    const s = statfsSync(this.dir);
    return s.bavail * s.bsize;
  }
  freeInodes(): number {
    return statfsSync(this.dir).ffree;
  }
}

/** Why the suite cannot run here, or undefined when it can: tries a real loop mount. */
export function loopMountProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root to loop-mount small filesystems';
  const base = tmpdir('smallfs-probe');
  const fs = new SmallFs(base, 'probe');
  try {
    fs.mount(8);
    return undefined;
  } catch (err) {
    const e = err as { stderr?: Buffer; message?: string };
    return `cannot loop-mount an ext4 image here: ${(e.stderr?.toString() ?? e.message ?? String(err)).trim().split('\n')[0]}`;
  } finally {
    try {
      fs.unmount();
    } catch {
      /* nothing mounted */
    }
    rmSync(base, { recursive: true, force: true });
  }
}

/** Grows (or writes) `file` so that about `leave` bytes stay free on the filesystem. */
export function fillTo(fs: SmallFs, file: string, leave: number): void {
  let want = fs.freeBytes() - leave;
  assert.ok(want > 0, `only ${fs.freeBytes()} bytes free, cannot leave ${leave}`);
  const fd = openSync(file, 'a');
  try {
    const buf = Buffer.alloc(MiB, 0x5a);
    while (want > 0) {
      const n = writeSync(fd, buf, 0, Math.min(buf.length, want));
      want -= n;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
