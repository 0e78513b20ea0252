/**
 * k8s/cronjob: the CronJob alternative to the controller (`meshback k8s cronjob --policy NAME`).
 * For one BackupPolicy and each PVC its selector matches: a ConfigMap holding a policy file for
 * `meshback run` (docs/design.md, "Policies": the policy's sources are /data/PVC) and a plain
 * batch/v1 CronJob whose pod mounts the PVC read-only at /data/PVC, takes the repository location
 * and password from the policy's Secret (keys `repository` and `password`; AWS_* keys for S3 as
 * they are), stays out of mesh injection (NO_INJECTION) and runs
 * `meshback run POLICY --config /etc/meshback/policies.yaml`. No controller, no agent, no
 * VolumeSnapshot: the live volume is read as it is. docs/k8s.md, "Without the controller: CronJobs".
 */
import { createHash } from 'node:crypto';
import { ApiException, CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';
import { MeshbackError, NotFoundError, UsageError, errMessage } from '../errors/index.ts';
import { scheduleProblem } from '../policy/schema.ts';
import { parseDuration } from '../util/units.ts';
import { API_VERSION, GROUP, KINDS, NO_INJECTION, POLICY_LABEL, PVC_LABEL, VERSION, type BackupPolicy, type LabelSelector } from './api.ts';
import type { K8sObject } from './install.ts';

export const POLICY_FILE_DIR = '/etc/meshback';
export const POLICY_FILE = `${POLICY_FILE_DIR}/policies.yaml`;
/** how long a run waits for a repository lock another run holds (PVCs of one policy share a repository) */
export const RETRY_LOCK = '10m';

/**
 * A policy's schedule as a 5-field cron expression: "cron: EXPR" and a bare EXPR as they are;
 * "every DURATION" when the duration divides an hour or a day evenly (every 15m: *\/15 * * * *,
 * every 6h: 0 *\/6 * * *, every 1d: 0 0 * * *); anything else is a UsageError that says what to write.
 */
export function cronOf(schedule: string): string {
  const s = schedule.trim();
  const every = /^every\s+(\S+)$/.exec(s);
  if (every !== null) {
    const ms = parseDuration(every[1]!, 'schedule');
    const bad = (why: string): never => {
      throw new UsageError(`schedule ${JSON.stringify(s)} cannot be a CronJob schedule (${why}): use a duration that divides an hour or a day evenly (every 5m, 15m, 1h, 6h, 24h) or a cron expression (e.g. "0 2 * * *")`);
    };
    if (ms % 60_000 !== 0) bad('a CronJob runs on whole minutes');
    const min = ms / 60_000;
    if (min < 60) return 60 % min === 0 ? (min === 1 ? '* * * * *' : `*/${min} * * * *`) : bad(`${min} minutes do not divide an hour`);
    if (min % 60 !== 0) bad('more than an hour but not whole hours');
    const h = min / 60;
    if (h < 24) return 24 % h === 0 ? (h === 1 ? '0 * * * *' : `0 */${h} * * *`) : bad(`${h} hours do not divide a day`);
    if (h === 24) return '0 0 * * *';
    return bad('longer than a day');
  }
  const expr = s.replace(/^cron:\s*/, '').trim();
  const fields = expr.split(/\s+/);
  if (fields.length !== 5) throw new UsageError(`schedule ${JSON.stringify(s)} is not a 5-field cron expression${fields.length === 6 ? ' (a CronJob has no seconds field)' : ''}: write minute hour day-of-month month day-of-week, e.g. "0 2 * * *", or "every 15m"`);
  const problem = scheduleProblem(`cron: ${expr}`);
  if (problem !== undefined) throw new UsageError(`schedule ${JSON.stringify(s)} ${problem}`);
  return expr;
}

/** Does `sel` match `labels`? (an absent or empty selector matches everything) */
export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string> = {}): boolean {
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of sel?.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, e.key);
    const vals = e.values ?? [];
    if (e.operator === 'In' && !(has && vals.includes(labels[e.key]!))) return false;
    if (e.operator === 'NotIn' && has && vals.includes(labels[e.key]!)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

/** The policy file `meshback run` reads in the CronJob's pod: one policy, the PVC's mount as its source. */
export function policyFileFor(p: BackupPolicy, pvc: string): string {
  const r = p.spec.retention ?? {};
  const keep: Record<string, number> = {};
  for (const [from, to] of [
    ['keepLast', 'keep-last'],
    ['keepHourly', 'keep-hourly'],
    ['keepDaily', 'keep-daily'],
    ['keepWeekly', 'keep-weekly'],
    ['keepMonthly', 'keep-monthly'],
  ] as const) {
    const n = r[from];
    if (n !== undefined && n > 0) keep[to] = n;
  }
  const policy: Record<string, unknown> = {
    // the repository and password come from MESHBACK_REPO and MESHBACK_PASSWORD (the policy's Secret)
    sources: [`/data/${pvc}`],
    schedule: `cron: ${cronOf(p.spec.schedule)}`,
    ...(p.spec.timeZone !== undefined ? { timezone: p.spec.timeZone } : {}),
    ...(Object.keys(keep).length > 0 ? { retention: keep } : {}),
    ...(p.spec.rpo !== undefined ? { rpo: p.spec.rpo } : {}),
    tags: { namespace: p.metadata.namespace, pvc },
  };
  return `# meshback k8s cronjob: BackupPolicy ${p.metadata.namespace}/${p.metadata.name}, PVC ${pvc}\n${stringify({ version: 1, policies: { [p.metadata.name]: policy } }, { lineWidth: 0 })}`;
}

export interface CronJobOptions {
  image: string;
  imagePullPolicy?: string;
}

/** at most 52 characters (a CronJob's name), unique per policy and PVC */
export function cronJobName(policy: string, pvc: string): string {
  const n = `meshback-${policy}-${pvc}`;
  if (n.length <= 52) return n;
  return `${n.slice(0, 43).replace(/[-.]+$/, '')}-${createHash('sha256').update(n).digest('hex').slice(0, 8)}`;
}

/** The ConfigMap and the CronJob that back up `pvc` by policy `p`. */
export function renderCronJob(p: BackupPolicy, pvc: string, o: CronJobOptions): [K8sObject, K8sObject] {
  const ns = p.metadata.namespace;
  const name = cronJobName(p.metadata.name, pvc);
  const secret = p.spec.repository.secretRef.name;
  const labels = { 'app.kubernetes.io/name': 'meshback', 'app.kubernetes.io/component': 'cronjob', [POLICY_LABEL]: p.metadata.name, [PVC_LABEL]: pvc };
  const configMap: K8sObject = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: ns, labels }, data: { 'policies.yaml': policyFileFor(p, pvc) } };
  const cronJob: K8sObject = {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name, namespace: ns, labels },
    spec: {
      schedule: cronOf(p.spec.schedule),
      ...(p.spec.timeZone !== undefined ? { timeZone: p.spec.timeZone } : {}),
      concurrencyPolicy: 'Forbid',
      suspend: p.spec.suspend ?? false,
      startingDeadlineSeconds: 300,
      successfulJobsHistoryLimit: p.spec.historyLimit ?? 3,
      failedJobsHistoryLimit: 3,
      jobTemplate: {
        metadata: { labels },
        spec: {
          backoffLimit: 1,
          template: {
            metadata: { labels: { ...labels, ...NO_INJECTION.labels }, annotations: { ...NO_INJECTION.annotations } },
            spec: {
              restartPolicy: 'Never',
              // root with only DAC_READ_SEARCH: it reads the files of any owner on the volume, and changes nothing
              securityContext: { runAsUser: 0, runAsGroup: 0, seccompProfile: { type: 'RuntimeDefault' } },
              containers: [
                {
                  name: 'meshback',
                  image: o.image,
                  imagePullPolicy: o.imagePullPolicy ?? 'IfNotPresent',
                  command: ['meshback', 'run', p.metadata.name, '--config', POLICY_FILE, '--retry-lock', RETRY_LOCK],
                  env: [
                    { name: 'MESHBACK_REPO', valueFrom: { secretKeyRef: { name: secret, key: 'repository' } } },
                    { name: 'MESHBACK_PASSWORD', valueFrom: { secretKeyRef: { name: secret, key: 'password' } } },
                    { name: 'XDG_STATE_HOME', value: '/tmp/state' },
                    { name: 'MESHBACK_CACHE_DIR', value: '/tmp/cache' },
                  ],
                  // AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ... of an S3 repository, as the Secret has them
                  envFrom: [{ secretRef: { name: secret } }],
                  securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'], add: ['DAC_READ_SEARCH'] } },
                  volumeMounts: [
                    { name: 'data', mountPath: `/data/${pvc}`, readOnly: true },
                    { name: 'policy', mountPath: POLICY_FILE_DIR, readOnly: true },
                    { name: 'tmp', mountPath: '/tmp' },
                  ],
                },
              ],
              volumes: [
                { name: 'data', persistentVolumeClaim: { claimName: pvc, readOnly: true } },
                { name: 'policy', configMap: { name } },
                { name: 'tmp', emptyDir: {} },
              ],
            },
          },
        },
      },
    },
  };
  return [configMap, cronJob];
}

