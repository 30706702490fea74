/**
 * "If the cluster died now, would this PVC come back, and how old would its data be?" — for one
 * labelled PVC, as a pure function of what the cluster and the store say. `smart-restore status`
 * prints it; the service exports it as metrics (status/refresher.ts).
 *
 * The restore point is the snapshot VolSync would restore right now (selectSnapshot over what the
 * restic probe read). Verdicts, against the tier's interval (status/interval.ts):
 *   ok       the restore point is at most 2× the interval old;
 *   late     older than that: backups stopped (mover failing, credentials, bucket full, …);
 *   none     no restore point, and the PVC is older than one interval (+10 min): it has missed its
 *            first backup (never attached, refused, failing);
 *   new      no restore point yet, the PVC is younger than that: its first backup is still to come;
 *   unknown  the store could not tell (S3 down, the repository cannot be read).
 */
import type { Config } from '../config/schema.js'
import { ANNOTATION, annotationKey } from '../decide/annotations.js'
import { selectSnapshot } from '../decide/select-snapshot.js'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE } from '../engines/volsync.js'
import type { KubeObject } from '../inflight/types.js'
import type { PvcState } from '../reconcile/types.js'
import type { ProbeResult } from '../storage/types.js'
import { scheduleIntervalMs } from './interval.js'

export const VERDICTS = ['ok', 'late', 'none', 'new', 'unknown'] as const
export type Verdict = (typeof VERDICTS)[number]

/** A new PVC's first backup may come one interval after its creation, and then take a while. */
export const FIRST_BACKUP_GRACE_MS = 10 * 60_000

export interface PvcReadiness {
  namespace: string
  name: string
  tier: string
  phase?: string
  /** How the webhook admitted it: restore, fresh, fresh-unverified, skipped, or unknown (not through the webhook). */
  admitted: string
  /** attached (our ReplicationSource), refused (attention set, none attached), missing, foreign (someone else's). */
  source: 'attached' | 'refused' | 'missing' | 'foreign'
  lastBackup?: { time: string; duration?: string; result?: string }
  /** The snapshot VolSync would restore now. `estimated`: list/head mode, the last backup's time stands in. */
  restorePoint?: { time: string; id?: string; ageMs: number; estimated?: boolean }
  verdict: Verdict
  /** Why the verdict, in words (the store's reason for unknown, the paths for only foreign snapshots, …). */
  why?: string
  intervalMs: number
  /** What needs a human: the attention annotation, a foreign source. */
  attention: string[]
}

export interface AssessInput {
  pvc: PvcState
  tier: string
  /** `<pvc>-backup`, when it exists. */
  source?: KubeObject
  probe: ProbeResult
  nowMs: number
}

function admittedAs(pvc: PvcState, config: Config): string {
  const decision = pvc.annotations[annotationKey(config, ANNOTATION.decision)]
  if (decision) return decision
  return pvc.annotations[annotationKey(config, ANNOTATION.skipRestore)] !== undefined ? 'skipped' : 'unknown'
}

