/**
 * Watched caches for the deletion guard: a PVC DELETE is answered from memory, never from a
 * per-request API call. One client-node informer (ListWatch: cluster-wide LIST, then WATCH from the
 * list's resourceVersion) per watched resource + label selector, and per spec an index
 * `key → objects` kept current on every add/update/delete.
 *
 * Discovery first: a spec whose resource is not served (CRD not installed) is inactive — not an
 * error — and discovery is repeated every `rediscoverMs`, so installing the CRD later activates it
 * and deleting it deactivates it.
 *
 * What client-node 1.4's ListWatch does, and what this module adds around it:
 *  - 410 Gone (an ERROR event in the stream, or a 410 answer to the WATCH): ListWatch forgets its
 *    resourceVersion and relists when the stream ends. The relist is diffed against the objects it
 *    holds (vanished → delete, changed → update) and applied synchronously, so readers never see a
 *    half-cleared cache: the old state is served until the new list has arrived. Kept as is.
 *  - A stream the server ends cleanly: ListWatch re-watches from the last resourceVersion at once,
 *    with no backoff at all. Added: a watch that ends within a second without an event delays the
 *    next one (exponential backoff), so a misbehaving server cannot make us spin.
 *  - Any other failure (list error, refused connection, non-200 WATCH, reset stream): ListWatch emits
 *    `error` and STOPS for good. Added: restart after an exponential backoff (0.5 s doubling, capped
 *    at 30 s, jittered); the restart resumes the watch from the last resourceVersion when it has one
 *    (no relist), and the error is kept in syncState().
 *  - No timeouts: the LIST has none, a WATCH that never gets its headers waits forever, and an open
 *    stream on a dead connection only ends by TCP keepalive. Added: a deadline on every LIST, a
 *    connect timeout on every WATCH, `timeoutSeconds` (randomised 5–10 min, like client-go) so the
 *    apiserver ends streams regularly, and a client-side cut-off shortly after that.
 *  - stop() while the LIST is in flight still opens the WATCH afterwards, and stop() while a WATCH is
 *    connecting loses the connection (it is never aborted); stopping also emits `error` (AbortError).
 *    Added: the list is aborted, a watch asked for after stop() is never opened, a connecting one is
 *    destroyed with its (per-request) agent, and errors after stop() are ignored.
 *  - ListWatch keeps every object it has seen, whole. Here it only holds small stubs
 *    (name/namespace/resourceVersion); each spec's index holds a trimmed, frozen copy.
 */