/** What the CronJob alternative does not do of a policy: one line each (the CLI warns with them). */
export function cronJobCaveats(p: BackupPolicy): string[] {
  const out: string[] = [];
  if ((p.spec.strategy ?? 'snapshot') === 'snapshot') out.push(`policy ${p.metadata.name} has strategy snapshot, but a CronJob reads the live volume (no VolumeSnapshot): use the controller for point-in-time copies`);
  if ((p.spec.hooks?.pre?.length ?? 0) + (p.spec.hooks?.post?.length ?? 0) > 0) out.push(`policy ${p.metadata.name} has hooks, which a CronJob does not run (they run in the application's containers): use the controller for them`);
  if (p.spec.drill !== undefined) out.push(`policy ${p.metadata.name} asks for restore drills, which a CronJob does not run: schedule 'meshback drill' or use the controller`);
  return out;
}

/** A BackupPolicy from YAML text (the first document whose kind is BackupPolicy); the namespace given wins over none. */
export function parseBackupPolicy(text: string, file: string, namespace: string | undefined, name: string): BackupPolicy {
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) throw new UsageError(`${file}: not a YAML stream: give a file of BackupPolicy objects`);
  for (const d of docs) {
    if (d.errors.length > 0) throw new UsageError(`${file}: not valid YAML (${d.errors[0]!.message.split('\n')[0]}): fix the file`);
    const o = d.toJS() as Partial<BackupPolicy> | null;
    if (o?.kind !== 'BackupPolicy' || o.metadata?.name !== name) continue;
    if (o.apiVersion !== API_VERSION) throw new UsageError(`${file}: BackupPolicy ${name} has apiVersion ${JSON.stringify(o.apiVersion)}: it must be ${API_VERSION}`);
    const ns = o.metadata.namespace ?? namespace ?? 'default';
    return checkPolicy({ ...o, metadata: { ...o.metadata, namespace: ns } } as BackupPolicy, file);
  }
  throw new NotFoundError(`${file} has no BackupPolicy named ${name}: check the name, or the file`);
}

