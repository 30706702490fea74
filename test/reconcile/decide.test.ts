/**
 * The reconciliation table, row by row, without any network: reconcilePvc over PVC states as the
 * watched cache holds them, the objects smart-restore may have made, and the store's answer.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { backupSourceName } from '../../src/engines/names.js'
import { buildRepositorySecret, buildReplicationSource, MANAGED_BY_LABEL, MANAGED_BY_VALUE, pvcOwnerReference } from '../../src/engines/volsync.js'
import type { KubeObject } from '../../src/inflight/types.js'
import { COUNTER, deepEqual, reconcilePvc, RESTORE_RUNNING_REQUEUE_MS, sourceDifferences, STORE_UNKNOWN_REQUEUE_MS } from '../../src/reconcile/decide.js'
import { spreadSchedule } from '../../src/reconcile/schedule.js'
import type { PvcState, ReconcileInput, ReconcilePlan, ReconcileStep } from '../../src/reconcile/types.js'
import type { ProbeResult } from '../../src/storage/types.js'
import { emptyRestoreStatus, failedRestoreStatus, noMoverStatus, restoredStatus, runningRestoreStatus } from '../helpers/rd-status.js'

const config: Config = validateConfig(structuredClone(defaultConfig))
const P = 'smart-restore.io/'
const UID = 'c0ffee00-0000-4000-8000-000000000001'
const LOCATION = 's3://backups/media/data-claim'
const KEY = 'media/data-claim'
const ACK_KEY = `${P}backup-over-existing`
const ATTENTION = `${P}attention`

const none: ProbeResult = { state: 'none', location: LOCATION, detail: 'no object under media/data-claim/snapshots/' }
const exists: ProbeResult = { state: 'exists', location: LOCATION, detail: 'snapshot media/data-claim/snapshots/abc' }
const unknown: ProbeResult = { state: 'unknown', location: LOCATION, kind: 'forbidden', reason: 'S3 answered 403 AccessDenied' }

function pvc(over: Partial<PvcState> = {}): PvcState {
  return {
    namespace: 'media',
    name: 'data-claim',
    uid: UID,
    labels: { backup: 'hourly' },
    annotations: { [`${P}decision`]: 'fresh', [`${P}checked-location`]: LOCATION },
    phase: 'Bound',
    storageClassName: 'standard',
    accessModes: ['ReadWriteOnce'],
    capacity: '1Gi',
    ...over,
  }
}

/** A PVC the webhook restored from its own repository. */
function restoredPvc(over: Partial<PvcState> = {}): PvcState {
  return pvc({
    annotations: { [`${P}decision`]: 'restore', [`${P}restore-source`]: LOCATION, [`${P}replication-destination`]: 'data-claim-restore' },
    dataSourceRef: { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'data-claim-restore' },
    ...over,
  })
}

function input(p: PvcState, over: Partial<ReconcileInput> = {}): ReconcileInput {
  return { pvc: p, existing: {}, ...over }
}

const managed = { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, [`${P}pvc`]: 'data-claim' }

function object(apiVersion: string, kind: string, name: string, extra: Partial<KubeObject['metadata']> = {}, body: Record<string, unknown> = {}): KubeObject {
  return { apiVersion, kind, metadata: { name, namespace: 'media', uid: `uid-of-${name}`, ...extra }, ...body }
}

/** Our RD; by default its restore has restored a snapshot, as VolSync reports it. */
const ourRd = (owned = false, status: Record<string, unknown> | undefined = restoredStatus()) =>
  object(
    'volsync.backube/v1alpha1',
    'ReplicationDestination',
    'data-claim-restore',
    { labels: managed, ...(owned ? { ownerReferences: [pvcOwnerReference({ name: 'data-claim', uid: UID })] } : {}) },
    { spec: { trigger: { manual: 'smart-restore' } }, ...(status ? { status } : {}) },
  )

/** The `<pvc>-restic` Secret as the controller applies it (with the PVC as owner). */
const ourSecret = (owned = true) => {
  const s = buildRepositorySecret({ config, namespace: 'media', pvcName: 'data-claim', name: 'data-claim-restic', resticRepository: 's3:http://minio:9000/backups/media/data-claim', sourceData: { RESTIC_PASSWORD: 'x' } })
  return { ...s, metadata: { ...s.metadata, uid: 'uid-of-secret', ...(owned ? { ownerReferences: [pvcOwnerReference({ name: 'data-claim', uid: UID })] } : {}) } } as KubeObject
}

/** Our source as the apiserver would return it after the apply: plus uid, resourceVersion, status. */
function asStored(source: KubeObject): KubeObject {
  const s = structuredClone(source)
  s.metadata.uid = 'uid-of-source'
  s.metadata.resourceVersion = '4711'
  s.metadata.creationTimestamp = '2026-11-22T04:00:00Z'
  s.status = { lastSyncTime: '2026-11-22T04:40:00Z', conditions: [{ type: 'Synchronizing', status: 'False', reason: 'WaitingForSchedule' }] }
  return s
}

function ourSource(tier = 'hourly', p = pvc()): KubeObject {
  return asStored(buildReplicationSource({ config, pvc: p, tier, name: 'data-claim-backup', repositorySecret: 'data-claim-restic' }) as KubeObject)
}

/** The assertions the helpers use (a subtest's `t`). */
type Asserts = Pick<typeof t, 'same' | 'equal' | 'fail'>

