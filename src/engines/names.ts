/**
 * Deterministic names for the objects smart-restore creates. The same PVC always maps to the same
 * names, so a retried or reinvoked admission finds what the first attempt created instead of
 * creating a second set.
 */
import { createHash } from 'node:crypto'

export function shortHash(text: string, length = 8): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length)
}

/**
 * `<base>-<suffix>`, shortened with a hash of the full name when it would exceed `max`.
 * VolSync names its mover Job `volsync-dst-<rd>` and labels it with that name, and label values
 * stop at 63 characters: an RD name must leave room for the 12-character prefix.
 */
export function boundedName(base: string, suffix: string, max: number): string {
  const full = `${base}-${suffix}`
  if (full.length <= max) return full
  const hash = shortHash(full)
  const keep = max - suffix.length - hash.length - 2
  return `${base.slice(0, keep).replace(/[-.]+$/, '')}-${hash}-${suffix}`
}

/** Longest ReplicationDestination/ReplicationSource name whose mover Job name still fits a label. */
export const MAX_VOLSYNC_OBJECT_NAME = 63 - 'volsync-dst-'.length

export function restoreDestinationName(pvc: string): string {
  return boundedName(pvc, 'restore', MAX_VOLSYNC_OBJECT_NAME)
}

/**
 * Repository Secret of a PVC. Restoring from another PVC's repository uses a Secret of its own, so
 * the PVC's own backup repository (the one its ReplicationSource writes to) is never redirected.
 */
export function repositorySecretName(pvc: string, restoreFromKey?: string): string {
  return restoreFromKey === undefined
    ? boundedName(pvc, 'restic', 253)
    : boundedName(pvc, `restic-from-${shortHash(restoreFromKey)}`, 253)
}

/**
 * ReplicationSource of a PVC: `<pvc>-backup`. Bounded like the restore destination because VolSync
 * names the mover Job `volsync-src-<rs>` (same length as `volsync-dst-`) and labels it with that name.
 */
export function backupSourceName(pvc: string): string {
  return boundedName(pvc, 'backup', MAX_VOLSYNC_OBJECT_NAME)
}
