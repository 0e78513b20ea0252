/**
 * The fault-tolerance benchmark's report (lab/bench/fault/report): the Pareto front on hand
 * examples, the categorisation on a hand-made result, and the rendering of the fixture
 * (test/fixtures/bench-results-256MiB.json, made by test/fixtures/make-bench-results.ts) to
 * Markdown and to a self-contained, well-formed HTML page that escapes what tools print.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { categorise, dominates, paretoFront, parseResults, readResults, renderHtml, renderMarkdown, writeReport } from '../../lab/bench/fault/report/index.ts';
import { NotFoundError, UsageError } from '../../src/errors/index.ts';
import { appTable, entrantsOf, isAppScenario, isSilent, scenariosOf } from '../../lab/bench/fault/report/model.ts';
import { summarize } from '../../lab/bench/fault/runner.ts';
import { appRecovery } from '../../lab/bench/fault/scenarios/app-common.ts';
import { RESULTS_SCHEMA, RESULTS_VERSION, SCENARIO_IDS } from '../../lab/bench/fault/types.ts';
import type { BenchResults, Cell, RepeatResult, ScenarioId, Spread, Strategy } from '../../lab/bench/fault/types.ts';

const FIXTURE = path.resolve(import.meta.dirname, '../fixtures/bench-results-256MiB.json');
const MiB = 1024 * 1024;

function fixture(): BenchResults {
  return JSON.parse(readFileSync(FIXTURE, 'utf8')) as BenchResults;
}

/** The Markdown section that starts with the heading line `## ${title}…`, up to the next `## `. */
function section(md: string, title: string): string {
  const start = md.indexOf(`\n## ${title}`);
  assert.ok(start >= 0, `no section "${title}"`);
  const end = md.indexOf('\n## ', start + 4);
  return md.slice(start, end < 0 ? undefined : end);
}

const VOID = new Set(['area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta', 'source', 'track', 'wbr']);

/**
 * A strict well-formedness check of the HTML this report writes: every non-void element is
 * closed, in order; no raw `<` or `>` outside tags (text is escaped); style content is skipped.
 * Returns the element counts.
 */
function checkWellFormed(html: string): Map<string, number> {
  const counts = new Map<string, number>();
  const stack: string[] = [];
  const body = html.replace(/^<!doctype html>\s*/i, '').replace(/<style>[\s\S]*?<\/style>/g, '<style></style>');
  const re = /<(\/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z_:][\w:.-]*(?:="[^"<>]*")?)*)\s*(\/?)>/g;
  let last = 0;
  for (let m = re.exec(body); m !== null; m = re.exec(body)) {
    const text = body.slice(last, m.index);
    assert.doesNotMatch(text, /[<>]/, `raw < or > in text near ${JSON.stringify(body.slice(Math.max(0, m.index - 80), m.index))}`);
    last = re.lastIndex;
    const [, close, nameRaw, , selfClose] = m;
    const name = nameRaw!.toLowerCase();
    if (close === '/') {
      const open = stack.pop();
      assert.equal(open, name, `</${name}> closes <${open}> near ${JSON.stringify(body.slice(Math.max(0, m.index - 120), m.index + 20))}`);
      continue;
    }
    counts.set(name, (counts.get(name) ?? 0) + 1);
    if (selfClose === '/' || VOID.has(name)) continue;
    stack.push(name);
  }
  assert.doesNotMatch(body.slice(last), /[<>]/, 'raw < or > after the last tag');
  assert.deepEqual(stack, [], 'unclosed elements');
  return counts;
}

// ---------------------------------------------------------------- Pareto

describe('Pareto front', () => {
  test('dominates: no worse everywhere and better somewhere', () => {
    assert.equal(dominates([1, 2, 3], [2, 2, 3]), true);
    assert.equal(dominates([1, 2, 3], [1, 2, 3]), false, 'equal points do not dominate');
    assert.equal(dominates([1, 5, 3], [2, 2, 3]), false, 'a trade-off is not dominance');
    assert.equal(dominates([2, 2, 3], [1, 2, 3]), false);
    assert.throws(() => dominates([1, 2], [1, 2, 3]), RangeError);
  });

  test('front and who dominates whom', () => {
    const r = paretoFront([
      { id: 'A', values: [1, 1, 1] },
      { id: 'B', values: [2, 2, 2] },
      { id: 'C', values: [1, 3, 0.5] },
      { id: 'D', values: [3, 3, 3] },
    ]);
    assert.deepEqual(r.front, ['A', 'C']);
    assert.deepEqual([...r.dominated.entries()], [
      ['B', ['A']],
      ['D', ['A', 'B', 'C']],
    ]);
    assert.deepEqual(r.unranked, []);
  });

  test('ties stay on the front together', () => {
    const r = paretoFront([
      { id: 'A', values: [1, 1, 1] },
      { id: 'A2', values: [1, 1, 1] },
      { id: 'B', values: [1, 1, 2] },
    ]);
    assert.deepEqual(r.front, ['A', 'A2']);
    assert.deepEqual(r.dominated.get('B'), ['A', 'A2']);
  });

  test('a point with a missing value is unranked and dominates nothing', () => {
    const r = paretoFront([
      { id: 'X', values: [0, 0, undefined] },
      { id: 'Y', values: [Number.NaN, 0, 0] },
      { id: 'A', values: [5, 5, 5] },
    ]);
    assert.deepEqual(r.front, ['A'], 'A would be dominated if a missing value counted as 0');
    assert.deepEqual(r.unranked, ['X', 'Y']);
    assert.equal(r.dominated.size, 0);
  });

  test('empty input, one point, duplicate ids', () => {
    assert.deepEqual(paretoFront([]), { front: [], dominated: new Map(), unranked: [] });
    assert.deepEqual(paretoFront([{ id: 'A', values: [3] }]).front, ['A']);
    assert.throws(() => paretoFront([{ id: 'A', values: [1] }, { id: 'A', values: [2] }]), /duplicate id/);
  });
});

