/**
 * Retention policy (src/snapshot/retention.ts): durations, UTC and ISO-week buckets, each rule on
 * its own and combined, groups, reasons, refusals, and a seeded comparison with a brute-force
 * model of the documented semantics.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors/index.ts';
import { BAD_TIME_REASON, NO_RULE_REASON, applyPolicy, applyToGroup, bucketOf, hasKeepRule, isoWeek, parseGroupBy, validatePolicy } from '../../src/snapshot/retention.ts';
import type { RetentionItem, RetentionPolicy } from '../../src/snapshot/retention.ts';
import { Rng } from '../../lab/gen/rng.ts';

const MIN = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

let seq = 0;
/** A synthetic snapshot; ids sort in creation order so ties are predictable. */
function snap(time: string, opts: { host?: string; paths?: string[]; tags?: string[]; id?: string } = {}): RetentionItem {
  seq++;
  return { id: opts.id ?? `s${String(seq).padStart(4, '0')}-${time}`, snapshot: { time, host: opts.host ?? 'web-1', paths: opts.paths ?? ['/data'], tags: opts.tags ?? [] } };
}

const isUsage = (err: unknown): boolean => err instanceof UsageError && err.code === 'USAGE';

/** keep/remove of a single group as {time: reasons} maps, for readable assertions. */
function decide(items: RetentionItem[], p: RetentionPolicy): { keep: Record<string, string[]>; remove: string[] } {
  const r = applyToGroup(items, p);
  return { keep: Object.fromEntries(r.keep.map((d) => [d.item.snapshot.time, d.reasons])), remove: r.remove.map((d) => d.item.snapshot.time) };
}

describe('buckets', () => {
  it('ISO weeks around the 2026/2027 year end (2026 has 53 weeks)', () => {
    const w = (s: string): string => bucketOf('weekly', Date.parse(s));
    assert.equal(w('2026-01-01T00:00:00Z'), '2026-W01'); // a Thursday: week 1 of 2026
    assert.equal(w('2025-12-29T00:00:00Z'), '2026-W01'); // its Monday, still in 2025
    assert.equal(w('2025-12-28T23:59:59.999Z'), '2025-W52');
    assert.equal(w('2026-12-27T23:59:59Z'), '2026-W52'); // Sunday
    assert.equal(w('2026-12-28T00:00:00Z'), '2026-W53'); // Monday
    assert.equal(w('2026-12-31T12:00:00Z'), '2026-W53');
    assert.equal(w('2027-01-01T00:00:00Z'), '2026-W53'); // a Friday of 2027 in 2026's last week
    assert.equal(w('2027-01-03T23:59:59.999Z'), '2026-W53');
    assert.equal(w('2027-01-04T00:00:00Z'), '2027-W01');
    assert.equal(w('2024-12-30T00:00:00Z'), '2025-W01'); // a December day in the next ISO year
    assert.equal(w('2021-01-03T00:00:00Z'), '2020-W53');
  });

  it('ISO weeks over 40 years: change exactly on Mondays, number 1..53, week 1 holds 4 January', () => {
    let prev = isoWeek(new Date(Date.UTC(1999, 11, 31)));
    for (let t = Date.UTC(2000, 0, 1); t < Date.UTC(2040, 0, 1); t += DAY) {
      const d = new Date(t);
      const w = isoWeek(d);
      const monday = d.getUTCDay() === 1;
      assert.equal(w.year !== prev.year || w.week !== prev.week, monday, d.toISOString());
      if (monday) assert.ok(w.week === prev.week + 1 || (w.week === 1 && w.year === prev.year + 1 && prev.week >= 52), d.toISOString());
      assert.ok(w.week >= 1 && w.week <= 53);
      if (d.getUTCMonth() === 0 && d.getUTCDate() === 4) assert.deepEqual(w, { year: d.getUTCFullYear(), week: 1 });
      prev = w;
    }
  });

  it('uses UTC whatever the offset written in the time', () => {
    const t = Date.parse('2026-11-20T23:30:00-05:00'); // 2026-11-21T04:30Z
    assert.equal(bucketOf('hourly', t), '2026-11-21T04');
    assert.equal(bucketOf('daily', t), '2026-11-21');
    assert.equal(bucketOf('monthly', Date.parse('2026-11-30T22:00:00-03:00')), '2026-12');
    assert.equal(bucketOf('yearly', Date.parse('2026-12-31T20:00:00-05:00')), '2027');
    assert.equal(bucketOf('weekly', Date.parse('2027-01-03T20:00:00-05:00')), '2027-W01'); // Monday in UTC
  });
});

