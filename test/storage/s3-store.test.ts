/**
 * S3BackupStore against real servers: s3rver for what a working S3 says, raw loopback HTTP servers
 * for what a failing one says (s3rver cannot be made to answer 5xx, hang, or send garbage).
 */
import t from 'tap'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { S3BackupStore } from '../../src/storage/s3-store.js'
import type { ProbeResult } from '../../src/storage/types.js'
import {
  BUCKET,
  answer,
  closedPort,
  s3ErrorXml,
  seed,
  startRaw,
  startS3rver,
  storeConfig,
  type Running,
} from '../helpers/storage-servers.js'

const KEY = 'media/data-claim'

function store(t: Tap, ...args: Parameters<typeof storeConfig>): S3BackupStore {
  const s = new S3BackupStore(storeConfig(...args))
  t.teardown(() => s.close())
  return s
}
/** All the helpers need of a (sub)test. */
type Tap = { teardown(fn: () => unknown): void }

async function raw(t: Tap, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<Running> {
  const srv = await startRaw(handler)
  t.teardown(srv.close)
  return srv
}

function unknownOf(r: ProbeResult): { kind: string; reason: string } {
  if (r.state !== 'unknown') throw new Error(`expected unknown, got ${JSON.stringify(r)}`)
  return r
}

const listing = (keys: string[], prefix: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${BUCKET}</Name><Prefix>${prefix}</Prefix><KeyCount>${keys.length}</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated>${keys
    .map((k) => `<Contents><Key>${k}</Key><Size>1</Size></Contents>`)
    .join('')}</ListBucketResult>`

t.test('against s3rver', async (t) => {
  const s3 = await startS3rver()
  t.teardown(s3.close)
  await seed(s3.endpoint, [
    'media/data-claim/config',
    'media/data-claim/keys/x',
    'media/data-claim/snapshots/abc',
    'media/empty-claim/config',
    'media/empty-claim/keys/x',
    'markers/media-data-claim',
  ])

  t.test('a snapshot object means a backup exists', async (t) => {
    const r = await store(t, s3.endpoint).probe(KEY)
    t.match(r, { state: 'exists', location: `s3://${BUCKET}/${KEY}`, detail: /media\/data-claim\/snapshots\/abc/ })
  })

  t.test('an initialised repository without snapshots is no backup', async (t) => {
    // What a failed restore leaves behind: `config` and `keys/` but nothing under `snapshots/`.
    const r = await store(t, s3.endpoint).probe('media/empty-claim')
    t.match(r, { state: 'none', detail: /no snapshot under s3:\/\/backups\/media\/empty-claim\/snapshots\// })
  })

  t.test('a prefix that was never written is no backup', async (t) => {
    t.match(await store(t, s3.endpoint).probe('media/never-backed-up'), { state: 'none' })
  })

  t.test('the listing is scoped to <key>/snapshots/, not a sibling key sharing its start', async (t) => {
    // `media/data` is a string prefix of `media/data-claim`: a prefix without the slash would match.
    t.match(await store(t, s3.endpoint).probe('media/data'), { state: 'none' })
  })

  t.test('surrounding slashes name the same repository', async (t) => {
    t.match(await store(t, s3.endpoint).probe(`/${KEY}/`), { state: 'exists' })
  })

  t.test('an unknown access key is a credentials problem, not "no backup"', async (t) => {
    // s3rver knows only the S3RVER key and answers 403 InvalidAccessKeyId for any other. It does not
    // verify V4 signatures, so a wrong *secret* passes there; the raw-server test below covers
    // SignatureDoesNotMatch.
    const r = unknownOf(await store(t, s3.endpoint, { s3: { accessKeyId: 'AKIAWRONGWRONGWRONG0', secretAccessKey: 'topsecretvalue' } }).probe(KEY))
    t.equal(r.kind, 'credentials')
    t.match(r.reason, /403 InvalidAccessKeyId/)
    t.notMatch(r.reason, /AKIAWRONG|topsecretvalue/, 'no credential value in the reason')
  })

  t.test('a missing bucket is a misconfiguration, not "no backup"', async (t) => {
    const r = unknownOf(await store(t, s3.endpoint, { s3: { bucket: 'no-such-bucket' } }).probe(KEY))
    t.equal(r.kind, 'bucket')
    t.match(r.reason, /404 NoSuchBucket.*no-such-bucket/)
  })

  t.test('one keep-alive connection serves consecutive probes', async (t) => {
    const st = store(t, s3.endpoint)
    const before = s3.connections()
    for (let i = 0; i < 5; i++) await st.probe(KEY)
    t.equal(s3.connections() - before, 1)
  })

  t.test('head mode', async (t) => {
    const head = { probe: { mode: 'head' as const, headKeyTemplate: '{key}/config' } }
    t.match(await store(t, s3.endpoint, head).probe(KEY), { state: 'exists', detail: /media\/data-claim\/config/ })
    t.match(await store(t, s3.endpoint, head).probe('media/never-backed-up'), { state: 'none', detail: /HEAD answered 404/ })

    // HEAD has no body, so a missing bucket is a bare 404 too; the store asks HeadBucket before
    // calling it "none".
    const r = unknownOf(await store(t, s3.endpoint, { ...head, s3: { bucket: 'no-such-bucket' } }).probe(KEY))
    t.equal(r.kind, 'bucket')

    t.test('{namespace} and {pvc} come from matching the key template', async (t) => {
      const cfg = storeConfig(s3.endpoint, { probe: { mode: 'head', headKeyTemplate: 'markers/{namespace}-{pvc}' } })
      cfg.keyTemplate = 'repos/{namespace}/{pvc}'
      const st = new S3BackupStore(cfg)
      t.teardown(() => st.close())
      t.match(await st.probe('repos/media/data-claim'), { state: 'exists', detail: /markers\/media-data-claim/ })
      t.match(await st.probe('repos/media/other'), { state: 'none' })
      // A key the template cannot explain must not be probed as a literal `{namespace}` (404 → "none").
      t.match(await st.probe('elsewhere/media/data-claim'), { state: 'unknown', kind: 'other', reason: /unexpanded/ })
    })
  })

  t.test('a stopped server is a network problem', async (t) => {
    const own = await startS3rver()
    t.teardown(own.close)
    const st = store(t, own.endpoint)
    t.match(await st.probe(KEY), { state: 'none' }, 'answers while up (and keeps the connection)')
    await own.close()
    const r = unknownOf(await st.probe(KEY))
    t.equal(r.kind, 'network')
    t.match(r.reason, /ECONNREFUSED/)
  })
})

