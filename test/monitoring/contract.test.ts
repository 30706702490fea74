/**
 * The metric contract between the service and deploy/monitoring/: the alerts and the dashboard query
 * only the metrics listed here (the README's Operating and "Am I protected?" sections), and each of
 * them is registered by the service (a literal name in src/, where prom-client registers it). A
 * renamed metric fails here instead of silencing an alert.
 *
 * Also what the ServiceMonitor's honorLabels relies on: no metric of the service carries a label
 * that Prometheus sets on the target (job, instance, pod, ...) except `namespace`, the PVC's own.
 */
import t from 'tap'
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = any

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const MONITORING = join(ROOT, 'deploy/monitoring')
const SRC = join(ROOT, 'src')

/** Metric → labels (the histograms also as _bucket, _count, _sum; `le` on _bucket). */
const CONTRACT: Record<string, string[]> = {
  // DR readiness (src/status/metrics.ts); the per-PVC ones only with metrics.perPvc true.
  smart_restore_pvc_readiness: ['namespace', 'pvc', 'tier', 'state'],
  smart_restore_pvc_restore_point_timestamp_seconds: ['namespace', 'pvc', 'tier'],
  smart_restore_pvc_last_backup_timestamp_seconds: ['namespace', 'pvc', 'tier'],
  smart_restore_pvc_attention: ['namespace', 'pvc', 'tier'],
  smart_restore_pvcs: ['tier', 'state'],
  smart_restore_pvcs_attention: ['tier'],
  smart_restore_tier_interval_seconds: ['tier'],
  smart_restore_readiness_refresh_timestamp_seconds: [],
  smart_restore_readiness_refresh_duration_seconds: [],
  // The service (src/metrics.ts).
  smart_restore_decisions_total: ['webhook', 'decision', 'cause'],
  smart_restore_store_probe_duration_seconds: ['state'],
  smart_restore_reconcile_findings_total: ['finding'],
  smart_restore_tls_certificate_expiry_timestamp_seconds: [],
  smart_restore_cache_synced: ['watch', 'resource'],
  smart_restore_admission_duration_seconds: ['webhook', 'operation', 'decision'],
  smart_restore_reconcile_queue_depth: ['state'],
  smart_restore_restore_prerequisite_missing: ['prerequisite'],
}
const HISTOGRAMS = new Set(['smart_restore_store_probe_duration_seconds', 'smart_restore_admission_duration_seconds'])
/** Labels Prometheus puts on every series of a ServiceMonitor target, besides namespace. */
const LABELS_OF_THE_TARGET = new Set(['job', 'instance', 'pod', 'service', 'endpoint', 'container'])

const METRIC = /\bsmart_restore_[a-z0-9_]+/g
/** The metric a series name belongs to: a histogram's _bucket/_count/_sum is the histogram. */
const metricOf = (name: string): string => {
  const base = name.replace(/_(bucket|count|sum)$/, '')
  return base !== name && HISTOGRAMS.has(base) ? base : name
}

