/**
 * k8s/mesh: what meshback knows about service meshes beyond finding them (discover's meshOf).
 *
 *   stripInjected      a workload manifest without what a mesh's injection webhook added (proxy
 *                      containers, init containers, volumes, status annotations and labels) and
 *                      without the fields the API server sets, so that a restored workload is
 *                      injected once, by the webhook, as the namespace and the user want (Velero
 *                      restores the injected pod and the webhook injects again: velero#2997).
 *                      Everything is found by name and annotation evidence, never by position.
 *   hookContainer      the container a hook runs in, by name only: a proxy, a native sidecar or
 *                      an init container is refused with the names of the application containers
 *                      (velero#4412, velero#9393).
 *   exportForBackup    the namespace's mesh configuration and the workload that mounts a PVC (with
 *                      its Services and ConfigMaps, never a Secret), as files for the snapshot.
 *   restoreWorkloads   those workload files back into a namespace, stripped.
 *   captureEnvoyAdmin  Envoy's admin state (config_dump, clusters, stats) through the API server's
 *                      port-forward, or a warning where the cluster does not allow it.
 * Rules and evidence: docs/design.md, "Kubernetes: mesh awareness".
 */
import * as http from 'node:http';
import { duplexPair, Writable } from 'node:stream';
import { ApisApi, AppsV1Api, CoreV1Api, CustomObjectsApi, KubernetesObjectApi, PortForward } from '@kubernetes/client-node';
import type { KubeConfig, KubernetesObject, V1Container, V1ObjectMeta, V1Pod, V1PodSpec, V1PodTemplateSpec, V1Probe } from '@kubernetes/client-node';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { MeshbackError, UsageError, errMessage } from '../errors/index.ts';
import { meshOf } from './discover.ts';
import { ask, notFound } from './kube.ts';

/** any Kubernetes object as JSON */
export type KObject = KubernetesObject & { spec?: Record<string, unknown>; status?: unknown; [k: string]: unknown };

// ---------------------------------------------------------------------------------------------
// what each mesh injects (names from the injection templates of Istio 1.2x, Linkerd 2.1x / edge,
// consul-k8s 1.x)

/** containers (or native sidecars) that are a mesh's proxy: never a hook's target */
export const PROXY_CONTAINERS = ['istio-proxy', 'linkerd-proxy', 'consul-dataplane', 'envoy-sidecar'] as const;

interface MeshRules {
  mesh: string;
  /** names only this mesh uses: removed on their name alone */
  containers: string[];
  initContainers: string[];
  /** generic names: removed only with the mesh's annotation evidence */
  weakContainers: string[];
  volumes: string[];
  annotations: string[];
  annotationPatterns: RegExp[];
  labels: string[];
  labelPatterns: RegExp[];
  /** the annotation that says the webhook injected this pod template */
  evidence: (ann: Record<string, string>) => boolean;
}

const ISTIO: MeshRules = {
  mesh: 'istio',
  containers: ['istio-proxy'],
  initContainers: ['istio-init', 'istio-validation', 'istio-proxy'],
  weakContainers: [],
  volumes: ['istio-envoy', 'istio-data', 'istio-podinfo', 'istio-token', 'istiod-ca-cert', 'workload-socket', 'credential-socket', 'workload-certs'],
  annotations: ['sidecar.istio.io/status', 'istio.io/rev'],
  annotationPatterns: [],
  labels: ['security.istio.io/tlsMode'],
  labelPatterns: [],
  evidence: (ann) => ann['sidecar.istio.io/status'] !== undefined,
};
const LINKERD: MeshRules = {
  mesh: 'linkerd',
  containers: ['linkerd-proxy'],
  initContainers: ['linkerd-init', 'linkerd-network-validator', 'linkerd-proxy'],
  weakContainers: [],
  volumes: ['linkerd-identity-end-entity', 'linkerd-proxy-init-xtables-lock', 'linkerd-identity-token'],
  annotations: ['linkerd.io/proxy-version', 'linkerd.io/created-by', 'linkerd.io/trust-root-sha256', 'linkerd.io/identity-mode', 'viz.linkerd.io/tap-enabled'],
  annotationPatterns: [],
  labels: ['linkerd.io/control-plane-ns', 'linkerd.io/workload-ns'],
  labelPatterns: [/^linkerd\.io\/proxy-/],
  evidence: (ann) => ann['linkerd.io/proxy-version'] !== undefined || ann['linkerd.io/created-by'] !== undefined,
};
const CONSUL: MeshRules = {
  mesh: 'consul',
  containers: ['consul-dataplane'],
  initContainers: ['consul-connect-inject-init', 'consul-dataplane'],
  weakContainers: ['envoy-sidecar', 'consul-sidecar', 'consul-connect-lifecycle-sidecar'],
  volumes: ['consul-connect-inject-data'],
  annotations: ['consul.hashicorp.com/connect-inject-status', 'consul.hashicorp.com/transparent-proxy-status', 'consul.hashicorp.com/connect-k8s-version', 'consul.hashicorp.com/consul-k8s-version', 'consul.hashicorp.com/original-pod'],
  annotationPatterns: [/^consul\.hashicorp\.com\/.*injected/],
  labels: ['consul.hashicorp.com/connect-inject-status', 'consul.hashicorp.com/connect-inject-managed-by'],
  labelPatterns: [],
  evidence: (ann) => ann['consul.hashicorp.com/connect-inject-status'] === 'injected',
};
const MESHES = [ISTIO, LINKERD, CONSUL];

