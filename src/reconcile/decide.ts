/**
 * The backup-source decision, as a pure function: no Kubernetes API, no S3, no clock.
 *
 *   reconcilePvc(input, config) → plan { steps, events, counters, needsProbe?, requeueAfterMs? }
 *
 * It keeps every labelled PVC backed up by a VolSync ReplicationSource `<pvc>-backup` of
 * smart-restore, and the one rule it never breaks is design.md §5's: **a fresh volume is never
 * backed up over an existing repository.** An empty volume's hourly backups would roll the good
 * snapshots out of retention within a day, so a PVC that was not restored from its own repository is
 * only attached once the store says the repository holds nothing, or a human acknowledged it.
 *
 * The plan is recomputed from the cached state on every event and resync, by every replica: equal
 * inputs give equal plans, and a PVC that is already as desired gives an empty one.
 */
import type { Config } from '../config/schema.js'
import { ANNOTATION, annotationKey } from '../decide/annotations.js'
import { repositoryKey } from '../decide/create.js'
import { backupSourceName, repositorySecretName } from '../engines/names.js'
import {
  buildReplicationSource,
  MANAGED_BY_LABEL,
  MANAGED_BY_VALUE,
  SOURCE_RESTIC_FIELDS,
  sourceTierLabel,
  VOLSYNC_GROUP,
  VOLSYNC_VERSION,
  type ReplicationSource,
} from '../engines/volsync.js'
import type { KubeObject } from '../inflight/types.js'
import { trimSlashes } from '../storage/common.js'
import { quoteMover, restoreOutcome, type RestoreOutcome } from './restore-outcome.js'
import { selectSnapshot } from '../decide/select-snapshot.js'
import { snapshotTime } from '../decide/snapshot-text.js'
import type { ProbeResult } from '../storage/types.js'
import type { EventSpec, PvcState, ReconcileInput, ReconcilePlan, ReconcileStep } from './types.js'

/** Retry after the store could not be checked; the controller dedupes the repeated Warning. */
export const STORE_UNKNOWN_REQUEUE_MS = 60_000
/** Look again when our ReplicationSource is on its way out (a delete we or someone else started). */
export const SOURCE_DELETING_REQUEUE_MS = 10_000

/** Counter names (metric labels) the plans use. */
export const COUNTER = {
  unknownTier: 'unknown_tier',
  foreignObject: 'foreign_object',
  refusedExistingBackup: 'refused_existing_backup',
  storeUnknown: 'store_unknown',
  /** The repository holds snapshots, but none VolSync would restore (another tool's, or a shared one). */
  refusedForeignSnapshots: 'refused_foreign_snapshots',
  /** The repository holds snapshots the configured password does not open, or a damaged file. */
  repositoryUnreadable: 'repository_unreadable',
  /** Attached over existing backups because a human acknowledged it: worth seeing on a dashboard. */
  backupOverExisting: 'backup_over_existing_acknowledged',
  /** The restore's mover found nothing to restore: the PVC is empty, no backup source attached. */
  restoreEmpty: 'restore_empty',
  /** The restore's mover failed. */
  restoreFailed: 'restore_failed',
  /** The restore finished but its status does not say what it restored (VolSync without mover status). */
  restoreUnverified: 'restore_unverified',
  /** A restoring PVC is still Pending past reconciler.restorePendingAfterMs. */
  restorePending: 'restore_pending',
  /** The orphan sweep deleted a restore RD whose PVC never came (reconcile/orphans.ts). */
  orphanRestoreRemoved: 'orphan_restore_removed',
} as const

/** Look again at a restore that is still running while its PVC is already Bound. */
export const RESTORE_RUNNING_REQUEUE_MS = 30_000

function isOurs(obj: KubeObject): boolean {
  return obj.metadata.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE
}

function plan(summary: string, extra: Partial<ReconcilePlan> = {}): ReconcilePlan {
  return { summary, steps: [], events: [], counters: [], ...extra }
}

