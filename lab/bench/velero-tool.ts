/**
 * bench/velero-tool: Velero itself as a tool of the fault benchmark (the pinned 1.16 release with
 * its kopia uploader; lab/testenv/velero.ts), driven the way an SRE drives it:
 *
 *   backup   `velero backup create NAME --include-namespaces NS --default-volumes-to-fs-backup --wait`
 *            of a namespace whose one pod, on kwok node 0, has the benchmark's volume (a real
 *            directory) bind-mounted as its emptyDir where the kubelet would put it; the node
 *            agent of node 0 reads it through /host_pods. Ok only when the Backup ends Completed.
 *   restore  `velero restore create --from-backup LAST --namespace-mappings NS:NS-rN`: a fresh
 *            namespace, a fresh pod and a fresh volume (the target directory, bind-mounted as the
 *            restored pod's emptyDir once the scheduler has bound it); ok only when the Restore
 *            ends Completed. Velero's done marker (.velero/ in the volume) is removed afterwards.
 *
 * The lab (MinIO, the test control plane, the Velero server and one node agent per kwok node) is
 * started once, on the first init of a run, and stopped by stopVeleroLab() (the runner's end).
 * Each repeat (a tool context) gets a namespace of its own, hence a kopia repository of its own
 * under velero/kopia/NS in the bucket. Measured per operation: wall time of the operation; CPU of
 * the CLI plus the CPU the server, the node agents and the server's plugin processes spent during
 * it (/proc); peak RSS as the sum of each of those processes' peaks during it (VmHWM, reset before
 * via /proc/PID/clear_refs) and the CLI's.
 *
 * Node outage: the node agent of node 0 dies with the node (the control plane, MinIO, the server
 * and the other node's agent are spared: they run elsewhere); before a restore, dead agents are
 * started again (the node is back, or replaced).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { CommandError, type Measurement } from '../../src/host/process.ts';
import { startK8s, startS3, type K8sEnv, type S3Env } from '../testenv/index.ts';
import { startVelero, VELERO_PLUGIN_VERSION, VELERO_VERSION, type PodVolumeMount, type VeleroEnv } from '../testenv/velero.ts';
import { pickRotRegions, type RepoRot } from './fault/inject.ts';
import { spareFromOutage } from './fault/procs.ts';
import { measure } from './measure.ts';
import { prefixBytes } from './tools.ts';
import type { Tool, ToolContext } from './tools.ts';

const PREFIX = 'velero';
const POD = 'app-0';
const VOLUME = 'data';

interface Lab {
  dir: string;
  s3: S3Env;
  k8s: K8sEnv;
  velero: VeleroEnv;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  unspare: () => void;
}

let lab: Promise<Lab> | undefined;
/** the lab's directory while one runs (for the synchronous cleanup of an interrupted run) */
let labDir: string | undefined;

/**
 * For an interrupted run (process exit): detach every mount of the lab (the kubelet roots and the
 * pod volumes in them); its processes die with this one (lab/testenv's guard).
 */
export function unmountVeleroLabSync(): void {
  if (labDir === undefined) return;
  try {
    execFileSync('umount', ['-R', '-l', path.join(labDir, 'velero', 'kubelet')], { stdio: 'ignore' });
  } catch {
    // nothing mounted
  }
}

async function startLab(): Promise<Lab> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-bench-velero-'));
  labDir = dir;
  const quiet = (): void => {};
  const s3 = await startS3({ log: quiet });
  let k8s: K8sEnv | undefined;
  try {
    k8s = await startK8s({ log: quiet });
    const velero = await startVelero({ k8s, s3, bucket: s3.bucket, prefix: PREFIX, dir: path.join(dir, 'velero'), log: quiet });
    const kc = k8s.kubeConfig();
    // what runs off the workload's node survives its outage: the control plane, MinIO, the server, the other agents
    const off = [...k8s.procs, ...s3.procs, velero.server, ...k8s.nodes.slice(1).map((n) => velero.agent(n)!)];
    return { dir, s3, k8s, velero, core: kc.makeApiClient(CoreV1Api), custom: kc.makeApiClient(CustomObjectsApi), unspare: spareFromOutage(off.map((p) => p.pid)) };
  } catch (err) {
    await k8s?.stop().catch(() => {});
    await s3.stop().catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true }).catch(() => {});
    throw err;
  }
}

