/**
 * Graceful shutdown of the real process (`node --import tsx src/main.ts`, configured through its
 * environment: standalone, an S3 store on a loopback server, any port).
 *
 * Several clients keep sending AdmissionReviews over keep-alive connections; SIGTERM arrives
 * mid-flow. What is asserted, precisely:
 * - every request that reached the server — sent on a reused keep-alive connection, or on a new
 *   connection whose TLS handshake completed — got a 200 with an AdmissionReview echoing its uid:
 *   none was dropped or answered 503, before, during or after the drain;
 * - the only failures are NEW connections that never got through (refused, or reset before the
 *   handshake), and only once the listener closed (not before the shutdown delay is nearly over);
 * - during the delay /readyz is 503 "shutting down", new connections are still served, and answers
 *   carry `Connection: close` so clients leave their keep-alive connections;
 * - an admission in flight when the listener closes (a slow S3 probe) is finished and answered;
 * - a keep-alive connection idle since before SIGTERM is closed by the server when it closes;
 * - the process exits 0, within the delay plus that admission plus a few seconds.
 */
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { TLSSocket } from 'node:tls'
import { generateCertificates } from '../../src/tls/certificates.js'
import { fixtureBody } from '../helpers/fixtures.js'
import { answer, startRaw } from '../helpers/storage-servers.js'

t.setTimeout(120_000)

const DELAY_MS = 2000
const SLOW_PROBE_MS = 3000
const CLIENTS = 4

