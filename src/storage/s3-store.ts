/**
 * "Is there a snapshot?" against S3 (AWS, MinIO, Ceph RGW, ...), one signed request per probe.
 *
 * list mode: ListObjectsV2 `<key>/snapshots/` max-keys 1. restic writes snapshot files last, so one
 * object there is a complete snapshot (design.md §3). head mode: HEAD of the expanded head key.
 * Anything but a clear answer is `unknown`, and the probe returns by its deadline whatever S3 does.
 */
import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { rootCertificates } from 'node:tls'
import {
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import type { StoreConfig } from '../config/schema.js'
import type { BackupStore, LockResult, ProbeOptions, ProbeResult, UnknownKind } from './types.js'
import { headKeyFor, normalizeKey, probeFields, silentLogger, trimSlashes, unknown, withDeadline, type StoreLogger } from './common.js'
import { probeResticRepository, type PasswordSource } from './restic-probe.js'
import { ResticReader } from './restic/reader.js'
import type { ListedObject, RepositoryObjects } from './restic/objects.js'

export interface S3BackupStoreOptions {
  logger?: StoreLogger
  /** SDK attempts per probe (first try + retries), all inside the deadline. Default 3. */
  maxAttempts?: number
  /** RESTIC_PASSWORD of the repositories, for probe mode restic. */
  password?: PasswordSource
  /** Extra CA certificates (PEM) to trust for the endpoint: store.s3.caBundle's content. */
  caBundle?: string
}

/** Pages of 1,000 keys read from one listing of `snapshots/` or `keys/`: 20,000 snapshots. */
const MAX_LIST_PAGES = 20

/** How long a successful HeadBucket vouches for the bucket in head mode. */
const BUCKET_CHECK_TTL_MS = 5 * 60_000

const CREDENTIAL_CODES = new Set([
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'InvalidClientTokenId',
  'MissingSecurityHeader',
  'CredentialsProviderError',
])
const FORBIDDEN_CODES = new Set(['AccessDenied', 'Forbidden', 'AllAccessDisabled', 'AccountProblem'])
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
])
const TLS_CODE = /CERT|SSL|TLS|EPROTO|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)/

interface SdkError {
  name?: string
  code?: string
  Code?: string
  message?: string
  $fault?: string
  $metadata?: { httpStatusCode?: number; attempts?: number }
}

/** What one probe saw, so a deadline can report the last real failure instead of a bare timeout. */
interface Trace {
  attempts: number
  lastError?: unknown
  signal?: AbortSignal
}

export class S3BackupStore implements BackupStore {
  private readonly client: S3Client
  private readonly log: StoreLogger
  private readonly bucket: string
  private readonly deadlineMs: number
  private bucketVerifiedAt = -Infinity
  private readonly password?: PasswordSource
  readonly moverCa?: string
  /** Master keys and decrypted snapshots, kept across probes (restic mode). */
  readonly reader = new ResticReader()

  constructor(
    private readonly cfg: StoreConfig,
    opts: S3BackupStoreOptions = {},
  ) {
    this.log = opts.logger ?? silentLogger
    this.bucket = cfg.s3.bucket
    this.deadlineMs = cfg.probe.deadlineMs
    this.password = opts.password
    if (opts.caBundle) this.moverCa = opts.caBundle
    const { accessKeyId, secretAccessKey } = cfg.s3
    // Per-attempt limits sit below the deadline so a hung connection is abandoned and retried on a
    // fresh one while there is still time; the deadline itself bounds the sum of all attempts.
    const connectionTimeout = clamp(Math.floor(this.deadlineMs / 3), 50, 2000)
    const requestTimeout = Math.max(50, Math.floor((this.deadlineMs * 2) / 3))
    // As many idle sockets as active ones: a burst of probes must not close and reopen connections.
    const agentOptions = { keepAlive: true, maxSockets: 16, maxFreeSockets: 16 }
    // A private CA adds to the system's roots (Node's `ca` replaces them, hence the concatenation).
    const httpsOptions = opts.caBundle ? { ...agentOptions, ca: [...rootCertificates, opts.caBundle] } : agentOptions
    const config: S3ClientConfig = {
      region: cfg.s3.region || 'us-east-1',
      forcePathStyle: cfg.s3.forcePathStyle,
      maxAttempts: opts.maxAttempts ?? 3,
      requestHandler: {
        connectionTimeout,
        requestTimeout,
        // Without it the handler only logs a warning when requestTimeout passes.
        throwOnRequestTimeout: true,
        httpAgent: new HttpAgent(agentOptions),
        httpsAgent: new HttpsAgent(httpsOptions),
      },
    }
    if (cfg.s3.endpoint) config.endpoint = cfg.s3.endpoint
    if (accessKeyId && secretAccessKey) config.credentials = { accessKeyId, secretAccessKey }
    this.client = new S3Client(config)
    if (cfg.probe.mode === 'head' && /^\{key\}\/?$/.test(cfg.probe.headKeyTemplate.trim())) {
      this.log.warn(
        { headKeyTemplate: cfg.probe.headKeyTemplate },
        'head probe of the repository prefix itself: real S3 answers 404 for a "directory", so every PVC would look fresh; use list mode or e.g. {key}/config',
      )
    }
  }

