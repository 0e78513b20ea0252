/**
 * snapshot/walker: the one way through a snapshot's trees. check, diff, ls, prune, repair and
 * restore all walk with it; none loads subtrees on its own.
 *
 * Three shapes of walk:
 * - walkTree: every node below a root (a tree id, or the node list of a snapshot's root view),
 *   each with the raw path of the directory that lists it. Depth-first in name order (the order
 *   `ls` prints and restore plans), or, with `concurrency` > 1, breadth-first with that many trees
 *   loaded at once (prune's mark phase over every snapshot). `uniqueTrees` loads each tree id once
 *   wherever it appears: a Merkle tree's shared subtrees are one (checks and marks care about ids;
 *   listings care about paths and leave it off). A visitor returning 'skip' on a directory keeps
 *   the walk out of it (restore's --include, ls's PATH).
 * - walkPair: two node lists side by side, paired by name (diff). A subtree with the same id on
 *   both sides is identical and never loaded.
 * - foldTrees: a post-order fold over tree ids, memoized (repair rebuilds a tree from its
 *   children's results; a tree shared by many snapshots is rebuilt once).
 *
 * A tree that cannot be loaded (missing, damaged) goes to `onTreeError`: returning skips it and the
 * walk goes on (check and prune report it); without a handler, or when the handler throws, the
 * walk stops with that error (restore, ls).
 */
import { IntegrityError } from '../errors/index.ts';
import { displayName, nodeNameBytes } from './tree.ts';
import type { Node, Tree } from './tree.ts';
import { parallel } from '../util/parallel.ts';

/** What a walk needs of a repository: the trees, by id. */
export interface TreeLoader {
  loadTree(id: string): Promise<Tree>;
}

/** A walk's starting point: a tree id, or an already loaded node list (a snapshot's root view). */
export type WalkRoot = { tree: string } | { nodes: Node[] };

export type Visit = void | 'skip';

export interface WalkOptions {
  /**
   * load each tree id once, wherever it appears (default: once per path); a Set given here is
   * shared, so a tree seen by one walk is passed over by the next (the snapshots of a check)
   */
  uniqueTrees?: boolean | Set<string>;
  /** trees loaded at once; above 1 the walk goes breadth-first (default 1: depth-first in name order) */
  concurrency?: number;
  /** a tree that failed to load: return to skip it and go on, throw to stop the walk */
  onTreeError?: (err: unknown, id: string, dir: Buffer) => void | Promise<void>;
  /** before a subtree is loaded: false leaves it out (it was found bad already, say) */
  shouldLoad?: (id: string, dir: Buffer) => boolean;
  /** after each tree is loaded (counting, progress) */
  onTree?: (id: string, tree: Tree, dir: Buffer) => void;
}

const SLASH = 0x2f;
const EMPTY = Buffer.alloc(0);

/** The raw path of `node` in the directory `dir` (empty for the root). */
export function childPath(dir: Buffer, node: Node): Buffer {
  const name = nodeNameBytes(node);
  if (dir.length === 0) return name;
  const out = Buffer.allocUnsafe(dir.length + 1 + name.length);
  dir.copy(out, 0);
  out[dir.length] = SLASH;
  name.copy(out, dir.length + 1);
  return out;
}

/** '/a/b' for display: the path below the root with a leading slash; a name that is not valid UTF-8 shows its bytes as \xNN. */
export function displayPath(path: Buffer): string {
  let out = '';
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      out += `/${displayName(path.subarray(start, i))}`;
      start = i + 1;
    }
  }
  return out;
}

/**
 * Calls `visit(node, dir)` for every node below `root`, `dir` being the raw path of the directory
 * that lists the node (empty at the root). Directories are visited before their contents.
 */
