/**
 * The S3 backend: a repository in an S3 bucket (AWS S3, or any S3-compatible server such as MinIO
 * reached at its own endpoint with path-style addressing).
 *
 * Locations:
 *   s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]   a custom endpoint, path-style addressing
 *   s3:BUCKET[/PREFIX]                          AWS S3, region from the SDK's chain (AWS_REGION, profile)
 * Credentials come from the SDK's default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, shared
 * config and profiles, web identity, instance metadata); never from the location.
 *
 * Layout under PREFIX/: the local backend's paths as keys (config, keys/<id>, data/<xx>/<id>,
 * parity/<xx>/<id>, index/<id>, snapshots/<id>, locks/<id>).
 *
 * - put: one PutObject of the whole buffer (ContentLength and Content-MD5 set; no streaming, so a
 *   retry resends the same bytes) with `If-None-Match: *`, so nothing is ever overwritten. A 412
 *   means the key exists: it is read back, identical bytes (a retry whose reply was lost) are a
 *   no-op, different bytes the contract's refused overwrite. An object appears whole or not at all.
 * - get: GetObject, with `Range: bytes=A-B` for a range; the body is read whole and its length
 *   checked (a short body is a retryable truncated read).
 * - replace (repairs of packs and parity only): an unconditional PutObject.
 * - Errors are classified here (see wrap()): retryable for 5xx, SlowDown, timeouts, connection resets.
 * - Every request goes through send(), which counts it by kind in `requests` (src/storage/requests.ts).
 *
 * The SDK (several MB of modules) is imported on the first request, not when this module loads,
 * so the CLI does not pay for it on a local repository.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { GetObjectCommandOutput, HeadObjectCommandOutput, S3Client } from '@aws-sdk/client-s3';
import type { Backend, FileInfo, FileRetention, FileType, Handle, HiddenFile, ObjectLock, ObjectLockPolicy } from './backend.ts';
import { REPLACEABLE, handleString, joinParts } from './backend.ts';
import { LAYOUT_DIRS, isSharded, layoutPath } from './layout.ts';
import { RequestCounter } from './requests.ts';
import type { RequestKind } from './requests.ts';
import { BackendError, MeshbackError, NotFoundError, ObjectLockedError, UsageError, errMessage, errnoCode, isTransientErrno } from '../errors/index.ts';


export interface S3Location {
  /** `http[s]://host[:port]` for a custom endpoint (path-style); undefined for AWS */
  endpoint?: string;
  bucket: string;
  /** key prefix without leading or trailing slash; '' for the bucket's root */
  prefix: string;
  /** `?region=`: the region to sign for (default: the SDK's chain; us-east-1 for a custom endpoint) */
  region?: string;
  /** `?addressing=path|virtual` (default: path for a custom endpoint, virtual-host for AWS) */
  addressing?: 'path' | 'virtual';
  /** `?ca=FILE`: PEM certificates to trust for https, besides the system's (default: AWS_CA_BUNDLE) */
  caFile?: string;
  /**
   * `?overwrite-check=if-none-match|head`: how a put avoids overwriting. `if-none-match` (the
   * default): a conditional PUT the server refuses when the key exists. `head`: a HeadObject
   * before an unconditional PUT, for servers that ignore If-None-Match (see docs/design.md).
   */
  overwriteCheck?: 'if-none-match' | 'head';
  /** given credentials (never part of the location's text); absent: the SDK's default chain */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string; region?: string };
}

const QUERY_KEYS = ['region', 'addressing', 'ca', 'overwrite-check'];

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Parses `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]` or `s3:BUCKET[/PREFIX]`. */
export function parseS3Location(location: string): S3Location {
  const rest = location.replace(/^s3:/i, '');
  const forms = 'write s3:https://HOST[:PORT]/BUCKET[/PREFIX] or s3:BUCKET[/PREFIX] (AWS)';
  let endpoint: string | undefined;
  let pathPart: string;
  let query = new URLSearchParams();
  if (/^https?:\/\//i.test(rest)) {
    let u: URL;
    try {
      u = new URL(rest);
    } catch (err) {
      throw new UsageError(`repository location ${location} is not a usable URL (${errMessage(err)}): ${forms}`);
    }
    if (u.username !== '' || u.password !== '') throw new UsageError(`repository location s3:${u.protocol}//***@${u.host}/...: credentials do not go in the location; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile)`);
    if (u.hash !== '') throw new UsageError(`repository location ${location} has a fragment: ${forms}`);
    endpoint = `${u.protocol}//${u.host}`;
    pathPart = decodeURIComponent(u.pathname);
    query = u.searchParams;
  } else {
    const q = rest.indexOf('?');
    pathPart = q < 0 ? rest : rest.slice(0, q);
    if (q >= 0) query = new URLSearchParams(rest.slice(q + 1));
  }
  const opts = parseS3Query(location, query);
  const segs = pathPart.split('/').filter((s) => s !== '');
  const bucket = segs.shift();
  if (bucket === undefined) throw new UsageError(`repository location ${location} names no bucket: ${forms}`);
  if (!BUCKET_RE.test(bucket)) throw new UsageError(`repository location ${location}: ${JSON.stringify(bucket)} is not a valid bucket name (3 to 63 characters: lowercase letters, digits, dots, hyphens): ${forms}`);
  for (const s of segs) if (s === '.' || s === '..') throw new UsageError(`repository location ${location}: the prefix may not contain ${s}`);
  return { ...(endpoint !== undefined ? { endpoint } : {}), bucket, prefix: segs.join('/'), ...opts };
}

