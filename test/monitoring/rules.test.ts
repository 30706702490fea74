/**
 * The alerts of deploy/monitoring/prometheusrule.yaml, checked by Prometheus's own promtool:
 *
 *  - `promtool check rules` on the PrometheusRule's spec (PromQL, templates, durations);
 *  - `promtool test rules` with test/monitoring/rules.unit.yaml: every alert firing and not firing,
 *    per PVC and per tier (metrics.perPvc: false), across two replicas;
 *  - the unit tests can fail: each alert broken on purpose (never firing, firing too readily, without
 *    its `for`, without its per-tier branch or its guard) must make `promtool test rules` fail;
 *  - what every alert carries: severity, summary, description, the runbook URL.
 *
 * Without promtool (Debian: apt-get install prometheus, which .ci/run does) the promtool tests are
 * skipped and say so; the structure is checked anyway.
 */
import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parse, stringify } from 'yaml'

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = any

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '../..')
const RULE_FILE = join(ROOT, 'deploy/monitoring/prometheusrule.yaml')
const UNIT_FILE = join(HERE, 'rules.unit.yaml')
/** The name rules.unit.yaml gives its rule file (rule_files), next to it. */
const RULES_NAME = 'smart-restore.rules.yaml'
const RUNBOOK = 'https://github.com/smart-restore/smart-restore#troubleshooting'

const ALERTS = [
  'SmartRestoreRestorePointLate',
  'SmartRestoreNoRestorePoint',
  'SmartRestoreAttention',
  'SmartRestoreRestorePending',
  'SmartRestoreStoreUnknown',
  'SmartRestoreDenialsSpiking',
  'SmartRestoreCertificateExpiring',
  'SmartRestoreCachesNotSynced',
  'SmartRestorePrerequisiteMissing',
]
/** The alerts that fall back to the per-tier series when the per-PVC ones are off. */
const PER_PVC_ALERTS = ['SmartRestoreRestorePointLate', 'SmartRestoreNoRestorePoint', 'SmartRestoreAttention']

const ruleDoc: Obj = parse(readFileSync(RULE_FILE, 'utf8'))
const unit: Obj = parse(readFileSync(UNIT_FILE, 'utf8'))
const rules: Obj[] = ruleDoc.spec.groups.flatMap((g: Obj) => g.rules)
const alertRule = (name: string): Obj => {
  const rule = rules.find((r) => r.alert === name)
  if (!rule) throw new Error(`no alert ${name} in ${RULE_FILE}`)
  return rule
}

const PROMTOOL = process.env.PROMTOOL || 'promtool'
const promtoolMissing = spawnSync('sh', ['-c', `command -v ${PROMTOOL}`]).status === 0 ? false : `${PROMTOOL} not found: apt-get install prometheus (.ci/run installs it)`
const run = promisify(execFile)

