/**
 * `meshback k8s hold`: what the helper pod's container runs (src/k8s/pods.ts). It holds nothing
 * itself: the kubelet keeps the pod's volume mounted while it runs, and the agent on the node reads
 * or writes the volume there. It sleeps until SIGTERM or SIGINT (the pod is deleted, or its
 * activeDeadlineSeconds ran out) and then exits 0, so the pod ends Succeeded.
 */
import { EXIT } from '../exit.ts';
import { setInterruptHandler } from '../signals.ts';
import type { Signal } from '../signals.ts';

/** Sleeps until SIGTERM/SIGINT (or `signal` aborts), then resolves EXIT.OK. */
export async function k8sHold(signal?: AbortSignal): Promise<number> {
  let done: (() => void) | undefined;
  const ended = new Promise<void>((resolve) => (done = resolve));
  // an interval keeps the event loop alive (a bare pending promise would let node exit at once)
  const alive = setInterval(() => undefined, 1 << 30);
  setInterruptHandler((_sig: Signal) => done?.());
  const onAbort = (): void => done?.();
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted === true) done?.();
  try {
    await ended;
    return EXIT.OK;
  } finally {
    clearInterval(alive);
    signal?.removeEventListener('abort', onAbort);
    setInterruptHandler(undefined);
  }
}
