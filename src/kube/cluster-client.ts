/**
 * The Kubernetes writes of an admission: the per-PVC repository Secret and the
 * ReplicationDestination, each created idempotently.
 *
 * A mutating webhook is called again for the same PVC (retries, reinvocation, a user re-applying
 * after a denial), so "already exists" is the normal case, not an error: we read what is there and
 * decide whether it is what we would have created. Objects carrying our managed-by label may be
 * brought up to date; anyone else's object is never changed, only reported.
 */
import { CoreV1Api, CustomObjectsApi, type ConfigurationOptions, type KubeConfig, type V1Secret } from '@kubernetes/client-node'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, VOLSYNC_GROUP, VOLSYNC_VERSION } from '../engines/volsync.js'
import { withDeadline } from './deadline.js'
import { KubeApiError, toKubeApiError } from './errors.js'

const RD_PLURAL = 'replicationdestinations'

export interface KubeLogger {
  debug(obj: object, msg: string): void
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export interface ClusterClientOptions {
  /** Deadline of each API request. */
  requestTimeoutMs: number
  /** Recorded by the apiserver in managedFields. */
  fieldManager: string
  logger?: KubeLogger
}

export interface CallOptions {
  /** Abort every request of the operation when this fires (e.g. the admission's own budget). */
  signal?: AbortSignal
}

interface DesiredMeta {
  name: string
  namespace: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}

export interface DesiredSecret {
  apiVersion?: string
  kind?: string
  metadata: DesiredMeta
  type?: string
  /** base64 values */
  data?: Record<string, string>
  /** plain values; win over `data` for the same key, as on the apiserver */
  stringData?: Record<string, string>
}

export interface DesiredReplicationDestination {
  apiVersion?: string
  kind?: string
  metadata: DesiredMeta
  spec: { trigger?: { manual?: string }; [key: string]: unknown }
}

/** A ReplicationDestination as read from the apiserver (only what we look at). */
export interface ExistingReplicationDestination {
  metadata?: { uid?: string; labels?: Record<string, string>; deletionTimestamp?: string }
  spec?: { trigger?: { manual?: string }; [key: string]: unknown }
  status?: { lastManualSync?: string; [key: string]: unknown }
}

export type EnsureSecretResult = 'created' | 'unchanged' | 'updated'
export type EnsureReplicationDestinationResult = 'created' | 'unchanged' | 'replaced'

// ---------------------------------------------------------------------------------------------
// Pure comparisons (exported for tests)

/**
 * The first place where `want` is not contained in `have`, as a path like `spec.restic.capacity`,
 * or undefined when every field of `want` is present and equal in `have`. Extra fields in `have`
 * are fine (apiserver defaults); arrays must have the same length.
 */
export function firstDifference(want: unknown, have: unknown, path = ''): string | undefined {
  if (want === undefined) return undefined
  if (Array.isArray(want)) {
    if (!Array.isArray(have) || have.length !== want.length) return path || '.'
    for (let i = 0; i < want.length; i++) {
      const d = firstDifference(want[i], have[i], `${path}[${i}]`)
      if (d !== undefined) return d
    }
    return undefined
  }
  if (typeof want === 'object' && want !== null) {
    if (typeof have !== 'object' || have === null || Array.isArray(have)) return path || '.'
    for (const [k, v] of Object.entries(want)) {
      const d = firstDifference(v, (have as Record<string, unknown>)[k], path ? `${path}.${k}` : k)
      if (d !== undefined) return d
    }
    return undefined
  }
  return want === have ? undefined : path || '.'
}

function valueAt(obj: unknown, path: string): unknown {
  let v = obj
  for (const part of path.split(/\.|\[(\d+)\]/).filter((p) => p !== undefined && p !== '')) {
    v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[part] : undefined
  }
  return v
}

function missingLabels(want: Record<string, string> | undefined, have: Record<string, string> | undefined): string[] {
  return Object.entries(want ?? {})
    .filter(([k, v]) => have?.[k] !== v)
    .map(([k]) => k)
}

export interface RdAssessment {
  ours: boolean
  /** Why the existing RD is not what we would create; undefined when it matches. */
  mismatch?: string
  /** The manual restore already ran: its image is from back then, not a fresh restore. */
  completed: boolean
  terminating: boolean
}

export function assessReplicationDestination(existing: ExistingReplicationDestination, desired: DesiredReplicationDestination): RdAssessment {
  const ours = existing.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE
  const manual = existing.spec?.trigger?.manual
  const completed = manual !== undefined && existing.status?.lastManualSync === manual
  let mismatch: string | undefined
  const diff = firstDifference(desired.spec, existing.spec ?? {}, 'spec')
  if (diff !== undefined) {
    const show = (v: unknown) => (v === undefined ? 'unset' : JSON.stringify(v))
    mismatch = `${diff} is ${show(valueAt(existing, diff))}, smart-restore wants ${show(valueAt(desired, diff))}`
  } else {
    const labels = missingLabels(desired.metadata.labels, existing.metadata?.labels)
    if (labels.length) mismatch = `label${labels.length > 1 ? 's' : ''} ${labels.join(', ')} missing or different`
  }
  return { ours, mismatch, completed, terminating: Boolean(existing.metadata?.deletionTimestamp) }
}

/** Secret data as bytes: `data` (base64) overlaid with `stringData`, as the apiserver stores it. */
function secretBytes(s: { data?: Record<string, string>; stringData?: Record<string, string> }): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  for (const [k, v] of Object.entries(s.data ?? {})) out.set(k, Buffer.from(v, 'base64'))
  for (const [k, v] of Object.entries(s.stringData ?? {})) out.set(k, Buffer.from(v, 'utf8'))
  return out
}

