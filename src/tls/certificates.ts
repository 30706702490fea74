/**
 * A CA and a serving certificate signed by it, made with `selfsigned`. Used for the development
 * certificate at startup (when no certificate files are configured) and by `npm run certs`.
 * The apiserver verifies the serving certificate against the caBundle by SAN, never by CN.
 *
 * `selfsigned` (and @peculiar/x509 under it) is imported when a certificate is made, not with this
 * module: a deployed service reads its certificate from files and never loads it (~2 MiB of heap
 * and more RSS saved; the build puts it in a chunk of its own).
 */
import { isIP } from 'node:net'

export interface CertificateSet {
  caCert: string
  caKey: string
  cert: string
  key: string
}

export async function generateCertificates(hosts: string[], days = 365): Promise<CertificateSet> {
  // A CommonJS module: its exports are the namespace's `default`, under Node and in the bundle alike.
  const { generate } = (await import('selfsigned')).default
  const notBeforeDate = new Date(Date.now() - 5 * 60_000) // tolerate small clock skew
  const notAfterDate = new Date(notBeforeDate.getTime() + days * 86_400_000)
  const ca = await generate([{ name: 'commonName', value: 'smart-restore CA' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  })
  const unique = [...new Set(hosts.filter(Boolean))]
  const serving = await generate([{ name: 'commonName', value: unique[0] ?? 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate,
    notAfterDate,
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: unique.map((h) => (isIP(h) ? { type: 7 as const, ip: h } : { type: 2 as const, value: h })) },
    ],
  })
  return { caCert: ca.cert, caKey: ca.private, cert: serving.cert, key: serving.private }
}
