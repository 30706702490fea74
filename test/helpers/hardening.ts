/**
 * Shared pieces of the hardening suites (test/hardening): the test credentials and the log scan
 * for them, a configuration for a service on loopback, an HTTPS client with its own deadline (an
 * unanswered admission is a failure, never a hang), an s3rver that records every request's method,
 * and the source Secret the restore path copies.
 */
import { Agent, request as httpsRequest } from 'node:https'
import type { IncomingHttpHeaders } from 'node:http'
import { Writable } from 'node:stream'
import { runInNewContext } from 'node:vm'
import { setFlagsFromString } from 'node:v8'
import type { Logger } from 'pino'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { createLogger } from '../../src/log.js'
import { S3RVER_KEY, startS3rver, storeConfig, type RecordedS3Request } from './storage-servers.js'

// ---------------------------------------------------------------------------------------------
// Test credentials: each distinctive, so a leak is found by a plain substring search.

/**
 * The service's own S3 secret key. s3rver checks the access key id (it must be S3RVER) but does not
 * verify signatures, so the secret can be anything: a distinctive one makes a leak findable.
 */
export const S3_SECRET_KEY = 'hardening-s3-secret-key-Qx7vT2pL9w'
/** RESTIC_PASSWORD in the source Secret (copied into every per-PVC Secret). */
export const RESTIC_PASSWORD = 'hardening-restic-password-Zr4kN8sB1m'
/** AWS_SECRET_ACCESS_KEY in the source Secret (the movers' S3 credentials). */
export const MOVER_AWS_SECRET = 'hardening-mover-aws-secret-Hc6yW3dF5j'
export const MOVER_AWS_KEY_ID = 'AKIAHARDENINGMOVER01'

export const SECRET_VALUES = [S3_SECRET_KEY, RESTIC_PASSWORD, MOVER_AWS_SECRET] as const

/** Every form a value could leak in: plain, base64 (Secret data), base64url, hex. */
export function secretNeedles(values: readonly string[] = SECRET_VALUES): Array<{ value: string; form: string; needle: string }> {
  const out: Array<{ value: string; form: string; needle: string }> = []
  for (const value of values) {
    const b = Buffer.from(value)
    out.push({ value, form: 'plain', needle: value })
    out.push({ value, form: 'base64', needle: b.toString('base64').replace(/=+$/, '') })
    out.push({ value, form: 'base64url', needle: b.toString('base64url') })
    out.push({ value, form: 'hex', needle: b.toString('hex') })
  }
  return out
}

/** The needles found in `text` (empty: nothing leaked). */
export function findSecrets(text: string, values: readonly string[] = SECRET_VALUES): string[] {
  return secretNeedles(values)
    .filter((n) => text.includes(n.needle))
    .map((n) => `${n.form} of ${n.value.slice(0, 12)}…`)
}

/** The assertions used here, loosely typed so any tap Test fits. */
type Assert = { ok: (...args: any[]) => unknown; same: (...args: any[]) => unknown }

/** Asserts the captured log is non-empty and holds none of the test credentials in any form. */
export function assertNoSecrets(t: Assert, text: string, what = 'the service log', values: readonly string[] = SECRET_VALUES): void {
  t.ok(text.length > 0, `${what} is not empty (${text.length} bytes searched)`)
  t.same(findSecrets(text, values), [], `${what} holds no test credential (plain, base64, base64url, hex)`)
}

/**
 * A pino logger (the service's own createLogger, so its redaction applies) that scans every line
 * for the test credentials as it is written and keeps only counts and the last lines: for runs of
 * 100,000 admissions, where keeping every line would itself be the memory growth being measured.
 */
export function scanningLogger(level = 'info', values: readonly string[] = SECRET_VALUES): {
  logger: Logger
  bytes: () => number
  lines: () => number
  leaks: () => string[]
  /** Lines at level error (50) or above, counted by signature (`msg | err.message | first stack frame`). */
  errors: () => { count: number; bySignature: Record<string, number> }
  tail: () => string[]
} {
  const needles = secretNeedles(values)
  let bytes = 0
  let lines = 0
  const leaks: string[] = []
  const tail: string[] = []
  let errorCount = 0
  const bySignature: Record<string, number> = {}
  const stream = new Writable({
    write(chunk, _enc, cb) {
      const text = chunk.toString()
      bytes += text.length
      lines += 1
      for (const n of needles) if (text.includes(n.needle) && leaks.length < 20) leaks.push(`${n.form} of ${n.value.slice(0, 12)}…: ${text.slice(0, 300)}`)
      const level = /"level":(\d+)/.exec(text)
      if (level && Number(level[1]) >= 50) {
        errorCount++
        const sig = logSignature(JSON.parse(text))
        bySignature[sig] = (bySignature[sig] ?? 0) + 1
      }
      tail.push(text)
      if (tail.length > 50) tail.shift()
      cb()
    },
  })
  return { logger: createLogger(level, stream), bytes: () => bytes, lines: () => lines, leaks: () => [...leaks], errors: () => ({ count: errorCount, bySignature: { ...bySignature } }), tail: () => [...tail] }
}