import { setMaxListeners } from 'node:events'
import type { Agent } from 'node:http'
import { ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node'
import type { KubeObject, ObjectIndex, ResourceRef } from '../inflight/types.js'
import type { KubeLogger } from './cluster-client.js'
import { toKubeApiError } from './errors.js'
import { getJson } from './get-json.js'
import { apiVersionOf, collectionPath, describeResource, groupVersionPath, statusOf } from './paths.js'

// ---------------------------------------------------------------------------------------------
// Public types

export interface WatchSpec {
  /** The rule id the guard asks about (ObjectIndex's ruleId). */
  id: string
  resource: ResourceRef
  /** Default true; false for cluster-scoped resources (e.g. namespaces), whose get() ignores the namespace. */
  namespaced?: boolean
  /** Narrows the LIST/WATCH (server-side). */
  labelSelector?: string
  /** The index keys of a stored object (after `transform`), for byKey(). None: byKey() finds nothing. */
  indexKeys?: (obj: KubeObject) => string[]
  /**
   * What to keep of an object, to bound memory; receives the whole object as the apiserver sent it.
   * Default: trimObject (metadata name/namespace/uid/resourceVersion/labels/ownerReferences/
   * creationTimestamp/deletionTimestamp, spec, status; no managedFields, no annotations but those
   * of `keepAnnotationPrefix`). Specs of one resource without a transform share one frozen copy.
   */
  transform?: (obj: KubeObject) => KubeObject
  /**
   * Annotations under this prefix are kept in the default trimmed copy — of every spec of the
   * cache, so that specs of the same resource (the guard's and the reconciler's) still share one
   * copy instead of holding two.
   */
  keepAnnotationPrefix?: string
}

/** What happened to an object of a spec's index. */
export type ChangeType = 'added' | 'modified' | 'deleted'

/**
 * Called after the spec's index has taken the change (get/byKey already answer with it), for watch
 * events and for the differences a relist finds. `obj` is the stored copy (for 'deleted': the last
 * state the apiserver sent when known, else the stored copy); `old` the copy stored before.
 * 'modified' fires for every new resourceVersion, even when the stored copy looks the same.
 */
export type ChangeListener = (type: ChangeType, obj: KubeObject, old?: KubeObject) => void

export interface WatchCacheOptions {
  logger?: KubeLogger
  /** How often discovery is repeated (default 60 000). */
  rediscoverMs?: number
  /** Clock, in ms since the epoch (default Date.now). */
  now?: () => number
  /** Deadline of each discovery GET (default 10 000). */
  requestTimeoutMs?: number
  /** Deadline of each LIST request (each page of a chunked list), body included (default 60 000). */
  listTimeoutMs?: number
  /**
   * Objects per LIST page (default 500, as client-go's pager). Each page is projected to the stored
   * copies before the next is asked for, so memory peaks at one page of whole objects rather than
   * the whole collection. 0: one unchunked LIST.
   */
  listPageSize?: number
  /** Deadline for a WATCH to get its response headers (default 15 000). */
  watchConnectTimeoutMs?: number
  /** `timeoutSeconds` asked of the apiserver for each WATCH (default: random 300–600 each time). */
  watchTimeoutSeconds?: number | (() => number)
  /** Restart backoff: first delay and cap (default 500 / 30 000). */
  backoff?: { initialMs?: number; maxMs?: number }
  /**
   * A spec whose informer has been failing (no successful list or watch connection) for this long
   * counts as not synced (default 120 000): a cache that can no longer follow the cluster must not
   * keep answering as if it did.
   */
  maxStaleMs?: number
}

export interface SpecSyncState {
  id: string
  /** e.g. `replicationsources.volsync.backube/v1alpha1`, `persistentvolumeclaims/v1`. */
  resource: string
  labelSelector?: string
  /** Installed (per the last discovery) and watched. */
  active: boolean
  /** Ready to answer: discovery ran, and when active, the list has arrived and the informer is not failing for long. */
  synced: boolean
  objects: number
  /** A WATCH stream is open right now. */
  watching: boolean
  /** Lists after the first (410 Gone, a restart without a resourceVersion). */
  relists: number
  /** RFC 3339: when the last list was applied. */
  lastSyncAt?: string
  /** The last error of this spec's discovery or informer (kept after recovery, with its time). */
  lastError?: string
  lastErrorAt?: string
}

export interface WatchCacheStats {
  /** LISTs made (initial and relists; a LIST read in pages counts once, its whole-LIST fallback again). */
  listRequests: number
  watchRequests: number
  discoveryRequests: number
  /** Watch events received (ADDED/MODIFIED/DELETED). */
  events: number
  /** Informer restarts after an error. */
  restarts: number
}

// ---------------------------------------------------------------------------------------------
// Object trimming

/**
 * The default copy kept of an object: identity, labels, owners, timestamps, spec and status, and
 * the annotations under `annotationPrefixes` (only when there are any).
 */
export function trimObject(obj: KubeObject, annotationPrefixes: readonly string[] = []): KubeObject {
  const m = obj.metadata
  const metadata: KubeObject['metadata'] = { name: m.name }
  if (m.namespace !== undefined) metadata.namespace = m.namespace
  if (m.uid !== undefined) metadata.uid = m.uid
  if (m.resourceVersion !== undefined) metadata.resourceVersion = m.resourceVersion
  if (m.labels !== undefined) metadata.labels = m.labels
  if (m.ownerReferences !== undefined) metadata.ownerReferences = m.ownerReferences
  if (m.creationTimestamp !== undefined) metadata.creationTimestamp = m.creationTimestamp
  if (m.deletionTimestamp !== undefined) metadata.deletionTimestamp = m.deletionTimestamp
  if (annotationPrefixes.length > 0 && m.annotations) {
    const kept = Object.entries(m.annotations as Record<string, string>).filter(([k]) => annotationPrefixes.some((p) => k.startsWith(p)))
    if (kept.length > 0) metadata.annotations = Object.fromEntries(kept)
  }
  const out = {} as KubeObject
  if (obj.apiVersion !== undefined) out.apiVersion = obj.apiVersion
  if (obj.kind !== undefined) out.kind = obj.kind
  out.metadata = metadata
  if (obj.spec !== undefined) out.spec = obj.spec
  if (obj.status !== undefined) out.status = obj.status
  return out
}

function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value]
  while (stack.length) {
    const v = stack.pop()
    if (typeof v !== 'object' || v === null || Object.isFrozen(v)) continue
    Object.freeze(v)
    for (const child of Object.values(v)) if (typeof child === 'object' && child !== null) stack.push(child)
  }
  return value
}

// ---------------------------------------------------------------------------------------------
// Per-spec state and index

const nsName = (ns: string | undefined, name: string) => `${ns ?? ''}/${name}`

class SpecState {
  readonly id: string
  readonly gv: string
  readonly feedKey: string
  active = false
  /** Discovery gave a definite answer for this spec's group/version at least once. */
  discovered = false
  namespaced: boolean
  feed: Feed | undefined
  lastError: string | undefined
  lastErrorAt: number | undefined
  private readonly objects = new Map<string, { obj: KubeObject; keys: string[] }>()
  private readonly keys = new Map<string, Map<string, KubeObject>>()
  private warnedTransform = false
  private warnedKeys = false
  readonly listeners = new Set<ChangeListener>()

  constructor(
    readonly spec: WatchSpec,
    private readonly log: KubeLogger | undefined,
  ) {
    this.id = spec.id
    this.gv = apiVersionOf(spec.resource)
    this.namespaced = spec.namespaced ?? true
    this.feedKey = `${collectionPath(spec.resource)}?${spec.labelSelector ?? ''}`
  }

