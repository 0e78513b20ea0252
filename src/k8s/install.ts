/**
 * k8s/install: every object an installation of meshback is made of, as `meshback k8s install
 * --render` prints them and the Helm chart (charts/meshback) renders them for the same values: the
 * CRDs (src/k8s/crds.ts), the namespace (optional), a ServiceAccount, ClusterRole and
 * ClusterRoleBinding for the controller and for the agent (the rules of src/k8s/api.ts), the
 * controller's Role and RoleBinding for its Lease, the controller's Deployment and the agent's
 * DaemonSet. Least privilege: the controller never reads Secrets, the agent gets them by name only;
 * the controller runs as non-root with a read-only root filesystem and no capabilities; the agent
 * runs as root (it reads and writes volumes of any owner) with only the file capabilities that
 * needs. Every pod stays out of mesh injection (NO_INJECTION). docs/k8s.md says why for each.
 */
import { AGENT_RULES, CONTROLLER_NAMESPACE_RULES, CONTROLLER_RULES, KUBELET_ROOT, NO_INJECTION, type RbacRule } from './api.ts';
import { customResourceDefinitions } from './crds.ts';

export interface Resources {
  requests?: { cpu?: string; memory?: string };
  limits?: { cpu?: string; memory?: string };
}

export interface InstallOptions {
  /** the namespace of the controller and the agents (default meshback) */
  namespace?: string;
  /** the release (app.kubernetes.io/instance; default meshback) */
  instance?: string;
  /** meshback's version (app.kubernetes.io/version, the image's default tag) */
  version?: string;
  /** default ghcr.io/meshback/meshback:VERSION */
  image?: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  controller?: { replicas?: number; resources?: Resources };
  agent?: { resources?: Resources; concurrency?: number; kubeletRoot?: string };
  /** make the namespace (default true) */
  createNamespace?: boolean;
  /** the CRDs too (default true) */
  crds?: boolean;
}

/** The defaults, as charts/meshback/values.yaml has them (a unit test compares the two). */
export const INSTALL_DEFAULTS = {
  namespace: 'meshback',
  instance: 'meshback',
  version: '0.1.0',
  imageRepository: 'ghcr.io/meshback/meshback',
  imagePullPolicy: 'IfNotPresent',
  createNamespace: true,
  controller: { replicas: 2, resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { cpu: '500m', memory: '256Mi' } } },
  agent: { concurrency: 2, kubeletRoot: KUBELET_ROOT, resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '1', memory: '512Mi' } } },
} as const;

export const CONTROLLER = 'meshback-controller';
export const AGENT = 'meshback-agent';

/**
 * The agent's capabilities (all others dropped): what reading and restoring files of any owner
 * needs, and nothing for the network or the host's processes. docs/k8s.md says why for each.
 */
export const AGENT_CAPABILITIES = ['CHOWN', 'DAC_OVERRIDE', 'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'SETFCAP'] as const;

/** A Kubernetes object as rendered: plain data. */
export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> } } & Record<string, unknown>;

const rules = (rs: RbacRule[]) => rs.map((r) => ({ apiGroups: [...r.apiGroups], resources: [...r.resources], verbs: [...r.verbs] }));

