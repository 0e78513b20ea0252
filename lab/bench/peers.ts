/**
 * bench/peers: meshback side by side with restic, borg, tar+zstd, rsync and cp -a on the same
 * data, in one run (the runner behind `npm run bench:peers`).
 *
 * A *repeat* runs every tool once, one after another, each on a fresh repository (tools are
 * interleaved across repeats, so machine drift hits all of them alike). For one tool in one
 * repeat the runner copies the dataset to WORK/src (not timed; the same path for every tool),
 * then measures: init, first backup, backup after no change, (untimed, deterministic 2% mutation
 * of WORK/src), backup after the change, full restore of the latest backup into an empty
 * WORK/restore, and the tool's full data check where it has one. `sync` runs before every timed
 * step. A restore is valid only if the restored tree equals WORK/src by path, type, size, mode,
 * symlink target and SHA-256 of every file. Repository size (allocated bytes, du -s -B1) is taken
 * after every backup. Small-files mode adds one measured first backup per file count and tool.
 *
 * Nothing here prints: progress goes out as typed events (src/events, `note` per step); results are returned and written
 * as results.json and results.md.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { manifest, walk } from '../gen/compare.ts';
import type { Entry } from '../gen/compare.ts';
import { duBytes, ensureGnuTime, flush } from './measure.ts';
import { aptInstall } from '../../src/host/packages.ts';
import { CommandError, run } from '../../src/host/process.ts';
import type { Measurement } from '../../src/host/process.ts';
import { TOOLS, newContext, toolByName } from './tools.ts';
import { ROOT } from '../../src/host/self.ts';
import type { Tool, ToolContext } from './tools.ts';
import { sizeOf } from '../../src/util/units.ts';
import { nullSink, reportOp } from '../../src/events/index.ts';
import type { EventSink } from '../../src/events/index.ts';
import { isErrno, UsageError } from '../../src/errors/index.ts';
import { checked, int, parseJson, v } from '../../src/util/schema.ts';

export const OPS = ['init', 'backup-first', 'backup-nochange', 'backup-2pct', 'restore', 'check'] as const;
export type MainOp = (typeof OPS)[number];
export const SMALL_OP = 'small-backup-first';
export type Op = MainOp | typeof SMALL_OP;

export const OP_TITLES: Record<Op, string> = {
  init: 'init (create the repository)',
  'backup-first': 'first backup',
  'backup-nochange': 'backup after no change',
  'backup-2pct': 'backup after a 2% change',
  restore: 'full restore of the latest backup (verified: path, type, size, mode, SHA-256)',
  check: 'full data check',
  [SMALL_OP]: 'small files: first backup',
};

/** How the benchmark's data are made and changed (scripts/bench/data.ts by default). */
export interface DataProvider {
  /** what makes the data, for the results */
  name: string;
  generate(out: string, size: string, seed: number, postgres: boolean): Promise<void>;
  /** change about `percent`% of `dir` in place, deterministically for `seed` */
  mutate(dir: string, percent: number, seed: number): Promise<void>;
  small(out: string, files: number, seed: number): Promise<void>;
}

export const DATA_SCRIPT = path.join(ROOT, 'scripts/bench/data.ts');

/** The data generator as a subprocess: `bin/node scripts/bench/data.ts generate|mutate|small ...`. */
export function dataScriptProvider(script = DATA_SCRIPT, env: Record<string, string> = process.env as Record<string, string>): DataProvider {
  const node = path.join(ROOT, 'bin/node');
  const go = async (args: string[]) => {
    await run([node, script, ...args], { env });
  };
  return {
    name: path.relative(ROOT, script),
    generate: (out, size, seed, postgres) => go(['generate', '--size', size, '--seed', String(seed), '--out', out, ...(postgres ? [] : ['--no-postgres'])]),
    mutate: (dir, percent, seed) => go(['mutate', '--percent', String(percent), '--seed', String(seed), dir]),
    small: (out, files, seed) => go(['small', '--files', String(files), '--seed', String(seed), '--out', out]),
  };
}

export interface PeersOptions {
  tools: string[];
  /** an existing dataset directory; else one is generated (or reused) in WORK/data */
  data?: string;
  /** dataset size to generate, as text (e.g. "2GiB") and in bytes */
  sizeText: string;
  size: number;
  seed: number;
  /** generate the dataset with its PostgreSQL part (default true) */
  postgres?: boolean;
  repeat: number;
  work: string;
  out: string;
  /** small-files mode: file counts (empty: off) */
  small: number[];
  smallTools: string[];
  repeatSmall: number;
  /** extra environment for every tool command (e.g. MESHBACK_TEST_SCRYPT_N in tests) */
  env: Record<string, string>;
  /** install missing peer packages with apt-get when root (default true) */
  install?: boolean;
  dataProvider?: DataProvider;
  /** the run's account as typed events (see src/events) */
  events?: EventSink;
}

export interface Row {
  tool: string;
  op: Op;
  repeat: number;
  /** small-files mode: number of files */
  files?: number;
  wallSeconds?: number;
  cpuSeconds?: number;
  maxRssBytes?: number;
  /** repository size after this backup, allocated bytes (du -s -B1) */
  bytesStored?: number;
  /** the same, apparent bytes (du -sb) */
  bytesApparent?: number;
  ok: boolean;
  error?: string;
  /** information that does not make the row fail (e.g. metadata a tool does not restore) */
  note?: string;
}

