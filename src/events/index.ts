/**
 * events: the typed event stream of an operation. Nothing below a front end prints: the engine
 * (and the lab) emit events to an EventSink, and each front end renders them: the CLI as a
 * progress bar on a terminal, plain lines or JSON lines; the server will stream them (SSE).
 *
 * An operation's stream: `op-start`, then any number of `phase`, `progress`, `scan-progress`,
 * `item-error` (one file or object failed; the operation goes on) and `warning`, then `summary`
 * (how it ended, with the operation's result). Events are plain JSON-serialisable objects.
 */

/** The operations that report progress (engine and lab). */
export type OpName = 'init' | 'backup' | 'restore' | 'check' | 'verify' | 'prune' | 'repair' | 'forget' | 'diff' | 'copy' | 'lock-renew' | 'run' | 'drill' | 'hook' | 'bench' | 'bench-peers' | 'bench-s3' | 'bench-memory' | 'testbed';

export type MeshEvent =
  | { type: 'op-start'; op: OpName; /** ISO time */ at: string; /** what the operation was asked to do (paths, snapshot, options) */ detail?: Record<string, unknown> }
  | { type: 'phase'; op: OpName; phase: string; message?: string }
  | { type: 'scan-progress'; files: number; bytes: number; done: boolean }
  | { type: 'progress'; op: OpName; files: number; bytes: number; totalFiles?: number; totalBytes?: number; current?: string }
  | { type: 'item-error'; path: string; message: string }
  | { type: 'warning'; path?: string; message: string }
  /**
   * copy: one snapshot of the source is in the destination, as `id`: copied and verified now, or
   * (`copied: false`) found there from an earlier run; `stats` are the figures of CopiedSnapshot
   */
  | { type: 'snapshot-copied'; source: string; id: string; copied: boolean; stats: Record<string, number> }
  /** a line of a lab run's account (a benchmark step's figures, a testbed action); `subject` names what it is about */
  | { type: 'note'; op: OpName; subject?: string; message: string }
  | { type: 'summary'; op: OpName; ok: boolean; durationSeconds: number; /** the operation's result object */ result?: unknown; error?: string };

export type EventSink = (e: MeshEvent) => void;

export const nullSink: EventSink = () => undefined;

/**
 * Runs an operation between its `op-start` and `summary` events: the summary carries the result
 * (or the error's message, and the error is rethrown).
 */
export async function reportOp<R>(emit: EventSink, op: OpName, detail: Record<string, unknown> | undefined, run: () => Promise<R>): Promise<R> {
  const t0 = performance.now();
  emit({ type: 'op-start', op, at: new Date().toISOString(), ...(detail !== undefined ? { detail } : {}) });
  try {
    const result = await run();
    emit({ type: 'summary', op, ok: true, durationSeconds: (performance.now() - t0) / 1000, result });
    return result;
  } catch (err) {
    emit({ type: 'summary', op, ok: false, durationSeconds: (performance.now() - t0) / 1000, error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
}
