/**
 * The baseline: a bare fastify HTTPS server answering every POST with a constant allowed
 * AdmissionReview, in its own process like the service (bench/run.ts starts it). Same TLS setup as
 * the service's development certificate; fastify's defaults otherwise (its JSON body parser runs).
 */
import Fastify from 'fastify'
import type { AddressInfo } from 'node:net'
import { generateCertificates } from '../src/tls/certificates.js'

const tls = await generateCertificates(['localhost', '127.0.0.1'], 30)
const app = Fastify({ https: { key: tls.key, cert: tls.cert }, keepAliveTimeout: 95_000 })
const ALLOWED = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: '76e5961c-06ad-4ad2-a0ec-5ba8573f0c8b', allowed: true } }
app.post('/mutate', async () => ALLOWED)
app.post('/validate', async () => ALLOWED)
await app.listen({ host: '127.0.0.1', port: 0 })
const port = (app.server.address() as AddressInfo).port
process.send?.({ type: 'ready', url: `https://127.0.0.1:${port}`, port, caCert: tls.caCert, pid: process.pid })
// The runner gone (killed, crashed): nothing is left running.
process.on('disconnect', () => process.exit(0))
process.on('message', (m: { type: string }) => {
  if (m.type === 'stop') app.close().then(() => process.exit(0))
})
