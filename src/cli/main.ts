/**
 * cli: the meshback command line. It only parses arguments, renders output and maps errors to
 * exit codes; the engine lives in the layers below.
 */
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import type { ParseArgsOptionsConfig } from 'node:util';
import { MeshbackError, UsageError, errMessage } from '../errors/index.ts';
import { releaseHeldLocks } from '../repository/lock.ts';
import { exitInterrupted, interruptHandler } from './signals.ts';
import type { Command, OptionSpec } from './command.ts';
import { LAB_COMMAND_NAMES, labInstalled, loadLabCommands } from './lab.ts';
import type { Context } from './context.ts';
import { closeBackends } from './context.ts';
import { parseDuration } from '../util/units.ts';
import { EXIT, EXIT_DOC, exitCodeFor } from './exit.ts';
import { createOutput } from './output.ts';
import * as path from 'node:path';
import { defaultCacheDir } from '../storage/cache.ts';
import type { CacheOptions } from '../storage/cache.ts';
import { formatRequests } from '../storage/requests.ts';
import { parseSize, fmtBytes } from '../util/units.ts';
import { requestsJson, storageReports, sumRequests } from './context.ts';
import type { Output } from './output.ts';

import { VERSION } from './version.ts';
import { MIN_LIMIT, memoryPlan, setMemoryLimit } from '../util/memory.ts';
import type { MemoryPlan } from '../util/memory.ts';
import { cgroupMemoryLimit } from '../host/memory.ts';

export { VERSION };

/**
 * Commands that stream whole packs through Buffers. For them V8 counts Buffer memory in the global
 * heap limit and lets it grow 2x between collections: by default every ~64 MiB of buffers starts
 * a full mark of the JS heap (about 150 in a 2 GiB restore; 37 with these). Measured on 2 GiB:
 * restore user CPU 6.9 -> 3.5-4.1 s, check 5.8 -> 4.2 s, peak RSS +40-80 MiB. Not for backup: there
 * the gain was small (8.4 -> 7.7 s) and a backup of 1M small files grew from 535 to 746 MiB
 * (docs/runtime.md). Only when no memory limit under 1 GiB applies (util/memory: roomyHeap).
 */
const READS_PACKS = new Set(['restore', 'drill', 'check', 'prune', 'repair']);
/** Commands whose windows the memory plan sizes: they say so when a limit applies. */
const MOVES_DATA = new Set([...READS_PACKS, 'backup', 'copy', 'run', 'k8s']);
const READ_HEAP_FLAGS = '--external-memory-accounted-in-global-limit --external-memory-max-growing-factor=2';

