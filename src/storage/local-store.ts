/**
 * The same question against a directory laid out like the bucket (`<dir>/<key>/snapshots/<id>`),
 * for demos and single-node use; it is also what a restic local repository looks like.
 */
import { open, opendir, readdir, stat } from 'node:fs/promises'
import { join, resolve, sep } from 'node:path'
import type { StoreConfig } from '../config/schema.js'
import type { BackupStore, LockResult, ProbeOptions, ProbeResult, UnknownKind } from './types.js'
import { headKeyFor, normalizeKey, probeFields, silentLogger, trimSlashes, unknown, withDeadline, type StoreLogger } from './common.js'
import { probeResticRepository, type PasswordSource } from './restic-probe.js'
import type { ListedObject, RepositoryObjects } from './restic/objects.js'
import { ResticReader } from './restic/reader.js'

export interface LocalDirectoryStoreOptions {
  logger?: StoreLogger
  /** RESTIC_PASSWORD of the repositories, for probe mode restic. */
  password?: PasswordSource
}

export class LocalDirectoryStore implements BackupStore {
  private readonly root: string
  private readonly log: StoreLogger
  private readonly password?: PasswordSource
  /** Master keys and decrypted snapshots, kept across probes (restic mode). */
  readonly reader = new ResticReader()

  constructor(
    private readonly cfg: StoreConfig,
    opts: LocalDirectoryStoreOptions = {},
  ) {
    this.root = resolve(cfg.local.directory)
    this.log = opts.logger ?? silentLogger
    this.password = opts.password
  }

  location(key: string): string {
    return `file://${this.repoPath(key)}`
  }

  resticRepository(key: string): string {
    return this.repoPath(key)
  }

  close(): void {}

  async probe(key: string, options: ProbeOptions = {}): Promise<ProbeResult> {
    const location = this.location(key)
    const started = Date.now()
    // A hung network file system must not hold the admission past its budget either.
    const result = await withDeadline(
      () => this.look(key, location, options),
      this.cfg.probe.deadlineMs,
      () => unknown(location, 'timeout', `the backup directory did not answer within the ${this.cfg.probe.deadlineMs} ms deadline`),
      (err) => unknown(location, 'other', `cannot read the backup directory: ${codeOf(err) ?? String(err)}`),
    )
    const fields = { key, location, mode: this.cfg.probe.mode, ms: Date.now() - started }
    if (result.state === 'unknown') this.log.warn({ ...fields, kind: result.kind, reason: result.reason }, 'backup probe inconclusive')
    else if (result.state === 'unreadable') this.log.warn({ ...fields, kind: result.kind, reason: result.reason }, 'backup repository unreadable')
    else this.log.debug({ ...fields, ...probeFields(result) }, 'backup probe answered')
    return result
  }

  /** A repository directory's files (restic's local backend has the bucket's layout). */
  private objects(k: string): RepositoryObjects {
    return {
      list: async (dir) => {
        let names: string[]
        try {
          names = await readdir(this.inside(`${k}/${dir}`))
        } catch (err) {
          if (codeOf(err) === 'ENOENT') return []
          throw err
        }
        const found: ListedObject[] = []
        for (const name of names) {
          // restic's local backend writes `<id>-tmp-<n>` first and renames: not a file yet.
          if (name.startsWith('.') || name.includes('-tmp-')) continue
          const st = await stat(this.inside(`${k}/${dir}/${name}`)).catch(() => null)
          if (st?.isFile()) found.push({ name, lastModifiedMs: st.mtimeMs, size: st.size })
        }
        return found
      },
      get: async (path, maxBytes) => {
        const file = await open(this.inside(`${k}/${path}`), 'r')
        try {
          const { size } = await file.stat()
          if (size > maxBytes) throw new Error(`${path} is ${size} bytes, more than the ${maxBytes} a restic ${path.split('/')[0]} file can be`)
          return await file.readFile()
        } finally {
          await file.close()
        }
      },
    }
  }

