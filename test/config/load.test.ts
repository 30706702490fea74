/** A bad configuration stops startup with a message naming the field; a good one loads with defaults. */
import t from 'tap'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, loadConfig } from '../../src/config/load.js'

const dir = mkdtempSync(join(tmpdir(), 'sr-config-'))
function file(name: string, text: string): string {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

t.test('nothing configured: usable defaults', async (t) => {
  const c = loadConfig({ env: {} })
  t.equal(c.server.port, 8443)
  t.equal(c.tierLabel, 'backup')
  t.same(Object.keys(c.tiers), ['hourly', 'daily', 'weekly'])
  t.equal(c.store.type, 'local')
  t.equal(c.onUnknown, 'deny', 'the safe default')
  t.ok(c.store.probe.deadlineMs < 10000, 'the probe deadline is well inside the default webhook timeout')
  for (const [name, tier] of Object.entries(c.tiers)) t.ok(Object.keys(tier.retain).length > 0, `${name} keeps more than the last snapshot`)
})

t.test('file and environment', async (t) => {
  const f = file('ok.yaml', `
store:
  type: s3
  s3: { endpoint: "http://minio.minio:9000/", bucket: volsync-backups }
tiers:
  critical: { schedule: "*/15 * * * *", retain: { hourly: 48, within: 3d } }
restore:
  volumeSnapshotClassName: csi-snap
`)
  const c = loadConfig({ file: f, env: { S3_REGION: 'eu-west-1', SMART_RESTORE_PORT: '9443', S3_FORCE_PATH_STYLE: 'false', SMART_RESTORE_DEV_CERT_HOSTS: 'a.example, 10.0.0.1' } })
  t.equal(c.store.s3.endpoint, 'http://minio.minio:9000', 'trailing slash trimmed')
  t.equal(c.store.s3.region, 'eu-west-1')
  t.equal(c.store.s3.forcePathStyle, false)
  t.equal(c.server.port, 9443)
  t.same(c.server.devCertHosts, ['a.example', '10.0.0.1'])
  t.same(Object.keys(c.tiers), ['critical'], 'tiers in a file replace the defaults')
  t.same(c.tiers.critical!.retain, { hourly: 48, within: '3d' })
  t.equal(c.restore.volumeSnapshotClassName, 'csi-snap')
  const viaEnv = loadConfig({ env: { SMART_RESTORE_CONFIG: f } })
  t.equal(viaEnv.store.s3.bucket, 'volsync-backups', 'SMART_RESTORE_CONFIG names the file')
})

t.test('bad values name the field', async (t) => {
  const cases: Array<[string, () => unknown, string, RegExp]> = [
    ['unknown top-level key', () => loadConfig({ env: {}, overrides: { tierLable: 'x' } }), 'tierLable', /unknown setting/],
    ['port not a number', () => loadConfig({ env: { SMART_RESTORE_PORT: 'https' } }), 'server.port', /not a number/],
    ['port out of range', () => loadConfig({ env: { SMART_RESTORE_PORT: '70000' } }), 'server.port', /between 0 and 65535/],
    ['metrics port not a number', () => loadConfig({ env: { SMART_RESTORE_METRICS_PORT: 'off' } }), 'server.metricsPort', /not a number/],
    ['metrics port out of range', () => loadConfig({ env: { SMART_RESTORE_METRICS_PORT: '-2' } }), 'server.metricsPort', /between -1 and 65535/],
    ['metrics port not an integer', () => loadConfig({ env: {}, overrides: { server: { metricsPort: 9090.5 } } }), 'server.metricsPort', /integer/],
    ['metrics port = webhook port', () => loadConfig({ env: { SMART_RESTORE_PORT: '9443', SMART_RESTORE_METRICS_PORT: '9443' } }), 'server.metricsPort', /must differ from server.port/],
    ['s3 without bucket', () => loadConfig({ env: { SMART_RESTORE_STORE: 's3' } }), 'store.s3.bucket', /required when store.type is s3/],
    ['bad bucket', () => loadConfig({ env: { SMART_RESTORE_STORE: 's3', S3_BUCKET: 'Bad_Bucket' } }), 'store.s3.bucket', /not a valid bucket name/],
    ['bad endpoint', () => loadConfig({ env: { S3_ENDPOINT: 'minio:9000' } }), 'store.s3.endpoint', /must start with http:\/\/ or https:\/\//],
    ['bad store type', () => loadConfig({ env: { SMART_RESTORE_STORE: 'gcs' } }), 'store.type', /one of s3, local/],
    ['bad onUnknown', () => loadConfig({ env: { SMART_RESTORE_ON_UNKNOWN: 'allow' } }), 'onUnknown', /one of deny, fresh/],
    ['bad boolean', () => loadConfig({ env: { S3_FORCE_PATH_STYLE: 'yes' } }), 'store.s3.forcePathStyle', /true or false/],
    ['half credentials', () => loadConfig({ env: { S3_ACCESS_KEY_ID: 'AKIA' } }), 'store.s3.secretAccessKey', /together/],
    ['half TLS', () => loadConfig({ env: { SMART_RESTORE_TLS_CERT_FILE: '/x.crt' } }), 'server.tlsKeyFile', /together/],
    ['bad key template', () => loadConfig({ env: { SMART_RESTORE_KEY_TEMPLATE: '{ns}/{pvc}' } }), 'store.keyTemplate', /unknown placeholder \{ns\}/],
    ['bad probe deadline', () => loadConfig({ env: { SMART_RESTORE_PROBE_DEADLINE_MS: '5' } }), 'store.probe.deadlineMs', /between 100/],
    ['bad tier label', () => loadConfig({ env: { SMART_RESTORE_TIER_LABEL: 'not a label' } }), 'tierLabel', /not a valid label key/],
    ['tier without retain', () => loadConfig({ env: {}, file: file('t1.yaml', 'tiers: { hourly: { schedule: "0 * * * *", retain: {} } }') }), 'tiers.hourly.retain', /only the last snapshot/],
    ['tier with bad cron', () => loadConfig({ env: {}, file: file('t2.yaml', 'tiers: { hourly: { schedule: "every hour", retain: { hourly: 1 } } }') }), 'tiers.hourly.schedule', /cron/],
    ['tier with bad retain key', () => loadConfig({ env: {}, file: file('t3.yaml', 'tiers: { hourly: { schedule: "@hourly", retain: { forever: 1 } } }') }), 'tiers.hourly.retain.forever', /unknown retention key/],
    ['tier name not a label value', () => loadConfig({ env: {}, file: file('t4.yaml', 'tiers: { Hourly: { schedule: "@hourly", retain: { hourly: 1 } } }') }), 'tiers.Hourly', /label value/],
    ['no tiers', () => loadConfig({ env: {}, file: file('t5.yaml', 'tiers: {}') }), 'tiers', /at least one tier/],
    ['file not YAML', () => loadConfig({ env: {}, file: file('bad.yaml', 'store: [unclosed') }), 'SMART_RESTORE_CONFIG', /not valid YAML/],
    ['guard: bad namespaceDeletion', () => loadConfig({ env: { SMART_RESTORE_NAMESPACE_DELETION: 'force' } }), 'deletionGuard.namespaceDeletion', /one of wait, allow/],
    ['guard: rule without resource', () => loadConfig({ env: {}, file: file('r1.yaml', 'deletionGuard: { rules: [ { id: my-backup, system: Mine, link: { by: namespace }, inFlight: { when: fieldSet, path: status.running } } ] }') }), 'deletionGuard.rules[0].resource', /./],
    ['guard: unknown disabled rule', () => loadConfig({ env: {}, file: file('r2.yaml', 'deletionGuard: { disabledRules: [no-such-rule] }') }), 'deletionGuard.disabledRules[0]', /./],
    ['file missing', () => loadConfig({ env: {}, file: join(dir, 'missing.yaml') }), 'SMART_RESTORE_CONFIG', /cannot read/],
    ['file a list', () => loadConfig({ env: {}, file: file('list.yaml', '- a\n- b\n') }), 'SMART_RESTORE_CONFIG', /mapping/],
    ['CA bundle missing', () => loadConfig({ env: { S3_CA_BUNDLE: join(dir, 'no-ca.pem') } }), 'store.s3.caBundle', /cannot read .*no-ca\.pem/],
    ['CA bundle not PEM', () => loadConfig({ env: { S3_CA_BUNDLE: file('ca.txt', 'not a certificate') } }), 'store.s3.caBundle', /no PEM certificate/],
    ['password file missing', () => loadConfig({ env: { SMART_RESTORE_PASSWORD_FILE: join(dir, 'no-password') } }), 'store.passwordFile', /cannot read .*no-password/],
    ['password file empty', () => loadConfig({ env: { SMART_RESTORE_PASSWORD_FILE: file('empty-password', '\n') } }), 'store.passwordFile', /is empty/],
    ['bad probe mode', () => loadConfig({ env: { SMART_RESTORE_PROBE_MODE: 'snapshots' } }), 'store.probe.mode', /one of restic, list, head/],
  ]
  for (const [name, fn, field, message] of cases) {
    try {
      fn()
      t.fail(`${name}: expected a ConfigError`)
    } catch (err) {
      t.type(err, ConfigError, name)
      t.equal((err as ConfigError).field, field, `${name}: names ${field}`)
      t.match((err as Error).message, message, `${name}: says what is wrong`)
      t.match((err as Error).message, new RegExp(`^invalid configuration: ${field.replace(/[.[\]]/g, '\\$&')}:`), `${name}: message starts with the field`)
    }
  }
})

t.test('restic probe: the default mode; CA bundle and password file from file or env', async (t) => {
  const defaults = loadConfig({ env: {} })
  t.equal(defaults.store.probe.mode, 'restic', 'restic mode by default: admission knows the snapshot VolSync restores')
  t.equal(defaults.store.s3.caBundle, undefined)
  t.equal(defaults.store.passwordFile, undefined, 'by default the password comes from the restore source Secret')
  const pem = file('ca.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
  const password = file('password', 'correct horse\n')
  const fromEnv = loadConfig({ env: { S3_CA_BUNDLE: pem, SMART_RESTORE_PASSWORD_FILE: password, SMART_RESTORE_PROBE_MODE: 'list' } })
  t.equal(fromEnv.store.s3.caBundle, pem)
  t.equal(fromEnv.store.passwordFile, password)
  t.equal(fromEnv.store.probe.mode, 'list')
  const fromFile = loadConfig({ env: {}, file: file('ca.yaml', `store: { s3: { caBundle: ${JSON.stringify(pem)} }, passwordFile: ${JSON.stringify(password)} }`) })
  t.equal(fromFile.store.s3.caBundle, pem)
  t.equal(fromFile.store.passwordFile, password)
})

t.test('metrics port: 9090 by default, any free port with 0, off with -1', async (t) => {
  t.equal(loadConfig({ env: {} }).server.metricsPort, 9090)
  t.equal(loadConfig({ env: { SMART_RESTORE_METRICS_PORT: '9100' } }).server.metricsPort, 9100)
  t.equal(loadConfig({ env: { SMART_RESTORE_METRICS_PORT: '0' } }).server.metricsPort, 0)
  t.equal(loadConfig({ env: { SMART_RESTORE_METRICS_PORT: '-1' } }).server.metricsPort, -1)
  t.equal(loadConfig({ env: {}, file: file('metrics.yaml', 'server: { metricsPort: 9191 }') }).server.metricsPort, 9191, 'from the file')
  t.equal(loadConfig({ env: { SMART_RESTORE_PORT: '0', SMART_RESTORE_METRICS_PORT: '0' } }).server.metricsPort, 0, 'both 0: two different free ports')
})

t.test('user in-flight rules load and merge with the built-ins', async (t) => {
  const f = file('rules.yaml', `
deletionGuard:
  disabledRules: [csi-volumesnapshot]
  rules:
    - id: acme-backup
      system: Acme
      resource: { group: acme.example.com, version: v1, kind: AcmeBackup, plural: acmebackups }
      link: { by: field, path: spec.claimName }
      inFlight: { when: fieldIn, path: status.state, values: [Queued, Copying] }
      since: [status.startedAt]
`)
  const c = loadConfig({ file: f, env: {} })
  t.equal(c.deletionGuard.rules.length, 1)
  t.equal(c.deletionGuard.rules[0]!.id, 'acme-backup')
  t.same(c.deletionGuard.disabledRules, ['csi-volumesnapshot'])
})

t.test('npm start with a bad config exits non-zero naming the field', async (t) => {
  const { spawnSync } = await import('node:child_process')
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    env: { ...process.env, SMART_RESTORE_STORE: 's3', S3_BUCKET: '' },
    encoding: 'utf8',
    timeout: 60000,
  })
  t.equal(r.status, 2)
  t.match(r.stderr, /invalid configuration: store.s3.bucket: is required when store.type is s3/)
})
