/**
 * k8s/agent: `meshback k8s agent`, one per node (a DaemonSet). It performs the VolumeBackups and
 * VolumeRestores the controller labelled with its node, reading and writing the volume where the
 * kubelet mounted it (KUBELET_ROOT/pods/POD_UID/volumes/PLUGIN/PV_NAME[/mount]).
 *
 *   poll the work labelled meshback.io/node=NODE (every pollMs)
 *   -> claim a Queued item: a conditional status update (resourceVersion) to Running with this
 *      agent's identity; of two agents, one wins, the other gets a 409 and leaves it
 *   -> run it (at most `concurrency` at once), a heartbeat in its status every heartbeatMs
 *   -> Completed with the snapshot id and the verification, or Failed with a reason and a
 *      one-line message that says what to do.
 *
 * A restarted agent (a new identity on the same node) finds the items its predecessor had
 * Running: it runs each again from the start (attempt + 1; the repository's deduplication keeps
 * what was already uploaded from being stored twice) up to maxAttempts, then fails it with
 * AgentRestarted. Nothing stays Running without a heartbeat: the controller fails such an item
 * (AgentLost) after its heartbeat timeout.
 *
 * A backup records the volume as `/volume` (and what was exported beside it as `/k8s`), host
 * `k8s:NAMESPACE/PVC`, tags policy=, namespace=, pvc=. It is verified by reading the new snapshot
 * back (every chunk authenticated and re-hashed) and, for a VolumeSnapshot (frozen data),
 * comparing it byte for byte with the volume. A restore writes the snapshot's `/volume` into the
 * target PVC and verifies each file by reading it back.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod } from '@kubernetes/client-node';
import { backup } from '../archiver/index.ts';
import { forget } from '../maintenance/forget.ts';
import { MeshbackError, NotFoundError, errMessage } from '../errors/index.ts';
import type { EventSink } from '../events/index.ts';
import { openRepository } from '../repository/open.ts';
import { restore } from '../restorer/index.ts';
import { localSource } from '../source/index.ts';
import { mappedSource } from '../source/mapped.ts';
import type { SnapshotRef } from '../snapshot/manifest.ts';
import { CompareTarget } from '../target/compare.ts';
import { Semaphore } from '../util/semaphore.ts';
import { NODE_LABEL, TERMINAL } from './api.ts';
import type { BackupPolicy, FailureReason, VolumeBackup, VolumeBackupStatus, VolumeRestore, VolumeRestoreStatus, VolumeSource } from './api.ts';
import { meshOf } from './discover.ts';
import { runPodHooks } from './hooks.ts';
import { captureEnvoyAdmin, exportForBackup } from './mesh.ts';
import type { ExportedFile } from './mesh.ts';
import { repositoryFromSecret } from './repository.ts';
import type { SecretRepository } from './repository.ts';
import { ask, conflict, notFound, Resources, sleep } from './kube.ts';

export interface AgentLog {
  (level: 'info' | 'warn' | 'error', message: string, object?: string): void;
}

export interface AgentOptions {
  kc: KubeConfig;
  node: string;
  /** where the kubelet keeps pods' volumes (default /var/lib/kubelet) */
  kubeletRoot: string;
  /** backups and restores at once on this node (default 1) */
  concurrency?: number;
  /** runs of one item across agent restarts before it fails with AgentRestarted (default 2) */
  maxAttempts?: number;
  heartbeatMs?: number;
  pollMs?: number;
  /** how long a stop waits for running work before it leaves it to the next agent (default 20 s) */
  graceMs?: number;
  /** a directory for what a backup exports beside the volume (default the system's temporary directory) */
  workDir?: string;
  /** false: export nothing beside the volume data (default: the mesh configuration, the workload, Envoy's admin state) */
  exportObjects?: boolean;
  signal: AbortSignal;
  log: AgentLog;
}

