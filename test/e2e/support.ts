/**
 * Helpers of the end-to-end suite (test/e2e/restore.e2e.test.ts): environment, cluster access
 * (and impersonation), Leases and the leader metric, VolSync CRDs, the S3 store, the webhook
 * registration, the Secret-write policy and an ordered, error-tolerant cleanup.
 *
 * Everything here talks to a real kube-apiserver (any v1.32-ish cluster: kind, k3d, or a bare
 * apiserver with kube-controller-manager: the orphan scenario waits for its garbage collector) and
 * never to a cluster it was not explicitly pointed at: the cluster comes from $KUBECONFIG only,
 * never from ~/.kube/config or in-cluster credentials.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import https from 'node:https'
import type { Socket } from 'node:net'
import { isIP } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join, resolve } from 'node:path'
import * as k8s from '@kubernetes/client-node'
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import S3rver from 's3rver'
import YAML from 'yaml'
import { withDeadline } from '../../src/kube/deadline.js'
import { writeResticRepository, type SnapshotSpec } from '../../src/storage/restic/writer.js'
import { find, parseMetrics, scrape } from '../helpers/metrics.js'

// ---------------------------------------------------------------------------------------------
// Errors and API calls

/** A failure of the suite's own setup, with a message meant to be read by a human as is. */
export class E2EError extends Error {
  override name = 'E2EError'
}

/** What a failed Kubernetes API call said, without client-node's wrapping. */
export interface KubeFailure {
  /** HTTP status when the apiserver answered. */
  code?: number
  /** metav1.Status reason, e.g. AlreadyExists. */
  reason?: string
  /** metav1.Status message (e.g. `admission webhook "..." denied the request: ...`), or the transport error. */
  message: string
}

export function kubeFailure(err: unknown): KubeFailure {
  const e = err as { code?: unknown; body?: unknown; message?: unknown; name?: unknown }
  if (typeof e?.code === 'number' && e !== null && 'body' in e) {
    let body: unknown = e.body
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body)
      } catch {
        /* not a Status */
      }
    }
    const status = (typeof body === 'object' && body !== null ? body : {}) as { message?: unknown; reason?: unknown }
    return {
      code: e.code,
      reason: typeof status.reason === 'string' && status.reason !== '' ? status.reason : undefined,
      message: typeof status.message === 'string' ? status.message : typeof body === 'string' && body !== '' ? body : `HTTP ${e.code}`,
    }
  }
  if (e?.name === 'TimeoutError') return { message: `no answer from the Kubernetes API: ${String(e.message)}` }
  return { message: err instanceof Error ? err.message : String(err) }
}

export const isNotFound = (err: unknown) => kubeFailure(err).code === 404
export const isAlreadyExists = (err: unknown) => kubeFailure(err).code === 409

/** Per-call deadline: a hung apiserver fails the step instead of the whole 600 s run. */
export const CALL_TIMEOUT_MS = 20_000

/** One client-node call under CALL_TIMEOUT_MS (client-node 1.4 has no timeout of its own). */
export function call<T>(fn: (options: k8s.ConfigurationOptions) => Promise<T>, timeoutMs = CALL_TIMEOUT_MS): Promise<T> {
  return withDeadline(timeoutMs, fn)
}

