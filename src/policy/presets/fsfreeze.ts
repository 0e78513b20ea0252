/**
 * The fsfreeze preset: `fsfreeze -f MOUNT` before the backup reads, `fsfreeze -u MOUNT` after
 * (a frozen filesystem takes no write: every writer waits, so what is read is one point in time
 * of that filesystem). A frozen filesystem left behind hangs its workload, so the thaw is made
 * certain three ways: finish() (also when the backup failed), an 'exit' hook of this process
 * (SIGINT/SIGTERM end meshback through process.exit), and a watchdog: a detached process started
 * before the freeze that thaws MOUNT after `timeout` even if meshback is SIGKILLed (finish() ends
 * it; when it fired first, the backup had not finished reading and the run fails).
 *
 * Refused (one line, exit 14): MOUNT not a mount point; the repository, the cache or the temp
 * directory on the filesystem MOUNT is on (meshback would wait for its own freeze); fsfreeze
 * missing. Needs root (FIFREEZE needs CAP_SYS_ADMIN) and a filesystem that supports freezing
 * (ext4, xfs, btrfs, ...).
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshbackError, errMessage } from '../../errors/index.ts';
import { run, which } from '../../host/process.ts';
import { about, v } from '../../util/schema.ts';
import { durationField } from '../fields.ts';
import { formatDuration, parseDuration } from '../../util/units.ts';
import { isMountPoint, mountOf } from '../../volumes/index.ts';
import type { PresetContext, PresetRun } from './types.ts';
import { presetType } from './types.ts';


export const FsfreezePresetSchema = v.strictObject({
  type: v.literal('fsfreeze'),
  mount: about(v.pipe(v.string(), v.minLength(1)), 'the mount point of the filesystem to freeze (relative to the policy file)'),
  timeout: v.optional(about(durationField(), 'the longest the filesystem stays frozen: a watchdog thaws it then, even if meshback was killed, and the run fails (default 10m)')),
});
export type FsfreezePresetConfig = v.InferOutput<typeof FsfreezePresetSchema>;

const fail = (message: string): MeshbackError => new MeshbackError('HOOK', `fsfreeze preset: ${message}`);

/** The nearest existing directory at or above `p` (a cache directory may not exist yet). */
async function existing(p: string): Promise<string> {
  for (let d = path.resolve(p); ; d = path.dirname(d)) {
    try {
      return await fsp.realpath(d);
    } catch {
      if (d === '/') return '/';
    }
  }
}

/** A local repository's directory (a path or file:), or undefined for a remote one. */
function localRepo(location: string | undefined): string | undefined {
  if (location === undefined) return undefined;
  if (location.startsWith('file://')) return location.slice('file://'.length);
  if (location.startsWith('file:')) return location.slice('file:'.length);
  return /^[a-z][a-z0-9+.-]+:/.test(location) ? undefined : location;
}

