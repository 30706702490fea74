/**
 * Hardening: the service's answer to a PVC CREATE when S3 misbehaves, end to end.
 *
 * Each fault is a real listener on loopback (node:net / node:http / node:https) doing exactly one
 * bad thing; the real service (startService, HTTPS, standalone: no Kubernetes writes) probes it with
 * the AWS SDK under a 500 ms deadline, and the real apiserver bodies are POSTed to /mutate and
 * /validate over HTTPS. Every fault must be answered — 200, an AdmissionReview denial with code 503
 * "could not check the backup store … Retrying is safe" — within the deadline plus slack, never
 * "fresh" (allowed) and never left unanswered. Where a slow fault would eventually say "no
 * snapshot" (a valid empty listing, late), a service that waited for it would answer fresh: the
 * deadline is what stands between that and an empty volume.
 *
 * (The store-level classification of each failure is covered in test/storage/s3-store.test.ts;
 * this suite is about what the service answers.)
 */
import t from 'tap'
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { startService, type ServiceHandle } from '../../src/service.js'
import { generateCertificates } from '../../src/tls/certificates.js'
import { captureLogger } from '../helpers/capture-log.js'
import { fixtureBody, fixtureReview } from '../helpers/fixtures.js'
import { assertNoSecrets, hardeningConfig, httpsClient, S3_SECRET_KEY } from '../helpers/hardening.js'
import { BUCKET, answer, closedPort, s3ErrorXml, startRaw } from '../helpers/storage-servers.js'

const LONG = process.env.HARDENING_LONG === '1'
/** Concurrent mutating CREATEs per fault (a retry storm); HARDENING_LONG=1 sends 30. */
const BURST = LONG ? 30 : 3
const DEADLINE_MS = 500
/** Service overhead on top of the probe deadline, generous for a loaded 2-core CI machine. */
const SLACK_MS = 1500
const KEY = 'media/data-claim'

const emptyListing = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${BUCKET}</Name><Prefix>${KEY}/snapshots/</Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`

// ---------------------------------------------------------------------------------------------
// Fault listeners: raw TCP, so each can stop at any byte.

interface FaultServer {
  endpoint: string
  /** Requests (or connections, for TCP-level faults) that reached the fault. */
  hits: () => number
  close: () => Promise<void>
}

const timers = new Set<NodeJS.Timeout>()
t.teardown(() => timers.forEach(clearTimeout))
function later(ms: number, fn: () => void): void {
  const h = setTimeout(() => {
    timers.delete(h)
    fn()
  }, ms)
  timers.add(h)
}

async function listenNet(server: NetServer, sockets: Set<Socket>): Promise<{ port: number; close: () => Promise<void> }> {
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    port,
    close: async () => {
      const done = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await done
    },
  }
}

/**
 * A TCP server that reads one HTTP request (up to the blank line) and hands the socket to `onRequest`,
 * which writes whatever bytes the fault calls for.
 */
async function tcpFault(onRequest: (socket: Socket) => void): Promise<FaultServer> {
  let hits = 0
  const sockets = new Set<Socket>()
  const server = createNetServer((socket) => {
    let buffered = ''
    socket.on('data', (d) => {
      buffered += d.toString('latin1')
      // A request without a body ends at the blank line (ListObjectsV2 is a GET).
      while (buffered.includes('\r\n\r\n')) {
        buffered = buffered.slice(buffered.indexOf('\r\n\r\n') + 4)
        hits++
        onRequest(socket)
      }
    })
  })
  const { port, close } = await listenNet(server, sockets)
  return { endpoint: `http://127.0.0.1:${port}`, hits: () => hits, close }
}

function httpAnswer(status: number, statusText: string, body: string, contentType = 'application/xml'): string {
  return `HTTP/1.1 ${status} ${statusText}\r\nContent-Type: ${contentType}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nx-amz-request-id: 4442587FB7D0A2F9\r\n\r\n${body}`
}

