/**
 * bench/fault/report/markdown: the Markdown summary (report.md). Every string taken from the
 * results is escaped for a table cell (pipes, line breaks) and for raw HTML (a `<` is written
 * `\<`, so a tool message cannot become markup in a Markdown viewer).
 */
import type { BenchResults } from '../types.ts';
import {
  APP_COLUMNS,
  APP_INTRO,
  appTable,
  categorise,
  dominanceReason,
  entrantsOf,
  fmtNum,
  listWords,
  METHOD_NOTES,
  robustness,
  robustnessText,
  worstText,
  runFacts,
  scenariosOf,
  scenarioTable,
  TABLE_COLUMNS,
  notApplicable,
} from './model.ts';
import type { AppRow, Categories, Entrant, Robustness, ScenarioView, Standing, TextCell } from './model.ts';

/** Escapes text from the results for Markdown (inline, and inside a table cell). */
export function md(s: string): string {
  return s
    .replace(/\\/g, '\\\\')
    .replace(/[|<*_`]/g, (ch) => `\\${ch}`)
    .replace(/\r?\n/g, ' ');
}

function cellText(c: TextCell): string {
  const t = c.sub !== undefined ? `${c.text} (${c.sub})` : c.text;
  return c.bad === true ? `**${md(t)}**` : md(t);
}

export function renderMarkdown(r: BenchResults): string {
  const entrants = entrantsOf(r);
  const scenarios = scenariosOf(r);
  const L: string[] = [];
  L.push('# meshback bench: fault tolerance of backup tools', '');
  for (const f of runFacts(r)) L.push(`- **${f.label}**: ${md(f.value)}`);
  L.push('');
  toolsSection(r, entrants, L);
  if (entrants.length === 0 || scenarios.length === 0) {
    L.push('No cells in these results: nothing ran.', '');
    return L.join('\n') + '\n';
  }
  categoriesSection(categorise(r, entrants, scenarios), L);
  robustnessSection(robustness(r, entrants, scenarios), scenarios, L);
  appSection(appTable(r, entrants, scenarios), L);
  for (const s of scenarios) scenarioSection(r, s, entrants, L);
  L.push('## How this was measured', '');
  for (const n of METHOD_NOTES) L.push(`- ${n}`);
  return L.join('\n') + '\n';
}

function toolsSection(r: BenchResults, entrants: Entrant[], L: string[]): void {
  const tools = r.tools ?? [];
  if (tools.length === 0) return;
  L.push('## Tools', '');
  L.push('| tool | version | encryption | strategies run | note |', '|---|---|---|---|---|');
  for (const t of tools) {
    const strategies = entrants.filter((e) => e.tool === t.name).map((e) => (e.strategy === t.strategy ? `${e.strategy} (its own)` : e.strategy));
    const version = t.unavailable !== undefined ? `**unavailable**: ${md(t.unavailable)}` : md(t.version ?? '?');
    L.push(`| ${md(t.label ?? t.name)} | ${version} | ${t.encryption ? 'yes' : '**no**'} | ${strategies.length > 0 ? strategies.join(', ') : `none (its own: ${t.strategy})`} | ${md(t.note ?? '')} |`);
  }
  L.push('');
}

const standingName = (s: Standing): string => md(s.entrant.label);

function scoreLine(s: Standing): string {
  const parts: string[] = [];
  if (s.timeScore !== undefined) parts.push(`time ×${s.timeScore.toFixed(2)}`);
  if (s.cpuScore !== undefined) parts.push(`CPU ×${s.cpuScore.toFixed(2)}`);
  if (s.peakRssMiB !== undefined) parts.push(`peak RSS ${fmtNum(s.peakRssMiB)} MiB`);
  return parts.join(', ');
}

function paretoLines(c: Categories, front: Categories['pareto'], L: string[]): void {
  const by = (key: string) => c.standings.find((s) => s.entrant.key === key)!;
  L.push(`  - on the front: ${front.front.map((k) => `**${standingName(by(k))}** (${scoreLine(by(k))})`).join('; ') || 'none'}`);
  for (const [key, dominators] of front.dominated) {
    const d = by(key);
    const reasons = dominators.map((k) => `${standingName(by(k))} (${dominanceReason(d, by(k))})`);
    L.push(`  - ${standingName(d)} is dominated by ${listWords(reasons)}`);
  }
}

function categoriesSection(c: Categories, L: string[]): void {
  L.push('## Categories', '');
  const ranked = c.standings.filter((s) => s.timeScore !== undefined || s.peakRssMiB !== undefined);
  if (ranked.length === 0) {
    L.push('No tool has figures to rank (every cell failed or was skipped).', '');
    return;
  }
  L.push('| tool | time score | CPU score | peak RSS MiB | typical backup + restore wall s | typical CPU s | scenarios ranked | Pareto front |', '|---|---:|---:|---:|---:|---:|---:|---|');
  for (const s of c.standings) {
    const onFront = c.pareto.front.includes(s.entrant.key) ? '**yes**' : c.pareto.dominated.has(s.entrant.key) ? 'dominated' : 'not ranked';
    L.push(
      `| ${standingName(s)} | ${s.timeScore !== undefined ? `×${s.timeScore.toFixed(2)}` : '—'} | ${s.cpuScore !== undefined ? `×${s.cpuScore.toFixed(2)}` : '—'} | ${s.peakRssMiB !== undefined ? fmtNum(s.peakRssMiB) : '—'} | ${s.typicalWallSeconds !== undefined ? fmtNum(s.typicalWallSeconds) : '—'} | ${s.typicalCpuSeconds !== undefined ? fmtNum(s.typicalCpuSeconds) : '—'} | ${s.scenarios.length} | ${onFront} |`,
    );
  }
  L.push('');
  const names = (ss: Standing[]) => (ss.length > 0 ? listWords(ss.map((s) => `**${standingName(s)}**`)) : 'none');
  const f = c.fastest[0];
  L.push(`- **Fastest**: ${names(c.fastest)}${f !== undefined ? ` (time ×${f.timeScore!.toFixed(2)}${f.typicalWallSeconds !== undefined ? `; typically ${fmtNum(f.typicalWallSeconds)} s for a backup and a restore` : ''})` : ''}.`);
  const lc = c.leastCpu[0];
  const lm = c.leastMemory[0];
  L.push(`- **Least resource use**: CPU: ${names(c.leastCpu)}${lc !== undefined ? ` (×${lc.cpuScore!.toFixed(2)})` : ''}; memory: ${names(c.leastMemory)}${lm !== undefined ? ` (peak RSS ${fmtNum(lm.peakRssMiB!)} MiB)` : ''}.`);
  L.push('- **Best balance**: the Pareto front of time against CPU and memory (no other tool is at least as good in all three and better in one):');
  paretoLines(c, c.pareto, L);
  if (c.paretoEncrypted !== undefined) {
    L.push('- **Best balance among the tools that encrypt and deduplicate** (like for like):');
    paretoLines(c, c.paretoEncrypted, L);
  }
  const unranked = c.pareto.unranked.map((k) => c.standings.find((s) => s.entrant.key === k)!);
  if (unranked.length > 0) L.push(`- Not ranked (a figure is missing: every cell failed or was skipped, or a metric was never measured): ${listWords(unranked.map(standingName))}.`);
  const partial = c.standings.filter((s) => s.scenarios.length > 0 && s.scenarios.length < Math.max(...c.standings.map((x) => x.scenarios.length)));
  if (partial.length > 0) L.push(`- Ranked over fewer scenarios than the others: ${listWords(partial.map((s) => `${standingName(s)} (${s.scenarios.length})`))}.`);
  L.push('');
}

function robustnessSection(rb: Robustness, scenarios: ScenarioView[], L: string[]): void {
  L.push('## Integrity and robustness', '');
  L.push(`| tool | ${scenarios.map((s) => md(s.id)).join(' | ')} |`, `|---|${scenarios.map(() => '---').join('|')}|`);
  for (const row of rb.matrix) L.push(`| ${md(row.entrant.label)} | ${row.cells.map((c) => (c === undefined ? '—' : cellText(robustnessText(c)))).join(' | ')} |`);
  L.push('');
  const who = (cs: { entrant: Entrant; detection: { detected: number; of: number } }[]) => listWords(cs.map((c) => `${md(c.entrant.label)}${c.detection.of > 1 ? ` (${c.detection.detected}/${c.detection.of})` : ''}`));
  for (const d of rb.detection) {
    const parts: string[] = [];
    if (d.detected.length > 0) parts.push(`detected by ${who(d.detected)}`);
    if (d.partly.length > 0) parts.push(`sometimes by ${who(d.partly)}`);
    if (d.missed.length > 0) parts.push(`**not detected** by ${who(d.missed)}`);
    L.push(`- **${md(d.scenario.title)}**: ${parts.join('; ')}.`);
    for (const c of d.detected.concat(d.partly)) if (c.messages.length > 0) L.push(`  - ${md(c.entrant.label)} said: “${md(c.messages[0]!)}”`);
  }
  if (rb.silent.length > 0) {
    L.push(
      `- **Restored wrong data without saying so**: ${listWords(
        rb.silent.map((c) => `${md(c.entrant.label)} in ${md(c.scenario)} (${c.silent.length} of ${c.judged} repeat${c.judged === 1 ? '' : 's'}, up to ${worstText(c)})`),
      )}.`,
    );
  } else {
    L.push('- No tool restored wrong data without saying so: every incomplete recovery was reported by the tool.');
  }
  L.push('');
}

/** The application-level rows (app-* scenarios); nothing when the run has none. */
export function appSection(rows: AppRow[], L: string[]): void {
  if (rows.length === 0) return;
  L.push('## Application-level recovery', '');
  L.push(md(APP_INTRO), '');
  L.push(`| ${APP_COLUMNS.join(' | ')} |`, `|---|---|---|${APP_COLUMNS.slice(3).map((_, i) => (i === 0 || i === APP_COLUMNS.length - 4 ? '---' : '---:')).join('|')}|`);
  for (const row of rows) {
    const name = `${md(row.entrant.label)}${row.tag !== undefined ? ` (partial: ${md(row.tag)})` : ''}`;
    const head = `| ${name} | ${md(row.entrant.strategy)} | ${md(row.scenario.id)} |`;
    if (row.figures === undefined) {
      L.push(`${head} **${row.status}**: ${md(row.reason ?? '')} |${' — |'.repeat(APP_COLUMNS.length - 4)}`);
      continue;
    }
    L.push(`${head} ${row.figures.map(cellText).join(' | ')} |`);
  }
  L.push('');
}

function scenarioSection(r: BenchResults, s: ScenarioView, entrants: Entrant[], L: string[]): void {
  const t = scenarioTable(r, s, entrants);
  L.push(`## ${md(s.title)} (\`${s.id}\`)`, '');
  if (s.description !== '') L.push(md(s.description), '');
  L.push(`| ${TABLE_COLUMNS.join(' | ')} |`, `|---|---|${TABLE_COLUMNS.slice(2).map(() => '---:').join('|')}|`);
  const blanks = TABLE_COLUMNS.length - 3;
  for (const row of t.rows) {
    const c = (r.cells ?? []).find((x) => x.tool === row.entrant.tool && x.strategy === row.entrant.strategy && x.scenario === s.id);
    const name = `${md(row.entrant.label)}${row.tag !== undefined ? ` (partial: ${md(row.tag)})` : ''}${row.notes.length > 0 ? ` [${row.notes.join(',')}]` : ''}`;
    const strategy = md(c !== undefined && c.volume !== 'dir' ? `${row.entrant.strategy} · ${c.volume}` : row.entrant.strategy);
    if (row.figures === undefined) {
      // a scenario that does not apply to the tool (s3-outage and borg) is not a skip to explain
      const why = notApplicable(row.reason) ? md(row.reason ?? '') : `**${row.status}**: ${md(row.reason ?? '')}`;
      L.push(`| ${name} | ${strategy} | ${why} |${' — |'.repeat(blanks)}`);
      continue;
    }
    const figs = row.figures.map(cellText);
    L.push(`| ${name} | ${strategy} | ${figs.join(' | ')} |`);
  }
  L.push('');
  if (t.footnotes.length > 0) {
    for (let i = 0; i < t.footnotes.length; i++) L.push(`- [${i + 1}] ${md(t.footnotes[i]!)}`);
    L.push('');
  }
}
