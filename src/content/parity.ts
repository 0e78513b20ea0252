/**
 * Parity files of packs in storage: writing one after its pack is durable, checking one
 * against its pack, and rebuilding a damaged pack from one (the codec and the file format are
 * in src/parity/; see docs/design.md, "Parity").
 *
 * A parity file is named like the pack it protects, under the backend type 'parity'. It is
 * computed from the pack as read back from storage, after checking that those bytes hash to
 * the pack's name, so parity never protects bytes other than the ones the name stands for.
 */
import { webcrypto } from 'node:crypto';
import type { Backend, Handle } from '../storage/backend.ts';
import { BackendError, IntegrityError, MeshbackError } from '../errors/index.ts';
import { encodeParityFile, repairFromParity, sha256Hex } from '../parity/index.ts';
import type { ParityScheme, RepairOutcome } from '../parity/index.ts';

/** The file, or undefined when it does not exist. */
export async function getIfExists(backend: Backend, h: Handle): Promise<Buffer | undefined> {
  try {
    return await backend.get(h);
  } catch (err) {
    if (err instanceof MeshbackError && err.code === 'NOT_FOUND') return undefined;
    throw err;
  }
}

/**
 * Writes the parity files of the packs a store commits, one pack at a time (each needs the
 * whole pack in memory, so this bounds that memory to one pack).
 */
export class ParityWriter {
  private readonly backend: Backend;
  private readonly scheme: ParityScheme;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(backend: Backend, scheme: ParityScheme) {
    this.backend = backend;
    this.scheme = scheme;
  }

  /**
   * Reads back a pack that was just stored, checks it against its name and size, and writes
   * its parity file. Resolves to the parity file's size. An IntegrityError here means the
   * storage returned other bytes than were written.
   */
  write(name: string, size: number): Promise<number> {
    const run = (): Promise<number> => writePackParity(this.backend, name, size, this.scheme);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }
}

export async function writePackParity(backend: Backend, name: string, size: number, scheme: ParityScheme): Promise<number> {
  const pack = await backend.get({ type: 'pack', name });
  // the whole-pack hash runs on the thread pool while this thread encodes
  const digest = pack.length === size ? webcrypto.subtle.digest('SHA-256', pack as Uint8Array<ArrayBuffer>) : undefined;
  const file = encodeParityFile(pack, name, scheme);
  if (digest === undefined || Buffer.from(await digest).toString('hex') !== name) {
    throw new IntegrityError(`pack ${name} reads back differently from what was just written to ${backend.location}: the storage is damaging data; check the disk before backing up again`, { pack: name });
  }
  await backend.put({ type: 'parity', name }, file);
  return file.length;
}

/** State of the parity file of an intact pack. */
export type ParityFileState = 'ok' | 'missing' | 'damaged';

/**
 * Compares the stored parity file of an intact pack (SHA-256(pack) = name, checked by the
 * caller) with the one its scheme gives: encoding is deterministic, so any difference is damage.
 */
export async function parityFileState(backend: Backend, name: string, pack: Buffer, scheme: ParityScheme): Promise<{ state: ParityFileState; expected: Buffer }> {
  const expected = encodeParityFile(pack, name, scheme);
  const stored = await getIfExists(backend, { type: 'parity', name });
  return { state: stored === undefined ? 'missing' : stored.equals(expected) ? 'ok' : 'damaged', expected };
}

/**
 * Rebuilds a damaged pack (`pack` as storage holds it, or undefined when it is gone) from its
 * parity file, without writing anything. The outcome's data is verified against the name.
 */
export async function rebuildFromParity(backend: Backend, name: string, pack: Buffer | undefined): Promise<RepairOutcome> {
  const parity = await getIfExists(backend, { type: 'parity', name });
  return repairFromParity(pack, parity, name);
}

/**
 * Replaces a damaged pack or parity file with verified bytes (the one exception to "never
 * overwrite", see Backend.replace) and reads it back. For a pack, `data` MUST hash to `name`;
 * this is checked again here, before and after writing.
 */
export async function replaceVerified(backend: Backend, h: Handle, data: Buffer): Promise<void> {
  if (backend.replace === undefined) throw new BackendError(`the storage at ${backend.location} cannot replace files, so ${h.type} ${h.name} cannot be repaired in place`, { retryable: false });
  if (h.type === 'pack' && sha256Hex(data) !== h.name) throw new IntegrityError(`refusing to replace pack ${h.name} with bytes that do not match its name`, { pack: h.name });
  await backend.replace(h, data);
  const back = await backend.get(h);
  if (!back.equals(data)) throw new IntegrityError(`${h.type} ${h.name} reads back differently from what was just written to ${backend.location}: the storage is damaging data`, { pack: h.name });
}
