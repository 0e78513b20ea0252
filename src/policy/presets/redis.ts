/**
 * The redis preset: makes what Redis will load at its next start complete and current on disk
 * before the backup reads it, so that a plain `meshback restore` of the snapshot gives a data
 * directory Redis starts from with every write acknowledged before the backup began.
 *
 * Which files Redis loads at start depends on its configuration: with `appendonly yes` the AOF
 * (Redis 7: appenddirname/, a manifest naming a base file and increment files), and nothing
 * else; with `appendonly no` the RDB file (dbfilename, default dump.rdb). A BGSAVE'd dump.rdb is
 * not what an AOF server restarts from, so the mode follows the server unless given:
 *
 * - aof-rewrite (the default when INFO persistence says aof_enabled:1): BGREWRITEAOF (after any
 *   rewrite or save already running), then wait until aof_rewrite_in_progress:0,
 *   aof_rewrite_scheduled:0 and aof_last_bgrewrite_status:ok. The AOF is then a fresh base file
 *   (everything acknowledged so far, fsynced) and a new, short increment file. While the backup
 *   reads, automatic rewrites are turned off (CONFIG SET auto-aof-rewrite-percentage 0; the value
 *   found is set back by finish()): a rewrite replaces the manifest and deletes the files it
 *   named, so one that ran while the backup walked appendonlydir/ could leave the snapshot with a
 *   manifest naming files it does not hold (Redis' documented way to copy a live AOF). Redis only
 *   appends to the increment file meanwhile; a command cut off at its end is what
 *   `aof-load-truncated yes` (the default) loads past.
 * - bgsave (the default when aof_enabled:0): BGSAVE (BGSAVE SCHEDULE when a rewrite runs; after a
 *   save already running, whose point in time is earlier than this run), then wait until
 *   LASTSAVE advances past its value before, rdb_bgsave_in_progress:0 and
 *   rdb_last_bgsave_status:ok. The RDB file is replaced by a rename, so the backup reads either
 *   the whole new file or the whole old one, never a mix.
 *
 * Both waits are bounded by `timeout` (default 10m; a failure or the timeout is one line, code
 * HOOK, exit 14). Connecting uses node-redis (`redis`), to host:port (default 127.0.0.1:6379),
 * with `password-file` (and `username` for an ACL user) when the server wants AUTH; the client
 * never reconnects behind the preset's back, and every command is bounded.
 *
 * Not covered: a BGREWRITEAOF sent by someone else during the backup (only automatic rewrites
 * are held off), and a meshback killed with SIGKILL during the backup, which leaves
 * auto-aof-rewrite-percentage at 0 (the run's report and its note say which value to set back).
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { RedisClientType } from 'redis';
import { MeshbackError, errMessage } from '../../errors/index.ts';
import { about, v } from '../../util/schema.ts';
import { formatDuration, parseDuration } from '../../util/units.ts';
import { durationField } from '../fields.ts';
import type { PresetContext, PresetRun } from './types.ts';
import { presetType } from './types.ts';

export const REDIS_MODES = ['bgsave', 'aof-rewrite'] as const;
export type RedisMode = (typeof REDIS_MODES)[number];

export const RedisPresetSchema = v.strictObject({
  type: v.literal('redis'),
  host: v.optional(about(v.pipe(v.string(), v.minLength(1)), 'host name or IP address of the Redis server (default 127.0.0.1)')),
  port: v.optional(about(v.pipe(v.number(), v.safeInteger(), v.minValue(1), v.maxValue(65535)), 'its TCP port (default 6379)')),
  username: v.optional(about(v.pipe(v.string(), v.minLength(1)), 'ACL user to AUTH as (default: the default user)')),
  'password-file': v.optional(about(v.pipe(v.string(), v.minLength(1)), 'file holding the password (relative to the policy file; one line); default: no AUTH')),
  mode: v.optional(
    about(
      v.picklist(REDIS_MODES),
      'aof-rewrite (BGREWRITEAOF, automatic rewrites held off while the backup reads) or bgsave (BGSAVE); default: aof-rewrite when the server has appendonly yes (the AOF is what it loads at start), else bgsave',
    ),
  ),
  timeout: v.optional(about(durationField(), 'bound of connecting and of waiting for the save or rewrite to finish (default 10m)')),
});
export type RedisPresetConfig = v.InferOutput<typeof RedisPresetSchema>;

const DEFAULT_TIMEOUT = '10m';
const POLL_MS = 100;
/** a single command's bound (INFO, CONFIG...): a server that does not answer these is not well */
const COMMAND_MS = 10_000;

