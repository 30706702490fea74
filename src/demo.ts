/**
 * `npm run demo`: the service in standalone mode over a throw-away local backup store holding a real
 * restic repository (the format the restic CLI reads, see storage/restic/writer.ts), answering four
 * PVC CREATEs the way the apiserver sends them: one with a backup (restore, naming the snapshot),
 * one asking for a point in time older than every snapshot (denied, never an empty restore), one
 * without a backup (fresh), one with an unknown tier (denied). Nothing outside a temp directory is
 * touched.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateConfig } from './config/load.js'
import { defaultConfig } from './config/schema.js'
import { createLogger } from './log.js'
import { startService } from './service.js'
import { writeResticRepository } from './storage/restic/writer.js'

function createReview(name: string, tier: string, uid: string, annotations: Record<string, string> = {}): string {
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
        metadata: { name, namespace: 'media', labels: { backup: tier }, annotations },
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
  const password = 'demo-password-not-a-secret'
  const passwordFile = join(dir, 'restic-password')
  writeFileSync(passwordFile, password)
  const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000).toISOString()
  const restic = await writeResticRepository(password, [
    { time: hoursAgo(26), paths: ['/data'], hostname: 'volsync' },
    { time: hoursAgo(2), paths: ['/data'], hostname: 'volsync' },
  ])
  for (const [path, body] of restic.files) {
    const file = join(dir, 'media', 'data-claim', path)
    mkdirSync(join(file, '..'), { recursive: true })
    writeFileSync(file, body)
  }

  const config = validateConfig({
    ...structuredClone(defaultConfig),
    server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: -1 },
    // probe.mode restic (the default): the service opens the repository with this password.
    store: { ...structuredClone(defaultConfig.store), local: { directory: dir }, passwordFile },
    kube: { ...defaultConfig.kube, mode: 'standalone' },
  })
  const service = await startService(config, { logger: createLogger('error') })
  console.log(`smart-restore (standalone) on ${service.url}; backup store ${dir} holds a restic repository of media/data-claim with 2 snapshots\n`)
  try {
    const asOf = { 'smart-restore.io/restore-as-of': hoursAgo(24 * 7) }
    const cases: Array<[string, string, string, Record<string, string>?]> = [
      ['data-claim', 'hourly', 'a PVC whose backup exists'],
      ['data-claim', 'hourly', `the same PVC asked for its data as of ${asOf['smart-restore.io/restore-as-of']}, before every snapshot`, asOf],
      ['cache', 'daily', 'a PVC with no backup'],
      ['scratch', 'sometimes', 'a PVC with an unknown tier'],
    ]
    for (const [i, [name, tier, what, annotations]] of cases.entries()) {
      const review = await post(`${service.url}/mutate`, service.caCert, createReview(name, tier, `demo-${i}`, annotations))
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
