/**
 * testbed/stores: how the testbed's services, its verifier and its faults talk to PostgreSQL and
 * Redis, through the field's clients: pg (node-postgres) and node-redis. The testbed's clusters
 * listen on 127.0.0.1 only (PostgreSQL: `initdb -A trust`, no Unix socket), so both connect over
 * TCP to 127.0.0.1 without credentials.
 *
 * Every wait is bounded and a dead server fails fast, as verification after a crash needs:
 * - connecting: pg `connectionTimeoutMillis`; node-redis `socket.connectTimeout` for the TCP
 *   connection and a timer around `connect()` for its handshake (HELLO);
 * - each query or command: pg `query_timeout` (a query that runs past it closes its connection);
 *   node-redis' `timeout` command option with `rejectInFlight` (also while the reply is awaited);
 * - node-redis never reconnects behind the caller's back (`socket.reconnectStrategy: false`): a
 *   lost connection rejects what waits on it, and a caller that wants the store again connects
 *   again;
 * - closing: pg `end()` (and the socket destroyed if the server does not hang up within 1 s);
 *   node-redis `destroy()`. Nothing is left to keep the event loop alive.
 * Errors are one line (StoreError): a PostgreSQL server error keeps its SQLSTATE (pg's
 * DatabaseError `.code`) in `.code` and in the message.
 *
 * Both libraries are imported on first use: a testbed command or a service process that does not
 * talk to a store does not load them (node-redis with its modules takes about 0.3 s to import).
 */
