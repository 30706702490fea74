/**
 * Hardening: the restore path when the Kubernetes API misbehaves, end to end.
 *
 * A real s3rver holds a snapshot for every PVC of this suite, so each CREATE decides "restore" and
 * must read the source Secret, apply the per-PVC Secret and create the ReplicationDestination
 * through the real @kubernetes/client-node against the loopback API server. Each of the three calls
 * in turn answers 403, 500, resets the connection, hangs past kube.requestTimeoutMs, or is slow but
 * still performs its write after the client gave up; and a foreign ReplicationDestination or a
 * foreign Secret with other values stands in the way. Every time:
 *  - the admission is denied (never allowed without its restore objects) with a message that
 *    names the object and the API's answer, within the budget;
 *  - nothing half-made is left: no ReplicationDestination without its Secret, no object with
 *    partial content, nothing foreign modified;
 *  - after recovery a retry converges to exactly ONE Secret and ONE ReplicationDestination, and the
 *    PVC is patched to restore from it; a second retry changes nothing.
 */
import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import fastJsonPatch from 'fast-json-patch'
import { ClusterClient } from '../../src/kube/cluster-client.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { installRestorePrerequisites } from '../helpers/restore-prerequisites.js'
import { startFakeApiServer, type FaultAction, type FaultMatcher, type StoredObject } from '../helpers/fake-apiserver.js'
import { fixtureReview } from '../helpers/fixtures.js'
import { assertNoSecrets, hardeningConfig, httpsClient, MOVER_AWS_KEY_ID, MOVER_AWS_SECRET, RESTIC_PASSWORD, SECRET_VALUES, sourceSecret, startRecordingS3rver } from '../helpers/hardening.js'
import { BUCKET, seed } from '../helpers/storage-servers.js'

const REQUEST_TIMEOUT_MS = 400
const PROBE_DEADLINE_MS = 1500
const SLACK_MS = 1500
const NS = 'media'
const SECRETS = '/api/v1/secrets'
const RDS = '/apis/volsync.backube/v1alpha1/replicationdestinations'
const SOURCE_PATH = '/api/v1/namespaces/smart-restore/secrets/smart-restore-restic'
const RD_POST_PATH = `/apis/volsync.backube/v1alpha1/namespaces/${NS}/replicationdestinations`
/** Values of the foreign Secret in the way: not ours to reveal either. */
const FOREIGN_PASSWORD = 'someone-elses-restic-password-Lq2Wm5'

/**
 * Set-up resources, closed in reverse order at the end. Registered with t.teardown only once the
 * set-up is done: a root test with a teardown autoends when it looks idle, and a slow set-up
 * (seeding, certificates) looks idle.
 */
const cleanups: Array<() => unknown> = []

const s3 = await startRecordingS3rver()
cleanups.push(s3.close)
const api = await startFakeApiServer()
installRestorePrerequisites(api)
cleanups.push(() => api.close())
api.objects.put(SECRETS, sourceSecret())

const log = captureLogger('debug')
const config = hardeningConfig({ s3Endpoint: s3.endpoint, deadlineMs: PROBE_DEADLINE_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS })
config.kube.mode = 'cluster'
const cluster = new ClusterClient(api.kubeConfig, { requestTimeoutMs: REQUEST_TIMEOUT_MS, fieldManager: 'smart-restore', logger: log.logger })
const service: ServiceHandle = await startService(config, { logger: log.logger, cluster, inFlight: null, kubeConfig: null })
cleanups.push(() => service.close())
const client = httpsClient(service.url, service.caCert, { keepAlive: true })
cleanups.push(client.close)
t.teardown(async () => {
  for (const c of cleanups.reverse()) await c()
})

function body(pvc: string) {
  const d = fixtureReview('create.mutating.json')
  d.request.uid = randomUUID()
  d.request.name = pvc
  d.request.object.metadata.name = pvc
  return d
}

