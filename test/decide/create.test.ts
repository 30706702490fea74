/**
 * The CREATE decision table, case by case, without any network: planCreate (skip/deny/probe) and
 * decideAfterProbe (restore/fresh/deny) over PVCs taken from a real apiserver capture.
 */
import t from 'tap'
import fastJsonPatch from 'fast-json-patch'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { decideAfterProbe, planCreate, type CreateRequest, type ProbeTarget } from '../../src/decide/create.js'
import type { ProbeResult } from '../../src/storage/types.js'
import { fixtureReview } from '../helpers/fixtures.js'

// list mode: these probe answers carry no snapshots (restic mode's answers are tested with them below).
const config: Config = validateConfig({ ...structuredClone(defaultConfig), store: { ...structuredClone(defaultConfig.store), probe: { ...defaultConfig.store.probe, mode: 'list' } } })
const base = fixtureReview('create.mutating.json').request

function request(mutate: (r: any) => void = () => {}): CreateRequest {
  const r = structuredClone(base)
  mutate(r)
  return { operation: r.operation, kind: r.kind, namespace: r.namespace, name: r.name, object: r.object }
}

function probeTarget(req: CreateRequest, cfg = config): ProbeTarget {
  const plan = planCreate(req, cfg)
  if (plan.action !== 'probe') throw new Error(`expected probe, got ${JSON.stringify(plan)}`)
  return plan
}

const repo = { location: 's3://backups/media/data-claim', resticRepository: 's3:http://minio:9000/backups/media/data-claim' }
const exists: ProbeResult = { state: 'exists', location: repo.location, detail: 'snapshot media/data-claim/snapshots/abc' }
const none: ProbeResult = { state: 'none', location: repo.location, detail: 'no object under media/data-claim/snapshots/' }
const unknown: ProbeResult = { state: 'unknown', location: repo.location, kind: 'forbidden', reason: 'S3 answered 403 AccessDenied' }

t.test('skip reasons: allowed unchanged, with the reason', async (t) => {
  const cases: Array<[string, (r: any) => void, string]> = [
    ['UPDATE', (r) => (r.operation = 'UPDATE'), 'not-a-pvc-create'],
    ['DELETE', (r) => (r.operation = 'DELETE'), 'not-a-pvc-create'],
    ['another kind', (r) => (r.kind = { group: '', version: 'v1', kind: 'ConfigMap' }), 'not-a-pvc-create'],
    ['a PVC-named kind of another group', (r) => (r.kind = { group: 'example.com', version: 'v1', kind: 'PersistentVolumeClaim' }), 'not-a-pvc-create'],
    ['no tier label', (r) => delete r.object.metadata.labels.backup, 'no-tier-label'],
    ['no labels at all', (r) => delete r.object.metadata.labels, 'no-tier-label'],
    ['excluded namespace', (r) => ((r.namespace = 'kube-system'), (r.object.metadata.namespace = 'kube-system')), 'excluded-namespace'],
    ['dataSourceRef set', (r) => (r.object.spec.dataSourceRef = { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'x' }), 'has-data-source'],
    ['dataSource set', (r) => (r.object.spec.dataSource = { kind: 'PersistentVolumeClaim', name: 'other' }), 'has-data-source'],
    ['opt-out with a reason', (r) => (r.object.metadata.annotations['smart-restore.io/skip-restore'] = 'fresh start wanted'), 'opted-out'],
    ['generateName only', (r) => ((r.name = ''), delete r.object.metadata.name, (r.object.metadata.generateName = 'data-')), 'generated-name'],
  ]
  for (const [name, mutate, reason] of cases) {
    const plan = planCreate(request(mutate), config)
    t.equal(plan.action, 'skip', name)
    if (plan.action === 'skip') t.equal(plan.reason, reason, `${name}: reason`)
  }
  const optOut = planCreate(request((r) => (r.object.metadata.annotations['smart-restore.io/skip-restore'] = '  fresh start wanted ')), config)
  t.same(optOut.action === 'skip' && optOut.auditAnnotations, { 'opt-out-reason': 'fresh start wanted' }, 'the opt-out reason is audited')
  t.match(optOut.action === 'skip' && optOut.warnings[0], /fresh start wanted/)
})

t.test('the real capture with a dataSourceRef is skipped', async (t) => {
  const r = fixtureReview('create-with-datasourceref.mutating.json').request
  const plan = planCreate({ operation: r.operation, kind: r.kind, namespace: r.namespace, name: r.name, object: r.object }, config)
  t.equal(plan.action, 'skip')
  t.equal(plan.action === 'skip' && plan.reason, 'has-data-source')
})