export function reconcilePvc(input: ReconcileInput, config: Config): ReconcilePlan {
  const { pvc, existing } = input
  const id = `${pvc.namespace}/${pvc.name}`

  if (config.excludedNamespaces.includes(pvc.namespace)) {
    return plan(`${id}: namespace ${pvc.namespace} is excluded from smart-restore; nothing to do`)
  }
  // A PVC on its way out gets nothing new; its ReplicationSource goes with it (ownerReference).
  if (pvc.deletionTimestamp) return plan(`${id}: the PVC is being deleted; nothing to do`)

  const labelTier = pvc.labels[config.tierLabel]
  // An empty namespace label value is read as "no default", not as a tier named "".
  const defaultTier = input.namespaceDefaultTier === '' ? undefined : input.namespaceDefaultTier
  const tier = labelTier ?? defaultTier

  if (tier === undefined) return untiered(input, config, id)

  if (!Object.hasOwn(config.tiers, tier)) {
    // A typo must never cost a PVC its backups: nothing is deleted, changed or labelled.
    const valid = Object.keys(config.tiers).join(', ')
    const where =
      labelTier !== undefined
        ? `label ${config.tierLabel}=${JSON.stringify(tier)}`
        : `the namespace's default tier (label ${config.namespaceDefaultTierLabel}=${JSON.stringify(tier)})`
    const message = `${where} is not a backup tier; valid tiers: ${valid}. The backup source (if any) is left as it is`
    return plan(`${id}: unknown tier ${JSON.stringify(tier)}; nothing changed`, {
      events: [{ type: 'Warning', reason: 'UnknownTier', message }],
      counters: [COUNTER.unknownTier],
    })
  }

  const steps: ReconcileStep[] = []
  const events: EventSpec[] = []
  const counters: string[] = []
  const notes: string[] = []

  if (labelTier === undefined) {
    // The webhook labels PVCs at creation; this covers the ones created before the namespace got its
    // default, so the PVC itself says how it is backed up (and the webhook restores it by that label).
    steps.push({ kind: 'label-pvc', labels: { [config.tierLabel]: tier } })
    notes.push(`labelled ${config.tierLabel}=${tier} from the namespace default`)
  }
  // Owning the restore objects does not wait for Bound: a PVC deleted while still Pending must take
  // its RD and Secrets with it.
  const owned = ownSteps(input)
  steps.push(...owned)
  if (owned.length) notes.push(`owning ${owned.map((s) => `${s.objectKind} ${s.name}`).join(', ')}`)

  const done = (summary: string, extra: Partial<ReconcilePlan> = {}): ReconcilePlan =>
    plan([`${id}: ${summary}`, ...notes].join('; '), { steps, events, counters, ...extra })

  const attentionKey = annotationKey(config, ANNOTATION.attention)
  const ackKey = annotationKey(config, ANNOTATION.backupOverExisting)
  const refuse = (reason: string, message: string, counter: string, summary: string, requeueAfterMs?: number): ReconcilePlan => {
    if (pvc.annotations[attentionKey] !== message) steps.push({ kind: 'annotate-pvc', annotations: { [attentionKey]: message } })
    events.push({ type: 'Warning', reason, message })
    counters.push(counter)
    return done(summary, requeueAfterMs === undefined ? {} : { requeueAfterMs })
  }

  if (pvc.phase !== 'Bound') {
    // A source on an unbound or still-populating PVC would back up nothing, or an empty volume
    // before the restore filled it (design.md §5): attach once Bound (the populator binds after the restore).
    const restoring = restoringInto(pvc, config)
    if (!restoring) return done(`waiting for the PVC to be Bound (phase ${pvc.phase ?? 'unknown'})`)
    const outcome = restoreOutcome(ourDestination(input))
    const rdName = input.existing.destination?.metadata.name ?? pvc.dataSourceRef?.name ?? ''
    if (outcome.state === 'failed') {
      // VolSync keeps retrying the Job; the PVC stays Pending until one succeeds. Say so now.
      return refuse(
        'RestoreFailed',
        `the restore from ${restoring} failed (ReplicationDestination ${rdName}): ${quoteMover(outcome.lines)}; the PVC stays Pending until a restore succeeds. ` +
          `Fix the cause (repository, credentials, CA), or delete the PVC and create it with ${annotationKey(config, ANNOTATION.skipRestore)}="<reason>" to start empty`,
        COUNTER.restoreFailed,
        `restore from ${restoring} failed; waiting for the PVC to be Bound`,
      )
    }
    const age = pendingFor(pvc, input.nowMs)
    if (age !== undefined && age >= config.reconciler.restorePendingAfterMs) {
      const mover = outcome.state === 'absent' ? `ReplicationDestination ${rdName} not found` : outcome.lines.length ? `latest mover status: ${quoteMover(outcome.lines)}` : 'no mover has finished yet'
      events.push({
        type: 'Warning',
        reason: 'RestorePending',
        message: `still Pending ${Math.round(age / 60_000)} min after its restore from ${restoring} started (ReplicationDestination ${rdName}; ${mover}). See "kubectl describe replicationdestination ${rdName}" and the volsync-dst-${rdName} Job's logs`,
      })
      counters.push(COUNTER.restorePending)
      // Look again at the next resync anyway; this keeps the Event's count moving while it lasts.
      return done(`restore from ${restoring} pending for ${Math.round(age / 60_000)} min`, { requeueAfterMs: config.reconciler.restorePendingAfterMs })
    }
    events.push({ type: 'Normal', reason: 'RestoreStarted', message: `restoring from ${restoring}` })
    const left = age === undefined ? undefined : config.reconciler.restorePendingAfterMs - age
    return done(`waiting for the PVC to be Bound (phase ${pvc.phase ?? 'unknown'}); restoring from ${restoring}`, left === undefined ? {} : { requeueAfterMs: Math.max(1_000, left) })
  }

  const secretName = repositorySecretName(pvc.name)
  const key = repositoryKey(config, pvc.namespace, pvc.name)
  const sourceName = existing.source?.metadata.name ?? backupSourceName(pvc.name)
  const source = existing.source

  // Never modify what someone else made: neither the RS nor the Secret it would read.
  const foreign: string[] = []
  if (source && !isOurs(source)) foreign.push(`ReplicationSource ${source.metadata.name}`)
  if (existing.secret && !isOurs(existing.secret)) foreign.push(`Secret ${existing.secret.metadata.name}`)
  if (foreign.length) {
    for (const what of foreign) {
      events.push({ type: 'Warning', reason: 'ForeignObject', message: `${what} exists and was not created by smart-restore; not modified` })
    }
    counters.push(COUNTER.foreignObject)
    return done(`${foreign.join(' and ')} not created by smart-restore; not backing up over it`)
  }

  const desired = buildReplicationSource({ config, pvc, tier, name: sourceName, repositorySecret: secretName })
  const apply: ReconcileStep = { kind: 'apply-source', secretName, resticRepository: '', repositoryKey: key, source: desired }
  const schedule = desired.spec.trigger.schedule
  // Once the PVC is backed up, a refusal noted earlier is stale.
  const clearAttention = (): void => {
    if (pvc.annotations[attentionKey] !== undefined) steps.push({ kind: 'annotate-pvc', annotations: { [attentionKey]: null } })
  }

  if (source) {
    if (source.metadata.deletionTimestamp) {
      return done(`ReplicationSource ${sourceName} is being deleted; looking again shortly`, { requeueAfterMs: SOURCE_DELETING_REQUEUE_MS })
    }
    // The repository is ours already (the source exists): no probe, just keep it as the config says.
    const diffs = sourceDifferences(source, desired)
    clearAttention()
    if (diffs.length === 0) return done(`backed up by ReplicationSource ${sourceName} on tier ${tier}; up to date`)
    steps.push(apply)
    const oldTier = source.metadata.labels?.[sourceTierLabel(config)]
    if (oldTier !== tier) {
      events.push({ type: 'Normal', reason: 'TierChanged', message: `backup tier ${oldTier ?? '(none)'} → ${tier} (ReplicationSource ${sourceName}, schedule ${schedule})` })
    } else {
      events.push({ type: 'Normal', reason: 'BackupUpdated', message: `ReplicationSource ${sourceName} updated to tier ${tier}'s configuration (${diffs.join(', ')})` })
    }
    return done(`updating ReplicationSource ${sourceName} (${diffs.join(', ')})`)
  }

  // No source yet, Bound. Only a PVC restored from the repository it is about to back up to may be
  // attached without asking the store.
  const attach = (why: string, location: string, ack?: string): ReconcilePlan => {
    steps.push(apply)
    clearAttention()
    const ackNote = ack === undefined ? '' : `; ${annotationKey(config, ANNOTATION.backupOverExisting)} acknowledged: ${ack}`
    events.push({ type: 'Normal', reason: 'BackupAttached', message: `backing up to ${location} on tier ${tier} (schedule ${schedule})${ackNote}` })
    if (ack !== undefined) counters.push(COUNTER.backupOverExisting)
    return done(`attaching ReplicationSource ${sourceName} on tier ${tier}: ${why}`)
  }

  // What the restore (if any) put into the volume: only a restore that restored data from this
  // PVC's own repository lets the source attach without asking the store.
  const restoring = restoringInto(pvc, config)
  const outcome: RestoreOutcome = restoring ? restoreOutcome(ourDestination(input)) : { state: 'absent' }
  const ownRepository = restoredFromOwnRepository(pvc, config, key)
  if (outcome.state === 'restored' && ownRepository) {
    return attach(`restored snapshot ${outcome.snapshot} from its own repository`, knownLocation(pvc, config, key, input.probe))
  }
  const ack = pvc.annotations[ackKey]?.trim()
  if (ack) {
    // An explicit acknowledgement makes the store's answer irrelevant, so it is not asked.
    return attach(`backup over existing backups acknowledged: ${ack}`, knownLocation(pvc, config, key, input.probe), ack)
  }
  const rdName = input.existing.destination?.metadata.name ?? pvc.dataSourceRef?.name ?? ''
  const wayOut = `A backup source is attached only when a human says so: ${ackKey}="<reason>" (its first backup becomes the newest snapshot)`
  switch (outcome.state) {
    case 'empty':
      return refuse(
        'RestoreEmpty',
        `the restore from ${restoring} restored NOTHING (ReplicationDestination ${rdName}: ${quoteMover(outcome.lines)}): the volume is empty, and backing it up would make an empty snapshot the newest. ${wayOut}`,
        COUNTER.restoreEmpty,
        `restore from ${restoring} restored nothing; not attaching a backup source`,
      )
    case 'failed':
      return refuse(
        'RestoreFailed',
        `the restore from ${restoring} failed (ReplicationDestination ${rdName}: ${quoteMover(outcome.lines)}), yet the PVC is Bound: its volume may hold nothing or part of the data. ${wayOut}`,
        COUNTER.restoreFailed,
        `restore from ${restoring} failed; not attaching a backup source`,
      )
    case 'unverified':
      return refuse(
        'RestoreUnverified',
        `the restore from ${restoring} finished, but ReplicationDestination ${rdName} does not say what it restored (no restic "restoring <Snapshot …>" line in status.latestMoverStatus; VolSync older than 0.8?): ${quoteMover(outcome.lines)}. ${wayOut}`,
        COUNTER.restoreUnverified,
        `restore from ${restoring} unverified; not attaching a backup source`,
      )
    case 'running':
      // Bound before the mover finished: bound by hand, or a populator we do not know. Wait for it.
      return done(`restore from ${restoring} still running (ReplicationDestination ${rdName}); attaching once it has finished`, { requeueAfterMs: RESTORE_RUNNING_REQUEUE_MS })
    case 'restored':
    case 'absent':
      // A restore from ANOTHER PVC's repository says nothing about this one's; no restore of ours to
      // read (the RD is gone, never ran, or is not ours) is no evidence of data: ask the store.
      break
  }

  if (input.probe === undefined) {
    // Nothing else in this plan: the controller probes and calls again, and that plan carries every
    // step (labels, owners), so none is carried out twice.
    return plan(`${id}: checking ${key} for existing backups before attaching a backup source`, { needsProbe: { repositoryKey: key } })
  }

  const probe = input.probe
  if (probe.state === 'none') return attach(`no backup at ${probe.location} (${probe.detail})`, probe.location)

  if (probe.state === 'exists') {
    // Restic mode read the repository: "existing data" is a snapshot VolSync would restore. A
    // repository of only foreign snapshots is still refused (VolSync's retention would prune them
    // by host and path), but it is named as what it is. List/head modes cannot tell them apart.
    const selected = probe.restic ? selectSnapshot(probe.restic.snapshots) : undefined
    if (selected && !selected.selected) {
      const paths = [...new Set(probe.restic!.snapshots.flatMap((s) => s.paths))].slice(0, 5).join(', ') || '(none)'
      return refuse(
        'RefusedToAttach',
        `${probe.location} holds ${probe.restic!.total} snapshot(s), none of /data (paths ${paths}): not smart-restore's or VolSync's backups of this PVC; ` +
          `not attaching a backup source into that repository. Give the PVC its own repository, or acknowledge with ${ackKey}="<reason>"`,
        COUNTER.refusedForeignSnapshots,
        `refused to attach: ${probe.location} holds only snapshots VolSync would not restore (paths ${paths})`,
      )
    }
    const which = selected?.selected ? ` (newest restorable: ${selected.selected.id.slice(0, 8)} of ${snapshotTime(selected.selected)})` : ''
    return refuse(
      'RefusedToAttach',
      `backups exist at ${probe.location}${which}; not attaching a backup source over them: restore, or acknowledge with ${ackKey}="<reason>"`,
      COUNTER.refusedExistingBackup,
      `refused to attach: backups exist at ${probe.location} and the PVC was not restored from them`,
    )
  }

  if (probe.state === 'unreadable') {
    // Snapshots are there but cannot be read: they may well be this PVC's data. Not a retry loop:
    // a human must fix the password or the repository; the resync looks again.
    return refuse(
      'RepositoryUnreadable',
      `${probe.location} holds snapshots that cannot be read (${probe.kind}): ${probe.reason}; not attaching a backup source over them. ` +
        `Fix the repository password or the repository, or acknowledge with ${ackKey}="<reason>"`,
      COUNTER.repositoryUnreadable,
      `refused to attach: ${probe.location} cannot be read (${probe.kind})`,
    )
  }

  events.push({
    type: 'Warning',
    reason: 'StoreUnknown',
    message:
      `could not check ${probe.location} for existing backups: ${probe.reason}; ` +
      `no backup source is attached until it can be checked (retrying in ${STORE_UNKNOWN_REQUEUE_MS / 1000} s)`,
  })
  counters.push(COUNTER.storeUnknown)
  return done(`store unknown (${probe.kind}) for ${probe.location}; not attaching, retrying`, { requeueAfterMs: STORE_UNKNOWN_REQUEUE_MS })
}

