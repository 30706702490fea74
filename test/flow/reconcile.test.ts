/**
 * Backup sources follow the tier label, with real parts: the service's reconciler watches a
 * loopback API server through the real client-node, probes a real s3rver, and writes with
 * server-side apply. PVCs are "bound" by writing their status, as the controller-manager would.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { captureLogger } from '../helpers/capture-log.js'
import { find, parseMetrics, scrape, value } from '../helpers/metrics.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'
import { emptyRestoreStatus, failedRestoreStatus, restoredStatus, writeRdStatus } from '../helpers/rd-status.js'
import { seed, startS3rver, storeConfig } from '../helpers/storage-servers.js'
import { steady } from '../helpers/wait.js'

const PVCS = '/api/v1/persistentvolumeclaims'
const RS = '/apis/volsync.backube/v1alpha1/replicationsources'
const RD = '/apis/volsync.backube/v1alpha1/replicationdestinations'
const SECRETS = '/api/v1/secrets'
const EVENTS = '/api/v1/events'
const NAMESPACES = '/api/v1/namespaces'

const s3 = await startS3rver()
t.teardown(() => s3.close())
await seed(s3.endpoint, [`apps/old-data/snapshots/${'ab'.repeat(32)}`, `apps/restored/snapshots/${'cd'.repeat(32)}`])

const api = await startFakeApiServer()
t.teardown(() => api.close())
api.objects.put(NAMESPACES, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps', labels: { 'kubernetes.io/metadata.name': 'apps' } } })
api.objects.put(SECRETS, {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
  data: { RESTIC_PASSWORD: Buffer.from('pw').toString('base64'), AWS_ACCESS_KEY_ID: Buffer.from('k').toString('base64'), AWS_SECRET_ACCESS_KEY: Buffer.from('s').toString('base64') },
})

const config: Config = validateConfig({
  ...structuredClone(defaultConfig),
  server: { ...defaultConfig.server, host: '127.0.0.1', port: 0, metricsPort: 0 },
  store: storeConfig(s3.endpoint, { probe: { deadlineMs: 1500, cacheTtlMs: 0 } }),
  kube: { mode: 'cluster', requestTimeoutMs: 1000 },
  reconciler: { enabled: true, resyncMs: 60_000, workers: 2 },
  // The second replica below must reconcile too (and converge): no leader election here.
  leaderElection: { ...defaultConfig.leaderElection, enabled: false },
})
const log = captureLogger('info')
const service: ServiceHandle = await startService(config, { logger: log.logger, kubeConfig: api.kubeConfig, watch: { rediscoverMs: 1000 } })
t.teardown(() => service.close())

function pvc(name: string, labels: Record<string, string>, annotations: Record<string, string> = {}, extra: Record<string, unknown> = {}) {
  return api.objects.put(PVCS, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, namespace: 'apps', labels, annotations },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, storageClassName: 'longhorn', ...extra },
    status: { phase: 'Pending' },
  })
}
const bind = (name: string) => api.objects.update(PVCS, 'apps', name, (o: any) => (o.status = { phase: 'Bound' }))
const source = (name: string) => api.objects.get(RS, 'apps', `${name}-backup`) as any
const events = (name: string) => api.objects.list(EVENTS, 'apps').filter((e: any) => e.involvedObject?.name === name).map((e: any) => `${e.reason}: ${e.message}`)

async function eventually<T>(what: string, check: () => T | undefined | false, ms = 8000): Promise<T> {
  const until = Date.now() + ms
  for (;;) {
    const v = check()
    if (v) return v
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

t.test('a fresh labelled PVC gets its ReplicationSource once Bound, not before', async (t) => {
  const created = pvc('fresh', { backup: 'hourly' }, { 'smart-restore.io/decision': 'fresh' })
  await new Promise((r) => setTimeout(r, 300))
  t.equal(source('fresh'), undefined, 'nothing while Pending')
  bind('fresh')
  const rs = await eventually('the ReplicationSource', () => source('fresh'))
  t.equal(rs.spec.sourcePVC, 'fresh')
  t.match(rs.spec.trigger.schedule, /^\d{1,2} \* \* \* \*$/, 'hourly, at a minute spread by name')
  t.same(rs.spec.restic.retain, { hourly: 24, daily: 7, weekly: 4 }, 'always a retain policy')
  t.equal(rs.spec.restic.repository, 'fresh-restic')
  t.equal(rs.spec.restic.copyMethod, 'Snapshot')
  t.match(rs.metadata.ownerReferences, [{ kind: 'PersistentVolumeClaim', name: 'fresh', uid: created.metadata.uid }])
  t.equal(rs.metadata.labels['app.kubernetes.io/managed-by'], 'smart-restore')
  const secret = api.objects.get(SECRETS, 'apps', 'fresh-restic') as any
  t.equal(Buffer.from(secret.data.RESTIC_REPOSITORY, 'base64').toString(), `s3:${s3.endpoint}/backups/apps/fresh`)
  t.match(secret.metadata.ownerReferences, [{ uid: created.metadata.uid }])
  const applies = api.requests.filter((r: any) => r.method === 'PATCH' && r.path.endsWith('/replicationsources/fresh-backup'))
  t.ok(applies.length >= 1)
  t.equal(applies[0]!.contentType, 'application/apply-patch+yaml', 'server-side apply')
  t.equal(applies[0]!.query.fieldManager, 'smart-restore')
  await eventually('the BackupAttached Event', () => events('fresh').find((e) => e.startsWith('BackupAttached')))
  // Reconciling again (a resync) finds the cached source equal to the desired one: no write, no Event.
  const rsVersion = source('fresh').metadata.resourceVersion
  const appliesBefore = api.requests.filter((r: any) => r.method === 'PATCH' && r.path.endsWith('/replicationsources/fresh-backup')).length
  api.objects.update(PVCS, 'apps', 'fresh', (o: any) => (o.metadata.labels['example.com/touched'] = 'yes')) // any change queues the PVC
  await new Promise((r) => setTimeout(r, 500))
  t.equal(source('fresh').metadata.resourceVersion, rsVersion, 'an up-to-date source is left alone')
  t.equal(api.requests.filter((r: any) => r.method === 'PATCH' && r.path.endsWith('/replicationsources/fresh-backup')).length, appliesBefore, 'not even re-applied')
  t.notOk(events('fresh').some((e) => e.startsWith('BackupUpdated')), 'no BackupUpdated churn')
})

t.test('changing the tier changes the source; removing the label removes it (S3 untouched)', async (t) => {
  api.objects.update(PVCS, 'apps', 'fresh', (o: any) => (o.metadata.labels.backup = 'daily'))
  const rs = await eventually('the daily schedule', () => (source('fresh')?.spec.trigger.schedule.endsWith(' * * *') && !source('fresh').spec.trigger.schedule.includes(' * * * *') ? source('fresh') : undefined))
  t.match(rs.spec.trigger.schedule, /^\d{1,2} [0-5] \* \* \*$/, 'daily, hour within H(0-5)')
  t.same(rs.spec.restic.retain, { daily: 14, weekly: 8, monthly: 6 })
  await eventually('the TierChanged Event', () => events('fresh').find((e) => /TierChanged: backup tier hourly → daily/.test(e)))
  const s3Before = s3.requests()
  api.objects.update(PVCS, 'apps', 'fresh', (o: any) => delete o.metadata.labels.backup)
  await eventually('the source to be deleted', () => source('fresh') === undefined)
  t.equal(s3.requests(), s3Before, 'no S3 request: backups in S3 are never touched')
  await eventually('the BackupDetached Event', () => events('fresh').find((e) => e.startsWith('BackupDetached')))
})

t.test('never back up a fresh volume over an existing repository', async (t) => {
  pvc('old-data', { backup: 'hourly' }, { 'smart-restore.io/decision': 'fresh' })
  bind('old-data')
  const refused = await eventually('the attention annotation', () => (api.objects.get(PVCS, 'apps', 'old-data') as any).metadata.annotations['smart-restore.io/attention'])
  t.match(refused, /backups exist at s3:\/\/backups\/apps\/old-data/)
  t.equal(source('old-data'), undefined, 'no source attached')
  await eventually('the RefusedToAttach Event', () => events('old-data').find((e) => e.startsWith('RefusedToAttach')))
  api.objects.update(PVCS, 'apps', 'old-data', (o: any) => (o.metadata.annotations['smart-restore.io/backup-over-existing'] = 'old data is from a deleted app, not wanted'))
  await eventually('the source after the acknowledgement', () => source('old-data'))
  await eventually('the attention annotation cleared', () => (api.objects.get(PVCS, 'apps', 'old-data') as any).metadata.annotations['smart-restore.io/attention'] === undefined)
  t.pass('attached after a human acknowledged it')
})

t.test('a restored PVC is backed up once Bound, and adopts its ReplicationDestination', async (t) => {
  api.objects.put(RD, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'restored-restore', namespace: 'apps', labels: { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': 'restored' } }, spec: { trigger: { manual: 'smart-restore' }, restic: { repository: 'restored-restic', copyMethod: 'Snapshot' } } })
  const created = pvc('restored', { backup: 'weekly' }, { 'smart-restore.io/decision': 'restore', 'smart-restore.io/restore-source': 's3://backups/apps/restored' }, { dataSourceRef: { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'restored-restore' } })
  await eventually('the RD to be owned by the PVC', () => (api.objects.get(RD, 'apps', 'restored-restore') as any).metadata.ownerReferences?.some((r: any) => r.uid === created.metadata.uid))
  await eventually('the RestoreStarted Event', () => events('restored').find((e) => e.startsWith('RestoreStarted')))
  const probesBefore = s3.requests()
  // VolSync reports the restore through the status subresource; the populator then binds the PVC.
  await writeRdStatus(api, 'apps', 'restored-restore', restoredStatus('cdcdcdcd'))
  bind('restored')
  const rs = await eventually('the weekly source', () => source('restored'))
  t.match(rs.spec.trigger.schedule, /^\d{1,2} [0-5] \* \* 0$/)
  t.equal(s3.requests(), probesBefore, 'restored from its own repository: no probe needed')
  await eventually('the BackupAttached Event', () => events('restored').find((e) => e.startsWith('BackupAttached')))
})

t.test('a restore that restored nothing is never backed up; the human acknowledgement attaches it', async (t) => {
  const rdMeta = { labels: { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': 'emptied' }, annotations: { 'smart-restore.io/pvc': 'emptied' } }
  api.objects.put(RD, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'emptied-restore', namespace: 'apps', ...rdMeta }, spec: { trigger: { manual: 'smart-restore' }, restic: { repository: 'emptied-restic', copyMethod: 'Snapshot' } } })
  pvc('emptied', { backup: 'hourly' }, { 'smart-restore.io/decision': 'restore', 'smart-restore.io/restore-source': 's3://backups/apps/emptied' }, { dataSourceRef: { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'emptied-restore' } })
  await writeRdStatus(api, 'apps', 'emptied-restore', emptyRestoreStatus())
  bind('emptied')
  const attention = await eventually('the attention annotation', () => (api.objects.get(PVCS, 'apps', 'emptied') as any).metadata.annotations['smart-restore.io/attention'])
  t.match(attention, /restored NOTHING .*"No eligible snapshots found", "=== No data will be restored ==="/)
  const event = await eventually('the RestoreEmpty Event', () => events('emptied').find((e) => e.startsWith('RestoreEmpty')))
  t.match(event, /^RestoreEmpty: the restore from s3:\/\/backups\/apps\/emptied restored NOTHING/)
  t.equal((api.objects.list(EVENTS, 'apps').find((e: any) => e.reason === 'RestoreEmpty') as any).type, 'Warning')
  await new Promise((r) => setTimeout(r, 300))
  t.equal(source('emptied'), undefined, 'no backup source: the empty volume is not backed up')
  t.equal(api.objects.get(SECRETS, 'apps', 'emptied-restic'), undefined, 'nor its repository Secret written')

  api.objects.update(PVCS, 'apps', 'emptied', (o: any) => (o.metadata.annotations['smart-restore.io/backup-over-existing'] = 'the app seeds itself; start backing up'))
  await eventually('the source after the acknowledgement', () => source('emptied'))
  await eventually('the attention annotation cleared', () => (api.objects.get(PVCS, 'apps', 'emptied') as any).metadata.annotations['smart-restore.io/attention'] === undefined)
  t.pass()
})

t.test('a failed restore on a Pending PVC is reported at once', async (t) => {
  api.objects.put(RD, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', metadata: { name: 'broken-restore', namespace: 'apps', labels: { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': 'broken' }, annotations: { 'smart-restore.io/pvc': 'broken' } }, spec: { trigger: { manual: 'smart-restore' }, restic: { repository: 'broken-restic', copyMethod: 'Snapshot' } } })
  pvc('broken', { backup: 'hourly' }, { 'smart-restore.io/decision': 'restore', 'smart-restore.io/restore-source': 's3://backups/apps/broken' }, { dataSourceRef: { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: 'broken-restore' } })
  await writeRdStatus(api, 'apps', 'broken-restore', failedRestoreStatus())
  const event = await eventually('the RestoreFailed Event', () => events('broken').find((e) => e.startsWith('RestoreFailed')))
  t.match(event, /"Fatal: wrong password or no key found"/)
  t.match((api.objects.get(PVCS, 'apps', 'broken') as any).metadata.annotations['smart-restore.io/attention'], /failed/)
  t.equal(source('broken'), undefined)
})

t.test('a ReplicationSource smart-restore did not create is reported, never modified', async (t) => {
  const foreign = api.objects.put(RS, { apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationSource', metadata: { name: 'handmade-backup', namespace: 'apps' }, spec: { sourcePVC: 'handmade', trigger: { schedule: '5 5 * * *' }, restic: { repository: 'mine', copyMethod: 'Clone' } } })
  pvc('handmade', { backup: 'hourly' }, { 'smart-restore.io/decision': 'fresh' })
  bind('handmade')
  await eventually('the ForeignObject Event', () => events('handmade').find((e) => e.startsWith('ForeignObject')))
  t.same((api.objects.get(RS, 'apps', 'handmade-backup') as any).spec, foreign.spec, 'untouched')
})

t.test('a Secret write the API refuses (the ValidatingAdmissionPolicy fence, RBAC): a WriteRefused Event, no quiet retry loop', async (t) => {
  const refusal = 'secrets "fenced-restic" is forbidden: ValidatingAdmissionPolicy \'smart-restore-secret-writes\' with binding \'smart-restore-secret-writes\' denied request: UPDATE of Secret apps/fenced-restic refused: it exists and is not labelled app.kubernetes.io/managed-by=smart-restore'
  const fault = api.fail({ method: 'PATCH', path: '/api/v1/namespaces/apps/secrets/fenced-restic', times: Infinity }, { status: 403, reason: 'Forbidden', message: refusal })
  t.teardown(() => fault.cancel())
  pvc('fenced', { backup: 'hourly' }, { 'smart-restore.io/decision': 'fresh' })
  bind('fenced')
  const event = await eventually('the WriteRefused Event', () => events('fenced').find((e) => e.startsWith('WriteRefused')))
  t.match(event, /^WriteRefused: the backup source could not be written: .*not labelled app\.kubernetes\.io\/managed-by=smart-restore/)
  t.equal(source('fenced'), undefined, 'no ReplicationSource without its Secret')
  const hits = fault.hits
  await new Promise((r) => setTimeout(r, 1500))
  t.equal(fault.hits, hits, 'not retried every few seconds (next at the resync)')
})

t.test('namespace default tier: an unlabelled PVC is labelled and backed up', async (t) => {
  api.objects.update(NAMESPACES, undefined, 'apps', (o: any) => (o.metadata.labels['smart-restore.io/default-tier'] = 'daily'))
  pvc('unlabelled', {}, { 'smart-restore.io/decision': 'fresh' })
  bind('unlabelled')
  await eventually('the tier label', () => (api.objects.get(PVCS, 'apps', 'unlabelled') as any).metadata.labels.backup === 'daily')
  await eventually('the source', () => source('unlabelled'))
  api.objects.update(NAMESPACES, undefined, 'apps', (o: any) => delete o.metadata.labels['smart-restore.io/default-tier'])
  t.pass()
})

t.test('metrics: watched caches, reconciles, findings and Events, without object names', async (t) => {
  const samples = parseMetrics((await scrape(service.metricsUrl!)).body)
  const synced = find(samples, 'smart_restore_cache_synced')
  t.ok(synced.length > 0, 'one sample per watch')
  t.ok(synced.every((s) => s.value === 1), 'every watch synced')
  t.ok(find(samples, 'smart_restore_cache_synced', { resource: 'persistentvolumeclaims/v1' }).length > 0, 'labelled by resource')
  t.ok(value(samples, 'smart_restore_cache_objects', { resource: 'persistentvolumeclaims/v1' }) >= 5, 'the PVCs of this suite are cached')
  t.ok(value(samples, 'smart_restore_reconcile_total', { outcome: 'success' }) > 0)
  t.ok(value(samples, 'smart_restore_reconcile_findings_total', { finding: 'refused_existing_backup' }) >= 1)
  t.ok(value(samples, 'smart_restore_reconcile_findings_total', { finding: 'foreign_object' }) >= 1)
  t.ok(value(samples, 'smart_restore_reconcile_findings_total', { finding: 'backup_over_existing_acknowledged' }) >= 1)
  t.ok(value(samples, 'smart_restore_events_total', { outcome: 'sent' }) >= 5, 'Events written')
  const labelValues = samples.flatMap((s) => Object.values(s.labels))
  for (const name of ['apps', 'fresh', 'old-data', 'restored', 'handmade', 'unlabelled']) {
    t.notOk(labelValues.includes(name) || labelValues.some((v) => v.includes(`apps/${name}`)), `no label value names ${name}`)
  }
})

t.test('a second replica converges: its applies change nothing', async (t) => {
  // The first replica may still be writing (an Event of the previous test): wait until nothing has
  // changed for a while, however busy the machine, so every later change is the second replica's.
  await steady(() => api.objects.resourceVersion, 600, 'the API objects to stop changing')
  const before = { rv: api.objects.resourceVersion, events: api.objects.list(EVENTS, 'apps').length }
  const second = await startService(config, { logger: captureLogger('error').logger, kubeConfig: api.kubeConfig, watch: { rediscoverMs: 1000 } })
  t.teardown(() => second.close())
  await eventually('the second replica to be ready', () => second.url)
  await new Promise((r) => setTimeout(r, 1500))
  t.equal(api.objects.resourceVersion, before.rv, 'no object changed: every apply was a no-op')
  t.equal(api.objects.list(EVENTS, 'apps').length, before.events, 'no duplicate Events')
})
