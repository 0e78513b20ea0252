/**
 * meshback on Kubernetes, end to end, against the real kube-apiserver of the lab's test
 * environment (etcd, kube-apiserver with RBAC, controller manager, scheduler, kwok nodes) with the
 * stand-in kubelet and CSI driver of lab/testenv/k8s-standin.ts: real loop-mounted btrfs volumes,
 * real btrfs snapshots for VolumeSnapshots, bind mounts where the kubelet would mount a pod's
 * volume. `meshback k8s controller` and two `meshback k8s agent`s (one per kwok node) run as local
 * processes with the service-account credentials the chart grants, so a missing RBAC rule fails
 * here.
 *
 * A testbed-shaped namespace (three PVCs, pods with Istio and Linkerd sidecars, on two nodes):
 *   - a BackupPolicy produces VolumeBackups of the three PVCs on its schedule; the agents of both
 *     nodes complete them; each snapshot is verified (read back and compared with the
 *     VolumeSnapshot); nothing the controller made is left;
 *   - a VolumeRestore into a new PVC restores identical data, RTO reported;
 *   - an agent SIGKILLed mid-backup: its successor resumes the backup (attempt 2); with
 *     --max-attempts 1 it fails it explicitly (AgentRestarted); with no successor the controller
 *     fails it (AgentLost); no object is orphaned;
 *   - a VolumeSnapshot that never becomes ready ends in SnapshotTimeout, and is deleted;
 *   - two controllers: one leads through the Lease; the other takes over when it dies.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CoordinationV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { startK8s, type K8sEnv } from '../../lab/testenv/index.ts';
import { startStandin, type Standin } from '../../lab/testenv/k8s-standin.ts';
import { compareTrees } from '../../lab/gen/compare.ts';
import { btrfsSupport } from '../../src/volumes/index.ts';
import type { VolumeBackup, VolumeRestore } from '../../src/k8s/api.ts';
import { installMeshback } from '../helpers/k8s-install.ts';
import { BIN, mb, rmrf, tmpdir, waitGone } from '../helpers/cli.ts';
import { until } from '../helpers/until.ts';

const NS = 'shop';
const PASSWORD = 'k8s-test-password';
const G = { group: 'meshback.io', version: 'v1alpha1' };
const ENV = { MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_CACHE_DIR: path.join(os.tmpdir(), 'meshback-test-cache') };

const probe = tmpdir('k8s-backup-probe');
const support = process.getuid?.() === 0 ? await btrfsSupport(path.join(probe, 'p'), false) : 'needs root (loop-mounted btrfs and bind mounts)';
await rmrf(probe);
const skip = support === true ? false : support;
if (skip !== false) console.error(`k8s-backup.test.ts: skipped: ${skip}`);

let k8s: K8sEnv;
let kc: KubeConfig;
let core: CoreV1Api;
let co: CustomObjectsApi;
let standin: Standin;
let work: string;
let repo: string;
let creds: { controllerKubeconfig: string; agentKubeconfig: string; namespace: string };
const procs = new Set<Proc>();

interface Proc {
  p: ChildProcess;
  out: string[];
  stop(sig?: NodeJS.Signals): Promise<void>;
}

/** A memory cgroup (v1 here: memory.limit_in_bytes) with this limit, as a DaemonSet's limit would be. */
async function memoryCgroup(name: string, bytes: number): Promise<string | undefined> {
  const dir = `/sys/fs/cgroup/memory/${name}-${process.pid}`;
  try {
    await fsp.mkdir(dir);
    await fsp.writeFile(path.join(dir, 'memory.limit_in_bytes'), String(bytes));
    return dir;
  } catch {
    return undefined;
  }
}

