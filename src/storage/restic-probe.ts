/**
 * The restic probe mode: "which snapshot will VolSync restore?" rather than "is there a file?".
 *
 *   LIST <key>/snapshots/          no snapshot file          → none (no password needed)
 *   open the repository            no key file opens         → unreadable (password)
 *   read the snapshots it needs    a file fails its MAC/hash → unreadable (corrupt)
 *                                  otherwise                 → exists, with the snapshots read
 *
 * The store supplies the objects and the deadline; S3 failures propagate to its classifier.
 */
import { selectionSettled } from '../decide/select-snapshot.js'
import { FormatError } from './restic/format.js'
import { RepositoryUnreadableError } from './restic/master-key.js'
import type { RepositoryObjects } from './restic/objects.js'
import type { ResticReader } from './restic/reader.js'
import type { ProbeOptions, ProbeResult } from './types.js'

/** Supplies RESTIC_PASSWORD; throws an Error whose message says why it is not available. */
export type PasswordSource = () => Promise<string>

/** Thrown (by a PasswordSource) when the password cannot be had: the probe reads as unknown. */
export class PasswordUnavailableError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'PasswordUnavailableError'
  }
}

const SNAPSHOT_ID = /^[0-9a-f]{64}$/

export async function probeResticRepository(
  location: string,
  objects: RepositoryObjects,
  options: ProbeOptions,
  reader: ResticReader,
  password: PasswordSource | undefined,
  signal?: AbortSignal,
): Promise<ProbeResult> {
  const listing = await objects.list('snapshots', signal)
  const ids = listing.filter((o) => SNAPSHOT_ID.test(o.name))
  if (ids.length === 0) {
    const other = listing.length ? ` (${listing.length} object(s) there are not restic snapshot files)` : ''
    return { state: 'none', location, detail: `no snapshot under ${location}/snapshots/${other}` }
  }
  const needPassword: PasswordSource = password ?? (() => Promise.reject(new PasswordUnavailableError('no repository password is configured (store.passwordFile, or RESTIC_PASSWORD in restore.sourceSecret)')))
  try {
    const settled = options.readAll ? (_: unknown, bound: number | undefined) => bound === undefined : (loaded: Parameters<typeof selectionSettled>[0], bound: number | undefined) => selectionSettled(loaded, options, bound)
    const read = await reader.read(location, objects, ids, needPassword, settled, signal)
    const newest = read.snapshots.at(-1)
    return {
      state: 'exists',
      location,
      detail: `${read.total} snapshot(s)${newest ? `, newest read ${newest.id.slice(0, 8)} of ${newest.time}` : ''}`,
      restic: { version: read.version, snapshots: read.snapshots, total: read.total, complete: read.complete },
    }
  } catch (err) {
    if (err instanceof PasswordUnavailableError) return { state: 'unknown', location, kind: 'password', reason: err.message }
    if (err instanceof RepositoryUnreadableError) return { state: 'unreadable', location, kind: err.kind, reason: err.message }
    if (err instanceof FormatError) return { state: 'unreadable', location, kind: 'corrupt', reason: `${location}: ${err.message}` }
    throw err
  }
}
