/**
 * The layer rule (eslint.config.js meshback/layers and scripts/layers.ts) on planted violations:
 * an upward import, an import between two folders of one level, the engine importing the lab, a
 * folder without a level; and the real tree passing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { ESLint } from 'eslint';

const root = path.resolve(import.meta.dirname, '../..');
const eslint = new ESLint({ cwd: root });

async function layerMessages(file: string, code: string): Promise<string[]> {
  const [r] = await eslint.lintText(code, { filePath: path.join(root, file) });
  return r!.messages.filter((m) => m.ruleId === 'meshback/layers').map((m) => m.message);
}

test('layers: an upward import fails lint', async () => {
  const m = await layerMessages('src/storage/planted.ts', "import { Repository } from '../repository/index.ts';\nexport type R = Repository;\n");
  assert.deepEqual(m, ['layer rule: src/storage (level 2) imports src/repository (level 6), which is above it']);
});

test('layers: two folders of one level never import each other (no folder cycle can form)', async () => {
  const m = await layerMessages('src/restorer/planted.ts', "export { archive } from '../archiver/index.ts';\n");
  assert.equal(m.length, 1);
  assert.match(m[0]!, /src\/restorer and src\/archiver are on one level \(8\)/);
});

test('layers: the engine never imports the lab, not even lazily by a literal path', async () => {
  const m = await layerMessages('src/cli/planted.ts', "export const load = () => import('../../lab/bench/peers.ts');\n");
  assert.equal(m.length, 1);
  assert.match(m[0]!, /the engine never imports the lab \(src\/cli -> lab\/bench\)/);
});

test('layers: a folder without a level fails lint', async () => {
  const m = await layerMessages('src/newthing/planted.ts', "export const x = 1;\n");
  assert.match(m[0]!, /folder src\/newthing has no level/);
});

test('layers: the tree has no folder cycle and every folder has a level', () => {
  const r = spawnSync(process.execPath, [path.join(root, 'scripts/layers.ts'), '--graph'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /lab\/bench\s+->.*src\/host/);
});
