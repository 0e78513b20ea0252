/**
 * A stand-in for the kubelet and a CSI driver with snapshots, for the Kubernetes tests: the test
 * control plane (k8s.ts) runs no kubelet (kwok only pretends pods run) and no CSI driver or
 * snapshot controller, so nothing would ever provision a volume, snapshot it, or mount it where a
 * node agent reads it. This module does that with REAL volumes:
 *
 * - storage: one sparse btrfs image loop-mounted at ROOT/btrfs/standin (src/volumes); every
 *   PersistentVolume is a subvolume MOUNT/volumes/PV_NAME (its CSI volumeHandle), every
 *   VolumeSnapshotContent a read-only btrfs snapshot MOUNT/snapshots/CONTENT_NAME (its
 *   snapshotHandle); a PVC made from a VolumeSnapshot (or cloned from a PVC) is a writable btrfs
 *   snapshot of it.
 * - provisioner: a PVC of the StorageClass `meshback-standin` without a volume gets a subvolume and
 *   a PV reserved for it (claimRef with uid); kube-controller-manager's PV binder binds them. A
 *   Released (or Failed) PV of the driver with reclaim Delete loses its subvolume and is deleted.
 * - snapshotter: a VolumeSnapshot of a PVC of the driver with the class `meshback-standin` (or no
 *   class: it is the default) gets a read-only snapshot, a VolumeSnapshotContent and a ready
 *   status; with `meshback-standin-stuck` nothing is made and readyToUse stays false (a driver that
 *   never finishes). A deleted VolumeSnapshot takes its content and snapshot with it.
 * - kubelet: a pod bound to one of `nodes` and not terminated, with a volume from a PVC bound to a
 *   PV of the driver, gets the PV's subvolume bind-mounted at
 *   ROOT/kubelet/NODE/pods/POD_UID/volumes/kubernetes.io~csi/PV_NAME/mount (read-only when the
 *   pod's volume says readOnly); unmounted and removed when the pod is gone or terminated.
 *
 * It reconciles: every pass lists PVs, PVCs, pods, VolumeSnapshots and VolumeSnapshotContents and
 * makes the world match, so every step is idempotent and a failed step is retried on the next pass.
 * Passes run when a watch reports a change (at most every 100 ms) and at least every second.
 * Needs root, btrfs-progs and loop devices.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import {
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  StorageV1Api,
  Watch,
  setHeaderOptions,
  type KubeConfig,
  type V1PersistentVolume,
  type V1PersistentVolumeClaim,
  type V1Pod,
} from '@kubernetes/client-node';
import { createVolume, isMountPoint, mounts, type Volume } from '../../src/volumes/index.ts';
import { TestenvError } from './errors.ts';

export const STANDIN_DRIVER = 'standin.csi.meshback.test';
export const STANDIN_CLASS = 'meshback-standin';
export const STANDIN_STUCK_CLASS = 'meshback-standin-stuck';
/** the parameter of the VolumeSnapshotClass whose snapshots never become ready */
export const NEVER_READY_PARAM = 'standin.meshback.test/never-ready';

export interface StandinOptions {
  kc: KubeConfig;
  /** a directory; kubelet roots are ROOT/kubelet/NODE, the btrfs image and its mount ROOT/btrfs */
  root: string;
  /** the nodes whose kubelet this stands in for (KWOK_NODES) */
  nodes: string[];
  /** the btrfs image's size: bytes, or a number with K, M, G (or Ki, Mi, Gi); default 2G */
  size?: string;
  log?: (l: string) => void;
}

