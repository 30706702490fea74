/**
 * The reconciler's ClusterClient methods (apply, delete, addOwnerReference, patchPvcMetadata) through
 * the real client-node plumbing over HTTP against the fake apiserver: the exact requests, what is
 * stored, idempotence across replicas, and how failures surface.
 */
import t from 'tap'
import { ClusterClient, kindInfo, ownerReferenceTo, type ApplyObject } from '../../src/kube/cluster-client.js'
import { KubeApiError } from '../../src/kube/errors.js'
import { captureLogger } from '../helpers/capture-log.js'
import { startFakeApiServer, type FakeApiServer, type StoredObject } from '../helpers/fake-apiserver.js'

type Tap = { teardown(fn: () => unknown): void }

const SECRETS = '/api/v1/secrets'
const RSS = '/apis/volsync.backube/v1alpha1/replicationsources'
const RDS = '/apis/volsync.backube/v1alpha1/replicationdestinations'
const PVCS = '/api/v1/persistentvolumeclaims'
const SECRET_URL = '/api/v1/namespaces/media/secrets/data-claim-restic'
const RS_URL = '/apis/volsync.backube/v1alpha1/namespaces/media/replicationsources/data-claim-backup'
const RD_URL = '/apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations/data-claim-restore'
const PVC_URL = '/api/v1/namespaces/media/persistentvolumeclaims/data-claim'
const MANAGED = { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': 'data-claim' }
const PASSWORD = 'correct-horse-battery-staple'
const SECRET_KEY = 'wJalrXUtnFEMI-secret-key'
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64')

function secret(extra: Record<string, string> = {}): ApplyObject {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'data-claim-restic', namespace: 'media', labels: { ...MANAGED } },
    type: 'Opaque',
    stringData: { RESTIC_REPOSITORY: 's3:http://minio:9000/backups/media/data-claim', RESTIC_PASSWORD: PASSWORD, AWS_SECRET_ACCESS_KEY: SECRET_KEY, ...extra },
  }
}

function rs(spec: Record<string, unknown> = {}): ApplyObject {
  return {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationSource',
    metadata: { name: 'data-claim-backup', namespace: 'media', labels: { ...MANAGED } },
    spec: {
      sourcePVC: 'data-claim',
      trigger: { schedule: '17 * * * *' },
      restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot', pruneIntervalDays: 7, retain: { hourly: 24, daily: 7 } },
      ...spec,
    },
  }
}

async function setup(t: Tap, requestTimeoutMs = 2000) {
  const server = await startFakeApiServer()
  t.teardown(() => server.close())
  const log = captureLogger('debug')
  const client = new ClusterClient(server.kubeConfig, { requestTimeoutMs, fieldManager: 'smart-restore', logger: log.logger })
  return { server, client, log }
}

async function rejection(p: Promise<unknown>): Promise<KubeApiError> {
  try {
    await p
  } catch (err) {
    if (err instanceof KubeApiError) return err
    throw err
  }
  throw new Error('expected a rejection')
}

const calls = (s: FakeApiServer, skip = 0) => s.requests.slice(skip).map((r) => `${r.method} ${r.path}`)

function pvc(): StoredObject {
  return { metadata: { name: 'data-claim', namespace: 'media', labels: { backup: 'hourly' }, annotations: { 'smart-restore.io/decision': 'fresh', keep: 'me' } }, spec: { accessModes: ['ReadWriteOnce'] } }
}

// -------------------------------------------------------------------------------------------------
// apply

