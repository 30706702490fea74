/**
 * The fake apiserver's field ownership (server-side apply), no-op writes, and core/v1 Event
 * validation, checked with raw HTTP (exact status codes and bodies) and a watch (no-op writes emit
 * nothing).
 */
import t from 'tap'
import { Watch } from '@kubernetes/client-node'
import { startFakeApiServer, type FakeApiServer } from '../helpers/fake-apiserver.js'

type Tap = { teardown(fn: () => unknown): void }

async function setup(t: Tap): Promise<FakeApiServer> {
  const server = await startFakeApiServer()
  t.teardown(() => server.close())
  return server
}

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
const RS = '/apis/volsync.backube/v1alpha1/namespaces/media/replicationsources'
const EVENTS = '/api/v1/namespaces/media/events'
const APPLY = 'application/apply-patch+yaml'
const MERGE = 'application/merge-patch+json'

const rs = (spec: Record<string, unknown>, labels?: Record<string, string>) => ({
  apiVersion: 'volsync.backube/v1alpha1',
  kind: 'ReplicationSource',
  metadata: { name: 'b', ...(labels ? { labels } : {}) },
  spec,
})

t.test('an identical apply by the same manager is a no-op: same resourceVersion, no watch event, managedFields untouched', async (t) => {
  const server = await setup(t)
  const first = await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore&force=true`, rs({ sourcePVC: 'p', trigger: { schedule: '1 * * * *' } }), APPLY)
  t.equal(first.status, 201, 'apply creates with 201')
  t.match(first.body.metadata.managedFields, [{ manager: 'smart-restore', operation: 'Apply', fieldsType: 'FieldsV1', fieldsV1: { 'f:spec': { 'f:sourcePVC': {}, 'f:trigger': { 'f:schedule': {} } } } }])

  const events: string[] = []
  const watch = await new Watch(server.kubeConfig).watch(
    '/apis/volsync.backube/v1alpha1/replicationsources',
    { resourceVersion: first.body.metadata.resourceVersion },
    (type) => events.push(type),
    () => {},
  )
  t.teardown(() => watch.abort())
  const rv = server.objects.resourceVersion
  const second = await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore&force=true`, rs({ trigger: { schedule: '1 * * * *' }, sourcePVC: 'p' }), APPLY)
  t.equal(second.status, 200)
  t.equal(second.body.metadata.resourceVersion, first.body.metadata.resourceVersion)
  t.strictSame(second.body.metadata.managedFields, first.body.metadata.managedFields)
  t.equal(server.objects.resourceVersion, rv)
  // A change afterwards is the first event the watch sees.
  await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore`, rs({ sourcePVC: 'q', trigger: { schedule: '1 * * * *' } }), APPLY)
  await new Promise((r) => setTimeout(r, 50))
  t.strictSame(events, ['MODIFIED'])
})

t.test('no-op updates (PUT of what is stored, an empty merge patch) keep the resourceVersion too', async (t) => {
  const server = await setup(t)
  const created = await raw(server, 'POST', CM, { metadata: { name: 'a', labels: { x: '1' } }, data: { k: 'v' } })
  t.match(created.body.metadata.managedFields, [{ manager: 'node', operation: 'Update', fieldsV1: { 'f:data': { 'f:k': {} }, 'f:metadata': { 'f:labels': { 'f:x': {} } } } }])
  const put = await raw(server, 'PUT', `${CM}/a`, created.body)
  t.equal(put.status, 200)
  t.equal(put.body.metadata.resourceVersion, created.body.metadata.resourceVersion)
  const merge = await raw(server, 'PATCH', `${CM}/a`, { data: { k: 'v' } }, MERGE)
  t.equal(merge.body.metadata.resourceVersion, created.body.metadata.resourceVersion)
  const changed = await raw(server, 'PATCH', `${CM}/a?fieldManager=editor`, { data: { k: 'w' } }, MERGE)
  t.not(changed.body.metadata.resourceVersion, created.body.metadata.resourceVersion)
  t.match(changed.body.metadata.managedFields, [
    { manager: 'node', operation: 'Update', fieldsV1: { 'f:metadata': { 'f:labels': { 'f:x': {} } } } },
    { manager: 'editor', operation: 'Update', fieldsV1: { 'f:data': { 'f:k': {} } } },
  ])
  t.notOk('f:data' in changed.body.metadata.managedFields[0].fieldsV1, 'the field changed hands')
})

t.test('apply: removal of fields the manager stopped applying, unless another manager owns them too', async (t) => {
  const server = await setup(t)
  await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore`, rs({ sourcePVC: 'p', a: 1, b: { c: 2, d: 3 } }, { l1: 'x', l2: 'y' }), APPLY)
  // Another applier shares `a` (same value: no conflict, co-owned).
  await raw(server, 'PATCH', `${RS}/b?fieldManager=other`, rs({ a: 1 }), APPLY)
  const res = await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore`, rs({ sourcePVC: 'p', b: { c: 2 } }, { l1: 'x' }), APPLY)
  t.equal(res.status, 200)
  t.strictSame(res.body.spec, { sourcePVC: 'p', a: 1, b: { c: 2 } }, 'b.d removed; a kept (co-owned)')
  t.strictSame(res.body.metadata.labels, { l1: 'x' }, 'label l2 removed')
  const gone = await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore`, rs({ sourcePVC: 'p' }), APPLY)
  t.strictSame(gone.body.spec, { sourcePVC: 'p', a: 1 }, 'an emptied map is removed with its last field')
  t.equal(gone.body.metadata.labels, undefined)
})

