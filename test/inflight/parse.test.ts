/** User rules from the configuration: validation naming the field, and merging with the built-ins. */
import t from 'tap'
import { mergeRules, parseRules } from '../../src/inflight/match.js'
import { BUILTIN_RULES } from '../../src/inflight/rules.js'

const good = () => ({
  id: 'my-backup-run',
  system: 'MyBackup',
  resource: { group: 'backup.example.com', version: 'v1beta1', kind: 'BackupRun', plural: 'backupruns' },
  labelSelector: 'app.kubernetes.io/managed-by=my-backup,!skip',
  link: { by: 'anyOf', of: [{ by: 'field', path: 'spec.pvc.name', namespacePath: 'spec.pvc.namespace' }, { by: 'label', key: 'example.com/pvc-uid', value: 'uid' }] },
  inFlight: { when: 'anyOf', of: [{ when: 'fieldIn', path: 'status.phase', values: ['Running'] }, { when: 'condition', type: 'Active', status: 'True', reason: 'Copying' }] },
  since: ['status.startedAt', 'status.conditions[type=Active].lastTransitionTime'],
})

/** parseRules on `[good(), ...]` with `mutate` applied to the rule at `index`; returns the message. */
function errorOf(mutate: (r: any) => void, index = 0, field?: string): string {
  const rules: any[] = [good(), { ...good(), id: 'second' }, { ...good(), id: 'third' }]
  mutate(rules[index])
  try {
    parseRules(rules, field)
  } catch (e) {
    return (e as Error).message
  }
  return 'no error'
}

t.test('the built-in rules are valid user rules too', async (t) => {
  t.same(parseRules(structuredClone(BUILTIN_RULES)), BUILTIN_RULES)
  t.same(mergeRules(BUILTIN_RULES, []), BUILTIN_RULES)
})

t.test('a good rule parses to itself; absent means none', async (t) => {
  t.same(parseRules([good()]), [good()])
  t.same(parseRules(undefined), [])
  t.same(parseRules(null), [])
  t.same(parseRules([]), [])
  t.same(parseRules([{ ...good(), link: { by: 'namespace', unlessSet: 'spec.target' } }])[0]!.link, { by: 'namespace', unlessSet: 'spec.target' })
})

t.test('errors start with the field path and say what is valid', async (t) => {
  const cases: Array<[string, (r: any) => void, RegExp, number?]> = [
    ['unknown rule key', (r) => (r.enabled = true), /^inFlightRules\[0\]\.enabled: unknown key \(valid keys here: id, system, resource, link, inFlight, labelSelector, since\)$/],
    ['missing id', (r) => delete r.id, /^inFlightRules\[0\]\.id: is required$/],
    ['bad id', (r) => (r.id = 'My_Rule'), /^inFlightRules\[0\]\.id: "My_Rule" is not valid: lowercase letters, digits and dashes/],
    ['empty system', (r) => (r.system = ''), /^inFlightRules\[0\]\.system: must be a non-empty string/],
    ['resource group', (r) => (r.resource.group = 'Not A Group'), /^inFlightRules\[0\]\.resource\.group: "Not A Group" is not an API group/],
    ['resource version', (r) => (r.resource.version = '1'), /^inFlightRules\[0\]\.resource\.version: "1" is not valid: a version like "v1"/],
    ['resource kind', (r) => (r.resource.kind = 'backupRun'), /^inFlightRules\[0\]\.resource\.kind: .*a kind like "ReplicationSource"/],
    ['resource plural', (r) => (r.resource.plural = 'BackupRuns'), /^inFlightRules\[0\]\.resource\.plural: /],
    ['resource extra key', (r) => (r.resource.namespaced = true), /^inFlightRules\[0\]\.resource\.namespaced: unknown key \(valid keys here: group, version, kind, plural\)$/],
    ['resource not object', (r) => (r.resource = 'velero.io/v1'), /^inFlightRules\[0\]\.resource: must be an object with group, version, kind, plural$/],
    ['set-based selector', (r) => (r.labelSelector = 'env in (a,b)'), /^inFlightRules\[0\]\.labelSelector: "env in \(a,b\)" is not an equality-based label selector/],
    ['link kind', (r) => (r.link = { by: 'magic' }), /^inFlightRules\[0\]\.link\.by: must be one of "field", "label", "dataSourceRef", "namespace", "owner", "application", "anyOf" \(got magic\)$/],
    ['link path', (r) => (r.link = { by: 'field', path: 42 }), /^inFlightRules\[2\]\.link\.path: must be a non-empty dotted field path like "spec\.sourcePVC"$/, 2],
    ['link path syntax', (r) => (r.link = { by: 'field', path: 'spec.pvc[' }), /^inFlightRules\[0\]\.link\.path: segment "pvc\[" of "spec\.pvc\[" is not valid: use name, name\[\*\] or name\[field=value\]/],
    ['nested link key', (r) => (r.link.of[1].value = 'label'), /^inFlightRules\[0\]\.link\.of\[1\]\.value: must be one of "name", "uid" \(got label\)$/],
    ['nested unknown key', (r) => (r.link.of[0].pvc = 'x'), /^inFlightRules\[0\]\.link\.of\[0\]\.pvc: unknown key \(valid keys here: by, path, namespacePath\)$/],
    ['empty anyOf link', (r) => (r.link = { by: 'anyOf', of: [] }), /^inFlightRules\[0\]\.link\.of: must not be empty$/],
    ['application labels', (r) => (r.link = { by: 'application', path: 'spec.app', pvcLabels: 'app' }), /^inFlightRules\[0\]\.link\.pvcLabels: must be a list$/],
    ['label key', (r) => (r.link = { by: 'label', key: 'not a key', value: 'uid' }), /^inFlightRules\[0\]\.link\.key: "not a key" is not valid: a label key like "velero\.io\/pvc-uid"$/],
    ['owner id', (r) => (r.link = { by: 'owner' }), /^inFlightRules\[0\]\.link\.ruleId: is required$/],
    ['when kind', (r) => (r.inFlight = { when: 'phase', path: 'status.phase' }), /^inFlightRules\[0\]\.inFlight\.when: must be one of "fieldIn", "fieldSet", "fieldNotTrue", "condition", "anyOf", "allOf", "not" \(got phase\)$/],
    ['empty values', (r) => (r.inFlight = { when: 'fieldIn', path: 'status.phase', values: [] }), /^inFlightRules\[0\]\.inFlight\.values: must not be empty$/],
    ['value type', (r) => (r.inFlight = { when: 'fieldIn', path: 'status.phase', values: ['Running', 3] }), /^inFlightRules\[0\]\.inFlight\.values\[1\]: must be a non-empty string$/],
    ['condition status', (r) => (r.inFlight.of[1].status = 'true'), /^inFlightRules\[0\]\.inFlight\.of\[1\]\.status: must be one of "True", "False", "Unknown" \(got true\)$/],
    ['not without of', (r) => (r.inFlight = { when: 'not' }), /^inFlightRules\[0\]\.inFlight\.of: is required$/],
    ['since path', (r) => (r.since = ['status.startedAt', '']), /^inFlightRules\[0\]\.since\[1\]: must be a non-empty dotted field path/],
    ['since not a list', (r) => (r.since = 'status.startedAt'), /^inFlightRules\[0\]\.since: must be a list$/],
    ['rule not an object', (r) => Object.assign(r, { link: null }), /^inFlightRules\[0\]\.link: must be a link: an object with "by"/],
    ['duplicate id', (r) => (r.id = 'my-backup-run'), /^inFlightRules\[1\]\.id: "my-backup-run" is already the id of inFlightRules\[0\]; ids must be unique$/, 1],
  ]
  for (const [name, mutate, re, index] of cases) t.match(errorOf(mutate, index), re, name)

  t.match(errorOf((r) => (r.link = { by: 'field', path: 1 }), 0, 'deletionGuard.rules'), /^deletionGuard\.rules\[0\]\.link\.path: /, 'the caller names the field')
  t.throws(() => parseRules({ id: 'x' }), { message: 'inFlightRules: must be a list of in-flight rules' })
  t.throws(() => parseRules(['x']), { message: /^inFlightRules\[0\]: must be a rule: an object with id, system, resource, link, inFlight$/ })
  let deep: any = { when: 'fieldSet', path: 'a' }
  for (let i = 0; i < 12; i++) deep = { when: 'not', of: deep }
  t.match(errorOf((r) => (r.inFlight = deep)), /^inFlightRules\[0\]\.inFlight(\.of)+: conditions nest at most 8 deep$/)
})

