/**
 * The readiness of many PVCs: which PVCs count (labelled, or under a namespace default tier), and
 * their assessment with the store read under a bounded number of concurrent probes. Shared by
 * `smart-restore status` (one-shot reads) and the service's refresher (watched caches).
 */
import type { Config } from '../config/schema.js'
import { repositoryKey } from '../decide/create.js'
import type { KubeObject } from '../inflight/types.js'
import type { PvcState } from '../reconcile/types.js'
import type { BackupStore } from '../storage/types.js'
import { assessPvc, type PvcReadiness } from './assess.js'

export interface LabelledPvc {
  pvc: PvcState
  tier: string
}

/** PVCs with a configured tier (label, else the namespace's default), outside excluded namespaces. */
export function labelledPvcs(pvcs: readonly PvcState[], namespaceLabels: (namespace: string) => Record<string, string> | undefined, config: Config): LabelledPvc[] {
  const out: LabelledPvc[] = []
  for (const pvc of pvcs) {
    if (config.excludedNamespaces.includes(pvc.namespace) || pvc.deletionTimestamp) continue
    const fallback = namespaceLabels(pvc.namespace)?.[config.namespaceDefaultTierLabel]
    const tier = pvc.labels[config.tierLabel] ?? (fallback === '' ? undefined : fallback)
    if (tier !== undefined && Object.hasOwn(config.tiers, tier)) out.push({ pvc, tier })
  }
  return out.sort((a, b) => `${a.pvc.namespace}/${a.pvc.name}`.localeCompare(`${b.pvc.namespace}/${b.pvc.name}`))
}

export interface AssessAllOptions {
  store: BackupStore
  /** `<pvc>-backup` of a PVC, when it exists. */
  sourceOf: (namespace: string, pvcName: string) => KubeObject | undefined
  nowMs: () => number
  /** Probes in flight at once (the request budget). */
  concurrency: number
  onProgress?: (done: number, total: number) => void
}

export async function assessAll(items: readonly LabelledPvc[], opts: AssessAllOptions, config: Config): Promise<PvcReadiness[]> {
  const out = new Array<PvcReadiness>(items.length)
  let next = 0
  let done = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      const { pvc, tier } = items[i]!
      const probe = await opts.store.probe(repositoryKey(config, pvc.namespace, pvc.name))
      out[i] = assessPvc({ pvc, tier, source: opts.sourceOf(pvc.namespace, pvc.name), probe, nowMs: opts.nowMs() }, config)
      opts.onProgress?.(++done, items.length)
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency, items.length)) }, worker))
  return out
}
