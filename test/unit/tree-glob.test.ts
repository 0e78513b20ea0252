import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IntegrityError } from '../../src/errors/index.ts';
import { decodeTree, displayName, encodeName, encodeTree, linkTargetBytes, nodeNameBytes } from '../../src/snapshot/tree.ts';
import type { Node, Tree } from '../../src/snapshot/tree.ts';

function node(name: string | Buffer, extra: Partial<Node> = {}): Node {
  const n: Node = { ...(typeof name === 'string' ? { name } : encodeName(name)), type: 'file', mode: 0o644, uid: 0, gid: 0, mtime: '0', ctime: '0', inode: 1, dev: 1, nlink: 1, size: 0, content: [] };
  return { ...n, ...extra };
}

const enc = (t: Tree): Buffer => Buffer.from(JSON.stringify(t));
const isIntegrity = (err: unknown): boolean => err instanceof IntegrityError && err.code === 'INTEGRITY';

describe('tree names', () => {
  it('round trips valid UTF-8 names through name', () => {
    for (const s of ['plain.txt', 'héllo wörld', '日本語', 'emoji 😀', 'tab\there', 'new\nline', ' ', '-', '\u0001']) {
      const raw = Buffer.from(s, 'utf8');
      const e = encodeName(raw);
      assert.equal(e.nameRaw, undefined, s);
      assert.equal(e.name, s);
      assert.deepEqual(nodeNameBytes(e), raw);
    }
  });

  it('round trips invalid UTF-8 names through base64 nameRaw', () => {
    const cases = [
      Buffer.from([0xff]),
      Buffer.from([0x66, 0x6f, 0x80, 0x6f]), // stray continuation byte
      Buffer.from([0xc3]), // truncated sequence
      Buffer.from([0xed, 0xa0, 0x80]), // an encoded surrogate
      Buffer.from([0xc0, 0xaf]), // overlong '/'
      Buffer.from('latin1 caf\xe9', 'latin1'),
    ];
    for (const raw of cases) {
      const e = encodeName(raw);
      assert.ok(e.nameRaw !== undefined, raw.toString('hex'));
      assert.deepEqual(nodeNameBytes(e), raw, raw.toString('hex'));
      // and through JSON, as stored in a tree
      assert.deepEqual(nodeNameBytes(JSON.parse(JSON.stringify(e)) as { name: string; nameRaw?: string }), raw);
    }
  });

  it('round trips a name that starts with a UTF-8 byte order mark', () => {
    const raw = Buffer.from([0xef, 0xbb, 0xbf, 0x61]);
    assert.deepEqual(nodeNameBytes(encodeName(raw)), raw);
  });

  it('keeps distinct on-disk names distinct (a file "\\uFEFFa" next to "a")', () => {
    const t: Tree = { nodes: [node(Buffer.from('a')), node(Buffer.from([0xef, 0xbb, 0xbf, 0x61]))] };
    const decoded = decodeTree(encodeTree(t), 'bom');
    assert.equal(decoded.nodes.length, 2);
  });

  it('round trips symlink targets, also invalid UTF-8', () => {
    const n = node('l', { type: 'symlink', linkTarget: '../a/b' });
    assert.deepEqual(linkTargetBytes(n), Buffer.from('../a/b'));
    const raw = Buffer.from([0x2e, 0x2e, 0x2f, 0xfe]);
    const m = node('m', { type: 'symlink', linkTargetRaw: raw.toString('base64') });
    assert.deepEqual(linkTargetBytes(m), raw);
  });

  it('displays invalid bytes as \\xNN', () => {
    assert.equal(displayName(Buffer.from([0x61, 0xff, 0x62])), 'a\\xffb');
    assert.equal(displayName(Buffer.from('ok')), 'ok');
  });
});

describe('decodeTree', () => {
  it('accepts a valid tree and returns its nodes', () => {
    const t: Tree = { nodes: [node('a'), node('b', { type: 'dir', subtree: 'ab'.repeat(32) }), node(Buffer.from([0xff]))] };
    assert.deepEqual(decodeTree(enc(t), 'ok'), t);
  });

  for (const bad of ['..', '.', 'a/b', '/', 'a/', '/a', '', 'nul\u0000byte']) {
    it(`rejects the name ${JSON.stringify(bad)} with IntegrityError`, () => {
      assert.throws(() => decodeTree(enc({ nodes: [node('fine'), node(bad)] }), 't'.repeat(64)), isIntegrity);
    });
  }

  it('rejects unsafe names hidden in nameRaw', () => {
    for (const bad of ['..', '.', 'x/y', '']) {
      const n = node('', { nameRaw: Buffer.from(bad).toString('base64') });
      assert.throws(() => decodeTree(enc({ nodes: [n] }), 'raw'), isIntegrity, JSON.stringify(bad));
    }
    // nameRaw wins over an innocent-looking name
    assert.throws(() => decodeTree(enc({ nodes: [node('safe', { nameRaw: Buffer.from('..').toString('base64') })] }), 'raw'), isIntegrity);
  });

  it('rejects duplicate names, also when spelled once as name and once as nameRaw', () => {
    assert.throws(() => decodeTree(enc({ nodes: [node('a'), node('b'), node('a')] }), 'dup'), isIntegrity);
    assert.throws(() => decodeTree(enc({ nodes: [node('a'), node('', { nameRaw: Buffer.from('a').toString('base64') })] }), 'dup'), isIntegrity);
  });

  it('rejects invalid JSON and trees without a node list', () => {
    for (const data of ['{', 'null', '[]', '{"nodes":{}}', '"x"', '{}']) {
      assert.throws(() => decodeTree(Buffer.from(data), 'bad'), isIntegrity, data);
    }
  });

  it('rejects structurally malformed nodes with IntegrityError (not a TypeError)', () => {
    for (const data of ['{"nodes":[null]}', '{"nodes":[1]}', '{"nodes":[{"name":5}]}', '{"nodes":[{}]}']) {
      assert.throws(() => decodeTree(Buffer.from(data), 'bad'), isIntegrity, data);
    }
  });
});

describe('encodeTree', () => {
  it('sorts nodes by the bytes of their names, not by UTF-16 order', () => {
    // U+FF5E (EF BD 9E) sorts before U+1F600 (F0 9F 98 80) by bytes, after it in UTF-16.
    const names = ['😀', 'b', '\uff5e', 'B', 'a', 'é', 'z', '_', 'a0'];
    const t: Tree = { nodes: names.map((n) => node(n)) };
    t.nodes.push(node(Buffer.from([0xff, 0x41])));
    t.nodes.push(node(Buffer.from([0xc3])));
    const out = decodeTree(encodeTree(t), 'sorted').nodes.map((n) => nodeNameBytes(n));
    const expected = [...out].sort(Buffer.compare);
    assert.deepEqual(out, expected);
    assert.deepEqual(
      out.map((b) => b.toString('hex')),
      ['B', '_', 'a', 'a0', 'b', 'z'].map((s) => Buffer.from(s).toString('hex')).concat(['c3', 'c3a9', 'efbd9e', 'f09f9880', 'ff41']),
    );
  });

  it('is canonical: the same listing in any order encodes to the same bytes', () => {
    const a = encodeTree({ nodes: [node('x'), node('y'), node('z')] });
    const b = encodeTree({ nodes: [node('z'), node('x'), node('y')] });
    assert.deepEqual(a, b);
  });
});
