/**
 * EventRecorder through ClusterClient and the real client-node plumbing against the fake apiserver
 * (which validates core/v1 Events like the apiserver): the exact Event, dedupe in memory and across
 * replicas, recurrence, and failures that are logged, never thrown.
 */
import t from 'tap'
import { ClusterClient } from '../../src/kube/cluster-client.js'
import { EventRecorder, eventName, kubeMicroTime, kubeTime, truncateUtf8, type EventRecorderOptions } from '../../src/kube/events.js'
import type { EventSpec } from '../../src/reconcile/types.js'
import { captureLogger } from '../helpers/capture-log.js'
import { startFakeApiServer, type FakeApiServer } from '../helpers/fake-apiserver.js'

type Tap = { teardown(fn: () => unknown): void }

const EVENTS = '/api/v1/events'
const EVENTS_URL = '/api/v1/namespaces/media/events'
const PVC = { namespace: 'media', name: 'data-claim', uid: '4f1c2d9e-0000-4000-8000-000000000001' }
const FAILED: EventSpec = { type: 'Warning', reason: 'RefusedToAttach', message: 'the backup store answered 403 AccessDenied for s3://backups/media/data-claim' }
const T0 = Date.parse('2026-03-01T10:00:00.123Z')
const MIN = 60_000

async function setup(t: Tap, opts: Partial<EventRecorderOptions> = {}) {
  const server = await startFakeApiServer()
  t.teardown(() => server.close())
  const log = captureLogger('debug')
  const client = new ClusterClient(server.kubeConfig, { requestTimeoutMs: 500, fieldManager: 'smart-restore' })
  const clock = { now: T0 }
  const make = (more: Partial<EventRecorderOptions> = {}) => new EventRecorder({ client, now: () => clock.now, logger: log.logger, instance: 'smart-restore-6c9d-x1', ...opts, ...more })
  return { server, client, log, clock, recorder: make(), make }
}

const posts = (s: FakeApiServer) => s.requestsMatching('POST', EVENTS_URL)
const stored = (s: FakeApiServer) => s.objects.list(EVENTS, 'media')

t.test('the Event: deterministic name, involvedObject with uid, reporting fields, timestamps the apiserver decodes', async (t) => {
  const { server, recorder } = await setup(t)
  t.equal(await recorder.record(PVC, FAILED), 'sent')
  t.equal(posts(server).length, 1)
  const post = posts(server)[0]!
  t.strictSame(post.query, { fieldManager: 'smart-restore' })
  const name = eventName(PVC, FAILED)
  t.match(name, /^data-claim\.[0-9a-f]{16}$/)
  t.strictSame(post.body, {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name, namespace: 'media' },
    involvedObject: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: 'media', name: 'data-claim', uid: PVC.uid },
    type: 'Warning',
    reason: 'RefusedToAttach',
    message: FAILED.message,
    action: 'Reconcile',
    source: { component: 'smart-restore' },
    reportingComponent: 'smart-restore',
    reportingInstance: 'smart-restore-6c9d-x1',
    firstTimestamp: '2026-03-01T10:00:00Z',
    lastTimestamp: '2026-03-01T10:00:00Z',
    eventTime: '2026-03-01T10:00:00.123000Z',
    count: 1,
  })
  t.equal(stored(server).length, 1, 'the apiserver (validation as for core/v1) took it')
  t.equal(stored(server)[0]!.metadata.name, name)
  t.strictSame(recorder.stats(), { sent: 1, deduplicated: 0, exists: 0, bumped: 0, failed: 0 })
})

t.test('an action given with the event is used; reportingInstance defaults to HOSTNAME (the pod name)', async (t) => {
  const saved = process.env.HOSTNAME
  process.env.HOSTNAME = 'smart-restore-5f7b8-qwxyz'
  t.teardown(() => {
    if (saved === undefined) delete process.env.HOSTNAME
    else process.env.HOSTNAME = saved
  })
  const { server, make } = await setup(t)
  const recorder = make({ instance: undefined })
  await recorder.record(PVC, { type: 'Normal', reason: 'BackupAttached', message: 'hourly', action: 'ApplyReplicationSource' })
  t.match(posts(server)[0]!.body, { reportingInstance: 'smart-restore-5f7b8-qwxyz', action: 'ApplyReplicationSource' })
})

t.test('in memory: the same event twice (or concurrently) is one POST within the window; another message is another Event', async (t) => {
  const { server, recorder, clock } = await setup(t)
  t.equal(await recorder.record(PVC, FAILED), 'sent')
  clock.now += 9 * MIN
  t.equal(await recorder.record(PVC, FAILED), 'deduplicated')
  t.equal(posts(server).length, 1)
  const [a, b] = await Promise.all([recorder.record(PVC, { ...FAILED, message: 'other' }), recorder.record(PVC, { ...FAILED, message: 'other' })])
  t.strictSame([a, b].sort(), ['deduplicated', 'sent'])
  t.equal(posts(server).length, 2)
  t.equal(await recorder.record({ ...PVC, uid: 'a-new-pvc-of-that-name' }, FAILED), 'sent', 'a new PVC (uid) is a new Event')
  t.equal(stored(server).length, 3)
  t.strictSame(recorder.stats(), { sent: 3, deduplicated: 2, exists: 0, bumped: 0, failed: 0 })
})

