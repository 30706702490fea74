/**
 * A seeded generator of malformed and adversarial AdmissionReview bodies, built from the bodies real
 * kube-apiservers sent (../shared/fixtures), and the oracle every reply to one must satisfy.
 *
 * Same seed, same bodies: a failure names its seed and index, and `fuzzCase(seed, index)` rebuilds
 * that body alone.
 */
import { readdirSync } from 'node:fs'
import fastJsonPatch from 'fast-json-patch'
import { APISERVER_V132, fixtureBody, kubewardenBody } from './fixtures.js'

// ---------------------------------------------------------------------------------------------
// PRNG

/** mulberry32: small, fast, good enough to spread test cases; deterministic per seed. */
export function prng(seed: number) {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
  const chance = (p: number) => next() < p
  /** Log-uniform integer in [lo, hi]: most small, some huge. */
  const logInt = (lo: number, hi: number) => Math.floor(Math.exp(Math.log(lo) + next() * (Math.log(hi) - Math.log(lo))))
  return { next, int, pick, chance, logInt }
}
export type Rng = ReturnType<typeof prng>

// ---------------------------------------------------------------------------------------------
// Cases

export type Category =
  | 'valid'
  | 'truncated'
  | 'type-swap'
  | 'field-removed'
  | 'huge-string'
  | 'deep-nesting-top'
  | 'deep-nesting-inside'
  | 'deep-nesting-echoed'
  | 'proto-key'
  | 'constructor-prototype'
  | 'harmless-proto-like-key'
  | 'non-pvc-kind'
  | 'operation'
  | 'unicode'
  | 'invalid-utf8'
  | 'content-type'
  | 'empty'
  | 'number-for-object'
  | 'wide'
  | 'uid'
  | 'duplicate-key'
  | 'bom'
  | 'garbage'
  | 'timeout-param'
  | 'too-large'

export interface FuzzCase {
  index: number
  category: Category
  path: '/mutate' | '/validate'
  /** `?timeout=...` (the apiserver always sends one). */
  query: string
  body: string | Buffer
  /** null: no content-type header at all. */
  contentType: string | null
  /** The reply's status must be exactly this, or be in 400–499 for '4xx'. Undefined: the oracle alone. */
  expect?: number | '4xx'
  /** When the body is exactly JSON.stringify of a document: its request uid (if a string) and operation, so the oracle need not parse it again. */
  known?: { uid: string | undefined; operation: unknown }
}

const FIXTURE_FILES = readdirSync(APISERVER_V132).filter((f) => f.endsWith('.json'))
const BASES: ReadonlyArray<{ name: string; text: string }> = [
  ...FIXTURE_FILES.map((f) => ({ name: f, text: fixtureBody(f).trimEnd() })),
  { name: 'kubewarden', text: kubewardenBody().trimEnd() },
]

const UNICODE = [
  '😀💾🗄️',
  '\u202Eevil\u202C', // RTL override
  'nul\u0000byte',
  'zero\u200Bwidth',
  'ｆｕｌｌｗｉｄｔｈ',
  'e\u0301\u0301\u0301', // combining marks
  '\ud800', // lone surrogate (JSON.stringify escapes it)
  '\udfff\ud800',
  'שלום-עולם',
  'مرحبا',
  '日本語の名前',
  '\u0007\u001b[31mred',
  '../../etc/passwd',
  'media/../kube-system',
  '/',
  '.',
  '..',
  ' ',
  '%00',
  '\\',
  '"quoted"',
  '{{namespace}}',
  '{pvc}',
  '$(rm -rf /)',
  'a'.repeat(254),
  'UPPER-case',
  '-leading-dash',
  'trailing-dash-',
]

const PROTO_KEYS = ['__proto__', '\\u005f\\u005fproto__', '__\\u0070roto__']

