/**
 * Leader election with a coordination.k8s.io/v1 Lease, as client-go's tools/leaderelection (and so
 * controller-runtime) does it, so that of several replicas one runs the work that must not be
 * doubled (the backup-source reconciler, its orphan sweep, the readiness refresh) while every
 * replica keeps serving the webhooks.
 *
 * The Lease `spec`: holderIdentity, leaseDurationSeconds, acquireTime, renewTime (MicroTimes),
 * leaseTransitions. The algorithm (client-go tryAcquireOrRenew):
 *  - GET the Lease; absent: create it holding it (a 409 AlreadyExists: another replica was first).
 *  - Whether the holder's lease has expired is judged by the LOCAL clock: when this replica last saw
 *    the record change (observedTime) plus the record's leaseDurationSeconds — never by comparing
 *    renewTime with our clock, so clock skew between nodes does not matter (only their rates).
 *  - Another holder whose lease has not expired: wait (try again every retryPeriod, jittered).
 *  - Expired, released (holderIdentity empty), or ours: PUT the new record carrying the
 *    resourceVersion that was read. A 409 means someone else wrote first: not leader. Taking it from
 *    another holder counts leaseTransitions + 1 and sets acquireTime; renewing keeps both.
 *  - The leader renews every retryPeriod (a PUT on the last version it wrote; if that conflicts, the
 *    GET path). When no renewal has succeeded for renewDeadline, or another holder is seen, it stops
 *    leading at once: renewDeadline < leaseDuration, so the work has stopped before any other
 *    replica can consider the lease expired (its observation of our last renewal is no earlier than
 *    the request we started, and it waits a whole leaseDuration after it).
 *  - stop(): the work is stopped first (onStoppedLeading is awaited), then the Lease is released —
 *    holderIdentity cleared, leaseDurationSeconds 1, as client-go's ReleaseOnCancel — so another
 *    replica takes over at its next retry instead of after a whole lease duration.
 *
 * After losing leadership the elector goes back to acquiring: the callbacks may run many times.
 */
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { HttpMethod, type KubeConfig } from '@kubernetes/client-node'
import type { Logger } from 'pino'
import { withDeadline } from './deadline.js'
import { KubeApiError, toKubeApiError } from './errors.js'
import { send } from './get-json.js'

export const LEASE_API_VERSION = 'coordination.k8s.io/v1'

/** The fields of a Lease's spec that leader election uses. */
export interface LeaseRecord {
  holderIdentity?: string
  leaseDurationSeconds?: number
  /** MicroTime, e.g. 2025-01-02T03:04:05.678901Z */
  acquireTime?: string
  renewTime?: string
  leaseTransitions?: number
}

interface LeaseObject {
  apiVersion?: string
  kind?: string
  metadata: { name: string; namespace?: string; resourceVersion?: string; [key: string]: unknown }
  spec?: LeaseRecord & Record<string, unknown>
}

export interface LeaderElectionOptions {
  kubeConfig: KubeConfig
  /** The Lease: its namespace (the service's own) and name. */
  namespace: string
  name: string
  /** This replica's name in holderIdentity; unique among the replicas. */
  identity: string
  leaseDurationMs: number
  renewDeadlineMs: number
  retryPeriodMs: number
  /** Deadline of each request (also capped by what is left of renewDeadline while leading). */
  requestTimeoutMs: number
  /** Recorded by the apiserver in managedFields (default smart-restore). */
  fieldManager?: string
  logger: Logger
  /** This replica now holds the Lease: start the work. Awaited before renewing starts. */
  onStartedLeading: () => void | Promise<void>
  /**
   * This replica no longer holds the Lease (renewals failed for renewDeadline, another holder was
   * seen) or is stopping: stop the work. Awaited before the elector acquires again (or releases).
   */
  onStoppedLeading: () => void | Promise<void>
  /** The observed holder changed (undefined: nobody holds it). */
  onNewLeader?: (holder: string | undefined) => void
  /** Retries while not leading wait retryPeriod × [1, 1 + jitter) (default 0.2). */
  jitter?: number
  /** Clock (default Date.now). */
  now?: () => number
}

export interface LeaderStatus {
  identity: string
  /** `namespace/name` of the Lease. */
  lease: string
  leading: boolean
  /** The holder last seen in the Lease (this replica's identity when leading). */
  holder?: string
  /** The holder's lease has run out by our clock (it stopped renewing); someone takes it at the next retry. */
  expired?: boolean
}

