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

export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

export interface Node {
  name: string;
  nameRaw?: string;
  type: NodeType;
  /** permission bits including setuid, setgid, sticky (st_mode & 0o7777) */
  mode: number;
  uid: number;
  gid: number;
  /** nanoseconds since the epoch, decimal */
  mtime: string;
  ctime: string;
  inode: number;
  dev: number;
  nlink: number;
  size?: number;
  /** file content: chunk ids (hex) in order; "0:<n>" stands for a hole of n zero bytes */
  content?: string[];
  subtree?: string;
  linkTarget?: string;
  linkTargetRaw?: string;
  rdev?: number;
  /** set when the file changed while it was read: the stored content may mix versions */
  changed?: boolean;
}

export interface Tree {
  nodes: Node[];
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
  let t: unknown;
  try {
    t = JSON.parse(data.toString('utf8'));
  } catch {
    throw new IntegrityError(`tree ${id.slice(0, 16)} is not valid JSON`, { tree: id });
  }
  if (typeof t !== 'object' || t === null || !Array.isArray((t as Tree).nodes)) throw new IntegrityError(`tree ${id.slice(0, 16)} is malformed`, { tree: id });
  const seen = new Set<string>();
  for (const n of (t as Tree).nodes as unknown[]) {
    if (!isNodeShape(n)) throw new IntegrityError(`tree ${id.slice(0, 16)} holds a malformed node`, { tree: id });
    const raw = nodeNameBytes(n);
    if (raw.length === 0 || raw.includes(0x2f) || raw.includes(0) || raw.equals(Buffer.from('.')) || raw.equals(Buffer.from('..'))) {
      throw new IntegrityError(`tree ${id.slice(0, 16)} holds an unsafe name ${JSON.stringify(displayName(raw))}: refusing to use it`, { tree: id });
    }
    const k = raw.toString('hex');
    if (seen.has(k)) throw new IntegrityError(`tree ${id.slice(0, 16)} holds the name ${JSON.stringify(displayName(raw))} twice`, { tree: id });
    seen.add(k);
  }
  return t as Tree;
}

export const HOLE_PREFIX = '0:';

const NODE_TYPES = new Set(['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev']);

function isNodeShape(n: unknown): n is Node {
  if (typeof n !== 'object' || n === null) return false;
  const x = n as Record<string, unknown>;
  return (
    typeof x['name'] === 'string' && (x['nameRaw'] === undefined || typeof x['nameRaw'] === 'string') && typeof x['type'] === 'string' && NODE_TYPES.has(x['type']) &&
    typeof x['mode'] === 'number' && typeof x['uid'] === 'number' && typeof x['gid'] === 'number' && typeof x['mtime'] === 'string' && /^-?\d+$/.test(x['mtime']) &&
    (x['content'] === undefined || (Array.isArray(x['content']) && x['content'].every((c) => typeof c === 'string' && (/^[0-9a-f]{64}$/.test(c) || /^0:\d+$/.test(c))))) &&
    (x['subtree'] === undefined || (typeof x['subtree'] === 'string' && /^[0-9a-f]{64}$/.test(x['subtree']))) &&
    (x['type'] !== 'dir' || typeof x['subtree'] === 'string')
  );
}