export async function walkTree(loader: TreeLoader, root: WalkRoot, visit: (node: Node, dir: Buffer) => Visit | Promise<Visit>, opts: WalkOptions = {}): Promise<void> {
  const seen = opts.uniqueTrees instanceof Set ? opts.uniqueTrees : opts.uniqueTrees === true ? new Set<string>() : undefined;
  const load = async (id: string, dir: Buffer): Promise<Node[] | undefined> => {
    if (seen !== undefined) {
      if (seen.has(id)) return undefined;
      seen.add(id);
    }
    if (opts.shouldLoad !== undefined && !opts.shouldLoad(id, dir)) return undefined;
    let tree: Tree;
    try {
      tree = await loader.loadTree(id);
    } catch (err) {
      if (opts.onTreeError === undefined) throw err;
      await opts.onTreeError(err, id, dir);
      return undefined;
    }
    opts.onTree?.(id, tree, dir);
    return tree.nodes;
  };
  const subtreeOf = (n: Node, path: Buffer): string => {
    if (n.subtree === undefined) throw new IntegrityError(`directory ${displayPath(path)} has no subtree in the snapshot`);
    return n.subtree;
  };

  const top = 'tree' in root ? await load(root.tree, EMPTY) : root.nodes;
  if (top === undefined) return;

  if ((opts.concurrency ?? 1) <= 1) {
    const depthFirst = async (nodes: Node[], dir: Buffer): Promise<void> => {
      for (const n of nodes) {
        const r = await visit(n, dir);
        if (n.type !== 'dir' || r === 'skip') continue;
        const path = childPath(dir, n);
        const sub = await load(subtreeOf(n, path), path);
        if (sub !== undefined) await depthFirst(sub, path);
      }
    };
    await depthFirst(top, EMPTY);
    return;
  }

  // breadth-first: a level's trees load `concurrency` at a time
  const limit = opts.concurrency!;
  let level: { nodes: Node[]; dir: Buffer }[] = [{ nodes: top, dir: EMPTY }];
  while (level.length > 0) {
    const pending: { id: string; dir: Buffer }[] = [];
    for (const { nodes, dir } of level) {
      for (const n of nodes) {
        const r = await visit(n, dir);
        if (n.type !== 'dir' || r === 'skip') continue;
        const path = childPath(dir, n);
        pending.push({ id: subtreeOf(n, path), dir: path });
      }
    }
    const next: { nodes: Node[]; dir: Buffer }[] = [];
    await parallel(pending, limit, async (p) => {
      const nodes = await load(p.id, p.dir);
      if (nodes !== undefined) next.push({ nodes, dir: p.dir });
    });
    level = next;
  }
}

/**
 * Walks two node lists side by side, paired by name in byte order: `v.visit(a, b, dir)` with the
 * node of each side (undefined where a side has none). Directories present on both sides are
 * entered unless their subtree ids are equal (identical) or the visitor returns 'skip'; a directory
 * on one side only is entered too, its contents visited with the other side undefined.
 */
export interface PairVisitor {
  visit(a: Node | undefined, b: Node | undefined, dir: Buffer): Visit | Promise<Visit>;
  /** after a pair's contents were walked (or skipped): what is said of a directory after its contents */
  leave?(a: Node | undefined, b: Node | undefined, dir: Buffer): void;
}

export async function walkPair(loader: TreeLoader, a: Node[], b: Node[], v: PairVisitor, dir: Buffer = EMPTY): Promise<void> {
  const key = (n: Node): string => nodeNameBytes(n).toString('latin1');
  const am = new Map(a.map((n) => [key(n), n]));
  const bm = new Map(b.map((n) => [key(n), n]));
  const names = [...new Set([...am.keys(), ...bm.keys()])].sort((x, y) => Buffer.compare(Buffer.from(x, 'latin1'), Buffer.from(y, 'latin1')));
  const nodesOf = async (n: Node | undefined): Promise<Node[]> => (n?.type === 'dir' && n.subtree !== undefined ? (await loader.loadTree(n.subtree)).nodes : []);
  for (const k of names) {
    const x = am.get(k);
    const y = bm.get(k);
    const r = await v.visit(x, y, dir);
    const xd = x?.type === 'dir';
    const yd = y?.type === 'dir';
    if (r !== 'skip' && (xd || yd) && !(xd && yd && x!.subtree === y!.subtree)) {
      // a side that is not a directory here contributes nothing below it
      await walkPair(loader, xd ? await nodesOf(x) : [], yd ? await nodesOf(y) : [], v, childPath(dir, (x ?? y)!));
    }
    v.leave?.(x, y, dir);
  }
}

/**
 * A post-order fold over trees: `fold(id)` loads the tree and calls `combine(id, tree, child)`,
 * where `child(subtreeId)` folds a subtree (memoized: each id is folded once however many trees
 * share it). A tree that fails to load gives `onError(id, err)`'s result; onError may rethrow.
 */
export function foldTrees<R>(loader: TreeLoader, combine: (id: string, tree: Tree, child: (id: string) => Promise<R>) => Promise<R>, onError: (id: string, err: unknown) => R | Promise<R>): (id: string) => Promise<R> {
  const memo = new Map<string, Promise<R>>();
  const fold = (id: string): Promise<R> => {
    let p = memo.get(id);
    if (p === undefined) {
      p = (async (): Promise<R> => {
        let tree: Tree;
        try {
          tree = await loader.loadTree(id);
        } catch (err) {
          return onError(id, err);
        }
        return combine(id, tree, fold);
      })();
      memo.set(id, p);
    }
    return p;
  };
  return fold;
}
