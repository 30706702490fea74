/**
 * The built-in rule table, system by system: objects shaped the way each system writes them, once in
 * flight and once not, found through an index keyed by linkKeys and queried with pvcKeys.
 */
import t from 'tap'
import { findInFlight } from '../../src/inflight/match.js'
import { MemoryIndex } from '../../src/inflight/memory-index.js'
import { BUILTIN_RULES } from '../../src/inflight/rules.js'
import type { InFlightFinding, KubeObject, PvcIdentity } from '../../src/inflight/types.js'

const NS = 'media'
const PVC_UID = '0fc763a3-149d-4c0b-9ce6-edc82843ca9c'

function pvc(over: Partial<PvcIdentity> = {}): PvcIdentity {
  return { namespace: NS, name: 'data', uid: PVC_UID, labels: {}, ownerReferences: [], phase: 'Bound', ...over }
}

function find(objects: Record<string, KubeObject[]>, p: PvcIdentity = pvc()): InFlightFinding[] {
  return findInFlight(p, BUILTIN_RULES, new MemoryIndex(BUILTIN_RULES, objects))
}

/** Only the rule ids and object names found, which is what most assertions are about. */
function found(objects: Record<string, KubeObject[]>, p: PvcIdentity = pvc()): string[] {
  return find(objects, p).map((f) => `${f.ruleId}:${f.name}`)
}

let uidSeq = 0
function meta(name: string, namespace = NS, extra: Record<string, unknown> = {}): KubeObject['metadata'] {
  return { name, namespace, uid: `00000000-0000-4000-8000-${String(++uidSeq).padStart(12, '0')}`, creationTimestamp: '2026-11-22T04:00:00Z', ...extra }
}

// --- VolSync ----------------------------------------------------------------------------------------

const syncing = {
  type: 'Synchronizing',
  status: 'True',
  reason: 'SyncInProgress',
  message: 'Synchronization in-progress',
  lastTransitionTime: '2026-11-22T04:40:00Z',
  observedGeneration: 1,
}
const waitingForSchedule = {
  type: 'Synchronizing',
  status: 'False',
  reason: 'WaitingForSchedule',
  message: 'Waiting for next scheduled synchronization',
  lastTransitionTime: '2026-11-22T04:41:07Z',
  observedGeneration: 1,
}

function replicationSource(status: Record<string, unknown>, name = 'data-backup', namespace = NS, sourcePVC = 'data'): KubeObject {
  return {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationSource',
    metadata: meta(name, namespace),
    spec: {
      sourcePVC,
      trigger: { schedule: '0 * * * *' },
      restic: { repository: `${sourcePVC}-restic`, copyMethod: 'Snapshot', retain: { hourly: 24, daily: 7 }, pruneIntervalDays: 7 },
    },
    status,
  }
}

const rsRunning = () =>
  replicationSource({
    conditions: [syncing],
    lastSyncStartTime: '2026-11-22T04:40:00Z',
    lastSyncTime: '2026-11-22T03:41:02Z',
    lastSyncDuration: '1m2.5s',
    nextSyncTime: '2026-11-22T05:00:00Z',
  })
const rsIdle = () =>
  replicationSource({
    conditions: [waitingForSchedule],
    lastSyncTime: '2026-11-22T04:41:07Z',
    lastSyncDuration: '1m7.1s',
    nextSyncTime: '2026-11-22T05:00:00Z',
    latestMoverStatus: { result: 'Successful', logs: 'processed 12 files, 3.1 MiB in 0:04\nsnapshot 1a2b3c4d saved' },
    restic: { lastPruned: '2026-11-20T04:00:00Z' },
  })

function replicationDestination(name: string, spec: Record<string, unknown>, status: Record<string, unknown>): KubeObject {
  return { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: meta(name), spec, status }
}

const rdSpec = {
  trigger: { manual: 'restore-once' },
  restic: { repository: 'data-restic', copyMethod: 'Snapshot', capacity: '10Gi', accessModes: ['ReadWriteOnce'], storageClassName: 'longhorn' },
}
const rdRunning = () =>
  replicationDestination('data-restore', rdSpec, { conditions: [syncing], lastSyncStartTime: '2026-11-22T04:40:00Z' })
const rdDone = () =>
  replicationDestination('data-restore', rdSpec, {
    conditions: [{ ...waitingForSchedule, reason: 'WaitingForManual', message: 'Waiting for manual trigger' }],
    lastManualSync: 'restore-once',
    lastSyncTime: '2026-11-22T04:42:10Z',
    lastSyncDuration: '2m10s',
    latestImage: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: 'volsync-data-restore-dst-20261122044210' },
    latestMoverStatus: { result: 'Successful', logs: 'restoring <Snapshot 1a2b3c4d> to /data' },
  })

