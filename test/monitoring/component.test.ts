/**
 * deploy/monitoring/ as a kustomize Component:
 *
 *  - a Component (kustomize.config.k8s.io/v1alpha1) that uses every file of its directory;
 *  - the ServiceMonitor selects deploy/'s Service smart-restore and scrapes its `metrics` port over
 *    plain HTTP, honoring the series' labels (the PVC's `namespace`);
 *  - the dashboard ConfigMap: generated from dashboard.json without a hash suffix, labelled for the
 *    Grafana sidecar (grafana_dashboard: "1");
 *  - with kubectl (>= 1.21): `kubectl kustomize` of an overlay with resources deploy/ (and
 *    deploy/cert-manager/) and components deploy/monitoring/ builds, leaves every object of deploy/
 *    as it was, and adds exactly the objects rendered here from the YAML. Without kubectl that part
 *    is skipped and says so; the rendering from the YAML is checked anyway.
 */
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import { parse, parseAllDocuments, stringify } from 'yaml'

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = any

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DEPLOY = join(ROOT, 'deploy')
const MONITORING = join(DEPLOY, 'monitoring')

const loadDocs = (file: string): Obj[] => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS()).filter((v) => v !== null && v !== undefined)
const parseStream = (text: string): Obj[] => parseAllDocuments(text).map((d) => d.toJS()).filter((v) => v !== null && v !== undefined)
const id = (o: Obj) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`
const one = (objs: Obj[], kind: string, name?: string): Obj => {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name))
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`)
  return found[0]
}

const component: Obj = parse(readFileSync(join(MONITORING, 'kustomization.yaml'), 'utf8'))

/** What the Component adds, rendered from its YAML: its resources and the generated ConfigMap. */
function renderComponent(): Obj[] {
  const objs: Obj[] = (component.resources ?? []).flatMap((f: string) => loadDocs(join(MONITORING, f)))
  for (const g of component.configMapGenerator ?? []) {
    const data: Record<string, string> = {}
    for (const spec of g.files ?? []) {
      const [key, file] = String(spec).includes('=') ? String(spec).split('=') : [String(spec).split('/').pop(), spec]
      data[key!] = readFileSync(join(MONITORING, file!), 'utf8')
    }
    const metadata: Obj = { name: g.name, ...(g.namespace ? { namespace: g.namespace } : {}) }
    if (g.options?.labels) metadata.labels = g.options.labels
    if (g.options?.annotations) metadata.annotations = g.options.annotations
    objs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata, data })
  }
  return objs
}
const ours = renderComponent()

// ---------------------------------------------------------------------------------------------

t.test('a kustomize Component using every file of deploy/monitoring/', async (t) => {
  t.equal(component.apiVersion, 'kustomize.config.k8s.io/v1alpha1')
  t.equal(component.kind, 'Component')
  const used = new Set<string>([
    'kustomization.yaml',
    'README.md',
    ...(component.resources ?? []),
    ...(component.configMapGenerator ?? []).flatMap((g: Obj) => (g.files ?? []).map((f: string) => f.split('=').pop())),
  ])
  for (const f of readdirSync(MONITORING)) t.ok(used.has(f), `${f} is used by the kustomization`)
  for (const f of used) t.ok(existsSync(join(MONITORING, f)), `${f} exists`)
  t.strictSame(ours.map(id).sort(), ['ConfigMap/smart-restore/smart-restore-dashboard', 'PrometheusRule/smart-restore/smart-restore', 'ServiceMonitor/smart-restore/smart-restore'])
  for (const o of ours) t.equal(o.metadata.labels?.['app.kubernetes.io/part-of'], 'smart-restore', `${id(o)}: part of smart-restore`)
})

t.test('the ServiceMonitor scrapes the Service smart-restore on its metrics port', async (t) => {
  const sm = one(ours, 'ServiceMonitor')
  const service = one(loadDocs(join(DEPLOY, 'base/service.yaml')), 'Service', 'smart-restore')
  t.equal(sm.apiVersion, 'monitoring.coreos.com/v1')
  t.equal(service.metadata.namespace, 'smart-restore')
  t.strictSame(sm.spec.namespaceSelector, { matchNames: [service.metadata.namespace] }, "the Service's namespace")
  t.strictSame(sm.spec.selector.matchLabels, { 'app.kubernetes.io/name': 'smart-restore', 'app.kubernetes.io/component': 'webhook' })
  for (const [k, v] of Object.entries(sm.spec.selector.matchLabels)) t.equal(service.metadata.labels[k], v, `the Service has ${k}=${String(v)}`)
  t.notOk(sm.spec.selector.matchExpressions, 'no other condition')
  t.equal(sm.spec.endpoints.length, 1)
  const [endpoint] = sm.spec.endpoints
  t.equal(endpoint.port, 'metrics', 'the port by name')
  t.ok(service.spec.ports.some((p: Obj) => p.name === endpoint.port), 'the Service has a port named metrics')
  t.equal(endpoint.path, '/metrics')
  t.equal(endpoint.scheme, 'http', 'plain HTTP: the metrics port has no TLS')
  t.equal(endpoint.honorLabels, true, "the per-PVC series keep the PVC's namespace")
  const container = one(loadDocs(join(DEPLOY, 'base/deployment.yaml')), 'Deployment').spec.template.spec.containers[0]
  const target = service.spec.ports.find((p: Obj) => p.name === 'metrics').targetPort
  t.ok(container.ports.some((p: Obj) => p.name === target || p.containerPort === target), `the pod has the Service's targetPort ${target}`)
})

