/**
 * k8s mesh awareness without a cluster: stripInjected on manifests as `kubectl get -o yaml` shows
 * them after Istio (classic and native sidecar), Linkerd (classic and native) and Consul injected
 * them (test/fixtures/k8s/, written from those injectors' templates); hookContainer's refusals; the
 * helper pod's fields; `meshback k8s hold` ending on a signal.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { V1Container, V1Pod, V1PodTemplateSpec, V1Volume } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { meshOf } from '../../src/k8s/discover.ts';
import { hookContainer, stripInjected, type KObject } from '../../src/k8s/mesh.ts';
import { helperPod } from '../../src/k8s/pods.ts';
import { MANAGED_BY, NO_INJECTION, OWNER_LABEL } from '../../src/k8s/api.ts';
import { UsageError } from '../../src/errors/index.ts';
import { k8sHold } from '../../src/cli/commands/k8s-hold.ts';

const dir = path.resolve(import.meta.dirname, '../fixtures/k8s');
const load = (f: string): KObject => parse(readFileSync(path.join(dir, f), 'utf8')) as KObject;
const tpl = (o: KObject): V1PodTemplateSpec => (o.kind === 'Pod' ? (o as unknown as V1PodTemplateSpec) : ((o.spec as { template: V1PodTemplateSpec }).template));
const asPod = (t: V1PodTemplateSpec): V1Pod => ({ metadata: t.metadata, spec: t.spec });

/** every name an injector of the three meshes uses */
const MESH_CONTAINERS = ['istio-proxy', 'istio-init', 'istio-validation', 'linkerd-proxy', 'linkerd-init', 'linkerd-network-validator', 'consul-dataplane', 'consul-connect-inject-init', 'envoy-sidecar'];
const MESH_VOLUMES = ['istio-envoy', 'istio-data', 'istio-podinfo', 'istio-token', 'istiod-ca-cert', 'workload-socket', 'credential-socket', 'workload-certs', 'linkerd-identity-end-entity', 'linkerd-proxy-init-xtables-lock', 'linkerd-identity-token', 'consul-connect-inject-data'];
const MESH_KEYS = /^(sidecar\.istio\.io\/status|istio\.io\/rev|security\.istio\.io\/|service\.istio\.io\/|linkerd\.io\/(proxy-|created-by|trust-root|identity-mode|control-plane-ns|workload-ns)|viz\.linkerd\.io\/|consul\.hashicorp\.com\/(connect-inject-status|connect-inject-managed-by|transparent-proxy-status|connect-k8s-version|consul-k8s-version))/;

interface Case {
  file: string;
  mesh: string;
  /** the application's containers and init containers, in order */
  apps: string[];
  appInits: string[];
  /** the application's volumes, in order */
  volumes: string[];
  /** the user's template annotations that must stay */
  userAnnotations: string[];
  /** the template labels after the transform */
  labels: Record<string, string>;
}

const CASES: Case[] = [
  {
    file: 'istio-classic-deployment.yaml',
    mesh: 'istio',
    apps: ['reviews'],
    appInits: [],
    volumes: ['tmp', 'wlp-output', 'data', 'reviews-config'],
    userAnnotations: ['sidecar.istio.io/inject', 'proxy.istio.io/config'],
    labels: { app: 'reviews', version: 'v1' },
  },
  {
    file: 'istio-native-statefulset.yaml',
    mesh: 'istio-native',
    apps: ['postgres'],
    appInits: ['fix-permissions'],
    volumes: ['initdb'],
    userAnnotations: ['meshback.io/note'],
    labels: { 'app.kubernetes.io/name': 'orders-db', 'app.kubernetes.io/version': '16.4' },
  },
  {
    file: 'linkerd-classic-deployment.yaml',
    mesh: 'linkerd',
    apps: ['web-svc'],
    appInits: [],
    volumes: ['cache'],
    userAnnotations: ['linkerd.io/inject', 'config.linkerd.io/proxy-cpu-request'],
    labels: { app: 'web-svc', version: 'v11' },
  },
  {
    file: 'linkerd-native-statefulset.yaml',
    mesh: 'linkerd-native',
    apps: ['nats'],
    appInits: [],
    volumes: [],
    userAnnotations: ['linkerd.io/inject', 'config.alpha.linkerd.io/proxy-enable-native-sidecar'],
    labels: { app: 'queue' },
  },
  {
    file: 'consul-deployment.yaml',
    mesh: 'consul',
    apps: ['counting'],
    appInits: [],
    volumes: ['counts'],
    userAnnotations: ['consul.hashicorp.com/connect-inject', 'consul.hashicorp.com/connect-service-upstreams'],
    labels: { app: 'counting' },
  },
];

