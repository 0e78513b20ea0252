/**
 * trigger: the CI/CD client of `meshback server`'s API. POSTs /v1/runs (a run of POLICY now,
 * tagged with --tag K=V, e.g. the deploy), prints the run id; with --wait follows the run (its
 * server-sent events, and GET /v1/runs/ID when the stream breaks) until it ends, prints the
 * snapshot id, and exits as `meshback run` would have: 0 when the run succeeded, else the exit
 * code of its failure (a hook's 14, a locked repository's 11, ...). The server's own answers:
 * unreachable or not the API 15, refused (token, rate limit, policy running, stopping) 16,
 * --wait past --timeout 17, unknown policy 5, a bad request 2. Docs: docs/ci.md.
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import { MeshbackError, NotFoundError, UsageError, errMessage, errnoCode } from '../../errors/index.ts';
import type { ErrorCode } from '../../errors/index.ts';
import { ErrorAnswerSchema, RunRecordSchema, TriggerAnswerSchema } from '../../server/schemas.ts';
import type { RunRecord } from '../../server/schemas.ts';
import { parseJson, safeParse } from '../../util/schema.ts';
import type { v } from '../../util/schema.ts';
import { parseDuration } from '../../util/units.ts';
import type { Command } from '../command.ts';
import { bool, str, strs } from '../command.ts';
import type { Context } from '../context.ts';
import { EXIT } from '../exit.ts';

const DEFAULT_TIMEOUT = '1h';
/** one request's connect-and-answer time */
const REQUEST_MS = 30_000;
/** between two polls of the run when its event stream broke */
const POLL_MS = 2000;

