/**
 * WatchedCache.onChange through the real client-node informers against the fake apiserver: watch
 * events, relist differences, CRD install/uninstall, listener exceptions, unsubscribe.
 */
import t from 'tap'
import { startFakeApiServer, type FakeApiServer, type StoredObject } from '../helpers/fake-apiserver.js'
import { captureLogger } from '../helpers/capture-log.js'
import { WatchedCache, type ChangeType, type WatchCacheOptions, type WatchSpec } from '../../src/kube/watch-cache.js'
import type { KubeObject, ResourceRef } from '../../src/inflight/types.js'
import { until } from '../helpers/wait.js'

type Tap = { teardown(fn: () => unknown): void }

const PVC: ResourceRef = { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims' }
const SNAP: ResourceRef = { group: 'snapshot.storage.k8s.io', version: 'v1', kind: 'VolumeSnapshot', plural: 'volumesnapshots' }
const PVCS = '/api/v1/persistentvolumeclaims'
const SNAPS = '/apis/snapshot.storage.k8s.io/v1/volumesnapshots'
const FAST: WatchCacheOptions = { backoff: { initialMs: 20, maxMs: 200 }, listTimeoutMs: 5000, requestTimeoutMs: 2000 }

async function setup(t: Tap, specs: WatchSpec[], opts: WatchCacheOptions = {}): Promise<{ api: FakeApiServer; cache: WatchedCache; log: ReturnType<typeof captureLogger> }> {
  const api = await startFakeApiServer()
  const log = captureLogger('debug')
  const cache = new WatchedCache(api.kubeConfig, specs, { logger: log.logger, ...FAST, ...opts })
  t.teardown(() => api.close())
  t.teardown(() => cache.stop())
  return { api, cache, log }
}

function pvc(name: string, app = 'x'): StoredObject {
  return { metadata: { name, namespace: 'media', labels: { app } }, spec: { accessModes: ['ReadWriteOnce'] }, status: { phase: 'Bound' } }
}

interface Seen {
  type: ChangeType
  name: string
  app?: string
  oldApp?: string
  /** What get() answered inside the listener. */
  inCache: boolean
}

function recorder(cache: WatchedCache, specId: string) {
  const seen: Seen[] = []
  const off = cache.onChange(specId, (type, obj, old) => {
    seen.push({ type, name: obj.metadata.name, app: obj.metadata.labels?.app, oldApp: old?.metadata.labels?.app, inCache: cache.get(specId, 'media', obj.metadata.name) !== undefined })
  })
  return { seen, off, text: () => seen.map((s) => `${s.type} ${s.name}`) }
}

t.test('added / modified / deleted from the watch, after the index has the change', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC, indexKeys: (o) => [`app=${o.metadata.labels?.app}`] }])
  const r = recorder(cache, 'pvc')
  api.objects.put(PVCS, pvc('a'))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')
  t.strictSame(r.seen, [{ type: 'added', name: 'a', app: 'x', oldApp: undefined, inCache: true }], 'the initial list is added')

  api.objects.put(PVCS, pvc('b'))
  await until(() => r.seen.length === 2, 'added b')
  api.objects.update(PVCS, 'media', 'b', (o) => (o.metadata.labels = { app: 'y' }))
  await until(() => r.seen.length === 3, 'modified b')
  t.match(r.seen[2], { type: 'modified', name: 'b', app: 'y', oldApp: 'x', inCache: true })
  let keyed: string[] = []
  const off2 = cache.onChange('pvc', (type, obj) => {
    if (type === 'deleted') keyed = cache.byKey('pvc', 'app=y').map((o: KubeObject) => o.metadata.name)
  })
  api.objects.delete(PVCS, 'media', 'b')
  await until(() => r.seen.length === 4, 'deleted b')
  t.match(r.seen[3], { type: 'deleted', name: 'b', app: 'y', oldApp: 'y', inCache: false })
  t.strictSame(keyed, [], 'byKey no longer finds it when the listener runs')
  off2()
  t.strictSame(r.text(), ['added a', 'added b', 'modified b', 'deleted b'])

  // Unsubscribed: no more calls.
  r.off()
  api.objects.put(PVCS, pvc('c'))
  await until(() => cache.get('pvc', 'media', 'c') !== undefined, 'c cached')
  t.equal(r.seen.length, 4)
  t.throws(() => cache.onChange('nope', () => {}), /no watch spec nope/)
})

