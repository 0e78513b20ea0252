/**
 * Mesh awareness against the real kube-apiserver of the lab's test environment (lab/testenv/k8s.ts).
 * Istio's and Linkerd's CRDs are STAND-INS (test/fixtures/k8s/mesh-crds.yaml: their groups, kinds
 * and versions, schemas that preserve unknown fields); the API server serving them, its discovery,
 * RBAC, the StatefulSet controller and the admission chain are real. No Istio runs here: a STAND-IN
 * injection webhook (an https server on 127.0.0.1 that the API server calls) adds an istio-proxy
 * container by Istio's rule: namespaces labelled istio-injection=enabled, except pods with the label
 * or annotation sidecar.istio.io/inject=false. kwok's nodes have no kubelet, so Envoy's admin state
 * is tested on its error path only (port-forward cannot reach a pod there).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { AdmissionregistrationV1Api, ApiextensionsV1Api, AppsV1Api, CoreV1Api, CustomObjectsApi, RbacAuthorizationV1Api, loadAllYaml, type KubeConfig, type V1CustomResourceDefinition, type V1Pod } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { KWOK_NODES, startK8s, type K8sEnv } from '../../lab/testenv/index.ts';
import { AGENT_RULES } from '../../src/k8s/api.ts';
import { meshOf } from '../../src/k8s/discover.ts';
import { captureEnvoyAdmin, exportForBackup, restoreWorkloads, type ExportManifest, type KObject } from '../../src/k8s/mesh.ts';
import { helperPod } from '../../src/k8s/pods.ts';
import { rmrf, tmpdir } from '../helpers/cli.ts';
import { makeTestPki } from '../helpers/tls.ts';
import { until } from '../helpers/until.ts';

const fixtures = path.resolve(import.meta.dirname, '../fixtures/k8s');
const NS = 'shop';
const RESTORED = 'shop-restored';
let k8s: K8sEnv;
let kc: KubeConfig;
let core: CoreV1Api;
let work: string;
let webhook: https.Server;
const injected: string[] = [];


const proxies = (p: V1Pod): number => [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? [])].filter((c) => c.name === 'istio-proxy').length;

/** The stand-in injector: Istio's rule, Istio's container name and status annotation (nothing more). */
function standInInjector(req: { uid: string; object: V1Pod }): { uid: string; allowed: boolean; patchType?: string; patch?: string } {
  const pod = req.object;
  const off = (m: Record<string, string> | undefined) => m?.['sidecar.istio.io/inject'] === 'false';
  if (off(pod.metadata?.labels) || off(pod.metadata?.annotations)) return { uid: req.uid, allowed: true };
  injected.push(pod.metadata?.name ?? pod.metadata?.generateName ?? '');
  const status = JSON.stringify({ initContainers: null, containers: ['istio-proxy'], volumes: null, imagePullSecrets: null, revision: 'stand-in' });
  const patch = [
    { op: 'add', path: '/spec/containers/-', value: { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:stand-in', args: ['proxy', 'sidecar'] } },
    pod.metadata?.annotations === undefined
      ? { op: 'add', path: '/metadata/annotations', value: { 'sidecar.istio.io/status': status } }
      : { op: 'add', path: '/metadata/annotations/sidecar.istio.io~1status', value: status },
  ];
  return { uid: req.uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') };
}

async function startWebhook(): Promise<{ url: string; caBundle: string }> {
  const pki = await makeTestPki(path.join(work, 'webhook-pki'));
  webhook = https.createServer({ cert: readFileSync(pki.crt), key: readFileSync(pki.key) }, (req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      const review = JSON.parse(body) as { request: { uid: string; object: V1Pod } };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: standInInjector(review.request) }));
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  return { url: `https://127.0.0.1:${(webhook.address() as AddressInfo).port}/inject`, caBundle: readFileSync(pki.caCrt).toString('base64') };
}

/** a kubeconfig of a service account granted exactly `rules` cluster-wide */
async function serviceAccount(name: string, rules: typeof AGENT_RULES): Promise<KubeConfig> {
  const rbac = kc.makeApiClient(RbacAuthorizationV1Api);
  await core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name } } });
  await rbac.createClusterRole({ body: { metadata: { name }, rules: rules.map(({ apiGroups, resources, verbs }) => ({ apiGroups, resources, verbs })) } });
  await rbac.createClusterRoleBinding({ body: { metadata: { name }, roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name }, subjects: [{ kind: 'ServiceAccount', name, namespace: 'default' }] } });
  const tr = await core.createNamespacedServiceAccountToken({ namespace: 'default', name, body: { spec: { audiences: [], expirationSeconds: 3600 } } });
  return k8s.tokenConfig(tr.status!.token!);
}