function start(name: string, args: string[], cgroup?: string): Proc {
  const log = createWriteStream(path.join(work, `${name}.log`), { flags: 'a' });
  // in a cgroup: the shell puts itself in it, then becomes meshback
  const [cmd, argv] = cgroup === undefined ? [BIN, args] : ['sh', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec "$@"`, 'sh', BIN, ...args]];
  const p = spawn(cmd, argv, { env: { ...process.env, ...ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  p.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out.push(...d.split('\n').filter((l) => l !== ''));
    log.write(d);
  });
  p.stderr!.setEncoding('utf8').on('data', (d: string) => log.write(d));
  const proc: Proc = {
    p,
    out,
    async stop(sig = 'SIGTERM') {
      procs.delete(proc);
      if (p.exitCode === null && p.signalCode === null) {
        p.kill(sig);
        if (!(await waitGone(p.pid!, 25_000))) p.kill('SIGKILL');
      }
      log.end();
    },
  };
  procs.add(proc);
  return proc;
}

const controller = (name: string, extra: string[] = []): Proc =>
  start(name, ['k8s', 'controller', '--kubeconfig', creds.controllerKubeconfig, '--namespace', creds.namespace, '--identity', name, '--poll', '300ms', '--lease-duration', '4s', '--helper-image', 'meshback:test', ...extra]);
const agent = (node: string, extra: string[] = [], cgroup?: string): Proc =>
  start(`agent-${node}`, ['k8s', 'agent', '--kubeconfig', creds.agentKubeconfig, '--node', node, '--kubelet-root', standin.kubeletRoot(node), '--poll', '300ms', '--heartbeat', '1s', '--grace', '1s', ...extra], cgroup);


const list = async <T>(plural: string, labelSelector?: string): Promise<T[]> => ((await co.listNamespacedCustomObject({ ...G, plural, namespace: NS, ...(labelSelector !== undefined ? { labelSelector } : {}) })) as { items: T[] }).items;
const getVb = async (name: string): Promise<VolumeBackup> => (await co.getNamespacedCustomObject({ ...G, plural: 'volumebackups', namespace: NS, name })) as VolumeBackup;
const getVr = async (name: string): Promise<VolumeRestore> => (await co.getNamespacedCustomObject({ ...G, plural: 'volumerestores', namespace: NS, name })) as VolumeRestore;

/** What the controller makes for a run and must delete: VolumeSnapshots, PVCs and pods labelled managed-by=meshback. */
async function leftovers(): Promise<string[]> {
  const sel = 'app.kubernetes.io/managed-by=meshback';
  const snaps = ((await co.listNamespacedCustomObject({ group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshots', namespace: NS, labelSelector: sel })) as { items: { metadata: { name: string } }[] }).items;
  const pvcs = (await core.listNamespacedPersistentVolumeClaim({ namespace: NS, labelSelector: sel })).items;
  const pods = (await core.listNamespacedPod({ namespace: NS, labelSelector: sel })).items;
  return [...snaps.map((s) => `VolumeSnapshot/${s.metadata.name}`), ...pvcs.map((p) => `PVC/${p.metadata?.name}`), ...pods.map((p) => `Pod/${p.metadata?.name}`)];
}

async function pvc(name: string, size = '1Gi', labels: Record<string, string> = {}): Promise<string> {
  await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: { metadata: { name, labels }, spec: { accessModes: ['ReadWriteOnce'], storageClassName: standin.storageClass, resources: { requests: { storage: size } } } } });
  return until(`PVC ${name} bound`, 30_000, async () => {
    const c = await core.readNamespacedPersistentVolumeClaim({ name, namespace: NS });
    return c.status?.phase === 'Bound' ? c.spec?.volumeName : undefined;
  });
}

function appPod(name: string, node: string, claim: string, mesh: 'istio' | 'istio-native' | 'linkerd', labels: Record<string, string>): V1Pod {
  const app = { name: 'app', image: 'app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }] };
  const spec =
    mesh === 'istio'
      ? { initContainers: [{ name: 'istio-init', image: 'proxyv2' }], containers: [{ name: 'istio-proxy', image: 'proxyv2' }, app] }
      : mesh === 'istio-native'
        ? { initContainers: [{ name: 'istio-proxy', image: 'proxyv2', restartPolicy: 'Always' }], containers: [app] }
        : { initContainers: [{ name: 'linkerd-init', image: 'proxy-init' }], containers: [{ name: 'linkerd-proxy', image: 'proxy' }, app] };
  const annotations: Record<string, string> = mesh === 'linkerd' ? { 'linkerd.io/proxy-version': 'stable-2.14' } : { 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' };
  return { metadata: { name, labels, annotations }, spec: { nodeName: node, ...spec, volumes: [{ name: 'data', persistentVolumeClaim: { claimName: claim } }] } };
}

async function running(name: string): Promise<void> {
  await until(`pod ${name} running`, 30_000, async () => ((await core.readNamespacedPod({ name, namespace: NS })).status?.phase === 'Running' ? true : undefined));
}

async function writeTree(dir: string, seed: string, files: number): Promise<void> {
  for (let i = 0; i < files; i++) {
    await fsp.mkdir(path.join(dir, `d${i % 4}`), { recursive: true });
    await fsp.writeFile(path.join(dir, `d${i % 4}`, `f${i}.dat`), Buffer.from(`${seed}:${i}:`.repeat(200 + i * 37)));
  }
  await fsp.symlink('d0/f0.dat', path.join(dir, 'link')).catch(() => undefined);
}

const pvs: Record<string, string> = {};

before(async () => {
  if (skip !== false) return;
  work = tmpdir('k8s-backup');
  k8s = await startK8s(process.env['KEEP_K8S_WORK'] !== undefined ? { dir: path.join(work, 'k8s') } : {});
  kc = k8s.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  co = kc.makeApiClient(CustomObjectsApi);
  standin = await startStandin({ kc, root: path.join(work, 'standin'), nodes: k8s.nodes });
  creds = await installMeshback(k8s, { namespace: 'meshback' });
  repo = path.join(work, 'repo');
  const init = await mb(['init', '--repo', repo, '--json'], { env: { MESHBACK_PASSWORD: PASSWORD } });
  assert.equal(init.code, 0, init.stderr);
  await core.createNamespace({ body: { metadata: { name: NS, labels: { 'istio-injection': 'enabled' } } } });
  await core.createNamespacedSecret({ namespace: NS, body: { metadata: { name: 'backup-repo' }, stringData: { repository: repo, password: PASSWORD } } });
  // the testbed's shape: orders (PostgreSQL, Istio classic) and envoy logs (Istio native) on node 0, sessions (Redis, Linkerd) on node 1
  pvs['orders-data'] = await pvc('orders-data', '1Gi', { tier: 'db' });
  pvs['sessions-data'] = await pvc('sessions-data', '1Gi', { tier: 'cache' });
  pvs['envoy-logs'] = await pvc('envoy-logs', '1Gi', { tier: 'mesh' });
  await core.createNamespacedPod({ namespace: NS, body: appPod('orders-0', k8s.nodes[0]!, 'orders-data', 'istio', { app: 'orders', backup: 'yes' }) });
  await core.createNamespacedPod({ namespace: NS, body: appPod('sessions-0', k8s.nodes[1]!, 'sessions-data', 'linkerd', { app: 'sessions', backup: 'yes' }) });
  await core.createNamespacedPod({ namespace: NS, body: appPod('gateway-0', k8s.nodes[0]!, 'envoy-logs', 'istio-native', { app: 'gateway', backup: 'yes' }) });
  for (const p of ['orders-0', 'sessions-0', 'gateway-0']) await running(p);
  await writeTree(standin.volumePath(pvs['orders-data']), 'orders', 40);
  await writeTree(standin.volumePath(pvs['sessions-data']), 'sessions', 25);
  await writeTree(standin.volumePath(pvs['envoy-logs']), 'envoy', 10);
});

after(async () => {
  for (const p of [...procs]) await p.stop('SIGKILL');
  if (standin !== undefined) await standin.stop();
  if (k8s !== undefined) await k8s.stop();
  // KEEP_K8S_WORK=1 keeps the processes' logs (WORK/*.log) for a look after a failure
  if (work !== undefined && process.env['KEEP_K8S_WORK'] === undefined) await rmrf(work);
  else if (work !== undefined) console.error(`# kept ${work}`);
});

