/**
 * testbed/deps: the programs the testbed runs, and the Debian package of each. A missing program
 * is installed with apt-get when running as root (unless the caller says not to); otherwise it is
 * a one-line error naming the package.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { NotFoundError, UsageError } from '../../src/errors/index.ts';
import { aptInstall, isRoot } from '../../src/host/packages.ts';
import { which } from '../../src/host/process.ts';
import type { VolumeKind } from './state.ts';

export interface Programs {
  nginx: string;
  redisServer: string;
  /** PostgreSQL server binaries directory (initdb, postgres) */
  pgBindir: string;
  pgVersion: number;
}

/** Where programs are looked for: PATH, then /usr/sbin and /sbin (nginx lives there on Debian). */
export function defaultSearchPath(): string[] {
  return [...(process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin').split(':').filter((d) => d !== ''), '/usr/sbin', '/sbin'];
}

/** The newest PG_BASE/<v>/bin holding initdb and postgres (Debian's layout), then the search path. */
export function findPgBindir(search = defaultSearchPath(), base = '/usr/lib/postgresql'): { bindir: string; version: number } | undefined {
  const dirs: string[] = [];
  if (existsSync(base)) {
    for (const v of readdirSync(base).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))) dirs.push(path.join(base, v, 'bin'));
  }
  dirs.push(...search);
  for (const d of dirs) {
    if (!existsSync(path.join(d, 'initdb')) || !existsSync(path.join(d, 'postgres'))) continue;
    const r = spawnSync(path.join(d, 'postgres'), ['--version'], { encoding: 'utf8' });
    const m = /(\d+)(?:\.\d+)?/.exec(r.stdout ?? '');
    if (r.status === 0 && m !== null) return { bindir: d, version: Number(m[1]) };
  }
  return undefined;
}

interface Need {
  what: string;
  pkg: string;
  find: () => Promise<string | undefined>;
}

function finder(search: string[]): (name: string) => () => Promise<string | undefined> {
  return (name) => async () => {
    for (const d of search) {
      const p = await which(path.join(d, name));
      if (p !== undefined) return p;
    }
    return undefined;
  };
}

function needs(volumes: VolumeKind, search: string[], pgBase: string): Need[] {
  const bin = finder(search);
  const list: Need[] = [
    { what: 'nginx', pkg: 'nginx', find: bin('nginx') },
    { what: 'redis-server', pkg: 'redis-server', find: bin('redis-server') },
    { what: 'PostgreSQL (initdb, postgres)', pkg: 'postgresql', find: async () => findPgBindir(search, pgBase)?.bindir },
  ];
  if (volumes === 'btrfs') {
    list.push({ what: 'mkfs.btrfs', pkg: 'btrfs-progs', find: bin('mkfs.btrfs') }, { what: 'btrfs', pkg: 'btrfs-progs', find: bin('btrfs') }, { what: 'losetup', pkg: 'mount', find: bin('losetup') });
  }
  return list;
}

/**
 * Finds (or, as root and unless `install` is false, installs) everything the testbed needs.
 * Throws NotFoundError (exit 5) naming the Debian package of the first missing program.
 */
export async function ensurePrograms(opts: { volumes: VolumeKind; install?: boolean; log?: (m: string) => void; searchPath?: string[]; pgBase?: string }): Promise<Programs> {
  if (opts.volumes === 'btrfs' && !isRoot()) throw new UsageError('--volumes btrfs needs root (it loop-mounts btrfs images): run as root or use --volumes dir');
  const search = opts.searchPath ?? defaultSearchPath();
  const pgBase = opts.pgBase ?? '/usr/lib/postgresql';
  let missing: Need[] = [];
  for (const n of needs(opts.volumes, search, pgBase)) if ((await n.find()) === undefined) missing.push(n);
  if (missing.length > 0 && isRoot() && opts.install !== false) {
    const pkgs = [...new Set(missing.map((m) => m.pkg))];
    opts.log?.(`installing the Debian package(s) ${pkgs.join(' ')} with apt-get`);
    const err = await aptInstall(pkgs);
    if (err !== undefined) throw new NotFoundError(`${missing[0]!.what} is missing and apt-get install ${pkgs.join(' ')} failed: ${err.split('\n')[0]}`);
    const still: Need[] = [];
    for (const n of missing) if ((await n.find()) === undefined) still.push(n);
    missing = still;
  }
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((m) => m.pkg))];
    throw new NotFoundError(`${missing.map((m) => m.what).join(', ')} ${missing.length > 1 ? 'are' : 'is'} not installed: install the Debian package${pkgs.length > 1 ? 's' : ''} ${pkgs.join(' ')} (apt-get install ${pkgs.join(' ')})`);
  }
  const pg = findPgBindir(search, pgBase)!;
  const bin = finder(search);
  return { nginx: (await bin('nginx')())!, redisServer: (await bin('redis-server')())!, pgBindir: pg.bindir, pgVersion: pg.version };
}

export interface UserIds {
  uid: number;
  gid: number;
}

/** uid and gid of a system user from /etc/passwd, or undefined. */
export function systemUser(name: string): UserIds | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f.length >= 4) return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    /* no /etc/passwd */
  }
  return undefined;
}

/**
 * The user PostgreSQL runs as: the `postgres` system user when root (the server refuses to run
 * as root), else the current user (undefined: no switch).
 */
export function postgresUser(): UserIds | undefined {
  if (!isRoot()) return undefined;
  const u = systemUser('postgres');
  if (u === undefined) throw new NotFoundError("the 'postgres' system user does not exist (it comes with the Debian package postgresql): install postgresql");
  return u;
}

/** Redis runs as the `redis` system user when root and that user exists, else as the current user. */
export function redisUser(): UserIds | undefined {
  return isRoot() ? systemUser('redis') : undefined;
}