/** the StatefulSet of the Istio native fixture as it was applied to a cluster that injects (its template injected) */
function injectedStatefulSet(): KObject {
  const s = parse(readFileSync(path.join(fixtures, 'istio-native-statefulset.yaml'), 'utf8')) as KObject;
  for (const k of ['uid', 'resourceVersion', 'creationTimestamp', 'generation', 'namespace']) delete (s.metadata as Record<string, unknown>)[k];
  delete s.status;
  return s;
}

before(async () => {
  k8s = await startK8s();
  kc = k8s.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  work = tmpdir('k8s-mesh');
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  for (const crd of loadAllYaml(await fsp.readFile(path.join(fixtures, 'mesh-crds.yaml'), 'utf8')) as V1CustomResourceDefinition[]) await ext.createCustomResourceDefinition({ body: crd });
  await until('the stand-in mesh CRDs to be established', 30_000, async () => {
    const l = await ext.listCustomResourceDefinition();
    return l.items.filter((c) => /istio\.io|linkerd\.io/.test(c.spec.group) && (c.status?.conditions ?? []).some((x) => x.type === 'Established' && x.status === 'True')).length === 5 ? true : undefined;
  });
  await core.createNamespace({ body: { metadata: { name: NS } } });
  await until('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: NS, name: 'default' }));
  const co = kc.makeApiClient(CustomObjectsApi);
  const cr = (group: string, version: string, plural: string, body: object) => co.createNamespacedCustomObject({ group, version, namespace: NS, plural, body });
  await until('the custom resources to be served', 30_000, async () => {
    await cr('networking.istio.io', 'v1', 'virtualservices', { apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'orders' }, spec: { hosts: ['orders-db'], tcp: [{ route: [{ destination: { host: 'orders-db', port: { number: 5432 } } }] }] } });
    return true;
  });
  await cr('security.istio.io', 'v1', 'peerauthentications', { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'default' }, spec: { mtls: { mode: 'STRICT' } } });
  await cr('policy.linkerd.io', 'v1beta3', 'servers', { apiVersion: 'policy.linkerd.io/v1beta3', kind: 'Server', metadata: { name: 'orders-db' }, spec: { podSelector: { matchLabels: { 'app.kubernetes.io/name': 'orders-db' } }, port: 'tcp-postgres', proxyProtocol: 'opaque' } });
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'orders-db-env' }, data: { POSTGRES_DB: 'orders' } } });
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'orders-db-initdb' }, data: { 'init.sql': 'create table orders (id int);' } } });
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'unrelated' }, data: { a: 'b' } } });
  await core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name: 'istio-ca-root-cert' }, data: { 'root-cert.pem': 'stand-in' } } });
  await core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: 'orders-db' }, stringData: { password: 'not-exported' } } });
  await core.createNamespacedService({ namespace: NS, body: { metadata: { name: 'orders-db' }, spec: { clusterIP: 'None', selector: { 'app.kubernetes.io/name': 'orders-db' }, ports: [{ name: 'tcp-postgres', port: 5432 }] } } });
  await core.createNamespacedService({ namespace: NS, body: { metadata: { name: 'frontend' }, spec: { selector: { app: 'frontend' }, ports: [{ name: 'http', port: 80 }] } } });
  const apps = kc.makeApiClient(AppsV1Api);
  await apps.createNamespacedStatefulSet({ namespace: NS, body: injectedStatefulSet() as never });
  await apps.createNamespacedDeployment({ namespace: NS, body: { metadata: { name: 'frontend' }, spec: { replicas: 1, selector: { matchLabels: { app: 'frontend' } }, template: { metadata: { labels: { app: 'frontend' } }, spec: { containers: [{ name: 'web', image: 'nginx:1.27', envFrom: [{ configMapRef: { name: 'unrelated' } }] }] } } } } });
  await until('the StatefulSet controller to make orders-db-0 and its claim', 60_000, async () => {
    const p = await core.readNamespacedPod({ namespace: NS, name: 'orders-db-0' });
    const c = await core.readNamespacedPersistentVolumeClaim({ namespace: NS, name: 'data-orders-db-0' });
    return p.metadata?.ownerReferences?.[0]?.kind === 'StatefulSet' && c !== undefined ? true : undefined;
  });
});
after(async () => {
  await new Promise<void>((r) => (webhook === undefined ? r() : webhook.close(() => r())));
  await k8s?.stop();
  if (work !== undefined) await rmrf(work);
});

