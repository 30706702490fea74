/**
 * The backup-source reconciler: watches PVCs (and the ReplicationSources, ReplicationDestinations
 * and namespaces that bear on them), and for each changed PVC runs the pure `reconcilePvc` and
 * carries out its plan with server-side apply under one field manager, so several replicas converge
 * instead of fighting. Failures retry with per-PVC backoff; Events are deduplicated.
 */
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import { ANNOTATION, annotationKey, annotationsUnder } from '../decide/annotations.js'
import { backupSourceName } from '../engines/names.js'
import { buildRepositorySecret, pvcOwnerReference, RD_RESOURCE, REQUIRED_SOURCE_KEYS, RS_RESOURCE, VOLSYNC_GROUP } from '../engines/volsync.js'
import type { KubeObject } from '../inflight/types.js'
import { ownerReferenceTo, type ClusterClient } from '../kube/cluster-client.js'
import { KubeApiError } from '../kube/errors.js'
import type { EventRecorder } from '../kube/events.js'
import type { WatchedCache, WatchSpec } from '../kube/watch-cache.js'
import type { BackupStore } from '../storage/types.js'
import { COUNTER, reconcilePvc } from './decide.js'
import { findOrphanRestores, isOurRestoreDestination, type OrphanRestore } from './orphans.js'
import { WorkQueue } from './queue.js'
import type { PvcState, ReconcilePlan, ReconcileStep } from './types.js'

export const PVC_SPEC_ID = 'reconciler-pvcs'
export const SOURCES_SPEC_ID = 'reconciler-sources'
export const DESTINATIONS_SPEC_ID = 'reconciler-destinations'

/**
 * What the reconciler watches: PVCs, and ReplicationSources/Destinations (shared with the deletion
 * guard's watches of the same resources, so no second connection). Secrets are never watched.
 */
export function reconcilerWatchSpecs(config: Config): WatchSpec[] {
  // smart-restore's own annotations are kept: the desired objects carry them (a cache without them
  // would make every comparison differ), and `<prefix>pvc` names the PVC even past 63 characters.
  // Kept in the default trimmed copy, not by a transform: that copy is the one the deletion guard's
  // rules for the same resources hold, so each object is held once.
  const keepAnnotationPrefix = config.annotationPrefix
  return [
    pvcWatchSpec(config),
    { id: SOURCES_SPEC_ID, resource: RS_RESOURCE, keepAnnotationPrefix },
    // `restore`: smart-restore's restore RDs, for the orphan sweep.
    { id: DESTINATIONS_SPEC_ID, resource: RD_RESOURCE, keepAnnotationPrefix, indexKeys: (obj) => (isOurRestoreDestination(obj, config) ? ['restore'] : []) },
  ]
}

/**
 * The PVC watch: what the reconciler reads, and nothing else (memory stays small with many PVCs).
 * Annotations are kept only under smart-restore's prefix: those carry the admission's decision.
 */
export function pvcWatchSpec(config: Config): WatchSpec {
  return {
    id: PVC_SPEC_ID,
    resource: { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims' },
    // `all` lists every PVC for the periodic resync; `ns:` finds a namespace's PVCs when its default tier changes.
    indexKeys: (obj) => (obj.metadata.namespace ? ['all', `ns:${obj.metadata.namespace}`] : []),
    transform: (obj) => {
      const md = obj.metadata
      const annotations = annotationsUnder(md.annotations as Record<string, string> | undefined, [config.annotationPrefix])
      const spec = (obj.spec ?? {}) as Record<string, unknown>
      return {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: md.name, namespace: md.namespace, uid: md.uid, labels: md.labels, annotations, creationTimestamp: md.creationTimestamp, deletionTimestamp: md.deletionTimestamp },
        spec: { dataSourceRef: spec.dataSourceRef, storageClassName: spec.storageClassName, accessModes: spec.accessModes, resources: spec.resources },
        status: { phase: (obj.status as { phase?: string } | undefined)?.phase },
      }
    },
  }
}

