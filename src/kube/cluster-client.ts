/**
 * The Kubernetes writes of smart-restore.
 *
 * The admission's: the per-PVC repository Secret and the ReplicationDestination, each written
 * idempotently. A mutating webhook is called again for the same PVC (retries, reinvocation, a user
 * re-applying after a denial), so "already exists" is the normal case, not an error. The Secret is
 * server-side applied without force and without reading it first (smart-restore may not read Secrets
 * outside its own namespace): the apiserver itself creates it, leaves it as it is, updates what we
 * applied earlier, or answers with a conflict naming the fields another manager holds with other
 * values. The ReplicationDestination is created, and on "already exists" read and compared: ours may
 * be replaced; anyone else's object is never changed, only reported.
 *
 * The reconciler's: server-side apply (one field manager, so replicas converge instead of fighting),
 * deletes with a uid precondition, ownerReferences to the PVC, PVC label/annotation merge patches,
 * and the generic create/read/patch the Event recorder uses. These go through `send` (get-json.ts:
 * client-node's RequestContext, authentication, middlewares and HTTP library) rather than the
 * generated typed APIs: one code path for the core group and custom resources, request bodies
 * exactly as written (a typed model would re-serialise them), and plain JSON back, the same shape
 * the watched caches hold.
 */
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  HttpMethod,
  PatchStrategy,
  type ConfigurationOptions,
  type KubeConfig,
} from '@kubernetes/client-node'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, VOLSYNC_GROUP, VOLSYNC_VERSION } from '../engines/volsync.js'
import type { KubeObject } from '../inflight/types.js'
import { withDeadline } from './deadline.js'
import { send, type RawRequest } from './get-json.js'
import { groupVersionPath } from './paths.js'
import { KubeApiError, redact, toKubeApiError } from './errors.js'

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
  metadata?: { uid?: string; labels?: Record<string, string>; deletionTimestamp?: string; creationTimestamp?: string; ownerReferences?: Array<{ kind?: string; uid?: string }> }
  spec?: { trigger?: { manual?: string }; [key: string]: unknown }
  status?: { lastManualSync?: string; [key: string]: unknown }
}

/**
 * 'created': the Secret did not exist. 'applied': it existed and now holds what smart-restore applied
 * (unchanged when it already did: the apiserver does not write an identical apply).
 */
export type EnsureSecretResult = 'created' | 'applied'

/**
 * An object to server-side apply or create: a desired state (server fields are dropped). apiVersion,
 * kind and metadata.namespace are required at run time (typed optional so a KubeObject fits).
 */
export interface ApplyObject {
  apiVersion?: string
  kind?: string
  metadata: { name: string; namespace?: string; [key: string]: unknown }
  [key: string]: unknown
}

/** apiVersion, kind, name and namespace of an object to write, or a KubeApiError `invalid`. */
function identity(object: ApplyObject, action: string): { apiVersion: string; kind: string; name: string; namespace: string } {
  const { apiVersion, kind } = object
  const name = object.metadata?.name
  const namespace = object.metadata?.namespace
  if (!apiVersion || !kind || !name || !namespace) {
    throw new KubeApiError({ kind: 'invalid', object: `${kind ?? 'object'} ${namespace ?? ''}/${name ?? ''}`, retryable: false, message: `${action} needs apiVersion, kind, metadata.name and metadata.namespace` })
  }
  return { apiVersion, kind, name, namespace }
}

export interface ApplyOptions extends CallOptions {
  /**
   * Take over fields another field manager set (default true: apply is for objects smart-restore
   * owns, whose desired state is ours to say). With false a conflicting field is a 409 (`conflict`).
   */
  force?: boolean
  /**
   * The object's resourceVersion as the caller last saw it (e.g. from a watched cache), or null when
   * it knows the object does not exist: `changed` is then relative to that, and no read is made.
   * Undefined: the object is read first.
   */
  knownResourceVersion?: string | null
}

