/**
 * The DELETE decision, as pure functions over the PVC being deleted (the request's oldObject),
 * what the watched caches found in flight, and the configuration:
 *
 *   planDelete(request, config)              → allow (skip / override) | deny | check <pvc>
 *   decideDelete(check, observations, config) → allow | deny naming what is in flight
 *
 * A DELETE is never answered with a patch.
 */
import type { Config } from '../config/schema.js'
import type { AdmissionRequest } from '../admission/types.js'
import type { InFlightFinding, PvcIdentity } from '../inflight/types.js'
import type { LockResult } from '../storage/types.js'
import { ANNOTATION, annotationKey } from './annotations.js'
import { repositoryKey, type Denial } from './create.js'

export type DeleteRequest = Pick<AdmissionRequest, 'operation' | 'kind' | 'namespace' | 'name' | 'oldObject' | 'dryRun'>

export interface DeleteAllow {
  action: 'allow'
  /** skipped: not ours to judge; override: a human said so; clear: nothing in flight. */
  outcome: 'skipped' | 'override' | 'clear' | 'namespace-deletion'
  reason: string
  warnings: string[]
  auditAnnotations: Record<string, string>
}

export interface DeleteCheck {
  action: 'check'
  pvc: PvcIdentity
  /** The PVC's repository key, when it carries a tier label (for the restic lock check). */
  repositoryKey?: string
}

export type DeletePlan = DeleteAllow | Denial | DeleteCheck

const isObject = (v: unknown): v is Record<string, any> => typeof v === 'object' && v !== null && !Array.isArray(v)
const stringMap = (v: unknown): Record<string, string> =>
  isObject(v) ? Object.fromEntries(Object.entries(v).filter(([, x]) => typeof x === 'string')) as Record<string, string> : {}

function allowed(outcome: DeleteAllow['outcome'], reason: string, extra: Partial<Pick<DeleteAllow, 'warnings' | 'auditAnnotations'>> = {}): DeleteAllow {
  return { action: 'allow', outcome, reason, warnings: extra.warnings ?? [], auditAnnotations: extra.auditAnnotations ?? {} }
}

/** The identity the in-flight rules match against, read defensively from oldObject. */
export function pvcIdentity(oldObject: Record<string, any>, namespace: string): PvcIdentity {
  const md = isObject(oldObject.metadata) ? oldObject.metadata : {}
  const spec = isObject(oldObject.spec) ? oldObject.spec : {}
  const ref = isObject(spec.dataSourceRef) ? spec.dataSourceRef : undefined
  return {
    namespace,
    name: typeof md.name === 'string' ? md.name : '',
    uid: typeof md.uid === 'string' ? md.uid : undefined,
    labels: stringMap(md.labels),
    ownerReferences: Array.isArray(md.ownerReferences)
      ? md.ownerReferences.filter((o: unknown) => isObject(o) && typeof o.kind === 'string' && typeof o.name === 'string')
      : [],
    dataSourceRef: ref && typeof ref.kind === 'string' && typeof ref.name === 'string' ? { apiGroup: typeof ref.apiGroup === 'string' ? ref.apiGroup : undefined, kind: ref.kind, name: ref.name } : undefined,
    phase: isObject(oldObject.status) && typeof oldObject.status.phase === 'string' ? oldObject.status.phase : undefined,
  }
}

