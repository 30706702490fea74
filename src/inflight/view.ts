/**
 * The deletion guard's view of the cluster: the watched caches (one watch per in-flight rule, plus
 * namespaces) read through the pure matcher. Answers come from memory only.
 */
import type { KubeConfig } from '@kubernetes/client-node'
import { WatchedCache, type WatchCacheOptions, type WatchSpec } from '../kube/watch-cache.js'
import type { InFlightView, NamespaceInfo } from '../webhook/ports.js'
import { findInFlight, linkKeys } from './match.js'
import type { InFlightFinding, InFlightRule, PvcIdentity } from './types.js'

export const NAMESPACES_SPEC_ID = 'namespaces'

/** One watch per rule (the cache shares a watch between rules of the same resource and selector). */
export function watchSpecsFor(rules: InFlightRule[]): WatchSpec[] {
  return [
    ...rules.map((rule) => ({
      id: rule.id,
      resource: rule.resource,
      labelSelector: rule.labelSelector,
      indexKeys: (obj: Parameters<typeof linkKeys>[1]) => linkKeys(rule, obj),
    })),
    // A terminating namespace is how a namespace deletion shows in a PVC DELETE.
    { id: NAMESPACES_SPEC_ID, resource: { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces' }, namespaced: false },
  ]
}

export class CachedInFlightView implements InFlightView, NamespaceInfo {
  constructor(
    private readonly cache: WatchedCache,
    private readonly rules: InFlightRule[],
  ) {}

  /** `extraSpecs`: other watches sharing the same cache (the backup reconciler's). */
  static create(kubeConfig: KubeConfig, rules: InFlightRule[], opts: WatchCacheOptions = {}, extraSpecs: WatchSpec[] = []): CachedInFlightView {
    return new CachedInFlightView(new WatchedCache(kubeConfig, [...watchSpecsFor(rules), ...extraSpecs], opts), rules)
  }

  get watchedCache(): WatchedCache {
    return this.cache
  }

  start(): Promise<void> {
    return this.cache.start()
  }

  stop(): Promise<void> {
    return this.cache.stop()
  }

  syncState(): { synced: boolean; reason?: string } {
    if (this.cache.synced()) return { synced: true }
    const pending = this.cache.syncState().filter((s) => !s.synced).map((s) => `${s.resource}${s.lastError ? `: ${s.lastError}` : ''}`)
    return { synced: false, reason: pending.length ? `waiting for ${pending.slice(0, 3).join('; ')}${pending.length > 3 ? ` and ${pending.length - 3} more` : ''}` : 'discovery has not run yet' }
  }

  findInFlight(pvc: PvcIdentity): InFlightFinding[] {
    return findInFlight(pvc, this.rules, this.cache)
  }

  labels(namespace: string): Record<string, string> | undefined {
    return this.cache.get(NAMESPACES_SPEC_ID, '', namespace)?.metadata.labels
  }

  namespaceTerminating(namespace: string): boolean {
    const ns = this.cache.get(NAMESPACES_SPEC_ID, '', namespace) as { metadata: { deletionTimestamp?: string }; status?: { phase?: string } } | undefined
    return Boolean(ns?.metadata.deletionTimestamp) || ns?.status?.phase === 'Terminating'
  }
}