export interface Standin {
  /** ROOT/kubelet/NODE: what a node agent on NODE takes for /var/lib/kubelet */
  kubeletRoot(node: string): string;
  /** 'meshback-standin' */
  storageClass: string;
  /** 'meshback-standin' (the default VolumeSnapshotClass) */
  snapshotClass: string;
  /** 'meshback-standin-stuck': its snapshots never become ready */
  stuckSnapshotClass: string;
  /** 'standin.csi.meshback.test' */
  driver: string;
  /** the PV's subvolume on the host, to write test data into */
  volumePath(pvName: string): string;
  /** the read-only btrfs snapshot of a VolumeSnapshotContent (by its status.snapshotHandle) */
  snapshotPath(snapshotHandle: string): string;
  /** the btrfs image file (its loop device is detached by stop()) */
  image: string;
  /** unmount everything, detach the loop device, remove ROOT/kubelet and ROOT/btrfs */
  stop(): Promise<void>;
}

const SNAP_GROUP = 'snapshot.storage.k8s.io';
const SNAP_VERSION = 'v1';
const CSI_DIR = 'kubernetes.io~csi';
const CMD_TIMEOUT_MS = 30_000;
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

interface Meta {
  name: string;
  namespace?: string;
  uid: string;
  deletionTimestamp?: string | Date;
  annotations?: Record<string, string>;
}

interface VolumeSnapshot {
  metadata: Meta;
  spec: { source: { persistentVolumeClaimName?: string; volumeSnapshotContentName?: string }; volumeSnapshotClassName?: string };
  status?: { boundVolumeSnapshotContentName?: string; readyToUse?: boolean; creationTime?: string; restoreSize?: string };
}

interface VolumeSnapshotContent {
  metadata: Meta;
  spec: {
    driver: string;
    deletionPolicy: 'Delete' | 'Retain';
    source: { volumeHandle?: string; snapshotHandle?: string };
    volumeSnapshotRef: { name?: string; namespace?: string; uid?: string };
    volumeSnapshotClassName?: string;
  };
  status?: { snapshotHandle?: string; readyToUse?: boolean; restoreSize?: number; creationTime?: number };
}

interface MountRecord {
  podUid: string;
  pvName: string;
  node: string;
  target: string;
}

/** The bytes of "2G", "512Mi", "1073741824" (K/M/G/T powers of 1000, Ki/Mi/Gi/Ti of 1024). */
export function parseSize(s: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*(?:([KMGTkmgt])(i)?)?[Bb]?$/.exec(s.trim());
  if (m === null) return undefined;
  const exp = m[2] === undefined ? 0 : 'KMGT'.indexOf(m[2].toUpperCase()) + 1;
  return Math.round(Number(m[1]) * (m[3] === 'i' ? 1024 : 1000) ** exp);
}

/** A Kubernetes quantity as bytes (the suffixes of parseSize, plus E/P and Ei/Pi, and m for milli). */
export function quantityBytes(q: string | undefined): number {
  if (q === undefined) return 0;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$/.exec(q.trim());
  if (m === null) return 0;
  const pow: Record<string, number> = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, Pi: 1024 ** 5, Ei: 1024 ** 6, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18, m: 1e-3 };
  return Math.ceil(Number(m[1]) * (m[2] === undefined ? 1 : pow[m[2]]!));
}

/** One line for an API or command error: the HTTP code and the server's message, or the first line. */
function errLine(e: unknown): string {
  const x = e as { code?: number; body?: unknown; message?: string; stderr?: string };
  if (typeof x.code === 'number' && x.body !== undefined) {
    let msg = typeof x.body === 'string' ? x.body : JSON.stringify(x.body);
    try {
      const parsed = (typeof x.body === 'string' ? JSON.parse(x.body) : x.body) as { message?: string };
      if (typeof parsed.message === 'string') msg = parsed.message;
    } catch {
      // not JSON: the body as it is
    }
    return `HTTP ${x.code}: ${msg}`.split('\n')[0]!.slice(0, 400);
  }
  const text = typeof x.stderr === 'string' && x.stderr.trim() !== '' ? x.stderr.trim() : (x.message ?? String(e));
  return text.split('\n')[0]!.slice(0, 400);
}

const status = (e: unknown): number | undefined => (e as { code?: number }).code;
const ignore = (...codes: number[]) => (e: unknown): void => {
  if (!codes.includes(status(e) ?? -1)) throw e;
};

