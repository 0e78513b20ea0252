/**
 * k8s/crds: the CustomResourceDefinitions of meshback's resources (BackupPolicy, VolumeBackup,
 * VolumeRestore in meshback.io/v1alpha1; the types are src/k8s/api.ts), built in code with
 * structural OpenAPI v3 schemas the API server validates objects against: required fields, enums
 * for strategy and phase, patterns for durations and schedules, minimum 0 for counts; status
 * subresources, printer columns, short names and the category "meshback" (`kubectl get meshback`).
 * The Helm chart's crds/ directory is this, as YAML (`npm run chart` writes it; a unit test fails
 * when it is stale). Rules: docs/k8s.md, "Custom resources".
 */
import { stringify } from 'yaml';
import { BACKUP_PHASES, GROUP, KINDS, RESTORE_PHASES, VERSION } from './api.ts';

/** An OpenAPI v3 schema as the API server takes it (the subset meshback uses). */
export interface JSONSchemaProps {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description?: string;
  properties?: Record<string, JSONSchemaProps>;
  required?: string[];
  items?: JSONSchemaProps;
  additionalProperties?: JSONSchemaProps;
  enum?: string[];
  pattern?: string;
  format?: string;
  minimum?: number;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  default?: unknown;
  'x-kubernetes-preserve-unknown-fields'?: boolean;
}

export interface CustomResourceDefinition {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels?: Record<string, string> };
  spec: {
    group: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[]; categories: string[] };
    scope: 'Namespaced';
    versions: {
      name: string;
      served: boolean;
      storage: boolean;
      schema: { openAPIV3Schema: JSONSchemaProps };
      subresources: { status: Record<string, never> };
      additionalPrinterColumns: { name: string; type: string; jsonPath: string; description?: string; format?: string; priority?: number }[];
    }[];
  };
}

/** a duration of src/util/units.ts (30s, 15m, 1h30m, 7d; m is minutes) */
export const DURATION_PATTERN = '^([0-9]+(\\.[0-9]+)?(ms|s|m|min|h|d|w|mo|y))+$';
/** "every DURATION", "cron: EXPR" (the policy files' grammar) or a bare cron expression of 5 (or 6) fields */
export const SCHEDULE_PATTERN = '^(every [0-9]+(\\.[0-9]+)?(ms|s|m|min|h|d|w|mo|y)([0-9]+(\\.[0-9]+)?(ms|s|m|min|h|d|w|mo|y))*|(cron: *)?[^ ]+( +[^ ]+){4,5})$';
/** a DNS-1123 name (of a Secret, a PVC, a policy) */
const NAME_PATTERN = '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$';

const str = (description: string, more: Partial<JSONSchemaProps> = {}): JSONSchemaProps => ({ type: 'string', description, ...more });
const int = (description: string, more: Partial<JSONSchemaProps> = {}): JSONSchemaProps => ({ type: 'integer', description, ...more });
const count = (description: string): JSONSchemaProps => int(description, { minimum: 0 });
const num = (description: string): JSONSchemaProps => ({ type: 'number', description, minimum: 0 });
const bool = (description: string): JSONSchemaProps => ({ type: 'boolean', description });
const time = (description: string): JSONSchemaProps => str(description, { format: 'date-time' });
const duration = (description: string): JSONSchemaProps => str(description, { pattern: DURATION_PATTERN });
const name = (description: string): JSONSchemaProps => str(description, { pattern: NAME_PATTERN, minLength: 1, maxLength: 253 });
const obj = (description: string, properties: Record<string, JSONSchemaProps>, required: string[] = []): JSONSchemaProps => ({
  type: 'object',
  description,
  properties,
  ...(required.length > 0 ? { required } : {}),
});
const list = (description: string, items: JSONSchemaProps, more: Partial<JSONSchemaProps> = {}): JSONSchemaProps => ({ type: 'array', description, items, ...more });
const strings = (description: string): JSONSchemaProps => list(description, { type: 'string' });

const secretRef = (description: string): JSONSchemaProps =>
  obj(description, { secretRef: obj('the Secret', { name: name("the Secret's name (in the resource's namespace)") }, ['name']) }, ['secretRef']);

