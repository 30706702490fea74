/**
 * A loopback TCP proxy in front of a stand-in (s3rver, the fake apiserver) that counts the TCP
 * connections the service opens, classifies each by the first request line it carries (watch,
 * discovery, list, get, write), and can delay every answer by a fixed time (an S3 farther away than
 * loopback). It does not parse HTTP beyond that first line: bytes are passed on as they come.
 */
import { createServer, connect, type Socket } from 'node:net'

export type ConnectionClass = 'watch' | 'discovery' | 'list' | 'get' | 'write' | 'other'

export interface CountingProxy {
  url: string
  port: number
  /** Connections accepted so far. */
  connections(): number
  /** Connections accepted so far, by the first request each carried. */
  byClass(): Record<ConnectionClass, number>
  /** Connections open right now. */
  open(): number
  /** Delay each chunk the upstream sends back by this many ms (0: none). Change it only while idle. */
  setDelay(ms: number): void
  close(): Promise<void>
}

const DISCOVERY = /^\/(version|api|apis)(\/[^/]+){0,2}\/?$/

/** The class of a request, from its request line (`GET /path?query HTTP/1.1`). */
export function classify(firstLine: string): ConnectionClass {
  const m = /^([A-Z]+) (\S+) HTTP\//.exec(firstLine)
  if (!m) return 'other'
  const [, method, target] = m as unknown as [string, string, string]
  const q = target.indexOf('?')
  const path = q < 0 ? target : target.slice(0, q)
  const query = q < 0 ? '' : target.slice(q + 1)
  if (method !== 'GET') return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'DELETE' ? 'write' : 'other'
  if (/(^|&)watch=(true|1)(&|$)/.test(query)) return 'watch'
  if (DISCOVERY.test(path) && !/^\/api\/v1\/[^/]+$/.test(path)) return 'discovery'
  // `/api/v1/namespaces/x/secrets/name` (odd segment count after the group/version) is a GET of one object.
  const segs = path.split('/').filter(Boolean)
  const rest = segs[0] === 'api' ? segs.slice(2) : segs.slice(3)
  const named = rest[0] === 'namespaces' ? rest.length >= 4 || rest.length === 2 : rest.length >= 2
  return named ? 'get' : 'list'
}

export async function startProxy(targetPort: number, opts: { delayMs?: number } = {}): Promise<CountingProxy> {
  let delayMs = opts.delayMs ?? 0
  let count = 0
  const classes: Record<ConnectionClass, number> = { watch: 0, discovery: 0, list: 0, get: 0, write: 0, other: 0 }
  const sockets = new Set<Socket>()
  const clients = new Set<Socket>()
  const server = createServer((client) => {
    count++
    sockets.add(client)
    clients.add(client)
    client.setNoDelay(true)
    const upstream = connect(targetPort, '127.0.0.1')
    upstream.setNoDelay(true)
    sockets.add(upstream)
    let first = true
    client.on('data', (chunk: Buffer) => {
      if (first) {
        first = false
        const end = chunk.indexOf('\r\n')
        classes[classify(chunk.subarray(0, end < 0 ? Math.min(chunk.length, 2048) : end).toString('latin1'))]++
      }
      if (!upstream.write(chunk)) client.pause()
    })
    upstream.on('drain', () => client.resume())
    upstream.on('data', (chunk: Buffer) => {
      const d = delayMs
      if (d <= 0) {
        if (!client.write(chunk)) upstream.pause()
      } else {
        // Same delay for every chunk: timers of equal length fire in order, so bytes stay in order.
        setTimeout(() => {
          if (!client.destroyed) client.write(chunk)
        }, d)
      }
    })
    client.on('drain', () => upstream.resume())
    const end = (a: Socket, b: Socket) => () => {
      sockets.delete(a)
      if (delayMs > 0 && !b.destroyed) setTimeout(() => b.end(), delayMs + 1)
      else b.end()
    }
    client.on('end', end(client, upstream))
    upstream.on('end', end(upstream, client))
    client.on('close', () => {
      sockets.delete(client)
      clients.delete(client)
      upstream.destroy()
    })
    upstream.on('close', () => {
      sockets.delete(upstream)
      if (delayMs > 0) setTimeout(() => client.destroy(), delayMs + 1)
      else client.destroy()
    })
    client.on('error', () => upstream.destroy())
    upstream.on('error', () => client.destroy())
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as { port: number }).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    connections: () => count,
    byClass: () => ({ ...classes }),
    open: () => clients.size,
    setDelay(ms) {
      delayMs = ms
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      }),
  }
}