  get size(): number {
    return this.objects.size
  }

  describe(): string {
    return describeResource(this.spec.resource)
  }

  /** The stored copy of `raw`; `shared` is the default trimmed copy, computed once per event for all specs of a feed. */
  project(raw: KubeObject, shared: () => KubeObject): KubeObject {
    if (!this.spec.transform) return shared()
    try {
      const out = this.spec.transform(raw)
      if (!out?.metadata?.name) throw new Error('the transform returned an object without metadata.name')
      // The cache's own bookkeeping needs the identity, whatever the transform kept.
      if (out.metadata.namespace === undefined && raw.metadata.namespace !== undefined) out.metadata.namespace = raw.metadata.namespace
      return deepFreeze(out)
    } catch (err) {
      if (!this.warnedTransform) {
        this.warnedTransform = true
        this.log?.warn({ rule: this.id, err: (err as Error).message }, `rule ${this.id}: transform failed; keeping the default trimmed copy`)
      }
      return shared()
    }
  }

  /** Store `obj`; returns the copy it replaces. */
  upsert(obj: KubeObject): KubeObject | undefined {
    const id = nsName(obj.metadata.namespace, obj.metadata.name)
    const prev = this.objects.get(id)?.obj
    this.removeKeys(id)
    let keys: string[] = []
    if (this.spec.indexKeys) {
      try {
        keys = [...new Set(this.spec.indexKeys(obj))].filter((k) => typeof k === 'string')
      } catch (err) {
        if (!this.warnedKeys) {
          this.warnedKeys = true
          this.log?.warn({ rule: this.id, object: id, err: (err as Error).message }, `rule ${this.id}: indexKeys failed; the object is kept without keys`)
        }
      }
    }
    this.objects.set(id, { obj, keys })
    for (const k of keys) (this.keys.get(k) ?? this.keys.set(k, new Map()).get(k)!).set(id, obj)
    return prev
  }

  /** Forget an object; returns the copy that was stored. */
  remove(ns: string | undefined, name: string): KubeObject | undefined {
    const id = nsName(ns, name)
    const prev = this.objects.get(id)?.obj
    this.removeKeys(id)
    this.objects.delete(id)
    return prev
  }

  /** Tell the listeners; a listener that throws is logged and the others still run. */
  notify(type: ChangeType, obj: KubeObject, old?: KubeObject): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(type, obj, old)
      } catch (err) {
        this.log?.warn(
          { rule: this.id, change: type, object: nsName(obj.metadata.namespace, obj.metadata.name), err: err instanceof Error ? err.message : String(err) },
          `rule ${this.id}: a change listener threw`,
        )
      }
    }
  }

  private removeKeys(id: string): void {
    const prev = this.objects.get(id)
    if (!prev) return
    for (const k of prev.keys) {
      const set = this.keys.get(k)
      set?.delete(id)
      if (set?.size === 0) this.keys.delete(k)
    }
  }

  /** Forget every object; returns what was stored. */
  clear(): KubeObject[] {
    const all = [...this.objects.values()].map((e) => e.obj)
    this.objects.clear()
    this.keys.clear()
    return all
  }

  byKey(key: string): KubeObject[] {
    const set = this.keys.get(key)
    return set ? [...set.values()] : []
  }

  get(namespace: string, name: string): KubeObject | undefined {
    return this.objects.get(nsName(this.namespaced ? namespace : undefined, name))?.obj
  }
}

/** A chunked LIST's continue token expired between pages (410 Gone). */
class ContinueExpired extends Error {}

// ---------------------------------------------------------------------------------------------
// One informer (resource + label selector), shared by the specs that watch the same thing

/** What ListWatch holds per object: enough for its bookkeeping (identity, resourceVersion). */
interface Stub extends KubernetesObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string }
  /**
   * Each spec's stored copy of the object (in the feed's spec order), made when the object arrived
   * and handed over by the add/update/delete callback (then deleted). Projecting on arrival rather
   * than in the callback lets the whole object, and a LIST page of them, be collected at once.
   */
  [PROJECTED]?: KubeObject[]
}
const PROJECTED = Symbol('projected')

interface Shared {
  kubeConfig: KubeConfig
  /** Every spec's keepAnnotationPrefix: the shared trimmed copy keeps those annotations. */
  annotationPrefixes: readonly string[]
  log: KubeLogger | undefined
  now: () => number
  stats: WatchCacheStats
  opts: Required<Pick<WatchCacheOptions, 'listTimeoutMs' | 'watchConnectTimeoutMs' | 'listPageSize'>> & { watchTimeoutSeconds: () => number; backoff: (attempt: number) => number }
  changed: () => void
  rediscoverSoon: () => void
}

/** Watch.watch, which GuardedWatch overrides to steer ListWatch without copying it. */
type WatchFn = Watch['watch']

