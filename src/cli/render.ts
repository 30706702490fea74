/**
 * The readable form of a check report: a few aligned sections, one line each where possible, with
 * continuation lines indented under the first. Everything printed comes from the report, which holds
 * no secret value.
 */
import { formatRetain, type CheckReport, type SourceSummary } from './check.js'
import type { InFlightFinding } from '../inflight/types.js'
import { snapshotTime } from '../decide/snapshot-text.js'

const WIDTH = 15

function section(label: string, lines: string[]): string[] {
  const [first = '', ...rest] = lines
  return [`${label.padEnd(WIDTH)}${first}`, ...rest.map((l) => `${' '.repeat(WIDTH)}${l}`)]
}

/** Long hex runs (restic ids) shortened for reading: `ababab…`. */
function shortIds(text: string): string {
  return text.replace(/\b[0-9a-f]{16,}\b/g, (hex) => `${hex.slice(0, 8)}…`)
}

/** Newest first, the one a CREATE would restore marked; at most 12 lines. */
function snapshotLines(r: CheckReport): string[] {
  const p = r.store.probe
  if (p.state !== 'exists' || !p.restic) return []
  const chosen = r.onCreate.location === p.location ? r.onCreate.snapshot?.id : undefined
  const newestFirst = [...p.restic.snapshots].reverse()
  const shown = newestFirst.slice(0, 12).map((s) => {
    const extra = [s.hostname, s.tags.length ? `tags ${s.tags.join(',')}` : ''].filter(Boolean).join(', ')
    return `${s.id === chosen ? '→' : ' '} ${s.id.slice(0, 8)}  ${snapshotTime(s)}  ${s.paths.join(', ') || '(no path)'}  (${extra})${s.id === chosen ? '  ← VolSync would restore this' : ''}`
  })
  if (newestFirst.length > shown.length) shown.push(`  … and ${newestFirst.length - shown.length} older`)
  return shown
}

function ago(since: string | undefined, now: string): string {
  if (!since) return ''
  const ms = Date.parse(now) - Date.parse(since)
  if (!Number.isFinite(ms) || ms < 0) return ''
  const s = Math.round(ms / 1000)
  const text = s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : s < 172800 ? `${Math.round(s / 3600)}h` : `${Math.round(s / 86400)}d`
  return ` (${text} ago)`
}

function list(ids: string[], max = 4): string {
  return ids.length <= max ? ids.join(', ') : `${ids.slice(0, max).join(', ')}, +${ids.length - max} more`
}

function finding(f: InFlightFinding, now: string): string {
  return `${f.system} ${f.kind} ${f.namespace ? `${f.namespace}/` : ''}${f.name} (${f.why}${f.since ? `, since ${f.since}${ago(f.since, now)}` : ''})`
}

function sourceStatus(s: SourceSummary, now: string): string | undefined {
  const parts: string[] = []
  if (s.deleting) parts.push('being deleted')
  if (s.synchronizing) parts.push(s.synchronizing)
  if (s.lastSyncStartTime) parts.push(`sync started ${s.lastSyncStartTime}${ago(s.lastSyncStartTime, now)}`)
  if (s.lastSyncTime) parts.push(`last sync ${s.lastSyncTime}${ago(s.lastSyncTime, now)}`)
  if (s.nextSyncTime) parts.push(`next ${s.nextSyncTime}`)
  return parts.length ? parts.join(', ') : undefined
}

