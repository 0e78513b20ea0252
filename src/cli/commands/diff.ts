import { UsageError } from '../../errors/index.ts';
import type { Repository } from '../../repository/index.ts';
import { displayName, nodeNameBytes } from '../../snapshot/tree.ts';
import type { Node } from '../../snapshot/tree.ts';
import type { Command } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';

export interface DiffEntry {
  change: '+' | '-' | 'M' | 'T' | 'U';
  path: string;
}

/** Compares two node lists; identical subtrees (same tree id) are skipped without loading. */
export async function diffNodes(repo: Repository, a: Node[], b: Node[], dir: string, out: DiffEntry[]): Promise<void> {
  const key = (n: Node): string => nodeNameBytes(n).toString('latin1');
  const am = new Map(a.map((n) => [key(n), n]));
  const bm = new Map(b.map((n) => [key(n), n]));
  const names = [...new Set([...am.keys(), ...bm.keys()])].sort((x, y) => Buffer.compare(Buffer.from(x, 'latin1'), Buffer.from(y, 'latin1')));
  const all = async (nodes: Node[], p: string, change: '+' | '-'): Promise<void> => {
    for (const n of nodes) {
      const q = `${p}/${displayName(nodeNameBytes(n))}`;
      out.push({ change, path: q + (n.type === 'dir' ? '/' : '') });
      if (n.type === 'dir' && n.subtree !== undefined) await all((await repo.loadTree(n.subtree)).nodes, q, change);
    }
  };
  for (const k of names) {
    const x = am.get(k);
    const y = bm.get(k);
    const p = `${dir}/${displayName(Buffer.from(k, 'latin1'))}`;
    if (x === undefined) await all([y!], dir, '+');
    else if (y === undefined) await all([x], dir, '-');
    else if (x.type !== y.type) out.push({ change: 'T', path: p });
    else if (x.type === 'dir') {
      if (x.subtree !== y.subtree) await diffNodes(repo, (await repo.loadTree(x.subtree!)).nodes, (await repo.loadTree(y.subtree!)).nodes, p, out);
      if (x.mode !== y.mode || x.uid !== y.uid || x.gid !== y.gid) out.push({ change: 'U', path: p + '/' });
    } else if (x.type === 'file' && (x.content ?? []).join() !== (y.content ?? []).join()) out.push({ change: 'M', path: p });
    else if (x.type === 'symlink' && (x.linkTarget !== y.linkTarget || x.linkTargetRaw !== y.linkTargetRaw)) out.push({ change: 'M', path: p });
    else if (x.mode !== y.mode || x.uid !== y.uid || x.gid !== y.gid || x.mtime !== y.mtime) out.push({ change: 'U', path: p });
  }
}

export const diffCommand: Command = {
  name: 'diff',
  summary: 'show what changed between two snapshots',
  usage: 'meshback diff SNAPSHOT1 SNAPSHOT2 [--json]',
  options: {},
  async run(ctx, _v, positionals) {
    if (positionals.length !== 2) throw new UsageError('diff needs two snapshots: meshback diff OLD NEW');
    const repo = await openRepo(ctx, { lock: 'none', command: 'diff' });
    const a = await repo.findSnapshot(positionals[0]!);
    const b = await repo.findSnapshot(positionals[1]!);
    const va = await repo.rootView(a.snapshot);
    const vb = await repo.rootView(b.snapshot);
    const out: DiffEntry[] = [];
    await diffNodes(repo, va.nodes, vb.nodes, '', out);
    const counts = { added: 0, removed: 0, modified: 0, type_changed: 0, metadata: 0 };
    for (const e of out) {
      if (e.change === '+') counts.added++;
      else if (e.change === '-') counts.removed++;
      else if (e.change === 'M') counts.modified++;
      else if (e.change === 'T') counts.type_changed++;
      else counts.metadata++;
      ctx.out.result(`${e.change}    ${e.path}`);
    }
    ctx.out.result(`${counts.added} added, ${counts.removed} removed, ${counts.modified} modified, ${counts.type_changed} changed type, ${counts.metadata} metadata only`);
    ctx.out.jsonOut({ message_type: 'summary', from: a.id, to: b.id, changes: out, ...counts });
    return EXIT.OK;
  },
};
