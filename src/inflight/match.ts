/**
 * Matching objects of the in-flight rules against a PVC: the index keys objects are stored under,
 * the keys a PVC is looked up with, the in-flight predicate, and validation of user rules. Pure code:
 * everything here must be safe on any JSON the caches hand over, because a throw here would turn
 * into a failed admission request.
 */
import type {
  FieldPath,
  InFlightFinding,
  InFlightRule,
  InFlightWhen,
  KubeObject,
  ObjectIndex,
  PvcIdentity,
  PvcLink,
  ResourceRef,
} from './types.js'
import { DNS1123_LABEL, DNS1123_SUBDOMAIN, LABEL_KEY } from '../engines/name-syntax.js'

/** The ruleId of the finding about the PVC itself (pvcSelfFinding). */
export const PVC_SELF_RULE_ID = 'pvc-populator'

// ---------------------------------------------------------------------------------------------------
// Field paths

type Selector = { all: true } | { all: false; field: string; value: string }
interface Segment {
  key: string
  select?: Selector
}

const SEGMENT = /^([A-Za-z0-9_$-]+)(?:\[(?:(\*)|([A-Za-z0-9_$-]+)=([^\]]*))\])?$/
// Own properties only: a path segment like `__proto__` must never reach Object.prototype.
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k)

/** Splits on dots outside brackets, so `conditions[type=foo.example.com/Ready]` stays one segment. */
function splitPath(path: string): string[] {
  const parts: string[] = []
  let depth = 0
  let start = 0
  for (let i = 0; i < path.length; i++) {
    const c = path[i]
    if (c === '[') depth++
    else if (c === ']') depth--
    else if (c === '.' && depth === 0) {
      parts.push(path.slice(start, i))
      start = i + 1
    }
  }
  parts.push(path.slice(start))
  return parts
}

/** Why `path` is not a valid FieldPath, or undefined when it is. */
export function fieldPathError(path: unknown): string | undefined {
  if (typeof path !== 'string' || path === '') return 'must be a non-empty dotted field path like "spec.sourcePVC"'
  if (path.length > 256) return 'must be at most 256 characters'
  for (const seg of splitPath(path)) {
    if (!SEGMENT.test(seg)) {
      return `segment "${seg}" of "${path}" is not valid: use name, name[*] or name[field=value] segments separated by dots`
    }
  }
  return undefined
}

const parsedPaths = new Map<string, Segment[] | null>()

function parsePath(path: string): Segment[] | null {
  const cached = parsedPaths.get(path)
  if (cached !== undefined) return cached
  let segs: Segment[] | null = []
  for (const part of splitPath(path)) {
    const m = SEGMENT.exec(part)
    if (!m) {
      segs = null
      break
    }
    const seg: Segment = { key: m[1]! }
    if (m[2]) seg.select = { all: true }
    else if (m[3] !== undefined) seg.select = { all: false, field: m[3], value: m[4] ?? '' }
    segs.push(seg)
  }
  // Paths come from the rule table and the configuration, so the cache stays small.
  if (parsedPaths.size < 4096) parsedPaths.set(path, segs)
  return segs
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Every value at `path` (several when a segment selects from a list); [] when nothing is there. */
export function valuesAt(obj: unknown, path: FieldPath): unknown[] {
  const segs = typeof path === 'string' ? parsePath(path) : null
  if (!segs) return []
  let current: unknown[] = [obj]
  for (const seg of segs) {
    const next: unknown[] = []
    for (const v of current) {
      if (!isRecord(v) || !hasOwn(v, seg.key)) continue
      const child = v[seg.key]
      if (!seg.select) {
        next.push(child)
        continue
      }
      if (!Array.isArray(child)) continue
      for (const el of child) {
        if (seg.select.all) next.push(el)
        else if (isRecord(el) && hasOwn(el, seg.select.field) && scalarText(el[seg.select.field]) === seg.select.value) next.push(el)
      }
    }
    current = next
  }
  return current.filter((v) => v !== undefined)
}

function scalarText(v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (typeof v === 'number' || typeof v === 'boolean') return String(v)
  return undefined
}

function isSet(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === false || v === 0) return false
  if (Array.isArray(v)) return v.length > 0
  if (isRecord(v)) return Object.keys(v).length > 0
  return true
}

