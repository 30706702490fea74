/**
 * Hardening: the soak. Behind SOAK=1 (it takes SOAK_MINUTES, default 10, ≥ 10 for the real thing).
 *
 * The service in cluster mode — HTTPS, its own ClusterClient and watched caches against the
 * loopback API server, the backup-source reconciler on, S3 a real s3rver — gets a fixed-rate mix
 * (SOAK_RATE requests per second, default 25) over keep-alive HTTPS, as the apiserver sends it:
 *  - CREATE of a PVC without a backup                 → allowed, decision fresh
 *  - CREATE of a PVC with a backup (a pool of 40,
 *    so the API objects are found again, not piled)   → allowed, decision restore
 *  - the validating cross-check of a restored PVC      → allowed
 *  - DELETE, some held by an in-flight backup          → refused / allowed as the caches say
 *  - dry-run CREATEs                                   → same decision, nothing written
 *  - malformed bodies from the fuzz generator          → a 4xx with a message, or a valid review
 * Errors: an unanswered request (15 s), a 5xx, an invalid review, a wrong decision, an error-level
 * log line, a credential in the log, falling behind the rate. 0 are allowed.
 * Memory: RSS after a full GC at the end of the warm-up (a fifth of the run, at most 2 minutes)
 * and at the end: growth < 10%. The loopback servers live in this process too; their request logs
 * are trimmed as the run goes so only the service's memory can grow.
 *
 * Without SOAK=1 the test is skipped, saying so (it is not a vacuous pass).
 */