t.test('apply a Secret: one read, then the exact server-side apply request; stringData goes as base64 data', async (t) => {
  const { server, client } = await setup(t)
  const res = await client.apply(secret())
  t.strictSame(calls(server), [`GET ${SECRET_URL}`, `PATCH ${SECRET_URL}`])
  const patch = server.requests[1]!
  t.equal(patch.method, 'PATCH')
  t.equal(patch.contentType, 'application/apply-patch+yaml')
  t.strictSame(patch.query, { fieldManager: 'smart-restore', force: 'true' })
  t.strictSame(patch.body, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'data-claim-restic', namespace: 'media', labels: MANAGED },
    type: 'Opaque',
    data: { RESTIC_REPOSITORY: b64('s3:http://minio:9000/backups/media/data-claim'), RESTIC_PASSWORD: b64(PASSWORD), AWS_SECRET_ACCESS_KEY: b64(SECRET_KEY) },
  })
  t.equal(res.created, true)
  t.equal(res.changed, true)
  t.match(res.object, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'data-claim-restic', uid: /./, resourceVersion: /^\d+$/ } })
  const stored = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  t.equal((stored.data as Record<string, string>).RESTIC_PASSWORD, b64(PASSWORD))
  t.match(stored.metadata.managedFields, [{ manager: 'smart-restore', operation: 'Apply', fieldsV1: { 'f:data': { 'f:RESTIC_PASSWORD': {} }, 'f:metadata': { 'f:labels': {} } } }])
})

t.test('apply a ReplicationSource: the exact request; server fields and status of the input are not sent', async (t) => {
  const { server, client } = await setup(t)
  const input = rs()
  input.metadata.resourceVersion = '7'
  input.metadata.uid = 'abc'
  input.metadata.managedFields = [{ manager: 'x' }]
  input.metadata.creationTimestamp = '2026-01-01T00:00:00Z'
  input.status = { lastSyncTime: 'x' }
  const res = await client.apply(input, { knownResourceVersion: null })
  t.strictSame(calls(server), [`PATCH ${RS_URL}`], 'knownResourceVersion null: no read')
  const patch = server.requests[0]!
  t.equal(patch.contentType, 'application/apply-patch+yaml')
  t.strictSame(patch.query, { fieldManager: 'smart-restore', force: 'true' })
  t.strictSame(patch.body, rs())
  t.match(res, { created: true, changed: true, object: { kind: 'ReplicationSource', spec: { sourcePVC: 'data-claim' } } })
  t.equal(server.objects.get(RSS, 'media', 'data-claim-backup')!.status, undefined)
})

t.test('a second replica applying the same objects: no write, no new resourceVersion, changed false', async (t) => {
  const { server, client } = await setup(t)
  await client.apply(secret())
  await client.apply(rs())
  const rvBefore = server.objects.resourceVersion
  const storedRs = server.objects.get(RSS, 'media', 'data-claim-backup')!
  const storedSecret = server.objects.get(SECRETS, 'media', 'data-claim-restic')!

  const replica2 = new ClusterClient(server.kubeConfig, { requestTimeoutMs: 2000, fieldManager: 'smart-restore' })
  const s2 = await replica2.apply(secret())
  const r2 = await replica2.apply(rs())
  t.equal(s2.changed, false)
  t.equal(s2.created, false)
  t.equal(r2.changed, false)
  t.equal(r2.object.metadata.resourceVersion, storedRs.metadata.resourceVersion)
  t.equal(server.objects.resourceVersion, rvBefore, 'nothing was written anywhere')
  t.strictSame(server.objects.get(RSS, 'media', 'data-claim-backup'), storedRs, 'managedFields (and their time) untouched')
  t.strictSame(server.objects.get(SECRETS, 'media', 'data-claim-restic'), storedSecret)
  // With the resourceVersion from a cache, the same apply is one request.
  const before = server.requests.length
  const r3 = await replica2.apply(rs(), { knownResourceVersion: storedRs.metadata.resourceVersion })
  t.strictSame(calls(server, before), [`PATCH ${RS_URL}`])
  t.equal(r3.changed, false)
})

