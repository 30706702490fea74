/**
 * The built-in in-flight rules, one per resource, as data. Each entry says where its facts come from;
 * "seen in" means read in the upstream source or CRD, "assumed" means not checked against the source.
 * A rule whose resource is not installed costs nothing: the cache marks it inactive and it is skipped.
 */
import { RD_RESOURCE, RS_RESOURCE } from '../engines/volsync.js'
import type { InFlightRule, InFlightWhen } from './types.js'

// VolSync sets Synchronizing=True/SyncInProgress while a mover runs and lastSyncStartTime for the whole
// run; updateLastSync{Source,Destination} clears lastSyncStartTime when the sync completes, and the
// following CleaningUp / WaitingForSchedule / WaitingForManual / Error states are False.
// Seen in: backube/volsync api/v1alpha1 (ConditionSynchronizing, SynchronizingReason*),
// controllers/replication{source,destination}_controller.go, fixtures/volsync/crds (status schema).
const volsyncSyncing: InFlightWhen = {
  when: 'anyOf',
  of: [
    { when: 'condition', type: 'Synchronizing', status: 'True', reason: 'SyncInProgress' },
    { when: 'fieldSet', path: 'status.lastSyncStartTime' },
  ],
}
const volsyncSince = ['status.lastSyncStartTime', 'status.conditions[type=Synchronizing].lastTransitionTime']

// Pending and Running are the active phases everywhere below that uses them (datarestor's
// constants.ActivePhases, Cozystack's draft contract, KubeStash/Stash RestorePhase and
// BackupSessionPhase enums); the other phases are terminal or "skipped".
const pendingOrRunning: InFlightWhen = { when: 'fieldIn', path: 'status.phase', values: ['Pending', 'Running'] }

// Velero's data-mover and pod-volume CRs share the phase machine; Canceling still has a mover pod
// attached. PVB/PVR before Velero 1.16 only know New/InProgress, which the list covers. Velero creates
// them without a phase and its controllers treat "" as New, so an unset phase counts too.
// Seen in: vmware-tanzu/velero pkg/apis/velero/v2alpha1/data_{upload,download}_types.go,
// pkg/apis/velero/v1/pod_volume_backup_types.go (enum New;Accepted;Prepared;InProgress;Canceling;…),
// pkg/controller/data_upload_controller.go (`Phase == "" || Phase == New`).
const veleroActive: InFlightWhen = {
  when: 'anyOf',
  of: [
    { when: 'fieldIn', path: 'status.phase', values: ['New', 'Accepted', 'Prepared', 'InProgress', 'Canceling'] },
    { when: 'not', of: { when: 'fieldSet', path: 'status.phase' } },
  ],
}
const veleroSince = ['status.startTimestamp', 'status.acceptedTimestamp', 'metadata.creationTimestamp']

// K8up's Status.SetStarted sets Progressing=True/Started and the deprecated `started` flag;
// SetFinished sets Progressing=False/Finished and `finished`. Either form means "running".
// Seen in: k8up-io/k8up api/v1/status.go.
const k8upRunning: InFlightWhen = {
  when: 'anyOf',
  of: [
    { when: 'condition', type: 'Progressing', status: 'True' },
    {
      when: 'allOf',
      of: [
        { when: 'not', of: { when: 'fieldNotTrue', path: 'status.started' } },
        { when: 'fieldNotTrue', path: 'status.finished' },
      ],
    },
  ],
}
const k8upSince = ['status.conditions[type=Progressing].lastTransitionTime', 'metadata.creationTimestamp']

// KubeDB (KubeStash's main user) labels a database's PVCs app.kubernetes.io/instance=<db name>; for
// workload targets (Deployment, StatefulSet) there is no generic PVC link. Assumed, not checked.
const appscodePvcLabels = ['app.kubernetes.io/instance']

