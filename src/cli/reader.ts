/**
 * One-shot reads of the Kubernetes API for `smart-restore check`: GET, discovery and paged LISTs
 * under deadlines, failures as KubeApiError. Nothing is watched or written.
 */
import type { KubeConfig } from '@kubernetes/client-node'
import type { KubeObject, ResourceRef } from '../inflight/types.js'
import { toKubeApiError } from '../kube/errors.js'
import { getJson } from '../kube/get-json.js'
import { describeResource, groupVersionPath, statusOf } from '../kube/paths.js'

export const objectPath = (r: ResourceRef, ns: string, name: string) => `${groupVersionPath(r)}/namespaces/${encodeURIComponent(ns)}/${r.plural}/${encodeURIComponent(name)}`
export const isRecord = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v)
export const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

export class Reader {
  constructor(
    private readonly kubeConfig: KubeConfig,
    private readonly getMs: number,
    private readonly listMs: number,
  ) {}

  /** The object, or undefined on 404. Other failures throw KubeApiError. */
  async get(path: string, what: string): Promise<KubeObject | undefined> {
    try {
      return await getJson<KubeObject>(this.kubeConfig, path, {}, { timeoutMs: this.getMs })
    } catch (err) {
      if (statusOf(err) === 404) return undefined
      throw toKubeApiError(err, 'GET', what, { timeoutMs: this.getMs })
    }
  }

  /** Served resources of a group/version by plural, or null when the group/version is not served. */
  async discover(r: ResourceRef): Promise<Map<string, boolean> | null> {
    try {
      const list = await getJson<{ resources?: Array<{ name?: string; namespaced?: boolean }> }>(this.kubeConfig, groupVersionPath(r), {}, { timeoutMs: this.getMs })
      const out = new Map<string, boolean>()
      for (const res of list.resources ?? []) if (res.name && !res.name.includes('/')) out.set(res.name, res.namespaced ?? true)
      return out
    } catch (err) {
      if (statusOf(err) === 404) return null
      throw toKubeApiError(err, 'discover', groupVersionPath(r), { timeoutMs: this.getMs })
    }
  }

  /** Every object of a collection (following `continue`), cluster-wide or in one namespace. */
  async list(r: ResourceRef, labelSelector: string | undefined, namespace?: string): Promise<KubeObject[]> {
    const path = namespace === undefined ? `${groupVersionPath(r)}/${r.plural}` : `${groupVersionPath(r)}/namespaces/${encodeURIComponent(namespace)}/${r.plural}`
    const items: KubeObject[] = []
    let next: string | undefined
    for (let page = 0; page < 1000; page++) {
      let body: { metadata?: { continue?: string }; items?: unknown[] }
      try {
        body = await getJson(this.kubeConfig, path, { labelSelector, limit: '500', continue: next }, { timeoutMs: this.listMs })
      } catch (err) {
        throw toKubeApiError(err, 'LIST', `${describeResource(r)}${namespace ? ` in ${namespace}` : ''}`, { timeoutMs: this.listMs })
      }
      for (const o of body.items ?? []) if (isRecord(o) && isRecord(o.metadata) && typeof o.metadata.name === 'string') items.push(o as KubeObject)
      next = str(body.metadata?.continue)
      if (!next) break
    }
    return items
  }
}
