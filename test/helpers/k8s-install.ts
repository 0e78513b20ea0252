/**
 * Helpers for tests against the testenv's kube-apiserver: apply rendered objects, and install
 * meshback as the chart would (CRDs, namespace, service accounts, the RBAC of src/k8s/api.ts) but
 * without its Deployment and DaemonSet: tests run the controller and the agent as local processes,
 * with the service accounts' tokens in kubeconfig files, so a rule missing from the chart fails
 * the test that needs it.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ApiException, ApiextensionsV1Api, CoreV1Api, KubernetesObjectApi, loadYaml, type KubeConfig, type KubernetesObject } from '@kubernetes/client-node';
import type { K8sEnv } from '../../lab/testenv/index.ts';
import { AGENT, CONTROLLER, renderInstall, type InstallOptions, type K8sObject } from '../../src/k8s/install.ts';

/** Creates each object (plain data, as rendered) in order, or replaces it when it exists (409); CRDs are waited for until Established. */
export async function applyObjects(kc: KubeConfig, objs: readonly K8sObject[]): Promise<void> {
  const api = KubernetesObjectApi.makeApiClient(kc);
  const crds: string[] = [];
  for (const o of objs) {
    // into the client's model classes first: their serializer drops plain fields it knows by
    // another name (a schema's `default` and `enum` are `_default` and `_enum` there)
    const body = loadYaml<KubernetesObject>(JSON.stringify(o));
    try {
      await api.create(body);
    } catch (e) {
      if (!(e instanceof ApiException) || e.code !== 409) throw new Error(`cannot create ${o.kind} ${o.metadata.namespace ?? ''}/${o.metadata.name}: ${(e as Error).message.slice(0, 500)}`, { cause: e });
      const cur = await api.read({ apiVersion: o.apiVersion, kind: o.kind, metadata: { name: o.metadata.name, ...(o.metadata.namespace !== undefined ? { namespace: o.metadata.namespace } : {}) } });
      await api.replace({ ...body, metadata: { ...body.metadata, resourceVersion: cur.metadata?.resourceVersion } } as KubernetesObject);
    }
    if (o.kind === 'CustomResourceDefinition') crds.push(o.metadata.name);
  }
  if (crds.length > 0) await crdsEstablished(kc, crds);
}

/** Waits (up to 30 s) until each CRD has the condition Established. */
export async function crdsEstablished(kc: KubeConfig, names: string[]): Promise<void> {
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const t0 = Date.now();
  for (;;) {
    const waiting: string[] = [];
    for (const name of names) {
      const c = await ext.readCustomResourceDefinition({ name });
      if (!(c.status?.conditions ?? []).some((x) => x.type === 'Established' && x.status === 'True')) waiting.push(name);
    }
    if (waiting.length === 0) return;
    if (Date.now() - t0 > 30_000) throw new Error(`CRDs not Established after 30 s: ${waiting.join(', ')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A kubeconfig file's text for a bearer token against the testenv's server. */
export function tokenKubeconfig(env: K8sEnv, user: string, token: string, namespace: string): string {
  return (
    JSON.stringify(
      {
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'meshback-testenv', cluster: { server: env.server, 'certificate-authority-data': Buffer.from(env.caPem).toString('base64') } }],
        users: [{ name: user, user: { token } }],
        contexts: [{ name: user, context: { cluster: 'meshback-testenv', user, namespace } }],
        'current-context': user,
      },
      null,
      2,
    ) + '\n'
  );
}

/** A token of a service account (TokenRequest API), valid for `seconds` (default 2 h). */
export async function serviceAccountToken(kc: KubeConfig, namespace: string, name: string, seconds = 7200): Promise<string> {
  const r = await kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({ name, namespace, body: { spec: { audiences: [], expirationSeconds: seconds } } });
  const t = r.status?.token;
  if (t === undefined || t === '') throw new Error(`no token for service account ${namespace}/${name}`);
  return t;
}

export interface Installed {
  namespace: string;
  controllerToken: string;
  agentToken: string;
  /** kubeconfig files (mode 0600) for the two service accounts, their namespace the install namespace */
  controllerKubeconfig: string;
  agentKubeconfig: string;
}

/**
 * Installs meshback on the testenv's server as renderInstall renders it, without the Deployment and
 * the DaemonSet, and writes kubeconfig files (in env.dir) for the controller's and the agent's
 * service-account tokens (2 h).
 */
export async function installMeshback(env: K8sEnv, o: { namespace?: string } & Pick<InstallOptions, 'image'> = {}): Promise<Installed> {
  const namespace = o.namespace ?? 'meshback';
  const kc = env.kubeConfig();
  const objs = renderInstall({ namespace, ...(o.image !== undefined ? { image: o.image } : {}) }).filter((x) => x.kind !== 'Deployment' && x.kind !== 'DaemonSet');
  await applyObjects(kc, objs);
  const controllerToken = await serviceAccountToken(kc, namespace, CONTROLLER);
  const agentToken = await serviceAccountToken(kc, namespace, AGENT);
  const dir = path.join(env.dir, 'meshback-install', namespace);
  await fsp.mkdir(dir, { recursive: true });
  const controllerKubeconfig = path.join(dir, `${CONTROLLER}.kubeconfig`);
  const agentKubeconfig = path.join(dir, `${AGENT}.kubeconfig`);
  await fsp.writeFile(controllerKubeconfig, tokenKubeconfig(env, CONTROLLER, controllerToken, namespace), { mode: 0o600 });
  await fsp.writeFile(agentKubeconfig, tokenKubeconfig(env, AGENT, agentToken, namespace), { mode: 0o600 });
  return { namespace, controllerToken, agentToken, controllerKubeconfig, agentKubeconfig };
}
