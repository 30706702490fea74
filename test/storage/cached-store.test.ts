/**
 * CachedStore in front of the real S3 store; requests are counted where S3 would see them.
 */
import t from 'tap'
import { createBackupStore } from '../../src/storage/index.js'
import { CachedStore } from '../../src/storage/cached-store.js'
import type { BackupStore, ProbeResult } from '../../src/storage/types.js'
import { answer, s3ErrorXml, seed, startRaw, startS3rver, storeConfig, BUCKET } from '../helpers/storage-servers.js'

const KEY = 'media/data-claim'

t.test('against s3rver', async (t) => {
  const s3 = await startS3rver()
  t.teardown(s3.close)
  await seed(s3.endpoint, [`${KEY}/config`, `${KEY}/snapshots/abc`])

  t.test('200 concurrent probes of one key send one request', async (t) => {
    const store = createBackupStore(storeConfig(s3.endpoint, { probe: { cacheTtlMs: 0 } }))
    t.teardown(() => store.close())
    const before = s3.requests()
    const results = await Promise.all(Array.from({ length: 200 }, () => store.probe(KEY)))
    t.equal(s3.requests() - before, 1)
    t.ok(results.every((r) => r.state === 'exists'))
    t.not(results[0], results[1], 'each caller gets its own result object')

    // With the cache off, the next probe (nothing in flight) asks again.
    await store.probe(KEY)
    t.equal(s3.requests() - before, 2)
  })

  t.test('different keys are not merged', async (t) => {
    const store = createBackupStore(storeConfig(s3.endpoint, { probe: { cacheTtlMs: 0 } }))
    t.teardown(() => store.close())
    const before = s3.requests()
    const [a, b] = await Promise.all([store.probe(KEY), store.probe('media/other')])
    t.equal(a?.state, 'exists')
    t.equal(b?.state, 'none')
    t.equal(s3.requests() - before, 2)
  })

  t.test('exists and none are reused for the TTL, then asked again', async (t) => {
    let now = 1_000_000
    const store = createBackupStore(storeConfig(s3.endpoint, { probe: { cacheTtlMs: 10_000 } }), { now: () => now })
    t.teardown(() => store.close())
    const before = s3.requests()
    t.equal((await store.probe(KEY)).state, 'exists')
    t.equal((await store.probe('media/other')).state, 'none')
    t.equal(s3.requests() - before, 2)

    now += 9_999
    await store.probe(KEY)
    await store.probe('media/other')
    t.equal(s3.requests() - before, 2, 'inside the TTL: no request')

    now += 1
    await store.probe(KEY)
    await store.probe('media/other')
    t.equal(s3.requests() - before, 4, 'at the TTL: asked again')
  })

  t.test('location and restic repository pass through', async (t) => {
    const store = createBackupStore(storeConfig(s3.endpoint))
    t.teardown(() => store.close())
    t.equal(store.location(KEY), `s3://${BUCKET}/${KEY}`)
    t.equal(store.resticRepository(KEY), `s3:${s3.endpoint}/${BUCKET}/${KEY}`)
  })
})

t.test('unknown is shared while in flight but never cached', async (t) => {
  let failing = true
  const srv = await startRaw((req, res) => {
    // 403 is not retried by the SDK, so one probe is one request.
    if (failing) return answer(403, s3ErrorXml('AccessDenied', 'Access Denied'))(req, res)
    answer(
      200,
      `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>${BUCKET}</Name><Prefix>${KEY}/snapshots/</Prefix><KeyCount>1</KeyCount><Contents><Key>${KEY}/snapshots/abc</Key></Contents></ListBucketResult>`,
    )(req, res)
  })
  t.teardown(srv.close)
  const store = createBackupStore(storeConfig(srv.endpoint, { probe: { cacheTtlMs: 60_000 } }))
  t.teardown(() => store.close())

  const first = await Promise.all(Array.from({ length: 20 }, () => store.probe(KEY)))
  t.ok(first.every((r) => r.state === 'unknown' && r.kind === 'forbidden'))
  t.equal(srv.requests(), 1)

  t.match(await store.probe(KEY), { state: 'unknown' })
  t.equal(srv.requests(), 2, 'the retry really asked')

  failing = false
  t.match(await store.probe(KEY), { state: 'exists' })
  t.match(await store.probe(KEY), { state: 'exists' })
  t.equal(srv.requests(), 3, 'the clear answer is cached')
})

t.test('an inner store that breaks its contract still yields unknown', async (t) => {
  // A stub is the point here: no real store throws, and the wrapper must not rely on that.
  let calls = 0
  const throwing: BackupStore = {
    probe: async () => {
      calls++
      throw new Error('boom')
    },
    location: (k) => `x://${k}`,
    resticRepository: (k) => k,
    close: () => {},
  }
  const store = new CachedStore(throwing, { ttlMs: 60_000 })
  const r: ProbeResult = await store.probe(KEY)
  t.match(r, { state: 'unknown', kind: 'other', location: `x://${KEY}`, reason: /boom/ })
  await store.probe(KEY)
  t.equal(calls, 2)
})

t.test('the number of remembered keys is bounded', async (t) => {
  let calls = 0
  const counting: BackupStore = {
    probe: async (k) => {
      calls++
      return { state: 'none', location: k, detail: 'stub' }
    },
    location: (k) => k,
    resticRepository: (k) => k,
    close: () => {},
  }
  const store = new CachedStore(counting, { ttlMs: 60_000, maxEntries: 3 })
  for (const k of ['a/1', 'a/2', 'a/3', 'a/4']) await store.probe(k)
  t.equal(calls, 4)
  await store.probe('a/4')
  t.equal(calls, 4, 'the newest is kept')
  await store.probe('a/1')
  t.equal(calls, 5, 'the oldest was dropped')
})