t.test('the dashboard ConfigMap for the Grafana sidecar', async (t) => {
  const generator = (component.configMapGenerator as Obj[]).find((g) => g.name === 'smart-restore-dashboard')
  t.ok(generator, 'generated by the kustomization')
  t.equal(generator?.options?.disableNameSuffixHash, true, 'no hash suffix: a stable name')
  const cm = one(ours, 'ConfigMap', 'smart-restore-dashboard')
  t.equal(cm.metadata.labels.grafana_dashboard, '1', 'labelled grafana_dashboard: "1" (a string: a label value)')
  t.strictSame(Object.keys(cm.data), ['smart-restore.json'])
  t.equal(cm.data['smart-restore.json'], readFileSync(join(MONITORING, 'dashboard.json'), 'utf8'), 'holds dashboard.json as it is')
  t.doesNotThrow(() => JSON.parse(cm.data['smart-restore.json']), 'valid JSON')
  // kubectl apply keeps the whole object in an annotation (256 KiB); leave room.
  t.ok(Buffer.byteLength(cm.data['smart-restore.json']) < 200 * 1024, 'small enough for client-side kubectl apply')
})

/** Why the kubectl build cannot run here, or undefined when it can (as test/deploy/manifests.test.ts). */
function kubectlMissing(kubectl: string): string | undefined {
  const probe = spawnSync(kubectl, ['version', '--client'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) {
    return `${kubectl} not found: deploy/monitoring/ was checked from its YAML only. Install kubectl >= 1.21 to build it with the real kustomize`
  }
  const kustomize = /Kustomize Version: v(\d+)/.exec(probe.stdout)
  if (!kustomize || Number(kustomize[1]) < 4) {
    return `${kubectl} embeds kustomize ${kustomize ? `v${kustomize[1]}` : '(version unknown)'}, older than v4 (kubectl 1.21): deploy/monitoring/ was checked from its YAML only`
  }
  return undefined
}

const KUBECTL = process.env.KUBECTL || 'kubectl'
t.test('kubectl kustomize: deploy/ (and deploy/cert-manager/) with the monitoring component', { skip: kubectlMissing(KUBECTL) ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'smart-restore-monitoring-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const build = (target: string): { status: number | null; objs: Obj[]; stderr: string } => {
    const run = spawnSync(KUBECTL, ['kustomize', target], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
    return { status: run.status, objs: run.status === 0 ? parseStream(run.stdout) : [], stderr: run.stderr.trim() }
  }
  for (const base of [DEPLOY, join(DEPLOY, 'cert-manager')]) {
    const name = relative(ROOT, base)
    // kustomize wants relative paths; the overlay lives outside the repository, as a user's would.
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: [relative(dir, base)], components: [relative(dir, MONITORING)] }),
    )
    const alone = build(base)
    const withMonitoring = build(dir)
    t.equal(alone.status, 0, `kubectl kustomize ${name}: ${alone.stderr}`)
    t.equal(withMonitoring.status, 0, `kubectl kustomize ${name} + components deploy/monitoring: ${withMonitoring.stderr}`)
    if (alone.status !== 0 || withMonitoring.status !== 0) continue
    const before = new Map(alone.objs.map((o) => [id(o), o]))
    const after = new Map(withMonitoring.objs.map((o) => [id(o), o]))
    t.equal(after.size, withMonitoring.objs.length, `${name}: no object twice`)
    for (const [k, o] of before) t.ok(isDeepStrictEqual(after.get(k), o), `${name}: ${k} unchanged`)
    const added = [...after.keys()].filter((k) => !before.has(k)).sort()
    t.strictSame(added, ours.map(id).sort(), `${name}: adds the ServiceMonitor, the PrometheusRule and the dashboard ConfigMap`)
    for (const o of ours) t.strictSame(after.get(id(o)), o, `${name}: ${id(o)} as rendered from deploy/monitoring/`)
    // The ServiceMonitor still selects the Service as built (labels, namespace, port).
    const service = after.get('Service/smart-restore/smart-restore')
    const sm = after.get('ServiceMonitor/smart-restore/smart-restore')
    t.ok(service && sm, `${name}: Service and ServiceMonitor`)
    if (service && sm) {
      t.ok(Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => service.metadata.labels[k] === v), `${name}: the selector matches the built Service`)
      t.ok(sm.spec.namespaceSelector.matchNames.includes(service.metadata.namespace), `${name}: in the Service's namespace`)
      t.ok(service.spec.ports.some((p: Obj) => p.name === sm.spec.endpoints[0].port), `${name}: the Service has the scraped port`)
    }
  }
})
