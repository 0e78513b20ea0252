/**
 * k8s/discover: what `meshback k8s discover` lists. Every PersistentVolumeClaim of a namespace (or
 * of all), with the pods that mount it, the workload that owns them (the ownerReferences chain),
 * each pod's service mesh (found by container names and annotations, never by position), the
 * storage class, its provisioner and whether a VolumeSnapshotClass serves that driver, stateful or
 * stateless, and the policy that covers it (interim: the label meshback.io/policy). Read only: it
 * lists and gets, and changes nothing in the cluster. Rules: docs/design.md, "Kubernetes: discover".
 */
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApiException, AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, KubeConfig, StorageV1Api } from '@kubernetes/client-node';
import type { V1Job, V1OwnerReference, V1PersistentVolumeClaim, V1Pod, V1ReplicaSet, V1StorageClass } from '@kubernetes/client-node';
import { MeshbackError, NotFoundError, errMessage } from '../errors/index.ts';
import type { DiscoveredPod, DiscoveredPvc, Discovery, Mesh, VolumeState, Workload } from './schema.ts';

export { POLICY_LABEL } from './api.ts';
import { POLICY_LABEL } from './api.ts';
/** how long one API request may take before the server counts as unreachable */
const REQUEST_MS = 30_000;
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

export interface DiscoverOptions {
  /** undefined: all namespaces */
  namespace: string | undefined;
  selector?: string | undefined;
}

/**
 * The client configuration: --kubeconfig FILE, else KUBECONFIG, else ~/.kube/config, else the pod's
 * service account (in a cluster). None of them: a CLUSTER error (exit 18).
 */
export function loadKubeConfig(file: string | undefined): KubeConfig {
  const kc = new KubeConfig();
  const envFile = process.env['KUBECONFIG'];
  const home = path.join(os.homedir(), '.kube', 'config');
  try {
    if (file !== undefined) {
      if (!existsSync(file)) throw new NotFoundError(`--kubeconfig ${file} does not exist: give the kubeconfig file of the cluster`);
      kc.loadFromFile(file);
    } else if (envFile !== undefined && envFile !== '') kc.loadFromDefault();
    else if (existsSync(home)) kc.loadFromFile(home);
    else if (process.env['KUBERNETES_SERVICE_HOST'] !== undefined && existsSync(SERVICE_ACCOUNT_TOKEN)) kc.loadFromCluster();
    else throw new MeshbackError('CLUSTER', 'no Kubernetes cluster configured: give --kubeconfig FILE, set KUBECONFIG, write ~/.kube/config, or run meshback in a pod');
  } catch (e) {
    if (e instanceof MeshbackError) throw e;
    throw new MeshbackError('CLUSTER', `cannot read the kubeconfig ${file ?? envFile ?? home}: ${errMessage(e).split('\n')[0]}: fix it or give another with --kubeconfig`);
  }
  if (kc.getCurrentCluster() === null) throw new MeshbackError('CLUSTER', `the kubeconfig ${file ?? envFile ?? home} has no current context with a cluster: set current-context, or give another with --kubeconfig`);
  return kc;
}

/** The namespace of the kubeconfig's current context (kubectl's default), else "default". */
export function contextNamespace(kc: KubeConfig): string {
  const ns = kc.getContextObject(kc.getCurrentContext())?.namespace;
  return ns !== undefined && ns !== '' ? ns : 'default';
}

/** One API request (used by mesh.ts too): bounded in time, its failures turned into one-line errors that say what to do. */
export async function ask<T>(kc: KubeConfig, verb: string, resource: string, namespace: string | undefined, call: () => Promise<T>): Promise<T> {
  const server = kc.getCurrentCluster()?.server ?? '(no server)';
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new MeshbackError('CLUSTER', `the Kubernetes API server at ${server} did not answer ${verb} ${resource} within ${REQUEST_MS / 1000} s: check that the cluster is up and reachable from here`)), REQUEST_MS);
  });
  try {
    return await Promise.race([call(), timeout]);
  } catch (e) {
    if (e instanceof MeshbackError) throw e;
    if (e instanceof ApiException) {
      const where = namespace === undefined ? 'cluster-wide' : `in namespace ${namespace}`;
      if (e.code === 403) {
        const who = /User "([^"]+)"/.exec(apiMessage(e))?.[1] ?? 'this user';
        throw new MeshbackError('FORBIDDEN', `forbidden: ${who} may not ${verb} ${resource} ${where} (RBAC): grant the verb "${verb}" on "${resource}" ${namespace === undefined ? 'with a ClusterRole and ClusterRoleBinding' : 'with a Role and RoleBinding (or a ClusterRole)'}, or use a kubeconfig that has it`);
      }
      if (e.code === 401) throw new MeshbackError('FORBIDDEN', `the Kubernetes API server at ${server} refused the credentials (401 Unauthorized): renew the token or certificate of the kubeconfig`);
      throw new MeshbackError('CLUSTER', `the Kubernetes API server at ${server} answered ${verb} ${resource} ${where} with ${e.code}: ${apiMessage(e)}`, { data: { status: e.code } });
    }
    throw new MeshbackError('CLUSTER', `cannot reach the Kubernetes API server at ${server} (${causeText(e)}): check that the cluster is up and that the kubeconfig names it`);
  } finally {
    clearTimeout(timer);
  }
}

