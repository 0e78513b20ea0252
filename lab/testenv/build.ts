/**
 * Builds the pinned components (versions.ts) from their published Go modules into
 * ~/.cache/meshback-testenv/NAME-VERSION/ (or $MESHBACK_TESTENV_CACHE/NAME-VERSION/), once:
 * a directory whose stamp.json names the pinned version and holds every binary is reused.
 * Go's module and build caches stay in their default places (GOMODCACHE, GOCACHE), so a
 * rebuild after a version bump reuses what they hold.
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TestenvError, UsageError } from './errors.ts';
import { COMPONENTS, COMPONENT_NAMES, type Component, type ComponentName, type FilesComponent, type GoComponent } from './versions.ts';

export type Log = (line: string) => void;

export function cacheRoot(): string {
  return process.env['MESHBACK_TESTENV_CACHE'] ?? path.join(os.homedir(), '.cache', 'meshback-testenv');
}

export function componentDir(name: ComponentName): string {
  return path.join(cacheRoot(), `${name}-${COMPONENTS[name].version}`);
}

interface Stamp {
  name: string;
  module: string;
  version: string;
  builtAt: string;
  seconds: number;
  go: string;
  reported?: Record<string, string>;
}

function outputs(c: Component): string[] {
  return c.kind === 'go' ? [...Object.keys(c.binaries).map((b) => path.join('bin', b)), ...(c.files ?? []).map((f) => path.join('files', path.basename(f)))] : c.files.map((f) => path.join('files', f));
}

export function isBuilt(name: ComponentName): boolean {
  const dir = componentDir(name);
  const c: Component = COMPONENTS[name];
  try {
    const stamp = JSON.parse(readFileSync(path.join(dir, 'stamp.json'), 'utf8')) as Stamp;
    if (stamp.version !== c.version || stamp.module !== c.module) return false;
  } catch {
    return false;
  }
  return outputs(c).every((f) => existsSync(path.join(dir, f)));
}

export function parseComponents(names: string[]): ComponentName[] {
  if (names.length === 0 || names.includes('all')) return [...COMPONENT_NAMES];
  for (const n of names) {
    if (!(COMPONENT_NAMES as string[]).includes(n)) throw new UsageError(`unknown component ${n}`, `name one of ${COMPONENT_NAMES.join(', ')} or all`);
  }
  return names as ComponentName[];
}

function fmtSeconds(s: number): string {
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(Math.round(s - m * 60)).padStart(2, '0')}s` : `${s.toFixed(1)}s`;
}

interface RunOpts {
  cwd: string;
  log: Log;
  label: string;
  logFile: string;
  env?: Record<string, string>;
  /** print a progress line at most this often (ms) */
  every?: number;
}

/** Runs a command under `nice -n 10`, its output into logFile, with a progress line now and then; returns stdout. */
function run(cmd: string, args: string[], o: RunOpts): Promise<string> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn('nice', ['-n', '10', cmd, ...args], { cwd: o.cwd, env: { ...process.env, ...o.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let lines = 0;
    let last = '';
    const tail: string[] = [];
    const chunks: string[] = [];
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      chunks.push(d);
    });
    p.stderr.setEncoding('utf8').on('data', (d: string) => {
      chunks.push(d);
      for (const l of d.split('\n')) {
        if (l === '') continue;
        lines++;
        last = l;
        tail.push(l);
        if (tail.length > 30) tail.shift();
      }
    });
    const timer = setInterval(() => {
      o.log(`${o.label}: ${lines} lines of go output, last ${last.slice(0, 100)} (${fmtSeconds((performance.now() - t0) / 1000)})`);
    }, o.every ?? 20_000);
    p.on('error', (e) => {
      clearInterval(timer);
      reject(new TestenvError(`cannot run ${cmd}: ${e.message}`, 'install Go 1.26 (the go command must be on the PATH)'));
    });
    p.on('close', (code) => {
      clearInterval(timer);
      void fsp.appendFile(o.logFile, `$ ${cmd} ${args.join(' ')}\n${chunks.join('')}\n[exit ${code}]\n`).then(() => {
        if (code === 0) resolve(stdout);
        else {
          const why = tail.filter((l) => !l.startsWith('go: downloading')).slice(-6).join(' | ');
          reject(new TestenvError(`${o.label}: ${cmd} ${args.slice(0, 3).join(' ')} exited ${code}: ${why}`, `see ${o.logFile}; fix the pin in lab/testenv/versions.ts or the Go setup`));
        }
      }, reject);
    });
  });
}

/** go mod download -json MODULE@VERSION: the module's directory and go.mod file in the module cache. */
async function download(module: string, version: string, o: RunOpts): Promise<{ Dir: string; GoMod: string }> {
  const out = await run('go', ['mod', 'download', '-json', `${module}@${version}`], o);
  const j = JSON.parse(out) as { Dir?: string; GoMod?: string; Error?: string };
  if (j.Error !== undefined || j.Dir === undefined || j.GoMod === undefined) throw new TestenvError(`${o.label}: go mod download ${module}@${version} failed: ${j.Error ?? 'no directory'}`, 'check the version in lab/testenv/versions.ts');
  return { Dir: j.Dir, GoMod: j.GoMod };
}

