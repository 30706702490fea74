/**
 * `smart-restore check <namespace>/<pvc>`: what the service would decide for one PVC right now, and
 * why, computed by the same pure functions the service runs, over what the CLI reads once:
 *
 *   - the PVC and its namespace (GET), the backup store (the service's own store, same config);
 *   - "if this PVC were created now": planCreate → probe → decideAfterProbe on the PVC as it is;
 *   - "backup source": reconcilePvc over `<pvc>-backup` and the dataSourceRef's RD (GET);
 *   - "delete now?": planDelete → decideDelete over ONE-SHOT LISTs of the active in-flight rules'
 *     resources (discovery first: a rule whose resource is not installed is inactive, as in the
 *     service), indexed exactly as the watched caches index them.
 *
 * Read-only: GETs and LISTs only, no watch, no write. Secrets are never printed: the only Secret read
 * is the restore's source Secret, and only the names of its keys are kept. No process.exit here; the
 * report says what needs attention and `exitCodeFor` turns that into the CLI's exit code.
 */
import type { KubeConfig } from '@kubernetes/client-node'
import type { Operation as JsonPatchOperation } from 'fast-json-patch'
import type { Config } from '../config/schema.js'
import { ANNOTATION, annotationKey, annotationsUnder } from '../decide/annotations.js'
import { decideAfterProbe, planCreate, repositoryKey as repositoryKeyOf, type CreatePlan } from '../decide/create.js'
import { decideDelete, planDelete } from '../decide/delete.js'
import { describeSnapshot } from '../decide/snapshot-text.js'
import { backupSourceName } from '../engines/names.js'
import { CUSTOM_CA_KEY, MANAGED_BY_LABEL, MANAGED_BY_VALUE, RD_RESOURCE, REQUIRED_SOURCE_KEYS, RS_RESOURCE, VOLSYNC_GROUP, type ReplicationDestination } from '../engines/volsync.js'
import { findInFlight, mergeRules, pvcSelfFinding } from '../inflight/match.js'
import { MemoryIndex } from '../inflight/memory-index.js'
import { BUILTIN_RULES } from '../inflight/rules.js'
import type { InFlightFinding, InFlightRule, KubeObject, ResourceRef } from '../inflight/types.js'
import type { KubeApiError } from '../kube/errors.js'
import { apiVersionOf, describeResource } from '../kube/paths.js'
import { pvcState } from '../reconcile/controller.js'
import { isRecord, objectPath, Reader, str } from './reader.js'
import { PREFLIGHT_RESOURCES, readPreflightFacts } from './check-preflight.js'
import { clusterGaps, preflightDenial, preflightRestore, type PreflightFacts } from '../decide/preflight.js'
import { reconcilePvc } from '../reconcile/decide.js'
import type { EventSpec, ReconcileInput, ReconcileStep } from '../reconcile/types.js'
import { recentResticLock } from '../storage/index.js'
import type { BackupStore, LockResult, ProbeResult } from '../storage/types.js'

// ---------------------------------------------------------------------------------------------------
// The report

export interface ObjectRef {
  kind: string
  namespace: string
  name: string
}

export interface SourceSecretCheck {
  namespace: string
  name: string
  /** ok: readable with every required key; the others: the webhook would deny the restore (unreadable: could not tell). */
  state: 'ok' | 'missing' | 'incomplete' | 'unreadable'
  /** Names of its keys (never values). */
  keys?: string[]
  /** Required keys that are absent or empty. */
  missing?: string[]
  detail?: string
}

export interface CreateSection {
  /** What the mutating webhook would answer to a CREATE of this PVC as it is now. */
  outcome: 'restore' | 'fresh' | 'fresh-unverified' | 'skipped' | 'denied'
  /** Why, in one line (the webhook's own words for skips and denials). */
  reason: string
  /** Skip reason or denial cause (machine-readable). */
  cause?: string
  /** HTTP code of a denial. */
  code?: number
  /** The repository probed and restored from (the PVC's own or `restore-from`'s). */
  repositoryKey?: string
  location?: string
  restoreFrom?: string
  /** The objects the webhook would create. */
  objects: ObjectRef[]
  /** The ReplicationDestination it would create (holds no secret). */
  replicationDestination?: ReplicationDestination
  /** The repository Secret it would write: its name, its keys, and RESTIC_REPOSITORY (not a secret). Values are never read. */
  secret?: { name: string; resticRepository: string; keys: string[] }
  sourceSecret?: SourceSecretCheck
  /** The JSON Patch of the answer (annotations, labels, dataSourceRef). */
  patch?: JsonPatchOperation[]
  warnings: string[]
  /** When the PVC already has a data source: what it names, and what the admission recorded. */
  dataSourceRef?: { apiGroup?: string; kind: string; name: string }
  admitted?: { decision?: string; restoreSource?: string; checkedLocation?: string }
  /** The snapshot VolSync would restore (restic probe mode): its full id and how it reads. */
  snapshot?: { id: string; description: string }
}

