/**
 * ClusterClient through the real @kubernetes/client-node over HTTP against the fake apiserver:
 * what is sent, what ends up stored, and how every failure surfaces.
 */
import t from 'tap'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'
import { ClusterClient, applyConflicts, assessReplicationDestination, firstDifference, type DesiredReplicationDestination, type DesiredSecret } from '../../src/kube/cluster-client.js'
import { KubeApiError } from '../../src/kube/errors.js'
import { startFakeApiServer, type FakeApiServer, type FakeApiServerOptions, type StoredObject } from '../helpers/fake-apiserver.js'

const SECRETS = '/api/v1/secrets'
const RDS = '/apis/volsync.backube/v1alpha1/replicationdestinations'
const SECRET_PATH = '/api/v1/namespaces/media/secrets'
const RD_PATH = '/apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations'
const MANAGED = { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': 'data-claim' }
const PASSWORD = 'correct-horse-battery-staple'

function desiredSecret(overrides: Record<string, string> = {}): DesiredSecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'data-claim-restic', namespace: 'media', labels: { ...MANAGED }, annotations: { 'smart-restore.io/pvc': 'data-claim' } },
    type: 'Opaque',
    stringData: {
      RESTIC_REPOSITORY: 's3:http://minio.example:9000/backups/media/data-claim',
      RESTIC_PASSWORD: PASSWORD,
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI-secret-key',
      ...overrides,
    },
  }
}

function desiredRd(restic: Record<string, unknown> = {}): DesiredReplicationDestination {
  return {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationDestination',
    metadata: { name: 'data-claim-restore', namespace: 'media', labels: { ...MANAGED }, annotations: { 'smart-restore.io/pvc': 'data-claim' } },
    spec: {
      trigger: { manual: 'smart-restore' },
      restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot', capacity: '10Gi', accessModes: ['ReadWriteOnce'], storageClassName: 'fast', ...restic },
    },
  }
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64')

async function setup(t: Tap, opts: FakeApiServerOptions & { requestTimeoutMs?: number } = {}): Promise<{ server: FakeApiServer; client: ClusterClient }> {
  const server = await startFakeApiServer(opts)
  t.teardown(() => server.close())
  const client = new ClusterClient(server.kubeConfig, { requestTimeoutMs: opts.requestTimeoutMs ?? 2000, fieldManager: 'smart-restore' })
  return { server, client }
}
type Tap = { teardown(fn: () => unknown): void }

async function rejection(p: Promise<unknown>): Promise<KubeApiError> {
  try {
    await p
  } catch (err) {
    if (err instanceof KubeApiError) return err
    throw err
  }
  throw new Error('expected a rejection')
}

/** Methods and paths of the requests after the first `skip`, e.g. ["POST /api/...", "GET /api/..."]. */
const calls = (s: FakeApiServer, skip = 0) => s.requests.slice(skip).map((r) => `${r.method} ${r.path}`)

// -------------------------------------------------------------------------------------------------
// Secret: server-side apply, never a read

const SECRET_ITEM = `${SECRET_PATH}/data-claim-restic`
const APPLY_QUERY = { fieldManager: 'smart-restore' }

/** The apply configuration ensureSecret sends for desiredSecret(overrides): stringData folded into base64 data. */
function appliedBody(overrides: Record<string, string> = {}) {
  const d = desiredSecret(overrides)
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: d.metadata,
    type: 'Opaque',
    data: Object.fromEntries(Object.entries(d.stringData!).map(([k, v]) => [k, b64(v)])),
  }
}

/** Every GET of a Secret (or a list of them): smart-restore may not read Secrets outside its own namespace. */
const secretReads = (server: FakeApiServer) => server.requestsMatching('GET', /\/secrets(\/|$)/).map((r) => r.path)

/** Someone else's Secret, written over HTTP like `kubectl create secret` (an Update by that manager). */
async function foreignSecret(server: FakeApiServer, manager: string, values: Record<string, string>, labels?: Record<string, string>): Promise<StoredObject> {
  const other = new ClusterClient(server.kubeConfig, { requestTimeoutMs: 2000, fieldManager: manager })
  await other.createObject({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'data-claim-restic', namespace: 'media', ...(labels ? { labels } : {}) }, type: 'Opaque', stringData: values })
  return server.objects.get(SECRETS, 'media', 'data-claim-restic')!
}

