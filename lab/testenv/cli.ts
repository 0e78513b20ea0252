/**
 * npm run testenv -- build [COMPONENT...|all] [--json]
 * npm run testenv -- up s3|k8s|toxiproxy|all... [--json]     prints `export` lines (eval them)
 * npm run testenv -- down NAME...|all
 * npm run testenv -- status [--json]
 * npm run testenv -- path BINARY                            the path of a pinned binary (kubectl, helm, restic, ...), built if missing
 *
 * Progress goes to stderr; stdout carries only the exports (or one JSON object with --json).
 * Servers started by `up` run until `down`; their state is in ~/.cache/meshback-testenv/run/NAME/
 * (or $MESHBACK_TESTENV_RUN/NAME/).
 */
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { binary, build, cacheRoot, isBuilt, parseComponents, type BuildResult } from './build.ts';
import { TestenvError, UsageError } from './errors.ts';
import { alive, stopPid, type ProcInfo } from './proc.ts';
import { COMPONENTS, COMPONENT_NAMES } from './versions.ts';

const ENVS = ['s3', 'k8s', 'toxiproxy'] as const;
type EnvName = (typeof ENVS)[number];

interface State {
  name: EnvName;
  dir: string;
  startedAt: string;
  seconds: number;
  procs: ProcInfo[];
  env: Record<string, string>;
}

const USAGE = 'usage: npm run testenv -- build [COMPONENT...|all] | up s3|k8s|toxiproxy|all | down NAME...|all | status [--json] | path BINARY';

const log = (l: string): void => void process.stderr.write(l + '\n');
const out = (s: string): void => void process.stdout.write(s);

function runDir(name: EnvName): string {
  return path.join(process.env['MESHBACK_TESTENV_RUN'] ?? path.join(cacheRoot(), 'run'), name);
}

function readState(name: EnvName): State | undefined {
  try {
    return JSON.parse(readFileSync(path.join(runDir(name), 'state.json'), 'utf8')) as State;
  } catch {
    return undefined;
  }
}

function envNames(args: string[], verb: string): EnvName[] {
  if (args.length === 0) throw new UsageError(`${verb} needs a name`, `name one of ${ENVS.join(', ')} or all`);
  if (args.includes('all')) return [...ENVS];
  for (const a of args) if (!(ENVS as readonly string[]).includes(a)) throw new UsageError(`unknown environment ${a}`, `name one of ${ENVS.join(', ')} or all`);
  return [...new Set(args)] as EnvName[];
}

