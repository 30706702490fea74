/**
 * Loads and validates the configuration: defaults ← YAML/JSON file ← environment variables.
 * Anything wrong throws a ConfigError naming the field, so a bad deployment fails at startup
 * instead of answering admissions with a half-understood configuration.
 */
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { DNS1123_LABEL, DNS1123_SUBDOMAIN, LABEL_KEY } from '../engines/name-syntax.js'
import { BUILTIN_RULES } from '../inflight/rules.js'
import { mergeRules, parseRules } from '../inflight/match.js'
import type { InFlightRule } from '../inflight/types.js'
import { FIELD_RANGES, H_FIELD } from '../reconcile/schedule.js'
import { defaultConfig, type BackupSourceConfig, type Config, type TierConfig } from './schema.js'

/** A file setting must name a readable file whose content `check` accepts; it is read again when used. */
function readableFile(path: string, field: string, check: (text: string) => string | undefined): void {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(field, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
  }
  const problem = check(text)
  if (problem) throw new ConfigError(field, `${path} ${problem}`)
}

export class ConfigError extends Error {
  constructor(
    readonly field: string,
    problem: string,
  ) {
    super(`invalid configuration: ${field}: ${problem}`)
    this.name = 'ConfigError'
  }
}

/** Environment variables that override single fields (documented in the README). */
const envOverrides: Array<[string, string, EnvType]> = [
  ['SMART_RESTORE_PORT', 'server.port', 'number'],
  ['SMART_RESTORE_HOST', 'server.host', 'string'],
  ['SMART_RESTORE_TLS_CERT_FILE', 'server.tlsCertFile', 'string'],
  ['SMART_RESTORE_TLS_KEY_FILE', 'server.tlsKeyFile', 'string'],
  ['SMART_RESTORE_DEV_CERT_HOSTS', 'server.devCertHosts', 'list'],
  ['SMART_RESTORE_SHUTDOWN_DELAY_MS', 'server.shutdownDelayMs', 'number'],
  ['SMART_RESTORE_METRICS_PORT', 'server.metricsPort', 'number'],
  ['SMART_RESTORE_TIER_LABEL', 'tierLabel', 'string'],
  ['SMART_RESTORE_STORE', 'store.type', 'string'],
  ['SMART_RESTORE_LOCAL_DIR', 'store.local.directory', 'string'],
  ['SMART_RESTORE_KEY_TEMPLATE', 'store.keyTemplate', 'string'],
  ['SMART_RESTORE_PROBE_MODE', 'store.probe.mode', 'string'],
  ['SMART_RESTORE_PROBE_DEADLINE_MS', 'store.probe.deadlineMs', 'number'],
  ['S3_ENDPOINT', 'store.s3.endpoint', 'string'],
  ['S3_REGION', 'store.s3.region', 'string'],
  ['S3_BUCKET', 'store.s3.bucket', 'string'],
  ['S3_FORCE_PATH_STYLE', 'store.s3.forcePathStyle', 'boolean'],
  ['S3_ACCESS_KEY_ID', 'store.s3.accessKeyId', 'string'],
  ['S3_SECRET_ACCESS_KEY', 'store.s3.secretAccessKey', 'string'],
  ['S3_CA_BUNDLE', 'store.s3.caBundle', 'string'],
  ['SMART_RESTORE_PASSWORD_FILE', 'store.passwordFile', 'string'],
  ['SMART_RESTORE_ON_UNKNOWN', 'onUnknown', 'string'],
  ['SMART_RESTORE_SOURCE_SECRET_NAMESPACE', 'restore.sourceSecret.namespace', 'string'],
  ['SMART_RESTORE_SOURCE_SECRET_NAME', 'restore.sourceSecret.name', 'string'],
  ['SMART_RESTORE_KUBE_MODE', 'kube.mode', 'string'],
  ['SMART_RESTORE_NAMESPACE_DELETION', 'deletionGuard.namespaceDeletion', 'string'],
  ['SMART_RESTORE_RESTIC_LOCKS', 'deletionGuard.resticLocks.enabled', 'boolean'],
  ['SMART_RESTORE_RECONCILER', 'reconciler.enabled', 'boolean'],
  ['SMART_RESTORE_METRICS_PER_PVC', 'metrics.perPvc', 'boolean'],
  ['SMART_RESTORE_LEADER_ELECTION', 'leaderElection.enabled', 'boolean'],
  // The pod's namespace (downward API): where the Lease lives, with the Role that grants it.
  ['POD_NAMESPACE', 'leaderElection.namespace', 'string'],
  ['LOG_LEVEL', 'logLevel', 'string'],
]

