/**
 * bench/fault/report: renders BenchResults (results.json) as report.md, a Markdown summary, and
 * report.html, one self-contained page with inline SVG charts (no script, no external resource).
 *
 *   model.ts     what the report says: entrants, per-scenario tables, categories, robustness
 *   pareto.ts    the Pareto front (lower is better in every coordinate)
 *   markdown.ts  report.md
 *   svg.ts       bar, stacked-bar and scatter charts as SVG strings
 *   html.ts      report.html
 *   results.ts   reading a saved results.json back (identity, version and shape checked)
 *
 * Both renderings are pure functions of the results file, so `meshback bench report DIR`
 * re-renders them from a saved results.json. The schema is documented in
 * docs/bench-results-schema.md.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { BenchResults } from '../types.ts';
import { renderHtml } from './html.ts';
import { renderMarkdown } from './markdown.ts';

export { renderHtml } from './html.ts';
export { renderMarkdown } from './markdown.ts';
export { categorise, robustness, standings } from './model.ts';
export type { Categories, Robustness, Standing } from './model.ts';
export { dominates, paretoFront } from './pareto.ts';
export { parseResults, readResults } from './results.ts';
export type { ParetoPoint, ParetoResult } from './pareto.ts';

/**
 * Writes report.md and report.html into outDir (created if missing), each through a temporary
 * file renamed into place, so a reader never sees half a report; returns the paths written.
 */
export async function writeReport(outDir: string, results: BenchResults): Promise<{ markdown: string; html: string }> {
  await fsp.mkdir(outDir, { recursive: true });
  const markdown = path.join(outDir, 'report.md');
  const html = path.join(outDir, 'report.html');
  const texts: [string, string][] = [
    [markdown, renderMarkdown(results)],
    [html, renderHtml(results)],
  ];
  for (const [file, text] of texts) {
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      await fsp.writeFile(tmp, text);
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }
  return { markdown, html };
}
