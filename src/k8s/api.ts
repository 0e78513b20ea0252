/**
 * k8s/api: meshback's Kubernetes resources (group meshback.io, version v1alpha1) as TypeScript types,
 * the names, labels and annotations its controller and agents agree on, and the RBAC rules each of
 * them needs (the one list the chart, `meshback k8s install --render` and docs/k8s.md come from).
 *
 *   BackupPolicy   which PVCs of a namespace, when, how (snapshot or live), kept how long, RPO target,
 *                  hooks, drills, and the repository (a Secret). The controller turns it into
 *                  VolumeBackups on schedule.
 *   VolumeBackup   one run for one PVC. The controller takes the VolumeSnapshot and mounts it (or
 *                  finds the pod that mounts the live volume), names the node; the agent on that node
 *                  backs the volume up, verifies the snapshot and reports.
 *   VolumeRestore  one meshback snapshot into a new or existing PVC; the controller mounts the PVC
 *                  on a node, the agent there restores and verifies, RTO reported.
 *
 * Phases move forward only; every terminal phase has a reason and a one-line message that says what
 * to do. Everything the controller makes (VolumeSnapshots, PVCs, helper pods) carries an
 * ownerReference to the VolumeBackup or VolumeRestore it serves and the label MANAGED_BY, so the
 * garbage collector removes it with its owner and the controller finds it after a restart.
 */

export const GROUP = 'meshback.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;

export const KINDS = {
  BackupPolicy: { kind: 'BackupPolicy', plural: 'backuppolicies', singular: 'backuppolicy', shortNames: ['mbp'] },
  VolumeBackup: { kind: 'VolumeBackup', plural: 'volumebackups', singular: 'volumebackup', shortNames: ['mvb'] },
  VolumeRestore: { kind: 'VolumeRestore', plural: 'volumerestores', singular: 'volumerestore', shortNames: ['mvr'] },
} as const;

/** on everything the controller creates */
export const MANAGED_BY = { key: 'app.kubernetes.io/managed-by', value: 'meshback' } as const;
/** on VolumeBackups, VolumeRestores and their objects: the policy's name */
export const POLICY_LABEL = 'meshback.io/policy';
/** on VolumeBackups and VolumeRestores once a node is chosen: the agent of that node watches this label */
export const NODE_LABEL = 'meshback.io/node';
/** on VolumeBackups: the PVC's name (a label value: names of at most 63 characters) */
export const PVC_LABEL = 'meshback.io/pvc';
/** on helper pods and PVCs: the VolumeBackup or VolumeRestore they serve */
export const OWNER_LABEL = 'meshback.io/owner';
/** on the VolumeRestores of restore drills */
export const DRILL_LABEL = 'meshback.io/drill';
/** the Lease the controllers elect their leader with (in the controller's namespace) */
export const LEASE_NAME = 'meshback-controller';

/** On every pod meshback creates: stay out of every mesh's injection (a sidecar would keep the pod from completing). */
export const NO_INJECTION = {
  labels: { 'sidecar.istio.io/inject': 'false' },
  annotations: { 'sidecar.istio.io/inject': 'false', 'linkerd.io/inject': 'disabled', 'consul.hashicorp.com/connect-inject': 'false' },
} as const;

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[];
  finalizers?: string[];
  deletionTimestamp?: string;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}

/** A command run in a named container of the pod that mounts the volume (never "the first container"). */
export interface PodHook {
  /** the container's name; a native sidecar (an init container with restartPolicy Always) is refused with a clear error */
  container: string;
  command: string[];
  /** duration text, e.g. 30s (default 1m) */
  timeout?: string;
  /** what a failure does: Fail the backup (default) or Continue */
  onError?: 'Fail' | 'Continue';
}