export interface SummaryRow {
  tool: string;
  op: Op;
  files?: number;
  /** rows and valid rows */
  runs: number;
  okRuns: number;
  wallSeconds?: number;
  wallMin?: number;
  wallMax?: number;
  cpuSeconds?: number;
  maxRssBytes?: number;
  bytesStored?: number;
  ok: boolean;
  error?: string;
  note?: string;
}

export interface ToolInfo {
  name: string;
  label: string;
  version: string;
  encryption: boolean;
  available: boolean;
  reason?: string;
  setup: string;
}

export interface Ratio {
  metric: string;
  meshback?: string;
  /** the best peer's figure, and which peer it is */
  peer?: string;
  peerTool?: string;
  ratio?: number;
  target: string;
  result: 'PASS' | 'MISS' | 'n/a';
  reason?: string;
}

export interface Results {
  version: 1;
  startedAt: string;
  finishedAt: string;
  totalSeconds: number;
  machine: { cpus: number; memGiB: number; kernel: string; node: string; cpuModel: string };
  tools: ToolInfo[];
  dataset: Record<string, unknown>;
  dataTool: string;
  repeats: number;
  repeatSmall: number;
  small: number[];
  smallTools: string[];
  extraEnv: Record<string, string>;
  strippedEnv: string[];
  rows: Row[];
  summary: SummaryRow[];
  ratios: Ratio[];
}

/** Tools that are not known: the caller turns them into a usage error. */
export function unknownTools(names: string[]): string[] {
  return names.filter((n) => toolByName(n) === undefined);
}

const MiB = 1024 * 1024;


export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const sizeLike = () => v.optional(v.union([v.pipe(v.number(), v.minValue(0)), v.string()]));

/**
 * What bench:peers reads of a dataset's dataset.json (lab/gen/bench-data.ts DatasetInfo, or another
 * generator's: the fields datasetMatches compares, each optional, must have these types; anything
 * else is kept and copied into results.json).
 */
export const DatasetJsonSchema = v.looseObject({
  generator: v.optional(v.string()),
  seed: v.optional(v.union([int(), v.pipe(v.string(), v.regex(/^-?\d+$/, 'must be a whole number'))])),
  size: sizeLike(),
  sizeBytes: sizeLike(),
  targetBytes: sizeLike(),
  requestedBytes: sizeLike(),
  requestedSize: sizeLike(),
  files: sizeLike(),
  fileCount: sizeLike(),
  requestedFiles: sizeLike(),
  postgresScale: v.optional(v.nullable(v.number())),
});

/** WORK/small-N.json: what made the small-files tree WORK/small-N beside it. */
export const SmallMarkerSchema = v.object({ files: int(1), seed: int(), generator: v.string() });

/**
 * A JSON file checked by `schema`: `{}` when it does not exist, `{ problem }` (one line naming the
 * file and the field) when it cannot be read, is not JSON or has the wrong shape.
 */
export async function readJson<S extends v.GenericSchema>(file: string, schema: S): Promise<{ value?: v.InferOutput<S>; problem?: string }> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    return isErrno(err, 'ENOENT') ? {} : { problem: `${file} cannot be read (${errText(err)})` };
  }
  try {
    const fail = (m: string) => new Error(`${file}: ${m}`);
    return { value: checked(schema, parseJson(text, (m) => fail(`the file ${m}`)), fail) };
  } catch (err) {
    return { problem: errText(err) };
  }
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await fsp.stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** Files, directories and apparent bytes of a tree (hard-linked files counted once). */
export async function treeStats(dir: string): Promise<{ files: number; dirs: number; symlinks: number; bytes: number }> {
  const s = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  const seen = new Set<bigint>();
  for (const it of await walk(dir)) {
    if (it.st.isDirectory()) s.dirs++;
    else if (it.st.isSymbolicLink()) s.symlinks++;
    else if (it.st.isFile()) {
      s.files++;
      if (!seen.has(it.st.ino)) s.bytes += Number(it.st.size);
      seen.add(it.st.ino);
    }
  }
  return s;
}

/** Does a generated dataset's dataset.json describe what was asked for? */
export function datasetMatches(json: Record<string, unknown> | undefined, want: { size?: number; files?: number; seed: number; postgres?: boolean }): boolean {
  if (json === undefined || Number(json['seed']) !== want.seed) return false;
  if (want.postgres !== undefined && 'postgresScale' in json && (json['postgresScale'] !== null) !== want.postgres) return false;
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : typeof v === 'string' ? sizeOf(v) : undefined);
  if (want.size !== undefined) {
    const sizes = ['size', 'sizeBytes', 'targetBytes', 'requestedBytes', 'requestedSize'].map((k) => num(json[k]));
    if (!sizes.includes(want.size)) return false;
  }
  if (want.files !== undefined) {
    const files = ['files', 'fileCount', 'requestedFiles'].map((k) => num(json[k]));
    if (!files.includes(want.files)) return false;
  }
  return true;
}

export interface RestoreDiff {
  /** differences of content or permission: any makes the restore FAILED */
  content: string[];
  /** metadata the criterion does not cover (mtime to 1 µs, owner): reported only */
  metadata: string[];
}

