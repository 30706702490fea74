/**
 * What the restic reader needs from a store: list a directory of one repository and read a file.
 * The S3 store and the local directory store each provide it; the reader knows nothing of either.
 */

export interface ListedObject {
  /** File name inside the directory, e.g. a snapshot id. */
  name: string
  /** When the store last wrote it (S3 LastModified, file mtime), in ms. Orders candidates only. */
  lastModifiedMs: number
  size: number
}

export interface RepositoryObjects {
  /** Every file directly under `<repository>/<dir>/`. */
  list(dir: 'keys' | 'snapshots', signal?: AbortSignal): Promise<ListedObject[]>
  /** The bytes of `<repository>/<path>`, at most `maxBytes` (a larger file is an error, not read). */
  get(path: string, maxBytes: number, signal?: AbortSignal): Promise<Uint8Array>
}

/** The largest key file / config / snapshot the reader reads; restic's are well under 10 KiB. */
export const MAX_KEY_FILE_BYTES = 64 * 1024
export const MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024
