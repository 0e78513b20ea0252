/**
 * policy/scheduler: what `meshback server` runs, the long-running scheduler of a policy file's
 * policies. It prints nothing: it reports through SchedulerEvents, and time comes through a
 * Clock (now and one-shot timers) so tests drive it without sleeping.
 *
 * - Next run times: `every D` runs D after the previous scheduled run (anchored at the last
 *   recorded start after a restart; a policy that never ran runs at start, unless `waitFirst`); `cron: EXPR` runs at
 *   croner's next match (in the schedule's timezone).
 * - One run of a policy at a time: a tick that comes while the policy's run is going (or waits
 *   for a slot) is skipped and reported, not queued.
 * - At most `maxConcurrent` runs at once; a due policy beyond that waits for a slot (FIFO).
 *   Policies on one repository need no coordination here: a backup takes a shared lock,
 *   retention and prune an exclusive one, and the runner waits for locks (retry-lock).
 * - Catch-up after downtime: the state file holds each policy's last start; when the run due
 *   after it is already past at start, the policy runs once now (not once per missed tick).
 * - Timers are at most 6 h and re-check the clock when they fire: a clock set back re-arms, a
 *   late timer (a suspended host, a clock set forward) starts one run.
 * - reload(policies): a reloaded policy file (SIGHUP): removed, new and changed policies.
 * - stop(grace): no new run starts, queued ones are dropped; the running ones get `grace` to
 *   end; those still running then are returned as abandoned (and recorded as interrupted) for
 *   the front end to end the way an interrupted `meshback run` ends.
 * - runNow(name, extra): a run now, outside the schedule (a CI/CD trigger, reason `trigger`),
 *   under the same rules: refused while the policy runs or waits for a slot, queued when every
 *   slot is taken; `extra` (the trigger's tags, the front end's run id) goes to the run callback.
 *   A policy without a schedule is never run by a timer, only by runNow.
 */
import { Cron } from 'croner';
import { errMessage } from '../errors/index.ts';
import type { Schedule } from './load.ts';
import type { SchedulerState } from './state.ts';
import { emptyState } from './state.ts';

export interface Timer {
  cancel(): void;
}
/** Time for the scheduler: the wall clock (ms since the epoch) and one-shot timers. */
export interface Clock {
  now(): number;
  /** a clock no one sets (ms, any origin): the scheduler compares it with now() to see the wall clock jump */
  monotonic?(): number;
  setTimer(ms: number, fn: () => void): Timer;
}

/** the longest single timer (setTimeout holds at most 2^31-1 ms); a longer wait re-arms */
const MAX_TIMER_MS = 6 * 3600_000;

/** how often the scheduler compares the wall clock with the monotonic one */
const CLOCK_CHECK_MS = 30_000;
/** a difference between the two clocks over one check period beyond this is a jump of the wall clock */
const CLOCK_JUMP_MS = 10_000;

export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, Math.max(0, ms));
    return { cancel: () => clearTimeout(t) };
  },
};

/** The first run time of `s` strictly after `after` (ms since the epoch); undefined when a cron expression has no more matches. */
export function nextRunAfter(s: Schedule, after: number): number | undefined {
  if (s.kind === 'every') return after + s.everyMs;
  const c = new Cron(s.expr, { paused: true, ...(s.timezone !== undefined ? { timezone: s.timezone } : {}) });
  try {
    const n = c.nextRun(new Date(after));
    return n === null ? undefined : n.getTime();
  } finally {
    c.stop();
  }
}

export interface ScheduledPolicy {
  /** a policy's name, or a front end's job name (e.g. `NAME/drill`) */
  name: string;
  /** undefined: never run by a timer, only by runNow() */
  schedule?: Schedule;
  /** with no recorded run, wait for the first tick instead of running at start (a drill: the policy's first backup comes first) */
  waitFirst?: boolean;
}

/** How one run ended, as the runner reports it. */
export interface RunResult {
  ok: boolean;
  code?: string;
  message?: string;
  snapshotId?: string;
}