class Feed {
  readonly path: string
  readonly labelSelector: string | undefined
  readonly resource: ResourceRef
  readonly specs: SpecState[]
  listed = false
  watching = false
  relists = 0
  lastSyncAt: number | undefined
  lastError: string | undefined
  lastErrorAt: number | undefined
  /** First failure since the informer last worked (list applied or watch connected). */
  failingSince: number | undefined

  private readonly lw: ListWatch<Stub>
  private readonly abort = new AbortController()
  private agent: Agent | undefined
  private stopped = false
  private failures = 0
  private restartTimer: NodeJS.Timeout | undefined
  private sleepTimer: { timer: NodeJS.Timeout; resolve: () => void } | undefined
  private justListed = false
  private watchAttempt = 0
  private delayNextWatchMs = 0

  constructor(
    specs: SpecState[],
    private readonly s: Shared,
  ) {
    const first = specs[0]!
    this.specs = specs
    this.resource = first.spec.resource
    this.labelSelector = first.spec.labelSelector
    this.path = collectionPath(this.resource)
    this.lw = new ListWatch<Stub>(this.path, new GuardedWatch(s.kubeConfig, this, s.opts.watchConnectTimeoutMs), () => this.list(), false, this.labelSelector)
    this.lw.on('add', (o) => this.upsert(o))
    this.lw.on('update', (o) => this.upsert(o))
    this.lw.on('delete', (o) => this.remove(o))
    this.lw.on('error', (err) => this.failed(err))
  }

  get ids(): string[] {
    return this.specs.map((s) => s.id)
  }

  start(): void {
    this.run()
  }

