/**
 * A small stand-in for the fault benchmark's runner, for the scenario tests: a 'dir' volume, a
 * loop-mounted btrfs volume, and a ScenarioContext whose backup/restore/check call the real tool
 * adapters of lab/bench/tools.ts and turn their measurements into StepResults.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { measured } from '../../lab/bench/fault/inject.ts';
import { btrfsSupport, createVolume, openVolume } from '../../src/volumes/index.ts';
import type { ScenarioContext, StepResult, Strategy, Volume } from '../../lab/bench/fault/types.ts';
import { newContext } from '../../lab/bench/tools.ts';
import type { Tool, ToolContext } from '../../lab/bench/tools.ts';
import { generateMeshVolume } from '../../lab/gen/gen.ts';

export const MiB = 1024 * 1024;

/** A plain directory as the volume (src/volumes): its snapshot is the live path itself. */
export function dirVolume(dir: string): Volume {
  return openVolume({ name: path.basename(dir), kind: 'dir', path: dir });
}

/** A loop-mounted btrfs volume (src/volumes): BASE/NAME.img on BASE/NAME, read-only snapshots beside the data. */
export interface BtrfsVolume extends Volume {
  close(): Promise<void>;
}

/** Why a btrfs volume cannot be made here, or undefined (tries one). */
export async function btrfsUnavailable(base: string): Promise<string | undefined> {
  const ok = await btrfsSupport(path.join(base, 'probe'), false);
  return ok === true ? undefined : ok;
}

export async function btrfsVolume(base: string, name: string, size: number): Promise<BtrfsVolume> {
  const v = await createVolume({ kind: 'btrfs', name, dir: base, sizeBytes: size, unmountOnExit: true });
  return Object.assign(v, { close: () => v.destroy() });
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