type Json = Record<string, unknown>
type EnvType = 'string' | 'number' | 'boolean' | 'list'

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Deep merge where `over` wins; arrays and scalars are replaced, objects merged. */
function merge(base: unknown, over: unknown): unknown {
  if (!isObject(base) || !isObject(over)) return over === undefined ? base : over
  const out: Json = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v)
  return out
}

function setPath(target: Json, path: string, value: unknown): void {
  const parts = path.split('.')
  let cur: Json = target
  for (const p of parts.slice(0, -1)) {
    if (!isObject(cur[p])) cur[p] = {}
    cur = cur[p] as Json
  }
  cur[parts[parts.length - 1]!] = value
}

function envValue(name: string, field: string, raw: string, type: EnvType): unknown {
  if (type === 'string') return raw
  if (type === 'list') return raw.split(',').map((s) => s.trim()).filter(Boolean)
  if (type === 'number') {
    const n = Number(raw)
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(field, `${name}=${JSON.stringify(raw)} is not a number`)
    return n
  }
  if (raw === 'true' || raw === '1') return true
  if (raw === 'false' || raw === '0') return false
  throw new ConfigError(field, `${name}=${JSON.stringify(raw)} must be true or false`)
}

export interface LoadOptions {
  /** Path of a YAML or JSON file; defaults to $SMART_RESTORE_CONFIG. */
  file?: string
  env?: NodeJS.ProcessEnv
  /** Extra values merged last (tests, CLI). */
  overrides?: unknown
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env
  let fromFile: unknown = {}
  const file = opts.file ?? env.SMART_RESTORE_CONFIG
  if (file) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError('SMART_RESTORE_CONFIG', `cannot read ${file}: ${(err as Error).message}`)
    }
    try {
      fromFile = parseYaml(text) ?? {}
    } catch (err) {
      throw new ConfigError('SMART_RESTORE_CONFIG', `${file} is not valid YAML/JSON: ${(err as Error).message}`)
    }
    if (!isObject(fromFile)) throw new ConfigError('SMART_RESTORE_CONFIG', `${file} must hold a mapping at the top level`)
  }
  const fromEnv: Json = {}
  for (const [name, field, type] of envOverrides) {
    const raw = env[name]
    if (raw !== undefined && raw !== '') setPath(fromEnv, field, envValue(name, field, raw, type))
  }
  // Tiers given in a file replace the default set entirely: a user listing two tiers means two tiers.
  const fileTiers = isObject(fromFile) ? fromFile.tiers : undefined
  const base = fileTiers === undefined ? defaultConfig : { ...defaultConfig, tiers: {} }
  const merged = merge(merge(merge(base, fromFile), fromEnv), opts.overrides ?? {})
  return validateConfig(merged)
}

// ---- validation ---------------------------------------------------------------------------------

const CRON = /^(@(annually|yearly|monthly|weekly|daily|hourly))|((((\d+,)*\d+|(\d+(\/|-)\d+)|\*(\/\d+)?)\s?){5})$/
const RETAIN_INT = ['hourly', 'daily', 'weekly', 'monthly', 'yearly']
const RETAIN_STR = ['last', 'within']

function str(v: unknown, field: string, opts: { optional?: boolean; allowEmpty?: boolean } = {}): string | undefined {
  if (v === undefined || v === null) {
    if (opts.optional) return undefined
    throw new ConfigError(field, 'is required')
  }
  if (typeof v !== 'string') throw new ConfigError(field, `must be a string, got ${JSON.stringify(v)}`)
  if (!opts.allowEmpty && v === '') throw new ConfigError(field, 'must not be empty')
  return v
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(field, `must be an integer between ${min} and ${max}, got ${JSON.stringify(v)}`)
  }
  return v
}