// ---------------------------------------------------------------- categorisation on a hand-made result

const sp = (x: number, n = 1): Spread => ({ median: x, min: x, max: x, n });

function cell(tool: string, scenario: ScenarioId, f?: { b: number; r: number; cpu?: number; rssMiB: number }, strategy: Strategy = 'incremental'): Cell {
  if (f === undefined) {
    return { tool, strategy, volume: 'dir', scenario, status: 'failed', reason: `${tool} broke in ${scenario}`, repeats: [{ repeat: 1, seed: 1, status: 'failed', reason: `${tool} broke in ${scenario}`, steps: [] }], summary: {} };
  }
  const cpu = f.cpu ?? 1;
  return {
    tool,
    strategy,
    volume: 'dir',
    scenario,
    status: 'ok',
    repeats: [{ repeat: 1, seed: 1, status: 'ok', steps: [], integrity: { files: 10, matching: 10, damaged: 0, missing: 0, extra: 0 }, corruptionDetected: null }],
    summary: {
      backupWallSeconds: sp(f.b),
      restoreWallSeconds: sp(f.r),
      backupCpuSeconds: sp(f.b * cpu),
      restoreCpuSeconds: sp(f.r * cpu),
      backupPeakRssBytes: sp(f.rssMiB * MiB),
      restorePeakRssBytes: sp((f.rssMiB / 2) * MiB),
    },
  };
}

function results(cells: Cell[], tools = ['A', 'B', 'C']): BenchResults {
  return {
    schema: RESULTS_SCHEMA,
    version: RESULTS_VERSION,
    meshbackVersion: '0.1.0',
    startedAt: '2026-11-24T00:00:00.000Z',
    finishedAt: '2026-11-24T00:01:00.000Z',
    machine: { cpus: 2, cpuModel: 'test', memoryBytes: 8 * 1024 * MiB, kernel: '6', node: '26', hostname: 'h' },
    options: { tools, scenarios: ['container-crash', 'node-outage'], strategies: ['incremental'], sizeBytes: 16 * MiB, seed: 1, repeat: 1 },
    tools: tools.map((name) => ({ name, version: `${name} 1.0`, label: name, encryption: true, strategy: 'incremental' as const })),
    scenarios: [
      { id: 'container-crash', title: 'Crash', description: 'd1' },
      { id: 'node-outage', title: 'Outage', description: 'd2' },
    ],
    cells,
  };
}

