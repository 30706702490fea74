/**
 * Wiring: configuration → TLS → backup store → Kubernetes access (or standalone) → HTTPS server,
 * plus the metrics listener and the certificate reloader.
 * `startService` is what `npm start`, the e2e suite and the benchmarks run.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { defaultConfig, type Config } from './config/schema.js'
import { ClusterClient } from './kube/cluster-client.js'
import { isApiReachable, kubeConfigFromEnvironment } from './kube/config.js'
import { startMetricsServer, ServiceMetrics, type MetricsOptions, type MetricsServer } from './metrics.js'
import { buildServer, type ReadyState } from './server.js'
import { createBackupStore, passwordSourceFor } from './storage/index.js'
import { passwordFromSecret } from './storage/secret-password.js'
import type { BackupStore } from './storage/types.js'
import { generateCertificates } from './tls/certificates.js'
import { CertificateReloader, checkKeyPair, type CertificateSummary } from './tls/reload.js'
import type { ClusterWriter, InFlightView } from './webhook/ports.js'
import type { KubeConfig } from '@kubernetes/client-node'
import { BUILTIN_RULES } from './inflight/rules.js'
import { mergeRules } from './inflight/match.js'
import { CachedInFlightView, NAMESPACES_SPEC_ID } from './inflight/view.js'
import { EventRecorder } from './kube/events.js'
import { BackupReconciler, PVC_SPEC_ID, reconcilerWatchSpecs, SOURCES_SPEC_ID } from './reconcile/controller.js'
import { registerReadinessMetrics } from './status/metrics.js'
import { ReadinessRefresher } from './status/refresher.js'
import { WatchedCache, type WatchCacheOptions } from './kube/watch-cache.js'
import { PrerequisiteReporter } from './preflight/report.js'
import { preflightWatchSpecs, RestorePreflightView } from './preflight/view.js'
import { defaultIdentity, LeaderElector } from './kube/leader-election.js'
import type { WorkQueueStats } from './reconcile/queue.js'

export interface ServiceHandle {
  /** e.g. https://127.0.0.1:8443 */
  url: string
  port: number
  mode: 'cluster' | 'standalone'
  /** PEM of the CA that signed the serving certificate, when smart-restore generated it. */
  caCert?: string
  /** e.g. http://127.0.0.1:9090/metrics; absent when server.metricsPort is -1. */
  metricsUrl?: string
  metrics: ServiceMetrics
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
  /** This replica's holderIdentity in the leader election Lease (default: env POD_NAME, else hostname_<random>). */
  leaderIdentity?: string
  metrics?: MetricsOptions
  /** Certificate file watching (tests shorten the debounce and the periodic check). */
  certificateReload?: { debounceMs?: number; intervalMs?: number }
}

interface LoadedTls {
  key: string
  cert: string
  caCert?: string
  /** The files, when configured: they are followed for rotations. */
  files?: { certFile: string; keyFile: string }
}

/**
 * `cache` as seen by one leadership term's reconciler: its change listeners are removed when the
 * term ends (BackupReconciler.stop stops its queue but leaves them subscribed), so a replica that
 * leads many times keeps one set of listeners, not one per term.
 */
