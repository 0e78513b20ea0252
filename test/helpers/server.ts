/** A `meshback server --json` in a subprocess for end-to-end tests: its events as they come, its exit. */
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import * as path from 'node:path';
import { BIN } from './cli.ts';

export interface ServerEvent {
  message_type: string;
  event?: string;
  policy?: string;
  ok?: boolean;
  reason?: string;
  code?: string;
  message?: string;
  snapshot_id?: string;
  abandoned?: string[];
}

/** servers started and not yet exited: a test's `after` kills them, so a failed test leaves none running */
export const liveServers = new Set<{ kill(sig: NodeJS.Signals): boolean }>();

export function startServer(args: string[], env: Record<string, string>, maxMs = 60_000) {
  const p = spawn(BIN, ['server', '--json', '--listen', '127.0.0.1:0', ...args], { env: { ...process.env, MESHBACK_TEST_SCRYPT_N: '1024', MESHBACK_CACHE_DIR: path.join(os.tmpdir(), 'meshback-test-cache'), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const events: ServerEvent[] = [];
  let buf = '';
  let stderr = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) if (l.startsWith('{')) events.push(JSON.parse(l) as ServerEvent);
  });
  p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<number | null>((res) => p.on('exit', (code) => res(code)));
  const killer = setTimeout(() => p.kill('SIGKILL'), maxMs);
  liveServers.add(p);
  void exited.then(() => {
    clearTimeout(killer);
    liveServers.delete(p);
  });
  return {
    events,
    stderr: () => stderr,
    exited,
    kill: (sig: NodeJS.Signals) => p.kill(sig),
    /** waits (at most `ms`) until `pred` holds for the events so far */
    async waitFor(pred: (evs: ServerEvent[]) => boolean, ms = 20_000): Promise<void> {
      const t0 = performance.now();
      while (!pred(events)) {
        if (performance.now() - t0 > ms) throw new Error(`timed out; events: ${JSON.stringify(events)}; stderr: ${stderr}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
