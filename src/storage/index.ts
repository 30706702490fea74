/**
 * The backup store the service uses: S3 or a local directory per `store.type`, behind the
 * single-flight cache.
 */
import { readFile } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import type { Config, StoreConfig } from '../config/schema.js'
import { PasswordUnavailableError, type PasswordSource } from './restic-probe.js'
import { CachedStore } from './cached-store.js'
import type { StoreLogger } from './common.js'
import { LocalDirectoryStore } from './local-store.js'
import { S3BackupStore } from './s3-store.js'
import type { BackupStore, LockResult } from './types.js'

export interface CreateBackupStoreOptions {
  logger?: StoreLogger
  /** RESTIC_PASSWORD for probe mode restic (see passwordSourceFor). */
  password?: PasswordSource
  /** Clock of the cache, for tests. */
  now?: () => number
}

export function createBackupStore(cfg: StoreConfig, opts: CreateBackupStoreOptions = {}): BackupStore {
  const { logger, password } = opts
  const caBundle = cfg.s3.caBundle ? readFileSync(cfg.s3.caBundle, 'utf8') : undefined
  const inner = cfg.type === 's3' ? new S3BackupStore(cfg, { logger, password, caBundle }) : new LocalDirectoryStore(cfg, { logger, password })
  return new CachedStore(inner, { ttlMs: cfg.probe.cacheTtlMs, now: opts.now })
}

/**
 * Where probe mode restic gets RESTIC_PASSWORD: store.passwordFile when set (read on each use, so a
 * rotated file counts), else `fromSecret` (the restore source Secret through the Kubernetes API),
 * else nowhere (standalone without a file: restic mode answers "unknown" for repositories with
 * snapshots, and says why).
 */
export function passwordSourceFor(config: Config, fromSecret?: PasswordSource): PasswordSource | undefined {
  const file = config.store.passwordFile
  if (file) {
    return async () => {
      try {
        // A key of a mounted Secret holds the value exactly; an editor's final newline is not part of it.
        const first = (await readFile(file, 'utf8')).replace(/\r?\n$/, '')
        if (first === '') throw new PasswordUnavailableError(`store.passwordFile ${file} is empty`)
        return first
      } catch (err) {
        if (err instanceof PasswordUnavailableError) throw err
        throw new PasswordUnavailableError(`cannot read store.passwordFile ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
      }
    }
  }
  return fromSecret
}

/**
 * The deletion guard's restic lock check of a labelled PVC's repository: undefined when the check is
 * off (deletionGuard.resticLocks), the PVC has no repository, or the store cannot list locks.
 */
export async function recentResticLock(store: BackupStore, repositoryKey: string | undefined, config: Config): Promise<LockResult | undefined> {
  const { enabled, maxAgeMs } = config.deletionGuard.resticLocks
  if (!enabled || !repositoryKey || !store.findRecentLock) return undefined
  return store.findRecentLock(repositoryKey, maxAgeMs)
}

export { CachedStore, type CachedStoreOptions } from './cached-store.js'
export { LocalDirectoryStore, type LocalDirectoryStoreOptions } from './local-store.js'
export { S3BackupStore, classify, type S3BackupStoreOptions } from './s3-store.js'
export type { StoreLogger } from './common.js'
export type { BackupStore, ProbeOptions, ProbeResult, UnknownKind } from './types.js'
export { PasswordUnavailableError, type PasswordSource } from './restic-probe.js'
