/**
 * WatchedCache with 10,000 objects through the real client-node against the fake apiserver: how long
 * the initial list takes to load and index, what the cache retains, and a relist of the same size.
 * Figures are reported with t.comment, not asserted (machines differ); only correctness is asserted.
 */
import t from 'tap'
import v8 from 'node:v8'
import vm from 'node:vm'
import { startFakeApiServer, type StoredObject } from '../helpers/fake-apiserver.js'
import { WatchedCache, type WatchSpec } from '../../src/kube/watch-cache.js'
import type { KubeObject, ResourceRef } from '../../src/inflight/types.js'
import { until } from '../helpers/wait.js'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

const PVC: ResourceRef = { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims' }
const PVCS = '/api/v1/persistentvolumeclaims'
const N = 10_000
const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`

/** A PVC as a real cluster stores it: last-applied annotation and managedFields included. */
function pvc(i: number): StoredObject {
  const ns = `ns-${i % 100}`
  const name = `data-${i}`
  const spec = { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } }, storageClassName: 'ceph-block', volumeMode: 'Filesystem', volumeName: `pvc-${i.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000` }
  return {
    metadata: {
      name,
      namespace: ns,
      labels: { app: `app-${i % 500}`, 'backup.smart-restore.io/tier': i % 3 ? 'daily' : 'hourly', 'app.kubernetes.io/instance': `release-${i % 250}` },
      annotations: {
        'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace: ns }, spec }),
        'pv.kubernetes.io/bind-completed': 'yes',
        'pv.kubernetes.io/bound-by-controller': 'yes',
        'volume.beta.kubernetes.io/storage-provisioner': 'rook-ceph.rbd.csi.ceph.com',
      },
      finalizers: ['kubernetes.io/pvc-protection'],
      managedFields: [
        { manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'v1', time: '2030-01-01T00:00:00Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:annotations': { '.': {}, 'f:kubectl.kubernetes.io/last-applied-configuration': {} }, 'f:labels': { '.': {}, 'f:app': {} } }, 'f:spec': { 'f:accessModes': {}, 'f:resources': { 'f:requests': { '.': {}, 'f:storage': {} } }, 'f:storageClassName': {}, 'f:volumeMode': {} } } },
        { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2030-01-01T00:00:01Z', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:annotations': { 'f:pv.kubernetes.io/bind-completed': {}, 'f:pv.kubernetes.io/bound-by-controller': {} } }, 'f:spec': { 'f:volumeName': {} } } },
        { manager: 'kube-controller-manager', operation: 'Update', apiVersion: 'v1', time: '2030-01-01T00:00:01Z', fieldsType: 'FieldsV1', subresource: 'status', fieldsV1: { 'f:status': { 'f:accessModes': {}, 'f:capacity': { '.': {}, 'f:storage': {} }, 'f:phase': {} } } },
      ],
    },
    spec,
    status: { phase: 'Bound', accessModes: ['ReadWriteOnce'], capacity: { storage: '10Gi' } },
  } as StoredObject
}

/** Memory after garbage collection; a few rounds apart, so sockets and streams that just closed are finalised too. */
async function memory(): Promise<{ rss: number; heap: number }> {
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 30))
  }
  const m = process.memoryUsage()
  return { rss: m.rss, heap: m.heapUsed + m.external + m.arrayBuffers }
}

t.test(`${N} objects: initial sync time, retained memory, lookups, relist`, async (t) => {
  const api = await startFakeApiServer()
  t.teardown(() => api.close())
  let t0 = performance.now()
  for (let i = 0; i < N; i++) api.objects.put(PVCS, pvc(i))
  t.comment(`fake apiserver filled with ${N} PVCs in ${(performance.now() - t0).toFixed(0)} ms (${(JSON.stringify(api.objects.list(PVCS)).length / 1024 / 1024).toFixed(1)} MiB of JSON)`)

  // One plain LIST first, so the fake server's own first-time allocations are not counted as the cache's.
  const warm = await fetch(api.url + PVCS, { headers: { Authorization: `Bearer ${api.token}` } })
  await warm.text()

  const spec: WatchSpec = { id: 'pvc', resource: PVC, indexKeys: (o: KubeObject) => [`app=${o.metadata.labels?.app}`, `${o.metadata.namespace}/${o.metadata.name}`] }
  const results: Array<{ label: string; syncMs: number; rss: number; heap: number }> = []

  for (const [label, s] of [
    ['default trimming', spec],
    ['whole objects (transform: identity)', { ...spec, transform: (o: KubeObject) => o }],
  ] as const) {
    const before = await memory()
    const cache = new WatchedCache(api.kubeConfig, [s], { listTimeoutMs: 60_000 })
    t0 = performance.now()
    await cache.start()
    t.ok(await cache.waitForSync(60_000), `${label}: synced`)
    const syncMs = performance.now() - t0
    const rssPeak = process.memoryUsage().rss - before.rss
    const after = await memory()
    results.push({ label, syncMs, rss: after.rss - before.rss, heap: after.heap - before.heap })
    t.comment(
      `${label}: start() → synced in ${syncMs.toFixed(0)} ms; RSS +${mb(rssPeak)} right after sync (list JSON and parse included), ` +
        `+${mb(after.rss - before.rss)} after GC; retained heap +${mb(after.heap - before.heap)} (${((after.heap - before.heap) / N).toFixed(0)} bytes/object, index included)`,
    )

    t.equal(cache.syncState()[0]!.objects, N)
    t.equal(cache.byKey('pvc', 'app=app-7').length, N / 500)
    t.equal(cache.byKey('pvc', 'ns-42/data-4242').length, 1)
    t.equal(cache.get('pvc', 'ns-42', 'data-4242')!.metadata.name, 'data-4242')

    if (label === 'default trimming') {
      // Lookups: no API calls, and fast.
      const requests = api.requests.length
      t0 = performance.now()
      let hits = 0
      for (let i = 0; i < 100_000; i++) hits += cache.byKey('pvc', `app=app-${i % 500}`).length
      const lookupMs = performance.now() - t0
      t.equal(hits, 100_000 * (N / 500))
      t.equal(api.requests.length, requests, 'no API calls')
      t.comment(`100,000 byKey lookups (20 objects each) in ${lookupMs.toFixed(0)} ms (${((lookupMs * 1000) / 100_000).toFixed(2)} µs each)`)

      // A relist of the same size (410 Gone after a compaction), with some changes in between.
      await until(() => api.openWatches(PVCS) === 1, 'watch', 5000)
      api.dropWatches({ apiPath: PVCS, destroy: true })
      for (let i = 0; i < 100; i++) api.objects.delete(PVCS, `ns-${i % 100}`, `data-${i}`)
      api.objects.compact()
      t0 = performance.now()
      await until(() => cache.syncState()[0]!.relists === 1 && cache.syncState()[0]!.objects === N - 100, 'relist', 60_000)
      t.comment(`relist of ${N} objects after 410 Gone (incl. the backoff before reconnecting): ${(performance.now() - t0).toFixed(0)} ms`)
      t.equal(cache.get('pvc', 'ns-0', 'data-0'), undefined)
      for (let i = 0; i < 100; i++) api.objects.put(PVCS, pvc(i))
      await until(() => cache.syncState()[0]!.objects === N, 'watch after relist', 10_000)
    }
    await cache.stop()
  }
  const [trimmed, whole] = results
  t.comment(`trimming keeps ${((trimmed!.heap / whole!.heap) * 100).toFixed(0)} % of the memory of whole objects (${mb(trimmed!.heap)} vs ${mb(whole!.heap)})`)
})