/** Writes `bytes`, then resets the connection (TCP RST, not FIN): what a crashing proxy does. */
function resetAfter(bytes: string) {
  return (socket: Socket) => {
    if (bytes) socket.write(bytes)
    // Let the bytes leave before the RST so the client really sees a partial answer.
    setImmediate(() => socket.resetAndDestroy())
  }
}

async function untrustedTlsServer(): Promise<FaultServer> {
  // A certificate from a CA the service does not trust: S3 behind a TLS-intercepting proxy.
  const certs = await generateCertificates(['127.0.0.1', 'localhost'], 1)
  let hits = 0
  const sockets = new Set<Socket>()
  const server = createHttpsServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    hits++
    req.resume()
    res.writeHead(200, { 'content-type': 'application/xml' })
    res.end(emptyListing)
  })
  server.on('tlsClientError', () => {})
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    endpoint: `https://127.0.0.1:${port}`,
    hits: () => hits,
    close: async () => {
      const done = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const s of sockets) s.destroy()
      await done
    },
  }
}

interface FaultCase {
  name: string
  start: () => Promise<FaultServer>
  /** The probe's unknown kinds acceptable for this fault (from the per-admission log line). */
  kinds: string[]
  /** The denial's message names the cause like this. */
  reason: RegExp
  /** The fault was reached (false for faults that fail before any request is sent). */
  reached?: boolean
}

const cases: FaultCase[] = [
  {
    name: 'connection refused (closed port)',
    start: async () => ({ endpoint: `http://127.0.0.1:${await closedPort()}`, hits: () => 0, close: async () => {} }),
    kinds: ['network'],
    reason: /ECONNREFUSED/,
    reached: false,
  },
  {
    name: 'reset before any byte of the answer',
    start: () => tcpFault(resetAfter('')),
    kinds: ['network'],
    reason: /ECONNRESET|cannot reach S3/,
  },
  {
    name: 'reset in the middle of the status line and headers',
    start: () => tcpFault(resetAfter('HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Le')),
    kinds: ['network', 'other', 'server'],
    reason: /ECONNRESET|cannot reach S3|S3 request failed|parse/,
  },
  {
    name: 'reset in the middle of a 200 body (an empty listing, cut short)',
    start: () => {
      const full = httpAnswer(200, 'OK', emptyListing)
      return tcpFault(resetAfter(full.slice(0, full.indexOf('<KeyCount>') + 4)))
    },
    kinds: ['network', 'other', 'server'],
    reason: /ECONNRESET|aborted|cannot reach S3|S3 request failed|parse/,
  },
  {
    name: '500 InternalError (S3 XML error)',
    start: () => tcpFault((s) => s.write(httpAnswer(500, 'Internal Server Error', s3ErrorXml('InternalError', 'We encountered an internal error. Please try again.')))),
    kinds: ['server'],
    reason: /500 InternalError/,
  },
  {
    name: '503 SlowDown (S3 XML error)',
    start: () => tcpFault((s) => s.write(httpAnswer(503, 'Slow Down', s3ErrorXml('SlowDown', 'Please reduce your request rate.')))),
    kinds: ['server'],
    reason: /503 SlowDown/,
  },
  {
    name: '503 ServiceUnavailable (S3 XML error)',
    start: () => tcpFault((s) => s.write(httpAnswer(503, 'Service Unavailable', s3ErrorXml('ServiceUnavailable', 'Service is unable to handle request.')))),
    kinds: ['server'],
    reason: /503 ServiceUnavailable/,
  },
  {
    name: '403 AccessDenied',
    start: () => tcpFault((s) => s.write(httpAnswer(403, 'Forbidden', s3ErrorXml('AccessDenied', 'Access Denied')))),
    kinds: ['forbidden'],
    reason: /403 AccessDenied/,
  },
  {
    name: 'headers slower than the deadline (then a valid empty listing)',
    start: () => tcpFault((s) => later(DEADLINE_MS * 4, () => s.writable && s.write(httpAnswer(200, 'OK', emptyListing)))),
    kinds: ['timeout'],
    reason: /deadline|in time/,
  },
  {
    name: 'body trickling slower than the deadline (a valid empty listing, one byte every 40 ms)',
    start: () =>
      tcpFault((s) => {
        const full = httpAnswer(200, 'OK', emptyListing)
        const headerEnd = full.indexOf('\r\n\r\n') + 4
        s.write(full.slice(0, headerEnd))
        let i = headerEnd
        const drip = () => {
          if (!s.writable || i >= full.length) return
          s.write(full[i++]!)
          later(40, drip)
        }
        drip()
      }),
    kinds: ['timeout'],
    reason: /deadline|in time/,
  },
  {
    name: 'invalid XML in a 200',
    start: () => tcpFault((s) => s.write(httpAnswer(200, 'OK', '<ListBucketResult><Name>backups</Na'))),
    kinds: ['server'],
    reason: /could not be parsed/,
  },
  {
    name: 'a 200 that is not a listing (a captive portal page)',
    start: () => tcpFault((s) => s.write(httpAnswer(200, 'OK', '<html><body>Please log in</body></html>', 'text/html'))),
    kinds: ['server'],
    reason: /not a bucket listing|could not be parsed/,
  },
  {
    name: 'DNS failure (nonexistent.invalid never resolves)',
    start: async () => ({ endpoint: 'http://nonexistent.invalid:9000', hits: () => 0, close: async () => {} }),
    // ENOTFOUND where a resolver answers; a sandbox without one may only time out.
    kinds: ['network', 'timeout'],
    reason: /ENOTFOUND|EAI_AGAIN|deadline/,
    reached: false,
  },
  {
    name: 'TLS failure (https endpoint, plain-HTTP listener)',
    // node:http answers the ClientHello with a plain "400 Bad Request", as any HTTP server would.
    start: () => startRaw(answer(200, emptyListing)).then((s) => ({ endpoint: s.endpoint.replace('http://', 'https://'), hits: s.requests, close: s.close })),
    kinds: ['network', 'other'],
    reason: /TLS|EPROTO|SSL|wrong version/i,
    reached: false,
  },
  {
    name: 'TLS failure (certificate from an untrusted CA)',
    start: () => untrustedTlsServer(),
    kinds: ['network'],
    reason: /TLS|CERT|SELF_SIGNED|UNABLE_TO/,
    reached: false,
  },
]

