/**
 * core/v1 Events on PVCs, best effort and deduplicated, so a failure that persists tells the user
 * once (`kubectl describe pvc`), not once per reconcile.
 *
 *  - In memory: the same (PVC uid, type, reason, message) is sent at most once per window (default
 *    10 min). A failed send is tried again after a minute at the earliest, not on every call.
 *  - Across replicas: the Event's name is deterministic, `<pvc>.<hash(uid, type, reason, message)>`,
 *    so when a second replica (or this one after a restart) creates the same Event the apiserver
 *    answers 409 AlreadyExists: that is success, nothing is sent twice.
 *  - Recurrence: on a 409 the existing Event is read; when its lastTimestamp is older than the window,
 *    the condition is still there a window later, and count and lastTimestamp are bumped (a merge
 *    patch guarded by its resourceVersion). Within the window another replica has just reported it,
 *    and nothing more is written — two replicas seeing the same thing at once do not count it twice.
 *    The bump also keeps a long-lasting condition's Event alive past the apiserver's event TTL.
 *  - Never throws: Events API failures (403 without RBAC for events, 5xx, timeouts) are logged.
 *
 * Fields, as the apiserver validates core/v1 Events: involvedObject (the PVC, with uid), reason
 * (≤128), message (≤1024 bytes, cut with "…"), type, source.component and reportingComponent
 * `smart-restore`, reportingInstance (the pod name: HOSTNAME), firstTimestamp/lastTimestamp (RFC 3339
 * seconds) and count like client-go's recorder, and eventTime, which makes it a "new" Event: then the
 * apiserver requires action and reportingInstance, and eventTime must be a MicroTime with exactly six
 * fractional digits (JavaScript's toISOString has three, which the apiserver refuses to decode).
 */
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import type { EventSpec } from '../reconcile/types.js'
import type { ApplyObject, ClusterClient, KubeLogger } from './cluster-client.js'
import { KubeApiError } from './errors.js'

/** The PVC an Event is about (a PvcState fits). */
export interface EventSubject {
  namespace: string
  name: string
  uid: string
}

export type RecordOutcome =
  /** Created. */
  | 'sent'
  /** Sent (or being sent) by this recorder within the window: no request. */
  | 'deduplicated'
  /** Already there, reported within the window (another replica): nothing written. */
  | 'exists'
  /** Already there from an earlier window: count and lastTimestamp bumped. */
  | 'bumped'
  /** The Events API failed (logged). */
  | 'failed'

export interface EventRecorderOptions {
  /** The Kubernetes access (only createObject, readObject and mergePatchObject are used). */
  client: Pick<ClusterClient, 'createObject' | 'readObject' | 'mergePatchObject'>
  /** source.component and reportingComponent (default `smart-restore`). */
  component?: string
  /** reportingInstance (default: env HOSTNAME, the pod name; else the host name). */
  instance?: string
  /** action, for Events that do not name one (default `Reconcile`). */
  defaultAction?: string
  /** The same Event is not sent again within this window (default 600 000 ms). */
  windowMs?: number
  /** A failed send is not tried again before this (default 60 000 ms, at most the window). */
  failureBackoffMs?: number
  /** Events remembered at most (oldest forgotten first; default 10 000). */
  maxRemembered?: number
  /** Clock, ms since the epoch (default Date.now). */
  now?: () => number
  logger?: KubeLogger
}

export interface EventRecorderStats {
  sent: number
  deduplicated: number
  exists: number
  bumped: number
  failed: number
}

export const MAX_EVENT_MESSAGE_BYTES = 1024
const MAX_REASON = 128
const MAX_INSTANCE = 128
const MAX_NAME = 253

/** RFC 3339 with whole seconds (metav1.Time). */
export function kubeTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** RFC 3339 with exactly six fractional digits (metav1.MicroTime). */
export function kubeMicroTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, (_, millis: string) => `.${millis}000Z`)
}

/** `text` cut to at most `maxBytes` UTF-8 bytes (never inside a character), ending in "…" when cut. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text
  const ellipsis = '…'
  let budget = maxBytes - Buffer.byteLength(ellipsis, 'utf8')
  let out = ''
  for (const ch of text) {
    const n = Buffer.byteLength(ch, 'utf8')
    if (n > budget) break
    out += ch
    budget -= n
  }
  return out + ellipsis
}

/**
 * The deterministic name of an Event: `<pvc>.<16 hex digits of sha256(uid, type, reason, message)>`,
 * within 253 characters. The same report of the same PVC has the same name on every replica.
 */
export function eventName(subject: EventSubject, event: EventSpec): string {
  const hash = createHash('sha256').update([subject.uid, event.type, event.reason, event.message].join('\u0000')).digest('hex').slice(0, 16)
  const prefix = subject.name.slice(0, MAX_NAME - hash.length - 1).replace(/[.-]+$/, '')
  return `${prefix}.${hash}`
}

interface Remembered {
  /** When it was sent (or found), or when the send failed. */
  at: number
  failed: boolean
}

export class EventRecorder {
  private readonly client: EventRecorderOptions['client']
  private readonly component: string
  private readonly instance: string
  private readonly defaultAction: string
  private readonly windowMs: number
  private readonly failureBackoffMs: number
  private readonly maxRemembered: number
  private readonly now: () => number
  private readonly log: KubeLogger | undefined
  private readonly remembered = new Map<string, Remembered>()
  private readonly inFlight = new Map<string, Promise<RecordOutcome>>()
  private readonly counters: EventRecorderStats = { sent: 0, deduplicated: 0, exists: 0, bumped: 0, failed: 0 }

