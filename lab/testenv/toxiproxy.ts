/** toxiproxy on 127.0.0.1: network faults (latency, reset_peer, bandwidth, timeout, slicer, an outage) between a client and a server. */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { binary } from './build.ts';
import { TestenvError } from './errors.ts';
import { freePort, launch, waitFor, type Proc } from './proc.ts';
import type { StartOpts } from './s3.ts';

export interface Toxic {
  name?: string;
  type: 'latency' | 'bandwidth' | 'slow_close' | 'timeout' | 'reset_peer' | 'slicer' | 'limit_data' | 'down';
  stream?: 'upstream' | 'downstream';
  toxicity?: number;
  attributes?: Record<string, number>;
}

export interface ToxiproxyEnv {
  /** the API address, http://127.0.0.1:PORT */
  url: string;
  dir: string;
  procs: Proc[];
  env: Record<string, string>;
  /** a proxy listening on 127.0.0.1 (a free port) forwarding to `upstream` (host:port); returns its listen address */
  createProxy(name: string, upstream: string): Promise<string>;
  addToxic(proxy: string, toxic: Toxic): Promise<void>;
  removeToxic(proxy: string, toxic: string): Promise<void>;
  deleteProxy(name: string): Promise<void>;
  /** disabled: the proxy closes its connections and refuses new ones (an outage); enabled: it listens again */
  setEnabled(name: string, enabled: boolean): Promise<void>;
  stop(): Promise<void>;
}

async function api(url: string, method: string, p: string, body?: unknown): Promise<unknown> {
  const r = await fetch(`${url}${p}`, { method, headers: { 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await r.text();
  if (!r.ok) throw new TestenvError(`toxiproxy ${method} ${p} answered ${r.status}: ${text.slice(0, 200)}`, 'check the proxy and toxic given');
  return text === '' ? undefined : JSON.parse(text);
}

export async function startToxiproxy(o: StartOpts = {}): Promise<ToxiproxyEnv> {
  const mode = o.mode ?? 'owned';
  const server = await binary('toxiproxy-server', o.log);
  const dir = o.dir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'meshback-testenv-toxiproxy-')));
  await fsp.mkdir(dir, { recursive: true });
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = launch({ name: 'toxiproxy-server', cmd: server, args: ['-host', '127.0.0.1', '-port', String(port)], log: path.join(dir, 'toxiproxy.log'), mode, ...(mode === 'owned' ? { cleanup: dir } : {}) });
  const stop = async (): Promise<void> => {
    await proc.stop();
    if (o.dir === undefined) await fsp.rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('toxiproxy to answer', 15_000, [proc], async () => ((await fetch(`${url}/version`)).ok ? true : undefined));
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    url,
    dir,
    procs: [proc],
    env: { TOXIPROXY_URL: url, MESHBACK_TEST_TOXIPROXY_URL: url },
    createProxy: async (name, upstream) => {
      const listen = `127.0.0.1:${await freePort()}`;
      await api(url, 'POST', '/proxies', { name, listen, upstream, enabled: true });
      return listen;
    },
    addToxic: async (proxy, toxic) => {
      await api(url, 'POST', `/proxies/${encodeURIComponent(proxy)}/toxics`, { stream: 'downstream', toxicity: 1, attributes: {}, ...toxic });
    },
    removeToxic: async (proxy, toxic) => {
      await api(url, 'DELETE', `/proxies/${encodeURIComponent(proxy)}/toxics/${encodeURIComponent(toxic)}`);
    },
    deleteProxy: async (name) => {
      await api(url, 'DELETE', `/proxies/${encodeURIComponent(name)}`);
    },
    setEnabled: async (name, enabled) => {
      await api(url, 'POST', `/proxies/${encodeURIComponent(name)}`, { enabled });
    },
    stop,
  };
}
