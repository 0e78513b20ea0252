/**
 * k8s/kube: one way to talk to the API server for every part of meshback's Kubernetes front end:
 * each request bounded in time, its failures turned into one-line errors that say what to do
 * (CLUSTER, exit 18; FORBIDDEN, exit 19), and typed access to meshback's own resources.
 */
import { ApiException, CustomObjectsApi, setHeaderOptions } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import { MeshbackError, errMessage } from '../errors/index.ts';
import { GROUP, KINDS, VERSION } from './api.ts';
import type { LabelSelector } from './api.ts';

/** how long one API request may take before the server counts as unreachable */
const REQUEST_MS = 30_000;

/** One API request: bounded in time, its failures turned into one-line errors that say what to do. */
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

export function apiMessage(e: ApiException<unknown>): string {
  const body = e.body;
  try {
    const o = (typeof body === 'string' ? JSON.parse(body) : body) as { message?: unknown };
    if (typeof o?.message === 'string') return o.message;
  } catch {
    // not JSON: the text itself
  }
  return String(typeof body === 'string' ? body : e.message).split('\n')[0]!.slice(0, 300);
}

export function causeText(e: unknown): string {
  let c: unknown = e;
  for (let i = 0; i < 5 && c instanceof Error && c.cause !== undefined; i++) c = c.cause;
  const code = (c as { code?: unknown }).code;
  const msg = errMessage(c).split('\n')[0]!;
  return typeof code === 'string' && !msg.includes(code) ? `${code}: ${msg}` : msg;
}


/** the API server answered 409 (a conflict: the object changed, or exists) */
export function conflict(e: unknown): boolean {
  return e instanceof MeshbackError && e.code === 'CLUSTER' && e.data['status'] === 409;
}

type Kind = keyof typeof KINDS;

/** Typed get/list/create/patch/status of meshback's resources. */
export class Resources {
  private readonly co: CustomObjectsApi;
  private readonly kc: KubeConfig;
  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.co = kc.makeApiClient(CustomObjectsApi);
  }

  async list<T>(kind: Kind, namespace: string | undefined, labelSelector?: string): Promise<T[]> {
    const plural = KINDS[kind].plural;
    const sel = labelSelector !== undefined ? { labelSelector } : {};
    const r = (await ask(this.kc, 'list', `${plural}.${GROUP}`, namespace, () =>
      namespace === undefined ? this.co.listClusterCustomObject({ group: GROUP, version: VERSION, plural, ...sel }) : this.co.listNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace, ...sel }),
    )) as { items?: T[] };
    return r.items ?? [];
  }

  async get<T>(kind: Kind, namespace: string, name: string): Promise<T> {
    const plural = KINDS[kind].plural;
    return (await ask(this.kc, 'get', `${plural}.${GROUP}`, namespace, () => this.co.getNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace, name }))) as T;
  }

  /** undefined when it does not exist */
  async find<T>(kind: Kind, namespace: string, name: string): Promise<T | undefined> {
    try {
      return await this.get<T>(kind, namespace, name);
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  async create<T>(kind: Kind, namespace: string, body: T): Promise<T> {
    const plural = KINDS[kind].plural;
    return (await ask(this.kc, 'create', `${plural}.${GROUP}`, namespace, () => this.co.createNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace, body: body as object }))) as T;
  }

  async delete(kind: Kind, namespace: string, name: string): Promise<void> {
    const plural = KINDS[kind].plural;
    try {
      await ask(this.kc, 'delete', `${plural}.${GROUP}`, namespace, () => this.co.deleteNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace, name, propagationPolicy: 'Background' }));
    } catch (e) {
      if (!notFound(e)) throw e;
    }
  }

  /** A merge patch of the object (labels, say). */
  async patch<T>(kind: Kind, namespace: string, name: string, body: object): Promise<T> {
    const plural = KINDS[kind].plural;
    return (await ask(this.kc, 'patch', `${plural}.${GROUP}`, namespace, () => this.co.patchNamespacedCustomObject({ group: GROUP, version: VERSION, plural, namespace, name, body }, mergePatch()))) as T;
  }

  /**
   * Replaces the status, on the condition that the object is still at `resourceVersion` (a 409
   * otherwise: another controller or agent changed it first). The one way phases move: a claim
   * that two agents make at once succeeds for one of them.
   */
  async replaceStatus<T extends { metadata: { resourceVersion?: string } }>(kind: Kind, obj: T & { metadata: { name: string; namespace: string } }): Promise<T> {
    const plural = KINDS[kind].plural;
    return (await ask(this.kc, 'update', `${plural}/status.${GROUP}`, obj.metadata.namespace, () =>
      this.co.replaceNamespacedCustomObjectStatus({ group: GROUP, version: VERSION, plural, namespace: obj.metadata.namespace, name: obj.metadata.name, body: obj as object }),
    )) as T;
  }

  /** A merge patch of the status, unconditional (heartbeats, progress). */
  async patchStatus<T>(kind: Kind, namespace: string, name: string, status: object): Promise<T> {
    const plural = KINDS[kind].plural;
    return (await ask(this.kc, 'patch', `${plural}/status.${GROUP}`, namespace, () =>
      this.co.patchNamespacedCustomObjectStatus({ group: GROUP, version: VERSION, plural, namespace, name, body: { status } }, mergePatch()),
    )) as T;
  }
}

/** client-node's option for a JSON merge patch */
export function mergePatch(): ReturnType<typeof setHeaderOptions> {
  return setHeaderOptions('Content-Type', 'application/merge-patch+json');
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Does the selector match these labels (matchLabels and matchExpressions; an empty selector matches everything)? */
export function selectorMatches(sel: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  for (const [k, v] of Object.entries(sel?.matchLabels ?? {})) if (l[k] !== v) return false;
  for (const e of sel?.matchExpressions ?? []) {
    const has = Object.hasOwn(l, e.key);
    const inValues = has && (e.values ?? []).includes(l[e.key]!);
    if (e.operator === 'In' && !inValues) return false;
    if (e.operator === 'NotIn' && inValues) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

