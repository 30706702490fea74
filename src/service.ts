/**
 * Wiring: configuration → TLS → backup store → Kubernetes access (or standalone) → HTTPS server.
 * `startService` is what `npm start`, the e2e suite and the benchmarks run.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { defaultConfig, type Config } from './config/schema.js'
import { ClusterClient } from './kube/cluster-client.js'
import { isApiReachable, kubeConfigFromEnvironment } from './kube/config.js'
import { buildServer } from './server.js'
import { createBackupStore } from './storage/index.js'
import type { BackupStore } from './storage/types.js'
import { generateCertificates } from './tls/certificates.js'
import type { ClusterWriter, InFlightView } from './webhook/ports.js'
import type { KubeConfig } from '@kubernetes/client-node'
import { BUILTIN_RULES } from './inflight/rules.js'
import { mergeRules } from './inflight/match.js'
import { CachedInFlightView, NAMESPACES_SPEC_ID } from './inflight/view.js'
import { EventRecorder } from './kube/events.js'
import { BackupReconciler, reconcilerWatchSpecs } from './reconcile/controller.js'
import type { WatchCacheOptions } from './kube/watch-cache.js'

export interface ServiceHandle {
  /** e.g. https://127.0.0.1:8443 */
  url: string
  port: number
  mode: 'cluster' | 'standalone'
  /** PEM of the CA that signed the serving certificate, when smart-restore generated it. */
  caCert?: string
  /** Readiness goes false (endpoints drop the pod) while requests are still served. */
  beginDrain(): void
  /** Stop accepting, finish in-flight admissions, close. */
  close(): Promise<void>
}

export interface StartOptions {
  logger: Logger
  /** Use this cluster (tests) instead of looking at KUBECONFIG / in-cluster credentials. */
  kubeConfig?: KubeConfig | null
  /** Replace the Kubernetes writes (tests): a writer, or null for standalone. */
  cluster?: ClusterWriter | null
  /** Replace the deletion guard's view (tests). */
  inFlight?: InFlightView | null
  store?: BackupStore
  /** Options of the watched caches (tests shorten rediscovery). */
  watch?: WatchCacheOptions
  /** false: no backup-source reconciler even when the configuration enables it (tests of other parts). */
  reconciler?: boolean
}

async function loadTls(config: Config, logger: Logger): Promise<{ key: string; cert: string; caCert?: string }> {
  const { tlsCertFile, tlsKeyFile } = config.server
  if (tlsCertFile && tlsKeyFile) {
    return { cert: readFileSync(tlsCertFile, 'utf8'), key: readFileSync(tlsKeyFile, 'utf8') }
  }
  const hosts = ['localhost', '127.0.0.1', '::1', ...config.server.devCertHosts]
  const set = await generateCertificates(hosts, 30)
  // Written so a developer can `curl --cacert .dev/tls/ca.crt`; a read-only filesystem is fine.
  try {
    mkdirSync('.dev/tls', { recursive: true })
    writeFileSync(join('.dev/tls', 'ca.crt'), set.caCert)
  } catch {
    /* not needed to serve */
  }
  logger.warn({ hosts }, 'no TLS certificate configured (server.tlsCertFile/tlsKeyFile): serving a generated development certificate; its CA is in .dev/tls/ca.crt')
  return { cert: set.cert, key: set.key, caCert: set.caCert }
}

async function connectCluster(config: Config, logger: Logger): Promise<KubeConfig | null> {
  if (config.kube.mode === 'standalone') {
    logger.warn('kube.mode=standalone: decisions are answered but no Kubernetes object is written')
    return null
  }
  const found = kubeConfigFromEnvironment()
  const reachable = found ? await isApiReachable(found.kubeConfig, config.kube.requestTimeoutMs) : false
  if (found && reachable) {
    logger.info({ source: found.source, server: found.kubeConfig.getCurrentCluster()?.server }, 'connected to the Kubernetes API')
    return found.kubeConfig
  }
  const why = found ? `the API server from ${found.source} did not answer` : 'no in-cluster credentials and no kubeconfig'
  if (config.kube.mode === 'cluster') throw new Error(`kube.mode=cluster but ${why}`)
  logger.warn({ why }, 'standalone mode: no Kubernetes API; decisions are answered but no object is written (responses say so)')
  return null
}

