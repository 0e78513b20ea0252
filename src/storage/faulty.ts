/**
 * faulty: a Backend wrapper that injects failures by rule, to emulate a flaky or failing store
 * in tests and in the benchmark. In the stack (stack.ts) it sits innermost, directly on the
 * concrete backend: what it injects looks to every other layer like the store's own failure
 * (the retry wrapper retries a transient fault; an injected delay holds a connection slot).
 *
 * A rule picks calls by operation and file type, then fires on some of them: the nth matching
 * calls, every one from the nth on, and/or with a probability drawn from a PRNG seeded by
 * `seed` (the same seed and the same sequence of calls give the same faults), at most `times`.
 * Kinds:
 *   transient   a retryable BackendError (a reset connection, a 503, SlowDown)
 *   io          a permanent BackendError (EIO from a dead disk, EACCES): exit 7
 *   nospace     NoSpaceError (ENOSPC): exit 6
 *   short-read  get returns fewer bytes than the file or range holds (a truncated body that
 *               the store did not notice): the layers above must detect it
 *   corrupt     get returns the bytes with one flipped (the store damages data)
 *   delay       the call waits delayMs before it proceeds
 * An error kind strikes `before` the call reaches the store (default) or `after` it succeeded
 * (the store did the work, the reply was lost: a retry then meets a file that already exists).
 * Every fault fired is recorded in `injected`. `rules` may be changed at any time.
 *
 * A writer (openWriter) is faulted at its commit (op 'commit'): `before` aborts the inner
 * writer (no partial file stays) and throws, as a failed commit of a real backend does.
 */
import type { Backend, BlobWriter, FileInfo, FileType, Handle, ObjectLock, Wrapper } from './backend.ts';
import { FILE_TYPES, handleString, wrapObjectLock } from './backend.ts';
import { BackendError, NoSpaceError, UsageError } from '../errors/index.ts';

export type FaultOp = 'exists' | 'create' | 'put' | 'get' | 'stat' | 'list' | 'delete' | 'deleteSync' | 'replace' | 'openWriter' | 'commit' | 'removeTemporary' | 'lockSupport' | 'retention' | 'extendRetention';
export const FAULT_OPS: readonly FaultOp[] = ['exists', 'create', 'put', 'get', 'stat', 'list', 'delete', 'deleteSync', 'replace', 'openWriter', 'commit', 'removeTemporary', 'lockSupport', 'retention', 'extendRetention'];

export type FaultKind = 'transient' | 'io' | 'nospace' | 'short-read' | 'corrupt' | 'delay';
export const FAULT_KINDS: readonly FaultKind[] = ['transient', 'io', 'nospace', 'short-read', 'corrupt', 'delay'];

export interface FaultRule {
  kind: FaultKind;
  /** The operations it applies to (default: all it can apply to). */
  op?: FaultOp | readonly FaultOp[];
  /** The file types it applies to (default: all). */
  type?: FileType | readonly FileType[];
  /** Error kinds: strike before the call reaches the store (default) or after it succeeded. */
  when?: 'before' | 'after';
  /** Fire on these matching calls (counted from 1 per rule). */
  nth?: number | readonly number[];
  /** Fire on every matching call from this one on (counted from 1). */
  from?: number;
  /** Fire with this probability (0..1), drawn from the seeded PRNG. */
  probability?: number;
  /** Fire at most this many times. */
  times?: number;
  /** For 'delay': how long (default 100 ms). */
  delayMs?: number;
}

export interface FaultyOptions {
  rules?: readonly FaultRule[];
  /** Seeds the PRNG of `probability` and of the byte `corrupt` flips (default 1). */
  seed?: number;
  /** For 'delay' (tests pass one that returns at once). */
  sleep?: (ms: number) => Promise<void>;
}

export interface InjectedFault {
  readonly op: FaultOp;
  readonly what: string;
  readonly kind: FaultKind;
  readonly when: 'before' | 'after';
  /** Index of the rule in `rules`. */
  readonly rule: number;
}