test('a BackupPolicy backs up three PVCs on two nodes on schedule from VolumeSnapshots, each snapshot verified, nothing left behind (kubelet and CSI driver: stand-in)', { skip, timeout: 240_000 }, async () => {
  controller('controller-a');
  agent(k8s.nodes[0]!);
  agent(k8s.nodes[1]!);
  await co.createNamespacedCustomObject({
    ...G,
    plural: 'backuppolicies',
    namespace: NS,
    body: { apiVersion: 'meshback.io/v1alpha1', kind: 'BackupPolicy', metadata: { name: 'mesh-volumes' }, spec: { selector: { matchLabels: { backup: 'yes' } }, schedule: 'every 30s', strategy: 'snapshot', rpo: '1h', retention: { keepLast: 1 }, drill: { every: '10m' }, repository: { secretRef: { name: 'backup-repo' } } } },
  });
  // the first run: one VolumeBackup per PVC, completed on the node of its helper pod
  const first = await until('three completed VolumeBackups', 90_000, async () => {
    const vbs = await list<VolumeBackup>('volumebackups', 'meshback.io/policy=mesh-volumes');
    const failed = vbs.find((b) => b.status?.phase === 'Failed');
    if (failed !== undefined) assert.fail(`${failed.metadata.name} failed: ${failed.status?.reason}: ${failed.status?.message}`);
    return vbs.length === 3 && vbs.every((b) => b.status?.phase === 'Completed') ? vbs : undefined;
  });
  assert.deepEqual(first.map((b) => b.spec.pvc).sort(), ['envoy-logs', 'orders-data', 'sessions-data']);
  const nodes = new Set(first.map((b) => b.status!.source!.node));
  for (const b of first) {
    assert.match(b.status!.snapshotId!, /^[0-9a-f]{64}$/);
    assert.equal(b.status!.verification?.verified, true, JSON.stringify(b.status));
    assert.match(b.status!.verification!.method, /compared with the VolumeSnapshot/);
    assert.ok((b.status!.files ?? 0) > 0);
    assert.ok(b.status!.volumeSnapshot !== undefined);
  }
  // beside the volume: the mesh and workload export; Envoy's admin state is tried for the Istio pods (kwok has no kubelet to port-forward to: a warning, not a failure)
  const orders = first.find((b) => b.spec.pvc === 'orders-data')!;
  assert.deepEqual(orders.status!.appPods, ['orders-0']);
  assert.ok((orders.status!.exported ?? []).includes('/k8s/manifest.json'), JSON.stringify(orders.status!.exported));
  assert.match(orders.status!.message!, /Envoy admin state of pod shop\/orders-0 not captured .*the backup goes on without it/);
  assert.doesNotMatch(orders.status!.message!, /403|forbidden/i, 'the agent may port-forward (RBAC); only the missing kubelet stops it');
  // the repository holds them, tagged
  const snaps = await mb(['snapshots', '--repo', repo, '--json', '--tag', 'policy=mesh-volumes'], { env: { MESHBACK_PASSWORD: PASSWORD } });
  assert.equal(snaps.code, 0, snaps.stderr);
  for (const b of first) assert.ok(snaps.stdout.includes(b.status!.snapshotId!), `snapshot ${b.status!.snapshotId} of ${b.spec.pvc} is in the repository`);
  // restore drills: each PVC's newest backup restored into a scratch PVC, verified, the scratch PVC deleted
  const drills = await until('three completed restore drills', 60_000, async () => {
    const vrs = await list<VolumeRestore>('volumerestores', 'meshback.io/drill=true');
    const bad = vrs.find((r) => r.status?.phase === 'Failed');
    if (bad !== undefined) assert.fail(`drill ${bad.metadata.name} failed: ${bad.status?.message}`);
    return vrs.length === 3 && vrs.every((r) => r.status?.phase === 'Completed') ? vrs : undefined;
  });
  for (const r of drills) {
    assert.equal(r.status!.verification?.verified, true);
    assert.ok(first.some((b) => b.status!.snapshotId === r.status!.snapshotId), 'a drill restores the newest backup');
  }
  await until('no VolumeSnapshot, snapshot PVC, scratch PVC or helper pod left', 30_000, async () => ((await leftovers()).length === 0 ? true : undefined));
  type Drilled = { status?: { drills?: { phase: string; rtoSeconds?: number }[]; conditions?: { type: string; status: string }[] } };
  await until('the policy reports its drills', 20_000, async () => {
    const x = (await co.getNamespacedCustomObject({ ...G, plural: 'backuppolicies', namespace: NS, name: 'mesh-volumes' })) as Drilled;
    return x.status?.drills?.length === 3 && x.status.drills.every((d) => d.phase === 'Completed') && x.status.conditions?.find((c) => c.type === 'DrillsPassing')?.status === 'True' ? true : undefined;
  });
  console.log(`# drills: RTO ${drills.map((r) => r.status!.rtoSeconds).join(', ')} s`);
  // on schedule: a second round about 30 s after the first
  const second = await until('a second round of three', 80_000, async () => {
    const vbs = (await list<VolumeBackup>('volumebackups', 'meshback.io/policy=mesh-volumes')).filter((b) => !first.some((f) => f.metadata.name === b.metadata.name));
    return vbs.length === 3 && vbs.every((b) => b.status?.phase === 'Completed') ? vbs : undefined;
  });
  const gap = (Date.parse(second[0]!.spec.scheduledTime!) - Date.parse(first[0]!.spec.scheduledTime!)) / 1000;
  assert.ok(gap >= 29 && gap < 45, `the second run came ${gap} s after the first (schedule: every 30s)`);
  // the RPO of a run: the time between the starts of its snapshot and the previous one (about the schedule's 30 s; the snapshot phases add jitter)
  for (const b of second) assert.ok((b.status!.rpoSeconds ?? 0) >= 15 && b.status!.rpoSeconds! <= 60, `RPO of ${b.spec.pvc}: ${b.status!.rpoSeconds}`);
  // retention keepLast 1: each second backup forgot its PVC's first snapshot
  for (const b of second) assert.match(b.status!.message!, /retention forgot 1 older snapshot\(s\) of the PVC, kept 1/);
  // the policy reports its volumes within the RPO target
  const pol = (await co.getNamespacedCustomObject({ ...G, plural: 'backuppolicies', namespace: NS, name: 'mesh-volumes' })) as { status?: { volumes?: { pvc: string; rpoExceeded?: boolean }[]; conditions?: { type: string; status: string }[] } };
  assert.equal(pol.status?.volumes?.length, 3);
  assert.ok(pol.status!.volumes!.every((v) => v.rpoExceeded === false));
  assert.equal(pol.status?.conditions?.find((c) => c.type === 'RPOMet')?.status, 'True');
  await co.patchNamespacedCustomObject({ ...G, plural: 'backuppolicies', namespace: NS, name: 'mesh-volumes', body: [{ op: 'add', path: '/spec/suspend', value: true }] });
  console.log(`# nodes used: ${[...nodes].join(', ')}`);
  assert.equal(nodes.size, 2, 'both nodes did work');
  // discover: the three PVCs, their meshes, the policy that covers them and the newest backup against the RPO
  const d = await mb(['k8s', 'discover', '-n', NS, '--json', '--kubeconfig', k8s.kubeconfig], { timeoutMs: 60_000 });
  assert.equal(d.code, 0, d.stderr);
  const pvcsOut = (JSON.parse(d.stdout) as { pvcs: { name: string; policy: string | null; pods: { mesh: string; node: string }[]; newestBackup: { rpoSeconds: number; rpoExceeded: boolean; snapshotId: string } | null }[] }).pvcs;
  const row = (n: string) => pvcsOut.find((x) => x.name === n)!;
  assert.deepEqual(['orders-data', 'sessions-data', 'envoy-logs'].map((n) => [row(n).policy, row(n).pods.map((x) => x.mesh).join(',')]), [['mesh-volumes', 'istio'], ['mesh-volumes', 'linkerd'], ['mesh-volumes', 'istio-native']]);
  for (const n of ['orders-data', 'sessions-data', 'envoy-logs']) {
    assert.equal(row(n).newestBackup?.rpoSeconds, 3600);
    assert.equal(row(n).newestBackup?.rpoExceeded, false);
    assert.ok(second.some((b) => b.status!.snapshotId === row(n).newestBackup!.snapshotId), `the newest backup of ${n} is of the second round`);
  }
});

