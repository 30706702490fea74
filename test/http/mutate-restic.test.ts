/**
 * POST /mutate over real HTTPS, with the bodies a real kube-apiserver v1.32 sent (altered: name,
 * annotations), against restic repositories the real restic CLI wrote into s3rver over TLS
 * (test/helpers/restic-repos.ts), in probe mode restic (the default).
 *
 * Two services share the repositories:
 * - "cluster": Kubernetes writes go to the loopback fake apiserver; RESTIC_PASSWORD comes from the
 *   source Secret through that API. Every case checks which objects were (not) written.
 * - "standalone": no Kubernetes API; RESTIC_PASSWORD comes from store.passwordFile.
 *
 * What is pinned down: the snapshot the answer names (warning, restore-snapshot annotation) is the
 * one `restic snapshots --json` lists, selected as VolSync's mover would (newest, restore-as-of,
 * restore-previous); every way nothing would be restored is a 422 that says why; a password that
 * does not open the repository is a 500 naming where the password came from; no snapshot at all is
 * a (checked) fresh start; an unreachable S3 is a retryable 503, never fresh.
 *
 * Realism of LastModified: as in test/storage/restic-probe.test.ts, each snapshot object's mtime
 * (s3rver's LastModified) is set to its snapshot time + 30 s, as a real backup leaves it, so the
 * reader's early stop (it fetches only the snapshot files the selection needs) is exercised.
 *
 * Cost: six `restic init` (scrypt calibration) and ~20 more restic commands, in parallel; repositories
 * that only need another name are copies on disk (s3rver keeps objects as files).
 */
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { cp, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fastJsonPatch from 'fast-json-patch'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { ClusterClient } from '../../src/kube/cluster-client.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import {
  listSnapshots,
  makeResticRepo,
  repositoryUrl,
  resticAvailable,
  runRestic,
  startTlsS3rver,
  type MadeRepo,
  type ResticSnapshotJson,
  type SnapshotSpec,
  type TlsS3rver,
} from '../helpers/restic-repos.js'
import { BUCKET, storeConfig } from '../helpers/storage-servers.js'

t.setTimeout(300_000)

const restic = resticAvailable()

const PW = 'restic-password-never-logged-5c2e'
const OTHER_PW = 'another-password-never-logged-81d0'
const MOVER_SECRET = 'mover-secret-never-logged-4a7b'
const NS = 'media'
const PREFIX = 'smart-restore.io/'
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'
const SECRETS = '/api/v1/secrets'
const RDS = '/apis/volsync.backube/v1alpha1/replicationdestinations'

/** The main repository (format v2): three snapshots of /data a day apart, oldest first. */
const MAIN_SNAPSHOTS: SnapshotSpec[] = [{ time: '2026-11-20T03:00:41Z' }, { time: '2026-11-21T03:00:41Z', tags: ['daily'] }, { time: '2026-11-22T03:00:41Z' }]
/** Format v1. */
const V1_SNAPSHOTS: SnapshotSpec[] = [{ time: '2025-01-02T03:04:05Z' }, { time: '2025-01-03T03:04:05Z' }]
/** Another tool's backups: paths without /data. */
const FOREIGN_SNAPSHOTS: SnapshotSpec[] = [
  { time: '2026-11-01T01:00:00Z', path: '/srv/app', host: 'other-host' },
  { time: '2026-11-02T01:00:00Z', path: '/srv/www', host: 'other-host' },
]

/** Repository keys = `{namespace}/{pvc}` (store.keyTemplate's default); the PVC names of the cases. */
const PVC = {
  newest: 'photos', // case 1 (and 11)
  asOf: 'photos-asof', // case 2: a copy of photos
  early: 'photos-early', // cases 3 and 9: a copy of photos
  previous: 'photos-prev', // case 4: a copy of photos
  foreign: 'foreign', // case 5
  stash: 'stash', // case 6: made with OTHER_PW
  empty: 'never-backed-up', // case 7: init only
  forgotten: 'all-forgotten', // case 8
  v1: 'archive', // case 10
} as const

