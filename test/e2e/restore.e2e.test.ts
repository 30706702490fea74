/**
 * End to end against a real kube-apiserver: the apiserver calls smart-restore (started in this
 * process) as the mutating and validating webhooks registered from webhook-config/, the service
 * probes a real S3 (a local s3rver by default), writes real objects, and guards PVC deletion from
 * the ReplicationSources it watches.
 *
 *   KUBECONFIG=... npm run test:e2e        (see the README, "End-to-end tests")
 *
 * Without KUBECONFIG the file is skipped. Works without a controller-manager (a bare apiserver):
 * nothing here waits for a PVC to bind or a namespace to finish terminating.
 */
import t, { type Test } from 'tap'
import * as k8s from '@kubernetes/client-node'
import { pino } from 'pino'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig } from '../../src/config/schema.js'
import { kubeConfigFromEnvironment, probeApi } from '../../src/kube/config.js'
import { createLogger } from '../../src/log.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import {
  Cleanup,
  DELETE_GUARD_WEBHOOK,
  E2EError,
  PHASE,
  VOLSYNC,
  WEBHOOK_NAME,
  call,
  deleteEach,
  deleteS3Objects,
  describeCluster,
  e2eValidatingWebhookConfiguration,
  e2eWebhookConfiguration,
  ensureVolSyncCrds,
  expectedResticRepository,
  externalS3,
  getOrUndefined,
  kubeFailure,
  loadKubeConfig,
  makeApis,
  newRunId,
  otherSmartRestoreWebhooks,
  readE2EEnv,
  refusedByLingeringGuard,
  registeredDifferences,
  seedResticRepository,
  sleep,
  startLocalS3,
  urlHost,
  validateUrlFor,
  waitForDeleteGuard,
  waitForReady,
  waitForWebhook,
  warningsOf,
  webhookReachabilityHint,
  webhookUrlFor,
  type Apis,
  type E2EEnv,
  type KubeFailure,
  type S3Target,
} from './support.js'

const PREFIX = defaultConfig.annotationPrefix // smart-restore.io/
const SOURCE_SECRET = 'smart-restore-restic'
const TIERS = Object.keys(defaultConfig.tiers) // hourly, daily, weekly

/** PVCs of the scenarios (their RDs/Secrets would be `<name>-restore` / `<name>-restic`). */
const PVC = {
  withBackup: 'with-backup',
  noBackup: 'no-backup',
  badTier: 'bad-tier',
  dryRun: 'dry-run-restore',
  s3Down: 's3-down',
  /** Unlabelled, with an empty allow-delete annotation: the deletion guard refuses it whatever is in flight (setup's probe). */
  deleteProbe: 'delete-probe',
} as const

/** The ReplicationSource the deletion guard scenario drives (its status is written by the test, as VolSync would). */
const RS = { guarded: 'guarded-backup' } as const
const ALLOW_DELETE = `${PREFIX}allow-delete`

interface Ctx {
  env: E2EEnv
  apis: Apis
  runId: string
  ns: string
  sysNs: string
  s3: S3Target
  resticPassword: string
  service: ServiceHandle
  webhookUrl: string
  validateUrl: string
}

type Created = { ok: true; pvc: k8s.V1PersistentVolumeClaim; warnings: string } | { ok: false; failure: KubeFailure }

function pvcBody(name: string, tier: string): k8s.V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, labels: { backup: tier, 'app.kubernetes.io/part-of': 'smart-restore-e2e' } },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  }
}

async function createPvc(ctx: Ctx, name: string, tier: string, dryRun = false): Promise<Created> {
  try {
    const info = await call((o) =>
      ctx.apis.core.createNamespacedPersistentVolumeClaimWithHttpInfo({ namespace: ctx.ns, body: pvcBody(name, tier), ...(dryRun ? { dryRun: 'All' } : {}) }, o),
    )
    return { ok: true, pvc: info.data, warnings: warningsOf(info) }
  } catch (err) {
    return { ok: false, failure: kubeFailure(err) }
  }
}

const readPvc = (ctx: Ctx, name: string) => getOrUndefined((o) => ctx.apis.core.readNamespacedPersistentVolumeClaim({ namespace: ctx.ns, name }, o))
const readSecret = (ctx: Ctx, name: string) => getOrUndefined((o) => ctx.apis.core.readNamespacedSecret({ namespace: ctx.ns, name }, o))
const readRd = (ctx: Ctx, name: string) =>
  getOrUndefined(
    (o) =>
      ctx.apis.custom.getNamespacedCustomObject({ group: VOLSYNC.group, version: VOLSYNC.version, namespace: ctx.ns, plural: VOLSYNC.rdPlural, name }, o) as Promise<{
        metadata?: { labels?: Record<string, string> }
        spec?: { trigger?: { manual?: string }; restic?: Record<string, unknown> }
      }>,
  )
