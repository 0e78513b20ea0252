/**
 * Deterministic test-data generators for end-to-end tests and benchmarks.
 *
 *  - generateMeshVolume: a realistic tree shaped like one Kubernetes node's
 *    service-mesh volumes (Envoy access logs, config dumps, metrics, certs,
 *    random data blobs, many small files).
 *  - generateTrickyTree: file-system edge cases a backup tool must preserve.
 *  - mutateVolume: a deterministic "day of changes" applied to a tree.
 *
 * Determinism: every file draws from its own generator derived from
 * (seed, role, index), and all metadata (modes, mtimes, dir mtimes) is set
 * explicitly, so the output does not depend on write order, concurrency or the
 * umask. The one caveat is gzip: the rotated `*.gz` logs are as deterministic
 * as the zlib build (identical on one machine/Node build, but zlib variants
 * with CPU-specific match finders may emit different, equally valid streams).
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Rng, deriveSeed } from './rng.ts';
import { walk } from './compare.ts';
import { parallel } from '../../src/util/parallel.ts';
import type { WalkItem } from './compare.ts';

export interface GenStats {
  /** Non-directory entries created (regular files, counting every hard-link name, and symlinks). */
  files: number;
  /** Directories created below the root. */
  dirs: number;
  /** Sum of the apparent sizes of the regular files, each inode counted once. */
  bytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
const HOUR = 3600;
const DAY = 24 * HOUR;
/** 2024-03-01T00:00:00Z in seconds: base of all generated timestamps. */
const BASE_TIME = Date.UTC(2024, 2, 1) / 1000;

// ---------------------------------------------------------------------------
// Small shared helpers
// ---------------------------------------------------------------------------

/** A timestamp (seconds) with a random microsecond fraction, so tests catch ms-truncated mtimes. */
function withMicros(rng: Rng, sec: number): number {
  return Math.floor(sec) + rng.int(1, 999_999) / 1e6;
}

/**
 * Set atime = mtime = `sec` (seconds since the epoch, µs fraction allowed).
 * Node treats negative numeric times as "now", so pre-1970 times go through a
 * Date (millisecond precision).
 */
async function setTimes(p: string | Buffer, sec: number, symlink = false): Promise<void> {
  const t = sec < 0 ? new Date(Math.round(sec * 1000)) : sec;
  if (symlink) await fs.lutimes(p, t, t);
  else await fs.utimes(p, t, t);
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}

/**
 * Creates directories and regular files below a root, tracking GenStats and
 * deferring directory mtimes to `finish()` (creating entries changes them).
 */
class TreeWriter {
  readonly root: string;
  readonly stats: GenStats = { files: 0, dirs: 0, bytes: 0 };
  readonly #dirTime: (rel: string) => number;
  readonly #dirs = new Map<string, Promise<void>>();
  readonly #times: { p: string | Buffer; depth: number; t: number }[] = [];

  /** @param dirTime mtime (seconds) for each created directory, by relative path ('' = root). */
  constructor(root: string, dirTime: (rel: string) => number) {
    this.root = root;
    this.#dirTime = dirTime;
  }

  abs(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }

  /** mkdir -p with mode 0755 (idempotent, safe under concurrency). */
  mkdir(rel: string, mode = 0o755): Promise<void> {
    let p = this.#dirs.get(rel);
    if (!p) {
      const parent = rel === '' ? null : path.dirname(rel) === '.' ? '' : path.dirname(rel);
      p = (async () => {
        if (parent !== null) await this.mkdir(parent);
        await fs.mkdir(this.abs(rel), { recursive: true });
        if (rel !== '') await fs.chmod(this.abs(rel), mode); // leave the caller's root mode alone
      })();
      this.#dirs.set(rel, p);
      if (rel !== '') this.stats.dirs++;
      this.dirTimeLater(this.abs(rel), rel === '' ? 0 : rel.split('/').length, this.#dirTime(rel));
    }
    return p;
  }

  /** Register a directory (also one created by hand) whose mtime is set in finish(). */
  dirTimeLater(p: string | Buffer, depth: number, t: number): void {
    this.#times.push({ p, depth, t });
  }

  /**
   * Write a file from a buffer/string or a sequence of chunks, then set mode
   * and mtime (`mtime` may be a function, evaluated after the data is written).
   * Returns the number of bytes written.
   */
  async write(
    rel: string,
    data: string | Uint8Array | Iterable<string | Uint8Array>,
    mtime: number | (() => number),
    mode = 0o644,
  ): Promise<number> {
    await this.mkdir(path.dirname(rel) === '.' ? '' : path.dirname(rel));
    const abs = this.abs(rel);
    let size = 0;
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await fs.writeFile(abs, data);
      size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    } else {
      const fh = await fs.open(abs, 'w');
      try {
        for (const chunk of data) {
          const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
          await fh.write(buf);
          size += buf.length;
        }
      } finally {
        await fh.close();
      }
    }
    await fs.chmod(abs, mode);
    await setTimes(abs, typeof mtime === 'function' ? mtime() : mtime);
    this.stats.files++;
    this.stats.bytes += size;
    return size;
  }