t.test('a closed port is a network problem', async (t) => {
  const r = unknownOf(await store(t, `http://127.0.0.1:${await closedPort()}`).probe(KEY))
  t.equal(r.kind, 'network')
  t.match(r.reason, /ECONNREFUSED/)
})

t.test('deadline', async (t) => {
  const deadlineMs = 400

  t.test('a server that accepts and never answers', async (t) => {
    const srv = await raw(t, (req) => req.resume())
    const started = Date.now()
    const r = unknownOf(await store(t, srv.endpoint, { probe: { deadlineMs } }).probe(KEY))
    const took = Date.now() - started
    t.equal(r.kind, 'timeout')
    t.match(r.reason, /400 ms deadline/)
    t.ok(took >= deadlineMs - 20 && took < deadlineMs + 1500, `returned after ${took} ms`)
  })

  t.test('a server that answers after twice the deadline', async (t) => {
    const timers = new Set<NodeJS.Timeout>()
    t.teardown(() => timers.forEach(clearTimeout))
    const srv = await raw(t, (req, res) => {
      req.resume()
      timers.add(setTimeout(() => answer(200, listing([`${KEY}/snapshots/abc`], `${KEY}/snapshots/`))(req, res), 2 * deadlineMs))
    })
    const started = Date.now()
    const r = unknownOf(await store(t, srv.endpoint, { probe: { deadlineMs } }).probe(KEY))
    const took = Date.now() - started
    t.equal(r.kind, 'timeout')
    t.ok(took < deadlineMs + 1500, `returned after ${took} ms`)
  })

  t.test('headers on time, body never finishes', async (t) => {
    // The SDK's own requestTimeout stops at the headers; only the deadline covers the body.
    const srv = await raw(t, (req, res) => {
      req.resume()
      res.writeHead(200, { 'content-type': 'application/xml' })
      res.write('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult>')
    })
    const started = Date.now()
    const r = unknownOf(await store(t, srv.endpoint, { probe: { deadlineMs } }).probe(KEY))
    t.equal(r.kind, 'timeout')
    t.ok(Date.now() - started < deadlineMs + 1500)
  })

  t.test('retries that run out the clock report why they failed', async (t) => {
    // Every answer is a 500 after 450 ms: two attempts fail inside the 1200 ms deadline, the third
    // is still waiting when it passes. "S3 keeps failing" is the useful part, not "timeout".
    const timers = new Set<NodeJS.Timeout>()
    t.teardown(() => timers.forEach(clearTimeout))
    const srv = await raw(t, (req, res) => {
      timers.add(setTimeout(() => answer(500, s3ErrorXml('InternalError', 'We encountered an internal error.'))(req, res), 450))
    })
    const started = Date.now()
    const r = unknownOf(await store(t, srv.endpoint, { probe: { deadlineMs: 1200 } }).probe(KEY))
    t.ok(Date.now() - started < 1200 + 1500)
    t.equal(r.kind, 'server')
    t.match(r.reason, /1200 ms deadline after 3 attempt\(s\); last: S3 answered 500 InternalError/)
    t.equal(srv.requests(), 3)
  })
})

