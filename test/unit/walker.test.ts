/**
 * snapshot/walker: the one tree walker (depth-first in name order, breadth-first with
 * concurrency, shared subtrees once, skips, load errors), the paired walk of diff, the fold of
 * repair; and diff's output over it.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IntegrityError } from '../../src/errors/index.ts';
import { diffTrees } from '../../src/snapshot/diff.ts';
import type { Node, Tree } from '../../src/snapshot/tree.ts';
import { childPath, displayPath, foldTrees, walkPair, walkTree } from '../../src/snapshot/walker.ts';

const meta = { mode: 0o644, uid: 0, gid: 0, mtime: '0', ctime: '0', inode: 0, dev: 0, nlink: 1 };
const file = (name: string, content: string[] = []): Node => ({ name, type: 'file', size: 0, content, ...meta });
const dir = (name: string, subtree: string): Node => ({ name, type: 'dir', subtree, ...meta, mode: 0o755 });
const id = (c: string): string => c.repeat(64);

/** An in-memory repository of trees that counts its loads. */
function trees(t: Record<string, Node[]>): { loadTree(id: string): Promise<Tree>; loads: string[] } {
  const loads: string[] = [];
  return {
    loads,
    async loadTree(tid: string): Promise<Tree> {
      loads.push(tid);
      const nodes = t[tid];
      if (nodes === undefined) throw new IntegrityError(`tree ${tid.slice(0, 4)} is missing`);
      return { nodes };
    },
  };
}

// root: a/ (shared subtree S: x, y), b/ (the same S again), c (file), d/ (T: z)
const S = id('s');
const T = id('t');
const R = id('r');
const repo = (): ReturnType<typeof trees> => trees({ [R]: [dir('a', S), dir('b', S), file('c'), dir('d', T)], [S]: [file('x'), file('y')], [T]: [file('z')] });

describe('walkTree', () => {
  it('visits every node depth-first in name order, with the path of its directory', async () => {
    const r = repo();
    const seen: string[] = [];
    await walkTree(r, { tree: R }, (n, d) => void seen.push(displayPath(childPath(d, n))));
    assert.deepEqual(seen, ['/a', '/a/x', '/a/y', '/b', '/b/x', '/b/y', '/c', '/d', '/d/z']);
    assert.deepEqual(r.loads, [R, S, S, T]);
  });

  it("'skip' keeps the walk out of a directory; uniqueTrees loads a shared subtree once (a Set is shared across walks)", async () => {
    const r = repo();
    const seen: string[] = [];
    const shared = new Set<string>();
    await walkTree(r, { tree: R }, (n, d) => {
      seen.push(displayPath(childPath(d, n)));
      return n.name === 'd' ? 'skip' : undefined;
    }, { uniqueTrees: shared });
    assert.deepEqual(seen, ['/a', '/a/x', '/a/y', '/b', '/c', '/d']);
    assert.deepEqual(r.loads, [R, S]);
    await walkTree(r, { tree: R }, () => undefined, { uniqueTrees: shared });
    assert.deepEqual(r.loads, [R, S], 'the same root again (a second snapshot of it) is not read again');
    await walkTree(r, { nodes: [dir('a', S), dir('d', T)] }, () => undefined, { uniqueTrees: shared });
    assert.deepEqual(r.loads, [R, S, T], 'another walk loads only what the first did not');
  });

  it('breadth-first with concurrency: level by level, every node once per path', async () => {
    const r = repo();
    const seen: string[] = [];
    await walkTree(r, { nodes: [dir('root', R)] }, (n, d) => void seen.push(displayPath(childPath(d, n))), { concurrency: 3 });
    assert.deepEqual(seen.slice(0, 5), ['/root', '/root/a', '/root/b', '/root/c', '/root/d']);
    assert.deepEqual([...seen].sort(), ['/root', '/root/a', '/root/a/x', '/root/a/y', '/root/b', '/root/b/x', '/root/b/y', '/root/c', '/root/d', '/root/d/z']);
  });

  it('a tree that cannot be loaded: reported and skipped with onTreeError, fatal without', async () => {
    const broken = trees({ [R]: [dir('a', S), file('c')] });
    const errors: string[] = [];
    const seen: string[] = [];
    await walkTree(broken, { tree: R }, (n, d) => void seen.push(displayPath(childPath(d, n))), { onTreeError: (err, tid, d) => void errors.push(`${displayPath(d)} ${tid.slice(0, 1)} ${(err as Error).message}`) });
    assert.deepEqual(seen, ['/a', '/c']);
    assert.deepEqual(errors, ['/a s tree ssss is missing']);
    await assert.rejects(walkTree(broken, { tree: R }, () => undefined), /tree ssss is missing/);
  });

  it('shouldLoad leaves a subtree out before it is read; onTree counts the loaded ones', async () => {
    const r = repo();
    let loaded = 0;
    await walkTree(r, { tree: R }, () => undefined, { shouldLoad: (tid) => tid !== S, onTree: () => void loaded++ });
    assert.deepEqual(r.loads, [R, T]);
    assert.equal(loaded, 2);
  });
});

describe('walkPair and diffTrees', () => {
  it('identical subtrees are never loaded; changes come out in path order', async () => {
    const U = id('u');
    const r = trees({ [S]: [file('x', [id('1')])], [T]: [file('z')], [U]: [file('x', [id('2')]), file('w')] });
    const a = [dir('a', S), dir('d', T), file('gone')];
    const b = [dir('a', U), dir('d', T), file('new'), { ...file('gone'), type: 'symlink' as const, linkTarget: 'x' }];
    const out: string[] = [];
    const counts = await diffTrees(r, a, b, (e) => out.push(`${e.change} ${e.path}`));
    assert.deepEqual(out, ['+ /a/w', 'M /a/x', 'T /gone', '+ /new']);
    assert.deepEqual(counts, { added: 2, removed: 0, modified: 1, type_changed: 1, metadata: 0 });
    assert.ok(!r.loads.includes(T), 'the unchanged subtree d/ was not read');
  });

  it('a directory on one side only is listed with its contents; its own metadata change comes after them', async () => {
    const r = trees({ [S]: [file('x')], [T]: [file('x'), file('y')] });
    const out: string[] = [];
    await diffTrees(r, [dir('a', S)], [{ ...dir('a', T), mode: 0o700 }, dir('n', S)], (e) => out.push(`${e.change} ${e.path}`));
    assert.deepEqual(out, ['+ /a/y', 'U /a/', '+ /n/', '+ /n/x']);
    const visits: string[] = [];
    await walkPair(r, [dir('a', S)], [dir('a', S)], { visit: (x, y, d) => void visits.push(`${displayPath(childPath(d, (x ?? y)!))}`) });
    assert.deepEqual(visits, ['/a']);
  });
});

describe('foldTrees', () => {
  it('folds post-order, each tree once however often it is shared; a load error gives onError', async () => {
    const r = trees({ [R]: [dir('a', S), dir('b', S), dir('gone', id('g'))], [S]: [file('x'), file('y')] });
    const count = foldTrees<number>(
      r,
      async (_tid, tree, child) => {
        let n = 0;
        for (const x of tree.nodes) n += x.type === 'dir' ? await child(x.subtree!) : 1;
        return n;
      },
      () => -100,
    );
    assert.equal(await count(R), 2 + 2 - 100);
    assert.deepEqual(r.loads.filter((t) => t === S).length, 1);
  });
});
