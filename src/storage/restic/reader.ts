/**
 * Reads a restic repository's snapshots: only as many as a selection needs, each once.
 *
 * Snapshot files never change (their name is the SHA-256 of their bytes), so each one is read and
 * decrypted once and kept. Which to read first comes from the listing: newest `LastModified`
 * first. The decrypted `time` decides, and the listing only bounds it: a snapshot's time is when
 * its backup started, before its file was uploaded, and S3 refuses requests signed more than 15
 * minutes off its own clock, so `time <= LastModified + 15 min`. Reading stops once the unread
 * snapshots, all older than that bound, cannot change the answer (`settled`).
 */
import { createHash } from 'node:crypto'
import { MacMismatchError, open } from './crypto.js'
import { decodeUnpacked, FormatError, parseSnapshot, type Snapshot } from './format.js'
import { MasterKeys, RepositoryUnreadableError, type OpenRepository } from './master-key.js'
import { MAX_SNAPSHOT_BYTES, type ListedObject, type RepositoryObjects } from './objects.js'

/** How far a snapshot's time may be after its file's LastModified (S3's 15-minute signing window, plus margin). */
export const CLOCK_SKEW_MS = 20 * 60_000

const SNAPSHOT_ID = /^[0-9a-f]{64}$/

/** Can the unread snapshots (each with an epoch of at most `unreadMaxEpoch`) still change the answer? */
export type Settled = (loaded: readonly Snapshot[], unreadMaxEpoch: number | undefined) => boolean

export interface RepositorySnapshots {
  /** Repository format version (1 or 2), when the repository had to be opened. */
  version?: number
  /** Snapshots read (now or before), oldest first. */
  snapshots: Snapshot[]
  /** Snapshot files listed. */
  total: number
  /** All of them were read. */
  complete: boolean
  /** Files read from the store by this call (key, config and snapshot files). */
  reads: number
}

export interface ResticReaderOptions {
  /** Snapshots remembered across all repositories; the oldest are dropped first. */
  maxSnapshots?: number
}

export class ResticReader {
  readonly keys = new MasterKeys()
  private readonly known = new Map<string, Snapshot>()
  private readonly maxSnapshots: number

  constructor(opts: ResticReaderOptions = {}) {
    this.maxSnapshots = opts.maxSnapshots ?? 200_000
  }

  /**
   * The snapshots of the repository at `location` (listed in `listing`) that `settled` needs.
   * Throws RepositoryUnreadableError (wrong password, damaged file), or the store's own error.
   */
  async read(location: string, objects: RepositoryObjects, listing: readonly ListedObject[], password: () => Promise<string>, settled: Settled, signal?: AbortSignal): Promise<RepositorySnapshots> {
    const files = listing.filter((o) => SNAPSHOT_ID.test(o.name)).sort((a, b) => b.lastModifiedMs - a.lastModifiedMs)
    const loaded: Snapshot[] = []
    const unread: ListedObject[] = []
    for (const f of files) {
      const s = this.known.get(`${location}\0${f.name}`)
      if (s) loaded.push(s)
      else unread.push(f)
    }
    let repo: OpenRepository | undefined
    let freshlyOpened = false
    let reads = 0
    let batch = 1
    const bound = () => (unread.length ? Math.floor((unread[0]!.lastModifiedMs + CLOCK_SKEW_MS) / 1000) : undefined)
    while (!settled(loaded, bound())) {
      if (!repo) {
        const before = this.keys.stats.derivations
        repo = await this.keys.open(location, objects, await password())
        freshlyOpened = this.keys.stats.derivations > before
      }
      const next = unread.splice(0, batch)
      batch = Math.min(batch * 2, 8)
      const read = await Promise.all(next.map((f) => this.readOne(location, objects, f.name, repo!, signal)))
      reads += next.length
      const failed = read.find((r): r is MacMismatchError => r instanceof MacMismatchError)
      if (failed) {
        // A key kept from earlier may belong to a repository since re-initialised under this name:
        // open it afresh once before calling the file damaged.
        if (freshlyOpened) throw new RepositoryUnreadableError('corrupt', `${location}: ${failed.message}`)
        this.keys.forget(location)
        repo = undefined
        unread.unshift(...next)
        freshlyOpened = true // the next open is fresh; a second mismatch is damage
        batch = 1
        continue
      }
      for (const s of read as Snapshot[]) {
        this.remember(location, s)
        loaded.push(s)
      }
    }
    loaded.sort((a, b) => a.epochSeconds - b.epochSeconds || a.nanos - b.nanos)
    return { version: repo?.config.version, snapshots: loaded, total: files.length, complete: unread.length === 0, reads }
  }

  private async readOne(location: string, objects: RepositoryObjects, id: string, repo: OpenRepository, signal?: AbortSignal): Promise<Snapshot | MacMismatchError> {
    const what = `snapshots/${id}`
    const raw = await objects.get(what, MAX_SNAPSHOT_BYTES, signal)
    if (createHash('sha256').update(raw).digest('hex') !== id) {
      throw new RepositoryUnreadableError('corrupt', `${location}: ${what} does not hash to its name: the file is damaged or was replaced`)
    }
    let plain: Buffer
    try {
      plain = open(raw, repo.key, what)
    } catch (err) {
      if (err instanceof MacMismatchError) return err
      throw err
    }
    try {
      return parseSnapshot(id, decodeUnpacked(plain, what), what)
    } catch (err) {
      if (err instanceof FormatError) throw new RepositoryUnreadableError('corrupt', `${location}: ${err.message}`)
      throw err
    }
  }

  private remember(location: string, s: Snapshot): void {
    if (this.known.size >= this.maxSnapshots) this.known.delete(this.known.keys().next().value!)
    this.known.set(`${location}\0${s.id}`, s)
  }
}