const kinds = (plan: ReconcilePlan) => plan.steps.map((s) => s.kind)
const reasons = (plan: ReconcilePlan) => plan.events.map((e) => e.reason)
function applyStep(plan: ReconcilePlan) {
  const s = plan.steps.find((x): x is Extract<ReconcileStep, { kind: 'apply-source' }> => x.kind === 'apply-source')
  if (!s) throw new Error(`no apply-source in ${JSON.stringify(plan)}`)
  return s
}

function empty(t: Asserts, plan: ReconcilePlan, why: string) {
  t.same(plan.steps, [], `${why}: no steps`)
  t.same(plan.events, [], `${why}: no events`)
  t.same(plan.counters, [], `${why}: no counters`)
  t.equal(plan.needsProbe, undefined, `${why}: no probe`)
}

/**
 * Carry out a plan the way the controller does, on the inputs: apply the Secret and source, patch
 * the PVC's labels and annotations, add owners, delete. Returns the next input.
 */
function carryOut(inp: ReconcileInput, plan: ReconcilePlan): ReconcileInput {
  const next = structuredClone(inp)
  delete next.probe
  const owner = pvcOwnerReference(next.pvc)
  for (const step of plan.steps) {
    switch (step.kind) {
      case 'apply-source':
        next.existing.source = asStored(step.source)
        next.existing.secret = ourSecret(true)
        break
      case 'delete-source':
        delete next.existing.source
        break
      case 'own': {
        const which = step.objectKind === 'ReplicationDestination' ? 'destination' : next.existing.secret?.metadata.name === step.name ? 'secret' : 'restoreSecret'
        const obj = next.existing[which]!
        obj.metadata.ownerReferences = [...(obj.metadata.ownerReferences ?? []), owner]
        break
      }
      case 'annotate-pvc':
        for (const [k, v] of Object.entries(step.annotations)) {
          if (v === null) delete next.pvc.annotations[k]
          else next.pvc.annotations[k] = v
        }
        break
      case 'label-pvc':
        Object.assign(next.pvc.labels, step.labels)
        break
    }
  }
  return next
}

/** Reconcile until the plan asks for nothing (answering probes with `probe`); at most a few rounds. */
function converge(t: Asserts, start: ReconcileInput, probe?: ProbeResult): ReconcileInput {
  let inp = start
  for (let round = 0; round < 5; round++) {
    let plan = reconcilePvc(inp, config)
    if (plan.needsProbe) plan = reconcilePvc({ ...inp, probe }, config)
    if (plan.steps.length === 0) return inp
    inp = carryOut(inp, plan)
  }
  t.fail('did not converge in 5 rounds')
  return inp
}

t.test('excluded namespace or PVC being deleted: nothing, and the summary says why', async (t) => {
  const excluded = reconcilePvc(input(pvc({ namespace: 'kube-system' }), { existing: { source: ourSource() } }), config)
  empty(t, excluded, 'excluded')
  t.match(excluded.summary, /kube-system is excluded/)

  const deleting = reconcilePvc(input(pvc({ deletionTimestamp: '2026-11-22T05:00:00Z' }), { probe: none }), config)
  empty(t, deleting, 'deleting')
  t.match(deleting.summary, /being deleted/)
})

