/**
 * An ObjectIndex over plain lists, keyed with linkKeys exactly as the informer-backed one is, so the
 * pure matching (and anything deciding on its findings) can be exercised without a cluster.
 */
import { linkKeys } from './match.js'
import type { InFlightRule, KubeObject, ObjectIndex } from './types.js'

export class MemoryIndex implements ObjectIndex {
  private readonly keyed = new Map<string, Map<string, KubeObject[]>>()
  private readonly named = new Map<string, Map<string, KubeObject>>()
  private readonly inactive: Set<string>

  /** `objects` by rule id; rules not listed there are active with no objects, unless `inactive`. */
  constructor(
    private readonly rules: InFlightRule[],
    objects: Record<string, KubeObject[]> = {},
    inactive: string[] = [],
  ) {
    this.inactive = new Set(inactive)
    for (const [ruleId, list] of Object.entries(objects)) for (const obj of list) this.add(ruleId, obj)
  }

  add(ruleId: string, obj: KubeObject): void {
    const rule = this.rules.find((r) => r.id === ruleId)
    if (!rule) throw new Error(`MemoryIndex: no rule ${ruleId}`)
    let keyed = this.keyed.get(ruleId)
    if (!keyed) this.keyed.set(ruleId, (keyed = new Map()))
    for (const key of linkKeys(rule, obj)) {
      const list = keyed.get(key) ?? []
      list.push(obj)
      keyed.set(key, list)
    }
    const md = (obj as { metadata?: { namespace?: unknown; name?: unknown } }).metadata
    if (md && typeof md.name === 'string') {
      let named = this.named.get(ruleId)
      if (!named) this.named.set(ruleId, (named = new Map()))
      named.set(`${typeof md.namespace === 'string' ? md.namespace : ''}/${md.name}`, obj)
    }
  }

  byKey(ruleId: string, key: string): KubeObject[] {
    return this.keyed.get(ruleId)?.get(key) ?? []
  }

  get(ruleId: string, namespace: string, name: string): KubeObject | undefined {
    return this.named.get(ruleId)?.get(`${namespace}/${name}`)
  }

  isActive(ruleId: string): boolean {
    return this.rules.some((r) => r.id === ruleId) && !this.inactive.has(ruleId)
  }
}