/** What an error line is about: `msg | err.message | the first stack frame`, e.g. to tell a known bug from a new one. */
export function logSignature(line: Record<string, any>): string {
  const frame = typeof line.err?.stack === 'string' ? /\n\s+at ([^\n]+)/.exec(line.err.stack)?.[1]?.replace(/\(.*\/(src|node_modules)\//, '($1/') : undefined
  return [line.msg, line.err?.message, frame].filter(Boolean).join(' | ')
}

// ---------------------------------------------------------------------------------------------
// Configuration

export interface HardeningConfigOptions {
  /** S3 endpoint (store s3), or a directory (store local). */
  s3Endpoint?: string
  localDirectory?: string
  deadlineMs?: number
  cacheTtlMs?: number
  requestTimeoutMs?: number
  s3?: Partial<Config['store']['s3']>
}

/** A service on 127.0.0.1, any port, no metrics listener, with the hardening credentials. */
export function hardeningConfig(o: HardeningConfigOptions): Config {
  const base = structuredClone(defaultConfig)
  const store = storeConfig(o.s3Endpoint ?? 'http://127.0.0.1:9', {
    probe: { deadlineMs: o.deadlineMs ?? 500, cacheTtlMs: o.cacheTtlMs ?? 0 },
    s3: { accessKeyId: S3RVER_KEY, secretAccessKey: S3_SECRET_KEY, ...o.s3 },
  })
  if (o.localDirectory !== undefined) {
    store.type = 'local'
    store.local = { directory: o.localDirectory }
  }
  return validateConfig({
    ...base,
    server: { ...base.server, host: '127.0.0.1', port: 0, metricsPort: -1 },
    store,
    kube: { mode: 'standalone', requestTimeoutMs: o.requestTimeoutMs ?? 3000 },
    logLevel: 'debug',
  })
}

/** The source Secret (`restore.sourceSecret`) as the fake apiserver stores it. */
export function sourceSecret(namespace = 'smart-restore', name = 'smart-restore-restic') {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace },
    data: {
      RESTIC_PASSWORD: Buffer.from(RESTIC_PASSWORD).toString('base64'),
      AWS_ACCESS_KEY_ID: Buffer.from(MOVER_AWS_KEY_ID).toString('base64'),
      AWS_SECRET_ACCESS_KEY: Buffer.from(MOVER_AWS_SECRET).toString('base64'),
    },
  }
}

// ---------------------------------------------------------------------------------------------
// HTTPS client

export interface Reply {
  status: number
  headers: IncomingHttpHeaders
  text: string
  json: any
  ms: number
}

export interface PostOptions {
  contentType?: string | null
  /** The client gives up after this long and rejects: an unanswered admission. Default 15 s. */
  timeoutMs?: number
  query?: string
}

/**
 * POSTs to the service over HTTPS, trusting its generated CA. With `keepAlive`, connections are
 * reused like the apiserver's Go client does.
 */
export function httpsClient(url: string, ca: string | undefined, opts: { keepAlive?: boolean; maxSockets?: number } = {}) {
  const agent = new Agent({ ca, keepAlive: opts.keepAlive ?? false, maxSockets: opts.maxSockets ?? 8 })
  const post = (path: string, body: string | Buffer | undefined, o: PostOptions = {}): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const started = performance.now()
      const headers: Record<string, string | number> = {}
      const contentType = o.contentType === undefined ? 'application/json' : o.contentType
      if (contentType !== null) headers['content-type'] = contentType
      if (body !== undefined) headers['content-length'] = Buffer.byteLength(body)
      const req = httpsRequest(`${url}${path}${o.query ?? '?timeout=10s'}`, { method: 'POST', agent, headers }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('error', reject)
        res.on('end', () => {
          clearTimeout(timer)
          const text = Buffer.concat(chunks).toString('utf8')
          let json: any
          try {
            json = text ? JSON.parse(text) : undefined
          } catch {
            json = undefined
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json, ms: performance.now() - started })
        })
      })
      const timer = setTimeout(() => {
        req.destroy(new Error(`no answer to POST ${path} within ${o.timeoutMs ?? 15_000} ms`))
      }, o.timeoutMs ?? 15_000)
      req.on('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
      req.end(body)
    })
  return { post, agent, close: () => agent.destroy() }
}

// ---------------------------------------------------------------------------------------------
// s3rver with a request log

/** startS3rver's, with the shape the hardening suites read: the log as `requests`, and the writes in it. */
export async function startRecordingS3rver(): Promise<{
  endpoint: string
  requests: RecordedS3Request[]
  /** Requests that could change the bucket: anything but GET and HEAD. */
  writes: () => RecordedS3Request[]
  close: () => Promise<void>
}> {
  const s3 = await startS3rver()
  return {
    endpoint: s3.endpoint,
    requests: s3.log,
    writes: () => s3.log.filter((r) => r.method !== 'GET' && r.method !== 'HEAD'),
    close: s3.close,
  }
}

// ---------------------------------------------------------------------------------------------
// Memory

/**
 * A full garbage collection, when one can be had: `global.gc` under --expose-gc, else the same
 * function obtained by setting the flag at run time (V8 exposes `gc` to contexts created after it).
 */
export function gcFunction(): (() => void) | undefined {
  const g = globalThis as { gc?: () => void }
  if (typeof g.gc === 'function') return g.gc
  try {
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as unknown
    return typeof gc === 'function' ? (gc as () => void) : undefined
  } catch {
    return undefined
  }
}

/** Heap used after (when possible) a full collection, and RSS, in bytes. */
export async function memorySample(gc = gcFunction()): Promise<{ heapUsed: number; rss: number; collected: boolean }> {
  if (gc) {
    for (let i = 0; i < 3; i++) {
      gc()
      await new Promise((r) => setImmediate(r))
    }
  }
  const m = process.memoryUsage()
  return { heapUsed: m.heapUsed, rss: m.rss, collected: gc !== undefined }
}

export const MiB = 1024 * 1024