const selector = obj(
  "the PVCs of the policy's namespace this matches, by their labels or the labels of a pod that mounts them; empty: every PVC",
  {
    matchLabels: { type: 'object', description: 'label key -> value, all of which must match', additionalProperties: { type: 'string' } },
    matchExpressions: list(
      'label expressions, all of which must match',
      obj('one expression', { key: str('the label key', { minLength: 1 }), operator: str('how the values are compared', { enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] }), values: strings('the values (In, NotIn)') }, ['key', 'operator']),
    ),
  },
);

const conditions = list(
  'the latest observations of the resource',
  obj(
    'one condition',
    {
      type: str('the condition (e.g. Ready, Scheduled)', { minLength: 1 }),
      status: str('True, False or Unknown', { enum: ['True', 'False', 'Unknown'] }),
      reason: str('a CamelCase reason'),
      message: str('a one-line message that says what to do'),
      lastTransitionTime: time('when status last changed'),
    },
    ['type', 'status'],
  ),
);

const hook = obj(
  'a command run in a named container of the pod that mounts the volume (never "the first container")',
  {
    container: str("the container's name (a native sidecar, an init container with restartPolicy Always, is refused)", { minLength: 1 }),
    command: list('the program and its arguments', { type: 'string' }, { minItems: 1 }),
    timeout: duration('how long it may take (default 1m)'),
    onError: str('what a failure does: Fail the backup (default) or Continue', { enum: ['Fail', 'Continue'] }),
  },
  ['container', 'command'],
);

const verification = obj(
  'how the snapshot was verified',
  { verified: bool('the verification passed'), method: str('what was compared'), files: count('files verified'), bytes: count('bytes verified'), message: str('what failed') },
  ['verified', 'method'],
);

const source = obj(
  'where the agent reads or writes: the volume of a pod as the kubelet mounted it on the node',
  {
    node: str('the node'),
    pod: str('the pod that mounts the volume'),
    podUID: str("the pod's UID (its directory under the kubelet's pods/)"),
    pvName: str("the PersistentVolume's name"),
    pvc: str('the PVC the pod mounts'),
  },
  ['node', 'pod', 'podUID', 'pvName', 'pvc'],
);

/** common to VolumeBackup and VolumeRestore status */
const runStatus = (phases: readonly string[]): Record<string, JSONSchemaProps> => ({
  phase: str('where the run is; phases move forward only; Completed and Failed are terminal', { enum: [...phases] }),
  reason: str('why it failed (SnapshotTimeout, NoAgent, AgentLost, ...)'),
  message: str('a one-line message that says what happened and what to do'),
  startTime: time('when the run started'),
  completionTime: time('when it reached a terminal phase'),
  phaseTime: time("when the current phase began (the controller's timeouts count from it)"),
  source,
  agent: str('the agent that runs it: NODE/POD/INCARNATION'),
  attempt: count('the attempt (an agent restarted mid-run counts one more)'),
  heartbeatTime: time("the agent's last heartbeat"),
  snapshotId: str('the meshback snapshot id'),
  files: count('files'),
  bytes: count('bytes'),
  verification,
  conditions,
});

const BACKUP_POLICY_SPEC = obj(
  'which PVCs, when, how, kept how long, the RPO target, hooks, drills and the repository',
  {
    selector,
    schedule: str('"every DURATION" (e.g. every 15m) or a cron expression (5 fields, e.g. 0 2 * * *, or "cron: 0 2 * * *")', { pattern: SCHEDULE_PATTERN }),
    timeZone: str('IANA time zone of a cron schedule (default UTC)', { minLength: 1 }),
    strategy: str('snapshot: a CSI VolumeSnapshot, backed up from a PVC made of it; live: the mounted volume as it is', { enum: ['snapshot', 'live'], default: 'snapshot' }),
    snapshot: obj('the VolumeSnapshot of the snapshot strategy', {
      className: str('the VolumeSnapshotClass (default: the default one of the PVC\'s driver)'),
      readyTimeout: duration('how long the VolumeSnapshot may take to become readyToUse (default 10m); then the VolumeBackup fails with SnapshotTimeout'),
    }),
    retention: obj('which snapshots forget keeps', {
      keepLast: count('the N newest'),
      keepHourly: count('the newest of each of the N newest hours'),
      keepDaily: count('the same per day'),
      keepWeekly: count('the same per week'),
      keepMonthly: count('the same per month'),
    }),
    rpo: duration('the RPO target: the newest backup older than this is reported'),
    hooks: obj('commands around the backup, in named containers', { pre: list('before the backup', hook), post: list('after the backup', hook) }),
    drill: obj('restore drills: each PVC\'s newest backup restored into a scratch PVC, verified, the PVC deleted', { every: duration('at most this often per PVC (e.g. 24h)') }, ['every']),
    repository: secretRef('a Secret of the policy\'s namespace: keys repository (location) and password; AWS_* keys for S3'),
    suspend: bool('schedule nothing (running backups finish)'),
    historyLimit: count('how many VolumeBackups per PVC to keep as objects (default 3)'),
  },
  ['schedule', 'repository'],
);