const listing = (prefix: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>backups</Name><Prefix>${prefix}</Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`
// No snapshots anywhere (every PVC is "fresh"); the probe of media/slow-claim takes SLOW_PROBE_MS.
const s3 = await startRaw((req, res) => {
  const prefix = new URL(req.url ?? '/', 'http://s3').searchParams.get('prefix') ?? ''
  setTimeout(() => answer(200, listing(prefix))(req, res), prefix.startsWith('media/slow-claim/') ? SLOW_PROBE_MS : 0)
})
t.teardown(() => s3.close())

const certs = await generateCertificates(['localhost', '127.0.0.1'], 30)
const dir = mkdtempSync(join(tmpdir(), 'sr-shutdown-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
writeFileSync(join(dir, 'tls.crt'), certs.cert)
writeFileSync(join(dir, 'tls.key'), certs.key)

const env: NodeJS.ProcessEnv = {
  ...process.env,
  SMART_RESTORE_HOST: '127.0.0.1',
  SMART_RESTORE_PORT: '0',
  SMART_RESTORE_METRICS_PORT: '0',
  SMART_RESTORE_KUBE_MODE: 'standalone',
  SMART_RESTORE_SHUTDOWN_DELAY_MS: String(DELAY_MS),
  SMART_RESTORE_TLS_CERT_FILE: join(dir, 'tls.crt'),
  SMART_RESTORE_TLS_KEY_FILE: join(dir, 'tls.key'),
  SMART_RESTORE_STORE: 's3',
  S3_ENDPOINT: s3.endpoint,
  S3_BUCKET: 'backups',
  S3_ACCESS_KEY_ID: 'test-key-id',
  S3_SECRET_ACCESS_KEY: 'test-secret-key',
  SMART_RESTORE_PROBE_DEADLINE_MS: '6000',
  LOG_LEVEL: 'info',
}
delete env.SMART_RESTORE_CONFIG
delete env.KUBECONFIG

const started = Date.now()
const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: process.cwd(), env, stdio: ['ignore', 'pipe', 'pipe'] })
t.teardown(() => {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
})
let stderr = ''
child.stderr.on('data', (c) => (stderr += c))
const exited = new Promise<{ code: number | null; signal: string | null; at: number }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })))

/** Log lines as they arrive, with the time this process saw them. */
const lines: Array<{ at: number; line: Record<string, any> }> = []
const waiters: Array<() => void> = []
createInterface({ input: child.stdout }).on('line', (text) => {
  try {
    lines.push({ at: Date.now(), line: JSON.parse(text) })
  } catch {
    return // not a log line
  }
  for (const w of waiters.splice(0)) w()
})
async function logLine(msg: string, ms = 60_000): Promise<{ at: number; line: Record<string, any> }> {
  const until = Date.now() + ms
  for (;;) {
    const found = lines.find((l) => l.line.msg === msg)
    if (found) return found
    if (Date.now() > until) throw new Error(`no "${msg}" log line after ${ms} ms; stderr: ${stderr}`)
    const exit = await Promise.race([new Promise<void>((r) => waiters.push(r)).then(() => undefined), exited, new Promise<void>((r) => setTimeout(r, 200)).then(() => undefined)])
    if (exit) throw new Error(`the process exited (${JSON.stringify(exit)}) before "${msg}"; stderr: ${stderr}`)
  }
}

interface Attempt {
  client: string
  uid: string
  sentAt: number
  doneAt?: number
  /** Sent on a keep-alive connection that had already carried a request. */
  reused?: boolean
  /** The TLS handshake of its connection completed: the request reached the server. */
  established?: boolean
  status?: number
  answeredUid?: string
  connection?: string
  error?: string
}

let port = 0
let uidSeq = 0
const body = JSON.parse(fixtureBody('create.mutating.json'))
function admit(client: string, agent: Agent | false, pvc = 'data-claim'): Promise<Attempt> {
  const uid = `5a5a5a5a-0000-4000-8000-${String(++uidSeq).padStart(12, '0')}`
  const review = structuredClone(body)
  review.request.uid = uid
  review.request.name = pvc
  review.request.object.metadata.name = pvc
  const a: Attempt = { client, uid, sentAt: Date.now() }
  return new Promise((resolve) => {
    const req = httpsRequest({ host: '127.0.0.1', port, path: '/mutate?timeout=10s', method: 'POST', agent, ca: certs.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c) => (text += c))
      res.on('end', () => {
        a.doneAt = Date.now()
        a.status = res.statusCode
        a.connection = String(res.headers.connection ?? '')
        try {
          a.answeredUid = JSON.parse(text).response?.uid
        } catch {
          /* asserted below */
        }
        resolve(a)
      })
    })
    req.on('socket', (socket) => {
      a.reused = req.reusedSocket
      const tls = socket as TLSSocket
      if (req.reusedSocket || tls.encrypted && !tls.connecting && tls.authorized) a.established = true
      else tls.once('secureConnect', () => (a.established = true))
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      a.doneAt = Date.now()
      a.error = err.code ?? err.message
      resolve(a)
    })
    req.end(JSON.stringify(review))
  })
}

function get(path: string): Promise<{ status: number; body: string; connection: string }> {
  return new Promise((resolve, reject) => {
    httpsRequest({ host: '127.0.0.1', port, path, agent: false, ca: certs.caCert }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode!, body: text, connection: String(res.headers.connection ?? '') }))
    })
      .on('error', reject)
      .end()
  })
}

t.test('SIGTERM drains: every request that reached the server is answered, then exit 0', async (t) => {
  const listening = await logLine('smart-restore listening')
  port = listening.line.port
  t.ok(port > 0, `listening on ${port} (startup took ${listening.at - started} ms)`)
  t.equal(listening.line.mode, 'standalone')

  // Clients sending back to back, each over its own keep-alive connection.
  const attempts: Attempt[] = []
  let stop = false
  const agents = Array.from({ length: CLIENTS }, () => new Agent({ keepAlive: true, maxSockets: 1 }))
  t.teardown(() => agents.forEach((a) => a.destroy()))
  const loops = agents.map(async (agent, i) => {
    while (!stop) {
      const a = await admit(`client-${i}`, agent)
      attempts.push(a)
      // A refused new connection means the listener is gone: nothing more this client can reach.
      if (a.error) break
    }
  })
  const warm = Date.now() + 20_000
  while (agents.some((_a, i) => attempts.filter((a) => a.client === `client-${i}` && a.status === 200).length < 5)) {
    if (Date.now() > warm) throw new Error(`clients did not get going: ${JSON.stringify(attempts.slice(-3))}`)
    await new Promise((r) => setTimeout(r, 20))
  }
  // The connection the slow admission will use, opened (and kept alive) before SIGTERM.
  const slowAgent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => slowAgent.destroy())
  const opened = await admit('slow', slowAgent)
  t.equal(opened.status, 200)
  // A keep-alive connection that stays idle from before SIGTERM to the end: the server closes it.
  const idleAgent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => idleAgent.destroy())
  let idleClosedAt: number | undefined
  const idleOpened = await new Promise<Attempt>((resolve) => {
    idleAgent.once('free', (socket) => socket.once('close', () => (idleClosedAt = Date.now())))
    void admit('idle', idleAgent).then(resolve)
  })
  t.equal(idleOpened.status, 200)

  const sigtermAt = Date.now()
  child.kill('SIGTERM')
  const draining = await logLine('shutting down: readiness false, still answering admissions', 10_000)
  t.equal(draining.line.delayMs, DELAY_MS)

  const readyz = await get('/readyz')
  t.equal(readyz.status, 503, '/readyz is 503 at once')
  t.match(JSON.parse(readyz.body), { status: 'not ready', reason: /shutting down/, checks: { draining: 'yes' } })
  t.equal(readyz.connection, 'close')
  t.equal((await get('/healthz')).status, 200, '/healthz still 200: the process is alive')

  // An admission in flight when the listener closes: its probe takes SLOW_PROBE_MS.
  await new Promise((r) => setTimeout(r, 500))
  const slow = admit('slow', slowAgent, 'slow-claim')
  const closing = await logLine('closing the listener; finishing admissions in flight', DELAY_MS + 10_000)
  const slowDone = await slow
  const exit = await exited
  stop = true
  await Promise.all(loops)
  const stopped = lines.find((l) => l.line.msg === 'stopped')

  t.comment(`SIGTERM → close ${closing.at - sigtermAt} ms, → exit ${exit.at - sigtermAt} ms; ${attempts.length} admissions by ${CLIENTS} clients`)

  // 1. Every request that reached the server was answered with its AdmissionReview.
  const reached = [...attempts, opened, idleOpened, slowDone].filter((a) => a.established)
  const bad = reached.filter((a) => a.status !== 200 || a.answeredUid !== a.uid)
  t.same(bad, [], `all ${reached.length} requests that reached the server got a 200 AdmissionReview with their uid`)

  // 2. Failures: only new connections that never got through, only once the listener was closing.
  const failed = attempts.filter((a) => a.status === undefined)
  for (const a of failed) {
    t.notOk(a.reused, `${a.client}: a failure only on a new connection (${a.error})`)
    t.notOk(a.established, `${a.client}: the failed connection never completed its handshake`)
    t.match(a.error, /^(ECONNREFUSED|ECONNRESET)$/, `${a.client}: refused or reset at connect (${a.error})`)
    t.ok(a.doneAt! >= draining.at + DELAY_MS - 500, `${a.client}: not before the delay was over (${a.doneAt! - draining.at} ms after the drain began)`)
  }
  t.comment(`${failed.length} new connection(s) refused after the listener closed`)

  // 3. During the drain: answers on established keep-alive connections and on new connections.
  const afterTerm = reached.filter((a) => a.sentAt > sigtermAt && a.status === 200)
  t.ok(afterTerm.some((a) => a.reused), `requests sent after SIGTERM on keep-alive connections opened before it were answered (${afterTerm.filter((a) => a.reused).length})`)
  const newDuringDrain = afterTerm.filter((a) => !a.reused && a.sentAt > draining.at)
  t.ok(newDuringDrain.length > 0, `new connections during the delay were served (${newDuringDrain.length})`)
  const sentWhileDraining = reached.filter((a) => a.sentAt > draining.at)
  t.ok(sentWhileDraining.every((a) => a.connection === 'close'), 'every answer during the drain says Connection: close')
  t.ok(attempts.filter((a) => a.doneAt! < sigtermAt && a.status === 200).every((a) => a.connection === 'keep-alive'), 'before it, connections are kept alive')

  // 4. The admission in flight at close was finished.
  t.ok(slowDone.reused, 'the slow admission was sent on a keep-alive connection from before SIGTERM')
  t.equal(slowDone.status, 200)
  t.equal(slowDone.answeredUid, slowDone.uid)
  t.ok(slowDone.sentAt < closing.at && slowDone.doneAt! > closing.at, `in flight when the listener closed (sent ${closing.at - slowDone.sentAt} ms before, answered ${slowDone.doneAt! - closing.at} ms after)`)

  // 5. The idle keep-alive connection was closed by the server when the listener closed (not
  //    left for its 95 s keep-alive timeout), and no request was lost on it: it carried none.
  t.ok(idleClosedAt !== undefined && idleClosedAt >= closing.at - 200 && idleClosedAt <= exit.at + 200, `the idle keep-alive connection was closed at close (${idleClosedAt === undefined ? 'never' : `${idleClosedAt - closing.at} ms after`})`)

  // 6. Exit 0, promptly.
  t.same({ code: exit.code, signal: exit.signal }, { code: 0, signal: null }, 'exit code 0')
  t.ok(stopped, 'logged "stopped"')
  t.ok(closing.at - draining.at >= DELAY_MS - 300, 'the listener stayed open for the delay')
  t.ok(exit.at - sigtermAt < DELAY_MS + SLOW_PROBE_MS + 4000, `exited within the delay + the slow admission + a few seconds (${exit.at - sigtermAt} ms)`)
  t.notOk(lines.some((l) => l.line.level >= 50), 'no error logged')
})