t.test('denials say what is valid', async (t) => {
  const cases: Array<[string, (r: any) => void, RegExp, number]> = [
    ['unknown tier', (r) => (r.object.metadata.labels.backup = 'hurly'), /"hurly" is not a backup tier; valid tiers: hourly, daily, weekly/, 422],
    ['opt-out without reason', (r) => (r.object.metadata.annotations['smart-restore.io/skip-restore'] = ' '), /needs a reason/, 422],
    ['bad restore-as-of', (r) => (r.object.metadata.annotations['smart-restore.io/restore-as-of'] = 'yesterday'), /RFC 3339 time such as/, 422],
    ['impossible restore-as-of', (r) => (r.object.metadata.annotations['smart-restore.io/restore-as-of'] = '2026-13-45T99:00:00Z'), /RFC 3339/, 422],
    ['bad restore-previous', (r) => (r.object.metadata.annotations['smart-restore.io/restore-previous'] = '-1'), /whole number/, 422],
    ['bad restore-from', (r) => (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'a/b/c'), /use <pvc> or <namespace>\/<pvc>/, 422],
    ['cross-namespace restore-from', (r) => (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'other/data'), /another namespace/, 403],
    ['block volume', (r) => (r.object.spec.volumeMode = 'Block'), /volumeMode Block/, 422],
    ['no storage request', (r) => delete r.object.spec.resources, /resources.requests.storage/, 422],
    ['malformed labels', (r) => (r.object.metadata.labels = { backup: 5 }), /labels must map strings/, 422],
  ]
  for (const [name, mutate, message, code] of cases) {
    const plan = planCreate(request(mutate), config)
    t.equal(plan.action, 'deny', name)
    if (plan.action === 'deny') {
      t.match(plan.message, message, `${name}: message`)
      t.equal(plan.code, code, `${name}: code`)
    }
  }
})

t.test('a labelled PVC is probed at its repository key', async (t) => {
  const plan = probeTarget(request())
  t.equal(plan.repositoryKey, 'media/data-claim')
  t.equal(plan.tier, 'hourly')
  t.equal(plan.restoreFrom, undefined)
  const templated = validateConfig({ ...structuredClone(defaultConfig), store: { ...structuredClone(defaultConfig.store), keyTemplate: 'volsync/{namespace}-{pvc}' } })
  t.equal(probeTarget(request(), templated).repositoryKey, 'volsync/media-data-claim', 'key template is configurable')
  const from = probeTarget(request((r) => (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'old-data')))
  t.equal(from.repositoryKey, 'media/old-data', 'restore-from in the same namespace')
  t.same(from.restoreFrom, { namespace: 'media', pvc: 'old-data' })
  const self = probeTarget(request((r) => (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'media/data-claim')))
  t.equal(self.restoreFrom, undefined, 'restore-from naming itself is the ordinary case')
  const crossAllowed = validateConfig({ ...structuredClone(defaultConfig), restore: { ...structuredClone(defaultConfig.restore), allowCrossNamespaceRestoreFrom: true } })
  t.equal(probeTarget(request((r) => (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'other/data')), crossAllowed).repositoryKey, 'other/data')
  const pit = probeTarget(request((r) => {
    r.object.metadata.annotations['smart-restore.io/restore-as-of'] = '2026-11-20T03:00:00Z'
    r.object.metadata.annotations['smart-restore.io/restore-previous'] = '2'
  }))
  t.same(pit.options, { restoreAsOf: '2026-11-20T03:00:00Z', previous: 2 })
})

