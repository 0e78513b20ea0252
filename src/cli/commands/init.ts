import { MeshbackError } from '../../errors/index.ts';
import { Repository } from '../../repository/index.ts';
import type { Command } from '../command.ts';
import { backendFor, getPassword, repoLocation } from '../context.ts';
import { EXIT } from '../exit.ts';

export const initCommand: Command = {
  name: 'init',
  summary: 'create a new repository',
  usage: 'meshback init --repo DIR',
  options: {},
  async run(ctx) {
    const backend = backendFor(repoLocation(ctx.g));
    if (await backend.exists()) throw new MeshbackError('REPO_EXISTS', `a repository already exists at ${backend.location}: use it, or choose another --repo`);
    const password = await getPassword(ctx.g, { confirm: true });
    const repo = await Repository.init(backend, password);
    ctx.out.result(`created repository ${repo.config.id} at ${backend.location}`);
    ctx.out.info('keep the password safe: without it the data cannot be recovered');
    ctx.out.jsonOut({ message_type: 'summary', id: repo.config.id, location: backend.location, chunker: { ...repo.config.chunker, seed: undefined }, compression: repo.config.compression, packSize: repo.config.packSize });
    return EXIT.OK;
  },
};