/** Compare a restored tree with its source by path, type, size, mode, symlink target, SHA-256. */
export async function compareRestore(src: string, dst: string): Promise<RestoreDiff> {
  const [a, b] = await Promise.all([manifest(src, { hash: true }), manifest(dst, { hash: true })]);
  const content: string[] = [];
  const metadata: string[] = [];
  const oct = (m: number) => '0' + m.toString(8);
  for (const [key, s] of a) {
    const d: Entry | undefined = b.get(key);
    if (d === undefined) {
      content.push(`missing: ${key}`);
      continue;
    }
    if (s.type !== d.type) {
      content.push(`type differs: ${key}: ${s.type} vs ${d.type}`);
      continue;
    }
    if (s.type === 'file' && s.size !== d.size) content.push(`size differs: ${key}: ${s.size} vs ${d.size}`);
    else if (s.type === 'file' && s.sha256 !== d.sha256) content.push(`content differs: ${key}`);
    if (s.type === 'symlink' && !s.linkTargetRaw!.equals(d.linkTargetRaw ?? Buffer.alloc(0))) content.push(`symlink target differs: ${key}`);
    if (s.type !== 'symlink' && s.mode !== d.mode) content.push(`mode differs: ${key}: ${oct(s.mode)} vs ${oct(d.mode)}`);
    if (s.uid !== d.uid || s.gid !== d.gid) metadata.push(`owner differs: ${key}`);
    const dt = s.mtimeNs - d.mtimeNs;
    if (s.type !== 'dir' && (dt >= 1000n || dt <= -1000n)) metadata.push(`mtime differs: ${key}`);
  }
  for (const key of b.keys()) if (!a.has(key)) content.push(`extra: ${key}`);
  return { content, metadata };
}

function summarizeMetadata(diffs: string[]): string | undefined {
  if (diffs.length === 0) return undefined;
  const kinds = new Map<string, number>();
  for (const d of diffs) {
    const k = d.slice(0, d.indexOf(':'));
    kinds.set(k, (kinds.get(k) ?? 0) + 1);
  }
  return `not in the pass criterion: ${[...kinds].map(([k, n]) => `${k} for ${n} entries`).join(', ')} (e.g. ${diffs[0]!.slice(diffs[0]!.indexOf(':') + 2)})`;
}

const median = (xs: number[]): number | undefined => {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

export function summarize(rows: Row[]): SummaryRow[] {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const k = `${r.tool}\0${r.op}\0${r.files ?? ''}`;
    const g = groups.get(k);
    if (g !== undefined) g.push(r);
    else groups.set(k, [r]);
  }
  const out: SummaryRow[] = [];
  for (const g of groups.values()) {
    const first = g[0]!;
    const ok = g.filter((r) => r.ok);
    const walls = ok.map((r) => r.wallSeconds!).filter((x) => x !== undefined);
    const bytes = ok.map((r) => r.bytesStored).filter((x): x is number => x !== undefined);
    const failed = g.find((r) => !r.ok);
    const note = g.find((r) => r.note !== undefined)?.note;
    out.push({
      tool: first.tool,
      op: first.op,
      ...(first.files !== undefined ? { files: first.files } : {}),
      runs: g.length,
      okRuns: ok.length,
      ...(walls.length > 0 ? { wallSeconds: median(walls)!, wallMin: Math.min(...walls), wallMax: Math.max(...walls) } : {}),
      ...(ok.length > 0 ? { cpuSeconds: median(ok.map((r) => r.cpuSeconds!))!, maxRssBytes: median(ok.map((r) => r.maxRssBytes!))! } : {}),
      ...(bytes.length > 0 ? { bytesStored: median(bytes)! } : {}),
      ok: failed === undefined,
      ...(failed?.error !== undefined ? { error: failed.error } : {}),
      ...(note !== undefined ? { note } : {}),
    });
  }
  return out;
}

export const fmtS = (x: number): string => x.toFixed(2);
export const fmtMiB = (b: number): string => (b / MiB >= 100 ? (b / MiB).toFixed(0) : (b / MiB).toFixed(1));

/** Targets of meshback against the best peer per operation (issue 17), and for small files against restic. */
export const TARGETS = {
  first: 0.8,
  nochange: 0.5,
  change: 0.8,
  restore: 0.8,
  check: 1.0,
  rss: 1.0,
  stored: 1.05,
  smallRssRatio: 0.5,
  /** meshback's peak RSS over the file counts: the largest at most this much above the smallest */
  smallFlat: 0.1,
  smallWall: 1.0,
} as const;

/**
 * The peers meshback's ratios are taken against: the tools that keep an encrypted, deduplicating
 * repository, as meshback does (restic, kopia, borg, in every variant run). tar, rsync and cp -a do
 * less work per byte (no chunking, no encryption; cp and rsync not even compression): their rows
 * are in the tables, not in the ratios.
 */
export function ratioPeers(): string[] {
  return TOOLS.filter((t) => t.incremental === true && t.encryption && !t.name.startsWith('meshback')).map((t) => t.name);
}

type Field = 'wallSeconds' | 'maxRssBytes' | 'bytesStored';

/**
 * meshback against the best of `peers` on one metric: per operation the lowest valid peer figure;
 * over several operations the worst of those ratios is the row. n/a (with why) when meshback or
 * every peer lacks a valid result.
 */
