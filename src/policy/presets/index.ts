/**
 * policy/presets: application-consistent backups without hand-written hooks. A policy's
 * `presets:` is a list of objects, each with `type:` and that type's options:
 *
 * - postgres:        pg_backup_start/pg_backup_stop (non-exclusive, one session held through
 *                    the backup); pg_wal is read after the stop and backup_label added, so the
 *                    snapshot restores to a data directory PostgreSQL recovers from by itself;
 * - fsfreeze:        `fsfreeze -f MOUNT` while the backup reads (a watchdog process unfreezes
 *                    after `timeout` even if meshback is killed);
 * - btrfs-snapshot:  a read-only snapshot of the subvolume(s) holding the sources; the backup
 *                    reads the snapshot and records the original paths; deleted at the end;
 * - redis:           BGREWRITEAOF (automatic rewrites held off while the backup reads) or BGSAVE,
 *                    whichever the server loads at start (redis.ts).
 *
 * One file per type (TYPE.ts, exporting its valibot schema and its PresetType); REGISTRY below
 * lists them (one line each). runPolicy (../run.ts) runs them (types.ts: the seam).
 */
import { MeshbackError, errMessage } from '../../errors/index.ts';
import type { Source } from '../../source/index.ts';
import { v } from '../../util/schema.ts';
import { btrfsSnapshot } from './btrfs-snapshot.ts';
import { fsfreeze } from './fsfreeze.ts';
import { postgres } from './postgres.ts';
import { redis } from './redis.ts';
import type { PresetContext, PresetRun, PresetType, ResolveContext } from './types.ts';

export type { PresetContext, PresetRun, PresetType, ResolveContext } from './types.ts';
export { presetType } from './types.ts';

/** Every preset type, one entry each (a new type: its file exports presetType({ type, schema, resolve?, create }), listed here). */
const REGISTRY = [postgres, fsfreeze, btrfsSnapshot, redis] as const;

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

/**
 * Checks and resolves a policy's presets read from a file (`fail([i, ...field], problem)` names
 * the field). Order matters: postgres must come before btrfs-snapshot (the snapshot must be taken
 * while the backup mode is on), and both before fsfreeze (they write).
 */
export function resolvePresets(list: PresetConfig[], r: ResolveContext): PresetConfig[] {
  const out = list.map((cfg, i) => {
    const t = typeOf(cfg.type);
    return t.resolve !== undefined ? (t.resolve(cfg, { ...r, fail: (sub, p) => r.fail([i, ...sub], p) }) as PresetConfig) : cfg;
  });
  // after a freeze nothing may write: pg_backup_start writes a checkpoint, a btrfs snapshot is a write
  const freeze = out.findIndex((c) => c.type === 'fsfreeze');
  if (freeze >= 0) {
    const writer = out.findIndex((c, i) => i > freeze && (c.type === 'postgres' || c.type === 'btrfs-snapshot'));
    if (writer >= 0) throw r.fail([writer, 'type'], `must come before the fsfreeze preset (${out[writer]!.type === 'postgres' ? 'pg_backup_start writes a checkpoint' : 'making a snapshot writes'}, which would wait for the frozen filesystem): move it up`);
  }
  const firstSnap = out.findIndex((c) => c.type === 'btrfs-snapshot');
  if (firstSnap >= 0) {
    const second = out.findIndex((c, i) => i > firstSnap && c.type === 'btrfs-snapshot');
    if (second >= 0) throw r.fail([second, 'type'], 'is a second btrfs-snapshot preset: one snapshots every subvolume holding the sources');
    const pgAfter = out.findIndex((c, i) => i > firstSnap && c.type === 'postgres');
    if (pgAfter >= 0) throw r.fail([pgAfter, 'type'], 'must come before the btrfs-snapshot preset (the snapshot must be taken inside the backup mode pg_backup_start opens): move it up');
  }
  return out;
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

/**
 * The Source a backup with presets reads through: `wrapped` (the presets' wrappers over the live
 * filesystem), except below the paths read last, which come from `live` (postgres' pg_wal is
 * read after pg_backup_stop from the live data directory, even when the rest is read from a
 * snapshot).
 */
export function routeLast(wrapped: Source, live: Source, last: string[]): Source {
  if (last.length === 0 || wrapped === live) return wrapped;
  const prefixes = last.map((p) => Buffer.from(p));
  const pick = (p: Buffer): Source => (prefixes.some((l) => p.length >= l.length && p.subarray(0, l.length).equals(l) && (p.length === l.length || p[l.length] === 0x2f)) ? live : wrapped);
  return {
    kind: wrapped.kind,
    lstat: (p) => pick(p).lstat(p),
    lstatSync: (p) => pick(p).lstatSync(p),
    readdirSync: (p) => pick(p).readdirSync(p),
    readdir: (p) => pick(p).readdir(p),
    readlink: (p) => pick(p).readlink(p),
    openSync: (p) => pick(p).openSync(p),
    open: (p) => pick(p).open(p),
  };
}
