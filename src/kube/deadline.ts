/**
 * A hard deadline for one client-node call.
 *
 * client-node 1.4 has no per-call timeout option. Its generated APIs build a RequestContext
 * (awaiting authentication, which may read a token file or run an exec plugin), pass it through the
 * configured middlewares, and hand it to node-fetch with `signal: request.getSignal()`. So:
 *  - a per-call middleware sets an AbortSignal on the request, which aborts the socket (and a body
 *    still being read) — nothing keeps running after we gave up;
 *  - a timer raced against the whole call also covers the steps before fetch, where no signal helps.
 * The same middleware swaps the request's new agent for a pooled keep-alive one (connection-pool.ts).
 * Per-call middlewares are Observable-style (`pre` returns an Observable) even on the promise API;
 * a promise-returning `pre` crashes with "toPromise is not a function".
 */
import { Observable, type ConfigurationOptions, type ObservableMiddleware } from '@kubernetes/client-node'
import { apiConnections } from './connection-pool.js'

/** The error a missed deadline rejects with (recognised by toKubeApiError via its name). */
export class DeadlineError extends Error {
  override name = 'TimeoutError'
  constructor(
    readonly timeoutMs: number,
    /** The caller's signal fired, not our per-request timer. */
    readonly byCaller = false,
  ) {
    super(byCaller ? 'the caller gave up' : `no answer within ${timeoutMs} ms`)
  }
}

function abortWith(signal: AbortSignal): ObservableMiddleware {
  return {
    pre: (ctx) => {
      ctx.setSignal(signal)
      // Every one-shot call passes here, after authentication built its agent: reuse connections.
      const agent = apiConnections.agentFor(ctx.getAgent())
      if (agent) ctx.setAgent(agent)
      return new Observable(Promise.resolve(ctx))
    },
    post: (res) => new Observable(Promise.resolve(res)),
  }
}

/**
 * Run `fn` with client-node call options that abort it after `timeoutMs` (or when `signal` aborts),
 * and reject with DeadlineError at that moment, whatever the library is doing.
 */
export async function withDeadline<T>(timeoutMs: number, fn: (options: ConfigurationOptions) => Promise<T>, signal?: AbortSignal): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  let onAbort: (() => void) | undefined
  if (signal?.aborted) throw new DeadlineError(timeoutMs, true)
  const deadline = new Promise<never>((_, reject) => {
    const expire = (byCaller: boolean) => {
      controller.abort()
      reject(new DeadlineError(timeoutMs, byCaller))
    }
    timer = setTimeout(() => expire(false), timeoutMs)
    onAbort = () => expire(true)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
  // 'append' keeps any middleware configured on the API client itself.
  const options: ConfigurationOptions = { middleware: [abortWith(controller.signal)], middlewareMergeStrategy: 'append' }
  try {
    // Promise.race subscribes to both, so the losing call's later AbortError is not unhandled.
    return await Promise.race([fn(options), deadline])
  } finally {
    clearTimeout(timer)
    if (onAbort) signal?.removeEventListener('abort', onAbort)
  }
}
