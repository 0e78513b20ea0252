/** lab/testenv/k8s-standin.ts without a cluster: sizes and quantities, and a bad size refused in one line. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KubeConfig } from '@kubernetes/client-node';
import { parseSize, quantityBytes, startStandin } from '../../lab/testenv/k8s-standin.ts';
import { TestenvError } from '../../lab/testenv/errors.ts';

test('stand-in: image sizes and Kubernetes quantities as bytes', () => {
  assert.equal(parseSize('2G'), 2e9);
  assert.equal(parseSize('512Mi'), 512 * 1024 ** 2);
  assert.equal(parseSize('1073741824'), 1024 ** 3);
  assert.equal(parseSize('two gigs'), undefined);
  assert.equal(quantityBytes('1Gi'), 1024 ** 3);
  assert.equal(quantityBytes('256Mi'), 256 * 1024 ** 2);
  assert.equal(quantityBytes('5G'), 5e9);
  assert.equal(quantityBytes('1000'), 1000);
  assert.equal(quantityBytes(undefined), 0);
});

test('stand-in: a size that is not one is refused with a one-line error before anything is made', async () => {
  await assert.rejects(startStandin({ kc: new KubeConfig(), root: '/nonexistent/standin', nodes: ['n'], size: 'lots' }), (e: unknown) => {
    assert.ok(e instanceof TestenvError);
    assert.match(e.message, /^the stand-in's btrfs size "lots" is not a size: give bytes/);
    assert.ok(!e.message.includes('\n'));
    return true;
  });
});
