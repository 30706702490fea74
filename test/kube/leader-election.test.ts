/**
 * Leader election through the loopback API server and the real client-node plumbing: Lease
 * semantics as client-go's tools/leaderelection has them — acquire (create), renew, another holder's
 * lease respected until it has not changed for its duration by OUR clock, an expired one taken
 * (leaseTransitions + 1), a lost race on resourceVersion (409) is not leadership, release on stop
 * (the next replica takes over at its next retry), and a leader that cannot renew within
 * renewDeadline stops leading (also when its requests hang). Plus the configuration's checks.
 */
import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config/load.js'
import { defaultIdentity, LeaderElector, microTime, type LeaderElectionOptions } from '../../src/kube/leader-election.js'
import { captureLogger } from '../helpers/capture-log.js'
import { startFakeApiServer, type StoredObject } from '../helpers/fake-apiserver.js'
import { sleep, until } from '../helpers/wait.js'

const LEASES = '/apis/coordination.k8s.io/v1/leases'
const NS = 'smart-restore'
const leasePath = (name: string) => `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/${name}`
// Short, in the proportions of the defaults (15 s / 10 s / 2 s).
const TIMING = { leaseDurationMs: 1000, renewDeadlineMs: 600, retryPeriodMs: 100 }

const api = await startFakeApiServer()
t.teardown(() => api.close())

interface Spec {
  holderIdentity?: string
  leaseDurationSeconds?: number
  acquireTime?: string
  renewTime?: string
  leaseTransitions?: number
}
const lease = (name: string) => api.objects.get(LEASES, NS, name) as (StoredObject & { spec: Spec }) | undefined
const putLease = (name: string, spec: Spec) => api.objects.put(LEASES, { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace: NS }, spec })

type Tap = { teardown(fn: () => unknown): void }

/** An elector whose callbacks are recorded; stopped at the end of the test. */
function elector(t: Tap, name: string, identity: string, extra: Partial<LeaderElectionOptions> = {}) {
  const log = captureLogger('debug')
  const calls: string[] = []
  const e = new LeaderElector({
    kubeConfig: api.kubeConfig,
    namespace: NS,
    name,
    identity,
    ...TIMING,
    requestTimeoutMs: 500,
    jitter: 0,
    logger: log.logger,
    onStartedLeading: () => void calls.push('started'),
    onStoppedLeading: () => void calls.push('stopped'),
    ...extra,
  })
  t.teardown(() => e.stop())
  return { e, calls, log }
}

t.test('no Lease: created, held by this replica; onStartedLeading once', async (t) => {
  const { e, calls } = elector(t, 'fresh', 'pod-a')
  e.start()
  await until(() => e.isLeader(), 'leadership')
  const l = lease('fresh')!
  t.equal(l.spec.holderIdentity, 'pod-a')
  t.equal(l.spec.leaseDurationSeconds, 1, 'leaseDurationSeconds from leaseDurationMs')
  t.equal(l.spec.leaseTransitions, 0)
  t.match(l.spec.renewTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'renewTime is a MicroTime (six fractional digits)')
  t.match(l.spec.acquireTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/)
  t.strictSame(calls, ['started'])
  t.strictSame(e.status(), { identity: 'pod-a', lease: `${NS}/fresh`, leading: true, holder: 'pod-a' })
  const posts = api.requestsMatching('POST', `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`)
  t.equal(posts.length, 1, 'one create')
  t.equal(posts[0]!.query.fieldManager, 'smart-restore')
  t.equal(microTime(Date.parse('2025-01-02T03:04:05.678Z')), '2025-01-02T03:04:05.678000Z')
})

t.test('the leader renews every retry period: renewTime moves, acquireTime and leaseTransitions stay', async (t) => {
  const { e, calls } = elector(t, 'renew', 'pod-a')
  e.start()
  await until(() => e.isLeader(), 'leadership')
  const first = lease('renew')!
  const putsBefore = api.requestsMatching('PUT', leasePath('renew')).length
  await sleep(TIMING.retryPeriodMs * 5)
  const later = lease('renew')!
  t.ok(Date.parse(later.spec.renewTime!) > Date.parse(first.spec.renewTime!), 'renewTime advanced')
  t.equal(later.spec.acquireTime, first.spec.acquireTime, 'acquireTime kept')
  t.equal(later.spec.leaseTransitions, 0, 'no transition')
  const puts = api.requestsMatching('PUT', leasePath('renew')).slice(putsBefore)
  // Loose bounds: timers run late on a busy machine; what matters is steady renewals, not a burst.
  t.ok(puts.length >= 2 && puts.length <= 10, `renewed about once per retry period (${puts.length} in 5)`)
  t.ok(puts.every((p) => typeof (p.body as StoredObject).metadata.resourceVersion === 'string'), 'each PUT carries the resourceVersion (optimistic concurrency)')
  t.ok(puts.every((p) => (p.body as StoredObject).metadata.managedFields === undefined), 'no managedFields sent back')
  t.strictSame(calls, ['started'], 'still the same term')
  t.ok(e.isLeader())
})