const names = (xs: { name: string }[] | undefined): string[] => (xs ?? []).map((x) => x.name);
const pick = <T extends { name: string }>(xs: T[] | undefined, want: string[]): T[] => want.map((n) => (xs ?? []).find((x) => x.name === n)!);

for (const c of CASES) {
  test(`k8s mesh: stripInjected on ${c.file}: zero proxies and injected init containers (meshOf: none), the app's containers and volumes unchanged, user annotations kept, twice = once`, () => {
    const injected = load(c.file);
    const before = tpl(injected);
    assert.equal(meshOf(asPod(before)).mesh, c.mesh, 'the fixture is injected');

    const { object, removed } = stripInjected(injected);
    const after = tpl(object);
    assert.equal(meshOf(asPod(after)).mesh, 'none', `no mesh left (${JSON.stringify(meshOf(asPod(after)).evidence)})`);
    assert.deepEqual(names(after.spec!.containers), c.apps);
    assert.deepEqual(names(after.spec!.initContainers), c.appInits);
    assert.deepEqual(names(after.spec!.volumes), c.volumes);
    for (const n of MESH_CONTAINERS) assert.ok(!names([...after.spec!.containers, ...(after.spec!.initContainers ?? [])]).includes(n), `no ${n}`);
    for (const n of MESH_VOLUMES) assert.ok(!names(after.spec!.volumes).includes(n), `no volume ${n}`);
    for (const k of [...Object.keys(after.metadata?.annotations ?? {}), ...Object.keys(after.metadata?.labels ?? {})]) assert.doesNotMatch(k, MESH_KEYS, `${k} was injected: removed`);

    // byte for byte: the app's containers (but for the probes Istio rewrote, below) and volumes
    const appBefore = pick(before.spec!.containers, c.apps);
    if (c.file.startsWith('istio-classic')) {
      const r = after.spec!.containers[0]!;
      assert.deepEqual(r.livenessProbe, { httpGet: { path: '/health', port: 9080, scheme: 'HTTP' }, failureThreshold: 3, initialDelaySeconds: 10, periodSeconds: 10, successThreshold: 1, timeoutSeconds: 3 }, 'the original HTTP probe again');
      assert.deepEqual(r.readinessProbe, { tcpSocket: { port: 9080 }, failureThreshold: 3, periodSeconds: 5, successThreshold: 1, timeoutSeconds: 1 }, 'the original TCP probe again');
      const strip = (x: V1Container) => ({ ...x, livenessProbe: undefined, readinessProbe: undefined });
      assert.deepEqual(after.spec!.containers.map(strip), appBefore.map(strip));
      assert.deepEqual(
        Object.fromEntries(Object.entries(after.metadata!.annotations!).filter(([k]) => k.startsWith('prometheus.io/'))),
        { 'prometheus.io/scrape': 'true', 'prometheus.io/path': '/metrics', 'prometheus.io/port': '9080' },
        "the user's Prometheus annotations from ISTIO_PROMETHEUS_ANNOTATIONS, not Istio's merged ones",
      );
      assert.ok(removed.includes('probe reviews.livenessProbe restored from ISTIO_KUBE_APP_PROBERS'));
    } else {
      assert.deepEqual(after.spec!.containers, appBefore);
    }
    assert.deepEqual(after.spec!.initContainers ?? [], pick(before.spec!.initContainers, c.appInits));
    assert.deepEqual(after.spec!.volumes ?? [], pick<V1Volume>(before.spec!.volumes, c.volumes));
    for (const k of c.userAnnotations) assert.equal(after.metadata!.annotations![k], before.metadata!.annotations![k], `the user's ${k} stays`);
    assert.deepEqual(after.metadata!.labels, c.labels);
    // everything else of the pod spec is as it was
    const rest = (t: V1PodTemplateSpec) => ({ ...t.spec, containers: undefined, initContainers: undefined, volumes: undefined });
    assert.deepEqual(rest(after), rest(before));

    // the API server's fields
    assert.equal(object.status, undefined);
    for (const k of ['uid', 'resourceVersion', 'creationTimestamp', 'generation', 'namespace']) assert.equal((object.metadata as Record<string, unknown>)[k], undefined, k);
    assert.equal(object.metadata!.annotations?.['deployment.kubernetes.io/revision'], undefined);
    assert.equal(after.metadata!.creationTimestamp, undefined);
    for (const v of (object.spec!['volumeClaimTemplates'] as KObject[] | undefined) ?? []) {
      assert.equal(v.status, undefined);
      assert.equal(v.metadata!.creationTimestamp, undefined);
    }
    assert.deepEqual(object.spec!['selector'], injected.spec!['selector']);
    assert.ok(removed.length > 0);

    const again = stripInjected(object);
    assert.deepEqual(again.object, object, 'running it twice is running it once');
    assert.deepEqual(again.removed, []);
    assert.equal(injected.status !== undefined, true, 'the input is not changed');
  });
}

