/**
 * "Is there a restorable backup of this PVC?" has three answers, never two: a store that cannot be
 * checked is `unknown`, and unknown must never be read as "no backup" (design.md §3, §5).
 */

/** Why a probe could not tell; drives the denial message and metrics. */
export type UnknownKind =
  | 'forbidden' // 403: credentials lack permission (HEAD on a missing key answers 403 without s3:ListBucket)
  | 'credentials' // the credentials themselves are rejected or missing
  | 'timeout' // the probe's deadline passed
  | 'network' // connection refused/reset, DNS, TLS
  | 'server' // 5xx or an unparseable answer
  | 'bucket' // the bucket does not exist: a misconfiguration, not "no backup"
  | 'other'

export type ProbeResult =
  | { state: 'exists'; location: string; detail: string }
  | { state: 'none'; location: string; detail: string }
  | { state: 'unknown'; location: string; kind: UnknownKind; reason: string }

export interface BackupStore {
  /**
   * Look for a restorable snapshot under repository key `key` (e.g. `media/data-claim`).
   * Never throws and never outlives its deadline: every failure is an `unknown` result.
   */
  probe(key: string): Promise<ProbeResult>
  /** Human-readable location of a repository, e.g. `s3://backups/media/data-claim`. */
  location(key: string): string
  /** RESTIC_REPOSITORY of a repository for the movers, e.g. `s3:http://minio:9000/backups/media/data-claim`. */
  resticRepository(key: string): string
  /**
   * The newest restic lock under `<key>/locks/` younger than `maxAgeMs`, if any: a backup, prune or
   * restore of the repository is running. Optional for the deletion guard; never throws.
   */
  findRecentLock?(key: string, maxAgeMs: number): Promise<LockResult>
  /** Release sockets/timers. */
  close(): void
}

export type LockResult =
  | { state: 'locked'; location: string; lock: string; ageMs: number; since: string }
  | { state: 'none'; location: string }
  | { state: 'unknown'; location: string; kind: UnknownKind; reason: string }

/** Expand `{namespace}`/`{pvc}` (and `{key}`) placeholders of the configured templates. */
export function expandTemplate(template: string, values: Record<string, string>): string {
  return template.replace(/\{([a-z]+)\}/g, (whole, name: string) => values[name] ?? whole)
}