export interface SourceSummary {
  name: string
  /** Created by smart-restore (label app.kubernetes.io/managed-by=smart-restore). */
  managed: boolean
  sourcePVC?: string
  schedule?: string
  retain?: Record<string, unknown>
  repository?: string
  copyMethod?: string
  deleting?: boolean
  /** e.g. `Synchronizing=True (SyncInProgress)`. */
  synchronizing?: string
  lastSyncStartTime?: string
  lastSyncTime?: string
  nextSyncTime?: string
  lastSyncDuration?: string
}

export interface BackupSection {
  reconcilerEnabled: boolean
  /** The reconciler's summary line, without the `<ns>/<pvc>: ` prefix. */
  summary: string
  existing: { replicationSource?: SourceSummary; replicationDestination?: SourceSummary }
  /** What the reconciler would do now, in words and as its plan steps (no Secret data). */
  steps: Array<{ kind: ReconcileStep['kind']; description: string }>
  events: EventSpec[]
  /** The reconciler asked the store (a PVC not restored from its own repository, without a source yet). */
  probed: boolean
  requeueAfterMs?: number
  /** VolSync's ReplicationSource is not served: the reconciler could not attach anything. */
  volsyncInstalled: boolean
}

export interface DeleteSection {
  allowed: boolean
  /** allow outcomes of decideDelete/planDelete, or `denied`. */
  outcome: 'clear' | 'override' | 'skipped' | 'namespace-deletion' | 'denied'
  message: string
  code?: number
  cause?: string
  findings: InFlightFinding[]
  lock?: LockResult
}

export interface RuleStatus {
  id: string
  system: string
  /** e.g. `replicationsources.volsync.backube/v1alpha1`. */
  resource: string
  /** listed: cluster-wide, like the service; namespace-only: the cluster-wide LIST was forbidden, listed in the PVC's namespace only. */
  state: 'listed' | 'namespace-only' | 'not-installed' | 'failed'
  objects?: number
  error?: string
}

export interface RulesSection {
  total: number
  active: number
  notInstalled: string[]
  failed: string[]
  namespaceOnly: string[]
  disabled: string[]
  rules: RuleStatus[]
}

export interface CheckReport {
  checkedAt: string
  server: string
  pvc: {
    namespace: string
    name: string
    uid?: string
    phase?: string
    tier?: string
    tierFrom?: 'label' | 'namespace-default'
    tierKnown?: boolean
    storage?: string
    storageClassName?: string
    accessModes?: string[]
    volumeMode?: string
    dataSourceRef?: { apiGroup?: string; kind: string; name: string }
    deletionTimestamp?: string
    /** smart-restore's annotations on the PVC (decision, restore-source, attention, ...). */
    annotations: Record<string, string>
  }
  namespace: {
    name: string
    /** false when it does not exist; null when it could not be read (see notes). */
    found: boolean | null
    labels?: Record<string, string>
    defaultTier?: string
    terminating: boolean
    excluded: boolean
  }
  store: {
    type: Config['store']['type']
    /** The PVC's own repository. */
    repositoryKey: string
    location: string
    resticRepository: string
    probe: ProbeResult
    probeMs: number
  }
  onCreate: CreateSection
  /** What every restore needs to be populated (VolumePopulator CRD, VolSync, snapshot API, classes). */
  restorePrerequisites: { state: 'present' | 'missing' | 'unknown'; missing: string[]; detail?: string }
  backupSource: BackupSection
  delete: DeleteSection
  rules: RulesSection
  /** Things worth knowing that change no decision (e.g. a namespace that could not be read). */
  notes: string[]
  /** Why a human should look; non-empty → exit code 1. */
  attention: string[]
}

/** The check could not be done: the PVC is not there, or the API did not answer. */
export class CheckError extends Error {
  override name = 'CheckError'
  constructor(
    readonly kind: 'not-found' | 'api',
    message: string,
  ) {
    super(message)
  }
}

