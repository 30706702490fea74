/**
 * The readiness verdict, row by row, and the tier interval read off cron schedules.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig } from '../../src/config/schema.js'
import type { PvcState } from '../../src/reconcile/types.js'
import { assessPvc, summarize } from '../../src/status/assess.js'
import { scheduleIntervalMs } from '../../src/status/interval.js'
import type { ProbeResult } from '../../src/storage/types.js'

const H = 3_600_000
const config = validateConfig(structuredClone(defaultConfig))
const listConfig = validateConfig({ ...structuredClone(defaultConfig), store: { ...structuredClone(defaultConfig.store), probe: { ...defaultConfig.store.probe, mode: 'list' } } })
const NOW = Date.parse('2026-11-22T12:00:00Z')
const LOC = 's3://b/media/db'

t.test('tier intervals from schedules', async (t) => {
  const rows: Array<[string, number]> = [
    ['H * * * *', H],
    ['37 * * * *', H],
    ['*/15 * * * *', H / 4],
    ['0,30 * * * *', H / 2],
    ['H H(0-5) * * *', 24 * H],
    ['0 */6 * * *', 6 * H],
    ['H H(0-5) * * 0', 7 * 24 * H],
    ['0 3 * * 1-5', (7 * 24 * H) / 5],
    ['0 3 1 * *', 31 * 24 * H],
    ['@hourly', H],
    ['@daily', 24 * H],
    ['@weekly', 7 * 24 * H],
  ]
  for (const [schedule, ms] of rows) t.equal(scheduleIntervalMs(schedule), ms, schedule)
})

const pvc = (over: Partial<PvcState> = {}): PvcState => ({ namespace: 'media', name: 'db', uid: 'u', labels: { backup: 'hourly' }, annotations: {}, phase: 'Bound', creationTimestamp: '2026-11-20T00:00:00Z', ...over })
const snap = (id: string, time: string, paths = ['/data']) => ({ id: id.repeat(8), time, epochSeconds: Date.parse(time) / 1000, nanos: 0, hostname: 'volsync', paths, tags: [] })
const exists = (...snapshots: ReturnType<typeof snap>[]): ProbeResult => ({ state: 'exists', location: LOC, detail: 'x', restic: { version: 2, total: snapshots.length, complete: false, snapshots } })
const rs = (lastSyncTime?: string, managedBy = 'smart-restore') => ({ apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationSource', metadata: { name: 'db-backup', labels: { 'app.kubernetes.io/managed-by': managedBy } }, status: lastSyncTime ? { lastSyncTime } : {} })

t.test('verdicts', async (t) => {
  const at = (probe: ProbeResult, over: Partial<PvcState> = {}, source?: ReturnType<typeof rs>, cfg = config) => assessPvc({ pvc: pvc(over), tier: 'hourly', probe, nowMs: NOW, ...(source ? { source } : {}) }, cfg)
  t.match(at(exists(snap('aa', '2026-11-22T11:00:00Z'))), { verdict: 'ok', restorePoint: { time: '2026-11-22T11:00:00Z', ageMs: H } })
  t.match(at(exists(snap('aa', '2026-11-22T10:00:00Z'))), { verdict: 'ok' }, 'exactly 2× the interval: still ok')
  t.match(at(exists(snap('aa', '2026-11-22T09:59:59Z'))), { verdict: 'late' }, 'a second past: late')
  t.match(at(exists(snap('aa', '2026-11-22T11:00:00Z', ['/srv']))), { verdict: 'none', why: /none VolSync would restore \(paths \/srv\)/ }, 'only foreign snapshots: nothing would come back')
  t.match(at({ state: 'none', location: LOC, detail: 'empty' }), { verdict: 'none', why: 'no snapshot at s3://b/media/db' })
  t.match(at({ state: 'none', location: LOC, detail: 'empty' }, { creationTimestamp: '2026-11-22T10:55:00Z' }), { verdict: 'new' }, 'created 65 min ago: one interval + 10 min grace')
  t.match(at({ state: 'none', location: LOC, detail: 'empty' }, { creationTimestamp: '2026-11-22T10:49:00Z' }), { verdict: 'none' }, '71 min: missed its first backup')
  t.match(at({ state: 'unknown', location: LOC, kind: 'timeout', reason: 'no answer in 3 s' }), { verdict: 'unknown', why: 'timeout: no answer in 3 s' })
  t.match(at({ state: 'unreadable', location: LOC, kind: 'password', reason: 'no key opens it' }), { verdict: 'unknown', why: /cannot be read \(password\)/ })
  // list mode: the last backup's time stands in for the snapshot's.
  t.match(at({ state: 'exists', location: LOC, detail: 'x' }, {}, rs('2026-11-22T11:30:00Z'), listConfig), { verdict: 'ok', restorePoint: { time: '2026-11-22T11:30:00Z', estimated: true } })
  t.match(at({ state: 'exists', location: LOC, detail: 'x' }, {}, undefined, listConfig), { verdict: 'unknown', why: /probe.mode=list does not tell its time/ })
  // Source state and admission.
  t.match(at(exists(snap('aa', '2026-11-22T11:00:00Z')), { annotations: { 'smart-restore.io/decision': 'restore' } }, rs('2026-11-22T11:00:00Z')), { source: 'attached', admitted: 'restore', lastBackup: { time: '2026-11-22T11:00:00Z' } })
  t.match(at(exists(snap('aa', '2026-11-22T11:00:00Z')), {}, rs(undefined, 'argocd')), { source: 'foreign', attention: ["ReplicationSource db-backup is not smart-restore's"] })
  t.match(at(exists(snap('aa', '2026-11-22T11:00:00Z')), { annotations: { 'smart-restore.io/attention': 'refused' } }), { source: 'refused', attention: ['refused'] })
  t.match(at(exists(snap('aa', '2026-11-22T11:00:00Z')), { annotations: { 'smart-restore.io/skip-restore': 'scratch' } }), { source: 'missing', admitted: 'skipped' })
})

t.test('summary', async (t) => {
  const mk = (name: string, verdict: string, ageMs?: number, attention: string[] = []) => ({ namespace: 'media', name, tier: 'hourly', admitted: 'fresh', source: 'attached', verdict, intervalMs: H, attention, ...(ageMs !== undefined ? { restorePoint: { time: 'x', ageMs } } : {}) }) as never
  t.equal(summarize([]).text, '0 of 0 PVCs would come back')
  t.equal(summarize([mk('a', 'ok', H)]).text, '1 of 1 PVC would come back')
  const s = summarize([mk('a', 'ok', H), mk('b', 'late', 3 * 24 * H), mk('c', 'late', 5 * H), mk('d', 'none', undefined, ['x'])])
  t.equal(s.text, '3 of 4 PVCs would come back; 2 late (oldest restore point 3d ago: media/b), 1 without any backup, 1 needs a human')
  t.same(s.oldestLate, { pvc: 'media/b', ageMs: 3 * 24 * H })
})