async function create(pvc: string) {
  const d = body(pvc)
  const r = await client.post('/mutate', JSON.stringify(d))
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.text}`)
  t.equal(r.json.response.uid, d.request.uid, `${pvc}: the answer echoes the uid`)
  return { response: r.json.response, ms: r.ms, object: d.request.object }
}

const decode = (b64: string) => Buffer.from(b64, 'base64').toString('utf8')
const secretsOf = (pvc: string) => api.objects.list(SECRETS, NS).filter((s) => s.metadata.name.startsWith(pvc))
const rdsOf = (pvc: string) => api.objects.list(RDS, NS).filter((s) => s.metadata.name.startsWith(pvc))

/** A per-PVC Secret is never half-written: all four keys, the right repository and password. */
function assertCompleteSecret(tt: Tap, s: StoredObject, pvc: string): void {
  const data = Object.fromEntries(Object.entries((s.data ?? {}) as Record<string, string>).map(([k, v]) => [k, decode(v)]))
  tt.same(data, {
    RESTIC_REPOSITORY: `s3:${s3.endpoint}/${BUCKET}/${NS}/${pvc}`,
    RESTIC_PASSWORD,
    AWS_ACCESS_KEY_ID: MOVER_AWS_KEY_ID,
    AWS_SECRET_ACCESS_KEY: MOVER_AWS_SECRET,
  }, `${s.metadata.name} holds the complete repository settings`)
  tt.equal(s.metadata.labels?.['app.kubernetes.io/managed-by'], 'smart-restore')
}

type Tap = Test

/** The retry after recovery: allowed, patched to restore, and exactly one Secret and one RD. */
async function assertConverges(tt: Tap, pvc: string): Promise<void> {
  const ok = await create(pvc)
  tt.equal(ok.response.allowed, true, `${pvc}: the retry after recovery is allowed`)
  tt.equal(ok.response.patchType, 'JSONPatch')
  const patched = fastJsonPatch.applyPatch(structuredClone(ok.object), JSON.parse(decode(ok.response.patch)), true, false).newDocument as any
  tt.same(patched.spec.dataSourceRef, { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: `${pvc}-restore` }, 'the PVC restores from its ReplicationDestination')
  tt.equal(patched.metadata.annotations['smart-restore.io/decision'], 'restore')
  tt.equal(patched.metadata.annotations['smart-restore.io/restore-source'], `s3://${BUCKET}/${NS}/${pvc}`)

  const secrets = secretsOf(pvc)
  tt.same(secrets.map((s) => s.metadata.name), [`${pvc}-restic`], 'exactly ONE Secret')
  if (secrets[0]) assertCompleteSecret(tt, secrets[0], pvc)
  const rds = rdsOf(pvc)
  tt.same(rds.map((r) => r.metadata.name), [`${pvc}-restore`], 'exactly ONE ReplicationDestination')
  const rd = rds[0] as any
  tt.equal(rd?.metadata?.labels?.['app.kubernetes.io/managed-by'], 'smart-restore', 'the RD is ours')
  tt.equal(rd?.spec?.restic?.repository, `${pvc}-restic`, 'the RD reads the Secret that exists')
  tt.match(secrets[0]?.metadata.ownerReferences, [{ apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', name: `${pvc}-restore`, uid: rd?.metadata?.uid }], 'the Secret is owned by the RD: it goes with it')

  // A reinvocation or a second retry: same answer, nothing rewritten.
  const before = { secret: secrets[0]?.metadata.resourceVersion, rd: rd?.metadata?.resourceVersion }
  const again = await create(pvc)
  tt.equal(again.response.allowed, true, 'a second retry is allowed too')
  tt.equal(secretsOf(pvc).length, 1, 'still one Secret')
  tt.equal(rdsOf(pvc).length, 1, 'still one RD')
  tt.same({ secret: secretsOf(pvc)[0]?.metadata.resourceVersion, rd: (rdsOf(pvc)[0] as any)?.metadata?.resourceVersion }, before, 'neither object was rewritten')
}

interface Call {
  name: string
  tag: string
  matcher: (pvc: string) => FaultMatcher
  /** How the denial names the object the call was about. */
  names: (pvc: string) => RegExp
  /** What may exist after a failure of this call (the calls before it succeeded). */
  leaves: 'nothing'
}

const calls: Call[] = [
  {
    name: 'source Secret GET',
    tag: 'src',
    matcher: () => ({ method: 'GET', path: SOURCE_PATH }),
    names: () => /could not read its source Secret smart-restore\/smart-restore-restic/,
    leaves: 'nothing',
  },
  {
    name: 'ReplicationDestination create',
    tag: 'rd',
    matcher: () => ({ method: 'POST', path: RD_POST_PATH }),
    names: (pvc) => new RegExp(`could not set up its restore: .*ReplicationDestination ${NS}/${pvc}-restore`),
    // The RD is created first: its failure leaves nothing.
    leaves: 'nothing',
  },
  {
    name: 'Secret apply',
    tag: 'sec',
    matcher: (pvc) => ({ method: 'PATCH', path: `/api/v1/namespaces/${NS}/secrets/${pvc}-restic` }),
    names: (pvc) => new RegExp(`could not set up its restore: .*Secret ${NS}/${pvc}-restic`),
    // The RD this admission made is taken back (uid precondition): nothing is left behind.
    leaves: 'nothing',
  },
]

interface Fault {
  name: string
  tag: string
  action: FaultAction
  /** Expected denial code for a write; the source Secret read is always 503 (retryable). */
  code: number
  says: RegExp
}

const faults: Fault[] = [
  { name: '403', tag: '403', action: { status: 403, reason: 'Forbidden' }, code: 403, says: /forbidden/i },
  { name: '500', tag: '500', action: { status: 500, reason: 'InternalError', message: 'etcdserver: request timed out' }, code: 503, says: /etcdserver: request timed out/ },
  { name: 'connection reset', tag: 'reset', action: { reset: true }, code: 503, says: /network|reset|socket hang up|ECONNRESET/i },
  { name: `hang past requestTimeoutMs (${REQUEST_TIMEOUT_MS} ms)`, tag: 'hang', action: { hang: true }, code: 503, says: /timeout/i },
]

let seq = 0
/** PUTs the test itself sent to S3 (seeding); the service must add none. */
let seeded = 0
/** A PVC name short enough that `<pvc>-restore` needs no shortening. */
async function seededPvc(tag: string): Promise<string> {
  const pvc = `api-${++seq}-${tag}`
  const keys = [`${NS}/${pvc}/config`, `${NS}/${pvc}/snapshots/${randomUUID().replace(/-/g, '')}`]
  await seed(s3.endpoint, keys)
  seeded += keys.length
  return pvc
}

for (const call of calls) {
  for (const fault of faults) {
    t.test(`${call.name}: ${fault.name}`, async (t) => {
      const pvc = await seededPvc(`${call.tag}-${fault.tag}`)
      const f = api.fail({ ...call.matcher(pvc), times: 1 }, fault.action)
      const denied = await create(pvc)
      t.equal(f.hits, 1, 'the fault was hit')
      t.equal(denied.response.allowed, false, 'denied: no PVC without its restore objects')
      t.notOk(denied.response.patch, 'no patch')
      t.equal(denied.response.status.code, call.leaves === 'nothing' && call.name.startsWith('source') ? 503 : fault.code, 'status code')
      t.match(denied.response.status.message, new RegExp(`^a backup of ${NS}/${pvc} exists, but smart-restore could`), 'says a backup exists')
      t.match(denied.response.status.message, call.names(pvc), 'names the object')
      t.match(denied.response.status.message, fault.says, `carries the API's answer (${fault.says})`)
      t.match(denied.response.status.message, /The PVC was not created.*retry/i, 'says the PVC was not created and to retry')
      t.ok(denied.ms < PROBE_DEADLINE_MS + REQUEST_TIMEOUT_MS + SLACK_MS, `answered in ${Math.round(denied.ms)} ms`)
      t.comment(denied.response.status.message)

      // Nothing half-made: a failed Secret write takes back the RD made before it.
      t.same(secretsOf(pvc), [], 'no Secret')
      t.same(rdsOf(pvc), [], 'no ReplicationDestination')

      await assertConverges(t, pvc)
    })
  }
}

t.test('a slow API performs the write after the client gave up: the retry finds it and converges', async (t) => {
  for (const [what, matcher] of [
    ['Secret apply', (pvc: string) => ({ method: 'PATCH', path: `/api/v1/namespaces/${NS}/secrets/${pvc}-restic` })],
    ['ReplicationDestination create', () => ({ method: 'POST', path: RD_POST_PATH })],
  ] as const) {
    const pvc = await seededPvc(`slow-${what === 'Secret apply' ? 'sec' : 'rd'}`)
    api.fail({ ...matcher(pvc), times: 1 }, { delayMs: REQUEST_TIMEOUT_MS + 300 })
    const denied = await create(pvc)
    t.equal(denied.response.allowed, false, `${what}: denied (timeout)`)
    t.match(denied.response.status.message, /timeout/i)
    // The write lands after the answer.
    await new Promise((r) => setTimeout(r, 500))
    if (what === 'ReplicationDestination create') t.equal(rdsOf(pvc).length, 1, 'the late RD create landed')
    else t.equal(secretsOf(pvc).length, 1, 'the late Secret apply landed')
    await assertConverges(t, pvc)
  }
})

t.test('409: a foreign ReplicationDestination with a different spec', async (t) => {
  const pvc = await seededPvc('foreign-rd')
  const foreign = {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationDestination',
    metadata: { name: `${pvc}-restore`, namespace: NS, labels: { team: 'someone-else' } },
    spec: { trigger: { manual: 'theirs' }, restic: { repository: 'their-secret', copyMethod: 'Direct', destinationPVC: 'elsewhere' } },
  }
  const stored = api.objects.put(RDS, foreign)
  const denied = await create(pvc)
  t.equal(denied.response.allowed, false)
  t.equal(denied.response.status.code, 409)
  t.equal(denied.response.status.reason, 'Conflict')
  t.match(denied.response.status.message, new RegExp(`ReplicationDestination ${NS}/${pvc}-restore already exists and is not managed by smart-restore`))
  t.match(denied.response.status.message, /spec\.\S+ is .*smart-restore wants/, 'says which field differs')
  t.match(denied.response.status.message, /resolve the conflict and retry/)
  t.same(api.objects.get(RDS, NS, `${pvc}-restore`), stored, 'the foreign RD is untouched')
  t.ok(secretsOf(pvc).length <= 1)
  for (const s of secretsOf(pvc)) assertCompleteSecret(t, s, pvc)
  t.comment(`left after the denial: ${secretsOf(pvc).map((s) => `Secret ${s.metadata.name}`).join(', ') || 'nothing'}`)

  // Still in the way: the same denial, no second Secret.
  const again = await create(pvc)
  t.equal(again.response.status.code, 409, 'a retry before the conflict is resolved is denied the same way')
  t.ok(secretsOf(pvc).length <= 1)

  api.objects.delete(RDS, NS, `${pvc}-restore`)
  await assertConverges(t, pvc)
})

t.test('409: a foreign Secret with different values', async (t) => {
  const pvc = await seededPvc('foreign-secret')
  // Created through the API by another field manager, as `kubectl create secret` would.
  const res = await fetch(`${api.url}/api/v1/namespaces/${NS}/secrets?fieldManager=kubectl-create`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: `${pvc}-restic`, namespace: NS },
      stringData: { RESTIC_PASSWORD: FOREIGN_PASSWORD, RESTIC_REPOSITORY: 's3:elsewhere/bucket/x' },
    }),
  })
  t.equal(res.status, 201, 'the foreign Secret exists')
  const stored = api.objects.get(SECRETS, NS, `${pvc}-restic`)
  const denied = await create(pvc)
  t.equal(denied.response.allowed, false)
  t.equal(denied.response.status.code, 409)
  t.match(denied.response.status.message, new RegExp(`Secret ${NS}/${pvc}-restic exists with values smart-restore did not write`))
  t.match(denied.response.status.message, /conflicting fields: .*data\.RESTIC_PASSWORD/)
  t.match(denied.response.status.message, /managers: kubectl-create/)
  for (const v of [FOREIGN_PASSWORD, RESTIC_PASSWORD, Buffer.from(FOREIGN_PASSWORD).toString('base64'), Buffer.from(RESTIC_PASSWORD).toString('base64')]) {
    t.notOk(denied.response.status.message.includes(v), 'the denial holds no Secret value')
  }
  t.same(api.objects.get(SECRETS, NS, `${pvc}-restic`), stored, 'the foreign Secret is untouched')
  t.same(rdsOf(pvc), [], 'no ReplicationDestination')

  api.objects.delete(SECRETS, NS, `${pvc}-restic`)
  await assertConverges(t, pvc)
  assertNoSecrets(t, log.text(), 'the log (with the foreign value)', [...SECRET_VALUES, FOREIGN_PASSWORD])
})