const fail = (message: string, cause?: unknown): MeshbackError => new MeshbackError('HOOK', `redis preset: ${message}`, cause !== undefined ? { cause } : {});

/** `INFO persistence` as a map of its `key:value` lines. */
export function parseInfo(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

/** The mode a server's INFO persistence calls for when none is given: what it loads at its next start. */
export function defaultMode(info: Map<string, string>): RedisMode {
  return info.get('aof_enabled') === '1' ? 'aof-rewrite' : 'bgsave';
}

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

type Client = RedisClientType;

export function createRedisPreset(cfg: RedisPresetConfig, ctx: PresetContext): PresetRun {
  const host = cfg.host ?? '127.0.0.1';
  const port = cfg.port ?? 6379;
  const where = `Redis at ${host}:${port}`;
  const timeoutMs = parseDuration(cfg.timeout ?? DEFAULT_TIMEOUT, 'timeout');
  const note = (message: string): void => ctx.events({ type: 'note', op: 'run', subject: 'preset redis', message });
  let client: Client | undefined;
  /** auto-aof-rewrite-percentage as found, to set back in finish() */
  let rewritePercentage: string | undefined;

  /** one command, bounded; its error is one line naming it */
  const cmd = async (c: Client, args: string[]): Promise<unknown> => {
    try {
      return await c.withCommandOptions({ timeout: COMMAND_MS }).sendCommand(args);
    } catch (err) {
      throw fail(`${where} refused ${args.slice(0, 2).join(' ')}: ${errMessage(err).split('\n')[0]!}`, err);
    }
  };
  const info = async (c: Client): Promise<Map<string, string>> => parseInfo(String(await cmd(c, ['INFO', 'persistence'])));

  const connect = async (): Promise<Client> => {
    let password: string | undefined;
    if (cfg['password-file'] !== undefined) {
      try {
        password = (await fsp.readFile(cfg['password-file'], 'utf8')).replace(/\r?\n$/, '');
      } catch (err) {
        throw fail(`its password-file ${cfg['password-file']} cannot be read (${(err as NodeJS.ErrnoException).code ?? errMessage(err)}): check that it exists and is readable`);
      }
    }
    const { createClient } = await import('redis');
    const c = createClient({
      socket: { host, port, connectTimeout: Math.min(timeoutMs, 30_000), reconnectStrategy: false },
      ...(cfg.username !== undefined ? { username: cfg.username } : {}),
      ...(password !== undefined ? { password } : {}),
      disableClientInfo: true,
      maintNotifications: 'disabled',
    }) as unknown as Client;
    // every failure also rejects the connect() or command that met it
    c.on('error', () => undefined);
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        c.connect(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${formatDuration(Math.min(timeoutMs, 30_000))}`)), Math.min(timeoutMs, 30_000));
        }),
      ]);
    } catch (err) {
      c.destroy();
      const m = errMessage(err).split('\n')[0]!;
      if (/WRONGPASS|NOAUTH|invalid username-password/i.test(m)) throw fail(`${where} refused the password${cfg['password-file'] !== undefined ? ` of ${cfg['password-file']}` : ' (none given: set password-file)'}: ${m}`, err);
      throw fail(`cannot connect to ${where} (${m}): check host and port, and that Redis runs`, err);
    } finally {
      clearTimeout(timer);
    }
    return c;
  };

  /**
   * Polls INFO persistence until `done` says so, within the deadline; `what` names the wait in the
   * timeout's message. Returns the last INFO.
   */
  const waitFor = async (c: Client, deadline: number, what: string, done: (i: Map<string, string>) => boolean): Promise<Map<string, string>> => {
    for (;;) {
      const i = await info(c);
      if (done(i)) return i;
      if (ctx.signal.aborted) throw fail(`interrupted while waiting for ${what}`);
      if (Date.now() >= deadline) throw fail(`${what} did not finish within the preset's timeout of ${formatDuration(timeoutMs)}: raise timeout, or see the Redis log`);
      await sleep(POLL_MS, ctx.signal);
    }
  };

  const bgsave = async (c: Client, deadline: number): Promise<void> => {
    // a save already running started before this run: its point in time is too early
    await waitFor(c, deadline, 'the BGSAVE already running', (i) => i.get('rdb_bgsave_in_progress') === '0');
    let before = Number(await cmd(c, ['LASTSAVE']));
    // LASTSAVE counts whole seconds: a save that ends within the second of the last one could not be told from it
    while (Math.floor(Date.now() / 1000) <= before && Date.now() < deadline) await sleep(POLL_MS, ctx.signal);
    before = Number(await cmd(c, ['LASTSAVE']));
    const i0 = await info(c);
    const reply = String(await cmd(c, i0.get('aof_rewrite_in_progress') === '1' ? ['BGSAVE', 'SCHEDULE'] : ['BGSAVE']));
    const t0 = Date.now();
    // "Background saving started": the save runs from now on ("scheduled": once the rewrite ends);
    // it has ended, well or not, once it is no longer in progress (LASTSAVE moves only on success)
    let ran = /started/i.test(reply);
    const i = await waitFor(c, deadline, 'BGSAVE', (x) => {
      if (x.get('rdb_bgsave_in_progress') === '1') ran = true;
      return x.get('rdb_bgsave_in_progress') === '0' && (ran || Number(x.get('rdb_last_save_time') ?? 0) > before);
    });
    if (i.get('rdb_last_bgsave_status') !== 'ok') throw fail(`BGSAVE on ${where} failed (rdb_last_bgsave_status:${i.get('rdb_last_bgsave_status') ?? '?'}): see the Redis log (no space? can it write its dir?)`);
    const lastsave = Number(await cmd(c, ['LASTSAVE']));
    if (!(lastsave > before)) throw fail(`BGSAVE on ${where} ended but LASTSAVE did not advance (${lastsave}): see the Redis log`);
    note(`BGSAVE (${reply}) finished in ${((Date.now() - t0) / 1000).toFixed(2)} s: ${i.get('rdb_changes_since_last_save') ?? '?'} change(s) since`);
  };

  const aofRewrite = async (c: Client, deadline: number, i0: Map<string, string>): Promise<void> => {
    if (i0.get('aof_enabled') !== '1') throw fail(`mode aof-rewrite needs appendonly yes on ${where} (it has no AOF; what it loads at start is its RDB file): use mode bgsave, or leave mode out`);
    // a rewrite already running, or scheduled, started before this run: its base is too early
    await waitFor(c, deadline, 'the AOF rewrite already running', (i) => i.get('aof_rewrite_in_progress') === '0' && i.get('aof_rewrite_scheduled') === '0');
    const rewritesBefore = (await info(c)).get('aof_rewrites');
    const t0 = Date.now();
    // "Background append only file rewriting started" or "... scheduled" (after a BGSAVE)
    const reply = String(await cmd(c, ['BGREWRITEAOF']));
    // it has ended, well or not, once neither in progress nor scheduled after it ran (seen running,
    // "started", or the counter moved)
    let ran = /started/i.test(reply);
    const i = await waitFor(c, deadline, 'BGREWRITEAOF', (x) => {
      if (x.get('aof_rewrite_in_progress') === '1') ran = true;
      return x.get('aof_rewrite_in_progress') === '0' && x.get('aof_rewrite_scheduled') === '0' && (ran || (rewritesBefore !== undefined && x.get('aof_rewrites') !== rewritesBefore));
    });
    if (i.get('aof_last_bgrewrite_status') !== 'ok') throw fail(`BGREWRITEAOF on ${where} failed (aof_last_bgrewrite_status:${i.get('aof_last_bgrewrite_status') ?? '?'}): see the Redis log (no space? can it write its dir?)`);
    if (i.get('aof_last_write_status') !== undefined && i.get('aof_last_write_status') !== 'ok') throw fail(`${where} cannot write its AOF (aof_last_write_status:${i.get('aof_last_write_status')}): see the Redis log`);
    note(`BGREWRITEAOF (${reply}) finished in ${((Date.now() - t0) / 1000).toFixed(2)} s`);
  };

  /** CONFIG SET auto-aof-rewrite-percentage 0 while the backup reads; a server without CONFIG is told in a note */
  const holdRewrites = async (c: Client, deadline: number): Promise<void> => {
    let found: string | undefined;
    try {
      const r = (await c.withCommandOptions({ timeout: COMMAND_MS }).sendCommand(['CONFIG', 'GET', 'auto-aof-rewrite-percentage'])) as unknown;
      // a flat list [name, value] (RESP2) or a map (node-redis turns a RESP3 map into an object)
      const val: unknown = Array.isArray(r) ? r[1] : r !== null && typeof r === 'object' ? (r as Record<string, unknown>)['auto-aof-rewrite-percentage'] : undefined;
      if (val === undefined || val === null) throw new Error('CONFIG GET auto-aof-rewrite-percentage gave no value');
      found = String(val);
      if (found !== '0') await cmd(c, ['CONFIG', 'SET', 'auto-aof-rewrite-percentage', '0']);
    } catch (err) {
      if (err instanceof MeshbackError) throw err;
      note(`CONFIG is not available on ${where} (${errMessage(err).split('\n')[0]!}): automatic AOF rewrites are not held off while the backup reads`);
      return;
    }
    rewritePercentage = found;
    note(`automatic AOF rewrites held off while the backup reads (auto-aof-rewrite-percentage 0, was ${found})`);
    // one that began between the rewrite above and now ends before the backup reads
    await waitFor(c, deadline, 'an automatic AOF rewrite', (i) => i.get('aof_rewrite_in_progress') === '0' && i.get('aof_rewrite_scheduled') === '0');
  };

  /** sets auto-aof-rewrite-percentage back (when start changed it) and closes the connection */
  const release = async (): Promise<void> => {
    const c = client;
    client = undefined;
    if (c === undefined) return;
    const found = rewritePercentage;
    rewritePercentage = undefined;
    try {
      if (found !== undefined && found !== '0') {
        try {
          await cmd(c, ['CONFIG', 'SET', 'auto-aof-rewrite-percentage', found]);
        } catch (err) {
          throw fail(`could not set auto-aof-rewrite-percentage back to ${found} on ${where} (${errMessage(err).replace(/^redis preset: /, '')}): set it by hand (redis-cli CONFIG SET auto-aof-rewrite-percentage ${found})`, err);
        }
        note(`automatic AOF rewrites on again (auto-aof-rewrite-percentage ${found})`);
      }
    } finally {
      c.destroy();
    }
  };

  return {
    name: 'redis',
    async start(): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      client = await connect();
      try {
        const i0 = await info(client);
        if (i0.get('loading') === '1') throw fail(`${where} is still loading its data: run again once it has loaded`);
        const mode = cfg.mode ?? defaultMode(i0);
        note(`${where}: mode ${mode}${cfg.mode === undefined ? ` (the server has appendonly ${i0.get('aof_enabled') === '1' ? 'yes' : 'no'})` : ''}`);
        if (cfg.mode === 'bgsave' && i0.get('aof_enabled') === '1') note('the server has appendonly yes: it loads its AOF at start, not the RDB file this BGSAVE writes (the AOF is backed up as the server writes it)');
        if (mode === 'bgsave') await bgsave(client, deadline);
        else {
          await aofRewrite(client, deadline, i0);
          await holdRewrites(client, deadline);
        }
      } catch (err) {
        // finish() is not called when start() fails: undo here
        await release().catch(() => undefined);
        throw err;
      }
    },
    async finish(): Promise<void> {
      await release();
    },
  };
}

export const redis = presetType({
  type: 'redis',
  schema: RedisPresetSchema,
  resolve: (cfg, r) => (cfg['password-file'] !== undefined ? { ...cfg, 'password-file': path.resolve(r.dir, cfg['password-file']) } : cfg),
  create: createRedisPreset,
});
