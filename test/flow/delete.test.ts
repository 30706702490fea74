/**
 * The deletion guard end to end with real parts: apiserver DELETE bodies over HTTPS to the
 * service, whose watched caches follow a loopback API server through the real client-node. The
 * verdict changes as objects change, and a DELETE decision makes no API request.
 */
import t from 'tap'
import { request as httpsRequest } from 'node:https'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import { seed, startS3rver, storeConfig } from '../helpers/storage-servers.js'

const RS = '/apis/volsync.backube/v1alpha1/replicationsources'
const NAMESPACES = '/api/v1/namespaces'

const s3 = await startS3rver()
t.teardown(() => s3.close())
await seed(s3.endpoint, [`media/data-claim/snapshots/${'ab'.repeat(32)}`])

const api = await startFakeApiServer()
// Restores here must be populatable (the restore preflight).
installRestorePrerequisites(api)
t.teardown(() => api.close())
api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'media' }, status: { phase: 'Active' } })
api.objects.put('/api/v1/secrets', { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' }, data: { RESTIC_PASSWORD: Buffer.from('pw').toString('base64') } })

const syncing = {
  conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'Synchronization in-progress', lastTransitionTime: '2026-11-22T04:40:00Z' }],
  lastSyncStartTime: '2026-11-22T04:40:00Z',
}
const idle = {
  conditions: [{ type: 'Synchronizing', status: 'False', reason: 'WaitingForSchedule', message: 'Waiting for next scheduled synchronization', lastTransitionTime: '2026-11-22T04:45:00Z' }],
  lastSyncTime: '2026-11-22T04:45:00Z',
  nextSyncTime: '2026-11-22T05:00:00Z',
}
api.objects.put(RS, {
  apiVersion: 'volsync.backube/v1alpha1',
  kind: 'ReplicationSource',
  metadata: { name: 'data-claim-backup', namespace: 'media' },
  spec: { sourcePVC: 'data-claim', trigger: { schedule: '0 * * * *' }, restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot' } },
  status: syncing,
})

const log = captureLogger('info')
const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
  store: storeConfig(s3.endpoint, { probe: { deadlineMs: 1500, cacheTtlMs: 10_000 } }),
  kube: { mode: 'cluster', requestTimeoutMs: 1000 },
})
const service: ServiceHandle = await startService(config, { logger: log.logger, kubeConfig: api.kubeConfig, watch: { rediscoverMs: 500 } })
t.teardown(() => service.close())