test('k8s mesh: stripInjected names what it removed (containers, volumes, annotations, labels) by name', () => {
  const { removed } = stripInjected(load('istio-classic-deployment.yaml'));
  for (const r of ['container istio-proxy', 'initContainer istio-init', 'volume istio-envoy', 'volume istiod-ca-cert', 'annotation sidecar.istio.io/status', 'annotation istio.io/rev', 'annotation kubectl.kubernetes.io/default-container', 'label security.istio.io/tlsMode', 'label service.istio.io/canonical-name', 'label service.istio.io/canonical-revision', 'status', 'metadata.uid']) assert.ok(removed.includes(r), `${r} in ${JSON.stringify(removed)}`);
  const l = stripInjected(load('linkerd-native-statefulset.yaml')).removed;
  for (const r of ['initContainer linkerd-network-validator', 'initContainer linkerd-proxy', 'volume linkerd-identity-token', 'label linkerd.io/proxy-statefulset', 'annotation linkerd.io/proxy-version', 'volumeClaimTemplate data status']) assert.ok(l.includes(r), `${r} in ${JSON.stringify(l)}`);
});

test('k8s mesh: an injected Pod (what Velero restores) loses the proxy, its node, its token volume and its controller labels; a CronJob and a Job find their template', () => {
  const t = tpl(load('istio-classic-deployment.yaml'));
  const pod: KObject = {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { ...t.metadata!, name: 'reviews-7d9f8c6b5-x2x4q', namespace: 'bookinfo', uid: 'u1', labels: { ...t.metadata!.labels!, 'pod-template-hash': '7d9f8c6b5' }, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'reviews-7d9f8c6b5', uid: 'u0', controller: true }] },
    spec: {
      ...t.spec!,
      nodeName: 'node-1',
      containers: t.spec!.containers.map((c) => ({ ...c, volumeMounts: [...(c.volumeMounts ?? []), { name: 'kube-api-access-9xk2d', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }] })),
      volumes: [...t.spec!.volumes!, { name: 'kube-api-access-9xk2d', projected: { sources: [{ serviceAccountToken: { path: 'token' } }, { configMap: { name: 'kube-root-ca.crt' } }] } }],
    } as unknown as Record<string, unknown>,
    status: { phase: 'Running' },
  };
  const { object, removed } = stripInjected(pod);
  const p = object as unknown as V1Pod;
  assert.equal(meshOf(p).mesh, 'none');
  assert.deepEqual(names(p.spec!.containers), ['reviews']);
  assert.equal(p.spec!.nodeName, undefined);
  assert.deepEqual(names(p.spec!.volumes), ['tmp', 'wlp-output', 'data', 'reviews-config']);
  assert.deepEqual(names(p.spec!.containers[0]!.volumeMounts as { name: string }[]), ['tmp', 'wlp-output', 'data', 'reviews-config']);
  assert.equal(p.metadata!.labels!['pod-template-hash'], undefined);
  assert.equal(p.metadata!.ownerReferences, undefined);
  assert.ok(removed.includes('metadata.ownerReferences'));

  const job = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'compact' }, spec: { selector: { matchLabels: { 'batch.kubernetes.io/controller-uid': 'x' } }, template: { metadata: { labels: { 'batch.kubernetes.io/controller-uid': 'x', 'job-name': 'compact', 'batch.kubernetes.io/job-name': 'compact', 'controller-uid': 'x' }, annotations: { 'linkerd.io/proxy-version': 'edge-25.11.1' } }, spec: { restartPolicy: 'Never', containers: [{ name: 'linkerd-proxy', image: 'p' }, { name: 'compact', image: 'c' }] } } } };
  const j = stripInjected(job as KObject).object;
  assert.equal(j.spec!['selector'], undefined, "the API server's Job selector goes: a new Job gets its own");
  assert.deepEqual(names(tpl(j).spec!.containers), ['compact']);
  assert.equal(tpl(j).metadata, undefined);
  const cron = { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'c' }, spec: { schedule: '* * * * *', jobTemplate: { spec: { template: { metadata: { annotations: { 'consul.hashicorp.com/connect-inject-status': 'injected' } }, spec: { containers: [{ name: 'envoy-sidecar', image: 'e' }, { name: 'app', image: 'a' }] } } } } } };
  const cj = stripInjected(cron as KObject).object as unknown as { spec: { jobTemplate: { spec: { template: V1PodTemplateSpec } } } };
  assert.deepEqual(names(cj.spec.jobTemplate.spec.template.spec!.containers), ['app'], "Consul's old envoy-sidecar, with the injector's annotation as evidence");
});

