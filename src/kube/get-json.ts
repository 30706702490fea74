/**
 * A plain GET of any API path, answered as parsed JSON, through client-node's own HTTP plumbing
 * (KubeConfig authentication and TLS agent, node-fetch) under a hard deadline.
 *
 * Why not the generated APIs: the typed lists (CoreV1Api.list...) deserialize into model classes
 * (timestamps become Date objects, unknown fields are dropped), while watch events arrive as plain
 * JSON; a cache fed by both would hold two shapes of the same object. CustomObjectsApi returns plain
 * JSON but cannot address the core group (`/api/v1`). This helper reads every group the same way.
 */
import { ApiException, HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, type KubeConfig, type ObservableMiddleware } from '@kubernetes/client-node'
import { withDeadline } from './deadline.js'

export interface GetJsonOptions {
  /** Deadline of the whole call, body included. */
  timeoutMs: number
  /** Give up when this fires (e.g. the owner is stopping). */
  signal?: AbortSignal
}

const http = new IsomorphicFetchHttpLibrary()

/**
 * GET `path` (e.g. `/apis/batch/v1/jobs`) with `query`. Resolves with the parsed body of a 2xx answer;
 * rejects with client-node's ApiException (code + raw body, so toKubeApiError describes it) for any
 * other status, a node-fetch FetchError for network failures, and DeadlineError when the deadline
 * (or `signal`) passes first.
 */
export async function getJson<T = unknown>(kubeConfig: KubeConfig, path: string, query: Record<string, string | undefined>, opts: GetJsonOptions): Promise<T> {
  return withDeadline(
    opts.timeoutMs,
    async (options) => {
      const cluster = kubeConfig.getCurrentCluster()
      if (!cluster) throw new Error('no current cluster in the kubeconfig')
      let ctx = new RequestContext(cluster.server.replace(/\/+$/, '') + path, HttpMethod.GET)
      for (const [k, v] of Object.entries(query)) if (v !== undefined) ctx.setQueryParam(k, v)
      ctx.setHeaderParam('Accept', 'application/json')
      await kubeConfig.applySecurityAuthentication(ctx)
      // withDeadline's middleware puts its AbortSignal on the request (socket and body read abort with it).
      for (const m of (options.middleware ?? []) as ObservableMiddleware[]) ctx = await m.pre(ctx).toPromise()
      const res = await http.send(ctx).toPromise()
      const text = await res.body.text()
      if (res.httpStatusCode < 200 || res.httpStatusCode > 299) {
        throw new ApiException<string>(res.httpStatusCode, `HTTP ${res.httpStatusCode} from GET ${path}`, text, res.headers)
      }
      return JSON.parse(text) as T
    },
    opts.signal,
  )
}
