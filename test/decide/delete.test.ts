/** The DELETE decision table: skip, override, not synced, in flight, namespace deletion, locks. */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { decideDelete, planDelete, pvcIdentity, type DeleteCheck, type DeleteRequest } from '../../src/decide/delete.js'
import type { InFlightFinding } from '../../src/inflight/types.js'
import { fixtureReview } from '../helpers/fixtures.js'

const config: Config = validateConfig(structuredClone(defaultConfig))
const allowNs: Config = validateConfig({ ...structuredClone(defaultConfig), deletionGuard: { ...structuredClone(defaultConfig.deletionGuard), namespaceDeletion: 'allow' } })

function request(file = 'delete.validating.json', mutate: (r: any) => void = () => {}): DeleteRequest {
  const r = fixtureReview(file).request
  mutate(r)
  return { operation: r.operation, kind: r.kind, namespace: r.namespace, name: r.name, oldObject: r.oldObject, dryRun: r.dryRun }
}

function check(req = request()): DeleteCheck {
  const p = planDelete(req, config)
  if (p.action !== 'check') throw new Error(`expected check, got ${JSON.stringify(p)}`)
  return p
}

const syncing: InFlightFinding = {
  ruleId: 'volsync-replicationsource',
  system: 'VolSync',
  kind: 'ReplicationSource',
  namespace: 'media',
  name: 'data-claim-backup',
  since: '2026-11-22T04:40:00Z',
  why: 'condition Synchronizing=True (SyncInProgress)',
}

t.test('plan: what is not ours to judge passes', async (t) => {
  const create = planDelete(request('create.validating.json'), config)
  t.equal(create.action, 'allow')
  t.equal(create.action === 'allow' && create.outcome, 'skipped')
  const cm = planDelete(request('delete.validating.json', (r) => (r.kind = { group: '', version: 'v1', kind: 'ConfigMap' })), config)
  t.equal(cm.action === 'allow' && cm.outcome, 'skipped')
  const excluded = planDelete(request('delete.validating.json', (r) => (r.namespace = 'kube-system')), config)
  t.equal(excluded.action === 'allow' && excluded.outcome, 'skipped')
})

t.test('plan: the PVC from oldObject, with its repository when labelled', async (t) => {
  const p = check()
  t.same(p.pvc, { namespace: 'media', name: 'data-claim', uid: '0fc763a3-149d-4c0b-9ce6-edc82843ca9c', labels: { 'app.kubernetes.io/name': 'jellyfin', backup: 'hourly' }, ownerReferences: [], dataSourceRef: undefined, phase: 'Pending' })
  t.equal(p.repositoryKey, 'media/data-claim')
  const unlabelled = check(request('delete.validating.json', (r) => delete r.oldObject.metadata.labels.backup))
  t.equal(unlabelled.repositoryKey, undefined, 'every PVC is guarded; only labelled ones have a repository to check for locks')
  const withRef = check(request('delete-with-datasourceref.validating.json'))
  t.same(withRef.pvc.dataSourceRef, { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'config-restore' })
  t.same(pvcIdentity({ metadata: 'nonsense', spec: [] }, 'ns'), { namespace: 'ns', name: '', uid: undefined, labels: {}, ownerReferences: [], dataSourceRef: undefined, phase: undefined }, 'malformed oldObject reads as empty, never throws')
})

t.test('plan: no oldObject is refused', async (t) => {
  const p = planDelete(request('delete.validating.json', (r) => (r.oldObject = null)), config)
  t.equal(p.action, 'deny')
  t.match(p.action === 'deny' && p.message, /no oldObject/)
})

t.test('override: a reason lets it through and is audited; no reason is refused', async (t) => {
  const p = planDelete(request('delete.validating.json', (r) => (r.oldObject.metadata.annotations['smart-restore.io/allow-delete'] = ' restore stuck, data not needed ')), config)
  t.equal(p.action, 'allow')
  if (p.action !== 'allow') return
  t.equal(p.outcome, 'override')
  t.same(p.auditAnnotations, { 'allow-delete-reason': 'restore stuck, data not needed' })
  t.match(p.warnings[0], /overridden/)
  const empty = planDelete(request('delete.validating.json', (r) => (r.oldObject.metadata.annotations['smart-restore.io/allow-delete'] = '')), config)
  t.equal(empty.action, 'deny')
  t.match(empty.action === 'deny' && empty.message, /needs a reason.*kubectl annotate pvc -n media data-claim/)
})