/** The snapshot's paths: the volume, and the export beside it. */
export const VOLUME_PATH = '/volume';
export const EXPORT_PATH = '/k8s';
/** how long the agent waits for the kubelet to mount a running pod's volume */
const MOUNT_WAIT_MS = 30_000;
/** how long a backup or restore waits for an exclusive lock (another agent's retention, a prune) to go */
const LOCK_WAIT_MS = 10 * 60_000;

type Work = { kind: 'VolumeBackup'; obj: VolumeBackup } | { kind: 'VolumeRestore'; obj: VolumeRestore };

const now = (): string => new Date().toISOString();
const keyOf = (w: Work): string => `${w.kind}/${w.obj.metadata.namespace}/${w.obj.metadata.name}`;

/** A failure with the reason the status shows. */
class WorkError extends Error {
  readonly reason: FailureReason;
  constructor(reason: FailureReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** The directory the kubelet mounted a pod's PersistentVolume at, or undefined. */
export async function kubeletVolumeDir(kubeletRoot: string, podUID: string, pvName: string): Promise<string | undefined> {
  const volumes = path.join(kubeletRoot, 'pods', podUID, 'volumes');
  let plugins: string[];
  try {
    plugins = (await fsp.readdir(volumes)).sort((a, b) => Number(b === 'kubernetes.io~csi') - Number(a === 'kubernetes.io~csi'));
  } catch {
    return undefined;
  }
  for (const p of plugins) {
    const d = path.join(volumes, p, pvName);
    // CSI volumes are mounted at .../PV/mount (beside vol_data.json); other plugins at .../PV
    for (const c of [path.join(d, 'mount'), d]) {
      const st = await fsp.stat(c).catch(() => undefined);
      if (st?.isDirectory() === true && (c.endsWith('/mount') || !(await fsp.stat(path.join(d, 'vol_data.json')).catch(() => undefined)))) return c;
    }
  }
  return undefined;
}

/** The repository a Secret names; a problem with the Secret is a RepositoryError of the item. */
async function repositoryFrom(kc: KubeConfig, namespace: string, secret: string): Promise<SecretRepository> {
  try {
    return await repositoryFromSecret(kc, namespace, secret);
  } catch (e) {
    if (e instanceof MeshbackError && (e.code === 'NOT_FOUND' || e.code === 'USAGE')) throw new WorkError('RepositoryError', e.message);
    throw e;
  }
}

function reasonOf(e: unknown, fallback: FailureReason): FailureReason {
  if (e instanceof WorkError) return e.reason;
  if (e instanceof MeshbackError && ['REPOSITORY', 'PASSWORD', 'NOT_FOUND', 'LOCKED'].includes(e.code) && /repositor|password/i.test(e.message)) return 'RepositoryError';
  return fallback;
}

const firstLine = (e: unknown): string => errMessage(e).split('\n')[0]!;

export class Agent {
  readonly identity: string;
  private readonly o: AgentOptions;
  private readonly res: Resources;
  private readonly sem: Semaphore;
  private readonly running = new Map<string, Promise<void>>();
  private readonly maxAttempts: number;

  constructor(o: AgentOptions) {
    this.o = o;
    this.res = new Resources(o.kc);
    this.sem = new Semaphore(Math.max(1, o.concurrency ?? 1));
    this.maxAttempts = Math.max(1, o.maxAttempts ?? 2);
    this.identity = `${o.node}/${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }

  /** Runs until the signal aborts; then waits up to graceMs for running work. */
  async run(): Promise<void> {
    const { signal, log } = this.o;
    log('info', `agent ${this.identity} on node ${this.o.node}: watching work labelled ${NODE_LABEL}=${this.o.node}, kubelet root ${this.o.kubeletRoot}`);
    while (!signal.aborted) {
      try {
        await this.tick();
      } catch (e) {
        log('warn', `cannot list the work of node ${this.o.node}: ${firstLine(e)} (trying again)`);
      }
      await sleep(this.o.pollMs ?? 2000, signal);
    }
    const pending = [...this.running.values()];
    if (pending.length > 0) {
      log('info', `stopping: waiting up to ${((this.o.graceMs ?? 20_000) / 1000).toFixed(0)} s for ${pending.length} running item(s); what is left is resumed by the next agent on ${this.o.node}`);
      await Promise.race([Promise.allSettled(pending), sleep(this.o.graceMs ?? 20_000)]);
    }
  }

  private async tick(): Promise<void> {
    const sel = `${NODE_LABEL}=${this.o.node}`;
    const backups = await this.res.list<VolumeBackup>('VolumeBackup', undefined, sel);
    const restores = await this.res.list<VolumeRestore>('VolumeRestore', undefined, sel);
    const work: Work[] = [...backups.map((obj) => ({ kind: 'VolumeBackup' as const, obj })), ...restores.map((obj) => ({ kind: 'VolumeRestore' as const, obj }))];
    work.sort((a, b) => (a.obj.metadata.creationTimestamp ?? '').localeCompare(b.obj.metadata.creationTimestamp ?? ''));
    for (const w of work) {
      if (this.o.signal.aborted) return;
      const k = keyOf(w);
      if (this.running.has(k)) continue;
      const st = w.obj.status;
      if (st === undefined || TERMINAL.has(st.phase)) continue;
      const interrupted = (st.phase === 'Running' || st.phase === 'Verifying') && st.agent !== undefined && st.agent !== this.identity && st.agent.startsWith(`${this.o.node}/`);
      if (st.phase !== 'Queued' && !interrupted) continue;
      if (this.sem.inUse >= this.sem.limit) return;
      const attempt = (st.attempt ?? 0) + 1;
      if (interrupted && attempt > this.maxAttempts) {
        await this.fail(w, 'AgentRestarted', `the agent on node ${this.o.node} restarted during this ${w.kind === 'VolumeBackup' ? 'backup' : 'restore'} ${attempt - 1} time(s) (the limit is ${this.maxAttempts}): see the agent's log, then create a new ${w.kind} to try again`, true).catch((e) => this.o.log('warn', `cannot fail ${k}: ${firstLine(e)}`));
        continue;
      }
      // claim: a conditional update, so of two agents one wins
      const status = { ...st, phase: 'Running' as const, agent: this.identity, attempt, startTime: st.startTime ?? now(), heartbeatTime: now(), message: interrupted ? `resumed after the agent on ${this.o.node} restarted (attempt ${attempt} of ${this.maxAttempts})` : `running on ${this.o.node}` };
      let claimed: Work;
      try {
        const obj = await this.res.replaceStatus(w.kind, { ...w.obj, status } as VolumeBackup & VolumeRestore);
        claimed = { kind: w.kind, obj } as Work;
      } catch (e) {
        if (conflict(e)) continue; // another agent or the controller changed it first
        throw e;
      }
      this.o.log('info', `${interrupted ? 'resuming' : 'starting'} ${k} (attempt ${attempt})`, k);
      await this.sem.acquire();
      const p = this.perform(claimed).finally(() => {
        this.sem.release();
        this.running.delete(k);
      });
      this.running.set(k, p);
    }
  }

