/**
 * One S3 request per key at a time, and a short memory of clear answers.
 *
 * The apiserver retries, both webhooks (mutate, then validate) ask about the same PVC, and a
 * `kubectl apply` of many PVCs arrives at once: concurrent probes of a key share one underlying
 * probe, and an `exists`/`none`/`unreadable` answer is reused for the TTL. `unknown` is never kept,
 * so the next admission attempt really asks again. In restic mode the answer depends on what was
 * asked (restore-as-of, previous), so that is part of the cache key.
 */
import type { BackupStore, LockResult, ProbeOptions, ProbeResult } from './types.js'

export interface CachedStoreOptions {
  /** How long an `exists`/`none` answer is reused; 0 disables the cache (single-flight stays). */
  ttlMs: number
  /** Clock, injectable for tests. */
  now?: () => number
  /** Bound on remembered keys; the oldest answers are dropped first. */
  maxEntries?: number
}

interface Entry {
  result: ProbeResult
  expiresAt: number
}

export class CachedStore implements BackupStore {
  private readonly ttlMs: number
  private readonly now: () => number
  private readonly maxEntries: number
  private readonly answers = new Map<string, Entry>()
  private readonly inFlight = new Map<string, Promise<ProbeResult>>()

  constructor(
    private readonly inner: BackupStore,
    opts: CachedStoreOptions,
  ) {
    this.ttlMs = Math.max(0, opts.ttlMs)
    this.now = opts.now ?? Date.now
    this.maxEntries = opts.maxEntries ?? 10_000
  }

  probe(key: string, options: ProbeOptions = {}): Promise<ProbeResult> {
    const id = `${key}\0${options.restoreAsOf ?? ''}\0${options.previous ?? ''}\0${options.readAll ? 'all' : ''}`
    const cached = this.answers.get(id)
    if (cached) {
      if (this.now() < cached.expiresAt) return Promise.resolve({ ...cached.result })
      this.answers.delete(id)
    }
    let shared = this.inFlight.get(id)
    if (!shared) {
      shared = this.probeOnce(id, key, options)
      this.inFlight.set(id, shared)
    }
    // Each caller gets its own copy: one caller editing its result must not change another's.
    return shared.then((r) => ({ ...r }))
  }

  get moverCa(): string | undefined {
    return this.inner.moverCa
  }

  location(key: string): string {
    return this.inner.location(key)
  }

  /** Locks come and go within seconds; they are never cached. */
  findRecentLock(key: string, maxAgeMs: number): Promise<LockResult> {
    if (!this.inner.findRecentLock) return Promise.resolve({ state: 'unknown', location: this.inner.location(key), kind: 'other', reason: 'this store cannot list restic locks' })
    return this.inner.findRecentLock(key, maxAgeMs)
  }

  resticRepository(key: string): string {
    return this.inner.resticRepository(key)
  }

  close(): void {
    this.answers.clear()
    this.inner.close()
  }

  private async probeOnce(id: string, key: string, options: ProbeOptions): Promise<ProbeResult> {
    let result: ProbeResult
    try {
      result = await this.inner.probe(key, options)
    } catch (err) {
      // The contract says stores never throw; if one does, it is still only "unknown".
      result = { state: 'unknown', location: this.safeLocation(key), kind: 'other', reason: `backup probe failed: ${String(err)}` }
    }
    if (result.state !== 'unknown' && this.ttlMs > 0) {
      if (this.answers.size >= this.maxEntries) this.evict()
      this.answers.set(id, { result, expiresAt: this.now() + this.ttlMs })
    }
    // Removed only once the answer is stored, so no caller slips between the two and probes again.
    this.inFlight.delete(id)
    return result
  }

  private evict(): void {
    const now = this.now()
    for (const [k, e] of this.answers) if (e.expiresAt <= now) this.answers.delete(k)
    // Map iteration is insertion order: drop the oldest until there is room.
    for (const k of this.answers.keys()) {
      if (this.answers.size < this.maxEntries) break
      this.answers.delete(k)
    }
  }

  private safeLocation(key: string): string {
    try {
      return this.inner.location(key)
    } catch {
      return key
    }
  }
}
