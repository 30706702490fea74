/**
 * ClusterClient through the real @kubernetes/client-node over HTTP against the fake apiserver:
 * what is sent, what ends up stored, and how every failure surfaces.
 */
import t from 'tap'
import { KubeConfig } from '@kubernetes/client-node'
import { ClusterClient, assessReplicationDestination, firstDifference, type DesiredReplicationDestination, type DesiredSecret } from '../../src/kube/cluster-client.js'
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
// Secret

t.test('ensureSecret creates the Secret: exact request and stored object', async (t) => {
  const { server, client } = await setup(t)
  t.equal(await client.ensureSecret(desiredSecret()), 'created')
  t.strictSame(calls(server), [`POST ${SECRET_PATH}`])
  const post = server.requests[0]!
  t.strictSame(post.query, { fieldManager: 'smart-restore' })
  t.equal(post.contentType, 'application/json')
  t.strictSame(post.body, desiredSecret())

  const stored = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  t.ok(stored.metadata.uid && stored.metadata.resourceVersion && stored.metadata.creationTimestamp)
  t.strictSame(stored.metadata.labels, MANAGED)
  t.equal(stored.type, 'Opaque')
  t.equal(stored.stringData, undefined, 'stringData is folded into data by the apiserver')
  t.strictSame(stored.data, {
    RESTIC_REPOSITORY: b64('s3:http://minio.example:9000/backups/media/data-claim'),
    RESTIC_PASSWORD: b64(PASSWORD),
    AWS_ACCESS_KEY_ID: b64('AKIAEXAMPLE'),
    AWS_SECRET_ACCESS_KEY: b64('wJalrXUtnFEMI-secret-key'),
  })
  t.match(stored.metadata.managedFields, [{ manager: 'smart-restore', operation: 'Update' }])
})

t.test('ensureSecret again with the same data: unchanged, one read, no write', async (t) => {
  const { server, client } = await setup(t)
  await client.ensureSecret(desiredSecret())
  const rv = server.objects.get(SECRETS, 'media', 'data-claim-restic')!.metadata.resourceVersion
  const before = server.requests.length
  t.equal(await client.ensureSecret(desiredSecret()), 'unchanged')
  t.strictSame(calls(server, before), [`POST ${SECRET_PATH}`, `GET ${SECRET_PATH}/data-claim-restic`])
  t.equal(server.objects.get(SECRETS, 'media', 'data-claim-restic')!.metadata.resourceVersion, rv)
})

t.test('ensureSecret with data given as base64 `data` compares by bytes', async (t) => {
  const { client } = await setup(t)
  await client.ensureSecret(desiredSecret())
  const asData: DesiredSecret = { ...desiredSecret(), stringData: undefined, data: Object.fromEntries(Object.entries(desiredSecret().stringData!).map(([k, v]) => [k, b64(v)])) }
  t.equal(await client.ensureSecret(asData), 'unchanged')
})

t.test('ensureSecret on our Secret with rotated data: replaced with resourceVersion, stale keys gone', async (t) => {
  const { server, client } = await setup(t)
  server.objects.put(SECRETS, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'data-claim-restic', namespace: 'media', labels: { ...MANAGED } }, stringData: { ...desiredSecret().stringData, RESTIC_PASSWORD: 'old-password', LEFTOVER: 'x' } })
  const old = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  const before = server.requests.length
  t.equal(await client.ensureSecret(desiredSecret()), 'updated')
  t.strictSame(calls(server, before), [`POST ${SECRET_PATH}`, `GET ${SECRET_PATH}/data-claim-restic`, `PUT ${SECRET_PATH}/data-claim-restic`])
  const put = server.requests.at(-1)!
  t.equal((put.body as StoredObject).metadata.resourceVersion, old.metadata.resourceVersion, 'optimistic concurrency on the version read')
  t.equal(put.query.fieldManager, 'smart-restore')
  const stored = server.objects.get(SECRETS, 'media', 'data-claim-restic')!
  t.equal(stored.metadata.uid, old.metadata.uid, 'same object, updated in place')
  t.equal((stored.data as Record<string, string>).RESTIC_PASSWORD, b64(PASSWORD))
  t.notOk('LEFTOVER' in (stored.data as object), 'keys smart-restore no longer wants are removed')
  t.strictSame(stored.metadata.annotations, { 'smart-restore.io/pvc': 'data-claim' })
})

t.test('ensureSecret: our Secret changed concurrently between read and update → retryable conflict', async (t) => {
  const { server, client } = await setup(t)
  server.objects.put(SECRETS, { metadata: { name: 'data-claim-restic', namespace: 'media', labels: { ...MANAGED } }, stringData: { RESTIC_PASSWORD: 'old-password' } })
  // Someone writes right after our GET: simulated by answering the PUT with the apiserver's 409.
  server.fail({ method: 'PUT' }, { status: 409, reason: 'Conflict', message: 'Operation cannot be fulfilled on secrets "data-claim-restic": the object has been modified' })
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'conflict')
  t.equal(err.retryable, true)
  t.match(err.message, /changed while smart-restore was updating it; retry/)
})