test('k8s mesh: stripInjected never removes by position or by a generic name without evidence', () => {
  // a user's own container called envoy-sidecar, a volume called workload-certs, in a pod no mesh injected
  const own = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'edge' }, spec: { selector: { matchLabels: { app: 'edge' } }, template: { metadata: { labels: { app: 'edge' } }, spec: { containers: [{ name: 'envoy-sidecar', image: 'envoyproxy/envoy:v1.31' }, { name: 'app', image: 'a', volumeMounts: [{ name: 'workload-certs', mountPath: '/certs' }] }], volumes: [{ name: 'workload-certs', secret: { secretName: 'certs' } }] } } } };
  const r = stripInjected(own as KObject);
  assert.deepEqual(r.object, own);
  assert.deepEqual(r.removed, []);
  // Istio injected, and the app itself mounts a volume named like one of Istio's: it stays
  const t = tpl(load('istio-classic-deployment.yaml'));
  t.spec!.containers.find((c) => c.name === 'reviews')!.volumeMounts!.push({ name: 'istio-data', mountPath: '/istio' });
  const s = stripInjected({ apiVersion: 'v1', kind: 'Pod', metadata: t.metadata!, spec: t.spec! } as unknown as KObject).object as unknown as V1Pod;
  assert.ok(names(s.spec!.volumes).includes('istio-data'), 'a volume an app container mounts stays');
});

test('k8s mesh: hookContainer resolves by name; a proxy, a native sidecar, an init container, an unknown or empty name is a one-line UsageError naming the app containers', () => {
  const classic = asPod(tpl(load('istio-classic-deployment.yaml')));
  classic.metadata!.name = 'reviews-1';
  assert.equal(hookContainer(classic, 'reviews'), 'reviews');
  const err = (f: () => unknown, re: RegExp) =>
    assert.throws(f, (e: unknown) => {
      assert.ok(e instanceof UsageError, String(e));
      assert.match(e.message, re);
      assert.equal(e.message.split('\n').length, 1);
      return true;
    });
  err(() => hookContainer(classic, 'istio-proxy'), /^container istio-proxy of pod reviews-1 is the istio proxy: hooks run in the application container: name it instead \(its application container is reviews\)$/);
  err(() => hookContainer(classic, 'istio-init'), /^container istio-init of pod reviews-1 is an init container, which has exited before the application started: name the application container instead \(its application container is reviews\)$/);
  err(() => hookContainer(classic, ''), /^a hook for pod reviews-1 names no container: give the container it runs in \(its application container is reviews\); meshback never picks "the first container"$/);
  err(() => hookContainer(classic, 'app'), /^pod reviews-1 has no container "app": its containers are istio-proxy, reviews, istio-init \(init\) \(its application container is reviews\)$/);

  const native = asPod(tpl(load('istio-native-statefulset.yaml')));
  native.metadata!.name = 'orders-db-0';
  assert.equal(hookContainer(native, 'postgres'), 'postgres');
  err(() => hookContainer(native, 'istio-proxy'), /^container istio-proxy of pod orders-db-0 is the istio-native proxy \(a native sidecar: an init container with restartPolicy Always\): hooks run in the application container: name it instead \(its application container is postgres\)$/);
  err(() => hookContainer(native, 'fix-permissions'), /is an init container, which has exited/);

  // Linkerd puts its proxy first: "the first container" would be the proxy
  const l5d = asPod(tpl(load('linkerd-classic-deployment.yaml')));
  assert.equal(l5d.spec!.containers[0]!.name, 'linkerd-proxy');
  err(() => hookContainer(l5d, ''), /its application container is web-svc/);
  err(() => hookContainer(l5d, 'linkerd-proxy'), /is the linkerd proxy: hooks run in the application container/);
  // a user's own native sidecar (a log shipper) is refused as well
  const own: V1Pod = { metadata: { name: 'p' }, spec: { initContainers: [{ name: 'fluent-bit', image: 'f', restartPolicy: 'Always' }], containers: [{ name: 'api', image: 'a' }, { name: 'worker', image: 'w' }] } };
  err(() => hookContainer(own, 'fluent-bit'), /^container fluent-bit of pod p is a native sidecar \(an init container with restartPolicy Always\): hooks run in the application container: name it instead \(its application containers are api, worker\)$/);
  assert.equal(hookContainer(own, 'worker'), 'worker');
});