/** mulberry32: a small, fast, seedable PRNG (uniform in [0, 1)). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const READ_KINDS: ReadonlySet<FaultKind> = new Set(['short-read', 'corrupt']);

function applies(rule: FaultRule, op: FaultOp, type: FileType | undefined): boolean {
  if (READ_KINDS.has(rule.kind) && op !== 'get') return false;
  if (rule.kind === 'delay' && op === 'deleteSync') return false;
  if (rule.op !== undefined && (typeof rule.op === 'string' ? rule.op !== op : !rule.op.includes(op))) return false;
  if (rule.type !== undefined) {
    if (type === undefined) return false;
    if (typeof rule.type === 'string' ? rule.type !== type : !rule.type.includes(type)) return false;
  }
  return true;
}

const realSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** What one call meets: a delay, an error before or after, a damaged read. */
interface Plan {
  delayMs: number;
  error?: { kind: 'transient' | 'io' | 'nospace'; when: 'before' | 'after' };
  read?: 'short-read' | 'corrupt';
}

export class FaultyBackend implements Backend, Wrapper {
  readonly inner: Backend;
  /** The rules in force (replace the array to change them). */
  rules: readonly FaultRule[];
  /** Every fault fired, in order. */
  readonly injected: InjectedFault[] = [];
  readonly openWriter?: (type: FileType) => Promise<BlobWriter>;
  readonly replace?: (h: Handle, data: Uint8Array) => Promise<void>;
  readonly removeTemporary?: (olderThanMs: number) => Promise<{ files: number; bytes: number }>;
  readonly deleteSync?: (h: Handle) => void;
  readonly objectLock?: ObjectLock;
  private readonly random: () => number;
  private readonly sleep: (ms: number) => Promise<void>;
  /** Per rule (by identity): matching calls seen, faults fired. */
  private readonly counts = new WeakMap<FaultRule, { seen: number; fired: number }>();

  constructor(inner: Backend, opts: FaultyOptions = {}) {
    this.inner = inner;
    this.rules = opts.rules ?? [];
    this.random = seededRandom(opts.seed ?? 1);
    this.sleep = opts.sleep ?? realSleep;
    const { openWriter, replace, removeTemporary, deleteSync } = inner;
    if (inner.objectLock !== undefined) this.objectLock = wrapObjectLock(inner.objectLock, (op, h, fn) => this.faulted(op, h?.type, h, fn));
    if (openWriter !== undefined) {
      this.openWriter = async (type) => {
        if (this.rules.length === 0) return this.writer(await openWriter.call(inner, type), type);
        const plan = this.plan('openWriter', type, undefined);
        if (plan.delayMs > 0) await this.sleep(plan.delayMs);
        if (plan.error?.when === 'before') throw this.error(plan.error.kind, 'openWriter', type);
        const w = await openWriter.call(inner, type);
        if (plan.error !== undefined) {
          // the store opened the file and the reply was lost: the writer nobody will use is given up
          await w.abort();
          throw this.error(plan.error.kind, 'openWriter', type);
        }
        return this.writer(w, type);
      };
    }
    if (replace !== undefined) this.replace = (h, data) => this.faulted('replace', h.type, h, () => replace.call(inner, h, data));
    if (removeTemporary !== undefined) this.removeTemporary = (ms) => this.faulted('removeTemporary', undefined, undefined, () => removeTemporary.call(inner, ms));
    if (deleteSync !== undefined) {
      this.deleteSync = (h) => {
        const plan = this.plan('deleteSync', h.type, h);
        if (plan.error?.when === 'before') throw this.error(plan.error.kind, 'deleteSync', h);
        deleteSync.call(inner, h);
        if (plan.error !== undefined) throw this.error(plan.error.kind, 'deleteSync', h);
      };
    }
  }

  get location(): string {
    return this.inner.location;
  }
  get properties(): Backend['properties'] {
    return this.inner.properties;
  }

  /** Faults fired so far of one kind (or all). */
  count(kind?: FaultKind): number {
    return kind === undefined ? this.injected.length : this.injected.filter((f) => f.kind === kind).length;
  }