import * as net from 'node:net';
import type { Client, ClientConfig, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { RedisClientType } from 'redis';

export const STORE_HOST = '127.0.0.1';

/** A store's error, one line; `code` is PostgreSQL's SQLSTATE (e.g. 57P03 "the database system is starting up") when the server sent one. */
export class StoreError extends Error {
  readonly code: string | undefined;
  constructor(message: string, options?: { cause?: unknown; code?: string | undefined }) {
    super(message.replace(/\s*\n\s*/g, ' '), options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'StoreError';
    this.code = options?.code;
  }
}

const firstLine = (err: unknown): string => (err instanceof Error ? err.message : String(err)).split('\n')[0]!;

// --- PostgreSQL -------------------------------------------------------------------------------

type Pg = typeof import('pg');
let pgLoading: Promise<Pg> | undefined;
/** The pg module (imported once, on first use). */
export const pgModule = (): Promise<Pg> => (pgLoading ??= import('pg'));

/** What a connection or pool of the testbed's PostgreSQL is made with. */
export function pgConfig(port: number, connectTimeoutMs: number): ClientConfig {
  return { host: STORE_HOST, port, user: 'postgres', database: 'postgres', ssl: false, application_name: 'meshback-testbed', connectionTimeoutMillis: connectTimeoutMs };
}

/** A pg error as a one-line StoreError; `sql` names the query, `timeoutMs` its bound. */
export async function pgError(err: unknown, sql?: string, timeoutMs?: number): Promise<StoreError> {
  if (err instanceof StoreError) return err;
  const { DatabaseError } = await pgModule();
  if (err instanceof DatabaseError) {
    const detail = err.detail !== undefined && err.detail !== '' ? ` (${err.detail})` : '';
    return new StoreError(`${err.message}${detail} [SQLSTATE ${err.code ?? '?'}]`, { cause: err, code: err.code });
  }
  const m = firstLine(err);
  if (m === 'Query read timeout' && sql !== undefined) return new StoreError(`query did not finish within ${timeoutMs} ms: ${sql.slice(0, 80)}`, { cause: err });
  const sys = err as { syscall?: string; address?: string; port?: number };
  if (sys.syscall === 'connect') return new StoreError(`cannot connect to PostgreSQL at ${sys.address}:${sys.port}: ${m}`, { cause: err });
  return new StoreError(`PostgreSQL: ${m}`, { cause: err });
}

/** One connection to the testbed's PostgreSQL (pg.Client). */
export class PgSession {
  readonly client: Client;
  readonly #sock: net.Socket;

  private constructor(client: Client, sock: net.Socket) {
    this.client = client;
    this.#sock = sock;
  }

  /** Connects within `timeoutMs` (connection and startup); a refused connection fails at once. */
  static async connect(port: number, timeoutMs = 5000): Promise<PgSession> {
    const { Client } = await pgModule();
    const sock = new net.Socket();
    const client = new Client({ ...pgConfig(port, timeoutMs), stream: () => sock });
    // a connection lost while idle: the next query rejects with it
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      sock.destroy();
      const e = await pgError(err);
      if (e.code !== undefined) throw e;
      // pg's connectionTimeoutMillis ends the attempt with "timeout expired"
      if (/timeout/i.test(firstLine(err))) throw new StoreError(`PostgreSQL at ${STORE_HOST}:${port} did not answer within ${timeoutMs} ms`, { cause: err });
      if (e.message.startsWith('cannot connect')) throw e;
      throw new StoreError(`cannot connect to PostgreSQL at ${STORE_HOST}:${port}: ${firstLine(err)}`, { cause: err });
    }
    return new PgSession(client, sock);
  }

  /**
   * Runs `sql` with its parameters ($1, ...) within `timeoutMs`. Without parameters `sql` may hold
   * several statements (pg then resolves with one result per statement).
   */
  async query<R extends QueryResultRow = QueryResultRow>(sql: string, values?: unknown[], timeoutMs = 30_000): Promise<QueryResult<R>> {
    const q: QueryConfig & { query_timeout: number } = { text: sql, query_timeout: timeoutMs, ...(values !== undefined ? { values } : {}) };
    try {
      return await this.client.query<R>(q);
    } catch (err) {
      const e = await pgError(err, sql, timeoutMs);
      // the server may still run a query that timed out: this connection is done
      if (e.code === undefined) this.#sock.destroy();
      throw e;
    }
  }

  /** Says goodbye (pg end()); a server that does not hang up within 1 s has its socket closed. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.client.end().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    this.#sock.destroy();
  }
}

/** Connects, runs one query, closes. */
export async function pgQuery<R extends QueryResultRow = QueryResultRow>(port: number, sql: string, o: { connectMs?: number; timeoutMs?: number; values?: unknown[] } = {}): Promise<QueryResult<R>> {
  const c = await PgSession.connect(port, o.connectMs);
  try {
    return await c.query<R>(sql, o.values, o.timeoutMs);
  } finally {
    await c.close();
  }
}

// --- Redis ------------------------------------------------------------------------------------

export type RedisClient = RedisClientType;
type Redis = typeof import('redis');
let redisLoading: Promise<Redis> | undefined;
/** The node-redis module (imported once, on first use). */
export const redisModule = (): Promise<Redis> => (redisLoading ??= import('redis'));

/** A node-redis error as a one-line StoreError naming the command. */
async function redisError(err: unknown, command: string, timeoutMs: number): Promise<StoreError> {
  if (err instanceof StoreError) return err;
  const r = await redisModule();
  if (err instanceof r.TimeoutError || err instanceof r.TimeoutReadError) return new StoreError(`Redis did not answer ${command} within ${timeoutMs} ms`, { cause: err });
  if (err instanceof r.ClientClosedError || err instanceof r.SocketClosedUnexpectedlyError || err instanceof r.ClientOfflineError) return new StoreError(`the Redis connection was closed (${command})`, { cause: err });
  // an error reply (ErrorReply: "ERR ...", "WRONGTYPE ...", "LOADING ...") or a socket error
  return new StoreError(`Redis: ${firstLine(err)} (${command})`, { cause: err });
}

/**
 * Connects to the testbed's Redis within `timeoutMs` (TCP connection and handshake); a refused
 * connection fails at once. The client does not reconnect: once `isReady` is false it is done
 * (destroy() it and connect again).
 */
export async function redisConnect(port: number, timeoutMs = 5000): Promise<RedisClient> {
  const { createClient, ConnectionTimeoutError } = await redisModule();
  const client = createClient({
    socket: { host: STORE_HOST, port, connectTimeout: timeoutMs, reconnectStrategy: false },
    disableClientInfo: true,
    maintNotifications: 'disabled',
    commandOptions: { timeout: 10_000, rejectInFlight: true },
  });
  // every failure also rejects the connect() or command that met it
  client.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreError(`Redis at ${STORE_HOST}:${port} did not answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([client.connect(), late]);
    return client;
  } catch (err) {
    redisClose(client);
    if (err instanceof StoreError) throw err;
    if (err instanceof ConnectionTimeoutError) throw new StoreError(`Redis at ${STORE_HOST}:${port} did not answer within ${timeoutMs} ms`, { cause: err });
    throw new StoreError(`cannot connect to Redis at ${STORE_HOST}:${port}: ${firstLine(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `run` on the client with a bound of `timeoutMs` for each command it sends; `command` names it in errors. */
export async function redisCall<T>(client: RedisClient, command: string, timeoutMs: number, run: (c: RedisClient) => Promise<T>): Promise<T> {
  try {
    return await run(client.withCommandOptions({ timeout: timeoutMs, rejectInFlight: true }));
  } catch (err) {
    throw await redisError(err, command, timeoutMs);
  }
}

/** Closes the connection at once (node-redis destroy()); safe on a client that is already closed. */
export function redisClose(client: RedisClient): void {
  try {
    client.destroy();
  } catch {
    /* already closed */
  }
}

/** Connects, runs `run`, closes. */
export async function redisOnce<T>(port: number, command: string, o: { connectMs?: number; timeoutMs?: number }, run: (c: RedisClient) => Promise<T>): Promise<T> {
  const c = await redisConnect(port, o.connectMs);
  try {
    return await redisCall(c, command, o.timeoutMs ?? 10_000, run);
  } finally {
    redisClose(c);
  }
}
