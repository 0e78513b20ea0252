/**
 * policy/load: reads a policy file (YAML, eemeli/yaml), checks it with the schemas of
 * policy/schema.ts, and resolves each policy into what a run needs (durations in milliseconds,
 * the retention as src/snapshot/retention.ts takes it, paths made absolute against the file's
 * folder). Every problem is one UsageError line naming the file, the line and the field:
 * `policies.yaml:12: policies.envoy.retention.keep-daily: must be a whole number (it is "seven")`.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { LineCounter, isMap, isPair, isScalar, parseDocument } from 'yaml';
import type { Node } from 'yaml';
import { Excluder } from '../archiver/glob.ts';
import { NotFoundError, UsageError, errMessage, isErrno } from '../errors/index.ts';
import type { RetentionPolicy } from '../snapshot/retention.ts';
import { hasKeepRule, validatePolicy } from '../snapshot/retention.ts';
import { fieldPath, firstProblem, safeParse } from '../util/schema.ts';
import { parseDuration } from '../util/units.ts';
import { resolvePresets } from './presets/index.ts';
import type { PresetConfig } from './presets/index.ts';
import { HOOK_TIMEOUT_DEFAULT, HTTP_HOOK_TIMEOUT_DEFAULT, PolicyFileSchema, scheduleProblem } from './schema.ts';
import type { HookInput, PolicyInput } from './schema.ts';
import { parseWindow } from './window.ts';
import type { MaintenanceWindow } from './window.ts';

/** A hook that runs a program. */
export interface ExecHook {
  exec: string[];
  timeoutMs: number;
}

/** A hook that makes an HTTP request. */
export interface HttpHook {
  http: {
    url: string;
    method: 'POST' | 'GET' | 'PUT';
    /** NAME -> VALUE (never printed) */
    headers: Record<string, string>;
    /** absolute; "Name: value" lines read at each call */
    headersFile?: string;
    /** undefined: the run's context as JSON (POST, PUT), nothing (GET) */
    body?: { kind: 'text'; text: string } | { kind: 'json'; value: unknown };
  };
  timeoutMs: number;
}

export type Hook = ExecHook | HttpHook;

export type Schedule = { kind: 'every'; everyMs: number; text: string } | { kind: 'cron'; expr: string; timezone?: string; text: string };

export interface Policy {
  name: string;
  /** absolute paths */
  sources: string[];
  /** undefined: from --repo / MESHBACK_REPO */
  repository?: string;
  /** undefined: from --password-file / MESHBACK_PASSWORD(_FILE) */
  passwordFile?: string;
  schedule?: Schedule;
  /** undefined: no retention rule (forget is not run) */
  retention?: RetentionPolicy;
  prune: boolean;
  /** prune only inside this daily window (undefined: after every run when `prune`) */
  pruneWindow?: MaintenanceWindow;
  rpoMs?: number;
  /** KEY=VALUE, policy=NAME first */
  tags: string[];
  exclude: string[];
  hooks: { pre: Hook[]; post: Hook[]; onError: Hook[] };
  /** in list order, paths absolute (policy/presets); absent or empty: none */
  presets?: PresetConfig[];
  /** the restore drill (docs/design.md, "Restore drills"); absent: `meshback drill` restores and verifies, with no check */
  drill?: Drill;
}

export interface Drill {
  /** when the server runs it (its scheduler job is `NAME/drill`); absent: only `meshback drill` runs it */
  schedule?: Schedule;
  check?: Hook;
  /** absolute; absent: a new directory under the scratch directory */
  target?: string;
  keepOnFailure: boolean;
}

export interface PolicyFile {
  file: string;
  policies: Map<string, Policy>;
}

/** The line (1-based) of the node at `p` in the document, or of the nearest enclosing node that exists. */
function lineOf(doc: ReturnType<typeof parseDocument>, lc: LineCounter, p: readonly PropertyKey[]): number | undefined {
  for (let n = p.length; n >= 0; n--) {
    const sub = p.slice(0, n);
    const parent = n > 0 ? doc.getIn(sub.slice(0, -1) as unknown[], true) : undefined;
    // a key's own line for a field (an unknown key, a wrong value): the pair's key node
    if (n > 0 && isMap(parent)) {
      const pair = parent.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === sub[n - 1]);
      const k = pair?.key as Node | undefined;
      if (k?.range != null) return lc.linePos(k.range[0]).line;
    }
    const node = n === 0 ? doc.contents : (doc.getIn(sub as unknown[], true) as Node | undefined);
    if (node?.range != null) return lc.linePos(node.range[0]).line;
  }
  return undefined;
}

