/** The policy engine: policy files (schema, loading), one run of a policy, a restore drill, the scheduler. */
export { loadPolicyFile, parsePolicyFile, policyNamed, scheduleOf } from './load.ts';
export type { Drill, Hook, Policy, PolicyFile, Schedule } from './load.ts';
export { PolicyFileSchema, scheduleProblem } from './schema.ts';
export { runPolicy } from './run.ts';
export type { OpenedRepository, Outcome, PhaseName, PhaseReport, PresetReport, RunOptions, RunOutcome, RunReport } from './run.ts';
export type { HookPhase, HookResult } from './hooks.ts';
export { Scheduler, nextRunAfter, systemClock } from './scheduler.ts';
export type { Clock, RunExtra, RunInfo, RunNowAnswer, RunReason, RunResult, ScheduledPolicy, SchedulerEvent, SchedulerOptions, Timer } from './scheduler.ts';
export { emptyState, readState, writeState } from './state.ts';
export type { PolicyState, SchedulerState } from './state.ts';
export { inWindow, parseWindow, windowStart, windowText } from './window.ts';
export type { MaintenanceWindow } from './window.ts';
export { releaseRunLocksSync, takeRunLock } from './runlock.ts';
export type { RunLock } from './runlock.ts';
export { PRESET_TYPES, PresetSchema, createPresets } from './presets/index.ts';
export type { PresetConfig, PresetContext, PresetRun } from './presets/index.ts';
export { newestOfPolicy, runDrill } from './drill.ts';
export type { DrillOptions, DrillReport } from './drill.ts';
