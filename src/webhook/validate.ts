/**
 * POST /validate: the deletion guard on PVC DELETE, and on PVC CREATE a cross-check that closes
 * the gap when the mutating webhook was skipped (a backup exists, yet the PVC would start empty).
 */
import type { AdmissionRequest } from '../admission/types.js'
import { allow } from '../admission/respond.js'
import { ANNOTATION, annotationKey } from '../decide/annotations.js'
import { planCreate, probeVerdict } from '../decide/create.js'
import { decideDelete, planDelete } from '../decide/delete.js'
import { pvcSelfFinding } from '../inflight/match.js'
import { recentResticLock } from '../storage/index.js'
import { denied, type HandlerResult } from './answer.js'
import type { WebhookDeps } from './ports.js'

async function validateDelete(req: AdmissionRequest, deps: WebhookDeps): Promise<HandlerResult> {
  const { config } = deps
  const plan = planDelete(req, config)
  if (plan.action === 'deny') return denied(req.uid, plan)
  if (plan.action === 'allow') {
    if (plan.outcome === 'override') deps.logger.warn({ namespace: req.namespace, name: req.name, user: req.userInfo?.username, reason: plan.reason }, 'deletion guard overridden')
    return { review: allow(req.uid, { warnings: plan.warnings, auditAnnotations: plan.auditAnnotations }), outcome: { decision: plan.outcome === 'override' ? 'override' : 'skipped', reason: plan.reason } }
  }

  const self = pvcSelfFinding(plan.pvc)
  const view = deps.inFlight
  let sync: { synced: boolean; reason?: string } = view ? view.syncState() : { synced: true }
  let findings = self ? [self] : []
  if (view && sync.synced) {
    try {
      findings = [...findings, ...view.findInFlight(plan.pvc)]
    } catch (err) {
      // A cache that cannot be read is a cache that cannot vouch for "nothing in flight".
      deps.logger.error({ err }, 'in-flight lookup failed')
      sync = { synced: false, reason: `lookup failed: ${(err as Error).message}` }
    }
  }
  const lock = await recentResticLock(deps.store, plan.repositoryKey, config)
  const verdict = decideDelete(plan, {
    cachesSynced: sync.synced,
    notSyncedReason: sync.reason,
    namespaceTerminating: view?.namespaceTerminating(plan.pvc.namespace) ?? false,
    findings,
    lock,
  }, config)
  if (verdict.action === 'deny') return denied(req.uid, verdict, { objects: findings.map((f) => `${f.kind} ${f.namespace}/${f.name}`) })
  const warnings = [...verdict.warnings]
  if (!view) warnings.push('smart-restore: standalone mode (no Kubernetes API); backup objects were not checked')
  return {
    review: allow(req.uid, { warnings, auditAnnotations: verdict.auditAnnotations }),
    outcome: { decision: verdict.outcome === 'clear' ? 'allowed' : verdict.outcome, reason: verdict.reason },
  }
}

/**
 * In the validating phase a restored PVC already carries its dataSourceRef (planCreate skips it),
 * so a labelled PVC that reaches the probe here was not set up by the mutating webhook. The probe
 * answer is shared with the mutating call through the store's short cache: no second S3 request.
 */
async function crossCheckCreate(req: AdmissionRequest, deps: WebhookDeps): Promise<HandlerResult> {
  const { config, store } = deps
  const plan = planCreate({ ...req, namespaceLabels: deps.namespaces?.labels(req.namespace ?? '') }, config)
  if (plan.action === 'skip') return { review: allow(req.uid), outcome: { decision: 'skipped', reason: plan.reason } }
  if (plan.action === 'deny') return denied(req.uid, plan)
  const probe = await store.probe(plan.repositoryKey, plan.options)
  // Only the verdict: the objects and the patch a restore or a fresh start would take are the
  // mutating webhook's, and are not built here.
  const verdict = probeVerdict(plan, probe, config)
  if (verdict.action === 'deny') return denied(req.uid, verdict)
  if (verdict.action === 'restore') {
    return denied(req.uid, {
      action: 'deny',
      code: 409,
      reason: 'Conflict',
      cause: 'backup-exists-restore-not-set-up',
      message:
        `a backup of ${plan.namespace}/${plan.pvcName} exists at ${probe.location}${verdict.snapshot ? ` (VolSync would restore snapshot ${verdict.snapshot.id.slice(0, 8)} of ${verdict.snapshot.time})` : ''}, but the restore was not set up (no spec.dataSourceRef; was the smart-restore mutating webhook skipped?). ` +
        `Creating it would start an empty volume that then backs up over the good snapshots. Check the MutatingWebhookConfiguration and retry, or annotate the PVC ${annotationKey(config, ANNOTATION.skipRestore)}="<reason>" to start empty on purpose.`,
    })
  }
  return { review: allow(req.uid), outcome: { decision: 'allowed', reason: verdict.verified ? 'no snapshot' : 'store unknown, onUnknown=fresh' } }
}

export async function handleValidate(req: AdmissionRequest, deps: WebhookDeps): Promise<HandlerResult> {
  if (req.operation === 'DELETE') return validateDelete(req, deps)
  if (req.operation === 'CREATE') return crossCheckCreate(req, deps)
  return { review: allow(req.uid), outcome: { decision: 'skipped', reason: `${req.operation} is not checked` } }
}
