/**
 * repository: the facade over a Backend. It owns the repository config (format version,
 * chunker parameters and seed, compression), the key files, the content store and the
 * snapshot manifests. A repository never guesses its format: everything that shapes the
 * stored bytes is recorded in its config.
 */
import { randomBytes } from 'node:crypto';
import * as os from 'node:os';
import type { Backend, ObjectLockPolicy } from '../storage/backend.ts';
import { findLayer } from '../storage/backend.ts';
import { CacheBackend } from '../storage/cache.ts';
import { Chunker, CHUNKER_NAME, DEFAULT_CHUNKER } from '../chunker/fastcdc.ts';
import type { ChunkerParams } from '../chunker/fastcdc.ts';
import { ContentStore } from '../content/store.ts';
import { BlobThreads } from '../content/blob-threads.ts';
import { sha256hex } from '../content/pack.ts';
import { defaultScryptParams, deriveKey, newMasterKey, open, seal } from '../crypto/index.ts';
import type { MasterKey } from '../crypto/index.ts';
import { IntegrityError, MeshbackError, NotFoundError, UsageError } from '../errors/index.ts';
import { SnapshotSchema } from '../snapshot/manifest.ts';
import type { Snapshot, SnapshotRef } from '../snapshot/manifest.ts';
import { about, checked, int, isoDate, parseJson, safeParse, v } from '../util/schema.ts';
import { decodeTree } from '../snapshot/tree.ts';
import type { Node, Tree } from '../snapshot/tree.ts';
import { BLOB_TREE } from '../content/index-table.ts';
import type { ChunkIndex } from '../content/index-table.ts';
import { getIfExists, rebuildFromParity } from '../content/parity.ts';
import { PARITY_SCHEME_NAME, schemeProblem } from '../parity/index.ts';
import type { ParityScheme } from '../parity/index.ts';

/** nodes of decoded trees kept for reuse (ls, find, diff and restore look the same trees up again) */
const TREE_CACHE_NODES = 20_000;

export const REPO_VERSION = 1;

const base64 = (what: string) => v.pipe(v.string(), v.regex(/^[A-Za-z0-9+/]*={0,2}$/, `must be base64 (${what})`));
const atLeast1 = () => int(1);

/** The sealed `config` file: every format parameter of the repository (docs/schemas/config.json). */
export const RepoConfigSchema = v.pipe(
  v.object({
    version: about(int(), 'format version; this meshback reads 1'),
    id: v.pipe(v.string(), v.regex(/^[0-9a-f]{32}$/, 'must be 32 hex digits')),
    created: isoDate(),
    chunker: v.object({ name: v.string(), min: atLeast1(), avg: atLeast1(), max: atLeast1(), seed: base64('32 bytes') }),
    compression: v.object({ name: v.literal('zstd'), level: int() }),
    cipher: v.literal('aes-256-gcm'),
    idHash: v.literal('hmac-sha256'),
    packSize: atLeast1(),
    parity: v.optional(
      about(
        v.object({ name: v.literal(PARITY_SCHEME_NAME), k: atLeast1(), m: atLeast1(), blockSize: atLeast1() }),
        'Reed-Solomon parity for every pack (init --parity); absent in repositories without parity',
      ),
    ),
    objectLock: v.optional(
      about(
        v.object({ mode: v.picklist(['compliance', 'governance']), days: v.pipe(int(1), v.maxValue(36_500)) }),
        'Object Lock (init --object-lock DAYS): every file but lock files is written with a retention of `days`, extended while snapshots use it; absent when the repository has none',
      ),
    ),
  }),
  v.metadata({ title: 'meshback repository config', description: 'The file config: Seal(encKey, this JSON); a repository never guesses its format (docs/design.md, "Repository layout").' }),
);
export type RepoConfig = v.InferOutput<typeof RepoConfigSchema>;

