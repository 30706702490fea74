/**
 * What a cluster needs for a restore to be populated (decide/preflight.ts), installed into the
 * loopback API server: the VolumePopulator and VolumeSnapshotClass APIs, VolSync's VolumePopulator,
 * StorageClasses of one CSI driver (`standard` the default) and that driver's default
 * VolumeSnapshotClass. Call it before the service starts: the preflight learns of APIs by discovery.
 */
import type { FakeApiServer, InstalledResource } from './fake-apiserver.js'

export const POPULATOR_RESOURCE: InstalledResource = { group: 'populator.storage.k8s.io', version: 'v1beta1', kind: 'VolumePopulator', plural: 'volumepopulators', namespaced: false }
export const SNAPSHOT_CLASS_RESOURCE: InstalledResource = { group: 'snapshot.storage.k8s.io', version: 'v1', kind: 'VolumeSnapshotClass', plural: 'volumesnapshotclasses', namespaced: false }
export const CSI_DRIVER = 'csi.example.com'
/** Every StorageClass the suites' PVCs name. */
export const TEST_STORAGE_CLASSES = ['standard', 'longhorn', 'fast', 'cheap', 'fallback', 'ceph-block']

export function installRestorePrerequisites(api: FakeApiServer, opts: { storageClasses?: readonly string[]; snapshotClasses?: readonly string[] } = {}): void {
  const storageClasses = opts.storageClasses ?? TEST_STORAGE_CLASSES
  api.installResource(POPULATOR_RESOURCE)
  api.installResource(SNAPSHOT_CLASS_RESOURCE)
  api.objects.put('/apis/populator.storage.k8s.io/v1beta1/volumepopulators', {
    apiVersion: 'populator.storage.k8s.io/v1beta1',
    kind: 'VolumePopulator',
    metadata: { name: 'volsync-replicationdestination' },
    sourceKind: { group: 'volsync.backube', kind: 'ReplicationDestination' },
  } as never)
  for (const name of storageClasses) {
    api.objects.put('/apis/storage.k8s.io/v1/storageclasses', {
      apiVersion: 'storage.k8s.io/v1',
      kind: 'StorageClass',
      metadata: { name, ...(name === 'standard' ? { annotations: { 'storageclass.kubernetes.io/is-default-class': 'true' } } : {}) },
      provisioner: CSI_DRIVER,
    } as never)
  }
  for (const name of ['csi-snapclass', ...(opts.snapshotClasses ?? [])]) {
    api.objects.put('/apis/snapshot.storage.k8s.io/v1/volumesnapshotclasses', {
      apiVersion: 'snapshot.storage.k8s.io/v1',
      kind: 'VolumeSnapshotClass',
      metadata: { name, ...(name === 'csi-snapclass' ? { annotations: { 'snapshot.storage.kubernetes.io/is-default-class': 'true' } } : {}) },
      driver: CSI_DRIVER,
      deletionPolicy: 'Delete',
    } as never)
  }
}