/** Reads and checks a policy file; a UsageError (NotFoundError for a missing file) names the file, line and field. */
export async function loadPolicyFile(file: string): Promise<PolicyFile> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new NotFoundError(`policy file ${file} does not exist: give the path of a policy file with --config FILE`, { path: file });
    throw new UsageError(`policy file ${file} cannot be read (${errMessage(err)}): check its permissions`);
  }
  return parsePolicyFile(text, file);
}

/** Checks the text of a policy file (`file` names it in messages and anchors relative paths). */
export function parsePolicyFile(text: string, file: string): PolicyFile {
  const name = path.basename(file);
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const err = doc.errors[0];
  if (err !== undefined) {
    const line = lc.linePos(err.pos[0]).line;
    throw new UsageError(`${name}:${line}: not valid YAML (${err.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}): fix the file`);
  }
  const data: unknown = doc.toJS({ maxAliasCount: 100 });
  const fail = (p: readonly PropertyKey[], problem: string): UsageError => {
    const line = lineOf(doc, lc, p);
    return new UsageError(`${name}${line !== undefined ? `:${line}` : ''}: ${p.length > 0 ? fieldPath(p) : '(top level)'}: ${problem}`);
  };
  const r = safeParse(PolicyFileSchema, data);
  if (!r.success) {
    const { path: p, text: t, more } = firstProblem(r.issues);
    throw fail(p, `${t}${more > 0 ? ` (and ${more} more problem${more > 1 ? 's' : ''})` : ''}`);
  }
  const dir = path.dirname(path.resolve(file));
  const policies = new Map<string, Policy>();
  for (const [pname, p] of Object.entries(r.output.policies)) {
    policies.set(pname, resolvePolicy(pname, p, r.output.defaults ?? {}, dir, (sub, problem) => fail(['policies', pname, ...sub], problem)));
  }
  return { file, policies };
}

const SCHEME = /^[a-z][a-z0-9+.-]+:/;

function resolveSchedule(text: string, timezone: string | undefined, at: PropertyKey[], fail: (p: PropertyKey[], problem: string) => UsageError): Schedule {
  const problem = scheduleProblem(text, timezone);
  if (problem !== undefined) throw fail(at, problem);
  return scheduleOf(text, timezone);
}

/** A schedule's text ("every 15m", a cron expression) as a Schedule; scheduleProblem() must have accepted it. */
export function scheduleOf(text: string, timezone?: string): Schedule {
  const every = /^every\s+(\S+)$/.exec(text);
  if (every !== null) return { kind: 'every', everyMs: parseDuration(every[1]!, 'schedule'), text };
  return { kind: 'cron', expr: text.replace(/^cron:\s*/, '').trim(), ...(timezone !== undefined ? { timezone } : {}), text };
}

function resolveHook(h: HookInput, dir: string): Hook {
  if ('exec' in h) return { exec: h.exec, timeoutMs: parseDuration(h.timeout ?? HOOK_TIMEOUT_DEFAULT, 'timeout') };
  const body = h.body === undefined ? undefined : typeof h.body === 'string' ? { kind: 'text' as const, text: h.body } : { kind: 'json' as const, value: h.body };
  return {
    http: {
      url: h.http,
      method: h.method ?? 'POST',
      headers: h.headers ?? {},
      ...(h['headers-file'] !== undefined ? { headersFile: path.resolve(dir, h['headers-file']) } : {}),
      ...(body !== undefined ? { body } : {}),
    },
    timeoutMs: parseDuration(h.timeout ?? HTTP_HOOK_TIMEOUT_DEFAULT, 'timeout'),
  };
}

