/**
 * k8s/repository: the repository a Kubernetes Secret names, the one way the agent and `meshback k8s
 * restore --with-workloads` find it. Keys: `repository` (the location), `password`, and for S3
 * `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (both or neither), `AWS_SESSION_TOKEN`,
 * `AWS_REGION`, used for this repository only.
 */
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig } from '@kubernetes/client-node';
import { NotFoundError, UsageError } from '../errors/index.ts';
import type { BackendCredentials } from '../storage/registry.ts';
import { ask, notFound } from './kube.ts';

export interface SecretRepository {
  location: string;
  password: string;
  credentials?: BackendCredentials;
}

/** The repository a Secret names: keys `repository` and `password`. */
export async function repositoryFromSecret(kc: KubeConfig, namespace: string, secret: string): Promise<SecretRepository> {
  const core = kc.makeApiClient(CoreV1Api);
  let s;
  try {
    s = await ask(kc, 'get', 'secrets', namespace, () => core.readNamespacedSecret({ name: secret, namespace }));
  } catch (e) {
    if (notFound(e)) throw new NotFoundError(`the repository Secret ${namespace}/${secret} does not exist: create it with the keys "repository" and "password"`);
    throw e;
  }
  const val = (k: string): string | undefined => {
    const b = s.data?.[k];
    if (b !== undefined) return Buffer.from(b, 'base64').toString('utf8').trim();
    return s.stringData?.[k]?.trim();
  };
  const location = val('repository');
  const password = val('password');
  if (location === undefined || location === '') throw new UsageError(`the Secret ${namespace}/${secret} has no key "repository": set it to the repository's location (a path on the node, or s3:...)`);
  if (password === undefined || password === '') throw new UsageError(`the Secret ${namespace}/${secret} has no key "password": set it to the repository's password`);
  // S3 credentials of the Secret, for this repository only (else the agent's own: its environment, its role)
  const id = val('AWS_ACCESS_KEY_ID');
  const key = val('AWS_SECRET_ACCESS_KEY');
  if ((id === undefined) !== (key === undefined)) throw new UsageError(`the Secret ${namespace}/${secret} has ${id !== undefined ? 'AWS_ACCESS_KEY_ID but no AWS_SECRET_ACCESS_KEY' : 'AWS_SECRET_ACCESS_KEY but no AWS_ACCESS_KEY_ID'}: give both, or neither`);
  const token = val('AWS_SESSION_TOKEN');
  const region = val('AWS_REGION');
  const credentials = id !== undefined && key !== undefined ? { accessKeyId: id, secretAccessKey: key, ...(token !== undefined ? { sessionToken: token } : {}), ...(region !== undefined ? { region } : {}) } : undefined;
  return { location, password, ...(credentials !== undefined ? { credentials } : {}) };
}