/**
 * The engine's commands, each loaded only when it runs (or for the help listing): `meshback
 * snapshots` need not load the archiver, the restorer, the checker or picomatch (start-up figures:
 * docs/bench/house-2026-12-06/snapshots-startup.md).
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  init: async () => (await import('./commands/init.ts')).initCommand,
  backup: async () => (await import('./commands/backup.ts')).backupCommand,
  restore: async () => (await import('./commands/restore.ts')).restoreCommand,
  snapshots: async () => (await import('./commands/snapshots.ts')).snapshotsCommand,
  ls: async () => (await import('./commands/ls.ts')).lsCommand,
  diff: async () => (await import('./commands/diff.ts')).diffCommand,
  forget: async () => (await import('./commands/forget.ts')).forgetCommand,
  prune: async () => (await import('./commands/prune.ts')).pruneCommand,
  check: async () => (await import('./commands/check.ts')).checkCommand,
  copy: async () => (await import('./commands/copy.ts')).copyCommand,
  repair: async () => (await import('./commands/repair.ts')).repairCommand,
  key: async () => (await import('./commands/key.ts')).keyCommand,
  unlock: async () => (await import('./commands/unlock.ts')).unlockCommand,
  lock: async () => (await import('./commands/lock.ts')).lockCommand,
  run: async () => (await import('./commands/run.ts')).runCommand,
  drill: async () => (await import('./commands/drill.ts')).drillCommand,
  advise: async () => (await import('./commands/advise.ts')).adviseCommand,
  server: async () => (await import('./commands/server.ts')).serverCommand,
  trigger: async () => (await import('./commands/trigger.ts')).triggerCommand,
  ui: async () => (await import('./commands/ui.ts')).uiCommand,
  k8s: async () => (await import('./commands/k8s.ts')).k8sCommand,
};

const loadCommands = (): Promise<Command[]> => Promise.all(Object.values(COMMANDS).map((load) => load()));

const GLOBAL: Record<string, OptionSpec> = {
  repo: { type: 'string', short: 'r', argument: 'LOCATION', description: 'repository location: a directory, local:PATH or file:///PATH (or MESHBACK_REPO)' },
  'password-file': { type: 'string', argument: 'FILE', description: 'read the password from FILE (or MESHBACK_PASSWORD, MESHBACK_PASSWORD_FILE, else a prompt on a terminal)' },
  json: { type: 'boolean', description: 'machine-readable JSON output on stdout' },
  quiet: { type: 'boolean', short: 'q', description: 'no progress and no informational lines' },
  'cache-dir': { type: 'string', argument: 'DIR', description: 'keep the metadata cache of remote repositories in DIR (or MESHBACK_CACHE_DIR; default $XDG_CACHE_HOME/meshback, else ~/.cache/meshback)' },
  'cache-size': { type: 'string', argument: 'SIZE', description: 'the most the cache of one repository holds, e.g. 512MiB (or MESHBACK_CACHE_SIZE; default 1GiB)' },
  'no-cache': { type: 'boolean', description: 'no metadata cache: download index, snapshot and tree data from a remote repository every time' },
  'max-memory': { type: 'string', argument: 'SIZE', description: "the most memory meshback may use, e.g. 256MiB (or MESHBACK_MAX_MEMORY; default: the memory limit of its cgroup, v2 memory.max or v1 memory.limit_in_bytes, as a pod's limit; else no limit): windows and parallelism are sized to it" },
  'retry-lock': { type: 'string', argument: 'DURATION', description: 'if the repository is locked, keep trying for this long (e.g. 30s, 5m; default: fail at once)' },
  help: { type: 'boolean', short: 'h', description: 'show help' },
};

function optionHelp(opts: Record<string, OptionSpec>): string {
  return Object.entries(opts)
    .map(([k, o]) => `  ${o.short !== undefined ? `-${o.short}, ` : '    '}--${k}${o.argument !== undefined ? (o.optionalValue !== undefined ? ` [${o.argument}]` : ' ' + o.argument) : ''}`.padEnd(40) + o.description)
    .join('\n');
}

async function mainHelp(): Promise<string> {
  const commands = await loadCommands();
  const lab = labInstalled() ? await loadLabCommands() : [];
  return [
    `meshback ${VERSION}: encrypted, deduplicating backup and verified restore for service-mesh volumes`,
    '',
    'usage: meshback COMMAND [options]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(12)}${c.summary}`),
    ...(lab.length > 0 ? ['', 'lab commands (the benchmark, the testbed, the demo):', ...lab.map((c) => `  ${c.name.padEnd(12)}${c.summary}`)] : []),
    '',
    'global options:',
    optionHelp(GLOBAL),
    '',
    "run 'meshback COMMAND --help' for a command's options.",
    '',
    'exit codes:',
    ...EXIT_DOC.map(([c, d]) => `  ${String(c).padStart(3)}  ${d}`),
  ].join('\n');
}

function toParseConfig(opts: Record<string, OptionSpec>): ParseArgsOptionsConfig {
  const c: ParseArgsOptionsConfig = {};
  for (const [k, o] of Object.entries(opts)) {
    c[k] = { type: o.type, ...(o.multiple === true ? { multiple: true } : {}), ...(o.short !== undefined ? { short: o.short } : {}) };
  }
  return c;
}

/** `--name` of an option with an optionalValue, given without a value, becomes `--name=<that value>`. */
function withOptionalValues(args: string[], opts: Record<string, OptionSpec>): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      out.push(...args.slice(i));
      break;
    }
    const spec = a.startsWith('--') ? opts[a.slice(2)] : undefined;
    const next = args[i + 1];
    if (spec?.optionalValue !== undefined && (next === undefined || next.startsWith('-'))) out.push(`${a}=${spec.optionalValue}`);
    else out.push(a);
  }
  return out;
}