t.test('S3 error answers', async (t) => {
  const cases: Array<[string, number, string, string, RegExp]> = [
    ['500 InternalError', 500, s3ErrorXml('InternalError', 'We encountered an internal error. Please try again.'), 'server', /500 InternalError/],
    ['503 ServiceUnavailable', 503, s3ErrorXml('ServiceUnavailable', 'Reduce your request rate.'), 'server', /503 ServiceUnavailable/],
    ['502 from a proxy, HTML body', 502, '<html><body>Bad Gateway</body></html>', 'server', /502/],
    ['403 AccessDenied', 403, s3ErrorXml('AccessDenied', 'Access Denied'), 'forbidden', /403 AccessDenied/],
    ['403 SignatureDoesNotMatch', 403, s3ErrorXml('SignatureDoesNotMatch', 'The request signature we calculated does not match'), 'credentials', /403 SignatureDoesNotMatch/],
    ['403 InvalidAccessKeyId', 403, s3ErrorXml('InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.'), 'credentials', /403 InvalidAccessKeyId/],
    ['400 ExpiredToken', 400, s3ErrorXml('ExpiredToken', 'The provided token has expired.'), 'credentials', /400 ExpiredToken/],
    ['404 NoSuchBucket', 404, s3ErrorXml('NoSuchBucket', 'The specified bucket does not exist'), 'bucket', /404 NoSuchBucket/],
    ['404 without a code (a wrong endpoint path)', 404, '<html>not found</html>', 'other', /404/],
    ['301 PermanentRedirect (wrong region)', 301, s3ErrorXml('PermanentRedirect', 'The bucket you are attempting to access must be addressed using the specified endpoint.'), 'other', /301 PermanentRedirect/],
  ]
  for (const [name, status, body, kind, reason] of cases) {
    t.test(name, async (t) => {
      const srv = await raw(t, answer(status, body, body.startsWith('<html') ? 'text/html' : 'application/xml'))
      const r = unknownOf(await store(t, srv.endpoint).probe(KEY))
      t.equal(r.kind, kind)
      t.match(r.reason, reason)
    })
  }

  t.test('200 with a body that is not XML', async (t) => {
    const srv = await raw(t, answer(200, '<ListBucketResult><Name>backups</Na'))
    t.match(await store(t, srv.endpoint).probe(KEY), { state: 'unknown', kind: 'server', reason: /could not be parsed/ })
  })

  t.test('200 with something that is not a listing (a captive portal, an empty body)', async (t) => {
    for (const [body, type] of [
      ['<html><body>Please log in</body></html>', 'text/html'],
      ['', 'application/xml'],
    ] as const) {
      const srv = await raw(t, answer(200, body, type))
      // Parses to an empty listing; reading that as "none" would create an empty volume.
      t.match(await store(t, srv.endpoint).probe(KEY), { state: 'unknown', kind: 'server' }, JSON.stringify(body))
    }
  })

  t.test('a listing that ignored the prefix is not trusted', async (t) => {
    const srv = await raw(t, answer(200, listing(['other/pvc/snapshots/abc'], `${KEY}/snapshots/`)))
    t.match(await store(t, srv.endpoint).probe(KEY), { state: 'unknown', kind: 'server' })
  })

  t.test('a real ListBucketResult', async (t) => {
    const srv = await raw(t, answer(200, listing([`${KEY}/snapshots/abc`], `${KEY}/snapshots/`)))
    t.match(await store(t, srv.endpoint).probe(KEY), { state: 'exists' })
    const empty = await raw(t, answer(200, listing([], `${KEY}/snapshots/`)))
    t.match(await store(t, empty.endpoint).probe(KEY), { state: 'none' })
  })
})