/** the API server answered 404 (see ask) */
export function notFound(e: unknown): boolean {
  return e instanceof MeshbackError && e.code === 'CLUSTER' && e.data['status'] === 404;
}

function apiMessage(e: ApiException<unknown>): string {
  const body = e.body;
  try {
    const o = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: unknown };
    if (typeof o?.message === 'string') return o.message;
  } catch {
    // not JSON: the text itself
  }
  return String(typeof body === 'string' ? body : e.message).split('\n')[0]!.slice(0, 300);
}

function causeText(e: unknown): string {
  let c: unknown = e;
  for (let i = 0; i < 5 && c instanceof Error && c.cause !== undefined; i++) c = c.cause;
  const code = (c as { code?: unknown }).code;
  const msg = errMessage(c).split('\n')[0]!;
  return typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
}

/** The pod's mesh, from container names and annotations (never positions). */
export function meshOf(pod: V1Pod): { mesh: Mesh; evidence: string[] } {
  const containers = pod.spec?.containers ?? [];
  const inits = pod.spec?.initContainers ?? [];
  const ann = pod.metadata?.annotations ?? {};
  const evidence: string[] = [];
  const container = (name: string): boolean => {
    const found = containers.some((c) => c.name === name);
    if (found) evidence.push(`container ${name}`);
    return found;
  };
  const native = (name: string): boolean => {
    const found = inits.some((c) => c.name === name && c.restartPolicy === 'Always');
    if (found) evidence.push(`initContainer ${name} (restartPolicy Always)`);
    return found;
  };
  const annotation = (key: string, value?: string): boolean => {
    const found = ann[key] !== undefined && (value === undefined || ann[key] === value);
    if (found) evidence.push(`annotation ${key}`);
    return found;
  };
  // each test runs for its evidence: no short-circuit between container and annotation
  const any = (...xs: boolean[]): boolean => xs.some((x) => x);
  const istioNative = native('istio-proxy');
  const istio = any(container('istio-proxy'), annotation('sidecar.istio.io/status'));
  if (istioNative) return { mesh: 'istio-native', evidence };
  if (istio) return { mesh: 'istio', evidence };
  const linkerdNative = native('linkerd-proxy');
  const linkerd = any(container('linkerd-proxy'), annotation('linkerd.io/proxy-version'));
  if (linkerdNative) return { mesh: 'linkerd-native', evidence };
  if (linkerd) return { mesh: 'linkerd', evidence };
  const consul = any(container('consul-dataplane'), container('envoy-sidecar'), native('consul-dataplane'), annotation('consul.hashicorp.com/connect-inject-status', 'injected'));
  if (consul) return { mesh: 'consul', evidence };
  return { mesh: 'none', evidence: [] };
}

function controllerOf(refs: V1OwnerReference[] | undefined): V1OwnerReference | undefined {
  return (refs ?? []).find((r) => r.controller === true) ?? refs?.[0];
}

const key = (ns: string | undefined, name: string): string => `${ns ?? ''}/${name}`;

/** The top of the pod's ownerReferences chain (ReplicaSet -> Deployment, Job -> CronJob). */
function workloadOf(pod: V1Pod, replicaSets: Map<string, V1ReplicaSet>, jobs: Map<string, V1Job>): Workload {
  const ns = pod.metadata?.namespace;
  const owner = controllerOf(pod.metadata?.ownerReferences);
  if (owner === undefined) return { kind: 'Pod', name: pod.metadata?.name ?? '' };
  const next = owner.kind === 'ReplicaSet' ? replicaSets.get(key(ns, owner.name)) : owner.kind === 'Job' ? jobs.get(key(ns, owner.name)) : undefined;
  const up = controllerOf(next?.metadata?.ownerReferences);
  return up !== undefined ? { kind: up.kind, name: up.name } : { kind: owner.kind, name: owner.name };
}

interface Mount {
  pod: V1Pod;
  readOnly: boolean;
}