const BACKUP_POLICY_STATUS = obj('what the controller observed', {
  observedGeneration: count('the generation of the spec observed'),
  lastScheduleTime: time('when a run was last scheduled'),
  nextScheduleTime: time('when the next run is due'),
  lastSuccessTime: time('when a backup of every matched PVC last completed'),
  volumes: list(
    'the PVCs the selector matches now',
    obj(
      'one PVC',
      {
        pvc: str('the PVC'),
        lastBackup: str('its newest VolumeBackup'),
        lastSnapshotId: str('its newest meshback snapshot'),
        lastSuccessTime: time('when its newest backup completed'),
        ageSeconds: num('the age of that backup'),
        rpoExceeded: bool('that age is beyond the RPO target'),
      },
      ['pvc'],
    ),
  ),
  drills: list(
    "each PVC's newest restore drill",
    obj(
      'one drill',
      {
        pvc: str('the PVC'),
        volumeRestore: str('the VolumeRestore of the drill'),
        snapshotId: str('the snapshot it restored'),
        time: time('when it was made'),
        phase: str('its phase'),
        rtoSeconds: num('its RTO'),
        message: str('its message'),
      },
      ['pvc'],
    ),
  ),
  conditions,
});

const VOLUME_BACKUP_SPEC = obj(
  'one run for one PVC',
  {
    policy: name('the BackupPolicy'),
    pvc: name('the PVC'),
    strategy: str('snapshot or live', { enum: ['snapshot', 'live'] }),
    scheduledTime: time('when the schedule asked for it (or when a user created it)'),
    tags: list('KEY=VALUE tags of the meshback snapshot (policy=, namespace=, pvc= are always added)', { type: 'string', pattern: '^[^=\\s]+=.*$' }),
  },
  ['policy', 'pvc', 'strategy'],
);

const VOLUME_BACKUP_STATUS = obj('the run as the controller and the agent report it', {
  ...runStatus(BACKUP_PHASES),
  volumeSnapshot: str('the CSI VolumeSnapshot taken for this run'),
  bytesAdded: count('bytes new to the repository'),
  durationSeconds: num('how long the backup took'),
  rpoSeconds: num('seconds between the previous successful backup of this PVC and this one'),
  exported: strings('what was exported beside the volume data, as paths in the snapshot'),
  appPods: strings('the running application pods that mounted the PVC when the run began'),
}, ['phase']);

const VOLUME_RESTORE_SPEC = obj(
  'one meshback snapshot into a new or existing PVC',
  {
    snapshot: str('a meshback snapshot id (or a unique prefix), or "latest" of the policy and PVC', { minLength: 1 }),
    repository: secretRef("the repository: a Secret of this namespace (keys as in BackupPolicy); default: the policy's"),
    policy: name('the BackupPolicy whose repository (and, for latest, snapshots) to use'),
    sourcePvc: name('for "latest": the PVC the snapshot was taken of'),
    targetPvc: name('the PVC written to'),
    create: obj('make the target PVC (it must not exist)', {
      storageClassName: str('its storage class'),
      size: str('its size, a quantity (e.g. 10Gi)', { pattern: '^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$' }),
      accessModes: list('its access modes', { type: 'string', enum: ['ReadWriteOnce', 'ReadOnlyMany', 'ReadWriteMany', 'ReadWriteOncePod'] }),
    }, ['size']),
    paths: strings("restore only these paths of the snapshot's volume"),
    scaleDown: bool('scale the Deployment or StatefulSet that mounts the target PVC to zero for the restore, and back after it'),
  },
  ['snapshot', 'targetPvc'],
);