t.test('ensureSecret creates the Secret by server-side apply: exact request and stored object', async (t) => {
  const { server, client } = await setup(t)
  t.equal(await client.ensureSecret(desiredSecret()), 'created')
  t.strictSame(calls(server), [`PATCH ${SECRET_ITEM}`], 'one apply, no read, no POST')
  const patch = server.requests[0]!
  t.strictSame(patch.query, APPLY_QUERY, 'fieldManager smart-restore, no force')
  t.equal(patch.contentType, 'application/apply-patch+yaml')
  t.strictSame(patch.body, appliedBody(), 'stringData sent as base64 data, so the keys are owned (and pruned) by the apply')

  const stored = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  t.ok(stored.metadata.uid && stored.metadata.resourceVersion && stored.metadata.creationTimestamp)
  t.strictSame(stored.metadata.labels, MANAGED)
  t.strictSame(stored.metadata.annotations, { 'smart-restore.io/pvc': 'data-claim' })
  t.equal(stored.type, 'Opaque')
  t.equal(stored.stringData, undefined)
  t.strictSame(stored.data, appliedBody().data)
  t.match(stored.metadata.managedFields, [{ manager: 'smart-restore', operation: 'Apply' }])
  t.equal((stored.metadata.managedFields as unknown[]).length, 1)
  t.strictSame(secretReads(server), [], 'no Secret was read')
})

t.test('ensureSecret again with the same data: one apply, a no-op for the apiserver', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureSecret(desiredSecret())
  const first = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  const before = server.requests.length
  t.equal(await client.ensureSecret(desiredSecret()), 'applied')
  t.strictSame(calls(server, before), [`PATCH ${SECRET_ITEM}`])
  t.strictSame(server.requests.at(-1)!.query, APPLY_QUERY)
  t.strictSame(server.objects.get(SECRETS, 'media', 'data-claim-restic'), first, 'same resourceVersion, same managedFields: nothing written')
  t.strictSame(secretReads(server), [], 'no Secret was read')
})

t.test('ensureSecret with data given as base64 `data` is the same apply', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureSecret(desiredSecret())
  const first = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  const asData: DesiredSecret = { ...desiredSecret(), stringData: undefined, data: appliedBody().data }
  t.equal(await client.ensureSecret(asData), 'applied')
  t.strictSame(server.requests.at(-1)!.body, appliedBody())
  t.equal(server.objects.get(SECRETS, 'media', 'data-claim-restic')!.metadata.resourceVersion, first.metadata.resourceVersion)
})

t.test('ensureSecret over our own earlier apply with rotated data: updated in place, dropped keys removed', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureSecret(desiredSecret({ RESTIC_PASSWORD: 'old-password', LEFTOVER: 'x' }))
  const old = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  t.ok('LEFTOVER' in (old.data as object))
  const before = server.requests.length
  t.equal(await client.ensureSecret(desiredSecret()), 'applied')
  t.strictSame(calls(server, before), [`PATCH ${SECRET_ITEM}`])
  t.strictSame(server.requests.at(-1)!.query, APPLY_QUERY, 'still no force')
  const stored = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  t.equal(stored.metadata.uid, old.metadata.uid, 'same object, updated in place')
  t.not(stored.metadata.resourceVersion, old.metadata.resourceVersion)
  t.strictSame(stored.data, appliedBody().data, 'new password; LEFTOVER (applied before, not now) removed')
  t.strictSame(stored.metadata.labels, MANAGED)
  t.strictSame(stored.metadata.annotations, { 'smart-restore.io/pvc': 'data-claim' })
  t.match(stored.metadata.managedFields, [{ manager: 'smart-restore', operation: 'Apply' }])
  t.strictSame(secretReads(server), [], 'no Secret was read')
})

t.test('ensureSecret: a foreign Secret with other values is a conflict naming fields and managers, never values', async (t) => {
  const { server, client } = await setup(t)
  const theirs = { ...desiredSecret().stringData, RESTIC_PASSWORD: 'their-own-password' }
  const foreign = await foreignSecret(server, 'kubectl-create', theirs)
  const before = server.requests.length
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.strictSame(calls(server, before), [`PATCH ${SECRET_ITEM}`], 'one apply, no read, no retry')
  t.strictSame(server.requests.at(-1)!.query, APPLY_QUERY, 'never forced over someone else')
  t.equal(err.kind, 'conflict')
  t.equal(err.status, 409)
  t.equal(err.reason, 'Conflict')
  t.equal(err.retryable, false)
  t.equal(err.object, 'Secret media/data-claim-restic')
  t.equal(
    err.message,
    'Secret media/data-claim-restic exists with values smart-restore did not write (conflicting fields: data.RESTIC_PASSWORD; managers: kubectl-create); delete or rename it, then retry',
  )
  for (const v of [PASSWORD, b64(PASSWORD), 'their-own-password', b64('their-own-password')]) t.notMatch(err.message, v)
  t.strictSame(server.objects.get(SECRETS, 'media', 'data-claim-restic'), foreign, 'not changed at all')
  t.strictSame(secretReads(server), [], 'no Secret was read')
})