export function pvcState(obj: KubeObject): PvcState {
  const spec = (obj.spec ?? {}) as { dataSourceRef?: PvcState['dataSourceRef']; storageClassName?: string; accessModes?: string[]; resources?: { requests?: { storage?: string } } }
  return {
    namespace: obj.metadata.namespace ?? '',
    name: obj.metadata.name,
    uid: obj.metadata.uid ?? '',
    labels: obj.metadata.labels ?? {},
    annotations: (obj.metadata.annotations as Record<string, string> | undefined) ?? {},
    phase: (obj.status as { phase?: string } | undefined)?.phase,
    dataSourceRef: spec.dataSourceRef ?? undefined,
    deletionTimestamp: obj.metadata.deletionTimestamp,
    creationTimestamp: obj.metadata.creationTimestamp,
    storageClassName: spec.storageClassName ?? undefined,
    accessModes: spec.accessModes,
    capacity: spec.resources?.requests?.storage,
  }
}

export interface ReconcilerDeps {
  config: Config
  store: BackupStore
  cluster: ClusterClient
  events: EventRecorder
  /** Must hold pvcWatchSpec, the ReplicationSource and ReplicationDestination specs, and namespaces. */
  cache: WatchedCache
  /** Id of the namespaces watch (shared with the deletion guard). */
  namespacesSpecId: string
  logger: Logger
  /** Counts of decisions, for metrics: refused_existing_backup, foreign_object, ... */
  count?: (counter: string) => void
}

/** The orphan sweep runs this often (or every orphanGraceMs, when that is shorter). */
export const ORPHAN_SWEEP_INTERVAL_MS = 60_000

export class BackupReconciler {
  private readonly queue: WorkQueue<string>
  private resyncTimer: NodeJS.Timeout | undefined
  private sweepTimer: NodeJS.Timeout | undefined
  private sweeping: Promise<void> | undefined
  private stopped = false

  constructor(private readonly deps: ReconcilerDeps) {
    this.queue = new WorkQueue<string>({ workers: deps.config.reconciler.workers, handler: (key) => this.reconcileKey(key), logger: deps.logger })
  }

  /** Subscribe to the caches, queue every PVC once they have synced, and resync periodically. */
  start(): void {
    const { cache } = this.deps
    cache.onChange(PVC_SPEC_ID, (_type, obj) => this.enqueue(obj.metadata.namespace, obj.metadata.name))
    // Our source deleted or edited behind our back: look at its PVC again.
    const byPvcAnnotation = (_type: string, obj: KubeObject) => {
      const key = annotationKey(this.deps.config, ANNOTATION.pvc)
      // The annotation holds any PVC name; the label (≤ 63 characters) is there on older objects.
      const pvc = ((obj.metadata.annotations as Record<string, string> | undefined) ?? {})[key] ?? obj.metadata.labels?.[key]
      if (pvc && obj.metadata.namespace) this.enqueue(obj.metadata.namespace, pvc)
    }
    cache.onChange(SOURCES_SPEC_ID, byPvcAnnotation)
    cache.onChange(DESTINATIONS_SPEC_ID, byPvcAnnotation)
    // A namespace gaining or losing its default tier concerns all its PVCs.
    cache.onChange(this.deps.namespacesSpecId, (_type, ns) => {
      for (const pvc of cache.byKey(PVC_SPEC_ID, `ns:${ns.metadata.name}`)) this.enqueue(pvc.metadata.namespace, pvc.metadata.name)
    })
    // The initial `added` callbacks queue every PVC already; this covers a cache that synced before.
    void this.waitForSyncThenResync()
    this.resyncTimer = setInterval(() => this.resync(), this.deps.config.reconciler.resyncMs)
    this.resyncTimer.unref()
    const sweepEvery = Math.min(ORPHAN_SWEEP_INTERVAL_MS, this.deps.config.reconciler.orphanGraceMs)
    this.sweepTimer = setInterval(() => {
      this.sweeping ??= this.sweepOrphans()
        .then(() => undefined)
        .catch((err: unknown) => this.deps.logger.warn({ err: (err as Error).message }, 'orphan sweep failed; trying again later'))
        .finally(() => (this.sweeping = undefined))
    }, sweepEvery)
    this.sweepTimer.unref()
  }

