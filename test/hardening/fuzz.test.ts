/**
 * Hardening: the admission endpoints under ≥ 100,000 generated malformed and adversarial bodies.
 *
 * Bodies come from a seeded generator (test/helpers/fuzz-bodies.ts) working on the bodies real
 * kube-apiservers sent: truncations at random offsets, type swaps of every field, removed fields,
 * huge strings (16 KiB–1 MiB, and one 9 MiB body → 413), 10,000-level nesting, `__proto__` /
 * `constructor.prototype` keys at every level (also unicode-escaped) and harmless look-alikes,
 * non-PVC kinds, every operation, unicode/emoji/RTL/NUL/lone surrogates in names, labels and uids,
 * invalid UTF-8 bytes (sent as Buffers), wrong content types, empty bodies, numbers where objects
 * belong, very wide maps and lists, odd uids, duplicate keys, a BOM, random bytes, odd `?timeout=`.
 *
 * Every reply must be 200 with a valid AdmissionReview for this request (apiVersion, kind, the
 * request's uid, a boolean `allowed`, a denial with code and message, a patch only with patchType,
 * decoding to a JSON array that applies to request.object, none on DELETE or from /validate) or a
 * 4xx with a JSON body carrying a non-empty `message`; never a 5xx, never an unanswered request.
 * Afterwards `Object.prototype` is unpolluted and the heap after a full GC has grown less than
 * HEAP_GROWTH_BOUND.
 *
 * Default run: FUZZ_COUNT (100,000) bodies through `app.inject()` of buildServer — the same routes,
 * parser and handlers, no sockets — split over this file (the first half) and
 * fuzz-second-half.test.ts (the rest), which tap runs side by side; plus HTTPS_SAMPLE (2,000) more
 * over real HTTPS with keep-alive to the started service. HARDENING_LONG=1 sends all FUZZ_COUNT
 * over HTTPS as well.
 * The standalone service with a local store directory: no network beyond loopback.
 * Env: HARDENING_SEED (default 20261122), HARDENING_FUZZ_COUNT.
 *
 * Found by this suite and fixed (12c311c; 2 in the nesting limit of src/admission/parse.ts), now
 * regression tests below and generated cases:
 *  1. a deeply nested apiVersion or kind made parseAdmissionReview's JSON.stringify (quoting the
 *     wrong value back) throw RangeError: a bare HTTP 500 instead of a 422; a 7 MiB apiVersion came
 *     back whole in the 422 and in one 7 MiB log line;
 *  3. spec.dataSourceRef/dataSource kind or name, or metadata.namespace (request.namespace absent),
 *     as an object whose toString is not a function: "failed to decide: Cannot convert object to
 *     primitive value"; a non-string metadata.namespace (42, ["media"]) was coerced and probed.
 *  2. a field nested ~4,000+ levels deep inside a labelled PVC overflowed the stack in patchFor
 *     (structuredClone / fast-json-patch compare): a denial "failed to decide: Maximum call stack
 *     size exceeded" (code 500, an error-level line) instead of a 4xx. Bodies nesting deeper than
 *     100 levels are now refused with a 422 before they are parsed.
 */
import t from 'tap'
import { buildServer } from '../../src/server.js'
import { startService } from '../../src/service.js'
import { createBackupStore } from '../../src/storage/index.js'
import { captureLogger } from '../helpers/capture-log.js'
import { checkReply, tooLargeCase } from '../helpers/fuzz-bodies.js'
import { CONCURRENCY, FUZZ_COUNT, fuzzConfig, inProcessFuzz, LONG, pollutionCheck, record, report, run, SEED, tally } from '../helpers/fuzz-runner.js'
import { assertNoSecrets, httpsClient, logSignature, scanningLogger } from '../helpers/hardening.js'

const HTTPS_SAMPLE = LONG ? FUZZ_COUNT : 2_000
const FIRST_HALF = Math.ceil(FUZZ_COUNT / 2)

