/**
 * testbed/resp: a minimal Redis client (RESP2) for the testbed's services and its verifier:
 * commands are arrays of bulk strings, replies are parsed into strings, integers, arrays and
 * nulls; an error reply rejects with RedisError. Commands are pipelined in order on one
 * connection; connecting and every command have a timeout.
 */
import * as net from 'node:net';

export type RedisReply = string | number | null | RedisReply[];

export class RedisError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisError';
  }
}

interface Waiter {
  resolve: (r: RedisReply) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Parses one reply at `pos`; returns undefined when the buffer does not hold all of it yet. */
function parse(buf: Buffer, pos: number): { value: RedisReply | RedisError; end: number } | undefined {
  if (pos >= buf.length) return undefined;
  const nl = buf.indexOf('\r\n', pos);
  if (nl < 0) return undefined;
  const type = String.fromCharCode(buf[pos]!);
  const line = buf.toString('utf8', pos + 1, nl);
  switch (type) {
    case '+':
      return { value: line, end: nl + 2 };
    case '-':
      return { value: new RedisError(line), end: nl + 2 };
    case ':':
      return { value: Number(line), end: nl + 2 };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: nl + 2 };
      if (buf.length < nl + 2 + n + 2) return undefined;
      return { value: buf.toString('utf8', nl + 2, nl + 2 + n), end: nl + 2 + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: nl + 2 };
      const arr: RedisReply[] = [];
      let p = nl + 2;
      for (let i = 0; i < n; i++) {
        const r = parse(buf, p);
        if (r === undefined) return undefined;
        arr.push(r.value instanceof RedisError ? r.value.message : r.value);
        p = r.end;
      }
      return { value: arr, end: p };
    }
    default:
      throw new RedisError(`malformed reply from Redis (type byte ${JSON.stringify(type)})`);
  }
}

export class RedisConnection {
  private readonly sock: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private readonly waiters: Waiter[] = [];
  private closedError: Error | undefined;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => this.fail(new RedisError(`connection to Redis failed: ${e.message}`)));
    sock.on('close', () => this.fail(new RedisError('the Redis connection was closed')));
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  static connect(port: number, host = '127.0.0.1', timeoutMs = 5000): Promise<RedisConnection> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host, port });
      const c = new RedisConnection(sock);
      const timer = setTimeout(() => {
        c.close();
        reject(new RedisError(`Redis at ${host}:${port} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        resolve(c);
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(new RedisError(`cannot connect to Redis at ${host}:${port}: ${e.message}`));
      });
    });
  }

  private fail(e: Error): void {
    if (this.closedError !== undefined) return;
    this.closedError = e;
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(e);
    }
    this.sock.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    let pos = 0;
    for (;;) {
      let r;
      try {
        r = parse(this.buf, pos);
      } catch (err) {
        this.fail(err instanceof Error ? err : new RedisError(String(err)));
        return;
      }
      if (r === undefined) break;
      pos = r.end;
      const w = this.waiters.shift();
      if (w === undefined) continue;
      clearTimeout(w.timer);
      if (r.value instanceof RedisError) w.reject(r.value);
      else w.resolve(r.value);
    }
    this.buf = this.buf.subarray(pos);
  }

  command(args: (string | number)[], timeoutMs = 10_000): Promise<RedisReply> {
    return new Promise((resolve, reject) => {
      if (this.closedError !== undefined) {
        reject(this.closedError);
        return;
      }
      const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
      for (const a of args) {
        const b = Buffer.from(String(a));
        parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
      }
      const timer = setTimeout(() => this.fail(new RedisError(`Redis did not answer ${String(args[0])} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ resolve, reject, timer });
      this.sock.write(Buffer.concat(parts));
    });
  }

  close(): void {
    this.fail(new RedisError('the Redis connection was closed'));
  }
}

/** Connects, runs one command, closes. */
export async function redisCommand(port: number, args: (string | number)[], timeoutMs?: number): Promise<RedisReply> {
  const c = await RedisConnection.connect(port);
  try {
    return await c.command(args, timeoutMs);
  } finally {
    c.close();
  }
}
