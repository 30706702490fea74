/**
 * `smart-restore status` for people: a table, what needs a human, the summary line.
 */
import { ageText, type PvcReadiness } from '../status/assess.js'
import type { StatusReport } from './status.js'

const HEADER = ['PVC', 'TIER', 'PHASE', 'ADMITTED', 'SOURCE', 'LAST BACKUP', 'RESTORE POINT', 'AGE', 'VERDICT']

function since(time: string | undefined, nowMs: number): string {
  if (!time) return '-'
  const ms = nowMs - Date.parse(time)
  return Number.isFinite(ms) ? `${ageText(ms)} ago` : time
}

function row(r: PvcReadiness, nowMs: number): string[] {
  const backup = r.lastBackup ? `${since(r.lastBackup.time, nowMs)}${r.lastBackup.result && r.lastBackup.result !== 'Successful' ? ` (${r.lastBackup.result})` : ''}` : '-'
  const point = r.restorePoint ? `${r.restorePoint.time}${r.restorePoint.id ? ` ${r.restorePoint.id.slice(0, 8)}` : ' (est.)'}` : '-'
  return [`${r.namespace}/${r.name}`, r.tier, r.phase ?? '-', r.admitted, r.source, backup, point, r.restorePoint ? ageText(r.restorePoint.ageMs) : '-', r.verdict]
}

export function renderStatus(report: StatusReport): string {
  const nowMs = Date.parse(report.checkedAt)
  const table = [HEADER, ...report.rows.map((r) => row(r, nowMs))]
  const widths = HEADER.map((_, i) => Math.max(...table.map((cells) => cells[i]!.length)))
  const lines = table.map((cells) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
  if (report.rows.length === 0) lines.push(`(no labelled PVC${report.namespace ? ` in ${report.namespace}` : ''})`)
  const human = report.rows.flatMap((r) => {
    const why = r.verdict === 'ok' || r.verdict === 'new' ? [] : r.why ? [`${r.verdict}: ${r.why}`] : r.verdict === 'late' ? [`late: restore point ${ageText(r.restorePoint!.ageMs)} old, the tier backs up every ${ageText(r.intervalMs)}`] : []
    return [...why, ...r.attention].map((a) => `  ${r.namespace}/${r.name}: ${a}`)
  })
  if (human.length) lines.push('', 'Needs a human:', ...human)
  for (const n of report.notes) lines.push(`Note: ${n}`)
  lines.push('', report.summary.text)
  return `${lines.join('\n')}\n`
}