/** Names of keys whose values differ (never the values). */
function differingKeys(want: Map<string, Buffer>, have: Map<string, Buffer>): string[] {
  const keys = new Set([...want.keys(), ...have.keys()])
  return [...keys].filter((k) => {
    const a = want.get(k)
    const b = have.get(k)
    return !a || !b || !a.equals(b)
  })
}

// ---------------------------------------------------------------------------------------------

export class ClusterClient {
  private readonly core: CoreV1Api
  private readonly custom: CustomObjectsApi

  constructor(
    kubeConfig: KubeConfig,
    private readonly opts: ClusterClientOptions,
  ) {
    this.core = kubeConfig.makeApiClient(CoreV1Api)
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi)
  }

  /** One API request under the deadline, its failure mapped to a KubeApiError. */
  private async call<T>(action: string, object: string, signal: AbortSignal | undefined, fn: (o: ConfigurationOptions) => Promise<T>, redact?: string[]): Promise<T> {
    const started = performance.now()
    const ms = this.opts.requestTimeoutMs
    try {
      const result = await withDeadline(ms, fn, signal)
      this.opts.logger?.debug({ action, object, ms: Math.round(performance.now() - started) }, 'kubernetes api call')
      return result
    } catch (err) {
      const e = toKubeApiError(err, action, object, { redact, timeoutMs: ms })
      this.opts.logger?.debug({ action, object, kind: e.kind, status: e.status, ms: Math.round(performance.now() - started) }, 'kubernetes api call failed')
      throw e
    }
  }

  /** The Secret's values, base64-decoded. */
  async readSecretData(namespace: string, name: string, opts: CallOptions = {}): Promise<Record<string, string>> {
    const secret = await this.call('read', `Secret ${namespace}/${name}`, opts.signal, (o) => this.core.readNamespacedSecret({ namespace, name }, o))
    const out: Record<string, string> = {}
    for (const [k, v] of secretBytes(secret)) out[k] = v.toString('utf8')
    return out
  }

  async ensureSecret(desired: DesiredSecret, opts: CallOptions = {}): Promise<EnsureSecretResult> {
    const { namespace, name } = desired.metadata
    const object = `Secret ${namespace}/${name}`
    const want = secretBytes(desired)
    // Values that must not leak into error messages, in both encodings.
    const redact = [...want.values()].flatMap((b) => [b.toString('utf8'), b.toString('base64')])
    const body: V1Secret = { apiVersion: 'v1', kind: 'Secret', ...desired }
    const fieldManager = this.opts.fieldManager

    // Two rounds: the Secret may vanish between our create (409) and our read.
    for (let round = 1; ; round++) {
      try {
        await this.call('create', object, opts.signal, (o) => this.core.createNamespacedSecret({ namespace, body, fieldManager }, o), redact)
        this.opts.logger?.info({ object }, 'kubernetes object created')
        return 'created'
      } catch (err) {
        if (!(err instanceof KubeApiError && err.kind === 'conflict')) throw err
      }
      let existing: V1Secret
      try {
        existing = await this.call('read', object, opts.signal, (o) => this.core.readNamespacedSecret({ namespace, name }, o))
      } catch (err) {
        if (err instanceof KubeApiError && err.kind === 'not-found' && round === 1) continue
        throw err
      }
      const have = secretBytes(existing)
      const keys = differingKeys(want, have)
      const labels = missingLabels(desired.metadata.labels, existing.metadata?.labels)
      const ours = existing.metadata?.labels?.[MANAGED_BY_LABEL] === MANAGED_BY_VALUE
      if (keys.length === 0 && (labels.length === 0 || !ours)) return 'unchanged'
      if (!ours) {
        throw new KubeApiError({
          kind: 'conflict',
          status: 409,
          object,
          retryable: false,
          message:
            `${object} already exists, is not managed by smart-restore (no label ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}) ` +
            `and its data differs from what smart-restore needs (keys: ${keys.join(', ')}); ` +
            `delete that Secret, or rename it, so smart-restore can create its own`,
        })
      }
      // Ours and out of date (e.g. rotated credentials): replace, guarded by the resourceVersion we read.
      const data: Record<string, string> = {}
      for (const [k, v] of want) data[k] = v.toString('base64')
      const replacement: V1Secret = {
        ...existing,
        metadata: {
          ...existing.metadata,
          labels: { ...existing.metadata?.labels, ...desired.metadata.labels },
          annotations: { ...existing.metadata?.annotations, ...desired.metadata.annotations },
        },
        data,
      }
      delete replacement.stringData
      try {
        await this.call('update', object, opts.signal, (o) => this.core.replaceNamespacedSecret({ namespace, name, body: replacement, fieldManager }, o), redact)
      } catch (err) {
        if (err instanceof KubeApiError && err.kind === 'conflict') {
          throw new KubeApiError({ kind: 'conflict', status: 409, object, retryable: true, message: `${object} changed while smart-restore was updating it; retry` })
        }
        throw err
      }
      this.opts.logger?.info({ object, keys }, 'kubernetes object updated')
      return 'updated'
    }
  }

  async ensureReplicationDestination(desired: DesiredReplicationDestination, opts: CallOptions = {}): Promise<EnsureReplicationDestinationResult> {
    const { namespace, name } = desired.metadata
    const object = `ReplicationDestination ${namespace}/${name}`
    const body = { apiVersion: `${VOLSYNC_GROUP}/${VOLSYNC_VERSION}`, kind: 'ReplicationDestination', ...desired }
    const ref = { group: VOLSYNC_GROUP, version: VOLSYNC_VERSION, namespace, plural: RD_PLURAL }
    const create = async (): Promise<boolean> => {
      try {
        await this.call('create', object, opts.signal, (o) => this.custom.createNamespacedCustomObject({ ...ref, body, fieldManager: this.opts.fieldManager }, o))
        return true
      } catch (err) {
        if (err instanceof KubeApiError && err.kind === 'conflict') return false
        throw err
      }
    }
    const stillThere = (why: string) =>
      new KubeApiError({ kind: 'conflict', status: 409, object, retryable: true, message: `${object} ${why}; it is still being deleted, retry in a few seconds` })

    if (await create()) {
      this.opts.logger?.info({ object }, 'kubernetes object created')
      return 'created'
    }
    let existing: ExistingReplicationDestination
    try {
      existing = (await this.call('read', object, opts.signal, (o) => this.custom.getNamespacedCustomObject({ ...ref, name }, o))) as ExistingReplicationDestination
    } catch (err) {
      // Deleted between our create and our read: one more create settles it.
      if (!(err instanceof KubeApiError && err.kind === 'not-found')) throw err
      if (await create()) return 'created'
      throw stillThere('reappeared while smart-restore was creating it')
    }

    const a = assessReplicationDestination(existing, desired)
    if (a.terminating) throw stillThere('exists but is marked for deletion')
    // A retry of the same admission: the RD we (or someone, identically) created is still waiting to restore.
    if (!a.mismatch && !a.completed) return 'unchanged'
    const why = a.mismatch ?? `its restore already ran (status.lastManualSync = spec.trigger.manual = ${JSON.stringify(existing.spec?.trigger?.manual)}), so its image is from back then`
    if (!a.ours) {
      throw new KubeApiError({
        kind: 'conflict',
        status: 409,
        object,
        retryable: false,
        message: `${object} already exists and is not managed by smart-restore (no label ${MANAGED_BY_LABEL}=${MANAGED_BY_VALUE}): ${why}; delete it so smart-restore can create its own`,
      })
    }

    // Ours but stale: handing it to a new PVC would populate the volume from an old image or the
    // wrong source. Delete exactly that object (uid precondition: never a newer one), then create.
    this.opts.logger?.info({ object, why }, 'replacing a stale ReplicationDestination of ours')
    try {
      await this.call('delete', object, opts.signal, (o) =>
        this.custom.deleteNamespacedCustomObject({ ...ref, name, propagationPolicy: 'Background', body: { preconditions: { uid: existing.metadata?.uid } } }, o),
      )
    } catch (err) {
      if (err instanceof KubeApiError && err.kind === 'conflict') {
        throw new KubeApiError({ kind: 'conflict', status: 409, object, retryable: true, message: `${object} was replaced by someone else while smart-restore was replacing it; retry` })
      }
      if (!(err instanceof KubeApiError && err.kind === 'not-found')) throw err
    }
    if (await create()) return 'replaced'
    throw stillThere(`was deleted because ${why}, but could not be created again`)
  }
}
