/**
 * Where the Kubernetes credentials come from, and whether the API answers: the two facts that pick
 * cluster or standalone mode at startup.
 */
import { existsSync, readFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { isIPv6 } from 'node:net'
import { KubeConfig, VersionApi } from '@kubernetes/client-node'
import { withDeadline } from './deadline.js'
import { toKubeApiError } from './errors.js'

export interface KubeConfigSource {
  kubeConfig: KubeConfig
  source: 'in-cluster' | 'kubeconfig'
}

export interface EnvironmentOptions {
  env?: NodeJS.ProcessEnv
  /** Default /var/run/secrets/kubernetes.io/serviceaccount. */
  serviceAccountDir?: string
}

/**
 * Where the service's Kubernetes access comes from, in kubectl's order of intent:
 *   1. KUBECONFIG, when set: exactly the files it names (merged like kubectl). Files that are all
 *      missing are an error, not a cue to look elsewhere: the operator named a cluster.
 *   2. In-cluster: KUBERNETES_SERVICE_HOST and a mounted service account token.
 *   3. Otherwise null (standalone). ~/.kube/config is deliberately not read: `npm start` on a
 *      laptop must not start writing restore objects into whatever context kubectl points at.
 *
 * Unlike client-node's loadFromDefault this never invents a `http://localhost:8080` cluster, so
 * "no credentials" is visible to the caller. A kubeconfig that exists but does not parse throws.
 */
export function kubeConfigFromEnvironment(opts: EnvironmentOptions = {}): KubeConfigSource | null {
  const env = opts.env ?? process.env
  const named = (env.KUBECONFIG ?? '').split(delimiter).filter(Boolean)
  if (named.length > 0) {
    const files = named.filter((f) => existsSync(f))
    if (files.length === 0) throw new Error(`KUBECONFIG names ${named.join(delimiter)}, and none of it exists`)
    const kubeConfig = new KubeConfig()
    try {
      kubeConfig.loadFromFile(files[0]!)
      for (const f of files.slice(1)) {
        const more = new KubeConfig()
        more.loadFromFile(f)
        kubeConfig.mergeConfig(more, true)
      }
    } catch (err) {
      throw new Error(`cannot load kubeconfig ${files.join(delimiter)}: ${(err as Error).message}`)
    }
    if (!kubeConfig.getCurrentCluster()) throw new Error(`kubeconfig ${files.join(delimiter)} has no current context with a cluster`)
    return { kubeConfig, source: 'kubeconfig' }
  }

  const saDir = opts.serviceAccountDir ?? '/var/run/secrets/kubernetes.io/serviceaccount'
  const host = env.KUBERNETES_SERVICE_HOST
  const tokenFile = join(saDir, 'token')
  if (host && existsSync(tokenFile)) {
    // What KubeConfig.loadFromCluster does, with the paths and env injectable. The tokenFile auth
    // provider re-reads the token, so projected (rotating) service account tokens keep working.
    const port = env.KUBERNETES_SERVICE_PORT ?? '443'
    const scheme = port === '80' || port === '8080' || port === '8001' ? 'http' : 'https'
    const kubeConfig = new KubeConfig()
    kubeConfig.loadFromOptions({
      clusters: [{ name: 'inCluster', server: `${scheme}://${isIPv6(host) ? `[${host}]` : host}:${port}`, caFile: join(saDir, 'ca.crt'), skipTLSVerify: false }],
      users: [{ name: 'inClusterUser', authProvider: { name: 'tokenFile', config: { tokenFile } } }],
      contexts: [{ name: 'inClusterContext', cluster: 'inCluster', user: 'inClusterUser', namespace: readNamespace(saDir) }],
      currentContext: 'inClusterContext',
    })
    return { kubeConfig, source: 'in-cluster' }
  }
  return null
}

/** The pod's namespace, as mounted next to the token (the default namespace of the context). */
function readNamespace(saDir: string): string | undefined {
  try {
    return readFileSync(join(saDir, 'namespace'), 'utf8').trim() || undefined
  } catch {
    return undefined
  }
}

export interface ApiProbe {
  reachable: boolean
  /** e.g. "v1.31.2" or "GET /version: timeout: ..." */
  detail: string
}

/** GET /version under a deadline. Only a successful answer counts: 401/403 mean we could not use it. */
export async function probeApi(kubeConfig: KubeConfig, timeoutMs: number): Promise<ApiProbe> {
  const server = kubeConfig.getCurrentCluster()?.server ?? 'no cluster'
  try {
    const api = kubeConfig.makeApiClient(VersionApi)
    const info = await withDeadline(timeoutMs, (o) => api.getCode(o))
    return { reachable: true, detail: info.gitVersion }
  } catch (err) {
    return { reachable: false, detail: toKubeApiError(err, 'GET /version on', server, { timeoutMs }).message }
  }
}

export async function isApiReachable(kubeConfig: KubeConfig, timeoutMs: number): Promise<boolean> {
  return (await probeApi(kubeConfig, timeoutMs)).reachable
}