t.test('two replicas: one Event object; the second create gets 409 AlreadyExists and is success, nothing more written', async (t) => {
  const { server, recorder, make } = await setup(t)
  const replica2 = make({ instance: 'smart-restore-6c9d-x2' })
  t.equal(await recorder.record(PVC, FAILED), 'sent')
  const rv = server.objects.resourceVersion
  t.equal(await replica2.record(PVC, FAILED), 'exists')
  t.equal(posts(server).length, 2)
  t.equal(stored(server).length, 1)
  t.equal(server.objects.resourceVersion, rv, 'no write')
  t.equal(server.requestsMatching('PATCH', `${EVENTS_URL}/*`).length, 0)
  // The second replica remembers it too.
  t.equal(await replica2.record(PVC, FAILED), 'deduplicated')
  t.equal(posts(server).length, 2)
})

t.test('the condition still there a window later: count and lastTimestamp bumped, once per window', async (t) => {
  const { server, recorder, make, clock } = await setup(t)
  await recorder.record(PVC, FAILED)
  clock.now += 11 * MIN
  t.equal(await recorder.record(PVC, FAILED), 'bumped')
  const patch = server.requestsMatching('PATCH', `${EVENTS_URL}/*`)[0]!
  t.equal(patch.contentType, 'application/merge-patch+json')
  t.match(patch.body, { metadata: { resourceVersion: /^\d+$/ }, count: 2, lastTimestamp: kubeTime(clock.now) })
  t.match(stored(server)[0], { count: 2, firstTimestamp: '2026-03-01T10:00:00Z', lastTimestamp: '2026-03-01T10:11:00Z' })
  // Another replica a minute later: reported within the window, no second bump.
  clock.now += MIN
  t.equal(await make().record(PVC, FAILED), 'exists')
  t.equal(stored(server)[0]!.count, 2)
})

t.test('Events API failures are logged, never thrown; a failed event is retried after the failure backoff', async (t) => {
  const { server, recorder, log, clock } = await setup(t)
  server.fail({ method: 'POST', path: EVENTS_URL }, { status: 403 })
  t.equal(await recorder.record(PVC, FAILED), 'failed')
  const warn = log.lines().find((l) => l.msg.startsWith('could not write an Event'))
  t.match(warn, { level: 40, kind: 'forbidden', status: 403, reason: 'RefusedToAttach', pvc: 'media/data-claim', err: /cannot create resource "events"/ })
  t.equal(await recorder.record(PVC, FAILED), 'deduplicated', 'not hammered')
  clock.now += MIN
  server.fail({ method: 'POST', path: EVENTS_URL }, { status: 500 })
  t.equal(await recorder.record(PVC, FAILED), 'failed')
  clock.now += MIN
  server.fail({ method: 'POST', path: EVENTS_URL }, { hang: true })
  t.equal(await recorder.record(PVC, FAILED), 'failed', 'a hung API is a timeout, reported as failed')
  clock.now += MIN
  t.equal(await recorder.record(PVC, FAILED), 'sent')
  t.equal(stored(server).length, 1)
  t.strictSame(recorder.stats(), { sent: 1, deduplicated: 1, exists: 0, bumped: 0, failed: 3 })
  // A failure on the read after a 409 is a failure too, not an exception.
  clock.now += 20 * MIN
  server.fail({ method: 'GET', path: `${EVENTS_URL}/*` }, { status: 500 })
  t.equal(await recorder.record({ ...PVC }, FAILED), 'failed')
})

t.test('a recorder whose client throws synchronously still resolves', async (t) => {
  const client = {
    createObject: () => {
      throw new Error('boom')
    },
    readObject: () => Promise.reject(new Error('no')),
    mergePatchObject: () => Promise.reject(new Error('no')),
  } as unknown as EventRecorderOptions['client']
  const log = captureLogger()
  const recorder = new EventRecorder({ client, logger: log.logger, instance: 'x' })
  t.equal(await recorder.record(PVC, FAILED), 'failed')
  t.match(log.text(), /boom/)
})

t.test('long messages are cut to 1024 bytes (the apiserver accepts them); long PVC names give names within 253', async (t) => {
  const { server, recorder } = await setup(t)
  const message = 'ü'.repeat(700)
  t.equal(await recorder.record(PVC, { ...FAILED, message }), 'sent')
  const sent = (posts(server)[0]!.body as { message: string }).message
  t.ok(Buffer.byteLength(sent) <= 1024)
  t.ok(sent.endsWith('…'))
  t.equal(stored(server).length, 1)
  const longName = 'a'.repeat(250) + '.b'
  const name = eventName({ ...PVC, name: longName }, FAILED)
  t.ok(name.length <= 253)
  t.match(name, /^a+\.[0-9a-f]{16}$/)
  t.equal(await recorder.record({ ...PVC, name: longName }, FAILED), 'sent')
  t.equal(stored(server).length, 2)
})

t.test('helpers: time formats and UTF-8 truncation', async (t) => {
  t.equal(kubeTime(T0), '2026-03-01T10:00:00Z')
  t.equal(kubeMicroTime(T0), '2026-03-01T10:00:00.123000Z')
  t.equal(truncateUtf8('short', 10), 'short')
  t.equal(truncateUtf8('abcdef', 5), 'ab…')
  t.equal(truncateUtf8('ééé', 5), 'é…', 'never inside a character')
})

t.test('memory stays bounded: the oldest remembered events are forgotten', async (t) => {
  const { server, make, clock } = await setup(t)
  const recorder = make({ maxRemembered: 2 })
  for (const m of ['a', 'b', 'c']) {
    await recorder.record(PVC, { ...FAILED, message: m })
    clock.now += 1000
  }
  // 'a' was forgotten: recorded again it is a create again, which finds the Event of this window (409): exists.
  t.equal(await recorder.record(PVC, { ...FAILED, message: 'a' }), 'exists')
  t.equal(await recorder.record(PVC, { ...FAILED, message: 'c' }), 'deduplicated')
  t.equal(stored(server).length, 3)
})
