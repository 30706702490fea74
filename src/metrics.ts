/**
 * Prometheus metrics, in a Registry of their own (never prom-client's global one, so two services
 * in one process — tests, the e2e suite — keep separate counts), served over plain HTTP on their own
 * port by `startMetricsServer`.
 *
 * Label values are bounded by construction: webhook, operation, decision, denial cause, probe state,
 * error kinds are closed sets (anything unexpected is counted as `other`); in-flight rule ids come
 * from the configuration. No namespace, PVC or object name is ever a label value (the one name that
 * is: this replica's own identity in smart_restore_leader, one series per process).
 *
 * What is recorded where:
 * - admissions (latency, decisions, denial causes, probe, API errors, in-flight denials): from the
 *   outcome the admission route already computes (`observeAdmission`), nothing threaded into the
 *   storage or Kubernetes layers;
 * - watched caches, the reconciler's queue, Events, the leader election and the serving certificate: read at scrape time
 *   from the components' own state (`watch*`), so a scrape always shows the current state.
 */
import { PREREQUISITES, type PrerequisiteId } from './decide/preflight.js'
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import type { Logger } from 'pino'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { KubeErrorKind } from './kube/errors.js'
import type { SpecSyncState } from './kube/watch-cache.js'
import type { EventRecorderStats } from './kube/events.js'
import type { WorkQueueStats } from './reconcile/queue.js'
import { COUNTER as RECONCILE_COUNTER } from './reconcile/decide.js'
import type { UnknownKind, UnreadableKind } from './storage/types.js'
import type { AdmissionOutcome } from './webhook/ports.js'

/** The kube-apiserver's own `apiserver_admission_webhook_admission_duration_seconds` buckets (design.md §1). */
export const ADMISSION_BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 25]
/** Probe latency: cache hits (sub-millisecond) up to the 3 s default deadline and beyond. */
export const PROBE_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

const OTHER = 'other'

const OPERATIONS = new Set(['CREATE', 'UPDATE', 'DELETE', 'CONNECT'])
const DECISIONS = new Set(['restore', 'fresh', 'fresh-unverified', 'skipped', 'denied', 'override', 'allowed', 'namespace-deletion', 'error'])
const PROBE_STATES = new Set(['exists', 'none', 'unknown', 'unreadable'])

const UNKNOWN_KINDS = ['forbidden', 'credentials', 'timeout', 'network', 'server', 'bucket', 'password', 'other'] as const satisfies readonly UnknownKind[]
const UNREADABLE_KINDS = ['password', 'corrupt', 'not-a-repository'] as const satisfies readonly UnreadableKind[]
const KUBE_ERROR_KINDS = ['forbidden', 'conflict', 'not-found', 'invalid', 'server', 'timeout', 'network', 'unauthorized'] as const satisfies readonly KubeErrorKind[]
// Compile-time check that the lists above name every kind: a new kind must be added here too.
const _allUnknownKinds: [Exclude<UnknownKind, (typeof UNKNOWN_KINDS)[number]>] extends [never] ? true : never = true
const _allUnreadableKinds: [Exclude<UnreadableKind, (typeof UNREADABLE_KINDS)[number]>] extends [never] ? true : never = true
void _allUnreadableKinds
const _allKubeKinds: [Exclude<KubeErrorKind, (typeof KUBE_ERROR_KINDS)[number]>] extends [never] ? true : never = true
void _allUnknownKinds
void _allKubeKinds

/** Denial causes that carry no variable part (src/decide, src/webhook). */
const STATIC_CAUSES = new Set([
  // CREATE: what cannot be right
  'bad-restore-from',
  'bad-restore-as-of',
  'bad-restore-previous',
  'malformed-pvc',
  'no-namespace',
  'unknown-namespace-default-tier',
  'unknown-tier',
  'opt-out-without-reason',
  'generated-name-restore-from',
  'block-volume',
  'no-capacity',
  'restore-from-empty',
  'no-eligible-snapshot-no-data-path',
  'no-eligible-snapshot-as-of-before-oldest',
  'no-eligible-snapshot-previous-past-oldest',
  'cross-namespace-restore-from',
  'source-secret-incomplete',
  'backup-exists-restore-not-set-up',
  'restore-preflight-syncing',
  'restore-preflight-missing',
  // DELETE
  'no-old-object',
  'override-without-reason',
  'caches-not-synced',
])
/** Causes `<prefix><kind>` whose kind is a closed set. */
const UNKNOWN_KIND_SET = new Set<string>(UNKNOWN_KINDS)
// `error`: something other than a KubeApiError was thrown (webhook/mutate.ts describeError).
const KUBE_KIND_SET = new Set<string>([...KUBE_ERROR_KINDS, 'error'])
const KIND_CAUSES: Array<[prefix: string, kinds: ReadonlySet<string>]> = [
  ['store-unknown-', UNKNOWN_KIND_SET],
  ['repository-unreadable-', new Set<string>(UNREADABLE_KINDS)],
  ['locks-unknown-', UNKNOWN_KIND_SET],
  ['source-secret-', KUBE_KIND_SET],
  ['create-restore-objects-', KUBE_KIND_SET],
]
const IN_FLIGHT_CAUSE = /^in-flight-([a-z0-9]([-a-z0-9]*[a-z0-9])?)$/
const RECONCILE_FINDINGS = new Set<string>(Object.values(RECONCILE_COUNTER))
const EVENT_OUTCOMES = ['sent', 'deduplicated', 'exists', 'bumped', 'failed'] as const satisfies ReadonlyArray<keyof EventRecorderStats>