type RsStatus = {
  conditions?: Array<{ type?: string; status?: string; reason?: string; message?: string; lastTransitionTime?: string }>
  lastSyncStartTime?: string
  lastSyncTime?: string
}
type ReplicationSource = { metadata?: { name?: string; uid?: string }; status?: RsStatus }
const rsRef = (ctx: Ctx) => ({ group: VOLSYNC.group, version: VOLSYNC.version, namespace: ctx.ns, plural: VOLSYNC.rsPlural })
const readRs = (ctx: Ctx, name: string) =>
  getOrUndefined((o) => ctx.apis.custom.getNamespacedCustomObject({ ...rsRef(ctx), name }, o) as Promise<ReplicationSource>)

/**
 * Write a ReplicationSource's status the way VolSync does: through the status subresource, as a JSON
 * merge patch (null removes a field). client-node 1.4 sends json-patch unless told otherwise.
 */
async function patchRsStatus(ctx: Ctx, name: string, status: Record<string, unknown>): Promise<{ ok: true; rs: ReplicationSource } | { ok: false; failure: KubeFailure }> {
  try {
    const rs = (await call((o) =>
      ctx.apis.custom.patchNamespacedCustomObjectStatus({ ...rsRef(ctx), name, body: { status } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch, o)),
    )) as ReplicationSource
    return { ok: true, rs }
  } catch (err) {
    return { ok: false, failure: kubeFailure(err) }
  }
}

/** e.g. `Synchronizing=True (SyncInProgress), lastSyncStartTime=...`: what the guard's rule looks at. */
function describeRsStatus(rs: ReplicationSource | undefined): string {
  if (!rs) return 'the ReplicationSource does not exist'
  const c = rs.status?.conditions?.find((x) => x.type === 'Synchronizing')
  const parts = [c ? `Synchronizing=${c.status}${c.reason ? ` (${c.reason})` : ''}` : 'no Synchronizing condition']
  parts.push(rs.status?.lastSyncStartTime ? `lastSyncStartTime=${rs.status.lastSyncStartTime}` : 'no lastSyncStartTime')
  if (rs.status?.lastSyncTime) parts.push(`lastSyncTime=${rs.status.lastSyncTime}`)
  return parts.join(', ')
}

type Deleted = { ok: true; warnings: string } | { ok: false; failure: KubeFailure }

async function deletePvc(ctx: Ctx, name: string, dryRun: boolean): Promise<Deleted> {
  try {
    const info = await call((o) =>
      ctx.apis.core.deleteNamespacedPersistentVolumeClaimWithHttpInfo({ namespace: ctx.ns, name, ...(dryRun ? { dryRun: 'All' } : {}) }, o),
    )
    return { ok: true, warnings: warningsOf(info) }
  } catch (err) {
    return { ok: false, failure: kubeFailure(err) }
  }
}

/** DELETE (or dry-run DELETE) once a second until `until` holds or `maxMs` has passed; the last answer. */
async function pollDelete(ctx: Ctx, name: string, dryRun: boolean, until: (d: Deleted) => boolean, maxMs: number): Promise<{ last: Deleted; attempts: number; ms: number }> {
  const started = Date.now()
  let attempts = 0
  for (;;) {
    attempts++
    const last = await deletePvc(ctx, name, dryRun)
    if (until(last) || Date.now() - started >= maxMs) return { last, attempts, ms: Date.now() - started }
    await sleep(1000)
  }
}

/** metav1.Time as VolSync writes it (RFC 3339, seconds). */
const rfc3339Now = () => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
const seconds = (ms: number) => (ms / 1000).toFixed(1)

const decoded = (s: k8s.V1Secret | undefined, key: string) => (s?.data?.[key] === undefined ? undefined : Buffer.from(s.data[key]!, 'base64').toString('utf8'))
const describeFailure = (f: KubeFailure) => `${f.code ? `HTTP ${f.code}${f.reason ? ` ${f.reason}` : ''}: ` : ''}${f.message}`

// ---------------------------------------------------------------------------------------------
// Setup: cluster, CRDs, S3, namespaces, source Secret, service, webhook registration.

