/** Small shared helpers for the unit tests (deterministic bytes, temp dirs). */
import { createCipheriv, createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** Deterministic pseudo-random bytes: the AES-256-CTR keystream under a key derived from `seed`. */
export function prngBytes(seed: string | number, n: number): Buffer {
  const key = createHash('sha256').update(`meshback-unit-test:${seed}`).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return c.update(Buffer.alloc(n));
}

/** Creates a fresh temporary directory under os.tmpdir(). */
export function tempDir(prefix: string): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), `meshback-${prefix}-`));
}

export async function removeDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true });
}

/** Every path below `dir` (relative, '/'-separated), directories included. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      out.push(r);
      if (e.isDirectory()) await walk(path.join(d, e.name), r);
    }
  };
  await walk(dir, '');
  return out.sort();
}

/** Returns a copy of `b` with the byte at `i` inverted. */
export function flipped(b: Uint8Array, i: number): Buffer {
  const c = Buffer.from(b);
  c[i] = c[i]! ^ 0xff;
  return c;
}

/** Inverts one byte of a file in place. */
export async function flipFileByte(file: string, offset: number): Promise<void> {
  const fh = await fsp.open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}
