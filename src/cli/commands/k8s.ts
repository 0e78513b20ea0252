/**
 * k8s: meshback on Kubernetes. `meshback k8s discover` lists every PVC with the pods that mount it,
 * their workload and mesh, the storage class and snapshot support, stateful or stateless, and the
 * policy that covers it (src/k8s/discover.ts; docs/design.md, "Kubernetes: discover"). `controller`
 * and `agent` run meshback in a cluster (k8s-run.ts), `hold` is the helper pods' process,
 * `restore` restores a snapshot into a PVC through a VolumeRestore (k8s-restore.ts), `install
 * --render` and `cronjob` print manifests (k8s-install.ts).
 */
import { UsageError } from '../../errors/index.ts';
import { contextNamespace, discover, loadKubeConfig } from '../../k8s/discover.ts';
import type { DiscoveredPvc } from '../../k8s/schema.ts';
import type { Command } from '../command.ts';
import { bool, str } from '../command.ts';
import { EXIT } from '../exit.ts';
import { formatDuration } from '../../util/units.ts';
import { k8sHold } from './k8s-hold.ts';
import { agentCommand, controllerCommand } from './k8s-run.ts';

const BUILT = ['discover', 'controller', 'agent', 'restore', 'install', 'cronjob', 'hold'];
import { K8S_INSTALL_OPTIONS, cronjobHandler, installHandler } from './k8s-install.ts';
import { K8S_RESTORE_OPTIONS, k8sRestore } from './k8s-restore.ts';

export const k8sCommand: Command = {
  name: 'k8s',
  summary: 'Kubernetes: discover lists every PVC with its pods, workload, mesh, snapshot support, state and policy',
  usage: [
    'meshback k8s discover [-n NAMESPACE | -A] [-l SELECTOR] [--kubeconfig FILE] [--json]',
    'meshback k8s controller [--namespace NS] [--identity ID] [--helper-image IMAGE] [--snapshot-timeout D] [--mount-timeout D] [--agent-timeout D] [--heartbeat-timeout D]',
    'meshback k8s agent --node NAME [--kubelet-root DIR] [--concurrency N] [--max-attempts N] [--heartbeat D]',
    'meshback k8s restore SNAPSHOT --to-pvc NAME (--policy NAME | --secret NAME) [-n NS] [--create --size SIZE [--storage-class C]] [--scale-down] [--with-workloads] [--include PATH] [--timeout D]',
    'meshback k8s install --render [-n NAMESPACE] [--image IMAGE] [--no-namespace] [--json]',
    'meshback k8s cronjob --policy NAME [-n NAMESPACE] [--image IMAGE] [-f FILE --pvc NAME...] [--json]',
  ].join('\n       '),
  options: {
    namespace: { type: 'string', short: 'n', argument: 'NAMESPACE', description: "the namespace to list (default: the kubeconfig context's, else default)" },
    'all-namespaces': { type: 'boolean', short: 'A', description: 'list the PVCs of every namespace' },
    selector: { type: 'string', short: 'l', argument: 'SELECTOR', description: 'only the PVCs this label selector matches, or that a pod it matches mounts (e.g. app=orders)' },
    kubeconfig: { type: 'string', argument: 'FILE', description: 'the kubeconfig (default: KUBECONFIG, else ~/.kube/config, else the service account in a pod)' },
    identity: { type: 'string', argument: 'ID', description: 'controller: its name in the leader-election Lease (default: host name, pid and a random suffix)' },
    'helper-image': { type: 'string', argument: 'IMAGE', description: 'controller: the image of the helper pods that mount a PVC (default: MESHBACK_IMAGE, else this version of meshback)' },
    poll: { type: 'string', argument: 'DURATION', description: 'controller, agent: how often to look at the cluster (default 1s, 2s)' },
    'lease-duration': { type: 'string', argument: 'DURATION', description: 'controller: how long a leader holds the Lease without renewing it (default 15s)' },
    'snapshot-timeout': { type: 'string', argument: 'DURATION', description: "controller: how long a VolumeSnapshot may take to be ready, unless the policy's spec.snapshot.readyTimeout says (default 10m)" },
    'mount-timeout': { type: 'string', argument: 'DURATION', description: 'controller: how long a helper pod may take to mount its PVC (default 5m)' },
    'agent-timeout': { type: 'string', argument: 'DURATION', description: "controller: how long Queued work may wait for its node's agent (default 5m)" },
    'heartbeat-timeout': { type: 'string', argument: 'DURATION', description: "controller: how old an agent's heartbeat may get before its work fails with AgentLost (default 90s)" },
    node: { type: 'string', argument: 'NAME', description: 'agent: the node it runs on (default: NODE_NAME)' },
    'kubelet-root': { type: 'string', argument: 'DIR', description: "agent: the kubelet's directory, where pods' volumes are mounted (default /var/lib/kubelet)" },
    concurrency: { type: 'string', argument: 'N', description: 'agent: backups and restores at once on this node (default 1)' },
    'max-attempts': { type: 'string', argument: 'N', description: 'agent: runs of one backup or restore across agent restarts before it fails with AgentRestarted (default 2)' },
    heartbeat: { type: 'string', argument: 'DURATION', description: 'agent: how often running work reports progress and that the agent lives (default 10s)' },
    grace: { type: 'string', argument: 'DURATION', description: 'agent: on SIGTERM, how long running work gets before it is left to the next agent (default 20s)' },
    'work-dir': { type: 'string', argument: 'DIR', description: 'agent: where what a backup exports beside the volume is written first (default: the temporary directory)' },
    ...K8S_INSTALL_OPTIONS,
    ...K8S_RESTORE_OPTIONS,
  },
  async run(ctx, v, positionals) {
    const sub = positionals[0];
    if (sub === undefined) throw new UsageError("k8s needs a subcommand: meshback k8s discover [-n NAMESPACE | -A] [-l SELECTOR] (see 'meshback k8s --help')");
    if (sub === 'install') return installHandler(ctx, v, positionals);
    if (sub === 'cronjob') return cronjobHandler(ctx, v, positionals);
    if (!BUILT.includes(sub)) throw new UsageError(`unknown k8s subcommand ${JSON.stringify(sub)}: the subcommands are ${BUILT.join(', ')}`);
    if (sub === 'hold') return k8sHold();
    if (sub === 'restore') {
      const kc = loadKubeConfig(str(v['kubeconfig']));
      return k8sRestore(ctx, v, positionals, kc, str(v['namespace']) ?? contextNamespace(kc));
    }
    if (sub === 'controller' || sub === 'agent') {
      if (positionals.length > 1) throw new UsageError(`k8s ${sub} takes no arguments, not ${JSON.stringify(positionals[1])}`);
      const kc = loadKubeConfig(str(v['kubeconfig']));
      return sub === 'controller' ? controllerCommand(ctx, v, kc) : agentCommand(ctx, v, kc);
    }
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
    }
    return EXIT.OK;
  },
};

/** The newest backup's age against the RPO target: `4m (RPO 1h ok)`, `2h (RPO 1h EXCEEDED)`, `none`. */
function backupCell(b: DiscoveredPvc['newestBackup']): string {
  if (b === null) return 'none';
  const age = formatDuration(b.ageSeconds * 1000);
  return b.rpoSeconds === null ? age : `${age} (RPO ${formatDuration(b.rpoSeconds * 1000)} ${b.rpoExceeded === true ? 'EXCEEDED' : 'ok'})`;
}

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
      backupCell(p.newestBackup),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd());
}