async function setup(t: Test, env: E2EEnv, cleanup: Cleanup): Promise<Ctx> {
  // -- the cluster, from $KUBECONFIG only
  const kc = loadKubeConfig(env.kubeconfig)
  const api = await probeApi(kc, 10_000)
  if (!api.reachable) {
    throw new E2EError(`KUBECONFIG=${env.kubeconfig} is set, but its Kubernetes API did not answer (${describeCluster(kc)}): ${api.detail}`)
  }
  t.comment(`cluster: ${describeCluster(kc)}, ${api.detail}`)
  // The service finds its cluster by itself (kubeConfigFromEnvironment): it must be the same one.
  const seen = kubeConfigFromEnvironment()
  if (!seen || seen.source !== 'kubeconfig' || seen.kubeConfig.getCurrentCluster()?.server !== kc.getCurrentCluster()?.server) {
    throw new E2EError(
      `the service would not use the cluster of KUBECONFIG: kubeConfigFromEnvironment() found ${seen ? `${seen.source} ${seen.kubeConfig.getCurrentCluster()?.server}` : 'nothing'}` +
        `${seen?.source === 'in-cluster' ? ' (KUBERNETES_SERVICE_HOST is set and a service account token is mounted; unset KUBERNETES_SERVICE_HOST)' : ''}`,
    )
  }
  const apis = makeApis(kc)

  // -- VolSync CRDs (found, or installed from E2E_VOLSYNC_CRDS and removed at the end)
  const crds = await ensureVolSyncCrds(apis, env.volsyncCrdsDir, (name) =>
    cleanup.add(PHASE.crds, `CRD ${name} (installed by this run)`, () => call((o) => apis.ext.deleteCustomResourceDefinition({ name }, o))),
  )
  t.comment(crds.installed.length ? `VolSync CRDs installed for this run from ${env.volsyncCrdsDir}: ${crds.installed.join(', ')}` : 'VolSync CRDs: already installed')

  const runId = newRunId()
  const ns = `sr-e2e-${runId}`
  const sysNs = `sr-e2e-sys-${runId}`

  // -- S3 with a restic-shaped repository for the PVCs that "have a backup"
  let s3: S3Target
  if (env.s3) {
    s3 = externalS3(env.s3)
  } else {
    s3 = await startLocalS3('smart-restore-e2e')
    cleanup.add(PHASE.s3, `s3rver at ${s3.endpoint}`, () => s3.stop())
  }
  const seeded: string[] = []
  if (!s3.local) cleanup.add(PHASE.s3, `objects seeded in s3://${s3.bucket}/${ns}/`, async () => deleteS3Objects(s3, seeded))
  for (const pvc of [PVC.withBackup, PVC.dryRun]) seeded.push(...(await seedResticRepository(s3, `${ns}/${pvc}`)))
  t.comment(`S3: ${s3.local ? 'local s3rver' : 'external'} ${s3.endpoint || '(AWS)'} bucket ${s3.bucket}; seeded ${ns}/{${PVC.withBackup},${PVC.dryRun}}`)

  // -- namespaces (not waited for on deletion: without a controller-manager they never finish)
  const labels = { 'app.kubernetes.io/part-of': 'smart-restore-e2e', 'smart-restore.io/e2e-run': runId }
  for (const name of [ns, sysNs]) {
    // Registered before the create: a create that timed out on our side may still have happened
    // (the names are unique to this run, so deleting them can only hit our own objects).
    cleanup.add(PHASE.namespaces, `namespace ${name} (deletion requested, not awaited)`, () => call((o) => apis.core.deleteNamespace({ name }, o)))
    await call((o) => apis.core.createNamespace({ body: { metadata: { name, labels } } }, o)).catch((err: unknown) => {
      throw new E2EError(`cannot create namespace ${name}: ${describeFailure(kubeFailure(err))}`)
    })
  }
  const names = Object.values(PVC)
  cleanup.add(PHASE.replicationSources, `ReplicationSources in ${ns}`, () =>
    deleteEach(Object.values(RS), (name, o) =>
      apis.custom.deleteNamespacedCustomObject({ group: VOLSYNC.group, version: VOLSYNC.version, namespace: ns, plural: VOLSYNC.rsPlural, name }, o),
    ),
  )
  // The deletion guard may still be called for a moment after its configuration is deleted (and it
  // refuses with-backup, still being populated, and delete-probe): retried for up to 15 s.
  cleanup.add(PHASE.pvcs, `PVCs in ${ns}`, () =>
    deleteEach(names, (name, o) => apis.core.deleteNamespacedPersistentVolumeClaim({ namespace: ns, name }, o), { retry: refusedByLingeringGuard, retryForMs: 15_000 }),
  )
  cleanup.add(PHASE.replicationDestinations, `ReplicationDestinations in ${ns}`, () =>
    deleteEach(
      names.map((n) => `${n}-restore`),
      (name, o) => apis.custom.deleteNamespacedCustomObject({ group: VOLSYNC.group, version: VOLSYNC.version, namespace: ns, plural: VOLSYNC.rdPlural, name }, o),
    ),
  )
  cleanup.add(PHASE.secrets, `Secrets in ${ns}`, () =>
    deleteEach(
      names.map((n) => `${n}-restic`),
      (name, o) => apis.core.deleteNamespacedSecret({ namespace: ns, name }, o),
    ),
  )
  cleanup.add(PHASE.secrets, `Secret ${sysNs}/${SOURCE_SECRET}`, () => call((o) => apis.core.deleteNamespacedSecret({ namespace: sysNs, name: SOURCE_SECRET }, o)))

  // -- the source Secret the service copies into each PVC's repository Secret
  const resticPassword = `e2e-${runId}-not-a-real-password`
  await call((o) =>
    apis.core.createNamespacedSecret(
      {
        namespace: sysNs,
        body: {
          metadata: { name: SOURCE_SECRET, labels },
          type: 'Opaque',
          stringData: { RESTIC_PASSWORD: resticPassword, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
        },
      },
      o,
    ),
  )

  // -- the service, in this process, serving a generated certificate for the webhook host
  const certHosts = [env.webhookHost, ...(env.webhookUrl ? [urlHost(env.webhookUrl)] : [])]
  const config = validateConfig({
    ...defaultConfig,
    server: { ...defaultConfig.server, host: certHosts.some((h) => h.includes(':')) ? '::' : '0.0.0.0', port: env.webhookPort, devCertHosts: certHosts },
    store: {
      ...defaultConfig.store,
      type: 's3',
      s3: { endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, forcePathStyle: s3.forcePathStyle, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    },
    restore: { ...defaultConfig.restore, sourceSecret: { namespace: sysNs, name: SOURCE_SECRET } },
    kube: { ...defaultConfig.kube, mode: 'cluster' },
    logLevel: env.logLevel,
  })
  // Logs go to stderr: stdout is the TAP stream.
  const logger = createLogger(config.logLevel, pino.destination({ dest: 2, sync: true }))
  const service = await startService(config, { logger }).catch((err: unknown) => {
    throw new E2EError(`cannot start the smart-restore service on port ${env.webhookPort || '(any)'}: ${(err as Error).message}`)
  })
  cleanup.add(PHASE.service, 'smart-restore service', () => service.close())
  if (service.mode !== 'cluster') throw new E2EError(`the service started in ${service.mode} mode; it must write to the cluster`)
  if (!service.caCert) throw new E2EError('the service did not generate its certificate (is SMART_RESTORE_TLS_CERT_FILE set?), so there is no caBundle to register')
  const webhookUrl = env.webhookUrl ?? webhookUrlFor(env.webhookHost, service.port)
  const validateUrl = env.webhookUrl ? validateUrlFor(env.webhookUrl) : webhookUrlFor(env.webhookHost, service.port, '/validate')
  t.comment(`webhook: listening on port ${service.port}, registered as ${webhookUrl} and ${validateUrl}`)

  // -- ready = the watched caches (the deletion guard's view of backups/restores in flight) are synced
  const ready = await waitForReady(service.url, service.caCert)
  if (!ready.ready) {
    throw new E2EError(
      `the service did not become ready within ${Math.round(ready.ms / 1000)} s (GET ${service.url}/readyz, ${ready.attempts} attempts); it last said: ${ready.reason}. ` +
        `In cluster mode it is ready once its watches (ReplicationSources, Jobs, namespaces, ... cluster-wide) have listed: can the user of KUBECONFIG list and watch them?`,
    )
  }
  t.comment(`service ready (/readyz 200, watched caches synced) after ${ready.attempts} attempt(s), ${seconds(ready.ms)} s`)

  // -- the webhook configurations from webhook-config/, narrowed to the run's namespace
  const name = `smart-restore-e2e-${runId}`
  const body = e2eWebhookConfiguration({ name, url: webhookUrl, caCert: service.caCert, namespace: ns, runId })
  const validating = e2eValidatingWebhookConfiguration({ name, url: validateUrl, caCert: service.caCert, namespace: ns, runId })
  const others = await otherSmartRestoreWebhooks(apis, name)
  if (others.length > 0) {
    t.comment(`note: ${others.join(', ')} also run smart-restore's webhooks in this cluster and may act on the test namespace too`)
  }
  // Registered before the creates, the validating one first: its deletion guard is what could hold up deleting the PVCs.
  cleanup.add(PHASE.webhook, `ValidatingWebhookConfiguration ${name}`, () => call((o) => apis.admission.deleteValidatingWebhookConfiguration({ name }, o)))
  cleanup.add(PHASE.webhook, `MutatingWebhookConfiguration ${name}`, () => call((o) => apis.admission.deleteMutatingWebhookConfiguration({ name }, o)))
  await call((o) => apis.admission.createMutatingWebhookConfiguration({ body }, o)).catch((err: unknown) => {
    throw new E2EError(`cannot register MutatingWebhookConfiguration ${name}: ${describeFailure(kubeFailure(err))}`)
  })
  await call((o) => apis.admission.createValidatingWebhookConfiguration({ body: validating }, o)).catch((err: unknown) => {
    throw new E2EError(`cannot register ValidatingWebhookConfiguration ${name}: ${describeFailure(kubeFailure(err))}`)
  })
  const registered = await call((o) => apis.admission.readMutatingWebhookConfiguration({ name }, o))
  t.strictSame(registeredDifferences(body, registered), [], 'the apiserver registered webhook-config/mutating-webhook.yaml as written (rules, selectors, policies, timeout)')
  const registeredValidating = await call((o) => apis.admission.readValidatingWebhookConfiguration({ name }, o))
  t.strictSame(
    registeredDifferences(validating, registeredValidating),
    [],
    'the apiserver registered webhook-config/validating-webhook.yaml as written (rules, selectors, policies, timeout; no objectSelector on the deletion guard)',
  )

  // -- wait until the apiserver really calls it
  const probe = await waitForWebhook(apis, ns, PREFIX)
  if (probe.state === 'failing') {
    throw new E2EError(`the apiserver cannot call the webhook (${probe.attempts} attempts in ${Math.round(probe.ms / 1000)} s); it said:\n${probe.message}\n\n${webhookReachabilityHint(env.webhookHost, webhookUrl)}`)
  }
  if (probe.state === 'not-called') {
    throw new E2EError(
      `the apiserver never called the webhook within ${Math.round(probe.ms / 1000)} s (${probe.attempts} dry-run creates of a labelled PVC came back unmutated). ` +
        `Is the MutatingAdmissionWebhook admission plugin enabled (kube-apiserver --enable-admission-plugins / --disable-admission-plugins)? ` +
        `Does namespace ${ns} carry the label kubernetes.io/metadata.name=${ns} that the namespaceSelector matches (set by every apiserver since v1.21)?`,
    )
  }
  t.comment(`webhook effective after ${probe.attempts} attempt(s), ${(probe.ms / 1000).toFixed(1)} s`)

  // -- and the deletion guard: dry-run DELETEs of a PVC whose allow-delete annotation has no reason,
  // which the guard refuses (422) before looking at anything in flight
  const probePvc: k8s.V1PersistentVolumeClaim = {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name: PVC.deleteProbe, labels: { 'app.kubernetes.io/part-of': 'smart-restore-e2e' }, annotations: { [ALLOW_DELETE]: '' } },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
  }
  await call((o) => apis.core.createNamespacedPersistentVolumeClaim({ namespace: ns, body: probePvc }, o)).catch((err: unknown) => {
    throw new E2EError(`cannot create the deletion guard's probe PVC ${ns}/${PVC.deleteProbe} (unlabelled): ${describeFailure(kubeFailure(err))}`)
  })
  const guard = await waitForDeleteGuard(apis, ns, PVC.deleteProbe)
  if (guard.state === 'failing') {
    throw new E2EError(`the apiserver cannot call the deletion guard (${guard.attempts} attempts in ${Math.round(guard.ms / 1000)} s); it said:\n${guard.message}\n\n${webhookReachabilityHint(env.webhookHost, validateUrl)}`)
  }
  if (guard.state === 'not-called') {
    throw new E2EError(
      `the apiserver never called the deletion guard ${DELETE_GUARD_WEBHOOK} within ${Math.round(guard.ms / 1000)} s (${guard.attempts} dry-run DELETEs of PVC ${PVC.deleteProbe}, annotated ${ALLOW_DELETE}="", were allowed). ` +
        `Is the ValidatingAdmissionWebhook admission plugin enabled (kube-apiserver --enable-admission-plugins / --disable-admission-plugins)?`,
    )
  }
  t.comment(`deletion guard effective after ${guard.attempts} attempt(s), ${seconds(guard.ms)} s (dry-run DELETE of ${PVC.deleteProbe} refused: ${ALLOW_DELETE} without a reason)`)

  // The probe has served: with a reason in the annotation the guard lets it go (a human's override), and says so.
  try {
    await call((o) =>
      apis.core.patchNamespacedPersistentVolumeClaim(
        { namespace: ns, name: PVC.deleteProbe, body: { metadata: { annotations: { [ALLOW_DELETE]: 'e2e: probe done' } } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch, o),
      ),
    )
    const info = await call((o) => apis.core.deleteNamespacedPersistentVolumeClaimWithHttpInfo({ namespace: ns, name: PVC.deleteProbe }, o))
    t.match(warningsOf(info), 'deletion guard overridden', `probe PVC ${PVC.deleteProbe} deleted once ${ALLOW_DELETE} gave a reason, with the guard's "overridden" warning`)
  } catch (err) {
    t.fail(`deleting the probe PVC ${PVC.deleteProbe} with ${ALLOW_DELETE}="e2e: probe done" failed: ${describeFailure(kubeFailure(err))}`)
  }

  return { env, apis, runId, ns, sysNs, s3, resticPassword, service, webhookUrl, validateUrl }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async function scenarios(t: Test, ctx: Ctx, summary: string[]): Promise<void> {
  const { ns, s3 } = ctx
  const done = (t: Test, line: string) => summary.push(`${t.passing() ? 'ok  ' : 'FAIL'} ${line}`)

  await t.test('restore: a PVC with a backup gets a ReplicationDestination as its data source', async (t) => {
    const name = PVC.withBackup
    const made = await createPvc(ctx, name, 'hourly')
    if (!made.ok) {
      t.fail(`creating PVC ${ns}/${name} (label backup=hourly, snapshot in S3) failed: ${describeFailure(made.failure)}`)
      return done(t, `restore: ${name}`)
    }
    t.match(made.warnings, /smart-restore: restoring from/, 'the apiserver passed on the webhook\'s "restoring from" warning')

    const pvc = await readPvc(ctx, name)
    t.ok(pvc, `PVC ${ns}/${name} exists`)
    const ref = pvc?.spec?.dataSourceRef
    t.strictSame(
      ref && { apiGroup: ref.apiGroup, kind: ref.kind, name: ref.name },
      { apiGroup: 'volsync.backube', kind: 'ReplicationDestination', name: `${name}-restore` },
      'spec.dataSourceRef points at the ReplicationDestination',
    )
    t.equal(pvc?.metadata?.annotations?.[`${PREFIX}decision`], 'restore', `annotation ${PREFIX}decision=restore`)
    t.equal(pvc?.metadata?.annotations?.[`${PREFIX}replication-destination`], `${name}-restore`, `annotation ${PREFIX}replication-destination`)

    const rd = await readRd(ctx, `${name}-restore`)
    t.ok(rd, `ReplicationDestination ${ns}/${name}-restore exists`)
    t.equal(rd?.spec?.restic?.copyMethod, 'Snapshot', 'RD spec.restic.copyMethod is Snapshot (what the volume populator needs)')
    t.equal(rd?.spec?.restic?.repository, `${name}-restic`, 'RD spec.restic.repository names the per-PVC Secret')
    t.equal(rd?.spec?.restic?.capacity, '1Gi', 'RD spec.restic.capacity is the PVC\'s request')
    t.strictSame(rd?.spec?.restic?.accessModes, ['ReadWriteOnce'], 'RD spec.restic.accessModes are the PVC\'s')
    t.ok(rd?.spec?.trigger?.manual, 'RD has a manual trigger (restores once)')
    t.equal(rd?.metadata?.labels?.['app.kubernetes.io/managed-by'], 'smart-restore', 'RD is labelled managed-by smart-restore')

    const secret = await readSecret(ctx, `${name}-restic`)
    t.ok(secret, `Secret ${ns}/${name}-restic exists`)
    t.equal(decoded(secret, 'RESTIC_REPOSITORY'), expectedResticRepository(s3, `${ns}/${name}`), 'Secret RESTIC_REPOSITORY is the PVC\'s repository')
    t.ok(decoded(secret, 'RESTIC_PASSWORD') === ctx.resticPassword, 'Secret RESTIC_PASSWORD is copied from the source Secret')
    t.ok(decoded(secret, 'AWS_ACCESS_KEY_ID') === s3.accessKeyId && decoded(secret, 'AWS_SECRET_ACCESS_KEY') === s3.secretAccessKey, 'Secret AWS credentials are copied from the source Secret')
    done(t, `restore: PVC ${name} → dataSourceRef ReplicationDestination ${name}-restore (Snapshot, 1Gi), Secret ${name}-restic (RESTIC_REPOSITORY, password)`)
  })

  await t.test('fresh: a PVC without a backup is created empty and says so', async (t) => {
    const name = PVC.noBackup
    const made = await createPvc(ctx, name, 'daily')
    if (!made.ok) {
      t.fail(`creating PVC ${ns}/${name} (label backup=daily, nothing in S3) failed: ${describeFailure(made.failure)}`)
      return done(t, `fresh: ${name}`)
    }
    t.match(made.warnings, /smart-restore: no backup/, 'the apiserver passed on the webhook\'s "no backup" warning')
    const pvc = await readPvc(ctx, name)
    t.ok(pvc, `PVC ${ns}/${name} exists`)
    t.equal(pvc?.spec?.dataSourceRef, undefined, 'no spec.dataSourceRef')
    t.equal(pvc?.spec?.dataSource, undefined, 'no spec.dataSource')
    t.equal(pvc?.metadata?.annotations?.[`${PREFIX}decision`], 'fresh', `annotation ${PREFIX}decision=fresh`)
    t.equal(pvc?.metadata?.annotations?.[`${PREFIX}checked-location`], `s3://${s3.bucket}/${ns}/${name}`, `annotation ${PREFIX}checked-location names where it looked`)
    t.equal(await readRd(ctx, `${name}-restore`), undefined, `no ReplicationDestination ${name}-restore`)
    t.equal(await readSecret(ctx, `${name}-restic`), undefined, `no Secret ${name}-restic`)
    done(t, `fresh: PVC ${name} → annotated ${PREFIX}decision=fresh, no data source, no RD`)
  })

  await t.test('an unknown tier is rejected with the valid tiers', async (t) => {
    const name = PVC.badTier
    const made = await createPvc(ctx, name, 'hurly')
    t.notOk(made.ok, `creating PVC ${name} with backup=hurly is rejected`)
    if (!made.ok) {
      t.match(made.failure.message, `admission webhook "${WEBHOOK_NAME}" denied the request`, 'the webhook denied it')
      t.match(made.failure.message, `valid tiers: ${TIERS.join(', ')}`, 'the message names the valid tiers')
      t.equal(made.failure.code, 422, 'HTTP 422')
    }
    t.equal(await readPvc(ctx, name), undefined, `no PVC ${name}`)
    done(t, 'unknown tier backup=hurly → denied (422) naming the valid tiers')
  })

  await t.test('a server-side dry run answers like a real create but creates nothing', async (t) => {
    const name = PVC.dryRun
    const made = await createPvc(ctx, name, 'weekly', true)
    if (!made.ok) {
      t.fail(`dry-run create of PVC ${ns}/${name} (snapshot in S3) failed: ${describeFailure(made.failure)}`)
      return done(t, `dry run: ${name}`)
    }
    t.equal(made.pvc.spec?.dataSourceRef?.name, `${name}-restore`, 'the dry-run answer carries the dataSourceRef a real create would get')
    t.match(made.warnings, /dry run/, 'the webhook warned that nothing was created')
    t.equal(await readRd(ctx, `${name}-restore`), undefined, `no ReplicationDestination ${name}-restore`)
    t.equal(await readSecret(ctx, `${name}-restic`), undefined, `no Secret ${name}-restic`)
    t.equal(await readPvc(ctx, name), undefined, `no PVC ${name}`)
    done(t, `dry run of PVC ${name} (has a backup) → mutated answer, no RD, no Secret`)
  })

  await t.test('deletion guard: a PVC is not deleted while a ReplicationSource of it is syncing', async (t) => {
    const name = PVC.noBackup
    const rs = RS.guarded
    const pvcName = `PVC ${ns}/${name}`
    const rsName = `ReplicationSource ${ns}/${rs}`
    const before = await readPvc(ctx, name)
    if (!before) {
      t.fail(`${pvcName} (created by the "fresh" scenario) does not exist; the deletion guard scenario needs it`)
      return done(t, 'deletion guard: no PVC to guard')
    }
    const body = {
      apiVersion: `${VOLSYNC.group}/${VOLSYNC.version}`,
      kind: 'ReplicationSource',
      metadata: { name: rs, labels: { 'app.kubernetes.io/part-of': 'smart-restore-e2e' } },
      spec: { sourcePVC: name, trigger: { schedule: '0 * * * *' }, restic: { repository: `${name}-restic`, copyMethod: 'Snapshot' } },
    }
    try {
      await call((o) => ctx.apis.custom.createNamespacedCustomObject({ ...rsRef(ctx), body }, o))
    } catch (err) {
      t.fail(`creating ${rsName} (sourcePVC ${name}) failed: ${describeFailure(kubeFailure(err))}`)
      return done(t, 'deletion guard: no ReplicationSource')
    }
    t.comment(`${rsName} created: sourcePVC ${name}, schedule "0 * * * *", restic ${name}-restic, copyMethod Snapshot`)

    // -- in flight: the status VolSync writes while its mover runs
    const started = rfc3339Now()
    const syncing = await patchRsStatus(ctx, rs, {
      conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'Synchronization in-progress', lastTransitionTime: started }],
      lastSyncStartTime: started,
    })
    if (!syncing.ok) {
      t.fail(`setting the status of ${rsName} through the status subresource failed: ${describeFailure(syncing.failure)}`)
      return done(t, 'deletion guard: status not written')
    }
    t.equal(describeRsStatus(syncing.rs), `Synchronizing=True (SyncInProgress), lastSyncStartTime=${started}`, `${rsName} status (subresource, merge patch): syncing since ${started}`)

    // The guard answers from its watch of ReplicationSources, which delivers the status a moment
    // later: dry runs (nothing is deleted, even if it were allowed) until it is refused.
    const dry = await pollDelete(ctx, name, true, (d) => !d.ok, 10_000)
    if (dry.last.ok) {
      const now = await readRs(ctx, rs)
      t.fail(
        `a dry-run DELETE of ${pvcName} was still allowed ${seconds(dry.ms)} s (${dry.attempts} attempts) after ${rsName} was set syncing. ` +
          `Its status now: ${describeRsStatus(now)}${now?.status?.lastSyncStartTime === started ? '' : ' (rewritten: is a VolSync controller reconciling it?)'}. ` +
          `Either the service's watch did not deliver it, or its ReplicationSource rule is inactive (the CRD was not served when the service started; it rediscovers every 60 s).`,
      )
      return done(t, 'deletion guard: DELETE never refused while syncing')
    }
    t.comment(`dry-run DELETE of ${name} refused after ${dry.attempts} attempt(s), ${seconds(dry.ms)} s (the watch delivered the status)`)
    const refused = (d: Deleted, what: string) => {
      if (d.ok) return
      t.equal(d.failure.code, 409, `${what}: HTTP 409`)
      t.match(d.failure.message, `admission webhook "${DELETE_GUARD_WEBHOOK}" denied the request`, `${what}: denied by the deletion guard`)
      t.match(d.failure.message, 'cannot be deleted while a backup or restore of it is in flight', `${what}: the message says a backup or restore is in flight`)
      t.match(d.failure.message, `ReplicationSource ${ns}/${rs}`, `${what}: the message names ReplicationSource ${ns}/${rs}`)
      t.match(d.failure.message, `since ${started}`, `${what}: the message says since when (lastSyncStartTime)`)
    }
    refused(dry.last, 'dry-run DELETE')
    const afterDry = await readPvc(ctx, name)
    t.ok(afterDry && afterDry.metadata?.uid === before.metadata?.uid && !afterDry.metadata?.deletionTimestamp, `${pvcName} untouched by the dry run (same uid, no deletionTimestamp)`)

    const real = await deletePvc(ctx, name, false)
    t.notOk(real.ok, `DELETE of ${pvcName} is refused while ${rs} is syncing`)
    refused(real, 'DELETE')
    const afterReal = await readPvc(ctx, name)
    t.ok(afterReal && afterReal.metadata?.uid === before.metadata?.uid && !afterReal.metadata?.deletionTimestamp, `${pvcName} still exists, not marked for deletion`)
    if (real.ok) return done(t, 'deletion guard: DELETE went through while syncing')

    // -- idle: what VolSync writes when the sync is over (lastSyncStartTime cleared)
    const finished = rfc3339Now()
    const idle = await patchRsStatus(ctx, rs, {
      conditions: [{ type: 'Synchronizing', status: 'False', reason: 'WaitingForSchedule', message: 'Waiting for next scheduled synchronization', lastTransitionTime: finished }],
      lastSyncTime: finished,
      lastSyncStartTime: null,
    })
    if (!idle.ok) {
      t.fail(`setting ${rsName} idle through the status subresource failed: ${describeFailure(idle.failure)}`)
      return done(t, 'deletion guard: idle status not written')
    }
    t.equal(describeRsStatus(idle.rs), `Synchronizing=False (WaitingForSchedule), no lastSyncStartTime, lastSyncTime=${finished}`, `${rsName} status: idle (lastSyncStartTime removed by the merge patch's null)`)

    const allowed = await pollDelete(ctx, name, false, (d) => d.ok || d.failure.code === 404, 10_000)
    if (!allowed.last.ok && allowed.last.failure.code !== 404) {
      t.fail(`DELETE of ${pvcName} still refused ${seconds(allowed.ms)} s (${allowed.attempts} attempts) after ${rsName} went idle: ${describeFailure(allowed.last.failure)}`)
      return done(t, 'deletion guard: DELETE still refused once idle')
    }
    t.comment(`DELETE of ${name} went through after ${allowed.attempts} attempt(s), ${seconds(allowed.ms)} s once ${rs} was idle`)
    // Gone, or (a finalizer such as kubernetes.io/pvc-protection, removed by the controller-manager) marked for deletion.
    const after = await readPvc(ctx, name)
    const marked = after?.metadata?.deletionTimestamp
    t.ok(
      after === undefined || Boolean(marked),
      `${pvcName} is ${after ? `marked for deletion (deletionTimestamp ${marked instanceof Date ? marked.toISOString() : String(marked)}, finalizers ${JSON.stringify(after.metadata?.finalizers ?? [])})` : 'gone'}`,
    )
    done(t, `deletion guard: ReplicationSource ${rs} Synchronizing=True → DELETE of PVC ${name} refused (409, dry run too); idle → deleted`)
  })

  // Last: it stops the s3rver.
  if (!s3.local) summary.push('skip S3 unreachable → denial (needs the local s3rver; external S3 in use)')
  const skipS3Down = s3.local ? false : 'external S3 in use (E2E_S3_*): this check stops the local s3rver'
  await t.test('S3 unreachable: the PVC is denied, never created empty', { skip: skipS3Down }, async (t) => {
    const name = PVC.s3Down
    await s3.stop()
    const made = await createPvc(ctx, name, 'daily')
    t.notOk(made.ok, `creating PVC ${name} while S3 is down is rejected`)
    if (!made.ok) {
      t.match(made.failure.message, 'could not check the backup store', 'the message says the backup store could not be checked')
      t.equal(made.failure.code, 503, 'HTTP 503 (retryable)')
    }
    t.equal(await readPvc(ctx, name), undefined, `no PVC ${name}`)
    done(t, 'S3 unreachable → denied (503) "could not check the backup store"')
  })
}

// ---------------------------------------------------------------------------------------------

async function main(t: Test, env: E2EEnv): Promise<void> {
  const cleanup = new Cleanup()
  const summary: string[] = []
  const report = (lines: string[]) => {
    console.log(lines.length ? '# cleanup:' : '# cleanup: nothing was created')
    for (const l of lines) console.log(`#   ${l}`)
  }
  // Ctrl-C / SIGTERM: still remove the webhook configuration and the rest. (tap's own --timeout
  // signals SIGALRM and does not wait for an async teardown: cleanup may then stop after the first steps.)
  let interrupted = false
  const onSignal = (signal: NodeJS.Signals) => {
    // A second signal (Ctrl-C, then the runner's SIGTERM) must not cut the cleanup short.
    if (interrupted) return
    interrupted = true
    console.log(`# e2e interrupted by ${signal}: cleaning up`)
    const cap = new Promise<string[]>((r) => setTimeout(() => r(['cleanup did not finish within 30 s']), 30_000).unref())
    void Promise.race([cleanup.run(), cap]).then((lines) => {
      report(lines)
      process.exit(130)
    })
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  t.teardown(async () => {
    report(await cleanup.run())
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  })

  let ctx: Ctx
  try {
    ctx = await setup(t, env, cleanup)
  } catch (err) {
    const message = err instanceof E2EError ? err.message : `${(err as Error)?.name ?? 'Error'}: ${kubeFailure(err).message}`
    // TAP puts a failure's name on one line: the first line there, any further lines as comments.
    const [first, ...more] = message.split('\n')
    for (const line of more) t.comment(line)
    t.fail(`e2e setup failed: ${first}${more.length ? ' (details above)' : ''}`)
    return
  }
  await scenarios(t, ctx, summary)
  t.comment('summary:')
  for (const line of summary) t.comment(`  ${line}`)
}

let env: E2EEnv | { skip: string } | undefined
let envError: string | undefined
try {
  env = readE2EEnv()
} catch (err) {
  envError = (err as Error).message
}

if (envError !== undefined) {
  t.fail(`e2e configuration: ${envError}`)
} else if (env && 'skip' in env) {
  console.log(`# e2e SKIPPED: ${env.skip}`)
  t.plan(0, env.skip)
} else if (env) {
  const e = env
  await t.test(`smart-restore e2e (KUBECONFIG=${e.kubeconfig})`, (t) => main(t, e))
}
