/**
 * npm run chart: writes the generated files of the Helm chart charts/meshback from the code, so the
 * chart and `meshback k8s install --render` cannot drift apart: crds/*.yaml (src/k8s/crds.ts) and
 * templates/_generated.tpl (the RBAC rules of src/k8s/api.ts without their reasons, the
 * no-injection labels and annotations, the agent's capabilities). `--check` writes nothing and
 * exits 1 when a file differs from what the code says (test/unit/k8s-install.test.ts runs the same
 * comparison). It also writes the RBAC tables of docs/k8s.md (between its rbac markers), every
 * rule with its reason.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { stringify } from 'yaml';
import { AGENT_RULES, CONTROLLER_NAMESPACE_RULES, CONTROLLER_RULES, NO_INJECTION, type RbacRule } from '../src/k8s/api.ts';
import { crdFiles } from '../src/k8s/crds.ts';
import { AGENT_CAPABILITIES } from '../src/k8s/install.ts';

export const CHART_DIR = path.resolve(import.meta.dirname, '../charts/meshback');
export const DOCS = path.resolve(import.meta.dirname, '../docs/k8s.md');
const BEGIN = '<!-- rbac: generated from src/k8s/api.ts by npm run chart -->';
const END = '<!-- rbac: end -->';

/** The RBAC tables of docs/k8s.md: every rule of each role with its reason. */
export function rbacSection(): string {
  const table = (title: string, rs: RbacRule[]): string[] => [
    `**${title}**`,
    '',
    '| API groups | resources | verbs | why |',
    '|---|---|---|---|',
    ...rs.map((r) => `| ${r.apiGroups.map((g) => (g === '' ? '"" (core)' : g)).join(', ')} | ${r.resources.join(', ')} | ${r.verbs.join(', ')} | ${r.why.replace(/\|/g, '\\|')} |`),
    '',
  ];
  return [
    BEGIN,
    ...table('ClusterRole meshback-controller (CONTROLLER_RULES)', CONTROLLER_RULES),
    ...table('Role meshback-controller, in the install namespace only (CONTROLLER_NAMESPACE_RULES)', CONTROLLER_NAMESPACE_RULES),
    ...table('ClusterRole meshback-agent (AGENT_RULES)', AGENT_RULES),
    END,
  ].join('\n');
}

/** docs/k8s.md with its RBAC section as the code says (undefined: the file has no markers) */
export function docsWithRbac(text: string): string | undefined {
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) return undefined;
  return text.slice(0, a) + rbacSection() + text.slice(b + END.length);
}

const y = (x: unknown): string => stringify(x, { lineWidth: 0 }).trimEnd();
const rules = (rs: RbacRule[]): string => y(rs.map((r) => ({ apiGroups: r.apiGroups, resources: r.resources, verbs: r.verbs })));

function generatedTpl(): string {
  const def = (name: string, body: string): string => `{{- define "${name}" -}}\n${body}\n{{- end -}}\n`;
  return [
    "{{- /* generated from src/k8s/api.ts and src/k8s/install.ts by 'npm run chart': do not edit */ -}}",
    def('meshback.controllerRules', rules(CONTROLLER_RULES)),
    def('meshback.agentRules', rules(AGENT_RULES)),
    def('meshback.controllerNamespaceRules', rules(CONTROLLER_NAMESPACE_RULES)),
    def('meshback.noInjectionLabels', y(NO_INJECTION.labels)),
    def('meshback.noInjectionAnnotations', y(NO_INJECTION.annotations)),
    def('meshback.agentCapabilities', y([...AGENT_CAPABILITIES])),
  ].join('\n');
}

/** Path below charts/meshback -> the text the code gives it. */
export function chartFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, text] of Object.entries(crdFiles())) out[`crds/${name}`] = text;
  out['templates/_generated.tpl'] = generatedTpl();
  return out;
}

/** Generated files of the chart that are missing, differ, or (in crds/) should not be there. */
export function staleChartFiles(dir = CHART_DIR): string[] {
  const files = chartFiles();
  const stale = Object.entries(files)
    .filter(([name, text]) => !existsSync(path.join(dir, name)) || readFileSync(path.join(dir, name), 'utf8') !== text)
    .map(([name]) => name);
  const crds = path.join(dir, 'crds');
  if (existsSync(crds)) for (const f of readdirSync(crds)) if (files[`crds/${f}`] === undefined) stale.push(`crds/${f}`);
  const docs = existsSync(DOCS) ? readFileSync(DOCS, 'utf8') : '';
  if (docsWithRbac(docs) !== docs) stale.push('docs/k8s.md (RBAC section)');
  return stale;
}

if (import.meta.main) {
  if (process.argv.includes('--check')) {
    const stale = staleChartFiles();
    if (stale.length > 0) {
      process.stderr.write(`chart: charts/meshback is out of date (${stale.join(', ')}): run 'npm run chart'\n`);
      process.exit(1);
    }
    process.stdout.write(`chart: charts/meshback matches the code (${Object.keys(chartFiles()).length} generated files)\n`);
  } else {
    const files = chartFiles();
    mkdirSync(path.join(CHART_DIR, 'crds'), { recursive: true });
    for (const f of readdirSync(path.join(CHART_DIR, 'crds'))) if (files[`crds/${f}`] === undefined) rmSync(path.join(CHART_DIR, 'crds', f));
    for (const [name, text] of Object.entries(files)) writeFileSync(path.join(CHART_DIR, name), text);
    const docs = docsWithRbac(readFileSync(DOCS, 'utf8'));
    if (docs === undefined) throw new Error(`docs/k8s.md has no RBAC markers (${BEGIN} ... ${END})`);
    writeFileSync(DOCS, docs);
    process.stdout.write(`chart: wrote ${Object.keys(files).length} files to charts/meshback and the RBAC section of docs/k8s.md\n`);
  }
}
