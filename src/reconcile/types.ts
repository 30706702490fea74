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
  /** When the PVC was created: how long a restore into it has been pending. */
  creationTimestamp?: string
  storageClassName?: string
  accessModes?: string[]
  capacity?: string
}

export interface ReconcileInput {
  pvc: PvcState
  /** The tier from the namespace's default-tier label, when the PVC carries none. */
  namespaceDefaultTier?: string
  /**
   * Objects of the PVC's names (`<pvc>-backup`, the RD from its dataSourceRef), as cached; absent
   * when none. Secrets are the exception: smart-restore does not read Secrets cluster-wide (least
   * privilege), so `secret`/`restoreSecret` are given only when known, and their absence means
   * "not known", not "missing". The repository Secret is written with server-side apply whenever the
   * source is, and a foreign one shows up as an apply conflict.
   */
  existing: {
    source?: KubeObject
    secret?: KubeObject
    destination?: KubeObject
    /**
     * The restore Secret named by the RD's spec.restic.repository when that is not `<pvc>-restic`
     * (a `restore-from` restore uses `<pvc>-restic-from-<hash>`), so it can be owned by the PVC too;
     * absent when none or not looked up.
     */
    restoreSecret?: KubeObject
  }
  /**
   * The store's answer for the PVC's repository, when the controller was asked to probe
   * (`needsProbe`) and did; undefined otherwise.
   */
  probe?: ProbeResult
  /** The controller's clock (ms since the epoch), for how long a restore has been pending. */
  nowMs?: number
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
  | {
      kind: 'apply-source'
      /** `<pvc>-restic`: the PVC's OWN repository Secret (never a restore-from one). */
      secretName: string
      /**
       * Always '' from reconcilePvc: the pure plan cannot know the store's endpoint. The controller
       * writes `store.resticRepository(repositoryKey)` into the Secret's RESTIC_REPOSITORY.
       */
      resticRepository: string
      /** The PVC's own repository key (`store.keyTemplate`), e.g. `media/data-claim`. */
      repositoryKey: string
      source: KubeObject
    }
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