/** The call's result, or undefined when the object does not exist (404). */
export async function getOrUndefined<T>(fn: (options: k8s.ConfigurationOptions) => Promise<T>): Promise<T | undefined> {
  try {
    return await call(fn)
  } catch (err) {
    if (isNotFound(err)) return undefined
    throw err
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** What a poll ended with: the last value read, whether `until` held, how long and how often it asked. */
export interface Polled<T> {
  value: T
  met: boolean
  attempts: number
  ms: number
}

/** Read every `everyMs` until `until` holds or `maxMs` has passed (at least one read). */
export async function pollUntil<T>(read: () => Promise<T>, until: (v: T) => boolean, maxMs: number, everyMs = 500): Promise<Polled<T>> {
  const started = Date.now()
  let attempts = 0
  for (;;) {
    attempts++
    const value = await read()
    const met = until(value)
    if (met || Date.now() - started >= maxMs) return { value, met, attempts, ms: Date.now() - started }
    await sleep(everyMs)
  }
}

// ---------------------------------------------------------------------------------------------
// Environment

export const SKIP_HINT = 'run against kind/k3d: KUBECONFIG=... npm run test:e2e'

export interface ExternalS3Env {
  endpoint: string
  bucket: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  forcePathStyle: boolean
}

export interface E2EEnv {
  kubeconfig: string
  /** Directory of VolSync CRD YAML to install when the cluster lacks them. */
  volsyncCrdsDir?: string
  /** Use this S3 instead of a local s3rver. */
  s3?: ExternalS3Env
  /** Host the apiserver reaches the in-process webhook at. */
  webhookHost: string
  /** Port the webhook listens on (0: any free port). */
  webhookPort: number
  /** Verbatim webhook URL, when the cluster reaches this host another way (tunnel, port-forward). */
  webhookUrl?: string
  logLevel: string
}

/** The suite's settings, `{skip}` when there is no cluster to run against; throws E2EError on bad values. */
export function readE2EEnv(env: NodeJS.ProcessEnv = process.env): E2EEnv | { skip: string } {
  const kubeconfig = env.KUBECONFIG?.trim()
  if (!kubeconfig) return { skip: `KUBECONFIG is not set (${SKIP_HINT})` }

  const s3Vars = ['E2E_S3_ENDPOINT', 'E2E_S3_BUCKET', 'E2E_S3_ACCESS_KEY_ID', 'E2E_S3_SECRET_ACCESS_KEY', 'E2E_S3_REGION']
  let s3: ExternalS3Env | undefined
  if (s3Vars.some((v) => env[v])) {
    const missing = ['E2E_S3_BUCKET', 'E2E_S3_ACCESS_KEY_ID', 'E2E_S3_SECRET_ACCESS_KEY'].filter((v) => !env[v])
    if (missing.length > 0) {
      throw new E2EError(`external S3 is half configured: ${missing.join(', ')} not set (set E2E_S3_ENDPOINT, E2E_S3_BUCKET, E2E_S3_ACCESS_KEY_ID, E2E_S3_SECRET_ACCESS_KEY and optionally E2E_S3_REGION, or none of them to use a local s3rver)`)
    }
    s3 = {
      endpoint: (env.E2E_S3_ENDPOINT ?? '').replace(/\/+$/, ''),
      bucket: env.E2E_S3_BUCKET!,
      region: env.E2E_S3_REGION || 'us-east-1',
      accessKeyId: env.E2E_S3_ACCESS_KEY_ID!,
      secretAccessKey: env.E2E_S3_SECRET_ACCESS_KEY!,
      forcePathStyle: env.E2E_S3_FORCE_PATH_STYLE !== 'false' && env.E2E_S3_FORCE_PATH_STYLE !== '0',
    }
  }

  const portText = env.E2E_WEBHOOK_PORT?.trim() || '0'
  const webhookPort = Number(portText)
  if (!Number.isInteger(webhookPort) || webhookPort < 0 || webhookPort > 65535) {
    throw new E2EError(`E2E_WEBHOOK_PORT=${JSON.stringify(portText)} is not a port number (0-65535)`)
  }
  const webhookUrl = env.E2E_WEBHOOK_URL?.trim() || undefined
  if (webhookUrl !== undefined) {
    let u: URL
    try {
      u = new URL(webhookUrl)
    } catch {
      throw new E2EError(`E2E_WEBHOOK_URL=${JSON.stringify(webhookUrl)} is not a URL (e.g. https://host.example:8443/mutate)`)
    }
    if (u.protocol !== 'https:') throw new E2EError(`E2E_WEBHOOK_URL must be https:// (the apiserver only calls webhooks over TLS), got ${webhookUrl}`)
    if (u.search || u.hash || u.username) throw new E2EError(`E2E_WEBHOOK_URL must not carry a query, fragment or user info (the apiserver rejects them): ${webhookUrl}`)
    if (!/\/mutate$/.test(u.pathname)) {
      throw new E2EError(`E2E_WEBHOOK_URL must end in /mutate (the validating webhook is registered at the same address with /validate instead): ${webhookUrl}`)
    }
  }
  return {
    kubeconfig,
    volsyncCrdsDir: env.E2E_VOLSYNC_CRDS?.trim() || undefined,
    s3,
    webhookHost: env.E2E_WEBHOOK_HOST?.trim() || '127.0.0.1',
    webhookPort,
    webhookUrl,
    logLevel: env.E2E_LOG_LEVEL?.trim() || 'warn',
  }
}

/** Lowercase, DNS-label safe, unique enough for concurrent runs on one cluster. */
export function newRunId(): string {
  return `${Date.now().toString(36).slice(-5)}${randomBytes(3).toString('hex')}`
}

// ---------------------------------------------------------------------------------------------
// Cluster

/**
 * The KubeConfig of $KUBECONFIG (a path list is merged like kubectl does). Missing files are an
 * error here, never a silent fallback to ~/.kube/config.
 */
export function loadKubeConfig(kubeconfig: string): k8s.KubeConfig {
  const files = kubeconfig.split(delimiter).filter(Boolean)
  const missing = files.filter((f) => !existsSync(f))
  if (missing.length > 0) throw new E2EError(`KUBECONFIG names ${missing.join(', ')}, which does not exist`)
  const kc = new k8s.KubeConfig()
  try {
    kc.loadFromFile(files[0]!)
    for (const f of files.slice(1)) {
      const more = new k8s.KubeConfig()
      more.loadFromFile(f)
      kc.mergeConfig(more, true)
    }
  } catch (err) {
    throw new E2EError(`cannot load KUBECONFIG=${kubeconfig}: ${(err as Error).message}`)
  }
  if (!kc.getCurrentCluster()) throw new E2EError(`KUBECONFIG=${kubeconfig} has no current context/cluster (kubectl config use-context ...)`)
  return kc
}

export function describeCluster(kc: k8s.KubeConfig): string {
  return `context ${JSON.stringify(kc.getCurrentContext())}, server ${kc.getCurrentCluster()?.server ?? '?'}`
}

export interface Apis {
  kc: k8s.KubeConfig
  core: k8s.CoreV1Api
  custom: k8s.CustomObjectsApi
  ext: k8s.ApiextensionsV1Api
  admission: k8s.AdmissionregistrationV1Api
  storage: k8s.StorageV1Api
  /** Leases (leader election). */
  coordination: k8s.CoordinationV1Api
  rbac: k8s.RbacAuthorizationV1Api
  /** GET /version. */
  version: k8s.VersionApi
}

export function makeApis(kc: k8s.KubeConfig): Apis {
  return {
    kc,
    core: kc.makeApiClient(k8s.CoreV1Api),
    custom: kc.makeApiClient(k8s.CustomObjectsApi),
    ext: kc.makeApiClient(k8s.ApiextensionsV1Api),
    admission: kc.makeApiClient(k8s.AdmissionregistrationV1Api),
    storage: kc.makeApiClient(k8s.StorageV1Api),
    coordination: kc.makeApiClient(k8s.CoordinationV1Api),
    rbac: kc.makeApiClient(k8s.RbacAuthorizationV1Api),
    version: kc.makeApiClient(k8s.VersionApi),
  }
}

/**
 * A copy of `kc` (same cluster, same credentials) whose requests act as `username`: client-node 1.x
 * sends a user's `impersonateUser` (kubeconfig `as:`) as the Impersonate-User header on every
 * request (KubeConfig.applyHTTPSOptions, copied into each request by applySecurityAuthentication).
 * The apiserver then authorizes and admits the request as that user; for a ServiceAccount's name
 * (system:serviceaccount:<ns>:<name>) it adds the groups system:serviceaccounts,
 * system:serviceaccounts:<ns> and system:authenticated. The user of `kc` needs the verb
 * `impersonate` on serviceaccounts in that namespace (cluster-admin has it).
 */
export function impersonating(kc: k8s.KubeConfig, username: string): k8s.KubeConfig {
  const context = kc.getContextObject(kc.getCurrentContext())
  const cluster = kc.getCurrentCluster()
  const user = kc.getCurrentUser()
  if (!context || !cluster || !user) throw new E2EError(`cannot impersonate ${username}: the current context ${JSON.stringify(kc.getCurrentContext())} has no cluster or user`)
  const out = new k8s.KubeConfig()
  out.loadFromOptions({ clusters: [cluster], users: [{ ...user, impersonateUser: username }], contexts: [context], currentContext: context.name })
  return out
}

// ---------------------------------------------------------------------------------------------
// Leader election: Leases and the smart_restore_leader metric

/** The fields of a coordination.k8s.io/v1 Lease that leader election writes, times in ms. */
export interface LeaseView {
  holder?: string
  durationSeconds?: number
  transitions?: number
  acquireMs?: number
  renewMs?: number
  resourceVersion?: string
}

/** A MicroTime as client-node 1.4 hands it back: its serializer does not know V1MicroTime, so a string (a Date, should that change). */
const microTimeMs = (v: unknown): number | undefined => {
  if (v === undefined || v === null) return undefined
  const ms = v instanceof Date ? v.getTime() : Date.parse(String(v))
  return Number.isFinite(ms) ? ms : undefined
}

/** The Lease through coordination.k8s.io/v1, undefined when it does not exist; E2EError when it cannot be read. */
export async function readLease(apis: Apis, namespace: string, name: string): Promise<LeaseView | undefined> {
  let lease: k8s.V1Lease | undefined
  try {
    lease = await getOrUndefined((o) => apis.coordination.readNamespacedLease({ namespace, name }, o))
  } catch (err) {
    const f = kubeFailure(err)
    throw new E2EError(`cannot read Lease ${namespace}/${name} (coordination.k8s.io/v1): ${f.code ? `HTTP ${f.code}: ` : ''}${f.message} (the user of KUBECONFIG must be able to get leases)`)
  }
  if (!lease) return undefined
  const spec = lease.spec ?? {}
  const view: LeaseView = {}
  if (spec.holderIdentity) view.holder = spec.holderIdentity
  if (spec.leaseDurationSeconds !== undefined) view.durationSeconds = spec.leaseDurationSeconds
  if (spec.leaseTransitions !== undefined) view.transitions = spec.leaseTransitions
  const acquireMs = microTimeMs(spec.acquireTime)
  if (acquireMs !== undefined) view.acquireMs = acquireMs
  const renewMs = microTimeMs(spec.renewTime)
  if (renewMs !== undefined) view.renewMs = renewMs
  if (lease.metadata?.resourceVersion) view.resourceVersion = lease.metadata.resourceVersion
  return view
}

/** e.g. `holder a, leaseDurationSeconds 4, leaseTransitions 1, renewed 2025-...Z, resourceVersion 123`. */
export function describeLease(l: LeaseView | undefined): string {
  if (!l) return 'it does not exist'
  return [
    `holder ${l.holder ?? '(none: released)'}`,
    `leaseDurationSeconds ${l.durationSeconds ?? '(none)'}`,
    `leaseTransitions ${l.transitions ?? '(none)'}`,
    l.acquireMs !== undefined ? `acquired ${new Date(l.acquireMs).toISOString()}` : 'no acquireTime',
    l.renewMs !== undefined ? `renewed ${new Date(l.renewMs).toISOString()}` : 'no renewTime',
    `resourceVersion ${l.resourceVersion ?? '?'}`,
  ].join(', ')
}

/** The smart_restore_leader samples of a service's /metrics as `identity=value`, e.g. ["a=1"]; or why they could not be read. */
export async function leaderMetric(metricsUrl: string | undefined): Promise<string[]> {
  if (!metricsUrl) return ['(no metrics listener)']
  try {
    const { status, body } = await scrape(metricsUrl)
    if (status !== 200) return [`(GET ${metricsUrl}: HTTP ${status})`]
    return find(parseMetrics(body), 'smart_restore_leader').map((s) => `${s.labels.identity ?? '(no identity)'}=${s.value}`)
  } catch (err) {
    return [`(GET ${metricsUrl} failed: ${(err as Error).message})`]
  }
}

// ---------------------------------------------------------------------------------------------
// The Secret-write fence: deploy/base/secret-write-policy.yaml

export const SECRET_POLICY_FILE = 'deploy/base/secret-write-policy.yaml'
/** The only user the policy's matchConditions let it judge (rbac.yaml: ServiceAccount smart-restore/smart-restore). */
export const SECRET_POLICY_USER = 'system:serviceaccount:smart-restore:smart-restore'

/**
 * The cluster's minor version and whether it serves ValidatingAdmissionPolicy(Binding) in
 * admissionregistration.k8s.io/v1 (GA, on by default, from Kubernetes 1.30). `skip` says why the
 * fence cannot be shown here.
 */
export async function admissionPolicySupport(apis: Apis): Promise<{ version: string; skip?: string }> {
  const info = await call((o) => apis.version.getCode({}, o))
  const version = info.gitVersion || `v${info.major}.${info.minor}`
  // "30", or "30+" on some distributions.
  const major = Number.parseInt(info.major, 10)
  const minor = Number.parseInt(info.minor, 10)
  if (!(major > 1 || (major === 1 && minor >= 30))) {
    return { version, skip: `the cluster is ${version}: ValidatingAdmissionPolicy is admissionregistration.k8s.io/v1 from Kubernetes 1.30 on (on older clusters deploy/components/without-secret-write-policy leaves the fence out)` }
  }
  const served = await call((o) => apis.admission.getAPIResources({}, o))
  const names = (served.resources ?? []).map((r) => r.name)
  const missing = ['validatingadmissionpolicies', 'validatingadmissionpolicybindings'].filter((n) => !names.includes(n))
  if (missing.length > 0) {
    return { version, skip: `the apiserver (${version}) does not serve ${missing.join(', ')} in admissionregistration.k8s.io/v1 (disabled with --runtime-config?)` }
  }
  return { version }
}

/**
 * deploy/base/secret-write-policy.yaml as the suite applies it: both objects renamed `name` (the
 * binding pointing at the renamed policy), labelled as the suite's, and the username in the
 * policy's matchConditions replaced by `username`. Every other field (rules, variables,
 * validations, messages, failurePolicy, validationActions) is the file's own. E2EError when the
 * file no longer has the shape this relies on.
 */
export function e2eSecretWritePolicy(args: { file?: string; name: string; username: string; runId: string }): {
  policy: k8s.V1ValidatingAdmissionPolicy
  binding: k8s.V1ValidatingAdmissionPolicyBinding
} {
  const file = args.file ?? SECRET_POLICY_FILE
  const docs = YAML.parseAllDocuments(readFileSync(file, 'utf8'))
  const broken = docs.find((d) => d.errors.length > 0)
  if (broken) throw new E2EError(`${file} is not valid YAML: ${broken.errors[0]!.message}`)
  const objects = docs.map((d) => d.toJS() as { kind?: string } | null).filter((o): o is { kind?: string } => o !== null)
  const policies = objects.filter((o) => o.kind === 'ValidatingAdmissionPolicy') as k8s.V1ValidatingAdmissionPolicy[]
  const bindings = objects.filter((o) => o.kind === 'ValidatingAdmissionPolicyBinding') as k8s.V1ValidatingAdmissionPolicyBinding[]
  if (policies.length !== 1 || bindings.length !== 1) {
    throw new E2EError(`${file} must hold one ValidatingAdmissionPolicy and one ValidatingAdmissionPolicyBinding; it holds ${policies.length} and ${bindings.length}`)
  }
  const policy = policies[0]!
  const binding = bindings[0]!
  if (binding.spec?.policyName !== policy.metadata?.name) {
    throw new E2EError(`${file}: the binding's spec.policyName ${JSON.stringify(binding.spec?.policyName)} is not the policy's name ${JSON.stringify(policy.metadata?.name)}`)
  }
  const quoted = `'${SECRET_POLICY_USER}'`
  const conditions = policy.spec?.matchConditions ?? []
  const naming = conditions.filter((c) => c.expression.includes(quoted))
  if (naming.length !== 1 || naming[0]!.expression.split(quoted).length !== 2) {
    throw new E2EError(
      `${file}: expected exactly one matchCondition naming ${quoted} once, which the suite replaces with its own ServiceAccount; found ${JSON.stringify(conditions.map((c) => c.expression))}. Update the suite with the policy`,
    )
  }
  naming[0]!.expression = naming[0]!.expression.replace(quoted, `'${args.username}'`)
  const labels = { 'app.kubernetes.io/part-of': 'smart-restore-e2e', 'smart-restore.io/e2e-run': args.runId }
  policy.metadata = { name: args.name, labels: { ...(policy.metadata?.labels ?? {}), ...labels } }
  binding.metadata = { name: args.name, labels: { ...(binding.metadata?.labels ?? {}), ...labels } }
  binding.spec = { ...binding.spec, policyName: args.name }
  return { policy, binding }
}

/** What the apiserver keeps of a policy's CEL: matchConditions, variables, validations (to compare sent with registered). */
export function policyExpressions(p: k8s.V1ValidatingAdmissionPolicy | undefined): unknown {
  const s = p?.spec
  return {
    failurePolicy: s?.failurePolicy,
    matchConditions: (s?.matchConditions ?? []).map((c) => ({ name: c.name, expression: c.expression })),
    variables: (s?.variables ?? []).map((v) => ({ name: v.name, expression: v.expression })),
    validations: (s?.validations ?? []).map((v) => ({ expression: v.expression, reason: v.reason, message: v.message, messageExpression: v.messageExpression })),
    resourceRules: (s?.matchConstraints?.resourceRules ?? []).map((r) => ({ apiGroups: r.apiGroups, apiVersions: r.apiVersions, resources: r.resources, operations: r.operations })),
  }
}

// ---------------------------------------------------------------------------------------------
// VolSync CRDs

export const VOLSYNC = { group: 'volsync.backube', version: 'v1alpha1', rdPlural: 'replicationdestinations', rsPlural: 'replicationsources' } as const
export const REQUIRED_CRDS = ['replicationdestinations.volsync.backube', 'replicationsources.volsync.backube']

function isEstablished(crd: k8s.V1CustomResourceDefinition): boolean {
  return Boolean(crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'))
}

/** The CRDs of every *.yaml/*.yml file directly in `dir` (subdirectories are not read). */
export function readCrdDir(dir: string): k8s.V1CustomResourceDefinition[] {
  const abs = resolve(dir)
  let files: string[]
  try {
    files = readdirSync(abs).filter((f) => /\.ya?ml$/.test(f)).sort()
  } catch (err) {
    throw new E2EError(`E2E_VOLSYNC_CRDS=${dir}: cannot read the directory: ${(err as Error).message}`)
  }
  const crds: k8s.V1CustomResourceDefinition[] = []
  for (const f of files) {
    // client-node's loadAllYaml, not a plain YAML parse: the typed API serializer silently drops
    // keys it does not know by their TypeScript names (x-kubernetes-*, enum, default) from a plain
    // object, which would install a CRD with a different schema.
    let docs: unknown[]
    try {
      docs = k8s.loadAllYaml(readFileSync(join(abs, f), 'utf8'))
    } catch (err) {
      throw new E2EError(`E2E_VOLSYNC_CRDS: ${join(abs, f)} is not valid YAML: ${(err as Error).message}`)
    }
    for (const d of docs) {
      const o = d as k8s.V1CustomResourceDefinition | null
      if (o?.kind === 'CustomResourceDefinition' && o.metadata?.name) crds.push(o)
    }
  }
  return crds
}

export interface CrdSetup {
  /** Names of the CRDs this run created (and must delete). */
  installed: string[]
}

/**
 * Make sure the VolSync CRDs exist and are Established: found as they are, or installed from
 * `dir` (only the CRDs the cluster lacks; whatever already exists is never touched).
 */
export async function ensureVolSyncCrds(apis: Apis, dir: string | undefined, onInstalled: (name: string) => void): Promise<CrdSetup> {
  const missing: string[] = []
  for (const name of REQUIRED_CRDS) {
    const crd = await getOrUndefined((o) => apis.ext.readCustomResourceDefinition({ name }, o)).catch((err: unknown) => {
      throw new E2EError(`cannot read CRD ${name} through the apiextensions API: ${kubeFailure(err).message}`)
    })
    if (!crd) missing.push(name)
  }
  const installed: string[] = []
  if (missing.length > 0) {
    if (!dir) {
      throw new E2EError(
        `the VolSync CRDs ${missing.join(', ')} are not installed in this cluster. Either install VolSync ` +
          `(helm install volsync backube/volsync -n volsync-system --create-namespace), or let the suite install just the CRDs ` +
          `for this run: E2E_VOLSYNC_CRDS=../shared/fixtures/volsync/crds npm run test:e2e (they are deleted again at the end)`,
      )
    }
    const fromDir = readCrdDir(dir)
    const names = fromDir.map((c) => c.metadata!.name!)
    const absent = missing.filter((m) => !names.includes(m))
    if (absent.length > 0) throw new E2EError(`E2E_VOLSYNC_CRDS=${dir} holds no CustomResourceDefinition ${absent.join(', ')} (found: ${names.join(', ') || 'none'})`)
    for (const crd of fromDir) {
      const name = crd.metadata!.name!
      try {
        await call((o) => apis.ext.createCustomResourceDefinition({ body: crd }, o))
        installed.push(name)
        onInstalled(name)
      } catch (err) {
        // Already there (installed before, or by a concurrent run): not ours to delete.
        if (isAlreadyExists(err)) continue
        const f = kubeFailure(err)
        // No answer (timeout, connection lost): it may have been created all the same, and then it is ours.
        if (f.code === undefined) onInstalled(name)
        throw new E2EError(`cannot create CRD ${name} from ${dir}: ${f.message}`)
      }
    }
  }
  // Established = the apiserver serves the resource; wait for it (instant for existing CRDs).
  await waitForEstablished(apis, [...new Set([...REQUIRED_CRDS, ...installed])])
  return { installed }
}

/** Wait until every CRD of `names` is Established (the apiserver serves it); E2EError after `maxMs`. */
export async function waitForEstablished(apis: Apis, names: string[], maxMs = 60_000): Promise<void> {
  const deadline = Date.now() + maxMs
  for (const name of names) {
    for (;;) {
      const crd = await getOrUndefined((o) => apis.ext.readCustomResourceDefinition({ name }, o))
      if (crd && isEstablished(crd)) break
      if (Date.now() > deadline) {
        const conditions = crd?.status?.conditions?.map((c) => `${c.type}=${c.status}${c.message ? ` (${c.message})` : ''}`).join(', ')
        throw new E2EError(`CRD ${name} is not Established after ${Math.round(maxMs / 1000)} s${conditions ? `: ${conditions}` : crd ? '' : ': it disappeared'}`)
      }
      await sleep(500)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// What a restore needs (src/decide/preflight.ts): the VolumePopulator API (VolSync starts its volume
// populator only when that CRD exists), the VolumeSnapshotClass API, the PVC's StorageClass, and a
// default VolumeSnapshotClass for that class's provisioner. Without them the webhook refuses a
// restore (422) instead of leaving the PVC Pending forever.

/** The provisioner of the suite's StorageClass and the driver of its VolumeSnapshotClass. Nothing runs it. */
export const E2E_PROVISIONER = 'e2e.smart-restore.io'
export const DEFAULT_SNAPSHOT_CLASS_ANNOTATION = 'snapshot.storage.kubernetes.io/is-default-class'

/** A cluster-scoped API the suite may have to install a minimal CRD for. */
export interface ClusterScopedApi {
  group: string
  version: string
  kind: string
  plural: string
  /** The CRD's name: `<plural>.<group>`. */
  crd: string
  /**
   * api-approved.kubernetes.io: the apiserver refuses a CRD of a *.k8s.io group without it. The
   * value the upstream CRD carries.
   */
  approval: string
}

export const POPULATOR_API: ClusterScopedApi = {
  group: 'populator.storage.k8s.io',
  version: 'v1beta1',
  kind: 'VolumePopulator',
  plural: 'volumepopulators',
  crd: 'volumepopulators.populator.storage.k8s.io',
  approval: 'https://github.com/kubernetes/enhancements/pull/2934',
}

export const SNAPSHOT_CLASS_API: ClusterScopedApi = {
  group: 'snapshot.storage.k8s.io',
  version: 'v1',
  kind: 'VolumeSnapshotClass',
  plural: 'volumesnapshotclasses',
  crd: 'volumesnapshotclasses.snapshot.storage.k8s.io',
  approval: 'https://github.com/kubernetes-csi/external-snapshotter/pull/814',
}

/**
 * The smallest CRD that serves `api`: cluster-scoped, one version, a schema that keeps every field
 * (x-kubernetes-preserve-unknown-fields at the root is a valid structural schema). Written with
 * client-node's property names (x_kubernetes_preserve_unknown_fields): its serializer drops keys it
 * does not know by those names.
 */
export function minimalCrd(api: ClusterScopedApi, labels: Record<string, string>): k8s.V1CustomResourceDefinition {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: api.crd, labels, annotations: { 'api-approved.kubernetes.io': api.approval } },
    spec: {
      group: api.group,
      scope: 'Cluster',
      names: { kind: api.kind, listKind: `${api.kind}List`, plural: api.plural, singular: api.kind.toLowerCase() },
      versions: [{ name: api.version, served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', x_kubernetes_preserve_unknown_fields: true } } }],
    },
  }
}

/** Whether the cluster has the CRD of `api`, and whether it serves the version smart-restore watches. */
export async function crdState(apis: Apis, api: ClusterScopedApi): Promise<{ state: 'absent' } | { state: 'served' } | { state: 'version-not-served'; served: string[] }> {
  const crd = await getOrUndefined((o) => apis.ext.readCustomResourceDefinition({ name: api.crd }, o)).catch((err: unknown) => {
    throw new E2EError(`cannot read CRD ${api.crd} through the apiextensions API: ${kubeFailure(err).message}`)
  })
  if (!crd) return { state: 'absent' }
  const served = (crd.spec?.versions ?? []).filter((v) => v.served).map((v) => v.name)
  return served.includes(api.version) ? { state: 'served' } : { state: 'version-not-served', served }
}

/**
 * Create the minimal CRD of `api` and wait until it is Established. `onCreated` is called as soon as
 * the CRD may exist because of this call (also after a create that got no answer), so cleanup can
 * delete it; 'existed' (created meanwhile by someone else) is never ours to delete.
 */
export async function installMinimalCrd(apis: Apis, api: ClusterScopedApi, labels: Record<string, string>, onCreated: () => void): Promise<'created' | 'existed'> {
  let result: 'created' | 'existed' = 'created'
  try {
    await call((o) => apis.ext.createCustomResourceDefinition({ body: minimalCrd(api, labels) }, o))
    onCreated()
  } catch (err) {
    if (!isAlreadyExists(err)) {
      const f = kubeFailure(err)
      if (f.code === undefined) onCreated()
      throw new E2EError(`cannot create the CRD ${api.crd} (${api.kind} ${api.group}/${api.version}, cluster-scoped): ${f.code ? `HTTP ${f.code}: ` : ''}${f.message}`)
    }
    result = 'existed'
  }
  await waitForEstablished(apis, [api.crd])
  return result
}

// ---------------------------------------------------------------------------------------------
// S3

export interface S3Target {
  /** What the service and RESTIC_REPOSITORY use; '' = AWS. */
  endpoint: string
  bucket: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  forcePathStyle: boolean
  /** True: an s3rver this run started (and can stop to simulate an outage). */
  local: boolean
  /** Stop the local s3rver (no-op for external S3); safe to call twice. */
  stop(): Promise<void>
}

const S3RVER_KEY = 'S3RVER' // s3rver's built-in account

/** A real S3 implementation on 127.0.0.1, with an empty bucket. */
export async function startLocalS3(bucket: string): Promise<S3Target> {
  const directory = await mkdtemp(join(tmpdir(), 'smart-restore-e2e-s3-'))
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory })
  const { port } = await server.run()
  // close() waits for open connections; the service's S3 client keeps some alive.
  const sockets = new Set<Socket>()
  server.httpServer.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  let stopped: Promise<void> | undefined
  const target: S3Target = {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region: 'us-east-1',
    accessKeyId: S3RVER_KEY,
    secretAccessKey: S3RVER_KEY,
    forcePathStyle: true,
    local: true,
    stop: () =>
      (stopped ??= (async () => {
        const closed = server.close()
        for (const s of sockets) s.destroy()
        await closed
        await rm(directory, { recursive: true, force: true })
      })()),
  }
  const client = s3Client(target)
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }))
  } finally {
    client.destroy()
  }
  return target
}