export function planDelete(req: DeleteRequest, config: Config): DeletePlan {
  if (req.operation !== 'DELETE' || req.kind.group !== '' || req.kind.kind !== 'PersistentVolumeClaim') {
    return allowed('skipped', `${req.operation} of ${req.kind.kind || 'an object'} is not a PVC DELETE`)
  }
  const namespace = req.namespace ?? ''
  if (config.excludedNamespaces.includes(namespace)) return allowed('skipped', `namespace ${namespace} is excluded from smart-restore`)
  if (!isObject(req.oldObject)) {
    // The apiserver always sends the PVC on DELETE; without it nothing can be checked, so refuse.
    return { action: 'deny', code: 400, reason: 'Invalid', cause: 'no-old-object', message: `cannot check the deletion of PVC ${namespace}/${req.name ?? ''}: the request carries no oldObject` }
  }
  const pvc = pvcIdentity(req.oldObject, namespace)
  if (pvc.name === '') pvc.name = req.name ?? ''

  const annotations = stringMap(isObject(req.oldObject.metadata) ? req.oldObject.metadata.annotations : undefined)
  const overrideKey = annotationKey(config, ANNOTATION.allowDelete)
  const override = annotations[overrideKey]
  if (override !== undefined) {
    if (override.trim() === '') {
      return {
        action: 'deny',
        code: 422,
        reason: 'Invalid',
        cause: 'override-without-reason',
        message: `annotation ${overrideKey} needs a reason as its value, e.g. kubectl annotate pvc -n ${namespace} ${pvc.name} ${overrideKey}="restore is stuck, data not needed"`,
      }
    }
    return allowed('override', `deletion guard overridden by ${overrideKey}: ${override.trim()}`, {
      warnings: [`smart-restore: deletion guard overridden (${overrideKey}): ${override.trim()}`],
      auditAnnotations: { 'allow-delete-reason': override.trim() },
    })
  }
  const tier = pvc.labels[config.tierLabel]
  const labelled = tier !== undefined && tier in config.tiers
  return { action: 'check', pvc, repositoryKey: labelled ? repositoryKey(config, namespace, pvc.name) : undefined }
}

export interface DeleteObservations {
  /** The watched caches have their initial lists; until then nothing can be said. */
  cachesSynced: boolean
  /** Why not, for the message (e.g. "ReplicationSource not listed yet"). */
  notSyncedReason?: string
  namespaceTerminating: boolean
  findings: InFlightFinding[]
  /** Only when deletionGuard.resticLocks is on and the PVC has a repository. */
  lock?: LockResult
}

function describeFinding(f: InFlightFinding): string {
  return `${f.system} ${f.kind} ${f.namespace ? `${f.namespace}/` : ''}${f.name} (${f.why}${f.since ? `, since ${f.since}` : ''})`
}

export function decideDelete(check: DeleteCheck, seen: DeleteObservations, config: Config): DeleteAllow | Denial {
  const { pvc } = check
  const who = `PVC ${pvc.namespace}/${pvc.name}`
  const overrideKey = annotationKey(config, ANNOTATION.allowDelete)
  const howToOverride = `or annotate it ${overrideKey}="<reason>" and delete again`
  if (!seen.cachesSynced) {
    return {
      action: 'deny',
      code: 503,
      reason: 'ServiceUnavailable',
      cause: 'caches-not-synced',
      message: `smart-restore cannot yet tell whether a backup or restore of ${who} is in flight: its watches are still syncing${seen.notSyncedReason ? ` (${seen.notSyncedReason})` : ''}. Retrying in a few seconds is safe, ${howToOverride}.`,
    }
  }
  const findings = [...seen.findings]
  if (seen.lock?.state === 'locked') {
    findings.push({ ruleId: 'restic-lock', system: 'restic', kind: 'lock', namespace: '', name: seen.lock.lock, since: seen.lock.since, why: `repository ${seen.lock.location} is locked by a running restic operation` })
  }
  if (seen.lock?.state === 'unknown') {
    return {
      action: 'deny',
      code: 503,
      reason: 'ServiceUnavailable',
      cause: `locks-unknown-${seen.lock.kind}`,
      message: `smart-restore could not check ${seen.lock.location} for running restic operations before deleting ${who}: ${seen.lock.reason}. Retrying is safe, ${howToOverride}.`,
    }
  }
  if (findings.length === 0) return allowed('clear', 'nothing in flight')

  const list = findings.map(describeFinding).join('; ')
  if (seen.namespaceTerminating && config.deletionGuard.namespaceDeletion === 'allow') {
    return allowed('namespace-deletion', `namespace ${pvc.namespace} is being deleted (deletionGuard.namespaceDeletion=allow) while in flight: ${list}`, {
      warnings: [`smart-restore: deleting ${who} with its namespace while in flight: ${findings.map((f) => `${f.kind} ${f.name}`).join(', ')}`],
      auditAnnotations: { 'in-flight': list },
    })
  }
  const waiting = seen.namespaceTerminating ? ` Namespace ${pvc.namespace} is being deleted; it waits until this ends (deletionGuard.namespaceDeletion=wait).` : ''
  return {
    action: 'deny',
    code: 409,
    reason: 'Conflict',
    cause: `in-flight-${findings[0]!.ruleId}`,
    message: `${who} cannot be deleted while a backup or restore of it is in flight: ${list}.${waiting} Wait for it to finish and delete again, ${howToOverride}.`,
  }
}
