/**
 * snapshot: trees and snapshot manifests.
 *
 * A Tree is one directory's listing: nodes sorted by the bytes of their names. It is encoded
 * as canonical JSON and stored as a blob of type tree, so its id is its keyed hash and a
 * snapshot is a Merkle tree. Names and symlink targets are byte strings on Linux; when they
 * are valid UTF-8 they are stored in `name`/`linkTarget`, otherwise base64 in
 * `nameRaw`/`linkTargetRaw`.
 */
import { IntegrityError } from '../errors/index.ts';
import { HEX_ID, checked, hexId, int, parseJson, v } from '../util/schema.ts';

export const NODE_TYPES = ['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev'] as const;
export type NodeType = (typeof NODE_TYPES)[number];

export const HOLE_PREFIX = '0:';

const NS_TIME = /^-?\d+$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const CHUNK_REF = /^(?:[0-9a-f]{64}|0:\d+)$/;
const nsTime = () => v.pipe(v.string(), v.regex(NS_TIME, 'must be nanoseconds since the epoch as a decimal string'), v.description('nanoseconds since the epoch, decimal'));
const base64 = (description: string) => v.pipe(v.string(), v.regex(BASE64, 'must be base64'), v.description(description));

/** One entry of a tree (docs/design.md, "Trees and nodes"; docs/schemas/tree.json). */
export const NodeSchema = v.pipe(
  v.object({
    name: v.pipe(v.string(), v.description('the name as UTF-8; "" when the bytes are not valid UTF-8 (then nameRaw holds them)')),
    nameRaw: v.optional(base64("the name's bytes in base64, when they are not valid UTF-8")),
    type: v.picklist(NODE_TYPES),
    mode: v.pipe(v.number(), v.safeInteger(), v.minValue(0), v.maxValue(0o7777), v.description('permission bits including setuid, setgid, sticky (st_mode & 0o7777)')),
    uid: int(0),
    gid: int(0),
    mtime: nsTime(),
    ctime: nsTime(),
    inode: v.pipe(v.number(), v.description('from lstat; change detection and hard links')),
    dev: v.pipe(v.number(), v.description('from lstat; change detection and hard links')),
    nlink: int(0),
    size: v.optional(v.pipe(v.number(), v.safeInteger(), v.minValue(0), v.description('files: bytes in the file'))),
    content: v.optional(
      v.pipe(
        v.array(v.pipe(v.string(), v.regex(CHUNK_REF, 'must be a chunk id (64 hex digits) or a hole "0:<bytes>"'))),
        v.description('files: chunk ids (hex) in order; "0:<n>" stands for a hole of n zero bytes'),
      ),
    ),
    subtree: v.optional(v.pipe(hexId(), v.description("directories: id of the directory's tree (required when type is dir)"))),
    linkTarget: v.optional(v.pipe(v.string(), v.description('symlinks: the target as UTF-8'))),
    linkTargetRaw: v.optional(base64("symlinks: the target's bytes in base64, when they are not valid UTF-8")),
    rdev: v.optional(v.pipe(v.number(), v.description('devices: device number'))),
    changed: v.optional(v.pipe(v.boolean(), v.description('the file changed while it was read: the stored content may mix versions'))),
  }),
  v.forward(
    v.partialCheck([['type'], ['subtree']], (n) => n.type !== 'dir' || n.subtree !== undefined, 'is missing (a directory node needs the id of its tree)'),
    ['subtree'],
  ),
);
export type Node = v.InferOutput<typeof NodeSchema>;

/** One directory's listing: nodes sorted by the bytes of their names. */
export const TreeSchema = v.pipe(
  v.object({ nodes: v.array(NodeSchema) }),
  v.metadata({ title: 'meshback tree', description: "One directory's listing, stored as a tree blob (JSON); nodes sorted by the bytes of their names, names unique and single path components." }),
);
export type Tree = v.InferOutput<typeof TreeSchema>;

const NODE_TYPE_SET: ReadonlySet<string> = new Set(NODE_TYPES);
// name, type, mode, uid, gid, mtime, ctime, inode, dev, nlink
const REQUIRED_NODE_FIELDS = Object.values(NodeSchema.entries).filter((e) => e.type !== 'optional').length;
const isNumber = (x: unknown): x is number => typeof x === 'number' && !Number.isNaN(x);
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const isText = (x: unknown, re: RegExp): boolean => typeof x === 'string' && re.test(x);

/**
 * NodeSchema's checks written out as one function, for the hot path of restore and check (what
 * zod's compiled parser was): true when `x` passes the schema and holds no other field, so that
 * the schema would return it unchanged. Anything else goes through the schema, which gives the
 * messages and drops unknown fields. test/unit/schemas.test.ts holds the two together.
 */
