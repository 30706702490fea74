/**
 * The in-process half of the admission fuzz (test/hardening/fuzz*.test.ts): bodies from
 * fuzz-bodies.ts through `app.inject()` of buildServer — the service's routes, body parsing and
 * handlers, with a local store directory — every reply judged by checkReply, the heap after GC
 * measured after a warm-up and at the end, the log scanned for the test credentials and for
 * error-level lines.
 *
 * The 100,000 bodies are split over two test files (two processes, so tap runs them side by side
 * on two cores): each sends its half of one seeded stream.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import type { Config } from '../../src/config/schema.js'
import { buildServer } from '../../src/server.js'
import { createBackupStore } from '../../src/storage/index.js'
import { checkReply, fuzzCase, tooLargeCase, type Category, type FuzzCase } from './fuzz-bodies.js'
import { gcFunction, hardeningConfig, memorySample, MiB, scanningLogger } from './hardening.js'

export const LONG = process.env.HARDENING_LONG === '1'
export const SEED = Number(process.env.HARDENING_SEED ?? 20261122)
/** Bodies of the whole in-process run, over both files. */
export const FUZZ_COUNT = Number(process.env.HARDENING_FUZZ_COUNT ?? 100_000)
/** Growth of the heap after a full GC across one file's run, after a warm-up of WARMUP bodies. */
export const HEAP_GROWTH_BOUND = 24 * MiB
export const WARMUP = 5_000
export const CONCURRENCY = 16

/** The standalone configuration with a local store (two PVCs have a snapshot); the directory is removed at teardown. */
export function fuzzConfig(t: Test): Config {
  const backups = mkdtempSync(join(tmpdir(), 'sr-hardening-fuzz-'))
  t.teardown(() => rmSync(backups, { recursive: true, force: true }))
  for (const key of ['media/data-claim', 'media/restored']) {
    mkdirSync(join(backups, key, 'snapshots'), { recursive: true })
    writeFileSync(join(backups, key, 'config'), 'restic config')
    writeFileSync(join(backups, key, 'snapshots', 'a'.repeat(64)), '{}')
  }
  // The store is local, but the S3 settings (with the test secret key) are in the configuration all the same.
  const config = hardeningConfig({ localDirectory: backups, cacheTtlMs: 10_000 })
  config.logLevel = 'info'
  return config
}

export interface Tally {
  sent: number
  byStatus: Record<string, number>
  byCategory: Partial<Record<Category, number>>
  failures: Array<{ index: number; category: Category; problems: string[]; body: string }>
  failureCount: number
}

export function tally(): Tally {
  return { sent: 0, byStatus: {}, byCategory: {}, failures: [], failureCount: 0 }
}

export function record(tl: Tally, c: FuzzCase, status: number, problems: string[]): void {
  tl.sent++
  tl.byStatus[status] = (tl.byStatus[status] ?? 0) + 1
  tl.byCategory[c.category] = (tl.byCategory[c.category] ?? 0) + 1
  if (problems.length) {
    tl.failureCount++
    if (tl.failures.length < 25) {
      const body = typeof c.body === 'string' ? c.body : c.body.toString('latin1')
      tl.failures.push({ index: c.index, category: c.category, problems, body: body.length > 400 ? `${body.slice(0, 400)}… (${body.length} chars)` : body })
    }
  }
}

/** Runs `count` cases (indices first…first+count-1) through `send`, CONCURRENCY at a time. */
export async function run(count: number, first: number, send: (c: FuzzCase) => Promise<void>): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < count) await send(fuzzCase(SEED, first + next++))
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker))
}

export function report(t: Test, tl: Tally, what: string): void {
  t.comment(`${what}: ${tl.sent} replies; by status ${JSON.stringify(tl.byStatus)}`)
  t.comment(`${what}: by category ${JSON.stringify(tl.byCategory)}`)
  for (const f of tl.failures) t.comment(`FAILED #${f.index} (${f.category}; rebuild with fuzzCase(${SEED}, ${f.index})): ${f.problems.join('; ')}\n  body: ${f.body}`)
  t.equal(tl.failureCount, 0, `${what}: every reply is a valid AdmissionReview for its request or a 4xx with a message (${tl.failureCount} not)`)
  t.notOk(Object.keys(tl.byStatus).some((s) => Number(s) >= 500), `${what}: no 5xx`)
}