export async function run(argv: string[]): Promise<number> {
  // a global option's value may precede the command: find the first word that is not a value
  let idx = -1;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('-')) {
      const name = a.replace(/^--?/, '').split('=')[0]!;
      const spec = Object.entries(GLOBAL).find(([k, o]) => k === name || o.short === name)?.[1];
      if (spec?.type === 'string' && !a.includes('=')) i++;
      continue;
    }
    idx = i;
    break;
  }
  const name = idx >= 0 ? argv[idx] : undefined;
  const json = argv.includes('--json');
  const quietFlag = argv.includes('--quiet') || argv.includes('-q');
  const out = createOutput({ json, quiet: quietFlag });
  let failed = false;
  try {
    if (name === undefined || name === 'help') {
      if (argv.includes('--version')) {
        process.stdout.write(`meshback ${VERSION}\n`);
        return EXIT.OK;
      }
      process.stdout.write((await mainHelp()) + '\n');
      return name === undefined && !argv.includes('--help') && !argv.includes('-h') ? EXIT.USAGE : EXIT.OK;
    }
    if (name === 'version') {
      process.stdout.write(`meshback ${VERSION} (node ${process.versions.node})\n`);
      return EXIT.OK;
    }
    const cmd = LAB_COMMAND_NAMES.includes(name) ? (await loadLabCommands()).find((c) => c.name === name) : Object.hasOwn(COMMANDS, name) ? await COMMANDS[name]!() : undefined;
    if (cmd === undefined) throw new UsageError(`unknown command ${JSON.stringify(name)}: run 'meshback --help' for the list`);
    const rest = withOptionalValues([...argv.slice(0, idx), ...argv.slice(idx + 1)], cmd.options);
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: toParseConfig({ ...GLOBAL, ...cmd.options }), allowPositionals: true, strict: true });
    } catch (err) {
      const lines = errMessage(err).split('\n');
      let msg = lines[0]!.replace(/\. To specify a positional.*$/, '');
      // a value that starts with '-' (such as --keep-last -1) must be attached with '='
      const dash = lines.map((l) => /^To specify an option argument starting with a dash use '([^'=]+)=/.exec(l)?.[1]).find((x) => x !== undefined);
      if (dash !== undefined) msg = `${msg.replace(/\.$/, '')}: to give a value that starts with '-', write ${dash}=VALUE`;
      throw new UsageError(`${msg} (meshback ${cmd.name}): see 'meshback ${cmd.name} --help'`);
    }
    const v = parsed.values as Record<string, string | boolean | string[] | boolean[] | undefined>;
    if (v['help'] === true) {
      process.stdout.write(`usage: ${cmd.usage}\n\n${cmd.summary}\n\noptions:\n${optionHelp(cmd.options)}\n\nglobal options:\n${optionHelp(GLOBAL)}\n`);
      return EXIT.OK;
    }
    const plan = applyMemoryLimit(v);
    if (READS_PACKS.has(cmd.name) && plan.roomyHeap) setFlagsFromString(READ_HEAP_FLAGS);
    if (plan.limitBytes !== undefined && MOVES_DATA.has(cmd.name)) out.info(`memory: windows sized to a ${fmtBytes(plan.limitBytes)} limit (${plan.source})`);
    const ctx: Context = {
      g: {
        ...(typeof v['repo'] === 'string' ? { repo: v['repo'] } : {}),
        ...(typeof v['password-file'] === 'string' ? { passwordFile: v['password-file'] } : {}),
        json: v['json'] === true,
        quiet: v['quiet'] === true,
        ...(typeof v['retry-lock'] === 'string' ? { retryLockMs: parseDuration(v['retry-lock'], '--retry-lock', { zero: true }) } : {}),
        cache: cacheOptions(v),
      },
      out,
    };
    return await cmd.run(ctx, v, parsed.positionals);
  } catch (err) {
    failed = true;
    out.done();
    if (err instanceof MeshbackError) {
      if (json) process.stdout.write(JSON.stringify({ message_type: 'error', fatal: true, ...err.toJSON() }) + '\n');
      process.stderr.write(`meshback: ${err.message}\n`);
      return exitCodeFor(err.code);
    }
    const msg = errMessage(err);
    if (json) process.stdout.write(JSON.stringify({ message_type: 'error', fatal: true, code: 'INTERNAL', message: msg }) + '\n');
    process.stderr.write(`meshback: unexpected error: ${msg}\n`);
    if (process.env['MESHBACK_DEBUG'] !== undefined && err instanceof Error) process.stderr.write(`${err.stack ?? ''}\n`);
    return EXIT.FATAL;
  } finally {
    await releaseLocks(out);
    // a failed command's message stays its one line
    // the memory limit the windows were sized to, when one applied, joins the JSON summary
    const plan = memoryPlan();
    const memory = plan.limitBytes !== undefined ? { memory: { limitBytes: plan.limitBytes, source: plan.source } } : {};
    if (!failed) reportStorage(out, memory);
    out.flushSummary(memory);
    await closeBackends();
  }
}

/**
 * The memory plan of this run (util/memory): for --max-memory, else MESHBACK_MAX_MEMORY, else the
 * cgroup's limit (a pod's memory limit), else none.
 */
