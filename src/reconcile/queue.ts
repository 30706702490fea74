/**
 * A rate-limited work queue in the manner of client-go's workqueue: keys (e.g. `namespace/pvc`), not
 * events, are queued, so a burst of changes to one PVC costs one reconcile.
 *
 *  - Dedupe: a key waiting in the queue is there once, however often it is added.
 *  - A key is never processed by two workers at once. Added while it is being processed, it is
 *    queued again once the running handler finishes (the handler may have read the old state).
 *  - `addAfter(key, ms)`: the key is added when the delay passes; of several pending delays for a
 *    key the earliest wins.
 *  - Per-key exponential backoff: `retry(key)` adds it after base·2^(n-1) (500 ms, 1 s, 2 s, ...,
 *    capped at 5 min), jittered; `forget(key)` resets its count. A handler that throws is retried
 *    this way; one that resolves is forgotten — unless it called retry(key) itself during the run.
 *  - `workers` handlers run at most at once.
 *  - `drain()`: stop accepting keys (adds, retries, delays), finish what is queued and running.
 *    `stop()`: stop accepting keys, drop what is queued and delayed, wait for the running handlers.
 *  - Time is injectable (`timers`, `random`) so tests run on a fake clock.
 */
import type { KubeLogger } from '../kube/cluster-client.js'

export interface QueueTimers {
  setTimeout(fn: () => void, ms: number): unknown
  clearTimeout(handle: unknown): void
  /** Milliseconds, for ordering delays (default Date.now). */
  now?(): number
}

export interface WorkQueueOptions<K extends string> {
  /** Processes one key. Throwing (or rejecting) retries it with backoff. */
  handler: (key: K) => Promise<void> | void
  /** Handlers running at most at once (default 4). */
  workers?: number
  /** First retry delay (default 500 ms). */
  baseDelayMs?: number
  /** Longest retry delay (default 300 000 ms). */
  maxDelayMs?: number
  /** Each retry delay is multiplied by a factor in [1 - jitter, 1 + jitter] (default 0.2), then capped. */
  jitter?: number
  /** Default the global setTimeout/clearTimeout (timers are unref'd: the queue never keeps the process alive). */
  timers?: QueueTimers
  /** Default Math.random. */
  random?: () => number
  logger?: KubeLogger
}

export interface WorkQueueStats {
  /** Keys waiting to be processed. */
  depth: number
  /** Handlers running. */
  processing: number
  /** Keys waiting for a delay (addAfter, retry) to pass. */
  delayed: number
  /** Keys with a non-zero retry count. */
  backingOff: number
  /** Retries scheduled since the start. */
  retries: number
  /** Handler runs finished (either way) since the start. */
  processed: number
  /** Handler runs that threw since the start. */
  failures: number
}

const defaultTimers: QueueTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms)
    t.unref?.()
    return t
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
}

export class WorkQueue<K extends string> {
  private readonly handler: (key: K) => Promise<void> | void
  private readonly workers: number
  private readonly baseDelayMs: number
  private readonly maxDelayMs: number
  private readonly jitter: number
  private readonly timers: QueueTimers
  private readonly random: () => number
  private readonly log: KubeLogger | undefined

  /** FIFO of keys ready to run; `dirty` holds the keys that are to run (queued, or re-added while processing). */
  private readonly queue: K[] = []
  private readonly dirty = new Set<K>()
  private readonly processing = new Set<K>()
  private readonly delayed = new Map<K, { handle: unknown; dueAt: number; seq: number }>()
  private readonly failuresOf = new Map<K, number>()
  /** Keys whose running handler called retry(key): no automatic forget/retry when it ends. */
  private readonly retriedInRun = new Set<K>()
  private readonly running = new Set<Promise<void>>()
  private idleWaiters: Array<() => void> = []
  private accepting = true
  private dropQueued = false
  private seq = 0
  private counters = { retries: 0, processed: 0, failures: 0 }

  constructor(opts: WorkQueueOptions<K>) {
    this.handler = opts.handler
    this.workers = Math.max(1, Math.floor(opts.workers ?? 4))
    this.baseDelayMs = opts.baseDelayMs ?? 500
    this.maxDelayMs = opts.maxDelayMs ?? 300_000
    this.jitter = Math.min(1, Math.max(0, opts.jitter ?? 0.2))
    this.timers = opts.timers ?? defaultTimers
    this.random = opts.random ?? Math.random
    this.log = opts.logger
  }

  /** Whether add() still takes keys (false after drain() or stop()). */
  get accepts(): boolean {
    return this.accepting
  }

  /** Queue `key` (once; again after the run when it is being processed). */
  add(key: K): void {
    if (!this.accepting) return
    this.enqueue(key)
  }

