/**
 * POST /mutate: the smart-restore decision for a PVC CREATE, carried out.
 *
 *   plan (pure) → probe the store → decide (pure) → create ReplicationDestination + its Secret → answer
 *
 * Every path ends in an AdmissionReview: a failure to create the restore objects is a denial that
 * says what failed, never an allowed PVC without its data.
 */
import type { AdmissionRequest } from '../admission/types.js'
import { allow } from '../admission/respond.js'
import { ANNOTATION, annotationKey } from '../decide/annotations.js'
import { decideAfterProbe, planCreate, type Denial, type RestoreDecision } from '../decide/create.js'
import { preflightDenial, preflightRestore } from '../decide/preflight.js'
import { buildRepositorySecret, REQUIRED_SOURCE_KEYS, restoreOwnerReference } from '../engines/volsync.js'
import { denied, type HandlerResult } from './answer.js'
import type { CallOptions, WebhookDeps } from './ports.js'

/** A readable description of a failed API call, whatever was thrown. */
function describeError(err: unknown): { kind: string; message: string } {
  const e = err as { kind?: unknown; message?: unknown }
  return { kind: typeof e?.kind === 'string' ? e.kind : 'error', message: typeof e?.message === 'string' ? e.message : String(err) }
}

/**
 * Read the source Secret and create (or find) the repository Secret and the ReplicationDestination.
 * With `write: false` (a dry run) only the read happens, so a dry run is denied exactly when the
 * real create would be, and nothing is written.
 */
async function setUpRestore(decision: RestoreDecision, deps: WebhookDeps, pvcName: string, call: CallOptions, write: boolean): Promise<string[] | Denial> {
  const cluster = deps.cluster!
  const { namespace } = decision.destination.metadata
  const source = deps.config.restore.sourceSecret
  let sourceData: Record<string, string>
  try {
    sourceData = await cluster.readSecretData(source.namespace, source.name, call)
  } catch (err) {
    const e = describeError(err)
    return {
      action: 'deny',
      code: 503,
      reason: 'ServiceUnavailable',
      cause: `source-secret-${e.kind}`,
      message: `a backup of ${namespace}/${pvcName} exists, but smart-restore could not read its source Secret ${source.namespace}/${source.name}: ${e.message}. The PVC was not created; retrying is safe.`,
    }
  }
  const missing = REQUIRED_SOURCE_KEYS.filter((k) => !sourceData[k])
  if (missing.length > 0) {
    return {
      action: 'deny',
      code: 500,
      reason: 'InternalError',
      cause: 'source-secret-incomplete',
      message: `a backup of ${namespace}/${pvcName} exists, but the source Secret ${source.namespace}/${source.name} lacks ${missing.join(', ')}; fix the Secret and retry.`,
    }
  }
  if (!write) return []
  const secret = buildRepositorySecret({
    config: deps.config,
    namespace,
    pvcName,
    name: decision.secretName,
    resticRepository: decision.resticRepository,
    sourceData,
    caBundle: deps.store.moverCa,
  })
  const made: string[] = []
  try {
    // The RD first, then the Secret owned by it: whatever happens next, everything made here hangs
    // off the RD, so the reconciler's orphan sweep (an RD whose PVC never came) takes all of it, and
    // the Secret never lingers alone. VolSync retries an RD whose Secret is not there yet.
    const rd = decision.destination
    // An RD left by an earlier, never-completed CREATE is reused only while it is far from the
    // orphan sweep's grace period; an older one is made anew.
    const { result, uid } = await cluster.ensureReplicationDestinationObject(rd, { ...call, reuseYoungerThanMs: deps.config.reconciler.orphanGraceMs / 2 })
    made.push(`ReplicationDestination ${namespace}/${rd.metadata.name} (${result})`)
    const owned = uid ? { ...secret, metadata: { ...secret.metadata, ownerReferences: [restoreOwnerReference(rd.metadata.name, uid)] } } : secret
    try {
      made.push(`Secret ${namespace}/${secret.metadata.name} (${await cluster.ensureSecret(owned, call)})`)
    } catch (err) {
      // Denied: take back the RD this admission made, so a denial leaves nothing behind (an RD
      // from an earlier attempt stays for the retry). Best effort: if this fails too, the
      // reconciler's orphan sweep removes it once reconciler.orphanGraceMs has passed.
      if (result !== 'unchanged' && uid) {
        await cluster.delete(`${rd.apiVersion}`, 'ReplicationDestination', namespace, rd.metadata.name, { uid }).catch((rollback: unknown) => {
          deps.logger.warn({ object: `ReplicationDestination ${namespace}/${rd.metadata.name}`, err: describeError(rollback).message }, 'could not take back the ReplicationDestination of a denied restore; the orphan sweep will')
        })
      }
      throw err
    }
  } catch (err) {
    const e = describeError(err)
    return {
      action: 'deny',
      code: e.kind === 'conflict' ? 409 : e.kind === 'forbidden' ? 403 : 503,
      reason: e.kind === 'conflict' ? 'Conflict' : e.kind === 'forbidden' ? 'Forbidden' : 'ServiceUnavailable',
      cause: `create-restore-objects-${e.kind}`,
      message: `a backup of ${namespace}/${pvcName} exists, but smart-restore could not set up its restore: ${e.message}. The PVC was not created, so it cannot start empty; ${e.kind === 'conflict' ? 'resolve the conflict and retry' : 'retrying is safe'}.`,
    }
  }
  return made
}

