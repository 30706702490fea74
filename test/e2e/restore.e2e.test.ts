/**
 * End to end against a real kube-apiserver: the apiserver calls smart-restore (started in this
 * process) as the mutating and validating webhooks registered from webhook-config/, the service
 * probes a real S3 (a local s3rver by default), writes real objects, and guards PVC deletion from
 * the ReplicationSources it watches.
 *
 *   KUBECONFIG=... npm run test:e2e        (see the README, "End-to-end tests")
 *
 * Without KUBECONFIG the file is skipped. Nothing runs VolSync, a CSI driver or a kubelet: the suite
 * installs what a restore needs to be admitted (minimal VolumePopulator and VolumeSnapshotClass CRDs
 * when the cluster lacks them, a StorageClass whose provisioner nobody runs, a default
 * VolumeSnapshotClass for it), binds PVCs itself (Binder) and writes the ReplicationDestination and
 * ReplicationSource statuses VolSync would write. Only the orphan scenario waits for
 * kube-controller-manager's garbage collector (skipped where Binder saw no controller-manager: a bare
 * apiserver); nothing waits for a namespace to finish terminating.
 *
 * The leader election scenario starts two more replicas of the service in this process (not
 * registered as webhooks, reconciling nothing) on a Lease of their own; the Secret-write fence
 * scenario (Kubernetes 1.30+) applies deploy/base/secret-write-policy.yaml for a ServiceAccount of
 * the run's namespace, which it acts as by impersonation.
 */
import { isDeepStrictEqual } from 'node:util'
import t, { type Test } from 'tap'
import * as k8s from '@kubernetes/client-node'
import { pino } from 'pino'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig, type Config } from '../../src/config/schema.js'
import { kubeConfigFromEnvironment, probeApi } from '../../src/kube/config.js'
import { createLogger } from '../../src/log.js'
import { startService, type ServiceHandle } from '../../src/service.js'
import { renderStatus } from '../../src/cli/render-status.js'
import { statusReport } from '../../src/cli/status.js'
import { createBackupStore } from '../../src/storage/index.js'
import { emptyRestoreStatus, restoredStatus } from '../helpers/rd-status.js'
import {
  Cleanup,
  DEFAULT_SNAPSHOT_CLASS_ANNOTATION,
  DELETE_GUARD_WEBHOOK,
  E2EError,
  E2E_PROVISIONER,
  PHASE,
  POPULATOR_API,
  SECRET_POLICY_FILE,
  SECRET_POLICY_USER,
  SNAPSHOT_CLASS_API,
  VOLSYNC,
  WEBHOOK_NAME,
  admissionPolicySupport,
  call,
  crdState,
  deleteEach,
  deleteS3Objects,
  describeCluster,
  describeLease,
  e2eSecretWritePolicy,
  e2eValidatingWebhookConfiguration,
  e2eWebhookConfiguration,
  ensureVolSyncCrds,
  expectedResticRepository,
  externalS3,
  getOrUndefined,
  impersonating,
  installMinimalCrd,
  kubeFailure,
  leaderMetric,
  loadKubeConfig,
  makeApis,
  newRunId,
  otherSmartRestoreWebhooks,
  pollUntil,
  policyExpressions,
  readE2EEnv,
  readLease,
  readReadyz,
  refusedByLingeringGuard,
  registeredDifferences,
  seedResticRepository,
  sleep,
  startLocalS3,
  urlHost,
  validateUrlFor,
  waitForDeleteGuard,
  waitForReady,
  waitForRestorePrerequisites,
  waitForWebhook,
  warningsOf,
  webhookReachabilityHint,
  webhookUrlFor,
  type Apis,
  type E2EEnv,
  type KubeFailure,
  type LeaseView,
  type Readyz,
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
  /** Fresh (nothing in S3), then Bound: the backup-source reconciler attaches, retiers and detaches its ReplicationSource. */
  backedUp: 'backed-up',
  /** Unlabelled, with an empty allow-delete annotation: the deletion guard refuses it whatever is in flight (setup's probe). */
  deleteProbe: 'delete-probe',
  /** Two snapshots; restore-as-of between them restores the older one. */
  asOf: 'as-of-older',
  /** Two snapshots; restore-as-of before both: VolSync would restore nothing → denied. */
  asOfTooOld: 'as-of-too-old',
  /** One snapshot; restore-previous 5: VolSync would restore nothing → denied. */
  previousTooFar: 'previous-too-far',
  /** Snapshots of another path only (another tool's repository): VolSync would restore nothing → denied. */
  foreignPaths: 'foreign-paths',
  /** One snapshot: refused (422) while the VolumePopulator CRD is missing, admitted once it is there. */
  populatorCheck: 'populator-check',
  /** One snapshot; its RD's status says the mover restored nothing: no backup source, attention + RestoreEmpty. */
  restoreEmpty: 'restore-empty',
  /** One snapshot; its RD's status says the mover restored it: the backup source is attached once Bound. */
  restoreDone: 'restore-done',
  /**
   * Never created: the orphan scenario makes the RD `<name>-restore` and Secret `<name>-restic` an
   * admission would have made before its CREATE failed. Listed so cleanup covers them.
   */
  neverCame: 'never-came',
} as const

/** Snapshot times of the seeded repositories: whole seconds (as VolSync compares them), hours before the run. */
const hoursAgo = (h: number) => new Date(Math.floor(Date.now() / 1000 - h * 3600) * 1000).toISOString().replace('.000Z', 'Z')

/** The ReplicationSource the deletion guard scenario drives (its status is written by the test, as VolSync would). */
const RS = { guarded: 'guarded-backup' } as const
/** The backup-source reconciler's objects for a PVC: ReplicationSource `<pvc>-backup`, repository Secret `<pvc>-restic`. */
const backupSourceOf = (pvc: string) => `${pvc}-backup`
const repositorySecretOf = (pvc: string) => `${pvc}-restic`

/** What the tiers' ReplicationSources must carry (README, configuration: the default tiers). */
const TIER_EXPECTATIONS = {
  hourly: { schedule: /^\d{1,2} \* \* \* \*$/, shape: '<minute> * * * *', retain: { hourly: 24, daily: 7, weekly: 4 } },
  daily: { schedule: /^\d{1,2} [0-5] \* \* \*$/, shape: '<minute> <hour 0-5> * * *', retain: { daily: 14, weekly: 8, monthly: 6 } },
} as const
/** How long the reconciler gets to act on a change of the PVC. */
const RECONCILE_MS = 20_000
const ALLOW_DELETE = `${PREFIX}allow-delete`
const ATTENTION = `${PREFIX}attention`
/** The service's watched caches rediscover APIs this often (startService watch.rediscoverMs; 60 s by default). */
const REDISCOVER_MS = 1_000
/**
 * reconciler.orphanGraceMs of the service under test (10 min by default): a restore RD whose PVC
 * never came is swept once this old; the sweep runs every min(60 s, this). Every RD the suite leaves
 * has its PVC (denied and dry-run creates make none), so only the orphan scenario's is swept.
 */
const ORPHAN_GRACE_MS = 4_000
const ORPHAN_SWEEP_EVERY_MS = Math.min(60_000, ORPHAN_GRACE_MS)
/** The real garbage collector deletes dependents asynchronously, and learns of new CRDs by discovery (every 30 s). */
const GC_MS = 90_000
/**
 * leaderElection timing of the leader election scenario's two extra replicas: short, so a takeover
 * is seen within seconds (the config's rules hold: retryPeriod < renewDeadline < leaseDuration, the
 * lease duration in whole seconds).
 */
const HA_TIMING = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 } as const
/** The ServiceAccount the Secret-write fence scenario names in the policy's matchConditions, and acts as. */
const FENCE_WRITER = 'sr-e2e-writer'
/** The policy's messages (deploy/base/secret-write-policy.yaml messageExpression), after "<OP> of Secret <ns>/<name> refused: ". */
const FENCE_RULE = {
  name: 'smart-restore writes only Secrets named <pvc>-restic or <pvc>-restic-from-<hash>',
  labelAfter: 'smart-restore writes only Secrets labelled app.kubernetes.io/managed-by=smart-restore, and this one would not be',
  labelBefore: 'the existing Secret is not labelled app.kubernetes.io/managed-by=smart-restore, so it does not belong to smart-restore',
} as const

interface Ctx {
  env: E2EEnv
  cleanup: Cleanup
  apis: Apis
  runId: string
  ns: string
  sysNs: string
  s3: S3Target
  resticPassword: string
  /** Snapshot ids of each seeded repository, in the order of their times. */
  snapshotIds: Record<string, string[]>
  service: ServiceHandle
  /** The service's configuration (the leader election scenario starts more replicas of it). */
  config: Config
  /** The service's holderIdentity in its leader election Lease (startService leaderIdentity). */
  leaderIdentity: string
  webhookUrl: string
  validateUrl: string
  /** The suite's StorageClass (provisioner E2E_PROVISIONER, WaitForFirstConsumer); every PVC of the suite names it. */
  storageClass: string
  /** The suite's default VolumeSnapshotClass for E2E_PROVISIONER. */
  snapshotClass: string
  /** The VolumePopulator CRD: the cluster's own, or absent until the preflight scenario creates it. */
  populatorCrd: 'cluster' | 'absent'
  /** Labels of everything the run creates. */
  labels: Record<string, string>
  /**
   * What Binder saw: a PV controller that resets a written Bound (true: kube-controller-manager runs,
   * so does its garbage collector), or none (false: a bare apiserver). Unknown until a PVC is bound.
   */
  observed: { controllerManager?: boolean }
}

type Created = { ok: true; pvc: k8s.V1PersistentVolumeClaim; warnings: string } | { ok: false; failure: KubeFailure }

/** A labelled PVC in the suite's StorageClass (a restore must name a class the preflight knows). */
function pvcBody(name: string, tier: string, storageClassName: string, annotations?: Record<string, string>): k8s.V1PersistentVolumeClaim {
  return {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: { name, labels: { backup: tier, 'app.kubernetes.io/part-of': 'smart-restore-e2e' }, ...(annotations ? { annotations } : {}) },
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, storageClassName },
  }
}

async function createPvc(ctx: Ctx, name: string, tier: string, dryRun = false, annotations?: Record<string, string>): Promise<Created> {
  try {
    const info = await call((o) =>
      ctx.apis.core.createNamespacedPersistentVolumeClaimWithHttpInfo(
        { namespace: ctx.ns, body: pvcBody(name, tier, ctx.storageClass, annotations), ...(dryRun ? { dryRun: 'All' } : {}) },
        o,
      ),
    )
    return { ok: true, pvc: info.data, warnings: warningsOf(info) }
  } catch (err) {
    return { ok: false, failure: kubeFailure(err) }
  }
}

const readPvc = (ctx: Ctx, name: string) => getOrUndefined((o) => ctx.apis.core.readNamespacedPersistentVolumeClaim({ namespace: ctx.ns, name }, o))
const readSecret = (ctx: Ctx, name: string) => getOrUndefined((o) => ctx.apis.core.readNamespacedSecret({ namespace: ctx.ns, name }, o))
type OwnerRef = { apiVersion?: string; kind?: string; name?: string; uid?: string; controller?: boolean; blockOwnerDeletion?: boolean }
type ReplicationDestination = {
  metadata?: {
    name?: string
    uid?: string
    creationTimestamp?: string
    deletionTimestamp?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    ownerReferences?: OwnerRef[]
  }
  spec?: { trigger?: { manual?: string }; restic?: Record<string, unknown> }
  status?: {
    lastManualSync?: string
    latestImage?: { apiGroup?: string; kind?: string; name?: string }
    latestMoverStatus?: { result?: string; logs?: string }
  } & Record<string, unknown>
}
const rdRef = (ctx: Ctx) => ({ group: VOLSYNC.group, version: VOLSYNC.version, namespace: ctx.ns, plural: VOLSYNC.rdPlural })
const readRd = (ctx: Ctx, name: string) => getOrUndefined((o) => ctx.apis.custom.getNamespacedCustomObject({ ...rdRef(ctx), name }, o) as Promise<ReplicationDestination>)

/** The fields of ownerReferences compared (client-node's typed V1OwnerReference instances, as plain objects). */
const ownersOf = (refs: OwnerRef[] | undefined) =>
  (refs ?? []).map((r) => ({ apiVersion: r.apiVersion, kind: r.kind, name: r.name, uid: r.uid, controller: r.controller, blockOwnerDeletion: r.blockOwnerDeletion }))
/** The ownerReference the webhook puts on a restore's repository Secret: its RD (src/engines/volsync.ts restoreOwnerReference). */
const rdOwnerRef = (rdName: string, uid: string | undefined) => ({
  apiVersion: `${VOLSYNC.group}/${VOLSYNC.version}`,
  kind: 'ReplicationDestination',
  name: rdName,
  uid,
  controller: false,
  blockOwnerDeletion: false,
})

/**
 * Write a ReplicationDestination's status the way VolSync does: through the status subresource, as
 * a JSON merge patch. The VolSync CRD's structural schema prunes any field it does not know, so the
 * caller checks what came back.
 */