/** client-go's default identity is `hostname_uuid`; in a pod POD_NAME (the downward API) is used alone. */
export function defaultIdentity(env: NodeJS.ProcessEnv = process.env): string {
  const pod = env.POD_NAME?.trim()
  if (pod) return pod
  return `${hostname()}_${randomBytes(4).toString('hex')}`
}

/** A MicroTime as the apiserver wants it: RFC 3339 with exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z')
}

const recordKey = (r: LeaseRecord | undefined) =>
  JSON.stringify([r?.holderIdentity ?? '', r?.leaseDurationSeconds ?? 0, r?.acquireTime ?? '', r?.renewTime ?? '', r?.leaseTransitions ?? 0])

export class LeaderElector {
  private readonly path: string
  private readonly describe: string
  private readonly now: () => number
  private readonly jitter: number

  /** The record last read or written, and when (local clock) it was first seen as it is. */
  private observed: LeaseRecord | undefined
  private observedTimeMs = 0
  /** The Lease object last read or written (its resourceVersion is the precondition of the next write). */
  private lastObject: LeaseObject | undefined
  /** Start of the last successful acquire/renew request. */
  private lastRenewMs = 0
  private leading = false
  private reportedLeader: string | undefined = undefined
  private reported = false
  /** A lease request failed (other than a 409) since the last success: later failures log at debug. */
  private failing = false

  private running: Promise<void> | undefined
  private stopping = false
  private readonly abort = new AbortController()
  private wake: (() => void) | undefined

  constructor(private readonly opts: LeaderElectionOptions) {
    if (!(opts.renewDeadlineMs < opts.leaseDurationMs)) throw new Error('leader election: renewDeadlineMs must be less than leaseDurationMs')
    if (!(opts.retryPeriodMs < opts.renewDeadlineMs)) throw new Error('leader election: retryPeriodMs must be less than renewDeadlineMs')
    const enc = encodeURIComponent
    this.path = `/apis/${LEASE_API_VERSION}/namespaces/${enc(opts.namespace)}/leases/${enc(opts.name)}`
    this.describe = `Lease ${opts.namespace}/${opts.name}`
    this.now = opts.now ?? Date.now
    this.jitter = opts.jitter ?? 0.2
  }

  get identity(): string {
    return this.opts.identity
  }

  /** Whether this replica holds the Lease (and is doing the leader's work). */
  isLeader(): boolean {
    return this.leading
  }

  status(): LeaderStatus {
    const holder = this.leading ? this.opts.identity : this.observed?.holderIdentity || undefined
    const s: LeaderStatus = { identity: this.opts.identity, lease: `${this.opts.namespace}/${this.opts.name}`, leading: this.leading }
    if (holder !== undefined) s.holder = holder
    if (!this.leading && holder !== undefined && !this.leaseValid(this.now())) s.expired = true
    return s
  }

  /** Start campaigning (returns at once). */
  start(): void {
    if (this.running || this.stopping) return
    this.opts.logger.info({ lease: this.describe, identity: this.opts.identity }, 'leader election: trying to acquire the lease')
    this.running = this.run().catch((err: unknown) => this.opts.logger.error({ err }, 'leader election loop failed'))
  }

  /** Stop campaigning; when leading, stop the work (onStoppedLeading), then release the Lease. */
  async stop(): Promise<void> {
    this.stopping = true
    this.abort.abort()
    this.wake?.()
    await this.running
  }

  // -------------------------------------------------------------------------------------------

  private async run(): Promise<void> {
    const { logger, retryPeriodMs, renewDeadlineMs } = this.opts
    while (!this.stopping) {
      // Acquire: try now, then every retryPeriod (jittered, so replicas do not hit the API together).
      if (!(await this.tryAcquireOrRenew())) {
        await this.sleep(retryPeriodMs * (1 + Math.random() * this.jitter))
        continue
      }
      this.leading = true
      this.report()
      logger.info({ lease: this.describe, identity: this.opts.identity, leaseTransitions: this.observed?.leaseTransitions }, 'leader election: this replica leads')
      await this.callback('onStartedLeading')
      // Renew every retryPeriod until stopping, or until it cannot be renewed within renewDeadline:
      // then the work stops right at the deadline, not a retry period later.
      let lost: string | undefined
      while (!this.stopping) {
        const remaining = this.lastRenewMs + renewDeadlineMs - this.now()
        if (remaining > 0) await this.sleep(Math.min(retryPeriodMs, remaining))
        if (this.stopping) break
        const since = this.now() - this.lastRenewMs
        if (since >= renewDeadlineMs) {
          lost = `not renewed for ${since} ms (renewDeadline ${renewDeadlineMs} ms)`
          break
        }
        if (await this.tryAcquireOrRenew()) continue
        if (this.stopping) break
        const holder = this.observed?.holderIdentity
        if (holder && holder !== this.opts.identity) {
          lost = `the lease is held by ${holder} now`
          break
        }
      }
      this.leading = false
      if (lost) logger.warn({ lease: this.describe, identity: this.opts.identity, why: lost }, 'leader election: leadership lost; stopping the leader\'s work')
      await this.callback('onStoppedLeading')
      this.report()
      if (this.stopping) {
        // Only a lease we still hold is ours to release (a lost one may be someone else's now).
        if (!lost) await this.release()
        return
      }
    }
  }

  private async callback(which: 'onStartedLeading' | 'onStoppedLeading'): Promise<void> {
    try {
      await this.opts[which]()
    } catch (err) {
      this.opts.logger.error({ err, callback: which }, 'leader election callback failed')
    }
  }

  /** Tell onNewLeader when the observed holder changed. */
  private report(): void {
    const holder = this.leading ? this.opts.identity : this.observed?.holderIdentity || undefined
    if (this.reported && holder === this.reportedLeader) return
    this.reported = true
    this.reportedLeader = holder
    if (holder && holder !== this.opts.identity) this.opts.logger.info({ lease: this.describe, holder }, 'leader election: another replica leads')
    this.opts.onNewLeader?.(holder)
  }

  /** Sleep, woken early by stop(). */
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve()
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      timer.unref?.()
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }

  /** The observed record's lease has not run out by our clock since we first saw it as it is. */
  private leaseValid(now: number): boolean {
    return this.observedTimeMs + (this.observed?.leaseDurationSeconds ?? 0) * 1000 > now
  }

  private setObserved(record: LeaseRecord, object: LeaseObject | undefined, at: number): void {
    this.observed = { ...record }
    this.observedTimeMs = at
    this.lastObject = object
    this.failing = false
  }

  /**
   * One round of client-go's tryAcquireOrRenew. True: this replica holds the Lease now (acquired or
   * renewed). Failures are false: a 409 (another replica wrote first) at debug, an API error at warn
   * once per outage (then debug: a follower retries every retryPeriod).
   */
  private async tryAcquireOrRenew(): Promise<boolean> {
    const start = this.now()
    const identity = this.opts.identity
    const desired: LeaseRecord = {
      holderIdentity: identity,
      leaseDurationSeconds: Math.ceil(this.opts.leaseDurationMs / 1000),
      acquireTime: microTime(start),
      renewTime: microTime(start),
      leaseTransitions: 0,
    }
    const isLeader = () => this.observed?.holderIdentity === identity
    try {
      // 1. Fast path: the leader updates the version it wrote last.
      if (this.leading && isLeader() && this.leaseValid(start) && this.lastObject) {
        const record = { ...desired, acquireTime: this.observed?.acquireTime, leaseTransitions: this.observed?.leaseTransitions ?? 0 }
        try {
          const written = await this.put(this.lastObject, record)
          this.setObserved(record, written, this.now())
          this.lastRenewMs = start
          return true
        } catch (err) {
          if (this.stopping) return false
          this.opts.logger.debug({ lease: this.describe, err: (err as Error).message }, 'leader election: renewing the last written version failed; reading the lease')
        }
      }
      // 2. Read it, or create it.
      let current: LeaseObject
      try {
        current = await this.request<LeaseObject>('read', { method: HttpMethod.GET, path: this.path })
      } catch (err) {
        if (!(err instanceof KubeApiError && err.kind === 'not-found')) throw err
        const body: LeaseObject = { apiVersion: LEASE_API_VERSION, kind: 'Lease', metadata: { name: this.opts.name, namespace: this.opts.namespace }, spec: { ...desired } }
        const created = await this.request<LeaseObject>('create', { method: HttpMethod.POST, path: this.path.replace(/\/[^/]+$/, ''), query: this.fieldManagerQuery(), body })
        this.setObserved(desired, created, this.now())
        this.lastRenewMs = start
        this.opts.logger.info({ lease: this.describe, identity }, 'leader election: lease created')
        return true
      }
      // 3. What is there: a change restarts our count of its duration.
      const record: LeaseRecord = current.spec ?? {}
      if (recordKey(record) !== recordKey(this.observed)) this.setObserved(record, current, this.now())
      else this.lastObject = current
      this.failing = false
      if (record.holderIdentity && record.holderIdentity !== identity && this.leaseValid(start)) {
        if (!this.leading) this.report()
        return false
      }
      // 4. Take it (expired, released, or ours already) with the version read.
      const next: LeaseRecord = isLeader()
        ? { ...desired, acquireTime: record.acquireTime ?? desired.acquireTime, leaseTransitions: record.leaseTransitions ?? 0 }
        : { ...desired, leaseTransitions: (record.leaseTransitions ?? 0) + 1 }
      const written = await this.put(current, next)
      if (!isLeader()) this.opts.logger.info({ lease: this.describe, identity, previous: record.holderIdentity || undefined, leaseTransitions: next.leaseTransitions }, 'leader election: lease taken over')
      this.setObserved(next, written, this.now())
      this.lastRenewMs = start
      return true
    } catch (err) {
      if (this.stopping) return false
      const e = err as KubeApiError
      if (e.kind === 'conflict') this.opts.logger.debug({ lease: this.describe, err: e.message }, 'leader election: another replica wrote the lease first')
      else {
        // Once per outage at warn (a follower retries every retryPeriod), then at debug.
        this.opts.logger[this.failing ? 'debug' : 'warn']({ lease: this.describe, err: e.message, kind: e.kind, leading: this.leading }, 'leader election: lease request failed')
        this.failing = true
      }
      return false
    }
  }

  private fieldManagerQuery(): Record<string, string> {
    return { fieldManager: this.opts.fieldManager ?? 'smart-restore' }
  }

  /** PUT `base` with `record` as its spec, under base's resourceVersion (409: someone wrote since). */
  private put(base: LeaseObject, record: LeaseRecord, signal: AbortSignal | null = this.abort.signal): Promise<LeaseObject> {
    const metadata: LeaseObject['metadata'] = { ...base.metadata }
    delete metadata.managedFields
    const spec: Record<string, unknown> = { ...record }
    for (const k of Object.keys(spec)) if (spec[k] === undefined) delete spec[k]
    const body: LeaseObject = { ...base, apiVersion: LEASE_API_VERSION, kind: 'Lease', metadata, spec }
    return this.request<LeaseObject>('update', { method: HttpMethod.PUT, path: this.path, query: this.fieldManagerQuery(), body }, signal)
  }

  /**
   * One request; its deadline is requestTimeoutMs, and while leading no later than renewDeadline
   * after the last renewal. Aborted by stop() unless `signal` is null (the release).
   */
  private async request<T>(action: string, req: Parameters<typeof send>[1], signal: AbortSignal | null = this.abort.signal): Promise<T> {
    let ms = this.opts.requestTimeoutMs
    if (this.leading) ms = Math.min(ms, Math.max(1, this.lastRenewMs + this.opts.renewDeadlineMs - this.now()))
    try {
      return await withDeadline(ms, async (o) => (await send(this.opts.kubeConfig, req, o)).body as T, signal ?? undefined)
    } catch (err) {
      throw toKubeApiError(err, action, this.describe, { timeoutMs: ms })
    }
  }

  /**
   * Give the Lease up (ReleaseOnCancel): no holder, duration 1 s, so the next replica takes it at
   * its next retry. Not under the stop signal (that has fired). A 409 (a renewal that the stop cut
   * short may have been written after all): read it once more, release it if it is still ours.
   */
  private async release(): Promise<void> {
    if (this.observed?.holderIdentity !== this.opts.identity || !this.lastObject) return
    const at = this.now()
    const record: LeaseRecord = { leaseDurationSeconds: 1, acquireTime: microTime(at), renewTime: microTime(at), leaseTransitions: this.observed.leaseTransitions ?? 0 }
    let base = this.lastObject
    for (let round = 1; round <= 2; round++) {
      try {
        const written = await this.put(base, record, null)
        this.setObserved(record, written, this.now())
        this.opts.logger.info({ lease: this.describe, identity: this.opts.identity }, 'leader election: lease released')
        return
      } catch (err) {
        if (round === 1 && err instanceof KubeApiError && err.kind === 'conflict') {
          try {
            const current = await this.request<LeaseObject>('read', { method: HttpMethod.GET, path: this.path }, null)
            if (current.spec?.holderIdentity !== this.opts.identity) return // someone else's now: nothing to release
            base = current
            continue
          } catch {
            /* reported below */
          }
        }
        this.opts.logger.warn({ lease: this.describe, err: (err as Error).message }, 'leader election: releasing the lease failed; another replica takes it once it expires')
        return
      }
    }
  }
}
