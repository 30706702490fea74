/**
 * The restore preflight with real parts: the service watches a loopback API server (StorageClasses,
 * VolumeSnapshotClasses, VolumePopulators) through client-node, and a restore that VolSync could
 * not populate is refused naming what is missing — here the VolumePopulator CRD, then present.
 * Readiness stays 200 throughout and says what is missing; a metric says it too.
 */
import t from 'tap'
import { request as httpsRequest } from 'node:https'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { find, parseMetrics, scrape } from '../helpers/metrics.js'
import { POPULATOR_RESOURCE, installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import { seed, startS3rver, storeConfig } from '../helpers/storage-servers.js'

const s3 = await startS3rver()
t.teardown(() => s3.close())
await seed(s3.endpoint, ['media/data-claim/config', `media/data-claim/snapshots/${'ab'.repeat(32)}`])

const api = await startFakeApiServer()
t.teardown(() => api.close())
installRestorePrerequisites(api)
// A cluster with VolSync and the snapshot CRDs, but without the VolumePopulator CRD.
api.uninstallResource(POPULATOR_RESOURCE)
api.objects.put('/api/v1/secrets', {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
  data: { RESTIC_PASSWORD: Buffer.from('pw').toString('base64') },
})

const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
  store: storeConfig(s3.endpoint, { probe: { deadlineMs: 1500 } }),
  kube: { mode: 'cluster', requestTimeoutMs: 1000 },
  reconciler: { ...defaultConfig.reconciler, enabled: false },
})
const log = captureLogger('info')
const service: ServiceHandle = await startService(config, { logger: log.logger, kubeConfig: api.kubeConfig, watch: { rediscoverMs: 300 } })
t.teardown(() => service.close())

function call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${service.url}${path}`, { method, ca: service.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}

async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = await check()
    if (v) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const rdCreates = () => api.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/replicationdestinations')).length
const gauge = async (prerequisite: string) => find(parseMetrics((await scrape(service.metricsUrl!)).body), 'smart_restore_restore_prerequisite_missing', { prerequisite }).map((s) => s.value)

t.test('without the VolumePopulator CRD: the restore is refused, naming it; ready all the same', async (t) => {
  const ready = await eventually('readiness with the prerequisites known', async () => {
    const r = await call('GET', '/readyz')
    return r.status === 200 && r.json.checks?.restorePrerequisites?.startsWith('missing') && r
  })
  t.match(ready.json.checks.restorePrerequisites, /^missing: the CRD volumepopulators\.populator\.storage\.k8s\.io .*\(restores are refused, 422\)$/)
  t.same(await gauge('volume_populator_crd'), [1], 'the metric says it')
  t.same(await gauge('volumesnapshot_api'), [0])
  t.ok(await eventually('the warning in the log', async () => log.lines().some((l) => l.level === 40 && l.msg?.startsWith('restores cannot be populated') && /volumepopulators/.test(String(l.missing)))), 'a warning in the log')

  const before = rdCreates()
  const res = await call('POST', '/mutate', fixtureReview('create.mutating.json'))
  t.equal(res.json.response.allowed, false)
  t.equal(res.json.response.status.code, 422)
  t.match(res.json.response.status.message, /^a backup of media\/data-claim exists, but its restore cannot be populated: missing the CRD volumepopulators\.populator\.storage\.k8s\.io/)
  t.match(res.json.response.status.message, /skip-restore/)
  t.equal(rdCreates(), before, 'nothing created')
})

t.test('the CRD installed: the next restore goes ahead', async (t) => {
  api.installResource(POPULATOR_RESOURCE)
  await eventually('the prerequisites present', async () => (await call('GET', '/readyz')).json.checks?.restorePrerequisites === 'present')
  t.same(await gauge('volume_populator_crd'), [0])
  const res = await call('POST', '/mutate', fixtureReview('create.mutating.json'))
  t.equal(res.json.response.allowed, true, res.json.response.status?.message)
  t.equal(rdCreates(), 1, 'the ReplicationDestination was created')
  t.ok(await eventually('the all-clear in the log', async () => log.lines().some((l) => l.msg === 'restore prerequisites are all present again')))
})

t.test('a PVC in a StorageClass that does not exist: refused, naming it', async (t) => {
  const review = fixtureReview('create.mutating.json')
  review.request.uid = 'b1c0ffee-0000-4000-8000-000000000001'
  review.request.object.spec.storageClassName = 'no-such-class'
  const res = await call('POST', '/mutate', review)
  t.equal(res.json.response.status?.code, 422)
  t.match(res.json.response.status?.message, /missing StorageClass no-such-class \(the PVC's class: the volume populator provisions in it\)/)
})
