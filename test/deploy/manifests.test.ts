/**
 * deploy/, deploy/cert-manager/, webhook-config/ and the output of `npm run certs`:
 *
 *  - every YAML file parses, and means the same under YAML 1.1 (kubectl) and 1.2;
 *  - the kustomize builds, rendered here (a small renderer for the features these files use) and,
 *    when kubectl is installed, by kubectl's own kustomize, which must agree;
 *  - every object validates against the Kubernetes (kubernetes-models) or cert-manager
 *    (@kubernetes-models/cert-manager) JSON schemas shipped in those npm packages, and has no field
 *    those APIs do not know (a TypeScript excess-property check against the packages' types: the
 *    JSON schemas alone let a misspelt `readOnlyRootFileSystem` through);
 *  - the security and availability properties, the RBAC against the code (no Secret list/watch,
 *    every in-flight rule's resource watchable), the configuration against the webhook
 *    configurations, the cert-manager overlay;
 *  - `npm run certs`: the leaf chains to the CA, the SANs are the Service's names, the caBundle of
 *    the generated webhook configurations is the CA, and a TLS client verifying like the API server
 *    accepts the certificate for smart-restore.smart-restore.svc.
 *
 * Nothing is downloaded: the schemas are in node_modules.
 */
import { preflightWatchSpecs } from '../../src/preflight/view.js'
import t from 'tap'
import { execFile, spawnSync } from 'node:child_process'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, dirname, join, resolve } from 'node:path'
import { connect } from 'node:tls'
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual, promisify } from 'node:util'
import ts from 'typescript'
import { parseAllDocuments } from 'yaml'
import { DEFAULT_NAMESPACE, DEFAULT_SERVICE, TLS_SECRET_NAME, WEBHOOK_FILES, generate, serviceDnsNames } from '../../certs/generate.js'
import { loadConfig } from '../../src/config/load.js'
import { defaultConfig } from '../../src/config/schema.js'
import { BUILTIN_RULES } from '../../src/inflight/rules.js'
import { watchSpecsFor } from '../../src/inflight/view.js'

/* eslint-disable @typescript-eslint/no-explicit-any */
/** A Kubernetes object as parsed from YAML. */
type Obj = any

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DEPLOY = join(ROOT, 'deploy')
const BASE = join(DEPLOY, 'base')
const CERT_MANAGER = join(DEPLOY, 'cert-manager')
const WEBHOOK_CONFIG = join(ROOT, 'webhook-config')
const SERVICE_DNS = `${DEFAULT_SERVICE}.${DEFAULT_NAMESPACE}.svc`

// ---------------------------------------------------------------------------------------------
// YAML and a small kustomize

const isObject = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v)
const clone = <T>(v: T): T => structuredClone(v)

