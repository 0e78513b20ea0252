/**
 * meshback's installation against the real kube-apiserver of the lab's test environment (etcd,
 * kube-apiserver with RBAC, kube-controller-manager with the CronJob and Job controllers, kwok
 * nodes; lab/testenv/k8s.ts) and the real helm binary:
 *   - `helm template charts/meshback` and `meshback k8s install --render` give the same objects;
 *   - they apply cleanly (the CRDs become Established, the DaemonSet is scheduled on both nodes);
 *   - the server validates the CRDs (a valid BackupPolicy is created, invalid ones get 422), the
 *     status subresource works, the printer columns are served;
 *   - the RBAC is least privilege, enforced by the server for the service accounts' real tokens;
 *   - `meshback k8s cronjob` renders a CronJob the real CronJob controller makes a Job of, whose
 *     pod stays out of mesh injection.
 * Every wait is bounded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { ApiException, AppsV1Api, AuthorizationV1Api, BatchV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { binary, startK8s, type K8sEnv } from '../../lab/testenv/index.ts';
import { AGENT_RULES, CONTROLLER_NAMESPACE_RULES, CONTROLLER_RULES, GROUP, NO_INJECTION, VERSION, type BackupPolicy, type RbacRule } from '../../src/k8s/api.ts';
import { objectKey, type K8sObject } from '../../src/k8s/install.ts';
import { policyNamed } from '../../src/policy/index.ts';
import { parsePolicyFile } from '../../src/policy/load.ts';
import { ROOT, mb, rmrf, runProcess, tmpdir } from '../helpers/cli.ts';
import { applyObjects, installMeshback, type Installed } from '../helpers/k8s-install.ts';
import { until } from '../helpers/until.ts';

let k8s: K8sEnv;
let kc: KubeConfig;
let core: CoreV1Api;
let helm: string;
let work: string;
let installed: Installed;
const APP = 'shop';
const CHART = path.join(ROOT, 'charts/meshback');


/** the HTTP status of a failed API call (undefined: it succeeded) */
async function statusOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    if (e instanceof ApiException) return e.code;
    throw e;
  }
}