export interface CheckOptions {
  kubeConfig: KubeConfig
  store: BackupStore
  config: Config
  namespace: string
  name: string
  /** Deadline of each GET (default config.kube.requestTimeoutMs). */
  requestTimeoutMs?: number
  /** Deadline of each LIST page (default 30 000). */
  listTimeoutMs?: number
  now?: () => Date
}

// ---------------------------------------------------------------------------------------------------
// Reading

const PVC_KIND = { group: '', version: 'v1', kind: 'PersistentVolumeClaim' }

/** An endpoint written as http://user:password@host must not print its password. */
export const withoutUserinfo = (text: string): string => text.replace(/(\w+:\/\/)[^/@\s]*@/g, '$1***@')


// ---------------------------------------------------------------------------------------------------
// The check

export async function checkPvc(opts: CheckOptions): Promise<CheckReport> {
  const { config, store, namespace, name } = opts
  const now = opts.now ?? (() => new Date())
  const reader = new Reader(opts.kubeConfig, opts.requestTimeoutMs ?? config.kube.requestTimeoutMs, opts.listTimeoutMs ?? 30_000)
  const notes: string[] = []
  const attention: string[] = []
  const server = opts.kubeConfig.getCurrentCluster()?.server ?? ''
  const id = `${namespace}/${name}`

  // --- the PVC and its namespace ------------------------------------------------------------------
  let pvcObj: KubeObject | undefined
  try {
    pvcObj = await reader.get(`/api/v1/namespaces/${encodeURIComponent(namespace)}/persistentvolumeclaims/${encodeURIComponent(name)}`, `PersistentVolumeClaim ${id}`)
  } catch (err) {
    throw new CheckError('api', `cannot read PersistentVolumeClaim ${id} from ${server}: ${(err as KubeApiError).message}`)
  }
  if (!pvcObj) throw new CheckError('not-found', `PersistentVolumeClaim ${id} not found (${server})`)

  let nsObj: KubeObject | undefined
  let nsReadable = true
  try {
    nsObj = await reader.get(`/api/v1/namespaces/${encodeURIComponent(namespace)}`, `Namespace ${namespace}`)
  } catch (err) {
    nsReadable = false
    notes.push(`namespace ${namespace} could not be read, so its default tier is not known: ${(err as Error).message}`)
  }
  const nsLabels = nsObj?.metadata.labels
  const nsDefaultTier = str(nsLabels?.[config.namespaceDefaultTierLabel])
  const nsMeta = nsObj?.metadata as { deletionTimestamp?: string } | undefined
  const terminating = Boolean(nsMeta?.deletionTimestamp) || (nsObj?.status as { phase?: string } | undefined)?.phase === 'Terminating'

  const state = pvcState(pvcObj)
  const spec = isRecord(pvcObj.spec) ? pvcObj.spec : {}
  const labelTier = state.labels[config.tierLabel]
  const tier = labelTier ?? nsDefaultTier
  const ownAnnotations = annotationsUnder(state.annotations, [config.annotationPrefix])
  const pvcSection: CheckReport['pvc'] = {
    namespace,
    name,
    uid: str(state.uid),
    phase: state.phase,
    tier,
    tierFrom: labelTier !== undefined ? 'label' : tier !== undefined ? 'namespace-default' : undefined,
    tierKnown: tier === undefined ? undefined : Object.hasOwn(config.tiers, tier),
    storage: state.capacity,
    storageClassName: state.storageClassName ?? undefined,
    accessModes: state.accessModes,
    volumeMode: str(spec.volumeMode),
    dataSourceRef: state.dataSourceRef ? { ...state.dataSourceRef } : undefined,
    deletionTimestamp: state.deletionTimestamp,
    annotations: ownAnnotations,
  }
  const attentionNote = ownAnnotations[annotationKey(config, ANNOTATION.attention)]
  if (attentionNote) attention.push(`the PVC is annotated ${annotationKey(config, ANNOTATION.attention)}: ${attentionNote}`)

  // --- the store: the PVC's own repository ----------------------------------------------------------
  const ownKey = repositoryKeyOf(config, namespace, name)
  const probes = new Map<string, Promise<{ result: ProbeResult; ms: number }>>()
  const probe = (key: string) => {
    let p = probes.get(key)
    if (!p) {
      const started = performance.now()
      // Every snapshot, not only those a selection needs: check lists them, and shows the choice.
      p = store.probe(key, { readAll: true }).then((result) => ({ result, ms: Math.round(performance.now() - started) }))
      probes.set(key, p)
    }
    return p
  }
  const own = await probe(ownKey)
  const storeSection: CheckReport['store'] = {
    type: config.store.type,
    repositoryKey: ownKey,
    location: store.location(ownKey),
    resticRepository: withoutUserinfo(store.resticRepository(ownKey)),
    probe: own.result,
    probeMs: own.ms,
  }
  if (own.result.state === 'unknown' && tier !== undefined) {
    attention.push(`the backup store could not be checked at ${own.result.location}: ${own.result.reason}`)
  }
  if (own.result.state === 'unreadable' && tier !== undefined) {
    attention.push(`the repository at ${own.result.location} cannot be read (${own.result.kind}): ${own.result.reason}`)
  }

  // --- discovery: VolSync and every rule's group/version ------------------------------------------
  const rules = mergeRules(BUILTIN_RULES, config.deletionGuard.rules, { disabled: config.deletionGuard.disabledRules })
  const byGv = new Map<string, ResourceRef>([[apiVersionOf(RS_RESOURCE), RS_RESOURCE]])
  for (const r of PREFLIGHT_RESOURCES) byGv.set(apiVersionOf(r), r)
  for (const r of rules) byGv.set(apiVersionOf(r.resource), r.resource)
  const discovered = new Map<string, Map<string, boolean> | null | Error>()
  await Promise.all(
    [...byGv].map(async ([gv, r]) => {
      try {
        discovered.set(gv, await reader.discover(r))
      } catch (err) {
        discovered.set(gv, err as Error)
      }
    }),
  )
  const served = (r: ResourceRef): boolean | Error => {
    const d = discovered.get(apiVersionOf(r))
    if (d instanceof Error) return d
    return Boolean(d?.has(r.plural))
  }

  // --- what a restore needs, and "if this PVC were created now" ------------------------------------
  const facts = await readPreflightFacts(reader, served)
  const gaps = facts instanceof Error ? undefined : clusterGaps(facts, { configuredStorageClass: config.restore.storageClassName, volumeSnapshotClassName: config.restore.volumeSnapshotClassName })
  const restorePrerequisites: CheckReport['restorePrerequisites'] =
    facts instanceof Error ? { state: 'unknown', missing: [], detail: facts.message } : { state: gaps!.length ? 'missing' : 'present', missing: gaps!.map((g) => g.text) }
  if (gaps?.length) attention.push(`restores cannot be populated: missing ${gaps.map((g) => g.text).join('; ')}`)
  if (facts instanceof Error) notes.push(`what a restore needs could not be read: ${facts.message}`)
  const preflight = facts instanceof Error ? undefined : facts
  const onCreate = await createSection(pvcObj, { config, store, namespace, name, nsLabels, reader, probe, attention, nowMs: now().getTime(), preflight })

  // --- the backup source ------------------------------------------------------------------------
  const rsServed = served(RS_RESOURCE)
  const rdServed = served(RD_RESOURCE)
  const volsyncInstalled = rsServed === true
  if (rsServed instanceof Error) notes.push(`VolSync discovery failed: ${rsServed.message}`)
  let source: KubeObject | undefined
  let destination: KubeObject | undefined
  if (rsServed !== false) {
    try {
      source = await reader.get(objectPath(RS_RESOURCE, namespace, backupSourceName(name)), `ReplicationSource ${namespace}/${backupSourceName(name)}`)
    } catch (err) {
      throw new CheckError('api', `cannot read ReplicationSource ${namespace}/${backupSourceName(name)}: ${(err as Error).message}`)
    }
  }
  const ref = state.dataSourceRef
  if (ref?.kind === 'ReplicationDestination' && (ref.apiGroup ?? VOLSYNC_GROUP) === VOLSYNC_GROUP && rdServed !== false) {
    try {
      destination = await reader.get(objectPath(RD_RESOURCE, namespace, ref.name), `ReplicationDestination ${namespace}/${ref.name}`)
    } catch (err) {
      throw new CheckError('api', `cannot read ReplicationDestination ${namespace}/${ref.name}: ${(err as Error).message}`)
    }
  }
  const input: ReconcileInput = {
    pvc: state,
    namespaceDefaultTier: nsDefaultTier,
    existing: { ...(source ? { source } : {}), ...(destination ? { destination } : {}) },
    nowMs: now().getTime(),
  }
  let plan = reconcilePvc(input, config)
  let probed = false
  if (plan.needsProbe) {
    probed = true
    plan = reconcilePvc({ ...input, probe: (await probe(plan.needsProbe.repositoryKey)).result }, config)
  }
  const prefix = `${id}: `
  const backupSource: BackupSection = {
    reconcilerEnabled: config.reconciler.enabled,
    summary: plan.summary.startsWith(prefix) ? plan.summary.slice(prefix.length) : plan.summary,
    existing: {
      ...(source ? { replicationSource: summarizeVolsync(source) } : {}),
      ...(destination ? { replicationDestination: summarizeVolsync(destination) } : {}),
    },
    steps: plan.steps.map((s) => ({ kind: s.kind, description: describeStep(s, store) })),
    events: plan.events,
    probed,
    ...(plan.requeueAfterMs !== undefined ? { requeueAfterMs: plan.requeueAfterMs } : {}),
    volsyncInstalled,
  }
  for (const e of plan.events) if (e.type === 'Warning') attention.push(`backup source: ${e.reason}: ${e.message}`)
  if (!volsyncInstalled && tier !== undefined && rsServed === false) {
    attention.push(`VolSync's ReplicationSource (${describeResource(RS_RESOURCE)}) is not installed: the PVC cannot be backed up`)
  }

  // --- the in-flight lists ----------------------------------------------------------------------
  const ruleStatus = new Map<string, RuleStatus>()
  const listed = new Map<string, KubeObject[]>()
  const inactive: string[] = []
  const lists = new Map<string, Promise<{ items: KubeObject[]; namespaceOnly?: string } | Error>>()
  const listOnce = (r: InFlightRule) => {
    // One LIST per resource and label selector, as the watched cache shares one watch.
    const key = `${describeResource(r.resource)}?${r.labelSelector ?? ''}`
    let p = lists.get(key)
    if (!p) {
      p = (async () => {
        try {
          return { items: await reader.list(r.resource, r.labelSelector) }
        } catch (err) {
          const e = err as KubeApiError
          if (e.kind !== 'forbidden') return e
          // Namespace-scoped rights: the PVC's namespace still says most of what is in flight.
          try {
            return { items: await reader.list(r.resource, r.labelSelector, namespace), namespaceOnly: e.message }
          } catch (err2) {
            return err2 as Error
          }
        }
      })()
      lists.set(key, p)
    }
    return p
  }
  await Promise.all(
    rules.map(async (r) => {
      const base = { id: r.id, system: r.system, resource: describeResource(r.resource) }
      const s = served(r.resource)
      if (s instanceof Error) {
        inactive.push(r.id)
        ruleStatus.set(r.id, { ...base, state: 'failed', error: s.message })
        return
      }
      if (!s) {
        inactive.push(r.id)
        ruleStatus.set(r.id, { ...base, state: 'not-installed' })
        return
      }
      const got = await listOnce(r)
      if (got instanceof Error) {
        inactive.push(r.id)
        ruleStatus.set(r.id, { ...base, state: 'failed', error: got.message })
        return
      }
      listed.set(r.id, got.items)
      ruleStatus.set(r.id, { ...base, state: got.namespaceOnly ? 'namespace-only' : 'listed', objects: got.items.length, ...(got.namespaceOnly ? { error: got.namespaceOnly } : {}) })
    }),
  )
  const statuses = rules.map((r) => ruleStatus.get(r.id)!)
  const ids = (st: RuleStatus['state']) => statuses.filter((s) => s.state === st).map((s) => s.id)
  const rulesSection: RulesSection = {
    total: rules.length,
    active: statuses.filter((s) => s.state === 'listed' || s.state === 'namespace-only').length,
    notInstalled: ids('not-installed'),
    failed: ids('failed'),
    namespaceOnly: ids('namespace-only'),
    disabled: [...config.deletionGuard.disabledRules],
    rules: statuses,
  }
  if (rulesSection.namespaceOnly.length) {
    notes.push(`listed only in namespace ${namespace} (a cluster-wide LIST was forbidden): ${rulesSection.namespaceOnly.join(', ')}; objects in other namespaces that name this PVC are not seen`)
  }

  // --- "delete now?" ------------------------------------------------------------------------------
  const deletePlan = planDelete({ operation: 'DELETE', kind: PVC_KIND, namespace, name, oldObject: pvcObj, dryRun: true }, config)
  let deleteSection: DeleteSection
  if (deletePlan.action === 'allow') {
    deleteSection = { allowed: true, outcome: deletePlan.outcome, message: deletePlan.reason, findings: [] }
  } else if (deletePlan.action === 'deny') {
    deleteSection = { allowed: false, outcome: 'denied', message: deletePlan.message, code: deletePlan.code, cause: deletePlan.cause, findings: [] }
  } else {
    const index = new MemoryIndex(rules, Object.fromEntries(listed), inactive)
    const self = pvcSelfFinding(deletePlan.pvc)
    const findings = [...(self ? [self] : []), ...findInFlight(deletePlan.pvc, rules, index)]
    const failed = rulesSection.failed
    const lock = await recentResticLock(store, deletePlan.repositoryKey, config)
    const verdict = decideDelete(
      deletePlan,
      {
        // A resource that could not be listed is a cache that never synced: the service would not vouch for it either.
        cachesSynced: failed.length === 0,
        notSyncedReason: failed.length ? `could not list ${failed.map((f) => ruleStatus.get(f)!.resource).filter((v, i, a) => a.indexOf(v) === i).join(', ')}` : undefined,
        namespaceTerminating: terminating,
        findings,
        lock,
      },
      config,
    )
    deleteSection =
      verdict.action === 'allow'
        ? { allowed: true, outcome: verdict.outcome, message: verdict.reason, findings, ...(lock ? { lock } : {}) }
        : { allowed: false, outcome: 'denied', message: verdict.message, code: verdict.code, cause: verdict.cause, findings, ...(lock ? { lock } : {}) }
    if (failed.length) {
      attention.push(`in-flight check incomplete: ${failed.map((f) => `${f} (${ruleStatus.get(f)!.error ?? 'failed'})`).join('; ')}`)
    }
  }

  return {
    checkedAt: now().toISOString(),
    restorePrerequisites,
    server,
    pvc: pvcSection,
    namespace: {
      name: namespace,
      found: nsReadable ? nsObj !== undefined : null,
      ...(nsLabels ? { labels: nsLabels } : {}),
      ...(nsDefaultTier !== undefined ? { defaultTier: nsDefaultTier } : {}),
      terminating,
      excluded: config.excludedNamespaces.includes(namespace),
    },
    store: storeSection,
    onCreate,
    backupSource,
    delete: deleteSection,
    rules: rulesSection,
    notes,
    attention,
  }
}