function bounded(value: string | undefined, allowed: ReadonlySet<string>): string {
  return value !== undefined && allowed.has(value) ? value : OTHER
}

/** The Kubernetes API error kind in a cause from one of the restore's API calls (`source-secret-forbidden`), else undefined. */
function kubeApiErrorKind(cause: string): string | undefined {
  if (STATIC_CAUSES.has(cause)) return undefined // e.g. source-secret-incomplete: the Secret was read
  for (const [prefix, kinds] of KIND_CAUSES) {
    if (kinds === KUBE_KIND_SET && cause.startsWith(prefix) && cause.length > prefix.length) return cause.slice(prefix.length)
  }
  return undefined
}

/** The denial cause as a label value: a known cause, `in-flight` (the rule is counted apart), or `other`. */
export function causeLabel(cause: string | undefined): string {
  if (cause === undefined) return OTHER
  if (STATIC_CAUSES.has(cause)) return cause
  if (IN_FLIGHT_CAUSE.test(cause)) return 'in-flight'
  for (const [prefix, kinds] of KIND_CAUSES) if (cause.startsWith(prefix) && kinds.has(cause.slice(prefix.length))) return cause
  return OTHER
}

export interface PrerequisiteState {
  missing: readonly PrerequisiteId[]
}

export interface CertificateInfo {
  /** Unix seconds. */
  notAfter: number
}

/** Who this replica is in the leader election, and whether it leads. */
export interface LeaderInfo {
  identity: string
  leading: boolean
}

export interface MetricsOptions {
  /** Node.js process metrics (CPU, memory, event loop, GC), prefixed `smart_restore_`. Default true. */
  defaultMetrics?: boolean
}

export class ServiceMetrics {
  readonly registry = new Registry()

  private readonly admissionDuration: Histogram<'webhook' | 'operation' | 'decision'>
  private readonly decisions: Counter<'webhook' | 'decision' | 'cause'>
  private readonly probeDuration: Histogram<'state'>
  private readonly probeErrors: Counter<'kind'>
  private readonly kubeApiErrors: Counter<'kind'>
  private readonly inflightDenials: Counter<'rule'>
  private readonly reconcileFindings: Counter<'finding'>
  private readonly tlsReloads: Counter<'result'>

  private cacheSource?: () => SpecSyncState[]
  private queueSource?: () => WorkQueueStats
  private eventSource?: () => EventRecorderStats
  private certificateSource?: () => CertificateInfo | undefined
  private prerequisiteSource?: () => PrerequisiteState | undefined
  private leaderSource?: () => LeaderInfo | undefined

