/**
 * server/runs: the run registry of `meshback server`. Every run the server makes (scheduled,
 * caught up, first, triggered, or a restore drill) is a RunRecord: queued -> running ->
 * succeeded | failed. The registry keeps the last `keep` (1000) in memory, appends each change
 * of a record to STATE_DIR/runs.jsonl (one record a line, the last line of an id wins), and
 * tells subscribers (the API's server-sent events, metrics) of every change and of each typed
 * event a run emits.
 *
 * - Each change is in the file before the call returns (a synchronous append of one short line,
 *   at most a few per run): a trigger answered 202 is in runs.jsonl even if the server is killed
 *   the next moment. runs.jsonl is bounded: once it holds more than 3 x `keep` lines it is
 *   rewritten (a temporary file in the same folder, then rename) with the last `keep` records. A
 *   write that fails is one warning (the registry in memory goes on; the file only serves the next
 *   start).
 * - At start, the records of the file are read back (load: lines that do not parse or do not fit
 *   the schema are skipped with one warning; nothing is written), and once the server is sure to
 *   be the only one on its state directory (its port was free), recover() records each record a
 *   stopped server left `queued` or `running` as `failed` with code INTERRUPTED.
 * - The recent typed events of a run are buffered (the last EVENTS_PER_RUN, consecutive
 *   `progress` events folded into the newest), so a client that subscribes right after a trigger
 *   sees the run from its start; buffers are kept for the last BUFFERED_RUNS runs.
 */
