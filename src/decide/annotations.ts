/** Annotation names, relative to the configured prefix (default `smart-restore.io/`). */
import type { Config } from '../config/schema.js'

export const ANNOTATION = {
  /** Opt-out of the restore check; the value is the (required) reason. */
  skipRestore: 'skip-restore',
  /** Restore from another PVC's repository: `<namespace>/<pvc>` or `<pvc>` (same namespace). */
  restoreFrom: 'restore-from',
  /** Point-in-time restore: the newest snapshot at or before this RFC 3339 time. */
  restoreAsOf: 'restore-as-of',
  /** Restore the snapshot this many before the newest (0 = newest). */
  restorePrevious: 'restore-previous',
  /** Delete the PVC even while a backup/restore is in flight; the value is the (required) reason. */
  allowDelete: 'allow-delete',
  /**
   * Attach a backup source although backups of the PVC's repository exist and the PVC was not
   * restored from them; the value is the (required) reason. Without it the reconciler refuses,
   * because a fresh volume's backups would roll the existing snapshots out of retention.
   */
  backupOverExisting: 'backup-over-existing',
  // Written by smart-restore:
  /** On its Secrets, ReplicationSources and ReplicationDestinations (and as a label when it fits): the PVC they are for. */
  pvc: 'pvc',
  decision: 'decision',
  restoreSource: 'restore-source',
  replicationDestination: 'replication-destination',
  /** The snapshot the restore restores (restic mode): `<short id> of <path> taken <time>`. */
  restoreSnapshot: 'restore-snapshot',
  checked: 'checked-location',
  /** Why the reconciler is not backing the PVC up (set while it refuses, removed once it attaches). */
  attention: 'attention',
} as const

export type AnnotationName = (typeof ANNOTATION)[keyof typeof ANNOTATION]

export function annotationKey(config: Config, name: AnnotationName): string {
  return `${config.annotationPrefix}${name}`
}

/** The annotations of `annotations` under one of `prefixes` (smart-restore's own, usually). */
export function annotationsUnder(annotations: Record<string, string> | undefined, prefixes: readonly string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(annotations ?? {}).filter(([k]) => prefixes.some((p) => k.startsWith(p))))
}