function checkPolicy(p: BackupPolicy, where: string): BackupPolicy {
  const sch = p.spec?.schedule;
  if (typeof sch !== 'string' || sch === '') throw new UsageError(`${where}: BackupPolicy ${p.metadata.name} has no spec.schedule: give "every 15m" or a cron expression`);
  if (typeof p.spec.repository?.secretRef?.name !== 'string') throw new UsageError(`${where}: BackupPolicy ${p.metadata.name} has no spec.repository.secretRef.name: name the Secret with the keys repository and password`);
  return p;
}

const status = (e: unknown): number | undefined => (e instanceof ApiException ? e.code : undefined);

/** The BackupPolicy `name` of `namespace`, from the cluster. */
export async function readBackupPolicy(kc: KubeConfig, namespace: string, name: string): Promise<BackupPolicy> {
  try {
    const o = (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: KINDS.BackupPolicy.plural, name })) as BackupPolicy;
    return checkPolicy(o, `the cluster (${namespace})`);
  } catch (e) {
    if (e instanceof MeshbackError) throw e;
    const code = status(e);
    if (code === 404) throw new NotFoundError(`BackupPolicy ${name} does not exist in namespace ${namespace} (or the CRD is not installed): check with 'kubectl -n ${namespace} get backuppolicies', or give the policy with -f FILE`);
    if (code === 401 || code === 403) throw new MeshbackError('CLUSTER', `the cluster refused to read BackupPolicy ${namespace}/${name} (HTTP ${code}): use credentials that may get backuppolicies.meshback.io`);
    throw new MeshbackError('CLUSTER', `cannot read BackupPolicy ${namespace}/${name}: ${errMessage(e).split('\n')[0]}: check the cluster and the kubeconfig`);
  }
}

/** The PVCs of the policy's namespace its selector matches: by their own labels or those of a pod that mounts them. */
export async function matchingPvcs(kc: KubeConfig, p: BackupPolicy): Promise<string[]> {
  const core = kc.makeApiClient(CoreV1Api);
  const ns = p.metadata.namespace;
  try {
    const [pvcs, pods] = await Promise.all([core.listNamespacedPersistentVolumeClaim({ namespace: ns }), core.listNamespacedPod({ namespace: ns })]);
    const byPod = new Set<string>();
    for (const pod of pods.items) {
      if (!selectorMatches(p.spec.selector, pod.metadata?.labels)) continue;
      for (const v of pod.spec?.volumes ?? []) if (v.persistentVolumeClaim?.claimName !== undefined) byPod.add(v.persistentVolumeClaim.claimName);
    }
    return pvcs.items
      .map((c) => ({ name: c.metadata?.name ?? '', labels: c.metadata?.labels }))
      .filter((c) => c.name !== '' && (selectorMatches(p.spec.selector, c.labels) || byPod.has(c.name)))
      .map((c) => c.name)
      .sort();
  } catch (e) {
    const code = status(e);
    if (code === 401 || code === 403) throw new MeshbackError('CLUSTER', `the cluster refused to list the PVCs or pods of namespace ${ns} (HTTP ${code}): use credentials that may list them, or give the PVCs with -f FILE --pvc NAME`);
    throw new MeshbackError('CLUSTER', `cannot list the PVCs of namespace ${ns}: ${errMessage(e).split('\n')[0]}: check the cluster and the kubeconfig`);
  }
}
