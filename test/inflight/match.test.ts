/** The matching machinery on its own: keys, paths, the predicate, and what findInFlight promises. */
import t from 'tap'
import { evaluate, fieldPathError, findInFlight, linkKeys, pvcKeys, pvcSelfFinding, sinceOf, valuesAt } from '../../src/inflight/match.js'
import { MemoryIndex } from '../../src/inflight/memory-index.js'
import { BUILTIN_RULES } from '../../src/inflight/rules.js'
import type { InFlightRule, InFlightWhen, KubeObject, ObjectIndex, PvcIdentity } from '../../src/inflight/types.js'

const rule = (id: string): InFlightRule => {
  const r = BUILTIN_RULES.find((x) => x.id === id)
  if (!r) throw new Error(id)
  return r
}
const pvc = (over: Partial<PvcIdentity> = {}): PvcIdentity => ({ namespace: 'media', name: 'data', uid: 'u-1', labels: {}, ownerReferences: [], phase: 'Bound', ...over })

const rs = (name: string, namespace: string, sourcePVC: unknown, extra: Record<string, unknown> = {}): KubeObject => ({
  apiVersion: 'volsync.backube/v1alpha1',
  kind: 'ReplicationSource',
  metadata: { name, namespace, uid: `${namespace}-${name}`, ...extra },
  spec: { sourcePVC },
  status: { conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'Synchronization in-progress', lastTransitionTime: '2026-11-22T04:40:00Z' }] },
})

