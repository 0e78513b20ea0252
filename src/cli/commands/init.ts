import { MeshbackError, UsageError, errMessage } from '../../errors/index.ts';
import { DEFAULT_PARITY, parseParityScheme, schemeString } from '../../parity/index.ts';
import type { ParityScheme } from '../../parity/index.ts';
import { Repository } from '../../repository/index.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import { backendFor, getPassword, repoLocation } from '../context.ts';
import { EXIT } from '../exit.ts';

export const initCommand: Command = {
  name: 'init',
  summary: 'create a new repository',
  usage: 'meshback init --repo DIR [--parity [K+M]]',
  options: {
    parity: {
      type: 'string',
      argument: 'K+M',
      optionalValue: schemeString(DEFAULT_PARITY),
      description: `write Reed-Solomon parity for every pack: M parity blocks per K data blocks (default ${schemeString(DEFAULT_PARITY)}, about M/K extra space); up to M damaged blocks per stripe are rebuilt by 'meshback repair packs'`,
    },
  },
  async run(ctx, v) {
    const parityArg = str(v['parity']);
    let parity: ParityScheme | undefined;
    if (parityArg !== undefined) {
      try {
        parity = parseParityScheme(parityArg);
      } catch (err) {
        throw new UsageError(`--parity ${errMessage(err)}`);
      }
    }
    const backend = backendFor(repoLocation(ctx.g), ctx.out.sink);
    if (await backend.exists()) throw new MeshbackError('REPO_EXISTS', `a repository already exists at ${backend.location}: use it, or choose another --repo`);
    const password = await getPassword(ctx.g, { confirm: true });
    const repo = await Repository.init(backend, password, parity !== undefined ? { parity } : {});
    ctx.out.result(`created repository ${repo.config.id} at ${backend.location}`);
    if (parity !== undefined) ctx.out.info(`parity ${schemeString(parity)}: every pack gets a parity file of about ${((100 * parity.m) / parity.k).toFixed(1)}% of its size`);
    ctx.out.info('keep the password safe: without it the data cannot be recovered');
    ctx.out.jsonOut({ message_type: 'summary', id: repo.config.id, location: backend.location, chunker: { ...repo.config.chunker, seed: undefined }, compression: repo.config.compression, packSize: repo.config.packSize, parity: repo.config.parity ?? null });
    return EXIT.OK;
  },
};
