/**
 * preflightRestore: a restore is admitted only when VolSync can populate it — row by row.
 */
import t from 'tap'
import { clusterGaps, preflightDenial, preflightRestore, type PreflightFacts } from '../../src/decide/preflight.js'

const complete: PreflightFacts = {
  synced: true,
  volumePopulatorApi: true,
  replicationDestinationApi: true,
  volumeSnapshotApi: true,
  storageClasses: [
    { name: 'longhorn', provisioner: 'driver.longhorn.io', isDefault: true },
    { name: 'ceph-block', provisioner: 'rbd.csi.ceph.com', isDefault: false },
    { name: 'nfs', provisioner: 'nfs.csi.k8s.io', isDefault: false },
  ],
  snapshotClasses: [
    { name: 'longhorn-snap', driver: 'driver.longhorn.io', isDefault: true },
    { name: 'ceph-snap', driver: 'rbd.csi.ceph.com', isDefault: false },
    { name: 'ceph-snap-2', driver: 'rbd.csi.ceph.com', isDefault: false },
  ],
}

t.test('everything there: ok, naming the classes the restore will use', async (t) => {
  t.same(preflightRestore(complete, { storageClassName: 'longhorn' }), { ok: true, storageClass: 'longhorn', snapshotClass: 'longhorn-snap' })
  t.same(preflightRestore(complete, { storageClassName: undefined }), { ok: true, storageClass: 'longhorn', snapshotClass: 'longhorn-snap' }, 'no class named: the default')
  t.same(preflightRestore(complete, { storageClassName: undefined, configuredStorageClass: 'ceph-block', volumeSnapshotClassName: 'ceph-snap' }), { ok: true, storageClass: 'ceph-block', snapshotClass: 'ceph-snap' }, 'restore.storageClassName when the PVC names none')
  t.same(preflightRestore(complete, { storageClassName: 'nfs', volumeSnapshotClassName: 'longhorn-snap' }), { ok: true, storageClass: 'nfs', snapshotClass: 'longhorn-snap' }, 'a configured snapshot class is used as is')
})

t.test('each missing piece is named', async (t) => {
  const rows: Array<[string, Partial<PreflightFacts>, Parameters<typeof preflightRestore>[1], RegExp[]]> = [
    ['no populator CRD', { volumePopulatorApi: false }, { storageClassName: 'longhorn' }, [/^the CRD volumepopulators\.populator\.storage\.k8s\.io \(without it VolSync does not start its volume populator/]],
    ['no VolSync', { replicationDestinationApi: false }, { storageClassName: 'longhorn' }, [/^the ReplicationDestination API/]],
    ['no snapshot API', { volumeSnapshotApi: false, snapshotClasses: [] }, { storageClassName: 'longhorn' }, [/^the VolumeSnapshot API \(snapshot\.storage\.k8s\.io/]],
    ['unknown StorageClass', {}, { storageClassName: 'fast' }, [/^StorageClass fast \(the PVC's class/]],
    ['storageClassName ""', {}, { storageClassName: '' }, [/storageClassName: "" \(static binding only\)/]],
    ['no class and no default', { storageClasses: complete.storageClasses.map((c) => ({ ...c, isDefault: false })) }, { storageClassName: undefined }, [/no StorageClass is marked default/]],
    ['configured StorageClass missing', {}, { storageClassName: undefined, configuredStorageClass: 'gone' }, [/^StorageClass gone \(restore\.storageClassName\)/]],
    ['configured VolumeSnapshotClass missing', {}, { storageClassName: 'longhorn', volumeSnapshotClassName: 'gone-snap' }, [/^VolumeSnapshotClass gone-snap \(restore\.volumeSnapshotClassName\)/]],
    ['no snapshot class for the driver', {}, { storageClassName: 'nfs' }, [/^a VolumeSnapshotClass for driver nfs\.csi\.k8s\.io \(StorageClass nfs\); or set restore\.volumeSnapshotClassName/]],
    ['two classes, none default', {}, { storageClassName: 'ceph-block' }, [/^a default VolumeSnapshotClass for driver rbd\.csi\.ceph\.com \(2 exist, none marked/]],
    ['several at once', { volumePopulatorApi: false }, { storageClassName: 'fast' }, [/volumepopulators/, /StorageClass fast/]],
  ]
  for (const [why, facts, target, expected] of rows) {
    const v = preflightRestore({ ...complete, ...facts }, target)
    if (v.ok || v.retryable) {
      t.fail(`${why}: expected missing, got ${JSON.stringify(v)}`)
      continue
    }
    t.equal(v.missing.length, expected.length, `${why}: ${v.missing.length} missing`)
    expected.forEach((re, i) => t.match(v.missing[i], re, `${why}: ${re}`))
  }
  t.same(preflightRestore({ ...complete, replicationDestinationApi: undefined }, { storageClassName: 'longhorn' }).ok, true, 'an API nobody watches is not checked')
})

t.test('not synced: the retryable answer', async (t) => {
  const v = preflightRestore({ ...complete, synced: false, unsyncedReason: 'waiting for the watches of storageclasses.storage.k8s.io/v1' }, { storageClassName: 'longhorn' })
  t.same(v, { ok: false, retryable: true, reason: 'waiting for the watches of storageclasses.storage.k8s.io/v1' })
  const d = preflightDenial(v, { namespace: 'media', pvcName: 'db', skipRestoreKey: 'smart-restore.io/skip-restore' })
  t.match(d, { code: 503, reason: 'ServiceUnavailable', cause: 'restore-preflight-syncing' })
  t.match(d?.message, /^a backup of media\/db exists, but smart-restore cannot tell yet whether its restore can be populated \(waiting for .*\)\. The PVC was not created; retrying is safe\.$/)
})

t.test('the denial: 422, what is missing, what to do', async (t) => {
  const d = preflightDenial(preflightRestore({ ...complete, volumePopulatorApi: false }, { storageClassName: 'longhorn' }), { namespace: 'media', pvcName: 'db', skipRestoreKey: 'smart-restore.io/skip-restore' })
  t.match(d, { action: 'deny', code: 422, reason: 'Invalid', cause: 'restore-preflight-missing' })
  t.match(d?.message, /^a backup of media\/db exists, but its restore cannot be populated: missing the CRD volumepopulators\.populator\.storage\.k8s\.io .*would stay Pending forever, so it was not created\. Install what is missing and retry; to create it empty on purpose, annotate it smart-restore\.io\/skip-restore: "<reason>"\.$/)
  t.equal(preflightDenial({ ok: true }, { namespace: 'a', pvcName: 'b', skipRestoreKey: 'k' }), undefined)
})

t.test('cluster-wide gaps carry a metric id', async (t) => {
  t.same(clusterGaps(complete, {}), [])
  t.same(
    clusterGaps({ ...complete, volumePopulatorApi: false, replicationDestinationApi: false, volumeSnapshotApi: false }, { configuredStorageClass: 'gone' }).map((g) => g.id),
    ['volume_populator_crd', 'replicationdestination_api', 'volumesnapshot_api', 'storageclass'],
  )
  t.same(clusterGaps(complete, { volumeSnapshotClassName: 'gone' }).map((g) => g.id), ['volumesnapshotclass'])
})