export type RunReason = 'schedule' | 'catch-up' | 'first-run' | 'trigger';

/** What a run started by runNow() carries to the run callback (the scheduler only passes it on). */
export interface RunExtra {
  /** KEY -> VALUE tags for the snapshot, beside the policy's own */
  tags?: Record<string, string>;
  /** the front end's id of the run (its run registry) */
  runId?: string;
}

/** Why a run starts, for the run callback. */
export interface RunInfo {
  reason: RunReason;
  extra?: RunExtra;
}

/** runNow's answer: accepted (started, or queued for a free slot), or refused and why. */
export interface RunNowAnswer {
  accepted: boolean;
  /** accepted: 'started' or 'queued'; refused: one line saying why */
  reason?: string;
  /** refused: 'unknown' (no such policy), 'busy' (it runs or waits for a slot), 'stopping' (the scheduler is stopping) */
  refusal?: 'unknown' | 'busy' | 'stopping';
}

export type SchedulerEvent =
  | { type: 'scheduled'; policy: string; next: string }
  | { type: 'run-start'; policy: string; at: string; reason: RunReason }
  | { type: 'run-end'; policy: string; at: string; ok: boolean; durationSeconds: number; code?: string; message?: string; snapshotId?: string }
  | { type: 'tick-skipped'; policy: string; at: string; reason: string }
  | { type: 'waiting'; policy: string; at: string; running: string[] }
  | { type: 'stopping'; at: string; running: string[]; graceSeconds: number }
  | { type: 'stopped'; at: string; abandoned: string[] }
  | { type: 'clock-jump'; at: string; jumpSeconds: number }
  | { type: 'warning'; message: string };

export interface SchedulerOptions {
  policies: ScheduledPolicy[];
  /** runs one policy (or job) once (the engine's runPolicy behind the front end's repository access) */
  run(policy: string, info: RunInfo): Promise<RunResult>;
  clock?: Clock;
  /** runs at once (default 2) */
  maxConcurrent?: number;
  /** the state file (default: none, nothing is caught up) */
  state?: { read(): Promise<SchedulerState>; write(s: SchedulerState): Promise<void> };
  onEvent?(e: SchedulerEvent): void;
}

interface Slot {
  p: ScheduledPolicy;
  nextAt?: number;
  timer?: Timer;
  running?: Promise<void>;
  waiting: boolean;
}

export class Scheduler {
  private readonly clock: Clock;
  private readonly max: number;
  private readonly slots = new Map<string, Slot>();
  private readonly queue: { slot: Slot; reason: RunReason; extra?: RunExtra }[] = [];
  private state: SchedulerState = emptyState();
  private writing: Promise<void> = Promise.resolve();
  private stopping = false;
  /** slots removed by reload() whose run is still going */
  private readonly orphans = new Set<Slot>();
  private started = false;

  private readonly opts: SchedulerOptions;

  constructor(opts: SchedulerOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? systemClock;
    this.max = Math.max(1, opts.maxConcurrent ?? 2);
    for (const p of opts.policies) this.slots.set(p.name, { p, waiting: false });
  }

  private emit(e: SchedulerEvent): void {
    this.opts.onEvent?.(e);
  }
  private iso(t = this.clock.now()): string {
    return new Date(t).toISOString();
  }

  /** the policies running now (a policy removed by reload() while its run goes on included) */
  running(): string[] {
    return [...this.slots.values(), ...this.orphans].filter((s) => s.running !== undefined).map((s) => s.p.name);
  }
  /** the next run time of each policy (ms), for tests and status */
  nextRuns(): Record<string, number | undefined> {
    return Object.fromEntries([...this.slots.values()].map((s) => [s.p.name, s.nextAt]));
  }