/** No tier (no label, no namespace default): detach our source; never touch anyone else's. */
function untiered(input: ReconcileInput, config: Config, id: string): ReconcilePlan {
  const source = input.existing.source
  const why = `no ${config.tierLabel} label and no namespace default tier`
  if (!source) return plan(`${id}: ${why}; not backed up`)
  if (!isOurs(source)) return plan(`${id}: ${why}; ReplicationSource ${source.metadata.name} is not smart-restore's, left alone`)
  if (source.metadata.deletionTimestamp) return plan(`${id}: ${why}; ReplicationSource ${source.metadata.name} is already being deleted`)
  const step: ReconcileStep = { kind: 'delete-source', name: source.metadata.name }
  // The uid makes the delete a precondition-checked one: a source re-created meanwhile is not hit.
  if (source.metadata.uid) step.uid = source.metadata.uid
  return plan(`${id}: ${why}; deleting ReplicationSource ${source.metadata.name} (the backups are kept)`, {
    steps: [step],
    events: [
      {
        type: 'Normal',
        reason: 'BackupDetached',
        message: `tier label removed; ReplicationSource ${source.metadata.name} deleted; the backups in S3 are kept`,
      },
    ],
  })
}

/**
 * ownerReferences to the PVC on the restore objects the webhook made at admission, when the PVC had
 * no uid yet (the RD and Secret are created before the PVC is stored). Only ours, and only once.
 */
