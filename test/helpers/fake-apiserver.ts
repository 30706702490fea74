/**
 * A loopback Kubernetes API server for tests: plain HTTP on 127.0.0.1, an in-memory object store,
 * and fault injection. It follows the apiserver's REST conventions closely enough that the real
 * @kubernetes/client-node (typed APIs, CustomObjectsApi, Watch, ListWatch/makeInformer) runs
 * against it unchanged:
 *
 * - paths: `/api/v1/namespaces/{ns}/{resource}[/{name}[/status]]`,
 *   `/apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}[/status]]`, cluster-scoped
 *   `/api/v1/{resource}[/{name}]` (also the cluster-wide list of a namespaced resource).
 * - POST 201 (409 AlreadyExists), GET 200/404, PUT with resourceVersion optimistic concurrency,
 *   DELETE with preconditions and finalizers (the object stays, marked for deletion, until its
 *   finalizers are removed), PATCH: apply-patch+yaml (server-side apply, below; 201 when it
 *   creates), merge-patch, json-patch, strategic-merge (as merge); `force` only with apply (422).
 * - Field ownership, minimally: every write records, per manager and operation, the fields it owns
 *   in managedFields[].fieldsV1 (the apiserver's `{"f:spec":{"f:x":{}}}` format; maps are granular,
 *   ownerReferences items keyed `k:{"uid":…}`, other lists and scalars atomic). An Update (POST/PUT/merge/JSON patch) owns the fields whose values
 *   it changed, and others lose them. An apply conflicts (409, details.causes) with fields another
 *   manager owns with a different value unless `force=true` (then they change hands); fields the
 *   same manager applied before and no longer applies are removed unless another manager owns them
 *   too; the rest is merged. An apply by a manager whose name matches an Update entry's never
 *   conflicts with it.
 * - A write that changes nothing (an identical apply by the same manager, a PUT of what is stored,
 *   an empty merge patch) is a no-op: no new resourceVersion, no watch event, managedFields kept —
 *   as on a real apiserver, which does not write identical bytes.
 * - core/v1 Events are validated like the apiserver does for /api/v1: timestamps must decode
 *   (eventTime is a MicroTime: exactly six fractional digits), then the legacy rules (see
 *   validateEvent). apply-patch bodies must not carry metadata.managedFields (400).
 * - `?dryRun=All` validates and answers, stores nothing.
 * - LIST with `metadata.resourceVersion`, labelSelector (=, ==, !=, in, notin, exists, !exists)
 *   and fieldSelector (dotted paths, = / !=); chunked with `limit` / `continue` (pages of one
 *   snapshot; a token is good once, and `objects.compact()` expires them: 410 Expired); WATCH `?watch=true&resourceVersion=N` streams
 *   `{"type","object"}` lines for changes after N (ERROR 410 Expired after `objects.compact()`).
 * - Secrets: `stringData` merged into `data` (base64) on write, invalid base64 is a 400.
 * - Namespaces: created with `spec.finalizers: [kubernetes]` and phase Active; DELETE marks them
 *   Terminating, and they stay until their spec (and metadata) finalizers are removed (there is no
 *   namespace controller: a test removes them through the backdoor).
 * - Custom resources (groups that are not kube-apiserver's own, e.g. volsync.backube) are served
 *   like the apiserver serves unstructured objects: keys sorted at every level (GET, LIST, WATCH
 *   events, and the answers to writes), list items with kind/apiVersion, DELETE answering with the
 *   object. Built-in kinds keep the order they were stored in (standing in for Go struct order).
 * - One global, monotonically increasing resourceVersion. Errors are proper metav1.Status bodies.
 * - Bearer token authentication (401 otherwise).
 * - Discovery: `/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}` answer
 *   APIVersions / APIGroupList / APIGroup / APIResourceList built from a set of installed resources
 *   (`DEFAULT_RESOURCES`, or `opts.resources`), changed at run time with `installResource` /
 *   `uninstallResource` (a CRD being installed or deleted). Unknown group/versions are a 404, and so
 *   is a LIST or WATCH of a resource that is not installed, like a real apiserver. (Other verbs on an
 *   uninstalled resource still work, so tests can stage objects before "installing" their CRD.)
 *
 * Simplifications (on purpose): no schema validation or defaulting beyond `opts.defaulters` (and the
 * Event rules above), objects are stored per group/version (not converted between versions),
 * server-side apply knows one keyed list (metadata.ownerReferences, by uid, each item owned whole;
 * every other list is atomic) and no "before first apply" ownership migration, no pagination, no
 * garbage collection of dependents.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { KubeConfig } from '@kubernetes/client-node'
import jsonpatch from 'fast-json-patch'
import type { Operation } from 'fast-json-patch'
import YAML from 'yaml'

// ---------------------------------------------------------------------------------------------
// Types

export interface StoredObject {
  apiVersion?: string
  kind?: string
  metadata: {
    name: string
    namespace?: string
    uid?: string
    resourceVersion?: string
    generation?: number
    creationTimestamp?: string
    deletionTimestamp?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    finalizers?: string[]
    [key: string]: unknown
  }
  [key: string]: unknown
}

export interface RecordedRequest {
  method: string
  /** URL path without the query string, e.g. `/api/v1/namespaces/media/secrets`. */
  path: string
  query: Record<string, string>
  /** Parsed JSON/YAML body, the raw text if it did not parse, undefined if empty. */
  body: unknown
  contentType?: string
}

export interface FaultMatcher {
  method?: string
  /** Exact path, a glob where `*` stands for one path segment, or a RegExp tested on the path. */
  path?: string | RegExp
  /** How many matching requests are affected (default 1; Infinity for all). */
  times?: number
  /** true: only WATCH requests (`?watch=true`); false: only requests that are not watches. Default: both. */
  watch?: boolean
}

export type FaultAction =
  /** Answer with this status and a metav1.Status body (reason/message derived when omitted). */
  | { status: number; reason?: string; message?: string }
  /** Wait, then handle the request normally (a slow apiserver still performs the write). */
  | { delayMs: number }
  /** Never answer (until the client gives up or the server closes). */
  | { hang: true }
  /** Destroy the connection without an answer. */
  | { reset: true }

export interface Fault {
  readonly hits: number
  readonly remaining: number
  cancel(): void
}

export interface ObjectStore {
  /** A copy of the stored object, or undefined. `apiPath` is the collection's cluster-wide path, e.g. `/api/v1/secrets`. */
  get(apiPath: string, namespace: string | undefined, name: string): StoredObject | undefined
  /** Backdoor create-or-replace (no concurrency checks, status kept): like a controller writing. Emits a watch event. */
  put(apiPath: string, object: StoredObject): StoredObject
  /** Read-modify-write through the backdoor, e.g. to let "VolSync" fill in a status. */
  update(apiPath: string, namespace: string | undefined, name: string, mutate: (obj: StoredObject) => void): StoredObject
  /** Backdoor removal, ignoring finalizers. Emits DELETED. */
  delete(apiPath: string, namespace: string | undefined, name: string): boolean
  list(apiPath: string, namespace?: string): StoredObject[]
  /** Forget the watch history: watches from an older resourceVersion get ERROR 410 Expired; continue tokens expire too (410). */
  compact(): void
  /** The current (latest) global resourceVersion. */
  readonly resourceVersion: number
}

/** A resource the server serves (what a CRD, or a built-in API, installs). */
export interface InstalledResource {
  group: string // '' for the core group
  version: string
  kind: string
  plural: string
  /** Default true. */
  namespaced?: boolean
}

/**
 * What is installed unless `opts.resources` says otherwise: the core resources the project touches
 * (a real apiserver always serves them), batch Jobs, coordination Leases, StorageClasses, and
 * VolSync's two CRDs. Other CRDs (VolumeSnapshots, Velero, K8up, ...) are not installed.
 */