  /** Reads the state and arms every policy; a run that is due (first run, catch-up) starts now. */
  async start(): Promise<void> {
    if (this.started) throw new Error('scheduler started twice');
    this.started = true;
    if (this.opts.state !== undefined) this.state = await this.opts.state.read();
    this.armAll([...this.slots.values()]);
    this.watchClock();
  }

  private clockTimer: Timer | undefined;
  /**
   * Every CLOCK_CHECK_MS, compares how far the wall clock moved with how far the monotonic clock
   * did. Timers run on the monotonic clock, so after the wall clock is set (NTP step, a VM resumed,
   * an operator) they would fire at the wrong wall time: on a jump every policy is re-armed from
   * the wall clock. A cron schedule keeps wall-clock times: forward, the runs whose time was
   * skipped are due and run once (not tick by tick); backward, a run already made is not repeated,
   * since the next run is always computed after the last tick that fired. An `every` schedule
   * keeps its interval in real time: its next run moves with the jump.
   */
  private watchClock(): void {
    const mono = this.clock.monotonic?.bind(this.clock);
    if (mono === undefined) return;
    let wall0 = this.clock.now();
    let mono0 = mono();
    const check = (): void => {
      if (this.stopping) return;
      const wall1 = this.clock.now();
      const mono1 = mono();
      const jump = wall1 - wall0 - (mono1 - mono0);
      wall0 = wall1;
      mono0 = mono1;
      if (Math.abs(jump) > CLOCK_JUMP_MS) {
        this.emit({ type: 'clock-jump', at: this.iso(wall1), jumpSeconds: Math.round(jump / 1000) });
        for (const slot of this.slots.values()) {
          if (slot.nextAt === undefined || slot.p.schedule === undefined) continue;
          if (slot.p.schedule.kind === 'every') slot.nextAt += jump;
          slot.timer?.cancel();
          slot.timer = undefined;
          this.arm(slot);
        }
      }
      this.clockTimer = this.clock.setTimer(CLOCK_CHECK_MS, check);
    };
    this.clockTimer = this.clock.setTimer(CLOCK_CHECK_MS, check);
  }

  /** arms each of `slots` from its recorded last start: due now (first run, catch-up) or at its next time */
  private armAll(slots: Slot[]): void {
    const now = this.clock.now();
    const due: { slot: Slot; reason: RunReason }[] = [];
    for (const slot of slots) {
      const schedule = slot.p.schedule;
      if (schedule === undefined) continue; // run by runNow() only
      const last = this.state.policies[slot.p.name]?.lastStart;
      if (last === undefined) {
        if (schedule.kind === 'every' && slot.p.waitFirst !== true) due.push({ slot, reason: 'first-run' });
        else this.setNext(slot, nextRunAfter(schedule, now));
        continue;
      }
      const n = nextRunAfter(schedule, Date.parse(last));
      if (n !== undefined && n <= now) due.push({ slot, reason: 'catch-up' });
      else this.setNext(slot, n);
    }
    for (const d of due) this.fire(d.slot, d.reason, now);
  }

  /**
   * Replaces the policies (a reloaded policy file): a removed policy gets no new run (one that is
   * running ends normally; a waiting one is dropped); a new policy, or one whose schedule changed,
   * is armed as at start (from its recorded last start); the others keep their next run.
   */
  reload(policies: ScheduledPolicy[]): void {
    if (this.stopping) return;
    const next = new Map(policies.map((p) => [p.name, p]));
    for (const [name, slot] of [...this.slots]) {
      if (next.has(name)) continue;
      slot.timer?.cancel();
      slot.timer = undefined;
      const qi = this.queue.findIndex((q) => q.slot === slot);
      if (qi >= 0) this.queue.splice(qi, 1);
      this.slots.delete(name);
      if (slot.running !== undefined) this.orphans.add(slot);
    }
    const rearm: Slot[] = [];
    for (const p of policies) {
      const slot = this.slots.get(p.name);
      if (slot === undefined) {
        const s: Slot = { p, waiting: false };
        this.slots.set(p.name, s);
        rearm.push(s);
      } else if (JSON.stringify(slot.p.schedule) !== JSON.stringify(p.schedule)) {
        slot.p = p;
        slot.timer?.cancel();
        slot.timer = undefined;
        rearm.push(slot);
      } else slot.p = p;
    }
    if (this.started) this.armAll(rearm.filter((s) => s.running === undefined && !s.waiting));
    // a changed policy that is running or waiting is armed from its next time after now
    for (const s of rearm.filter((x) => x.running !== undefined || x.waiting)) this.setNext(s, s.p.schedule === undefined ? undefined : nextRunAfter(s.p.schedule, this.clock.now()));
  }