function ownSteps(input: ReconcileInput): Array<Extract<ReconcileStep, { kind: 'own' }>> {
  const { pvc, existing } = input
  if (!pvc.uid) return []
  const candidates: Array<[KubeObject | undefined, string, string]> = [
    [existing.destination, `${VOLSYNC_GROUP}/${VOLSYNC_VERSION}`, 'ReplicationDestination'],
    [existing.secret, 'v1', 'Secret'],
    [existing.restoreSecret, 'v1', 'Secret'],
  ]
  const steps: Array<Extract<ReconcileStep, { kind: 'own' }>> = []
  for (const [obj, apiVersion, objectKind] of candidates) {
    if (!obj || !isOurs(obj) || obj.metadata.deletionTimestamp) continue
    if (obj.metadata.ownerReferences?.some((r) => r.uid === pvc.uid)) continue
    steps.push({ kind: 'own', apiVersion, objectKind, name: obj.metadata.name })
  }
  return steps
}

/** smart-restore's ReplicationDestination the PVC's dataSourceRef names, when it is ours. */
function ourDestination(input: ReconcileInput): KubeObject | undefined {
  const rd = input.existing.destination
  return rd && isOurs(rd) && !rd.metadata.deletionTimestamp ? rd : undefined
}

/** How long the PVC has existed, when both clocks are known. */
function pendingFor(pvc: PvcState, nowMs: number | undefined): number | undefined {
  if (nowMs === undefined || !pvc.creationTimestamp) return undefined
  const created = Date.parse(pvc.creationTimestamp)
  return Number.isFinite(created) ? Math.max(0, nowMs - created) : undefined
}