t.test('no tier: our source is detached, a foreign one left alone, nothing otherwise', async (t) => {
  const unlabelled = pvc({ labels: {} })
  const detach = reconcilePvc(input(unlabelled, { existing: { source: ourSource() } }), config)
  t.same(detach.steps, [{ kind: 'delete-source', name: 'data-claim-backup', uid: 'uid-of-source' }])
  t.same(detach.events, [{ type: 'Normal', reason: 'BackupDetached', message: 'tier label removed; ReplicationSource data-claim-backup deleted; the backups in S3 are kept' }])
  t.same(detach.counters, [])

  const foreign = object('volsync.backube/v1alpha1', 'ReplicationSource', 'data-claim-backup', { labels: { team: 'media' } })
  const left = reconcilePvc(input(unlabelled, { existing: { source: foreign } }), config)
  empty(t, left, 'foreign source, no tier')
  t.match(left.summary, /not smart-restore's/)

  empty(t, reconcilePvc(input(unlabelled), config), 'no tier, no source')
  empty(t, reconcilePvc(input(unlabelled, { namespaceDefaultTier: '' }), config), 'an empty namespace default is no default')

  const alreadyGoing = ourSource()
  alreadyGoing.metadata.deletionTimestamp = '2026-11-22T05:00:00Z'
  empty(t, reconcilePvc(input(unlabelled, { existing: { source: alreadyGoing } }), config), 'our source already being deleted')

  // After the delete, the next pass is empty: detaching converges.
  t.same(reconcilePvc(carryOut(input(unlabelled, { existing: { source: ourSource() } }), detach), config).steps, [])
})

t.test('an unknown tier: a Warning naming the valid tiers, and nothing touched', async (t) => {
  const typo = reconcilePvc(input(pvc({ labels: { backup: 'hourlly' } }), { existing: { source: ourSource(), destination: ourRd(false) }, probe: none }), config)
  t.same(typo.steps, [], 'an existing source is never deleted for a typo')
  t.same(typo.counters, [COUNTER.unknownTier])
  t.same(reasons(typo), ['UnknownTier'])
  t.equal(typo.events[0]!.type, 'Warning')
  t.match(typo.events[0]!.message, /label backup="hourlly" is not a backup tier; valid tiers: hourly, daily, weekly/)

  const nsTypo = reconcilePvc(input(pvc({ labels: {} }), { namespaceDefaultTier: 'nightly' }), config)
  t.same(nsTypo.steps, [], 'the PVC is not labelled with a bad default')
  t.match(nsTypo.events[0]!.message, /default tier \(label smart-restore\.io\/default-tier="nightly"\) is not a backup tier; valid tiers: hourly, daily, weekly/)

  // Object.prototype's keys are not tiers.
  t.same(reconcilePvc(input(pvc({ labels: { backup: 'constructor' } })), config).counters, [COUNTER.unknownTier])
})

t.test('namespace default: the PVC is labelled, and the tier applies at once', async (t) => {
  const p = pvc({ labels: {} })
  const first = reconcilePvc(input(p, { namespaceDefaultTier: 'daily' }), config)
  t.ok(first.needsProbe, 'a fresh PVC is probed first')
  t.same(first.steps, [], 'the probing plan carries no steps (the follow-up has them all)')
  const plan = reconcilePvc(input(p, { namespaceDefaultTier: 'daily', probe: none }), config)
  t.same(kinds(plan), ['label-pvc', 'apply-source'])
  t.same(plan.steps[0], { kind: 'label-pvc', labels: { backup: 'daily' } })
  const source = applyStep(plan).source as any
  t.equal(source.metadata.labels[`${P}tier`], 'daily')
  t.same(source.spec.restic.retain, config.tiers.daily!.retain)
  t.match(plan.summary, /labelled backup=daily from the namespace default/)

  // The PVC's own label wins over the namespace default.
  const own = reconcilePvc(input(pvc(), { namespaceDefaultTier: 'daily', probe: none }), config)
  t.same(kinds(own), ['apply-source'])
  t.equal((applyStep(own).source as any).metadata.labels[`${P}tier`], 'hourly')

  // Pending: labelled now, attached later.
  const pending = reconcilePvc(input(pvc({ labels: {}, phase: 'Pending' }), { namespaceDefaultTier: 'daily' }), config)
  t.same(kinds(pending), ['label-pvc'])
})

t.test('not Bound: wait, owning the restore objects; RestoreStarted while a restore populates it', async (t) => {
  const unbound = reconcilePvc(input(pvc({ phase: 'Pending' }), { probe: none }), config)
  empty(t, unbound, 'unbound fresh PVC')
  t.match(unbound.summary, /waiting for the PVC to be Bound \(phase Pending\)/)
  t.equal(unbound.requeueAfterMs, undefined, 'the PVC watch brings it back when it binds')
  t.match(reconcilePvc(input(pvc({ phase: undefined })), config).summary, /waiting for the PVC to be Bound \(phase unknown\)/)
  empty(t, reconcilePvc(input(pvc({ phase: 'Lost' })), config), 'Lost')

  // Still populating from its restore: the source waits, the RD and Secret get their owner now.
  const populating = reconcilePvc(input(restoredPvc({ phase: 'Pending' }), { existing: { destination: ourRd(false), secret: ourSecret(false) } }), config)
  t.same(populating.steps, [
    { kind: 'own', apiVersion: 'volsync.backube/v1alpha1', objectKind: 'ReplicationDestination', name: 'data-claim-restore' },
    { kind: 'own', apiVersion: 'v1', objectKind: 'Secret', name: 'data-claim-restic' },
  ])
  t.same(populating.events, [{ type: 'Normal', reason: 'RestoreStarted', message: `restoring from ${LOCATION}` }])
  t.match(populating.summary, /waiting for the PVC to be Bound/)
  t.equal(populating.needsProbe, undefined)

  // Already owned: nothing but the (deduped) event.
  const owned = reconcilePvc(input(restoredPvc({ phase: 'Pending' }), { existing: { destination: ourRd(true), secret: ourSecret(true) } }), config)
  t.same(owned.steps, [])
  t.same(reasons(owned), ['RestoreStarted'])

  // A dataSourceRef without decision=restore (someone else's populator) is no restore of ours.
  const other = reconcilePvc(input(pvc({ phase: 'Pending', dataSourceRef: { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'x' } })), config)
  t.same(other.events, [])
})

t.test('own: only our objects, only once, only with a uid', async (t) => {
  const foreignRd = object('volsync.backube/v1alpha1', 'ReplicationDestination', 'data-claim-restore', { labels: { team: 'x' } })
  const restoreSecret = object('v1', 'Secret', 'data-claim-restic-from-1234abcd', { labels: managed })
  const plan = reconcilePvc(input(restoredPvc({ phase: 'Pending' }), { existing: { destination: foreignRd, secret: ourSecret(true), restoreSecret } }), config)
  t.same(plan.steps, [{ kind: 'own', apiVersion: 'v1', objectKind: 'Secret', name: 'data-claim-restic-from-1234abcd' }], 'the foreign RD is not touched; the restore-from Secret is owned')
  const ownedElsewhere = ourRd(false)
  ownedElsewhere.metadata.ownerReferences = [{ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-claim', uid: 'an-earlier-pvc' }]
  t.same(kinds(reconcilePvc(input(restoredPvc({ phase: 'Pending' }), { existing: { destination: ownedElsewhere } }), config)), ['own'], 'an owner of an earlier PVC of that name is not this PVC')
  t.same(reconcilePvc(input(restoredPvc({ phase: 'Pending', uid: '' }), { existing: { destination: ourRd(false) } }), config).steps, [], 'no uid, nothing to own with')
})

t.test('bound, fresh: probe first; none → attach', async (t) => {
  const p = pvc()
  const first = reconcilePvc(input(p), config)
  t.same(first.needsProbe, { repositoryKey: KEY })
  t.same(first.steps, [])
  t.same(first.events, [])

  const plan = reconcilePvc(input(p, { probe: none }), config)
  t.equal(plan.needsProbe, undefined)
  t.same(kinds(plan), ['apply-source'])
  const step = applyStep(plan)
  t.equal(step.secretName, 'data-claim-restic')
  t.equal(step.repositoryKey, KEY)
  t.equal(step.resticRepository, '', 'the controller fills it from the store')
  t.same(step.source, buildReplicationSource({ config, pvc: p, tier: 'hourly', name: backupSourceName('data-claim'), repositorySecret: 'data-claim-restic' }))
  const schedule = spreadSchedule('H * * * *', 'media', 'data-claim')
  t.same(plan.events, [{ type: 'Normal', reason: 'BackupAttached', message: `backing up to ${LOCATION} on tier hourly (schedule ${schedule})` }])
  t.same(plan.counters, [])

  // fresh-unverified and no decision annotation at all go the same way.
  for (const annotations of [{ [`${P}decision`]: 'fresh-unverified' }, {}] as Array<Record<string, string>>) {
    t.same(reconcilePvc(input(pvc({ annotations })), config).needsProbe, { repositoryKey: KEY }, JSON.stringify(annotations))
    t.same(kinds(reconcilePvc(input(pvc({ annotations }), { probe: none }), config)), ['apply-source'])
  }
})

t.test('bound, fresh, backups exist: refused, annotated, counted', async (t) => {
  const plan = reconcilePvc(input(pvc(), { probe: exists }), config)
  const text = `backups exist at ${LOCATION}; not attaching a backup source over them: restore, or acknowledge with ${ACK_KEY}="<reason>"`
  t.same(plan.steps, [{ kind: 'annotate-pvc', annotations: { [ATTENTION]: text } }], 'no apply-source')
  t.same(plan.events, [{ type: 'Warning', reason: 'RefusedToAttach', message: text }])
  t.same(plan.counters, [COUNTER.refusedExistingBackup])
  t.equal(plan.requeueAfterMs, undefined)

  // Once annotated, the next pass does not patch again (the Event is deduped by the controller).
  const again = reconcilePvc(carryOut(input(pvc(), { probe: exists }), plan), config)
  t.ok(again.needsProbe)
  const againProbed = reconcilePvc({ ...carryOut(input(pvc(), { probe: exists }), plan), probe: exists }, config)
  t.same(againProbed.steps, [])
  t.same(reasons(againProbed), ['RefusedToAttach'])

  // "Snapshots appeared" for a PVC the webhook found empty: still refused.
  const appeared = reconcilePvc(input(pvc({ annotations: { [`${P}decision`]: 'fresh', [`${P}checked-location`]: LOCATION } }), { probe: exists }), config)
  t.same(appeared.counters, [COUNTER.refusedExistingBackup])
  t.notOk(kinds(appeared).includes('apply-source'))
})

t.test('acknowledged: attach over existing backups, clear the attention, say the reason', async (t) => {
  const refused = `backups exist at ${LOCATION}; ...`
  const p = pvc({ annotations: { [`${P}decision`]: 'fresh', [`${P}checked-location`]: LOCATION, [ATTENTION]: refused, [ACK_KEY]: ' old data is junk (ticket 42) ' } })
  const plan = reconcilePvc(input(p), config)
  t.equal(plan.needsProbe, undefined, 'an acknowledgement needs no probe')
  t.same(kinds(plan), ['apply-source', 'annotate-pvc'])
  t.same(plan.steps[1], { kind: 'annotate-pvc', annotations: { [ATTENTION]: null } })
  t.equal(plan.events[0]!.reason, 'BackupAttached')
  t.match(plan.events[0]!.message, new RegExp(`backing up to ${LOCATION} on tier hourly .*${ACK_KEY} acknowledged: old data is junk \\(ticket 42\\)`))
  t.same(plan.counters, [COUNTER.backupOverExisting])

  // An empty acknowledgement is no acknowledgement.
  const blank = reconcilePvc(input(pvc({ annotations: { [ACK_KEY]: '  ' } }), { probe: exists }), config)
  t.same(blank.counters, [COUNTER.refusedExistingBackup])
})

t.test('store unknown: no apply, a Warning, retry in a minute', async (t) => {
  const plan = reconcilePvc(input(pvc(), { probe: unknown }), config)
  t.same(plan.steps, [])
  t.same(plan.counters, [COUNTER.storeUnknown])
  t.equal(plan.requeueAfterMs, STORE_UNKNOWN_REQUEUE_MS)
  t.equal(STORE_UNKNOWN_REQUEUE_MS, 60_000)
  t.same(reasons(plan), ['StoreUnknown'])
  t.equal(plan.events[0]!.type, 'Warning')
  t.match(plan.events[0]!.message, /could not check s3:\/\/backups\/media\/data-claim for existing backups: S3 answered 403 AccessDenied/)
})

t.test('bound after a restore from its own repository: attached without a probe', async (t) => {
  const plan = reconcilePvc(input(restoredPvc(), { existing: { destination: ourRd(true), secret: ourSecret(true) } }), config)
  t.equal(plan.needsProbe, undefined)
  t.same(kinds(plan), ['apply-source'])
  t.equal(applyStep(plan).secretName, 'data-claim-restic', 'the own repository Secret')
  t.same(reasons(plan), ['BackupAttached'])
  t.match(plan.events[0]!.message, `backing up to ${LOCATION} on tier hourly`)
  t.match(plan.summary, 'restored snapshot 0ff74383 from its own repository')
  t.notOk(reasons(plan).includes('RestoreStarted'), 'Bound: the restore is over')

  // `restore-from: data-claim` (itself) is still its own repository.
  const self = restoredPvc()
  self.annotations[`${P}restore-from`] = 'media/data-claim'
  t.equal(reconcilePvc(input(self, { existing: { destination: ourRd(true) } }), config).needsProbe, undefined)

  // The restore also owns an RD left unowned.
  t.same(kinds(reconcilePvc(input(restoredPvc(), { existing: { destination: ourRd(false) } }), config)), ['own', 'apply-source'])
})

t.test('restored from ANOTHER PVC: fresh for its own repository (probe, refuse if it holds backups)', async (t) => {
  const other = restoredPvc({
    annotations: {
      [`${P}decision`]: 'restore',
      [`${P}restore-from`]: 'template-claim',
      [`${P}restore-source`]: 's3://backups/media/template-claim',
    },
  })
  const first = reconcilePvc(input(other), config)
  t.same(first.needsProbe, { repositoryKey: KEY }, 'probes the PVC\'s OWN repository, not the restore-from one')
  const noneYet = reconcilePvc(input(other, { probe: none }), config)
  t.same(kinds(noneYet), ['apply-source'])
  t.equal(applyStep(noneYet).secretName, 'data-claim-restic', 'never the restore-from Secret')
  t.equal(applyStep(noneYet).repositoryKey, KEY)
  t.same(reconcilePvc(input(other, { probe: exists }), config).counters, [COUNTER.refusedExistingBackup])

  // The restore-source alone (restore-from annotation since removed) tells it too.
  const bySource = restoredPvc({ annotations: { [`${P}decision`]: 'restore', [`${P}restore-source`]: 's3://backups/other-ns/template-claim' } })
  t.ok(reconcilePvc(input(bySource), config).needsProbe)
})

t.test('a foreign ReplicationSource (or Secret) is never touched', async (t) => {
  const foreign = object('volsync.backube/v1alpha1', 'ReplicationSource', 'data-claim-backup', { labels: { 'app.kubernetes.io/managed-by': 'argocd' } }, { spec: { sourcePVC: 'data-claim' } })
  for (const p of [pvc(), restoredPvc()]) {
    const plan = reconcilePvc(input(p, { existing: { source: foreign }, probe: none }), config)
    t.same(plan.steps, [])
    t.same(plan.events, [{ type: 'Warning', reason: 'ForeignObject', message: 'ReplicationSource data-claim-backup exists and was not created by smart-restore; not modified' }])
    t.same(plan.counters, [COUNTER.foreignObject])
  }
  const foreignSecret = object('v1', 'Secret', 'data-claim-restic', {})
  const s = reconcilePvc(input(pvc(), { existing: { secret: foreignSecret }, probe: none }), config)
  t.same(s.steps, [], 'its Secret is not overwritten either')
  t.match(s.events[0]!.message, /Secret data-claim-restic exists and was not created by smart-restore; not modified/)
  t.same(s.counters, [COUNTER.foreignObject])
})

t.test('our source: equal → nothing; config or tier changed → apply', async (t) => {
  const steady = input(pvc(), { existing: { source: ourSource('hourly'), secret: ourSecret(true) } })
  const plan = reconcilePvc(steady, config)
  empty(t, plan, 'up to date')
  t.match(plan.summary, /up to date/)

  // Tier changed hourly → daily.
  const toDaily = input(pvc({ labels: { backup: 'daily' } }), { existing: { source: ourSource('hourly'), secret: ourSecret(true) } })
  const changed = reconcilePvc(toDaily, config)
  t.equal(changed.needsProbe, undefined, 'an existing source of ours means the repository is ours: no probe')
  t.same(kinds(changed), ['apply-source'])
  const desired = applyStep(changed).source as any
  t.equal(desired.metadata.labels[`${P}tier`], 'daily')
  t.equal(desired.spec.trigger.schedule, spreadSchedule('H H(0-5) * * *', 'media', 'data-claim'))
  t.same(desired.spec.restic.retain, config.tiers.daily!.retain)
  t.same(reasons(changed), ['TierChanged'])
  t.match(changed.events[0]!.message, /^backup tier hourly → daily/)

  // Configuration changed (retention, a new setting), same tier.
  const cfg2 = validateConfig({ ...structuredClone(defaultConfig), backup: { copyMethod: 'Snapshot', pruneIntervalDays: 14 } })
  const updated = reconcilePvc(steady, cfg2)
  t.same(kinds(updated), ['apply-source'])
  t.same(reasons(updated), ['BackupUpdated'])
  t.match(updated.events[0]!.message, /spec\.restic\.pruneIntervalDays/)

  // A setting dropped from the configuration is a difference too.
  const withPrune = asStored(buildReplicationSource({ config: cfg2, pvc: pvc(), tier: 'hourly', name: 'data-claim-backup', repositorySecret: 'data-claim-restic' }) as KubeObject)
  t.same(kinds(reconcilePvc(input(pvc(), { existing: { source: withPrune, secret: ourSecret(true) } }), config)), ['apply-source'])

  // Secrets are not watched (no cluster-wide Secret read): an unknown Secret is no reason to re-apply.
  const noSecret = reconcilePvc(input(pvc(), { existing: { source: ourSource('hourly') } }), config)
  t.same(kinds(noSecret), [])
  t.match(noSecret.summary, /up to date/)

  // Fields others own (VolSync defaults, a user's pause or manual trigger, status) are no difference.
  const touched = ourSource('hourly') as any
  touched.spec.paused = true
  touched.spec.trigger.manual = 'now'
  touched.spec.restic.unlock = 'x'
  touched.metadata.labels['extra'] = 'y'
  empty(t, reconcilePvc(input(pvc(), { existing: { source: touched, secret: ourSecret(true) } }), config), 'foreign fields')

  // Key order does not matter.
  const reordered = ourSource('hourly') as any
  reordered.spec.restic.retain = { weekly: 4, daily: 7, hourly: 24 }
  empty(t, reconcilePvc(input(pvc(), { existing: { source: reordered, secret: ourSecret(true) } }), config), 'reordered retain')

  // A stale attention annotation is cleared even when the source is already right.
  const stale = reconcilePvc(input(pvc({ annotations: { [ATTENTION]: 'old' } }), { existing: { source: ourSource('hourly'), secret: ourSecret(true) } }), config)
  t.same(stale.steps, [{ kind: 'annotate-pvc', annotations: { [ATTENTION]: null } }])
})

t.test('after attaching, a stale attention annotation is removed', async (t) => {
  const p = pvc({ annotations: { [`${P}decision`]: 'fresh', [ATTENTION]: 'backups exist at …' } })
  const plan = reconcilePvc(input(p, { probe: none }), config)
  t.same(kinds(plan), ['apply-source', 'annotate-pvc'])
  t.same(plan.steps[1], { kind: 'annotate-pvc', annotations: { [ATTENTION]: null } })
})

t.test('idempotence: carrying out a plan and reconciling again gives an empty plan', async (t) => {
  const cases: Array<[string, ReconcileInput, ProbeResult | undefined]> = [
    ['fresh, store empty', input(pvc()), none],
    ['restored', input(restoredPvc(), { existing: { destination: ourRd(false), secret: ourSecret(false) } }), undefined],
    ['namespace default', input(pvc({ labels: {} }), { namespaceDefaultTier: 'weekly' }), none],
    ['tier change', input(pvc({ labels: { backup: 'daily' } }), { existing: { source: ourSource('hourly'), secret: ourSecret(true) } }), undefined],
    ['acknowledged', input(pvc({ annotations: { [ACK_KEY]: 'fine', [ATTENTION]: 'x' } })), exists],
    ['label removed', input(pvc({ labels: {} }), { existing: { source: ourSource() } }), undefined],
  ]
  for (const [name, start, probe] of cases) {
    const end = converge(t, start, probe)
    const plan = reconcilePvc({ ...end, probe }, config)
    t.same(plan.steps, [], `${name}: no steps once carried out`)
    t.same(plan.events, [], `${name}: no events once carried out`)
    t.equal(plan.needsProbe, undefined, `${name}: no probe once attached (or detached)`)
  }
  // A second replica computing the plan from the same cache gets the same plan.
  const a = reconcilePvc(input(pvc(), { probe: none }), config)
  const b = reconcilePvc(input(pvc(), { probe: none }), config)
  t.ok(deepEqual(a, b), 'deterministic')
})

t.test('sourceDifferences and deepEqual', async (t) => {
  const desired = buildReplicationSource({ config, pvc: pvc(), tier: 'hourly', name: 'data-claim-backup', repositorySecret: 'data-claim-restic' })
  t.same(sourceDifferences(asStored(desired as KubeObject), desired), [])
  const other = asStored(desired as KubeObject) as any
  other.metadata.ownerReferences = []
  other.spec.sourcePVC = 'x'
  other.spec.trigger = { schedule: '@hourly' }
  other.metadata.labels[`${P}tier`] = 'daily'
  t.same(sourceDifferences(other, desired), [`label ${P}tier`, 'ownerReferences', 'spec.sourcePVC', 'spec.trigger.schedule'])
  t.same(sourceDifferences({ metadata: { name: 'x' } }, desired).length, 5 + 2 + 4, 'an empty object differs in everything we set: 3 labels, annotation, owner; sourcePVC, schedule; 4 restic fields')
  t.ok(deepEqual({ a: 1, b: [1, { c: 2 }] }, { b: [1, { c: 2 }], a: 1 }))
  t.notOk(deepEqual({ a: 1 }, { a: '1' }))
  t.notOk(deepEqual([1], { 0: 1 }))
  t.ok(deepEqual({ a: undefined }, {}))
})

// ---- restic mode: the store's answer carries the snapshots it read ----------------------------------

function snapshot(id: string, time: string, paths: string[], hostname = 'volsync'): import('../../src/storage/restic/format.js').Snapshot {
  const ms = Date.parse(time)
  return { id: id.repeat(64 / id.length), time, epochSeconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6, hostname, paths, tags: [] }
}

t.test('restic mode, bound, fresh: a snapshot VolSync would restore is existing data, named', async (t) => {
  const probe: ProbeResult = {
    state: 'exists',
    location: LOCATION,
    detail: '2 snapshot(s)',
    restic: { version: 2, total: 2, complete: true, snapshots: [snapshot('3f9c01a2', '2026-11-21T03:00:41.5+01:00', ['/data']), snapshot('77aa55cc', '2026-11-22T03:00:41.123456789Z', ['/data'])] },
  }
  const plan = reconcilePvc(input(pvc(), { probe }), config)
  const text = `backups exist at ${LOCATION} (newest restorable: 77aa55cc of 2026-11-22T03:00:41Z); not attaching a backup source over them: restore, or acknowledge with ${ACK_KEY}="<reason>"`
  t.same(plan.steps, [{ kind: 'annotate-pvc', annotations: { [ATTENTION]: text } }], 'no apply-source')
  t.same(plan.events, [{ type: 'Warning', reason: 'RefusedToAttach', message: text }])
  t.same(plan.counters, [COUNTER.refusedExistingBackup])
})

t.test('restic mode, bound, fresh: only foreign snapshots are refused as what they are', async (t) => {
  const probe: ProbeResult = {
    state: 'exists',
    location: LOCATION,
    detail: '3 snapshot(s)',
    restic: {
      version: 2,
      total: 3,
      complete: true,
      snapshots: [snapshot('aa', '2026-11-20T01:00:00Z', ['/srv'], 'nas'), snapshot('bb', '2026-11-21T01:00:00Z', ['/home/me', '/etc'], 'laptop'), snapshot('cc', '2026-11-22T01:00:00Z', ['/srv'], 'nas')],
    },
  }
  const plan = reconcilePvc(input(pvc(), { probe }), config)
  const text =
    `${LOCATION} holds 3 snapshot(s), none of /data (paths /srv, /home/me, /etc): not smart-restore's or VolSync's backups of this PVC; ` +
    `not attaching a backup source into that repository. Give the PVC its own repository, or acknowledge with ${ACK_KEY}="<reason>"`
  t.same(plan.steps, [{ kind: 'annotate-pvc', annotations: { [ATTENTION]: text } }], 'no apply-source')
  t.same(plan.events, [{ type: 'Warning', reason: 'RefusedToAttach', message: text }])
  t.same(plan.counters, [COUNTER.refusedForeignSnapshots])
  t.equal(COUNTER.refusedForeignSnapshots, 'refused_foreign_snapshots')

  // The acknowledgement is the way out here too, without asking the store.
  const acked = reconcilePvc(input(pvc({ annotations: { [ACK_KEY]: 'shared bucket, cleaned up' } })), config)
  t.same(kinds(acked), ['apply-source'])
})

t.test('restic mode, bound, fresh: an unreadable repository is never backed up over', async (t) => {
  for (const kind of ['password', 'corrupt', 'not-a-repository'] as const) {
    const probe: ProbeResult = { state: 'unreadable', location: LOCATION, kind, reason: `reason for ${kind}` }
    const plan = reconcilePvc(input(pvc(), { probe }), config)
    const text =
      `${LOCATION} holds snapshots that cannot be read (${kind}): reason for ${kind}; not attaching a backup source over them. ` +
      `Fix the repository password or the repository, or acknowledge with ${ACK_KEY}="<reason>"`
    t.same(plan.steps, [{ kind: 'annotate-pvc', annotations: { [ATTENTION]: text } }], `${kind}: no apply-source`)
    t.same(plan.events, [{ type: 'Warning', reason: 'RepositoryUnreadable', message: text }])
    t.same(plan.counters, [COUNTER.repositoryUnreadable])
    t.equal(plan.requeueAfterMs, undefined, 'not a retry loop: a human must act; the resync looks again')
  }
})

// ---- what the restore produced (issue: never back up a restore that restored nothing) -------------

t.test('bound after a restore: the RD status decides, as VolSync reports it', async (t) => {
  const rdOf = (status: Record<string, unknown> | undefined) => ({ existing: { destination: ourRd(true, status) } })

  // Restored nothing: no source, attention, RestoreEmpty quoting the mover, counted.
  const empty = reconcilePvc(input(restoredPvc(), rdOf(emptyRestoreStatus())), config)
  t.notOk(kinds(empty).includes('apply-source'), 'empty: no backup source')
  t.equal(empty.needsProbe, undefined, 'the store is not asked: the restore itself says it')
  t.same(reasons(empty), ['RestoreEmpty'])
  t.equal(empty.events[0]!.type, 'Warning')
  const emptyText =
    `the restore from ${LOCATION} restored NOTHING (ReplicationDestination data-claim-restore: "No eligible snapshots found", "=== No data will be restored ===", "Restic completed in 4s"): ` +
    `the volume is empty, and backing it up would make an empty snapshot the newest. A backup source is attached only when a human says so: ${ACK_KEY}="<reason>" (its first backup becomes the newest snapshot)`
  t.equal(empty.events[0]!.message, emptyText)
  t.same(empty.steps, [{ kind: 'annotate-pvc', annotations: { [ATTENTION]: emptyText } }])
  t.same(empty.counters, [COUNTER.restoreEmpty])
  t.equal(COUNTER.restoreEmpty, 'restore_empty')
  // Once annotated, not patched again.
  const emptyAgain = reconcilePvc(input(restoredPvc({ annotations: { ...restoredPvc().annotations, [ATTENTION]: emptyText } }), rdOf(emptyRestoreStatus())), config)
  t.same(emptyAgain.steps, [])
  t.same(reasons(emptyAgain), ['RestoreEmpty'])

  // The human's way out: attach, clear the attention, say why.
  const acked = reconcilePvc(input(restoredPvc({ annotations: { ...restoredPvc().annotations, [ATTENTION]: emptyText, [ACK_KEY]: 'app re-seeds itself' } }), rdOf(emptyRestoreStatus())), config)
  t.same(kinds(acked), ['apply-source', 'annotate-pvc'])
  t.same(acked.counters, [COUNTER.backupOverExisting])

  // Failed (backoff limit reached) yet Bound: no source, RestoreFailed with the Fatal/ERROR lines.
  const failed = reconcilePvc(input(restoredPvc(), rdOf(failedRestoreStatus())), config)
  t.notOk(kinds(failed).includes('apply-source'))
  t.same(reasons(failed), ['RestoreFailed'])
  t.match(failed.events[0]!.message, '"Fatal: wrong password or no key found", "ERROR: failure checking existence of repository"')
  t.same(failed.counters, [COUNTER.restoreFailed])

  // No mover status (VolSync before 0.8): unverified, never assumed restored.
  const unverified = reconcilePvc(input(restoredPvc(), rdOf(noMoverStatus())), config)
  t.notOk(kinds(unverified).includes('apply-source'))
  t.same(reasons(unverified), ['RestoreUnverified'])
  t.same(unverified.counters, [COUNTER.restoreUnverified])

  // Bound while the trigger has not completed (bound by hand): wait and look again, nothing else.
  const running = reconcilePvc(input(restoredPvc(), rdOf(runningRestoreStatus())), config)
  t.same(running.steps.filter((s) => s.kind !== 'own'), [])
  t.same(running.events, [])
  t.equal(running.requeueAfterMs, RESTORE_RUNNING_REQUEUE_MS)
  t.match(running.summary, 'still running')

  // Successful with latestImage but the trigger is someone else's value: not our restore's result.
  const otherTrigger = ourRd(true, { ...restoredStatus(), lastManualSync: 'manual-2' })
  t.equal(reconcilePvc(input(restoredPvc(), { existing: { destination: otherTrigger } }), config).requeueAfterMs, RESTORE_RUNNING_REQUEUE_MS)
})

t.test('bound, decision restore, but no RD of ours to read: checked like a fresh PVC', async (t) => {
  const foreignRd = object('volsync.backube/v1alpha1', 'ReplicationDestination', 'data-claim-restore', { labels: { 'app.kubernetes.io/managed-by': 'someone' } }, { status: restoredStatus() })
  const deleting = { ...ourRd(true), metadata: { ...ourRd(true).metadata, deletionTimestamp: '2026-11-22T06:00:00Z' } }
  for (const [why, existing] of [['RD gone', {}], ['RD not ours', { destination: foreignRd }], ['RD being deleted', { destination: deleting }]] as const) {
    const first = reconcilePvc(input(restoredPvc(), { existing }), config)
    t.same(first.needsProbe, { repositoryKey: KEY }, `${why}: the store is asked`)
    t.same(reconcilePvc(input(restoredPvc(), { existing, probe: exists }), config).counters, [COUNTER.refusedExistingBackup], `${why}: backups exist → refused`)
    t.same(kinds(reconcilePvc(input(restoredPvc(), { existing, probe: none }), config)).filter((k) => k !== 'own'), ['apply-source'], `${why}: nothing there → attached`)
  }
})

t.test('restored from ANOTHER PVC and it restored nothing: still reported, no source', async (t) => {
  const other = restoredPvc({ annotations: { [`${P}decision`]: 'restore', [`${P}restore-from`]: 'template-claim', [`${P}restore-source`]: 's3://backups/media/template-claim' } })
  const plan = reconcilePvc(input(other, { existing: { destination: ourRd(true, emptyRestoreStatus()) } }), config)
  t.same(reasons(plan), ['RestoreEmpty'])
  t.match(plan.events[0]!.message, 'the restore from s3://backups/media/template-claim restored NOTHING')
  // And when it did restore, its own repository is still checked before attaching.
  t.same(reconcilePvc(input(other, { existing: { destination: ourRd(true) } }), config).needsProbe, { repositoryKey: KEY })
})

t.test('pending restore: RestoreFailed at once, RestorePending past reconciler.restorePendingAfterMs', async (t) => {
  const created = '2026-11-22T05:00:00Z'
  const at = (minutes: number) => Date.parse(created) + minutes * 60_000
  const pending = restoredPvc({ phase: 'Pending', creationTimestamp: created })
  t.equal(config.reconciler.restorePendingAfterMs, 30 * 60_000, 'default 30 min')

  const early = reconcilePvc(input(pending, { existing: { destination: ourRd(true, runningRestoreStatus()) }, nowMs: at(5) }), config)
  t.same(reasons(early), ['RestoreStarted'])
  t.equal(early.requeueAfterMs, 25 * 60_000, 'looks again when the 30 min are up')

  const late = reconcilePvc(input(pending, { existing: { destination: ourRd(true, runningRestoreStatus()) }, nowMs: at(31) }), config)
  t.same(reasons(late), ['RestorePending'])
  t.equal(late.events[0]!.type, 'Warning')
  t.equal(
    late.events[0]!.message,
    `still Pending 31 min after its restore from ${LOCATION} started (ReplicationDestination data-claim-restore; no mover has finished yet). ` +
      'See "kubectl describe replicationdestination data-claim-restore" and the volsync-dst-data-claim-restore Job\'s logs',
  )
  t.same(late.counters, [COUNTER.restorePending])
  t.notOk(kinds(late).includes('apply-source'))

  const failing = reconcilePvc(input(pending, { existing: { destination: ourRd(true, failedRestoreStatus()) }, nowMs: at(3) }), config)
  t.same(reasons(failing), ['RestoreFailed'])
  t.match(failing.events[0]!.message, /failed \(ReplicationDestination data-claim-restore\): .*"Fatal: wrong password or no key found".*the PVC stays Pending until a restore succeeds/)
  t.same(failing.counters, [COUNTER.restoreFailed])
  t.match(failing.steps, [{ kind: 'annotate-pvc' }])

  // Without a clock (or a creationTimestamp) nothing is timed.
  const untimed = reconcilePvc(input(restoredPvc({ phase: 'Pending' }), { existing: { destination: ourRd(true, runningRestoreStatus()) } }), config)
  t.same(reasons(untimed), ['RestoreStarted'])
  t.equal(untimed.requeueAfterMs, undefined)
})