  /** Add `key` after `ms` (≤ 0: now). A pending earlier delay for the key is kept, a later one replaced. */
  addAfter(key: K, ms: number): void {
    if (!this.accepting) return
    if (!(ms > 0)) return this.enqueue(key)
    const dueAt = (this.timers.now?.() ?? Date.now()) + ms
    const pending = this.delayed.get(key)
    if (pending && pending.dueAt <= dueAt) return
    if (pending) this.timers.clearTimeout(pending.handle)
    const seq = ++this.seq
    const handle = this.timers.setTimeout(() => {
      if (this.delayed.get(key)?.seq !== seq) return
      this.delayed.delete(key)
      if (this.accepting) this.enqueue(key)
    }, ms)
    this.delayed.set(key, { handle, dueAt, seq })
  }

  /**
   * Add `key` after its backoff delay and count the failure: base·2^(n-1) for the n-th retry since
   * the last forget(key), jittered, capped. Returns the delay (0 when the queue no longer accepts).
   */
  retry(key: K): number {
    if (!this.accepting) return 0
    const n = (this.failuresOf.get(key) ?? 0) + 1
    this.failuresOf.set(key, n)
    this.counters.retries++
    if (this.processing.has(key)) this.retriedInRun.add(key)
    const delay = this.backoff(n)
    this.addAfter(key, delay)
    return delay
  }

  /** The retry delay of the n-th consecutive failure. */
  backoff(n: number): number {
    const raw = this.baseDelayMs * 2 ** Math.min(40, Math.max(0, n - 1))
    const jittered = Math.min(this.maxDelayMs, raw) * (1 - this.jitter + 2 * this.jitter * this.random())
    return Math.round(Math.min(this.maxDelayMs, jittered))
  }

  /** Reset `key`'s retry count (it succeeded). A pending delay stays. */
  forget(key: K): void {
    this.failuresOf.delete(key)
  }

  /** Retries of `key` since it was last forgotten. */
  numRetries(key: K): number {
    return this.failuresOf.get(key) ?? 0
  }

  stats(): WorkQueueStats {
    return {
      depth: this.queue.length,
      processing: this.processing.size,
      delayed: this.delayed.size,
      backingOff: this.failuresOf.size,
      ...this.counters,
    }
  }

  /** Resolves when nothing is queued or running (delayed keys do not count). */
  whenIdle(): Promise<void> {
    if (this.isIdle()) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  /** Stop accepting keys (delays are cancelled); process what is queued; resolves when done. */
  async drain(): Promise<void> {
    this.accepting = false
    this.cancelDelays()
    await this.whenIdle()
  }

  /** Stop accepting keys, drop the queued and delayed ones; resolves when the running handlers have finished. */
  async stop(): Promise<void> {
    this.accepting = false
    this.dropQueued = true
    this.cancelDelays()
    for (const k of this.queue) this.dirty.delete(k)
    this.queue.length = 0
    // Keys re-added during a run are not run again.
    for (const k of this.processing) this.dirty.delete(k)
    await Promise.all([...this.running])
    this.notifyIdle()
  }

  // -- internals -----------------------------------------------------------------------------

  private enqueue(key: K): void {
    if (this.dirty.has(key)) return
    this.dirty.add(key)
    // Being processed: queued again when that run ends.
    if (this.processing.has(key)) return
    this.queue.push(key)
    this.pump()
  }

  private pump(): void {
    while (this.processing.size < this.workers && this.queue.length > 0 && !this.dropQueued) {
      const key = this.queue.shift()!
      this.dirty.delete(key)
      this.processing.add(key)
      const run = this.run(key)
      this.running.add(run)
      void run.finally(() => this.running.delete(run))
    }
    this.notifyIdle()
  }

  private async run(key: K): Promise<void> {
    let error: unknown
    let failed = false
    try {
      await this.handler(key)
    } catch (err) {
      failed = true
      error = err
    }
    this.processing.delete(key)
    this.counters.processed++
    const handled = this.retriedInRun.delete(key)
    if (failed) {
      this.counters.failures++
      const retryInMs = handled || !this.accepting ? undefined : this.retry(key)
      const message = error instanceof Error ? error.message : String(error)
      this.log?.warn({ key, err: message, attempt: this.numRetries(key), retryInMs }, `processing ${key} failed`)
    } else if (!handled) {
      this.forget(key)
    }
    if (this.dirty.has(key) && !this.dropQueued) this.queue.push(key)
    this.pump()
  }

  private cancelDelays(): void {
    for (const d of this.delayed.values()) this.timers.clearTimeout(d.handle)
    this.delayed.clear()
  }

  private isIdle(): boolean {
    return this.processing.size === 0 && (this.queue.length === 0 || this.dropQueued)
  }

  private notifyIdle(): void {
    if (!this.isIdle() || this.idleWaiters.length === 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const w of waiters) w()
  }
}