t.test('ensureSecret: a foreign Secret labelled differently, several fields and managers', async (t) => {
  const { server, client } = await setup(t)
  await foreignSecret(server, 'kubectl-create', { ...desiredSecret().stringData, RESTIC_PASSWORD: 'their-own-password' }, { 'app.kubernetes.io/managed-by': 'Helm' })
  const editor = new ClusterClient(server.kubeConfig, { requestTimeoutMs: 2000, fieldManager: 'kubectl-edit' })
  await editor.mergePatchObject('v1', 'Secret', 'media', 'data-claim-restic', { data: { AWS_SECRET_ACCESS_KEY: b64('their-secret-key') } })
  const foreign = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'conflict')
  t.equal(err.retryable, false)
  t.match(err.message, /^Secret media\/data-claim-restic exists with values smart-restore did not write \(conflicting fields: (.+); managers: (.+)\); delete or rename it, then retry$/)
  const [, fields, managers] = /conflicting fields: (.+); managers: (.+)\)/.exec(err.message)!
  t.strictSame(fields!.split(', ').sort(), ['data.AWS_SECRET_ACCESS_KEY', 'data.RESTIC_PASSWORD', 'metadata.labels.app.kubernetes.io/managed-by'])
  t.strictSame(managers!.split(', ').sort(), ['kubectl-create', 'kubectl-edit'])
  for (const v of [PASSWORD, 'their-own-password', 'their-secret-key', 'wJalrXUtnFEMI-secret-key']) {
    t.notMatch(err.message, v)
    t.notMatch(err.message, b64(v))
  }
  t.strictSame(server.objects.get(SECRETS, 'media', 'data-claim-restic'), foreign, 'not changed at all')
  t.strictSame(secretReads(server), [], 'no Secret was read')
})

t.test('ensureSecret: whatever the apiserver names in a conflict, our values never reach the message', async (t) => {
  const { server, client } = await setup(t)
  // A field manager may be any string: one that happens to hold our password is redacted too.
  await foreignSecret(server, PASSWORD, { RESTIC_PASSWORD: 'their-own-password' })
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'conflict')
  t.match(err.message, '(conflicting fields: data.RESTIC_PASSWORD; managers: [redacted])')
  t.notMatch(err.message, PASSWORD)
  t.notMatch(err.message, b64(PASSWORD))
})

t.test('ensureSecret: a foreign Secret with identical values is accepted; ownership is shared', async (t) => {
  const { server, client } = await setup(t)
  const foreign = await foreignSecret(server, 'kubectl-create', desiredSecret().stringData!, { team: 'media' })
  const before = server.requests.length
  t.equal(await client.ensureSecret(desiredSecret()), 'applied')
  t.strictSame(calls(server, before), [`PATCH ${SECRET_ITEM}`])
  t.strictSame(server.requests.at(-1)!.query, APPLY_QUERY)
  const stored = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  t.equal(stored.metadata.uid, foreign.metadata.uid)
  t.strictSame(stored.data, foreign.data, 'values as they were')
  t.strictSame(stored.metadata.labels, { team: 'media', ...MANAGED }, 'their label kept, ours added')
  t.match(stored.metadata.managedFields, [
    { manager: 'kubectl-create', operation: 'Update' },
    { manager: 'smart-restore', operation: 'Apply', fieldsV1: { 'f:data': { 'f:RESTIC_PASSWORD': {} } } },
  ])
  t.strictSame(secretReads(server), [], 'no Secret was read')
})

t.test('ensureSecret: a 409 that is not a field-manager conflict is reported as the apiserver said it', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'PATCH', path: SECRET_ITEM }, { status: 409, message: 'Operation cannot be fulfilled on secrets "data-claim-restic": the object has been modified' })
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'conflict')
  t.equal(err.message, 'apply Secret media/data-claim-restic: conflict (HTTP 409 Conflict): Operation cannot be fulfilled on secrets "data-claim-restic": the object has been modified')
})

/**
 * A real apiserver counts an Apply and an Update of one manager name as two managers
 * (kubernetes/kubernetes#107417); the fake does not, so a stub answers what the apiserver would for
 * a Secret created by a smart-restore from before server-side apply (POST, manager smart-restore).
 */
