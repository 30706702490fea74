/**
 * Where the Kubernetes credentials come from, and whether the API answers: the two facts that pick
 * cluster or standalone mode at startup.
 */
import { existsSync, readFileSync } from 'node:fs'
import { homedir } from 'node:os'
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
  /** Default os.homedir(); `~/.kube/config` is looked up there. */
  homeDir?: string
}

/**
 * In-cluster when KUBERNETES_SERVICE_HOST is set and the service account token is mounted;
 * otherwise the files named by KUBECONFIG, or ~/.kube/config; otherwise null.
 *
 * Unlike client-node's loadFromDefault this never invents a `http://localhost:8080` cluster, so
 * "no credentials" is visible to the caller. A kubeconfig that exists but does not parse throws.
 */
export function kubeConfigFromEnvironment(opts: EnvironmentOptions = {}): KubeConfigSource | null {
  const env = opts.env ?? process.env
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

  const files = (env.KUBECONFIG ?? '').split(delimiter).filter((f) => f && existsSync(f))
  if (files.length === 0) {
    const home = opts.homeDir ?? homedir()
    const file = home ? join(home, '.kube', 'config') : ''
    if (file && existsSync(file)) files.push(file)
  }
  if (files.length === 0) return null
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
  if (!kubeConfig.getCurrentCluster()) return null
  return { kubeConfig, source: 'kubeconfig' }
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
