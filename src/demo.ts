/**
 * `npm run demo`: the service in standalone mode over a throw-away local backup store, answering
 * three PVC CREATEs the way the apiserver sends them: one with a backup (restore), one without
 * (fresh), one with an unknown tier (denied). Nothing outside a temp directory is touched.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateConfig } from './config/load.js'
import { defaultConfig } from './config/schema.js'
import { createLogger } from './log.js'
import { startService } from './service.js'

function createReview(name: string, tier: string, uid: string): string {
  return JSON.stringify({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'PersistentVolumeClaim' },
      resource: { group: '', version: 'v1', resource: 'persistentvolumeclaims' },
      name,
      namespace: 'media',
      operation: 'CREATE',
      object: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name, namespace: 'media', labels: { backup: tier } },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } }, storageClassName: 'longhorn', volumeMode: 'Filesystem' },
        status: { phase: 'Pending' },
      },
      oldObject: null,
      dryRun: false,
    },
  })
}

function post(url: string, ca: string | undefined, body: string): Promise<any> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', ca, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => resolve(JSON.parse(text)))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'smart-restore-demo-'))
  const repo = join(dir, 'media', 'data-claim')
  mkdirSync(join(repo, 'snapshots'), { recursive: true })
  writeFileSync(join(repo, 'config'), '')
  writeFileSync(join(repo, 'snapshots', '4f1c0e'.padEnd(64, '0')), '{}')

  const config = validateConfig({
    ...structuredClone(defaultConfig),
    server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: -1 },
    store: { ...structuredClone(defaultConfig.store), local: { directory: dir } },
    kube: { ...defaultConfig.kube, mode: 'standalone' },
  })
  const service = await startService(config, { logger: createLogger('error') })
  console.log(`smart-restore (standalone) on ${service.url}; backup store ${dir} holds one snapshot of media/data-claim\n`)
  try {
    const cases: Array<[string, string, string]> = [
      ['data-claim', 'hourly', 'a PVC whose backup exists'],
      ['cache', 'daily', 'a PVC with no backup'],
      ['scratch', 'sometimes', 'a PVC with an unknown tier'],
    ]
    for (const [i, [name, tier, what]] of cases.entries()) {
      const review = await post(`${service.url}/mutate`, service.caCert, createReview(name, tier, `demo-${i}`))
      const r = review.response
      console.log(`▶ ${what}: media/${name} (backup=${tier})`)
      console.log(`  allowed: ${r.allowed}`)
      if (r.patch) {
        for (const op of JSON.parse(Buffer.from(r.patch, 'base64').toString())) console.log(`  patch:   ${op.op} ${op.path} ${JSON.stringify(op.value)}`)
      }
      for (const w of r.warnings ?? []) console.log(`  warning: ${w}`)
      if (r.status) console.log(`  denied (${r.status.code}): ${r.status.message}`)
      console.log()
    }
  } finally {
    await service.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