async function stubApiServer(t: Tap, answers: Array<{ status: number; body: unknown }>): Promise<{ client: ClusterClient; requests: Array<{ method: string; url: string; contentType?: string }> }> {
  const requests: Array<{ method: string; url: string; contentType?: string }> = []
  const srv = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, contentType: req.headers['content-type'] })
      const a = answers.shift() ?? { status: 500, body: { kind: 'Status', apiVersion: 'v1', status: 'Failure', message: 'stub: no answer left', code: 500 } }
      res.writeHead(a.status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(a.body))
    })
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => srv.close(() => resolve())))
  const kc = new KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  })
  return { client: new ClusterClient(kc, { requestTimeoutMs: 2000, fieldManager: 'smart-restore' }), requests }
}

const conflictStatus = (causes: Array<[manager: string, field: string]>) => ({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message: `Apply failed with ${causes.length} conflict${causes.length > 1 ? 's' : ''}: ...`,
  reason: 'Conflict',
  details: { causes: causes.map(([m, f]) => ({ type: 'FieldManagerConflict', message: `conflict with "${m}" using v1`, field: f })) },
  code: 409,
})

t.test('ensureSecret: values held only by our own pre-apply writes (Update by smart-restore) are taken over with force', async (t) => {
  const stored = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'data-claim-restic', namespace: 'media', resourceVersion: '7' }, data: appliedBody().data }
  const { client, requests } = await stubApiServer(t, [
    { status: 409, body: conflictStatus([['smart-restore', '.data.RESTIC_PASSWORD']]) },
    { status: 200, body: stored },
  ])
  t.equal(await client.ensureSecret(desiredSecret()), 'applied')
  t.strictSame(
    requests.map((r) => `${r.method} ${r.url} ${r.contentType}`),
    [`PATCH ${SECRET_ITEM}?fieldManager=smart-restore application/apply-patch+yaml`, `PATCH ${SECRET_ITEM}?fieldManager=smart-restore&force=true application/apply-patch+yaml`],
  )
})

t.test('ensureSecret: our own and another manager in one conflict → not forced, the conflict is reported', async (t) => {
  const { client, requests } = await stubApiServer(t, [
    {
      status: 409,
      body: conflictStatus([
        ['smart-restore', '.data.RESTIC_PASSWORD'],
        ['kubectl-edit', '.data.AWS_ACCESS_KEY_ID'],
      ]),
    },
  ])
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(requests.length, 1)
  t.equal(err.kind, 'conflict')
  t.equal(err.retryable, false)
  t.match(err.message, '(conflicting fields: data.RESTIC_PASSWORD, data.AWS_ACCESS_KEY_ID; managers: smart-restore, kubectl-edit)')
})

t.test('applyConflicts reads the causes of the apiserver Status', async (t) => {
  const status = {
    kind: 'Status',
    reason: 'Conflict',
    code: 409,
    message: 'Apply failed with 3 conflicts: ...',
    details: {
      causes: [
        { type: 'FieldManagerConflict', message: 'conflict with "kubectl-create" using v1', field: '.data.RESTIC_PASSWORD' },
        { type: 'FieldManagerConflict', message: 'conflict with "argocd-controller"', field: '.metadata.labels.app' },
        { type: 'FieldManagerConflict', message: 'conflict with "a \\"quoted\\" name" with subresource "status" using v1 at 2024-01-01T00:00:00Z', field: '.data.x' },
        { type: 'FieldValueInvalid', message: 'other', field: 'data' },
        { type: 'FieldManagerConflict', message: 'no manager here', field: '.data.y' },
      ],
    },
  }
  t.strictSame(applyConflicts(JSON.stringify(status)), [
    { field: 'data.RESTIC_PASSWORD', manager: 'kubectl-create' },
    { field: 'metadata.labels.app', manager: 'argocd-controller' },
    { field: 'data.x', manager: 'a "quoted" name' },
    { field: 'data.y' },
  ])
  t.strictSame(applyConflicts(status), applyConflicts(JSON.stringify(status)), 'parsed or raw')
  t.strictSame(applyConflicts('not json'), [])
  t.strictSame(applyConflicts({ kind: 'Status', reason: 'Conflict', message: 'the object has been modified' }), [])
})

t.test('the fake apiserver words an apply conflict as kube-apiserver does', async (t) => {
  const { server } = await setup(t)
  await foreignSecret(server, 'kubectl-create', { RESTIC_PASSWORD: 'their-own-password' })
  const res = await fetch(`${server.url}${SECRET_ITEM}?fieldManager=smart-restore`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/apply-patch+yaml' },
    body: JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'data-claim-restic' }, data: { RESTIC_PASSWORD: b64(PASSWORD) } }),
  })
  t.equal(res.status, 409)
  t.strictSame(await res.json(), {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'Apply failed with 1 conflict: conflict with "kubectl-create" using v1: .data.RESTIC_PASSWORD',
    reason: 'Conflict',
    details: { causes: [{ type: 'FieldManagerConflict', message: 'conflict with "kubectl-create" using v1', field: '.data.RESTIC_PASSWORD' }] },
    code: 409,
  })
})

