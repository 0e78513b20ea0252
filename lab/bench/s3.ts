/**
 * bench/s3: meshback, restic and kopia side by side on one MinIO over loopback (the runner behind
 * `npm run bench:s3`). The dataset, the 2% change, the measurement (GNU time: wall, CPU, peak RSS),
 * the restore comparison and the table rows are bench:peers' (bench/peers.ts); what is new here is
 * the repository: each tool writes to its own prefix of one bucket of one MinIO (lab/testenv
 * startS3, its Prometheus metrics public), and the requests each step made are counted by MinIO.
 *
 * Per tool, one after another: copy the dataset to WORK/src (not timed), then measured: init,
 * first backup, (the untimed, deterministic 2% mutation), backup after the change, full restore
 * into an empty WORK/restore (valid only if the tree equals WORK/src by path, type, size, mode,
 * symlink target and SHA-256). Stored bytes: the objects under the tool's prefix after each backup.
 *
 * Requests: MinIO's counter `minio_s3_requests_total{api=...}` (/minio/v2/metrics/cluster), read
 * before and after each step. MinIO serves that page from a cache refreshed at most every 10 s, so
 * after each step the runner waits METRICS_SETTLE_MS (not timed) before reading; the ListObjectsV2
 * pages the runner itself sends to size the prefix are subtracted. Nothing else uses the server.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ensureGnuTime, flush } from './measure.ts';
import { run } from '../../src/host/process.ts';
import type { Measurement } from '../../src/host/process.ts';
import { newContext, s3DeletePrefix } from './tools.ts';
import type { S3Target, Tool } from './tools.ts';
import { startS3 } from '../testenv/index.ts';
import type { S3Env } from '../testenv/index.ts';
import {
  cell,
  compareRestore,
  dataScriptProvider,
  errText,
  fmtDuration,
  fmtMiB,
  fmtS,
  prepareDataset,
  ratioTable,
  resolveTools,
  short,
  summarize,
  summaryLine,
  toolEnv,
  versusBest,
} from './peers.ts';
import type { DataProvider, Ratio, Row, SummaryRow, ToolInfo } from './peers.ts';
import { nullSink, reportOp } from '../../src/events/index.ts';
import type { EventSink } from '../../src/events/index.ts';

export const S3_TOOLS = ['meshback', 'restic', 'kopia'] as const;
export const S3_OPS = ['init', 'backup-first', 'backup-2pct', 'restore'] as const;
export type S3Op = (typeof S3_OPS)[number];
const TITLES: Record<S3Op, string> = {
  init: 'init (create the repository)',
  'backup-first': 'first backup',
  'backup-2pct': 'backup after a 2% change',
  restore: 'full restore of the latest backup (verified: path, type, size, mode, SHA-256)',
};

/** Targets against the better of restic and kopia (issue 13): wall <= 0.8, peak RSS <= 1.0. */
export const S3_TARGETS = { wall: 0.8, rss: 1.0 } as const;

/** How long MinIO may serve a cached metrics page (10 s), plus a margin. */
export const METRICS_SETTLE_MS = 11_000;

/** Requests by kind: what S3 bills (PUT, GET, HEAD, LIST, DELETE; everything else is other). */
export interface RequestCounts {
  put: number;
  get: number;
  head: number;
  list: number;
  delete: number;
  other: number;
  total: number;
}

/** The kind of one MinIO API name (`putobject`, `listobjectsv2`, ...). */
export function requestKind(api: string): Exclude<keyof RequestCounts, 'total'> {
  const a = api.toLowerCase();
  if (a === 'putobject' || a === 'putobjectpart' || a === 'completemultipartupload' || a === 'newmultipartupload' || a === 'copyobject') return 'put';
  if (a === 'getobject') return 'get';
  if (a === 'headobject' || a === 'headbucket') return 'head';
  if (a.startsWith('listobjects') || a === 'listobjectversions' || a === 'listmultipartuploads') return 'list';
  if (a === 'deleteobject' || a === 'deletemultipleobjects') return 'delete';
  return 'other';
}

