/**
 * A small stand-in for the fault benchmark's runner, for the scenario tests: a 'dir' volume, a
 * loop-mounted btrfs volume, and a ScenarioContext whose backup/restore/check call the real tool
 * adapters of src/bench/tools.ts and turn their measurements into StepResults.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { measured, freeBytes } from '../../src/bench/fault/inject.ts';
import type { ScenarioContext, StepResult, Strategy, Volume } from '../../src/bench/fault/types.ts';
import { run } from '../../src/bench/measure.ts';
import { newContext } from '../../src/bench/tools.ts';
import type { Tool, ToolContext } from '../../src/bench/tools.ts';
import { generateMeshVolume } from '../../src/testing/gen.ts';

export const MiB = 1024 * 1024;

/** A plain directory as the volume: its snapshot is the live path itself. */
export function dirVolume(dir: string): Volume {
  return {
    kind: 'dir',
    path: dir,
    free: async () => freeBytes(dir),
    snapshot: async () => ({ path: dir, release: async () => undefined }),
    destroy: async () => fsp.rm(dir, { recursive: true, force: true }),
  };
}

/** A loop-mounted btrfs volume: the data live in subvolume `vol`, read-only snapshots beside it. */
export interface BtrfsVolume extends Volume {
  close(): Promise<void>;
}

/** Why a btrfs volume cannot be made here, or undefined (tries one). */
export async function btrfsUnavailable(base: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root to loop-mount a btrfs image';
  let v: BtrfsVolume | undefined;
  try {
    v = await btrfsVolume(base, 'probe', 128 * MiB);
    return undefined;
  } catch (err) {
    return `cannot loop-mount a btrfs image here: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`;
  } finally {
    await v?.close();
  }
}

export async function btrfsVolume(base: string, name: string, size: number): Promise<BtrfsVolume> {
  const image = path.join(base, `${name}.img`);
  const mnt = path.join(base, name);
  let mounted = false;
  let snaps = 0;
  const close = async (): Promise<void> => {
    if (mounted) {
      for (let i = 0; ; i++) {
        try {
          await run(['umount', mnt]);
          break;
        } catch {
          if (i >= 30) {
            await run(['umount', '-l', mnt]);
            break;
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      mounted = false;
    }
    try {
      const { stdout } = await run(['losetup', '-j', image]);
      for (const l of stdout.split('\n')) {
        const dev = l.split(':')[0];
        if (dev !== undefined && dev.startsWith('/dev/')) await run(['losetup', '-d', dev]);
      }
    } catch {
      /* nothing attached */
    }
    await fsp.rm(image, { force: true });
    await fsp.rm(mnt, { recursive: true, force: true });
  };
  try {
    await run(['truncate', '-s', String(size), image]);
    await run(['mkfs.btrfs', '-q', '-f', image]);
    await fsp.mkdir(mnt, { recursive: true });
    await run(['mount', '-o', 'loop', image, mnt]);
    mounted = true;
    await run(['btrfs', 'subvolume', 'create', path.join(mnt, 'vol')]);
  } catch (err) {
    await close();
    throw err;
  }
  const vol = path.join(mnt, 'vol');
  return {
    kind: 'btrfs',
    path: vol,
    image,
    free: async () => freeBytes(vol),
    snapshot: async () => {
      const p = path.join(mnt, `snap-${++snaps}`);
      await run(['btrfs', 'subvolume', 'snapshot', '-r', vol, p]);
      return { path: p, release: async () => void (await run(['btrfs', 'subvolume', 'delete', p])) };
    },
    destroy: close,
    close,
  };
}

/** The environment of every tool command in the tests (fast meshback key derivation). */
export function toolEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return { ...env, MESHBACK_TEST_SCRYPT_N: '1024' };
}

/**
 * After a failed restore, restic's and borg's adapters leave the partly restored tree in their
 * absolute-path layout next to the target: move it into the target, so that what the tool did
 * restore is judged (the runner must do the same).
 */
async function salvageLayout(tc: ToolContext, target: string): Promise<void> {
  if (tc.lastSource === undefined) return;
  for (const suffix of ['.restic-layout', '.borg-layout']) {
    const scratch = `${target}${suffix}`;
    const tree = path.join(scratch, tc.lastSource.replace(/^\/+/, ''));
    try {
      await fsp.access(tree);
    } catch {
      await fsp.rm(scratch, { recursive: true, force: true });
      continue;
    }
    await fsp.rm(target, { recursive: true, force: true });
    await fsp.rename(tree, target);
    await fsp.rm(scratch, { recursive: true, force: true });
  }
}

export interface Harness {
  ctx: ScenarioContext;
  log: string[];
}

/** A fresh repository for `tool` in work/tool (init done) and the context a scenario gets. */
export async function makeContext(opts: { tool: Tool; strategy: Strategy; volume: Volume; work: string; seed: number; sizeBytes: number }): Promise<Harness> {
  const { tool, volume, strategy } = opts;
  const toolCtx = await newContext(tool, path.join(opts.work, 'tool'), toolEnv());
  const init = await measured('init', () => tool.init(toolCtx));
  if (init.step.exitCode !== 0) throw new Error(`${tool.name} init failed: ${init.output}`);
  const scratch = path.join(opts.work, 'scratch');
  await fsp.mkdir(scratch, { recursive: true });
  const log: string[] = [];
  const check = tool.check?.bind(tool);
  const ctx: ScenarioContext = {
    tool,
    strategy,
    toolCtx,
    volume,
    work: scratch,
    seed: opts.seed,
    sizeBytes: opts.sizeBytes,
    async backup(name: string): Promise<StepResult> {
      if (strategy !== 'snapshot') return (await measured(name, () => tool.backup(toolCtx, volume.path))).step;
      const snap = await volume.snapshot();
      try {
        return (await measured(name, () => tool.backup(toolCtx, snap.path))).step;
      } finally {
        await snap.release();
      }
    },
    async restore(name: string, target: string): Promise<StepResult> {
      const r = await measured(name, () => tool.restore(toolCtx, target));
      if (r.step.exitCode !== 0) await salvageLayout(toolCtx, target);
      return r.step;
    },
    log: (m: string) => void log.push(m),
  };
  if (check !== undefined) ctx.check = async (name: string) => (await measured(name, () => check(toolCtx))).step;
  return { ctx, log };
}

/** Generates the mesh volume data into volume.path. */
export async function fillVolume(volume: Volume, size: number, seed: number): Promise<void> {
  await generateMeshVolume(volume.path, { size, seed });
}