export function versusBest(summary: SummaryRow[], peers: readonly string[], metric: string, ops: readonly string[], field: Field, target: number, files?: number): Ratio {
  const get = (tool: string, op: string) => summary.find((s) => s.tool === tool && s.op === op && s.files === files);
  const show = (x: number) => (field === 'wallSeconds' ? `${fmtS(x)} s` : `${fmtMiB(x)} MiB`);
  const base: Ratio = { metric, target: `≤ ${target}`, result: 'n/a' };
  let worst: Ratio | undefined;
  for (const op of ops) {
    const m = get('meshback', op);
    if (m?.ok !== true || m[field] === undefined) return { ...base, reason: m === undefined ? `meshback ${op} was not run` : `meshback ${op} FAILED: ${m.error ?? 'no valid result'}` };
    const ps = peers.map((p) => ({ p, s: get(p, op) })).filter((x) => x.s?.ok === true && x.s[field] !== undefined);
    if (ps.length === 0) return { ...base, meshback: show(m[field]), reason: `no peer (${peers.join(', ')}) has a valid ${op}` };
    const best = ps.sort((a, b) => a.s![field]! - b.s![field]!)[0]!;
    const ratio = m[field] / best.s![field]!;
    const r: Ratio = { ...base, metric: ops.length > 1 ? `${metric} (${op})` : metric, meshback: show(m[field]), peer: show(best.s![field]!), peerTool: best.p, ratio, result: ratio <= target ? 'PASS' : 'MISS' };
    if (worst === undefined || ratio > worst.ratio!) worst = r;
  }
  return worst ?? { ...base, reason: 'no operation' };
}

/** The ratio table: meshback against the best peer per operation; small files against restic. */
export function ratios(summary: SummaryRow[], small: number[], peers: readonly string[] = ratioPeers()): Ratio[] {
  const out: Ratio[] = [];
  const cmp = (metric: string, op: Op, field: Field, target: number) => out.push(versusBest(summary, peers, metric, [op], field, target));
  cmp('first backup, wall', 'backup-first', 'wallSeconds', TARGETS.first);
  cmp('backup after no change, wall', 'backup-nochange', 'wallSeconds', TARGETS.nochange);
  cmp('backup after a 2% change, wall', 'backup-2pct', 'wallSeconds', TARGETS.change);
  cmp('restore, wall', 'restore', 'wallSeconds', TARGETS.restore);
  cmp('check with full data read, wall', 'check', 'wallSeconds', TARGETS.check);
  for (const op of ['backup-first', 'backup-nochange', 'backup-2pct', 'restore', 'check'] as const) cmp(`peak RSS, ${OP_TITLES[op].split(' (')[0]}`, op, 'maxRssBytes', TARGETS.rss);
  cmp('bytes stored after the last backup', 'backup-2pct', 'bytesStored', TARGETS.stored);
  const restic = ['restic'];
  for (const n of small) {
    const label = `small files (${n.toLocaleString('en-US')}): first backup`;
    out.push(versusBest(summary, restic, `${label}, peak RSS vs restic`, [SMALL_OP], 'maxRssBytes', TARGETS.smallRssRatio, n));
    out.push(versusBest(summary, restic, `${label}, wall vs restic`, [SMALL_OP], 'wallSeconds', TARGETS.smallWall, n));
  }
  // flat in file count: meshback's largest peak RSS over its smallest, across the counts run
  if (small.length > 1) {
    const rows = small.map((n) => summary.find((s) => s.tool === 'meshback' && s.op === SMALL_OP && s.files === n));
    const base: Ratio = { metric: `small files: meshback peak RSS flat over ${small.map((n) => n.toLocaleString('en-US')).join(', ')} files (largest / smallest)`, target: `≤ ${1 + TARGETS.smallFlat}`, result: 'n/a' };
    if (rows.some((r) => r?.ok !== true)) out.push({ ...base, reason: 'meshback lacks a valid small-files backup for some count' });
    else {
      const rss = rows.map((r) => r!.maxRssBytes!);
      const lo = Math.min(...rss);
      const hi = Math.max(...rss);
      out.push({ ...base, meshback: `${fmtMiB(lo)}–${fmtMiB(hi)} MiB`, ratio: hi / lo, result: hi / lo <= 1 + TARGETS.smallFlat ? 'PASS' : 'MISS' });
    }
  }
  return out;
}

/** The Markdown table of ratios (bench:peers and bench:s3). */
export function ratioTable(rs: readonly Ratio[]): string[] {
  const L = ['| metric | meshback | best peer | ratio | target | result |', '|---|---:|---:|---:|---|---|'];
  for (const r of rs) {
    const peer = r.peer !== undefined ? `${r.peer} (${r.peerTool ?? '?'})` : '—';
    L.push(`| ${cell(r.metric)} | ${r.meshback ?? '—'} | ${peer} | ${r.ratio !== undefined ? r.ratio.toFixed(2) : '—'} | ${r.target} | ${r.result === 'n/a' ? `n/a: ${cell(short(r.reason ?? ''))}` : `**${r.result}**`} |`);
  }
  return L;
}

export function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

export function short(s: string, n = 200): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

