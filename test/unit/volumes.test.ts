/** src/volumes: directory and loop-mounted btrfs volumes, their snapshots, mount and unmount. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isRoot } from '../../src/host/packages.ts';
import { btrfsSupport, createVolume, isMountPoint, mountedVolumes, openVolume } from '../../src/volumes/index.ts';

const tmp = (name: string): Promise<string> => fsp.mkdtemp(path.join(os.tmpdir(), `meshback-${name}-`));

test('volumes: a directory, and a loop-mounted btrfs volume with read-only snapshots', { timeout: 60_000 }, async (t) => {
  const base = await tmp('volume');
  try {
    const d = await createVolume({ kind: 'dir', name: 'd', dir: path.join(base, 'd') });
    await fsp.writeFile(path.join(d.path, 'f'), 'x');
    assert.ok((await d.free()) > 0);
    assert.equal((await d.snapshot()).path, d.path);
    await d.destroy();
    await assert.rejects(fsp.stat(d.path));

    const support = await btrfsSupport(path.join(base, 'probe'), false);
    if (support !== true) {
      t.diagnostic(`btrfs part skipped: ${support}`);
      assert.ok(!isRoot() || /mkfs\.btrfs|loop/.test(support), support);
      return;
    }
    const v = await createVolume({ kind: 'btrfs', name: 'b', dir: base, sizeBytes: 256 * 1024 * 1024, unmountOnExit: true });
    assert.equal(v.kind, 'btrfs');
    assert.ok(v.image !== undefined && mountedVolumes().length === 1);
    await fsp.writeFile(path.join(v.path, 'f'), 'before');
    const free = await v.free();
    assert.ok(free > 100 * 1024 * 1024 && free < 256 * 1024 * 1024, String(free));
    const s = await v.snapshot();
    await fsp.writeFile(path.join(v.path, 'f'), 'after');
    assert.equal(await fsp.readFile(path.join(s.path, 'f'), 'utf8'), 'before');
    await assert.rejects(fsp.writeFile(path.join(s.path, 'g'), 'x'), /EROFS/);
    const s2 = await v.snapshot(); // a second one while the first is held
    assert.notEqual(s2.path, s.path);
    await s2.release();
    await s.release();
    await assert.rejects(fsp.stat(s.path));
    // a released slot is taken again: a tool that finds its parent by path sees one source path
    const s3 = await v.snapshot();
    assert.equal(s3.path, s.path);
    assert.equal(path.basename(s3.path), 'b', 'a snapshot is named like its volume');
    await s3.release();
    // a volume reopened from its spec (another process) snapshots and detaches it too
    const again = openVolume({ name: v.name, kind: v.kind, path: v.path, image: v.image!, mount: v.mount! });
    assert.equal(await again.detach(), undefined);
    assert.ok(!isMountPoint(v.mount!));
    await again.attach();
    assert.equal(await fsp.readFile(path.join(v.path, 'f'), 'utf8'), 'after');
    await v.destroy();
    assert.deepEqual(mountedVolumes(), []);
    assert.ok(!(await fsp.readFile('/proc/self/mounts', 'utf8')).includes(base));
    await assert.rejects(fsp.stat(v.image!));
  } finally {
    await fsp.rm(base, { recursive: true, force: true });
  }
});
