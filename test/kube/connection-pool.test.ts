/**
 * One-shot API requests reuse keep-alive connections (src/kube/connection-pool.ts), over real TLS:
 * an HTTPS server with a certificate from its own CA stands in for the apiserver, and client-node
 * (KubeConfig with that CA, a bearer token) talks to it through the service's own request paths
 * (getJson, ClusterClient's typed and raw calls). Connections are counted where they arrive.
 */
import t from 'tap'
import http from 'node:http'
import https from 'node:https'
import type { AddressInfo, Socket } from 'node:net'
import { KubeConfig } from '@kubernetes/client-node'
import { ClusterClient } from '../../src/kube/cluster-client.js'
import { ConnectionPool, apiConnections } from '../../src/kube/connection-pool.js'
import { getJson } from '../../src/kube/get-json.js'
import { generateCertificates } from '../../src/tls/certificates.js'

const certs = await generateCertificates(['127.0.0.1', 'localhost'])

interface TlsApi {
  url: string
  connections: () => number
  requests: string[]
  kubeConfig: (user?: { token?: string; certData?: string; keyData?: string }) => KubeConfig
  closeIdle: () => void
}

/** An HTTPS server answering the few requests below, counting the TCP connections it accepts. */
async function startTlsApi(t: { teardown: (fn: () => unknown) => void }): Promise<TlsApi> {
  let connections = 0
  const sockets = new Set<Socket>()
  const requests: string[] = []
  const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'creds', namespace: 'smart-restore', resourceVersion: '1' }, data: { RESTIC_PASSWORD: Buffer.from('pw').toString('base64') } }
  const server = https.createServer({ cert: certs.cert, key: certs.key, ca: certs.caCert, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    requests.push(`${req.method} ${req.url}`)
    req.resume()
    req.on('end', () => {
      res.setHeader('content-type', 'application/json')
      if (req.url?.startsWith('/api/v1/namespaces/smart-restore/secrets/creds')) return void res.end(JSON.stringify(secret))
      if (req.url?.startsWith('/api/v1/namespaces/media/persistentvolumeclaims')) return void res.end(JSON.stringify({ kind: 'PersistentVolumeClaimList', apiVersion: 'v1', metadata: { resourceVersion: '7' }, items: [] }))
      res.statusCode = 404
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404, message: 'not found' }))
    })
  })
  server.keepAliveTimeout = 60_000
  server.on('connection', (s: Socket) => {
    connections++
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    for (const s of sockets) s.destroy()
    await closed
  })
  return {
    url,
    connections: () => connections,
    requests,
    kubeConfig: (user = { token: 'token-1' }) => {
      const kc = new KubeConfig()
      kc.loadFromOptions({
        clusters: [{ name: 'tls', server: url, caData: Buffer.from(certs.caCert).toString('base64') }],
        users: [{ name: 'u', token: user.token, certData: user.certData, keyData: user.keyData }],
        contexts: [{ name: 'tls', cluster: 'tls', user: 'u' }],
        currentContext: 'tls',
      })
      return kc
    },
    closeIdle: () => {
      for (const s of sockets) s.destroy()
    },
  }
}

t.test('sequential requests of one identity share one TLS connection', async (t) => {
  const api = await startTlsApi(t)
  const kc = api.kubeConfig()
  const client = new ClusterClient(kc, { requestTimeoutMs: 5_000, fieldManager: 'smart-restore' })
  const before = apiConnections.stats.requestsPooled
  for (let i = 0; i < 10; i++) {
    await getJson(kc, '/api/v1/namespaces/media/persistentvolumeclaims', { limit: '500' }, { timeoutMs: 5_000 })
    t.same(await client.readSecretData('smart-restore', 'creds'), { RESTIC_PASSWORD: 'pw' }, `typed read ${i}`)
  }
  t.equal(api.requests.length, 20, '20 requests arrived')
  t.equal(api.connections(), 1, `over ${api.connections()} TCP connection (client-node alone opens one per request)`)
  t.equal(apiConnections.stats.requestsPooled - before, 20, 'every one went through the pool')
})

