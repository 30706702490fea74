/**
 * What the admission handlers need from the outside world, as interfaces, so each handler can be
 * driven by the real S3/Kubernetes adapters or by test doubles at the same seams.
 */
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import type { RepositorySecret, ReplicationDestination } from '../engines/volsync.js'
import type { BackupStore } from '../storage/types.js'
import type { InFlightFinding, PvcIdentity } from '../inflight/types.js'
import type { PreflightFacts } from '../decide/preflight.js'

/** The Kubernetes writes of the CREATE path. Errors are thrown as KubeApiError-like objects. */
export interface ClusterWriter {
  readSecretData(namespace: string, name: string, opts?: CallOptions): Promise<Record<string, string>>
  ensureSecret(desired: RepositorySecret, opts?: CallOptions): Promise<string>
  /** Create (or find, or replace a stale) RD; its uid makes it the owner of the repository Secret. */
  ensureReplicationDestinationObject(desired: ReplicationDestination, opts?: CallOptions & { reuseYoungerThanMs?: number }): Promise<{ result: string; uid: string }>
  /** Delete exactly this object (uid precondition); 'gone' when it already is. */
  delete(apiVersion: string, kind: string, namespace: string, name: string, opts?: CallOptions & { uid?: string }): Promise<string>
}

/** `signal` aborts when the admission's own budget (the apiserver's timeout) is spent. */
export interface CallOptions {
  signal?: AbortSignal
}

/** What the deletion guard reads: the watched caches, matched against the in-flight rules. */
export interface InFlightView {
  /** False until every active watch has its initial list (and the reason, for messages). */
  syncState(): { synced: boolean; reason?: string }
  /** Objects in flight for this PVC, from the caches only: no API call. */
  findInFlight(pvc: PvcIdentity): InFlightFinding[]
  namespaceTerminating(namespace: string): boolean
}

/** Namespace labels from the watched cache (a namespace may name a default tier). */
export interface NamespaceInfo {
  labels(namespace: string): Record<string, string> | undefined
}

export interface WebhookDeps {
  config: Config
  store: BackupStore
  /** null: standalone mode, decide and answer but write nothing. */
  cluster: ClusterWriter | null
  /** null: standalone mode, no watches; only the PVC itself is checked on DELETE. */
  inFlight: InFlightView | null
  /** Absent in standalone mode: no namespace defaults then. */
  namespaces?: NamespaceInfo
  /** What a restore needs to be populated (watched); absent in standalone mode: not checked then. */
  preflight?: { facts(): PreflightFacts }
  logger: Logger
}

/** What one admission did, for the per-admission log line and the metrics. */
export interface AdmissionOutcome {
  /** restore | fresh | fresh-unverified | skipped | denied | override | allowed | namespace-deletion | error */
  decision: string
  reason: string
  /** Denials only: the machine-readable cause (e.g. `unknown-tier`, `store-unknown-timeout`), as in the audit annotation. */
  cause?: string
  /** Objects created or found, e.g. "Secret media/data-claim-restic (created)". */
  objects?: string[]
  probe?: { state: string; location: string; kind?: string; ms: number }
}
