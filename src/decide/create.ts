/**
 * The CREATE decision, as pure functions: no HTTP, no S3, no Kubernetes API.
 *
 *   planCreate(request, config)            → allow (skip) | deny | probe <repository>
 *   probeVerdict(target, probe, config)    → restore | fresh | deny (what the answer means)
 *   decideAfterProbe(target, probe, ...)   → the verdict with its objects and patch
 *
 * The caller does the probe in between and carries out the decision (creating objects, answering).
 */
import fastJsonPatch, { type Operation as JsonPatchOperation } from 'fast-json-patch'
import type { Config } from '../config/schema.js'
import type { DenyReason } from '../admission/respond.js'
import type { GroupVersionKind, Operation } from '../admission/types.js'
import { asPersistentVolumeClaim, type PersistentVolumeClaim } from '../engines/pvc.js'
import { DNS1123_LABEL, DNS1123_SUBDOMAIN } from '../engines/name-syntax.js'
import { repositorySecretName, restoreDestinationName } from '../engines/names.js'
import { buildReplicationDestination, VOLSYNC_GROUP, type ReplicationDestination, type RestoreOptions } from '../engines/volsync.js'
import { expandTemplate, type ProbeResult } from '../storage/types.js'
import type { Snapshot } from '../storage/restic/format.js'
import { ANNOTATION, annotationKey } from './annotations.js'
import { selectSnapshot } from './select-snapshot.js'
import { describeSnapshot, noEligibleMessage } from './snapshot-text.js'

export type SkipReason =
  | 'not-a-pvc-create'
  | 'excluded-namespace'
  | 'no-tier-label'
  | 'has-data-source'
  | 'opted-out'
  | 'generated-name'

export interface Denial {
  action: 'deny'
  code: number
  reason: DenyReason
  message: string
  /** Short machine-readable cause, for logs and metrics. */
  cause: string
}

export interface Skip {
  action: 'skip'
  reason: SkipReason
  message: string
  warnings: string[]
  auditAnnotations: Record<string, string>
  /** Only the namespace's default tier label, when the PVC had none: the tier stays visible. */
  patch?: JsonPatchOperation[]
}

export interface ProbeTarget {
  action: 'probe'
  namespace: string
  pvcName: string
  pvc: PersistentVolumeClaim
  tier: string
  /** Repository key probed and restored from (the PVC's own, or `restore-from`'s). */
  repositoryKey: string
  /** Set when restoring from another PVC's repository. */
  restoreFrom?: { namespace: string; pvc: string }
  options: RestoreOptions
  /** Labels the answer adds: the namespace's default tier when the PVC carries none. */
  labelsToAdd: Record<string, string>
}

export type CreatePlan = Skip | Denial | ProbeTarget

export interface CreateRequest {
  operation: Operation
  kind: GroupVersionKind
  namespace?: string
  name?: string
  object: unknown
  /** Labels of the PVC's namespace, when known (watched cache); they may name a default tier. */
  namespaceLabels?: Record<string, string>
}

// RFC 3339 as restic and VolSync accept it: date, time, optional fraction, Z or offset.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/

function skip(reason: SkipReason, message: string, extra: Partial<Pick<Skip, 'warnings' | 'auditAnnotations'>> = {}): Skip {
  return { action: 'skip', reason, message, warnings: extra.warnings ?? [], auditAnnotations: extra.auditAnnotations ?? {} }
}

function invalid(cause: string, message: string): Denial {
  return { action: 'deny', code: 422, reason: 'Invalid', message, cause }
}

export function repositoryKey(config: Config, namespace: string, pvc: string): string {
  return expandTemplate(config.store.keyTemplate, { namespace, pvc })
}

function parseRestoreFrom(value: string, namespace: string, key: string, config: Config): { namespace: string; pvc: string } | Denial {
  const parts = value.trim().split('/')
  const [ns, name] = parts.length === 1 ? [namespace, parts[0]!] : parts.length === 2 ? [parts[0]!, parts[1]!] : ['', '']
  if (!DNS1123_LABEL.test(ns) || !DNS1123_SUBDOMAIN.test(name) || name.length > 253) {
    return invalid('bad-restore-from', `annotation ${key}=${JSON.stringify(value)} is not valid: use <pvc> or <namespace>/<pvc>, e.g. ${namespace}/data`)
  }
  if (ns !== namespace && !config.restore.allowCrossNamespaceRestoreFrom) {
    return {
      action: 'deny',
      code: 403,
      reason: 'Forbidden',
      cause: 'cross-namespace-restore-from',
      message: `annotation ${key}=${JSON.stringify(value)} names another namespace; restoring another namespace's data is disabled (restore.allowCrossNamespaceRestoreFrom)`,
    }
  }
  return { namespace: ns, pvc: name }
}

