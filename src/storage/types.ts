/**
 * "Is there a restorable backup of this PVC?" has three answers, never two: a store that cannot be
 * checked is `unknown`, and unknown must never be read as "no backup" (design.md §3, §5).
 */

import type { SnapshotSelection } from '../decide/select-snapshot.js'
import type { Snapshot } from './restic/format.js'

/** What a probe reads in restic mode: the snapshots `selection` needs, or with `readAll` every one. */
export interface ProbeOptions extends SnapshotSelection {
  readAll?: boolean
}

/** Why a probe could not tell; drives the denial message and metrics. */
export type UnknownKind =
  | 'forbidden' // 403: credentials lack permission (HEAD on a missing key answers 403 without s3:ListBucket)
  | 'credentials' // the credentials themselves are rejected or missing
  | 'timeout' // the probe's deadline passed
  | 'network' // connection refused/reset, DNS, TLS
  | 'server' // 5xx or an unparseable answer
  | 'bucket' // the bucket does not exist: a misconfiguration, not "no backup"
  | 'password' // the repository password (restore.sourceSecret / store.passwordFile) could not be read
  | 'other'

/** Why a repository that holds snapshots cannot be read: retrying does not help, a human must act. */
export type UnreadableKind =
  | 'password' // no key file opens with the configured RESTIC_PASSWORD
  | 'corrupt' // a file fails its MAC or hash, or is not what restic writes
  | 'not-a-repository' // snapshot files without keys/config

/** What restic mode read of a repository (absent in list/head modes, which do not open it). */
export interface ResticListing {
  /** Repository format version, 1 or 2 (absent when every snapshot came from the cache). */
  version?: number
  /** The snapshots read, oldest first: every one when `complete`, else those the selection needed. */
  snapshots: Snapshot[]
  /** Snapshot files in the repository. */
  total: number
  complete: boolean
}

export type ProbeResult =
  | { state: 'exists'; location: string; detail: string; restic?: ResticListing }
  | { state: 'none'; location: string; detail: string }
  | { state: 'unknown'; location: string; kind: UnknownKind; reason: string }
  | { state: 'unreadable'; location: string; kind: UnreadableKind; reason: string }

export interface BackupStore {
  /**
   * Look for a restorable snapshot under repository key `key` (e.g. `media/data-claim`). In restic
   * mode the snapshots that `selection` needs are read and returned. Never throws and never
   * outlives its deadline: every failure is an `unknown` (or `unreadable`) result.
   */
  probe(key: string, options?: ProbeOptions): Promise<ProbeResult>
  /** Human-readable location of a repository, e.g. `s3://backups/media/data-claim`. */
  location(key: string): string
  /** RESTIC_REPOSITORY of a repository for the movers, e.g. `s3:http://minio:9000/backups/media/data-claim`. */
  resticRepository(key: string): string
  /**
   * PEM of the private CA the endpoint's certificate chains to (store.s3.caBundle, read once at
   * startup like the S3 client's): the movers must trust it too (VolSync `customCA`).
   */
  readonly moverCa?: string
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