  location(key: string): string {
    return `s3://${this.bucket}/${trimSlashes(key)}`
  }

  resticRepository(key: string): string {
    const endpoint = this.cfg.s3.endpoint.replace(/\/+$/, '') || 's3.amazonaws.com'
    return `s3:${endpoint}/${this.bucket}/${trimSlashes(key)}`
  }

  close(): void {
    this.client.destroy()
  }

  async probe(key: string, options: ProbeOptions = {}): Promise<ProbeResult> {
    const location = this.location(key)
    const trace: Trace = { attempts: 0 }
    const started = Date.now()
    const result = await withDeadline(
      (signal) => {
        trace.signal = signal
        const mode = this.cfg.probe.mode
        if (mode === 'head') return this.probeHead(key, location, trace)
        if (mode === 'list') return this.probeList(key, location, trace)
        const k = normalizeKey(key)
        if (typeof k !== 'string') return Promise.resolve(unknown(location, 'other', `cannot probe: ${k.invalid}`))
        return probeResticRepository(location, this.objects(k, trace), options, this.reader, this.password, signal)
      },
      this.deadlineMs,
      () => this.deadlineResult(location, trace),
      (err) => this.errorResult(location, err, trace),
    )
    const fields = { key, location, mode: this.cfg.probe.mode, attempts: trace.attempts, ms: Date.now() - started }
    if (result.state === 'unknown') this.log.warn({ ...fields, kind: result.kind, reason: result.reason, error: describe(trace.lastError) }, 'backup probe inconclusive')
    else if (result.state === 'unreadable') this.log.warn({ ...fields, kind: result.kind, reason: result.reason }, 'backup repository unreadable')
    else this.log.debug({ ...fields, ...probeFields(result) }, 'backup probe answered')
    return result
  }

