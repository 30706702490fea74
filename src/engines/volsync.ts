/**
 * VolSync manifests (volsync.backube/v1alpha1), built as plain data from the PVC and the config.
 * Field names follow the CRDs in ../shared/fixtures/volsync/crds/.
 */
import type { BackupSourceConfig, Config } from '../config/schema.js'
import { ANNOTATION, annotationKey } from '../decide/annotations.js'
import type { ResourceRef } from '../inflight/types.js'
import type { PvcState } from '../reconcile/types.js'
import { spreadSchedule } from '../reconcile/schedule.js'
import type { PersistentVolumeClaim } from './pvc.js'

export const VOLSYNC_GROUP = 'volsync.backube'
export const VOLSYNC_VERSION = 'v1alpha1'
/**
 * VolSync's two resources, as the deletion guard's rules, the reconciler and the CLI watch them.
 * One definition: the watched cache shares one informer per resource, so they must not drift.
 */
export const RS_RESOURCE: ResourceRef = { group: VOLSYNC_GROUP, version: VOLSYNC_VERSION, kind: 'ReplicationSource', plural: 'replicationsources' }
export const RD_RESOURCE: ResourceRef = { group: VOLSYNC_GROUP, version: VOLSYNC_VERSION, kind: 'ReplicationDestination', plural: 'replicationdestinations' }
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY_VALUE = 'smart-restore'
/**
 * The manual trigger of a restore. VolSync sets status.lastManualSync to this value once the
 * restore ran; an RD whose lastManualSync equals it has been used and holds an old image.
 */
export const RESTORE_TRIGGER = 'smart-restore'

export interface KubeObjectMeta {
  name: string
  namespace: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }>
}

export interface ReplicationDestination {
  apiVersion: 'volsync.backube/v1alpha1'
  kind: 'ReplicationDestination'
  metadata: KubeObjectMeta
  spec: {
    trigger: { manual: string }
    restic: Record<string, unknown>
  }
}

export interface RepositorySecret {
  apiVersion: 'v1'
  kind: 'Secret'
  metadata: KubeObjectMeta
  type: 'Opaque'
  stringData: Record<string, string>
}

/** Labels on every object smart-restore creates, so it can tell its own objects from others'. */
export function managedLabels(config: Config, pvcName: string): Record<string, string> {
  const labels: Record<string, string> = { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }
  // Label values stop at 63 characters; PVC names may be longer, and then the annotation says it.
  if (pvcName.length <= 63) labels[annotationKey(config, ANNOTATION.pvc)] = pvcName
  return labels
}

export interface RestoreOptions {
  restoreAsOf?: string
  previous?: number
}

export function buildReplicationDestination(args: {
  config: Config
  pvc: PersistentVolumeClaim
  namespace: string
  pvcName: string
  name: string
  repositorySecret: string
  location: string
  options: RestoreOptions
}): ReplicationDestination {
  const { config, pvc, options } = args
  const r = config.restore
  const restic: Record<string, unknown> = {
    repository: args.repositorySecret,
    // The volume populator needs a snapshot to clone the PVC from (design.md §2).
    copyMethod: 'Snapshot',
    capacity: pvc.spec.resources?.requests?.storage,
    accessModes: pvc.spec.accessModes,
  }
  const storageClassName = pvc.spec.storageClassName ?? r.storageClassName
  if (storageClassName) restic.storageClassName = storageClassName
  if (r.volumeSnapshotClassName) restic.volumeSnapshotClassName = r.volumeSnapshotClassName
  if (r.cacheCapacity) restic.cacheCapacity = r.cacheCapacity
  if (r.cacheStorageClassName) restic.cacheStorageClassName = r.cacheStorageClassName
  if (r.moverServiceAccount) restic.moverServiceAccount = r.moverServiceAccount
  if (r.moverSecurityContext) restic.moverSecurityContext = r.moverSecurityContext
  if (options.restoreAsOf !== undefined) restic.restoreAsOf = options.restoreAsOf
  if (options.previous !== undefined) restic.previous = options.previous
  if (usesCustomCa(config)) restic.customCA = customCaRef(args.repositorySecret)
  return {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationDestination',
    metadata: {
      name: args.name,
      namespace: args.namespace,
      labels: managedLabels(config, args.pvcName),
      annotations: {
        [annotationKey(config, ANNOTATION.pvc)]: args.pvcName,
        [annotationKey(config, ANNOTATION.restoreSource)]: args.location,
      },
    },
    spec: { trigger: { manual: RESTORE_TRIGGER }, restic },
  }
}