/** Values of every JSON type (and some that are not what a field should hold). */
function randomValue(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 2 ? 9 : 12)) {
    case 0:
      return null
    case 1:
      return r.pick([0, -1, 1, 1.5, -0, 1e308, -1e308, 2 ** 53 + 1, 4294967296])
    case 2:
      return r.pick([true, false])
    case 3:
      return ''
    case 4:
      return r.pick(UNICODE)
    case 5:
      return r.pick(['CREATE', 'DELETE', 'PersistentVolumeClaim', 'hourly', 'true', 'null', '0', 'NaN', 'Infinity', 'undefined'])
    case 6:
      return []
    case 7:
      return {}
    case 8:
      return 'x'.repeat(r.logInt(1, 4096))
    case 9:
      return [randomValue(r, depth + 1), randomValue(r, depth + 1)]
    case 10:
      return { [r.pick(['a', 'kind', 'name', 'backup', 'constructor', 'prototype', 'toString', 'hasOwnProperty'])]: randomValue(r, depth + 1) }
    default:
      return { group: randomValue(r, depth + 1), version: 'v1', kind: randomValue(r, depth + 1) }
  }
}

type Json = any
type PathStep = string | number

/** Every path to a value in `doc` (objects and arrays included), breadth first. */
function allPaths(doc: Json): PathStep[][] {
  const out: PathStep[][] = []
  const queue: Array<{ v: Json; p: PathStep[] }> = [{ v: doc, p: [] }]
  while (queue.length) {
    const { v, p } = queue.shift()!
    if (p.length) out.push(p)
    if (Array.isArray(v)) v.forEach((x, i) => queue.push({ v: x, p: [...p, i] }))
    else if (v && typeof v === 'object') for (const k of Object.keys(v)) queue.push({ v: v[k], p: [...p, k] })
  }
  return out
}

function setAt(doc: Json, path: PathStep[], value: unknown): void {
  let cur = doc
  for (const step of path.slice(0, -1)) cur = cur[step]
  cur[path[path.length - 1]!] = value
}

function deleteAt(doc: Json, path: PathStep[]): void {
  let cur = doc
  for (const step of path.slice(0, -1)) cur = cur[step]
  const last = path[path.length - 1]!
  if (Array.isArray(cur)) cur.splice(Number(last), 1)
  else delete cur[last]
}

/** Paths that matter most: the request's own fields and the PVC's. */
const HOT_PATHS: PathStep[][] = [
  ['apiVersion'],
  ['kind'],
  ['request'],
  ['request', 'uid'],
  ['request', 'kind'],
  ['request', 'kind', 'kind'],
  ['request', 'kind', 'group'],
  ['request', 'resource'],
  ['request', 'name'],
  ['request', 'namespace'],
  ['request', 'operation'],
  ['request', 'userInfo'],
  ['request', 'userInfo', 'username'],
  ['request', 'object'],
  ['request', 'oldObject'],
  ['request', 'dryRun'],
  ['request', 'options'],
  ['request', 'subResource'],
  ['request', 'object', 'kind'],
  ['request', 'object', 'metadata'],
  ['request', 'object', 'metadata', 'name'],
  ['request', 'object', 'metadata', 'namespace'],
  ['request', 'object', 'metadata', 'generateName'],
  ['request', 'object', 'metadata', 'labels'],
  ['request', 'object', 'metadata', 'labels', 'backup'],
  ['request', 'object', 'metadata', 'annotations'],
  ['request', 'object', 'spec'],
  ['request', 'object', 'spec', 'accessModes'],
  ['request', 'object', 'spec', 'resources'],
  ['request', 'object', 'spec', 'resources', 'requests'],
  ['request', 'object', 'spec', 'resources', 'requests', 'storage'],
  ['request', 'object', 'spec', 'storageClassName'],
  ['request', 'object', 'spec', 'volumeMode'],
  ['request', 'object', 'spec', 'dataSourceRef'],
  ['request', 'object', 'spec', 'dataSource'],
  ['request', 'object', 'status'],
]

function ensurePath(doc: Json, path: PathStep[]): boolean {
  let cur = doc
  for (const step of path.slice(0, -1)) {
    if (!cur || typeof cur !== 'object') return false
    if (cur[step] === undefined || cur[step] === null) cur[step] = {}
    cur = cur[step]
  }
  return !!cur && typeof cur === 'object'
}

