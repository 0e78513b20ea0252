/**
 * testbed/load: the load generator. It sends requests through the sidecars (client -> nginx ->
 * service -> PostgreSQL or Redis) at a set rate for a set time, round-robin over the services:
 * writes (POST /NAME, a new order or session) and, for `readFraction` of the requests, reads of
 * something this run wrote before. Every write the service acknowledges (201 with its id) is
 * appended, with the time the acknowledgement arrived, to the journal (DIR/journal.jsonl, outside
 * the volumes) before the request counts as acknowledged.
 *
 * Bounded: at most ceil(rate x duration) request slots (fewer when stopped through `signal`);
 * at most `concurrency` requests in flight
 * (a slot that finds them all busy is counted as skipped, not queued); each request times out;
 * the run ends at most `timeoutMs` after its last slot.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import { UsageError } from '../../src/errors/index.ts';
import { httpRequest, sleep } from './procs.ts';
import { paths } from './state.ts';
import type { JournalEntry, ServiceSpec, TestbedState } from './state.ts';

export interface LoadOptions {
  /** requests per second (all services together) */
  rate: number;
  durationSeconds: number;
  /** only these services (default: all) */
  services?: string[];
  /** fraction of requests that read instead of write (default 0.2) */
  readFraction?: number;
  /** requests in flight at most (default 64) */
  concurrency?: number;
  /** per request (default 5000 ms) */
  timeoutMs?: number;
  /** called about once a second */
  onProgress?: (p: LoadProgress) => void;
  /** stops the run early (requests in flight are still awaited and journaled) */
  signal?: AbortSignal;
}

export interface LoadProgress {
  seconds: number;
  sent: number;
  acknowledged: number;
  failed: number;
}

export interface ServiceLoad {
  writes: number;
  acknowledged: number;
  writesFailed: number;
  reads: number;
  readsOk: number;
  readsFailed: number;
}

export interface LoadResult {
  startedAt: string;
  endedAt: string;
  seconds: number;
  /** request slots: ceil(rate x duration) */
  requested: number;
  sent: number;
  /** writes acknowledged to the client, each journaled */
  acknowledged: number;
  writesFailed: number;
  reads: number;
  readsOk: number;
  readsFailed: number;
  /** slots that found `concurrency` requests in flight */
  skipped: number;
  perService: Record<string, ServiceLoad>;
  /** up to 5 distinct failure messages with their counts */
  errors: { message: string; count: number }[];
  latencyMs: { p50: number; p99: number; max: number };
}

const MAX_REQUESTS = 10_000_000;

