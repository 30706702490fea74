/**
 * `smart-restore check` with real parts: the real client-node against the loopback API server, the
 * service's own backup store against a real s3rver, in-process (checkPvc, renderReport, run) and
 * as the CLI entry in a child process with a kubeconfig file and the configuration from env.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CheckError, checkPvc, exitCodeFor, type CheckReport } from '../../src/cli/check.js'
import { EXIT, run } from '../../src/cli/main.js'
import { renderReport } from '../../src/cli/render.js'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { buildReplicationSource } from '../../src/engines/volsync.js'
import { pvcState } from '../../src/reconcile/controller.js'
import { createBackupStore } from '../../src/storage/index.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { POPULATOR_RESOURCE, installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { writeResticRepository } from '../../src/storage/restic/writer.js'
import { BUCKET, S3RVER_KEY, seedObjects, startS3rver, storeConfig } from '../helpers/storage-servers.js'

const PVCS = '/api/v1/persistentvolumeclaims'
const RS = '/apis/volsync.backube/v1alpha1/replicationsources'
const SECRETS = '/api/v1/secrets'
const NAMESPACES = '/api/v1/namespaces'
const DATAUPLOADS = '/apis/velero.io/v2alpha1/datauploads'

const PASSWORD = 'correct-horse-battery-staple-7731'
const AWS_SECRET = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY'

// Child processes load TypeScript through tsx: a few seconds each on a small machine.
t.setTimeout(120_000)

const s3 = await startS3rver()
t.teardown(() => s3.close())
// A real restic repository (format v2) opened by the source Secret's RESTIC_PASSWORD, with one
// snapshot of /data as VolSync's mover makes them: check reads it like the service does.
const repo = await writeResticRepository(PASSWORD, [{ time: '2026-11-22T03:40:12.123456789Z', paths: ['/data'], hostname: 'volsync' }])
const SNAPSHOT = repo.snapshotIds[0]!
await seedObjects(s3.endpoint, [...repo.files].map(([path, body]) => [`media/data-claim/${path}`, body]))

const api = await startFakeApiServer()
t.teardown(() => api.close())
installRestorePrerequisites(api)

const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  store: storeConfig(s3.endpoint, { probe: { mode: 'restic', deadlineMs: 1500, cacheTtlMs: 10_000 } }),
  kube: { mode: 'cluster', requestTimeoutMs: 2000 },
})
const store = createBackupStore(config.store, { password: async () => PASSWORD })
t.teardown(() => store.close())

api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'media', labels: { 'kubernetes.io/metadata.name': 'media' } } })
api.objects.put(SECRETS, {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
  data: {
    RESTIC_PASSWORD: Buffer.from(PASSWORD).toString('base64'),
    AWS_ACCESS_KEY_ID: Buffer.from('AKIAEXAMPLE').toString('base64'),
    AWS_SECRET_ACCESS_KEY: Buffer.from(AWS_SECRET).toString('base64'),
  },
})

function putPvc(name: string, labels: Record<string, string>, extra: { annotations?: Record<string, string>; spec?: Record<string, unknown>; phase?: string } = {}) {
  return api.objects.put(PVCS, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace: 'media', labels, annotations: extra.annotations ?? {} },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } }, storageClassName: 'longhorn', ...extra.spec },
    status: { phase: extra.phase ?? 'Bound' },
  })
}

// A PVC admitted fresh long ago, backed up since: snapshots exist and its source is syncing right now.
const dataClaim = putPvc('data-claim', { backup: 'hourly' }, { annotations: { 'smart-restore.io/decision': 'fresh', 'smart-restore.io/checked-location': `s3://${BUCKET}/media/data-claim` } })
const desired = buildReplicationSource({ config, pvc: pvcState(dataClaim as any), tier: 'hourly', name: 'data-claim-backup', repositorySecret: 'data-claim-restic' })
api.objects.put(RS, {
  ...desired,
  status: {
    conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'Synchronization in-progress', lastTransitionTime: '2026-11-22T04:40:00Z' }],
    lastSyncStartTime: '2026-11-22T04:40:00Z',
    lastSyncTime: '2026-11-22T03:40:12Z',
  },
} as any)
putPvc('empty-claim', { backup: 'hourly' })
putPvc('plain', {})
putPvc('typo', { backup: 'hourly-ish' })

const check = (name: string, over: Partial<Parameters<typeof checkPvc>[0]> = {}) =>
  checkPvc({ kubeConfig: api.kubeConfig, store, config, namespace: 'media', name, now: () => new Date('2026-11-22T04:52:00Z'), ...over })

t.test('a PVC with a snapshot and a syncing source: restore on create, delete refused naming the source', async (t) => {
  const before = api.requests.length
  const r = await check('data-claim')

  t.match(r.pvc, { namespace: 'media', name: 'data-claim', phase: 'Bound', tier: 'hourly', tierFrom: 'label', storage: '10Gi', storageClassName: 'longhorn' })
  t.match(r.store, { type: 's3', repositoryKey: 'media/data-claim', location: `s3://${BUCKET}/media/data-claim`, probe: { state: 'exists' } })

  t.equal(r.onCreate.outcome, 'restore')
  t.same(r.onCreate.objects, [
    { kind: 'ReplicationDestination', namespace: 'media', name: 'data-claim-restore' },
    { kind: 'Secret', namespace: 'media', name: 'data-claim-restic' },
  ])
  t.same(r.restorePrerequisites, { state: 'present', missing: [] })
  t.equal(r.onCreate.replicationDestination?.metadata.name, 'data-claim-restore')
  t.match(r.onCreate.replicationDestination?.spec.restic, { repository: 'data-claim-restic', capacity: '10Gi', storageClassName: 'longhorn', copyMethod: 'Snapshot' })
  t.equal(r.onCreate.secret?.resticRepository, `s3:${s3.endpoint}/${BUCKET}/media/data-claim`)
  t.same(r.onCreate.secret?.keys, ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'RESTIC_PASSWORD', 'RESTIC_REPOSITORY'])
  t.match(r.onCreate.sourceSecret, { namespace: 'smart-restore', name: 'smart-restore-restic', state: 'ok' })
  t.ok(r.onCreate.patch?.some((op) => op.path === '/spec/dataSourceRef'), 'the answer would add spec.dataSourceRef')

  t.match(r.backupSource, { reconcilerEnabled: true, steps: [], events: [], probed: false, volsyncInstalled: true })
  t.match(r.backupSource.summary, /backed up by ReplicationSource data-claim-backup on tier hourly; up to date/)
  t.match(r.backupSource.existing.replicationSource, {
    name: 'data-claim-backup',
    managed: true,
    schedule: desired.spec.trigger.schedule,
    retain: { hourly: 24, daily: 7, weekly: 4 },
    synchronizing: 'Synchronizing=True (SyncInProgress)',
  })

  t.equal(r.delete.allowed, false)
  t.equal(r.delete.outcome, 'denied')
  t.equal(r.delete.code, 409)
  t.equal(r.delete.cause, 'in-flight-volsync-replicationsource')
  t.match(r.delete.findings, [{ system: 'VolSync', kind: 'ReplicationSource', namespace: 'media', name: 'data-claim-backup', since: '2026-11-22T04:40:00Z' }])
  t.match(r.delete.message, /PVC media\/data-claim cannot be deleted while a backup or restore of it is in flight: VolSync ReplicationSource media\/data-claim-backup/)

  t.ok(r.rules.active >= 3, 'VolSync and Job rules are active')
  t.ok(r.rules.notInstalled.includes('velero-dataupload'), 'Velero is not installed and says so')
  t.ok(r.rules.notInstalled.includes('csi-volumesnapshot'))
  t.same(r.rules.failed, [])
  t.equal(r.rules.active + r.rules.notInstalled.length, r.rules.total)
  t.same(r.attention, [])
  t.equal(exitCodeFor(r), 0)

  // One-shot reads only: no watch, no write.
  const mine = api.requests.slice(before)
  t.same(mine.filter((q) => q.method !== 'GET'), [], 'only GETs')
  t.same(mine.filter((q) => q.query.watch !== undefined), [], 'no watches')
  t.ok(mine.some((q) => q.path === '/apis/volsync.backube/v1alpha1/replicationsources' && q.query.watch === undefined), 'a one-shot LIST of ReplicationSources')
  t.ok(mine.some((q) => q.path === '/apis/velero.io/v2alpha1'), 'discovery asked about Velero')
  t.notOk(mine.some((q) => q.path === DATAUPLOADS), 'and did not list what is not installed')

  const text = renderReport(r)
  t.match(text, /^PVC {12}media\/data-claim {2}\(Bound, tier hourly, 10Gi longhorn, ReadWriteOnce\)$/m)
  t.match(text, /^Backup store {3}s3:\/\/backups\/media\/data-claim: /m)
  t.match(text, new RegExp(`→ ${SNAPSHOT.slice(0, 8)} .*2026-11-22T03:40:12Z.*← VolSync would restore this`))
  t.match(text, new RegExp(`^ {15}snapshot ${SNAPSHOT.slice(0, 8)} of /data taken 2026-11-22T03:40:12Z \\(72m ago\\)`, 'm'))
  t.match(text, /^On create {6}restore → ReplicationDestination data-claim-restore, Secret data-claim-restic$/m)
  // retain is printed as the apiserver serves it: a custom resource, its keys sorted (daily hourly weekly).
  const source = /^Backup source {2}ReplicationSource data-claim-backup up to date \(schedule (.+), retain (.+)\)$/m.exec(text)
  t.ok(source, 'the backup source line')
  t.equal(source?.[1], desired.spec.trigger.schedule, 'its schedule')
  t.strictSame(source?.[2]?.split(' ').sort(), ['daily=7', 'hourly=24', 'weekly=4'], 'its retain, in whatever key order')
  t.match(text, /^Delete now {5}refused: VolSync ReplicationSource media\/data-claim-backup \(condition Synchronizing=True \(SyncInProgress\), since 2026-11-22T04:40:00Z \(12m ago\)\)$/m)
  t.match(text, /^Rules {10}\d+ active, \d+ not installed \(/m)
  t.match(text, /^Attention {6}none$/m)
})

t.test('the report never carries a secret value, in either form', async (t) => {
  const r = await check('data-claim')
  for (const [form, text] of [['human', renderReport(r)], ['json', JSON.stringify(r)]] as const) {
    for (const secret of [PASSWORD, AWS_SECRET, Buffer.from(PASSWORD).toString('base64'), Buffer.from(AWS_SECRET).toString('base64'), api.token, S3RVER_KEY]) {
      t.notOk(text.includes(secret), `${form} output does not contain ${secret.slice(0, 6)}…`)
    }
  }
})

t.test('a labelled PVC with no backup: fresh on create, the reconciler would attach, delete allowed', async (t) => {
  const r = await check('empty-claim')
  t.match(r.store.probe, { state: 'none' })
  t.match(r.onCreate, { outcome: 'fresh', objects: [], location: `s3://${BUCKET}/media/empty-claim` })
  t.match(r.onCreate.reason, /^no snapshot at s3:\/\/backups\/media\/empty-claim/)
  t.equal(r.backupSource.probed, true)
  t.match(r.backupSource.steps, [{ kind: 'apply-source', description: /^apply Secret empty-claim-restic .* and ReplicationSource empty-claim-backup \(schedule \d+ \* \* \* \*, retain hourly=24 daily=7 weekly=4\)$/ }])
  t.match(r.backupSource.events, [{ type: 'Normal', reason: 'BackupAttached' }])
  t.match(r.delete, { allowed: true, outcome: 'clear', findings: [] })
  t.same(r.attention, [])
  const text = renderReport(r)
  t.match(text, /^On create {6}fresh: no snapshot at s3:\/\/backups\/media\/empty-claim/m)
  t.match(text, /^ {15}would apply Secret empty-claim-restic/m)
  t.match(text, /^Delete now {5}allowed: nothing in flight$/m)
})

t.test('an unlabelled PVC: skipped on create, not backed up', async (t) => {
  const r = await check('plain')
  t.match(r.onCreate, { outcome: 'skipped', cause: 'no-tier-label', reason: 'no backup label', objects: [] })
  t.equal(r.pvc.tier, undefined)
  t.match(r.backupSource, { steps: [], events: [], summary: /no backup label and no namespace default tier; not backed up/ })
  t.match(r.delete, { allowed: true, outcome: 'clear' })
  t.equal(exitCodeFor(r), 0)
  t.match(renderReport(r), /^On create {6}skipped: no backup label$/m)
})

t.test('an unknown tier: the create would be denied, and that needs attention', async (t) => {
  const r = await check('typo')
  t.match(r.onCreate, { outcome: 'denied', code: 422, cause: 'unknown-tier' })
  t.match(r.backupSource.events, [{ type: 'Warning', reason: 'UnknownTier' }])
  t.ok(r.attention.length >= 1)
  t.equal(exitCodeFor(r), 1)
  t.match(renderReport(r), /^Attention {6}a CREATE of this PVC would be denied \(422 unknown-tier\)/m)
})

t.test('an existing PVC with a dataSourceRef is reported as such; the populator holds its delete', async (t) => {
  putPvc('restoring', { backup: 'hourly' }, {
    phase: 'Pending',
    annotations: { 'smart-restore.io/decision': 'restore', 'smart-restore.io/restore-source': `s3://${BUCKET}/media/restoring` },
    spec: { dataSourceRef: { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'restoring-restore' } },
  })
  const r = await check('restoring')
  t.match(r.onCreate, { outcome: 'skipped', cause: 'has-data-source', dataSourceRef: { kind: 'ReplicationDestination', name: 'restoring-restore' }, admitted: { decision: 'restore', restoreSource: `s3://${BUCKET}/media/restoring` } })
  t.match(r.backupSource.summary, /waiting for the PVC to be Bound/)
  t.match(r.delete, { allowed: false, findings: [{ ruleId: 'pvc-populator' }] })
  const text = renderReport(r)
  t.match(text, /^On create {6}skipped: spec.dataSourceRef\/dataSource already names ReplicationDestination restoring-restore/m)
  t.match(text, /^ {15}admitted as restore from s3:\/\/backups\/media\/restoring$/m)
})

t.test('a rule becomes active when its resource is installed, and its objects count', async (t) => {
  api.installResource({ group: 'velero.io', version: 'v2alpha1', kind: 'DataUpload', plural: 'datauploads' })
  t.teardown(() => api.uninstallResource({ group: 'velero.io', version: 'v2alpha1', plural: 'datauploads' }))
  api.objects.put(DATAUPLOADS, {
    apiVersion: 'velero.io/v2alpha1',
    kind: 'DataUpload',
    metadata: { name: 'nightly-x7k2p', namespace: 'velero' },
    spec: { sourcePVC: 'empty-claim', sourceNamespace: 'media' },
    status: { phase: 'InProgress', startTimestamp: '2026-11-22T04:50:00Z' },
  })
  const r = await check('empty-claim')
  t.notOk(r.rules.notInstalled.includes('velero-dataupload'))
  t.match(r.rules.rules.find((x) => x.id === 'velero-dataupload'), { state: 'listed', objects: 1 })
  t.match(r.delete, { allowed: false, cause: 'in-flight-velero-dataupload', findings: [{ system: 'Velero', kind: 'DataUpload', namespace: 'velero', name: 'nightly-x7k2p', since: '2026-11-22T04:50:00Z' }] })
})

t.test('a LIST that fails: the delete cannot be vouched for, as in the service', async (t) => {
  const fault = api.fail({ method: 'GET', path: '/apis/batch/v1/jobs', times: Infinity, watch: false }, { status: 500 })
  t.teardown(() => fault.cancel())
  const r = await check('plain')
  t.ok(r.rules.failed.includes('volsync-mover-job'))
  t.match(r.delete, { allowed: false, code: 503, cause: 'caches-not-synced' })
  t.match(r.delete.message, /could not list jobs\.batch\/v1/)
  t.match(r.attention, [/in-flight check incomplete: volsync-mover-job/])
  t.equal(exitCodeFor(r), 1)
})

t.test('a missing PVC is a clear error', async (t) => {
  const err = await check('nope').then(
    () => undefined,
    (e: unknown) => e,
  )
  t.type(err, CheckError)
  t.equal((err as CheckError).kind, 'not-found')
  t.match((err as Error).message, /^PersistentVolumeClaim media\/nope not found/)
})

t.test('the JSON form parses and holds the same report', async (t) => {
  const r = await check('data-claim')
  const parsed = JSON.parse(JSON.stringify(r, null, 2)) as CheckReport
  t.same(parsed, JSON.parse(JSON.stringify(r)))
  t.equal(parsed.onCreate.outcome, 'restore')
  t.equal(parsed.delete.findings[0]?.name, 'data-claim-backup')
})

// ---------------------------------------------------------------------------------------------------
// The entry: argument handling in-process, and the real thing in a child process

function capture() {
  const out = { stdout: '', stderr: '' }
  return { out, io: { stdout: (s: string) => void (out.stdout += s), stderr: (s: string) => void (out.stderr += s), env: {} } }
}

t.test('usage: --help prints it and exits 0; a bad argument prints it and exits 2', async (t) => {
  for (const args of [['--help'], ['check', '-h'], ['help']]) {
    const { out, io } = capture()
    t.equal(await run(args, io), EXIT.ok, args.join(' '))
    t.match(out.stdout, /^Usage: smart-restore check <namespace>\/<pvc> \[--json\] \[--config <file>\]/)
  }
  for (const [args, why] of [
    [[], /a command is required/],
    [['check'], /check needs <namespace>\/<pvc>/],
    [['check', 'data-claim'], /"data-claim" is not <namespace>\/<pvc>/],
    [['check', 'Media/data-claim'], /is not <namespace>\/<pvc>/],
    [['check', 'media/a', 'media/b'], /one <namespace>\/<pvc>, got 2/],
    [['check', 'media/data-claim', '--bogus'], /Unknown option '--bogus'/],
    [['restore', 'media/data-claim'], /unknown command "restore"/],
  ] as const) {
    const { out, io } = capture()
    t.equal(await run([...args], io), EXIT.usage, args.join(' '))
    t.match(out.stderr, why)
    t.match(out.stderr, /Usage: smart-restore check/)
    t.equal(out.stdout, '')
  }
})

t.test('configuration and credential errors exit 2', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'smart-restore-cli-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const bad = join(dir, 'bad.yaml')
  await writeFile(bad, 'store:\n  type: s3\n  s3: { bucket: "" }\n')
  let c = capture()
  t.equal(await run(['check', 'media/data-claim', '--config', bad], c.io), EXIT.usage)
  t.match(c.out.stderr, /invalid configuration: store\.s3\.bucket: is required/)
  c = capture()
  t.equal(await run(['check', 'media/data-claim'], c.io), EXIT.usage, 'no KUBECONFIG, not in a pod')
  t.match(c.out.stderr, /no Kubernetes credentials: set KUBECONFIG/)
})

const ROOT = join(import.meta.dirname, '..', '..')
const dir = await mkdtemp(join(tmpdir(), 'smart-restore-cli-'))
t.teardown(() => rm(dir, { recursive: true, force: true }))
const kubeconfigFile = join(dir, 'kubeconfig')
await writeFile(
  kubeconfigFile,
  [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    // client-node refuses plain http unless TLS verification is off (the fake apiserver speaks http).
    `- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true`,
    'users:',
    `- name: fake\n  user:\n    token: ${api.token}`,
    'contexts:',
    '- name: fake\n  context:\n    cluster: fake\n    user: fake',
    'current-context: fake',
    '',
  ].join('\n'),
)
const childEnv: NodeJS.ProcessEnv = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  KUBECONFIG: kubeconfigFile,
  SMART_RESTORE_STORE: 's3',
  S3_ENDPOINT: s3.endpoint,
  S3_BUCKET: BUCKET,
  S3_FORCE_PATH_STYLE: 'true',
  S3_ACCESS_KEY_ID: S3RVER_KEY,
  S3_SECRET_ACCESS_KEY: S3RVER_KEY,
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: childEnv, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr })
    })
  })
}

t.test('run() with a kubeconfig file and the configuration from env: readable output, exit codes', async (t) => {
  let c = capture()
  t.equal(await run(['check', 'media/data-claim'], { ...c.io, env: childEnv }), EXIT.ok, c.out.stderr)
  t.match(c.out.stdout, /^On create {6}restore → ReplicationDestination data-claim-restore, Secret data-claim-restic$/m)
  t.match(c.out.stdout, /^Delete now {5}refused: VolSync ReplicationSource media\/data-claim-backup/m)
  for (const secret of [PASSWORD, AWS_SECRET, api.token]) t.notOk(c.out.stdout.includes(secret), 'no secret value printed')

  c = capture()
  t.equal(await run(['check', 'media/typo'], { ...c.io, env: childEnv }), EXIT.attention)
  t.match(c.out.stdout, /^On create {6}denied \(422 unknown-tier\)/m)

  c = capture()
  t.equal(await run(['check', 'media/nope'], { ...c.io, env: childEnv }), EXIT.failed)
  t.equal(c.out.stdout, '')
  t.match(c.out.stderr, /^smart-restore: PersistentVolumeClaim media\/nope not found/)
})

t.test('the CLI entry as a child process', async (t) => {
  // Two at a time: each child loads TypeScript through tsx.
  const [json, missing] = await Promise.all([cli(['check', 'media/data-claim', '--json']), cli(['check', 'media/nope', '--json'])])
  const [help, bad] = await Promise.all([cli(['--help']), cli(['check', 'media/data-claim', '--jsn'])])

  t.equal(json.code, EXIT.ok, json.stderr)
  const report = JSON.parse(json.stdout) as CheckReport
  t.equal(report.onCreate.outcome, 'restore')
  t.equal(report.onCreate.snapshot?.id, SNAPSHOT, 'the snapshot VolSync would restore, read with the password of the source Secret')
  t.equal(report.store.location, `s3://${BUCKET}/media/data-claim`)
  t.match(report.delete, { allowed: false, findings: [{ kind: 'ReplicationSource', name: 'data-claim-backup' }] })
  t.equal(report.server, api.url)
  for (const secret of [PASSWORD, AWS_SECRET, api.token]) t.notOk(json.stdout.includes(secret), 'no secret value printed')

  t.equal(missing.code, EXIT.failed)
  t.match(JSON.parse(missing.stdout), { error: { kind: 'not-found', message: /PersistentVolumeClaim media\/nope not found/ } })
  t.match(missing.stderr, /PersistentVolumeClaim media\/nope not found/)

  t.equal(help.code, EXIT.ok)
  t.match(help.stdout, /^Usage: smart-restore check/)
  t.equal(bad.code, EXIT.usage)
  t.match(bad.stderr, /Unknown option '--jsn'/)
  t.match(bad.stderr, /Usage: smart-restore check/)
})

t.test('without the VolumePopulator CRD: the restore would be denied, and check says what is missing', async (t) => {
  api.uninstallResource(POPULATOR_RESOURCE)
  t.teardown(() => api.installResource(POPULATOR_RESOURCE))
  const r = await check('data-claim')
  t.equal(r.restorePrerequisites.state, 'missing')
  t.match(r.restorePrerequisites.missing, [/^the CRD volumepopulators\.populator\.storage\.k8s\.io /])
  t.match(r.onCreate, { outcome: 'denied', code: 422, cause: 'restore-preflight-missing', objects: [] })
  t.ok(r.attention.some((a) => a.startsWith('restores cannot be populated: missing the CRD volumepopulators')))
  t.equal(exitCodeFor(r), 1)
  const text = renderReport(r)
  t.match(text, /^On create {6}denied \(422 restore-preflight-missing\)/m)
  t.match(text, /^Restore needs {2}missing the CRD volumepopulators\.populator\.storage\.k8s\.io/m)
})
