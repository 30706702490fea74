/**
 * deploy/base/secret-write-policy.yaml: the ValidatingAdmissionPolicy (and its binding) that lets
 * smart-restore's ServiceAccount write only its own repository Secrets.
 *
 *  - the structure: kinds, admissionregistration.k8s.io/v1, the binding names the policy and denies,
 *    failurePolicy Fail, what it matches (every Secret write verb rbac.yaml grants), the
 *    ServiceAccount's username as in rbac.yaml, the Argo CD wave of the service;
 *  - the CEL: type-checked against the fields it reads (@marcbachmann/cel-js, as the API server
 *    type-checks against the Secret and AdmissionRequest schemas), then EVALUATED against admission
 *    requests the way the API server runs a policy: match constraints, match conditions, variables,
 *    validations (false or an error → denied, with failurePolicy Fail), messageExpression;
 *  - the names and labels the code writes (src/engines/names.ts, src/engines/volsync.ts) pass it,
 *    for short and shortened PVC names; foreign Secrets, unlabelled ones, a label removed, the
 *    service's own namespace do not; other users are never evaluated;
 *  - deploy/ includes it by default, and deploy/components/without-secret-write-policy/ removes
 *    exactly its two objects (kubectl kustomize, when kubectl is installed).
 *
 * What this cannot prove: that the API server's CEL (cel-go, RE2) agrees with cel-js on these
 * expressions. They use only the CEL core (has, in, matches, ==, &&, ||, string +), which both
 * implement from the same specification, and a regular expression with nothing RE2 lacks (checked).
 */
import t from 'tap'
import { Environment, evaluate } from '@marcbachmann/cel-js'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { loadConfig } from '../../src/config/load.js'
import { defaultConfig } from '../../src/config/schema.js'
import { repositorySecretName } from '../../src/engines/names.js'
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, buildRepositorySecret } from '../../src/engines/volsync.js'

/* eslint-disable @typescript-eslint/no-explicit-any */
type Obj = any

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const DEPLOY = join(ROOT, 'deploy')
const BASE = join(DEPLOY, 'base')
const POLICY_FILE = 'secret-write-policy.yaml'
const COMPONENT = join(DEPLOY, 'components', 'without-secret-write-policy')