async function patchRdStatus(ctx: Ctx, name: string, status: Record<string, unknown>): Promise<{ ok: true; rd: ReplicationDestination } | { ok: false; failure: KubeFailure }> {
  try {
    const rd = (await call((o) =>
      ctx.apis.custom.patchNamespacedCustomObjectStatus({ ...rdRef(ctx), name, body: { status } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch, o)),
    )) as ReplicationDestination
    return { ok: true, rd }
  } catch (err) {
    return { ok: false, failure: kubeFailure(err) }
  }
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
type RsStatus = {
  conditions?: Array<{ type?: string; status?: string; reason?: string; message?: string; lastTransitionTime?: string }>
  lastSyncStartTime?: string
  lastSyncTime?: string
}
type ReplicationSource = {
  metadata?: {
    name?: string
    uid?: string
    labels?: Record<string, string>
    ownerReferences?: Array<{ apiVersion?: string; kind?: string; name?: string; uid?: string }>
    deletionTimestamp?: string
    finalizers?: string[]
  }
  spec?: { sourcePVC?: string; trigger?: { schedule?: string }; restic?: { repository?: string; retain?: Record<string, unknown> } & Record<string, unknown> }
  status?: RsStatus
}
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

/** e.g. `uid ..., created ..., owners [PersistentVolumeClaim/x], lastManualSync "smart-restore", mover Successful`. */
function describeRd(rd: ReplicationDestination | undefined): string {
  if (!rd) return 'it does not exist'
  const md = rd.metadata
  const st = rd.status
  return [
    `uid ${md?.uid ?? '?'}`,
    `created ${String(md?.creationTimestamp ?? '?')}`,
    `owners ${JSON.stringify((md?.ownerReferences ?? []).map((r) => `${r.kind}/${r.name}`))}`,
    md?.deletionTimestamp ? `being deleted since ${String(md.deletionTimestamp)}` : '',
    st?.lastManualSync !== undefined ? `lastManualSync ${JSON.stringify(st.lastManualSync)}` : 'no lastManualSync',
    st?.latestMoverStatus ? `mover ${st.latestMoverStatus.result ?? '?'}` : 'no latestMoverStatus',
  ]
    .filter(Boolean)
    .join(', ')
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

/** `p`, or a rejection saying `what` once `ms` have passed (the timer keeps nothing alive). */
function withinMs<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const cap = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(what)), ms)
    timer.unref()
  })
  return Promise.race([p, cap]).finally(() => clearTimeout(timer))
}

const decoded = (s: k8s.V1Secret | undefined, key: string) => (s?.data?.[key] === undefined ? undefined : Buffer.from(s.data[key]!, 'base64').toString('utf8'))
const describeFailure = (f: KubeFailure) => `${f.code ? `HTTP ${f.code}${f.reason ? ` ${f.reason}` : ''}: ` : ''}${f.message}`

// ---------------------------------------------------------------------------------------------
// The backup-source reconciler's side: PVC labels and status, its Events, its ReplicationSources

