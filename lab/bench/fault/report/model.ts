/**
 * bench/fault/report/model: what the report says, computed once from BenchResults and rendered
 * twice (Markdown and HTML). Everything here is a pure function of the results file.
 *
 * Vocabulary:
 * - *entrant*: one tool with one strategy (meshback incremental and meshback snapshot are two);
 *   the rows of every table and the bars of every chart.
 * - *standing*: an entrant's figures over all the scenarios it ran, for the categorisation:
 *   time and CPU scores relative to the best entrant of each scenario and operation, and its
 *   largest peak RSS.
 * - *silent* repeat: the recovered data differs from the reference (damaged or missing files),
 *   yet every restore step exited 0 and the tool did not report the fault.
 */
import type { BenchResults, Cell, RepeatResult, ScenarioId, Spread, Strategy, ToolEntry } from '../types.ts';
import { paretoFront } from './pareto.ts';
import type { ParetoResult } from './pareto.ts';
import { fmtBytes } from '../../../../src/util/units.ts';

export const MiB = 1024 * 1024;
const STRATEGY_ORDER: readonly Strategy[] = ['full-copy', 'incremental', 'snapshot'];

export interface Entrant {
  /** `${tool}/${strategy}`, unique */
  key: string;
  tool: string;
  strategy: Strategy;
  /** the tool's label, plus the strategy when it is not the tool's own (e.g. "restic (snapshot)") */
  label: string;
  toolEntry: ToolEntry | undefined;
  /** undefined when the results do not list the tool */
  encryption: boolean | undefined;
  /** the tool deduplicates (its own strategy is incremental) */
  deduplicating: boolean;
}

export interface ScenarioView {
  id: ScenarioId;
  title: string;
  description: string;
}

export const entrantKey = (tool: string, strategy: Strategy): string => `${tool}/${strategy}`;

/** Entrants in the order of `results.tools`, strategies in the order of `options.strategies`. */
export function entrantsOf(r: BenchResults): Entrant[] {
  const cells = r.cells ?? [];
  const tools = r.tools ?? [];
  const strategyRank = (s: Strategy): number => {
    const i = (r.options?.strategies ?? []).indexOf(s);
    return i >= 0 ? i : 10 + STRATEGY_ORDER.indexOf(s);
  };
  const toolNames = [...tools.map((t) => t.name)];
  for (const c of cells) if (!toolNames.includes(c.tool)) toolNames.push(c.tool);
  const out: Entrant[] = [];
  for (const name of toolNames) {
    const entry = tools.find((t) => t.name === name);
    const strategies = [...new Set(cells.filter((c) => c.tool === name).map((c) => c.strategy))].sort((a, b) => strategyRank(a) - strategyRank(b));
    for (const strategy of strategies) {
      const base = entry?.label ?? name;
      out.push({
        key: entrantKey(name, strategy),
        tool: name,
        strategy,
        label: entry !== undefined && entry.strategy === strategy ? base : `${base} (${strategy})`,
        toolEntry: entry,
        encryption: entry?.encryption,
        deduplicating: entry?.strategy === 'incremental',
      });
    }
  }
  return out;
}

/** Scenarios in the order of `results.scenarios`, then any others the cells name. */
export function scenariosOf(r: BenchResults): ScenarioView[] {
  const out: ScenarioView[] = (r.scenarios ?? []).map((s) => ({ id: s.id, title: s.title || s.id, description: s.description ?? '' }));
  for (const id of [...(r.options?.scenarios ?? []), ...(r.cells ?? []).map((c) => c.scenario)]) {
    if (!out.some((s) => s.id === id)) out.push({ id, title: id, description: '' });
  }
  return out.filter((s) => (r.cells ?? []).some((c) => c.scenario === s.id));
}

export function cellOf(r: BenchResults, e: Entrant, scenario: ScenarioId): Cell | undefined {
  return (r.cells ?? []).find((c) => c.tool === e.tool && c.strategy === e.strategy && c.scenario === scenario);
}

export const okRepeats = (c: Cell): RepeatResult[] => (c.repeats ?? []).filter((x) => x.status === 'ok');

// ---------------------------------------------------------------- formatting (plain text)

const finite = (x: number | undefined): x is number => typeof x === 'number' && Number.isFinite(x);

