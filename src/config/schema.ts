/**
 * The one configuration schema of smart-restore.
 *
 * Every setting has a default so `npm start` works with nothing configured; a value that is present
 * but wrong stops startup with a ConfigError naming the field (e.g. `store.s3.bucket`).
 */

import type { InFlightRule } from '../inflight/types.js'

export interface TierConfig {
  /**
   * Cron schedule of the tier's ReplicationSources. `H` (or `H(a-b)`) in the minute and hour fields
   * is replaced per PVC by a value derived from a hash of namespace/name, so a hundred PVCs of one
   * tier do not all back up in the same second (as in Jenkins). E.g. `H * * * *`, `H H(0-5) * * *`.
   */
  schedule: string
  /** restic retention of the tier, passed to ReplicationSource.spec.restic.retain. */
  retain: Record<string, number | string>
  /** Overrides of the `backup` settings for this tier. */
  overrides?: Partial<BackupSourceConfig>
}

/** How ReplicationSources are written (per tier overridable). */
export interface BackupSourceConfig {
  copyMethod: 'Snapshot' | 'Clone' | 'Direct'
  volumeSnapshotClassName?: string
  /** Storage class of the temporary snapshot/clone volume; default: the PVC's. */
  storageClassName?: string
  cacheCapacity?: string
  cacheStorageClassName?: string
  pruneIntervalDays?: number
  moverServiceAccount?: string
  moverSecurityContext?: Record<string, unknown>
}

export type ProbeMode = 'restic' | 'list' | 'head'

export interface S3StoreConfig {
  /** Endpoint URL the service and the VolSync movers use, e.g. http://minio.minio:9000. Empty = AWS. */
  endpoint: string
  region: string
  bucket: string
  forcePathStyle: boolean
  /**
   * PEM file of the CA(s) that signed the endpoint's certificate (MinIO, TrueNAS, RustFS with their
   * own CA). The service trusts it besides the system's roots, and every ReplicationSource and
   * ReplicationDestination smart-restore writes gets it as VolSync `customCA`, from the per-PVC
   * repository Secret. Read at startup.
   */
  caBundle?: string
  /** Credentials the service itself uses to probe; absent = the AWS SDK default chain (env, IRSA, ...). */
  accessKeyId?: string
  secretAccessKey?: string
}

export interface StoreConfig {
  type: 's3' | 'local'
  s3: S3StoreConfig
  /** Directory laid out like the bucket (`<key>/snapshots/<id>`), for demos and standalone use. */
  local: { directory: string }
  /** Repository key of a PVC inside the bucket; placeholders {namespace} and {pvc}. */
  keyTemplate: string
  /**
   * File holding the repositories' RESTIC_PASSWORD, for probe mode restic. Absent: RESTIC_PASSWORD
   * of restore.sourceSecret, read through the Kubernetes API (kept in memory, never logged).
   */
  passwordFile?: string
  probe: {
    /**
     * restic: list `<key>/snapshots/`, then open the repository and read the snapshots VolSync's
     * mover would choose from (needs the password). list: ListObjectsV2 `<key>/snapshots/`
     * max-keys 1, proves a snapshot file exists. head: HEAD `headKeyTemplate`, proves an object exists.
     */
    mode: ProbeMode
    /** Key probed in head mode; placeholders {namespace}, {pvc}, {key}. */
    headKeyTemplate: string
    /** Deadline of the whole probe (all retries), well inside the webhook's timeoutSeconds. */
    deadlineMs: number
    /** How long an `exists`/`none` answer is reused for the same key (dedupes retries and both webhooks). */
    cacheTtlMs: number
  }
}

export interface RestoreConfig {
  /** Secret in the service's namespace holding RESTIC_PASSWORD and the movers' AWS credentials. */
  sourceSecret: { namespace: string; name: string }
  volumeSnapshotClassName?: string
  /** Used when the PVC names none. */
  storageClassName?: string
  cacheCapacity?: string
  cacheStorageClassName?: string
  moverServiceAccount?: string
  moverSecurityContext?: Record<string, unknown>
  /** Allow `restore-from` to name a PVC in another namespace (off: a tenant could read another's data). */
  allowCrossNamespaceRestoreFrom: boolean
}

export interface DeletionGuardConfig {
  /**
   * A namespace being deleted removes its PVCs with ordinary DELETEs. wait: they are refused like
   * any other while something is in flight, so the namespace stays Terminating until the operation
   * ends (the namespace controller retries). allow: namespace deletion goes through, with a warning.
   */
  namespaceDeletion: 'wait' | 'allow'
  /** Also treat a restic lock younger than maxAgeMs in the PVC's repository as in flight (one S3 list per DELETE). */
  resticLocks: { enabled: boolean; maxAgeMs: number }
  /** Extra in-flight rules (same shape as the built-ins); one with a built-in's id replaces it. */
  rules: InFlightRule[]
  /** Built-in rule ids to switch off. */
  disabledRules: string[]
}

