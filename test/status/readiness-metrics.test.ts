/**
 * The DR-readiness metrics of the running service: through the loopback API server and s3rver
 * holding restic-format repositories, after one refresh period. Per PVC by default; per tier only
 * with metrics.perPvc=false; no object name in any other metric.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { startService } from '../../src/service.js'
import { writeResticRepository } from '../../src/storage/restic/writer.js'
import { captureLogger } from '../helpers/capture-log.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { find, parseMetrics, scrape, type Sample } from '../helpers/metrics.js'
import { seedObjects, startS3rver, storeConfig } from '../helpers/storage-servers.js'

t.setTimeout(120_000)
const PASSWORD = 'readiness-metrics-pw'
const NOW = Date.now()
const iso = (minutesAgo: number) => new Date(NOW - minutesAgo * 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z')

const s3 = await startS3rver()
t.teardown(() => s3.close())
for (const [key, minutesAgo] of [['media/ok-claim', 20], ['media/late-claim', 60 * 5]] as const) {
  const repo = await writeResticRepository(PASSWORD, [{ time: iso(minutesAgo), paths: ['/data'], hostname: 'volsync' }])
  await seedObjects(s3.endpoint, [...repo.files].map(([p, body]) => [`${key}/${p}`, body]))
}

async function cluster() {
  const api = await startFakeApiServer()
  api.objects.put('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'media' } })
  api.objects.put('/api/v1/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' }, data: { RESTIC_PASSWORD: Buffer.from(PASSWORD).toString('base64') } })
  for (const [name, created, annotations] of [
    ['ok-claim', 60 * 24, {}],
    ['late-claim', 60 * 24, {}],
    ['none-claim', 60 * 24, { 'smart-restore.io/attention': 'backups exist …' }],
  ] as const) {
    api.objects.put('/api/v1/persistentvolumeclaims', {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, namespace: 'media', labels: { backup: 'hourly' }, annotations: { 'smart-restore.io/decision': 'fresh', ...annotations }, creationTimestamp: iso(created) },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      status: { phase: 'Pending' }, // Pending: the reconciler leaves them alone; readiness does not care
    })
  }
  return api
}

function configFor(perPvc: boolean): Config {
  return validateConfig({
    ...structuredClone(defaultConfig),
    server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
    store: storeConfig(s3.endpoint, { probe: { mode: 'restic', deadlineMs: 5000, cacheTtlMs: 0 } }),
    kube: { mode: 'cluster', requestTimeoutMs: 2000 },
    metrics: { perPvc, readinessRefreshMs: 6000 },
  })
}

async function afterOnePeriod(metricsUrl: string): Promise<Sample[]> {
  const until = Date.now() + 30_000
  for (;;) {
    const samples = parseMetrics((await scrape(metricsUrl)).body)
    if (find(samples, 'smart_restore_readiness_refresh_timestamp_seconds').some((s) => s.value > 0)) return samples
    if (Date.now() > until) throw new Error('no full readiness period within 30 s')
    await new Promise((r) => setTimeout(r, 200))
  }
}

t.test('per PVC: restore point, readiness state, attention; per tier counts; the tier interval', async (t) => {
  const api = await cluster()
  t.teardown(() => api.close())
  const service = await startService(configFor(true), { logger: captureLogger('warn').logger, kubeConfig: api.kubeConfig })
  t.teardown(() => service.close())
  const samples = await afterOnePeriod(service.metricsUrl!)
  const state = (pvc: string) => find(samples, 'smart_restore_pvc_readiness', { namespace: 'media', pvc, tier: 'hourly' }).filter((s) => s.value === 1).map((s) => s.labels.state)
  t.same(state('ok-claim'), ['ok'])
  t.same(state('late-claim'), ['late'], '5 h old on an hourly tier: late')
  t.same(state('none-claim'), ['none'])
  t.equal(find(samples, 'smart_restore_pvc_readiness', { pvc: 'ok-claim' }).length, 5, 'one series per state, one-hot')
  const point = find(samples, 'smart_restore_pvc_restore_point_timestamp_seconds', { namespace: 'media', pvc: 'ok-claim', tier: 'hourly' })
  t.same(point.map((s) => s.value), [Date.parse(iso(20)) / 1000], 'the time of the snapshot VolSync would restore')
  t.same(find(samples, 'smart_restore_pvc_restore_point_timestamp_seconds', { pvc: 'none-claim' }), [], 'absent without one')
  t.same(find(samples, 'smart_restore_pvc_attention', { pvc: 'none-claim' }).map((s) => s.value), [1])
  t.same(find(samples, 'smart_restore_pvc_attention', { pvc: 'ok-claim' }).map((s) => s.value), [0])
  const count = (tier: string, st: string) => find(samples, 'smart_restore_pvcs', { tier, state: st }).map((s) => s.value)
  t.same(count('hourly', 'ok'), [1])
  t.same(count('hourly', 'late'), [1])
  t.same(count('hourly', 'none'), [1])
  t.same(count('daily', 'ok'), [0], 'every tier and state, zeros included')
  t.same(find(samples, 'smart_restore_pvcs_attention', { tier: 'hourly' }).map((s) => s.value), [1])
  t.same(find(samples, 'smart_restore_tier_interval_seconds', { tier: 'hourly' }).map((s) => s.value), [3600])
  t.same(find(samples, 'smart_restore_tier_interval_seconds', { tier: 'daily' }).map((s) => s.value), [86400])
  t.same(find(samples, 'smart_restore_tier_interval_seconds', { tier: 'weekly' }).map((s) => s.value), [604800])

  // No object name in any metric but the per-PVC ones.
  const perPvc = new Set(['smart_restore_pvc_readiness', 'smart_restore_pvc_restore_point_timestamp_seconds', 'smart_restore_pvc_last_backup_timestamp_seconds', 'smart_restore_pvc_attention'])
  const leaks = samples.filter((s) => !perPvc.has(s.name) && Object.values(s.labels).some((v) => /^(media|ok-claim|late-claim|none-claim)$|media\/|-claim\b/.test(v)))
  t.same(leaks.map((s) => s.name), [], 'no namespace or PVC name elsewhere')
})

t.test('metrics.perPvc=false: only the per-tier series', async (t) => {
  const api = await cluster()
  t.teardown(() => api.close())
  const service = await startService(configFor(false), { logger: captureLogger('warn').logger, kubeConfig: api.kubeConfig })
  t.teardown(() => service.close())
  const samples = await afterOnePeriod(service.metricsUrl!)
  t.same(samples.filter((s) => s.name.startsWith('smart_restore_pvc_')).map((s) => s.name), [], 'no per-PVC series')
  t.same(find(samples, 'smart_restore_pvcs', { tier: 'hourly', state: 'late' }).map((s) => s.value), [1])
  t.ok(samples.every((s) => !Object.values(s.labels).some((v) => /-claim\b/.test(v))), 'no PVC name anywhere')
})
