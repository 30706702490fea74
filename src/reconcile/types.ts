/**
 * The backup-source reconciler's vocabulary. The decision (`reconcilePvc`, pure) reads a PVC as the
 * watched cache holds it, the objects smart-restore may already have made for it, the namespace's
 * default tier, and (only when it asks for one) the backup store's answer; it returns a plan the
 * controller carries out with server-side apply, deletes and Events.
 */
import type { KubeObject } from '../inflight/types.js'
import type { ProbeResult } from '../storage/types.js'

/** A PVC as the reconciler sees it (from the watched cache). */
export interface PvcState {
  namespace: string
  name: string
  uid: string
  labels: Record<string, string>
  annotations: Record<string, string>
  /** status.phase: Pending, Bound, Lost. */
  phase?: string
  dataSourceRef?: { apiGroup?: string; kind: string; name: string }
  /** Set while the PVC is being deleted: nothing new is attached then. */
  deletionTimestamp?: string
  storageClassName?: string
  accessModes?: string[]
  capacity?: string
}

export interface ReconcileInput {
  pvc: PvcState
  /** The tier from the namespace's default-tier label, when the PVC carries none. */
  namespaceDefaultTier?: string
  /** Objects of the PVC's names (`<pvc>-backup`, `<pvc>-restic`, the RD from its dataSourceRef), as cached; absent when none. */
  existing: {
    source?: KubeObject
    secret?: KubeObject
    destination?: KubeObject
  }
  /**
   * The store's answer for the PVC's repository, when the controller was asked to probe
   * (`needsProbe`) and did; undefined otherwise.
   */
  probe?: ProbeResult
}

/** A Kubernetes Event to put on the PVC. */
export interface EventSpec {
  type: 'Normal' | 'Warning'
  /** UpperCamelCase, e.g. BackupAttached, TierChanged, RefusedToAttach, ForeignObject, RestoreStarted. */
  reason: string
  message: string
}

export type ReconcileStep =
  /** Apply (server-side, field manager smart-restore) the repository Secret and the ReplicationSource. */
  | { kind: 'apply-source'; secretName: string; resticRepository: string; source: KubeObject }
  /** Delete smart-restore's ReplicationSource (label removed); the data in S3 is never touched. */
  | { kind: 'delete-source'; name: string; uid?: string }
  /** Add an ownerReference to the PVC on an object smart-restore made before the PVC had a uid (RD, Secret). */
  | { kind: 'own'; apiVersion: string; objectKind: string; name: string }
  /** Merge-patch the PVC's annotations (null removes a key). */
  | { kind: 'annotate-pvc'; annotations: Record<string, string | null> }
  /** Add the tier label to the PVC (namespace default). */
  | { kind: 'label-pvc'; labels: Record<string, string> }

export interface ReconcilePlan {
  /** Why, in one line, for the log. */
  summary: string
  /** The controller must probe the store for `repositoryKey` and call again with `probe` set. */
  needsProbe?: { repositoryKey: string }
  steps: ReconcileStep[]
  events: EventSpec[]
  /** Metric labels to count, e.g. `refused_existing_backup`, `foreign_object`. */
  counters: string[]
  /** Retry later even without a change (e.g. the store was unknown). */
  requeueAfterMs?: number
}