/** A key file under keys/, plain JSON: the master key sealed under a key derived from one password (docs/schemas/key.json). */
export const KeyFileSchema = v.pipe(
  v.object({
    version: v.literal(1),
    created: isoDate(),
    host: v.string(),
    username: v.string(),
    kdf: v.object({
      name: v.literal('scrypt'),
      // bounded: a key file is read before anything is authenticated, and N*r sets scrypt's memory
      N: v.pipe(v.number(), v.safeInteger(), v.minValue(2), v.maxValue(2 ** 22), v.check((n) => (n & (n - 1)) === 0, 'must be a power of 2'), v.description('scrypt cost: a power of 2, at most 2^22')),
      r: v.pipe(v.number(), v.safeInteger(), v.minValue(1), v.maxValue(64)),
      p: v.pipe(v.number(), v.safeInteger(), v.minValue(1), v.maxValue(64)),
      salt: base64('the scrypt salt'),
    }),
    data: about(base64('Seal(KEK, JSON {encKey, idKey})'), 'base64 of Seal(kek, JSON {encKey, idKey})'),
  }),
  v.metadata({ title: 'meshback key file', description: 'A file under keys/, plain JSON, named by its SHA-256 (docs/design.md, "Keys and encryption").' }),
);
export type KeyFile = v.InferOutput<typeof KeyFileSchema>;

/** The plaintext sealed in a key file's `data`. */
const MasterKeyJsonSchema = v.object({ encKey: base64('32 bytes'), idKey: base64('32 bytes') });

/** What identifies a config's format, read before the fields this format needs are checked. */
const ConfigHeadSchema = v.object({
  version: v.optional(v.unknown()),
  chunker: v.optional(v.object({ name: v.optional(v.unknown()) })),
  cipher: v.optional(v.unknown()),
  parity: v.optional(v.object({ name: v.optional(v.unknown()) })),
});

/** A key file's content checked, or a one-line account of what is wrong with it (`field "kdf.N" is missing`). */
function readKeyFile(bytes: Buffer): KeyFile | string {
  try {
    const fail = (m: string) => new IntegrityError(m);
    return checked(KeyFileSchema, parseJson(bytes.toString('utf8'), (m) => fail(`the file ${m}`)), fail);
  } catch (err) {
    return (err as Error).message;
  }
}

export interface InitOptions {
  chunker?: ChunkerParams;
  packSize?: number;
  compressionLevel?: number;
  parity?: ParityScheme;
  /** Object Lock: every file written immutable for `days` (the backend must support it). */
  objectLock?: ObjectLockPolicy;
}

/** The most days of retention init accepts (100 years). */
export const MAX_LOCK_DAYS = 36_500;

export class Repository {
  readonly backend: Backend;
  readonly key: MasterKey;
  readonly config: RepoConfig;
  readonly keyId: string;
  readonly store: ContentStore;
  private readonly treeCache = new Map<string, Tree>();
  /** nodes of the trees in treeCache */
  private treeCacheNodes = 0;
  private readonly snapshotGuards = new Set<() => Promise<void>>();

  private constructor(backend: Backend, key: MasterKey, keyId: string, config: RepoConfig) {
    this.backend = backend;
    this.key = key;
    this.keyId = keyId;
    this.config = config;
    // the metadata cache (if the stack has one) is the cache of this repository, by its id
    findLayer(backend, CacheBackend)?.bind(config.id);
    this.store = new ContentStore(backend, key, { packSize: config.packSize, compressionLevel: config.compression.level, ...(config.parity !== undefined ? { parity: config.parity } : {}) });
  }