t.test('linkKeys: the keys, and nothing for malformed objects', async (t) => {
  t.same(linkKeys(rule('volsync-replicationsource'), rs('a', 'media', 'data')), ['pvc:media/data'])
  t.same(linkKeys(rule('velero-dataupload'), {
    metadata: { name: 'du', namespace: 'velero', labels: { 'velero.io/pvc-uid': 'u-1' } },
    spec: { sourcePVC: 'data', sourceNamespace: 'media' },
  }).sort(), ['pvc:media/data', 'uid:u-1'])
  t.same(linkKeys(rule('k8up-backup'), { metadata: { name: 'b', namespace: 'media' } }), ['ns:media'])
  t.same(linkKeys(rule('volsync-mover-job'), {
    metadata: { name: 'j', namespace: 'media', ownerReferences: [{ apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationSource', name: 'a' }] },
  }), ['owner:volsync.backube/ReplicationSource/media/a'])
  t.same(linkKeys(rule('cozystack-backupjob'), { metadata: { name: 'j', namespace: 'media' }, spec: { applicationRef: { apiGroup: 'apps.cozystack.io', kind: 'Postgres', name: 'db' } } }), [
    'app:media/db',
    'app:Postgres/media/db',
    'app:apps.cozystack.io/Postgres/media/db',
  ])
  t.same(linkKeys(rule('cozystack-restorejob'), { metadata: { name: 'r', namespace: 'media' }, spec: { backupRef: { name: 'b' } } }), ['ns:media'], 'no target: namespace')
  t.same(linkKeys(rule('volsync-replicationdestination'), { metadata: { name: 'rd', namespace: 'media' }, spec: { restic: { copyMethod: 'Snapshot' } } }), [], 'populator-only RD: found through the PVC, not by key')

  const malformed: unknown[] = [
    null,
    undefined,
    42,
    'x',
    [],
    {},
    { metadata: null },
    { metadata: [] },
    { metadata: { name: 'x' } },
    { metadata: { name: 'x', namespace: 7 }, spec: { sourcePVC: 'data' } },
    { metadata: { name: 'x', namespace: 'media' }, spec: { sourcePVC: 42 } },
    { metadata: { name: 'x', namespace: 'media' }, spec: { sourcePVC: ['data'], targetPVC: { name: 3 }, applicationRef: 'db' } },
    { metadata: { name: 'x', namespace: 'media' }, spec: 'nope' },
    { metadata: { name: 'x', namespace: 'media', labels: 'nope', ownerReferences: {} } },
    { metadata: { name: 'x', namespace: 'media', ownerReferences: [null, 1, { kind: 5 }] } },
  ]
  for (const rule of BUILTIN_RULES) {
    for (const obj of malformed) {
      const keys = linkKeys(rule, obj)
      const expected = rule.id === 'k8up-backup' && (obj as any)?.metadata?.namespace === 'media' ? ['ns:media'] : []
      if (rule.id === 'cozystack-restorejob' && (obj as any)?.metadata?.namespace === 'media') expected.push('ns:media')
      t.same(keys, expected, `${rule.id}: ${JSON.stringify(obj)}`)
    }
  }
  t.same(linkKeys({ ...rule('volsync-replicationsource'), link: { by: 'bogus' } as any }, rs('a', 'media', 'data')), [], 'an unknown link kind has no keys')
})

t.test('pvcKeys mirror linkKeys', async (t) => {
  t.same(pvcKeys(rule('volsync-replicationsource'), pvc()), ['pvc:media/data'])
  t.same(pvcKeys(rule('velero-podvolumebackup'), pvc()), ['uid:u-1'])
  t.same(pvcKeys(rule('velero-podvolumebackup'), pvc({ uid: undefined })), [])
  t.same(pvcKeys(rule('k8up-backup'), pvc()), ['ns:media'])
  t.same(pvcKeys(rule('volsync-mover-job'), pvc()), [], 'owner links go through the owner rule')
  const labelled = pvc({
    labels: { 'apps.cozystack.io/application.name': 'db', 'apps.cozystack.io/application.kind': 'Postgres' },
    ownerReferences: [{ apiVersion: 'apps.cozystack.io/v1alpha1', kind: 'Postgres', name: 'db' }],
  })
  t.same(pvcKeys(rule('cozystack-backupjob'), labelled), ['pvc:media/data', 'app:apps.cozystack.io/Postgres/media/db', 'app:Postgres/media/db'])
  t.same(pvcKeys(rule('cozystack-backupjob'), pvc({ labels: { 'apps.cozystack.io/application.name': 'db' } })), ['pvc:media/data', 'app:media/db'], 'no kind label: by name only')
  const weird = { namespace: 'media', name: 'data', labels: null, ownerReferences: 'x' } as unknown as PvcIdentity
  t.same(pvcKeys(rule('cozystack-backupjob'), weird), ['pvc:media/data'], 'a malformed identity does not throw')
})

t.test('field paths', async (t) => {
  const obj = {
    status: {
      conditions: [
        { type: 'Ready', status: 'True', lastTransitionTime: 'a' },
        { type: 'example.com/Sync', status: 'False', lastTransitionTime: 'b' },
      ],
      snapshots: [{ appRef: { name: 'x' } }, { appRef: { name: 'y' } }, 'junk'],
    },
  }
  t.same(valuesAt(obj, 'status.conditions[type=Ready].lastTransitionTime'), ['a'])
  t.same(valuesAt(obj, 'status.conditions[type=example.com/Sync].status'), ['False'], 'dots inside a selector')
  t.same(valuesAt(obj, 'status.snapshots[*].appRef.name'), ['x', 'y'])
  t.same(valuesAt(obj, 'status.missing.deeper'), [])
  t.same(valuesAt(obj, 'status.conditions.type'), [], 'a list is not walked without a selector')
  t.same(valuesAt({}, 'constructor'), [], 'own properties only')
  t.same(valuesAt({ a: 1 }, '__proto__'), [])
  t.same(valuesAt(null, 'a'), [])
  t.same(valuesAt({ a: 1 }, 'a[*'), [], 'an invalid path reads nothing')
  t.equal(fieldPathError('spec.sourcePVC'), undefined)
  t.equal(fieldPathError('status.conditions[type=Synchronizing].lastTransitionTime'), undefined)
  t.match(fieldPathError('spec..x'), /segment "" of "spec..x" is not valid/)
  t.match(fieldPathError(''), /non-empty/)
  t.match(fieldPathError(7), /non-empty/)
})

t.test('evaluate: each predicate, and wrong shapes', async (t) => {
  const obj = {
    spec: { suspend: 'true' },
    status: {
      phase: 'Running',
      active: 0,
      count: 3,
      readyToUse: true,
      conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress' }],
    },
  }
  t.same(evaluate({ when: 'fieldIn', path: 'status.phase', values: ['Pending', 'Running'] }, obj), { inFlight: true, why: 'status.phase=Running' })
  t.same(evaluate({ when: 'fieldIn', path: 'status.phase', values: ['Pending'] }, obj), { inFlight: false, why: 'status.phase=Running' })
  t.same(evaluate({ when: 'fieldIn', path: 'status.nothing', values: ['x'] }, obj), { inFlight: false, why: 'status.nothing is not set' })
  t.same(evaluate({ when: 'fieldSet', path: 'status.active' }, obj), { inFlight: false, why: 'status.active is not set' }, '0 is unset, as omitempty sees it')
  t.same(evaluate({ when: 'fieldSet', path: 'status.count' }, obj), { inFlight: true, why: 'status.count is set (3)' })
  t.same(evaluate({ when: 'fieldNotTrue', path: 'status.readyToUse' }, obj), { inFlight: false, why: 'status.readyToUse is true' })
  t.same(evaluate({ when: 'fieldNotTrue', path: 'spec.suspend' }, obj), { inFlight: true, why: 'spec.suspend is not true' }, 'the string "true" is not true')
  t.same(evaluate({ when: 'condition', type: 'Synchronizing', status: 'True', reason: 'SyncInProgress' }, obj), { inFlight: true, why: 'condition Synchronizing=True (SyncInProgress)' })
  t.same(evaluate({ when: 'condition', type: 'Synchronizing', status: 'True', reason: 'Other' }, obj), { inFlight: false, why: 'condition Synchronizing=True (SyncInProgress)' })
  t.same(evaluate({ when: 'condition', type: 'Ready', status: 'True' }, obj), { inFlight: false, why: 'no condition Ready' })
  t.same(evaluate({ when: 'not', of: { when: 'fieldSet', path: 'status.error' } }, obj), { inFlight: true, why: 'status.error is not set' })
  t.same(evaluate({ when: 'allOf', of: [{ when: 'fieldSet', path: 'status.count' }, { when: 'fieldIn', path: 'status.phase', values: ['Running'] }] }, obj), {
    inFlight: true,
    why: 'status.count is set (3) and status.phase=Running',
  })
  t.same(evaluate({ when: 'anyOf', of: [{ when: 'fieldSet', path: 'status.active' }, { when: 'fieldSet', path: 'status.x' }] }, obj), {
    inFlight: false,
    why: 'status.active is not set and status.x is not set',
  })

  const wrongTypes: unknown[] = [null, 7, 'x', [], { status: null }, { status: { conditions: 'nope', phase: { a: 1 } } }, { status: { conditions: [null, 3, { type: 5 }] } }]
  const preds: InFlightWhen[] = [
    ...BUILTIN_RULES.map((r) => r.inFlight),
    { when: 'fieldIn', path: 'status.phase', values: ['Running'] },
    { when: 'condition', type: 'Ready', status: 'True' },
  ]
  for (const w of preds) for (const o of wrongTypes) t.doesNotThrow(() => evaluate(w, o))
  t.same(evaluate({ when: 'fieldIn', path: 'status.phase', values: ['Running'] }, { status: { phase: { a: 1 } } }), { inFlight: false, why: 'status.phase={"a":1}' })
  t.same(evaluate({ when: 'bogus' } as any, obj), { inFlight: false, why: 'invalid in-flight condition' })
  t.same(evaluate(null as any, obj), { inFlight: false, why: 'invalid in-flight condition' })
  t.same(evaluate({ when: 'anyOf', of: [] }, obj), { inFlight: false, why: 'invalid in-flight condition' })
  t.same(evaluate({ when: 'not', of: { when: 'nope' } } as any, obj), { inFlight: false, why: 'invalid in-flight condition' }, 'not(garbage) is not "in flight"')
  let deep: InFlightWhen = { when: 'fieldSet', path: 'status.count' }
  for (let i = 0; i < 50; i++) deep = { when: 'not', of: deep }
  t.equal(evaluate(deep, obj).inFlight, false, 'absurd nesting stops instead of recursing forever')
  const cyclic: any = { when: 'not' }
  cyclic.of = cyclic
  t.doesNotThrow(() => evaluate(cyclic, obj))
})

t.test('sinceOf', async (t) => {
  const r = rule('volsync-replicationsource')
  t.equal(sinceOf(r, { status: { lastSyncStartTime: '2026-11-22T04:40:00Z' } }), '2026-11-22T04:40:00Z')
  t.equal(sinceOf(r, { status: { conditions: [{ type: 'Synchronizing', lastTransitionTime: '2026-11-22T04:41:00Z' }] } }), '2026-11-22T04:41:00Z')
  t.equal(sinceOf(r, { status: { lastSyncStartTime: 'yesterday-ish' } }), undefined, 'not a timestamp')
  t.equal(sinceOf(r, { status: { lastSyncStartTime: 1732250400 } }), undefined)
  t.equal(sinceOf(r, null), undefined)
  t.equal(sinceOf({ ...r, since: undefined }, { status: { lastSyncStartTime: '2026-11-22T04:40:00Z' } }), undefined, 'no since paths, no since')
})

t.test('findInFlight: what it promises', async (t) => {
  const all = (objects: Record<string, KubeObject[]>, p = pvc(), inactive: string[] = []) =>
    findInFlight(p, BUILTIN_RULES, new MemoryIndex(BUILTIN_RULES, objects, inactive))

  t.same(all({ 'volsync-replicationsource': [rs('a', 'other-ns', 'data')] }), [], 'a PVC of the same name in another namespace does not match')
  t.same(all({ 'volsync-replicationsource': [rs('a', 'media', 'data')] }, pvc(), ['volsync-replicationsource']), [], 'inactive rules are skipped')

  const deleting = rs('a', 'media', 'data', { deletionTimestamp: '2026-11-22T04:45:00Z', finalizers: ['volsync.backube/cleanup'] })
  t.equal(all({ 'volsync-replicationsource': [deleting] }).length, 1, 'an object being deleted still counts while in flight')

  const nameless = { metadata: { namespace: 'media' }, spec: { sourcePVC: 'data' }, status: {} } as unknown as KubeObject
  t.same(all({ 'volsync-replicationsource': [nameless] }), [], 'objects without a name are ignored')

  const many = all({
    'volsync-replicationsource': [rs('zeta', 'media', 'data'), rs('alpha', 'media', 'data')],
    'k8up-backup': [{ metadata: { name: 'b', namespace: 'media' }, status: { started: true } }],
    'csi-volumesnapshot': [{ metadata: { name: 's', namespace: 'media' }, spec: { source: { persistentVolumeClaimName: 'data' } } }],
  })
  t.same(many.map((f) => `${f.system}/${f.kind}/${f.name}`), ['CSI snapshot/VolumeSnapshot/s', 'K8up/Backup/b', 'VolSync/ReplicationSource/alpha', 'VolSync/ReplicationSource/zeta'], 'sorted by system, kind, name')

  const dup: InFlightRule = { ...rule('volsync-replicationsource'), id: 'my-rs' }
  const rules = [...BUILTIN_RULES, dup]
  const twice = findInFlight(pvc(), rules, new MemoryIndex(rules, { 'volsync-replicationsource': [rs('a', 'media', 'data')], 'my-rs': [rs('a', 'media', 'data')] }))
  t.equal(twice.length, 1, 'one object matched by two rules is named once')

  const throwing: ObjectIndex = {
    byKey: () => {
      throw new Error('cache exploded')
    },
    get: () => {
      throw new Error('cache exploded')
    },
    isActive: () => true,
  }
  t.throws(() => findInFlight(pvc(), BUILTIN_RULES, throwing), { message: 'cache exploded' }, 'a failing index is an error, never "nothing in flight"')

  const a: InFlightRule = { id: 'a', system: 'S', resource: { group: 'x.io', version: 'v1', kind: 'A', plural: 'as' }, link: { by: 'owner', ruleId: 'b' }, inFlight: { when: 'fieldSet', path: 'status.busy' } }
  const b: InFlightRule = { id: 'b', system: 'S', resource: { group: 'x.io', version: 'v1', kind: 'B', plural: 'bs' }, link: { by: 'anyOf', of: [{ by: 'owner', ruleId: 'a' }, { by: 'field', path: 'spec.pvc' }] }, inFlight: { when: 'fieldSet', path: 'status.busy' } }
  const objB = { metadata: { name: 'b1', namespace: 'media', ownerReferences: [{ apiVersion: 'x.io/v1', kind: 'A', name: 'a1' }] }, spec: { pvc: 'data' }, status: { busy: true } }
  const objA = { metadata: { name: 'a1', namespace: 'media', ownerReferences: [{ apiVersion: 'x.io/v1', kind: 'B', name: 'b1' }] }, status: { busy: true } }
  const cyc = findInFlight(pvc(), [a, b], new MemoryIndex([a, b], { a: [objA], b: [objB] }))
  t.same(cyc.map((f) => f.name), ['a1', 'b1'], 'owner cycles terminate')
})

t.test('pvcSelfFinding', async (t) => {
  const ref = { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'data-restore' }
  t.same(pvcSelfFinding(pvc({ dataSourceRef: ref, phase: 'Pending' })), {
    ruleId: 'pvc-populator',
    system: 'volume populator',
    kind: 'PersistentVolumeClaim',
    namespace: 'media',
    name: 'data',
    why: 'still being populated from ReplicationDestination data-restore (volsync.backube): status.phase=Pending',
  })
  t.equal(pvcSelfFinding(pvc({ dataSourceRef: ref, phase: 'Bound' })), undefined)
  t.equal(pvcSelfFinding(pvc({ phase: 'Pending' })), undefined, 'plain Pending PVC: nothing to wait for')
  t.equal(pvcSelfFinding(pvc({ dataSourceRef: { kind: 'VolumeSnapshot', name: '' }, phase: 'Pending' })), undefined, 'malformed ref')
  t.match(pvcSelfFinding(pvc({ dataSourceRef: { kind: 'PersistentVolumeClaim', name: 'src' }, phase: 'Pending' }))?.why, 'from PersistentVolumeClaim src: status.phase')
})
