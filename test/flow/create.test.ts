/**
 * The whole CREATE path with real parts: the real apiserver body over real HTTPS to the service,
 * S3 through the AWS SDK to a real s3rver, and the Kubernetes writes through the real
 * @kubernetes/client-node to a loopback API server that follows the REST conventions.
 */
import t from 'tap'
import { request as httpsRequest } from 'node:https'
import fastJsonPatch from 'fast-json-patch'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { ClusterClient } from '../../src/kube/cluster-client.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import { seed, startS3rver, storeConfig } from '../helpers/storage-servers.js'

const PASSWORD = 'restic-password-never-logged-7d1f'
const MOVER_SECRET = 'mover-secret-key-never-logged-93ab'

const s3 = await startS3rver()
t.teardown(() => s3.close())
await seed(s3.endpoint, ['media/data-claim/config', 'media/data-claim/keys/k1', `media/data-claim/snapshots/${'ab'.repeat(32)}`, 'media/empty/config'])

const api = await startFakeApiServer()

installRestorePrerequisites(api, { snapshotClasses: ['longhorn-snap'] })
t.teardown(() => api.close())
const SECRETS = '/api/v1/secrets'
const RDS = '/apis/volsync.backube/v1alpha1/replicationdestinations'
api.objects.put(SECRETS, {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
  data: {
    RESTIC_PASSWORD: Buffer.from(PASSWORD).toString('base64'),
    AWS_ACCESS_KEY_ID: Buffer.from('mover-key').toString('base64'),
    AWS_SECRET_ACCESS_KEY: Buffer.from(MOVER_SECRET).toString('base64'),
  },
})

const log = captureLogger('debug')
const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
  store: storeConfig(s3.endpoint, { probe: { deadlineMs: 1500, cacheTtlMs: 0 } }),
  restore: { ...structuredClone(defaultConfig.restore), volumeSnapshotClassName: 'longhorn-snap' },
  kube: { mode: 'cluster', requestTimeoutMs: 1000 },
})
const cluster = new ClusterClient(api.kubeConfig, { requestTimeoutMs: 1000, fieldManager: 'smart-restore', logger: log.logger })
const service: ServiceHandle = await startService(config, { logger: log.logger, cluster, inFlight: null })
t.teardown(() => service.close())

function send(body: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${service.url}/mutate?timeout=10s`, { method: 'POST', ca: service.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text).response) : reject(new Error(`${res.statusCode}: ${text}`))))
    })
    req.on('error', reject)
    req.end(typeof body === 'string' ? body : JSON.stringify(body))
  })
}

function review(file = 'create.mutating.json', mutate: (r: any) => void = () => {}) {
  const d = fixtureReview(file)
  mutate(d.request)
  return d
}

const writes = () => api.requests.filter((r) => r.method !== 'GET').length
const decode = (b64: string) => Buffer.from(b64, 'base64').toString()

t.test('a snapshot exists: Secret and ReplicationDestination created, PVC patched', async (t) => {
  const body = review()
  const res = await send(body)
  t.equal(res.allowed, true)
  t.equal(res.uid, body.request.uid)
  const patched = fastJsonPatch.applyPatch(body.request.object, JSON.parse(decode(res.patch)), true, false).newDocument as any
  t.same(patched.spec.dataSourceRef, { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'data-claim-restore' })
  t.same(res.warnings, ['smart-restore: restoring from s3://backups/media/data-claim', 'smart-restore: which snapshot VolSync restores is not checked (probe.mode=list)'])

  const secret = api.objects.get(SECRETS, 'media', 'data-claim-restic') as any
  t.ok(secret, 'the per-PVC repository Secret exists')
  t.same(Object.fromEntries(Object.entries(secret.data).map(([k, v]) => [k, decode(v as string)])), {
    RESTIC_PASSWORD: PASSWORD,
    AWS_ACCESS_KEY_ID: 'mover-key',
    AWS_SECRET_ACCESS_KEY: MOVER_SECRET,
    RESTIC_REPOSITORY: `s3:${s3.endpoint}/backups/media/data-claim`,
  })
  t.same(secret.metadata.labels, { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': 'data-claim' })

  const rd = api.objects.get(RDS, 'media', 'data-claim-restore') as any
  t.ok(rd, 'the ReplicationDestination exists')
  t.same(rd.spec, {
    trigger: { manual: 'smart-restore' },
    restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot', capacity: '10Gi', accessModes: ['ReadWriteOnce'], storageClassName: 'longhorn', volumeSnapshotClassName: 'longhorn-snap' },
  })
  t.equal(rd.metadata.annotations['smart-restore.io/restore-source'], 's3://backups/media/data-claim')
  t.same(secret.metadata.ownerReferences, [{ apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', name: 'data-claim-restore', uid: rd.metadata.uid, controller: false, blockOwnerDeletion: false }], 'the Secret is owned by the RD: an orphaned RD takes it along')

  const writes = api.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path}`)
  t.same(writes, ['POST /apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations', 'PATCH /api/v1/namespaces/media/secrets/data-claim-restic'], 'the RD first, then its Secret')
  t.same(api.requests.filter((r) => r.method === 'GET').map((r) => r.path), ['/api/v1/namespaces/smart-restore/secrets/smart-restore-restic'], 'the only Secret read is the source Secret')
  const line = log.lines().find((l) => l.msg === 'admission' && l.uid === body.request.uid)
  t.match(line, { decision: 'restore', objects: ['ReplicationDestination media/data-claim-restore (created)', 'Secret media/data-claim-restic (created)'] })
})