export function renderMarkdown(res: Results): string {
  const L: string[] = [];
  const m = res.machine;
  L.push('# meshback and its peers: side-by-side benchmark', '');
  L.push(`${res.startedAt} · ${m.cpus} CPUs (${m.cpuModel}) · ${m.memGiB.toFixed(1)} GiB RAM · Linux ${m.kernel} · node ${m.node} · total run time ${fmtDuration(res.totalSeconds)}`, '');
  const d = res.dataset;
  const t = d['tree'] as { files: number; dirs: number; bytes: number } | undefined;
  L.push(`Dataset: \`${String(d['path'])}\`${d['seed'] !== undefined ? ` (seed ${String(d['seed'])})` : ''}${t !== undefined ? `: ${t.files.toLocaleString('en-US')} files, ${t.dirs.toLocaleString('en-US')} directories, ${fmtMiB(t.bytes)} MiB` : ''}. ${pgNote(d['postgres'])}Made and changed by ${res.dataTool}.`);
  L.push(`Repeats: ${res.repeats} (every tool once per repeat, one after another, fresh repository each time); figures are medians, (min–max) when repeated.`, '');
  if (Object.keys(res.extraEnv).length > 0) L.push(`**Extra environment for the tools: ${Object.entries(res.extraEnv).map(([k, v]) => `${k}=${v}`).join(' ')}. Not a representative run.**`, '');
  L.push('| tool | version | encryption | how it is run |', '|---|---|---|---|');
  for (const tool of res.tools) {
    L.push(`| ${tool.label} | ${cell(tool.available ? tool.version : `unavailable: ${tool.reason ?? ''}`)} | ${tool.encryption ? 'yes' : '**no**'} | ${cell(tool.setup)} |`);
  }
  L.push('');
  const toolOrder = res.tools.map((x) => x.name);
  for (const op of OPS) {
    const rows = res.summary.filter((s) => s.op === op).sort((x, y) => toolOrder.indexOf(x.tool) - toolOrder.indexOf(y.tool));
    if (rows.length === 0) continue;
    const stored = op.startsWith('backup');
    L.push(`## ${OP_TITLES[op]}`, '');
    L.push(`| tool | wall s median (min–max) | CPU s | peak RSS MiB |${stored ? ' stored MiB |' : ''}`, `|---|---:|---:|---:|${stored ? '---:|' : ''}`);
    for (const s of rows) L.push(summaryLine(s, res, stored));
    const notes = rows.filter((s) => s.note !== undefined);
    if (notes.length > 0) L.push('', ...notes.map((s) => `- ${s.tool}: ${cell(s.note!)}`));
    const noCheck = op === 'check' ? res.tools.filter((x) => x.available && !rows.some((s) => s.tool === x.name)).map((x) => x.label) : [];
    if (noCheck.length > 0) L.push('', `No full data check: ${noCheck.join(', ')}.`);
    L.push('');
  }
  const smallRows = res.summary.filter((s) => s.op === SMALL_OP);
  if (smallRows.length > 0) {
    L.push(`## ${OP_TITLES[SMALL_OP]} (memory flatness: peak RSS per file count)`, '');
    L.push('| tool | files | wall s median (min–max) | CPU s | peak RSS MiB | stored MiB |', '|---|---:|---:|---:|---:|---:|');
    for (const s of smallRows.sort((x, y) => x.files! - y.files! || toolOrder.indexOf(x.tool) - toolOrder.indexOf(y.tool))) {
      L.push(summaryLine(s, res, true).replace(/^\| ([^|]+) \|/, `| $1 | ${s.files!.toLocaleString('en-US')} |`));
    }
    L.push('');
  }
  L.push('## meshback / the best peer', '');
  L.push(`Peers: the tools run that keep an encrypted, deduplicating repository (${ratioPeers().filter((p) => res.tools.some((t) => t.name === p && t.available)).join(', ') || 'none'}); per operation the best of them. tar, rsync and cp -a are in the tables above, not in the ratios: they neither chunk nor encrypt. Small files: against restic.`, '');
  L.push(...ratioTable(res.ratios));
  if (res.small.length === 0) L.push('', 'Small-files mode was not run (`--small N,...`).');
  L.push('', '## How this was measured', '');
  L.push(
    '- Every step runs under GNU time (`/usr/bin/time`): wall is its elapsed time (10 ms resolution), CPU is user + system time of the command and every process it waited for, peak RSS is ru_maxrss (the largest single process; a pipeline\'s processes are not added up).',
    '- `sync` runs before every timed step (not timed); the page cache is warm (the dataset was just copied; a small-files tree is read once, untimed, before every backup of it), the same for every tool. A step ends when the tool exits: writes the tool itself does not fsync (tar, rsync, cp) may still be in the page cache then, and their writeback is flushed, untimed, before the next step.',
    '- Not timed: copying the dataset to the source path, the 2% mutation, emptying the restore directory, moving a restic or borg restore out of its absolute-path layout (one rename), comparing trees, measuring sizes.',
    '- Stored bytes: allocated bytes of the repository directory (`du -s -B1`) after each backup; caches outside the repository (restic, borg) are not counted. tar and cp keep a full copy per backup, rsync one mirror.',
    '- A restore is valid only if the restored tree equals the source by path, type, size, mode, symlink target and SHA-256 of every file; owners and mtimes are reported, not required.',
    '- The ratio table compares medians of valid results only; a failed step makes its ratio n/a with the reason.',
  );
  const failed = res.rows.filter((r) => !r.ok);
  if (failed.length > 0) {
    L.push('', '## Failures', '');
    for (const r of failed) L.push(`- ${r.tool} ${r.op}${r.files !== undefined ? ` (${r.files} files)` : ''}, repeat ${r.repeat}: ${cell(short(r.error ?? '', 600))}`);
  }
  return L.join('\n') + '\n';
}

