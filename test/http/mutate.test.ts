/**
 * POST /mutate over HTTP with the bodies a real kube-apiserver v1.32 sent, against a real local
 * backup store on disk, in standalone mode (no Kubernetes writes; see test/flow for those).
 */
import t from 'tap'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fastJsonPatch from 'fast-json-patch'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { buildServer } from '../../src/server.js'
import { startService } from '../../src/service.js'
import { createBackupStore } from '../../src/storage/index.js'
import type { BackupStore } from '../../src/storage/types.js'
import { captureLogger } from '../helpers/capture-log.js'
import { fixtureBody, fixtureReview } from '../helpers/fixtures.js'

const backups = mkdtempSync(join(tmpdir(), 'sr-backups-'))
function seedSnapshot(key: string): void {
  mkdirSync(join(backups, key, 'snapshots'), { recursive: true })
  writeFileSync(join(backups, key, 'config'), 'restic config')
  writeFileSync(join(backups, key, 'snapshots', 'a'.repeat(64)), '{}')
}

function configWith(overrides: Partial<Config> = {}): Config {
  const base = structuredClone(defaultConfig)
  base.store.local.directory = backups
  base.store.probe.cacheTtlMs = 0
  // list mode: the store holds stand-in snapshot files; real restic repositories: mutate-restic.test.ts.
  base.store.probe.mode = 'list'
  return validateConfig({ ...base, ...overrides })
}

function appWith(opts: { store?: BackupStore; config?: Config } = {}) {
  const config = opts.config ?? configWith()
  const log = captureLogger()
  const store = opts.store ?? createBackupStore(config.store)
  const app = buildServer({ deps: { config, store, cluster: null, inFlight: null, logger: log.logger }, logger: log.logger, bodyLimitBytes: config.server.bodyLimitBytes })
  t.teardown(() => app.close())
  return { app, log }
}

async function post(app: ReturnType<typeof appWith>['app'], body: string | undefined, contentType: string | undefined = 'application/json') {
  const res = await app.inject({ method: 'POST', url: '/mutate?timeout=10s', payload: body, headers: contentType ? { 'content-type': contentType } : {} })
  return { status: res.statusCode, json: res.body ? JSON.parse(res.body) : undefined }
}

function decodePatch(response: any): any[] {
  return response.patch ? JSON.parse(Buffer.from(response.patch, 'base64').toString()) : []
}

t.test('no backup: the real CREATE is allowed, annotated fresh, and logged once', async (t) => {
  const { app, log } = appWith()
  const body = fixtureBody('create.mutating.json')
  const { status, json } = await post(app, body)
  t.equal(status, 200)
  t.equal(json.apiVersion, 'admission.k8s.io/v1')
  t.equal(json.kind, 'AdmissionReview')
  t.equal(json.response.uid, '76e5961c-06ad-4ad2-a0ec-5ba8573f0c8b', 'echoes the uid')
  t.equal(json.response.allowed, true)
  t.equal(json.response.patchType, 'JSONPatch')
  const patched = fastJsonPatch.applyPatch(JSON.parse(body).request.object, decodePatch(json.response), true, false).newDocument
  t.equal(patched.metadata.annotations['smart-restore.io/decision'], 'fresh')
  t.notOk(patched.spec.dataSourceRef)
  t.match(json.response.warnings, [/no backup at file:\/\/.*media\/data-claim; starting empty/])
  const admissions = log.lines().filter((l) => l.msg === 'admission')
  t.equal(admissions.length, 1, 'one log line per admission')
  t.match(admissions[0], { uid: '76e5961c-06ad-4ad2-a0ec-5ba8573f0c8b', namespace: 'media', name: 'data-claim', operation: 'CREATE', decision: 'fresh', webhook: 'mutate' })
  t.type(admissions[0]!.durationMs, 'number')
})