test('a VolumeRestore into a new PVC restores identical data and reports its RTO (kubelet and CSI driver: stand-in)', { skip, timeout: 120_000 }, async () => {
  const done = (await list<VolumeBackup>('volumebackups', 'meshback.io/policy=mesh-volumes')).filter((b) => b.spec.pvc === 'orders-data' && b.status?.phase === 'Completed').sort((a, b) => a.status!.completionTime!.localeCompare(b.status!.completionTime!));
  const snap = done.at(-1)!.status!.snapshotId!;
  await co.createNamespacedCustomObject({
    ...G,
    plural: 'volumerestores',
    namespace: NS,
    body: { apiVersion: 'meshback.io/v1alpha1', kind: 'VolumeRestore', metadata: { name: 'orders-copy' }, spec: { snapshot: snap.slice(0, 12), policy: 'mesh-volumes', targetPvc: 'orders-restored', create: { storageClassName: standin.storageClass, size: '1Gi' } } },
  });
  const vr = await until('the restore to complete', 60_000, async () => {
    const r = await getVr('orders-copy');
    if (r.status?.phase === 'Failed') assert.fail(`${r.status.reason}: ${r.status.message}`);
    return r.status?.phase === 'Completed' ? r : undefined;
  });
  assert.equal(vr.status!.snapshotId, snap);
  assert.equal(vr.status!.verification?.verified, true);
  assert.ok(vr.status!.rtoSeconds! > 0 && vr.status!.rtoSeconds! < 60, `RTO ${vr.status!.rtoSeconds}`);
  const pv = (await core.readNamespacedPersistentVolumeClaim({ name: 'orders-restored', namespace: NS })).spec!.volumeName!;
  const diffs = await compareTrees(standin.volumePath(pvs['orders-data']!), standin.volumePath(pv), { owner: true, mtime: true });
  assert.deepEqual(diffs, []);
  await until('the restore helper pod is gone', 20_000, async () => ((await leftovers()).length === 0 ? true : undefined));
  console.log(`# restore: ${vr.status!.files} files, ${vr.status!.bytes} bytes, RTO ${vr.status!.rtoSeconds} s`);
});