const mutateBody = fixtureBody('create.mutating.json')
const validateBody = fixtureBody('create.validating.json')
const mutateUid = fixtureReview('create.mutating.json').request.uid as string
const validateUid = fixtureReview('create.validating.json').request.uid as string
const UNKNOWN_MESSAGE = new RegExp(
  `^smart-restore could not check the backup store for ${KEY} at s3://${BUCKET}/${KEY}: .+\\. The PVC was not created, so no empty volume can be backed up over your data\\. Retrying is safe`,
)

const allLogs: string[] = []
const started = performance.now()

for (const c of cases) {
  t.test(c.name, async (t) => {
    const fault = await c.start()
    t.teardown(fault.close)
    const log = captureLogger('debug')
    t.teardown(() => void allLogs.push(log.text()))
    const config = hardeningConfig({ s3Endpoint: fault.endpoint, deadlineMs: DEADLINE_MS })
    const service: ServiceHandle = await startService(config, { logger: log.logger, kubeConfig: null, cluster: null, inFlight: null })
    t.teardown(() => service.close())
    t.equal(service.mode, 'standalone')
    // A socket per request of the burst: the client must not queue them (that would be its delay, not the service's).
    const client = httpsClient(service.url, service.caCert, { keepAlive: true, maxSockets: BURST + 2 })
    t.teardown(client.close)

    // BURST concurrent mutating CREATEs (a retry storm; the cache shares one probe between them)
    // and the validating cross-check, all at once; then one more on its own, after the first probe
    // ended: `unknown` is never cached.
    const burst = await Promise.all([client.post('/validate', validateBody), ...Array.from({ length: BURST }, () => client.post('/mutate', mutateBody))])
    const replies = [...burst, await client.post('/mutate', mutateBody)]

    replies.forEach((r, i) => {
      const what = i === 0 ? 'validate' : `mutate #${i}`
      t.equal(r.status, 200, `${what}: HTTP 200 with an AdmissionReview`)
      t.equal(r.json?.apiVersion, 'admission.k8s.io/v1', `${what}: apiVersion`)
      t.equal(r.json?.kind, 'AdmissionReview', `${what}: kind`)
      const res = r.json?.response ?? {}
      t.equal(res.uid, i === 0 ? validateUid : mutateUid, `${what}: echoes the uid`)
      t.equal(res.allowed, false, `${what}: denied, never fresh`)
      t.notOk(res.patch, `${what}: no patch (no "fresh" annotation, no dataSourceRef)`)
      t.equal(res.status?.code, 503, `${what}: code 503`)
      t.equal(res.status?.reason, 'ServiceUnavailable', `${what}: reason ServiceUnavailable`)
      t.match(res.status?.message, UNKNOWN_MESSAGE, `${what}: "could not check the backup store … Retrying is safe"`)
      t.match(res.status?.message, c.reason, `${what}: the message says why (${c.reason})`)
      t.notMatch(res.status?.message ?? '', /fresh|no backup at/i, `${what}: nothing in the message suggests no backup`)
      t.ok(r.ms < DEADLINE_MS + SLACK_MS, `${what}: answered in ${Math.round(r.ms)} ms (< deadline ${DEADLINE_MS} + ${SLACK_MS} ms)`)
    })
    t.comment(`${c.name}: ${replies[1]!.json?.response?.status?.message?.replace(/^.*?: (.*?)\. The PVC.*$/, '$1')}`)
    if (c.reached !== false) t.ok(fault.hits() > 0, `the fault was reached (${fault.hits()} request(s))`)

    const admissions = log.lines().filter((l) => l.msg === 'admission')
    t.equal(admissions.length, replies.length, 'one admission log line per request')
    for (const a of admissions) t.equal(a.decision, 'denied', `${a.webhook}: logged as denied`)
    // The mutating webhook's line carries the probe; the validating cross-check's does not (reported).
    for (const a of admissions.filter((l) => l.webhook === 'mutate')) {
      t.equal(a.probe?.state, 'unknown', 'the probe is logged as unknown')
      t.ok(c.kinds.includes(a.probe?.kind), `probe kind ${a.probe?.kind} is one of ${c.kinds.join(', ')}`)
    }
    t.notOk(log.lines().some((l) => l.level >= 50), 'no error-level log line (nothing unhandled)')
    assertNoSecrets(t, log.text(), `the log of "${c.name}"`)
  })
}