describe('categories', () => {
  // container-crash: A 1+1, B 2+2, C 1+4; node-outage: A failed, B 2+2, C 1+1
  const r = results([
    cell('A', 'container-crash', { b: 1, r: 1, rssMiB: 100 }),
    cell('B', 'container-crash', { b: 2, r: 2, rssMiB: 50 }),
    cell('C', 'container-crash', { b: 1, r: 4, rssMiB: 200 }),
    cell('A', 'node-outage'),
    cell('B', 'node-outage', { b: 2, r: 2, rssMiB: 50 }),
    cell('C', 'node-outage', { b: 1, r: 1, rssMiB: 200 }),
  ]);
  const c = categorise(r);
  const by = (tool: string) => c.standings.find((s) => s.entrant.tool === tool)!;

  test('scores are geometric means of ratios to the best of each scenario and operation', () => {
    assert.equal(by('A').timeScore, 1, 'A is best wherever it ran; its failed scenario neither helps nor hurts');
    assert.equal(by('B').timeScore, 2);
    assert.equal(by('C').timeScore, 1.41, '(1 * 4 * 1 * 1)^(1/4)');
    assert.equal(by('A').timePairs, 2);
    assert.equal(by('C').timePairs, 4);
    assert.deepEqual(by('A').scenarios, ['container-crash']);
    assert.equal(by('B').peakRssMiB, 50);
    assert.equal(by('C').typicalWallSeconds, 3.5, 'median of 5 and 2');
  });

  test('fastest, least resources and the front, with who dominates whom', () => {
    assert.deepEqual(c.fastest.map((s) => s.entrant.tool), ['A']);
    assert.deepEqual(c.leastMemory.map((s) => s.entrant.tool), ['B']);
    assert.deepEqual(c.pareto.front, ['A/incremental', 'B/incremental']);
    assert.deepEqual(c.pareto.dominated.get('C/incremental'), ['A/incremental']);
    const md = renderMarkdown(r);
    assert.match(md, /C is dominated by A \(slower \(×1\.41 vs ×1\.00\), more CPU \(×1\.41 vs ×1\.00\), more memory \(200 MiB vs 100 MiB\)\)/);
    assert.match(md, /\*\*Fastest\*\*: \*\*A\*\*/);
  });

  test('a tool whose every cell failed is not ranked and does not dominate', () => {
    const r2 = results([cell('A', 'container-crash'), cell('B', 'container-crash', { b: 2, r: 2, rssMiB: 50 })], ['A', 'B']);
    const c2 = categorise(r2);
    assert.deepEqual(c2.pareto.front, ['B/incremental']);
    assert.deepEqual(c2.pareto.unranked, ['A/incremental']);
    assert.match(renderMarkdown(r2), /Not ranked .*: A\./);
  });

  test('silent: wrong data, restore exited 0, nothing detected', () => {
    const base: RepeatResult = { repeat: 1, seed: 1, status: 'ok', steps: [{ name: 'restore', wallSeconds: 1, cpuSeconds: 1, peakRssBytes: 1, exitCode: 0 }], integrity: { files: 10, matching: 8, damaged: 1, missing: 1, extra: 0 }, corruptionDetected: false };
    assert.equal(isSilent(base), true);
    assert.equal(isSilent({ ...base, corruptionDetected: null }), true, 'nothing to detect, yet wrong data');
    assert.equal(isSilent({ ...base, corruptionDetected: true }), false);
    assert.equal(isSilent({ ...base, steps: [{ ...base.steps[0]!, exitCode: 1 }] }), false, 'a failed restore is not silent');
    assert.equal(isSilent({ ...base, integrity: { files: 10, matching: 10, damaged: 0, missing: 0, extra: 1 } }), false, 'complete and exact');
    assert.equal(isSilent({ ...base, status: 'failed' }), false);
  });
});

// ---------------------------------------------------------------- the fixture