t.test('a snapshot exists: dataSourceRef patch; standalone mode says nothing was created', async (t) => {
  seedSnapshot('media/data-claim')
  t.teardown(() => rmSync(join(backups, 'media'), { recursive: true, force: true }))
  const { app, log } = appWith()
  for (const file of ['create.mutating.json', 'create-server-side-apply.mutating.json']) {
    const body = fixtureBody(file)
    const { json } = await post(app, body)
    t.equal(json.response.allowed, true, file)
    const patched = fastJsonPatch.applyPatch(JSON.parse(body).request.object, decodePatch(json.response), true, false).newDocument
    t.same(patched.spec.dataSourceRef, { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'data-claim-restore' }, file)
    t.equal(patched.metadata.annotations['smart-restore.io/decision'], 'restore')
    t.match(json.response.warnings, [/restoring from file:\/\//, /which snapshot VolSync restores is not checked \(probe.mode=list\)/, /standalone mode .* not created/])
    t.same(json.response.auditAnnotations.decision, 'restore')
  }
  t.match(log.lines().filter((l) => l.msg === 'admission')[0], { decision: 'restore', objects: [] })

  const dry = await post(app, fixtureBody('create-dryrun.mutating.json'))
  t.equal(dry.json.response.allowed, true, 'dry run: same decision')
  t.match(dry.json.response.warnings, [/restoring from/, /not checked/, /standalone mode/, /dry run; ReplicationDestination data-claim-restore not created/])
})

t.test('bodies that need no decision pass unchanged', async (t) => {
  const { app } = appWith()
  for (const file of ['create-with-datasourceref.mutating.json', 'delete.validating.json', 'delete-dryrun.validating.json']) {
    const { status, json } = await post(app, fixtureBody(file))
    t.equal(status, 200, file)
    t.same(json.response, { uid: fixtureReview(file).request.uid, allowed: true }, `${file}: allowed, no patch`)
  }
})

t.test('denials reach the client as AdmissionReview denials', async (t) => {
  const { app } = appWith()
  const d = fixtureReview('create.mutating.json')
  d.request.object.metadata.labels.backup = 'sometimes'
  const { status, json } = await post(app, JSON.stringify(d))
  t.equal(status, 200)
  t.equal(json.response.allowed, false)
  t.equal(json.response.status.code, 422)
  t.match(json.response.status.message, /valid tiers: hourly, daily, weekly/)
})

t.test('the store cannot be read: deny, retryable', async (t) => {
  const config = configWith()
  config.store.local.directory = '/proc/self/mem/not-a-dir' // ENOTDIR: the store cannot answer
  const { app } = appWith({ config })
  const { json } = await post(app, fixtureBody('create.mutating.json'))
  t.equal(json.response.allowed, false)
  t.equal(json.response.status.code, 503)
  t.match(json.response.status.message, /could not check the backup store.*Retrying is safe/)
})

t.test('a bug while deciding still answers with an AdmissionReview', async (t) => {
  const broken: BackupStore = {
    probe: async () => {
      throw new Error('boom')
    },
    location: (k) => `test://${k}`,
    resticRepository: (k) => k,
    close: () => {},
  }
  const { app } = appWith({ store: broken })
  const { status, json } = await post(app, fixtureBody('create.mutating.json'))
  t.equal(status, 200)
  t.equal(json.kind, 'AdmissionReview')
  t.equal(json.response.uid, '76e5961c-06ad-4ad2-a0ec-5ba8573f0c8b')
  t.equal(json.response.allowed, false)
  t.equal(json.response.status.code, 500)
  t.match(json.response.status.message, /failed to decide: boom/)
})

t.test('malformed requests get a 4xx with a reason', async (t) => {
  const { app } = appWith()
  const cases: Array<[string, string | undefined, string | undefined, number, RegExp]> = [
    ['empty body', undefined, 'application/json', 400, /empty body/],
    ['empty body without content type', undefined, undefined, 400, /empty body/],
    ['bad JSON', '{', 'application/json', 400, /not valid JSON/],
    ['wrong content type', fixtureBody('create.mutating.json'), 'text/plain', 415, /content type must be application\/json/],
    ['yaml content type', 'apiVersion: v1', 'application/yaml', 415, /content type/],
    ['wrong apiVersion', fixtureBody('create.mutating.json').replace('admission.k8s.io/v1', 'admission.k8s.io/v1beta1'), 'application/json', 422, /apiVersion/],
  ]
  for (const [name, body, type, status, reason] of cases) {
    const res = await post(app, body, type)
    t.equal(res.status, status, name)
    t.match(res.json.message, reason, `${name}: reason`)
  }
  const get = await app.inject({ method: 'GET', url: '/mutate' })
  t.equal(get.statusCode, 404)
})

t.test('bodies of several MiB are accepted; past the limit is a 413 with a reason', async (t) => {
  const { app } = appWith()
  const d = fixtureReview('create.mutating.json')
  d.request.object.metadata.annotations['example.com/big'] = 'x'.repeat(5 * 1024 * 1024)
  const big = await post(app, JSON.stringify(d))
  t.equal(big.status, 200, '5 MiB AdmissionReview answered')
  t.equal(big.json.response.allowed, true)
  d.request.object.metadata.annotations['example.com/big'] = 'x'.repeat(9 * 1024 * 1024)
  const huge = await post(app, JSON.stringify(d))
  t.equal(huge.status, 413)
  t.match(huge.json.message, /too large|exceeds|limit/i)
})

t.test('standalone /validate: only the PVC itself can be checked, and the answer says so', async (t) => {
  const { app } = appWith()
  const call = async (file: string) => JSON.parse((await app.inject({ method: 'POST', url: '/validate', payload: fixtureBody(file), headers: { 'content-type': 'application/json' } })).body).response
  const plain = await call('delete.validating.json')
  t.equal(plain.allowed, true)
  t.match(plain.warnings, [/standalone mode .* backup objects were not checked/])
  t.notOk(plain.patch, 'never a patch on DELETE')
  const populating = await call('delete-with-datasourceref.validating.json')
  t.equal(populating.allowed, false, 'a PVC still being populated is refused even without watches')
  t.match(populating.status.message, /ReplicationDestination config-restore/)
})

t.test('health endpoints', async (t) => {
  const { app } = appWith()
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200)
})

t.test('over real HTTPS with the generated development certificate', async (t) => {
  const log = captureLogger('warn')
  const config = configWith({ server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 }, kube: { mode: 'standalone', requestTimeoutMs: 1000 } } as Partial<Config>)
  const service = await startService(config, { logger: log.logger })
  t.teardown(() => service.close())
  t.equal(service.mode, 'standalone')
  t.ok(service.caCert, 'a CA was generated')
  const body = fixtureBody('create.mutating.json')
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpsRequest(`${service.url}/mutate?timeout=10s`, { method: 'POST', ca: service.caCert, headers: { 'content-type': 'application/json' } }, (r) => {
      let b = ''
      r.on('data', (c) => (b += c))
      r.on('end', () => resolve({ status: r.statusCode!, body: b }))
    })
    req.on('error', reject)
    req.end(body)
  })
  t.equal(res.status, 200, 'the CA verifies the serving certificate for 127.0.0.1')
  t.equal(JSON.parse(res.body).response.uid, '76e5961c-06ad-4ad2-a0ec-5ba8573f0c8b')
  t.match(log.text(), /standalone|development certificate/, 'standalone mode and the dev certificate are logged')
})