function pgNote(pg: unknown): string {
  if (typeof pg !== 'object' || pg === null) return '';
  const p = pg as { version?: number; scale?: number; bytes?: number };
  return `Includes a PostgreSQL ${p.version ?? ''} cluster (pgbench scale ${p.scale ?? '?'}, ${p.bytes !== undefined ? fmtMiB(p.bytes) : '?'} MiB). `;
}

export function summaryLine(s: SummaryRow, res: Pick<Results, 'tools'>, stored: boolean): string {
  const label = res.tools.find((t) => t.name === s.tool)?.label ?? s.tool;
  if (!s.ok) {
    const reason = `**FAILED**${s.runs > 1 ? ` (${s.runs - s.okRuns}/${s.runs})` : ''}: ${cell(short(s.error ?? ''))}`;
    return `| ${label} | ${reason} | — | — |${stored ? ' — |' : ''}`;
  }
  const wall = s.runs > 1 ? `${fmtS(s.wallSeconds!)} (${fmtS(s.wallMin!)}–${fmtS(s.wallMax!)})` : fmtS(s.wallSeconds!);
  return `| ${label} | ${wall} | ${fmtS(s.cpuSeconds!)} | ${fmtMiB(s.maxRssBytes!)} |${stored ? ` ${s.bytesStored !== undefined ? fmtMiB(s.bytesStored) : '—'} |` : ''}`;
}

export function fmtDuration(sec: number): string {
  const m = Math.floor(sec / 60);
  return m > 0 ? `${m} min ${Math.round(sec - m * 60)} s` : `${sec.toFixed(1)} s`;
}

/** The base environment of the tools: ours, without meshback's test-only knobs, plus `extra`. */
export function toolEnv(extra: Record<string, string>): { env: Record<string, string>; stripped: string[] } {
  const env: Record<string, string> = {};
  const stripped: string[] = [];
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (k.startsWith('MESHBACK_') && !(k in extra)) {
      stripped.push(k); // MESHBACK_TEST_SCRYPT_N, MESHBACK_WORKERS...: a bench run uses the defaults
      continue;
    }
    env[k] = v;
  }
  return { env: { ...env, ...extra }, stripped };
}

/** Which tools can run here: installs missing Debian packages when root. */
export async function resolveTools(names: string[], install: boolean, log: (l: string) => void): Promise<{ tool: Tool; info: ToolInfo }[]> {
  const tools = names.map((n) => toolByName(n)!);
  const missing = [];
  for (const t of tools) if (!(await t.available())) missing.push(t);
  const packages = [...new Set(missing.flatMap((t) => t.packages))];
  let installErr: string | undefined;
  if (packages.length > 0 && install) {
    log(`installing missing Debian packages: ${packages.join(' ')}`);
    installErr = await aptInstall(packages);
  } else if (packages.length > 0) installErr = 'package installation disabled';
  const out: { tool: Tool; info: ToolInfo }[] = [];
  for (const t of tools) {
    const base = { name: t.name, label: t.label, encryption: t.encryption, setup: t.setup };
    if (!(await t.available())) {
      const reason = t.name === 'meshback' ? `${t.binaries.join(' ')} or its Node.js runtime is missing: run npm ci` : `${t.binaries.join(', ')} missing (Debian package ${t.packages.join(' ')})${installErr !== undefined ? `: ${installErr}` : ''}`;
      out.push({ tool: t, info: { ...base, version: '', available: false, reason } });
      log(`${t.name}: unavailable: ${reason}`);
      continue;
    }
    let version: string;
    try {
      version = await t.version();
    } catch (err) {
      version = `unknown (${errText(err)})`;
    }
    out.push({ tool: t, info: { ...base, version, available: true } });
  }
  return out;
}

/**
 * The benchmark's dataset: `opts.data` as given, or one generated by `data` in WORK/data (reused
 * when its dataset.json says it has the size and seed asked for). Returns its directory and its
 * description for the results (with the tree's counts).
 */
