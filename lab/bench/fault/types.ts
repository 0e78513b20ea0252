/**
 * bench/fault/types: the contract between the fault-tolerance benchmark's parts.
 *
 *   runner (runner.ts)      tools x strategies x scenarios x repeats -> BenchResults (results.json)
 *   scenarios (scenarios/)  one script each: setup, workload, fault, recovery, verification
 *   report (report/)        BenchResults -> report.md, report.html (self-contained, charts)
 *
 * The results file is the interface: `meshback bench report DIR` re-renders a report from a saved
 * results.json alone, so everything the report shows is in it. Bump RESULTS_VERSION when a field
 * changes meaning or goes away (adding an optional field does not need a bump).
 */
import type { Volume as EngineVolume, VolumeKind } from '../../../src/volumes/index.ts';
import type { Tool, ToolContext } from '../tools.ts';
import { about, int, issueText, isoDate, safeParse, v } from '../../../src/util/schema.ts';

export type { VolumeKind };
/** One volume under test (src/volumes): the live data the services write and the tools back up. */
export type Volume = Pick<EngineVolume, 'kind' | 'path' | 'image' | 'free' | 'snapshot' | 'destroy'>;

export const RESULTS_SCHEMA = 'meshback-bench-results';
export const RESULTS_VERSION = 1;

/**
 * The file-level scenarios, then the application-level ones (app-*: the testbed of lab/testbed,
 * a service mesh with PostgreSQL and Redis, recovered with the tool and verified as a service).
 */
export const SCENARIO_IDS = ['container-crash', 'node-outage', 'volume-corruption', 'repo-corruption', 'disk-full', 's3-outage', 'app-container-crash', 'app-node-outage'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];

/**
 * How a tool protects a volume:
 * - full-copy: every backup copies everything (tar, rsync);
 * - incremental: content-defined chunks, deduplicated against earlier backups (meshback, restic, borg);
 * - snapshot: a point-in-time btrfs snapshot of the (loop-mounted) volume is taken, the tool backs
 *   up the snapshot, and the snapshot is deleted (the role a CSI VolumeSnapshot plays).
 */
export type Strategy = 'full-copy' | 'incremental' | 'snapshot';



// The results file (results.json) is defined by the schemas below (docs/schemas/bench-results.json);
// the types are inferred from them, and `meshback bench report` checks a file with them.

const seconds = () => v.pipe(v.number(), v.minValue(0));
const count = () => int(0);
const fraction = (description: string) => v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1), v.description(description)));

/** One measured command (see bench/measure.ts Measurement). */
export const StepResultSchema = v.object({
  name: about(v.string(), "e.g. 'backup-1', 'backup-2', 'restore', 'check', 'restore-after-repair'"),
  wallSeconds: seconds(),
  cpuSeconds: seconds(),
  peakRssBytes: count(),
  exitCode: int(),
  message: v.optional(about(v.string(), "the tool's own one-line account when it failed or warned (last stderr line)")),
  startedAt: v.optional(about(v.number(), 'when the step started (ms since the epoch); for a backup, the start of its RPO window')),
  warning: v.optional(
    about(
      v.boolean(),
      'the tool exited with its warning status and still stored the backup (tar 1 "file changed as we read it", borg 1, restic 3 and meshback 3 "incomplete snapshot"): the step counts as done',
    ),
  ),
  snapshotSeconds: v.optional(about(seconds(), 'snapshot strategy: seconds spent creating (and, once released, deleting) the btrfs snapshot (not in wallSeconds)')),
});
export type StepResult = v.InferOutput<typeof StepResultSchema>;

/** Files after recovery, compared by path, type, size and sha256 with the reference manifest. */
export const IntegritySchema = v.object({
  files: about(count(), 'files in the reference (the manifest the scenario says the restore must reproduce)'),
  matching: count(),
  damaged: about(count(), 'present but different content, size or type'),
  missing: count(),
  extra: about(count(), 'present after recovery, absent from the reference'),
  examples: v.optional(
    about(v.object({ damaged: v.optional(v.array(v.string())), missing: v.optional(v.array(v.string())), extra: v.optional(v.array(v.string())) }), 'up to 20 example paths per kind, for the report'),
  ),
});
export type Integrity = v.InferOutput<typeof IntegritySchema>;

/** Data loss: what was written (acknowledged by the workload) after the last good backup and not recovered. */
export const RpoSchema = v.object({
  seconds: about(
    v.number(),
    "seconds between the last good backup's start and the fault (the window of writes at risk); app-* scenarios: the testbed's RPO, the fault minus the acknowledgement of the last write the recovered service still holds (0 when it lost nothing), the largest over its services",
  ),
  bytesLost: about(count(), 'bytes written in that window that the recovery did not bring back (app-* scenarios: 0, not measured: the testbed counts writes)'),
  writesLost: about(count(), 'writes (records appended by the workload) lost'),
});
export type Rpo = v.InferOutput<typeof RpoSchema>;