// ---- expected texts, written out here (not taken from src/) ------------------------------------

/**
 * Warnings are one line of at most 120 characters (src/admission/respond.ts, design.md §1). The
 * restore warning is often longer: then kubectl shows it cut, e.g. without its "(as of …)" (case 2).
 */
function clamp(w: string): string {
  return w.length <= 120 ? w : `${w.slice(0, 119)}…`
}

/** `15d ago` etc., as describeSnapshot words the age. */
function ageText(fromMs: number, nowMs: number): string {
  const ms = nowMs - fromMs
  const abs = Math.abs(ms)
  const text = abs < 90_000 ? `${Math.round(abs / 1000)}s` : abs < 90 * 60_000 ? `${Math.round(abs / 60_000)}m` : abs < 48 * 3_600_000 ? `${Math.round(abs / 3_600_000)}h` : `${Math.round(abs / 86_400_000)}d`
  return ms >= 0 ? `${text} ago` : `in ${text}`
}

/** restic's time as the whole UTC second VolSync compares: 2026-11-22T03:00:41Z. */
function utcSecond(time: string): string {
  return new Date(Math.floor(Date.parse(time) / 1000) * 1000).toISOString().replace('.000Z', 'Z')
}

const location = (pvc: string) => `s3://${BUCKET}/${NS}/${pvc}`
const id8 = (s: ResticSnapshotJson) => s.id.slice(0, 8)
/** The restore-snapshot annotation: `<id8> of /data taken <time>`. */
const recorded = (s: ResticSnapshotJson) => `${id8(s)} of /data taken ${utcSecond(s.time)}`
/** `<id8> of <time>`, as denials name snapshots. */
const shortName = (s: ResticSnapshotJson) => `${id8(s)} of ${utcSecond(s.time)}`
const SKIP_ADVICE = `to create it empty on purpose, annotate it ${PREFIX}skip-restore: "<reason>".`
const EMPTY_RESULT = `VolSync's mover would restore nothing and the PVC would come up empty, so it was not created`

// ---- repositories on disk ----------------------------------------------------------------------

function objectFile(s3: TlsS3rver, key: string, path: string): string {
  return join(s3.directory, BUCKET, key, `${path}._S3rver_object`)
}

/** Each snapshot object's LastModified (s3rver: the file's mtime) := its snapshot time + 30 s. */
async function settleMtimes(s3: TlsS3rver, key: string, made: MadeRepo, specs: SnapshotSpec[]): Promise<void> {
  for (const [i, id] of made.snapshotIds.entries()) {
    const at = new Date(Date.parse(specs[i]!.time) + 30_000)
    await utimes(objectFile(s3, key, `snapshots/${id}`), at, at)
  }
}

async function copyRepo(s3: TlsS3rver, from: string, to: string): Promise<void> {
  await cp(join(s3.directory, BUCKET, from), join(s3.directory, BUCKET, to), { recursive: true, preserveTimestamps: true })
}

async function repositoryVersion(s3: TlsS3rver, key: string, password: string): Promise<number> {
  const r = await runRestic(s3, key, password, ['cat', 'config'])
  if (r.code !== 0) throw new Error(`restic cat config (${key}) exited ${r.code}: ${r.stderr}`)
  return (JSON.parse(r.stdout) as { version: number }).version
}

// ---- the AdmissionReview ------------------------------------------------------------------------

interface Review {
  apiVersion: string
  kind: string
  request: Record<string, any>
}

/**
 * The real create.mutating.json for PVC `name` with `annotations` added, as kubectl would have sent
 * it: a new uid, and kubectl's last-applied record naming the same PVC and annotations.
 */
function review(name: string, annotations: Record<string, string> = {}): Review {
  const d = fixtureReview('create.mutating.json')
  const r = d.request
  r.uid = randomUUID()
  r.name = name
  const meta = r.object.metadata
  const applied = JSON.parse(meta.annotations[LAST_APPLIED])
  applied.metadata.name = name
  Object.assign(applied.metadata.annotations, annotations)
  meta.name = name
  meta.annotations = { ...meta.annotations, ...annotations, [LAST_APPLIED]: `${JSON.stringify(applied)}\n` }
  return d
}

