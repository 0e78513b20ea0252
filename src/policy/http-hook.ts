/**
 * policy/http-hook: a hook that is an HTTP request (Node's fetch), e.g. a chat webhook on error or
 * a service's own "prepare for backup" endpoint. POST (the default) and PUT send the run's context
 * as a JSON object (`policy`, `phase`, `repository`, `snapshot_id`, `error`, `failed_phase`,
 * `host`, `time`) unless the hook gives its own `body` (a string sent as it is, an object as JSON;
 * `${MESHBACK_POLICY}`-style variables of the context replaced in it); GET sends no body. Every
 * request carries `X-Meshback-Policy`, `X-Meshback-Phase` and, once there is a snapshot,
 * `X-Meshback-Snapshot-Id`, then the hook's `headers` and those of its `headers-file` (read at each
 * call, so a rotated token needs no reload).
 *
 * A 2xx answer is success. Any other status (redirects are not followed), a connection that
 * fails, or no complete answer within the timeout (the whole exchange, the body included) fails
 * the hook with one line naming the method and URL. Header values are never printed or reported
 * (they may be tokens), nor the URL's user info and query string.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import type { EventSink } from '../events/index.ts';
import { errMessage } from '../errors/index.ts';
import { formatDuration } from '../util/units.ts';
import type { HookPhase, HookResult } from './hooks.ts';
import type { HttpHook } from './load.ts';

/** bytes of the answer's body kept for the report */
const KEEP = 2048;

/** The URL as messages show it: no user info, no query, no fragment (they may hold secrets). */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    const hidden = u.search !== '' || u.username !== '' || u.password !== '';
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString() + (hidden ? '?...' : '');
  } catch {
    return '(not a URL)';
  }
}

const VAR = /\$\{(MESHBACK_[A-Z_]+)\}/g;
const substitute = (s: string, vars: Record<string, string>): string => s.replace(VAR, (_, k: string) => vars[k] ?? '');
function substituteDeep(x: unknown, vars: Record<string, string>): unknown {
  if (typeof x === 'string') return substitute(x, vars);
  if (Array.isArray(x)) return x.map((e) => substituteDeep(e, vars));
  if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, val]) => [k, substituteDeep(val, vars)]));
  return x;
}

