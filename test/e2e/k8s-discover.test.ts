/**
 * meshback k8s discover against the real kube-apiserver of the lab's test environment (etcd,
 * kube-apiserver, controller manager, scheduler, kwok nodes; lab/testenv/k8s.ts). A testbed-shaped
 * namespace is made through the API: a Deployment whose pod carries an Istio classic sidecar (not
 * the first container), a StatefulSet with an Istio native sidecar (an initContainer with
 * restartPolicy Always), a pod with Linkerd, a pod with no mesh; a StorageClass whose driver a
 * VolumeSnapshotClass serves and one without. No CSI driver runs here: the PersistentVolumes are
 * made by the test and bound to the claims by the controller manager's binder. Then the failures:
 * an unknown namespace, a service account without rights (RBAC 403), no API server, and
 * subcommands' usage errors. Every wait is bounded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ApiextensionsV1Api, AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, StorageV1Api, type KubeConfig, type V1PodSpec } from '@kubernetes/client-node';
import { KWOK_NODES, freePort, startK8s, type K8sEnv } from '../../lab/testenv/index.ts';
import { DiscoverySchema, type Discovery } from '../../src/k8s/schema.ts';
import { safeParse } from '../../src/util/schema.ts';
import { mb, rmrf, summary, tmpdir } from '../helpers/cli.ts';
import { until } from '../helpers/until.ts';

let k8s: K8sEnv;
let kc: KubeConfig;
let core: CoreV1Api;
let work: string;
const NS = 'mesh-shop';
const SNAP_DRIVER = 'hostpath.csi.k8s.io';


/** a PersistentVolume reserved for one claim (no provisioner runs here: the test stands in for it) */
async function volumeFor(claim: string, storageClassName: string, driver: string): Promise<void> {
  await core.createPersistentVolume({
    body: {
      metadata: { name: `pv-${claim}` },
      spec: {
        capacity: { storage: '1Gi' },
        accessModes: ['ReadWriteOnce'],
        storageClassName,
        persistentVolumeReclaimPolicy: 'Retain',
        claimRef: { namespace: NS, name: claim },
        csi: { driver, volumeHandle: `vol-${claim}` },
      },
    },
  });
}

const app = (name: string) => ({ name, image: `shop/${name}:1`, volumeMounts: [{ name: 'data', mountPath: '/data' }] });