t.test("another holder's unexpired lease is respected; its renewals keep it valid", async (t) => {
  putLease('held', { holderIdentity: 'pod-other', leaseDurationSeconds: 1, acquireTime: microTime(Date.now()), renewTime: microTime(Date.now()), leaseTransitions: 2 })
  const { e, calls } = elector(t, 'held', 'pod-a')
  e.start()
  // "pod-other" renews every 200 ms: the lease keeps changing, so it never expires for pod-a.
  const renewing = setInterval(() => api.objects.update(LEASES, NS, 'held', (o: any) => (o.spec.renewTime = microTime(Date.now()))), 200)
  t.teardown(() => clearInterval(renewing))
  await sleep(TIMING.leaseDurationMs * 2)
  t.notOk(e.isLeader(), 'not leader')
  t.strictSame(calls, [], 'no work started')
  t.equal(lease('held')!.spec.holderIdentity, 'pod-other')
  t.equal(lease('held')!.spec.leaseTransitions, 2)
  t.strictSame(e.status(), { identity: 'pod-a', lease: `${NS}/held`, leading: false, holder: 'pod-other' })
  t.equal(api.requestsMatching('PUT', leasePath('held')).length, 0, 'never written')
  t.ok(api.requestsMatching('GET', leasePath('held')).length >= 5, 'read every retry period')
  clearInterval(renewing)
})

t.test('an expired lease is taken over with leaseTransitions + 1, judged by the local clock of observation', async (t) => {
  // renewTime an hour in the past: client-go still waits a whole lease duration from when it first
  // saw the record (the holder's clock may be off); and one in the future does not hold it forever.
  for (const [name, renewedAt] of [['expired-past', Date.now() - 3_600_000], ['expired-future', Date.now() + 3_600_000]] as const) {
    putLease(name, { holderIdentity: 'pod-gone', leaseDurationSeconds: 1, acquireTime: microTime(renewedAt), renewTime: microTime(renewedAt), leaseTransitions: 3 })
    const { e, calls, log } = elector(t, name, 'pod-a')
    const started = Date.now()
    e.start()
    await sleep(TIMING.leaseDurationMs / 2)
    t.notOk(e.isLeader(), `${name}: not taken before the lease duration has passed unchanged`)
    t.equal(e.status().holder, 'pod-gone')
    await until(() => e.isLeader(), `${name}: leadership`, 3000)
    const waited = Date.now() - started
    t.ok(waited >= TIMING.leaseDurationMs, `${name}: taken after ${waited} ms (lease duration ${TIMING.leaseDurationMs} ms)`)
    t.ok(waited < 2 * TIMING.leaseDurationMs, `${name}: at a retry after it expired, not a second lease duration later`)
    const l = lease(name)!
    t.equal(l.spec.holderIdentity, 'pod-a')
    t.equal(l.spec.leaseTransitions, 4, 'leaseTransitions + 1')
    t.ok(Math.abs(Date.parse(l.spec.acquireTime!) - Date.now()) < 2000, 'acquireTime is now')
    t.strictSame(calls, ['started'])
    t.ok(log.lines().some((l) => l.msg === 'leader election: lease taken over' && l.previous === 'pod-gone'), 'logged, naming the previous holder')
    await e.stop()
  }
})

t.test('conflict on resourceVersion: the replica that loses the race does not lead', async (t) => {
  // Released (no holder): pod-a reads it and PUTs at once. Its PUT is held back while "pod-rival"
  // writes the Lease, so pod-a's PUT carries a stale resourceVersion: 409.
  putLease('race', { leaseDurationSeconds: 1, leaseTransitions: 7 })
  const delayed = api.fail({ method: 'PUT', path: leasePath('race') }, { delayMs: 300 })
  const { e, calls, log } = elector(t, 'race', 'pod-a')
  e.start()
  await until(() => delayed.hits === 1, 'the PUT to be held back')
  api.objects.update(LEASES, NS, 'race', (o: any) => (o.spec = { holderIdentity: 'pod-rival', leaseDurationSeconds: 30, acquireTime: microTime(Date.now()), renewTime: microTime(Date.now()), leaseTransitions: 8 }))
  await sleep(600)
  t.notOk(e.isLeader(), 'not leader')
  t.strictSame(calls, [], 'no work started')
  t.equal(lease('race')!.spec.holderIdentity, 'pod-rival', 'the winner keeps it')
  t.equal(lease('race')!.spec.leaseTransitions, 8)
  t.equal(api.requestsMatching('PUT', leasePath('race')).length, 1, 'one attempt, which conflicted')
  t.ok(log.lines().some((l) => l.msg === 'leader election: another replica wrote the lease first' && /modified/.test(l.err)), 'the 409 was seen')
  t.equal(e.status().holder, 'pod-rival', 'and then the rival is respected')
})