t.setTimeout((LONG ? 30 : 3) * 60_000)
t.comment(`fuzz seed ${SEED} (HARDENING_SEED): bodies 0–${FIRST_HALF - 1} of ${FUZZ_COUNT} in process here (the rest in fuzz-second-half.test.ts), ${HTTPS_SAMPLE} over HTTPS${LONG ? ' (HARDENING_LONG)' : ''}`)
t.ok(FUZZ_COUNT >= 100_000 || process.env.HARDENING_FUZZ_COUNT !== undefined, `at least 100,000 bodies in process by default (${FUZZ_COUNT})`)

const config = fuzzConfig(t)
const registerPollutionCheck = pollutionCheck(t)

inProcessFuzz(t, config, 0, FIRST_HALF)

t.test(`${HTTPS_SAMPLE} bodies over real HTTPS with keep-alive`, async (t) => {
  const log = captureLogger('info')
  const service = await startService(config, { logger: log.logger, kubeConfig: null, cluster: null, inFlight: null })
  t.teardown(() => service.close())
  const client = httpsClient(service.url, service.caCert, { keepAlive: true, maxSockets: CONCURRENCY })
  t.teardown(client.close)

  const tl = tally()
  let clientErrors = 0
  const errorSamples: string[] = []
  const started = performance.now()
  // Another stretch of the same stream: bodies the in-process run did not send.
  await run(HTTPS_SAMPLE, LONG ? 0 : 1_000_000, async (c) => {
    try {
      const r = await client.post(c.path, c.body, { contentType: c.contentType, query: c.query })
      record(tl, c, r.status, checkReply(c, { status: r.status, contentType: String(r.headers['content-type'] ?? ''), text: r.text }))
    } catch (err) {
      clientErrors++
      if (errorSamples.length < 10) errorSamples.push(`#${c.index} (${c.category}): ${(err as Error).message}`)
    }
  })
  const big = tooLargeCase(2_000_000)
  const bigReply = await client.post('/mutate', big.body).catch((err: Error) => ({ status: -1, text: err.message, headers: {} }))
  record(tl, big, bigReply.status, checkReply(big, { status: bigReply.status, text: bigReply.text }))
  const seconds = (performance.now() - started) / 1000

  report(t, tl, 'over HTTPS')
  for (const e of errorSamples) t.comment(`client error: ${e}`)
  t.equal(clientErrors, 0, 'every request got an answer (no reset, no hang)')
  t.comment(`over HTTPS: ${HTTPS_SAMPLE + 1} bodies in ${seconds.toFixed(1)} s`)
  // The service still answers a real request normally afterwards.
  const after = await client.post('/mutate', JSON.stringify((await import('../helpers/fixtures.js')).fixtureReview('create.mutating.json')))
  t.equal(after.status, 200)
  t.equal(after.json.response.allowed, true, 'a real CREATE still gets its normal answer')
  const errors = log.lines().filter((l) => l.level >= 50).map(logSignature)
  if (errors.length) t.comment(`error-level log lines: ${errors.length}, by signature: ${JSON.stringify([...new Set(errors)])}`)
  t.same(errors, [], 'no error-level log line (nothing unhandled)')
  assertNoSecrets(t, log.text())
})

t.test('a 10,000-level or 7 MiB apiVersion or kind is a 422 with a short message (bug 1, fixed)', async (t) => {
  const { fixtureBody } = await import('../helpers/fixtures.js')
  const logs = scanningLogger('info')
  const app = buildServer({ deps: { config, store: createBackupStore(config.store), cluster: null, inFlight: null, logger: logs.logger }, logger: logs.logger, bodyLimitBytes: config.server.bodyLimitBytes })
  t.teardown(() => app.close())
  for (const [field, original] of [['apiVersion', '"apiVersion":"admission.k8s.io/v1"'], ['kind', '"kind":"AdmissionReview"']] as const) {
    for (const [what, value] of [
      ['10,000 levels of lists', `${'['.repeat(10_000)}${']'.repeat(10_000)}`],
      ['10,000 levels of objects', `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`],
      ['a 7 MiB string', JSON.stringify('x'.repeat(7 * 1024 * 1024))],
    ] as const) {
      const body = fixtureBody('create.mutating.json').replace(original, `"${field}":${value}`)
      const res = await app.inject({ method: 'POST', url: '/mutate?timeout=10s', payload: body, headers: { 'content-type': 'application/json' } })
      t.equal(res.statusCode, 422, `${field} = ${what}: 422 (got ${res.statusCode}: ${res.body.slice(0, 120)})`)
      t.ok(res.body.length < 2048, `${field} = ${what}: the answer quotes none of it back whole (${res.body.length} bytes)`)
    }
  }
  t.equal(logs.errors().count, 0, 'no error-level log line')
  t.ok(logs.bytes() < 64 * 1024, `nor does the log (${logs.bytes()} bytes for 6 requests)`)
})

