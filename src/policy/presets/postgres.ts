/**
 * The postgres preset: PostgreSQL's non-exclusive low-level backup, so that a plain `meshback
 * restore` of the snapshot gives a data directory PostgreSQL recovers from with no manual step.
 *
 * start:  one session, held open through the backup: a temporary physical replication slot
 *         (reserving WAL from the last checkpoint on, so no checkpoint during the backup can
 *         recycle a segment the backup needs; dropped when the session ends), then
 *         pg_backup_start(label, fast) (pg_start_backup(label, fast, false) before 15).
 * the backup reads the data directory, leaving out postmaster.pid and postmaster.opts (they name
 *         the live server) and pg_wal (read last);
 * finish: pg_backup_stop(false) (pg_stop_backup(false, false)), which ends the backup mode and
 *         switches to a new WAL segment; the segments from the start to the stop point are
 *         checked to be in pg_wal; then pg_wal is read (from the live data directory, also when
 *         a btrfs-snapshot preset after this one makes the rest come from a snapshot) and the
 *         backup_label (and tablespace_map when there are tablespaces) that pg_backup_stop
 *         returned are added to the data directory in the snapshot;
 * close:  the session ends (the slot goes with it).
 *
 * A backup that fails, or a meshback that dies, ends the session, and PostgreSQL ends the backup
 * mode by itself. Needs: wal_level replica (or logical), a role allowed to run pg_backup_start
 * and pg_backup_stop and to create a replication slot (REPLICATION; a superuser can), a free
 * replication slot (max_replication_slots, default 10); without a slot (`replication-slot:
 * false`) wal_keep_size must keep the WAL written during the backup.
 */
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Client, ClientConfig, QueryConfig } from 'pg';
import { MeshbackError, errMessage, errnoCode } from '../../errors/index.ts';
import { about, v } from '../../util/schema.ts';
import { durationField } from '../fields.ts';
import { parseDuration } from '../../util/units.ts';
import type { PresetContext, PresetRun } from './types.ts';
import { presetType } from './types.ts';


export const PostgresPresetSchema = v.strictObject({
  type: v.literal('postgres'),
  'data-dir': about(v.pipe(v.string(), v.minLength(1)), "the cluster's data directory (relative to the policy file); one of the policy's sources or below one"),
  host: v.optional(about(v.pipe(v.string(), v.minLength(1)), 'host name, IP address, or the directory of its Unix socket (default: PGHOST, else /var/run/postgresql when it exists, else 127.0.0.1)')),
  port: v.optional(about(v.pipe(v.number(), v.safeInteger(), v.minValue(1), v.maxValue(65535)), 'TCP port, or the Unix socket\'s number (default: PGPORT, else 5432)')),
  user: v.optional(about(v.pipe(v.string(), v.minLength(1)), 'role to connect as (default: PGUSER, else postgres); it must be allowed to run pg_backup_start/stop and, with replication-slot, to create a replication slot')),
  database: v.optional(about(v.pipe(v.string(), v.minLength(1)), 'database to connect to (default postgres)')),
  'password-file': v.optional(about(v.pipe(v.string(), v.minLength(1)), 'file holding the password (default: PGPASSWORD, ~/.pgpass, or none)')),
  'replication-slot': v.optional(about(v.boolean(), 'hold a temporary physical replication slot through the backup, so no WAL it needs is recycled (default true); false: wal_keep_size must keep it')),
  fast: v.optional(about(v.boolean(), 'start with an immediate checkpoint (default true); false waits for the next scheduled one')),
  timeout: v.optional(about(durationField(), 'bound of connecting, of pg_backup_start (its checkpoint) and of pg_backup_stop (default 5m)')),
});
export type PostgresPresetConfig = v.InferOutput<typeof PostgresPresetSchema>;

const under = (p: string, dir: string): boolean => p === dir || p.startsWith(dir === '/' ? '/' : `${dir}/`);

function pgFail(message: string, cause?: unknown): MeshbackError {
  return new MeshbackError('HOOK', `postgres preset: ${message}`, cause !== undefined ? { cause } : {});
}

/** One line for a pg error (a server error with its SQLSTATE, a connection error with its address). */
function pgText(err: unknown): string {
  const e = err as { message?: string; code?: string; severity?: string; syscall?: string; address?: string; port?: number };
  const first = errMessage(err).split('\n')[0]!;
  if (e.severity !== undefined) return `${first} [SQLSTATE ${e.code ?? '?'}]`;
  return first;
}

function defaultHost(): string {
  if (process.env['PGHOST'] !== undefined && process.env['PGHOST'] !== '') return process.env['PGHOST'];
  return existsSync('/var/run/postgresql') ? '/var/run/postgresql' : '127.0.0.1';
}