const populated = pvc({ dataSourceRef: { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'data-restore' } })

function moverJob(name: string, owner: { kind: string; name: string }, spec: Record<string, unknown>, status: Record<string, unknown>): KubeObject {
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: meta(name, NS, {
      labels: { 'app.kubernetes.io/created-by': 'volsync' },
      ownerReferences: [{ apiVersion: 'volsync.backube/v1alpha1', kind: owner.kind, name: owner.name, uid: 'owner-uid', controller: true, blockOwnerDeletion: true }],
    }),
    spec: { backoffLimit: 8, parallelism: 1, completions: 1, template: { spec: { restartPolicy: 'OnFailure' } }, ...spec },
    status,
  }
}
const jobActive = (owner = { kind: 'ReplicationSource', name: 'data-backup' }) =>
  moverJob(`volsync-${owner.kind === 'ReplicationSource' ? 'src' : 'dst'}-${owner.name}`, owner, {}, { active: 1, ready: 1, terminating: 0, startTime: '2026-11-22T04:40:03Z', uncountedTerminatedPods: {} })
const jobSucceeded = () =>
  moverJob('volsync-src-data-backup', { kind: 'ReplicationSource', name: 'data-backup' }, {}, {
    conditions: [
      { type: 'SuccessCriteriaMet', status: 'True', lastProbeTime: '2026-11-22T04:41:05Z', lastTransitionTime: '2026-11-22T04:41:05Z' },
      { type: 'Complete', status: 'True', lastProbeTime: '2026-11-22T04:41:05Z', lastTransitionTime: '2026-11-22T04:41:05Z' },
    ],
    startTime: '2026-11-22T04:40:03Z',
    completionTime: '2026-11-22T04:41:05Z',
    succeeded: 1,
    ready: 0,
    terminating: 0,
    uncountedTerminatedPods: {},
  })

t.test('VolSync ReplicationSource', async (t) => {
  const [f] = find({ 'volsync-replicationsource': [rsRunning()] })
  t.same(f, {
    ruleId: 'volsync-replicationsource',
    system: 'VolSync',
    kind: 'ReplicationSource',
    namespace: NS,
    name: 'data-backup',
    since: '2026-11-22T04:40:00Z',
    why: 'condition Synchronizing=True (SyncInProgress)',
  })
  t.same(found({ 'volsync-replicationsource': [rsIdle()] }), [], 'WaitingForSchedule with lastSyncTime/nextSyncTime is idle')

  const onlyStart = rsIdle()
  ;(onlyStart.status as any).lastSyncStartTime = '2026-11-22T05:00:00Z'
  const [g] = find({ 'volsync-replicationsource': [onlyStart] })
  t.match(g, { why: 'status.lastSyncStartTime is set (2026-11-22T05:00:00Z)', since: '2026-11-22T05:00:00Z' }, 'a run that hit an error keeps lastSyncStartTime')

  const conditionOnly = replicationSource({ conditions: [syncing] })
  t.match(find({ 'volsync-replicationsource': [conditionOnly] }), [{ since: '2026-11-22T04:40:00Z' }], 'since falls back to the condition')

  const cleaning = replicationSource({ conditions: [{ ...waitingForSchedule, reason: 'CleaningUp', message: 'Cleaning up' }], lastSyncTime: '2026-11-22T04:41:07Z' })
  t.same(found({ 'volsync-replicationsource': [cleaning] }), [], 'cleaning up after a sync no longer touches the PVC')

  t.same(found({ 'volsync-replicationsource': [replicationSource({})] }), [], 'a brand-new RS without status is not running yet')
  t.same(found({ 'volsync-replicationsource': [replicationSource({ conditions: [syncing] }, 'other-backup', NS, 'other')] }), [], 'another PVC')
  t.same(found({ 'volsync-replicationsource': [replicationSource({ conditions: [syncing] }, 'data-backup', 'other-ns')] }), [], 'same PVC name, other namespace')
})