export async function startService(config: Config, opts: StartOptions): Promise<ServiceHandle> {
  const { logger } = opts
  const tls = await loadTls(config, logger)
  if (config.store.type === 'local' && config.store.local.directory === defaultConfig.store.local.directory) {
    // The default development store is ours to create; a configured directory that is missing is
    // a misconfiguration, and the store reports it as "unknown" rather than "no backup".
    mkdirSync(config.store.local.directory, { recursive: true })
  }
  const store = opts.store ?? createBackupStore(config.store, { logger })
  const kubeConfig = opts.kubeConfig !== undefined ? opts.kubeConfig : opts.cluster === undefined || opts.inFlight === undefined ? await connectCluster(config, logger) : null
  const cluster = opts.cluster !== undefined ? opts.cluster : kubeConfig ? new ClusterClient(kubeConfig, { requestTimeoutMs: config.kube.requestTimeoutMs, fieldManager: 'smart-restore', logger }) : null
  let view: CachedInFlightView | undefined
  let reconciler: BackupReconciler | undefined
  let inFlight: InFlightView | null = null
  if (opts.inFlight !== undefined) inFlight = opts.inFlight
  else if (kubeConfig) {
    const rules = mergeRules(BUILTIN_RULES, config.deletionGuard.rules, { disabled: config.deletionGuard.disabledRules })
    const reconcile = config.reconciler.enabled && opts.reconciler !== false
    view = CachedInFlightView.create(kubeConfig, rules, { logger, ...opts.watch }, reconcile ? reconcilerWatchSpecs(config) : [])
    inFlight = view
    if (reconcile) {
      const client = cluster instanceof ClusterClient ? cluster : new ClusterClient(kubeConfig, { requestTimeoutMs: config.kube.requestTimeoutMs, fieldManager: 'smart-restore', logger })
      reconciler = new BackupReconciler({
        config,
        store,
        cluster: client,
        events: new EventRecorder({ client, logger }),
        cache: view.watchedCache,
        namespacesSpecId: NAMESPACES_SPEC_ID,
        logger: logger.child({ component: 'reconciler' }),
      })
      reconciler.start()
    }
    // Not awaited: the server answers (and /readyz says "not ready", DELETEs are denied as retryable)
    // while the watches list; a slow list must not keep the process from listening.
    view.start().catch((err: unknown) => logger.error({ err }, 'watched caches failed to start'))
  }
  let draining = false
  const app = buildServer({
    deps: { config, store, cluster, inFlight, namespaces: view, logger },
    logger,
    https: { key: tls.key, cert: tls.cert },
    bodyLimitBytes: config.server.bodyLimitBytes,
    isReady: () => {
      if (draining) return { ready: false, reason: 'shutting down' }
      const sync = inFlight?.syncState() ?? { synced: true }
      return sync.synced ? { ready: true } : { ready: false, reason: `watched caches not synced: ${sync.reason}` }
    },
  })
  await app.listen({ host: config.server.host, port: config.server.port })
  const port = (app.server.address() as AddressInfo).port
  const shownHost = config.server.host === '0.0.0.0' || config.server.host === '::' ? '127.0.0.1' : config.server.host
  const mode = kubeConfig || cluster ? 'cluster' : 'standalone'
  logger.info({ port, mode, store: config.store.type, tiers: Object.keys(config.tiers), tierLabel: config.tierLabel }, 'smart-restore listening')
  return {
    url: `https://${shownHost.includes(':') ? `[${shownHost}]` : shownHost}:${port}`,
    port,
    mode,
    caCert: tls.caCert,
    beginDrain() {
      draining = true
    },
    async close() {
      draining = true
      await app.close()
      await reconciler?.stop()
      await view?.stop()
      store.close()
    },
  }
}
