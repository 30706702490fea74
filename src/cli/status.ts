/**
 * `smart-restore status [--namespace ns]`: one row per labelled PVC — would it come back if the
 * cluster died now, and how old would its data be? One-shot LISTs of PVCs, ReplicationSources and
 * namespaces, then the store, read with a bounded number of probes at once. Never writes.
 */
import type { KubeConfig } from '@kubernetes/client-node'
import type { Config } from '../config/schema.js'
import { backupSourceName } from '../engines/names.js'
import { RS_RESOURCE } from '../engines/volsync.js'
import type { KubeObject } from '../inflight/types.js'
import { pvcState } from '../reconcile/controller.js'
import { summarize, type PvcReadiness, type ReadinessSummary } from '../status/assess.js'
import { assessAll, labelledPvcs } from '../status/collect.js'
import type { BackupStore } from '../storage/types.js'
import { Reader } from './reader.js'

export interface StatusReport {
  checkedAt: string
  server: string
  /** Only this namespace; absent: every namespace. */
  namespace?: string
  rows: PvcReadiness[]
  summary: ReadinessSummary
  notes: string[]
}

export interface StatusOptions {
  kubeConfig: KubeConfig
  store: BackupStore
  config: Config
  namespace?: string
  /** Probes of the store in flight at once. */
  concurrency: number
  now?: () => Date
  onProgress?: (done: number, total: number) => void
}

export class StatusError extends Error {
  override name = 'StatusError'
}

const PVC_RESOURCE = { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims' }
const NAMESPACE_RESOURCE = { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces' }

export async function statusReport(opts: StatusOptions): Promise<StatusReport> {
  const { config, store, namespace } = opts
  const now = opts.now ?? (() => new Date())
  const reader = new Reader(opts.kubeConfig, config.kube.requestTimeoutMs, 60_000)
  const notes: string[] = []

  let pvcs: KubeObject[]
  try {
    pvcs = await reader.list(PVC_RESOURCE, undefined, namespace)
  } catch (err) {
    throw new StatusError(`cannot list PersistentVolumeClaims${namespace ? ` in ${namespace}` : ''}: ${(err as Error).message}`)
  }
  // Namespace default tiers: without the right to read namespaces, only labelled PVCs count.
  const nsLabels = new Map<string, Record<string, string>>()
  try {
    const namespaces = namespace ? [await reader.get(`/api/v1/namespaces/${encodeURIComponent(namespace)}`, `Namespace ${namespace}`)] : await reader.list(NAMESPACE_RESOURCE, undefined)
    for (const ns of namespaces) if (ns) nsLabels.set(ns.metadata.name, ns.metadata.labels ?? {})
  } catch (err) {
    notes.push(`namespaces could not be read, so namespace default tiers are not applied: ${(err as Error).message}`)
  }
  const sources = new Map<string, KubeObject>()
  const served = await reader.discover(RS_RESOURCE).catch((err: unknown) => err as Error)
  if (served instanceof Error) notes.push(`ReplicationSources could not be discovered: ${served.message}`)
  else if (!served?.has(RS_RESOURCE.plural)) notes.push('VolSync is not installed (no ReplicationSource API): nothing is backed up')
  else {
    try {
      for (const rs of await reader.list(RS_RESOURCE, undefined, namespace)) sources.set(`${rs.metadata.namespace}/${rs.metadata.name}`, rs)
    } catch (err) {
      notes.push(`ReplicationSources could not be listed: ${(err as Error).message}`)
    }
  }

  const items = labelledPvcs(pvcs.map(pvcState), (ns) => nsLabels.get(ns), config)
  const rows = await assessAll(
    items,
    { store, sourceOf: (ns, name) => sources.get(`${ns}/${backupSourceName(name)}`), nowMs: () => now().getTime(), concurrency: opts.concurrency, ...(opts.onProgress ? { onProgress: opts.onProgress } : {}) },
    config,
  )
  return {
    checkedAt: now().toISOString(),
    server: opts.kubeConfig.getCurrentCluster()?.server ?? '',
    ...(namespace ? { namespace } : {}),
    rows,
    summary: summarize(rows),
    notes,
  }
}

/** 0: every PVC ok or new and nothing needs a human; 1: something late, missing, unknown or needing a human. */
export function statusExitCode(report: StatusReport): 0 | 1 {
  const { byVerdict, attention } = report.summary
  return byVerdict.late || byVerdict.none || byVerdict.unknown || attention ? 1 : 0
}
