/** Strict AdmissionReview parsing: real bodies parse; anything else gets a 4xx with a reason. */
import t from 'tap'
import { readdirSync } from 'node:fs'
import { AdmissionParseError, isJsonContentType, MAX_NESTING_DEPTH, nestingLimitExceededAt, parseAdmissionReview } from '../../src/admission/parse.js'
import { allow, clampWarning, deny } from '../../src/admission/respond.js'
import { APISERVER_V132, fixtureBody, kubewardenBody } from '../helpers/fixtures.js'

t.test('every real apiserver body parses', async (t) => {
  const files = readdirSync(APISERVER_V132).filter((f) => f.endsWith('.json'))
  t.ok(files.length >= 10, 'the v1.32 captures are there')
  for (const f of files) {
    const raw = JSON.parse(fixtureBody(f))
    const r = parseAdmissionReview(fixtureBody(f))
    t.equal(r.uid, raw.request.uid, `${f}: uid`)
    t.equal(r.operation, raw.request.operation, `${f}: operation`)
    t.equal(r.dryRun, raw.request.dryRun, `${f}: dryRun`)
    if (r.operation === 'DELETE') t.equal(r.object, null, `${f}: DELETE has no object`)
  }
  const kw = parseAdmissionReview(kubewardenBody())
  t.equal(kw.uid, '4bc4ec12-b2c9-42db-a1b2-321f8c2fc8e1')
  t.equal(kw.dryRun, false)
})

t.test('malformed bodies: status and reason', async (t) => {
  const good = JSON.parse(fixtureBody('create.mutating.json'))
  const variant = (f: (d: any) => void) => {
    const d = structuredClone(good)
    f(d)
    return JSON.stringify(d)
  }
  const cases: Array<[string, string | undefined, number, RegExp]> = [
    ['undefined body', undefined, 400, /empty body/],
    ['empty body', '', 400, /empty body/],
    ['whitespace', '  \n', 400, /empty body/],
    ['not JSON', '{"apiVersion":', 400, /not valid JSON/],
    ['a JSON array', '[]', 400, /JSON object/],
    ['a JSON string', '"AdmissionReview"', 400, /JSON object/],
    ['v1beta1', variant((d) => (d.apiVersion = 'admission.k8s.io/v1beta1')), 422, /apiVersion must be admission.k8s.io\/v1, got "admission.k8s.io\/v1beta1"/],
    ['no apiVersion', variant((d) => delete d.apiVersion), 422, /apiVersion must be/],
    ['wrong kind', variant((d) => (d.kind = 'Pod')), 422, /kind must be AdmissionReview/],
    ['no request', variant((d) => delete d.request), 422, /request is missing/],
    ['request not an object', variant((d) => (d.request = 'x')), 422, /request is missing/],
    ['no uid', variant((d) => delete d.request.uid), 422, /request.uid/],
    ['uid a number', variant((d) => (d.request.uid = 5)), 422, /request.uid/],
    ['bad operation', variant((d) => (d.request.operation = 'PATCH')), 422, /request.operation must be one of/],
    ['bad kind', variant((d) => (d.request.kind = 'PersistentVolumeClaim')), 422, /request.kind must be an object/],
    ['bad resource', variant((d) => delete d.request.resource), 422, /request.resource/],
    ['dryRun a string', variant((d) => (d.request.dryRun = 'true')), 422, /dryRun must be a boolean/],
    ['object an array', variant((d) => (d.request.object = [])), 422, /request.object must be an object or null/],
    ['name a number', variant((d) => (d.request.name = 1)), 422, /request.name must be a string/],
    ['__proto__ key', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"__proto__":{"allowed":true}}}', 400, /not valid JSON/],
    ['constructor.prototype', '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"constructor":{"prototype":{"x":1}}}}', 400, /not valid JSON/],
  ]
  for (const [name, body, status, reason] of cases) {
    try {
      parseAdmissionReview(body)
      t.fail(`${name}: expected an error`)
    } catch (err) {
      t.type(err, AdmissionParseError, name)
      t.equal((err as AdmissionParseError).statusCode, status, `${name}: ${status}`)
      t.match((err as Error).message, reason, `${name}: reason`)
    }
  }
  try {
    parseAdmissionReview(variant((d) => (d.request.operation = 'PATCH')))
  } catch (err) {
    t.equal((err as AdmissionParseError).uid, good.request.uid, 'the uid is kept when it could be read')
  }
  t.equal(({} as any).allowed, undefined, 'no prototype was polluted')
})