/** labels the workload controllers put on pod templates and pods (a restored object gets new ones) */
const HASH_LABELS = ['pod-template-hash', 'controller-revision-hash', 'statefulset.kubernetes.io/pod-name', 'apps.kubernetes.io/pod-index'];
const JOB_LABELS = ['controller-uid', 'batch.kubernetes.io/controller-uid', 'job-name', 'batch.kubernetes.io/job-name'];
/** metadata the API server sets */
const SERVER_META = ['uid', 'resourceVersion', 'creationTimestamp', 'generation', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds'] as const;
const SERVER_ANNOTATIONS = ['deployment.kubernetes.io/revision'];

/** Where the pod template of a workload kind is. */
function templateOf(o: KObject): V1PodTemplateSpec | undefined {
  const spec = o.spec as Record<string, unknown> | undefined;
  switch (o.kind) {
    case 'Pod':
      return o as unknown as V1PodTemplateSpec;
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'ReplicationController':
    case 'Job':
      return spec?.['template'] as V1PodTemplateSpec | undefined;
    case 'CronJob':
      return ((spec?.['jobTemplate'] as { spec?: { template?: V1PodTemplateSpec } } | undefined)?.spec)?.template;
    default:
      return undefined;
  }
}

function parseJson<T>(text: string | undefined): T | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

function deleteKey(map: Record<string, string> | undefined, key: string, what: string, removed: string[]): void {
  if (map !== undefined && key in map) {
    delete map[key];
    removed.push(`${what} ${key}`);
  }
}

function tidyMeta(meta: V1ObjectMeta): void {
  if (meta.labels !== undefined && Object.keys(meta.labels).length === 0) delete meta.labels;
  if (meta.annotations !== undefined && Object.keys(meta.annotations).length === 0) delete meta.annotations;
}

const PROBES = [
  ['livenessProbe', 'livez'],
  ['readinessProbe', 'readyz'],
  ['startupProbe', 'startupz'],
] as const;

/**
 * Istio rewrites the application's HTTP, TCP and gRPC probes to its agent (port 15020, path
 * /app-health/CONTAINER/livez...) and keeps the originals in the proxy's ISTIO_KUBE_APP_PROBERS:
 * without the proxy they must be the originals again.
 */
function restoreIstioProbes(spec: V1PodSpec, proxy: V1Container | undefined, removed: string[]): void {
  const probers = parseJson<Record<string, Partial<V1Probe>>>(proxy?.env?.find((e) => e.name === 'ISTIO_KUBE_APP_PROBERS')?.value);
  if (probers === undefined) return;
  for (const c of spec.containers ?? []) {
    for (const [field, suffix] of PROBES) {
      const probe = c[field];
      const p = `/app-health/${c.name}/${suffix}`;
      const original = probers[p];
      if (probe?.httpGet?.path !== p || String(probe.httpGet.port) !== '15020' || original === undefined) continue;
      const { httpGet: _rewritten, ...rest } = probe;
      const action = original.httpGet !== undefined ? { httpGet: original.httpGet } : original.tcpSocket !== undefined ? { tcpSocket: original.tcpSocket } : original.grpc !== undefined ? { grpc: original.grpc } : undefined;
      if (action === undefined) continue;
      c[field] = { ...action, ...rest };
      removed.push(`probe ${c.name}.${field} restored from ISTIO_KUBE_APP_PROBERS`);
    }
  }
}

/** Istio's metrics merging replaced the prometheus.io annotations (the user's are kept in ISTIO_PROMETHEUS_ANNOTATIONS). */
function restorePrometheus(ann: Record<string, string>, proxy: V1Container | undefined, removed: string[]): void {
  if (ann['prometheus.io/path'] !== '/stats/prometheus' || ann['prometheus.io/port'] !== '15020') return;
  for (const k of ['scrape', 'path', 'port']) deleteKey(ann, `prometheus.io/${k}`, 'annotation', removed);
  const user = parseJson<Record<string, string>>(proxy?.env?.find((e) => e.name === 'ISTIO_PROMETHEUS_ANNOTATIONS')?.value);
  for (const [k, v] of Object.entries(user ?? {})) if (typeof v === 'string' && v !== '') ann[`prometheus.io/${k}`] = v;
}

/** What the webhooks injected into one pod template (or pod), removed in place. */
function stripPodTemplate(t: V1PodTemplateSpec, removed: string[]): void {
  const meta = (t.metadata ??= {});
  const spec = t.spec;
  if (spec === undefined) return;
  const ann = (meta.annotations ??= {});
  const labels = (meta.labels ??= {});
  const has = (names: string[]) => [...(spec.containers ?? []), ...(spec.initContainers ?? [])].some((c) => names.includes(c.name));
  const istioStatus = parseJson<{ containers?: string[] | null; initContainers?: string[] | null; volumes?: string[] | null; imagePullSecrets?: string[] | null }>(ann['sidecar.istio.io/status']);
  const istioProxy = [...(spec.containers ?? []), ...(spec.initContainers ?? [])].find((c) => c.name === 'istio-proxy');

  const dropContainers = new Set<string>();
  const dropInits = new Set<string>();
  const dropVolumes = new Set<string>();
  const active: MeshRules[] = [];
  for (const m of MESHES) {
    const byAnnotation = m.evidence(ann);
    if (!byAnnotation && !has([...m.containers, ...m.initContainers])) continue;
    active.push(m);
    for (const n of m.containers) dropContainers.add(n);
    for (const n of m.initContainers) dropInits.add(n);
    if (byAnnotation) for (const n of m.weakContainers) dropContainers.add(n);
    for (const n of m.volumes) dropVolumes.add(n);
  }
  // what Istio's status annotation lists is what its template injected (custom templates included)
  for (const n of istioStatus?.containers ?? []) dropContainers.add(n);
  for (const n of istioStatus?.initContainers ?? []) dropInits.add(n);
  for (const n of istioStatus?.volumes ?? []) dropVolumes.add(n);
  if (active.length === 0) return tidyMeta(meta);

  if (active.includes(ISTIO)) {
    restoreIstioProbes(spec, istioProxy, removed);
    restorePrometheus(ann, istioProxy, removed);
  }
  const keep = (list: V1Container[] | undefined, drop: Set<string>, what: string): V1Container[] | undefined => {
    if (list === undefined) return undefined;
    const out = list.filter((c) => {
      if (!drop.has(c.name)) return true;
      removed.push(`${what} ${c.name}`);
      return false;
    });
    return out;
  };
  spec.containers = keep(spec.containers, dropContainers, 'container') ?? [];
  const inits = keep(spec.initContainers, dropInits, 'initContainer');
  if (inits !== undefined && inits.length > 0) spec.initContainers = inits;
  else delete spec.initContainers;
  // a volume goes only when nothing that stays mounts it
  const mounted = new Set([...spec.containers, ...(spec.initContainers ?? [])].flatMap((c) => [...(c.volumeMounts ?? []), ...(c.volumeDevices ?? [])].map((m) => m.name)));
  if (spec.volumes !== undefined) {
    spec.volumes = spec.volumes.filter((v) => {
      if (!dropVolumes.has(v.name) || mounted.has(v.name)) return true;
      removed.push(`volume ${v.name}`);
      return false;
    });
    if (spec.volumes.length === 0) delete spec.volumes;
  }
  if (istioStatus?.imagePullSecrets && spec.imagePullSecrets !== undefined) {
    const drop = new Set(istioStatus.imagePullSecrets);
    spec.imagePullSecrets = spec.imagePullSecrets.filter((s) => {
      if (!drop.has(s.name ?? '')) return true;
      removed.push(`imagePullSecret ${s.name ?? ''}`);
      return false;
    });
    if (spec.imagePullSecrets.length === 0) delete spec.imagePullSecrets;
  }
  for (const m of active) {
    for (const k of m.annotations) deleteKey(ann, k, 'annotation', removed);
    for (const k of Object.keys(ann)) if (m.annotationPatterns.some((p) => p.test(k))) deleteKey(ann, k, 'annotation', removed);
    for (const k of m.labels) deleteKey(labels, k, 'label', removed);
    for (const k of Object.keys(labels)) if (m.labelPatterns.some((p) => p.test(k))) deleteKey(labels, k, 'label', removed);
  }
  if (active.includes(ISTIO)) {
    // Istio sets these to the first application container and its canonical service labels from the
    // app's own labels; it sets them again on injection (a value the user gave differently stays)
    const first = spec.containers[0]?.name;
    for (const k of ['kubectl.kubernetes.io/default-container', 'kubectl.kubernetes.io/default-logs-container']) if (ann[k] !== undefined && ann[k] === first) deleteKey(ann, k, 'annotation', removed);
    const name = labels['app.kubernetes.io/name'] ?? labels['app'];
    if (labels['service.istio.io/canonical-name'] !== undefined && (name === undefined || labels['service.istio.io/canonical-name'] === name)) deleteKey(labels, 'service.istio.io/canonical-name', 'label', removed);
    const rev = labels['app.kubernetes.io/version'] ?? labels['version'] ?? 'latest';
    if (labels['service.istio.io/canonical-revision'] === rev) deleteKey(labels, 'service.istio.io/canonical-revision', 'label', removed);
  }
  tidyMeta(meta);
}

function stripServerMeta(meta: V1ObjectMeta | undefined, removed: string[], where: string): void {
  if (meta === undefined) return;
  const m = meta as Record<string, unknown>;
  for (const k of SERVER_META) {
    if (m[k] !== undefined) {
      delete m[k];
      removed.push(`${where}metadata.${k}`);
    }
  }
  for (const k of SERVER_ANNOTATIONS) deleteKey(meta.annotations, k, `${where}annotation`, removed);
}

/**
 * The manifest without what a mesh's webhook injected and without what the API server set (see the
 * file comment). Works on a copy; `removed` names each removed part ("container istio-proxy",
 * "volume istio-envoy", "annotation sidecar.istio.io/status", "metadata.uid", ...). Idempotent.
 */
export function stripInjected<T extends KObject>(obj: T): { object: T; removed: string[] } {
  const o = structuredClone(obj);
  const removed: string[] = [];
  if (o.status !== undefined) {
    delete o.status;
    removed.push('status');
  }
  stripServerMeta(o.metadata, removed, '');
  if (o.metadata?.ownerReferences !== undefined) {
    delete o.metadata.ownerReferences;
    removed.push('metadata.ownerReferences');
  }
  if (o.metadata?.namespace !== undefined) delete o.metadata.namespace;
  const spec = o.spec;
  if (o.kind === 'Service' && spec !== undefined) {
    // a new Service gets its own cluster IP (a headless one stays headless)
    for (const k of ['clusterIP', 'clusterIPs']) {
      const v = spec[k];
      if (v !== undefined && v !== 'None' && !(Array.isArray(v) && v[0] === 'None')) {
        delete spec[k];
        removed.push(`spec.${k}`);
      }
    }
  }
  if (o.kind === 'StatefulSet' && Array.isArray(spec?.['volumeClaimTemplates'])) {
    for (const vct of spec['volumeClaimTemplates'] as KObject[]) {
      if (vct.status !== undefined) {
        delete vct.status;
        removed.push(`volumeClaimTemplate ${vct.metadata?.name ?? ''} status`);
      }
      stripServerMeta(vct.metadata, removed, `volumeClaimTemplate ${vct.metadata?.name ?? ''} `);
    }
  }
  const t = templateOf(o);
  if (t !== undefined) {
    if (t !== (o as unknown as V1PodTemplateSpec)) stripServerMeta(t.metadata, removed, 'template ');
    const selector = (spec?.['selector'] as { matchLabels?: Record<string, string> } | undefined)?.matchLabels;
    for (const k of HASH_LABELS) {
      deleteKey(t.metadata?.labels, k, 'label', removed);
      if (o.kind !== 'Pod') deleteKey(selector, k, 'selector label', removed);
    }
    if (o.kind === 'Job' && spec !== undefined && !spec['manualSelector'] && JOB_LABELS.some((k) => selector?.[k] !== undefined)) {
      // the selector the API server made for the Job: a new Job gets a new one
      delete spec['selector'];
      removed.push('spec.selector');
      for (const k of JOB_LABELS) deleteKey(t.metadata?.labels, k, 'label', removed);
    }
    if (o.kind === 'Pod' && t.spec !== undefined) {
      if (t.spec.nodeName !== undefined) {
        delete t.spec.nodeName;
        removed.push('spec.nodeName');
      }
      // the service account token volume the admission plugin added (it adds a new one)
      const token = new Set((t.spec.volumes ?? []).filter((v) => /^kube-api-access-[a-z0-9]+$/.test(v.name) && v.projected !== undefined).map((v) => v.name));
      if (token.size > 0) {
        t.spec.volumes = t.spec.volumes!.filter((v) => !token.has(v.name));
        if (t.spec.volumes.length === 0) delete t.spec.volumes;
        for (const c of [...(t.spec.containers ?? []), ...(t.spec.initContainers ?? [])]) {
          if (c.volumeMounts === undefined) continue;
          c.volumeMounts = c.volumeMounts.filter((m) => !token.has(m.name));
          if (c.volumeMounts.length === 0) delete c.volumeMounts;
        }
        for (const n of token) removed.push(`volume ${n}`);
      }
    }
    stripPodTemplate(t, removed);
    if (t !== (o as unknown as V1PodTemplateSpec) && t.metadata !== undefined && Object.keys(t.metadata).length === 0) delete t.metadata;
  }
  if (o.metadata !== undefined) tidyMeta(o.metadata);
  return { object: o, removed };
}

// ---------------------------------------------------------------------------------------------
// hooks

/**
 * The container a hook runs in: `name`, which must be an application container of the pod. No
 * default ("the first container" is the proxy in Linkerd's pods); a proxy, a native sidecar or an
 * init container is refused, each with a one-line UsageError naming the application containers.
 */
export function hookContainer(pod: V1Pod, name: string): string {
  const podName = pod.metadata?.name ?? '(unnamed pod)';
  const containers = pod.spec?.containers ?? [];
  const inits = pod.spec?.initContainers ?? [];
  const proxies = new Set<string>(PROXY_CONTAINERS);
  const apps = containers.filter((c) => !proxies.has(c.name)).map((c) => c.name);
  const appText = apps.length === 0 ? 'it has none' : apps.length === 1 ? `its application container is ${apps[0]!}` : `its application containers are ${apps.join(', ')}`;
  if (name === '') throw new UsageError(`a hook for pod ${podName} names no container: give the container it runs in (${appText}); meshback never picks "the first container"`);
  const native = inits.find((c) => c.name === name && c.restartPolicy === 'Always');
  const proxy = proxies.has(name) && (native !== undefined || containers.some((c) => c.name === name));
  if (native !== undefined || proxy) {
    const what = proxies.has(name) ? `the ${meshOf(pod).mesh} proxy${native !== undefined ? ' (a native sidecar: an init container with restartPolicy Always)' : ''}` : 'a native sidecar (an init container with restartPolicy Always)';
    throw new UsageError(`container ${name} of pod ${podName} is ${what}: hooks run in the application container: name it instead (${appText})`);
  }
  if (inits.some((c) => c.name === name)) throw new UsageError(`container ${name} of pod ${podName} is an init container, which has exited before the application started: name the application container instead (${appText})`);
  if (containers.some((c) => c.name === name)) return name;
  const all = [...containers.map((c) => c.name), ...inits.map((c) => `${c.name} (init)`)];
  throw new UsageError(`pod ${podName} has no container ${JSON.stringify(name)}: its containers are ${all.join(', ') || 'none'} (${appText})`);
}

// ---------------------------------------------------------------------------------------------
// export into the snapshot

/** The mesh configuration kinds exported, by API group. */
export const MESH_KINDS: { group: string; mesh: string; kinds: string[] }[] = [
  { group: 'networking.istio.io', mesh: 'Istio', kinds: ['VirtualService', 'DestinationRule', 'Gateway', 'ServiceEntry', 'Sidecar'] },
  { group: 'security.istio.io', mesh: 'Istio', kinds: ['PeerAuthentication', 'AuthorizationPolicy', 'RequestAuthentication'] },
  { group: 'policy.linkerd.io', mesh: 'Linkerd', kinds: ['Server', 'ServerAuthorization', 'AuthorizationPolicy', 'HTTPRoute', 'MeshTLSAuthentication'] },
  { group: 'linkerd.io', mesh: 'Linkerd', kinds: ['ServiceProfile'] },
  { group: 'consul.hashicorp.com', mesh: 'Consul', kinds: ['ServiceDefaults', 'ServiceIntentions', 'ServiceRouter', 'ServiceResolver', 'ServiceSplitter', 'ProxyDefaults'] },
];

export interface ExportedFile {
  path: string;
  content: Buffer;
}

export interface ExportManifest {
  format: 'meshback-k8s-export/1';
  cluster: string;
  namespace: string;
  pvc: string;
  exportedAt: string;
  mesh: { apiVersion: string; kind: string; name: string; path: string }[];
  workloads: { apiVersion: string; kind: string; name: string; path: string }[];
  /** GROUP/KIND of every mesh kind looked for: exported (the cluster serves it), absent, or forbidden */
  kinds: { served: string[]; absent: string[]; forbidden: string[] };
  warnings: string[];
}

function firstLine(e: unknown): string {
  return errMessage(e).split('\n')[0]!;
}

/** server-set fields of a mesh object (its configuration stays as it is) */
function withoutServerFields(o: KObject): KObject {
  const c = structuredClone(o);
  delete c.status;
  stripServerMeta(c.metadata, [], '');
  return c;
}

const yamlOf = (o: unknown): Buffer => Buffer.from(stringifyYaml(o, { lineWidth: 0 }));

/** GROUP/KIND -> { version, plural } for the mesh kinds this cluster serves (API discovery: every user may read it). */
async function servedMeshKinds(kc: KubeConfig): Promise<Map<string, { group: string; version: string; kind: string; plural: string }>> {
  const groups = (await ask(kc, 'get', 'the API discovery (/apis)', undefined, () => kc.makeApiClient(ApisApi).getAPIVersions())).groups;
  const co = kc.makeApiClient(CustomObjectsApi);
  const out = new Map<string, { group: string; version: string; kind: string; plural: string }>();
  for (const { group, kinds } of MESH_KINDS) {
    const g = groups.find((x) => x.name === group);
    if (g === undefined) continue;
    const versions = [g.preferredVersion?.version, ...g.versions.map((v) => v.version)].filter((v, i, a): v is string => v !== undefined && a.indexOf(v) === i);
    for (const version of versions) {
      const list = await ask(kc, 'get', `the API discovery (/apis/${group}/${version})`, undefined, () => co.getAPIResources({ group, version }));
      for (const r of list.resources) {
        if (r.name.includes('/') || !r.namespaced || !kinds.includes(r.kind)) continue;
        const k = `${group}/${r.kind}`;
        if (!out.has(k)) out.set(k, { group, version, kind: r.kind, plural: r.name });
      }
    }
  }
  return out;
}

interface Found {
  obj: KObject;
  template: V1PodTemplateSpec;
}

function mountsClaim(t: V1PodTemplateSpec | undefined, pvc: string): boolean {
  return (t?.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === pvc);
}

function controllerOf(meta: V1ObjectMeta | undefined): { kind: string; name: string } | undefined {
  return (meta?.ownerReferences ?? []).find((r) => r.controller === true);
}

/** the ConfigMaps a pod template refers to: name -> optional */
function configMapsOf(t: V1PodTemplateSpec): Map<string, boolean> {
  const out = new Map<string, boolean>();
  const add = (name: string | undefined, optional: boolean | undefined) => {
    if (name === undefined || name === '' || name === 'kube-root-ca.crt') return;
    out.set(name, (out.get(name) ?? true) && optional === true);
  };
  for (const v of t.spec?.volumes ?? []) {
    add(v.configMap?.name, v.configMap?.optional);
    for (const s of v.projected?.sources ?? []) add(s.configMap?.name, s.configMap?.optional);
  }
  for (const c of [...(t.spec?.containers ?? []), ...(t.spec?.initContainers ?? []), ...(t.spec?.ephemeralContainers ?? [])]) {
    for (const e of c.env ?? []) add(e.valueFrom?.configMapKeyRef?.name, e.valueFrom?.configMapKeyRef?.optional);
    for (const e of c.envFrom ?? []) add(e.configMapRef?.name, e.configMapRef?.optional);
  }
  return out;
}

const groupDir = (apiVersion: string): string => (apiVersion.includes('/') ? apiVersion.split('/')[0]! : 'core');

/**
 * The namespace's mesh configuration and the workload(s) that mount `pvc`, as files for the
 * snapshot (see the file comment):
 *   k8s/mesh/GROUP/KIND/NAME.yaml         each mesh object of a kind the cluster serves (server-set fields removed)
 *   k8s/workloads/GROUP/KIND/NAME.yaml    the workloads whose pod template mounts the PVC (and the top
 *                                         owner of each pod in `o.pods`), their Services and ConfigMaps,
 *                                         as the API server has them (restoreWorkloads strips them); GROUP core for v1
 *   k8s/manifest.json                     what was exported, from which cluster, namespace and PVC
 * Secrets are never exported. A kind the cluster lacks, or that RBAC forbids, is a warning. It uses
 * only the agent's permissions (AGENT_RULES): it cannot list pods, so it finds the workloads by
 * their templates, and bare pods only when named in `o.pods`.
 */
export async function exportForBackup(kc: KubeConfig, namespace: string, pvc: string, o: { pods?: string[] } = {}): Promise<{ files: ExportedFile[]; warnings: string[] }> {
  const warnings: string[] = [];
  const files: ExportedFile[] = [];
  const manifest: ExportManifest = { format: 'meshback-k8s-export/1', cluster: kc.getCurrentCluster()?.server ?? '', namespace, pvc, exportedAt: new Date().toISOString(), mesh: [], workloads: [], kinds: { served: [], absent: [], forbidden: [] }, warnings };

  // the mesh configuration
  let served: Awaited<ReturnType<typeof servedMeshKinds>> | undefined;
  try {
    served = await servedMeshKinds(kc);
  } catch (e) {
    warnings.push(`cannot read the API discovery, so no mesh configuration was exported: ${firstLine(e)}`);
  }
  if (served !== undefined) {
    const co = kc.makeApiClient(CustomObjectsApi);
    for (const { group, mesh, kinds } of MESH_KINDS) {
      const absent = kinds.filter((k) => !served.has(`${group}/${k}`));
      manifest.kinds.absent.push(...absent.map((k) => `${group}/${k}`));
      if (absent.length > 0) warnings.push(`the cluster serves no ${absent.join(', ')} (${group}, ${mesh}): not exported`);
      for (const kind of kinds) {
        const r = served.get(`${group}/${kind}`);
        if (r === undefined) continue;
        let items: KObject[];
        try {
          items = ((await busyRetry(() => ask(kc, 'list', `${r.plural}.${group}`, namespace, () => co.listNamespacedCustomObject({ group, version: r.version, namespace, plural: r.plural })))) as { items?: KObject[] }).items ?? [];
        } catch (e) {
          if (e instanceof MeshbackError && e.code === 'FORBIDDEN') manifest.kinds.forbidden.push(`${group}/${kind}`);
          warnings.push(`${kind} (${group}) not exported: ${firstLine(e)}`);
          continue;
        }
        manifest.kinds.served.push(`${group}/${kind}`);
        for (const item of items.sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''))) {
          const name = item.metadata?.name ?? '';
          const p = `k8s/mesh/${group}/${kind}/${name}.yaml`;
          files.push({ path: p, content: yamlOf(withoutServerFields(item)) });
          manifest.mesh.push({ apiVersion: `${group}/${r.version}`, kind, name, path: p });
        }
      }
    }
  }

  // the workloads that mount the PVC
  const apps = kc.makeApiClient(AppsV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const found = new Map<string, Found>();
  const add = (obj: KObject, apiVersion: string, kind: string) => {
    obj.apiVersion ??= apiVersion;
    obj.kind ??= kind;
    const t = templateOf(obj);
    if (t !== undefined) found.set(`${kind}/${obj.metadata?.name ?? ''}`, { obj, template: t });
  };
  const tryList = async <T>(resource: string, f: () => Promise<{ items: T[] }>): Promise<T[]> => {
    try {
      return (await busyRetry(() => ask(kc, 'list', resource, namespace, f))).items;
    } catch (e) {
      warnings.push(`${resource} not searched for the workload that mounts ${pvc}: ${firstLine(e)}`);
      return [];
    }
  };
  for (const d of await tryList('deployments.apps', () => apps.listNamespacedDeployment({ namespace }))) if (mountsClaim(d.spec?.template, pvc)) add(d as KObject, 'apps/v1', 'Deployment');
  for (const d of await tryList('daemonsets.apps', () => apps.listNamespacedDaemonSet({ namespace }))) if (mountsClaim(d.spec?.template, pvc)) add(d as KObject, 'apps/v1', 'DaemonSet');
  for (const r of await tryList('replicasets.apps', () => apps.listNamespacedReplicaSet({ namespace }))) {
    // a Deployment's ReplicaSet: the Deployment is what is restored
    if (controllerOf(r.metadata) === undefined && mountsClaim(r.spec?.template, pvc)) add(r as KObject, 'apps/v1', 'ReplicaSet');
  }
  for (const s of await tryList('statefulsets.apps', () => apps.listNamespacedStatefulSet({ namespace }))) {
    const sts = s.metadata?.name ?? '';
    const fromTemplate = (s.spec?.volumeClaimTemplates ?? []).some((v) => new RegExp(`^${escapeRe(v.metadata?.name ?? '')}-${escapeRe(sts)}-\\d+$`).test(pvc));
    if (fromTemplate || mountsClaim(s.spec?.template, pvc)) add(s as KObject, 'apps/v1', 'StatefulSet');
  }
  for (const podName of o.pods ?? []) {
    try {
      const pod = await ask(kc, 'get', 'pods', namespace, () => core.readNamespacedPod({ namespace, name: podName }));
      let owner = controllerOf(pod.metadata);
      if (owner === undefined) {
        add(pod as KObject, 'v1', 'Pod');
        continue;
      }
      if (owner.kind === 'ReplicaSet') {
        const rs = await ask(kc, 'get', 'replicasets.apps', namespace, () => apps.readNamespacedReplicaSet({ namespace, name: owner!.name }));
        const up = controllerOf(rs.metadata);
        if (up === undefined) {
          add(rs as KObject, 'apps/v1', 'ReplicaSet');
          continue;
        }
        owner = up;
      }
      if (found.has(`${owner.kind}/${owner.name}`)) continue;
      if (owner.kind === 'Deployment') add((await ask(kc, 'get', 'deployments.apps', namespace, () => apps.readNamespacedDeployment({ namespace, name: owner!.name }))) as KObject, 'apps/v1', 'Deployment');
      else if (owner.kind === 'StatefulSet') add((await ask(kc, 'get', 'statefulsets.apps', namespace, () => apps.readNamespacedStatefulSet({ namespace, name: owner!.name }))) as KObject, 'apps/v1', 'StatefulSet');
      else if (owner.kind === 'DaemonSet') add((await ask(kc, 'get', 'daemonsets.apps', namespace, () => apps.readNamespacedDaemonSet({ namespace, name: owner!.name }))) as KObject, 'apps/v1', 'DaemonSet');
      else warnings.push(`the ${owner.kind} ${owner.name} that owns pod ${podName} is not exported: meshback's agent may read Deployments, StatefulSets, DaemonSets and ReplicaSets only`);
    } catch (e) {
      warnings.push(`pod ${podName}: its workload not exported: ${firstLine(e)}`);
    }
  }
  if (found.size === 0) warnings.push(`no Deployment, StatefulSet, DaemonSet or ReplicaSet of namespace ${namespace} mounts ${pvc}: no workload exported`);

  const objects: KObject[] = [...found.values()].map((f) => f.obj);
  const templates = [...found.values()].map((f) => f.template);
  if (templates.length > 0) {
    for (const svc of await tryList('services', () => core.listNamespacedService({ namespace }))) {
      const sel = svc.spec?.selector;
      if (sel === undefined || Object.keys(sel).length === 0) continue;
      if (templates.some((t) => Object.entries(sel).every(([k, v]) => t.metadata?.labels?.[k] === v))) objects.push({ ...(svc as KObject), apiVersion: 'v1', kind: 'Service' });
    }
    const cms = new Map<string, boolean>();
    // what the application refers to: not the ConfigMaps of injected volumes (Istio's istio-ca-root-cert)
    for (const t of templates) {
      const own = templateOf(stripInjected({ apiVersion: 'v1', kind: 'Pod', metadata: t.metadata ?? {}, spec: t.spec } as unknown as KObject).object)!;
      for (const [n, optional] of configMapsOf(own)) cms.set(n, (cms.get(n) ?? true) && optional);
    }
    for (const [name, optional] of [...cms].sort()) {
      try {
        objects.push({ ...((await ask(kc, 'get', 'configmaps', namespace, () => core.readNamespacedConfigMap({ namespace, name }))) as KObject), apiVersion: 'v1', kind: 'ConfigMap' });
      } catch (e) {
        if (!(optional && notFound(e))) warnings.push(`ConfigMap ${name} not exported: ${notFound(e) ? 'it does not exist' : firstLine(e)}`);
      }
    }
  }
  for (const obj of objects) {
    const apiVersion = obj.apiVersion ?? 'v1';
    const name = obj.metadata?.name ?? '';
    const p = `k8s/workloads/${groupDir(apiVersion)}/${obj.kind ?? ''}/${name}.yaml`;
    files.push({ path: p, content: yamlOf(obj) });
    manifest.workloads.push({ apiVersion, kind: obj.kind ?? '', name, path: p });
  }
  files.push({ path: 'k8s/manifest.json', content: Buffer.from(JSON.stringify(manifest, null, 2) + '\n') });
  return { files, warnings };
}

