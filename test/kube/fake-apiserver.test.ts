/**
 * The fake apiserver's own REST conventions, checked through the real client-node (typed APIs,
 * CustomObjectsApi, Watch, ListWatch/makeInformer) and, where exact HTTP matters, raw fetch.
 */
import t from 'tap'
import {
  CoreV1Api,
  CustomObjectsApi,
  ListWatch,
  PatchStrategy,
  Watch,
  makeInformer,
  setHeaderOptions,
  type KubernetesObject,
  type V1ConfigMap,
  type V1ConfigMapList,
} from '@kubernetes/client-node'
import { apiPathFor, startFakeApiServer, type FakeApiServer } from '../helpers/fake-apiserver.js'
import { until } from '../helpers/wait.js'

type Tap = { teardown(fn: () => unknown): void }

async function setup(t: Tap): Promise<{ server: FakeApiServer; core: CoreV1Api; custom: CustomObjectsApi }> {
  const server = await startFakeApiServer()
  t.teardown(() => server.close())
  return { server, core: server.kubeConfig.makeApiClient(CoreV1Api), custom: server.kubeConfig.makeApiClient(CustomObjectsApi) }
}

/** Raw HTTP, for exact status codes and bodies. */
async function raw(server: FakeApiServer, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: any }> {
  const res = await fetch(server.url + path, {
    method,
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': contentType },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : undefined }
}

const CM = '/api/v1/namespaces/media/configmaps'

t.test('create, get, already exists, not found: codes and Status bodies', async (t) => {
  const { server } = await setup(t)
  const created = await raw(server, 'POST', CM, { metadata: { name: 'a', labels: { x: '1' } }, data: { k: 'v' } })
  t.equal(created.status, 201)
  t.match(created.body, { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'a', namespace: 'media', uid: /^[0-9a-f-]{36}$/, resourceVersion: '1', creationTimestamp: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/ } })

  const again = await raw(server, 'POST', CM, { metadata: { name: 'a' } })
  t.equal(again.status, 409)
  t.strictSame(again.body, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: 'configmaps "a" already exists', reason: 'AlreadyExists', code: 409, details: { name: 'a', kind: 'configmaps' } })

  t.equal((await raw(server, 'GET', `${CM}/a`)).body.metadata.uid, created.body.metadata.uid)
  const missing = await raw(server, 'GET', `${CM}/nope`)
  t.equal(missing.status, 404)
  t.match(missing.body, { kind: 'Status', status: 'Failure', reason: 'NotFound', code: 404, message: 'configmaps "nope" not found' })

  const rd = await raw(server, 'GET', '/apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations/x')
  t.equal(rd.body.message, 'replicationdestinations.volsync.backube "x" not found')
  t.strictSame(rd.body.details, { name: 'x', group: 'volsync.backube', kind: 'replicationdestinations' })

  t.equal((await raw(server, 'POST', CM, { metadata: {} })).status, 422, 'a name is required')
  t.equal((await raw(server, 'POST', CM, { metadata: { name: 'b', namespace: 'other' } })).status, 400, 'namespace must match the URL')
  t.equal((await raw(server, 'POST', CM, { metadata: { name: 'b', resourceVersion: '5' } })).status, 400)
  t.equal((await raw(server, 'POST', '/apis/example.com/v1/namespaces/media/widgets', { metadata: { name: 'w' } })).status, 400, 'custom resources need a kind')
  t.equal((await raw(server, 'GET', '/nonsense')).status, 404)
  const unauth = await fetch(server.url + `${CM}/a`)
  t.equal(unauth.status, 401)
})

t.test('resourceVersion is global and monotonic; PUT uses it for optimistic concurrency', async (t) => {
  const { server, core } = await setup(t)
  const a = await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'a' }, data: { k: '1' } } })
  const b = await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'b' } } })
  t.ok(Number(b.metadata!.resourceVersion) > Number(a.metadata!.resourceVersion))

  const updated = await core.replaceNamespacedConfigMap({ namespace: 'media', name: 'a', body: { ...a, data: { k: '2' } } })
  t.ok(Number(updated.metadata!.resourceVersion) > Number(b.metadata!.resourceVersion))
  t.equal(updated.metadata!.uid, a.metadata!.uid)
  t.equal(updated.metadata!.creationTimestamp!.getTime(), a.metadata!.creationTimestamp!.getTime())

  // Replaying the old version loses.
  const stale = await raw(server, 'PUT', `${CM}/a`, { metadata: { name: 'a', resourceVersion: a.metadata!.resourceVersion }, data: { k: '3' } })
  t.equal(stale.status, 409)
  t.match(stale.body, { reason: 'Conflict', message: 'Operation cannot be fulfilled on configmaps "a": the object has been modified; please apply your changes to the latest version and try again' })
  t.strictSame(server.objects.get('/api/v1/configmaps', 'media', 'a')!.data, { k: '2' })

  t.equal((await raw(server, 'PUT', `${CM}/missing`, { metadata: { name: 'missing' } })).status, 404)
  t.equal((await raw(server, 'PUT', `${CM}/a`, { metadata: { name: 'other' } })).status, 400)
})

