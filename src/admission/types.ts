/** The slice of admission.k8s.io/v1 that smart-restore reads and writes. */

export interface GroupVersionKind {
  group: string
  version: string
  kind: string
}

export interface GroupVersionResource {
  group: string
  version: string
  resource: string
}

export type Operation = 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT'

export interface AdmissionRequest {
  uid: string
  kind: GroupVersionKind
  resource: GroupVersionResource
  subResource?: string
  name?: string
  namespace?: string
  operation: Operation
  userInfo?: { username?: string; uid?: string; groups?: string[] }
  object: unknown
  oldObject: unknown
  dryRun: boolean
  options?: unknown
}

export interface AdmissionResponse {
  uid: string
  allowed: boolean
  status?: { code: number; message: string; reason?: string }
  patch?: string
  patchType?: 'JSONPatch'
  warnings?: string[]
  auditAnnotations?: Record<string, string>
}

export interface AdmissionReviewResponse {
  apiVersion: 'admission.k8s.io/v1'
  kind: 'AdmissionReview'
  response: AdmissionResponse
}