function parseYaml(text: string, where: string, version: '1.1' | '1.2' = '1.2'): unknown[] {
  const docs = parseAllDocuments(text, { version })
  if (!Array.isArray(docs)) return [] // an empty stream
  const out: unknown[] = []
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${where}: ${d.errors[0]!.message}`)
    const v = d.toJS()
    if (v !== null && v !== undefined) out.push(v)
  }
  return out
}

const loadDocs = (file: string): Obj[] => parseYaml(readFileSync(file, 'utf8'), file) as Obj[]

/** Every file kustomize or kubectl would read as YAML under `dir` (recursively). */
function yamlFiles(dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    if (e.isDirectory()) out.push(...yamlFiles(p))
    else if (/\.ya?ml$/.test(e.name) || e.name === 'Kustomization') out.push(p)
  }
  return out.sort()
}

const KUSTOMIZATION_FILES = ['kustomization.yaml', 'kustomization.yml', 'Kustomization']
function kustomizationOf(dir: string): Obj {
  const file = KUSTOMIZATION_FILES.map((f) => join(dir, f)).find((f) => existsSync(f))
  if (!file) throw new Error(`${dir}: no kustomization`)
  return loadDocs(file)[0]
}

const id = (o: Obj) => `${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`

function jsonPointer(path: string): string[] {
  if (!path.startsWith('/')) throw new Error(`bad JSON pointer ${path}`)
  return path.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
}

/** RFC 6902 add/remove/replace, strict like kustomize: a missing parent or member is an error. */
function jsonPatch(doc: Obj, ops: Obj[], where: string): void {
  for (const op of ops) {
    const parts = jsonPointer(op.path)
    const last = parts.pop()!
    let parent: any = doc
    for (const p of parts) {
      parent = Array.isArray(parent) ? parent[Number(p)] : parent?.[p]
      if (parent === undefined) throw new Error(`${where}: ${op.op} ${op.path}: no such parent`)
    }
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last)
      if (op.op === 'add') parent.splice(i, 0, clone(op.value))
      else if (i >= parent.length) throw new Error(`${where}: ${op.op} ${op.path}: no such element`)
      else if (op.op === 'remove') parent.splice(i, 1)
      else if (op.op === 'replace') parent[i] = clone(op.value)
      else throw new Error(`${where}: op ${op.op} not supported here`)
    } else {
      if (op.op === 'add') parent[last] = clone(op.value)
      else if (!(last in parent)) throw new Error(`${where}: ${op.op} ${op.path}: no such member`)
      else if (op.op === 'remove') delete parent[last]
      else if (op.op === 'replace') parent[last] = clone(op.value)
      else throw new Error(`${where}: op ${op.op} not supported here`)
    }
  }
}

/** Strategic merge as far as these files need it: maps merge, null deletes, lists of named items merge by name. */
function strategicMerge(base: any, patch: any): any {
  if (isObject(base) && isObject(patch)) {
    const out: Record<string, any> = { ...base }
    for (const [k, v] of Object.entries(patch)) {
      if (v === null) delete out[k]
      else out[k] = strategicMerge(base[k], v)
    }
    return out
  }
  const named = (l: unknown) => Array.isArray(l) && l.every((i) => isObject(i) && typeof i.name === 'string')
  if (named(base) && named(patch)) {
    const out = base.map((b: Obj) => {
      const p = patch.find((x: Obj) => x.name === b.name)
      return p ? strategicMerge(b, p) : b
    })
    for (const p of patch) if (!base.some((b: Obj) => b.name === p.name)) out.push(clone(p))
    return out
  }
  return clone(patch)
}

function matches(o: Obj, target: Obj | undefined, fallback?: Obj): boolean {
  const sel = target ?? { kind: fallback?.kind, name: fallback?.metadata?.name, namespace: fallback?.metadata?.namespace }
  if (sel.kind && o.kind !== sel.kind) return false
  if (sel.name && o.metadata?.name !== sel.name) return false
  if (sel.namespace && o.metadata?.namespace !== sel.namespace) return false
  if (sel.group !== undefined) {
    const group = String(o.apiVersion).includes('/') ? String(o.apiVersion).split('/')[0] : ''
    if (group !== sel.group) return false
  }
  return true
}

const podSpecOf = (o: Obj): Obj | undefined => (o.kind === 'Pod' ? o.spec : o.spec?.template?.spec)

/** `kustomize build` for resources, configMapGenerator, images and patches (inline or path; SMP or JSON 6902). */
function render(dir: string): Obj[] {
  const k = kustomizationOf(dir)
  const objs: Obj[] = []
  for (const r of k.resources ?? []) {
    const p = resolve(dir, r)
    objs.push(...(statSync(p).isDirectory() ? render(p) : loadDocs(p)))
  }
  for (const g of k.configMapGenerator ?? []) {
    const data: Record<string, string> = {}
    for (const f of g.files ?? []) {
      const [key, file] = String(f).includes('=') ? String(f).split('=') : [basename(String(f)), String(f)]
      data[key!] = readFileSync(resolve(dir, file!), 'utf8')
    }
    const metadata: Obj = { name: g.name }
    if (g.namespace) metadata.namespace = g.namespace
    if (g.options?.labels) metadata.labels = { ...g.options.labels }
    if (g.options?.annotations) metadata.annotations = { ...g.options.annotations }
    objs.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata, data })
  }
  for (const [i, p] of (k.patches ?? []).entries()) {
    const where = `${dir} patches[${i}]`
    const text = p.path ? readFileSync(resolve(dir, p.path), 'utf8') : String(p.patch)
    const parsed = parseYaml(text, where)[0]
    if (Array.isArray(parsed)) {
      const hit = objs.filter((o) => matches(o, p.target))
      if (hit.length === 0) throw new Error(`${where}: no object matches ${JSON.stringify(p.target)}`)
      for (const o of hit) jsonPatch(o, parsed, where)
    } else {
      const patch = parsed as Obj
      let n = 0
      for (const [j, o] of objs.entries()) {
        if (!matches(o, p.target, patch)) continue
        objs[j] = strategicMerge(o, { ...patch, apiVersion: undefined, kind: undefined })
        objs[j].apiVersion = o.apiVersion
        objs[j].kind = o.kind
        n++
      }
      if (n === 0) throw new Error(`${where}: no object matches the patch ${id(patch)}`)
    }
  }
  for (const img of k.images ?? []) {
    for (const o of objs) {
      for (const c of [...(podSpecOf(o)?.containers ?? []), ...(podSpecOf(o)?.initContainers ?? [])]) {
        const name = String(c.image).replace(/@.*$/, '').replace(/:[^:/]+$/, '')
        if (name !== img.name) continue
        c.image = `${img.newName ?? img.name}${img.digest ? `@${img.digest}` : img.newTag ? `:${img.newTag}` : ''}`
      }
    }
  }
  const seen = new Set<string>()
  for (const o of objs) {
    if (seen.has(id(o))) throw new Error(`${dir}: ${id(o)} twice`)
    seen.add(id(o))
  }
  return objs
}

const byKind = (objs: Obj[], kind: string): Obj[] => objs.filter((o) => o.kind === kind)
function one(objs: Obj[], kind: string, name?: string): Obj {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name))
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`)
  return found[0]
}

// ---------------------------------------------------------------------------------------------
// Schemas (kubernetes-models, @kubernetes-models/cert-manager)

