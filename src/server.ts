/**
 * The HTTPS front: routes, body parsing and the per-admission log line. Protocol errors become 4xx
 * with a reason; anything thrown while deciding becomes an AdmissionReview denial, never a bare 500.
 */
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { AdmissionParseError, isJsonContentType, parseAdmissionReview } from './admission/parse.js'
import { deny } from './admission/respond.js'
import type { AdmissionRequest } from './admission/types.js'
import type { HandlerResult } from './webhook/answer.js'
import { handleMutate } from './webhook/mutate.js'
import { handleValidate } from './webhook/validate.js'
import type { CallOptions, WebhookDeps } from './webhook/ports.js'
import type { ServiceMetrics } from './metrics.js'

/** What /readyz answers: ready, or not and why; `checks` names each condition. */
export interface ReadyState {
  ready: boolean
  reason?: string
  checks?: Record<string, string>
}

export interface ServerOptions {
  deps: WebhookDeps
  logger: Logger
  /** Omitted in tests that drive the app with inject(). */
  https?: { key: string; cert: string }
  bodyLimitBytes: number
  /** Readiness beyond "listening": certificates, watched caches, draining on shutdown. */
  isReady?: () => ReadyState
  /**
   * True once shutdown began. Every answer then carries `Connection: close`, so the apiserver's
   * keep-alive connections end after their current request and its next request opens a new
   * connection (to a ready replica) instead of reusing this one — and the server's close() is not
   * left waiting for idle keep-alive connections (Go keeps them ~90 s).
   */
  isDraining?: () => boolean
  /** Where admissions are counted; absent in tests that do not look. */
  metrics?: ServiceMetrics
}

type Handler = (req: AdmissionRequest, deps: WebhookDeps, call: CallOptions) => Promise<HandlerResult>

/** The apiserver gives up after `?timeout=` (Go duration, 1–30 s; 10 s when absent). */
export function admissionBudgetMs(timeoutParam: unknown): number {
  const m = typeof timeoutParam === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(timeoutParam) : null
  const value = m ? Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000) : 10_000
  const bounded = Math.min(Math.max(value, 1000), 30_000)
  // Answer before the apiserver stops listening: a late answer is a failed call, not a denial.
  return bounded - Math.min(750, bounded / 4)
}

export function buildServer(opts: ServerOptions): FastifyInstance {
  // The options object is assembled at run time (https or not), which fastify's overloads cannot type.
  const app = (Fastify as unknown as (o: object) => FastifyInstance)({
    loggerInstance: opts.logger,
    // One line per admission is logged by the route itself, with the decision in it.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimitBytes,
    // The apiserver counts a 503 as a webhook failure; while closing, in-flight and new requests
    // on open connections are still answered, and idle keep-alive connections are closed.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Go's client keeps idle connections ~90 s; outlive that so the server is not the one to race it.
    keepAliveTimeout: 95_000,
    ...(opts.https ? { https: opts.https } : {}),
  })

  // Keep the body as text: parseAdmissionReview gives the reasons, fastify's parser would not.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body))

  if (opts.isDraining) {
    const draining = opts.isDraining
    app.addHook('onSend', async (request, reply) => {
      if (draining() && request.raw.httpVersionMajor < 2) reply.header('connection', 'close')
    })
  }

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500
    if (status === 500) req.log.error({ err }, 'unhandled error')
    void reply.code(status).send({ error: status === 413 ? 'Payload Too Large' : status === 500 ? 'Internal Server Error' : 'Bad Request', message: err.message, statusCode: status })
  })

  // The one line per admission goes through a child without redaction. Its fields are built below
  // from the request's identity and the decision (strings and numbers smart-restore made, never a
  // request object, a Secret or a config), so there is nothing to redact; the wildcard paths cost
  // ~20 µs a line, more than deciding a pass-through admission. Every other line (the handler's
  // warnings and errors, which may carry error objects) keeps the logger's redaction.
  const admissionLog = opts.logger.child({}, { redact: [] })

  const admissionRoute = (name: string, handler: Handler) => async (request: FastifyRequest, reply: FastifyReply) => {
    const started = performance.now()
    const contentType = request.headers['content-type']
    let review: AdmissionRequest
    try {
      if (request.body !== undefined && request.body !== '' && !isJsonContentType(contentType)) {
        throw new AdmissionParseError(415, `content type must be application/json, got ${JSON.stringify(contentType ?? 'none')}`)
      }
      review = parseAdmissionReview(request.body as string | undefined)
    } catch (err) {
      if (err instanceof AdmissionParseError) {
        request.log.warn({ webhook: name, uid: err.uid, status: err.statusCode, reason: err.message }, 'rejected malformed AdmissionReview')
        return reply.code(err.statusCode).send({ error: 'Bad AdmissionReview', message: err.message, statusCode: err.statusCode, uid: err.uid })
      }
      throw err
    }
    // The handler's logger and the budget's AbortSignal are made when first used: most admissions
    // (pass-through, DELETE from the caches) log nothing more and do no I/O, and both cost more than
    // deciding them. The budget still counts from the request's arrival.
    let log: Logger | undefined
    const handlerLog = () => (log ??= opts.logger.child({ uid: review.uid }))
    const budgetEndsAt = started + admissionBudgetMs((request.query as Record<string, unknown>).timeout)
    let budget: AbortController | undefined
    let budgetTimer: NodeJS.Timeout | undefined
    const call: CallOptions = {
      get signal() {
        if (!budget) {
          const controller = (budget = new AbortController())
          // A timer cleared with the answer (AbortSignal.timeout's would live on for the whole budget).
          budgetTimer = setTimeout(() => controller.abort(new Error('the admission budget is spent')), Math.max(0, budgetEndsAt - performance.now()))
        }
        return budget.signal
      },
    }
    const deps: WebhookDeps = {
      ...opts.deps,
      get logger() {
        return handlerLog()
      },
    }
    let result: HandlerResult
    try {
      result = await handler(review, deps, call)
    } catch (err) {
      // A bug must still produce an answer the apiserver understands, and a safe one: deny.
      handlerLog().error({ err }, 'admission handler failed')
      result = {
        review: deny(review.uid, `smart-restore failed to decide: ${(err as Error).message}. Retrying is safe.`, { code: 500, reason: 'InternalError' }),
        outcome: { decision: 'error', reason: (err as Error).message },
      }
    } finally {
      clearTimeout(budgetTimer)
    }
    const seconds = (performance.now() - started) / 1000
    try {
      opts.metrics?.observeAdmission(name, review.operation, result.outcome, seconds)
    } catch (err) {
      // Counting must never cost the apiserver its answer.
      handlerLog().error({ err }, 'recording admission metrics failed')
    }
    admissionLog.info(
      {
        uid: review.uid,
        webhook: name,
        namespace: review.namespace,
        name: review.name,
        operation: review.operation,
        dryRun: review.dryRun,
        allowed: result.review.response.allowed,
        ...result.outcome,
        durationMs: Math.round(seconds * 100_000) / 100,
      },
      'admission',
    )
    return reply.code(200).header('content-type', 'application/json').send(result.review)
  }

  app.post('/mutate', admissionRoute('mutate', handleMutate))
  app.post('/validate', admissionRoute('validate', handleValidate))

  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_req, reply) => {
    const state = opts.isReady?.() ?? { ready: true }
    const checks = state.checks ? { checks: state.checks } : {}
    return reply.code(state.ready ? 200 : 503).send(state.ready ? { status: 'ready', ...checks } : { status: 'not ready', reason: state.reason, ...checks })
  })
  return app
}
