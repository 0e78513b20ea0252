import type { Command } from '../command.ts';
import { str, strs } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';
import { fmtBytes } from '../../util/units.ts';

export const snapshotsCommand: Command = {
  name: 'snapshots',
  summary: 'list snapshots',
  usage: 'meshback snapshots [--host NAME] [--tag KEY=VALUE]... [--json]',
  options: {
    host: { type: 'string', argument: 'NAME', description: 'only snapshots of this host' },
    tag: { type: 'string', multiple: true, argument: 'KEY=VALUE', description: 'only snapshots with this tag (repeatable: all must match)' },
  },
  async run(ctx, v) {
    const repo = await openRepo(ctx, { lock: 'none', command: 'snapshots', loadIndex: false });
    const host = str(v['host']);
    const tags = strs(v['tag']);
    const all = (await repo.listSnapshots()).filter((s) => (host === undefined || s.snapshot.host === host) && tags.every((t) => s.snapshot.tags.includes(t)));
    if (ctx.out.json) {
      ctx.out.jsonOut(all.map((s) => ({ id: s.id, short_id: s.id.slice(0, 8), ...s.snapshot })));
      return EXIT.OK;
    }
    const rows = all.map((s) => [s.id.slice(0, 8), s.snapshot.time.replace('T', ' ').replace(/\.\d+Z$/, 'Z'), s.snapshot.host, fmtBytes(s.snapshot.summary.totalBytes), String(s.snapshot.summary.files), s.snapshot.tags.join(','), s.snapshot.paths.join(' ') + (s.snapshot.incomplete !== undefined ? '  [incomplete]' : '')]);
    const head = ['ID', 'Time', 'Host', 'Size', 'Files', 'Tags', 'Paths'];
    const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const fmt = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ');
    ctx.out.result(fmt(head));
    ctx.out.result(w.map((n) => '-'.repeat(n)).join('  '));
    for (const r of rows) ctx.out.result(fmt(r));
    ctx.out.result(`${all.length} snapshot(s)`);
    return EXIT.OK;
  },
};