export async function handleMutate(req: AdmissionRequest, deps: WebhookDeps, call: CallOptions = {}): Promise<HandlerResult> {
  const { config, store } = deps
  const plan = planCreate({ ...req, namespaceLabels: deps.namespaces?.labels(req.namespace ?? '') }, config)
  if (plan.action === 'skip') {
    return {
      review: allow(req.uid, { patch: plan.patch, warnings: plan.warnings, auditAnnotations: plan.auditAnnotations }),
      outcome: { decision: 'skipped', reason: plan.reason },
    }
  }
  if (plan.action === 'deny') return denied(req.uid, plan)

  const started = performance.now()
  // The restore options go with the probe: in restic mode it reads the snapshots they select.
  const probe = await store.probe(plan.repositoryKey, plan.options)
  const probeInfo = {
    state: probe.state,
    location: probe.location,
    kind: probe.state === 'unknown' || probe.state === 'unreadable' ? probe.kind : undefined,
    ms: Math.round(performance.now() - started),
  }
  const decision = decideAfterProbe(plan, probe, { resticRepository: store.resticRepository(plan.repositoryKey) }, config)

  if (decision.action === 'deny') return denied(req.uid, decision, { probe: probeInfo })
  if (decision.action === 'fresh') {
    return {
      review: allow(req.uid, { patch: decision.patch, warnings: decision.warnings, auditAnnotations: decision.auditAnnotations }),
      outcome: { decision: decision.verified ? 'fresh' : 'fresh-unverified', reason: probe.state === 'unknown' ? probe.reason : 'no snapshot', probe: probeInfo },
    }
  }

  // restore: only when it can be populated; a PVC whose populator never comes waits forever.
  if (deps.preflight) {
    const verdict = preflightRestore(deps.preflight.facts(), {
      storageClassName: plan.pvc.spec.storageClassName ?? undefined,
      configuredStorageClass: config.restore.storageClassName,
      volumeSnapshotClassName: config.restore.volumeSnapshotClassName,
    })
    const refusal = preflightDenial(verdict, { namespace: plan.namespace, pvcName: plan.pvcName, skipRestoreKey: annotationKey(config, ANNOTATION.skipRestore) })
    if (refusal) return denied(req.uid, refusal, { probe: probeInfo })
  }
  const warnings = [...decision.warnings]
  let objects: string[]
  if (!deps.cluster) {
    objects = []
    warnings.push(`smart-restore: standalone mode (no Kubernetes API); ReplicationDestination ${decision.destination.metadata.name} not created`)
  } else {
    // sideEffects: NoneOnDryRun: a dry run (Argo CD diff, kubectl --dry-run=server) gets the same
    // answer and writes nothing.
    const made = await setUpRestore(decision, deps, plan.pvcName, call, !req.dryRun)
    if (!Array.isArray(made)) return denied(req.uid, made, { probe: probeInfo })
    objects = made
  }
  if (req.dryRun) warnings.push(`smart-restore: dry run; ReplicationDestination ${decision.destination.metadata.name} not created`)
  return {
    review: allow(req.uid, { patch: decision.patch, warnings, auditAnnotations: decision.auditAnnotations }),
    outcome: {
      decision: 'restore',
      reason: decision.snapshot ? `snapshot ${decision.snapshot.id.slice(0, 8)} of ${decision.snapshot.time}` : probe.state === 'exists' ? probe.detail : '',
      objects,
      probe: probeInfo,
    },
  }
}
