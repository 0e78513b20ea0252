/**
 * Velero (the release pinned in versions.ts: 1.16, whose node agent runs a file-system backup's
 * kopia data path in its own process) on the test control plane (k8s.ts), with its
 * BackupStorageLocation on the test MinIO (s3.ts). Everything runs as local processes on loopback:
 *
 * - CRDs: `velero install --crds-only --dry-run -o yaml`, applied with the pinned kubectl;
 * - namespace `velero`: the Secret with MinIO's keys, the BackupStorageLocation `default` (provider
 *   aws from velero-plugin-for-aws, s3Url = MinIO, path-style), the Deployment `velero` with no
 *   replica (a restore takes the restore helper's image from it) and the DaemonSet `node-agent`,
 *   whose pods kwok shows Running on every node: Velero's server looks for one on a workload's node
 *   before it asks for a PodVolumeBackup or PodVolumeRestore there;
 * - `velero server` with --plugin-dir holding the AWS plugin binary;
 * - per kwok node one `velero node-agent server` (NODE_NAME=node) in a mount namespace of its own
 *   (`unshare --mount --propagation slave`), where DIR/kubelet/NODE/pods is bind-mounted at
 *   /host_pods, the path the node agent reads pod volumes from. DIR/kubelet is a shared bind mount
 *   on the host, so a pod volume mounted there after the agent started is seen by it.
 * - the kubelet's part for emptyDir volumes (kwok runs no kubelet): mountPodVolume() bind-mounts a
 *   real directory at DIR/kubelet/NODE/pods/POD_UID/volumes/kubernetes.io~empty-dir/VOLUME once
 *   the pod is bound to NODE; initRunning() shows a restored pod's `restore-wait` init container
 *   running (kwok shows init containers terminated), which the node agent waits for before it
 *   restores into the pod's volume.
 *
 * Needs root (mounts, unshare) and an empty directory /host_pods (made if missing).
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';
import { binary, type Log } from './build.ts';
import { TestenvError } from './errors.ts';
import type { K8sEnv } from './k8s.ts';
import { freePort, launch, waitFor, type Proc } from './proc.ts';
import type { S3Env } from './s3.ts';
import { COMPONENTS } from './versions.ts';

export const VELERO_NAMESPACE = 'velero';
export const VELERO_VERSION = COMPONENTS.velero.version;
export const VELERO_PLUGIN_VERSION = COMPONENTS['velero-plugin-for-aws'].version;
const HOST_PODS = '/host_pods';
const EMPTY_DIR = 'kubernetes.io~empty-dir';
const GROUP = 'velero.io';
const STRATEGIC = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

export interface VeleroOptions {
  k8s: K8sEnv;
  s3: Pick<S3Env, 'endpoint' | 'accessKeyId' | 'secretAccessKey' | 'region'>;
  bucket: string;
  /** key prefix of the BackupStorageLocation in the bucket (no slashes at the ends) */
  prefix: string;
  /** a fresh directory: logs, the plugin directory, the kubelet roots (removed by stop()) */
  dir: string;
  log?: Log;
}

export interface PodVolumeMount {
  node: string;
  podUid: string;
  /** DIR/kubelet/NODE/pods/POD_UID/volumes/kubernetes.io~empty-dir/VOLUME */
  target: string;
  unmount(): Promise<void>;
}

