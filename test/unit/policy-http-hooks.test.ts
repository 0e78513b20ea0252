/**
 * HTTP hooks in the policy file (src/policy/schema.ts, load.ts): every field read, defaults
 * filled, and each mistake refused with one line naming the file, line and field, reported
 * against the shape the hook has (exec or http), never showing a header value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MeshbackError } from '../../src/errors/index.ts';
import { parsePolicyFile } from '../../src/policy/index.ts';

const file = (hook: string): string => `version: 1\npolicies:\n  envoy:\n    sources: [/srv]\n    hooks:\n      pre:\n${hook}`;

function refusal(text: string): string {
  try {
    parsePolicyFile(text, '/etc/meshback/policies.yaml');
  } catch (err) {
    assert.ok(err instanceof MeshbackError, String(err));
    assert.equal(err.code, 'USAGE');
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    return err.message;
  }
  assert.fail(`accepted: ${text}`);
}

test('an HTTP hook: every field read, relative headers-file against the file, defaults', () => {
  const p = parsePolicyFile(
    file(
      '        - http: https://hooks.example/backup?token=x\n          method: PUT\n          headers: { X-Team: mesh }\n          headers-file: secret/hook-headers\n          body: { text: "${MESHBACK_POLICY}" }\n          timeout: 5s\n' +
        '        - http: http://127.0.0.1:8080/ready\n          body: "ready?"\n' +
        '        - { http: "http://127.0.0.1:8080/ready", method: GET }\n' +
        '        - { exec: ["true"] }\n',
    ),
    '/etc/meshback/policies.yaml',
  ).policies.get('envoy')!;
  assert.deepEqual(p.hooks.pre, [
    { http: { url: 'https://hooks.example/backup?token=x', method: 'PUT', headers: { 'X-Team': 'mesh' }, headersFile: '/etc/meshback/secret/hook-headers', body: { kind: 'json', value: { text: '${MESHBACK_POLICY}' } } }, timeoutMs: 5000 },
    { http: { url: 'http://127.0.0.1:8080/ready', method: 'POST', headers: {}, body: { kind: 'text', text: 'ready?' } }, timeoutMs: 30_000 },
    { http: { url: 'http://127.0.0.1:8080/ready', method: 'GET', headers: {} }, timeoutMs: 30_000 },
    { exec: ['true'], timeoutMs: 300_000 },
  ]);
});

test('HTTP hook mistakes: one line naming the field', () => {
  const at = 'policies.yaml:7: policies.envoy.hooks.pre[0]';
  assert.equal(refusal(file('        - http: ftp://x\n')), `${at}.http: must be an http:// or https:// URL (it is "ftp://x")`);
  assert.equal(refusal(file('        - http: hooks.example\n')), `${at}.http: must be an http:// or https:// URL (it is "hooks.example")`);
  assert.equal(refusal(file('        - http: http://x\n          method: DELETE\n')), `policies.yaml:8: policies.envoy.hooks.pre[0].method: must be one of "POST", "GET", "PUT" (it is "DELETE")`);
  assert.equal(refusal(file('        - http: http://x\n          method: GET\n          body: hi\n')), `policies.yaml:9: policies.envoy.hooks.pre[0].body: is not sent with method GET: use POST or PUT, or leave body out`);
  assert.match(refusal(file('        - http: http://x\n          headers: { "bad name": x }\n')), /^policies\.yaml:8: policies\.envoy\.hooks\.pre\[0\]\.headers\.bad name: must be a header name/);
  assert.match(refusal(file('        - http: http://x\n          timeout: 5\n')), /^policies\.yaml:8: policies\.envoy\.hooks\.pre\[0\]\.timeout: must be a duration/);
  // the shape is the one the hook's key says: an exec field on an HTTP hook is unknown there
  assert.equal(refusal(file('        - http: http://x\n          exec: [x]\n')), `policies.yaml:8: policies.envoy.hooks.pre[0].exec: is not a known field: check its spelling`);
  assert.equal(refusal(file('        - exec: [x]\n          method: GET\n')), `policies.yaml:8: policies.envoy.hooks.pre[0].method: is not a known field: check its spelling`);
  assert.equal(refusal(file('        - timeout: 5s\n')), `${at}: is missing exec: [PROGRAM, ARG...] or http: URL (a hook is one of them)`);
});

test('a bad header value is refused without being shown', () => {
  const m = refusal(file('        - http: http://x\n          headers: { Authorization: "Bearer tok\\u0007en" }\n'));
  assert.match(m, /headers\.Authorization: is not one line of text/);
  assert.ok(!m.includes('Bearer'), m);
});
