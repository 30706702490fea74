/**
 * How snapshots and the reasons none can be restored read in warnings, annotations and denials.
 * Pure: the caller passes the clock.
 */
import type { Snapshot } from '../storage/restic/format.js'
import type { SelectionOutcome, SnapshotSelection } from './select-snapshot.js'

/** `2026-11-22T03:00:41Z`: the second VolSync compares, in UTC whatever offset restic wrote. */
export function snapshotTime(s: Snapshot): string {
  return new Date(s.epochSeconds * 1000).toISOString().replace('.000Z', 'Z')
}

/** `5h ago`, `3d ago`, `in 2m` (a snapshot from a clock ahead of ours). */
export function age(fromMs: number, nowMs: number): string {
  const ms = nowMs - fromMs
  const abs = Math.abs(ms)
  const text = abs < 90_000 ? `${Math.round(abs / 1000)}s` : abs < 90 * 60_000 ? `${Math.round(abs / 60_000)}m` : abs < 48 * 3_600_000 ? `${Math.round(abs / 3_600_000)}h` : `${Math.round(abs / 86_400_000)}d`
  return ms >= 0 ? `${text} ago` : `in ${text}`
}

/** `3f9c01a2 of /data taken 2026-11-22T03:00:41Z (5h ago)` */
export function describeSnapshot(s: Snapshot, nowMs: number): string {
  return `${s.id.slice(0, 8)} of ${s.paths.join(', ') || '(no path)'} taken ${snapshotTime(s)} (${age(s.epochSeconds * 1000, nowMs)})`
}

/** `3f9c01a2 of 2026-11-22T03:00:41Z` */
function short(s: Snapshot): string {
  return `${s.id.slice(0, 8)} of ${snapshotTime(s)}`
}

function distinct(values: string[], max = 5): string {
  const set = [...new Set(values)]
  return set.slice(0, max).join(', ') + (set.length > max ? `, and ${set.length - max} more` : '')
}

export interface NoEligibleContext {
  location: string
  /** Snapshot files in the repository. */
  total: number
  /** Every snapshot of the repository (reading stops early only once one is selected). */
  snapshots: readonly Snapshot[]
  selection: SnapshotSelection
  /** Annotation keys, to name them in the advice. */
  keys: { asOf: string; previous: string; skip: string }
}

/** Why VolSync would restore nothing, and what to do instead: the text of a 422. */
export function noEligibleMessage(outcome: SelectionOutcome, ctx: NoEligibleContext): string {
  const { location, selection, keys } = ctx
  const empty = `VolSync's mover would restore nothing and the PVC would come up empty, so it was not created`
  const onPurpose = `to create it empty on purpose, annotate it ${keys.skip}: "<reason>"`
  if (outcome.why === 'no-data-path') {
    return (
      `${location} holds ${ctx.total} snapshot(s), but none of /data: VolSync's restic mover only restores snapshots whose path contains /data (its own backups are of /data). ` +
      `Paths found: ${distinct(ctx.snapshots.flatMap((s) => s.paths)) || '(none)'}; hosts: ${distinct(ctx.snapshots.map((s) => s.hostname)) || '(none)'}. ${empty}. ` +
      `If this repository belongs to another tool, give the PVC a repository of its own (or point restore-from at the right PVC); ${onPurpose}.`
    )
  }
  const eligible = outcome.eligible
  const oldest = eligible[0]
  const newest = eligible[eligible.length - 1]
  if (oldest === undefined || newest === undefined) {
    // 'empty' (the probe reports no snapshot file as 'none', so only a caller passing an empty list gets here)
    return `${location} holds no snapshot: ${empty}; ${onPurpose}.`
  }
  if (outcome.why === 'as-of-before-oldest') {
    return (
      `no snapshot of /data in ${location} was taken at or before ${keys.asOf}=${selection.restoreAsOf}: the oldest is ${short(oldest)}, the newest ${short(newest)} (${eligible.length} in all). ${empty}. ` +
      `Use a ${keys.asOf} at or after ${snapshotTime(oldest)}, or remove it to restore the newest; ${onPurpose}.`
    )
  }
  const n = outcome.atOrBeforeAsOf
  const scope = selection.restoreAsOf !== undefined ? ` at or before ${selection.restoreAsOf}` : ''
  // eligible is oldest first and the n at or before restoreAsOf are its first n: the newest of those is the one 0 restores.
  const newestInScope = eligible[n - 1] ?? newest
  return (
    `${keys.previous}=${selection.previous} skips past the oldest snapshot: ${location} has ${n} snapshot(s) of /data${scope} (oldest ${short(oldest)}, newest ${short(newestInScope)}), so use 0 to ${n - 1} (0 = the newest${scope ? ' of those' : ''}). ${empty}; ${onPurpose}.`
  )
}