  private async perform(w: Work): Promise<void> {
    const k = keyOf(w);
    const progress: Record<string, number> = {};
    const beat = setInterval(() => {
      void this.res.patchStatus(w.kind, w.obj.metadata.namespace, w.obj.metadata.name, { heartbeatTime: now(), ...progress }).catch((e) => this.o.log('warn', `heartbeat of ${k}: ${firstLine(e)}`));
    }, this.o.heartbeatMs ?? 10_000);
    try {
      const final = w.kind === 'VolumeBackup' ? await this.backup(w.obj, progress) : await this.restore(w.obj, progress);
      await this.res.patchStatus(w.kind, w.obj.metadata.namespace, w.obj.metadata.name, { ...final, phase: 'Completed', completionTime: now(), heartbeatTime: now() });
      this.o.log('info', `completed ${k}: ${final.message ?? ''}`, k);
    } catch (e) {
      const reason = reasonOf(e, w.kind === 'VolumeBackup' ? 'BackupFailed' : 'RestoreFailed');
      await this.fail(w, reason, firstLine(e), false).catch((e2) => this.o.log('error', `cannot report the failure of ${k} (${firstLine(e)}): ${firstLine(e2)}`, k));
    } finally {
      clearInterval(beat);
    }
  }

  private async fail(w: Work, reason: FailureReason, message: string, conditional: boolean): Promise<void> {
    const k = keyOf(w);
    this.o.log('error', `${k} failed (${reason}): ${message}`, k);
    const status = { phase: 'Failed', reason, message, completionTime: now(), heartbeatTime: now() };
    if (conditional) {
      try {
        await this.res.replaceStatus(w.kind, { ...w.obj, status: { ...w.obj.status, ...status } } as VolumeBackup & VolumeRestore);
      } catch (e) {
        if (!conflict(e)) throw e;
      }
    } else await this.res.patchStatus(w.kind, w.obj.metadata.namespace, w.obj.metadata.name, status);
  }

