/**
 * The long-running Kubernetes subcommands: `meshback k8s controller` (the Deployment),
 * `meshback k8s agent` (the DaemonSet) and `meshback k8s hold` (the helper pod that keeps a PVC
 * mounted on a node). Each runs until SIGTERM/SIGINT; log lines go to stdout (JSON lines with --json).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { UsageError } from '../../errors/index.ts';
import { Agent } from '../../k8s/agent.ts';
import { KUBELET_ROOT } from '../../k8s/api.ts';
import { Controller } from '../../k8s/controller.ts';
import { parseDuration } from '../../util/units.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';
import { setInterruptHandler } from '../signals.ts';
import { VERSION } from '../version.ts';

type Values = Record<string, unknown>;
const s = (v: Values, k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);

function ms(v: Values, k: string): number | undefined {
  const t = s(v, k);
  return t === undefined ? undefined : parseDuration(t, `--${k}`);
}

function count(v: Values, k: string, dflt: number): number {
  const t = s(v, k);
  if (t === undefined) return dflt;
  if (!/^[1-9][0-9]*$/.test(t)) throw new UsageError(`--${k} must be a whole number of at least 1, not ${JSON.stringify(t)}`);
  return Number(t);
}

/** Runs `body` until SIGTERM/SIGINT, which aborts its signal. */
async function untilStopped(ctx: Context, what: string, body: (signal: AbortSignal) => Promise<void>): Promise<number> {
  const ac = new AbortController();
  setInterruptHandler((sig) => {
    if (ac.signal.aborted) process.exit(130);
    ctx.out.result(`${new Date().toISOString()} ${what}: ${sig} received, stopping`);
    ac.abort();
  });
  try {
    await body(ac.signal);
    return EXIT.OK;
  } finally {
    setInterruptHandler(undefined);
  }
}

function logger(ctx: Context, component: string): (level: 'info' | 'warn' | 'error', message: string, object?: string) => void {
  return (level, message, object) => {
    if (ctx.out.json) ctx.out.jsonOut({ message_type: 'log', component, level, time: new Date().toISOString(), message, ...(object !== undefined ? { object } : {}) });
    else ctx.out.result(`${new Date().toISOString()} ${level === 'info' ? '' : `${level.toUpperCase()} `}${message}`);
  };
}

export function controllerCommand(ctx: Context, v: Values, kc: KubeConfig): Promise<number> {
  const namespace = s(v, 'namespace') ?? process.env['POD_NAMESPACE'] ?? 'meshback';
  const opt = (k: string, name: string): Record<string, number> => (ms(v, k) !== undefined ? { [name]: ms(v, k)! } : {});
  const base = {
    kc,
    namespace,
    ...(s(v, 'identity') !== undefined ? { identity: s(v, 'identity')! } : {}),
    helperImage: s(v, 'helper-image') ?? process.env['MESHBACK_IMAGE'] ?? `ghcr.io/meshback/meshback:${VERSION}`,
    ...opt('poll', 'pollMs'),
    ...opt('lease-duration', 'leaseDurationMs'),
    ...opt('mount-timeout', 'mountTimeoutMs'),
    ...opt('agent-timeout', 'agentTimeoutMs'),
    ...opt('heartbeat-timeout', 'heartbeatTimeoutMs'),
    ...opt('snapshot-timeout', 'snapshotTimeoutMs'),
    log: logger(ctx, 'controller'),
  };
  return untilStopped(ctx, 'controller', (signal) => new Controller({ ...base, signal }).run());
}

export function agentCommand(ctx: Context, v: Values, kc: KubeConfig): Promise<number> {
  const node = s(v, 'node') ?? process.env['NODE_NAME'];
  if (node === undefined || node === '') throw new UsageError('the agent needs its node: give --node NAME (in the DaemonSet: NODE_NAME from spec.nodeName)');
  const opt = (k: string, name: string): Record<string, number> => (ms(v, k) !== undefined ? { [name]: ms(v, k)! } : {});
  const base = {
    kc,
    node,
    kubeletRoot: s(v, 'kubelet-root') ?? KUBELET_ROOT,
    concurrency: count(v, 'concurrency', 1),
    maxAttempts: count(v, 'max-attempts', 2),
    ...opt('poll', 'pollMs'),
    ...opt('heartbeat', 'heartbeatMs'),
    ...opt('grace', 'graceMs'),
    ...(s(v, 'work-dir') !== undefined ? { workDir: s(v, 'work-dir')! } : {}),
    log: logger(ctx, 'agent'),
  };
  return untilStopped(ctx, 'agent', (signal) => new Agent({ ...base, signal }).run());
}
