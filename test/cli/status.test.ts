/**
 * `smart-restore status` against the loopback API server and repositories written by the real
 * restic CLI into s3rver over TLS: every verdict, the summary, --json, exit codes, and the request
 * budget with 200 PVCs.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { EXIT, run } from '../../src/cli/main.js'
import { renderStatus } from '../../src/cli/render-status.js'
import { statusExitCode, statusReport } from '../../src/cli/status.js'
import { createBackupStore } from '../../src/storage/index.js'
import type { BackupStore } from '../../src/storage/types.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { makeResticRepo, resticAvailable, startTlsS3rver } from '../helpers/restic-repos.js'
import { BUCKET, S3RVER_KEY, startS3rver, storeConfig } from '../helpers/storage-servers.js'
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

t.setTimeout(300_000)
const restic = resticAvailable()
const PASSWORD = 'status-test-password-4411'
const NOW = Date.now()
const ago = (minutes: number) => new Date(NOW - minutes * 60_000)
const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')

const PVCS = '/api/v1/persistentvolumeclaims'
const RS = '/apis/volsync.backube/v1alpha1/replicationsources'
const NAMESPACES = '/api/v1/namespaces'

t.test('every verdict, the summary, JSON and exit codes (restic-written repositories)', { skip: restic ? false : 'restic is not installed (apt-get install restic); these tests need the real restic CLI' }, async (t) => {
  const s3 = await startTlsS3rver()
  t.teardown(() => s3.close())
  const api = await startFakeApiServer()
  t.teardown(() => api.close())

  // Repositories as VolSync's movers leave them (hourly tier: late after 2 h).
  await Promise.all([
    makeResticRepo(s3, { key: 'media/fresh-ok', password: PASSWORD, snapshots: [{ time: iso(ago(200)) }, { time: iso(ago(30)) }] }),
    makeResticRepo(s3, { key: 'media/stale', password: PASSWORD, snapshots: [{ time: iso(ago(60 * 27)) }] }),
    makeResticRepo(s3, { key: 'media/foreign', password: PASSWORD, snapshots: [{ time: iso(ago(10)), path: '/srv/other', host: 'nas' }] }),
    makeResticRepo(s3, { key: 'media/locked-out', password: 'another password', snapshots: [{ time: iso(ago(10)) }] }),
    makeResticRepo(s3, { key: 'apps/by-default', password: PASSWORD, snapshots: [{ time: iso(ago(60 * 5)) }] }),
  ])

  api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'media' } })
  api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'smart-restore.io/default-tier': 'daily' } } })
  const pvc = (namespace: string, name: string, labels: Record<string, string>, createdMinutesAgo: number, annotations: Record<string, string> = {}) =>
    api.objects.put(PVCS, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: { name, namespace, labels, annotations, creationTimestamp: iso(ago(createdMinutesAgo)) },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      status: { phase: 'Bound' },
    })
  const rs = (namespace: string, pvcName: string, lastSyncMinutesAgo: number, managedBy = 'smart-restore') =>
    api.objects.put(RS, {
      apiVersion: 'volsync.backube/v1alpha1',
      kind: 'ReplicationSource',
      metadata: { name: `${pvcName}-backup`, namespace, labels: { 'app.kubernetes.io/managed-by': managedBy } },
      spec: { sourcePVC: pvcName },
      status: { lastSyncTime: iso(ago(lastSyncMinutesAgo)), lastSyncDuration: '41.2s', latestMoverStatus: { result: 'Successful', logs: '' } },
    } as never)
  pvc('media', 'fresh-ok', { backup: 'hourly' }, 60 * 24, { 'smart-restore.io/decision': 'restore' })
  rs('media', 'fresh-ok', 30)
  pvc('media', 'stale', { backup: 'hourly' }, 60 * 48, { 'smart-restore.io/decision': 'fresh' })
  rs('media', 'stale', 60 * 27)
  pvc('media', 'never', { backup: 'hourly' }, 60 * 3, { 'smart-restore.io/decision': 'fresh', 'smart-restore.io/attention': 'backups exist at …; not attaching' })
  pvc('media', 'brand-new', { backup: 'hourly' }, 5, { 'smart-restore.io/decision': 'fresh' })
  pvc('media', 'foreign', { backup: 'hourly' }, 60 * 5)
  rs('media', 'foreign', 10, 'someone-else')
  pvc('media', 'locked-out', { backup: 'hourly' }, 60 * 5)
  pvc('media', 'unlabelled', {}, 60)
  pvc('media', 'typo', { backup: 'hourlyy' }, 60)
  pvc('apps', 'by-default', {}, 60 * 24)

  const config: Config = validateConfig({
    ...structuredClone(defaultConfig),
    store: storeConfig(s3.endpoint, { s3: { caBundle: s3.caFile }, probe: { mode: 'restic', deadlineMs: 12_000, cacheTtlMs: 0 } }),
    kube: { mode: 'cluster', requestTimeoutMs: 4000 },
  })
  const store = createBackupStore(config.store, { password: async () => PASSWORD })
  t.teardown(() => store.close())

  const report = await statusReport({ kubeConfig: api.kubeConfig, store, config, concurrency: 4, now: () => new Date(NOW) })
  const by = Object.fromEntries(report.rows.map((r) => [`${r.namespace}/${r.name}`, r]))
  t.same(Object.keys(by), ['apps/by-default', 'media/brand-new', 'media/foreign', 'media/fresh-ok', 'media/locked-out', 'media/never', 'media/stale'], 'labelled PVCs (and the namespace default), sorted; no unlabelled or unknown-tier PVC')

  t.match(by['media/fresh-ok'], { tier: 'hourly', phase: 'Bound', admitted: 'restore', source: 'attached', verdict: 'ok', lastBackup: { time: iso(ago(30)), duration: '41.2s', result: 'Successful' }, restorePoint: { time: iso(ago(30)) } })
  t.ok(Math.abs(by['media/fresh-ok']!.restorePoint!.ageMs - 30 * 60_000) < 1000, 'its age: 30 min')
  t.match(by['media/fresh-ok']!.restorePoint!.id, /^[0-9a-f]{64}$/, 'the id of the snapshot restic wrote')
  t.match(by['media/stale'], { verdict: 'late', source: 'attached', restorePoint: { time: iso(ago(60 * 27)) } })
  t.match(by['media/never'], { verdict: 'none', source: 'refused', attention: ['backups exist at …; not attaching'] })
  t.match(by['media/brand-new'], { verdict: 'new', source: 'missing' })
  t.match(by['media/foreign'], { verdict: 'none', source: 'foreign', why: /none VolSync would restore \(paths \/srv\/other\)/, attention: ['ReplicationSource foreign-backup is not smart-restore\'s'] })
  t.match(by['media/locked-out'], { verdict: 'unknown', why: /cannot be read \(password\)/ })
  t.match(by['apps/by-default'], { tier: 'daily', verdict: 'ok', admitted: 'unknown', source: 'missing' })

  t.same(report.summary.byVerdict, { ok: 2, late: 1, none: 2, new: 1, unknown: 1 })
  t.equal(report.summary.text, '3 of 7 PVCs would come back; 1 late (oldest restore point 27h ago: media/stale), 2 without any backup, 1 new (first backup still to come), 1 unknown (the store could not tell), 2 need a human')
  t.equal(statusExitCode(report), 1)

  const text = renderStatus(report)
  t.match(text, /^PVC +TIER +PHASE +ADMITTED +SOURCE +LAST BACKUP +RESTORE POINT +AGE +VERDICT$/m)
  t.match(text, /^media\/stale +hourly +Bound +fresh +attached +27h ago +\S+Z [0-9a-f]{8} +27h +late$/m)
  t.match(text, /^Needs a human:$/m)
  t.match(text, /^ {2}media\/never: backups exist at …; not attaching$/m)
  t.match(text, /\n3 of 7 PVCs would come back; .*\n$/)
  for (const secret of [PASSWORD, S3RVER_KEY]) t.notOk(text.includes(secret) || JSON.stringify(report).includes(secret), 'no secret in the report')

  // Only one namespace, all fine: exit 0.
  const apps = await statusReport({ kubeConfig: api.kubeConfig, store, config, namespace: 'apps', concurrency: 2, now: () => new Date(NOW) })
  t.same(apps.rows.map((r) => r.name), ['by-default'])
  t.equal(apps.summary.text, '1 of 1 PVC would come back')
  t.equal(statusExitCode(apps), 0)

  // The CLI: --json, --namespace, exit codes, usage errors.
  const dir = await mkdtemp(join(tmpdir(), 'status-cli-'))
  const kubeconfig = join(dir, 'kubeconfig')
  await writeFile(kubeconfig, `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${api.url}\n    insecure-skip-tls-verify: true\nusers:\n- name: fake\n  user:\n    token: ${api.token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n`)
  const passwordFile = join(dir, 'password')
  await writeFile(passwordFile, PASSWORD)
  const env = { PATH: process.env.PATH, KUBECONFIG: kubeconfig, SMART_RESTORE_STORE: 's3', S3_ENDPOINT: s3.endpoint, S3_BUCKET: BUCKET, S3_FORCE_PATH_STYLE: 'true', S3_ACCESS_KEY_ID: S3RVER_KEY, S3_SECRET_ACCESS_KEY: S3RVER_KEY, S3_CA_BUNDLE: s3.caFile, SMART_RESTORE_PASSWORD_FILE: passwordFile, SMART_RESTORE_PROBE_DEADLINE_MS: '12000' }
  const capture = () => {
    const out = { stdout: '', stderr: '' }
    return { out, io: { stdout: (s: string) => (out.stdout += s), stderr: (s: string) => (out.stderr += s), env, isTty: () => true } }
  }
  let c = capture()
  t.equal(await run(['status', '--json'], c.io), EXIT.attention, c.out.stderr)
  const json = JSON.parse(c.out.stdout)
  t.equal(json.rows.length, 7)
  t.equal(json.summary.byVerdict.late, 1)
  t.equal(c.out.stderr, '', '--json: no progress line')
  c = capture()
  t.equal(await run(['status', '-n', 'apps'], c.io), EXIT.ok, c.out.stderr)
  t.match(c.out.stdout, /^apps\/by-default +daily/m)
  t.match(c.out.stderr, /reading the store: 1\/1 PVCs\n$/, 'a progress line on a terminal')
  c = capture()
  t.equal(await run(['status', 'media/x'], c.io), EXIT.usage)
  t.match(c.out.stderr, /status takes no arguments/)
  c = capture()
  t.equal(await run(['status', '--concurrency', '0'], c.io), EXIT.usage)
  t.match(c.out.stderr, /--concurrency must be an integer from 1 to 64/)
  c = capture()
  t.equal(await run(['check', 'media/x', '-n', 'media'], c.io), EXIT.usage)
})

t.test('request budget: 200 PVCs, one LIST each, never more probes at once than --concurrency', async (t) => {
  const s3 = await startS3rver()
  t.teardown(() => s3.close())
  const api = await startFakeApiServer()
  t.teardown(() => api.close())
  api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bulk' } })
  for (let i = 0; i < 200; i++) {
    api.objects.put(PVCS, { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: `pvc-${String(i).padStart(3, '0')}`, namespace: 'bulk', labels: { backup: 'daily' }, creationTimestamp: iso(ago(60 * 24 * 3)) }, spec: {}, status: { phase: 'Bound' } })
  }
  const config: Config = validateConfig({ ...structuredClone(defaultConfig), store: storeConfig(s3.endpoint, { probe: { mode: 'restic', cacheTtlMs: 0, deadlineMs: 10_000 } }), kube: { mode: 'cluster', requestTimeoutMs: 5000 } })
  const inner = createBackupStore(config.store)
  t.teardown(() => inner.close())
  let inFlight = 0
  let peak = 0
  const store: BackupStore = Object.assign(Object.create(inner), {
    probe: async (key: string) => {
      peak = Math.max(peak, ++inFlight)
      try {
        return await inner.probe(key)
      } finally {
        inFlight--
      }
    },
  })
  const before = s3.log.length
  let progress = 0
  const report = await statusReport({ kubeConfig: api.kubeConfig, store, config, concurrency: 8, onProgress: (done) => (progress = done) })
  const requests = s3.log.slice(before)
  t.equal(report.rows.length, 200)
  t.equal(report.summary.byVerdict.none, 200, 'nothing backed up: none, all of them')
  t.equal(requests.length, 200, 'one S3 request per PVC (LIST of its snapshots/, nothing in it)')
  t.ok(requests.every((r) => r.method === 'GET' && /prefix=/.test(r.path)), 'all LISTs')
  t.ok(peak <= 8 && peak >= 2, `at most 8 probes at once (peak ${peak})`)
  t.equal(progress, 200)
  t.equal(report.summary.text, '0 of 200 PVCs would come back; 200 without any backup')
})