t.test('a relist (410 Gone) reports its differences: vanished → deleted, changed → modified, new → added; unchanged: nothing', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC }])
  for (const n of ['a', 'b', 'c']) api.objects.put(PVCS, pvc(n))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')
  const r = recorder(cache, 'pvc')

  api.dropWatches({ apiPath: PVCS, destroy: true })
  api.objects.delete(PVCS, 'media', 'a')
  api.objects.update(PVCS, 'media', 'b', (o) => (o.metadata.labels = { app: 'y' }))
  api.objects.put(PVCS, pvc('d'))
  api.objects.compact()
  await until(() => cache.syncState()[0]!.relists === 1 && r.seen.length === 3, 'relist diff', 5000)
  t.strictSame(r.text().sort(), ['added d', 'deleted a', 'modified b'])
  t.match(r.seen.find((s) => s.name === 'b'), { app: 'y', oldApp: 'x', inCache: true })
  t.match(r.seen.find((s) => s.name === 'a'), { app: 'x', inCache: false }, 'a vanished object is reported with its last stored copy')
  t.notOk(r.seen.some((s) => s.name === 'c'), 'c did not change')
})

t.test('a resource installed later reports its objects as added; uninstalled, as deleted', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'snap', resource: SNAP }], { rediscoverMs: 50 })
  await cache.start()
  const r = recorder(cache, 'snap')
  api.objects.put(SNAPS, { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name: 's1', namespace: 'media' }, spec: {} })
  api.installResource({ ...SNAP, namespaced: true })
  await until(() => r.seen.length === 1, 'added on activation')
  t.match(r.seen[0], { type: 'added', name: 's1', inCache: true })
  t.ok(api.uninstallResource(SNAP))
  await until(() => r.seen.length === 2, 'deleted on deactivation')
  t.match(r.seen[1], { type: 'deleted', name: 's1', inCache: false })
})

t.test('a listener that throws is logged; the index and the other listeners carry on', async (t) => {
  const { api, cache, log } = await setup(t, [{ id: 'pvc', resource: PVC }])
  cache.onChange('pvc', () => {
    throw new Error('listener bug')
  })
  const r = recorder(cache, 'pvc')
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')
  api.objects.put(PVCS, pvc('a'))
  api.objects.put(PVCS, pvc('b'))
  await until(() => r.seen.length === 2, 'both seen by the second listener')
  t.ok(cache.get('pvc', 'media', 'b'))
  const lines = log.lines().filter((l) => l.msg === 'rule pvc: a change listener threw')
  t.equal(lines.length, 2)
  t.match(lines[0], { level: 40, rule: 'pvc', change: 'added', object: 'media/a', err: 'listener bug' })
  t.equal(api.openWatches(PVCS), 1, 'the watch was not disturbed')
})

t.test('specs sharing an informer each notify with their own stored copy', async (t) => {
  const { api, cache } = await setup(t, [
    { id: 'full', resource: PVC },
    { id: 'names', resource: PVC, transform: (o) => ({ metadata: { name: o.metadata.name, namespace: o.metadata.namespace } }) },
  ])
  const full: KubeObject[] = []
  const slim: Array<{ obj: KubeObject; other: boolean }> = []
  cache.onChange('full', (_t, o) => full.push(o))
  // Both indexes are updated before any listener runs.
  cache.onChange('names', (_t, o) => slim.push({ obj: o, other: cache.get('full', 'media', o.metadata.name) !== undefined }))
  api.objects.put(PVCS, pvc('a'))
  await cache.start()
  await until(() => full.length === 1 && slim.length === 1, 'both')
  t.match(full[0], { metadata: { labels: { app: 'x' } }, status: { phase: 'Bound' } })
  t.strictSame(slim[0]!.obj, { metadata: { name: 'a', namespace: 'media' } })
  t.equal(slim[0]!.other, true)
})