function show(v: unknown): string {
  let s: string
  if (typeof v === 'string') s = v
  else {
    try {
      s = JSON.stringify(v) ?? String(v)
    } catch {
      s = String(v)
    }
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s
}

function nonEmptyString(v: unknown): v is string {
  return typeof v === 'string' && v !== ''
}

// ---------------------------------------------------------------------------------------------------
// Index keys

const pvcKey = (namespace: string, name: string) => `pvc:${namespace}/${name}`
const uidKey = (uid: string) => `uid:${uid}`
const nsKey = (namespace: string) => `ns:${namespace}`
const ownerKey = (group: string, kind: string, namespace: string, name: string) => `owner:${group}/${kind}/${namespace}/${name}`
const appKey = (namespace: string, name: string) => `app:${namespace}/${name}`
const appKindKey = (kind: string, namespace: string, name: string) => `app:${kind}/${namespace}/${name}`
const appFullKey = (group: string, kind: string, namespace: string, name: string) => `app:${group}/${kind}/${namespace}/${name}`

function groupOfApiVersion(apiVersion: string): string {
  const slash = apiVersion.indexOf('/')
  return slash < 0 ? '' : apiVersion.slice(0, slash)
}

function metadataOf(obj: unknown): Record<string, unknown> | undefined {
  if (!isRecord(obj)) return undefined
  const md = obj.metadata
  return isRecord(md) ? md : undefined
}

function namespaceOf(obj: unknown): string | undefined {
  const ns = metadataOf(obj)?.namespace
  return nonEmptyString(ns) ? ns : undefined
}

function linkKeysInto(link: PvcLink, obj: unknown, objNs: string | undefined, out: Set<string>, depth: number): void {
  if (!isRecord(link) || depth > 8) return
  switch (link.by) {
    case 'field': {
      const nsValue = link.namespacePath ? valuesAt(obj, link.namespacePath).find(nonEmptyString) : undefined
      const ns = nsValue ?? objNs
      if (!ns) return
      for (const v of valuesAt(obj, link.path)) if (nonEmptyString(v)) out.add(pvcKey(ns, v))
      return
    }
    case 'label': {
      const labels = metadataOf(obj)?.labels
      if (!isRecord(labels) || !hasOwn(labels, link.key)) return
      const v = labels[link.key]
      if (!nonEmptyString(v)) return
      if (link.value === 'uid') out.add(uidKey(v))
      else if (objNs) out.add(pvcKey(objNs, v))
      return
    }
    case 'dataSourceRef':
      // Looked up by name through ObjectIndex.get: the PVC names the object, not the other way round.
      return
    case 'namespace':
      if (!objNs) return
      if (link.unlessSet && valuesAt(obj, link.unlessSet).some(isSet)) return
      out.add(nsKey(objNs))
      return
    case 'owner': {
      const refs = metadataOf(obj)?.ownerReferences
      if (!objNs || !Array.isArray(refs)) return
      for (const ref of refs) {
        if (!isRecord(ref) || !nonEmptyString(ref.kind) || !nonEmptyString(ref.name)) continue
        const group = typeof ref.apiVersion === 'string' ? groupOfApiVersion(ref.apiVersion) : ''
        out.add(ownerKey(group, ref.kind, objNs, ref.name))
      }
      return
    }
    case 'application': {
      for (const ref of valuesAt(obj, link.path)) {
        if (!isRecord(ref) || !nonEmptyString(ref.name)) continue
        const ns = nonEmptyString(ref.namespace) ? ref.namespace : objNs
        if (!ns) continue
        const group = typeof ref.apiGroup === 'string' ? ref.apiGroup : typeof ref.apiVersion === 'string' ? groupOfApiVersion(ref.apiVersion) : ''
        out.add(appKey(ns, ref.name))
        if (nonEmptyString(ref.kind)) {
          out.add(appKindKey(ref.kind, ns, ref.name))
          out.add(appFullKey(group, ref.kind, ns, ref.name))
          if (ref.kind === 'PersistentVolumeClaim' && group === '') out.add(pvcKey(ns, ref.name))
        }
      }
      return
    }
    case 'anyOf':
      if (!Array.isArray(link.of)) return
      for (const sub of link.of) linkKeysInto(sub, obj, objNs, out, depth + 1)
      return
    default:
      return
  }
}

/**
 * The index keys an object of `rule` is stored under. Total and cheap: the cache calls it for every
 * object it sees, and a malformed object simply has no keys.
 */
export function linkKeys(rule: InFlightRule, obj: unknown): string[] {
  try {
    if (!metadataOf(obj)) return []
    const out = new Set<string>()
    linkKeysInto(rule.link, obj, namespaceOf(obj), out, 0)
    return [...out]
  } catch {
    return []
  }
}

function pvcKeysInto(link: PvcLink, pvc: PvcIdentity, out: Set<string>, depth: number): void {
  if (!isRecord(link) || depth > 8) return
  const ns = pvc.namespace
  switch (link.by) {
    case 'field':
      out.add(pvcKey(ns, pvc.name))
      return
    case 'label':
      if (link.value === 'uid') {
        if (nonEmptyString(pvc.uid)) out.add(uidKey(pvc.uid))
      } else out.add(pvcKey(ns, pvc.name))
      return
    case 'dataSourceRef':
    case 'owner':
      // Resolved in findInFlight: through ObjectIndex.get, and through the owner rule's objects.
      return
    case 'namespace':
      out.add(nsKey(ns))
      return
    case 'application': {
      out.add(pvcKey(ns, pvc.name))
      for (const ref of Array.isArray(pvc.ownerReferences) ? pvc.ownerReferences : []) {
        if (!isRecord(ref) || !nonEmptyString(ref.kind) || !nonEmptyString(ref.name)) continue
        const group = typeof ref.apiVersion === 'string' ? groupOfApiVersion(ref.apiVersion) : ''
        out.add(appFullKey(group, ref.kind, ns, ref.name))
      }
      const labels = isRecord(pvc.labels) ? pvc.labels : {}
      const kind = link.pvcKindLabel && hasOwn(labels, link.pvcKindLabel) ? labels[link.pvcKindLabel] : undefined
      for (const key of Array.isArray(link.pvcLabels) ? link.pvcLabels : []) {
        const name = hasOwn(labels, key) ? labels[key] : undefined
        if (!nonEmptyString(name)) continue
        out.add(nonEmptyString(kind) ? appKindKey(kind, ns, name) : appKey(ns, name))
      }
      return
    }
    case 'anyOf':
      if (!Array.isArray(link.of)) return
      for (const sub of link.of) pvcKeysInto(sub, pvc, out, depth + 1)
      return
    default:
      return
  }
}

/** The keys to look `pvc` up with among the objects of `rule` (the mirror image of linkKeys). */
export function pvcKeys(rule: InFlightRule, pvc: PvcIdentity): string[] {
  const out = new Set<string>()
  pvcKeysInto(rule.link, pvc, out, 0)
  return [...out]
}

function linksOf(link: PvcLink, depth = 0): PvcLink[] {
  if (!isRecord(link) || depth > 8) return []
  if (link.by === 'anyOf') return Array.isArray(link.of) ? link.of.flatMap((l) => linksOf(l, depth + 1)) : []
  return [link]
}

// ---------------------------------------------------------------------------------------------------
// The in-flight predicate

export interface Evaluation {
  inFlight: boolean
  why: string
}

// Thrown, not returned: under a `not`, a returned "false" would turn an invalid condition into "in flight".
class InvalidCondition extends Error {}

function evaluateAt(when: InFlightWhen, obj: unknown, depth: number): Evaluation {
  if (!isRecord(when) || depth > 16) throw new InvalidCondition()
  switch (when.when) {
    case 'fieldIn': {
      const values = valuesAt(obj, when.path)
      const allowed = Array.isArray(when.values) ? when.values : []
      const hit = values.find((v) => {
        const s = scalarText(v)
        return s !== undefined && allowed.includes(s)
      })
      if (hit !== undefined) return { inFlight: true, why: `${when.path}=${show(hit)}` }
      if (values.length === 0) return { inFlight: false, why: `${when.path} is not set` }
      return { inFlight: false, why: `${when.path}=${show(values[0])}` }
    }
    case 'fieldSet': {
      const hit = valuesAt(obj, when.path).find(isSet)
      return hit !== undefined
        ? { inFlight: true, why: `${when.path} is set (${show(hit)})` }
        : { inFlight: false, why: `${when.path} is not set` }
    }
    case 'fieldNotTrue': {
      const isTrue = valuesAt(obj, when.path).some((v) => v === true)
      return isTrue ? { inFlight: false, why: `${when.path} is true` } : { inFlight: true, why: `${when.path} is not true` }
    }
    case 'condition': {
      const conditions = valuesAt(obj, 'status.conditions')[0]
      const c = Array.isArray(conditions) ? conditions.find((x) => isRecord(x) && x.type === when.type) : undefined
      if (!isRecord(c)) return { inFlight: false, why: `no condition ${when.type}` }
      const status = scalarText(c.status) ?? show(c.status)
      const reason = nonEmptyString(c.reason) ? c.reason : undefined
      const text = `condition ${when.type}=${status}${reason ? ` (${reason})` : ''}`
      const hit = c.status === when.status && (when.reason === undefined || c.reason === when.reason)
      return { inFlight: hit, why: text }
    }
    case 'anyOf':
    case 'allOf': {
      if (!Array.isArray(when.of) || when.of.length === 0) throw new InvalidCondition()
      const parts = when.of.map((w) => evaluateAt(w, obj, depth + 1))
      if (when.when === 'anyOf') {
        const hit = parts.find((p) => p.inFlight)
        return hit ?? { inFlight: false, why: parts.map((p) => p.why).join(' and ') }
      }
      const miss = parts.find((p) => !p.inFlight)
      return miss ?? { inFlight: true, why: parts.map((p) => p.why).join(' and ') }
    }
    case 'not': {
      // The inner why already describes what the object looks like, whichever way it went.
      const inner = evaluateAt(when.of, obj, depth + 1)
      return { inFlight: !inner.inFlight, why: inner.why }
    }
    default:
      throw new InvalidCondition()
  }
}

/**
 * Whether `obj` is in flight by `when`, and why (for the denial message). Never throws; a malformed
 * `when` (which parseRules never lets through) is "not in flight", whatever surrounds it.
 */
export function evaluate(when: InFlightWhen, obj: unknown): Evaluation {
  try {
    return evaluateAt(when, obj, 0)
  } catch {
    return { inFlight: false, why: 'invalid in-flight condition' }
  }
}

/** Since when the object is in flight: the first of the rule's `since` paths holding a timestamp. */
export function sinceOf(rule: InFlightRule, obj: unknown): string | undefined {
  for (const path of Array.isArray(rule.since) ? rule.since : []) {
    for (const v of valuesAt(obj, path)) {
      if (nonEmptyString(v) && !Number.isNaN(Date.parse(v))) return v
    }
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------
// Finding what is in flight for a PVC

interface Candidate {
  obj: KubeObject
  /** Set when found through an owner: the owner's kind and name, for the message. */
  via?: string
}

function identityOf(obj: KubeObject): string | undefined {
  const md = metadataOf(obj)
  if (!md || !nonEmptyString(md.name)) return undefined
  if (nonEmptyString(md.uid)) return `uid:${md.uid}`
  return `name:${nonEmptyString(md.namespace) ? md.namespace : ''}/${md.name}`
}

function sameResource(a: ResourceRef, group: string | undefined, kind: string): boolean {
  return a.group === (group ?? '') && a.kind === kind
}

// Index failures are not swallowed: a guard that could not look must not report "nothing in flight".
function listOf(r: KubeObject[] | KubeObject | undefined): KubeObject[] {
  if (Array.isArray(r)) return r
  return r ? [r] : []
}

class Finder {
  private readonly byId: Map<string, InFlightRule>
  private readonly memo = new Map<string, Candidate[]>()

  constructor(
    private readonly pvc: PvcIdentity,
    rules: InFlightRule[],
    private readonly index: ObjectIndex,
  ) {
    this.byId = new Map(rules.map((r) => [r.id, r]))
  }

  active(ruleId: string): boolean {
    return this.index.isActive(ruleId)
  }

  /** The objects of `rule` that concern the PVC, in flight or not. */
  candidates(rule: InFlightRule, visiting: Set<string> = new Set()): Candidate[] {
    const memo = this.memo.get(rule.id)
    if (memo) return memo
    if (visiting.has(rule.id)) return []
    // Only a top-level result is complete: inside an owner cycle the inner rule's list is cut short.
    const topLevel = visiting.size === 0
    visiting.add(rule.id)
    const found = new Map<string, Candidate>()
    const add = (obj: KubeObject, via?: string) => {
      const id = identityOf(obj)
      if (id && !found.has(id)) found.set(id, via ? { obj, via } : { obj })
    }
    for (const key of pvcKeys(rule, this.pvc)) for (const obj of listOf(this.index.byKey(rule.id, key))) add(obj)
    for (const link of linksOf(rule.link)) {
      if (link.by === 'dataSourceRef') {
        const ref = this.pvc.dataSourceRef
        if (ref && nonEmptyString(ref.name) && sameResource(rule.resource, ref.apiGroup, ref.kind)) {
          for (const obj of listOf(this.index.get(rule.id, this.pvc.namespace, ref.name))) add(obj)
        }
      } else if (link.by === 'owner') {
        const ownerRule = this.byId.get(link.ruleId)
        if (!ownerRule || !this.active(ownerRule.id)) continue
        for (const owner of this.candidates(ownerRule, visiting)) {
          const md = metadataOf(owner.obj)
          if (!md || !nonEmptyString(md.name)) continue
          const ns = nonEmptyString(md.namespace) ? md.namespace : this.pvc.namespace
          const key = ownerKey(ownerRule.resource.group, ownerRule.resource.kind, ns, md.name)
          for (const obj of listOf(this.index.byKey(rule.id, key))) add(obj, `${ownerRule.resource.kind} ${md.name}`)
        }
      }
    }
    visiting.delete(rule.id)
    const list = [...found.values()]
    if (topLevel) this.memo.set(rule.id, list)
    return list
  }
}

function compareFindings(a: InFlightFinding, b: InFlightFinding): number {
  const keys: Array<keyof InFlightFinding> = ['system', 'kind', 'name', 'namespace', 'ruleId']
  for (const k of keys) {
    const x = a[k] ?? ''
    const y = b[k] ?? ''
    if (x < y) return -1
    if (x > y) return 1
  }
  return 0
}

/**
 * Everything in flight for `pvc` according to the active rules: each rule's objects that link to
 * the PVC (by key, by the PVC's dataSourceRef, or through an owner rule's objects whether or not those
 * look busy themselves), evaluated. Objects being deleted still count: a backup does not stop because
 * its object got a deletionTimestamp. The PVC itself is pvcSelfFinding's business. Malformed objects
 * are skipped; exceptions from the index propagate, so the caller answers "unknown", not "nothing".
 */
export function findInFlight(pvc: PvcIdentity, rules: InFlightRule[], index: ObjectIndex): InFlightFinding[] {
  const finder = new Finder(pvc, rules, index)
  const findings: InFlightFinding[] = []
  const seen = new Set<string>()
  for (const rule of rules) {
    if (!finder.active(rule.id)) continue
    for (const { obj, via } of finder.candidates(rule)) {
      const { inFlight, why } = evaluate(rule.inFlight, obj)
      if (!inFlight) continue
      const md = metadataOf(obj)!
      const namespace = nonEmptyString(md.namespace) ? md.namespace : ''
      const name = md.name as string
      // Two rules over one resource (a user rule next to a built-in) must not name an object twice.
      const id = `${rule.resource.group}/${rule.resource.kind}/${namespace}/${name}`
      if (seen.has(id)) continue
      seen.add(id)
      const since = sinceOf(rule, obj)
      findings.push({
        ruleId: rule.id,
        system: rule.system,
        kind: rule.resource.kind,
        namespace,
        name,
        ...(since ? { since } : {}),
        why: via ? `for ${via}: ${why}` : why,
      })
    }
  }
  return findings.sort(compareFindings)
}

/**
 * The PVC itself is in flight while a volume populator fills it: dataSourceRef set and still Pending
 * (VolSync's populator keeps it Pending until the ReplicationDestination's latestImage exists).
 */
export function pvcSelfFinding(pvc: PvcIdentity): InFlightFinding | undefined {
  const ref = pvc.dataSourceRef
  if (!ref || pvc.phase !== 'Pending' || !nonEmptyString(ref.kind) || !nonEmptyString(ref.name)) return undefined
  const group = nonEmptyString(ref.apiGroup) ? ` (${ref.apiGroup})` : ''
  return {
    ruleId: PVC_SELF_RULE_ID,
    system: 'volume populator',
    kind: 'PersistentVolumeClaim',
    namespace: pvc.namespace,
    name: pvc.name,
    why: `still being populated from ${ref.kind} ${ref.name}${group}: status.phase=Pending`,
  }
}

// ---------------------------------------------------------------------------------------------------
// User rules from the configuration

class RuleError extends Error {
  constructor(path: string, message: string) {
    super(`${path}: ${message}`)
    this.name = 'RuleError'
  }
}

const RULE_ID = DNS1123_LABEL
const VERSION = /^v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?$/
const KIND = /^[A-Z][A-Za-z0-9]*$/
const PLURAL = /^[a-z][a-z0-9]*$/
// Equality-based selectors only (`a=b`, `a!=b`, `a`, `!a`): set-based ones would need a real parser.
const SELECTOR_TERM = /^\s*!?[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?\s*((==|=|!=)\s*([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\s*)?$/

const LINK_KINDS = ['field', 'label', 'dataSourceRef', 'namespace', 'owner', 'application', 'anyOf'] as const
const WHEN_KINDS = ['fieldIn', 'fieldSet', 'fieldNotTrue', 'condition', 'anyOf', 'allOf', 'not'] as const

function record(v: unknown, path: string, what: string): Record<string, unknown> {
  if (!isRecord(v)) throw new RuleError(path, `must be ${what}`)
  return v
}

function onlyKeys(o: Record<string, unknown>, path: string, required: string[], optional: string[] = []): void {
  const valid = [...required, ...optional]
  for (const k of Object.keys(o)) {
    if (!valid.includes(k)) throw new RuleError(`${path}.${k}`, `unknown key (valid keys here: ${valid.join(', ')})`)
  }
  for (const k of required) {
    if (!hasOwn(o, k) || o[k] === undefined) throw new RuleError(`${path}.${k}`, 'is required')
  }
}

function str(v: unknown, path: string, re?: RegExp, hint?: string): string {
  if (typeof v !== 'string' || v === '') throw new RuleError(path, `must be a non-empty string${hint ? ` (${hint})` : ''}`)
  if (re && !re.test(v)) throw new RuleError(path, `"${v}" is not valid${hint ? `: ${hint}` : ''}`)
  return v
}

function fieldPath(v: unknown, path: string): FieldPath {
  const err = fieldPathError(v)
  if (err) throw new RuleError(path, err)
  return v as string
}

function list(v: unknown, path: string, nonEmpty: boolean): unknown[] {
  if (!Array.isArray(v)) throw new RuleError(path, 'must be a list')
  if (nonEmpty && v.length === 0) throw new RuleError(path, 'must not be empty')
  return v
}

function oneOf<T extends string>(v: unknown, path: string, valid: readonly T[]): T {
  if (typeof v !== 'string' || !valid.includes(v as T)) {
    throw new RuleError(path, `must be one of ${valid.map((x) => `"${x}"`).join(', ')}${v === undefined ? '' : ` (got ${show(v)})`}`)
  }
  return v as T
}

function parseLink(input: unknown, path: string, depth: number): PvcLink {
  const o = record(input, path, `a link: an object with "by" (${LINK_KINDS.join(', ')})`)
  const by = oneOf(o.by, `${path}.by`, LINK_KINDS)
  switch (by) {
    case 'field':
      onlyKeys(o, path, ['by', 'path'], ['namespacePath'])
      return {
        by,
        path: fieldPath(o.path, `${path}.path`),
        ...(o.namespacePath !== undefined ? { namespacePath: fieldPath(o.namespacePath, `${path}.namespacePath`) } : {}),
      }
    case 'label':
      onlyKeys(o, path, ['by', 'key', 'value'])
      return {
        by,
        key: str(o.key, `${path}.key`, LABEL_KEY, 'a label key like "velero.io/pvc-uid"'),
        value: oneOf(o.value, `${path}.value`, ['name', 'uid'] as const),
      }
    case 'dataSourceRef':
      onlyKeys(o, path, ['by'])
      return { by }
    case 'namespace':
      onlyKeys(o, path, ['by'], ['unlessSet'])
      return { by, ...(o.unlessSet !== undefined ? { unlessSet: fieldPath(o.unlessSet, `${path}.unlessSet`) } : {}) }
    case 'owner':
      onlyKeys(o, path, ['by', 'ruleId'])
      return { by, ruleId: str(o.ruleId, `${path}.ruleId`, RULE_ID, 'the id of another rule') }
    case 'application': {
      onlyKeys(o, path, ['by', 'path', 'pvcLabels'], ['pvcKindLabel'])
      const labels = list(o.pvcLabels, `${path}.pvcLabels`, false).map((l, i) =>
        str(l, `${path}.pvcLabels[${i}]`, LABEL_KEY, 'a label key like "app.kubernetes.io/instance"'),
      )
      return {
        by,
        path: fieldPath(o.path, `${path}.path`),
        pvcLabels: labels,
        ...(o.pvcKindLabel !== undefined ? { pvcKindLabel: str(o.pvcKindLabel, `${path}.pvcKindLabel`, LABEL_KEY, 'a label key') } : {}),
      }
    }
    case 'anyOf': {
      onlyKeys(o, path, ['by', 'of'])
      if (depth >= 4) throw new RuleError(path, 'links nest at most 4 deep')
      const of = list(o.of, `${path}.of`, true).map((l, i) => parseLink(l, `${path}.of[${i}]`, depth + 1))
      return { by, of }
    }
  }
}

function parseWhen(input: unknown, path: string, depth: number): InFlightWhen {
  const o = record(input, path, `a condition: an object with "when" (${WHEN_KINDS.join(', ')})`)
  const when = oneOf(o.when, `${path}.when`, WHEN_KINDS)
  if (depth >= 8) throw new RuleError(path, 'conditions nest at most 8 deep')
  switch (when) {
    case 'fieldIn': {
      onlyKeys(o, path, ['when', 'path', 'values'])
      const values = list(o.values, `${path}.values`, true).map((v, i) => str(v, `${path}.values[${i}]`))
      return { when, path: fieldPath(o.path, `${path}.path`), values }
    }
    case 'fieldSet':
    case 'fieldNotTrue':
      onlyKeys(o, path, ['when', 'path'])
      return { when, path: fieldPath(o.path, `${path}.path`) }
    case 'condition':
      onlyKeys(o, path, ['when', 'type', 'status'], ['reason'])
      return {
        when,
        type: str(o.type, `${path}.type`),
        status: oneOf(o.status, `${path}.status`, ['True', 'False', 'Unknown'] as const),
        ...(o.reason !== undefined ? { reason: str(o.reason, `${path}.reason`) } : {}),
      }
    case 'anyOf':
    case 'allOf': {
      onlyKeys(o, path, ['when', 'of'])
      const of = list(o.of, `${path}.of`, true).map((w, i) => parseWhen(w, `${path}.of[${i}]`, depth + 1))
      return { when, of }
    }
    case 'not':
      onlyKeys(o, path, ['when', 'of'])
      return { when, of: parseWhen(o.of, `${path}.of`, depth + 1) }
  }
}

function parseResource(input: unknown, path: string): ResourceRef {
  const o = record(input, path, 'an object with group, version, kind, plural')
  onlyKeys(o, path, ['group', 'version', 'kind', 'plural'])
  if (typeof o.group !== 'string') throw new RuleError(`${path}.group`, 'must be a string ("" for the core group)')
  if (o.group !== '' && !DNS1123_SUBDOMAIN.test(o.group)) throw new RuleError(`${path}.group`, `"${o.group}" is not an API group like "velero.io"`)
  return {
    group: o.group,
    version: str(o.version, `${path}.version`, VERSION, 'a version like "v1" or "v1alpha1"'),
    kind: str(o.kind, `${path}.kind`, KIND, 'a kind like "ReplicationSource"'),
    plural: str(o.plural, `${path}.plural`, PLURAL, 'the lowercase plural resource name like "replicationsources"'),
  }
}

function parseRule(input: unknown, path: string): InFlightRule {
  const o = record(input, path, 'a rule: an object with id, system, resource, link, inFlight')
  onlyKeys(o, path, ['id', 'system', 'resource', 'link', 'inFlight'], ['labelSelector', 'since'])
  const id = str(o.id, `${path}.id`, RULE_ID, 'lowercase letters, digits and dashes, like "my-backup-run"')
  if (id.length > 63) throw new RuleError(`${path}.id`, 'must be at most 63 characters')
  const rule: InFlightRule = {
    id,
    system: str(o.system, `${path}.system`),
    resource: parseResource(o.resource, `${path}.resource`),
    link: parseLink(o.link, `${path}.link`, 0),
    inFlight: parseWhen(o.inFlight, `${path}.inFlight`, 0),
  }
  if (o.labelSelector !== undefined) {
    const sel = str(o.labelSelector, `${path}.labelSelector`)
    if (!sel.split(',').every((term) => SELECTOR_TERM.test(term))) {
      throw new RuleError(`${path}.labelSelector`, `"${sel}" is not an equality-based label selector like "app.kubernetes.io/created-by=volsync"`)
    }
    rule.labelSelector = sel
  }
  if (o.since !== undefined) {
    rule.since = list(o.since, `${path}.since`, true).map((p, i) => fieldPath(p, `${path}.since[${i}]`))
  }
  return rule
}

/**
 * User-supplied rules from the configuration, validated. Throws an Error whose message starts with
 * the offending field's path (`inFlightRules[2].link.path: ...`) and says what would be valid.
 * Absent (undefined or null) means no rules.
 */
export function parseRules(input: unknown, field = 'inFlightRules'): InFlightRule[] {
  if (input === undefined || input === null) return []
  if (!Array.isArray(input)) throw new RuleError(field, 'must be a list of in-flight rules')
  const rules = input.map((r, i) => parseRule(r, `${field}[${i}]`))
  const seen = new Map<string, number>()
  rules.forEach((r, i) => {
    const first = seen.get(r.id)
    if (first !== undefined) throw new RuleError(`${field}[${i}].id`, `"${r.id}" is already the id of ${field}[${first}]; ids must be unique`)
    seen.set(r.id, i)
  })
  return rules
}

function ownerRefsOf(link: PvcLink, path: string, depth = 0): Array<{ ruleId: string; path: string }> {
  if (!isRecord(link) || depth > 8) return []
  if (link.by === 'owner') return [{ ruleId: link.ruleId, path: `${path}.ruleId` }]
  if (link.by === 'anyOf' && Array.isArray(link.of)) return link.of.flatMap((l, i) => ownerRefsOf(l, `${path}.of[${i}]`, depth + 1))
  return []
}

export interface MergeOptions {
  /** Ids of rules to drop (deletionGuard.disabledRules); each must name a known rule. */
  disabled?: string[]
  /** For error messages: where the user rules came from. */
  field?: string
  disabledField?: string
}

/**
 * The effective rule set: the built-ins, each replaced by the user rule with its id, then the other
 * user rules in order, minus the disabled ones. Owner links must name a rule that exists (a disabled
 * one is fine: it then simply contributes no owners).
 */
export function mergeRules(builtin: InFlightRule[], user: InFlightRule[], options: MergeOptions = {}): InFlightRule[] {
  const field = options.field ?? 'inFlightRules'
  const disabledField = options.disabledField ?? 'disabledRules'
  const merged = [...builtin]
  const userIndex = new Map<string, number>()
  user.forEach((rule, i) => {
    if (userIndex.has(rule.id)) throw new RuleError(`${field}[${i}].id`, `"${rule.id}" is already the id of ${field}[${userIndex.get(rule.id)}]; ids must be unique`)
    userIndex.set(rule.id, i)
    const at = merged.findIndex((b) => b.id === rule.id)
    if (at >= 0) merged[at] = rule
    else merged.push(rule)
  })
  const known = new Set(merged.map((r) => r.id))
  for (const rule of merged) {
    const i = userIndex.get(rule.id)
    const base = i !== undefined ? `${field}[${i}].link` : `built-in rule ${rule.id}: link`
    for (const ref of ownerRefsOf(rule.link, base)) {
      if (!known.has(ref.ruleId)) throw new RuleError(ref.path, `no rule has the id "${ref.ruleId}"`)
    }
  }
  const disabled = new Set<string>()
  ;(options.disabled ?? []).forEach((id, i) => {
    if (!known.has(id)) throw new RuleError(`${disabledField}[${i}]`, `no rule has the id "${id}" (known: ${[...known].join(', ')})`)
    disabled.add(id)
  })
  return merged.filter((r) => !disabled.has(r.id))
}