/**
 * The restore's ReplicationDestination as owner of its repository Secret: the garbage collector
 * removes the Secret with the RD (an orphan swept, a stale RD replaced). Not a controller reference
 * and not blocking, like the PVC's references (see ClusterClient.addOwnerReference).
 */
export function restoreOwnerReference(rdName: string, uid: string) {
  return { apiVersion: `${VOLSYNC_GROUP}/${VOLSYNC_VERSION}`, kind: 'ReplicationDestination', name: rdName, uid, controller: false, blockOwnerDeletion: false }
}

/** Key of the per-PVC repository Secret that carries store.s3.caBundle for the movers. */
export const CUSTOM_CA_KEY = 'smart-restore-ca.crt'

/**
 * VolSync's `restic.customCA`: the movers trust the CA the service trusts. VolSync reads it in the
 * PVC's namespace, so it lives in the per-PVC repository Secret, under a key of its own.
 */
export function customCaRef(repositorySecret: string): { secretName: string; key: string } {
  return { secretName: repositorySecret, key: CUSTOM_CA_KEY }
}

/** Does the store's endpoint need a private CA (store.s3.caBundle) that the movers must be told about? */
export function usesCustomCa(config: Config): boolean {
  return config.store.type === 's3' && Boolean(config.store.s3.caBundle)
}

/** Keys of the source Secret that the movers need; the rest of the source Secret is copied too. */
export const REQUIRED_SOURCE_KEYS = ['RESTIC_PASSWORD'] as const

/**
 * The per-PVC repository Secret: everything of the configured source Secret (password, AWS
 * credentials, CA, region) plus the PVC's own RESTIC_REPOSITORY.
 */
export function buildRepositorySecret(args: {
  config: Config
  namespace: string
  pvcName: string
  name: string
  resticRepository: string
  sourceData: Record<string, string>
  /** PEM of store.s3.caBundle, for the movers' customCA. */
  caBundle?: string
}): RepositorySecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: args.name,
      namespace: args.namespace,
      labels: managedLabels(args.config, args.pvcName),
      annotations: { [annotationKey(args.config, ANNOTATION.pvc)]: args.pvcName },
    },
    type: 'Opaque',
    stringData: { ...args.sourceData, RESTIC_REPOSITORY: args.resticRepository, ...(args.caBundle ? { [CUSTOM_CA_KEY]: args.caBundle } : {}) },
  }
}

/** An ownerReference to a PVC, as smart-restore puts it on the objects that exist for that PVC. */
export interface PvcOwnerReference {
  apiVersion: 'v1'
  kind: 'PersistentVolumeClaim'
  name: string
  uid: string
}

/**
 * The reference that makes Kubernetes' garbage collector delete an object with its PVC. Not a
 * `controller` reference and no `blockOwnerDeletion`: the PVC does not control the object, and
 * blockOwnerDeletion would need update rights on persistentvolumeclaims/finalizers for nothing (the
 * deletion guard already holds a PVC back while a backup of it runs).
 */
export function pvcOwnerReference(pvc: Pick<PvcState, 'name' | 'uid'>): PvcOwnerReference {
  return { apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: pvc.name, uid: pvc.uid }
}

/** Label on smart-restore's ReplicationSources naming the tier they were written for. */
export function sourceTierLabel(config: Config): string {
  return `${config.annotationPrefix}tier`
}

// A type alias (not an interface) so it is assignable to the reconciler's generic KubeObject.
export type ReplicationSource = {
  apiVersion: 'volsync.backube/v1alpha1'
  kind: 'ReplicationSource'
  metadata: {
    name: string
    namespace: string
    labels: Record<string, string>
    annotations: Record<string, string>
    ownerReferences?: PvcOwnerReference[]
  }
  spec: {
    sourcePVC: string
    trigger: { schedule: string }
    restic: Record<string, unknown>
  }
}

