/**
 * bench/fault/writer: the workload process (see workload.ts for what it writes and the journal).
 *   bin/node lab/bench/fault/writer.ts --volume DIR --journal FILE --seed N [--rate 100]
 *     [--duration 300] [--logs 4] [--states 8]
 * Prints "ready" on stdout once its files are open, then writes until the duration is over, its
 * parent is gone, or it is killed. Exit 0 when it stopped by itself, 1 on an error (one line on
 * stderr, e.g. ENOSPC: the writes before it stay acknowledged).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Rng, deriveSeed } from '../../gen/rng.ts';
import { JOURNAL_MAGIC, formatEntry, logFile, logRecord, sha256, stateContent, stateFile } from './workload.ts';

const { values: v } = parseArgs({
  options: {
    volume: { type: 'string' },
    journal: { type: 'string' },
    seed: { type: 'string' },
    rate: { type: 'string', default: '100' },
    duration: { type: 'string', default: '300' },
    logs: { type: 'string', default: '4' },
    states: { type: 'string', default: '8' },
  },
  strict: true,
});

function fail(msg: string): never {
  process.stderr.write(`writer: ${msg}\n`);
  process.exit(1);
}

if (v.volume === undefined || v.journal === undefined || v.seed === undefined) fail('--volume, --journal and --seed are required');
const seed = Number(v.seed);
const rate = Number(v.rate);
const duration = Number(v.duration);
const nLogs = Number(v.logs);
const nStates = Number(v.states);
if (![seed, rate, duration, nLogs, nStates].every((x) => Number.isFinite(x) && x >= 0) || rate <= 0 || nLogs + nStates === 0) fail('bad numeric option');

const volume = v.volume;
const startMs = Date.now();
const parent = process.ppid;
const rng = new Rng(deriveSeed(seed, 'writer'));

try {
  fs.mkdirSync(path.join(volume, path.dirname(logFile(0))), { recursive: true });
  fs.mkdirSync(path.join(volume, path.dirname(stateFile(0))), { recursive: true });
  const journal = fs.openSync(v.journal, 'a');
  fs.writeSync(journal, `${JOURNAL_MAGIC} seed=${seed} start=${startMs}\n`);
  const logs = Array.from({ length: nLogs }, (_, k) => {
    const file = logFile(k);
    const fd = fs.openSync(path.join(volume, file), 'a');
    return { file, fd, offset: fs.fstatSync(fd).size };
  });
  const states = Array.from({ length: nStates }, (_, k) => {
    const file = stateFile(k);
    return { file, fd: fs.openSync(path.join(volume, file), 'w'), version: 0 };
  });
  process.stdout.write('ready\n');

  const interval = 1000 / rate;
  const end = startMs + duration * 1000;
  for (let id = 1; ; id++) {
    const due = startMs + id * interval;
    const now = Date.now();
    if (due > end || process.ppid !== parent) break;
    if (due > now) await new Promise((r) => setTimeout(r, due - now));
    if (nStates === 0 || (nLogs > 0 && rng.chance(0.8))) {
      const log = logs[rng.int(0, nLogs - 1)]!;
      const rec = logRecord(rng, id, log.file, rng.int(128, 2048));
      fs.writeSync(log.fd, rec);
      fs.fdatasyncSync(log.fd);
      const offset = log.offset;
      log.offset += rec.length;
      fs.writeSync(journal, formatEntry({ id, kind: 'log', file: log.file, offset, length: rec.length, version: 0, sha256: sha256(rec), ackMs: Date.now() }));
    } else {
      const st = states[rng.int(0, nStates - 1)]!;
      const version = st.version + 1;
      const buf = stateContent(seed, st.file, version);
      fs.writeSync(st.fd, buf, 0, buf.length, 0);
      fs.fdatasyncSync(st.fd);
      st.version = version;
      fs.writeSync(journal, formatEntry({ id, kind: 'state', file: st.file, offset: 0, length: buf.length, version, sha256: sha256(buf), ackMs: Date.now() }));
    }
  }
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}