t.test('mergeRules: replace by id, append the rest, disable', async (t) => {
  const mine = parseRules([good()])[0]!
  const replacement = { ...BUILTIN_RULES.find((r) => r.id === 'csi-volumesnapshot')!, system: 'snapshots (mine)' }
  const merged = mergeRules(BUILTIN_RULES, [replacement, mine])
  t.equal(merged.length, BUILTIN_RULES.length + 1)
  const at = BUILTIN_RULES.findIndex((r) => r.id === 'csi-volumesnapshot')
  t.equal(merged[at]!.system, 'snapshots (mine)', 'a user rule with a built-in id replaces it in place')
  t.equal(merged.at(-1)!.id, 'my-backup-run', 'new rules are appended')

  const disabled = mergeRules(BUILTIN_RULES, [], { disabled: ['k8up-backup', 'volsync-replicationsource'] })
  t.notOk(disabled.some((r) => r.id === 'k8up-backup' || r.id === 'volsync-replicationsource'))
  t.ok(disabled.some((r) => r.id === 'volsync-mover-job'), 'owner links may point at a disabled rule')

  t.throws(() => mergeRules(BUILTIN_RULES, [], { disabled: ['k8up-backups'], disabledField: 'deletionGuard.disabledRules' }), {
    message: /^deletionGuard\.disabledRules\[0\]: no rule has the id "k8up-backups" \(known: volsync-replicationsource, /,
  })
  const orphan = { ...mine, id: 'orphan', link: { by: 'anyOf' as const, of: [{ by: 'field' as const, path: 'spec.pvc' }, { by: 'owner' as const, ruleId: 'no-such-rule' }] } }
  t.throws(() => mergeRules(BUILTIN_RULES, [mine, orphan], { field: 'deletionGuard.rules' }), {
    message: 'deletionGuard.rules[1].link.of[1].ruleId: no rule has the id "no-such-rule"',
  })
  const ownerOfMine = { ...mine, id: 'my-jobs', link: { by: 'owner' as const, ruleId: 'my-backup-run' } }
  t.equal(mergeRules(BUILTIN_RULES, [ownerOfMine, mine]).length, BUILTIN_RULES.length + 2, 'owner links may point at other user rules, in any order')
  t.throws(() => mergeRules(BUILTIN_RULES, [mine, mine]), { message: /^inFlightRules\[1\]\.id: "my-backup-run" is already the id of inFlightRules\[0\]/ })
})