function oneOf<T extends string>(v: unknown, field: string, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    throw new ConfigError(field, `must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`)
  }
  return v as T
}

function bool(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(field, `must be true or false, got ${JSON.stringify(v)}`)
  return v
}

function obj(v: unknown, field: string): Json {
  if (!isObject(v)) throw new ConfigError(field, 'must be a mapping')
  return v
}

function rejectUnknown(v: Json, field: string, known: string[]): void {
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) throw new ConfigError(field ? `${field}.${k}` : k, `unknown setting (known: ${known.join(', ')})`)
  }
}

/** A cron expression with Jenkins-style `H`/`H(a-b)` in the minute and hour fields. */
export function validSchedule(schedule: string): boolean {
  const fields = schedule.trim().split(/\s+/)
  if (fields.length === 5) {
    for (const [i, f] of fields.entries()) {
      const m = H_FIELD.exec(f)
      if (!m) continue
      const range = FIELD_RANGES[i]
      if (!range) return false
      if (m[1] !== undefined && (Number(m[1]) > Number(m[2]) || Number(m[2]) > range[1])) return false
    }
  }
  return CRON.test(schedule.replace(/H(\(\d+-\d+\))?/g, '0'))
}

function validateBackupSettings(v: unknown, field: string, partial: boolean): Partial<BackupSourceConfig> {
  const b = obj(v, field)
  rejectUnknown(b, field, ['copyMethod', 'volumeSnapshotClassName', 'storageClassName', 'cacheCapacity', 'cacheStorageClassName', 'pruneIntervalDays', 'moverServiceAccount', 'moverSecurityContext'])
  const out: Partial<BackupSourceConfig> = {}
  if (b.copyMethod !== undefined || !partial) out.copyMethod = oneOf(b.copyMethod, `${field}.copyMethod`, ['Snapshot', 'Clone', 'Direct'] as const)
  for (const k of ['volumeSnapshotClassName', 'storageClassName', 'cacheCapacity', 'cacheStorageClassName', 'moverServiceAccount'] as const) {
    const value = str(b[k], `${field}.${k}`, { optional: true })
    if (value !== undefined) out[k] = value
  }
  if (b.pruneIntervalDays !== undefined) out.pruneIntervalDays = int(b.pruneIntervalDays, `${field}.pruneIntervalDays`, 1, 365)
  if (b.moverSecurityContext !== undefined) out.moverSecurityContext = obj(b.moverSecurityContext, `${field}.moverSecurityContext`)
  return out
}

function validateTier(name: string, v: unknown): TierConfig {
  const field = `tiers.${name}`
  if (!DNS1123_LABEL.test(name) || name.length > 63) throw new ConfigError(field, 'a tier name must be a valid label value (lowercase letters, digits, -)')
  const t = obj(v, field)
  rejectUnknown(t, field, ['schedule', 'retain', 'overrides'])
  const schedule = str(t.schedule, `${field}.schedule`)!
  if (!validSchedule(schedule)) throw new ConfigError(`${field}.schedule`, `${JSON.stringify(schedule)} is not a 5-field cron expression (H or H(a-b) allowed in minute and hour) or @hourly/@daily/...`)
  const retainIn = obj(t.retain, `${field}.retain`)
  const retain: Record<string, number | string> = {}
  for (const [k, rv] of Object.entries(retainIn)) {
    if (RETAIN_INT.includes(k)) retain[k] = int(rv, `${field}.retain.${k}`, 1, 100000)
    else if (RETAIN_STR.includes(k)) retain[k] = String(str(typeof rv === 'number' ? String(rv) : rv, `${field}.retain.${k}`))
    else throw new ConfigError(`${field}.retain.${k}`, `unknown retention key (known: ${[...RETAIN_INT, ...RETAIN_STR].join(', ')})`)
  }
  if (Object.keys(retain).length === 0) {
    throw new ConfigError(`${field}.retain`, 'must keep something: without retain restic keeps only the last snapshot')
  }
  const tier: TierConfig = { schedule, retain }
  if (t.overrides !== undefined) tier.overrides = validateBackupSettings(t.overrides, `${field}.overrides`, true)
  return tier
}