function loadDocs(file: string): Obj[] {
  const text = readFileSync(file, 'utf8')
  const out: Obj[] = []
  for (const version of ['1.2', '1.1'] as const) {
    const docs = parseAllDocuments(text, { version })
    const values = (Array.isArray(docs) ? docs : []).map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`)
      return d.toJS()
    })
    if (version === '1.2') out.push(...values.filter((v) => v != null))
    else if (JSON.stringify(values.filter((v) => v != null)) !== JSON.stringify(out)) throw new Error(`${file}: reads differently under YAML 1.1 (kubectl)`)
  }
  return out
}

const policyDocs = loadDocs(join(BASE, POLICY_FILE))
const rbac = loadDocs(join(BASE, 'rbac.yaml'))
const policy = policyDocs.find((o) => o.kind === 'ValidatingAdmissionPolicy')
const binding = policyDocs.find((o) => o.kind === 'ValidatingAdmissionPolicyBinding')
const sa = rbac.find((o) => o.kind === 'ServiceAccount')
const SA_USER = `system:serviceaccount:${sa.metadata.namespace}:${sa.metadata.name}`
const wave = (o: Obj) => o.metadata?.annotations?.['argocd.argoproj.io/sync-wave']

// ---------------------------------------------------------------------------------------------
// The API server's evaluation of a ValidatingAdmissionPolicy, for the features this policy uses.

/** The fields of an AdmissionRequest and a Secret that the expressions may read, with their CEL types. */
const SECRET_SCHEMA = {
  metadata: { name: 'string', namespace: 'string', generateName: 'string', labels: 'map<string, string>', annotations: 'map<string, string>' },
  data: 'map<string, bytes>',
  stringData: 'map<string, string>',
  type: 'string',
}
const REQUEST_SCHEMA = {
  operation: 'string',
  name: 'string',
  namespace: 'string',
  userInfo: { username: 'string', uid: 'string', groups: 'list<string>' },
  dryRun: 'bool',
}

/** The policy's variables with the types CEL infers for them, in order (each may use the ones before). */
function variableTypes(): Record<string, string> {
  const types: Record<string, string> = {}
  for (const v of policy.spec.variables ?? []) {
    const result = typedEnv(types).check(v.expression)
    if (!result.valid) throw new Error(`variable ${v.name}: ${result.error?.message}`)
    types[v.name] = String(result.type)
  }
  return types
}

function typedEnv(variables: Record<string, string>): Environment {
  return new Environment()
    .registerVariable({ name: 'request', schema: REQUEST_SCHEMA })
    .registerVariable({ name: 'object', schema: SECRET_SCHEMA })
    .registerVariable({ name: 'oldObject', schema: SECRET_SCHEMA })
    .registerVariable({ name: 'variables', schema: variables })
}

interface AdmissionRequest {
  operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT'
  resource: { group: string; version: string; resource: string }
  name: string
  namespace: string
  userInfo: { username: string; groups: string[] }
  object: Obj | null
  oldObject: Obj | null
}

type Outcome =
  | { result: 'not matched'; why: string }
  | { result: 'allowed' }
  | { result: 'denied'; messages: string[]; failed: number[] }

function admit(req: AdmissionRequest): Outcome {
  const spec = policy.spec
  const fits = (list: string[], v: string) => list.includes('*') || list.includes(v)
  const rule = spec.matchConstraints.resourceRules.find(
    (r: Obj) => fits(r.apiGroups, req.resource.group) && fits(r.apiVersions, req.resource.version) && fits(r.resources, req.resource.resource) && fits(r.operations, req.operation),
  )
  if (!rule) return { result: 'not matched', why: 'matchConstraints' }

  const { object, oldObject, ...request } = req
  const context: Record<string, unknown> = { request, object, oldObject }
  const denied = (messages: string[], failed: number[] = []): Outcome => ({ result: 'denied', messages, failed })

  // matchConditions: all true → evaluated; any false → not matched; an error → failurePolicy.
  for (const c of spec.matchConditions ?? []) {
    let value: unknown
    try {
      value = evaluate(c.expression, context)
    } catch (err) {
      if (spec.failurePolicy === 'Ignore') return { result: 'allowed' }
      return denied([`matchCondition ${c.name}: ${(err as Error).message}`])
    }
    if (value !== true) return { result: 'not matched', why: `matchCondition ${c.name}` }
  }

  // Variables. The API server computes them lazily; here eagerly, and an error fails the test: none
  // of this policy's variables may fail for any request (it would deny for a reason nobody meant).
  const variables: Record<string, unknown> = {}
  for (const v of spec.variables ?? []) variables[v.name] = evaluate(v.expression, { ...context, variables })
  context.variables = variables

  const messages: string[] = []
  const failed: number[] = []
  spec.validations.forEach((v: Obj, i: number) => {
    let value: unknown
    try {
      value = evaluate(v.expression, context)
    } catch (err) {
      // With failurePolicy Fail an expression error is a denial.
      messages.push(`validation ${i}: ${(err as Error).message}`)
      failed.push(i)
      return
    }
    if (typeof value !== 'boolean') throw new Error(`validation ${i} returned ${typeof value}, not bool`)
    if (value) return
    let message = v.message
    if (v.messageExpression) {
      try {
        const m = evaluate(v.messageExpression, context)
        if (typeof m === 'string' && m.trim() !== '') message = m
      } catch {
        // The API server falls back to `message` when messageExpression fails.
      }
    }
    messages.push(message ?? `failed expression: ${v.expression}`)
    failed.push(i)
  })
  if (failed.length === 0) return { result: 'allowed' }
  return spec.failurePolicy === 'Ignore' && messages.every((m) => m.startsWith('validation ')) ? { result: 'allowed' } : denied(messages, failed)
}

// ---------------------------------------------------------------------------------------------
// Representative Secrets and requests

const SECRETS = { group: '', version: 'v1', resource: 'secrets' }

/** The repository Secret smart-restore writes for a PVC, as src/engines/volsync.ts builds it. */
function ownSecret(namespace: string, pvc: string, restoreFromKey?: string): Obj {
  return buildRepositorySecret({
    config: defaultConfig,
    namespace,
    pvcName: pvc,
    name: repositorySecretName(pvc, restoreFromKey),
    resticRepository: `s3:http://minio.minio.svc:9000/volsync-backups/${restoreFromKey ?? `${namespace}/${pvc}`}`,
    sourceData: { RESTIC_PASSWORD: 'p', AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 's' },
  })
}

