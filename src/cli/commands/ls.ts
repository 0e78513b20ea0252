import { MeshbackError, UsageError } from '../../errors/index.ts';
import { HOLE_PREFIX } from '../../snapshot/tree.ts';
import { childPath, displayPath, walkTree } from '../../snapshot/walker.ts';
import type { Node } from '../../snapshot/tree.ts';
import type { Command } from '../command.ts';
import { bool } from '../command.ts';
import { openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';

function modeString(n: Node): string {
  const t = n.type === 'dir' ? 'd' : n.type === 'symlink' ? 'l' : n.type === 'fifo' ? 'p' : n.type === 'socket' ? 's' : n.type === 'chardev' ? 'c' : n.type === 'blockdev' ? 'b' : '-';
  const m = n.mode;
  const r = (b: number, c: string): string => ((m & b) !== 0 ? c : '-');
  return t + r(0o400, 'r') + r(0o200, 'w') + ((m & 0o4000) !== 0 ? 's' : r(0o100, 'x')) + r(0o40, 'r') + r(0o20, 'w') + ((m & 0o2000) !== 0 ? 's' : r(0o10, 'x')) + r(0o4, 'r') + r(0o2, 'w') + ((m & 0o1000) !== 0 ? 't' : r(0o1, 'x'));
}

export const lsCommand: Command = {
  name: 'ls',
  summary: "list a snapshot's files",
  usage: 'meshback ls SNAPSHOT|latest [PATH] [--long] [--json]',
  options: {
    long: { type: 'boolean', short: 'l', description: 'show mode, owner, size and time' },
  },
  async run(ctx, v, positionals) {
    if (positionals.length < 1 || positionals.length > 2) throw new UsageError('ls needs a SNAPSHOT and optionally a PATH inside it');
    const repo = await openRepo(ctx, { lock: 'none', command: 'ls' });
    const ref = await repo.findSnapshot(positionals[0]!);
    const view = await repo.rootView(ref.snapshot);
    const prefix = (positionals[1] ?? '/').replace(/\/+$/, '');
    const long = bool(v['long']);
    let found = prefix === '';
    const list: unknown[] = [];
    await walkTree(repo, { nodes: view.nodes }, (n, dir) => {
      const p = displayPath(childPath(dir, n));
      const inside = p === prefix || p.startsWith(prefix + '/') || prefix === '';
      if (!inside) return prefix.startsWith(p + '/') ? undefined : 'skip';
      found = true;
      if (ctx.out.json) list.push({ path: p, type: n.type, size: n.size, mode: n.mode, uid: n.uid, gid: n.gid, mtime: n.mtime, ...(n.linkTarget !== undefined ? { link_target: n.linkTarget } : {}), ...(n.content !== undefined ? { holes: n.content.filter((c) => c.startsWith(HOLE_PREFIX)).length } : {}) });
      else if (long) {
        const t = new Date(Number(BigInt(n.mtime) / 1000000n)).toISOString().replace('T', ' ').slice(0, 19);
        ctx.out.result(`${modeString(n)} ${String(n.uid).padStart(5)} ${String(n.gid).padStart(5)} ${String(n.size ?? 0).padStart(12)} ${t} ${p}${n.type === 'symlink' ? ` -> ${n.linkTarget ?? '(binary)'}` : ''}`);
      } else ctx.out.result(p);
      return undefined;
    });
    if (!found) throw new MeshbackError('NOT_FOUND', `${prefix} is not in snapshot ${ref.id.slice(0, 8)}`);
    ctx.out.jsonOut(list);
    return EXIT.OK;
  },
};