/** The exit code of `smart-restore check` for a completed check: 1 when something needs a human, else 0. */
export function exitCodeFor(report: CheckReport): 0 | 1 {
  return report.attention.length > 0 ? 1 : 0
}

// ---------------------------------------------------------------------------------------------------
// Sections

interface CreateContext {
  config: Config
  store: BackupStore
  namespace: string
  name: string
  nsLabels?: Record<string, string>
  reader: Reader
  probe: (key: string) => Promise<{ result: ProbeResult; ms: number }>
  attention: string[]
  /** The check's clock, for snapshot ages. */
  nowMs: number
  /** The restore preflight's facts; undefined when they could not be read (not checked then). */
  preflight?: PreflightFacts
}

/** The PVC as a CREATE would carry it: what the user wrote, not what the apiserver added since. */
function asCreateObject(obj: KubeObject): Record<string, unknown> {
  const md = obj.metadata as Record<string, unknown>
  const metadata: Record<string, unknown> = {}
  for (const k of ['name', 'namespace', 'generateName', 'labels', 'annotations', 'ownerReferences', 'finalizers']) if (md[k] !== undefined) metadata[k] = md[k]
  return { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata, spec: obj.spec ?? {} }
}

async function createSection(pvcObj: KubeObject, ctx: CreateContext): Promise<CreateSection> {
  const { config, store, namespace, name } = ctx
  const plan: CreatePlan = planCreate(
    { operation: 'CREATE', kind: PVC_KIND, namespace, name, object: asCreateObject(pvcObj), namespaceLabels: ctx.nsLabels },
    config,
  )
  if (plan.action === 'skip') {
    const section: CreateSection = { outcome: 'skipped', reason: plan.message, cause: plan.reason, objects: [], warnings: plan.warnings, ...(plan.patch ? { patch: plan.patch } : {}) }
    if (plan.reason === 'has-data-source') {
      const spec = (pvcObj.spec ?? {}) as { dataSourceRef?: CreateSection['dataSourceRef']; dataSource?: CreateSection['dataSourceRef'] }
      const ref = spec.dataSourceRef ?? spec.dataSource
      if (ref) section.dataSourceRef = { ...(ref.apiGroup ? { apiGroup: ref.apiGroup } : {}), kind: ref.kind, name: ref.name }
      const a = (pvcObj.metadata.annotations ?? {}) as Record<string, string>
      const admitted = {
        decision: a[annotationKey(config, ANNOTATION.decision)],
        restoreSource: a[annotationKey(config, ANNOTATION.restoreSource)],
        checkedLocation: a[annotationKey(config, ANNOTATION.checked)],
      }
      if (admitted.decision || admitted.restoreSource || admitted.checkedLocation) section.admitted = JSON.parse(JSON.stringify(admitted))
    }
    return section
  }
  if (plan.action === 'deny') {
    ctx.attention.push(`a CREATE of this PVC would be denied (${plan.code} ${plan.cause}): ${plan.message}`)
    return { outcome: 'denied', reason: plan.message, cause: plan.cause, code: plan.code, objects: [], warnings: [] }
  }

  const { result: probe } = await ctx.probe(plan.repositoryKey)
  const decision = decideAfterProbe(plan, probe, { resticRepository: store.resticRepository(plan.repositoryKey) }, config, ctx.nowMs)
  const base = {
    repositoryKey: plan.repositoryKey,
    location: probe.location,
    ...(plan.restoreFrom ? { restoreFrom: `${plan.restoreFrom.namespace}/${plan.restoreFrom.pvc}` } : {}),
  }
  if (decision.action === 'deny') {
    ctx.attention.push(`a CREATE of this PVC would be denied (${decision.code} ${decision.cause}): ${decision.message}`)
    return { outcome: 'denied', reason: decision.message, cause: decision.cause, code: decision.code, ...base, objects: [], warnings: [] }
  }
  if (decision.action === 'fresh') {
    if (!decision.verified && probe.state === 'unknown') ctx.attention.push(`a CREATE would start empty without checking the store (onUnknown=fresh): ${probe.reason}`)
    return {
      outcome: decision.verified ? 'fresh' : 'fresh-unverified',
      reason: probe.state === 'none' ? `no snapshot at ${probe.location} (${probe.detail})` : probe.state === 'unknown' ? `store not checked: ${probe.reason}; onUnknown=fresh` : 'detail' in probe ? probe.detail : probe.reason,
      ...base,
      objects: [],
      patch: decision.patch,
      warnings: decision.warnings,
    }
  }

  // restore: only if it can be populated, as the webhook decides.
  if (ctx.preflight) {
    const verdict = preflightRestore(ctx.preflight, {
      storageClassName: (pvcObj.spec as { storageClassName?: string } | undefined)?.storageClassName ?? undefined,
      configuredStorageClass: config.restore.storageClassName,
      volumeSnapshotClassName: config.restore.volumeSnapshotClassName,
    })
    const refusal = preflightDenial(verdict, { namespace, pvcName: name, skipRestoreKey: annotationKey(config, ANNOTATION.skipRestore) })
    if (refusal) {
      ctx.attention.push(`a CREATE of this PVC would be denied (${refusal.code} ${refusal.cause}): ${refusal.message}`)
      return { outcome: 'denied', reason: refusal.message, cause: refusal.cause, code: refusal.code, ...base, objects: [], warnings: [] }
    }
  }
  // the objects it would create, and whether its source Secret would let it.
  const rd = decision.destination
  const sourceSecret = await checkSourceSecret(ctx)
  if (sourceSecret.state === 'missing' || sourceSecret.state === 'incomplete') {
    ctx.attention.push(`a CREATE of this PVC would be denied: the restore's source Secret ${sourceSecret.namespace}/${sourceSecret.name} ${sourceSecret.detail}`)
  }
  return {
    outcome: 'restore',
    reason: decision.snapshot ? `snapshot ${describeSnapshot(decision.snapshot, ctx.nowMs)} at ${probe.location}` : `${probe.state === 'exists' ? probe.detail : 'snapshot'} at ${probe.location}`,
    ...(decision.snapshot ? { snapshot: { id: decision.snapshot.id, description: describeSnapshot(decision.snapshot, ctx.nowMs) } } : {}),
    ...base,
    // In the order the webhook makes them: the RD, then its Secret (owned by it).
    objects: [
      { kind: 'ReplicationDestination', namespace, name: rd.metadata.name },
      { kind: 'Secret', namespace, name: decision.secretName },
    ],
    replicationDestination: rd,
    secret: {
      name: decision.secretName,
      resticRepository: withoutUserinfo(decision.resticRepository),
      keys: [...new Set([...(sourceSecret.keys ?? REQUIRED_SOURCE_KEYS), 'RESTIC_REPOSITORY', ...(store.moverCa ? [CUSTOM_CA_KEY] : [])])].sort(),
    },
    sourceSecret,
    patch: decision.patch,
    warnings: decision.warnings,
  }
}