t.test('DELETE honours preconditions and finalizers', async (t) => {
  const { server, core, custom } = await setup(t)
  const a = await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'a' } } })
  const wrong = await raw(server, 'DELETE', `${CM}/a`, { preconditions: { uid: 'not-the-uid' } })
  t.equal(wrong.status, 409)
  t.match(wrong.body.message, /Precondition failed: UID in precondition: not-the-uid/)
  t.equal((await raw(server, 'DELETE', `${CM}/a`, { preconditions: { resourceVersion: '999' } })).status, 409)
  const ok = await core.deleteNamespacedConfigMap({ namespace: 'media', name: 'a', body: { preconditions: { uid: a.metadata!.uid } } })
  t.match(ok, { status: 'Success', details: { name: 'a', kind: 'configmaps', uid: a.metadata!.uid } })
  t.equal(server.objects.get('/api/v1/configmaps', 'media', 'a'), undefined)
  t.equal((await raw(server, 'DELETE', `${CM}/a`)).status, 404)

  // Custom resource with a finalizer: marked, then gone once the finalizer is removed.
  const ref = { group: 'volsync.backube', version: 'v1alpha1', namespace: 'media', plural: 'replicationdestinations' }
  await custom.createNamespacedCustomObject({ ...ref, body: { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'rd', finalizers: ['x/y'] }, spec: {} } })
  const marked = await custom.deleteNamespacedCustomObject({ ...ref, name: 'rd' })
  t.ok(marked.metadata.deletionTimestamp, 'custom resources answer with the object')
  t.ok(server.objects.get(apiPathFor('volsync.backube/v1alpha1', 'replicationdestinations'), 'media', 'rd'))
  t.equal((await raw(server, 'POST', '/apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations', { kind: 'ReplicationDestination', metadata: { name: 'rd' } })).status, 409, 'still there')
  await custom.patchNamespacedCustomObject({ ...ref, name: 'rd', body: { metadata: { finalizers: null } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  t.equal(server.objects.get(apiPathFor('volsync.backube/v1alpha1', 'replicationdestinations'), 'media', 'rd'), undefined)
})

t.test('Namespaces: spec finalizer defaulted; DELETE leaves them Terminating until it is removed', async (t) => {
  const { server, core } = await setup(t)
  const NSP = '/api/v1/namespaces'
  const created = await core.createNamespace({ body: { metadata: { name: 'media' } } })
  t.strictSame(created.spec?.finalizers, ['kubernetes'])
  t.equal(created.status?.phase, 'Active')
  t.strictSame(server.objects.put(NSP, { metadata: { name: 'backdoor' } }).spec, { finalizers: ['kubernetes'] }, 'also through the backdoor')

  await core.deleteNamespace({ name: 'media' })
  const terminating = server.objects.get(NSP, undefined, 'media')!
  t.ok(terminating.metadata.deletionTimestamp)
  t.equal((terminating.status as { phase: string }).phase, 'Terminating')
  // Marking a namespace for deletion through the backdoor keeps it, too.
  server.objects.update(NSP, undefined, 'backdoor', (o) => (o.metadata.deletionTimestamp = '2030-01-01T00:00:00Z'))
  t.ok(server.objects.get(NSP, undefined, 'backdoor'), 'still there while spec.finalizers is set')
  // The namespace controller's part: once the finalizer goes, so does the namespace.
  server.objects.update(NSP, undefined, 'media', (o) => ((o.spec as { finalizers: string[] }).finalizers = []))
  t.equal(server.objects.get(NSP, undefined, 'media'), undefined)
  t.equal((await raw(server, 'GET', `${NSP}/media`)).status, 404)
})

t.test('PATCH: server-side apply, merge patch, JSON patch', async (t) => {
  const { server, core } = await setup(t)
  const apply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply)
  const first = await core.patchNamespacedConfigMap({ namespace: 'media', name: 'cfg', fieldManager: 'smart-restore', body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg' }, data: { a: '1' } } }, apply)
  t.strictSame(first.data, { a: '1' }, 'apply creates')
  const second = await core.patchNamespacedConfigMap({ namespace: 'media', name: 'cfg', fieldManager: 'smart-restore', force: true, body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cfg', labels: { l: 'x' } }, data: { b: '2' } } }, apply)
  t.strictSame(second.data, { b: '2' }, 'apply removes what the same manager applied before and no longer applies (a), like real SSA')
  t.equal(second.metadata!.uid, first.metadata!.uid)
  const applies = server.requestsMatching('PATCH', `${CM}/cfg`)
  t.equal(applies.length, 2)
  t.equal(applies[0]!.contentType, 'application/apply-patch+yaml')
  t.equal(applies[0]!.query.fieldManager, 'smart-restore', 'fieldManager recorded')
  t.equal(applies[1]!.query.force, 'true')
  t.match(server.objects.get('/api/v1/configmaps', 'media', 'cfg')!.metadata.managedFields, [{ manager: 'smart-restore', operation: 'Apply' }])
  t.equal((await raw(server, 'PATCH', `${CM}/cfg`, 'apiVersion: v1\nkind: ConfigMap\n', 'application/apply-patch+yaml')).status, 400, 'apply needs a fieldManager')
  const yamlApply = await raw(server, 'PATCH', `${CM}/cfg?fieldManager=kubectl`, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  c: "3"\n', 'application/apply-patch+yaml')
  t.equal(yamlApply.status, 200)
  t.strictSame(yamlApply.body.data, { b: '2', c: '3' }, "another manager's apply merges: smart-restore's fields stay")

  const merged = await core.patchNamespacedConfigMap({ namespace: 'media', name: 'cfg', body: { data: { a: null, d: '4' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  t.strictSame(merged.data, { b: '2', c: '3', d: '4' })
  const jp = await core.patchNamespacedConfigMap({ namespace: 'media', name: 'cfg', body: [{ op: 'replace', path: '/data/b', value: 'two' }] })
  t.equal(jp.data!.b, 'two', 'the default patch type is JSON patch')
  t.equal((await raw(server, 'PATCH', `${CM}/cfg`, [{ op: 'replace', path: '/data/zzz/q', value: 1 }], 'application/json-patch+json')).status, 422)
  t.equal((await raw(server, 'PATCH', `${CM}/nope`, { data: {} }, 'application/merge-patch+json')).status, 404)
  t.equal((await raw(server, 'PATCH', `${CM}/cfg`, { metadata: { resourceVersion: '1' } }, 'application/merge-patch+json')).status, 409, 'resourceVersion in a patch is a precondition')
})

t.test('dryRun=All answers like a write and stores nothing', async (t) => {
  const { server, core } = await setup(t)
  const rv = server.objects.resourceVersion
  const dry = await core.createNamespacedConfigMap({ namespace: 'media', dryRun: 'All', body: { metadata: { name: 'a' } } })
  t.equal(dry.metadata!.name, 'a')
  t.ok(dry.metadata!.uid)
  t.equal(server.objects.get('/api/v1/configmaps', 'media', 'a'), undefined)
  t.equal(server.objects.resourceVersion, rv)
  await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'a' }, data: { k: '1' } } })
  await core.replaceNamespacedConfigMap({ namespace: 'media', name: 'a', dryRun: 'All', body: { metadata: { name: 'a' }, data: { k: '2' } } })
  await core.deleteNamespacedConfigMap({ namespace: 'media', name: 'a', dryRun: 'All' })
  t.strictSame(server.objects.get('/api/v1/configmaps', 'media', 'a')!.data, { k: '1' })
  t.equal((await raw(server, 'POST', `${CM}?dryRun=Some`, { metadata: { name: 'z' } })).status, 400)
})

t.test('Secrets: stringData folded into base64 data, invalid base64 refused', async (t) => {
  const { server, core } = await setup(t)
  const s = await core.createNamespacedSecret({ namespace: 'media', body: { metadata: { name: 's' }, data: { a: Buffer.from('x').toString('base64') }, stringData: { b: 'héllo' } } })
  t.strictSame(s.data, { a: 'eA==', b: Buffer.from('héllo').toString('base64') })
  t.equal(s.stringData, undefined)
  t.equal(s.type, 'Opaque')
  const patched = await core.patchNamespacedSecret({ namespace: 'media', name: 's', body: { stringData: { a: 'y' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  t.strictSame(patched.data, { a: 'eQ==', b: Buffer.from('héllo').toString('base64') })
  const bad = await raw(server, 'POST', '/api/v1/namespaces/media/secrets', { metadata: { name: 't' }, data: { a: 'not base64!' } })
  t.equal(bad.status, 400)
  t.match(bad.body.message, /illegal base64 data/)
})

t.test('LIST: namespaced, cluster-wide, label and field selectors, list resourceVersion', async (t) => {
  const { server, core, custom } = await setup(t)
  for (const [ns, name, labels] of [
    ['media', 'a', { app: 'x', tier: 'hourly' }],
    ['media', 'b', { app: 'y' }],
    ['other', 'c', { app: 'x' }],
  ] as const) {
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name, labels: { ...labels } } } })
  }
  const media = await core.listNamespacedConfigMap({ namespace: 'media' })
  t.equal(media.kind, 'ConfigMapList')
  t.equal(media.metadata!.resourceVersion, String(server.objects.resourceVersion))
  t.strictSame(media.items.map((i) => i.metadata!.name), ['a', 'b'])
  t.equal((media.items[0] as { kind?: string }).kind, undefined, 'built-in list items carry no kind, like the real apiserver')
  const names = async (labelSelector?: string, fieldSelector?: string) =>
    (await core.listConfigMapForAllNamespaces({ labelSelector, fieldSelector })).items.map((i) => `${i.metadata!.namespace}/${i.metadata!.name}`)
  t.strictSame(await names(), ['media/a', 'media/b', 'other/c'])
  t.strictSame(await names('app=x'), ['media/a', 'other/c'])
  t.strictSame(await names('app==x,tier'), ['media/a'])
  t.strictSame(await names('app!=x'), ['media/b'])
  t.strictSame(await names('!tier'), ['media/b', 'other/c'])
  t.strictSame(await names('app in (y, z)'), ['media/b'])
  t.strictSame(await names('app notin (y)'), ['media/a', 'other/c'])
  t.strictSame(await names(undefined, 'metadata.namespace=other'), ['other/c'])
  t.strictSame(await names(undefined, 'metadata.name!=a'), ['media/b', 'other/c'])

  await custom.createNamespacedCustomObject({ group: 'volsync.backube', version: 'v1alpha1', namespace: 'media', plural: 'replicationsources', body: { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationSource', metadata: { name: 'rs' }, spec: {} } })
  const rs = (await custom.listClusterCustomObject({ group: 'volsync.backube', version: 'v1alpha1', plural: 'replicationsources' })) as { kind: string; items: KubernetesObject[] }
  t.equal(rs.kind, 'ReplicationSourceList')
  t.match(rs.items, [{ kind: 'ReplicationSource', metadata: { name: 'rs', namespace: 'media' } }], 'custom resource items keep kind')
})

t.test('WATCH through client-node makeInformer sees ADDED, MODIFIED and DELETED', async (t) => {
  const { server, core } = await setup(t)
  await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'before', labels: { w: 'yes' } } } })
  const informer = makeInformer<V1ConfigMap>(server.kubeConfig, CM, () => core.listNamespacedConfigMap({ namespace: 'media' }))
  const events: string[] = []
  informer.on('add', (o) => events.push(`add ${o.metadata!.name}`))
  informer.on('update', (o) => events.push(`update ${o.metadata!.name} ${JSON.stringify(o.data ?? {})}`))
  informer.on('delete', (o) => events.push(`delete ${o.metadata!.name}`))
  const errors: unknown[] = []
  informer.on('error', (e) => errors.push(e))
  t.teardown(() => informer.stop())
  await informer.start()
  await until(() => events.includes('add before'), 'initial list')
  await until(() => server.requests.some((r) => r.query.watch === 'true'), 'watch to start')

  await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'x' } } })
  await core.patchNamespacedConfigMap({ namespace: 'media', name: 'x', body: { data: { k: 'v' } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
  await core.deleteNamespacedConfigMap({ namespace: 'media', name: 'x' })
  await core.createNamespacedConfigMap({ namespace: 'other', body: { metadata: { name: 'elsewhere' } } })
  await until(() => events.includes('delete x'), 'delete event')
  t.strictSame(events, ['add before', 'add x', 'update x {"k":"v"}', 'delete x'])
  t.strictSame(informer.list('media').map((o) => o.metadata!.name), ['before'])
  t.strictSame(errors, [])
  const watch = server.requests.find((r) => r.query.watch === 'true')!
  t.equal(watch.path, CM)
  t.ok(Number(watch.query.resourceVersion) > 0, 'the watch resumes from the list resourceVersion')
  await informer.stop()
})

t.test('WATCH through ListWatch with a label selector: objects entering and leaving the selection', async (t) => {
  const { server, core } = await setup(t)
  const lw = new ListWatch<V1ConfigMap>(CM, new Watch(server.kubeConfig), () => core.listNamespacedConfigMap({ namespace: 'media', labelSelector: 'backup=hourly' }) as Promise<V1ConfigMapList>, false, 'backup=hourly')
  const events: string[] = []
  lw.on('add', (o) => events.push(`add ${o.metadata!.name}`))
  lw.on('update', (o) => events.push(`update ${o.metadata!.name}`))
  lw.on('delete', (o) => events.push(`delete ${o.metadata!.name}`))
  t.teardown(() => lw.stop())
  await lw.start()
  await until(() => server.requests.some((r) => r.query.watch === 'true'), 'watch to start')
  const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
  await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'p' } } })
  await core.patchNamespacedConfigMap({ namespace: 'media', name: 'p', body: { metadata: { labels: { backup: 'hourly' } } } }, merge)
  await core.patchNamespacedConfigMap({ namespace: 'media', name: 'p', body: { data: { a: '1' } } }, merge)
  await core.patchNamespacedConfigMap({ namespace: 'media', name: 'p', body: { metadata: { labels: { backup: null } } } }, merge)
  await until(() => events.length >= 3, 'three events')
  t.strictSame(events, ['add p', 'update p', 'delete p'])
  t.equal(server.requests.find((r) => r.query.watch === 'true')!.query.labelSelector, 'backup=hourly')
  await lw.stop()
})

