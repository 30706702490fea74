/**
 * The service's DR-readiness view, kept fresh in the background for the metrics: every labelled
 * PVC of the watched caches is assessed (status/assess.ts) once per metrics.readinessRefreshMs.
 *
 * Spread, not all at once: the period is cut into SLOTS slots and a PVC's slot is a hash of its
 * namespace/name, so a thousand PVCs mean a few probes every few seconds, never a thousand at once
 * (and the store's caches make a warm probe one LIST). A PVC that is gone or unlabelled leaves the
 * view at the next tick.
 */
import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import { backupSourceName } from '../engines/names.js'
import type { WatchedCache } from '../kube/watch-cache.js'
import { pvcState } from '../reconcile/controller.js'
import type { BackupStore } from '../storage/types.js'
import type { PvcReadiness } from './assess.js'
import { assessAll, labelledPvcs } from './collect.js'

export const SLOTS = 60
/** Probes at once within a slot. */
const CONCURRENCY = 4

export function slotOf(namespace: string, name: string): number {
  return createHash('sha256').update(`${namespace}/${name}`).digest().readUInt32BE(0) % SLOTS
}

export interface ReadinessView {
  rows: PvcReadiness[]
  /** When the last full period ended (every slot visited once), ms since the epoch. */
  lastRefreshMs?: number
  /** How long that period's probes took, summed. */
  lastRefreshProbeMs?: number
}

export interface ReadinessRefresherDeps {
  config: Config
  store: BackupStore
  cache: WatchedCache
  pvcSpecId: string
  sourcesSpecId: string
  namespacesSpecId: string
  logger: Logger
  now?: () => number
}

export class ReadinessRefresher {
  private readonly rows = new Map<string, PvcReadiness>()
  private timer: NodeJS.Timeout | undefined
  private slot = 0
  private running: Promise<void> | undefined
  private probeMsThisPeriod = 0
  private lastRefreshMs: number | undefined
  private lastRefreshProbeMs: number | undefined

  constructor(private readonly deps: ReadinessRefresherDeps) {}

  start(): void {
    const slotMs = Math.max(100, Math.floor(this.deps.config.metrics.readinessRefreshMs / SLOTS))
    this.timer = setInterval(() => {
      this.running ??= this.tick()
        .catch((err: unknown) => this.deps.logger.warn({ err: (err as Error).message }, 'readiness refresh failed; trying again at the next slot'))
        .finally(() => (this.running = undefined))
    }, slotMs)
    this.timer.unref()
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    await this.running
  }

  view(): ReadinessView {
    return {
      rows: [...this.rows.values()],
      ...(this.lastRefreshMs !== undefined ? { lastRefreshMs: this.lastRefreshMs, lastRefreshProbeMs: this.lastRefreshProbeMs } : {}),
    }
  }

  /** One slot: assess its PVCs, forget PVCs no longer labelled. Public for tests (refresh everything with `all`). */
  async tick(all = false): Promise<void> {
    const { cache, config, store, pvcSpecId, sourcesSpecId, namespacesSpecId } = this.deps
    if (!cache.isSynced(pvcSpecId)) return
    const now = this.deps.now ?? Date.now
    const labelled = labelledPvcs(
      cache.byKey(pvcSpecId, 'all').map(pvcState),
      (ns) => cache.get(namespacesSpecId, '', ns)?.metadata.labels,
      config,
    )
    const present = new Set(labelled.map((l) => `${l.pvc.namespace}/${l.pvc.name}`))
    for (const key of this.rows.keys()) if (!present.has(key)) this.rows.delete(key)
    const slot = this.slot
    const due = all ? labelled : labelled.filter((l) => slotOf(l.pvc.namespace, l.pvc.name) === slot)
    const started = now()
    const rows = await assessAll(due, { store, sourceOf: (ns, name) => cache.get(sourcesSpecId, ns, backupSourceName(name)), nowMs: now, concurrency: CONCURRENCY }, config)
    this.probeMsThisPeriod += now() - started
    for (const r of rows) this.rows.set(`${r.namespace}/${r.name}`, r)
    if (all) {
      this.finishPeriod(now())
      return
    }
    this.slot = (slot + 1) % SLOTS
    if (this.slot === 0) this.finishPeriod(now())
  }

  private finishPeriod(at: number): void {
    this.lastRefreshMs = at
    this.lastRefreshProbeMs = this.probeMsThisPeriod
    this.probeMsThisPeriod = 0
  }
}