/** The objects of an installation, in the order they are applied (CRDs and namespace first). */
export function renderInstall(o: InstallOptions = {}): K8sObject[] {
  const d = INSTALL_DEFAULTS;
  const ns = o.namespace ?? d.namespace;
  const instance = o.instance ?? d.instance;
  const version = o.version ?? d.version;
  const image = o.image ?? `${d.imageRepository}:${version}`;
  const pullPolicy = o.imagePullPolicy ?? d.imagePullPolicy;
  const cres = o.controller?.resources ?? d.controller.resources;
  const ares = o.agent?.resources ?? d.agent.resources;
  const kubeletRoot = o.agent?.kubeletRoot ?? d.agent.kubeletRoot;
  const concurrency = o.agent?.concurrency ?? d.agent.concurrency;
  const base = { 'app.kubernetes.io/name': 'meshback', 'app.kubernetes.io/instance': instance, 'app.kubernetes.io/version': version };
  const labels = (component?: string): Record<string, string> => ({ ...base, ...(component !== undefined ? { 'app.kubernetes.io/component': component } : {}) });
  const selector = (component: string) => ({ 'app.kubernetes.io/name': 'meshback', 'app.kubernetes.io/instance': instance, 'app.kubernetes.io/component': component });
  const meta = (name: string, component?: string, namespaced = true) => ({ name, ...(namespaced ? { namespace: ns } : {}), labels: labels(component) });
  const tmp = { name: 'tmp', emptyDir: { sizeLimit: '1Gi' } };
  const env = [
    { name: 'XDG_STATE_HOME', value: '/tmp/state' },
    { name: 'MESHBACK_CACHE_DIR', value: '/tmp/cache' },
  ];
  const out: K8sObject[] = [];
  if (o.crds !== false) out.push(...(customResourceDefinitions() as unknown as K8sObject[]));
  if (o.createNamespace ?? d.createNamespace) {
    // the agent mounts a hostPath (the kubelet's pods/): Pod Security "baseline" forbids that, so the namespace says privileged
    out.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { ...labels(), 'pod-security.kubernetes.io/enforce': 'privileged' } } });
  }
  for (const [name, component, rs] of [
    [CONTROLLER, 'controller', CONTROLLER_RULES],
    [AGENT, 'agent', AGENT_RULES],
  ] as const) {
    out.push({ apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta(name, component) });
    out.push({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', metadata: meta(name, component, false), rules: rules(rs) });
    out.push({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: meta(name, component, false),
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
      subjects: [{ kind: 'ServiceAccount', name, namespace: ns }],
    });
  }
  out.push({ apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'Role', metadata: meta(CONTROLLER, 'controller'), rules: rules(CONTROLLER_NAMESPACE_RULES) });
  out.push({
    apiVersion: 'rbac.authorization.k8s.io/v1',
    kind: 'RoleBinding',
    metadata: meta(CONTROLLER, 'controller'),
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: CONTROLLER },
    subjects: [{ kind: 'ServiceAccount', name: CONTROLLER, namespace: ns }],
  });
  const podMeta = (component: string) => ({ labels: { ...labels(component), ...NO_INJECTION.labels }, annotations: { ...NO_INJECTION.annotations } });
  out.push({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: meta(CONTROLLER, 'controller'),
    spec: {
      replicas: o.controller?.replicas ?? d.controller.replicas,
      selector: { matchLabels: selector('controller') },
      template: {
        metadata: podMeta('controller'),
        spec: {
          serviceAccountName: CONTROLLER,
          securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'controller',
              image,
              imagePullPolicy: pullPolicy,
              args: ['k8s', 'controller', '--namespace=$(POD_NAMESPACE)', '--identity=$(POD_NAME)'],
              env: [
                { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                ...env,
              ],
              resources: cres,
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] } },
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            },
          ],
          volumes: [tmp],
        },
      },
    },
  });
  out.push({
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: meta(AGENT, 'agent'),
    spec: {
      selector: { matchLabels: selector('agent') },
      updateStrategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } },
      template: {
        metadata: podMeta('agent'),
        spec: {
          serviceAccountName: AGENT,
          // on every node, whatever its taints: a volume on a tainted node needs its backup too
          tolerations: [{ operator: 'Exists' }],
          securityContext: { runAsUser: 0, runAsGroup: 0, runAsNonRoot: false, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'agent',
              image,
              imagePullPolicy: pullPolicy,
              args: ['k8s', 'agent', '--node=$(NODE_NAME)', `--kubelet-root=${kubeletRoot}`, `--concurrency=${concurrency}`],
              env: [{ name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } }, ...env],
              resources: ares,
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'], add: [...AGENT_CAPABILITIES] } },
              volumeMounts: [
                { name: 'kubelet', mountPath: kubeletRoot, mountPropagation: 'HostToContainer' },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            },
          ],
          volumes: [{ name: 'kubelet', hostPath: { path: kubeletRoot, type: 'Directory' } }, tmp],
        },
      },
    },
  });
  return out;
}

/** kind/namespace/name: how objects of two renderings are matched (the namespace empty for cluster-scoped ones). */
export function objectKey(o: { kind?: string; metadata?: { name?: string; namespace?: string } }): string {
  return `${o.kind ?? ''}/${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}