/** The headers of a headers-file: "Name: value" lines, blank lines and # comments skipped; a problem names the line, never its text. */
async function readHeadersFile(file: string): Promise<Record<string, string> | string> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return `its headers-file ${file} cannot be read (${code ?? errMessage(err)}): check that it exists and is readable`;
  }
  const out: Record<string, string> = {};
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const m = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/.exec(line);
    if (m === null) return `its headers-file ${file} line ${i + 1} is not "Name: value": fix that line`;
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** What a failed fetch was, in a few words (the cause's code: ECONNREFUSED, ENOTFOUND, a TLS error...). */
function connectProblem(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  const c = (cause ?? err) as { code?: string; message?: string };
  const words: Record<string, string> = {
    ECONNREFUSED: 'the connection was refused',
    ENOTFOUND: 'the host name was not found',
    EAI_AGAIN: 'the host name could not be resolved',
    ECONNRESET: 'the connection was reset',
    EHOSTUNREACH: 'the host is unreachable',
    ENETUNREACH: 'the network is unreachable',
    UND_ERR_SOCKET: 'the server closed the connection',
  };
  const code = c.code;
  if (code !== undefined && words[code] !== undefined) return `${words[code]} (${code})`;
  return (c.message ?? errMessage(err)).split('\n')[0]!.slice(0, 200);
}

/** Runs one HTTP hook to its end; never throws (the result says how it ended). */
export async function runHttpHook(h: HttpHook, phase: HookPhase, index: number, env: Record<string, string>, events: EventSink): Promise<HookResult> {
  const t0 = performance.now();
  const { method, url } = h.http;
  const shown = `${method} ${shownUrl(url)}`;
  const label = `${phase} hook ${index} (${shown})`;
  const vars: Record<string, string> = { ...env, MESHBACK_PHASE: phase };
  const result = (r: Pick<HookResult, 'outcome'> & Partial<HookResult>): HookResult => ({
    phase,
    index,
    http: shown,
    exitCode: null,
    signal: null,
    output: '',
    ...r,
    durationSeconds: (performance.now() - t0) / 1000,
  });
  const failed = (error: string, r: Partial<HookResult> = {}): HookResult => result({ outcome: 'failed', error: `${label} ${error}`, ...r });

  const headers = new Headers({ 'user-agent': 'meshback', 'x-meshback-policy': vars['MESHBACK_POLICY'] ?? '', 'x-meshback-phase': phase });
  if (vars['MESHBACK_SNAPSHOT_ID'] !== undefined) headers.set('x-meshback-snapshot-id', vars['MESHBACK_SNAPSHOT_ID']);
  let extra: Record<string, string> = {};
  if (h.http.headersFile !== undefined) {
    const r = await readHeadersFile(h.http.headersFile);
    if (typeof r === 'string') return failed(`failed: ${r}`);
    extra = r;
  }
  for (const [k, val] of Object.entries({ ...h.http.headers, ...extra })) {
    try {
      headers.set(k, val);
    } catch {
      // the value is not shown: it may be a token
      return failed(`failed: its header ${k} has a value that cannot be sent (control characters?): fix it`);
    }
  }
  let body: string | undefined;
  if (method !== 'GET') {
    const b = h.http.body;
    if (b === undefined) {
      body = JSON.stringify({
        policy: vars['MESHBACK_POLICY'],
        phase,
        repository: vars['MESHBACK_REPO'],
        ...(vars['MESHBACK_SNAPSHOT_ID'] !== undefined ? { snapshot_id: vars['MESHBACK_SNAPSHOT_ID'] } : {}),
        ...(vars['MESHBACK_ERROR'] !== undefined ? { error: vars['MESHBACK_ERROR'] } : {}),
        ...(vars['MESHBACK_FAILED_PHASE'] !== undefined ? { failed_phase: vars['MESHBACK_FAILED_PHASE'] } : {}),
        host: os.hostname(),
        time: new Date().toISOString(),
      });
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    } else if (b.kind === 'json') {
      body = JSON.stringify(substituteDeep(b.value, vars));
      if (!headers.has('content-type')) headers.set('content-type', 'application/json');
    } else {
      body = substitute(b.text, vars);
      if (!headers.has('content-type')) headers.set('content-type', 'text/plain; charset=utf-8');
    }
  }

  // one timer for the whole exchange, the body included (a ref'd timer: a hanging server cannot
  // leave the process without anything to wait for)
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ac.abort();
  }, h.timeoutMs);
  const late = (): HookResult =>
    result({ outcome: 'timeout', error: `${label} did not answer within its timeout of ${formatDuration(h.timeoutMs)}: check the endpoint, or raise the hook's timeout` });
  try {
    let res: Response;
    try {
      res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}), redirect: 'manual', signal: ac.signal });
    } catch (err) {
      if (timedOut) return late();
      return failed(`failed: ${connectProblem(err)}: check the URL and that the endpoint is up`);
    }
    // the first KEEP bytes of the answer, then the rest is dropped
    let output = '';
    try {
      if (res.body !== null) {
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let n = 0;
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (n < KEEP) output += dec.decode(value.subarray(0, KEEP - n), { stream: true });
          n += value.byteLength;
          if (n >= KEEP) {
            await reader.cancel().catch(() => undefined);
            break;
          }
        }
      }
    } catch (err) {
      if (timedOut) return late();
      return failed(`failed while reading its answer (HTTP ${res.status}): ${connectProblem(err)}`, { status: res.status });
    }
    const status = `HTTP ${res.status}${res.statusText !== '' ? ` ${res.statusText}` : ''}`;
    const secs = (performance.now() - t0) / 1000;
    events({ type: 'note', op: 'hook', subject: label, message: `answered ${status} in ${secs.toFixed(2)} s` });
    if (res.status >= 200 && res.status < 300) return result({ outcome: 'ok', status: res.status, output });
    const first = output.trim().split('\n')[0]!.slice(0, 200);
    const why = res.status >= 300 && res.status < 400 ? ' (redirects are not followed: give the URL it points to)' : first !== '' ? `: ${first}` : '';
    return failed(`answered ${status}${why}`, { status: res.status, output });
  } finally {
    clearTimeout(timer);
  }
}