/** Merge-patch a PVC's labels (null removes one). */
async function patchPvcLabels(ctx: Ctx, name: string, labels: Record<string, string | null>): Promise<KubeFailure | undefined> {
  try {
    await call((o) =>
      ctx.apis.core.patchNamespacedPersistentVolumeClaim({ namespace: ctx.ns, name, body: { metadata: { labels } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch, o)),
    )
    return undefined
  } catch (err) {
    return kubeFailure(err)
  }
}

/** The core/v1 Events about a PVC (of this uid, when given), oldest first. */
async function pvcEvents(ctx: Ctx, name: string, uid?: string): Promise<k8s.CoreV1Event[]> {
  const list = await call((o) => ctx.apis.core.listNamespacedEvent({ namespace: ctx.ns, fieldSelector: `involvedObject.name=${name}` }, o))
  const when = (e: k8s.CoreV1Event) => new Date(String(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata?.creationTimestamp ?? 0)).getTime() || 0
  return list.items
    .filter((e) => e.involvedObject?.kind === 'PersistentVolumeClaim' && (uid === undefined || !e.involvedObject.uid || e.involvedObject.uid === uid))
    .sort((a, b) => when(a) - when(b))
}

/** e.g. `Normal BackupAttached (smart-restore): backing up to ...`, one per Event, or "none". */
function describeEvents(events: k8s.CoreV1Event[]): string {
  if (events.length === 0) return 'none'
  return events.map((e) => `${e.type ?? '?'} ${e.reason ?? '?'} (${e.reportingComponent || e.source?.component || '?'}): ${e.message ?? ''}`).join(' | ')
}

/** The PVC as the reconciler decides on it: phase, tier label, smart-restore's annotations. */
function describePvc(pvc: k8s.V1PersistentVolumeClaim | undefined): string {
  if (!pvc) return 'the PVC does not exist'
  const annotations = Object.entries(pvc.metadata?.annotations ?? {})
    .filter(([k]) => k.startsWith(PREFIX))
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
  return [
    `phase ${pvc.status?.phase ?? '(none)'}`,
    `label backup=${pvc.metadata?.labels?.backup ?? '(none)'}`,
    pvc.metadata?.deletionTimestamp ? 'being deleted' : '',
    annotations.length ? `annotations ${annotations.join(', ')}` : 'no smart-restore annotations',
  ]
    .filter(Boolean)
    .join(', ')
}

/** e.g. `schedule "17 3 * * *", retain {"daily":14,...}, repository x-restic, tier label daily`. */
function describeSource(rs: ReplicationSource | undefined): string {
  if (!rs) return 'it does not exist'
  return [
    `sourcePVC ${rs.spec?.sourcePVC ?? '(none)'}`,
    `schedule ${JSON.stringify(rs.spec?.trigger?.schedule)}`,
    `retain ${JSON.stringify(rs.spec?.restic?.retain)}`,
    `repository ${rs.spec?.restic?.repository ?? '(none)'}`,
    `label ${PREFIX}tier=${rs.metadata?.labels?.[`${PREFIX}tier`] ?? '(none)'}`,
    rs.metadata?.deletionTimestamp ? `being deleted since ${String(rs.metadata.deletionTimestamp)}` : '',
  ]
    .filter(Boolean)
    .join(', ')
}

/** The ReplicationSources of a namespace whose spec.sourcePVC is `pvc`: what the deletion guard weighs. */
async function sourcesOf(ctx: Ctx, pvc: string): Promise<ReplicationSource[]> {
  const list = (await call((o) => ctx.apis.custom.listNamespacedCustomObject(rsRef(ctx), o))) as { items?: ReplicationSource[] }
  return (list.items ?? []).filter((rs) => rs.spec?.sourcePVC === pvc)
}

/**
 * Makes a PVC Bound (the reconciler attaches a backup source only to a Bound PVC), on any cluster:
 *
 *  - already Bound (a provisioner with Immediate binding got there first): nothing to do;
 *  - a bare apiserver (no controller-manager, no PersistentVolume): nothing binds it and nothing
 *    undoes a status written through the status subresource, so that is what is done;
 *  - a controller-manager whose PV controller finds no volume for it (WaitForFirstConsumer, no
 *    provisioner) puts such a phase back to Pending at once: then a PersistentVolume pre-bound to the
 *    PVC (claimRef with its uid, the PVC's class, capacity and access modes) is created and the PV
 *    controller binds the two for real. Nothing ever mounts it; cleanup deletes it after the PVCs.
 */
class Binder {
  private how: 'unknown' | 'by-cluster' | 'status' | 'volume' = 'unknown'
  private volumeAt = 0
  /** How the PVC got Bound, for the summary. */
  get method(): string {
    return { unknown: 'not yet', 'by-cluster': 'bound by the cluster', status: 'status written', volume: 'bound to a pre-bound PersistentVolume' }[this.how]
  }

  constructor(
    private readonly ctx: Ctx,
    private readonly name: string,
  ) {}

  /**
   * Resolves once the PVC is Bound (when only its status was written: still Bound 2 s later, so a
   * controller that resets it has been seen); to a message saying why not otherwise.
   */
  async settle(t: Test): Promise<string | undefined> {
    const { ctx, name } = this
    const what = `PVC ${ctx.ns}/${name}`
    let boundSince: number | undefined
    for (;;) {
      const pvc = await readPvc(ctx, name)
      if (!pvc) return `${what} does not exist`
      if (pvc.metadata?.deletionTimestamp) return `${what} is being deleted`
      if (pvc.status?.phase === 'Bound') {
        if (this.how === 'unknown') {
          this.how = 'by-cluster'
          t.comment(`${what} is already Bound (volume ${pvc.spec?.volumeName || '(none)'}): nothing to write`)
          return undefined
        }
        if (this.how !== 'status') return undefined
        boundSince ??= Date.now()
        if (Date.now() - boundSince >= 2_000) {
          ctx.observed.controllerManager ??= false
          return undefined
        }
      } else if (this.how === 'status') {
        // Written Bound, read back otherwise: a PV controller (controller-manager) is at work.
        const failed = await this.preBoundVolume(t, pvc)
        if (failed) return failed
      } else if (this.how === 'volume') {
        boundSince = undefined
        if (Date.now() - this.volumeAt > 30_000) {
          return `${what} is still ${pvc.status?.phase ?? 'without a phase'} 30 s after PersistentVolume ${this.volumeName} was created pre-bound to it (claimRef with its uid): does the cluster's PV controller (kube-controller-manager) run?`
        }
      } else {
        // unknown (or, oddly, no longer Bound): write it, as a PV controller would on binding.
        const failed = await this.writeBound(t, pvc)
        if (failed) return failed
      }
      await sleep(250)
    }
  }

  private get volumeName(): string {
    return `sr-e2e-${this.ctx.runId}-${this.name}`.slice(0, 253)
  }

  private async writeBound(t: Test, pvc: k8s.V1PersistentVolumeClaim): Promise<string | undefined> {
    const { ctx, name } = this
    try {
      await call((o) =>
        ctx.apis.core.patchNamespacedPersistentVolumeClaimStatus(
          { namespace: ctx.ns, name, body: { status: { phase: 'Bound' } } },
          k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch, o),
        ),
      )
    } catch (err) {
      return `writing status.phase=Bound of PVC ${ctx.ns}/${name} through the status subresource (merge patch) failed: ${describeFailure(kubeFailure(err))}`
    }
    this.how = 'status'
    t.comment(`PVC ${ctx.ns}/${name} was ${pvc.status?.phase ?? 'without a phase'}: status.phase=Bound written through the status subresource, as a PV controller does on binding (a bare apiserver has nothing that binds or resets it)`)
    return undefined
  }

  private async preBoundVolume(t: Test, pvc: k8s.V1PersistentVolumeClaim): Promise<string | undefined> {
    const { ctx, name } = this
    const pv = this.volumeName
    const body: k8s.V1PersistentVolume = {
      apiVersion: 'v1',
      kind: 'PersistentVolume',
      metadata: { name: pv, labels: { 'app.kubernetes.io/part-of': 'smart-restore-e2e', 'smart-restore.io/e2e-run': ctx.runId } },
      spec: {
        capacity: { storage: pvc.spec?.resources?.requests?.storage ?? '1Gi' },
        accessModes: pvc.spec?.accessModes ?? ['ReadWriteOnce'],
        volumeMode: pvc.spec?.volumeMode ?? 'Filesystem',
        // The PVC's class, as defaulted by the apiserver ('' when it has none): the PV controller matches it.
        storageClassName: pvc.spec?.storageClassName ?? '',
        persistentVolumeReclaimPolicy: 'Retain',
        claimRef: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace: ctx.ns, name, uid: pvc.metadata?.uid },
        hostPath: { path: `/tmp/smart-restore-e2e-${ctx.runId}` },
      },
    }
    // Registered before the create: a create that timed out on our side may still have happened.
    ctx.cleanup.add(PHASE.persistentVolumes, `PersistentVolume ${pv} (pre-bound to ${name})`, () => call((o) => ctx.apis.core.deletePersistentVolume({ name: pv }, o)))
    try {
      await call((o) => ctx.apis.core.createPersistentVolume({ body }, o))
    } catch (err) {
      return (
        `PVC ${ctx.ns}/${name}: status.phase=Bound was written, and something (a PV controller: kube-controller-manager) set it back to ${pvc.status?.phase ?? 'nothing'}; ` +
        `binding it for real to a pre-bound PersistentVolume ${pv} failed: ${describeFailure(kubeFailure(err))} (the user of KUBECONFIG must be able to create PersistentVolumes)`
      )
    }
    this.how = 'volume'
    this.volumeAt = Date.now()
    ctx.observed.controllerManager = true
    t.comment(
      `PVC ${ctx.ns}/${name}: status.phase=Bound was reset to ${pvc.status?.phase ?? 'nothing'} (a PV controller runs here); ` +
        `created PersistentVolume ${pv} pre-bound to it (class ${JSON.stringify(body.spec!.storageClassName)}, hostPath, never mounted) for the PV controller to bind`,
    )
    return undefined
  }
}

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
  const labels = { 'app.kubernetes.io/part-of': 'smart-restore-e2e', 'smart-restore.io/e2e-run': runId }

  // -- what a restore needs to be admitted (src/decide/preflight.ts), before the service starts: its
  // preflight watches then list them at once. A CRD the cluster has is used as it is, never touched.
  const snapshotCrd = await crdState(apis, SNAPSHOT_CLASS_API)
  if (snapshotCrd.state === 'version-not-served') {
    throw new E2EError(
      `the cluster's CRD ${SNAPSHOT_CLASS_API.crd} does not serve ${SNAPSHOT_CLASS_API.version} (it serves ${snapshotCrd.served.join(', ') || 'nothing'}), which smart-restore's preflight watches: upgrade the external-snapshotter CRDs (v4+)`,
    )
  }
  if (snapshotCrd.state === 'absent') {
    const made = await installMinimalCrd(apis, SNAPSHOT_CLASS_API, labels, () =>
      cleanup.add(PHASE.crds, `CRD ${SNAPSHOT_CLASS_API.crd} (minimal, installed by this run)`, () => call((o) => apis.ext.deleteCustomResourceDefinition({ name: SNAPSHOT_CLASS_API.crd }, o))),
    )
    t.comment(
      made === 'created'
        ? `CRD ${SNAPSHOT_CLASS_API.crd}: not in the cluster; a minimal one (${SNAPSHOT_CLASS_API.group}/${SNAPSHOT_CLASS_API.version}, cluster-scoped, any fields) installed for this run`
        : `CRD ${SNAPSHOT_CLASS_API.crd}: appeared while this run was installing it (another run?); used, not deleted`,
    )
  } else t.comment(`CRD ${SNAPSHOT_CLASS_API.crd}: already installed (used as it is)`)
  // The VolumePopulator CRD, when missing, is created by the preflight scenario: first it shows the
  // refusal without it.
  const populator = await crdState(apis, POPULATOR_API)
  if (populator.state === 'version-not-served') {
    throw new E2EError(
      `the cluster's CRD ${POPULATOR_API.crd} does not serve ${POPULATOR_API.version} (it serves ${populator.served.join(', ') || 'nothing'}), the version smart-restore's preflight (and VolSync) look for`,
    )
  }
  const populatorCrd = populator.state === 'served' ? 'cluster' : 'absent'
  t.comment(
    populatorCrd === 'cluster'
      ? `CRD ${POPULATOR_API.crd}: already installed (used as it is)`
      : `CRD ${POPULATOR_API.crd}: not installed; the preflight scenario shows a restore refused without it, then installs a minimal one for this run`,
  )

  // A StorageClass whose provisioner nobody runs, WaitForFirstConsumer: the PV controller then
  // never tries to provision (Immediate would have it wait on the external provisioner forever) and
  // puts a status.phase=Bound written by hand back to Pending, so Binder binds each PVC for real to a
  // PersistentVolume pre-bound to it, of this class (PV controller: a pre-bound volume matches even
  // while binding waits for a consumer). Not the cluster default: other PVCs are never affected.
  const storageClass = `smart-restore-e2e-${runId}`
  cleanup.add(PHASE.restorePrerequisites, `StorageClass ${storageClass}`, () => call((o) => apis.storage.deleteStorageClass({ name: storageClass }, o)))
  await call((o) =>
    apis.storage.createStorageClass(
      { body: { apiVersion: 'storage.k8s.io/v1', kind: 'StorageClass', metadata: { name: storageClass, labels }, provisioner: E2E_PROVISIONER, volumeBindingMode: 'WaitForFirstConsumer' } },
      o,
    ),
  ).catch((err: unknown) => {
    throw new E2EError(`cannot create StorageClass ${storageClass} (provisioner ${E2E_PROVISIONER}): ${describeFailure(kubeFailure(err))} (the user of KUBECONFIG must be able to create StorageClasses)`)
  })
  // The snapshot controller takes its driver's DEFAULT class when an RD names none: so does the preflight.
  const snapshotClass = `smart-restore-e2e-${runId}`
  const snapshotClassRef = { group: SNAPSHOT_CLASS_API.group, version: SNAPSHOT_CLASS_API.version, plural: SNAPSHOT_CLASS_API.plural }
  cleanup.add(PHASE.restorePrerequisites, `VolumeSnapshotClass ${snapshotClass}`, () => call((o) => apis.custom.deleteClusterCustomObject({ ...snapshotClassRef, name: snapshotClass }, o)))
  await call((o) =>
    apis.custom.createClusterCustomObject(
      {
        ...snapshotClassRef,
        body: {
          apiVersion: `${SNAPSHOT_CLASS_API.group}/${SNAPSHOT_CLASS_API.version}`,
          kind: SNAPSHOT_CLASS_API.kind,
          metadata: { name: snapshotClass, labels, annotations: { [DEFAULT_SNAPSHOT_CLASS_ANNOTATION]: 'true' } },
          // Both required by the external-snapshotter's own CRD, when the cluster has that one.
          driver: E2E_PROVISIONER,
          deletionPolicy: 'Delete',
        },
      },
      o,
    ),
  ).catch((err: unknown) => {
    throw new E2EError(`cannot create VolumeSnapshotClass ${snapshotClass} (driver ${E2E_PROVISIONER}, default): ${describeFailure(kubeFailure(err))}`)
  })
  t.comment(`StorageClass ${storageClass} (provisioner ${E2E_PROVISIONER}, WaitForFirstConsumer) and default VolumeSnapshotClass ${snapshotClass} (driver ${E2E_PROVISIONER}) created; every PVC of the suite names the class`)

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
  // The repositories are opened with the source Secret's RESTIC_PASSWORD, as VolSync's movers would.
  const resticPassword = `e2e-${runId}-not-a-real-password`
  const repositories: Record<string, Parameters<typeof seedResticRepository>[3]> = {
    [PVC.withBackup]: [{ time: hoursAgo(5) }],
    [PVC.dryRun]: [{ time: hoursAgo(5) }],
    [PVC.asOf]: [{ time: hoursAgo(30) }, { time: hoursAgo(6) }],
    [PVC.asOfTooOld]: [{ time: hoursAgo(30) }, { time: hoursAgo(6) }],
    [PVC.previousTooFar]: [{ time: hoursAgo(5) }],
    [PVC.foreignPaths]: [{ time: hoursAgo(5), paths: ['/srv/other-tool'], hostname: 'nas' }],
    [PVC.populatorCheck]: [{ time: hoursAgo(5) }],
    [PVC.restoreEmpty]: [{ time: hoursAgo(5) }],
    // Recent, so `status` finds it ok on the hourly tier (at most 2 h old).
    [PVC.restoreDone]: [{ time: hoursAgo(0.3) }],
  }
  const snapshotIds: Record<string, string[]> = {}
  for (const [pvc, snapshots] of Object.entries(repositories)) {
    const seed = await seedResticRepository(s3, `${ns}/${pvc}`, resticPassword, snapshots)
    seeded.push(...seed.keys)
    snapshotIds[pvc] = seed.snapshotIds
  }
  t.comment(`S3: ${s3.local ? 'local s3rver' : 'external'} ${s3.endpoint || '(AWS)'} bucket ${s3.bucket}; seeded restic repositories ${ns}/{${Object.keys(repositories).join(',')}}`)

  // -- namespaces (not waited for on deletion)
  for (const name of [ns, sysNs]) {
    // Registered before the create: a create that timed out on our side may still have happened
    // (the names are unique to this run, so deleting them can only hit our own objects).
    cleanup.add(PHASE.namespaces, `namespace ${name} (deletion requested, not awaited)`, () => call((o) => apis.core.deleteNamespace({ name }, o)))
    await call((o) => apis.core.createNamespace({ body: { metadata: { name, labels } } }, o)).catch((err: unknown) => {
      throw new E2EError(`cannot create namespace ${name}: ${describeFailure(kubeFailure(err))}`)
    })
  }
  const names = Object.values(PVC)
  // The deletion guard scenario's, and the reconciler's `<pvc>-backup` of every PVC of the suite
  // (no garbage collector on a bare apiserver: their ownerReferences to the PVCs delete nothing).
  cleanup.add(PHASE.replicationSources, `ReplicationSources in ${ns}`, () =>
    deleteEach([...Object.values(RS), ...names.map(backupSourceOf)], (name, o) =>
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
  // `<pvc>-restic`: the webhook's (restore) and the reconciler's (backup) repository Secret share the name.
  cleanup.add(PHASE.secrets, `Secrets in ${ns}`, () =>
    deleteEach(
      names.map(repositorySecretOf),
      (name, o) => apis.core.deleteNamespacedSecret({ namespace: ns, name }, o),
    ),
  )
  cleanup.add(PHASE.secrets, `Secret ${sysNs}/${SOURCE_SECRET}`, () => call((o) => apis.core.deleteNamespacedSecret({ namespace: sysNs, name: SOURCE_SECRET }, o)))

  // -- the source Secret the service copies into each PVC's repository Secret
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
    server: { ...defaultConfig.server, host: certHosts.some((h) => h.includes(':')) ? '::' : '0.0.0.0', port: env.webhookPort, devCertHosts: certHosts, metricsPort: 0 },
    store: {
      ...defaultConfig.store,
      type: 's3',
      s3: { endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, forcePathStyle: s3.forcePathStyle, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    },
    restore: { ...defaultConfig.restore, sourceSecret: { namespace: sysNs, name: SOURCE_SECRET } },
    kube: { ...defaultConfig.kube, mode: 'cluster' },
    // The orphan scenario waits for the sweep: grace + interval, not 10 + 1 min.
    reconciler: { ...defaultConfig.reconciler, orphanGraceMs: ORPHAN_GRACE_MS },
    // Only the leader reconciles. A Lease of this run, in its own namespace: the default
    // smart-restore/smart-restore may be a deployed copy's (this service would then never lead) or
    // sit in a namespace the cluster does not have.
    leaderElection: { ...defaultConfig.leaderElection, namespace: sysNs, leaseName: `smart-restore-e2e-${runId}` },
    logLevel: env.logLevel,
  })
  // Logs go to stderr: stdout is the TAP stream.
  const logger = createLogger(config.logLevel, pino.destination({ dest: 2, sync: true }))
  // Named, not hostname_<random>: the leader election scenario finds it in the Lease and the metric.
  const leaderIdentity = `sr-e2e-${runId}-main`
  // rediscoverMs: the VolumePopulator CRD the preflight scenario installs is noticed within a second.
  const service = await startService(config, { logger, leaderIdentity, watch: { rediscoverMs: REDISCOVER_MS } }).catch((err: unknown) => {
    throw new E2EError(`cannot start the smart-restore service on port ${env.webhookPort || '(any)'}: ${(err as Error).message}`)
  })
  cleanup.add(PHASE.service, 'smart-restore service (webhooks and backup-source reconciler stopped)', () =>
    withinMs(15_000, service.close(), 'did not close within 15 s; cleanup goes on'),
  )
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

  // -- the restore preflight's view (its own watches; not part of readiness): everything a restore
  // needs, but the VolumePopulator CRD when the preflight scenario is to install it
  const otherGap = /the ReplicationDestination API|the VolumeSnapshot API|VolumeSnapshotClass .*restore\.volumeSnapshotClassName|StorageClass .*restore\.storageClassName/
  const expected = (check: string) =>
    populatorCrd === 'cluster' ? check === 'present' : check.startsWith('missing:') && check.includes(POPULATOR_API.crd) && !otherGap.test(check)
  const prerequisites = await waitForRestorePrerequisites(service.url, service.caCert, expected)
  if (!prerequisites.met) {
    throw new E2EError(
      `the service's restore prerequisites are not as set up after ${seconds(prerequisites.ms)} s: /readyz checks.restorePrerequisites is ${JSON.stringify(prerequisites.value.check)}, ` +
        `expected ${populatorCrd === 'cluster' ? '"present"' : `"missing: the CRD ${POPULATOR_API.crd} ..." and nothing else`}. ` +
        `Its preflight lists and watches storageclasses, volumesnapshotclasses.${SNAPSHOT_CLASS_API.group} and volumepopulators.${POPULATOR_API.group} (can the user of KUBECONFIG?), and finds APIs by discovery every ${REDISCOVER_MS} ms`,
    )
  }
  t.comment(`restore prerequisites as the service sees them after ${seconds(prerequisites.ms)} s: ${prerequisites.value.check}`)
  // Who runs the reconciler (leader election): said here, not required — the scenarios that need the
  // reconciler say what it did not do.
  const leader = await pollUntil(
    () => readReadyz(service.url, service.caCert!).catch((): Readyz => ({ code: 0 })),
    (r) => r.checks?.leader === undefined || r.checks.leader.startsWith('this replica'),
    15_000,
  )
  if (leader.value.checks?.leader !== undefined) {
    t.comment(`${leader.met ? '' : 'WARNING: '}leader (runs the reconciler and orphan sweep): ${leader.value.checks.leader}${leader.met ? '' : ` after ${seconds(leader.ms)} s: the reconciler scenarios will fail`}`)
  }

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
  const probe = await waitForWebhook(apis, ns, PREFIX, storageClass)
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
    spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } }, storageClassName: storageClass },
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

  return { env, cleanup, apis, runId, ns, sysNs, s3, resticPassword, snapshotIds, service, config, leaderIdentity, webhookUrl, validateUrl, storageClass, snapshotClass, populatorCrd, labels, observed: {} }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

