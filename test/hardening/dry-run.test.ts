/**
 * Hardening: dry runs write nothing, anywhere.
 *
 * The service runs in cluster mode against the loopback API server (its own ClusterClient and
 * watched caches through the real @kubernetes/client-node; the backup-source reconciler off, so
 * every request the API sees is the admissions' doing) and a real s3rver that records every
 * request. N dry-run CREATEs (the mutating and the validating webhook; half the PVCs have a
 * snapshot, so half decide "restore") and N dry-run DELETEs (some held by an in-flight
 * ReplicationSource, with restic lock checks on, which list S3) must get their normal answers and
 * cause 0 writes: the API sees only GETs (the source Secret read a dry-run restore does on purpose,
 * so it is denied exactly when the real create would be; list/watch; discovery) and S3 only
 * GET/HEAD. A real CREATE afterwards writes exactly its two objects: the counters work.
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { get as getHttps } from 'node:https'
import { startService } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import { assertNoSecrets, hardeningConfig, httpsClient, sourceSecret, startRecordingS3rver } from '../helpers/hardening.js'
import { seed } from '../helpers/storage-servers.js'

const N = Number(process.env.HARDENING_DRY_RUNS ?? 200)
const NS = 'media'
const SECRETS = '/api/v1/secrets'
const RDS = '/apis/volsync.backube/v1alpha1/replicationdestinations'
const RS = '/apis/volsync.backube/v1alpha1/replicationsources'
const CONCURRENCY = 8

/**
 * Set-up resources, closed in reverse order at the end. Registered with t.teardown only once the
 * set-up is done: a root test with a teardown autoends when it looks idle, and a slow set-up
 * (seeding, certificates) looks idle.
 */
const cleanups: Array<() => unknown> = []

const s3 = await startRecordingS3rver()
cleanups.push(s3.close)
const withSnapshot = (i: number) => i % 2 === 0
const seededKeys: string[] = []
for (let i = 0; i < N; i++) if (withSnapshot(i)) seededKeys.push(`${NS}/dry-${i}/config`, `${NS}/dry-${i}/snapshots/${'ab'.repeat(32)}`)
// A fresh restic lock for some DELETE targets: the lock check reads S3 too.
for (let i = 0; i < N; i += 10) seededKeys.push(`${NS}/gone-${i}/locks/${'cd'.repeat(32)}`)
await seed(s3.endpoint, seededKeys)
const s3WritesBefore = s3.writes().length
t.equal(s3WritesBefore, seededKeys.length, 'the seeding PUTs are the only S3 writes so far')

const api = await startFakeApiServer()

installRestorePrerequisites(api)
cleanups.push(() => api.close())
api.objects.put('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS }, status: { phase: 'Active' } })
api.objects.put(SECRETS, sourceSecret())
// Every third DELETE target is being backed up right now.
for (let i = 0; i < N; i += 3) {
  api.objects.put(RS, {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationSource',
    metadata: { name: `gone-${i}-backup`, namespace: NS },
    spec: { sourcePVC: `gone-${i}`, trigger: { schedule: '0 * * * *' }, restic: { repository: `gone-${i}-restic`, copyMethod: 'Snapshot' } },
    status: { conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'Synchronization in-progress', lastTransitionTime: '2026-11-22T04:40:00Z' }], lastSyncStartTime: '2026-11-22T04:40:00Z' },
  })
}

const log = captureLogger('debug')
const config = hardeningConfig({ s3Endpoint: s3.endpoint, deadlineMs: 2000, cacheTtlMs: 0, requestTimeoutMs: 2000 })
config.kube.mode = 'cluster'
config.deletionGuard.resticLocks.enabled = true
const service = await startService(config, { logger: log.logger, kubeConfig: api.kubeConfig, reconciler: false, watch: { rediscoverMs: 60_000 } })
cleanups.push(() => service.close())
const client = httpsClient(service.url, service.caCert, { keepAlive: true, maxSockets: CONCURRENCY })
cleanups.push(client.close)
t.teardown(async () => {
  for (const c of cleanups.reverse()) await c()
})

