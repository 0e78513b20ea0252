/**
 * util/units: the one grammar for durations and sizes, used by every flag, policy field and
 * environment variable that takes one, and the one way sizes are printed.
 *
 * Durations: one or more `<n><unit>` terms, summed: `30s`, `5m`, `1h30m`, `36h`, `7d`, `2w3d`,
 * `1y6mo`, `250ms`, `1.5h`. n is a decimal number; units ms, s, m or min (minutes), h, d (24 h),
 * w (7 d), mo (30 d), y (365 d); each unit at most once. `m` is minutes, as in Go, Kubernetes and
 * Prometheus durations; months are `mo`. A bare `0` is zero where zero is allowed; any other bare
 * number is refused (seconds or minutes? write the unit).
 *
 * Sizes: a number and a unit: `512MiB`, `2GiB`, `16M`, `1.5G`, `4096`, `4096B`. K, M, G, T and
 * KiB, MiB, GiB, TiB are binary (1024); KB, MB, GB, TB are decimal (1000); no unit is bytes.
 */
import { UsageError } from '../errors/index.ts';

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
  mo: 30 * 86_400_000,
  y: 365 * 86_400_000,
};

export interface DurationOptions {
  /** zero allowed (`0`, `0s`): e.g. --retry-lock 0 means "do not wait" (default: false, must be > 0) */
  zero?: boolean;
}

/** Parses a duration (see the module comment) into milliseconds; UsageError naming `what` otherwise. */
export function parseDuration(s: string, what: string, opts: DurationOptions = {}): number {
  const t = s;
  const bad = (why: string): never => {
    throw new UsageError(`${what} ${JSON.stringify(s)} is not a duration (${why}): write e.g. 30s, 5m, 1h30m, 7d, 2w or 1y6mo (units ms, s, m/min, h, d, w, mo, y)`);
  };
  if (t === '') bad('empty');
  if (t === '0') {
    if (opts.zero !== true) bad('it must be longer than zero');
    return 0;
  }
  if (/^\d+(\.\d+)?$/.test(t)) bad('a number without a unit');
  const re = /(\d+(?:\.\d+)?)([a-z]+)/gy;
  let total = 0;
  let pos = 0;
  const seen = new Set<number>();
  for (let m = re.exec(t); m !== null; m = re.exec(t)) {
    pos = re.lastIndex;
    const unit = m[2]!;
    const ms = UNIT_MS[unit];
    if (ms === undefined) bad(`unknown unit ${JSON.stringify(unit)}`);
    if (seen.has(ms!)) bad(`unit ${JSON.stringify(unit)} given twice`);
    seen.add(ms!);
    total += Number(m[1]) * ms!;
  }
  if (pos !== t.length) bad(`cannot read ${JSON.stringify(t.slice(pos))}`);
  total = Math.round(total);
  if (!Number.isSafeInteger(total)) bad('too long');
  if (total <= 0 && opts.zero !== true) bad('it must be longer than zero');
  return total;
}

const FORMAT_UNITS: [string, number][] = [['y', UNIT_MS['y']!], ['mo', UNIT_MS['mo']!], ['w', UNIT_MS['w']!], ['d', UNIT_MS['d']!], ['h', UNIT_MS['h']!], ['min', UNIT_MS['min']!], ['s', 1000]];

/** Writes milliseconds in the duration grammar, largest units first, whole seconds (e.g. 1w3d, 1h30min). */
export function formatDuration(ms: number): string {
  let rest = Math.floor(ms / 1000) * 1000;
  let out = '';
  for (const [u, n] of FORMAT_UNITS) {
    const k = Math.floor(rest / n);
    if (k > 0) {
      out += `${k}${u}`;
      rest -= k * n;
    }
  }
  return out === '' ? '0s' : out;
}

const SIZE_UNITS: Record<string, number> = { b: 1, k: 1024, kib: 1024, kb: 1e3, m: 1024 ** 2, mib: 1024 ** 2, mb: 1e6, g: 1024 ** 3, gib: 1024 ** 3, gb: 1e9, t: 1024 ** 4, tib: 1024 ** 4, tb: 1e12 };

/** A size in bytes, or undefined when `s` is not one (see the module comment). */
export function sizeOf(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)([a-z]+)?$/i.exec(s);
  if (m === null) return undefined;
  const mult = SIZE_UNITS[(m[2] ?? 'b').toLowerCase()];
  return mult === undefined ? undefined : Math.round(Number(m[1]) * mult);
}

/** Parses a size into bytes; UsageError naming `what` otherwise. */
export function parseSize(s: string, what: string): number {
  const n = sizeOf(s);
  if (n === undefined) throw new UsageError(`${what} ${JSON.stringify(s)} is not a size: write e.g. 512MiB, 2GiB, 16M or 4096 (K, M, G, T and KiB.. are 1024-based; KB, MB, GB, TB 1000-based)`);
  return n;
}

/** "1.50 MiB": three significant digits, binary units. */
export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${u[i]}`;
}