t.test('WATCH replays history after a resourceVersion; a compacted one gets ERROR 410', async (t) => {
  const { server, core } = await setup(t)
  const a = await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'a' } } })
  await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'b' } } })
  await core.deleteNamespacedConfigMap({ namespace: 'media', name: 'a' })

  const collect = async (resourceVersion: string) => {
    const seen: Array<{ type: string; name?: string; code?: number }> = []
    const watch = new Watch(server.kubeConfig)
    const controller = await watch.watch(CM, { resourceVersion }, (type, obj) => seen.push({ type, name: obj?.metadata?.name, code: obj?.code }), () => {})
    await new Promise((r) => setTimeout(r, 100))
    controller.abort()
    return seen
  }
  t.strictSame(await collect(a.metadata!.resourceVersion!), [
    { type: 'ADDED', name: 'b', code: undefined },
    { type: 'DELETED', name: 'a', code: undefined },
  ])
  t.strictSame(await collect('0'), [{ type: 'ADDED', name: 'b', code: undefined }], 'resourceVersion 0: current state as ADDED')
  server.objects.compact()
  t.strictSame(await collect(a.metadata!.resourceVersion!), [{ type: 'ERROR', name: undefined, code: 410 }])
})

t.test('fault injection: count, glob path, delay, reset', async (t) => {
  const { server, core } = await setup(t)
  const f = server.fail({ method: 'GET', path: '/api/v1/namespaces/*/configmaps/*', times: 2 }, { status: 503, message: 'etcd is sad' })
  for (let i = 0; i < 2; i++) {
    const r = await raw(server, 'GET', `${CM}/x`)
    t.equal(r.status, 503)
    t.match(r.body, { reason: 'ServiceUnavailable', message: 'etcd is sad', code: 503 })
  }
  t.equal((await raw(server, 'GET', `${CM}/x`)).status, 404, 'only twice')
  t.equal(f.hits, 2)
  t.equal(f.remaining, 0)

  server.fail({ path: /configmaps$/ }, 150)
  const started = performance.now()
  await core.createNamespacedConfigMap({ namespace: 'media', body: { metadata: { name: 'slow' } } })
  t.ok(performance.now() - started >= 140, 'delayed, then served')
  t.ok(server.objects.get('/api/v1/configmaps', 'media', 'slow'))

  server.fail({ method: 'GET' }, { reset: true })
  await t.rejects(core.readNamespacedConfigMap({ namespace: 'media', name: 'slow' }), { name: 'FetchError', code: 'ECONNRESET' })

  const cancelled = server.fail({ method: 'GET' }, { status: 500 })
  cancelled.cancel()
  t.equal((await raw(server, 'GET', `${CM}/slow`)).status, 200)
})