/** The modules that a go.mod replaces with local directories (`X => ./staging/src/X`). */
export function localReplaces(gomod: string): string[] {
  const out: string[] = [];
  for (const line of gomod.split('\n')) {
    const m = /^\s*(?:replace\s+)?(\S+)(?:\s+v\S+)?\s+=>\s+(\.\.?\/\S*)\s*$/.exec(line);
    if (m !== null) out.push(m[1]!);
  }
  return out;
}

/** The module's replace directives that point at published modules (`X => Y vN`), as go.mod lines. */
export function publishedReplaces(gomod: string): string[] {
  const out: string[] = [];
  for (const line of gomod.split('\n')) {
    const m = /^\s*(?:replace\s+)?(\S+(?:\s+v\S+)?)\s+=>\s+([^.\s]\S*)\s+(v\S+)\s*$/.exec(line);
    if (m !== null) out.push(`\t${m[1]!} => ${m[2]!} ${m[3]!}`);
  }
  return out;
}

async function goVersion(): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('go', ['env', 'GOVERSION'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => (s += d));
    p.on('error', () => resolve('none'));
    p.on('close', () => resolve(s.trim() || 'none'));
  });
}

async function buildGo(name: ComponentName, c: GoComponent, tmp: string, work: string, o: RunOpts): Promise<Record<string, string>> {
  const replaces: string[] = [];
  if (c.replaceStaging !== undefined) {
    const { GoMod } = await download(c.module, c.version, o);
    for (const m of localReplaces(await fsp.readFile(GoMod, 'utf8'))) {
      if (m.startsWith(c.replaceStaging.prefix)) replaces.push(`\t${m} => ${m} ${c.replaceStaging.version}`);
    }
    o.log(`${o.label}: replacing ${replaces.length} staging modules with their ${c.replaceStaging.version} releases`);
  }
  if (c.keepReplaces === true) {
    const { GoMod } = await download(c.module, c.version, o);
    const kept = publishedReplaces(await fsp.readFile(GoMod, 'utf8'));
    replaces.push(...kept);
    o.log(`${o.label}: keeping the module's ${kept.length} replace directives: ${kept.map((l) => l.trim()).join('; ')}`);
  }
  await fsp.writeFile(
    path.join(work, 'go.mod'),
    `// generated by lab/testenv/build.ts to build ${c.module}@${c.version}\nmodule meshback.invalid/testenv/${name}\n\ngo 1.26\n` + (replaces.length > 0 ? `\nreplace (\n${replaces.join('\n')}\n)\n` : ''),
  );
  const pkgs = [...new Set(Object.values(c.binaries))];
  o.log(`${o.label}: go get ${pkgs.map((p) => `${p}@${c.version}`).join(' ')} (downloads the module and its dependencies)`);
  await run('go', ['get', ...pkgs.map((p) => `${p}@${c.version}`)], o);
  const ldflags = ['-s', '-w', ...Object.entries(c.xflags ?? {}).map(([k, v]) => `-X=${k}=${v}`)].join(' ');
  await fsp.mkdir(path.join(tmp, 'bin'), { recursive: true });
  for (const [bin, pkg] of Object.entries(c.binaries)) {
    const t = performance.now();
    o.log(`${o.label}: go build ${bin} (${pkg})`);
    await run('go', ['build', '-v', '-trimpath', `-ldflags=${ldflags}`, '-o', path.join(tmp, 'bin', bin), pkg], { ...o, label: `${o.label}: ${bin}` });
    o.log(`${o.label}: ${bin} built in ${fmtSeconds((performance.now() - t) / 1000)}`);
  }
  if (c.files !== undefined) {
    const { Dir } = await download(c.module, c.version, o);
    await fsp.mkdir(path.join(tmp, 'files'), { recursive: true });
    for (const f of c.files) await fsp.copyFile(path.join(Dir, f), path.join(tmp, 'files', path.basename(f)));
  }
  const reported: Record<string, string> = {};
  for (const bin of Object.keys(c.binaries)) {
    const out = await new Promise<string>((resolve) => {
      const p = spawn(path.join(tmp, 'bin', bin), c.versionArgsOf?.[bin] ?? c.versionArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
      let s = '';
      p.stdout.setEncoding('utf8').on('data', (d: string) => (s += d));
      p.stderr.setEncoding('utf8').on('data', (d: string) => (s += d));
      const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
      p.on('error', (e) => resolve(String(e)));
      p.on('close', () => {
        clearTimeout(t);
        resolve(s.trim());
      });
    });
    reported[bin] = out.split('\n').slice(0, 3).join(' ');
    if (!(c.unversioned ?? []).includes(bin) && !out.includes(c.reports)) {
      throw new TestenvError(`${o.label}: ${bin} ${(c.versionArgsOf?.[bin] ?? c.versionArgs).join(' ')} printed "${reported[bin]}", not ${c.reports}`, 'fix the version flags in lab/testenv/versions.ts');
    }
  }
  return reported;
}

async function buildFiles(c: FilesComponent, tmp: string, work: string, o: RunOpts): Promise<void> {
  const { Dir } = await download(c.module, c.version, { ...o, cwd: work });
  await fsp.mkdir(path.join(tmp, 'files'), { recursive: true });
  for (const f of c.files) await fsp.copyFile(path.join(Dir, c.from, f), path.join(tmp, 'files', f));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** One build of a component at a time across processes (test files run in parallel). */
async function withLock<T>(name: string, log: Log, fn: () => Promise<T>): Promise<T> {
  const lock = path.join(cacheRoot(), `${name}.lock`);
  await fsp.mkdir(cacheRoot(), { recursive: true });
  const deadline = Date.now() + 90 * 60_000;
  let told = false;
  for (;;) {
    try {
      await fsp.writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(await fsp.readFile(lock, 'utf8').catch(() => '0'));
      if (holder > 0 && !alive(holder)) {
        await fsp.rm(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new TestenvError(`${name} is being built by process ${holder} for 90 minutes`, `stop it or remove ${lock}`);
      if (!told) log(`testenv: ${name}: waiting for process ${holder}, which builds it`);
      told = true;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  try {
    return await fn();
  } finally {
    await fsp.rm(lock, { force: true });
  }
}

export interface BuildResult {
  name: ComponentName;
  version: string;
  dir: string;
  cached: boolean;
  seconds: number;
}

/** Builds the component unless its cache directory already holds it. */
export async function build(name: ComponentName, log: Log = () => {}): Promise<BuildResult> {
  const c: Component = COMPONENTS[name];
  const dir = componentDir(name);
  if (isBuilt(name)) return { name, version: c.version, dir, cached: true, seconds: 0 };
  return withLock(`${name}-${c.version}`, log, async () => {
    if (isBuilt(name)) return { name, version: c.version, dir, cached: true, seconds: 0 };
    const t0 = performance.now();
    // errors carry the bare label (the CLI prefixes `testenv: `), progress lines the prefixed one
    const label = `${name} ${c.version}`;
    const plog: Log = (l) => log(`testenv: ${l}`);
    plog(`${label}: building from ${c.module} (log: ${dir}.log)`);
    const tmp = `${dir}.tmp-${process.pid}`;
    const work = await fsp.mkdtemp(path.join(os.tmpdir(), `meshback-testenv-build-${name}-`));
    await fsp.rm(tmp, { recursive: true, force: true });
    await fsp.mkdir(tmp, { recursive: true });
    await fsp.writeFile(`${dir}.log`, '');
    const o: RunOpts = { cwd: work, log: plog, label, logFile: `${dir}.log` };
    try {
      let reported: Record<string, string> | undefined;
      if (c.kind === 'go') reported = await buildGo(name, c, tmp, work, o);
      else await buildFiles(c, tmp, work, o);
      const seconds = (performance.now() - t0) / 1000;
      const stamp: Stamp = { name, module: c.module, version: c.version, builtAt: new Date().toISOString(), seconds: Math.round(seconds), go: await goVersion(), ...(reported !== undefined ? { reported } : {}) };
      await fsp.writeFile(path.join(tmp, 'stamp.json'), JSON.stringify(stamp, null, 2) + '\n');
      await fsp.rm(dir, { recursive: true, force: true });
      await fsp.rename(tmp, dir);
      plog(`${label}: done in ${fmtSeconds(seconds)}`);
      return { name, version: c.version, dir, cached: false, seconds };
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
      await fsp.rm(work, { recursive: true, force: true });
    }
  });
}

const BINARY_OWNER: Record<string, ComponentName> = {};
for (const n of COMPONENT_NAMES) {
  const c: Component = COMPONENTS[n];
  if (c.kind === 'go') for (const b of Object.keys(c.binaries)) BINARY_OWNER[b] = n;
}

/** The path of a pinned binary (restic, kopia, minio, etcd, kube-apiserver, kubectl, helm, ...), built first if missing. */
export async function binary(bin: string, log: Log = (l) => process.stderr.write(l + '\n')): Promise<string> {
  const owner = BINARY_OWNER[bin];
  if (owner === undefined) throw new UsageError(`no component builds a binary named ${bin}`, `name one of ${Object.keys(BINARY_OWNER).join(', ')}`);
  const r = await build(owner, log);
  return path.join(r.dir, 'bin', bin);
}

/** The files a component keeps (the VolumeSnapshot CRDs, kwok's stages), built or fetched first if missing. */
export async function filesOf(name: 'snapshot-crds' | 'kwok', log: Log = (l) => process.stderr.write(l + '\n')): Promise<string[]> {
  const r = await build(name, log);
  return COMPONENTS[name].files.map((f) => path.join(r.dir, 'files', path.basename(f)));
}