function parseRestoreOptions(annotations: Record<string, string>, config: Config): RestoreOptions | Denial {
  const options: RestoreOptions = {}
  const asOfKey = annotationKey(config, ANNOTATION.restoreAsOf)
  const asOf = annotations[asOfKey]
  if (asOf !== undefined) {
    if (!RFC3339.test(asOf.trim()) || Number.isNaN(Date.parse(asOf.trim()))) {
      return invalid('bad-restore-as-of', `annotation ${asOfKey}=${JSON.stringify(asOf)} is not valid: use an RFC 3339 time such as 2026-11-20T03:00:00Z`)
    }
    options.restoreAsOf = asOf.trim()
  }
  const previousKey = annotationKey(config, ANNOTATION.restorePrevious)
  const previous = annotations[previousKey]
  if (previous !== undefined) {
    if (!/^\d{1,4}$/.test(previous.trim())) {
      return invalid('bad-restore-previous', `annotation ${previousKey}=${JSON.stringify(previous)} is not valid: use a whole number of snapshots to skip back, 0 to 9999 (0 = newest)`)
    }
    options.previous = Number(previous.trim())
  }
  return options
}

/** First half of the decision: everything that can be decided without looking at the store. */
export function planCreate(req: CreateRequest, config: Config): CreatePlan {
  if (req.operation !== 'CREATE' || req.kind.group !== '' || req.kind.kind !== 'PersistentVolumeClaim') {
    return skip('not-a-pvc-create', `${req.operation} of ${req.kind.kind || 'an object'} is not a PVC CREATE; nothing to decide`)
  }
  const parsed = asPersistentVolumeClaim(req.object)
  if ('problem' in parsed) return invalid('malformed-pvc', `cannot read the PersistentVolumeClaim: ${parsed.problem}`)
  const pvc = parsed.pvc
  const namespace = req.namespace || pvc.metadata.namespace || ''
  if (namespace === '') return invalid('no-namespace', 'the PersistentVolumeClaim has no namespace')
  if (config.excludedNamespaces.includes(namespace)) {
    return skip('excluded-namespace', `namespace ${namespace} is excluded from smart-restore`)
  }

  const labels = pvc.metadata.labels ?? {}
  const tiers = Object.keys(config.tiers)
  let tier = labels[config.tierLabel]
  const labelsToAdd: Record<string, string> = {}
  if (tier === undefined) {
    const fallback = req.namespaceLabels?.[config.namespaceDefaultTierLabel]
    if (fallback === undefined) return skip('no-tier-label', `no ${config.tierLabel} label`)
    if (!tiers.includes(fallback)) {
      return invalid('unknown-namespace-default-tier', `namespace ${namespace} has label ${config.namespaceDefaultTierLabel}=${JSON.stringify(fallback)}, which is not a backup tier; valid tiers: ${tiers.join(', ')}`)
    }
    // The namespace's default applies, and the label makes it visible on the PVC (and to selectors).
    tier = fallback
    labelsToAdd[config.tierLabel] = tier
  } else if (!tiers.includes(tier)) {
    return invalid('unknown-tier', `label ${config.tierLabel}=${JSON.stringify(tier)} is not a backup tier; valid tiers: ${tiers.join(', ')}`)
  }
  const labelled = (s: Skip): Skip => (Object.keys(labelsToAdd).length ? { ...s, patch: patchFor(pvc, {}, undefined, labelsToAdd) } : s)

  const existingSource = pvc.spec.dataSourceRef ?? pvc.spec.dataSource
  if (existingSource) {
    return labelled(skip('has-data-source', `spec.dataSourceRef/dataSource already names ${existingSource.kind} ${existingSource.name}; the PVC is populated from it`))
  }

  const annotations = pvc.metadata.annotations ?? {}
  const skipKey = annotationKey(config, ANNOTATION.skipRestore)
  const optOut = annotations[skipKey]
  if (optOut !== undefined) {
    if (optOut.trim() === '') {
      return invalid('opt-out-without-reason', `annotation ${skipKey} needs a reason as its value, e.g. ${skipKey}: "new volume, old data not wanted"; it stays on the PVC as the record of why no restore was checked`)
    }
    return labelled(skip('opted-out', `restore check skipped by ${skipKey}: ${optOut.trim()}`, {
      warnings: [`smart-restore: restore check skipped (${skipKey}): ${optOut.trim()}`],
      auditAnnotations: { 'opt-out-reason': optOut.trim() },
    }))
  }

  const fromKey = annotationKey(config, ANNOTATION.restoreFrom)
  const fromValue = annotations[fromKey]
  const pvcName = pvc.metadata.name || req.name || ''
  if (pvcName === '') {
    if (fromValue !== undefined) return invalid('generated-name-restore-from', `annotation ${fromKey} needs a fixed metadata.name; the PVC only has generateName`)
    return labelled(skip('generated-name', 'the PVC has only generateName, so no earlier backup can belong to it', {
      warnings: ['smart-restore: PVC uses generateName; no restore is possible for a name not yet chosen'],
    }))
  }
  if (pvc.spec.volumeMode === 'Block') {
    return invalid('block-volume', `label ${config.tierLabel}=${tier} asks for restic backups, but restic backs up filesystems and this PVC has volumeMode Block`)
  }
  if (!pvc.spec.resources?.requests?.storage) {
    return invalid('no-capacity', 'spec.resources.requests.storage is required to size a restored volume')
  }

  let restoreFrom: { namespace: string; pvc: string } | undefined
  if (fromValue !== undefined) {
    const from = parseRestoreFrom(fromValue, namespace, fromKey, config)
    if ('action' in from) return from
    if (from.namespace !== namespace || from.pvc !== pvcName) restoreFrom = from
  }
  const options = parseRestoreOptions(annotations, config)
  if ('action' in options) return options

  const source = restoreFrom ?? { namespace, pvc: pvcName }
  return {
    action: 'probe',
    namespace,
    pvcName,
    pvc,
    tier,
    repositoryKey: repositoryKey(config, source.namespace, source.pvc),
    restoreFrom,
    options,
    labelsToAdd,
  }
}

