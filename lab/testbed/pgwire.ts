/**
 * testbed/pgwire: a minimal PostgreSQL client (frontend/backend protocol 3.0, simple query
 * protocol, text results) for the testbed's services and its verifier. It speaks only what the
 * testbed needs: a TCP connection to 127.0.0.1, `trust` authentication (the testbed's clusters
 * are made with `initdb -A trust` and listen on the loopback address only), queries whose
 * values are literals the caller quoted with `lit()`, rows as arrays of strings (null for SQL
 * NULL). Every wait is bounded: connecting and each query have a timeout.
 */
import * as net from 'node:net';

export class PgError extends Error {
  /** SQLSTATE (e.g. 57P03 "the database system is starting up"), '' when not from the server */
  readonly sqlstate: string;
  readonly severity: string;
  constructor(message: string, sqlstate = '', severity = '') {
    super(message);
    this.name = 'PgError';
    this.sqlstate = sqlstate;
    this.severity = severity;
  }
}

export interface PgResult {
  /** column names of the last statement that returned rows */
  fields: string[];
  rows: (string | null)[][];
  /** the command tag of the last statement (e.g. "INSERT 0 1") */
  command: string;
}

export interface PgConnectOptions {
  host?: string;
  port: number;
  user?: string;
  database?: string;
  /** milliseconds to wait for the connection and authentication (default 5000) */
  timeoutMs?: number;
}

/** A SQL string literal ('' doubled); standard_conforming_strings is on, so backslashes are plain. */
export function lit(v: string | number): string {
  return typeof v === 'number' ? String(v) : `'${v.replace(/'/g, "''")}'`;
}

/** A SQL identifier, double-quoted. */
export function ident(v: string): string {
  return `"${v.replace(/"/g, '""')}"`;
}

function cstrings(buf: Buffer, start: number, end: number): string[] {
  const out: string[] = [];
  let p = start;
  while (p < end) {
    const z = buf.indexOf(0, p);
    if (z < 0 || z >= end) break;
    out.push(buf.toString('utf8', p, z));
    p = z + 1;
  }
  return out;
}

function errorFields(body: Buffer): { message: string; sqlstate: string; severity: string } {
  const f: Record<string, string> = {};
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const code = String.fromCharCode(body[p]!);
    const z = body.indexOf(0, p + 1);
    if (z < 0) break;
    f[code] = body.toString('utf8', p + 1, z);
    p = z + 1;
  }
  const detail = f['D'] !== undefined ? ` (${f['D']})` : '';
  return { message: `${f['M'] ?? 'unknown error'}${detail}`, sqlstate: f['C'] ?? '', severity: f['V'] ?? f['S'] ?? '' };
}

interface Pending {
  resolve: (r: PgResult) => void;
  reject: (e: Error) => void;
  result: PgResult;
  error: PgError | undefined;
  timer: NodeJS.Timeout;
}