function termCache(cache: WatchedCache): { cache: WatchedCache; unsubscribe(): void } {
  const unsubscribes: Array<() => void> = []
  const scoped = new Proxy(cache, {
    get(target, prop) {
      if (prop === 'onChange') {
        return (specId: string, listener: Parameters<WatchedCache['onChange']>[1]) => {
          const off = target.onChange(specId, listener)
          unsubscribes.push(off)
          return off
        }
      }
      const value: unknown = Reflect.get(target, prop, target)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
  return { cache: scoped, unsubscribe: () => unsubscribes.splice(0).forEach((off) => off()) }
}

function formatHost(host: string): string {
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return shown.includes(':') ? `[${shown}]` : shown
}

async function loadTls(config: Config, logger: Logger): Promise<LoadedTls> {
  const { tlsCertFile, tlsKeyFile } = config.server
  if (tlsCertFile && tlsKeyFile) {
    const pair = { cert: readFileSync(tlsCertFile, 'utf8'), key: readFileSync(tlsKeyFile, 'utf8') }
    try {
      checkKeyPair(pair)
    } catch (err) {
      throw new Error(`server.tlsCertFile ${tlsCertFile} / server.tlsKeyFile ${tlsKeyFile}: ${(err as Error).message}`)
    }
    return { ...pair, files: { certFile: tlsCertFile, keyFile: tlsKeyFile } }
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
  const metrics = new ServiceMetrics(opts.metrics)
  if (config.store.type === 'local' && config.store.local.directory === defaultConfig.store.local.directory) {
    // The default development store is ours to create; a configured directory that is missing is
    // a misconfiguration, and the store reports it as "unknown" rather than "no backup".
    mkdirSync(config.store.local.directory, { recursive: true })
  }
  const kubeConfig = opts.kubeConfig !== undefined ? opts.kubeConfig : opts.cluster === undefined || opts.inFlight === undefined ? await connectCluster(config, logger) : null
  const newClusterClient = (kc: KubeConfig) => new ClusterClient(kc, { requestTimeoutMs: config.kube.requestTimeoutMs, fieldManager: 'smart-restore', logger })
  const cluster = opts.cluster !== undefined ? opts.cluster : kubeConfig ? newClusterClient(kubeConfig) : null
  // Probe mode restic opens repositories with the restores' own password: store.passwordFile, else
  // RESTIC_PASSWORD of the source Secret through the API (the Secret the restores copy).
  const secret = config.restore.sourceSecret
  const fromSecret = cluster ? passwordFromSecret({ ...secret, readSecretData: (ns, name) => cluster.readSecretData(ns, name) }) : undefined
  const store = opts.store ?? createBackupStore(config.store, { logger, password: passwordSourceFor(config, fromSecret) })
  if (config.store.probe.mode === 'restic') {
    logger.info(
      { passwordFrom: config.store.passwordFile ? 'store.passwordFile' : fromSecret ? `Secret ${secret.namespace}/${secret.name}` : 'none' },
      'probe mode restic: repositories are opened to see which snapshot VolSync will restore',
    )
  }
  let view: CachedInFlightView | undefined
  let preflight: RestorePreflightView | undefined
  let prerequisites: PrerequisiteReporter | undefined
  /** Stops the leader's work (the elector's stop also releases the Lease); undefined without a reconciler. */
  let stopReconciling: (() => Promise<void>) | undefined
  /** What /readyz says about the leader election; undefined without a reconciler. */
  let leaderCheck: (() => string) | undefined
  let inFlight: InFlightView | null = null
  if (opts.inFlight !== undefined) inFlight = opts.inFlight
  else if (kubeConfig) {
    const rules = mergeRules(BUILTIN_RULES, config.deletionGuard.rules, { disabled: config.deletionGuard.disabledRules })
    const reconcile = config.reconciler.enabled && opts.reconciler !== false
    view = CachedInFlightView.create(kubeConfig, rules, { logger, ...opts.watch }, reconcile ? reconcilerWatchSpecs(config) : [])
    inFlight = view
    if (reconcile) {
      // The watched caches stay on every replica (the deletion guard and the webhooks read them);
      // the work that writes or probes runs on the leader only: the backup-source reconciler (with
      // its orphan sweep) and the readiness refresh. A new reconciler and refresher each term.
      const client = cluster instanceof ClusterClient ? cluster : newClusterClient(kubeConfig)
      const events = new EventRecorder({ client, logger })
      const watched = view.watchedCache
      metrics.watchEvents(() => events.stats())
      let term: { reconciler: BackupReconciler; refresher: ReadinessRefresher; unsubscribe(): void } | undefined
      let stopping: Promise<void> = Promise.resolve()
      // Counts of the finished terms' queues, so smart_restore_reconcile_total never goes back.
      const past = { retries: 0, processed: 0, failures: 0 }
      const startWork = () => {
        if (term) return
        const scoped = termCache(watched)
        const reconciler = new BackupReconciler({
          config,
          store,
          cluster: client,
          events,
          cache: scoped.cache,
          namespacesSpecId: NAMESPACES_SPEC_ID,
          logger: logger.child({ component: 'reconciler' }),
          count: (counter) => metrics.countReconcileFinding(counter),
        })
        // DR readiness for the metrics: the reconciler's PVC and ReplicationSource caches, the store.
        const refresher = new ReadinessRefresher({
          config,
          store,
          cache: watched,
          pvcSpecId: PVC_SPEC_ID,
          sourcesSpecId: SOURCES_SPEC_ID,
          namespacesSpecId: NAMESPACES_SPEC_ID,
          logger: logger.child({ component: 'readiness' }),
        })
        term = { reconciler, refresher, unsubscribe: scoped.unsubscribe }
        reconciler.start()
        refresher.start()
      }
      const stopWork = (): Promise<void> => {
        const ending = term
        term = undefined
        if (!ending) return stopping
        ending.unsubscribe()
        stopping = (async () => {
          await ending.refresher.stop()
          await ending.reconciler.stop()
          const s = ending.reconciler.stats()
          past.retries += s.retries
          past.processed += s.processed
          past.failures += s.failures
        })()
        return stopping
      }
      metrics.watchReconcileQueue((): WorkQueueStats => {
        const s = term?.reconciler.stats()
        return {
          depth: s?.depth ?? 0,
          processing: s?.processing ?? 0,
          delayed: s?.delayed ?? 0,
          backingOff: s?.backingOff ?? 0,
          retries: past.retries + (s?.retries ?? 0),
          processed: past.processed + (s?.processed ?? 0),
          failures: past.failures + (s?.failures ?? 0),
        }
      })
      // On a follower the readiness series are absent (summing them over the replicas counts the leader's).
      registerReadinessMetrics(metrics.registry, config, () => term?.refresher.view())
      const le = config.leaderElection
      const identity = opts.leaderIdentity ?? defaultIdentity()
      if (le.enabled) {
        const elector = new LeaderElector({
          kubeConfig,
          namespace: le.namespace,
          name: le.leaseName,
          identity,
          leaseDurationMs: le.leaseDurationMs,
          renewDeadlineMs: le.renewDeadlineMs,
          retryPeriodMs: le.retryPeriodMs,
          requestTimeoutMs: config.kube.requestTimeoutMs,
          logger: logger.child({ component: 'leader-election' }),
          // A previous term's reconciler finishes its handlers before the next one starts.
          onStartedLeading: async () => {
            await stopping
            startWork()
          },
          onStoppedLeading: stopWork,
        })
        metrics.watchLeader(() => ({ identity, leading: elector.isLeader() }))
        leaderCheck = () => {
          const st = elector.status()
          if (st.leading) return `this replica (${st.identity})`
          if (!st.holder) return `none yet (lease ${st.lease})`
          if (st.holder === st.identity) return `none: this replica (${st.identity}) could not renew its lease ${st.lease}; trying again`
          return `${st.holder} (lease ${st.lease}${st.expired ? ', expired: taken over at the next retry' : ''})`
        }
        elector.start()
        stopReconciling = () => elector.stop()
      } else {
        logger.info('leaderElection.enabled=false: this replica runs the reconciler whatever the others do')
        metrics.watchLeader(() => ({ identity, leading: true }))
        leaderCheck = () => `this replica (${identity}); leader election off: every replica reconciles`
        startWork()
        stopReconciling = stopWork
      }
    }
    const cache = view.watchedCache
    // The restore preflight: its own small cache, so it never holds up readiness or the guard.
    const preflightCache = new WatchedCache(kubeConfig, preflightWatchSpecs(), { logger, ...opts.watch })
    preflight = new RestorePreflightView(preflightCache, () => cache.syncState())
    prerequisites = new PrerequisiteReporter(preflight, config, logger)
    const reporter = prerequisites
    metrics.watchRestorePrerequisites(() => {
      const gaps = reporter.report().gaps
      return gaps && { missing: gaps.map((g) => g.id) }
    })
    preflight.start().catch((err: unknown) => logger.error({ err }, 'restore preflight watches failed to start'))
    reporter.start()
    metrics.watchCaches(() => [...cache.syncState(), ...preflightCache.syncState()])
    // Not awaited: the server answers (and /readyz says "not ready", DELETEs are denied as retryable)
    // while the watches list; a slow list must not keep the process from listening.
    view.start().catch((err: unknown) => logger.error({ err }, 'watched caches failed to start'))
  }
  let draining = false
  let reloader: CertificateReloader | undefined
  // The certificate being served: the reloader's once it runs (it follows rotations), else the loaded one.
  const initialCertificate: CertificateSummary = checkKeyPair(tls)
  const certificate = () => reloader?.certificate() ?? initialCertificate
  metrics.watchCertificate(() => ({ notAfter: certificate().notAfter }))
  const readiness = (): ReadyState => {
    // Configuration: valid by construction (a bad value stops startup before this point).
    const checks: Record<string, string> = { config: 'valid' }
    const problems: string[] = []
    if (draining) problems.push('shutting down')
    checks.draining = draining ? 'yes' : 'no'
    const expires = certificate().notAfter * 1000
    if (expires <= Date.now()) {
      checks.certificates = `serving certificate expired at ${new Date(expires).toISOString()}`
      problems.push(`${checks.certificates}; waiting for a rotated one in ${config.server.tlsCertFile ?? 'the configured files'}`)
    } else checks.certificates = 'loaded'
    const sync = inFlight?.syncState() ?? { synced: true }
    checks.caches = !inFlight ? 'none (standalone)' : sync.synced ? 'synced' : `not synced: ${sync.reason}`
    if (!sync.synced) problems.push(`watched caches not synced: ${sync.reason}`)
    // Reported, never a reason to be unready: unlabelled PVCs and the deletion guard need none of it.
    if (prerequisites) checks.restorePrerequisites = prerequisites.report().check
    // Who runs the reconciler; never a reason to be unready (every replica serves the webhooks).
    if (leaderCheck) checks.leader = leaderCheck()
    return problems.length === 0 ? { ready: true, checks } : { ready: false, reason: problems.join('; '), checks }
  }
  const app = buildServer({
    deps: { config, store, cluster, inFlight, namespaces: view, ...(preflight ? { preflight } : {}), logger },
    logger,
    https: { key: tls.key, cert: tls.cert },
    bodyLimitBytes: config.server.bodyLimitBytes,
    isReady: readiness,
    isDraining: () => draining,
    metrics,
  })
  let metricsServer: MetricsServer | undefined
  try {
    await app.listen({ host: config.server.host, port: config.server.port })
    if (config.server.metricsPort >= 0) metricsServer = await startMetricsServer(metrics, { host: config.server.host, port: config.server.metricsPort, logger })
  } catch (err) {
    await app.close()
    await stopReconciling?.()
    prerequisites?.stop()
    await preflight?.stop()
    await view?.stop()
    store.close()
    throw err
  }
  if (tls.files) {
    const httpsServer = app.server as unknown as HttpsServer
    reloader = new CertificateReloader({
      ...tls.files,
      initial: tls,
      // Existing connections keep their session; new handshakes use the new context.
      apply: (pair) => httpsServer.setSecureContext(pair),
      logger,
      onReload: (result) => metrics.countTlsReload(result),
      ...opts.certificateReload,
    })
    reloader.start()
  }
  const port = (app.server.address() as AddressInfo).port
  const mode = kubeConfig || cluster ? 'cluster' : 'standalone'
  logger.info(
    { port, metricsPort: metricsServer?.port, mode, store: config.store.type, tiers: Object.keys(config.tiers), tierLabel: config.tierLabel, certificate: { fingerprint256: certificate().fingerprint256, notAfter: new Date(certificate().notAfter * 1000).toISOString(), reloadFromFiles: Boolean(tls.files) } },
    'smart-restore listening',
  )
  let closing: Promise<void> | undefined
  return {
    url: `https://${formatHost(config.server.host)}:${port}`,
    port,
    mode,
    caCert: tls.caCert,
    metricsUrl: metricsServer ? `http://${formatHost(config.server.host)}:${metricsServer.port}/metrics` : undefined,
    metrics,
    beginDrain() {
      draining = true
    },
    close() {
      closing ??= (async () => {
        draining = true
        // Stops accepting; idle keep-alive connections are closed; admissions in flight finish and
        // their connections end (Connection: close). Resolves when the last connection is gone.
        await app.close()
        reloader?.stop()
        // The leader's work stops, then its Lease is released: another replica takes over at once.
        await stopReconciling?.()
        prerequisites?.stop()
        await preflight?.stop()
        await view?.stop()
        await metricsServer?.close()
        store.close()
      })()
      return closing
    },
  }
}