test('k8s mesh: exportForBackup with exactly the agent\'s RBAC rules exports the mesh configuration (stand-in CRDs) and the StatefulSet that mounts the PVC with its Service and ConfigMaps, never a Secret', async () => {
  const agent = await serviceAccount('meshback-agent', AGENT_RULES);
  const { files, warnings } = await exportForBackup(agent, NS, 'data-orders-db-0', { pods: ['orders-db-0'] });
  assert.deepEqual(files.map((f) => f.path).sort(), [
    'k8s/manifest.json',
    'k8s/mesh/networking.istio.io/VirtualService/orders.yaml',
    'k8s/mesh/policy.linkerd.io/Server/orders-db.yaml',
    'k8s/mesh/security.istio.io/PeerAuthentication/default.yaml',
    'k8s/workloads/apps/StatefulSet/orders-db.yaml',
    'k8s/workloads/core/ConfigMap/orders-db-env.yaml',
    'k8s/workloads/core/ConfigMap/orders-db-initdb.yaml',
    'k8s/workloads/core/Service/orders-db.yaml',
  ], 'not the Secret, not the ConfigMap of the injected istiod-ca-cert volume, not the unrelated Deployment, Service and ConfigMap');
  const file = (p: string) => parse(files.find((f) => f.path === p)!.content.toString('utf8')) as KObject;
  const vs = file('k8s/mesh/networking.istio.io/VirtualService/orders.yaml');
  assert.equal(vs.apiVersion, 'networking.istio.io/v1', 'the preferred version');
  assert.deepEqual(vs.spec, { hosts: ['orders-db'], tcp: [{ route: [{ destination: { host: 'orders-db', port: { number: 5432 } } }] }] });
  assert.deepEqual(Object.keys(vs.metadata!).sort(), ['name', 'namespace'], 'server-set fields stripped');
  assert.equal(file('k8s/mesh/policy.linkerd.io/Server/orders-db.yaml').apiVersion, 'policy.linkerd.io/v1beta3');
  const sts = file('k8s/workloads/apps/StatefulSet/orders-db.yaml');
  assert.equal(sts.metadata!.uid !== undefined, true, 'workloads are stored as they are: stripping happens at restore');
  assert.equal(meshOf({ metadata: (sts.spec as { template: V1Pod }).template.metadata, spec: (sts.spec as { template: V1Pod }).template.spec }).mesh, 'istio-native');
  assert.ok(!files.some((f) => f.content.toString('utf8').includes('not-exported')), 'no Secret value anywhere');
  const m = JSON.parse(files.find((f) => f.path === 'k8s/manifest.json')!.content.toString('utf8')) as ExportManifest;
  assert.equal(m.cluster, k8s.server);
  assert.equal(m.namespace, NS);
  assert.equal(m.pvc, 'data-orders-db-0');
  assert.deepEqual(m.kinds.served.sort(), ['networking.istio.io/DestinationRule', 'networking.istio.io/VirtualService', 'policy.linkerd.io/HTTPRoute', 'policy.linkerd.io/Server', 'security.istio.io/PeerAuthentication'], JSON.stringify({ kinds: m.kinds, warnings }));
  assert.deepEqual(m.kinds.forbidden, []);
  assert.ok(m.kinds.absent.includes('consul.hashicorp.com/ServiceDefaults') && m.kinds.absent.includes('linkerd.io/ServiceProfile'));
  assert.deepEqual(m.workloads.map((w) => `${w.kind}/${w.name}`), ['StatefulSet/orders-db', 'Service/orders-db', 'ConfigMap/orders-db-env', 'ConfigMap/orders-db-initdb']);
  // absent kinds are warnings, one per group; nothing else went wrong
  assert.ok(warnings.length > 0 && warnings.every((w) => /^the cluster serves no /.test(w)), JSON.stringify(warnings));
  assert.ok(warnings.includes('the cluster serves no ServiceDefaults, ServiceIntentions, ServiceRouter, ServiceResolver, ServiceSplitter, ProxyDefaults (consul.hashicorp.com, Consul): not exported'), JSON.stringify(warnings));
  assert.deepEqual(m.warnings, warnings);
});