/**
 * A 429 is the API server saying "not now" (its watch cache of a just-installed CRD is still
 * initializing, or priority and fairness hold the request back): asked again, 1 s, 2 s, 4 s, 8 s later.
 */
async function busyRetry<T>(f: () => Promise<T>): Promise<T> {
  for (let delay = 1000; ; delay *= 2) {
    try {
      return await f();
    } catch (e) {
      if (!(e instanceof MeshbackError && e.data['status'] === 429) || delay > 8000) throw e;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// ---------------------------------------------------------------------------------------------
// restore

export interface RestoredObject {
  path: string;
  apiVersion: string;
  kind: string;
  name: string;
  action: 'created' | 'replaced' | 'skipped';
  /** why it was skipped */
  reason?: string;
  /** what stripInjected removed */
  removed: string[];
}

/** ConfigMaps first, then Services, then the workloads (their pods find their configuration) */
const RESTORE_ORDER = ['ConfigMap', 'Service'];

/**
 * The workload files of an export (k8s/workloads/...) into `namespace`: each stripped with
 * stripInjected and created, or replaced where it exists. An object a controller owned (a
 * Deployment's ReplicaSet, a StatefulSet's pod) is skipped: its owner makes it again. dryRun: the
 * API server validates each object and stores nothing (dryRun=All). Other files are ignored.
 */
export async function restoreWorkloads(kc: KubeConfig, namespace: string, files: ExportedFile[], o: { dryRun?: boolean } = {}): Promise<{ objects: RestoredObject[] }> {
  const client = KubernetesObjectApi.makeApiClient(kc);
  const dryRun = o.dryRun === true ? 'All' : undefined;
  const wanted = files.filter((f) => f.path.startsWith('k8s/workloads/') && /\.ya?ml$/.test(f.path));
  const parsed = wanted.map((f) => {
    let obj: KObject;
    try {
      obj = parseYaml(f.content.toString('utf8')) as KObject;
    } catch (e) {
      throw new MeshbackError('INTEGRITY', `${f.path} of the snapshot is not YAML (${firstLine(e)}): the export is damaged; restore without --with-workloads`);
    }
    if (typeof obj?.kind !== 'string' || typeof obj.apiVersion !== 'string' || typeof obj.metadata?.name !== 'string') throw new MeshbackError('INTEGRITY', `${f.path} of the snapshot is no Kubernetes object (no apiVersion, kind or metadata.name): the export is damaged; restore without --with-workloads`);
    return { path: f.path, obj };
  });
  const rank = (k: string) => (RESTORE_ORDER.includes(k) ? RESTORE_ORDER.indexOf(k) : RESTORE_ORDER.length);
  parsed.sort((a, b) => rank(a.obj.kind!) - rank(b.obj.kind!) || a.path.localeCompare(b.path));
  const out: RestoredObject[] = [];
  for (const { path: p, obj } of parsed) {
    const base = { path: p, apiVersion: obj.apiVersion!, kind: obj.kind!, name: obj.metadata!.name! };
    const owner = controllerOf(obj.metadata);
    if (owner !== undefined) {
      out.push({ ...base, action: 'skipped', reason: `owned by ${owner.kind} ${owner.name}, which makes it again`, removed: [] });
      continue;
    }
    const { object, removed } = stripInjected(obj);
    object.metadata = { ...object.metadata, namespace } as V1ObjectMeta;
    const resource = `${base.kind.toLowerCase()}s${groupDir(base.apiVersion) === 'core' ? '' : '.' + groupDir(base.apiVersion)}`;
    try {
      await ask(kc, 'create', resource, namespace, () => client.create(object, undefined, dryRun));
      out.push({ ...base, action: 'created', removed });
    } catch (e) {
      if (!(e instanceof MeshbackError && e.data['status'] === 409)) throw e;
      // replace the existing object; another writer (a controller scaling it, updating its status) may
      // change it between the read and the write: read again and retry, a bounded number of times
      for (let attempt = 1; ; attempt++) {
        const existing = await ask(kc, 'get', resource, namespace, () => client.read<KObject>({ apiVersion: base.apiVersion, kind: base.kind, metadata: { name: base.name, namespace } }));
        const next = structuredClone(object);
        next.metadata!.resourceVersion = existing.metadata?.resourceVersion;
        if (base.kind === 'Service' && next.spec !== undefined) {
          // immutable: the existing Service's addresses stay
          for (const k of ['clusterIP', 'clusterIPs', 'ipFamilies']) if (existing.spec?.[k] !== undefined) next.spec[k] = existing.spec[k];
        }
        try {
          await ask(kc, 'update', resource, namespace, () => client.replace(next, undefined, dryRun));
          break;
        } catch (e2) {
          if (!(e2 instanceof MeshbackError && e2.data['status'] === 409) || attempt >= 5) throw e2;
          await new Promise((r) => setTimeout(r, 200 * attempt));
        }
      }
      out.push({ ...base, action: 'replaced', removed });
    }
  }
  return { objects: out };
}

// ---------------------------------------------------------------------------------------------
// Envoy's admin state

/** Envoy's admin port in Istio's proxy */
export const ENVOY_ADMIN_PORT = 15000;
const ENVOY_PATHS = [
  ['config_dump', 'config_dump.json'],
  ['clusters', 'clusters.txt'],
  ['stats', 'stats.txt'],
] as const;
const ENVOY_MAX_BYTES = 64 << 20;

/** One GET to a port of the pod through the API server's pods/portforward (a websocket). */
async function portForwardGet(kc: KubeConfig, namespace: string, pod: string, port: number, urlPath: string, timeoutMs: number): Promise<Buffer> {
  const [ours, theirs] = duplexPair();
  const errText: Buffer[] = [];
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      theirs.write(chunk);
      cb();
    },
  });
  const err = new Writable({
    write(chunk: Buffer, _enc, cb) {
      errText.push(chunk);
      cb();
    },
  });
  let ws: { close(): void } | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    const connect = new PortForward(kc, true).portForward(namespace, pod, [port], output, err, theirs) as Promise<{ close(): void }>;
    ws = await Promise.race([connect, timeout]);
    const get = new Promise<Buffer>((resolve, reject) => {
      const req = http.request({ createConnection: () => ours, method: 'GET', path: urlPath, headers: { host: `localhost:${port}`, connection: 'close' } }, (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > ENVOY_MAX_BYTES) {
            req.destroy(new Error(`more than ${ENVOY_MAX_BYTES >> 20} MiB`));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => {
          if (res.statusCode !== 200) reject(new Error(`Envoy answered ${res.statusCode ?? 0} for ${urlPath}`));
          else resolve(Buffer.concat(chunks));
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    // the kubelet reports a failed connection to the port on the error stream, and the websocket stays open
    const failed = new Promise<never>((_, reject) => {
      const poll = setInterval(() => {
        if (errText.length > 0) {
          clearInterval(poll);
          reject(new Error(Buffer.concat(errText).toString('utf8').trim().split('\n')[0]));
        }
      }, 100);
      void get.finally(() => clearInterval(poll)).catch(() => undefined);
      void timeout.catch(() => clearInterval(poll));
    });
    return await Promise.race([get, failed, timeout]);
  } finally {
    clearTimeout(timer);
    ws?.close();
    ours.destroy();
    theirs.destroy();
  }
}

function wsErrorText(e: unknown): string {
  // the websocket's ErrorEvent carries the handshake's answer ("Unexpected server response: 403")
  const m = (e as { message?: unknown; error?: unknown })?.message ?? (e as { error?: { message?: unknown } })?.error?.message;
  return typeof m === 'string' && m !== '' ? m.split('\n')[0]! : firstLine(e);
}

/**
 * Envoy's admin state of the pod's Istio proxy (config_dump, clusters, stats from port 15000) through
 * the API server's pods/portforward, as files k8s/envoy/POD/{config_dump.json,clusters.txt,stats.txt}.
 * Where the cluster forbids port-forward (RBAC: create pods/portforward) or cannot do it (no kubelet
 * answers, the proxy does not listen), nothing is captured and a warning says why: never a failure.
 * Envoy redacts private keys in config_dump itself.
 */
export async function captureEnvoyAdmin(kc: KubeConfig, pod: V1Pod, o: { timeoutMs?: number } = {}): Promise<{ files: ExportedFile[]; warnings: string[] }> {
  const name = pod.metadata?.name ?? '';
  const namespace = pod.metadata?.namespace ?? 'default';
  const mesh = meshOf(pod).mesh;
  if (mesh !== 'istio' && mesh !== 'istio-native') return { files: [], warnings: [`pod ${name} has no Istio proxy (mesh: ${mesh}): no Envoy admin state captured`] };
  const files: ExportedFile[] = [];
  for (const [urlPath, file] of ENVOY_PATHS) {
    try {
      const content = await portForwardGet(kc, namespace, name, ENVOY_ADMIN_PORT, `/${urlPath}`, o.timeoutMs ?? 30_000);
      files.push({ path: `k8s/envoy/${name}/${file}`, content });
    } catch (e) {
      const text = wsErrorText(e);
      const why = /\b403\b/.test(text)
        ? 'the cluster forbids it (RBAC: grant "create" on "pods/portforward" in the namespace)'
        : `the API server could not forward port ${ENVOY_ADMIN_PORT} of the pod (${text})`;
      return { files, warnings: [`Envoy admin state of pod ${namespace}/${name} not captured (/${urlPath}): ${why}; the backup goes on without it`] };
    }
  }
  return { files, warnings: [] };
}
