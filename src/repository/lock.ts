/**
 * Repository locks. A lock is a small sealed file under `locks/` that names its holder (host,
 * process, user, command) and when it was taken and last refreshed. Shared locks (backup,
 * restore, check) coexist; an exclusive lock (prune) excludes every other lock.
 *
 * Files are immutable, so a held lock is refreshed by writing a new file with a new time and
 * then deleting the previous one. A lock is stale when it has not been refreshed for the stale
 * age, or when it was taken on this host (same host name and PID namespace) by a process that
 * no longer exists, or when its file cannot be read. Stale locks never block: they are
 * reported and left in place until `meshback unlock` removes them.
 *
 * Acquiring writes the own lock first and lists the others afterwards, so of two processes
 * racing for conflicting locks at least one sees the other; both then back off.
 */
import { readlinkSync } from 'node:fs';
import * as os from 'node:os';
import type { Backend, Handle } from '../storage/backend.ts';
import { sha256hex } from '../content/pack.ts';
import { open, seal } from '../crypto/index.ts';
import { BackendError, IntegrityError, MeshbackError, NotFoundError, UsageError, errMessage } from '../errors/index.ts';
import { processExists } from '../host/process.ts';
import type { EventSink } from '../events/index.ts';
import { nullSink } from '../events/index.ts';
import type { Repository } from './index.ts';
import { about, checked, int, isoDate, parseJson, v } from '../util/schema.ts';

export const LOCK_VERSION = 1;
/** How often a held lock is refreshed. */
export const DEFAULT_REFRESH_MS = 5 * 60_000;
/** A lock not refreshed for this long is stale. */
export const DEFAULT_STALE_MS = 30 * 60_000;

/** The content of a lock file (sealed; the file is named by the SHA-256 of the sealed bytes; docs/schemas/lock.json). */
export const LockInfoSchema = v.pipe(
  v.object({
    version: v.literal(LOCK_VERSION),
    exclusive: v.boolean(),
    host: v.string(),
    pid: int(0),
    username: v.string(),
    time: about(isoDate(), 'last refresh'),
    created: about(isoDate(), 'when the holder first took the lock'),
    command: about(v.string(), 'the meshback command holding it, e.g. "backup"'),
    pidNamespace: v.optional(about(v.string(), "the holder's PID namespace (Linux, /proc/self/ns/pid), so a PID is judged only where it means the same process")),
  }),
  v.metadata({ title: 'meshback lock', description: 'A file under locks/: Seal(encKey, this JSON), named by the SHA-256 of the sealed file (docs/design.md, "Locks").' }),
);
export type LockInfo = v.InferOutput<typeof LockInfoSchema>;

export interface LockEntry {
  /** file name under locks/ */
  name: string;
  /** undefined when the file cannot be read; then `damaged` says why */
  info?: LockInfo;
  damaged?: string;
  stale: boolean;
  /** why the lock is stale */
  reason?: string;
  /** milliseconds since the lock's last refresh, by this host's clock */
  ageMs?: number;
  /** held by this process */
  own: boolean;
}

export interface LockTimings {
  refreshMs: number;
  staleMs: number;
}

export interface AcquireOptions {
  exclusive: boolean;
  /** the command taking the lock, recorded in it (e.g. "backup") */
  command: string;
  /** keep trying for this long while the repository is locked (default 0: fail at once) */
  retryMs?: number;
  events?: EventSink;
  /** overrides of the refresh interval and stale age (default: lockTimings()) */
  timings?: Partial<LockTimings>;
}

/**
 * The refresh interval and stale age: 5 and 30 minutes, or MESHBACK_LOCK_REFRESH_MS and
 * MESHBACK_LOCK_STALE_MS (for tests). With only the stale age set, the refresh interval is a
 * sixth of it (at most 5 minutes).
 */