/** The options of a location's query (`?region=eu-west-1&addressing=virtual&ca=/etc/ca.pem&overwrite-check=head`). */
function parseS3Query(location: string, q: URLSearchParams): Omit<S3Location, 'endpoint' | 'bucket' | 'prefix'> {
  const out: Omit<S3Location, 'endpoint' | 'bucket' | 'prefix'> = {};
  for (const k of q.keys()) {
    if (!QUERY_KEYS.includes(k)) throw new UsageError(`repository location ${location}: unknown option ${JSON.stringify(k)}: the options are ${QUERY_KEYS.map((x) => `${x}=`).join(', ')}`);
    if (q.getAll(k).length > 1) throw new UsageError(`repository location ${location}: option ${k} is given twice`);
  }
  const region = q.get('region');
  if (region !== null) {
    if (!/^[a-z0-9-]{1,64}$/.test(region)) throw new UsageError(`repository location ${location}: region ${JSON.stringify(region)} is not a region name (e.g. eu-west-1)`);
    out.region = region;
  }
  const addressing = q.get('addressing');
  if (addressing !== null) {
    if (addressing !== 'path' && addressing !== 'virtual') throw new UsageError(`repository location ${location}: addressing=${addressing}: write addressing=path or addressing=virtual`);
    out.addressing = addressing;
  }
  const ca = q.get('ca');
  if (ca !== null) {
    if (ca === '') throw new UsageError(`repository location ${location}: ca= names no file: write ca=/path/to/ca.pem`);
    out.caFile = ca;
  }
  const oc = q.get('overwrite-check');
  if (oc !== null) {
    if (oc !== 'if-none-match' && oc !== 'head') throw new UsageError(`repository location ${location}: overwrite-check=${oc}: write overwrite-check=if-none-match (the default) or overwrite-check=head`);
    out.overwriteCheck = oc;
  }
  return out;
}

/** `s3:` + the location as the user would write it (no secrets: there are none in it). */
export function s3LocationString(l: S3Location): string {
  const q = new URLSearchParams();
  if (l.region !== undefined) q.set('region', l.region);
  if (l.addressing !== undefined) q.set('addressing', l.addressing);
  if (l.caFile !== undefined) q.set('ca', l.caFile);
  if (l.overwriteCheck !== undefined) q.set('overwrite-check', l.overwriteCheck);
  const qs = q.toString();
  return `s3:${l.endpoint !== undefined ? `${l.endpoint}/` : ''}${l.bucket}${l.prefix !== '' ? `/${l.prefix}` : ''}${qs !== '' ? `?${qs}` : ''}`;
}

type Sdk = typeof import('@aws-sdk/client-s3');

interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  $fault?: string;
  $metadata?: { httpStatusCode?: number };
}

const RETRYABLE_NAMES = new Set(['SlowDown', 'RequestTimeout', 'RequestTimeoutException', 'TimeoutError', 'InternalError', 'ServiceUnavailable', 'ConditionalRequestConflict', 'OperationAborted', 'RequestTimeTooSkewed', 'ThrottlingException', 'Throttling', 'XMinioServerNotInitialized', 'XAmzContentSHA256Mismatch', 'BadDigest', 'IncompleteBody']);
const DENIED_NAMES = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden', 'InvalidToken', 'ExpiredToken', 'TokenRefreshRequired', 'AllAccessDisabled']);

export class S3Backend implements Backend {
  readonly location: string;
  /** An object store serves many requests at once; 16 keeps the number of sockets modest. */
  readonly properties = { connections: 16, remote: true };
  /** Every request sent, by kind (what S3 bills): each attempt of a retried call, each page of a listing. */
  readonly requests = new RequestCounter();
  readonly bucket: string;
  readonly prefix: string;
  readonly endpoint: string | undefined;
  readonly objectLock: ObjectLock;
  private readonly opts: S3Location;
  private lockPolicy: ObjectLockPolicy | undefined;
  private clientP: Promise<{ sdk: Sdk; c: S3Client }> | undefined;