test('meshback k8s restore --scale-down: a Deployment scaled to zero, its PVC restored from a snapshot and verified, scaled back; RTO reported (kubelet and CSI driver: stand-in)', { skip, timeout: 150_000 }, async () => {
  const { AppsV1Api } = await import('@kubernetes/client-node');
  const apps = kc.makeApiClient(AppsV1Api);
  const webPv = await pvc('web-data');
  await apps.createNamespacedDeployment({
    namespace: NS,
    body: { metadata: { name: 'web' }, spec: { replicas: 1, selector: { matchLabels: { app: 'web' } }, template: {
          // as Istio's webhook left it (the Velero case: a backup of an injected workload)
          metadata: { labels: { app: 'web', 'security.istio.io/tlsMode': 'istio' }, annotations: { 'sidecar.istio.io/status': '{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy","istio-data"]}' } },
          spec: {
            initContainers: [{ name: 'istio-init', image: 'docker.io/istio/proxyv2:1.22.0', args: ['istio-iptables'] }],
            containers: [
              { name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.22.0', args: ['proxy', 'sidecar'], volumeMounts: [{ name: 'istio-envoy', mountPath: '/etc/istio/proxy' }, { name: 'istio-data', mountPath: '/var/lib/istio/data' }] },
              { name: 'nginx', image: 'nginx:1', volumeMounts: [{ name: 'data', mountPath: '/usr/share/nginx/html' }] },
            ],
            volumes: [{ name: 'istio-envoy', emptyDir: { medium: 'Memory' } }, { name: 'istio-data', emptyDir: {} }, { name: 'data', persistentVolumeClaim: { claimName: 'web-data' } }],
          },
        },
      },
    },
  });
  await until('the web pod running', 60_000, async () => ((await core.listNamespacedPod({ namespace: NS, labelSelector: 'app=web' })).items.some((p) => p.status?.phase === 'Running') ? true : undefined));
  const vol = standin.volumePath(webPv);
  await writeTree(vol, 'web', 30);
  const orig = path.join(work, 'web-orig');
  execFileSync('cp', ['-a', vol, orig]);
  await manualBackup('web-1', 'web-data', 'live', 'mesh-volumes');
  const b = await until('web-1 completed', 60_000, async () => {
    const x = await getVb('web-1');
    if (x.status?.phase === 'Failed') assert.fail(`${x.status.reason}: ${x.status.message}`);
    return x.status?.phase === 'Completed' ? x : undefined;
  });
  // the data goes bad: a file deleted, one overwritten
  await fsp.rm(path.join(vol, 'd1', 'f1.dat'));
  await fsp.writeFile(path.join(vol, 'd2', 'f2.dat'), 'garbage');
  assert.ok((b.status!.exported ?? []).some((p) => p.startsWith('/k8s/workloads/') && p.includes('Deployment/web')), `the Deployment is exported beside the volume: ${JSON.stringify(b.status!.exported)}`);
  const r = await mb(['k8s', 'restore', b.status!.snapshotId!.slice(0, 10), '--to-pvc', 'web-data', '--policy', 'mesh-volumes', '--scale-down', '--with-workloads', '-n', NS, '--kubeconfig', k8s.kubeconfig, '--json', '--timeout', '2m'], { timeoutMs: 150_000 });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const sum = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { snapshotId: string; rtoSeconds: number; verification: { verified: boolean }; scaledDown: { kind: string; name: string; replicas: number }; workloads: { kind: string; name: string; action: string; removed: string[] }[] };
  // --with-workloads: the Deployment from the snapshot, without what Istio's webhook injected (it injects once, again)
  const dep = sum.workloads.find((w) => w.kind === 'Deployment' && w.name === 'web');
  assert.equal(dep?.action, 'replaced');
  assert.ok(dep!.removed.some((x) => /istio-proxy/.test(x)), JSON.stringify(dep));
  const tpl = (await apps.readNamespacedDeployment({ name: 'web', namespace: NS })).spec!.template;
  assert.deepEqual(tpl.spec!.containers.map((c) => c.name), ['nginx']);
  assert.deepEqual(tpl.spec!.initContainers ?? [], []);
  assert.deepEqual((tpl.spec!.volumes ?? []).map((x) => x.name), ['data']);
  assert.equal(tpl.metadata?.annotations?.['sidecar.istio.io/status'], undefined);
  assert.equal(sum.snapshotId, b.status!.snapshotId);
  assert.equal(sum.verification.verified, true);
  assert.deepEqual(sum.scaledDown, { kind: 'Deployment', name: 'web', replicas: 1 });
  assert.ok(sum.rtoSeconds > 0);
  assert.deepEqual(await compareTrees(orig, vol, { owner: true, mtime: true }), []);
  await until('web scaled back to 1', 30_000, async () => ((await apps.readNamespacedDeployment({ name: 'web', namespace: NS })).spec?.replicas === 1 ? true : undefined));
  // a failed restore is exit 20 with its reason: a snapshot that does not exist
  const bad = await mb(['k8s', 'restore', 'ffffffffff', '--to-pvc', 'web-data', '--policy', 'mesh-volumes', '-n', NS, '--kubeconfig', k8s.kubeconfig, '--timeout', '2m'], { timeoutMs: 150_000 });
  assert.equal(bad.code, 20, bad.stderr);
  assert.match(bad.stderr, /^meshback: VolumeRestore shop\/restore-web-data-\w+ failed \(RestoreFailed\): .*ffffffffff/m);
  console.log(`# k8s restore --scale-down: RTO ${sum.rtoSeconds} s`);
});

/** A VolumeBackup made by hand (a policy's suspended: only what the test creates runs). */
async function manualBackup(name: string, claim: string, strategy: 'snapshot' | 'live', policy = 'manual'): Promise<void> {
  // a new mtime: the backup reads the big file again instead of taking it from its parent snapshot (seconds, not milliseconds)
  if (bigFile !== '' && claim === 'bulk-data') await fsp.utimes(bigFile, new Date(), new Date());
  await co.createNamespacedCustomObject({ ...G, plural: 'volumebackups', namespace: NS, body: { apiVersion: 'meshback.io/v1alpha1', kind: 'VolumeBackup', metadata: { name, labels: { 'meshback.io/policy': policy } }, spec: { policy, pvc: claim, strategy } } });
}

let bigFile = '';

async function killWhenRunning(name: string, victim: Proc): Promise<VolumeBackup> {
  const vb = await until(`${name} Running`, 60_000, async () => {
    const b = await getVb(name);
    if (b.status?.phase === 'Completed' || b.status?.phase === 'Failed') assert.fail(`${name} ended (${b.status.phase}) before the agent could be killed: make the volume bigger`);
    return b.status?.phase === 'Running' ? b : undefined;
  });
  await victim.stop('SIGKILL');
  return vb;
}

test('an agent SIGKILLed mid-backup: the next agent resumes it, or fails it explicitly; with no agent the controller fails it; nothing orphaned (kubelet and CSI driver: stand-in)', { skip, timeout: 240_000 }, async () => {
  const node = k8s.nodes[1]!;
  for (const p of [...procs]) if (p.p.spawnargs.includes(node)) await p.stop();
  await co.createNamespacedCustomObject({ ...G, plural: 'backuppolicies', namespace: NS, body: { apiVersion: 'meshback.io/v1alpha1', kind: 'BackupPolicy', metadata: { name: 'manual' }, spec: { schedule: 'every 24h', suspend: true, strategy: 'live', repository: { secretRef: { name: 'backup-repo' } } } } });
  // a volume big enough that a backup takes seconds: 768 MiB that does not compress
  const bulkPv = await pvc('bulk-data', '2Gi');
  await core.createNamespacedPod({ namespace: NS, body: appPod('bulk-0', node, 'bulk-data', 'linkerd', { app: 'bulk' }) });
  await running('bulk-0');
  bigFile = path.join(standin.volumePath(bulkPv), 'big.bin');
  const big = await fsp.open(bigFile, 'w');
  const block = Buffer.alloc(8 << 20);
  for (let i = 0; i < 96; i++) {
    for (let j = 0; j < block.length; j += 4) block.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, j);
    await big.write(block);
  }
  await big.close();

  // 1. killed, then a new agent on the node: the backup runs again (attempt 2) and completes
  let a = agent(node);
  await manualBackup('bulk-resume', 'bulk-data', 'live');
  const killed = await killWhenRunning('bulk-resume', a);
  assert.equal(killed.status!.attempt, 1);
  // the agent that resumes runs inside 512 MiB, the DaemonSet's limit (velero#8138, velero#6955: node agents OOM-killed)
  const cg = await memoryCgroup('meshback-agent', 512 * 1024 * 1024);
  a = agent(node, [], cg);
  const resumed = await until('bulk-resume completed by the next agent', 90_000, async () => {
    const b = await getVb('bulk-resume');
    if (b.status?.phase === 'Failed') assert.fail(`${b.status.reason}: ${b.status.message}`);
    return b.status?.phase === 'Completed' ? b : undefined;
  });
  assert.equal(resumed.status!.attempt, 2);
  assert.notEqual(resumed.status!.agent, killed.status!.agent);
  assert.equal(resumed.status!.verification?.verified, true);
  if (cg !== undefined) {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(await fsp.readFile(`/proc/${a.p.pid}/status`, 'utf8'))?.[1];
    const oom = /oom_kill (\d+)/.exec(await fsp.readFile(path.join(cg, 'memory.oom_control'), 'utf8'))?.[1] ?? '0';
    const maxUsage = Number(await fsp.readFile(path.join(cg, 'memory.max_usage_in_bytes'), 'utf8'));
    console.log(`# agent in a 512 MiB cgroup: backed up ${(resumed.status!.bytes! / 2 ** 20).toFixed(0)} MiB, peak RSS ${(Number(hwm) / 1024).toFixed(0)} MiB, cgroup peak (with page cache) ${(maxUsage / 2 ** 20).toFixed(0)} MiB, OOM kills ${oom}`);
    assert.equal(oom, '0', 'no OOM kill inside 512 MiB');
    assert.ok(Number(hwm) * 1024 < 512 * 2 ** 20, `peak RSS ${hwm} kB under 512 MiB`);
  } else console.log('# no memory cgroup here: the 512 MiB check did not run');

  // 2. killed again, and the next agent allows one attempt only: Failed, AgentRestarted, with what to do
  await a.stop();
  if (cg !== undefined) await fsp.rmdir(cg).catch(() => undefined);
  a = agent(node);
  await manualBackup('bulk-once', 'bulk-data', 'live');
  await killWhenRunning('bulk-once', a);
  a = agent(node, ['--max-attempts', '1']);
  const failed = await until('bulk-once failed', 30_000, async () => {
    const b = await getVb('bulk-once');
    return b.status?.phase === 'Failed' ? b : b.status?.phase === 'Completed' ? assert.fail('it completed') : undefined;
  });
  assert.equal(failed.status!.reason, 'AgentRestarted');
  assert.match(failed.status!.message!, /restarted during this backup 1 time\(s\).*create a new VolumeBackup/);

  // 3. killed and no agent comes back: the controller fails it when the heartbeat stops (AgentLost)
  await a.stop();
  for (const p of [...procs]) if (p.p.spawnargs.includes('controller')) await p.stop();
  controller('controller-b', ['--heartbeat-timeout', '4s']);
  a = agent(node);
  await manualBackup('bulk-lost', 'bulk-data', 'live');
  await killWhenRunning('bulk-lost', a);
  const lost = await until('bulk-lost failed by the controller', 30_000, async () => {
    const b = await getVb('bulk-lost');
    return b.status?.phase === 'Failed' ? b : undefined;
  });
  assert.equal(lost.status!.reason, 'AgentLost');
  assert.match(lost.status!.message!, /stopped reporting/);
  // a snapshot-strategy backup whose agent dies: its VolumeSnapshot, PVC and helper pod are deleted when it fails
  a = agent(node);
  await manualBackup('bulk-snap-lost', 'bulk-data', 'snapshot');
  await killWhenRunning('bulk-snap-lost', a);
  await until('bulk-snap-lost failed', 30_000, async () => ((await getVb('bulk-snap-lost')).status?.phase === 'Failed' ? true : undefined));
  await until('nothing orphaned', 30_000, async () => ((await leftovers()).length === 0 ? true : undefined));
  agent(node);
});

