/**
 * storage/layout: where each kind of file lives in a repository, the same for every backend (a
 * directory tree on the local backend, key prefixes on S3), so a repository copied from one to the
 * other with a plain file or object copy stays readable:
 *
 *   config            the repository config
 *   keys/<id>         key files
 *   data/<xx>/<id>    pack files, sharded by the first two hex digits of their id
 *   index/<id>        index files
 *   snapshots/<id>    snapshot manifests
 *   locks/<id>        lock files
 *   parity/<xx>/<id>  parity files of packs, named and sharded like the pack they protect
 *
 * Backends never build these paths themselves.
 */
import type { FileType, Handle } from './backend.ts';
import { BackendError } from '../errors/index.ts';

/** The directory (key prefix) of each file type; '' for the config at the top. */
export const LAYOUT_DIRS: Readonly<Record<FileType, string>> = {
  config: '',
  key: 'keys',
  pack: 'data',
  index: 'index',
  snapshot: 'snapshots',
  lock: 'locks',
  parity: 'parity',
};

/** Files of this type sit one level deeper, in a directory named by the first two characters of their name. */
export function isSharded(type: FileType): boolean {
  return type === 'pack' || type === 'parity';
}

/** The file's path below the repository's root, '/'-separated; a name that could escape its directory is refused. */
export function layoutPath(h: Handle): string {
  if (h.type === 'config') return 'config';
  if (!/^[0-9a-zA-Z._-]+$/.test(h.name) || h.name.startsWith('.')) {
    throw new BackendError(`invalid file name ${JSON.stringify(h.name)} for ${h.type}`, { retryable: false });
  }
  return isSharded(h.type) ? `${LAYOUT_DIRS[h.type]}/${h.name.slice(0, 2)}/${h.name}` : `${LAYOUT_DIRS[h.type]}/${h.name}`;
}