/** The source Secret the restore copies: does it exist with the required keys? Only key names are kept. */
async function checkSourceSecret(ctx: CreateContext): Promise<SourceSecretCheck> {
  const { namespace, name } = ctx.config.restore.sourceSecret
  const base = { namespace, name }
  let secret: KubeObject | undefined
  try {
    secret = await ctx.reader.get(`/api/v1/namespaces/${encodeURIComponent(namespace)}/secrets/${encodeURIComponent(name)}`, `Secret ${namespace}/${name}`)
  } catch (err) {
    return { ...base, state: 'unreadable', detail: `cannot be read here (${(err as KubeApiError).kind}); the service reads it with its own rights` }
  }
  if (!secret) return { ...base, state: 'missing', detail: 'does not exist' }
  const data = isRecord(secret.data) ? secret.data : {}
  const keys = Object.keys(data).sort()
  const missing = REQUIRED_SOURCE_KEYS.filter((k) => typeof data[k] !== 'string' || data[k] === '')
  secret = undefined // the values go no further
  if (missing.length) return { ...base, state: 'incomplete', keys, missing: [...missing], detail: `lacks ${missing.join(', ')}` }
  return { ...base, state: 'ok', keys }
}

function summarizeVolsync(obj: KubeObject): SourceSummary {
  const spec = isRecord(obj.spec) ? obj.spec : {}
  const status = isRecord(obj.status) ? obj.status : {}
  const restic = isRecord(spec.restic) ? spec.restic : {}
  const trigger = isRecord(spec.trigger) ? spec.trigger : {}
  const conditions = Array.isArray(status.conditions) ? status.conditions.filter(isRecord) : []
  const sync = conditions.find((c) => c.type === 'Synchronizing')
  const out: SourceSummary = { name: obj.metadata.name, managed: obj.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE }
  const set = <K extends keyof SourceSummary>(k: K, v: SourceSummary[K] | undefined) => {
    if (v !== undefined) out[k] = v
  }
  set('sourcePVC', str(spec.sourcePVC))
  set('schedule', str(trigger.schedule) ?? (trigger.manual !== undefined ? `manual (${String(trigger.manual)})` : undefined))
  set('retain', isRecord(restic.retain) ? restic.retain : undefined)
  set('repository', str(restic.repository))
  set('copyMethod', str(restic.copyMethod))
  if (obj.metadata.deletionTimestamp) out.deleting = true
  if (sync) set('synchronizing', `Synchronizing=${String(sync.status)}${str(sync.reason) ? ` (${sync.reason})` : ''}`)
  set('lastSyncStartTime', str(status.lastSyncStartTime))
  set('lastSyncTime', str(status.lastSyncTime))
  set('nextSyncTime', str(status.nextSyncTime))
  set('lastSyncDuration', str(status.lastSyncDuration))
  return out
}