/** One application-level check after recovery (the testbed's verify: nginx-config, start, traffic, amcheck, ...). */
export const AppCheckSchema = v.object({
  name: about(v.string(), 'the check and what it checked, e.g. "amcheck orders", "traffic sessions", "start postgres"'),
  ok: v.boolean(),
  detail: v.optional(about(v.string(), 'its one-line account')),
});
export type AppCheck = v.InferOutput<typeof AppCheckSchema>;

/** Recovery judged at application level (the app-* scenarios; see docs/design.md, "Testbed"). */
export const AppRecoverySchema = v.object({
  healthy: about(v.boolean(), 'every check passed: each component started on the restored volumes and every service answered through its sidecar'),
  checks: v.array(AppCheckSchema),
  writesAcknowledged: about(count(), 'writes (orders, sessions) acknowledged to the load generator up to the fault'),
  writesLost: about(count(), 'of those, the ones the recovered stores do not hold (or hold with another value)'),
  lostBeforeBackup: about(count(), 'of the lost, those acknowledged before the restored backup started: must be 0 (else the backup or restore lost durable data)'),
});
export type AppRecovery = v.InferOutput<typeof AppRecoverySchema>;

/** A repair of the damaged repository from its parity (meshback-parity: `repair packs --json`'s summary). */
export const RepairOutcomeSchema = v.object({
  exitCode: int(),
  packsChecked: count(),
  packsDamaged: about(count(), 'damaged, truncated or missing packs found'),
  packsRepaired: about(count(), 'of those, rebuilt byte for byte from parity'),
  packsLost: about(count(), 'of those, left damaged (cannot be rebuilt: their blobs are lost)'),
  parityRewritten: about(count(), 'intact packs whose damaged or missing parity file was written again'),
});
export type RepairOutcome = v.InferOutput<typeof RepairOutcomeSchema>;

/** The s3-outage scenario: the object store was unreachable while a backup ran. */
export const OutageSchema = v.object({
  startedAfterSeconds: about(seconds(), 'seconds from the start of the interrupted backup to the outage'),
  seconds: about(seconds(), 'how long the object store was unreachable'),
  how: about(v.string(), 'how it was made unreachable, e.g. "toxiproxy proxy disabled (connections refused and reset)"'),
  hit: about(v.boolean(), 'the backup was still running when the outage began (false: it finished before)'),
  backup: about(v.picklist(['finished', 'failed']), 'how the interrupted backup ended: finished (after retries) or failed'),
  exitCode: int(),
  message: v.optional(about(v.string(), "the tool's last stderr line when it failed or warned")),
  rerun: about(v.boolean(), 'the backup was run again after the outage (because the interrupted one failed)'),
  rerunOk: v.optional(v.boolean()),
});
export type Outage = v.InferOutput<typeof OutageSchema>;

/** One repeat of one cell. */
export const RepeatResultSchema = v.object({
  repeat: int(1),
  seed: about(int(), "the seed this repeat's data, workload and fault moments derive from"),
  status: v.picklist(['ok', 'failed']),
  reason: v.optional(about(v.string(), 'why it failed (one line), when status is failed')),
  steps: v.array(StepResultSchema),
  bytesStored: v.optional(about(count(), 'allocated bytes of the repository after the last backup')),
  integrity: v.optional(IntegritySchema),
  corruptionDetected: v.optional(
    about(
      v.nullable(v.boolean()),
      'did the tool notice the fault (a check or a restore that failed or warned, naming the damage)? null when the scenario has nothing for the tool to detect',
    ),
  ),
  detectionMessage: v.optional(about(v.string(), 'how the tool reported it (its message), when it did')),
  rpo: v.optional(RpoSchema),
  rtoSeconds: v.optional(about(seconds(), 'seconds from the fault to the end of a verified recovery')),
  notes: v.optional(about(v.array(v.string()), 'anything the report should show as a footnote')),
  app: v.optional(about(AppRecoverySchema, 'application-level scenarios: the service after recovery (absent in the file-level scenarios)')),
  repair: v.optional(about(RepairOutcomeSchema, 'repo-corruption with a tool that repairs (meshback-parity): what the repair rebuilt and what it could not')),
  outage: v.optional(about(OutageSchema, 's3-outage: the outage and how the interrupted backup ended')),
});
export type RepeatResult = v.InferOutput<typeof RepeatResultSchema>;