function foreignSecret(namespace: string, name: string, labels?: Record<string, string>): Obj {
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace, ...(labels ? { labels } : {}) }, type: 'Opaque', data: { password: 'c2VjcmV0' } }
}

const withLabels = (s: Obj, labels: Record<string, string> | undefined): Obj => {
  const copy = structuredClone(s)
  if (labels === undefined) delete copy.metadata.labels
  else copy.metadata.labels = labels
  return copy
}

function request(operation: AdmissionRequest['operation'], args: { object?: Obj; oldObject?: Obj; username?: string; resource?: AdmissionRequest['resource']; name?: string }): AdmissionRequest {
  const ref = args.object ?? args.oldObject
  return {
    operation,
    resource: args.resource ?? SECRETS,
    name: args.name ?? ref.metadata.name,
    namespace: ref.metadata.namespace,
    userInfo: { username: args.username ?? SA_USER, groups: ['system:serviceaccounts', `system:serviceaccounts:${sa.metadata.namespace}`, 'system:authenticated'] },
    object: args.object ?? null,
    oldObject: args.oldObject ?? null,
  }
}
const create = (object: Obj, extra: Partial<Parameters<typeof request>[1]> = {}) => request('CREATE', { object, ...extra })
const update = (oldObject: Obj, object: Obj, extra: Partial<Parameters<typeof request>[1]> = {}) => request('UPDATE', { oldObject, object, ...extra })
const del = (oldObject: Obj, extra: Partial<Parameters<typeof request>[1]> = {}) => request('DELETE', { oldObject, ...extra })

const mine = ownSecret('media', 'data-claim')

// ---------------------------------------------------------------------------------------------

t.test('two objects: the policy and its binding, admissionregistration.k8s.io/v1, listed in deploy/base', async (t) => {
  t.strictSame(policyDocs.map((o) => `${o.apiVersion} ${o.kind}`), ['admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy', 'admissionregistration.k8s.io/v1 ValidatingAdmissionPolicyBinding'])
  t.equal(binding.spec.policyName, policy.metadata.name, 'the binding names the policy')
  t.strictSame(binding.spec.validationActions, ['Deny'], 'a failed validation denies the write')
  t.notOk(binding.spec.paramRef, 'no parameters')
  t.notOk(policy.spec.paramKind, 'no parameter kind')
  t.notOk(binding.spec.matchResources, 'the binding narrows nothing: the policy\'s own match applies cluster-wide')
  t.equal(policy.spec.failurePolicy, 'Fail', 'an expression that cannot be evaluated refuses the write')
  for (const o of policyDocs) {
    t.notOk(o.metadata.namespace, `${o.kind}: cluster-scoped`)
    t.strictSame(o.metadata.labels, { 'app.kubernetes.io/name': 'smart-restore', 'app.kubernetes.io/part-of': 'smart-restore' }, `${o.kind}: labelled like the rest of deploy/base`)
    t.equal(wave(o), wave(sa), `${o.kind}: Argo CD wave ${wave(o)}, with the service and its RBAC`)
  }
  t.ok(policy.spec.validations.every((v: Obj) => v.reason === 'Forbidden'), 'refusals are 403 Forbidden (smart-restore reports them as a permission problem, not as a retryable error)')
  t.ok(policy.spec.validations.every((v: Obj) => v.message && v.messageExpression), 'every validation says why, with a fallback message')

  const base = loadDocs(join(BASE, 'kustomization.yaml'))[0]
  t.ok(base.resources.includes(POLICY_FILE), `deploy/base/kustomization.yaml lists ${POLICY_FILE}`)
  t.ok(base.resources.indexOf(POLICY_FILE) > base.resources.indexOf('rbac.yaml'), 'next to the RBAC it fences')
  for (const dir of [DEPLOY, BASE, join(DEPLOY, 'cert-manager')]) {
    const components: string[] = loadDocs(join(dir, 'kustomization.yaml'))[0].components ?? []
    t.notOk(components.some((c) => resolve(dir, c) === COMPONENT), `${relative(ROOT, dir)}: the policy is not left out by default`)
  }
})

