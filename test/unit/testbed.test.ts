/**
 * The testbed's small parts without its servers: the missing-program error (naming the Debian
 * packages), the bounded waits and one-line errors of its PostgreSQL and Redis clients (pg and
 * node-redis, see stores.ts) against scripted servers, and the process tree that a container crash
 * kills (PostgreSQL's children leave the postmaster's process group).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshbackError } from '../../src/errors/index.ts';
import { ensurePrograms } from '../../lab/testbed/deps.ts';
import { escapeIdentifier } from 'pg';
import { schemaSql } from '../../lab/testbed/components.ts';
import { groupAlive, killPids, procStat, processTree, waitFor, waitPidsGone } from '../../lab/testbed/procs.ts';
import type { TestbedState } from '../../lab/testbed/state.ts';
import { PgSession, StoreError, pgQuery, redisCall, redisClose, redisConnect } from '../../lab/testbed/stores.ts';

const base = mkdtempSync(path.join(os.tmpdir(), 'meshback-testbed-unit-'));
after(() => rmSync(base, { recursive: true, force: true }));

describe('missing programs', () => {
  test('one line naming the Debian packages of every missing program', async () => {
    const empty = path.join(base, 'empty');
    mkdirSync(empty, { recursive: true });
    await assert.rejects(
      ensurePrograms({ volumes: 'dir', install: false, searchPath: [empty], pgBase: empty }),
      (err: unknown) => {
        assert.ok(err instanceof MeshbackError);
        assert.equal(err.code, 'NOT_FOUND');
        assert.equal(err.message, 'nginx, redis-server, PostgreSQL (initdb, postgres) are not installed: install the Debian packages nginx redis-server postgresql (apt-get install nginx redis-server postgresql)');
        return true;
      },
    );
  });

  test('only what is missing is named', async () => {
    const bin = path.join(base, 'bin');
    mkdirSync(bin, { recursive: true });
    for (const name of ['nginx', 'redis-server']) {
      writeFileSync(path.join(bin, name), '#!/bin/sh\nexit 0\n');
      chmodSync(path.join(bin, name), 0o755);
    }
    await assert.rejects(ensurePrograms({ volumes: 'dir', install: false, searchPath: [bin], pgBase: path.join(base, 'nope') }), {
      message: 'PostgreSQL (initdb, postgres) is not installed: install the Debian package postgresql (apt-get install postgresql)',
    });
  });
});

/** A server that answers each chunk it receives with `reply(chunk)`. */
async function scripted(reply: (chunk: Buffer, sock: net.Socket) => void): Promise<{ port: number; close(): void }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    socks.add(sock);
    sock.on('close', () => socks.delete(sock));
    sock.on('data', (d: Buffer) => reply(d, sock));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address() as net.AddressInfo;
  return {
    port: a.port,
    close: () => {
      for (const x of socks) x.destroy();
      server.close();
    },
  };
}

/** A port nothing listens on (it did a moment ago). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

/** Rejects like `p`, within `ms`; returns the error. */
async function rejectsWithin(p: Promise<unknown>, ms: number, re: RegExp): Promise<StoreError> {
  const t0 = Date.now();
  const err = await p.then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof StoreError, String(err));
  assert.match(err.message, re);
  assert.doesNotMatch(err.message, /\n/);
  assert.ok(Date.now() - t0 < ms, `took ${Date.now() - t0} ms`);
  return err;
}