async function scenarios(t: Test, ctx: Ctx, summary: string[]): Promise<void> {
  const { ns, s3 } = ctx
  const done = (t: Test, line: string) => summary.push(`${t.passing() ? 'ok  ' : 'FAIL'} ${line}`)
  const caCert = ctx.service.caCert!

  /**
   * The repository Secret of a restore is owned by its ReplicationDestination (the webhook creates
   * the RD first, then the Secret with the RD's uid: the garbage collector takes the Secret with it).
   */
  const checkSecretOwnedByRd = (t: Test, name: string, rd: ReplicationDestination | undefined, secret: k8s.V1Secret | undefined) => {
    const rdName = `${name}-restore`
    const secretName = repositorySecretOf(name)
    t.strictSame(
      ownersOf(secret?.metadata?.ownerReferences),
      [rdOwnerRef(rdName, rd?.metadata?.uid)],
      `Secret ${secretName} is owned by ReplicationDestination ${rdName} by its uid ${rd?.metadata?.uid ?? '(no RD)'} (controller false, blockOwnerDeletion false): the RD was created first`,
    )
  }

  // First: while the cluster lacks the VolumePopulator CRD (when this run is the one to install it),
  // every restore is refused; the scenarios after it need it.
  await t.test('restore preflight: refused while VolSync\'s volume populator cannot run (no VolumePopulator CRD), admitted with it', async (t) => {
    const name = PVC.populatorCheck
    const pvcName = `PVC ${ns}/${name}`
    const rdName = `${name}-restore`
    const secretName = repositorySecretOf(name)
    let refusedLine = ''
    if (ctx.populatorCrd === 'cluster') {
      t.comment(
        `the cluster already has the CRD ${POPULATOR_API.crd} (installed with VolSync's prerequisites or another populator): it is not the suite's to delete, ` +
          `so the refusal without it is not shown here (test/decide and test/flow cover it); only the admitted side is`,
      )
    } else {
      // -- without the CRD: refused (422, naming it), nothing written, readiness unaffected
      const before = await readReadyz(ctx.service.url, caCert).catch((err: unknown): Readyz => ({ code: 0, reason: (err as Error).message }))
      const check = before.checks?.restorePrerequisites ?? '(none)'
      t.equal(before.code, 200, `/readyz stays 200 without the CRD (restore prerequisites are reported, not a reason to be unready)${before.reason ? `: ${before.reason}` : ''}`)
      t.ok(check.startsWith('missing') && check.includes(POPULATOR_API.crd), `/readyz checks.restorePrerequisites names the missing CRD: ${JSON.stringify(check)}`)
      const refused = await createPvc(ctx, name, 'hourly')
      if (refused.ok) {
        t.fail(`${pvcName} (snapshot in S3) was created although the CRD ${POPULATOR_API.crd} does not exist (warnings: ${refused.warnings}): VolSync would never start its volume populator and the PVC would stay Pending forever`)
      } else {
        const f = refused.failure
        t.equal(f.code, 422, `refused with HTTP 422, not retryable (${describeFailure(f)})${f.code === 503 ? '; a 503 means the preflight\'s watches had not listed yet' : ''}`)
        t.match(f.message, `admission webhook "${WEBHOOK_NAME}" denied the request`, 'denied by the mutating webhook')
        t.match(f.message, 'its restore cannot be populated: missing', 'the message says the restore cannot be populated and what is missing')
        t.match(f.message, POPULATOR_API.crd, `the message names the CRD ${POPULATOR_API.crd}`)
      }
      t.equal(await readPvc(ctx, name), undefined, `no ${pvcName}`)
      t.equal(await readRd(ctx, rdName), undefined, `no ReplicationDestination ${rdName} (the preflight refuses before anything is written)`)
      t.equal(await readSecret(ctx, secretName), undefined, `no Secret ${secretName}`)

      // -- install it; the service notices by discovery (every REDISCOVER_MS) and lists it
      try {
        const made = await installMinimalCrd(ctx.apis, POPULATOR_API, ctx.labels, () =>
          ctx.cleanup.add(PHASE.crds, `CRD ${POPULATOR_API.crd} (minimal, installed by this run)`, () => call((o) => ctx.apis.ext.deleteCustomResourceDefinition({ name: POPULATOR_API.crd }, o))),
        )
        t.comment(
          made === 'created'
            ? `CRD ${POPULATOR_API.crd} installed (minimal: ${POPULATOR_API.group}/${POPULATOR_API.version}, cluster-scoped, any fields) and Established`
            : `CRD ${POPULATOR_API.crd} appeared meanwhile (another run?): used, not deleted`,
        )
      } catch (err) {
        t.fail(`${(err as Error).message}; every restore of the suite will be refused without it`)
        return done(t, `preflight: CRD ${POPULATOR_API.crd} could not be installed`)
      }
      const present = await waitForRestorePrerequisites(ctx.service.url, caCert, (c) => c === 'present')
      if (!present.met) {
        t.fail(
          `/readyz checks.restorePrerequisites is still ${JSON.stringify(present.value.check)} ${seconds(present.ms)} s after the CRD ${POPULATOR_API.crd} was Established ` +
            `(the service rediscovers APIs every ${REDISCOVER_MS} ms, then lists and watches volumepopulators: can the user of KUBECONFIG?)`,
        )
        return done(t, 'preflight: the service never saw the VolumePopulator CRD')
      }
      t.comment(`/readyz checks.restorePrerequisites "present" ${seconds(present.ms)} s after the CRD was Established (${present.attempts} reads)`)
      refusedLine = `without CRD ${POPULATOR_API.crd} → 422 naming it, nothing created, /readyz 200 "missing: …"; CRD installed → "present" after ${seconds(present.ms)} s → `
    }

    // -- with the CRD: admitted as a restore
    const made = await createPvc(ctx, name, 'hourly')
    if (!made.ok) {
      t.fail(`creating ${pvcName} (label backup=hourly, snapshot in S3) with the CRD ${POPULATOR_API.crd} in place failed: ${describeFailure(made.failure)}`)
      return done(t, `preflight: ${refusedLine}${name} still refused`)
    }
    const newest = ctx.snapshotIds[name]![0]!.slice(0, 8)
    t.match(made.warnings, `smart-restore: restoring snapshot ${newest} of /data`, `admitted as a restore: the warning names snapshot ${newest}`)
    const pvc = await readPvc(ctx, name)
    t.equal(pvc?.spec?.dataSourceRef?.name, rdName, `${pvcName} spec.dataSourceRef names ReplicationDestination ${rdName}`)
    const rd = await readRd(ctx, rdName)
    t.ok(rd, `ReplicationDestination ${ns}/${rdName} exists`)
    checkSecretOwnedByRd(t, name, rd, await readSecret(ctx, secretName))
    done(t, `preflight: ${refusedLine}PVC ${name} admitted (RD ${rdName}, Secret ${secretName} owned by it)`)
  })

  await t.test('restore: a PVC with a backup gets a ReplicationDestination as its data source', async (t) => {
    const name = PVC.withBackup
    const made = await createPvc(ctx, name, 'hourly')
    if (!made.ok) {
      t.fail(`creating PVC ${ns}/${name} (label backup=hourly, snapshot in S3) failed: ${describeFailure(made.failure)}`)
      return done(t, `restore: ${name}`)
    }
    const newest = ctx.snapshotIds[name]![0]!.slice(0, 8)
    t.match(
      made.warnings,
      new RegExp(`smart-restore: restoring snapshot ${newest} of /data taken \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ \\(5h ago\\)`),
      `the apiserver passed on the webhook's warning naming the snapshot VolSync will restore (${newest}, 5h old)`,
    )
    t.match(made.warnings, `smart-restore: from s3://${s3.bucket}/${ns}/${name}`, 'and the second one, saying where from')

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
    t.match(pvc?.metadata?.annotations?.[`${PREFIX}restore-snapshot`], new RegExp(`^${newest} of /data taken \\S+Z$`), `annotation ${PREFIX}restore-snapshot names the snapshot`)

    const rd = await readRd(ctx, `${name}-restore`)
    t.ok(rd, `ReplicationDestination ${ns}/${name}-restore exists`)
    t.equal(rd?.spec?.restic?.copyMethod, 'Snapshot', 'RD spec.restic.copyMethod is Snapshot (what the volume populator needs)')
    t.equal(rd?.spec?.restic?.repository, `${name}-restic`, 'RD spec.restic.repository names the per-PVC Secret')
    t.equal(rd?.spec?.restic?.capacity, '1Gi', 'RD spec.restic.capacity is the PVC\'s request')
    t.strictSame(rd?.spec?.restic?.accessModes, ['ReadWriteOnce'], 'RD spec.restic.accessModes are the PVC\'s')
    t.equal(rd?.spec?.restic?.storageClassName, ctx.storageClass, `RD spec.restic.storageClassName is the PVC's class ${ctx.storageClass}`)
    t.ok(rd?.spec?.trigger?.manual, 'RD has a manual trigger (restores once)')
    t.equal(rd?.metadata?.labels?.['app.kubernetes.io/managed-by'], 'smart-restore', 'RD is labelled managed-by smart-restore')

    const secret = await readSecret(ctx, `${name}-restic`)
    t.ok(secret, `Secret ${ns}/${name}-restic exists`)
    t.equal(decoded(secret, 'RESTIC_REPOSITORY'), expectedResticRepository(s3, `${ns}/${name}`), 'Secret RESTIC_REPOSITORY is the PVC\'s repository')
    t.ok(decoded(secret, 'RESTIC_PASSWORD') === ctx.resticPassword, 'Secret RESTIC_PASSWORD is copied from the source Secret')
    t.ok(decoded(secret, 'AWS_ACCESS_KEY_ID') === s3.accessKeyId && decoded(secret, 'AWS_SECRET_ACCESS_KEY') === s3.secretAccessKey, 'Secret AWS credentials are copied from the source Secret')
    checkSecretOwnedByRd(t, name, rd, secret)
    done(t, `restore: PVC ${name} → dataSourceRef ReplicationDestination ${name}-restore (Snapshot, 1Gi), Secret ${name}-restic (RESTIC_REPOSITORY, password) owned by the RD`)
  })

  await t.test('point in time: restore-as-of picks the snapshot VolSync will restore, or the PVC is refused', async (t) => {
    // Between the two snapshots (30 h and 6 h old): the older one is restored, and named.
    const older = ctx.snapshotIds[PVC.asOf]![0]!.slice(0, 8)
    const asOf = hoursAgo(12)
    const made = await createPvc(ctx, PVC.asOf, 'hourly', false, { [`${PREFIX}restore-as-of`]: asOf })
    if (!made.ok) t.fail(`creating PVC ${ns}/${PVC.asOf} with restore-as-of between its two snapshots failed: ${describeFailure(made.failure)}`)
    else {
      t.match(made.warnings, new RegExp(`smart-restore: restoring snapshot ${older} of /data taken \\S+Z \\(30h ago\\)`), `restore-as-of 12h ago: the warning names the 30h-old snapshot ${older}`)
      t.match(
        made.warnings,
        new RegExp(`smart-restore: from s3://${escapeRegExp(`${s3.bucket}/${ns}/${PVC.asOf}`)} \\(as of ${escapeRegExp(asOf)}\\)`),
        'and the second warning says where from, as of when',
      )
      const rd = await readRd(ctx, `${PVC.asOf}-restore`)
      t.equal(rd?.spec?.restic?.restoreAsOf, asOf, 'the RD carries restoreAsOf for the mover')
    }

    const refused = async (name: string, annotations: Record<string, string>, expect: RegExp, what: string) => {
      const r = await createPvc(ctx, name, 'hourly', false, annotations)
      if (r.ok) {
        t.fail(`${what}: PVC ${ns}/${name} was created (warnings: ${r.warnings}); VolSync would have restored nothing into it`)
        return
      }
      t.equal(r.failure.code, 422, `${what}: refused with 422 (${describeFailure(r.failure)})`)
      t.match(r.failure.message, expect, `${what}: the message says why and what to do`)
      t.equal(await readPvc(ctx, name), undefined, `${what}: no PVC ${name}`)
      t.equal(await readRd(ctx, `${name}-restore`), undefined, `${what}: no ReplicationDestination ${name}-restore`)
    }
    await refused(PVC.asOfTooOld, { [`${PREFIX}restore-as-of`]: '2020-01-01T00:00:00Z' }, /no snapshot of \/data .* at or before .*restore-as-of=2020-01-01T00:00:00Z: the oldest is [0-9a-f]{8} of \S+Z, the newest/, 'restore-as-of before the oldest snapshot')
    await refused(PVC.previousTooFar, { [`${PREFIX}restore-previous`]: '5' }, /restore-previous=5 skips past the oldest snapshot: .* has 1 snapshot\(s\) of \/data .*use 0 to 0/, 'restore-previous past the oldest snapshot')
    await refused(PVC.foreignPaths, {}, /holds 1 snapshot\(s\), but none of \/data.*Paths found: \/srv\/other-tool/, 'a repository of another path only')
    done(t, `point in time: as-of → older snapshot ${older}; as-of too old, previous 5 of 1, foreign paths → 422, nothing created`)
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
    // The webhook makes no Secret for a fresh PVC. The backup-source reconciler makes `<pvc>-restic`
    // once the PVC is Bound, which a cluster with a provisioner (Immediate binding) may do at once.
    const secret = await readSecret(ctx, repositorySecretOf(name))
    if (secret === undefined) t.pass(`no Secret ${repositorySecretOf(name)}`)
    else {
      const [now, source] = await Promise.all([readPvc(ctx, name), readRs(ctx, backupSourceOf(name))])
      t.ok(
        now?.status?.phase === 'Bound' && source !== undefined,
        `Secret ${repositorySecretOf(name)} exists: allowed only as the backup-source reconciler's, with ${backupSourceOf(name)}, once the PVC is Bound (PVC: ${describePvc(now)}; ${backupSourceOf(name)}: ${describeSource(source)})`,
      )
    }
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

  // Before the deletion guard scenario and before S3 is stopped: the reconciler asks the store
  // whether a fresh PVC's repository is empty before it attaches a backup source to it.
  await t.test('backup source follows the tier label: attached once Bound, retiered, detached', async (t) => {
    const name = PVC.backedUp
    const rsName = backupSourceOf(name)
    const secretName = repositorySecretOf(name)
    const pvcName = `PVC ${ns}/${name}`
    const sourceName = `ReplicationSource ${ns}/${rsName}`
    const made = await createPvc(ctx, name, 'hourly')
    if (!made.ok) {
      t.fail(`creating ${pvcName} (label backup=hourly, nothing in S3) failed: ${describeFailure(made.failure)}`)
      return done(t, `backup source: ${name} not created`)
    }
    const created = await readPvc(ctx, name)
    const uid = created?.metadata?.uid
    t.equal(created?.metadata?.annotations?.[`${PREFIX}decision`], 'fresh', `${pvcName} was admitted fresh (${PREFIX}decision=fresh): the reconciler must find its repository empty before attaching`)
    if (!uid) {
      t.fail(`${pvcName} could not be read back after its create`)
      return done(t, `backup source: ${name} not readable`)
    }
    if (created.status?.phase !== 'Bound') {
      // Not before Bound: a source on an unbound PVC would back up nothing. (The source first, then
      // the phase: Pending then means Pending when the source was read too.)
      await sleep(1_000)
      const early = await readRs(ctx, rsName)
      const phase = (await readPvc(ctx, name))?.status?.phase
      if (phase === 'Bound') t.comment(`${pvcName} was bound by the cluster within 1 s of its create: no "nothing before Bound" check`)
      else t.equal(early, undefined, `no ${rsName} while ${pvcName} is ${phase ?? 'without a phase'} (1 s after its create)${early ? `: ${describeSource(early)}` : ''}`)
    }

    // -- Bound → attached
    const binder = new Binder(ctx, name)
    const unbound = await binder.settle(t)
    if (unbound) {
      t.fail(`the scenario needs ${pvcName} Bound: ${unbound}`)
      return done(t, `backup source: ${name} never Bound`)
    }
    const attached = await pollUntil(() => readRs(ctx, rsName), (rs) => rs !== undefined, RECONCILE_MS)
    if (!attached.met) {
      const [pvc, events] = await Promise.all([readPvc(ctx, name), pvcEvents(ctx, name, uid)])
      t.fail(
        `${sourceName} did not appear within ${seconds(attached.ms)} s of ${pvcName} being Bound (${binder.method}). ` +
          `The PVC now: ${describePvc(pvc)}. Its Events: ${describeEvents(events)}. ` +
          `(The service starts its backup-source reconciler in cluster mode when reconciler.enabled is true, the default; it watches PVCs cluster-wide.)`,
      )
      return done(t, `backup source: no ${rsName} once ${name} was Bound`)
    }
    t.comment(`${sourceName} appeared ${seconds(attached.ms)} s after ${pvcName} was Bound (${binder.method}): ${describeSource(attached.value)}`)
    const checkSource = (rs: ReplicationSource | undefined, tier: keyof typeof TIER_EXPECTATIONS) => {
      const want = TIER_EXPECTATIONS[tier]
      const schedule = rs?.spec?.trigger?.schedule
      t.equal(rs?.spec?.sourcePVC, name, `${tier}: ${rsName} spec.sourcePVC is ${name}`)
      t.match(schedule, want.schedule, `${tier}: trigger.schedule ${JSON.stringify(schedule)} is ${want.shape} (the tier's H fields spread for this PVC)`)
      t.strictSame(rs?.spec?.restic?.retain, want.retain, `${tier}: spec.restic.retain is the ${tier} tier's ${JSON.stringify(want.retain)}`)
      t.equal(rs?.spec?.restic?.repository, secretName, `${tier}: spec.restic.repository is the repository Secret ${secretName}`)
      t.equal(rs?.metadata?.labels?.['app.kubernetes.io/managed-by'], 'smart-restore', `${tier}: labelled app.kubernetes.io/managed-by=smart-restore`)
      const owners = rs?.metadata?.ownerReferences ?? []
      t.ok(
        owners.some((r) => r.kind === 'PersistentVolumeClaim' && r.name === name && r.uid === uid),
        `${tier}: ownerReferences name ${pvcName} by its uid ${uid} (got ${JSON.stringify(owners.map((r) => `${r.kind}/${r.name}/${r.uid}`))})`,
      )
    }
    checkSource(attached.value, 'hourly')
    const secret = await readSecret(ctx, secretName)
    t.ok(secret, `Secret ${ns}/${secretName} exists (the source's repository)`)
    if (secret) {
      t.equal(decoded(secret, 'RESTIC_REPOSITORY'), expectedResticRepository(s3, `${ns}/${name}`), `Secret ${secretName} RESTIC_REPOSITORY is the PVC's own repository`)
      t.ok(decoded(secret, 'RESTIC_PASSWORD') === ctx.resticPassword, `Secret ${secretName} RESTIC_PASSWORD is copied from the source Secret`)
    }

    // -- backup=daily → the same source, on the daily tier
    const stillBound = await binder.settle(t)
    if (stillBound) {
      t.fail(`the tier change needs ${pvcName} Bound: ${stillBound}`)
      return done(t, `backup source: ${name} no longer Bound`)
    }
    const relabel = await patchPvcLabels(ctx, name, { backup: 'daily' })
    if (relabel) {
      t.fail(`relabelling ${pvcName} backup=daily (merge patch) failed: ${describeFailure(relabel)}`)
      return done(t, `backup source: ${name} not relabelled`)
    }
    const daily = TIER_EXPECTATIONS.daily
    const retiered = await pollUntil(
      () => readRs(ctx, rsName),
      // Order-free: the apiserver serves custom resources with their keys sorted, not as written.
      (rs) => daily.schedule.test(rs?.spec?.trigger?.schedule ?? '') && isDeepStrictEqual(rs?.spec?.restic?.retain, daily.retain),
      RECONCILE_MS,
    )
    if (!retiered.met) {
      const pvc = await readPvc(ctx, name)
      t.fail(`${sourceName} was not moved to the daily tier within ${seconds(retiered.ms)} s of the label backup=daily: ${describeSource(retiered.value)}. The PVC: ${describePvc(pvc)}`)
      return done(t, `backup source: ${rsName} not retiered`)
    }
    t.comment(`label backup=daily: ${sourceName} updated after ${seconds(retiered.ms)} s: ${describeSource(retiered.value)}`)
    checkSource(retiered.value, 'daily')
    t.equal(retiered.value?.metadata?.uid, attached.value?.metadata?.uid, `daily: the same ${rsName} was updated (same uid), not re-created`)

    // -- label removed → the source goes (the backups in S3 stay)
    const unlabel = await patchPvcLabels(ctx, name, { backup: null })
    if (unlabel) {
      t.fail(`removing the label backup from ${pvcName} (merge patch, null) failed: ${describeFailure(unlabel)}`)
      return done(t, `backup source: ${name} label not removed`)
    }
    const detached = await pollUntil(() => readRs(ctx, rsName), (rs) => rs === undefined || Boolean(rs.metadata?.deletionTimestamp), RECONCILE_MS)
    if (!detached.met) {
      const pvc = await readPvc(ctx, name)
      t.fail(`${sourceName} still exists ${seconds(detached.ms)} s after the label backup was removed: ${describeSource(detached.value)}. The PVC: ${describePvc(pvc)}`)
    } else {
      t.pass(`label removed: ${sourceName} ${detached.value ? `marked for deletion (finalizers ${JSON.stringify(detached.value.metadata?.finalizers ?? [])})` : 'deleted'} after ${seconds(detached.ms)} s`)
    }
    const detachedPvc = await readPvc(ctx, name)
    t.ok(detachedPvc && !detachedPvc.metadata?.deletionTimestamp && detachedPvc.metadata?.labels?.backup === undefined, `${pvcName} itself is untouched, without its label (${describePvc(detachedPvc)})`)

    // -- the story, as `kubectl describe pvc` tells it (Events are sent after the writes, best effort: a moment later)
    const reasons = ['BackupAttached', 'TierChanged', 'BackupDetached']
    const told = await pollUntil(() => pvcEvents(ctx, name, uid), (events) => reasons.every((r) => events.some((e) => e.reason === r)), 10_000)
    const seen = describeEvents(told.value)
    for (const reason of reasons) {
      const event = told.value.find((e) => e.reason === reason)
      t.ok(event, event ? `Event ${reason} on ${pvcName}: ${event.message}` : `Event ${reason} on ${pvcName} (listed with fieldSelector involvedObject.name=${name} for ${seconds(told.ms)} s; Events seen: ${seen})`)
    }
    t.comment(`Events on ${pvcName}: ${seen}`)
    const updated = told.value.filter((e) => e.reason === 'BackupUpdated')
    if (updated.length) {
      t.comment(`note: ${updated.length} BackupUpdated Event(s), although no tier's configuration changed during the run (a difference the reconciler sees between its cached and its desired ReplicationSource?)`)
    }
    done(t, `backup source: PVC ${name} fresh → Bound (${binder.method}) → ${rsName} hourly + Secret ${secretName}; backup=daily → daily; label removed → deleted; Events ${reasons.join(', ')}`)
  })

  /**
   * A PVC admitted as a restore, whose RD then carries `status` as VolSync writes it once its mover
   * finished (nothing runs VolSync here), and which is then Bound (Binder). What the reconciler
   * decides next depends on that status only. Resolves to the PVC's uid, or to why not (after t.fail).
   */
  type VolSyncRestoreStatus = ReturnType<typeof restoredStatus>
  const restoredAndBound = async (t: Test, name: string, status: VolSyncRestoreStatus, what: string): Promise<{ uid: string; binder: Binder } | { failed: string }> => {
    const pvcName = `PVC ${ns}/${name}`
    const rdName = `${name}-restore`
    const made = await createPvc(ctx, name, 'hourly')
    if (!made.ok) {
      t.fail(`creating ${pvcName} (label backup=hourly, snapshot in S3) failed: ${describeFailure(made.failure)}`)
      return { failed: `${name} not created` }
    }
    const created = await readPvc(ctx, name)
    const uid = created?.metadata?.uid
    if (!uid || created.spec?.dataSourceRef?.name !== rdName) {
      t.fail(`${pvcName} was not admitted as a restore from ReplicationDestination ${rdName}: ${describePvc(created)}, dataSourceRef ${JSON.stringify(created?.spec?.dataSourceRef ?? null)}`)
      return { failed: `${name} not restoring` }
    }
    const written = await patchRdStatus(ctx, rdName, status)
    if (!written.ok) {
      t.fail(`writing the status of ReplicationDestination ${ns}/${rdName} through the status subresource (merge patch) failed: ${describeFailure(written.failure)}`)
      return { failed: `${rdName} status not written` }
    }
    // The VolSync CRD's structural schema drops what it does not know, silently: what the reconciler
    // will read is what came back.
    const got = written.rd.status
    t.strictSame(
      { lastManualSync: got?.lastManualSync, latestImage: got?.latestImage, latestMoverStatus: got?.latestMoverStatus },
      { lastManualSync: status.lastManualSync, latestImage: status.latestImage, latestMoverStatus: status.latestMoverStatus },
      `ReplicationDestination ${rdName} status written as VolSync would after its mover ran (${what}): lastManualSync, latestImage and latestMoverStatus kept by the CRD's schema`,
    )
    const binder = new Binder(ctx, name)
    const unbound = await binder.settle(t)
    if (unbound) {
      t.fail(`the scenario needs ${pvcName} Bound: ${unbound}`)
      return { failed: `${name} never Bound` }
    }
    return { uid, binder }
  }

  // The mover's "nothing to restore" is a success: the PVC binds to an EMPTY volume. Backing that up
  // would make an empty snapshot the newest and roll the real ones out of retention.
  await t.test('restore outcome: a restore that restored nothing gets no backup source, and the PVC says so', async (t) => {
    const name = PVC.restoreEmpty
    const rsName = backupSourceOf(name)
    const pvcName = `PVC ${ns}/${name}`
    const ready = await restoredAndBound(t, name, emptyRestoreStatus(), 'Successful, "No eligible snapshots found"')
    if ('failed' in ready) return done(t, `restore outcome empty: ${ready.failed}`)

    const noticed = await pollUntil(() => readPvc(ctx, name), (pvc) => (pvc?.metadata?.annotations?.[ATTENTION] ?? '').includes('restored NOTHING'), RECONCILE_MS)
    if (!noticed.met) {
      const [rs, rd, events] = await Promise.all([readRs(ctx, rsName), readRd(ctx, `${name}-restore`), pvcEvents(ctx, name, ready.uid)])
      t.fail(
        `${pvcName} has no annotation ${ATTENTION} saying "restored NOTHING" ${seconds(noticed.ms)} s after it was Bound (${ready.binder.method}). ` +
          `The PVC: ${describePvc(noticed.value)}. Its RD: ${describeRd(rd)}. ${rsName}: ${describeSource(rs)}. Its Events: ${describeEvents(events)}`,
      )
      return done(t, `restore outcome empty: ${name} never flagged`)
    }
    t.pass(`${pvcName} annotated ${ATTENTION} ("restored NOTHING") ${seconds(noticed.ms)} s after it was Bound (${ready.binder.method})`)
    t.comment(`${ATTENTION}: ${noticed.value?.metadata?.annotations?.[ATTENTION]}`)
    // The reconciler has decided (the annotation is its): a source would have come with that decision.
    const late = await pollUntil(() => readRs(ctx, rsName), (rs) => rs !== undefined, 8_000)
    t.equal(late.value, undefined, `no ReplicationSource ${rsName} ${seconds(noticed.ms + late.ms)} s after ${name} was Bound${late.value ? `: ${describeSource(late.value)}` : ''}`)

    const told = await pollUntil(() => pvcEvents(ctx, name, ready.uid), (events) => events.some((e) => e.reason === 'RestoreEmpty'), 10_000)
    const event = told.value.find((e) => e.reason === 'RestoreEmpty')
    t.ok(event, event ? `Event RestoreEmpty on ${pvcName}: ${event.message}` : `Event RestoreEmpty on ${pvcName} (listed for ${seconds(told.ms)} s; Events seen: ${describeEvents(told.value)})`)
    if (event) {
      t.equal(event.type, 'Warning', 'RestoreEmpty is a Warning')
      t.match(event.message, 'restored NOTHING', 'the Event says the restore restored nothing')
    }
    done(t, `restore outcome empty: RD ${name}-restore "No eligible snapshots found", PVC Bound → no ${rsName}, ${ATTENTION} "restored NOTHING", Warning RestoreEmpty`)
  })

  // Its repository holds a snapshot: asked, the store would refuse the source (backups exist). Only
  // the RD's status (this PVC's restore restored snapshot <id>) lets the reconciler attach it.
  await t.test('restore outcome: a restore that restored its snapshot gets its backup source once Bound', async (t) => {
    const name = PVC.restoreDone
    const rsName = backupSourceOf(name)
    const secretName = repositorySecretOf(name)
    const pvcName = `PVC ${ns}/${name}`
    const sourceName = `ReplicationSource ${ns}/${rsName}`
    const snapshot8 = ctx.snapshotIds[name]![0]!.slice(0, 8)
    const ready = await restoredAndBound(t, name, restoredStatus(snapshot8), `Successful, "restoring <Snapshot ${snapshot8} of [/data] …>"`)
    if ('failed' in ready) return done(t, `restore outcome restored: ${ready.failed}`)

    const attached = await pollUntil(() => readRs(ctx, rsName), (rs) => rs !== undefined, RECONCILE_MS)
    if (!attached.met) {
      const [pvc, rd, events] = await Promise.all([readPvc(ctx, name), readRd(ctx, `${name}-restore`), pvcEvents(ctx, name, ready.uid)])
      t.fail(
        `${sourceName} did not appear within ${seconds(attached.ms)} s of ${pvcName} being Bound (${ready.binder.method}) with its restore done. ` +
          `The PVC: ${describePvc(pvc)}. Its RD: ${describeRd(rd)}. Its Events: ${describeEvents(events)}`,
      )
      return done(t, `restore outcome restored: no ${rsName}`)
    }
    const rs = attached.value
    t.comment(`${sourceName} appeared ${seconds(attached.ms)} s after ${pvcName} was Bound (${ready.binder.method}): ${describeSource(rs)}`)
    t.equal(rs?.spec?.sourcePVC, name, `${rsName} spec.sourcePVC is ${name}`)
    t.equal(rs?.spec?.restic?.repository, secretName, `${rsName} backs up to the repository Secret ${secretName} it was restored from`)
    const owners = rs?.metadata?.ownerReferences ?? []
    t.ok(
      owners.some((r) => r.kind === 'PersistentVolumeClaim' && r.name === name && r.uid === ready.uid),
      `${rsName} is owned by ${pvcName} (uid ${ready.uid}; got ${JSON.stringify(owners.map((r) => `${r.kind}/${r.name}/${r.uid}`))})`,
    )
    const pvc = await readPvc(ctx, name)
    t.equal(pvc?.metadata?.annotations?.[ATTENTION], undefined, `no ${ATTENTION} annotation on ${pvcName}`)
    const told = await pollUntil(() => pvcEvents(ctx, name, ready.uid), (events) => events.some((e) => e.reason === 'BackupAttached'), 10_000)
    const attachedEvent = told.value.find((e) => e.reason === 'BackupAttached')
    t.ok(attachedEvent, attachedEvent ? `Event BackupAttached on ${pvcName}: ${attachedEvent.message}` : `Event BackupAttached on ${pvcName} (Events seen: ${describeEvents(told.value)})`)
    const warnings = told.value.filter((e) => ['RestoreEmpty', 'RestoreFailed', 'RestoreUnverified', 'RefusedToAttach'].includes(e.reason ?? ''))
    t.strictSame(warnings.map((e) => e.reason), [], `no RestoreEmpty/RestoreFailed/RestoreUnverified/RefusedToAttach Event on ${pvcName}`)
    done(t, `restore outcome restored: RD ${name}-restore "restoring <Snapshot ${snapshot8} …>", PVC Bound → ${rsName} attached (no store check), Event BackupAttached`)
  })

  await t.test('status: would the suite\'s PVCs come back, and how old would their data be', async (t) => {
    // The same store the service reads (its password: the source Secret's, given directly here).
    const store = createBackupStore(
      {
        ...defaultConfig.store,
        type: 's3',
        s3: { endpoint: s3.endpoint, region: s3.region, bucket: s3.bucket, forcePathStyle: s3.forcePathStyle, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      },
      { password: async () => ctx.resticPassword },
    )
    try {
      const config = validateConfig({ ...defaultConfig, kube: { ...defaultConfig.kube, mode: 'cluster' } })
      const report = await statusReport({ kubeConfig: ctx.apis.kc, store, config, namespace: ns, concurrency: 4 })
      t.comment(`smart-restore status --namespace ${ns}:\n${renderStatus(report)}`)
      const row = (name: string) => report.rows.find((r) => r.name === name)
      const restored = row(PVC.restoreDone)
      t.equal(restored?.verdict, 'ok', `${PVC.restoreDone}: restored, backed up by its source, its restore point ${restored?.restorePoint?.time ?? '(none)'} is within 2× the hourly interval: ok`)
      t.equal(restored?.restorePoint?.id, ctx.snapshotIds[PVC.restoreDone]![0], 'its restore point is the snapshot the suite seeded')
      t.equal(restored?.source, 'attached')
      const fresh = row(PVC.noBackup)
      t.equal(fresh?.verdict, 'new', `${PVC.noBackup}: nothing in S3 and created minutes ago: its first backup is still to come (new)`)
      // The same cluster seen 90 minutes from now with nothing changed: the fresh PVC has missed
      // its first hourly backup (none), the restored one is still within 2 h (ok).
      const later = await statusReport({ kubeConfig: ctx.apis.kc, store, config, namespace: ns, concurrency: 4, now: () => new Date(Date.now() + 90 * 60_000) })
      t.comment(`the same, as seen 90 min from now:\n${renderStatus(later)}`)
      t.equal(later.rows.find((r) => r.name === PVC.noBackup)?.verdict, 'none', `${PVC.noBackup} 90 min from now, still without a restore point: none`)
      t.equal(later.rows.find((r) => r.name === PVC.restoreDone)?.verdict, 'ok', `${PVC.restoreDone} 90 min from now: still ok`)
      t.match(later.summary.text, /^\d+ of \d+ PVCs would come back; /, `summary: ${later.summary.text}`)
      done(t, `status: ${PVC.restoreDone} ok (restore point ${restored?.restorePoint?.id?.slice(0, 8)}), ${PVC.noBackup} new now / none 90 min later; ${report.summary.text}`)
    } finally {
      store.close()
    }
  })

  await t.test('orphan sweep: a restore whose PVC never came is removed, and its Secret with it', async (t) => {
    const name = PVC.neverCame
    const rdName = `${name}-restore`
    const secretName = repositorySecretOf(name)
    const rdWhat = `ReplicationDestination ${ns}/${rdName}`
    const secretWhat = `Secret ${ns}/${secretName}`
    const managed = { 'app.kubernetes.io/managed-by': 'smart-restore', [`${PREFIX}pvc`]: name, 'app.kubernetes.io/part-of': 'smart-restore-e2e' }
    // What an admission leaves when its CREATE fails after the webhook answered (another webhook, a
    // quota, a timeout): the RD first, then its repository Secret owned by it, and no PVC ever.
    const body = {
      apiVersion: `${VOLSYNC.group}/${VOLSYNC.version}`,
      kind: 'ReplicationDestination',
      metadata: { name: rdName, labels: managed, annotations: { [`${PREFIX}pvc`]: name, [`${PREFIX}restore-source`]: `s3://${s3.bucket}/${ns}/${name}` } },
      spec: {
        trigger: { manual: 'smart-restore' },
        restic: { repository: secretName, copyMethod: 'Snapshot', capacity: '1Gi', accessModes: ['ReadWriteOnce'], storageClassName: ctx.storageClass },
      },
    }
    let rd: ReplicationDestination
    try {
      rd = (await call((o) => ctx.apis.custom.createNamespacedCustomObject({ ...rdRef(ctx), body }, o))) as ReplicationDestination
    } catch (err) {
      t.fail(`creating ${rdWhat} (as an admission whose PVC never came would leave it) failed: ${describeFailure(kubeFailure(err))}`)
      return done(t, 'orphan sweep: no RD')
    }
    const madeAt = Date.now()
    const uid = rd.metadata?.uid
    if (!uid) {
      t.fail(`${rdWhat} was created but came back without a uid: ${JSON.stringify(rd.metadata ?? null)}`)
      return done(t, 'orphan sweep: RD without uid')
    }
    try {
      await call((o) =>
        ctx.apis.core.createNamespacedSecret(
          {
            namespace: ns,
            body: {
              metadata: { name: secretName, labels: managed, annotations: { [`${PREFIX}pvc`]: name }, ownerReferences: [{ ...rdOwnerRef(rdName, uid), uid }] },
              type: 'Opaque',
              stringData: { RESTIC_REPOSITORY: expectedResticRepository(s3, `${ns}/${name}`), RESTIC_PASSWORD: ctx.resticPassword },
            },
          },
          o,
        ),
      )
    } catch (err) {
      t.fail(`creating ${secretWhat} owned by ${rdWhat} (uid ${uid}) failed: ${describeFailure(kubeFailure(err))}`)
      return done(t, 'orphan sweep: no Secret')
    }
    t.comment(`${rdWhat} (labels managed-by=smart-restore, ${PREFIX}pvc=${name}; trigger manual smart-restore; no owner) and ${secretWhat} owned by it created; PVC ${name} never is`)

    // Not while younger than the grace period: a retried admission may still be about to use it.
    const early = await readRd(ctx, rdName)
    const earlyMs = Date.now() - madeAt
    if (earlyMs < ORPHAN_GRACE_MS / 2) {
      t.ok(early && !early.metadata?.deletionTimestamp, `${rdWhat} still there ${seconds(earlyMs)} s after its create, younger than reconciler.orphanGraceMs (${ORPHAN_GRACE_MS} ms): ${describeRd(early)}`)
    } else t.comment(`(${rdWhat} was first read back ${seconds(earlyMs)} s after its create: too late to check it is kept during the grace period)`)

    const budget = ORPHAN_GRACE_MS + ORPHAN_SWEEP_EVERY_MS + 20_000
    const swept = await pollUntil(() => readRd(ctx, rdName), (x) => x === undefined || x.metadata?.uid !== uid || Boolean(x.metadata?.deletionTimestamp), budget)
    if (!swept.met) {
      const leader = (await readReadyz(ctx.service.url, caCert).catch((): Readyz => ({ code: 0 }))).checks?.leader
      t.fail(
        `${rdWhat} still exists ${seconds(Date.now() - madeAt)} s after its create, with no PVC ${name}: the orphan sweep removes such an RD once older than reconciler.orphanGraceMs (${ORPHAN_GRACE_MS} ms) and runs every ${ORPHAN_SWEEP_EVERY_MS} ms` +
          `${leader === undefined ? '' : `, on the leader only (/readyz checks.leader: ${leader})`}. ` +
          `The RD: ${describeRd(swept.value)}. (The sweep compares its creationTimestamp with this machine's clock: is the apiserver's clock far ahead?)`,
      )
      return done(t, `orphan sweep: ${rdName} not swept`)
    }
    t.pass(`${rdWhat} removed by the orphan sweep ${seconds(Date.now() - madeAt)} s after its create (grace ${seconds(ORPHAN_GRACE_MS)} s, sweep every ${seconds(ORPHAN_SWEEP_EVERY_MS)} s)`)

    // Its Secret goes by the real garbage collector (ownerReference to the RD's uid), asynchronously.
    let collectedLine = `Secret ${secretName} → garbage-collected`
    const collected =
      ctx.observed.controllerManager === false
        ? undefined
        : await pollUntil(() => readSecret(ctx, secretName), (x) => x === undefined || Boolean(x.metadata?.deletionTimestamp), GC_MS, 1_000)
    if (!collected) {
      collectedLine = `Secret ${secretName} left (no garbage collector)`
      t.comment(`no controller-manager here (a Bound phase written by hand was never reset): nothing garbage-collects ${secretWhat}; cleanup deletes it`)
    } else if (!collected.met) {
      t.fail(
        `${secretWhat} still exists ${seconds(collected.ms)} s after its owner ${rdWhat} (uid ${uid}) was deleted: the garbage collector of kube-controller-manager deletes the dependents of a deleted owner. ` +
          `Does it run (--controllers includes garbagecollector), and has it discovered ${VOLSYNC.rdPlural}.${VOLSYNC.group} (it rediscovers resources every 30 s)?`,
      )
    } else t.pass(`${secretWhat} removed by the garbage collector ${seconds(collected.ms)} s after its owner went`)

    // The sweep has run past the grace period meanwhile: the restores whose PVC exists were left alone.
    const kept: string[] = []
    for (const pvc of [PVC.populatorCheck, PVC.withBackup, PVC.asOf, PVC.restoreEmpty, PVC.restoreDone]) {
      if (!(await readPvc(ctx, pvc))) continue
      const their = await readRd(ctx, `${pvc}-restore`)
      t.ok(their && !their.metadata?.deletionTimestamp, `ReplicationDestination ${pvc}-restore of the existing PVC ${pvc} is not swept: ${describeRd(their)}`)
      kept.push(`${pvc}-restore`)
    }
    done(t, `orphan sweep: RD ${rdName} without PVC → deleted after ≥ ${seconds(ORPHAN_GRACE_MS)} s, ${collectedLine}; kept ${kept.join(', ') || 'no other RD'}`)
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
    // On a cluster that binds it (a provisioner with Immediate binding) the backup-source reconciler
    // has attached its own `<pvc>-backup` too. Nothing syncs it here (no VolSync controller should
    // act on the test namespace), so it is idle and does not hold the DELETE up.
    const ownSource = await readRs(ctx, backupSourceOf(name))
    if (ownSource) t.comment(`${pvcName} is ${before.status?.phase ?? 'without a phase'}: the reconciler's ReplicationSource ${backupSourceOf(name)} exists too (${describeRsStatus(ownSource)})`)
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
          `Either the service's watch did not deliver it, or its ReplicationSource rule is inactive (the CRD was not served when the service started; it rediscovers every ${REDISCOVER_MS} ms).`,
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
      const sources = await sourcesOf(ctx, name).catch(() => [])
      t.fail(
        `DELETE of ${pvcName} still refused ${seconds(allowed.ms)} s (${allowed.attempts} attempts) after ${rsName} went idle: ${describeFailure(allowed.last.failure)}. ` +
          `ReplicationSources with sourcePVC ${name}: ${sources.map((x) => `${x.metadata?.name} (${describeRsStatus(x)})`).join('; ') || 'none'}` +
          `${sources.some((x) => x.metadata?.name !== rs && x.status) ? ' (one has a status: is a VolSync controller syncing the test namespace?)' : ''}`,
      )
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

  /** What a replica's /readyz says in checks.leader, or why it could not be read. */
  const leaderCheck = async (svc: ServiceHandle): Promise<string> => {
    try {
      const r = await readReadyz(svc.url, svc.caCert!)
      return r.checks?.leader ?? `(no checks.leader in /readyz, HTTP ${r.code})`
    } catch (err) {
      return `(GET ${svc.url}/readyz failed: ${(err as Error).message})`
    }
  }
  /** A scenario's unexpected failure (a setup call, an E2EError of support.ts) as one line. */
  const failureLine = (err: unknown) => (err instanceof E2EError ? err.message : `${(err as Error)?.name ?? 'Error'}: ${describeFailure(kubeFailure(err))}`)

  // The suite's service campaigns alone for its Lease. Two more replicas of it, started here with
  // their own ports and NOT registered as webhooks, campaign for a Lease of their own (the same
  // configuration but leaderElection.leaseName and a short timing): one leads, the other follows,
  // and takes over when the leader stops. Their reconcilers must not touch the suite's PVCs (the
  // suite's "one writer" claims would no longer hold), so every namespace the cluster has when they
  // start is in their excludedNamespaces: the scenario is about the Lease, and they write nothing else.
  await t.test('leader election: one replica holds the Lease, the other follows, and takes over when the leader stops', async (t) => {
    const { sysNs } = ctx
    const le = ctx.config.leaderElection
    const mainId = ctx.leaderIdentity
    const mainWhat = `Lease ${sysNs}/${le.leaseName}`
    const haLease = `${le.leaseName}-ha`
    const haWhat = `Lease ${sysNs}/${haLease}`
    const idA = `sr-e2e-${ctx.runId}-ha-a`
    const idB = `sr-e2e-${ctx.runId}-ha-b`
    const replicas: Record<string, ServiceHandle | undefined> = {}
    // Registered before the starts; close() is idempotent, so a replica the scenario closed is closed once.
    for (const id of [idA, idB]) {
      ctx.cleanup.add(PHASE.service, `extra replica ${id} (leader election scenario)`, async () => {
        const r = replicas[id]
        if (!r) return 'never started'
        await withinMs(15_000, r.close(), 'did not close within 15 s; cleanup goes on')
        return 'closed'
      })
    }
    ctx.cleanup.add(PHASE.service, haWhat, () => call((o) => ctx.apis.coordination.deleteNamespacedLease({ namespace: sysNs, name: haLease }, o)))
    try {
      // -- the suite's service, alone on its Lease: it holds it, and says so
      const held = await readLease(ctx.apis, sysNs, le.leaseName)
      t.equal(held?.holder, mainId, `${mainWhat} (coordination.k8s.io/v1) is held by the suite's service, leaderIdentity ${mainId}: ${describeLease(held)}`)
      t.equal(held?.durationSeconds, Math.ceil(le.leaseDurationMs / 1000), `${mainWhat} leaseDurationSeconds is leaderElection.leaseDurationMs (${le.leaseDurationMs} ms) in seconds`)
      t.ok(held?.resourceVersion, `${mainWhat} carries a resourceVersion: every renewal is a PUT conditional on the version last read`)
      t.equal(await leaderCheck(ctx.service), `this replica (${mainId})`, `the service's /readyz checks.leader says it leads`)
      t.strictSame(await leaderMetric(ctx.service.metricsUrl), [`${mainId}=1`], `the service's /metrics: smart_restore_leader{identity="${mainId}"} 1, its only series`)

      // -- two more replicas of it, sharing another Lease
      const listed = await call((o) => ctx.apis.core.listNamespace({}, o))
      const excluded = [...new Set([...ctx.config.excludedNamespaces, ctx.ns, sysNs, ...listed.items.map((n) => n.metadata?.name ?? '').filter(Boolean)])]
      const haConfig = validateConfig({
        ...ctx.config,
        // Never called by the apiserver: loopback only.
        server: { ...ctx.config.server, host: '127.0.0.1', port: 0, metricsPort: 0, devCertHosts: [] },
        excludedNamespaces: excluded,
        leaderElection: { ...le, leaseName: haLease, ...HA_TIMING },
      })
      t.comment(
        `extra replicas ${idA} and ${idB}: the service's configuration with ${haWhat} (leaseDuration ${HA_TIMING.leaseDurationMs} ms, renewDeadline ${HA_TIMING.renewDeadlineMs} ms, retryPeriod ${HA_TIMING.retryPeriodMs} ms), ` +
          `ports of their own, not registered as webhooks, every one of the ${excluded.length} namespaces the cluster has now (${ctx.ns} included) in excludedNamespaces: they reconcile nothing`,
      )
      const start = async (id: string): Promise<ServiceHandle> => {
        const logger = createLogger(haConfig.logLevel, pino.destination({ dest: 2, sync: true })).child({ replica: id })
        const r = await startService(haConfig, { logger, leaderIdentity: id, metrics: { defaultMetrics: false } }).catch((err: unknown) => {
          throw new E2EError(`cannot start the extra replica ${id}: ${(err as Error).message}`)
        })
        replicas[id] = r
        return r
      }
      const observe = async (svc: ServiceHandle) => ({ lease: await readLease(ctx.apis, sysNs, haLease), check: await leaderCheck(svc) })

      // -- A alone: creates the Lease, holding it
      const a = await start(idA)
      const aLeads = await pollUntil(() => observe(a), (v) => v.lease?.holder === idA && v.check === `this replica (${idA})`, 10_000, 250)
      if (!aLeads.met) {
        t.fail(
          `${idA}, alone on ${haWhat}, does not lead ${seconds(aLeads.ms)} s after it started. The Lease: ${describeLease(aLeads.value.lease)}. Its /readyz checks.leader: ${aLeads.value.check}. ` +
            `(It creates the Lease in ${sysNs} and renews it with PUTs: can the user of KUBECONFIG create and update leases there?)`,
        )
        return done(t, `leader election: ${idA} never led ${haLease}`)
      }
      t.pass(`${idA} alone: ${haWhat} created and held ${seconds(aLeads.ms)} s after it started (/readyz checks.leader "this replica (${idA})"): ${describeLease(aLeads.value.lease)}`)
      t.equal(aLeads.value.lease?.transitions, 0, `${haWhat} leaseTransitions 0: created by ${idA}, never taken over`)
      t.equal(aLeads.value.lease?.durationSeconds, HA_TIMING.leaseDurationMs / 1000, `${haWhat} leaseDurationSeconds ${HA_TIMING.leaseDurationMs / 1000}`)

      // -- B joins: it follows
      const b = await start(idB)
      const following = `${idA} (lease ${sysNs}/${haLease})`
      const bFollows = await pollUntil(() => leaderCheck(b), (c) => c === following, 5_000, 250)
      if (!bFollows.met) {
        t.fail(`${idB} does not report ${idA} as the leader ${seconds(bFollows.ms)} s after it started: its /readyz checks.leader is ${JSON.stringify(bFollows.value)}; ${haWhat}: ${describeLease(await readLease(ctx.apis, sysNs, haLease))}`)
        return done(t, `leader election: ${idB} never followed`)
      }
      t.pass(`${idB} follows: /readyz checks.leader ${JSON.stringify(following)} ${seconds(bFollows.ms)} s after it started`)

      // -- longer than a lease duration: A renews, B never takes it (a follower only takes an expired or released Lease)
      const windowMs = HA_TIMING.leaseDurationMs + 1_000
      const samples: Array<{ lease: LeaseView | undefined; check: string }> = []
      const from = Date.now()
      while (Date.now() - from < windowMs) {
        samples.push(await observe(b))
        await sleep(500)
      }
      const notA = samples.filter((s) => s.lease?.holder !== idA).map((s) => describeLease(s.lease))
      t.strictSame(notA, [], `${haWhat} held by ${idA} in all ${samples.length} reads over ${seconds(windowMs)} s, longer than its lease duration`)
      t.strictSame([...new Set(samples.map((s) => s.check))], [following], `${idB}'s /readyz checks.leader said ${JSON.stringify(following)} throughout`)
      const versions = new Set(samples.map((s) => s.lease?.resourceVersion))
      const firstRenew = samples[0]?.lease?.renewMs ?? 0
      const lastRenew = samples[samples.length - 1]?.lease?.renewMs ?? 0
      t.ok(
        versions.size > 1 && lastRenew > firstRenew,
        `${idA} renewed ${haWhat} meanwhile (every retryPeriod, ${HA_TIMING.retryPeriodMs} ms): ${versions.size} resourceVersions seen, renewTime ${new Date(firstRenew).toISOString()} → ${new Date(lastRenew).toISOString()}`,
      )
      t.strictSame(await leaderMetric(a.metricsUrl), [`${idA}=1`], `${idA}'s /metrics: smart_restore_leader{identity="${idA}"} 1`)
      t.strictSame(await leaderMetric(b.metricsUrl), [`${idB}=0`], `${idB}'s /metrics: smart_restore_leader{identity="${idB}"} 0`)

      // -- A stops: it releases the Lease on its way out (its work stopped first), B takes it at its
      // next retry. Watched while A's close runs: the handover does not wait for the rest of it.
      const closing = Date.now()
      let closedMs: number | undefined
      const closeA = withinMs(15_000, a.close(), `${idA} did not close within 15 s`).then(
        () => void (closedMs = Date.now() - closing),
        (err: unknown) => err as Error,
      )
      const took = await pollUntil(() => observe(b), (v) => v.lease?.holder === idB && v.check === `this replica (${idB})`, HA_TIMING.leaseDurationMs + 5_000, 100)
      const handoverMs = took.ms
      const closeFailed = await closeA
      if (closeFailed) t.fail(`closing ${idA}: ${closeFailed.message}`)
      const closeSaid = closedMs === undefined ? 'its close did not finish' : `its close took ${seconds(closedMs)} s`
      if (!took.met) {
        t.fail(
          `${idB} has not taken ${haWhat} over ${seconds(handoverMs)} s after ${idA} began closing (${closeSaid}). ` +
            `The Lease: ${describeLease(took.value.lease)}. ${idB}'s /readyz checks.leader: ${took.value.check}`,
        )
        return done(t, `leader election: ${idB} never took over`)
      }
      t.ok(
        handoverMs < HA_TIMING.leaseDurationMs,
        `${idB} leads ${seconds(handoverMs)} s after ${idA} began closing (${closeSaid}), within the lease duration (${seconds(HA_TIMING.leaseDurationMs)} s): ` +
          `the closing leader released the Lease (holderIdentity cleared) instead of leaving it to expire`,
      )
      const taken = took.value.lease
      t.equal(taken?.transitions, 1, `${haWhat} leaseTransitions 1: taken over once`)
      t.ok(
        taken?.acquireMs !== undefined && taken.acquireMs >= closing,
        `${haWhat} acquireTime ${taken?.acquireMs === undefined ? '(none)' : new Date(taken.acquireMs).toISOString()} is ${idB}'s, after ${idA} began closing at ${new Date(closing).toISOString()} (one process, one clock)`,
      )
      t.strictSame(await leaderMetric(b.metricsUrl), [`${idB}=1`], `${idB}'s /metrics: smart_restore_leader{identity="${idB}"} 1 now`)

      // -- B stops: the Lease is left released, nobody campaigns for it any more
      await withinMs(15_000, b.close(), `${idB} did not close within 15 s`)
      const released = await readLease(ctx.apis, sysNs, haLease)
      t.ok(
        released !== undefined && released.holder === undefined && released.durationSeconds === 1,
        `${idB} closed: ${haWhat} released (no holderIdentity, leaseDurationSeconds 1: a replica starting now takes it at its first try): ${describeLease(released)}`,
      )
      const still = await readLease(ctx.apis, sysNs, le.leaseName)
      t.equal(still?.holder, mainId, `${mainWhat} is still held by ${mainId}: the other Lease's replicas never touched it`)
      done(
        t,
        `leader election: ${le.leaseName} held by ${mainId} (/readyz, metric 1); ${haLease}: ${idA} leads, ${idB} follows ${seconds(windowMs)} s (metric 0); ` +
          `${idA} closed → ${idB} leads after ${seconds(handoverMs)} s (leaseTransitions 1); ${idB} closed → released`,
      )
    } catch (err) {
      t.fail(`leader election scenario: ${failureLine(err)}`)
      done(t, `leader election: ${failureLine(err)}`)
    }
  })

  // deploy/base/secret-write-policy.yaml, applied as written but for its names and the one user it
  // judges: a ServiceAccount of the run's namespace instead of smart-restore's, which the suite
  // acts as by impersonation. The apiserver evaluates it (no webhook), and the suite's own user is
  // never matched, so nothing else in the cluster is affected.
  let fenceSupport: { version: string; skip?: string } | { error: string }
  try {
    fenceSupport = await admissionPolicySupport(ctx.apis)
  } catch (err) {
    fenceSupport = { error: describeFailure(kubeFailure(err)) }
  }
  const skipFence = 'skip' in fenceSupport && fenceSupport.skip !== undefined ? fenceSupport.skip : false
  if (skipFence) {
    t.comment(`Secret-write fence skipped: ${skipFence}`)
    summary.push(`skip Secret-write fence (${skipFence})`)
  }
  await t.test('Secret-write fence: the ValidatingAdmissionPolicy lets smart-restore\'s ServiceAccount write only its own Secrets', { skip: skipFence }, async (t) => {
    if ('error' in fenceSupport) {
      t.fail(`cannot tell whether the cluster serves ValidatingAdmissionPolicy: GET /version or the discovery of admissionregistration.k8s.io/v1 failed: ${fenceSupport.error}`)
      return done(t, 'Secret-write fence: cluster support unknown')
    }
    const version = fenceSupport.version
    const writer = `system:serviceaccount:${ns}:${FENCE_WRITER}`
    const name = `smart-restore-secret-writes-${ctx.runId}`
    const secrets = { refused: 'db-credentials', own: 'fence-probe-restic', foreign: 'foo-restic' } as const
    const MANAGED_BY = 'app.kubernetes.io/managed-by'
    // Registered before the creates (a create that timed out on our side may still have happened).
    ctx.cleanup.add(PHASE.webhook, `ValidatingAdmissionPolicyBinding ${name}`, () => call((o) => ctx.apis.admission.deleteValidatingAdmissionPolicyBinding({ name }, o)))
    ctx.cleanup.add(PHASE.webhook, `ValidatingAdmissionPolicy ${name}`, () => call((o) => ctx.apis.admission.deleteValidatingAdmissionPolicy({ name }, o)))
    ctx.cleanup.add(PHASE.secrets, `Secrets of the Secret-write fence scenario in ${ns}`, () =>
      deleteEach(Object.values(secrets), (n, o) => ctx.apis.core.deleteNamespacedSecret({ namespace: ns, name: n }, o)),
    )
    ctx.cleanup.add(PHASE.secrets, `RoleBinding, Role and ServiceAccount ${ns}/${FENCE_WRITER}`, async () =>
      [
        await deleteEach([FENCE_WRITER], (n, o) => ctx.apis.rbac.deleteNamespacedRoleBinding({ namespace: ns, name: n }, o)),
        await deleteEach([FENCE_WRITER], (n, o) => ctx.apis.rbac.deleteNamespacedRole({ namespace: ns, name: n }, o)),
        await deleteEach([FENCE_WRITER], (n, o) => ctx.apis.core.deleteNamespacedServiceAccount({ namespace: ns, name: n }, o)),
      ].join('; '),
    )
    /** An admin call that must succeed; E2EError saying what it was for otherwise. */
    const must = async <T>(what: string, fn: (o: k8s.ConfigurationOptions) => Promise<T>): Promise<T> => {
      try {
        return await call(fn)
      } catch (err) {
        throw new E2EError(`${what} failed: ${describeFailure(kubeFailure(err))}`)
      }
    }
    type Attempt = { ok: true } | { ok: false; failure: KubeFailure }
    const attempt = async (fn: (o: k8s.ConfigurationOptions) => Promise<unknown>): Promise<Attempt> => {
      try {
        await call(fn)
        return { ok: true }
      } catch (err) {
        return { ok: false, failure: kubeFailure(err) }
      }
    }
    const byPolicy = (a: Attempt) => !a.ok && a.failure.message.includes(`ValidatingAdmissionPolicy '${name}'`)
    /** Refused by the policy through its binding, with HTTP 403 Forbidden and the validation's message. */
    const refusedBy = (a: Attempt, what: string, operation: 'CREATE' | 'UPDATE' | 'DELETE', secret: string, rule: string) => {
      if (a.ok) return void t.fail(`${what} was allowed: the policy must refuse it ("${rule}")`)
      t.equal(a.failure.code, 403, `${what}: HTTP 403`)
      t.equal(a.failure.reason, 'Forbidden', `${what}: reason Forbidden (the validation's reason)`)
      t.match(a.failure.message, `ValidatingAdmissionPolicy '${name}' with binding '${name}' denied request`, `${what}: denied by the policy through its binding (${describeFailure(a.failure)})`)
      t.match(a.failure.message, `${operation} of Secret ${ns}/${secret} refused: ${rule}`, `${what}: the policy's message "${operation} of Secret ${ns}/${secret} refused: ${rule}…"`)
    }
    const secretBody = (secretName: string, managed: boolean, value: string): k8s.V1Secret => ({
      metadata: { name: secretName, labels: { ...ctx.labels, ...(managed ? { [MANAGED_BY]: 'smart-restore' } : {}) } },
      type: 'Opaque',
      stringData: { value },
    })
    const mergePatch = (o: k8s.ConfigurationOptions) => k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch, o)
    try {
      // -- the writer: a ServiceAccount that RBAC lets write every Secret of the namespace, like smart-restore's everywhere
      await must(`creating ServiceAccount ${ns}/${FENCE_WRITER}`, (o) => ctx.apis.core.createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: FENCE_WRITER, labels: ctx.labels } } }, o))
      await must(`creating Role ${ns}/${FENCE_WRITER} (create, patch, update, delete on secrets; the user of KUBECONFIG must hold these itself)`, (o) =>
        ctx.apis.rbac.createNamespacedRole(
          { namespace: ns, body: { metadata: { name: FENCE_WRITER, labels: ctx.labels }, rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['create', 'patch', 'update', 'delete'] }] } },
          o,
        ),
      )
      await must(`creating RoleBinding ${ns}/${FENCE_WRITER}`, (o) =>
        ctx.apis.rbac.createNamespacedRoleBinding(
          {
            namespace: ns,
            body: {
              metadata: { name: FENCE_WRITER, labels: ctx.labels },
              roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: FENCE_WRITER },
              subjects: [{ kind: 'ServiceAccount', name: FENCE_WRITER, namespace: ns }],
            },
          },
          o,
        ),
      )

      // -- the policy and its binding, from the file
      const { policy, binding } = e2eSecretWritePolicy({ name, username: writer, runId: ctx.runId })
      await must(`creating ValidatingAdmissionPolicy ${name} from ${SECRET_POLICY_FILE}`, (o) => ctx.apis.admission.createValidatingAdmissionPolicy({ body: policy }, o))
      await must(`creating ValidatingAdmissionPolicyBinding ${name} from ${SECRET_POLICY_FILE}`, (o) => ctx.apis.admission.createValidatingAdmissionPolicyBinding({ body: binding }, o))
      const registered = await must(`reading ValidatingAdmissionPolicy ${name} back`, (o) => ctx.apis.admission.readValidatingAdmissionPolicy({ name }, o))
      t.strictSame(
        policyExpressions(registered),
        policyExpressions(policy),
        `the apiserver registered ${SECRET_POLICY_FILE}'s policy as written (failurePolicy, rules, matchConditions, variables, validations and their messages), matching ${writer} instead of ${SECRET_POLICY_USER}`,
      )
      t.comment(`${version}: ValidatingAdmissionPolicy and Binding ${name} created; the policy judges only ${writer}`)

      // -- in force: the apiserver compiles a new policy and binding a moment after their creation.
      // Dry runs (admission runs, nothing is stored) of a write the policy refuses, as the writer,
      // until it is refused; before that RBAC may not know the RoleBinding yet either.
      const asWriter = impersonating(ctx.apis.kc, writer).makeApiClient(k8s.CoreV1Api)
      const rbacDenied = (a: Attempt) => !a.ok && a.failure.code === 403 && a.failure.message.includes('cannot create resource "secrets"')
      const active = await pollUntil(
        () => attempt((o) => asWriter.createNamespacedSecret({ namespace: ns, body: secretBody(secrets.refused, false, 'probe'), dryRun: 'All' }, o)),
        (a) => !a.ok && !rbacDenied(a),
        20_000,
      )
      if (!byPolicy(active.value)) {
        const last = active.value
        t.fail(
          last.ok
            ? `a dry-run create of Secret ${ns}/${secrets.refused} as ${writer} is still allowed ${seconds(active.ms)} s (${active.attempts} attempts) after the policy and binding were created: ` +
                `does the apiserver run the ValidatingAdmissionPolicy admission plugin (on by default; kube-apiserver --disable-admission-plugins)?`
            : rbacDenied(last)
              ? `a dry-run create of Secret ${ns}/${secrets.refused} as ${writer} is still refused by RBAC ${seconds(active.ms)} s after RoleBinding ${FENCE_WRITER} was created: ${describeFailure(last.failure)}`
              : /impersonat/i.test(last.failure.message)
                ? `the user of KUBECONFIG cannot act as ${writer}: ${describeFailure(last.failure)} (it needs the verb impersonate on serviceaccounts in ${ns})`
                : `a dry-run create of Secret ${ns}/${secrets.refused} as ${writer} failed for a reason other than the policy: ${describeFailure(last.failure)}`,
        )
        return done(t, 'Secret-write fence: the policy never took effect')
      }
      t.pass(`the policy refuses ${writer}'s dry-run create of ${secrets.refused} ${seconds(active.ms)} s after its creation (${active.attempts} attempts)`)
      const admin = await attempt((o) => ctx.apis.core.createNamespacedSecret({ namespace: ns, body: secretBody(secrets.refused, false, 'probe'), dryRun: 'All' }, o))
      t.ok(admin.ok, `the same create by the user of KUBECONFIG is allowed (dry run): the matchConditions keep every other user out of the policy${admin.ok ? '' : `; it said ${describeFailure(admin.failure)}`}`)

      // -- a create: only `<pvc>-restic` names, only labelled managed-by=smart-restore
      refusedBy(
        await attempt((o) => asWriter.createNamespacedSecret({ namespace: ns, body: secretBody(secrets.refused, false, 'hunter2') }, o)),
        `CREATE of Secret ${secrets.refused} (no ${MANAGED_BY} label) as ${writer}`,
        'CREATE',
        secrets.refused,
        FENCE_RULE.name,
      )
      t.equal(await readSecret(ctx, secrets.refused), undefined, `no Secret ${ns}/${secrets.refused}`)
      const created = await attempt((o) => asWriter.createNamespacedSecret({ namespace: ns, body: secretBody(secrets.own, true, 'v1') }, o))
      t.ok(created.ok, `CREATE of Secret ${secrets.own} labelled ${MANAGED_BY}=smart-restore as ${writer} is allowed${created.ok ? '' : `: ${describeFailure(created.failure)}`}`)
      const own = await readSecret(ctx, secrets.own)
      t.equal(own?.metadata?.labels?.[MANAGED_BY], 'smart-restore', `Secret ${ns}/${secrets.own} exists, labelled ${MANAGED_BY}=smart-restore`)

      // -- its own Secret: updates allowed while it stays smart-restore's
      const updated = await attempt((o) =>
        asWriter.patchNamespacedSecret({ namespace: ns, name: secrets.own, body: { metadata: { annotations: { 'smart-restore.io/e2e-note': 'updated by the writer' } } } }, mergePatch(o)),
      )
      t.ok(updated.ok, `UPDATE (merge patch) of its own Secret ${secrets.own} as ${writer} is allowed${updated.ok ? '' : `: ${describeFailure(updated.failure)}`}`)
      refusedBy(
        await attempt((o) => asWriter.patchNamespacedSecret({ namespace: ns, name: secrets.own, body: { metadata: { labels: { [MANAGED_BY]: null } } } }, mergePatch(o))),
        `UPDATE removing ${MANAGED_BY} from its own Secret ${secrets.own} as ${writer}`,
        'UPDATE',
        secrets.own,
        FENCE_RULE.labelAfter,
      )
      t.equal((await readSecret(ctx, secrets.own))?.metadata?.labels?.[MANAGED_BY], 'smart-restore', `Secret ${ns}/${secrets.own} keeps its ${MANAGED_BY} label`)

      // -- someone else's Secret under a `<pvc>-restic` name: neither taken over nor deleted
      await must(`creating the foreign Secret ${ns}/${secrets.foreign} (no ${MANAGED_BY} label) as the user of KUBECONFIG`, (o) =>
        ctx.apis.core.createNamespacedSecret({ namespace: ns, body: secretBody(secrets.foreign, false, 'not smart-restore\'s') }, o),
      )
      const foreignBefore = await readSecret(ctx, secrets.foreign)
      refusedBy(
        await attempt((o) => asWriter.patchNamespacedSecret({ namespace: ns, name: secrets.foreign, body: { metadata: { labels: { [MANAGED_BY]: 'smart-restore' } }, stringData: { value: 'taken over' } } }, mergePatch(o))),
        `UPDATE of the foreign Secret ${secrets.foreign} adding ${MANAGED_BY}=smart-restore as ${writer}`,
        'UPDATE',
        secrets.foreign,
        FENCE_RULE.labelBefore,
      )
      refusedBy(
        await attempt((o) => asWriter.deleteNamespacedSecret({ namespace: ns, name: secrets.foreign }, o)),
        `DELETE of the foreign Secret ${secrets.foreign} as ${writer}`,
        'DELETE',
        secrets.foreign,
        FENCE_RULE.labelBefore,
      )
      const foreignAfter = await readSecret(ctx, secrets.foreign)
      t.ok(
        foreignAfter && foreignAfter.metadata?.uid === foreignBefore?.metadata?.uid && foreignAfter.metadata?.resourceVersion === foreignBefore?.metadata?.resourceVersion,
        `Secret ${ns}/${secrets.foreign} untouched: same uid and resourceVersion (nothing was written), label ${MANAGED_BY} ${foreignAfter?.metadata?.labels?.[MANAGED_BY] ?? '(none)'}`,
      )

      // -- its own Secret: deleted (RBAC grants delete here; the policy allows a labelled one)
      const deleted = await attempt((o) => asWriter.deleteNamespacedSecret({ namespace: ns, name: secrets.own }, o))
      t.ok(deleted.ok, `DELETE of its own Secret ${secrets.own} as ${writer} is allowed${deleted.ok ? '' : `: ${describeFailure(deleted.failure)}`}`)
      t.equal(await readSecret(ctx, secrets.own), undefined, `Secret ${ns}/${secrets.own} is gone`)

      const checked = await getOrUndefined((o) => ctx.apis.admission.readValidatingAdmissionPolicy({ name }, o))
      const warnings = checked?.status?.typeChecking?.expressionWarnings ?? []
      if (warnings.length > 0) t.comment(`the apiserver's type check of the policy warns: ${warnings.map((w) => `${w.fieldRef}: ${w.warning}`).join(' | ')}`)
      done(
        t,
        `Secret-write fence (${version}): as ${writer}, ${secrets.refused} → 403 (name); ${secrets.own} labelled → created, updated, label removal 403, deleted; ` +
          `foreign ${secrets.foreign} → update adding the label 403, delete 403; the suite's own user unaffected`,
      )
    } catch (err) {
      t.fail(`Secret-write fence scenario: ${failureLine(err)}`)
      done(t, `Secret-write fence: ${failureLine(err)}`)
    }
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
