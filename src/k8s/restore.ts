/**
 * k8s/restore: what `meshback k8s restore SNAPSHOT --to-pvc NAME` does. It makes a VolumeRestore
 * (the controller mounts the PVC on a node, scales its workload down and up with scaleDown, the
 * agent there restores and verifies) and waits for it to end, reporting its phases as they come.
 * The VolumeRestore stays as the record (its status has the verification and the RTO).
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { MeshbackError, NotFoundError, UsageError } from '../errors/index.ts';
import { openRepository } from '../repository/open.ts';
import { restore } from '../restorer/index.ts';
import { restoreWorkloads } from './mesh.ts';
import type { ExportedFile, RestoredObject } from './mesh.ts';
import { repositoryFromSecret } from './repository.ts';
import { API_VERSION, TERMINAL } from './api.ts';
import type { VolumeRestore, VolumeRestoreSpec } from './api.ts';
import { Resources, sleep } from './kube.ts';

export interface K8sRestoreOptions {
  namespace: string;
  spec: VolumeRestoreSpec;
  /** how long to wait for the restore to end (default 1h) */
  timeoutMs?: number;
  onPhase?: (r: VolumeRestore) => void;
  signal?: AbortSignal;
}

/** Creates the VolumeRestore and waits until it is Completed (returned) or Failed (a RESTORE error naming its reason). */
export async function restoreIntoPvc(kc: KubeConfig, o: K8sRestoreOptions): Promise<VolumeRestore> {
  if (o.spec.repository === undefined && o.spec.policy === undefined) throw new UsageError('say where the snapshot is: --policy NAME (its repository Secret) or --secret NAME (a Secret with the keys repository and password)');
  const res = new Resources(kc);
  const name = `restore-${o.spec.targetPvc}`.slice(0, 50).replace(/-+$/, '') + `-${randomBytes(3).toString('hex')}`;
  const created = await res.create<VolumeRestore>('VolumeRestore', o.namespace, { apiVersion: API_VERSION, kind: 'VolumeRestore', metadata: { name, namespace: o.namespace }, spec: o.spec });
  const deadline = Date.now() + (o.timeoutMs ?? 3_600_000);
  let phase = '';
  for (;;) {
    const r = await res.get<VolumeRestore>('VolumeRestore', o.namespace, created.metadata.name);
    if ((r.status?.phase ?? '') !== phase) {
      phase = r.status?.phase ?? '';
      o.onPhase?.(r);
    }
    if (r.status !== undefined && TERMINAL.has(r.status.phase)) {
      if (r.status.phase === 'Completed') return r;
      throw new MeshbackError('K8S_FAILED', `VolumeRestore ${o.namespace}/${r.metadata.name} failed (${r.status.reason ?? 'unknown'}): ${r.status.message ?? ''}`, { data: { volumeRestore: r.metadata.name, reason: r.status.reason ?? '' } });
    }
    if (Date.now() > deadline) throw new MeshbackError('K8S_FAILED', `VolumeRestore ${o.namespace}/${r.metadata.name} did not end within ${Math.round((o.timeoutMs ?? 3_600_000) / 1000)} s (phase ${phase || 'none'}): see kubectl describe volumerestore -n ${o.namespace} ${r.metadata.name}; it goes on without this command`);
    if (o.signal?.aborted === true) throw new MeshbackError('K8S_FAILED', `stopped waiting; VolumeRestore ${o.namespace}/${r.metadata.name} goes on in the cluster (kubectl get volumerestore -n ${o.namespace} ${r.metadata.name})`);
    await sleep(500, o.signal);
  }
}

/**
 * The workloads exported beside a snapshot's volume (its `/k8s/workloads`), stripped of every
 * injected sidecar, init container, volume and status annotation (stripInjected) and created in
 * `namespace` (or replaced). The repository is the Secret's, read with the caller's credentials.
 */
export async function restoreWorkloadsFromSnapshot(kc: KubeConfig, namespace: string, secret: string, snapshotId: string, o: { dryRun?: boolean } = {}): Promise<RestoredObject[]> {
  const repoInfo = await repositoryFromSecret(kc, namespace, secret);
  const o2 = await openRepository(repoInfo.location, repoInfo.password, { lock: 'shared', command: 'k8s restore --with-workloads', ...(repoInfo.credentials !== undefined ? { storage: { credentials: repoInfo.credentials } } : {}) });
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-workloads-'));
  try {
    try {
      await restore(o2.repo, { snapshot: snapshotId, target: dir, root: 'k8s', includes: ['workloads'] });
    } catch (e) {
      if (e instanceof MeshbackError && e.code === 'NOT_FOUND') throw new NotFoundError(`snapshot ${snapshotId.slice(0, 8)} holds no exported workloads (/k8s/workloads): it was not taken by the agent, or the agent could not read the workload; restore without --with-workloads`);
      throw e;
    }
    const files: ExportedFile[] = [];
    const walk = async (d: string): Promise<void> => {
      for (const e of await fsp.readdir(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile()) files.push({ path: `k8s/${path.relative(dir, p)}`, content: await fsp.readFile(p) });
      }
    };
    await walk(dir);
    return (await restoreWorkloads(kc, namespace, files, o)).objects;
  } finally {
    await o2.close();
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