// What deploy/monitoring/ queries: the alert expressions, the PromQL of their annotation templates
// (`query`), the dashboard's panel and variable queries.
const rule: Obj = parse(readFileSync(join(MONITORING, 'prometheusrule.yaml'), 'utf8'))
const alerts: Obj[] = rule.spec.groups.flatMap((g: Obj) => g.rules)
const dashboard: Obj = JSON.parse(readFileSync(join(MONITORING, 'dashboard.json'), 'utf8'))
const queried: Array<[where: string, text: string]> = [
  ...alerts.map((r): [string, string] => [`alert ${r.alert}`, String(r.expr)]),
  ...alerts.flatMap((r) =>
    Object.entries(r.annotations as Record<string, string>).flatMap(([k, v]) => [...v.matchAll(/printf `([^`]*)`[^}]*\| query/g)].map((m): [string, string] => [`alert ${r.alert} annotation ${k}`, m[1]!])),
  ),
  ...(dashboard.panels as Obj[]).flatMap((p) => (p.targets ?? []).map((q: Obj): [string, string] => [`panel ${p.id} "${p.title}" ${q.refId}`, String(q.expr)])),
  ...(dashboard.templating.list as Obj[]).filter((v) => v.type === 'query').map((v): [string, string] => [`variable ${v.name}`, String(v.definition)]),
]

/** Every `smart_restore_…` string literal in src/ (prom-client registers metrics by literal name). */
function sourceNames(dir: string): Set<string> {
  const out = new Set<string>()
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) sourceNames(p).forEach((n) => out.add(n))
    else if (e.name.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/['"`](smart_restore_[a-z0-9_]+)['"`]/g)) out.add(m[1]!)
  }
  return out
}
const registered = sourceNames(SRC)

// ---------------------------------------------------------------------------------------------

t.test('the alerts and the dashboard query only the contract’s metrics', async (t) => {
  t.ok(queried.length >= alerts.length + 15, `${queried.length} queries`)
  const used = new Set<string>()
  for (const [where, text] of queried) {
    for (const name of text.match(METRIC) ?? []) {
      const metric = metricOf(name)
      used.add(metric)
      t.ok(metric in CONTRACT, `${where}: ${name} is in the contract`)
    }
  }
  t.strictSame([...used].filter((m) => !(m in CONTRACT)), [], 'no metric outside the contract')
  t.ok(used.size >= 15, `${used.size} of the ${Object.keys(CONTRACT).length} metrics used`)
})

t.test('label matchers and groupings use the metric’s own labels', async (t) => {
  // Within one selector / aggregation: `metric{label=...}` and `by (labels) (metric` or `(metric{...})`.
  for (const [where, text] of queried) {
    for (const m of text.matchAll(/\b(smart_restore_[a-z0-9_]+)\{([^}]*)\}/g)) {
      const metric = metricOf(m[1]!)
      const allowed = new Set([...(CONTRACT[metric] ?? []), ...(m[1]!.endsWith('_bucket') ? ['le'] : [])])
      for (const [, label] of m[2]!.matchAll(/([a-z_]+)\s*(=~|!~|!=|=)/g)) t.ok(allowed.has(label!), `${where}: ${m[1]} has the label ${label}`)
    }
    for (const m of text.matchAll(/\bby \(([^)]*)\) \((smart_restore_[a-z0-9_]+)/g)) {
      const metric = metricOf(m[2]!)
      const allowed = new Set([...(CONTRACT[metric] ?? []), ...(m[2]!.endsWith('_bucket') ? ['le'] : [])])
      for (const label of m[1]!.split(',').map((s) => s.trim()).filter(Boolean)) t.ok(allowed.has(label), `${where}: ${m[2]} has the label ${label} to group by`)
    }
  }
})

t.test('the service registers every metric of the contract, and every metric deploy/monitoring/ names', async (t) => {
  for (const metric of Object.keys(CONTRACT)) t.ok(registered.has(metric), `${metric} is registered in src/`)
  // The descriptions may point at other metrics (smart_restore_store_probe_errors_total): they must exist too.
  for (const file of readdirSync(MONITORING)) {
    for (const name of new Set(readFileSync(join(MONITORING, file), 'utf8').match(METRIC) ?? [])) {
      t.ok(registered.has(metricOf(name)), `${file}: ${name} is a metric of the service`)
    }
  }
})

t.test('no metric label collides with a target label but namespace (the ServiceMonitor honors labels)', async (t) => {
  const labelSets: string[][] = []
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.ts')) for (const m of readFileSync(p, 'utf8').matchAll(/labelNames:\s*\[([^\]]*)\]/g)) labelSets.push([...m[1]!.matchAll(/['"]([a-zA-Z_]+)['"]/g)].map((x) => x[1]!))
    }
  }
  walk(SRC)
  t.ok(labelSets.length >= 10, `${labelSets.length} label sets in src/`)
  for (const labels of labelSets) {
    t.strictSame(labels.filter((l) => LABELS_OF_THE_TARGET.has(l)), [], `[${labels.join(', ')}]: no job, instance, pod, service, endpoint or container`)
  }
  const sm: Obj = parse(readFileSync(join(MONITORING, 'servicemonitor.yaml'), 'utf8'))
  t.ok(sm.spec.endpoints.every((e: Obj) => e.honorLabels === true), 'the ServiceMonitor keeps the series’ namespace (honorLabels)')
})