export async function prepareDataset(
  opts: Pick<PeersOptions, 'data' | 'sizeText' | 'size' | 'seed' | 'postgres'>,
  data: DataProvider,
  work: string,
  log: (message: string) => void,
): Promise<{ dir: string; dataset: Record<string, unknown> }> {
  let dataDir: string;
  let dataset: Record<string, unknown>;
  if (opts.data !== undefined) {
    dataDir = path.resolve(opts.data);
    if (!(await fsp.stat(dataDir)).isDirectory()) throw new Error(`--data ${dataDir} is not a directory`);
    const given = await readJson(path.join(dataDir, 'dataset.json'), DatasetJsonSchema);
    if (given.problem !== undefined) throw new UsageError(`${given.problem}: fix or remove the dataset.json of --data`);
    dataset = given.value ?? {};
  } else {
    dataDir = path.join(work, 'data');
    const cached = await readJson(path.join(dataDir, 'dataset.json'), DatasetJsonSchema);
    if (cached.problem !== undefined) log(`${cached.problem}: the dataset is generated again`);
    const json = cached.value;
    const postgres = opts.postgres ?? true;
    if (datasetMatches(json, { size: opts.size, seed: opts.seed, postgres })) {
      log(`reusing the dataset in ${dataDir} (${opts.sizeText}, seed ${opts.seed})`);
      dataset = json!;
    } else {
      log(`generating a ${opts.sizeText} dataset (seed ${opts.seed}) in ${dataDir} with ${data.name} ...`);
      await fsp.rm(dataDir, { recursive: true, force: true });
      const g0 = performance.now();
      await data.generate(dataDir, opts.sizeText, opts.seed, postgres);
      log(`  generated in ${((performance.now() - g0) / 1000).toFixed(1)} s`);
      const made = await readJson(path.join(dataDir, 'dataset.json'), DatasetJsonSchema);
      if (made.problem !== undefined) log(`${made.problem}: the generator wrote a malformed dataset.json; the results record only the size and seed asked for`);
      dataset = made.value ?? { size: opts.sizeText, seed: opts.seed };
    }
  }
  dataset = { ...dataset, path: dataDir, tree: await treeStats(dataDir) };

  return { dir: dataDir, dataset };
}

/** Run the benchmark; writes results.json and results.md into opts.out and returns the results. */
export function runPeers(opts: PeersOptions): Promise<Results> {
  const emit = opts.events ?? nullSink;
  return reportOp(emit, 'bench-peers', { tools: opts.tools, repeat: opts.repeat }, () => runPeersOps(opts, emit));
}