/** POST the body to the service's HTTPS /mutate; the AdmissionReview's response. */
function send(service: ServiceHandle, body: Review): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${service.url}/mutate?timeout=30s`, { method: 'POST', ca: service.caCert, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${text}`))
        const answer = JSON.parse(text)
        if (answer.apiVersion !== 'admission.k8s.io/v1' || answer.kind !== 'AdmissionReview') return reject(new Error(`not an AdmissionReview: ${text}`))
        resolve(answer.response)
      })
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

/** The PVC after the answer's JSON Patch (the object itself when there is none). */
function patched(body: Review, response: Record<string, any>): any {
  const object = structuredClone(body.request.object)
  if (!response.patch) return object
  if (response.patchType !== 'JSONPatch') throw new Error(`patchType ${response.patchType}`)
  const ops = JSON.parse(Buffer.from(response.patch, 'base64').toString())
  return fastJsonPatch.applyPatch(object, ops, true, false).newDocument
}

/** The PVC as sent, with `annotations` added (and a dataSourceRef to `<pvc>-restore`). */
function expectedPvc(body: Review, annotations: Record<string, string>, restore: boolean): any {
  const object = structuredClone(body.request.object)
  object.metadata.annotations = { ...object.metadata.annotations, ...annotations }
  if (restore) object.spec.dataSourceRef = { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: `${body.request.name}-restore` }
  return object
}