export interface BackupPolicySpec {
  /** the PVCs of the policy's namespace this matches, by their labels or the labels of a pod that mounts them; empty: every PVC */
  selector?: LabelSelector;
  /** "every 15m" or a 5-field cron expression (the grammar of policy files) */
  schedule: string;
  /** IANA time zone of a cron schedule (default UTC) */
  timeZone?: string;
  /** snapshot: a CSI VolumeSnapshot, backed up from a PVC made of it (default); live: the mounted volume as it is */
  strategy?: 'snapshot' | 'live';
  snapshot?: {
    /** the VolumeSnapshotClass (default: the one marked default for the PVC's driver) */
    className?: string;
    /** how long a VolumeSnapshot may take to become readyToUse (default 10m); then the VolumeBackup fails with SnapshotTimeout */
    readyTimeout?: string;
  };
  retention?: { keepLast?: number; keepHourly?: number; keepDaily?: number; keepWeekly?: number; keepMonthly?: number };
  /** the RPO target, e.g. 1h: the newest backup older than this is reported (status, discover, metrics) */
  rpo?: string;
  hooks?: { pre?: PodHook[]; post?: PodHook[] };
  /** restore drills: at most this often (a duration), each PVC's newest backup is restored into a scratch PVC, verified and the PVC deleted; absent: none */
  drill?: { every: string };
  /** a Secret of the policy's namespace: keys `repository` (location) and `password`; AWS_* keys for S3 */
  repository: { secretRef: { name: string } };
  /** true: schedule nothing (running backups finish) */
  suspend?: boolean;
  /** how many VolumeBackups of this policy to keep as objects (default 3 per PVC; the snapshots stay in the repository) */
  historyLimit?: number;
}

export interface BackupPolicyStatus {
  observedGeneration?: number;
  lastScheduleTime?: string;
  nextScheduleTime?: string;
  lastSuccessTime?: string;
  /** PVCs the selector matches now */
  volumes?: { pvc: string; lastBackup?: string; lastSnapshotId?: string; lastSuccessTime?: string; ageSeconds?: number; rpoExceeded?: boolean }[];
  /** each PVC's newest restore drill (a VolumeRestore labelled meshback.io/drill) */
  drills?: { pvc: string; volumeRestore: string; snapshotId: string; time: string; phase: string; rtoSeconds?: number; message?: string }[];
  conditions?: Condition[];
}

export interface BackupPolicy {
  apiVersion: typeof API_VERSION;
  kind: 'BackupPolicy';
  metadata: ObjectMeta;
  spec: BackupPolicySpec;
  status?: BackupPolicyStatus;
}

export const BACKUP_PHASES = ['Pending', 'Snapshotting', 'Mounting', 'Queued', 'Running', 'Verifying', 'Completed', 'Failed'] as const;
export type BackupPhase = (typeof BACKUP_PHASES)[number];
export const RESTORE_PHASES = ['Pending', 'Mounting', 'Queued', 'Running', 'Verifying', 'Completed', 'Failed'] as const;
export type RestorePhase = (typeof RESTORE_PHASES)[number];
export const TERMINAL = new Set<string>(['Completed', 'Failed']);

/** Reasons of a Failed phase (status.reason), each with its one-line status.message. */
export const FAILURE_REASONS = [
  'SnapshotTimeout', // the VolumeSnapshot was not readyToUse within spec.snapshot.readyTimeout
  'SnapshotFailed', // the VolumeSnapshot reported an error
  'MountTimeout', // the helper pod did not run within the mount timeout
  'NoPod', // strategy live: no running pod mounts the PVC
  'PvcNotFound',
  'NoAgent', // no agent took the Queued work within the agent timeout
  'AgentLost', // the agent stopped reporting (no heartbeat within the heartbeat timeout)
  'AgentRestarted', // the agent restarted mid-run more often than its attempts allow
  'HookFailed',
  'RepositoryError', // the Secret, the password or the repository
  'BackupFailed',
  'VerifyFailed',
  'RestoreFailed',
  'Cancelled',
] as const;
export type FailureReason = (typeof FAILURE_REASONS)[number];

/** Where the agent reads or writes: the volume of a pod as the kubelet mounted it on the node. */
export interface VolumeSource {
  node: string;
  /** the pod that mounts the volume (the application's pod for live, the helper pod otherwise) */
  pod: string;
  podUID: string;
  /** the PersistentVolume's name (the directory under the pod's volumes/ the kubelet uses) */
  pvName: string;
  /** the PVC the pod mounts (the snapshot's PVC for the snapshot strategy) */
  pvc: string;
}

export interface VolumeBackupSpec {
  policy: string;
  pvc: string;
  strategy: 'snapshot' | 'live';
  /** when the schedule asked for it (or when a user created it) */
  scheduledTime?: string;
  /** KEY=VALUE tags for the meshback snapshot (policy=, namespace=, pvc= are always added) */
  tags?: string[];
}