import t from 'tap'
import { randomUUID } from 'node:crypto'
import { get as getHttps } from 'node:https'
import { startService } from '../../src/service.js'
import { installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import { checkReply, fuzzCase } from '../helpers/fuzz-bodies.js'
import { gcFunction, hardeningConfig, httpsClient, memorySample, MiB, scanningLogger, sourceSecret, startRecordingS3rver } from '../helpers/hardening.js'
import { seed } from '../helpers/storage-servers.js'

const ENABLED = process.env.SOAK === '1'
const MINUTES = Number(process.env.SOAK_MINUTES ?? 10)
const RATE = Number(process.env.SOAK_RATE ?? 25)
const RSS_GROWTH_BOUND = 0.1
const NS = 'media'
const RESTORE_POOL = 40

if (!ENABLED) {
  t.test(`soak: ${MINUTES} min at ${RATE}/s`, { skip: 'SOAK=1 is not set: the soak did not run (SOAK=1 SOAK_MINUTES=10 npx tap test/hardening/soak.test.ts)' }, () => {})
} else {
  t.setTimeout((MINUTES + 5) * 60_000)
  t.test(`soak: ${MINUTES} min at ${RATE}/s`, async (t) => {
    const s3 = await startRecordingS3rver()
    t.teardown(s3.close)
    const keys: string[] = []
    for (let i = 0; i < RESTORE_POOL; i++) keys.push(`${NS}/soak-restore-${i}/config`, `${NS}/soak-restore-${i}/snapshots/${'ab'.repeat(32)}`)
    await seed(s3.endpoint, keys)

    const api = await startFakeApiServer()
    installRestorePrerequisites(api)
    t.teardown(() => api.close())
    api.objects.put('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS }, status: { phase: 'Active' } })
    api.objects.put('/api/v1/secrets', sourceSecret())
    for (let i = 0; i < 100; i += 4) {
      api.objects.put('/apis/volsync.backube/v1alpha1/replicationsources', {
        apiVersion: 'volsync.backube/v1alpha1',
        kind: 'ReplicationSource',
        metadata: { name: `soak-del-${i}-backup`, namespace: NS },
        spec: { sourcePVC: `soak-del-${i}`, trigger: { schedule: '0 * * * *' }, restic: { repository: `soak-del-${i}-restic`, copyMethod: 'Snapshot' } },
        status: { conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'in progress', lastTransitionTime: '2026-11-22T04:40:00Z' }], lastSyncStartTime: '2026-11-22T04:40:00Z' },
      })
    }

    const logs = scanningLogger('info')
    // The production deadlines (probe 3 s, API 3 s).
    const config = hardeningConfig({ s3Endpoint: s3.endpoint, deadlineMs: 3000, cacheTtlMs: 10_000, requestTimeoutMs: 3000 })
    config.kube.mode = 'cluster'
    const service = await startService(config, { logger: logs.logger, kubeConfig: api.kubeConfig })
    t.teardown(() => service.close())
    const client = httpsClient(service.url, service.caCert, { keepAlive: true, maxSockets: 16 })
    t.teardown(client.close)
    for (const until = Date.now() + 20_000; ; ) {
      const status = await new Promise<number>((resolve) => getHttps(`${service.url}/readyz`, { ca: service.caCert }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', () => resolve(0)))
      if (status === 200) break
      if (Date.now() > until) throw new Error('not ready after 20 s')
      await new Promise((r) => setTimeout(r, 100))
    }

    const errors: string[] = []
    const error = (what: string) => {
      if (errors.length < 30) errors.push(what)
      errorCount++
    }
    let errorCount = 0
    const counts: Record<string, number> = {}
    let seq = 0

    const review = (file: string, name: string, edit: (r: any) => void = () => {}) => {
      const d = fixtureReview(file)
      d.request.uid = randomUUID()
      d.request.name = name
      if (d.request.object?.metadata) d.request.object.metadata.name = name
      if (d.request.oldObject?.metadata) d.request.oldObject.metadata.name = name
      edit(d.request)
      return d
    }
    const decisionOf = (res: any) => {
      if (!res.patch) return undefined
      const ops = JSON.parse(Buffer.from(res.patch, 'base64').toString())
      return ops.find((o: any) => o.path === '/metadata/annotations/smart-restore.io~1decision')?.value
    }

    /** One request of the mix; resolves when it is answered and checked. */
    async function one(n: number): Promise<void> {
      const kind = ['fresh', 'restore', 'restore', 'cross-check', 'delete', 'delete', 'dry-run', 'malformed', 'malformed', 'fresh'][n % 10]!
      counts[kind] = (counts[kind] ?? 0) + 1
      try {
        if (kind === 'malformed') {
          const c = fuzzCase(4242, n)
          const r = await client.post(c.path, c.body, { contentType: c.contentType, query: c.query })
          const problems = checkReply(c, { status: r.status, contentType: String(r.headers['content-type'] ?? ''), text: r.text })
          if (problems.length) error(`malformed #${n} (${c.category}): ${problems.join('; ')}`)
          return
        }
        let path = '/mutate'
        let body: unknown
        let expect: (res: any) => string | undefined
        const restoreName = `soak-restore-${n % RESTORE_POOL}`
        switch (kind) {
          case 'fresh':
            body = review('create.mutating.json', `soak-fresh-${n % 5000}`)
            expect = (res) => (res.allowed && decisionOf(res) === 'fresh' ? undefined : 'expected fresh')
            break
          case 'restore':
            body = review('create.mutating.json', restoreName)
            expect = (res) => (res.allowed && decisionOf(res) === 'restore' ? undefined : 'expected restore')
            break
          case 'cross-check':
            path = '/validate'
            body = review('create.validating.json', restoreName, (r) => (r.object.spec.dataSourceRef = { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: `${restoreName}-restore` }))
            expect = (res) => (res.allowed ? undefined : 'expected the restored PVC to pass the cross-check')
            break
          case 'delete': {
            path = '/validate'
            const i = n % 100
            body = review('delete.validating.json', `soak-del-${i}`, (r) => {
              delete r.oldObject.spec.dataSourceRef
              delete r.oldObject.spec.dataSource
              r.oldObject.status = { phase: 'Bound' }
            })
            const held = i % 4 === 0
            expect = (res) => (res.allowed === !held ? undefined : `expected ${held ? 'refused' : 'allowed'}`)
            break
          }
          default:
            body = review('create-dryrun.mutating.json', n % 2 ? restoreName : `soak-dry-${n % 5000}`)
            expect = (res) => (res.allowed && decisionOf(res) === (n % 2 ? 'restore' : 'fresh') ? undefined : 'expected the same decision as a real create')
        }
        const r = await client.post(path, JSON.stringify(body))
        if (r.status !== 200) return error(`${kind} #${n}: HTTP ${r.status} ${r.text.slice(0, 200)}`)
        const wrong = expect(r.json.response)
        if (wrong) error(`${kind} #${n}: ${wrong}: ${r.text.slice(0, 300)}`)
      } catch (err) {
        error(`${kind} #${n}: no answer: ${(err as Error).message}`)
      }
    }

    // Prime connections, JIT and s3rver with one request of each kind before the clock starts.
    for (let n = 0; n < 10; n++) await one(1_000_000 + n)
    errors.length = 0
    errorCount = 0
    for (const k of Object.keys(counts)) delete counts[k]

    const gc = gcFunction()
    const totalMs = MINUTES * 60_000
    const warmupMs = Math.min(totalMs / 5, 120_000)
    const started = Date.now()
    const inFlight = new Set<Promise<void>>()
    let baseline: Awaited<ReturnType<typeof memorySample>> | undefined
    const samples: string[] = []
    let behind = 0
    let nextSample = started + warmupMs
    // Fixed rate: request n is due at started + n/RATE s, whatever the answers' timing.
    while (Date.now() - started < totalMs) {
      const due = started + (seq * 1000) / RATE
      const wait = due - Date.now()
      if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      else if (wait < -2000) behind++
      if (inFlight.size > 200) {
        error(`falling behind: ${inFlight.size} requests in flight`)
        await Promise.race(inFlight)
      }
      const p = one(seq++).finally(() => inFlight.delete(p))
      inFlight.add(p)
      if (Date.now() >= nextSample) {
        // The loopback servers' request logs are test state, not service state.
        api.requests.length = 0
        s3.requests.length = 0
        const m = await memorySample(gc)
        if (!baseline) baseline = m
        samples.push(`${Math.round((Date.now() - started) / 1000)}s: rss ${(m.rss / MiB).toFixed(0)} MiB, heap ${(m.heapUsed / MiB).toFixed(0)} MiB`)
        nextSample = Date.now() + 30_000
      }
    }
    await Promise.all(inFlight)
    api.requests.length = 0
    s3.requests.length = 0
    const end = await memorySample(gc)
    samples.push(`end: rss ${(end.rss / MiB).toFixed(0)} MiB, heap ${(end.heapUsed / MiB).toFixed(0)} MiB`)

    t.comment(`${seq} requests in ${((Date.now() - started) / 1000).toFixed(0)} s; mix ${JSON.stringify(counts)}`)
    for (const s of samples) t.comment(s)
    for (const e of errors) t.comment(`ERROR ${e}`)
    t.equal(errorCount, 0, '0 errors')
    t.equal(behind, 0, 'the rate was kept')
    const logErrors = logs.errors()
    t.same(Object.keys(logErrors.bySignature), [], 'no error-level log line')
    t.same(logs.leaks(), [], 'no test credential in the log')
    t.ok(seq >= RATE * MINUTES * 60 * 0.95, `the mix ran at the rate (${seq} requests)`)
    const growth = (end.rss - baseline!.rss) / baseline!.rss
    t.ok(growth < RSS_GROWTH_BOUND, `RSS growth after warm-up ${(growth * 100).toFixed(1)}% < ${RSS_GROWTH_BOUND * 100}% (${(baseline!.rss / MiB).toFixed(0)} → ${(end.rss / MiB).toFixed(0)} MiB)`)
  })
}