before(async () => {
  k8s = await startK8s();
  kc = k8s.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  work = tmpdir('k8s-discover');
  const storage = kc.makeApiClient(StorageV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  await core.createNamespace({ body: { metadata: { name: NS } } });
  await until('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: NS, name: 'default' }));
  await storage.createStorageClass({ body: { metadata: { name: 'csi-fast' }, provisioner: SNAP_DRIVER, volumeBindingMode: 'Immediate' } });
  await storage.createStorageClass({ body: { metadata: { name: 'nfs-slow' }, provisioner: 'nfs.csi.k8s.io', volumeBindingMode: 'Immediate' } });
  await kc.makeApiClient(CustomObjectsApi).createClusterCustomObject({
    group: 'snapshot.storage.k8s.io',
    version: 'v1',
    plural: 'volumesnapshotclasses',
    body: { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshotClass', metadata: { name: 'csi-fast-snap', annotations: { 'snapshot.storage.kubernetes.io/is-default-class': 'true' } }, driver: SNAP_DRIVER, deletionPolicy: 'Delete' },
  });
  await volumeFor('envoy-config', 'csi-fast', SNAP_DRIVER);
  await volumeFor('data-orders-db-0', 'csi-fast', SNAP_DRIVER);
  await volumeFor('metrics-data', 'nfs-slow', 'nfs.csi.k8s.io');
  const claim = (name: string, storageClassName: string, labels: Record<string, string> = {}) =>
    core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: { metadata: { name, labels }, spec: { storageClassName, accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } });
  await claim('envoy-config', 'csi-fast', { app: 'reviews' });
  await claim('metrics-data', 'nfs-slow', { [`meshback.io/policy`]: 'metrics-hourly' });
  // a claim with no storage class and no volume (Pending), mounted read-write by a pod with no mesh
  await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: { metadata: { name: 'scratch' }, spec: { storageClassName: '', accessModes: ['ReadWriteMany'], resources: { requests: { storage: '1Gi' } } } } });

  // Deployment reviews: the Istio classic sidecar is the second container; the claim is mounted read-only
  const reviews: V1PodSpec = {
    containers: [{ ...app('reviews'), volumeMounts: [{ name: 'data', mountPath: '/etc/envoy', readOnly: true }] }, { name: 'istio-proxy', image: 'istio/proxyv2:1.28' }],
    volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'envoy-config' } }],
  };
  await apps.createNamespacedDeployment({
    namespace: NS,
    body: { metadata: { name: 'reviews' }, spec: { replicas: 1, selector: { matchLabels: { app: 'reviews' } }, template: { metadata: { labels: { app: 'reviews' }, annotations: { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' } }, spec: reviews } } },
  });
  // StatefulSet orders-db: Istio's native sidecar (an initContainer that keeps running), its claim from a template
  await apps.createNamespacedStatefulSet({
    namespace: NS,
    body: {
      metadata: { name: 'orders-db' },
      spec: {
        serviceName: 'orders-db',
        replicas: 1,
        selector: { matchLabels: { app: 'orders-db' } },
        template: {
          metadata: { labels: { app: 'orders-db', 'meshback.io/policy': 'orders-nightly' }, annotations: { 'sidecar.istio.io/status': '{"initContainers":["istio-proxy"]}' } },
          spec: { initContainers: [{ name: 'istio-proxy', image: 'istio/proxyv2:1.28', restartPolicy: 'Always' }], containers: [app('postgres')] },
        },
        volumeClaimTemplates: [{ metadata: { name: 'data' }, spec: { storageClassName: 'csi-fast', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } }],
      },
    },
  });
  // a bare pod with Linkerd's proxy (container and annotation), and one with no mesh
  await core.createNamespacedPod({
    namespace: NS,
    body: {
      metadata: { name: 'metrics', annotations: { 'linkerd.io/proxy-version': 'edge-25.11.1' } },
      spec: { nodeName: KWOK_NODES[1]!, containers: [app('prometheus'), { name: 'linkerd-proxy', image: 'cr.l5d.io/linkerd/proxy:edge-25.11.1' }], volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'metrics-data' } }] },
    },
  });
  await core.createNamespacedPod({
    namespace: NS,
    body: { metadata: { name: 'toolbox' }, spec: { nodeName: KWOK_NODES[0]!, containers: [app('toolbox')], volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'scratch' } }] } },
  });
  await until('the three claims with volumes to be Bound', 60_000, async () => {
    const l = await core.listNamespacedPersistentVolumeClaim({ namespace: NS });
    return l.items.filter((c) => c.status?.phase === 'Bound').length === 3 ? true : undefined;
  });
  await until('the Deployment and StatefulSet pods', 60_000, async () => {
    const l = await core.listNamespacedPod({ namespace: NS });
    const names = l.items.map((p) => p.metadata?.name ?? '');
    return names.some((n) => n.startsWith('reviews-')) && names.includes('orders-db-0') ? true : undefined;
  });
});
after(async () => {
  await k8s?.stop();
  if (work !== undefined) await rmrf(work);
});

