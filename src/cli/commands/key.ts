import { UsageError } from '../../errors/index.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import { getNewPassword, openRepo } from '../context.ts';
import { EXIT } from '../exit.ts';

export const keyCommand: Command = {
  name: 'key',
  summary: 'manage the passwords (keys) that open the repository',
  usage: 'meshback key list | key add | key remove ID | key passwd   [--new-password-file FILE]',
  options: {
    'new-password-file': { type: 'string', argument: 'FILE', description: 'read the new password from FILE (else MESHBACK_NEW_PASSWORD, else a prompt)' },
  },
  async run(ctx, v, positionals) {
    const sub = positionals[0];
    if (sub === undefined || !['list', 'add', 'remove', 'passwd'].includes(sub)) throw new UsageError('key needs a subcommand: list, add, remove ID, or passwd');
    const repo = await openRepo(ctx, { lock: 'none', command: 'key', loadIndex: false });
    if (sub === 'list') {
      const keys = await repo.listKeys();
      if (ctx.out.json) {
        ctx.out.jsonOut(keys.map((k) => ({ id: k.id, current: k.id === repo.keyId, ...(k.file === undefined ? { damaged: true, problem: k.damaged } : { created: k.file.created, host: k.file.host, username: k.file.username, kdf: { name: k.file.kdf.name, N: k.file.kdf.N, r: k.file.kdf.r, p: k.file.kdf.p } }) })));
        return EXIT.OK;
      }
      ctx.out.result(' ID        Host                 User       Created');
      for (const k of keys) {
        const f = k.file;
        ctx.out.result(`${k.id === repo.keyId ? '*' : ' '}${k.id.slice(0, 8)}  ${f === undefined ? `DAMAGED: not a valid key file (${k.damaged ?? 'unreadable'}); remove it with meshback key remove ${k.id.slice(0, 8)}` : `${f.host.padEnd(20)} ${f.username.padEnd(10)} ${f.created}`}`);
      }
      return EXIT.OK;
    }
    if (sub === 'add') {
      const id = await repo.addKey(await getNewPassword(str(v['new-password-file'])));
      ctx.out.result(`added key ${id.slice(0, 8)}`);
      ctx.out.jsonOut({ message_type: 'summary', added: id });
      return EXIT.OK;
    }
    if (sub === 'remove') {
      const id = positionals[1];
      if (id === undefined) throw new UsageError('key remove needs the ID of the key (see meshback key list)');
      await repo.removeKey(id);
      ctx.out.result(`removed key ${id}: its password no longer opens the repository`);
      ctx.out.jsonOut({ message_type: 'summary', removed: id });
      return EXIT.OK;
    }
    const { added, removed } = await repo.changePassword(await getNewPassword(str(v['new-password-file'])));
    ctx.out.result(`password changed: new key ${added.slice(0, 8)}, old key ${removed.slice(0, 8)} removed`);
    ctx.out.jsonOut({ message_type: 'summary', added, removed });
    return EXIT.OK;
  },
};
