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

export type { VolumeKind };
/** One volume under test (src/volumes): the live data the services write and the tools back up. */
export type Volume = Pick<EngineVolume, 'kind' | 'path' | 'image' | 'free' | 'snapshot' | 'destroy'>;

export const RESULTS_SCHEMA = 'meshback-bench-results';
export const RESULTS_VERSION = 1;

/**
 * The file-level scenarios, then the application-level ones (app-*: the testbed of lab/testbed,
 * a service mesh with PostgreSQL and Redis, recovered with the tool and verified as a service).
 */
export const SCENARIO_IDS = ['container-crash', 'node-outage', 'volume-corruption', 'repo-corruption', 'disk-full', 'app-container-crash', 'app-node-outage'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];

/**
 * How a tool protects a volume:
 * - full-copy: every backup copies everything (tar, rsync);
 * - incremental: content-defined chunks, deduplicated against earlier backups (meshback, restic, borg);
 * - snapshot: a point-in-time btrfs snapshot of the (loop-mounted) volume is taken, the tool backs
 *   up the snapshot, and the snapshot is deleted (the role a CSI VolumeSnapshot plays).
 */
export type Strategy = 'full-copy' | 'incremental' | 'snapshot';


/** One measured command (see bench/measure.ts Measurement). */
export interface StepResult {
  /** e.g. 'backup-1', 'backup-2', 'restore', 'check', 'restore-after-repair' */
  name: string;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssBytes: number;
  exitCode: number;
  /** the tool's own one-line account when it failed or warned (last stderr line) */
  message?: string;
  /** when the step started (ms since the epoch); for a backup, the start of its RPO window */
  startedAt?: number;
  /**
   * the tool exited with its warning status and still stored the backup (tar 1 "file changed as
   * we read it", borg 1, restic 3 and meshback 3 "incomplete snapshot"): the step counts as done
   */
  warning?: boolean;
  /** snapshot strategy: seconds spent creating (and, once released, deleting) the btrfs snapshot (not in wallSeconds) */
  snapshotSeconds?: number;
}

/** Files after recovery, compared by path, type, size and sha256 with the reference manifest. */
export interface Integrity {
  /** files in the reference (the manifest the scenario says the restore must reproduce) */
  files: number;
  matching: number;
  /** present but different content, size or type */
  damaged: number;
  missing: number;
  /** present after recovery, absent from the reference */
  extra: number;
  /** up to 20 example paths per kind, for the report */
  examples?: { damaged?: string[]; missing?: string[]; extra?: string[] };
}

/** Data loss: what was written (acknowledged by the workload) after the last good backup and not recovered. */
export interface Rpo {
  /**
   * seconds between the last good backup's start and the fault (the window of writes at risk);
   * app-* scenarios: the testbed's RPO, the fault minus the acknowledgement of the last write the
   * recovered service still holds (0 when it lost nothing), the largest over its services
   */
  seconds: number;
  /** bytes written in that window that the recovery did not bring back (app-* scenarios: 0, not measured: the testbed counts writes) */
  bytesLost: number;
  /** writes (records appended by the workload) lost */
  writesLost: number;
}

/** One application-level check after recovery (the testbed's verify: nginx-config, start, traffic, amcheck, ...). */
export interface AppCheck {
  /** the check and what it checked, e.g. "amcheck orders", "traffic sessions", "start postgres" */
  name: string;
  ok: boolean;
  /** its one-line account */
  detail?: string;
}

/** Recovery judged at application level (the app-* scenarios; see docs/design.md, "Testbed"). */
export interface AppRecovery {
  /** every check passed: each component started on the restored volumes and every service answered through its sidecar */
  healthy: boolean;
  checks: AppCheck[];
  /** writes (orders, sessions) acknowledged to the load generator up to the fault */
  writesAcknowledged: number;
  /** of those, the ones the recovered stores do not hold (or hold with another value) */
  writesLost: number;
  /** of the lost, those acknowledged before the restored backup started: must be 0 (else the backup or restore lost durable data) */
  lostBeforeBackup: number;
}