test('a VolumeSnapshot that never becomes ready ends in SnapshotTimeout, with what to do, and is deleted (CSI driver: stand-in)', { skip, timeout: 90_000 }, async () => {
  await co.createNamespacedCustomObject({
    ...G,
    plural: 'backuppolicies',
    namespace: NS,
    body: { apiVersion: 'meshback.io/v1alpha1', kind: 'BackupPolicy', metadata: { name: 'stuck' }, spec: { schedule: 'every 24h', suspend: true, strategy: 'snapshot', snapshot: { className: standin.stuckSnapshotClass, readyTimeout: '5s' }, repository: { secretRef: { name: 'backup-repo' } } } },
  });
  await manualBackup('stuck-1', 'envoy-logs', 'snapshot', 'stuck');
  const b = await until('stuck-1 failed', 40_000, async () => {
    const x = await getVb('stuck-1');
    return x.status?.phase === 'Failed' ? x : undefined;
  });
  assert.equal(b.status!.reason, 'SnapshotTimeout');
  assert.match(b.status!.message!, /was not ready to use after 5 s: check the CSI driver's snapshotter/);
  await until('the stuck VolumeSnapshot deleted', 20_000, async () => ((await leftovers()).length === 0 ? true : undefined));
});

test('hooks address containers by name: a native sidecar is refused before any snapshot; an exec the node cannot do fails the backup loudly (kwok has no kubelet to exec in)', { skip, timeout: 90_000 }, async () => {
  const policy = (name: string, strategy: string, container: string) =>
    co.createNamespacedCustomObject({ ...G, plural: 'backuppolicies', namespace: NS, body: { apiVersion: 'meshback.io/v1alpha1', kind: 'BackupPolicy', metadata: { name }, spec: { schedule: 'every 24h', suspend: true, strategy, hooks: { pre: [{ container, command: ['sh', '-c', 'sync'] }], post: [{ container, command: ['true'] }] }, repository: { secretRef: { name: 'backup-repo' } } } } });
  // the gateway's proxy is a native sidecar (an init container with restartPolicy Always): refused, by name, before the VolumeSnapshot
  await policy('hook-sidecar', 'snapshot', 'istio-proxy');
  await manualBackup('hook-sidecar-1', 'envoy-logs', 'snapshot', 'hook-sidecar');
  const a = await until('hook-sidecar-1 failed', 30_000, async () => ((await getVb('hook-sidecar-1')).status?.phase === 'Failed' ? getVb('hook-sidecar-1') : undefined));
  assert.equal(a.status!.reason, 'HookFailed');
  assert.match(a.status!.message!, /container istio-proxy of pod gateway-0 is the istio-native proxy \(a native sidecar: an init container with restartPolicy Always\): hooks run in the application container: name it instead \(its application container is app\); no VolumeSnapshot was taken$/);
  assert.equal(a.status!.volumeSnapshot, undefined);
  // the application container, live: the agent execs through the API server; kwok nodes have no kubelet, so the exec fails, and so does the backup, saying why
  await policy('hook-app', 'live', 'app');
  await manualBackup('hook-app-1', 'orders-data', 'live', 'hook-app');
  const b = await until('hook-app-1 failed', 60_000, async () => ((await getVb('hook-app-1')).status?.phase === 'Failed' ? getVb('hook-app-1') : undefined));
  assert.equal(b.status!.reason, 'HookFailed');
  // the API server let the agent exec (RBAC) and failed reaching the node's kubelet, which kwok does not run
  assert.match(b.status!.message!, /^pre hook 1 \(sh -c sync\) in shop\/orders-0 container app: .*(10250|kubelet|500).*; nothing was backed up$/);
  console.log(`# hook on a kwok node: ${b.status!.message}`);
  assert.deepEqual(await leftovers(), []);
});

test('two controllers: one leads through the Lease, the other takes over when it is killed', { skip, timeout: 90_000 }, async () => {
  for (const p of [...procs]) if (p.p.spawnargs.includes('controller')) await p.stop();
  const coord = kc.makeApiClient(CoordinationV1Api);
  const one = controller('controller-one');
  await until('controller-one leads', 20_000, async () => ((await coord.readNamespacedLease({ name: 'meshback-controller', namespace: creds.namespace })).spec?.holderIdentity === 'controller-one' ? true : undefined));
  const two = controller('controller-two');
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal((await coord.readNamespacedLease({ name: 'meshback-controller', namespace: creds.namespace })).spec?.holderIdentity, 'controller-one', 'the second controller waits');
  await one.stop('SIGKILL');
  await until('controller-two takes over', 20_000, async () => ((await coord.readNamespacedLease({ name: 'meshback-controller', namespace: creds.namespace })).spec?.holderIdentity === 'controller-two' ? true : undefined));
  // and it acts: a new backup runs
  await manualBackup('after-failover', 'orders-data', 'snapshot', 'mesh-volumes');
  await until('after-failover completed', 60_000, async () => ((await getVb('after-failover')).status?.phase === 'Completed' ? true : undefined));
  await two.stop();
});