/** The fsfreeze preset of one run (the factory the registry calls). */
export function fsfreezePreset(cfg: FsfreezePresetConfig, ctx: PresetContext): PresetRun {
  const timeoutMs = parseDuration(cfg.timeout ?? '10m', 'timeout');
  let mount = cfg.mount;
  let frozen = false;
  let watchdog: ChildProcess | undefined;
  let watchdogFired = false;
  let thawOnExit: (() => void) | undefined;
  const note = (message: string): void => ctx.events({ type: 'note', op: 'run', subject: 'preset fsfreeze', message });

  const stopWatchdog = (): void => {
    const w = watchdog;
    watchdog = undefined;
    if (w?.pid === undefined || w.exitCode !== null || w.signalCode !== null) return;
    try {
      process.kill(-w.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  };
  const dropExitHook = (): void => {
    if (thawOnExit !== undefined) process.off('exit', thawOnExit);
    thawOnExit = undefined;
  };

  return {
    name: 'fsfreeze',

    async start() {
      mount = await fsp.realpath(cfg.mount).catch(() => cfg.mount);
      if (!existsSync(mount)) throw fail(`${cfg.mount} does not exist: give the mount point of the filesystem to freeze`);
      if (!isMountPoint(mount)) throw fail(`${cfg.mount} is not a mount point (it is on ${mountOf(mount)?.mountPoint ?? '?'}): give the mount point of the filesystem to freeze (findmnt -T PATH shows it)`);
      if (mount === '/') throw fail('/ is the root filesystem: freezing it would stop meshback itself; freeze the filesystem of the data instead');
      const dev = mountOf(mount)!.dev;
      const mine: [string, string][] = [];
      const repo = localRepo(ctx.repository);
      if (repo !== undefined) mine.push(['the repository', repo]);
      for (const w of ctx.writes ?? []) mine.push(['the cache directory', w]);
      mine.push(['the temp directory', os.tmpdir()]);
      for (const [what, p] of mine) {
        const m = mountOf(await existing(p));
        if (m?.dev === dev) throw fail(`${what} ${p} is on the filesystem of ${mount} (${m.mountPoint}): a backup would wait for its own freeze; move it to another filesystem (TMPDIR, --cache-dir, the policy's repository)`);
      }
      if ((await which('fsfreeze')) === undefined) throw fail('the fsfreeze program is not installed: install the Debian package util-linux');
      // the watchdog first: whatever happens to this process, the filesystem is thawed in the end
      const secs = Math.max(1, Math.ceil(timeoutMs / 1000));
      const w = spawn('sh', ['-c', 'sleep "$1"; exec fsfreeze -u "$2"', 'meshback-fsfreeze-watchdog', String(secs), mount], { detached: true, stdio: 'ignore' });
      w.unref();
      w.on('exit', (code, signal) => {
        if (signal === null && watchdog === w) {
          watchdogFired = true;
          frozen = false;
          ctx.events({ type: 'warning', path: mount, message: `the fsfreeze watchdog thawed ${mount} after ${formatDuration(timeoutMs)} (exit ${code}): the backup took longer than the preset's timeout` });
        }
      });
      w.on('error', () => undefined);
      watchdog = w;
      const m = mount;
      thawOnExit = (): void => {
        if (frozen) spawnSync('fsfreeze', ['-u', m], { stdio: 'ignore' });
        frozen = false;
        stopWatchdog();
      };
      process.on('exit', thawOnExit);
      try {
        await run(['fsfreeze', '-f', mount]);
      } catch (err) {
        stopWatchdog();
        dropExitHook();
        const why = errMessage(err).replace(/^.*?: /, '').split('\n')[0]!;
        throw fail(`fsfreeze -f ${mount} failed (${why}): run meshback as root, on a filesystem that can be frozen, not frozen already`);
      }
      frozen = true;
      note(`${mount} frozen (the watchdog thaws it after ${formatDuration(timeoutMs)} at the latest)`);
    },

    async finish(ok) {
      const fired = watchdogFired;
      let problem: string | undefined;
      if (frozen) {
        try {
          await run(['fsfreeze', '-u', mount]);
          frozen = false;
          note(`${mount} thawed`);
        } catch (err) {
          // thawed by someone else meanwhile (EINVAL): no longer frozen either way
          problem = errMessage(err).split('\n')[0]!;
          frozen = false;
        }
      }
      stopWatchdog();
      dropExitHook();
      if (ok && fired) throw fail(`the watchdog thawed ${mount} after ${formatDuration(timeoutMs)}, before the backup had read everything: raise the preset's timeout`);
      if (ok && problem !== undefined) throw fail(`fsfreeze -u ${mount} failed: ${problem}`);
    },
  };
}

export const fsfreeze = presetType({
  type: 'fsfreeze',
  schema: FsfreezePresetSchema,
  resolve(cfg, r) {
    return { ...cfg, mount: path.resolve(r.dir, cfg.mount) };
  },
  create: fsfreezePreset,
});
