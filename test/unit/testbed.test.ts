/**
 * The testbed's small parts without its servers: the missing-program error (naming the Debian
 * packages), the PostgreSQL and Redis protocol clients against scripted servers, and the process
 * tree that a container crash kills (PostgreSQL's children leave the postmaster's process group).
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
import { PgConnection, PgError, lit } from '../../lab/testbed/pgwire.ts';
import { groupAlive, killPids, procStat, processTree, waitFor, waitPidsGone } from '../../lab/testbed/procs.ts';
import { RedisConnection, RedisError } from '../../lab/testbed/resp.ts';

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

/** A one-connection server that answers each chunk it receives with `reply(chunk)`. */
async function scripted(reply: (chunk: Buffer, sock: net.Socket) => void): Promise<{ port: number; close(): void }> {
  const server = net.createServer((sock) => sock.on('data', (d: Buffer) => reply(d, sock)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address() as net.AddressInfo;
  return { port: a.port, close: () => server.close() };
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

describe('PostgreSQL protocol client', () => {
  test('startup, rows with NULLs, an error with its SQLSTATE, then the next query', async () => {
    const srv = await scripted((d, sock) => {
      if (d[0] === 0x58) return; // Terminate
      if (d.readInt32BE(4) === 196608) {
        sock.write(Buffer.concat([pgMsg('R', int32(0)), pgMsg('S', Buffer.from('server_version\x0015\x00')), pgMsg('K', Buffer.alloc(8)), ready]));
        return;
      }
      const sql = d.toString('utf8', 5, d.length - 1);
      if (sql.startsWith('SELECT')) {
        const field = (name: string): Buffer => Buffer.concat([Buffer.from(name + '\0'), Buffer.alloc(18)]);
        const row = Buffer.concat([int16(2), int32(2), Buffer.from('42'), int32(-1)]);
        sock.write(Buffer.concat([pgMsg('T', Buffer.concat([int16(2), field('id'), field('value')])), pgMsg('D', row), pgMsg('C', Buffer.from('SELECT 1\0')), ready]));
      } else {
        sock.write(Buffer.concat([pgMsg('E', Buffer.from('SERROR\0C57P03\0Mthe database system is starting up\0\0')), ready]));
      }
    });
    try {
      const c = await PgConnection.connect({ port: srv.port });
      const [bad, good] = await Promise.allSettled([c.query('BAD'), c.query('SELECT id, value')]);
      assert.equal(bad.status, 'rejected');
      assert.ok((bad as PromiseRejectedResult).reason instanceof PgError);
      assert.equal(((bad as PromiseRejectedResult).reason as PgError).sqlstate, '57P03');
      assert.equal(good.status, 'fulfilled');
      const r = (good as PromiseFulfilledResult<{ fields: string[]; rows: (string | null)[][]; command: string }>).value;
      assert.deepEqual(r.fields, ['id', 'value']);
      assert.deepEqual(r.rows, [['42', null]]);
      assert.equal(r.command, 'SELECT 1');
      c.close();
    } finally {
      srv.close();
    }
  });

  test('a server that never answers: the connection times out', async () => {
    const srv = await scripted(() => undefined);
    try {
      await assert.rejects(PgConnection.connect({ port: srv.port, timeoutMs: 200 }), /did not answer within 200 ms/);
    } finally {
      srv.close();
    }
  });

  test('literals are quoted', () => {
    assert.equal(lit("it's"), "'it''s'");
    assert.equal(lit(7), '7');
  });
});

describe('Redis protocol client', () => {
  test('pipelined replies of every type, split across packets', async () => {
    const srv = await scripted((d, sock) => {
      const text = d.toString();
      if (text.includes('PING')) {
        // all four replies, cut in the middle of a bulk string
        const all = Buffer.from('+PONG\r\n$5\r\nhello\r\n*3\r\n:1\r\n$-1\r\n$2\r\nok\r\n-ERR wrong type\r\n');
        sock.write(all.subarray(0, 12));
        setTimeout(() => sock.write(all.subarray(12)), 20);
      }
    });
    try {
      const c = await RedisConnection.connect(srv.port);
      const rs = await Promise.allSettled([c.command(['PING']), c.command(['GET', 'a']), c.command(['MGET', 'a', 'b', 'c']), c.command(['INCR', 'x'])]);
      assert.deepEqual(rs.slice(0, 3).map((r) => (r as PromiseFulfilledResult<unknown>).value), ['PONG', 'hello', [1, null, 'ok']]);
      assert.ok((rs[3] as PromiseRejectedResult).reason instanceof RedisError);
      assert.match(String((rs[3] as PromiseRejectedResult).reason), /ERR wrong type/);
      c.close();
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
