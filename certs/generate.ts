/**
 * `npm run certs [-- --namespace smart-restore --service smart-restore --out certs/out --days 365 --force]`
 *
 * A private CA and a serving certificate for the webhook Service (without cert-manager), made by
 * the same generateCertificates the service uses for its development certificate, and everything
 * the cluster needs to use them, in the out directory:
 *
 *   ca.crt, ca.key            the CA (ca.key: mode 0600; keep it out of git: certs/out/ is ignored)
 *   tls.crt, tls.key          the serving certificate for <service>, <service>.<ns>,
 *                             <service>.<ns>.svc, <service>.<ns>.svc.cluster.local (tls.key: 0600)
 *   tls-secret.yaml           Secret smart-restore-tls (kubernetes.io/tls, plus ca.crt), mounted by
 *                             the Deployment at /tls (0600: it holds the private key)
 *   mutating-webhook.yaml     webhook-config/*.yaml with caBundle filled in (comments kept), and
 *   validating-webhook.yaml   clientConfig.service pointed at --namespace/--service
 *   Kustomization             `kubectl apply -k <out>`: deploy/ plus the three manifests above in
 *                             one apply (no extension, so `kubectl apply -f <out>` skips it)
 *
 * `kubectl apply -f <out>` applies the three manifests (kubectl reads only .yaml/.yml/.json files).
 * See certs/README.md.
 */
import { X509Certificate } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { parseDocument, stringify } from 'yaml'
import { generateCertificates } from '../src/tls/certificates.js'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
export const WEBHOOK_CONFIG_DIR = join(ROOT, 'webhook-config')
export const DEPLOY_DIR = join(ROOT, 'deploy')
/** The files of webhook-config/ that are webhook configurations (kustomization.yaml is not one). */
export const WEBHOOK_FILES = ['mutating-webhook.yaml', 'validating-webhook.yaml'] as const
/** The Secret the Deployment mounts at /tls (deploy/base/deployment.yaml), as cert-manager writes it too. */
export const TLS_SECRET_NAME = 'smart-restore-tls'
/** Namespace and Service that deploy/ and webhook-config/ are written for. */
export const DEFAULT_NAMESPACE = 'smart-restore'
export const DEFAULT_SERVICE = 'smart-restore'

export interface GenerateOptions {
  namespace: string
  service: string
  /** Directory to write into (created, mode 0700). */
  out: string
  /** Validity of the CA and of the serving certificate. */
  days: number
  /** Overwrite an out directory that already holds a CA. */
  force?: boolean
}

