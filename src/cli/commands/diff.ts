import { UsageError } from '../../errors/index.ts';
import { diffTrees } from '../../snapshot/diff.ts';
import type { DiffEntry } from '../../snapshot/diff.ts';
import type { Command } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';

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
    const counts = await diffTrees(repo, va.nodes, vb.nodes, (e) => {
      out.push(e);
      ctx.out.result(`${e.change}    ${e.path}`);
    });
    ctx.out.result(`${counts.added} added, ${counts.removed} removed, ${counts.modified} modified, ${counts.type_changed} changed type, ${counts.metadata} metadata only`);
    ctx.out.jsonOut({ message_type: 'summary', from: a.id, to: b.id, changes: out, ...counts });
    return EXIT.OK;
  },
};