  constructor(l: S3Location) {
    this.bucket = l.bucket;
    this.prefix = l.prefix;
    this.endpoint = l.endpoint;
    this.opts = l;
    this.location = s3LocationString(l);
    const policy = (): ObjectLockPolicy | undefined => this.lockPolicy;
    this.objectLock = {
      support: () => this.lockSupport(),
      get policy() {
        return policy();
      },
      setPolicy: (p) => {
        this.lockPolicy = p;
      },
      retention: (h) => this.retention(h),
      extend: (h, until) => this.extendRetention(h, until),
      hidden: (type) => this.hidden(type),
      unhide: (f) => this.unhide(f),
    };
  }

  /** The SDK and a client, made on the first request. */
  private client(): Promise<{ sdk: Sdk; c: S3Client }> {
    this.clientP ??= import('@aws-sdk/client-s3').then(async (sdk) => {
      const env = process.env;
      const o = this.opts;
      const region = o.region ?? o.credentials?.region ?? (this.endpoint !== undefined ? env['AWS_REGION'] || env['AWS_DEFAULT_REGION'] || 'us-east-1' : undefined);
      const caFile = o.caFile ?? (env['AWS_CA_BUNDLE'] || undefined);
      let httpsAgent: import('node:https').Agent | undefined;
      if (caFile !== undefined) {
        let ca: Buffer;
        try {
          ca = readFileSync(caFile);
        } catch (err) {
          throw new UsageError(`cannot read the CA certificates ${caFile} (${o.caFile !== undefined ? 'ca= of --repo' : 'AWS_CA_BUNDLE'}): ${errMessage(err)}`);
        }
        const https = await import('node:https');
        const tls = await import('node:tls');
        // the file's certificates are trusted besides the system's, not instead of them
        httpsAgent = new https.Agent({ keepAlive: true, ca: [...tls.rootCertificates, ca.toString('utf8')] });
      }
      const c = new sdk.S3Client({
        ...(this.endpoint !== undefined ? { endpoint: this.endpoint } : {}),
        forcePathStyle: o.addressing !== undefined ? o.addressing === 'path' : this.endpoint !== undefined,
        ...(region !== undefined ? { region } : {}),
        ...(o.credentials !== undefined ? { credentials: { accessKeyId: o.credentials.accessKeyId, secretAccessKey: o.credentials.secretAccessKey, ...(o.credentials.sessionToken !== undefined ? { sessionToken: o.credentials.sessionToken } : {}) } } : {}),
        // the SDK's default CRC32 trailers (aws-chunked bodies) are an AWS extension that a
        // non-AWS server may store as part of the object: checksums only where S3 requires them
        requestChecksumCalculation: 'WHEN_REQUIRED',
        responseChecksumValidation: 'WHEN_REQUIRED',
        // the storage stack's retry wrapper is the one retry policy (its attempts are reported)
        maxAttempts: 1,
        // socketTimeout, not requestTimeout: the SDK's requestTimeout only logs a warning unless
        // throwOnRequestTimeout is set, and would bound a large upload's whole time. A request with
        // no byte moving for this long fails (retryably) instead of waiting forever.
        requestHandler: { connectionTimeout: 30_000, socketTimeout: s3TimeoutMs(), ...(httpsAgent !== undefined ? { httpsAgent } : {}) },
      });
      return { sdk, c };
    });
    return this.clientP;
  }