/**
 * The `spec.restic` fields a ReplicationSource of smart-restore may carry. The reconciler compares
 * exactly these between the desired and the existing source, so a field dropped from the
 * configuration is noticed too, while fields others set (VolSync, a user's `unlock`) are left alone
 * just as server-side apply leaves them alone.
 */
export const SOURCE_RESTIC_FIELDS = [
  'repository',
  'copyMethod',
  'retain',
  'pruneIntervalDays',
  'volumeSnapshotClassName',
  'storageClassName',
  'cacheCapacity',
  'cacheStorageClassName',
  'moverServiceAccount',
  'moverSecurityContext',
  'customCA',
] as const

/**
 * The ReplicationSource that backs `pvc` up on `tier`: the `backup` settings with the tier's
 * `overrides` on top (field by field; an overriding moverSecurityContext replaces the whole object),
 * the tier's retention, and the tier's schedule spread for this PVC.
 *
 * ownerReferences to the PVC are part of it (when the PVC has a uid, as every cached PVC does): the
 * source is applied in one server-side apply with its owner, so there is no moment in which it
 * exists unowned and would outlive a PVC deleted in between, and the reconciler's comparison of
 * desired and existing covers the owner too.
 *
 * Throws when `tier` is not configured: callers check the tier first (the reconciler reports an
 * unknown tier as an Event and builds nothing).
 */
export function buildReplicationSource(args: {
  config: Config
  pvc: PvcState
  tier: string
  name: string
  repositorySecret: string
}): ReplicationSource {
  const { config, pvc, tier } = args
  // hasOwn: a label value such as `constructor` must not find Object.prototype's.
  const tierConfig = Object.hasOwn(config.tiers, tier) ? config.tiers[tier] : undefined
  if (!tierConfig) throw new Error(`tier ${JSON.stringify(tier)} is not configured (tiers: ${Object.keys(config.tiers).join(', ')})`)
  const settings: BackupSourceConfig = { ...config.backup, ...definedOnly(tierConfig.overrides ?? {}) }
  const restic: Record<string, unknown> = {
    repository: args.repositorySecret,
    copyMethod: settings.copyMethod,
    // Always: without retain, restic (VolSync's forget) keeps only the last snapshot, and one bad
    // backup (an emptied volume) would then be the only one left.
    retain: { ...tierConfig.retain },
  }
  if (settings.pruneIntervalDays !== undefined) restic.pruneIntervalDays = settings.pruneIntervalDays
  if (settings.volumeSnapshotClassName) restic.volumeSnapshotClassName = settings.volumeSnapshotClassName
  // "Default: the PVC's" (schema.ts): the temporary snapshot/clone volume lives where the PVC lives.
  const storageClassName = settings.storageClassName ?? pvc.storageClassName
  if (storageClassName) restic.storageClassName = storageClassName
  if (settings.cacheCapacity) restic.cacheCapacity = settings.cacheCapacity
  if (settings.cacheStorageClassName) restic.cacheStorageClassName = settings.cacheStorageClassName
  if (settings.moverServiceAccount) restic.moverServiceAccount = settings.moverServiceAccount
  if (settings.moverSecurityContext) restic.moverSecurityContext = structuredClone(settings.moverSecurityContext)
  if (usesCustomCa(config)) restic.customCA = customCaRef(args.repositorySecret)

  const source: ReplicationSource = {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationSource',
    metadata: {
      name: args.name,
      namespace: pvc.namespace,
      labels: { ...managedLabels(config, pvc.name), [sourceTierLabel(config)]: tier },
      annotations: { [annotationKey(config, ANNOTATION.pvc)]: pvc.name },
    },
    spec: {
      sourcePVC: pvc.name,
      trigger: { schedule: spreadSchedule(tierConfig.schedule, pvc.namespace, pvc.name) },
      restic,
    },
  }
  if (pvc.uid) source.metadata.ownerReferences = [pvcOwnerReference(pvc)]
  return source
}

/** An override given as `undefined` must not erase the base setting. */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}