t.test('status subresource: only status changes there, and the main resource ignores status', async (t) => {
  const { server, custom } = await setup(t)
  const ref = { group: 'volsync.backube', version: 'v1alpha1', namespace: 'media', plural: 'replicationdestinations' }
  const path = '/apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations/rd'
  const created = await custom.createNamespacedCustomObject({ ...ref, body: { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'rd' }, spec: { a: 1 }, status: { dropped: true } } })
  t.equal(created.status, undefined, 'status is not set by create')
  const st = await raw(server, 'PATCH', `${path}/status`, { spec: { a: 2 }, status: { lastManualSync: 'x' } }, 'application/merge-patch+json')
  t.equal(st.status, 200)
  t.strictSame(st.body.status, { lastManualSync: 'x' })
  t.strictSame(st.body.spec, { a: 1 }, 'spec untouched through /status')
  t.equal(st.body.metadata.generation, 1)
  const main = await raw(server, 'PATCH', path, { spec: { a: 3 }, status: { lastManualSync: 'y' } }, 'application/merge-patch+json')
  t.strictSame(main.body.status, { lastManualSync: 'x' }, 'status untouched through the main resource')
  t.equal(main.body.metadata.generation, 2, 'generation follows spec changes')
  t.equal((await raw(server, 'GET', `${path}/status`)).body.status.lastManualSync, 'x')
  t.equal((await raw(server, 'GET', `${path}/scale`)).status, 404)
})