t.test('it matches every Secret write RBAC grants, by smart-restore\'s ServiceAccount only', async (t) => {
  const rules = policy.spec.matchConstraints.resourceRules
  t.strictSame(rules, [{ apiGroups: [''], apiVersions: ['v1'], resources: ['secrets'], operations: ['CREATE', 'UPDATE', 'DELETE'] }], 'core/v1 Secrets: CREATE, UPDATE (a PATCH is an UPDATE), DELETE')
  t.notOk(policy.spec.matchConstraints.namespaceSelector?.matchExpressions?.length || policy.spec.matchConstraints.objectSelector?.matchExpressions?.length, 'in every namespace, whatever the labels (a selector on the label would let an unlabelled Secret through)')

  // Every write verb on Secrets that rbac.yaml grants reaches admission as one of the operations.
  const OPERATION: Record<string, string> = { create: 'CREATE', update: 'UPDATE', patch: 'UPDATE', delete: 'DELETE', deletecollection: 'DELETE' }
  const granted = rbac
    .filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role')
    .flatMap((o) => o.rules)
    .filter((r: Obj) => r.apiGroups.includes('') && (r.resources.includes('secrets') || r.resources.includes('*')))
    .flatMap((r: Obj) => r.verbs as string[])
  t.ok(granted.includes('create') && granted.includes('patch'), `rbac.yaml grants ${[...new Set(granted)].join(', ')} on Secrets`)
  for (const verb of granted) {
    if (verb in OPERATION) t.ok(rules[0].operations.includes(OPERATION[verb]), `${verb} (${OPERATION[verb]}) is fenced`)
    else t.ok(['get', 'list', 'watch'].includes(verb), `${verb} is a read, which admission never sees`)
  }

  t.strictSame(policy.spec.matchConditions.map((c: Obj) => c.expression), [`request.userInfo.username == '${SA_USER}'`], `one match condition: the ServiceAccount of rbac.yaml (${SA_USER})`)
  const bound = rbac.filter((o) => o.kind === 'ClusterRoleBinding').flatMap((b) => b.subjects)
  t.ok(bound.some((s: Obj) => s.kind === 'ServiceAccount' && `system:serviceaccount:${s.namespace}:${s.name}` === SA_USER), 'the identity the ClusterRole with the Secret writes is bound to')
})

