/**
 * k8s/hooks: a BackupPolicy's pre and post hooks, run in a NAMED container of each running pod that
 * mounts the PVC (never "the first container": hookContainer() of mesh.ts refuses a proxy, a native
 * sidecar or an init container), through the API server's pods/exec. Pre hooks run before the
 * point in time is taken (the VolumeSnapshot is created, or the live volume is read); post hooks
 * run after it, also when it failed, so a freeze is always undone.
 *
 * Each hook has a timeout (default 1m); a hook that exits non-zero, times out or cannot be run is a
 * HookError with one line that names the hook, pod and container and gives the tail of its stderr.
 * onError: Continue turns that into a warning.
 */
import { Writable } from 'node:stream';
import { Exec } from '@kubernetes/client-node';
import type { KubeConfig, V1Pod, V1Status } from '@kubernetes/client-node';
import { MeshbackError, errMessage } from '../errors/index.ts';
import { parseDuration } from '../util/units.ts';
import type { PodHook } from './api.ts';
import { hookContainer } from './mesh.ts';

const OUTPUT_MAX = 64 * 1024;
const DEFAULT_TIMEOUT = '1m';

/** What went wrong, from whatever the client rejected with (an Error, a websocket ErrorEvent, a Status). */
function describe(e: unknown): string {
  if (e instanceof Error) return e.message;
  const o = e as { message?: unknown; error?: { message?: unknown }; type?: unknown; status?: unknown };
  if (typeof o?.message === 'string' && o.message !== '') return o.message;
  if (typeof o?.error?.message === 'string') return o.error.message;
  try {
    return `the exec failed: ${JSON.stringify(e).slice(0, 200)}`;
  } catch {
    return `the exec failed: ${errMessage(e)}`;
  }
}

/** A bounded sink for a hook's output. */
function sink(): { w: Writable; text(): string } {
  let buf = '';
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (buf.length < OUTPUT_MAX) buf += chunk.toString('utf8').slice(0, OUTPUT_MAX - buf.length);
      cb();
    },
  });
  return { w, text: () => buf };
}

/** Runs `command` in `container` of `pod`; resolves with its exit code and output, rejects when it cannot be run. */
export function execInPod(kc: KubeConfig, pod: V1Pod, container: string, command: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  const ns = pod.metadata?.namespace ?? '';
  const name = pod.metadata?.name ?? '';
  const out = sink();
  const err = sink();
  return new Promise((resolve, reject) => {
    let settled = false;
    let ws: { close(): void } | undefined;
    const done = (f: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      f();
    };
    const timer = setTimeout(() => {
      ws?.close();
      done(() => reject(new Error(`no end within ${Math.round(timeoutMs / 1000)} s (the hook's timeout)`)));
    }, timeoutMs);
    const onStatus = (s: V1Status): void => {
      if (s.status === 'Success') return done(() => resolve({ code: 0, stdout: out.text(), stderr: err.text() }));
      const exit = s.details?.causes?.find((c) => c.reason === 'ExitCode')?.message;
      if (exit !== undefined) return done(() => resolve({ code: Number(exit), stdout: out.text(), stderr: err.text() }));
      done(() => reject(new Error(s.message ?? 'the exec failed')));
    };
    new Exec(kc)
      .exec(ns, name, container, command, out.w, err.w, null, false, onStatus)
      .then((socket) => {
        ws = socket;
        socket.on('close', () => setTimeout(() => done(() => reject(new Error('the connection closed before the command reported its exit'))), 200));
        socket.on('error', (e: Error) => done(() => reject(e)));
      })
      .catch((e: unknown) => done(() => reject(new Error(describe(e)))));
  });
}

export interface HookOutcome {
  hook: string;
  pod: string;
  container: string;
  ok: boolean;
  message: string;
}

/**
 * Runs `hooks` (in order) in each pod; throws a HOOK error at the first failure whose onError is
 * Fail (the default) unless `continueOnError` (post hooks after a failure: all of them run).
 */
export async function runPodHooks(kc: KubeConfig, phase: 'pre' | 'post', hooks: PodHook[] | undefined, pods: V1Pod[], o: { continueOnError?: boolean; warn?: (m: string) => void } = {}): Promise<HookOutcome[]> {
  const outcomes: HookOutcome[] = [];
  let first: MeshbackError | undefined;
  for (const [i, h] of (hooks ?? []).entries()) {
    const label = `${phase} hook ${i + 1} (${h.command.join(' ').slice(0, 60)})`;
    for (const pod of pods) {
      const podName = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
      let message: string;
      let ok = false;
      try {
        // a name, checked against the pod: never a position, never a proxy or a native sidecar
        const container = hookContainer(pod, h.container);
        const r = await execInPod(kc, pod, container, h.command, parseDuration(h.timeout ?? DEFAULT_TIMEOUT, 'timeout'));
        ok = r.code === 0;
        const tail = r.stderr.trim().split('\n').at(-1) ?? '';
        message = ok ? `${label} in ${podName} container ${container}: ok` : `${label} in ${podName} container ${container} exited ${r.code}${tail !== '' ? `: ${tail.slice(0, 200)}` : ''}: fix the hook, or set onError: Continue`;
      } catch (e) {
        message = `${label} in ${podName} container ${h.container}: ${errMessage(e).split('\n')[0]!.slice(0, 300)}`;
      }
      outcomes.push({ hook: label, pod: podName, container: h.container, ok, message });
      if (ok) continue;
      if (h.onError === 'Continue' || o.continueOnError === true) {
        o.warn?.(message);
        first ??= o.continueOnError === true && h.onError !== 'Continue' ? new MeshbackError('HOOK', message) : undefined;
        continue;
      }
      throw new MeshbackError('HOOK', message);
    }
  }
  if (first !== undefined) throw first;
  return outcomes;
}