describe('policy rules', () => {
  it('refuses a policy without a keep rule, and bad counts', () => {
    assert.equal(hasKeepRule({}), false);
    assert.equal(hasKeepRule({ tags: [] }), false);
    assert.throws(() => applyPolicy([snap('2026-11-20T10:00:00Z')], {}), (e: unknown) => isUsage(e) && /at least one of --keep-last/.test((e as Error).message));
    assert.throws(() => validatePolicy({ tags: [] }), isUsage);
    for (const n of [0, -2, 1.5, Number.NaN, Infinity]) assert.throws(() => validatePolicy({ daily: n }), isUsage, String(n));
    assert.throws(() => validatePolicy({ within: 0 }), isUsage);
    assert.throws(() => validatePolicy({ within: -5 }), isUsage);
    validatePolicy({ last: -1 });
    validatePolicy({ within: 1 });
    validatePolicy({ tags: ['a=b'] });
  });

  it('last N keeps the N newest, whatever the input order; -1 keeps all', () => {
    const times = ['2026-11-20T10:00:00Z', '2026-11-20T11:00:00Z', '2026-11-20T12:00:00Z', '2026-11-19T09:00:00Z', '2026-11-21T00:00:00Z'];
    const items = times.map((t) => snap(t));
    const r = decide(items, { last: 3 });
    assert.deepEqual(r.keep, { '2026-11-21T00:00:00Z': ['last'], '2026-11-20T12:00:00Z': ['last'], '2026-11-20T11:00:00Z': ['last'] });
    assert.deepEqual(r.remove, ['2026-11-20T10:00:00Z', '2026-11-19T09:00:00Z']);
    assert.deepEqual(decide([...items].reverse(), { last: 3 }), r);
    assert.deepEqual(decide(items, { last: -1 }).remove, []);
    assert.deepEqual(decide(items, { last: 10 }).remove, []);
  });

  it('removal reasons name that no rule matched', () => {
    const r = applyToGroup([snap('2026-11-20T10:00:00Z'), snap('2026-11-20T11:00:00Z')], { last: 1 });
    assert.deepEqual(r.remove.map((d) => d.reasons), [[NO_RULE_REASON]]);
  });

  it('daily N keeps the newest of each of the N newest days that have snapshots; empty days do not count', () => {
    const items = [
      snap('2026-11-20T23:59:59.999Z'),
      snap('2026-11-20T12:00:00Z'),
      snap('2026-11-20T00:00:00Z'),
      // no snapshot on the 19th
      snap('2026-11-18T18:00:00Z'),
      snap('2026-11-18T06:00:00Z'),
      snap('2026-11-17T10:00:00Z'),
      snap('2026-11-16T10:00:00Z'),
    ];
    const r = decide(items, { daily: 3 });
    assert.deepEqual(r.keep, {
      '2026-11-20T23:59:59.999Z': ['daily 2026-11-20'],
      '2026-11-18T18:00:00Z': ['daily 2026-11-18'],
      '2026-11-17T10:00:00Z': ['daily 2026-11-17'],
    });
    assert.deepEqual(r.remove, ['2026-11-20T12:00:00Z', '2026-11-20T00:00:00Z', '2026-11-18T06:00:00Z', '2026-11-16T10:00:00Z']);
    // -1: one per day, for all days
    assert.deepEqual(Object.keys(decide(items, { daily: -1 }).keep).length, 4);
  });

  it('hourly splits at the hour boundary', () => {
    const r = decide([snap('2026-11-20T11:00:00.000Z'), snap('2026-11-20T10:59:59.999Z'), snap('2026-11-20T10:00:00Z'), snap('2026-11-20T09:30:00Z')], { hourly: 2 });
    assert.deepEqual(r.keep, { '2026-11-20T11:00:00.000Z': ['hourly 2026-11-20T11'], '2026-11-20T10:59:59.999Z': ['hourly 2026-11-20T10'] });
    assert.deepEqual(r.remove, ['2026-11-20T10:00:00Z', '2026-11-20T09:30:00Z']);
  });

  it('weekly follows ISO weeks across the 2026/2027 year end', () => {
    const items = ['2027-01-04T08:00:00Z', '2027-01-03T08:00:00Z', '2027-01-01T08:00:00Z', '2026-12-31T08:00:00Z', '2026-12-28T08:00:00Z', '2026-12-27T08:00:00Z', '2026-12-21T08:00:00Z'].map((t) => snap(t));
    const r = decide(items, { weekly: 3 });
    assert.deepEqual(r.keep, { '2027-01-04T08:00:00Z': ['weekly 2027-W01'], '2027-01-03T08:00:00Z': ['weekly 2026-W53'], '2026-12-27T08:00:00Z': ['weekly 2026-W52'] });
    assert.deepEqual(r.remove, ['2027-01-01T08:00:00Z', '2026-12-31T08:00:00Z', '2026-12-28T08:00:00Z', '2026-12-21T08:00:00Z']);
  });

  it('monthly and yearly split at the UTC month and year boundary', () => {
    const items = ['2027-01-01T00:00:00Z', '2026-12-31T23:59:59.999Z', '2026-12-01T00:00:00Z', '2026-11-30T23:59:59Z', '2025-06-15T00:00:00Z', '2024-02-29T12:00:00Z', '2024-01-01T00:00:00Z'].map((t) => snap(t));
    const m = decide(items, { monthly: 3 });
    assert.deepEqual(m.keep, { '2027-01-01T00:00:00Z': ['monthly 2027-01'], '2026-12-31T23:59:59.999Z': ['monthly 2026-12'], '2026-11-30T23:59:59Z': ['monthly 2026-11'] });
    const y = decide(items, { yearly: -1 });
    assert.deepEqual(y.keep, { '2027-01-01T00:00:00Z': ['yearly 2027'], '2026-12-31T23:59:59.999Z': ['yearly 2026'], '2025-06-15T00:00:00Z': ['yearly 2025'], '2024-02-29T12:00:00Z': ['yearly 2024'] });
    assert.deepEqual(y.remove, ['2026-12-01T00:00:00Z', '2026-11-30T23:59:59Z', '2024-01-01T00:00:00Z']);
  });

  it('within keeps what is no older than the group newest minus the duration (inclusive), not the clock', () => {
    const items = ['2026-11-20T12:00:00Z', '2026-11-17T12:00:00Z', '2026-11-13T12:00:00Z', '2026-11-13T11:59:59.999Z', '2026-10-01T00:00:00Z'].map((t) => snap(t));
    const r = decide(items, { within: 7 * DAY, withinLabel: '7d' });
    assert.deepEqual(r.keep, { '2026-11-20T12:00:00Z': ['within 7d'], '2026-11-17T12:00:00Z': ['within 7d'], '2026-11-13T12:00:00Z': ['within 7d'] });
    assert.deepEqual(r.remove, ['2026-11-13T11:59:59.999Z', '2026-10-01T00:00:00Z']);
    // the label defaults to the formatted duration
    assert.deepEqual(decide(items, { within: 10 * DAY }).keep['2026-11-20T12:00:00Z'], ['within 1w3d']);
    // a group whose backups stopped long ago still keeps its newest ones
    const old = ['2020-01-10T00:00:00Z', '2020-01-09T00:00:00Z', '2019-01-01T00:00:00Z'].map((t) => snap(t));
    assert.deepEqual(decide(old, { within: 2 * DAY }).remove, ['2019-01-01T00:00:00Z']);
  });

  it('tags keep snapshots carrying any listed tag', () => {
    const items = [snap('2026-11-20T03:00:00Z', { tags: ['app=reviews'] }), snap('2026-11-20T02:00:00Z', { tags: ['app=reviews', 'env=prod'] }), snap('2026-11-20T01:00:00Z', { tags: ['env=staging', 'release=1.2'] }), snap('2026-11-20T00:00:00Z', { tags: ['env=prod=x'] })];
    const r = decide(items, { tags: ['env=prod', 'release=1.2'] });
    assert.deepEqual(r.keep, { '2026-11-20T02:00:00Z': ['tag env=prod'], '2026-11-20T01:00:00Z': ['tag release=1.2'] });
    assert.deepEqual(r.remove, ['2026-11-20T03:00:00Z', '2026-11-20T00:00:00Z']);
  });

  it('combined rules: every rule that keeps a snapshot is a reason; counts run independently', () => {
    // one snapshot every 6 hours from 2026-10-25 to 2026-11-20 18:00
    const items: RetentionItem[] = [];
    for (let t = Date.parse('2026-10-25T00:00:00Z'); t <= Date.parse('2026-11-20T18:00:00Z'); t += 6 * HOUR) items.push(snap(new Date(t).toISOString(), { tags: t === Date.parse('2026-10-25T06:00:00Z') ? ['keep=forever'] : [] }));
    const r = decide(items, { last: 2, daily: 3, weekly: 2, monthly: 2, within: 12 * HOUR, withinLabel: '12h', tags: ['keep=forever'] });
    assert.deepEqual(r.keep, {
      '2026-11-20T18:00:00.000Z': ['last', 'daily 2026-11-20', 'weekly 2026-W47', 'monthly 2026-11', 'within 12h'],
      '2026-11-20T12:00:00.000Z': ['last', 'within 12h'],
      '2026-11-20T06:00:00.000Z': ['within 12h'],
      '2026-11-19T18:00:00.000Z': ['daily 2026-11-19'],
      '2026-11-18T18:00:00.000Z': ['daily 2026-11-18'],
      '2026-11-15T18:00:00.000Z': ['weekly 2026-W46'], // Sunday of the week before
      '2026-10-31T18:00:00.000Z': ['monthly 2026-10'],
      '2026-10-25T06:00:00.000Z': ['tag keep=forever'],
    });
    assert.equal(r.remove.length, items.length - 8);
  });

  it('a snapshot whose time cannot be read is kept, never removed', () => {
    const r = applyToGroup([snap('2026-11-20T10:00:00Z'), snap('not a time'), snap('2026-11-19T10:00:00Z')], { last: 1 });
    assert.deepEqual(r.keep.map((d) => [d.item.snapshot.time, d.reasons]), [['2026-11-20T10:00:00Z', ['last']], ['not a time', [BAD_TIME_REASON]]]);
    assert.deepEqual(r.remove.map((d) => d.item.snapshot.time), ['2026-11-19T10:00:00Z']);
  });

  it('equal times are ordered by id, so the result does not depend on input order', () => {
    const a = snap('2026-11-20T10:00:00Z', { id: 'aaaa' });
    const b = snap('2026-11-20T10:00:00Z', { id: 'bbbb' });
    for (const items of [[a, b], [b, a]]) {
      const r = applyToGroup(items, { daily: 1 });
      assert.deepEqual(r.keep.map((d) => d.item.id), ['bbbb']);
      assert.deepEqual(r.remove.map((d) => d.item.id), ['aaaa']);
    }
  });
});