t.test('release on stop: the work stops first, the Lease is cleared, a second replica takes over within one retry period', async (t) => {
  const order: string[] = []
  const a = elector(t, 'handover', 'pod-a', {
    onStoppedLeading: async () => {
      await sleep(50) // e.g. the reconciler finishing its handlers
      order.push(`stopped while the lease is ${lease('handover')!.spec.holderIdentity ?? 'free'}`)
    },
  })
  a.e.start()
  await until(() => a.e.isLeader(), 'pod-a to lead')
  const b = elector(t, 'handover', 'pod-b')
  b.e.start()
  await sleep(TIMING.retryPeriodMs * 3)
  t.notOk(b.e.isLeader(), 'pod-b follows while pod-a renews')
  t.equal(b.e.status().holder, 'pod-a')
  const transitions = lease('handover')!.spec.leaseTransitions!
  await a.e.stop()
  const released = Date.now()
  t.strictSame(order, ['stopped while the lease is pod-a'], 'onStoppedLeading ran (and finished) before the release')
  t.notOk(a.e.isLeader())
  const l = lease('handover')!
  if (b.e.isLeader()) t.pass('pod-b already took it')
  else {
    t.equal(l.spec.holderIdentity, undefined, 'holderIdentity cleared')
    t.equal(l.spec.leaseDurationSeconds, 1, 'leaseDurationSeconds 1 (client-go ReleaseOnCancel)')
  }
  await until(() => b.e.isLeader(), 'pod-b to lead', 2000)
  const took = Date.now() - released
  // The bound that tells the two behaviours apart: a released lease is taken at the next retry,
  // an unreleased one only after a whole lease duration (timers may run late on a busy machine).
  t.ok(took < TIMING.leaseDurationMs, `pod-b leads ${took} ms after the release (retry period ${TIMING.retryPeriodMs} ms), not a lease duration later`)
  t.equal(lease('handover')!.spec.holderIdentity, 'pod-b')
  t.equal(lease('handover')!.spec.leaseTransitions, transitions + 1)
  t.strictSame(b.calls, ['started'])
})

t.test('renewals failing for renewDeadline stop the leader (requests hanging, too); it leads again once the API answers', async (t) => {
  const { e, calls, log } = elector(t, 'deadline', 'pod-a', { requestTimeoutMs: 5000 })
  e.start()
  await until(() => e.isLeader(), 'leadership')
  await sleep(TIMING.retryPeriodMs * 2)
  // The lease requests hang (requestTimeoutMs 5 s): the renew deadline must still be kept.
  const hang = api.fail({ path: leasePath('deadline'), times: Infinity }, { hang: true })
  await until(() => !e.isLeader(), 'leadership to end', 3000)
  // renewTime of the last renewal that got through is when that request started (our clock).
  const after = Date.now() - Date.parse(lease('deadline')!.spec.renewTime!)
  t.ok(after >= TIMING.renewDeadlineMs, `stopped leading ${after} ms after the last successful renewal started: not before renewDeadline (${TIMING.renewDeadlineMs} ms)`)
  t.ok(after < TIMING.leaseDurationMs, 'before any other replica could take the lease over (and not a request timeout, 5 s, later)')
  await until(() => calls.length === 2, 'onStoppedLeading')
  t.strictSame(calls, ['started', 'stopped'])
  t.ok(log.lines().some((l) => l.msg === "leader election: leadership lost; stopping the leader's work" && /renewDeadline/.test(l.why)), 'says why')
  t.equal(e.status().leading, false)
  hang.cancel()
  // The lease still names pod-a (nobody else took it): renewing it is leading again, no transition.
  // (A follower's request may still be hanging: it gives up after requestTimeoutMs.)
  await until(() => e.isLeader(), 'leadership again', 5000 + 2000)
  t.strictSame(calls, ['started', 'stopped', 'started'], 'the work starts again')
  t.equal(lease('deadline')!.spec.leaseTransitions, 0)
})

