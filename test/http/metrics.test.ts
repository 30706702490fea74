/**
 * GET /metrics on its own plain-HTTP port after real admissions over HTTPS (the bodies a real
 * kube-apiserver v1.32 sent, renamed per case): the apiserver's latency buckets, decisions and
 * denial causes, probe latency and errors, Kubernetes API errors, in-flight denials — and no
 * namespace, PVC name or secret anywhere in a label value.
 */
import t from 'tap'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { KubeApiError } from '../../src/kube/errors.js'
import { ADMISSION_BUCKETS, causeLabel } from '../../src/metrics.js'
import { startService } from '../../src/service.js'
import { createBackupStore } from '../../src/storage/index.js'
import type { BackupStore } from '../../src/storage/types.js'
import type { ClusterWriter, InFlightView } from '../../src/webhook/ports.js'
import { captureLogger } from '../helpers/capture-log.js'
import { fixtureBody } from '../helpers/fixtures.js'
import { find, parseMetrics, scrape, value } from '../helpers/metrics.js'

const SECRET_VALUES = ['restic-password-do-not-leak', 'AKIA-do-not-leak', 'aws-secret-do-not-leak']
const NAMES = ['media', 'data-claim', 'fresh-claim', 's3-down', 'forbidden-claim', 'busy-claim', 'typo-claim']

const backups = mkdtempSync(join(tmpdir(), 'sr-metrics-'))
for (const key of ['media/data-claim', 'media/forbidden-claim']) {
  mkdirSync(join(backups, key, 'snapshots'), { recursive: true })
  writeFileSync(join(backups, key, 'snapshots', 'a'.repeat(64)), '{}')
}

const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
  store: { ...structuredClone(defaultConfig.store), local: { directory: backups }, probe: { ...defaultConfig.store.probe, mode: 'list' } },
})

// The real local store, except one key whose store "times out", as S3 would.
const real = createBackupStore(config.store)
const store: BackupStore = {
  probe: async (key) => (key === 'media/s3-down' ? { state: 'unknown', location: real.location(key), kind: 'timeout', reason: 'S3 did not answer in time' } : real.probe(key)),
  location: (key) => real.location(key),
  resticRepository: (key) => real.resticRepository(key),
  close: () => real.close(),
}
// Kubernetes writes: the source Secret reads fine; writing for forbidden-claim is refused (RBAC).
const cluster: ClusterWriter = {
  readSecretData: async () => ({ RESTIC_PASSWORD: SECRET_VALUES[0]!, AWS_ACCESS_KEY_ID: SECRET_VALUES[1]!, AWS_SECRET_ACCESS_KEY: SECRET_VALUES[2]! }),
  ensureSecret: async (desired) => {
    if (desired.metadata.name === 'forbidden-claim-restic') {
      throw new KubeApiError({ kind: 'forbidden', status: 403, object: `Secret media/${desired.metadata.name}`, message: `create Secret media/${desired.metadata.name}: forbidden (HTTP 403): secrets is forbidden` })
    }
    return 'created'
  },
  ensureReplicationDestinationObject: async () => ({ result: 'created', uid: 'uid-of-rd' }),
  delete: async () => 'deleted',
}
// The deletion guard's view: busy-claim has a backup running.
const inFlight: InFlightView = {
  syncState: () => ({ synced: true }),
  namespaceTerminating: () => false,
  findInFlight: (pvc) =>
    pvc.name === 'busy-claim'
      ? [{ ruleId: 'volsync-replicationsource', system: 'VolSync', kind: 'ReplicationSource', namespace: pvc.namespace, name: 'busy-claim-backup', why: 'condition Synchronizing=True (SyncInProgress)', since: '2026-11-22T04:40:00Z' }]
      : [],
}

const log = captureLogger('info')
const service = await startService(config, { logger: log.logger, store, cluster, inFlight })
t.teardown(() => service.close())
const agent = new Agent({ keepAlive: true, ca: service.caCert })
t.teardown(() => agent.destroy())