t.test('readSecretData decodes base64 values', async (t) => {
  const { server, client } = await setup(t)
  server.objects.put(SECRETS, { metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' }, data: { RESTIC_PASSWORD: b64(PASSWORD), 'ca.crt': b64('-----BEGIN CERTIFICATE-----\n') } })
  t.strictSame(await client.readSecretData('smart-restore', 'smart-restore-restic'), { RESTIC_PASSWORD: PASSWORD, 'ca.crt': '-----BEGIN CERTIFICATE-----\n' })
  const err = await rejection(client.readSecretData('smart-restore', 'missing'))
  t.equal(err.kind, 'not-found')
  t.equal(err.status, 404)
  t.equal(err.object, 'Secret smart-restore/missing')
  t.match(err.message, 'read Secret smart-restore/missing: not-found (HTTP 404 NotFound): secrets "missing" not found')
})

// -------------------------------------------------------------------------------------------------
// ReplicationDestination

t.test('ensureReplicationDestination creates: exact request and stored object', async (t) => {
  const { server, client } = await setup(t)
  t.equal(await client.ensureReplicationDestination(desiredRd()), 'created')
  t.strictSame(calls(server), [`POST ${RD_PATH}`])
  t.strictSame(server.requests[0]!.query, { fieldManager: 'smart-restore' })
  t.strictSame(server.requests[0]!.body, desiredRd())
  const stored = server.objects.get(RDS, 'media', 'data-claim-restore')!
  t.equal(stored.kind, 'ReplicationDestination')
  t.equal(stored.metadata.generation, 1)
  t.strictSame(stored.spec, desiredRd().spec)
  t.strictSame(stored.metadata.labels, MANAGED)
  t.equal(stored.status, undefined)
})

t.test('ensureReplicationDestination again (apiserver added defaults, restore pending): unchanged, no writes', async (t) => {
  const { server, client } = await setup(t, {
    defaulters: {
      [RDS]: (o) => {
        const restic = (o.spec as { restic: Record<string, unknown> }).restic
        restic.cacheCapacity ??= '1Gi'
      },
    },
  })
  await client.ensureReplicationDestination(desiredRd())
  t.equal((server.objects.get(RDS, 'media', 'data-claim-restore')!.spec as { restic: { cacheCapacity: string } }).restic.cacheCapacity, '1Gi')
  server.objects.update(RDS, 'media', 'data-claim-restore', (o) => {
    o.status = { conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress' }] }
  })
  const before = server.requests.length
  t.equal(await client.ensureReplicationDestination(desiredRd()), 'unchanged')
  t.strictSame(calls(server, before), [`POST ${RD_PATH}`, `GET ${RD_PATH}/data-claim-restore`])
})

t.test('ensureReplicationDestination: ours and already restored → deleted (uid precondition) and created again', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureReplicationDestination(desiredRd())
  const old = server.objects.update(RDS, 'media', 'data-claim-restore', (o) => {
    o.status = { lastManualSync: 'smart-restore', latestImage: { kind: 'VolumeSnapshot', name: 'volsync-data-claim-restore-dst-20240101' } }
  })
  const before = server.requests.length
  t.equal(await client.ensureReplicationDestination(desiredRd()), 'replaced')
  t.strictSame(calls(server, before), [`POST ${RD_PATH}`, `GET ${RD_PATH}/data-claim-restore`, `DELETE ${RD_PATH}/data-claim-restore`, `POST ${RD_PATH}`])
  const del = server.requests[before + 2]!
  t.match(del.body, { preconditions: { uid: old.metadata.uid } })
  t.equal(del.query.propagationPolicy, 'Background')
  const now = server.objects.get(RDS, 'media', 'data-claim-restore')!
  t.not(now.metadata.uid, old.metadata.uid, 'a new object')
  t.equal(now.status, undefined, 'no stale image')
})

t.test('ensureReplicationDestination: ours with another spec → replaced', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureReplicationDestination(desiredRd({ capacity: '5Gi' }))
  t.equal(await client.ensureReplicationDestination(desiredRd({ capacity: '10Gi' })), 'replaced')
  t.equal((server.objects.get(RDS, 'media', 'data-claim-restore')!.spec as { restic: { capacity: string } }).restic.capacity, '10Gi')
})

t.test('ensureReplicationDestination: ours, deleted but held by a finalizer → retryable conflict', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureReplicationDestination(desiredRd())
  server.objects.update(RDS, 'media', 'data-claim-restore', (o) => {
    o.metadata.finalizers = ['volsync.backube/cleanup']
    o.status = { lastManualSync: 'smart-restore' }
  })
  const err = await rejection(client.ensureReplicationDestination(desiredRd()))
  t.equal(err.kind, 'conflict')
  t.equal(err.retryable, true)
  t.match(err.message, /ReplicationDestination media\/data-claim-restore was deleted because its restore already ran .*still being deleted, retry in a few seconds/)
  t.ok(server.objects.get(RDS, 'media', 'data-claim-restore')!.metadata.deletionTimestamp, 'marked for deletion')

  // The next attempt sees it terminating and says so without another delete.
  const before = server.requests.length
  const again = await rejection(client.ensureReplicationDestination(desiredRd()))
  t.match(again.message, /is marked for deletion; it is still being deleted/)
  t.strictSame(calls(server, before), [`POST ${RD_PATH}`, `GET ${RD_PATH}/data-claim-restore`])

  // Once the finalizer is gone, the admission goes through.
  server.objects.update(RDS, 'media', 'data-claim-restore', (o) => {
    o.metadata.finalizers = []
  })
  t.equal(server.objects.get(RDS, 'media', 'data-claim-restore'), undefined)
  t.equal(await client.ensureReplicationDestination(desiredRd()), 'created')
})