t.test('a leader that finds another holder in the Lease stops at its next renewal', async (t) => {
  const { e, calls, log } = elector(t, 'taken', 'pod-a')
  e.start()
  await until(() => e.isLeader(), 'leadership')
  api.objects.update(LEASES, NS, 'taken', (o: any) => (o.spec = { ...o.spec, holderIdentity: 'pod-intruder', renewTime: microTime(Date.now()), leaseTransitions: 1 }))
  await until(() => !e.isLeader(), 'leadership to end', TIMING.retryPeriodMs * 3)
  await until(() => calls.length === 2, 'onStoppedLeading')
  t.ok(log.lines().some((l) => /held by pod-intruder/.test(l.why ?? '')), 'lost to pod-intruder')
  t.equal(lease('taken')!.spec.holderIdentity, 'pod-intruder', 'not taken back, not released')
  await e.stop()
  t.equal(lease('taken')!.spec.holderIdentity, 'pod-intruder', 'stopping does not release a lease it does not hold')
})

t.test('stop while following: nothing written', async (t) => {
  putLease('follow', { holderIdentity: 'pod-other', leaseDurationSeconds: 30, renewTime: microTime(Date.now()), acquireTime: microTime(Date.now()), leaseTransitions: 0 })
  const { e, calls } = elector(t, 'follow', 'pod-a')
  e.start()
  await until(() => e.status().holder === 'pod-other', 'the holder to be seen')
  const before = lease('follow')!.metadata.resourceVersion
  await e.stop()
  t.equal(lease('follow')!.metadata.resourceVersion, before, 'the Lease is untouched')
  t.strictSame(calls, [])
})

t.test('identity: POD_NAME, else hostname with a random suffix', async (t) => {
  t.equal(defaultIdentity({ POD_NAME: 'smart-restore-7d9f-abcde' }), 'smart-restore-7d9f-abcde')
  const a = defaultIdentity({})
  t.match(a, /^.+_[0-9a-f]{8}$/)
  t.not(defaultIdentity({}), a, 'two processes on one host differ')
})

t.test('configuration: defaults, POD_NAMESPACE, and each inconsistency names its field', async (t) => {
  const d = loadConfig({ env: {} }).leaderElection
  t.strictSame(d, { enabled: true, leaseName: 'smart-restore', namespace: 'smart-restore', leaseDurationMs: 15000, renewDeadlineMs: 10000, retryPeriodMs: 2000 }, "client-go's defaults")
  t.equal(loadConfig({ env: { POD_NAMESPACE: 'backup-system' } }).leaderElection.namespace, 'backup-system', 'the pod namespace')
  t.equal(loadConfig({ env: { SMART_RESTORE_LEADER_ELECTION: 'false' } }).leaderElection.enabled, false)
  t.equal(loadConfig({ env: {}, overrides: { leaderElection: { retryPeriodMs: 1000 } } }).leaderElection.renewDeadlineMs, 10000, 'a partial section keeps the other defaults')
  const bad: Array<[string, unknown, string, RegExp]> = [
    ['renewDeadline = leaseDuration', { leaseDurationMs: 10000, renewDeadlineMs: 10000 }, 'leaderElection.renewDeadlineMs', /less than leaseDurationMs/],
    ['retryPeriod > renewDeadline', { renewDeadlineMs: 3000, retryPeriodMs: 5000 }, 'leaderElection.retryPeriodMs', /less than renewDeadlineMs/],
    ['lease duration not whole seconds', { leaseDurationMs: 15500 }, 'leaderElection.leaseDurationMs', /whole seconds/],
    ['lease duration under a second', { leaseDurationMs: 500, renewDeadlineMs: 400, retryPeriodMs: 100 }, 'leaderElection.leaseDurationMs', /between 1000/],
    ['bad lease name', { leaseName: 'Smart_Restore' }, 'leaderElection.leaseName', /not a valid object name/],
    ['bad namespace', { namespace: 'a.b' }, 'leaderElection.namespace', /not a valid namespace/],
    ['enabled not a boolean', { enabled: 'yes' }, 'leaderElection.enabled', /true or false/],
    ['unknown setting', { leaseDurationSeconds: 15 }, 'leaderElection.leaseDurationSeconds', /unknown setting/],
  ]
  for (const [what, section, field, message] of bad) {
    try {
      loadConfig({ env: {}, overrides: { leaderElection: section } })
      t.fail(`${what}: accepted`)
    } catch (err) {
      t.ok(err instanceof ConfigError, `${what}: ConfigError`)
      t.equal((err as ConfigError).field, field, `${what}: names ${field}`)
      t.match((err as Error).message, message, what)
    }
  }
  t.throws(() => loadConfig({ env: { POD_NAMESPACE: 'Not_A_Namespace' } }), new ConfigError('leaderElection.namespace', '"Not_A_Namespace" is not a valid namespace name'), 'a bad POD_NAMESPACE too')
})