  static async init(backend: Backend, password: string, opts: InitOptions = {}): Promise<Repository> {
    if (await backend.exists()) throw new MeshbackError('REPO_EXISTS', `a repository already exists at ${backend.location}: use it, or choose another --repo`);
    if (password.length === 0) throw new UsageError('the password is empty: choose a non-empty password');
    const chunker = opts.chunker ?? DEFAULT_CHUNKER;
    if (opts.parity !== undefined) {
      const problem = schemeProblem(opts.parity);
      if (problem !== undefined || opts.parity.name !== PARITY_SCHEME_NAME) throw new UsageError(`parity ${opts.parity.k}+${opts.parity.m}: ${problem ?? `unknown scheme ${opts.parity.name}`}`);
    }
    if (opts.objectLock !== undefined) {
      const { days, mode } = opts.objectLock;
      if (!Number.isSafeInteger(days) || days < 1 || days > MAX_LOCK_DAYS) throw new UsageError(`object lock of ${days} days: give a whole number of days from 1 to ${MAX_LOCK_DAYS}`);
      if (backend.objectLock === undefined) throw new UsageError(`--object-lock needs a store that can keep files immutable (an S3 bucket with Object Lock enabled); ${backend.location} cannot`);
      const reason = await backend.objectLock.support();
      if (reason !== undefined) throw new UsageError(`--object-lock: ${reason}`);
      backend.objectLock.setPolicy({ mode, days });
    }
    const config: RepoConfig = {
      version: REPO_VERSION,
      id: randomBytes(16).toString('hex'),
      created: new Date().toISOString(),
      chunker: { name: CHUNKER_NAME, ...chunker, seed: randomBytes(32).toString('base64') },
      compression: { name: 'zstd', level: opts.compressionLevel ?? 3 },
      cipher: 'aes-256-gcm',
      idHash: 'hmac-sha256',
      packSize: opts.packSize ?? 16 * 1024 * 1024,
      ...(opts.parity !== undefined ? { parity: { ...opts.parity } } : {}),
      ...(opts.objectLock !== undefined ? { objectLock: { mode: opts.objectLock.mode, days: opts.objectLock.days } } : {}),
    };
    const key = newMasterKey();
    await backend.create();
    const keyId = await writeKeyFile(backend, key, password);
    await backend.put({ type: 'config', name: 'config' }, seal(key.encKey, Buffer.from(JSON.stringify(config))));
    return new Repository(backend, key, keyId, config);
  }

  static async open(backend: Backend, password: string, opts: { loadIndex?: boolean } = {}): Promise<Repository> {
    if (!(await backend.exists())) {
      throw new MeshbackError('REPO_NOT_FOUND', `no repository at ${backend.location}: check --repo / MESHBACK_REPO, or create one with 'meshback init'`);
    }
    const { key, keyId } = await unlockMasterKey(backend, password);
    const raw = await backend.get({ type: 'config', name: 'config' });
    const bad = (m: string) => new IntegrityError(`the repository config at ${backend.location}: ${m}: the config is malformed; restore it from a copy of the repository`);
    const json = parseJson(open(key.encKey, raw, 'repository config').toString('utf8'), (m) => bad(`the file ${m}`));
    // another format is named as such before the fields this format needs are checked
    const head = safeParse(ConfigHeadSchema, json);
    if (head.success && (head.output.version !== REPO_VERSION || (head.output.chunker !== undefined && head.output.chunker.name !== CHUNKER_NAME) || head.output.cipher !== 'aes-256-gcm')) {
      throw new MeshbackError('UNSUPPORTED_FORMAT', `the repository at ${backend.location} has format version ${JSON.stringify(head.output.version)} (${JSON.stringify(head.output.chunker?.name)}, ${JSON.stringify(head.output.cipher)}), which this meshback does not support: upgrade meshback`);
    }
    if (head.success && head.output.parity !== undefined && head.output.parity.name !== PARITY_SCHEME_NAME) {
      throw new MeshbackError('UNSUPPORTED_FORMAT', `the repository at ${backend.location} uses parity scheme ${JSON.stringify(head.output.parity.name)}, which this meshback does not support: upgrade meshback`);
    }
    const config = checked(RepoConfigSchema, json, bad);
    if (config.parity !== undefined && (config.parity.name !== PARITY_SCHEME_NAME || schemeProblem(config.parity) !== undefined)) {
      throw new MeshbackError('UNSUPPORTED_FORMAT', `the repository at ${backend.location} uses parity scheme ${config.parity.name} ${config.parity.k}+${config.parity.m}, which this meshback does not support: upgrade meshback`);
    }
    // files written from now on get the repository's retention (a copy of an Object Lock
    // repository on a store without it, a local directory say, is read and written without)
    if (config.objectLock !== undefined) backend.objectLock?.setPolicy(config.objectLock);
    const repo = new Repository(backend, key, keyId, config);
    if (opts.loadIndex !== false) await repo.store.loadIndex();
    return repo;
  }

