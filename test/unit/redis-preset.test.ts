/**
 * The redis preset's pure parts (src/policy/presets/redis.ts): INFO persistence read into a map,
 * the default mode chosen by what the server loads at start, and its options in a policy file
 * (password-file against the file's folder; mistakes one line naming the field).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MeshbackError } from '../../src/errors/index.ts';
import { parsePolicyFile } from '../../src/policy/index.ts';
import { defaultMode, parseInfo } from '../../src/policy/presets/redis.ts';

const INFO = '# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:1796543305\r\nrdb_last_bgsave_status:ok\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrites:3\r\n';

test('INFO persistence: key:value lines, the section header skipped; the mode follows aof_enabled', () => {
  const i = parseInfo(INFO);
  assert.equal(i.get('aof_rewrites'), '3');
  assert.equal(i.get('rdb_last_save_time'), '1796543305');
  assert.equal(i.has('# Persistence'), false);
  assert.equal(defaultMode(i), 'aof-rewrite');
  assert.equal(defaultMode(parseInfo(INFO.replace('aof_enabled:1', 'aof_enabled:0'))), 'bgsave');
  assert.equal(defaultMode(parseInfo('')), 'bgsave');
});

const file = (preset: string): string => `version: 1\npolicies:\n  sessions:\n    sources: [/srv/redis]\n    presets:\n      - ${preset}\n`;

function refusal(text: string): string {
  try {
    parsePolicyFile(text, '/etc/meshback/policies.yaml');
  } catch (err) {
    assert.ok(err instanceof MeshbackError && err.code === 'USAGE', String(err));
    return err.message;
  }
  assert.fail('accepted');
}

test('redis preset options: read and resolved; mistakes name the field', () => {
  const p = parsePolicyFile(file('{ type: redis, host: redis.internal, port: 6380, username: backup, password-file: secret/redis-pw, mode: bgsave, timeout: 2m }'), '/etc/meshback/policies.yaml').policies.get('sessions')!;
  assert.deepEqual(p.presets, [{ type: 'redis', host: 'redis.internal', port: 6380, username: 'backup', 'password-file': '/etc/meshback/secret/redis-pw', mode: 'bgsave', timeout: '2m' }]);
  assert.deepEqual(parsePolicyFile(file('{ type: redis }'), '/p.yaml').policies.get('sessions')!.presets, [{ type: 'redis' }]);
  assert.equal(refusal(file('{ type: redis, mode: dump }')), 'policies.yaml:6: policies.sessions.presets[0].mode: must be one of "bgsave", "aof-rewrite" (it is "dump")');
  assert.equal(refusal(file('{ type: redis, port: 0 }')), 'policies.yaml:6: policies.sessions.presets[0].port: must be at least 1 (it is 0)');
  assert.match(refusal(file('{ type: redis, timeout: 10 }')), /^policies\.yaml:6: policies\.sessions\.presets\[0\]\.timeout: must be a duration/);
  assert.equal(refusal(file('{ type: redis, db: 1 }')), 'policies.yaml:6: policies.sessions.presets[0].db: is not a known field: check its spelling');
});