export function externalS3(e: ExternalS3Env): S3Target {
  return { ...e, local: false, stop: async () => {} }
}

export function s3Client(s3: S3Target): S3Client {
  return new S3Client({
    ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
    region: s3.region,
    forcePathStyle: s3.forcePathStyle,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    // s3rver predates the SDK's default CRC32 request checksums; only send them when required.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    maxAttempts: 2,
  })
}

/**
 * A restic repository at `prefix`, opened by `password`: a key file, the config and the given
 * snapshots, encrypted as restic writes them (src/storage/restic/writer.ts, whose output the real
 * restic CLI reads back in `npm test`), so the service opens it the way it opens a real one, on
 * any S3 (the restic CLI is not needed here). Returns the object keys and the snapshot ids.
 */
export async function seedResticRepository(s3: S3Target, prefix: string, password: string, snapshots: SnapshotSpec[]): Promise<{ keys: string[]; snapshotIds: string[] }> {
  const repo = await writeResticRepository(password, snapshots)
  // Snapshot files last, as restic writes them.
  const objects = [...repo.files].sort(([a], [b]) => Number(a.startsWith('snapshots/')) - Number(b.startsWith('snapshots/'))).map(([path, body]): [string, Buffer] => [`${prefix}/${path}`, body])
  const client = s3Client(s3)
  try {
    for (const [Key, Body] of objects) {
      try {
        await client.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body }))
      } catch (err) {
        throw new E2EError(`cannot seed s3://${s3.bucket}/${Key} at ${s3.endpoint || 'AWS'}: ${(err as Error).name}: ${(err as Error).message}`)
      }
    }
  } finally {
    client.destroy()
  }
  return { keys: objects.map(([k]) => k), snapshotIds: repo.snapshotIds }
}