async function discoverJson(args: string[], env: Record<string, string> = k8s.env): Promise<Discovery> {
  const r = await mb(['k8s', 'discover', ...args, '--json'], { env, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const s = summary(r.stdout);
  const parsed = safeParse(DiscoverySchema, s);
  assert.ok(parsed.success, `the summary matches docs/schemas/k8s-discover.json: ${JSON.stringify(parsed.issues?.[0])}`);
  return s as unknown as Discovery;
}

test('k8s discover (no CSI driver here: PVs bound by the test): every PVC with its pods, workload, mesh by name and annotation, snapshot support, state and policy', async () => {
  const d = await discoverJson(['-n', NS]);
  assert.equal(d.namespace, NS);
  assert.equal(d.snapshotApi, true);
  assert.equal(d.server, k8s.server);
  assert.deepEqual(
    d.pvcs.map((p) => p.name),
    ['data-orders-db-0', 'envoy-config', 'metrics-data', 'scratch'],
  );
  const pvc = (name: string) => d.pvcs.find((p) => p.name === name)!;

  const db = pvc('data-orders-db-0');
  assert.equal(db.phase, 'Bound');
  assert.equal(db.volume, 'pv-data-orders-db-0');
  assert.equal(db.storageClass, 'csi-fast');
  assert.equal(db.provisioner, SNAP_DRIVER);
  assert.equal(db.snapshotSupport, 'yes');
  assert.equal(db.snapshotClass, 'csi-fast-snap');
  assert.deepEqual(db.workloads, [{ kind: 'StatefulSet', name: 'orders-db' }]);
  assert.equal(db.pods.length, 1);
  assert.equal(db.pods[0]!.name, 'orders-db-0');
  assert.equal(db.pods[0]!.mesh, 'istio-native');
  assert.deepEqual(db.pods[0]!.meshEvidence, ['initContainer istio-proxy (restartPolicy Always)', 'annotation sidecar.istio.io/status']);
  assert.equal(db.state, 'stateful');
  assert.equal(db.stateReason, 'StatefulSet orders-db');
  assert.equal(db.policy, 'orders-nightly', 'from the pod label meshback.io/policy');
  assert.equal(db.newestBackup, null);

  const envoy = pvc('envoy-config');
  assert.equal(envoy.snapshotSupport, 'yes');
  assert.deepEqual(envoy.workloads, [{ kind: 'Deployment', name: 'reviews' }], 'Pod -> ReplicaSet -> Deployment');
  assert.equal(envoy.pods.length, 1);
  assert.match(envoy.pods[0]!.name, /^reviews-/);
  assert.equal(envoy.pods[0]!.mesh, 'istio', 'the sidecar is the second container: found by name');
  assert.deepEqual(envoy.pods[0]!.meshEvidence, ['container istio-proxy', 'annotation sidecar.istio.io/status']);
  assert.equal(envoy.pods[0]!.readOnly, true);
  assert.equal(envoy.state, 'stateless');
  assert.equal(envoy.stateReason, 'mounted read-only');
  assert.equal(envoy.policy, null);

  const metrics = pvc('metrics-data');
  assert.equal(metrics.provisioner, 'nfs.csi.k8s.io');
  assert.equal(metrics.snapshotSupport, 'no', 'no VolumeSnapshotClass serves nfs.csi.k8s.io');
  assert.equal(metrics.snapshotClass, null);
  assert.deepEqual(metrics.workloads, [{ kind: 'Pod', name: 'metrics' }]);
  assert.equal(metrics.pods[0]!.mesh, 'linkerd');
  assert.deepEqual(metrics.pods[0]!.meshEvidence, ['container linkerd-proxy', 'annotation linkerd.io/proxy-version']);
  assert.equal(metrics.pods[0]!.node, KWOK_NODES[1]);
  assert.equal(metrics.state, 'stateful');
  assert.equal(metrics.stateReason, 'bound RWO, mounted read-write by metrics');
  assert.equal(metrics.policy, 'metrics-hourly', 'from the PVC label');

  const scratch = pvc('scratch');
  assert.equal(scratch.phase, 'Pending');
  assert.equal(scratch.storageClass, null, 'storageClassName "" is no class');
  assert.equal(scratch.snapshotSupport, 'no storage class');
  assert.equal(scratch.pods[0]!.mesh, 'none');
  assert.deepEqual(scratch.pods[0]!.meshEvidence, []);
  assert.equal(scratch.state, 'stateless');
  assert.equal(scratch.stateReason, 'not ReadWriteOnce (ReadWriteMany)');
});

test('k8s discover: the table has one line per PVC; -l selects claims by their labels or their pods; -A lists every namespace', async () => {
  const r = await mb(['k8s', 'discover', '-n', NS], { env: k8s.env, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 5, r.stdout);
  assert.deepEqual(lines[0]!.split(/\s+/), ['PVC', 'STATUS', 'SIZE', 'CLASS', 'PROVISIONER', 'SNAPSHOT', 'WORKLOAD', 'PODS', 'MESH', 'STATE', 'POLICY', 'BACKUP']);
  const row = (name: string) => lines.slice(0, 5).find((l) => l.startsWith(name + ' '))!.split(/\s{2,}/);
  assert.deepEqual(row('data-orders-db-0'), ['data-orders-db-0', 'Bound', '1Gi', 'csi-fast', SNAP_DRIVER, 'yes (csi-fast-snap)', 'StatefulSet/orders-db', 'orders-db-0', 'istio-native', 'stateful', 'orders-nightly', 'none']);
  assert.match(lines.find((l) => l.startsWith('envoy-config '))!, /^envoy-config\s+Bound\s+1Gi\s+csi-fast\s+hostpath\.csi\.k8s\.io\s+yes \(csi-fast-snap\)\s+Deployment\/reviews\s+reviews-\S+\s+istio\s+stateless\s+none\s+none$/);
  assert.deepEqual(row('metrics-data'), ['metrics-data', 'Bound', '1Gi', 'nfs-slow', 'nfs.csi.k8s.io', 'no', 'Pod/metrics', 'metrics', 'linkerd', 'stateful', 'metrics-hourly', 'none']);
  assert.deepEqual(row('scratch'), ['scratch', 'Pending', '1Gi', '-', '-', 'no storage class', 'Pod/toolbox', 'toolbox', 'none', 'stateless', 'none', 'none']);

  const byPvcLabel = await discoverJson(['-n', NS, '-l', 'meshback.io/policy=metrics-hourly']);
  assert.deepEqual(byPvcLabel.pvcs.map((p) => p.name), ['metrics-data']);
  const byPodLabel = await discoverJson(['-n', NS, '-l', 'app=orders-db']);
  assert.deepEqual(byPodLabel.pvcs.map((p) => p.name), ['data-orders-db-0']);
  assert.equal(byPodLabel.selector, 'app=orders-db');

  const all = await discoverJson(['-A']);
  assert.equal(all.namespace, null);
  assert.deepEqual(all.pvcs.map((p) => `${p.namespace}/${p.name}`), [`${NS}/data-orders-db-0`, `${NS}/envoy-config`, `${NS}/metrics-data`, `${NS}/scratch`]);
  const t = await mb(['k8s', 'discover', '--all-namespaces'], { env: k8s.env, timeoutMs: 60_000 });
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout.split('\n')[0]!, /^NAMESPACE\s+PVC\s+/);
});

test('k8s discover: an unknown namespace is exit 5, one line', async () => {
  const r = await mb(['k8s', 'discover', '-n', 'no-such-ns'], { env: k8s.env, timeoutMs: 60_000 });
  assert.equal(r.code, 5, r.stderr);
  assert.equal(r.stderr, 'meshback: namespace "no-such-ns" does not exist: give an existing one with -n, or -A for all namespaces\n');
});

test('k8s discover: a service account without the right to list PVCs is exit 19, one line naming the verb and resource', async () => {
  await core.createNamespacedServiceAccount({ namespace: NS, body: { metadata: { name: 'nobody' } } });
  const tr = await core.createNamespacedServiceAccountToken({ namespace: NS, name: 'nobody', body: { spec: { audiences: [], expirationSeconds: 600 } } });
  const token = tr.status?.token;
  assert.ok(token, 'a token');
  const file = path.join(work, 'nobody.kubeconfig');
  await fsp.writeFile(file, k8s.tokenConfig(token).exportConfig(), { mode: 0o600 });
  const r = await mb(['k8s', 'discover', '-n', NS, '--kubeconfig', file], { env: { KUBECONFIG: '' }, timeoutMs: 60_000 });
  assert.equal(r.code, 19, r.stderr);
  assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^meshback: forbidden: system:serviceaccount:${NS}:nobody may not list persistentvolumeclaims in namespace ${NS} \\(RBAC\\): grant the verb "list" on "persistentvolumeclaims"`));
  const all = await mb(['k8s', 'discover', '-A', '--kubeconfig', file], { env: { KUBECONFIG: '' }, timeoutMs: 60_000 });
  assert.equal(all.code, 19, all.stderr);
  assert.match(all.stderr, /may not list persistentvolumeclaims cluster-wide \(RBAC\): grant the verb "list" on "persistentvolumeclaims" with a ClusterRole and ClusterRoleBinding/);
});

test('k8s discover: no API server is exit 18, one line; no kubeconfig at all is exit 18; a missing --kubeconfig is exit 5', async () => {
  const port = await freePort();
  const file = path.join(work, 'gone.kubeconfig');
  const cfg = JSON.parse(await fsp.readFile(k8s.kubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] };
  cfg.clusters[0]!.cluster.server = `https://127.0.0.1:${port}`;
  await fsp.writeFile(file, JSON.stringify(cfg), { mode: 0o600 });
  const r = await mb(['k8s', 'discover', '-n', NS], { env: { KUBECONFIG: file }, timeoutMs: 60_000 });
  assert.equal(r.code, 18, r.stderr);
  assert.match(r.stderr, new RegExp(`^meshback: cannot reach the Kubernetes API server at https://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*\\): check that the cluster is up and that the kubeconfig names it\\n$`));
  const none = await mb(['k8s', 'discover'], { env: { KUBECONFIG: '', HOME: work, KUBERNETES_SERVICE_HOST: '' }, timeoutMs: 60_000 });
  assert.equal(none.code, 18, none.stderr);
  assert.equal(none.stderr, 'meshback: no Kubernetes cluster configured: give --kubeconfig FILE, set KUBECONFIG, write ~/.kube/config, or run meshback in a pod\n');
  const missing = await mb(['k8s', 'discover', '--kubeconfig', path.join(work, 'nope')], { timeoutMs: 60_000 });
  assert.equal(missing.code, 5, missing.stderr);
});

test('k8s: an unknown subcommand, an agent without its node, a restore without its target are usage errors (exit 2), one line', async () => {
  const cases: [string[], string][] = [
    [['k8s', 'backup'], `meshback: unknown k8s subcommand "backup": the subcommands are discover, controller, agent, restore, install, cronjob, hold\n`],
    [['k8s', 'agent'], 'meshback: the agent needs its node: give --node NAME (in the DaemonSet: NODE_NAME from spec.nodeName)\n'],
    [['k8s', 'restore', 'latest', '--policy', 'p'], 'meshback: k8s restore needs --to-pvc NAME: the PVC to restore into\n'],
  ];
  for (const [args, stderr] of cases) {
    const r = await mb(args, { env: { ...k8s.env, NODE_NAME: '' }, timeoutMs: 60_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, stderr);
  }
  const bad = await mb(['k8s', 'discover', '-n', 'a', '-A'], { timeoutMs: 60_000 });
  assert.equal(bad.code, 2, bad.stderr);
});

test("k8s discover: a CronJob's Job pod with Consul and a pod with a Linkerd native sidecar share a claim (Pod -> Job -> CronJob); without the VolumeSnapshot CRDs it says no snapshot API", async () => {
  const ns = 'mesh-batch';
  const batch = kc.makeApiClient(BatchV1Api);
  await core.createNamespace({ body: { metadata: { name: ns } } });
  await until('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: ns, name: 'default' }));
  await core.createNamespacedPersistentVolumeClaim({ namespace: ns, body: { metadata: { name: 'compact-data' }, spec: { storageClassName: 'csi-fast', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } });
  const template = {
    metadata: { annotations: { 'consul.hashicorp.com/connect-inject-status': 'injected' } },
    spec: { restartPolicy: 'Never', containers: [app('compact'), { name: 'consul-dataplane', image: 'hashicorp/consul-dataplane:1.8' }], volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'compact-data' } }] },
  };
  const cron = await batch.createNamespacedCronJob({ namespace: ns, body: { metadata: { name: 'compact' }, spec: { schedule: '0 3 * * *', suspend: true, jobTemplate: { spec: { template } } } } });
  // the Job a CronJob would make, made now (as `kubectl create job --from=cronjob/compact` does)
  await batch.createNamespacedJob({
    namespace: ns,
    body: { metadata: { name: 'compact-manual', ownerReferences: [{ apiVersion: 'batch/v1', kind: 'CronJob', name: 'compact', uid: cron.metadata!.uid!, controller: true }] }, spec: { backoffLimit: 0, template } },
  });
  await core.createNamespacedPod({
    namespace: ns,
    body: {
      metadata: { name: 'l5d-native' },
      spec: {
        nodeName: KWOK_NODES[0]!,
        initContainers: [{ name: 'linkerd-proxy', image: 'cr.l5d.io/linkerd/proxy:edge-25.11.1', restartPolicy: 'Always' }],
        containers: [{ ...app('reader'), volumeMounts: [{ name: 'data', mountPath: '/data', readOnly: true }] }],
        volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'compact-data' } }],
      },
    },
  });
  await until("the Job's pod", 60_000, async () => ((await core.listNamespacedPod({ namespace: ns, labelSelector: 'job-name=compact-manual' })).items.length === 1 ? true : undefined));
  const d = await discoverJson(['-n', ns]);
  assert.equal(d.pvcs.length, 1);
  const c = d.pvcs[0]!;
  assert.deepEqual(c.workloads, [{ kind: 'CronJob', name: 'compact' }, { kind: 'Pod', name: 'l5d-native' }]);
  assert.deepEqual(c.pods.map((p) => [p.mesh, p.meshEvidence, p.readOnly]), [
    ['consul', ['container consul-dataplane', 'annotation consul.hashicorp.com/connect-inject-status'], false],
    ['linkerd-native', ['initContainer linkerd-proxy (restartPolicy Always)'], true],
  ]);
  assert.equal(c.phase, 'Pending');
  assert.equal(c.state, 'stateless');
  assert.equal(c.stateReason, 'not bound');
  assert.equal(c.snapshotSupport, 'yes');

  const ext = kc.makeApiClient(ApiextensionsV1Api);
  await ext.deleteCustomResourceDefinition({ name: 'volumesnapshotclasses.snapshot.storage.k8s.io' });
  await until('the VolumeSnapshotClass CRD to be gone', 60_000, async () => {
    try {
      await ext.readCustomResourceDefinition({ name: 'volumesnapshotclasses.snapshot.storage.k8s.io' });
      return undefined;
    } catch (e) {
      return (e as { code?: number }).code === 404 ? true : undefined;
    }
  });
  const none = await until('discover to see no snapshot API', 30_000, async () => {
    const x = await discoverJson(['-n', ns]);
    return x.snapshotApi ? undefined : x;
  });
  assert.equal(none.pvcs[0]!.snapshotSupport, 'no snapshot API');
  assert.equal(none.pvcs[0]!.snapshotClass, null);
  const t = await mb(['k8s', 'discover', '-n', ns], { env: k8s.env, timeoutMs: 60_000 });
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^compact-data\s+Pending\s+1Gi\s+csi-fast\s+hostpath\.csi\.k8s\.io\s+no snapshot API\s+CronJob\/compact,Pod\/l5d-native\s+compact-manual-\S+,l5d-native\s+consul,linkerd-native\s+stateless\s+none\s+none$/m);
  assert.match(t.stdout, /the VolumeSnapshot API \(snapshot\.storage\.k8s\.io\/v1\) is not installed/);
});