describe('report of the fixture', () => {
  const r = fixture();
  const md = renderMarkdown(r);
  const html = renderHtml(r);

  test('the fixture is a results file of the current schema', () => {
    assert.equal(r.schema, RESULTS_SCHEMA);
    assert.equal(r.version, RESULTS_VERSION);
    assert.equal(r.cells.length, 35);
    assert.deepEqual(new Set(r.cells.map((c) => c.status)), new Set(['ok', 'partial', 'failed', 'skipped']));
  });

  test('Markdown: header with machine, versions, seed; tools with notes', () => {
    assert.match(md, /^# meshback bench/);
    assert.match(md, /2 CPUs \(AMD EPYC 7B13\), 23\.5 GiB RAM, Linux 6\.18\.44-fc-v595, node 26\.10\.0/);
    assert.match(md, /\*\*meshback\*\*: 0\.1\.0/);
    assert.match(md, /256 MiB per volume, seed 42, 3 repeats per cell/);
    assert.match(md, /meshback-bench-results version 1/);
    assert.match(md, /\| restic \| restic 0\.14\.0 [^|]+\| yes \| incremental \(its own\), snapshot \| restic is the engine under Stash and Velero's file-system backup/);
    assert.match(md, /\| tar\+zstd \| [^|]+\| \*\*no\*\* \| full-copy \(its own\) \|/);
  });

  test('Markdown: one table per scenario with a row per tool and strategy', () => {
    const labels = entrantsOf(r).map((e) => e.label);
    assert.deepEqual(labels, ['meshback', 'meshback (snapshot)', 'restic', 'restic (snapshot)', 'borg', 'rsync', 'tar+zstd']);
    for (const s of scenariosOf(r)) {
      const sec = section(md, `${s.title} (\`${s.id}\`)`);
      const rows = sec.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| tool'));
      assert.equal(rows.length, labels.length, `rows of ${s.id}`);
      for (const l of labels) assert.ok(rows.some((row) => row.startsWith(`| ${l.replace('+', '+')} `) || row.startsWith(`| ${l} [`) || row.startsWith(`| ${l} (partial`)), `${l} in ${s.id}`);
      for (const row of rows) assert.equal(row.split(' | ').length, 13, `13 columns: ${row}`);
    }
    // the fixture predates the application-level scenarios and s3-outage
    assert.deepEqual(scenariosOf(r).map((s) => s.id), SCENARIO_IDS.filter((id) => !id.startsWith('app-') && id !== 's3-outage'));
  });

  test('Markdown: figures, spreads, integrity, detection, RPO and RTO', () => {
    const crash = section(md, 'Container crash');
    assert.match(crash, /\| meshback \| incremental \| 2\.46 \(2\.44–2\.46\) \| 3\.39 \(3\.27–3\.43\) \| 185 \(185–191\) \|/);
    assert.match(crash, /1,874 \/ 0 \/ 0 of 1,874 \| n\.a\. \| 6\.88 \(6\.31–7\.61; 135 writes, 540 KiB\) \| 1\.90 \(1\.88–1\.91\) \|/);
    const repo = section(md, 'Corrupted repository');
    assert.match(repo, /\| rsync \[[\d,]+\] \| full-copy \|.*\*\*1,871 \/ 3 \/ 0 of 1,874\*\* \| \*\*no \(0\/3\)\*\* \| n\.a\. \| — \|/);
    assert.match(repo, /\| yes \(3\/3\) \|/);
  });

  test('Markdown: failed, partial and skipped cells show their reasons', () => {
    const full = section(md, 'Disk full');
    assert.match(full, /\| borg \| incremental \| \*\*failed\*\*: backup-3: borg create exited 2: Failed to create\/acquire the lock [^|]+ \|( — \|){10}$/m);
    const repo = section(md, 'Corrupted repository');
    assert.match(repo, /\| meshback \(snapshot\) \| snapshot · btrfs \| \*\*skipped\*\*: the snapshot strategy changes how the volume is read/);
    const outage = section(md, 'Unplanned node outage');
    assert.match(outage, /\| borg \(partial: 2 of 3 repeats\) \[\d+,\d+\] \|/);
    assert.match(outage, /- \[\d+\] repeat 3: failed: restore: borg extract exited 2: Failed to create\/acquire the lock/);
    assert.match(outage, /- \[\d+\] all repeats: the mirror held files from the interrupted backup/);
  });

  test('Markdown: categories and the integrity summary', () => {
    const cats = section(md, 'Categories');
    assert.match(cats, /- \*\*Fastest\*\*: \*\*rsync\*\* \(time ×1\.22/);
    assert.match(cats, /- \*\*Least resource use\*\*: CPU: \*\*rsync\*\* \(×1\.07\); memory: \*\*rsync\*\* \(peak RSS 7\.40 MiB\)/);
    assert.match(cats, /- \*\*Best balance\*\*: the Pareto front/);
    assert.match(cats, /on the front: \*\*rsync\*\*/);
    assert.match(cats, /- borg is dominated by rsync \(slower \(×3\.46 vs ×1\.22\), more CPU/);
    assert.match(cats, /among the tools that encrypt and deduplicate/);
    const rob = section(md, 'Integrity and robustness');
    assert.match(rob, /\*\*Corrupted repository\*\*: detected by meshback \(3\/3\), restic \(3\/3\), borg \(3\/3\) and tar\+zstd \(3\/3\); \*\*not detected\*\* by rsync \(0\/3\)\./);
    assert.match(rob, /\*\*Restored wrong data without saying so\*\*: rsync in node-outage \(3 of 3 repeats, up to 51 damaged files\)/);
    const silentRows = rob.split('\n').filter((l) => l.includes('SILENTLY WRONG'));
    assert.deepEqual(silentRows.map((l) => l.split(' | ')[0]), ['| rsync'], 'only rsync has silent cells');
    assert.match(rob, /\| tar\+zstd \| intact 3\/3 \| incomplete, reported 3\/3 \(up to 1 damaged and 1,014 missing files\) \|/);
  });

  test('HTML: one self-contained page, no script and nothing fetched', () => {
    assert.match(html, /^<!doctype html>\n<html lang="en">/);
    assert.doesNotMatch(html, /<script/i);
    assert.doesNotMatch(html, /<link\b/i);
    assert.doesNotMatch(html, /<img\b/i);
    assert.doesNotMatch(html, /<iframe\b/i);
    assert.doesNotMatch(html, /\b(src|href|xlink:href)\s*=\s*["']?\s*(https?:|\/\/|file:|data:)/i);
    assert.doesNotMatch(html, /@import|url\(/i);
    for (const m of html.matchAll(/\bhref="([^"]*)"/g)) assert.match(m[1]!, /^#[\w-]+$/, `only in-page links: ${m[1]}`);
  });

  test('HTML: well-formed, with every chart an accessible SVG', () => {
    const counts = checkWellFormed(html);
    // time 5 + resources 10 + integrity 5 + RPO/RTO 4 (no scenario without RPO and RTO) + 2 scatter plots
    assert.equal(counts.get('svg'), 26);
    const svgs = [...html.matchAll(/<svg [^>]*>([\s\S]*?)<\/svg>/g)];
    assert.equal(svgs.length, 26);
    for (const s of svgs) {
      assert.match(s[0], /^<svg viewBox="0 0 \d+ \d+" width="\d+" height="\d+" role="img" aria-labelledby="([\w-]+)-t \1-d"/);
      assert.match(s[1]!, /^<title id="[\w-]+-t">[^<]+<\/title><desc id="[\w-]+-d">/);
      assert.match(s[1]!, /class="legend"/);
      assert.doesNotMatch(s[1]!, /NaN|undefined|Infinity/);
    }
    const ids = [...html.matchAll(/\bid="([^"]+)"/g)].map((m) => m[1]);
    assert.equal(new Set(ids).size, ids.length, 'ids are unique');
    for (const m of html.matchAll(/href="#([^"]+)"/g)) assert.ok(ids.includes(m[1]!), `link target #${m[1]} exists`);
  });

  test('HTML: the tables, the categories, the Pareto front and failed cells', () => {
    for (const e of entrantsOf(r)) assert.ok(html.includes(`<td>${e.label}`), e.label);
    assert.match(html, /<h3>Fastest<\/h3><div class="who">rsync<\/div>/);
    assert.match(html, /<h3>Best balance \(Pareto front\)<\/h3><div class="who">rsync<\/div>/);
    assert.match(html, /<tr class="front"><td>rsync<\/td>/);
    assert.match(html, /<b>borg<\/b> is dominated by rsync/);
    assert.match(html, /<tr class="failed"><td>borg<\/td><td>incremental<\/td><td class="reason" colspan="11"><b>failed<\/b>: backup-3: borg create exited 2/);
    assert.match(html, /<tr class="skipped"><td>meshback \(snapshot\)<\/td>/);
    assert.match(html, /failed: backup-3: borg create exited 2/, 'the failed cell in the charts');
    assert.match(html, /class="flag">silent!<\/text>/);
    assert.match(html, /class="mark">partial 2\/3<\/text>/);
    assert.match(html, /RPO s \(data at risk\): n\.a\./);
  });

  test('HTML: strings from the results are escaped; Markdown neutralises markup', () => {
    const evil = '<script>alert("x&y")</script>';
    const r2 = fixture();
    const c = r2.cells.find((x) => x.tool === 'rsync' && x.scenario === 'repo-corruption')!;
    c.repeats[0]!.steps[0]!.exitCode = 1;
    c.repeats[0]!.steps[0]!.message = `boom ${evil}`;
    c.repeats[0]!.notes = [`note ${evil}`];
    const f = r2.cells.find((x) => x.status === 'failed')!;
    f.reason = `reason ${evil}`;
    r2.tools[0]!.note = `tool ${evil}`;
    r2.tools[1]!.label = `restic <b>&</b>`;
    r2.scenarios[0]!.title = `Crash ${evil}`;
    r2.machine.hostname = `host ${evil}`;
    const h = renderHtml(r2);
    assert.doesNotMatch(h, /<script/i);
    assert.doesNotMatch(h, /<b>&<\/b>/);
    assert.ok(h.includes('&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;'));
    assert.ok(h.includes('restic &lt;b&gt;&amp;&lt;/b&gt;'));
    checkWellFormed(h);
    const m = renderMarkdown(r2);
    assert.doesNotMatch(m, /(^|[^\\])<script/);
    assert.ok(m.includes('\\<script>alert("x&y")\\</script>'));
  });
});

// ---------------------------------------------------------------- application level

describe('application-level rows', () => {
  const check = (name: string, ok: boolean, detail?: string) => ({ name, ok, ...(detail !== undefined ? { detail } : {}) });
  const healthyChecks = [check('nginx-config orders', true, 'nginx -t accepts the configuration'), check('amcheck orders', true), check('traffic orders', true), check('traffic sessions', true)];
  function appCell(tool: string, scenario: ScenarioId, reps: { healthy: boolean; ack: number; lost: number; before?: number; rpo: number; rto: number; failed?: [string, string][] }[], strategy: Strategy = 'incremental'): Cell {
    const repeats: RepeatResult[] = reps.map((x, i) => ({
      repeat: i + 1,
      seed: i + 1,
      status: 'ok',
      steps: [
        { name: 'backup-1', wallSeconds: 0.5, cpuSeconds: 0.4, peakRssBytes: 50 * MiB, exitCode: 0 },
        { name: 'restore', wallSeconds: 0.3, cpuSeconds: 0.2, peakRssBytes: 40 * MiB, exitCode: 0 },
      ],
      integrity: { files: 20, matching: 20, damaged: 0, missing: 0, extra: 0 },
      corruptionDetected: null,
      rpo: { seconds: x.rpo, bytesLost: 0, writesLost: x.lost },
      rtoSeconds: x.rto,
      app: { healthy: x.healthy, checks: [...healthyChecks, ...(x.failed ?? []).map(([n, d]) => check(n, false, d))], writesAcknowledged: x.ack, writesLost: x.lost, lostBeforeBackup: x.before ?? 0 },
    }));
    return { tool, strategy, volume: strategy === 'snapshot' ? 'btrfs' : 'dir', scenario, status: 'ok', repeats, summary: summarize(repeats) };
  }
  function appResults(cells: Cell[]): BenchResults {
    const r = results(cells, ['A', 'B', 'C']);
    r.options.scenarios = ['container-crash', 'app-container-crash', 'app-node-outage'];
    r.scenarios = [
      { id: 'container-crash', title: 'Crash', description: 'd1' },
      { id: 'app-container-crash', title: 'Service container crash (testbed)', description: 'app crash' },
      { id: 'app-node-outage', title: 'Node outage of the service mesh (testbed)', description: 'app outage' },
    ];
    return r;
  }
  const r = appResults([
    cell('A', 'container-crash', { b: 1, r: 1, rssMiB: 100 }),
    appCell('A', 'app-container-crash', [{ healthy: true, ack: 160, lost: 33, rpo: 2.98, rto: 1.22 }]),
    appCell('B', 'app-container-crash', [{ healthy: false, ack: 158, lost: 158, before: 120, rpo: 9.5, rto: 3.4, failed: [['amcheck orders', 'heap tuple (97,45) from table "orders" lacks matching index tuple <x>']] }]),
    { ...cell('C', 'app-container-crash'), reason: 'the testbed did not come up: initdb failed' },
    appCell('A', 'app-node-outage', [
      { healthy: true, ack: 250, lost: 60, rpo: 3, rto: 2.5 },
      { healthy: false, ack: 256, lost: 64, rpo: 3.4, rto: 3.2, failed: [['traffic sessions', 'no successful request through the sidecar within 30 s']] },
      { healthy: true, ack: 255, lost: 62, rpo: 3.2, rto: 2.9 },
    ]),
  ]);
  const md = renderMarkdown(r);
  const html = renderHtml(r);

  test('summarize: the healthy rate and writes lost over the repeats with app results; no bytes-lost spread for them', () => {
    const c = r.cells.find((x) => x.tool === 'A' && x.scenario === 'app-node-outage')!;
    assert.equal(c.summary.appHealthyRate, 2 / 3);
    assert.deepEqual(c.summary.appWritesLost, { median: 62, min: 60, max: 64, n: 3 });
    assert.deepEqual(c.summary.rtoSeconds, { median: 2.9, min: 2.5, max: 3.2, n: 3 });
    assert.equal(c.summary.rpoBytesLost, undefined, 'the testbed counts writes, not bytes');
    // a file-level repeat keeps its figures and gets no app fields
    const file = summarize([{ repeat: 1, seed: 1, status: 'ok', steps: [], rpo: { seconds: 2, bytesLost: 4096, writesLost: 3 } }]);
    assert.deepEqual(file.rpoBytesLost, sp(4096));
    assert.equal(file.appHealthyRate, undefined);
    assert.equal(file.appWritesLost, undefined);
  });

  test('appTable: a row per entrant and app scenario, in report order; file-level scenarios have none', () => {
    const rows = appTable(r);
    assert.deepEqual(rows.map((x) => `${x.scenario.id} ${x.entrant.label} ${x.status}`), ['app-container-crash A ok', 'app-container-crash B ok', 'app-container-crash C failed', 'app-node-outage A ok']);
    assert.equal(isAppScenario(r, 'container-crash'), false);
    assert.equal(isAppScenario(r, 'app-node-outage'), true);
  });

  test('Markdown: the application-level table with healthy, writes, lost before backup, RPO, RTO and failed checks', () => {
    const sec = section(md, 'Application-level recovery');
    assert.match(sec, /^\| tool \| strategy \| scenario \| service healthy \| writes acknowledged \/ lost \| lost before backup \| RPO s \| RTO s \| failed checks \|$/m);
    assert.match(sec, /^\| A \| incremental \| app-container-crash \| yes \| 160 \/ 33 \| 0 \| 2\.98 \| 1\.22 \| none \|$/m);
    // unhealthy, and writes acknowledged before the backup lost: both stand out; the check's own words (escaped)
    assert.match(sec, /^\| B \| incremental \| app-container-crash \| \*\*no\*\* \| 158 \/ 158 \| \*\*120\*\* \| 9\.50 \| 3\.40 \| \*\*amcheck orders \(heap tuple \(97,45\) from table "orders" lacks matching index tuple \\<x>\)\*\* \|$/m);
    assert.match(sec, /^\| C \| incremental \| app-container-crash \| \*\*failed\*\*: the testbed did not come up: initdb failed \|( — \|){5}$/m);
    // three repeats: a rate, medians with ranges, the failed check with how often
    assert.match(sec, /^\| A \| incremental \| app-node-outage \| \*\*partly \(2\/3\)\*\* \| 255 \/ 62 \(lost 60–64\) \| 0 \| 3\.20 \(3\.00–3\.40\) \| 2\.90 \(2\.50–3\.20\) \| \*\*traffic sessions \(1\/3\) \(no successful request/m);
    for (const row of sec.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| tool'))) assert.equal(row.split(' | ').length, 9, `9 columns: ${row}`);
    // the app scenarios also get their per-scenario tables, like every scenario; RPO in writes, not bytes
    assert.match(section(md, 'Service container crash (testbed)'), /\| 2\.98 \(33 writes\) \| 1\.22 \|$/m);
    assert.ok(md.indexOf('## Application-level recovery') < md.indexOf('## Crash'), 'the summary table comes before the per-scenario tables');
  });

  test('HTML: the section, its table and an RTO/RPO chart per app scenario, well-formed and escaped', () => {
    const counts = checkWellFormed(html);
    assert.ok((counts.get('svg') ?? 0) > 0);
    assert.match(html, /<a href="#app">Application-level recovery<\/a>/);
    assert.match(html, /<h2 id="app">Application-level recovery<\/h2>/);
    assert.match(html, /<td>B<\/td><td>incremental<\/td><td>app-container-crash<\/td><td class="bad">no<\/td><td class="num">158 \/ 158<\/td><td class="num bad">120<\/td>/);
    assert.match(html, /lacks matching index tuple &lt;x&gt;/);
    assert.match(html, /<td class="reason" colspan="6"><b>failed<\/b>: the testbed did not come up: initdb failed<\/td>/);
    assert.match(html, /Service container crash \(testbed\): RTO and RPO per tool, at application level/);
    assert.match(html, /Node outage of the service mesh \(testbed\): RTO and RPO per tool, at application level/);
    // the generic RPO/RTO charts leave the app scenarios to their own chart
    assert.doesNotMatch(html, /Service container crash \(testbed\): RPO and RTO per tool</);
  });

  test('results without app cells render without the section', () => {
    const plain = results([cell('A', 'container-crash', { b: 1, r: 1, rssMiB: 100 })], ['A']);
    assert.doesNotMatch(renderMarkdown(plain), /Application-level/);
    assert.doesNotMatch(renderHtml(plain), /Application-level|id="app"/);
    assert.doesNotMatch(renderMarkdown(fixture()), /Application-level/);
  });

  test('appRecovery: the testbed verification as results fields', () => {
    const a = appRecovery({
      healthy: false,
      ok: false,
      checks: [
        { name: 'amcheck', target: 'orders', ok: false, message: 'index broken' },
        { name: 'traffic', target: 'sessions', ok: true, message: 'GET /health succeeded' },
      ],
      writesAcknowledged: 10,
      writesLost: 4,
      lostBeforeBackup: null,
      rpoSeconds: 1.5,
      rtoSeconds: 2,
      faultTime: null,
      faultKind: null,
      backupTime: null,
      verifiedAt: '2026-11-24T00:00:00.000Z',
      seconds: 3,
      services: [],
      volumes: {},
    });
    assert.deepEqual(a, {
      healthy: false,
      checks: [
        { name: 'amcheck orders', ok: false, detail: 'index broken' },
        { name: 'traffic sessions', ok: true, detail: 'GET /health succeeded' },
      ],
      writesAcknowledged: 10,
      writesLost: 4,
      lostBeforeBackup: 0,
    });
  });
});

// ---------------------------------------------------------------- empty and partial results

describe('empty and partial results', () => {
  test('no cells at all', () => {
    const r = results([], []);
    const m = renderMarkdown(r);
    assert.match(m, /No cells in these results: nothing ran\./);
    const h = renderHtml(r);
    assert.match(h, /No cells in these results: nothing ran\./);
    checkWellFormed(h);
  });

  test('every cell failed or skipped', () => {
    const r = results([cell('A', 'container-crash'), { ...cell('B', 'container-crash'), status: 'skipped', reason: 'not applicable', repeats: [] }], ['A', 'B']);
    const m = renderMarkdown(r);
    assert.match(m, /No tool has figures to rank/);
    assert.match(m, /\| A \| incremental \| \*\*failed\*\*: A broke in container-crash \|/);
    // a scenario that does not apply to a tool is said so, not shown as a skip
    assert.match(m, /\| B \| incremental \| not applicable \|/);
    const skipped = renderMarkdown(results([cell('A', 'container-crash'), { ...cell('B', 'container-crash'), status: 'skipped', reason: 'B is unavailable: b not found on PATH', repeats: [] }], ['A', 'B']));
    assert.match(skipped, /\| B \| incremental \| \*\*skipped\*\*: B is unavailable: b not found on PATH \|/);
    const h = renderHtml(r);
    checkWellFormed(h);
    assert.match(h, /no tool has figures for both axes/);
  });

  test('cells with empty summaries, repeats without integrity, a tool missing from the tool list, fields absent', () => {
    const bare: Cell = { tool: 'ghost', strategy: 'snapshot', volume: 'btrfs', scenario: 'disk-full', status: 'ok', repeats: [{ repeat: 1, seed: 3, status: 'ok', steps: [] }], summary: {} };
    const half = cell('A', 'container-crash', { b: 1, r: 1, rssMiB: 10 });
    delete half.summary.restoreWallSeconds;
    delete half.summary.restorePeakRssBytes;
    const r = results([bare, half], ['A']);
    r.tools.push({ name: 'gone', version: '', label: 'gone', encryption: false, strategy: 'full-copy', unavailable: 'not installed: apt-get install gone' });
    const m = renderMarkdown(r);
    assert.match(m, /\| ghost \(snapshot\) \| snapshot · btrfs \| — \| — \|/);
    assert.match(m, /\*\*unavailable\*\*: not installed/);
    const h = renderHtml(r);
    checkWellFormed(h);
    assert.match(h, /restore: not measured/);
    // a results file from an older or broken runner: missing sections must not crash the report
    const broken = { schema: RESULTS_SCHEMA, version: RESULTS_VERSION, cells: [bare] } as unknown as BenchResults;
    assert.doesNotThrow(() => renderMarkdown(broken));
    assert.doesNotThrow(() => checkWellFormed(renderHtml(broken)));
  });

  test('writeReport writes report.md and report.html and nothing else', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-report-'));
    try {
      const out = path.join(dir, 'nested', 'out');
      const paths = await writeReport(out, fixture());
      assert.deepEqual(paths, { markdown: path.join(out, 'report.md'), html: path.join(out, 'report.html') });
      assert.deepEqual((await fsp.readdir(out)).sort(), ['report.html', 'report.md']);
      assert.equal(await fsp.readFile(paths.markdown, 'utf8'), renderMarkdown(fixture()));
      assert.match(await fsp.readFile(paths.html, 'utf8'), /<\/html>\n$/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------- reading results back

describe('reading a results file', () => {
  test('the fixture reads back from its directory or its path', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-results-'));
    try {
      await fsp.copyFile(FIXTURE, path.join(dir, 'results.json'));
      assert.deepEqual(await readResults(dir), fixture());
      assert.deepEqual(await readResults(path.join(dir, 'results.json')), fixture());
      await assert.rejects(readResults(path.join(dir, 'nope')), (e: unknown) => e instanceof NotFoundError && /^no results at .*nope: give the --out directory/.test(e.message));
      await fsp.rm(path.join(dir, 'results.json'));
      await assert.rejects(readResults(dir), (e: unknown) => e instanceof NotFoundError && e.message.includes(path.join(dir, 'results.json')));
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  test('wrong files get one-line usage errors', () => {
    const err = (text: string, re: RegExp) =>
      assert.throws(
        () => parseResults(text, 'x.json'),
        (e: unknown) => e instanceof UsageError && re.test(e.message) && !e.message.includes('\n'),
      );
    err('{', /^x\.json is not JSON \(/);
    err('[]', /^x\.json is not a meshback bench results file \(its "schema" is missing/);
    err('{"schema":"other"}', /its "schema" is "other", not "meshback-bench-results"/);
    err(JSON.stringify({ schema: RESULTS_SCHEMA, version: 99 }), /holds results version 99; this meshback reads version 1/);
    const ok = JSON.parse(readFileSync(FIXTURE, 'utf8')) as Record<string, unknown>;
    err(JSON.stringify({ ...ok, cells: {} }), /^x\.json is malformed: field "cells" must be a list \(it is an object\); re-run `meshback bench run` or restore the file$/);
    const cells = structuredClone(ok['cells']) as Record<string, unknown>[];
    cells[3]!['status'] = 'great';
    err(JSON.stringify({ ...ok, cells }), /malformed: field "cells\[3\]\.status" must be one of "ok", "partial", "failed", "skipped" \(it is "great"\)/);
    delete cells[3]!['status'];
    cells[3]!['status'] = 'ok';
    cells[4]!['repeats'] = [{}];
    err(JSON.stringify({ ...ok, cells }), /malformed: field "cells\[4\]\.repeats\[0\]\.repeat" is missing \(and \d+ more problems\)/);
    // deeper fields than the report's first look: a wrong type, a bad date, a missing tool name
    const deep = structuredClone(ok) as { cells: { repeats: { steps: Record<string, unknown>[] }[] }[]; startedAt: string; tools: Record<string, unknown>[] };
    deep.cells[0]!.repeats[0]!.steps[0]!['wallSeconds'] = '2.5';
    err(JSON.stringify(deep), /malformed: field "cells\[0\]\.repeats\[0\]\.steps\[0\]\.wallSeconds" must be a number \(it is "2\.5"\);/);
    err(JSON.stringify({ ...ok, startedAt: 'yesterday' }), /malformed: field "startedAt" must be an ISO date/);
    const noName = structuredClone(ok) as { tools: Record<string, unknown>[] };
    delete noName.tools[1]!['name'];
    err(JSON.stringify(noName), /malformed: field "tools\[1\]\.name" is missing;/);
  });
});