// Ready once the watched caches have their lists: only then are DELETEs decided from them. (Waited
// for inside a test: a root test that idles between timers with teardowns registered autoends.)
let lastReady = ''
const readyz = () =>
  new Promise<number>((resolve) => {
    getHttps(`${service.url}/readyz`, { ca: service.caCert }, (res) => {
      let b = ''
      res.on('data', (c) => (b += c))
      res.on('end', () => {
        lastReady = b
        resolve(res.statusCode ?? 0)
      })
    }).on('error', (e) => {
      lastReady = String(e)
      resolve(0)
    })
  })
let apiRequestsBefore = 0
t.test('the service becomes ready (watched caches synced)', async (t) => {
  for (const until = Date.now() + 15_000; (await readyz()) !== 200; ) {
    if (Date.now() > until) throw new Error(`the service did not become ready: ${lastReady}`)
    await new Promise((res) => setTimeout(res, 50))
  }
  t.pass('ready')
  apiRequestsBefore = api.requests.length
})

const decode = (b64: string) => JSON.parse(Buffer.from(b64, 'base64').toString('utf8'))

async function pool<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < items.length) await fn(items[next++]!)
  }))
}

t.test(`${N} dry-run CREATEs (mutating and validating): normal answers`, async (t) => {
  const outcomes = { restore: 0, fresh: 0, crossCheckDenied: 0, crossCheckAllowed: 0 }
  await pool(Array.from({ length: N }, (_, i) => i), async (i) => {
    const name = `dry-${i}`
    const validating = i % 4 >= 2
    const d = fixtureReview(validating ? 'create-dryrun.validating.json' : 'create-dryrun.mutating.json')
    d.request.uid = randomUUID()
    d.request.name = name
    d.request.object.metadata.name = name
    t.equal(d.request.dryRun, true)
    const r = await client.post(validating ? '/validate' : '/mutate', JSON.stringify(d))
    if (r.status !== 200) return void t.fail(`${name}: HTTP ${r.status} ${r.text}`)
    const res = r.json.response
    if (res.uid !== d.request.uid) t.fail(`${name}: uid`)
    if (validating) {
      // The cross-check of a PVC that reached /validate without dataSourceRef.
      if (withSnapshot(i)) {
        if (res.allowed !== false || res.status?.code !== 409) t.fail(`${name}: the cross-check must deny a PVC whose backup exists: ${r.text}`)
        outcomes.crossCheckDenied++
      } else {
        if (res.allowed !== true) t.fail(`${name}: ${r.text}`)
        outcomes.crossCheckAllowed++
      }
      return
    }
    if (res.allowed !== true) return void t.fail(`${name}: not allowed: ${r.text}`)
    const ops = decode(res.patch)
    const decision = ops.find((o: any) => o.path === '/metadata/annotations/smart-restore.io~1decision')?.value
    if (withSnapshot(i)) {
      outcomes.restore++
      if (decision !== 'restore') t.fail(`${name}: decision ${decision}`)
      if (!ops.some((o: any) => o.path === '/spec/dataSourceRef' && o.value?.name === `${name}-restore`)) t.fail(`${name}: no dataSourceRef`)
      if (!res.warnings?.some((w: string) => /dry run; ReplicationDestination dry-\d+-restore not created/.test(w))) t.fail(`${name}: no dry-run warning: ${JSON.stringify(res.warnings)}`)
    } else {
      outcomes.fresh++
      if (decision !== 'fresh') t.fail(`${name}: decision ${decision}`)
    }
  })
  t.comment(`outcomes: ${JSON.stringify(outcomes)}`)
  t.ok(outcomes.restore > 0 && outcomes.fresh > 0 && outcomes.crossCheckDenied > 0 && outcomes.crossCheckAllowed > 0, 'every kind of answer occurred')
  t.equal(outcomes.restore + outcomes.fresh + outcomes.crossCheckDenied + outcomes.crossCheckAllowed, N, `all ${N} answered as expected`)
})

