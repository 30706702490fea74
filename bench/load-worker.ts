/**
 * The load generator, in a worker thread of the runner: autocannon over HTTPS with keep-alive
 * (HTTP/1.1, no pipelining: one request at a time per connection, as the apiserver's webhook client
 * sends them), and the burst of concurrent duplicates. Its own event loop, so neither the runner's
 * stand-ins (s3rver, the fake apiserver) nor the service slow the clock it measures with.
 *
 * Latencies are taken per response from autocannon's `response` event (fractional ms; autocannon's
 * own histogram keeps whole milliseconds), 2xx only.
 */
import { parentPort } from 'node:worker_threads'
import { Agent, request } from 'node:https'
import autocannon, { type AutocannonRequest, type AutocannonResult } from 'autocannon'
import { render, type BodyTemplate } from './lib/bodies.js'
import { percentiles } from './lib/stats.js'

export interface LoadJob {
  type: 'load'
  url: string
  path: string
  connections: number
  durationSeconds: number
  /** Requests per second over all connections; absent: as fast as the server answers. */
  overallRate?: number
  /** A constant body, or a template rendered for request numbers start, start+1, ... */
  body: { constant: string } | { template: BodyTemplate; start: number }
}

export interface BurstJob {
  type: 'burst'
  url: string
  path: string
  count: number
  template: BodyTemplate
  start: number
}

export interface LoadResult {
  requests: number
  rps: number
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  statusCodes: Record<string, number>
  latencyMs: { p50: number; p99: number; p999: number; max: number }
  durationSeconds: number
  /** Request numbers used (for the next job's `start`). */
  used: number
}

export interface BurstResult {
  ok: number
  statuses: Record<string, number>
  allowed: number
  decisions: Record<string, number>
  latencyMs: { p50: number; max: number }
  wallMs: number
}

function runLoad(job: LoadJob): Promise<LoadResult> {
  const latencies: number[] = []
  let n = 0
  const headers = { 'content-type': 'application/json' }
  const body = job.body
  const requests: AutocannonRequest[] =
    'constant' in body
      ? [{ method: 'POST', path: job.path, headers, body: body.constant }]
      : [
          {
            method: 'POST',
            path: job.path,
            headers,
            setupRequest: (req: AutocannonRequest) => {
              req.body = render(body.template, body.start + n++)
              return req
            },
          },
        ]
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: job.url,
        connections: job.connections,
        pipelining: 1,
        duration: job.durationSeconds,
        timeout: 10,
        ...(job.overallRate ? { overallRate: job.overallRate } : {}),
        requests,
      },
      (err, r: AutocannonResult) => {
        if (err) return reject(err)
        const [p50, p99, p999, max] = percentiles(latencies, [50, 99, 99.9, 100])
        const statusCodes: Record<string, number> = {}
        for (const [code, s] of Object.entries(r.statusCodeStats ?? {})) statusCodes[code] = s.count
        // In a worker thread autocannon hands back its raw, unaggregated result.
        const total = r.totalCompletedRequests
        resolve({
          requests: total,
          rps: total / r.duration,
          ok: r['2xx'],
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          statusCodes,
          latencyMs: { p50: p50!, p99: p99!, p999: p999!, max: max! },
          durationSeconds: r.duration,
          used: n,
        })
      },
    )
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status >= 200 && status < 300) latencies.push(ms)
    })
  })
}

function post(agent: Agent, url: string, body: string | undefined): Promise<{ status: number; text: string; ms: number }> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = request(url, { method: body === undefined ? 'GET' : 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, ms: performance.now() - started }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/**
 * `count` CREATEs of one PVC at the same moment, each on its own already-open keep-alive connection
 * (opened and used once beforehand, so no TLS handshake spreads them out), as when a retry storm or
 * a GitOps tool and kubectl hit the apiserver together.
 */
async function runBurst(job: BurstJob): Promise<BurstResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: job.count, maxFreeSockets: job.count, rejectUnauthorized: false })
  try {
    await Promise.all(Array.from({ length: job.count }, () => post(agent, `${job.url}/healthz`, undefined)))
    const bodies = Array.from({ length: job.count }, (_, i) => render(job.template, job.start + i))
    const started = performance.now()
    const answers = await Promise.all(bodies.map((b) => post(agent, `${job.url}${job.path}`, b)))
    const wallMs = performance.now() - started
    const statuses: Record<string, number> = {}
    const decisions: Record<string, number> = {}
    let allowed = 0
    for (const a of answers) {
      statuses[a.status] = (statuses[a.status] ?? 0) + 1
      try {
        const res = JSON.parse(a.text).response
        if (res?.allowed) allowed++
        const patch = res?.patch ? JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8')) : []
        const decision =
          (patch as Array<{ path: string; value: unknown }>).find((p) => p.path.endsWith('smart-restore.io~1decision'))?.value ??
          (patch as Array<{ path: string; value: Record<string, string> }>).find((p) => p.path === '/metadata/annotations')?.value?.['smart-restore.io/decision'] ??
          (res?.allowed ? 'allowed (no decision annotation)' : `denied ${res?.status?.code}`)
        decisions[String(decision)] = (decisions[String(decision)] ?? 0) + 1
      } catch {
        decisions['unparsable answer'] = (decisions['unparsable answer'] ?? 0) + 1
      }
    }
    const [p50, max] = percentiles(answers.map((a) => a.ms), [50, 100])
    return { ok: answers.filter((a) => a.status === 200).length, statuses, allowed, decisions, latencyMs: { p50: p50!, max: max! }, wallMs }
  } finally {
    agent.destroy()
  }
}

parentPort?.on('message', (job: LoadJob | BurstJob) => {
  const run = job.type === 'load' ? runLoad(job) : runBurst(job)
  run.then(
    (result) => parentPort?.postMessage({ ok: true, result }),
    (err: unknown) => parentPort?.postMessage({ ok: false, error: String((err as Error)?.stack ?? err) }),
  )
})