  private async look(key: string, location: string, options: ProbeOptions): Promise<ProbeResult> {
    const k = normalizeKey(key)
    if (typeof k !== 'string') return unknown(location, 'other', `cannot probe: ${k.invalid}`)

    // The directory itself missing is the bucket missing: a misconfiguration, not "no backup".
    try {
      const root = await stat(this.root)
      if (!root.isDirectory()) return unknown(location, 'bucket', `backup directory ${this.root} is not a directory`)
    } catch (err) {
      if (codeOf(err) === 'ENOENT') return unknown(location, 'bucket', `backup directory ${this.root} does not exist`)
      return fsUnknown(location, err, this.root)
    }

    if (this.cfg.probe.mode === 'head') {
      const headKey = headKeyFor(this.cfg, k)
      if (typeof headKey !== 'string') return unknown(location, 'other', `cannot probe: ${headKey.invalid}`)
      const file = this.inside(headKey)
      try {
        const st = await stat(file)
        if (st.isFile()) return { state: 'exists', location, detail: `file ${file} exists` }
        return unknown(location, 'other', `${file} exists but is not a file`)
      } catch (err) {
        if (codeOf(err) === 'ENOENT') return { state: 'none', location, detail: `no file ${file}` }
        return fsUnknown(location, err, file)
      }
    }

    if (this.cfg.probe.mode === 'restic') return probeResticRepository(location, this.objects(k), options, this.reader, this.password)

    const dir = this.inside(`${k}/snapshots`)
    try {
      const entries = await opendir(dir)
      try {
        for (let entry = await entries.read(); entry !== null; entry = await entries.read()) {
          // restic's local backend writes `<id>-tmp-<n>` first and renames: not a snapshot yet.
          if (entry.name.startsWith('.') || entry.name.includes('-tmp-')) continue
          const path = join(dir, entry.name)
          const isFile = entry.isFile() || (entry.isSymbolicLink() && (await stat(path).catch(() => null))?.isFile())
          if (isFile) return { state: 'exists', location, detail: `snapshot ${path}` }
        }
      } finally {
        await entries.close()
      }
      return { state: 'none', location, detail: `no snapshot in ${dir}` }
    } catch (err) {
      if (codeOf(err) === 'ENOENT') return { state: 'none', location, detail: `no snapshot in ${dir} (it does not exist)` }
      return fsUnknown(location, err, dir)
    }
  }

  async findRecentLock(key: string, maxAgeMs: number): Promise<LockResult> {
    const location = this.location(key)
    const k = normalizeKey(key)
    if (typeof k !== 'string') return { state: 'unknown', location, kind: 'other', reason: `cannot list locks: ${k.invalid}` }
    const dir = this.inside(`${k}/locks`)
    const failed = (err: unknown): LockResult => {
      const r = fsUnknown(location, err, dir)
      return r.state === 'unknown' ? r : { state: 'none', location }
    }
    return withDeadline<LockResult>(
      async () => {
        let names: string[]
        try {
          names = await readdir(dir)
        } catch (err) {
          if (codeOf(err) === 'ENOENT') return { state: 'none', location }
          throw err
        }
        const now = Date.now()
        let newest: { name: string; at: number } | undefined
        for (const name of names) {
          const at = (await stat(join(dir, name)).catch(() => null))?.mtimeMs
          if (at !== undefined && now - at < maxAgeMs && (!newest || at > newest.at)) newest = { name, at }
        }
        if (!newest) return { state: 'none', location }
        return { state: 'locked', location, lock: join(dir, newest.name), ageMs: now - newest.at, since: new Date(newest.at).toISOString() }
      },
      this.cfg.probe.deadlineMs,
      () => ({ state: 'unknown', location, kind: 'timeout', reason: `the backup directory did not answer within the ${this.cfg.probe.deadlineMs} ms deadline` }),
      failed,
    )
  }

  private repoPath(key: string): string {
    const k = trimSlashes(key)
    return k === '' ? this.root : `${this.root}${sep}${k}`
  }

  /** `rel` under the root; normalizeKey already refused `..`, this is the belt to those braces. */
  private inside(rel: string): string {
    const p = resolve(this.root, rel)
    if (p !== this.root && !p.startsWith(this.root + sep)) throw Object.assign(new Error(`${rel} leaves ${this.root}`), { code: 'EOUTSIDE' })
    return p
  }
}

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

function fsUnknown(location: string, err: unknown, path: string): ProbeResult {
  const code = codeOf(err) ?? 'error'
  const kind: UnknownKind = code === 'EACCES' || code === 'EPERM' ? 'forbidden' : 'other'
  // ENOTDIR: part of the path is a file. The layout is not a repository's; a human should look.
  return unknown(location, kind, `cannot read ${path}: ${code}`)
}