t.test('concurrent requests open at most as many connections as ran at once, then reuse them', async (t) => {
  const api = await startTlsApi(t)
  const kc = api.kubeConfig()
  const batch = () => Promise.all(Array.from({ length: 8 }, () => getJson(kc, '/api/v1/namespaces/media/persistentvolumeclaims', {}, { timeoutMs: 5_000 })))
  await batch()
  const afterFirst = api.connections()
  t.ok(afterFirst >= 1 && afterFirst <= 8, `first batch of 8: ${afterFirst} connections`)
  await batch()
  await batch()
  t.equal(api.connections(), afterFirst, 'two more batches: no new connection')
})

t.test('a connection the server closed is replaced, not used', async (t) => {
  const api = await startTlsApi(t)
  const kc = api.kubeConfig()
  await getJson(kc, '/api/v1/namespaces/media/persistentvolumeclaims', {}, { timeoutMs: 5_000 })
  api.closeIdle()
  await new Promise((r) => setTimeout(r, 50))
  await getJson(kc, '/api/v1/namespaces/media/persistentvolumeclaims', {}, { timeoutMs: 5_000 })
  t.equal(api.connections(), 2, 'a new connection after the old one was closed by the server')
})

t.test('a different TLS identity gets its own connections; the same identity with another token shares', async (t) => {
  const api = await startTlsApi(t)
  const client = await generateCertificates(['client'])
  await getJson(api.kubeConfig({ token: 'a' }), '/api/v1/namespaces/media/persistentvolumeclaims', {}, { timeoutMs: 5_000 })
  await getJson(api.kubeConfig({ token: 'b' }), '/api/v1/namespaces/media/persistentvolumeclaims', {}, { timeoutMs: 5_000 })
  t.equal(api.connections(), 1, 'bearer tokens travel in headers: one connection for both')
  const withCert = api.kubeConfig({ certData: Buffer.from(client.cert).toString('base64'), keyData: Buffer.from(client.key).toString('base64') })
  await getJson(withCert, '/api/v1/namespaces/media/persistentvolumeclaims', {}, { timeoutMs: 5_000 })
  t.equal(api.connections(), 2, 'a client certificate is another identity: its own connection')
})

t.test('ConnectionPool: plain agents pooled by identity, others untouched, at most 4 identities kept', async (t) => {
  const pool = new ConnectionPool()
  t.teardown(() => pool.destroy())
  t.equal(pool.agentFor(undefined), undefined)
  const a1 = pool.agentFor(new https.Agent({ ca: 'CA-1' }))
  const a2 = pool.agentFor(new https.Agent({ ca: 'CA-1' }))
  t.equal(a1, a2, 'same options → same pooled agent')
  t.not(pool.agentFor(new https.Agent({ ca: 'CA-2' })), a1, 'another CA → another agent')
  t.not(pool.agentFor(new https.Agent({ ca: 'CA-1', rejectUnauthorized: false })), a1, 'verification off is another identity')
  t.equal((a1 as https.Agent & { keepAlive?: boolean }).keepAlive, true, 'keep-alive on')
  const plainHttp = pool.agentFor(new http.Agent())
  t.equal(plainHttp?.constructor, http.Agent, 'http stays http')
  class ProxyAgent extends http.Agent {}
  const proxy = new ProxyAgent()
  t.equal(pool.agentFor(proxy), proxy, 'a proxy agent (a subclass) is left as it is')
  for (let i = 0; i < 6; i++) pool.agentFor(new https.Agent({ ca: `rotated-${i}` }))
  t.equal(pool.stats.agentsCreated, 10, 'one agent per identity seen')
  t.not(pool.agentFor(new https.Agent({ ca: 'CA-1' })), a1, 'the oldest identities were evicted (a new agent for CA-1)')
})