t.test('a slow API does not push the answer past the apiserver\'s timeout (bug 4, fixed: the budget reaches the writes)', async (t) => {
  // ?timeout=1s: the apiserver stops listening after 1 s, so the service's budget is 750 ms. Each
  // call is slow but inside kube.requestTimeoutMs (400 ms): 330 + 380 + 380 ms after the probe, so a
  // service that gave each write its own full request timeout would answer after more than 1 s.
  const pvc = await seededPvc('budget')
  api.fail({ method: 'GET', path: SOURCE_PATH }, { delayMs: 330 })
  api.fail({ method: 'PATCH', path: `/api/v1/namespaces/${NS}/secrets/${pvc}-restic` }, { delayMs: 380 })
  api.fail({ method: 'POST', path: RD_POST_PATH }, { delayMs: 380 })
  const d = body(pvc)
  const r = await client.post('/mutate', JSON.stringify(d), { query: '?timeout=1s' })
  t.ok(r.ms < 1000, `answered in ${Math.round(r.ms)} ms, before the apiserver's 1 s timeout`)
  t.equal(r.json?.response?.uid, d.request.uid, 'an AdmissionReview for this request')
  if (r.json?.response?.allowed === false) t.match(r.json.response.status.message, /timeout|deadline|gave up/i, `denied for the spent budget: ${r.json.response.status.message}`)
  // Whatever landed late, the retry converges.
  await new Promise((res) => setTimeout(res, 500))
  await assertConverges(t, pvc)
})

t.test('nothing was ever written to S3, and no test credential reached the log', async (t) => {
  t.equal(s3.writes().length, seeded, `the only S3 writes are the test's own ${seeded} seeding PUTs`)
  t.ok(s3.requests.some((r) => r.method === 'GET' && r.path.includes('list-type=2')), 'the service did probe (ListObjectsV2)')
  t.equal(log.lines().filter((l) => l.level >= 50 && l.msg !== 'admission').length, 0, 'no error-level line (nothing unhandled)')
  assertNoSecrets(t, log.text())
})