  private setNext(slot: Slot, at: number | undefined): void {
    slot.timer?.cancel();
    slot.timer = undefined;
    slot.nextAt = at;
    if (at === undefined || this.stopping) return;
    this.emit({ type: 'scheduled', policy: slot.p.name, next: this.iso(at) });
    this.arm(slot);
  }

  private arm(slot: Slot): void {
    const at = slot.nextAt!;
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, at - this.clock.now()));
    slot.timer = this.clock.setTimer(delay, () => {
      slot.timer = undefined;
      if (this.stopping) return;
      const now = this.clock.now();
      if (now < at) this.arm(slot);
      else this.fire(slot, now - at > CLOCK_CHECK_MS + CLOCK_JUMP_MS ? 'catch-up' : 'schedule', at);
    });
  }

  /** a tick of `slot` scheduled at `at`: start, wait for a slot, or skip; then arm the next tick */
  private fire(slot: Slot, reason: RunReason, at: number): void {
    const now = this.clock.now();
    if (slot.running !== undefined || slot.waiting) {
      this.emit({ type: 'tick-skipped', policy: slot.p.name, at: this.iso(now), reason: slot.waiting ? 'its previous run is still waiting for a free slot' : 'its previous run is still going' });
    } else this.startOrQueue(slot, reason, undefined, now);
    const schedule = slot.p.schedule;
    if (schedule === undefined) return;
    let n = nextRunAfter(schedule, at);
    if (n !== undefined && n <= now) n = nextRunAfter(schedule, now);
    this.setNext(slot, n);
  }

  /** starts a run of `slot` now, or queues it when every slot is taken; true when it started */
  private startOrQueue(slot: Slot, reason: RunReason, extra: RunExtra | undefined, now: number): boolean {
    if (this.running().length >= this.max) {
      slot.waiting = true;
      this.queue.push({ slot, reason, ...(extra !== undefined ? { extra } : {}) });
      this.emit({ type: 'waiting', policy: slot.p.name, at: this.iso(now), running: this.running() });
      return false;
    }
    this.startRun(slot, reason, extra);
    return true;
  }

  /**
   * A run of `name` now, outside its schedule (reason `trigger`): refused while the policy runs or
   * waits for a slot (one run per policy at a time), or while the scheduler stops; queued when
   * every slot is taken. Its next scheduled time does not move.
   */
  runNow(name: string, extra: RunExtra = {}): RunNowAnswer {
    if (!this.started || this.stopping) return { accepted: false, refusal: 'stopping', reason: this.stopping ? 'the server is stopping: no new run starts' : 'the scheduler has not started yet' };
    const slot = this.slots.get(name);
    if (slot === undefined) return { accepted: false, refusal: 'unknown', reason: `no policy is named ${name}` };
    if (slot.running !== undefined) return { accepted: false, refusal: 'busy', reason: `${name} is running: one run of a policy at a time` };
    if (slot.waiting) return { accepted: false, refusal: 'busy', reason: `a run of ${name} is waiting for a free slot: one run of a policy at a time` };
    return { accepted: true, reason: this.startOrQueue(slot, 'trigger', extra, this.clock.now()) ? 'started' : 'queued' };
  }

  private persist(): void {
    const w = this.opts.state;
    if (w === undefined) return;
    const snapshot = structuredClone(this.state);
    this.writing = this.writing.then(
      () => w.write(snapshot),
    ).catch((err: unknown) => this.emit({ type: 'warning', message: `the scheduler state cannot be written (${errMessage(err)}): a run missed while the server is down may not be caught up` }));
  }

  private startRun(slot: Slot, reason: RunReason, extra?: RunExtra): void {
    const name = slot.p.name;
    const t0 = this.clock.now();
    const prev = this.state.policies[name] ?? {};
    this.state.policies[name] = { ...prev, lastStart: this.iso(t0), outcome: 'running' };
    this.persist();
    this.emit({ type: 'run-start', policy: name, at: this.iso(t0), reason });
    let result: Promise<RunResult>;
    try {
      result = this.opts.run(name, { reason, ...(extra !== undefined ? { extra } : {}) });
    } catch (err) {
      result = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    slot.running = result
      .catch((err: unknown): RunResult => ({ ok: false, code: 'INTERNAL', message: errMessage(err) }))
      .then((r) => {
        const t1 = this.clock.now();
        slot.running = undefined;
        this.orphans.delete(slot);
        if (this.abandonedAt !== undefined) return; // recorded as interrupted by stop()
        const s = { lastStart: this.iso(t0), lastEnd: this.iso(t1), outcome: r.ok ? ('ok' as const) : ('failed' as const), ...(r.message !== undefined ? { message: r.message } : {}), ...(r.snapshotId !== undefined ? { snapshotId: r.snapshotId } : {}) };
        this.state.policies[name] = s;
        this.persist();
        this.emit({ type: 'run-end', policy: name, at: this.iso(t1), ok: r.ok, durationSeconds: (t1 - t0) / 1000, ...(r.code !== undefined ? { code: r.code } : {}), ...(r.message !== undefined ? { message: r.message } : {}), ...(r.snapshotId !== undefined ? { snapshotId: r.snapshotId } : {}) });
        this.drain();
      });
  }

  private drain(): void {
    while (!this.stopping && this.queue.length > 0 && this.running().length < this.max) {
      const q = this.queue.shift()!;
      q.slot.waiting = false;
      this.startRun(q.slot, q.reason, q.extra);
    }
  }

  private abandonedAt: number | undefined;

  /**
   * Stops: no new run starts, waiting ones are dropped, running ones get `graceMs` to end.
   * Resolves with the policies still running after the grace period (recorded as interrupted);
   * the caller ends them (exits).
   */
  async stop(graceMs: number): Promise<{ abandoned: string[] }> {
    this.stopping = true;
    this.clockTimer?.cancel();
    for (const s of this.slots.values()) {
      s.timer?.cancel();
      s.timer = undefined;
      s.waiting = false;
    }
    this.queue.length = 0;
    const running = [...this.slots.values(), ...this.orphans].filter((s) => s.running !== undefined);
    this.emit({ type: 'stopping', at: this.iso(), running: running.map((s) => s.p.name), graceSeconds: graceMs / 1000 });
    let abandoned: string[] = [];
    if (running.length > 0) {
      let timer: Timer | undefined;
      const graceOver = new Promise<'grace'>((res) => (timer = this.clock.setTimer(graceMs, () => res('grace'))));
      const r = await Promise.race([Promise.all(running.map((s) => s.running)).then(() => 'done' as const), graceOver]);
      timer?.cancel();
      if (r === 'grace') {
        this.abandonedAt = this.clock.now();
        abandoned = running.filter((s) => s.running !== undefined).map((s) => s.p.name);
        for (const name of abandoned) {
          this.state.policies[name] = { ...this.state.policies[name], lastEnd: this.iso(this.abandonedAt), outcome: 'interrupted', message: `abandoned: the server was stopped and the run did not end within the grace period` };
        }
        this.persist();
      }
    }
    await this.writing;
    this.emit({ type: 'stopped', at: this.iso(), abandoned });
    return { abandoned };
  }
}
