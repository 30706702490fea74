/**
 * The Grafana dashboard deploy/monitoring/dashboard.json:
 *
 *  - its structure: schemaVersion 39, unique panel ids, grid positions inside the 24 columns and not
 *    overlapping, every panel and query on the `${datasource}` variable, the panels the README
 *    describes (readiness table, restore-point age, PVCs per tier and state, decisions and denials,
 *    admission latency, probe outcomes, reconciler queue and findings);
 *  - every PromQL expression parses: with the Grafana variables replaced by values, each becomes a
 *    recording rule for `promtool check rules` (skipped, saying so, without promtool).
 *
 * The metric names it uses are checked against the metric contract in contract.test.ts; the
 * ConfigMap that carries it in component.test.ts.
 */
import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { stringify } from 'yaml'

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = any

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DASHBOARD_FILE = join(ROOT, 'deploy/monitoring/dashboard.json')
const dashboard: Obj = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8'))
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' }

/** Every panel, rows' nested panels included. */
const allPanels: Obj[] = (dashboard.panels as Obj[]).flatMap((p) => [p, ...(p.panels ?? [])])
const queryPanels = allPanels.filter((p) => p.type !== 'row')
const exprsOf = (p: Obj): string[] => (p.targets ?? []).map((q: Obj) => String(q.expr ?? ''))

/**
 * The expression as Prometheus would get it from Grafana, variables replaced: the interval
 * variables by a duration, the namespace/tier filters (multi-value, "All" = .*) by a regex.
 */
function substitute(expr: string): string {
  return expr
    .replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m')
    .replace(/\$\{?(namespace|tier)\}?/g, '.*')
}

const PROMTOOL = process.env.PROMTOOL || 'promtool'
const promtoolMissing = spawnSync('sh', ['-c', `command -v ${PROMTOOL}`]).status === 0 ? false : `${PROMTOOL} not found: apt-get install prometheus (.ci/run installs it)`

// ---------------------------------------------------------------------------------------------

t.test('dashboard JSON structure', async (t) => {
  t.equal(dashboard.schemaVersion, 39, 'schemaVersion 39')
  t.equal(dashboard.uid, 'smart-restore', 'a fixed uid: links and the sidecar keep pointing at one dashboard')
  t.ok(dashboard.title, 'a title')
  t.notOk('__inputs' in dashboard, 'no __inputs: provisioned dashboards are not imported, the datasource is a variable')

  const vars: Obj[] = dashboard.templating?.list ?? []
  const ds = vars.find((v) => v.name === 'datasource')
  t.ok(ds, 'a datasource variable')
  t.equal(ds?.type, 'datasource')
  t.equal(ds?.query, 'prometheus', 'of Prometheus data sources')
  t.equal(new Set(vars.map((v) => v.name)).size, vars.length, 'variable names are unique')
  for (const v of vars.filter((v) => v.type === 'query')) {
    t.strictSame(v.datasource, DATASOURCE, `variable ${v.name}: queries \${datasource}`)
    t.equal(v.allValue, '.*', `variable ${v.name}: "All" matches every value (also none: metrics.perPvc false)`)
  }

  const ids = allPanels.map((p) => p.id)
  t.ok(ids.every((id) => Number.isInteger(id) && id > 0), 'every panel has an integer id')
  t.equal(new Set(ids).size, ids.length, `panel ids are unique (${ids.length} panels)`)

  for (const p of allPanels) {
    const g = p.gridPos
    t.ok(g && ['h', 'w', 'x', 'y'].every((k) => Number.isInteger(g[k]) && g[k] >= 0), `panel ${p.id} "${p.title}": gridPos h, w, x, y`)
    t.ok(g.w > 0 && g.h > 0 && g.x + g.w <= 24, `panel ${p.id}: inside the 24 columns`)
    t.ok(p.title, `panel ${p.id}: a title`)
  }
  const overlap = (a: Obj, b: Obj) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
  for (const [i, a] of allPanels.entries()) {
    for (const b of allPanels.slice(i + 1)) t.notOk(overlap(a.gridPos, b.gridPos), `panels ${a.id} and ${b.id} do not overlap`)
  }

  for (const p of queryPanels) {
    t.strictSame(p.datasource, DATASOURCE, `panel ${p.id} "${p.title}": datasource \${datasource}`)
    const targets: Obj[] = p.targets ?? []
    t.ok(targets.length > 0, `panel ${p.id}: has queries`)
    t.equal(new Set(targets.map((q) => q.refId)).size, targets.length, `panel ${p.id}: refIds are unique`)
    for (const q of targets) {
      t.strictSame(q.datasource, DATASOURCE, `panel ${p.id} query ${q.refId}: datasource \${datasource}`)
      t.ok(String(q.expr ?? '').trim(), `panel ${p.id} query ${q.refId}: an expression`)
    }
  }
  // Anything else naming a datasource is the variable too (or Grafana's own, for its annotations).
  const named: Obj[] = []
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk)
    else if (v && typeof v === 'object') {
      const o = v as Obj
      if (o.datasource && typeof o.datasource === 'object') named.push(o.datasource)
      Object.values(o).forEach(walk)
    }
  }
  walk(dashboard)
  t.ok(named.every((d) => (d.type === 'prometheus' && d.uid === '${datasource}') || d.type === 'grafana'), `${named.length} datasource references, all \${datasource}`)
})