/** promtool's exit code and output, never throwing. */
async function promtool(args: string[], cwd: string): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run(PROMTOOL, args, { cwd, maxBuffer: 16 * 1024 * 1024 })
    return { code: 0, output: stdout + stderr }
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string }
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` || e.message }
  }
}

const scratch = mkdtempSync(join(tmpdir(), 'smart-restore-rules-'))
t.teardown(() => rmSync(scratch, { recursive: true, force: true }))
let scratchCount = 0

/** A directory holding `spec` as the rule file and a copy of rules.unit.yaml, as promtool wants them. */
function ruleDir(spec: Obj): string {
  const dir = join(scratch, String(scratchCount++))
  mkdirSync(dir)
  writeFileSync(join(dir, RULES_NAME), stringify(spec))
  writeFileSync(join(dir, 'rules.unit.yaml'), readFileSync(UNIT_FILE, 'utf8'))
  return dir
}

/** The spec with one alert changed. */
function mutated(name: string, change: (rule: Obj) => void): Obj {
  const spec = structuredClone(ruleDoc.spec)
  const rule = spec.groups.flatMap((g: Obj) => g.rules).find((r: Obj) => r.alert === name)
  change(rule)
  return spec
}

/** Replace `from` in the alert's expression, failing when it is not there (the mutation would test nothing). */
const replaceInExpr = (from: string | RegExp, to: string) => (rule: Obj) => {
  const expr = String(rule.expr)
  const next = expr.replace(from, to)
  if (next === expr) throw new Error(`${rule.alert}: ${String(from)} not in its expression`)
  rule.expr = next
}

/** `work` over `items`, 8 at a time (or one per CPU if more: promtool mostly waits), results in order. */
async function pool<T, R>(items: T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  const worker = async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await work(items[i]!)
    }
  }
  await Promise.all(Array.from({ length: Math.max(8, availableParallelism()) }, worker))
  return out
}

// ---------------------------------------------------------------------------------------------

t.test('the PrometheusRule and its alerts', async (t) => {
  t.equal(ruleDoc.apiVersion, 'monitoring.coreos.com/v1')
  t.equal(ruleDoc.kind, 'PrometheusRule')
  t.equal(ruleDoc.metadata.namespace, 'smart-restore')
  t.strictSame(Object.keys(ruleDoc.spec), ['groups'], 'the spec is a rule file: groups only')
  t.strictSame(rules.map((r) => r.alert).sort(), [...ALERTS].sort(), 'exactly the alerts documented')
  t.equal(new Set(ruleDoc.spec.groups.map((g: Obj) => g.name)).size, ruleDoc.spec.groups.length, 'group names are unique')
  for (const r of rules) {
    t.ok(['warning', 'critical'].includes(r.labels?.severity), `${r.alert}: severity ${r.labels?.severity}`)
    t.strictSame(Object.keys(r.annotations ?? {}).sort(), ['description', 'runbook_url', 'summary'], `${r.alert}: summary, description, runbook_url`)
    t.equal(r.annotations.runbook_url, RUNBOOK, `${r.alert}: runbook_url is the README's Troubleshooting`)
    t.ok(String(r.annotations.summary).trim() && String(r.annotations.description).trim(), `${r.alert}: summary and description are not empty`)
    // Every label the expression keeps must be usable in the text: the annotations name the object.
    for (const label of String(r.expr).match(/\bby \(([^)]*)\)/)?.[1]?.split(',').map((s) => s.trim()).filter(Boolean) ?? []) {
      if (label === 'le') continue
      t.match(`${r.annotations.summary} ${r.annotations.description}`, `$labels.${label}`, `${r.alert}: the annotations name its ${label}`)
    }
  }
  for (const name of PER_PVC_ALERTS) {
    const expr = String(alertRule(name).expr)
    t.match(expr, /max by \(namespace, pvc, tier\)/, `${name}: per PVC`)
    t.match(expr, /max by \(tier\)/, `${name}: per tier`)
    t.match(expr, /unless on \(\)\s+count\(smart_restore_pvc_[a-z_]+\) > 0/, `${name}: the per-tier branch only without per-PVC series`)
  }
})

t.test('rules.unit.yaml tests every alert, firing and not firing', async (t) => {
  t.strictSame(unit.rule_files, [RULES_NAME])
  const cases: Array<{ test: string; alertname: string; eval: string; alerts: Obj[] }> = unit.tests.flatMap((test: Obj) =>
    (test.alert_rule_test ?? []).map((c: Obj) => ({ test: test.name, alertname: c.alertname, eval: c.eval_time, alerts: c.exp_alerts ?? [] })),
  )
  t.ok(unit.tests.every((test: Obj) => typeof test.name === 'string' && test.name), 'every test group has a name')
  // A misspelt alertname with exp_alerts [] would pass without testing anything.
  for (const c of cases) t.ok(ALERTS.includes(c.alertname), `${c.test}: ${c.alertname} is an alert of the PrometheusRule`)
  for (const name of ALERTS) {
    const own = cases.filter((c) => c.alertname === name)
    t.ok(own.some((c) => c.alerts.length > 0), `${name}: a case where it fires`)
    t.ok(own.some((c) => c.alerts.length === 0), `${name}: a case where it does not fire`)
    for (const c of own) {
      for (const a of c.alerts) {
        t.equal(a.exp_labels?.severity, alertRule(name).labels.severity, `${c.test} ${name}: expects its severity`)
        t.strictSame(Object.keys(a.exp_annotations ?? {}).sort(), ['description', 'runbook_url', 'summary'], `${c.test} ${name}: expects all of its annotations`)
      }
    }
  }
  for (const name of PER_PVC_ALERTS) {
    const fired = cases.filter((c) => c.alertname === name).flatMap((c) => c.alerts)
    t.ok(fired.some((a) => a.exp_labels.pvc && a.exp_labels.namespace && a.exp_labels.tier), `${name}: fires per PVC`)
    t.ok(fired.some((a) => !('pvc' in a.exp_labels) && a.exp_labels.tier), `${name}: fires per tier when the per-PVC series are off`)
  }
})