export interface VeleroEnv {
  /** the velero binary */
  bin: string;
  namespace: string;
  /** environment of the velero CLI: KUBECONFIG, VELERO_NAMESPACE */
  env: Record<string, string>;
  /** the server and the node agents (their guards; pids() gives the velero processes) */
  procs: Proc[];
  /** the pids of the velero server and node-agent processes themselves */
  pids(): number[];
  /** runs the velero CLI to completion; its stdout */
  cli(args: string[], timeoutMs?: number): Promise<string>;
  kubeletRoot(node: string): string;
  /** the guard of the node agent of a node (its child is the agent) */
  agent(node: string): Proc | undefined;
  /** starts again the node agents that died (a node back after an outage); the nodes restarted */
  ensureAgents(): Promise<string[]>;
  /** the guard of the velero server */
  server: Proc;
  /** waits (at most timeoutMs) for the pod to be bound to a node, then bind-mounts `dir` as its emptyDir volume */
  mountPodVolume(namespace: string, pod: string, volume: string, dir: string, timeoutMs?: number): Promise<PodVolumeMount>;
  /** shows the pod's restore-wait init container running (what a kubelet would report) */
  initRunning(namespace: string, pod: string): Promise<boolean>;
  /** the phase of a Backup or Restore (undefined while it has none) */
  phase(kind: 'backups' | 'restores', name: string): Promise<string | undefined>;
  /** `velero backup create NAME --include-namespaces NS --default-volumes-to-fs-backup --wait`; the Backup's phase */
  backup(name: string, namespace: string, timeoutMs?: number): Promise<string>;
  /**
   * `velero restore create NAME --from-backup BACKUP --namespace-mappings FROM:TO`, playing the
   * kubelet for the restored pod: `target` is mounted as its emptyDir `volume` once it is bound,
   * its restore-wait init container shown running; waits for the Restore to end. The phase, and
   * the mount (the caller unmounts it).
   */
  restore(name: string, backup: string, from: string, to: string, pod: string, volume: string, target: string, timeoutMs?: number): Promise<{ phase: string; mount?: PodVolumeMount }>;
  stop(): Promise<void>;
}

/** Runs a command to completion; rejects with its exit status and the tail of its output. */
export function runCmd(cmd: string, args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    p.on('error', (e) => {
      clearTimeout(t);
      reject(new TestenvError(`cannot run ${cmd}: ${e.message}`, `install ${path.basename(cmd)}`));
    });
    p.on('close', (c, sig) => {
      clearTimeout(t);
      if (c === 0) resolve(out);
      else reject(new TestenvError(`${path.basename(cmd)} ${args.slice(0, 3).join(' ')} ${sig !== null ? `was killed (${sig})` : `exited ${c}`}: ${(err.trim() || out.trim()).split('\n').slice(-3).join(' | ').slice(0, 500)}`, 'see the message'));
    });
  });
}

/** The direct children of `pid` (from /proc). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

/** Is `dir` a mount point (or has one below it)? (/proc/self/mounts) */
function isMounted(dir: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((l) => {
      const m = (l.split(' ')[1] ?? '').replace(/\\040/g, ' ');
      return m === dir || m.startsWith(dir + '/');
    });
}

function credentialsFile(s3: VeleroOptions['s3']): string {
  return `[default]\naws_access_key_id=${s3.accessKeyId}\naws_secret_access_key=${s3.secretAccessKey}\n`;
}

