/**
 * The backend registry: which locations open which backend, the one-line errors for unknown
 * schemes and bad locations, registering a new scheme, and the CLI's use of it (every command's
 * backend comes inside the storage stack).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import * as path from 'node:path';
import type { Backend } from '../../src/storage/backend.ts';
import { findLayer, unwrap } from '../../src/storage/backend.ts';
import { FaultyBackend } from '../../src/storage/faulty.ts';
import { LimitBackend } from '../../src/storage/limit.ts';
import { LocalBackend } from '../../src/storage/local.ts';
import { MemoryBackend } from '../../src/storage/memory.ts';
import { RetryBackend } from '../../src/storage/retry.ts';
import { S3Backend } from '../../src/storage/s3.ts';
import { factoryFor, openBackend, redactLocation, registerBackend, schemeOf } from '../../src/storage/registry.ts';
import type { BackendFactory } from '../../src/storage/registry.ts';
import { UsageError } from '../../src/errors/index.ts';
import type { MeshEvent } from '../../src/events/index.ts';
import { backendFor } from '../../src/cli/context.ts';

function usage(re: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof UsageError, String(e));
    assert.equal(e.code, 'USAGE');
    assert.doesNotMatch(e.message, /\n/);
    assert.match(e.message, re);
    return true;
  };
}

const root = (b: Backend): string => {
  const u = unwrap(b);
  assert.ok(u instanceof LocalBackend);
  return u.location;
};

describe('backend registry', () => {
  it('opens a local directory for a path, local:PATH, file:PATH and file:///PATH', () => {
    const cwd = process.cwd();
    const cases: [string, string][] = [
      ['/srv/backup/repo', '/srv/backup/repo'],
      ['repo', path.join(cwd, 'repo')],
      ['./with:colon', path.join(cwd, 'with:colon')],
      ['../up/repo', path.resolve(cwd, '../up/repo')],
      ['local:/srv/repo', '/srv/repo'],
      ['LOCAL:/srv/repo', '/srv/repo'],
      ['local:rel/repo', path.join(cwd, 'rel/repo')],
      ['local:name:with:colons', path.join(cwd, 'name:with:colons')],
      ['file:/srv/repo', '/srv/repo'],
      ['file:///srv/my%20repo', '/srv/my repo'],
      ['file://localhost/srv/repo', '/srv/repo'],
      ['file:rel/repo', path.join(cwd, 'rel/repo')],
    ];
    for (const [location, want] of cases) assert.equal(root(openBackend(location)), want, location);
  });

  it('refuses an unknown scheme in one line that says what is supported', () => {
    assert.throws(() => openBackend('gs:my-bucket/repo'), usage(/^no backend for gs:my-bucket\/repo: meshback supports local directories \(a path, local:PATH, file:PATH or file:\/\/\/PATH\), S3 \(s3:https:\/\/HOST\[:PORT\]\/BUCKET\[\/PREFIX\], s3:BUCKET\[\/PREFIX\] on AWS\); for a directory whose name has a colon write \.\/gs:my-bucket\/repo$/));
    assert.throws(() => openBackend('sftp://backup@host/srv/repo'), usage(/^no backend for sftp:\/\/\*\*\*@host\/srv\/repo: meshback supports local directories .*; for a directory whose name has a colon write \.\/sftp:/));
    assert.throws(() => openBackend('backups:2024'), usage(/for a directory whose name has a colon write \.\/backups:2024$/));
  });

  it('opens s3: locations without I/O: custom endpoints (path-style) and AWS buckets, with a prefix', () => {
    const cases: [string, { endpoint?: string; bucket: string; prefix: string }, string][] = [
      ['s3:http://127.0.0.1:9000/bucket/some/prefix', { endpoint: 'http://127.0.0.1:9000', bucket: 'bucket', prefix: 'some/prefix' }, 's3:http://127.0.0.1:9000/bucket/some/prefix'],
      ['S3:https://minio.example.com/my-bucket/', { endpoint: 'https://minio.example.com', bucket: 'my-bucket', prefix: '' }, 's3:https://minio.example.com/my-bucket'],
      ['s3:my-bucket', { bucket: 'my-bucket', prefix: '' }, 's3:my-bucket'],
      ['s3:my-bucket/repo//x/', { bucket: 'my-bucket', prefix: 'repo/x' }, 's3:my-bucket/repo/x'],
    ];
    for (const [location, want, shown] of cases) {
      const b = openBackend(location, { stack: false }) as S3Backend;
      assert.ok(b instanceof S3Backend, location);
      assert.deepEqual({ ...(b.endpoint !== undefined ? { endpoint: b.endpoint } : {}), bucket: b.bucket, prefix: b.prefix }, want, location);
      assert.equal(b.location, shown);
      assert.equal(b.properties.connections, 16);
    }
    assert.ok(openBackend('s3:bucket') instanceof RetryBackend, 'inside the stack');
    assert.throws(() => openBackend('s3:'), usage(/names no bucket: write s3:https:\/\/HOST/));
    assert.throws(() => openBackend('s3:http://127.0.0.1:9000/'), usage(/names no bucket/));
    assert.throws(() => openBackend('s3:Bad_Bucket/x'), usage(/"Bad_Bucket" is not a valid bucket name/));
    assert.throws(() => openBackend('s3:bucket/../x'), usage(/may not contain \.\./));
    assert.throws(() => openBackend('s3:https://AKIA:secret@host/bucket'), (e: unknown) => e instanceof UsageError && !e.message.includes('secret') && /AWS_ACCESS_KEY_ID/.test(e.message));
  });

  it('reads the options of an s3: location from its query, and refuses unknown or bad ones in one line', () => {
    const b = openBackend('s3:https://rgw.example.com/bk1/p?region=eu-west-1&addressing=virtual&ca=/etc/ca.pem&overwrite-check=head', { stack: false }) as S3Backend;
    assert.equal(b.location, 's3:https://rgw.example.com/bk1/p?region=eu-west-1&addressing=virtual&ca=%2Fetc%2Fca.pem&overwrite-check=head');
    assert.deepEqual([b.bucket, b.prefix], ['bk1', 'p']);
    const aws = openBackend('s3:bk1/x?region=us-west-2&addressing=path', { stack: false }) as S3Backend;
    assert.deepEqual([aws.bucket, aws.prefix, aws.endpoint, aws.location], ['bk1', 'x', undefined, 's3:bk1/x?region=us-west-2&addressing=path']);
    assert.throws(() => openBackend('s3:bk1?colour=blue'), usage(/unknown option "colour": the options are region=, addressing=, ca=, overwrite-check=/));
    assert.throws(() => openBackend('s3:bk1?addressing=dns'), usage(/write addressing=path or addressing=virtual/));
    assert.throws(() => openBackend('s3:bk1?region=EU%20West'), usage(/is not a region name/));
    assert.throws(() => openBackend('s3:bk1?overwrite-check=none'), usage(/overwrite-check=if-none-match \(the default\) or overwrite-check=head/));
    assert.throws(() => openBackend('s3:bk1?region=a&region=b'), usage(/option region is given twice/));
    assert.throws(() => openBackend('s3:bk1?ca='), usage(/ca= names no file/));
  });

  it('never shows a password of a location', () => {
    assert.equal(redactLocation('s3:https://AKIA:secret@host/bucket'), 's3:https://***@host/bucket');
    assert.equal(redactLocation('/srv/repo'), '/srv/repo');
    assert.throws(() => openBackend('rest:https://user:hunter2@host/repo'), (e: unknown) => e instanceof UsageError && !e.message.includes('hunter2') && e.message.includes('rest:https://***@host/repo'));
  });

  it('refuses a location that names no directory, and a file URL of another host', () => {
    assert.throws(() => openBackend('local:'), usage(/names no directory: write e\.g\. local:\/srv\/backup\/repo/));
    assert.throws(() => openBackend('file:'), usage(/names no directory: write e\.g\. file:\/srv\/backup\/repo/));
    assert.throws(() => openBackend('file://otherhost/srv/repo'), usage(/is not a usable file URL .*: write file:\/\/\/absolute\/path or a plain path/));
  });

  it('tells a scheme from a path', () => {
    assert.equal(schemeOf('s3:bucket'), 's3');
    assert.equal(schemeOf('File:///x'), 'file');
    assert.equal(schemeOf('/abs/with:colon'), undefined);
    assert.equal(schemeOf('./rel:x'), undefined);
    assert.equal(schemeOf('plain'), undefined);
    assert.equal(schemeOf('1abc:x'), undefined);
  });

  it('a registered factory opens its scheme; a scheme registers once; unregistering brings the error back', async () => {
    const opened: string[] = [];
    const mem: BackendFactory<{ name: string }> = {
      scheme: 'mem',
      describe: 'memory (mem:NAME, tests)',
      accepts: (l) => schemeOf(l) === 'mem',
      parse: (l) => {
        const name = l.slice(4);
        if (name === '') throw new UsageError('mem: needs a name: write mem:NAME');
        return { name };
      },
      open: (c) => {
        opened.push(c.name);
        return new MemoryBackend();
      },
    };
    const off = registerBackend(mem);
    try {
      assert.equal(factoryFor('mem:one').scheme, 'mem');
      assert.equal(factoryFor('/srv/repo').scheme, 'local');
      const b = openBackend('mem:one');
      assert.ok(unwrap(b) instanceof MemoryBackend);
      assert.ok(b instanceof RetryBackend, 'inside the stack');
      assert.equal(findLayer(b, LimitBackend)!.slots.limit, 8, 'limited to the backend properties.connections');
      await b.put({ type: 'config', name: 'config' }, Buffer.from('c'));
      assert.equal(await b.exists(), true);
      assert.deepEqual(opened, ['one']);
      assert.throws(() => openBackend('mem:'), usage(/mem: needs a name/));
      assert.throws(() => registerBackend({ ...mem }), /already registered/);
      assert.throws(() => openBackend('gs:x'), usage(/meshback supports local directories .*, S3 .*, memory \(mem:NAME, tests\); for a directory/));
    } finally {
      off();
    }
    assert.throws(() => openBackend('mem:one'), usage(/no backend for mem:one/));
  });

  it('opens inside the stack by default, reports retries as warnings, and stack: false gives the backend alone', async () => {
    const b = openBackend('/srv/repo');
    assert.ok(b instanceof RetryBackend);
    assert.equal(findLayer(b, LimitBackend)!.slots.limit, 32);
    assert.ok(openBackend('/srv/repo', { stack: false }) instanceof LocalBackend);
    const off = registerBackend<null>({
      scheme: 'flaky',
      describe: 'flaky: (tests)',
      accepts: (l) => schemeOf(l) === 'flaky',
      parse: () => null,
      open: () => new FaultyBackend(new MemoryBackend(), { rules: [{ kind: 'transient', op: 'put', nth: 1 }] }),
    });
    try {
      const events: MeshEvent[] = [];
      const f = openBackend('flaky:', { events: (e) => events.push(e), retry: { sleep: async () => undefined, random: () => 0.5 } });
      await f.put({ type: 'key', name: 'k1' }, Buffer.from('k'));
      assert.deepEqual(events, [{ type: 'warning', message: 'storage: retrying put key/k1 in 0.1 s (attempt 2 of 6) after: injected transient fault: put key/k1 failed' }]);
    } finally {
      off();
    }
  });

  it('the CLI opens every repository through the registry and the stack; MESHBACK_FAULTS adds the fault plan', () => {
    const b = backendFor('/srv/repo');
    assert.ok(b instanceof RetryBackend);
    assert.ok(unwrap(b) instanceof LocalBackend);
    assert.equal(findLayer(b, FaultyBackend), undefined);
    assert.ok(unwrap(backendFor('s3:bucket')) instanceof S3Backend);
    process.env['MESHBACK_FAULTS'] = 'seed=3;transient,op=put,p=0.5';
    try {
      const f = findLayer(backendFor('/srv/repo'), FaultyBackend);
      assert.ok(f !== undefined);
      assert.deepEqual(f.rules, [{ kind: 'transient', op: ['put'], probability: 0.5 }]);
      process.env['MESHBACK_FAULTS'] = 'oops';
      assert.throws(() => backendFor('/srv/repo'), usage(/fault plan "oops": unknown fault kind/));
    } finally {
      delete process.env['MESHBACK_FAULTS'];
    }
  });
});