  constructor(opts: EventRecorderOptions) {
    this.client = opts.client
    this.component = opts.component ?? 'smart-restore'
    this.instance = (opts.instance || process.env.HOSTNAME || hostname() || this.component).slice(0, MAX_INSTANCE)
    this.defaultAction = opts.defaultAction ?? 'Reconcile'
    this.windowMs = opts.windowMs ?? 600_000
    this.failureBackoffMs = Math.min(opts.failureBackoffMs ?? 60_000, this.windowMs)
    this.maxRemembered = opts.maxRemembered ?? 10_000
    this.now = opts.now ?? Date.now
    this.log = opts.logger
  }

  stats(): EventRecorderStats {
    return { ...this.counters }
  }

  /** Put `event` on the PVC, unless it was reported within the window. Never rejects. */
  record(subject: EventSubject, event: EventSpec & { action?: string }): Promise<RecordOutcome> {
    let key: string
    let body: ApplyObject
    try {
      const spec: EventSpec = { type: event.type, reason: event.reason.slice(0, MAX_REASON), message: truncateUtf8(event.message, MAX_EVENT_MESSAGE_BYTES) }
      const name = eventName(subject, spec)
      key = `${subject.namespace}/${name}`
      const seen = this.remembered.get(key)
      const now = this.now()
      if (this.inFlight.has(key) || (seen && now - seen.at < (seen.failed ? this.failureBackoffMs : this.windowMs))) {
        this.counters.deduplicated++
        return Promise.resolve('deduplicated')
      }
      body = this.eventObject(subject, spec, name, event.action ?? this.defaultAction, now)
    } catch (err) {
      // Nothing above should throw; an Event is never worth failing the caller for.
      this.log?.warn({ err: err instanceof Error ? err.message : String(err) }, 'could not build an Event')
      return Promise.resolve('failed')
    }
    const run = this.send(key, body).finally(() => this.inFlight.delete(key))
    this.inFlight.set(key, run)
    return run
  }

  private eventObject(subject: EventSubject, spec: EventSpec, name: string, action: string, now: number): ApplyObject {
    return {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace: subject.namespace },
      involvedObject: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: subject.namespace, name: subject.name, uid: subject.uid },
      type: spec.type,
      reason: spec.reason,
      message: spec.message,
      action: action.slice(0, 128),
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.instance,
      firstTimestamp: kubeTime(now),
      lastTimestamp: kubeTime(now),
      eventTime: kubeMicroTime(now),
      count: 1,
    }
  }

  private async send(key: string, body: ApplyObject): Promise<RecordOutcome> {
    const { name, namespace } = body.metadata as { name: string; namespace: string }
    const what = { event: key, reason: body.reason, type: body.type, pvc: `${namespace}/${(body.involvedObject as { name: string }).name}` }
    let outcome: RecordOutcome
    try {
      outcome = await this.createOrBump(body, namespace, name)
    } catch (err) {
      const e = err instanceof KubeApiError ? err : undefined
      this.log?.warn({ ...what, kind: e?.kind, status: e?.status, err: err instanceof Error ? err.message : String(err) }, 'could not write an Event (best effort; the reconcile goes on)')
      this.remember(key, true)
      this.counters.failed++
      return 'failed'
    }
    this.remember(key, false)
    this.counters[outcome]++
    this.log?.debug({ ...what, outcome }, 'event')
    return outcome
  }

  private async createOrBump(body: ApplyObject, namespace: string, name: string): Promise<RecordOutcome> {
    try {
      await this.client.createObject(body)
      return 'sent'
    } catch (err) {
      if (!(err instanceof KubeApiError && err.kind === 'conflict')) throw err
    }
    // AlreadyExists: the same report, from another replica or an earlier window.
    let existing
    try {
      existing = await this.client.readObject('v1', 'Event', namespace, name)
    } catch (err) {
      // Expired between our create and our read: it is reported again next window.
      if (err instanceof KubeApiError && err.kind === 'not-found') return 'exists'
      throw err
    }
    const last = Date.parse(String(existing.lastTimestamp ?? existing.eventTime ?? existing.firstTimestamp ?? ''))
    const now = this.now()
    if (Number.isFinite(last) && now - last < this.windowMs) return 'exists'
    const count = typeof existing.count === 'number' && existing.count > 0 ? existing.count : 1
    try {
      await this.client.mergePatchObject('v1', 'Event', namespace, name, { metadata: { resourceVersion: existing.metadata.resourceVersion }, count: count + 1, lastTimestamp: kubeTime(now) })
    } catch (err) {
      // Another replica bumped it first (or it expired): reported either way.
      if (err instanceof KubeApiError && (err.kind === 'conflict' || err.kind === 'not-found')) return 'exists'
      throw err
    }
    return 'bumped'
  }

  private remember(key: string, failed: boolean): void {
    const now = this.now()
    this.remembered.delete(key)
    this.remembered.set(key, { at: now, failed })
    if (this.remembered.size <= this.maxRemembered) return
    // Forget what is past its window, then the oldest, until within bounds (Map order is insertion order).
    for (const [k, r] of this.remembered) if (now - r.at >= this.windowMs) this.remembered.delete(k)
    for (const k of this.remembered.keys()) {
      if (this.remembered.size <= this.maxRemembered) break
      this.remembered.delete(k)
    }
  }
}