  /** The same repository opened again with the key it holds, its index loaded afresh (after a prune rewrote it). */
  async reopen(): Promise<Repository> {
    const r = new Repository(this.backend, this.key, this.keyId, this.config);
    await r.store.loadIndex();
    return r;
  }

  chunker(): Chunker {
    return new Chunker(Buffer.from(this.config.chunker.seed, 'base64'), this.config.chunker);
  }

  // ---- snapshots

  /**
   * Registers a check that runs before every snapshot write and may refuse it by throwing (a
   * held repository lock registers one: see lock.ts). Returns the function that removes it.
   */
  guardSnapshotWrites(check: () => Promise<void>): () => void {
    this.snapshotGuards.add(check);
    return () => {
      this.snapshotGuards.delete(check);
    };
  }

  async saveSnapshot(s: Snapshot): Promise<string> {
    for (const check of this.snapshotGuards) await check();
    const file = seal(this.key.encKey, Buffer.from(JSON.stringify(s)));
    const id = sha256hex(file);
    await this.backend.put({ type: 'snapshot', name: id }, file);
    return id;
  }

  async loadSnapshot(id: string): Promise<Snapshot> {
    const file = await this.backend.get({ type: 'snapshot', name: id });
    if (sha256hex(file) !== id) throw new IntegrityError(`snapshot file ${id.slice(0, 8)} is damaged (its content does not match its name)`, { snapshot: id });
    const fail = (m: string) => new IntegrityError(`snapshot ${id.slice(0, 8)}: ${m}: the snapshot file is malformed; delete it from the repository's snapshots/ directory (its data stays until a prune)`, { snapshot: id });
    return checked(SnapshotSchema, parseJson(open(this.key.encKey, file, `snapshot ${id.slice(0, 8)}`).toString('utf8'), (m) => fail(`the file ${m}`)), fail);
  }

  /** All snapshots, oldest first. */
  async listSnapshots(): Promise<SnapshotRef[]> {
    const names: string[] = [];
    for await (const f of this.backend.list('snapshot')) names.push(f.name);
    const out = await Promise.all(names.map(async (id) => ({ id, snapshot: await this.loadSnapshot(id) })));
    out.sort((a, b) => (a.snapshot.time < b.snapshot.time ? -1 : a.snapshot.time > b.snapshot.time ? 1 : a.id < b.id ? -1 : 1));
    return out;
  }

  /**
   * Deletes a snapshot file (forget). The trees and chunks it used stay in their packs until a
   * prune removes what no snapshot uses. Deleting a snapshot that is already gone succeeds.
   */
  async removeSnapshot(id: string): Promise<void> {
    if (!/^[0-9a-f]{64}$/.test(id)) throw new UsageError(`${JSON.stringify(id)} is not a full snapshot id (64 hex digits)`);
    await this.backend.delete({ type: 'snapshot', name: id });
  }

  /** Resolves "latest", a full id or a unique id prefix (in `all`, when given: oldest first, as listSnapshots returns). */
  async findSnapshot(ref: string, filter?: { host?: string; paths?: string[] }, all?: SnapshotRef[]): Promise<SnapshotRef> {
    all ??= await this.listSnapshots();
    if (ref === 'latest') {
      const cands = all.filter((s) => (filter?.host === undefined || s.snapshot.host === filter.host) && (filter?.paths === undefined || samePaths(s.snapshot.paths, filter.paths)));
      const last = cands[cands.length - 1];
      if (last === undefined) throw new NotFoundError(`the repository has no snapshot${filter?.host !== undefined ? ` for host ${filter.host}` : ''} yet: run 'meshback backup' first`);
      return last;
    }
    if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new UsageError(`${JSON.stringify(ref)} is not a snapshot id: give 'latest' or an id (or prefix) from 'meshback snapshots'`);
    const m = all.filter((s) => s.id.startsWith(ref));
    if (m.length === 0) throw new NotFoundError(`no snapshot with id ${ref}: list them with 'meshback snapshots'`, { snapshot: ref });
    if (m.length > 1) throw new UsageError(`snapshot id prefix ${ref} is ambiguous (${m.length} snapshots): give more digits`);
    return m[0]!;
  }