export const BUILTIN_RULES: InFlightRule[] = [
  // --- VolSync (volsync.backube/v1alpha1) ---------------------------------------------------------
  {
    // spec.sourcePVC: fixtures/volsync/crds/volsync.backube_replicationsources.yaml.
    id: 'volsync-replicationsource',
    system: 'VolSync',
    resource: RS_RESOURCE,
    link: { by: 'field', path: 'spec.sourcePVC' },
    inFlight: volsyncSyncing,
    since: volsyncSince,
  },
  {
    // The populator flow names the RD in the PVC's dataSourceRef (design §2); the direct flow names
    // the PVC in spec.<mover>.destinationPVC (rclone, restic, rsync, rsyncTLS in the upstream CRD;
    // kopia only in the perfectra1n fork, fixtures/volsync/crds/pr-1723-kopia).
    id: 'volsync-replicationdestination',
    system: 'VolSync',
    resource: RD_RESOURCE,
    link: {
      by: 'anyOf',
      of: [
        { by: 'dataSourceRef' },
        { by: 'field', path: 'spec.restic.destinationPVC' },
        { by: 'field', path: 'spec.rclone.destinationPVC' },
        { by: 'field', path: 'spec.rsync.destinationPVC' },
        { by: 'field', path: 'spec.rsyncTLS.destinationPVC' },
        { by: 'field', path: 'spec.kopia.destinationPVC' },
      ],
    },
    inFlight: volsyncSyncing,
    since: volsyncSince,
  },
  {
    // Mover Jobs volsync-src-<rs> / volsync-dst-<rd>, labelled app.kubernetes.io/created-by=volsync and
    // owned by their RS/RD (design §2). A running Job counts even when its owner looks idle (a retry
    // after an Error, a Job left over from a run VolSync lost track of). Suspended Jobs (spec.paused on
    // the RS/RD) do not count: nothing runs until someone unpauses, which may be never.
    // Job status fields and condition types: Kubernetes batch/v1 API.
    id: 'volsync-mover-job',
    system: 'VolSync',
    resource: { group: 'batch', version: 'v1', kind: 'Job', plural: 'jobs' },
    labelSelector: 'app.kubernetes.io/created-by=volsync',
    link: {
      by: 'anyOf',
      of: [
        { by: 'owner', ruleId: 'volsync-replicationsource' },
        { by: 'owner', ruleId: 'volsync-replicationdestination' },
      ],
    },
    inFlight: {
      when: 'anyOf',
      of: [
        { when: 'fieldSet', path: 'status.active' },
        {
          when: 'allOf',
          of: [
            { when: 'not', of: { when: 'fieldSet', path: 'status.completionTime' } },
            { when: 'not', of: { when: 'condition', type: 'Complete', status: 'True' } },
            { when: 'not', of: { when: 'condition', type: 'Failed', status: 'True' } },
            { when: 'fieldNotTrue', path: 'spec.suspend' },
          ],
        },
      ],
    },
    since: ['status.startTime', 'metadata.creationTimestamp'],
  },

  // --- restic operator (seed 000 = sladg/datarestor-operator, backup.datarestor-operator.com/v1alpha1)
  {
    // The PVC reference moved from spec.pvcRef{name,namespace} (api/v1alpha1/resticbackup_types.go at
    // the seed's time) to spec.sourcePVC{name,namespace} (config/crd/bases/…_resticbackups.yaml); both
    // may be cross-namespace. Phases: Pending, Running, Completed, Failed (generic_types.go).
    id: 'restic-operator-resticbackup',
    system: 'restic operator',
    resource: { group: 'backup.datarestor-operator.com', version: 'v1alpha1', kind: 'ResticBackup', plural: 'resticbackups' },
    link: {
      by: 'anyOf',
      of: [
        { by: 'field', path: 'spec.sourcePVC.name', namespacePath: 'spec.sourcePVC.namespace' },
        { by: 'field', path: 'spec.pvcRef.name', namespacePath: 'spec.pvcRef.namespace' },
      ],
    },
    inFlight: pendingOrRunning,
    since: ['status.startTime', 'metadata.creationTimestamp'],
  },
  {
    // spec.targetPVC was a plain name (resticrestore_types.go at the seed's time) and became an object
    // reference {name, namespace} (config/crd/bases/…_resticrestores.yaml): accept both shapes.
    id: 'restic-operator-resticrestore',
    system: 'restic operator',
    resource: { group: 'backup.datarestor-operator.com', version: 'v1alpha1', kind: 'ResticRestore', plural: 'resticrestores' },
    link: {
      by: 'anyOf',
      of: [
        { by: 'field', path: 'spec.targetPVC.name', namespacePath: 'spec.targetPVC.namespace' },
        { by: 'field', path: 'spec.targetPVC' },
      ],
    },
    inFlight: pendingOrRunning,
    since: ['status.startTime', 'metadata.creationTimestamp'],
  },
  {
    // The other "Restic Backup Operator" (seed 001, backup.resticbackup.io): only its ResticRestore is a
    // one-shot run (target.pvc.claimName, phases Pending → InProgress → Completed/Failed, from its
    // docs/CRD reference). Its ResticBackup is a schedule whose Jobs belong to a CronJob, not linkable.
    id: 'resticbackup-io-resticrestore',
    system: 'restic operator',
    resource: { group: 'backup.resticbackup.io', version: 'v1alpha1', kind: 'ResticRestore', plural: 'resticrestores' },
    link: { by: 'field', path: 'spec.target.pvc.claimName' },
    inFlight: { when: 'fieldIn', path: 'status.phase', values: ['Pending', 'InProgress'] },
    since: ['status.startTime', 'metadata.creationTimestamp'],
  },

  // --- Cozystack (backups.cozystack.io/v1alpha1, seed 002) ----------------------------------------
  {
    // spec.applicationRef is a TypedLocalObjectReference to the app (e.g. apps.cozystack.io Postgres);
    // Cozystack's lineage webhook labels the app's resources, PVCs included,
    // apps.cozystack.io/application.{group,kind,name} (seen in cozystack/cozystack).
    id: 'cozystack-backupjob',
    system: 'Cozystack',
    resource: { group: 'backups.cozystack.io', version: 'v1alpha1', kind: 'BackupJob', plural: 'backupjobs' },
    link: {
      by: 'application',
      path: 'spec.applicationRef',
      pvcLabels: ['apps.cozystack.io/application.name'],
      pvcKindLabel: 'apps.cozystack.io/application.kind',
    },
    inFlight: pendingOrRunning,
    since: ['status.startedAt', 'metadata.creationTimestamp'],
  },
  {
    // Without spec.targetApplicationRef the restore goes to the Backup's applicationRef, which would
    // need the Backup object: count it for the whole namespace instead, only while it runs.
    id: 'cozystack-restorejob',
    system: 'Cozystack',
    resource: { group: 'backups.cozystack.io', version: 'v1alpha1', kind: 'RestoreJob', plural: 'restorejobs' },
    link: {
      by: 'anyOf',
      of: [
        {
          by: 'application',
          path: 'spec.targetApplicationRef',
          pvcLabels: ['apps.cozystack.io/application.name'],
          pvcKindLabel: 'apps.cozystack.io/application.kind',
        },
        { by: 'namespace', unlessSet: 'spec.targetApplicationRef' },
      ],
    },
    inFlight: pendingOrRunning,
    since: ['status.startedAt', 'metadata.creationTimestamp'],
  },

  // --- Velero (velero.io) ---------------------------------------------------------------------------
  {
    // DataUploads live in Velero's namespace: the PVC is spec.sourcePVC in spec.sourceNamespace; the
    // CSI plugin also labels them velero.io/pvc-uid (pkg/apis/velero/v1/labels_annotations.go).
    id: 'velero-dataupload',
    system: 'Velero',
    resource: { group: 'velero.io', version: 'v2alpha1', kind: 'DataUpload', plural: 'datauploads' },
    link: {
      by: 'anyOf',
      of: [
        { by: 'field', path: 'spec.sourcePVC', namespacePath: 'spec.sourceNamespace' },
        { by: 'label', key: 'velero.io/pvc-uid', value: 'uid' },
      ],
    },
    inFlight: veleroActive,
    since: veleroSince,
  },
  {
    // spec.targetVolume.{pvc, namespace}: the PVC the restore is writing into.
    id: 'velero-datadownload',
    system: 'Velero',
    resource: { group: 'velero.io', version: 'v2alpha1', kind: 'DataDownload', plural: 'datadownloads' },
    link: { by: 'field', path: 'spec.targetVolume.pvc', namespacePath: 'spec.targetVolume.namespace' },
    inFlight: veleroActive,
    since: veleroSince,
  },
  {
    // PVBs name a pod and a volume, not the PVC; the backupper labels them velero.io/pvc-uid (it is
    // how Velero finds a PVC's parent snapshot).
    id: 'velero-podvolumebackup',
    system: 'Velero',
    resource: { group: 'velero.io', version: 'v1', kind: 'PodVolumeBackup', plural: 'podvolumebackups' },
    link: { by: 'label', key: 'velero.io/pvc-uid', value: 'uid' },
    inFlight: veleroActive,
    since: veleroSince,
  },
  {
    // The restorer sets velero.io/pvc-uid to the restored PVC's uid when the volume is a PVC.
    id: 'velero-podvolumerestore',
    system: 'Velero',
    resource: { group: 'velero.io', version: 'v1', kind: 'PodVolumeRestore', plural: 'podvolumerestores' },
    link: { by: 'label', key: 'velero.io/pvc-uid', value: 'uid' },
    inFlight: veleroActive,
    since: veleroSince,
  },

  // --- K8up (k8up.io/v1) ----------------------------------------------------------------------------
  {
    // A Backup backs up the PVCs of its whole namespace.
    id: 'k8up-backup',
    system: 'K8up',
    resource: { group: 'k8up.io', version: 'v1', kind: 'Backup', plural: 'backups' },
    link: { by: 'namespace' },
    inFlight: k8upRunning,
    since: k8upSince,
  },
  {
    // RestoreMethod.Folder inlines a PersistentVolumeClaimVolumeSource (api/v1/restore_types.go);
    // S3 restores write to a bucket and touch no PVC.
    id: 'k8up-restore',
    system: 'K8up',
    resource: { group: 'k8up.io', version: 'v1', kind: 'Restore', plural: 'restores' },
    link: { by: 'field', path: 'spec.restoreMethod.folder.claimName' },
    inFlight: k8upRunning,
    since: k8upSince,
  },

  // --- KubeStash (core.kubestash.com/v1alpha1) ------------------------------------------------------
  {
    // A BackupSession only names its invoker; the targets appear as status.snapshots[].appRef
    // (TypedObjectReference) once the session has created its Snapshots.
    // Seen in: kubestash/apimachinery apis/core/v1alpha1/backupsession_types.go.
    id: 'kubestash-backupsession',
    system: 'KubeStash',
    resource: { group: 'core.kubestash.com', version: 'v1alpha1', kind: 'BackupSession', plural: 'backupsessions' },
    link: { by: 'application', path: 'status.snapshots[*].appRef', pvcLabels: appscodePvcLabels },
    inFlight: pendingOrRunning,
    since: ['metadata.creationTimestamp'],
  },
  {
    // spec.target is a TypedObjectReference in the RestoreSession's namespace (restoresession_types.go).
    id: 'kubestash-restoresession',
    system: 'KubeStash',
    resource: { group: 'core.kubestash.com', version: 'v1alpha1', kind: 'RestoreSession', plural: 'restoresessions' },
    link: { by: 'application', path: 'spec.target', pvcLabels: appscodePvcLabels },
    inFlight: pendingOrRunning,
    since: ['metadata.creationTimestamp'],
  },

  // --- Stash (stash.appscode.com/v1beta1) -----------------------------------------------------------
  {
    // status.targets[].ref is a TargetRef {apiVersion, kind, name} (stash apimachinery v1beta1).
    id: 'stash-backupsession',
    system: 'Stash',
    resource: { group: 'stash.appscode.com', version: 'v1beta1', kind: 'BackupSession', plural: 'backupsessions' },
    link: { by: 'application', path: 'status.targets[*].ref', pvcLabels: appscodePvcLabels },
    inFlight: pendingOrRunning,
    since: ['metadata.creationTimestamp'],
  },
  {
    id: 'stash-restoresession',
    system: 'Stash',
    resource: { group: 'stash.appscode.com', version: 'v1beta1', kind: 'RestoreSession', plural: 'restoresessions' },
    link: { by: 'application', path: 'spec.target.ref', pvcLabels: appscodePvcLabels },
    inFlight: pendingOrRunning,
    since: ['metadata.creationTimestamp'],
  },

  // --- CSI snapshots (snapshot.storage.k8s.io/v1) ---------------------------------------------------
  {
    // A snapshot being cut from the PVC: readyToUse not yet true. A snapshot with status.error is not
    // waited for, or a failed snapshot would block the PVC's deletion forever. (The snapshot
    // controller also holds the PVC with a finalizer meanwhile; denying says why.)
    id: 'csi-volumesnapshot',
    system: 'CSI snapshot',
    resource: { group: 'snapshot.storage.k8s.io', version: 'v1', kind: 'VolumeSnapshot', plural: 'volumesnapshots' },
    link: { by: 'field', path: 'spec.source.persistentVolumeClaimName' },
    inFlight: {
      when: 'allOf',
      of: [
        { when: 'fieldNotTrue', path: 'status.readyToUse' },
        { when: 'not', of: { when: 'fieldSet', path: 'status.error' } },
      ],
    },
    since: ['metadata.creationTimestamp'],
  },
]