export async function deleteS3Objects(s3: S3Target, keys: string[]): Promise<void> {
  const client = s3Client(s3)
  try {
    for (const Key of keys) await client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key }))
  } finally {
    client.destroy()
  }
}

/** RESTIC_REPOSITORY as the service writes it for repository key `key`. */
export function expectedResticRepository(s3: S3Target, key: string): string {
  return `s3:${s3.endpoint.replace(/\/+$/, '') || 's3.amazonaws.com'}/${s3.bucket}/${key}`
}

// ---------------------------------------------------------------------------------------------
// Webhook registration

export const WEBHOOK_FILE = 'webhook-config/mutating-webhook.yaml'
export const WEBHOOK_NAME = 'pvc-restore.smart-restore.io'
export const VALIDATING_WEBHOOK_FILE = 'webhook-config/validating-webhook.yaml'
/** The deletion guard (PVC DELETE, no objectSelector). */
export const DELETE_GUARD_WEBHOOK = 'pvc-delete-guard.smart-restore.io'
/** The restore cross-check (PVC CREATE, tier-label objectSelector). */
export const RESTORE_CHECK_WEBHOOK = 'pvc-restore-check.smart-restore.io'

/** The host part of the webhook URL, as the serving certificate must name it. */
export function urlHost(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1')
}

