/** Building AdmissionReview responses the apiserver accepts (design.md §1). */
import type { Operation as JsonPatchOperation } from 'fast-json-patch'
import type { AdmissionResponse, AdmissionReviewResponse } from './types.js'

/** kubectl prints warnings; the apiserver truncates or drops long ones, so keep each under 120 chars. */
export const MAX_WARNING_LENGTH = 120

export function clampWarning(w: string): string {
  const oneLine = w.replace(/\s+/g, ' ').trim()
  return oneLine.length <= MAX_WARNING_LENGTH ? oneLine : `${oneLine.slice(0, MAX_WARNING_LENGTH - 1)}…`
}

export function review(response: AdmissionResponse): AdmissionReviewResponse {
  const r: AdmissionResponse = { ...response }
  if (r.warnings) {
    r.warnings = r.warnings.map(clampWarning).filter((w) => w !== '')
    if (r.warnings.length === 0) delete r.warnings
  }
  if (r.auditAnnotations && Object.keys(r.auditAnnotations).length === 0) delete r.auditAnnotations
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: r }
}

export interface AllowOptions {
  patch?: JsonPatchOperation[]
  warnings?: string[]
  auditAnnotations?: Record<string, string>
}

export function allow(uid: string, opts: AllowOptions = {}): AdmissionReviewResponse {
  const response: AdmissionResponse = { uid, allowed: true, warnings: opts.warnings, auditAnnotations: opts.auditAnnotations }
  if (opts.patch && opts.patch.length > 0) {
    response.patch = Buffer.from(JSON.stringify(opts.patch)).toString('base64')
    response.patchType = 'JSONPatch'
  }
  return review(response)
}

/** Status reasons as metav1.StatusReason spells them; the apiserver passes them on to the client. */
export type DenyReason = 'Forbidden' | 'Invalid' | 'ServiceUnavailable' | 'InternalError' | 'Conflict'

export interface DenyOptions {
  code: number
  reason: DenyReason
  warnings?: string[]
  auditAnnotations?: Record<string, string>
}

export function deny(uid: string, message: string, opts: DenyOptions): AdmissionReviewResponse {
  return review({
    uid,
    allowed: false,
    status: { code: opts.code, message, reason: opts.reason },
    warnings: opts.warnings,
    auditAnnotations: opts.auditAnnotations,
  })
}