  /**
   * Delete smart-restore's restore RDs whose PVC never came (see orphans.ts). Only from synced
   * caches, and each after a live read of its PVC says it does not exist. Returns what was deleted.
   */
  async sweepOrphans(nowMs: number = Date.now()): Promise<OrphanRestore[]> {
    const { cache, config, cluster, logger } = this.deps
    if (this.stopped || !cache.isSynced(PVC_SPEC_ID) || !cache.isSynced(DESTINATIONS_SPEC_ID)) return []
    const candidates = findOrphanRestores(cache.byKey(DESTINATIONS_SPEC_ID, 'restore'), (ns, name) => cache.get(PVC_SPEC_ID, ns, name) !== undefined, nowMs, config)
    const swept: OrphanRestore[] = []
    for (const o of candidates) {
      if (this.stopped) break
      try {
        await cluster.readObject('v1', 'PersistentVolumeClaim', o.namespace, o.pvc)
        continue // the PVC exists after all (the cache lags): the reconciler will own the RD
      } catch (err) {
        if (!(err instanceof KubeApiError && err.kind === 'not-found')) throw err
      }
      const result = await cluster.delete(`${VOLSYNC_GROUP}/v1alpha1`, 'ReplicationDestination', o.namespace, o.name, { uid: o.uid })
      if (result === 'deleted') {
        logger.info({ object: `ReplicationDestination ${o.namespace}/${o.name}`, pvc: `${o.namespace}/${o.pvc}`, ageS: Math.round(o.ageMs / 1000) }, 'orphaned restore removed: its PVC was never created (its repository Secret goes with it)')
        this.deps.count?.(COUNTER.orphanRestoreRemoved)
        swept.push(o)
      }
    }
    return swept
  }

  private async waitForSyncThenResync(): Promise<void> {
    while (!this.stopped && !(await this.deps.cache.waitForSync(60_000))) {
      this.deps.logger.warn({ state: this.deps.cache.syncState().filter((s) => !s.synced).map((s) => s.resource) }, 'reconciler waiting for watched caches')
    }
    if (!this.stopped) this.resync()
  }

  async stop(): Promise<void> {
    this.stopped = true
    if (this.resyncTimer) clearInterval(this.resyncTimer)
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    await this.sweeping
    await this.queue.stop()
  }

  stats() {
    return this.queue.stats()
  }

  private enqueue(namespace: string | undefined, name: string): void {
    if (namespace && !this.deps.config.excludedNamespaces.includes(namespace)) this.queue.add(`${namespace}/${name}`)
  }

  private resync(): void {
    if (!this.deps.cache.isSynced(PVC_SPEC_ID)) return
    for (const pvc of this.deps.cache.byKey(PVC_SPEC_ID, 'all')) this.enqueue(pvc.metadata.namespace, pvc.metadata.name)
  }