export function assessPvc(input: AssessInput, config: Config): PvcReadiness {
  const { pvc, tier, source, probe, nowMs } = input
  const tierConfig = Object.hasOwn(config.tiers, tier) ? config.tiers[tier] : undefined
  const intervalMs = scheduleIntervalMs(tierConfig?.schedule ?? '@daily')
  const attentionText = pvc.annotations[annotationKey(config, ANNOTATION.attention)]
  const attention = attentionText ? [attentionText] : []
  const ours = source?.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE
  const sourceState: PvcReadiness['source'] = source ? (ours ? 'attached' : 'foreign') : attentionText ? 'refused' : 'missing'
  if (source && !ours) attention.push(`ReplicationSource ${source.metadata.name} is not smart-restore's`)

  const status = (source?.status ?? {}) as { lastSyncTime?: string; lastSyncDuration?: string; latestMoverStatus?: { result?: string } }
  const lastBackup = status.lastSyncTime
    ? { time: status.lastSyncTime, ...(status.lastSyncDuration ? { duration: status.lastSyncDuration } : {}), ...(status.latestMoverStatus?.result ? { result: status.latestMoverStatus.result } : {}) }
    : undefined

  const base = {
    namespace: pvc.namespace,
    name: pvc.name,
    tier,
    ...(pvc.phase ? { phase: pvc.phase } : {}),
    admitted: admittedAs(pvc, config),
    source: sourceState,
    ...(lastBackup ? { lastBackup } : {}),
    intervalMs,
    attention,
  }
  const lateAfter = 2 * intervalMs
  const judged = (time: string, extra: { id?: string; estimated?: boolean }): PvcReadiness => {
    const ageMs = Math.max(0, nowMs - Date.parse(time))
    return { ...base, restorePoint: { time, ...extra, ageMs }, verdict: ageMs > lateAfter ? 'late' : 'ok' }
  }
  const nothingYet = (why: string): PvcReadiness => {
    const created = Date.parse(pvc.creationTimestamp ?? '')
    const young = Number.isFinite(created) && nowMs - created <= intervalMs + FIRST_BACKUP_GRACE_MS
    return { ...base, verdict: young ? 'new' : 'none', why }
  }

  switch (probe.state) {
    case 'unknown':
      return { ...base, verdict: 'unknown', why: `${probe.kind}: ${probe.reason}` }
    case 'unreadable':
      return { ...base, verdict: 'unknown', why: `the repository cannot be read (${probe.kind}): ${probe.reason}` }
    case 'none':
      return nothingYet(`no snapshot at ${probe.location}`)
    case 'exists': {
      if (!probe.restic) {
        // list/head mode: a snapshot file exists, its time is not known; the last backup stands in.
        return lastBackup ? judged(lastBackup.time, { estimated: true }) : { ...base, verdict: 'unknown', why: `a snapshot exists at ${probe.location}, but probe.mode=${config.store.probe.mode} does not tell its time and no backup of this source is recorded` }
      }
      const selection = selectSnapshot(probe.restic.snapshots)
      if (!selection.selected) {
        const paths = [...new Set(probe.restic.snapshots.flatMap((s) => s.paths))].slice(0, 5).join(', ')
        return nothingYet(`${probe.location} holds ${probe.restic.total} snapshot(s), none VolSync would restore (paths ${paths || 'none'})`)
      }
      const s = selection.selected
      return judged(new Date(s.epochSeconds * 1000).toISOString().replace('.000Z', 'Z'), { id: s.id })
    }
  }
}

export interface ReadinessSummary {
  total: number
  byVerdict: Record<Verdict, number>
  attention: number
  /** The oldest restore point among the late ones. */
  oldestLate?: { pvc: string; ageMs: number }
  text: string
}

/** `2d`, `5h`, `12m`: a restore point's age for people. */
export function ageText(ms: number): string {
  return ms >= 2 * 86_400_000 ? `${Math.round(ms / 86_400_000)}d` : ms >= 3_600_000 ? `${Math.round(ms / 3_600_000)}h` : `${Math.max(0, Math.round(ms / 60_000))}m`
}

/** `57 of 60 PVCs would come back; 2 late (oldest restore point 3d ago: media/db), 1 without any backup` */
export function summarize(rows: readonly PvcReadiness[]): ReadinessSummary {
  const byVerdict = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>
  let oldestLate: ReadinessSummary['oldestLate']
  for (const r of rows) {
    byVerdict[r.verdict]++
    if (r.verdict === 'late' && r.restorePoint && (!oldestLate || r.restorePoint.ageMs > oldestLate.ageMs)) oldestLate = { pvc: `${r.namespace}/${r.name}`, ageMs: r.restorePoint.ageMs }
  }
  const attention = rows.filter((r) => r.attention.length > 0).length
  const comeBack = byVerdict.ok + byVerdict.late
  const parts = [
    byVerdict.late ? `${byVerdict.late} late (oldest restore point ${ageText(oldestLate!.ageMs)} ago: ${oldestLate!.pvc})` : '',
    byVerdict.none ? `${byVerdict.none} without any backup` : '',
    byVerdict.new ? `${byVerdict.new} new (first backup still to come)` : '',
    byVerdict.unknown ? `${byVerdict.unknown} unknown (the store could not tell)` : '',
    attention ? `${attention} need${attention === 1 ? 's' : ''} a human` : '',
  ].filter(Boolean)
  const text = `${comeBack} of ${rows.length} PVC${rows.length === 1 ? '' : 's'} would come back${parts.length ? `; ${parts.join(', ')}` : ''}`
  return { total: rows.length, byVerdict, attention, ...(oldestLate ? { oldestLate } : {}), text }
}