t.test('the CEL type-checks, and each expression yields what the API server expects', async (t) => {
  const types = variableTypes()
  t.strictSame(types, { labelledAfter: 'bool', labelledBefore: 'bool', what: 'string' }, 'the variables')
  const env = typedEnv(types)
  const expect = (expr: string, type: string, what: string) => {
    const r = env.check(expr)
    t.ok(r.valid, `${what} type-checks${r.valid ? '' : `: ${r.error?.message}`}`)
    t.equal(String(r.type), type, `${what}: ${type}`)
  }
  for (const c of policy.spec.matchConditions) expect(c.expression, 'bool', `matchCondition ${c.name}`)
  policy.spec.validations.forEach((v: Obj, i: number) => {
    expect(v.expression, 'bool', `validation ${i}`)
    expect(v.messageExpression, 'string', `validation ${i} messageExpression`)
  })
  t.notOk(env.check('request.nmae').valid, 'a misspelt field is caught (the check is not vacuous)')

  // The name pattern: RE2 (the API server's regex engine) has no lookaround and no backreferences.
  const patterns = policy.spec.validations.flatMap((v: Obj) => [...String(v.expression).matchAll(/\.matches\('([^']*)'\)/g)].map((m) => m[1]!))
  t.equal(patterns.length, 1, 'one regular expression')
  for (const p of patterns) t.notMatch(p, /\(\?[=!<]|\\[1-9]/, `${p}: nothing RE2 lacks`)
})

t.test('smart-restore\'s own Secrets: create, update, no-op apply, delete are allowed', async (t) => {
  const pvcs = [
    'data-claim',
    'a',
    'pg.data-0',
    'x'.repeat(63),
    'y'.repeat(64), // no smart-restore.io/pvc label (values stop at 63): the managed-by label is enough
    `db-${'z'.repeat(240)}`, // <pvc>-restic is 250 characters: kept
    'l'.repeat(247), // 254 characters: shortened to <prefix>-<hash>-restic
    `${'m'.repeat(236)}-${'n'.repeat(11)}`, // shortened where the kept prefix would end in "-" (dropped)
    `${'m'.repeat(236)}.${'n'.repeat(11)}`, // ... or in "."
    'q'.repeat(253), // the longest PVC name
  ]
  for (const pvc of pvcs) {
    for (const from of [undefined, 'other-ns/other-pvc']) {
      const s = ownSecret('media', pvc, from)
      const label = `${s.metadata.name.length > 40 ? `${s.metadata.name.slice(0, 20)}…${s.metadata.name.slice(-20)} (${s.metadata.name.length})` : s.metadata.name}`
      t.strictSame(admit(create(s)), { result: 'allowed' }, `CREATE ${label}`)
      const changed = structuredClone(s)
      changed.stringData.RESTIC_PASSWORD = 'rotated'
      t.strictSame(admit(update(s, changed)), { result: 'allowed' }, `UPDATE ${label}`)
      t.strictSame(admit(del(s)), { result: 'allowed' }, `DELETE ${label}`)
    }
  }
  t.ok(repositorySecretName('l'.repeat(247)).length <= 253 && !repositorySecretName('l'.repeat(247)).startsWith('l'.repeat(247)), 'the long names above are the shortened ones')
  t.strictSame(admit(update(mine, structuredClone(mine))), { result: 'allowed' }, 'a server-side apply that changes nothing: UPDATE with object equal to oldObject')
  const owned = structuredClone(mine)
  owned.metadata.ownerReferences = [{ apiVersion: 'volsync.backube/v1alpha1', kind: 'ReplicationDestination', name: 'data-claim-restore', uid: 'u' }]
  t.strictSame(admit(update(mine, owned)), { result: 'allowed' }, 'an ownerReference added (the reconciler\'s apply)')
  t.strictSame(admit(create(withLabels(mine, { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }))), { result: 'allowed' }, 'the managed-by label alone is enough')
})

t.test('foreign Secrets, unlabelled or renamed ones: denied, saying why', async (t) => {
  const denied = (o: Outcome, pattern: RegExp, what: string) => {
    t.equal(o.result, 'denied', what)
    if (o.result === 'denied') {
      t.ok(o.messages.some((m) => pattern.test(m)), `${what}: ${o.messages.join(' | ')}`)
      t.notOk(o.messages.some((m) => m.startsWith('validation ') || m.startsWith('matchCondition ')), `${what}: by a validation that evaluated, not by an expression error`)
    }
  }
  const NAME = /named <pvc>-restic or <pvc>-restic-from-<hash>/
  const LABEL_AFTER = /only Secrets labelled app\.kubernetes\.io\/managed-by=smart-restore/
  const LABEL_BEFORE = /existing Secret is not labelled app\.kubernetes\.io\/managed-by=smart-restore/
  const OWN_NS = /never writes a Secret in its own namespace/

  denied(admit(create(withLabels(mine, undefined))), LABEL_AFTER, 'CREATE of <pvc>-restic without labels')
  denied(admit(create(withLabels(mine, { [MANAGED_BY_LABEL]: 'Helm' }))), LABEL_AFTER, 'CREATE of <pvc>-restic managed by someone else')
  denied(admit(create(withLabels(mine, { 'smart-restore.io/pvc': 'data-claim' }))), LABEL_AFTER, 'CREATE with the pvc label but not managed-by')
  denied(admit(create(foreignSecret('media', 'db-credentials', { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }))), NAME, 'CREATE of a labelled db-credentials')
  const msg = admit(create(foreignSecret('media', 'db-credentials', { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE })))
  t.match(msg.result === 'denied' ? msg.messages[0] : '', /^CREATE of Secret media\/db-credentials refused: /, 'the message names the operation and the Secret')

  for (const name of ['restic', 'data-restic-old', 'data-resticx', 'data.restic', 'data-restic-from-123', 'data-restic-from-ABCDEF12', 'data-restic-from-0123456789', 'data-restic-from-', 'smart-restore-tls', 'kube-root-ca.crt']) {
    denied(admit(create(foreignSecret('media', name, { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }))), NAME, `CREATE of a labelled ${name}`)
  }
  denied(admit(create({ ...foreignSecret('media', '', { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }), metadata: { generateName: 'x-restic', namespace: 'media', labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } } }, { name: '' })), NAME, 'CREATE with generateName (no name yet)')

  // Someone else's Secret under smart-restore's name: a patch that adds the label does not take it over.
  const theirs = foreignSecret('media', mine.metadata.name)
  denied(admit(update(theirs, withLabels(theirs, { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }))), LABEL_BEFORE, 'UPDATE of an existing unlabelled <pvc>-restic, adding the label')
  denied(admit(update(theirs, structuredClone(mine))), LABEL_BEFORE, 'UPDATE replacing an unlabelled <pvc>-restic with smart-restore\'s content')
  denied(admit(update(withLabels(theirs, { [MANAGED_BY_LABEL]: 'argocd' }), structuredClone(mine))), LABEL_BEFORE, 'UPDATE of a <pvc>-restic managed by someone else')
  denied(admit(update(withLabels(theirs, {}), structuredClone(mine))), LABEL_BEFORE, 'UPDATE of a <pvc>-restic with an empty label map')
  denied(admit(update(mine, withLabels(mine, undefined))), LABEL_AFTER, 'UPDATE that removes the labels')
  denied(admit(update(mine, withLabels(mine, { 'smart-restore.io/pvc': 'data-claim' }))), LABEL_AFTER, 'UPDATE that removes the managed-by label')
  denied(admit(update(mine, withLabels(mine, { [MANAGED_BY_LABEL]: 'someone-else' }))), LABEL_AFTER, 'UPDATE that changes the managed-by label')
  const other = foreignSecret('media', 'db-credentials')
  denied(admit(update(other, withLabels(other, { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }))), NAME, 'UPDATE of db-credentials')

  denied(admit(del(theirs)), LABEL_BEFORE, 'DELETE of an unlabelled <pvc>-restic')
  denied(admit(del(other)), NAME, 'DELETE of db-credentials')
  denied(admit(del(foreignSecret('media', 'db-credentials', { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }))), NAME, 'DELETE of a labelled db-credentials')
})

t.test('the service\'s own namespace: its Secrets are read, never written, whatever their labels', async (t) => {
  const ns = sa.metadata.namespace
  const config = loadConfig({ file: join(BASE, 'config.yaml'), env: {} })
  t.equal(config.restore.sourceSecret.namespace, ns, 'the source Secret is in the ServiceAccount\'s namespace')
  t.ok(config.excludedNamespaces.includes(ns), 'which smart-restore never restores into or backs up (excludedNamespaces): it writes no Secret there')
  const role = rbac.find((o) => o.kind === 'Role' && o.rules.some((r: Obj) => r.resources.includes('secrets')))
  t.strictSame(role.rules.flatMap((r: Obj) => r.verbs), ['get'], 'the source Secret is only read (a GET, which admission never sees)')
  t.ok(policy.spec.validations.some((v: Obj) => v.expression === `request.namespace != '${ns}'`), `a validation names namespace ${ns}`)

  const source = config.restore.sourceSecret.name
  t.match(source, /-restic$/, `${source} even has a name of the pattern: only the namespace and the label keep it out`)
  for (const labels of [undefined, { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }]) {
    const s = foreignSecret(ns, source, labels)
    const what = labels ? 'labelled managed-by=smart-restore' : 'as kubectl create secret makes it'
    for (const [op, o] of [['CREATE', admit(create(s))], ['UPDATE', admit(update(s, structuredClone(s)))], ['DELETE', admit(del(s))]] as const) {
      t.equal(o.result, 'denied', `${op} of ${ns}/${source}, ${what}`)
      if (o.result === 'denied') t.match(o.messages[0], new RegExp(`^${op} of Secret ${ns}/${source} refused: smart-restore never writes a Secret in its own namespace`))
    }
  }
  for (const name of ['smart-restore-tls', 'smart-restore-s3']) t.equal(admit(create(foreignSecret(ns, name))).result, 'denied', `${ns}/${name}`)
  t.equal(admit(create(ownSecret(ns, 'data-claim'))).result, 'denied', 'even a repository Secret as smart-restore builds it')
})

t.test('anyone else, and anything but a Secret: never evaluated', async (t) => {
  const theirs = foreignSecret('media', mine.metadata.name)
  const others = [
    'kubernetes-admin',
    'system:serviceaccount:kube-system:generic-garbage-collector', // removes the Secrets through their ownerReferences
    `system:serviceaccount:${sa.metadata.namespace}:default`,
    `system:serviceaccount:other:${sa.metadata.name}`,
    `${SA_USER}-x`,
    'system:serviceaccount:smart-restore:smart-restore ',
  ]
  for (const username of others) {
    for (const [op, req] of [
      ['CREATE db-credentials unlabelled', create(foreignSecret('media', 'db-credentials'), { username })],
      ['UPDATE of a foreign <pvc>-restic', update(theirs, withLabels(theirs, { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE }), { username })],
      ['DELETE of the source Secret', del(foreignSecret(sa.metadata.namespace, 'smart-restore-restic'), { username })],
    ] as const) {
      t.strictSame(admit(req), { result: 'not matched', why: 'matchCondition smart-restore-service-account' }, `${username}: ${op}`)
    }
  }
  const cm = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'db-credentials', namespace: 'media' } }
  t.strictSame(admit(create(cm, { resource: { group: '', version: 'v1', resource: 'configmaps' } })), { result: 'not matched', why: 'matchConstraints' }, 'smart-restore writing a ConfigMap')
  t.strictSame(admit(create(mine, { resource: { group: 'example.com', version: 'v1', resource: 'secrets' } })), { result: 'not matched', why: 'matchConstraints' }, 'a `secrets` resource of another group')
})