t.test('exists → restore: ReplicationDestination, Secret name, patch, warning', async (t) => {
  const req = request()
  const target = probeTarget(req)
  const d = decideAfterProbe(target, exists, repo, config)
  t.equal(d.action, 'restore')
  if (d.action !== 'restore') return
  t.same(d.destination, {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationDestination',
    metadata: {
      name: 'data-claim-restore',
      namespace: 'media',
      labels: { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': 'data-claim' },
      annotations: { 'smart-restore.io/pvc': 'data-claim', 'smart-restore.io/restore-source': 's3://backups/media/data-claim' },
    },
    spec: {
      trigger: { manual: 'smart-restore' },
      restic: { repository: 'data-claim-restic', copyMethod: 'Snapshot', capacity: '10Gi', accessModes: ['ReadWriteOnce'], storageClassName: 'longhorn' },
    },
  })
  t.equal(d.secretName, 'data-claim-restic')
  t.equal(d.resticRepository, repo.resticRepository)
  t.same(d.warnings, ['smart-restore: restoring from s3://backups/media/data-claim', 'smart-restore: which snapshot VolSync restores is not checked (probe.mode=list)'])
  // The patch applied to the object gives exactly the object plus dataSourceRef and annotations.
  const patched = fastJsonPatch.applyPatch(structuredClone(req.object), d.patch, true, false).newDocument as any
  t.same(patched.spec.dataSourceRef, { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'data-claim-restore' })
  t.equal(patched.metadata.annotations['smart-restore.io/decision'], 'restore')
  t.equal(patched.metadata.annotations['smart-restore.io/restore-source'], 's3://backups/media/data-claim')
  t.equal(patched.metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'], (req.object as any).metadata.annotations['kubectl.kubernetes.io/last-applied-configuration'], 'existing annotations kept')
  t.notOk(d.patch.some((op) => op.op === 'remove' || op.path.startsWith('/status') || op.path.includes('managedFields')), 'the patch only adds')
})

t.test('restore carries config and point-in-time options into the ReplicationDestination', async (t) => {
  const cfg = validateConfig({
    ...structuredClone(defaultConfig),
    restore: { ...structuredClone(defaultConfig.restore), volumeSnapshotClassName: 'longhorn-snap', cacheCapacity: '2Gi', moverSecurityContext: { runAsUser: 1000, fsGroup: 1000 }, storageClassName: 'fallback' },
  })
  const target = probeTarget(request((r) => {
    delete r.object.spec.storageClassName
    r.object.metadata.annotations['smart-restore.io/restore-as-of'] = '2026-11-20T03:00:00+01:00'
    r.object.metadata.annotations['smart-restore.io/restore-previous'] = '1'
  }), cfg)
  const d = decideAfterProbe(target, exists, repo, cfg)
  if (d.action !== 'restore') return t.fail('expected restore')
  t.same(d.destination.spec.restic, {
    repository: 'data-claim-restic', copyMethod: 'Snapshot', capacity: '10Gi', accessModes: ['ReadWriteOnce'],
    storageClassName: 'fallback', volumeSnapshotClassName: 'longhorn-snap', cacheCapacity: '2Gi',
    moverSecurityContext: { runAsUser: 1000, fsGroup: 1000 }, restoreAsOf: '2026-11-20T03:00:00+01:00', previous: 1,
  })
  t.match(d.warnings[0], /as of 2026-11-20T03:00:00\+01:00, 1 before newest/)
})

t.test('restore-from uses a Secret of its own, never the PVC\'s own backup repository', async (t) => {
  const target = probeTarget(request((r) => (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'old-data')))
  const d = decideAfterProbe(target, { ...exists, location: 's3://backups/media/old-data' }, repo, config)
  if (d.action !== 'restore') return t.fail('expected restore')
  t.match(d.secretName, /^data-claim-restic-from-[0-9a-f]{8}$/)
  t.not(d.secretName, 'data-claim-restic')
  t.equal(d.destination.spec.restic.repository, d.secretName)
  t.equal(d.auditAnnotations['restore-from'], 'media/old-data')
  const empty = decideAfterProbe(target, none, repo, config)
  t.equal(empty.action, 'deny', 'restore-from an empty repository is a mistake, not a fresh start')
})

t.test('long PVC names give bounded, stable object names', async (t) => {
  const long = 'a'.repeat(200)
  const target = probeTarget(request((r) => ((r.name = long), (r.object.metadata.name = long))))
  const d = decideAfterProbe(target, exists, repo, config)
  if (d.action !== 'restore') return t.fail('expected restore')
  t.ok(d.destination.metadata.name.length <= 51, 'room for the volsync-dst- prefix in a 63-character label')
  t.match(d.destination.metadata.name, /-restore$/)
  const again = decideAfterProbe(probeTarget(request((r) => ((r.name = long), (r.object.metadata.name = long)))), exists, repo, config)
  t.equal(again.action === 'restore' && again.destination.metadata.name, d.destination.metadata.name, 'deterministic')
  t.notOk('smart-restore.io/pvc' in (d.destination.metadata.labels ?? {}), 'no label value over 63 characters')
})

t.test('none → fresh: unchanged but annotated', async (t) => {
  const req = request()
  const d = decideAfterProbe(probeTarget(req), none, repo, config)
  t.equal(d.action, 'fresh')
  if (d.action !== 'fresh') return
  t.equal(d.verified, true)
  const patched = fastJsonPatch.applyPatch(structuredClone(req.object), d.patch, true, false).newDocument as any
  t.equal(patched.metadata.annotations['smart-restore.io/decision'], 'fresh')
  t.equal(patched.metadata.annotations['smart-restore.io/checked-location'], repo.location)
  t.same(patched.spec, (req.object as any).spec, 'spec unchanged')
  t.notOk(patched.spec.dataSourceRef)
})

t.test('fresh patch on a PVC without annotations adds the map', async (t) => {
  const req = request((r) => delete r.object.metadata.annotations)
  const d = decideAfterProbe(probeTarget(req), none, repo, config)
  if (d.action !== 'fresh') return t.fail('expected fresh')
  t.same(d.patch, [{ op: 'add', path: '/metadata/annotations', value: { 'smart-restore.io/decision': 'fresh', 'smart-restore.io/checked-location': repo.location } }])
})

t.test('unknown → deny, retryable, saying why; onUnknown=fresh turns it into an unverified fresh', async (t) => {
  const d = decideAfterProbe(probeTarget(request()), unknown, repo, config)
  t.equal(d.action, 'deny')
  if (d.action !== 'deny') return
  t.equal(d.code, 503)
  t.equal(d.reason, 'ServiceUnavailable')
  t.match(d.message, /could not check the backup store for media\/data-claim at s3:\/\/backups\/media\/data-claim: S3 answered 403 AccessDenied/)
  t.match(d.message, /Retrying is safe/)
  t.equal(d.cause, 'store-unknown-forbidden')

  const lenient = validateConfig({ ...structuredClone(defaultConfig), onUnknown: 'fresh' })
  const f = decideAfterProbe(probeTarget(request(), lenient), unknown, repo, lenient)
  t.equal(f.action, 'fresh')
  t.equal(f.action === 'fresh' && f.verified, false)
  t.match(f.action === 'fresh' && f.warnings[0], /not checked/)
  const fromUnknown = decideAfterProbe(probeTarget(request((r) => (r.object.metadata.annotations['smart-restore.io/restore-from'] = 'old')), lenient), unknown, repo, lenient)
  t.equal(fromUnknown.action, 'deny', 'an explicit restore-from is never waved through')
})

t.test('the tier label key is configurable', async (t) => {
  const cfg = validateConfig({ ...structuredClone(defaultConfig), tierLabel: 'backup.example.com/tier' })
  t.equal(planCreate(request(), cfg).action, 'skip', 'the default label means nothing now')
  const plan = planCreate(request((r) => (r.object.metadata.labels['backup.example.com/tier'] = 'daily')), cfg)
  t.equal(plan.action === 'probe' && plan.tier, 'daily')
})

t.test('namespace default tier: applies to unlabelled PVCs, and the answer labels them', async (t) => {
  const unlabelled = (r: any) => delete r.object.metadata.labels.backup
  const withDefault = (tier: string) => ({ ...request(unlabelled), namespaceLabels: { 'smart-restore.io/default-tier': tier, 'kubernetes.io/metadata.name': 'media' } })
  const plan = planCreate(withDefault('daily'), config)
  t.equal(plan.action, 'probe')
  if (plan.action !== 'probe') return
  t.equal(plan.tier, 'daily')
  t.same(plan.labelsToAdd, { backup: 'daily' })
  for (const probe of [exists, none]) {
    const d = decideAfterProbe(plan, probe, repo, config)
    if (d.action === 'deny') return t.fail('unexpected deny')
    const patched = fastJsonPatch.applyPatch(structuredClone(withDefault('daily').object), d.patch, true, false).newDocument as any
    t.equal(patched.metadata.labels.backup, 'daily', `${probe.state}: the tier label is added`)
    t.equal(patched.metadata.labels['app.kubernetes.io/name'], 'jellyfin', 'other labels kept')
  }
  const own = planCreate({ ...request(), namespaceLabels: { 'smart-restore.io/default-tier': 'daily' } }, config)
  t.equal(own.action === 'probe' && own.tier, 'hourly', 'the PVC\'s own label wins over the namespace default')
  t.same(own.action === 'probe' && own.labelsToAdd, {})
  const bad = planCreate(withDefault('sometimes'), config)
  t.equal(bad.action, 'deny')
  t.match(bad.action === 'deny' && bad.message, /namespace media has label smart-restore.io\/default-tier="sometimes", which is not a backup tier; valid tiers: hourly, daily, weekly/)
  const optedOut = planCreate({ ...withDefault('daily'), object: { ...structuredClone(withDefault('daily').object as any), metadata: { ...(withDefault('daily').object as any).metadata, annotations: { 'smart-restore.io/skip-restore': 'new' } } } }, config)
  t.equal(optedOut.action, 'skip')
  t.match(optedOut.action === 'skip' && optedOut.patch, [{ op: 'add', path: '/metadata/labels/backup', value: 'daily' }], 'an opted-out PVC is still labelled: it will be backed up')
  t.equal(planCreate({ ...request(unlabelled), namespaceLabels: { other: 'x' } }, config).action, 'skip', 'no default, no label: skipped')
})

t.test('a dataSourceRef that is not a reference is refused, not thrown on', async (t) => {
  for (const bad of [{ kind: { toString: null }, name: 'x' }, 'rd', { kind: 'ReplicationDestination' }, { kind: 'X', name: 5 }]) {
    const plan = planCreate(request((r) => (r.object.spec.dataSourceRef = bad)), config)
    t.equal(plan.action, 'deny', JSON.stringify(bad))
    t.match(plan.action === 'deny' && plan.message, /spec.dataSourceRef must be an object with string kind and name/)
  }
})