t.test('ensureReplicationDestination: replaced by someone else between read and delete → retryable conflict', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureReplicationDestination(desiredRd({ capacity: '5Gi' }))
  server.fail({ method: 'DELETE' }, { status: 409, message: 'Precondition failed: UID in precondition: a, UID in object meta: b' })
  const err = await rejection(client.ensureReplicationDestination(desiredRd()))
  t.equal(err.kind, 'conflict')
  t.equal(err.retryable, true)
  t.match(err.message, /replaced by someone else/)
})

t.test('ensureReplicationDestination: foreign objects', async (t) => {
  const foreign = (patch: (o: StoredObject) => void = () => {}) => {
    const o = desiredRd() as unknown as StoredObject
    o.metadata.labels = { team: 'media' }
    patch(o)
    return o
  }
  const desiredNoLabels = () => {
    const d = desiredRd()
    d.metadata.labels = {}
    return d
  }

  t.test('matching and not yet restored → unchanged', async (t) => {
    const { server, client } = await setup(t)
    server.objects.put(RDS, foreign())
    t.equal(await client.ensureReplicationDestination(desiredNoLabels()), 'unchanged')
  })

  t.test('other spec → conflict naming the field, nothing deleted', async (t) => {
    const { server, client } = await setup(t)
    server.objects.put(RDS, foreign((o) => ((o.spec as { restic: Record<string, unknown> }).restic.repository = 'someone-elses-repo')))
    const before = server.requests.length
    const err = await rejection(client.ensureReplicationDestination(desiredRd()))
    t.equal(err.kind, 'conflict')
    t.equal(err.retryable, false)
    t.match(err.message, 'ReplicationDestination media/data-claim-restore already exists and is not managed by smart-restore')
    t.match(err.message, 'spec.restic.repository is "someone-elses-repo", smart-restore wants "data-claim-restic"')
    t.match(err.message, /delete it/)
    t.strictSame(calls(server, before), [`POST ${RD_PATH}`, `GET ${RD_PATH}/data-claim-restore`])
  })

  t.test('already restored → conflict (it would hand the PVC a stale image)', async (t) => {
    const { server, client } = await setup(t)
    server.objects.put(RDS, foreign((o) => (o.status = { lastManualSync: 'smart-restore' })))
    const err = await rejection(client.ensureReplicationDestination(desiredNoLabels()))
    t.equal(err.kind, 'conflict')
    t.match(err.message, /its restore already ran/)
  })

  t.test('missing our labels → conflict', async (t) => {
    const { server, client } = await setup(t)
    server.objects.put(RDS, foreign())
    const err = await rejection(client.ensureReplicationDestination(desiredRd()))
    t.match(err.message, /labels app.kubernetes.io\/managed-by, smart-restore.io\/pvc missing or different/)
  })
  t.end()
})

t.test('ensureReplicationDestination: VolSync CRDs not installed → not-found', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'POST', path: RD_PATH }, { status: 404, message: 'the server could not find the requested resource' })
  const err = await rejection(client.ensureReplicationDestination(desiredRd()))
  t.equal(err.kind, 'not-found')
  t.equal(err.message, 'create ReplicationDestination media/data-claim-restore: not-found (HTTP 404 NotFound): the server could not find the requested resource')
})

