/**
 * Can a restore be populated at all? Pure: facts about the cluster in, a verdict out.
 *
 * A PVC whose dataSourceRef names a ReplicationDestination is filled by VolSync's volume populator,
 * and stays Pending — silently, forever — when anything the populator needs is missing:
 *   - VolSync starts its populator only when the CRD volumepopulators.populator.storage.k8s.io
 *     exists (VolSync cmd/main.go); without it nobody ever fills the PVC;
 *   - the ReplicationDestination API itself (VolSync's CRDs);
 *   - the StorageClass the restore provisions in (the PVC's, else restore.storageClassName, else the
 *     cluster's default): the populator creates its intermediate PVC in the target's class;
 *   - a VolumeSnapshotClass (copyMethod Snapshot): restore.volumeSnapshotClassName when set, else
 *     the default class of the StorageClass's CSI driver, and the snapshot API that serves them.
 * A restore that cannot be populated is refused at admission, with what is missing, instead.
 */

export interface StorageClassFact {
  name: string
  provisioner: string
  isDefault: boolean
}

export interface SnapshotClassFact {
  name: string
  driver: string
  isDefault: boolean
}

/** What the watched caches know. An API that is not watched at all is `undefined` (not checked). */
export interface PreflightFacts {
  /** False until every preflight watch has its first list: the answer would be a guess. */
  synced: boolean
  /** Why not synced, for the retryable denial. */
  unsyncedReason?: string
  volumePopulatorApi: boolean
  replicationDestinationApi: boolean | undefined
  volumeSnapshotApi: boolean
  storageClasses: readonly StorageClassFact[]
  snapshotClasses: readonly SnapshotClassFact[]
}

export interface PreflightTarget {
  /** spec.storageClassName of the PVC as admitted: undefined when unset, '' when explicitly none. */
  storageClassName: string | undefined
  /** restore.storageClassName (used when the PVC names none). */
  configuredStorageClass?: string
  /** restore.volumeSnapshotClassName. */
  volumeSnapshotClassName?: string
}

export type PreflightVerdict =
  | { ok: true; storageClass?: string; snapshotClass?: string }
  | { ok: false; retryable: true; reason: string }
  | { ok: false; retryable: false; missing: string[] }

export const POPULATOR_CRD = 'volumepopulators.populator.storage.k8s.io'

/** The cluster-wide prerequisites, by id (a metric label). */
export const PREREQUISITES = ['volume_populator_crd', 'replicationdestination_api', 'volumesnapshot_api', 'volumesnapshotclass', 'storageclass'] as const
export type PrerequisiteId = (typeof PREREQUISITES)[number]

/** Cluster-wide gaps (no PVC in view): for startup logs, /readyz details, metrics and `check`. */
export function clusterGaps(facts: PreflightFacts, target: Omit<PreflightTarget, 'storageClassName'>): Array<{ id: PrerequisiteId; text: string }> {
  const gaps: Array<{ id: PrerequisiteId; text: string }> = []
  if (!facts.volumePopulatorApi) {
    gaps.push({
      id: 'volume_populator_crd',
      text: `the CRD ${POPULATOR_CRD} (without it VolSync does not start its volume populator, and a PVC restoring from a ReplicationDestination stays Pending forever; install it and restart VolSync)`,
    })
  }
  if (facts.replicationDestinationApi === false) gaps.push({ id: 'replicationdestination_api', text: 'the ReplicationDestination API (VolSync and its CRDs are not installed)' })
  if (!facts.volumeSnapshotApi) {
    gaps.push({ id: 'volumesnapshot_api', text: 'the VolumeSnapshot API (snapshot.storage.k8s.io: the external-snapshotter CRDs and controller), which copyMethod Snapshot needs' })
  } else if (target.volumeSnapshotClassName && !facts.snapshotClasses.some((c) => c.name === target.volumeSnapshotClassName)) {
    gaps.push({ id: 'volumesnapshotclass', text: `VolumeSnapshotClass ${target.volumeSnapshotClassName} (restore.volumeSnapshotClassName)` })
  }
  if (target.configuredStorageClass && !facts.storageClasses.some((c) => c.name === target.configuredStorageClass)) {
    gaps.push({ id: 'storageclass', text: `StorageClass ${target.configuredStorageClass} (restore.storageClassName)` })
  }
  return gaps
}