  /** One repository's files through this store's client, every request traced like the probe's. */
  private objects(k: string, trace: Trace): RepositoryObjects {
    return {
      list: async (dir, signal) => {
        const prefix = `${k}/${dir}/`
        const found: ListedObject[] = []
        let ContinuationToken: string | undefined
        for (let page = 0; page < MAX_LIST_PAGES; page++) {
          const out = await this.client.send(this.traced(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken }), trace), { abortSignal: signal })
          if (out.KeyCount === undefined && out.Name === undefined && out.Prefix === undefined && out.IsTruncated === undefined) {
            throw Object.assign(new Error('S3 answered 200 to ListObjectsV2 with something that is not a bucket listing'), { name: 'SyntaxError' })
          }
          for (const o of out.Contents ?? []) {
            if (!o.Key?.startsWith(prefix)) throw Object.assign(new Error(`S3 listed "${o.Key}" for prefix "${prefix}"`), { name: 'SyntaxError' })
            const name = o.Key.slice(prefix.length)
            if (name && !name.includes('/')) found.push({ name, lastModifiedMs: o.LastModified?.getTime() ?? 0, size: o.Size ?? 0 })
          }
          if (!out.IsTruncated || !out.NextContinuationToken) return found
          ContinuationToken = out.NextContinuationToken
        }
        return found
      },
      get: async (path, maxBytes, signal) => {
        const out = await this.client.send(this.traced(new GetObjectCommand({ Bucket: this.bucket, Key: `${k}/${path}` }), trace), { abortSignal: signal })
        if ((out.ContentLength ?? 0) > maxBytes) {
          ;(out.Body as { destroy?: () => void } | undefined)?.destroy?.()
          throw new Error(`${path} is ${out.ContentLength} bytes, more than the ${maxBytes} a restic ${path.split('/')[0]} file can be`)
        }
        const body = await out.Body?.transformToByteArray()
        if (!body) throw Object.assign(new Error(`S3 sent no body for ${path}`), { name: 'SyntaxError' })
        return body
      },
    }
  }

  private async probeList(key: string, location: string, trace: Trace): Promise<ProbeResult> {
    const k = normalizeKey(key)
    if (typeof k !== 'string') return unknown(location, 'other', `cannot probe: ${k.invalid}`)
    const prefix = `${k}/snapshots/`
    const out = await this.client.send(
      this.traced(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, MaxKeys: 1 }), trace),
      { abortSignal: trace.signal },
    )
    const first = out.Contents?.[0]?.Key
    if (first !== undefined) {
      // A listing that ignored the prefix (a broken proxy, a mock) must not vouch for this PVC.
      if (!first.startsWith(prefix)) {
        return unknown(location, 'server', `S3 listed "${first}" for prefix "${prefix}": the answer cannot be trusted`)
      }
      return { state: 'exists', location, detail: `snapshot ${first}` }
    }
    if ((out.KeyCount ?? 0) > 0) return { state: 'exists', location, detail: `${out.KeyCount} object(s) under ${prefix}` }
    // An empty 200 that is not a ListBucketResult (HTML from a proxy, an empty body) parses to an
    // empty listing; only a real listing may say "no backup".
    if (out.KeyCount === undefined && out.Name === undefined && out.Prefix === undefined && out.IsTruncated === undefined) {
      return unknown(location, 'server', 'S3 answered 200 to ListObjectsV2 with something that is not a bucket listing')
    }
    return {
      state: 'none',
      location,
      detail: `no snapshot under s3://${this.bucket}/${prefix} (whether the repository itself exists is not checked)`,
    }
  }

  private async probeHead(key: string, location: string, trace: Trace): Promise<ProbeResult> {
    const headKey = headKeyFor(this.cfg, key)
    if (typeof headKey !== 'string') return unknown(location, 'other', `cannot probe: ${headKey.invalid}`)
    try {
      await this.client.send(this.traced(new HeadObjectCommand({ Bucket: this.bucket, Key: headKey }), trace), {
        abortSignal: trace.signal,
      })
      return { state: 'exists', location, detail: `object s3://${this.bucket}/${headKey} exists` }
    } catch (err) {
      if (status(err) !== 404) throw err
      // An expected answer, not a failure: a HeadBucket that then hangs must read as a timeout.
      trace.lastError = undefined
    }
    // A HEAD answer has no body, so a missing bucket is also a bare 404; a misconfiguration must
    // never read as "no backup", hence one HeadBucket now and then.
    if (Date.now() - this.bucketVerifiedAt > BUCKET_CHECK_TTL_MS) {
      try {
        await this.client.send(this.traced(new HeadBucketCommand({ Bucket: this.bucket }), trace), {
          abortSignal: trace.signal,
        })
        this.bucketVerifiedAt = Date.now()
      } catch (err) {
        if (status(err) === 404) {
          trace.lastError = err
          return unknown(location, 'bucket', `bucket "${this.bucket}" does not exist (HeadBucket answered 404)`)
        }
        throw err
      }
    }
    return { state: 'none', location, detail: `no object s3://${this.bucket}/${headKey} (HEAD answered 404)` }
  }

  async findRecentLock(key: string, maxAgeMs: number): Promise<LockResult> {
    const location = this.location(key)
    const k = normalizeKey(key)
    if (typeof k !== 'string') return { state: 'unknown', location, kind: 'other', reason: `cannot list locks: ${k.invalid}` }
    const trace: Trace = { attempts: 0 }
    const asUnknown = (r: ProbeResult): LockResult => (r.state === 'unknown' ? r : { state: 'unknown', location, kind: 'other', reason: 'unexpected' })
    return withDeadline<LockResult>(
      async (signal) => {
        trace.signal = signal
        // restic keeps few locks (one per running operation); a page of 100 is all of them.
        const out = await this.client.send(
          this.traced(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${k}/locks/`, MaxKeys: 100 }), trace),
          { abortSignal: signal },
        )
        const now = Date.now()
        let newest: { key: string; at: number } | undefined
        for (const o of out.Contents ?? []) {
          const at = o.LastModified?.getTime()
          if (o.Key && at !== undefined && now - at < maxAgeMs && (!newest || at > newest.at)) newest = { key: o.Key, at }
        }
        if (!newest) return { state: 'none', location }
        return { state: 'locked', location, lock: newest.key, ageMs: now - newest.at, since: new Date(newest.at).toISOString() }
      },
      this.deadlineMs,
      () => asUnknown(this.deadlineResult(location, trace)),
      (err) => asUnknown(this.errorResult(location, err, trace)),
    )
  }

  /** Makes every SDK attempt of `command` (first try and retries) record its failure in `trace`. */
  private traced<C extends { middlewareStack: { add(middleware: any, options: object): void } }>(command: C, trace: Trace): C {
    command.middlewareStack.add(
      (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
        trace.attempts++
        try {
          return await next(args)
        } catch (err) {
          // The abort sent at the deadline is not news; keep the failure that came before it.
          if (!trace.signal?.aborted) trace.lastError = err
          throw err
        }
      },
      // The deserialize step runs below the retry middleware (finalizeRequest): once per attempt.
      { step: 'deserialize', priority: 'high', name: 'smartRestoreAttemptTrace', override: true },
    )
    return command
  }

  private deadlineResult(location: string, trace: Trace): ProbeResult {
    const base = `no answer from S3 within the ${this.deadlineMs} ms deadline`
    if (trace.lastError === undefined) return unknown(location, 'timeout', `${base} (${trace.attempts} attempt(s))`)
    // Retries of a failing S3 ran out the clock: report why they failed, it is the actionable part.
    const last = classify(trace.lastError, this.bucket)
    return unknown(location, last.kind, `${base} after ${trace.attempts} attempt(s); last: ${last.reason}`)
  }

  private errorResult(location: string, err: unknown, trace: Trace): ProbeResult {
    if (trace.signal?.aborted) return this.deadlineResult(location, trace)
    trace.lastError = err
    const { kind, reason } = classify(err, this.bucket)
    return unknown(location, kind, reason)
  }
}

/** Maps an SDK/transport error to an UnknownKind and a sentence fit for a denial message. */
export function classify(err: unknown, bucket: string): { kind: UnknownKind; reason: string } {
  const e = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as SdkError
  const httpStatus = e.$metadata?.httpStatusCode
  const code = e.Code ?? (e.name && e.name !== 'Error' ? e.name : undefined) ?? e.code ?? 'Error'
  const sysCode = typeof e.code === 'string' ? e.code : undefined
  // The SDK names a body-less error (any HEAD, an HTML page from a proxy) "Unknown".
  const shownCode = code === 'Unknown' || code === 'UnknownError' ? '(no error code)' : code
  const answered = httpStatus !== undefined ? `S3 answered ${httpStatus} ${shownCode}` : `S3 request failed with ${shownCode}`

  if (e.name === 'CredentialsProviderError') {
    return { kind: 'credentials', reason: 'no S3 credentials: none configured and the AWS default chain found none' }
  }
  if (CREDENTIAL_CODES.has(code)) return { kind: 'credentials', reason: `${answered}: the S3 credentials were rejected` }
  if (code === 'NoSuchBucket') return { kind: 'bucket', reason: `${answered}: bucket "${bucket}" does not exist` }
  if (httpStatus === 403 || FORBIDDEN_CODES.has(code)) {
    return { kind: 'forbidden', reason: `${answered}: the S3 credentials lack permission on bucket "${bucket}"` }
  }
  if (sysCode && NETWORK_CODES.has(sysCode)) return { kind: 'network', reason: `cannot reach S3: ${sysCode}` }
  if (sysCode && TLS_CODE.test(sysCode)) return { kind: 'network', reason: `TLS handshake with S3 failed: ${sysCode}` }
  if (e.name === 'TimeoutError' || sysCode === 'ETIMEDOUT' || e.name === 'AbortError') {
    return { kind: 'timeout', reason: `S3 did not answer in time (${sysCode ?? e.name})` }
  }
  if (httpStatus !== undefined && httpStatus >= 500) return { kind: 'server', reason: `${answered}: S3 server error` }
  if (httpStatus !== undefined && httpStatus >= 200 && httpStatus < 300) {
    return { kind: 'server', reason: `S3 answered ${httpStatus} with a body that could not be parsed` }
  }
  if (httpStatus === 301 || httpStatus === 307 || code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed') {
    return { kind: 'other', reason: `${answered}: wrong region or endpoint for bucket "${bucket}"` }
  }
  if (httpStatus !== undefined) return { kind: 'other', reason: answered }
  if (e.name === 'SyntaxError' || /xml|pars|deserializ/i.test(e.message ?? '')) {
    return { kind: 'server', reason: 'S3 sent an answer that could not be parsed' }
  }
  return { kind: 'other', reason: `S3 request failed (${sysCode ?? code})` }
}

function status(err: unknown): number | undefined {
  return (err as SdkError | undefined)?.$metadata?.httpStatusCode
}

/** Log-only view of an error: its codes and message, never the request (which carries credentials). */
function describe(err: unknown): object | undefined {
  if (err === undefined) return undefined
  const e = err as SdkError
  return { name: e.name, code: e.code ?? e.Code, status: e.$metadata?.httpStatusCode, message: e.message }
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n))
}
