/**
 * What a restore into a PVC actually produced, read from smart-restore's ReplicationDestination the
 * way VolSync reports it. Pure: the RD as the watched cache holds it in, a verdict out.
 *
 * VolSync (v0.8+) records each finished mover Job in `status.latestMoverStatus`:
 *   - `result: Successful` with the lines its restic log filter keeps
 *     (`internal/controller/mover/restic`, LogLineFilterSuccess: `restoring <Snapshot …>`,
 *     `No eligible snapshots found`, `=== No data will be restored ===`, `Fatal…`, `ERROR…`,
 *     `Restic completed in …`, …);
 *   - `result: Failed` with every line of the Job's log once its backoff limit is reached.
 * `status.lastManualSync` takes the value of `spec.trigger.manual` when that sync is done, and
 * `status.latestImage` names the VolumeSnapshot the volume populator clones the PVC from.
 *
 * The mover's "nothing to restore" is a SUCCESS (exit 0): the PVC binds to an empty volume. Only
 * the log lines tell it apart from a real restore, so this is where that is decided.
 */
import { RESTORE_TRIGGER } from '../engines/volsync.js'
import type { KubeObject } from '../inflight/types.js'

export type RestoreOutcome =
  /** The mover restored snapshot `snapshot` (the id it printed, 8 hex digits). */
  | { state: 'restored'; snapshot: string; lines: string[] }
  /** The mover found no snapshot to restore and populated the volume empty. */
  | { state: 'empty'; lines: string[] }
  /** The mover failed (result Failed, or Fatal/ERROR lines). */
  | { state: 'failed'; lines: string[] }
  /** Our trigger has not completed yet (still running, or not started). */
  | { state: 'running'; lines: string[] }
  /** Finished, but the status does not say what was restored (no mover status: VolSync < 0.8). */
  | { state: 'unverified'; lines: string[] }
  /** No ReplicationDestination of ours to read (gone, never made, or not smart-restore's). */
  | { state: 'absent' }

/** `restoring <Snapshot 0ff74383 of [/data] at 2022-12-15 11:10:01 … by root@volsync> to .` */
const RESTORING = /^\s*restoring <Snapshot ([0-9a-f]{8,64}) of /i
const NOTHING = /No eligible snapshots found|No data will be restored/
const FAILURE = /^\s*(Fatal|ERROR)\b/

/** The mover's log lines, trimmed, without blank ones. */
export function moverLines(logs: unknown): string[] {
  if (typeof logs !== 'string') return []
  return logs
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
}

export interface MoverStatus {
  result?: string
  lines: string[]
}

export function moverStatusOf(rd: KubeObject): MoverStatus | undefined {
  const status = (rd.status ?? {}) as { latestMoverStatus?: { result?: unknown; logs?: unknown } }
  const m = status.latestMoverStatus
  if (!m || typeof m !== 'object') return undefined
  return { ...(typeof m.result === 'string' ? { result: m.result } : {}), lines: moverLines(m.logs) }
}

/**
 * The verdict on one ReplicationDestination. `rd` must be smart-restore's restore of the PVC (the
 * caller checks ownership and the name); undefined means there is none.
 */
export function restoreOutcome(rd: KubeObject | undefined): RestoreOutcome {
  if (!rd) return { state: 'absent' }
  const status = (rd.status ?? {}) as { lastManualSync?: unknown; latestImage?: unknown }
  const mover = moverStatusOf(rd)
  const lines = mover?.lines ?? []
  // A failure is reported while the sync is still "running": VolSync retries the Job, and after
  // its backoff limit writes result Failed without completing the trigger.
  if (mover?.result === 'Failed' || (mover && lines.some((l) => FAILURE.test(l)) && !lines.some((l) => RESTORING.test(l)))) {
    return { state: 'failed', lines }
  }
  const trigger = ((rd.spec ?? {}) as { trigger?: { manual?: unknown } }).trigger?.manual ?? RESTORE_TRIGGER
  if (status.lastManualSync !== trigger) return { state: 'running', lines }
  if (lines.some((l) => NOTHING.test(l))) return { state: 'empty', lines }
  const restoring = lines.map((l) => RESTORING.exec(l)).find((m) => m !== null)
  if (restoring && mover?.result === 'Successful' && status.latestImage) return { state: 'restored', snapshot: restoring[1]!.slice(0, 8), lines }
  return { state: 'unverified', lines }
}

/** The mover's own words for messages: the lines that say what happened, at most `max`, joined. */
export function quoteMover(lines: readonly string[], max = 4): string {
  const telling = lines.filter((l) => NOTHING.test(l) || FAILURE.test(l) || RESTORING.test(l) || /completed in/i.test(l))
  const chosen = (telling.length ? telling : lines).slice(-max)
  return chosen.length ? chosen.map((l) => `"${l.length > 200 ? `${l.slice(0, 200)}…` : l}"`).join(', ') : '(no mover log lines)'
}