export interface ApplyResult {
  /** The object as the apiserver answered (plain JSON). */
  object: KubeObject
  /** Created, or its resourceVersion differs from the one before (a no-op apply keeps it). */
  changed: boolean
  created: boolean
}

/**
 * The 409 of a server-side apply without force: other managers hold fields it sets, with other
 * values. Kind, status, reason, message and retryable as any KubeApiError `conflict`; `conflicts`
 * says which fields and whose.
 */
export class ApplyConflictError extends KubeApiError {
  override name = 'ApplyConflictError'
  readonly conflicts: ApplyConflict[]
  constructor(base: KubeApiError, conflicts: ApplyConflict[]) {
    super({ kind: base.kind, message: base.message, object: base.object, status: base.status, reason: base.reason, retryable: base.retryable })
    this.conflicts = conflicts
  }
}

export interface DeleteOptions extends CallOptions {
  /** Delete only the object with this uid: a newer object of the same name is left alone ('gone'). */
  uid?: string
  /** Default Background: dependents (a ReplicationSource's mover Job) are collected afterwards. */
  propagationPolicy?: 'Background' | 'Foreground' | 'Orphan'
}

/**
 * 'deleted': the apiserver accepted the deletion (an object with finalizers stays, marked, until they
 * are removed). 'gone': there is no such object (404), or, with `uid`, the name now belongs to
 * another object (the precondition failed), so the one meant is gone.
 */
export type DeleteResult = 'deleted' | 'gone'

/** The owner an ownerReference points at; smart-restore uses the PVC (`v1`, `PersistentVolumeClaim`). */
export interface OwnerRef {
  apiVersion: string
  kind: string
  name: string
  uid: string
}

export type AddOwnerResult = 'added' | 'present'

/**
 * The ownerReference smart-restore puts on its objects (see addOwnerReference for why controller
 * and blockOwnerDeletion are false). Use it in apply configurations too, so an applied reference and
 * an added one are the same item.
 */
export function ownerReferenceTo(owner: OwnerRef): OwnerRef & { controller: false; blockOwnerDeletion: false } {
  return { apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid, controller: false, blockOwnerDeletion: false }
}

/** Labels or annotations to set; null removes the key. */
export interface MetadataChange {
  labels?: Record<string, string | null>
  annotations?: Record<string, string | null>
}

export interface PatchOptions extends CallOptions {
  /** Patch only the object with this uid (a recreated object of the same name is a 409 `conflict`). */
  uid?: string
}

/** Where the apiserver serves a kind smart-restore writes. */
export interface KindInfo {
  group: string
  version: string
  plural: string
}

const KINDS: Record<string, KindInfo> = {
  'v1/Secret': { group: '', version: 'v1', plural: 'secrets' },
  'v1/Event': { group: '', version: 'v1', plural: 'events' },
  'v1/PersistentVolumeClaim': { group: '', version: 'v1', plural: 'persistentvolumeclaims' },
  [`${VOLSYNC_GROUP}/${VOLSYNC_VERSION}/ReplicationSource`]: { group: VOLSYNC_GROUP, version: VOLSYNC_VERSION, plural: 'replicationsources' },
  [`${VOLSYNC_GROUP}/${VOLSYNC_VERSION}/ReplicationDestination`]: { group: VOLSYNC_GROUP, version: VOLSYNC_VERSION, plural: RD_PLURAL },
}

/** The resource of a kind smart-restore writes, or undefined for any other. */
export function kindInfo(apiVersion: string, kind: string): KindInfo | undefined {
  return KINDS[`${apiVersion}/${kind}`]
}

/** `/api/v1/namespaces/<ns>/secrets/<name>`, `/apis/<group>/<version>/namespaces/<ns>/<plural>/<name>`. */
function objectPath(apiVersion: string, kind: string, namespace: string, name?: string): string {
  const info = kindInfo(apiVersion, kind)
  if (!info) {
    throw new KubeApiError({ kind: 'invalid', object: `${kind} ${namespace}/${name ?? ''}`, retryable: false, message: `smart-restore does not know where the API serves ${apiVersion} ${kind}` })
  }
  const base = groupVersionPath(info)
  const enc = encodeURIComponent
  return `${base}/namespaces/${enc(namespace)}/${info.plural}${name === undefined ? '' : `/${enc(name)}`}`
}