/** Every claim the pod mounts: claim name -> read-only (every mount read-only, or the volume source is). */
function claimsOf(pod: V1Pod): Map<string, boolean> {
  const out = new Map<string, boolean>();
  const mounts = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])].flatMap((c) => c.volumeMounts ?? []);
  for (const vol of pod.spec?.volumes ?? []) {
    const claim = vol.persistentVolumeClaim?.claimName ?? (vol.ephemeral !== undefined ? `${pod.metadata?.name ?? ''}-${vol.name}` : undefined);
    if (claim === undefined) continue;
    const used = mounts.filter((m) => m.name === vol.name);
    const readOnly = vol.persistentVolumeClaim?.readOnly === true || (used.length > 0 && used.every((m) => m.readOnly === true));
    out.set(claim, readOnly);
  }
  return out;
}

function stateOf(pvc: V1PersistentVolumeClaim, mounts: Mount[], workloads: Workload[]): { state: VolumeState; reason: string } {
  const sts = workloads.find((w) => w.kind === 'StatefulSet');
  if (sts !== undefined) return { state: 'stateful', reason: `StatefulSet ${sts.name}` };
  if (mounts.length === 0) return { state: 'unmounted', reason: 'no pod mounts it' };
  const rwo = (pvc.spec?.accessModes ?? []).some((m) => m === 'ReadWriteOnce' || m === 'ReadWriteOncePod');
  const bound = pvc.status?.phase === 'Bound';
  const writer = mounts.find((m) => !m.readOnly);
  if (rwo && bound && writer !== undefined) return { state: 'stateful', reason: `bound RWO, mounted read-write by ${writer.pod.metadata?.name ?? ''}` };
  return { state: 'stateless', reason: writer === undefined ? 'mounted read-only' : !rwo ? `not ReadWriteOnce (${(pvc.spec?.accessModes ?? []).join(',') || 'no access mode'})` : 'not bound' };
}

interface SnapshotClass {
  name: string;
  driver: string;
  isDefault: boolean;
}