t.test('VolSync ReplicationDestination', async (t) => {
  t.same(found({ 'volsync-replicationdestination': [rdRunning()] }, populated), ['volsync-replicationdestination:data-restore'], 'named by the PVC dataSourceRef')
  t.same(found({ 'volsync-replicationdestination': [rdDone()] }, populated), [], 'completed RD with latestImage')
  t.same(found({ 'volsync-replicationdestination': [rdRunning()] }), [], 'a PVC without the dataSourceRef is not concerned')

  const wrongGroup = pvc({ dataSourceRef: { apiGroup: 'example.com', kind: 'ReplicationDestination', name: 'data-restore' } })
  t.same(found({ 'volsync-replicationdestination': [rdRunning()] }, wrongGroup), [], 'dataSourceRef of another group')

  for (const mover of ['restic', 'rclone', 'rsync', 'rsyncTLS', 'kopia']) {
    const rd = replicationDestination(`direct-${mover}`, { trigger: { manual: 'x' }, [mover]: { destinationPVC: 'data', copyMethod: 'Direct' } }, { conditions: [syncing] })
    t.same(found({ 'volsync-replicationdestination': [rd] }), [`volsync-replicationdestination:direct-${mover}`], `spec.${mover}.destinationPVC`)
  }

  const both = replicationDestination('data-restore', { restic: { destinationPVC: 'data', copyMethod: 'Snapshot' } }, { conditions: [syncing] })
  t.equal(find({ 'volsync-replicationdestination': [both] }, populated).length, 1, 'linked twice, reported once')
})