function modelModule(apiVersion: string, kind: string): string {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion]
  if (group === 'cert-manager.io') return `@kubernetes-models/cert-manager/cert-manager.io/${version}/${kind}`
  return group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`
}

/** Validate against the JSON schema of the object's kind; the error text, or undefined when valid. */
async function schemaError(o: Obj): Promise<string | undefined> {
  let mod: Record<string, any>
  try {
    mod = (await import(modelModule(o.apiVersion, o.kind))) as Record<string, any>
  } catch {
    return `no schema for ${o.apiVersion} ${o.kind} in kubernetes-models or @kubernetes-models/cert-manager`
  }
  const Model = mod[o.kind]
  try {
    new Model(o).validate()
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/**
 * Unknown fields: each object as an object literal typed with the package's interface for its kind,
 * type-checked by TypeScript (excess property checks reach every nested literal). One program for all.
 */
function unknownFieldErrors(objects: Array<{ where: string; obj: Obj }>): string[] {
  const file = join(ROOT, 'test', 'deploy', '__manifest_types__.ts')
  const lines: string[] = []
  objects.forEach(({ where, obj }, i) => {
    lines.push(`// ${where}`)
    lines.push(`import type { I${obj.kind} as T${i} } from '${modelModule(obj.apiVersion, obj.kind)}'`)
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(obj)}`)
  })
  const text = lines.join('\n')
  const options: ts.CompilerOptions = {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2022,
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
  }
  const host = ts.createCompilerHost(options)
  const { fileExists, readFile, getSourceFile } = host
  host.fileExists = (f) => f === file || fileExists.call(host, f)
  host.readFile = (f) => (f === file ? text : readFile.call(host, f))
  host.getSourceFile = (f, lang, ...rest) => (f === file ? ts.createSourceFile(f, text, lang) : getSourceFile.call(host, f, lang, ...rest))
  const program = ts.createProgram([file], options, host)
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const msg = ts.flattenDiagnosticMessageText(d.messageText, '\n')
    if (!d.file || d.start === undefined) return msg
    const { line } = d.file.getLineAndCharacterOfPosition(d.start)
    const source = d.file.fileName === file ? (lines[line - 2] ?? '').replace(/^\/\/ /, '') : d.file.fileName
    return `${source}: ${msg.slice(0, 400)}`
  })
}

// ---------------------------------------------------------------------------------------------
// What gets built

const base = render(DEPLOY)
const withCertManager = render(CERT_MANAGER)
const webhookConfigs = WEBHOOK_FILES.flatMap((f) => loadDocs(join(WEBHOOK_CONFIG, f)))

const certsOut = mkdtempSync(join(tmpdir(), 'sr-certs-'))
t.teardown(() => rmSync(certsOut, { recursive: true, force: true }))

const runCerts = promisify(execFile)('npm', ['run', '--silent', 'certs', '--', '--out', certsOut], { cwd: ROOT, env: { ...process.env, NO_COLOR: '1' } })
runCerts.catch(() => {}) // awaited (and reported) by the tests that use it

/** The configuration the pods load: the ConfigMap's config.yaml plus the Deployment's plain env values. */
function deployedConfig(): ReturnType<typeof loadConfig> {
  const dir = mkdtempSync(join(tmpdir(), 'sr-config-'))
  try {
    const file = join(dir, 'config.yaml')
    writeFileSync(file, one(base, 'ConfigMap', 'smart-restore-config').data['config.yaml'])
    const d = one(base, 'Deployment', 'smart-restore')
    const env = Object.fromEntries(d.spec.template.spec.containers[0].env.filter((e: Obj) => 'value' in e).map((e: Obj) => [e.name, e.value]))
    delete env.SMART_RESTORE_CONFIG
    return loadConfig({ file, env })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------

t.test('every YAML file parses, and means the same to YAML 1.1 (kubectl) as to YAML 1.2', async (t) => {
  await runCerts
  const files = [...yamlFiles(DEPLOY), ...yamlFiles(WEBHOOK_CONFIG), ...yamlFiles(certsOut)]
  t.ok(files.length >= 15, `${files.length} files`)
  for (const f of files) {
    const text = readFileSync(f, 'utf8')
    const v12 = parseYaml(text, f, '1.2')
    const v11 = parseYaml(text, f, '1.1')
    t.ok(v12.length > 0, `${f}: has documents`)
    t.ok(isDeepStrictEqual(v11, v12), `${f}: no value reads differently under YAML 1.1 (octal, yes/no, ...)`)
  }
})

t.test('each kustomization lists every manifest of its directory', async (t) => {
  for (const dir of [BASE, CERT_MANAGER, WEBHOOK_CONFIG]) {
    const k = kustomizationOf(dir)
    const listed = new Set<string>([...(k.resources ?? []), ...(k.configMapGenerator ?? []).flatMap((g: Obj) => g.files ?? [])])
    for (const f of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f) && !KUSTOMIZATION_FILES.includes(f))) {
      t.ok(listed.has(f), `${dir}: ${f} is used by the kustomization`)
    }
  }
  t.strictSame(kustomizationOf(DEPLOY).resources, ['base'], 'deploy/ is the base')
  t.ok(kustomizationOf(BASE).resources.includes('../../webhook-config'), 'webhook-config/ is included as a kustomize base, not copied')
  t.notOk(readdirSync(DEPLOY, { recursive: true }).some((f) => String(f).endsWith('webhook.yaml')), 'no copy of the webhook configurations under deploy/')
})

t.test('every object validates against the Kubernetes / cert-manager schemas from npm', async (t) => {
  await runCerts
  const sets: Array<[string, Obj[]]> = [
    ['deploy/', base],
    ['deploy/cert-manager/', withCertManager],
    ['webhook-config/', webhookConfigs],
    ['certs out', readdirSync(certsOut).filter((f) => f.endsWith('.yaml')).flatMap((f) => loadDocs(join(certsOut, f)))],
  ]
  const all: Array<{ where: string; obj: Obj }> = []
  for (const [where, objs] of sets) {
    t.ok(objs.length > 0, `${where}: objects`)
    for (const obj of objs) {
      t.equal(await schemaError(obj), undefined, `${where} ${id(obj)} is valid for ${obj.apiVersion}`)
      all.push({ where: `${where} ${id(obj)}`, obj })
    }
  }
  t.strictSame(unknownFieldErrors(all), [], 'no field the API does not know (TypeScript excess-property check against the packages\' types)')
})

t.test('the strict checks catch mistakes', async (t) => {
  const deployment = clone(one(base, 'Deployment'))
  deployment.spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem = true
  const errors = unknownFieldErrors([{ where: 'misspelt', obj: deployment }])
  t.equal(errors.length, 1, 'a misspelt field is reported')
  t.match(errors[0], /readOnlyRootFileSystem/)
  const pdb = clone(one(base, 'PodDisruptionBudget'))
  pdb.spec.minAvailable = { one: 1 }
  t.ok(await schemaError(pdb), 'a wrong type fails the JSON schema')
  t.ok(await schemaError({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'x' } }), 'an unknown kind fails')
})

t.test('Deployment: availability and security', async (t) => {
  const d = one(base, 'Deployment', 'smart-restore')
  const pod = d.spec.template.spec
  const labels = d.spec.template.metadata.labels
  t.ok(d.spec.replicas >= 2, 'at least two replicas')
  t.equal(d.spec.strategy.rollingUpdate.maxUnavailable, 0, 'rolling updates never drop a ready replica')
  for (const [k, v] of Object.entries(d.spec.selector.matchLabels)) t.equal(labels[k], v, `selector ${k} matches the pod labels`)

  t.equal(pod.securityContext.runAsNonRoot, true)
  t.equal(pod.securityContext.runAsUser, 65532)
  t.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault')
  t.equal(pod.containers.length, 1)
  const c = pod.containers[0]
  const sc = c.securityContext
  t.equal(sc.runAsNonRoot, true, 'container runAsNonRoot')
  t.equal(sc.runAsUser, 65532, 'container runAsUser 65532')
  t.equal(sc.readOnlyRootFilesystem, true, 'read-only root filesystem')
  t.equal(sc.allowPrivilegeEscalation, false, 'no privilege escalation')
  t.equal(sc.privileged ?? false, false, 'not privileged')
  t.strictSame(sc.capabilities.drop, ['ALL'], 'every capability dropped')
  t.notOk(sc.capabilities.add, 'none added')
  t.equal(sc.seccompProfile.type, 'RuntimeDefault')
  t.notOk(pod.hostNetwork || pod.hostPID || pod.hostIPC, 'no host namespaces')

  const port = (name: string) => c.ports.find((p: Obj) => p.name === name)
  t.equal(port('https').containerPort, defaultConfig.server.port, 'https on the service\'s default port')
  t.equal(port('metrics').containerPort, 9090)
  t.equal(Number(c.env.find((e: Obj) => e.name === 'SMART_RESTORE_METRICS_PORT')?.value), port('metrics').containerPort, 'the metrics listener is on the metrics port')
  t.strictSame(c.livenessProbe.httpGet, { path: '/healthz', port: 'https', scheme: 'HTTPS' }, 'liveness GET /healthz over HTTPS')
  t.strictSame(c.readinessProbe.httpGet, { path: '/readyz', port: 'https', scheme: 'HTTPS' }, 'readiness GET /readyz over HTTPS')
  t.ok(c.lifecycle.preStop.sleep.seconds > 0, 'preStop uses the sleep action (no shell in the image)')
  t.notOk(c.lifecycle.preStop.exec, 'no exec preStop')

  const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e]))
  const mount = (name: string) => c.volumeMounts.find((m: Obj) => m.name === name)
  const volume = (name: string) => pod.volumes.find((v: Obj) => v.name === name)
  t.equal(env.SMART_RESTORE_TLS_CERT_FILE.value, '/tls/tls.crt')
  t.equal(env.SMART_RESTORE_TLS_KEY_FILE.value, '/tls/tls.key')
  t.equal(mount('tls').mountPath, '/tls')
  t.equal(mount('tls').readOnly, true)
  t.equal(volume('tls').secret.secretName, TLS_SECRET_NAME, 'the TLS Secret npm run certs and cert-manager write')
  t.notOk(volume('tls').secret.optional, 'the certificate is not optional: no pod without it')
  t.equal(env.SMART_RESTORE_CONFIG.value, `${mount('config').mountPath}/config.yaml`)
  const configMap = one(base, 'ConfigMap', volume('config').configMap.name)
  t.equal(configMap.metadata.name, 'smart-restore-config')
  t.ok(configMap.data['config.yaml'], 'config.yaml is a key of the ConfigMap')
  t.equal(mount('tmp').mountPath, '/tmp', 'a writable /tmp')
  t.ok(volume('tmp').emptyDir, '/tmp is an emptyDir')
  const writable = c.volumeMounts.filter((m: Obj) => !m.readOnly).map((m: Obj) => m.mountPath)
  t.strictSame(writable, ['/tmp'], 'nothing else is writable')
  for (const key of ['S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY']) {
    t.strictSame(env[key].valueFrom.secretKeyRef, { name: 'smart-restore-s3', key, optional: true }, `${key} from the optional Secret smart-restore-s3`)
  }
  t.ok(Number(env.SMART_RESTORE_SHUTDOWN_DELAY_MS.value) > 0, 'a shutdown delay')
  // src/main.ts: after the shutdown delay, closing may take 15 s before the process gives up.
  const drainSeconds = c.lifecycle.preStop.sleep.seconds + Number(env.SMART_RESTORE_SHUTDOWN_DELAY_MS.value) / 1000 + 15
  t.equal(pod.terminationGracePeriodSeconds, 30)
  t.ok(drainSeconds <= pod.terminationGracePeriodSeconds, `preStop + shutdown delay + closing (${drainSeconds}s) fit the grace period`)

  t.equal(c.resources.requests.cpu, '100m')
  t.equal(c.resources.requests.memory, '96Mi')
  t.equal(c.resources.limits.memory, '256Mi')
  // Old generation + young generation (3 × semi-space, default 16) + code, native and the node binary (~90 MiB, bench/RESULTS.md) ≤ the limit.
  const opts = env.NODE_OPTIONS?.value ?? ''
  const oldSpace = Number(/--max-old-space-size=(\d+)\b/.exec(opts)?.[1])
  const semi = Number(/--max-semi-space-size=(\d+)\b/.exec(opts)?.[1] ?? 16)
  t.ok(oldSpace > 0 && oldSpace + 3 * semi + 90 <= 256, `the V8 heap (${oldSpace} MiB old space) is capped below the memory limit with room for the rest`)

  const anti = pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm
  t.equal(anti.topologyKey, 'kubernetes.io/hostname', 'replicas prefer different nodes')
  t.strictSame(anti.labelSelector.matchLabels, d.spec.selector.matchLabels)
  t.ok(pod.topologySpreadConstraints.some((s: Obj) => s.topologyKey === 'topology.kubernetes.io/zone' && s.whenUnsatisfiable === 'ScheduleAnyway'), 'spread over zones, softly')

  const pc = one(base, 'PriorityClass', pod.priorityClassName)
  t.ok(pc.value >= 100_000_000 && pc.value <= 1_000_000_000, `priority ${pc.value}: high, within the user-defined range, below system-cluster-critical (2000000000)`)
  t.equal(pc.globalDefault, false)
  t.equal(pod.serviceAccountName, 'smart-restore')
  t.match(c.image, /^smart-restore:\d+\.\d+\.\d+$/, 'the image name and tag come from the kustomization')
})

t.test('PodDisruptionBudget and Service select the pods', async (t) => {
  const d = one(base, 'Deployment', 'smart-restore')
  const podLabels = d.spec.template.metadata.labels
  const pdb = one(base, 'PodDisruptionBudget')
  t.equal(pdb.spec.minAvailable, 1)
  t.ok(pdb.spec.minAvailable < d.spec.replicas, 'a drain can still evict one replica')
  t.strictSame(pdb.spec.selector.matchLabels, d.spec.selector.matchLabels)
  const svc = one(base, 'Service', 'smart-restore')
  t.equal(svc.metadata.namespace, d.metadata.namespace)
  for (const [k, v] of Object.entries(svc.spec.selector)) t.equal(podLabels[k], v, `Service selector ${k}`)
  const ports = Object.fromEntries(svc.spec.ports.map((p: Obj) => [p.name, p]))
  t.equal(ports.https.port, 443)
  t.equal(ports.https.targetPort, 'https')
  t.equal(ports.metrics.port, 9090)
  t.equal(ports.metrics.targetPort, 'metrics')
  for (const wc of webhookConfigs) {
    for (const w of wc.webhooks) {
      const s = w.clientConfig.service
      t.strictSame([s.namespace, s.name, s.port], [svc.metadata.namespace, svc.metadata.name, ports.https.port], `${w.name} calls this Service on 443`)
    }
  }
})

t.test('namespace: labelled, restricted Pod Security', async (t) => {
  const ns = one(base, 'Namespace', DEFAULT_NAMESPACE)
  t.equal(ns.metadata.labels['app.kubernetes.io/name'], 'smart-restore')
  t.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted')
  for (const o of base) if (o.metadata.namespace) t.equal(o.metadata.namespace, DEFAULT_NAMESPACE, `${id(o)} in the smart-restore namespace`)
})

t.test('configuration: loads, and agrees with the webhook configurations', async (t) => {
  const config = deployedConfig()
  t.equal(config.store.type, 's3')
  t.equal(config.store.s3.bucket, 'volsync-backups')
  t.equal(config.store.s3.endpoint, 'http://minio.minio.svc:9000')
  t.equal(config.kube.mode, 'cluster', 'in a pod, no silent standalone mode')
  t.equal(config.server.tlsCertFile, '/tls/tls.crt')
  t.equal(config.server.shutdownDelayMs, 5000)
  t.strictSame(config.restore.sourceSecret, { namespace: DEFAULT_NAMESPACE, name: 'smart-restore-restic' })
  t.strictSame(config.excludedNamespaces, defaultConfig.excludedNamespaces, 'the default exclusions')
  t.ok(config.excludedNamespaces.includes(DEFAULT_NAMESPACE), 'its own namespace is excluded')
  for (const wc of webhookConfigs) {
    for (const w of wc.webhooks) {
      const notIn = w.namespaceSelector.matchExpressions.find((e: Obj) => e.key === 'kubernetes.io/metadata.name' && e.operator === 'NotIn')
      t.strictSame([...notIn.values].sort(), [...config.excludedNamespaces].sort(), `${w.name}: namespace exclusions = excludedNamespaces`)
      for (const e of w.objectSelector?.matchExpressions ?? []) t.equal(e.key, config.tierLabel, `${w.name}: objectSelector on the tier label`)
    }
  }
})

t.test('RBAC: what the code uses, nothing more; Secrets written but never read cluster-wide', async (t) => {
  const roles = byKind(base, 'ClusterRole')
  t.equal(roles.length, 1)
  const rules: Obj[] = roles[0].rules
  const grants = new Map<string, Set<string>>()
  const problems: string[] = []
  for (const r of rules) {
    if (r.nonResourceURLs) problems.push(`nonResourceURLs ${r.nonResourceURLs} (discovery is granted to everyone)`)
    if (r.resourceNames) problems.push(`resourceNames in a cluster-wide rule: ${r.resourceNames}`)
    for (const g of r.apiGroups) {
      for (const res of r.resources) {
        const key = `${g}/${res}`
        if (g === '*' || res.includes('*') || r.verbs.includes('*')) problems.push(`wildcard in ${key} ${r.verbs}`)
        const verbs = grants.get(key) ?? new Set<string>()
        for (const v of r.verbs) verbs.add(v)
        grants.set(key, verbs)
      }
    }
  }
  t.strictSame(problems, [], 'no wildcards, no nonResourceURLs, no resourceNames in the ClusterRole')
  const verbsOf = (key: string) => [...(grants.get(key) ?? [])].sort()
  for (const role of [...roles, ...byKind(base, 'Role')]) {
    for (const r of role.rules) {
      if (!r.apiGroups.includes('') || !r.resources.includes('secrets')) continue
      t.notOk(r.verbs.some((v: string) => ['list', 'watch', '*'].includes(v)), `${id(role)}: no list/watch of Secrets`)
    }
  }
  t.notOk(verbsOf('/secrets').some((v) => ['get', 'list', 'watch'].includes(v)), 'no Secret is read cluster-wide')

  // Reads: one list+watch per watched resource (deletion guard, namespaces, and the reconciler's PVC/RS/RD watches).
  const watched: Array<{ group: string; plural: string }> = watchSpecsFor(BUILTIN_RULES).map((s) => s.resource)
  const controllerPath = '../../src/reconcile/controller.js'
  const controller = (await import(controllerPath).catch(() => undefined)) as { reconcilerWatchSpecs?: (c: typeof defaultConfig) => Array<{ resource: { group: string; plural: string } }> } | undefined
  if (typeof controller?.reconcilerWatchSpecs === 'function') watched.push(...controller.reconcilerWatchSpecs(defaultConfig).map((s) => s.resource))
  // The restore preflight's watches (StorageClasses, VolumeSnapshotClasses, VolumePopulators).
  watched.push(...preflightWatchSpecs().map((s) => s.resource))
  const unwatchable = watched.map((r) => `${r.group}/${r.plural}`).filter((key) => !(grants.get(key)?.has('list') && grants.get(key)?.has('watch')))
  t.strictSame(unwatchable, [], `list and watch for each of the ${new Set(watched.map((r) => `${r.group}/${r.plural}`)).size} watched resources`)

  // Exactly these grants. The evidence for each write is in deploy/base/rbac.yaml.
  const expected: Record<string, string[]> = {
    '/persistentvolumeclaims': ['get', 'list', 'patch', 'watch'],
    '/namespaces': ['list', 'watch'],
    '/events': ['create', 'get', 'patch'],
    '/secrets': ['create', 'patch'],
    'volsync.backube/replicationsources': ['create', 'delete', 'list', 'patch', 'watch'],
    'volsync.backube/replicationdestinations': ['create', 'delete', 'get', 'list', 'patch', 'watch'],
  }
  for (const r of watched) expected[`${r.group}/${r.plural}`] ??= ['list', 'watch']
  t.strictSame(Object.fromEntries([...grants.keys()].sort().map((k) => [k, verbsOf(k)])), Object.fromEntries(Object.keys(expected).sort().map((k) => [k, expected[k]])), 'the ClusterRole grants exactly this')

  const source = deployedConfig().restore.sourceSecret
  const role = one(base, 'Role', 'smart-restore-source-secret')
  t.equal(role.metadata.namespace, source.namespace)
  t.strictSame(role.rules, [{ apiGroups: [''], resources: ['secrets'], resourceNames: [source.name], verbs: ['get'] }], 'the source Secret: get, by name, in its namespace')

  // Leader election: the Lease only, in the pods' own namespace (POD_NAMESPACE from the downward API).
  const election = deployedConfig().leaderElection
  t.equal(election.enabled, true, 'leader election on: one replica reconciles')
  const podEnv = Object.fromEntries(one(base, 'Deployment', 'smart-restore').spec.template.spec.containers[0].env.map((e: Obj) => [e.name, e]))
  t.strictSame(podEnv.POD_NAMESPACE?.valueFrom, { fieldRef: { fieldPath: 'metadata.namespace' } }, 'POD_NAMESPACE (leaderElection.namespace) is the pod\'s namespace')
  t.strictSame(podEnv.POD_NAME?.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'POD_NAME (the holderIdentity) is the pod\'s name')
  const leaseRole = one(base, 'Role', 'smart-restore-leader-election')
  t.equal(leaseRole.metadata.namespace, one(base, 'Deployment', 'smart-restore').metadata.namespace, 'the Lease Role is in the pods\' namespace')
  t.equal(leaseRole.metadata.namespace, election.namespace, 'which is leaderElection.namespace\'s default')
  t.strictSame(
    leaseRole.rules,
    [
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
      { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [election.leaseName], verbs: ['get', 'update'] },
    ],
    'the Lease: create, and get/update by name (PUT with resourceVersion); no list, watch, patch or delete',
  )
  t.strictSame(byKind(base, 'Role').map((r) => r.metadata.name).sort(), ['smart-restore-leader-election', 'smart-restore-source-secret'], 'no other Role')
  t.notOk([...grants.keys()].some((k) => k.startsWith('coordination.k8s.io/')), 'no Lease permission cluster-wide')

  const sa = one(base, 'ServiceAccount', 'smart-restore')
  for (const b of [...byKind(base, 'ClusterRoleBinding'), ...byKind(base, 'RoleBinding')]) {
    t.strictSame(b.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }], `${id(b)} binds the service account`)
    const ref = one(base, b.roleRef.kind, b.roleRef.name)
    t.ok(ref, `${id(b)} binds an existing ${b.roleRef.kind}`)
  }

  // The VolSync plurals as the real CRDs name them (shared fixtures, when present).
  const crdDir = join(ROOT, '..', 'shared', 'fixtures', 'volsync', 'crds')
  if (existsSync(crdDir)) {
    for (const f of readdirSync(crdDir).filter((f) => f.endsWith('.yaml'))) {
      const crd = loadDocs(join(crdDir, f))[0]
      t.ok(grants.has(`${crd.spec.group}/${crd.spec.names.plural}`), `${crd.spec.group}/${crd.spec.names.plural} (CRD fixture ${f}) is granted`)
    }
  }
})

t.test('Argo CD sync waves: the service first, then the webhook configurations, then the apps', async (t) => {
  for (const o of withCertManager) {
    const wave = Number(o.metadata.annotations?.['argocd.argoproj.io/sync-wave'])
    const isWebhook = /WebhookConfiguration$/.test(o.kind)
    if (isWebhook) t.equal(wave, -5, `${id(o)}: after the service is healthy`)
    else t.equal(wave, -10, `${id(o)}: with the service`)
  }
})

t.test('cert-manager overlay: CA chain, serving certificate, CA injection', async (t) => {
  const issuers: Record<string, Obj> = Object.fromEntries(byKind(withCertManager, 'Issuer').map((i) => [i.metadata.name, i]))
  const certs: Record<string, Obj> = Object.fromEntries(byKind(withCertManager, 'Certificate').map((c) => [c.metadata.name, c]))
  const ca = certs['smart-restore-ca']
  const serving = certs['smart-restore-serving']
  t.ok(issuers[ca.spec.issuerRef.name].spec.selfSigned, 'the CA certificate is self-signed')
  t.equal(ca.spec.isCA, true)
  const caIssuer = issuers[serving.spec.issuerRef.name]
  t.equal(caIssuer.spec.ca.secretName, ca.spec.secretName, 'the serving certificate is signed by that CA')
  t.equal(serving.spec.secretName, TLS_SECRET_NAME, 'written to the Secret the Deployment mounts')
  t.strictSame(serving.spec.dnsNames, serviceDnsNames(DEFAULT_SERVICE, DEFAULT_NAMESPACE), 'the Service\'s DNS names, as npm run certs')
  t.ok(serving.spec.usages.includes('server auth'))
  for (const c of Object.values(certs)) t.equal(c.metadata.namespace, DEFAULT_NAMESPACE)
  for (const wc of byKind(withCertManager, 'MutatingWebhookConfiguration').concat(byKind(withCertManager, 'ValidatingWebhookConfiguration'))) {
    t.equal(wc.metadata.annotations['cert-manager.io/inject-ca-from'], `${serving.metadata.namespace}/${serving.metadata.name}`, `${id(wc)}: CA injected from the serving Certificate`)
    for (const w of wc.webhooks) t.notOk('caBundle' in w.clientConfig, `${w.name}: no caBundle placeholder to overwrite the injected one`)
  }
  // The rest is the base, unchanged.
  const rest = (objs: Obj[]) => objs.filter((o) => !/WebhookConfiguration$|^Issuer$|^Certificate$/.test(o.kind))
  t.strictSame(rest(withCertManager), rest(base), 'otherwise the same as deploy/')
  t.notOk(byKind(base, 'Secret').length, 'no Secret in deploy/: the TLS Secret comes from certs/ or cert-manager')
})

t.test('npm run certs: a CA, a serving certificate for the Service, and the caBundle', async (t) => {
  const { stdout } = await runCerts
  t.match(stdout, /kubectl apply -k/, 'says how to apply')
  const read = (f: string) => readFileSync(join(certsOut, f), 'utf8')
  for (const f of ['ca.key', 'tls.key', 'tls-secret.yaml']) t.equal(statSync(join(certsOut, f)).mode & 0o777, 0o600, `${f} is 0600`)
  t.equal(statSync(certsOut).mode & 0o077, 0, 'the directory is private')

  const ca = new X509Certificate(read('ca.crt'))
  const leaf = new X509Certificate(read('tls.crt'))
  t.equal(ca.ca, true, 'ca.crt is a CA')
  t.ok(ca.verify(ca.publicKey), 'self-signed CA')
  t.ok(ca.checkPrivateKey(createPrivateKey(read('ca.key'))), 'ca.key is the CA\'s key')
  t.equal(leaf.ca, false, 'tls.crt is not a CA')
  t.ok(leaf.checkIssued(ca), 'the leaf names the CA as issuer')
  t.ok(leaf.verify(ca.publicKey), 'the leaf is signed by the CA')
  t.ok(leaf.checkPrivateKey(createPrivateKey(read('tls.key'))), 'tls.key is the leaf\'s key')
  const sans = (leaf.subjectAltName ?? '').split(', ').map((s) => s.replace(/^DNS:/, ''))
  t.strictSame(sans.sort(), serviceDnsNames(DEFAULT_SERVICE, DEFAULT_NAMESPACE).sort(), 'SANs: the Service\'s DNS names')
  t.strictSame(sans.sort(), [DEFAULT_SERVICE, `${DEFAULT_SERVICE}.${DEFAULT_NAMESPACE}`, SERVICE_DNS, `${SERVICE_DNS}.cluster.local`].sort())
  t.ok(leaf.keyUsage?.includes('1.3.6.1.5.5.7.3.1'), 'extended key usage serverAuth')
  const days = (Date.parse(leaf.validTo) - Date.now()) / 86_400_000
  t.ok(days > 364 && days < 366, `valid for 365 days (${days.toFixed(2)})`)

  const secret = one(loadDocs(join(certsOut, 'tls-secret.yaml')), 'Secret', TLS_SECRET_NAME)
  t.equal(secret.type, 'kubernetes.io/tls')
  t.equal(secret.metadata.namespace, DEFAULT_NAMESPACE)
  const decoded = Object.fromEntries(Object.entries(secret.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64').toString()]))
  t.strictSame(decoded, { 'tls.crt': read('tls.crt'), 'tls.key': read('tls.key'), 'ca.crt': read('ca.crt') }, 'the Secret holds tls.crt, tls.key and ca.crt')

  for (const f of WEBHOOK_FILES) {
    const [generated] = loadDocs(join(certsOut, f))
    const [original] = loadDocs(join(WEBHOOK_CONFIG, f))
    for (const w of generated.webhooks) {
      t.equal(Buffer.from(w.clientConfig.caBundle, 'base64').toString(), read('ca.crt'), `${f} ${w.name}: caBundle decodes to ca.crt`)
      delete w.clientConfig.caBundle
    }
    for (const w of original.webhooks) delete w.clientConfig.caBundle
    t.strictSame(generated, original, `${f}: otherwise webhook-config/${f} unchanged`)
    t.match(read(f), /failurePolicy: Fail\n/, `${f}: the comments of webhook-config/ are kept`)
  }

  // A client verifying like the API server (CA = caBundle, name = the Service's DNS name).
  const server: Server = createServer({ key: read('tls.key'), cert: read('tls.crt') }, (_req, res) => res.end('ok'))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const { port } = server.address() as AddressInfo
  const handshake = (servername: string) =>
    new Promise<string>((resolve) => {
      const s = connect({ host: '127.0.0.1', port, servername, ca: read('ca.crt') }, () => {
        s.end()
        resolve(s.authorized ? 'authorized' : String(s.authorizationError))
      })
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    })
  t.equal(await handshake(SERVICE_DNS), 'authorized', `TLS to ${SERVICE_DNS} verifies against the CA`)
  t.equal(await handshake('other.smart-restore.svc'), 'ERR_TLS_CERT_ALTNAME_INVALID', 'another name does not')
})

t.test('npm run certs: refuses to replace a CA without --force; with it, the old CA stays in the caBundle', async (t) => {
  await runCerts
  const oldCa = readFileSync(join(certsOut, 'ca.crt'), 'utf8')
  await t.rejects(generate({ namespace: DEFAULT_NAMESPACE, service: DEFAULT_SERVICE, out: certsOut, days: 365 }), /already holds a CA/)
  t.equal(readFileSync(join(certsOut, 'ca.crt'), 'utf8'), oldCa, 'nothing overwritten')
  const dir = mkdtempSync(join(tmpdir(), 'sr-certs-rotate-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await generate({ namespace: DEFAULT_NAMESPACE, service: DEFAULT_SERVICE, out: dir, days: 30 })
  const first = readFileSync(join(dir, 'ca.crt'), 'utf8')
  const result = await generate({ namespace: DEFAULT_NAMESPACE, service: DEFAULT_SERVICE, out: dir, days: 30, force: true })
  const second = readFileSync(join(dir, 'ca.crt'), 'utf8')
  t.not(second, first, 'a new CA')
  t.equal(result.caBundlePem, `${second.trim()}\n${first.trim()}\n`, 'the caBundle: the new CA, then the previous one')
  const [mwc] = loadDocs(join(dir, 'mutating-webhook.yaml'))
  t.equal(Buffer.from(mwc.webhooks[0].clientConfig.caBundle, 'base64').toString(), result.caBundlePem)
  await t.rejects(generate({ namespace: 'Bad_NS', service: DEFAULT_SERVICE, out: dir, days: 30, force: true }), /not a valid namespace/)

  const other = mkdtempSync(join(tmpdir(), 'sr-certs-other-'))
  t.teardown(() => rmSync(other, { recursive: true, force: true }))
  const r = await generate({ namespace: 'backup-system', service: 'restore', out: other, days: 10 })
  t.equal(r.kustomization, false, 'no Kustomization for a namespace deploy/ is not written for')
  t.notOk(existsSync(join(other, 'Kustomization')))
  const [vwc] = loadDocs(join(other, 'validating-webhook.yaml'))
  for (const w of vwc.webhooks) {
    t.strictSame([w.clientConfig.service.namespace, w.clientConfig.service.name], ['backup-system', 'restore'], `${w.name}: calls the named Service`)
    const notIn = w.namespaceSelector.matchExpressions.find((e: Obj) => e.operator === 'NotIn')
    t.ok(notIn.values.includes('backup-system') && !notIn.values.includes(DEFAULT_NAMESPACE), `${w.name}: excludes its own namespace instead`)
  }
  t.match(new X509Certificate(readFileSync(join(other, 'tls.crt'))).subjectAltName, /DNS:restore\.backup-system\.svc\b/)
})

t.test('the Kustomization npm run certs writes: deploy/ + TLS Secret + caBundle', async (t) => {
  await runCerts
  const objs = render(certsOut)
  const ca = readFileSync(join(certsOut, 'ca.crt'), 'utf8')
  t.ok(one(objs, 'Secret', TLS_SECRET_NAME))
  const webhooks = [...byKind(objs, 'MutatingWebhookConfiguration'), ...byKind(objs, 'ValidatingWebhookConfiguration')].flatMap((wc) => wc.webhooks)
  t.equal(webhooks.length, 4)
  for (const w of webhooks) t.equal(Buffer.from(w.clientConfig.caBundle, 'base64').toString(), ca, `${w.name}: caBundle`)
  const rest = (list: Obj[]) => list.filter((o) => !/WebhookConfiguration$|^Secret$/.test(o.kind))
  t.strictSame(rest(objs), rest(base), 'the rest is deploy/')
  for (const wc of objs.filter((o) => /WebhookConfiguration$/.test(o.kind))) {
    t.equal(wc.metadata.annotations['argocd.argoproj.io/sync-wave'], '-5', `${id(wc)}: keeps the base's sync wave`)
  }
})