let uids = 0
function review(file: string, edit: { name?: string; tier?: string } = {}): { body: string; uid: string } {
  const r = JSON.parse(fixtureBody(file))
  const uid = `00000000-0000-4000-8000-${String(++uids).padStart(12, '0')}`
  r.request.uid = uid
  const obj = r.request.object ?? r.request.oldObject
  if (edit.name) {
    r.request.name = edit.name
    obj.metadata.name = edit.name
  }
  if (edit.tier) obj.metadata.labels.backup = edit.tier
  return { body: JSON.stringify(r), uid }
}

function admit(path: '/mutate' | '/validate', r: { body: string; uid: string }): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${service.url}${path}?timeout=10s`, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      let b = ''
      res.on('data', (c) => (b += c))
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`${path}: HTTP ${res.statusCode}: ${b}`))
        const json = JSON.parse(b)
        if (json.response.uid !== r.uid) return reject(new Error('uid not echoed'))
        resolve(json.response)
      })
    })
    req.on('error', reject)
    req.end(r.body)
  })
}

t.test('after real admissions, /metrics has them with bounded labels', async (t) => {
  t.ok(service.metricsUrl, 'a metrics listener')
  t.match(service.metricsUrl!, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'plain HTTP, its own port')
  t.not(new URL(service.metricsUrl!).port, String(service.port))

  const answers = {
    restore: await admit('/mutate', review('create.mutating.json')),
    fresh: await admit('/mutate', review('create.mutating.json', { name: 'fresh-claim' })),
    unknownTier: await admit('/mutate', review('create.mutating.json', { name: 'typo-claim', tier: 'hourlyy' })),
    s3Down: await admit('/mutate', review('create.mutating.json', { name: 's3-down' })),
    forbidden: await admit('/mutate', review('create.mutating.json', { name: 'forbidden-claim' })),
    busy: await admit('/validate', review('delete.validating.json', { name: 'busy-claim' })),
    deleteClear: await admit('/validate', review('delete.validating.json', { name: 'fresh-claim' })),
    crossCheck: await admit('/validate', review('create.validating.json', { name: 'fresh-claim' })),
  }
  t.equal(answers.restore.allowed, true)
  t.equal(answers.fresh.allowed, true)
  t.equal(answers.unknownTier.allowed, false)
  t.equal(answers.s3Down.allowed, false)
  t.equal(answers.forbidden.allowed, false)
  t.equal(answers.busy.allowed, false)
  t.equal(answers.deleteClear.allowed, true)
  t.equal(answers.crossCheck.allowed, true)

  const res = await scrape(service.metricsUrl!)
  t.equal(res.status, 200)
  t.match(res.contentType, /^text\/plain; version=0\.0\.4/)
  const samples = parseMetrics(res.body)

  // The apiserver's buckets, exactly, per webhook/operation/decision.
  const buckets = find(samples, 'smart_restore_admission_duration_seconds_bucket', { webhook: 'mutate', operation: 'CREATE', decision: 'fresh' })
  t.same(buckets.map((s) => s.labels.le), [...ADMISSION_BUCKETS.map(String), '+Inf'], 'le="0.005" … le="25", +Inf')
  t.equal(buckets.at(-1)!.value, 1, 'one fresh CREATE')
  t.equal(value(samples, 'smart_restore_admission_duration_seconds_count', { webhook: 'mutate', operation: 'CREATE' }), 5, 'five mutating CREATEs observed')
  t.equal(value(samples, 'smart_restore_admission_duration_seconds_count', { webhook: 'validate', operation: 'DELETE' }), 2)
  t.ok(value(samples, 'smart_restore_admission_duration_seconds_sum', { webhook: 'mutate' }) > 0)

  // Decisions, denials with their cause.
  t.equal(value(samples, 'smart_restore_decisions_total', { webhook: 'mutate', decision: 'restore' }), 1)
  t.equal(value(samples, 'smart_restore_decisions_total', { webhook: 'mutate', decision: 'fresh' }), 1)
  t.equal(value(samples, 'smart_restore_decisions_total', { webhook: 'mutate', decision: 'denied', cause: 'unknown-tier' }), 1)
  t.equal(value(samples, 'smart_restore_decisions_total', { webhook: 'mutate', decision: 'denied', cause: 'store-unknown-timeout' }), 1)
  t.equal(value(samples, 'smart_restore_decisions_total', { webhook: 'mutate', decision: 'denied', cause: 'create-restore-objects-forbidden' }), 1)
  t.equal(value(samples, 'smart_restore_decisions_total', { webhook: 'validate', decision: 'denied', cause: 'in-flight' }), 1)
  t.equal(value(samples, 'smart_restore_decisions_total', { webhook: 'validate', decision: 'allowed' }), 2, 'the clear DELETE and the CREATE cross-check')
  for (const s of find(samples, 'smart_restore_decisions_total')) {
    t.equal('cause' in s.labels, s.labels.decision === 'denied', `a cause label only on denials (${JSON.stringify(s.labels)})`)
  }

  // The probe, as the mutating webhook saw it: exists (restore, forbidden), none (fresh), unknown (s3-down).
  t.equal(value(samples, 'smart_restore_store_probe_duration_seconds_count', { state: 'exists' }), 2)
  t.equal(value(samples, 'smart_restore_store_probe_duration_seconds_count', { state: 'none' }), 1)
  t.equal(value(samples, 'smart_restore_store_probe_duration_seconds_count', { state: 'unknown' }), 1)
  t.equal(value(samples, 'smart_restore_store_probe_errors_total', { kind: 'timeout' }), 1)

  t.equal(value(samples, 'smart_restore_kube_api_errors_total', { kind: 'forbidden' }), 1)
  t.equal(value(samples, 'smart_restore_inflight_denials_total', { rule: 'volsync-replicationsource' }), 1)

  // Process metrics, prefixed; the certificate's expiry; the standalone-free service has no caches to report.
  t.ok(find(samples, 'smart_restore_process_resident_memory_bytes').length + find(samples, 'smart_restore_nodejs_heap_size_used_bytes').length > 0, 'Node.js default metrics, prefixed smart_restore_')
  t.notOk(samples.some((s) => !s.name.startsWith('smart_restore_')), 'every metric is prefixed smart_restore_')
  t.ok(value(samples, 'smart_restore_tls_certificate_expiry_timestamp_seconds') > Date.now() / 1000, 'certificate expiry in the future')

  // Cardinality and secrecy: no object name in any label value, no secret anywhere.
  const labelValues = new Set(samples.flatMap((s) => Object.values(s.labels)))
  for (const name of NAMES) {
    // Whole words: the default metrics have e.g. type="Immediate", which contains "media".
    const word = new RegExp(`(^|[^A-Za-z0-9])${name}($|[^A-Za-z0-9])`)
    t.notOk([...labelValues].some((v) => word.test(v)), `no label value mentions ${name}`)
  }
  for (const secret of SECRET_VALUES) t.notOk(res.body.includes(secret), 'no secret value in the exposition')
  t.notOk(res.body.includes(backups), 'no store location')
})

t.test('the metrics listener answers only GET /metrics', async (t) => {
  const other = await scrape(service.metricsUrl!.replace('/metrics', '/'))
  t.equal(other.status, 404)
})

t.test('denial causes map to a bounded set', async (t) => {
  t.equal(causeLabel('unknown-tier'), 'unknown-tier')
  t.equal(causeLabel('store-unknown-forbidden'), 'store-unknown-forbidden')
  t.equal(causeLabel('locks-unknown-network'), 'locks-unknown-network')
  t.equal(causeLabel('source-secret-timeout'), 'source-secret-timeout')
  t.equal(causeLabel('in-flight-acme-backup'), 'in-flight', 'the rule is counted by smart_restore_inflight_denials_total')
  t.equal(causeLabel('store-unknown-something-new'), 'other')
  t.equal(causeLabel('media/data-claim'), 'other')
  t.equal(causeLabel(undefined), 'other')
})

t.test('metricsPort -1: no metrics listener', async (t) => {
  const off = validateConfig({ ...config, server: { ...config.server, metricsPort: -1 } })
  const svc = await startService(off, { logger: captureLogger('error').logger, store, cluster: null, inFlight: null })
  t.teardown(() => svc.close())
  t.equal(svc.metricsUrl, undefined)
})