  private run(): void {
    if (this.stopped) return
    // ListWatch.start resolves once the watch is connecting; list failures arrive as `error`. It can
    // still reject (e.g. an exec credential plugin failing in applyToFetchOptions).
    this.lw.start().catch((err: unknown) => this.failed(err))
  }

  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.watching = false
    clearTimeout(this.restartTimer)
    if (this.sleepTimer) {
      clearTimeout(this.sleepTimer.timer)
      this.sleepTimer.resolve()
    }
    this.abort.abort()
    this.agent?.destroy()
    this.agent = undefined
    await this.lw.stop()
  }

  // -- the informer's inputs -----------------------------------------------------------------

  private async list(): Promise<KubernetesListObject<Stub>> {
    if (this.stopped) throw new Error('stopped')
    this.s.stats.listRequests++
    if (this.listed) {
      this.relists++
      this.s.log?.info({ rules: this.ids, resource: this.path }, `relisting ${this.path}`)
    }
    let result: { resourceVersion: string; items: Stub[] }
    try {
      result = await this.listPages(this.s.opts.listPageSize)
    } catch (err) {
      // A continue token that expired between pages (410): start over with one whole LIST, as
      // client-go's pager does (FullListIfExpired) — a retry in pages could expire again.
      if (!(err instanceof ContinueExpired)) throw err
      this.s.log?.info({ rules: this.ids, resource: this.path }, `the chunked list of ${this.path} expired between pages; listing it whole`)
      this.s.stats.listRequests++
      result = await this.listPages(0)
    }
    // ListWatch applies the items, sets its resourceVersion and then asks for the watch: that is
    // where the list counts as applied (see openWatch).
    this.justListed = true
    return { apiVersion: apiVersionOf(this.resource), kind: `${this.resource.kind}List`, metadata: { resourceVersion: result.resourceVersion }, items: result.items }
  }

  /** LIST the collection in pages of `pageSize` (0: at once), each projected before the next is read. */
  private async listPages(pageSize: number): Promise<{ resourceVersion: string; items: Stub[] }> {
    const items: Stub[] = []
    let resourceVersion = ''
    let cont: string | undefined
    do {
      const query = { labelSelector: this.labelSelector, limit: pageSize > 0 ? String(pageSize) : undefined, continue: cont }
      let page: { metadata?: { resourceVersion?: string; continue?: string }; items?: KubeObject[] }
      try {
        page = await getJson(this.s.kubeConfig, this.path, query, { timeoutMs: this.s.opts.listTimeoutMs, signal: this.abort.signal })
      } catch (err) {
        if (cont && toKubeApiError(err, 'list', this.path).status === 410) throw new ContinueExpired()
        throw err
      }
      if (this.stopped) throw new Error('stopped')
      for (const o of page.items ?? []) items.push(this.stub(o))
      // Every page carries the resourceVersion of the snapshot the first one was cut from.
      resourceVersion = page.metadata?.resourceVersion ?? ''
      cont = page.metadata?.continue || undefined
    } while (cont)
    return { resourceVersion, items }
  }

  private stub(raw: KubeObject): Stub {
    // Built-in list items carry no kind/apiVersion; the cache's copies always do.
    raw.apiVersion ??= apiVersionOf(this.resource)
    raw.kind ??= this.resource.kind
    const meta = raw.metadata ?? ({} as KubeObject['metadata'])
    const stub: Stub = { metadata: { name: meta.name, namespace: meta.namespace, resourceVersion: meta.resourceVersion as string | undefined } }
    let shared: KubeObject | undefined
    const makeShared = () => (shared ??= deepFreeze(trimObject(raw, this.s.annotationPrefixes)))
    stub[PROJECTED] = this.specs.map((spec) => spec.project(raw, makeShared))
    return stub
  }

  private upsert(stub: Stub): void {
    const projected = stub[PROJECTED]
    delete stub[PROJECTED]
    if (this.stopped || !projected) return
    // Every spec's index first, then the listeners: a listener reading another spec of this feed sees the change there too.
    const changes = this.specs.map((spec, i) => {
      const obj = projected[i]!
      return { spec, obj, old: spec.upsert(obj) }
    })
    for (const c of changes) if (c.spec.listeners.size) c.spec.notify(c.old ? 'modified' : 'added', c.obj, c.old)
  }

  private remove(stub: Stub): void {
    // A watch DELETED event carries the object's last state; a relist's vanished object has only the old stub.
    const projected = stub[PROJECTED]
    delete stub[PROJECTED]
    if (this.stopped) return
    const changes = this.specs.map((spec) => ({ spec, old: spec.remove(stub.metadata.namespace, stub.metadata.name) }))
    changes.forEach(({ spec, old }, i) => {
      if (!old || spec.listeners.size === 0) return
      spec.notify('deleted', projected?.[i] ?? old, old)
    })
  }

  /** Called by GuardedWatch for every WATCH ListWatch wants to open. */
  async openWatch(open: WatchFn, path: string, query: Parameters<WatchFn>[1], callback: Parameters<WatchFn>[2], done: Parameters<WatchFn>[3]): Promise<AbortController> {
    const inert = new AbortController()
    if (this.justListed) {
      this.justListed = false
      this.listed = true
      this.lastSyncAt = this.s.now()
      this.failingSince = undefined
      this.failures = 0
      this.s.log?.info({ rules: this.ids, resource: this.path, objects: this.specs[0]?.size ?? 0 }, `synced ${this.path}`)
      this.s.changed()
    }
    if (this.stopped) return inert
    if (this.delayNextWatchMs > 0) {
      const ms = this.delayNextWatchMs
      this.delayNextWatchMs = 0
      await this.sleep(ms)
      if (this.stopped) return inert
    }

    const attempt = ++this.watchAttempt
    const current = () => attempt === this.watchAttempt && !this.stopped
    const timeoutSeconds = Math.max(1, Math.round(this.s.opts.watchTimeoutSeconds()))
    let openedAt: number | undefined
    let events = 0
    let settled = false
    let expired = false
    let controller: AbortController | undefined
    // Past the server-side timeout (plus grace) the connection is presumed dead: cut it, and resume
    // from the last resourceVersion like after a normal end.
    const cutoff = setTimeout(() => {
      expired = true
      controller?.abort()
    }, (timeoutSeconds + 30) * 1000)

    const guardedDone = (err: unknown) => {
      clearTimeout(cutoff)
      if (settled) return
      settled = true
      if (!current()) return
      this.watching = false
      const lived = openedAt === undefined ? 0 : this.s.now() - openedAt
      if (events > 0 || lived >= 5000) this.failures = 0
      if (expired) return done(null)
      if (!err && events === 0 && lived < 1000) {
        // Ended cleanly right away: ListWatch would reconnect immediately, forever.
        this.failures++
        this.delayNextWatchMs = this.s.opts.backoff(this.failures)
      }
      done(err)
    }
    const guardedCallback = (type: string, obj: any, raw: unknown) => {
      if (!current()) return
      if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
        if (!obj?.metadata?.name) return
        events++
        this.s.stats.events++
        return callback(type, this.stub(obj as KubeObject), raw)
      }
      if (type === 'ERROR') {
        const code = (obj as { code?: number })?.code
        this.s.log?.info({ rules: this.ids, resource: this.path, code, message: (obj as { message?: string })?.message }, code === 410 ? `watch of ${this.path} expired (410 Gone); relisting` : `watch of ${this.path} sent an error`)
      }
      callback(type, obj, raw)
    }

    this.s.stats.watchRequests++
    controller = await open(path, { ...query, timeoutSeconds, allowWatchBookmarks: true }, guardedCallback, guardedDone)
    if (!current()) {
      clearTimeout(cutoff)
      controller.abort()
      return inert
    }
    if (!settled) {
      openedAt = this.s.now()
      this.watching = true
      if (this.failingSince !== undefined) {
        this.failingSince = undefined
        this.s.log?.info({ rules: this.ids, resource: this.path }, `watching ${this.path} again`)
        this.s.changed()
      }
    }
    return controller
  }

  /** The agent of the WATCH being opened: client-node makes one per request, so destroying it ends just that connection. */
  trackAgent(agent: Agent): void {
    if (this.stopped) return void agent.destroy()
    this.agent = agent
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleepTimer = undefined
        resolve()
      }, ms)
      this.sleepTimer = { timer, resolve }
    })
  }

  // -- failures ------------------------------------------------------------------------------

  private failed(err: unknown): void {
    if (this.stopped) return
    this.watching = false
    this.failures++
    this.s.stats.restarts++
    const now = this.s.now()
    this.failingSince ??= now
    this.lastError = describeError(err, this.path)
    this.lastErrorAt = now
    const delay = this.s.opts.backoff(this.failures)
    this.s.log?.warn({ rules: this.ids, resource: this.path, err: this.lastError, retryInMs: delay }, `informer for ${this.path} failed; restarting`)
    if (statusOf(err) === 404) this.s.rediscoverSoon()
    clearTimeout(this.restartTimer)
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined
      this.run()
    }, delay)
    this.s.changed()
  }
}

