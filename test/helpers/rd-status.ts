/**
 * ReplicationDestination statuses as VolSync writes them after a restic restore, with the log lines
 * its restic log filter keeps (internal/controller/mover/restic LogLineFilterSuccess; the samples
 * follow VolSync's own logfilter_test.go). Used by the reconciler's table, the flow tests (written
 * through the status subresource) and the e2e suite.
 */

const CONDITION_TIME = '2026-11-22T05:00:00Z'

function synchronizing(status: 'True' | 'False', reason: string, message: string) {
  return [{ type: 'Synchronizing', status, reason, message, lastTransitionTime: CONDITION_TIME }]
}

/** A restore that restored snapshot `snapshot8` (8 hex digits) into a VolumeSnapshot `image`. */
export function restoredStatus(snapshot8 = '0ff74383', image = 'volsync-data-claim-restore-dst-20261122050012') {
  return {
    lastManualSync: 'smart-restore',
    lastSyncTime: '2026-11-22T05:00:12Z',
    lastSyncDuration: '12.345s',
    latestImage: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: image },
    latestMoverStatus: {
      result: 'Successful',
      logs: [
        'repository f5bccd54 opened (repository version 2) successfully, password is correct',
        `restoring <Snapshot ${snapshot8} of [/data] at 2026-11-22 03:00:41.858799017 +0000 UTC by root@volsync> to .`,
        'Restic completed in 9s',
      ].join('\n'),
    },
    conditions: synchronizing('False', 'WaitingForManual', 'Waiting for manual trigger'),
  }
}

/** The mover found nothing eligible: Successful, latestImage set, an EMPTY volume. */
export function emptyRestoreStatus(image = 'volsync-data-claim-restore-dst-20261122050004') {
  return {
    lastManualSync: 'smart-restore',
    lastSyncTime: '2026-11-22T05:00:04Z',
    lastSyncDuration: '4.2s',
    latestImage: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: image },
    latestMoverStatus: {
      result: 'Successful',
      logs: ['No eligible snapshots found', '=== No data will be restored ===', 'Restic completed in 4s'].join('\n'),
    },
    conditions: synchronizing('False', 'WaitingForManual', 'Waiting for manual trigger'),
  }
}

/** The mover's Job reached its backoff limit (VolSync keeps every log line then). */
export function failedRestoreStatus() {
  return {
    latestMoverStatus: {
      result: 'Failed',
      logs: [
        'Starting container',
        'VolSync restic container version: v0.11.0',
        'restore',
        'restic 0.17.0 compiled with go1.22.8 on linux/amd64',
        'Testing mandatory env variables',
        '=== Check for dir initialized ===',
        'Fatal: wrong password or no key found',
        'ERROR: failure checking existence of repository',
      ].join('\n'),
    },
    conditions: synchronizing('True', 'SyncInProgress', 'Synchronization in-progress'),
  }
}

/** The trigger is being worked on; no mover has finished. */
export function runningRestoreStatus() {
  return { conditions: synchronizing('True', 'SyncInProgress', 'Synchronization in-progress') }
}

/** A finished restore from a VolSync without latestMoverStatus (before 0.8): nothing says what was restored. */
export function noMoverStatus() {
  return {
    lastManualSync: 'smart-restore',
    lastSyncTime: '2026-11-22T05:00:12Z',
    latestImage: { apiGroup: 'snapshot.storage.k8s.io', kind: 'VolumeSnapshot', name: 'volsync-data-claim-restore-dst-20261122050012' },
    conditions: synchronizing('False', 'WaitingForManual', 'Waiting for manual trigger'),
  }
}

/**
 * Writes an RD's status through the status subresource of a (fake) apiserver, as VolSync's
 * controller does: a merge patch of `status` on `…/replicationdestinations/<name>/status`.
 */
export async function writeRdStatus(api: { url: string; token: string }, namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${api.url}/apis/volsync.backube/v1alpha1/namespaces/${namespace}/replicationdestinations/${name}/status`, {
    method: 'PATCH',
    headers: { Authorization: `Bearer ${api.token}`, 'Content-Type': 'application/merge-patch+json' },
    body: JSON.stringify({ status }),
  })
  if (res.status !== 200) throw new Error(`PATCH status of ReplicationDestination ${namespace}/${name}: HTTP ${res.status} ${await res.text()}`)
}