t.test(`${N} dry-run DELETEs: normal answers`, async (t) => {
  let denied = 0
  let allowed = 0
  await pool(Array.from({ length: N }, (_, i) => i), async (i) => {
    const name = `gone-${i}`
    const d = fixtureReview('delete-dryrun.validating.json')
    d.request.uid = randomUUID()
    d.request.name = name
    d.request.oldObject.metadata.name = name
    // Bound, populated long ago: only the watched caches (and the lock check) can hold it.
    delete d.request.oldObject.spec.dataSourceRef
    delete d.request.oldObject.spec.dataSource
    d.request.oldObject.status = { phase: 'Bound' }
    const r = await client.post('/validate', JSON.stringify(d))
    if (r.status !== 200) return void t.fail(`${name}: HTTP ${r.status} ${r.text}`)
    const res = r.json.response
    const held = i % 3 === 0
    const locked = i % 10 === 0
    if (held || locked) {
      denied++
      if (res.allowed !== false) t.fail(`${name}: must be refused (in flight / locked): ${r.text}`)
      if (held && !new RegExp(`ReplicationSource ${NS}/gone-${i}-backup`).test(res.status?.message ?? '')) t.fail(`${name}: does not name the RS: ${res.status?.message}`)
    } else {
      allowed++
      if (res.allowed !== true) t.fail(`${name}: must be allowed: ${r.text}`)
    }
    if (res.patch !== undefined) t.fail(`${name}: a patch on DELETE`)
  })
  t.comment(`DELETE dry runs: ${denied} refused, ${allowed} allowed`)
  t.ok(denied > 0 && allowed > 0)
  t.equal(denied + allowed, N)
})

t.test('0 writes to the Kubernetes API and 0 writes to S3', async (t) => {
  const during = api.requests.slice(apiRequestsBefore)
  const writes = during.filter((r) => r.method !== 'GET')
  t.same(writes.map((r) => `${r.method} ${r.path}`), [], 'the API saw no POST/PUT/PATCH/DELETE')
  const secretGets = during.filter((r) => r.method === 'GET' && /\/secrets(\/|$)/.test(r.path))
  t.ok(secretGets.length > 0, `the dry-run restores read the source Secret (${secretGets.length} GETs)`)
  t.same([...new Set(secretGets.map((r) => r.path))], ['/api/v1/namespaces/smart-restore/secrets/smart-restore-restic'], 'the only Secret read is the source Secret')
  const other = during.filter((r) => r.method === 'GET' && !/\/secrets(\/|$)/.test(r.path) && r.query.watch === undefined && !/^\/apis?(\/[^/]+(\/[^/]+)?)?$/.test(r.path))
  t.same(other.map((r) => r.path), [], 'no other reads: DELETE decisions come from the watched caches')
  t.same(api.objects.list(SECRETS, NS), [], 'no Secret in the namespace')
  t.same(api.objects.list(RDS, NS), [], 'no ReplicationDestination')

  t.same(s3.writes().slice(s3WritesBefore), [], 'S3 saw no PUT/POST/DELETE')
  const reads = s3.requests.slice(seededKeys.length)
  t.ok(reads.some((r) => /list-type=2/.test(r.path) && /snapshots/.test(decodeURIComponent(r.path))), 'S3 was probed (ListObjectsV2 …/snapshots/)')
  t.ok(reads.some((r) => /locks/.test(decodeURIComponent(r.path))), 'and asked for locks')
})

t.test('positive control: a real CREATE writes exactly its Secret and ReplicationDestination', async (t) => {
  const before = api.requests.length
  const d = fixtureReview('create.mutating.json')
  d.request.name = 'dry-0'
  d.request.object.metadata.name = 'dry-0'
  const r = await client.post('/mutate', JSON.stringify(d))
  t.equal(r.json.response.allowed, true)
  const writes = api.requests.slice(before).filter((q) => q.method !== 'GET').map((q) => `${q.method} ${q.path}`)
  t.same(writes, [`POST /apis/volsync.backube/v1alpha1/namespaces/${NS}/replicationdestinations`, `PATCH /api/v1/namespaces/${NS}/secrets/dry-0-restic`], 'the counter sees real writes')
  t.equal(s3.writes().length, s3WritesBefore, 'and S3 is still only read')
})

t.test('no test credential in the log', async (t) => {
  assertNoSecrets(t, log.text())
})