/** Where the PVC is being restored from, while it is (a volsync RD data source and decision=restore). */
function restoringInto(pvc: PvcState, config: Config): string | undefined {
  const ref = pvc.dataSourceRef
  if (!ref || ref.kind !== 'ReplicationDestination' || (ref.apiGroup !== undefined && ref.apiGroup !== VOLSYNC_GROUP)) return undefined
  if (pvc.annotations[annotationKey(config, ANNOTATION.decision)] !== 'restore') return undefined
  return pvc.annotations[annotationKey(config, ANNOTATION.restoreSource)] ?? `ReplicationDestination ${ref.name}`
}

/**
 * decision=restore from the repository the new source will write to. A `restore-from` restore read
 * another PVC's repository and says nothing about this PVC's own one, so it counts as fresh there.
 * restore-source (the location restored from, `s3://bucket/<key>`) is the authority; it also catches
 * a keyTemplate changed since the restore (the source would write somewhere not restored from).
 */
function restoredFromOwnRepository(pvc: PvcState, config: Config, key: string): boolean {
  if (pvc.annotations[annotationKey(config, ANNOTATION.decision)] !== 'restore') return false
  const from = pvc.annotations[annotationKey(config, ANNOTATION.restoreFrom)]
  if (from !== undefined) {
    const parts = from.trim().split('/')
    const [ns, name] = parts.length === 1 ? [pvc.namespace, parts[0]] : [parts[0], parts[1]]
    if (parts.length > 2 || ns !== pvc.namespace || name !== pvc.name) return false
  }
  const restoredFrom = pvc.annotations[annotationKey(config, ANNOTATION.restoreSource)]
  return restoredFrom === undefined || trimSlashes(restoredFrom).endsWith(`/${trimSlashes(key)}`)
}

