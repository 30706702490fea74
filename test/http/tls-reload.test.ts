/**
 * A rotated serving certificate is picked up without a restart and without dropping connections:
 * the files are swapped the way the kubelet updates a Secret volume (a new timestamped directory,
 * then an atomic rename of the `..data` symlink), a new connection then presents the new
 * certificate, and a keep-alive connection opened before the rotation still completes requests.
 */
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { Agent, request as httpsRequest, type RequestOptions } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig } from '../../src/config/schema.js'
import { startService } from '../../src/service.js'
import { generateCertificates, type CertificateSet } from '../../src/tls/certificates.js'
import { checkKeyPair } from '../../src/tls/reload.js'
import { captureLogger } from '../helpers/capture-log.js'
import { fixtureBody } from '../helpers/fixtures.js'
import { parseMetrics, scrape, value } from '../helpers/metrics.js'

const HOSTS = ['localhost', '127.0.0.1']
const [first, second, third, fourth] = (await Promise.all([1, 2, 3, 4].map(() => generateCertificates(HOSTS, 30)))) as [CertificateSet, CertificateSet, CertificateSet, CertificateSet]
const fingerprint = (set: { cert: string }) => new X509Certificate(set.cert).fingerprint256

/** A Secret volume as the kubelet lays it out: tls.crt → ..data/tls.crt, ..data → ..<timestamp>. */
const volume = mkdtempSync(join(tmpdir(), 'sr-tls-'))
t.teardown(() => rmSync(volume, { recursive: true, force: true }))
let generation = 0
let current: string | undefined
function project(pair: { cert: string; key: string }): void {
  const dir = `..2026_11_22_04_40_${String(++generation).padStart(2, '0')}`
  mkdirSync(join(volume, dir))
  writeFileSync(join(volume, dir, 'tls.crt'), pair.cert)
  writeFileSync(join(volume, dir, 'tls.key'), pair.key, { mode: 0o600 })
  symlinkSync(dir, join(volume, '..data_tmp'))
  renameSync(join(volume, '..data_tmp'), join(volume, '..data')) // atomic swap
  if (current) rmSync(join(volume, current), { recursive: true, force: true })
  else {
    symlinkSync('..data/tls.crt', join(volume, 'tls.crt'))
    symlinkSync('..data/tls.key', join(volume, 'tls.key'))
  }
  current = dir
}
project(first)

const config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0, tlsCertFile: join(volume, 'tls.crt'), tlsKeyFile: join(volume, 'tls.key') },
  kube: { ...defaultConfig.kube, mode: 'standalone' },
  store: { ...structuredClone(defaultConfig.store), local: { directory: mkdtempSync(join(tmpdir(), 'sr-tls-store-')) } },
})
const log = captureLogger('info')
const service = await startService(config, { logger: log.logger, certificateReload: { debounceMs: 100 } })
t.teardown(() => service.close())

interface Answer {
  status: number
  body: string
  fingerprint: string
  reused: boolean
}
function call(path: string, opts: RequestOptions & { body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(`${service.url}${path}`, { method: opts.body ? 'POST' : 'GET', headers: opts.body ? { 'content-type': 'application/json' } : {}, ...opts }, (res) => {
      const fp = (res.socket as TLSSocket).getPeerCertificate().fingerprint256
      let body = ''
      res.on('data', (c) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, body, fingerprint: fp, reused: req.reusedSocket }))
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}
/** A brand-new connection trusting only `set`'s CA. */
const fresh = (set: CertificateSet) => call('/healthz', { ca: set.caCert, agent: false })

async function eventually<T>(what: string, attempt: () => Promise<T>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms
  let last: unknown
  while (Date.now() < until) {
    try {
      return await attempt()
    } catch (err) {
      last = err
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error(`timed out waiting for ${what}: ${(last as Error)?.message}`)
}

t.test('a rotated certificate is served to new connections; open ones keep working', async (t) => {
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 1, ca: first.caCert })
  t.teardown(() => keepAlive.destroy())
  const before = await call('/healthz', { agent: keepAlive })
  t.equal(before.status, 200)
  t.equal(before.fingerprint, fingerprint(first), 'the first certificate at start')

  project(second)
  const after = await eventually('the new certificate on a new connection', async () => {
    const a = await fresh(second)
    if (a.fingerprint !== fingerprint(second)) throw new Error(`still ${a.fingerprint}`)
    return a
  })
  t.equal(after.status, 200, 'a new connection verifies against the new CA')
  t.not(after.fingerprint, before.fingerprint)
  await t.rejects(fresh(first), 'the old CA no longer verifies new connections')

  const body = fixtureBody('create.mutating.json')
  const old = await call('/mutate?timeout=10s', { agent: keepAlive, body })
  t.ok(old.reused, 'sent on the keep-alive connection opened before the rotation')
  t.equal(old.fingerprint, fingerprint(first), 'which still has its original session')
  t.equal(old.status, 200)
  t.equal(JSON.parse(old.body).response.uid, '76e5961c-06ad-4ad2-a0ec-5ba8573f0c8b', 'and is answered with an AdmissionReview')
  t.ok(log.lines().some((l) => l.msg.startsWith('serving certificate reloaded') && l.fingerprint256 === fingerprint(second)), 'the reload is logged with the new fingerprint')
})

t.test('a mismatched pair is logged and the previous certificate stays', async (t) => {
  project({ cert: third.cert, key: fourth.key })
  await eventually('the rejection in the log', async () => {
    if (!log.lines().some((l) => l.msg.startsWith('rotated certificate files are not a usable pair'))) throw new Error('not yet')
  })
  const still = await fresh(second)
  t.equal(still.fingerprint, fingerprint(second), 'still serving the last good certificate')
  const rejected = log.lines().find((l) => l.msg.startsWith('rotated certificate files are not a usable pair'))!
  t.match(rejected.err, /does not belong to the certificate/)
  t.equal(rejected.level, 50, 'logged as an error')
  t.notOk(log.text().includes('PRIVATE KEY'), 'no key material in the log')

  // The rotation completes: the good pair is picked up.
  project(third)
  await eventually('the third certificate', async () => {
    const a = await fresh(third)
    if (a.fingerprint !== fingerprint(third)) throw new Error('not yet')
  })
  const samples = parseMetrics((await scrape(service.metricsUrl!)).body)
  t.equal(value(samples, 'smart_restore_tls_reloads_total', { result: 'applied' }), 2)
  t.equal(value(samples, 'smart_restore_tls_reloads_total', { result: 'rejected' }), 1)
  t.equal(value(samples, 'smart_restore_tls_certificate_expiry_timestamp_seconds'), checkKeyPair(third).notAfter)
})

t.test('checkKeyPair says what is wrong', async (t) => {
  t.throws(() => checkKeyPair({ cert: 'not a certificate', key: first.key }), /no readable PEM certificate/)
  t.throws(() => checkKeyPair({ cert: first.cert, key: 'not a key' }), /no readable PEM private key/)
  t.throws(() => checkKeyPair({ cert: first.cert, key: second.key }), /does not belong/)
  t.equal(checkKeyPair(first).fingerprint256, fingerprint(first))
})

t.test('a mismatched pair at startup stops startup naming the files', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sr-tls-bad-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'tls.crt'), first.cert)
  writeFileSync(join(dir, 'tls.key'), second.key)
  const bad = validateConfig({ ...config, server: { ...config.server, tlsCertFile: join(dir, 'tls.crt'), tlsKeyFile: join(dir, 'tls.key') } })
  await t.rejects(startService(bad, { logger: captureLogger('error').logger }), /server\.tlsCertFile .*tls\.crt .*does not belong/)
})