t.test('assessReplicationDestination and firstDifference', async (t) => {
  t.equal(firstDifference({ a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 2, d: 3 }], x: 1 } }), undefined)
  t.equal(firstDifference({ a: { b: [1, 2] } }, { a: { b: [1] } }), 'a.b')
  t.equal(firstDifference({ a: { b: [1, { c: 2 }] } }, { a: { b: [1, { c: 3 }] } }), 'a.b[1].c')
  t.equal(firstDifference({ a: 1 }, null), '.')
  const d = desiredRd()
  const a = assessReplicationDestination({ metadata: { labels: MANAGED }, spec: { ...d.spec, trigger: { manual: 'x' } }, status: { lastManualSync: 'x' } }, d)
  t.match(a, { ours: true, completed: true, terminating: false, mismatch: 'spec.trigger.manual is "x", smart-restore wants "smart-restore"' })
  t.match(assessReplicationDestination({ spec: { restic: {} } }, d), { ours: false, completed: false, mismatch: /spec.trigger is unset/ })
})

t.test('logs say what happened and never carry secret values', async (t) => {
  const server = await startFakeApiServer()
  t.teardown(() => server.close())
  const lines: string[] = []
  const log = (level: string) => (obj: object, msg: string) => lines.push(`${level} ${msg} ${JSON.stringify(obj)}`)
  const client = new ClusterClient(server.kubeConfig, { requestTimeoutMs: 2000, fieldManager: 'smart-restore', logger: { debug: log('debug'), info: log('info'), warn: log('warn') } })
  await client.ensureSecret(desiredSecret())
  await client.ensureSecret(desiredSecret({ RESTIC_PASSWORD: 'rotated-password' }))
  server.fail({ method: 'PATCH' }, { status: 403 })
  await rejection(client.ensureSecret(desiredSecret()))
  t.match(lines, [
    /^debug kubernetes api call \{"action":"apply","object":"Secret media\/data-claim-restic","ms":\d+\}$/,
    /^info kubernetes object created \(apply\) \{"object":"Secret media\/data-claim-restic","created":true,"resourceVersion":"\d+"\}$/,
    /^debug kubernetes api call \{"action":"apply","object":"Secret media\/data-claim-restic","ms":\d+\}$/,
    /^info kubernetes object applied \{"object":"Secret media\/data-claim-restic","created":false,"resourceVersion":"\d+"\}$/,
    /^debug kubernetes api call failed \{"action":"apply","object":"Secret media\/data-claim-restic","kind":"forbidden","status":403,"ms":\d+\}$/,
  ])
  t.equal(lines.length, 5, 'no read, no retry')
  t.notMatch(lines.join('\n'), b64(PASSWORD))
  t.notMatch(lines.join('\n'), b64('rotated-password'))
  t.notMatch(lines.join('\n'), PASSWORD)
  t.notMatch(lines.join('\n'), 'rotated-password')
})

// -------------------------------------------------------------------------------------------------
// Failures

t.test('403 → forbidden with the apiserver message', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'PATCH', path: `${SECRET_PATH}/data-claim-restic` }, { status: 403 })
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'forbidden')
  t.equal(err.status, 403)
  t.equal(err.reason, 'Forbidden')
  t.equal(err.retryable, false)
  t.equal(
    err.message,
    'apply Secret media/data-claim-restic: forbidden (HTTP 403 Forbidden): secrets "data-claim-restic" is forbidden: User "system:serviceaccount:smart-restore:smart-restore" cannot patch resource "secrets" in API group "" in the namespace "media"',
  )
  t.strictSame(calls(server), [`PATCH ${SECRET_PATH}/data-claim-restic`], 'no fallback read or create')
})

t.test('500 on the Secret apply → server, retryable', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'PATCH', path: `${SECRET_PATH}/data-claim-restic` }, { status: 500, message: 'Internal error occurred: etcdserver: leader changed' })
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'server')
  t.equal(err.status, 500)
  t.equal(err.retryable, true)
  t.equal(err.message, 'apply Secret media/data-claim-restic: server (HTTP 500 InternalError): Internal error occurred: etcdserver: leader changed')
  t.equal(server.objects.get(SECRETS, 'media', 'data-claim-restic'), undefined)
})

t.test('500 → server, retryable', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'POST', path: RD_PATH }, { status: 500, message: 'Internal error occurred: etcdserver: leader changed' })
  const err = await rejection(client.ensureReplicationDestination(desiredRd()))
  t.equal(err.kind, 'server')
  t.equal(err.status, 500)
  t.equal(err.retryable, true)
  t.match(err.message, 'create ReplicationDestination media/data-claim-restore: server (HTTP 500 InternalError): Internal error occurred: etcdserver: leader changed')
})