t.test('deploy/components/without-secret-write-policy: deletes exactly these two objects', async (t) => {
  const component = loadDocs(join(COMPONENT, 'kustomization.yaml'))[0]
  t.equal(component.kind, 'Component')
  t.equal(component.apiVersion, 'kustomize.config.k8s.io/v1alpha1')
  t.notOk(component.resources, 'adds nothing')
  const deletes = component.patches.map((p: Obj) => loadDocsFromText(String(p.patch))[0])
  t.strictSame(
    deletes.map((d: Obj) => ({ $patch: d.$patch, apiVersion: d.apiVersion, kind: d.kind, name: d.metadata.name })).sort((a: Obj, b: Obj) => a.kind.localeCompare(b.kind)),
    policyDocs.map((o) => ({ $patch: 'delete', apiVersion: o.apiVersion, kind: o.kind, name: o.metadata.name })).sort((a: Obj, b: Obj) => a.kind.localeCompare(b.kind)),
    'a `$patch: delete` for the policy and one for the binding, nothing else',
  )
})

function loadDocsFromText(text: string): Obj[] {
  const docs = parseAllDocuments(text)
  return (Array.isArray(docs) ? docs : []).map((d) => d.toJS()).filter((v) => v != null)
}

/** Why kubectl's kustomize cannot run here, or undefined when it can (as in manifests.test.ts). */
function kubectlMissing(kubectl: string): string | undefined {
  const probe = spawnSync(kubectl, ['version', '--client'], { encoding: 'utf8' })
  if (probe.error || probe.status !== 0) return `${kubectl} not found: the component and the builds were checked statically only. Install kubectl >= 1.21 to build them with the real kustomize`
  const kustomize = /Kustomize Version: v(\d+)/.exec(probe.stdout)
  if (!kustomize || Number(kustomize[1]) < 4) return `${kubectl} embeds kustomize ${kustomize ? `v${kustomize[1]}` : '(version unknown)'}, older than v4 (kubectl 1.21): checked statically only`
  return undefined
}