export function webhookUrlFor(host: string, port: number, path: '/mutate' | '/validate' = '/mutate'): string {
  return `https://${isIP(host) === 6 ? `[${host}]` : host}:${port}${path}`
}

/** The /validate URL next to a /mutate URL (same scheme, host, port and path prefix). */
export function validateUrlFor(mutateUrl: string): string {
  const u = new URL(mutateUrl)
  if (!/\/mutate$/.test(u.pathname)) throw new E2EError(`webhook URL ${mutateUrl} does not end in /mutate, so there is no /validate to derive from it`)
  u.pathname = u.pathname.replace(/\/mutate$/, '/validate')
  return u.toString()
}

type WebhookConfiguration = k8s.V1MutatingWebhookConfiguration | k8s.V1ValidatingWebhookConfiguration
/** The fields compared here; a validating webhook has them all but reinvocationPolicy. */
type AnyWebhook = Partial<k8s.V1MutatingWebhook> & { name: string }
const webhooksOf = (c: WebhookConfiguration): AnyWebhook[] => (c.webhooks ?? []) as AnyWebhook[]

/**
 * A file of webhook-config/ as registered by the suite: renamed, every webhook calling `url` with
 * `caCert`, and its namespaceSelector narrowed to `namespace` so nothing else in the cluster is ever
 * sent to it. Every other field (rules, selectors, policies, timeout) is the file's own.
 */