t.test('VolSync mover Jobs', async (t) => {
  t.same(
    found({ 'volsync-replicationsource': [rsRunning()], 'volsync-mover-job': [jobActive()] }),
    ['volsync-mover-job:volsync-src-data-backup', 'volsync-replicationsource:data-backup'],
    'both, sorted by system, kind, name',
  )

  const idleOwner = find({ 'volsync-replicationsource': [rsIdle()], 'volsync-mover-job': [jobActive()] })
  t.same(idleOwner, [
    {
      ruleId: 'volsync-mover-job',
      system: 'VolSync',
      kind: 'Job',
      namespace: NS,
      name: 'volsync-src-data-backup',
      since: '2026-11-22T04:40:03Z',
      why: 'for ReplicationSource data-backup: status.active is set (1)',
    },
  ], 'a running Job of an idle-looking RS still counts')

  t.same(found({ 'volsync-replicationsource': [rsIdle()], 'volsync-mover-job': [jobSucceeded()] }), [], 'succeeded Job')

  const failed = moverJob('volsync-src-data-backup', { kind: 'ReplicationSource', name: 'data-backup' }, {}, {
    conditions: [
      { type: 'FailureTarget', status: 'True', reason: 'BackoffLimitExceeded' },
      { type: 'Failed', status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit' },
    ],
    startTime: '2026-11-22T04:40:03Z',
    failed: 9,
    ready: 0,
    terminating: 0,
  })
  t.same(found({ 'volsync-replicationsource': [rsIdle()], 'volsync-mover-job': [failed] }), [], 'failed Job')

  const justCreated = moverJob('volsync-src-data-backup', { kind: 'ReplicationSource', name: 'data-backup' }, {}, {})
  t.match(find({ 'volsync-replicationsource': [rsIdle()], 'volsync-mover-job': [justCreated] }), [{ name: 'volsync-src-data-backup', since: '2026-11-22T04:00:00Z' }], 'a Job whose pod is not up yet')

  const suspended = moverJob('volsync-src-data-backup', { kind: 'ReplicationSource', name: 'data-backup' }, { suspend: true }, {
    conditions: [{ type: 'Suspended', status: 'True', reason: 'JobSuspended' }],
    ready: 0,
  })
  t.same(found({ 'volsync-replicationsource': [rsIdle()], 'volsync-mover-job': [suspended] }), [], 'a paused RS suspends its Job')

  const otherRs = replicationSource({ conditions: [waitingForSchedule] }, 'other-backup', NS, 'other')
  t.same(found({ 'volsync-replicationsource': [otherRs], 'volsync-mover-job': [jobActive({ kind: 'ReplicationSource', name: 'other-backup' })] }), [], "another PVC's mover")
  t.same(found({ 'volsync-mover-job': [jobActive()] }), [], 'a Job whose owner is not known is not linked')

  const dst = jobActive({ kind: 'ReplicationDestination', name: 'data-restore' })
  t.same(found({ 'volsync-replicationdestination': [rdDone()], 'volsync-mover-job': [dst] }, populated), ['volsync-mover-job:volsync-dst-data-restore'], 'RD mover through the dataSourceRef')
  t.same(found({ 'volsync-replicationsource': [rsIdle()], 'volsync-mover-job': [jobActive()] }, pvc({ namespace: 'other-ns' })), [], 'other namespace')
})

// --- restic operator (datarestor-operator) --------------------------------------------------------

function resticBackup(name: string, spec: Record<string, unknown>, phase: string, namespace = NS): KubeObject {
  return {
    apiVersion: 'backup.datarestor-operator.com/v1alpha1',
    kind: 'ResticBackup',
    metadata: meta(name, namespace),
    spec: { name, repository: { name: 'nas' }, type: 'scheduled', ...spec },
    status: { phase, startTime: '2026-11-22T04:30:00Z', ...(phase === 'Completed' ? { completionTime: '2026-11-22T04:31:00Z', duration: '1m0s' } : {}) },
  }
}

t.test('restic operator ResticBackup / ResticRestore', async (t) => {
  const current = { sourcePVC: { name: 'data', namespace: NS } }
  t.same(found({ 'restic-operator-resticbackup': [resticBackup('data-20261122', current, 'Running')] }), ['restic-operator-resticbackup:data-20261122'])
  t.same(found({ 'restic-operator-resticbackup': [resticBackup('data-20261122', current, 'Pending')] }), ['restic-operator-resticbackup:data-20261122'])
  t.same(found({ 'restic-operator-resticbackup': [resticBackup('data-20261122', current, 'Completed')] }), [])
  t.same(found({ 'restic-operator-resticbackup': [resticBackup('data-20261122', current, 'Failed')] }), [])

  const seedShape = { backupName: 'nightly', pvcRef: { name: 'data', namespace: NS } }
  t.match(find({ 'restic-operator-resticbackup': [resticBackup('data-nightly', seedShape, 'Running')] }), [{ why: 'status.phase=Running', since: '2026-11-22T04:30:00Z' }], 'the seed-era spec.pvcRef')

  const crossNs = resticBackup('data-x', { sourcePVC: { name: 'data', namespace: NS } }, 'Running', 'backup-system')
  t.match(find({ 'restic-operator-resticbackup': [crossNs] }), [{ namespace: 'backup-system', name: 'data-x' }], 'the PVC reference may name another namespace')
  const elsewhere = resticBackup('data-y', { sourcePVC: { name: 'data', namespace: 'other-ns' } }, 'Running')
  t.same(found({ 'restic-operator-resticbackup': [elsewhere] }), [], 'same name, other namespace')

  const restore = (targetPVC: unknown, phase: string): KubeObject => ({
    apiVersion: 'backup.datarestor-operator.com/v1alpha1',
    kind: 'ResticRestore',
    metadata: meta('data-restore'),
    spec: { name: 'data-20261122', repository: { name: 'nas' }, type: 'automated', targetPVC },
    status: { phase },
  })
  t.same(found({ 'restic-operator-resticrestore': [restore({ name: 'data', namespace: NS }, 'Running')] }), ['restic-operator-resticrestore:data-restore'])
  t.same(found({ 'restic-operator-resticrestore': [restore('data', 'Pending')] }), ['restic-operator-resticrestore:data-restore'], 'targetPVC as a plain name')
  t.same(found({ 'restic-operator-resticrestore': [restore('data', 'Completed')] }), [])

  const other = (phase: string): KubeObject => ({
    apiVersion: 'backup.resticbackup.io/v1alpha1',
    kind: 'ResticRestore',
    metadata: meta('emby-restore-20240115'),
    spec: { backupRef: { name: 'emby-config-backup' }, snapshotID: 'abc123def456', target: { pvc: { claimName: 'data', path: '/' } } },
    status: { phase, startTime: '2024-01-15T10:25:00Z' },
  })
  t.same(found({ 'resticbackup-io-resticrestore': [other('InProgress')] }), ['resticbackup-io-resticrestore:emby-restore-20240115'])
  t.same(found({ 'resticbackup-io-resticrestore': [other('Completed')] }), [])
})

// --- Cozystack --------------------------------------------------------------------------------------

const appRef = { apiGroup: 'apps.cozystack.io', kind: 'Postgres', name: 'db' }
const cozyLabels = { 'apps.cozystack.io/application.group': 'apps.cozystack.io', 'apps.cozystack.io/application.kind': 'Postgres', 'apps.cozystack.io/application.name': 'db' }

function backupJob(phase: string, ref: Record<string, unknown> = appRef): KubeObject {
  return {
    apiVersion: 'backups.cozystack.io/v1alpha1',
    kind: 'BackupJob',
    metadata: meta('db-adhoc'),
    spec: { applicationRef: ref, backupClassName: 'velero', triggeredBy: 'Manual' },
    status: { phase, startedAt: '2026-11-22T04:45:00Z', ...(phase === 'Succeeded' ? { completedAt: '2026-11-22T04:50:00Z', backupRef: { name: 'db-adhoc' } } : {}) },
  }
}

t.test('Cozystack BackupJob / RestoreJob', async (t) => {
  const labelled = pvc({ name: 'data-db-0', labels: cozyLabels })
  t.match(find({ 'cozystack-backupjob': [backupJob('Running')] }, labelled), [{ name: 'db-adhoc', why: 'status.phase=Running', since: '2026-11-22T04:45:00Z' }], 'PVC labelled with the application')
  t.same(found({ 'cozystack-backupjob': [backupJob('Succeeded')] }, labelled), [])
  t.same(found({ 'cozystack-backupjob': [backupJob('Failed')] }, labelled), [])
  t.same(found({ 'cozystack-backupjob': [backupJob('Running', { apiGroup: 'apps.cozystack.io', kind: 'Redis', name: 'db' })] }, labelled), [], 'an app of another kind with the same name')

  const owned = pvc({ ownerReferences: [{ apiVersion: 'apps.cozystack.io/v1alpha1', kind: 'Postgres', name: 'db', uid: 'app-uid' }] })
  t.same(found({ 'cozystack-backupjob': [backupJob('Pending')] }, owned), ['cozystack-backupjob:db-adhoc'], 'PVC owned by the application')
  t.same(found({ 'cozystack-backupjob': [backupJob('Running')] }), [], 'an unrelated PVC')
  t.same(found({ 'cozystack-backupjob': [backupJob('Running')] }, pvc({ namespace: 'other-ns', labels: cozyLabels })), [], 'same app name in another namespace')

  const restoreJob = (phase: string, target?: Record<string, unknown>): KubeObject => ({
    apiVersion: 'backups.cozystack.io/v1alpha1',
    kind: 'RestoreJob',
    metadata: meta('db-restore'),
    spec: { backupRef: { name: 'db-adhoc' }, ...(target ? { targetApplicationRef: target } : {}) },
    status: { phase, startedAt: '2026-11-22T05:00:00Z' },
  })
  t.same(found({ 'cozystack-restorejob': [restoreJob('Running', appRef)] }, labelled), ['cozystack-restorejob:db-restore'])
  t.same(found({ 'cozystack-restorejob': [restoreJob('Running', { ...appRef, name: 'db2' })] }, labelled), [], 'restoring into another app')
  t.same(found({ 'cozystack-restorejob': [restoreJob('Running')] }), ['cozystack-restorejob:db-restore'], 'no target: the Backup decides, so the whole namespace waits')
  t.same(found({ 'cozystack-restorejob': [restoreJob('Succeeded')] }), [])
})

// --- Velero -----------------------------------------------------------------------------------------

function dataUpload(phase: string, over: { sourcePVC?: string; sourceNamespace?: string; pvcUid?: string } = {}): KubeObject {
  return {
    apiVersion: 'velero.io/v2alpha1',
    kind: 'DataUpload',
    metadata: meta('nightly-20261122-x7k2p', 'velero', {
      generateName: 'nightly-20261122-',
      labels: {
        'velero.io/backup-name': 'nightly-20261122',
        'velero.io/backup-uid': 'b1b2',
        'velero.io/pvc-uid': over.pvcUid ?? PVC_UID,
        'velero.io/async-operation-id': 'du-b1b2.0fc763a3',
      },
      ownerReferences: [{ apiVersion: 'velero.io/v1', kind: 'Backup', name: 'nightly-20261122', uid: 'b1b2', controller: true }],
    }),
    spec: {
      snapshotType: 'CSI',
      csiSnapshot: { volumeSnapshot: 'velero-data-x7k2p', storageClass: 'longhorn', snapshotClass: 'longhorn-snap', driver: 'driver.longhorn.io' },
      sourcePVC: over.sourcePVC ?? 'data',
      datamover: 'velero',
      backupStorageLocation: 'default',
      sourceNamespace: over.sourceNamespace ?? NS,
      operationTimeout: '10m0s',
    },
    status: {
      phase,
      acceptedByNode: 'node-1',
      acceptedTimestamp: '2026-11-22T02:00:05Z',
      ...(phase === 'New' || phase === 'Accepted' ? {} : { startTimestamp: '2026-11-22T02:00:20Z', node: 'node-1', progress: { totalBytes: 1073741824, bytesDone: 104857600 } }),
      ...(phase === 'Completed' ? { completionTimestamp: '2026-11-22T02:03:00Z', snapshotID: 'f0e1d2', path: '/data' } : {}),
    },
  }
}

t.test('Velero DataUpload / DataDownload', async (t) => {
  t.same(find({ 'velero-dataupload': [dataUpload('InProgress')] }), [
    {
      ruleId: 'velero-dataupload',
      system: 'Velero',
      kind: 'DataUpload',
      namespace: 'velero',
      name: 'nightly-20261122-x7k2p',
      since: '2026-11-22T02:00:20Z',
      why: 'status.phase=InProgress',
    },
  ], 'lives in the velero namespace, points at media/data')
  t.match(find({ 'velero-dataupload': [dataUpload('Accepted')] }), [{ since: '2026-11-22T02:00:05Z' }])
  for (const phase of ['New', 'Prepared', 'Canceling']) t.equal(find({ 'velero-dataupload': [dataUpload(phase)] }).length, 1, phase)
  for (const phase of ['Completed', 'Canceled', 'Failed']) t.same(find({ 'velero-dataupload': [dataUpload(phase)] }), [], phase)
  const fresh = dataUpload('New')
  fresh.status = {}
  t.match(find({ 'velero-dataupload': [fresh] }), [{ why: 'status.phase is not set' }], 'just created, no phase yet: Velero treats it as New')

  t.same(found({ 'velero-dataupload': [dataUpload('InProgress', { sourceNamespace: 'other-ns', pvcUid: 'someone-else' })] }), [], 'same PVC name in another namespace')
  t.equal(find({ 'velero-dataupload': [dataUpload('InProgress', { sourcePVC: 'renamed' })] }).length, 1, 'the pvc-uid label alone links it')

  const dd = (phase: string, namespace = NS): KubeObject => ({
    apiVersion: 'velero.io/v2alpha1',
    kind: 'DataDownload',
    metadata: meta('restore-20261122-abcde', 'velero', { labels: { 'velero.io/restore-name': 'restore-20261122', 'velero.io/async-operation-id': 'dd-r1.data' } }),
    spec: { targetVolume: { pvc: 'data', pv: '', namespace }, backupStorageLocation: 'default', datamover: 'velero', snapshotID: 'f0e1d2', sourceNamespace: NS, operationTimeout: '10m0s' },
    status: { phase, ...(phase === 'InProgress' ? { startTimestamp: '2026-11-22T06:00:00Z', node: 'node-2' } : {}) },
  })
  t.match(find({ 'velero-datadownload': [dd('InProgress')] }), [{ name: 'restore-20261122-abcde', since: '2026-11-22T06:00:00Z' }])
  t.same(found({ 'velero-datadownload': [dd('Completed')] }), [])
  t.same(found({ 'velero-datadownload': [dd('InProgress', 'other-ns')] }), [], 'restoring into another namespace')
})

t.test('Velero PodVolumeBackup / PodVolumeRestore', async (t) => {
  const pvb = (phase: string, uid = PVC_UID): KubeObject => ({
    apiVersion: 'velero.io/v1',
    kind: 'PodVolumeBackup',
    metadata: meta('nightly-20261122-q8x9z', 'velero', {
      labels: { 'velero.io/backup-name': 'nightly-20261122', 'velero.io/backup-uid': 'b1b2', 'velero.io/pvc-uid': uid },
    }),
    spec: {
      node: 'node-1',
      pod: { kind: 'Pod', namespace: NS, name: 'jellyfin-0', uid: 'pod-uid' },
      volume: 'config',
      backupStorageLocation: 'default',
      repoIdentifier: '',
      uploaderType: 'kopia',
      tags: { backup: 'nightly-20261122', ns: NS, pod: 'jellyfin-0', volume: 'config' },
    },
    status: { phase, ...(phase === 'InProgress' ? { startTimestamp: '2026-11-22T02:00:00Z', progress: { totalBytes: 100, bytesDone: 10 } } : {}) },
  })
  t.match(find({ 'velero-podvolumebackup': [pvb('InProgress')] }), [{ kind: 'PodVolumeBackup', namespace: 'velero', since: '2026-11-22T02:00:00Z' }])
  t.equal(find({ 'velero-podvolumebackup': [pvb('New')] }).length, 1, 'pre-1.16 New')
  t.same(found({ 'velero-podvolumebackup': [pvb('Completed')] }), [])
  t.same(found({ 'velero-podvolumebackup': [pvb('InProgress', 'another-pvc-uid')] }), [], 'another PVC')
  t.same(found({ 'velero-podvolumebackup': [pvb('InProgress')] }, pvc({ uid: undefined })), [], 'no uid on the PVC, nothing to match by')

  const pvr = (phase: string): KubeObject => ({
    apiVersion: 'velero.io/v1',
    kind: 'PodVolumeRestore',
    metadata: meta('restore-20261122-m2n3b', 'velero', { labels: { 'velero.io/restore-name': 'restore-20261122', 'velero.io/pod-uid': 'pod-uid', 'velero.io/pvc-uid': PVC_UID } }),
    spec: { pod: { kind: 'Pod', namespace: NS, name: 'jellyfin-0' }, volume: 'config', backupStorageLocation: 'default', snapshotID: 'abc', uploaderType: 'kopia', sourceNamespace: NS },
    status: { phase },
  })
  t.same(found({ 'velero-podvolumerestore': [pvr('Prepared')] }), ['velero-podvolumerestore:restore-20261122-m2n3b'])
  t.same(found({ 'velero-podvolumerestore': [pvr('Failed')] }), [])
})

// --- K8up -------------------------------------------------------------------------------------------

t.test('K8up Backup / Restore', async (t) => {
  const backup = (status: Record<string, unknown>, namespace = NS): KubeObject => ({
    apiVersion: 'k8up.io/v1',
    kind: 'Backup',
    metadata: meta('schedule-backup-x8k2z', namespace, { ownerReferences: [{ apiVersion: 'k8up.io/v1', kind: 'Schedule', name: 'schedule', uid: 's' }] }),
    spec: { backend: { repoPasswordSecretRef: { name: 'backup-repo', key: 'password' }, s3: { endpoint: 'http://minio:9000', bucket: 'k8up' } } },
    status,
  })
  const progressing = {
    started: true,
    exclusive: false,
    conditions: [
      { type: 'Ready', status: 'True', reason: 'Ready', message: 'resources are ready', lastTransitionTime: '2026-11-22T04:00:01Z' },
      { type: 'Progressing', status: 'True', reason: 'Started', message: 'The job is progressing', lastTransitionTime: '2026-11-22T04:00:02Z' },
    ],
  }
  const finished = {
    started: true,
    finished: true,
    conditions: [
      { type: 'Progressing', status: 'False', reason: 'Finished', message: 'the job finished', lastTransitionTime: '2026-11-22T04:03:00Z' },
      { type: 'Completed', status: 'True', reason: 'Succeeded', message: 'the job completed successfully', lastTransitionTime: '2026-11-22T04:03:00Z' },
    ],
  }
  t.same(find({ 'k8up-backup': [backup(progressing)] }), [
    { ruleId: 'k8up-backup', system: 'K8up', kind: 'Backup', namespace: NS, name: 'schedule-backup-x8k2z', since: '2026-11-22T04:00:02Z', why: 'condition Progressing=True (Started)' },
  ], 'a Backup concerns every PVC of its namespace')
  t.same(found({ 'k8up-backup': [backup(finished)] }), [])
  t.match(find({ 'k8up-backup': [backup({ started: true })] }), [{ why: 'status.started is true and status.finished is not true' }], 'older K8up: flags only')
  t.same(found({ 'k8up-backup': [backup({})] }), [], 'not started yet (no pods run yet)')
  t.same(found({ 'k8up-backup': [backup(progressing, 'other-ns')] }), [], 'another namespace')

  const restore = (status: Record<string, unknown>, claimName = 'data'): KubeObject => ({
    apiVersion: 'k8up.io/v1',
    kind: 'Restore',
    metadata: meta('restore-data'),
    spec: { restoreMethod: { folder: { claimName } }, snapshot: '1a2b3c4d', backend: { s3: { bucket: 'k8up' } } },
    status,
  })
  t.same(found({ 'k8up-restore': [restore(progressing)] }), ['k8up-restore:restore-data'])
  t.same(found({ 'k8up-restore': [restore(finished)] }), [])
  t.same(found({ 'k8up-restore': [restore(progressing, 'other')] }), [], 'restoring into another PVC')
})

// --- KubeStash / Stash ------------------------------------------------------------------------------

t.test('KubeStash BackupSession / RestoreSession', async (t) => {
  const restore = (phase: string, target: Record<string, unknown>): KubeObject => ({
    apiVersion: 'core.kubestash.com/v1alpha1',
    kind: 'RestoreSession',
    metadata: meta('data-restore'),
    spec: { target, dataSource: { repository: 'gcs-repo', snapshot: 'latest', encryptionSecret: { name: 'encrypt-secret', namespace: 'stash' } }, addon: { name: 'pvc-addon', tasks: [{ name: 'logical-backup-restore' }] } },
    status: { phase, totalComponents: 1 },
  })
  const pvcTarget = { apiGroup: '', kind: 'PersistentVolumeClaim', name: 'data', namespace: NS }
  t.same(found({ 'kubestash-restoresession': [restore('Running', pvcTarget)] }), ['kubestash-restoresession:data-restore'], 'target is the PVC itself')
  t.same(found({ 'kubestash-restoresession': [restore('Succeeded', pvcTarget)] }), [])
  const db = { apiGroup: 'kubedb.com', kind: 'Postgres', name: 'pg', namespace: NS }
  const dbPvc = pvc({ name: 'data-pg-0', labels: { 'app.kubernetes.io/instance': 'pg', 'app.kubernetes.io/managed-by': 'kubedb.com' } })
  t.same(found({ 'kubestash-restoresession': [restore('Pending', db)] }, dbPvc), ['kubestash-restoresession:data-restore'], 'a KubeDB database by its instance label')
  t.same(found({ 'kubestash-restoresession': [restore('Running', db)] }), [], 'an unrelated PVC')

  const backupSession = (phase: string, appRef: Record<string, unknown>): KubeObject => ({
    apiVersion: 'core.kubestash.com/v1alpha1',
    kind: 'BackupSession',
    metadata: meta('data-backup-frequent-backup-1732251600'),
    spec: { invoker: { apiGroup: 'core.kubestash.com', kind: 'BackupConfiguration', name: 'data-backup' }, session: 'frequent-backup' },
    status: { phase, snapshots: [{ name: 'gcs-repo-data-backup-frequent-backup-1732251600', phase: 'Running', appRef, repository: 'gcs-repo' }] },
  })
  t.same(found({ 'kubestash-backupsession': [backupSession('Running', pvcTarget)] }), ['kubestash-backupsession:data-backup-frequent-backup-1732251600'])
  t.same(found({ 'kubestash-backupsession': [backupSession('Succeeded', pvcTarget)] }), [])
  t.same(found({ 'kubestash-backupsession': [backupSession('Running', { ...pvcTarget, name: 'other' })] }), [])
})

t.test('Stash BackupSession / RestoreSession', async (t) => {
  const backupSession = (phase: string): KubeObject => ({
    apiVersion: 'stash.appscode.com/v1beta1',
    kind: 'BackupSession',
    metadata: meta('data-backup-1732251600'),
    spec: { invoker: { apiGroup: 'stash.appscode.com', kind: 'BackupConfiguration', name: 'data-backup' } },
    status: { phase, targets: [{ ref: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'data' }, totalHosts: 1, phase: 'Running' }] },
  })
  t.same(found({ 'stash-backupsession': [backupSession('Running')] }), ['stash-backupsession:data-backup-1732251600'])
  t.same(found({ 'stash-backupsession': [backupSession('Succeeded')] }), [])

  const restoreSession = (phase: string): KubeObject => ({
    apiVersion: 'stash.appscode.com/v1beta1',
    kind: 'RestoreSession',
    metadata: meta('pg-restore'),
    spec: { repository: { name: 'gcs-repo' }, target: { ref: { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'pg' }, volumeMounts: [{ name: 'data', mountPath: '/var/lib/pg' }] } },
    status: { phase, totalHosts: 1 },
  })
  const stsPvc = pvc({ name: 'data-pg-0', ownerReferences: [{ apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'pg', uid: 'sts-uid' }] })
  t.same(found({ 'stash-restoresession': [restoreSession('Running')] }, stsPvc), ['stash-restoresession:pg-restore'], 'PVC owned by the target StatefulSet')
  t.same(found({ 'stash-restoresession': [restoreSession('Succeeded')] }, stsPvc), [])
  t.same(found({ 'stash-restoresession': [restoreSession('Running')] }), [], 'not owned, not labelled: not linked')
})