t.test('head mode against raw answers', async (t) => {
  const head = { probe: { mode: 'head' as const, headKeyTemplate: '{key}/config' } }
  const bucketThen = (objectStatus: number) => (req: IncomingMessage, res: ServerResponse) =>
    // HeadBucket is HEAD /<bucket>/ (path style); everything else is the object.
    answer(req.method === 'HEAD' && req.url?.split('?')[0]?.replace(/\/$/, '') === `/${BUCKET}` ? 200 : objectStatus)(req, res)

  t.test('200 → exists', async (t) => {
    const srv = await raw(t, bucketThen(200))
    t.match(await store(t, srv.endpoint, head).probe(KEY), { state: 'exists' })
    t.equal(srv.requests(), 1)
  })

  t.test('404 → none, after the bucket is confirmed once', async (t) => {
    const srv = await raw(t, bucketThen(404))
    const st = store(t, srv.endpoint, head)
    t.match(await st.probe(KEY), { state: 'none' })
    t.equal(srv.requests(), 2, 'HeadObject + HeadBucket')
    t.match(await st.probe('media/other'), { state: 'none' })
    t.equal(srv.requests(), 3, 'the bucket check is remembered')
  })

  t.test('403 → forbidden (a HEAD on a missing key without s3:ListBucket)', async (t) => {
    const srv = await raw(t, bucketThen(403))
    const r = unknownOf(await store(t, srv.endpoint, head).probe(KEY))
    t.equal(r.kind, 'forbidden')
    t.match(r.reason, /403/)
  })

  t.test('503 → server', async (t) => {
    const srv = await raw(t, bucketThen(503))
    t.match(await store(t, srv.endpoint, head).probe(KEY), { state: 'unknown', kind: 'server' })
  })
})

t.test('no credentials anywhere', async (t) => {
  // The SDK default chain reads the environment at call time; point every source at nothing.
  const saved = { ...process.env }
  t.teardown(() => {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k]
    Object.assign(process.env, saved)
  })
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_WEB_IDENTITY_TOKEN_FILE', 'AWS_ROLE_ARN', 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'AWS_CONTAINER_CREDENTIALS_FULL_URI']) {
    delete process.env[k]
  }
  process.env.AWS_EC2_METADATA_DISABLED = 'true'
  process.env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/credentials'
  process.env.AWS_CONFIG_FILE = '/nonexistent/config'
  const srv = await raw(t, answer(200, listing([], `${KEY}/snapshots/`)))
  const r = unknownOf(await store(t, srv.endpoint, { s3: { accessKeyId: undefined, secretAccessKey: undefined } }).probe(KEY))
  t.equal(r.kind, 'credentials')
  t.equal(srv.requests(), 0, 'nothing unsigned was sent')
})

t.test('weird keys are refused, not probed', async (t) => {
  const srv = await raw(t, answer(200, listing([], '')))
  const st = store(t, srv.endpoint)
  for (const key of ['', '/', 'media/../kube-system/x', 'media//x']) {
    t.match(await st.probe(key), { state: 'unknown', kind: 'other' }, JSON.stringify(key))
  }
  t.equal(srv.requests(), 0)
})

t.test('location and restic repository', async (t) => {
  const withEndpoint = store(t, 'http://minio.minio:9000/')
  t.equal(withEndpoint.location(KEY), `s3://${BUCKET}/${KEY}`)
  t.equal(withEndpoint.resticRepository(KEY), `s3:http://minio.minio:9000/${BUCKET}/${KEY}`)
  const aws = store(t, '')
  t.equal(aws.resticRepository(KEY), `s3:s3.amazonaws.com/${BUCKET}/${KEY}`)
})