export interface GenerateResult {
  dnsNames: string[]
  files: string[]
  /** PEM of the CAs in the webhooks' caBundle: the new CA, then the previous one when rotating. */
  caBundlePem: string
  /** False when the namespace or Service is not the one deploy/ is written for. */
  kustomization: boolean
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

export function serviceDnsNames(service: string, namespace: string): string[] {
  return [service, `${service}.${namespace}`, `${service}.${namespace}.svc`, `${service}.${namespace}.svc.cluster.local`]
}

function writeFile(path: string, text: string, mode: number, files: string[]): void {
  writeFileSync(path, text, { mode })
  chmodSync(path, mode) // the mode of writeFileSync applies only to a file it creates
  files.push(path)
}

/** The previous CA of a rotation, kept in the caBundle so pods still serving the old certificate stay trusted. */
function previousCa(out: string): string | undefined {
  const path = join(out, 'ca.crt')
  if (!existsSync(path)) return undefined
  try {
    const pem = readFileSync(path, 'utf8')
    const cert = new X509Certificate(pem)
    return cert.ca && Date.parse(cert.validTo) > Date.now() ? pem : undefined
  } catch {
    return undefined
  }
}

/** A webhook configuration of webhook-config/ with caBundle and clientConfig.service set; comments kept. */
function webhookConfiguration(file: string, caBundle: string, namespace: string, service: string): string {
  const doc = parseDocument(readFileSync(join(WEBHOOK_CONFIG_DIR, file), 'utf8'))
  if (doc.errors.length) throw new Error(`webhook-config/${file}: ${doc.errors[0]!.message}`)
  const webhooks = doc.get('webhooks')
  const count = (webhooks as { items?: unknown[] } | undefined)?.items?.length ?? 0
  if (count === 0) throw new Error(`webhook-config/${file} has no webhooks`)
  for (let i = 0; i < count; i++) {
    if (!doc.hasIn(['webhooks', i, 'clientConfig', 'service'])) throw new Error(`webhook-config/${file}: webhooks[${i}] does not call a Service`)
    doc.setIn(['webhooks', i, 'clientConfig', 'caBundle'], caBundle)
    doc.setIn(['webhooks', i, 'clientConfig', 'service', 'namespace'], namespace)
    doc.setIn(['webhooks', i, 'clientConfig', 'service', 'name'], service)
    if (namespace !== DEFAULT_NAMESPACE) {
      // The service's own namespace is never sent to the webhook (webhook-config/README.md).
      const exprs = doc.getIn(['webhooks', i, 'namespaceSelector', 'matchExpressions']) as { items?: unknown[] } | undefined
      for (let j = 0; j < (exprs?.items?.length ?? 0); j++) {
        const values = doc.getIn(['webhooks', i, 'namespaceSelector', 'matchExpressions', j, 'values']) as { items?: Array<{ value?: unknown }> } | undefined
        for (const [k, item] of (values?.items ?? []).entries()) {
          if (doc.getIn(['webhooks', i, 'namespaceSelector', 'matchExpressions', j, 'operator']) === 'NotIn' && item.value === DEFAULT_NAMESPACE) {
            doc.setIn(['webhooks', i, 'namespaceSelector', 'matchExpressions', j, 'values', k], namespace)
          }
        }
      }
    }
  }
  const header = `# Generated by \`npm run certs\` from webhook-config/${file}: caBundle filled in. Do not edit; regenerate.\n`
  return header + doc.toString({ lineWidth: 0 })
}

export async function generate(opts: GenerateOptions): Promise<GenerateResult> {
  const { namespace, service, days } = opts
  if (!DNS1123_LABEL.test(namespace) || namespace.length > 63) throw new Error(`--namespace ${JSON.stringify(namespace)} is not a valid namespace name`)
  if (!DNS1123_LABEL.test(service) || service.length > 63) throw new Error(`--service ${JSON.stringify(service)} is not a valid Service name`)
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new Error(`--days must be a whole number of days between 1 and 3650, got ${days}`)
  const out = resolve(opts.out)
  const previous = previousCa(out)
  if (existsSync(join(out, 'ca.key')) && !opts.force) {
    throw new Error(`${out} already holds a CA (ca.key). Rerun with --force to make a new one (the current CA stays in the caBundle while it is valid; see certs/README.md "Renewing")`)
  }
  mkdirSync(out, { recursive: true, mode: 0o700 })

  const dnsNames = serviceDnsNames(service, namespace)
  const set = await generateCertificates(dnsNames, days)
  const caBundlePem = previous && previous.trim() !== set.caCert.trim() ? `${set.caCert.trim()}\n${previous.trim()}\n` : set.caCert
  const caBundle = Buffer.from(caBundlePem).toString('base64')
  const b64 = (s: string) => Buffer.from(s).toString('base64')

  const files: string[] = []
  writeFile(join(out, 'ca.crt'), set.caCert, 0o644, files)
  writeFile(join(out, 'ca.key'), set.caKey, 0o600, files)
  writeFile(join(out, 'tls.crt'), set.cert, 0o644, files)
  writeFile(join(out, 'tls.key'), set.key, 0o600, files)

  const secret = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: TLS_SECRET_NAME,
      namespace,
      labels: { 'app.kubernetes.io/name': 'smart-restore', 'app.kubernetes.io/part-of': 'smart-restore' },
      annotations: { 'argocd.argoproj.io/sync-wave': '-10' },
    },
    type: 'kubernetes.io/tls',
    data: { 'tls.crt': b64(set.cert), 'tls.key': b64(set.key), 'ca.crt': b64(set.caCert) },
  }
  writeFile(
    join(out, 'tls-secret.yaml'),
    `# Generated by \`npm run certs\`: the serving certificate of ${dnsNames[2]}, mounted at /tls.\n# Holds the private key: do not commit it.\n${stringify(secret, { lineWidth: 0 })}`,
    0o600,
    files,
  )
  for (const file of WEBHOOK_FILES) writeFile(join(out, file), webhookConfiguration(file, caBundle, namespace, service), 0o644, files)

  // deploy/ is written for namespace and Service smart-restore: an overlay of it only makes sense then.
  const kustomization = namespace === DEFAULT_NAMESPACE && service === DEFAULT_SERVICE
  if (kustomization) {
    const base = relative(out, DEPLOY_DIR).split(sep).join('/') || '.'
    const text = [
      '# Generated by `npm run certs`. `kubectl apply -k <this directory>`: deploy/ together with the TLS',
      '# Secret and the webhook configurations with their caBundle, in one apply, so re-applying never',
      '# resets the caBundle to the empty placeholder of webhook-config/. No file extension on purpose:',
      '# `kubectl apply -f <this directory>` reads only .yaml/.yml/.json files and skips this one.',
      'apiVersion: kustomize.config.k8s.io/v1beta1',
      'kind: Kustomization',
      'resources:',
      `  - ${base}`,
      '  - tls-secret.yaml',
      'patches:',
      ...WEBHOOK_FILES.map((f) => `  - path: ${f}`),
      '',
    ].join('\n')
    writeFile(join(out, 'Kustomization'), text, 0o644, files)
  }
  // Anything else in the directory is left alone but listed, so a stale file is not applied unnoticed.
  return { dnsNames, files, caBundlePem, kustomization }
}