t.test('nesting depth: refused before parsing, counted outside strings only', async (t) => {
  const good = JSON.parse(fixtureBody('create.mutating.json'))
  // The review itself is 3 levels down to the object, +1 for metadata: `extra` nests from level 5.
  const withDeepField = (levels: number, open = '[', close = ']') => {
    const d = structuredClone(good)
    d.request.object.metadata.extra = '__DEEP__'
    return JSON.stringify(d).replace('"__DEEP__"', `${open.repeat(levels)}${close.repeat(levels)}`)
  }
  const depthOf = (text: string) => {
    for (let limit = 1; limit < 20_000; limit++) if (nestingLimitExceededAt(text, limit) < 0) return limit
    return Infinity
  }
  for (const file of readdirSync(APISERVER_V132).filter((f) => f.endsWith('.json'))) {
    const depth = depthOf(fixtureBody(file))
    t.ok(depth <= 16, `the real ${file} nests ${depth} levels (managedFields are the deepest part), far below ${MAX_NESTING_DEPTH}`)
  }
  t.equal(depthOf(withDeepField(20)), 24, 'a field 20 levels deep under metadata (level 4) reaches 24')
  const atLimit = withDeepField(MAX_NESTING_DEPTH - 4)
  t.equal(depthOf(atLimit), MAX_NESTING_DEPTH, 'exactly the limit')
  t.doesNotThrow(() => parseAdmissionReview(atLimit), `${MAX_NESTING_DEPTH} levels parse`)
  for (const [name, body] of [
    ['one level too deep (arrays)', withDeepField(MAX_NESTING_DEPTH - 3)],
    ['objects', withDeepField(MAX_NESTING_DEPTH, '{"a":', '}').replace(/\{"a":\}/, '{}')],
    ['10,000 levels', withDeepField(10_000)],
    ['unbalanced: 1,000,000 open brackets', '{"a":' + '['.repeat(1_000_000)],
  ] as const) {
    try {
      parseAdmissionReview(body)
      t.fail(`${name}: expected an error`)
    } catch (err) {
      t.type(err, AdmissionParseError, name)
      t.equal((err as AdmissionParseError).statusCode, 422, `${name}: 422`)
      t.match((err as Error).message, new RegExp(`body nests deeper than ${MAX_NESTING_DEPTH} levels \\(at byte \\d+\\)`), `${name}: says the limit and where`)
    }
  }
  // Brackets inside strings (escaped quotes included) are text, not structure.
  const d = structuredClone(good)
  d.request.object.metadata.annotations = { note: '['.repeat(500) + '\\"' + '{'.repeat(500), 'q"[[': ']]]' }
  t.doesNotThrow(() => parseAdmissionReview(JSON.stringify(d)), 'brackets in strings do not count')
  t.equal(nestingLimitExceededAt('["\\\\", [[[]]]]', 3), 9, 'an escaped backslash ends before the closing quote')
})

t.test('content types', async (t) => {
  t.ok(isJsonContentType('application/json'))
  t.ok(isJsonContentType('application/json; charset=utf-8'))
  t.ok(isJsonContentType('Application/JSON'))
  t.notOk(isJsonContentType('text/plain'))
  t.notOk(isJsonContentType('application/jsonp'))
  t.notOk(isJsonContentType(undefined))
})

t.test('responses', async (t) => {
  const a = allow('u1', { patch: [{ op: 'add', path: '/x', value: 1 }], warnings: ['w'] })
  t.same(a, { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u1', allowed: true, warnings: ['w'], patch: Buffer.from('[{"op":"add","path":"/x","value":1}]').toString('base64'), patchType: 'JSONPatch' } })
  t.same(allow('u2'), { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: 'u2', allowed: true } }, 'no empty patch, warnings or annotations')
  t.same(allow('u3', { patch: [] }).response.patch, undefined, 'an empty patch is omitted')
  t.same(deny('u4', 'no', { code: 503, reason: 'ServiceUnavailable' }).response, { uid: 'u4', allowed: false, status: { code: 503, message: 'no', reason: 'ServiceUnavailable' } })
  const long = clampWarning('x'.repeat(500))
  t.ok(long.length <= 120, 'warnings stay under 120 characters')
  t.equal(clampWarning('a\nb'), 'a b', 'one line')
})