export const SpreadSchema = v.object({ median: v.number(), min: v.number(), max: v.number(), n: count() });
export type Spread = v.InferOutput<typeof SpreadSchema>;

/** The summary metrics of a cell over its ok repeats (absent when no repeat measured it). */
export const CellSummarySchema = v.object({
  backupWallSeconds: v.optional(SpreadSchema),
  backupCpuSeconds: v.optional(SpreadSchema),
  backupPeakRssBytes: v.optional(SpreadSchema),
  restoreWallSeconds: v.optional(SpreadSchema),
  restoreCpuSeconds: v.optional(SpreadSchema),
  restorePeakRssBytes: v.optional(SpreadSchema),
  bytesStored: v.optional(SpreadSchema),
  filesMatchingFraction: v.optional(SpreadSchema),
  filesDamaged: v.optional(SpreadSchema),
  filesMissing: v.optional(SpreadSchema),
  detectionRate: fraction('fraction of repeats in which the tool detected the fault (0..1)'),
  rpoSeconds: v.optional(SpreadSchema),
  rpoBytesLost: v.optional(SpreadSchema),
  rtoSeconds: v.optional(SpreadSchema),
  appHealthyRate: fraction('application-level scenarios: fraction of the ok repeats with `app` whose service was healthy after recovery (0..1)'),
  appWritesLost: v.optional(about(SpreadSchema, 'application-level scenarios: acknowledged writes lost')),
});
export type CellSummary = v.InferOutput<typeof CellSummarySchema>;

const strategySchema = v.picklist(['full-copy', 'incremental', 'snapshot']);

/** One tool (with one strategy) in one scenario. */
export const CellSchema = v.object({
  tool: v.string(),
  strategy: strategySchema,
  volume: v.picklist(['dir', 'btrfs']) satisfies v.GenericSchema<unknown, VolumeKind>,
  scenario: v.picklist(SCENARIO_IDS),
  status: about(v.picklist(['ok', 'partial', 'failed', 'skipped']), 'ok: every repeat ran; partial: some repeats failed; failed: none ran; skipped: not applicable or tool missing'),
  reason: v.optional(v.string()),
  repeats: v.array(RepeatResultSchema),
  summary: CellSummarySchema,
});
export type Cell = v.InferOutput<typeof CellSchema>;

export const ToolEntrySchema = v.object({
  name: v.string(),
  version: v.string(),
  label: v.string(),
  encryption: v.boolean(),
  strategy: about(strategySchema, 'the strategy the tool itself implements (full-copy or incremental)'),
  note: v.optional(about(v.string(), 'e.g. "restic is the engine under Stash and Velero\'s file-system backup"')),
  unavailable: v.optional(about(v.string(), 'set when the tool could not be used (binary missing and not installable)')),
});
export type ToolEntry = v.InferOutput<typeof ToolEntrySchema>;

export const ScenarioEntrySchema = v.object({
  id: v.picklist(SCENARIO_IDS),
  title: v.string(),
  description: about(v.string(), 'what the scenario does, in one or two sentences, for the report'),
});
export type ScenarioEntry = v.InferOutput<typeof ScenarioEntrySchema>;

export const BenchResultsSchema = v.pipe(
  v.object({
    schema: v.literal(RESULTS_SCHEMA),
    version: v.literal(RESULTS_VERSION),
    meshbackVersion: v.string(),
    startedAt: isoDate(),
    finishedAt: isoDate(),
    machine: v.object({ cpus: count(), cpuModel: v.string(), memoryBytes: count(), kernel: v.string(), node: v.string(), hostname: v.string() }),
    options: v.object({
      tools: v.array(v.string()),
      scenarios: v.array(v.picklist(SCENARIO_IDS)),
      strategies: v.array(strategySchema),
      sizeBytes: count(),
      seed: int(),
      repeat: int(1),
      snapshotTools: v.optional(about(v.array(v.string()), "the tools that ran the snapshot strategy (when 'snapshot' is in strategies)")),
      extraEnv: v.optional(about(v.record(v.string(), v.string()), 'extra environment given to every tool command (--env): a run with it is not representative')),
      outageSeconds: v.optional(about(seconds(), 's3-outage: how long the object store was unreachable (--outage-seconds)')),
    }),
    tools: v.array(ToolEntrySchema),
    scenarios: v.array(ScenarioEntrySchema),
    cells: v.array(CellSchema),
    notes: v.optional(about(v.array(v.string()), 'run-wide footnotes (e.g. why the snapshot strategy could not run)')),
  }),
  v.metadata({ title: 'meshback fault-tolerance benchmark results', description: '`meshback bench run --out DIR` writes DIR/results.json; `meshback bench report DIR` renders from it alone (docs/design.md, "Fault-tolerance benchmark").' }),
);
export type BenchResults = v.InferOutput<typeof BenchResultsSchema>;