export function validateLoad(o: LoadOptions): void {
  if (!(o.rate > 0 && o.rate <= 10_000)) throw new UsageError(`--rate ${o.rate}: give requests per second between 0 and 10000`);
  if (!(o.durationSeconds > 0 && o.durationSeconds <= 86_400)) throw new UsageError(`--duration ${o.durationSeconds}: give seconds between 0 and 86400`);
  if (o.readFraction !== undefined && !(o.readFraction >= 0 && o.readFraction < 1)) throw new UsageError('--read-fraction must be at least 0 and below 1');
  if (o.concurrency !== undefined && !(Number.isInteger(o.concurrency) && o.concurrency >= 1 && o.concurrency <= 1024)) throw new UsageError('--concurrency must be an integer from 1 to 1024');
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export async function runLoad(s: TestbedState, o: LoadOptions): Promise<LoadResult> {
  validateLoad(o);
  let services: ServiceSpec[] = s.services;
  if (o.services !== undefined && o.services.length > 0) {
    for (const n of o.services) if (!s.services.some((x) => x.name === n)) throw new UsageError(`no service ${JSON.stringify(n)} in this testbed: the services are ${s.services.map((x) => x.name).join(', ')}`);
    services = s.services.filter((x) => o.services!.includes(x.name));
  }
  const readFraction = o.readFraction ?? 0.2;
  const concurrency = o.concurrency ?? 64;
  const timeoutMs = o.timeoutMs ?? 5000;
  const total = Math.min(MAX_REQUESTS, Math.ceil(o.rate * o.durationSeconds));
  const runId = randomBytes(4).toString('hex');
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const journal = await fsp.open(paths(s.dir).journal, 'a');
  let journalChain: Promise<unknown> = Promise.resolve();
  const per: Record<string, ServiceLoad> = {};
  for (const x of services) per[x.name] = { writes: 0, acknowledged: 0, writesFailed: 0, reads: 0, readsOk: 0, readsFailed: 0 };
  const written = new Map<string, string[]>(services.map((x) => [x.name, []]));
  const errors = new Map<string, number>();
  const latencies: number[] = [];
  const fail = (msg: string): void => {
    const m = msg.replace(/\d{2,}/g, 'N').slice(0, 200);
    errors.set(m, (errors.get(m) ?? 0) + 1);
  };
  let inflight = 0;
  let sent = 0;
  let skipped = 0;
  const pending = new Set<Promise<void>>();
  const t0 = Date.now();
  let nextProgress = t0 + 1000;
  let readTick = 0;

  const one = async (i: number): Promise<void> => {
    const svc = services[i % services.length]!;
    const st = per[svc.name]!;
    const ids = written.get(svc.name)!;
    readTick += readFraction;
    const isRead = ids.length > 0 && readTick >= 1;
    if (isRead) readTick -= 1;
    const start = performance.now();
    try {
      if (isRead) {
        st.reads++;
        const id = ids[(i * 7919) % ids.length]!;
        const r = await httpRequest(svc.sidecarPort, 'GET', `/${svc.name}/${encodeURIComponent(id)}`, undefined, timeoutMs, agent);
        if (r.status === 200) st.readsOk++;
        else {
          st.readsFailed++;
          fail(`read ${svc.name}: HTTP ${r.status} ${r.body.slice(0, 120)}`);
        }
      } else {
        st.writes++;
        const ref = `${runId}-${i}`;
        const value = `${svc.name} ${runId} #${i} ${randomBytes(6).toString('hex')}`;
        const r = await httpRequest(svc.sidecarPort, 'POST', `/${svc.name}`, { ref, value }, timeoutMs, agent);
        let id: string | undefined;
        if (r.status === 201) {
          try {
            const j = JSON.parse(r.body) as { id?: unknown };
            if (typeof j.id === 'string' && j.id !== '') id = j.id;
          } catch {
            /* not an acknowledgement */
          }
        }
        if (id === undefined) {
          st.writesFailed++;
          fail(`write ${svc.name}: HTTP ${r.status} ${r.body.slice(0, 120)}`);
        } else {
          const e: JournalEntry = { t: Date.now(), service: svc.name, store: svc.store, id, value, ...(svc.store === 'postgres' ? { ref } : {}) };
          const line = JSON.stringify(e) + '\n';
          journalChain = journalChain.then(() => journal.write(line));
          await journalChain;
          st.acknowledged++;
          ids.push(id);
        }
      }
      latencies.push(performance.now() - start);
    } catch (err) {
      if (isRead) st.readsFailed++;
      else st.writesFailed++;
      fail(`${isRead ? 'read' : 'write'} ${svc.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  };

  const totals = (): LoadProgress => {
    let acknowledged = 0;
    let failed = 0;
    for (const v of Object.values(per)) {
      acknowledged += v.acknowledged;
      failed += v.writesFailed + v.readsFailed;
    }
    return { seconds: (Date.now() - t0) / 1000, sent, acknowledged, failed };
  };

  try {
    const aborted = (): boolean => o.signal?.aborted === true;
    for (let i = 0; i < total && !aborted(); i++) {
      const due = t0 + (i * 1000) / o.rate;
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      if (aborted()) break;
      if (Date.now() >= nextProgress) {
        nextProgress += 1000;
        o.onProgress?.(totals());
      }
      if (inflight >= concurrency) {
        skipped++;
        continue;
      }
      inflight++;
      sent++;
      const p = one(i).finally(() => {
        inflight--;
        pending.delete(p);
      });
      pending.add(p);
    }
    // every request has its own timeout: this ends within about timeoutMs
    await Promise.all(pending);
    await journalChain;
    await journal.datasync();
  } finally {
    await journal.close();
    agent.destroy();
  }
  const end = Date.now();
  let acknowledged = 0;
  let writesFailed = 0;
  let reads = 0;
  let readsOk = 0;
  let readsFailed = 0;
  for (const v of Object.values(per)) {
    acknowledged += v.acknowledged;
    writesFailed += v.writesFailed;
    reads += v.reads;
    readsOk += v.readsOk;
    readsFailed += v.readsFailed;
  }
  latencies.sort((a, b) => a - b);
  return {
    startedAt: new Date(t0).toISOString(),
    endedAt: new Date(end).toISOString(),
    seconds: (end - t0) / 1000,
    requested: total,
    sent,
    acknowledged,
    writesFailed,
    reads,
    readsOk,
    readsFailed,
    skipped,
    perService: per,
    errors: [...errors.entries()].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([message, count]) => ({ message, count })),
    latencyMs: { p50: round1(percentile(latencies, 50)), p99: round1(percentile(latencies, 99)), max: round1(latencies[latencies.length - 1] ?? 0) },
  };
}

const round1 = (x: number): number => Math.round(x * 10) / 10;
