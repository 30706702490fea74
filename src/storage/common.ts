/**
 * Pieces shared by the S3 and local stores: key hygiene, head-key expansion and the deadline race.
 */
import type { StoreConfig } from '../config/schema.js'
import { expandTemplate, type ProbeResult, type UnknownKind } from './types.js'

/** The fields a clear answer logs: its state and detail, and in restic mode how much was read. */
export function probeFields(result: Extract<ProbeResult, { state: 'exists' | 'none' }>): object {
  if (result.state === 'exists' && result.restic) {
    const { total, complete, version, snapshots } = result.restic
    return { state: result.state, snapshots: total, read: snapshots.length, complete, repositoryVersion: version }
  }
  return { state: result.state, detail: result.detail }
}

/** The subset of a pino logger the stores use, so tests and callers can pass anything pino-like. */
export interface StoreLogger {
  debug(obj: object, msg?: string): void
  warn(obj: object, msg?: string): void
}

export const silentLogger: StoreLogger = { debug() {}, warn() {} }

export function unknown(location: string, kind: UnknownKind, reason: string): ProbeResult {
  return { state: 'unknown', location, kind, reason }
}

/** `key` without leading and trailing slashes: `/a/b/` and `a/b` name the same repository. */
export function trimSlashes(key: string): string {
  return key.replace(/^\/+|\/+$/g, '')
}

/**
 * Trims surrounding slashes so `a/b/` and `a/b` name the same repository. An empty key, or one with
 * `.`/`..` segments, is refused: an empty key would probe the bucket root (every PVC would "find" the
 * same repository) and `..` could leave the local directory.
 */
export function normalizeKey(key: string): string | { invalid: string } {
  const k = trimSlashes(key)
  if (k === '') return { invalid: 'the repository key is empty' }
  if (k.includes('\0')) return { invalid: 'the repository key contains a NUL byte' }
  if (k.split('/').some((seg) => seg === '.' || seg === '..' || seg === '')) {
    return { invalid: `the repository key "${k}" has an empty, "." or ".." segment` }
  }
  return k
}

/**
 * Recovers {namespace} and {pvc} from a repository key by matching it against the key template.
 * The probe only receives the key, and splitting it on '/' is wrong as soon as the template has a
 * prefix (`backups/{namespace}/{pvc}`); namespace and PVC names never contain '/', so the match is
 * unambiguous.
 */
export function keyPlaceholders(keyTemplate: string, key: string): Record<string, string> {
  const names: string[] = []
  let pattern = '^'
  let last = 0
  for (const m of keyTemplate.matchAll(/\{([a-z]+)\}/g)) {
    pattern += escapeRegExp(keyTemplate.slice(last, m.index))
    const name = m[1] ?? ''
    // A repeated placeholder must repeat the same value; a backreference keeps the regexp honest.
    const seen = names.indexOf(name)
    pattern += seen >= 0 ? `\\${seen + 1}` : '([^/]+)'
    if (seen < 0) names.push(name)
    last = (m.index ?? 0) + m[0].length
  }
  pattern += escapeRegExp(keyTemplate.slice(last)) + '$'
  const match = new RegExp(pattern).exec(trimSlashes(key))
  const values: Record<string, string> = {}
  if (match) names.forEach((n, i) => (values[n] = match[i + 1] ?? ''))
  return values
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

/**
 * The object probed in head mode. An unexpanded placeholder is an error rather than a key: probing
 * the literal `{namespace}/...` would answer 404, and 404 reads as "no backup".
 */
export function headKeyFor(cfg: StoreConfig, key: string): string | { invalid: string } {
  const values = { ...keyPlaceholders(cfg.keyTemplate, key), key }
  const expanded = expandTemplate(cfg.probe.headKeyTemplate, values).replace(/^\/+/, '')
  const left = /\{[a-z]+\}/.exec(expanded)
  if (left) {
    return {
      invalid: `head key template "${cfg.probe.headKeyTemplate}" left ${left[0]} unexpanded: key "${key}" does not match key template "${cfg.keyTemplate}"`,
    }
  }
  return normalizeKey(expanded)
}

/**
 * Races `work` against `ms`. The race exists so a probe returns on time even if the SDK or the file
 * system ignores cancellation; the abort is still sent so sockets are released promptly.
 */
export async function withDeadline<T>(
  work: (signal: AbortSignal) => Promise<T>,
  ms: number,
  onDeadline: () => T,
  onError: (err: unknown) => T,
): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(() => {
      // Settle first, then abort: the aborted work ends with an error nobody is waiting for.
      resolve(onDeadline())
      controller.abort()
    }, Math.max(0, ms))
  })
  // `work` is also caught when it loses the race, or its late rejection would be unhandled.
  const guarded = (async () => work(controller.signal))().catch(onError)
  try {
    return await Promise.race([guarded, deadline])
  } finally {
    clearTimeout(timer)
  }
}
