/**
 * Opening a repository: find the key file the password opens and take the master key from it.
 *
 * Every key file of a repository wraps the same master key, so one success is enough. A master
 * key is kept per repository (and per password: a rotated Secret opens afresh); deriving it costs
 * one scrypt (restic calibrates ~0.1–0.5 s), so derivations run on libuv's thread pool, at most
 * two at a time (the pool also serves DNS lookups), and are shared by concurrent callers. A
 * derivation is not cancelled when the caller's deadline passes: it finishes and is cached, so
 * the retry the apiserver sends finds it ready.
 */
import { createHash } from 'node:crypto'
import { deriveKey, MacMismatchError, open, type CryptoKey } from './crypto.js'
import { decodeUnpacked, parseConfig, parseKeyFile, parseMasterKey, type RepositoryConfig } from './format.js'
import { MAX_KEY_FILE_BYTES, type RepositoryObjects } from './objects.js'

/** Why a repository cannot be read with the password given. */
export class RepositoryUnreadableError extends Error {
  constructor(
    readonly kind: 'password' | 'corrupt' | 'not-a-repository',
    message: string,
  ) {
    super(message)
    this.name = 'RepositoryUnreadableError'
  }
}

export interface OpenRepository {
  key: CryptoKey
  config: RepositoryConfig
  /** The key file that opened it. */
  keyFile: string
}

/** Key files tried per repository; restic itself stops at 20 as well. */
const MAX_KEY_FILES = 20
const MAX_PARALLEL_DERIVATIONS = 2

export class MasterKeys {
  private readonly opened = new Map<string, { fingerprint: string; repo: OpenRepository }>()
  private readonly opening = new Map<string, Promise<OpenRepository>>()
  private running = 0
  private readonly waiting: Array<() => void> = []
  /** Derivations done, and their total time, for the benchmark and metrics. */
  readonly stats = { derivations: 0, derivationMs: 0 }

  constructor(private readonly maxRepositories = 10_000) {}

  /**
   * The master key of the repository at `location`, opening it when it is not known (or was known
   * under another password). `objects` reads the repository.
   */
  open(location: string, objects: RepositoryObjects, password: string): Promise<OpenRepository> {
    const fingerprint = createHash('sha256').update(password).digest('hex')
    const known = this.opened.get(location)
    if (known && known.fingerprint === fingerprint) return Promise.resolve(known.repo)
    const flightKey = `${location}\0${fingerprint}`
    let flight = this.opening.get(flightKey)
    if (!flight) {
      // No caller's signal: the opening outlives a caller's deadline and is kept for the next one.
      flight = this.openNow(location, objects, password).then(
        (repo) => {
          if (this.opened.size >= this.maxRepositories) this.opened.delete(this.opened.keys().next().value!)
          this.opened.set(location, { fingerprint, repo })
          this.opening.delete(flightKey)
          return repo
        },
        (err: unknown) => {
          this.opening.delete(flightKey)
          throw err
        },
      )
      this.opening.set(flightKey, flight)
    }
    return flight
  }

  /** Forget a repository's key: its files no longer authenticate (re-initialised under the same name). */
  forget(location: string): void {
    this.opened.delete(location)
  }

  private async openNow(location: string, objects: RepositoryObjects, password: string): Promise<OpenRepository> {
    const keyFiles = (await objects.list('keys')).sort((a, b) => b.lastModifiedMs - a.lastModifiedMs)
    if (keyFiles.length === 0) throw new RepositoryUnreadableError('not-a-repository', `${location} has snapshot files but no key files under keys/: it is not a complete restic repository`)
    let tried = 0
    for (const file of keyFiles.slice(0, MAX_KEY_FILES)) {
      const what = `key file keys/${file.name}`
      const keyFile = parseKeyFile(await objects.get(`keys/${file.name}`, MAX_KEY_FILE_BYTES), what)
      let derived: CryptoKey
      try {
        derived = await this.derive(password, keyFile.scrypt)
      } catch (err) {
        // deriveKey refuses only the key file's own parameters (N not a power of two, more memory
        // than allowed): the file is not one restic writes, and retrying cannot help.
        throw new RepositoryUnreadableError('corrupt', `${location}: ${what}: ${(err as Error).message}`)
      }
      tried++
      let plain: Buffer
      try {
        plain = open(keyFile.data, derived, what)
      } catch (err) {
        if (err instanceof MacMismatchError) continue // not this key file's password
        throw err
      }
      const key = parseMasterKey(plain, what)
      const configRaw = await objects.get('config', MAX_KEY_FILE_BYTES)
      let configPlain: Buffer
      try {
        configPlain = open(configRaw, key, 'config')
      } catch (err) {
        // The key file opened, so the master key is right: a config that does not authenticate is
        // damaged (or belongs to another repository), not an S3 failure to retry.
        if (err instanceof MacMismatchError) throw new RepositoryUnreadableError('corrupt', `${location}: ${err.message}`)
        throw err
      }
      return { key, keyFile: file.name, config: parseConfig(decodeUnpacked(configPlain, 'config'), 'config') }
    }
    throw new RepositoryUnreadableError('password', `the password does not open ${location} (tried ${tried} of ${keyFiles.length} key file(s))`)
  }

  private async derive(password: string, params: Parameters<typeof deriveKey>[1]) {
    while (this.running >= MAX_PARALLEL_DERIVATIONS) await new Promise<void>((resolve) => this.waiting.push(resolve))
    this.running++
    const started = performance.now()
    try {
      return await deriveKey(password, params)
    } finally {
      this.stats.derivations++
      this.stats.derivationMs += performance.now() - started
      this.running--
      this.waiting.shift()?.()
    }
  }
}
