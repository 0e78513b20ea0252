/**
 * End-to-end: malformed JSON files through the real CLI: one line on stderr naming the file and
 * the field, and the documented exit code (4 for repository data, 2 for a user's file).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { LocalBackend } from '../../src/storage/local.ts';
import { Repository } from '../../src/repository/index.ts';
import { mb, rmrf, tmpdir } from '../helpers/cli.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const oneLine = (stderr: string): void => assert.equal(stderr.trim().split('\n').length, 1, stderr);

describe('malformed files', () => {
  let base: string;
  let repo: string;
  let src: string;
  let env: Record<string, string>;

  before(async () => {
    base = tmpdir('schemas');
    repo = path.join(base, 'repo');
    src = path.join(base, 'src');
    env = { MESHBACK_REPO: repo, MESHBACK_PASSWORD: 'pw' };
    await fsp.mkdir(src);
    await fsp.writeFile(path.join(src, 'a.txt'), 'hello\n');
    assert.equal((await mb(['init'], { env })).code, 0);
    const b = await mb(['backup', src], { env });
    assert.equal(b.code, 0, b.stderr);
  });
  after(async () => {
    await rmrf(base);
  });

  test('a snapshot with a wrong field type: exit 4, one line naming the snapshot and the field', async () => {
    process.env['MESHBACK_TEST_SCRYPT_N'] = '1024';
    const r = await Repository.open(new LocalBackend(repo), 'pw', { loadIndex: false });
    const good = (await r.listSnapshots())[0]!.snapshot;
    const id = await r.saveSnapshot({ ...good, summary: { ...good.summary, files: 'many' } } as never);
    const s = await mb(['snapshots'], { env });
    assert.equal(s.code, 4, s.stderr);
    oneLine(s.stderr);
    assert.match(s.stderr, new RegExp(`^meshback: snapshot ${id.slice(0, 8)}: field "summary\\.files" must be a number \\(it is "many"\\): the snapshot file is malformed; delete it from the repository's snapshots/ directory`));
    await fsp.rm(path.join(repo, 'snapshots', id));
    assert.equal((await mb(['snapshots'], { env })).code, 0);
  });

  test('a lock file with garbage: commands warn and go on, unlock --list names it, unlock removes it', async () => {
    const garbage = Buffer.from('garbage, not a sealed lock file; written by something else');
    const name = sha(garbage);
    await fsp.writeFile(path.join(repo, 'locks', name), garbage);
    const b = await mb(['backup', src], { env });
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, new RegExp(`ignoring damaged lock file ${name.slice(0, 8)}: .*; remove it with 'meshback unlock'`));
    const l = await mb(['unlock', '--list', '--json'], { env });
    assert.equal(l.code, 0, l.stderr);
    const listed = (JSON.parse(l.stdout) as { id: string; damaged?: string }[]).find((x) => x.id === name);
    assert.ok(listed?.damaged !== undefined, l.stdout);
    assert.equal((await mb(['unlock'], { env })).code, 0);
    await assert.rejects(fsp.stat(path.join(repo, 'locks', name)));
  });

  test('a key file missing a field: named by key list; as the only key, exit 4 (not "wrong password")', async () => {
    const [good] = await fsp.readdir(path.join(repo, 'keys'));
    const kf = JSON.parse(await fsp.readFile(path.join(repo, 'keys', good!), 'utf8')) as Record<string, unknown>;
    delete kf['kdf'];
    const bytes = Buffer.from(JSON.stringify(kf, null, 2));
    await fsp.writeFile(path.join(repo, 'keys', sha(bytes)), bytes);
    const k = await mb(['key', 'list'], { env });
    assert.equal(k.code, 0, k.stderr);
    assert.match(k.stdout, new RegExp(`${sha(bytes).slice(0, 8)}  DAMAGED: not a valid key file \\(field "kdf" is missing\\); remove it with meshback key remove`));
    // the same repository without its good key
    const copy = path.join(base, 'repo-copy');
    await fsp.cp(repo, copy, { recursive: true });
    await fsp.rm(path.join(copy, 'keys', good!));
    const s = await mb(['snapshots'], { env: { ...env, MESHBACK_REPO: copy } });
    assert.equal(s.code, 4, s.stderr);
    oneLine(s.stderr);
    assert.match(s.stderr, new RegExp(`^meshback: no key file of the repository at .* can be read: key file ${sha(bytes).slice(0, 8)}: field "kdf" is missing: restore keys/`));
    assert.equal((await mb(['key', 'remove', sha(bytes).slice(0, 8)], { env })).code, 0);
  });

  test('bench report of a results.json of the wrong shape: exit 2, one line naming the field', async () => {
    const dir = path.join(base, 'bench');
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'results.json'), JSON.stringify({ schema: 'meshback-bench-results', version: 1, tools: 'meshback' }));
    const r = await mb(['bench', 'report', dir]);
    assert.equal(r.code, 2, r.stderr);
    oneLine(r.stderr);
    assert.match(r.stderr, /^meshback: .*results\.json is malformed: field "\w+" (is missing|must be [^;]*)( \(and \d+ more problems?\))?; re-run `meshback bench run` or restore the file/);
  });
});
