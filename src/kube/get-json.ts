/**
 * One API request through client-node's own HTTP plumbing (KubeConfig authentication and TLS agent,
 * the call's middlewares, node-fetch), answered as plain JSON; and `getJson`, a GET of any API path
 * under a hard deadline.
 *
 * Why not the generated APIs: the typed lists (CoreV1Api.list...) deserialize into model classes
 * (timestamps become Date objects, unknown fields are dropped), while watch events arrive as plain
 * JSON; a cache fed by both would hold two shapes of the same object. CustomObjectsApi returns plain
 * JSON but cannot address the core group (`/api/v1`). These helpers read and write every group the
 * same way.
 */
import { ApiException, HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, type ConfigurationOptions, type KubeConfig, type ObservableMiddleware } from '@kubernetes/client-node'
import { withDeadline } from './deadline.js'

const http = new IsomorphicFetchHttpLibrary()

export interface RawRequest {
  method: HttpMethod
  path: string
  query?: Record<string, string | undefined>
  /** Sent as JSON (also for apply-patch+yaml: JSON is YAML). */
  body?: unknown
  contentType?: string
}

/**
 * Send `req` with the KubeConfig's authentication and the call options' middlewares (withDeadline's
 * abort signal and pooled agent). Resolves with the status and parsed body of a 2xx answer; any
 * other status rejects with client-node's ApiException (code + raw body), which toKubeApiError
 * describes.
 */
export async function send(kubeConfig: KubeConfig, req: RawRequest, options: ConfigurationOptions): Promise<{ status: number; body: unknown }> {
  const cluster = kubeConfig.getCurrentCluster()
  if (!cluster) throw new Error('no current cluster in the kubeconfig')
  let ctx = new RequestContext(cluster.server.replace(/\/+$/, '') + req.path, req.method)
  for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) ctx.setQueryParam(k, v)
  ctx.setHeaderParam('Accept', 'application/json')
  if (req.body !== undefined) {
    ctx.setHeaderParam('Content-Type', req.contentType ?? 'application/json')
    ctx.setBody(JSON.stringify(req.body))
  }
  await kubeConfig.applySecurityAuthentication(ctx)
  for (const m of (options.middleware ?? []) as ObservableMiddleware[]) ctx = await m.pre(ctx).toPromise()
  const res = await http.send(ctx).toPromise()
  const text = await res.body.text()
  if (res.httpStatusCode < 200 || res.httpStatusCode > 299) {
    throw new ApiException<string>(res.httpStatusCode, `HTTP ${res.httpStatusCode} from ${req.method} ${req.path}`, text, res.headers)
  }
  return { status: res.httpStatusCode, body: text ? JSON.parse(text) : undefined }
}

export interface GetJsonOptions {
  /** Deadline of the whole call, body included. */
  timeoutMs: number
  /** Give up when this fires (e.g. the owner is stopping). */
  signal?: AbortSignal
}

/**
 * GET `path` (e.g. `/apis/batch/v1/jobs`) with `query`. Resolves with the parsed body of a 2xx answer;
 * rejects with client-node's ApiException (code + raw body, so toKubeApiError describes it) for any
 * other status, a node-fetch FetchError for network failures, and DeadlineError when the deadline
 * (or `signal`) passes first.
 */
export async function getJson<T = unknown>(kubeConfig: KubeConfig, path: string, query: Record<string, string | undefined>, opts: GetJsonOptions): Promise<T> {
  return withDeadline(opts.timeoutMs, async (options) => (await send(kubeConfig, { method: HttpMethod.GET, path, query }, options)).body as T, opts.signal)
}
