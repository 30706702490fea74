/**
 * In-flight rules: which objects of which backup systems mean "a backup or restore of this PVC is
 * running", as data. A rule names a resource, how an object of it points at a PVC, and when such an
 * object is in flight. Built-in rules cover VolSync, the restic operator, Cozystack, Velero, K8up,
 * KubeStash and CSI snapshots; users add their own in the configuration with the same shape.
 */

/** A watched resource. Namespaced resources only. */
export interface ResourceRef {
  group: string // '' for the core group
  version: string
  kind: string
  plural: string
}

/**
 * Dotted path into an object, e.g. `spec.sourcePVC`, `status.phase`. A segment may select from a
 * list: `status.snapshots[*].appRef` (every element) or `status.conditions[type=Ready].lastTransitionTime`
 * (the elements whose `type` is `Ready`), because several systems keep the interesting part in lists.
 */
export type FieldPath = string

/** How an object of the rule points at a PVC. */
export type PvcLink =
  /** A field holds the PVC's name; the PVC lives in the object's namespace, or in `namespacePath`'s. */
  | { by: 'field'; path: FieldPath; namespacePath?: FieldPath }
  /** A label holds the PVC's name or uid (e.g. Velero's `velero.io/pvc-uid`). */
  | { by: 'label'; key: string; value: 'name' | 'uid' }
  /** The PVC's own spec.dataSourceRef names this object (VolSync's volume populator). */
  | { by: 'dataSourceRef' }
  /**
   * The object concerns every PVC of its namespace (K8up's Backup). With `unlessSet`, only while that
   * field is unset: a Cozystack RestoreJob without a target restores into an application we cannot
   * resolve, so it counts for the whole namespace.
   */
  | { by: 'namespace'; unlessSet?: FieldPath }
  /** Owned (ownerReferences) by an object of rule `ruleId` that itself links to the PVC (mover Jobs). */
  | { by: 'owner'; ruleId: string }
  /**
   * An application reference (`{apiGroup | apiVersion, kind, name, namespace?}` at `path`) that owns
   * the PVC: the PVC has an ownerReference to it, or carries one of `pvcLabels` with the
   * application's name (and, when `pvcKindLabel` is given and present on the PVC, that label holds
   * the application's kind). A reference to a PersistentVolumeClaim is a reference to the PVC itself.
   */
  | { by: 'application'; path: FieldPath; pvcLabels: string[]; pvcKindLabel?: string }
  /** Any of these links (a ReplicationDestination is named by the PVC's dataSourceRef or names the PVC). */
  | { by: 'anyOf'; of: PvcLink[] }

/** When an object is in flight. */
export type InFlightWhen =
  | { when: 'fieldIn'; path: FieldPath; values: string[] }
  /** Set means present with a non-zero value, as Go's omitempty sees it: '', 0, false, [] and {} are unset. */
  | { when: 'fieldSet'; path: FieldPath }
  /** The field is not `true` (e.g. VolumeSnapshot status.readyToUse). */
  | { when: 'fieldNotTrue'; path: FieldPath }
  /** A status condition of this type with this status (and reason, when given). */
  | { when: 'condition'; type: string; status: 'True' | 'False' | 'Unknown'; reason?: string }
  | { when: 'anyOf'; of: InFlightWhen[] }
  | { when: 'allOf'; of: InFlightWhen[] }
  | { when: 'not'; of: InFlightWhen }

export interface InFlightRule {
  /** Stable id, e.g. `volsync-replicationsource`. */
  id: string
  /** The backup system, for messages: `VolSync`, `Velero`, ... */
  system: string
  resource: ResourceRef
  /** Narrows the watch, e.g. `app.kubernetes.io/created-by=volsync` for Jobs. */
  labelSelector?: string
  link: PvcLink
  inFlight: InFlightWhen
  /** Where "since when" is read from; the first path that is set wins. */
  since?: FieldPath[]
}

/** The PVC being deleted, as the guard sees it (from the DELETE's oldObject). */
export interface PvcIdentity {
  namespace: string
  name: string
  uid?: string
  labels: Record<string, string>
  ownerReferences: Array<{ apiVersion: string; kind: string; name: string; uid?: string }>
  dataSourceRef?: { apiGroup?: string; kind: string; name: string }
  phase?: string
}

/** One thing in flight, as the denial names it. */
export interface InFlightFinding {
  ruleId: string
  system: string
  kind: string
  namespace: string
  name: string
  /** RFC 3339, when known. */
  since?: string
  /** Why it counts as in flight, e.g. `condition Synchronizing=True (SyncInProgress)`. */
  why: string
}

/** A Kubernetes object as the caches hold it (plain JSON). */
export interface KubeObject {
  apiVersion?: string
  kind?: string
  metadata: {
    name: string
    namespace?: string
    uid?: string
    labels?: Record<string, string>
    ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid?: string; controller?: boolean }>
    creationTimestamp?: string
    deletionTimestamp?: string
    [key: string]: unknown
  }
  [key: string]: unknown
}

/**
 * What the guard reads from the watched caches. Implemented over informers (src/kube), and by
 * plain in-memory maps in tests of the pure matching.
 */
export interface ObjectIndex {
  /** Objects of `ruleId` whose index keys include `key` (see linkKeys / pvcKeys). */
  byKey(ruleId: string, key: string): KubeObject[]
  /** One object of `ruleId` by namespace and name. */
  get(ruleId: string, namespace: string, name: string): KubeObject | undefined
  /** Whether the rule's resource is installed and its cache is watching. */
  isActive(ruleId: string): boolean
}