  /** One PVC: decide, probe if asked, act. Throwing makes the queue retry with backoff. */
  async reconcileKey(key: string): Promise<void> {
    const { cache, config, store, logger } = this.deps
    const [namespace, name] = key.split('/') as [string, string]
    const obj = cache.get(PVC_SPEC_ID, namespace, name)
    if (!obj) return // deleted: ownerReferences let the garbage collector remove what was ours
    const pvc = pvcState(obj)
    const ref = pvc.dataSourceRef
    const input = {
      pvc,
      namespaceDefaultTier: cache.get(this.deps.namespacesSpecId, '', namespace)?.metadata.labels?.[config.namespaceDefaultTierLabel],
      existing: {
        source: cache.get(SOURCES_SPEC_ID, namespace, backupSourceName(name)),
        destination: ref?.kind === 'ReplicationDestination' && ref.apiGroup === VOLSYNC_GROUP ? cache.get(DESTINATIONS_SPEC_ID, namespace, ref.name) : undefined,
      },
      nowMs: Date.now(),
    }
    let plan: ReconcilePlan = reconcilePvc(input, config)
    if (plan.needsProbe) plan = reconcilePvc({ ...input, probe: await store.probe(plan.needsProbe.repositoryKey) }, config)
    const log = logger.child({ pvc: key })
    if (plan.steps.length || plan.events.length) log.info({ summary: plan.summary, steps: plan.steps.map((s) => s.kind) }, 'reconcile')
    else log.debug({ summary: plan.summary }, 'reconcile')
    for (const step of plan.steps) {
      try {
        await this.carryOut(step, pvc)
      } catch (err) {
        // Someone else's Secret under our name: report it, do not retry into it every few seconds.
        if (err instanceof KubeApiError && err.kind === 'conflict' && step.kind === 'apply-source' && !err.retryable) {
          void this.deps.events.record(pvc, { type: 'Warning', reason: 'ForeignObject', message: err.message })
          this.deps.count?.(COUNTER.foreignObject)
          this.queue.addAfter(key, config.reconciler.resyncMs)
          return
        }
        // Refused by the API (RBAC, or the ValidatingAdmissionPolicy that fences our Secret writes:
        // a foreign, unlabelled `<pvc>-restic`): say so on the PVC instead of retrying quietly.
        if (err instanceof KubeApiError && err.kind === 'forbidden' && step.kind === 'apply-source') {
          void this.deps.events.record(pvc, { type: 'Warning', reason: 'WriteRefused', message: `the backup source could not be written: ${err.message}` })
          this.deps.count?.(COUNTER.foreignObject)
          this.queue.addAfter(key, config.reconciler.resyncMs)
          return
        }
        throw err
      }
    }
    for (const event of plan.events) void this.deps.events.record(pvc, event)
    for (const c of plan.counters) this.deps.count?.(c)
    if (plan.requeueAfterMs) this.queue.addAfter(key, plan.requeueAfterMs)
  }

  private async carryOut(step: ReconcileStep, pvc: PvcState): Promise<void> {
    const { cluster, config, store } = this.deps
    switch (step.kind) {
      case 'apply-source': {
        const source = config.restore.sourceSecret
        const data = await cluster.readSecretData(source.namespace, source.name)
        const missing = REQUIRED_SOURCE_KEYS.filter((k) => !data[k])
        if (missing.length) throw new Error(`source Secret ${source.namespace}/${source.name} lacks ${missing.join(', ')}`)
        const secret = buildRepositorySecret({ config, namespace: pvc.namespace, pvcName: pvc.name, name: step.secretName, resticRepository: store.resticRepository(step.repositoryKey), sourceData: data, caBundle: store.moverCa })
        // The Secret first (the source reads it); owned by the PVC so it goes with it.
        await cluster.ensureSecret({ ...secret, metadata: { ...secret.metadata, ownerReferences: [ownerReferenceTo(pvcOwnerReference(pvc))] } } as Parameters<ClusterClient['ensureSecret']>[0])
        const cached = this.deps.cache.get(SOURCES_SPEC_ID, pvc.namespace, step.source.metadata.name)
        await cluster.apply(step.source, { knownResourceVersion: (cached?.metadata.resourceVersion as string | undefined) ?? null })
        return
      }
      case 'delete-source':
        await cluster.delete('volsync.backube/v1alpha1', 'ReplicationSource', pvc.namespace, step.name, { uid: step.uid })
        return
      case 'own':
        await cluster.addOwnerReference(step.apiVersion, step.objectKind, pvc.namespace, step.name, pvcOwnerReference(pvc))
        return
      case 'annotate-pvc':
        await cluster.patchPvcMetadata(pvc.namespace, pvc.name, { annotations: step.annotations })
        return
      case 'label-pvc':
        await cluster.patchPvcMetadata(pvc.namespace, pvc.name, { labels: step.labels })
        return
    }
  }
}
