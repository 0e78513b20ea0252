import { MeshbackError, UsageError, errMessage } from '../../errors/index.ts';
import { DEFAULT_PARITY, parseParityScheme, schemeString } from '../../parity/index.ts';
import type { ParityScheme } from '../../parity/index.ts';
import { MAX_LOCK_DAYS, Repository } from '../../repository/index.ts';
import type { ObjectLockPolicy } from '../../storage/backend.ts';
import type { Command } from '../command.ts';
import { str } from '../command.ts';
import { backendFor, getPassword, repoLocation } from '../context.ts';
import { EXIT } from '../exit.ts';

export const initCommand: Command = {
  name: 'init',
  summary: 'create a new repository',
  usage: 'meshback init --repo LOCATION [--parity [K+M]] [--object-lock DAYS [--object-lock-mode compliance|governance]]',
  options: {
    parity: {
      type: 'string',
      argument: 'K+M',
      optionalValue: schemeString(DEFAULT_PARITY),
      description: `write Reed-Solomon parity for every pack: M parity blocks per K data blocks (default ${schemeString(DEFAULT_PARITY)}, about M/K extra space); up to M damaged blocks per stripe are rebuilt by 'meshback repair packs'`,
    },
    'object-lock': {
      type: 'string',
      argument: 'DAYS',
      description: 'immutable backups (an S3 bucket with Object Lock): every file is written with a retention of DAYS days, extended while kept snapshots use it; nothing can delete it before then',
    },
    'object-lock-mode': {
      type: 'string',
      argument: 'MODE',
      description: "with --object-lock: 'compliance' (default: nobody can shorten or lift a retention, not even the account's root) or 'governance' (users with s3:BypassGovernanceRetention can)",
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
    const lockArg = str(v['object-lock']);
    const modeArg = str(v['object-lock-mode']);
    let objectLock: ObjectLockPolicy | undefined;
    if (modeArg !== undefined && lockArg === undefined) throw new UsageError('--object-lock-mode is for --object-lock DAYS: give both, or neither');
    if (lockArg !== undefined) {
      const days = /^\d{1,6}$/.test(lockArg) ? Number(lockArg) : NaN;
      if (!(days >= 1 && days <= MAX_LOCK_DAYS)) throw new UsageError(`--object-lock ${JSON.stringify(lockArg)}: give the retention as a whole number of days from 1 to ${MAX_LOCK_DAYS} (e.g. --object-lock 30)`);
      const mode = modeArg ?? 'compliance';
      if (mode !== 'compliance' && mode !== 'governance') throw new UsageError(`--object-lock-mode ${JSON.stringify(modeArg)}: write compliance or governance`);
      objectLock = { days, mode };
    }
    const backend = backendFor(repoLocation(ctx.g), ctx.out.sink);
    if (await backend.exists()) throw new MeshbackError('REPO_EXISTS', `a repository already exists at ${backend.location}: use it, or choose another --repo`);
    const password = await getPassword(ctx.g, { confirm: true });
    const repo = await Repository.init(backend, password, { ...(parity !== undefined ? { parity } : {}), ...(objectLock !== undefined ? { objectLock } : {}) });
    ctx.out.result(`created repository ${repo.config.id} at ${backend.location}`);
    if (parity !== undefined) ctx.out.info(`parity ${schemeString(parity)}: every pack gets a parity file of about ${((100 * parity.m) / parity.k).toFixed(1)}% of its size`);
    if (objectLock !== undefined) ctx.out.info(`object lock: every file is kept immutable (${objectLock.mode} mode) for ${objectLock.days} day(s) after it is written, and longer while kept snapshots use it`);
    ctx.out.info('keep the password safe: without it the data cannot be recovered');
    ctx.out.jsonOut({ message_type: 'summary', id: repo.config.id, location: backend.location, chunker: { ...repo.config.chunker, seed: undefined }, compression: repo.config.compression, packSize: repo.config.packSize, parity: repo.config.parity ?? null, objectLock: repo.config.objectLock ?? null });
    return EXIT.OK;
  },
};