export function fmtNum(x: number): string {
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

export const fmtMiB = (bytes: number): string => fmtNum(bytes / MiB);


export function fmtInt(x: number): string {
  return Math.round(x).toLocaleString('en-US');
}

/** The median, and "min–max" when repeated and the two differ as printed; undefined when not measured. */
export function spreadParts(s: Spread | undefined, f: (x: number) => string = fmtNum): { main: string; range?: string } | undefined {
  if (s === undefined || !finite(s.median)) return undefined;
  if (s.n > 1 && finite(s.min) && finite(s.max) && f(s.min) !== f(s.max)) return { main: f(s.median), range: `${f(s.min)}–${f(s.max)}` };
  return { main: f(s.median) };
}

/** "median" or "median (min–max)" when repeated and spread; undefined when not measured. */
export function fmtSpread(s: Spread | undefined, f: (x: number) => string = fmtNum): string | undefined {
  const p = spreadParts(s, f);
  return p === undefined ? undefined : p.range !== undefined ? `${p.main} (${p.range})` : p.main;
}

export function median(xs: readonly number[]): number | undefined {
  const v = xs.filter(finite).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

export function short(s: string, n = 300): string {
  const one = s.replace(/\s*\n\s*/g, ' | ').trim();
  return one.length > n ? one.slice(0, n - 1) + '…' : one;
}

/** "1, 2 and 3" */
export function listWords(xs: readonly string[]): string {
  if (xs.length <= 1) return xs.join('');
  return `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`;
}

// ---------------------------------------------------------------- the per-scenario table

export const TABLE_COLUMNS = [
  'tool',
  'strategy',
  'backup wall s',
  'backup CPU s',
  'backup peak RSS MiB',
  'restore wall s',
  'restore CPU s',
  'restore peak RSS MiB',
  'stored MiB',
  'files matching / damaged / missing',
  'corruption detected',
  'RPO s (writes, bytes lost)',
  'RTO s',
] as const;

/**
 * One text cell of a table: `text`, and `sub`, its secondary part (the min–max range, the
 * writes lost), written "text (sub)" in Markdown and on a second line in HTML. `bad` marks a
 * figure the reader should not miss (silent damage, a fault not detected).
 */
export interface TextCell {
  text: string;
  sub?: string;
  bad?: boolean;
  good?: boolean;
}

export interface TableRow {
  entrant: Entrant;
  status: Cell['status'] | 'absent';
  /** figures, one per column after tool and strategy; undefined for failed/skipped/absent rows */
  figures?: TextCell[];
  /** why there are no figures (failed, skipped, not run) */
  reason?: string;
  /** footnote numbers (1-based, within the scenario) */
  notes: number[];
  /** "partial: 2 of 3 repeats" */
  tag?: string;
}

export interface ScenarioTable {
  scenario: ScenarioView;
  rows: TableRow[];
  footnotes: string[];
}

function integrityText(c: Cell): TextCell {
  const reps = okRepeats(c).filter((x) => x.integrity !== undefined);
  if (reps.length > 0) {
    const files = median(reps.map((x) => x.integrity!.files))!;
    const m = median(reps.map((x) => x.integrity!.matching))!;
    const dmg = reps.map((x) => x.integrity!.damaged);
    const mis = reps.map((x) => x.integrity!.missing);
    const d = median(dmg)!;
    const x = median(mis)!;
    const vary = (name: string, v: number[]) => (Math.min(...v) !== Math.max(...v) ? ` ${name} ${fmtInt(Math.min(...v))}–${fmtInt(Math.max(...v))}` : '');
    const spread = vary('damaged', dmg) + vary('missing', mis);
    const anyBad = dmg.some((v) => v > 0) || mis.some((v) => v > 0);
    return { text: `${fmtInt(m)} / ${fmtInt(d)} / ${fmtInt(x)} of ${fmtInt(files)}`, sub: spread !== '' ? spread.trim() : undefined, bad: anyBad, good: !anyBad };
  }
  const s = c.summary ?? {};
  if (s.filesMatchingFraction !== undefined) {
    const d = s.filesDamaged?.median ?? 0;
    const x = s.filesMissing?.median ?? 0;
    return { text: `${(s.filesMatchingFraction.median * 100).toFixed(1)}% matching, ${fmtInt(d)} damaged, ${fmtInt(x)} missing`, bad: d + x > 0 };
  }
  return { text: 'n.a.' };
}

export interface DetectionCount {
  detected: number;
  /** repeats in which there was something to detect */
  of: number;
  rate?: number;
}

export function detectionOf(c: Cell): DetectionCount {
  const reps = okRepeats(c).filter((x) => typeof x.corruptionDetected === 'boolean');
  const detected = reps.filter((x) => x.corruptionDetected === true).length;
  const rate = c.summary?.detectionRate ?? (reps.length > 0 ? detected / reps.length : undefined);
  return { detected, of: reps.length, rate };
}

function detectionText(c: Cell): TextCell {
  const d = detectionOf(c);
  if (d.rate === undefined) return { text: 'n.a.' };
  const counts = d.of > 1 ? ` (${d.detected}/${d.of})` : '';
  if (d.rate >= 1) return { text: `yes${counts}`, good: true };
  if (d.rate <= 0) return { text: `no${counts}`, bad: true };
  return { text: `partly${counts !== '' ? counts : ` (${Math.round(d.rate * 100)}%)`}`, bad: true };
}

function rpoText(c: Cell): TextCell {
  const s = c.summary ?? {};
  const secs = spreadParts(s.rpoSeconds);
  if (secs === undefined) return { text: 'n.a.' };
  const writes = median(okRepeats(c).flatMap((x) => (x.rpo !== undefined ? [x.rpo.writesLost] : [])));
  // (the application-level scenarios count writes, not bytes: their bytesLost is not shown)
  const bytes = s.rpoBytesLost?.median ?? median(okRepeats(c).flatMap((x) => (x.rpo !== undefined && x.app === undefined ? [x.rpo.bytesLost] : [])));
  const parts: string[] = [];
  if (writes !== undefined) parts.push(`${fmtInt(writes)} writes`);
  if (bytes !== undefined) parts.push(fmtBytes(bytes));
  const sub = [secs.range, parts.length > 0 ? parts.join(', ') : undefined].filter((x) => x !== undefined);
  return { text: secs.main, sub: sub.length > 0 ? sub.join('; ') : undefined };
}

function fig(s: Spread | undefined, f?: (x: number) => string): TextCell {
  const p = spreadParts(s, f);
  return p === undefined ? { text: '—' } : { text: p.main, sub: p.range };
}

/** The figures of a cell that ran, in TABLE_COLUMNS order after tool and strategy. */
export function cellFigures(c: Cell): TextCell[] {
  const s = c.summary ?? {};
  return [
    fig(s.backupWallSeconds),
    fig(s.backupCpuSeconds),
    fig(s.backupPeakRssBytes, fmtMiB),
    fig(s.restoreWallSeconds),
    fig(s.restoreCpuSeconds),
    fig(s.restorePeakRssBytes, fmtMiB),
    fig(s.bytesStored, fmtMiB),
    integrityText(c),
    detectionText(c),
    rpoText(c),
    fig(s.rtoSeconds),
  ];
}

export function strategyText(c: Cell | undefined, e: Entrant): string {
  return c !== undefined && c.volume !== 'dir' ? `${e.strategy} · ${c.volume}` : e.strategy;
}

/** "repeats 1 and 3: " / "repeat 2: " / "" (all repeats, when every repeat says the same) */
function repeatsPrefix(repeats: number[], all: number): string {
  if (repeats.length === all && all > 1) return 'all repeats: ';
  if (repeats.length === 0 || all <= 1) return '';
  return `repeat${repeats.length > 1 ? 's' : ''} ${listWords(repeats.map(String))}: `;
}

/**
 * The footnotes of a cell, in the order they should appear: why repeats failed (a failed cell's
 * own reason is shown in its row, not repeated here), steps that exited non-zero, how the tool
 * reported the fault, the repeats' notes, and example paths of damaged/missing/extra files.
 * A text shared by several repeats is written once, with the repeats it applies to.
 */
export function cellNotes(c: Cell): string[] {
  const notes: string[] = [];
  const reps = c.repeats ?? [];
  const all = reps.length;
  const own = c.reason !== undefined && c.reason !== '' ? c.reason : c.status === 'failed' ? reps.find((x) => x.status === 'failed' && x.reason)?.reason : undefined;
  const reason = own !== undefined ? short(own) : undefined;
  const repeatReasons = reps.filter((x) => x.status === 'failed').map((x) => short(x.reason ?? 'no reason recorded'));
  if (c.status !== 'failed' && c.status !== 'skipped' && reason !== undefined && !repeatReasons.includes(reason)) notes.push(reason);
  const grouped = new Map<string, number[]>();
  const add = (text: string, repeat: number) => {
    const g = grouped.get(text) ?? [];
    if (!g.includes(repeat)) g.push(repeat);
    grouped.set(text, g);
  };
  for (const x of reps) {
    const why = short(x.reason ?? 'no reason recorded');
    if (x.status === 'failed' && !(c.status === 'failed' && why === reason)) add(`failed: ${why}`, x.repeat);
  }
  const examples: Record<'damaged' | 'missing' | 'extra', string[]> = { damaged: [], missing: [], extra: [] };
  for (const x of reps.filter((y) => y.status === 'ok')) {
    for (const st of x.steps ?? []) {
      if (st.exitCode !== 0) add(`${st.name} exited ${st.exitCode}${st.message !== undefined && st.message !== '' ? `: ${short(st.message)}` : ''}`, x.repeat);
    }
    if (x.corruptionDetected === true && x.detectionMessage !== undefined && x.detectionMessage !== '') add(`detected it: ${short(x.detectionMessage)}`, x.repeat);
    for (const n of x.notes ?? []) add(short(n), x.repeat);
    for (const kind of ['damaged', 'missing', 'extra'] as const) {
      for (const p of x.integrity?.examples?.[kind] ?? []) if (!examples[kind].includes(p)) examples[kind].push(p);
    }
  }
  for (const [text, repeats] of grouped) notes.push(repeatsPrefix(repeats.sort((a, b) => a - b), all) + text);
  for (const kind of ['damaged', 'missing', 'extra'] as const) {
    const paths = examples[kind];
    if (paths.length > 0) notes.push(`${kind} files, e.g. ${short(paths.slice(0, 4).join(', '), 240)}${paths.length > 4 ? ', …' : ''}`);
  }
  return notes;
}

export function scenarioTable(r: BenchResults, scenario: ScenarioView, entrants: Entrant[]): ScenarioTable {
  const footnotes: string[] = [];
  const rows: TableRow[] = [];
  for (const e of entrants) {
    const c = cellOf(r, e, scenario.id);
    if (c === undefined) continue;
    const notes = cellNotes(c).map((n) => {
      const i = footnotes.indexOf(n);
      if (i >= 0) return i + 1;
      footnotes.push(n);
      return footnotes.length;
    });
    if (c.status === 'failed' || c.status === 'skipped') {
      rows.push({ entrant: e, status: c.status, reason: short(c.reason ?? (c.repeats ?? []).find((x) => x.reason)?.reason ?? 'no reason recorded'), notes });
      continue;
    }
    const reps = c.repeats ?? [];
    rows.push({
      entrant: e,
      status: c.status,
      figures: cellFigures(c),
      notes,
      tag: c.status === 'partial' ? `${okRepeats(c).length} of ${reps.length} repeats` : undefined,
    });
  }
  return { scenario, rows, footnotes };
}

// ---------------------------------------------------------------- categorisation

export interface Standing {
  entrant: Entrant;
  /**
   * Geometric mean, over every (scenario, operation) the entrant has a median wall time for
   * (operations: backup, restore), of that median divided by the best median of the same
   * scenario and operation. 1 = fastest everywhere. Rounded to 2 decimals.
   */
  timeScore?: number;
  /** the same for CPU seconds */
  cpuScore?: number;
  /** the largest median peak RSS of any backup or restore, in MiB (1 decimal) */
  peakRssMiB?: number;
  /** (scenario, operation) pairs the time score rests on */
  timePairs: number;
  /** scenarios with at least one figure */
  scenarios: ScenarioId[];
  /** median over those scenarios of (backup wall + restore wall), where both were measured */
  typicalWallSeconds?: number;
  typicalCpuSeconds?: number;
}

/** A time below this counts as this, so that a 0.00 s figure does not make ratios infinite. */
const FLOOR_SECONDS = 0.01;

const round = (x: number, d: number): number => Math.round(x * 10 ** d) / 10 ** d;

function geomean(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  return Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
}

type Metric = 'backupWallSeconds' | 'restoreWallSeconds' | 'backupCpuSeconds' | 'restoreCpuSeconds';

const ran = (c: Cell | undefined): c is Cell => c !== undefined && (c.status === 'ok' || c.status === 'partial');

export function standings(r: BenchResults, entrants: Entrant[] = entrantsOf(r), scenarios: ScenarioView[] = scenariosOf(r)): Standing[] {
  const get = (e: Entrant, s: ScenarioId, m: Metric): number | undefined => {
    const c = cellOf(r, e, s);
    const v = ran(c) ? c.summary?.[m]?.median : undefined;
    return finite(v) ? Math.max(v, FLOOR_SECONDS) : undefined;
  };
  const best = (s: ScenarioId, m: Metric): number | undefined => {
    const v = entrants.map((e) => get(e, s, m)).filter(finite);
    return v.length > 0 ? Math.min(...v) : undefined;
  };
  const score = (e: Entrant, metrics: Metric[]): { score?: number; pairs: number } => {
    const ratios: number[] = [];
    for (const s of scenarios) {
      for (const m of metrics) {
        const v = get(e, s.id, m);
        const b = best(s.id, m);
        if (v !== undefined && b !== undefined) ratios.push(v / b);
      }
    }
    const g = geomean(ratios);
    return { score: g !== undefined ? round(g, 2) : undefined, pairs: ratios.length };
  };
  return entrants.map((e) => {
    const time = score(e, ['backupWallSeconds', 'restoreWallSeconds']);
    const cpu = score(e, ['backupCpuSeconds', 'restoreCpuSeconds']);
    const rss: number[] = [];
    const walls: number[] = [];
    const cpus: number[] = [];
    const ranIn: ScenarioId[] = [];
    for (const s of scenarios) {
      const c = cellOf(r, e, s.id);
      if (!ran(c)) continue;
      const sm = c.summary ?? {};
      for (const x of [sm.backupPeakRssBytes?.median, sm.restorePeakRssBytes?.median]) if (finite(x)) rss.push(x);
      if (finite(sm.backupWallSeconds?.median) && finite(sm.restoreWallSeconds?.median)) walls.push(sm.backupWallSeconds.median + sm.restoreWallSeconds.median);
      if (finite(sm.backupCpuSeconds?.median) && finite(sm.restoreCpuSeconds?.median)) cpus.push(sm.backupCpuSeconds.median + sm.restoreCpuSeconds.median);
      if (Object.values(sm).some((v) => v !== undefined)) ranIn.push(s.id);
    }
    return {
      entrant: e,
      timeScore: time.score,
      cpuScore: cpu.score,
      peakRssMiB: rss.length > 0 ? round(Math.max(...rss) / MiB, 1) : undefined,
      timePairs: time.pairs,
      scenarios: ranIn,
      typicalWallSeconds: median(walls),
      typicalCpuSeconds: median(cpus),
    };
  });
}

export interface Categories {
  standings: Standing[];
  /** lowest time score (ties: all of them) */
  fastest: Standing[];
  leastCpu: Standing[];
  leastMemory: Standing[];
  /** Pareto front over (time score, CPU score, peak RSS), by entrant key */
  pareto: ParetoResult;
  /** the same among the entrants that encrypt and deduplicate, when they are a proper subset of two or more */
  paretoEncrypted?: ParetoResult;
}

const paretoOf = (ss: Standing[]): ParetoResult => paretoFront(ss.map((s) => ({ id: s.entrant.key, values: [s.timeScore, s.cpuScore, s.peakRssMiB] })));

function lowest(ss: Standing[], f: (s: Standing) => number | undefined): Standing[] {
  const v = ss.map(f).filter(finite);
  if (v.length === 0) return [];
  const m = Math.min(...v);
  return ss.filter((s) => f(s) === m);
}

export function categorise(r: BenchResults, entrants: Entrant[] = entrantsOf(r), scenarios: ScenarioView[] = scenariosOf(r)): Categories {
  const ss = standings(r, entrants, scenarios);
  const enc = ss.filter((s) => s.entrant.encryption === true && s.entrant.deduplicating);
  return {
    standings: ss,
    fastest: lowest(ss, (s) => s.timeScore),
    leastCpu: lowest(ss, (s) => s.cpuScore),
    leastMemory: lowest(ss, (s) => s.peakRssMiB),
    pareto: paretoOf(ss),
    paretoEncrypted: enc.length >= 2 && enc.length < ss.filter((s) => s.timeScore !== undefined).length ? paretoOf(enc) : undefined,
  };
}

/** Why `dominated` is off the front: "slower (×1.40 vs ×1.00), more CPU (…), more memory (…)" against `by`. */
export function dominanceReason(dominated: Standing, by: Standing): string {
  const parts: string[] = [];
  const cmp = (name: string, a: number | undefined, b: number | undefined, f: (x: number) => string) => {
    if (a === undefined || b === undefined) return;
    if (a > b) parts.push(`${name} (${f(a)} vs ${f(b)})`);
  };
  cmp('slower', dominated.timeScore, by.timeScore, (x) => `×${x.toFixed(2)}`);
  cmp('more CPU', dominated.cpuScore, by.cpuScore, (x) => `×${x.toFixed(2)}`);
  cmp('more memory', dominated.peakRssMiB, by.peakRssMiB, (x) => `${fmtNum(x)} MiB`);
  return parts.join(', ');
}

// ---------------------------------------------------------------- integrity and robustness

export interface RobustnessCell {
  entrant: Entrant;
  scenario: ScenarioId;
  status: Cell['status'];
  reason?: string;
  detection: DetectionCount;
  /** ok repeats whose recovery was complete and exact */
  intact: number;
  /** ok repeats with damaged/missing files where the tool said so (detected or a restore failed) */
  reported: number[];
  /** ok repeats with damaged/missing files, every restore step exited 0 and nothing detected */
  silent: number[];
  /** ok repeats with an integrity verdict */
  judged: number;
  /** the worst repeat's damaged and missing counts */
  worstDamaged: number;
  worstMissing: number;
  messages: string[];
  /** repairs from parity over the ok repeats (meshback-parity in repo-corruption): packs damaged, rebuilt, lost */
  repair?: { damaged: number; repaired: number; lost: number };
  /** s3-outage: over the ok repeats that the outage hit, backups that finished through it and that failed */
  outage?: { hit: number; finished: number; failed: number; exitCodes: number[] };
}

export function isSilent(x: RepeatResult): boolean {
  const i = x.integrity;
  if (x.status !== 'ok' || i === undefined || i.damaged + i.missing === 0) return false;
  if (x.corruptionDetected === true) return false;
  return !(x.steps ?? []).some((s) => s.name.startsWith('restore') && s.exitCode !== 0);
}

export function robustnessCell(c: Cell, e: Entrant): RobustnessCell {
  const reps = okRepeats(c).filter((x) => x.integrity !== undefined);
  const bad = reps.filter((x) => x.integrity!.damaged + x.integrity!.missing > 0);
  return {
    entrant: e,
    scenario: c.scenario,
    status: c.status,
    reason: c.reason,
    detection: detectionOf(c),
    intact: reps.length - bad.length,
    silent: bad.filter(isSilent).map((x) => x.repeat),
    reported: bad.filter((x) => !isSilent(x)).map((x) => x.repeat),
    judged: reps.length,
    worstDamaged: Math.max(0, ...bad.map((x) => x.integrity!.damaged)),
    worstMissing: Math.max(0, ...bad.map((x) => x.integrity!.missing)),
    messages: [...new Set(okRepeats(c).flatMap((x) => (x.corruptionDetected === true && x.detectionMessage ? [short(x.detectionMessage, 160)] : [])))],
    ...repairAndOutage(okRepeats(c)),
  };
}

function repairAndOutage(reps: RepeatResult[]): Pick<RobustnessCell, 'repair' | 'outage'> {
  const out: Pick<RobustnessCell, 'repair' | 'outage'> = {};
  const rs = reps.flatMap((x) => (x.repair !== undefined ? [x.repair] : []));
  if (rs.length > 0) out.repair = { damaged: sum(rs.map((x) => x.packsDamaged)), repaired: sum(rs.map((x) => x.packsRepaired)), lost: sum(rs.map((x) => x.packsLost)) };
  const os = reps.flatMap((x) => (x.outage !== undefined && x.outage.hit ? [x.outage] : []));
  if (reps.some((x) => x.outage !== undefined)) {
    out.outage = { hit: os.length, finished: os.filter((x) => x.backup === 'finished').length, failed: os.filter((x) => x.backup === 'failed').length, exitCodes: [...new Set(os.filter((x) => x.backup === 'failed').map((x) => x.exitCode))] };
  }
  return out;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/** A skipped cell's reason says the scenario does not apply to the tool (e.g. borg and S3). */
export const notApplicable = (reason: string | undefined): boolean => reason?.startsWith('not applicable') === true;

/** "12 damaged and 3 missing files" / "4 missing files", from the worst repeat */
export function worstText(x: RobustnessCell): string {
  const parts: string[] = [];
  if (x.worstDamaged > 0) parts.push(`${fmtInt(x.worstDamaged)} damaged`);
  if (x.worstMissing > 0) parts.push(`${fmtInt(x.worstMissing)} missing`);
  return `${listWords(parts)} file${x.worstDamaged + x.worstMissing === 1 ? '' : 's'}`;
}

/** One line for a robustness matrix cell. */
export function robustnessText(x: RobustnessCell): TextCell {
  if (x.status === 'skipped' && notApplicable(x.reason)) return { text: 'not applicable' };
  if (x.status === 'failed' || x.status === 'skipped') return { text: x.status };
  const parts: string[] = [];
  let bad = false;
  if (x.outage !== undefined) {
    const o = x.outage;
    const n = (k: number) => (x.judged > 1 ? ` ${k}/${o.hit}` : '');
    if (o.hit === 0) parts.push('outage missed the backup');
    if (o.finished > 0) parts.push(`backup rode out the outage${n(o.finished)}`);
    if (o.failed > 0) parts.push(`backup failed (exit ${o.exitCodes.join(', ')})${n(o.failed)}, rerun after`);
  }
  if (x.repair !== undefined && x.repair.damaged > 0) {
    const r = x.repair;
    parts.push(`repaired from parity ${r.repaired}/${r.damaged} packs${r.lost > 0 ? `, ${r.lost} lost` : ''}`);
    if (r.lost > 0) bad = true;
  }
  const d = x.detection;
  if (d.rate !== undefined) {
    const n = d.of > 1 ? ` ${d.detected}/${d.of}` : '';
    parts.push(d.rate >= 1 ? `detected${n}` : d.rate <= 0 ? `not detected${n}` : `detected${n}`);
    if (d.rate < 1) bad = true;
  }
  if (x.judged === 0) parts.push('no integrity verdict');
  else if (x.silent.length > 0) {
    parts.push(`SILENTLY WRONG ${x.silent.length}/${x.judged} (up to ${worstText(x)})`);
    bad = true;
  } else if (x.reported.length > 0) parts.push(`incomplete, reported ${x.reported.length}/${x.judged} (up to ${worstText(x)})`);
  else parts.push(x.judged > 1 ? `intact ${x.intact}/${x.judged}` : 'intact');
  return { text: parts.join('; '), bad, good: !bad && x.reported.length === 0 };
}

export interface Robustness {
  /** per scenario with something to detect: who detected it (rate 1), partly, and who did not */
  detection: { scenario: ScenarioView; detected: RobustnessCell[]; partly: RobustnessCell[]; missed: RobustnessCell[] }[];
  /** every cell with a silent repeat */
  silent: RobustnessCell[];
  matrix: { entrant: Entrant; cells: (RobustnessCell | undefined)[] }[];
}

export function robustness(r: BenchResults, entrants: Entrant[] = entrantsOf(r), scenarios: ScenarioView[] = scenariosOf(r)): Robustness {
  const matrix = entrants.map((e) => ({
    entrant: e,
    cells: scenarios.map((s) => {
      const c = cellOf(r, e, s.id);
      return c !== undefined ? robustnessCell(c, e) : undefined;
    }),
  }));
  const detection = scenarios
    .map((s, i) => {
      const cs = matrix.map((m) => m.cells[i]).filter((c): c is RobustnessCell => c !== undefined && c.detection.rate !== undefined);
      return {
        scenario: s,
        detected: cs.filter((c) => c.detection.rate! >= 1),
        partly: cs.filter((c) => c.detection.rate! > 0 && c.detection.rate! < 1),
        missed: cs.filter((c) => c.detection.rate! <= 0),
      };
    })
    .filter((d) => d.detected.length + d.partly.length + d.missed.length > 0);
  const silent = matrix.flatMap((m) => m.cells.filter((c): c is RobustnessCell => c !== undefined && c.silent.length > 0));
  return { detection, silent, matrix };
}

// ---------------------------------------------------------------- run facts

export function runFacts(r: BenchResults): { label: string; value: string }[] {
  const m = r.machine;
  const o = r.options;
  const facts: { label: string; value: string }[] = [];
  const started = Date.parse(r.startedAt);
  const finished = Date.parse(r.finishedAt);
  facts.push({ label: 'date', value: `${r.startedAt ?? '?'}${Number.isFinite(started) && Number.isFinite(finished) ? ` (ran ${fmtDuration((finished - started) / 1000)})` : ''}` });
  if (m !== undefined) {
    facts.push({ label: 'machine', value: `${m.hostname ?? '?'}: ${m.cpus ?? '?'} CPUs (${m.cpuModel ?? '?'}), ${finite(m.memoryBytes) ? `${(m.memoryBytes / 1024 / MiB).toFixed(1)} GiB` : '?'} RAM, Linux ${m.kernel ?? '?'}, node ${m.node ?? '?'}` });
  }
  facts.push({ label: 'meshback', value: r.meshbackVersion ?? '?' });
  if (o !== undefined) {
    facts.push({ label: 'data', value: `${finite(o.sizeBytes) ? fmtBytes(o.sizeBytes) : '?'} per volume, seed ${o.seed}, ${o.repeat} repeat${o.repeat === 1 ? '' : 's'} per cell (figures are medians, min–max when they differ)` });
    facts.push({ label: 'selected', value: `tools ${(o.tools ?? []).join(', ')}; scenarios ${(o.scenarios ?? []).join(', ')}; strategies ${(o.strategies ?? []).join(', ')}` });
  }
  facts.push({ label: 'results', value: `${r.schema} version ${r.version}` });
  return facts;
}

export function fmtDuration(sec: number): string {
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec - h * 3600) / 60);
  if (h > 0) return `${h} h ${m} min`;
  return m > 0 ? `${m} min ${Math.round(sec - m * 60)} s` : `${sec.toFixed(1)} s`;
}

export const METHOD_NOTES: readonly string[] = [
  'Every step runs under GNU time: wall is elapsed time (10 ms resolution), CPU is user + system time of the tool and every process it waited for, peak RSS is the largest single process (ru_maxrss).',
  'Backup figures of a repeat are those of its first successful backup step (the full first backup); restore figures those of its first successful restore step (docs/bench-results-schema.md). Tables show the median over the repeats that ran, (min–max) when they differ.',
  'Integrity compares every recovered file by path, type, size and SHA-256 with the reference manifest the scenario names: matching / damaged / missing of the reference files.',
  'Corruption detected: did the tool itself report the fault (a check or restore that failed or warned naming the damage); n.a. where the scenario has nothing for the tool to detect or the tool has no way to notice.',
  'RPO: seconds from the start of the last good backup to the fault, and the writes and bytes written in that window that recovery did not bring back. RTO: seconds from the fault to the end of a verified recovery.',
  'Categories: time and CPU scores are geometric means, over every scenario and operation (backup, restore) the tool ran, of its median divided by the best median there (×1.00 = best everywhere), so a tool that failed a scenario is neither helped nor hurt by it; memory is the largest median peak RSS of any backup or restore. The Pareto front holds the tools no other tool beats in all three at once.',
  'A silently wrong recovery: damaged or missing files while every restore exited 0 and the tool reported nothing.',
];

// ---------------------------------------------------------------- application level

/** Columns of the application-level table (app-* scenarios, one row per entrant and scenario). */
export const APP_COLUMNS = ['tool', 'strategy', 'scenario', 'service healthy', 'writes acknowledged / lost', 'lost before backup', 'RPO s', 'RTO s', 'failed checks'] as const;

export const APP_INTRO =
  'The app-* scenarios protect a running service mesh (the testbed: two Node services behind nginx sidecars, PostgreSQL for orders, Redis for sessions) and judge recovery as a service. Service healthy: every check passed after recovery (nginx -t on the restored configuration, every component starts, traffic through every sidecar, PostgreSQL amcheck, Redis data loaded). Writes: acknowledged to the load generator up to the fault / not held by the recovered stores. Lost before backup: lost writes acknowledged before the restored backup started (must be 0). RPO s: the fault minus the last acknowledged write the recovered service still holds. RTO s: the fault to the first successful request through every sidecar after recovery (the restore included; the time injecting the fault took, killing and deleting volumes, is left out).';

export interface AppRow {
  entrant: Entrant;
  scenario: ScenarioView;
  cell: Cell;
  status: Cell['status'];
  /** failed/skipped cells: why (no figures) */
  reason?: string;
  /** one per APP_COLUMNS column after tool, strategy and scenario */
  figures?: TextCell[];
  /** "2 of 3 repeats" for a partial cell */
  tag?: string;
}

/** Is `id` an application-level scenario: one whose cells carry `app` results (or named app-*, for cells that never got that far)? */
export function isAppScenario(r: BenchResults, id: ScenarioId): boolean {
  return (r.cells ?? []).some((c) => c.scenario === id && (c.summary?.appHealthyRate !== undefined || (c.repeats ?? []).some((x) => x.app !== undefined))) || String(id).startsWith('app-');
}

const appRepeats = (c: Cell): RepeatResult[] => okRepeats(c).filter((x) => x.app !== undefined);

function healthyText(reps: RepeatResult[]): TextCell {
  if (reps.length === 0) return { text: 'n.a.' };
  const k = reps.filter((x) => x.app!.healthy).length;
  const n = reps.length;
  const counts = n > 1 ? ` (${k}/${n})` : '';
  if (k === n) return { text: `yes${counts}`, good: true };
  if (k === 0) return { text: `no${counts}`, bad: true };
  return { text: `partly (${k}/${n})`, bad: true };
}

function writesText(c: Cell, reps: RepeatResult[]): TextCell {
  if (reps.length === 0) return { text: '—' };
  const ack = median(reps.map((x) => x.app!.writesAcknowledged))!;
  const lost = c.summary?.appWritesLost;
  const l = lost?.median ?? median(reps.map((x) => x.app!.writesLost))!;
  const range = lost !== undefined && lost.n > 1 && lost.min !== lost.max ? `lost ${fmtInt(lost.min)}–${fmtInt(lost.max)}` : undefined;
  return { text: `${fmtInt(ack)} / ${fmtInt(l)}`, sub: range };
}

function lostBeforeText(reps: RepeatResult[]): TextCell {
  if (reps.length === 0) return { text: '—' };
  const worst = Math.max(...reps.map((x) => x.app!.lostBeforeBackup));
  return worst > 0 ? { text: fmtInt(worst), sub: reps.length > 1 ? 'worst repeat' : undefined, bad: true } : { text: '0', good: true };
}

function failedChecksText(reps: RepeatResult[]): TextCell {
  if (reps.length === 0) return { text: '—' };
  const counts = new Map<string, { n: number; detail?: string }>();
  for (const x of reps) {
    for (const ch of x.app!.checks ?? []) {
      if (ch.ok) continue;
      const e = counts.get(ch.name) ?? { n: 0, detail: ch.detail };
      e.n++;
      counts.set(ch.name, e);
    }
  }
  if (counts.size === 0) return { text: 'none', good: true };
  const names = [...counts].map(([name, e]) => `${name}${reps.length > 1 ? ` (${e.n}/${reps.length})` : ''}`);
  const first = [...counts.values()].find((e) => e.detail !== undefined && e.detail !== '')?.detail;
  return { text: names.join(', '), sub: first !== undefined ? short(first, 160) : undefined, bad: true };
}

/** The figures of an application-level cell that ran, in APP_COLUMNS order after tool, strategy and scenario. */
export function appFigures(c: Cell): TextCell[] {
  const reps = appRepeats(c);
  return [healthyText(reps), writesText(c, reps), lostBeforeText(reps), fig(c.summary?.rpoSeconds), fig(c.summary?.rtoSeconds), failedChecksText(reps)];
}

/** The application-level table: per app scenario (in report order), a row per entrant with a cell there. */
export function appTable(r: BenchResults, entrants: Entrant[] = entrantsOf(r), scenarios: ScenarioView[] = scenariosOf(r)): AppRow[] {
  const rows: AppRow[] = [];
  for (const s of scenarios.filter((x) => isAppScenario(r, x.id))) {
    for (const e of entrants) {
      const c = cellOf(r, e, s.id);
      if (c === undefined) continue;
      if (c.status === 'failed' || c.status === 'skipped') {
        rows.push({ entrant: e, scenario: s, cell: c, status: c.status, reason: short(c.reason ?? (c.repeats ?? []).find((x) => x.reason)?.reason ?? 'no reason recorded') });
        continue;
      }
      rows.push({ entrant: e, scenario: s, cell: c, status: c.status, figures: appFigures(c), tag: c.status === 'partial' ? `${okRepeats(c).length} of ${(c.repeats ?? []).length} repeats` : undefined });
    }
  }
  return rows;
}
