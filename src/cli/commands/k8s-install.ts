/**
 * k8s install / k8s cronjob: the handlers of `meshback k8s install --render` (every object of an
 * installation as a YAML stream, or a JSON list with --json: src/k8s/install.ts, the same objects
 * as the Helm chart charts/meshback) and `meshback k8s cronjob --policy NAME` (a ConfigMap and a
 * plain CronJob per PVC the policy matches, for `meshback run` without a controller:
 * src/k8s/cronjob.ts). Both print manifests and change nothing in a cluster; apply them with
 * `kubectl apply -f -`. docs/k8s.md.
 */
import { promises as fsp } from 'node:fs';
import { NotFoundError, UsageError, errMessage, isErrno } from '../../errors/index.ts';
import { toYamlStream } from '../../k8s/crds.ts';
import { cronJobCaveats, matchingPvcs, parseBackupPolicy, readBackupPolicy, renderCronJob } from '../../k8s/cronjob.ts';
import { contextNamespace, loadKubeConfig } from '../../k8s/discover.ts';
import { INSTALL_DEFAULTS, renderInstall, type K8sObject } from '../../k8s/install.ts';
import type { OptionSpec } from '../command.ts';
import { bool, str, strs } from '../command.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';
import { VERSION } from '../version.ts';

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

/** The options of install and cronjob, merged into `meshback k8s`'s (namespace and kubeconfig are k8s's own). */
export const K8S_INSTALL_OPTIONS: Record<string, OptionSpec> = {
  render: { type: 'boolean', description: 'install: print the manifests (CRDs, RBAC, the Deployment and DaemonSet) as a YAML stream, a JSON list with --json; apply with kubectl apply -f -' },
  image: { type: 'string', argument: 'IMAGE', description: `install, cronjob: the meshback image (default ${INSTALL_DEFAULTS.imageRepository}:${VERSION})` },
  'no-namespace': { type: 'boolean', description: 'install: do not render the namespace object (it exists)' },
  policy: { type: 'string', argument: 'NAME', description: 'cronjob: the BackupPolicy to render CronJobs for; restore: the BackupPolicy whose repository holds the snapshot' },
  file: { type: 'string', short: 'f', argument: 'FILE', description: 'cronjob: read the BackupPolicy from this YAML file instead of the cluster (then give --pvc)' },
  pvc: { type: 'string', multiple: true, argument: 'NAME', description: 'cronjob: a PVC to back up (repeatable); with the cluster, default: every PVC the policy selects' },
};

const image = (v: Values): string => {
  const i = str(v['image']);
  if (i === '') throw new UsageError('--image is empty: give an image such as ghcr.io/meshback/meshback:0.1.0');
  return i ?? `${INSTALL_DEFAULTS.imageRepository}:${VERSION}`;
};

function print(ctx: Context, objects: K8sObject[]): void {
  if (ctx.out.json) ctx.out.jsonOut(objects);
  else ctx.out.result(toYamlStream(objects).trimEnd());
}

/** meshback k8s install --render [--namespace NS] [--image IMG] [--no-namespace] [--json] */
export async function installHandler(ctx: Context, v: Values, positionals: string[]): Promise<number> {
  if (positionals.length > 1) throw new UsageError(`k8s install takes no arguments, not ${JSON.stringify(positionals[1])}: meshback k8s install --render [-n NAMESPACE] [--image IMAGE]`);
  if (!bool(v['render'])) throw new UsageError("k8s install only renders: meshback k8s install --render | kubectl apply -f - (or install the Helm chart charts/meshback)");
  const ns = str(v['namespace']);
  if (ns === '') throw new UsageError('-n is empty: give the namespace to install into (default meshback)');
  if (ns !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(ns)) throw new UsageError(`namespace ${JSON.stringify(ns)} is not a valid namespace name: lower-case letters, digits and '-', at most 63`);
  print(ctx, renderInstall({ ...(ns !== undefined ? { namespace: ns } : {}), image: image(v), version: VERSION, createNamespace: !bool(v['no-namespace']) }));
  return EXIT.OK;
}

/** meshback k8s cronjob --policy NAME [-n NS] [--image IMG] [-f FILE --pvc NAME...] [--kubeconfig FILE] [--json] */
export async function cronjobHandler(ctx: Context, v: Values, positionals: string[]): Promise<number> {
  if (positionals.length > 1) throw new UsageError(`k8s cronjob takes no arguments, not ${JSON.stringify(positionals[1])}: meshback k8s cronjob --policy NAME [-n NAMESPACE]`);
  const name = str(v['policy']);
  if (name === undefined || name === '') throw new UsageError('k8s cronjob needs the policy: meshback k8s cronjob --policy NAME [-n NAMESPACE] (or -f FILE --pvc NAME)');
  const file = str(v['file']);
  const nsOpt = str(v['namespace']);
  let pvcs = strs(v['pvc']);
  let policy;
  if (file !== undefined) {
    if (pvcs.length === 0) throw new UsageError(`with -f ${file} there is no cluster to find the PVCs in: name them with --pvc NAME (repeatable)`);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (e) {
      if (isErrno(e, 'ENOENT')) throw new NotFoundError(`-f ${file} does not exist: give the YAML file of the BackupPolicy`, { path: file });
      throw new UsageError(`-f ${file} cannot be read (${errMessage(e)}): check its permissions`);
    }
    policy = parseBackupPolicy(text, file, nsOpt, name);
  } else {
    const kc = loadKubeConfig(str(v['kubeconfig']));
    policy = await readBackupPolicy(kc, nsOpt ?? contextNamespace(kc), name);
    if (pvcs.length === 0) {
      pvcs = await matchingPvcs(kc, policy);
      if (pvcs.length === 0) throw new NotFoundError(`BackupPolicy ${name} selects no PVC in namespace ${policy.metadata.namespace}: check its selector, or name PVCs with --pvc NAME`);
    }
  }
  const objects = pvcs.flatMap((pvc) => renderCronJob(policy, pvc, { image: image(v) }));
  for (const c of cronJobCaveats(policy)) ctx.out.warn(c);
  print(ctx, objects);
  return EXIT.OK;
}
