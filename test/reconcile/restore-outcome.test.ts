/**
 * restoreOutcome: what a restore produced, from the RD status VolSync writes (shapes from VolSync's
 * restic log filter and its tests, test/helpers/rd-status.ts).
 */
import t from 'tap'
import type { KubeObject } from '../../src/inflight/types.js'
import { moverLines, quoteMover, restoreOutcome } from '../../src/reconcile/restore-outcome.js'
import { emptyRestoreStatus, failedRestoreStatus, noMoverStatus, restoredStatus, runningRestoreStatus } from '../helpers/rd-status.js'

const rd = (status?: Record<string, unknown>, manual = 'smart-restore'): KubeObject => ({
  apiVersion: 'volsync.backube/v1alpha1',
  kind: 'ReplicationDestination',
  metadata: { name: 'data-claim-restore', namespace: 'media' },
  spec: { trigger: { manual } },
  ...(status ? { status } : {}),
})

t.test('the table', async (t) => {
  const rows: Array<[string, KubeObject | undefined, string, Record<string, unknown>?]> = [
    ['no RD', undefined, 'absent'],
    ['no status yet', rd(), 'running'],
    ['in progress', rd(runningRestoreStatus()), 'running'],
    ['restored', rd(restoredStatus('3f9c01a2')), 'restored', { snapshot: '3f9c01a2' }],
    ['restored, full id in the line', rd(restoredStatus('3f9c01a2'.repeat(8))), 'restored', { snapshot: '3f9c01a2' }],
    ['nothing eligible', rd(emptyRestoreStatus()), 'empty'],
    ['only "=== No data will be restored ==="', rd({ ...emptyRestoreStatus(), latestMoverStatus: { result: 'Successful', logs: '=== No data will be restored ===' } }), 'empty'],
    ['failed (backoff limit)', rd(failedRestoreStatus()), 'failed'],
    ['Successful but Fatal lines, no restoring line', rd({ ...restoredStatus(), latestMoverStatus: { result: 'Successful', logs: 'Fatal: unable to open config file' } }), 'failed'],
    ['finished without latestMoverStatus (VolSync < 0.8)', rd(noMoverStatus()), 'unverified'],
    ['restoring line but no latestImage', rd({ ...restoredStatus(), latestImage: undefined }), 'unverified'],
    ['restoring line but result not Successful', rd({ ...restoredStatus(), latestMoverStatus: { ...restoredStatus().latestMoverStatus, result: 'Unknown' } }), 'unverified'],
    ['our trigger not completed (lastManualSync of another value)', rd({ ...restoredStatus(), lastManualSync: 'earlier' }), 'running'],
    ['a custom trigger value completed', rd({ ...restoredStatus(), lastManualSync: 'again-1' }, 'again-1'), 'restored'],
  ]
  for (const [why, obj, state, extra] of rows) {
    const out = restoreOutcome(obj)
    t.equal(out.state, state, why)
    if (extra) t.match(out, extra, `${why}: ${JSON.stringify(extra)}`)
  }
})

t.test('mover lines and quotes', async (t) => {
  t.same(moverLines('  a \n\n b\r\n'), ['a', 'b'])
  t.same(moverLines(undefined), [])
  const failed = restoreOutcome(rd(failedRestoreStatus()))
  t.equal(quoteMover(failed.state === 'failed' ? failed.lines : []), '"Fatal: wrong password or no key found", "ERROR: failure checking existence of repository"', 'the telling lines, not the banner')
  t.equal(quoteMover([]), '(no mover log lines)')
  t.equal(quoteMover(['x'.repeat(300)]), `"${'x'.repeat(200)}…"`, 'long lines are cut')
  t.equal(quoteMover(['a', 'b', 'c', 'd', 'e', 'f']), '"c", "d", "e", "f"', 'without telling lines: the last few')
})
