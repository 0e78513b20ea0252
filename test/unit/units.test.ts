/** src/util/units: the one duration and size grammar of every flag, and fmtBytes. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { UsageError } from '../../src/errors/index.ts';
import { fmtBytes, formatDuration, parseDuration, parseSize, sizeOf } from '../../src/util/units.ts';

const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const isUsage = (e: unknown): boolean => e instanceof UsageError;

describe('durations', () => {
  it('reads summed <n><unit> terms; m is minutes (as in Go, Kubernetes, Prometheus), mo months', () => {
    const cases: [string, number][] = [
      ['30s', 30 * SEC], ['5m', 5 * MIN], ['5min', 5 * MIN], ['1h30m', 90 * MIN], ['250ms', 250], ['1.5h', 90 * MIN],
      ['7d', 7 * DAY], ['36h', 36 * HOUR], ['2w', 14 * DAY], ['1mo', 30 * DAY], ['1y', 365 * DAY], ['1y6mo', (365 + 180) * DAY],
      ['1d12h', 36 * HOUR], ['2w3d4h5min6s', 17 * DAY + 4 * HOUR + 5 * MIN + 6 * SEC], ['6mo1y', (365 + 180) * DAY], ['007d', 7 * DAY],
    ];
    for (const [s, ms] of cases) assert.equal(parseDuration(s, '--keep-within'), ms, s);
  });

  it('refuses malformed, unitless, repeated, zero and signed input with a usage error naming the flag', () => {
    for (const s of ['', '7', '2', 'd', '7D', '1x', '1d1d', '5m5min', '0d', '0s0h', '-1d', '+1d', ' 7d', '7d ', '1d 2h', 'd7', '7dd', '99999999999999999999y']) {
      assert.throws(() => parseDuration(s, '--keep-within'), isUsage, JSON.stringify(s));
    }
    assert.throws(() => parseDuration('3q', '--keep-within'), /^UsageError: --keep-within "3q" is not a duration \(unknown unit "q"\): write e\.g\. 30s/);
    assert.throws(() => parseDuration('2', '--retry-lock', { zero: true }), /a number without a unit/);
  });

  it('zero only where allowed (--retry-lock 0: do not wait)', () => {
    assert.equal(parseDuration('0', '--retry-lock', { zero: true }), 0);
    assert.equal(parseDuration('0s', '--retry-lock', { zero: true }), 0);
    assert.throws(() => parseDuration('0', '--keep-within'), /longer than zero/);
  });

  it('formats milliseconds back into the same grammar, largest units first', () => {
    assert.equal(formatDuration(parseDuration('10d', 'x')), '1w3d');
    assert.equal(formatDuration(parseDuration('1y6mo', 'x')), '1y6mo');
    assert.equal(formatDuration(parseDuration('90m', 'x')), '1h30min');
    assert.equal(formatDuration(0), '0s');
    for (const s of ['1y', '2mo', '3w', '4d', '5h', '6min', '7s', '1y1mo1w1d1h1min1s']) assert.equal(formatDuration(parseDuration(s, 'x')), s);
  });
});

describe('sizes', () => {
  it('binary K/M/G/T and KiB.., decimal KB.., bytes without a unit', () => {
    const cases: [string, number][] = [['512MiB', 512 * 2 ** 20], ['2GiB', 2 * 2 ** 30], ['16M', 16 * 2 ** 20], ['1.5G', 1.5 * 2 ** 30], ['4096', 4096], ['4096B', 4096], ['1KB', 1000], ['2gb', 2e9], ['1T', 2 ** 40]];
    for (const [s, n] of cases) assert.equal(parseSize(s, '--size'), n, s);
    for (const s of ['', 'x', '1Q', '-1M', '1 M', 'M']) assert.equal(sizeOf(s), undefined, s);
    assert.throws(() => parseSize('lots', '--volume-size'), /^UsageError: --volume-size "lots" is not a size: write e\.g\. 512MiB/);
  });

  it('fmtBytes: three significant digits in binary units', () => {
    assert.equal(fmtBytes(0), '0 B');
    assert.equal(fmtBytes(1023), '1023 B');
    assert.equal(fmtBytes(1536), '1.50 KiB');
    assert.equal(fmtBytes(15 * 2 ** 20), '15.0 MiB');
    assert.equal(fmtBytes(300 * 2 ** 30), '300 GiB');
    assert.equal(fmtBytes(3 * 2 ** 40), '3.00 TiB');
  });
});