/** Registers the test sending bodies first…first+count-1 of the stream in process. */
export function inProcessFuzz(t: Test, config: Config, first: number, count: number): void {
  t.test(`bodies ${first}–${first + count - 1} of the ${FUZZ_COUNT} (seed ${SEED}) through the routes in process (app.inject)`, async (t) => {
    const logs = scanningLogger('info')
    const store = createBackupStore(config.store, { logger: logs.logger })
    const app = buildServer({ deps: { config, store, cluster: null, inFlight: null, logger: logs.logger }, logger: logs.logger, bodyLimitBytes: config.server.bodyLimitBytes })
    t.teardown(() => app.close())
    await app.ready()
    const gc = gcFunction()
    t.comment(gc ? 'heap measured after full GCs' : 'no gc() available: heap measured without a forced GC (bound still applies)')

    const tl = tally()
    const started = performance.now()
    const send = async (c: FuzzCase) => {
      const res = await app.inject({
        method: 'POST',
        url: `${c.path}${c.query}`,
        payload: c.body,
        headers: c.contentType === null ? {} : { 'content-type': c.contentType },
      })
      record(tl, c, res.statusCode, checkReply(c, { status: res.statusCode, contentType: String(res.headers['content-type'] ?? ''), text: res.body }))
    }
    // Warm-up (JIT, caches, the store's answer cache filling), then the baseline, then the rest.
    const warmup = Math.min(WARMUP, Math.floor(count / 10))
    await run(warmup, first, send)
    const baseline = await memorySample(gc)
    await run(count - warmup, first + warmup, send)
    // One body over the 8 MiB limit.
    const big = tooLargeCase(first + count)
    const bigRes = await app.inject({ method: 'POST', url: '/mutate?timeout=10s', payload: big.body, headers: { 'content-type': 'application/json' } })
    record(tl, big, bigRes.statusCode, checkReply(big, { status: bigRes.statusCode, text: bigRes.body }))
    const seconds = (performance.now() - started) / 1000
    const after = await memorySample(gc)

    report(t, tl, 'in process')
    t.equal(tl.sent, count + 1, `all ${count + 1} bodies answered`)
    t.comment(`in process: ${count + 1} bodies in ${seconds.toFixed(1)} s (${Math.round(count / seconds)}/s); ${logs.lines()} log lines, ${(logs.bytes() / MiB).toFixed(1)} MiB`)
    const growth = after.heapUsed - baseline.heapUsed
    t.comment(`heap after GC: ${(baseline.heapUsed / MiB).toFixed(1)} MiB after ${warmup} bodies → ${(after.heapUsed / MiB).toFixed(1)} MiB at the end (${(growth / MiB).toFixed(1)} MiB); RSS ${(baseline.rss / MiB).toFixed(0)} → ${(after.rss / MiB).toFixed(0)} MiB`)
    t.ok(growth < HEAP_GROWTH_BOUND, `heap growth ${(growth / MiB).toFixed(1)} MiB < ${HEAP_GROWTH_BOUND / MiB} MiB`)
    t.same(logs.leaks(), [], 'no test credential in any of the log lines')
    const errors = logs.errors()
    if (errors.count > 0) t.comment(`error-level log lines by signature: ${JSON.stringify(errors.bySignature)}`)
    t.same(Object.keys(errors.bySignature), [], 'no error-level log line (nothing unhandled)')
    t.ok(logs.lines() > 0, 'the service logged')
  })
}

/**
 * Snapshots Object.prototype / Array.prototype and starts collecting unhandled rejections now;
 * the returned function registers (call it last) the test that checks nothing was polluted and
 * nothing was left unhandled.
 */
export function pollutionCheck(t: Test): () => void {
  const protoBefore = Object.getOwnPropertyNames(Object.prototype).sort()
  const arrayProtoBefore = Object.getOwnPropertyNames(Array.prototype).sort()
  const unhandled: unknown[] = []
  const onUnhandled = (err: unknown) => void unhandled.push(err)
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => void process.off('unhandledRejection', onUnhandled))
  return () => void t.test('nothing was polluted, nothing was left unhandled', async (t) => {
    t.same(Object.getOwnPropertyNames(Object.prototype).sort(), protoBefore, 'Object.prototype has exactly its own properties')
    t.same(Object.getOwnPropertyNames(Array.prototype).sort(), arrayProtoBefore, 'Array.prototype too')
    const probe: Record<string, unknown> = {}
    t.equal(probe.polluted, undefined, '({}).polluted is undefined')
    t.equal(probe.isAdmin, undefined, '({}).isAdmin is undefined')
    t.same(unhandled.map(String), [], 'no unhandled rejection')
  })
}