/**
 * Why `json` is not a results file this version reads, as the rest of a sentence about the file
 * ("is not a meshback bench results file (...)", "holds results version 2; ...", "is malformed:
 * field "cells[3].status" must be ...; ..."), or undefined when it is one.
 */
export function resultsProblem(json: unknown): string | undefined {
  const obj = typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  if (obj?.['schema'] !== RESULTS_SCHEMA) return `is not a meshback bench results file (its "schema" is ${obj !== undefined ? JSON.stringify(obj['schema']) ?? 'missing' : 'missing'}, not "${RESULTS_SCHEMA}")`;
  if (obj['version'] !== RESULTS_VERSION) return `holds results version ${JSON.stringify(obj['version'])}; this meshback reads version ${RESULTS_VERSION}: render it with the meshback version that wrote it`;
  const r = safeParse(BenchResultsSchema, json);
  return r.success ? undefined : `is malformed: ${issueText(r.issues)}; re-run \`meshback bench run\` or restore the file`;
}

export interface BackupOptions {
  /**
   * Called when the tool's backup succeeded, with the path it backed up: for the snapshot
   * strategy the read-only snapshot (so a scenario can take the manifest of exactly what was
   * backed up), otherwise the live volume. backup() waits for it, then deletes the snapshot.
   */
  view?(path: string): Promise<void>;
  /**
   * Like view, but backup() does not wait: the snapshot is kept until the returned promise
   * settles, so a scenario can hold it past the fault and hash it while its clocks are stopped.
   * A snapshot still held when the repeat ends goes with its volume.
   */
  hold?(path: string): Promise<void>;
  /**
   * Back up this tree instead of the cell's volume (the application-level scenarios back up the
   * testbed's volumes). For the snapshot strategy its snapshot() gives the point-in-time view that
   * is backed up (and timed as snapshotSeconds) instead of the cell volume's.
   */
  source?: Pick<Volume, 'path' | 'snapshot'>;
}

/** What a scenario gets for one repeat of one cell. Everything under `work` is its own. */
export interface ScenarioContext {
  tool: Tool;
  strategy: Strategy;
  /** a fresh repository for this repeat (init already done) */
  toolCtx: ToolContext;
  /** the live volume, already holding the generated data set */
  volume: Volume;
  /** scratch directory for restores, manifests, journals */
  work: string;
  seed: number;
  sizeBytes: number;
  /**
   * runs the tool's backup of the volume the way the strategy says (snapshot first for
   * 'snapshot'). Never throws for a failing tool: the StepResult says how it ended (see
   * common.ts stepSucceeded); a process killed by a scenario ends with 128 + the signal number.
   */
  backup(name: string, opts?: BackupOptions): Promise<StepResult>;
  /** restores the latest backup into `target` (an empty directory) */
  restore(name: string, target: string): Promise<StepResult>;
  /** the tool's full data check, where it has one (undefined otherwise) */
  check?(name: string): Promise<StepResult>;
  /** progress line for the terminal */
  log(message: string): void;
  /**
   * A fresh, empty volume of the same kind as `volume` (e.g. the replacement node's volume to
   * recover into); the runner destroys it after the repeat.
   */
  newVolume?(label: string): Promise<Volume>;
  /** may the scenario apt-get install programs it needs when root (--no-install: false; default true) */
  install?: boolean;
  /**
   * Scenarios with `storage: 's3'`: the repository (toolCtx.s3) is in MinIO, reached through a
   * toxiproxy proxy; down() makes the object store unreachable (the proxy disabled: connections
   * refused, open ones reset), up() brings it back.
   */
  s3?: { down(): Promise<void>; up(): Promise<void>; how: string; /** how long an outage lasts (--outage-seconds) */ outageSeconds: number };
}

export interface Scenario {
  id: ScenarioId;
  title: string;
  description: string;
  /** the volume kind it needs for a strategy, or a reason it does not apply ("not applicable: ...") */
  applies?(tool: Tool, strategy: Strategy): true | string;
  /** where the repository goes: 's3' (MinIO through toxiproxy, started by the runner) or, by default, a local directory */
  storage?: 's3';
  /** one repeat: setup, workload, fault, recovery, verification */
  run(ctx: ScenarioContext): Promise<Omit<RepeatResult, 'repeat' | 'seed'>>;
}
