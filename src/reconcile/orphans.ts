/**
 * The orphan sweep: restore objects whose PVC never came.
 *
 * The mutating webhook creates the ReplicationDestination `<pvc>-restore` (and its repository
 * Secret, owned by the RD) BEFORE the PVC exists: the PVC is only stored after the webhook answers.
 * When the CREATE then fails after all (another webhook denied it, a quota refused it, the apiserver
 * timed out), nothing owns the RD: VolSync would restore into a volume nobody claims and the
 * Secret would stay. The sweep deletes such an RD once it is older than reconciler.orphanGraceMs;
 * the garbage collector takes its Secret with it.
 *
 * Never touched: an RD that is not smart-restore's restore, one that a PVC owns (the garbage
 * collector's business), one whose PVC exists (in the cache, and again by a live read just before
 * the delete), one younger than the grace period (another replica or a retried admission may have
 * just made or reused it: the webhook reuses an unowned RD only while it is younger than half the
 * grace period, see ClusterClient.ensureReplicationDestinationObject), and one being deleted.
 * The delete carries the RD's uid as a precondition: a newer RD of the same name is never hit.
 */
import type { Config } from '../config/schema.js'
import { ANNOTATION, annotationKey } from '../decide/annotations.js'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, RESTORE_TRIGGER } from '../engines/volsync.js'
import type { KubeObject } from '../inflight/types.js'

export interface OrphanRestore {
  namespace: string
  /** The ReplicationDestination. */
  name: string
  uid: string
  /** The PVC it was made for. */
  pvc: string
  ageMs: number
}

/** Is this RD one of smart-restore's restores (label, manual trigger of ours, a PVC name)? */
export function isOurRestoreDestination(rd: KubeObject, config: Config): boolean {
  if (rd.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) return false
  const trigger = (rd.spec as { trigger?: { manual?: unknown } } | undefined)?.trigger?.manual
  return trigger === RESTORE_TRIGGER && restorePvcName(rd, config) !== undefined
}

/** The PVC an RD of ours restores into: the annotation (any length), else the label. */
export function restorePvcName(rd: KubeObject, config: Config): string | undefined {
  const key = annotationKey(config, ANNOTATION.pvc)
  return ((rd.metadata.annotations as Record<string, string> | undefined) ?? {})[key] ?? rd.metadata.labels?.[key]
}

/** The RDs among `rds` the sweep may delete now (pure: the caller passes the cache and the clock). */
export function findOrphanRestores(rds: readonly KubeObject[], pvcExists: (namespace: string, name: string) => boolean, nowMs: number, config: Config): OrphanRestore[] {
  const out: OrphanRestore[] = []
  for (const rd of rds) {
    const { namespace, name, uid, creationTimestamp, deletionTimestamp, ownerReferences } = rd.metadata
    if (!namespace || !uid || deletionTimestamp || !isOurRestoreDestination(rd, config)) continue
    if (config.excludedNamespaces.includes(namespace)) continue
    if (ownerReferences?.some((r) => r.kind === 'PersistentVolumeClaim')) continue
    const created = Date.parse(creationTimestamp ?? '')
    if (!Number.isFinite(created)) continue
    const ageMs = nowMs - created
    if (ageMs < config.reconciler.orphanGraceMs) continue
    const pvc = restorePvcName(rd, config)!
    if (pvcExists(namespace, pvc)) continue
    out.push({ namespace, name, uid, pvc, ageMs })
  }
  return out
}