t.test('nothing in flight: allowed', async (t) => {
  const v = decideDelete(check(), { cachesSynced: true, namespaceTerminating: false, findings: [] }, config)
  t.equal(v.action, 'allow')
  t.equal(v.action === 'allow' && v.outcome, 'clear')
})

t.test('in flight: denied naming kind, namespace/name, since when, and how to override', async (t) => {
  const v = decideDelete(check(), { cachesSynced: true, namespaceTerminating: false, findings: [syncing] }, config)
  t.equal(v.action, 'deny')
  if (v.action !== 'deny') return
  t.equal(v.code, 409)
  t.equal(v.cause, 'in-flight-volsync-replicationsource')
  t.match(v.message, /^PVC media\/data-claim cannot be deleted while a backup or restore of it is in flight: VolSync ReplicationSource media\/data-claim-backup \(condition Synchronizing=True \(SyncInProgress\), since 2026-11-22T04:40:00Z\)/)
  t.match(v.message, /smart-restore.io\/allow-delete="<reason>"/)
  const two = decideDelete(check(), { cachesSynced: true, namespaceTerminating: false, findings: [syncing, { ...syncing, system: 'CSI', kind: 'VolumeSnapshot', name: 'snap-1', since: undefined, why: 'status.readyToUse is not true' }] }, config)
  t.match(two.action === 'deny' && two.message, /data-claim-backup .*; CSI VolumeSnapshot media\/snap-1 \(status.readyToUse is not true\)/)
})

t.test('caches not synced: denied, retryable', async (t) => {
  const v = decideDelete(check(), { cachesSynced: false, notSyncedReason: 'ReplicationSource list pending', namespaceTerminating: false, findings: [] }, config)
  t.equal(v.action, 'deny')
  if (v.action !== 'deny') return
  t.equal(v.code, 503)
  t.match(v.message, /still syncing \(ReplicationSource list pending\).*Retrying in a few seconds is safe/)
})

t.test('namespace deletion: waits by default, passes when configured', async (t) => {
  const wait = decideDelete(check(), { cachesSynced: true, namespaceTerminating: true, findings: [syncing] }, config)
  t.equal(wait.action, 'deny')
  t.match(wait.action === 'deny' && wait.message, /Namespace media is being deleted; it waits until this ends/)
  const pass = decideDelete(check(), { cachesSynced: true, namespaceTerminating: true, findings: [syncing] }, allowNs)
  t.equal(pass.action, 'allow')
  t.equal(pass.action === 'allow' && pass.outcome, 'namespace-deletion')
  t.match(pass.action === 'allow' && pass.warnings[0], /with its namespace while in flight: ReplicationSource data-claim-backup/)
  const notTerminating = decideDelete(check(), { cachesSynced: true, namespaceTerminating: false, findings: [syncing] }, allowNs)
  t.equal(notTerminating.action, 'deny', 'the switch only concerns namespace deletion')
})

t.test('restic locks', async (t) => {
  const locked = decideDelete(check(), { cachesSynced: true, namespaceTerminating: false, findings: [], lock: { state: 'locked', location: 's3://b/media/data-claim', lock: 'media/data-claim/locks/abc', ageMs: 1000, since: '2026-11-22T04:59:00Z' } }, config)
  t.equal(locked.action, 'deny')
  t.match(locked.action === 'deny' && locked.message, /restic lock media\/data-claim\/locks\/abc \(repository s3:\/\/b\/media\/data-claim is locked/)
  const unknown = decideDelete(check(), { cachesSynced: true, namespaceTerminating: false, findings: [], lock: { state: 'unknown', location: 's3://b/x', kind: 'network', reason: 'cannot reach S3: ECONNREFUSED' } }, config)
  t.equal(unknown.action === 'deny' && unknown.code, 503)
  t.equal(decideDelete(check(), { cachesSynced: true, namespaceTerminating: false, findings: [], lock: { state: 'none', location: 's3://b/x' } }, config).action, 'allow')
})