export interface RestoreDecision {
  action: 'restore'
  destination: ReplicationDestination
  /** Name of the per-PVC repository Secret; its data is filled from the source Secret at execution. */
  secretName: string
  resticRepository: string
  /** The snapshot VolSync will restore (restic probe mode); absent in list/head modes, which cannot tell. */
  snapshot?: Snapshot
  patch: JsonPatchOperation[]
  warnings: string[]
  auditAnnotations: Record<string, string>
}

export interface FreshDecision {
  action: 'fresh'
  /** False when the store could not be checked and config.onUnknown said to go ahead anyway. */
  verified: boolean
  patch: JsonPatchOperation[]
  warnings: string[]
  auditAnnotations: Record<string, string>
}

export type CreateDecision = RestoreDecision | FreshDecision | Denial

export interface RepositoryAddress {
  /** The repository as restic (and VolSync's Secret) names it, e.g. `s3:https://host/bucket/ns/pvc`. */
  resticRepository: string
}

/** JSON Patch turning `pvc` into `pvc` + annotations (+ dataSourceRef), computed as a diff so it is exact. */
function patchFor(pvc: PersistentVolumeClaim, annotations: Record<string, string>, dataSourceRef?: PersistentVolumeClaim['spec']['dataSourceRef'], labels: Record<string, string> = {}): JsonPatchOperation[] {
  // Copies of only the levels that change: the diff skips subtrees the two share (same object).
  const mutated: PersistentVolumeClaim = { ...pvc, metadata: { ...pvc.metadata }, spec: { ...pvc.spec } }
  if (Object.keys(annotations).length) mutated.metadata.annotations = { ...(mutated.metadata.annotations ?? {}), ...annotations }
  if (Object.keys(labels).length) mutated.metadata.labels = { ...(mutated.metadata.labels ?? {}), ...labels }
  if (dataSourceRef) mutated.spec.dataSourceRef = dataSourceRef
  return fastJsonPatch.compare(pvc, mutated)
}