  /** Set all directory mtimes, deepest first (so setting a child does not disturb its parent). */
  async finish(): Promise<GenStats> {
    await Promise.all(this.#dirs.values());
    const order = [...this.#times].sort((a, b) => b.depth - a.depth);
    for (let i = 0; i < order.length; ) {
      // Same-depth directories do not affect each other: do them concurrently.
      let j = i;
      while (j < order.length && order[j]?.depth === order[i]?.depth) j++;
      await parallel(order.slice(i, j), 32, (d) => setTimes(d.p, d.t));
      i = j;
    }
    return this.stats;
  }
}

// ---------------------------------------------------------------------------
// Realistic content: mesh topology, Envoy access logs, config dumps, metrics
// ---------------------------------------------------------------------------

export interface Service {
  name: string;
  port: number;
  grpc: boolean;
  paths: string[];
}

export const SERVICES: Service[] = [
  { name: 'productpage', port: 9080, grpc: false, paths: ['/productpage', '/api/v1/products', '/api/v1/products/{id}', '/api/v1/products/{id}/reviews', '/static/bootstrap/css/bootstrap.min.css', '/login', '/logout'] },
  { name: 'reviews', port: 9080, grpc: false, paths: ['/reviews/{id}', '/health'] },
  { name: 'ratings', port: 9080, grpc: false, paths: ['/ratings/{id}', '/health'] },
  { name: 'details', port: 9080, grpc: false, paths: ['/details/{id}', '/health'] },
  { name: 'frontend', port: 8080, grpc: false, paths: ['/', '/cart', '/product/{sku}', '/setCurrency', '/cart/checkout', '/static/img/products/{sku}.jpg', '/_healthz'] },
  { name: 'cartservice', port: 7070, grpc: true, paths: ['/hipstershop.CartService/GetCart', '/hipstershop.CartService/AddItem', '/hipstershop.CartService/EmptyCart'] },
  { name: 'checkoutservice', port: 5050, grpc: true, paths: ['/hipstershop.CheckoutService/PlaceOrder'] },
  { name: 'paymentservice', port: 50051, grpc: true, paths: ['/hipstershop.PaymentService/Charge'] },
  { name: 'currencyservice', port: 7000, grpc: true, paths: ['/hipstershop.CurrencyService/Convert', '/hipstershop.CurrencyService/GetSupportedCurrencies'] },
  { name: 'shippingservice', port: 50051, grpc: true, paths: ['/hipstershop.ShippingService/GetQuote', '/hipstershop.ShippingService/ShipOrder'] },
  { name: 'recommendationservice', port: 8080, grpc: true, paths: ['/hipstershop.RecommendationService/ListRecommendations'] },
  { name: 'adservice', port: 9555, grpc: true, paths: ['/hipstershop.AdService/GetAds'] },
  { name: 'auth', port: 8443, grpc: false, paths: ['/oauth2/token', '/oauth2/authorize', '/.well-known/jwks.json', '/userinfo', '/healthz/ready'] },
  { name: 'inventory', port: 8080, grpc: false, paths: ['/api/v2/stock/{sku}', '/api/v2/stock', '/api/v2/reservations/{id}', '/metrics'] },
];

const NAMESPACES = ['default', 'bookinfo', 'shop', 'payments', 'identity', 'platform', 'team-a', 'team-b'];

const USER_AGENTS = [
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Safari/605.1.15',
  'curl/8.5.0',
  'Go-http-client/1.1',
  'python-requests/2.31.0',
  'okhttp/4.12.0',
  'grpc-go/1.62.0',
  'grpc-java-netty/1.61.1',
  'kube-probe/1.29',
  'Prometheus/2.50.1',
];

const METHODS: [string, number][] = [['GET', 70], ['POST', 16], ['PUT', 6], ['DELETE', 3], ['PATCH', 2], ['HEAD', 2], ['OPTIONS', 1]];

/** [status, response flags, response code details], weight */
const STATUSES: [[number, string, string], number][] = [
  [[200, '-', 'via_upstream'], 800],
  [[201, '-', 'via_upstream'], 30],
  [[204, '-', 'via_upstream'], 20],
  [[301, '-', 'via_upstream'], 5],
  [[304, '-', 'via_upstream'], 20],
  [[400, '-', 'via_upstream'], 15],
  [[401, '-', 'via_upstream'], 10],
  [[403, '-', 'rbac_access_denied_matched_policy[none]'], 4],
  [[404, '-', 'via_upstream'], 30],
  [[429, '-', 'via_upstream'], 5],
  [[500, '-', 'via_upstream'], 10],
  [[502, '-', 'via_upstream'], 3],
  [[503, 'UF', 'upstream_reset_before_response_started{connection_failure}'], 5],
  [[503, 'UO', 'overflow'], 2],
  [[503, 'URX', 'via_upstream'], 2],
  [[503, 'NR', 'route_not_found'], 1],
  [[504, 'UT', 'response_timeout'], 3],
  [[0, 'DC', 'downstream_remote_disconnect'], 3],
];

const WORDS = (
  'mesh sidecar envoy istio proxy upstream downstream cluster listener route endpoint policy secret ' +
  'certificate rotation workload namespace service account token identity mutual tls handshake retry ' +
  'timeout circuit breaker outlier detection health check readiness liveness pod node volume snapshot ' +
  'backup restore checksum manifest chunk index compaction segment replica leader follower quorum ' +
  'latency throughput request response header payload cache eviction shard partition offset commit'
).split(' ');

export interface Pod {
  svc: Service;
  ns: string;
  version: string;
  ip: string;
  /** Folder name: <service>-<n> */
  dirName: string;
}

function fqdn(p: Pod): string {
  return `${p.svc.name}.${p.ns}.svc.cluster.local`;
}

const clusterIps = new Map<string, string>();

/** Stable ClusterIP for a service (hash of its name). */
function clusterIp(p: Pod): string {
  const host = fqdn(p);
  let ip = clusterIps.get(host);
  if (!ip) {
    const r = new Rng(deriveSeed(0, 'clusterip', host));
    ip = `10.96.${r.int(0, 255)}.${r.int(1, 254)}`;
    clusterIps.set(host, ip);
  }
  return ip;
}

export function makePod(rng: Rng, svc: Service, n: number): Pod {
  return {
    svc,
    ns: rng.pick(NAMESPACES),
    version: `v${rng.int(1, 3)}`,
    ip: `10.244.${rng.int(0, 31)}.${rng.int(2, 254)}`,
    dirName: `${svc.name}-${n}`,
  };
}

function expandPath(rng: Rng, tmpl: string): string {
  let p = tmpl.replace('{id}', String(rng.int(0, 99999))).replace('{sku}', rng.hex(10).toUpperCase());
  if (!p.includes('/hipstershop.') && rng.chance(0.15)) p += `?page=${rng.int(1, 40)}&session=${rng.hex(16)}`;
  return p;
}

function uuid(rng: Rng): string {
  const h = rng.hex(32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}`;
}

/** Roughly log-normal duration in ms. */
function durationMs(rng: Rng): number {
  const g = Math.sqrt(-2 * Math.log(1 - rng.float())) * Math.cos(2 * Math.PI * rng.float());
  return Math.max(0, Math.round(Math.exp(2.3 + 1.1 * g)));
}

/**
 * Envoy access-log lines in Istio's default text format. Timestamps advance
 * with exponential gaps (mean `gapMs`); `t` is the time of the last line (ms).
 */
export class AccessLog {
  t: number;
  readonly #rng: Rng;
  readonly #pod: Pod;
  readonly #peers: Pod[];
  readonly #gapMs: number;

  constructor(rng: Rng, pod: Pod, peers: Pod[], startMs: number, gapMs: number) {
    this.#rng = rng;
    this.#pod = pod;
    this.#peers = peers;
    this.t = startMs;
    this.#gapMs = Math.max(1, gapMs);
  }

  /** Complete lines totalling at least `bytes` bytes (overshoot < one line). */
  chunk(bytes: number): Buffer {
    // Writing each (ASCII) line straight into a buffer is ~30% faster than join().
    let buf = Buffer.allocUnsafe(Math.max(0, bytes) + 2048);
    let n = 0;
    while (n < bytes) {
      const l = this.line();
      if (n + l.length > buf.length) buf = Buffer.concat([buf.subarray(0, n), Buffer.allocUnsafe(l.length + 2048)]);
      n += buf.write(l, n, 'latin1');
    }
    return buf.subarray(0, n);
  }

  line(): string {
    const r = this.#rng;
    const me = this.#pod;
    this.t += Math.max(1, Math.round(-Math.log(1 - r.float()) * this.#gapMs));
    const inbound = r.chance(0.55);
    const peer = r.pick(this.#peers);
    const target = inbound ? me : peer;
    const svc = target.svc;
    const [code, flags, details] = r.weighted(STATUSES);
    const method = svc.grpc ? 'POST' : r.weighted(METHODS);
    const proto = svc.grpc ? 'HTTP/2' : r.chance(0.75) ? 'HTTP/1.1' : 'HTTP/2';
    const reqPath = expandPath(r, r.pick(svc.paths));
    const rx = method === 'GET' || method === 'HEAD' || method === 'OPTIONS' ? 0 : r.int(20, 8000);
    const tx = code === 204 || code === 304 || code === 0 ? 0 : Math.round(Math.exp(r.float() * 11)) + 15;
    const dur = durationMs(r);
    const upTime = code === 0 || flags !== '-' ? '-' : String(Math.max(0, dur - r.int(0, 2)));
    const ua = svc.grpc ? r.pick(USER_AGENTS.slice(6, 8)) : r.pick(USER_AGENTS);
    const eph = () => r.int(32768, 60999);
    const port = svc.port;
    const host = fqdn(target);
    const authority = inbound ? `${svc.name}:${port}` : `${host}:${port}`;
    const upHost = `${target.ip}:${port}`;
    let cluster, upLocal, downLocal, downRemote, sni, route;
    if (inbound) {
      cluster = `inbound|${port}||`;
      upLocal = `127.0.0.6:${eph()}`;
      downLocal = `${me.ip}:${port}`;
      downRemote = `${peer.ip}:${eph()}`;
      sni = `outbound_.${port}_._.${host}`;
      route = 'default';
    } else {
      cluster = `outbound|${port}||${host}`;
      upLocal = `${me.ip}:${eph()}`;
      downLocal = `${clusterIp(target)}:${port}`;
      downRemote = `${me.ip}:${eph()}`;
      sni = '-';
      route = r.chance(0.7) ? 'default' : `${host}:${port}`;
    }
    const xff = r.chance(0.2) ? `${r.int(1, 223)}.${r.int(0, 255)}.${r.int(0, 255)}.${r.int(1, 254)}` : '-';
    const tfr = flags === 'UF' ? 'delayed_connect_error:_111' : '-';
    const ts = new Date(this.t).toISOString();
    return (
      `[${ts}] "${method} ${reqPath} ${proto}" ${code} ${flags} ${details} - "${tfr}" ${rx} ${tx} ${dur} ${upTime} ` +
      `"${xff}" "${ua}" "${uuid(r)}" "${authority}" "${upHost}" ${cluster} ${upLocal} ${downLocal} ${downRemote} ${sni} ${route}\n`
    );
  }
}

const ACCESS_LOG_FORMAT =
  '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% ' +
  '%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% ' +
  '%BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ' +
  '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% ' +
  '%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n';

const sds = (name: string) => ({
  name,
  sds_config: {
    api_config_source: {
      api_type: 'GRPC',
      grpc_services: [{ envoy_grpc: { cluster_name: 'sds-grpc' } }],
      set_node_on_first_message_only: true,
      transport_api_version: 'V3',
    },
    resource_api_version: 'V3',
  },
});

/** An Envoy /config_dump-style JSON document of about `target` bytes. */
export function configDump(rng: Rng, me: Pod, peers: Pod[], target: number, atMs: number): string {
  const iso = (ms: number) => new Date(ms).toISOString();
  const version = () => `${iso(atMs - rng.int(0, 86_400_000))}/${rng.int(1, 400)}`;
  const nodeId = `sidecar~${me.ip}~${me.dirName}-${rng.hex(9)}-${rng.hex(5)}.${me.ns}~${me.ns}.svc.cluster.local`;
  const bootstrap = {
    '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump',
    bootstrap: {
      node: {
        id: nodeId,
        cluster: `${me.svc.name}.${me.ns}`,
        metadata: {
          APP_CONTAINERS: me.svc.name,
          CLUSTER_ID: 'Kubernetes',
          ISTIO_VERSION: '1.21.0',
          LABELS: { app: me.svc.name, version: me.version, 'security.istio.io/tlsMode': 'istio' },
          MESH_ID: 'cluster.local',
          NAME: me.dirName,
          NAMESPACE: me.ns,
          SERVICE_ACCOUNT: `${me.svc.name}-sa`,
          WORKLOAD_NAME: `${me.svc.name}-${me.version}`,
        },
        user_agent_name: 'envoy',
        user_agent_build_version: { version: { major_number: 1, minor_number: 29, patch: 1 } },
      },
      static_resources: {
        clusters: ['prometheus_stats', 'agent', 'sds-grpc', 'xds-grpc', 'zipkin'].map((name) => ({
          name,
          type: name === 'zipkin' ? 'STRICT_DNS' : 'STATIC',
          connect_timeout: name === 'xds-grpc' ? '1s' : '0.250s',
          load_assignment: {
            cluster_name: name,
            endpoints: [{ lb_endpoints: [{ endpoint: { address: { pipe: { path: `./etc/istio/proxy/${name}` } } } }] }],
          },
        })),
      },
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 15000 } }, profile_path: '/var/lib/istio/data/envoy.prof' },
      stats_config: { use_all_default_tags: false, stats_tags: [{ tag_name: 'cluster_name', regex: '^cluster\\.((.+?(\\..+?\\.svc\\.cluster\\.local)?)\\.)' }] },
    },
    last_updated: iso(atMs - rng.int(0, 7 * 86_400_000)),
  };
  const clusters: object[] = [];
  const listeners: object[] = [];
  const routes: object[] = [];
  const secrets = ['default', 'ROOTCA'].map((name) => ({
    name,
    version_info: iso(atMs - rng.int(0, 86_400_000)),
    last_updated: iso(atMs - rng.int(0, 86_400_000)),
    secret: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', name, tls_certificate: { certificate_chain: { inline_bytes: rng.bytes(rng.int(600, 1500)).toString('base64') }, private_key: { inline_bytes: '[redacted]' } } },
  }));
  // Size estimate: each item is rendered at nesting depth 4 (8 extra spaces per line).
  const measure = (o: object) => {
    const s = JSON.stringify(o, null, 2);
    let lines = 1;
    for (let i = s.indexOf('\n'); i !== -1; i = s.indexOf('\n', i + 1)) lines++;
    return s.length + lines * 9;
  };
  let size = measure(bootstrap) + measure(secrets) + 600;
  for (let i = 0; size < target; i++) {
    const peer = rng.pick(peers);
    const host = fqdn(peer);
    const port = peer.svc.port;
    const subset = rng.chance(0.5) ? `v${rng.int(1, 3)}` : '';
    const name = `outbound|${port}|${subset}|${host}`;
    let item: object;
    if (i % 3 === 0) {
      item = {
        version_info: version(),
        cluster: {
          '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
          name,
          type: 'EDS',
          eds_cluster_config: { eds_config: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' }, service_name: name },
          connect_timeout: '10s',
          lb_policy: rng.pick(['LEAST_REQUEST', 'ROUND_ROBIN', 'RANDOM']),
          circuit_breakers: { thresholds: [{ max_connections: 4294967295, max_pending_requests: 4294967295, max_requests: 4294967295, max_retries: 4294967295, track_remaining: true }] },
          common_lb_config: { locality_weighted_lb_config: {} },
          metadata: { filter_metadata: { istio: { services: [{ host, name: peer.svc.name, namespace: peer.ns }], default_original_port: port, ...(subset ? { subset } : {}) } } },
          transport_socket_matches: [
            {
              name: 'tlsMode-istio',
              match: { tlsMode: 'istio' },
              transport_socket: {
                name: 'envoy.transport_sockets.tls',
                typed_config: {
                  '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
                  common_tls_context: {
                    tls_params: { tls_minimum_protocol_version: 'TLSv1_2', tls_maximum_protocol_version: 'TLSv1_3' },
                    alpn_protocols: ['istio-peer-exchange', 'istio'],
                    tls_certificate_sds_secret_configs: [sds('default')],
                    combined_validation_context: {
                      default_validation_context: { match_subject_alt_names: [{ exact: `spiffe://cluster.local/ns/${peer.ns}/sa/${peer.svc.name}-sa` }] },
                      validation_context_sds_secret_config: sds('ROOTCA'),
                    },
                  },
                  sni: `outbound_.${port}_.${subset}_.${host}`,
                },
              },
            },
            { name: 'tlsMode-disabled', match: {}, transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer' } } },
          ],
        },
        last_updated: iso(atMs - rng.int(0, 86_400_000)),
      };
      clusters.push(item);
    } else if (i % 3 === 1) {
      const addr = clusterIp(peer);
      item = {
        name: `${addr}_${port}`,
        active_state: {
          version_info: version(),
          listener: {
            '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
            name: `${addr}_${port}`,
            address: { socket_address: { address: addr, port_value: port } },
            filter_chains: [
              {
                filters: [
                  {
                    name: 'envoy.filters.network.http_connection_manager',
                    typed_config: {
                      '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                      stat_prefix: `outbound_${addr}_${port}`,
                      rds: { config_source: { ads: {}, initial_fetch_timeout: '0s', resource_api_version: 'V3' }, route_config_name: `${host}:${port}` },
                      http_filters: ['istio.metadata_exchange', 'envoy.filters.http.grpc_stats', 'istio.alpn', 'envoy.filters.http.fault', 'envoy.filters.http.cors', 'istio.stats', 'envoy.filters.http.router'].map((f) => ({ name: f, typed_config: { '@type': `type.googleapis.com/udpa.type.v1.TypedStruct`, type_url: `type.googleapis.com/${f}` } })),
                      tracing: { client_sampling: { value: 100 }, random_sampling: { value: 1 }, overall_sampling: { value: 100 } },
                      access_log: [{ name: 'envoy.access_loggers.file', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog', path: '/dev/stdout', log_format: { text_format_source: { inline_string: ACCESS_LOG_FORMAT } } } }],
                      use_remote_address: false,
                      upgrade_configs: [{ upgrade_type: 'websocket' }],
                      stream_idle_timeout: '0s',
                      normalize_path: true,
                      request_id_extension: { typed_config: { '@type': 'type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig', use_request_id_for_trace_sampling: true } },
                      path_with_escaped_slashes_action: 'KEEP_UNCHANGED',
                    },
                  },
                ],
              },
            ],
            traffic_direction: 'OUTBOUND',
            bind_to_port: false,
          },
          last_updated: iso(atMs - rng.int(0, 86_400_000)),
        },
      };
      listeners.push(item);
    } else {
      item = {
        version_info: version(),
        route_config: {
          '@type': 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
          name: `${host}:${port}`,
          virtual_hosts: [
            {
              name: `${host}:${port}`,
              domains: [host, `${peer.svc.name}.${peer.ns}.svc`, `${peer.svc.name}.${peer.ns}`, clusterIp(peer)],
              routes: [
                {
                  name: 'default',
                  match: { prefix: '/' },
                  route: { cluster: `outbound|${port}||${host}`, timeout: '0s', retry_policy: { retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes', num_retries: 2, retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }], host_selection_retry_max_attempts: '5', retriable_status_codes: [503] }, max_grpc_timeout: '0s' },
                  decorator: { operation: `${host}:${port}/*` },
                },
              ],
              include_request_attempt_count: true,
            },
          ],
          validate_clusters: false,
        },
        last_updated: iso(atMs - rng.int(0, 86_400_000)),
      };
      routes.push(item);
    }
    size += measure(item);
  }
  const doc = {
    configs: [
      bootstrap,
      { '@type': 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump', version_info: version(), dynamic_active_clusters: clusters },
      { '@type': 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump', version_info: version(), dynamic_listeners: listeners },
      { '@type': 'type.googleapis.com/envoy.admin.v3.RoutesConfigDump', dynamic_route_configs: routes },
      { '@type': 'type.googleapis.com/envoy.admin.v3.SecretsConfigDump', dynamic_active_secrets: secrets },
    ],
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

const LE_BUCKETS = ['0.5', '1', '5', '10', '25', '50', '100', '250', '500', '1000', '2500', '5000', '10000', '30000', '60000', '300000', '600000', '1800000', '3600000', '+Inf'];

/** Prometheus text-format exposition (Istio + Envoy metrics) of about `target` bytes. */
export function promText(rng: Rng, me: Pod, peers: Pod[], target: number): string {
  const out: string[] = [];
  let size = 0;
  const emit = (s: string) => {
    out.push(s);
    size += s.length;
  };
  const istioLabels = (peer: Pod, code: number) => {
    const src = rng.chance(0.5) ? me : peer;
    const dst = src === me ? peer : me;
    return (
      `connection_security_policy="mutual_tls",destination_app="${dst.svc.name}",destination_canonical_revision="${dst.version}",` +
      `destination_canonical_service="${dst.svc.name}",destination_cluster="Kubernetes",destination_principal="spiffe://cluster.local/ns/${dst.ns}/sa/${dst.svc.name}-sa",` +
      `destination_service="${fqdn(dst)}",destination_service_name="${dst.svc.name}",destination_service_namespace="${dst.ns}",destination_version="${dst.version}",` +
      `destination_workload="${dst.svc.name}-${dst.version}",destination_workload_namespace="${dst.ns}",reporter="${src === me ? 'source' : 'destination'}",` +
      `request_protocol="${dst.svc.grpc ? 'grpc' : 'http'}",response_code="${code}",response_flags="-",source_app="${src.svc.name}",` +
      `source_canonical_revision="${src.version}",source_canonical_service="${src.svc.name}",source_cluster="Kubernetes",` +
      `source_principal="spiffe://cluster.local/ns/${src.ns}/sa/${src.svc.name}-sa",source_version="${src.version}",` +
      `source_workload="${src.svc.name}-${src.version}",source_workload_namespace="${src.ns}"`
    );
  };
  const families = [
    ['istio_requests_total', 'counter', 'Total requests.'],
    ['istio_request_duration_milliseconds', 'histogram', 'Request duration in milliseconds.'],
    ['istio_request_bytes', 'histogram', 'Request body size in bytes.'],
    ['istio_response_bytes', 'histogram', 'Response body size in bytes.'],
    ['envoy_cluster_upstream_rq_total', 'counter', ''],
    ['envoy_cluster_upstream_cx_active', 'gauge', ''],
    ['envoy_cluster_membership_healthy', 'gauge', ''],
    ['envoy_http_downstream_rq_xx', 'counter', ''],
  ] as const;
  for (let round = 0; size < target; round++) {
    const [name, type, help] = families[round % families.length] as (typeof families)[number];
    emit(`# HELP ${name} ${help}\n# TYPE ${name} ${type}\n`);
    const series = rng.int(3, 12);
    for (let s = 0; s < series && size < target; s++) {
      const peer = rng.pick(peers);
      if (name.startsWith('istio_')) {
        const labels = istioLabels(peer, rng.weighted(STATUSES)[0]);
        if (type === 'counter') {
          emit(`${name}{${labels}} ${rng.int(1, 5_000_000)}\n`);
        } else {
          let cum = 0;
          const lines: string[] = [];
          for (const le of LE_BUCKETS) {
            cum += rng.int(0, 5000) * (le === '+Inf' ? 0 : 1);
            lines.push(`${name}_bucket{${labels},le="${le}"} ${cum}\n`);
          }
          lines.push(`${name}_sum{${labels}} ${(cum * rng.float() * 40).toFixed(3)}\n`, `${name}_count{${labels}} ${cum}\n`);
          emit(lines.join(''));
        }
      } else {
        const cluster = `outbound|${peer.svc.port}||${fqdn(peer)}`;
        if (name === 'envoy_http_downstream_rq_xx') {
          for (const cls of ['1', '2', '3', '4', '5']) emit(`${name}{envoy_response_code_class="${cls}",envoy_http_conn_manager_prefix="${cls === '2' ? 'inbound_0.0.0.0' : 'outbound_0.0.0.0'}_${peer.svc.port}"} ${rng.int(0, 900_000)}\n`);
        } else {
          emit(`${name}{cluster_name="${cluster}"} ${type === 'gauge' ? rng.int(0, 64) : rng.int(0, 9_000_000)}\n`);
        }
      }
    }
  }
  return out.join('');
}

/** A PEM block with base64 of `n` random bytes that starts like DER ("MII..."). */
function pem(rng: Rng, label: string, n: number): string {
  const der = Buffer.concat([Buffer.from([0x30, 0x82, (n - 4) >> 8, (n - 4) & 0xff]), rng.bytes(n - 4)]);
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** Words separated by spaces/newlines, exactly `n` bytes (ASCII). */
function words(rng: Rng, n: number): string {
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    const w = rng.pick(WORDS) + (rng.chance(0.08) ? '\n' : ' ');
    parts.push(w);
    len += w.length;
  }
  return parts.join('').slice(0, n);
}

const SMALL_KINDS = ['json', 'yaml', 'txt', 'bin', 'dat'] as const;

/** Content of a small file of exactly `size` bytes, in one of a few styles. */
function smallContent(rng: Rng, kind: (typeof SMALL_KINDS)[number], size: number, name: string): Buffer {
  if (kind === 'bin' || kind === 'dat') return rng.bytes(size);
  let s: string;
  if (kind === 'json') {
    const head = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace: rng.pick(NAMESPACES), resourceVersion: String(rng.int(1000, 9_999_999)), uid: uuid(rng) }, data: {} }).slice(0, -2);
    const tail = '}}\n';
    const pad = Math.max(0, size - head.length - tail.length - 12);
    s = `${head}"notes":"${words(rng, pad).replace(/\n/g, ' ')}"${tail}`;
  } else if (kind === 'yaml') {
    s = `apiVersion: v1\nkind: Secret\nmetadata:\n  name: ${name}\n  namespace: ${rng.pick(NAMESPACES)}\ntype: Opaque\ndata:\n  token: ${rng.bytes(48).toString('base64')}\n# ${words(rng, size)}`;
  } else {
    s = words(rng, size);
  }
  const buf = Buffer.from(s);
  // Pad with spaces / cut to the exact size (content is ASCII, so cutting is safe).
  return buf.length >= size ? buf.subarray(0, size) : Buffer.concat([buf, Buffer.alloc(size - buf.length, 0x20)]);
}

/** Chunks (≤ 4 MiB) of `size` incompressible bytes. */
function* randomChunks(rng: Rng, size: number): Generator<Buffer> {
  for (let off = 0; off < size; off += 4 * MiB) yield rng.bytes(Math.min(4 * MiB, size - off));
}

// ---------------------------------------------------------------------------
// generateMeshVolume
// ---------------------------------------------------------------------------

export interface MeshVolumeOptions {
  /** Approximate total bytes. */
  size: number;
  seed: number;
  /**
   * Number of 1–8 KiB files under `cache/`. Default: about 10% of `size`
   * worth, clamped to 50..3000.
   */
  smallFiles?: number;
}

/**
 * Generate a deterministic tree shaped like one node's service-mesh volumes:
 *
 *   istio-proxy/<service>-<n>/access.log            Envoy access log (current)
 *   istio-proxy/<service>-<n>/access.log.<k>.gz     rotated, gzip-compressed logs
 *   istio-proxy/<service>-<n>/config_dump.json      Envoy config_dump (100s of KiB)
 *   istio-proxy/<service>-<n>/stats.prom            Prometheus text-format metrics
 *   istio-proxy/<service>-<n>/snapshots/...         older config dumps / metrics
 *   istio-proxy/<service>-<n>/certs/*.pem           small PEM files (key.pem is 0600)
 *   data/<kind>/...                                 incompressible random blobs (MiBs)
 *   cache/<service>/shard-<xx>/[objects/]...        many 1–8 KiB files
 *
 * Byte budget (after the small files): ~35% logs, ~10% JSON/metrics, ~45% blobs.
 * `dir` should be empty or not exist. Same seed and size => identical tree
 * (content, modes, file and directory mtimes).
 */
export async function generateMeshVolume(dir: string, opts: MeshVolumeOptions): Promise<GenStats> {
  const { size, seed } = opts;
  const rng = new Rng(deriveSeed(seed, 'mesh-volume'));
  const t0 = BASE_TIME + rng.int(0, 180 * DAY); // start of the volume's history
  const tNow = t0 + 30 * DAY; // "now" for this volume
  const w = new TreeWriter(dir, (rel) => {
    const r = new Rng(deriveSeed(seed, 'dir-mtime', rel));
    return withMicros(r, tNow - r.int(0, 3 * DAY));
  });
  await w.mkdir('');

  // Plan the small files first: their exact sizes are known up front.
  const smallCount = Math.max(0, Math.round(opts.smallFiles ?? clamp(Math.round((size * 0.1) / (4.5 * KiB)), 50, 3000)));
  const smallSizes = Array.from({ length: smallCount }, () => rng.int(KiB, 8 * KiB));
  const smallBytes = smallSizes.reduce((a, b) => a + b, 0);
  const rest = Math.max(0, size - smallBytes);
  const logBudget = (rest * 35) / 90;
  const jsonBudget = (rest * 10) / 90;
  const blobBudget = rest - logBudget - jsonBudget;

  // Sidecars and their budgets (jittered weights, normalised).
  const nPods = clamp(Math.round(size / (16 * MiB)), 3, 64);
  const pods = Array.from({ length: nPods }, (_, i) => makePod(rng, i < SERVICES.length ? (SERVICES[i] as Service) : rng.pick(SERVICES), i));
  const weights = pods.map(() => 0.7 + 0.6 * rng.float());
  const wsum = weights.reduce((a, b) => a + b, 0);

  const tasks: (() => Promise<unknown>)[] = [];
  pods.forEach((pod, i) => {
    const share = (weights[i] as number) / wsum;
    const podSeed = deriveSeed(seed, 'sidecar', i);
    tasks.push(() => writeSidecar(w, pod, pods, podSeed, share * logBudget, share * jsonBudget, t0, tNow));
  });

  // Blobs: a few to tens of MiB each, odd sizes.
  const blobKinds = ['wal', 'snapshots', 'objects', 'index'];
  let blobLeft = Math.round(blobBudget);
  for (let i = 0; blobLeft > 0; i++) {
    let n = Math.min(blobLeft, rng.int(2 * MiB, 24 * MiB) + rng.int(0, 4095));
    if (blobLeft - n < MiB) n = blobLeft; // no tiny leftover blob
    blobLeft -= n;
    const kind = rng.pick(blobKinds);
    const name =
      kind === 'wal' ? `${String(i + 1).padStart(16, '0')}.wal`
      : kind === 'snapshots' ? `snapshot-${i}-${rng.hex(8)}.db`
      : kind === 'objects' ? `${rng.hex(2)}/${rng.hex(38)}.blob`
      : `index-${i}.idx`;
    const blobSeed = deriveSeed(seed, 'blob', i);
    const mtime = withMicros(rng, t0 + rng.int(0, 30 * DAY));
    tasks.push(() => w.write(`data/${kind}/${name}`, randomChunks(new Rng(blobSeed), n), mtime, 0o640));
  }

  const smallTasks = smallSizes.map((n, i) => {
    const group = Math.floor(i / 40);
    const svc = (SERVICES[group % SERVICES.length] as Service).name;
    const sub = i % 5 === 0 ? '/objects' : '';
    const kind = rng.pick(SMALL_KINDS);
    const base = `obj-${String(i).padStart(5, '0')}-${rng.hex(6)}`;
    const rel = `cache/${svc}/shard-${group.toString(16).padStart(2, '0')}${sub}/${base}.${kind}`;
    const fileSeed = deriveSeed(seed, 'small', i);
    const mtime = withMicros(rng, t0 + rng.int(0, 30 * DAY));
    return () => w.write(rel, smallContent(new Rng(fileSeed), kind, n, base), mtime);
  });

  await Promise.all([parallel(tasks, 4, (t) => t()), parallel(smallTasks, 32, (t) => t())]);
  return w.finish();
}

/** One sidecar folder: logs (current + rotated .gz), config dumps, metrics, certs. */
async function writeSidecar(w: TreeWriter, pod: Pod, pods: Pod[], seed: number, logBudget: number, jsonBudget: number, t0: number, tNow: number): Promise<void> {
  const rng = new Rng(seed);
  const base = `istio-proxy/${pod.dirName}`;
  const others = pods.filter((p) => p !== pod);
  const peers = others.length ? others : [pod];

  // Certificates (tiny).
  const certTime = withMicros(rng, t0 - rng.int(1, 20) * DAY);
  await w.write(`${base}/certs/root-cert.pem`, pem(rng, 'CERTIFICATE', rng.int(700, 1100)), certTime);
  await w.write(`${base}/certs/cert-chain.pem`, pem(rng, 'CERTIFICATE', rng.int(900, 1300)) + pem(rng, 'CERTIFICATE', rng.int(700, 1100)), certTime);
  await w.write(`${base}/certs/key.pem`, pem(rng, 'PRIVATE KEY', rng.int(1190, 1220)), certTime, 0o600);

  // Logs: rotated files cover earlier days, access.log the last day.
  // Each file spans about one day; `cursor` keeps the files from overlapping in time.
  const AVG_LINE = 360; // bytes, measured on generated output
  const gapFor = (bytes: number) => (DAY * 1000 * AVG_LINE) / Math.max(bytes, AVG_LINE);
  const nRot = logBudget >= 256 * KiB ? rng.int(1, 3) : 0;
  let left = logBudget;
  let cursor = 0;
  for (let k = nRot; k >= 1; k--) {
    const rawBytes = clamp(logBudget * 0.15, 32 * KiB, 8 * MiB);
    const start = Math.max(cursor, (tNow - (k + 1) * DAY) * 1000);
    const log = new AccessLog(rng.fork(), pod, peers, start, gapFor(rawBytes));
    const gz = gzipSync(log.chunk(rawBytes), { level: 1 });
    left -= await w.write(`${base}/access.log.${k}.gz`, gz, withMicros(rng, log.t / 1000));
    cursor = log.t + 1;
  }
  if (left > 0 || nRot === 0) {
    const bytes = Math.max(0, left);
    const log = new AccessLog(rng.fork(), pod, peers, Math.max(cursor, (tNow - DAY) * 1000), gapFor(bytes));
    function* chunks() {
      for (let done = 0; done < bytes; ) {
        const s = log.chunk(Math.min(MiB, bytes - done));
        done += s.length;
        yield s;
      }
    }
    await w.write(`${base}/access.log`, chunks(), () => withMicros(rng, log.t / 1000)); // mtime = last line
  }

  // Config dumps and metrics.
  let jleft = jsonBudget;
  const dumpSize = Math.min(Math.max(jleft * 0.6, 16 * KiB), rng.int(150 * KiB, 450 * KiB));
  jleft -= await w.write(`${base}/config_dump.json`, configDump(rng, pod, peers, dumpSize, tNow * 1000), withMicros(rng, tNow - rng.int(0, HOUR)));
  if (jleft > 0) {
    const promSize = Math.min(jleft, rng.int(40 * KiB, 160 * KiB));
    jleft -= await w.write(`${base}/stats.prom`, promText(rng, pod, peers, promSize), withMicros(rng, tNow - rng.int(0, 600)));
  }
  let at = tNow;
  for (let i = 0; jleft > 32 * KiB; i++) {
    at -= rng.int(HOUR / 2, 3 * HOUR); // strictly decreasing: unique snapshot names
    const stamp = new Date(at * 1000).toISOString().replace(/[:.]/g, '-');
    const text =
      i % 2 === 0
        ? promText(rng, pod, peers, Math.min(jleft, rng.int(60 * KiB, 250 * KiB)))
        : configDump(rng, pod, peers, Math.min(jleft, rng.int(150 * KiB, 450 * KiB)), at * 1000);
    jleft -= await w.write(`${base}/snapshots/${i % 2 === 0 ? 'stats' : 'config_dump'}-${stamp}.${i % 2 === 0 ? 'prom' : 'json'}`, text, withMicros(rng, at));
  }
}

// ---------------------------------------------------------------------------
// generateTrickyTree
// ---------------------------------------------------------------------------

export interface TrickyTreeOptions {
  seed: number;
  /** Number of small files under many/ (default 3000). */
  smallFiles?: number;
  /** Apparent size of sparse/big-sparse.img (default 256 MiB). */
  sparseSize?: number;
}

/**
 * Generate a tree of file-system edge cases (see the layout comments below):
 * real sparse files, many small files, empty files and dirs, Unicode and
 * non-UTF-8 names, odd characters, symlinks of every flavour, hard links,
 * special permission bits, foreign owners (requires root; skipped otherwise),
 * varied mtimes (µs fractions, epoch 0, pre-1970, post-2038), a large file with
 * mixed content for content-defined chunking, and duplicate large files.
 */
export async function generateTrickyTree(dir: string, opts: TrickyTreeOptions): Promise<GenStats> {
  const { seed } = opts;
  const smallFiles = opts.smallFiles ?? 3000;
  const sparseSize = opts.sparseSize ?? 256 * MiB;
  const rng = new Rng(deriveSeed(seed, 'tricky-tree'));
  const tBase = BASE_TIME - 365 * DAY + rng.int(0, 30 * DAY);
  /** A varied timestamp within ~3 years, with µs fraction. */
  const someTime = (r: Rng = rng) => withMicros(r, tBase + r.int(0, 3 * 365 * DAY));
  const w = new TreeWriter(dir, (rel) => someTime(new Rng(deriveSeed(seed, 'dir-mtime', rel))));
  await w.mkdir('');
  const A = (rel: string) => w.abs(rel);
  const isRoot = process.getuid?.() === 0;

  // --- Plain oddities -----------------------------------------------------
  await w.write('empty.txt', '', someTime()); // empty file
  await w.mkdir('empty-dir'); // empty directory
  await w.mkdir('empty-nested/a/b/c'); // nested chain ending in an empty dir
  await w.mkdir('empty-nested/a/sibling-empty');
  await w.write('.hidden', 'dotfile\n', someTime());

  // --- Sparse files: ftruncate + positioned writes leave real holes --------
  await w.mkdir('sparse');
  {
    const p = A('sparse/big-sparse.img');
    const fh = await fs.open(p, 'w');
    await fh.truncate(sparseSize);
    // A few MiB of data at a few offsets (some unaligned); the tail stays a hole.
    const spots: [number, number][] = [
      [0, 256 * KiB],
      [Math.floor(sparseSize * 0.25) + 1234, MiB],
      [Math.floor(sparseSize * 0.6), 2 * MiB + 517],
      [Math.floor(sparseSize * 0.8) - 4096, 4096],
    ];
    for (const [off, len] of spots) await fh.write(rng.bytes(len), 0, len, off);
    await fh.close();
    await fs.chmod(p, 0o644);
    await setTimes(p, someTime());
    w.stats.files++;
    w.stats.bytes += sparseSize;

    const holeSize = Math.max(MiB, Math.floor(sparseSize / 4 / 4096) * 4096);
    const q = A('sparse/all-hole.img');
    const fh2 = await fs.open(q, 'w');
    await fh2.truncate(holeSize); // only a hole, no data at all
    await fh2.close();
    await fs.chmod(q, 0o644);
    await setTimes(q, someTime());
    w.stats.files++;
    w.stats.bytes += holeSize;
  }

  // --- Many small files in nested dirs --------------------------------------
  const small = Array.from({ length: smallFiles }, (_, i) => {
    const d1 = Math.floor(i / 250);
    const d2 = Math.floor(i / 25) % 10;
    return { rel: `many/d${String(d1).padStart(2, '0')}/s${d2}/f${String(i).padStart(5, '0')}.dat`, seed: deriveSeed(seed, 'tricky-small', i) };
  });
  // Per-file generators: the rest of the tree does not depend on `smallFiles`.
  await parallel(small, 32, async (f) => {
    const r = new Rng(f.seed);
    const n = r.int(1, 4096);
    await w.write(f.rel, r.chance(0.5) ? r.bytes(n) : Buffer.from(words(r, n)), someTime(r));
  });

  // --- Unicode names (NFC and NFD "café" are different names on Linux) -----
  for (const name of ['café.txt', 'cafe\u0301.txt', '日本語.txt', '🚀 launch 🎉.txt', 'Ωmega/ελληνικά.md', 'emoji-dir-📁/naïve résumé.txt', 'ﬁ-ligature-Ⅻ.txt']) {
    await w.write(`unicode/${name}`, `${name}\n${words(rng, rng.int(10, 300))}`, someTime());
  }

  // --- Names that are not valid UTF-8 (Buffer paths) -------------------------
  await w.mkdir('badnames');
  const badDir = Buffer.from(A('badnames'));
  const badName = (bytes: number[]) => Buffer.concat([badDir, Buffer.from('/'), Buffer.from(bytes)]);
  const badFiles: number[][] = [
    [0x66, 0xff, 0xfe, 0x2e, 0x74], // "f\xff\xfe.t"
    [0x63, 0x61, 0x66, 0xe9, 0x2e, 0x74, 0x78, 0x74], // "caf\xe9.txt" (Latin-1 é)
    [0xc3, 0x28, 0x2e, 0x62, 0x69, 0x6e], // invalid 2-byte sequence
    [0xc0, 0xaf, 0x6f, 0x76, 0x65, 0x72, 0x6c, 0x6f, 0x6e, 0x67], // overlong "/"
    [0xed, 0xa0, 0x80, 0x73, 0x75, 0x72], // encoded UTF-16 surrogate
  ];
  /** Write a file at a raw Buffer path (TreeWriter only handles string paths). */
  const writeRaw = async (p: Buffer, data: Buffer) => {
    await fs.writeFile(p, data);
    await fs.chmod(p, 0o644);
    await setTimes(p, someTime());
    w.stats.files++;
    w.stats.bytes += data.length;
  };
  for (const bytes of badFiles) await writeRaw(badName(bytes), rng.bytes(rng.int(1, 2048)));
  {
    const d = badName([0x64, 0x69, 0x72, 0x80, 0x81]); // directory "dir\x80\x81" with a file inside
    await fs.mkdir(d);
    await fs.chmod(d, 0o755);
    w.stats.dirs++;
    w.dirTimeLater(d, 2, someTime());
    await writeRaw(Buffer.concat([d, Buffer.from('/inner.txt')]), Buffer.from('inside a badly named dir\n'));
  }

  // --- Awkward but valid characters ----------------------------------------
  const longName = 'L'.repeat(251) + '.txt'; // 255 bytes: NAME_MAX
  for (const name of ['line\nbreak.txt', 'with spaces.txt', '  leading and trailing  ', 'tab\there', '-rf', 'back\\slash', `quote"s and 'apostrophes'`, '*star?[glob]', 'colon:semi;', longName]) {
    await w.write(`weird/${name}`, `${JSON.stringify(name)}\n`, someTime());
  }
  await w.write(`deep/${Array.from({ length: 30 }, (_, i) => `level-${i}`).join('/')}/bottom.txt`, 'deep\n', someTime());

  // --- Symlinks --------------------------------------------------------------
  await w.write('links/target.txt', 'symlink target\n', someTime());
  const symlinks: [string, string | Buffer][] = [
    ['links/relative', 'target.txt'],
    ['links/relative-up', '../empty.txt'],
    ['links/absolute', '/etc/hostname'],
    ['links/absolute-dangling', '/nonexistent/meshback/path'],
    ['links/dangling', 'does/not/exist'],
    ['links/to-dir', '../unicode'],
    ['links/chain', 'relative'],
    ['links/self-loop', 'self-loop'],
    ['links/bad-utf8-target', Buffer.from([0x74, 0xff, 0x2e, 0x62, 0x69, 0x6e])],
    ['unicode/link-to-café', 'café.txt'],
  ];
  for (const [rel, target] of symlinks) {
    await fs.symlink(target, A(rel));
    await setTimes(A(rel), someTime(), true);
    w.stats.files++;
  }

  // --- Hard links: three names, one inode ------------------------------------
  await w.write('hardlinks/original.bin', rng.bytes(rng.int(64 * KiB, 200 * KiB)), someTime());
  await w.mkdir('hardlinks/sub');
  for (const rel of ['hardlinks/second-name.bin', 'hardlinks/sub/third-name.bin']) {
    await fs.link(A('hardlinks/original.bin'), A(rel));
    w.stats.files++; // a name, but no new bytes: the inode was counted once
  }

  // --- Modes (chown before chmod: chown clears setuid/setgid) ---------------
  const modeFiles: [string, number][] = [
    ['modes/private.key', 0o600],
    ['modes/group-read.conf', 0o640],
    ['modes/run.sh', 0o755],
    ['modes/setuid-helper', 0o4755],
    ['modes/setgid-tool', 0o2755],
    ['modes/read-only.txt', 0o444],
    ['modes/private-dir/inside.txt', 0o600],
  ];
  for (const [rel, mode] of modeFiles) {
    const content = rel.endsWith('.sh') ? '#!/bin/sh\necho hello\n' : `${rel} ${mode.toString(8)}\n`;
    await w.write(rel, content, someTime(), mode);
  }
  await fs.chmod(A('modes/private-dir'), 0o700);
  await w.mkdir('modes/setgid-dir', 0o2775);
  await w.mkdir('modes/sticky-dir', 0o1777);

  // --- Foreign owners -----------------------------------------------------------
  await w.write('owners/u1234.txt', 'owned by 1234:5678\n', someTime());
  await w.write('owners/u4321.txt', 'owned by 4321:8765\n', someTime(), 0o640);
  await w.write('owners/other-dir/file.txt', 'dir owned by 1234:5678\n', someTime());
  await fs.symlink('u1234.txt', A('owners/link-4321'));
  await setTimes(A('owners/link-4321'), someTime(), true);
  w.stats.files++;
  await w.write('owners/setuid-1234', 'setuid file with a foreign owner\n', someTime());
  if (isRoot) {
    await fs.chown(A('owners/u1234.txt'), 1234, 5678);
    await fs.chown(A('owners/u4321.txt'), 4321, 8765);
    await fs.chown(A('owners/other-dir'), 1234, 5678);
    await fs.lchown(A('owners/link-4321'), 4321, 8765);
    await fs.chown(A('owners/setuid-1234'), 1234, 5678);
  }
  await fs.chmod(A('owners/u4321.txt'), 0o640); // re-assert after chown
  await fs.chmod(A('owners/setuid-1234'), 0o4750);

  // --- Special timestamps -------------------------------------------------------
  for (const [rel, t] of [
    ['times/epoch-zero.txt', 0],
    ['times/pre-1970.txt', -14182940.654], // 1969-07-20 (ms precision: see setTimes)
    ['times/after-2038.txt', 4102444800.123456], // 2100-01-01
    ['times/sub-second.txt', BASE_TIME + 0.000001],
  ] as const) {
    await w.write(rel, `${rel}\n`, t);
  }

  // --- A >8 MiB file of mixed content (spans several CDC chunks) -------------
  {
    const target = 12 * MiB + 777;
    const parts: Buffer[] = [];
    const randomParts: Buffer[] = [];
    let n = 0;
    while (n < target) {
      const kind = rng.weighted([['random', 4], ['repeat', 3], ['text', 2], ['zeros', 1]] as const);
      let part: Buffer;
      if (kind === 'repeat' && randomParts.length) part = rng.pick(randomParts); // intra-file duplicate
      else if (kind === 'text') part = Buffer.from(words(rng, rng.int(64 * KiB, 256 * KiB)));
      else if (kind === 'zeros') part = Buffer.alloc(rng.int(64 * KiB, MiB));
      else {
        part = rng.bytes(rng.int(64 * KiB, 512 * KiB));
        randomParts.push(part);
      }
      part = part.subarray(0, Math.min(part.length, target - n));
      parts.push(part);
      n += part.length;
    }
    await w.write('large/chunky.bin', Buffer.concat(parts), someTime());
  }

  // --- Duplicate large files (and a near-duplicate) for dedup ----------------
  {
    const data = Buffer.concat([rng.bytes(3 * MiB), Buffer.from(words(rng, 2 * MiB)), rng.bytes(MiB + 123)]);
    await w.write('dedup/copy-a.bin', data, someTime());
    await w.write('dedup/copy-b.bin', data, someTime());
    const near = Buffer.from(data);
    const at = Math.floor(near.length / 2);
    near[at] = (near[at] as number) ^ 0x01;
    await w.write('dedup/near-copy.bin', near, someTime());
  }

  return w.finish();
}

// ---------------------------------------------------------------------------
// mutateVolume
// ---------------------------------------------------------------------------

export interface MutateResult {
  /** Bytes appended, overwritten, rewritten, added or deleted. */
  changedBytes: number;
  added: number;
  deleted: number;
  modified: number;
}

const SLASH = Buffer.from('/');

function baseName(rel: Buffer): string {
  const i = rel.lastIndexOf(0x2f);
  return rel.subarray(i + 1).toString('latin1');
}

/**
 * Change about `percent`% of the bytes under `dir`, deterministically for a
 * seed (given the same starting tree): append Envoy lines to `*.log` files,
 * rewrite `*.prom` metrics, overwrite byte ranges in place inside large
 * non-sparse files (the random blobs), add a few new files and delete a few
 * small ones. Modified files and the directories of added/deleted entries get
 * deterministic mtimes later than anything already in the tree.
 */
export async function mutateVolume(dir: string, opts: { percent: number; seed: number }): Promise<MutateResult> {
  const rng = new Rng(deriveSeed(opts.seed, 'mutate'));
  const items = await walk(dir);
  const seen = new Set<bigint>();
  let total = 0;
  let maxSec = 0;
  const files: WalkItem[] = [];
  for (const it of items) {
    const sec = Number(it.st.mtimeNs / 1_000_000_000n);
    if (sec < 2 ** 31) maxSec = Math.max(maxSec, sec); // ignore far-future outliers (tricky tree)
    if (!it.st.isFile()) continue;
    files.push(it);
    if (!seen.has(it.st.ino)) {
      seen.add(it.st.ino);
      total += Number(it.st.size);
    }
  }
  const target = Math.round((total * opts.percent) / 100);
  const tMut = maxSec + HOUR + rng.int(0, HOUR);
  const newTime = () => withMicros(rng, tMut + rng.int(0, HOUR));
  const size = (it: WalkItem) => Number(it.st.size);
  const name = (it: WalkItem) => baseName(it.rel);

  const logs = files.filter((f) => name(f).endsWith('.log'));
  const proms = files.filter((f) => name(f).endsWith('.prom'));
  const blobs = files.filter((f) => size(f) >= 256 * KiB && !/\.(log|prom|json|gz)$/.test(name(f)) && Number(f.st.blocks) * 512 >= size(f) * 0.9);
  const smalls = files.filter((f) => size(f) > 0 && size(f) <= 64 * KiB && f.st.nlink === 1n);

  const result: MutateResult = { changedBytes: 0, added: 0, deleted: 0, modified: 0 };
  const modified = new Map<string, WalkItem>(); // key: abs path (latin1)
  const touchedDirs = new Map<string, Buffer>();
  const parentOf = (abs: Buffer) => abs.subarray(0, abs.lastIndexOf(0x2f));
  const touchDir = (abs: Buffer) => touchedDirs.set(abs.toString('latin1'), abs);

  // 1. Delete a few small files.
  const nDel = Math.min(smalls.length, rng.int(2, 5));
  const deleted = new Set<WalkItem>();
  for (const f of rng.shuffle([...smalls]).slice(0, nDel)) {
    await fs.unlink(f.abs);
    deleted.add(f);
    touchDir(parentOf(f.abs));
    result.deleted++;
    result.changedBytes += size(f);
  }

  // 2. Rewrite up to 3 metrics files with fresh values (about the same size).
  const promBudget = target * 0.1;
  let promUsed = 0;
  for (const f of rng.shuffle(proms.filter((p) => !deleted.has(p))).slice(0, 3)) {
    // The first rewrite may exceed the 10% share (but not half the budget).
    if (promUsed + size(f) > (promUsed === 0 ? target * 0.5 : promBudget)) continue;
    const svc = SERVICES.find((s) => f.rel.includes(`/${s.name}-`)) ?? rng.pick(SERVICES);
    const me = makePod(rng, svc, 0);
    const text = promText(rng, me, [me, makePod(rng, rng.pick(SERVICES), 1)], size(f));
    await fs.writeFile(f.abs, text);
    modified.set(f.abs.toString('latin1'), f);
    promUsed += text.length;
  }
  result.changedBytes += promUsed;

  // 3. Append to log files (~30% of the budget).
  if (logs.length) {
    let budget = target * 0.3;
    const chosen = rng.shuffle([...logs]).slice(0, Math.max(1, Math.ceil(logs.length / 2)));
    for (const [i, f] of chosen.entries()) {
      const n = i === chosen.length - 1 ? budget : budget * rng.float();
      if (n < 1) continue;
      budget -= n;
      const svc = SERVICES.find((s) => f.rel.includes(`/${s.name}-`)) ?? rng.pick(SERVICES);
      const me = makePod(rng, svc, 0);
      const log = new AccessLog(rng.fork(), me, [makePod(rng, rng.pick(SERVICES), 1)], Number(f.st.mtimeNs / 1_000_000n), 50);
      const text = log.chunk(n);
      await fs.appendFile(f.abs, text);
      modified.set(f.abs.toString('latin1'), f);
      result.changedBytes += text.length;
    }
  }

  // 4. Add a few new files (~10% of the budget, at least 1 KiB each).
  const dirs = [Buffer.from(dir), ...items.filter((it) => it.st.isDirectory()).map((it) => it.abs)];
  const nAdd = rng.int(2, 5);
  for (let i = 0; i < nAdd; i++) {
    const n = Math.max(KiB, Math.round((target * 0.1) / nAdd));
    const parent = rng.pick(dirs);
    const text = rng.chance(0.5);
    const p = Buffer.concat([parent, SLASH, Buffer.from(`new-${rng.hex(8)}.${text ? 'txt' : 'bin'}`)]);
    const data = text ? Buffer.from(words(rng, n)) : rng.bytes(n);
    await fs.writeFile(p, data);
    await fs.chmod(p, 0o644);
    await setTimes(p, newTime());
    touchDir(parent);
    result.added++;
    result.changedBytes += n;
  }

  // 5. Overwrite byte ranges inside blobs in place with the rest of the budget;
  //    without blobs, append the rest to logs or to any file.
  let rest = target - result.changedBytes;
  const inPlace = blobs.filter((b) => !deleted.has(b));
  const appendable = (logs.length ? logs : files).filter((f) => !deleted.has(f));
  while (rest > 0 && (inPlace.length || appendable.length)) {
    if (inPlace.length) {
      const f = rng.pick(inPlace);
      const len = Math.min(rest, size(f), rng.int(4 * KiB, MiB));
      const off = rng.int(0, size(f) - len);
      const fh = await fs.open(f.abs, 'r+');
      await fh.write(rng.bytes(len), 0, len, off);
      await fh.close();
      modified.set(f.abs.toString('latin1'), f);
      rest -= len;
      result.changedBytes += len;
    } else {
      const f = rng.pick(appendable);
      const len = Math.min(rest, MiB);
      await fs.appendFile(f.abs, words(rng, len));
      modified.set(f.abs.toString('latin1'), f);
      rest -= len;
      result.changedBytes += len;
    }
  }

  // Deterministic metadata for everything we touched (sorted for stable rng use).
  const sortedMods = [...modified.values()].sort((a, b) => Buffer.compare(a.rel, b.rel));
  for (const f of sortedMods) await setTimes(f.abs, newTime());
  result.modified = modified.size;
  const sortedDirs = [...touchedDirs.values()].sort(Buffer.compare);
  for (const d of sortedDirs) await setTimes(d, newTime());
  return result;
}
