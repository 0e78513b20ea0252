/** lab/testenv/build.ts: which replace directives of a module's go.mod are local and which are kept. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { localReplaces, publishedReplaces } from '../../lab/testenv/build.ts';

const GOMOD = `module github.com/vmware-tanzu/velero

go 1.23.0

require github.com/kopia/kopia v0.16.0

replace github.com/kopia/kopia => github.com/project-velero/kopia v0.0.0-20250227051353-20bfabbfc7a0

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tgithub.com/a/b v1.2.3 => github.com/c/b v1.2.4
)
`;

test('publishedReplaces keeps the replaces that point at published modules, as go.mod lines', () => {
  assert.deepEqual(publishedReplaces(GOMOD), ['\tgithub.com/kopia/kopia => github.com/project-velero/kopia v0.0.0-20250227051353-20bfabbfc7a0', '\tgithub.com/a/b v1.2.3 => github.com/c/b v1.2.4']);
});

test('localReplaces names the modules replaced by sibling directories only', () => {
  assert.deepEqual(localReplaces(GOMOD), ['k8s.io/api']);
});