t.test('504 Timeout from the apiserver → timeout', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'GET' }, { status: 504, message: 'Timeout: request did not complete within requested timeout - context deadline exceeded' })
  const err = await rejection(client.readSecretData('media', 'x'))
  t.equal(err.kind, 'timeout')
})

t.test('422 → invalid, and the apiserver message never carries secret values through us', async (t) => {
  const { client } = await setup(t)
  const err = await rejection(client.ensureSecret(desiredSecret({ 'bad key': PASSWORD })))
  t.equal(err.kind, 'invalid')
  t.equal(err.status, 422)
  t.match(err.message, /data\[bad key\]: Invalid value/)
  t.notMatch(err.message, PASSWORD)
  t.notMatch(err.message, b64(PASSWORD))
})

t.test('secret values echoed in an apiserver message are redacted', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'PATCH' }, { status: 400, message: `cannot decode ${PASSWORD} / ${b64(PASSWORD)}` })
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'invalid')
  t.notMatch(err.message, PASSWORD)
  t.notMatch(err.message, b64(PASSWORD))
  t.match(err.message, 'cannot decode [redacted] / [redacted]')
})

t.test('401 (bad credentials) → unauthorized', async (t) => {
  const { server } = await setup(t)
  const kc = new KubeConfig()
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: server.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'wrong' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  })
  const client = new ClusterClient(kc, { requestTimeoutMs: 2000, fieldManager: 'smart-restore' })
  const err = await rejection(client.readSecretData('media', 'x'))
  t.equal(err.kind, 'unauthorized')
  t.equal(err.status, 401)
  t.equal(err.message, 'read Secret media/x: unauthorized (HTTP 401): Unauthorized')
})

t.test('a hung apiserver → timeout within the deadline', async (t) => {
  const { server, client } = await setup(t, { requestTimeoutMs: 300 })
  server.fail({ method: 'PATCH' }, { hang: true })
  const started = performance.now()
  const err = await rejection(client.ensureSecret(desiredSecret()))
  const elapsed = performance.now() - started
  t.equal(err.kind, 'timeout')
  t.equal(err.retryable, true)
  t.equal(err.message, 'apply Secret media/data-claim-restic: timeout: the Kubernetes API did not answer within 300 ms')
  t.ok(elapsed >= 290 && elapsed < 3000, `returned after ${Math.round(elapsed)} ms (the PATCH hangs forever)`)
})

t.test('a slow apiserver (answer after the deadline) → timeout; the connection was aborted', async (t) => {
  const { server, client } = await setup(t, { requestTimeoutMs: 200 })
  server.fail({ method: 'GET' }, 1500)
  const started = performance.now()
  const err = await rejection(client.readSecretData('media', 'x'))
  t.equal(err.kind, 'timeout')
  t.ok(performance.now() - started < 700)
})

t.test('the caller’s signal cuts an operation short', async (t) => {
  const { server, client } = await setup(t, { requestTimeoutMs: 5000 })
  server.fail({ method: 'POST' }, { hang: true })
  const started = performance.now()
  const err = await rejection(client.ensureReplicationDestination(desiredRd(), { signal: AbortSignal.timeout(150) }))
  t.equal(err.kind, 'timeout')
  t.equal(err.message, "create ReplicationDestination media/data-claim-restore: timeout: the operation's deadline passed before the Kubernetes API answered")
  t.ok(performance.now() - started < 1000)
  const already = await rejection(client.readSecretData('media', 'x', { signal: AbortSignal.abort() }))
  t.equal(already.kind, 'timeout')
})

t.test('a connection reset → network', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'GET' }, { reset: true })
  const err = await rejection(client.readSecretData('media', 'x'))
  t.equal(err.kind, 'network')
  t.equal(err.retryable, true)
  t.match(err.message, /^read Secret media\/x: network error \(ECONNRESET\)/)
})

t.test('apiserver gone → network', async (t) => {
  const { server, client } = await setup(t)
  await server.close()
  const started = performance.now()
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'network')
  t.match(err.message, /^apply Secret media\/data-claim-restic: network error \(ECONNREFUSED\): request to http:\/\/127\.0\.0\.1:\d+\/api\/v1\/namespaces\/media\/secrets\/data-claim-restic\?fieldManager=smart-restore failed/)
  t.notMatch(err.message, PASSWORD)
  t.ok(performance.now() - started < 1000)
})
