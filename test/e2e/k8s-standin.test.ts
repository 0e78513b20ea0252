/**
 * The stand-in for the kubelet and a CSI driver (lab/testenv/k8s-standin.ts) against the real
 * kube-apiserver, controller manager (its PV binder) and kwok nodes of lab/testenv/k8s.ts, backed
 * by a real loop-mounted btrfs filesystem: provisioning and binding, the kubelet's bind mount of a
 * pod's volume (read-write and read-only), VolumeSnapshots as real read-only btrfs snapshots, a
 * PVC restored from one, a snapshot class whose snapshots never become ready, clean-up of
 * everything on deletion, and stop() leaving no mount and no loop device. Needs root and btrfs:
 * skipped, saying why, otherwise. Every wait is bounded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CoreV1Api, CustomObjectsApi, StorageV1Api, type KubeConfig, type V1PersistentVolumeClaim } from '@kubernetes/client-node';
import { startK8s, startStandin, type K8sEnv, type Standin } from '../../lab/testenv/index.ts';
import { isRoot } from '../../src/host/packages.ts';
import { btrfsSupport, isMountPoint } from '../../src/volumes/index.ts';
import { until } from '../helpers/until.ts';

const probe = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-standin-probe-'));
const support = isRoot() ? await btrfsSupport(path.join(probe, 'p'), false) : 'needs root (loop-mounted btrfs and bind mounts)';
await fsp.rm(probe, { recursive: true, force: true });
const skipReason = support === true ? undefined : support;
if (skipReason !== undefined) console.error(`k8s-standin.test.ts: skipped: ${skipReason}`);
const opts = { timeout: 120_000, ...(skipReason !== undefined ? { skip: skipReason } : {}) };

const NS = 'standin';
const NODE = 'kwok-node-1';
const G = 'snapshot.storage.k8s.io';
const V = 'v1';

let k8s: K8sEnv | undefined;
let si: Standin | undefined;
let kc: KubeConfig;
let core: CoreV1Api;
let custom: CustomObjectsApi;
let root: string;
const logs: string[] = [];
const untilLogged = <T>(what: string, ms: number, f: () => Promise<T | undefined> | T | undefined): Promise<T> => until(what, ms, f, { everyMs: 200, context: () => logs.slice(-20).join('\n') });

const pvcBody = (name: string, extra: Partial<NonNullable<V1PersistentVolumeClaim['spec']>> = {}): V1PersistentVolumeClaim => ({
  metadata: { name },
  spec: { storageClassName: 'meshback-standin', accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, ...extra },
});

async function bound(name: string): Promise<string> {
  return untilLogged(`PVC ${name} to be Bound`, 30_000, async () => {
    const c = await core.readNamespacedPersistentVolumeClaim({ namespace: NS, name });
    return c.status?.phase === 'Bound' ? c.spec!.volumeName! : undefined;
  });
}

interface Snap {
  metadata: { name: string; uid: string };
  status?: { readyToUse?: boolean; boundVolumeSnapshotContentName?: string; restoreSize?: string; creationTime?: string };
}
interface Content {
  metadata: { name: string };
  spec: { driver: string; deletionPolicy: string; source: { volumeHandle?: string }; volumeSnapshotRef: { name: string; namespace: string; uid: string }; volumeSnapshotClassName: string };
  status?: { snapshotHandle?: string; readyToUse?: boolean; restoreSize?: number; creationTime?: number };
}
const readSnap = (name: string): Promise<Snap> => custom.getNamespacedCustomObject({ group: G, version: V, namespace: NS, plural: 'volumesnapshots', name }) as Promise<Snap>;
const contents = async (): Promise<Content[]> => ((await custom.listClusterCustomObject({ group: G, version: V, plural: 'volumesnapshotcontents' })) as { items: Content[] }).items;
const makeSnap = (name: string, pvc: string, cls: string): Promise<unknown> =>
  custom.createNamespacedCustomObject({ group: G, version: V, namespace: NS, plural: 'volumesnapshots', body: { apiVersion: `${G}/${V}`, kind: 'VolumeSnapshot', metadata: { name }, spec: { volumeSnapshotClassName: cls, source: { persistentVolumeClaimName: pvc } } } });

const podDir = (uid: string): string => path.join(si!.kubeletRoot(NODE), 'pods', uid);
const mountPath = (uid: string, pv: string): string => path.join(podDir(uid), 'volumes', 'kubernetes.io~csi', pv, 'mount');

before(async () => {
  if (skipReason !== undefined) return;
  k8s = await startK8s();
  kc = k8s.kubeConfig();
  core = kc.makeApiClient(CoreV1Api);
  custom = kc.makeApiClient(CustomObjectsApi);
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-standin-'));
  si = await startStandin({ kc, root, nodes: k8s.nodes, size: '512M', log: (l) => logs.push(`${new Date().toISOString()} ${l}`) });
  await core.createNamespace({ body: { metadata: { name: NS } } });
  await untilLogged('the default service account of the namespace', 30_000, () => core.readNamespacedServiceAccount({ namespace: NS, name: 'default' }));
});

after(async () => {
  if (process.env['STANDIN_DEBUG'] === '1') console.error(logs.join('\n'));
  try {
    await si?.stop();
  } finally {
    await k8s?.stop();
    if (root !== undefined) await fsp.rm(root, { recursive: true, force: true });
  }
});

let dataPv = '';
let configPv = '';
let podUid = '';

test('stand-in: the classes exist; a PVC of the storage class gets a btrfs subvolume and a PV of the driver, and the binder binds it', opts, async () => {
  const sc = await kc.makeApiClient(StorageV1Api).readStorageClass({ name: si!.storageClass });
  assert.equal(sc.provisioner, 'standin.csi.meshback.test');
  assert.equal(sc.reclaimPolicy, 'Delete');
  assert.equal(sc.volumeBindingMode, 'Immediate');
  const vsc = (await custom.getClusterCustomObject({ group: G, version: V, plural: 'volumesnapshotclasses', name: si!.snapshotClass })) as { driver: string; metadata: { annotations?: Record<string, string> } };
  assert.equal(vsc.driver, si!.driver);
  assert.equal(vsc.metadata.annotations?.['snapshot.storage.kubernetes.io/is-default-class'], 'true');
  const stuck = (await custom.getClusterCustomObject({ group: G, version: V, plural: 'volumesnapshotclasses', name: si!.stuckSnapshotClass })) as { parameters?: Record<string, string> };
  assert.deepEqual(stuck.parameters, { 'standin.meshback.test/never-ready': 'true' });

  const data = await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: pvcBody('data') });
  await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: pvcBody('config', { accessModes: ['ReadOnlyMany'], resources: { requests: { storage: '256Mi' } } }) });
  dataPv = await bound('data');
  configPv = await bound('config');
  const pv = await core.readPersistentVolume({ name: dataPv });
  assert.equal(pv.spec?.csi?.driver, si!.driver);
  assert.equal(pv.spec?.csi?.volumeHandle, dataPv);
  assert.equal(pv.spec?.csi?.fsType, 'btrfs');
  assert.equal(pv.spec?.capacity?.['storage'], '1Gi');
  assert.equal(pv.spec?.persistentVolumeReclaimPolicy, 'Delete');
  assert.equal(pv.spec?.claimRef?.uid, data.metadata?.uid);
  assert.deepEqual((await core.readPersistentVolume({ name: configPv })).spec?.accessModes, ['ReadOnlyMany']);
  // a real subvolume (btrfs subvolumes have inode 256)
  assert.equal((await fsp.stat(si!.volumePath(dataPv))).ino, 256);
});

test('stand-in: a pod on kwok-node-1 gets its volumes bind-mounted at the kubelet path, read-only where the pod says so', opts, async () => {
  await fsp.writeFile(path.join(si!.volumePath(dataPv), 'before.txt'), 'written before the pod');
  await fsp.writeFile(path.join(si!.volumePath(configPv), 'mesh.yaml'), 'mode: strict\n');
  const pod = await core.createNamespacedPod({
    namespace: NS,
    body: {
      metadata: { name: 'app' },
      spec: {
        nodeName: NODE,
        containers: [{ name: 'app', image: 'shop/app:1', volumeMounts: [{ name: 'data', mountPath: '/data' }, { name: 'config', mountPath: '/config' }] }],
        volumes: [
          { name: 'data', persistentVolumeClaim: { claimName: 'data' } },
          { name: 'config', persistentVolumeClaim: { claimName: 'config', readOnly: true } },
        ],
      },
    },
  });
  podUid = pod.metadata!.uid!;
  const dataMount = mountPath(podUid, dataPv);
  const configMount = mountPath(podUid, configPv);
  await untilLogged('both bind mounts', 15_000, () => (isMountPoint(dataMount) && isMountPoint(configMount) ? true : undefined));
  await untilLogged('the pod to be Running', 30_000, async () => ((await core.readNamespacedPod({ namespace: NS, name: 'app' })).status?.phase === 'Running' ? true : undefined));
  assert.equal(await fsp.readFile(path.join(dataMount, 'before.txt'), 'utf8'), 'written before the pod');
  await fsp.writeFile(path.join(si!.volumePath(dataPv), 'after.txt'), 'written while mounted');
  assert.equal(await fsp.readFile(path.join(dataMount, 'after.txt'), 'utf8'), 'written while mounted');
  await fsp.writeFile(path.join(dataMount, 'by-app.txt'), 'the app writes');
  assert.equal(await fsp.readFile(path.join(si!.volumePath(dataPv), 'by-app.txt'), 'utf8'), 'the app writes');
  assert.equal(await fsp.readFile(path.join(configMount, 'mesh.yaml'), 'utf8'), 'mode: strict\n');
  await assert.rejects(fsp.writeFile(path.join(configMount, 'x'), 'x'), /EROFS/);
  // nothing for the other node
  assert.ok(!existsSync(path.join(si!.kubeletRoot('kwok-node-0'), 'pods', podUid)));
});

let snapHandle = '';

test('stand-in: a VolumeSnapshot becomes readyToUse; its content is a real read-only btrfs snapshot that later writes do not change', opts, async () => {
  await makeSnap('snap1', 'data', si!.snapshotClass);
  const snap = await untilLogged('snap1 to be readyToUse', 15_000, async () => {
    const s = await readSnap('snap1');
    return s.status?.readyToUse === true ? s : undefined;
  });
  assert.equal(snap.status?.restoreSize, '1Gi');
  assert.ok(!Number.isNaN(Date.parse(snap.status!.creationTime!)));
  const content = (await contents()).find((c) => c.metadata.name === snap.status?.boundVolumeSnapshotContentName);
  assert.ok(content !== undefined, 'the bound VolumeSnapshotContent exists');
  assert.equal(content.spec.driver, si!.driver);
  assert.equal(content.spec.deletionPolicy, 'Delete');
  assert.equal(content.spec.source.volumeHandle, dataPv);
  assert.equal(content.spec.volumeSnapshotClassName, si!.snapshotClass);
  assert.deepEqual([content.spec.volumeSnapshotRef.namespace, content.spec.volumeSnapshotRef.name, content.spec.volumeSnapshotRef.uid], [NS, 'snap1', snap.metadata.uid]);
  assert.equal(content.status?.readyToUse, true);
  assert.equal(content.status?.restoreSize, 1024 ** 3);
  assert.ok(typeof content.status?.creationTime === 'number' && Math.abs(content.status.creationTime / 1e6 - Date.now()) < 120_000);
  snapHandle = content.status!.snapshotHandle!;
  const sp = si!.snapshotPath(snapHandle);
  assert.equal((await fsp.stat(sp)).ino, 256);
  assert.match(execFileSync('btrfs', ['property', 'get', '-ts', sp, 'ro'], { encoding: 'utf8' }), /ro=true/);
  await fsp.writeFile(path.join(si!.volumePath(dataPv), 'after.txt'), 'changed after the snapshot');
  await fsp.writeFile(path.join(si!.volumePath(dataPv), 'later.txt'), 'new after the snapshot');
  assert.equal(await fsp.readFile(path.join(sp, 'after.txt'), 'utf8'), 'written while mounted');
  assert.ok(!existsSync(path.join(sp, 'later.txt')));
  await assert.rejects(fsp.writeFile(path.join(sp, 'x'), 'x'), /EROFS/);
});

let restoredPv = '';

test('stand-in: a PVC made from the VolumeSnapshot has the snapshot\'s data and is writable', opts, async () => {
  await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: pvcBody('restored', { dataSource: { apiGroup: G, kind: 'VolumeSnapshot', name: 'snap1' } }) });
  restoredPv = await bound('restored');
  const p = si!.volumePath(restoredPv);
  assert.equal(await fsp.readFile(path.join(p, 'before.txt'), 'utf8'), 'written before the pod');
  assert.equal(await fsp.readFile(path.join(p, 'after.txt'), 'utf8'), 'written while mounted');
  assert.ok(!existsSync(path.join(p, 'later.txt')));
  await fsp.writeFile(path.join(p, 'restored.txt'), 'writable');
  assert.ok(!existsSync(path.join(si!.snapshotPath(snapHandle), 'restored.txt')));
});

test('stand-in: a VolumeSnapshot of the stuck class never becomes ready, and a PVC from it stays Pending', opts, async () => {
  await makeSnap('stuck', 'data', si!.stuckSnapshotClass);
  const s = await untilLogged('stuck to report readyToUse false', 15_000, async () => {
    const x = await readSnap('stuck');
    return x.status?.readyToUse === false ? x : undefined;
  });
  await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: pvcBody('from-stuck', { dataSource: { apiGroup: G, kind: 'VolumeSnapshot', name: 'stuck' } }) });
  const t0 = Date.now();
  while (Date.now() - t0 < 4000) {
    const x = await readSnap('stuck');
    assert.notEqual(x.status?.readyToUse, true);
    assert.equal(x.status?.boundVolumeSnapshotContentName, undefined);
    assert.ok(!(await contents()).some((c) => c.spec.volumeSnapshotRef.uid === s.metadata.uid), 'no content for the stuck snapshot');
    const c = await core.readNamespacedPersistentVolumeClaim({ namespace: NS, name: 'from-stuck' });
    assert.equal(c.status?.phase, 'Pending');
    assert.equal(c.spec?.volumeName ?? '', '');
    await new Promise((r) => setTimeout(r, 500));
  }
});

test('stand-in: deleting the pod, the snapshots and the PVCs removes the mounts, the snapshot subvolumes and contents, the volumes and the PVs', opts, async () => {
  await core.deleteNamespacedPod({ namespace: NS, name: 'app' });
  await untilLogged('the pod to be gone', 30_000, () =>
    core.readNamespacedPod({ namespace: NS, name: 'app' }).then(
      () => undefined,
      (e: unknown) => {
        if ((e as { code?: number }).code === 404) return true;
        throw e;
      },
    ),
  );
  await untilLogged('the bind mounts and the pod directory to be gone', 15_000, () => (!isMountPoint(mountPath(podUid, dataPv)) && !existsSync(podDir(podUid)) ? true : undefined));

  const content = (await contents()).find((c) => c.status?.snapshotHandle === snapHandle)!;
  for (const name of ['snap1', 'stuck']) await custom.deleteNamespacedCustomObject({ group: G, version: V, namespace: NS, plural: 'volumesnapshots', name });
  await untilLogged('the content and the snapshot subvolume of snap1 to be gone', 15_000, async () => ((await contents()).some((c) => c.metadata.name === content.metadata.name) || existsSync(si!.snapshotPath(snapHandle)) ? undefined : true));
  // the restored volume is a snapshot of its own: it outlives the VolumeSnapshot
  assert.equal(await fsp.readFile(path.join(si!.volumePath(restoredPv), 'restored.txt'), 'utf8'), 'writable');

  for (const name of ['data', 'config', 'restored', 'from-stuck']) await core.deleteNamespacedPersistentVolumeClaim({ namespace: NS, name });
  await untilLogged('the PVs and their subvolumes to be gone', 30_000, async () => {
    const pvs = (await core.listPersistentVolume()).items.filter((v) => v.spec?.csi?.driver === si!.driver);
    return pvs.length === 0 && ![dataPv, configPv, restoredPv].some((p) => existsSync(si!.volumePath(p))) ? true : undefined;
  });
});

test('stand-in: stop() unmounts a pod\'s volume still in use and leaves no mount under its root and no loop device', opts, async () => {
  await core.createNamespacedPersistentVolumeClaim({ namespace: NS, body: pvcBody('last') });
  const pv = await bound('last');
  const pod = await core.createNamespacedPod({
    namespace: NS,
    body: { metadata: { name: 'last' }, spec: { nodeName: 'kwok-node-0', containers: [{ name: 'app', image: 'shop/app:1' }], volumes: [{ name: 'd', persistentVolumeClaim: { claimName: 'last' } }] } },
  });
  const target = path.join(si!.kubeletRoot('kwok-node-0'), 'pods', pod.metadata!.uid!, 'volumes', 'kubernetes.io~csi', pv, 'mount');
  await untilLogged('the bind mount on kwok-node-0', 15_000, () => (isMountPoint(target) ? true : undefined));
  const image = si!.image;
  await si!.stop();
  const mountinfo = readFileSync('/proc/self/mountinfo', 'utf8');
  assert.ok(!mountinfo.includes(root), `mounts left under ${root}`);
  assert.equal(execFileSync('losetup', ['-j', image], { encoding: 'utf8' }).trim(), '');
  assert.ok(!existsSync(path.join(root, 'kubelet')) && !existsSync(path.join(root, 'btrfs')));
  await si!.stop(); // again: nothing to do
});