const getLab = (): Promise<Lab> => (lab ??= startLab().catch((err: unknown) => {
  lab = undefined;
  throw err;
}));

/** Stops the Velero lab when one was started (the runner calls it at the end of a run). */
export async function stopVeleroLab(): Promise<void> {
  if (lab === undefined) return;
  const l = await lab.catch(() => undefined);
  lab = undefined;
  if (l === undefined) return;
  for (const s of states.values()) await s.mount?.unmount().catch(() => {});
  states.clear();
  l.unspare();
  await l.velero.stop().catch(() => {});
  await l.k8s.stop().catch(() => {});
  await l.s3.stop().catch(() => {});
  await fsp.rm(l.dir, { recursive: true, force: true }).catch(() => {});
  labDir = undefined;
}

interface State {
  ns: string;
  mount?: PodVolumeMount;
  src?: string;
  restores: number;
  /** the Backups this context made (their metadata is stored bytes too) */
  backups: string[];
}

const states = new Map<string, State>();
const stateOf = (ctx: ToolContext): State => {
  const s = states.get(ctx.dir);
  if (s === undefined) throw new Error('velero: the context was not initialised');
  return s;
};

// --- measurement of the server, the node agents and their plugin processes through /proc --------

const TICK = 100; // USER_HZ on Linux

function cpuTicks(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m !== null ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

interface Probe {
  finish(cli: Pick<Measurement, 'cpuSeconds' | 'userSeconds' | 'systemSeconds' | 'maxRssBytes'>, exitCode: number): Measurement;
}

/** Starts watching the Velero processes: their CPU from now, their peak RSS from now. */
function probe(v: VeleroEnv): Probe {
  const t0 = performance.now();
  const before = new Map<number, number>();
  for (const pid of v.pids()) {
    before.set(pid, cpuTicks(pid));
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5'); // resets VmHWM
    } catch {
      // gone, or an old kernel: its peak since it started counts
    }
  }
  return {
    finish(cli, exitCode) {
      let ticks = 0;
      let rss = 0;
      for (const pid of v.pids()) {
        ticks += cpuTicks(pid) - (before.get(pid) ?? 0);
        rss += peakRss(pid);
      }
      const daemons = Math.max(0, ticks) / TICK;
      return {
        wallSeconds: (performance.now() - t0) / 1000,
        cpuSeconds: cli.cpuSeconds + daemons,
        userSeconds: cli.userSeconds,
        systemSeconds: cli.systemSeconds,
        maxRssBytes: cli.maxRssBytes + rss,
        exitCode,
      };
    },
  };
}

const NO_CLI = { cpuSeconds: 0, userSeconds: 0, systemSeconds: 0, maxRssBytes: 0 };

/** A failed operation, as the runner records a failed command: its argv, status, message and measurement. */
function failure(argv: string[], message: string, m: Measurement): CommandError {
  return new CommandError(argv, m.exitCode, null, { stdout: '', stderr: message }, m);
}

/** Why the PodVolumeBackups or PodVolumeRestores of a Backup or Restore failed: their messages. */
async function volumeMessages(l: Lab, plural: 'podvolumebackups' | 'podvolumerestores', label: string, name: string): Promise<string> {
  const list = (await l.custom.listNamespacedCustomObject({ group: 'velero.io', version: 'v1', namespace: l.velero.namespace, plural, labelSelector: `${label}=${name}` }).catch(() => ({ items: [] }))) as {
    items: { status?: { phase?: string; message?: string } }[];
  };
  return list.items
    .filter((i) => i.status?.phase !== 'Completed')
    .map((i) => `${i.status?.phase ?? 'New'}: ${i.status?.message ?? ''}`)
    .join('; ');
}

async function bucketBytes(s3: S3Env, prefixes: string[]): Promise<number> {
  const c = s3.client();
  try {
    let total = 0;
    for (const prefix of prefixes) total += await prefixBytes(c, s3.bucket, prefix);
    return total;
  } finally {
    c.destroy();
  }
}

