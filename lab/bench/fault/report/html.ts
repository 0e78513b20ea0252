/**
 * bench/fault/report/html: the self-contained HTML page (report.html). One file, no script, no
 * external stylesheet, font or image: inline CSS and inline SVG charts (./svg.ts), so it opens
 * offline and can be attached to a ticket. Every string from the results goes through esc().
 */
import type { BenchResults, Cell, Spread } from '../types.ts';
import {
  APP_COLUMNS,
  APP_INTRO,
  appTable,
  categorise,
  isAppScenario,
  cellOf,
  dominanceReason,
  entrantsOf,
  fmtInt,
  fmtNum,
  listWords,
  median,
  METHOD_NOTES,
  MiB,
  okRepeats,
  robustness,
  robustnessCell,
  robustnessText,
  worstText,
  runFacts,
  scenariosOf,
  scenarioTable,
  TABLE_COLUMNS,
  notApplicable,
} from './model.ts';
import type { AppRow, Categories, Entrant, Robustness, ScenarioView, Standing, TextCell } from './model.ts';
import { paretoFront } from './pareto.ts';
import { barChart, COLORS, esc, scatterChart, stackChart } from './svg.ts';
import type { Bar, BarRow, Series, StackRow } from './svg.ts';

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #222; background: #fafafa; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 40px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 8px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-top: 8px; border-top: 2px solid #e4e4e4; }
h3 { font-size: 16px; margin: 22px 0 6px; }
p, li { max-width: 1100px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0 14px; }
dl.facts dt { font-weight: 600; color: #555; }
dl.facts dd { margin: 0; }
nav { margin: 8px 0 4px; font-size: 13px; }
nav a { margin-right: 14px; }
a { color: #0a5c8f; }
.tablewrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 8px; }
th, td { border: 1px solid #d6d6d6; padding: 3px 6px; vertical-align: top; }
th { background: #f0f0f0; text-align: left; font-weight: 600; }
th.grp { text-align: center; }
table.detail { font-size: 12px; }
table.detail th { font-size: 11.5px; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td .sub { font-size: 10.5px; color: #666; font-weight: 400; white-space: nowrap; }
sup.fnref { font-size: 9.5px; margin-left: 2px; }
td.bad { background: #fde3d8; font-weight: 600; }
td.good { background: #e3f4ec; }
tr.failed td, tr.skipped td { color: #666; font-style: italic; }
td.reason { white-space: normal; }
tr.front td:first-child { font-weight: 700; }
.tag { display: inline-block; font-size: 11px; padding: 0 5px; border-radius: 3px; background: #eee; color: #444; font-style: normal; margin-left: 4px; }
.tag.front { background: #0072B2; color: #fff; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 12px; margin: 10px 0; }
.card { border: 1px solid #dcdcdc; border-radius: 6px; padding: 10px 12px; background: #fcfcfc; }
.card h3 { margin: 0 0 4px; font-size: 14px; color: #555; text-transform: uppercase; letter-spacing: .04em; }
.card .who { font-size: 17px; font-weight: 700; }
.card .why { font-size: 12.5px; color: #444; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 16px 20px; align-items: start; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(500px, 1fr)); gap: 16px 20px; align-items: start; }
figure { margin: 0; }
figcaption { font-weight: 600; font-size: 13.5px; margin: 0 0 2px; }
figcaption .sub { font-weight: 400; color: #666; }
svg.chart { max-width: 100%; height: auto; display: block; font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #222; }
svg.chart .tick { fill: #555; font-size: 10px; }
svg.chart .axis { fill: #333; font-size: 11px; font-weight: 600; }
svg.chart .val { fill: #222; font-size: 10px; }
svg.chart .note { fill: #777; font-style: italic; }
svg.chart .note.small { font-size: 9px; }
svg.chart .mark { fill: #8a5a00; font-size: 10px; font-weight: 600; }
svg.chart .flag { fill: #b33c00; font-size: 10.5px; font-weight: 700; }
svg.chart .strong { font-weight: 700; }
svg.chart .muted { fill: #666; }
ol.fn { font-size: 12.5px; color: #333; padding-left: 26px; margin: 4px 0 12px; }
ol.fn li { margin: 1px 0; word-break: break-word; }
.muted { color: #666; }
ul.dom { margin: 4px 0 8px; font-size: 13px; }
footer { margin-top: 30px; font-size: 12px; color: #666; }
@media print { body { background: #fff; } main { max-width: none; } h2 { break-after: avoid; } figure, table { break-inside: avoid; } }
`;

const SERIES_OPS: readonly Series[] = [
  { name: 'backup', color: COLORS.blue },
  { name: 'restore', color: COLORS.orange },
];
const SERIES_INTEGRITY: readonly Series[] = [
  { name: 'matching', color: COLORS.green },
  { name: 'damaged', color: COLORS.vermillion },
  { name: 'missing', color: COLORS.grey },
];
const SERIES_RPO: readonly Series[] = [
  { name: 'RPO s (data at risk)', color: COLORS.purple },
  { name: 'RTO s (fault to verified restore)', color: COLORS.sky },
];

function tdText(c: TextCell, num = true): string {
  const cls = [num ? 'num' : '', c.bad === true ? 'bad' : c.good === true ? 'good' : ''].filter((x) => x !== '').join(' ');
  const sub = c.sub !== undefined ? c.sub.split('; ').map((x) => `<br><span class="sub">${esc(x)}</span>`).join('') : '';
  return `<td${cls !== '' ? ` class="${cls}"` : ''}>${esc(c.text)}${sub}</td>`;
}

export function renderHtml(r: BenchResults): string {
  const entrants = entrantsOf(r);
  const scenarios = scenariosOf(r);
  const B: string[] = [];
  const date = (r.startedAt ?? '').slice(0, 10);
  B.push('<!doctype html>', '<html lang="en">', '<head>', '<meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">');
  B.push(`<title>meshback bench${date !== '' ? ` ${esc(date)}` : ''}: fault tolerance of backup tools</title>`, `<style>${CSS}</style>`, '</head>', '<body>', '<main>');
  B.push('<h1>meshback bench: fault tolerance of backup tools</h1>');
  B.push('<dl class="facts">');
  for (const f of runFacts(r)) B.push(`<dt>${esc(f.label)}</dt><dd>${esc(f.value)}</dd>`);
  B.push('</dl>');
  const ran = entrants.length > 0 && scenarios.length > 0;
  const app = ran ? appTable(r, entrants, scenarios) : [];
  const links: [string, string][] = [['tools', 'Tools']];
  if (ran) {
    links.push(['categories', 'Categories'], ['robustness', 'Integrity and robustness']);
    if (app.length > 0) links.push(['app', 'Application-level recovery']);
    links.push(['time', 'Time'], ['resources', 'Resources'], ['integrity', 'Integrity charts'], ['rpo-rto', 'RPO / RTO']);
    for (const s of scenarios) links.push([`scenario-${s.id}`, s.title]);
    links.push(['method', 'How this was measured']);
  }
  B.push(`<nav>${links.map(([id, t]) => `<a href="#${esc(id)}">${esc(t)}</a>`).join('')}</nav>`);
  toolsSection(r, entrants, B);
  if (!ran) {
    B.push('<p>No cells in these results: nothing ran.</p>');
  } else {
    const cats = categorise(r, entrants, scenarios);
    categoriesSection(cats, B);
    robustnessSection(robustness(r, entrants, scenarios), scenarios, B);
    appSection(app, B);
    timeSection(r, entrants, scenarios, B);
    resourcesSection(r, entrants, scenarios, B);
    integritySection(r, entrants, scenarios, B);
    rpoSection(r, entrants, scenarios, B);
    B.push('<h2 id="scenarios">Scenarios in detail</h2>');
    for (const s of scenarios) scenarioSection(r, s, entrants, B);
    B.push('<h2 id="method">How this was measured</h2><ul>');
    for (const n of METHOD_NOTES) B.push(`<li>${esc(n)}</li>`);
    B.push('</ul>');
  }
  B.push(`<footer>Rendered by meshback ${esc(r.meshbackVersion ?? '?')} from ${esc(r.schema ?? '?')} version ${esc(String(r.version ?? '?'))}; re-render with <code>meshback bench report DIR</code>.</footer>`);
  B.push('</main>', '</body>', '</html>');
  return B.join('\n') + '\n';
}

function toolsSection(r: BenchResults, entrants: Entrant[], B: string[]): void {
  const tools = r.tools ?? [];
  B.push('<h2 id="tools">Tools</h2>');
  if (tools.length === 0) {
    B.push('<p class="muted">No tools listed.</p>');
    return;
  }
  B.push('<div class="tablewrap"><table><thead><tr><th>tool</th><th>version</th><th>encryption</th><th>strategies run</th><th>note</th></tr></thead><tbody>');
  for (const t of tools) {
    const strategies = entrants.filter((e) => e.tool === t.name).map((e) => (e.strategy === t.strategy ? `${e.strategy} (its own)` : e.strategy));
    const version = t.unavailable !== undefined ? `<td class="bad">unavailable: ${esc(t.unavailable)}</td>` : `<td>${esc(t.version ?? '?')}</td>`;
    B.push(
      `<tr><td>${esc(t.label ?? t.name)}</td>${version}<td class="${t.encryption ? 'good' : 'bad'}">${t.encryption ? 'yes' : 'no'}</td><td>${esc(strategies.length > 0 ? strategies.join(', ') : `none (its own: ${t.strategy})`)}</td><td>${esc(t.note ?? '')}</td></tr>`,
    );
  }
  B.push('</tbody></table></div>');
}

// ---------------------------------------------------------------- categories

function card(title: string, who: string, why: string): string {
  return `<div class="card"><h3>${esc(title)}</h3><div class="who">${esc(who)}</div><div class="why">${esc(why)}</div></div>`;
}

function scoreWhy(s: Standing): string {
  const p: string[] = [];
  if (s.timeScore !== undefined) p.push(`time ×${s.timeScore.toFixed(2)}`);
  if (s.cpuScore !== undefined) p.push(`CPU ×${s.cpuScore.toFixed(2)}`);
  if (s.peakRssMiB !== undefined) p.push(`peak RSS ${fmtNum(s.peakRssMiB)} MiB`);
  return p.join(', ');
}

function dominanceList(c: Categories, front: Categories['pareto']): string {
  const by = (key: string) => c.standings.find((s) => s.entrant.key === key)!;
  const items: string[] = [];
  for (const [key, dominators] of front.dominated) {
    const d = by(key);
    items.push(`<li><b>${esc(d.entrant.label)}</b> is dominated by ${listWords(dominators.map((k) => `${esc(by(k).entrant.label)} <span class="muted">(${esc(dominanceReason(d, by(k)))})</span>`))}</li>`);
  }
  return items.length > 0 ? `<ul class="dom">${items.join('')}</ul>` : '';
}

function categoriesSection(c: Categories, B: string[]): void {
  B.push('<h2 id="categories">Categories</h2>');
  const names = (ss: Standing[]) => (ss.length > 0 ? listWords(ss.map((s) => s.entrant.label)) : 'none');
  const f = c.fastest[0];
  const lc = c.leastCpu[0];
  const lm = c.leastMemory[0];
  const frontNames = c.pareto.front.map((k) => c.standings.find((s) => s.entrant.key === k)!.entrant.label);
  B.push('<div class="cards">');
  B.push(card('Fastest', names(c.fastest), f !== undefined ? `time ×${f.timeScore!.toFixed(2)}${f.typicalWallSeconds !== undefined ? `; typically ${fmtNum(f.typicalWallSeconds)} s for a backup and a restore` : ''}` : 'no figures'));
  B.push(card('Least CPU', names(c.leastCpu), lc !== undefined ? `CPU ×${lc.cpuScore!.toFixed(2)}${lc.typicalCpuSeconds !== undefined ? `; typically ${fmtNum(lc.typicalCpuSeconds)} CPU s for a backup and a restore` : ''}` : 'no figures'));
  B.push(card('Least memory', names(c.leastMemory), lm !== undefined ? `peak RSS ${fmtNum(lm.peakRssMiB!)} MiB at most` : 'no figures'));
  B.push(card('Best balance (Pareto front)', frontNames.length > 0 ? listWords(frontNames) : 'none', 'no other tool is at least as good in time, CPU and memory and better in one'));
  if (c.paretoEncrypted !== undefined) {
    const encNames = c.paretoEncrypted.front.map((k) => c.standings.find((s) => s.entrant.key === k)!.entrant.label);
    B.push(card('Best balance, encrypting and deduplicating', encNames.length > 0 ? listWords(encNames) : 'none', 'the same front among the tools with encryption and deduplication only'));
  }
  B.push('</div>');
  B.push('<div class="tablewrap"><table><thead><tr><th>tool</th><th>time score</th><th>CPU score</th><th>peak RSS MiB</th><th>typical backup + restore wall s</th><th>typical CPU s</th><th>scenarios ranked</th><th>Pareto front</th></tr></thead><tbody>');
  for (const s of c.standings) {
    const on = c.pareto.front.includes(s.entrant.key);
    const status = on ? '<span class="tag front">on the front</span>' : c.pareto.dominated.has(s.entrant.key) ? 'dominated' : 'not ranked';
    const num = (x: string | undefined) => `<td class="num">${x !== undefined ? esc(x) : '—'}</td>`;
    B.push(
      `<tr${on ? ' class="front"' : ''}><td>${esc(s.entrant.label)}</td>${num(s.timeScore !== undefined ? `×${s.timeScore.toFixed(2)}` : undefined)}${num(s.cpuScore !== undefined ? `×${s.cpuScore.toFixed(2)}` : undefined)}${num(s.peakRssMiB !== undefined ? fmtNum(s.peakRssMiB) : undefined)}${num(s.typicalWallSeconds !== undefined ? fmtNum(s.typicalWallSeconds) : undefined)}${num(s.typicalCpuSeconds !== undefined ? fmtNum(s.typicalCpuSeconds) : undefined)}${num(String(s.scenarios.length))}<td>${status}</td></tr>`,
    );
  }
  B.push('</tbody></table></div>');
  B.push('<p class="muted">Scores: geometric mean over every scenario and operation a tool ran of its median divided by the best median there (×1.00 = best everywhere); peak RSS: the largest median of any backup or restore.</p>');
  // scatter plots: time against memory and time against CPU, the 3-D front highlighted, each plane's own front dashed
  const placed = c.standings.filter((s) => s.timeScore !== undefined);
  const plane = (y: (s: Standing) => number | undefined) =>
    paretoFront(placed.map((s) => ({ id: s.entrant.label, values: [s.timeScore, y(s)] }))).front;
  const points = (y: (s: Standing) => number | undefined, yName: string, yFmt: (x: number) => string) =>
    placed
      .filter((s) => y(s) !== undefined)
      .map((s) => ({ label: s.entrant.label, x: s.timeScore!, y: y(s)!, front: c.pareto.front.includes(s.entrant.key), tip: `${s.entrant.label}: time ×${s.timeScore!.toFixed(2)}, ${yName} ${yFmt(y(s)!)}${c.pareto.front.includes(s.entrant.key) ? ' (on the Pareto front)' : ''}` }));
  const missing = c.standings.filter((s) => s.timeScore === undefined).map((s) => s.entrant.label);
  B.push('<div class="grid2">');
  B.push(
    `<figure><figcaption>Time against memory <span class="sub">(lower left is better)</span></figcaption>${scatterChart({
      id: 'scatter-mem',
      title: 'Time score against peak RSS per tool, Pareto front highlighted',
      xLabel: 'time score (× the fastest; geometric mean)',
      yLabel: 'peak RSS MiB',
      points: points((s) => s.peakRssMiB, 'peak RSS', (x) => `${fmtNum(x)} MiB`),
      front2d: plane((s) => s.peakRssMiB),
      missing,
    })}</figure>`,
  );
  B.push(
    `<figure><figcaption>Time against CPU <span class="sub">(lower left is better)</span></figcaption>${scatterChart({
      id: 'scatter-cpu',
      title: 'Time score against CPU score per tool, Pareto front highlighted',
      xLabel: 'time score (× the fastest; geometric mean)',
      yLabel: 'CPU score (× the least CPU)',
      points: points((s) => s.cpuScore, 'CPU', (x) => `×${x.toFixed(2)}`),
      front2d: plane((s) => s.cpuScore),
      yFromZero: true,
      missing,
    })}</figure>`,
  );
  B.push('</div>');
  B.push('<h3>Why the others are off the front</h3>');
  B.push(dominanceList(c, c.pareto) || '<p>Every ranked tool is on the front.</p>');
  if (c.paretoEncrypted !== undefined) {
    B.push('<h3>Among the tools that encrypt and deduplicate</h3>');
    const enc = c.paretoEncrypted.front.map((k) => c.standings.find((s) => s.entrant.key === k)!);
    B.push(`<p>On the front: ${enc.map((s) => `<b>${esc(s.entrant.label)}</b> <span class="muted">(${esc(scoreWhy(s))})</span>`).join('; ') || 'none'}.</p>`);
    B.push(dominanceList(c, c.paretoEncrypted));
  }
  const unranked = c.pareto.unranked.map((k) => c.standings.find((s) => s.entrant.key === k)!.entrant.label);
  if (unranked.length > 0) B.push(`<p class="muted">Not ranked (a figure is missing: every cell failed or was skipped, or a metric was never measured): ${esc(listWords(unranked))}.</p>`);
}

// ---------------------------------------------------------------- robustness

function robustnessSection(rb: Robustness, scenarios: ScenarioView[], B: string[]): void {
  B.push('<h2 id="robustness">Integrity and robustness</h2>');
  B.push(`<div class="tablewrap"><table><thead><tr><th>tool</th>${scenarios.map((s) => `<th>${esc(s.title)}</th>`).join('')}</tr></thead><tbody>`);
  for (const row of rb.matrix) {
    B.push(`<tr><td>${esc(row.entrant.label)}</td>${row.cells.map((c) => (c === undefined ? '<td>—</td>' : tdText(robustnessText(c), false))).join('')}</tr>`);
  }
  B.push('</tbody></table></div>');
  const who = (cs: { entrant: Entrant; detection: { detected: number; of: number } }[]) => listWords(cs.map((c) => `${esc(c.entrant.label)}${c.detection.of > 1 ? ` (${c.detection.detected}/${c.detection.of})` : ''}`));
  B.push('<ul>');
  for (const d of rb.detection) {
    const parts: string[] = [];
    if (d.detected.length > 0) parts.push(`detected by ${who(d.detected)}`);
    if (d.partly.length > 0) parts.push(`sometimes by ${who(d.partly)}`);
    if (d.missed.length > 0) parts.push(`<b>not detected</b> by ${who(d.missed)}`);
    const said = d.detected.concat(d.partly).filter((c) => c.messages.length > 0);
    B.push(`<li><b>${esc(d.scenario.title)}</b>: ${parts.join('; ')}.${said.length > 0 ? `<ul>${said.map((c) => `<li>${esc(c.entrant.label)} said: <q>${esc(c.messages[0]!)}</q></li>`).join('')}</ul>` : ''}</li>`);
  }
  if (rb.silent.length > 0) {
    B.push(
      `<li><b>Restored wrong data without saying so</b>: ${listWords(
        rb.silent.map((c) => `${esc(c.entrant.label)} in ${esc(c.scenario)} (${c.silent.length} of ${c.judged} repeat${c.judged === 1 ? '' : 's'}, up to ${worstText(c)})`),
      )}.</li>`,
    );
  } else {
    B.push('<li>No tool restored wrong data without saying so: every incomplete recovery was reported by the tool.</li>');
  }
  B.push('</ul>');
}

// ---------------------------------------------------------------- application level

const SERIES_APP: readonly Series[] = [
  { name: 'RTO s (fault to first request served after recovery)', color: COLORS.sky },
  { name: 'RPO s (fault minus last surviving write)', color: COLORS.purple },
];

/** The application-level rows (app-* scenarios) and, per scenario, a chart of RTO and RPO; nothing when the run has none. */
function appSection(rows: AppRow[], B: string[]): void {
  if (rows.length === 0) return;
  B.push('<h2 id="app">Application-level recovery</h2>');
  B.push(`<p class="muted">${esc(APP_INTRO)}</p>`);
  B.push(`<div class="tablewrap"><table><thead><tr>${APP_COLUMNS.map((c) => `<th>${esc(c)}</th>`).join('')}</tr></thead><tbody>`);
  for (const row of rows) {
    const head = `<td>${esc(row.entrant.label)}${row.tag !== undefined ? ` <span class="tag">partial: ${esc(row.tag)}</span>` : ''}</td><td>${esc(row.entrant.strategy)}</td><td>${esc(row.scenario.id)}</td>`;
    if (row.figures === undefined) {
      B.push(`<tr class="${esc(row.status)}">${head}<td class="reason" colspan="${APP_COLUMNS.length - 3}"><b>${esc(row.status)}</b>: ${esc(row.reason ?? '')}</td></tr>`);
      continue;
    }
    const [healthy, writes, before, rpo, rto, checks] = row.figures;
    B.push(`<tr class="${esc(row.status)}">${head}${tdText(healthy!, false)}${tdText(writes!)}${tdText(before!)}${tdText(rpo!)}${tdText(rto!)}${tdText(checks!, false)}</tr>`);
  }
  B.push('</tbody></table></div>');
  const figs: string[] = [];
  for (const s of [...new Map(rows.map((x) => [x.scenario.id, x.scenario])).values()]) {
    const barRows: BarRow[] = rows
      .filter((x) => x.scenario.id === s.id)
      .map((x) => {
        if (x.figures === undefined) return { label: x.entrant.label, bars: [], note: `${x.status}: ${x.reason ?? ''}` };
        const healthy = x.figures[0]!;
        const b = [bar(x.cell.summary?.rtoSeconds), bar(x.cell.summary?.rpoSeconds)].map((y, i) => (y !== undefined ? { ...y, tip: `${x.entrant.label}, ${SERIES_APP[i]!.name}: ${y.tip ?? y.text ?? ''}` } : undefined));
        return { label: x.entrant.label, bars: b, note: 'RTO and RPO n.a.', mark: healthy.bad === true ? `healthy: ${healthy.text}` : x.tag !== undefined ? `partial ${x.tag}` : undefined };
      });
    figs.push(figure(s.title, '', barChart({ id: `app-${s.id}`, title: `${s.title}: RTO and RPO per tool, at application level`, axisLabel: 'seconds (median)', series: SERIES_APP, rows: barRows, format: fmtNum, missingText: 'n.a.' })));
  }
  B.push(`<div class="grid">${figs.join('')}</div>`);
}

// ---------------------------------------------------------------- charts per scenario

const bar = (s: Spread | undefined, scale = 1, unit = 's'): Bar | undefined => {
  if (s === undefined || !Number.isFinite(s.median)) return undefined;
  const f = (x: number) => fmtNum(x / scale);
  return { value: s.median / scale, min: s.n > 1 ? s.min / scale : undefined, max: s.n > 1 ? s.max / scale : undefined, text: f(s.median), tip: `${f(s.median)} ${unit}${s.n > 1 ? ` (min ${f(s.min)}, max ${f(s.max)}; ${s.n} repeats)` : ''}` };
};

function rowsFor(r: BenchResults, s: ScenarioView, entrants: Entrant[], series: readonly Series[], bars: (c: Cell) => (Bar | undefined)[], emptyNote = 'not measured'): BarRow[] {
  const rows: BarRow[] = [];
  for (const e of entrants) {
    const c = cellOf(r, e, s.id);
    if (c === undefined) continue;
    if (c.status === 'failed' || c.status === 'skipped') {
      rows.push({ label: e.label, bars: [], note: `${c.status}: ${c.reason ?? (c.repeats ?? []).find((x) => x.reason)?.reason ?? 'no reason recorded'}` });
      continue;
    }
    const b = bars(c).map((x, i) => (x !== undefined ? { ...x, tip: `${e.label}, ${series[i]?.name ?? ''}: ${x.tip ?? x.text ?? fmtNum(x.value)}` } : undefined));
    rows.push({ label: e.label, bars: b, note: emptyNote, mark: c.status === 'partial' ? `partial ${okRepeats(c).length}/${(c.repeats ?? []).length}` : undefined });
  }
  return rows;
}

function chartGrid(title: string, id: string, intro: string, figures: string[], B: string[]): void {
  B.push(`<h2 id="${esc(id)}">${esc(title)}</h2>`);
  if (intro !== '') B.push(`<p class="muted">${esc(intro)}</p>`);
  B.push(figures.length > 0 ? `<div class="grid">${figures.join('')}</div>` : '<p class="muted">Nothing measured.</p>');
}

const figure = (caption: string, sub: string, svg: string): string => `<figure><figcaption>${esc(caption)}${sub !== '' ? ` <span class="sub">${esc(sub)}</span>` : ''}</figcaption>${svg}</figure>`;

function timeSection(r: BenchResults, entrants: Entrant[], scenarios: ScenarioView[], B: string[]): void {
  const figs = scenarios.map((s) => {
    const rows = rowsFor(r, s, entrants, SERIES_OPS, (c) => [bar(c.summary?.backupWallSeconds), bar(c.summary?.restoreWallSeconds)]);
    return figure(s.title, '', barChart({ id: `time-${s.id}`, title: `${s.title}: backup and restore wall time per tool`, axisLabel: 'wall seconds (median; whiskers min–max)', series: SERIES_OPS, rows, format: fmtNum }));
  });
  chartGrid('Time per operation', 'time', 'Median wall time of the backup and the restore of each tool in each scenario; whiskers span the repeats (min–max).', figs, B);
}

function resourcesSection(r: BenchResults, entrants: Entrant[], scenarios: ScenarioView[], B: string[]): void {
  const figs: string[] = [];
  for (const s of scenarios) {
    const cpu = rowsFor(r, s, entrants, SERIES_OPS, (c) => [bar(c.summary?.backupCpuSeconds, 1, 'CPU s'), bar(c.summary?.restoreCpuSeconds, 1, 'CPU s')]);
    figs.push(figure(s.title, 'CPU', barChart({ id: `cpu-${s.id}`, title: `${s.title}: CPU seconds of backup and restore per tool`, axisLabel: 'CPU seconds, user + system (median)', series: SERIES_OPS, rows: cpu, format: fmtNum })));
    const rss = rowsFor(r, s, entrants, SERIES_OPS, (c) => [bar(c.summary?.backupPeakRssBytes, MiB, 'MiB'), bar(c.summary?.restorePeakRssBytes, MiB, 'MiB')]);
    figs.push(figure(s.title, 'memory', barChart({ id: `rss-${s.id}`, title: `${s.title}: peak RSS of backup and restore per tool`, axisLabel: 'peak RSS MiB (median)', series: SERIES_OPS, rows: rss, format: fmtNum })));
  }
  chartGrid('Resources', 'resources', 'CPU seconds (user + system of the tool and its children) and peak resident memory (largest single process) of the backup and the restore, per scenario.', figs, B);
}

function integritySection(r: BenchResults, entrants: Entrant[], scenarios: ScenarioView[], B: string[]): void {
  const figs = scenarios.map((s) => {
    const rows = entrants.flatMap((e): StackRow[] => {
      const c = cellOf(r, e, s.id);
      if (c === undefined) return [];
      if (c.status === 'failed' || c.status === 'skipped') return [{ label: e.label, note: `${c.status}: ${c.reason ?? 'no reason recorded'}` }];
      const reps = okRepeats(c).filter((x) => x.integrity !== undefined);
      if (reps.length === 0) return [{ label: e.label, note: 'no integrity verdict' }];
      const med = (f: (x: (typeof reps)[number]) => number) => median(reps.map(f)) ?? 0;
      const files = med((x) => x.integrity!.files);
      const m = med((x) => x.integrity!.matching);
      const d = med((x) => x.integrity!.damaged);
      const mi = med((x) => x.integrity!.missing);
      const rc = robustnessCell(c, e);
      const det = rc.detection.rate;
      return [
        {
          label: e.label,
          segments: [m, d, mi],
          total: Math.max(files, m + d + mi),
          text: `${fmtInt(m)}/${fmtInt(d)}/${fmtInt(mi)} of ${fmtInt(files)}${det !== undefined ? (det >= 1 ? ' · detected' : det <= 0 ? ' · not detected' : ' · partly detected') : ''}`,
          flag: rc.silent.length > 0 ? 'silent!' : undefined,
        },
      ];
    });
    return figure(
      s.title,
      '',
      stackChart({ id: `integrity-${s.id}`, title: `${s.title}: files after recovery, matching, damaged and missing, per tool`, axisLabel: 'share of the reference files (median repeat)', series: SERIES_INTEGRITY, rows }),
    );
  });
  chartGrid('Integrity after recovery', 'integrity', 'Files after recovery compared by path, type, size and SHA-256 with the reference: matching, damaged, missing (text: matching/damaged/missing of the reference files; whether the tool detected the fault; "silent!" when it restored wrong data and said nothing).', figs, B);
}

function rpoSection(r: BenchResults, entrants: Entrant[], scenarios: ScenarioView[], B: string[]): void {
  const figs: string[] = [];
  // the application-level scenarios have their own chart (appSection), with their own RPO and RTO
  for (const s of scenarios.filter((x) => !isAppScenario(r, x.id))) {
    const rows = rowsFor(
      r,
      s,
      entrants,
      SERIES_RPO,
      (c) => {
        const rpo = bar(c.summary?.rpoSeconds);
        const writes = median(okRepeats(c).flatMap((x) => (x.rpo !== undefined ? [x.rpo.writesLost] : [])));
        if (rpo !== undefined && writes !== undefined) rpo.text = `${rpo.text} · ${fmtInt(writes)} writes lost`;
        return [rpo, bar(c.summary?.rtoSeconds)];
      },
      'RPO and RTO n.a.',
    );
    if (!rows.some((x) => x.bars.some((b) => b !== undefined))) continue;
    figs.push(figure(s.title, '', barChart({ id: `rpo-${s.id}`, title: `${s.title}: RPO and RTO per tool`, axisLabel: 'seconds (median; whiskers min–max)', series: SERIES_RPO, rows, format: fmtNum, missingText: 'n.a.' })));
  }
  chartGrid('RPO and RTO', 'rpo-rto', 'RPO: seconds from the start of the last good backup to the fault (and the writes lost); RTO: seconds from the fault to the end of a verified recovery.', figs, B);
}

// ---------------------------------------------------------------- per-scenario tables

function scenarioSection(r: BenchResults, s: ScenarioView, entrants: Entrant[], B: string[]): void {
  const t = scenarioTable(r, s, entrants);
  const fnId = (i: number) => `fn-${s.id}-${i}`;
  B.push(`<h3 id="scenario-${esc(s.id)}">${esc(s.title)} <code class="muted">${esc(s.id)}</code></h3>`);
  if (s.description !== '') B.push(`<p>${esc(s.description)}</p>`);
  B.push(
    '<div class="tablewrap"><table class="detail"><thead>' +
      '<tr><th rowspan="2">tool</th><th rowspan="2">strategy</th><th class="grp" colspan="3">backup</th><th class="grp" colspan="3">restore</th>' +
      '<th rowspan="2">stored MiB</th><th rowspan="2">files matching / damaged / missing</th><th rowspan="2">corruption detected</th><th rowspan="2">RPO s (writes, bytes lost)</th><th rowspan="2">RTO s</th></tr>' +
      '<tr><th>wall s</th><th>CPU s</th><th>peak RSS MiB</th><th>wall s</th><th>CPU s</th><th>peak RSS MiB</th></tr></thead><tbody>',
  );
  for (const row of t.rows) {
    const c = cellOf(r, row.entrant, s.id);
    const refs = row.notes.length > 0 ? `<sup class="fnref">${row.notes.map((n) => `<a href="#${fnId(n)}">${n}</a>`).join(',')}</sup>` : '';
    const name = `<td>${esc(row.entrant.label)}${refs}${row.tag !== undefined ? ` <span class="tag">partial: ${esc(row.tag)}</span>` : ''}</td><td>${esc(c !== undefined && c.volume !== 'dir' ? `${row.entrant.strategy} · ${c.volume}` : row.entrant.strategy)}</td>`;
    if (row.figures === undefined) {
      const why = notApplicable(row.reason) ? esc(row.reason ?? '') : `<b>${esc(row.status)}</b>: ${esc(row.reason ?? '')}`;
      B.push(`<tr class="${esc(row.status)}">${name}<td class="reason" colspan="${TABLE_COLUMNS.length - 2}">${why}</td></tr>`);
      continue;
    }
    const figs = row.figures.map((f) => tdText(f));
    B.push(`<tr class="${esc(row.status)}">${name}${figs.join('')}</tr>`);
  }
  B.push('</tbody></table></div>');
  if (t.footnotes.length > 0) B.push(`<ol class="fn">${t.footnotes.map((f, i) => `<li id="${fnId(i + 1)}">${esc(f)}</li>`).join('')}</ol>`);
}