t.test('the panels the README describes', async (t) => {
  const panel = (what: string, test: (p: Obj, exprs: string) => boolean): Obj | undefined => {
    const found = queryPanels.find((p) => test(p, exprsOf(p).join('\n')))
    t.ok(found, what)
    return found
  }
  const table = panel('restore readiness table: per PVC state, restore point age, last backup age', (p, e) =>
    p.type === 'table' && /smart_restore_pvc_readiness/.test(e) && /time\(\) - .*smart_restore_pvc_restore_point_timestamp_seconds/.test(e) && /time\(\) - .*smart_restore_pvc_last_backup_timestamp_seconds/.test(e),
  )
  if (table) {
    t.ok(table.targets.every((q: Obj) => q.format === 'table' && q.instant === true), 'table: instant queries in table format')
    t.ok(table.targets.every((q: Obj) => /by \(namespace, pvc, tier/.test(q.expr)), 'table: one row per PVC over the replicas')
    t.ok(table.transformations?.some((x: Obj) => x.id === 'merge'), 'table: the queries merged into rows')
  }
  panel('restore-point age per PVC (timeseries)', (p, e) => p.type === 'timeseries' && /time\(\) - max by \(namespace, pvc\) \(smart_restore_pvc_restore_point_timestamp_seconds/.test(e))
  panel('PVCs per tier and state', (p, e) => /by \(tier, state\) \(smart_restore_pvcs\{/.test(e))
  panel('decisions over time by decision', (p, e) => p.type === 'timeseries' && /sum by \(decision\) \(rate\(smart_restore_decisions_total\[/.test(e))
  panel('denials over time by cause', (p, e) => p.type === 'timeseries' && /sum by \(cause\) \(rate\(smart_restore_decisions_total\{decision="denied"\}\[/.test(e))
  panel('admission latency p50 and p99', (p, e) =>
    /histogram_quantile\(0\.5, .*smart_restore_admission_duration_seconds_bucket/.test(e) && /histogram_quantile\(0\.99, .*smart_restore_admission_duration_seconds_bucket/.test(e),
  )
  panel('probe outcomes by state', (p, e) => /sum by \(state\) \(rate\(smart_restore_store_probe_duration_seconds_count\[/.test(e))
  panel('reconciler queue depth', (p, e) => /smart_restore_reconcile_queue_depth/.test(e))
  panel('reconciler findings by finding', (p, e) => /sum by \(finding\) \(rate\(smart_restore_reconcile_findings_total\[/.test(e))
  for (const p of queryPanels) {
    for (const q of p.targets) {
      if (/\brate\(|\bincrease\(/.test(q.expr)) t.match(q.expr, /\[\$__rate_interval\]/, `panel ${p.id} query ${q.refId}: rate over $__rate_interval`)
    }
  }
})

t.test('every panel query is valid PromQL (promtool check rules)', { skip: promtoolMissing }, async (t) => {
  const rules: Obj[] = []
  for (const p of queryPanels) {
    for (const q of p.targets) {
      const expr = substitute(String(q.expr))
      t.notMatch(expr, /\$/, `panel ${p.id} query ${q.refId}: no Grafana variable left`)
      rules.push({ record: `dashboard:panel_${p.id}:${q.refId}`, expr })
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'smart-restore-dashboard-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'dashboard.rules.yaml')
  writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules }] }))
  const { code, output } = await promisify(execFile)(PROMTOOL, ['check', 'rules', file]).then(
    ({ stdout, stderr }) => ({ code: 0, output: stdout + stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }),
  )
  t.equal(code, 0, output)
  t.match(output, `SUCCESS: ${rules.length} rules found`, `${rules.length} queries`)

  // And the check itself refuses what Grafana would not run.
  writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules: [{ record: 'dashboard:broken', expr: 'sum by (state (smart_restore_pvcs)' }] }] }))
  const broken = spawnSync(PROMTOOL, ['check', 'rules', file], { encoding: 'utf8' })
  t.not(broken.status, 0, 'a broken expression fails the check')
})

t.test('the variables are replaced the way Grafana would', async (t) => {
  t.equal(substitute('rate(x{namespace=~"$namespace", tier=~"${tier}"}[$__rate_interval])'), 'rate(x{namespace=~".*", tier=~".*"}[5m])')
  t.equal(substitute('increase(x[${__range}])'), 'increase(x[5m])')
})