export function renderReport(r: CheckReport): string {
  const out: string[] = []
  const now = r.checkedAt

  // PVC
  const facts = [
    r.pvc.phase ?? 'no phase',
    r.pvc.tier === undefined
      ? 'no tier'
      : `tier ${r.pvc.tier}${r.pvc.tierFrom === 'namespace-default' ? ' (namespace default)' : ''}${r.pvc.tierKnown === false ? ' (not a configured tier)' : ''}`,
    [r.pvc.storage, r.pvc.storageClassName].filter(Boolean).join(' ') || undefined,
    r.pvc.accessModes?.join(','),
  ].filter(Boolean)
  const pvcLines = [`${r.pvc.namespace}/${r.pvc.name}  (${facts.join(', ')})`]
  if (r.pvc.dataSourceRef) pvcLines.push(`dataSourceRef ${r.pvc.dataSourceRef.kind} ${r.pvc.dataSourceRef.name}`)
  if (r.pvc.deletionTimestamp) pvcLines.push(`being deleted since ${r.pvc.deletionTimestamp}`)
  if (r.namespace.excluded) pvcLines.push(`namespace ${r.namespace.name} is excluded from smart-restore`)
  if (r.namespace.terminating) pvcLines.push(`namespace ${r.namespace.name} is being deleted`)
  out.push(...section('PVC', pvcLines))

  // Store
  const p = r.store.probe
  const probeText =
    p.state === 'exists'
      ? p.restic
        ? `${p.restic.total} snapshot(s), repository v${p.restic.version ?? '?'}`
        : `snapshot exists (${shortIds(p.detail)}; which one VolSync restores is not checked in this probe mode)`
      : p.state === 'none'
        ? `no snapshot (${p.detail})`
        : p.state === 'unreadable'
          ? `cannot be read (${p.kind}): ${p.reason}`
          : `cannot tell (${p.kind}): ${p.reason}`
  out.push(...section('Backup store', [`${r.store.location}: ${probeText}`, ...snapshotLines(r)]))

  // On create
  const c = r.onCreate
  const createLines: string[] = []
  switch (c.outcome) {
    case 'restore':
      createLines.push(`restore → ${c.objects.filter((o) => o.kind === 'ReplicationDestination').map((o) => `ReplicationDestination ${o.name}`).join('')}, Secret ${c.secret?.name ?? ''}`)
      if (c.snapshot) createLines.push(`snapshot ${c.snapshot.description}`)
      createLines.push(`from ${c.location}${c.restoreFrom ? ` (restore-from ${c.restoreFrom})` : ''}, RESTIC_REPOSITORY ${c.secret?.resticRepository ?? ''}`)
      if (c.sourceSecret) {
        const s = c.sourceSecret
        createLines.push(
          `source Secret ${s.namespace}/${s.name}: ${s.state === 'ok' ? `ok (keys ${s.keys?.join(', ')})` : s.state === 'unreadable' ? `not checked: ${s.detail}` : `${s.detail} — the webhook would deny the restore`}`,
        )
      }
      break
    case 'fresh':
      createLines.push(`fresh: ${c.reason}`)
      break
    case 'fresh-unverified':
      createLines.push(`fresh, unverified: ${c.reason}`)
      break
    case 'skipped':
      createLines.push(`skipped: ${c.reason}`)
      if (c.admitted) {
        const a = c.admitted
        createLines.push(`admitted as ${a.decision ?? '?'}${a.restoreSource ? ` from ${a.restoreSource}` : a.checkedLocation ? ` (checked ${a.checkedLocation})` : ''}`)
      }
      break
    case 'denied':
      createLines.push(`denied (${c.code ?? ''} ${c.cause ?? ''}): ${c.reason}`)
      break
  }
  out.push(...section('On create', createLines))
  const rp = r.restorePrerequisites
  out.push(...section('Restore needs', rp.state === 'present' ? ['present (volume populator, ReplicationDestination and VolumeSnapshot APIs, classes)'] : rp.state === 'missing' ? rp.missing.map((m) => `missing ${m}`) : [`not checked: ${rp.detail ?? 'unknown'}`]))

  // Backup source
  const b = r.backupSource
  const rs = b.existing.replicationSource
  const backupLines: string[] = []
  const describeSource = (s: SourceSummary) =>
    `ReplicationSource ${s.name}${s.managed ? '' : ' (not smart-restore\'s)'} (schedule ${s.schedule ?? '?'}${s.retain ? `, retain ${formatRetain(s.retain)}` : ''})`
  if (rs && b.steps.length === 0 && b.events.length === 0 && rs.managed && !rs.deleting) {
    backupLines.push(describeSource(rs).replace(/ \(schedule/, ' up to date (schedule'))
  } else {
    backupLines.push(b.summary)
    if (rs) backupLines.push(describeSource(rs))
  }
  const status = rs ? sourceStatus(rs, now) : undefined
  if (status) backupLines.push(status)
  const rd = b.existing.replicationDestination
  if (rd) backupLines.push(`restore ReplicationDestination ${rd.name}${rd.managed ? '' : ' (not smart-restore\'s)'}${sourceStatus(rd, now) ? `: ${sourceStatus(rd, now)}` : ''}`)
  for (const s of b.steps) backupLines.push(`would ${s.description}`)
  for (const e of b.events) backupLines.push(`event ${e.type} ${e.reason}: ${e.message}`)
  if (!b.reconcilerEnabled) backupLines.push('the reconciler is disabled (reconciler.enabled=false): nothing of this is carried out')
  out.push(...section('Backup source', backupLines))

  // Delete now
  const d = r.delete
  const deleteLines: string[] = []
  if (d.allowed) {
    deleteLines.push(d.outcome === 'clear' ? 'allowed: nothing in flight' : `allowed (${d.outcome}): ${d.message}`)
  } else if (d.findings.length > 0 && d.cause?.startsWith('in-flight-')) {
    const [first, ...rest] = d.findings
    deleteLines.push(`refused: ${finding(first!, now)}`)
    for (const f of rest) deleteLines.push(`         ${finding(f, now)}`)
    if (d.lock?.state === 'locked') deleteLines.push(`         restic lock ${d.lock.lock} in ${d.lock.location} (since ${d.lock.since})`)
  } else {
    deleteLines.push(`refused (${d.code ?? ''} ${d.cause ?? ''}): ${d.message}`)
  }
  out.push(...section('Delete now', deleteLines))

  // Rules
  const rules = r.rules
  const ruleParts = [`${rules.active} active`]
  if (rules.notInstalled.length) {
    // By system: "Velero, K8up" reads better than eight rule ids (--json has the ids).
    const systems = [...new Set(rules.rules.filter((x) => x.state === 'not-installed').map((x) => x.system))]
    ruleParts.push(`${rules.notInstalled.length} not installed (${systems.join(', ')})`)
  }
  if (rules.failed.length) ruleParts.push(`${rules.failed.length} could not be listed (${list(rules.failed)})`)
  if (rules.namespaceOnly.length) ruleParts.push(`${rules.namespaceOnly.length} listed in ${r.pvc.namespace} only (${list(rules.namespaceOnly)})`)
  if (rules.disabled.length) ruleParts.push(`${rules.disabled.length} disabled (${list(rules.disabled)})`)
  out.push(...section('Rules', [ruleParts.join(', ')]))

  if (r.notes.length) out.push(...section('Notes', r.notes))
  out.push(...section('Attention', r.attention.length ? r.attention : ['none']))
  return `${out.join('\n')}\n`
}
