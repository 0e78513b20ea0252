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
import { checked, hexId, parseJson, z } from '../util/schema.ts';

export const NODE_TYPES = ['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev'] as const;
export type NodeType = (typeof NODE_TYPES)[number];

export const HOLE_PREFIX = '0:';

const nsTime = () => z.string().regex(/^-?\d+$/, { error: 'must be nanoseconds since the epoch as a decimal string' });
const base64 = () => z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, { error: 'must be base64' });

/** One entry of a tree (docs/design.md, "Trees and nodes"; docs/schemas/tree.json). */
export const NodeSchema = z
  .object({
    name: z.string().describe('the name as UTF-8; "" when the bytes are not valid UTF-8 (then nameRaw holds them)'),
    nameRaw: base64().optional().describe('the name\'s bytes in base64, when they are not valid UTF-8'),
    type: z.enum(NODE_TYPES),
    mode: z.int().min(0).max(0o7777).describe('permission bits including setuid, setgid, sticky (st_mode & 0o7777)'),
    uid: z.int().min(0),
    gid: z.int().min(0),
    mtime: nsTime().describe('nanoseconds since the epoch, decimal'),
    ctime: nsTime().describe('nanoseconds since the epoch, decimal'),
    inode: z.number().describe('from lstat; change detection and hard links'),
    dev: z.number().describe('from lstat; change detection and hard links'),
    nlink: z.int().min(0),
    size: z.int().min(0).optional().describe('files: bytes in the file'),
    content: z
      .array(z.string().regex(/^(?:[0-9a-f]{64}|0:\d+)$/, { error: 'must be a chunk id (64 hex digits) or a hole "0:<bytes>"' }))
      .optional()
      .describe('files: chunk ids (hex) in order; "0:<n>" stands for a hole of n zero bytes'),
    subtree: hexId().optional().describe('directories: id of the directory\'s tree'),
    linkTarget: z.string().optional().describe('symlinks: the target as UTF-8'),
    linkTargetRaw: base64().optional().describe('symlinks: the target\'s bytes in base64, when they are not valid UTF-8'),
    rdev: z.number().optional().describe('devices: device number'),
    changed: z.boolean().optional().describe('the file changed while it was read: the stored content may mix versions'),
  })
  .refine((n) => n.type !== 'dir' || n.subtree !== undefined, { error: 'is missing (a directory node needs the id of its tree)', path: ['subtree'] });
export type Node = z.infer<typeof NodeSchema>;

/** One directory's listing: nodes sorted by the bytes of their names. */
export const TreeSchema = z.object({ nodes: z.array(NodeSchema) }).meta({ title: 'meshback tree', description: 'One directory\'s listing, stored as a tree blob (JSON); nodes sorted by the bytes of their names, names unique and single path components.' });
export type Tree = z.infer<typeof TreeSchema>;
// trees are decoded on the hot path of restore and check: the schema compiled to one function
// (zod 4's compiler; it falls back to the ordinary parser, with the same issues, on a failure)
const treeParser = z.compile(TreeSchema);

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
  const t = checked(treeParser, parseJson(data.toString('utf8'), (m) => fail(`the tree ${m}`)), fail);
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