/** One repeat of one cell. */
export interface RepeatResult {
  repeat: number;
  /** the seed this repeat's data, workload and fault moments derive from */
  seed: number;
  status: 'ok' | 'failed';
  /** why it failed (one line), when status is failed */
  reason?: string;
  steps: StepResult[];
  /** allocated bytes of the repository after the last backup */
  bytesStored?: number;
  integrity?: Integrity;
  /**
   * Did the tool notice the fault (a check or a restore that failed or warned, naming the
   * damage)? null when the scenario has nothing for the tool to detect.
   */
  corruptionDetected?: boolean | null;
  /** how the tool reported it (its message), when it did */
  detectionMessage?: string;
  rpo?: Rpo;
  /** seconds from the fault to the end of a verified recovery */
  rtoSeconds?: number;
  /** anything the report should show as a footnote */
  notes?: string[];
  /** application-level scenarios: the service after recovery (absent in the file-level scenarios) */
  app?: AppRecovery;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** The summary metrics of a cell over its ok repeats (absent when no repeat measured it). */
export interface CellSummary {
  backupWallSeconds?: Spread;
  backupCpuSeconds?: Spread;
  backupPeakRssBytes?: Spread;
  restoreWallSeconds?: Spread;
  restoreCpuSeconds?: Spread;
  restorePeakRssBytes?: Spread;
  bytesStored?: Spread;
  filesMatchingFraction?: Spread;
  filesDamaged?: Spread;
  filesMissing?: Spread;
  /** fraction of repeats in which the tool detected the fault (0..1) */
  detectionRate?: number;
  rpoSeconds?: Spread;
  rpoBytesLost?: Spread;
  rtoSeconds?: Spread;
  /** application-level scenarios: fraction of the ok repeats with `app` whose service was healthy after recovery (0..1) */
  appHealthyRate?: number;
  /** application-level scenarios: acknowledged writes lost */
  appWritesLost?: Spread;
}

/** One tool (with one strategy) in one scenario. */
export interface Cell {
  tool: string;
  strategy: Strategy;
  volume: VolumeKind;
  scenario: ScenarioId;
  /** ok: every repeat ran; partial: some repeats failed; failed: none ran; skipped: not applicable or tool missing */
  status: 'ok' | 'partial' | 'failed' | 'skipped';
  reason?: string;
  repeats: RepeatResult[];
  summary: CellSummary;
}

export interface ToolEntry {
  name: string;
  version: string;
  label: string;
  encryption: boolean;
  /** the strategy the tool itself implements (full-copy or incremental) */
  strategy: Strategy;
  /** e.g. "restic is the engine under Stash and Velero's file-system backup" */
  note?: string;
  /** set when the tool could not be used (binary missing and not installable) */
  unavailable?: string;
}

export interface ScenarioEntry {
  id: ScenarioId;
  title: string;
  /** what the scenario does, in one or two sentences, for the report */
  description: string;
}

export interface BenchResults {
  schema: typeof RESULTS_SCHEMA;
  version: typeof RESULTS_VERSION;
  meshbackVersion: string;
  startedAt: string;
  finishedAt: string;
  machine: { cpus: number; cpuModel: string; memoryBytes: number; kernel: string; node: string; hostname: string };
  options: {
    tools: string[];
    scenarios: ScenarioId[];
    strategies: Strategy[];
    sizeBytes: number;
    seed: number;
    repeat: number;
    /** the tools that ran the snapshot strategy (when 'snapshot' is in strategies) */
    snapshotTools?: string[];
    /** extra environment given to every tool command (--env): a run with it is not representative */
    extraEnv?: Record<string, string>;
  };
  tools: ToolEntry[];
  scenarios: ScenarioEntry[];
  cells: Cell[];
  /** run-wide footnotes (e.g. why the snapshot strategy could not run) */
  notes?: string[];
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
}

export interface Scenario {
  id: ScenarioId;
  title: string;
  description: string;
  /** the volume kind it needs for a strategy, or a reason it does not apply */
  applies?(tool: Tool, strategy: Strategy): true | string;
  /** one repeat: setup, workload, fault, recovery, verification */
  run(ctx: ScenarioContext): Promise<Omit<RepeatResult, 'repeat' | 'seed'>>;
}