/** `minio_s3_requests_total` per API from a Prometheus text page. */
export function parseRequestTotals(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^minio_s3_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)$/.exec(line.trim());
    if (m === null) continue;
    const api = /(?:^|,)api="([^"]*)"/.exec(m[1]!)?.[1];
    if (api !== undefined) out.set(api, (out.get(api) ?? 0) + Number(m[2]));
  }
  return out;
}

/** The requests between two readings, by kind, less `ownLists` ListObjectsV2 the runner sent itself. */
export function requestDelta(before: Map<string, number>, after: Map<string, number>, ownLists = 0): RequestCounts {
  const c: RequestCounts = { put: 0, get: 0, head: 0, list: 0, delete: 0, other: 0, total: 0 };
  for (const [api, n] of after) {
    const d = n - (before.get(api) ?? 0);
    if (d > 0) c[requestKind(api)] += d;
  }
  c.list = Math.max(0, c.list - ownLists);
  c.total = c.put + c.get + c.head + c.list + c.delete + c.other;
  return c;
}

export interface S3BenchOptions {
  tools: string[];
  data?: string;
  sizeText: string;
  size: number;
  seed: number;
  postgres?: boolean;
  work: string;
  out: string;
  env: Record<string, string>;
  install?: boolean;
  dataProvider?: DataProvider;
  events?: EventSink;
  /** wait before reading MinIO's metrics after a step (default METRICS_SETTLE_MS; tests shorten it only where counts are not checked) */
  settleMs?: number;
}

export interface S3Row extends Row {
  requests?: RequestCounts;
}

/** One row of the ratio table (the same as bench:peers'). */
export type S3Ratio = Ratio;

export interface S3Results {
  version: 1;
  startedAt: string;
  finishedAt: string;
  totalSeconds: number;
  machine: { cpus: number; memGiB: number; kernel: string; node: string; cpuModel: string };
  minio: string;
  tools: ToolInfo[];
  dataset: Record<string, unknown>;
  dataTool: string;
  rows: S3Row[];
  summary: SummaryRow[];
  /** per tool: requests of both backups per GiB stored after the last backup */
  requestsPerGiB: { tool: string; requests: number; storedBytes: number; perGiB: number }[];
  ratios: S3Ratio[];
}

/** Requests per GiB stored: both backups' requests over the bytes stored after the second. */
export function requestsPerGiB(rows: S3Row[], tool: string): S3Results['requestsPerGiB'][number] | undefined {
  const b = rows.filter((r) => r.tool === tool && r.ok && (r.op === 'backup-first' || r.op === 'backup-2pct'));
  const last = b.find((r) => r.op === 'backup-2pct');
  if (b.length !== 2 || last?.bytesStored === undefined || last.bytesStored === 0 || b.some((r) => r.requests === undefined)) return undefined;
  const requests = b.reduce((s, r) => s + r.requests!.total, 0);
  return { tool, requests, storedBytes: last.bytesStored, perGiB: requests / (last.bytesStored / 1024 ** 3) };
}

/** meshback against the better of its peers, per metric. */
export function s3Ratios(summary: SummaryRow[], peers: readonly string[] = ['restic', 'kopia']): S3Ratio[] {
  return [
    versusBest(summary, peers, 'first backup, wall', ['backup-first'], 'wallSeconds', S3_TARGETS.wall),
    versusBest(summary, peers, 'backup after a 2% change, wall', ['backup-2pct'], 'wallSeconds', S3_TARGETS.wall),
    versusBest(summary, peers, 'restore, wall', ['restore'], 'wallSeconds', S3_TARGETS.wall),
    versusBest(summary, peers, 'peak RSS, worst operation', ['backup-first', 'backup-2pct', 'restore'], 'maxRssBytes', S3_TARGETS.rss),
  ];
}