function validateTemplate(v: unknown, field: string, placeholders: string[]): string {
  const s = str(v, field)!
  for (const m of s.matchAll(/\{([^}]*)\}/g)) {
    if (!placeholders.includes(m[1]!)) throw new ConfigError(field, `unknown placeholder {${m[1]}} (known: ${placeholders.map((p) => `{${p}}`).join(', ')})`)
  }
  if (s.startsWith('/')) throw new ConfigError(field, 'must not start with /')
  return s
}

/** Absent (or any field absent): the defaults, so a configuration written before it still loads. */
function validateLeaderElection(v: unknown): Config['leaderElection'] {
  const field = 'leaderElection'
  const l = obj(v ?? {}, field)
  rejectUnknown(l, field, Object.keys(defaultConfig.leaderElection))
  const d = defaultConfig.leaderElection
  const leaseName = str(l.leaseName ?? d.leaseName, `${field}.leaseName`)!
  if (!DNS1123_SUBDOMAIN.test(leaseName) || leaseName.length > 253) throw new ConfigError(`${field}.leaseName`, `${JSON.stringify(leaseName)} is not a valid object name (lowercase letters, digits, - and .)`)
  const namespace = str(l.namespace ?? d.namespace, `${field}.namespace`)!
  if (!DNS1123_LABEL.test(namespace) || namespace.length > 63) throw new ConfigError(`${field}.namespace`, `${JSON.stringify(namespace)} is not a valid namespace name`)
  const leaseDurationMs = int(l.leaseDurationMs ?? d.leaseDurationMs, `${field}.leaseDurationMs`, 1_000, 3_600_000)
  if (leaseDurationMs % 1000 !== 0) throw new ConfigError(`${field}.leaseDurationMs`, `must be whole seconds (the Lease's leaseDurationSeconds), got ${leaseDurationMs}`)
  const renewDeadlineMs = int(l.renewDeadlineMs ?? d.renewDeadlineMs, `${field}.renewDeadlineMs`, 100, 3_600_000)
  if (renewDeadlineMs >= leaseDurationMs) {
    throw new ConfigError(`${field}.renewDeadlineMs`, `must be less than leaseDurationMs (${leaseDurationMs}): a leader that cannot renew must stop before another replica may take the lease over`)
  }
  const retryPeriodMs = int(l.retryPeriodMs ?? d.retryPeriodMs, `${field}.retryPeriodMs`, 50, 3_600_000)
  if (retryPeriodMs >= renewDeadlineMs) throw new ConfigError(`${field}.retryPeriodMs`, `must be less than renewDeadlineMs (${renewDeadlineMs}): the leader needs more than one try to renew`)
  return { enabled: bool(l.enabled ?? d.enabled, `${field}.enabled`), leaseName, namespace, leaseDurationMs, renewDeadlineMs, retryPeriodMs }
}