t.test('the same CREATE again (retry, reinvocation): same answer, nothing new', async (t) => {
  const before = { secret: api.objects.get(SECRETS, 'media', 'data-claim-restic'), rd: api.objects.get(RDS, 'media', 'data-claim-restore') }
  const res = await send(review('create-server-side-apply.mutating.json'))
  t.equal(res.allowed, true)
  t.match(decode(res.patch), /data-claim-restore/)
  t.same(api.objects.get(SECRETS, 'media', 'data-claim-restic'), before.secret, 'Secret untouched')
  t.same(api.objects.get(RDS, 'media', 'data-claim-restore'), before.rd, 'RD untouched')
  t.equal(api.objects.list(RDS, 'media').length, 1, 'still exactly one RD')
})

t.test('dry run: same decision, zero writes', async (t) => {
  const writesBefore = writes()
  const res = await send(review('create-dryrun.mutating.json', (r) => ((r.name = 'other'), (r.object.metadata.name = 'other'))))
  t.equal(res.allowed, true)
  t.equal(writes(), writesBefore, 'no write reached the API')
  t.equal(api.objects.get(RDS, 'media', 'other-restore'), undefined)
})

t.test('no snapshot (repository with only config, or nothing): fresh, zero writes', async (t) => {
  const writesBefore = writes()
  for (const name of ['empty', 'never-backed-up']) {
    const body = review('create.mutating.json', (r) => ((r.name = name), (r.object.metadata.name = name)))
    const res = await send(body)
    t.equal(res.allowed, true, name)
    const patched = fastJsonPatch.applyPatch(body.request.object, JSON.parse(decode(res.patch)), true, false).newDocument as any
    t.equal(patched.metadata.annotations['smart-restore.io/decision'], 'fresh', name)
    t.notOk(patched.spec.dataSourceRef, name)
  }
  t.equal(writes(), writesBefore)
})

t.test('a foreign ReplicationDestination in the way: denied, naming it', async (t) => {
  await seed(s3.endpoint, [`media/photos/snapshots/${'cd'.repeat(32)}`])
  api.objects.put(RDS, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'photos-restore', namespace: 'media' }, spec: { trigger: { manual: 'x' }, restic: { repository: 'someone-else', copyMethod: 'Direct' } } })
  const res = await send(review('create.mutating.json', (r) => ((r.name = 'photos'), (r.object.metadata.name = 'photos'))))
  t.equal(res.allowed, false)
  t.equal(res.status.code, 409)
  t.match(res.status.message, /ReplicationDestination media\/photos-restore/)
  t.match(res.status.message, /not managed by smart-restore|not created by smart-restore|exists/)
})