async function readTotals(s3: S3Env): Promise<Map<string, number>> {
  const r = await fetch(`${s3.endpoint}/minio/v2/metrics/cluster`);
  if (!r.ok) throw new Error(`MinIO's metrics page answered ${r.status}: was it started with metrics: true?`);
  return parseRequestTotals(await r.text());
}

/** Bytes under the prefix and the ListObjectsV2 pages it took. */
async function sizeOfPrefix(s3: S3Env, t: S3Target): Promise<{ bytes: number; pages: number }> {
  const c = s3.client();
  try {
    let bytes = 0;
    let pages = 0;
    let token: string | undefined;
    for (; pages < 100_000; ) {
      const r = await c.send(new ListObjectsV2Command({ Bucket: t.bucket, Prefix: `${t.prefix}/`, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
      pages++;
      for (const o of r.Contents ?? []) bytes += o.Size ?? 0;
      if (r.IsTruncated !== true || r.NextContinuationToken === undefined) break;
      token = r.NextContinuationToken;
    }
    return { bytes, pages };
  } finally {
    c.destroy();
  }
}

export function runS3Bench(opts: S3BenchOptions): Promise<S3Results> {
  const emit = opts.events ?? nullSink;
  return reportOp(emit, 'bench-s3', { tools: opts.tools }, () => runS3Ops(opts, emit));
}

async function runS3Ops(opts: S3BenchOptions, emit: EventSink): Promise<S3Results> {
  const log = (message: string): void => emit({ type: 'note', op: 'bench-s3', message });
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const work = path.resolve(opts.work);
  const data = opts.dataProvider ?? dataScriptProvider();
  const settle = opts.settleMs ?? METRICS_SETTLE_MS;
  await fsp.mkdir(work, { recursive: true });
  await fsp.mkdir(opts.out, { recursive: true });
  await ensureGnuTime();
  const resolved = await resolveTools(opts.tools, opts.install ?? true, log);
  const tools = resolved.filter((r) => r.info.available && r.tool.s3 === true).map((r) => r.tool);
  for (const r of resolved) if (r.info.available && r.tool.s3 !== true) log(`${r.tool.name}: cannot write to S3, left out`);
  const { env, stripped } = toolEnv(opts.env);
  if (stripped.length > 0) log(`not passed to the tools (a benchmark uses the defaults): ${stripped.join(' ')}`);
  const { dir: dataDir, dataset } = await prepareDataset(opts, data, work, log);

  const minioDir = path.join(work, 'minio');
  await fsp.rm(minioDir, { recursive: true, force: true });
  const s3 = await startS3({ metrics: true, dir: minioDir, log: () => {} });
  const rows: S3Row[] = [];
  const src = path.join(work, 'src');
  const restoreDir = path.join(work, 'restore');
  try {
    log(`MinIO at ${s3.endpoint}, data in ${minioDir}; requests counted from its metrics (each reading waits ${settle / 1000} s for its cache, not timed)`);
    const record = (row: S3Row): void => {
      rows.push(row);
      const q = row.requests;
      const reqs = q !== undefined ? `; requests ${q.total} (PUT ${q.put}, GET ${q.get}, HEAD ${q.head}, LIST ${q.list}, DELETE ${q.delete}, other ${q.other})` : '';
      if (!row.ok) log(`${row.tool} ${row.op}: FAILED: ${row.error ?? ''}${reqs}`);
      else log(`${row.tool} ${row.op}: ${fmtS(row.wallSeconds!)} s wall, ${fmtS(row.cpuSeconds!)} s CPU, ${fmtMiB(row.maxRssBytes!)} MiB peak RSS${row.bytesStored !== undefined ? `, ${fmtMiB(row.bytesStored)} MiB stored` : ''}${reqs}`);
    };
    for (const tool of tools) await runTool(tool);

    async function runTool(tool: Tool): Promise<void> {
      const target: S3Target = { endpoint: s3.endpoint, bucket: s3.bucket, prefix: `bench-s3/${tool.name}`, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, region: s3.region };
      const ctx = await newContext(tool, path.join(work, 'runs', tool.name), env, target);
      log(`${tool.name}: copying the dataset to ${src} (not timed)`);
      await fsp.rm(src, { recursive: true, force: true });
      await run(['cp', '-a', dataDir, src]);
      await new Promise((r) => setTimeout(r, settle));
      let before = await readTotals(s3);
      let blocked: string | undefined;
      const step = async (op: S3Op, fn: () => Promise<Measurement>, after?: (row: S3Row) => Promise<void>): Promise<void> => {
        if (blocked !== undefined) return record({ tool: tool.name, op, repeat: 1, ok: false, error: `not run: ${blocked}` });
        let row: S3Row;
        await flush();
        try {
          const m = await fn();
          row = { tool: tool.name, op, repeat: 1, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, maxRssBytes: m.maxRssBytes, ok: true };
          if (after !== undefined) await after(row);
        } catch (err) {
          row = { tool: tool.name, op, repeat: 1, ok: false, error: errText(err) };
          blocked = `${op} failed`;
        }
        let own = 0;
        if (op.startsWith('backup') && row.ok) {
          const sz = await sizeOfPrefix(s3, target);
          row.bytesStored = sz.bytes;
          own = sz.pages;
        }
        await new Promise((r) => setTimeout(r, settle));
        const now = await readTotals(s3);
        row.requests = requestDelta(before, now, own);
        before = now;
        record(row);
      };
      try {
        await step('init', () => tool.init(ctx));
        await step('backup-first', () => tool.backup(ctx, src));
        if (blocked === undefined) {
          try {
            await data.mutate(src, 2, opts.seed + 1);
          } catch (err) {
            blocked = `the 2% mutation of ${src} failed: ${errText(err)}`;
          }
        }
        await step('backup-2pct', () => tool.backup(ctx, src));
        await fsp.rm(restoreDir, { recursive: true, force: true });
        await fsp.mkdir(restoreDir);
        await step('restore', () => tool.restore(ctx, restoreDir), async (row) => {
          const diff = await compareRestore(src, restoreDir);
          if (diff.content.length > 0) {
            row.ok = false;
            row.error = `restored data differ from the source (${diff.content.length} differences): ${diff.content.slice(0, 5).join('; ')}`;
          }
        });
      } finally {
        await fsp.rm(restoreDir, { recursive: true, force: true });
        await fsp.rm(ctx.dir, { recursive: true, force: true });
        await s3DeletePrefix(target).catch(() => {});
      }
    }
  } finally {
    await s3.stop();
    await fsp.rm(minioDir, { recursive: true, force: true });
    await fsp.rm(src, { recursive: true, force: true });
  }
  const summary = summarize(rows);
  const results: S3Results = {
    version: 1,
    startedAt,
    finishedAt: new Date().toISOString(),
    totalSeconds: (performance.now() - t0) / 1000,
    machine: { cpus: os.availableParallelism(), memGiB: os.totalmem() / 1024 ** 3, kernel: os.release(), node: process.versions.node, cpuModel: os.cpus()[0]?.model ?? 'unknown' },
    minio: 'MinIO from lab/testenv (startS3), loopback, one drive, path-style, no TLS',
    tools: resolved.map((r) => r.info),
    dataset,
    dataTool: data.name,
    rows,
    summary,
    requestsPerGiB: tools.flatMap((t) => requestsPerGiB(rows, t.name) ?? []),
    ratios: s3Ratios(summary),
  };
  await fsp.writeFile(path.join(opts.out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  await fsp.writeFile(path.join(opts.out, 'results.md'), renderS3Markdown(results));
  return results;
}

const reqCell = (q: RequestCounts | undefined): string => (q === undefined ? '—' : `${q.total} (${q.put}/${q.get}/${q.head}/${q.list}/${q.delete}/${q.other})`);

export function renderS3Markdown(res: S3Results): string {
  const L: string[] = [];
  const m = res.machine;
  L.push('# meshback, restic and kopia on MinIO (loopback)', '');
  L.push(`${res.startedAt} · ${m.cpus} CPUs (${m.cpuModel}) · ${m.memGiB.toFixed(1)} GiB RAM · Linux ${m.kernel} · node ${m.node} · total run time ${fmtDuration(res.totalSeconds)}`, '');
  const t = res.dataset['tree'] as { files: number; dirs: number; bytes: number } | undefined;
  L.push(`Dataset: \`${String(res.dataset['path'])}\`${t !== undefined ? `: ${t.files.toLocaleString('en-US')} files, ${t.dirs.toLocaleString('en-US')} directories, ${fmtMiB(t.bytes)} MiB` : ''}; made and changed by ${res.dataTool}. Object store: ${res.minio}; each tool its own prefix of one bucket.`, '');
  L.push('| tool | version | how it is run |', '|---|---|---|');
  for (const tool of res.tools) L.push(`| ${tool.label} | ${cell(tool.available ? tool.version : `unavailable: ${tool.reason ?? ''}`)} | ${cell(tool.setup)} |`);
  L.push('');
  const order = res.tools.map((x) => x.name);
  for (const op of S3_OPS) {
    const rows = res.summary.filter((s) => s.op === op).sort((a, b) => order.indexOf(a.tool) - order.indexOf(b.tool));
    if (rows.length === 0) continue;
    const stored = op.startsWith('backup');
    L.push(`## ${TITLES[op]}`, '');
    L.push(`| tool | wall s | CPU s | peak RSS MiB |${stored ? ' stored MiB |' : ''} requests (PUT/GET/HEAD/LIST/DELETE/other) |`, `|---|---:|---:|---:|${stored ? '---:|' : ''}---:|`);
    for (const s of rows) L.push(`${summaryLine(s, res, stored)} ${reqCell(res.rows.find((r) => r.tool === s.tool && r.op === op)?.requests)} |`);
    L.push('');
  }
  L.push('## Requests per GiB stored', '', '| tool | requests (both backups) | stored MiB | requests per GiB stored |', '|---|---:|---:|---:|');
  for (const r of res.requestsPerGiB) L.push(`| ${r.tool} | ${r.requests} | ${fmtMiB(r.storedBytes)} | ${r.perGiB.toFixed(0)} |`);
  L.push('', '## meshback / the better peer', '', ...ratioTable(res.ratios));
  L.push('', '## How this was measured', '');
  L.push(
    '- As bench:peers: every step under GNU time (wall, CPU = user + system, peak RSS = ru_maxrss of the largest process); `sync` before each step; the 2% mutation, copying the dataset and comparing trees are not timed.',
    "- Requests: MinIO's own counter `minio_s3_requests_total` by API (`/minio/v2/metrics/cluster`, public for this run), read before and after each step, the same for every tool; the page is cached up to 10 s by MinIO, so each reading waits 11 s (not timed); the runner's own ListObjectsV2 (sizing the prefix) are subtracted. Requests per GiB stored = the requests of both backups over the stored bytes after the second.",
    '- Stored bytes: the sum of the object sizes under the tool\'s prefix (ListObjectsV2).',
    '- A restore is valid only if the restored tree equals the source by path, type, size, mode, symlink target and SHA-256 of every file.',
  );
  const failed = res.rows.filter((r) => !r.ok);
  if (failed.length > 0) {
    L.push('', '## Failures', '');
    for (const r of failed) L.push(`- ${r.tool} ${r.op}: ${cell(short(r.error ?? '', 600))}`);
  }
  return L.join('\n') + '\n';
}
