/**
 * WorkQueue semantics on a fake clock: dedupe, re-add while processing, per-key backoff (growth,
 * cap, jitter, reset), the worker limit, delays, drain and stop.
 */
import t from 'tap'
import { WorkQueue, type QueueTimers, type WorkQueueOptions } from '../../src/reconcile/queue.js'
import { captureLogger } from '../helpers/capture-log.js'

/** Timers that only fire when the test advances the clock. */
class FakeClock implements QueueTimers {
  current = 0
  private timers: Array<{ id: number; at: number; fn: () => void }> = []
  private nextId = 1
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++
    this.timers.push({ id, at: this.current + ms, fn })
    return id
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle)
  }
  now(): number {
    return this.current
  }
  /** Delays (from now) of the pending timers, soonest first. */
  pending(): number[] {
    return this.timers.map((x) => x.at - this.current).sort((a, b) => a - b)
  }
  /** Move time forward, firing due timers in order and letting promises settle after each. */
  async advance(ms: number): Promise<void> {
    const end = this.current + ms
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0]
      if (!due) break
      this.timers = this.timers.filter((x) => x !== due)
      this.current = due.at
      due.fn()
      await settle()
    }
    this.current = end
    await settle()
  }
}

const settle = () => new Promise<void>((r) => setImmediate(r))

interface Gate {
  promise: Promise<void>
  open(): void
  fail(err: Error): void
}
function gate(): Gate {
  let open!: () => void
  let fail!: (e: Error) => void
  const promise = new Promise<void>((res, rej) => {
    open = res
    fail = rej
  })
  return { promise, open, fail }
}

/** A queue whose handler records calls and, per key, waits on a gate when one is set. */
function harness(opts: Partial<WorkQueueOptions<string>> = {}) {
  const clock = new FakeClock()
  const calls: string[] = []
  const gates = new Map<string, Gate[]>()
  let active = 0
  let maxActive = 0
  const failing = new Set<string>()
  const log = captureLogger('debug')
  const queue = new WorkQueue<string>({
    timers: clock,
    random: () => 0.5,
    logger: log.logger,
    handler: async (key) => {
      calls.push(key)
      active++
      maxActive = Math.max(maxActive, active)
      try {
        const g = gates.get(key)?.shift()
        if (g) await g.promise
        if (failing.has(key)) throw new Error(`${key} failed`)
      } finally {
        active--
      }
    },
    ...opts,
  })
  const block = (key: string) => {
    const g = gate()
    gates.set(key, [...(gates.get(key) ?? []), g])
    return g
  }
  return { clock, calls, queue, block, failing, log, maxActive: () => maxActive }
}

t.test('dedupe: a key waiting in the queue is there once, however often it is added', async (t) => {
  const h = harness({ workers: 1 })
  const x = h.block('x')
  h.queue.add('x')
  for (const k of ['a', 'a', 'b', 'a', 'b']) h.queue.add(k)
  t.match(h.queue.stats(), { depth: 2, processing: 1 })
  x.open()
  await h.queue.whenIdle()
  t.strictSame(h.calls, ['x', 'a', 'b'], 'FIFO, each once')
  t.match(h.queue.stats(), { depth: 0, processing: 0, processed: 3, failures: 0 })
})

t.test('a key added while it is processed runs again afterwards, once, never concurrently with itself', async (t) => {
  const h = harness({ workers: 4 })
  const first = h.block('a')
  h.queue.add('a')
  await settle()
  h.queue.add('a')
  h.queue.add('a')
  t.match(h.queue.stats(), { depth: 0, processing: 1 }, 'not queued while it runs')
  await settle()
  t.strictSame(h.calls, ['a'], 'not started a second time alongside')
  first.open()
  await h.queue.whenIdle()
  t.strictSame(h.calls, ['a', 'a'])
  t.equal(h.maxActive(), 1)
})

t.test('at most `workers` handlers run at once', async (t) => {
  const h = harness({ workers: 2 })
  const gates = ['k1', 'k2', 'k3', 'k4', 'k5'].map((k) => h.block(k))
  for (const k of ['k1', 'k2', 'k3', 'k4', 'k5']) h.queue.add(k)
  await settle()
  t.match(h.queue.stats(), { processing: 2, depth: 3 })
  t.strictSame(h.calls, ['k1', 'k2'])
  gates[0]!.open()
  await settle()
  t.strictSame(h.calls, ['k1', 'k2', 'k3'], 'a free worker takes the next key')
  for (const g of gates) g.open()
  await h.queue.whenIdle()
  t.equal(h.calls.length, 5)
  t.equal(h.maxActive(), 2)
})

t.test('a failing key backs off exponentially from 500 ms to the 5 min cap; success resets it', async (t) => {
  const h = harness()
  h.failing.add('a')
  h.queue.add('a')
  await settle()
  const delays: number[] = []
  for (let i = 0; i < 12; i++) {
    delays.push(h.clock.pending()[0]!)
    await h.clock.advance(h.clock.pending()[0]!)
  }
  t.strictSame(delays, [500, 1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000])
  t.equal(h.calls.length, 13)
  t.equal(h.queue.numRetries('a'), 13)
  t.match(h.queue.stats(), { retries: 13, failures: 13, backingOff: 1, delayed: 1 })
  const warn = h.log.lines().filter((l) => l.msg === 'processing a failed')
  t.equal(warn.length, 13)
  t.match(warn[0], { level: 40, key: 'a', err: 'a failed', attempt: 1, retryInMs: 500 })

  h.failing.delete('a')
  await h.clock.advance(300000)
  t.equal(h.queue.numRetries('a'), 0, 'forgotten after a success')
  t.match(h.queue.stats(), { backingOff: 0, delayed: 0 })
  h.failing.add('a')
  h.queue.add('a')
  await settle()
  t.strictSame(h.clock.pending(), [500], 'back to the first delay')
})

