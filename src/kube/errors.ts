/**
 * One error type for every failed Kubernetes API call, so callers branch on `kind` instead of on
 * client-node internals (ApiException with a raw string body, node-fetch FetchError/AbortError).
 *
 * Messages say what was attempted, on which object, and what the apiserver answered (the `message`
 * of its metav1.Status). They never carry request bodies, response headers or Secret values.
 */

export type KubeErrorKind = 'forbidden' | 'conflict' | 'not-found' | 'invalid' | 'server' | 'timeout' | 'network' | 'unauthorized'

export class KubeApiError extends Error {
  override name = 'KubeApiError'
  readonly kind: KubeErrorKind
  /** HTTP status, when the apiserver answered. */
  readonly status?: number
  /** metav1.Status reason, e.g. AlreadyExists, when the apiserver gave one. */
  readonly reason?: string
  /** The object concerned, e.g. "Secret media/data-claim-restic". */
  readonly object: string
  /** Whether trying the same thing again later can succeed without anyone changing anything. */
  readonly retryable: boolean

  constructor(args: { kind: KubeErrorKind; message: string; object: string; status?: number; reason?: string; retryable?: boolean }) {
    super(args.message)
    this.kind = args.kind
    this.object = args.object
    if (args.status !== undefined) this.status = args.status
    if (args.reason !== undefined) this.reason = args.reason
    this.retryable = args.retryable ?? (args.kind === 'timeout' || args.kind === 'network' || args.kind === 'server')
  }
}

/** client-node's ApiException, recognised by shape (no instanceof across module copies). */
interface ApiExceptionLike {
  code: number
  body?: unknown
}

function isApiException(err: unknown): err is ApiExceptionLike {
  return typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'number' && 'body' in err
}

/** The apiserver's Status, if the body is one. client-node 1.4 hands the body over as raw text. */
function parseStatus(body: unknown): { message?: string; reason?: string } {
  let value = body
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      return {}
    }
  }
  if (typeof value !== 'object' || value === null) return {}
  const s = value as { kind?: unknown; message?: unknown; reason?: unknown }
  return {
    message: typeof s.message === 'string' ? s.message : undefined,
    reason: typeof s.reason === 'string' && s.reason !== '' ? s.reason : undefined,
  }
}

function kindOfStatus(code: number, reason: string | undefined): KubeErrorKind {
  if (reason === 'Timeout' || reason === 'ServerTimeout' || code === 504) return 'timeout'
  if (code === 401) return 'unauthorized'
  if (code === 403) return 'forbidden'
  if (code === 404 || code === 410) return 'not-found'
  if (code === 409) return 'conflict'
  if (code === 400 || code === 422) return 'invalid'
  return 'server'
}

/** `text` with each of `secrets` (4 characters or more, longest first) replaced by [redacted]. */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text
  // Longest first, so a value containing another is removed whole.
  for (const s of [...secrets].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length)) out = out.split(s).join('[redacted]')
  return out
}

export interface DescribeOptions {
  /** Values that must never appear in the message (e.g. the data of the Secret being written). */
  redact?: readonly string[]
  /** The deadline that was exceeded, for timeout messages. */
  timeoutMs?: number
}

/**
 * Map whatever a client-node call threw into a KubeApiError.
 *
 * @param action what was attempted, e.g. "create"
 * @param object the object, e.g. "Secret media/data-claim-restic"
 */
export function toKubeApiError(err: unknown, action: string, object: string, opts: DescribeOptions = {}): KubeApiError {
  if (err instanceof KubeApiError) return err
  const what = `${action} ${object}`
  const clean = (s: string) => redact(s, opts.redact ?? [])

  if (isApiException(err)) {
    const status = parseStatus(err.body)
    const kind = kindOfStatus(err.code, status.reason)
    const said = status.message ?? (err.code === 401 ? 'Unauthorized' : 'no Status message')
    return new KubeApiError({
      kind,
      status: err.code,
      reason: status.reason,
      object,
      message: clean(`${what}: ${kind} (HTTP ${err.code}${status.reason ? ` ${status.reason}` : ''}): ${said}`),
    })
  }

  const e = (typeof err === 'object' && err !== null ? err : {}) as { name?: unknown; type?: unknown; code?: unknown; message?: unknown }
  if (e.name === 'AbortError' || e.type === 'aborted' || e.name === 'TimeoutError') {
    if ((err as { byCaller?: boolean }).byCaller) {
      return new KubeApiError({ kind: 'timeout', object, message: `${what}: timeout: the operation's deadline passed before the Kubernetes API answered` })
    }
    const ms = opts.timeoutMs ?? (err as { timeoutMs?: number }).timeoutMs
    const limit = ms !== undefined ? ` within ${ms} ms` : ''
    return new KubeApiError({ kind: 'timeout', object, message: `${what}: timeout: the Kubernetes API did not answer${limit}` })
  }
  if (e.name === 'FetchError' || e.type === 'system' || typeof e.code === 'string') {
    // node-fetch: "request to <url> failed, reason: connect ECONNREFUSED 127.0.0.1:6443"; the URL only names the object.
    const code = typeof e.code === 'string' ? e.code : undefined
    const detail = typeof e.message === 'string' ? e.message : String(err)
    return new KubeApiError({ kind: 'network', object, message: clean(`${what}: network error${code ? ` (${code})` : ''}: ${detail}`) })
  }
  const detail = err instanceof Error ? err.message : String(err)
  return new KubeApiError({ kind: 'server', object, message: clean(`${what}: unexpected error: ${detail}`), retryable: false })
}
