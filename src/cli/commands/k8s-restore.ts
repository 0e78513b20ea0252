/**
 * `meshback k8s restore SNAPSHOT --to-pvc NAME [-n NS] [--create --size SIZE] [--scale-down]`: a
 * verified restore into a PVC through a VolumeRestore (src/k8s/restore.ts), its phases shown as
 * they come, the RTO reported. Exit 20 when the VolumeRestore fails (its reason in the message).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { UsageError } from '../../errors/index.ts';
import type { VolumeRestoreSpec } from '../../k8s/api.ts';
import type { BackupPolicy } from '../../k8s/api.ts';
import { Resources } from '../../k8s/kube.ts';
import type { RestoredObject } from '../../k8s/mesh.ts';
import { restoreIntoPvc, restoreWorkloadsFromSnapshot } from '../../k8s/restore.ts';
import { parseDuration } from '../../util/units.ts';
import type { OptionSpec } from '../command.ts';
import { bool, str, strs } from '../command.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';
import { setInterruptHandler } from '../signals.ts';

type Values = Record<string, unknown>;

export const K8S_RESTORE_OPTIONS: Record<string, OptionSpec> = {
  'to-pvc': { type: 'string', argument: 'NAME', description: 'restore: the PVC to restore into' },
  create: { type: 'boolean', description: 'restore: make the PVC (it must not exist); give --size' },
  size: { type: 'string', argument: 'SIZE', description: 'restore --create: its size (e.g. 10Gi)' },
  'storage-class': { type: 'string', argument: 'CLASS', description: "restore --create: its storage class (default: the cluster's default)" },
  'scale-down': { type: 'boolean', description: 'restore: scale the Deployment or StatefulSet that mounts the PVC to zero for the restore, and back after it' },
  secret: { type: 'string', argument: 'NAME', description: 'restore: the Secret with the repository (keys repository and password), instead of --policy' },
  'source-pvc': { type: 'string', argument: 'NAME', description: 'restore latest: the PVC the snapshot was taken of (default: --to-pvc)' },
  include: { type: 'string', multiple: true, argument: 'PATH', description: 'restore: only this path of the snapshot (repeatable)' },
  timeout: { type: 'string', argument: 'DURATION', description: 'restore: how long to wait for the restore to end (default 1h; it goes on in the cluster after)' },
  'with-workloads': { type: 'boolean', description: 'restore: then create the workloads exported with the snapshot (Deployment, StatefulSet, Services, ConfigMaps), stripped of injected sidecars, init containers, volumes and status annotations' },
};

export async function k8sRestore(ctx: Context, v: Values, positionals: string[], kc: KubeConfig, namespace: string): Promise<number> {
  const snapshot = positionals[1];
  if (snapshot === undefined || snapshot === '') throw new UsageError('k8s restore needs a SNAPSHOT: a snapshot id (or prefix), or latest');
  if (positionals.length > 2) throw new UsageError(`k8s restore takes one SNAPSHOT, not also ${JSON.stringify(positionals[2])}`);
  const target = str(v['to-pvc']);
  if (target === undefined || target === '') throw new UsageError('k8s restore needs --to-pvc NAME: the PVC to restore into');
  const policy = str(v['policy']);
  const secret = str(v['secret']);
  if (policy === undefined && secret === undefined) throw new UsageError('k8s restore needs --policy NAME (its repository) or --secret NAME (a Secret with the keys repository and password)');
  const create = bool(v['create']);
  const size = str(v['size']);
  if (create && size === undefined) throw new UsageError('--create needs --size SIZE (e.g. 10Gi)');
  if (!create && (size !== undefined || str(v['storage-class']) !== undefined)) throw new UsageError('--size and --storage-class go with --create');
  const spec: VolumeRestoreSpec = {
    snapshot,
    targetPvc: target,
    ...(policy !== undefined ? { policy } : {}),
    ...(secret !== undefined ? { repository: { secretRef: { name: secret } } } : {}),
    ...(str(v['source-pvc']) !== undefined ? { sourcePvc: str(v['source-pvc'])! } : {}),
    ...(create ? { create: { size: size!, ...(str(v['storage-class']) !== undefined ? { storageClassName: str(v['storage-class'])! } : {}) } } : {}),
    ...(strs(v['include']).length > 0 ? { paths: strs(v['include']) } : {}),
    ...(bool(v['scale-down']) ? { scaleDown: true } : {}),
  };
  const timeoutText = str(v['timeout']);
  const ac = new AbortController();
  setInterruptHandler(() => ac.abort());
  try {
    const r = await restoreIntoPvc(kc, {
      namespace,
      spec,
      ...(timeoutText !== undefined ? { timeoutMs: parseDuration(timeoutText, '--timeout') } : {}),
      signal: ac.signal,
      onPhase: (x) => ctx.out.info(`${new Date().toISOString()} VolumeRestore ${namespace}/${x.metadata.name}: ${x.status?.phase ?? 'created'}${x.status?.message !== undefined ? `: ${x.status.message}` : ''}`),
    });
    const st = r.status!;
    let workloads: RestoredObject[] | null = null;
    if (bool(v['with-workloads'])) {
      const secretName = secret ?? (await new Resources(kc).get<BackupPolicy>('BackupPolicy', namespace, policy!)).spec.repository.secretRef.name;
      workloads = await restoreWorkloadsFromSnapshot(kc, namespace, secretName, st.snapshotId!);
      for (const w of workloads) ctx.out.info(`${w.action} ${w.kind} ${w.name}${w.removed.length > 0 ? ` (stripped: ${w.removed.join(', ')})` : ''}${w.reason !== undefined ? `: ${w.reason}` : ''}`);
    }
    ctx.out.jsonOut({ message_type: 'summary', volumeRestore: r.metadata.name, namespace, targetPvc: target, snapshotId: st.snapshotId, files: st.files, bytes: st.bytes, verification: st.verification, rtoSeconds: st.rtoSeconds, scaledDown: st.scaledDown ?? null, workloads });
    ctx.out.result(`restored snapshot ${(st.snapshotId ?? '').slice(0, 8)} into PVC ${namespace}/${target}: ${st.files} files, ${st.bytes} bytes, verified (${st.verification?.method ?? ''}); RTO ${st.rtoSeconds} s${st.scaledDown !== undefined ? `; ${st.scaledDown.kind} ${st.scaledDown.name} scaled back to ${st.scaledDown.replicas}` : ''}`);
    return EXIT.OK;
  } finally {
    setInterruptHandler(undefined);
  }
}