/** One connection. Queries are sent one at a time (a later query waits for the earlier one). */
export class PgConnection {
  private readonly sock: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private pending: Pending | undefined;
  private queue: (() => void)[] = [];
  private closedError: Error | undefined;
  private onReady: (() => void) | undefined;
  private onStartupError: ((e: Error) => void) | undefined;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => this.fail(new PgError(`connection to PostgreSQL failed: ${e.message}`)));
    sock.on('close', () => this.fail(new PgError('the PostgreSQL connection was closed')));
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  static connect(opts: PgConnectOptions): Promise<PgConnection> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: opts.host ?? '127.0.0.1', port: opts.port });
      const c = new PgConnection(sock);
      const timer = setTimeout(() => {
        c.onStartupError = undefined;
        c.onReady = undefined;
        reject(new PgError(`PostgreSQL at ${opts.host ?? '127.0.0.1'}:${opts.port} did not answer within ${timeoutMs} ms`));
        c.close();
      }, timeoutMs);
      c.onReady = () => {
        clearTimeout(timer);
        resolve(c);
      };
      c.onStartupError = (e) => {
        clearTimeout(timer);
        c.close();
        reject(e);
      };
      sock.once('connect', () => {
        const params = Buffer.from(`user\0${opts.user ?? 'postgres'}\0database\0${opts.database ?? 'postgres'}\0application_name\0meshback-testbed\0\0`);
        const head = Buffer.alloc(8);
        head.writeInt32BE(8 + params.length, 0);
        head.writeInt32BE(196608, 4);
        sock.write(Buffer.concat([head, params]));
      });
    });
  }

  private fail(e: Error, destroy = true): void {
    if (this.closedError !== undefined) return;
    this.closedError = e;
    if (this.onStartupError !== undefined) {
      const f = this.onStartupError;
      this.onStartupError = undefined;
      f(e);
    }
    if (this.pending !== undefined) {
      clearTimeout(this.pending.timer);
      this.pending.reject(e);
      this.pending = undefined;
    }
    for (const q of this.queue.splice(0)) q();
    if (destroy) this.sock.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 5) {
      const len = this.buf.readInt32BE(1);
      if (len < 4 || len > 1 << 30) {
        this.fail(new PgError(`malformed message from PostgreSQL (length ${len})`));
        return;
      }
      if (this.buf.length < 1 + len) return;
      const type = String.fromCharCode(this.buf[0]!);
      const body = this.buf.subarray(5, 1 + len);
      this.buf = this.buf.subarray(1 + len);
      this.message(type, body);
    }
  }

  private message(type: string, body: Buffer): void {
    const p = this.pending;
    switch (type) {
      case 'R': {
        const code = body.readInt32BE(0);
        if (code !== 0) this.fail(new PgError(`PostgreSQL asks for authentication method ${code}; the testbed's clusters use trust authentication on 127.0.0.1`));
        return;
      }
      case 'S': // ParameterStatus
      case 'K': // BackendKeyData
      case 'N': // NoticeResponse
      case 'A': // NotificationResponse
        return;
      case 'Z': {
        if (this.onReady !== undefined) {
          const r = this.onReady;
          this.onReady = undefined;
          this.onStartupError = undefined;
          r();
          return;
        }
        if (p !== undefined) {
          clearTimeout(p.timer);
          this.pending = undefined;
          if (p.error !== undefined) p.reject(p.error);
          else p.resolve(p.result);
          this.queue.shift()?.();
        }
        return;
      }
      case 'E': {
        const f = errorFields(body);
        const e = new PgError(f.message, f.sqlstate, f.severity);
        if (this.onStartupError !== undefined) {
          this.fail(e);
          return;
        }
        if (p !== undefined) p.error ??= e;
        else this.fail(e);
        return;
      }
      case 'T': {
        if (p === undefined) return;
        const n = body.readInt16BE(0);
        const fields: string[] = [];
        let off = 2;
        for (let i = 0; i < n; i++) {
          const z = body.indexOf(0, off);
          fields.push(body.toString('utf8', off, z));
          off = z + 1 + 18;
        }
        p.result = { fields, rows: [], command: '' };
        return;
      }
      case 'D': {
        if (p === undefined) return;
        const n = body.readInt16BE(0);
        const row: (string | null)[] = [];
        let off = 2;
        for (let i = 0; i < n; i++) {
          const l = body.readInt32BE(off);
          off += 4;
          if (l < 0) row.push(null);
          else {
            row.push(body.toString('utf8', off, off + l));
            off += l;
          }
        }
        p.result.rows.push(row);
        return;
      }
      case 'C':
        if (p !== undefined) p.result.command = cstrings(body, 0, body.length)[0] ?? '';
        return;
      case 'I': // EmptyQueryResponse
        return;
      default:
        this.fail(new PgError(`unexpected message ${JSON.stringify(type)} from PostgreSQL`));
    }
  }

  /** Runs `sql` (one or more statements); resolves with the last statement's rows. */
  query(sql: string, timeoutMs = 30_000): Promise<PgResult> {
    return new Promise((resolve, reject) => {
      const go = (): void => {
        if (this.closedError !== undefined) {
          reject(this.closedError);
          return;
        }
        const timer = setTimeout(() => this.fail(new PgError(`query did not finish within ${timeoutMs} ms: ${sql.slice(0, 80)}`)), timeoutMs);
        this.pending = { resolve, reject, result: { fields: [], rows: [], command: '' }, error: undefined, timer };
        const q = Buffer.from(sql + '\0');
        const head = Buffer.alloc(5);
        head.write('Q', 0);
        head.writeInt32BE(4 + q.length, 1);
        this.sock.write(Buffer.concat([head, q]));
      };
      if (this.pending === undefined && this.queue.length === 0) go();
      else this.queue.push(go);
    });
  }

  close(): void {
    if (this.closedError === undefined && this.sock.writable) {
      const x = Buffer.alloc(5);
      x.write('X', 0);
      x.writeInt32BE(4, 1);
      this.sock.end(x);
      this.fail(new PgError('the PostgreSQL connection was closed'), false);
      setTimeout(() => this.sock.destroy(), 1000).unref();
      return;
    }
    this.fail(new PgError('the PostgreSQL connection was closed'));
  }
}

/** Connects, runs one query, closes. */
export async function pgQuery(opts: PgConnectOptions, sql: string, timeoutMs?: number): Promise<PgResult> {
  const c = await PgConnection.connect(opts);
  try {
    return await c.query(sql, timeoutMs);
  } finally {
    c.close();
  }
}