  // ---- trees

  async loadTree(id: string): Promise<Tree> {
    const hit = this.treeCache.get(id);
    if (hit !== undefined) return hit;
    const data = await this.store.load(Buffer.from(id, 'hex'), 'tree');
    const t = decodeTree(data, id);
    // bounded by nodes, not trees: 2,048 trees of 100 files each held 200,000 nodes (about 100 MiB
    // of heap) during a check of 1,000,000 files that loads each tree once
    if (this.treeCacheNodes + t.nodes.length > TREE_CACHE_NODES) this.dropTreeCache();
    this.treeCache.set(id, t);
    this.treeCacheNodes += t.nodes.length;
    return t;
  }

  /** Forgets cached trees (a restore drops them once it has planned its work). */
  dropTreeCache(): void {
    this.treeCache.clear();
    this.treeCacheNodes = 0;
  }

  /**
   * The top level of a snapshot as ls and restore present it: a snapshot of one directory
   * shows that directory's contents; otherwise one entry per backed-up path.
   */
  async rootView(s: Snapshot): Promise<{ nodes: Node[]; rootDir?: Node }> {
    const root = await this.loadTree(s.tree);
    if (s.paths.length === 1 && root.nodes.length === 1 && root.nodes[0]!.type === 'dir' && root.nodes[0]!.subtree !== undefined) {
      return { nodes: (await this.loadTree(root.nodes[0]!.subtree)).nodes, rootDir: root.nodes[0]! };
    }
    return { nodes: root.nodes };
  }

  // ---- data, for readers that plan their own pack reads (restore)

  /** The index of every blob: where each chunk and tree lives (compact typed arrays). */
  get index(): ChunkIndex {
    return this.store.index;
  }

  /** Reads `range` of a pack, into `into` when given (a buffer the caller reuses). */
  readPack(pack: string, range: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    return this.backend.get({ type: 'pack', name: pack }, range, into);
  }

  /** Decrypts, decompresses and authenticates one blob read from `pack`; IntegrityError when it fails. */
  decodeBlob(sealed: Uint8Array, id: Uint8Array, rawLength: number, pack: string, what?: string): Promise<Buffer> {
    return this.store.decodeBlob(sealed, id, rawLength, pack, what);
  }

  /** Worker threads that decode and prove this repository's blobs (content/blob-threads.ts); close() them when done. */
  blobThreads(threads: number): BlobThreads {
    return new BlobThreads(this.key.encKey, this.key.idKey, threads);
  }

  /** A damaged pack rebuilt in memory from its parity file and verified against its name, or undefined. */
  async rebuildPack(pack: string): Promise<{ data: Buffer; badBlocks: number; blocks: number } | undefined> {
    const r = await rebuildFromParity(this.backend, pack, await getIfExists(this.backend, { type: 'pack', name: pack }).catch(() => undefined));
    return r.status === 'repaired' && r.data !== undefined ? { data: r.data, badBlocks: r.badDataBlocks, blocks: r.dataBlocks } : undefined;
  }

  /** The content id (keyed hash) of plaintext: what a chunk's bytes must hash to. */
  chunkId(data: Uint8Array): Buffer {
    return this.store.id(data);
  }

  async saveTree(data: Buffer): Promise<string> {
    const id = this.store.id(data);
    await this.store.add(BLOB_TREE, id, data);
    return id.toString('hex');
  }

  // ---- keys

  /** All key files; a damaged one is listed without `file` (`damaged` says why), so that it can still be removed. */
  async listKeys(): Promise<{ id: string; file?: KeyFile; damaged?: string }[]> {
    const out: { id: string; file?: KeyFile; damaged?: string }[] = [];
    for await (const f of this.backend.list('key')) {
      const kf = readKeyFile(await this.backend.get({ type: 'key', name: f.name }));
      out.push(typeof kf === 'string' ? { id: f.name, damaged: kf } : { id: f.name, file: kf });
    }
    out.sort((a, b) => ((a.file?.created ?? '') < (b.file?.created ?? '') ? -1 : 1));
    return out;
  }