function applyMemoryLimit(v: Record<string, unknown>): MemoryPlan {
  const opt = typeof v['max-memory'] === 'string' ? v['max-memory'] : undefined;
  const env = process.env['MESHBACK_MAX_MEMORY'];
  const given = opt !== undefined ? { text: opt, name: '--max-memory' } : env !== undefined && env !== '' ? { text: env, name: 'MESHBACK_MAX_MEMORY' } : undefined;
  if (given !== undefined) {
    const bytes = parseSize(given.text, given.name);
    if (bytes < MIN_LIMIT) throw new UsageError(`${given.name} ${given.text} is below the ${fmtBytes(MIN_LIMIT)} meshback needs to run: give at least ${fmtBytes(MIN_LIMIT)}`);
    return setMemoryLimit(bytes, given.name);
  }
  const cg = cgroupMemoryLimit();
  return setMemoryLimit(cg?.bytes, cg?.file ?? 'none');
}

/** The metadata cache the global options and the environment ask for (false: --no-cache). */
function cacheOptions(v: Record<string, unknown>): CacheOptions | false {
  if (v['no-cache'] === true) {
    if (typeof v['cache-dir'] === 'string') throw new UsageError('--no-cache and --cache-dir contradict each other: give one of them');
    return false;
  }
  const env = process.env;
  const dirOpt = typeof v['cache-dir'] === 'string' ? v['cache-dir'] : undefined;
  const envDir = env['MESHBACK_CACHE_DIR'];
  if (dirOpt === '') throw new UsageError('--cache-dir is empty: give a directory, or --no-cache');
  const dir = dirOpt ?? (envDir !== undefined && envDir !== '' ? envDir : defaultCacheDir());
  const sizeOpt = typeof v['cache-size'] === 'string' ? v['cache-size'] : undefined;
  const envSize = env['MESHBACK_CACHE_SIZE'];
  const size = sizeOpt !== undefined ? parseSize(sizeOpt, '--cache-size') : envSize !== undefined && envSize !== '' ? parseSize(envSize, 'MESHBACK_CACHE_SIZE') : undefined;
  return { dir: path.resolve(dir), ...(size !== undefined ? { maxBytes: size } : {}) };
}

/**
 * The requests the command's repository was sent, and the cache's hits and misses, once a
 * command succeeded: in the --json summary (`requests`, `cache`) when the command writes one,
 * else a line on stderr for a remote repository (not with --quiet).
 */
function reportStorage(out: Output, extra: Record<string, unknown>): void {
  const reports = storageReports();
  if (reports.length === 0) return;
  const requests = sumRequests(reports);
  const cache = reports.find((r) => r.cache !== undefined)?.cache;
  const json = requests === undefined ? extra : { ...extra, requests: requestsJson(requests), ...(cache !== undefined ? { cache } : {}) };
  if (out.json && out.flushSummary(json)) return;
  if (out.quiet || !reports.some((r) => r.remote) || requests === undefined) return;
  out.done();
  process.stderr.write(`requests: ${formatRequests(requests)}\n`);
  if (cache !== undefined && cache.hits + cache.misses > 0) {
    process.stderr.write(`cache: ${cache.hits.toLocaleString('en-US')} hits, ${cache.misses.toLocaleString('en-US')} misses (${fmtBytes(cache.bytesRead)} read from it, ${fmtBytes(cache.bytesWritten)} written${cache.damaged > 0 ? `, ${cache.damaged} damaged file(s) fetched again` : ''})\n`);
  }
}

/** Every command ends here, successful or not: the locks it took are removed. */
async function releaseLocks(out: Output): Promise<void> {
  for (const f of await releaseHeldLocks()) {
    out.warn(`could not remove this command's lock ${f.lock.slice(0, 8)}: ${f.error}; other commands ignore it as stale once this process is gone (same host) or once it is older than the stale age; 'meshback unlock' removes it`);
  }
}

// a reader that went away (`meshback ls | head`) is not an error of the command: stop writing, no stack trace
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    // a command that stops on its own terms (server) handles the signal itself
    const h = interruptHandler();
    if (h !== undefined) return h(sig);
    if (interrupted) process.exit(EXIT.INTERRUPTED);
    interrupted = true;
    exitInterrupted(`\nmeshback: interrupted (${sig}); nothing already stored is lost; an unfinished snapshot was not saved\n`);
  });
}

const code = await run(process.argv.slice(2));
process.exitCode = code;
// A finished command ends by letting the event loop drain, not with process.exit(): Node's
// process.exit() shuts the V8 platform down without tearing the isolate down first, and a
// background compile job that is waiting for a garbage collection at that moment deadlocks the
// exit for good (nodejs/node#54918; seen here as a restore that never exited). The normal exit
// path tears the heap down first, which releases such jobs. A stray handle must still not keep a
// finished command alive: once stdout and stderr are flushed, an unref'd timer forces the exit.
process.stdout.write('', () => process.stderr.write('', () => setTimeout(() => process.exit(code), 2000).unref()));