function unknownDenial(target: ProbeTarget, probe: Extract<ProbeResult, { state: 'unknown' }>, config: Config): Denial {
  const skipKey = annotationKey(config, ANNOTATION.skipRestore)
  return {
    action: 'deny',
    code: 503,
    reason: 'ServiceUnavailable',
    cause: `store-unknown-${probe.kind}`,
    message:
      `smart-restore could not check the backup store for ${target.namespace}/${target.pvcName} at ${probe.location}: ${probe.reason}. ` +
      `The PVC was not created, so no empty volume can be backed up over your data. Retrying is safe (Argo CD and kubectl retry); ` +
      `to create it without checking, annotate it ${skipKey}: "<reason>".`,
  }
}

/** Where the repository password comes from, as denials name it. */
export function passwordSourceName(config: Config): string {
  const { namespace, name } = config.restore.sourceSecret
  return config.store.passwordFile ? `the file ${config.store.passwordFile} (store.passwordFile)` : `RESTIC_PASSWORD of Secret ${namespace}/${name} (restore.sourceSecret)`
}

function unreadableDenial(target: ProbeTarget, probe: Extract<ProbeResult, { state: 'unreadable' }>, config: Config): Denial {
  const skipKey = annotationKey(config, ANNOTATION.skipRestore)
  const what =
    probe.kind === 'password'
      ? `${passwordSourceName(config)} does not open it`
      : probe.kind === 'corrupt'
        ? 'a file of it does not authenticate or is not what restic writes'
        : 'it is not a complete restic repository'
  return {
    action: 'deny',
    code: 500,
    reason: 'InternalError',
    cause: `repository-unreadable-${probe.kind}`,
    message:
      `${probe.location} holds backups of ${target.namespace}/${target.pvcName}, but ${what}: ${probe.reason}. ` +
      `VolSync's mover would fail the same way and leave the PVC Pending, so it was not created. ` +
      (probe.kind === 'password' ? `Put the repository's password in ${passwordSourceName(config)} and retry` : `Check the repository with \`restic check\` and retry`) +
      `; to create it empty on purpose, annotate it ${skipKey}: "<reason>".`,
  }
}

/** What a probe answer means for this PVC, before anything is built: restore, start empty (checked or not), or deny. */
export type ProbeVerdict =
  /** `snapshot`: the one VolSync will restore, when the probe read the repository (restic mode). */
  | { action: 'restore'; snapshot?: Snapshot }
  | { action: 'fresh'; verified: boolean }
  | Denial

export function probeVerdict(target: ProbeTarget, probe: ProbeResult, config: Config): ProbeVerdict {
  if (probe.state === 'exists') {
    if (!probe.restic) return { action: 'restore' } // list/head mode: a snapshot file exists, which one is not known
    const outcome = selectSnapshot(probe.restic.snapshots, target.options)
    if (outcome.selected) return { action: 'restore', snapshot: outcome.selected }
    return invalid(
      `no-eligible-snapshot-${outcome.why ?? 'no-data-path'}`,
      noEligibleMessage(outcome, {
        location: probe.location,
        total: probe.restic.total,
        snapshots: probe.restic.snapshots,
        selection: target.options,
        keys: { asOf: annotationKey(config, ANNOTATION.restoreAsOf), previous: annotationKey(config, ANNOTATION.restorePrevious), skip: annotationKey(config, ANNOTATION.skipRestore) },
      }),
    )
  }
  if (probe.state === 'unreadable') return unreadableDenial(target, probe, config)
  if (probe.state === 'none') {
    if (!target.restoreFrom) return { action: 'fresh', verified: true }
    // An explicit request to restore from somewhere that has nothing is a mistake, not a fresh start.
    const from = `${target.restoreFrom.namespace}/${target.restoreFrom.pvc}`
    return invalid('restore-from-empty', `annotation ${annotationKey(config, ANNOTATION.restoreFrom)} names ${from}, but ${probe.location} holds no snapshot (${probe.detail})`)
  }
  if (config.onUnknown === 'fresh' && !target.restoreFrom) return { action: 'fresh', verified: false }
  return unknownDenial(target, probe, config)
}

