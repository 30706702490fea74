/**
 * WatchedCache through the real client-node (ListWatch, Watch, node-fetch) against the fake
 * apiserver: discovery, sync, index maintenance, zero API calls per lookup, and the informer's
 * failure modes (dropped streams, 410 Gone, hung lists, failing servers, stop()).
 */
import t from 'tap'
import { startFakeApiServer, type FakeApiServer, type FakeApiServerOptions, type StoredObject } from '../helpers/fake-apiserver.js'
import { captureLogger } from '../helpers/capture-log.js'
import { WatchedCache, trimObject, type WatchCacheOptions, type WatchSpec } from '../../src/kube/watch-cache.js'
import { apiConnections } from '../../src/kube/connection-pool.js'
import type { KubeObject, ResourceRef } from '../../src/inflight/types.js'
import { sleep, until } from '../helpers/wait.js'

type Tap = { teardown(fn: () => unknown): void }

const PVC: ResourceRef = { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims' }
const RS: ResourceRef = { group: 'volsync.backube', version: 'v1alpha1', kind: 'ReplicationSource', plural: 'replicationsources' }
const JOB: ResourceRef = { group: 'batch', version: 'v1', kind: 'Job', plural: 'jobs' }
const NS: ResourceRef = { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces' }
const SNAP: ResourceRef = { group: 'snapshot.storage.k8s.io', version: 'v1', kind: 'VolumeSnapshot', plural: 'volumesnapshots' }
const SNAP_RESOURCE = { ...SNAP, namespaced: true }

const PVCS = '/api/v1/persistentvolumeclaims'
const RSS = '/apis/volsync.backube/v1alpha1/replicationsources'
const JOBS = '/apis/batch/v1/jobs'
const SNAPS = '/apis/snapshot.storage.k8s.io/v1/volumesnapshots'

/** Keys by the `app` label, like a rule linking by label. */
const byApp = (o: KubeObject) => (o.metadata.labels?.app ? [`app=${o.metadata.labels.app}`] : [])
/** Keys by spec.sourcePVC, like VolSync's ReplicationSource. */
const bySource = (o: KubeObject) => {
  const src = (o.spec as { sourcePVC?: string } | undefined)?.sourcePVC
  return src ? [`${o.metadata.namespace}/${src}`] : []
}

const FAST: WatchCacheOptions = { backoff: { initialMs: 20, maxMs: 200 }, listTimeoutMs: 5000, requestTimeoutMs: 2000 }

async function setup(t: Tap, specs: WatchSpec[], opts: WatchCacheOptions = {}, serverOpts: FakeApiServerOptions = {}): Promise<{ api: FakeApiServer; cache: WatchedCache; log: ReturnType<typeof captureLogger> }> {
  const api = await startFakeApiServer(serverOpts)
  const log = captureLogger('debug')
  const cache = new WatchedCache(api.kubeConfig, specs, { logger: log.logger, ...FAST, ...opts })
  // Teardowns run in reverse: the cache stops before the server closes.
  t.teardown(() => api.close())
  t.teardown(() => cache.stop())
  return { api, cache, log }
}

function pvc(ns: string, name: string, app?: string, extra: Partial<StoredObject> = {}): StoredObject {
  return {
    metadata: { name, namespace: ns, ...(app ? { labels: { app } } : {}), annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{"big":"x"}' }, managedFields: [{ manager: 'kubectl' }] },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
    status: { phase: 'Bound' },
    ...extra,
  } as StoredObject
}

function rs(ns: string, name: string, sourcePVC: string): StoredObject {
  return { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationSource', metadata: { name, namespace: ns }, spec: { sourcePVC, trigger: { manual: 'now' } } }
}

const names = (objs: KubeObject[]) => objs.map((o) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`).sort()
const watchRequests = (api: FakeApiServer, path: string) => api.requests.filter((r) => r.path === path && r.query.watch === 'true')
const listRequests = (api: FakeApiServer, path: string) => api.requests.filter((r) => r.path === path && r.method === 'GET' && r.query.watch === undefined)

t.test('initial sync: N objects listed, indexed, trimmed, frozen; byKey and get answer from memory', async (t) => {
  const { api, cache } = await setup(t, [
    { id: 'pvc', resource: PVC, indexKeys: byApp },
    { id: 'rs', resource: RS, indexKeys: bySource },
  ])
  for (let i = 0; i < 40; i++) api.objects.put(PVCS, pvc(i % 2 ? 'media' : 'apps', `data-${i}`, `app-${i % 4}`))
  api.objects.put(RSS, rs('media', 'backup-1', 'data-1'))
  api.objects.put(RSS, rs('media', 'backup-1b', 'data-1'))
  api.objects.put(RSS, rs('apps', 'backup-2', 'data-2'))

  t.equal(cache.synced(), false, 'not synced before start')
  await cache.start()
  t.ok(await cache.waitForSync(3000), 'synced')
  t.equal(cache.synced(), true)
  t.ok(cache.isActive('pvc') && cache.isActive('rs'))
  t.ok(cache.isSynced('pvc') && cache.isSynced('rs'))
  t.equal(cache.isSynced('nope'), false)

  t.equal(cache.byKey('pvc', 'app=app-1').length, 10)
  t.strictSame(names(cache.byKey('rs', 'media/data-1')), ['media/backup-1', 'media/backup-1b'])
  t.strictSame(names(cache.byKey('rs', 'apps/data-2')), ['apps/backup-2'])
  t.strictSame(cache.byKey('rs', 'media/nothing'), [])
  t.strictSame(cache.byKey('unknown-rule', 'x'), [], 'an unknown rule finds nothing')
  t.equal(cache.isActive('unknown-rule'), false)

  const one = cache.get('pvc', 'media', 'data-1')!
  t.match(one, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data-1', namespace: 'media', labels: { app: 'app-1' }, uid: /./, creationTimestamp: /Z$/ }, spec: { resources: { requests: { storage: '1Gi' } } }, status: { phase: 'Bound' } })
  t.equal(one.metadata.annotations, undefined, 'annotations dropped by default')
  t.equal(one.metadata.managedFields, undefined, 'managedFields dropped')
  t.ok(Object.isFrozen(one) && Object.isFrozen(one.metadata) && Object.isFrozen(one.spec), 'stored copies are read-only')
  t.equal(cache.get('pvc', 'apps', 'data-1'), undefined)
  t.equal(cache.get('rs', 'media', 'backup-1')!.kind, 'ReplicationSource')

  await until(() => cache.syncState().every((s) => s.watching), 'watches to connect')
  t.match(cache.syncState(), [
    { id: 'pvc', resource: 'persistentvolumeclaims/v1', active: true, synced: true, objects: 40, watching: true, relists: 0, lastSyncAt: /Z$/ },
    { id: 'rs', resource: 'replicationsources.volsync.backube/v1alpha1', active: true, synced: true, objects: 3 },
  ])
  t.notOk(cache.syncState().some((s) => 'lastError' in s), 'no errors')
  t.match(cache.stats(), { listRequests: 2, watchRequests: 2, discoveryRequests: 2 })
  const lists = [...listRequests(api, PVCS), ...listRequests(api, RSS)]
  t.equal(lists.length, 2, 'one cluster-wide list per resource')
  t.equal(watchRequests(api, PVCS).length, 1)
  t.ok(Number(watchRequests(api, PVCS)[0]!.query.timeoutSeconds) >= 300, 'the watch asks the server to end it after 5-10 minutes')
  t.equal(watchRequests(api, PVCS)[0]!.query.allowWatchBookmarks, 'true')
})

t.test('chunked LIST: pages of listPageSize, one snapshot; a change between pages arrives by the watch', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC, indexKeys: byApp }], { listPageSize: 4 })
  for (let i = 0; i < 10; i++) api.objects.put(PVCS, pvc('media', `data-${i}`, 'a'))
  // Each page answers 150 ms late, so the object below is made while the list is between pages.
  api.fail({ method: 'GET', path: PVCS, watch: false, times: 3 }, { delayMs: 150 })
  await cache.start()
  await until(() => api.listPages === 1, 'the first page')
  api.objects.put(PVCS, pvc('media', 'made-between-pages', 'a'))
  api.objects.delete(PVCS, 'media', 'data-9')
  t.ok(await cache.waitForSync(5000), 'synced')
  const pages = listRequests(api, PVCS)
  t.same(pages.map((r) => [r.query.limit, r.query.continue ? 'continue' : 'first']), [['4', 'first'], ['4', 'continue'], ['4', 'continue']], '3 pages of at most 4')
  await until(() => cache.get('pvc', 'media', 'made-between-pages') !== undefined && cache.get('pvc', 'media', 'data-9') === undefined, 'the watch delivers the changes made after the snapshot')
  t.equal(cache.byKey('pvc', 'app=a').length, 10, '10 of the snapshot - 1 deleted + 1 created')
  t.equal(watchRequests(api, PVCS).length, 1, 'one watch, from the snapshot resourceVersion (no relist)')
  t.equal(cache.stats().listRequests, 1, 'one LIST, in 3 pages')
})

t.test('chunked LIST: a continue token that expires between pages (410) falls back to one whole LIST', async (t) => {
  const { api, cache, log } = await setup(t, [{ id: 'pvc', resource: PVC }], { listPageSize: 4 })
  for (let i = 0; i < 10; i++) api.objects.put(PVCS, pvc('media', `data-${i}`))
  api.fail({ method: 'GET', path: PVCS, watch: false, times: 2 }, { delayMs: 150 })
  await cache.start()
  await until(() => api.listPages === 1, 'the first page')
  api.objects.compact()
  t.ok(await cache.waitForSync(5000), 'synced')
  const lists = listRequests(api, PVCS).map((r) => (r.query.continue ? 'continue' : r.query.limit ? 'first page' : 'whole'))
  t.same(lists, ['first page', 'continue', 'whole'], 'first page, expired continue, then one whole LIST')
  t.equal(cache.stats().listRequests, 2, 'two LISTs: the paged one and the whole one')
  t.equal(cache.byKey('pvc', 'x').length, 0)
  t.equal(names([...Array(10).keys()].map((i) => cache.get('pvc', 'media', `data-${i}`)!).filter(Boolean)).length, 10, 'all 10 objects')
  t.ok(log.lines().some((l) => /expired between pages; listing it whole/.test(l.msg)), 'logged')
  t.same(cache.syncState().find((s) => s.id === 'pvc')?.lastError, undefined, 'not an error')
})

t.test('listPageSize 0: one unchunked LIST', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC }], { listPageSize: 0 })
  for (let i = 0; i < 10; i++) api.objects.put(PVCS, pvc('media', `data-${i}`))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  t.same(listRequests(api, PVCS).map((r) => r.query.limit), [undefined], 'no limit')
  t.equal(api.listPages, 0)
})

t.test('objects created, updated and deleted during the test change byKey and get', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC, indexKeys: byApp }])
  api.objects.put(PVCS, pvc('media', 'a', 'one'))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')

  api.objects.put(PVCS, pvc('media', 'b', 'one'))
  await until(() => cache.byKey('pvc', 'app=one').length === 2, 'created object indexed')
  t.strictSame(names(cache.byKey('pvc', 'app=one')), ['media/a', 'media/b'])

  // A label change moves the object from one key to another.
  api.objects.update(PVCS, 'media', 'b', (o) => (o.metadata.labels = { app: 'two' }))
  await until(() => cache.byKey('pvc', 'app=two').length === 1, 'update re-keyed')
  t.strictSame(names(cache.byKey('pvc', 'app=one')), ['media/a'])
  t.equal(cache.get('pvc', 'media', 'b')!.metadata.labels!.app, 'two')

  // A status change is seen by get().
  api.objects.update(PVCS, 'media', 'a', (o) => (o.status = { phase: 'Lost' }))
  await until(() => (cache.get('pvc', 'media', 'a')!.status as { phase: string }).phase === 'Lost', 'status update')

  // Marked for deletion (finalizer), then gone.
  api.objects.update(PVCS, 'media', 'a', (o) => {
    o.metadata.finalizers = ['kubernetes.io/pvc-protection']
    o.metadata.deletionTimestamp = '2030-01-01T00:00:00Z'
  })
  await until(() => cache.get('pvc', 'media', 'a')?.metadata.deletionTimestamp === '2030-01-01T00:00:00Z', 'deletionTimestamp')
  api.objects.delete(PVCS, 'media', 'a')
  await until(() => cache.get('pvc', 'media', 'a') === undefined, 'deleted')
  t.strictSame(cache.byKey('pvc', 'app=one'), [], 'the key has no objects left')
  t.equal(cache.syncState()[0]!.objects, 1)
  t.ok(cache.stats().events >= 5)
  t.equal(cache.stats().listRequests, 1, 'all of it from the one watch, no relist')
})

t.test('lookups make zero API calls', async (t) => {
  const { api, cache } = await setup(t, [
    { id: 'pvc', resource: PVC, indexKeys: byApp },
    { id: 'snap', resource: SNAP, indexKeys: bySource },
  ])
  for (let i = 0; i < 100; i++) api.objects.put(PVCS, pvc('media', `p${i}`, `a${i % 10}`))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')
  const before = api.requests.length
  const statsBefore = cache.stats()
  let found = 0
  for (let i = 0; i < 1000; i++) {
    found += cache.byKey('pvc', `app=a${i % 10}`).length
    if (cache.get('pvc', 'media', `p${i % 100}`)) found++
    found += cache.byKey('snap', 'media/p1').length
    cache.isActive('snap')
    cache.isSynced('pvc')
  }
  t.equal(found, 1000 * 10 + 1000)
  t.equal(api.requests.length, before, '1000 rounds of byKey/get/isActive: no request reached the apiserver')
  t.strictSame(cache.stats(), statsBefore)
})

t.test('a spec whose resource is not installed is inactive, and activates once it is installed', async (t) => {
  const { api, cache, log } = await setup(t, [
    { id: 'pvc', resource: PVC },
    { id: 'snap', resource: SNAP, indexKeys: bySource },
  ], { rediscoverMs: 50 })
  await cache.start()
  t.ok(await cache.waitForSync(3000), 'an inactive spec does not hold readiness back')
  t.equal(cache.isActive('snap'), false)
  t.equal(cache.isActive('pvc'), true)
  t.match(cache.syncState().find((s) => s.id === 'snap'), { active: false, synced: true, objects: 0 })
  t.strictSame(cache.byKey('snap', 'media/data'), [])

  // Several rediscoveries later: still inactive, logged once, never listed or watched.
  const discoveries = cache.stats().discoveryRequests
  await until(() => cache.stats().discoveryRequests >= discoveries + 6, 'rediscovery')
  const inactiveLines = log.lines().filter((l) => l.msg === 'rule snap inactive: VolumeSnapshot not installed')
  t.equal(inactiveLines.length, 1, 'logged once')
  t.equal(inactiveLines[0]!.level, 30, 'at info')
  t.equal(api.requests.filter((r) => r.path === SNAPS).length, 0, 'no list/watch of a resource that is not installed')
  t.ok(api.requests.some((r) => r.path === '/apis/snapshot.storage.k8s.io/v1'), 'its group/version was asked about')

  // The CRD is installed (objects staged before, like a backup system's first run).
  api.objects.put(SNAPS, { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name: 's1', namespace: 'media' }, spec: { sourcePVC: 'data' } })
  api.installResource(SNAP_RESOURCE)
  await until(() => cache.isActive('snap'), 'activation after rediscovery')
  await until(() => cache.isSynced('snap'), 'snap synced')
  t.strictSame(names(cache.byKey('snap', 'media/data')), ['media/s1'])
  t.equal(listRequests(api, SNAPS).length, 1)
  api.objects.put(SNAPS, { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name: 's2', namespace: 'media' }, spec: { sourcePVC: 'data' } })
  await until(() => cache.byKey('snap', 'media/data').length === 2, 'watched after activation')
  t.ok(log.lines().some((l) => l.msg === 'rule snap active: watching VolumeSnapshot'))

  // And uninstalled again: the watch ends, the spec deactivates and its index empties.
  t.ok(api.uninstallResource(SNAP_RESOURCE))
  await until(() => !cache.isActive('snap'), 'deactivation')
  t.strictSame(cache.byKey('snap', 'media/data'), [])
  t.equal(cache.get('snap', 'media', 's1'), undefined)
  t.equal(cache.synced(), true)
  t.ok(log.lines().some((l) => l.msg === 'rule snap inactive: VolumeSnapshot no longer installed'))
  await until(() => api.openWatches(SNAPS) === 0, 'no watch left')
  const snapRequests = api.requests.filter((r) => r.path === SNAPS).length
  await sleep(150)
  t.equal(api.requests.filter((r) => r.path === SNAPS).length, snapRequests, 'nothing retries a removed resource')
  t.equal(cache.isActive('pvc'), true, 'other specs unaffected')
})

t.test('specs with the same resource and selector share one informer; each has its own index', async (t) => {
  const { api, cache } = await setup(t, [
    { id: 'job-by-app', resource: JOB, labelSelector: 'app.kubernetes.io/created-by=volsync', indexKeys: byApp },
    { id: 'job-by-owner', resource: JOB, labelSelector: 'app.kubernetes.io/created-by=volsync', indexKeys: (o) => (o.metadata.ownerReferences ?? []).map((r) => `${r.kind}/${r.name}`) },
    { id: 'job-all', resource: JOB, indexKeys: byApp, transform: (o) => ({ ...trimObject(o), metadata: { ...trimObject(o).metadata, annotations: o.metadata.annotations } }) },
  ])
  const job = (name: string, labels: Record<string, string>) => ({
    metadata: { name, namespace: 'media', labels, annotations: { note: name }, ownerReferences: [{ apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationSource', name: 'rs-1', uid: 'u1' }] },
    spec: {},
  })
  api.objects.put(JOBS, job('mover', { app: 'restic', 'app.kubernetes.io/created-by': 'volsync' }))
  api.objects.put(JOBS, job('other', { app: 'restic' }))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  t.equal(listRequests(api, JOBS).length, 2, 'one informer per resource + selector')
  t.strictSame(listRequests(api, JOBS).map((r) => r.query.labelSelector ?? '').sort(), ['', 'app.kubernetes.io/created-by=volsync'])
  await until(() => watchRequests(api, JOBS).length === 2, 'two watches')
  t.strictSame(names(cache.byKey('job-by-app', 'app=restic')), ['media/mover'])
  t.strictSame(names(cache.byKey('job-by-owner', 'ReplicationSource/rs-1')), ['media/mover'])
  t.strictSame(names(cache.byKey('job-all', 'app=restic')), ['media/mover', 'media/other'])
  t.equal(cache.get('job-by-app', 'media', 'mover')!.metadata.annotations, undefined, 'default transform drops annotations')
  t.strictSame(cache.get('job-all', 'media', 'mover')!.metadata.annotations, { note: 'mover' }, 'a transform may keep them')
  t.equal(cache.get('job-by-app', 'media', 'mover'), cache.get('job-by-owner', 'media', 'mover'), 'specs of one informer share the stored copy')

  // Leaving the selection is a delete for the selective informer only.
  api.objects.update(JOBS, 'media', 'mover', (o) => (o.metadata.labels = { app: 'restic' }))
  await until(() => cache.get('job-by-app', 'media', 'mover') === undefined, 'left the selection')
  t.equal(cache.get('job-by-owner', 'media', 'mover'), undefined)
  t.ok(cache.get('job-all', 'media', 'mover'))
})

t.test('keepAnnotationPrefix: the shared trimmed copy keeps those annotations, for every spec, still one copy', async (t) => {
  const { api, cache } = await setup(t, [
    { id: 'guard-rs', resource: RS, indexKeys: bySource },
    { id: 'reconciler-rs', resource: RS, keepAnnotationPrefix: 'smart-restore.io/' },
  ])
  api.objects.put(RSS, { ...rs('media', 'ours', 'data'), metadata: { name: 'ours', namespace: 'media', annotations: { 'smart-restore.io/pvc': 'data', 'smart-restore.io/tier': 'daily', 'kubectl.kubernetes.io/last-applied-configuration': '{"huge":"x"}' } } })
  api.objects.put(RSS, { ...rs('media', 'theirs', 'data'), metadata: { name: 'theirs', namespace: 'media', annotations: { note: 'x' } } })
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  const ours = cache.get('reconciler-rs', 'media', 'ours')!
  t.strictSame(ours.metadata.annotations, { 'smart-restore.io/pvc': 'data', 'smart-restore.io/tier': 'daily' }, 'only the prefix is kept')
  t.equal(cache.get('guard-rs', 'media', 'ours'), ours, 'the guard holds the very same copy')
  t.equal(cache.get('reconciler-rs', 'media', 'theirs')!.metadata.annotations, undefined, 'no matching annotation: no annotations key')
  t.ok(Object.isFrozen(ours.metadata.annotations), 'frozen like the rest')
  api.objects.update(RSS, 'media', 'ours', (o) => ((o.metadata.annotations as Record<string, string>)['smart-restore.io/tier'] = 'hourly'))
  await until(() => (cache.get('guard-rs', 'media', 'ours')!.metadata.annotations as Record<string, string>)['smart-restore.io/tier'] === 'hourly', 'the update')
  t.equal(cache.get('guard-rs', 'media', 'ours'), cache.get('reconciler-rs', 'media', 'ours'), 'still one copy after an update')
})

t.test('cluster-scoped resources: get ignores the namespace', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'ns', resource: NS, namespaced: false, indexKeys: (o) => (o.metadata.labels?.backup ? ['backup'] : []) }])
  api.objects.put('/api/v1/namespaces', { metadata: { name: 'media', labels: { backup: 'on' } } })
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  t.equal(cache.get('ns', '', 'media')!.kind, 'Namespace')
  t.equal(cache.get('ns', 'whatever', 'media')!.metadata.name, 'media')
  t.strictSame(names(cache.byKey('ns', 'backup')), ['/media'])
})

t.test('a watch dropped by the server reconnects from its resourceVersion and catches up', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC, indexKeys: byApp }])
  api.objects.put(PVCS, pvc('media', 'a', 'x'))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')

  // A clean end (apiserver restart, LB idle timeout): ListWatch re-watches at once.
  t.equal(api.dropWatches({ apiPath: PVCS }), 1)
  await until(() => watchRequests(api, PVCS).length === 2 && api.openWatches(PVCS) === 1, 'reconnect after clean end')
  api.objects.put(PVCS, pvc('media', 'b', 'x'))
  await until(() => cache.byKey('pvc', 'app=x').length === 2, 'event after reconnect')

  // A broken connection, with changes while we are away and the first reconnect refused.
  const refused = api.fail({ method: 'GET', path: PVCS, watch: true }, { status: 503, message: 'apiserver is restarting' })
  api.dropWatches({ apiPath: PVCS, destroy: true })
  api.objects.put(PVCS, pvc('media', 'c', 'x'))
  api.objects.delete(PVCS, 'media', 'a')
  await until(() => refused.hits === 1, 'reconnect refused once')
  // The dropped stream may be recorded first (premature close); the refused reconnect's 503 follows.
  await until(() => /HTTP 503/.test(cache.syncState()[0]!.lastError ?? ''), 'the 503 recorded')
  t.match(cache.syncState()[0]!.lastError, /HTTP 503/)
  await until(() => names(cache.byKey('pvc', 'app=x')).join() === 'media/b,media/c', 'caught up')
  t.equal(cache.stats().listRequests, 1, 'caught up from the watch history: no relist')
  t.ok(cache.stats().restarts >= 2, 'restarted after the reset and after the 503')
  t.match(cache.syncState()[0], { synced: true, relists: 0, lastError: /503/, lastErrorAt: /Z$/ })
  await until(() => cache.syncState()[0]!.watching, 'watching again')
  const last = watchRequests(api, PVCS).at(-1)!
  t.ok(Number(last.query.resourceVersion) > 1, 'resumed from a resourceVersion, not from scratch')
})

t.test('410 Gone: relist, keep serving the old state until the new list arrives, then the correct state', async (t) => {
  const { api, cache, log } = await setup(t, [{ id: 'pvc', resource: PVC, indexKeys: byApp }])
  for (const n of ['a', 'b', 'c']) api.objects.put(PVCS, pvc('media', n, 'x'))
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')

  // Away long enough for the history to be compacted: the resumed watch gets ERROR 410.
  api.dropWatches({ apiPath: PVCS, destroy: true })
  api.objects.delete(PVCS, 'media', 'a')
  api.objects.update(PVCS, 'media', 'b', (o) => (o.metadata.labels = { app: 'y' }))
  api.objects.put(PVCS, pvc('media', 'd', 'x'))
  api.objects.compact()
  // The relist is slow: in the meantime the old state is served, whole.
  api.fail({ method: 'GET', path: PVCS, watch: false }, { delayMs: 300 })
  const OLD = 'media/a,media/b,media/c'
  const NEW = 'media/c,media/d'
  const samples: string[] = []
  const syncedDuringRelist: boolean[] = []
  await until(() => {
    const now = names(cache.byKey('pvc', 'app=x')).join()
    if (cache.stats().listRequests === 2) {
      samples.push(now)
      syncedDuringRelist.push(cache.synced())
    }
    return cache.syncState()[0]!.relists === 1 && now === NEW
  }, 'relisted state', 5000)
  t.ok(samples.filter((s) => s === OLD).length >= 1, 'the old state is served while the relist is outstanding')
  t.ok(samples.every((s) => s === OLD || s === NEW), 'never a half-cleared index: old state, then new state')
  t.ok(syncedDuringRelist.every(Boolean), 'still synced while relisting (old data served)')
  t.strictSame(names(cache.byKey('pvc', 'app=y')), ['media/b'])
  t.equal(cache.get('pvc', 'media', 'a'), undefined)
  t.equal(cache.stats().listRequests, 2, 'exactly one relist')
  t.ok(log.lines().some((l) => /expired \(410 Gone\); relisting/.test(l.msg)), 'the 410 is logged')
  await until(() => api.openWatches(PVCS) === 1, 'watching again')
  api.objects.put(PVCS, pvc('media', 'e', 'x'))
  await until(() => cache.byKey('pvc', 'app=x').length === 3, 'live again after the relist')
})

t.test('synced() waits for the lists: a hung list keeps the cache unready until it is retried', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC }, { id: 'rs', resource: RS }], { listTimeoutMs: 300 })
  api.objects.put(PVCS, pvc('media', 'a'))
  const hung = api.fail({ method: 'GET', path: PVCS }, { hang: true })
  await cache.start()
  await until(() => hung.hits === 1, 'list requested')
  t.equal(await cache.waitForSync(100), false, 'not synced while the list hangs')
  t.equal(cache.synced(), false)
  t.equal(cache.isSynced('pvc'), false)
  t.equal(cache.isActive('pvc'), true, 'installed, so active, but not synced')
  await until(() => cache.isSynced('rs'), 'the other spec syncs on its own')
  t.match(cache.syncState(), [{ id: 'pvc', active: true, synced: false, objects: 0 }, { id: 'rs', synced: true }])
  // The list's deadline passes, the informer restarts and the second list answers.
  t.ok(await cache.waitForSync(3000), 'synced once the retried list arrives')
  t.match(cache.syncState()[0], { synced: true, objects: 1, lastError: /timeout: the Kubernetes API did not answer within 300 ms/ })
  t.equal(listRequests(api, PVCS).length, 2)
})

t.test('a failing server: restarts back off exponentially up to the cap, and the error is reported', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC }], { backoff: { initialMs: 20, maxMs: 80 } })
  const broken = api.fail({ method: 'GET', path: PVCS, times: Infinity }, { status: 500, message: 'etcdserver: leader changed' })
  await cache.start()
  await sleep(700)
  const attempts = listRequests(api, PVCS).length
  // 20, 40, 80, 80, ... (±20 % jitter): about 10 in 700 ms; no backoff would be hundreds.
  // The upper bound is the point (a busy machine only lowers the count; no backoff at all would be hundreds).
  t.ok(attempts >= 2 && attempts <= 14, `restarts are spaced out (${attempts} lists in 700 ms)`)
  t.equal(cache.synced(), false)
  t.match(cache.syncState()[0], { active: true, synced: false, lastError: /HTTP 500.*etcdserver: leader changed/ })
  broken.cancel()
  t.ok(await cache.waitForSync(1000), 'recovers when the server does')
})

t.test('an informer failing for longer than maxStaleMs is no longer synced', async (t) => {
  let clock = Date.parse('2030-01-01T00:00:00Z')
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC }], { now: () => clock, maxStaleMs: 60_000, backoff: { initialMs: 20, maxMs: 50 } })
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')
  const down = api.fail({ method: 'GET', path: PVCS, times: Infinity }, { status: 403, message: 'RBAC says no' })
  api.dropWatches({ apiPath: PVCS, destroy: true })
  await until(() => /HTTP 403/.test(cache.syncState()[0]!.lastError ?? ''), 'reconnect refused')
  t.equal(cache.synced(), true, 'a short outage: the cached state is still served as synced')
  clock += 61_000
  t.equal(cache.synced(), false, 'too long without a working watch')
  t.match(cache.syncState()[0], { synced: false, lastError: /HTTP 403/ })
  down.cancel()
  await until(() => cache.synced(), 'synced again once the watch reconnects')
  t.equal(cache.syncState()[0]!.watching, true)
})

t.test('a watch that ends right after connecting is reopened with backoff, not in a tight loop', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC }], { backoff: { initialMs: 40, maxMs: 300 } })
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  const dropper = setInterval(() => api.dropWatches({ apiPath: PVCS }), 2)
  t.teardown(() => clearInterval(dropper))
  const before = watchRequests(api, PVCS).length
  await sleep(700)
  clearInterval(dropper)
  const reopened = watchRequests(api, PVCS).length - before
  t.ok(reopened >= 1 && reopened <= 12, `reopened ${reopened} times in 700 ms`)
  t.equal(cache.stats().listRequests, 1, 'clean ends never relist')
  await until(() => api.openWatches(PVCS) === 1, 'watching again', 2000)
})

t.test('the server-side watch timeout ends streams regularly; the informer resumes without relisting', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'pvc', resource: PVC, indexKeys: byApp }], { watchTimeoutSeconds: 1 })
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => watchRequests(api, PVCS).length >= 3, 'two timeouts', 4000)
  t.equal(watchRequests(api, PVCS)[0]!.query.timeoutSeconds, '1')
  t.equal(cache.stats().listRequests, 1)
  api.objects.put(PVCS, pvc('media', 'late', 'z'))
  await until(() => cache.byKey('pvc', 'app=z').length === 1, 'still following')
})

t.test('discovery that fails is retried; the spec is unknown (not synced) until it answers', async (t) => {
  const { api, cache } = await setup(t, [{ id: 'rs', resource: RS }], { rediscoverMs: 60_000 })
  const flaky = api.fail({ method: 'GET', path: '/apis/volsync.backube/v1alpha1', times: 2 }, { status: 503 })
  await cache.start()
  t.equal(cache.synced(), false)
  t.equal(cache.isActive('rs'), false)
  t.match(cache.syncState()[0], { active: false, synced: false, lastError: /discovery: .*HTTP 503/ })
  t.ok(await cache.waitForSync(3000), 'retried well before rediscoverMs')
  t.equal(flaky.hits, 2)
  t.equal(cache.isActive('rs'), true)
})

t.test('stop() ends every watch, request and timer, even mid-list', async (t) => {
  const api = await startFakeApiServer()
  t.teardown(() => api.close())
  const cache = new WatchedCache(api.kubeConfig, [{ id: 'pvc', resource: PVC }, { id: 'rs', resource: RS }, { id: 'snap', resource: SNAP }], { ...FAST, rediscoverMs: 20 })
  api.fail({ method: 'GET', path: RSS }, { delayMs: 200 })
  await cache.start()
  await until(() => api.openWatches(PVCS) === 1, 'pvc watch')
  t.equal(api.openWatches(RSS), 0, 'rs still listing')
  await cache.stop()
  await cache.stop()
  await until(() => api.openWatches() === 0, 'no watch left open', 500)
  const count = api.requests.length
  await sleep(400)
  t.equal(api.requests.length, count, 'nothing after stop(): the slow list did not open a watch, no rediscovery, no restart')
  t.equal(api.openWatches(), 0)
  t.equal(cache.synced(), false, 'a stopped cache is not ready')
  t.equal(await cache.waitForSync(50), false)
  t.equal(cache.isActive('pvc'), true, 'the last state stays readable')
})

t.test('stop() while a watch is still connecting destroys that connection', async (t) => {
  const api = await startFakeApiServer()
  t.teardown(() => api.close())
  const cache = new WatchedCache(api.kubeConfig, [{ id: 'pvc', resource: PVC }], FAST)
  await cache.start()
  t.ok(await cache.waitForSync(3000))
  await until(() => api.openWatches(PVCS) === 1, 'watch')
  // The next watch never gets its headers.
  const hang = api.fail({ method: 'GET', path: PVCS, watch: true }, { hang: true })
  api.dropWatches({ apiPath: PVCS })
  await until(() => hang.hits === 1, 'reconnect hanging')
  const sockets = () => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length
  t.ok(sockets() >= 2, 'the hanging connection is open (both ends)')
  await cache.stop()
  // The LIST's idle keep-alive connection belongs to the process-wide pool, not to the cache.
  apiConnections.destroy()
  await until(() => sockets() === 0, 'every connection closed, the hanging one included', 1000)
  const count = api.requests.length
  await sleep(100)
  t.equal(api.requests.length, count)
  t.equal(api.openWatches(), 0)
})
