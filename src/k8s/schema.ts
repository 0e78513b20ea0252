/**
 * k8s/schema: the JSON summary of `meshback k8s discover --json`, as a valibot schema (exported
 * to docs/schemas/k8s-discover.json by `npm run schemas`; the e2e test checks the output with it).
 */
import { about, v } from '../util/schema.ts';

export const MESHES = ['istio', 'istio-native', 'linkerd', 'linkerd-native', 'consul', 'none'] as const;
export type Mesh = (typeof MESHES)[number];
export const STATES = ['stateful', 'stateless', 'unmounted'] as const;
export type VolumeState = (typeof STATES)[number];
export const SNAPSHOT_SUPPORT = ['yes', 'no', 'no snapshot API', 'no storage class'] as const;

export const WorkloadSchema = v.object({
  kind: about(v.string(), 'Deployment, StatefulSet, DaemonSet, CronJob, Job, ReplicaSet, ... or Pod for a pod no controller owns'),
  name: v.string(),
});
export type Workload = v.InferOutput<typeof WorkloadSchema>;

export const DiscoveredPodSchema = v.object({
  name: v.string(),
  node: about(v.nullable(v.string()), 'the node the pod runs on; null while unscheduled'),
  phase: about(v.nullable(v.string()), 'the pod phase (Pending, Running, ...)'),
  workload: about(WorkloadSchema, 'the top of the ownerReferences chain: Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob, Pod -> StatefulSet | DaemonSet'),
  mesh: about(v.picklist(MESHES), 'the service mesh whose proxy the pod carries, found by container names and annotations, never by position'),
  meshEvidence: about(v.array(v.string()), 'what the mesh was found by: "container istio-proxy", "initContainer istio-proxy (restartPolicy Always)", "annotation sidecar.istio.io/status", ...'),
  readOnly: about(v.boolean(), 'true when every mount of the claim in this pod is read-only'),
});
export type DiscoveredPod = v.InferOutput<typeof DiscoveredPodSchema>;

export const DiscoveredPvcSchema = v.object({
  namespace: v.string(),
  name: v.string(),
  phase: about(v.nullable(v.string()), 'Bound, Pending or Lost'),
  volume: about(v.nullable(v.string()), 'the bound PersistentVolume'),
  accessModes: v.array(v.string()),
  capacity: about(v.nullable(v.string()), 'status.capacity.storage, else the requested size'),
  storageClass: about(v.nullable(v.string()), 'null: the claim names no class (or "")'),
  provisioner: about(v.nullable(v.string()), "the storage class's provisioner (a CSI driver's name); null when the class is unknown"),
  snapshotClass: about(v.nullable(v.string()), 'a VolumeSnapshotClass whose driver is that provisioner (the default one first)'),
  snapshotSupport: about(v.picklist(SNAPSHOT_SUPPORT), '"yes" (snapshotClass names it), "no" (no class serves the driver), "no snapshot API" (the VolumeSnapshot CRDs are not installed), "no storage class"'),
  state: about(v.picklist(STATES), 'stateful: owned by a StatefulSet, or a bound ReadWriteOnce(Pod) claim mounted read-write; stateless: mounted otherwise; unmounted: no pod mounts it'),
  stateReason: about(v.string(), 'why, in a few words'),
  policy: about(v.nullable(v.string()), 'the BackupPolicies whose selector matches the claim or a pod that mounts it (names joined with ","), else the label meshback.io/policy of the claim or its pods (a CronJob-run policy); null: none'),
  workloads: about(v.array(WorkloadSchema), 'the distinct workloads of the pods that mount it'),
  pods: v.array(DiscoveredPodSchema),
  newestBackup: about(
    v.nullable(
      v.object({
        volumeBackup: about(v.string(), 'the newest Completed VolumeBackup of the claim'),
        snapshotId: v.string(),
        time: about(v.string(), 'when it completed (RFC 3339)'),
        ageSeconds: v.number(),
        rpoSeconds: about(v.nullable(v.number()), "the RPO target of its policy (spec.rpo); null: none"),
        rpoExceeded: about(v.nullable(v.boolean()), 'ageSeconds > rpoSeconds; null: no target'),
      }),
    ),
    'the age of the newest backup against the RPO target; null: no completed VolumeBackup (or the meshback.io resources are not installed or readable)',
  ),
});
export type DiscoveredPvc = v.InferOutput<typeof DiscoveredPvcSchema>;

export const DiscoverySchema = v.object({
  message_type: v.literal('summary'),
  server: about(v.string(), 'the API server asked'),
  namespace: about(v.nullable(v.string()), 'the namespace listed; null: all namespaces (-A)'),
  selector: about(v.nullable(v.string()), 'the -l label selector, if any'),
  snapshotApi: about(v.boolean(), 'whether the VolumeSnapshot API (snapshot.storage.k8s.io/v1) is installed'),
  pvcs: v.array(DiscoveredPvcSchema),
});
export type Discovery = v.InferOutput<typeof DiscoverySchema>;