t.test('onUnknown=fresh is the one opt-in that lets an unknown store through, and says so', async (t) => {
  // The contrast to every case above: the annotation is fresh-unverified, never plain fresh.
  const fault = await tcpFault((s) => s.write(httpAnswer(503, 'Slow Down', s3ErrorXml('SlowDown', 'Please reduce your request rate.'))))
  t.teardown(fault.close)
  const log = captureLogger('debug')
  t.teardown(() => void allLogs.push(log.text()))
  const config = hardeningConfig({ s3Endpoint: fault.endpoint, deadlineMs: DEADLINE_MS })
  config.onUnknown = 'fresh'
  const service = await startService(config, { logger: log.logger, kubeConfig: null, cluster: null, inFlight: null })
  t.teardown(() => service.close())
  const client = httpsClient(service.url, service.caCert)
  t.teardown(client.close)
  const r = await client.post('/mutate', mutateBody)
  t.equal(r.json.response.allowed, true)
  const patch = JSON.parse(Buffer.from(r.json.response.patch, 'base64').toString())
  const decision = patch.find((op: any) => op.path === '/metadata/annotations/smart-restore.io~1decision')
  t.equal(decision?.value, 'fresh-unverified', 'annotated fresh-unverified, not fresh')
})

t.test('no test credential in any log of the matrix', async (t) => {
  const text = allLogs.join('')
  assertNoSecrets(t, text, 'all fault logs together')
  t.notOk(text.includes(S3_SECRET_KEY), 'the S3 secret key in particular')
  t.comment(`S3 fault matrix: ${cases.length} faults in ${Math.round(performance.now() - started)} ms`)
})