t.test('ensureSecret: a foreign Secret with the same data is accepted as is', async (t) => {
  const { server, client } = await setup(t)
  server.objects.put(SECRETS, { metadata: { name: 'data-claim-restic', namespace: 'media', labels: { team: 'media' } }, stringData: desiredSecret().stringData })
  const before = server.requests.length
  t.equal(await client.ensureSecret(desiredSecret()), 'unchanged')
  t.strictSame(calls(server, before), [`POST ${SECRET_PATH}`, `GET ${SECRET_PATH}/data-claim-restic`])
  t.strictSame(server.objects.get(SECRETS, 'media', 'data-claim-restic')!.metadata.labels, { team: 'media' }, 'not relabelled')
})

t.test('ensureSecret: a foreign Secret with other data is a conflict naming keys, never values', async (t) => {
  const { server, client } = await setup(t)
  server.objects.put(SECRETS, { metadata: { name: 'data-claim-restic', namespace: 'media' }, stringData: { ...desiredSecret().stringData, RESTIC_PASSWORD: 'their-own-password' } })
  const before = server.requests.length
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'conflict')
  t.equal(err.retryable, false)
  t.equal(err.object, 'Secret media/data-claim-restic')
  t.match(err.message, /Secret media\/data-claim-restic already exists, is not managed by smart-restore/)
  t.match(err.message, /keys: RESTIC_PASSWORD/)
  t.match(err.message, /delete that Secret, or rename it/)
  t.notMatch(err.message, PASSWORD)
  t.notMatch(err.message, 'their-own-password')
  t.strictSame(calls(server, before), [`POST ${SECRET_PATH}`, `GET ${SECRET_PATH}/data-claim-restic`], 'nothing written')
})

t.test('ensureSecret: the Secret vanishes between create (409) and read → created on the second round', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'POST', path: SECRET_PATH }, { status: 409, reason: 'AlreadyExists', message: 'secrets "data-claim-restic" already exists' })
  t.equal(await client.ensureSecret(desiredSecret()), 'created')
  t.strictSame(calls(server), [`POST ${SECRET_PATH}`, `GET ${SECRET_PATH}/data-claim-restic`, `POST ${SECRET_PATH}`])
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
  server.fail({ method: 'POST' }, { status: 403 })
  await rejection(client.ensureSecret(desiredSecret()))
  t.match(lines, [
    /^debug kubernetes api call \{"action":"create","object":"Secret media\/data-claim-restic","ms":\d+\}$/,
    /^info kubernetes object created \{"object":"Secret media\/data-claim-restic"\}$/,
    /^debug kubernetes api call failed .*"kind":"conflict","status":409/,
    /^debug kubernetes api call \{"action":"read"/,
    /^debug kubernetes api call \{"action":"update"/,
    /^info kubernetes object updated \{"object":"Secret media\/data-claim-restic","keys":\["RESTIC_PASSWORD"\]\}$/,
    /^debug kubernetes api call failed .*"kind":"forbidden","status":403/,
  ])
  t.notMatch(lines.join('\n'), PASSWORD)
  t.notMatch(lines.join('\n'), 'rotated-password')
})

// -------------------------------------------------------------------------------------------------
// Failures

t.test('403 → forbidden with the apiserver message', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'POST', path: SECRET_PATH }, { status: 403 })
  const err = await rejection(client.ensureSecret(desiredSecret()))
  t.equal(err.kind, 'forbidden')
  t.equal(err.status, 403)
  t.equal(err.reason, 'Forbidden')
  t.equal(err.retryable, false)
  t.equal(
    err.message,
    'create Secret media/data-claim-restic: forbidden (HTTP 403 Forbidden): secrets is forbidden: User "system:serviceaccount:smart-restore:smart-restore" cannot create resource "secrets" in API group "" in the namespace "media"',
  )
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
})

t.test('secret values echoed in an apiserver message are redacted', async (t) => {
  const { server, client } = await setup(t)
  server.fail({ method: 'POST' }, { status: 400, message: `cannot decode ${PASSWORD} / ${b64(PASSWORD)}` })
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
  server.fail({ method: 'POST' }, { hang: true })
  const started = performance.now()
  const err = await rejection(client.ensureSecret(desiredSecret()))
  const elapsed = performance.now() - started
  t.equal(err.kind, 'timeout')
  t.equal(err.retryable, true)
  t.equal(err.message, 'create Secret media/data-claim-restic: timeout: the Kubernetes API did not answer within 300 ms')
  t.ok(elapsed >= 290 && elapsed < 800, `returned after ${Math.round(elapsed)} ms`)
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
  t.match(err.message, /^create Secret media\/data-claim-restic: network error \(ECONNREFUSED\): request to http:\/\/127\.0\.0\.1:\d+\/api\/v1\/namespaces\/media\/secrets\?fieldManager=smart-restore failed/)
  t.notMatch(err.message, PASSWORD)
  t.ok(performance.now() - started < 1000)
})