const VOLUME_RESTORE_STATUS = obj('the restore as the controller and the agent report it', {
  ...runStatus(RESTORE_PHASES),
  rtoSeconds: num("from the VolumeRestore's creation to Completed"),
  scaledDown: obj('the workload scaled down for the restore, and its replicas before (scaled back to them after)', { kind: str('Deployment or StatefulSet'), name: str('its name'), replicas: count('its replicas before') }),
}, ['phase']);

type Column = CustomResourceDefinition['spec']['versions'][number]['additionalPrinterColumns'][number];
const AGE: Column = { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' };

function crd(k: (typeof KINDS)[keyof typeof KINDS], description: string, spec: JSONSchemaProps, status: JSONSchemaProps, columns: Column[]): CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${k.plural}.${GROUP}`, labels: { 'app.kubernetes.io/name': 'meshback' } },
    spec: {
      group: GROUP,
      names: { kind: k.kind, listKind: `${k.kind}List`, plural: k.plural, singular: k.singular, shortNames: [...k.shortNames], categories: ['meshback'] },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description,
              properties: { apiVersion: { type: 'string' }, kind: { type: 'string' }, metadata: { type: 'object' }, spec, status },
              required: ['spec'],
            },
          },
          subresources: { status: {} },
          additionalPrinterColumns: [...columns, AGE],
        },
      ],
    },
  };
}

/** The three CRDs, in the order they are installed. */
export function customResourceDefinitions(): CustomResourceDefinition[] {
  return [
    crd(KINDS.BackupPolicy, 'BackupPolicy: which PVCs of a namespace meshback backs up, when, how, kept how long, with which RPO target (docs/k8s.md)', BACKUP_POLICY_SPEC, BACKUP_POLICY_STATUS, [
      { name: 'Schedule', type: 'string', jsonPath: '.spec.schedule' },
      { name: 'Strategy', type: 'string', jsonPath: '.spec.strategy' },
      { name: 'RPO', type: 'string', jsonPath: '.spec.rpo' },
      { name: 'Last Success', type: 'date', jsonPath: '.status.lastSuccessTime' },
    ]),
    crd(KINDS.VolumeBackup, 'VolumeBackup: one backup run for one PVC (docs/k8s.md)', VOLUME_BACKUP_SPEC, VOLUME_BACKUP_STATUS, [
      { name: 'Policy', type: 'string', jsonPath: '.spec.policy' },
      { name: 'PVC', type: 'string', jsonPath: '.spec.pvc' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'Node', type: 'string', jsonPath: '.status.source.node' },
      { name: 'Snapshot', type: 'string', jsonPath: '.status.snapshotId' },
      { name: 'Bytes', type: 'integer', jsonPath: '.status.bytes' },
    ]),
    crd(KINDS.VolumeRestore, 'VolumeRestore: one meshback snapshot restored into a new or existing PVC (docs/k8s.md)', VOLUME_RESTORE_SPEC, VOLUME_RESTORE_STATUS, [
      { name: 'Snapshot', type: 'string', jsonPath: '.spec.snapshot' },
      { name: 'Target', type: 'string', jsonPath: '.spec.targetPvc' },
      { name: 'Phase', type: 'string', jsonPath: '.status.phase' },
      { name: 'RTO', type: 'number', jsonPath: '.status.rtoSeconds', description: 'seconds from creation to Completed' },
    ]),
  ];
}

/** Objects as a multi-document YAML stream (`---` between them), no validation. */
export function toYamlStream(objects: readonly unknown[]): string {
  return objects.map((o) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n');
}

/** The CRDs as the chart's crds/ files: file name -> YAML text. */
export function crdFiles(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of customResourceDefinitions()) out[`${c.metadata.name}.yaml`] = `# generated from src/k8s/crds.ts by 'npm run chart': do not edit\n${toYamlStream([c])}`;
  return out;
}