export interface Config {
  server: {
    host: string
    port: number
    /** PEM files; when absent a self-signed development certificate is generated at startup. */
    tlsCertFile?: string
    tlsKeyFile?: string
    bodyLimitBytes: number
    /** Extra DNS names/IPs in the generated development certificate (e.g. the address a cluster reaches you at). */
    devCertHosts: string[]
    /** On SIGTERM, stay ready-false but serving this long before closing, so endpoints can drop the pod. */
    shutdownDelayMs: number
    /** Plain-HTTP port of GET /metrics (Prometheus); 0 = any free port, -1 = no metrics listener. */
    metricsPort: number
  }
  /** The DR-readiness metrics (the same view as `smart-restore status`), refreshed in the background. */
  metrics: {
    /**
     * Per-PVC series (labels namespace, pvc, tier): restore point, last backup, readiness state,
     * attention. false: only the per-tier counts (for clusters where thousands of PVCs would be
     * too many series).
     */
    perPvc: boolean
    /** Each labelled PVC is looked at once per this period, spread over it (not all at once). */
    readinessRefreshMs: number
  }
  /** Label whose value names the backup tier. */
  tierLabel: string
  /** Prefix of every annotation smart-restore reads or writes. */
  annotationPrefix: string
  tiers: Record<string, TierConfig>
  /** Namespace label naming the tier of PVCs there that carry no tier label (the webhook adds it). */
  namespaceDefaultTierLabel: string
  backup: BackupSourceConfig
  reconciler: {
    /** Attach/adjust ReplicationSources (cluster mode only). */
    enabled: boolean
    /** Re-check every PVC this often even without a change (missed events, store retries). */
    resyncMs: number
    /** PVCs reconciled at once. */
    workers: number
    /** A restoring PVC still Pending this long gets a RestorePending Warning with the mover's status. */
    restorePendingAfterMs: number
    /**
     * A ReplicationDestination of smart-restore whose PVC does not exist this long after it was made
     * (the PVC's CREATE never completed: another webhook, a quota, a timeout) is deleted, and its
     * repository Secret with it (owned by the RD).
     */
    orphanGraceMs: number
  }
  excludedNamespaces: string[]
  store: StoreConfig
  /** What a CREATE does when the store cannot be checked: deny (safe, retryable) or treat as fresh. */
  onUnknown: 'deny' | 'fresh'
  restore: RestoreConfig
  deletionGuard: DeletionGuardConfig
  /**
   * One replica at a time runs the backup-source reconciler (with its orphan sweep) and the readiness
   * refresh, chosen with a coordination.k8s.io/v1 Lease as client-go and controller-runtime do it;
   * the webhooks are served by every replica. Off: every replica runs them (they converge, each write
   * and probe doubled).
   */
  leaderElection: {
    enabled: boolean
    /** The Lease's name. */
    leaseName: string
    /** The Lease's namespace: the service's own (env POD_NAMESPACE, from the downward API). */
    namespace: string
    /**
     * How long a follower waits, after it last saw the Lease change, before it takes it over from a
     * leader that stopped renewing. Whole seconds (the Lease's leaseDurationSeconds).
     */
    leaseDurationMs: number
    /** The leader stops its work when it could not renew for this long (less than leaseDurationMs). */
    renewDeadlineMs: number
    /** How often the leader renews and a follower tries to acquire (less than renewDeadlineMs). */
    retryPeriodMs: number
  }
  kube: {
    /** auto: use KUBECONFIG/in-cluster when reachable, else standalone. standalone: never write. */
    mode: 'auto' | 'cluster' | 'standalone'
    /** Deadline of each Kubernetes API call made while answering an admission. */
    requestTimeoutMs: number
  }
  logLevel: string
}

export const defaultConfig: Config = {
  server: { host: '0.0.0.0', port: 8443, bodyLimitBytes: 8 * 1024 * 1024, devCertHosts: [], shutdownDelayMs: 0, metricsPort: 9090 },
  metrics: { perPvc: true, readinessRefreshMs: 5 * 60_000 },
  tierLabel: 'backup',
  annotationPrefix: 'smart-restore.io/',
  tiers: {
    hourly: { schedule: 'H * * * *', retain: { hourly: 24, daily: 7, weekly: 4 } },
    daily: { schedule: 'H H(0-5) * * *', retain: { daily: 14, weekly: 8, monthly: 6 } },
    weekly: { schedule: 'H H(0-5) * * 0', retain: { weekly: 8, monthly: 12 } },
  },
  namespaceDefaultTierLabel: 'smart-restore.io/default-tier',
  backup: { copyMethod: 'Snapshot' },
  reconciler: { enabled: true, resyncMs: 10 * 60_000, workers: 4, restorePendingAfterMs: 30 * 60_000, orphanGraceMs: 10 * 60_000 },
  // The same list as the webhook configurations' namespaceSelector (webhook-config/), plus kube-public.
  excludedNamespaces: ['kube-system', 'kube-node-lease', 'kube-public', 'smart-restore'],
  store: {
    type: 'local',
    s3: { endpoint: '', region: 'us-east-1', bucket: '', forcePathStyle: true },
    local: { directory: '.dev/backups' },
    keyTemplate: '{namespace}/{pvc}',
    probe: { mode: 'restic', headKeyTemplate: '{key}', deadlineMs: 3000, cacheTtlMs: 10000 },
  },
  onUnknown: 'deny',
  restore: {
    sourceSecret: { namespace: 'smart-restore', name: 'smart-restore-restic' },
    allowCrossNamespaceRestoreFrom: false,
  },
  deletionGuard: { namespaceDeletion: 'wait', resticLocks: { enabled: false, maxAgeMs: 30 * 60_000 }, rules: [], disabledRules: [] },
  // client-go's and controller-runtime's defaults.
  leaderElection: { enabled: true, leaseName: 'smart-restore', namespace: 'smart-restore', leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 },
  kube: { mode: 'auto', requestTimeoutMs: 3000 },
  logLevel: 'info',
}