/** WAL segment names from `first` to `last` (same timeline), for segments of `segBytes`. */
export function walSegments(first: string, last: string, segBytes: number): string[] {
  const perId = 0x1_0000_0000 / segBytes;
  const tli = first.slice(0, 8);
  const no = (n: string): number => parseInt(n.slice(8, 16), 16) * perId + parseInt(n.slice(16, 24), 16);
  const out: string[] = [];
  const hex = (x: number): string => x.toString(16).toUpperCase().padStart(8, '0');
  for (let s = no(first), end = no(last); s <= end && out.length < 100_000; s++) out.push(`${tli}${hex(Math.floor(s / perId))}${hex(s % perId)}`);
  return out;
}

/** The postgres preset of one run (the factory the registry calls). */
export function postgresPreset(cfg: PostgresPresetConfig, ctx: PresetContext): PresetRun {
  const dataDir = cfg['data-dir'];
  const walDir = path.join(dataDir, 'pg_wal');
  const timeoutMs = parseDuration(cfg.timeout ?? '5m', 'timeout');
  const host = cfg.host ?? defaultHost();
  const port = cfg.port ?? (process.env['PGPORT'] !== undefined ? Number(process.env['PGPORT']) : 5432);
  const where = host.startsWith('/') ? `the socket in ${host} (port ${port})` : `${host}:${port}`;
  let client: Client | undefined;
  let version = 0;
  let startWal: string | undefined;
  let segBytes = 16 * 1024 * 1024;
  let inRecovery = false;
  let stopped: { labelfile: string; spcmapfile: string | null } | undefined;
  const note = (message: string): void => ctx.events({ type: 'note', op: 'run', subject: 'preset postgres', message });

  const query = async <R extends Record<string, unknown>>(sql: string, values: unknown[] = []): Promise<R[]> => {
    const q: QueryConfig & { query_timeout: number } = { text: sql, values, query_timeout: timeoutMs };
    const r = await client!.query<R>(q);
    return r.rows;
  };

  const closeClient = async (): Promise<void> => {
    const c = client;
    client = undefined;
    if (c === undefined) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([c.end().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  };

  return {
    name: 'postgres',
    omit: [path.join(dataDir, 'postmaster.pid'), path.join(dataDir, 'postmaster.opts')],
    readLast: [walDir],

    async start() {
      // the data directory: there, a cluster, pg_wal a real directory (it is read as one)
      try {
        readFileSync(path.join(dataDir, 'PG_VERSION'));
      } catch (err) {
        throw pgFail(errnoCode(err) === 'ENOENT' ? `${dataDir} is not a PostgreSQL data directory (no PG_VERSION): fix data-dir in the policy` : `cannot read ${dataDir}/PG_VERSION (${errMessage(err)}): run meshback as a user who can read the data directory`);
      }
      const wst = await fsp.lstat(walDir).catch(() => undefined);
      if (wst === undefined || !wst.isDirectory()) {
        throw pgFail(`${walDir} is ${wst?.isSymbolicLink() === true ? `a symlink (to ${await fsp.readlink(walDir)})` : 'missing'}: the preset reads pg_wal as a directory of the data directory (a cluster made with initdb -X cannot be backed up by it)`);
      }
      let password: string | undefined;
      if (cfg['password-file'] !== undefined) {
        try {
          password = (await fsp.readFile(cfg['password-file'], 'utf8')).replace(/\r?\n$/, '');
        } catch (err) {
          throw pgFail(`cannot read the password file ${cfg['password-file']} (${errMessage(err)}): fix password-file in the policy`);
        }
      }
      const { default: pg } = await import('pg');
      const conf: ClientConfig = {
        host,
        port,
        user: cfg.user ?? process.env['PGUSER'] ?? 'postgres',
        database: cfg.database ?? 'postgres',
        application_name: `meshback ${ctx.policy}`,
        connectionTimeoutMillis: Math.min(timeoutMs, 30_000),
        ...(password !== undefined ? { password } : {}),
      };
      const c = new pg.Client(conf);
      c.on('error', () => undefined); // a lost connection: the next query rejects
      try {
        await c.connect();
      } catch (err) {
        await c.end().catch(() => undefined);
        throw pgFail(`cannot connect to PostgreSQL at ${where} as ${conf.user} (${pgText(err)}): start it, or fix host, port, user or password-file in the policy`, err);
      }
      client = c;
      try {
        const [s] = await query<{ v: string; wal_level: string; seg: string; rec: boolean }>(
          "SELECT current_setting('server_version_num') AS v, current_setting('wal_level') AS wal_level, (SELECT setting::bigint * CASE unit WHEN '8kB' THEN 8192 WHEN 'MB' THEN 1048576 ELSE 1 END FROM pg_settings WHERE name = 'wal_segment_size') AS seg, pg_is_in_recovery() AS rec",
        );
        version = Number(s!.v);
        inRecovery = s!.rec;
        segBytes = Number(s!.seg);
        if (version < 90600) throw pgFail(`PostgreSQL ${version} is older than 9.6, which has no non-exclusive backup: upgrade it, or use the btrfs-snapshot preset alone`);
        if (s!.wal_level === 'minimal') throw pgFail('wal_level is minimal, which cannot make an online backup: set wal_level = replica in postgresql.conf and restart PostgreSQL');
        // the server's data directory must be the one backed up (readable by superusers and pg_read_all_settings)
        const dd = await query<{ d: string }>("SELECT current_setting('data_directory') AS d").catch(() => undefined);
        if (dd?.[0] !== undefined) {
          const [a, b] = await Promise.all([fsp.realpath(dd[0].d).catch(() => dd[0]!.d), fsp.realpath(dataDir).catch(() => dataDir)]);
          if (a !== b) throw pgFail(`PostgreSQL at ${where} serves the data directory ${dd[0].d}, not ${dataDir}: fix data-dir (or host/port) in the policy`);
        }
        if (cfg['replication-slot'] !== false && version < 100000) throw pgFail(`PostgreSQL ${version} has no temporary replication slots (10 and later have): set replication-slot: false and keep the WAL with wal_keep_segments`);
        if (cfg['replication-slot'] !== false) {
          const slot = `meshback_${process.pid}_${Date.now().toString(36)}`;
          try {
            await query('SELECT pg_create_physical_replication_slot($1, true, true)', [slot]);
          } catch (err) {
            throw pgFail(`cannot create a temporary replication slot (${pgText(err)}): raise max_replication_slots, give ${conf.user} the REPLICATION attribute, or set replication-slot: false (then wal_keep_size must keep the WAL written during a backup)`, err);
          }
        }
        const label = `meshback ${ctx.policy} ${new Date().toISOString()}`;
        const fast = cfg.fast !== false;
        const rows = version >= 150000 ? await query<{ lsn: string }>('SELECT pg_backup_start($1, $2) AS lsn', [label, fast]) : await query<{ lsn: string }>('SELECT pg_start_backup($1, $2, false) AS lsn', [label, fast]);
        const lsn = rows[0]!.lsn;
        if (!inRecovery) startWal = (await query<{ f: string }>('SELECT pg_walfile_name($1) AS f', [lsn]))[0]!.f;
        note(`backup mode on (pg_backup_start at ${lsn}${startWal !== undefined ? `, WAL segment ${startWal}` : ''})`);
      } catch (err) {
        await closeClient();
        if (err instanceof MeshbackError) throw err;
        throw pgFail(`pg_backup_start failed (${pgText(err)}): give ${conf.user} the right to run it (GRANT EXECUTE ON FUNCTION pg_backup_start, pg_backup_stop) or connect as a superuser`, err);
      }
    },

    async finish(ok) {
      if (client === undefined) return;
      if (!ok) {
        // ending the session ends the backup mode (and drops the slot)
        await closeClient();
        return;
      }
      let rows: { lsn: string; labelfile: string; spcmapfile: string | null }[];
      try {
        rows = version >= 150000 ? await query('SELECT lsn, labelfile, spcmapfile FROM pg_backup_stop(false)') : await query('SELECT lsn, labelfile, spcmapfile FROM pg_stop_backup(false, false)');
      } catch (err) {
        await closeClient();
        throw pgFail(`pg_backup_stop failed (${pgText(err)}): the snapshot would not restore; see the PostgreSQL log`, err);
      }
      const r = rows[0]!;
      stopped = { labelfile: r.labelfile, spcmapfile: r.spcmapfile };
      if (startWal !== undefined) {
        const stopWal = (await query<{ f: string }>('SELECT pg_walfile_name($1) AS f', [r.lsn]))[0]!.f;
        const have = new Set(await fsp.readdir(walDir));
        const need = walSegments(startWal, stopWal, segBytes);
        const gone = need.filter((n) => !have.has(n));
        if (gone.length > 0) {
          await closeClient();
          throw pgFail(`the WAL segment ${gone[0]} the backup needs was recycled before it was read: keep replication-slot on (or raise wal_keep_size)`);
        }
        note(`backup mode off (pg_backup_stop at ${r.lsn}); WAL ${startWal}..${stopWal} (${need.length} segment(s)) is read last`);
      } else note(`backup mode off (pg_backup_stop at ${r.lsn})`);
      // the session stays open until close(): its slot keeps pg_wal until it is read
    },

    extraFiles() {
      if (stopped === undefined) return [];
      const files = [{ path: path.join(dataDir, 'backup_label'), content: Buffer.from(stopped.labelfile), mode: 0o600 }];
      if (stopped.spcmapfile !== null && stopped.spcmapfile !== '') files.push({ path: path.join(dataDir, 'tablespace_map'), content: Buffer.from(stopped.spcmapfile), mode: 0o600 });
      return files;
    },

    close: closeClient,
  };
}

export const postgres = presetType({
  type: 'postgres',
  schema: PostgresPresetSchema,
  resolve(cfg, r) {
    const dataDir = path.resolve(r.dir, cfg['data-dir']);
    if (!r.sources.some((s) => under(dataDir, s))) throw r.fail(['data-dir'], `${dataDir} is not one of the policy's sources nor below one: add it (or a directory above it) to sources`);
    return { ...cfg, 'data-dir': dataDir, ...(cfg['password-file'] !== undefined ? { 'password-file': path.resolve(r.dir, cfg['password-file']) } : {}) };
  },
  create: postgresPreset,
});