/** Why the kubectl comparison cannot run here, or undefined when it can. */
function kubectlMissing(kubectl: string): string | undefined {
  const probe = spawnSync(kubectl, ['version', '--client'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) {
    return `${kubectl} not found: the kustomize builds were checked with this test's own renderer only. Install kubectl >= 1.21 to check them with the real kustomize (Debian 12's kubernetes-client is 1.20, too old)`
  }
  // kubectl embeds kustomize from 1.14 on, but only 1.21+ (kustomize v4) knows `patches` with targets.
  const kustomize = /Kustomize Version: v(\d+)/.exec(probe.stdout)
  if (!kustomize || Number(kustomize[1]) < 4) {
    return `${kubectl} embeds kustomize ${kustomize ? `v${kustomize[1]}` : '(version unknown)'}, older than v4 (kubectl 1.21): too old for these kustomizations; checked with this test's own renderer only`
  }
  return undefined
}

const KUBECTL = process.env.KUBECTL || 'kubectl'
t.test('kubectl kustomize agrees with this rendering (skipped without kubectl; KUBECTL names another binary)', { skip: kubectlMissing(KUBECTL) ?? false }, async (t) => {
  const kubectl = KUBECTL
  await runCerts
  // The generated ConfigMap name carries a content hash; compare it without.
  const normalise = (objs: Obj[]) => JSON.parse(JSON.stringify(objs).replace(/smart-restore-config-[a-z0-9]{10}\b/g, 'smart-restore-config'))
  for (const [dir, ours] of [
    [DEPLOY, base],
    [CERT_MANAGER, withCertManager],
    [certsOut, render(certsOut)],
  ] as Array<[string, Obj[]]>) {
    const run = spawnSync(kubectl, ['kustomize', dir], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
    t.equal(run.status, 0, `kubectl kustomize ${dir}: ${run.stderr.trim()}`)
    if (run.status !== 0) continue
    const theirs = normalise(parseYaml(run.stdout, dir) as Obj[])
    t.ok(theirs.some((o: Obj) => o.kind === 'ConfigMap' && o.metadata.name === 'smart-restore-config') || !ours.some((o) => o.kind === 'ConfigMap'), 'the ConfigMap is generated')
    const map = (objs: Obj[]) => Object.fromEntries(objs.map((o) => [id(o), o]))
    t.strictSame(map(theirs), map(normalise(ours)), `kubectl kustomize ${dir} = this test's rendering`)
  }
})
