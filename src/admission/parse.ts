/**
 * Strict parsing of an AdmissionReview body. Whatever is wrong becomes an AdmissionParseError with
 * an HTTP 4xx status and a reason a human can act on; nothing here throws anything else.
 */
import secureJson from 'secure-json-parse'
import type { AdmissionRequest, Operation } from './types.js'

export class AdmissionParseError extends Error {
  constructor(
    readonly statusCode: 400 | 413 | 415 | 422,
    message: string,
    /** The request uid when it could be read, so even a rejection can be correlated. */
    readonly uid?: string,
  ) {
    super(message)
    this.name = 'AdmissionParseError'
  }
}

const OPERATIONS: readonly Operation[] = ['CREATE', 'UPDATE', 'DELETE', 'CONNECT']

/** A short, safe rendering of a value for a message: never stringifies a (possibly huge or deep) structure. */
function shown(v: unknown): string {
  if (v === undefined || v === null) return 'nothing'
  if (typeof v === 'string') return JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v)
  return `a ${Array.isArray(v) ? 'list' : typeof v}`
}

/**
 * How deep a body may nest. An AdmissionReview of a PersistentVolumeClaim nests about 10 levels
 * (review → request → object → spec → dataSourceRef …); 100 leaves room for any annotation-free
 * extension while keeping every later recursive step (structuredClone, JSON Patch diffing, logging)
 * far from the stack limit, which a ~4,000-level field reached.
 */
export const MAX_NESTING_DEPTH = 100

/**
 * The byte offset where `text` first nests deeper than `limit` arrays/objects, or -1. A scan of the
 * raw text (strings skipped, escapes honoured), so a hostile body is refused before it is parsed.
 */
export function nestingLimitExceededAt(text: string, limit: number): number {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > limit) return i
    } else if (c === 0x7d || c === 0x5d) depth--
  }
  return -1
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Accepts `application/json` with optional parameters (charset); the apiserver sends exactly that. */
export function isJsonContentType(header: string | undefined): boolean {
  if (!header) return false
  const type = header.split(';')[0]!.trim().toLowerCase()
  return type === 'application/json'
}

function groupVersionKind(v: unknown, field: string, uid: string): { group: string; version: string; kind: string } {
  if (!isObject(v) || typeof v.group !== 'string' || typeof v.version !== 'string' || typeof v.kind !== 'string') {
    throw new AdmissionParseError(422, `request.${field} must be an object with string group, version and kind`, uid)
  }
  return { group: v.group, version: v.version, kind: v.kind }
}

function groupVersionResource(v: unknown, field: string, uid: string): { group: string; version: string; resource: string } {
  if (!isObject(v) || typeof v.group !== 'string' || typeof v.version !== 'string' || typeof v.resource !== 'string') {
    throw new AdmissionParseError(422, `request.${field} must be an object with string group, version and resource`, uid)
  }
  return { group: v.group, version: v.version, resource: v.resource }
}

function optionalString(v: unknown, field: string, uid: string): string | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string') throw new AdmissionParseError(422, `request.${field} must be a string`, uid)
  return v
}

/** Parse the raw body of a POST to /mutate or /validate. */
export function parseAdmissionReview(body: string | Buffer | undefined): AdmissionRequest {
  const text = typeof body === 'string' ? body : body?.toString('utf8') ?? ''
  if (text.trim() === '') throw new AdmissionParseError(400, 'empty body: expected an admission.k8s.io/v1 AdmissionReview')

  const tooDeepAt = nestingLimitExceededAt(text, MAX_NESTING_DEPTH)
  if (tooDeepAt >= 0) {
    throw new AdmissionParseError(422, `body nests deeper than ${MAX_NESTING_DEPTH} levels (at byte ${tooDeepAt}): no PersistentVolumeClaim does; refused before parsing`)
  }

  let doc: unknown
  try {
    // secure-json-parse rejects __proto__/constructor.prototype keys instead of silently keeping them.
    doc = secureJson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
  } catch (err) {
    throw new AdmissionParseError(400, `body is not valid JSON: ${(err as Error).message}`)
  }
  if (!isObject(doc)) throw new AdmissionParseError(400, 'body must be a JSON object (an AdmissionReview)')

  const uidGuess = isObject(doc.request) && typeof doc.request.uid === 'string' ? doc.request.uid : undefined
  if (doc.apiVersion !== 'admission.k8s.io/v1') {
    throw new AdmissionParseError(
      422,
      `apiVersion must be admission.k8s.io/v1, got ${shown(doc.apiVersion)} (register the webhook with admissionReviewVersions: [v1])`,
      uidGuess,
    )
  }
  if (doc.kind !== 'AdmissionReview') {
    throw new AdmissionParseError(422, `kind must be AdmissionReview, got ${shown(doc.kind)}`, uidGuess)
  }
  const r = doc.request
  if (!isObject(r)) throw new AdmissionParseError(422, 'request is missing: an AdmissionReview sent to a webhook carries a request')
  if (typeof r.uid !== 'string' || r.uid === '') throw new AdmissionParseError(422, 'request.uid must be a non-empty string')
  const uid = r.uid
  if (uid.length > 256) throw new AdmissionParseError(422, 'request.uid is longer than 256 characters')
  if (typeof r.operation !== 'string' || !OPERATIONS.includes(r.operation as Operation)) {
    throw new AdmissionParseError(422, `request.operation must be one of ${OPERATIONS.join(', ')}`, uid)
  }
  if (r.dryRun !== undefined && r.dryRun !== null && typeof r.dryRun !== 'boolean') {
    throw new AdmissionParseError(422, 'request.dryRun must be a boolean', uid)
  }
  for (const field of ['object', 'oldObject'] as const) {
    if (r[field] !== undefined && r[field] !== null && !isObject(r[field])) {
      throw new AdmissionParseError(422, `request.${field} must be an object or null`, uid)
    }
  }
  return {
    uid,
    kind: groupVersionKind(r.kind, 'kind', uid),
    resource: groupVersionResource(r.resource, 'resource', uid),
    subResource: optionalString(r.subResource, 'subResource', uid),
    name: optionalString(r.name, 'name', uid),
    namespace: optionalString(r.namespace, 'namespace', uid),
    operation: r.operation as Operation,
    userInfo: isObject(r.userInfo) ? (r.userInfo as AdmissionRequest['userInfo']) : undefined,
    object: r.object ?? null,
    oldObject: r.oldObject ?? null,
    // Absent dryRun is false; a webhook that guessed otherwise would skip real work.
    dryRun: r.dryRun === true,
    options: r.options,
  }
}