export const DEFAULT_RESOURCES: readonly InstalledResource[] = [
  { group: '', version: 'v1', kind: 'PersistentVolumeClaim', plural: 'persistentvolumeclaims' },
  { group: '', version: 'v1', kind: 'Secret', plural: 'secrets' },
  { group: '', version: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
  { group: '', version: 'v1', kind: 'Event', plural: 'events' },
  { group: '', version: 'v1', kind: 'ConfigMap', plural: 'configmaps' },
  { group: '', version: 'v1', kind: 'Pod', plural: 'pods' },
  { group: '', version: 'v1', kind: 'Service', plural: 'services' },
  { group: '', version: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts' },
  { group: '', version: 'v1', kind: 'PersistentVolume', plural: 'persistentvolumes', namespaced: false },
  { group: '', version: 'v1', kind: 'Node', plural: 'nodes', namespaced: false },
  { group: 'batch', version: 'v1', kind: 'Job', plural: 'jobs' },
  { group: 'coordination.k8s.io', version: 'v1', kind: 'Lease', plural: 'leases' },
  { group: 'storage.k8s.io', version: 'v1', kind: 'StorageClass', plural: 'storageclasses', namespaced: false },
  { group: 'volsync.backube', version: 'v1alpha1', kind: 'ReplicationSource', plural: 'replicationsources' },
  { group: 'volsync.backube', version: 'v1alpha1', kind: 'ReplicationDestination', plural: 'replicationdestinations' },
]

export interface FakeApiServerOptions {
  /** The resources served (default DEFAULT_RESOURCES). */
  resources?: readonly InstalledResource[]
  /** Bearer token the server accepts (default `fake-token`). */
  token?: string
  /** Port to listen on (default: any free port). */
  port?: number
  /** Called on every stored write of a resource (keyed by apiPath), like apiserver defaulting. */
  defaulters?: Record<string, (obj: StoredObject) => void>
}

export interface FakeApiServer {
  url: string
  kubeConfig: KubeConfig
  token: string
  requests: RecordedRequest[]
  objects: ObjectStore
  fail(matcher: FaultMatcher, action: FaultAction | number): Fault
  /** Requests matching method (and path glob/RegExp), ignoring watches unless asked. */
  requestsMatching(method: string, path?: string | RegExp): RecordedRequest[]
  /** Serve a resource from now on (like installing a CRD). Replaces an entry with the same group/version/plural. */
  installResource(resource: InstalledResource): void
  /**
   * Stop serving a resource (like deleting its CRD): it leaves discovery, its open watches end, its
   * stored objects are removed, and LIST/WATCH of it answer 404. Returns whether it was installed.
   */
  uninstallResource(resource: { group: string; version: string; plural: string }): boolean
  /** The resources currently served. */
  installedResources(): InstalledResource[]
  /** Open WATCH streams, optionally only those on a collection path (cluster-wide form, e.g. `/api/v1/secrets`). */
  openWatches(apiPath?: string): number
  /**
   * End open WATCH streams (all, or those of one collection), as an apiserver restart or a load
   * balancer would: cleanly (the chunked body ends) by default, or by destroying the connection.
   * Returns how many were ended.
   */
  dropWatches(opts?: { apiPath?: string; destroy?: boolean }): number
  /** LIST answers that were pages of a chunked list (`limit` or `continue`). */
  readonly listPages: number
  close(): Promise<void>
}

/** The collection path of a resource: `apiPathFor('v1','secrets')` → `/api/v1/secrets`. */
export function apiPathFor(apiVersion: string, resource: string): string {
  return apiVersion.includes('/') ? `/apis/${apiVersion}/${resource}` : `/api/${apiVersion}/${resource}`
}

// ---------------------------------------------------------------------------------------------
// Status bodies

const REASONS: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  405: 'MethodNotAllowed',
  409: 'Conflict',
  410: 'Expired',
  415: 'UnsupportedMediaType',
  422: 'Invalid',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
  504: 'Timeout',
}

interface Status {
  kind: 'Status'
  apiVersion: 'v1'
  metadata: Record<string, never>
  status: 'Failure' | 'Success'
  message?: string
  reason?: string
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: Array<{ type: string; message: string; field: string }> }
  code: number
}

class HttpError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly reason = REASONS[code] ?? 'Unknown',
    readonly details?: Status['details'],
  ) {
    super(message)
  }
  toStatus(): Status {
    const s: Status = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, code: this.code }
    if (this.details) s.details = this.details
    return s
  }
}

// ---------------------------------------------------------------------------------------------
// Paths

interface Route {
  group: string
  version: string
  resource: string
  namespace?: string
  name?: string
  subresource?: string
  /** Collection path, cluster-wide: the store key. */
  apiPath: string
}

function parseRoute(pathname: string): Route | undefined {
  const segs = pathname.split('/').filter(Boolean).map(decodeURIComponent)
  let group: string
  let version: string
  let rest: string[]
  if (segs[0] === 'api' && segs[1] === 'v1') {
    group = ''
    version = 'v1'
    rest = segs.slice(2)
  } else if (segs[0] === 'apis' && segs.length >= 4) {
    group = segs[1]!
    version = segs[2]!
    rest = segs.slice(3)
  } else {
    return undefined
  }
  let namespace: string | undefined
  // `namespaces/{ns}/{resource}` is namespaced unless it is the Namespace object's own subresource.
  if (rest[0] === 'namespaces' && rest.length >= 3 && rest[2] !== 'status' && rest[2] !== 'finalize') {
    namespace = rest[1]
    rest = rest.slice(2)
  }
  if (rest.length < 1 || rest.length > 3) return undefined
  const [resource, name, subresource] = rest as [string, string?, string?]
  const apiPath = group ? `/apis/${group}/${version}/${resource}` : `/api/v1/${resource}`
  return { group, version, resource, namespace, name, subresource, apiPath }
}

function normalizeApiPath(apiPath: string): string {
  const p = '/' + apiPath.replace(/^\/+|\/+$/g, '')
  const r = parseRoute(p)
  if (!r || r.name || r.namespace) throw new Error(`not a collection path: ${apiPath} (want e.g. /api/v1/secrets)`)
  return r.apiPath
}

function qualified(r: { group: string; resource: string }): string {
  return r.group ? `${r.resource}.${r.group}` : r.resource
}

/**
 * Groups under .k8s.io that are CRDs, not served by kube-apiserver itself (the CSI snapshotter's,
 * the Gateway API's): custom resources like any other.
 */
const CRD_GROUPS_UNDER_K8S_IO = new Set(['snapshot.storage.k8s.io', 'groupsnapshot.storage.k8s.io', 'gateway.networking.k8s.io'])

/**
 * Built-in API groups are un-dotted or end in .k8s.io; their list items carry no kind/apiVersion.
 * Everything else is a custom resource (CRD-backed): see sortedJson for how those are served.
 */
function isBuiltinGroup(group: string): boolean {
  if (CRD_GROUPS_UNDER_K8S_IO.has(group)) return false
  return group === '' || !group.includes('.') || group.endsWith('.k8s.io')
}

const NAMESPACES_PATH = '/api/v1/namespaces'

const CORE_KINDS: Record<string, string> = {
  secrets: 'Secret',
  configmaps: 'ConfigMap',
  persistentvolumeclaims: 'PersistentVolumeClaim',
  persistentvolumes: 'PersistentVolume',
  pods: 'Pod',
  events: 'Event',
  namespaces: 'Namespace',
  services: 'Service',
  serviceaccounts: 'ServiceAccount',
  nodes: 'Node',
  jobs: 'Job',
  leases: 'Lease',
  storageclasses: 'StorageClass',
  volumesnapshots: 'VolumeSnapshot',
  replicationsources: 'ReplicationSource',
  replicationdestinations: 'ReplicationDestination',
}

function verbOf(method: string, r: Route, query: Record<string, string>): string {
  switch (method) {
    case 'GET':
      return r.name ? 'get' : query.watch === 'true' || query.watch === '1' ? 'watch' : 'list'
    case 'POST':
      return 'create'
    case 'PUT':
      return 'update'
    case 'PATCH':
      return 'patch'
    case 'DELETE':
      return r.name ? 'delete' : 'deletecollection'
    default:
      return method.toLowerCase()
  }
}

// ---------------------------------------------------------------------------------------------
// Selectors

type Requirement = (labels: Record<string, string>) => boolean