export const triggerCommand: Command = {
  name: 'trigger',
  summary: "start a policy run on a meshback server now (CI/CD), tagged with the deploy; --wait follows it",
  usage: 'meshback trigger POLICY --server URL [--token-file FILE] [--tag KEY=VALUE]... [--wait [--timeout DURATION]] [--cacert FILE] [--json]',
  options: {
    server: { type: 'string', argument: 'URL', description: 'the API of meshback server, e.g. https://backup.example:8439 (or MESHBACK_SERVER)' },
    'token-file': { type: 'string', argument: 'FILE', description: "the server's bearer token (or MESHBACK_TOKEN_FILE)" },
    tag: { type: 'string', multiple: true, argument: 'KEY=VALUE', description: 'a tag for the snapshot, e.g. deploy=v1.4.2 (repeatable)' },
    wait: { type: 'boolean', description: 'follow the run until it ends; print its snapshot id; exit with its outcome' },
    timeout: { type: 'string', argument: 'DURATION', description: `with --wait: wait at most this long (default ${DEFAULT_TIMEOUT}; the run goes on on the server past it, exit 17)` },
    cacert: { type: 'string', argument: 'FILE', description: "trust the server's TLS certificate when this PEM CA (or the certificate itself) signed it" },
  },
  async run(ctx, v, positionals) {
    if (positionals.length !== 1) throw new UsageError(`trigger takes one POLICY name${positionals.length > 1 ? `, not ${positionals.length}` : ''}: meshback trigger POLICY --server URL --token-file FILE`);
    const policy = positionals[0]!;
    const serverText = str(v['server']) ?? process.env['MESHBACK_SERVER'];
    if (serverText === undefined || serverText === '') throw new UsageError('trigger needs the server: --server URL (e.g. https://backup.example:8439) or MESHBACK_SERVER');
    let base: URL;
    try {
      base = new URL(serverText);
    } catch {
      throw new UsageError(`--server ${JSON.stringify(serverText)} is not a URL: give e.g. --server https://backup.example:8439`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new UsageError(`--server ${serverText}: give an http:// or https:// URL`);
    const tokenFile = str(v['token-file']) ?? (process.env['MESHBACK_TOKEN_FILE'] || undefined);
    const token = tokenFile === undefined ? undefined : readText(tokenFile, '--token-file').trim();
    const caFile = str(v['cacert']);
    const ca = caFile === undefined ? undefined : readText(caFile, '--cacert');
    const tags: Record<string, string> = {};
    for (const t of strs(v['tag'])) {
      const i = t.indexOf('=');
      if (i <= 0 || /\s/.test(t.slice(0, i))) throw new UsageError(`--tag ${JSON.stringify(t)} is not KEY=VALUE`);
      tags[t.slice(0, i)] = t.slice(i + 1);
    }
    const wait = bool(v['wait']);
    const timeoutText = str(v['timeout']);
    if (timeoutText !== undefined && !wait) throw new UsageError('--timeout is for --wait: add --wait, or leave --timeout out');
    const timeoutMs = parseDuration(timeoutText ?? DEFAULT_TIMEOUT, '--timeout');
    const client = new ApiClient(base, token, ca);

    const deadline = Date.now() + timeoutMs;
    const body = JSON.stringify({ policy, ...(Object.keys(tags).length > 0 ? { tags } : {}) });
    let posted = await client.request('POST', '/v1/runs', body);
    // with --wait, a policy busy with another run (409: a scheduled one, never two at once) is
    // triggered once that run ends, within --timeout: a pipeline should not fail on a backup that happens to run
    for (let said = false, limited = false; wait && (posted.status === 409 || posted.status === 429) && Date.now() < deadline; ) {
      if (posted.status === 429) {
        // rate-limited: the server says when to try again (Retry-After), within --timeout
        const after = Number(posted.headers['retry-after'] ?? '5');
        if (!limited) ctx.out.info(`the server limits triggers (429): trying again in ${after} s, up to --timeout`);
        limited = true;
        await new Promise((r) => setTimeout(r, Math.min((Number.isFinite(after) ? Math.max(1, after) : 5) * 1000, Math.max(0, deadline - Date.now()))));
        if (Date.now() >= deadline) break;
        posted = await client.request('POST', '/v1/runs', body);
        continue;
      }
      const busy = client.busyRun(posted);
      if (!said) ctx.out.info(`${policy} is busy (${client.refusal(posted, 'trigger').message.replace(/^trigger: refused \(409\): /, '')}): waiting to trigger it, up to --timeout`);
      said = true;
      // wait for the busy run to end (GETs, which the trigger rate limit does not count), then post again
      for (;;) {
        await new Promise((r) => setTimeout(r, Math.min(1000, Math.max(0, deadline - Date.now()))));
        if (Date.now() >= deadline) break;
        if (busy === undefined) break;
        const r = await client.run(busy).catch(() => undefined);
        if (r === undefined || r.status === 'succeeded' || r.status === 'failed') break;
      }
      if (Date.now() >= deadline) break;
      posted = await client.request('POST', '/v1/runs', body);
    }
    if ((posted.status === 409 || posted.status === 429) && wait && Date.now() >= deadline) throw new MeshbackError('TIMEOUT', `trigger ${policy}: ${posted.status === 409 ? 'the policy was still busy with another run' : 'the server still limited triggers (429)'} when --timeout ${timeoutText ?? DEFAULT_TIMEOUT} ran out: nothing was triggered; try again or raise --timeout`);
    if (posted.status !== 202) throw client.refusal(posted, `trigger ${policy}`);
    const accepted = client.answer(TriggerAnswerSchema, posted);
    ctx.out.result(`run ${accepted.id} of ${accepted.policy}: ${accepted.status}`);
    if (!wait) {
      ctx.out.jsonOut({ message_type: 'summary', id: accepted.id, policy: accepted.policy, status: accepted.status, url: new URL(accepted.url, base).href });
      return EXIT.OK;
    }

    const rec = await follow(ctx, client, accepted.id, deadline, timeoutText ?? DEFAULT_TIMEOUT);
    const took = rec.startedAt !== undefined && rec.finishedAt !== undefined ? ` in ${((Date.parse(rec.finishedAt) - Date.parse(rec.startedAt)) / 1000).toFixed(2)} s` : '';
    ctx.out.jsonOut({ message_type: 'summary', id: rec.id, policy: rec.policy, status: rec.status, ...(rec.snapshotId !== undefined ? { snapshot_id: rec.snapshotId } : {}), ...(rec.error !== undefined ? { error: rec.error } : {}), tags: rec.tags, queued_at: rec.queuedAt, ...(rec.startedAt !== undefined ? { started_at: rec.startedAt } : {}), ...(rec.finishedAt !== undefined ? { finished_at: rec.finishedAt } : {}) });
    if (rec.status === 'succeeded') {
      ctx.out.result(`run ${rec.id} of ${rec.policy}: succeeded${took}${rec.snapshotId !== undefined ? `, snapshot ${rec.snapshotId}` : ''}`);
      return EXIT.OK;
    }
    ctx.out.result(`run ${rec.id} of ${rec.policy}: FAILED${took}${rec.snapshotId !== undefined ? ` (snapshot ${rec.snapshotId} saved)` : ''}`);
    const e = rec.error ?? { code: 'INTERNAL', message: 'the run failed and the server gave no reason' };
    // the run's failure keeps its code, so the exit code is the one `meshback run` would give; a server that stopped mid-run is the server's failure
    if (e.code === 'INTERRUPTED') throw new MeshbackError('SERVER', `run ${rec.id} of ${rec.policy}: ${e.message}: trigger it again`);
    throw new MeshbackError(e.code as ErrorCode, `run ${rec.id} of ${rec.policy} failed: ${e.message}`);
  },
};

function readText(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${flag} ${file}: ${errMessage(err)}`);
  }
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

const TLS_UNTRUSTED = new Set(['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT', 'CERT_UNTRUSTED']);

/** The API over node:http(s): bearer token, a CA to trust, answers checked with the API's schemas. */
class ApiClient {
  private readonly base: URL;
  private readonly token: string | undefined;
  private readonly ca: string | undefined;
  constructor(base: URL, token: string | undefined, ca: string | undefined) {
    this.base = base;
    this.token = token;
    this.ca = ca;
  }

  private url(p: string): URL {
    return new URL(p.replace(/^\//, ''), this.base.href.endsWith('/') ? this.base.href : this.base.href + '/');
  }

  /** the request, answered with its headers (the body unread); a connection failure is a MeshbackError SERVER */
  open(method: string, p: string, body?: string, signal?: AbortSignal): Promise<http.IncomingMessage> {
    const url = this.url(p);
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        {
          method,
          headers: { accept: 'application/json, text/event-stream', ...(this.token !== undefined ? { authorization: `Bearer ${this.token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) },
          ...(this.ca !== undefined && url.protocol === 'https:' ? { ca: this.ca } : {}),
          ...(signal !== undefined ? { signal } : {}),
        },
        (res) => {
          clearTimeout(timer);
          resolve(res);
        },
      );
      const timer = setTimeout(() => req.destroy(Object.assign(new Error(`no answer within ${REQUEST_MS / 1000} s`), { code: 'ETIMEDOUT' })), REQUEST_MS);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(this.unreachable(err));
      });
      req.end(body);
    });
  }

  unreachable(err: unknown): MeshbackError {
    if (err instanceof MeshbackError) return err;
    const code = errnoCode(err);
    const at = this.base.origin;
    if (code !== undefined && TLS_UNTRUSTED.has(code)) return new MeshbackError('SERVER', `the TLS certificate of ${at} is not trusted (${code}): give the CA that signed it with --cacert FILE`);
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return new MeshbackError('SERVER', `the TLS certificate of ${at} is not for ${this.base.hostname}: use the host name the certificate names in --server`);
    if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') return new MeshbackError('SERVER', `${at} does not speak ${this.base.protocol === 'https:' ? 'TLS' : 'plain HTTP'} (${code}): check http:// or https:// in --server`);
    return new MeshbackError('SERVER', `cannot reach the meshback server at ${at} (${code ?? errMessage(err)}): check --server and that 'meshback server' runs with --listen there`);
  }

  async request(method: string, p: string, body?: string): Promise<Answer> {
    const res = await this.open(method, p, body);
    let text = '';
    res.setEncoding('utf8');
    try {
      for await (const chunk of res) {
        text += chunk as string;
        if (text.length > 16 * 1024 * 1024) throw new MeshbackError('SERVER', `${this.base.origin} answered more than 16 MiB: is --server the meshback API?`);
      }
    } catch (err) {
      throw this.unreachable(err);
    }
    return { status: res.statusCode ?? 0, headers: res.headers, text };
  }

  /** the body of a 2xx answer, checked by `schema`; else a MeshbackError SERVER */
  answer<S extends v.GenericSchema>(schema: S, a: Answer): v.InferOutput<S> {
    let json: unknown;
    try {
      json = parseJson(a.text, (m) => new Error(m));
    } catch {
      json = undefined;
    }
    const r = safeParse(schema, json);
    if (!r.success) throw new MeshbackError('SERVER', `${this.base.origin} answered ${a.status} with what is not the meshback API's: is --server the address of 'meshback server --listen'?`);
    return r.output;
  }

  /** the id of the run a 409 answer names (the policy's run going on), if it names one */
  busyRun(a: Answer): string | undefined {
    try {
      const r = safeParse(ErrorAnswerSchema, parseJson(a.text, (m) => new Error(m)));
      return r.success ? r.output.error.run : undefined;
    } catch {
      return undefined;
    }
  }

  /** the error of a refused request: the server's one line, with the exit class of its status */
  refusal(a: Answer, what: string): MeshbackError {
    let message: string | undefined;
    try {
      const r = safeParse(ErrorAnswerSchema, parseJson(a.text, (m) => new Error(m)));
      if (r.success) message = r.output.error.message;
    } catch {
      message = undefined;
    }
    if (message === undefined) return new MeshbackError('SERVER', `${what}: ${this.base.origin} answered ${a.status} with what is not the meshback API's: is --server the address of 'meshback server --listen'?`);
    const retry = a.headers['retry-after'];
    switch (a.status) {
      case 400:
        return new UsageError(`${what}: ${message}`);
      case 404:
        return new NotFoundError(`${what}: ${message}`);
      case 401:
        return new MeshbackError('REFUSED', `${what}: refused (401): ${message}${this.token === undefined ? ' (give --token-file FILE)' : ''}`);
      case 409:
      case 429:
      case 503:
        return new MeshbackError('REFUSED', `${what}: refused (${a.status}): ${message}${retry !== undefined && a.status !== 429 ? ` (retry after ${String(retry)} s)` : ''}`);
      default:
        return new MeshbackError('SERVER', `${what}: the server failed (${a.status}): ${message}`);
    }
  }

  async run(id: string): Promise<RunRecord> {
    const a = await this.request('GET', `/v1/runs/${id}`);
    if (a.status === 404) throw lost(id);
    if (a.status !== 200) throw this.refusal(a, `run ${id}`);
    return this.answer(RunRecordSchema, a) as RunRecord;
  }
}