  private plan(op: FaultOp, type: FileType | undefined, h: Handle | undefined): Plan {
    const plan: Plan = { delayMs: 0 };
    for (const [i, rule] of this.rules.entries()) {
      if (!applies(rule, op, type)) continue;
      let c = this.counts.get(rule);
      if (c === undefined) this.counts.set(rule, (c = { seen: 0, fired: 0 }));
      const n = ++c.seen;
      if (rule.times !== undefined && c.fired >= rule.times) continue;
      if (rule.nth !== undefined && !(typeof rule.nth === 'number' ? rule.nth === n : rule.nth.includes(n))) continue;
      if (rule.from !== undefined && n < rule.from) continue;
      if (rule.probability !== undefined && !(this.random() < rule.probability)) continue;
      // one error and one damage per call: the first rule of each wins; delays add up
      if (rule.kind === 'delay') plan.delayMs += rule.delayMs ?? 100;
      else if (rule.kind === 'short-read' || rule.kind === 'corrupt') {
        if (plan.read !== undefined) continue;
        plan.read = rule.kind;
      } else {
        if (plan.error !== undefined) continue;
        plan.error = { kind: rule.kind, when: rule.when ?? 'before' };
      }
      c.fired++;
      this.injected.push({ op, what: h !== undefined ? handleString(h) : (type ?? ''), kind: rule.kind, when: rule.when ?? 'before', rule: i });
    }
    return plan;
  }

  private error(kind: 'transient' | 'io' | 'nospace', op: FaultOp, what: Handle | FileType | undefined): Error {
    const w = what === undefined ? '' : ` ${typeof what === 'string' ? what : handleString(what)}`;
    if (kind === 'nospace') return new NoSpaceError(`the repository ${this.inner.location} (injected fault)`);
    if (kind === 'transient') return new BackendError(`injected transient fault: ${op}${w} failed`, { retryable: true, data: { injected: true } });
    return new BackendError(`injected I/O error: ${op}${w} failed`, { retryable: false, data: { injected: true } });
  }

  /** Runs fn under the faults the rules pick for this call. */
  private async faulted<T>(op: FaultOp, type: FileType | undefined, h: Handle | undefined, fn: () => Promise<T>): Promise<T> {
    if (this.rules.length === 0) return fn();
    const plan = this.plan(op, type, h);
    if (plan.delayMs > 0) await this.sleep(plan.delayMs);
    if (plan.error?.when === 'before') throw this.error(plan.error.kind, op, h ?? type);
    const r = await fn();
    if (plan.error !== undefined) throw this.error(plan.error.kind, op, h ?? type);
    return r;
  }

  private writer(w: BlobWriter, type: FileType): BlobWriter {
    return {
      write: (parts) => w.write(parts),
      get queued() {
        return w.queued;
      },
      drain: () => w.drain(),
      commit: async (name) => {
        const h = { type, name };
        const plan = this.rules.length === 0 ? { delayMs: 0 } : this.plan('commit', type, h);
        if (plan.delayMs > 0) await this.sleep(plan.delayMs);
        if (plan.error?.when === 'before') {
          await w.abort();
          throw this.error(plan.error.kind, 'commit', h);
        }
        await w.commit(name);
        if (plan.error !== undefined) throw this.error(plan.error.kind, 'commit', h);
      },
      abort: () => w.abort(),
    };
  }