function somePath(r: Rng, doc: Json): PathStep[] | undefined {
  if (r.chance(0.6)) {
    const p = r.pick(HOT_PATHS)
    return ensurePath(doc, p) ? p : undefined
  }
  const paths = allPaths(doc)
  return paths.length ? r.pick(paths) : undefined
}

function nested(depth: number, leaf: string, r: Rng): string {
  const open = r.chance(0.5) ? '{"a":' : '['
  const close = open === '[' ? ']' : '}'
  return open.repeat(depth) + leaf + close.repeat(depth)
}

/** A PVC name the local store may know (a snapshot is seeded for `media/data-claim`). */
const NAMES = ['data-claim', 'fresh-claim', 'config', 'restored', 'x', 'a-b-c']

/** Sets the PVC name everywhere the apiserver would put it. */
function setName(doc: Json, name: unknown): void {
  if (doc?.request && typeof doc.request === 'object') {
    doc.request.name = name
    if (doc.request.object?.metadata && typeof doc.request.object.metadata === 'object') doc.request.object.metadata.name = name
    if (doc.request.oldObject?.metadata && typeof doc.request.oldObject.metadata === 'object') doc.request.oldObject.metadata.name = name
  }
}

function insertAfterRandomBrace(r: Rng, text: string, insert: string): string {
  const positions: number[] = []
  for (let i = 0; i < text.length && positions.length < 400; i++) if (text[i] === '{') positions.push(i)
  const at = positions.length ? r.pick(positions) : 0
  return text.slice(0, at + 1) + insert + text.slice(at + 1)
}

const WEIGHTS: Array<[Category, number]> = [
  ['valid', 6],
  ['truncated', 10],
  ['type-swap', 16],
  ['field-removed', 6],
  ['huge-string', 0.12],
  ['deep-nesting-top', 0.4],
  ['deep-nesting-inside', 0.6],
  // Fields the parser quotes back in its 4xx message (apiVersion, kind): once a bare HTTP 500.
  ['deep-nesting-echoed', 0.3],
  ['proto-key', 5],
  ['constructor-prototype', 3],
  ['harmless-proto-like-key', 3],
  ['non-pvc-kind', 5],
  ['operation', 6],
  ['unicode', 8],
  ['invalid-utf8', 5],
  ['content-type', 4],
  ['empty', 2],
  ['number-for-object', 5],
  ['wide', 0.06],
  ['uid', 4],
  ['duplicate-key', 2],
  ['bom', 1],
  ['garbage', 2],
  ['timeout-param', 3],
]
const TOTAL_WEIGHT = WEIGHTS.reduce((s, [, w]) => s + w, 0)

function category(r: Rng): Category {
  let x = r.next() * TOTAL_WEIGHT
  for (const [c, w] of WEIGHTS) {
    x -= w
    if (x < 0) return c
  }
  return 'valid'
}

/** The body over the body limit (8 MiB by default): one is enough to prove the 413. */
export function tooLargeCase(index: number, bytes = 9 * 1024 * 1024): FuzzCase {
  const base = JSON.parse(BASES[0]!.text)
  base.request.object.metadata.annotations.padding = 'p'.repeat(bytes)
  return { index, category: 'too-large', path: '/mutate', query: '?timeout=10s', body: JSON.stringify(base), contentType: 'application/json', expect: 413 }
}

/**
 * Case `index` of the stream seeded by `seed`. Each case has its own PRNG (seed, index), so any one
 * can be rebuilt alone.
 */