/** Second half of the decision: the probe's verdict, with the objects and the patch it takes. */
export function decideAfterProbe(target: ProbeTarget, probe: ProbeResult, repo: RepositoryAddress, config: Config, nowMs: number = Date.now()): CreateDecision {
  const verdict = probeVerdict(target, probe, config)
  if (verdict.action === 'deny') return verdict
  const decisionKey = annotationKey(config, ANNOTATION.decision)
  const checkedKey = annotationKey(config, ANNOTATION.checked)
  const from = target.restoreFrom ? `${target.restoreFrom.namespace}/${target.restoreFrom.pvc}` : undefined

  if (verdict.action === 'restore' && probe.state === 'exists') {
    const secretName = repositorySecretName(target.pvcName, target.restoreFrom ? target.repositoryKey : undefined)
    const destination = buildReplicationDestination({
      config,
      pvc: target.pvc,
      namespace: target.namespace,
      pvcName: target.pvcName,
      name: restoreDestinationName(target.pvcName),
      repositorySecret: secretName,
      location: probe.location,
      options: target.options,
    })
    const snapshot = verdict.snapshot ? describeSnapshot(verdict.snapshot, nowMs) : undefined
    const annotations: Record<string, string> = {
      [decisionKey]: 'restore',
      [annotationKey(config, ANNOTATION.restoreSource)]: probe.location,
      [annotationKey(config, ANNOTATION.replicationDestination)]: destination.metadata.name,
    }
    // Without the age: an annotation is a record, and "(5h ago)" is only true for a moment.
    if (snapshot) annotations[annotationKey(config, ANNOTATION.restoreSnapshot)] = snapshot.replace(/ \([^)]*\)$/, '')
    const pointInTime = [
      target.options.restoreAsOf !== undefined ? `as of ${target.options.restoreAsOf}` : '',
      target.options.previous !== undefined ? `${target.options.previous} before newest` : '',
    ].filter(Boolean)
    const origin = `from ${probe.location}${pointInTime.length ? ` (${pointInTime.join(', ')})` : ''}`
    // Short warnings (the apiserver asks for ≤ 120 characters each): the snapshot first, then where
    // from. List and head modes only know that a snapshot file exists, not which one the mover takes.
    const warnings = snapshot
      ? [`smart-restore: restoring snapshot ${snapshot}`, `smart-restore: ${origin}`]
      : [`smart-restore: restoring ${origin}`, `smart-restore: which snapshot VolSync restores is not checked (probe.mode=${config.store.probe.mode})`]
    return {
      action: 'restore',
      destination,
      secretName,
      resticRepository: repo.resticRepository,
      ...(verdict.snapshot ? { snapshot: verdict.snapshot } : {}),
      patch: patchFor(target.pvc, annotations, { apiGroup: VOLSYNC_GROUP, kind: 'ReplicationDestination', name: destination.metadata.name }, target.labelsToAdd),
      warnings,
      auditAnnotations: { decision: 'restore', source: probe.location, ...(verdict.snapshot ? { snapshot: verdict.snapshot.id } : {}), ...(from ? { 'restore-from': from } : {}) },
    }
  }

  if (probe.state === 'none') {
    return {
      action: 'fresh',
      verified: true,
      patch: patchFor(target.pvc, { [decisionKey]: 'fresh', [checkedKey]: probe.location }, undefined, target.labelsToAdd),
      warnings: [`smart-restore: no backup at ${probe.location}; starting empty`],
      auditAnnotations: { decision: 'fresh', checked: probe.location },
    }
  }

  // Unknown, and onUnknown=fresh lets it start empty (the verdict denied every other unknown).
  if (probe.state !== 'unknown') throw new Error(`unreachable: verdict ${verdict.action} on probe state ${probe.state}`)
  return {
    action: 'fresh',
    verified: false,
    patch: patchFor(target.pvc, { [decisionKey]: 'fresh-unverified', [checkedKey]: probe.location }, undefined, target.labelsToAdd),
    warnings: [`smart-restore: backup store not checked (${probe.kind}); starting empty as onUnknown=fresh says`],
    auditAnnotations: { decision: 'fresh-unverified', checked: probe.location, 'unknown-reason': probe.reason },
  }
}