describe('groups', () => {
  const items = [
    snap('2026-11-20T10:00:00Z', { host: 'web-1', paths: ['/b', '/a'] }),
    snap('2026-11-20T09:00:00Z', { host: 'web-1', paths: ['/a', '/b'], tags: ['env=prod'] }),
    snap('2026-11-20T08:00:00Z', { host: 'web-1', paths: ['/a', '/b'] }),
    snap('2026-11-20T10:30:00Z', { host: 'web-1', paths: ['/c'] }),
    snap('2026-11-20T07:00:00Z', { host: 'web-2', paths: ['/a', '/b'], tags: ['env=prod'] }),
    snap('2026-11-20T06:00:00Z', { host: 'web-2', paths: ['/a', '/b'] }),
  ];

  it('parses --group-by into a fixed order, refuses unknown fields', () => {
    assert.deepEqual(parseGroupBy('host,paths'), ['host', 'paths']);
    assert.deepEqual(parseGroupBy(' paths , host '), ['host', 'paths']);
    assert.deepEqual(parseGroupBy('tags,host,tags'), ['host', 'tags']);
    assert.deepEqual(parseGroupBy(''), []);
    assert.throws(() => parseGroupBy('host,path'), (e: unknown) => isUsage(e) && /"path" is not one of host, paths, tags/.test((e as Error).message));
    assert.throws(() => parseGroupBy('host,'), isUsage);
  });

  it('default host,paths: counts restart in every group; path order does not split a group', () => {
    const g = applyPolicy(items, { last: 1 });
    assert.deepEqual(
      g.map((x) => [x.key, x.keep.map((d) => d.item.snapshot.time), x.remove.map((d) => d.item.snapshot.time)]),
      [
        [{ host: 'web-1', paths: ['/a', '/b'] }, ['2026-11-20T10:00:00Z'], ['2026-11-20T09:00:00Z', '2026-11-20T08:00:00Z']],
        [{ host: 'web-1', paths: ['/c'] }, ['2026-11-20T10:30:00Z'], []],
        [{ host: 'web-2', paths: ['/a', '/b'] }, ['2026-11-20T07:00:00Z'], ['2026-11-20T06:00:00Z']],
      ],
    );
  });

  it('host only, tags, and one group', () => {
    const byHost = applyPolicy(items, { last: 1 }, ['host']);
    assert.deepEqual(byHost.map((x) => [x.key, x.keep.length, x.remove.length]), [[{ host: 'web-1' }, 1, 3], [{ host: 'web-2' }, 1, 1]]);
    assert.equal(byHost[0]!.keep[0]!.item.snapshot.time, '2026-11-20T10:30:00Z');
    const byTags = applyPolicy(items, { last: 1 }, ['host', 'paths', 'tags']);
    assert.equal(byTags.length, 5);
    assert.deepEqual(byTags.map((x) => x.key.tags), [[], ['env=prod'], [], [], ['env=prod']]);
    const one = applyPolicy(items, { last: 2 }, []);
    assert.deepEqual(one.map((x) => [x.key, x.keep.map((d) => d.item.snapshot.time)]), [[{}, ['2026-11-20T10:30:00Z', '2026-11-20T10:00:00Z']]]);
    assert.equal(one[0]!.remove.length, 4);
  });

  it('within is measured from each group newest snapshot', () => {
    const g = applyPolicy(items, { within: HOUR }, ['host']);
    assert.deepEqual(g.map((x) => x.keep.map((d) => d.item.snapshot.time)), [['2026-11-20T10:30:00Z', '2026-11-20T10:00:00Z'], ['2026-11-20T07:00:00Z', '2026-11-20T06:00:00Z']]);
  });

  it('no snapshots: no groups', () => {
    assert.deepEqual(applyPolicy([], { last: 1 }), []);
  });
});

