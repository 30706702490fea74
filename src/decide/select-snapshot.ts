/**
 * Which snapshot VolSync's restic mover will restore, as a pure function.
 *
 * The mover (VolSync `mover-restic/entry.sh`, `select_restic_snapshot_to_restore`) does this:
 *
 *   1. runs `restic snapshots` (a table, oldest first) and keeps the lines containing "/data"
 *      (`grep /data`): VolSync backs up its mount with `cd /data && restic backup .`, so its own
 *      snapshots have the path `/data`. The match is a substring of the whole line, so a snapshot of
 *      `/srv/data` or `/database`, or one whose host or tags contain "/data", counts too;
 *   2. turns each line's time into whole epoch seconds (the table shows no fraction) and maps
 *      epoch → snapshot id in table order, so of two snapshots in the same second the later line
 *      wins the map, while the epoch list keeps both;
 *   3. reverses the list (newest first); with `restoreAsOf` it moves to the first epoch at or
 *      before it (`<=`, in whole seconds); then it skips `previous` more entries;
 *   4. restores the id mapped to the epoch found; when it ran off the end it prints
 *      "No eligible snapshots found" / "=== No data will be restored ===" and exits 0: the PVC is
 *      populated EMPTY. This module exists so smart-restore refuses that case at admission.
 *
 * Tags print comma-joined on the snapshot's own line (they take part in the "/data" match). Not
 * modelled: a snapshot with several paths prints one continuation line per extra path; VolSync reads
 * a continuation line containing "/data" as a garbled entry. VolSync's own snapshots have exactly one
 * path, so only foreign snapshots can do that (they are reported as such).
 */
import { compareSnapshots, type Snapshot } from '../storage/restic/format.js'

export interface SnapshotSelection {
  /** RFC 3339 (validated by the plan); the newest snapshot at or before it. */
  restoreAsOf?: string
  /** Snapshots to skip back from there (0 = that one). */
  previous?: number
}

export type NotSelected =
  /** Snapshot files exist, but none is of /data: another tool's repository, or one shared by mistake. */
  | 'no-data-path'
  /** Every /data snapshot is newer than restoreAsOf. */
  | 'as-of-before-oldest'
  /** `previous` skips past the oldest eligible snapshot. */
  | 'previous-past-oldest'
  /** No snapshot at all. */
  | 'empty'

export interface SelectionOutcome {
  selected?: Snapshot
  /** Why nothing was selected (absent when something was). */
  why?: NotSelected
  /** Snapshots the mover considers, oldest first. */
  eligible: Snapshot[]
  /** Of those, how many are at or before restoreAsOf (all of them without one). */
  atOrBeforeAsOf: number
}

/** The text of the first table line restic prints for a snapshot: ID, Time, Host, its tags (comma-joined), first path. */
function firstTableLine(s: Snapshot): string {
  return [s.id.slice(0, 8), s.hostname, s.tags.join(','), s.paths[0] ?? ''].join(' ')
}

/** Would the mover's `grep /data` keep this snapshot? */
export function eligibleForVolSync(s: Snapshot): boolean {
  return firstTableLine(s).includes('/data')
}

/** `date --date=<restoreAsOf> +%s`: whole seconds, the fraction dropped. */
export function asOfEpochSeconds(restoreAsOf: string): number {
  return Math.floor(Date.parse(restoreAsOf) / 1000)
}

interface Ranked {
  /** Eligible epochs, newest first, duplicates kept (the mover's reversed list). */
  epochs: number[]
  /** Epoch → the last eligible snapshot of that second in restic's order (the mover's map). */
  byEpoch: Map<number, Snapshot>
  eligible: Snapshot[]
  /** Index in `epochs` the mover lands on before `previous`. */
  asOfOffset: number
}

function rank(snapshots: readonly Snapshot[], selection: SnapshotSelection): Ranked {
  const eligible = snapshots.filter(eligibleForVolSync).sort(compareSnapshots)
  const byEpoch = new Map<number, Snapshot>()
  for (const s of eligible) byEpoch.set(s.epochSeconds, s)
  const epochs = eligible.map((s) => s.epochSeconds).reverse()
  let asOfOffset = 0
  if (selection.restoreAsOf !== undefined) {
    const target = asOfEpochSeconds(selection.restoreAsOf)
    while (asOfOffset < epochs.length && epochs[asOfOffset]! > target) asOfOffset++
  }
  return { epochs, byEpoch, eligible, asOfOffset }
}

export function selectSnapshot(snapshots: readonly Snapshot[], selection: SnapshotSelection = {}): SelectionOutcome {
  const { epochs, byEpoch, eligible, asOfOffset } = rank(snapshots, selection)
  const atOrBeforeAsOf = epochs.length - asOfOffset
  const at = asOfOffset + (selection.previous ?? 0)
  if (at < epochs.length) return { selected: byEpoch.get(epochs[at]!), eligible, atOrBeforeAsOf }
  const why: NotSelected =
    snapshots.length === 0 ? 'empty' : eligible.length === 0 ? 'no-data-path' : atOrBeforeAsOf === 0 ? 'as-of-before-oldest' : 'previous-past-oldest'
  return { why, eligible, atOrBeforeAsOf }
}

/**
 * Can more snapshots change the selection? `loaded` are the snapshots read so far; every snapshot
 * not read yet is known to have an epoch of at most `unreadMaxEpoch` (undefined: none is left).
 * They cannot when a snapshot is selected among the loaded ones and every unread one is strictly
 * older than it: they rank after it, cannot move the restoreAsOf position (they are older than
 * the selected one, which is at or before it), and cannot replace it in the epoch map.
 */
export function selectionSettled(loaded: readonly Snapshot[], selection: SnapshotSelection, unreadMaxEpoch: number | undefined): boolean {
  if (unreadMaxEpoch === undefined) return true
  const { epochs, asOfOffset } = rank(loaded, selection)
  const at = asOfOffset + (selection.previous ?? 0)
  return at < epochs.length && unreadMaxEpoch < epochs[at]!
}
