/**
 * Rendering of engine events for people and machines.
 * - TTY (stderr is a terminal): a progress line redrawn in place: files, bytes, rate, ETA.
 * - not a TTY: quiet; one plain progress line every 30 s for long jobs (logs stay readable).
 * - --json: JSON lines on stdout, {"message_type":"status"|"error"|"warning"|"summary", ...}.
 */
import type { EventSink, MeshEvent } from '../events/index.ts';
import { fmtBytes } from '../util/units.ts';

export interface Output {
  readonly json: boolean;
  readonly quiet: boolean;
  /** a line for people (suppressed with --json and --quiet) */
  info(line: string): void;
  /** a line for people that is a result (suppressed only with --json) */
  result(line: string): void;
  /**
   * one JSON value on stdout (only with --json); a summary ({"message_type":"summary"}) is held
   * until flushSummary, so that the figures of the whole command (requests) can join it
   */
  jsonOut(v: unknown): void;
  /** writes the held summary with `extra` added; false when no summary was held */
  flushSummary(extra: Record<string, unknown>): boolean;
  warn(line: string): void;
  sink: EventSink;
  done(): void;
}

export function fmtDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '--:--';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

export function createOutput(opts: { json: boolean; quiet: boolean; tty?: boolean }): Output {
  const tty = opts.tty ?? (process.stderr.isTTY === true);
  const start = performance.now();
  let lastPlain = performance.now();
  let drawn = false;
  let lastJson = 0;
  let held: Record<string, unknown> | undefined;
  const clearLine = (): void => {
    if (drawn) {
      process.stderr.write('\r\x1b[2K');
      drawn = false;
    }
  };
  const render = (e: Extract<MeshEvent, { type: 'progress' }>): string => {
    const el = (performance.now() - start) / 1000;
    const rate = el > 0 ? e.bytes / el : 0;
    let pct = '';
    let eta = '';
    if (e.totalBytes !== undefined && e.totalBytes > 0) {
      const f = Math.min(1, e.bytes / e.totalBytes);
      const w = 20;
      const fill = Math.round(f * w);
      pct = `[${'#'.repeat(fill)}${'.'.repeat(w - fill)}] ${(f * 100).toFixed(0).padStart(3)}% `;
      eta = rate > 0 ? ` ETA ${fmtDuration((e.totalBytes - e.bytes) / rate)}` : '';
    }
    const files = e.totalFiles !== undefined ? `${e.files}/${e.totalFiles} files` : `${e.files} files`;
    const total = e.totalBytes !== undefined ? ` / ${fmtBytes(e.totalBytes)}` : '';
    return `${e.op} ${pct}${files}, ${fmtBytes(e.bytes)}${total}, ${fmtBytes(rate)}/s, ${fmtDuration(el)}${eta}`;
  };
  const sink: EventSink = (e) => {
    // an operation's start and summary are the command's own business: it prints its result
    if (e.type === 'op-start' || e.type === 'summary' || e.type === 'phase') return;
    if (e.type === 'note') {
      // the lab's running account: stderr, so that --json output and reports on stdout stay clean
      clearLine();
      process.stderr.write(`${e.message}\n`);
      return;
    }
    if (opts.json) {
      if (e.type === 'progress') {
        const now = performance.now();
        if (now - lastJson < 1000) return;
        lastJson = now;
        process.stdout.write(JSON.stringify({ message_type: 'status', ...e }) + '\n');
      } else if (e.type === 'item-error') {
        process.stdout.write(JSON.stringify({ message_type: 'error', path: e.path, message: e.message }) + '\n');
      } else if (e.type === 'warning') {
        process.stdout.write(JSON.stringify({ message_type: 'warning', ...(e.path !== undefined ? { path: e.path } : {}), message: e.message }) + '\n');
      }
      return;
    }
    if (e.type === 'item-error') {
      clearLine();
      process.stderr.write(`error: ${e.path}: ${e.message}\n`);
      return;
    }
    if (e.type === 'warning') {
      clearLine();
      process.stderr.write(`warning: ${e.path !== undefined ? e.path + ': ' : ''}${e.message}\n`);
      return;
    }
    if (e.type !== 'progress' || opts.quiet) return;
    if (tty) {
      const cols = process.stderr.columns ?? 100;
      let line = render(e);
      if (line.length > cols - 1) line = line.slice(0, cols - 1);
      process.stderr.write('\r\x1b[2K' + line);
      drawn = true;
    } else if (performance.now() - lastPlain > 30000) {
      lastPlain = performance.now();
      process.stderr.write(render(e) + '\n');
    }
  };
  return {
    json: opts.json,
    quiet: opts.quiet,
    info(line) {
      if (opts.json || opts.quiet) return;
      clearLine();
      process.stdout.write(line + '\n');
    },
    result(line) {
      if (opts.json) return;
      clearLine();
      process.stdout.write(line + '\n');
    },
    jsonOut(v) {
      if (!opts.json) return;
      if (typeof v === 'object' && v !== null && !Array.isArray(v) && (v as Record<string, unknown>)['message_type'] === 'summary') {
        if (held !== undefined) process.stdout.write(JSON.stringify(held) + '\n');
        held = v as Record<string, unknown>;
        return;
      }
      process.stdout.write(JSON.stringify(v) + '\n');
    },
    flushSummary(extra) {
      if (held === undefined) return false;
      process.stdout.write(JSON.stringify({ ...held, ...extra }) + '\n');
      held = undefined;
      return true;
    },
    warn(line) {
      clearLine();
      if (opts.json) process.stdout.write(JSON.stringify({ message_type: 'warning', message: line }) + '\n');
      else process.stderr.write(`warning: ${line}\n`);
    },
    sink,
    done() {
      clearLine();
    },
  };
}