export function isPlainNode(x: unknown): x is Node {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const n = x as Record<string, unknown>;
  const type = n['type'];
  const mode = n['mode'];
  if (
    typeof n['name'] !== 'string' ||
    typeof type !== 'string' ||
    !NODE_TYPE_SET.has(type) ||
    !isCount(mode) ||
    mode > 0o7777 ||
    !isCount(n['uid']) ||
    !isCount(n['gid']) ||
    !isText(n['mtime'], NS_TIME) ||
    !isText(n['ctime'], NS_TIME) ||
    !isNumber(n['inode']) ||
    !isNumber(n['dev']) ||
    !isCount(n['nlink'])
  ) {
    return false;
  }
  let fields = REQUIRED_NODE_FIELDS;
  if ('nameRaw' in n) {
    if (!isText(n['nameRaw'], BASE64)) return false;
    fields++;
  }
  if ('size' in n) {
    if (!isCount(n['size'])) return false;
    fields++;
  }
  if ('content' in n) {
    const c = n['content'];
    if (!Array.isArray(c)) return false;
    for (const ref of c) if (!isText(ref, CHUNK_REF)) return false;
    fields++;
  }
  if ('subtree' in n) {
    if (!isText(n['subtree'], HEX_ID)) return false;
    fields++;
  } else if (type === 'dir') return false;
  if ('linkTarget' in n) {
    if (typeof n['linkTarget'] !== 'string') return false;
    fields++;
  }
  if ('linkTargetRaw' in n) {
    if (!isText(n['linkTargetRaw'], BASE64)) return false;
    fields++;
  }
  if ('rdev' in n) {
    if (!isNumber(n['rdev'])) return false;
    fields++;
  }
  if ('changed' in n) {
    if (typeof n['changed'] !== 'boolean') return false;
    fields++;
  }
  return Object.keys(n).length === fields;
}

/** `{ nodes: [...] }` and nothing else, every node plain (isPlainNode): TreeSchema would return it unchanged. */
function isPlainTree(x: unknown): x is Tree {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return false;
  const nodes = (x as Record<string, unknown>)['nodes'];
  if (!Array.isArray(nodes)) return false;
  if (Object.keys(x).length !== 1) return false;
  for (const n of nodes) if (!isPlainNode(n)) return false;
  return true;
}

// ignoreBOM: a leading EF BB BF is part of the name, not a byte-order mark to strip
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Sets name/nameRaw from the raw bytes. */
export function encodeName(raw: Buffer): { name: string; nameRaw?: string } {
  try {
    const s = decoder.decode(raw);
    return { name: s };
  } catch {
    return { name: '', nameRaw: raw.toString('base64') };
  }
}

export function nodeNameBytes(n: { name: string; nameRaw?: string }): Buffer {
  return n.nameRaw !== undefined ? Buffer.from(n.nameRaw, 'base64') : Buffer.from(n.name, 'utf8');
}

export function linkTargetBytes(n: Node): Buffer {
  if (n.linkTargetRaw !== undefined) return Buffer.from(n.linkTargetRaw, 'base64');
  return Buffer.from(n.linkTarget ?? '', 'utf8');
}

/** A printable form of a name: invalid UTF-8 bytes appear as \xNN. */
export function displayName(raw: Buffer): string {
  try {
    return decoder.decode(raw);
  } catch {
    let s = '';
    for (const b of raw) s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
    return s;
  }
}

export function encodeTree(t: Tree): Buffer {
  t.nodes.sort((a, b) => Buffer.compare(nodeNameBytes(a), nodeNameBytes(b)));
  return Buffer.from(JSON.stringify(t), 'utf8');
}

/**
 * Decodes and validates a tree: a tree read from a repository is untrusted input. Names
 * must be single path components (no '/', NUL, '.', '..' or empty) and unique.
 */
export function decodeTree(data: Buffer, id: string): Tree {
  const fail = (m: string): IntegrityError => new IntegrityError(`tree ${id.slice(0, 16)}: ${m}: the repository holds a malformed tree: run 'meshback check', then 'meshback repair snapshots' to drop it`, { tree: id });
  const json = parseJson(data.toString('utf8'), (m) => fail(`the tree ${m}`));
  const t = isPlainTree(json) ? json : checked(TreeSchema, json, fail);
  // names: each a single path component, unique by its bytes. The key of a name is the name
  // itself when it is valid UTF-8 (nameRaw that decodes is spelled the same way), else NUL
  // (which no valid name holds) and its bytes.
  const seen = new Set<string>();
  for (const n of t.nodes) {
    let key: string;
    if (n.nameRaw === undefined) {
      const s = n.name;
      if (s === '' || s === '.' || s === '..' || s.includes('/') || s.includes('\0') || !s.isWellFormed()) {
        throw new IntegrityError(`tree ${id.slice(0, 16)} holds an unsafe name ${JSON.stringify(s)}: refusing to use it`, { tree: id });
      }
      key = s;
    } else {
      const raw = Buffer.from(n.nameRaw, 'base64');
      if (raw.length === 0 || raw.includes(0x2f) || raw.includes(0) || (raw.length <= 2 && raw.every((b) => b === 0x2e))) {
        throw new IntegrityError(`tree ${id.slice(0, 16)} holds an unsafe name ${JSON.stringify(displayName(raw))}: refusing to use it`, { tree: id });
      }
      try {
        key = decoder.decode(raw);
      } catch {
        key = `\0${raw.toString('latin1')}`;
      }
    }
    if (seen.has(key)) throw new IntegrityError(`tree ${id.slice(0, 16)} holds the name ${JSON.stringify(displayName(nodeNameBytes(n)))} twice`, { tree: id });
    seen.add(key);
  }
  return t;
}