test('k8s mesh: without the mesh rule of AGENT_RULES the mesh kinds are forbidden: warnings, never a failure', async () => {
  const narrow = await serviceAccount('meshback-agent-narrow', AGENT_RULES.filter((r) => !r.apiGroups.includes('networking.istio.io')));
  const { files, warnings } = await exportForBackup(narrow, NS, 'data-orders-db-0');
  assert.ok(!files.some((f) => f.path.startsWith('k8s/mesh/')));
  assert.ok(files.some((f) => f.path === 'k8s/workloads/apps/StatefulSet/orders-db.yaml'), 'found by its template, without any pod');
  const forbidden = warnings.filter((w) => /forbidden/.test(w));
  assert.equal(forbidden.length, 5, JSON.stringify(warnings));
  assert.match(forbidden.find((w) => w.startsWith('VirtualService'))!, /^VirtualService \(networking\.istio\.io\) not exported: forbidden: system:serviceaccount:default:meshback-agent-narrow may not list virtualservices\.networking\.istio\.io in namespace shop \(RBAC\)/);
});

test('k8s mesh: the stand-in Istio injection webhook (127.0.0.1, https) injects a plain pod, not a helperPod; restoreWorkloads gives the restored StatefulSet\'s pod exactly ONE proxy, the unstripped template two (refused)', async () => {
  const { url, caBundle } = await startWebhook();
  await kc.makeApiClient(AdmissionregistrationV1Api).createMutatingWebhookConfiguration({
    body: {
      metadata: { name: 'istio-sidecar-injector-stand-in' },
      webhooks: [
        {
          name: 'sidecar-injector.stand-in.istio.io',
          clientConfig: { url, caBundle },
          rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
          namespaceSelector: { matchLabels: { 'istio-injection': 'enabled' } },
          objectSelector: { matchExpressions: [{ key: 'sidecar.istio.io/inject', operator: 'NotIn', values: ['false'] }] },
          sideEffects: 'None',
          admissionReviewVersions: ['v1'],
          failurePolicy: 'Fail',
          timeoutSeconds: 5,
        },
      ],
    },
  });
  await core.createNamespace({ body: { metadata: { name: RESTORED, labels: { 'istio-injection': 'enabled' } } } });
  await until('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: RESTORED, name: 'default' }));
  const plain = (name: string, meta: Partial<{ labels: Record<string, string>; annotations: Record<string, string> }> = {}) => ({ metadata: { name, ...meta }, spec: { nodeName: KWOK_NODES[0]!, containers: [{ name: 'app', image: 'busybox:1.37' }] } });
  // the API server takes the webhook's configuration up within a moment: a probe pod until it is injected
  let n = 0;
  await until('the API server to call the stand-in webhook at 127.0.0.1', 30_000, async () => {
    const p = await core.createNamespacedPod({ namespace: RESTORED, body: plain(`probe-${n++}`) });
    return proxies(p) === 1 ? true : undefined;
  });
  const app = await core.createNamespacedPod({ namespace: RESTORED, body: plain('app') });
  assert.equal(proxies(app), 1, 'a plain pod in an injecting namespace gets the proxy');
  assert.equal(meshOf(app).mesh, 'istio');
  const optOut = await core.createNamespacedPod({ namespace: RESTORED, body: plain('opt-out', { annotations: { 'sidecar.istio.io/inject': 'false' } }) });
  assert.equal(proxies(optOut), 0, "the annotation alone: the injector's own check");

  const owner = await core.createNamespacedConfigMap({ namespace: RESTORED, body: { metadata: { name: 'stand-in-owner' } } });
  const before = injected.length;
  const hp = await core.createNamespacedPod({ namespace: RESTORED, body: helperPod({ name: 'mb-hold', namespace: RESTORED, node: KWOK_NODES[1]!, pvc: 'any', readOnly: true, image: 'meshback:test', owner: { apiVersion: 'v1', kind: 'ConfigMap', name: 'stand-in-owner', uid: owner.metadata!.uid! } }) });
  assert.equal(proxies(hp), 0, 'the helper pod is not injected');
  assert.equal(meshOf(hp).mesh, 'none');
  assert.equal(injected.length, before, 'the webhook was not even asked (objectSelector on the label)');
  await until('the helper pod to run on its kwok node', 60_000, async () => ((await core.readNamespacedPod({ namespace: RESTORED, name: 'mb-hold' })).status?.phase === 'Running' ? true : undefined));

  // the control: the injected template as it is (what Velero restores) gets a second proxy, and the API server refuses the pod
  const sts = injectedStatefulSet() as unknown as { spec: { template: V1Pod } };
  await assert.rejects(
    core.createNamespacedPod({ namespace: RESTORED, body: { metadata: { name: 'unstripped', labels: sts.spec.template.metadata!.labels }, spec: { ...sts.spec.template.spec!, nodeName: KWOK_NODES[0]! } } }),
    (e: { code?: number; body?: string }) => e.code === 422 && /istio-proxy/.test(String(e.body)) && /Duplicate value/.test(String(e.body)),
  );

  // restore the export into the injecting namespace
  const { files } = await exportForBackup(kc, NS, 'data-orders-db-0');
  const dry = await restoreWorkloads(kc, RESTORED, files, { dryRun: true });
  assert.deepEqual(dry.objects.map((o) => `${o.action} ${o.kind}/${o.name}`), ['created ConfigMap/orders-db-env', 'created ConfigMap/orders-db-initdb', 'created Service/orders-db', 'created StatefulSet/orders-db']);
  await assert.rejects(kc.makeApiClient(AppsV1Api).readNamespacedStatefulSet({ namespace: RESTORED, name: 'orders-db' }), (e: { code?: number }) => e.code === 404, 'dry run: nothing stored');
  const r = await restoreWorkloads(kc, RESTORED, files);
  assert.deepEqual(r.objects.map((o) => `${o.action} ${o.kind}/${o.name}`), ['created ConfigMap/orders-db-env', 'created ConfigMap/orders-db-initdb', 'created Service/orders-db', 'created StatefulSet/orders-db']);
  const removed = r.objects.find((o) => o.kind === 'StatefulSet')!.removed;
  for (const x of ['initContainer istio-proxy', 'initContainer istio-validation', 'volume istio-envoy', 'annotation sidecar.istio.io/status', 'status']) assert.ok(removed.includes(x), `${x} in ${JSON.stringify(removed)}`);
  const restored = await kc.makeApiClient(AppsV1Api).readNamespacedStatefulSet({ namespace: RESTORED, name: 'orders-db' });
  assert.equal(meshOf({ metadata: restored.spec!.template.metadata, spec: restored.spec!.template.spec }).mesh, 'none', 'the stored template has zero proxies');
  assert.deepEqual(restored.spec!.template.spec!.initContainers!.map((c) => c.name), ['fix-permissions']);
  const pod = await until("the restored StatefulSet's pod", 60_000, async () => {
    try {
      return await core.readNamespacedPod({ namespace: RESTORED, name: 'orders-db-0' });
    } catch {
      return undefined;
    }
  });
  assert.equal(proxies(pod), 1, 'exactly one proxy: the webhook\'s');
  assert.deepEqual(pod.spec!.containers.map((c) => c.name), ['postgres', 'istio-proxy']);
  assert.equal(pod.spec!.initContainers!.map((c) => c.name).join(','), 'fix-permissions');
  // again: the objects exist and are replaced
  const again = await restoreWorkloads(kc, RESTORED, files);
  assert.deepEqual(again.objects.map((o) => o.action), ['replaced', 'replaced', 'replaced', 'replaced']);
  const svc = await core.readNamespacedService({ namespace: RESTORED, name: 'orders-db' });
  assert.equal(svc.spec!.clusterIP, 'None', 'still headless');
});

test('k8s mesh: captureEnvoyAdmin where port-forward cannot work (kwok has no kubelet; RBAC without pods/portforward) is a warning, never a failure', async () => {
  const pod = await core.readNamespacedPod({ namespace: RESTORED, name: 'app' });
  await until('the injected pod to run on its kwok node', 60_000, async () => ((await core.readNamespacedPod({ namespace: RESTORED, name: 'app' })).status?.phase === 'Running' ? true : undefined));
  const t0 = Date.now();
  const r = await captureEnvoyAdmin(kc, pod, { timeoutMs: 15_000 });
  assert.deepEqual(r.files, []);
  assert.equal(r.warnings.length, 1);
  assert.match(r.warnings[0]!, /^Envoy admin state of pod shop-restored\/app not captured \(\/config_dump\): the API server could not forward port 15000 of the pod \(.+\); the backup goes on without it$/);
  assert.ok(Date.now() - t0 < 20_000);
  const agent = await serviceAccount('meshback-agent-noforward', AGENT_RULES.filter((x) => !x.resources.includes('pods/portforward')));
  const f = await captureEnvoyAdmin(agent, pod, { timeoutMs: 15_000 });
  assert.deepEqual(f.files, []);
  assert.match(f.warnings[0]!, /not captured \(\/config_dump\): the cluster forbids it \(RBAC: grant "create" on "pods\/portforward" in the namespace\)/);
  const none = await captureEnvoyAdmin(kc, await core.readNamespacedPod({ namespace: RESTORED, name: 'opt-out' }));
  assert.match(none.warnings[0]!, /has no Istio proxy \(mesh: none\)/);
});