function e2eConfiguration<T extends WebhookConfiguration>(
  kind: 'MutatingWebhookConfiguration' | 'ValidatingWebhookConfiguration',
  required: string[],
  args: { file: string; name: string; url: string; caCert: string; namespace: string; runId: string },
): T {
  const file = args.file
  const doc = YAML.parse(readFileSync(file, 'utf8')) as T | null
  if (doc?.kind !== kind || !Array.isArray(doc.webhooks) || doc.webhooks.length === 0) {
    throw new E2EError(`${file} is not a ${kind} with webhooks`)
  }
  for (const name of required) if (!webhooksOf(doc).some((w) => w.name === name)) throw new E2EError(`${file} has no webhook named ${name}`)
  doc.metadata = {
    name: args.name,
    labels: { ...(doc.metadata?.labels ?? {}), 'app.kubernetes.io/part-of': 'smart-restore-e2e', 'smart-restore.io/e2e-run': args.runId },
  }
  for (const w of webhooksOf(doc)) {
    w.clientConfig = { url: args.url, caBundle: Buffer.from(args.caCert).toString('base64') }
    // Narrowed, not replaced: the file's own terms stay (e.g. a webhook only for namespaces with a
    // default tier), ANDed with "this run's namespace".
    const own = w.namespaceSelector ?? {}
    w.namespaceSelector = {
      ...(own.matchLabels ? { matchLabels: own.matchLabels } : {}),
      matchExpressions: [...(own.matchExpressions ?? []), { key: 'kubernetes.io/metadata.name', operator: 'In', values: [args.namespace] }],
    }
  }
  return doc
}

/** webhook-config/mutating-webhook.yaml as registered by the suite (see e2eConfiguration); `url` ends in /mutate. */
export function e2eWebhookConfiguration(args: { file?: string; name: string; url: string; caCert: string; namespace: string; runId: string }): k8s.V1MutatingWebhookConfiguration {
  return e2eConfiguration<k8s.V1MutatingWebhookConfiguration>('MutatingWebhookConfiguration', [WEBHOOK_NAME], { ...args, file: args.file ?? WEBHOOK_FILE })
}

/** webhook-config/validating-webhook.yaml as registered by the suite (see e2eConfiguration); `url` ends in /validate. */
export function e2eValidatingWebhookConfiguration(args: { file?: string; name: string; url: string; caCert: string; namespace: string; runId: string }): k8s.V1ValidatingWebhookConfiguration {
  return e2eConfiguration<k8s.V1ValidatingWebhookConfiguration>('ValidatingWebhookConfiguration', [DELETE_GUARD_WEBHOOK, RESTORE_CHECK_WEBHOOK], {
    ...args,
    file: args.file ?? VALIDATING_WEBHOOK_FILE,
  })
}

/** JSON with object keys sorted, so key order (typed models serialize in their own order) does not count. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a.localeCompare(b))) : x,
  )
}

/** What the apiserver fills in for a field the file leaves out (admissionregistration/v1 defaulting). */
const APISERVER_DEFAULTS: Partial<Record<keyof AnyWebhook, unknown>> = {
  objectSelector: {},
  namespaceSelector: {},
  matchPolicy: 'Equivalent',
  failurePolicy: 'Fail',
  timeoutSeconds: 10,
  reinvocationPolicy: 'Never',
}

/**
 * What the registered configuration lost or changed compared with what was sent, e.g. `failurePolicy`.
 * A field the file leaves out may come back with the apiserver's default (the deletion guard has no
 * objectSelector and is registered with `{}`, which selects everything).
 */
export function registeredDifferences(sent: WebhookConfiguration, got: WebhookConfiguration): string[] {
  const out: string[] = []
  const fields = ['failurePolicy', 'sideEffects', 'timeoutSeconds', 'matchPolicy', 'reinvocationPolicy', 'admissionReviewVersions', 'rules', 'objectSelector', 'namespaceSelector'] as const
  for (const want of webhooksOf(sent)) {
    const have = webhooksOf(got).find((w) => w.name === want.name)
    if (!have) {
      out.push(`webhook ${want.name} missing`)
      continue
    }
    for (const f of fields) {
      if (canonical(want[f]) === canonical(have[f])) continue
      if (want[f] === undefined && f in APISERVER_DEFAULTS && canonical(have[f]) === canonical(APISERVER_DEFAULTS[f])) continue
      out.push(`${want.name}.${f}: sent ${canonical(want[f])}, registered ${canonical(have[f])}`)
    }
  }
  return out
}

