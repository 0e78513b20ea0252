/**
 * k8s: meshback on Kubernetes. `meshback k8s discover` lists every PVC with the pods that mount it,
 * their workload and mesh, the storage class and snapshot support, stateful or stateless, and the
 * policy that covers it (src/k8s/discover.ts; docs/design.md, "Kubernetes: discover"). The other
 * subcommands of issue 15 (controller, agent, restore, cronjob, install) are not built yet: a usage
 * error (exit 2) says so.
 */
import { UsageError } from '../../errors/index.ts';
import { contextNamespace, discover, loadKubeConfig } from '../../k8s/discover.ts';
import type { DiscoveredPvc } from '../../k8s/schema.ts';
import type { Command } from '../command.ts';
import { bool, str } from '../command.ts';
import { EXIT } from '../exit.ts';
import { K8S_INSTALL_OPTIONS, cronjobHandler, installHandler } from './k8s-install.ts';

const NOT_BUILT = ['controller', 'agent', 'restore'];

export const k8sCommand: Command = {
  name: 'k8s',
  summary: 'Kubernetes: discover lists every PVC with its pods, workload, mesh, snapshot support, state and policy',
  usage: 'meshback k8s discover [-n NAMESPACE | -A] [-l SELECTOR] [--kubeconfig FILE] [--json]\n       meshback k8s install --render [-n NAMESPACE] [--image IMAGE] [--no-namespace] [--json]\n       meshback k8s cronjob --policy NAME [-n NAMESPACE] [--image IMAGE] [-f FILE --pvc NAME...] [--json]',
  options: {
    namespace: { type: 'string', short: 'n', argument: 'NAMESPACE', description: "the namespace to list (default: the kubeconfig context's, else default)" },
    'all-namespaces': { type: 'boolean', short: 'A', description: 'list the PVCs of every namespace' },
    selector: { type: 'string', short: 'l', argument: 'SELECTOR', description: 'only the PVCs this label selector matches, or that a pod it matches mounts (e.g. app=orders)' },
    kubeconfig: { type: 'string', argument: 'FILE', description: 'the kubeconfig (default: KUBECONFIG, else ~/.kube/config, else the service account in a pod)' },
    ...K8S_INSTALL_OPTIONS,
  },
  async run(ctx, v, positionals) {
    const sub = positionals[0];
    if (sub === undefined) throw new UsageError("k8s needs a subcommand: meshback k8s discover [-n NAMESPACE | -A] [-l SELECTOR] (see 'meshback k8s --help')");
    if (sub === 'install') return installHandler(ctx, v, positionals);
    if (sub === 'cronjob') return cronjobHandler(ctx, v, positionals);
    if (NOT_BUILT.includes(sub)) throw new UsageError(`k8s ${sub} is not built yet (only 'meshback k8s discover' is): see docs/design.md, "Kubernetes: discover"`);
    if (sub !== 'discover') throw new UsageError(`unknown k8s subcommand ${JSON.stringify(sub)}: the one built is 'meshback k8s discover'`);
    if (positionals.length > 1) throw new UsageError(`k8s discover takes no arguments, not ${JSON.stringify(positionals[1])}: use -n NAMESPACE or -l SELECTOR`);
    const all = bool(v['all-namespaces']);
    const nsOpt = str(v['namespace']);
    if (all && nsOpt !== undefined) throw new UsageError('-n and -A contradict each other: give one of them');
    if (nsOpt === '') throw new UsageError('-n is empty: give a namespace, or -A for all of them');
    const kc = loadKubeConfig(str(v['kubeconfig']));
    const namespace = all ? undefined : (nsOpt ?? contextNamespace(kc));
    const d = await discover(kc, { namespace, selector: str(v['selector']) });
    ctx.out.jsonOut(d);
    if (!ctx.out.json) {
      const where = namespace === undefined ? 'all namespaces' : `namespace ${namespace}`;
      if (d.pvcs.length === 0) ctx.out.result(`no PVC in ${where}${d.selector !== null ? ` matching ${d.selector}` : ''}`);
      else for (const line of table(d.pvcs, namespace === undefined)) ctx.out.result(line);
      if (!d.snapshotApi) ctx.out.info('the VolumeSnapshot API (snapshot.storage.k8s.io/v1) is not installed in this cluster: backups will read volumes on their nodes');
      ctx.out.info('BACKUP (the age of the newest backup against the RPO target) is not built yet; POLICY is the label meshback.io/policy until the BackupPolicy resource');
    }
    return EXIT.OK;
  },
};

/** One line per PVC, columns padded to their widest cell. */
export function table(pvcs: DiscoveredPvc[], withNamespace: boolean): string[] {
  const head = [...(withNamespace ? ['NAMESPACE'] : []), 'PVC', 'STATUS', 'SIZE', 'CLASS', 'PROVISIONER', 'SNAPSHOT', 'WORKLOAD', 'PODS', 'MESH', 'STATE', 'POLICY', 'BACKUP'];
  const rows = pvcs.map((p) => {
    const meshes = [...new Set(p.pods.map((x) => x.mesh))];
    return [
      ...(withNamespace ? [p.namespace] : []),
      p.name,
      p.phase ?? '-',
      p.capacity ?? '-',
      p.storageClass ?? '-',
      p.provisioner ?? '-',
      p.snapshotSupport === 'yes' ? `yes (${p.snapshotClass ?? ''})` : p.snapshotSupport,
      p.workloads.map((w) => `${w.kind}/${w.name}`).join(',') || '-',
      p.pods.map((x) => x.name).join(',') || '-',
      meshes.join(',') || '-',
      p.state,
      p.policy ?? 'none',
      '-',
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}