t.test('jitter spreads the delay by ±20% and never past the cap', async (t) => {
  const low = new WorkQueue<string>({ handler: () => {}, random: () => 0, timers: new FakeClock() })
  const high = new WorkQueue<string>({ handler: () => {}, random: () => 0.999999, timers: new FakeClock() })
  t.equal(low.backoff(1), 400)
  t.equal(high.backoff(1), 600)
  t.equal(low.backoff(4), 3200)
  t.equal(high.backoff(20), 300000, 'capped after jitter')
  t.equal(low.backoff(20), 240000)
  const custom = new WorkQueue<string>({ handler: () => {}, random: () => 0.5, baseDelayMs: 10, maxDelayMs: 50, jitter: 0 })
  t.strictSame([1, 2, 3, 4, 5].map((n) => custom.backoff(n)), [10, 20, 40, 50, 50])
})

t.test('retry/forget called by the handler itself: the queue does not second-guess them', async (t) => {
  const clock = new FakeClock()
  let runs = 0
  const queue: WorkQueue<string> = new WorkQueue<string>({
    timers: clock,
    random: () => 0.5,
    handler: (key) => {
      runs++
      // The handler reports the failure itself and returns normally.
      if (runs <= 3) queue.retry(key)
    },
  })
  queue.add('a')
  await settle()
  await clock.advance(500)
  await clock.advance(1000)
  t.equal(queue.numRetries('a'), 3, 'not reset by the successful return')
  t.strictSame(clock.pending(), [2000])
  await clock.advance(2000)
  t.equal(runs, 4)
  t.equal(queue.numRetries('a'), 0, 'a run without retry() is forgotten')
})

t.test('a handler that throws synchronously is retried like one that rejects', async (t) => {
  const clock = new FakeClock()
  let runs = 0
  const queue = new WorkQueue<string>({
    timers: clock,
    random: () => 0.5,
    handler: () => {
      runs++
      if (runs === 1) throw new Error('sync')
    },
  })
  queue.add('a')
  await settle()
  t.strictSame(clock.pending(), [500])
  await clock.advance(500)
  t.equal(runs, 2)
})

t.test('addAfter: the earliest pending delay wins; an immediate add does not wait for it', async (t) => {
  const h = harness()
  h.queue.addAfter('a', 5000)
  h.queue.addAfter('a', 10000)
  t.strictSame(h.clock.pending(), [5000], 'a later delay does not replace an earlier one')
  h.queue.addAfter('a', 1000)
  t.strictSame(h.clock.pending(), [1000], 'an earlier one does')
  t.match(h.queue.stats(), { delayed: 1, depth: 0 })
  await h.clock.advance(999)
  t.strictSame(h.calls, [])
  await h.clock.advance(1)
  t.strictSame(h.calls, ['a'])
  h.queue.addAfter('b', 0)
  await settle()
  t.strictSame(h.calls, ['a', 'b'], 'no delay: now')
  h.queue.addAfter('c', 3000)
  h.queue.add('c')
  await settle()
  t.strictSame(h.calls, ['a', 'b', 'c'])
  await h.clock.advance(3000)
  t.strictSame(h.calls, ['a', 'b', 'c', 'c'], 'the delayed add still happens')
})

t.test('stop(): refuses new keys, drops queued and delayed ones, waits for the running handlers', async (t) => {
  const h = harness({ workers: 1 })
  const running = h.block('a')
  h.queue.add('a')
  h.queue.add('b')
  h.queue.addAfter('c', 1000)
  h.queue.add('a')
  await settle()
  let stopped = false
  const stop = h.queue.stop().then(() => (stopped = true))
  await settle()
  t.equal(stopped, false, 'waits for the running handler')
  t.equal(h.queue.accepts, false)
  h.queue.add('d')
  h.queue.addAfter('e', 10)
  t.equal(h.queue.retry('f'), 0)
  t.strictSame(h.clock.pending(), [], 'delays cancelled')
  running.open()
  await stop
  t.equal(stopped, true)
  await h.clock.advance(5000)
  t.strictSame(h.calls, ['a'], 'b, the re-added a, c, d, e never ran')
  t.match(h.queue.stats(), { depth: 0, processing: 0, delayed: 0 })
})

t.test('stop() while a failing handler runs: no retry is scheduled', async (t) => {
  const h = harness()
  const running = h.block('a')
  h.failing.add('a')
  h.queue.add('a')
  await settle()
  const stop = h.queue.stop()
  running.open()
  await stop
  t.strictSame(h.clock.pending(), [])
  t.match(h.log.lines().find((l) => l.msg === 'processing a failed'), { retryInMs: undefined })
})

t.test('drain(): refuses new keys, finishes what is queued, then resolves', async (t) => {
  const h = harness({ workers: 1 })
  const running = h.block('a')
  h.queue.add('a')
  h.queue.add('b')
  h.queue.add('c')
  h.queue.addAfter('later', 1000)
  await settle()
  const drained = h.queue.drain()
  h.queue.add('d')
  h.failing.add('b')
  running.open()
  await drained
  t.strictSame(h.calls, ['a', 'b', 'c'])
  t.strictSame(h.clock.pending(), [], 'no retry of b, no delayed key')
  await h.queue.stop()
})

t.test('the default timers work (and do not keep the process alive)', async (t) => {
  const done: string[] = []
  const queue = new WorkQueue<string>({ handler: (k) => void done.push(k) })
  queue.addAfter('a', 20)
  await new Promise((r) => setTimeout(r, 60))
  t.strictSame(done, ['a'])
  await queue.stop()
})