/** Where (at any depth) an object's keys are not in sorted order; [] when they are sorted everywhere. */
function unsortedAt(v: unknown, path = '$'): string[] {
  if (Array.isArray(v)) return v.flatMap((x, i) => unsortedAt(x, `${path}[${i}]`))
  if (v === null || typeof v !== 'object') return []
  const keys = Object.keys(v)
  const here = JSON.stringify(keys) === JSON.stringify([...keys].sort()) ? [] : [path]
  return [...here, ...keys.flatMap((k) => unsortedAt((v as Record<string, unknown>)[k], `${path}.${k}`))]
}

/** The lines of a watch that ends by itself (timeoutSeconds), parsed. */
async function watchLines(server: FakeApiServer, path: string): Promise<Array<{ text: string; event: any }>> {
  const res = await fetch(`${server.url}${path}`, { headers: { Authorization: `Bearer ${server.token}` } })
  const text = await res.text()
  return text.split('\n').filter(Boolean).map((line) => ({ text: line, event: JSON.parse(line) }))
}

t.test('custom resources come back with their keys sorted at every level, like kube-apiserver; built-in objects as written', async (t) => {
  const { server } = await setup(t)
  const RSS = '/apis/volsync.backube/v1alpha1/namespaces/media/replicationsources'
  // Written in anything but sorted order, at every level, arrays included.
  const spec = {
    trigger: { schedule: '17 * * * *' },
    sourcePVC: 'data',
    restic: {
      retain: { weekly: 4, hourly: 24, daily: 7 },
      repository: 'data-restic',
      accessModes: ['ReadWriteOnce', 'ReadOnlyMany'],
      moverSecurityContext: { runAsUser: 1000, fsGroup: 1000 },
      volumes: [{ name: 'b', mount: { readOnly: true, path: '/b' } }, { name: 'a', mount: { path: '/a' } }],
    },
  }
  const body = { spec, metadata: { name: 'rs', labels: { 'z.example/x': '1', 'a.example/y': '2' }, annotations: { zz: '1', aa: '2' } }, kind: 'ReplicationSource', apiVersion: 'volsync.backube/v1alpha1' }
  t.not(unsortedAt(body).length, 0, 'the check finds keys out of order (the body as sent)')

  const created = await raw(server, 'POST', RSS, body)
  t.equal(created.status, 201)
  t.strictSame(unsortedAt(created.body), [], 'create answers with keys sorted, nested too (metadata, managedFields, spec.restic.volumes[].mount)')
  t.strictSame(created.body.spec, spec, 'same values: only the order changed')
  t.strictSame(created.body.spec.restic.accessModes, ['ReadWriteOnce', 'ReadOnlyMany'], 'arrays keep their order')
  t.strictSame(created.body.spec.restic.volumes.map((v: { name: string }) => v.name), ['b', 'a'], 'arrays of objects too')
  t.strictSame(Object.keys(created.body.spec.restic.retain), ['daily', 'hourly', 'weekly'])
  t.strictSame(Object.keys(created.body), ['apiVersion', 'kind', 'metadata', 'spec'])
  const stored = server.objects.get(RSS.replace('/namespaces/media', ''), 'media', 'rs')!
  t.strictSame(Object.keys((stored.spec as typeof spec).restic.retain), ['weekly', 'hourly', 'daily'], 'stored as written: sorting is how it is served')

  const got = await raw(server, 'GET', `${RSS}/rs`)
  t.strictSame(unsortedAt(got.body), [], 'GET')
  const listed = await raw(server, 'GET', RSS)
  t.strictSame(unsortedAt(listed.body), [], 'LIST: the list (apiVersion, items, kind, metadata) and its items')
  t.strictSame(Object.keys(listed.body), ['apiVersion', 'items', 'kind', 'metadata'])
  const paged = await raw(server, 'GET', `${RSS}?limit=1`)
  t.strictSame(unsortedAt(paged.body), [], 'a LIST page')

  const merged = await raw(server, 'PATCH', `${RSS}/rs`, { spec: { restic: { retain: { monthly: 6, daily: 14 } } } }, 'application/merge-patch+json')
  t.equal(merged.status, 200)
  t.strictSame(unsortedAt(merged.body), [], 'merge patch')
  t.strictSame(merged.body.spec.restic.retain, { daily: 14, hourly: 24, monthly: 6, weekly: 4 })
  const status = await raw(server, 'PATCH', `${RSS}/rs/status`, { status: { lastSyncTime: 'x', conditions: [{ type: 'Synchronizing', status: 'True', reason: 'Sync' }] } }, 'application/merge-patch+json')
  t.strictSame(unsortedAt(status.body), [], 'status subresource')
  const put = await raw(server, 'PUT', `${RSS}/rs`, { ...status.body, spec: { ...spec, sourcePVC: 'other' } })
  t.equal(put.status, 200)
  t.strictSame(unsortedAt(put.body), [], 'PUT')
  const applied = await raw(server, 'PATCH', `${RSS}/applied?fieldManager=t`, 'kind: ReplicationSource\napiVersion: volsync.backube/v1alpha1\nmetadata:\n  name: applied\nspec:\n  trigger:\n    schedule: "1 * * * *"\n  sourcePVC: x\n', 'application/apply-patch+yaml')
  t.equal(applied.status, 201)
  t.strictSame(unsortedAt(applied.body), [], 'server-side apply')
  const dry = await raw(server, 'POST', `${RSS}?dryRun=All`, { ...body, metadata: { name: 'dry' } })
  t.strictSame(unsortedAt(dry.body), [], 'dry run')

  // WATCH: events are {type, object}, the object sorted like a GET. Synthetic ADDED (from 0), and history.
  const added = await watchLines(server, `${RSS}?watch=true&resourceVersion=0&timeoutSeconds=1`)
  t.strictSame(added.map((l) => l.event.type), ['ADDED', 'ADDED'])
  for (const l of added) {
    t.match(l.text, /^\{"type":"ADDED","object":\{"apiVersion":/, 'the event itself: type, then object')
    t.strictSame(unsortedAt(l.event.object), [], `WATCH ADDED ${l.event.object.metadata.name}`)
  }
  const replayed = await watchLines(server, `${RSS}?watch=true&resourceVersion=${created.body.metadata.resourceVersion}&timeoutSeconds=1`)
  t.ok(replayed.length >= 4, 'history: the patches, the PUT, the apply')
  t.strictSame(replayed.flatMap((l) => unsortedAt(l.event.object)), [], 'WATCH events replayed from history')

  const deleted = await raw(server, 'DELETE', `${RSS}/applied`)
  t.equal(deleted.status, 200)
  t.strictSame(unsortedAt(deleted.body), [], 'DELETE answers with the object, sorted')
  const missing = await raw(server, 'GET', `${RSS}/nope`)
  t.equal(missing.status, 404)
  t.strictSame(Object.keys(missing.body).slice(0, 2), ['kind', 'apiVersion'], 'an error is a metav1.Status in its field order, not sorted')

  // A built-in object keeps its order (kube-apiserver writes Go struct fields in their order, never sorted).
  const cm = await raw(server, 'POST', CM, { metadata: { name: 'cm', labels: { z: '1', a: '2' } }, data: { z: '1', a: '2' } })
  t.strictSame(Object.keys(cm.body.data), ['z', 'a'], 'built-in: data as written')
  t.strictSame(Object.keys(cm.body.metadata.labels), ['z', 'a'], 'built-in: labels as written')
  t.strictSame(Object.keys((await raw(server, 'GET', `${CM}/cm`)).body.data), ['z', 'a'], 'built-in GET')
  t.strictSame(Object.keys((await raw(server, 'GET', CM)).body.items[0].data), ['z', 'a'], 'built-in LIST')
  const cmWatch = await watchLines(server, `${CM}?watch=true&resourceVersion=0&timeoutSeconds=1`)
  t.strictSame(Object.keys(cmWatch[0]!.event.object.data), ['z', 'a'], 'built-in WATCH')
  t.not(unsortedAt(cm.body).length, 0, 'built-in objects are not sorted')

  // Integer-like keys: JS objects put them first in numeric order; Go sorts them as strings. Checked
  // on the text, and last (parsed, they would look unsorted to the checks above).
  const numbered = await fetch(`${server.url}${RSS}/rs`, {
    method: 'PATCH',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/merge-patch+json' },
    body: JSON.stringify({ spec: { extra: { x: 'c', 9: 'a', 10: 'b' } } }),
  })
  t.match(await numbered.text(), /"extra":\{"10":"b","9":"a","x":"c"\}/, 'keys "10" < "9" < "x", as bytes')
})

t.test('discovery endpoints', async (t) => {
  const { server } = await setup(t)
  t.match((await raw(server, 'GET', '/version')).body, { major: '1', gitVersion: /^v1\./ })
  t.match((await raw(server, 'GET', '/api')).body, { kind: 'APIVersions', versions: ['v1'] })

  const core = (await raw(server, 'GET', '/api/v1')).body
  t.match(core, { kind: 'APIResourceList', groupVersion: 'v1' })
  const coreNames = core.resources.map((r: { name: string }) => r.name)
  for (const n of ['persistentvolumeclaims', 'secrets', 'namespaces', 'events', 'persistentvolumeclaims/status']) t.ok(coreNames.includes(n), `core serves ${n}`)
  t.match(core.resources.find((r: { name: string }) => r.name === 'namespaces'), { kind: 'Namespace', namespaced: false, verbs: ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'] })
  t.match(core.resources.find((r: { name: string }) => r.name === 'persistentvolumeclaims'), { kind: 'PersistentVolumeClaim', namespaced: true, singularName: 'persistentvolumeclaim' })

  const groups = (await raw(server, 'GET', '/apis')).body
  t.equal(groups.kind, 'APIGroupList')
  const volsync = groups.groups.find((g: { name: string }) => g.name === 'volsync.backube')
  t.strictSame(volsync, { name: 'volsync.backube', versions: [{ groupVersion: 'volsync.backube/v1alpha1', version: 'v1alpha1' }], preferredVersion: { groupVersion: 'volsync.backube/v1alpha1', version: 'v1alpha1' } })
  t.ok(groups.groups.some((g: { name: string }) => g.name === 'batch'))
  t.notOk(groups.groups.some((g: { name: string }) => g.name === 'snapshot.storage.k8s.io'), 'CRDs beyond VolSync are not installed by default')
  t.match((await raw(server, 'GET', '/apis/batch')).body, { kind: 'APIGroup', name: 'batch', preferredVersion: { version: 'v1' } })
  const vs = (await raw(server, 'GET', '/apis/volsync.backube/v1alpha1')).body
  t.strictSame(vs.resources.filter((r: { name: string }) => !r.name.includes('/')).map((r: { name: string }) => r.name).sort(), ['replicationdestinations', 'replicationsources'])
  t.equal((await raw(server, 'GET', '/apis/batch/v1')).body.resources[0].kind, 'Job')

  for (const p of ['/api/v2', '/apis/snapshot.storage.k8s.io', '/apis/snapshot.storage.k8s.io/v1', '/apis/volsync.backube/v1beta1']) {
    const r = await raw(server, 'GET', p)
    t.equal(r.status, 404, `${p} is not served`)
    t.match(r.body, { kind: 'Status', reason: 'NotFound', message: 'the server could not find the requested resource' })
  }
})

t.test('installResource / uninstallResource: discovery, and LIST/WATCH 404 like a real apiserver', async (t) => {
  const { server, custom } = await setup(t)
  const SNAPS = '/apis/snapshot.storage.k8s.io/v1/volumesnapshots'
  const snap = { group: 'snapshot.storage.k8s.io', version: 'v1', kind: 'VolumeSnapshot', plural: 'volumesnapshots' }
  const list = await raw(server, 'GET', SNAPS)
  t.equal(list.status, 404, 'list of an uninstalled resource')
  t.match(list.body, { reason: 'NotFound', message: 'the server could not find the requested resource' })
  t.equal((await raw(server, 'GET', '/apis/snapshot.storage.k8s.io/v1/namespaces/media/volumesnapshots')).status, 404, 'namespaced list too')
  t.equal((await raw(server, 'GET', `${SNAPS}?watch=true`)).status, 404, 'watch too')
  const watchErr = await new Promise<{ statusCode?: number }>((resolve) => void new Watch(server.kubeConfig).watch(SNAPS, {}, () => {}, resolve))
  t.equal(watchErr.statusCode, 404, 'client-node Watch sees the 404')
  // Staging objects through the backdoor still works (they show once the CRD is installed).
  server.objects.put(SNAPS, { apiVersion: 'snapshot.storage.k8s.io/v1', kind: 'VolumeSnapshot', metadata: { name: 's', namespace: 'media' }, spec: {} })

  server.installResource(snap)
  t.match(server.installedResources().find((r) => r.plural === 'volumesnapshots'), { ...snap, namespaced: true })
  t.match((await raw(server, 'GET', '/apis/snapshot.storage.k8s.io/v1')).body, { groupVersion: 'snapshot.storage.k8s.io/v1', resources: [{ name: 'volumesnapshots', kind: 'VolumeSnapshot', namespaced: true }] })
  t.ok((await raw(server, 'GET', '/apis')).body.groups.some((g: { name: string }) => g.name === 'snapshot.storage.k8s.io'))
  const listed = (await custom.listClusterCustomObject({ group: 'snapshot.storage.k8s.io', version: 'v1', plural: 'volumesnapshots' })) as { kind: string; items: KubernetesObject[] }
  t.equal(listed.kind, 'VolumeSnapshotList')
  t.match(listed.items, [{ metadata: { name: 's' } }])

  // Open a watch, then delete the "CRD": the watch ends, the objects go, the group leaves discovery.
  const ended = new Promise<unknown>((resolve) => void new Watch(server.kubeConfig).watch(SNAPS, {}, () => {}, resolve))
  await until(() => server.openWatches(SNAPS) === 1, 'watch open')
  t.equal(server.uninstallResource(snap), true)
  t.equal(await ended, null, 'the watch ended cleanly')
  t.equal(server.openWatches(SNAPS), 0)
  t.equal(server.uninstallResource(snap), false, 'already gone')
  t.equal((await raw(server, 'GET', SNAPS)).status, 404)
  t.equal((await raw(server, 'GET', '/apis/snapshot.storage.k8s.io/v1')).status, 404)
  t.notOk((await raw(server, 'GET', '/apis')).body.groups.some((g: { name: string }) => g.name === 'snapshot.storage.k8s.io'))
  t.equal(server.objects.list(SNAPS).length, 0, 'its objects were deleted with it')

  // A server with only the resources asked for.
  const minimal = await startFakeApiServer({ resources: [{ group: '', version: 'v1', kind: 'Secret', plural: 'secrets' }] })
  t.teardown(() => minimal.close())
  t.strictSame((await raw(minimal, 'GET', '/api/v1')).body.resources.map((r: { name: string }) => r.name), ['secrets', 'secrets/status'])
  t.strictSame((await raw(minimal, 'GET', '/apis')).body.groups, [])
  t.equal((await raw(minimal, 'GET', '/api/v1/configmaps')).status, 404)
})

t.test('openWatches / dropWatches: clean end or broken connection; watch-only faults', async (t) => {
  const { server } = await setup(t)
  const done: unknown[] = []
  const watch = new Watch(server.kubeConfig)
  await watch.watch(CM, {}, () => {}, (err) => done.push(err))
  await watch.watch('/api/v1/secrets', {}, () => {}, (err) => done.push(err))
  await until(() => server.openWatches() === 2, 'two watches')
  t.equal(server.openWatches('/api/v1/configmaps'), 1)
  t.equal(server.dropWatches({ apiPath: '/api/v1/configmaps' }), 1)
  await until(() => done.length === 1, 'configmaps watch ended')
  t.equal(done[0], null, 'a clean end')
  t.equal(server.dropWatches({ destroy: true }), 1)
  await until(() => done.length === 2, 'secrets watch ended')
  t.match(done[1], { code: 'ERR_STREAM_PREMATURE_CLOSE' }, 'a broken connection')
  t.equal(server.openWatches(), 0)

  // `watch: true` faults only hit watches, `watch: false` only the rest.
  const onlyWatch = server.fail({ path: CM, watch: true }, { status: 503 })
  t.equal((await raw(server, 'GET', CM)).status, 200, 'a list passes')
  t.equal((await raw(server, 'GET', `${CM}?watch=true&timeoutSeconds=1`)).status, 503)
  t.equal(onlyWatch.hits, 1)
  server.fail({ path: CM, watch: false }, { status: 500 })
  const w = await fetch(`${server.url}${CM}?watch=true&timeoutSeconds=1`, { headers: { Authorization: `Bearer ${server.token}` } })
  t.equal(w.status, 200, 'a watch passes')
  await w.body?.cancel()
  t.equal((await raw(server, 'GET', CM)).status, 500)
})