/** What a VolumeBackup's and a VolumeRestore's status share: one run on one node. */
export interface RunStatus<P extends string> {
  phase: P;
  reason?: FailureReason | string;
  message?: string;
  startTime?: string;
  completionTime?: string;
  /** when the current phase began (the controller's timeouts count from it) */
  phaseTime?: string;
  source?: VolumeSource;
  /** the agent that runs it: NODE/HOST-PID-RANDOM; a restarted agent has a new identity */
  agent?: string;
  attempt?: number;
  heartbeatTime?: string;
  /** the meshback snapshot id */
  snapshotId?: string;
  files?: number;
  bytes?: number;
  verification?: { verified: boolean; method: string; files?: number; bytes?: number; message?: string };
  conditions?: Condition[];
}

export interface VolumeBackupStatus extends RunStatus<BackupPhase> {
  /** the CSI VolumeSnapshot taken for this run (snapshot strategy) */
  volumeSnapshot?: string;
  bytesAdded?: number;
  durationSeconds?: number;
  /** seconds between the previous successful backup of this PVC and this one (the data a loss now would cost) */
  rpoSeconds?: number;
  /** what the agent exported beside the volume data (mesh configuration, workload manifests, Envoy admin state), as paths in the snapshot */
  exported?: string[];
  /** the running application pods that mounted the PVC when the run began (their hooks ran; their workload and Envoy state are exported) */
  appPods?: string[];
}

export interface VolumeBackup {
  apiVersion: typeof API_VERSION;
  kind: 'VolumeBackup';
  metadata: ObjectMeta;
  spec: VolumeBackupSpec;
  status?: VolumeBackupStatus;
}

export interface VolumeRestoreSpec {
  /** a meshback snapshot id (or a unique prefix), or "latest" of the policy and PVC */
  snapshot: string;
  /** the repository: a Secret of this namespace (keys as in BackupPolicy), or the policy's */
  repository?: { secretRef: { name: string } };
  policy?: string;
  /** for "latest": the PVC the snapshot was taken of */
  sourcePvc?: string;
  /** the PVC written to */
  targetPvc: string;
  /** make the target PVC (it must not exist) */
  create?: { storageClassName?: string; size: string; accessModes?: string[] };
  /** restore only these paths of the snapshot's volume */
  paths?: string[];
  /** scale the workload that mounts the target PVC to zero for the restore, and back (Deployment or StatefulSet) */
  scaleDown?: boolean;
}

export interface VolumeRestoreStatus extends RunStatus<RestorePhase> {
  /** from the VolumeRestore's creation to Completed */
  rtoSeconds?: number;
  /** the workload scaled down for the restore, and its replicas before (scaled back to them after) */
  scaledDown?: { kind: string; name: string; replicas: number };
}

export interface VolumeRestore {
  apiVersion: typeof API_VERSION;
  kind: 'VolumeRestore';
  metadata: ObjectMeta;
  spec: VolumeRestoreSpec;
  status?: VolumeRestoreStatus;
}

/** One RBAC rule and why meshback needs it (docs/k8s.md lists them). */
export interface RbacRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  why: string;
}