const KUBECTL = process.env.KUBECTL || 'kubectl'
t.test('kubectl kustomize: deploy/ and deploy/cert-manager/ include the policy; with the component, only it is gone (skipped without kubectl)', { skip: kubectlMissing(KUBECTL) ?? false }, async (t) => {
  const build = (dir: string): Obj[] => {
    const run = spawnSync(KUBECTL, ['kustomize', dir], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 })
    t.equal(run.status, 0, `kubectl kustomize ${relative(ROOT, dir) || dir}: ${run.stderr.trim()}`)
    return run.status === 0 ? loadDocsFromText(run.stdout) : []
  }
  const key = (o: Obj) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`
  const tmp = mkdtempSync(join(tmpdir(), 'sr-secret-policy-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  for (const dir of [DEPLOY, join(DEPLOY, 'cert-manager')]) {
    const full = build(dir)
    for (const o of policyDocs) t.strictSame(full.find((x) => key(x) === key(o)), o, `${relative(ROOT, dir)}: ${o.kind} as in ${POLICY_FILE}`)
    // An overlay of `dir` with the component, as a user would add it (kustomize wants relative paths).
    const overlay = join(tmp, relative(DEPLOY, dir) || 'deploy')
    mkdirSync(overlay, { recursive: true })
    writeFileSync(
      join(overlay, 'kustomization.yaml'),
      ['apiVersion: kustomize.config.k8s.io/v1beta1', 'kind: Kustomization', 'resources:', `  - ${relative(overlay, dir)}`, 'components:', `  - ${relative(overlay, COMPONENT)}`, ''].join('\n'),
    )
    const without = build(overlay)
    const gone = policyDocs.map(key)
    t.strictSame(without.map(key).sort(), full.map(key).filter((k) => !gone.includes(k)).sort(), `${relative(ROOT, dir)} + the component: everything but the policy and its binding`)
    t.strictSame(without, full.filter((o) => !gone.includes(key(o))), 'the rest unchanged')
  }
})
