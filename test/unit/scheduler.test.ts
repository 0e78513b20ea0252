/**
 * The scheduler of `meshback server` (src/policy/scheduler.ts) driven by a fake clock, without
 * sleeping: next run times (every, cron with a timezone), no overlapping runs of one policy,
 * a run missed during downtime caught up once, bounded concurrency, a stop with a running
 * job (finished within the grace period, or abandoned), runNow (a triggered run: refused while
 * the policy runs or waits, queued for a slot, its extra passed on; a policy without a schedule
 * runs only then), and the state file (atomic write, damaged file read as empty with one warning).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Scheduler, nextRunAfter, readState, writeState } from '../../src/policy/index.ts';
import type { Clock, RunInfo, RunResult, Schedule, SchedulerEvent, SchedulerState, Timer } from '../../src/policy/index.ts';
import { rmrf, tmpdir } from '../helpers/cli.ts';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const T0 = Date.parse('2026-12-06T10:00:00.000Z');

/** A clock whose time moves only when the test advances it; due timers fire in time order. */
class FakeClock implements Clock {
  t: number;
  /** the monotonic clock: moves with advance(), not with jump() */
  mono = 0;
  private timers: { at: number; seq: number; fn: () => void; cancelled: boolean }[] = [];
  private seq = 0;
  constructor(t: number) {
    this.t = t;
  }
  now(): number {
    return this.t;
  }
  monotonic(): number {
    return this.mono;
  }
  /** sets the wall clock by `ms` (an NTP step); timers keep their monotonic deadlines */
  jump(ms: number): void {
    this.t += ms;
    for (const e of this.timers) e.at += ms;
  }
  setTimer(ms: number, fn: () => void): Timer {
    const e = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(e);
    return { cancel: () => void (e.cancelled = true) };
  }
  /** moves time forward by `ms`, firing due timers in order and letting promise chains settle after each */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (let i = 0; i < 100_000; i++) {
      await settle();
      this.timers = this.timers.filter((e) => !e.cancelled);
      const next = this.timers.filter((e) => e.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (next === undefined) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.mono += Math.max(0, next.at - this.t);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.mono += end - this.t;
    this.t = end;
    await settle();
  }
}
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const every = (ms: number): Schedule => ({ kind: 'every', everyMs: ms, text: `every ${ms}ms` });
const cron = (expr: string, timezone?: string): Schedule => ({ kind: 'cron', expr, text: `cron: ${expr}`, ...(timezone !== undefined ? { timezone } : {}) });

/** A scheduler over fake time whose runs take `durations[name]` of fake time; it records starts, events and the most runs at once. */
function harness(policies: Record<string, Schedule | undefined>, o: { durations?: Record<string, number>; max?: number; state?: SchedulerState; fail?: Set<string>; waitFirst?: Set<string> } = {}) {
  const clock = new FakeClock(T0);
  const events: SchedulerEvent[] = [];
  const starts: { name: string; at: number; mono: number; info: RunInfo }[] = [];
  const running = new Set<string>();
  let peak = 0;
  let overlap = false;
  let saved: SchedulerState | undefined;
  const scheduler = new Scheduler({
    policies: Object.entries(policies).map(([name, schedule]) => ({ name, ...(schedule !== undefined ? { schedule } : {}), ...(o.waitFirst?.has(name) === true ? { waitFirst: true } : {}) })),
    clock,
    ...(o.max !== undefined ? { maxConcurrent: o.max } : {}),
    state: { read: () => Promise.resolve(structuredClone(o.state ?? { version: 1 as const, policies: {} })), write: (s) => Promise.resolve(void (saved = s)) },
    onEvent: (e) => events.push(e),
    run: (name, info) =>
      new Promise<RunResult>((res) => {
        if (running.has(name)) overlap = true;
        running.add(name);
        peak = Math.max(peak, running.size);
        starts.push({ name, at: clock.now(), mono: clock.mono, info });
        clock.setTimer(o.durations?.[name] ?? S, () => {
          running.delete(name);
          res(o.fail?.has(name) === true ? { ok: false, code: 'HOOK', message: 'pre hook 1 failed' } : { ok: true, snapshotId: 'ab'.repeat(32) });
        });
      }),
  });
  return { clock, scheduler, events, starts, peak: () => peak, overlap: () => overlap, saved: () => saved, of: (t: SchedulerEvent['type']) => events.filter((e) => e.type === t) };
}

describe('next run times', () => {
  test('every D: D after the given time', () => {
    assert.equal(nextRunAfter(every(15 * M), T0), T0 + 15 * M);
  });
  test('cron: the next match after the time, in the schedule timezone (croner)', () => {
    assert.equal(nextRunAfter(cron('0 2 * * *', 'UTC'), Date.parse('2026-12-06T03:00:00Z')), Date.parse('2026-12-07T02:00:00Z'));
    assert.equal(nextRunAfter(cron('0 2 * * *', 'UTC'), Date.parse('2026-12-06T01:59:00Z')), Date.parse('2026-12-06T02:00:00Z'));
    // Berlin is UTC+1 in December, UTC+2 in July
    assert.equal(nextRunAfter(cron('0 2 * * *', 'Europe/Berlin'), Date.parse('2026-12-06T03:00:00Z')), Date.parse('2026-12-07T01:00:00Z'));
    assert.equal(nextRunAfter(cron('0 2 * * *', 'Europe/Berlin'), Date.parse('2026-07-06T03:00:00Z')), Date.parse('2026-07-07T00:00:00Z'));
    assert.equal(nextRunAfter(cron('*/10 * * * * *', 'UTC'), Date.parse('2026-12-06T03:00:05Z')), Date.parse('2026-12-06T03:00:10Z'));
  });
});

describe('scheduler', () => {
  test('every D: a policy never run runs at start, then every D', async () => {
    const h = harness({ a: every(10 * M) });
    await h.scheduler.start();
    await h.clock.advance(35 * M);
    assert.deepEqual(h.starts.map((s) => (s.at - T0) / M), [0, 10, 20, 30]);
    assert.deepEqual(h.of('run-start').map((e) => (e as { reason: string }).reason), ['first-run', 'schedule', 'schedule', 'schedule']);
    assert.equal(h.of('run-end').length, 4);
    assert.equal(h.saved()!.policies['a']!.outcome, 'ok');
    assert.equal(h.saved()!.policies['a']!.lastStart, new Date(T0 + 30 * M).toISOString());
  });

  test('a drill job (NAME/drill, waitFirst) waits for its first tick; it runs beside its policy\'s backup, never beside itself', async () => {
    const h = harness({ a: every(10 * M), 'a/drill': every(10 * M) }, { waitFirst: new Set(['a/drill']), durations: { a: 2 * M, 'a/drill': 25 * M } });
    await h.scheduler.start();
    await h.clock.advance(45 * M);
    const at = (n: string): number[] => h.starts.filter((s) => s.name === n).map((s) => (s.at - T0) / M);
    assert.deepEqual(at('a'), [0, 10, 20, 30, 40]);
    // the drill's first run comes one interval after start (the first backup first); a tick during its 25-minute run is skipped
    assert.deepEqual(at('a/drill'), [10, 40]);
    assert.equal(h.overlap(), false);
    assert.equal(h.peak(), 2, 'the backup and the drill of one policy ran at once');
    assert.equal(h.of('tick-skipped').filter((e) => (e as { policy: string }).policy === 'a/drill').length, 2);
  });

  test('cron: nothing at start without a recorded run; runs at each match', async () => {
    const h = harness({ b: cron('0 * * * *', 'UTC') });
    await h.scheduler.start();
    assert.equal(h.scheduler.nextRuns()['b'], Date.parse('2026-12-06T11:00:00Z'));
    await h.clock.advance(2 * H + 30 * M);
    assert.deepEqual(h.starts.map((s) => new Date(s.at).toISOString()), ['2026-12-06T11:00:00.000Z', '2026-12-06T12:00:00.000Z']);
  });

  test('a tick during a running run of the same policy is skipped, not queued; runs never overlap', async () => {
    const h = harness({ a: every(1 * M) }, { durations: { a: 150 * S } });
    await h.scheduler.start();
    await h.clock.advance(9 * M + 30 * S);
    assert.equal(h.overlap(), false);
    // runs at 0, 3, 6, 9 min (each takes 2.5 min; the ticks at 1, 2, 4, 5, 7, 8 are skipped)
    assert.deepEqual(h.starts.map((s) => (s.at - T0) / M), [0, 3, 6, 9]);
    assert.equal(h.of('tick-skipped').length, 6);
    assert.match((h.of('tick-skipped')[0] as { reason: string }).reason, /still going/);
  });

  test('after downtime, a missed run is caught up once, not once per missed tick', async () => {
    const last = { lastStart: new Date(T0 - 10 * H).toISOString(), lastEnd: new Date(T0 - 10 * H + M).toISOString(), outcome: 'ok' as const };
    const h = harness({ a: every(1 * H), b: cron('0 * * * *', 'UTC') }, { state: { version: 1, policies: { a: last, b: last } } });
    await h.scheduler.start();
    await h.clock.advance(30 * M);
    assert.deepEqual(h.starts.map((s) => [s.name, s.at - T0]), [['a', 0], ['b', 0]]);
    assert.deepEqual(h.of('run-start').map((e) => (e as { reason: string }).reason), ['catch-up', 'catch-up']);
    // then the regular schedule: a one hour after the catch-up, b at the next full hour
    await h.clock.advance(60 * M);
    assert.deepEqual(h.starts.slice(2).map((s) => [s.name, (s.at - T0) / M]).sort(), [['a', 60], ['b', 60]]);
  });

  test('a wall-clock jump: forward, a skipped cron run runs once; backward, none repeats; every keeps its real-time interval', async () => {
    const h = harness({ c: cron('0 * * * *', 'UTC'), e: every(20 * M) });
    await h.scheduler.start();
    const at = (n: string) => h.starts.filter((s) => s.name === n).map((s) => new Date(s.at).toISOString().slice(11, 16));
    await h.clock.advance(10 * M); // 10:10; e ran at 10:00
    h.clock.jump(3 * H); // 13:10: the 11:00, 12:00 and 13:00 runs of c were skipped
    await h.clock.advance(1 * M);
    assert.deepEqual(at('c'), ['13:10'], 'c runs once, within a check period of the jump');
    assert.equal((h.of('run-start').find((e) => (e as { policy: string }).policy === 'c') as { reason: string }).reason, 'catch-up');
    const jumps = h.of('clock-jump') as { jumpSeconds: number }[];
    assert.equal(jumps.length, 1);
    assert.equal(jumps[0]!.jumpSeconds, 3 * 3600);
    await h.clock.advance(50 * M); // 14:01
    assert.deepEqual(at('c'), ['13:10', '14:00']);
    assert.deepEqual(at('e'), ['10:00', '13:20', '13:40', '14:00'], 'e keeps 20 minutes of real time across the jump');
    h.clock.jump(-2 * H); // 12:01: c's 13:00 and 14:00 runs were made
    await h.clock.advance(2 * H + 10 * M); // 14:11
    assert.deepEqual(at('c'), ['13:10', '14:00'], 'no run of c is repeated after a backward jump');
    await h.clock.advance(1 * H);
    assert.deepEqual(at('c'), ['13:10', '14:00', '15:00']);
    const e = h.starts.filter((s) => s.name === 'e').slice(1);
    const gaps = e.slice(1).map((s, i) => (s.mono - e[i]!.mono) / M);
    assert.ok(gaps.length >= 8 && gaps.every((g) => g === 20), `e stays every 20 minutes of real time (${gaps.join(', ')})`);
    assert.equal(h.overlap(), false);
  });

  test('a run not yet due after a restart waits for its time (anchored at the last start)', async () => {
    const h = harness({ a: every(1 * H) }, { state: { version: 1, policies: { a: { lastStart: new Date(T0 - 20 * M).toISOString(), outcome: 'ok' } } } });
    await h.scheduler.start();
    await h.clock.advance(39 * M);
    assert.equal(h.starts.length, 0);
    await h.clock.advance(2 * M);
    assert.deepEqual(h.starts.map((s) => (s.at - T0) / M), [40]);
  });

  test('concurrency is bounded: at most max runs at once, the others wait for a slot', async () => {
    const h = harness({ a: every(1 * H), b: every(1 * H), c: every(1 * H), d: every(1 * H), e: every(1 * H) }, { max: 2, durations: { a: 10 * M, b: 10 * M, c: 10 * M, d: 10 * M, e: 10 * M } });
    await h.scheduler.start();
    await h.clock.advance(35 * M);
    assert.equal(h.peak(), 2);
    assert.deepEqual(h.starts.map((s) => [s.name, (s.at - T0) / M]), [['a', 0], ['b', 0], ['c', 10], ['d', 10], ['e', 20]]);
    assert.equal(h.of('waiting').length, 3);
    assert.equal(h.overlap(), false);
  });

  test('a failed run is reported and recorded; the schedule goes on', async () => {
    const h = harness({ a: every(5 * M) }, { fail: new Set(['a']) });
    await h.scheduler.start();
    await h.clock.advance(6 * M);
    const end = h.of('run-end')[0] as Extract<SchedulerEvent, { type: 'run-end' }>;
    assert.equal(end.ok, false);
    assert.equal(end.code, 'HOOK');
    assert.equal(h.saved()!.policies['a']!.outcome, 'failed');
    assert.equal(h.starts.length, 2);
  });

  test('stop: no new runs; a running job that ends within the grace period ends normally', async () => {
    const h = harness({ a: every(1 * M) }, { durations: { a: 3 * M } });
    await h.scheduler.start();
    await h.clock.advance(30 * S);
    const stopped = h.scheduler.stop(5 * M);
    await h.clock.advance(1 * H);
    assert.deepEqual(await stopped, { abandoned: [] });
    assert.equal(h.starts.length, 1, 'no run started after stop');
    assert.equal(h.saved()!.policies['a']!.outcome, 'ok');
    assert.deepEqual(h.events.slice(-1)[0], { type: 'stopped', at: new Date(T0 + 3 * M).toISOString(), abandoned: [] });
  });

  test('stop: a job still running after the grace period is abandoned and recorded as interrupted', async () => {
    const h = harness({ a: every(1 * H), b: every(1 * H), c: every(1 * H) }, { max: 2, durations: { a: 2 * M, b: 30 * M, c: 1 * M } });
    await h.scheduler.start();
    await h.clock.advance(1 * M);
    assert.equal(h.of('waiting').length, 1);
    const stopped = h.scheduler.stop(5 * M);
    await h.clock.advance(10 * M);
    assert.deepEqual(await stopped, { abandoned: ['b'] });
    assert.deepEqual(h.starts.map((s) => s.name), ['a', 'b'], 'the waiting policy c never started');
    assert.equal(h.saved()!.policies['a']!.outcome, 'ok');
    assert.equal(h.saved()!.policies['b']!.outcome, 'interrupted');
    assert.equal(h.saved()!.policies['b']!.lastEnd, new Date(T0 + 6 * M).toISOString());
  });
});

describe('reload', () => {
  test('a removed policy gets no new run (its running one ends), a new one is armed, a changed schedule applies', async () => {
    const h = harness({ a: every(10 * M), b: every(10 * M), gone: every(10 * M) }, { durations: { gone: 3 * M }, max: 3 });
    await h.scheduler.start();
    await h.clock.advance(1 * M);
    assert.deepEqual(h.scheduler.running(), ['gone']);
    h.scheduler.reload([
      { name: 'a', schedule: every(10 * M) },
      { name: 'b', schedule: every(30 * M) },
      { name: 'c', schedule: every(10 * M) },
    ]);
    await h.clock.advance(34 * M);
    const at = (n: string) => h.starts.filter((s) => s.name === n).map((s) => (s.at - T0) / M);
    assert.deepEqual(at('gone'), [0], 'no run of a removed policy after the reload');
    assert.equal(h.of('run-end').filter((e) => (e as { policy: string }).policy === 'gone').length, 1, 'its running run ended normally');
    assert.deepEqual(at('a'), [0, 10, 20, 30], 'an unchanged policy keeps its times');
    assert.deepEqual(at('b'), [0, 30], 'a changed schedule counts from the last start');
    assert.deepEqual(at('c'), [1, 11, 21, 31], 'a new policy runs at once (never ran), then on its schedule');
  });
});

describe('state file', () => {
  test('written atomically and read back; missing is empty; damaged is empty with one warning', async () => {
    const dir = tmpdir('sched-state');
    try {
      const file = path.join(dir, 'sub', 'state.json');
      const warnings: string[] = [];
      assert.deepEqual(await readState(file, (m) => warnings.push(m)), { version: 1, policies: {} });
      const s: SchedulerState = { version: 1, policies: { a: { lastStart: '2026-12-06T10:00:00.000Z', lastEnd: '2026-12-06T10:01:00.000Z', outcome: 'ok', snapshotId: 'ab'.repeat(32) } } };
      await writeState(file, s);
      assert.deepEqual(await readState(file, (m) => warnings.push(m)), s);
      assert.deepEqual(await fsp.readdir(path.dirname(file)), ['state.json'], 'no temporary file left');
      assert.equal(warnings.length, 0);
      await fsp.writeFile(file, '{"version": 1, "policies": {"a": {"lastSta');
      assert.deepEqual(await readState(file, (m) => warnings.push(m)), { version: 1, policies: {} });
      await fsp.writeFile(file, '{"version": 1, "policies": {"a": {"lastStart": "yesterday"}}}');
      assert.deepEqual(await readState(file, (m) => warnings.push(m)), { version: 1, policies: {} });
      assert.equal(warnings.length, 2);
      for (const w of warnings) assert.ok(!w.includes('\n') && w.includes(file) && /starting without it/.test(w), w);
    } finally {
      await rmrf(dir);
    }
  });
});

describe('runNow (a triggered run)', () => {
  test('starts at once with reason trigger and its extra; refused while the policy runs; the schedule does not move', async () => {
    const h = harness({ a: every(1 * H) }, { durations: { a: 10 * M } });
    assert.deepEqual(h.scheduler.runNow('a'), { accepted: false, refusal: 'stopping', reason: 'the scheduler has not started yet' });
    await h.scheduler.start();
    await h.clock.advance(20 * M); // the first run (0-10 min) is over
    const next = h.scheduler.nextRuns()['a'];
    assert.deepEqual(h.scheduler.runNow('a', { tags: { deploy: 'v1' }, runId: '0123456789abcdef' }), { accepted: true, reason: 'started' });
    assert.deepEqual([h.starts[1]!.name, h.starts[1]!.at, h.starts[1]!.info], ['a', T0 + 20 * M, { reason: 'trigger', extra: { tags: { deploy: 'v1' }, runId: '0123456789abcdef' } }]);
    const busy = h.scheduler.runNow('a');
    assert.equal(busy.accepted, false);
    assert.equal(busy.refusal, 'busy');
    assert.match(busy.reason ?? '', /a is running: one run of a policy at a time/);
    assert.equal(h.scheduler.nextRuns()['a'], next, 'the next scheduled run stays');
    assert.deepEqual(h.scheduler.runNow('nope'), { accepted: false, refusal: 'unknown', reason: 'no policy is named nope' });
    await h.clock.advance(50 * M);
    assert.deepEqual(h.starts.map((x) => [(x.at - T0) / M, x.info.reason]), [[0, 'first-run'], [20, 'trigger'], [60, 'schedule']]);
    assert.equal(h.overlap(), false);
    const stopping = h.scheduler.stop(1 * H);
    assert.equal(h.scheduler.runNow('a').refusal, 'stopping');
    await h.clock.advance(1 * H);
    await stopping;
  });

  test('queued when every slot is taken (then refused while it waits); a policy without a schedule runs only when triggered', async () => {
    const h = harness({ a: every(1 * H), b: undefined }, { max: 1, durations: { a: 10 * M, b: 5 * M } });
    await h.scheduler.start();
    assert.equal(h.scheduler.nextRuns()['b'], undefined, 'no timer for b');
    assert.deepEqual(h.scheduler.runNow('b', { runId: 'feedfeedfeedfeed' }), { accepted: true, reason: 'queued' });
    assert.equal(h.scheduler.runNow('b').refusal, 'busy', 'refused while it waits for a slot');
    assert.equal(h.of('waiting').length, 1);
    await h.clock.advance(3 * H);
    assert.deepEqual(h.starts.map((x) => [x.name, (x.at - T0) / M, x.info.reason]), [['a', 0, 'first-run'], ['b', 10, 'trigger'], ['a', 60, 'schedule'], ['a', 120, 'schedule'], ['a', 180, 'schedule']]);
    assert.deepEqual(h.starts[1]!.info.extra, { runId: 'feedfeedfeedfeed' });
    assert.equal(h.peak(), 1);
  });
});