  /** What goes beside the volume: the namespace's mesh configuration, the workload, its Services and ConfigMaps, and each Istio pod's Envoy admin state. */
  private async exportFor(ns: string, pvc: string, appPods: string[]): Promise<{ files: ExportedFile[]; warnings: string[] }> {
    const x = await exportForBackup(this.o.kc, ns, pvc, { pods: appPods });
    const core = this.o.kc.makeApiClient(CoreV1Api);
    for (const name of appPods) {
      const pod = await ask(this.o.kc, 'get', 'pods', ns, () => core.readNamespacedPod({ name, namespace: ns })).catch(() => undefined);
      const m = pod !== undefined ? meshOf(pod).mesh : 'none';
      if (pod === undefined || (m !== 'istio' && m !== 'istio-native')) continue;
      const e = await captureEnvoyAdmin(this.o.kc, pod, { timeoutMs: 15_000 });
      x.files.push(...e.files);
      x.warnings.push(...e.warnings);
    }
    return x;
  }

  /** The kubelet's directory of the item's volume, after checking the pod is still the one that mounted it. */
  private async volumeDir(src: VolumeSource | undefined, what: string): Promise<{ dir: string; pod: V1Pod }> {
    if (src === undefined) throw new WorkError('BackupFailed', `${what} has no source volume in its status (the controller sets it before Queued): this is a bug; create a new one`);
    if (src.node !== this.o.node) throw new WorkError('BackupFailed', `${what} names node ${src.node}, this agent runs on ${this.o.node}: the controller relabels it; nothing to do`);
    const core = this.o.kc.makeApiClient(CoreV1Api);
    let pod;
    try {
      pod = await ask(this.o.kc, 'get', 'pods', src.pod.split('/')[0], () => core.readNamespacedPod({ name: src.pod.split('/')[1]!, namespace: src.pod.split('/')[0]! }));
    } catch (e) {
      if (notFound(e)) throw new WorkError('NoPod', `the pod ${src.pod} that mounted the volume is gone: create a new ${what.split(' ')[0]} (the controller finds the volume again)`);
      throw e;
    }
    if (pod.metadata?.uid !== src.podUID) throw new WorkError('NoPod', `the pod ${src.pod} was replaced (UID ${pod.metadata?.uid} is not ${src.podUID}): create a new ${what.split(' ')[0]}`);
    // the kubelet may report the pod running a moment before the volume is mounted: wait for it, bounded
    let dir: string | undefined;
    for (let t0 = Date.now(); ; ) {
      dir = await kubeletVolumeDir(this.o.kubeletRoot, src.podUID, src.pvName);
      if (dir !== undefined || Date.now() - t0 > MOUNT_WAIT_MS || this.o.signal.aborted) break;
      await sleep(250, this.o.signal);
    }
    if (dir === undefined) throw new WorkError('NoPod', `the volume ${src.pvName} of pod ${src.pod} is not mounted under ${path.join(this.o.kubeletRoot, 'pods', src.podUID, 'volumes')} on ${this.o.node}: check the agent's --kubelet-root and that the pod is running`);
    return { dir, pod };
  }

