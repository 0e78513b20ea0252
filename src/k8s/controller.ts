/**
 * k8s/controller: `meshback k8s controller` (a Deployment; one replica leads through a Lease).
 * It turns BackupPolicies into VolumeBackups on schedule and moves VolumeBackups and
 * VolumeRestores to the point where the agent of a node can do the work:
 *
 *   VolumeBackup   Pending -> (snapshot) Snapshotting: a VolumeSnapshot of the PVC, readyToUse
 *                  within spec.snapshot.readyTimeout -> Mounting: a PVC made from it and a helper
 *                  pod mounting it read-only -> Queued on the helper pod's node
 *                  Pending -> (live) Queued on the node of the running pod that mounts the PVC
 *   VolumeRestore  Pending -> (scale the owning workload down) the target PVC (created with
 *                  spec.create) and a helper pod mounting it -> Queued on its node
 *   then the agent: Queued -> Running -> Verifying -> Completed | Failed.
 *
 * Nothing waits forever: each phase the controller owns has a timeout that fails the item with a
 * reason and a message that says what to do (SnapshotTimeout, MountTimeout, NoAgent); Running and
 * Verifying need an agent heartbeat (AgentLost). When an item ends, everything made for it
 * (VolumeSnapshot, PVC, helper pod; all owned by it, so the garbage collector also removes them
 * with it) is deleted, and a scaled-down workload is scaled back.
 *
 * A policy never has two backups of one PVC going at once; a schedule missed while no controller
 * ran is caught up once. State lives in the objects' status only, so a restarted or newly elected
 * controller carries on where the last one stopped.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as os from 'node:os';
import { AppsV1Api, CoordinationV1Api, CoreV1Api, CustomObjectsApi, StorageV1Api } from '@kubernetes/client-node';
import type { KubeConfig, V1Lease, V1PersistentVolumeClaim, V1Pod } from '@kubernetes/client-node';
import { errMessage } from '../errors/index.ts';
import { nextRunAfter, scheduleOf, scheduleProblem } from '../policy/index.ts';
import { parseDuration } from '../util/units.ts';
import { API_VERSION, DRILL_LABEL, LEASE_NAME, MANAGED_BY, NODE_LABEL, OWNER_LABEL, POLICY_LABEL, PVC_LABEL, TERMINAL } from './api.ts';
import type { BackupPolicy, BackupPolicyStatus, FailureReason, VolumeBackup, VolumeBackupStatus, VolumeRestore, VolumeRestoreStatus } from './api.ts';
import { ask, conflict, mergePatch, notFound, Resources, selectorMatches, sleep } from './kube.ts';
import { helperPod } from './pods.ts';
import { runPodHooks } from './hooks.ts';

export interface ControllerLog {
  (level: 'info' | 'warn' | 'error', message: string, object?: string): void;
}

export interface ControllerOptions {
  kc: KubeConfig;
  /** the controller's own namespace (its Lease) */
  namespace: string;
  identity?: string;
  /** the image of helper pods (the meshback image) */
  helperImage: string;
  pollMs?: number;
  leaseDurationMs?: number;
  /** how long a helper pod may take to run (default 5m) */
  mountTimeoutMs?: number;
  /** how long Queued work may wait for its node's agent (default 5m) */
  agentTimeoutMs?: number;
  /** how old an agent's heartbeat may get before the work fails with AgentLost (default 90 s) */
  heartbeatTimeoutMs?: number;
  /** the default of spec.snapshot.readyTimeout (10m) */
  snapshotTimeoutMs?: number;
  signal: AbortSignal;
  log: ControllerLog;
  /** the clock (tests) */
  now?: () => number;
}

const SNAP = { group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshots' };
const CLEANED = 'meshback.io/cleaned';
const iso = (ms: number): string => new Date(ms).toISOString();
const firstLine = (e: unknown): string => errMessage(e).split('\n')[0]!;

/** A name for an object made for `base`: at most 63 characters (a label value too), lowercase. */
export function childName(base: string, suffix: string): string {
  const room = 63 - suffix.length - 1;
  // deterministic: the same base gives the same name on every pass (a hash of it where it is cut)
  const b = base.length <= room ? base : `${base.slice(0, room - 7)}-${createHash('sha256').update(base).digest('hex').slice(0, 6)}`;
  return `${b}-${suffix}`.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '');
}

function stamp(ms: number): string {
  return iso(ms).replace(/[-:]/g, '').replace('T', '-').slice(0, 15).toLowerCase();
}

function ownerRef(o: { kind: string; metadata: { name: string; uid?: string } }): { apiVersion: string; kind: string; name: string; uid: string; controller: boolean; blockOwnerDeletion: boolean } {
  return { apiVersion: API_VERSION, kind: o.kind, name: o.metadata.name, uid: o.metadata.uid ?? '', controller: true, blockOwnerDeletion: true };
}

function claimsOf(pod: V1Pod): string[] {
  return (pod.spec?.volumes ?? []).map((v) => v.persistentVolumeClaim?.claimName).filter((c): c is string => c !== undefined);
}

function running(pod: V1Pod): boolean {
  return pod.status?.phase === 'Running' && pod.metadata?.deletionTimestamp === undefined && (pod.spec?.nodeName ?? '') !== '';
}

export class Controller {
  readonly identity: string;
  private readonly o: ControllerOptions;
  private readonly res: Resources;
  private readonly core: CoreV1Api;
  private readonly co: CustomObjectsApi;
  private leader = false;

