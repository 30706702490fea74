/**
 * The backup store the service uses: S3 or a local directory per `store.type`, behind the
 * single-flight cache.
 */
import type { Config, StoreConfig } from '../config/schema.js'
import { CachedStore } from './cached-store.js'
import type { StoreLogger } from './common.js'
import { LocalDirectoryStore } from './local-store.js'
import { S3BackupStore } from './s3-store.js'
import type { BackupStore, LockResult } from './types.js'

export interface CreateBackupStoreOptions {
  logger?: StoreLogger
  /** Clock of the cache, for tests. */
  now?: () => number
}

export function createBackupStore(cfg: StoreConfig, opts: CreateBackupStoreOptions = {}): BackupStore {
  const inner = cfg.type === 's3' ? new S3BackupStore(cfg, { logger: opts.logger }) : new LocalDirectoryStore(cfg, { logger: opts.logger })
  return new CachedStore(inner, { ttlMs: cfg.probe.cacheTtlMs, now: opts.now })
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
export type { BackupStore, ProbeResult, UnknownKind } from './types.js'