export const velero: Tool = {
  name: 'velero',
  label: 'Velero (fs-backup, kopia)',
  packages: [],
  get binaries() {
    return ['velero', 'velero-plugin-for-aws', 'kube-apiserver', 'minio'];
  },
  encryption: true,
  // kopia's content-defined chunks, one repository per namespace: every backup after the first is incremental
  incremental: true,
  setup:
    `Velero ${VELERO_VERSION} server + one node agent per kwok node (local processes; AWS plugin ${VELERO_PLUGIN_VERSION}, BackupStorageLocation on MinIO): ` +
    'velero backup create --default-volumes-to-fs-backup --wait of the pod\'s namespace (kopia uploader in the node agent) | velero restore create --from-backup LAST into a fresh namespace and emptyDir volume; ' +
    'CPU and peak RSS: the CLI + server + node agents + plugin processes (sum of their peaks); bytes: the namespace\'s kopia repository and the backups\' metadata in the bucket; no check',
  async version() {
    return `velero ${VELERO_VERSION} (kopia uploader), velero-plugin-for-aws ${VELERO_PLUGIN_VERSION}`;
  },
  async available() {
    // the lab builds its parts on first use (lab/testenv); as root only (bind mounts, mount namespaces)
    return process.getuid?.() === 0;
  },
  unavailableReason: () => 'the Velero lab needs root (bind mounts of pod volumes, a mount namespace per node agent): run the benchmark as root',
  async init(ctx) {
    const t0 = performance.now();
    const l = await getLab();
    // the previous repeat's namespaces and mounts are done with
    for (const [k, s] of states) {
      await s.mount?.unmount().catch(() => {});
      states.delete(k);
    }
    const ns = `vb-${randomBytes(4).toString('hex')}`;
    await l.core.createNamespace({ body: { metadata: { name: ns } } });
    await l.core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: POD, labels: { app: 'bench' } },
        spec: { nodeName: l.k8s.nodes[0]!, containers: [{ name: 'app', image: 'app:1', volumeMounts: [{ name: VOLUME, mountPath: '/data' }] }], volumes: [{ name: VOLUME, emptyDir: {} }] },
      },
    });
    states.set(ctx.dir, { ns, restores: 0, backups: [] });
    return { wallSeconds: (performance.now() - t0) / 1000, cpuSeconds: 0, userSeconds: 0, systemSeconds: 0, maxRssBytes: 0, exitCode: 0 };
  },
  async backup(ctx, src) {
    const l = await getLab();
    const st = stateOf(ctx);
    // an outage in an earlier cell (any tool's: they share the node) took node 0's agent with it
    await l.velero.ensureAgents();
    if (st.src !== src) {
      await st.mount?.unmount();
      delete st.mount;
      st.mount = await l.velero.mountPodVolume(st.ns, POD, VOLUME, src);
      st.src = src;
    }
    ctx.attempts = (ctx.attempts ?? ctx.backups) + 1;
    const name = `${st.ns}-b${ctx.attempts}`;
    const argv = [l.velero.bin, 'backup', 'create', name, '--include-namespaces', st.ns, '--default-volumes-to-fs-backup', '--wait'];
    const p = probe(l.velero);
    let cli: Measurement;
    try {
      cli = (await measure(argv, { env: { ...ctx.env, ...l.velero.env } })).measurement;
    } catch (err) {
      if (err instanceof CommandError) {
        const m = p.finish(err.measurement ?? NO_CLI, err.exitCode ?? 1);
        throw new CommandError(argv, err.exitCode, err.signal, { stdout: err.stdoutTail, stderr: err.stderrTail }, m);
      }
      throw err;
    }
    const phase = (await l.velero.phase('backups', name)) ?? 'unknown';
    if (phase !== 'Completed') {
      const why = await volumeMessages(l, 'podvolumebackups', 'velero.io/backup-name', name);
      throw failure(argv, `backup ${name} ended ${phase}${why !== '' ? `: ${why}` : ''}`, p.finish(cli, 1));
    }
    const m = p.finish(cli, 0);
    st.backups.push(name);
    ctx.backups++;
    ctx.lastSource = src;
    ctx.lastBackup = name;
    return m;
  },
  async restore(ctx, target) {
    const l = await getLab();
    const st = stateOf(ctx);
    if (ctx.lastBackup === undefined) throw new Error('no backup was taken in this repository');
    // a node that died (node-outage) is back before the restore: its agent runs again
    await l.velero.ensureAgents();
    const to = `${st.ns}-r${++st.restores}`;
    const argv = [l.velero.bin, 'restore', 'create', to, '--from-backup', ctx.lastBackup, '--namespace-mappings', `${st.ns}:${to}`];
    const p = probe(l.velero);
    readChildrenCpu();
    const r = await l.velero.restore(to, ctx.lastBackup, st.ns, to, POD, VOLUME, target, 1_800_000);
    // the CLI's CPU: this process's children reaped meanwhile (the velero CLI, mount)
    const children = readChildrenCpu();
    try {
      await fsp.rm(path.join(target, '.velero'), { recursive: true, force: true });
    } finally {
      await r.mount?.unmount();
    }
    if (r.phase !== 'Completed') {
      const why = await volumeMessages(l, 'podvolumerestores', 'velero.io/restore-name', to);
      throw failure(argv, `restore ${to} ended ${r.phase}${why !== '' ? `: ${why}` : ''}`, p.finish({ ...NO_CLI, cpuSeconds: children }, 1));
    }
    return p.finish({ ...NO_CLI, cpuSeconds: children }, 0);
  },
  async bytesStored(ctx) {
    const l = await getLab();
    const st = stateOf(ctx);
    return bucketBytes(l.s3, [`${PREFIX}/kopia/${st.ns}/`, ...st.backups.map((b) => `${PREFIX}/backups/${b}/`)]);
  },
  /** bit rot in the bucket: in the kopia repository's pack blobs (p*), rewritten in place through S3 */
  async rot(ctx, rng) {
    const l = await getLab();
    const st = stateOf(ctx);
    const prefix = `${PREFIX}/kopia/${st.ns}/`;
    const c = l.s3.client();
    try {
      const files: { rel: string; size: number }[] = [];
      let token: string | undefined;
      for (let page = 0; page < 10_000; page++) {
        const r = await c.send(new ListObjectsV2Command({ Bucket: l.s3.bucket, Prefix: prefix, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
        for (const o of r.Contents ?? []) {
          const rel = (o.Key ?? '').slice(prefix.length);
          if (rel.startsWith('p') && (o.Size ?? 0) > 0) files.push({ rel, size: o.Size ?? 0 });
        }
        if (r.IsTruncated !== true || r.NextContinuationToken === undefined) break;
        token = r.NextContinuationToken;
      }
      files.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
      const regions = pickRotRegions(files, rng);
      for (const rel of [...new Set(regions.map((r) => r.file))]) {
        const got = await c.send(new GetObjectCommand({ Bucket: l.s3.bucket, Key: prefix + rel }));
        const buf = Buffer.from(await got.Body!.transformToByteArray());
        for (const r of regions.filter((x) => x.file === rel)) {
          const noise = rng.bytes(r.length);
          for (let i = 0; i < r.length; i++) buf[r.offset + i] = buf[r.offset + i]! ^ (noise[i]! | 1);
        }
        await c.send(new PutObjectCommand({ Bucket: l.s3.bucket, Key: prefix + rel, Body: buf }));
      }
      const out: RepoRot = { dataFiles: files.length, dataBytes: files.reduce((s, f) => s + f.size, 0), regions };
      return out;
    } finally {
      c.destroy();
    }
  },
  notApplicable: {
    'disk-full': "Velero keeps its repository in the object store (the BackupStorageLocation), not on a disk the benchmark can fill; its restore writes through the node agent into the pod's volume",
    's3-outage': "the Velero lab's BackupStorageLocation is its own MinIO on the test control plane, not the scenario's MinIO behind toxiproxy (not wired yet)",
    'app-container-crash': 'runs on the testbed (lab/testbed) with meshback in the cluster; the Velero lab is a separate control plane',
    'app-node-outage': 'runs on the testbed (lab/testbed) with meshback in the cluster; the Velero lab is a separate control plane',
  },
};

let childCpu0 = 0;
/** CPU seconds of this process's reaped children since the last call (/proc/self/stat cutime + cstime). */
function readChildrenCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const total = (Number(f[13]) + Number(f[14])) / TICK;
  const d = total - childCpu0;
  childCpu0 = total;
  return Math.max(0, d);
}