/** Runs a command with a time limit; a failure names the command and its first line of stderr. */
function cmd(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: CMD_TIMEOUT_MS, encoding: 'utf8' }, (err, _out, stderr) => {
      if (err === null) return resolve();
      const why = stderr.trim().split('\n')[0] || err.message.split('\n')[0]!;
      reject(new Error(`${argv.join(' ')}: ${why}`));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function unmount(target: string): Promise<void> {
  let last = '';
  for (let i = 0; i < 20 && isMountPoint(target); i++) {
    try {
      await cmd(['umount', target]);
    } catch (e) {
      last = errLine(e);
      await sleep(100); // busy for a moment: a reader is still closing
    }
  }
  if (isMountPoint(target)) {
    await cmd(['umount', '-l', target]).catch((e: unknown) => {
      throw new Error(`cannot unmount ${target} (${last}): ${errLine(e)}`);
    });
  }
}

export async function startStandin(o: StandinOptions): Promise<Standin> {
  const log = (l: string): void => o.log?.(`standin: ${l}`);
  const root = path.resolve(o.root);
  const sizeBytes = parseSize(o.size ?? '2G');
  if (sizeBytes === undefined) throw new TestenvError(`the stand-in's btrfs size ${JSON.stringify(o.size)} is not a size`, 'give bytes or a number with K, M, G (2G, 512Mi)');
  const kubeletBase = path.join(root, 'kubelet');
  const btrfsDir = path.join(root, 'btrfs');
  const kubeletRoot = (node: string): string => path.join(kubeletBase, node);
  for (const n of o.nodes) await fsp.mkdir(kubeletRoot(n), { recursive: true, mode: 0o750 });

  let vol: Volume;
  try {
    vol = await createVolume({ kind: 'btrfs', name: 'standin', dir: btrfsDir, sizeBytes, unmountOnExit: true });
  } catch (e) {
    await fsp.rm(kubeletBase, { recursive: true, force: true });
    throw new TestenvError(`the stand-in cannot make its loop-mounted btrfs filesystem in ${btrfsDir} (${errLine(e)})`, 'run as root with btrfs-progs installed and loop devices available');
  }
  const mnt = vol.mount!;
  const volumesDir = path.join(mnt, 'volumes');
  const snapshotsDir = path.join(mnt, 'snapshots');
  await fsp.mkdir(volumesDir, { recursive: true });
  await fsp.mkdir(snapshotsDir, { recursive: true });
  const volumePath = (pv: string): string => path.join(volumesDir, pv);
  const snapshotPath = (content: string): string => path.join(snapshotsDir, content);

  const core = o.kc.makeApiClient(CoreV1Api);
  const storage = o.kc.makeApiClient(StorageV1Api);
  const custom = o.kc.makeApiClient(CustomObjectsApi);

  /** pod uid + PV -> the bind mount made for it */
  const mounted = new Map<string, MountRecord>();
  const exitHook = (): void => {
    for (const r of mounted.values()) {
      try {
        execFileSync('umount', ['-l', r.target], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  };
  process.on('exit', exitHook);

  let stopped = false;
  const cleanupAll = async (): Promise<string[]> => {
    const problems: string[] = [];
    for (const r of [...mounted.values()]) await unmount(r.target).catch((e: unknown) => problems.push(errLine(e)));
    mounted.clear();
    // whatever is still mounted under ROOT/kubelet (a record lost to a failure half-way), deepest first
    const left = mounts()
      .map((m) => m.mountPoint)
      .filter((p) => p.startsWith(`${kubeletBase}/`))
      .sort((a, b) => b.length - a.length);
    for (const p of left) await unmount(p).catch((e: unknown) => problems.push(errLine(e)));
    await vol.destroy().catch((e: unknown) => problems.push(errLine(e)));
    if (mounts().some((m) => m.mountPoint === root || m.mountPoint.startsWith(`${root}/`))) {
      problems.push(`mounts are left under ${root}; not removing it`);
    } else {
      await fsp.rm(kubeletBase, { recursive: true, force: true });
      await fsp.rm(btrfsDir, { recursive: true, force: true });
    }
    process.off('exit', exitHook);
    return problems;
  };

  try {
    // the classes
    await storage
      .createStorageClass({
        body: {
          apiVersion: 'storage.k8s.io/v1',
          kind: 'StorageClass',
          metadata: { name: STANDIN_CLASS },
          provisioner: STANDIN_DRIVER,
          reclaimPolicy: 'Delete',
          volumeBindingMode: 'Immediate',
          allowVolumeExpansion: false,
        },
      })
      .catch(ignore(409));
    for (const [name, stuck] of [
      [STANDIN_CLASS, false],
      [STANDIN_STUCK_CLASS, true],
    ] as const) {
      await custom
        .createClusterCustomObject({
          group: SNAP_GROUP,
          version: SNAP_VERSION,
          plural: 'volumesnapshotclasses',
          body: {
            apiVersion: `${SNAP_GROUP}/${SNAP_VERSION}`,
            kind: 'VolumeSnapshotClass',
            metadata: { name, ...(stuck ? {} : { annotations: { 'snapshot.storage.kubernetes.io/is-default-class': 'true' } }) },
            driver: STANDIN_DRIVER,
            deletionPolicy: 'Delete',
            ...(stuck ? { parameters: { [NEVER_READY_PARAM]: 'true' } } : {}),
          },
        })
        .catch(ignore(409));
    }
  } catch (e) {
    await cleanupAll();
    throw new TestenvError(`the stand-in cannot create its StorageClass and VolumeSnapshotClasses (${errLine(e)})`, 'is the API server up and are the VolumeSnapshot CRDs installed (startK8s does both)?');
  }

  // one log line per problem while it lasts (a failing step is retried every pass)
  const problems = new Map<string, string>();
  const step = async (key: string, f: () => Promise<void>): Promise<void> => {
    try {
      await f();
      if (problems.delete(key)) log(`${key}: ok now`);
    } catch (e) {
      const line = errLine(e);
      if (problems.get(key) !== line) log(`${key}: ${line}`);
      problems.set(key, line);
    }
  };

  // --- the kubelet ---------------------------------------------------------------------------
  const mountKey = (podUid: string, pv: string): string => `${podUid}/${pv}`;
  const podVolumeDir = (node: string, podUid: string, pv: string): string => path.join(kubeletRoot(node), 'pods', podUid, 'volumes', CSI_DIR, pv);

  const unmountRecord = async (r: MountRecord): Promise<void> => {
    await unmount(r.target);
    mounted.delete(mountKey(r.podUid, r.pvName));
    // rmdir upwards (never a recursive rm: a mount left behind would lose its data)
    const pod = path.join(kubeletRoot(r.node), 'pods', r.podUid);
    for (let d = r.target; d.startsWith(pod); d = path.dirname(d)) {
      try {
        await fsp.rmdir(d);
      } catch (e) {
        const c = (e as NodeJS.ErrnoException).code;
        if (c === 'ENOENT') continue;
        break; // not empty: another volume of the pod
      }
    }
    log(`unmounted ${r.pvName} of pod ${r.podUid} on ${r.node}`);
  };

  const mountRecord = async (r: MountRecord, readOnly: boolean): Promise<void> => {
    if (stopped) return;
    const src = volumePath(r.pvName);
    if (!existsSync(src)) throw new Error(`the subvolume ${src} of PV ${r.pvName} is missing`);
    await fsp.mkdir(r.target, { recursive: true, mode: 0o750 });
    if (!isMountPoint(r.target)) await cmd(['mount', '--bind', src, r.target]);
    if (readOnly) await cmd(['mount', '-o', 'remount,bind,ro', r.target]);
    mounted.set(mountKey(r.podUid, r.pvName), r); // only now: a failed remount is tried again next pass (stop() finds a stray mount anyway)
    log(`mounted ${r.pvName} for pod ${r.podUid} at ${r.target}${readOnly ? ' (read-only)' : ''}`);
  };

  const kubelet = async (pods: V1Pod[], pvcs: Map<string, V1PersistentVolumeClaim>, pvs: Map<string, V1PersistentVolume>): Promise<void> => {
    const want = new Map<string, { r: MountRecord; ro: boolean }>();
    for (const p of pods) {
      const node = p.spec?.nodeName;
      const uid = p.metadata?.uid;
      if (node === undefined || uid === undefined || !o.nodes.includes(node)) continue;
      if (p.status?.phase === 'Succeeded' || p.status?.phase === 'Failed') continue;
      for (const v of p.spec?.volumes ?? []) {
        const claim = v.persistentVolumeClaim?.claimName;
        if (claim === undefined) continue;
        const pvc = pvcs.get(`${p.metadata?.namespace}/${claim}`);
        const pvName = pvc?.spec?.volumeName;
        const pv = pvName === undefined ? undefined : pvs.get(pvName);
        if (pv === undefined || pvName === undefined || pv.spec?.csi?.driver !== STANDIN_DRIVER || pv.spec.claimRef?.uid !== pvc?.metadata?.uid) continue;
        const ro = v.persistentVolumeClaim?.readOnly === true;
        const prev = want.get(mountKey(uid, pvName));
        want.set(mountKey(uid, pvName), { r: { podUid: uid, pvName, node, target: path.join(podVolumeDir(node, uid, pvName), 'mount') }, ro: ro && (prev?.ro ?? true) });
      }
    }
    for (const [k, r] of [...mounted]) if (!want.has(k)) await step(`unmount ${r.target}`, () => unmountRecord(r));
    for (const [k, w] of want) if (!mounted.has(k) || !isMountPoint(w.r.target)) await step(`mount ${w.r.target}`, () => mountRecord(w.r, w.ro));
  };

  // --- the provisioner -----------------------------------------------------------------------
  const provision = async (pvc: V1PersistentVolumeClaim, pvs: Map<string, V1PersistentVolume>, pvcs: Map<string, V1PersistentVolumeClaim>, snaps: Map<string, VolumeSnapshot>, contents: Map<string, VolumeSnapshotContent>): Promise<void> => {
    const md = pvc.metadata!;
    const pvName = `pvc-${md.uid}`;
    if (pvs.has(pvName)) return; // made; the binder binds it
    const src = pvc.spec?.dataSource ?? pvc.spec?.dataSourceRef;
    let from: string | undefined;
    if (src !== undefined && src !== null) {
      if (src.kind === 'VolumeSnapshot' && src.apiGroup === SNAP_GROUP) {
        const vs = snaps.get(`${md.namespace}/${src.name}`);
        const content = vs?.status?.boundVolumeSnapshotContentName === undefined ? undefined : contents.get(vs.status.boundVolumeSnapshotContentName);
        if (vs?.status?.readyToUse !== true || content?.spec.driver !== STANDIN_DRIVER || content.status?.snapshotHandle === undefined) return; // stays Pending until the snapshot is ready
        from = snapshotPath(content.status.snapshotHandle);
      } else if (src.kind === 'PersistentVolumeClaim' && (src.apiGroup ?? '') === '') {
        const source = pvcs.get(`${md.namespace}/${src.name}`);
        const sourcePv = source?.spec?.volumeName === undefined ? undefined : pvs.get(source.spec.volumeName);
        if (sourcePv?.spec?.csi?.driver !== STANDIN_DRIVER) return;
        from = volumePath(sourcePv.spec.csi.volumeHandle);
      } else {
        throw new Error(`PVC ${md.namespace}/${md.name}: data source ${src.kind} ${src.name} is not supported by the stand-in (VolumeSnapshot or PersistentVolumeClaim)`);
      }
      if (!existsSync(from)) throw new Error(`PVC ${md.namespace}/${md.name}: the source subvolume ${from} is missing`);
    }
    const dst = volumePath(pvName);
    if (!existsSync(dst)) {
      if (from === undefined) await cmd(['btrfs', 'subvolume', 'create', dst]);
      else await cmd(['btrfs', 'subvolume', 'snapshot', from, dst]);
      await fsp.chmod(dst, 0o777);
    }
    const request = pvc.spec?.resources?.requests?.['storage'] ?? '1Gi';
    await core
      .createPersistentVolume({
        body: {
          apiVersion: 'v1',
          kind: 'PersistentVolume',
          // provisioned-by: the binder leaves deleting the volume to its (external) provisioner, this
          metadata: { name: pvName, annotations: { 'pv.kubernetes.io/provisioned-by': STANDIN_DRIVER } },
          spec: {
            capacity: { storage: String(request) },
            accessModes: pvc.spec?.accessModes ?? ['ReadWriteOnce'],
            claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: md.name!, namespace: md.namespace!, uid: md.uid! },
            persistentVolumeReclaimPolicy: 'Delete',
            storageClassName: STANDIN_CLASS,
            volumeMode: pvc.spec?.volumeMode ?? 'Filesystem',
            csi: { driver: STANDIN_DRIVER, volumeHandle: pvName, fsType: 'btrfs' },
          },
        },
      })
      .catch(ignore(409));
    log(`provisioned ${pvName} for PVC ${md.namespace}/${md.name}${from !== undefined ? ` from ${from}` : ''}`);
  };

  const reclaim = async (pv: V1PersistentVolume): Promise<void> => {
    const name = pv.metadata!.name!;
    for (const r of [...mounted.values()]) if (r.pvName === name) await unmountRecord(r);
    const sub = volumePath(pv.spec!.csi!.volumeHandle);
    if (existsSync(sub)) await cmd(['btrfs', 'subvolume', 'delete', sub]);
    await core.deletePersistentVolume({ name }).catch(ignore(404));
    log(`deleted ${name} and its subvolume`);
  };

  // --- the snapshotter -----------------------------------------------------------------------
  const snapshot = async (vs: VolumeSnapshot, pvcs: Map<string, V1PersistentVolumeClaim>, pvs: Map<string, V1PersistentVolume>, contents: Map<string, VolumeSnapshotContent>): Promise<void> => {
    const md = vs.metadata;
    const ns = md.namespace!;
    const cls = vs.spec.volumeSnapshotClassName ?? STANDIN_CLASS;
    const patchVs = (s: VolumeSnapshot['status']): Promise<unknown> =>
      custom.patchNamespacedCustomObjectStatus({ group: SNAP_GROUP, version: SNAP_VERSION, namespace: ns, plural: 'volumesnapshots', name: md.name, body: { status: s } }, MERGE);
    if (cls === STANDIN_STUCK_CLASS) {
      if (vs.status?.readyToUse !== false) {
        await patchVs({ readyToUse: false });
        log(`VolumeSnapshot ${ns}/${md.name}: never ready (class ${cls})`);
      }
      return;
    }
    if (vs.status?.readyToUse === true && vs.status.boundVolumeSnapshotContentName !== undefined) return;
    const pvc = pvcs.get(`${ns}/${vs.spec.source.persistentVolumeClaimName}`);
    const pv = pvc?.spec?.volumeName === undefined ? undefined : pvs.get(pvc.spec.volumeName);
    if (pv?.spec?.csi?.driver !== STANDIN_DRIVER || pv.spec.claimRef?.uid !== pvc?.metadata?.uid) return; // the PVC is not bound yet: wait, as the snapshot controller does
    const contentName = `snapcontent-${md.uid}`;
    const snap = snapshotPath(contentName);
    const existing = contents.get(contentName);
    let created = existing?.status?.creationTime;
    if (!existsSync(snap)) {
      await cmd(['btrfs', 'subvolume', 'snapshot', '-r', volumePath(pv.spec.csi.volumeHandle), snap]);
      created = undefined;
    }
    const nowNs = created ?? Date.now() * 1e6;
    const size = String(pv.spec.capacity?.['storage'] ?? '0');
    if (existing === undefined) {
      await custom
        .createClusterCustomObject({
          group: SNAP_GROUP,
          version: SNAP_VERSION,
          plural: 'volumesnapshotcontents',
          body: {
            apiVersion: `${SNAP_GROUP}/${SNAP_VERSION}`,
            kind: 'VolumeSnapshotContent',
            metadata: { name: contentName },
            spec: {
              driver: STANDIN_DRIVER,
              deletionPolicy: 'Delete',
              source: { volumeHandle: pv.spec.csi.volumeHandle },
              sourceVolumeMode: pv.spec.volumeMode ?? 'Filesystem',
              volumeSnapshotClassName: cls,
              volumeSnapshotRef: { apiVersion: `${SNAP_GROUP}/${SNAP_VERSION}`, kind: 'VolumeSnapshot', name: md.name, namespace: ns, uid: md.uid },
            },
          },
        })
        .catch(ignore(409));
    }
    if (existing?.status?.readyToUse !== true) {
      await custom.patchClusterCustomObjectStatus(
        {
          group: SNAP_GROUP,
          version: SNAP_VERSION,
          plural: 'volumesnapshotcontents',
          name: contentName,
          body: { status: { snapshotHandle: contentName, readyToUse: true, restoreSize: quantityBytes(size), creationTime: nowNs } },
        },
        MERGE,
      );
    }
    await patchVs({ boundVolumeSnapshotContentName: contentName, readyToUse: true, creationTime: new Date(Math.floor(nowNs / 1e6)).toISOString(), restoreSize: size });
    log(`VolumeSnapshot ${ns}/${md.name}: ready (${contentName}, read-only snapshot of ${pv.metadata!.name})`);
  };

  const dropContent = async (c: VolumeSnapshotContent): Promise<void> => {
    const handle = c.status?.snapshotHandle ?? c.metadata.name;
    const snap = snapshotPath(handle);
    if (existsSync(snap)) await cmd(['btrfs', 'subvolume', 'delete', snap]);
    await custom.deleteClusterCustomObject({ group: SNAP_GROUP, version: SNAP_VERSION, plural: 'volumesnapshotcontents', name: c.metadata.name }).catch(ignore(404));
    log(`deleted ${c.metadata.name} and its snapshot (its VolumeSnapshot is gone)`);
  };

  // --- the loop ------------------------------------------------------------------------------
  const pass = async (): Promise<void> => {
    const [pvList, pvcList, podList, vsList, vscList] = await Promise.all([
      core.listPersistentVolume(),
      core.listPersistentVolumeClaimForAllNamespaces(),
      core.listPodForAllNamespaces(),
      custom.listClusterCustomObject({ group: SNAP_GROUP, version: SNAP_VERSION, plural: 'volumesnapshots' }) as Promise<{ items: VolumeSnapshot[] }>,
      custom.listClusterCustomObject({ group: SNAP_GROUP, version: SNAP_VERSION, plural: 'volumesnapshotcontents' }) as Promise<{ items: VolumeSnapshotContent[] }>,
    ]);
    if (stopped) return;
    const pvs = new Map(pvList.items.map((v) => [v.metadata!.name!, v]));
    const pvcs = new Map(pvcList.items.map((c) => [`${c.metadata!.namespace}/${c.metadata!.name}`, c]));
    const snaps = new Map(vsList.items.map((s) => [`${s.metadata.namespace}/${s.metadata.name}`, s]));
    const contents = new Map(vscList.items.map((c) => [c.metadata.name, c]));

    await kubelet(podList.items, pvcs, pvs);
    for (const pvc of pvcs.values()) {
      if (stopped) return;
      if (pvc.spec?.storageClassName !== STANDIN_CLASS || (pvc.spec.volumeName ?? '') !== '' || pvc.metadata?.deletionTimestamp !== undefined) continue;
      await step(`provision PVC ${pvc.metadata?.namespace}/${pvc.metadata?.name}`, () => provision(pvc, pvs, pvcs, snaps, contents));
    }
    for (const pv of pvs.values()) {
      if (stopped) return;
      const phase = pv.status?.phase;
      if (pv.spec?.csi?.driver !== STANDIN_DRIVER || pv.spec.persistentVolumeReclaimPolicy !== 'Delete' || (phase !== 'Released' && phase !== 'Failed')) continue;
      const ref = pv.spec.claimRef;
      const claim = ref === undefined ? undefined : pvcs.get(`${ref.namespace}/${ref.name}`);
      if (claim !== undefined && claim.metadata?.uid === ref?.uid) continue; // its claim is still there (a Failed PV for another reason)
      await step(`reclaim PV ${pv.metadata?.name}`, () => reclaim(pv));
    }
    for (const vs of snaps.values()) {
      if (stopped) return;
      if (vs.metadata.deletionTimestamp !== undefined || vs.spec.source.persistentVolumeClaimName === undefined) continue;
      const cls = vs.spec.volumeSnapshotClassName;
      if (cls !== undefined && cls !== STANDIN_CLASS && cls !== STANDIN_STUCK_CLASS) continue;
      await step(`snapshot ${vs.metadata.namespace}/${vs.metadata.name}`, () => snapshot(vs, pvcs, pvs, contents));
    }
    for (const c of contents.values()) {
      if (stopped) return;
      if (c.spec.driver !== STANDIN_DRIVER || c.spec.deletionPolicy !== 'Delete') continue;
      const ref = c.spec.volumeSnapshotRef;
      const vs = snaps.get(`${ref.namespace}/${ref.name}`);
      if (vs !== undefined && vs.metadata.uid === ref.uid) continue;
      await step(`delete content ${c.metadata.name}`, () => dropContent(c));
    }
  };

  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    dirty = true;
    wake?.();
  };
  const watches = new Set<AbortController>();
  const watch = (p: string): void => {
    if (stopped) return;
    const restart = (): void => {
      if (!stopped) setTimeout(() => watch(p), 500).unref();
    };
    new Watch(o.kc)
      .watch(p, { allowWatchBookmarks: true }, () => poke(), () => {
        restart();
      })
      .then((ac) => {
        if (stopped) ac.abort();
        else watches.add(ac);
      })
      .catch(restart);
  };
  for (const p of ['/api/v1/persistentvolumes', '/api/v1/persistentvolumeclaims', '/api/v1/pods', `/apis/${SNAP_GROUP}/${SNAP_VERSION}/volumesnapshots`, `/apis/${SNAP_GROUP}/${SNAP_VERSION}/volumesnapshotcontents`]) watch(p);

  const loop = (async (): Promise<void> => {
    while (!stopped) {
      dirty = false;
      await step('list the cluster', pass);
      if (stopped) break;
      await sleep(100);
      if (!dirty) {
        await new Promise<void>((r) => {
          const t = setTimeout(r, 1000);
          wake = () => {
            clearTimeout(t);
            r();
          };
        });
        wake = undefined;
      }
    }
  })();
  log(`up: btrfs at ${mnt}, kubelet roots under ${kubeletBase} for ${o.nodes.join(', ')}`);

  let stopping: Promise<void> | undefined;
  return {
    kubeletRoot,
    storageClass: STANDIN_CLASS,
    snapshotClass: STANDIN_CLASS,
    stuckSnapshotClass: STANDIN_STUCK_CLASS,
    driver: STANDIN_DRIVER,
    volumePath,
    snapshotPath,
    image: vol.image!,
    stop: () =>
      (stopping ??= (async () => {
        stopped = true;
        wake?.();
        for (const ac of watches) ac.abort();
        // a pass waits on the API server; it is not waited for longer than 15 s
        await Promise.race([loop, sleep(15_000)]);
        const left = await cleanupAll();
        if (left.length > 0) throw new TestenvError(`the stand-in did not clean up everything: ${left.join('; ')}`, `unmount and detach by hand (grep ${root} /proc/self/mountinfo; losetup -a)`);
        log('stopped');
      })()),
  };
}
