/**
 * The test environment's Kubernetes: etcd, kube-apiserver, kube-controller-manager,
 * kube-scheduler and kwok built from their Go modules (lab/testenv), started once for this file
 * on 127.0.0.1, and used through @kubernetes/client-node: a namespace, a PVC, a CronJob the
 * server validates and one it refuses, VolumeSnapshot objects (the CRDs' schema enforced), a
 * watch that sees an update, a service account's token (TokenRequest API) refused with 403 until
 * RBAC grants it, a pod bound to a kwok node reaching Running, and a Job the scheduler places on
 * a kwok node and the controller manager completes. Every wait is bounded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ApiException,
  AuthenticationV1Api,
  BatchV1Api,
  CoreV1Api,
  CustomObjectsApi,
  RbacAuthorizationV1Api,
  Watch,
  type KubeConfig,
  type V1CronJob,
} from '@kubernetes/client-node';
import { KWOK_NODES, startK8s, type K8sEnv } from '../../lab/testenv/index.ts';
import { until } from '../helpers/until.ts';

let k8s: K8sEnv;
let kc: KubeConfig;
let core: CoreV1Api;
const NS = 'testenv-smoke';

before(async () => {
  k8s = await startK8s();
  kc = k8s.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  await core.createNamespace({ body: { metadata: { name: NS } } });
});
after(() => k8s?.stop());


async function status(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (e) {
    if (e instanceof ApiException) return e.code;
    throw e;
  }
}

const cronJob = (name: string, schedule: string): V1CronJob => ({
  metadata: { name },
  spec: { schedule, jobTemplate: { spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'backup', image: 'meshback:test' }] } } } } },
});

test('testenv k8s: the API server is on 127.0.0.1 and the two kwok nodes are Ready', async () => {
  assert.match(k8s.server, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(k8s.env, { KUBECONFIG: k8s.kubeconfig });
  const nodes = await core.listNode();
  const ready = nodes.items.filter((n) => (n.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')).map((n) => n.metadata!.name);
  assert.deepEqual(ready.sort(), [...KWOK_NODES].sort());
});

test('testenv k8s: a PVC is stored as given', async () => {
  await core.createNamespacedPersistentVolumeClaim({
    namespace: NS,
    body: { metadata: { name: 'mesh-data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } },
  });
  const pvc = await core.readNamespacedPersistentVolumeClaim({ namespace: NS, name: 'mesh-data' });
  assert.equal(pvc.spec?.resources?.requests?.['storage'], '1Gi');
  assert.equal(pvc.status?.phase, 'Pending');
});

test('testenv k8s: the server accepts a valid CronJob and refuses one with a bad schedule (422)', async () => {
  const batch = kc.makeApiClient(BatchV1Api);
  await batch.createNamespacedCronJob({ namespace: NS, body: cronJob('nightly', '30 2 * * *') });
  assert.equal((await batch.readNamespacedCronJob({ namespace: NS, name: 'nightly' })).spec?.schedule, '30 2 * * *');
  try {
    await batch.createNamespacedCronJob({ namespace: NS, body: cronJob('broken', 'every night at 2') });
    assert.fail('a CronJob with a bad schedule was accepted');
  } catch (e) {
    assert.ok(e instanceof ApiException, String(e));
    assert.equal(e.code, 422);
    assert.match(String(e.body), /schedule/);
  }
});

test('testenv k8s: VolumeSnapshotClass and VolumeSnapshot objects are stored; the CRD schema refuses a snapshot without a source', async () => {
  const co = kc.makeApiClient(CustomObjectsApi);
  const group = 'snapshot.storage.k8s.io';
  await co.createClusterCustomObject({ group, version: 'v1', plural: 'volumesnapshotclasses', body: { apiVersion: `${group}/v1`, kind: 'VolumeSnapshotClass', metadata: { name: 'testenv-csi' }, driver: 'hostpath.csi.k8s.io', deletionPolicy: 'Delete' } });
  await co.createNamespacedCustomObject({
    group,
    version: 'v1',
    namespace: NS,
    plural: 'volumesnapshots',
    body: { apiVersion: `${group}/v1`, kind: 'VolumeSnapshot', metadata: { name: 'mesh-data-1' }, spec: { volumeSnapshotClassName: 'testenv-csi', source: { persistentVolumeClaimName: 'mesh-data' } } },
  });
  const got = (await co.getNamespacedCustomObject({ group, version: 'v1', namespace: NS, plural: 'volumesnapshots', name: 'mesh-data-1' })) as { spec: { source: { persistentVolumeClaimName: string } } };
  assert.equal(got.spec.source.persistentVolumeClaimName, 'mesh-data');
  const bad = await status(co.createNamespacedCustomObject({ group, version: 'v1', namespace: NS, plural: 'volumesnapshots', body: { apiVersion: `${group}/v1`, kind: 'VolumeSnapshot', metadata: { name: 'no-source' }, spec: {} } }));
  assert.equal(bad, 422);
});

test('testenv k8s: a watch sees an update', async () => {
  const cm = await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'watched' }, data: { v: '1' } } });
  let abort: AbortController | undefined;
  try {
    const seen = new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no MODIFIED event in 15 s')), 15_000);
      void new Watch(kc)
        .watch(
          `/api/v1/namespaces/${NS}/configmaps`,
          { resourceVersion: cm.metadata!.resourceVersion!, fieldSelector: 'metadata.name=watched' },
          (phase, obj: { data?: Record<string, string> }) => {
            if (phase === 'MODIFIED') {
              clearTimeout(t);
              resolve(obj.data?.['v'] ?? '');
            }
          },
          (err: unknown) => {
            if (err !== null && err !== undefined && (err as Error).name !== 'AbortError') reject(err as Error);
          },
        )
        .then((a) => (abort = a), reject);
    });
    await until('the watch to start', 10_000, async () => (abort !== undefined ? true : undefined));
    await core.replaceNamespacedConfigMap({ namespace: NS, name: 'watched', body: { metadata: { name: 'watched' }, data: { v: '2' } } });
    assert.equal(await seen, '2');
  } finally {
    abort?.abort();
  }
});

test('testenv k8s: a service account token (TokenRequest) authenticates, is refused with 403 without rights, and allowed once RBAC grants them', async () => {
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'nobody' } } });
  const tr = await core.createNamespacedServiceAccountToken({ namespace: NS, name: 'nobody', body: { spec: { audiences: [], expirationSeconds: 600 } } });
  const token = tr.status?.token;
  assert.ok(token, 'a token');
  const as = k8s.tokenConfig(token);
  const who = await as.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
  assert.equal(who.status?.userInfo?.username, `system:serviceaccount:${NS}:nobody`);
  const asCore = as.makeApiClient(CoreV1Api);
  assert.equal(await status(asCore.listNamespacedSecret({ namespace: NS })), 403);
  assert.equal(await status(asCore.listNamespacedConfigMap({ namespace: NS })), 403);
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({ namespace: NS, body: { metadata: { name: 'read-configmaps' }, rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list'] }] } });
  await rbac.createNamespacedRoleBinding({
    namespace: NS,
    body: { metadata: { name: 'nobody-reads-configmaps' }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-configmaps' }, subjects: [{ kind: 'ServiceAccount', name: 'nobody', namespace: NS }] },
  });
  await until('RBAC to allow the service account to list configmaps', 15_000, async () => ((await status(asCore.listNamespacedConfigMap({ namespace: NS }))) === 200 ? true : undefined));
  assert.equal(await status(asCore.listNamespacedSecret({ namespace: NS })), 403, 'secrets stay forbidden');
});

test('testenv k8s: a pod bound to a kwok node reaches Running', async () => {
  // the ServiceAccount admission needs the namespace's default service account, which the controller manager creates
  await until('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: NS, name: 'default' }));
  await core.createNamespacedPod({ namespace: NS, body: { metadata: { name: 'envoy' }, spec: { nodeName: KWOK_NODES[0]!, containers: [{ name: 'envoy', image: 'envoyproxy/envoy:v1' }] } } });
  const pod = await until('the pod to be Running', 30_000, async () => {
    const p = await core.readNamespacedPod({ namespace: NS, name: 'envoy' });
    return p.status?.phase === 'Running' ? p : undefined;
  });
  assert.equal(pod.spec?.nodeName, KWOK_NODES[0]);
  assert.ok(pod.status?.podIP, 'kwok gave the pod an IP');
});

test('testenv k8s: a Job is scheduled onto a kwok node and completes', async () => {
  await until('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: NS, name: 'default' }));
  const batch = kc.makeApiClient(BatchV1Api);
  await batch.createNamespacedJob({ namespace: NS, body: { metadata: { name: 'one-shot' }, spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [{ name: 'run', image: 'meshback:test' }] } } } } });
  const job = await until('the Job to succeed', 60_000, async () => {
    const j = await batch.readNamespacedJob({ namespace: NS, name: 'one-shot' });
    return (j.status?.succeeded ?? 0) >= 1 ? j : undefined;
  });
  assert.equal(job.status?.succeeded, 1);
  const pods = await core.listNamespacedPod({ namespace: NS, labelSelector: 'job-name=one-shot' });
  assert.equal(pods.items.length, 1);
  assert.ok(KWOK_NODES.includes(pods.items[0]!.spec!.nodeName!), `scheduled onto ${pods.items[0]!.spec?.nodeName}`);
  // the garbage collector removes the Job's pods with it
  await batch.deleteNamespacedJob({ namespace: NS, name: 'one-shot', propagationPolicy: 'Background' });
  await until('the garbage collector to delete the Job pod', 30_000, async () => ((await core.listNamespacedPod({ namespace: NS, labelSelector: 'job-name=one-shot' })).items.length === 0 ? true : undefined));
});