t.test('apply conflicts: 409 with the fields and managers; force takes the fields; status causes', async (t) => {
  const server = await setup(t)
  await raw(server, 'POST', RS, rs({ sourcePVC: 'p', x: 1, y: 2 }))
  const conflict = await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore`, rs({ sourcePVC: 'p', x: 9, y: 8 }), APPLY)
  t.equal(conflict.status, 409)
  t.match(conflict.body, {
    reason: 'Conflict',
    message: 'Apply failed with 2 conflicts: conflicts with "node" using volsync.backube/v1alpha1:\n- .spec.x\n- .spec.y',
    details: { causes: [{ type: 'FieldManagerConflict', field: '.spec.x' }, { type: 'FieldManagerConflict', field: '.spec.y' }] },
  })
  const same = await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore`, rs({ sourcePVC: 'p', x: 1 }), APPLY)
  t.equal(same.status, 200, 'the same values are no conflict (shared ownership)')
  const forced = await raw(server, 'PATCH', `${RS}/b?fieldManager=smart-restore&force=true`, rs({ sourcePVC: 'p', x: 9 }), APPLY)
  t.equal(forced.status, 200)
  t.strictSame(forced.body.spec, { sourcePVC: 'p', x: 9, y: 2 })
  const node = forced.body.metadata.managedFields.find((m: { manager: string }) => m.manager === 'node')
  t.strictSame(node.fieldsV1, { 'f:spec': { 'f:sourcePVC': {}, 'f:y': {} } }, 'x changed hands, y and the shared sourcePVC stay')
})

t.test('apply refuses managedFields in the body; force is only for apply', async (t) => {
  const server = await setup(t)
  const withManaged = await raw(server, 'PATCH', `${RS}/b?fieldManager=m`, { ...rs({}), metadata: { name: 'b', managedFields: [{ manager: 'x' }] } }, APPLY)
  t.equal(withManaged.status, 400)
  t.equal(withManaged.body.message, 'metadata.managedFields must be nil')
  await raw(server, 'POST', CM, { metadata: { name: 'a' } })
  const forcedMerge = await raw(server, 'PATCH', `${CM}/a?force=true`, { data: { a: '1' } }, MERGE)
  t.equal(forcedMerge.status, 422)
})

// -------------------------------------------------------------------------------------------------
// Events

const event = (extra: Record<string, unknown> = {}) => ({
  apiVersion: 'v1',
  kind: 'Event',
  metadata: { name: 'data.1' },
  involvedObject: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: 'media', name: 'data', uid: 'u' },
  reason: 'BackupAttached',
  message: 'm',
  type: 'Normal',
  ...extra,
})

t.test('Events: legacy (no eventTime) and new-style (eventTime + action + reporting fields) are accepted', async (t) => {
  const server = await setup(t)
  t.equal((await raw(server, 'POST', EVENTS, event({ firstTimestamp: '2026-01-02T03:04:05Z', lastTimestamp: '2026-01-02T03:04:05Z', count: 1 }))).status, 201)
  const modern = event({
    metadata: { name: 'data.2' },
    eventTime: '2026-01-02T03:04:05.123456Z',
    action: 'Reconcile',
    reportingComponent: 'smart-restore',
    reportingInstance: 'smart-restore-7d9f-abcde',
    message: 'x'.repeat(1024),
  })
  t.equal((await raw(server, 'POST', EVENTS, modern)).status, 201)
})

t.test('Events: an eventTime that is not a six-digit MicroTime does not decode (400)', async (t) => {
  const server = await setup(t)
  const base = { action: 'A', reportingComponent: 'smart-restore', reportingInstance: 'pod' }
  for (const eventTime of ['2026-01-02T03:04:05.123Z', '2026-01-02T03:04:05Z', 'yesterday']) {
    const res = await raw(server, 'POST', EVENTS, event({ ...base, eventTime }))
    t.equal(res.status, 400, eventTime)
    t.match(res.body.message, /cannot be handled as a Event: parsing time .* as "2006-01-02T15:04:05.000000Z07:00"/)
  }
  t.equal((await raw(server, 'POST', EVENTS, event({ firstTimestamp: '2026-01-02 03:04' }))).status, 400)
})

t.test('Events: the legacy validation rules (422)', async (t) => {
  const server = await setup(t)
  const eventTime = '2026-01-02T03:04:05.000000Z'
  const noAction = await raw(server, 'POST', EVENTS, event({ eventTime, reportingComponent: 'smart-restore' }))
  t.equal(noAction.status, 422)
  t.equal(noAction.body.message, 'Event "data.1" is invalid: [reportingInstance: Required value, action: Required value]')
  const long = await raw(server, 'POST', EVENTS, event({ eventTime, action: 'A', reportingComponent: 'smart-restore', reportingInstance: 'p', message: 'é'.repeat(513) }))
  t.equal(long.status, 422, '1026 bytes')
  t.match(long.body.message, /message: Invalid value: "": can have at most 1024 characters/)
  const otherNs = await raw(server, 'POST', EVENTS, event({ involvedObject: { kind: 'PersistentVolumeClaim', namespace: 'apps', name: 'x' } }))
  t.equal(otherNs.status, 422)
  t.match(otherNs.body.message, /involvedObject.namespace: Invalid value: "apps": does not match event.namespace/)
})