  /** PutObject's Object Lock fields for a new file of type `type` (none for lock files, or without a policy). */
  private lockFields(type: FileType): { ObjectLockMode?: 'COMPLIANCE' | 'GOVERNANCE'; ObjectLockRetainUntilDate?: Date } {
    const p = this.lockPolicy;
    if (p === undefined || type === 'lock') return {};
    return { ObjectLockMode: p.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE', ObjectLockRetainUntilDate: new Date(Date.now() + p.days * 86_400_000) };
  }

  /** The one way a request is sent: counted first, whatever its outcome. */
  private send<O = unknown>(c: S3Client, kind: RequestKind, type: FileType | undefined, cmd: object): Promise<O> {
    this.requests.add(kind, type);
    return (c.send as (cmd: object) => Promise<O>).call(c, cmd);
  }

    private keyOf(h: Handle): string {
    return `${this.prefix === '' ? '' : `${this.prefix}/`}${layoutPath(h)}`;
  }

  private bucketMissing(): NotFoundError {
    return bucketMissing(this);
  }

  private wrap(err: unknown, what: string): Error {
    return s3Error(err, what, this);
  }

  private async headBucket(): Promise<void> {
    const { sdk, c } = await this.client();
    try {
      await this.send(c, 'HEAD', undefined, new sdk.HeadBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      const status = (err as SdkError).$metadata?.httpStatusCode;
      if (status === 404 || (err as SdkError).name === 'NotFound' || (err as SdkError).name === 'NoSuchBucket') throw this.bucketMissing();
      throw this.wrap(err, `bucket ${this.bucket}`);
    }
  }

  async exists(): Promise<boolean> {
    try {
      await this.stat({ type: 'config', name: 'config' });
      return true;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    // HEAD has no body, so a missing bucket looks like a missing key: tell them apart
    await this.headBucket();
    return false;
  }

  async create(): Promise<void> {
    await this.headBucket();
    if (await this.exists()) throw new BackendError(`a repository already exists at ${this.location}`, { retryable: false });
    if (this.opts.overwriteCheck !== 'head') await this.probeConditionalPut();
    // Key files without a config (an init that died before writing its config) are moved aside,
    // never deleted: they may be the only copy of an old master key.
    const stale: string[] = [];
    for await (const f of this.list('key')) stale.push(f.name);
    if (stale.length > 0) {
      const { sdk, c } = await this.client();
      const aside = `${this.prefix === '' ? '' : `${this.prefix}/`}keys-orphaned-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      for (const n of stale) {
        const from = this.keyOf({ type: 'key', name: n });
        try {
          await this.send(c, 'COPY', 'key', new sdk.CopyObjectCommand({ Bucket: this.bucket, Key: `${aside}/${n}`, CopySource: `${this.bucket}/${from}` }));
          await this.send(c, 'DELETE', 'key', new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: from }));
        } catch (err) {
          throw this.wrap(err, `key/${n}`);
        }
      }
    }
  }

  /**
   * Init's check that the server honours If-None-Match: a second conditional PUT of one key must be
   * refused (412). A server that stores it (it ignored the header) or answers 501 would let a put
   * overwrite silently, so the repository is not created there; `?overwrite-check=head` is the way.
   */
  private async probeConditionalPut(): Promise<void> {
    const { sdk, c } = await this.client();
    const key = `${this.prefix === '' ? '' : `${this.prefix}/`}.meshback-probe-${randomBytes(8).toString('hex')}`;
    const body = Buffer.from('meshback: does this server honour If-None-Match?\n');
    const put = () => this.send(c, 'PUT', undefined, new sdk.PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: body.length, ContentMD5: md5(body), IfNoneMatch: '*' }));
    let honoured = false;
    let problem: string | undefined;
    try {
      await put();
      try {
        await put();
      } catch (err) {
        const e = err as SdkError;
        if (e.$metadata?.httpStatusCode === 412 || e.name === 'PreconditionFailed') honoured = true;
        else if (e.$metadata?.httpStatusCode === 501 || e.name === 'NotImplemented') problem = 'it answers 501 Not Implemented to If-None-Match';
        else throw err;
      }
    } catch (err) {
      const e = err as SdkError;
      if (e.$metadata?.httpStatusCode === 501 || e.name === 'NotImplemented') problem = 'it answers 501 Not Implemented to If-None-Match';
      else throw this.wrap(err, 'the If-None-Match probe object');
    } finally {
      await this.deleteKey(key).catch(() => undefined);
    }
    if (!honoured) {
      throw new BackendError(
        `the server at ${this.endpoint ?? 'AWS S3'} does not refuse an overwrite with If-None-Match: * (${problem ?? 'a second conditional PUT of one key succeeded'}), so meshback cannot prevent overwrites there with it: add ?overwrite-check=head to --repo (a HEAD before each PUT; see docs/design.md, "S3 backend")`,
        { retryable: false },
      );
    }
  }

  async put(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const key = this.keyOf(h);
    const parts = data instanceof Uint8Array ? [data] : data;
    const { sdk, c } = await this.client();
    const head = this.opts.overwriteCheck === 'head';
    // overwrite-check=head: a file that exists is compared below instead of being written again
    const exists = head && (await this.stat(h).then(() => true, (err: unknown) => (err instanceof NotFoundError ? false : Promise.reject(err))));
    if (!exists) {
      try {
        await this.send(c, 'PUT', h.type, this.putCommand(sdk, h, parts, { Bucket: this.bucket, Key: key, ...(head ? {} : { IfNoneMatch: '*' }), ...this.lockFields(h.type) }));
        return;
      } catch (err) {
        const e = err as SdkError;
        if (e.$metadata?.httpStatusCode !== 412 && e.name !== 'PreconditionFailed') throw this.wrap(err, handleString(h));
      }
    }
    // the name exists: the same bytes (a retry whose reply was lost) are a no-op
    const existing = await this.get(h);
    if (!existing.equals(joinParts(parts))) {
      throw new BackendError(`refusing to overwrite ${handleString(h)} in ${this.location}: a different file of that name exists`, { retryable: false });
    }
  }

  /**
   * A PutObject of `parts`. Its body's SHA-256 goes in
   * x-amz-content-sha256: the signature covers it and the server checks the body it receives
   * against it, so a body damaged on the way is refused (this replaces Content-MD5, one pass over
   * the bytes fewer); with Object Lock S3 requires Content-MD5 as well, and gets it.
   */
  private putCommand(sdk: Sdk, h: Handle, parts: readonly Uint8Array[], fields: Record<string, unknown>): object {
    let length = 0;
    for (const p of parts) length += p.length;
    const sha256 = hashParts('sha256', parts, 'hex');
    const md5 = this.lockPolicy !== undefined && h.type !== 'lock' ? hashParts('md5', parts, 'base64') : undefined;
    // one buffer, not a stream of the parts: the SDK treats a stream body as a non-retryable
    // streaming request and writes a line about it to the console when the request fails
    const body = parts.length === 1 ? parts[0]! : joinParts(parts);
    const cmd = new sdk.PutObjectCommand({ ...fields, Body: body, ContentLength: length, ...(md5 !== undefined ? { ContentMD5: md5 } : {}) } as ConstructorParameters<Sdk['PutObjectCommand']>[0]);
    cmd.middlewareStack.add(
      (next) => (args) => {
        (args.request as { headers: Record<string, string> }).headers['x-amz-content-sha256'] = sha256;
        return next(args);
      },
      { step: 'build', name: 'meshbackPayloadSha256' },
    );
    return cmd;
  }

  async replace(h: Handle, data: Uint8Array): Promise<void> {
    if (!REPLACEABLE.includes(h.type)) throw new BackendError(`replace is only for repairs of packs and parity files, not ${h.type}`, { retryable: false });
    const { sdk, c } = await this.client();
    try {
      await this.send(c, 'PUT', h.type, this.putCommand(sdk, h, [data], { Bucket: this.bucket, Key: this.keyOf(h), ...this.lockFields(h.type) }));
    } catch (err) {
      throw this.wrap(err, handleString(h));
    }
  }

  async get(h: Handle, range?: { offset: number; length: number }, into?: Buffer): Promise<Buffer> {
    const key = this.keyOf(h);
    const what = handleString(h);
    if (range !== undefined && range.length === 0) {
      const st = await this.stat(h);
      if (range.offset > st.size) throw this.pastEnd(what, range, st.size);
      return Buffer.alloc(0);
    }
    const { sdk, c } = await this.client();
    let r: GetObjectCommandOutput;
    try {
      r = await this.send<GetObjectCommandOutput>(c, 'GET', h.type, new sdk.GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range !== undefined ? { Range: `bytes=${range.offset}-${range.offset + range.length - 1}` } : {}) }));
    } catch (err) {
      const e = err as SdkError;
      if (range !== undefined && (e.$metadata?.httpStatusCode === 416 || e.name === 'InvalidRange')) throw this.pastEnd(what, range);
      throw this.wrap(err, what);
    }
    if (range !== undefined && r.ContentRange === undefined) {
      // a 200 with the whole object: reading its first bytes as the range would be wrong data
      await discard(r.Body);
      throw new BackendError(`storage error on ${what} in ${this.location}: the server ignored the Range header of a ranged read (no Content-Range in its reply)`, { retryable: false });
    }
    const total = range === undefined ? r.ContentLength : totalOf(r.ContentRange);
    if (range !== undefined && total !== undefined && range.offset + range.length > total) {
      await discard(r.Body);
      throw this.pastEnd(what, range, total);
    }
    const want = range?.length ?? r.ContentLength;
    if (want === undefined) {
      await discard(r.Body);
      throw new BackendError(`storage error on ${what} in ${this.location}: the reply has no Content-Length`, { retryable: true });
    }
    const buf = into !== undefined && into.length >= want ? into.subarray(0, want) : Buffer.allocUnsafe(want);
    let got = 0;
    try {
      for await (const chunk of r.Body as AsyncIterable<Uint8Array>) {
        if (got + chunk.length > want) {
          got += chunk.length;
          break;
        }
        buf.set(chunk, got);
        got += chunk.length;
      }
    } catch (err) {
      throw this.wrap(err, `${what} (reading the reply's body)`);
    }
    this.requests.received(Math.min(got, want));
    if (got !== want) {
      await discard(r.Body);
      throw new BackendError(`storage error on ${what} in ${this.location}: ${got < want ? 'truncated read' : 'the reply is longer than announced'} (${got < want ? got : `over ${want}`} bytes of ${want})`, { retryable: true, data: { file: what } });
    }
    return buf;
  }

  private pastEnd(what: string, range: { offset: number; length: number }, size?: number): BackendError {
    return new BackendError(`${what} is shorter than expected (wanted bytes ${range.offset}..${range.offset + range.length}, ${size !== undefined ? `the object has ${size}` : 'the object ends earlier'}): the file is truncated; run 'meshback check --read-data'`, { retryable: false, data: { file: what } });
  }

  async stat(h: Handle): Promise<FileInfo> {
    const { sdk, c } = await this.client();
    try {
      const r = await this.send<HeadObjectCommandOutput>(c, 'HEAD', h.type, new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h) }));
      return { name: h.name, size: r.ContentLength ?? 0 };
    } catch (err) {
      throw this.wrap(err, handleString(h));
    }
  }

  async *list(type: FileType): AsyncIterable<FileInfo> {
    if (type === 'config') {
      try {
        yield await this.stat({ type, name: 'config' });
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
      return;
    }
    const { sdk, c } = await this.client();
    const base = `${this.prefix === '' ? '' : `${this.prefix}/`}${LAYOUT_DIRS[type]}/`;
    const sharded = isSharded(type);
    let token: string | undefined;
    for (;;) {
      let r: { Contents?: { Key?: string; Size?: number }[]; IsTruncated?: boolean; NextContinuationToken?: string };
      try {
        r = await this.send<typeof r>(c, 'LIST', type, new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ...(token !== undefined ? { ContinuationToken: token } : {}) }));
      } catch (err) {
        throw this.wrap(err, `listing of ${LAYOUT_DIRS[type]}/`);
      }
      for (const o of r.Contents ?? []) {
        if (o.Key === undefined) continue;
        const parts = o.Key.slice(base.length).split('/');
        const name = parts[parts.length - 1]!;
        if (parts.length !== (sharded ? 2 : 1) || name === '' || name.startsWith('.')) continue;
        yield { name, size: o.Size ?? 0 };
      }
      if (r.IsTruncated !== true || r.NextContinuationToken === undefined) return;
      token = r.NextContinuationToken;
    }
  }