function usage(): string {
  return 'usage: npm run certs [-- --namespace smart-restore --service smart-restore --out certs/out --days 365 --force]'
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      namespace: { type: 'string', default: DEFAULT_NAMESPACE },
      service: { type: 'string', default: DEFAULT_SERVICE },
      out: { type: 'string' },
      days: { type: 'string', default: '365' },
      force: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(`${usage()}\n`)
    return
  }
  // --out relative to where the command was typed (npm runs scripts in the package root).
  const cwd = process.env.INIT_CWD ?? process.cwd()
  const out = values.out ? resolve(cwd, values.out) : join(ROOT, 'certs', 'out')
  const result = await generate({ namespace: values.namespace, service: values.service, out, days: Number(values.days), force: values.force })
  const shown = relative(cwd, out) || '.'
  const lines = [
    `smart-restore certificates for ${result.dnsNames.join(', ')} (valid ${values.days} days) in ${shown}/:`,
    ...result.files.map((f) => `  ${relative(out, f)}`),
  ]
  const extra = readdirSync(out).filter((f) => !result.files.includes(join(out, f)))
  if (extra.length) lines.push(`  (also there, not written now: ${extra.join(', ')})`)
  if (result.caBundlePem.split('BEGIN CERTIFICATE').length > 2) lines.push('The caBundle holds the new CA and the previous one (rotation: see certs/README.md "Renewing").')
  lines.push(
    '',
    result.kustomization ? `Deploy everything:           kubectl apply -k ${shown}` : `(No Kustomization written: deploy/ is for namespace and Service ${DEFAULT_NAMESPACE}.)`,
    `Or only Secret and webhooks: kubectl apply -f ${shown}   (after kubectl apply -k deploy/)`,
  )
  process.stdout.write(`${lines.join('\n')}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`smart-restore certs: ${err instanceof Error ? err.message : String(err)}\n${usage()}\n`)
    process.exit(1)
  })
}