  constructor(o: ControllerOptions) {
    this.o = o;
    this.res = new Resources(o.kc);
    this.core = o.kc.makeApiClient(CoreV1Api);
    this.co = o.kc.makeApiClient(CustomObjectsApi);
    this.identity = o.identity ?? `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  }

  private now(): number {
    return this.o.now?.() ?? Date.now();
  }

  get isLeader(): boolean {
    return this.leader;
  }

  async run(): Promise<void> {
    const { signal, log } = this.o;
    log('info', `controller ${this.identity}: electing a leader through the Lease ${this.o.namespace}/${LEASE_NAME}`);
    while (!signal.aborted) {
      try {
        const was = this.leader;
        this.leader = await this.elect();
        if (this.leader !== was) log('info', this.leader ? `controller ${this.identity} leads` : `controller ${this.identity} no longer leads`);
        if (this.leader) await this.reconcile();
      } catch (e) {
        log('warn', `reconcile: ${firstLine(e)} (trying again)`);
      }
      await sleep(this.o.pollMs ?? 1000, signal);
    }
    if (this.leader) await this.release().catch(() => undefined);
  }

  // ---- leader election: a Lease renewed every poll; taken over once it expired

  private async elect(): Promise<boolean> {
    const co = this.o.kc.makeApiClient(CoordinationV1Api);
    const ns = this.o.namespace;
    const durS = Math.max(1, Math.round((this.o.leaseDurationMs ?? 15_000) / 1000));
    // a Lease's times are MicroTime: six fractional digits
    const nowIso = new Date(this.now()).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
    let lease: V1Lease;
    try {
      lease = await ask(this.o.kc, 'get', 'leases.coordination.k8s.io', ns, () => co.readNamespacedLease({ name: LEASE_NAME, namespace: ns }));
    } catch (e) {
      if (!notFound(e)) throw e;
      try {
        await ask(this.o.kc, 'create', 'leases.coordination.k8s.io', ns, () =>
          co.createNamespacedLease({ namespace: ns, body: { metadata: { name: LEASE_NAME, namespace: ns, labels: { [MANAGED_BY.key]: MANAGED_BY.value } }, spec: { holderIdentity: this.identity, leaseDurationSeconds: durS, acquireTime: nowIso as unknown as Date, renewTime: nowIso as unknown as Date, leaseTransitions: 0 } } }),
        );
        return true;
      } catch (e2) {
        if (conflict(e2)) return false;
        throw e2;
      }
    }
    const holder = lease.spec?.holderIdentity ?? '';
    const renew = lease.spec?.renewTime !== undefined ? new Date(lease.spec.renewTime as unknown as string).getTime() : 0;
    const expired = holder === '' || renew + (lease.spec?.leaseDurationSeconds ?? durS) * 1000 < this.now();
    if (holder !== this.identity && !expired) return false;
    const spec = { ...lease.spec, holderIdentity: this.identity, leaseDurationSeconds: durS, renewTime: nowIso as unknown as Date, ...(holder !== this.identity ? { acquireTime: nowIso as unknown as Date, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 } : {}) };
    try {
      await ask(this.o.kc, 'update', 'leases.coordination.k8s.io', ns, () => co.replaceNamespacedLease({ name: LEASE_NAME, namespace: ns, body: { ...lease, spec } }));
      return true;
    } catch (e) {
      if (conflict(e)) return false;
      throw e;
    }
  }

  private async release(): Promise<void> {
    const co = this.o.kc.makeApiClient(CoordinationV1Api);
    const lease = await co.readNamespacedLease({ name: LEASE_NAME, namespace: this.o.namespace });
    if (lease.spec?.holderIdentity !== this.identity) return;
    await co.replaceNamespacedLease({ name: LEASE_NAME, namespace: this.o.namespace, body: { ...lease, spec: { ...lease.spec, holderIdentity: '', renewTime: '1970-01-01T00:00:00.000000Z' as unknown as Date } } });
  }

  // ---- one pass over everything

  async reconcile(): Promise<void> {
    const policies = await this.res.list<BackupPolicy>('BackupPolicy', undefined);
    const backups = await this.res.list<VolumeBackup>('VolumeBackup', undefined);
    for (const p of policies) {
      await this.schedule(p, backups.filter((b) => b.metadata.namespace === p.metadata.namespace && b.spec.policy === p.metadata.name)).catch((e) => this.o.log('warn', `BackupPolicy ${p.metadata.namespace}/${p.metadata.name}: ${firstLine(e)}`));
    }
    for (const b of backups) await this.step(b).catch((e) => this.o.log('warn', `VolumeBackup ${b.metadata.namespace}/${b.metadata.name}: ${firstLine(e)}`));
    for (const r of await this.res.list<VolumeRestore>('VolumeRestore', undefined)) await this.stepRestore(r).catch((e) => this.o.log('warn', `VolumeRestore ${r.metadata.namespace}/${r.metadata.name}: ${firstLine(e)}`));
  }

  /** The PVCs a policy selects: by their labels or the labels of a pod that mounts them. */
  private async selected(p: BackupPolicy): Promise<{ pvcs: V1PersistentVolumeClaim[]; pods: V1Pod[] }> {
    const ns = p.metadata.namespace;
    const pvcs = (await ask(this.o.kc, 'list', 'persistentvolumeclaims', ns, () => this.core.listNamespacedPersistentVolumeClaim({ namespace: ns }))).items;
    const pods = (await ask(this.o.kc, 'list', 'pods', ns, () => this.core.listNamespacedPod({ namespace: ns }))).items;
    // the PVCs meshback made itself (from a snapshot, a restore target) are never selected
    const mine = (x: { metadata?: { labels?: Record<string, string> } }): boolean => x.metadata?.labels?.[MANAGED_BY.key] === MANAGED_BY.value;
    const chosen = pvcs.filter((c) => !mine(c) && (selectorMatches(p.spec.selector, c.metadata?.labels) || pods.some((pod) => !mine(pod) && claimsOf(pod).includes(c.metadata?.name ?? '') && selectorMatches(p.spec.selector, pod.metadata?.labels))));
    return { pvcs: chosen.sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? '')), pods };
  }

  private async schedule(p: BackupPolicy, mine: VolumeBackup[]): Promise<void> {
    const ns = p.metadata.namespace;
    const id = `${ns}/${p.metadata.name}`;
    const problem = scheduleProblem(p.spec.schedule, p.spec.timeZone);
    if (problem !== undefined) {
      await this.policyStatus(p, { conditions: [cond('Ready', 'False', 'InvalidSchedule', `spec.schedule ${JSON.stringify(p.spec.schedule)}: ${problem}`)] });
      return;
    }
    const sched = scheduleOf(p.spec.schedule, p.spec.timeZone);
    const now = this.now();
    const last = p.status?.lastScheduleTime !== undefined ? Date.parse(p.status.lastScheduleTime) : undefined;
    // no run yet: the first one now; a missed run (or several): one catch-up now
    const due = last === undefined || (nextRunAfter(sched, last) ?? Infinity) <= now;
    const { pvcs } = await this.selected(p);
    const status: BackupPolicyStatus = {};
    if (due && p.spec.suspend !== true) {
      const made: string[] = [];
      const busy: string[] = [];
      for (const c of pvcs) {
        const name = c.metadata?.name ?? '';
        if (mine.some((b) => b.spec.pvc === name && !TERMINAL.has(b.status?.phase ?? 'Pending'))) {
          busy.push(name);
          continue;
        }
        const vb = await this.res.create<VolumeBackup>('VolumeBackup', ns, {
          apiVersion: API_VERSION,
          kind: 'VolumeBackup',
          metadata: {
            name: childName(`${p.metadata.name}-${name}`, stamp(now)),
            namespace: ns,
            labels: { [POLICY_LABEL]: p.metadata.name, [PVC_LABEL]: name.slice(0, 63), [MANAGED_BY.key]: MANAGED_BY.value },
            ownerReferences: [ownerRef(p)],
          },
          spec: { policy: p.metadata.name, pvc: name, strategy: p.spec.strategy ?? 'snapshot', scheduledTime: iso(now) },
        });
        await this.res.patchStatus('VolumeBackup', ns, vb.metadata.name, { phase: 'Pending', phaseTime: iso(now), message: 'scheduled' });
        made.push(vb.metadata.name);
      }
      this.o.log('info', `BackupPolicy ${id}: ${last === undefined ? 'first run' : (nextRunAfter(sched, nextRunAfter(sched, last) ?? now) ?? Infinity) <= now ? 'catch-up run (missed while no controller ran)' : 'scheduled run'}: ${made.length} VolumeBackup(s)${busy.length > 0 ? `; skipped ${busy.join(', ')} (a backup is still going)` : ''}`, id);
      status.lastScheduleTime = iso(now);
    }
    const nextBase = status.lastScheduleTime !== undefined ? now : (last ?? now);
    const next = nextRunAfter(sched, nextBase);
    if (next !== undefined) status.nextScheduleTime = iso(next);
    // the RPO state of each selected PVC
    const rpoMs = p.spec.rpo !== undefined ? parseDuration(p.spec.rpo, 'rpo') : undefined;
    status.volumes = pvcs.map((c) => {
      const name = c.metadata?.name ?? '';
      const done = mine.filter((b) => b.spec.pvc === name && b.status?.phase === 'Completed').sort((a, b) => (a.status?.completionTime ?? '').localeCompare(b.status?.completionTime ?? ''));
      const lastOk = done.at(-1);
      const okTime = lastOk?.status?.completionTime;
      const age = okTime !== undefined ? Math.round((now - Date.parse(okTime)) / 1000) : undefined;
      return { pvc: name, ...(lastOk !== undefined ? { lastBackup: lastOk.metadata.name, lastSnapshotId: lastOk.status?.snapshotId ?? '', lastSuccessTime: okTime, ageSeconds: age } : {}), ...(rpoMs !== undefined ? { rpoExceeded: age === undefined || age * 1000 > rpoMs } : {}) };
    });
    // a drill that cannot be made is reported, and the backups go on
    const drillConds = p.spec.drill !== undefined ? await this.drills(p, pvcs, mine, status, now).catch((e: unknown) => [cond('DrillsPassing', 'False', 'DrillNotMade', `a restore drill could not be made: ${firstLine(e)}`)]) : [];
    const okTimes = status.volumes.map((v) => v.lastSuccessTime).filter((x): x is string => x !== undefined).sort();
    if (okTimes.length > 0) status.lastSuccessTime = okTimes.at(-1)!;
    status.observedGeneration = p.metadata.generation ?? 0;
    const exceeded = status.volumes.filter((v) => v.rpoExceeded === true).map((v) => v.pvc);
    status.conditions = [
      cond('Ready', 'True', p.spec.suspend === true ? 'Suspended' : 'Scheduled', p.spec.suspend === true ? 'suspended: nothing is scheduled' : `${pvcs.length} PVC(s) selected`),
      ...drillConds,
      ...(rpoMs !== undefined ? [cond('RPOMet', exceeded.length === 0 ? 'True' : 'False', exceeded.length === 0 ? 'WithinTarget' : 'TargetExceeded', exceeded.length === 0 ? `every selected PVC has a backup newer than ${p.spec.rpo}` : `no backup newer than ${p.spec.rpo} of ${exceeded.join(', ')}`)] : []),
    ];
    await this.policyStatus(p, status);
    // history: the newest historyLimit ended VolumeBackups per PVC stay as objects
    const limit = p.spec.historyLimit ?? 3;
    for (const c of new Set(mine.map((b) => b.spec.pvc))) {
      const ended = mine.filter((b) => b.spec.pvc === c && TERMINAL.has(b.status?.phase ?? '') && b.metadata.annotations?.[CLEANED] === 'true').sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''));
      for (const old of ended.slice(0, Math.max(0, ended.length - limit))) await this.res.delete('VolumeBackup', ns, old.metadata.name);
    }
  }

  /**
   * Restore drills: per PVC, once `spec.drill.every` has passed since its last drill, its newest
   * completed backup is restored into a scratch PVC (a VolumeRestore labelled DRILL_LABEL, owned by the
   * policy; its scratch PVC owned by the VolumeRestore and deleted when it ends). The newest drill of
   * each PVC goes into the policy's status; older drills beyond three per PVC are deleted.
   */
  private async drills(p: BackupPolicy, pvcs: V1PersistentVolumeClaim[], mine: VolumeBackup[], status: BackupPolicyStatus, now: number): Promise<ReturnType<typeof cond>[]> {
    const ns = p.metadata.namespace;
    const every = parseDuration(p.spec.drill!.every, 'drill.every');
    const all = (await this.res.list<VolumeRestore>('VolumeRestore', ns, `${DRILL_LABEL}=true,${POLICY_LABEL}=${p.metadata.name}`)).sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''));
    status.drills = [];
    for (const c of pvcs) {
      const pvc = c.metadata?.name ?? '';
      const ofPvc = all.filter((r) => r.metadata.labels?.[PVC_LABEL] === pvc.slice(0, 63));
      const last = ofPvc.at(-1);
      const newest = mine.filter((b) => b.spec.pvc === pvc && b.status?.phase === 'Completed').sort((a, b) => (a.status?.completionTime ?? '').localeCompare(b.status?.completionTime ?? '')).at(-1);
      const lastTime = last?.metadata.creationTimestamp !== undefined ? Date.parse(last.metadata.creationTimestamp) : undefined;
      const going = last !== undefined && !TERMINAL.has(last.status?.phase ?? 'Pending');
      if (p.spec.suspend !== true && newest?.status?.snapshotId !== undefined && !going && (lastTime === undefined || now - lastTime >= every) && last?.spec.snapshot !== newest.status.snapshotId) {
        const name = childName(`drill-${pvc}`, stamp(now));
        await this.res.create<VolumeRestore>('VolumeRestore', ns, {
          apiVersion: API_VERSION,
          kind: 'VolumeRestore',
          metadata: { name, namespace: ns, labels: { [DRILL_LABEL]: 'true', [POLICY_LABEL]: p.metadata.name, [PVC_LABEL]: pvc.slice(0, 63), [MANAGED_BY.key]: MANAGED_BY.value }, ownerReferences: [ownerRef(p)] },
          spec: {
            snapshot: newest.status.snapshotId,
            policy: p.metadata.name,
            sourcePvc: pvc,
            targetPvc: childName(name, 'scratch'),
            create: { size: c.status?.capacity?.['storage'] ?? c.spec?.resources?.requests?.['storage'] ?? '1Gi', ...(c.spec?.storageClassName !== undefined ? { storageClassName: c.spec.storageClassName } : {}) },
          },
        });
        this.o.log('info', `BackupPolicy ${ns}/${p.metadata.name}: restore drill ${name} of PVC ${pvc}, snapshot ${newest.status.snapshotId.slice(0, 8)}`);
      }
      if (last !== undefined) {
        status.drills.push({ pvc, volumeRestore: last.metadata.name, snapshotId: last.status?.snapshotId ?? last.spec.snapshot, time: last.metadata.creationTimestamp ?? '', phase: last.status?.phase ?? 'Pending', ...(last.status?.rtoSeconds !== undefined ? { rtoSeconds: last.status.rtoSeconds } : {}), ...(last.status?.message !== undefined ? { message: last.status.message } : {}) });
      }
      for (const old of ofPvc.filter((r) => TERMINAL.has(r.status?.phase ?? '') && r.metadata.annotations?.[CLEANED] === 'true').slice(0, -3)) await this.res.delete('VolumeRestore', ns, old.metadata.name);
    }
    const failed = status.drills.filter((d) => d.phase === 'Failed');
    if (status.drills.length === 0) return [];
    return [cond('DrillsPassing', failed.length === 0 ? 'True' : 'False', failed.length === 0 ? 'Passing' : 'DrillFailed', failed.length === 0 ? `the newest drill of each PVC restored and verified` : `drill ${failed.map((d) => `${d.volumeRestore} (${d.pvc}): ${d.message ?? ''}`).join('; ')}`)];
  }

  private async policyStatus(p: BackupPolicy, status: BackupPolicyStatus): Promise<void> {
    const merged = { ...p.status, ...status };
    // conditions keep their transition time while their status stays
    merged.conditions = (status.conditions ?? p.status?.conditions ?? []).map((c) => {
      const before = p.status?.conditions?.find((x) => x.type === c.type);
      return before !== undefined && before.status === c.status ? { ...c, lastTransitionTime: before.lastTransitionTime } : c;
    });
    await this.res.patchStatus('BackupPolicy', p.metadata.namespace, p.metadata.name, merged);
  }

  // ---- VolumeBackup

  private async setBackup(b: VolumeBackup, status: Partial<VolumeBackupStatus>, labels?: Record<string, string>): Promise<void> {
    if (labels !== undefined) await this.res.patch('VolumeBackup', b.metadata.namespace, b.metadata.name, { metadata: { labels } });
    const next = { ...b.status, ...status, ...(status.phase !== undefined && status.phase !== b.status?.phase ? { phaseTime: iso(this.now()) } : {}) } as VolumeBackupStatus;
    // conditional: an agent that claimed it meanwhile wins
    const cur = await this.res.get<VolumeBackup>('VolumeBackup', b.metadata.namespace, b.metadata.name);
    if (cur.status?.phase !== b.status?.phase) return;
    await this.res.replaceStatus('VolumeBackup', { ...cur, status: next }).catch((e) => {
      if (!conflict(e)) throw e;
    });
  }

  private async failBackup(b: VolumeBackup, reason: FailureReason, message: string): Promise<void> {
    this.o.log('error', `VolumeBackup ${b.metadata.namespace}/${b.metadata.name} failed (${reason}): ${message}`);
    await this.setBackup(b, { phase: 'Failed', reason, message, completionTime: iso(this.now()) });
  }

  private since(s: { phaseTime?: string } | undefined): number {
    return s?.phaseTime !== undefined ? this.now() - Date.parse(s.phaseTime) : 0;
  }

  async step(b: VolumeBackup): Promise<void> {
    const ns = b.metadata.namespace;
    const st = b.status ?? { phase: 'Pending' as const };
    const phase = st.phase;
    if (TERMINAL.has(phase)) {
      if (b.metadata.annotations?.[CLEANED] !== 'true') await this.cleanup(ns, b.metadata.name, st.volumeSnapshot, 'VolumeBackup');
      return;
    }
    if (b.status === undefined) {
      await this.res.patchStatus('VolumeBackup', ns, b.metadata.name, { phase: 'Pending', phaseTime: iso(this.now()) });
      return;
    }
    if (phase === 'Pending') {
      const pvc = await this.findPvc(ns, b.spec.pvc);
      if (pvc === undefined) return this.failBackup(b, 'PvcNotFound', `the PVC ${ns}/${b.spec.pvc} does not exist: fix the policy's selector, or delete this VolumeBackup`);
      if (b.spec.strategy === 'live') {
        const pods = (await ask(this.o.kc, 'list', 'pods', ns, () => this.core.listNamespacedPod({ namespace: ns }))).items;
        const pod = pods.filter((x) => running(x) && claimsOf(x).includes(b.spec.pvc) && x.metadata?.labels?.[MANAGED_BY.key] !== MANAGED_BY.value).sort((x, y) => (x.metadata?.name ?? '').localeCompare(y.metadata?.name ?? ''))[0];
        if (pod === undefined) return this.failBackup(b, 'NoPod', `no running pod mounts the PVC ${ns}/${b.spec.pvc}, so strategy live has nothing to read: start its workload, or use strategy snapshot`);
        const node = pod.spec!.nodeName!;
        return this.setBackup(b, { phase: 'Queued', appPods: (await this.appPods(ns, b.spec.pvc)).map((x) => x.metadata?.name ?? ''), source: { node, pod: `${ns}/${pod.metadata!.name!}`, podUID: pod.metadata!.uid!, pvName: pvc.spec?.volumeName ?? '', pvc: b.spec.pvc }, message: `queued for the agent on ${node}` }, { [NODE_LABEL]: node });
      }
      // snapshot: the pre hooks, then a VolumeSnapshot of the PVC, owned by this VolumeBackup
      const snapName = childName(b.metadata.name, 'snap');
      const policy = await this.res.find<BackupPolicy>('BackupPolicy', ns, b.spec.policy);
      if ((policy?.spec.hooks?.pre?.length ?? 0) > 0) {
        try {
          await runPodHooks(this.o.kc, 'pre', policy!.spec.hooks!.pre, await this.appPods(ns, b.spec.pvc), { warn: (m) => this.o.log('warn', m) });
        } catch (e) {
          // post hooks undo what pre hooks did (a freeze), also after a failure
          await runPodHooks(this.o.kc, 'post', policy!.spec.hooks?.post, await this.appPods(ns, b.spec.pvc), { continueOnError: true, warn: (m) => this.o.log('warn', m) }).catch(() => undefined);
          return this.failBackup(b, 'HookFailed', `${firstLine(e)}; no VolumeSnapshot was taken`);
        }
      }
      const className = policy?.spec.snapshot?.className ?? (await this.snapshotClassFor(pvc));
      await ask(this.o.kc, 'create', 'volumesnapshots.snapshot.storage.k8s.io', ns, () =>
        this.co.createNamespacedCustomObject({
          ...SNAP,
          namespace: ns,
          body: {
            apiVersion: 'snapshot.storage.k8s.io/v1',
            kind: 'VolumeSnapshot',
            metadata: { name: snapName, namespace: ns, labels: { [MANAGED_BY.key]: MANAGED_BY.value, [OWNER_LABEL]: b.metadata.name }, ownerReferences: [ownerRef(b)] },
            spec: { source: { persistentVolumeClaimName: b.spec.pvc }, ...(className !== undefined ? { volumeSnapshotClassName: className } : {}) },
          },
        }),
      ).catch((e) => {
        if (!conflict(e)) throw e;
      });
      return this.setBackup(b, { phase: 'Snapshotting', appPods: (await this.appPods(ns, b.spec.pvc)).map((x) => x.metadata?.name ?? ''), volumeSnapshot: snapName, startTime: st.startTime ?? iso(this.now()), message: `waiting for VolumeSnapshot ${snapName} to be ready` });
    }
    if (phase === 'Snapshotting') {
      const snapName = st.volumeSnapshot ?? '';
      let snap: { status?: { readyToUse?: boolean; restoreSize?: string; error?: { message?: string } } } | undefined;
      try {
        snap = (await ask(this.o.kc, 'get', 'volumesnapshots.snapshot.storage.k8s.io', ns, () => this.co.getNamespacedCustomObject({ ...SNAP, namespace: ns, name: snapName }))) as typeof snap;
      } catch (e) {
        if (!notFound(e)) throw e;
        return this.failBackup(b, 'SnapshotFailed', `the VolumeSnapshot ${ns}/${snapName} is gone (deleted by someone): create a new VolumeBackup`);
      }
      const policy = await this.res.find<BackupPolicy>('BackupPolicy', ns, b.spec.policy);
      // the post hooks, once the point in time is cut (creationTime), or the snapshot failed or ran out of time
      const postHooks = policy?.spec.hooks?.post ?? [];
      const hooksDone = (st.conditions ?? []).some((c) => c.type === 'PostHooksRun');
      const runPost = async (): Promise<string> => {
        if (hooksDone || (postHooks.length === 0 && (policy?.spec.hooks?.pre?.length ?? 0) === 0)) return '';
        let warning = '';
        try {
          await runPodHooks(this.o.kc, 'post', postHooks, await this.appPods(ns, b.spec.pvc), { continueOnError: true, warn: (m) => this.o.log('warn', m) });
        } catch (e) {
          warning = firstLine(e);
        }
        await this.setBackup(b, { conditions: [...(st.conditions ?? []), cond('PostHooksRun', warning === '' ? 'True' : 'False', warning === '' ? 'Succeeded' : 'Failed', warning === '' ? 'the post hooks ran' : warning)] });
        b.status = { ...st, conditions: [...(st.conditions ?? []), cond('PostHooksRun', 'True', '', '')] };
        return warning;
      };
      const timeoutText = policy?.spec.snapshot?.readyTimeout;
      const timeout = timeoutText !== undefined ? parseDuration(timeoutText, 'readyTimeout') : (this.o.snapshotTimeoutMs ?? 10 * 60_000);
      const cut = snap?.status?.readyToUse === true || (snap?.status as { creationTime?: string } | undefined)?.creationTime !== undefined;
      const failedSnap = snap?.status?.error?.message !== undefined && snap.status.readyToUse !== true;
      const timedOut = snap?.status?.readyToUse !== true && this.since(st) > timeout;
      if (cut || failedSnap || timedOut) {
        const w = await runPost();
        if (w !== '') return this.failBackup(b, 'HookFailed', `${w}; the VolumeSnapshot ${snapName} was taken, but a post hook failed: the application may still be frozen`);
      }
      if (snap?.status?.error?.message !== undefined && snap.status.readyToUse !== true) return this.failBackup(b, 'SnapshotFailed', `the VolumeSnapshot ${ns}/${snapName} failed: ${snap.status.error.message.split('\n')[0]}: see the CSI driver's snapshotter log`);
      if (snap?.status?.readyToUse !== true) {
        if (this.since(st) > timeout) {
          return this.failBackup(b, 'SnapshotTimeout', `the VolumeSnapshot ${ns}/${snapName} was not ready to use after ${fmtMs(timeout)}: check the CSI driver's snapshotter (kubectl describe volumesnapshot -n ${ns} ${snapName}), or raise the policy's spec.snapshot.readyTimeout`);
        }
        return;
      }
      // a PVC made from the snapshot, mounted read-only by a helper pod: the agent of its node reads it
      const pvc = await this.findPvc(ns, b.spec.pvc);
      const size = snap.status.restoreSize ?? pvc?.status?.capacity?.['storage'] ?? pvc?.spec?.resources?.requests?.['storage'] ?? '1Gi';
      const srcName = childName(b.metadata.name, 'src');
      await this.createPvc(ns, {
        metadata: { name: srcName, namespace: ns, labels: { [MANAGED_BY.key]: MANAGED_BY.value, [OWNER_LABEL]: b.metadata.name }, ownerReferences: [ownerRef(b)] },
        spec: { accessModes: ['ReadWriteOnce'], ...(pvc?.spec?.storageClassName !== undefined ? { storageClassName: pvc.spec.storageClassName } : {}), resources: { requests: { storage: size } }, dataSource: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: snapName } },
      });
      // on the node of the pod that mounts the volume, if one runs: node-local drivers (hostpath, TopoLVM,
      // local volumes) can only serve the snapshot there, and the work spreads as the application does
      const pods = (await ask(this.o.kc, 'list', 'pods', ns, () => this.core.listNamespacedPod({ namespace: ns }))).items;
      const node = pods.find((x) => running(x) && claimsOf(x).includes(b.spec.pvc) && x.metadata?.labels?.[MANAGED_BY.key] !== MANAGED_BY.value)?.spec?.nodeName;
      await this.createPod(helperPod({ name: childName(b.metadata.name, 'holder'), namespace: ns, pvc: srcName, readOnly: true, image: this.o.helperImage, owner: ownerRef(b), ...(node !== undefined ? { node } : {}) }));
      return this.setBackup(b, { phase: 'Mounting', message: `mounting the snapshot's PVC ${srcName} with a helper pod` });
    }
    if (phase === 'Mounting') {
      const src = await this.mounted(ns, childName(b.metadata.name, 'holder'));
      if (src === undefined) {
        if (this.since(st) > (this.o.mountTimeoutMs ?? 5 * 60_000)) return this.failBackup(b, 'MountTimeout', `the helper pod ${ns}/${childName(b.metadata.name, 'holder')} did not run within ${fmtMs(this.o.mountTimeoutMs ?? 5 * 60_000)}: kubectl describe pod -n ${ns} ${childName(b.metadata.name, 'holder')} (the PVC from the snapshot may not bind)`);
        return;
      }
      return this.setBackup(b, { phase: 'Queued', source: { ...src, pvc: childName(b.metadata.name, 'src') }, message: `queued for the agent on ${src.node}` }, { [NODE_LABEL]: src.node });
    }
    return this.watchAgent(b, st, (r, m) => this.failBackup(b, r, m));
  }

  /** Queued needs an agent within the agent timeout; Running and Verifying need its heartbeat. */
  private async watchAgent(o: VolumeBackup | VolumeRestore, st: VolumeBackupStatus | VolumeRestoreStatus, fail: (r: FailureReason, m: string) => Promise<void>): Promise<void> {
    const node = st.source?.node ?? '?';
    if (st.phase === 'Queued') {
      const t = this.o.agentTimeoutMs ?? 5 * 60_000;
      if (this.since(st) > t) return fail('NoAgent', `no meshback agent on node ${node} took this within ${fmtMs(t)}: check that the DaemonSet meshback-agent runs there (kubectl get pods -o wide -l app.kubernetes.io/component=agent -n ${this.o.namespace})`);
      return;
    }
    if (st.phase === 'Running' || st.phase === 'Verifying') {
      const t = this.o.heartbeatTimeoutMs ?? 90_000;
      const beat = st.heartbeatTime !== undefined ? Date.parse(st.heartbeatTime) : Date.parse(st.phaseTime ?? iso(this.now()));
      if (this.now() - beat > t) return fail('AgentLost', `the agent ${st.agent ?? ''} on node ${node} stopped reporting (last heartbeat ${fmtMs(this.now() - beat)} ago): see its log; create a new ${o.kind} to try again`);
    }
  }

  // ---- VolumeRestore

  private async setRestore(r: VolumeRestore, status: Partial<VolumeRestoreStatus>, labels?: Record<string, string>): Promise<void> {
    if (labels !== undefined) await this.res.patch('VolumeRestore', r.metadata.namespace, r.metadata.name, { metadata: { labels } });
    const cur = await this.res.get<VolumeRestore>('VolumeRestore', r.metadata.namespace, r.metadata.name);
    if (cur.status?.phase !== r.status?.phase) return;
    const next = { ...r.status, ...status, ...(status.phase !== undefined && status.phase !== r.status?.phase ? { phaseTime: iso(this.now()) } : {}) } as VolumeRestoreStatus;
    await this.res.replaceStatus('VolumeRestore', { ...cur, status: next }).catch((e) => {
      if (!conflict(e)) throw e;
    });
  }

  private async failRestore(r: VolumeRestore, reason: FailureReason, message: string): Promise<void> {
    this.o.log('error', `VolumeRestore ${r.metadata.namespace}/${r.metadata.name} failed (${reason}): ${message}`);
    await this.setRestore(r, { phase: 'Failed', reason, message, completionTime: iso(this.now()) });
  }

  async stepRestore(r: VolumeRestore): Promise<void> {
    const ns = r.metadata.namespace;
    const st = r.status;
    const holder = childName(r.metadata.name, 'holder');
    if (st === undefined) {
      await this.res.patchStatus('VolumeRestore', ns, r.metadata.name, { phase: 'Pending', phaseTime: iso(this.now()) });
      return;
    }
    if (TERMINAL.has(st.phase)) {
      if (r.metadata.annotations?.[CLEANED] !== 'true') {
        if (r.metadata.labels?.[DRILL_LABEL] === 'true') {
          await ask(this.o.kc, 'delete', 'persistentvolumeclaims', ns, () => this.core.deleteNamespacedPersistentVolumeClaim({ name: r.spec.targetPvc, namespace: ns })).catch((e) => {
            if (!notFound(e)) throw e;
          });
        }
        await this.cleanup(ns, r.metadata.name, undefined, 'VolumeRestore');
        if (st.scaledDown !== undefined) await this.scale(ns, st.scaledDown.kind, st.scaledDown.name, st.scaledDown.replicas);
      }
      return;
    }
    if (st.phase === 'Pending') {
      const target = r.spec.targetPvc;
      const pvc = await this.findPvc(ns, target);
      if (r.spec.create !== undefined) {
        if (pvc !== undefined && pvc.metadata?.labels?.[OWNER_LABEL] !== r.metadata.name) return this.failRestore(r, 'RestoreFailed', `the PVC ${ns}/${target} exists, and spec.create asks for a new one: restore into it without spec.create, or name another PVC`);
        if (pvc === undefined) {
          // no owner: the restored PVC outlives the VolumeRestore
          const drill = r.metadata.labels?.[DRILL_LABEL] === 'true';
          await this.createPvc(ns, {
            // a drill's scratch PVC is the VolumeRestore's (deleted with it); a restore's target outlives it
            metadata: { name: target, namespace: ns, labels: { [OWNER_LABEL]: r.metadata.name, ...(drill ? { [MANAGED_BY.key]: MANAGED_BY.value } : {}) }, ...(drill ? { ownerReferences: [ownerRef(r)] } : {}) },
            spec: { accessModes: r.spec.create.accessModes ?? ['ReadWriteOnce'], ...(r.spec.create.storageClassName !== undefined ? { storageClassName: r.spec.create.storageClassName } : {}), resources: { requests: { storage: r.spec.create.size } } },
          });
        }
      } else if (pvc === undefined) return this.failRestore(r, 'PvcNotFound', `the target PVC ${ns}/${target} does not exist: create it, or set spec.create to have it made`);
      let scaledDown: VolumeRestoreStatus['scaledDown'];
      if (r.spec.scaleDown === true) {
        const w = await this.workloadMounting(ns, target);
        if (w !== undefined && w.replicas > 0) {
          await this.scale(ns, w.kind, w.name, 0);
          scaledDown = w;
          this.o.log('info', `VolumeRestore ${ns}/${r.metadata.name}: scaled ${w.kind} ${w.name} from ${w.replicas} to 0 for the restore`);
        }
      }
      await this.createPod(helperPod({ name: holder, namespace: ns, pvc: target, readOnly: false, image: this.o.helperImage, owner: ownerRef(r) }));
      return this.setRestore(r, { phase: 'Mounting', startTime: iso(this.now()), ...(scaledDown !== undefined ? { scaledDown } : {}), message: `mounting the PVC ${target} with a helper pod` });
    }
    if (st.phase === 'Mounting') {
      // a scaled-down workload's pods go first
      const pods = (await ask(this.o.kc, 'list', 'pods', ns, () => this.core.listNamespacedPod({ namespace: ns }))).items;
      const others = pods.filter((p) => p.metadata?.name !== holder && claimsOf(p).includes(r.spec.targetPvc) && p.status?.phase !== 'Succeeded' && p.status?.phase !== 'Failed');
      const src = await this.mounted(ns, holder);
      const t = this.o.mountTimeoutMs ?? 5 * 60_000;
      if (src === undefined || (st.scaledDown !== undefined && others.length > 0)) {
        if (this.since(st) > t) return this.failRestore(r, 'MountTimeout', `the PVC ${ns}/${r.spec.targetPvc} was not mounted by the helper pod ${holder} within ${fmtMs(t)}${others.length > 0 ? ` (still mounted by ${others.map((p) => p.metadata?.name).join(', ')})` : ''}: kubectl describe pod -n ${ns} ${holder}`);
        return;
      }
      return this.setRestore(r, { phase: 'Queued', source: { ...src, pvc: r.spec.targetPvc }, message: `queued for the agent on ${src.node}` }, { [NODE_LABEL]: src.node });
    }
    return this.watchAgent(r, st, (reason, m) => this.failRestore(r, reason, m));
  }

  // ---- helpers

  private async findPvc(ns: string, name: string): Promise<V1PersistentVolumeClaim | undefined> {
    try {
      return await ask(this.o.kc, 'get', 'persistentvolumeclaims', ns, () => this.core.readNamespacedPersistentVolumeClaim({ name, namespace: ns }));
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  private async createPvc(ns: string, body: V1PersistentVolumeClaim): Promise<V1PersistentVolumeClaim> {
    try {
      return await ask(this.o.kc, 'create', 'persistentvolumeclaims', ns, () => this.core.createNamespacedPersistentVolumeClaim({ namespace: ns, body }));
    } catch (e) {
      if (conflict(e)) return (await this.findPvc(ns, body.metadata?.name ?? ''))!;
      throw e;
    }
  }

  private async createPod(body: V1Pod): Promise<void> {
    const ns = body.metadata?.namespace ?? '';
    await ask(this.o.kc, 'create', 'pods', ns, () => this.core.createNamespacedPod({ namespace: ns, body })).catch((e) => {
      if (!conflict(e)) throw e;
    });
  }

  /** The running application pods (not meshback's) that mount the PVC: where its hooks run. */
  private async appPods(ns: string, pvc: string): Promise<V1Pod[]> {
    const pods = (await ask(this.o.kc, 'list', 'pods', ns, () => this.core.listNamespacedPod({ namespace: ns }))).items;
    return pods.filter((x) => running(x) && claimsOf(x).includes(pvc) && x.metadata?.labels?.[MANAGED_BY.key] !== MANAGED_BY.value);
  }

  /** The running helper pod's node and volume, once its PVC is bound. */
  private async mounted(ns: string, podName: string): Promise<{ node: string; pod: string; podUID: string; pvName: string } | undefined> {
    let pod: V1Pod;
    try {
      pod = await ask(this.o.kc, 'get', 'pods', ns, () => this.core.readNamespacedPod({ name: podName, namespace: ns }));
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
    if (!running(pod)) return undefined;
    const claim = claimsOf(pod)[0];
    const pvc = claim !== undefined ? await this.findPvc(ns, claim) : undefined;
    const pv = pvc?.spec?.volumeName;
    if (pv === undefined || pv === '' || pvc?.status?.phase !== 'Bound') return undefined;
    return { node: pod.spec!.nodeName!, pod: `${ns}/${podName}`, podUID: pod.metadata!.uid!, pvName: pv };
  }

  private async snapshotClassFor(pvc: V1PersistentVolumeClaim): Promise<string | undefined> {
    const scName = pvc.spec?.storageClassName;
    if (scName === undefined || scName === '') return undefined;
    const storage = this.o.kc.makeApiClient(StorageV1Api);
    const sc = await ask(this.o.kc, 'get', 'storageclasses.storage.k8s.io', undefined, () => storage.readStorageClass({ name: scName })).catch(() => undefined);
    if (sc === undefined) return undefined;
    const list = (await ask(this.o.kc, 'list', 'volumesnapshotclasses.snapshot.storage.k8s.io', undefined, () => this.co.listClusterCustomObject({ group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshotclasses' }))) as { items?: { metadata?: { name?: string; annotations?: Record<string, string> }; driver?: string }[] };
    const serving = (list.items ?? []).filter((c) => c.driver === sc.provisioner).sort((a, b) => Number(b.metadata?.annotations?.['snapshot.storage.kubernetes.io/is-default-class'] === 'true') - Number(a.metadata?.annotations?.['snapshot.storage.kubernetes.io/is-default-class'] === 'true'));
    return serving[0]?.metadata?.name;
  }

  /** Deletes what was made for an ended item (helper pod, snapshot PVC, VolumeSnapshot), then marks it cleaned. */
  private async cleanup(ns: string, name: string, snapName: string | undefined, kind: 'VolumeBackup' | 'VolumeRestore'): Promise<void> {
    const del = async (what: string, call: () => Promise<unknown>): Promise<void> => {
      try {
        await ask(this.o.kc, 'delete', what, ns, call);
      } catch (e) {
        if (!notFound(e)) throw e;
      }
    };
    const holder = childName(name, 'holder');
    await del('pods', () => this.core.deleteNamespacedPod({ name: holder, namespace: ns, gracePeriodSeconds: 0 }));
    if (kind === 'VolumeBackup') {
      await del('persistentvolumeclaims', () => this.core.deleteNamespacedPersistentVolumeClaim({ name: childName(name, 'src'), namespace: ns }));
      if (snapName !== undefined) await del('volumesnapshots.snapshot.storage.k8s.io', () => this.co.deleteNamespacedCustomObject({ ...SNAP, namespace: ns, name: snapName }));
    }
    await this.res.patch(kind, ns, name, { metadata: { annotations: { [CLEANED]: 'true' } } });
  }

  /** The Deployment or StatefulSet whose pods mount the PVC, with its replicas now. */
  private async workloadMounting(ns: string, pvc: string): Promise<{ kind: string; name: string; replicas: number } | undefined> {
    const apps = this.o.kc.makeApiClient(AppsV1Api);
    const pods = (await ask(this.o.kc, 'list', 'pods', ns, () => this.core.listNamespacedPod({ namespace: ns }))).items.filter((p) => claimsOf(p).includes(pvc));
    for (const p of pods) {
      const ref = p.metadata?.ownerReferences?.find((o) => o.controller === true);
      if (ref?.kind === 'StatefulSet') {
        const s = await ask(this.o.kc, 'get', 'statefulsets.apps', ns, () => apps.readNamespacedStatefulSet({ name: ref.name, namespace: ns }));
        return { kind: 'StatefulSet', name: ref.name, replicas: s.spec?.replicas ?? 1 };
      }
      if (ref?.kind === 'ReplicaSet') {
        const rs = await ask(this.o.kc, 'get', 'replicasets.apps', ns, () => apps.readNamespacedReplicaSet({ name: ref.name, namespace: ns }));
        const d = rs.metadata?.ownerReferences?.find((o) => o.kind === 'Deployment');
        if (d !== undefined) {
          const dep = await ask(this.o.kc, 'get', 'deployments.apps', ns, () => apps.readNamespacedDeployment({ name: d.name, namespace: ns }));
          return { kind: 'Deployment', name: d.name, replicas: dep.spec?.replicas ?? 1 };
        }
      }
    }
    // a workload scaled to zero earlier has no pods: its template may still name the PVC
    for (const s of (await ask(this.o.kc, 'list', 'statefulsets.apps', ns, () => apps.listNamespacedStatefulSet({ namespace: ns }))).items) {
      if ((s.spec?.template.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === pvc)) return { kind: 'StatefulSet', name: s.metadata?.name ?? '', replicas: s.spec?.replicas ?? 1 };
    }
    for (const d of (await ask(this.o.kc, 'list', 'deployments.apps', ns, () => apps.listNamespacedDeployment({ namespace: ns }))).items) {
      if ((d.spec?.template.spec?.volumes ?? []).some((v) => v.persistentVolumeClaim?.claimName === pvc)) return { kind: 'Deployment', name: d.metadata?.name ?? '', replicas: d.spec?.replicas ?? 1 };
    }
    return undefined;
  }

  private async scale(ns: string, kind: string, name: string, replicas: number): Promise<void> {
    const apps = this.o.kc.makeApiClient(AppsV1Api);
    const body = { spec: { replicas } };
    if (kind === 'StatefulSet') await ask(this.o.kc, 'patch', 'statefulsets/scale.apps', ns, () => apps.patchNamespacedStatefulSetScale({ name, namespace: ns, body }, mergePatch()));
    else await ask(this.o.kc, 'patch', 'deployments/scale.apps', ns, () => apps.patchNamespacedDeploymentScale({ name, namespace: ns, body }, mergePatch()));
  }
}

function cond(type: string, status: 'True' | 'False', reason: string, message: string): { type: string; status: 'True' | 'False'; reason: string; message: string; lastTransitionTime: string } {
  return { type, status, reason, message, lastTransitionTime: new Date().toISOString() };
}

function fmtMs(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : `${Math.floor(s / 60)}m${s % 60 !== 0 ? `${s % 60}s` : ''}`;
}