/** The repository's location for messages: the store's own words when we have them, else the annotations' or the key. */
function knownLocation(pvc: PvcState, config: Config, key: string, probe: ProbeResult | undefined): string {
  if (probe) return probe.location
  const k = trimSlashes(key)
  for (const name of [ANNOTATION.restoreSource, ANNOTATION.checked] as const) {
    const value = pvc.annotations[annotationKey(config, name)]
    if (value !== undefined && trimSlashes(value).endsWith(`/${k}`)) return value
  }
  return key
}

/**
 * What differs between an existing source of ours and the desired one, as field paths. Compared:
 * the labels/annotations/owner we set, sourcePVC, the schedule and every restic field we may set
 * (SOURCE_RESTIC_FIELDS: one we set before and no longer set is a difference too). Not compared:
 * what others own under server-side apply (status, VolSync's defaults, a user's paused/unlock/manual
 * trigger): applying would not change those, so they must not make the plan non-empty.
 */
export function sourceDifferences(existing: KubeObject, desired: ReplicationSource): string[] {
  const diffs: string[] = []
  const md = existing.metadata
  for (const [k, v] of Object.entries(desired.metadata.labels)) if (md.labels?.[k] !== v) diffs.push(`label ${k}`)
  const annotations = asRecord(md.annotations)
  for (const [k, v] of Object.entries(desired.metadata.annotations)) if (annotations[k] !== v) diffs.push(`annotation ${k}`)
  for (const owner of desired.metadata.ownerReferences ?? []) {
    if (!md.ownerReferences?.some((r) => r.uid === owner.uid)) diffs.push('ownerReferences')
  }
  const spec = asRecord(existing.spec)
  if (spec.sourcePVC !== desired.spec.sourcePVC) diffs.push('spec.sourcePVC')
  if (asRecord(spec.trigger).schedule !== desired.spec.trigger.schedule) diffs.push('spec.trigger.schedule')
  const restic = asRecord(spec.restic)
  for (const field of SOURCE_RESTIC_FIELDS) {
    if (!deepEqual(restic[field], desired.spec.restic[field])) diffs.push(`spec.restic.${field}`)
  }
  return diffs
}

function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {}
}

/** Structural equality of JSON values; key order does not matter (the apiserver does not keep it). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  const ra = a as Record<string, unknown>
  const rb = b as Record<string, unknown>
  const ka = Object.keys(ra).filter((k) => ra[k] !== undefined)
  const kb = Object.keys(rb).filter((k) => rb[k] !== undefined)
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(rb, k) && deepEqual(ra[k], rb[k]))
}