/**
 * client-node's Watch, with the informer's WATCHes routed through Feed.openWatch, a connect timeout
 * (node-fetch's `timeout` bounds the wait for response headers only), and each request's agent
 * tracked so stop() can destroy a connection that is still being made.
 */
class GuardedWatch extends Watch {
  private readonly feed: Feed

  constructor(kubeConfig: KubeConfig, feed: Feed, connectTimeoutMs: number) {
    const config = Object.create(kubeConfig) as KubeConfig
    config.applyToFetchOptions = async (opts) => {
      const init = await kubeConfig.applyToFetchOptions(opts)
      ;(init as { timeout?: number }).timeout = connectTimeoutMs
      if (init.agent && typeof init.agent === 'object') feed.trackAgent(init.agent as Agent)
      return init
    }
    super(config)
    this.feed = feed
  }

  override watch(...args: Parameters<WatchFn>): Promise<AbortController> {
    return this.feed.openWatch((p, q, c, d) => super.watch(p, q, c, d), ...args)
  }
}

function describeError(err: unknown, path: string): string {
  const e = err as { statusCode?: number; message?: string } | null
  // Watch answers other than 200 arrive as a plain Error with statusCode.
  if (typeof e?.statusCode === 'number') return `WATCH ${path}: HTTP ${e.statusCode} ${e.message ?? ''}`.trim()
  return toKubeApiError(err, 'LIST/WATCH', path).message
}

// ---------------------------------------------------------------------------------------------
// Discovery

type Discovered = { state: 'served'; resources: Map<string, { namespaced: boolean }> } | { state: 'absent' } | { state: 'error'; error: string }

// ---------------------------------------------------------------------------------------------
// The cache

export class WatchedCache implements ObjectIndex {
  private readonly specs = new Map<string, SpecState>()
  private readonly feeds = new Map<string, Feed>()
  private readonly log: KubeLogger | undefined
  private readonly now: () => number
  private readonly rediscoverMs: number
  private readonly requestTimeoutMs: number
  private readonly maxStaleMs: number
  private readonly shared: Shared
  private readonly counters: WatchCacheStats = { listRequests: 0, watchRequests: 0, discoveryRequests: 0, events: 0, restarts: 0 }
  private readonly stopController = ((c) => {
    // Discovery sends one request per group/version at once, all listening on this one signal.
    setMaxListeners(0, c.signal)
    return c
  })(new AbortController())
  private discoveryTimer: NodeJS.Timeout | undefined
  private discoveryDueAt = 0
  private discovering: Promise<void> | undefined
  private discoveryFailures = 0
  private discoveredOnce = false
  private started = false
  private stopped = false
  private readonly waiters = new Set<() => void>()
  private readonly backoff: (attempt: number) => number

  constructor(
    private readonly kubeConfig: KubeConfig,
    specs: WatchSpec[],
    opts: WatchCacheOptions = {},
  ) {
    this.log = opts.logger
    this.now = opts.now ?? Date.now
    this.rediscoverMs = opts.rediscoverMs ?? 60_000
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10_000
    this.maxStaleMs = opts.maxStaleMs ?? 120_000
    const initialMs = opts.backoff?.initialMs ?? 500
    const maxMs = opts.backoff?.maxMs ?? 30_000
    this.backoff = (attempt) => Math.min(maxMs, initialMs * 2 ** Math.min(30, Math.max(0, attempt - 1)) * (0.8 + 0.4 * Math.random()))
    const wts = opts.watchTimeoutSeconds
    for (const spec of specs) {
      if (this.specs.has(spec.id)) throw new Error(`duplicate watch spec id ${spec.id}`)
      this.specs.set(spec.id, new SpecState(spec, this.log))
    }
    this.shared = {
      kubeConfig,
      annotationPrefixes: [...new Set(specs.flatMap((s) => (s.keepAnnotationPrefix ? [s.keepAnnotationPrefix] : [])))],
      log: this.log,
      now: this.now,
      stats: this.counters,
      opts: {
        listTimeoutMs: opts.listTimeoutMs ?? 60_000,
        listPageSize: opts.listPageSize ?? 500,
        watchConnectTimeoutMs: opts.watchConnectTimeoutMs ?? 15_000,
        watchTimeoutSeconds: typeof wts === 'function' ? wts : typeof wts === 'number' ? () => wts : () => 300 + Math.random() * 300,
        backoff: this.backoff,
      },
      changed: () => this.changed(),
      rediscoverSoon: () => this.scheduleDiscovery(1000, true),
    }
  }

