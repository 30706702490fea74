/**
 * Real loopback servers for the storage tests: s3rver (a real S3 implementation), raw HTTP servers
 * that answer exactly what a misbehaving S3 answers.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3'
import { defaultConfig, type StoreConfig } from '../../src/config/schema.js'

export interface Running {
  endpoint: string
  port: number
  /** Requests that reached the server (or passed the proxy). */
  requests: () => number
  /** TCP connections accepted so far. */
  connections: () => number
  close: () => Promise<void>
}

/** A server whose close() also ends keep-alive and hung connections, so tap can exit. */
async function listen(server: Server): Promise<{ port: number; close: () => Promise<void>; connections: () => number }> {
  const sockets = new Set<Socket>()
  let connections = 0
  server.on('connection', (s: Socket) => {
    connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  let closed = false
  return {
    port: address.port,
    connections: () => connections,
    close: async () => {
      if (closed) return
      closed = true
      const done = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await done
    },
  }
}

export const BUCKET = 'backups'
export const S3RVER_KEY = 'S3RVER' // s3rver's built-in account (lib/models/account.js)

/** The method and path (with query) of one request s3rver received. */
export interface RecordedS3Request {
  method: string
  path: string
}

/**
 * s3rver (a real S3 implementation) on loopback, in a temporary directory removed on close. It
 * counts requests and connections, and keeps `log`: the method and path of every request (a
 * caller may empty it to bound memory; `requests()` keeps counting).
 */
export async function startS3rver(): Promise<Running & { directory: string; log: RecordedS3Request[] }> {
  const directory = await mkdtemp(join(tmpdir(), 'smart-restore-s3rver-'))
  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: BUCKET }],
  })
  const { port } = await s3rver.run()
  let count = 0
  let connections = 0
  const log: RecordedS3Request[] = []
  const sockets = new Set<Socket>()
  s3rver.httpServer.on('request', (req: IncomingMessage) => {
    count++
    log.push({ method: req.method ?? '?', path: req.url ?? '' })
  })
  s3rver.httpServer.on('connection', (s: Socket) => {
    connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  let closed = false
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    directory,
    log,
    requests: () => count,
    connections: () => connections,
    close: async () => {
      if (closed) return
      closed = true
      const done = s3rver.close()
      for (const s of sockets) s.destroy()
      await done
      await rm(directory, { recursive: true, force: true })
    },
  }
}

/** A raw HTTP server answering with `handler`; everything it gets is counted. */
export async function startRaw(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Running> {
  let count = 0
  const server = createServer((req, res) => {
    count++
    handler(req, res)
  })
  const { port, close, connections } = await listen(server)
  return { endpoint: `http://127.0.0.1:${port}`, port, requests: () => count, connections, close }
}

/** The XML body real S3 sends with an error status. */
export function s3ErrorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>4442587FB7D0A2F9</RequestId><HostId>test</HostId></Error>`
}

export function answer(status: number, body = '', contentType = 'application/xml') {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume()
    res.writeHead(status, { 'content-type': contentType, 'x-amz-request-id': '4442587FB7D0A2F9' })
    // HEAD answers carry no body, as with real S3.
    res.end(req.method === 'HEAD' ? undefined : body)
  }
}

/** A port nothing listens on: bound, then released. */
export async function closedPort(): Promise<number> {
  const { port, close } = await listen(createServer())
  await close()
  return port
}

export function storeConfig(endpoint: string, over: { probe?: Partial<StoreConfig['probe']>; s3?: Partial<StoreConfig['s3']> } = {}): StoreConfig {
  const base = defaultConfig.store
  return {
    ...base,
    type: 's3',
    s3: {
      endpoint,
      region: 'us-east-1',
      bucket: BUCKET,
      forcePathStyle: true,
      accessKeyId: S3RVER_KEY,
      secretAccessKey: S3RVER_KEY,
      ...over.s3,
    },
    // list mode: these tests seed stand-in snapshot files to exercise S3 itself; the restic mode,
    // which opens real repositories, has its own tests (test/storage/restic-probe.test.ts).
    probe: { ...base.probe, mode: 'list', deadlineMs: 800, cacheTtlMs: 0, ...over.probe },
  }
}

export async function seed(endpoint: string, keys: string[]): Promise<void> {
  await seedObjects(endpoint, keys.map((key) => [key, 'x']))
}

/** Puts objects with their bodies into the bucket (e.g. a repository from writeResticRepository). */
export async function seedObjects(endpoint: string, objects: Array<[key: string, body: string | Buffer]>): Promise<void> {
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY },
    // s3rver predates the SDK's default CRC32 request checksums; only send them when required.
    requestChecksumCalculation: 'WHEN_REQUIRED',
  })
  try {
    for (const [Key, Body] of objects) await client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body }))
  } finally {
    client.destroy()
  }
}