/** The controller's ClusterRole: cluster-wide because policies live in the application namespaces. */
export const CONTROLLER_RULES: RbacRule[] = [
  { apiGroups: [GROUP], resources: ['backuppolicies'], verbs: ['get', 'list', 'watch'], why: 'reads the policies it schedules' },
  { apiGroups: [GROUP], resources: ['backuppolicies/status'], verbs: ['get', 'patch', 'update'], why: "reports each policy's schedule, last success and RPO state" },
  { apiGroups: [GROUP], resources: ['volumebackups'], verbs: ['get', 'list', 'watch', 'create', 'delete', 'patch'], why: 'creates one VolumeBackup per PVC and run, labels it with its node, deletes those beyond the history limit' },
  { apiGroups: [GROUP], resources: ['volumebackups/status'], verbs: ['get', 'patch', 'update'], why: 'moves a VolumeBackup through Snapshotting, Mounting and Queued; fails it on a timeout' },
  { apiGroups: [GROUP], resources: ['volumerestores'], verbs: ['get', 'list', 'watch', 'create', 'delete', 'patch'], why: "reads the restores users ask for and labels them with their node; creates a policy's restore drills and deletes those beyond three per PVC" },
  { apiGroups: [GROUP], resources: ['volumerestores/status'], verbs: ['get', 'patch', 'update'], why: 'moves a VolumeRestore through Mounting and Queued; fails it on a timeout' },
  { apiGroups: ['snapshot.storage.k8s.io'], resources: ['volumesnapshots'], verbs: ['get', 'list', 'watch', 'create', 'delete'], why: 'takes the point-in-time copy of a PVC and deletes it after the backup' },
  { apiGroups: ['snapshot.storage.k8s.io'], resources: ['volumesnapshotclasses'], verbs: ['get', 'list'], why: "finds the snapshot class of a PVC's CSI driver" },
  { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['get', 'list', 'watch', 'create', 'delete'], why: 'finds the PVCs a policy selects; makes a PVC from a VolumeSnapshot (and a restore target with create) and deletes its own' },
  { apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch', 'create', 'delete'], why: 'finds the pod and node that mount a PVC; runs the helper pod that mounts a snapshot PVC or a restore target on a node, and deletes it' },
  { apiGroups: ['storage.k8s.io'], resources: ['storageclasses'], verbs: ['get', 'list'], why: "finds a PVC's CSI driver for its snapshot class" },
  { apiGroups: [''], resources: ['pods/exec'], verbs: ['get', 'create'], why: "runs a snapshot policy's pre and post hooks in the named container of the application pod, around the VolumeSnapshot (an exec over WebSocket is a GET the API server also authorizes as create)" },
  { apiGroups: ['apps'], resources: ['deployments/scale', 'statefulsets/scale'], verbs: ['get', 'patch', 'update'], why: 'scales the owning workload down and up around a restore into a PVC it mounts (VolumeRestore with scale-down)' },
  { apiGroups: ['apps'], resources: ['deployments', 'statefulsets', 'replicasets'], verbs: ['get', 'list'], why: "finds the workload that owns a PVC's pods" },
];

/** The controller's Role in its own namespace: leader election. */
export const CONTROLLER_NAMESPACE_RULES: RbacRule[] = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'], why: 'leader election: one controller acts at a time (the Lease meshback-controller)' },
];

/** The agent's ClusterRole: it acts on work labelled with its own node only, but that work lives in every namespace. */
export const AGENT_RULES: RbacRule[] = [
  { apiGroups: [GROUP], resources: ['volumebackups', 'volumerestores'], verbs: ['get', 'list', 'watch'], why: 'watches the work labelled with its node' },
  { apiGroups: [GROUP], resources: ['volumebackups/status', 'volumerestores/status'], verbs: ['get', 'patch', 'update'], why: 'claims the work (a conditional update: one agent wins), reports heartbeat, progress and result' },
  { apiGroups: [GROUP], resources: ['backuppolicies'], verbs: ['get'], why: "reads the policy of a backup: tags, hooks, the repository Secret's name" },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get'], why: 'reads the repository location and password from the Secret a policy or restore names (get by name only: no list, no watch)' },
  { apiGroups: [''], resources: ['pods'], verbs: ['get'], why: "checks that the pod whose volume it reads is still the one the kubelet mounted (its UID)" },
  { apiGroups: [''], resources: ['pods/exec'], verbs: ['get', 'create'], why: "runs a live policy's pre and post hooks in the named container of the application pod, around the backup (an exec over WebSocket is a GET the API server also authorizes as create)" },
  { apiGroups: [''], resources: ['pods/portforward'], verbs: ['get', 'create'], why: "captures Envoy's admin state (config_dump, clusters, stats on port 15000) of the application pod's Istio proxy into the snapshot; without it a warning, not a failure" },
  { apiGroups: ['apps'], resources: ['deployments', 'statefulsets', 'daemonsets', 'replicasets'], verbs: ['get', 'list'], why: 'exports the workload that mounts the PVC into the snapshot, beside the volume data' },
  { apiGroups: [''], resources: ['services', 'configmaps'], verbs: ['get', 'list'], why: "exports the workload's services and configuration (not its Secrets) into the snapshot" },
  { apiGroups: ['networking.istio.io', 'security.istio.io', 'policy.linkerd.io', 'linkerd.io', 'consul.hashicorp.com'], resources: ['*'], verbs: ['get', 'list'], why: "exports the namespace's mesh configuration (Istio, Linkerd, Consul) into the snapshot" },
  { apiGroups: ['apiextensions.k8s.io'], resources: ['customresourcedefinitions'], verbs: ['get', 'list'], why: 'finds which mesh resources the cluster has, to export them' },
];

/** Where the kubelet keeps the pods' volumes on a node (the agent's --kubelet-root). */
export const KUBELET_ROOT = '/var/lib/kubelet';