t.test('promtool check rules', { skip: promtoolMissing }, async (t) => {
  const dir = ruleDir(ruleDoc.spec)
  const { code, output } = await promtool(['check', 'rules', RULES_NAME], dir)
  t.equal(code, 0, output)
  t.match(output, `SUCCESS: ${rules.length} rules found`)
})

t.test('promtool test rules (rules.unit.yaml)', { skip: promtoolMissing }, async (t) => {
  const { code, output } = await promtool(['test', 'rules', 'rules.unit.yaml'], ruleDir(ruleDoc.spec))
  t.equal(code, 0, output)
  t.match(output, /SUCCESS/)
})

t.test('the unit tests fail when an alert is broken', { skip: promtoolMissing }, async (t) => {
  const broken: Array<[string, string, (rule: Obj) => void]> = []
  for (const name of ALERTS) {
    // Never fires: the firing cases must notice.
    broken.push([name, 'never fires', (r) => (r.expr = 'vector(1) unless vector(1)')])
    // Fires without waiting: the pending cases must notice.
    if (alertRule(name).for) broken.push([name, 'without its `for`', (r) => delete r.for])
  }
  for (const name of PER_PVC_ALERTS) {
    broken.push([name, 'without its per-tier branch', (r) => (r.expr = String(r.expr).split(/\nor\n/)[0])])
    broken.push([name, 'without the guard of its per-tier branch', replaceInExpr(/\s*unless on \(\)\s*count\([a-z_]+\) > 0/, '')])
  }
  // Fires too readily: the not-firing cases must notice.
  const looser: Record<string, Array<string | RegExp>> = {
    SmartRestoreRestorePointLate: ['state="late"', 'state=~"late|ok"'],
    SmartRestoreNoRestorePoint: ['state="none"', 'state=~"none|new"'],
    SmartRestoreAttention: [/== 1/, '>= 0'],
    SmartRestoreRestorePending: [/finding="restore_pending"/g, 'finding=~"restore_pending|restore_empty"'],
    SmartRestoreStoreUnknown: ['> 0.5', '> 0.2'],
    SmartRestoreDenialsSpiking: ['> 10', '> 5'],
    SmartRestoreCertificateExpiring: ['14 * 86400', '60 * 86400'],
    SmartRestoreCachesNotSynced: ['== 0', '>= 0'],
    SmartRestorePrerequisiteMissing: ['== 1', '>= 0'],
  }
  for (const name of ALERTS) {
    const [from, to] = looser[name]!
    broken.push([name, `fires too readily (${String(from)} → ${String(to)})`, replaceInExpr(from!, String(to))])
  }
  t.ok(broken.length >= ALERTS.length * 2 + PER_PVC_ALERTS.length * 2, `${broken.length} broken variants`)
  const results = await pool(broken, async ([name, how, change]) => {
    const dir = ruleDir(mutated(name, change))
    const check = await promtool(['check', 'rules', RULES_NAME], dir)
    const test = await promtool(['test', 'rules', 'rules.unit.yaml'], dir)
    return { name, how, check, test }
  })
  for (const { name, how, check, test } of results) {
    t.equal(check.code, 0, `${name} ${how}: still valid rules (${check.output.trim().split('\n').pop()})`)
    t.not(test.code, 0, `${name} ${how}: promtool test rules fails`)
    t.match(test.output, `alertname: ${name}`, `${name} ${how}: the failure names the alert`)
  }
})