function parseLabelSelector(selector: string | undefined): Requirement {
  if (!selector) return () => true
  const terms: string[] = []
  let depth = 0
  let cur = ''
  for (const ch of selector) {
    if (ch === '(') depth++
    if (ch === ')') depth--
    if (ch === ',' && depth === 0) {
      terms.push(cur)
      cur = ''
    } else cur += ch
  }
  terms.push(cur)
  const reqs: Requirement[] = terms.map((raw) => {
    const term = raw.trim()
    let m: RegExpMatchArray | null
    if ((m = term.match(/^(\S+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      const [, key, op, list] = m as unknown as [string, string, string, string]
      const values = list.split(',').map((v) => v.trim())
      return op === 'in' ? (l) => key in l && values.includes(l[key]!) : (l) => !(key in l) || !values.includes(l[key]!)
    }
    if ((m = term.match(/^([^!=\s]+)\s*(==|=|!=)\s*(\S*)$/))) {
      const [, key, op, value] = m as unknown as [string, string, string, string]
      return op === '!=' ? (l) => l[key] !== value : (l) => l[key] === value
    }
    if ((m = term.match(/^!\s*(\S+)$/))) {
      const key = m[1]!
      return (l) => !(key in l)
    }
    if (/^\S+$/.test(term)) return (l) => term in l
    throw new HttpError(400, `unable to parse requirement: invalid label selector term ${JSON.stringify(term)}`)
  })
  return (labels) => reqs.every((r) => r(labels))
}

function parseFieldSelector(selector: string | undefined): (obj: StoredObject) => boolean {
  if (!selector) return () => true
  const reqs = selector.split(',').map((raw) => {
    const m = raw.trim().match(/^([^!=]+)(==|=|!=)(.*)$/)
    if (!m) throw new HttpError(400, `invalid field selector: ${JSON.stringify(raw)}`)
    const [, field, op, value] = m as unknown as [string, string, string, string]
    return (obj: StoredObject) => {
      let v: unknown = obj
      for (const part of field.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined
      const s = v === undefined || v === null ? '' : String(v)
      return op === '!=' ? s !== value : s === value
    }
  })
  return (obj) => reqs.every((r) => r(obj))
}

// ---------------------------------------------------------------------------------------------
// Object helpers

const clone = <T>(v: T): T => structuredClone(v)

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return clone(patch)
  const out: Record<string, unknown> = isPlainObject(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k], v)
  }
  return out
}

function now(): string {
  // metav1.Time has second precision.
  return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const SECRET_KEY = /^[-._a-zA-Z0-9]+$/

/** What the apiserver does to a Secret on every write: stringData folded into data, type defaulted. */
function normalizeSecret(obj: StoredObject): void {
  const data: Record<string, string> = {}
  if (obj.data !== undefined && obj.data !== null) {
    if (!isPlainObject(obj.data)) throw new HttpError(400, 'Secret in version "v1" cannot be handled as a Secret: data must be an object')
    for (const [k, v] of Object.entries(obj.data)) {
      if (typeof v !== 'string' || !BASE64.test(v)) throw new HttpError(400, `Secret in version "v1" cannot be handled as a Secret: illegal base64 data in data[${k}]`)
      data[k] = v
    }
  }
  if (obj.stringData !== undefined && obj.stringData !== null) {
    if (!isPlainObject(obj.stringData)) throw new HttpError(400, 'Secret in version "v1" cannot be handled as a Secret: stringData must be an object')
    for (const [k, v] of Object.entries(obj.stringData)) data[k] = Buffer.from(String(v), 'utf8').toString('base64')
  }
  delete obj.stringData
  const bad = Object.keys(data).filter((k) => !SECRET_KEY.test(k))
  if (bad.length) {
    throw new HttpError(422, `Secret "${obj.metadata.name}" is invalid: data[${bad[0]}]: Invalid value: "${bad[0]}": a valid config key must consist of alphanumeric characters, '-', '_' or '.'`, 'Invalid', { name: obj.metadata.name, kind: 'Secret' })
  }
  if (Object.keys(data).length) obj.data = data
  else delete obj.data
  if (!obj.type) obj.type = 'Opaque'
}

const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/
/** metav1.MicroTime parses with the fixed layout 2006-01-02T15:04:05.000000Z07:00: exactly six digits. */
const RFC3339_MICRO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$/
const QUALIFIED_NAME = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/

/**
 * core/v1 Event checks, as the apiserver makes them for requests to /api/v1: timestamps must
 * decode (eventTime is a MicroTime), then the legacy validation: an Event with eventTime set is a
 * "new" Event and needs reportingComponent, reportingInstance (≤128), action (≤128), reason (≤128)
 * and a message of at most 1024 bytes; one without must name its involved object's namespace.
 */
function validateEvent(obj: StoredObject): void {
  const cannot = (field: string, value: unknown, layout: string) =>
    new HttpError(400, `Event in version "v1" cannot be handled as a Event: parsing time ${JSON.stringify(String(value))} as "${layout}": cannot parse ${field}`)
  for (const f of ['firstTimestamp', 'lastTimestamp'] as const) {
    const v = obj[f]
    if (v !== undefined && v !== null && (typeof v !== 'string' || !RFC3339.test(v))) throw cannot(f, v, '2006-01-02T15:04:05Z07:00')
  }
  const eventTime = obj.eventTime
  if (eventTime !== undefined && eventTime !== null && (typeof eventTime !== 'string' || !RFC3339_MICRO.test(eventTime))) throw cannot('eventTime', eventTime, '2006-01-02T15:04:05.000000Z07:00')
  const str = (v: unknown) => (typeof v === 'string' ? v : '')
  const involved = isPlainObject(obj.involvedObject) ? obj.involvedObject : {}
  const involvedNs = str(involved.namespace)
  const ns = obj.metadata.namespace ?? ''
  const errs: string[] = []
  if (!eventTime) {
    if (involvedNs === '' ? ns !== '' && ns !== 'default' : ns !== involvedNs) errs.push(`involvedObject.namespace: Invalid value: "${involvedNs}": does not match event.namespace`)
  } else {
    if (involvedNs === '' && ns !== 'default' && ns !== 'kube-system') errs.push(`involvedObject.namespace: Invalid value: "${involvedNs}": does not match event.namespace`)
    const controller = str(obj.reportingComponent)
    if (!controller) errs.push('reportingComponent: Required value')
    else if (!QUALIFIED_NAME.test(controller)) errs.push(`reportingComponent: Invalid value: "${controller}": must be a qualified name`)
    const instance = str(obj.reportingInstance)
    if (!instance) errs.push('reportingInstance: Required value')
    if (instance.length > 128) errs.push('reportingInstance: Invalid value: "": can have at most 128 characters')
    const action = str(obj.action)
    if (!action) errs.push('action: Required value')
    if (action.length > 128) errs.push('action: Invalid value: "": can have at most 128 characters')
    const reason = str(obj.reason)
    if (!reason) errs.push('reason: Required value')
    if (reason.length > 128) errs.push('reason: Invalid value: "": can have at most 128 characters')
    if (Buffer.byteLength(str(obj.message)) > 1024) errs.push('message: Invalid value: "": can have at most 1024 characters')
  }
  if (errs.length) {
    const list = errs.length === 1 ? errs[0]! : `[${errs.join(', ')}]`
    throw new HttpError(422, `Event "${obj.metadata.name}" is invalid: ${list}`, 'Invalid', { name: obj.metadata.name, kind: 'Event' })
  }
}

// ---------------------------------------------------------------------------------------------
// Field ownership (server-side apply, minimal)
//
// Each managedFields entry carries a `fieldsV1` set in the apiserver's format (`{"f:spec":{"f:x":{}}}`).
// Maps are granular (every key its own field), lists and scalars are atomic: enough to model what
// smart-restore relies on. See startFakeApiServer's doc for the rules.

/** A field path (JSON of its segments, e.g. `["spec","restic","capacity"]`). */
type FieldKey = string

/** metadata the server owns: never a managed field. */
const SERVER_METADATA = new Set(['name', 'namespace', 'generateName', 'uid', 'resourceVersion', 'generation', 'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink'])

/** The leaf field paths of an object: of its status for the status subresource, of everything else otherwise. */
function fieldPaths(obj: StoredObject, subresource: string | undefined): Set<FieldKey> {
  const out = new Set<FieldKey>()
  const walk = (v: unknown, path: string[]): void => {
    if (v === null || v === undefined) return
    if (isPlainObject(v) && Object.keys(v).length > 0) for (const [k, c] of Object.entries(v)) walk(c, [...path, k])
    else if (isKeyedList(path) && Array.isArray(v) && v.every((i) => isPlainObject(i) && typeof i.uid === 'string')) {
      for (const item of v as Array<{ uid: string }>) out.add(JSON.stringify([...path, listKey(item.uid)]))
    } else out.add(JSON.stringify(path))
  }
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'apiVersion' || k === 'kind') continue
    if ((subresource === 'status') !== (k === 'status')) continue
    if (k === 'metadata' && isPlainObject(v)) {
      for (const [mk, mv] of Object.entries(v)) if (!SERVER_METADATA.has(mk)) walk(mv, ['metadata', mk])
      continue
    }
    walk(v, [k])
  }
  return out
}

const segments = (p: FieldKey): string[] => JSON.parse(p) as string[]

/**
 * metadata.ownerReferences is the one list with keyed items (listType=map, key uid), as on the
 * apiserver: an item's path segment is `k:{"uid":"…"}`, and each item is owned whole.
 */
const isKeyedList = (path: string[]) => path.length === 2 && path[0] === 'metadata' && path[1] === 'ownerReferences'
const listKey = (uid: string) => `k:${JSON.stringify({ uid })}`
const keyedUid = (segment: string): string | undefined => (segment.startsWith('k:{') ? (JSON.parse(segment.slice(2)) as { uid?: string }).uid : undefined)

/** Step into `v` by one path segment (a keyed segment picks the list item with that uid). */
function child(v: unknown, segment: string): unknown {
  const uid = keyedUid(segment)
  if (uid !== undefined) return Array.isArray(v) ? v.find((i) => isPlainObject(i) && i.uid === uid) : undefined
  return isPlainObject(v) ? v[segment] : undefined
}

/** Apply's merge: like a merge patch, except that keyed-list items are merged by key (config wins per item). */
function applyMerge(old: StoredObject, config: StoredObject): StoredObject {
  const next = mergePatch(old, config) as StoredObject
  const before = old.metadata.ownerReferences
  const applied = config.metadata?.ownerReferences
  if (Array.isArray(before) && Array.isArray(applied)) {
    const byUid = new Map<unknown, unknown>()
    for (const i of before) byUid.set(isPlainObject(i) ? i.uid : i, i)
    for (const i of applied) byUid.set(isPlainObject(i) ? i.uid : i, i)
    next.metadata.ownerReferences = [...byUid.values()]
  }
  return next
}

/** One path is the other or contains it. */
function related(a: FieldKey, b: FieldKey): boolean {
  const x = segments(a)
  const y = segments(b)
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return false
  return true
}

function valueAt(obj: unknown, p: FieldKey): unknown {
  let v = obj
  for (const s of segments(p)) v = child(v, s)
  return v
}

/**
 * JSON with the keys of every object sorted, at every level (arrays keep their order): how
 * kube-apiserver serves custom resources. They are unstructured (Go maps), and Go's encoding/json
 * writes map keys sorted by their bytes; built-in kinds come out in Go struct field order instead,
 * which the fake approximates with the order it stored. Written out by hand rather than by sorting
 * into new objects, because JS objects list integer-like keys ("9", "10") first and in numeric order
 * whatever the insertion order. (Sorted by UTF-16 code units: the same as bytes unless keys mix
 * astral characters with U+E000–U+FFFF.)
 */