function parseStream(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => {
      assert.equal(d.errors.length, 0, String(d.errors[0]));
      return d.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

function byKey(objs: K8sObject[]): Map<string, K8sObject> {
  const m = new Map<string, K8sObject>();
  for (const o of objs) {
    assert.ok(!m.has(objectKey(o)), `${objectKey(o)} twice`);
    m.set(objectKey(o), o);
  }
  return m;
}

async function render(args: string[]): Promise<K8sObject[]> {
  const r = await mb(['k8s', 'install', '--render', ...args], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return parseStream(r.stdout);
}

async function helmTemplate(args: string[]): Promise<K8sObject[]> {
  const r = await runProcess(helm, ['template', 'meshback', CHART, '--include-crds', ...args], {}, { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return parseStream(r.stdout);
}

function policy(name: string, spec: Record<string, unknown>): BackupPolicy {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'BackupPolicy', metadata: { name, namespace: APP }, spec } as unknown as BackupPolicy;
}
const custom = (k: KubeConfig) => k.makeApiClient(CustomObjectsApi);
const policies = { group: GROUP, version: VERSION, plural: 'backuppolicies' };

before(async () => {
  k8s = await startK8s();
  kc = k8s.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  helm = await binary('helm', (l) => process.stderr.write(l + '\n'));
  work = tmpdir('k8s-install');
  await core.createNamespace({ body: { metadata: { name: APP, labels: { 'istio-injection': 'enabled' } } } });
  await until('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: APP, name: 'default' }));
});

after(async () => {
  await k8s?.stop();
  if (work !== undefined) await rmrf(work);
});

test('helm template charts/meshback and meshback k8s install --render give the same objects (defaults, and another namespace and image); --json is the same list', async () => {
  for (const [ours, theirs] of [
    [[], ['-n', 'meshback', '--set', 'createNamespace=true']],
    [['-n', 'backup', '--image', 'registry.example/mb:9', '--no-namespace'], ['-n', 'backup', '--set', 'image.repository=registry.example/mb,image.tag=9']],
  ] as const) {
    const a = byKey(await render([...ours]));
    const b = byKey(await helmTemplate([...theirs]));
    assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
    for (const [k, o] of a) assert.deepEqual(b.get(k), o, `${k} differs between helm template and --render`);
    const kinds = [...a.values()].map((o) => o.kind);
    for (const kind of ['CustomResourceDefinition', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding', 'Deployment', 'DaemonSet']) assert.ok(kinds.includes(kind), kind);
    assert.equal(kinds.includes('Namespace'), ours.length === 0);
  }
  const j = await mb(['k8s', 'install', '--render', '--json'], { timeoutMs: 60_000 });
  assert.equal(j.code, 0, j.stderr);
  assert.deepEqual(JSON.parse(j.stdout), await render([]));
  const lint = await runProcess(helm, ['lint', CHART], {}, { timeoutMs: 60_000 });
  assert.equal(lint.code, 0, lint.stdout + lint.stderr);
});

test('the rendered objects apply cleanly: CRDs Established, the DaemonSet on both nodes, every pod out of mesh injection', async () => {
  const objs = await render([]);
  await applyObjects(kc, objs); // waits for the CRDs to be Established
  const ds = await until('the DaemonSet to be scheduled on both nodes', 60_000, async () => {
    const d = await kc.makeApiClient(AppsV1Api).readNamespacedDaemonSet({ namespace: 'meshback', name: 'meshback-agent' });
    return d.status?.desiredNumberScheduled === k8s.nodes.length ? d : undefined;
  });
  assert.equal(ds.spec?.template.spec?.containers[0]?.resources?.limits?.['memory'], '512Mi');
  const dep = await kc.makeApiClient(AppsV1Api).readNamespacedDeployment({ namespace: 'meshback', name: 'meshback-controller' });
  for (const t of [ds.spec!.template, dep.spec!.template]) {
    for (const [k, v] of Object.entries(NO_INJECTION.annotations)) assert.equal(t.metadata?.annotations?.[k], v, k);
    for (const [k, v] of Object.entries(NO_INJECTION.labels)) assert.equal(t.metadata?.labels?.[k], v, k);
  }
  assert.deepEqual(dep.spec?.template.spec?.containers[0]?.args, ['k8s', 'controller', '--namespace=$(POD_NAMESPACE)', '--identity=$(POD_NAME)']);
  // applying again replaces (no conflict), as an upgrade would
  await applyObjects(kc, objs);
});

test('the server validates BackupPolicies against the CRD schema: a valid one is created, invalid ones get 422', async () => {
  const repository = { secretRef: { name: 'meshback-repo' } };
  const ok = (await custom(kc).createNamespacedCustomObject({ ...policies, namespace: APP, body: policy('nightly', { schedule: '0 2 * * *', rpo: '26h', retention: { keepDaily: 7, keepLast: 0 }, repository }) })) as BackupPolicy;
  assert.equal(ok.spec.strategy, 'snapshot', 'the default strategy');
  for (const [why, field, spec] of [
    ['strategy "sometimes"', 'spec.strategy', { schedule: 'every 15m', strategy: 'sometimes', repository }],
    ['no schedule', 'spec.schedule', { repository }],
    ['negative keepLast', 'spec.retention.keepLast', { schedule: 'every 15m', retention: { keepLast: -1 }, repository }],
    ['rpo not a duration', 'spec.rpo', { schedule: 'every 15m', rpo: 'soon', repository }],
    ['schedule neither every nor cron', 'spec.schedule', { schedule: 'hourly', repository }],
    ['no repository', 'spec.repository', { schedule: 'every 15m' }],
    ['a hook without its container', 'spec.hooks.pre[0].container', { schedule: 'every 15m', repository, hooks: { pre: [{ command: ['sync'] }] } }],
  ] as const) {
    const e = await custom(kc)
      .createNamespacedCustomObject({ ...policies, namespace: APP, body: policy('bad', spec) })
      .then(() => undefined, (x: unknown) => x as ApiException<string>);
    assert.equal(e?.code, 422, why);
    assert.ok(String(e.body).includes(field), `${why}: ${String(e.body).slice(0, 400)}`);
  }
  const vb = { group: GROUP, version: VERSION, plural: 'volumebackups', namespace: APP };
  assert.equal(await statusOf(custom(kc).createNamespacedCustomObject({ ...vb, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeBackup', metadata: { name: 'x' }, spec: { policy: 'nightly', pvc: 'data', strategy: 'later' } } })), 422);
  const vr = { group: GROUP, version: VERSION, plural: 'volumerestores', namespace: APP };
  assert.equal(await statusOf(custom(kc).createNamespacedCustomObject({ ...vr, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeRestore', metadata: { name: 'x' }, spec: { snapshot: 'latest' } } })), 422, 'no targetPvc');
});

test('status is a subresource: a create drops it, a write through /status sets it (and a wrong phase gets 422); the printer columns are served', async () => {
  const vb = { group: GROUP, version: VERSION, plural: 'volumebackups', namespace: APP };
  const body = { apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeBackup', metadata: { name: 'nightly-data-1' }, spec: { policy: 'nightly', pvc: 'data', strategy: 'snapshot' }, status: { phase: 'Completed' } };
  const created = (await custom(kc).createNamespacedCustomObject({ ...vb, body })) as Record<string, unknown>;
  assert.equal(created['status'], undefined, 'status is not set by a create');
  const status = { phase: 'Completed', snapshotId: 'abc123', bytes: 4096, files: 3, source: { node: k8s.nodes[0]!, pod: 'p', podUID: 'u', pvName: 'pv', pvc: 'data' }, verification: { verified: true, method: 'read-back' } };
  const withStatus = (await custom(kc).replaceNamespacedCustomObjectStatus({ ...vb, name: 'nightly-data-1', body: { ...created, status } })) as { status: typeof status };
  assert.deepEqual(withStatus.status, status);
  const bad = await statusOf(custom(kc).replaceNamespacedCustomObjectStatus({ ...vb, name: 'nightly-data-1', body: { ...withStatus, status: { ...status, phase: 'Done' } } }));
  assert.equal(bad, 422);

  // the table kubectl get prints (Accept: as=Table), as the server makes it from the printer columns
  const table = await getTable(`/apis/${GROUP}/${VERSION}/namespaces/${APP}/volumebackups`);
  assert.deepEqual(table.columnDefinitions.map((c) => c.name), ['Name', 'Policy', 'PVC', 'Phase', 'Node', 'Snapshot', 'Bytes', 'Age']);
  assert.deepEqual(table.rows[0]!.cells.slice(0, 7), ['nightly-data-1', 'nightly', 'data', 'Completed', k8s.nodes[0]!, 'abc123', 4096]);
  const pt = await getTable(`/apis/${GROUP}/${VERSION}/namespaces/${APP}/backuppolicies`);
  assert.deepEqual(pt.columnDefinitions.map((c) => c.name), ['Name', 'Schedule', 'Strategy', 'RPO', 'Last Success', 'Age']);
  const rt = await getTable(`/apis/${GROUP}/${VERSION}/namespaces/${APP}/volumerestores`);
  assert.deepEqual(rt.columnDefinitions.map((c) => c.name), ['Name', 'Snapshot', 'Target', 'Phase', 'RTO', 'Age']);
});

/** GET as a Table (kubectl get's request), with the admin's client certificate */
async function getTable(p: string): Promise<{ columnDefinitions: { name: string }[]; rows: { cells: unknown[] }[] }> {
  const conf = JSON.parse(await fsp.readFile(k8s.kubeconfig, 'utf8')) as { users: { user: Record<string, string> }[] };
  const u = conf.users[0]!.user;
  const b = (k: string) => Buffer.from(u[k]!, 'base64');
  return new Promise((resolve, reject) => {
    const req = https.get(`${k8s.server}${p}`, { ca: k8s.caPem, cert: b('client-certificate-data'), key: b('client-key-data'), headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } }, (res) => {
      let s = '';
      res.setEncoding('utf8').on('data', (d: string) => (s += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(s)) : reject(new Error(`${res.statusCode}: ${s.slice(0, 300)}`))));
    });
    req.on('error', reject);
  });
}

/** may the token's user do this? (SelfSubjectAccessReview, asked with the token) */
async function can(k: KubeConfig, verb: string, group: string, resource: string, namespace?: string, name?: string): Promise<boolean> {
  const [res, sub] = resource.split('/');
  const r = await k.makeApiClient(AuthorizationV1Api).createSelfSubjectAccessReview({
    body: { spec: { resourceAttributes: { verb, group, resource: res!, ...(sub !== undefined ? { subresource: sub } : {}), ...(namespace !== undefined ? { namespace } : {}), ...(name !== undefined ? { name } : {}) } } },
  });
  return r.status?.allowed === true;
}

async function grantsExactly(k: KubeConfig, rules: RbacRule[], namespace: string, who: string): Promise<void> {
  for (const r of rules) {
    for (const g of r.apiGroups) {
      for (const res of r.resources) {
        const resource = res === '*' ? 'virtualservices' : res;
        for (const verb of r.verbs) assert.ok(await can(k, verb, g, resource, namespace), `${who} may ${verb} ${g}/${resource} (${r.why})`);
      }
    }
  }
}

test('RBAC is least privilege, enforced by the server for the service accounts\' tokens (TokenRequest): what each role grants, and what it does not', async () => {
  installed = await installMeshback(k8s); // the objects are there: it replaces them and makes tokens and kubeconfig files
  assert.ok((await fsp.stat(installed.controllerKubeconfig)).mode % 0o1000 === 0o600);
  const ctl = k8s.tokenConfig(installed.controllerToken);
  const agent = k8s.tokenConfig(installed.agentToken);
  await grantsExactly(ctl, CONTROLLER_RULES, APP, 'the controller');
  await grantsExactly(ctl, CONTROLLER_NAMESPACE_RULES, 'meshback', 'the controller (its namespace)');
  await grantsExactly(agent, AGENT_RULES, APP, 'the agent');

  await core.createNamespacedSecret({ namespace: APP, body: { metadata: { name: 'meshback-repo' }, stringData: { repository: 's3:http://127.0.0.1:9/bucket/repo', password: 'pw', AWS_ACCESS_KEY_ID: 'k', AWS_SECRET_ACCESS_KEY: 's' } } });
  await core.createNamespacedPersistentVolumeClaim({ namespace: APP, body: { metadata: { name: 'data', labels: { app: 'db' } }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: '', resources: { requests: { storage: '1Gi' } } } } });

  // the controller, for real: takes a VolumeSnapshot and runs a helper pod in an application namespace, holds its Lease
  const snap = { group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshots', namespace: APP };
  await custom(ctl).createNamespacedCustomObject({ ...snap, body: { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name: 'data-snap' }, spec: { source: { persistentVolumeClaimName: 'data' } } } });
  await custom(ctl).deleteNamespacedCustomObject({ ...snap, name: 'data-snap' });
  const ctlCore = ctl.makeApiClient(CoreV1Api);
  await ctlCore.createNamespacedPod({ namespace: APP, body: { metadata: { name: 'meshback-helper', labels: { ...NO_INJECTION.labels }, annotations: { ...NO_INJECTION.annotations } }, spec: { restartPolicy: 'Never', containers: [{ name: 'hold', image: 'registry.k8s.io/pause:3.10' }] } } });
  await ctlCore.deleteNamespacedPod({ namespace: APP, name: 'meshback-helper' });
  await ctl.makeApiClient(CoordinationV1Api).createNamespacedLease({ namespace: 'meshback', body: { metadata: { name: 'meshback-controller' }, spec: { holderIdentity: 'test', leaseDurationSeconds: 15 } } });
  assert.equal(await statusOf(ctl.makeApiClient(CoordinationV1Api).createNamespacedLease({ namespace: APP, body: { metadata: { name: 'meshback-controller' }, spec: {} } })), 403, 'a Lease outside its namespace');
  assert.equal(await statusOf(ctlCore.readNamespacedSecret({ namespace: APP, name: 'meshback-repo' })), 403, 'the controller reads no Secret');
  assert.equal(await statusOf(ctlCore.listNamespacedSecret({ namespace: APP })), 403);
  assert.equal(await statusOf(custom(ctl).deleteNamespacedCustomObject({ ...policies, namespace: APP, name: 'nightly' })), 403, 'the controller deletes no BackupPolicy');
  assert.equal(await statusOf(custom(ctl).createNamespacedCustomObject({ ...policies, namespace: APP, body: policy('mine', { schedule: 'every 1h', repository: { secretRef: { name: 'x' } } }) })), 403);
  assert.equal(await statusOf(ctl.makeApiClient(AppsV1Api).deleteNamespacedDeployment({ namespace: APP, name: 'any' })), 403);

  // the agent, for real: gets the repository Secret by name, and nothing more of Secrets; makes no pod and no VolumeBackup
  const agentCore = agent.makeApiClient(CoreV1Api);
  const s = await agentCore.readNamespacedSecret({ namespace: APP, name: 'meshback-repo' });
  assert.equal(Buffer.from(s.data!['password']!, 'base64').toString(), 'pw');
  assert.equal(await statusOf(agentCore.listNamespacedSecret({ namespace: APP })), 403, 'the agent lists no Secrets');
  assert.equal(await can(agent, 'watch', '', 'secrets', APP), false, 'the agent watches no Secrets');
  assert.equal(await statusOf(agentCore.createNamespacedPod({ namespace: APP, body: { metadata: { name: 'agent-pod' }, spec: { containers: [{ name: 'x', image: 'x' }] } } })), 403, 'the agent makes no pod');
  const vb = { group: GROUP, version: VERSION, plural: 'volumebackups', namespace: APP };
  assert.equal(await statusOf(custom(agent).createNamespacedCustomObject({ ...vb, body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'VolumeBackup', metadata: { name: 'agent-vb' }, spec: { policy: 'nightly', pvc: 'data', strategy: 'live' } } })), 403, 'the agent makes no VolumeBackup');
  assert.equal(await statusOf(custom(agent).patchNamespacedCustomObject({ ...vb, name: 'nightly-data-1', body: [{ op: 'add', path: '/metadata/labels', value: { a: 'b' } }] })), 403, 'the agent changes no VolumeBackup spec or labels');
  assert.equal(await statusOf(agentCore.deleteNamespacedPersistentVolumeClaim({ namespace: APP, name: 'data' })), 403);
  assert.equal(await can(agent, 'list', GROUP, 'backuppolicies', APP), false, 'the agent gets a policy by name only');
  assert.equal(await can(agent, 'create', 'snapshot.storage.k8s.io', 'volumesnapshots', APP), false);
  assert.equal(await can(agent, 'update', 'coordination.k8s.io', 'leases', 'meshback'), false);
});

test("meshback k8s cronjob: a ConfigMap and a CronJob for each PVC the policy selects; the policy file is one meshback run reads; the real CronJob controller makes a Job whose pod stays out of injection", async () => {
  await core.createNamespacedPersistentVolumeClaim({ namespace: APP, body: { metadata: { name: 'cache', labels: { app: 'cache' } }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: '', resources: { requests: { storage: '1Gi' } } } } });
  // a pod with app=db mounts this one: the selector finds it through the pod
  await core.createNamespacedPersistentVolumeClaim({ namespace: APP, body: { metadata: { name: 'wal' }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: '', resources: { requests: { storage: '1Gi' } } } } });
  await core.createNamespacedPod({ namespace: APP, body: { metadata: { name: 'db-0', labels: { app: 'db' } }, spec: { containers: [{ name: 'db', image: 'postgres:17' }], volumes: [{ name: 'wal', persistentVolumeClaim: { claimName: 'wal' } }] } } });
  await custom(kc).createNamespacedCustomObject({ ...policies, namespace: APP, body: policy('minutely', { selector: { matchLabels: { app: 'db' } }, schedule: 'every 1m', strategy: 'live', rpo: '5m', retention: { keepLast: 5 }, repository: { secretRef: { name: 'meshback-repo' } } }) });

  const r = await mb(['k8s', 'cronjob', '--policy', 'minutely', '-n', APP, '--kubeconfig', k8s.kubeconfig, '--image', 'registry.example/mb:9'], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '', 'no caveat: strategy live, no hooks');
  const objs = parseStream(r.stdout);
  assert.deepEqual(objs.map(objectKey), ['ConfigMap/shop/meshback-minutely-data', 'CronJob/shop/meshback-minutely-data', 'ConfigMap/shop/meshback-minutely-wal', 'CronJob/shop/meshback-minutely-wal']);
  const cm = objs[0]! as K8sObject & { data: Record<string, string> };
  const file = parsePolicyFile(cm.data['policies.yaml']!, '/etc/meshback/policies.yaml');
  const p = policyNamed(file, 'minutely');
  assert.deepEqual(p.sources, ['/data/data']);
  assert.deepEqual(p.retention, { last: 5 });
  assert.equal(p.rpoMs, 300_000);
  const cron = objs[1]! as K8sObject & { spec: { schedule: string; concurrencyPolicy: string; jobTemplate: { spec: { template: { spec: { containers: { command: string[] }[] } } } } } };
  assert.equal(cron.spec.schedule, '* * * * *');
  assert.equal(cron.spec.concurrencyPolicy, 'Forbid');
  assert.deepEqual(cron.spec.jobTemplate.spec.template.spec.containers[0]!.command, ['meshback', 'run', 'minutely', '--config', '/etc/meshback/policies.yaml', '--retry-lock', '10m']);
  // the command line and policy file meshback run takes: a dry run of them succeeds
  const policyFile = path.join(work, 'policies.yaml');
  await fsp.writeFile(policyFile, cm.data['policies.yaml']!);
  const repoEnv = { MESHBACK_REPO: path.join(work, 'repo'), MESHBACK_PASSWORD: 'pw' };
  assert.equal((await mb(['init'], { env: repoEnv, timeoutMs: 60_000 })).code, 0);
  const dry = await mb(['run', 'minutely', '--config', policyFile, '--retry-lock', '10m', '--dry-run'], { env: repoEnv, timeoutMs: 60_000 });
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /policy minutely \(dry run\): ok/);

  await applyObjects(kc, objs);
  const batch = kc.makeApiClient(BatchV1Api);
  // the CronJob controller runs a schedule of * * * * * at the next whole minute (it looks every 10 s)
  const job = await until('the CronJob controller to make a Job', 80_000, async () => (await batch.listNamespacedJob({ namespace: APP, labelSelector: 'meshback.io/pvc=data' })).items[0]);
  assert.equal(job.metadata?.ownerReferences?.[0]?.kind, 'CronJob');
  const tmpl = job.spec!.template;
  for (const [k, v] of Object.entries(NO_INJECTION.annotations)) assert.equal(tmpl.metadata?.annotations?.[k], v, k);
  for (const [k, v] of Object.entries(NO_INJECTION.labels)) assert.equal(tmpl.metadata?.labels?.[k], v, k);
  assert.equal(tmpl.spec?.restartPolicy, 'Never');
  assert.deepEqual({ ...tmpl.spec?.volumes?.find((x) => x.name === 'data')?.persistentVolumeClaim }, { claimName: 'data', readOnly: true });
  const env = tmpl.spec!.containers[0]!.env!;
  assert.deepEqual({ ...env.find((e) => e.name === 'MESHBACK_PASSWORD')?.valueFrom?.secretKeyRef }, { name: 'meshback-repo', key: 'password' });
  assert.deepEqual({ ...env.find((e) => e.name === 'MESHBACK_REPO')?.valueFrom?.secretKeyRef }, { name: 'meshback-repo', key: 'repository' });
  // the Job controller's pod, in a namespace with istio-injection enabled, carries them too
  const pod = await until("the Job's pod", 30_000, async () => (await core.listNamespacedPod({ namespace: APP, labelSelector: `job-name=${job.metadata!.name!}` })).items[0]);
  assert.equal(pod.metadata?.annotations?.['sidecar.istio.io/inject'], 'false');
  assert.equal(pod.metadata?.annotations?.['linkerd.io/inject'], 'disabled');
});

test('meshback k8s cronjob without a cluster (-f FILE --pvc), and its errors: a schedule no CronJob can keep, no --pvc, an unknown policy', async () => {
  const f = path.join(work, 'policy.yaml');
  const spec = { schedule: 'every 6h', timeZone: 'Europe/Berlin', hooks: { pre: [{ container: 'db', command: ['sync'] }] }, repository: { secretRef: { name: 'repo' } } };
  await fsp.writeFile(f, JSON.stringify(policy('six', spec)));
  const r = await mb(['k8s', 'cronjob', '--policy', 'six', '-f', f, '--pvc', 'a', '--pvc', 'b', '--json'], { env: { KUBECONFIG: path.join(work, 'none') }, timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown);
  const warnings = lines.filter((l) => (l as { message_type?: string }).message_type === 'warning') as { message: string }[];
  assert.ok(warnings.some((w) => /strategy snapshot, but a CronJob reads the live volume/.test(w.message)));
  assert.ok(warnings.some((w) => /has hooks, which a CronJob does not run/.test(w.message)));
  const list = lines.find(Array.isArray) as K8sObject[];
  assert.deepEqual(list.map(objectKey), ['ConfigMap/shop/meshback-six-a', 'CronJob/shop/meshback-six-a', 'ConfigMap/shop/meshback-six-b', 'CronJob/shop/meshback-six-b']);
  assert.equal((list[1] as unknown as { spec: { schedule: string; timeZone: string } }).spec.schedule, '0 */6 * * *');
  assert.equal((list[1] as unknown as { spec: { timeZone: string } }).spec.timeZone, 'Europe/Berlin');

  await fsp.writeFile(f, JSON.stringify(policy('seven', { ...spec, schedule: 'every 7m' })));
  const seven = await mb(['k8s', 'cronjob', '--policy', 'seven', '-f', f, '--pvc', 'a'], { timeoutMs: 60_000 });
  assert.equal(seven.code, 2, seven.stderr);
  assert.equal(seven.stderr, 'meshback: schedule "every 7m" cannot be a CronJob schedule (7 minutes do not divide an hour): use a duration that divides an hour or a day evenly (every 5m, 15m, 1h, 6h, 24h) or a cron expression (e.g. "0 2 * * *")\n');
  const nopvc = await mb(['k8s', 'cronjob', '--policy', 'seven', '-f', f], { timeoutMs: 60_000 });
  assert.equal(nopvc.code, 2, nopvc.stderr);
  assert.match(nopvc.stderr, /^meshback: with -f .* there is no cluster to find the PVCs in: name them with --pvc NAME \(repeatable\)\n$/);
  const unknown = await mb(['k8s', 'cronjob', '--policy', 'nope', '-n', APP, '--kubeconfig', k8s.kubeconfig], { timeoutMs: 60_000 });
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /^meshback: BackupPolicy nope does not exist in namespace shop .*\n$/);
  const noRender = await mb(['k8s', 'install'], { timeoutMs: 60_000 });
  assert.equal(noRender.code, 2);
  assert.match(noRender.stderr, /k8s install only renders/);
});