export function lockTimings(env: NodeJS.ProcessEnv = process.env): LockTimings {
  const num = (k: string): number | undefined => {
    const v = env[k];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${k}=${v} is not a positive whole number of milliseconds: fix or unset it`);
    return n;
  };
  const staleMs = num('MESHBACK_LOCK_STALE_MS') ?? DEFAULT_STALE_MS;
  const refreshMs = num('MESHBACK_LOCK_REFRESH_MS') ?? Math.max(1, Math.min(DEFAULT_REFRESH_MS, Math.floor(staleMs / 6)));
  return checkTimings({ refreshMs, staleMs });
}

/** lockTimings() with overrides; a stale age given alone brings the refresh interval down with it. */
export function resolveTimings(over: Partial<LockTimings> = {}): LockTimings {
  const t = { ...lockTimings(), ...over };
  if (over.staleMs !== undefined && over.refreshMs === undefined && t.refreshMs >= t.staleMs) t.refreshMs = Math.max(1, Math.floor(t.staleMs / 6));
  return checkTimings(t);
}

function checkTimings(t: LockTimings): LockTimings {
  if (!(t.refreshMs > 0 && t.refreshMs < t.staleMs)) {
    throw new UsageError(`the lock refresh interval (${t.refreshMs} ms) must be positive and shorter than the stale age (${t.staleMs} ms): fix MESHBACK_LOCK_REFRESH_MS / MESHBACK_LOCK_STALE_MS`);
  }
  return t;
}

/** "42 s", "7 min", "3 h 5 min" */
export function fmtAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

let pidNs: string | null | undefined;
function ownPidNamespace(): string | undefined {
  if (pidNs === undefined) {
    try {
      pidNs = readlinkSync('/proc/self/ns/pid');
    } catch {
      pidNs = null;
    }
  }
  return pidNs ?? undefined;
}

function encodeLock(encKey: Buffer, info: LockInfo): { name: string; bytes: Buffer } {
  const bytes = seal(encKey, Buffer.from(JSON.stringify(info)));
  return { name: sha256hex(bytes), bytes };
}

function decodeLock(encKey: Buffer, name: string, bytes: Buffer): LockInfo {
  if (sha256hex(bytes) !== name) throw new IntegrityError(`its content does not match its name`);
  const fail = (m: string) => new IntegrityError(m);
  return checked(LockInfoSchema, parseJson(open(encKey, bytes, `lock ${name.slice(0, 8)}`).toString('utf8'), (m) => fail(`the lock ${m}`)), fail);
}

/** Reads every lock file; a file that vanishes while being read (a refresh or release) makes it list again. */
async function readLocks(backend: Backend, encKey: Buffer): Promise<{ name: string; info?: LockInfo; damaged?: string }[]> {
  for (let attempt = 0; ; attempt++) {
    const names: string[] = [];
    for await (const f of backend.list('lock')) names.push(f.name);
    let vanished = false;
    const out = await Promise.all(
      names.map(async (name) => {
        let bytes: Buffer;
        try {
          bytes = await backend.get({ type: 'lock', name });
        } catch (err) {
          if (err instanceof NotFoundError) {
            vanished = true;
            return undefined;
          }
          throw err;
        }
        try {
          return { name, info: decodeLock(encKey, name, bytes) };
        } catch (err) {
          return { name, damaged: errMessage(err) };
        }
      }),
    );
    // a holder's refresh writes the new file before deleting the old, so listing again finds it
    if (!vanished || attempt >= 4) return out.filter((e) => e !== undefined);
  }
}

function judge(e: { name: string; info?: LockInfo; damaged?: string }, staleMs: number, now: number): LockEntry {
  const own = [...held].some((l) => l.owns(e.name));
  if (e.info === undefined) return { name: e.name, damaged: e.damaged ?? 'unreadable', stale: true, reason: `the lock file cannot be read (${e.damaged ?? 'unreadable'})`, own };
  const i = e.info;
  const ageMs = now - Date.parse(i.time);
  const base = { name: e.name, info: i, ageMs, own };
  if (own) return { ...base, stale: false };
  if (ageMs > staleMs) return { ...base, stale: true, reason: `not refreshed for ${fmtAge(ageMs)} (stale after ${fmtAge(staleMs)})` };
  const ns = ownPidNamespace();
  const samePidSpace = i.host === os.hostname() && i.pidNamespace === ns;
  if (samePidSpace && !processExists(i.pid)) return { ...base, stale: true, reason: `process ${i.pid} no longer runs on ${i.host}` };
  return { ...base, stale: false };
}

function sortEntries(entries: LockEntry[]): LockEntry[] {
  return entries.sort((a, b) => {
    const ta = a.info?.created ?? '';
    const tb = b.info?.created ?? '';
    return ta < tb ? -1 : ta > tb ? 1 : a.name < b.name ? -1 : 1;
  });
}

/** Every lock of the repository, oldest first, each judged live or stale (with the reason). */
export async function listLocks(repo: Repository, opts: { staleMs?: number } = {}): Promise<LockEntry[]> {
  const staleMs = opts.staleMs ?? lockTimings().staleMs;
  const now = Date.now();
  return sortEntries((await readLocks(repo.backend, repo.key.encKey)).map((e) => judge(e, staleMs, now)));
}

/**
 * Removes stale locks (with `all`: every lock, live ones too, except those of this process).
 * Returns the locks it removed and those it left.
 */
export async function removeLocks(repo: Repository, opts: { all?: boolean; staleMs?: number } = {}): Promise<{ removed: LockEntry[]; kept: LockEntry[] }> {
  const removed: LockEntry[] = [];
  const kept: LockEntry[] = [];
  for (const e of await listLocks(repo, opts)) {
    if (!e.own && (e.stale || opts.all === true)) {
      await repo.backend.delete({ type: 'lock', name: e.name });
      removed.push(e);
    } else kept.push(e);
  }
  return { removed, kept };
}

/** One line naming a lock's holder, for messages. */
export function describeLock(e: LockEntry): string {
  const i = e.info;
  if (i === undefined) return `damaged lock file ${e.name.slice(0, 8)}`;
  return `${i.exclusive ? 'exclusive' : 'shared'} lock ${e.name.slice(0, 8)} of 'meshback ${i.command}' held by ${i.host}/${i.pid} (user ${i.username}) since ${i.created}`;
}

function staleWarning(e: LockEntry): string {
  if (e.info === undefined) return `ignoring damaged lock file ${e.name.slice(0, 8)}: ${e.reason ?? ''}; remove it with 'meshback unlock'`;
  const i = e.info;
  return `ignoring stale lock ${e.name.slice(0, 8)} held by ${i.host}/${i.pid} ('meshback ${i.command}', ${i.exclusive ? 'exclusive' : 'shared'}) since ${i.created}: ${e.reason ?? ''}; remove it with 'meshback unlock'`;
}

function lockedError(conflicts: LockEntry[], opts: AcquireOptions, waitedMs: number): MeshbackError {
  const c = conflicts[0]!;
  const i = c.info!;
  const more = conflicts.length > 1 ? ` (and ${conflicts.length - 1} more lock(s))` : '';
  const waited = (opts.retryMs ?? 0) > 0 ? ` (waited ${fmtAge(waitedMs)})` : '';
  const why = i.exclusive ? '' : `; 'meshback ${opts.command}' needs the repository to itself`;
  return new MeshbackError(
    'LOCKED',
    `the repository is locked${waited}: ${i.exclusive ? 'an exclusive' : 'a shared'} lock is held by 'meshback ${i.command}' (pid ${i.pid} on ${i.host}, user ${i.username}, since ${i.created}, refreshed ${fmtAge(c.ageMs ?? 0)} ago)${more}${why}: wait for it to finish or pass --retry-lock DURATION; if that process is gone, remove its lock with 'meshback unlock --remove-all'`,
    { data: { lock: c.name, holder: i } },
  );
}

/** Locks held by this process, so that every exit path can remove them. */
const held = new Set<RepoLock>();

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Takes a lock on the repository. A conflicting live lock (any other lock when `exclusive`,
 * else another exclusive lock) makes it retry until `retryMs` has passed, then fail with
 * LOCKED naming the holder. Stale locks are reported as warning events and ignored.
 */
export async function acquireLock(repo: Repository, opts: AcquireOptions): Promise<RepoLock> {
  const timings = resolveTimings(opts.timings);
  const emit = opts.events ?? nullSink;
  const t0 = performance.now();
  const retryMs = Math.max(0, opts.retryMs ?? 0);
  const reported = new Set<string>();
  let waitReported = false;
  let delay = 500;
  for (;;) {
    const lock = await RepoLock.take(repo, opts, timings, emit);
    let entries: LockEntry[];
    try {
      const now = Date.now();
      entries = (await readLocks(repo.backend, repo.key.encKey)).filter((e) => e.name !== lock.name).map((e) => judge(e, timings.staleMs, now));
    } catch (err) {
      await lock.release().catch(() => undefined);
      throw err;
    }
    for (const e of entries) {
      if (e.stale && !reported.has(e.name)) {
        reported.add(e.name);
        emit({ type: 'warning', message: staleWarning(e) });
      }
    }
    // locks of this same process count too: one process may run several operations at once
    const conflicts = sortEntries(entries.filter((e) => !e.stale && (opts.exclusive || e.info!.exclusive)));
    if (conflicts.length === 0) {
      lock.start();
      return lock;
    }
    await lock.release();
    const waited = performance.now() - t0;
    if (waited >= retryMs) throw lockedError(conflicts, opts, waited);
    if (!waitReported) {
      waitReported = true;
      emit({ type: 'warning', message: `the repository is locked by ${describeLock(conflicts[0]!)}: waiting up to ${fmtAge(retryMs)} for it` });
    }
    await sleep(Math.min(retryMs - waited, delay * (0.75 + Math.random() / 2)));
    delay = Math.min(delay * 2, 5000);
  }
}

/** A lock this process holds. It refreshes itself until released. */
export class RepoLock {
  readonly exclusive: boolean;
  readonly command: string;
  private readonly repo: Repository;
  private readonly backend: Backend;
  private readonly timings: LockTimings;
  private readonly emit: EventSink;
  private readonly base: Omit<LockInfo, 'time'>;
  private current: string;
  /** a refresh's new file while it is being written */
  private pending: string | undefined;
  /** old files whose deletion failed; retried at the next refresh and at release */
  private readonly leftovers = new Set<string>();
  /** wall-clock time written into the current file */
  private writtenAt: number;
  private state: 'held' | 'lost' | 'released' = 'held';
  private lostReason = '';
  private refreshError: string | undefined;
  /** the error of the last failed refresh (cleared by a successful one) */
  private refreshCause: unknown;
  private refreshing: Promise<void> | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private unguard: (() => void) | undefined;

  private constructor(repo: Repository, opts: AcquireOptions, timings: LockTimings, emit: EventSink, base: Omit<LockInfo, 'time'>, name: string, writtenAt: number) {
    this.repo = repo;
    this.backend = repo.backend;
    this.exclusive = opts.exclusive;
    this.command = opts.command;
    this.timings = timings;
    this.emit = emit;
    this.base = base;
    this.current = name;
    this.writtenAt = writtenAt;
  }

  /** Writes a lock file, not yet checked against the others: acquireLock() does that. */
  static async take(repo: Repository, opts: AcquireOptions, timings: LockTimings, emit: EventSink): Promise<RepoLock> {
    const now = new Date();
    const ns = ownPidNamespace();
    const base: Omit<LockInfo, 'time'> = {
      version: LOCK_VERSION,
      exclusive: opts.exclusive,
      host: os.hostname(),
      pid: process.pid,
      username: safeUsername(),
      created: now.toISOString(),
      command: opts.command,
      ...(ns !== undefined ? { pidNamespace: ns } : {}),
    };
    const { name, bytes } = encodeLock(repo.key.encKey, { ...base, time: now.toISOString() });
    const lock = new RepoLock(repo, opts, timings, emit, base, name, now.getTime());
    held.add(lock);
    try {
      await repo.backend.put({ type: 'lock', name }, bytes);
    } catch (err) {
      held.delete(lock);
      lock.state = 'released';
      await repo.backend.delete({ type: 'lock', name }).catch(() => undefined);
      throw err;
    }
    return lock;
  }

  /** Starts refreshing and guards the repository's snapshot writes. */
  start(): void {
    this.timer = setInterval(() => {
      this.refresh().catch((err: unknown) => this.failRefresh(err));
    }, this.timings.refreshMs);
    this.timer.unref();
    this.unguard = this.repo.guardSnapshotWrites(() => this.verify('writing the snapshot'));
  }

  /** The name of the current lock file. */
  get name(): string {
    return this.current;
  }

  /** The lock info as last written. */
  get info(): LockInfo {
    return { ...this.base, time: new Date(this.writtenAt).toISOString() };
  }

  owns(name: string): boolean {
    return this.state === 'held' && (name === this.current || name === this.pending || this.leftovers.has(name));
  }

  /**
   * Throws LOCKED unless the lock is still safely held: not released, its file not found
   * removed, the last refresh not failed, and refreshed within the stale age (else another
   * process may have judged it stale and gone ahead).
   */
  assertHeld(what = 'going on'): void {
    const problem = this.problem();
    if (problem === undefined) return;
    throw new MeshbackError('LOCKED', `stopped before ${what}: the repository lock of 'meshback ${this.command}' is no longer safely held (${problem}), so another process may have treated the repository as unlocked; run the command again`, { data: { lock: this.current } });
  }

  private problem(): string | undefined {
    if (this.state === 'released') return 'it was released';
    if (this.state === 'lost') return this.lostReason;
    if (this.refreshError !== undefined) return `refreshing it failed: ${this.refreshError}`;
    const age = Date.now() - this.writtenAt;
    if (age >= this.timings.staleMs) return `it was last refreshed ${fmtAge(age)} ago, past the stale age of ${fmtAge(this.timings.staleMs)}`;
    return undefined;
  }

  /**
   * Refreshes the lock now (which also proves its file is still there and the backend takes
   * writes), then asserts it is held. Run before committing work, such as a snapshot.
   */
  async verify(what = 'going on'): Promise<void> {
    if (this.state === 'held') {
      await this.refresh(false);
      // a refresh that found no room for the new lock file: the disk is full (exit 6, free some
      // space), which is the error to report, not a lost lock that running again would fix
      const cause = this.refreshCause;
      if (this.state === 'held' && this.refreshError !== undefined && cause instanceof MeshbackError && cause.code === 'NO_SPACE') throw cause;
      // a refresh the backend failed (within the stale age, so no other process can have taken the
      // lock as gone): the storage is what failed (exit 7, as for the data that fails with it), not
      // the lock; found when a mid-run network timeout hit the refresh before the data path
      if (this.state === 'held' && this.refreshError !== undefined && cause instanceof BackendError && Date.now() - this.writtenAt < this.timings.staleMs) {
        throw new BackendError(`stopped before ${what}: could not refresh the repository lock: ${this.refreshError}`, { cause, retryable: cause.retryable, data: { lock: this.current } });
      }
    }
    this.assertHeld(what);
  }

  /**
   * Writes a new lock file with the current time and deletes the previous one. A failure is
   * recorded (assertHeld() then refuses) and, with `warn`, reported as a warning event.
   */
  refresh(warn = true): Promise<void> {
    this.refreshing ??= this.doRefresh(warn).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(warn: boolean): Promise<void> {
    if (this.state !== 'held') return;
    if (this.expired()) return;
    try {
      await this.backend.stat({ type: 'lock', name: this.current });
    } catch (err) {
      if (err instanceof NotFoundError) {
        this.lose(`its file ${this.current.slice(0, 8)} was removed by another process, e.g. 'meshback unlock'`);
      } else this.failRefresh(err, warn);
      return;
    }
    const now = new Date();
    const { name, bytes } = encodeLock(this.repo.key.encKey, { ...this.base, time: now.toISOString() });
    this.pending = name;
    try {
      await this.backend.put({ type: 'lock', name }, bytes);
    } catch (err) {
      this.pending = undefined;
      await this.backend.delete({ type: 'lock', name }).catch(() => undefined);
      this.failRefresh(err, warn);
      return;
    }
    const old = this.current;
    this.current = name;
    this.pending = undefined;
    this.leftovers.add(old);
    if (this.state !== 'held') {
      // released while the new file was being written: releaseSync() could not see it
      await this.backend.delete({ type: 'lock', name }).catch(() => undefined);
      await this.backend.delete({ type: 'lock', name: old }).catch(() => undefined);
      return;
    }
    // until the new file was visible, others judged the lock by the old time
    if (this.expired()) return;
    this.writtenAt = now.getTime();
    this.refreshError = undefined;
    this.refreshCause = undefined;
    await this.deleteLeftovers();
  }

  /** Loses the lock if its last written time is past the stale age: others may have ignored it since. */
  private expired(): boolean {
    const age = Date.now() - this.writtenAt;
    if (age < this.timings.staleMs) return false;
    this.lose(`it went ${fmtAge(age)} without a refresh, past the stale age of ${fmtAge(this.timings.staleMs)}`);
    return true;
  }

  private async deleteLeftovers(): Promise<void> {
    for (const n of [...this.leftovers]) {
      try {
        await this.backend.delete({ type: 'lock', name: n });
        this.leftovers.delete(n);
      } catch (err) {
        this.emit({ type: 'warning', message: `could not delete the previous lock file ${n.slice(0, 8)} (will retry): ${errMessage(err)}` });
      }
    }
  }

  private failRefresh(err: unknown, warn = true): void {
    this.refreshError = errMessage(err);
    this.refreshCause = err;
    if (warn) this.emit({ type: 'warning', message: `could not refresh the repository lock (will retry in ${fmtAge(this.timings.refreshMs)}): ${this.refreshError}` });
  }

  /** From now on assertHeld() and the snapshot guard refuse; the files go at release. */
  private lose(reason: string): void {
    this.state = 'lost';
    this.lostReason = reason;
    this.stopTimer();
    this.emit({ type: 'warning', message: `lost the repository lock: ${reason}` });
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private stop(): void {
    this.stopTimer();
    this.unguard?.();
    this.unguard = undefined;
  }

  /** Stops refreshing and deletes the lock file. Errors are thrown after the lock is given up. */
  async release(): Promise<void> {
    const wasHeld = this.state === 'held';
    this.state = 'released';
    this.stop();
    try {
      await this.refreshing?.catch(() => undefined);
      if (!wasHeld && this.leftovers.size === 0 && !held.has(this)) return;
      const names = [this.current, ...this.leftovers, ...(this.pending !== undefined ? [this.pending] : [])];
      for (const n of names) await this.backend.delete({ type: 'lock', name: n });
      this.leftovers.clear();
    } finally {
      held.delete(this);
    }
  }

  /**
   * Gives up the lock and deletes its files synchronously, for a process about to exit. Returns
   * false when the backend cannot delete synchronously (then use release()).
   */
  releaseSync(): boolean {
    const del = this.backend.deleteSync?.bind(this.backend);
    if (del === undefined) return false;
    this.state = 'released';
    this.stop();
    const names = [this.current, ...this.leftovers, ...(this.pending !== undefined ? [this.pending] : [])];
    for (const n of names) del({ type: 'lock', name: n } satisfies Handle);
    this.leftovers.clear();
    held.delete(this);
    return true;
  }
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}

/**
 * Writes a lock file exactly as given, without any check and without refreshing it; returns
 * its name. For tests and repair tools (e.g. a lock of a process that is gone).
 */
export async function writeLockFile(repo: Repository, info: LockInfo): Promise<string> {
  const { name, bytes } = encodeLock(repo.key.encKey, info);
  await repo.backend.put({ type: 'lock', name }, bytes);
  return name;
}

/** The locks this process holds. */
export function heldLocks(): RepoLock[] {
  return [...held];
}

/** Releases every lock this process holds; returns the failures (the lock is given up either way). */
export async function releaseHeldLocks(): Promise<{ lock: string; error: string }[]> {
  const failures: { lock: string; error: string }[] = [];
  for (const l of [...held]) {
    try {
      await l.release();
    } catch (err) {
      failures.push({ lock: l.name, error: errMessage(err) });
    }
  }
  return failures;
}

/**
 * For a signal handler about to call process.exit: deletes the files of every held lock
 * synchronously where the backend can, and returns the locks it could not release that way.
 */
export function releaseHeldLocksSync(): RepoLock[] {
  const rest: RepoLock[] = [];
  for (const l of [...held]) {
    try {
      if (!l.releaseSync()) rest.push(l);
    } catch {
      rest.push(l);
    }
  }
  return rest;
}