function pgMsg(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.write(type, 0);
  h.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const ready = pgMsg('Z', Buffer.from('I'));

/** A PostgreSQL server that completes the startup (trust) and hands each simple query to `query`. */
function pgServer(query: (sql: string, sock: net.Socket) => void): ReturnType<typeof scripted> {
  return scripted((d, sock) => {
    if (d[0] === 0x58) {
      sock.end(); // Terminate
      return;
    }
    if (d.readInt32BE(4) === 196608) {
      sock.write(Buffer.concat([pgMsg('R', int32(0)), pgMsg('S', Buffer.from('server_version\x0015\x00')), pgMsg('K', Buffer.alloc(8)), ready]));
      return;
    }
    if (d[0] === 0x51) query(d.toString('utf8', 5, d.length - 1), sock);
  });
}

describe('PostgreSQL client (pg) against a scripted stand-in server (timeouts and error framing; the real PostgreSQL runs in test/e2e/testbed*.test.ts)', () => {
  test('rows with NULLs, an error with its SQLSTATE in one line, then the next query', async () => {
    const srv = await pgServer((sql, sock) => {
      if (sql.startsWith('SELECT')) {
        const field = (name: string): Buffer => Buffer.concat([Buffer.from(name + '\0'), Buffer.alloc(18)]);
        const row = Buffer.concat([int16(2), int32(2), Buffer.from('42'), int32(-1)]);
        sock.write(Buffer.concat([pgMsg('T', Buffer.concat([int16(2), field('id'), field('value')])), pgMsg('D', row), pgMsg('C', Buffer.from('SELECT 1\0')), ready]));
      } else {
        sock.write(Buffer.concat([pgMsg('E', Buffer.from('SERROR\0C57P03\0Mthe database system is starting up\0Dline one\nline two\0\0')), ready]));
      }
    });
    try {
      const c = await PgSession.connect(srv.port);
      const [bad, good] = await Promise.allSettled([c.query('BAD'), c.query('SELECT id, value')]);
      assert.equal(bad.status, 'rejected');
      const e = (bad as PromiseRejectedResult).reason as StoreError;
      assert.ok(e instanceof StoreError);
      assert.equal(e.code, '57P03');
      assert.equal(e.message, 'the database system is starting up (line one line two) [SQLSTATE 57P03]');
      assert.equal(good.status, 'fulfilled');
      const r = (good as PromiseFulfilledResult<Awaited<ReturnType<typeof c.query>>>).value;
      assert.deepEqual(r.fields.map((f) => f.name), ['id', 'value']);
      assert.deepEqual(r.rows, [{ id: '42', value: null }]);
      assert.equal(r.command, 'SELECT');
      await c.close();
    } finally {
      srv.close();
    }
  });

  test('a server that never answers: connecting times out', async () => {
    const srv = await scripted(() => undefined);
    try {
      await rejectsWithin(PgSession.connect(srv.port, 200), 2000, /^PostgreSQL at 127\.0\.0\.1:\d+ did not answer within 200 ms$/);
    } finally {
      srv.close();
    }
  });

  test('a query that does not finish times out and closes its connection', async () => {
    const srv = await pgServer(() => undefined);
    try {
      const c = await PgSession.connect(srv.port);
      await rejectsWithin(c.query('SELECT pg_sleep(3600)', undefined, 200), 2000, /^query did not finish within 200 ms: SELECT pg_sleep\(3600\)$/);
      await rejectsWithin(c.query('SELECT 1'), 2000, /^PostgreSQL: /);
      await c.close();
    } finally {
      srv.close();
    }
  });

  test('nothing listening: fails at once', async () => {
    await rejectsWithin(pgQuery(await deadPort(), 'SELECT 1'), 2000, /^cannot connect to PostgreSQL at 127\.0\.0\.1:\d+: connect ECONNREFUSED /);
  });

  test('identifiers in the schema are quoted (pg escapeIdentifier)', () => {
    const s = { services: [{ name: 'or"ders', store: 'postgres' }] } as unknown as TestbedState;
    assert.match(schemaSql(s, escapeIdentifier), /^CREATE TABLE IF NOT EXISTS "or""ders" \(/);
  });
});

/** A Redis server that answers the handshake (HELLO 3) and hands each later chunk to `command`. */
function redisServer(command: (text: string, sock: net.Socket) => void): ReturnType<typeof scripted> {
  return scripted((d, sock) => {
    const text = d.toString();
    if (text.includes('HELLO')) sock.write('%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n');
    else command(text, sock);
  });
}

describe('Redis client (node-redis) against a scripted stand-in server (timeouts and error framing; the real Redis runs in test/e2e/testbed*.test.ts)', () => {
  test('replies split across packets; an error reply is one line naming its command', async () => {
    const srv = await redisServer((text, sock) => {
      if (text.includes('PING')) {
        // all four replies, cut in the middle of a bulk string
        const all = Buffer.from('+PONG\r\n$5\r\nhello\r\n*3\r\n$1\r\n1\r\n_\r\n$2\r\nok\r\n-ERR wrong type\r\n');
        sock.write(all.subarray(0, 12));
        setTimeout(() => sock.write(all.subarray(12)), 20);
      }
    });
    try {
      const c = await redisConnect(srv.port);
      const rs = await Promise.allSettled([
        redisCall(c, 'PING', 2000, (r) => r.ping()),
        redisCall(c, 'GET', 2000, (r) => r.get('a')),
        redisCall(c, 'MGET', 2000, (r) => r.mGet(['a', 'b', 'c'])),
        redisCall(c, 'INCR', 2000, (r) => r.incr('x')),
      ]);
      assert.deepEqual(rs.slice(0, 3).map((r) => (r as PromiseFulfilledResult<unknown>).value), ['PONG', 'hello', ['1', null, 'ok']]);
      const e = (rs[3] as PromiseRejectedResult).reason as StoreError;
      assert.ok(e instanceof StoreError);
      assert.equal(e.message, 'Redis: ERR wrong type (INCR)');
      redisClose(c);
    } finally {
      srv.close();
    }
  });

  test('a server that never answers: connecting times out', async () => {
    const srv = await scripted(() => undefined);
    try {
      await rejectsWithin(redisConnect(srv.port, 200), 2000, /^Redis at 127\.0\.0\.1:\d+ did not answer within 200 ms$/);
    } finally {
      srv.close();
    }
  });

  test('a command without an answer times out', async () => {
    const srv = await redisServer(() => undefined);
    try {
      const c = await redisConnect(srv.port);
      await rejectsWithin(redisCall(c, 'GET', 200, (r) => r.get('a')), 2000, /^Redis did not answer GET within 200 ms$/);
      redisClose(c);
    } finally {
      srv.close();
    }
  });

  test('nothing listening: fails at once; a lost connection is not made again behind the caller', async () => {
    await rejectsWithin(redisConnect(await deadPort()), 2000, /^cannot connect to Redis at 127\.0\.0\.1:\d+: connect ECONNREFUSED /);
    const srv = await redisServer((_text, sock) => sock.destroy());
    try {
      const c = await redisConnect(srv.port);
      await rejectsWithin(redisCall(c, 'GET', 2000, (r) => r.get('a')), 1000, /^the Redis connection was closed \(GET\)$/);
      assert.equal(c.isReady, false);
      await rejectsWithin(redisCall(c, 'GET', 2000, (r) => r.get('a')), 1000, /^the Redis connection was closed \(GET\)$/);
      redisClose(c);
    } finally {
      srv.close();
    }
  });
});

describe('process trees', () => {
  test('a SIGKILL reaches children that left the process group (as PostgreSQL backends do)', async () => {
    // a leader with one child in its group and one that starts a session of its own
    const p = spawn('sh', ['-c', 'sleep 60 & setsid sleep 61 & wait'], { detached: true, stdio: 'ignore' });
    await new Promise((r) => p.once('spawn', r));
    const ref = { pid: p.pid!, startTime: procStat(p.pid!)!.startTime };
    // wait until both children run and the setsid one has left the group (setsid runs in the child
    // after fork: right after the fork it is still in the leader's group)
    const tree = await waitFor(() => {
      const t = processTree(ref);
      return t.length >= 3 && t.some((pid) => procStat(pid)?.pgrp !== ref.pid) ? t : undefined;
    }, 5000);
    assert.ok(tree !== undefined, 'the children did not appear');
    const own = tree.filter((pid) => procStat(pid)!.pgrp !== ref.pid);
    assert.equal(own.length, 1, 'one child runs in a process group of its own');
    killPids(tree);
    assert.equal(await waitPidsGone(tree, 5000), true);
    assert.equal(groupAlive(ref), false);
  });

  test('a pid reused by another process is not ours', () => {
    const me = procStat(process.pid)!;
    assert.equal(groupAlive({ pid: process.pid, startTime: me.startTime + 1 }), false);
    assert.deepEqual(processTree({ pid: process.pid, startTime: me.startTime + 1 }), []);
  });
});