/** Other webhook configurations that also run smart-restore's webhooks (e.g. a deployed copy), as `<Kind> <name>`. */
export async function otherSmartRestoreWebhooks(apis: Apis, ownName: string): Promise<string[]> {
  const mutating = await call((o) => apis.admission.listMutatingWebhookConfiguration({}, o))
  const validating = await call((o) => apis.admission.listValidatingWebhookConfiguration({}, o))
  const others = (kind: string, items: WebhookConfiguration[]) =>
    items.filter((c) => c.metadata?.name !== ownName && webhooksOf(c).some((w) => w.name.endsWith('.smart-restore.io'))).map((c) => `${kind} ${c.metadata!.name!}`)
  return [...others('MutatingWebhookConfiguration', mutating.items), ...others('ValidatingWebhookConfiguration', validating.items)]
}

/** The Warning headers of an apiserver response, as one string (node-fetch joins repeats with ", "). */
export function warningsOf(info: { headers: Record<string, string> }): string {
  return info.headers.warning ?? info.headers.Warning ?? ''
}

export function webhookReachabilityHint(host: string, url: string): string {
  return [
    `The apiserver must reach the in-process webhook at ${url} (both /mutate and /validate).`,
    `127.0.0.1 only works when the kube-apiserver runs on this machine outside a container, or in one with host networking (e.g. a bare apiserver binary).`,
    `kind: the apiserver runs in a container; use the docker network gateway (often 172.18.0.1): E2E_WEBHOOK_HOST=$(docker network inspect kind -f '{{range .IPAM.Config}}{{println .Gateway}}{{end}}' | grep -m1 '\\.')`,
    `k3d: E2E_WEBHOOK_HOST=host.k3d.internal. minikube: host.minikube.internal. Docker Desktop: host.docker.internal.`,
    `Otherwise expose a port and set E2E_WEBHOOK_URL=https://<address the apiserver can reach>/mutate (its host is added to the serving certificate; /validate is registered next to it) and E2E_WEBHOOK_PORT=<local port>.`,
    `A firewall on this host must allow the webhook port${host === '127.0.0.1' ? '' : ` from the cluster to ${host}`}.`,
  ].join('\n')
}

export type WebhookProbe =
  | { state: 'effective'; attempts: number; ms: number }
  | { state: 'not-called'; attempts: number; ms: number }
  | { state: 'failing'; attempts: number; ms: number; message: string }

/**
 * Wait until the apiserver actually calls the webhook for the namespace: the webhook configuration
 * reaches the apiserver's admission through an informer, so it lags its creation. Each attempt is
 * a server-side dry-run create of a labelled PVC (nothing is stored, nothing is created by the
 * webhook); the webhook was called when the answer carries its annotation or warning.
 */
export async function waitForWebhook(apis: Apis, namespace: string, annotationPrefix: string, storageClassName?: string, maxMs = 30_000): Promise<WebhookProbe> {
  const started = Date.now()
  let attempts = 0
  let last: WebhookProbe = { state: 'not-called', attempts: 0, ms: 0 }
  const body: k8s.V1PersistentVolumeClaim = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: 'webhook-probe', namespace, labels: { backup: 'hourly' } },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, ...(storageClassName ? { storageClassName } : {}) },
  }
  while (Date.now() - started < maxMs) {
    attempts++
    try {
      const info = await call((o) => apis.core.createNamespacedPersistentVolumeClaimWithHttpInfo({ namespace, body, dryRun: 'All' }, o))
      const annotations = info.data.metadata?.annotations ?? {}
      if (Object.keys(annotations).some((k) => k.startsWith(annotationPrefix)) || warningsOf(info).includes('smart-restore')) {
        return { state: 'effective', attempts, ms: Date.now() - started }
      }
      last = { state: 'not-called', attempts, ms: Date.now() - started }
    } catch (err) {
      const f = kubeFailure(err)
      // failurePolicy Fail: "Internal error occurred: failed calling webhook ...: dial tcp ...: connect: connection refused".
      if (/failed calling webhook|webhook .*(timeout|deadline)/i.test(f.message)) {
        last = { state: 'failing', attempts, ms: Date.now() - started, message: f.message }
      } else if (f.message.includes('denied the request')) {
        // The webhook answered (with a denial): it is called, which is all this waits for.
        return { state: 'effective', attempts, ms: Date.now() - started }
      } else {
        throw new E2EError(`dry-run create of a probe PVC in ${namespace} failed for a reason unrelated to the webhook: ${f.code ? `HTTP ${f.code}: ` : ''}${f.message}`)
      }
    }
    await sleep(1000)
  }
  return { ...last, attempts, ms: Date.now() - started }
}

export type ReadyProbe = { ready: true; attempts: number; ms: number } | { ready: false; attempts: number; ms: number; reason: string }

/** What /readyz answered: the status code, the reason when not ready, and the named checks. */
export interface Readyz {
  code: number
  reason?: string
  /** e.g. `{ caches: 'synced', restorePrerequisites: 'present' }`. */
  checks?: Record<string, string>
}

/** One GET of the service's /readyz over HTTPS, trusting only `caCert`: the status code, the body's reason and checks. */
export function readReadyz(serviceUrl: string, caCert: string, timeoutMs = 5_000): Promise<Readyz> {
  return new Promise((resolve, reject) => {
    const req = https.get(new URL('/readyz', serviceUrl), { ca: caCert, timeout: timeoutMs }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('error', reject)
      res.on('end', () => {
        let reason: string | undefined
        let checks: Record<string, string> | undefined
        try {
          const body = JSON.parse(text) as { reason?: unknown; checks?: unknown }
          if (typeof body.reason === 'string') reason = body.reason
          if (typeof body.checks === 'object' && body.checks !== null) checks = body.checks as Record<string, string>
        } catch {
          reason = text.slice(0, 300) || undefined
        }
        resolve({ code: res.statusCode ?? 0, ...(reason !== undefined ? { reason } : {}), ...(checks ? { checks } : {}) })
      })
    })
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
  })
}

/**
 * Wait until the service's /readyz answers 200: in cluster mode that is when its watched caches (the
 * deletion guard's view of backups and restores in flight) have their initial lists. Until then
 * the guard refuses every PVC DELETE as retryable (503).
 */
export async function waitForReady(serviceUrl: string, caCert: string, maxMs = 60_000): Promise<ReadyProbe> {
  const started = Date.now()
  let attempts = 0
  let reason = 'not asked yet'
  while (Date.now() - started < maxMs) {
    attempts++
    try {
      const r = await readReadyz(serviceUrl, caCert, 5_000)
      if (r.code === 200) return { ready: true, attempts, ms: Date.now() - started }
      reason = `HTTP ${r.code}${r.reason ? `: ${r.reason}` : ''}`
    } catch (err) {
      reason = `GET ${new URL('/readyz', serviceUrl).href} failed: ${(err as Error).message}`
    }
    await sleep(500)
  }
  return { ready: false, attempts, ms: Date.now() - started, reason }
}

