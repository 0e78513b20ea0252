/**
 * The controller's pure rules: the names of the objects it makes (at most 63 characters, a valid
 * label value, the same on every pass, so a restarted controller finds what it made) and label
 * selectors (matchLabels and every matchExpressions operator).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { childName } from '../../src/k8s/controller.ts';
import { selectorMatches } from '../../src/k8s/kube.ts';

test('childName: short names are kept; long ones are cut with a hash of the whole, the same on every call; always a DNS label', () => {
  assert.equal(childName('orders-nightly-data-20261206-1112', 'holder'), 'orders-nightly-data-20261206-1112-holder');
  const long = `${'a-very-long-policy-name-for-the-orders-database'}-${'data-orders-postgresql-primary-0'}-20261206-111213`;
  const one = childName(long, 'holder');
  assert.equal(one, childName(long, 'holder'), 'deterministic');
  assert.ok(one.length <= 63, one);
  assert.match(one, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
  assert.notEqual(childName(`${long}x`, 'holder'), one, 'another base, another name');
  assert.ok(childName(long, 'src').endsWith('-src'));
  assert.equal(childName('Orders_DB', 'snap'), 'orders-db-snap', 'lowercase, no underscores');
});

test('selectorMatches: matchLabels and In, NotIn, Exists, DoesNotExist; an empty selector matches everything', () => {
  const l = { app: 'orders', tier: 'db' };
  assert.equal(selectorMatches(undefined, l), true);
  assert.equal(selectorMatches({}, undefined), true);
  assert.equal(selectorMatches({ matchLabels: { app: 'orders' } }, l), true);
  assert.equal(selectorMatches({ matchLabels: { app: 'web' } }, l), false);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'In', values: ['db', 'cache'] }] }, l), true);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['db'] }] }, l), false);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'backup', operator: 'Exists' }] }, l), false);
  assert.equal(selectorMatches({ matchExpressions: [{ key: 'backup', operator: 'DoesNotExist' }] }, l), true);
  assert.equal(selectorMatches({ matchLabels: { app: 'orders' }, matchExpressions: [{ key: 'tier', operator: 'In', values: ['cache'] }] }, l), false, 'all terms must hold');
});
