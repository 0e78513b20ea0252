/**
 * captureEnvoyAdmin's success path against a STAND-IN for the API server's pods/portforward and the
 * kubelet behind it (no kubelet runs in the test environment: kwok nodes cannot port-forward). The
 * stand-in speaks the same websocket protocol (channel.k8s.io framing: channel byte, the port number
 * first on the data and error channels) and connects each stream to a stand-in Envoy admin server on
 * 127.0.0.1, as the kubelet connects it to the pod's port; a refused connection is reported on the
 * error channel, as the kubelet does.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { captureEnvoyAdmin } from '../../src/k8s/mesh.ts';

/** the part of the `ws` package (client-node's websocket library, no types of its own here) the stand-in uses */
interface Ws {
  send(d: Buffer): void;
  close(): void;
  on(ev: 'message', f: (m: Buffer) => void): void;
  on(ev: 'close', f: () => void): void;
}
type WsServer = new (o: { server: http.Server; handleProtocols: () => string }) => { on(ev: 'connection', f: (ws: Ws, req: http.IncomingMessage) => void): void };
const wsModule = 'ws';
const { WebSocketServer } = (await import(wsModule)) as { WebSocketServer: WsServer };

const BIG = JSON.stringify({ configs: Array.from({ length: 20_000 }, (_, i) => ({ '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump', name: `outbound|80||svc-${i}.shop.svc.cluster.local` })) });
let envoy: http.Server;
let api: http.Server;
let envoyPort = 0;
let forwardTo = 0;
const paths: string[] = [];

before(async () => {
  envoy = http.createServer((req, res) => {
    paths.push(`${req.method} ${req.url}`);
    if (req.url === '/config_dump') {
      // chunked, in pieces, as Envoy streams a large dump
      res.writeHead(200, { 'content-type': 'application/json' });
      for (let i = 0; i < BIG.length; i += 65536) res.write(BIG.slice(i, i + 65536));
      res.end();
    } else if (req.url === '/clusters') res.end('outbound|80||reviews.shop.svc.cluster.local::10.244.0.7:9080::health_flags::healthy\n');
    else if (req.url === '/stats') res.end('cluster_manager.active_clusters: 42\nserver.live: 1\n');
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => envoy.listen(0, '127.0.0.1', r));
  envoyPort = (envoy.address() as AddressInfo).port;
  api = http.createServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ server: api, handleProtocols: () => 'v4.channel.k8s.io' });
  wss.on('connection', (ws, req) => {
    const port = Number(new URL(req.url ?? '', 'http://x').searchParams.get('ports'));
    const head = (ch: number) => Buffer.from([ch, port & 0xff, port >> 8]);
    ws.send(head(0));
    ws.send(head(1));
    const sock = net.connect(forwardTo, '127.0.0.1');
    sock.on('data', (d: Buffer) => ws.send(Buffer.concat([Buffer.from([0]), d])));
    sock.on('error', (e) => ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(`an error occurred forwarding ${port} -> ${port}: error forwarding port ${port} to pod 1234, uid : ${e.message}`)])));
    sock.on('close', () => ws.close());
    ws.on('message', (m: Buffer) => {
      if (m[0] === 0) sock.write(m.subarray(1));
    });
    ws.on('close', () => sock.destroy());
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
});
after(async () => {
  await new Promise((r) => envoy.close(r));
  api.closeAllConnections();
  await new Promise((r) => api.close(r));
});

function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'stand-in', server: `http://127.0.0.1:${(api.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'c', cluster: 'stand-in', user: 'u' }],
    currentContext: 'c',
  });
  return kc;
}
const pod: V1Pod = { metadata: { name: 'reviews-1', namespace: 'shop' }, spec: { containers: [{ name: 'reviews', image: 'r' }, { name: 'istio-proxy', image: 'p' }] } };

test('k8s envoy (port-forward stand-in): config_dump, clusters and stats through pods/portforward, a chunked 1 MB dump intact', async () => {
  forwardTo = envoyPort;
  const r = await captureEnvoyAdmin(kubeConfig(), pod, { timeoutMs: 10_000 });
  assert.deepEqual(r.warnings, []);
  assert.deepEqual(r.files.map((f) => f.path), ['k8s/envoy/reviews-1/config_dump.json', 'k8s/envoy/reviews-1/clusters.txt', 'k8s/envoy/reviews-1/stats.txt']);
  assert.equal(r.files[0]!.content.toString('utf8'), BIG);
  assert.match(r.files[1]!.content.toString('utf8'), /reviews\.shop\.svc\.cluster\.local/);
  assert.equal(r.files[2]!.content.toString('utf8'), 'cluster_manager.active_clusters: 42\nserver.live: 1\n');
  assert.deepEqual(paths, ['GET /config_dump', 'GET /clusters', 'GET /stats']);
});

test('k8s envoy (port-forward stand-in): nothing listening on 15000 is a warning with the error the kubelet reported', async () => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  forwardTo = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  const t0 = Date.now();
  const r = await captureEnvoyAdmin(kubeConfig(), pod, { timeoutMs: 10_000 });
  assert.deepEqual(r.files, []);
  assert.match(r.warnings[0]!, /^Envoy admin state of pod shop\/reviews-1 not captured \(\/config_dump\): the API server could not forward port 15000 of the pod \(an error occurred forwarding 15000 -> 15000: .*ECONNREFUSED.*\); the backup goes on without it$/);
  assert.ok(Date.now() - t0 < 5000, 'at once, not after the timeout');
});