export function formatRetain(retain: Record<string, unknown> | undefined): string {
  return retain ? Object.entries(retain).map(([k, v]) => `${k}=${String(v)}`).join(' ') : ''
}

function describeStep(step: ReconcileStep, store: BackupStore): string {
  switch (step.kind) {
    case 'apply-source': {
      const spec = (step.source.spec ?? {}) as { trigger?: { schedule?: string }; restic?: { retain?: Record<string, unknown> } }
      return (
        `apply Secret ${step.secretName} (RESTIC_REPOSITORY ${withoutUserinfo(store.resticRepository(step.repositoryKey))}) and ReplicationSource ${step.source.metadata.name} ` +
        `(schedule ${spec.trigger?.schedule ?? '?'}, retain ${formatRetain(spec.restic?.retain)})`
      )
    }
    case 'delete-source':
      return `delete ReplicationSource ${step.name} (the backups in the store are kept)`
    case 'own':
      return `add an ownerReference to the PVC on ${step.objectKind} ${step.name}`
    case 'annotate-pvc':
      // Long values (the refusal message) are shortened: the event says it in full.
      return `annotate the PVC ${Object.entries(step.annotations).map(([k, v]) => (v === null ? `${k}-` : `${k}=${JSON.stringify(v.length > 80 ? `${v.slice(0, 60)}…` : v)}`)).join(', ')}`
    case 'label-pvc':
      return `label the PVC ${Object.entries(step.labels).map(([k, v]) => `${k}=${v}`).join(', ')}`
  }
}
