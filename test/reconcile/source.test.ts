/**
 * The ReplicationSource smart-restore writes for a PVC, and its name: backup settings with the tier's
 * overrides on top, the tier's retention always, only fields that have values, a spread schedule.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { backupSourceName, MAX_VOLSYNC_OBJECT_NAME, repositorySecretName, restoreDestinationName } from '../../src/engines/names.js'
import { buildReplicationSource, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SOURCE_RESTIC_FIELDS } from '../../src/engines/volsync.js'
import type { PvcState } from '../../src/reconcile/types.js'
import { spreadSchedule } from '../../src/reconcile/schedule.js'

const pvc: PvcState = {
  namespace: 'media',
  name: 'data-claim',
  uid: 'c0ffee00-0000-4000-8000-000000000001',
  labels: { backup: 'hourly' },
  annotations: {},
  phase: 'Bound',
  storageClassName: 'standard',
  accessModes: ['ReadWriteOnce'],
  capacity: '1Gi',
}

function config(mutate: (c: any) => void = () => {}): Config {
  const c: any = structuredClone(defaultConfig)
  mutate(c)
  return validateConfig(c)
}

t.test('backupSourceName: <pvc>-backup, bounded like the restore destination', async (t) => {
  t.equal(backupSourceName('data-claim'), 'data-claim-backup')
  const long = 'a'.repeat(80)
  const name = backupSourceName(long)
  t.ok(name.length <= MAX_VOLSYNC_OBJECT_NAME, `${name.length} <= ${MAX_VOLSYNC_OBJECT_NAME}`)
  t.equal(MAX_VOLSYNC_OBJECT_NAME, 51)
  t.match(name, /-[0-9a-f]{8}-backup$/)
  t.equal(backupSourceName(long), name, 'deterministic')
  t.not(backupSourceName(`${long}x`), name, 'a different long name, a different source')
  const exact = 'b'.repeat(51 - '-backup'.length)
  t.equal(backupSourceName(exact), `${exact}-backup`, 'a name that just fits is kept whole')
  t.not(backupSourceName('x'), restoreDestinationName('x'))
  t.not(backupSourceName('x'), repositorySecretName('x'))
})

t.test('the default tiers: a complete, minimal source', async (t) => {
  const c = config()
  const rs = buildReplicationSource({ config: c, pvc, tier: 'hourly', name: 'data-claim-backup', repositorySecret: 'data-claim-restic' })
  t.same(rs, {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationSource',
    metadata: {
      name: 'data-claim-backup',
      namespace: 'media',
      labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, 'smart-restore.io/pvc': 'data-claim', 'smart-restore.io/tier': 'hourly' },
      annotations: { 'smart-restore.io/pvc': 'data-claim' },
      ownerReferences: [{ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data-claim', uid: pvc.uid }],
    },
    spec: {
      sourcePVC: 'data-claim',
      trigger: { schedule: spreadSchedule('H * * * *', 'media', 'data-claim') },
      restic: {
        repository: 'data-claim-restic',
        copyMethod: 'Snapshot',
        retain: { hourly: 24, daily: 7, weekly: 4 },
        // "default: the PVC's" storage class for the temporary snapshot volume
        storageClassName: 'standard',
      },
    },
  })
  t.notOk('pruneIntervalDays' in rs.spec.restic, 'unset settings are not written')
  t.notOk('ownerReferences' in buildReplicationSource({ config: c, pvc: { ...pvc, uid: '' }, tier: 'hourly', name: 'x', repositorySecret: 'y' }).metadata, 'no uid, no owner')
  t.notOk('storageClassName' in buildReplicationSource({ config: c, pvc: { ...pvc, storageClassName: undefined }, tier: 'hourly', name: 'x', repositorySecret: 'y' }).spec.restic)
})

t.test('retain always comes from the tier', async (t) => {
  const c = config()
  for (const tier of Object.keys(c.tiers)) {
    const rs = buildReplicationSource({ config: c, pvc, tier, name: 'n', repositorySecret: 's' })
    t.same(rs.spec.restic.retain, c.tiers[tier]!.retain, `${tier}: retain`)
    t.not(rs.spec.restic.retain, c.tiers[tier]!.retain, `${tier}: a copy, not the config's object`)
    t.equal(rs.metadata.labels['smart-restore.io/tier'], tier)
  }
})

t.test('backup settings, with the tier overrides on top', async (t) => {
  const c = config((c) => {
    c.backup = {
      copyMethod: 'Snapshot',
      volumeSnapshotClassName: 'csi-snap',
      cacheCapacity: '2Gi',
      cacheStorageClassName: 'fast',
      pruneIntervalDays: 7,
      moverServiceAccount: 'volsync-mover',
      moverSecurityContext: { runAsUser: 1000, fsGroup: 1000 },
    }
    c.tiers.daily.overrides = { copyMethod: 'Clone', storageClassName: 'cheap', pruneIntervalDays: 30, moverSecurityContext: { runAsUser: 2000 } }
  })
  const hourly = buildReplicationSource({ config: c, pvc, tier: 'hourly', name: 'n', repositorySecret: 's' })
  t.same(hourly.spec.restic, {
    repository: 's',
    copyMethod: 'Snapshot',
    retain: c.tiers.hourly!.retain,
    pruneIntervalDays: 7,
    volumeSnapshotClassName: 'csi-snap',
    storageClassName: 'standard',
    cacheCapacity: '2Gi',
    cacheStorageClassName: 'fast',
    moverServiceAccount: 'volsync-mover',
    moverSecurityContext: { runAsUser: 1000, fsGroup: 1000 },
  })
  const daily = buildReplicationSource({ config: c, pvc, tier: 'daily', name: 'n', repositorySecret: 's' })
  t.same(daily.spec.restic, {
    repository: 's',
    copyMethod: 'Clone',
    retain: c.tiers.daily!.retain,
    pruneIntervalDays: 30,
    volumeSnapshotClassName: 'csi-snap',
    storageClassName: 'cheap',
    cacheCapacity: '2Gi',
    cacheStorageClassName: 'fast',
    moverServiceAccount: 'volsync-mover',
    // an overriding security context replaces the object (a partial merge could leave an unsafe mix)
    moverSecurityContext: { runAsUser: 2000 },
  })
  t.match(daily.spec.trigger.schedule, /^\d+ [0-5] \* \* \*$/)
  for (const key of Object.keys(daily.spec.restic)) t.ok((SOURCE_RESTIC_FIELDS as readonly string[]).includes(key), `${key} is compared by the reconciler`)
})

t.test('an unconfigured tier throws (callers check first)', async (t) => {
  t.throws(() => buildReplicationSource({ config: config(), pvc, tier: 'nope', name: 'n', repositorySecret: 's' }), /not configured/)
  t.throws(() => buildReplicationSource({ config: config(), pvc, tier: 'constructor', name: 'n', repositorySecret: 's' }), /not configured/)
})