/** The VolumeSnapshotClasses, or undefined when the snapshot API is not installed. */
async function snapshotClasses(kc: KubeConfig): Promise<SnapshotClass[] | undefined> {
  const co = kc.makeApiClient(CustomObjectsApi);
  let list: { items?: { metadata?: { name?: string; annotations?: Record<string, string> }; driver?: string }[] };
  try {
    list = (await ask(kc, 'list', 'volumesnapshotclasses.snapshot.storage.k8s.io', undefined, () => co.listClusterCustomObject({ group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshotclasses' }))) as typeof list;
  } catch (e) {
    // a 404 for the resource itself: the CRD is absent
    if (notFound(e)) return undefined;
    throw e;
  }
  return (list.items ?? []).map((c) => ({ name: c.metadata?.name ?? '', driver: c.driver ?? '', isDefault: c.metadata?.annotations?.['snapshot.storage.kubernetes.io/is-default-class'] === 'true' }));
}

export async function discover(kc: KubeConfig, o: DiscoverOptions): Promise<Discovery> {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const storage = kc.makeApiClient(StorageV1Api);
  const ns = o.namespace;
  const sel = o.selector !== undefined && o.selector !== '' ? { labelSelector: o.selector } : {};
  if (ns !== undefined) {
    // an unknown namespace is an error, not an empty list; a user who may not read namespaces is not refused for it
    try {
      await ask(kc, 'get', 'namespaces', undefined, () => core.readNamespace({ name: ns }));
    } catch (e) {
      if (notFound(e)) throw new NotFoundError(`namespace ${JSON.stringify(ns)} does not exist: give an existing one with -n, or -A for all namespaces`);
      if (!(e instanceof MeshbackError && e.code === 'FORBIDDEN')) throw e;
    }
  }
  const listPvcs = (s: { labelSelector?: string }) => ask(kc, 'list', 'persistentvolumeclaims', ns, () => (ns === undefined ? core.listPersistentVolumeClaimForAllNamespaces(s) : core.listNamespacedPersistentVolumeClaim({ namespace: ns, ...s })));
  const listPods = (s: { labelSelector?: string }) => ask(kc, 'list', 'pods', ns, () => (ns === undefined ? core.listPodForAllNamespaces(s) : core.listNamespacedPod({ namespace: ns, ...s })));
  const pvcs = (await listPvcs({})).items;
  const pods = (await listPods({})).items;
  const rsList = (await ask(kc, 'list', 'replicasets.apps', ns, () => (ns === undefined ? apps.listReplicaSetForAllNamespaces() : apps.listNamespacedReplicaSet({ namespace: ns })))).items;
  const jobList = (await ask(kc, 'list', 'jobs.batch', ns, () => (ns === undefined ? batch.listJobForAllNamespaces() : batch.listNamespacedJob({ namespace: ns })))).items;
  const classes = new Map<string, V1StorageClass>((await ask(kc, 'list', 'storageclasses.storage.k8s.io', undefined, () => storage.listStorageClass())).items.map((c) => [c.metadata?.name ?? '', c]));
  const snaps = await snapshotClasses(kc);
  // -l: the claims the selector matches, and those mounted by a pod it matches
  let chosen: Set<string> | undefined;
  if (sel.labelSelector !== undefined) {
    chosen = new Set((await listPvcs(sel)).items.map((p) => key(p.metadata?.namespace, p.metadata?.name ?? '')));
    for (const p of (await listPods(sel)).items) for (const c of claimsOf(p).keys()) chosen.add(key(p.metadata?.namespace, c));
  }
  const replicaSets = new Map(rsList.map((r) => [key(r.metadata?.namespace, r.metadata?.name ?? ''), r]));
  const jobs = new Map(jobList.map((j) => [key(j.metadata?.namespace, j.metadata?.name ?? ''), j]));
  const mounts = new Map<string, Mount[]>();
  for (const pod of pods) {
    for (const [claim, readOnly] of claimsOf(pod)) {
      const k = key(pod.metadata?.namespace, claim);
      mounts.set(k, [...(mounts.get(k) ?? []), { pod, readOnly }]);
    }
  }
  const out: DiscoveredPvc[] = [];
  const sorted = [...pvcs].sort((a, b) => key(a.metadata?.namespace, a.metadata?.name ?? '').localeCompare(key(b.metadata?.namespace, b.metadata?.name ?? '')));
  for (const pvc of sorted) {
    const k = key(pvc.metadata?.namespace, pvc.metadata?.name ?? '');
    if (chosen !== undefined && !chosen.has(k)) continue;
    const ms = (mounts.get(k) ?? []).sort((a, b) => (a.pod.metadata?.name ?? '').localeCompare(b.pod.metadata?.name ?? ''));
    const podsOut: DiscoveredPod[] = ms.map(({ pod, readOnly }) => {
      const m = meshOf(pod);
      return { name: pod.metadata?.name ?? '', node: pod.spec?.nodeName ?? null, phase: pod.status?.phase ?? null, workload: workloadOf(pod, replicaSets, jobs), mesh: m.mesh, meshEvidence: m.evidence, readOnly };
    });
    const workloads: Workload[] = [];
    for (const p of podsOut) if (!workloads.some((w) => w.kind === p.workload.kind && w.name === p.workload.name)) workloads.push(p.workload);
    // "" is a claim that asks for no class: null, as a claim without one
    const className = pvc.spec?.storageClassName !== undefined && pvc.spec.storageClassName !== '' ? pvc.spec.storageClassName : null;
    const sc = className === null ? undefined : classes.get(className);
    const provisioner = sc?.provisioner ?? null;
    const serving = provisioner === null ? [] : (snaps ?? []).filter((c) => c.driver === provisioner).sort((a, b) => Number(b.isDefault) - Number(a.isDefault) || a.name.localeCompare(b.name));
    const snapshotSupport = snaps === undefined ? 'no snapshot API' : className === null || sc === undefined ? 'no storage class' : serving.length > 0 ? 'yes' : 'no';
    const st = stateOf(pvc, ms, workloads);
    const podPolicies = [...new Set(ms.map((m) => m.pod.metadata?.labels?.[POLICY_LABEL]).filter((x): x is string => x !== undefined && x !== ''))].sort();
    const policy = pvc.metadata?.labels?.[POLICY_LABEL] ?? (podPolicies.length > 0 ? podPolicies.join(',') : null);
    out.push({
      namespace: pvc.metadata?.namespace ?? '',
      name: pvc.metadata?.name ?? '',
      phase: pvc.status?.phase ?? null,
      volume: pvc.spec?.volumeName ?? null,
      accessModes: pvc.spec?.accessModes ?? [],
      capacity: pvc.status?.capacity?.['storage'] ?? pvc.spec?.resources?.requests?.['storage'] ?? null,
      storageClass: className,
      provisioner,
      snapshotClass: serving[0]?.name ?? null,
      snapshotSupport,
      state: st.state,
      stateReason: st.reason,
      policy,
      workloads,
      pods: podsOut,
      newestBackup: null,
    });
  }
  return { message_type: 'summary', server: kc.getCurrentCluster()?.server ?? '', namespace: ns ?? null, selector: sel.labelSelector ?? null, snapshotApi: snaps !== undefined, pvcs: out };
}
