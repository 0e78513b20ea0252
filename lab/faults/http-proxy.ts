/**
 * lab/faults: an HTTP fault proxy in front of an S3 server (MinIO in the tests). It passes every
 * request through unchanged (the Host header included, so request signatures still hold) except
 * those a fault rule takes, which get what object stores' clients meet in production:
 *
 *   slowdown         503 SlowDown, the request not passed on (the store's rate limit)
 *   internal         500 InternalError, the request not passed on
 *   lost-reply       the request is passed on and done by the store, its reply replaced by a
 *                    500 InternalError (the client cannot tell it was done)
 *   truncate         the reply's headers and half of its body's first chunk, then the connection
 *                    is closed (a body cut short); a reply without a body passes
 *   slow-first-byte  the request is passed on, its reply held back for delayMs before the first byte
 *   corrupt-body     the request is passed on with one byte of its body flipped (a body damaged on
 *                    the way to the store: the store must refuse it, the client send it again)
 *
 * A rule takes the matching requests (by kind: get = GetObject, list = ListObjects, put, head,
 * delete, other; and by key, a pattern of the URL's path) until `times` of them were taken, then passes everything again; rules are
 * tried in the order injected. Each rule counts what it took, so a test can tell that its fault
 * was really met.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export type HttpFault = 'slowdown' | 'internal' | 'lost-reply' | 'truncate' | 'slow-first-byte' | 'corrupt-body';
export type RequestKind = 'get' | 'list' | 'put' | 'head' | 'delete' | 'other';

export interface HttpFaultRule {
  fault: HttpFault;
  /** the kinds of request it takes (default: every kind) */
  on?: readonly RequestKind[];
  /** only requests whose URL path matches (e.g. /\/data\// for packs only) */
  key?: RegExp;
  /** how many requests it takes (default: every matching one, until cleared) */
  times?: number;
  /** slow-first-byte: how long the reply is held back (default 10 s) */
  delayMs?: number;
}

export interface InjectedRule extends Readonly<HttpFaultRule> {
  /** the requests this rule took so far */
  readonly taken: number;
}

export interface FaultProxy {
  /** http://127.0.0.1:PORT: use it as the S3 endpoint */
  readonly endpoint: string;
  /** adds a rule (tried after those already there) and returns it, to read its count */
  inject(rule: HttpFaultRule): InjectedRule;
  /** removes every rule: requests pass through again */
  clear(): void;
  /** the requests seen, by kind */
  readonly seen: Readonly<Record<RequestKind, number>>;
  stop(): Promise<void>;
}

interface Rule extends HttpFaultRule {
  taken: number;
}

const XML_ERROR = (code: string, message: string): string => `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><Resource></Resource><RequestId>meshback-fault-proxy</RequestId></Error>`;

export function requestKind(method: string | undefined, url: string | undefined): RequestKind {
  const q = new URL(url ?? '/', 'http://x').searchParams;
  switch (method) {
    case 'GET':
      // path-style: /BUCKET/KEY is an object, /BUCKET?list-type=2 a listing, /BUCKET?... another bucket call
      if (!/^\/[^/]+\/?$/.test(new URL(url ?? '/', 'http://x').pathname)) return 'get';
      return q.has('list-type') ? 'list' : 'other';
    case 'PUT':
      return 'put';
    case 'HEAD':
      return 'head';
    case 'DELETE':
      return 'delete';
    default:
      return 'other';
  }
}

/** Starts the proxy on 127.0.0.1 (a free port) in front of `target` (http://HOST:PORT). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const rules: Rule[] = [];
  const seen: Record<RequestKind, number> = { get: 0, list: 0, put: 0, head: 0, delete: 0, other: 0 };
  const agent = new http.Agent({ keepAlive: true });

  const take = (kind: RequestKind, url: string): Rule | undefined => {
    const p = new URL(url, 'http://x').pathname;
    const r = rules.find((x) => (x.on === undefined || x.on.includes(kind)) && (x.key === undefined || x.key.test(p)) && x.taken < (x.times ?? Infinity));
    if (r !== undefined) r.taken++;
    return r;
  };

  const answer = (req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string): void => {
    const body = req.method === 'HEAD' ? '' : XML_ERROR(code, message);
    req.resume();
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), 'x-amz-request-id': 'meshback-fault-proxy' });
    res.end(body);
  };

  const server = http.createServer((req, res) => {
    const kind = requestKind(req.method, req.url);
    seen[kind]++;
    const rule = take(kind, req.url ?? '/');
    if (rule?.fault === 'slowdown') return answer(req, res, 503, 'SlowDown', 'Please reduce your request rate.');
    if (rule?.fault === 'internal') return answer(req, res, 500, 'InternalError', 'We encountered an internal error. Please try again.');
    const up = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, agent }, (ur) => {
      const status = ur.statusCode ?? 502;
      if (rule?.fault === 'lost-reply') {
        ur.resume();
        ur.on('end', () => answer(req, res, 500, 'InternalError', 'We encountered an internal error. Please try again.'));
        return;
      }
      const pass = (): void => {
        res.writeHead(status, ur.headers);
        ur.pipe(res);
      };
      if (rule?.fault === 'slow-first-byte') {
        const timer = setTimeout(pass, rule.delayMs ?? 10_000);
        // the client gave up waiting: so does the proxy
        res.on('close', () => {
          clearTimeout(timer);
          ur.destroy();
        });
        return;
      }
      if (rule?.fault === 'truncate') {
        if (req.method === 'HEAD' || ur.headers['content-length'] === '0') {
          rule.taken--;
          return pass();
        }
        res.writeHead(status, ur.headers);
        ur.once('data', (chunk: Buffer) => {
          res.write(chunk.subarray(0, Math.floor(chunk.length / 2)), () => {
            res.socket?.destroy();
            ur.destroy();
          });
        });
        return;
      }
      pass();
    });
    up.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    if (rule?.fault === 'corrupt-body') {
      let flipped = false;
      req.on('data', (chunk: Buffer) => {
        if (!flipped && chunk.length > 0) {
          flipped = true;
          const c = Buffer.from(chunk);
          c[c.length >> 1]! ^= 0x55;
          up.write(c);
        } else up.write(chunk);
      });
      req.on('end', () => {
        if (!flipped) rule.taken--; // no body to damage: not a fault met
        up.end();
      });
      return;
    }
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    inject(rule) {
      const r: Rule = { ...rule, taken: 0 };
      rules.push(r);
      return r;
    },
    clear() {
      rules.length = 0;
    },
    seen,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}