async function runPeersOps(opts: PeersOptions, emit: EventSink): Promise<Results> {
  const log = (message: string): void => emit({ type: 'note', op: 'bench-peers', message });
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const work = path.resolve(opts.work);
  const data = opts.dataProvider ?? dataScriptProvider();
  await fsp.mkdir(work, { recursive: true });
  await fsp.mkdir(opts.out, { recursive: true });
  await ensureGnuTime();

  const allNames = [...new Set([...opts.tools, ...(opts.small.length > 0 ? opts.smallTools : [])])];
  const resolved = await resolveTools(allNames, opts.install ?? true, log);
  const usable = (names: string[]) => names.map((n) => resolved.find((r) => r.tool.name === n)!).filter((r) => r.info.available).map((r) => r.tool);
  const { env, stripped } = toolEnv(opts.env);
  if (stripped.length > 0) log(`not passed to the tools (a benchmark uses the defaults): ${stripped.join(' ')}`);

  const { dir: dataDir, dataset } = await prepareDataset(opts, data, work, log);

  const rows: Row[] = [];
  const src = path.join(work, 'src');
  const restoreDir = path.join(work, 'restore');
  const mutateSeed = opts.seed + 1;

  const record = (row: Row) => {
    rows.push(row);
    const where = `r${row.repeat}/${row.op === SMALL_OP ? opts.repeatSmall : opts.repeat} ${row.tool} ${row.op}${row.files !== undefined ? ` (${row.files} files)` : ''}`;
    if (!row.ok) log(`${where}: FAILED: ${row.error ?? ''}`);
    else
      log(
        `${where}: ${fmtS(row.wallSeconds!)} s wall, ${fmtS(row.cpuSeconds!)} s CPU, ${fmtMiB(row.maxRssBytes!)} MiB peak RSS` +
          `${row.bytesStored !== undefined ? `, ${fmtMiB(row.bytesStored)} MiB stored` : ''}${row.note !== undefined ? ` (${row.note})` : ''}`,
      );
  };

  /** One timed step: sync, measure, optionally the repository size; errors land in the row. */
  const step = async (base: Omit<Row, 'ok'>, fn: () => Promise<Measurement>, after?: (row: Row) => Promise<void>): Promise<boolean> => {
    let row: Row;
    try {
      await flush();
      const m = await fn();
      row = { ...base, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, maxRssBytes: m.maxRssBytes, ok: true };
      if (after !== undefined) await after(row);
    } catch (err) {
      row = { ...base, ok: false, error: errText(err) };
      if (err instanceof CommandError && err.measurement !== undefined) row.wallSeconds = err.measurement.wallSeconds;
    }
    record(row);
    return row.ok;
  };
  const stored = (ctx: ToolContext, tool: Tool) => async (row: Row) => {
    row.bytesStored = await tool.bytesStored(ctx);
    row.bytesApparent = await duBytes(ctx.repo, 'apparent');
  };

  const runOne = async (tool: Tool, repeat: number): Promise<void> => {
    const ctx = await newContext(tool, path.join(work, 'runs', tool.name), env);
    const skip = (op: Op, why: string) => record({ tool: tool.name, op, repeat, ok: false, error: `not run: ${why}` });
    try {
      log(`r${repeat}/${opts.repeat} ${tool.name}: copying the dataset to ${src} (not timed)`);
      await fsp.rm(src, { recursive: true, force: true });
      await run(['cp', '-a', dataDir, src]);
      const at = (op: MainOp) => ({ tool: tool.name, op, repeat });
      let blocked: string | undefined;
      const chain = async (op: MainOp, fn: () => Promise<Measurement>, after?: (row: Row) => Promise<void>) => {
        if (blocked !== undefined) return skip(op, blocked);
        if (!(await step(at(op), fn, after))) blocked = `${op} failed`;
      };
      await chain('init', () => tool.init(ctx));
      await chain('backup-first', () => tool.backup(ctx, src), stored(ctx, tool));
      await chain('backup-nochange', () => tool.backup(ctx, src), stored(ctx, tool));
      if (blocked === undefined) {
        try {
          await data.mutate(src, 2, mutateSeed);
        } catch (err) {
          blocked = `the 2% mutation of ${src} failed: ${errText(err)}`;
        }
      }
      await chain('backup-2pct', () => tool.backup(ctx, src), stored(ctx, tool));
      if (blocked !== undefined) skip('restore', blocked);
      else {
        await fsp.rm(restoreDir, { recursive: true, force: true });
        await fsp.mkdir(restoreDir);
        await step(at('restore'), () => tool.restore(ctx, restoreDir), async (row) => {
          const diff = await compareRestore(src, restoreDir);
          if (diff.content.length > 0) {
            row.ok = false;
            row.error = `restored data differ from the source (${diff.content.length} differences): ${diff.content.slice(0, 5).join('; ')}`;
          }
          const note = summarizeMetadata(diff.metadata);
          if (note !== undefined) row.note = note;
        });
        await fsp.rm(restoreDir, { recursive: true, force: true });
      }
      if (tool.check !== undefined) {
        if (blocked !== undefined) skip('check', blocked);
        else await step(at('check'), () => tool.check!(ctx));
      }
    } finally {
      await fsp.rm(ctx.dir, { recursive: true, force: true });
      await fsp.rm(restoreDir, { recursive: true, force: true });
    }
  };

  const mainTools = usable(opts.tools);
  for (let r = 1; r <= opts.repeat; r++) for (const tool of mainTools) await runOne(tool, r);
  await fsp.rm(src, { recursive: true, force: true });

  // ---- small files
  const smallTools = usable(opts.smallTools);
  for (const n of opts.small) {
    const dir = path.join(work, `small-${n}`);
    // what was generated is recorded beside the tree (inside it, it would be backed up too)
    const marker = `${dir}.json`;
    const want: v.InferOutput<typeof SmallMarkerSchema> = { files: n, seed: opts.seed, generator: data.name };
    const marked = await readJson(marker, SmallMarkerSchema);
    if (marked.problem !== undefined) log(`${marked.problem}: the tree is generated again`);
    const have = marked.value;
    if (have !== undefined && have.files === n && have.seed === opts.seed && have.generator === data.name && (await isDir(dir))) log(`reusing ${dir}`);
    else {
      log(`generating ${n} small files (seed ${opts.seed}) in ${dir} with ${data.name} ...`);
      await fsp.rm(marker, { force: true });
      await fsp.rm(dir, { recursive: true, force: true });
      try {
        await data.small(dir, n, opts.seed);
      } catch (err) {
        for (const tool of smallTools) record({ tool: tool.name, op: SMALL_OP, repeat: 1, files: n, ok: false, error: `not run: generating the small-files tree failed: ${errText(err)}` });
        continue;
      }
      await fsp.writeFile(marker, JSON.stringify(want) + '\n');
    }
    for (let r = 1; r <= opts.repeatSmall; r++) {
      for (const tool of smallTools) {
        const ctx = await newContext(tool, path.join(work, 'runs', `${tool.name}-small`), env);
        try {
          const base = { tool: tool.name, op: SMALL_OP, repeat: r, files: n } as const;
          try {
            await tool.init(ctx);
          } catch (err) {
            record({ ...base, ok: false, error: `not run: init failed: ${errText(err)}` });
            continue;
          }
          // the page cache holds the tree for every tool alike (a reused tree may have been evicted
          // by the runs before, and the first tool would pay the cold reads alone): read every
          // file once, untimed (through a pipe: GNU tar skips reading data when writing to /dev/null)
          await run(['bash', '-c', 'tar -C "$1" -cf - . | cat > /dev/null', 'warm', dir]);
          await step(base, () => tool.backup(ctx, dir), stored(ctx, tool));
        } finally {
          await fsp.rm(ctx.dir, { recursive: true, force: true });
        }
      }
    }
  }

  const summary = summarize(rows);
  const results: Results = {
    version: 1,
    startedAt,
    finishedAt: new Date().toISOString(),
    totalSeconds: (performance.now() - t0) / 1000,
    machine: { cpus: os.availableParallelism(), memGiB: os.totalmem() / 1024 ** 3, kernel: os.release(), node: process.versions.node, cpuModel: os.cpus()[0]?.model ?? 'unknown' },
    tools: resolved.map((r) => r.info),
    dataset,
    dataTool: data.name,
    repeats: opts.repeat,
    repeatSmall: opts.repeatSmall,
    small: opts.small,
    smallTools: opts.small.length > 0 ? opts.smallTools : [],
    extraEnv: opts.env,
    strippedEnv: stripped,
    rows,
    summary,
    ratios: ratios(summary, opts.small),
  };
  await fsp.writeFile(path.join(opts.out, 'results.json'), JSON.stringify(results, null, 2) + '\n');
  await fsp.writeFile(path.join(opts.out, 'results.md'), renderMarkdown(results));
  return results;
}

/** The default tools: every tool but meshback-parity (a fault-benchmark variant: it runs when named in --tools). */
export const DEFAULT_TOOLS: readonly string[] = TOOLS.map((t) => t.name).filter((n) => n !== 'meshback-parity');