t.test('a 10,000-level field inside a labelled PVC is a 422, not "failed to decide" (bug 2, fixed)', async (t) => {
  const { fixtureReview } = await import('../helpers/fixtures.js')
  const logs = scanningLogger('info')
  const app = buildServer({ deps: { config, store: createBackupStore(config.store), cluster: null, inFlight: null, logger: logs.logger }, logger: logs.logger, bodyLimitBytes: config.server.bodyLimitBytes })
  t.teardown(() => app.close())
  const d = fixtureReview('create.mutating.json')
  d.request.object.metadata.deep = '__N__'
  const body = JSON.stringify(d).replace('"__N__"', `${'['.repeat(10_000)}${']'.repeat(10_000)}`)
  const res = await app.inject({ method: 'POST', url: '/mutate?timeout=10s', payload: body, headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 422, `a 422 (got ${res.statusCode}: ${res.body.slice(0, 160)})`)
  t.match(JSON.parse(res.body).message, /body nests deeper than 100 levels/, 'saying why')
  t.equal(logs.errors().count, 0, 'no error-level log line')
})

t.test('an object where a PVC string belongs is a 422, not "failed to decide" (bug 3, fixed)', async (t) => {
  const { fixtureReview } = await import('../helpers/fixtures.js')
  const logs = scanningLogger('info')
  const app = buildServer({ deps: { config, store: createBackupStore(config.store), cluster: null, inFlight: null, logger: logs.logger }, logger: logs.logger, bodyLimitBytes: config.server.bodyLimitBytes })
  t.teardown(() => app.close())
  const notAString = { toString: 1 }
  const cases: Array<[string, (r: any) => void]> = [
    ['spec.dataSourceRef.kind', (r) => (r.object.spec.dataSourceRef = { kind: notAString, name: 'x' })],
    ['spec.dataSource.name', (r) => (r.object.spec.dataSource = { kind: 'X', name: notAString })],
    ['metadata.namespace (request.namespace absent)', (r) => ((r.namespace = undefined), (r.object.metadata.namespace = notAString))],
    ['metadata.namespace = 42 (request.namespace absent)', (r) => ((r.namespace = undefined), (r.object.metadata.namespace = 42))],
    ['metadata.namespace = ["media"] (request.namespace absent)', (r) => ((r.namespace = undefined), (r.object.metadata.namespace = ['media']))],
    ['metadata.generateName', (r) => ((r.name = undefined), delete r.object.metadata.name, (r.object.metadata.generateName = notAString))],
  ]
  for (const [field, edit] of cases) {
    for (const path of ['/mutate', '/validate']) {
      const d = fixtureReview('create.mutating.json')
      edit(d.request)
      const res = await app.inject({ method: 'POST', url: `${path}?timeout=10s`, payload: JSON.stringify(d), headers: { 'content-type': 'application/json' } })
      const json = JSON.parse(res.body)
      t.equal(res.statusCode, 200, `${path} ${field}: an AdmissionReview`)
      t.equal(json.response?.allowed, false, `${path} ${field}: denied, never allowed (coerced and probed)`)
      t.equal(json.response?.status?.code, 422, `${path} ${field}: as invalid (got ${json.response?.status?.message?.slice(0, 120)})`)
    }
  }
  t.equal(logs.errors().count, 0, 'no error-level log line')
})

registerPollutionCheck()