  // -- lifecycle -----------------------------------------------------------------------------

  /** Discover, start the informers of the installed resources, and keep rediscovering. Resolves after the first discovery (not the lists: see waitForSync). */
  async start(): Promise<void> {
    if (this.started) throw new Error('WatchedCache.start() called twice')
    this.started = true
    await this.discover()
  }

  /** End every watch, request and timer. The last state stays readable; synced() is false from now on. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    this.stopController.abort()
    clearTimeout(this.discoveryTimer)
    await Promise.all([...this.feeds.values()].map((f) => f.stop()))
    this.changed()
  }

  // -- ObjectIndex ---------------------------------------------------------------------------

  byKey(ruleId: string, key: string): KubeObject[] {
    const s = this.specs.get(ruleId)
    return s?.active ? s.byKey(key) : []
  }

  get(ruleId: string, namespace: string, name: string): KubeObject | undefined {
    const s = this.specs.get(ruleId)
    return s?.active ? s.get(namespace, name) : undefined
  }

  isActive(ruleId: string): boolean {
    return this.specs.get(ruleId)?.active ?? false
  }

  /** Whether this rule's answers can be trusted: see synced(), for one spec. Unknown ids are not synced. */
  isSynced(ruleId: string): boolean {
    const s = this.specs.get(ruleId)
    return !!s && !this.stopped && this.specSynced(s)
  }

  /**
   * Call `listener` on every change of spec `specId`'s index (see ChangeListener): watch events, the
   * differences of a relist, the objects of a resource that is uninstalled (deleted) or installed
   * (added). Exceptions are caught and logged. Returns the unsubscribe function.
   */
  onChange(specId: string, listener: ChangeListener): () => void {
    const s = this.specs.get(specId)
    if (!s) throw new Error(`onChange: no watch spec ${specId}`)
    s.listeners.add(listener)
    return () => void s.listeners.delete(listener)
  }

  // -- readiness and metrics -----------------------------------------------------------------

  /** Every spec is ready: discovery ran, and every active spec's list has arrived (and its informer is not failing for longer than maxStaleMs). */
  synced(): boolean {
    if (this.stopped || !this.discoveredOnce) return false
    for (const s of this.specs.values()) if (!this.specSynced(s)) return false
    return true
  }