t.test('apply with a changed spec: changed, new resourceVersion; a field no longer applied is removed', async (t) => {
  const { server, client } = await setup(t)
  const first = await client.apply(rs())
  const res = await client.apply(rs({ trigger: { schedule: '42 * * * *' }, restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot', retain: { hourly: 24 } } }))
  t.equal(res.changed, true)
  t.equal(res.created, false)
  t.not(res.object.metadata.resourceVersion, first.object.metadata.resourceVersion)
  const stored = server.objects.get(RSS, 'media', 'data-claim-backup')!
  t.strictSame(stored.spec, { sourcePVC: 'data-claim', trigger: { schedule: '42 * * * *' }, restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot', retain: { hourly: 24 } } }, 'pruneIntervalDays and retain.daily removed')
  t.equal(stored.metadata.generation, 2)
})

t.test('apply over fields another manager set: force (default) takes them; force false is a conflict', async (t) => {
  const { server, client } = await setup(t)
  await client.apply(rs())
  // Someone edits the schedule with kubectl (an Update by another manager).
  const kubectl = new ClusterClient(server.kubeConfig, { requestTimeoutMs: 2000, fieldManager: 'kubectl-edit' })
  await kubectl.mergePatchObject('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', { spec: { trigger: { schedule: '0 0 * * *' } } })

  const before = server.requests.length
  const err = await rejection(client.apply(rs(), { force: false, knownResourceVersion: 'x' }))
  t.strictSame(calls(server, before), [`PATCH ${RS_URL}`])
  t.notOk('force' in server.requests.at(-1)!.query, 'force false: no force parameter')
  t.equal(err.kind, 'conflict')
  t.equal(err.status, 409)
  t.equal(err.retryable, false)
  t.match(err.message, /^apply ReplicationSource media\/data-claim-backup: conflict \(HTTP 409 Conflict\): Apply failed with 1 conflict: conflict with "kubectl-edit" using volsync.backube\/v1alpha1: \.spec\.trigger\.schedule$/)

  const res = await client.apply(rs())
  t.equal(res.changed, true)
  t.equal((server.objects.get(RSS, 'media', 'data-claim-backup')!.spec as { trigger: { schedule: string } }).trigger.schedule, '17 * * * *', 'forced back')
  const managers = (server.objects.get(RSS, 'media', 'data-claim-backup')!.metadata.managedFields as Array<{ manager: string }>).map((m) => m.manager)
  t.strictSame(managers, ['smart-restore'], 'kubectl-edit lost its only field and its entry')
})

t.test('apply: Secret values never reach error messages or logs', async (t) => {
  const { server, client, log } = await setup(t)
  server.fail({ method: 'PATCH' }, { status: 422, reason: 'Invalid', message: `Secret "data-claim-restic" is invalid: data[RESTIC_PASSWORD]: Invalid value: "${PASSWORD}" and ${b64(SECRET_KEY)}` })
  const err = await rejection(client.apply(secret()))
  t.equal(err.kind, 'invalid')
  t.notMatch(err.message, PASSWORD)
  t.notMatch(err.message, b64(SECRET_KEY))
  t.match(err.message, /\[redacted\]/)
  await client.apply(secret())
  for (const v of [PASSWORD, b64(PASSWORD), SECRET_KEY, b64(SECRET_KEY)]) t.notOk(log.text().includes(v), 'no secret value in the log')
})

t.test('apply: incomplete objects and unknown kinds are refused before any request', async (t) => {
  const { server, client } = await setup(t)
  const noNs = await rejection(client.apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } }))
  t.equal(noNs.kind, 'invalid')
  t.match(noNs.message, /needs apiVersion, kind, metadata.name and metadata.namespace/)
  const unknown = await rejection(client.apply({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x', namespace: 'media' } }))
  t.equal(unknown.kind, 'invalid')
  t.match(unknown.message, /does not know where the API serves apps\/v1 Deployment/)
  t.equal(server.requests.length, 0)
  t.strictSame(kindInfo('volsync.backube/v1alpha1', 'ReplicationDestination'), { group: 'volsync.backube', version: 'v1alpha1', plural: 'replicationdestinations' })
})

t.test('apply: a hung apiserver is a timeout within the deadline; a 500 is retryable', async (t) => {
  const { server, client } = await setup(t, 300)
  server.fail({ method: 'PATCH' }, { hang: true })
  const started = Date.now()
  const err = await rejection(client.apply(rs(), { knownResourceVersion: null }))
  t.equal(err.kind, 'timeout')
  t.ok(Date.now() - started < 1500)
  server.fail({ method: 'PATCH' }, { status: 500 })
  const e500 = await rejection(client.apply(rs(), { knownResourceVersion: null }))
  t.equal(e500.kind, 'server')
  t.equal(e500.retryable, true)
})

// -------------------------------------------------------------------------------------------------
// delete

t.test('delete with a uid precondition: the exact request; deleted', async (t) => {
  const { server, client } = await setup(t)
  const { object } = await client.apply(rs())
  const before = server.requests.length
  t.equal(await client.delete('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', { uid: object.metadata.uid }), 'deleted')
  t.strictSame(calls(server, before), [`DELETE ${RS_URL}`])
  const del = server.requests.at(-1)!
  t.equal(del.contentType, 'application/json')
  t.strictSame(del.body, { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: 'Background', preconditions: { uid: object.metadata.uid } })
  t.equal(server.objects.get(RSS, 'media', 'data-claim-backup'), undefined)
})

t.test('delete: another uid (a newer object of that name) and a missing object are both gone; the newer object stays', async (t) => {
  const { server, client, log } = await setup(t)
  await client.apply(rs())
  t.equal(await client.delete('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', { uid: 'an-older-uid' }), 'gone')
  t.ok(server.objects.get(RSS, 'media', 'data-claim-backup'), 'not deleted')
  t.match(log.lines().find((l) => l.msg.includes('newer object')), { object: 'ReplicationSource media/data-claim-backup', uid: 'an-older-uid' })
  t.equal(await client.delete('volsync.backube/v1alpha1', 'ReplicationDestination', 'media', 'nothing-here'), 'gone')
  t.equal(await client.delete('v1', 'Secret', 'media', 'nothing-here', { uid: 'x' }), 'gone')
})

t.test('delete: an object with finalizers is marked (deleted); forbidden and timeouts throw', async (t) => {
  const { server, client } = await setup(t, 300)
  server.objects.put(RDS, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'data-claim-restore', namespace: 'media', finalizers: ['volsync.backube/finalizer'] }, spec: {} })
  t.equal(await client.delete('volsync.backube/v1alpha1', 'ReplicationDestination', 'media', 'data-claim-restore'), 'deleted')
  t.ok(server.objects.get(RDS, 'media', 'data-claim-restore')!.metadata.deletionTimestamp)
  server.fail({ method: 'DELETE' }, { status: 403 })
  const forbidden = await rejection(client.delete('volsync.backube/v1alpha1', 'ReplicationDestination', 'media', 'data-claim-restore'))
  t.equal(forbidden.kind, 'forbidden')
  t.match(forbidden.message, /cannot delete resource "replicationdestinations"/)
  server.fail({ method: 'DELETE' }, { hang: true })
  t.equal((await rejection(client.delete('volsync.backube/v1alpha1', 'ReplicationDestination', 'media', 'data-claim-restore'))).kind, 'timeout')
  t.equal(server.requestsMatching('DELETE', RD_URL).length, 3)
})

// -------------------------------------------------------------------------------------------------
// addOwnerReference

const OWNER = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-claim', uid: 'pvc-uid-1' }
const REF = { ...OWNER, controller: false, blockOwnerDeletion: false }

t.test('addOwnerReference: added once (read + merge patch guarded by resourceVersion); the second call only reads', async (t) => {
  const { server, client } = await setup(t)
  const { object } = await client.apply(secret())
  const before = server.requests.length
  t.equal(await client.addOwnerReference('v1', 'Secret', 'media', 'data-claim-restic', OWNER), 'added')
  t.strictSame(calls(server, before), [`GET ${SECRET_URL}`, `PATCH ${SECRET_URL}`])
  const patch = server.requests.at(-1)!
  t.equal(patch.contentType, 'application/merge-patch+json')
  t.strictSame(patch.query, { fieldManager: 'smart-restore' })
  t.strictSame(patch.body, { metadata: { resourceVersion: object.metadata.resourceVersion, ownerReferences: [REF] } })
  t.strictSame(server.objects.get(SECRETS, 'media', 'data-claim-restic')!.metadata.ownerReferences, [REF])
  t.equal((server.objects.get(SECRETS, 'media', 'data-claim-restic')!.data as Record<string, string>).RESTIC_PASSWORD, b64(PASSWORD), 'data untouched')

  const rv = server.objects.resourceVersion
  const again = server.requests.length
  t.equal(await client.addOwnerReference('v1', 'Secret', 'media', 'data-claim-restic', OWNER), 'present')
  t.strictSame(calls(server, again), [`GET ${SECRET_URL}`], 'no write')
  t.equal(server.objects.resourceVersion, rv)
})

t.test('addOwnerReference keeps other owners, replaces a reference to an earlier PVC of that name', async (t) => {
  const { server, client } = await setup(t)
  const other = { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: 'sts-uid' }
  const stale = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-claim', uid: 'pvc-uid-0' }
  server.objects.put(RDS, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'data-claim-restore', namespace: 'media', ownerReferences: [other, stale] }, spec: {} })
  t.equal(await client.addOwnerReference('volsync.backube/v1alpha1', 'ReplicationDestination', 'media', 'data-claim-restore', OWNER), 'added')
  t.strictSame(server.objects.get(RDS, 'media', 'data-claim-restore')!.metadata.ownerReferences, [other, REF])
})

t.test('addOwnerReference: a concurrent change (409) is read again and retried; a missing object is not-found', async (t) => {
  const { server, client } = await setup(t)
  await client.apply(rs())
  // Someone else wrote between our read and our patch: the first patch's resourceVersion is stale.
  const f = server.fail({ method: 'PATCH', path: RS_URL }, { status: 409, reason: 'Conflict', message: 'Operation cannot be fulfilled on replicationsources.volsync.backube "data-claim-backup": the object has been modified; please apply your changes to the latest version and try again' })
  t.equal(await client.addOwnerReference('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', OWNER), 'added')
  t.equal(f.hits, 1)
  t.strictSame(calls(server).slice(-4), [`GET ${RS_URL}`, `PATCH ${RS_URL}`, `GET ${RS_URL}`, `PATCH ${RS_URL}`])
  t.strictSame(server.objects.get(RSS, 'media', 'data-claim-backup')!.metadata.ownerReferences, [REF])

  await client.delete('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup')
  const gone = await rejection(client.addOwnerReference('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', OWNER))
  t.equal(gone.kind, 'not-found')
})

t.test('addOwnerReference: an object that keeps changing gives up after 3 rounds with a retryable conflict', async (t) => {
  const { server, client } = await setup(t)
  await client.apply(rs())
  const before = server.requests.length
  server.fail({ method: 'PATCH', path: RS_URL, times: 3 }, { status: 409, reason: 'Conflict' })
  const err = await rejection(client.addOwnerReference('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', OWNER))
  t.equal(err.kind, 'conflict')
  t.equal(err.retryable, true)
  t.match(err.message, /kept changing/)
  t.strictSame(calls(server, before), [`GET ${RS_URL}`, `PATCH ${RS_URL}`, `GET ${RS_URL}`, `PATCH ${RS_URL}`, `GET ${RS_URL}`, `PATCH ${RS_URL}`])
})

t.test('apply after addOwnerReference keeps the reference (it belongs to the Update, not to the applied set)', async (t) => {
  const { server, client } = await setup(t)
  await client.apply(rs())
  await client.addOwnerReference('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', OWNER)
  const res = await client.apply(rs())
  t.equal(res.changed, false)
  t.strictSame(server.objects.get(RSS, 'media', 'data-claim-backup')!.metadata.ownerReferences, [REF])
})

// -------------------------------------------------------------------------------------------------
// patchPvcMetadata

t.test('patchPvcMetadata: one merge patch; null removes a key; other keys stay', async (t) => {
  const { server, client } = await setup(t)
  server.objects.put(PVCS, pvc())
  const patched = await client.patchPvcMetadata('media', 'data-claim', { labels: { backup: 'daily' }, annotations: { 'smart-restore.io/decision': null, 'smart-restore.io/backup': 'attached' } })
  t.strictSame(calls(server), [`PATCH ${PVC_URL}`])
  const req = server.requests[0]!
  t.equal(req.contentType, 'application/merge-patch+json')
  t.strictSame(req.body, { metadata: { labels: { backup: 'daily' }, annotations: { 'smart-restore.io/decision': null, 'smart-restore.io/backup': 'attached' } } })
  t.strictSame(patched!.metadata.labels, { backup: 'daily' })
  t.strictSame(server.objects.get(PVCS, 'media', 'data-claim')!.metadata.annotations, { keep: 'me', 'smart-restore.io/backup': 'attached' })
  t.equal(await client.patchPvcMetadata('media', 'data-claim', { labels: {}, annotations: {} }), undefined)
  t.equal(server.requests.length, 1, 'nothing to change: no request')
})

t.test('patchPvcMetadata with a uid: a recreated PVC is a conflict and is not patched', async (t) => {
  const { server, client } = await setup(t)
  const stored = server.objects.put(PVCS, pvc())
  await client.patchPvcMetadata('media', 'data-claim', { annotations: { a: '1' } }, { uid: stored.metadata.uid })
  t.strictSame((server.requests[0]!.body as { metadata: Record<string, unknown> }).metadata, { annotations: { a: '1' }, uid: stored.metadata.uid })
  const err = await rejection(client.patchPvcMetadata('media', 'data-claim', { annotations: { a: '2' } }, { uid: 'some-other-uid' }))
  t.equal(err.kind, 'conflict')
  t.match(err.message, /Precondition failed: UID/)
  t.equal(server.objects.get(PVCS, 'media', 'data-claim')!.metadata.annotations!.a, '1')
  t.equal((await rejection(client.patchPvcMetadata('media', 'nope', { labels: { a: 'b' } }))).kind, 'not-found')
})

t.test('ownerReferences are merged by uid: an applied reference keeps the ones others added', async (t) => {
  const { server, client } = await setup(t)
  const applied = ownerReferenceTo(OWNER)
  const withOwner = rs()
  withOwner.metadata.ownerReferences = [applied]
  await client.apply(withOwner)
  const other = { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'db', uid: 'sts-uid' }
  const someone = new ClusterClient(server.kubeConfig, { requestTimeoutMs: 2000, fieldManager: 'someone' })
  await someone.addOwnerReference('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', other)
  t.equal((await client.apply(withOwner)).changed, false, 'the same applied reference: no-op')
  t.strictSame(server.objects.get(RSS, 'media', 'data-claim-backup')!.metadata.ownerReferences, [applied, ownerReferenceTo(other)])
  t.equal(await client.addOwnerReference('volsync.backube/v1alpha1', 'ReplicationSource', 'media', 'data-claim-backup', OWNER), 'present')
  t.match(server.objects.get(RSS, 'media', 'data-claim-backup')!.metadata.managedFields, [
    { manager: 'smart-restore', operation: 'Apply', fieldsV1: { 'f:metadata': { 'f:ownerReferences': { [`k:{"uid":"${OWNER.uid}"}`]: {} } } } },
    { manager: 'someone', operation: 'Update', fieldsV1: { 'f:metadata': { 'f:ownerReferences': { 'k:{"uid":"sts-uid"}': {} } } } },
  ])
  // No longer applied: our reference is removed, the other stays.
  await client.apply(rs())
  t.strictSame(server.objects.get(RSS, 'media', 'data-claim-backup')!.metadata.ownerReferences, [ownerReferenceTo(other)])
})