const ended = (r: RunRecord): boolean => r.status === 'succeeded' || r.status === 'failed';

/** the server no longer knows a run it accepted (another server answers at the address, or its runs.jsonl was lost) */
const lost = (id: string): MeshbackError => new MeshbackError('SERVER', `run ${id} is no longer known to the server (another server answers at --server, or its state directory was lost): check the server's log, and trigger again`, { data: { lost: true } });

/** an error that ends following: anything but a connection that failed (which is tried again) */
const final = (err: unknown): boolean => err instanceof MeshbackError && (err.code !== 'SERVER' || err.data['lost'] === true);

/**
 * Follows run `id` until it ends or `deadline`: its event stream (phases and warnings shown as
 * they come), and when the stream breaks (the server restarted, a proxy cut it) the run's record,
 * polled, until it has ended.
 */
async function follow(ctx: Context, client: ApiClient, id: string, deadline: number, timeoutText: string): Promise<RunRecord> {
  let lastSeq = 0;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), Math.max(0, deadline - Date.now()));
    try {
      const res = await client.open('GET', `/v1/runs/${id}/events`, undefined, abort.signal);
      if (res.statusCode !== 200) {
        let text = '';
        for await (const c of res.setEncoding('utf8')) text += c as string;
        if (res.statusCode === 404) throw lost(id);
        throw client.refusal({ status: res.statusCode ?? 0, headers: res.headers, text }, `run ${id}`);
      }
      let buf = '';
      for await (const chunk of res.setEncoding('utf8')) {
        buf += chunk as string;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: ?(.*)$/m.exec(block)?.[1];
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''))
            .join('\n');
          if (ev === undefined || data === '') continue;
          const json = JSON.parse(data) as unknown;
          if (ev === 'run') {
            const r = safeParse(RunRecordSchema, json);
            if (r.success && ended(r.output as RunRecord)) return r.output as RunRecord;
          } else if (ev === 'event') {
            const e = json as { seq: number; event: { type: string; phase?: string; op?: string; message?: string; path?: string } };
            if (e.seq <= lastSeq) continue;
            lastSeq = e.seq;
            if (e.event.type === 'phase' && e.event.op === 'run') ctx.out.info(`  ${e.event.phase ?? ''}`);
            else if (e.event.type === 'warning') ctx.out.warn(`${e.event.path !== undefined ? `${e.event.path}: ` : ''}${e.event.message ?? ''}`);
          }
        }
      }
    } catch (err) {
      // a refusal (the run is gone, the token no longer accepted) ends it; a broken stream is polled below
      if (final(err)) throw err;
      if (abort.signal.aborted) break;
    } finally {
      clearTimeout(timer);
    }
    // the stream ended without the run's end: ask for the record, then follow again after a pause
    try {
      const r = await client.run(id);
      if (ended(r)) return r;
    } catch (err) {
      if (final(err)) throw err;
    }
    if (Date.now() + POLL_MS >= deadline) break;
    await new Promise((r) => setTimeout(r, Math.min(POLL_MS * Math.min(attempt + 1, 5), Math.max(0, deadline - Date.now()))));
  }
  throw new MeshbackError('TIMEOUT', `run ${id} did not end within ${timeoutText} (--timeout): it goes on on the server; follow it with GET /v1/runs/${id}`);
}