export function validateConfig(input: unknown): Config {
  const c = obj(input, '(top level)')
  rejectUnknown(c, '', Object.keys(defaultConfig))

  const server = obj(c.server, 'server')
  rejectUnknown(server, 'server', ['host', 'port', 'tlsCertFile', 'tlsKeyFile', 'bodyLimitBytes', 'devCertHosts', 'shutdownDelayMs', 'metricsPort'])
  if (!Array.isArray(server.devCertHosts)) throw new ConfigError('server.devCertHosts', 'must be a list of DNS names or IP addresses')
  const tlsCertFile = str(server.tlsCertFile, 'server.tlsCertFile', { optional: true })
  const tlsKeyFile = str(server.tlsKeyFile, 'server.tlsKeyFile', { optional: true })
  if (Boolean(tlsCertFile) !== Boolean(tlsKeyFile)) {
    throw new ConfigError(tlsCertFile ? 'server.tlsKeyFile' : 'server.tlsCertFile', 'tlsCertFile and tlsKeyFile must be given together')
  }

  const tierLabel = str(c.tierLabel, 'tierLabel')!
  if (!LABEL_KEY.test(tierLabel)) throw new ConfigError('tierLabel', `${JSON.stringify(tierLabel)} is not a valid label key`)
  const annotationPrefix = str(c.annotationPrefix, 'annotationPrefix')!
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/$/.test(annotationPrefix)) {
    throw new ConfigError('annotationPrefix', 'must be a DNS subdomain followed by /, e.g. smart-restore.io/')
  }

  const tiersIn = obj(c.tiers, 'tiers')
  const tiers: Record<string, TierConfig> = {}
  for (const [name, t] of Object.entries(tiersIn)) tiers[name] = validateTier(name, t)
  if (Object.keys(tiers).length === 0) throw new ConfigError('tiers', 'at least one tier is required')

  const namespaceDefaultTierLabel = str(c.namespaceDefaultTierLabel, 'namespaceDefaultTierLabel')!
  if (!LABEL_KEY.test(namespaceDefaultTierLabel)) throw new ConfigError('namespaceDefaultTierLabel', `${JSON.stringify(namespaceDefaultTierLabel)} is not a valid label key`)
  const backup = validateBackupSettings(c.backup, 'backup', false) as BackupSourceConfig
  const metrics = obj(c.metrics ?? {}, 'metrics')
  rejectUnknown(metrics, 'metrics', ['perPvc', 'readinessRefreshMs'])
  const reconciler = obj(c.reconciler, 'reconciler')
  rejectUnknown(reconciler, 'reconciler', ['enabled', 'resyncMs', 'workers', 'restorePendingAfterMs', 'orphanGraceMs'])

  if (!Array.isArray(c.excludedNamespaces)) throw new ConfigError('excludedNamespaces', 'must be a list of namespace names')
  const excludedNamespaces = c.excludedNamespaces.map((n, i) => str(n, `excludedNamespaces[${i}]`)!)

  const store = obj(c.store, 'store')
  rejectUnknown(store, 'store', ['type', 's3', 'local', 'keyTemplate', 'passwordFile', 'probe'])
  const type = oneOf(store.type, 'store.type', ['s3', 'local'] as const)
  const s3 = obj(store.s3, 'store.s3')
  rejectUnknown(s3, 'store.s3', ['endpoint', 'region', 'bucket', 'forcePathStyle', 'caBundle', 'accessKeyId', 'secretAccessKey'])
  const caBundle = str(s3.caBundle, 'store.s3.caBundle', { optional: true })
  if (caBundle !== undefined) readableFile(caBundle, 'store.s3.caBundle', (text) => (/-----BEGIN CERTIFICATE-----/.test(text) ? undefined : 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)'))
  const passwordFile = str(store.passwordFile, 'store.passwordFile', { optional: true })
  if (passwordFile !== undefined) readableFile(passwordFile, 'store.passwordFile', (text) => (text.trim() === '' ? 'is empty' : undefined))
  const endpoint = str(s3.endpoint, 'store.s3.endpoint', { allowEmpty: true })!
  if (endpoint !== '') {
    let u: URL
    try {
      u = new URL(endpoint)
    } catch {
      throw new ConfigError('store.s3.endpoint', `${JSON.stringify(endpoint)} is not a URL (e.g. http://minio.minio:9000)`)
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ConfigError('store.s3.endpoint', `${JSON.stringify(endpoint)} must start with http:// or https://, e.g. http://minio.minio:9000`)
  }
  const bucket = str(s3.bucket, 'store.s3.bucket', { allowEmpty: true })!
  if (type === 's3' && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new ConfigError('store.s3.bucket', bucket === '' ? 'is required when store.type is s3 (env S3_BUCKET)' : `${JSON.stringify(bucket)} is not a valid bucket name`)
  }
  const accessKeyId = str(s3.accessKeyId, 'store.s3.accessKeyId', { optional: true })
  const secretAccessKey = str(s3.secretAccessKey, 'store.s3.secretAccessKey', { optional: true })
  if (Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    throw new ConfigError(accessKeyId ? 'store.s3.secretAccessKey' : 'store.s3.accessKeyId', 'accessKeyId and secretAccessKey must be given together')
  }
  const local = obj(store.local, 'store.local')
  rejectUnknown(local, 'store.local', ['directory'])
  const probe = obj(store.probe, 'store.probe')
  rejectUnknown(probe, 'store.probe', ['mode', 'headKeyTemplate', 'deadlineMs', 'cacheTtlMs'])

  const restore = obj(c.restore, 'restore')
  rejectUnknown(restore, 'restore', [
    'sourceSecret', 'volumeSnapshotClassName', 'storageClassName', 'cacheCapacity', 'cacheStorageClassName',
    'moverServiceAccount', 'moverSecurityContext', 'allowCrossNamespaceRestoreFrom',
  ])
  const sourceSecret = obj(restore.sourceSecret, 'restore.sourceSecret')
  rejectUnknown(sourceSecret, 'restore.sourceSecret', ['namespace', 'name'])
  const moverSecurityContext = restore.moverSecurityContext === undefined ? undefined : obj(restore.moverSecurityContext, 'restore.moverSecurityContext')

  const guard = obj(c.deletionGuard, 'deletionGuard')
  rejectUnknown(guard, 'deletionGuard', ['namespaceDeletion', 'resticLocks', 'rules', 'disabledRules'])
  const locks = obj(guard.resticLocks, 'deletionGuard.resticLocks')
  rejectUnknown(locks, 'deletionGuard.resticLocks', ['enabled', 'maxAgeMs'])
  if (!Array.isArray(guard.rules)) throw new ConfigError('deletionGuard.rules', 'must be a list of in-flight rules')
  if (!Array.isArray(guard.disabledRules)) throw new ConfigError('deletionGuard.disabledRules', 'must be a list of rule ids')
  const disabledRules = guard.disabledRules.map((r, i) => str(r, `deletionGuard.disabledRules[${i}]`)!)
  let userRules: InFlightRule[]
  try {
    userRules = parseRules(guard.rules, 'deletionGuard.rules')
    // Merged once here only to check ids and owner links; the service merges again at startup.
    mergeRules(BUILTIN_RULES, userRules, { disabled: disabledRules, field: 'deletionGuard.rules', disabledField: 'deletionGuard.disabledRules' })
  } catch (err) {
    const e = err as Error & { field?: string }
    const m = /^([^:]+): (.*)$/s.exec(e.message)
    throw new ConfigError(e.field ?? m?.[1] ?? 'deletionGuard.rules', m?.[2] ?? e.message)
  }

  const kube = obj(c.kube, 'kube')
  rejectUnknown(kube, 'kube', ['mode', 'requestTimeoutMs'])
  const leaderElection = validateLeaderElection(c.leaderElection)

  const config: Config = {
    server: {
      host: str(server.host, 'server.host')!,
      port: int(server.port, 'server.port', 0, 65535),
      tlsCertFile,
      tlsKeyFile,
      bodyLimitBytes: int(server.bodyLimitBytes, 'server.bodyLimitBytes', 1024 * 1024, 64 * 1024 * 1024),
      devCertHosts: server.devCertHosts.map((h, i) => str(h, `server.devCertHosts[${i}]`)!),
      shutdownDelayMs: int(server.shutdownDelayMs, 'server.shutdownDelayMs', 0, 120000),
      metricsPort: int(server.metricsPort, 'server.metricsPort', -1, 65535),
    },
    tierLabel,
    annotationPrefix,
    tiers,
    namespaceDefaultTierLabel,
    backup,
    metrics: {
      perPvc: bool(metrics.perPvc ?? defaultConfig.metrics.perPvc, 'metrics.perPvc'),
      readinessRefreshMs: int(metrics.readinessRefreshMs ?? defaultConfig.metrics.readinessRefreshMs, 'metrics.readinessRefreshMs', 6_000, 24 * 3_600_000),
    },
    reconciler: {
      enabled: bool(reconciler.enabled, 'reconciler.enabled'),
      resyncMs: int(reconciler.resyncMs, 'reconciler.resyncMs', 10_000, 24 * 3_600_000),
      workers: int(reconciler.workers, 'reconciler.workers', 1, 64),
      restorePendingAfterMs: int(reconciler.restorePendingAfterMs ?? defaultConfig.reconciler.restorePendingAfterMs, 'reconciler.restorePendingAfterMs', 1_000, 7 * 24 * 3_600_000),
      // The default (10 min) is far past any admission and its retries; tests shorten it.
      orphanGraceMs: int(reconciler.orphanGraceMs ?? defaultConfig.reconciler.orphanGraceMs, 'reconciler.orphanGraceMs', 1_000, 7 * 24 * 3_600_000),
    },
    excludedNamespaces,
    store: {
      type,
      s3: {
        endpoint: endpoint.replace(/\/+$/, ''),
        region: str(s3.region, 'store.s3.region')!,
        bucket,
        forcePathStyle: bool(s3.forcePathStyle, 'store.s3.forcePathStyle'),
        ...(caBundle !== undefined ? { caBundle } : {}),
        accessKeyId,
        secretAccessKey,
      },
      local: { directory: str(local.directory, 'store.local.directory')! },
      keyTemplate: validateTemplate(store.keyTemplate, 'store.keyTemplate', ['namespace', 'pvc']),
      ...(passwordFile !== undefined ? { passwordFile } : {}),
      probe: {
        mode: oneOf(probe.mode, 'store.probe.mode', ['restic', 'list', 'head'] as const),
        headKeyTemplate: validateTemplate(probe.headKeyTemplate, 'store.probe.headKeyTemplate', ['namespace', 'pvc', 'key']),
        deadlineMs: int(probe.deadlineMs, 'store.probe.deadlineMs', 100, 25000),
        cacheTtlMs: int(probe.cacheTtlMs, 'store.probe.cacheTtlMs', 0, 600000),
      },
    },
    onUnknown: oneOf(c.onUnknown, 'onUnknown', ['deny', 'fresh'] as const),
    restore: {
      sourceSecret: {
        namespace: str(sourceSecret.namespace, 'restore.sourceSecret.namespace')!,
        name: str(sourceSecret.name, 'restore.sourceSecret.name')!,
      },
      volumeSnapshotClassName: str(restore.volumeSnapshotClassName, 'restore.volumeSnapshotClassName', { optional: true }),
      storageClassName: str(restore.storageClassName, 'restore.storageClassName', { optional: true }),
      cacheCapacity: str(restore.cacheCapacity, 'restore.cacheCapacity', { optional: true }),
      cacheStorageClassName: str(restore.cacheStorageClassName, 'restore.cacheStorageClassName', { optional: true }),
      moverServiceAccount: str(restore.moverServiceAccount, 'restore.moverServiceAccount', { optional: true }),
      moverSecurityContext,
      allowCrossNamespaceRestoreFrom: bool(restore.allowCrossNamespaceRestoreFrom, 'restore.allowCrossNamespaceRestoreFrom'),
    },
    deletionGuard: {
      namespaceDeletion: oneOf(guard.namespaceDeletion, 'deletionGuard.namespaceDeletion', ['wait', 'allow'] as const),
      resticLocks: {
        enabled: bool(locks.enabled, 'deletionGuard.resticLocks.enabled'),
        maxAgeMs: int(locks.maxAgeMs, 'deletionGuard.resticLocks.maxAgeMs', 60_000, 24 * 3_600_000),
      },
      rules: userRules,
      disabledRules,
    },
    leaderElection,
    kube: {
      mode: oneOf(kube.mode, 'kube.mode', ['auto', 'cluster', 'standalone'] as const),
      requestTimeoutMs: int(kube.requestTimeoutMs, 'kube.requestTimeoutMs', 100, 25000),
    },
    logLevel: oneOf(c.logLevel, 'logLevel', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
  }
  if (config.server.metricsPort > 0 && config.server.metricsPort === config.server.port) {
    throw new ConfigError('server.metricsPort', `must differ from server.port (${config.server.port}): metrics are plain HTTP on their own port; -1 turns them off`)
  }
  if (config.store.probe.deadlineMs + config.kube.requestTimeoutMs * 3 > 28000) {
    throw new ConfigError('store.probe.deadlineMs', 'the probe deadline plus three API calls must fit in the apiserver\'s 30 s webhook limit')
  }
  return config
}