/** Fields the apiserver owns: never part of an apply configuration (managedFields there is a 400). */
const SERVER_METADATA = ['resourceVersion', 'uid', 'creationTimestamp', 'generation', 'managedFields', 'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds'] as const

/**
 * The apply configuration for `object`: server fields and status dropped; a Secret's `stringData`
 * folded into base64 `data`, because stringData is write-only (it is never stored), so applying it
 * would leave the keys' ownership unrecorded and a key dropped later would never be pruned.
 */
function applyConfiguration(object: ApplyObject): Record<string, unknown> {
  const metadata: Record<string, unknown> = { ...object.metadata }
  for (const k of SERVER_METADATA) delete metadata[k]
  const body: Record<string, unknown> = { ...object, metadata }
  delete body.status
  if (object.apiVersion === 'v1' && object.kind === 'Secret' && body.stringData !== undefined && body.stringData !== null) {
    const data: Record<string, string> = {}
    for (const [k, v] of secretBytes(body as { data?: Record<string, string>; stringData?: Record<string, string> })) data[k] = v.toString('base64')
    delete body.stringData
    body.data = data
  }
  return body
}

/** A Secret's values in both encodings, for redaction from error messages. */
function secretRedactions(body: object): string[] {
  const bytes = secretBytes(body as { data?: Record<string, string>; stringData?: Record<string, string> })
  return [...bytes.values()].flatMap((b) => [b.toString('utf8'), b.toString('base64')])
}

const describe = (kind: string, namespace: string, name: string) => `${kind} ${namespace}/${name}`
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

/** One field another manager holds with another value, from an apply's 409. */
export interface ApplyConflict {
  /** The field path without its leading dot, e.g. `data.RESTIC_PASSWORD`. */
  field: string
  /** The manager's name, e.g. `kubectl-create`, when the cause names one. */
  manager?: string
}

/**
 * The field-manager conflicts in the Status of a server-side apply's 409, as the apiserver reports
 * them (apimachinery NewApplyConflict): reason Conflict, one `details.causes` item per field, with
 * type FieldManagerConflict, field `.data.RESTIC_PASSWORD`, message `conflict with "kubectl-create"
 * using v1` (an applier: `conflict with "argocd-controller"`). Empty for any other body.
 */
export function applyConflicts(body: unknown): ApplyConflict[] {
  let status = body
  if (typeof status === 'string') {
    try {
      status = JSON.parse(status)
    } catch {
      return []
    }
  }
  const causes = (status as { details?: { causes?: unknown } } | null)?.details?.causes
  if (!Array.isArray(causes)) return []
  const out: ApplyConflict[] = []
  for (const c of causes as Array<{ type?: unknown; field?: unknown; message?: unknown }>) {
    if (c?.type !== 'FieldManagerConflict' || typeof c.field !== 'string' || c.field === '') continue
    const conflict: ApplyConflict = { field: c.field.replace(/^\./, '') }
    // Go's %q of the name: a JSON string for anything printable.
    const quoted = typeof c.message === 'string' ? /^conflict with ("(?:[^"\\]|\\.)*")/.exec(c.message)?.[1] : undefined
    if (quoted !== undefined) {
      try {
        conflict.manager = JSON.parse(quoted) as string
      } catch {
        conflict.manager = quoted.slice(1, -1)
      }
    }
    out.push(conflict)
  }
  return out
}

// ---------------------------------------------------------------------------------------------

export class ClusterClient {
  private readonly core: CoreV1Api
  private readonly custom: CustomObjectsApi