t.test('API failures deny with the API\'s reason; a retry after recovery converges', async (t) => {
  await seed(s3.endpoint, [`media/music/snapshots/${'ef'.repeat(32)}`])
  const body = review('create.mutating.json', (r) => ((r.name = 'music'), (r.object.metadata.name = 'music')))
  api.fail({ method: 'POST', path: '/apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations', times: 1 }, { status: 403, reason: 'Forbidden', message: 'replicationdestinations.volsync.backube is forbidden: User "system:serviceaccount:smart-restore:smart-restore" cannot create resource' })
  const forbidden = await send(body)
  t.equal(forbidden.allowed, false)
  t.equal(forbidden.status.code, 403)
  t.match(forbidden.status.message, /could not set up its restore: .*forbidden/)

  api.fail({ method: 'POST', path: '/apis/volsync.backube/v1alpha1/namespaces/media/replicationdestinations', times: 1 }, { status: 500, reason: 'InternalError', message: 'etcdserver: request timed out' })
  const broken = await send(body)
  t.equal(broken.allowed, false)
  t.equal(broken.status.code, 503)
  t.match(broken.status.message, /etcdserver: request timed out.*retrying is safe/)

  const ok = await send(body)
  t.equal(ok.allowed, true, 'the retry goes through')
  t.equal(api.objects.list(SECRETS, 'media').filter((s: any) => s.metadata.name.startsWith('music')).length, 1, 'exactly one Secret')
  t.equal(api.objects.list(RDS, 'media').filter((s: any) => s.metadata.name.startsWith('music')).length, 1, 'exactly one RD')
})

t.test('the Kubernetes API hangs: denied within the budget', async (t) => {
  await seed(s3.endpoint, [`media/slow/snapshots/${'12'.repeat(32)}`])
  api.fail({ method: 'GET', path: '/api/v1/namespaces/smart-restore/secrets/smart-restore-restic', times: 1 }, { hang: true })
  const started = Date.now()
  const res = await send(review('create.mutating.json', (r) => ((r.name = 'slow'), (r.object.metadata.name = 'slow'))))
  t.equal(res.allowed, false)
  t.match(res.status.message, /could not read its source Secret smart-restore\/smart-restore-restic/)
  t.ok(Date.now() - started < 1000 + 1500 + 1000, 'answered within probe + request deadlines')
})

t.test('a missing source Secret: denied, saying which', async (t) => {
  const saved = api.objects.get(SECRETS, 'smart-restore', 'smart-restore-restic')!
  api.objects.delete(SECRETS, 'smart-restore', 'smart-restore-restic')
  t.teardown(() => api.objects.put(SECRETS, saved))
  const res = await send(review('create.mutating.json', (r) => ((r.name = 'music2'), (r.object.metadata.name = 'music2'), (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'music'))))
  t.equal(res.allowed, false)
  t.match(res.status.message, /source Secret smart-restore\/smart-restore-restic/)
  t.match(res.status.message, /not.?found/i)
})

t.test('restore-from another PVC: its own Secret pointing at the other repository', async (t) => {
  const res = await send(review('create.mutating.json', (r) => ((r.name = 'data-claim-copy'), (r.object.metadata.name = 'data-claim-copy'), (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'data-claim'))))
  t.equal(res.allowed, true)
  const secrets = api.objects.list(SECRETS, 'media').filter((s: any) => s.metadata.name.startsWith('data-claim-copy-restic-from-'))
  t.equal(secrets.length, 1)
  t.equal(decode((secrets[0] as any).data.RESTIC_REPOSITORY), `s3:${s3.endpoint}/backups/media/data-claim`)
  t.equal(api.objects.get(SECRETS, 'media', 'data-claim-copy-restic'), undefined, 'the PVC\'s own repository Secret is not created for a foreign restore')
})

t.test('S3 stops answering: denied, retryable, nothing written', async (t) => {
  const writesBefore = writes()
  await s3.close()
  const res = await send(review('create.mutating.json', (r) => ((r.name = 'after-outage'), (r.object.metadata.name = 'after-outage'))))
  t.equal(res.allowed, false)
  t.equal(res.status.code, 503)
  t.match(res.status.message, /could not check the backup store for media\/after-outage at s3:\/\/backups\/media\/after-outage/)
  t.equal(writes(), writesBefore)
})

t.test('no secret value in any log line', async (t) => {
  const text = log.text()
  t.ok(text.length > 0)
  for (const secret of [PASSWORD, MOVER_SECRET, Buffer.from(PASSWORD).toString('base64'), Buffer.from(MOVER_SECRET).toString('base64')]) {
    t.notOk(text.includes(secret), `log does not contain ${secret.slice(0, 6)}…`)
  }
})