// --- CSI snapshots ----------------------------------------------------------------------------------

t.test('CSI VolumeSnapshot', async (t) => {
  const snap = (status: Record<string, unknown> | undefined, claim = 'data'): KubeObject => ({
    apiVersion: 'snapshot.storage.k8s.io/v1',
    kind: 'VolumeSnapshot',
    metadata: meta('data-snap-1', NS, { finalizers: ['snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection'] }),
    spec: { volumeSnapshotClassName: 'longhorn-snap', source: { persistentVolumeClaimName: claim } },
    ...(status ? { status } : {}),
  })
  t.same(find({ 'csi-volumesnapshot': [snap({ boundVolumeSnapshotContentName: 'snapcontent-1', readyToUse: false })] }), [
    { ruleId: 'csi-volumesnapshot', system: 'CSI snapshot', kind: 'VolumeSnapshot', namespace: NS, name: 'data-snap-1', since: '2026-11-22T04:00:00Z', why: 'status.readyToUse is not true and status.error is not set' },
  ])
  t.equal(find({ 'csi-volumesnapshot': [snap(undefined)] }).length, 1, 'no status yet: being cut')
  t.same(found({ 'csi-volumesnapshot': [snap({ boundVolumeSnapshotContentName: 'snapcontent-1', readyToUse: true, restoreSize: '10Gi', creationTime: '2026-11-22T04:00:03Z' })] }), [])
  const failed = snap({ readyToUse: false, error: { message: 'Failed to check and update snapshot content: rpc error: code = Internal', time: '2026-11-22T04:00:09Z' } })
  t.same(found({ 'csi-volumesnapshot': [failed] }), [], 'a failed snapshot must not block deletion forever')
  t.same(found({ 'csi-volumesnapshot': [snap({ readyToUse: false }, 'other')] }), [], 'a snapshot of another PVC')
})

t.test('every built-in rule has a test above', async (t) => {
  const src = (await import('node:fs')).readFileSync(new URL(import.meta.url), 'utf8')
  for (const rule of BUILTIN_RULES) t.ok(src.includes(`'${rule.id}'`), rule.id)
})