export function preflightRestore(facts: PreflightFacts, target: PreflightTarget): PreflightVerdict {
  if (!facts.synced) return { ok: false, retryable: true, reason: facts.unsyncedReason ?? 'the watches of StorageClasses, VolumeSnapshotClasses and VolumePopulators are still syncing' }
  // restore.storageClassName matters only for a PVC that names no class: checked below.
  const missing = clusterGaps(facts, target)
    .filter((g) => g.id !== 'storageclass')
    .map((g) => g.text)

  // The class the restore provisions in, as buildReplicationDestination picks it.
  let storageClass: StorageClassFact | undefined
  const named = target.storageClassName ?? target.configuredStorageClass
  if (named === '') {
    missing.push('a StorageClass: the PVC sets storageClassName: "" (static binding only), and the volume populator must provision one')
  } else if (named !== undefined) {
    storageClass = facts.storageClasses.find((c) => c.name === named)
    if (!storageClass) missing.push(`StorageClass ${named}${target.storageClassName === undefined ? ' (restore.storageClassName)' : ''} (the PVC's class: the volume populator provisions in it)`)
  } else {
    const defaults = facts.storageClasses.filter((c) => c.isDefault)
    if (defaults.length === 0) missing.push('a StorageClass: the PVC names none and no StorageClass is marked default (storageclass.kubernetes.io/is-default-class)')
    storageClass = defaults[0]
  }

  let snapshotClass: string | undefined
  if (facts.volumeSnapshotApi) {
    if (target.volumeSnapshotClassName) snapshotClass = target.volumeSnapshotClassName
    else if (storageClass) {
      const driver = storageClass.provisioner
      const candidates = facts.snapshotClasses.filter((c) => c.driver === driver)
      // The snapshot controller takes the driver's DEFAULT class when none is named; a lone
      // non-default class is not used.
      const chosen = candidates.find((c) => c.isDefault)
      if (!chosen) {
        missing.push(
          candidates.length === 0
            ? `a VolumeSnapshotClass for driver ${driver} (StorageClass ${storageClass.name}); or set restore.volumeSnapshotClassName`
            : `a default VolumeSnapshotClass for driver ${driver} (${candidates.length} exist, none marked snapshot.storage.kubernetes.io/is-default-class); or set restore.volumeSnapshotClassName`,
        )
      } else snapshotClass = chosen.name
    }
  }

  if (missing.length) return { ok: false, retryable: false, missing }
  return { ok: true, ...(storageClass ? { storageClass: storageClass.name } : {}), ...(snapshotClass ? { snapshotClass } : {}) }
}

/** The admission's answer when the preflight refuses; undefined when the restore can go ahead. */
export function preflightDenial(
  verdict: PreflightVerdict,
  ctx: { namespace: string; pvcName: string; skipRestoreKey: string },
): { action: 'deny'; code: number; reason: 'ServiceUnavailable' | 'Invalid'; cause: string; message: string } | undefined {
  if (verdict.ok) return undefined
  const id = `${ctx.namespace}/${ctx.pvcName}`
  if (verdict.retryable) {
    return {
      action: 'deny',
      code: 503,
      reason: 'ServiceUnavailable',
      cause: 'restore-preflight-syncing',
      message: `a backup of ${id} exists, but smart-restore cannot tell yet whether its restore can be populated (${verdict.reason}). The PVC was not created; retrying is safe.`,
    }
  }
  return {
    action: 'deny',
    code: 422,
    reason: 'Invalid',
    cause: 'restore-preflight-missing',
    message:
      `a backup of ${id} exists, but its restore cannot be populated: missing ${verdict.missing.join('; ')}. ` +
      `A PVC restoring from a ReplicationDestination would stay Pending forever, so it was not created. Install what is missing and retry; ` +
      `to create it empty on purpose, annotate it ${ctx.skipRestoreKey}: "<reason>".`,
  }
}