t.test('POST /mutate with restic repositories written by restic, over HTTPS', { skip: restic ? false : 'restic is not installed (apt-get install restic); these tests need the real restic CLI' }, async (t) => {
  const setupStarted = performance.now()
  const s3 = await startTlsS3rver()
  t.teardown(s3.close)
  const tmp = await mkdtemp(join(tmpdir(), 'smart-restore-mutate-restic-'))
  t.teardown(() => rm(tmp, { recursive: true, force: true }))
  const passwordFile = join(tmp, 'restic-password')
  await writeFile(passwordFile, `${PW}\n`)

  // ---- the repositories, all at once ----
  const key = (pvc: string) => `${NS}/${pvc}`
  let main!: ResticSnapshotJson[]
  let v1!: ResticSnapshotJson[]
  let foreign!: ResticSnapshotJson[]
  let mainMade!: MadeRepo
  let v1Made!: MadeRepo
  const versions: Record<string, number> = {}
  await Promise.all([
    (async () => {
      mainMade = await makeResticRepo(s3, { key: key(PVC.newest), password: PW, version: 2, snapshots: MAIN_SNAPSHOTS })
      await settleMtimes(s3, key(PVC.newest), mainMade, MAIN_SNAPSHOTS)
      ;[main, versions.main] = await Promise.all([listSnapshots(s3, key(PVC.newest), PW), repositoryVersion(s3, key(PVC.newest), PW)])
      for (const copy of [PVC.asOf, PVC.early, PVC.previous]) await copyRepo(s3, key(PVC.newest), key(copy))
    })(),
    (async () => {
      v1Made = await makeResticRepo(s3, { key: key(PVC.v1), password: PW, version: 1, snapshots: V1_SNAPSHOTS })
      await settleMtimes(s3, key(PVC.v1), v1Made, V1_SNAPSHOTS)
      ;[v1, versions.v1] = await Promise.all([listSnapshots(s3, key(PVC.v1), PW), repositoryVersion(s3, key(PVC.v1), PW)])
    })(),
    (async () => {
      const made = await makeResticRepo(s3, { key: key(PVC.foreign), password: PW, snapshots: FOREIGN_SNAPSHOTS })
      await settleMtimes(s3, key(PVC.foreign), made, FOREIGN_SNAPSHOTS)
      foreign = await listSnapshots(s3, key(PVC.foreign), PW)
    })(),
    makeResticRepo(s3, { key: key(PVC.stash), password: OTHER_PW, snapshots: [{ time: '2026-11-30T02:00:00Z' }] }),
    makeResticRepo(s3, { key: key(PVC.empty), password: PW }),
    makeResticRepo(s3, { key: key(PVC.forgotten), password: PW, snapshots: [{ time: '2026-10-01T00:00:00Z' }], forgetAll: true }),
  ])
  const setupMs = Math.round(performance.now() - setupStarted)

  // ---- the fake apiserver with the source Secret, and the two services ----
  const api = await startFakeApiServer()
  installRestorePrerequisites(api)
  t.teardown(() => api.close())
  api.objects.put(SECRETS, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
    data: {
      RESTIC_PASSWORD: Buffer.from(PW).toString('base64'),
      AWS_ACCESS_KEY_ID: Buffer.from('mover-key').toString('base64'),
      AWS_SECRET_ACCESS_KEY: Buffer.from(MOVER_SECRET).toString('base64'),
    },
  })

  const log = captureLogger('info')
  const base = (): Config =>
    ({
      ...structuredClone(defaultConfig),
      server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: -1 },
      // Probe mode restic is the default; a generous deadline, since a cold probe derives a scrypt key.
      store: storeConfig(s3.endpoint, { probe: { mode: defaultConfig.store.probe.mode, deadlineMs: 15_000, cacheTtlMs: 0 }, s3: { caBundle: s3.caFile } }),
    }) as Config
  const clusterConfig = validateConfig({ ...base(), kube: { mode: 'cluster', requestTimeoutMs: 3000 } })
  t.equal(clusterConfig.store.probe.mode, 'restic', 'the default probe mode')
  t.equal(clusterConfig.store.passwordFile, undefined, 'cluster service: the password comes from the source Secret')
  const cluster = new ClusterClient(api.kubeConfig, { requestTimeoutMs: 3000, fieldManager: 'smart-restore', logger: log.logger })
  const clustered = await startService(clusterConfig, { logger: log.logger, cluster, inFlight: null })
  t.teardown(() => clustered.close())
  const standaloneConfig = validateConfig({ ...base(), store: { ...base().store, passwordFile }, kube: { mode: 'standalone', requestTimeoutMs: 1000 } })
  const standalone = await startService(standaloneConfig, { logger: log.logger })
  t.teardown(() => standalone.close())
  t.equal(clustered.mode, 'cluster')
  t.equal(standalone.mode, 'standalone')

  const writes = () => api.requests.filter((r) => r.method !== 'GET').map((r) => `${r.method} ${r.path}`)
  /** The ReplicationDestination and repository Secret of a PVC, as stored (undefined when absent). */
  const objectsOf = (pvc: string) => ({ rd: api.objects.get(RDS, NS, `${pvc}-restore`), secret: api.objects.get(SECRETS, NS, `${pvc}-restic`) })
  const decode = (b64: string) => Buffer.from(b64, 'base64').toString()
  const SECRET_SOURCE = 'RESTIC_PASSWORD of Secret smart-restore/smart-restore-restic (restore.sourceSecret)'
  const FILE_SOURCE = `the file ${passwordFile} (store.passwordFile)`

  /** Asserts an answer that restores `snapshot` of `pvc`, and (cluster) that exactly its two objects were written. */
  const assertRestore = async (
    tt: Test,
    service: ServiceHandle,
    pvc: string,
    annotations: Record<string, string>,
    snapshot: ResticSnapshotJson,
    pointInTime: string,
    restoreOptions: Record<string, unknown> = {},
  ) => {
    const body = review(pvc, annotations)
    const writesBefore = writes().length
    const before = Date.now()
    const res = await send(service, body)
    const after = Date.now()
    tt.equal(res.uid, body.request.uid, 'echoes the uid')
    tt.equal(res.allowed, true, 'allowed')
    tt.equal(res.status, undefined)
    // The warnings, as kubectl prints them; the age is the one at the start or end of the request.
    const warning = (now: number) => clamp(`smart-restore: restoring snapshot ${recorded(snapshot)} (${ageText(Date.parse(snapshot.time), now)})`)
    const first = res.warnings?.[0]
    tt.equal(first, first === warning(after) ? warning(after) : warning(before), 'the first warning names the snapshot restic lists')
    tt.equal(res.warnings?.[1], clamp(`smart-restore: from ${location(pvc)}${pointInTime}`), 'the second says where from, and the point in time')
    const rest = service === standalone ? [`smart-restore: standalone mode (no Kubernetes API); ReplicationDestination ${pvc}-restore not created`] : []
    tt.strictSame(res.warnings?.slice(2), rest)
    tt.strictSame(res.auditAnnotations, { decision: 'restore', source: location(pvc), snapshot: snapshot.id })
    tt.strictSame(
      patched(body, res),
      expectedPvc(body, {
        [`${PREFIX}decision`]: 'restore',
        [`${PREFIX}restore-source`]: location(pvc),
        [`${PREFIX}replication-destination`]: `${pvc}-restore`,
        [`${PREFIX}restore-snapshot`]: recorded(snapshot),
      }, true),
      'the patched PVC: dataSourceRef to the ReplicationDestination, the decision annotations',
    )
    const line = log.lines().find((l) => l.msg === 'admission' && l.uid === body.request.uid)
    tt.match(line, { decision: 'restore', probe: { state: 'exists', location: location(pvc) } }, 'the admission log line')
    tt.equal(line?.reason, `snapshot ${id8(snapshot)} of ${snapshot.time}`)
    if (service === standalone) {
      tt.strictSame(line?.objects, [])
      return
    }
    tt.strictSame(writes().slice(writesBefore), [`POST /apis/volsync.backube/v1alpha1/namespaces/${NS}/replicationdestinations`, `PATCH /api/v1/namespaces/${NS}/secrets/${pvc}-restic`], 'the two restore objects, nothing else')
    tt.strictSame(line?.objects, [`ReplicationDestination ${NS}/${pvc}-restore (created)`, `Secret ${NS}/${pvc}-restic (created)`])
    const rd = api.objects.get(RDS, NS, `${pvc}-restore`) as any
    tt.strictSame(rd?.spec, {
      trigger: { manual: 'smart-restore' },
      restic: {
        repository: `${pvc}-restic`,
        copyMethod: 'Snapshot',
        capacity: '10Gi',
        accessModes: ['ReadWriteOnce'],
        storageClassName: 'longhorn',
        customCA: { secretName: `${pvc}-restic`, key: 'smart-restore-ca.crt' },
        ...restoreOptions,
      },
    }, 'the ReplicationDestination VolSync will run')
    tt.equal(rd?.metadata.annotations[`${PREFIX}restore-source`], location(pvc))
    const secret = api.objects.get(SECRETS, NS, `${pvc}-restic`) as any
    tt.strictSame(Object.fromEntries(Object.entries(secret?.data ?? {}).map(([k, v]) => [k, decode(v as string)])), {
      RESTIC_PASSWORD: PW,
      AWS_ACCESS_KEY_ID: 'mover-key',
      AWS_SECRET_ACCESS_KEY: MOVER_SECRET,
      RESTIC_REPOSITORY: repositoryUrl(s3, key(pvc)),
      'smart-restore-ca.crt': s3.caPem,
    }, 'the mover gets the repository restic wrote to, and the CA')
  }

  /** Asserts a denial, and that nothing was written (and no object of the PVC exists). */
  const assertDenied = async (tt: Test, service: ServiceHandle, body: Review, expected: { code: number; reason: string; cause: string; message: string | RegExp }) => {
    const writesBefore = writes().length
    const name = body.request.name as string
    const objectsBefore = objectsOf(name)
    const res = await send(service, body)
    tt.equal(res.uid, body.request.uid)
    tt.equal(res.allowed, false, 'denied')
    tt.equal(res.status?.code, expected.code)
    tt.equal(res.status?.reason, expected.reason)
    if (typeof expected.message === 'string') tt.equal(res.status?.message, expected.message)
    else tt.match(res.status?.message, expected.message)
    tt.strictSame(res.auditAnnotations, { decision: 'denied', cause: expected.cause })
    tt.equal(res.patch, undefined, 'no patch')
    tt.equal(res.warnings, undefined, 'no warnings')
    tt.strictSame(writes().slice(writesBefore), [], 'nothing written to the API')
    tt.strictSame(objectsOf(name), objectsBefore, 'the PVC\'s restore objects as they were')
    return res
  }

  /** Asserts a checked fresh start of `pvc`, nothing written. */
  const assertFresh = async (tt: Test, service: ServiceHandle, pvc: string) => {
    const body = review(pvc)
    const writesBefore = writes().length
    const res = await send(service, body)
    tt.equal(res.uid, body.request.uid)
    tt.equal(res.allowed, true)
    tt.strictSame(res.warnings, [`smart-restore: no backup at ${location(pvc)}; starting empty`])
    tt.strictSame(res.auditAnnotations, { decision: 'fresh', checked: location(pvc) })
    tt.strictSame(patched(body, res), expectedPvc(body, { [`${PREFIX}decision`]: 'fresh', [`${PREFIX}checked-location`]: location(pvc) }, false), 'annotated fresh, no dataSourceRef')
    tt.strictSame(writes().slice(writesBefore), [], 'nothing written to the API')
    tt.equal(api.objects.get(RDS, NS, `${pvc}-restore`), undefined)
  }

  t.test('the repositories are what the cases assume', async (t) => {
    t.comment(`setup: 6 repositories written by restic (in parallel) and 3 copies: ${setupMs} ms`)
    t.strictSame(main.map((s) => s.id), mainMade.snapshotIds, 'restic lists the main repository oldest first')
    t.strictSame(main.map((s) => utcSecond(s.time)), MAIN_SNAPSHOTS.map((s) => s.time), 'at the times given')
    t.strictSame(main.map((s) => s.paths), [['/data'], ['/data'], ['/data']])
    t.strictSame(v1.map((s) => s.id), v1Made.snapshotIds)
    t.strictSame(v1.map((s) => utcSecond(s.time)), V1_SNAPSHOTS.map((s) => s.time))
    t.strictSame(foreign.map((s) => s.paths), [['/srv/app'], ['/srv/www']])
    t.strictSame(versions, { main: 2, v1: 1 }, 'repository format versions, as restic reads them')
    const forgotten = await listSnapshots(s3, key(PVC.forgotten), PW)
    t.strictSame(forgotten, [], 'every snapshot of all-forgotten is forgotten')
  })

  t.test('1. several snapshots: the newest is restored and named', async (t) => {
    const newest = main.at(-1)!
    t.test('cluster (password from the source Secret)', (tt) => assertRestore(tt, clustered, PVC.newest, {}, newest, ''))
    t.test('standalone (store.passwordFile)', (tt) => assertRestore(tt, standalone, PVC.newest, {}, newest, ''))
  })

  t.test('2. restore-as-of between two snapshots: the older of the two', async (t) => {
    const asOf = '2026-11-21T15:30:00Z' // after main[1], before main[2]
    await assertRestore(t, clustered, PVC.asOf, { [`${PREFIX}restore-as-of`]: asOf }, main[1]!, ` (as of ${asOf})`, { restoreAsOf: asOf })
    t.not(main[1]!.id, main[2]!.id)
  })

  t.test('2b. restore-as-of exactly at a snapshot\'s second selects that snapshot (VolSync compares <=)', async (t) => {
    const asOf = MAIN_SNAPSHOTS[0]!.time
    t.test('in UTC', (tt) => assertRestore(tt, standalone, PVC.asOf, { [`${PREFIX}restore-as-of`]: asOf }, main[0]!, ` (as of ${asOf})`))
    // The same instant as main[1] (2026-11-21T03:00:41Z), written with an offset.
    const offset = '2026-11-21T04:00:41+01:00'
    t.test('with an offset', (tt) => assertRestore(tt, standalone, PVC.asOf, { [`${PREFIX}restore-as-of`]: offset }, main[1]!, ` (as of ${offset})`))
  })

  t.test('3. restore-as-of before every snapshot: 422 with the oldest and newest, nothing created', async (t) => {
    const asOf = '2026-11-19T00:00:00Z'
    await assertDenied(t, clustered, review(PVC.early, { [`${PREFIX}restore-as-of`]: asOf }), {
      code: 422,
      reason: 'Invalid',
      cause: 'no-eligible-snapshot-as-of-before-oldest',
      message:
        `no snapshot of /data in ${location(PVC.early)} was taken at or before ${PREFIX}restore-as-of=${asOf}: ` +
        `the oldest is ${shortName(main[0]!)}, the newest ${shortName(main[2]!)} (3 in all). ${EMPTY_RESULT}. ` +
        `Use a ${PREFIX}restore-as-of at or after ${MAIN_SNAPSHOTS[0]!.time}, or remove it to restore the newest; ${SKIP_ADVICE}`,
    })
  })

  t.test('4. restore-previous', async (t) => {
    t.test('= the number of snapshots: 422 saying how many there are', async (t) => {
      await assertDenied(t, clustered, review(PVC.previous, { [`${PREFIX}restore-previous`]: '3' }), {
        code: 422,
        reason: 'Invalid',
        cause: 'no-eligible-snapshot-previous-past-oldest',
        message:
          `${PREFIX}restore-previous=3 skips past the oldest snapshot: ${location(PVC.previous)} has 3 snapshot(s) of /data ` +
          `(oldest ${shortName(main[0]!)}, newest ${shortName(main[2]!)}), so use 0 to 2 (0 = the newest). ${EMPTY_RESULT}; ${SKIP_ADVICE}`,
      })
    })
    t.test('= that number - 1: the oldest is restored', async (t) => {
      await assertRestore(t, clustered, PVC.previous, { [`${PREFIX}restore-previous`]: '2' }, main[0]!, ' (2 before newest)', { previous: 2 })
    })
  })

  t.test('5. snapshots of other paths only: 422 naming the paths found', async (t) => {
    await assertDenied(t, clustered, review(PVC.foreign), {
      code: 422,
      reason: 'Invalid',
      cause: 'no-eligible-snapshot-no-data-path',
      message:
        `${location(PVC.foreign)} holds 2 snapshot(s), but none of /data: VolSync's restic mover only restores snapshots whose path contains /data (its own backups are of /data). ` +
        `Paths found: /srv/app, /srv/www; hosts: other-host. ${EMPTY_RESULT}. ` +
        `If this repository belongs to another tool, give the PVC a repository of its own (or point restore-from at the right PVC); ${SKIP_ADVICE}`,
    })
    t.strictSame(foreign.map((s) => s.hostname), ['other-host', 'other-host'])
  })

  t.test('6. a password that does not open the repository: 500 naming the repository and the password source', async (t) => {
    const message = (source: string) =>
      `${location(PVC.stash)} holds backups of ${NS}/${PVC.stash}, but ${source} does not open it: the password does not open ${location(PVC.stash)} (tried 1 of 1 key file(s)). ` +
      `VolSync's mover would fail the same way and leave the PVC Pending, so it was not created. ` +
      `Put the repository's password in ${source} and retry; ${SKIP_ADVICE}`
    t.test('cluster: the source Secret', (tt) =>
      assertDenied(tt, clustered, review(PVC.stash), { code: 500, reason: 'InternalError', cause: 'repository-unreadable-password', message: message(SECRET_SOURCE) }).then(() => {}),
    )
    t.test('standalone: store.passwordFile', (tt) =>
      assertDenied(tt, standalone, review(PVC.stash), { code: 500, reason: 'InternalError', cause: 'repository-unreadable-password', message: message(FILE_SOURCE) }).then(() => {}),
    )
    t.test('restic itself agrees: the service\'s password does not open it', async (tt) => {
      const r = await runRestic(s3, key(PVC.stash), PW, ['snapshots', '--json', '--no-lock'])
      tt.not(r.code, 0)
      tt.match(r.stderr, /wrong password|no key found/)
    })
  })

  t.test('7. an initialized repository without snapshots: allowed, fresh', async (t) => {
    t.test('cluster', (tt) => assertFresh(tt, clustered, PVC.empty))
    t.test('standalone', (tt) => assertFresh(tt, standalone, PVC.empty))
  })

  t.test('8. every snapshot forgotten: fresh', (t) => assertFresh(t, clustered, PVC.forgotten))

  t.test('9. skip-restore on case 3\'s PVC: allowed as it is, the store not even asked', async (t) => {
    const reason = 'old photos not wanted'
    const body = review(PVC.early, { [`${PREFIX}restore-as-of`]: '2026-11-19T00:00:00Z', [`${PREFIX}skip-restore`]: reason })
    const s3Before = s3.requests()
    const apiBefore = api.requests.length
    const res = await send(clustered, body)
    t.equal(res.uid, body.request.uid)
    t.equal(res.allowed, true)
    t.strictSame(res.warnings, [clamp(`smart-restore: restore check skipped (${PREFIX}skip-restore): ${reason}`)])
    t.strictSame(res.auditAnnotations, { 'opt-out-reason': reason })
    t.equal(res.patch, undefined, 'no patch: created as it is, empty on purpose')
    t.equal(s3.requests(), s3Before, 'no S3 request')
    t.equal(api.requests.length, apiBefore, 'no Kubernetes API request')
    t.equal(api.objects.get(RDS, NS, `${PVC.early}-restore`), undefined)
  })

  t.test('10. repository format v1 restores too (v2: cases 1-4)', async (t) => {
    t.test('standalone (store.passwordFile)', (tt) => assertRestore(tt, standalone, PVC.v1, {}, v1.at(-1)!, ''))
    t.test('cluster, restore-previous=1', (tt) => assertRestore(tt, clustered, PVC.v1, { [`${PREFIX}restore-previous`]: '1' }, v1[0]!, ' (1 before newest)', { previous: 1 }))
  })

  t.test('no password or secret value in any log line', async (t) => {
    const text = log.text()
    t.ok(text.includes('"msg":"admission"'))
    for (const secret of [PW, OTHER_PW, MOVER_SECRET, Buffer.from(PW).toString('base64'), Buffer.from(MOVER_SECRET).toString('base64')]) {
      t.notOk(text.includes(secret), `log does not contain ${secret.slice(0, 8)}…`)
    }
  })

  // Last: it closes s3rver.
  t.test('11. S3 unreachable: the retryable 503, never fresh, nothing created', async (t) => {
    await s3.close()
    const unknown = (pvc: string) =>
      new RegExp(
        `^smart-restore could not check the backup store for ${NS}/${pvc} at ${escape(location(pvc))}: .*ECONNREFUSED.*\\. ` +
          escape(`The PVC was not created, so no empty volume can be backed up over your data. Retrying is safe (Argo CD and kubectl retry); to create it without checking, annotate it ${PREFIX}skip-restore: "<reason>".`) +
          '$',
      )
    // A repository with backups (restored above) and one without: both unknown now.
    for (const [name, service] of [['cluster', clustered], ['standalone', standalone]] as const) {
      for (const pvc of [PVC.newest, PVC.empty]) {
        await assertDenied(t, service, review(pvc), { code: 503, reason: 'ServiceUnavailable', cause: 'store-unknown-network', message: unknown(pvc) })
        t.comment(`${name} ${pvc}: denied`)
      }
    }
    // A PVC never seen before, with restore-previous: still unknown, nothing created.
    const res = await assertDenied(t, clustered, review('brand-new', { [`${PREFIX}restore-previous`]: '1' }), { code: 503, reason: 'ServiceUnavailable', cause: 'store-unknown-network', message: unknown('brand-new') })
    t.equal(api.objects.get(RDS, NS, 'brand-new-restore'), undefined)
    t.equal(res.patch, undefined)
  })
})

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}