  async delete(h: Handle): Promise<void> {
    if (this.lockPolicy !== undefined) return this.deleteVersions(h);
    try {
      await this.deleteKey(this.keyOf(h));
    } catch (err) {
      const w = this.wrap(err, handleString(h));
      if (w instanceof NotFoundError && (err as SdkError).name !== 'NoSuchBucket') return;
      throw w;
    }
  }

  private async deleteKey(key: string, versionId?: string): Promise<void> {
    const { sdk, c } = await this.client();
    await this.send(c, 'DELETE', undefined, new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) }));
  }

  /**
   * Delete in an Object Lock repository (the bucket is versioned): a DeleteObject without a
   * version would only hide the file behind a delete marker, its bytes kept (and billed), so every
   * version of the key is deleted. A file under retention is refused before anything is tried:
   * an ObjectLockedError saying until when.
   */
  private async deleteVersions(h: Handle): Promise<void> {
    const what = handleString(h);
    const r = await this.retention(h).catch((err: unknown) => (err instanceof NotFoundError ? undefined : Promise.reject(err)));
    if (r?.until !== undefined && r.until.getTime() > Date.now()) throw this.locked(what, r.until);
    const { sdk, c } = await this.client();
    const key = this.keyOf(h);
    const versions: string[] = [];
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      let page: { Versions?: { Key?: string; VersionId?: string }[]; DeleteMarkers?: { Key?: string; VersionId?: string }[]; IsTruncated?: boolean; NextKeyMarker?: string; NextVersionIdMarker?: string };
      try {
        page = await this.send<typeof page>(c, 'LIST', undefined, new sdk.ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: key, ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}), ...(versionMarker !== undefined ? { VersionIdMarker: versionMarker } : {}) }));
      } catch (err) {
        throw this.wrap(err, `versions of ${what}`);
      }
      for (const v of [...(page.Versions ?? []), ...(page.DeleteMarkers ?? [])]) if (v.Key === key && v.VersionId !== undefined) versions.push(v.VersionId);
      if (page.IsTruncated !== true) break;
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
    }
    for (const vid of versions) {
      try {
        await this.deleteKey(key, vid);
      } catch (err) {
        const e = err as SdkError;
        if (e.$metadata?.httpStatusCode === 404 || e.name === 'NoSuchVersion' || e.name === 'NoSuchKey') continue;
        if (isLockRefusal(err)) throw this.locked(what, undefined, err);
        throw this.wrap(err, what);
      }
    }
  }

  private locked(what: string, until: Date | undefined, cause?: unknown): ObjectLockedError {
    return new ObjectLockedError(`${what} in ${this.location} is under Object Lock retention${until !== undefined ? ` until ${until.toISOString()}` : ''}: it cannot be deleted before then`, until, cause);
  }

  // ---- Object Lock

  private async lockSupport(): Promise<string | undefined> {
    const { sdk, c } = await this.client();
    let cfg: { ObjectLockConfiguration?: { ObjectLockEnabled?: string; Rule?: { DefaultRetention?: { Mode?: string; Days?: number; Years?: number } } } };
    try {
      cfg = await this.send<typeof cfg>(c, 'GET', undefined, new sdk.GetObjectLockConfigurationCommand({ Bucket: this.bucket }));
    } catch (err) {
      const e = err as SdkError;
      if (e.name === 'ObjectLockConfigurationNotFoundError' || /object lock configuration does not exist/i.test(e.message ?? '')) {
        return `the bucket ${this.bucket} has no Object Lock: create a bucket with Object Lock enabled (aws s3api create-bucket --object-lock-enabled-for-bucket, mc mb --with-lock) and use it in --repo`;
      }
      throw this.wrap(err, `the Object Lock configuration of bucket ${this.bucket}`);
    }
    const conf = cfg.ObjectLockConfiguration;
    if (conf?.ObjectLockEnabled !== 'Enabled') return `the bucket ${this.bucket} does not have Object Lock enabled: create a bucket with Object Lock enabled and use it in --repo`;
    const d = conf.Rule?.DefaultRetention;
    if (d !== undefined && (d.Days !== undefined || d.Years !== undefined)) {
      return `the bucket ${this.bucket} has a default retention rule (${d.Mode ?? '?'} ${d.Days !== undefined ? `${d.Days} days` : `${d.Years} years`}): it would lock meshback's lock files too, which must be deletable; remove the bucket's default rule (meshback sets a retention on every other file itself)`;
    }
    return undefined;
  }

  private async retention(h: Handle): Promise<FileRetention> {
    const { sdk, c } = await this.client();
    try {
      const r = await this.send<HeadObjectCommandOutput>(c, 'HEAD', h.type, new sdk.HeadObjectCommand({ Bucket: this.bucket, Key: this.keyOf(h) }));
      const mode = r.ObjectLockMode === 'COMPLIANCE' ? 'compliance' : r.ObjectLockMode === 'GOVERNANCE' ? 'governance' : undefined;
      return { ...(r.ObjectLockRetainUntilDate !== undefined ? { until: new Date(r.ObjectLockRetainUntilDate) } : {}), ...(mode !== undefined ? { mode } : {}), ...(r.LastModified !== undefined ? { modified: new Date(r.LastModified) } : {}) };
    } catch (err) {
      throw this.wrap(err, handleString(h));
    }
  }

  private async hidden(type: FileType): Promise<HiddenFile[]> {
    const { sdk, c } = await this.client();
    const base = `${this.prefix === '' ? '' : `${this.prefix}/`}${type === 'config' ? 'config' : `${LAYOUT_DIRS[type]}/`}`;
    const sharded = isSharded(type);
    const byKey = new Map<string, { markers: { id: string; at: number; latest: boolean }[]; newest?: { at: number; size: number } }>();
    let keyMarker: string | undefined;
    let versionMarker: string | undefined;
    for (;;) {
      let page: {
        Versions?: { Key?: string; VersionId?: string; LastModified?: Date; Size?: number }[];
        DeleteMarkers?: { Key?: string; VersionId?: string; LastModified?: Date; IsLatest?: boolean }[];
        IsTruncated?: boolean;
        NextKeyMarker?: string;
        NextVersionIdMarker?: string;
      };
      try {
        page = await this.send<typeof page>(c, 'LIST', undefined, new sdk.ListObjectVersionsCommand({ Bucket: this.bucket, Prefix: base, ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}), ...(versionMarker !== undefined ? { VersionIdMarker: versionMarker } : {}) }));
      } catch (err) {
        throw this.wrap(err, `the versions under ${base}`);
      }
      const entry = (key: string) => {
        let e = byKey.get(key);
        if (e === undefined) byKey.set(key, (e = { markers: [] }));
        return e;
      };
      for (const m of page.DeleteMarkers ?? []) if (m.Key !== undefined && m.VersionId !== undefined) entry(m.Key).markers.push({ id: m.VersionId, at: m.LastModified?.getTime() ?? 0, latest: m.IsLatest === true });
      for (const v of page.Versions ?? []) {
        if (v.Key === undefined) continue;
        const e = entry(v.Key);
        const at = v.LastModified?.getTime() ?? 0;
        if (e.newest === undefined || e.newest.at < at) e.newest = { at, size: v.Size ?? 0 };
      }
      if (page.IsTruncated !== true) break;
      keyMarker = page.NextKeyMarker;
      versionMarker = page.NextVersionIdMarker;
    }
    const out: HiddenFile[] = [];
    for (const [key, e] of byKey) {
      // hidden: the latest version is a delete marker, and a stored version is under it
      if (e.newest === undefined || !e.markers.some((m) => m.latest)) continue;
      let name: string;
      if (type === 'config') {
        if (key !== base) continue;
        name = 'config';
      } else {
        const parts = key.slice(base.length).split('/');
        name = parts[parts.length - 1]!;
        if (parts.length !== (sharded ? 2 : 1) || name === '' || name.startsWith('.')) continue;
      }
      const markers = e.markers.filter((m) => m.at >= e.newest!.at).sort((a, b) => b.at - a.at).map((m) => m.id);
      out.push({ type, name, markers, size: e.newest.size, modified: new Date(e.newest.at) });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  private async unhide(f: HiddenFile): Promise<void> {
    const key = this.keyOf(f);
    for (const id of f.markers) {
      try {
        await this.deleteKey(key, id);
      } catch (err) {
        const e = err as SdkError;
        if (e.$metadata?.httpStatusCode === 404 || e.name === 'NoSuchVersion') continue;
        throw this.wrap(err, `the delete marker of ${handleString(f)}`);
      }
    }
  }

  private async extendRetention(h: Handle, until: Date): Promise<void> {
    const p = this.lockPolicy;
    if (p === undefined) throw new BackendError(`cannot extend the retention of ${handleString(h)}: the repository at ${this.location} has no Object Lock policy`, { retryable: false });
    const { sdk, c } = await this.client();
    try {
      await this.send(c, 'PUT', h.type, new sdk.PutObjectRetentionCommand({ Bucket: this.bucket, Key: this.keyOf(h), Retention: { Mode: p.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE', RetainUntilDate: until } }));
    } catch (err) {
      throw this.wrap(err, `the retention of ${handleString(h)}`);
    }
  }

  async close(): Promise<void> {
    const p = this.clientP;
    this.clientP = undefined;
    if (p !== undefined) (await p.catch(() => undefined))?.c.destroy();
  }
}

function bucketMissing(at: { bucket: string; endpoint: string | undefined; location: string }): NotFoundError {
  return new NotFoundError(`the bucket ${at.bucket} does not exist${at.endpoint !== undefined ? ` at ${at.endpoint}` : ''}: create it first, or correct the bucket in --repo ${at.location}`, { bucket: at.bucket });
}

/**
 * Maps an SDK or network error of a request about `what` to the project's errors, with a one-line
 * message: a missing bucket or key is a NotFoundError; refused credentials, no credentials or no
 * region a BackendError not retryable; 5xx, SlowDown, timeouts and connection failures a retryable
 * BackendError; anything else a BackendError not retryable.
 */
export function s3Error(err: unknown, what: string, at: { bucket: string; endpoint: string | undefined; location: string }): Error {
  if (err instanceof MeshbackError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as SdkError;
  const name = e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  const msg = errMessage(err).replace(/\s+/g, ' ').trim();
  const where = `${what} in ${at.location}`;
  if (name === 'NoSuchBucket') return bucketMissing(at);
  if (name === 'NoSuchKey' || name === 'NotFound' || status === 404) return new NotFoundError(`${what} does not exist in the repository at ${at.location}`);
  if (DENIED_NAMES.has(name) || status === 403) {
    return new BackendError(`storage error on ${where}: the server refused access (${name !== '' && name !== 'Unknown' ? name : `HTTP ${status}`}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile or role the AWS credential chain found) and the bucket's permissions`, { cause: err, retryable: false });
  }
  if (name === 'CredentialsProviderError') {
    return new BackendError(`storage error on ${where}: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`, { cause: err, retryable: false });
  }
  if (/region is missing/i.test(msg)) return new BackendError(`storage error on ${where}: no AWS region: set AWS_REGION (or a region in the profile)`, { cause: err, retryable: false });
  const code = errnoCode(err);
  const retryable =
    (status !== undefined && status >= 500) ||
    RETRYABLE_NAMES.has(name) ||
    isTransientErrno(code) ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    /socket hang up|ECONNRESET|ETIMEDOUT|EPIPE|aborted|timed? ?out/i.test(msg);
  return new BackendError(`storage error on ${where}: ${name !== '' && name !== 'Error' && !msg.startsWith(name) ? `${name}: ` : ''}${msg}${status !== undefined ? ` (HTTP ${status})` : ''}`, { cause: err, retryable });
}

/** A DeleteObject refused because the version is under retention: AWS answers 403 AccessDenied, MinIO 400 InvalidRequest, both naming the lock. */
export function isLockRefusal(err: unknown): boolean {
  const e = (typeof err === 'object' && err !== null ? err : {}) as SdkError;
  const status = e.$metadata?.httpStatusCode;
  return (status === 403 || status === 400) && /lock|retention|WORM|protected/i.test(`${e.name ?? ''} ${e.message ?? ''}`);
}

/** MESHBACK_S3_TIMEOUT_MS: how long a request may go with no byte moving before it fails (default 120 s; tests set it shorter). */
export function s3TimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = env['MESHBACK_S3_TIMEOUT_MS'];
  if (v === undefined || v === '') return 120_000;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`MESHBACK_S3_TIMEOUT_MS=${v} is not a positive whole number of milliseconds: fix or unset it`);
  return n;
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('base64');
}

function hashParts(alg: 'sha256' | 'md5', parts: readonly Uint8Array[], enc: 'hex' | 'base64'): string {
  const h = createHash(alg);
  for (const p of parts) h.update(p);
  return h.digest(enc);
}

/** The object's size from a Content-Range reply header (`bytes 0-9/100`). */
function totalOf(contentRange: string | undefined): number | undefined {
  const m = contentRange === undefined ? null : /\/(\d+)\s*$/.exec(contentRange);
  return m === null ? undefined : Number(m[1]);
}

/** Lets go of a reply body not read to its end. */
async function discard(body: unknown): Promise<void> {
  const b = body as { destroy?: () => void } | undefined;
  b?.destroy?.();
}
