/**
 * bench/fault/report: renders BenchResults as report.md and a self-contained report.html.
 * PLACEHOLDER while the report is being built on its own branch: this minimal version lists the
 * cells so that the runner can be developed and tested; it is replaced before it lands.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { BenchResults } from '../types.ts';

export function renderMarkdown(r: BenchResults): string {
  const lines = ['| tool | strategy | scenario | status |', '|---|---|---|---|'];
  for (const c of r.cells) lines.push(`| ${c.tool} | ${c.strategy} | ${c.scenario} | ${c.status} |`);
  return lines.join('\n') + '\n';
}

export function renderHtml(r: BenchResults): string {
  return `<!doctype html><meta charset="utf-8"><title>meshback bench</title><pre>${renderMarkdown(r).replace(/</g, '&lt;')}</pre>`;
}

/** Writes report.md and report.html into outDir; returns the paths written. */
export async function writeReport(outDir: string, results: BenchResults): Promise<{ markdown: string; html: string }> {
  await fsp.mkdir(outDir, { recursive: true });
  const markdown = path.join(outDir, 'report.md');
  const html = path.join(outDir, 'report.html');
  await fsp.writeFile(markdown, renderMarkdown(results));
  await fsp.writeFile(html, renderHtml(results));
  return { markdown, html };
}