  private async backup(vb: VolumeBackup, progress: Record<string, number>): Promise<Partial<VolumeBackupStatus>> {
    const ns = vb.metadata.namespace;
    const what = `VolumeBackup ${ns}/${vb.metadata.name}`;
    const policy = await this.res.find<BackupPolicy>('BackupPolicy', ns, vb.spec.policy);
    if (policy === undefined) throw new WorkError('BackupFailed', `the BackupPolicy ${ns}/${vb.spec.policy} of ${what} is gone: nothing to back up for`);
    const { dir, pod } = await this.volumeDir(vb.status?.source, what);
    const { location, password, credentials } = await repositoryFrom(this.o.kc, ns, policy.spec.repository.secretRef.name);
    // what is exported beside the volume: written to a private directory, backed up as /k8s
    let exportDir: string | undefined;
    let result: Partial<VolumeBackupStatus> & { message: string };
    const exported: string[] = [];
    const warnings: string[] = [];
    try {
      if (this.o.exportObjects !== false) {
        const x = await this.exportFor(ns, vb.spec.pvc, vb.status?.appPods ?? []);
        warnings.push(...x.warnings);
        if (x.files.length > 0) {
          exportDir = await fsp.mkdtemp(path.join(this.o.workDir ?? os.tmpdir(), 'meshback-export-'));
          for (const f of x.files) {
            // the export's paths start with k8s/: the snapshot's /k8s is that directory
            const rel = path.normalize(f.path).replace(/^(\.\.(\/|$))+/, '').replace(/^k8s\//, '');
            await fsp.mkdir(path.dirname(path.join(exportDir, rel)), { recursive: true, mode: 0o700 });
            await fsp.writeFile(path.join(exportDir, rel), f.content, { mode: 0o600 });
            exported.push(path.join(EXPORT_PATH, rel));
          }
        }
      }
      const tags = [`policy=${vb.spec.policy}`, `namespace=${ns}`, `pvc=${vb.spec.pvc}`, ...(vb.spec.tags ?? [])];
      const host = `k8s:${ns}/${vb.spec.pvc}`;
      const map: [string, string][] = [[VOLUME_PATH, dir], ...(exportDir !== undefined ? [[EXPORT_PATH, exportDir] as [string, string]] : [])];
      const o = await openRepository(location, password, { lock: 'shared', command: `k8s agent ${what}`, retryLockMs: LOCK_WAIT_MS, ...(credentials !== undefined ? { storage: { credentials } } : {}) }).catch((e: unknown) => {
        throw new WorkError('RepositoryError', `cannot open the repository of ${ns}/${policy.spec.repository.secretRef.name} (${location}): ${firstLine(e)}`);
      });
      try {
        const events: EventSink = (e) => {
          if (e.type === 'progress') {
            progress['files'] = e.files;
            progress['bytes'] = e.bytes;
          }
        };
        // live: the policy's hooks around the read, in the named container of the pod that mounts the volume
        const hooks = vb.spec.strategy === 'live' ? policy.spec.hooks : undefined;
        const warn = (m: string): void => this.o.log('warn', m);
        try {
          await runPodHooks(this.o.kc, 'pre', hooks?.pre, [pod], { warn });
        } catch (e) {
          await runPodHooks(this.o.kc, 'post', hooks?.post, [pod], { continueOnError: true, warn }).catch(() => undefined);
          throw new WorkError('HookFailed', `${errMessage(e).split('\n')[0]}; nothing was backed up`);
        }
        let r;
        try {
          r = await backup(o.repo, { paths: map.map(([p]) => p), tags, host, source: mappedSource(localSource, map, `volume ${vb.spec.pvc} on ${this.o.node}`), events });
        } finally {
          await runPodHooks(this.o.kc, 'post', hooks?.post, [pod], { continueOnError: true, warn }).catch((e: unknown) => warnings.push(`post hook: ${errMessage(e).split('\n')[0]}`));
        }
        if (r.errors.length > 0) throw new WorkError('BackupFailed', `${r.errors.length} item(s) of the volume could not be read, first ${r.errors[0]!.path}: ${r.errors[0]!.message} (snapshot ${r.id.slice(0, 8)} is incomplete)`);
        await this.res.patchStatus('VolumeBackup', ns, vb.metadata.name, { phase: 'Verifying', snapshotId: r.id, heartbeatTime: now() });
        // verification: read the snapshot back; a frozen source (a VolumeSnapshot) is also compared byte for byte
        const frozen = vb.spec.strategy === 'snapshot';
        const cmp = new CompareTarget(frozen ? dir : undefined);
        const vr = await restore(o.repo, { snapshot: r.id, target: cmp, root: VOLUME_PATH.slice(1) });
        if (vr.damaged.length > 0 || vr.errors.length > 0) throw new WorkError('VerifyFailed', `snapshot ${r.id.slice(0, 8)} does not read back: ${vr.damaged.length} damaged file(s), ${vr.errors[0]?.message ?? vr.damaged[0]}: run 'meshback check --read-data' on the repository`);
        if (cmp.differing > 0) throw new WorkError('VerifyFailed', `snapshot ${r.id.slice(0, 8)} differs from the VolumeSnapshot in ${cmp.differing} place(s), first ${cmp.differences[0]}: report this with the agent's log`);
        const all = await o.repo.listSnapshots();
        const prev = previousOf(all, r.id, host);
        const s = r.snapshot.summary;
        const verification = { verified: true, method: frozen ? 'read back and compared with the VolumeSnapshot' : 'read back (every chunk authenticated and re-hashed)', files: cmp.filesCompared, bytes: cmp.bytesCompared };
        result = {
          snapshotId: r.id,
          files: s.files, bytes: s.totalBytes, bytesAdded: s.bytesAdded,
          durationSeconds: Math.round((Date.now() - Date.parse(vb.status?.startTime ?? now())) / 100) / 10,
          verification,
          ...(prev !== undefined ? { rpoSeconds: Math.round((Date.parse(r.snapshot.time) - Date.parse(prev.snapshot.time)) / 1000) } : {}),
          ...(exported.length > 0 ? { exported } : {}),
          message: `snapshot ${r.id.slice(0, 8)}: ${s.files} files, verified`,
        };
      } finally {
        await o.close();
      }
      // retention: the policy's rule over this PVC's snapshots (forget takes the exclusive lock; prune is not run here)
      const rt = policy.spec.retention;
      if (rt !== undefined && Object.values(rt).some((x) => x !== undefined)) {
        try {
          const x = await openRepository(location, password, { lock: 'exclusive', command: `k8s agent forget ${ns}/${vb.spec.pvc}`, retryLockMs: 10 * 60_000, ...(credentials !== undefined ? { storage: { credentials } } : {}) });
          try {
            const f = await forget(x.repo, { policy: { ...(rt.keepLast !== undefined ? { last: rt.keepLast } : {}), ...(rt.keepHourly !== undefined ? { hourly: rt.keepHourly } : {}), ...(rt.keepDaily !== undefined ? { daily: rt.keepDaily } : {}), ...(rt.keepWeekly !== undefined ? { weekly: rt.keepWeekly } : {}), ...(rt.keepMonthly !== undefined ? { monthly: rt.keepMonthly } : {}) }, hosts: [host], tags: [`policy=${vb.spec.policy}`] });
            if (f.removed > 0) result.message += `; retention forgot ${f.removed} older snapshot(s) of the PVC, kept ${f.kept}`;
          } finally {
            await x.close();
          }
        } catch (e) {
          warnings.push(`retention not applied (${firstLine(e)}): the next backup tries again`);
        }
      }
      if (warnings.length > 0) result.message += `; ${warnings.join('; ')}`;
      return result;
    } finally {
      if (exportDir !== undefined) await fsp.rm(exportDir, { recursive: true, force: true });
    }
  }

  private async restore(vr: VolumeRestore, progress: Record<string, number>): Promise<Partial<VolumeRestoreStatus>> {
    const ns = vr.metadata.namespace;
    const what = `VolumeRestore ${ns}/${vr.metadata.name}`;
    let secret = vr.spec.repository?.secretRef.name;
    if (secret === undefined && vr.spec.policy !== undefined) {
      const p = await this.res.find<BackupPolicy>('BackupPolicy', ns, vr.spec.policy);
      if (p === undefined) throw new WorkError('RestoreFailed', `the BackupPolicy ${ns}/${vr.spec.policy} that ${what} takes its repository from does not exist: name the repository Secret in spec.repository`);
      secret = p.spec.repository.secretRef.name;
    }
    if (secret === undefined) throw new WorkError('RestoreFailed', `${what} names no repository: set spec.repository.secretRef or spec.policy`);
    const { dir } = await this.volumeDir(vr.status?.source, what);
    const { location, password, credentials } = await repositoryFrom(this.o.kc, ns, secret);
    const o = await openRepository(location, password, { lock: 'shared', command: `k8s agent ${what}`, retryLockMs: LOCK_WAIT_MS, ...(credentials !== undefined ? { storage: { credentials } } : {}) }).catch((e: unknown) => {
      throw new WorkError('RepositoryError', `cannot open the repository of ${ns}/${secret} (${location}): ${firstLine(e)}`);
    });
    try {
      let id = vr.spec.snapshot;
      if (id === 'latest') {
        const pvc = vr.spec.sourcePvc ?? vr.spec.targetPvc;
        const host = `k8s:${ns}/${pvc}`;
        const all = (await o.repo.listSnapshots()).filter((s) => s.snapshot.host === host && (vr.spec.policy === undefined || s.snapshot.tags.includes(`policy=${vr.spec.policy}`)));
        const newest = all.sort((a, b) => a.snapshot.time.localeCompare(b.snapshot.time)).at(-1);
        if (newest === undefined) throw new NotFoundError(`no snapshot of PVC ${ns}/${pvc}${vr.spec.policy !== undefined ? ` by policy ${vr.spec.policy}` : ''} in ${location}: name a snapshot id (meshback snapshots --tag pvc=${pvc})`);
        id = newest.id;
      }
      const events: EventSink = (e) => {
        if (e.type === 'progress') {
          progress['files'] = e.files;
          progress['bytes'] = e.bytes;
        }
      };
      const r = await restore(o.repo, { snapshot: id, target: dir, root: VOLUME_PATH.slice(1), ...(vr.spec.paths !== undefined ? { includes: vr.spec.paths } : {}), verify: true, events });
      if (r.damaged.length > 0 || r.errors.length > 0) throw new WorkError('RestoreFailed', `${r.damaged.length + r.errors.length} file(s) of snapshot ${r.snapshotId.slice(0, 8)} could not be restored, first ${r.errors[0]?.path ?? r.damaged[0]}: ${r.errors[0]?.message ?? 'damaged in the repository'}; run 'meshback check --read-data'`);
      const rto = (Date.now() - Date.parse(vr.metadata.creationTimestamp ?? now())) / 1000;
      return {
        snapshotId: r.snapshotId,
        files: r.files,
        bytes: r.bytes,
        verification: { verified: true, method: 'each file synced, read back and compared with the snapshot', files: r.filesReread, bytes: r.bytesReread },
        rtoSeconds: Math.round(rto * 10) / 10,
        message: `restored snapshot ${r.snapshotId.slice(0, 8)}: ${r.files} files, ${r.bytes} bytes, verified; RTO ${rto.toFixed(1)} s`,
      };
    } finally {
      await o.close();
    }
  }
}

/** The newest snapshot of `host` before snapshot `id`. */
function previousOf(all: SnapshotRef[], id: string, host: string): SnapshotRef | undefined {
  const me = all.find((s) => s.id === id);
  if (me === undefined) return undefined;
  return all.filter((s) => s.id !== id && s.snapshot.host === host && s.snapshot.time < me.snapshot.time).sort((a, b) => a.snapshot.time.localeCompare(b.snapshot.time)).at(-1);
}