function sortedJson(v: unknown): string {
  if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function') v = (v as { toJSON(): unknown }).toJSON()
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined || typeof x === 'function' || typeof x === 'symbol' ? 'null' : sortedJson(x))).join(',')}]`
  if (isPlainObject(v)) {
    const parts: string[] = []
    for (const k of Object.keys(v).sort()) {
      const x = v[k]
      if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue
      parts.push(`${JSON.stringify(k)}:${sortedJson(x)}`)
    }
    return `{${parts.join(',')}}`
  }
  return JSON.stringify(v) ?? 'null'
}

function sameValue(a: unknown, b: unknown): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b))
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical)
  if (isPlainObject(v)) return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]))
  return v
}

/** Remove a field, and the maps it leaves empty (never metadata itself). */
function deletePath(obj: StoredObject, p: FieldKey): void {
  const segs = segments(p)
  const parents: Array<Record<string, unknown>> = []
  let node: unknown = obj
  for (const s of segs.slice(0, -1)) {
    if (!isPlainObject(node)) return
    parents.push(node)
    node = node[s]
  }
  const last = segs.at(-1)!
  const uid = keyedUid(last)
  if (uid !== undefined && Array.isArray(node)) {
    const kept = node.filter((i) => !(isPlainObject(i) && i.uid === uid))
    const parent = parents.at(-1)!
    if (kept.length) return void (parent[segs.at(-2)!] = kept)
    delete parent[segs.at(-2)!]
    return
  }
  if (!isPlainObject(node)) return
  delete node[last]
  for (let i = segs.length - 2; i >= 1; i--) {
    const parent = parents[i]!
    const c = parent[segs[i]!]
    if (isPlainObject(c) && Object.keys(c).length === 0) delete parent[segs[i]!]
    else break
  }
}

function encodeFields(paths: Iterable<FieldKey>): Record<string, unknown> {
  const root: Record<string, unknown> = {}
  for (const p of paths) {
    let node = root
    for (const s of segments(p)) node = (node[keyedUid(s) !== undefined ? s : `f:${s}`] ??= {}) as Record<string, unknown>
  }
  return root
}

function decodeFields(fieldsV1: unknown): Set<FieldKey> {
  const out = new Set<FieldKey>()
  const walk = (node: unknown, path: string[]): void => {
    const kids = isPlainObject(node) ? Object.keys(node).filter((k) => k.startsWith('f:') || k.startsWith('k:{')) : []
    if (kids.length === 0) {
      if (path.length) out.add(JSON.stringify(path))
      return
    }
    for (const k of kids) walk((node as Record<string, unknown>)[k], [...path, k.startsWith('f:') ? k.slice(2) : k])
  }
  walk(fieldsV1, [])
  return out
}

/** A managedFields entry; `fields` undefined when it came without fieldsV1 (e.g. staged by a test): kept as is. */
interface ManagedEntry {
  manager: string
  operation: string
  subresource?: string
  fields?: Set<FieldKey>
  /** The entry as stored (time, apiVersion, ...). */
  raw: Record<string, unknown>
}

function readManaged(obj: StoredObject): ManagedEntry[] {
  const list = Array.isArray(obj.metadata.managedFields) ? (obj.metadata.managedFields as unknown[]) : []
  return list.filter(isPlainObject).map((raw) => {
    const e: ManagedEntry = { manager: String(raw.manager ?? ''), operation: String(raw.operation ?? ''), raw }
    if (typeof raw.subresource === 'string' && raw.subresource) e.subresource = raw.subresource
    if (raw.fieldsV1 !== undefined) e.fields = decodeFields(raw.fieldsV1)
    return e
  })
}

function writeManaged(entries: ManagedEntry[]): Array<Record<string, unknown>> {
  return entries.map((e) => (e.fields ? { ...e.raw, fieldsType: 'FieldsV1', fieldsV1: encodeFields(e.fields) } : e.raw))
}

/** managedFields without their timestamps, for "did anything change" comparisons. */
function managedShape(obj: StoredObject): unknown {
  const list = Array.isArray(obj.metadata.managedFields) ? (obj.metadata.managedFields as unknown[]) : []
  return list.map((e) => (isPlainObject(e) ? { ...e, time: undefined } : e))
}

// ---------------------------------------------------------------------------------------------
// Server

interface HistoryEvent {
  rv: number
  apiPath: string
  type: 'ADDED' | 'MODIFIED' | 'DELETED'
  object: StoredObject
  /** For MODIFIED: the object before, so selector watches can see objects enter/leave the selection. */
  old?: StoredObject
}

interface Watcher {
  req: http.IncomingMessage
  apiPath: string
  namespace?: string
  labels: Requirement
  fields: (o: StoredObject) => boolean
  res: http.ServerResponse
}

interface ActiveFault {
  matcher: FaultMatcher
  action: FaultAction
  remaining: number
  hits: number
}

export async function startFakeApiServer(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
  const token = opts.token ?? 'fake-token'
  const store = new Map<string, Map<string, StoredObject>>()
  const kinds = new Map<string, string>()
  const history: HistoryEvent[] = []
  /** Watches starting at or after this resourceVersion can be served from the history. */
  let compactedAt = 0
  let rv = 0
  /** Open chunked lists: continue token → the snapshot and how far it was served. */
  const continuations = new Map<string, { items: StoredObject[]; rv: string; offset: number }>()
  let continueSeq = 0
  /** LIST answers that were pages of a chunked list. */
  let listPages = 0
  const watchers = new Set<Watcher>()
  const faults: ActiveFault[] = []
  const requests: RecordedRequest[] = []
  const pendingTimers = new Set<NodeJS.Timeout>()
  let closing = false

  const keyOf = (ns: string | undefined, name: string) => `${ns ?? ''}/${name}`
  const bucket = (apiPath: string) => {
    let b = store.get(apiPath)
    if (!b) store.set(apiPath, (b = new Map()))
    return b
  }

  const kindFor = (r: Route): string | undefined => kinds.get(r.apiPath) ?? CORE_KINDS[r.resource]

  // -- installed resources (discovery) -------------------------------------------------------

  /** Keyed by collection apiPath, e.g. `/apis/batch/v1/jobs`. */
  const installed = new Map<string, Required<InstalledResource>>()
  const apiPathOf = (r: { group: string; version: string; plural: string }) => (r.group ? `/apis/${r.group}/${r.version}/${r.plural}` : `/api/${r.version}/${r.plural}`)

  function install(resource: InstalledResource): void {
    if (!resource.plural || !resource.kind || !resource.version) throw new Error('fake apiserver: a resource needs version, kind and plural')
    const r: Required<InstalledResource> = { namespaced: true, ...resource }
    installed.set(apiPathOf(r), r)
    kinds.set(apiPathOf(r), r.kind)
  }
  for (const r of opts.resources ?? DEFAULT_RESOURCES) install(r)

  const groupVersion = (group: string, version: string) => (group ? `${group}/${version}` : version)

  function resourceList(group: string, version: string): unknown | undefined {
    const rs = [...installed.values()].filter((r) => r.group === group && r.version === version)
    if (rs.length === 0) return undefined
    const verbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: groupVersion(group, version),
      resources: rs.flatMap((r) => [
        { name: r.plural, singularName: r.kind.toLowerCase(), namespaced: r.namespaced, kind: r.kind, verbs },
        // Subresources are listed too; clients must skip names with a slash.
        { name: `${r.plural}/status`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] },
      ]),
    }
  }

  function apiGroups(): Array<{ name: string; versions: Array<{ groupVersion: string; version: string }>; preferredVersion: { groupVersion: string; version: string } }> {
    const groups = new Map<string, string[]>()
    for (const r of installed.values()) {
      if (!r.group) continue
      const vs = groups.get(r.group) ?? groups.set(r.group, []).get(r.group)!
      if (!vs.includes(r.version)) vs.push(r.version)
    }
    return [...groups].map(([name, versions]) => ({
      name,
      versions: versions.map((version) => ({ groupVersion: `${name}/${version}`, version })),
      preferredVersion: { groupVersion: `${name}/${versions[0]}`, version: versions[0]! },
    }))
  }

  // -- watch plumbing ------------------------------------------------------------------------

  function matches(w: Watcher, obj: StoredObject): boolean {
    if (w.namespace !== undefined && (obj.metadata.namespace ?? '') !== w.namespace) return false
    return w.labels(obj.metadata.labels ?? {}) && w.fields(obj)
  }

  /** The event a given watcher sees for a change (selector transitions become ADDED/DELETED). */
  function eventFor(w: Watcher, ev: HistoryEvent): { type: string; object: StoredObject } | undefined {
    if (w.apiPath !== ev.apiPath) return undefined
    const now = matches(w, ev.object)
    if (ev.type === 'MODIFIED' && ev.old) {
      const before = matches(w, ev.old)
      if (before && now) return { type: 'MODIFIED', object: ev.object }
      if (!before && now) return { type: 'ADDED', object: ev.object }
      if (before && !now) return { type: 'DELETED', object: ev.object }
      return undefined
    }
    return now ? { type: ev.type, object: ev.object } : undefined
  }

  function send(w: Watcher, e: { type: string; object: unknown }): void {
    // A metav1.WatchEvent: `type`, then `object` as a GET would serve it.
    if (!w.res.writableEnded && !w.res.destroyed) w.res.write(`{"type":${JSON.stringify(e.type)},"object":${encode(w.res, e.object)}}\n`)
  }

  function emit(apiPath: string, type: HistoryEvent['type'], object: StoredObject, old?: StoredObject): void {
    const ev: HistoryEvent = { rv: Number(object.metadata.resourceVersion), apiPath, type, object: clone(object), old: old && clone(old) }
    history.push(ev)
    for (const w of watchers) {
      const e = eventFor(w, ev)
      if (e) send(w, e)
    }
  }

  // -- storage primitives (shared by the REST handlers and the test backdoor) ----------------

  function complete(apiPath: string, obj: StoredObject): void {
    const r = parseRoute(apiPath)!
    obj.apiVersion ??= r.group ? `${r.group}/${r.version}` : 'v1'
    if (!obj.kind) {
      const k = kindFor(r)
      if (k) obj.kind = k
    }
    if (obj.kind) kinds.set(apiPath, obj.kind)
    if (apiPath === '/api/v1/secrets') normalizeSecret(obj)
    opts.defaulters?.[apiPath]?.(obj)
  }

  /**
   * What the apiserver sets on a new object beyond identity: a Namespace gets the `kubernetes` spec
   * finalizer (so its deletion waits for the namespace controller) and phase Active.
   */
  function defaultNew(apiPath: string, obj: StoredObject): void {
    if (apiPath !== NAMESPACES_PATH) return
    const spec = isPlainObject(obj.spec) ? obj.spec : {}
    obj.spec = { ...spec, finalizers: Array.isArray(spec.finalizers) ? spec.finalizers : ['kubernetes'] }
    obj.status = { phase: 'Active', ...(isPlainObject(obj.status) ? obj.status : {}) }
  }

  /** Finalizers that keep an object marked for deletion: metadata.finalizers, and a Namespace's spec.finalizers. */
  function hasFinalizers(apiPath: string, obj: StoredObject): boolean {
    if (obj.metadata.finalizers?.length) return true
    return apiPath === NAMESPACES_PATH && Array.isArray((obj.spec as { finalizers?: unknown } | undefined)?.finalizers) && (obj.spec as { finalizers: unknown[] }).finalizers.length > 0
  }

  function storeWrite(apiPath: string, obj: StoredObject, old: StoredObject | undefined): StoredObject {
    obj.metadata.resourceVersion = String(++rv)
    // A write that removes the last finalizer of an object marked for deletion completes the deletion.
    if (old && obj.metadata.deletionTimestamp && !hasFinalizers(apiPath, obj)) {
      bucket(apiPath).delete(keyOf(obj.metadata.namespace, obj.metadata.name))
      emit(apiPath, 'DELETED', obj)
      return clone(obj)
    }
    bucket(apiPath).set(keyOf(obj.metadata.namespace, obj.metadata.name), clone(obj))
    emit(apiPath, old ? 'MODIFIED' : 'ADDED', obj, old)
    return clone(obj)
  }

  const objects: ObjectStore = {
    get(apiPath, namespace, name) {
      const o = store.get(normalizeApiPath(apiPath))?.get(keyOf(namespace, name))
      return o && clone(o)
    },
    put(apiPath, object) {
      const p = normalizeApiPath(apiPath)
      const obj = clone(object)
      const old = store.get(p)?.get(keyOf(obj.metadata.namespace, obj.metadata.name))
      if (!old) defaultNew(p, obj)
      complete(p, obj)
      obj.metadata.uid ??= old?.metadata.uid ?? randomUUID()
      obj.metadata.creationTimestamp ??= old?.metadata.creationTimestamp ?? now()
      if (obj.spec !== undefined) obj.metadata.generation ??= old?.metadata.generation ?? 1
      return storeWrite(p, obj, old && clone(old))
    },
    update(apiPath, namespace, name, mutate) {
      const cur = objects.get(apiPath, namespace, name)
      if (!cur) throw new Error(`fake apiserver: no ${apiPath} ${namespace ?? ''}/${name}`)
      mutate(cur)
      return objects.put(apiPath, cur)
    },
    delete(apiPath, namespace, name) {
      const p = normalizeApiPath(apiPath)
      const old = store.get(p)?.get(keyOf(namespace, name))
      if (!old) return false
      store.get(p)!.delete(keyOf(namespace, name))
      const gone = clone(old)
      gone.metadata.resourceVersion = String(++rv)
      emit(p, 'DELETED', gone)
      return true
    },
    list(apiPath, namespace) {
      const all = [...(store.get(normalizeApiPath(apiPath))?.values() ?? [])]
      return all.filter((o) => namespace === undefined || (o.metadata.namespace ?? '') === namespace).map(clone)
    },
    compact() {
      history.length = 0
      continuations.clear()
      compactedAt = rv
    },
    get resourceVersion() {
      return rv
    },
  }

  // -- REST handlers -------------------------------------------------------------------------

  interface Ctx {
    method: string
    route: Route
    query: Record<string, string>
    body: unknown
    contentType: string
    manager: string
    dryRun: boolean
    res: http.ServerResponse
  }

  const notFound = (r: Route, name: string) =>
    new HttpError(404, `${qualified(r)} "${name}" not found`, 'NotFound', { name, ...(r.group ? { group: r.group } : {}), kind: r.resource })

  const conflict = (r: Route, name: string, why: string) =>
    new HttpError(409, `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, 'Conflict', { name, ...(r.group ? { group: r.group } : {}), kind: r.resource })

  const staleRv = 'the object has been modified; please apply your changes to the latest version and try again'

  function current(r: Route, name: string): StoredObject | undefined {
    const o = store.get(r.apiPath)?.get(keyOf(r.namespace, name))
    return o && clone(o)
  }

  function bodyObject(ctx: Ctx): StoredObject {
    if (!isPlainObject(ctx.body)) throw new HttpError(400, 'the request body must be a JSON object')
    const obj = clone(ctx.body) as StoredObject
    if (!isPlainObject(obj.metadata)) obj.metadata = {} as StoredObject['metadata']
    const r = ctx.route
    const ns = obj.metadata.namespace
    if (r.namespace !== undefined) {
      if (ns !== undefined && ns !== '' && ns !== r.namespace) {
        throw new HttpError(400, 'the namespace of the provided object does not match the namespace sent on the request')
      }
      obj.metadata.namespace = r.namespace
    }
    const expected = r.group ? `${r.group}/${r.version}` : 'v1'
    if (obj.apiVersion !== undefined && obj.apiVersion !== expected) {
      throw new HttpError(400, `the API version in the data (${obj.apiVersion}) does not match the expected API version (${expected})`)
    }
    if (!isBuiltinGroup(r.group) && !obj.kind) throw new HttpError(400, "Object 'Kind' is missing in the request body")
    return obj
  }

  function managedEntry(ctx: Ctx, operation: 'Update' | 'Apply', apiVersion: unknown, fields: Set<FieldKey>): ManagedEntry {
    const sub = ctx.route.subresource
    const raw: Record<string, unknown> = { manager: ctx.manager, operation, apiVersion, time: now(), fieldsType: 'FieldsV1' }
    if (sub) raw.subresource = sub
    const e: ManagedEntry = { manager: ctx.manager, operation, raw, fields }
    if (sub) e.subresource = sub
    return e
  }

  const sameSub = (e: ManagedEntry, sub: string | undefined) => (e.subresource ?? '') === (sub ?? '')

  /**
   * managedFields after an Update (POST/PUT/merge/JSON patch) by ctx.manager: it owns the fields whose
   * values it changed, which other managers lose; removed fields leave every set. Unchanged when the
   * request changed nothing.
   */
  function managedAfterUpdate(ctx: Ctx, old: StoredObject, obj: StoredObject): unknown {
    const sub = ctx.route.subresource
    const before = fieldPaths(old, sub)
    const after = fieldPaths(obj, sub)
    const changed = [...after].filter((p) => !before.has(p) || !sameValue(valueAt(old, p), valueAt(obj, p)))
    const gone = [...before].filter((p) => !after.has(p))
    if (changed.length === 0 && gone.length === 0) return old.metadata.managedFields
    const entries = readManaged(old)
    const mine = entries.find((e) => e.manager === ctx.manager && e.operation === 'Update' && sameSub(e, sub))
    for (const e of entries) {
      if (!e.fields || e === mine || !sameSub(e, sub)) continue
      const had = e.fields.size
      for (const f of [...e.fields]) if (changed.some((p) => related(f, p)) || gone.includes(f)) e.fields.delete(f)
      if (had > 0 && e.fields.size === 0) entries.splice(entries.indexOf(e), 1)
    }
    const fields = new Set([...(mine?.fields ?? []), ...changed].filter((p) => after.has(p)))
    const entry = managedEntry(ctx, 'Update', obj.apiVersion, fields)
    const at = mine ? entries.indexOf(mine) : entries.length
    entries.splice(at, mine ? 1 : 0, ...(fields.size ? [entry] : []))
    return writeManaged(entries)
  }

  /**
   * Server-side apply of `config` onto `old` by ctx.manager: conflicts with other managers' fields
   * (409 unless force; with force the fields change hands), fields this manager applied before and
   * no longer applies are removed (unless someone else owns them too), the rest is merged.
   */
  function applyOnto(ctx: Ctx, old: StoredObject, config: StoredObject): { next: StoredObject; managed: unknown } {
    const sub = ctx.route.subresource
    const force = ctx.query.force === 'true'
    const mine = fieldPaths(config, sub)
    const entries = readManaged(old)
    const conflicts: Array<{ e: ManagedEntry; field: FieldKey }> = []
    for (const e of entries) {
      if (!e.fields || e.manager === ctx.manager || !sameSub(e, sub)) continue
      for (const f of e.fields) {
        for (const p of mine) {
          if (related(f, p) && !sameValue(valueAt(old, p), valueAt(config, p))) {
            conflicts.push({ e, field: f })
            break
          }
        }
      }
    }
    if (conflicts.length && !force) {
      // As the apiserver words it (apimachinery managedfields/internal/conflict.go): each cause names
      // the conflicting manager like printManager does (`"m"` for an applier, `"m" using <its
      // apiVersion>` for an updater) and the field as a fieldpath.Path string (`.data.KEY`,
      // `.metadata.ownerReferences[uid="…"]`); with several conflicts the message groups the fields
      // per manager, managers sorted.
      const pathString = (f: FieldKey) =>
        segments(f)
          .map((s) => (keyedUid(s) !== undefined ? `[uid=${JSON.stringify(keyedUid(s))}]` : `.${s}`))
          .join('')
      const managerString = (e: ManagedEntry) => {
        const sub = e.subresource ? ` with subresource ${JSON.stringify(e.subresource)}` : ''
        return e.operation === 'Update' ? `${JSON.stringify(e.manager)}${sub} using ${String(e.raw.apiVersion ?? '')}` : `${JSON.stringify(e.manager)}${sub}`
      }
      const byManager = new Map<ManagedEntry, FieldKey[]>()
      for (const c of conflicts) byManager.set(c.e, [...(byManager.get(c.e) ?? []), c.field])
      const order = (e: ManagedEntry) => JSON.stringify([e.manager, e.operation, String(e.raw.apiVersion ?? ''), e.subresource ?? ''])
      const sorted = [...byManager].sort(([a], [b]) => (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0))
      const message =
        conflicts.length === 1
          ? `Apply failed with 1 conflict: conflict with ${managerString(conflicts[0]!.e)}: ${pathString(conflicts[0]!.field)}`
          : `Apply failed with ${conflicts.length} conflicts: ${sorted.flatMap(([e, fields]) => [`conflicts with ${managerString(e)}:`, ...fields.map((f) => `- ${pathString(f)}`)]).join('\n')}`
      // NewApplyConflict: reason Conflict, details with the causes only (no name or kind).
      throw new HttpError(409, message, 'Conflict', {
        causes: conflicts.map((c) => ({ type: 'FieldManagerConflict', message: `conflict with ${managerString(c.e)}`, field: pathString(c.field) })),
      })
    }
    for (const { e, field } of conflicts) e.fields!.delete(field)
    const previous = entries.find((e) => e.manager === ctx.manager && e.operation === 'Apply' && sameSub(e, sub))
    const next = applyMerge(old, config)
    for (const p of previous?.fields ?? []) {
      if (mine.has(p) || [...mine].some((m) => related(m, p))) continue
      if (entries.some((e) => e !== previous && e.fields?.has(p))) continue
      deletePath(next, p)
    }
    let entry = managedEntry(ctx, 'Apply', config.apiVersion, mine)
    // An apply that leaves this manager's fields as they were keeps its entry (and its time).
    if (previous?.fields && sameValue([...previous.fields].sort(), [...mine].sort()) && previous.raw.apiVersion === config.apiVersion) entry = previous
    // The entry keeps its place in the list; managers whose last field was taken by force drop out.
    const result = entries.filter((e) => !(e.fields && e.fields.size === 0 && conflicts.some((c) => c.e === e))).map((e) => (e === previous ? entry : e))
    if (!previous) result.push(entry)
    return { next, managed: writeManaged(result) }
  }

  /** What the apiserver validates beyond decoding, for the kinds smart-restore writes with care. */
  function validate(apiPath: string, obj: StoredObject): void {
    if (apiPath === '/api/v1/events') validateEvent(obj)
  }

  /**
   * Write path shared by PUT/PATCH/apply on an existing object: concurrency, immutable fields, status,
   * generation, managedFields. A write that changes nothing is a no-op: no new resourceVersion, no
   * watch event (like the apiserver, which skips writing identical bytes).
   */
  function replaceExisting(ctx: Ctx, old: StoredObject, next: StoredObject, operation: 'Update' | 'Apply', status = 200, applied?: unknown): void {
    const r = ctx.route
    const name = old.metadata.name
    const wantRv = next.metadata.resourceVersion
    if (wantRv !== undefined && wantRv !== '' && wantRv !== old.metadata.resourceVersion) throw conflict(r, name, staleRv)
    if (next.metadata.uid !== undefined && next.metadata.uid !== old.metadata.uid) {
      throw conflict(r, name, `Precondition failed: UID in precondition: ${String(next.metadata.uid)}, UID in object meta: ${old.metadata.uid}`)
    }
    if (next.metadata.name !== name) {
      throw new HttpError(400, `the name of the object (${String(next.metadata.name)}) does not match the name on the URL (${name})`)
    }
    // managedFields sent with a write replace the stored ones; omitted or unchanged, they are computed.
    const explicit = applied === undefined && next.metadata.managedFields !== undefined && !sameValue(next.metadata.managedFields, old.metadata.managedFields)
    let obj: StoredObject
    if (r.subresource === 'status') {
      // The status subresource changes status only.
      obj = clone(old)
      if (next.status === undefined) delete obj.status
      else obj.status = next.status
    } else {
      obj = next
      // The main resource ignores status changes (status subresource) and keeps server-owned metadata.
      if (old.status === undefined) delete obj.status
      else obj.status = clone(old.status)
    }
    for (const k of ['uid', 'creationTimestamp', 'deletionTimestamp', 'namespace', 'generation'] as const) {
      if (old.metadata[k] === undefined) delete obj.metadata[k]
      else (obj.metadata as Record<string, unknown>)[k] = old.metadata[k]
    }
    complete(r.apiPath, obj)
    validate(r.apiPath, obj)
    if (old.metadata.generation !== undefined && !sameValue(obj.spec, old.spec)) {
      obj.metadata.generation = old.metadata.generation + 1
    }
    if (applied !== undefined) obj.metadata.managedFields = applied
    else if (explicit) obj.metadata.managedFields = next.metadata.managedFields
    else obj.metadata.managedFields = managedAfterUpdate(ctx, old, obj)
    if (obj.metadata.managedFields === undefined) delete obj.metadata.managedFields
    obj.metadata.resourceVersion = old.metadata.resourceVersion
    const noop = sameValue({ ...obj, metadata: { ...obj.metadata, managedFields: undefined } }, { ...old, metadata: { ...old.metadata, managedFields: undefined } }) && sameValue(managedShape(obj), managedShape(old))
    if (noop) return reply(ctx.res, status, old)
    if (ctx.dryRun) return reply(ctx.res, status, obj)
    reply(ctx.res, status, storeWrite(r.apiPath, obj, old))
  }

  function create(ctx: Ctx, obj: StoredObject, operation: 'Update' | 'Apply', appliedFields?: Set<FieldKey>): void {
    const r = ctx.route
    if (obj.metadata.resourceVersion) throw new HttpError(400, 'resourceVersion should not be set on objects to be created')
    if (!obj.metadata.name && typeof obj.metadata.generateName === 'string' && obj.metadata.generateName) {
      obj.metadata.name = obj.metadata.generateName + Math.random().toString(36).slice(2, 7)
    }
    if (!obj.metadata.name) {
      throw new HttpError(422, `${obj.kind ?? r.resource} "" is invalid: metadata.name: Required value: name or generateName is required`, 'Invalid', { kind: r.resource })
    }
    if (r.namespace === undefined && obj.metadata.namespace) delete obj.metadata.namespace
    const name = obj.metadata.name
    if (current(r, name)) {
      throw new HttpError(409, `${qualified(r)} "${name}" already exists`, 'AlreadyExists', { name, ...(r.group ? { group: r.group } : {}), kind: r.resource })
    }
    // Server-owned fields: whatever the client sent is replaced; status is dropped (status subresource).
    delete obj.status
    delete obj.metadata.deletionTimestamp
    obj.metadata.uid = randomUUID()
    obj.metadata.creationTimestamp = now()
    if (obj.spec !== undefined) obj.metadata.generation = 1
    else delete obj.metadata.generation
    delete obj.metadata.managedFields
    defaultNew(r.apiPath, obj)
    complete(r.apiPath, obj)
    validate(r.apiPath, obj)
    obj.metadata.managedFields = writeManaged([managedEntry(ctx, operation, obj.apiVersion, appliedFields ?? fieldPaths(obj, undefined))])
    if (ctx.dryRun) return reply(ctx.res, 201, obj)
    reply(ctx.res, 201, storeWrite(r.apiPath, obj, undefined))
  }

  function handleList(ctx: Ctx): void {
    const r = ctx.route
    const labels = parseLabelSelector(ctx.query.labelSelector)
    const fields = parseFieldSelector(ctx.query.fieldSelector)
    const strip = isBuiltinGroup(r.group)
    // A continuation is served from its snapshot, without reading the store again.
    const items = () => objects
      .list(r.apiPath, r.namespace)
      .filter((o) => labels(o.metadata.labels ?? {}) && fields(o))
      .sort((a, b) => keyOf(a.metadata.namespace, a.metadata.name).localeCompare(keyOf(b.metadata.namespace, b.metadata.name)))
      .map((o) => {
        if (strip) {
          delete o.kind
          delete o.apiVersion
        }
        return o
      })
    const kind = kindFor(r)
    const list = (metadata: Record<string, unknown>, page: StoredObject[]) =>
      reply(ctx.res, 200, { kind: kind ? `${kind}List` : 'List', apiVersion: r.group ? `${r.group}/${r.version}` : 'v1', metadata, items: page })
    // Chunked lists: `limit` cuts the result; `continue` pages through the snapshot the first
    // request saw (one resourceVersion for the whole list, as etcd-backed lists are).
    const limit = Number(ctx.query.limit ?? 0)
    const token = ctx.query.continue
    let snapshot: { items: StoredObject[]; rv: string; offset: number } | undefined
    if (token) {
      snapshot = continuations.get(token)
      continuations.delete(token)
      if (!snapshot) {
        throw new HttpError(410, 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.', 'Expired')
      }
    } else if (limit > 0) snapshot = { items: items(), rv: String(rv), offset: 0 }
    if (!snapshot) return list({ resourceVersion: String(rv) }, items())
    listPages++
    const page = snapshot.items.slice(snapshot.offset, snapshot.offset + (limit > 0 ? limit : snapshot.items.length))
    const offset = snapshot.offset + page.length
    const metadata: Record<string, unknown> = { resourceVersion: snapshot.rv }
    if (offset < snapshot.items.length) {
      const next = `c${++continueSeq}`
      continuations.set(next, { ...snapshot, offset })
      metadata.continue = next
      metadata.remainingItemCount = snapshot.items.length - offset
    }
    list(metadata, page)
  }

  function handleWatch(ctx: Ctx, req: http.IncomingMessage): void {
    const r = ctx.route
    const w: Watcher = {
      req,
      apiPath: r.apiPath,
      namespace: r.namespace,
      labels: parseLabelSelector(ctx.query.labelSelector),
      fields: parseFieldSelector(ctx.query.fieldSelector),
      res: ctx.res,
    }
    ctx.res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' })
    ctx.res.flushHeaders()
    const from = ctx.query.resourceVersion
    if (from === undefined || from === '' || from === '0') {
      // "Start at most recent": a synthetic ADDED for every current object, then live changes.
      for (const o of objects.list(r.apiPath, r.namespace)) if (matches(w, o)) send(w, { type: 'ADDED', object: o })
    } else {
      const n = Number(from)
      if (!Number.isInteger(n) || n < 0) {
        ctx.res.end(JSON.stringify({ type: 'ERROR', object: new HttpError(400, `invalid resource version: ${from}`).toStatus() }) + '\n')
        return
      }
      if (n < compactedAt) {
        const expired = new HttpError(410, `too old resource version: ${n} (${compactedAt})`, 'Expired').toStatus()
        ctx.res.end(JSON.stringify({ type: 'ERROR', object: expired }) + '\n')
        return
      }
      for (const ev of history) {
        if (ev.rv <= n) continue
        const e = eventFor(w, ev)
        if (e) send(w, e)
      }
    }
    watchers.add(w)
    const stop = () => {
      watchers.delete(w)
      if (!ctx.res.writableEnded) ctx.res.end()
    }
    req.on('close', () => watchers.delete(w))
    // The request's 'close' may have fired already (its body was read); the response's marks the end of the stream.
    ctx.res.on('close', () => watchers.delete(w))
    const timeoutSeconds = Number(ctx.query.timeoutSeconds)
    if (timeoutSeconds > 0) {
      const t = setTimeout(stop, timeoutSeconds * 1000)
      pendingTimers.add(t)
      ctx.res.on('close', () => {
        clearTimeout(t)
        pendingTimers.delete(t)
      })
    }
  }

  function handleDelete(ctx: Ctx): void {
    const r = ctx.route
    const name = r.name!
    const old = current(r, name)
    if (!old) throw notFound(r, name)
    const options = isPlainObject(ctx.body) ? ctx.body : {}
    const pre = isPlainObject(options.preconditions) ? options.preconditions : {}
    if (pre.uid !== undefined && pre.uid !== null && pre.uid !== old.metadata.uid) {
      throw conflict(r, name, `Precondition failed: UID in precondition: ${String(pre.uid)}, UID in object meta: ${old.metadata.uid}`)
    }
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== null && pre.resourceVersion !== old.metadata.resourceVersion) {
      throw conflict(r, name, `Precondition failed: ResourceVersion in precondition: ${String(pre.resourceVersion)}, ResourceVersion in object meta: ${old.metadata.resourceVersion}`)
    }
    const dryRun = ctx.dryRun || (Array.isArray(options.dryRun) && options.dryRun.includes('All'))
    if (hasFinalizers(r.apiPath, old)) {
      // Graceful: only marked for deletion; the object goes away when its finalizers are removed.
      const marked = clone(old)
      if (!marked.metadata.deletionTimestamp) {
        marked.metadata.deletionTimestamp = now()
        marked.metadata.deletionGracePeriodSeconds = 0
        if (r.apiPath === NAMESPACES_PATH) marked.status = { ...(isPlainObject(marked.status) ? marked.status : {}), phase: 'Terminating' }
        if (dryRun) return reply(ctx.res, 200, marked)
        return reply(ctx.res, 200, storeWrite(r.apiPath, marked, old))
      }
      return reply(ctx.res, 200, marked)
    }
    if (!dryRun) {
      bucket(r.apiPath).delete(keyOf(r.namespace, name))
      const gone = clone(old)
      gone.metadata.resourceVersion = String(++rv)
      emit(r.apiPath, 'DELETED', gone)
    }
    // Custom resources answer with the deleted object, built-in registries with a Success Status.
    if (!isBuiltinGroup(r.group)) return reply(ctx.res, 200, old)
    reply(ctx.res, 200, {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: { name, ...(r.group ? { group: r.group } : {}), kind: r.resource, uid: old.metadata.uid },
    })
  }

  function handlePatch(ctx: Ctx): void {
    const r = ctx.route
    const name = r.name!
    const old = current(r, name)
    const ct = ctx.contentType
    if (ct === 'application/apply-patch+yaml') {
      if (!ctx.query.fieldManager) throw new HttpError(400, 'PATCH, application/apply-patch+yaml requires fieldManager to be set')
      const applied = bodyObject(ctx)
      if (!applied.apiVersion || !applied.kind) throw new HttpError(400, 'apiVersion and kind must be set in an apply configuration')
      if (applied.metadata.name !== undefined && applied.metadata.name !== name) {
        throw new HttpError(400, `the name of the object (${String(applied.metadata.name)}) does not match the name on the URL (${name})`)
      }
      if (applied.metadata.managedFields !== undefined && applied.metadata.managedFields !== null) {
        throw new HttpError(400, 'metadata.managedFields must be nil')
      }
      applied.metadata.name = name
      if (!old) {
        if (r.subresource) throw notFound(r, name)
        return create(ctx, applied, 'Apply', fieldPaths(applied, undefined))
      }
      const { next, managed } = applyOnto(ctx, old, applied)
      if (!applied.metadata.resourceVersion) next.metadata.resourceVersion = old.metadata.resourceVersion
      return replaceExisting(ctx, old, next, 'Apply', 200, managed)
    }
    if (ctx.query.force !== undefined) throw new HttpError(422, 'force: Invalid value: true: may not be specified for non-apply patch', 'Invalid')
    if (!old) throw notFound(r, name)
    let next: StoredObject
    if (ct === 'application/merge-patch+json' || ct === 'application/strategic-merge-patch+json') {
      if (!isPlainObject(ctx.body)) throw new HttpError(400, 'a merge patch must be a JSON object')
      next = mergePatch(old, ctx.body) as StoredObject
      // A resourceVersion inside the patch is an optimistic-concurrency precondition; otherwise none.
      const patchMeta = (ctx.body as { metadata?: { resourceVersion?: string } }).metadata
      if (!patchMeta?.resourceVersion) next.metadata.resourceVersion = old.metadata.resourceVersion
    } else if (ct === 'application/json-patch+json') {
      if (!Array.isArray(ctx.body)) throw new HttpError(400, 'a JSON patch must be an array of operations')
      try {
        next = jsonpatch.applyPatch(clone(old), ctx.body as Operation[], true, false).newDocument
      } catch (e) {
        throw new HttpError(422, `the server rejected our request due to an error in our request: ${(e as Error).message}`)
      }
    } else {
      throw new HttpError(415, `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`)
    }
    replaceExisting(ctx, old, next, 'Update')
  }

  function route(ctx: Ctx, req: http.IncomingMessage): void {
    const r = ctx.route
    if (r.subresource && r.subresource !== 'status') throw new HttpError(404, 'the server could not find the requested resource')
    switch (ctx.method) {
      case 'GET': {
        if (!r.name) {
          // A collection nobody installed: the apiserver has no handler for it at all.
          if (!installed.has(r.apiPath)) throw new HttpError(404, 'the server could not find the requested resource')
          if (ctx.query.watch === 'true' || ctx.query.watch === '1') return handleWatch(ctx, req)
          return handleList(ctx)
        }
        const o = current(r, r.name)
        if (!o) throw notFound(r, r.name)
        return reply(ctx.res, 200, o)
      }
      case 'POST':
        if (r.name) throw new HttpError(405, 'the server does not allow this method on the requested resource')
        return create(ctx, bodyObject(ctx), 'Update')
      case 'PUT': {
        if (!r.name) throw new HttpError(405, 'the server does not allow this method on the requested resource')
        const obj = bodyObject(ctx)
        const old = current(r, r.name)
        if (!old) throw notFound(r, r.name)
        return replaceExisting(ctx, old, obj, 'Update')
      }
      case 'PATCH':
        if (!r.name) throw new HttpError(405, 'the server does not allow this method on the requested resource')
        return handlePatch(ctx)
      case 'DELETE':
        if (!r.name || r.subresource) throw new HttpError(405, 'the server does not allow this method on the requested resource')
        return handleDelete(ctx)
      default:
        throw new HttpError(405, 'the server does not allow this method on the requested resource')
    }
  }

  /**
   * Responses to requests for custom resources (marked in `handle`, once the request is routed to
   * one): their objects, lists and watch events are served with sorted keys, like kube-apiserver.
   */
  const customResourceResponses = new WeakSet<http.ServerResponse>()

  /** The one place objects are serialized for a response (reply, and watch events through send). */
  function encode(res: http.ServerResponse, body: unknown): string {
    return customResourceResponses.has(res) ? sortedJson(body) : JSON.stringify(body)
  }

  function reply(res: http.ServerResponse, code: number, body: unknown): void {
    write(res, code, encode(res, body))
  }

  /** A metav1.Status (an error): a built-in type, in its field order, whatever the resource. */
  function replyStatus(res: http.ServerResponse, code: number, status: unknown): void {
    write(res, code, JSON.stringify(status))
  }

  function write(res: http.ServerResponse, code: number, text: string): void {
    if (res.headersSent || res.destroyed) return
    res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) })
    res.end(text)
  }

  /** A discovery document, `null` for a discovery path that is not served (404), undefined for other paths. */
  function discovery(pathname: string): unknown | null | undefined {
    if (pathname === '/version') {
      return { major: '1', minor: '31', gitVersion: 'v1.31.0-fake', platform: 'linux/amd64' }
    }
    const segs = pathname.split('/').filter(Boolean).map(decodeURIComponent)
    if (segs[0] === 'api') {
      if (segs.length === 1) return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1' }] }
      if (segs.length === 2) return resourceList('', segs[1]!) ?? null
      return undefined
    }
    if (segs[0] === 'apis') {
      if (segs.length === 1) return { kind: 'APIGroupList', apiVersion: 'v1', groups: apiGroups() }
      if (segs.length === 2) {
        const g = apiGroups().find((g) => g.name === segs[1])
        return g ? { kind: 'APIGroup', apiVersion: 'v1', ...g } : null
      }
      if (segs.length === 3) return resourceList(segs[1]!, segs[2]!) ?? null
    }
    return undefined
  }

  // -- faults --------------------------------------------------------------------------------

  function pathMatches(pattern: string | RegExp | undefined, path: string): boolean {
    if (pattern === undefined) return true
    if (pattern instanceof RegExp) return pattern.test(path)
    if (!pattern.includes('*')) return pattern === path
    const re = new RegExp('^' + pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*') + '$')
    return re.test(path)
  }

  function takeFault(method: string, path: string, isWatch: boolean): ActiveFault | undefined {
    const f = faults.find(
      (f) =>
        f.remaining > 0 &&
        (!f.matcher.method || f.matcher.method.toUpperCase() === method) &&
        pathMatches(f.matcher.path, path) &&
        (f.matcher.watch === undefined || f.matcher.watch === isWatch),
    )
    if (f) {
      f.remaining--
      f.hits++
    }
    return f
  }

  function sleep(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        pendingTimers.delete(t)
        resolve(!closing)
      }, ms)
      pendingTimers.add(t)
    })
  }

  // -- the HTTP server -----------------------------------------------------------------------

  async function readBody(req: http.IncomingMessage): Promise<string> {
    const chunks: Buffer[] = []
    for await (const c of req) chunks.push(c as Buffer)
    return Buffer.concat(chunks).toString('utf8')
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake')
    const method = (req.method ?? 'GET').toUpperCase()
    const query = Object.fromEntries(url.searchParams)
    const contentType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
    const text = await readBody(req)
    let body: unknown
    let parseError: string | undefined
    if (text.length) {
      try {
        body = contentType === 'application/apply-patch+yaml' ? YAML.parse(text) : JSON.parse(text)
      } catch (e) {
        body = text
        parseError = (e as Error).message
      }
    }
    const recorded: RecordedRequest = { method, path: url.pathname, query, body }
    if (contentType) recorded.contentType = contentType
    requests.push(recorded)

    const parsed = parseRoute(url.pathname)
    const fail = (e: HttpError) => replyStatus(res, e.code, e.toStatus())

    if (req.headers.authorization !== `Bearer ${token}`) return fail(new HttpError(401, 'Unauthorized'))

    const fault = takeFault(method, url.pathname, query.watch === 'true' || query.watch === '1')
    if (fault) {
      const a = fault.action
      if ('reset' in a) return void req.socket.destroy()
      if ('hang' in a) return
      if ('delayMs' in a) {
        if (!(await sleep(a.delayMs))) return
      } else {
        const verb = parsed ? verbOf(method, parsed, query) : method.toLowerCase()
        let message = a.message
        if (!message && a.status === 403 && parsed) {
          const target = parsed.name ? `${qualified(parsed)} "${parsed.name}"` : qualified(parsed)
          message = `${target} is forbidden: User "system:serviceaccount:smart-restore:smart-restore" cannot ${verb} resource "${parsed.resource}" in API group "${parsed.group}"${parsed.namespace ? ` in the namespace "${parsed.namespace}"` : ''}`
        }
        message ??= a.status >= 500 ? 'Internal error occurred: injected failure' : `injected ${a.status}`
        const details = parsed ? { ...(parsed.name ? { name: parsed.name } : {}), ...(parsed.group ? { group: parsed.group } : {}), kind: parsed.resource } : undefined
        return fail(new HttpError(a.status, message, a.reason ?? REASONS[a.status] ?? 'Unknown', details))
      }
    }

    const disc = method === 'GET' ? discovery(url.pathname) : undefined
    if (disc === null) return fail(new HttpError(404, 'the server could not find the requested resource'))
    if (disc) return reply(res, 200, disc)
    if (url.pathname === '/healthz' || url.pathname === '/readyz' || url.pathname === '/livez') {
      res.writeHead(200, { 'Content-Type': 'text/plain' })
      return void res.end('ok')
    }
    if (!parsed) return fail(new HttpError(404, 'the server could not find the requested resource'))
    if (parseError !== undefined) return fail(new HttpError(400, `the request body could not be decoded: ${parseError}`))
    if (query.dryRun !== undefined && query.dryRun !== 'All') {
      return fail(new HttpError(400, `Invalid dry run value: ${JSON.stringify(query.dryRun)}: valid values are "All"`))
    }
    const ua = String(req.headers['user-agent'] ?? 'unknown')
    const ctx: Ctx = {
      method,
      route: parsed,
      query,
      body,
      contentType,
      manager: query.fieldManager || ua.split('/')[0] || 'unknown',
      dryRun: query.dryRun === 'All',
      res,
    }
    if (!isBuiltinGroup(parsed.group)) customResourceResponses.add(res)
    try {
      route(ctx, req)
    } catch (e) {
      if (e instanceof HttpError) return fail(e)
      fail(new HttpError(500, `Internal error occurred: ${(e as Error).message}`))
    }
  }

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent && !res.destroyed) replyStatus(res, 500, new HttpError(500, `Internal error occurred: ${(e as Error).message}`).toStatus())
    })
  })
  // kube-apiserver keeps idle connections 90 s (Go http.Server IdleTimeout) and announces nothing;
  // node's default (5 s, announced as `Keep-Alive: timeout=5`) would make clients reconnect far more
  // often than against the real one.
  server.keepAliveTimeout = 90_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  const url = `http://127.0.0.1:${port}`

  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'fake', server: url, skipTLSVerify: true }],
    users: [{ name: 'fake', token }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
    currentContext: 'fake',
  })

  return {
    url,
    kubeConfig,
    token,
    requests,
    objects,
    fail(matcher, action) {
      const f: ActiveFault = { matcher, action: typeof action === 'number' ? { delayMs: action } : action, remaining: matcher.times ?? 1, hits: 0 }
      faults.push(f)
      return {
        get hits() {
          return f.hits
        },
        get remaining() {
          return f.remaining
        },
        cancel() {
          f.remaining = 0
        },
      }
    },
    requestsMatching(method, path) {
      return requests.filter((q) => q.method === method.toUpperCase() && pathMatches(path, q.path) && q.query.watch === undefined)
    },
    installResource(resource) {
      install(resource)
    },
    uninstallResource(resource) {
      const p = apiPathOf(resource)
      if (!installed.delete(p)) return false
      // Deleting a CRD ends its watches and deletes its objects (no events: nobody can watch it any more).
      for (const w of [...watchers]) {
        if (w.apiPath !== p) continue
        watchers.delete(w)
        if (!w.res.writableEnded) w.res.end()
      }
      store.delete(p)
      return true
    },
    installedResources() {
      return [...installed.values()].map((r) => ({ ...r }))
    },
    openWatches(apiPath) {
      const p = apiPath === undefined ? undefined : normalizeApiPath(apiPath)
      return [...watchers].filter((w) => (p === undefined || w.apiPath === p) && !w.res.destroyed && !w.res.writableEnded).length
    },
    dropWatches(o = {}) {
      const p = o.apiPath === undefined ? undefined : normalizeApiPath(o.apiPath)
      let n = 0
      for (const w of [...watchers]) {
        if (p !== undefined && w.apiPath !== p) continue
        watchers.delete(w)
        n++
        if (o.destroy) w.req.socket.destroy()
        else if (!w.res.writableEnded) w.res.end()
      }
      return n
    },
    get listPages() {
      return listPages
    },
    async close() {
      closing = true
      for (const t of pendingTimers) clearTimeout(t)
      pendingTimers.clear()
      for (const w of watchers) w.res.end()
      watchers.clear()
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeAllConnections()
      await closed
    },
  }
}