  constructor(opts: MetricsOptions = {}) {
    const registers = [this.registry]
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'smart_restore_' })
    // Bound here, since prom-client calls collect() with the metric as `this`.
    const self = this

    this.admissionDuration = new Histogram({
      name: 'smart_restore_admission_duration_seconds',
      help: 'Time from receiving an AdmissionReview to answering it, per webhook (mutate, validate), operation and decision. Buckets are the kube-apiserver\'s own apiserver_admission_webhook_admission_duration_seconds buckets.',
      labelNames: ['webhook', 'operation', 'decision'],
      buckets: ADMISSION_BUCKETS,
      registers,
    })
    this.decisions = new Counter({
      name: 'smart_restore_decisions_total',
      help: 'Admissions answered, by webhook and decision (restore, fresh, fresh-unverified, skipped, denied, override, allowed, namespace-deletion, error); denials carry a cause.',
      labelNames: ['webhook', 'decision', 'cause'],
      registers,
    })
    this.probeDuration = new Histogram({
      name: 'smart_restore_store_probe_duration_seconds',
      help: 'How long the mutating webhook waited for the backup store\'s answer, by state (exists, none, unknown, unreadable). Includes answers from the short probe cache and probes shared with concurrent admissions.',
      labelNames: ['state'],
      buckets: PROBE_BUCKETS,
      registers,
    })
    this.probeErrors = new Counter({
      name: 'smart_restore_store_probe_errors_total',
      help: 'Mutating admissions whose backup store probe could not tell (state unknown), by kind (forbidden, credentials, timeout, network, server, bucket, password, other).',
      labelNames: ['kind'],
      registers,
    })
    this.kubeApiErrors = new Counter({
      name: 'smart_restore_kube_api_errors_total',
      help: 'Kubernetes API calls that failed while setting up a restore during an admission (reading the source Secret, writing the repository Secret or ReplicationDestination), by kind.',
      labelNames: ['kind'],
      registers,
    })
    this.inflightDenials = new Counter({
      name: 'smart_restore_inflight_denials_total',
      help: 'PVC deletions refused because a backup or restore is in flight, by the in-flight rule that matched first.',
      labelNames: ['rule'],
      registers,
    })
    this.reconcileFindings = new Counter({
      name: 'smart_restore_reconcile_findings_total',
      help: 'Backup-source reconciler findings that need attention: refused_existing_backup, refused_foreign_snapshots, repository_unreadable, restore_empty, restore_failed, restore_unverified, restore_pending, foreign_object, store_unknown, unknown_tier, backup_over_existing_acknowledged, orphan_restore_removed.',
      labelNames: ['finding'],
      registers,
    })
    // Every finding from 0, so increase() sees the first one (a series born at 1 has no increase).
    for (const finding of RECONCILE_FINDINGS) this.reconcileFindings.inc({ finding }, 0)
    this.tlsReloads = new Counter({
      name: 'smart_restore_tls_reloads_total',
      help: 'Serving certificate reloads from the configured files: applied, or rejected (unreadable or mismatched pair; the previous certificate stays in use).',
      labelNames: ['result'],
      registers,
    })

    new Gauge({
      name: 'smart_restore_cache_synced',
      help: '1 when a watched cache has its initial list (or its resource is not installed), else 0; per watch and resource.',
      labelNames: ['watch', 'resource'],
      registers,
      collect() {
        this.reset()
        for (const s of self.cacheSource?.() ?? []) this.set({ watch: s.id, resource: s.resource }, s.synced ? 1 : 0)
      },
    })
    new Gauge({
      name: 'smart_restore_cache_objects',
      help: 'Objects held by a watched cache, per watch and resource.',
      labelNames: ['watch', 'resource'],
      registers,
      collect() {
        this.reset()
        for (const s of self.cacheSource?.() ?? []) this.set({ watch: s.id, resource: s.resource }, s.objects)
      },
    })
    new Gauge({
      name: 'smart_restore_cache_active',
      help: '1 when a watched resource is installed (per the last discovery) and watched, else 0.',
      labelNames: ['watch', 'resource'],
      registers,
      collect() {
        this.reset()
        for (const s of self.cacheSource?.() ?? []) this.set({ watch: s.id, resource: s.resource }, s.active ? 1 : 0)
      },
    })
    new Counter({
      name: 'smart_restore_reconcile_total',
      help: 'PVC reconciles by the backup-source reconciler, by outcome (success, error; an error is retried with backoff).',
      labelNames: ['outcome'],
      registers,
      collect() {
        const q = self.queueSource?.()
        if (!q) return
        this.reset()
        this.inc({ outcome: 'success' }, Math.max(0, q.processed - q.failures))
        this.inc({ outcome: 'error' }, q.failures)
      },
    })
    new Gauge({
      name: 'smart_restore_reconcile_queue_depth',
      help: 'PVCs waiting for the reconciler, by state (queued, processing, delayed, backing_off).',
      labelNames: ['state'],
      registers,
      collect() {
        const q = self.queueSource?.()
        if (!q) return
        this.set({ state: 'queued' }, q.depth)
        this.set({ state: 'processing' }, q.processing)
        this.set({ state: 'delayed' }, q.delayed)
        this.set({ state: 'backing_off' }, q.backingOff)
      },
    })
    new Counter({
      name: 'smart_restore_events_total',
      help: 'Kubernetes Events on PVCs by outcome: sent, bumped (an earlier one counted up), exists (another replica wrote it), deduplicated (not repeated within the window), failed.',
      labelNames: ['outcome'],
      registers,
      collect() {
        const e = self.eventSource?.()
        if (!e) return
        this.reset()
        for (const outcome of EVENT_OUTCOMES) this.inc({ outcome }, e[outcome])
      },
    })
    new Gauge({
      name: 'smart_restore_restore_prerequisite_missing',
      help: `1 when something every restore needs is missing (${PREREQUISITES.join(', ')}), else 0; absent until the preflight watches have listed.`,
      labelNames: ['prerequisite'],
      registers,
      collect() {
        const p = self.prerequisiteSource?.()
        this.reset()
        if (!p) return
        for (const prerequisite of PREREQUISITES) this.set({ prerequisite }, p.missing.includes(prerequisite) ? 1 : 0)
      },
    })
    new Gauge({
      name: 'smart_restore_leader',
      help: 'Whether this replica runs the backup-source reconciler, the orphan sweep and the readiness refresh: 1 when it holds the leader election Lease (or leader election is off: every replica runs them), else 0. The label is this replica\'s own identity (its pod name), one series per process. Absent without a reconciler (standalone, reconciler.enabled false).',
      labelNames: ['identity'],
      registers,
      collect() {
        const l = self.leaderSource?.()
        this.reset()
        if (l) this.set({ identity: l.identity }, l.leading ? 1 : 0)
      },
    })
    new Gauge({
      name: 'smart_restore_tls_certificate_expiry_timestamp_seconds',
      help: 'When the serving certificate in use expires (Unix seconds).',
      registers,
      collect() {
        const c = self.certificateSource?.()
        this.reset()
        if (c) this.set(c.notAfter)
      },
    })
  }

  /** One answered admission: its latency, decision (and cause), probe, API errors, in-flight rule. */
  observeAdmission(webhook: string, operation: string, outcome: AdmissionOutcome, seconds: number): void {
    const decision = bounded(outcome.decision, DECISIONS)
    this.admissionDuration.observe({ webhook, operation: bounded(operation, OPERATIONS), decision }, seconds)
    const cause = decision === 'denied' ? outcome.cause : undefined
    this.decisions.inc(decision === 'denied' ? { webhook, decision, cause: causeLabel(cause) } : { webhook, decision })
    if (outcome.probe) {
      const state = bounded(outcome.probe.state, PROBE_STATES)
      this.probeDuration.observe({ state }, outcome.probe.ms / 1000)
      if (state === 'unknown') this.probeErrors.inc({ kind: bounded(outcome.probe.kind, UNKNOWN_KIND_SET) })
    }
    if (cause === undefined) return
    const apiErrorKind = kubeApiErrorKind(cause)
    if (apiErrorKind !== undefined) this.kubeApiErrors.inc({ kind: bounded(apiErrorKind, KUBE_KIND_SET) })
    const inflight = IN_FLIGHT_CAUSE.exec(cause)
    if (inflight) this.inflightDenials.inc({ rule: inflight[1]! })
  }

  /** The reconciler's `count` hook. */
  countReconcileFinding(finding: string): void {
    this.reconcileFindings.inc({ finding: bounded(finding, RECONCILE_FINDINGS) })
  }

  countTlsReload(result: 'applied' | 'rejected'): void {
    this.tlsReloads.inc({ result })
  }

  watchCaches(source: () => SpecSyncState[]): void {
    this.cacheSource = source
  }

  watchReconcileQueue(source: () => WorkQueueStats): void {
    this.queueSource = source
  }

  watchEvents(source: () => EventRecorderStats): void {
    this.eventSource = source
  }

  watchCertificate(source: () => CertificateInfo | undefined): void {
    this.certificateSource = source
  }

  /** The restore preflight's cluster-wide gaps; undefined while its watches sync. */
  watchRestorePrerequisites(source: () => PrerequisiteState | undefined): void {
    this.prerequisiteSource = source
  }

  /** The leader election of the reconciler; undefined (no series) when nothing is elected. */
  watchLeader(source: () => LeaderInfo | undefined): void {
    this.leaderSource = source
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}

export interface MetricsServer {
  port: number
  close(): Promise<void>
}

/**
 * GET /metrics over plain HTTP on its own port. No TLS on purpose: Prometheus scrapes it from inside
 * the cluster, the metrics hold no secrets and no object names (see the label rules above), and a
 * second listener means the apiserver-facing HTTPS port and its certificate stay about admissions
 * only. Restrict who can reach the port with a NetworkPolicy if that matters in your cluster.
 */
export async function startMetricsServer(metrics: ServiceMetrics, opts: { host: string; port: number; logger: Logger }): Promise<MetricsServer> {
  const sockets = new Set<Socket>()
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found; metrics are at GET /metrics\n')
      return
    }
    metrics.render().then(
      ({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType })
        res.end(req.method === 'HEAD' ? undefined : body)
      },
      (err: unknown) => {
        opts.logger.error({ err }, 'rendering metrics failed')
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n')
      },
    )
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const port = (server.address() as AddressInfo).port
  let closed: Promise<void> | undefined
  return {
    port,
    close() {
      // A scrape is not worth waiting for at shutdown: close keep-alive connections at once.
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of sockets) s.destroy()
      })
      return closed
    },
  }
}