  constructor(
    private readonly kubeConfig: KubeConfig,
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

  /**
   * The per-PVC repository Secret, server-side applied (fieldManager from the options, no force) with
   * no read before it: smart-restore may create and patch Secrets in any namespace but read them only
   * in its own. The apiserver does the comparison a read would have been for:
   *  - missing: created with exactly these data, labels and annotations ('created');
   *  - holding what we apply: nothing is written, resourceVersion unchanged ('applied');
   *  - our earlier apply with other values (rotated source data): updated, and the keys we no longer
   *    apply are removed ('applied');
   *  - another manager's Secret (kubectl create, a Helm chart, ...) with the same values for our keys:
   *    ownership of those values is shared, our labels and annotations are added ('applied');
   *  - another manager's Secret with other values for any field we apply: the apply's 409 becomes a
   *    KubeApiError `conflict`, not retryable, naming the fields and managers (never a value): someone
   *    has to delete or rename that Secret.
   * Values owned only by an Update of our own manager name (a Secret written by a smart-restore from
   * before server-side apply; the apiserver counts Apply and Update as different managers) are ours:
   * the apply is repeated with force once.
   */
  async ensureSecret(desired: DesiredSecret, opts: CallOptions = {}): Promise<EnsureSecretResult> {
    const { namespace, name } = desired.metadata
    const object = describe('Secret', namespace, name)
    const secret: ApplyObject = { ...desired, apiVersion: 'v1', kind: 'Secret', metadata: { ...desired.metadata } }
    const secretValues = secretRedactions(secret)
    const apply = (force: boolean) => this.apply(secret, { signal: opts.signal, force, knownResourceVersion: null })
    let res: ApplyResult
    try {
      res = await apply(false)
    } catch (err) {
      if (!(err instanceof ApplyConflictError)) throw err
      const fields = [...new Set(err.conflicts.map((c) => c.field))]
      const managers = [...new Set(err.conflicts.map((c) => c.manager ?? 'unknown'))]
      if (!managers.every((m) => m === this.opts.fieldManager)) {
        throw new KubeApiError({
          kind: 'conflict',
          status: 409,
          reason: 'Conflict',
          object,
          retryable: false,
          message: redact(`${object} exists with values smart-restore did not write (conflicting fields: ${fields.join(', ')}; managers: ${managers.join(', ')}); delete or rename it, then retry`, secretValues),
        })
      }
      this.opts.logger?.info({ object, fields }, 'taking over values an earlier smart-restore wrote without server-side apply')
      res = await apply(true)
    }
    return res.created ? 'created' : 'applied'
  }

  async ensureReplicationDestination(desired: DesiredReplicationDestination, opts: CallOptions = {}): Promise<EnsureReplicationDestinationResult> {
    return (await this.ensureReplicationDestinationObject(desired, opts)).result
  }

  /** ensureReplicationDestination, with the uid of the RD that now stands (to make it an owner). */
  async ensureReplicationDestinationObject(
    desired: DesiredReplicationDestination,
    opts: CallOptions & {
      /**
       * Reuse an existing RD of ours that no PVC owns yet only while it is younger than this; an
       * older one is replaced, so the orphan sweep (which removes such RDs only past
       * reconciler.orphanGraceMs, by uid) can never take the RD a PVC is being created with.
       */
      reuseYoungerThanMs?: number
      now?: () => number
    } = {},
  ): Promise<{ result: EnsureReplicationDestinationResult; uid: string }> {
    const { namespace, name } = desired.metadata
    const object = `ReplicationDestination ${namespace}/${name}`
    const body = { apiVersion: `${VOLSYNC_GROUP}/${VOLSYNC_VERSION}`, kind: 'ReplicationDestination', ...desired }
    const ref = { group: VOLSYNC_GROUP, version: VOLSYNC_VERSION, namespace, plural: RD_PLURAL }
    // The created object's uid, or undefined when the name is taken (409).
    const create = async (): Promise<string | undefined> => {
      try {
        const made = (await this.call('create', object, opts.signal, (o) => this.custom.createNamespacedCustomObject({ ...ref, body, fieldManager: this.opts.fieldManager }, o))) as { metadata?: { uid?: string } }
        return made?.metadata?.uid ?? ''
      } catch (err) {
        if (err instanceof KubeApiError && err.kind === 'conflict') return undefined
        throw err
      }
    }
    const stillThere = (why: string) =>
      new KubeApiError({ kind: 'conflict', status: 409, object, retryable: true, message: `${object} ${why}; it is still being deleted, retry in a few seconds` })

    const createdUid = await create()
    if (createdUid !== undefined) {
      this.opts.logger?.info({ object }, 'kubernetes object created')
      return { result: 'created', uid: createdUid }
    }
    let existing: ExistingReplicationDestination
    try {
      existing = (await this.call('read', object, opts.signal, (o) => this.custom.getNamespacedCustomObject({ ...ref, name }, o))) as ExistingReplicationDestination
    } catch (err) {
      // Deleted between our create and our read: one more create settles it.
      if (!(err instanceof KubeApiError && err.kind === 'not-found')) throw err
      const again = await create()
      if (again !== undefined) return { result: 'created', uid: again }
      throw stillThere('reappeared while smart-restore was creating it')
    }

    const a = assessReplicationDestination(existing, desired)
    if (a.terminating) throw stillThere('exists but is marked for deletion')
    const ageMs = (opts.now ?? Date.now)() - Date.parse(existing.metadata?.creationTimestamp ?? '')
    const unowned = !existing.metadata?.ownerReferences?.some((r) => r.kind === 'PersistentVolumeClaim')
    const tooOldToReuse = a.ours && unowned && opts.reuseYoungerThanMs !== undefined && Number.isFinite(ageMs) && ageMs >= opts.reuseYoungerThanMs
    // A retry of the same admission: the RD we (or someone, identically) created is still waiting to restore.
    if (!a.mismatch && !a.completed && !tooOldToReuse) return { result: 'unchanged', uid: existing.metadata?.uid ?? '' }
    const why =
      a.mismatch ??
      (a.completed
        ? `its restore already ran (status.lastManualSync = spec.trigger.manual = ${JSON.stringify(existing.spec?.trigger?.manual)}), so its image is from back then`
        : `it was made ${Math.round(ageMs / 1000)} s ago for a CREATE that never completed, and the orphan sweep may remove it`)
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
    const replaced = await create()
    if (replaced !== undefined) return { result: 'replaced', uid: replaced }
    throw stillThere(`was deleted because ${why}, but could not be created again`)
  }

  // -------------------------------------------------------------------------------------------
  // Generic object access (plain JSON)

  /** One raw request under the deadline; failures as KubeApiError. */
  private request(action: string, object: string, signal: AbortSignal | undefined, req: RawRequest, redact?: string[]): Promise<{ status: number; body: unknown }> {
    return this.call(action, object, signal, (o) => send(this.kubeConfig, req, o), redact)
  }

  /** GET one object of a known kind (404: KubeApiError `not-found`). A Secret's values stay in memory, never in a message. */
  async readObject(apiVersion: string, kind: string, namespace: string, name: string, opts: CallOptions = {}): Promise<KubeObject> {
    const res = await this.request('read', describe(kind, namespace, name), opts.signal, { method: HttpMethod.GET, path: objectPath(apiVersion, kind, namespace, name) })
    return res.body as KubeObject
  }

  /** POST a new object (exists already: KubeApiError `conflict` with reason AlreadyExists). */
  async createObject(object: ApplyObject, opts: CallOptions = {}): Promise<KubeObject> {
    const { apiVersion, kind, name, namespace } = identity(object, 'create')
    const redact = kind === 'Secret' ? secretRedactions(object) : undefined
    const res = await this.request(
      'create',
      describe(kind, namespace, name),
      opts.signal,
      { method: HttpMethod.POST, path: objectPath(apiVersion, kind, namespace), query: { fieldManager: this.opts.fieldManager }, body: object },
      redact,
    )
    return res.body as KubeObject
  }

  /** RFC 7386 merge patch (null removes a key). With `uid`, only that object is patched. */
  async mergePatchObject(apiVersion: string, kind: string, namespace: string, name: string, patch: Record<string, unknown>, opts: PatchOptions = {}): Promise<KubeObject> {
    let body = patch
    if (opts.uid !== undefined) {
      // A uid in the patch is checked against the stored object's: a recreated object is a 409.
      const metadata = (patch.metadata ?? {}) as Record<string, unknown>
      body = { ...patch, metadata: { ...metadata, uid: opts.uid } }
    }
    const res = await this.request('patch', describe(kind, namespace, name), opts.signal, {
      method: HttpMethod.PATCH,
      path: objectPath(apiVersion, kind, namespace, name),
      query: { fieldManager: this.opts.fieldManager },
      body,
      contentType: PatchStrategy.MergePatch,
    })
    return res.body as KubeObject
  }

  // -------------------------------------------------------------------------------------------
  // The reconciler's writes

  /**
   * Server-side apply `object` (PATCH application/apply-patch+yaml, fieldManager from the options,
   * force unless `force: false`). Creates the object when missing. An apply that changes nothing
   * keeps the resourceVersion, so `changed` is false when a second replica applies what the first
   * one did. Fields this manager applied before and no longer applies are removed by the apiserver.
   */
  async apply(object: ApplyObject, opts: ApplyOptions = {}): Promise<ApplyResult> {
    const { apiVersion, kind, name, namespace } = identity(object, 'apply')
    const object_ = describe(kind, namespace, name)
    const path = objectPath(apiVersion, kind, namespace, name)
    const body = applyConfiguration(object)
    const redact = kind === 'Secret' ? secretRedactions(body) : undefined
    let before = opts.knownResourceVersion
    if (before === undefined) {
      try {
        before = ((await this.readObject(apiVersion, kind, namespace, name, opts)).metadata.resourceVersion as string | undefined) ?? null
      } catch (err) {
        if (!(err instanceof KubeApiError && err.kind === 'not-found')) throw err
        before = null
      }
    }
    const force = opts.force ?? true
    const req: RawRequest = { method: HttpMethod.PATCH, path, query: { fieldManager: this.opts.fieldManager, force: force ? 'true' : undefined }, body, contentType: PatchStrategy.ServerSideApply }
    const res = await this.call(
      'apply',
      object_,
      opts.signal,
      (o) =>
        send(this.kubeConfig, req, o).catch((err: unknown) => {
          // A field-manager conflict keeps its causes (which fields, whose), for callers that explain it.
          const conflicts = err instanceof ApiException && err.code === 409 ? applyConflicts(err.body) : []
          throw conflicts.length ? new ApplyConflictError(toKubeApiError(err, 'apply', object_, { redact, timeoutMs: this.opts.requestTimeoutMs }), conflicts) : err
        }),
      redact,
    )
    const applied = res.body as KubeObject
    const rv = applied?.metadata?.resourceVersion as string | undefined
    const created = res.status === 201
    const changed = created || rv !== before
    if (changed) this.opts.logger?.info({ object: object_, created, resourceVersion: rv }, created ? 'kubernetes object created (apply)' : 'kubernetes object applied')
    else this.opts.logger?.debug({ object: object_, resourceVersion: rv }, 'kubernetes object unchanged (apply)')
    return { object: applied, changed, created }
  }

  /** Delete an object of a known kind; see DeleteResult. */
  async delete(apiVersion: string, kind: string, namespace: string, name: string, opts: DeleteOptions = {}): Promise<DeleteResult> {
    const object = describe(kind, namespace, name)
    const body: Record<string, unknown> = { apiVersion: 'v1', kind: 'DeleteOptions', propagationPolicy: opts.propagationPolicy ?? 'Background' }
    if (opts.uid !== undefined) body.preconditions = { uid: opts.uid }
    try {
      await this.request('delete', object, opts.signal, { method: HttpMethod.DELETE, path: objectPath(apiVersion, kind, namespace, name), body })
    } catch (err) {
      if (err instanceof KubeApiError && err.kind === 'not-found') return 'gone'
      if (opts.uid !== undefined && err instanceof KubeApiError && err.kind === 'conflict' && /precondition/i.test(err.message)) {
        this.opts.logger?.info({ object, uid: opts.uid }, 'not deleted: the name belongs to a newer object now')
        return 'gone'
      }
      throw err
    }
    this.opts.logger?.info({ object, uid: opts.uid }, 'kubernetes object deleted')
    return 'deleted'
  }

  /**
   * Make `owner` an owner of the object, so the garbage collector deletes the object with it: read,
   * then (only when no reference to that uid is there) a merge patch of the whole ownerReferences list
   * guarded by the resourceVersion read — a concurrent change is a 409, and we read again (3 rounds).
   * A reference to an earlier object of the owner's kind and name (another uid: a PVC deleted and
   * created again) is dropped, it points at nothing.
   *
   * The reference sets controller: false and blockOwnerDeletion: false, on purpose:
   *  - controller: the PVC does not manage these objects (VolSync's ReplicationSource controller does
   *    its own work; smart-restore decides them). A controller reference says "this owner keeps it in
   *    shape", an object can have only one, and tools act on it (adoption, Argo CD's resource tree).
   *    All we want is the garbage collection: when the PVC goes, its RS, RD and repository Secret go.
   *  - blockOwnerDeletion: true would hold a foreground deletion of the PVC until these objects are
   *    gone, and setting it needs `update` on persistentvolumeclaims/finalizers (the
   *    OwnerReferencesPermissionEnforcement admission plugin) — a permission we do not want to ask
   *    for. Background deletion (kubectl's default) collects them either way.
   */
  async addOwnerReference(apiVersion: string, kind: string, namespace: string, name: string, owner: OwnerRef, opts: CallOptions = {}): Promise<AddOwnerResult> {
    const object = describe(kind, namespace, name)
    const ref = ownerReferenceTo(owner)
    for (let round = 1; round <= 3; round++) {
      const current = await this.readObject(apiVersion, kind, namespace, name, opts)
      const refs = current.metadata.ownerReferences ?? []
      if (refs.some((r) => r.uid === owner.uid)) return 'present'
      const kept = refs.filter((r) => !(r.apiVersion === owner.apiVersion && r.kind === owner.kind && r.name === owner.name))
      try {
        await this.mergePatchObject(apiVersion, kind, namespace, name, { metadata: { resourceVersion: current.metadata.resourceVersion, ownerReferences: [...kept, ref] } }, opts)
        this.opts.logger?.info({ object, owner: `${owner.kind} ${owner.name}` }, 'ownerReference added')
        return 'added'
      } catch (err) {
        if (!(err instanceof KubeApiError && err.kind === 'conflict')) throw err
      }
    }
    throw new KubeApiError({ kind: 'conflict', status: 409, object, retryable: true, message: `add ownerReference to ${object}: the object kept changing while smart-restore was adding it; retry` })
  }

  /** Merge-patch a PVC's labels and annotations (null removes a key). Nothing to change: no request. */
  async patchPvcMetadata(namespace: string, name: string, change: MetadataChange, opts: PatchOptions = {}): Promise<KubeObject | undefined> {
    const metadata: Record<string, unknown> = {}
    if (change.labels && Object.keys(change.labels).length) metadata.labels = change.labels
    if (change.annotations && Object.keys(change.annotations).length) metadata.annotations = change.annotations
    if (Object.keys(metadata).length === 0) return undefined
    const patched = await this.mergePatchObject('v1', 'PersistentVolumeClaim', namespace, name, { metadata }, opts)
    this.opts.logger?.info({ object: describe('PersistentVolumeClaim', namespace, name), labels: Object.keys(change.labels ?? {}), annotations: Object.keys(change.annotations ?? {}) }, 'PVC metadata patched')
    return patched
  }
}
