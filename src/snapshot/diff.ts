/**
 * snapshot/diff: what changed between two snapshots' trees, path by path. Identical subtrees
 * (same tree id) are skipped without loading them: a diff costs what changed, not the volume.
 */
import type { Node } from './tree.ts';
import { childPath, displayPath, walkPair } from './walker.ts';
import type { TreeLoader } from './walker.ts';

/** + added, - removed, M content modified, T type changed, U metadata only (mode, owner, mtime) */
export type Change = '+' | '-' | 'M' | 'T' | 'U';

export interface DiffEntry {
  change: Change;
  /** '/a/b', with a trailing '/' for directories added, removed or changed in metadata */
  path: string;
}

export interface DiffCounts {
  added: number;
  removed: number;
  modified: number;
  type_changed: number;
  metadata: number;
}

const sameOwner = (x: Node, y: Node): boolean => x.mode === y.mode && x.uid === y.uid && x.gid === y.gid;

/** The changes from node list `a` (older) to `b` (newer), in path order. */
export async function diffTrees(loader: TreeLoader, a: Node[], b: Node[], emit: (e: DiffEntry) => void): Promise<DiffCounts> {
  const counts: DiffCounts = { added: 0, removed: 0, modified: 0, type_changed: 0, metadata: 0 };
  const push = (change: Change, path: string): void => {
    if (change === '+') counts.added++;
    else if (change === '-') counts.removed++;
    else if (change === 'M') counts.modified++;
    else if (change === 'T') counts.type_changed++;
    else counts.metadata++;
    emit({ change, path });
  };
  const visit = (x: Node | undefined, y: Node | undefined, dir: Buffer): 'skip' | undefined => {
    const p = displayPath(childPath(dir, (x ?? y)!));
    if (x === undefined || y === undefined) {
      const n = (x ?? y)!;
      push(x === undefined ? '+' : '-', p + (n.type === 'dir' ? '/' : ''));
      return;
    }
    if (x.type !== y.type) {
      push('T', p);
      return 'skip';
    }
    if (x.type === 'dir') return; // its own metadata is said after its contents (leave)
    if (x.type === 'file' && (x.content ?? []).join() !== (y.content ?? []).join()) push('M', p);
    else if (x.type === 'symlink' && (x.linkTarget !== y.linkTarget || x.linkTargetRaw !== y.linkTargetRaw)) push('M', p);
    else if (!sameOwner(x, y) || x.mtime !== y.mtime) push('U', p);
    return undefined;
  };
  const leave = (x: Node | undefined, y: Node | undefined, dir: Buffer): void => {
    if (x?.type === 'dir' && y?.type === 'dir' && !sameOwner(x, y)) push('U', displayPath(childPath(dir, x)) + '/');
  };
  await walkPair(loader, a, b, { visit, leave });
  return counts;
}
