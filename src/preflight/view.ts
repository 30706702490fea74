/**
 * The restore preflight's view of the cluster: StorageClasses, VolumeSnapshotClasses and
 * VolumePopulators, watched (never fetched per admission), kept small, and turned into the facts
 * the pure `preflightRestore` (decide/preflight.ts) reads.
 *
 * Whether an API is installed comes from the watched cache's discovery: a watch of a resource the
 * cluster does not serve is inactive, and becomes active by itself when its CRD appears.
 */
import type { KubeObject } from '../inflight/types.js'
import type { SpecSyncState, WatchedCache, WatchSpec } from '../kube/watch-cache.js'
import type { PreflightFacts, SnapshotClassFact, StorageClassFact } from '../decide/preflight.js'

export const STORAGE_CLASSES_SPEC_ID = 'preflight-storageclasses'
export const SNAPSHOT_CLASSES_SPEC_ID = 'preflight-volumesnapshotclasses'
export const VOLUME_POPULATORS_SPEC_ID = 'preflight-volumepopulators'

const STORAGE_CLASS_DEFAULT = ['storageclass.kubernetes.io/is-default-class', 'storageclass.beta.kubernetes.io/is-default-class']
const SNAPSHOT_CLASS_DEFAULT = 'snapshot.storage.kubernetes.io/is-default-class'
/** As the watched cache names RDs in its sync state. */
const RD_RESOURCE_NAME = 'replicationdestinations.volsync.backube/v1alpha1'

/** Keep the name, one field and whether it is the default: nothing else is read. */
function keep(field: 'provisioner' | 'driver', defaultKeys: readonly string[]) {
  return (obj: KubeObject): KubeObject => {
    const annotations = (obj.metadata.annotations ?? {}) as Record<string, string>
    const isDefault = defaultKeys.some((k) => annotations[k] === 'true')
    return {
      apiVersion: obj.apiVersion,
      kind: obj.kind,
      metadata: { name: obj.metadata.name, ...(isDefault ? { annotations: { [defaultKeys[0]!]: 'true' } } : {}) },
      [field]: (obj as Record<string, unknown>)[field],
    } as KubeObject
  }
}

const all = () => ['all']
const keepStorageClass = keep('provisioner', STORAGE_CLASS_DEFAULT)
const keepSnapshotClass = keep('driver', [SNAPSHOT_CLASS_DEFAULT])

/** A StorageClass (whole, or as the cache keeps it) as the preflight reads it. */
export function storageClassFact(obj: KubeObject): StorageClassFact {
  const o = keepStorageClass(obj)
  return { name: o.metadata.name, provisioner: String((o as Record<string, unknown>).provisioner ?? ''), isDefault: Boolean(o.metadata.annotations) }
}

/** A VolumeSnapshotClass (whole, or as the cache keeps it) as the preflight reads it. */
export function snapshotClassFact(obj: KubeObject): SnapshotClassFact {
  const o = keepSnapshotClass(obj)
  return { name: o.metadata.name, driver: String((o as Record<string, unknown>).driver ?? ''), isDefault: Boolean(o.metadata.annotations) }
}

export function preflightWatchSpecs(): WatchSpec[] {
  return [
    {
      id: STORAGE_CLASSES_SPEC_ID,
      resource: { group: 'storage.k8s.io', version: 'v1', kind: 'StorageClass', plural: 'storageclasses' },
      namespaced: false,
      indexKeys: all,
      transform: keepStorageClass,
    },
    {
      id: SNAPSHOT_CLASSES_SPEC_ID,
      resource: { group: 'snapshot.storage.k8s.io', version: 'v1', kind: 'VolumeSnapshotClass', plural: 'volumesnapshotclasses' },
      namespaced: false,
      indexKeys: all,
      transform: keepSnapshotClass,
    },
    {
      // Only whether the API is served matters (VolSync's populator needs the CRD); the objects are few.
      id: VOLUME_POPULATORS_SPEC_ID,
      resource: { group: 'populator.storage.k8s.io', version: 'v1beta1', kind: 'VolumePopulator', plural: 'volumepopulators' },
      namespaced: false,
      transform: (obj) => ({ apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata.name } }) as KubeObject,
    },
  ]
}

/**
 * The preflight facts from a cache holding preflightWatchSpecs, and the sync states of another
 * cache that may watch ReplicationDestinations (the deletion guard's and reconciler's).
 */
export function preflightFacts(cache: WatchedCache, otherStates: readonly SpecSyncState[] = []): PreflightFacts {
  const ids = new Set([STORAGE_CLASSES_SPEC_ID, SNAPSHOT_CLASSES_SPEC_ID, VOLUME_POPULATORS_SPEC_ID])
  const mine = cache.syncState().filter((s) => ids.has(s.id))
  const rd = otherStates.filter((s) => s.resource === RD_RESOURCE_NAME)
  const pending = [...mine, ...rd].filter((s) => !s.synced)
  const stateOf = (id: string): SpecSyncState | undefined => mine.find((s) => s.id === id)
  const storageClasses = cache.byKey(STORAGE_CLASSES_SPEC_ID, 'all').map(storageClassFact)
  const snapshotClasses = cache.byKey(SNAPSHOT_CLASSES_SPEC_ID, 'all').map(snapshotClassFact)
  return {
    synced: pending.length === 0,
    ...(pending.length ? { unsyncedReason: `waiting for the watches of ${pending.map((s) => s.resource).join(', ')}` } : {}),
    volumePopulatorApi: stateOf(VOLUME_POPULATORS_SPEC_ID)?.active ?? false,
    replicationDestinationApi: rd.length ? rd.some((s) => s.active) : undefined,
    volumeSnapshotApi: stateOf(SNAPSHOT_CLASSES_SPEC_ID)?.active ?? false,
    storageClasses,
    snapshotClasses,
  }
}

/**
 * The preflight's own watched cache: separate from the deletion guard's, so a watch that cannot
 * list (RBAC not updated, an API in trouble) never holds up /readyz or the deletion guard — it only
 * makes restores wait (503) until it lists.
 */
export class RestorePreflightView {
  constructor(
    private readonly cache: WatchedCache,
    private readonly otherStates: () => readonly SpecSyncState[] = () => [],
  ) {}

  start(): Promise<void> {
    return this.cache.start()
  }

  stop(): Promise<void> {
    return this.cache.stop()
  }

  facts(): PreflightFacts {
    return preflightFacts(this.cache, this.otherStates())
  }

  syncState(): SpecSyncState[] {
    return this.cache.syncState()
  }
}