test('k8s pods: helperPod carries no-injection labels and annotations, its owner, least privilege and a deadline', () => {
  const p = helperPod({ name: 'mb-hold-1', namespace: 'shop', node: 'node-a', pvc: 'snap-pvc', readOnly: true, image: 'ghcr.io/meshback/meshback:0.1.0', owner: { apiVersion: 'meshback.io/v1alpha1', kind: 'VolumeBackup', name: 'vb-1', uid: 'uid-1' }, labels: { extra: 'x', [MANAGED_BY.key]: 'someone-else' } });
  assert.equal(p.metadata!.labels![MANAGED_BY.key], MANAGED_BY.value);
  assert.equal(p.metadata!.labels![OWNER_LABEL], 'vb-1');
  assert.equal(p.metadata!.labels!['extra'], 'x');
  for (const [k, v] of Object.entries(NO_INJECTION.labels)) assert.equal(p.metadata!.labels![k], v);
  assert.deepEqual(p.metadata!.annotations, { ...NO_INJECTION.annotations });
  assert.deepEqual(p.metadata!.ownerReferences, [{ apiVersion: 'meshback.io/v1alpha1', kind: 'VolumeBackup', name: 'vb-1', uid: 'uid-1', controller: true, blockOwnerDeletion: true }]);
  const s = p.spec!;
  assert.equal(s.restartPolicy, 'Never');
  assert.equal(s.nodeName, 'node-a');
  assert.equal(s.automountServiceAccountToken, false);
  assert.equal(s.terminationGracePeriodSeconds, 5);
  assert.equal(s.activeDeadlineSeconds, 6 * 3600);
  assert.equal(s.tolerations, undefined);
  assert.equal(s.affinity, undefined);
  assert.equal(s.containers.length, 1);
  const c = s.containers[0]!;
  assert.equal(c.name, 'holder');
  assert.deepEqual(c.args, ['k8s', 'hold']);
  assert.equal(c.command, undefined, "the image's entrypoint is meshback");
  assert.deepEqual(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
  assert.deepEqual(c.resources, { requests: { cpu: '10m', memory: '16Mi' }, limits: { memory: '64Mi' } });
  assert.deepEqual(c.volumeMounts, [{ name: 'volume', mountPath: '/volume', readOnly: true }]);
  assert.deepEqual(s.volumes, [{ name: 'volume', persistentVolumeClaim: { claimName: 'snap-pvc', readOnly: true } }]);
  assert.equal(meshOf(p).mesh, 'none');
  const free = helperPod({ name: 'x', namespace: 'n', pvc: 'c', readOnly: false, image: 'i', owner: { apiVersion: 'v1', kind: 'ConfigMap', name: 'o', uid: 'u' }, deadlineSeconds: 60 });
  assert.equal(free.spec!.nodeName, undefined);
  assert.equal(free.spec!.activeDeadlineSeconds, 60);
  assert.equal(free.spec!.volumes![0]!.persistentVolumeClaim!.readOnly, false);
});

test('k8s hold: sleeps until told to stop, then exit 0', async () => {
  const ac = new AbortController();
  let done = false;
  const p = k8sHold(ac.signal).then((code) => {
    done = true;
    return code;
  });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(done, false, 'still holding');
  ac.abort();
  assert.equal(await p, 0);
});