function shellQuote(v: string): string {
  return /^[\w@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`;
}

async function down(name: EnvName): Promise<boolean> {
  const s = readState(name);
  const dir = runDir(name);
  if (s === undefined && !existsSync(dir)) return false;
  // the API server and its helpers first, etcd last
  const procs = s?.procs ?? [];
  await Promise.all(procs.filter((p) => p.name !== 'etcd').map((p) => stopPid(p.pid)));
  await Promise.all(procs.filter((p) => p.name === 'etcd').map((p) => stopPid(p.pid)));
  await fsp.rm(dir, { recursive: true, force: true });
  return true;
}

async function up(name: EnvName): Promise<State> {
  const existing = readState(name);
  if (existing !== undefined) {
    const dead = existing.procs.filter((p) => !alive(p.pid));
    if (dead.length === 0) {
      log(`testenv: ${name} is already up (since ${existing.startedAt})`);
      return existing;
    }
    log(`testenv: ${name} was half up (${dead.map((p) => p.name).join(', ')} exited): starting it anew`);
  }
  await down(name);
  const dir = runDir(name);
  await fsp.mkdir(dir, { recursive: true });
  const t0 = performance.now();
  const opts = { mode: 'detached' as const, dir, log };
  // imported here: the S3 and Kubernetes clients take a moment to load, which status and down need not wait for
  const e = name === 's3' ? await (await import('./s3.ts')).startS3(opts) : name === 'k8s' ? await (await import('./k8s.ts')).startK8s(opts) : await (await import('./toxiproxy.ts')).startToxiproxy(opts);
  const seconds = (performance.now() - t0) / 1000;
  const state: State = { name, dir, startedAt: new Date().toISOString(), seconds: Math.round(seconds * 10) / 10, procs: e.procs.map((p) => ({ name: p.name, pid: p.pid, log: p.log })), env: e.env };
  await fsp.writeFile(path.join(dir, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  log(`testenv: ${name} up in ${seconds.toFixed(1)} s (${state.procs.map((p) => `${p.name} pid ${p.pid}`).join(', ')}); stop it with: npm run testenv -- down ${name}`);
  return state;
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const args = argv.filter((a) => a !== '--json');
  for (const a of args) if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`, USAGE);
  const [verb, ...rest] = args;
  switch (verb) {
    case 'build': {
      const names = parseComponents(rest);
      const results: BuildResult[] = [];
      const t0 = performance.now();
      for (const n of names) {
        const r = await build(n, log);
        if (r.cached) log(`testenv: ${n} ${r.version}: already built in ${r.dir}`);
        results.push(r);
      }
      const built = results.filter((r) => !r.cached).length;
      log(`testenv: ${names.length} components ready, ${built} built now, in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      if (json) out(JSON.stringify({ components: results.map((r) => ({ ...r, seconds: Math.round(r.seconds * 10) / 10 })) }) + '\n');
      return 0;
    }
    case 'up': {
      const names = envNames(rest, 'up');
      const states: State[] = [];
      for (const n of names) states.push(await up(n));
      const env = Object.assign({}, ...states.map((s) => s.env)) as Record<string, string>;
      if (json) out(JSON.stringify({ env, components: states }) + '\n');
      else out(Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join(''));
      return 0;
    }
    case 'down': {
      const names = envNames(rest, 'down');
      const stopped: string[] = [];
      for (const n of names) if (await down(n)) stopped.push(n);
      log(stopped.length > 0 ? `testenv: stopped ${stopped.join(', ')} and removed their data` : `testenv: ${names.join(', ')} not running`);
      if (json) out(JSON.stringify({ stopped }) + '\n');
      return 0;
    }
    case 'status': {
      if (rest.length > 0) throw new UsageError(`status takes no names (got ${rest.join(' ')})`, USAGE);
      const running = ENVS.map((n) => readState(n))
        .filter((s): s is State => s !== undefined)
        .map((s) => ({ ...s, procs: s.procs.map((p) => ({ ...p, alive: alive(p.pid) })) }));
      const components = COMPONENT_NAMES.map((n) => ({ name: n, version: COMPONENTS[n].version, built: isBuilt(n) }));
      if (json) {
        out(JSON.stringify({ running: running.map((s) => ({ ...s, up: s.procs.every((p) => p.alive) })), components }) + '\n');
        return 0;
      }
      if (running.length === 0) out('nothing runs\n');
      for (const s of running) {
        const state = s.procs.every((p) => p.alive) ? 'up' : 'DEGRADED';
        out(`${s.name.padEnd(10)} ${state.padEnd(9)} since ${s.startedAt}  ${s.procs.map((p) => `${p.name}:${p.pid}${p.alive ? '' : '(exited)'}`).join(' ')}  ${Object.entries(s.env).filter(([k]) => !k.startsWith('AWS_SECRET')).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
      }
      out(`built: ${components.map((c) => `${c.name} ${c.version}${c.built ? '' : ' (not built)'}`).join(', ')}\n`);
      return 0;
    }
    case 'path': {
      if (rest.length !== 1) throw new UsageError('path needs one binary name', 'e.g. npm run -s testenv -- path kubectl');
      const p = await binary(rest[0]!, log);
      out(json ? JSON.stringify({ path: p }) + '\n' : p + '\n');
      return 0;
    }
    default:
      throw new UsageError(verb === undefined ? 'no command given' : `unknown command ${verb}`, USAGE);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof TestenvError) {
      process.stderr.write(`testenv: ${e.message}\n`);
      process.exit(e instanceof UsageError ? 2 : 1);
    }
    process.stderr.write(`testenv: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
