/**
 * The orphan sweep through the loopback API server: a restore RD of smart-restore whose PVC never
 * came is deleted (uid precondition) after reconciler.orphanGraceMs; its Secret is owned by it, so
 * the garbage collector takes it (a real apiserver's; the e2e suite shows that part). Everything
 * else stays.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { find, parseMetrics, scrape } from '../helpers/metrics.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { startS3rver, storeConfig } from '../helpers/storage-servers.js'

const PVCS = '/api/v1/persistentvolumeclaims'
const RD = '/apis/volsync.backube/v1alpha1/replicationdestinations'
const NAMESPACES = '/api/v1/namespaces'
const GRACE_MS = 1500

const s3 = await startS3rver()
t.teardown(() => s3.close())
const api = await startFakeApiServer()
t.teardown(() => api.close())
api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps' } })

const anHourAgo = new Date(Date.now() - 3_600_000).toISOString()
function restoreRd(pvc: string, extra: Record<string, unknown> = {}, labels: Record<string, string> = { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': pvc }) {
  return api.objects.put(RD, {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationDestination',
    metadata: { name: `${pvc}-restore`, namespace: 'apps', creationTimestamp: anHourAgo, labels, annotations: { 'smart-restore.io/pvc': pvc }, ...extra },
    spec: { trigger: { manual: 'smart-restore' }, restic: { repository: `${pvc}-restic`, copyMethod: 'Snapshot' } },
  })
}
const orphan = restoreRd('never-came')
restoreRd('came')
api.objects.put(PVCS, {
  apiVersion: 'v1',
  kind: 'PersistentVolumeClaim',
  metadata: { name: 'came', namespace: 'apps', labels: {} },
  spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  status: { phase: 'Pending' },
})
restoreRd('foreign', {}, { 'app.kubernetes.io/managed-by': 'someone-else' })
restoreRd('owned', { ownerReferences: [{ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'owned', uid: 'deleted-pvc-uid' }] })

const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
  store: storeConfig(s3.endpoint),
  kube: { mode: 'cluster', requestTimeoutMs: 1000 },
  reconciler: { ...defaultConfig.reconciler, orphanGraceMs: GRACE_MS },
})
const log = captureLogger('info')
const service: ServiceHandle = await startService(config, { logger: log.logger, kubeConfig: api.kubeConfig })
t.teardown(() => service.close())

t.test('the orphan is deleted exactly, once; the others stay', async (t) => {
  const until = Date.now() + 10_000
  while (api.objects.get(RD, 'apps', 'never-came-restore') && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
  t.equal(api.objects.get(RD, 'apps', 'never-came-restore'), undefined, 'the RD whose PVC never came is gone')
  const deletes = api.requests.filter((r) => r.method === 'DELETE')
  t.same(deletes.map((r) => r.path), ['/apis/volsync.backube/v1alpha1/namespaces/apps/replicationdestinations/never-came-restore'], 'one DELETE, of the orphan only')
  t.match(deletes[0]!.body, { preconditions: { uid: orphan.metadata.uid }, propagationPolicy: 'Background' }, 'uid precondition: never a newer RD of that name; its Secret goes with it')
  t.ok(api.requests.some((r) => r.method === 'GET' && r.path === '/api/v1/namespaces/apps/persistentvolumeclaims/never-came'), 'a live read of the PVC before the delete')

  // Another sweep or two: nothing else is touched.
  await new Promise((r) => setTimeout(r, GRACE_MS * 2 + 200))
  t.equal(api.requests.filter((r) => r.method === 'DELETE').length, 1, 'still the one DELETE')
  for (const pvc of ['came', 'foreign', 'owned']) t.ok(api.objects.get(RD, 'apps', `${pvc}-restore`), `${pvc}-restore stays`)
  t.ok(log.lines().some((l) => l.msg?.startsWith('orphaned restore removed') && l.object === 'ReplicationDestination apps/never-came-restore' && l.pvc === 'apps/never-came'), 'logged with the PVC it was for')
  const samples = parseMetrics((await scrape(service.metricsUrl!)).body)
  t.same(find(samples, 'smart_restore_reconcile_findings_total', { finding: 'orphan_restore_removed' }).map((s) => s.value), [1], 'counted')
})