  exists(): Promise<boolean> {
    return this.faulted('exists', 'config', undefined, () => this.inner.exists());
  }
  create(): Promise<void> {
    return this.faulted('create', undefined, undefined, () => this.inner.create());
  }
  put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.faulted('put', h.type, h, () => this.inner.put(h, data));
  }
  async get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    if (this.rules.length === 0) return this.inner.get(h, range, into);
    const plan = this.plan('get', h.type, h);
    if (plan.delayMs > 0) await this.sleep(plan.delayMs);
    if (plan.error?.when === 'before') throw this.error(plan.error.kind, 'get', h);
    let b = await this.inner.get(h, range, into);
    if (plan.error !== undefined) throw this.error(plan.error.kind, 'get', h);
    if (plan.read === 'short-read' && b.length > 0) b = b.subarray(0, Math.floor(b.length / 2));
    else if (plan.read === 'corrupt' && b.length > 0) {
      b = Buffer.from(b);
      const i = Math.floor(this.random() * b.length);
      b[i] = b[i]! ^ 0x01;
    }
    return b;
  }
  stat(h: Handle): Promise<FileInfo> {
    return this.faulted('stat', h.type, h, () => this.inner.stat(h));
  }
  delete(h: Handle): Promise<void> {
    return this.faulted('delete', h.type, h, () => this.inner.delete(h));
  }
  async *list(type: FileType): AsyncIterable<FileInfo> {
    const plan = this.rules.length === 0 ? { delayMs: 0 } : this.plan('list', type, undefined);
    if (plan.delayMs > 0) await this.sleep(plan.delayMs);
    if (plan.error?.when === 'before') throw this.error(plan.error.kind, 'list', type);
    yield* this.inner.list(type);
    // 'after': the listing broke off at its end, every file already yielded
    if (plan.error !== undefined) throw this.error(plan.error.kind, 'list', type);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const SPEC_HELP = "write rules separated by ';', each a kind (transient, io, nospace, short-read, corrupt, delay) and options, e.g. 'seed=7;transient,op=put|get,type=pack,p=0.1,when=after;nospace,op=commit,nth=3'";

/**
 * Parses a fault plan written as text (MESHBACK_FAULTS, the benchmark's plans):
 * `[seed=N;]RULE[;RULE...]`, a RULE being `KIND[,op=OP|OP][,type=T|T][,when=before|after]
 * [,nth=N|N][,from=N][,p=P][,times=N][,ms=N]`.
 */
export function parseFaultSpec(spec: string): FaultyOptions {
  const fail = (what: string): never => {
    throw new UsageError(`fault plan ${JSON.stringify(spec)}: ${what}: ${SPEC_HELP}`);
  };
  const num = (k: string, v: string, min: number, max = Infinity): number => {
    const n = Number(v);
    if (v === '' || !Number.isFinite(n) || n < min || n > max) fail(`${k}=${v} is not a number from ${min}${max === Infinity ? '' : ` to ${max}`}`);
    return n;
  };
  const rules: FaultRule[] = [];
  let seed: number | undefined;
  for (const part of spec.split(';').map((p) => p.trim()).filter((p) => p !== '')) {
    if (part.startsWith('seed=')) {
      seed = num('seed', part.slice(5), 0);
      continue;
    }
    const [kind, ...opts] = part.split(',').map((p) => p.trim());
    if (!(FAULT_KINDS as readonly string[]).includes(kind!)) fail(`unknown fault kind ${JSON.stringify(kind)}`);
    const rule: FaultRule = { kind: kind as FaultKind };
    for (const o of opts) {
      const eq = o.indexOf('=');
      const k = eq < 0 ? o : o.slice(0, eq);
      const v = eq < 0 ? '' : o.slice(eq + 1);
      const list = v.split('|');
      if (k === 'op') {
        for (const x of list) if (!(FAULT_OPS as readonly string[]).includes(x)) fail(`unknown op ${JSON.stringify(x)} (one of ${FAULT_OPS.join(', ')})`);
        rule.op = list as FaultOp[];
      } else if (k === 'type') {
        for (const x of list) if (!(FILE_TYPES as readonly string[]).includes(x)) fail(`unknown file type ${JSON.stringify(x)} (one of ${FILE_TYPES.join(', ')})`);
        rule.type = list as FileType[];
      } else if (k === 'when') {
        if (v !== 'before' && v !== 'after') fail(`when=${v} is neither before nor after`);
        rule.when = v as 'before' | 'after';
      } else if (k === 'nth') rule.nth = list.map((x) => num('nth', x, 1));
      else if (k === 'from') rule.from = num('from', v, 1);
      else if (k === 'p') rule.probability = num('p', v, 0, 1);
      else if (k === 'times') rule.times = num('times', v, 0);
      else if (k === 'ms') rule.delayMs = num('ms', v, 0);
      else fail(`unknown option ${JSON.stringify(k)}`);
    }
    rules.push(rule);
  }
  if (rules.length === 0) fail('no rule');
  return seed !== undefined ? { rules, seed } : { rules };
}