/**
 * Poll /readyz until `until` holds for its `checks.restorePrerequisites` (`present`, `missing: ...`,
 * or `not known yet: ...` while the preflight's watches list). The service learns of an API that
 * appears (a CRD installed) by discovery, every `rediscoverMs` of its watch options.
 */
export async function waitForRestorePrerequisites(serviceUrl: string, caCert: string, until: (check: string) => boolean, maxMs = 30_000): Promise<Polled<Readyz & { check: string }>> {
  return pollUntil(
    async () => {
      try {
        const r = await readReadyz(serviceUrl, caCert, 5_000)
        return { ...r, check: r.checks?.restorePrerequisites ?? '(no restorePrerequisites check in /readyz)' }
      } catch (err) {
        return { code: 0, check: `GET ${new URL('/readyz', serviceUrl).href} failed: ${(err as Error).message}` }
      }
    },
    (r) => until(r.check),
    maxMs,
  )
}

/**
 * Wait until the apiserver calls the deletion guard for the namespace (the configuration lags its
 * creation, as for the mutating one). `pvcName` must be a PVC whose `<prefix>allow-delete` annotation
 * is empty: the guard refuses to delete it (422, "needs a reason") whatever is in flight and whether
 * or not its caches have synced. Each attempt is a server-side dry-run DELETE: nothing is deleted,
 * even before the guard is in place.
 */
export async function waitForDeleteGuard(apis: Apis, namespace: string, pvcName: string, maxMs = 30_000): Promise<WebhookProbe> {
  const started = Date.now()
  let attempts = 0
  let last: WebhookProbe = { state: 'not-called', attempts: 0, ms: 0 }
  while (Date.now() - started < maxMs) {
    attempts++
    try {
      await call((o) => apis.core.deleteNamespacedPersistentVolumeClaim({ namespace, name: pvcName, dryRun: 'All' }, o))
      last = { state: 'not-called', attempts, ms: Date.now() - started }
    } catch (err) {
      const f = kubeFailure(err)
      if (f.message.includes(`admission webhook "${DELETE_GUARD_WEBHOOK}" denied the request`)) {
        return { state: 'effective', attempts, ms: Date.now() - started }
      }
      if (/failed calling webhook|webhook .*(timeout|deadline)/i.test(f.message)) {
        last = { state: 'failing', attempts, ms: Date.now() - started, message: f.message }
      } else {
        throw new E2EError(`dry-run DELETE of the probe PVC ${namespace}/${pvcName} failed for a reason unrelated to the deletion guard: ${f.code ? `HTTP ${f.code}: ` : ''}${f.message}`)
      }
    }
    await sleep(1000)
  }
  return { ...last, attempts, ms: Date.now() - started }
}

// ---------------------------------------------------------------------------------------------
// Cleanup

interface Step {
  what: string
  run: () => Promise<unknown>
}

/**
 * Ordered cleanup: steps run in the order they were registered in their phase, every step runs
 * even when an earlier one failed, a missing object counts as cleaned up.
 */
export class Cleanup {
  private readonly phases = new Map<number, Step[]>()
  private done: Promise<string[]> | undefined

  /** Register a step; lower phases run first. */
  add(phase: number, what: string, run: () => Promise<unknown>): void {
    const steps = this.phases.get(phase) ?? []
    steps.push({ what, run })
    this.phases.set(phase, steps)
  }

  /** Run everything once; resolves to one line per step. Safe to call again (same result). */
  run(): Promise<string[]> {
    this.done ??= (async () => {
      const lines: string[] = []
      for (const phase of [...this.phases.keys()].sort((a, b) => a - b)) {
        for (const step of this.phases.get(phase)!) {
          try {
            const said = await step.run()
            lines.push(`ok      ${step.what}${typeof said === 'string' && said ? `: ${said}` : ''}`)
          } catch (err) {
            if (isNotFound(err)) lines.push(`gone    ${step.what}`)
            else lines.push(`FAILED  ${step.what}: ${kubeFailure(err).message}`)
          }
        }
      }
      return lines
    })()
    return this.done
  }
}

/**
 * Delete each named object; resolves to e.g. "deleted with-backup, no-backup" (absent ones are not
 * listed). Every name is tried; the first real failure is thrown at the end. A failure `retry`
 * accepts is tried again (once a second) until `retryForMs` has passed for that name.
 */
export async function deleteEach(
  names: string[],
  del: (name: string, o: k8s.ConfigurationOptions) => Promise<unknown>,
  opts: { retry?: (f: KubeFailure) => boolean; retryForMs?: number } = {},
): Promise<string> {
  const deleted: string[] = []
  const failed: string[] = []
  for (const name of names) {
    const started = Date.now()
    let retries = 0
    for (;;) {
      try {
        await call((o) => del(name, o))
        deleted.push(retries ? `${name} (after ${retries} retr${retries === 1 ? 'y' : 'ies'} in ${((Date.now() - started) / 1000).toFixed(1)} s)` : name)
      } catch (err) {
        if (isNotFound(err)) break
        const f = kubeFailure(err)
        if (opts.retry?.(f) && Date.now() - started < (opts.retryForMs ?? 0)) {
          retries++
          await sleep(1000)
          continue
        }
        failed.push(`${name}: ${f.message}`)
      }
      break
    }
  }
  if (failed.length > 0) throw new Error(`deleted ${deleted.join(', ') || 'nothing'}; failed ${failed.join('; ')}`)
  return deleted.length > 0 ? `deleted ${deleted.join(', ')}` : 'none existed'
}

/**
 * A PVC DELETE that smart-restore's deletion guard refused (or could not be asked about) right after
 * its webhook configuration was deleted: the apiserver's admission learns of that through an
 * informer and keeps calling the webhook for a moment, so cleanup retries these for a while.
 */
export const refusedByLingeringGuard = (f: KubeFailure) =>
  f.message.includes(`admission webhook "${DELETE_GUARD_WEBHOOK}" denied the request`) || (f.message.includes(`"${DELETE_GUARD_WEBHOOK}"`) && /failed calling webhook/i.test(f.message))

/** Cleanup phases, in this order. */
export const PHASE = {
  webhook: 10,
  /**
   * Right after the webhook configurations: the service's backup-source reconciler would otherwise
   * re-apply a `<pvc>-backup` ReplicationSource and its `<pvc>-restic` Secret that the next phases
   * delete (it looks at a PVC again when its source is deleted). A PVC DELETE the apiserver still
   * sends to the stopped guard for a moment fails "failed calling webhook" and is retried (pvcs).
   */
  service: 12,
  /** Before the PVCs: a syncing ReplicationSource would make the deletion guard refuse its PVC. */
  replicationSources: 15,
  pvcs: 20,
  /** After the PVCs: a PersistentVolume the suite pre-bound to one (only on clusters with a PV controller). */
  persistentVolumes: 25,
  replicationDestinations: 30,
  secrets: 40,
  namespaces: 50,
  /** The suite's StorageClass and VolumeSnapshotClass: after everything that names them, before their CRDs. */
  restorePrerequisites: 55,
  crds: 60,
  s3: 80,
} as const