export function fuzzCase(seed: number, index: number): FuzzCase {
  const r = prng((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0)
  const base = r.pick(BASES)
  const doc: Json = JSON.parse(base.text)
  const cat = category(r)
  const path: FuzzCase['path'] = r.chance(0.5) ? '/mutate' : '/validate'
  const c: FuzzCase = { index, category: cat, path, query: '?timeout=10s', body: '', contentType: 'application/json' }
  // Vary the PVC so the store is asked about many keys (and a few that have a snapshot).
  if (r.chance(0.7)) setName(doc, r.pick(NAMES))
  if (r.chance(0.5) && doc.request) doc.request.uid = `fuzz-${seed}-${index}`

  switch (cat) {
    case 'valid':
      break
    case 'truncated': {
      const text = JSON.stringify(doc)
      c.body = text.slice(0, r.int(text.length)) // never the whole text
      c.expect = 400
      return c
    }
    case 'type-swap': {
      for (let n = 1 + r.int(3); n > 0; n--) {
        const p = somePath(r, doc)
        if (p) setAt(doc, p, randomValue(r))
      }
      break
    }
    case 'field-removed': {
      for (let n = 1 + r.int(3); n > 0; n--) {
        const p = somePath(r, doc)
        if (p) deleteAt(doc, p)
      }
      break
    }
    case 'huge-string': {
      const size = r.logInt(16 * 1024, 1024 * 1024)
      const target = r.pick<PathStep[]>([
        ['request', 'name'],
        ['request', 'object', 'metadata', 'name'],
        ['request', 'object', 'metadata', 'labels', 'backup'],
        ['request', 'object', 'metadata', 'annotations', 'smart-restore.io/skip-restore'],
        ['request', 'object', 'metadata', 'annotations', 'smart-restore.io/restore-from'],
        ['request', 'uid'],
        ['request', 'namespace'],
        ['request', 'userInfo', 'username'],
      ])
      if (ensurePath(doc, target)) setAt(doc, target, r.pick(['a', '😀', 'é', '-']).repeat(Math.ceil(size / 2)))
      break
    }
    case 'deep-nesting-top': {
      // The whole body, or the request, is a 10,000-level nest: nothing a webhook can answer.
      const depth = 10_000
      const leaf = '1'
      if (r.chance(0.5)) c.body = nested(depth, leaf, r)
      else {
        const text = JSON.stringify({ ...doc, request: '__NEST__' })
        c.body = text.replace('"__NEST__"', nested(depth, leaf, r))
      }
      c.expect = '4xx'
      return c
    }
    case 'deep-nesting-echoed': {
      const field = r.pick(['apiVersion', 'kind'])
      doc[field] = '__NEST__'
      c.body = JSON.stringify(doc).replace('"__NEST__"', nested(r.pick([5_000, 10_000, 100_000]), '1', r))
      c.expect = 422
      return c
    }
    case 'deep-nesting-inside': {
      const where = r.pick([
        ['request', 'object', 'spec', 'deep'],
        ['request', 'object', 'metadata', 'deep'],
        ['request', 'object', 'status'],
        ['request', 'options'],
        ['request', 'userInfo', 'extra'],
        ['request', 'oldObject'],
        ['request', 'object', 'spec', 'dataSourceRef'],
        ['request', 'object', 'metadata', 'labels'],
      ])
      if (!ensurePath(doc, where)) break
      setAt(doc, where, '__NEST__')
      c.body = JSON.stringify(doc).replace('"__NEST__"', nested(10_000, '"leaf"', r))
      return c
    }
    case 'proto-key': {
      const key = r.pick(PROTO_KEYS)
      const text = JSON.stringify(doc)
      c.body = insertAfterRandomBrace(r, text, `"${key}":{"polluted":"yes","isAdmin":true},`)
      c.expect = 400
      return c
    }
    case 'constructor-prototype': {
      const text = JSON.stringify(doc)
      const key = r.pick(['constructor', '\\u0063onstructor'])
      c.body = insertAfterRandomBrace(r, text, `"${key}":{"prototype":{"polluted":"yes"}},`)
      c.expect = 400
      return c
    }
    case 'harmless-proto-like-key': {
      // Keys that look dangerous but are plain data: must be read as data, never as the prototype.
      const key = r.pick(['prototype', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf'])
      const target = r.pick<PathStep[]>([
        ['request', 'object', 'metadata', 'labels'],
        ['request', 'object', 'metadata', 'annotations'],
        ['request', 'object', 'spec', 'resources', 'requests'],
        ['request', 'object', 'metadata'],
        ['request', 'object', 'spec'],
        ['request'],
        [],
      ])
      if (target.length === 0) doc[key] = r.chance(0.5) ? 'x' : { polluted: 'yes' }
      else if (ensurePath(doc, [...target, key])) setAt(doc, [...target, key], r.chance(0.7) ? r.pick(['hourly', 'x', 'constructor']) : { polluted: 'yes' })
      // The tier label itself named after a prototype member.
      if (r.chance(0.3) && doc.request?.object?.metadata?.labels) doc.request.object.metadata.labels.backup = r.pick(['constructor', 'toString', '__proto__', 'hasOwnProperty'])
      break
    }
    case 'non-pvc-kind': {
      const [group, version, kind, resource] = r.pick([
        ['', 'v1', 'Pod', 'pods'],
        ['', 'v1', 'Secret', 'secrets'],
        ['', 'v1', 'PersistentVolume', 'persistentvolumes'],
        ['apps', 'v1', 'Deployment', 'deployments'],
        ['volsync.backube', 'v1alpha1', 'ReplicationDestination', 'replicationdestinations'],
        ['evil.example.com', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims'],
        ['', 'v1', 'persistentvolumeclaim', 'persistentvolumeclaims'],
      ] as const)
      if (doc.request) {
        doc.request.kind = { group, version, kind }
        doc.request.resource = { group, version, resource }
        if (r.chance(0.5) && doc.request.object) doc.request.object.kind = kind
      }
      break
    }
    case 'operation': {
      if (doc.request) {
        doc.request.operation = r.pick(['CREATE', 'UPDATE', 'DELETE', 'CONNECT', 'create', 'Delete', '', 'PATCH', 'CREATE ', '\u0000CREATE'])
        if (doc.request.operation === 'DELETE' && r.chance(0.5)) {
          doc.request.oldObject = doc.request.object ?? doc.request.oldObject
          doc.request.object = null
        }
        if (doc.request.operation === 'UPDATE' && r.chance(0.5)) doc.request.oldObject = structuredClone(doc.request.object)
      }
      break
    }
    case 'unicode': {
      const u = () => r.pick(UNICODE) + (r.chance(0.5) ? r.pick(UNICODE) : '')
      const which = r.int(6)
      if (which === 0) setName(doc, u())
      else if (which === 1 && doc.request) {
        doc.request.namespace = u()
        if (doc.request.object?.metadata) doc.request.object.metadata.namespace = doc.request.namespace
      } else if (which === 2 && doc.request?.object?.metadata) doc.request.object.metadata.labels = { ...doc.request.object.metadata.labels, [u()]: u() }
      else if (which === 3 && doc.request?.object?.metadata) doc.request.object.metadata.annotations = { ...doc.request.object.metadata.annotations, 'smart-restore.io/restore-from': u(), [u()]: u() }
      else if (which === 4 && doc.request?.object?.metadata?.labels) doc.request.object.metadata.labels.backup = u()
      else if (doc.request) doc.request.uid = u()
      break
    }
    case 'invalid-utf8': {
      // Bytes that are not UTF-8, inside strings and outside them; sent as a Buffer.
      const text = JSON.stringify(doc)
      const bad = r.pick([[0xff], [0xfe, 0xff], [0xc3, 0x28], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xe2, 0x82]])
      const anchor = r.pick(['"data-claim', '"media', '"hourly', '"uid":"', '"CREATE', '{', ':'])
      const at = Math.max(0, text.indexOf(anchor)) + (anchor.startsWith('"') ? 1 + r.int(Math.max(1, anchor.length - 1)) : 0)
      c.body = Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from(bad), Buffer.from(text.slice(at))])
      return c
    }
    case 'content-type': {
      c.contentType = r.pick([null, 'text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json-patch+json', 'application/jsonx', 'json', '', 'application/json; charset=utf-8', 'APPLICATION/JSON', 'application/json;;;', 'application/yaml'])
      const ok = c.contentType !== null && /^application\/json\s*(;|$)/i.test(c.contentType)
      c.body = JSON.stringify(doc)
      if (!ok) c.expect = 415
      return c
    }
    case 'empty': {
      c.body = r.pick(['', ' ', '\n', '\r\n\t ', 'null', '{}', '[]', '0', '"string"', 'true', '[{}]', '{"apiVersion":"admission.k8s.io/v1"}'])
      c.expect = '4xx'
      return c
    }
    case 'number-for-object': {
      const target = r.pick<PathStep[]>([
        ['request'],
        ['request', 'object'],
        ['request', 'object', 'metadata'],
        ['request', 'object', 'spec'],
        ['request', 'object', 'metadata', 'labels'],
        ['request', 'object', 'metadata', 'annotations'],
        ['request', 'object', 'spec', 'resources'],
        ['request', 'object', 'spec', 'resources', 'requests'],
        ['request', 'kind'],
        ['request', 'resource'],
        ['request', 'userInfo'],
        ['request', 'oldObject'],
      ])
      if (ensurePath(doc, target)) setAt(doc, target, r.pick([0, 1, -1, 3.14, 1e308, 2 ** 64, -0]))
      break
    }
    case 'wide': {
      const n = r.logInt(1000, 30_000)
      const target = r.pick<PathStep[]>([
        ['request', 'object', 'metadata', 'labels'],
        ['request', 'object', 'metadata', 'annotations'],
        ['request', 'object', 'spec', 'accessModes'],
      ])
      if (!ensurePath(doc, target)) break
      if (target[target.length - 1] === 'accessModes') setAt(doc, target, Array.from({ length: n }, (_, i) => `Mode${i}`))
      else {
        const o: Record<string, string> = { ...(doc.request?.object?.metadata?.labels ?? {}) }
        for (let i = 0; i < n; i++) o[`k${i}`] = `v${i}`
        setAt(doc, target, o)
      }
      break
    }
    case 'uid': {
      if (doc.request) doc.request.uid = r.pick<unknown>(['', ' ', 'u'.repeat(256), 'u'.repeat(257), 42, null, true, ['a'], { a: 1 }, '😀', 'a\u0000b', '"', '\\'])
      break
    }
    case 'duplicate-key': {
      // JSON.parse keeps the last; a first value that is wrong must not win.
      const text = JSON.stringify(doc)
      c.body = '{"kind":"NotAReview","apiVersion":"v0",' + text.slice(1)
      return c
    }
    case 'bom': {
      c.body = '\uFEFF' + JSON.stringify(doc)
      return c
    }
    case 'garbage': {
      const n = r.logInt(1, 4096)
      const bytes = Buffer.alloc(n)
      for (let i = 0; i < n; i++) bytes[i] = r.int(256)
      c.body = r.chance(0.5) ? bytes : bytes.toString('latin1')
      c.expect = '4xx'
      return c
    }
    case 'timeout-param': {
      c.query = r.pick(['', '?timeout=', '?timeout=abc', '?timeout=0s', '?timeout=-5s', '?timeout=1ms', '?timeout=99999m', '?timeout=1e400s', '?timeout=10s&timeout=1s', '?timeout[]=1', '?timeout=%00', '?timeout=30s', '?timeout=1s'])
      break
    }
    default:
      break
  }
  c.body = JSON.stringify(doc)
  const req = doc && typeof doc === 'object' && !Array.isArray(doc) ? doc.request : undefined
  const isObj = req !== null && typeof req === 'object' && !Array.isArray(req)
  c.known = { uid: isObj && typeof req.uid === 'string' ? req.uid : undefined, operation: isObj ? req.operation : undefined }
  return c
}

// ---------------------------------------------------------------------------------------------
// The oracle

/** The uid the service must echo: what its own strict parse of these bytes would read, if any. */
export function requestUid(body: string | Buffer): string | undefined {
  let text = typeof body === 'string' ? body : body.toString('utf8')
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  try {
    const doc = JSON.parse(text)
    const uid = doc?.request?.uid
    return typeof uid === 'string' ? uid : undefined
  } catch {
    return undefined
  }
}

function requestDoc(body: string | Buffer): any {
  let text = typeof body === 'string' ? body : body.toString('utf8')
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

export interface ReplyLike {
  status: number
  contentType?: string
  text: string
}

/**
 * What is wrong with `reply` to `c` (empty: nothing). 200 must be a valid AdmissionReview answering
 * this request; 4xx must carry a JSON body with a non-empty message; anything else is wrong.
 */
export function checkReply(c: FuzzCase, reply: ReplyLike): string[] {
  const problems: string[] = []
  if (c.expect !== undefined) {
    const ok = c.expect === '4xx' ? reply.status >= 400 && reply.status < 500 : reply.status === c.expect
    if (!ok) problems.push(`expected ${c.expect}, got ${reply.status}`)
  }
  let json: any
  try {
    json = JSON.parse(reply.text)
  } catch {
    problems.push(`reply is not JSON: ${reply.text.slice(0, 200)}`)
    return problems
  }
  if (reply.status >= 400 && reply.status < 500) {
    if (typeof json?.message !== 'string' || json.message.trim() === '') problems.push(`${reply.status} without a message: ${reply.text.slice(0, 200)}`)
    return problems
  }
  if (reply.status !== 200) {
    problems.push(`status ${reply.status}: ${reply.text.slice(0, 300)}`)
    return problems
  }
  if (reply.contentType !== undefined && !/^application\/json/.test(reply.contentType)) problems.push(`content-type ${reply.contentType}`)
  if (json?.apiVersion !== 'admission.k8s.io/v1') problems.push(`apiVersion ${JSON.stringify(json?.apiVersion)}`)
  if (json?.kind !== 'AdmissionReview') problems.push(`kind ${JSON.stringify(json?.kind)}`)
  const res = json?.response
  if (!res || typeof res !== 'object') {
    problems.push('no response object')
    return problems
  }
  const uid = c.known ? c.known.uid : requestUid(c.body)
  if (typeof res.uid !== 'string') problems.push('response.uid is not a string')
  else if (uid !== undefined && res.uid !== uid) problems.push(`response.uid ${JSON.stringify(res.uid).slice(0, 80)} != request uid ${JSON.stringify(uid).slice(0, 80)}`)
  if (typeof res.allowed !== 'boolean') problems.push('response.allowed is not a boolean')
  if (res.allowed === false) {
    if (typeof res.status?.code !== 'number') problems.push('a denial without status.code')
    if (typeof res.status?.message !== 'string' || res.status.message === '') problems.push('a denial without status.message')
    if (res.patch !== undefined) problems.push('a denial with a patch')
  }
  if ((res.patch === undefined) !== (res.patchType === undefined)) problems.push('patch and patchType must come together')
  if (res.patch !== undefined) {
    if (res.patchType !== 'JSONPatch') problems.push(`patchType ${JSON.stringify(res.patchType)}`)
    const doc = requestDoc(c.body)
    if ((c.known ? c.known.operation : doc?.request?.operation) === 'DELETE') problems.push('a patch on DELETE')
    if (c.path === '/validate') problems.push('a patch from the validating webhook')
    let ops: unknown
    try {
      ops = JSON.parse(Buffer.from(String(res.patch), 'base64').toString('utf8'))
    } catch {
      problems.push('patch is not base64 JSON')
    }
    if (ops !== undefined) {
      if (!Array.isArray(ops)) problems.push('patch is not a JSON array')
      else {
        if (!ops.every((o) => o && typeof o.op === 'string' && typeof o.path === 'string')) problems.push('patch has an operation without op/path')
        // The patch must apply to the object it was computed for, or the apiserver rejects the PVC.
        const object = doc?.request?.object
        if (object && typeof object === 'object') {
          try {
            fastJsonPatch.applyPatch(object, ops as any, true, true)
          } catch (err) {
            problems.push(`the patch does not apply to request.object: ${(err as Error).message.split('\n')[0]}`)
          }
        }
      }
    }
  }
  if (res.warnings !== undefined && (!Array.isArray(res.warnings) || !res.warnings.every((w: unknown) => typeof w === 'string'))) problems.push('warnings is not a list of strings')
  return problems
}
