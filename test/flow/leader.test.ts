/**
 * Two (then three) replicas of the service against one loopback API server, each through its own
 * recording proxy so every request can be told apart by replica: one Lease, one leader. Only the
 * leader attaches ReplicationSources (and reads the source Secret, and writes anything at all);
 * every replica serves the webhooks from its own watched caches; metrics and /readyz say who leads.
 * Stopping the leader releases the Lease and the follower takes over within a retry period; a
 * leader cut off from the API stops its work at renewDeadline, before a follower may take the
 * lease over (a whole lease duration after it last saw it renewed).
 */
import t from 'tap'
import http from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Socket } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import { find, parseMetrics, scrape, value } from '../helpers/metrics.js'
import { installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startS3rver, storeConfig } from '../helpers/storage-servers.js'

const PVCS = '/api/v1/persistentvolumeclaims'
const RS = '/apis/volsync.backube/v1alpha1/replicationsources'
const SECRETS = '/api/v1/secrets'
const NAMESPACES = '/api/v1/namespaces'
const LEASES = '/apis/coordination.k8s.io/v1/leases'
const LEASE = { namespace: 'smart-restore', name: 'smart-restore' }
const TIMING = { leaseDurationMs: 2000, renewDeadlineMs: 1500, retryPeriodMs: 200 }

const s3 = await startS3rver()
t.teardown(() => s3.close())
const api = await startFakeApiServer()
t.teardown(() => api.close())
installRestorePrerequisites(api)
api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps' } })
api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'media' } })
api.objects.put(SECRETS, {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
  data: { RESTIC_PASSWORD: Buffer.from('pw').toString('base64'), AWS_ACCESS_KEY_ID: Buffer.from('k').toString('base64'), AWS_SECRET_ACCESS_KEY: Buffer.from('s').toString('base64') },
})
// A backup in flight, for the deletion guard of the follower.
api.objects.put(RS, {
  apiVersion: 'volsync.backube/v1alpha1',
  kind: 'ReplicationSource',
  metadata: { name: 'data-claim-backup', namespace: 'media' },
  spec: { sourcePVC: 'data-claim', trigger: { schedule: '0 * * * *' }, restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot' } },
  status: { conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'Synchronization in-progress', lastTransitionTime: '2026-11-22T04:40:00Z' }], lastSyncStartTime: '2026-11-22T04:40:00Z' },
})

const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
  store: storeConfig(s3.endpoint, { probe: { deadlineMs: 1500, cacheTtlMs: 0 } }),
  kube: { mode: 'cluster', requestTimeoutMs: 1000 },
  reconciler: { ...defaultConfig.reconciler, enabled: true, resyncMs: 60_000, workers: 2 },
  leaderElection: { ...defaultConfig.leaderElection, namespace: LEASE.namespace, leaseName: LEASE.name, ...TIMING },
})

// ---------------------------------------------------------------------------------------------
// One recording proxy per replica: what each replica asked of the API server.

interface Seen {
  method: string
  path: string
  query: Record<string, string>
}

async function startProxy(target: string) {
  const seen: Seen[] = []
  const sockets = new Set<Socket>()
  let partitioned = false
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy')
    seen.push({ method: req.method ?? 'GET', path: url.pathname, query: Object.fromEntries(url.searchParams) })
    if (partitioned) return void req.socket.destroy()
    const upstream = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on('error', () => res.destroy())
    res.on('close', () => upstream.destroy())
    req.pipe(upstream)
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as { port: number }
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'proxy', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'proxy', token: api.token }],
    contexts: [{ name: 'proxy', cluster: 'proxy', user: 'proxy' }],
    currentContext: 'proxy',
  })
  return {
    kubeConfig,
    seen,
    /** Cut the replica off from the API server (connections dropped, new ones reset), or reconnect it. */
    partition(on: boolean) {
      partitioned = on
      if (on) for (const s of sockets) s.destroy()
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  }
}

