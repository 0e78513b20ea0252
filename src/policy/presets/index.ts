/**
 * policy/presets: application-consistent backups without hand-written hooks. A policy's
 * `presets:` is a list of objects, each with `type:` and that type's options. One file per type
 * (TYPE.ts, exporting its valibot schema and its PresetType); REGISTRY lists them, one line each.
 *
 * INTERIM (wip-redis): only the redis preset, until wip-presets' seam is merged; on merge take
 * wip-presets' version of this file and add `redis` (from './redis.ts') to its REGISTRY.
 */
import { MeshbackError, errMessage } from '../../errors/index.ts';
import { v } from '../../util/schema.ts';
import { redis } from './redis.ts';
import type { PresetContext, PresetRun, PresetType, ResolveContext } from './types.ts';

export type { PresetContext, PresetRun, PresetType, ResolveContext } from './types.ts';
export { presetType } from './types.ts';

/** Every preset type, one line each. */
const REGISTRY = [redis] as const;

type Registered = (typeof REGISTRY)[number];
/** The options of one preset, as a policy holds them (resolved: absolute paths). */
export type PresetConfig = v.InferOutput<Registered['schema']>;

export const PRESET_TYPES: readonly string[] = REGISTRY.map((t) => t.type);

export const PresetSchema = v.variant(
  'type',
  REGISTRY.map((t) => t.schema),
  `must have a type: one of ${REGISTRY.map((t) => t.type).join(', ')}`,
);

function typeOf(name: string): PresetType {
  const t = REGISTRY.find((x) => x.type === name) as PresetType | undefined;
  if (t === undefined) throw new MeshbackError('INTERNAL', `no preset type ${JSON.stringify(name)}`);
  return t;
}

/** Checks and resolves a policy's presets read from a file (`fail([i, ...field], problem)` names the field). */
export function resolvePresets(list: PresetConfig[], r: ResolveContext): PresetConfig[] {
  return list.map((cfg, i) => {
    const t = typeOf(cfg.type);
    return t.resolve !== undefined ? (t.resolve(cfg, { ...r, fail: (sub, p) => r.fail([i, ...sub], p) }) as PresetConfig) : cfg;
  });
}

/** The runs of a policy's presets, in list order. */
export function createPresets(list: PresetConfig[], ctx: PresetContext): PresetRun[] {
  return list.map((cfg) => typeOf(cfg.type).create(cfg, ctx));
}

/** A preset's error as the run's failure: code HOOK, one line naming the preset. */
export function presetError(name: string, err: unknown): MeshbackError {
  if (err instanceof MeshbackError && err.code === 'HOOK') return err;
  const msg = errMessage(err).split('\n')[0]!;
  return new MeshbackError('HOOK', msg.startsWith(`${name} preset`) ? msg : `${name} preset: ${msg}`, { cause: err });
}