function post(path: string, body: unknown): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${service.url}${path}`, { method: path.startsWith('/readyz') ? 'GET' : 'POST', ca: service.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : undefined }))
    })
    req.on('error', reject)
    req.end(body === undefined ? undefined : JSON.stringify(body))
  })
}
/** Requests a DELETE decision could have caused: not discovery (periodic), not the watch streams. */
const decisionRequests = () => api.requests.filter((r: any) => r.query?.watch !== 'true' && r.query?.watch !== '1' && !/^\/apis?(\/[^/]+(\/[^/]+)?)?$/.test(r.path)).length
const validate = async (body: unknown) => (await post('/validate?timeout=5s', body)).json.response
const readyz = async () => (await post('/readyz', undefined)).status

async function eventually(what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}

await eventually('readiness after the caches synced', async () => (await readyz()) === 200)

t.test('a syncing ReplicationSource blocks the delete, naming it; answers make no API request', async (t) => {
  const before = decisionRequests()
  const res = await validate(fixtureReview('delete.validating.json'))
  t.equal(res.allowed, false)
  t.equal(res.status.code, 409)
  t.match(res.status.message, /PVC media\/data-claim cannot be deleted while a backup or restore of it is in flight: VolSync ReplicationSource media\/data-claim-backup \(.*SyncInProgress.*since 2026-11-22T04:40:00Z\)/)
  t.notOk(res.patch, 'never a patch on DELETE')
  for (let i = 0; i < 200; i++) await validate(fixtureReview('delete.validating.json'))
  t.equal(decisionRequests(), before, '201 DELETE decisions, 0 API requests (discovery and watch streams aside)')
  const dry = await validate(fixtureReview('delete-dryrun.validating.json'))
  t.equal(dry.allowed, false, 'a dry-run delete gets the same answer')
  const relabelled = await validate(fixtureReview('delete-after-relabel.validating.json'))
  t.equal(relabelled.allowed, false, 'a PVC whose tier label changed is still guarded')
  const unlabelled = fixtureReview('delete.validating.json')
  delete unlabelled.request.oldObject.metadata.labels.backup
  t.equal((await validate(unlabelled)).allowed, false, 'so is one whose label was removed: the guard follows the objects, not the label')
})

t.test('when the sync finishes the delete goes through', async (t) => {
  api.objects.update(RS, 'media', 'data-claim-backup', (o: any) => (o.status = idle))
  await eventually('the verdict to follow the watch', async () => (await validate(fixtureReview('delete.validating.json'))).allowed === true)
  const res = await validate(fixtureReview('delete.validating.json'))
  t.same(res, { uid: '9030ba12-5399-4f99-923c-d2d1c581ffc9', allowed: true })
  api.objects.update(RS, 'media', 'data-claim-backup', (o: any) => (o.status = syncing))
  await eventually('the verdict to follow again', async () => (await validate(fixtureReview('delete.validating.json'))).allowed === false)
  api.objects.delete(RS, 'media', 'data-claim-backup')
  await eventually('a deleted object to stop blocking', async () => (await validate(fixtureReview('delete.validating.json'))).allowed === true)
  t.pass('created, updated and deleted objects all change the verdict')
})

t.test('a PVC still being populated cannot be deleted', async (t) => {
  const res = await validate(fixtureReview('delete-with-datasourceref.validating.json'))
  t.equal(res.allowed, false)
  t.match(res.status.message, /media\/config .*ReplicationDestination config-restore/)
})

t.test('the override annotation lets it through, audited', async (t) => {
  const body = fixtureReview('delete-with-datasourceref.validating.json')
  body.request.oldObject.metadata.annotations = { 'smart-restore.io/allow-delete': 'restore not wanted anymore' }
  const res = await validate(body)
  t.equal(res.allowed, true)
  t.same(res.auditAnnotations, { 'allow-delete-reason': 'restore not wanted anymore' })
  t.match(log.lines().find((l) => l.msg === 'deletion guard overridden'), { reason: /restore not wanted anymore/ })
})

t.test('namespace deletion waits for the operation (default)', async (t) => {
  api.objects.put(RS, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationSource', metadata: { name: 'data-claim-backup', namespace: 'media' }, spec: { sourcePVC: 'data-claim' }, status: syncing })
  api.objects.update(NAMESPACES, undefined, 'media', (o: any) => {
    o.metadata.deletionTimestamp = '2026-11-22T05:00:00Z'
    o.status = { phase: 'Terminating' }
  })
  await eventually('the namespace to be seen terminating', async () => {
    const m = (await validate(fixtureReview('delete.validating.json'))).status?.message ?? ''
    return /being deleted/.test(m)
  })
  const res = await validate(fixtureReview('delete.validating.json'))
  t.equal(res.allowed, false)
  t.match(res.status.message, /Namespace media is being deleted; it waits until this ends/)
})

t.test('CREATE cross-check: a backup exists but the mutating webhook was skipped', async (t) => {
  const requestsBefore = s3.requests()
  const mutated = await post('/mutate?timeout=10s', fixtureReview('create.mutating.json'))
  t.equal(mutated.json.response.allowed, true)
  t.equal(s3.requests() - requestsBefore, 1, 'the mutating call probes S3 once')
  const restoredBody = fixtureReview('create.validating.json')
  restoredBody.request.object.spec.dataSourceRef = { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'data-claim-restore' }
  t.equal((await validate(restoredBody)).allowed, true, 'a PVC the mutating webhook set up passes')
  const skipped = await validate(fixtureReview('create.validating.json'))
  t.equal(skipped.allowed, false, 'a labelled PVC without its restore is refused while a backup exists')
  t.equal(skipped.status.code, 409)
  t.match(skipped.status.message, /a backup of media\/data-claim exists at s3:\/\/backups\/media\/data-claim, but the restore was not set up/)
  t.equal(s3.requests() - requestsBefore, 1, 'the cross-check reuses the probe answer: no second S3 request')
  const fresh = fixtureReview('create.validating.json')
  fresh.request.object.metadata.name = 'cache'
  fresh.request.name = 'cache'
  t.equal((await validate(fresh)).allowed, true, 'no backup: allowed')
})

t.test('before the caches sync: not ready, and a DELETE is denied as retryable', async (t) => {
  const api2 = await startFakeApiServer()
  t.teardown(() => api2.close())
  api2.fail({ method: 'GET', path: '/apis/volsync.backube/v1alpha1/replicationsources' }, { hang: true })
  const svc = await startService(config, { logger: captureLogger('error').logger, kubeConfig: api2.kubeConfig, watch: { rediscoverMs: 500, listTimeoutMs: 60_000 } })
  t.teardown(() => svc.close())
  const get = (path: string, body?: unknown) =>
    new Promise<{ status: number; json: any }>((resolve, reject) => {
      const req = httpsRequest(`${svc.url}${path}`, { method: body ? 'POST' : 'GET', ca: svc.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
        let text = ''
        res.on('data', (c) => (text += c))
        res.on('end', () => resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : undefined }))
      })
      req.on('error', reject)
      req.end(body ? JSON.stringify(body) : undefined)
    })
  const ready = await get('/readyz')
  t.equal(ready.status, 503)
  t.match(ready.json.reason, /watched caches not synced/)
  const res = (await get('/validate', fixtureReview('delete.validating.json'))).json.response
  t.equal(res.allowed, false)
  t.equal(res.status.code, 503)
  t.match(res.status.message, /still syncing.*Retrying in a few seconds is safe/)
})