export async function startVelero(o: VeleroOptions): Promise<VeleroEnv> {
  const log: Log = o.log ?? ((l) => process.stderr.write(l + '\n'));
  if (process.getuid?.() !== 0) throw new TestenvError('Velero in the test environment needs root (bind mounts and mount namespaces for its node agents)', 'run as root');
  const bin = await binary('velero', log);
  const plugin = await binary('velero-plugin-for-aws', log);
  const kubectl = await binary('kubectl', log);
  const dir = o.dir;
  const ns = VELERO_NAMESPACE;
  const nodes = o.k8s.nodes;
  await fsp.mkdir(path.join(dir, 'logs'), { recursive: true });
  await fsp.mkdir(path.join(dir, 'plugins'), { recursive: true });
  await fsp.copyFile(plugin, path.join(dir, 'plugins', 'velero-plugin-for-aws'));
  await fsp.chmod(path.join(dir, 'plugins', 'velero-plugin-for-aws'), 0o755);
  const kubelet = path.join(dir, 'kubelet');
  for (const n of nodes) await fsp.mkdir(path.join(kubelet, n, 'pods'), { recursive: true });
  await fsp.mkdir(HOST_PODS, { recursive: true });
  const env = { KUBECONFIG: o.k8s.kubeconfig, VELERO_NAMESPACE: ns };
  const procs: Proc[] = [];
  const mounted: string[] = [];
  const pids = (): number[] => procs.flatMap((p) => (p.exitCode() === null ? childPids(p.pid) : []));
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map((p) => p.stop()));
    for (const m of mounted.reverse()) await runCmd('umount', ['-l', m]).catch(() => undefined);
    mounted.length = 0;
    await runCmd('umount', ['-R', kubelet]).catch(() => undefined);
    // nothing is mounted below dir any more: only then is it removed
    if (!isMounted(dir)) await fsp.rm(dir, { recursive: true, force: true });
  };
  try {
    // the kubelet roots: a shared mount, so that pod volumes mounted later reach the agents' namespaces
    await runCmd('mount', ['--bind', kubelet, kubelet]);
    await runCmd('mount', ['--make-rshared', kubelet]);

    const crds = await runCmd(bin, ['install', '--crds-only', '--dry-run', '-o', 'yaml'], env);
    await fsp.writeFile(path.join(dir, 'crds.yaml'), crds);
    await runCmd(kubectl, ['apply', '--server-side', '-f', path.join(dir, 'crds.yaml')], env);
    await runCmd(kubectl, ['wait', '--for=condition=Established', '--timeout=60s', 'crd/backups.velero.io', 'crd/restores.velero.io', 'crd/podvolumebackups.velero.io', 'crd/backupstoragelocations.velero.io'], env);

    const kc = o.k8s.kubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'cloud-credentials' }, stringData: { cloud: credentialsFile(o.s3) } } });
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: 'v1',
      namespace: ns,
      plural: 'backupstoragelocations',
      body: {
        apiVersion: 'velero.io/v1',
        kind: 'BackupStorageLocation',
        metadata: { name: 'default', namespace: ns },
        spec: {
          provider: 'aws',
          default: true,
          objectStorage: { bucket: o.bucket, prefix: o.prefix },
          config: { region: o.s3.region, s3ForcePathStyle: 'true', s3Url: o.s3.endpoint, checksumAlgorithm: '' },
          credential: { name: 'cloud-credentials', key: 'cloud' },
        },
      },
    });
    // the Deployment that `velero install` makes (no replica: the server runs here as a local
    // process); the restore's pod-volume action takes the restore helper's image from it
    const apps = kc.makeApiClient(AppsV1Api);
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: {
        metadata: { name: 'velero', labels: { component: 'velero' } },
        spec: {
          replicas: 0,
          selector: { matchLabels: { deploy: 'velero' } },
          template: { metadata: { labels: { deploy: 'velero', component: 'velero' } }, spec: { containers: [{ name: 'velero', image: `velero/velero:${VELERO_VERSION}` }] } },
        },
      },
    });
    // the node-agent DaemonSet `velero install --use-node-agent` makes: its pods on the kwok nodes
    // (kwok shows them Running) are what the server looks for on a workload's node, while the
    // agents themselves run here as local processes
    await apps.createNamespacedDaemonSet({
      namespace: ns,
      body: {
        metadata: { name: 'node-agent', labels: { component: 'velero' } },
        spec: {
          selector: { matchLabels: { name: 'node-agent' } },
          template: { metadata: { labels: { name: 'node-agent', role: 'node-agent', component: 'velero' } }, spec: { containers: [{ name: 'node-agent', image: `velero/velero:${VELERO_VERSION}` }] } },
        },
      },
    });

    const [metrics, profiler] = [await freePort(), await freePort()];
    const server = launch({
      name: 'velero-server',
      cmd: bin,
      args: [
        'server',
        `--plugin-dir=${path.join(dir, 'plugins')}`,
        `--metrics-address=127.0.0.1:${metrics}`,
        `--profiler-address=127.0.0.1:${profiler}`,
        '--uploader-type=kopia',
        '--default-backup-storage-location=default',
        '--store-validation-frequency=10s',
        '--default-repo-maintain-frequency=168h',
        '--log-level=info',
      ],
      env: { ...env, HOME: dir },
      log: path.join(dir, 'logs', 'velero-server.log'),
      mode: 'owned',
    });
    procs.push(server);
    // a kubelet keeps a directory per pod of its node: the node agent checks that at start
    await waitFor('the node-agent pods to run', 60_000, procs, async () => {
      const list = await core.listNamespacedPod({ namespace: ns, labelSelector: 'role=node-agent' });
      return list.items.length === nodes.length && list.items.every((p) => p.status?.phase === 'Running') ? true : undefined;
    });
    const podDirs = async (n: string): Promise<void> => {
      const list = await core.listPodForAllNamespaces({ fieldSelector: `spec.nodeName=${n}` });
      for (const p of list.items) if (p.metadata?.uid !== undefined) await fsp.mkdir(path.join(kubelet, n, 'pods', p.metadata.uid, 'volumes'), { recursive: true });
    };
    const agents = new Map<string, Proc>();
    let starts = 0;
    const startAgent = async (n: string): Promise<Proc> => {
      await podDirs(n);
      const port = await freePort();
      const agent = launch({
        name: `velero-node-agent-${n}`,
        cmd: 'unshare',
        args: ['--mount', '--propagation', 'slave', '--', 'sh', '-c', 'mount --rbind "$0" /host_pods && exec "$@"', path.join(kubelet, n, 'pods'), bin, 'node-agent', 'server', `--metrics-address=127.0.0.1:${port}`, '--log-level=info'],
        env: { ...env, NODE_NAME: n, HOME: dir },
        log: path.join(dir, 'logs', `velero-node-agent-${n}-${++starts}.log`),
        mode: 'owned',
      });
      agents.set(n, agent);
      procs.push(agent);
      return agent;
    };
    // an agent is up when its controllers have started
    const agentUp = (a: Proc): Promise<boolean> =>
      waitFor(`${a.name} to start`, 60_000, [a], async () => (existsSync(a.log) && /Starting workers|Starting Controller/i.test(readFileSync(a.log, 'utf8')) ? true : undefined));
    for (const n of nodes) await startAgent(n);
    await waitFor('the BackupStorageLocation on MinIO to be Available', 90_000, procs, async () => {
      const bsl = (await custom.getNamespacedCustomObject({ group: GROUP, version: 'v1', namespace: ns, plural: 'backupstoragelocations', name: 'default' })) as { status?: { phase?: string; message?: string } };
      if (bsl.status?.phase === 'Unavailable') throw new Error(bsl.status.message ?? 'Unavailable');
      return bsl.status?.phase === 'Available' ? true : undefined;
    });
    for (const a of agents.values()) await agentUp(a);

    const podOf = async (namespace: string, name: string): Promise<V1Pod> => core.readNamespacedPod({ namespace, name });
    const phase = async (kind: 'backups' | 'restores', name: string): Promise<string | undefined> => {
      const x = (await custom.getNamespacedCustomObject({ group: GROUP, version: 'v1', namespace: ns, plural: kind, name }).catch(() => undefined)) as { status?: { phase?: string } } | undefined;
      return x?.status?.phase;
    };
    const mountPodVolume = async (namespace: string, pod: string, volume: string, src: string, timeoutMs = 60_000): Promise<PodVolumeMount> => {
      const p = await waitFor(`pod ${namespace}/${pod} to be bound to a node`, timeoutMs, procs, async () => {
        const x = await podOf(namespace, pod);
        return x.spec?.nodeName !== undefined && x.spec.nodeName !== '' && x.metadata?.uid !== undefined ? x : undefined;
      });
      const node = p.spec!.nodeName!;
      if (!nodes.includes(node)) throw new TestenvError(`pod ${namespace}/${pod} is bound to ${node}, which runs no Velero node agent`, 'bind it to a kwok node');
      const podUid = p.metadata!.uid!;
      const target = path.join(kubelet, node, 'pods', podUid, 'volumes', EMPTY_DIR, volume);
      await fsp.mkdir(target, { recursive: true });
      await runCmd('mount', ['--bind', src, target]);
      mounted.push(target);
      return {
        node,
        podUid,
        target,
        async unmount() {
          await runCmd('umount', ['-l', target]).catch(() => undefined);
          const i = mounted.indexOf(target);
          if (i >= 0) mounted.splice(i, 1);
          // never through a mount that is still there: that would delete the volume's data
          if (!isMounted(target)) await fsp.rm(path.join(kubelet, node, 'pods', podUid), { recursive: true, force: true }).catch(() => undefined);
        },
      };
    };
    const initRunning = async (namespace: string, pod: string): Promise<boolean> => {
      const p = await podOf(namespace, pod).catch(() => undefined);
      const inits = p?.spec?.initContainers ?? [];
      if (!inits.some((c) => c.name === 'restore-wait')) return false;
      if (p?.status?.phase === undefined || p.status.phase === 'Pending') return false; // kwok has not written its status yet
      const now = new Date();
      const initContainerStatuses = inits.map((c) =>
        c.name === 'restore-wait'
          ? { name: c.name, image: c.image ?? '', imageID: '', ready: false, restartCount: 0, state: { running: { startedAt: now } } }
          : { name: c.name, image: c.image ?? '', imageID: '', ready: true, restartCount: 0, state: { terminated: { exitCode: 0, reason: 'Completed', startedAt: now, finishedAt: now } } },
      );
      await core.patchNamespacedPodStatus({ namespace, name: pod, body: { status: { initContainerStatuses } } }, STRATEGIC);
      return true;
    };
    const cli = (args: string[], timeoutMs?: number): Promise<string> => runCmd(bin, args, env, timeoutMs);
    const TERMINAL = ['Completed', 'PartiallyFailed', 'Failed', 'FailedValidation'];
    return {
      bin,
      namespace: ns,
      env,
      procs,
      pids,
      cli,
      kubeletRoot: (n) => path.join(kubelet, n),
      agent: (n) => agents.get(n),
      async ensureAgents() {
        const restarted: string[] = [];
        for (const [n, a] of agents) {
          if (a.exitCode() === null) continue;
          procs.splice(procs.indexOf(a), 1);
          await agentUp(await startAgent(n));
          restarted.push(n);
        }
        return restarted;
      },
      server,
      mountPodVolume,
      initRunning,
      phase,
      async backup(name, namespace, timeoutMs = 600_000) {
        await cli(['backup', 'create', name, '--include-namespaces', namespace, '--default-volumes-to-fs-backup', '--wait'], timeoutMs);
        return (await phase('backups', name)) ?? 'unknown';
      },
      async restore(name, backup, from, to, pod, volume, target, timeoutMs = 600_000) {
        await cli(['restore', 'create', name, '--from-backup', backup, '--namespace-mappings', `${from}:${to}`]);
        let mount: PodVolumeMount | undefined;
        let shown = false;
        try {
          const end = await waitFor(`restore ${name} to end`, timeoutMs, procs, async () => {
            const ph = await phase('restores', name);
            if (ph !== undefined && TERMINAL.includes(ph)) return ph;
            if (mount === undefined) {
              const p = await podOf(to, pod).catch(() => undefined);
              if (p?.spec?.nodeName !== undefined && p.spec.nodeName !== '') mount = await mountPodVolume(to, pod, volume, target);
            }
            if (mount !== undefined && !shown) shown = await initRunning(to, pod);
            return undefined;
          });
          return { phase: end, ...(mount !== undefined ? { mount } : {}) };
        } catch (e) {
          await mount?.unmount();
          throw e;
        }
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
