/** What an admission handler returns, and a Denial turned into one: shared by /mutate and /validate. */
import type { AdmissionReviewResponse } from '../admission/types.js'
import { deny } from '../admission/respond.js'
import type { Denial } from '../decide/create.js'
import type { AdmissionOutcome } from './ports.js'

export interface HandlerResult {
  review: AdmissionReviewResponse
  /** What the admission log line and the metrics record. */
  outcome: AdmissionOutcome
}

/** A Denial as the answer (its message, code and cause as an audit annotation) and the log outcome. */
export function denied(uid: string, d: Denial, outcome: Partial<AdmissionOutcome> = {}): HandlerResult {
  return {
    review: deny(uid, d.message, { code: d.code, reason: d.reason, auditAnnotations: { decision: 'denied', cause: d.cause } }),
    outcome: { decision: 'denied', reason: d.cause, cause: d.cause, ...outcome },
  }
}