function resolvePolicy(name: string, p: PolicyInput, defaults: { repository?: string; 'password-file'?: string }, dir: string, fail: (p: PropertyKey[], problem: string) => UsageError): Policy {
  const repo = p.repository ?? defaults.repository;
  const pw = p['password-file'] ?? defaults['password-file'];
  let retention: RetentionPolicy | undefined;
  if (p.retention !== undefined) {
    const x = p.retention;
    retention = {
      ...(x['keep-last'] !== undefined ? { last: x['keep-last'] } : {}),
      ...(x['keep-hourly'] !== undefined ? { hourly: x['keep-hourly'] } : {}),
      ...(x['keep-daily'] !== undefined ? { daily: x['keep-daily'] } : {}),
      ...(x['keep-weekly'] !== undefined ? { weekly: x['keep-weekly'] } : {}),
      ...(x['keep-monthly'] !== undefined ? { monthly: x['keep-monthly'] } : {}),
      ...(x['keep-yearly'] !== undefined ? { yearly: x['keep-yearly'] } : {}),
      ...(x['keep-within'] !== undefined ? { within: parseDuration(x['keep-within'], 'keep-within'), withinLabel: x['keep-within'] } : {}),
      ...(x['keep-tag'] !== undefined ? { tags: x['keep-tag'] } : {}),
    };
    // a retention without a keep rule would remove every snapshot of the policy: refused
    if (!hasKeepRule(retention)) throw fail(['retention'], 'has no keep rule, which would remove every snapshot of the policy: give at least one keep-* rule, or leave retention out');
    validatePolicy(retention);
  }
  for (const [i, pat] of (p.exclude ?? []).entries()) {
    try {
      new Excluder([pat]);
    } catch (err) {
      throw fail(['exclude', i], `is not a valid pattern (${errMessage(err)})`);
    }
  }
  const hooks = p.hooks ?? {};
  const sources = p.sources.map((s) => path.resolve(dir, s));
  return {
    name,
    sources,
    ...(repo !== undefined ? { repository: SCHEME.test(repo) ? repo : path.resolve(dir, repo) } : {}),
    ...(pw !== undefined ? { passwordFile: path.resolve(dir, pw) } : {}),
    ...(p.schedule !== undefined ? { schedule: resolveSchedule(p.schedule, p.timezone, ['schedule'], fail) } : {}),
    ...(retention !== undefined ? { retention } : {}),
    prune: p.prune !== undefined && p.prune !== false,
    ...(typeof p.prune === 'object' ? { pruneWindow: parseWindow(p.prune.window, p.timezone)! } : {}),
    ...(p.rpo !== undefined ? { rpoMs: parseDuration(p.rpo, 'rpo') } : {}),
    tags: [`policy=${name}`, ...Object.entries(p.tags ?? {}).map(([k, val]) => `${k}=${val}`)],
    exclude: p.exclude ?? [],
    hooks: { pre: (hooks.pre ?? []).map((h) => resolveHook(h, dir)), post: (hooks.post ?? []).map((h) => resolveHook(h, dir)), onError: (hooks['on-error'] ?? []).map((h) => resolveHook(h, dir)) },
    presets: resolvePresets(p.presets ?? [], { dir, sources, fail: (sub, problem) => fail(['presets', ...sub], problem) }),
    ...(p.drill !== undefined ? { drill: resolveDrill(p.drill, sources, dir, fail) } : {}),
  };
}

/** true when the absolute path x is y or inside it. */
export function isInside(x: string, y: string): boolean {
  const r = path.relative(y, x);
  return r === '' || (r !== '..' && !r.startsWith(`..${path.sep}`) && !path.isAbsolute(r));
}

/** How the absolute path `dir` stands to `other`: 'is', 'is inside' or 'contains'; undefined when they are apart. */
export function overlap(dir: string, other: string): 'is' | 'is inside' | 'contains' | undefined {
  if (path.resolve(dir) === path.resolve(other)) return 'is';
  if (isInside(dir, other)) return 'is inside';
  if (isInside(other, dir)) return 'contains';
  return undefined;
}

function resolveDrill(d: NonNullable<PolicyInput['drill']>, sources: string[], dir: string, fail: (p: PropertyKey[], problem: string) => UsageError): Drill {
  const target = d.target !== undefined ? path.resolve(dir, d.target) : undefined;
  // a drill deletes what it restored: into a source it would destroy live data (or back itself up)
  for (const s of target !== undefined ? sources : []) {
    const o = overlap(target!, s);
    if (o !== undefined) throw fail(['drill', 'target'], `${target} ${o} the source ${s}: a drill restores into its target and deletes it afterwards; give a scratch directory apart from the sources`);
  }
  return {
    ...(d.schedule !== undefined ? { schedule: resolveSchedule(d.schedule, d.timezone, ['drill', 'schedule'], fail) } : {}),
    ...(d.check !== undefined ? { check: resolveHook(d.check, dir) } : {}),
    ...(target !== undefined ? { target } : {}),
    keepOnFailure: d['keep-on-failure'] ?? false,
  };
}

/** The policy `name` of a loaded file, or a UsageError listing the names there are. */
export function policyNamed(f: PolicyFile, name: string): Policy {
  const p = f.policies.get(name);
  if (p === undefined) throw new NotFoundError(`policy ${JSON.stringify(name)} is not in ${f.file}: it names ${[...f.policies.keys()].join(', ')}`);
  return p;
}