type Proxy = Awaited<ReturnType<typeof startProxy>>
interface Replica {
  id: string
  proxy: Proxy
  service: ServiceHandle
  log: ReturnType<typeof captureLogger>
}

async function replica(id: string): Promise<Replica> {
  const proxy = await startProxy(api.url)
  t.teardown(() => proxy.close())
  const log = captureLogger('info')
  const service = await startService(config, { logger: log.logger, kubeConfig: proxy.kubeConfig, watch: { rediscoverMs: 1000 }, leaderIdentity: id, metrics: { defaultMetrics: false } })
  t.teardown(() => service.close())
  return { id, proxy, service, log }
}

function https(r: Replica, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${r.service.url}${path}`, { method, ca: r.service.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : undefined }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}
const readyz = (r: Replica) => https(r, 'GET', '/readyz')
const leaderCheck = async (r: Replica) => (await readyz(r)).json?.checks?.leader as string | undefined
const metrics = async (r: Replica) => parseMetrics((await scrape(r.service.metricsUrl!)).body)

const isWrite = (s: Seen) => s.method !== 'GET' && s.method !== 'HEAD'
const isLease = (s: Seen) => s.path.startsWith('/apis/coordination.k8s.io/')
/** Server-side applies of a ReplicationSource. */
const sourceApplies = (r: Replica, name?: string) => r.proxy.seen.filter((s) => s.method === 'PATCH' && s.path.includes('/replicationsources/') && (name === undefined || s.path.endsWith(`/${name}`)))
const lease = () => api.objects.get(LEASES, LEASE.namespace, LEASE.name) as any
const leadsAt = (r: Replica) => r.log.lines().filter((l) => l.msg === 'leader election: this replica leads').map((l) => Date.parse(l.time))
const lostAt = (r: Replica) => r.log.lines().filter((l) => l.msg === "leader election: leadership lost; stopping the leader's work").map((l) => Date.parse(l.time))

async function eventually<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, ms = 8000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

function pvc(name: string) {
  api.objects.put(PVCS, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace: 'apps', labels: { backup: 'hourly' }, annotations: { 'smart-restore.io/decision': 'fresh' } },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, storageClassName: 'longhorn' },
    status: { phase: 'Bound' },
  })
}
const source = (name: string) => api.objects.get(RS, 'apps', `${name}-backup`)

// ---------------------------------------------------------------------------------------------

const a = await replica('replica-a')
await eventually('replica-a to lead', async () => (await leaderCheck(a)) === 'this replica (replica-a)')
const b = await replica('replica-b')
await eventually('replica-b to be ready', async () => (await readyz(b)).status === 200)
await eventually('replica-b to see replica-a lead', async () => (await leaderCheck(b)) === 'replica-a (lease smart-restore/smart-restore)')

t.test('one leader: only it attaches ReplicationSources (only it writes); both serve the webhooks', async (t) => {
  pvc('one')
  await eventually('the ReplicationSource', () => source('one'))
  t.ok(sourceApplies(a, 'one-backup').length >= 1, 'replica-a applied it')
  t.equal(sourceApplies(b).length, 0, 'replica-b applied nothing')
  t.strictSame(b.proxy.seen.filter(isWrite), [], 'replica-b wrote nothing at all: not the Lease, not an Event, not a PVC')
  t.ok(b.proxy.seen.some((s) => isLease(s) && s.method === 'GET'), 'replica-b reads the Lease (every retry period)')
  t.notOk(b.proxy.seen.some((s) => s.path.endsWith('/secrets/smart-restore-restic')), 'replica-b never read the source Secret (the reconciler does)')
  // It acquired the Lease with a create; its first renewal (a PUT) comes a retry period later,
  // which a fast run of this test may not have reached yet.
  t.ok(await eventually('replica-a to renew', () => a.proxy.seen.some((s) => isLease(s) && s.method === 'PUT'), TIMING.retryPeriodMs * 10), 'replica-a renews the Lease')
  t.equal(lease().spec.holderIdentity, 'replica-a')

  // Both keep their watched caches: the follower's deletion guard refuses a delete in flight.
  for (const r of [a, b]) {
    const res = (await https(r, 'POST', '/validate?timeout=5s', fixtureReview('delete.validating.json'))).json.response
    t.equal(res.allowed, false, `${r.id}: the deletion guard answers from its own caches`)
    t.match(res.status.message, /media\/data-claim-backup/)
  }

  const ma = await metrics(a)
  const mb = await metrics(b)
  t.strictSame(find(ma, 'smart_restore_leader').map((s) => [s.labels, s.value]), [[{ identity: 'replica-a' }, 1]], 'replica-a: smart_restore_leader 1')
  t.strictSame(find(mb, 'smart_restore_leader').map((s) => [s.labels, s.value]), [[{ identity: 'replica-b' }, 0]], 'replica-b: smart_restore_leader 0')
  t.ok(find(ma, 'smart_restore_pvcs').length > 0, 'the leader reports DR readiness')
  t.equal(find(mb, 'smart_restore_pvcs').length, 0, 'a follower does not (summing over the replicas counts the leader only)')
  t.equal(value(mb, 'smart_restore_reconcile_total'), 0, 'the follower reconciled nothing')
  t.ok(value(ma, 'smart_restore_reconcile_total') > 0)
  const [ra, rb] = [await readyz(a), await readyz(b)]
  t.equal(ra.status, 200)
  t.equal(rb.status, 200, 'a follower is ready: it serves the webhooks')
  t.equal(ra.json.checks.leader, 'this replica (replica-a)')
  t.equal(rb.json.checks.leader, 'replica-a (lease smart-restore/smart-restore)')
})

t.test('stopping the leader releases the Lease: the follower leads within a retry period and attaches the next PVC', async (t) => {
  const transitions = lease().spec.leaseTransitions
  const stopping = Date.now()
  await a.service.close()
  const released = Date.now()
  await eventually('replica-b to lead', async () => (await leaderCheck(b)) === 'this replica (replica-b)', TIMING.leaseDurationMs)
  const took = (leadsAt(b)[0] ?? Infinity) - released
  // Released: taken at the follower's next retry; not released: only a lease duration later.
  t.ok(took < TIMING.leaseDurationMs, `replica-b led ${took} ms after replica-a released the Lease (closing took ${released - stopping} ms); retry period ${TIMING.retryPeriodMs} ms, lease duration ${TIMING.leaseDurationMs} ms`)
  t.ok(a.proxy.seen.some((s) => isLease(s) && s.method === 'PUT' && s.query.fieldManager === 'smart-restore'), 'released with a PUT')
  t.equal(lease().spec.holderIdentity, 'replica-b')
  t.equal(lease().spec.leaseTransitions, transitions + 1, 'one transition')
  const before = a.proxy.seen.length
  pvc('two')
  await eventually('the ReplicationSource of the next PVC', () => source('two'))
  t.ok(sourceApplies(b, 'two-backup').length >= 1, 'replica-b applied it')
  t.equal(a.proxy.seen.length, before, 'replica-a is gone')
  t.equal(value(await metrics(b), 'smart_restore_leader', { identity: 'replica-b' }), 1)
})

let c: Replica | undefined

t.test('a leader cut off from the API stops at renewDeadline; a follower takes over a lease duration after it last saw a renewal', async (t) => {
  c = await replica('replica-c')
  await eventually('replica-c to see replica-b lead', async () => (await leaderCheck(c!)) === 'replica-b (lease smart-restore/smart-restore)')
  const cut = Date.now()
  b.proxy.partition(true)
  await eventually('replica-c to lead', async () => (await leaderCheck(c!)) === 'this replica (replica-c)', TIMING.leaseDurationMs * 3)
  const [stoppedB] = lostAt(b)
  const [startedC] = leadsAt(c!)
  t.ok(stoppedB !== undefined && startedC !== undefined, 'both logged')
  t.comment(`cut at 0: replica-b stopped leading at ${stoppedB! - cut} ms, replica-c led at ${startedC! - cut} ms`)
  t.ok(stoppedB! - cut < TIMING.leaseDurationMs, 'replica-b stopped at renewDeadline, before its lease could expire for the others')
  t.ok(startedC! > stoppedB!, 'replica-c started after replica-b had stopped')
  t.ok(startedC! - cut >= TIMING.leaseDurationMs - TIMING.retryPeriodMs * 1.2 - 50, 'replica-c waited a lease duration after the last renewal it saw')
  t.equal(lease().spec.holderIdentity, 'replica-c')
  t.equal(value(await metrics(b), 'smart_restore_leader', { identity: 'replica-b' }), 0, 'replica-b: 0 while cut off')
  t.match(await leaderCheck(b), /^none: this replica \(replica-b\) could not renew its lease smart-restore\/smart-restore/, "replica-b's /readyz says so")
  const appliesBefore = sourceApplies(b).length
  pvc('three')
  await eventually('the ReplicationSource of a PVC made meanwhile', () => source('three'))
  t.ok(sourceApplies(c!, 'three-backup').length >= 1, 'replica-c attached it')
  b.proxy.partition(false)
  await eventually('replica-b to follow replica-c', async () => (await leaderCheck(b)) === 'replica-c (lease smart-restore/smart-restore)', TIMING.leaseDurationMs * 3)
  t.equal(sourceApplies(b).length, appliesBefore, 'replica-b applied nothing once it had lost the lease')
  t.equal(lease().spec.holderIdentity, 'replica-c', 'and did not take it back')
})

t.test('leaderElection.enabled false: the replica runs the reconciler whatever the others do, and never touches the Lease', async (t) => {
  const proxy = await startProxy(api.url)
  t.teardown(() => proxy.close())
  const log = captureLogger('info')
  const off = validateConfig({ ...config, leaderElection: { ...config.leaderElection, enabled: false } })
  const service = await startService(off, { logger: log.logger, kubeConfig: proxy.kubeConfig, watch: { rediscoverMs: 1000 }, leaderIdentity: 'replica-d', metrics: { defaultMetrics: false } })
  t.teardown(() => service.close())
  const d: Replica = { id: 'replica-d', proxy, service, log }
  await eventually('replica-d to be ready', async () => (await readyz(d)).status === 200)
  t.equal(await leaderCheck(d), 'this replica (replica-d); leader election off: every replica reconciles')
  t.strictSame(find(await metrics(d), 'smart_restore_leader').map((s) => [s.labels, s.value]), [[{ identity: 'replica-d' }, 1]])
  pvc('four')
  await eventually('replica-d to apply the source of a new PVC', () => sourceApplies(d, 'four-backup').length > 0)
  t.equal(proxy.seen.filter(isLease).length, 0, 'no Lease request')
  t.equal(lease().spec.holderIdentity, 'replica-c', 'the elected leader is unaffected')
})

t.test('leadership comes back: replica-b leads a second term with a new reconciler, which attaches the next PVC', async (t) => {
  const reconcilesBefore = value(await metrics(b), 'smart_restore_reconcile_total')
  await c!.service.close()
  await eventually('replica-b to lead again', async () => (await leaderCheck(b)) === 'this replica (replica-b)', TIMING.leaseDurationMs)
  t.equal(leadsAt(b).length, 2, 'a second term')
  pvc('five')
  await eventually('replica-b to apply the source of the next PVC', () => sourceApplies(b, 'five-backup').length > 0)
  t.ok(value(await metrics(b), 'smart_restore_reconcile_total') > reconcilesBefore, 'smart_restore_reconcile_total goes on from the first term (never back)')
  t.equal(value(await metrics(b), 'smart_restore_leader', { identity: 'replica-b' }), 1)
})