  syncState(): SpecSyncState[] {
    const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString())
    return [...this.specs.values()].map((s) => {
      const f = s.active ? s.feed : undefined
      // The most recent of the spec's discovery error and its informer's error.
      const feedNewer = f?.lastErrorAt !== undefined && (s.lastErrorAt === undefined || f.lastErrorAt >= s.lastErrorAt)
      const lastError = feedNewer ? f!.lastError : s.lastError
      const lastErrorAt = feedNewer ? f!.lastErrorAt : s.lastErrorAt
      const out: SpecSyncState = {
        id: s.id,
        resource: s.describe(),
        active: s.active,
        synced: !this.stopped && this.specSynced(s),
        objects: s.active ? s.size : 0,
        watching: f?.watching ?? false,
        relists: f?.relists ?? 0,
      }
      if (s.spec.labelSelector !== undefined) out.labelSelector = s.spec.labelSelector
      if (f?.lastSyncAt !== undefined) out.lastSyncAt = iso(f.lastSyncAt)
      if (lastError !== undefined) {
        out.lastError = lastError
        out.lastErrorAt = iso(lastErrorAt)
      }
      return out
    })
  }

  stats(): WatchCacheStats {
    return { ...this.counters }
  }

  /** Resolves true once synced(), false if `timeoutMs` passes first (or the cache stops). */
  waitForSync(timeoutMs: number): Promise<boolean> {
    if (this.synced()) return Promise.resolve(true)
    if (this.stopped) return Promise.resolve(false)
    return new Promise((resolve) => {
      const finish = (v: boolean) => {
        clearTimeout(timer)
        clearInterval(poll)
        this.waiters.delete(check)
        resolve(v)
      }
      const check = () => {
        if (this.synced()) finish(true)
        else if (this.stopped) finish(false)
      }
      const timer = setTimeout(() => finish(false), timeoutMs)
      // Staleness changes with time alone, not only on events.
      const poll = setInterval(check, 100)
      this.waiters.add(check)
    })
  }

  private specSynced(s: SpecState): boolean {
    if (!s.discovered) return false
    if (!s.active) return true
    const f = s.feed
    if (!f?.listed) return false
    return f.failingSince === undefined || this.now() - f.failingSince < this.maxStaleMs
  }

  private changed(): void {
    for (const w of [...this.waiters]) w()
  }

  // -- discovery -----------------------------------------------------------------------------

  /** Run discovery in `ms`; with `onlySooner`, only if that is earlier than what is planned (and none is running). */
  private scheduleDiscovery(ms: number, onlySooner = false): void {
    if (this.stopped) return
    const due = Date.now() + ms
    if (onlySooner && (this.discovering || (this.discoveryTimer && this.discoveryDueAt <= due))) return
    clearTimeout(this.discoveryTimer)
    this.discoveryDueAt = due
    this.discoveryTimer = setTimeout(() => {
      this.discoveryTimer = undefined
      void this.discover()
    }, ms)
  }

  /** One discovery pass (concurrent callers share it), then the next one is scheduled. */
  private discover(): Promise<void> {
    this.discovering ??= this.discoverOnce().finally(() => {
      this.discovering = undefined
      if (this.stopped) return
      const incomplete = [...this.specs.values()].some((s) => !s.discovered)
      this.scheduleDiscovery(incomplete ? Math.min(this.rediscoverMs, this.backoff(this.discoveryFailures)) : this.rediscoverMs)
    })
    return this.discovering
  }

  private async discoverOnce(): Promise<void> {
    const gvs = new Map<string, ResourceRef>()
    for (const s of this.specs.values()) gvs.set(s.gv, s.spec.resource)
    const answers = new Map<string, Discovered>()
    await Promise.all([...gvs].map(async ([gv, r]) => answers.set(gv, await this.discoverGroupVersion(r))))
    if (this.stopped) return
    const failed = [...answers.values()].some((a) => a.state === 'error')
    this.discoveryFailures = failed ? this.discoveryFailures + 1 : 0

    const activate: SpecState[] = []
    const deactivate: SpecState[] = []
    for (const s of this.specs.values()) {
      const a = answers.get(s.gv)!
      const r = s.spec.resource
      if (a.state === 'error') {
        // Keep whatever we knew: a flaky discovery must not tear down working informers.
        s.lastError = a.error
        s.lastErrorAt = this.now()
        continue
      }
      const found = a.state === 'served' ? a.resources.get(r.plural) : undefined
      const first = !s.discovered
      s.discovered = true
      if (found) {
        if (found.namespaced !== s.namespaced) {
          this.log?.warn({ rule: s.id, resource: s.describe(), namespaced: found.namespaced }, `rule ${s.id}: ${r.kind} is ${found.namespaced ? 'namespaced' : 'cluster-scoped'}; using that`)
          s.namespaced = found.namespaced
        }
        if (!s.active) activate.push(s)
      } else if (s.active || first) {
        deactivate.push(s)
      }
    }

    for (const s of deactivate) {
      const wasActive = s.active
      s.active = false
      s.feed = undefined
      // The resource is gone (its CRD deleted): so are its objects, for the listeners too.
      for (const old of s.clear()) s.notify('deleted', old, old)
      this.log?.info({ rule: s.id, resource: s.describe() }, wasActive ? `rule ${s.id} inactive: ${s.spec.resource.kind} no longer installed` : `rule ${s.id} inactive: ${s.spec.resource.kind} not installed`)
    }
    // Feeds left without an active spec stop (all specs of a feed share the resource, so they go together).
    for (const [key, f] of this.feeds) {
      if (f.specs.some((s) => s.active)) continue
      this.feeds.delete(key)
      await f.stop()
    }
    const byFeed = new Map<string, SpecState[]>()
    for (const s of activate) (byFeed.get(s.feedKey) ?? byFeed.set(s.feedKey, []).get(s.feedKey)!).push(s)
    for (const [key, specs] of byFeed) {
      if (this.stopped) return
      for (const s of specs) {
        s.clear()
        s.active = true
        this.log?.info({ rule: s.id, resource: s.describe(), labelSelector: s.spec.labelSelector }, `rule ${s.id} active: watching ${s.spec.resource.kind}`)
      }
      const feed = new Feed(specs, this.shared)
      for (const s of specs) s.feed = feed
      this.feeds.set(key, feed)
      feed.start()
    }
    this.discoveredOnce = this.discoveredOnce || [...this.specs.values()].every((s) => s.discovered)
    this.changed()
  }

  private async discoverGroupVersion(r: ResourceRef): Promise<Discovered> {
    const path = groupVersionPath(r)
    this.counters.discoveryRequests++
    try {
      const list = await getJson<{ resources?: Array<{ name?: string; namespaced?: boolean }> }>(this.kubeConfig, path, {}, { timeoutMs: this.requestTimeoutMs, signal: this.stopController.signal })
      const resources = new Map<string, { namespaced: boolean }>()
      for (const res of list.resources ?? []) {
        // Subresources (`jobs/status`) are listed alongside; only whole resources count.
        if (!res.name || res.name.includes('/')) continue
        resources.set(res.name, { namespaced: res.namespaced ?? true })
      }
      return { state: 'served', resources }
    } catch (err) {
      if (statusOf(err) === 404) return { state: 'absent' }
      const message = toKubeApiError(err, 'GET', path, { timeoutMs: this.requestTimeoutMs }).message
      if (!this.stopped) this.log?.warn({ path, err: message }, `discovery of ${path} failed`)
      return { state: 'error', error: `discovery: ${message}` }
    }
  }
}