  async addKey(password: string): Promise<string> {
    if (password.length === 0) throw new UsageError('the new password is empty: choose a non-empty password');
    return writeKeyFile(this.backend, this.key, password);
  }

  /** Replaces the key this repository was opened with: the new key is written before the old is removed. */
  async changePassword(password: string): Promise<{ added: string; removed: string }> {
    const added = await this.addKey(password);
    await this.backend.delete({ type: 'key', name: this.keyId });
    return { added, removed: this.keyId };
  }

  async removeKey(id: string): Promise<void> {
    const keys = await this.listKeys();
    const m = keys.filter((k) => k.id.startsWith(id));
    if (m.length === 0) throw new NotFoundError(`no key with id ${id}: list them with 'meshback key list'`);
    if (m.length > 1) throw new UsageError(`key id prefix ${id} is ambiguous: give more digits`);
    if (m[0]!.id === this.keyId) throw new UsageError(`key ${id} is the one this command was opened with: open with another password to remove it, or use 'meshback key passwd'`);
    await this.backend.delete({ type: 'key', name: m[0]!.id });
  }
}

export function samePaths(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const x = [...a].sort();
  const y = [...b].sort();
  return x.every((v, i) => v === y[i]);
}

async function writeKeyFile(backend: Backend, key: MasterKey, password: string): Promise<string> {
  const kdf = defaultScryptParams();
  const kek = await deriveKey(password, kdf);
  const plain = Buffer.from(JSON.stringify({ encKey: key.encKey.toString('base64'), idKey: key.idKey.toString('base64') }));
  const file: KeyFile = {
    version: 1,
    created: new Date().toISOString(),
    host: os.hostname(),
    username: os.userInfo().username,
    kdf: { name: 'scrypt', ...kdf },
    data: seal(kek, plain).toString('base64'),
  };
  const bytes = Buffer.from(JSON.stringify(file, null, 2));
  const id = sha256hex(bytes);
  await backend.put({ type: 'key', name: id }, bytes);
  return id;
}

async function unlockMasterKey(backend: Backend, password: string): Promise<{ key: MasterKey; keyId: string }> {
  const files: string[] = [];
  for await (const f of backend.list('key')) files.push(f.name);
  if (files.length === 0) throw new MeshbackError('WRONG_PASSWORD', `the repository at ${backend.location} has no key files left: it cannot be opened`);
  const malformed: string[] = [];
  for (const name of files) {
    const kf = readKeyFile(await backend.get({ type: 'key', name }));
    if (typeof kf === 'string') {
      malformed.push(`key file ${name.slice(0, 8)}: ${kf}`); // a damaged key file: try the others
      continue;
    }
    const kek = await deriveKey(password, kf.kdf);
    let plain: Buffer;
    try {
      plain = open(kek, Buffer.from(kf.data, 'base64'));
    } catch {
      continue;
    }
    // authenticated under the password's key: malformed here means it was written so
    const fail = (m: string) => new IntegrityError(`key file ${name.slice(0, 8)}: its sealed master key ${m}: open the repository with another password and remove this key`);
    const j = checked(MasterKeyJsonSchema, parseJson(plain.toString('utf8'), (m) => fail(`is ${m.replace(/^is /, '')}`)), fail);
    return { key: { encKey: Buffer.from(j.encKey, 'base64'), idKey: Buffer.from(j.idKey, 'base64') }, keyId: name };
  }
  if (malformed.length === files.length) {
    throw new IntegrityError(`no key file of the repository at ${backend.location} can be read: ${malformed[0]}${malformed.length > 1 ? ` (and ${malformed.length - 1} more)` : ''}: restore keys/ from a copy of the repository`);
  }
  const also = malformed.length > 0 ? ` (and ${malformed[0]}${malformed.length > 1 ? `, ${malformed.length - 1} more malformed` : ''})` : '';
  throw new MeshbackError('WRONG_PASSWORD', `wrong password for the repository at ${backend.location}: no key file opens with it${also}; check MESHBACK_PASSWORD / --password-file`);
}