describe('against a brute-force model (seeded)', () => {
  type Rule = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';
  // bucket identities computed differently from the implementation (labels are not compared)
  const model: Record<Rule, (ms: number) => number> = {
    hourly: (ms) => Math.floor(ms / HOUR),
    daily: (ms) => Math.floor(ms / DAY),
    // 1970-01-01 was a Thursday: the Monday starting a day's week is day - ((day + 3) mod 7)
    weekly: (ms) => {
      const day = Math.floor(ms / DAY);
      return day - (((day + 3) % 7) + 7) % 7;
    },
    monthly: (ms) => new Date(ms).getUTCFullYear() * 12 + new Date(ms).getUTCMonth(),
    yearly: (ms) => new Date(ms).getUTCFullYear(),
  };

  function expected(items: RetentionItem[], p: RetentionPolicy): Map<string, string[]> {
    const list = [...items].sort((a, b) => Date.parse(b.snapshot.time) - Date.parse(a.snapshot.time) || (a.id < b.id ? 1 : -1));
    const out = new Map<string, string[]>(list.map((s) => [s.id, []]));
    if (p.last !== undefined) list.forEach((s, i) => (p.last === -1 || i < p.last! ? out.get(s.id)!.push('last') : undefined));
    for (const r of ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as Rule[]) {
      const n = p[r];
      if (n === undefined) continue;
      const buckets: number[] = [];
      const first = new Map<number, string>(); // bucket -> newest snapshot in it
      for (const s of list) {
        const b = model[r](Date.parse(s.snapshot.time));
        if (!first.has(b)) {
          first.set(b, s.id);
          buckets.push(b);
        }
      }
      for (const b of n === -1 ? buckets : buckets.slice(0, n)) out.get(first.get(b)!)!.push(r);
    }
    if (p.within !== undefined && list.length > 0) {
      const newest = Date.parse(list[0]!.snapshot.time);
      for (const s of list) if (Date.parse(s.snapshot.time) >= newest - p.within) out.get(s.id)!.push('within');
    }
    for (const s of list) for (const t of p.tags ?? []) if (s.snapshot.tags.includes(t)) out.get(s.id)!.push('tag');
    return out;
  }

  it('500 random histories and policies give the model result, reasons included', () => {
    const rng = new Rng(20261122);
    const count = (): number | undefined => rng.weighted<number | undefined>([[undefined, 3], [-1, 1], [1, 1], [2, 1], [3, 1], [7, 1]]);
    for (let round = 0; round < 500; round++) {
      const n = rng.int(0, 60);
      const start = Date.parse('2025-06-01T00:00:00Z') + rng.int(0, 400) * DAY;
      // spread: minutes to months between snapshots; whole minutes so equal times happen
      const span = rng.pick([3 * HOUR, 3 * DAY, 60 * DAY, 900 * DAY]);
      const items = Array.from({ length: n }, (_, i) =>
        snap(new Date(start + Math.floor(rng.int(0, span) / MIN) * MIN).toISOString(), { id: `r${round}-${String(i).padStart(3, '0')}`, tags: rng.chance(0.15) ? ['env=prod'] : rng.chance(0.1) ? ['app=x'] : [] }),
      );
      let p: RetentionPolicy = {};
      while (!hasKeepRule(p)) {
        p = { last: count(), hourly: count(), daily: count(), weekly: count(), monthly: count(), yearly: count() };
        for (const k of Object.keys(p) as (keyof RetentionPolicy)[]) if (p[k] === undefined) delete p[k];
        if (rng.chance(0.25)) p.within = rng.pick([HOUR, DAY, 7 * DAY, 45 * DAY]);
        if (rng.chance(0.2)) p.tags = ['env=prod'];
      }
      const want = expected(items, p);
      const got = applyToGroup(items, p);
      assert.equal(got.keep.length + got.remove.length, n);
      for (const d of got.keep) assert.deepEqual(d.reasons.map((x) => x.split(' ')[0]), want.get(d.item.id), `round ${round} keep ${d.item.id} ${JSON.stringify(p)}`);
      for (const d of got.remove) assert.deepEqual(want.get(d.item.id), [], `round ${round} remove ${d.item.id} ${JSON.stringify(p)}`);
      // bucket labels in reasons are the bucket of the snapshot itself
      for (const d of got.keep) {
        for (const reason of d.reasons) {
          const [rule, label] = reason.split(' ') as [string, string];
          if (rule in model) assert.equal(label, bucketOf(rule as Rule, Date.parse(d.item.snapshot.time)));
        }
      }
      // idempotent: the policy applied to what it kept keeps all of it again, for the same reasons
      // (so an interrupted forget can simply be run again)
      const again = applyToGroup(got.keep.map((d) => d.item), p);
      assert.deepEqual(again.remove, [], `round ${round} second run`);
      assert.deepEqual(again.keep.map((d) => [d.item.id, d.reasons]), got.keep.map((d) => [d.item.id, d.reasons]));
      // newest first
      const times = [...got.keep, ...got.remove].map((d) => Date.parse(d.item.snapshot.time));
      const keepTimes = got.keep.map((d) => Date.parse(d.item.snapshot.time));
      assert.deepEqual(keepTimes, [...keepTimes].sort((a, b) => b - a));
      assert.equal(times.length, n);
    }
  });
});