import { appendFileSync, mkdirSync, promises as fsp, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { errMessage } from '../errors/index.ts';
import type { MeshEvent } from '../events/index.ts';
import { parseJson, safeParse } from '../util/schema.ts';
import { RunRecordSchema } from './schemas.ts';
import type { RunKind, RunReason, RunRecord, RunStatus } from './schemas.ts';

export type { RunKind, RunReason, RunRecord, RunStatus };

/** A change the registry tells its subscribers of: a record changed, or a run emitted an event (`seq` counts a run's events from 1). */
export type RegistryChange = { type: 'run'; record: RunRecord } | { type: 'event'; runId: string; seq: number; event: MeshEvent };

export type Subscriber = (c: RegistryChange) => void;

export interface RegistryOptions {
  /** runs.jsonl (undefined: memory only) */
  file?: string;
  /** records kept in memory and in the file after a rewrite (default 1000) */
  keep?: number;
  /** one line when the file cannot be read or written */
  warn?(message: string): void;
  now?(): number;
}

const EVENTS_PER_RUN = 500;
const BUFFERED_RUNS = 50;

/** A run id: 16 random hex digits. */
export function newRunId(): string {
  return randomBytes(8).toString('hex');
}

export class RunRegistry {
  private readonly records = new Map<string, RunRecord>();
  private readonly events = new Map<string, { seq: number; event: MeshEvent }[]>();
  private readonly seqs = new Map<string, number>();
  private readonly subscribers = new Set<Subscriber>();
  private readonly keep: number;
  private readonly opts: RegistryOptions;
  private lines = 0;
  private dirMade = false;

  constructor(opts: RegistryOptions = {}) {
    this.opts = opts;
    this.keep = Math.max(1, opts.keep ?? 1000);
  }

  private now(): string {
    return new Date(this.opts.now?.() ?? Date.now()).toISOString();
  }

  /** Reads runs.jsonl back (missing: nothing); writes nothing. */
  async load(): Promise<void> {
    const file = this.opts.file;
    if (file === undefined) return;
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return;
      this.opts.warn?.(`${file} cannot be read (${errMessage(err)}): the server starts without its earlier runs`);
      return;
    }
    let bad = 0;
    const lines = text.split('\n').filter((l) => l !== '');
    for (const line of lines) {
      try {
        const r = safeParse(RunRecordSchema, parseJson(line, (m) => new Error(m)));
        if (!r.success) {
          bad++;
          continue;
        }
        this.records.delete(r.output.id); // re-insert: the map keeps the order of last change
        this.records.set(r.output.id, r.output as RunRecord);
      } catch {
        bad++;
      }
    }
    if (bad > 0) this.opts.warn?.(`${file}: ${bad} line(s) are not run records and were skipped`);
    this.lines = lines.length;
    this.trim();
  }

  /** Records each run a stopped server left queued or running (read by load) as failed, INTERRUPTED; synchronous in memory. */
  recover(): void {
    const stale = [...this.records.values()].filter((r) => r.status === 'queued' || r.status === 'running');
    for (const r of stale) this.update(r.id, { status: 'failed', finishedAt: this.now(), error: { code: 'INTERRUPTED', message: `the server stopped while the run was ${r.status}: it did not finish (nothing already stored is lost)` } });
    if (stale.length === 0 && this.opts.file !== undefined && this.lines > 3 * this.keep) this.rewrite();
  }

  /** A new record, queued. */
  create(init: { kind: RunKind; policy: string; reason: RunReason; tags?: Record<string, string>; id?: string }): RunRecord {
    const rec: RunRecord = { id: init.id ?? newRunId(), kind: init.kind, policy: init.policy, reason: init.reason, tags: init.tags ?? {}, status: 'queued', queuedAt: this.now() };
    this.records.set(rec.id, rec);
    this.trim();
    this.changed(rec);
    return rec;
  }

  /** Marks a record running. */
  start(id: string): RunRecord {
    return this.update(id, { status: 'running', startedAt: this.now() });
  }

  /** Marks a record succeeded or failed, with what the run reported. */
  finish(id: string, end: { ok: boolean; snapshotId?: string; error?: { code: string; message: string }; report?: RunRecord['report'] }): RunRecord {
    return this.update(id, {
      status: end.ok ? 'succeeded' : 'failed',
      finishedAt: this.now(),
      ...(end.snapshotId !== undefined ? { snapshotId: end.snapshotId } : {}),
      ...(end.error !== undefined ? { error: end.error } : {}),
      ...(end.report !== undefined ? { report: end.report } : {}),
    });
  }

  /** Fails every record still queued (the server stops: they will not start). */
  failQueued(message: string): void {
    for (const r of [...this.records.values()]) if (r.status === 'queued') this.update(r.id, { status: 'failed', finishedAt: this.now(), error: { code: 'INTERRUPTED', message } });
  }

  private update(id: string, patch: Partial<RunRecord>): RunRecord {
    const old = this.records.get(id);
    if (old === undefined) throw new Error(`no run ${id} in the registry`);
    const rec = { ...old, ...patch };
    this.records.delete(id);
    this.records.set(id, rec);
    this.changed(rec);
    return rec;
  }

  /** Records a typed event of run `id` (buffered, and told to subscribers). */
  event(id: string, event: MeshEvent): void {
    if (!this.records.has(id)) return;
    const seq = (this.seqs.get(id) ?? 0) + 1;
    this.seqs.set(id, seq);
    let buf = this.events.get(id);
    if (buf === undefined) {
      buf = [];
      this.events.set(id, buf);
      if (this.events.size > BUFFERED_RUNS) {
        const oldest = this.events.keys().next().value!;
        this.events.delete(oldest);
        this.seqs.delete(oldest);
      }
    }
    const last = buf.at(-1);
    if (event.type === 'progress' && last?.event.type === 'progress') buf[buf.length - 1] = { seq, event };
    else {
      buf.push({ seq, event });
      if (buf.length > EVENTS_PER_RUN) buf.shift();
    }
    this.tell({ type: 'event', runId: id, seq, event });
  }

  /** The buffered events of run `id` (the recent ones, progress folded), oldest first. */
  eventsOf(id: string): { seq: number; event: MeshEvent }[] {
    return [...(this.events.get(id) ?? [])];
  }

  get(id: string): RunRecord | undefined {
    return this.records.get(id);
  }

  /** Records, newest first (by queue time), filtered; at most `limit`. */
  list(f: { policy?: string; kind?: RunKind; status?: RunStatus; limit?: number } = {}): RunRecord[] {
    // the map's order is that of the last change: reversed, it breaks ties of one millisecond newest first
    const out = [...this.records.values()].filter((r) => (f.policy === undefined || r.policy === f.policy) && (f.kind === undefined || r.kind === f.kind) && (f.status === undefined || r.status === f.status)).reverse();
    out.sort((a, b) => (a.queuedAt < b.queuedAt ? 1 : a.queuedAt > b.queuedAt ? -1 : 0));
    return out.slice(0, f.limit ?? out.length);
  }

  /** The queued or running record of `policy` (of kind `kind`), if any. */
  active(policy: string, kind: RunKind = 'backup'): RunRecord | undefined {
    for (const r of this.records.values()) if (r.policy === policy && r.kind === kind && (r.status === 'queued' || r.status === 'running')) return r;
    return undefined;
  }

  /** Calls `fn` on every change from now on; returns the unsubscribe function. */
  subscribe(fn: Subscriber): () => void {
    this.subscribers.add(fn);
    return () => void this.subscribers.delete(fn);
  }

  /** Resolves when every change so far is in the file (they are once made: for callers that should not need to know). */
  async flush(): Promise<void> {
    await Promise.resolve();
  }

  private tell(c: RegistryChange): void {
    for (const s of [...this.subscribers]) {
      try {
        s(c);
      } catch (err) {
        this.opts.warn?.(`a subscriber of the run registry failed: ${errMessage(err)}`);
      }
    }
  }

  private changed(rec: RunRecord): void {
    this.tell({ type: 'run', record: rec });
    const file = this.opts.file;
    if (file === undefined) return;
    this.lines++;
    if (this.lines > 3 * this.keep) {
      this.rewrite();
      return;
    }
    try {
      this.mkdir(file);
      appendFileSync(file, JSON.stringify(rec) + '\n');
    } catch (err) {
      this.warnWrite(err);
    }
  }

  private mkdir(file: string): void {
    if (this.dirMade) return;
    mkdirSync(path.dirname(file), { recursive: true });
    this.dirMade = true;
  }

  /** the file rewritten with the records in memory (the last `keep`), atomically */
  private rewrite(): void {
    const file = this.opts.file!;
    const text = [...this.records.values()].map((r) => JSON.stringify(r) + '\n').join('');
    this.lines = this.records.size;
    try {
      this.mkdir(file);
      const tmp = path.join(path.dirname(file), `.runs.jsonl.tmp-${process.pid}`);
      writeFileSync(tmp, text);
      renameSync(tmp, file);
    } catch (err) {
      this.warnWrite(err);
    }
  }

  private warnWrite(err: unknown): void {
    this.opts.warn?.(`${this.opts.file!} cannot be written (${errMessage(err)}): the server goes on; runs of this session may be missing from it after a restart`);
  }

  /** drops the oldest finished records beyond `keep` (a record still queued or running stays) */
  private trim(): void {
    if (this.records.size <= this.keep) return;
    for (const r of [...this.records.values()]) {
      if (this.records.size <= this.keep) break;
      if (r.status === 'queued' || r.status === 'running') continue;
      this.records.delete(r.id);
      this.events.delete(r.id);
      this.seqs.delete(r.id);
    }
  }
}
