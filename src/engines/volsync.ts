/**
 * VolSync manifests (volsync.backube/v1alpha1), built as plain data from the PVC and the config.
 * Field names follow the CRDs in ../shared/fixtures/volsync/crds/.
 */
import type { Config } from '../config/schema.js'
import type { PersistentVolumeClaim } from './pvc.js'

export const VOLSYNC_GROUP = 'volsync.backube'
export const VOLSYNC_VERSION = 'v1alpha1'
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
  if (pvcName.length <= 63) labels[`${config.annotationPrefix}pvc`] = pvcName
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
  return {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationDestination',
    metadata: {
      name: args.name,
      namespace: args.namespace,
      labels: managedLabels(config, args.pvcName),
      annotations: {
        [`${config.annotationPrefix}pvc`]: args.pvcName,
        [`${config.annotationPrefix}restore-source`]: args.location,
      },
    },
    spec: { trigger: { manual: RESTORE_TRIGGER }, restic },
  }
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
}): RepositorySecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: args.name,
      namespace: args.namespace,
      labels: managedLabels(args.config, args.pvcName),
      annotations: { [`${args.config.annotationPrefix}pvc`]: args.pvcName },
    },
    type: 'Opaque',
    stringData: { ...args.sourceData, RESTIC_REPOSITORY: args.resticRepository },
  }
}
