/**
 * Probe mode restic against real restic repositories: written by the restic CLI into s3rver over
 * TLS (test/helpers/restic-repos.ts), read through createBackupStore exactly as the service builds
 * its store (type s3, store.s3.caBundle, store.passwordFile or a password source).
 *
 * What it pins down: the snapshots reported are those `restic snapshots --json` lists; only the
 * snapshot files the selection needs are fetched; every way a repository cannot be read is
 * `unreadable` or `unknown`, never `none`; a warm probe costs one LIST.
 *
 * Realism of the listing: the reader orders candidates by S3 LastModified and stops once unread
 * files (LastModified + clock-skew margin) are older than the snapshot selected. In production a
 * snapshot file is uploaded right after its backup started; here every backup runs within seconds,
 * with `--time` days in the past. So after writing a repository the test sets each snapshot
 * object's mtime (s3rver's LastModified) to its snapshot time + 30 s, as VolSync would have left it.
 *
 * Cost: restic calibrates scrypt at `init` to ~0.5 s per derivation, so every fresh store pays one
 * derivation on its first probe, and every restic command about 0.7 s. Repositories are built once,
 * in parallel, and copied on disk (s3rver keeps objects as files) where a test needs to damage one.
 * The 40-snapshot repository has one real backup and 39 snapshot files sealed with its master key
 * (`restic cat masterkey`); `restic snapshots` lists all 40, so they are restic's format.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { cp, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultConfig, type StoreConfig } from '../../src/config/schema.js'
import { selectSnapshot, type SnapshotSelection } from '../../src/decide/select-snapshot.js'
import { createBackupStore, passwordSourceFor, PasswordUnavailableError, type PasswordSource } from '../../src/storage/index.js'
import { LocalDirectoryStore } from '../../src/storage/local-store.js'
import { cryptoKey, seal } from '../../src/storage/restic/crypto.js'
import type { Snapshot } from '../../src/storage/restic/format.js'
import type { ResticReader } from '../../src/storage/restic/reader.js'
import { S3BackupStore } from '../../src/storage/s3-store.js'
import type { BackupStore, ProbeOptions, ProbeResult, ResticListing } from '../../src/storage/types.js'
import {
  listSnapshots,
  makeResticRepo,
  resticAvailable,
  runRestic,
  startTlsS3rver,
  type MadeRepo,
  type ResticSnapshotJson,
  type SnapshotSpec,
  type TlsS3rver,
} from '../helpers/restic-repos.js'
import { BUCKET, storeConfig } from '../helpers/storage-servers.js'

t.setTimeout(300_000)

const restic = resticAvailable()

const PW = 'correct horse battery staple'
/** Generous: a cold probe derives one scrypt key (~0.5 s alone, more while tap runs other files). */
const DEADLINE_MS = 20_000

/** The main repositories (v2 and v1): snapshots a day apart, the newest last. */
const V2 = 'media/data-v2'
const V2_SNAPSHOTS: SnapshotSpec[] = [
  { time: '2026-11-20T03:00:41Z' },
  { time: '2026-11-21T03:00:41Z', tags: ['daily'] },
  { time: '2026-11-22T03:00:41Z', host: 'volsync-mover' },
  { time: '2026-11-23T03:00:41Z' },
]
const V1 = 'legacy/data-v1'
const V1_SNAPSHOTS: SnapshotSpec[] = [{ time: '2025-01-02T03:04:05Z' }, { time: '2025-01-03T03:04:05Z' }, { time: '2025-01-04T03:04:05Z' }]
const EMPTY = 'media/never-backed-up'
const FORGOTTEN = 'media/all-forgotten'
const OTHER = 'media/other-path'
const OTHER_SNAPSHOTS: SnapshotSpec[] = [
  { time: '2026-11-01T01:00:00Z', path: '/srv/other', host: 'other-host' },
  { time: '2026-11-02T01:00:00Z', path: '/srv/other', host: 'other-host' },
]
const MANY = 'media/many'
const MANY_COUNT = 40
const MANY_FIRST = Date.parse('2026-10-01T02:00:00Z')
const DAY = 86_400_000

/** s3rver's file for object `<key>/<path>` of the bucket. */
function objectFile(s3: TlsS3rver, key: string, path: string): string {
  return join(s3.directory, BUCKET, key, `${path}._S3rver_object`)
}

/** Sets a snapshot object's LastModified (s3rver: the file's mtime) to its time + 30 s. */
async function uploadedAt(file: string, time: string): Promise<void> {
  const at = new Date(Date.parse(time) + 30_000)
  await utimes(file, at, at)
}

async function settleMtimes(s3: TlsS3rver, key: string, made: MadeRepo, specs: SnapshotSpec[]): Promise<void> {
  for (const [i, id] of made.snapshotIds.entries()) await uploadedAt(objectFile(s3, key, `snapshots/${id}`), specs[i]!.time)
}

/** Copies repository `from` to `to` inside s3rver's directory, timestamps kept: a second, independent repository. */
async function copyRepo(s3: TlsS3rver, from: string, to: string, target: TlsS3rver = s3): Promise<void> {
  await cp(join(s3.directory, BUCKET, from), join(target.directory, BUCKET, to), { recursive: true, preserveTimestamps: true })
}

async function mustRestic(s3: TlsS3rver, key: string, args: string[]): Promise<string> {
  const r = await runRestic(s3, key, PW, args)
  if (r.code !== 0) throw new Error(`restic ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/**
 * MANY: one real backup, then MANY_COUNT - 1 snapshot files sealed with the repository's master
 * key, each a copy of the real snapshot's JSON at a later day (v1: plain JSON, as restic writes it).
 */
async function makeManySnapshots(s3: TlsS3rver): Promise<void> {
  const first: SnapshotSpec = { time: new Date(MANY_FIRST).toISOString().replace('.000Z', 'Z') }
  const made = await makeResticRepo(s3, { key: MANY, password: PW, version: 1, snapshots: [first] })
  await settleMtimes(s3, MANY, made, [first])
  const master = JSON.parse(await mustRestic(s3, MANY, ['cat', 'masterkey'])) as { mac: { k: string; r: string }; encrypt: string }
  const key = cryptoKey(Buffer.from(master.encrypt, 'base64'), Buffer.from(master.mac.k, 'base64'), Buffer.from(master.mac.r, 'base64'))
  const original = JSON.parse(await mustRestic(s3, MANY, ['cat', 'snapshot', made.snapshotIds[0]!])) as Record<string, unknown>
  for (let i = 1; i < MANY_COUNT; i++) {
    const time = new Date(MANY_FIRST + i * DAY).toISOString().replace('.000Z', 'Z')
    const sealed = seal(Buffer.from(JSON.stringify({ ...original, time })), key, randomBytes(16))
    const id = createHash('sha256').update(sealed).digest('hex')
    const file = objectFile(s3, MANY, `snapshots/${id}`)
    await writeFile(file, sealed)
    await uploadedAt(file, time)
  }
}

/** `restic init` + stdin backups of a local repository (restic's local backend). */
async function makeLocalRepo(dir: string, cache: string, specs: SnapshotSpec[]): Promise<void> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME, RESTIC_PASSWORD: PW, RESTIC_CACHE_DIR: cache, TZ: 'UTC' }
  const run = (args: string[]) =>
    new Promise<string>((resolve, reject) => {
      const child = execFile(restic!, ['--repo', dir, ...args], { env, timeout: 120_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`restic ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
      )
      child.stdin?.end('local snapshot contents\n')
    })
  await run(['init', '--repository-version', '2'])
  for (const s of specs) {
    await run(['backup', '--stdin', '--stdin-filename', 'data', '--host', 'volsync', '--time', s.time.replace('T', ' ').replace('Z', '')])
  }
  const listed = JSON.parse(await run(['snapshots', '--json'])) as ResticSnapshotJson[]
  for (const s of listed) await uploadedAt(join(dir, 'snapshots', s.id), s.time)
}

// ---- reading results ---------------------------------------------------------------------------

/** All the helpers need of a (sub)test. */
type Tap = { teardown(fn: () => unknown): void; fail(message: string): void }

function listingOf(t: Tap, r: ProbeResult): ResticListing {
  if (r.state !== 'exists' || !r.restic) {
    t.fail(`expected exists with a restic listing, got ${JSON.stringify(r)}`)
    throw new Error('not exists')
  }
  return r.restic
}

/** The fields `restic snapshots --json` and the probe share. */
function view(s: Snapshot | ResticSnapshotJson) {
  return { id: s.id, time: s.time, paths: s.paths, hostname: s.hostname, tags: s.tags ?? [] }
}

/** The ResticReader behind the CachedStore createBackupStore returns (its keys' stats). */
function readerOf(store: BackupStore): ResticReader {
  const inner = (store as unknown as { inner?: unknown }).inner
  if (inner instanceof S3BackupStore || inner instanceof LocalDirectoryStore) return inner.reader
  throw new Error('createBackupStore no longer wraps an S3BackupStore/LocalDirectoryStore in a CachedStore as `inner`')
}

interface Traffic {
  /** ListObjectsV2 prefixes, relative to the repository (e.g. `snapshots/`). */
  lists: string[]
  /** GETs of objects, relative to the repository (`config`, `keys/<id>`, `snapshots/<id>`). */
  gets: string[]
  snapshotGets: number
  other: number
}

function traffic(s3: TlsS3rver, from: number, key: string): Traffic {
  const out: Traffic = { lists: [], gets: [], snapshotGets: 0, other: 0 }
  for (const r of s3.log.slice(from)) {
    const url = new URL(r.path, 'https://s3.invalid')
    const prefix = url.searchParams.get('prefix')
    if (r.method === 'GET' && url.searchParams.has('list-type') && prefix?.startsWith(`${key}/`)) out.lists.push(prefix.slice(key.length + 1))
    else if (r.method === 'GET' && decodeURIComponent(url.pathname).startsWith(`/${BUCKET}/${key}/`)) out.gets.push(decodeURIComponent(url.pathname).slice(`/${BUCKET}/${key}/`.length))
    else out.other++
  }
  out.snapshotGets = out.gets.filter((g) => g.startsWith('snapshots/')).length
  return out
}

const figures: string[] = []

t.test('probe mode restic against restic repositories in s3rver over TLS', { skip: restic ? false : 'restic is not installed (apt-get install restic); these tests need the real restic CLI' }, async (t) => {
  const s3 = await startTlsS3rver()
  t.teardown(s3.close)
  const tmp = await mkdtemp(join(tmpdir(), 'smart-restore-restic-probe-'))
  t.teardown(() => rm(tmp, { recursive: true, force: true }))
  const passwordFile = join(tmp, 'restic-password')
  await writeFile(passwordFile, `${PW}\n`) // an editor's final newline is not part of it

  let v2!: MadeRepo
  let v1!: MadeRepo
  let v2Json!: ResticSnapshotJson[]
  let v1Json!: ResticSnapshotJson[]
  let otherJson!: ResticSnapshotJson[]
  let manyJson!: ResticSnapshotJson[]
  const localDir = join(tmp, 'local')
  const setupStarted = performance.now()
  await Promise.all([
    (async () => {
      v2 = await makeResticRepo(s3, { key: V2, password: PW, version: 2, snapshots: V2_SNAPSHOTS })
      await settleMtimes(s3, V2, v2, V2_SNAPSHOTS)
      v2Json = await listSnapshots(s3, V2, PW)
    })(),
    (async () => {
      v1 = await makeResticRepo(s3, { key: V1, password: PW, version: 1, snapshots: V1_SNAPSHOTS })
      await settleMtimes(s3, V1, v1, V1_SNAPSHOTS)
      v1Json = await listSnapshots(s3, V1, PW)
    })(),
    makeResticRepo(s3, { key: EMPTY, password: PW }),
    makeResticRepo(s3, { key: FORGOTTEN, password: PW, snapshots: [{ time: '2026-10-01T00:00:00Z' }], forgetAll: true }),
    (async () => {
      const other = await makeResticRepo(s3, { key: OTHER, password: PW, snapshots: OTHER_SNAPSHOTS })
      await settleMtimes(s3, OTHER, other, OTHER_SNAPSHOTS)
      otherJson = await listSnapshots(s3, OTHER, PW)
    })(),
    (async () => {
      await makeManySnapshots(s3)
      manyJson = await listSnapshots(s3, MANY, PW)
    })(),
    makeLocalRepo(join(localDir, 'media/local-claim'), join(tmp, 'local-cache'), [{ time: '2026-11-22T03:00:41Z' }, { time: '2026-11-23T03:00:41Z' }]),
  ])
  figures.push(`setup (7 repositories written by restic, in parallel): ${Math.round(performance.now() - setupStarted)} ms`)

  const base = (over: { probe?: Partial<StoreConfig['probe']>; s3?: Partial<StoreConfig['s3']> } = {}): StoreConfig =>
    storeConfig(s3.endpoint, { probe: { mode: 'restic', deadlineMs: DEADLINE_MS, cacheTtlMs: 0, ...over.probe }, s3: { caBundle: s3.caFile, ...over.s3 } })
  const filePassword = (): PasswordSource => {
    const source = passwordSourceFor({ ...defaultConfig, store: { ...base(), passwordFile } })
    if (!source) throw new Error('passwordSourceFor gave no source for store.passwordFile')
    return source
  }
  /** A fresh store (nothing cached, no master key): every probe through it is cold. */
  /** `password`: the source to use; 'file' (default) reads store.passwordFile, 'none' configures none. */
  const fresh = (tt: Tap, config: StoreConfig = base(), password: PasswordSource | 'file' | 'none' = 'file'): BackupStore => {
    const store = createBackupStore(config, { password: password === 'file' ? filePassword() : password === 'none' ? undefined : password })
    tt.teardown(() => store.close())
    return store
  }
  const measure = async (store: BackupStore, key: string, options?: ProbeOptions, server: TlsS3rver = s3) => {
    const from = server.log.length
    const started = performance.now()
    const result = await store.probe(key, options)
    return { result, ms: Math.round(performance.now() - started), ...traffic(server, from, key) }
  }

  t.test('the repositories are what the tests assume', async (t) => {
    t.same(v2Json.map((s) => s.id), v2.snapshotIds, 'restic lists the v2 snapshots oldest first')
    t.same(v1Json.map((s) => s.id), v1.snapshotIds)
    t.equal(manyJson.length, MANY_COUNT, 'restic reads all 40 snapshots of the synthetic repository')
    t.same(
      manyJson.map((s) => s.time),
      Array.from({ length: MANY_COUNT }, (_, i) => new Date(MANY_FIRST + i * DAY).toISOString().replace('.000Z', 'Z')),
    )
    t.same(otherJson.map((s) => s.paths), [['/srv/other'], ['/srv/other']])
  })

  for (const [name, key, version, json] of [
    ['v2', V2, 2, () => v2Json],
    ['v1', V1, 1, () => v1Json],
  ] as const) {
    t.test(`repository ${name}`, async (t) => {
      t.test('readAll: every snapshot, as `restic snapshots --json` lists them', async (t) => {
        const m = await measure(fresh(t), key, { readAll: true })
        const listing = listingOf(t, m.result)
        t.equal(listing.version, version)
        t.equal(listing.total, json().length)
        t.equal(listing.complete, true)
        t.same(listing.snapshots.map(view), json().map(view))
        t.equal(m.snapshotGets, json().length, 'each snapshot file fetched once')
        t.same(m.lists.sort(), ['keys/', 'snapshots/'])
        t.equal(m.gets.filter((g) => g.startsWith('keys/')).length, 1, 'one key file')
        t.equal(m.gets.filter((g) => g === 'config').length, 1)
        t.match(m.result, { location: `s3://${BUCKET}/${key}`, detail: new RegExp(`^${json().length} snapshot\\(s\\)`) })
        figures.push(`${name} cold readAll: ${m.lists.length} LIST, ${m.gets.length} GET (${m.snapshotGets} snapshot), ${m.ms} ms`)
      })

      t.test('default: only the newest snapshot file is fetched', async (t) => {
        const store = fresh(t)
        const m = await measure(store, key)
        const listing = listingOf(t, m.result)
        const newest = json().at(-1)!
        t.equal(listing.version, version)
        t.same(listing.snapshots.map(view), [view(newest)])
        t.equal(listing.total, json().length)
        t.equal(listing.complete, false)
        t.same(m.gets.sort(), ['config', m.gets.find((g) => g.startsWith('keys/')), `snapshots/${newest.id}`].sort(), 'key file, config, newest snapshot')
        t.same(m.lists.sort(), ['keys/', 'snapshots/'])
        t.equal(m.other, 0, 'nothing else')
        const { derivations, derivationMs } = readerOf(store).keys.stats
        t.equal(derivations, 1)
        figures.push(`${name} cold default: ${m.lists.length} LIST, ${m.gets.length} GET (${m.snapshotGets} snapshot), ${m.ms} ms, scrypt ${Math.round(derivationMs)} ms`)
      })
    })
  }

  t.test('selection: restoreAsOf and previous read what they need', async (t) => {
    // Everything, from the probe itself (checked against restic above).
    const all = listingOf(t, await fresh(t).probe(V2, { readAll: true })).snapshots
    const cases: Array<[string, SnapshotSelection, { reads: number; complete: boolean }]> = [
      ['restoreAsOf between two snapshots', { restoreAsOf: '2026-11-21T12:00:00Z' }, { reads: 3, complete: false }],
      ['restoreAsOf exactly at a snapshot (whole seconds)', { restoreAsOf: '2026-11-22T03:00:41Z' }, { reads: 3, complete: false }],
      ['restoreAsOf after the newest', { restoreAsOf: '2027-01-01T00:00:00Z' }, { reads: 1, complete: false }],
      ['previous: 1', { previous: 1 }, { reads: 3, complete: false }],
      ['previous: 3 (the oldest)', { previous: 3 }, { reads: 4, complete: true }],
      ['restoreAsOf and previous', { restoreAsOf: '2026-11-22T12:00:00Z', previous: 1 }, { reads: 3, complete: false }],
      ['restoreAsOf before the oldest: nothing selectable, all read', { restoreAsOf: '2026-11-01T00:00:00Z' }, { reads: 4, complete: true }],
      ['previous past the oldest: all read', { previous: 4 }, { reads: 4, complete: true }],
    ]
    for (const [name, selection, expected] of cases) {
      t.test(name, async (t) => {
        const m = await measure(fresh(t), V2, selection)
        const listing = listingOf(t, m.result)
        const want = selectSnapshot(all, selection)
        const got = selectSnapshot(listing.snapshots, selection)
        t.equal(got.selected?.id, want.selected?.id, 'what was read selects what all of them select')
        t.equal(got.why, want.why)
        if (want.selected) t.ok(listing.snapshots.some((s) => s.id === want.selected!.id), 'the selected snapshot is among those read')
        t.equal(listing.snapshots.length, expected.reads, 'snapshots read')
        t.equal(m.snapshotGets, listing.snapshots.length, 'each read snapshot fetched once')
        t.equal(listing.complete, expected.complete)
        t.equal(listing.complete, listing.snapshots.length === listing.total, 'complete says whether every snapshot was read')
        // Every snapshot not read is older than the one selected (that is what lets reading stop).
        const readIds = new Set(listing.snapshots.map((s) => s.id))
        for (const s of all.filter((s) => !readIds.has(s.id))) t.ok(want.selected && s.epochSeconds < want.selected.epochSeconds, `unread ${s.time} is older than the selection`)
      })
    }
  })

  t.test('init-only repository: none, and the password is never asked for', async (t) => {
    let asked = 0
    const store = fresh(t, base(), async () => {
      asked++
      throw new PasswordUnavailableError('must not be asked')
    })
    const m = await measure(store, EMPTY)
    t.match(m.result, { state: 'none', location: `s3://${BUCKET}/${EMPTY}`, detail: /no snapshot/ })
    t.equal(asked, 0)
    t.same(m.lists, ['snapshots/'], 'one LIST')
    t.same(m.gets, [], 'no GET')
    t.equal(readerOf(store).keys.stats.derivations, 0)
  })

  t.test('every snapshot forgotten: none', async (t) => {
    t.match(await fresh(t).probe(FORGOTTEN), { state: 'none' })
    t.match(await fresh(t, base(), 'none').probe(FORGOTTEN), { state: 'none' }, 'without a password too')
  })

  t.test('snapshots of another path: exists, every one read, nothing selectable', async (t) => {
    const m = await measure(fresh(t), OTHER)
    const listing = listingOf(t, m.result)
    t.same(listing.snapshots.map(view), otherJson.map(view))
    t.same(listing.snapshots.map((s) => s.paths), [['/srv/other'], ['/srv/other']])
    t.same(listing.snapshots.map((s) => s.hostname), ['other-host', 'other-host'])
    t.equal(listing.complete, true, 'nothing selectable: reading cannot stop early')
    t.equal(m.snapshotGets, 2)
    const outcome = selectSnapshot(listing.snapshots)
    t.equal(outcome.selected, undefined)
    t.equal(outcome.why, 'no-data-path', 'the decision layer denies it')
  })

  t.test('wrong password: unreadable (password), naming the repository', async (t) => {
    const store = fresh(t, base(), async () => 'not the password')
    const r = await store.probe(V2)
    t.match(r, { state: 'unreadable', kind: 'password', location: `s3://${BUCKET}/${V2}` })
    if (r.state === 'unreadable') t.match(r.reason, `s3://${BUCKET}/${V2}`)
    t.match(await store.probe(V2), { state: 'unreadable', kind: 'password' }, 'again: still no crash')
  })

  t.test('no password configured: unknown (password)', async (t) => {
    const r = await fresh(t, base(), 'none').probe(V2)
    t.match(r, { state: 'unknown', kind: 'password', reason: /no repository password/ })
  })

  t.test('an empty store.passwordFile: unknown (password)', async (t) => {
    const empty = join(tmp, 'empty-password')
    await writeFile(empty, '\n')
    const source = passwordSourceFor({ ...defaultConfig, store: { ...base(), passwordFile: empty } })
    t.ok(source)
    t.match(await fresh(t, base(), source!).probe(V2), { state: 'unknown', kind: 'password', reason: /is empty/ })
    const missing = passwordSourceFor({ ...defaultConfig, store: { ...base(), passwordFile: join(tmp, 'nope') } })
    t.match(await fresh(t, base(), missing!).probe(V2), { state: 'unknown', kind: 'password', reason: /ENOENT/ })
  })

  t.test('damaged snapshot files: unreadable (corrupt)', async (t) => {
    t.test('bytes that no longer hash to the file name', async (t) => {
      const key = 'broken/hash'
      await copyRepo(s3, V2, key)
      const newest = v2.snapshotIds.at(-1)!
      const file = objectFile(s3, key, `snapshots/${newest}`)
      const bytes = await readFile(file)
      bytes[bytes.length - 20]! ^= 0xff
      await writeFile(file, bytes)
      await uploadedAt(file, V2_SNAPSHOTS.at(-1)!.time)
      const r = await fresh(t).probe(key)
      t.match(r, { state: 'unreadable', kind: 'corrupt', location: `s3://${BUCKET}/${key}` })
      if (r.state === 'unreadable') t.match(r.reason, /does not hash to its name/)
    })

    t.test('a file named after its (damaged) bytes: the MAC fails', async (t) => {
      const key = 'broken/mac'
      await copyRepo(s3, V2, key)
      const newest = v2.snapshotIds.at(-1)!
      const original = objectFile(s3, key, `snapshots/${newest}`)
      const bytes = await readFile(original)
      bytes[20]! ^= 0x01 // inside the ciphertext
      const id = createHash('sha256').update(bytes).digest('hex')
      await rm(original)
      await rm(`${original.slice(0, -'object'.length)}metadata.json`, { force: true })
      await rm(`${original}.md5`, { force: true })
      const file = objectFile(s3, key, `snapshots/${id}`)
      await writeFile(file, bytes)
      await uploadedAt(file, V2_SNAPSHOTS.at(-1)!.time)
      const r = await fresh(t).probe(key)
      t.match(r, { state: 'unreadable', kind: 'corrupt', location: `s3://${BUCKET}/${key}` })
      if (r.state === 'unreadable') t.match(r.reason, /MAC/)
    })

    t.test('an old snapshot damaged: the default probe does not read it, readAll does', async (t) => {
      const key = 'broken/old'
      await copyRepo(s3, V2, key)
      const file = objectFile(s3, key, `snapshots/${v2.snapshotIds[0]!}`)
      const bytes = await readFile(file)
      bytes[bytes.length - 1]! ^= 0xff
      await writeFile(file, bytes)
      await uploadedAt(file, V2_SNAPSHOTS[0]!.time)
      t.match(await fresh(t).probe(key), { state: 'exists' }, 'the selection never reaches it')
      t.match(await fresh(t).probe(key, { readAll: true }), { state: 'unreadable', kind: 'corrupt' })
    })

    t.test('a damaged config file', async (t) => {
      const key = 'broken/config'
      await copyRepo(s3, V2, key)
      const file = objectFile(s3, key, 'config')
      const bytes = await readFile(file)
      bytes[bytes.length - 1]! ^= 0xff
      await writeFile(file, bytes)
      const r = await fresh(t).probe(key)
      t.match(r, { state: 'unreadable', kind: 'corrupt', location: `s3://${BUCKET}/${key}` })
      if (r.state === 'unreadable') t.match(r.reason, /config.*MAC/)
    })

    t.test('a damaged key file', async (t) => {
      const key = 'broken/key'
      await copyRepo(s3, V2, key)
      const [name] = (await readdir(join(s3.directory, BUCKET, key, 'keys'))).filter((n) => n.endsWith('._S3rver_object'))
      await writeFile(join(s3.directory, BUCKET, key, 'keys', name!), '{"kdf":"scrypt","N":')
      t.match(await fresh(t).probe(key), { state: 'unreadable', kind: 'corrupt' })
    })

    t.test('a key file with scrypt parameters restic never writes', async (t) => {
      const key = 'broken/scrypt'
      await copyRepo(s3, V2, key)
      const dir = join(s3.directory, BUCKET, key, 'keys')
      const [name] = (await readdir(dir)).filter((n) => n.endsWith('._S3rver_object'))
      const keyFile = JSON.parse(await readFile(join(dir, name!), 'utf8')) as Record<string, unknown>
      await writeFile(join(dir, name!), JSON.stringify({ ...keyFile, N: 3 }))
      const r = await fresh(t).probe(key)
      t.match(r, { state: 'unreadable', kind: 'corrupt', location: `s3://${BUCKET}/${key}` })
      if (r.state === 'unreadable') t.match(r.reason, /N=3 is not a power of two/, 'says what is wrong, does not blame S3')
    })

    t.test('snapshot files without keys/ or config: not a repository', async (t) => {
      const key = 'broken/no-keys'
      await cp(join(s3.directory, BUCKET, V2, 'snapshots'), join(s3.directory, BUCKET, key, 'snapshots'), { recursive: true, preserveTimestamps: true })
      t.match(await fresh(t).probe(key), { state: 'unreadable', kind: 'not-a-repository' })
    })
  })

  t.test('warm probe: one LIST, no GET, no second scrypt', async (t) => {
    const store = fresh(t) // cacheTtlMs 0: the CachedStore answers nothing itself
    const cold = await measure(store, V2)
    const stats = readerOf(store).keys.stats
    t.equal(stats.derivations, 1)
    const warm = await measure(store, V2)
    const listing = listingOf(t, warm.result)
    t.same(listing.snapshots.map(view), listingOf(t, cold.result).snapshots.map(view), 'the same answer')
    t.same(warm.lists, ['snapshots/'], 'one LIST')
    t.same(warm.gets, [], 'no GET')
    t.equal(stats.derivations, 1, 'master key not derived again')
    // Another selection on the warm store fetches only what it adds, still without scrypt.
    const asOf = '2026-11-21T12:00:00Z'
    const older = await measure(store, V2, { restoreAsOf: asOf })
    const olderListing = listingOf(t, older.result)
    t.equal(selectSnapshot(olderListing.snapshots, { restoreAsOf: asOf }).selected?.id, v2.snapshotIds[1])
    t.equal(older.snapshotGets, olderListing.snapshots.length - 1, 'the newest came from memory, the rest fetched once')
    t.equal(stats.derivations, 1)
    figures.push(`v2 warm default: ${warm.lists.length} LIST, ${warm.gets.length} GET, ${warm.ms} ms (cold ${cold.ms} ms)`)
  })

  t.test('without store.s3.caBundle the TLS endpoint is unknown (network), never none', async (t) => {
    const noCa = storeConfig(s3.endpoint, { probe: { mode: 'restic', deadlineMs: DEADLINE_MS, cacheTtlMs: 0 } })
    t.equal(noCa.s3.caBundle, undefined)
    for (const key of [V2, EMPTY]) {
      const r = await fresh(t, noCa).probe(key)
      t.match(r, { state: 'unknown', kind: 'network', reason: /TLS|certificate/i }, key)
    }
  })

  t.test('S3 failing mid-read: unknown, never none', async (t) => {
    t.test('the deadline passes after the LIST, while the repository is being opened', async (t) => {
      // The password source is asked right after the LIST found snapshot files; holding it past the
      // deadline puts the deadline mid-read whatever this machine's scrypt speed.
      let release!: () => void
      const held = new Promise<void>((resolve) => (release = resolve))
      t.teardown(() => release())
      const store = fresh(t, base({ probe: { deadlineMs: 300 } }), async () => {
        await held
        return PW
      })
      const m = await measure(store, V2)
      t.match(m.result, { state: 'unknown', kind: 'timeout', reason: /300 ms deadline/ })
      t.same(m.lists, ['snapshots/'], 'the LIST had answered')
    })

    t.test('the server goes away while a snapshot file is being fetched', async (t) => {
      const other = await startTlsS3rver()
      t.teardown(other.close)
      await copyRepo(s3, V2, V2, other)
      const cfg = storeConfig(other.endpoint, { probe: { mode: 'restic', deadlineMs: DEADLINE_MS, cacheTtlMs: 0 }, s3: { caBundle: other.caFile } })
      const store = fresh(t, cfg)
      // The helper records each request from s3rver's 'request' event: close the server right there,
      // while the first snapshot GET is in flight (its socket is destroyed with the others).
      const push = other.log.push.bind(other.log)
      let closedAt: string | undefined
      other.log.push = (...items) => {
        const n = push(...items)
        const hit = items.find((r) => r.method === 'GET' && r.path.startsWith(`/${BUCKET}/${V2}/snapshots/`))
        if (hit && closedAt === undefined) {
          closedAt = hit.path
          void other.close()
        }
        return n
      }
      const m = await measure(store, V2, undefined, other)
      t.ok(closedAt, 'the server went away during a snapshot GET')
      t.ok(m.gets.some((g) => g.startsWith('keys/')) && m.gets.includes('config'), 'key file and config had been read')
      t.match(m.result, { state: 'unknown', kind: 'network' })
      t.not(m.result.state, 'none')
    })

    t.test('the server is gone before the LIST', async (t) => {
      const other = await startTlsS3rver()
      const cfg = storeConfig(other.endpoint, { probe: { mode: 'restic', deadlineMs: 3000, cacheTtlMs: 0 }, s3: { caBundle: other.caFile } })
      const store = fresh(t, cfg) // reads the CA file, which close() removes
      await other.close()
      t.match(await store.probe(V2), { state: 'unknown', kind: 'network', reason: /ECONNREFUSED/ })
    })
  })

  t.test(`${MANY_COUNT}-snapshot repository: a cold probe reads the newest only`, async (t) => {
    const store = fresh(t)
    const cold = await measure(store, MANY)
    const listing = listingOf(t, cold.result)
    t.equal(listing.total, MANY_COUNT)
    t.same(listing.snapshots.map(view), [view(manyJson.at(-1)!)])
    t.same(cold.lists.sort(), ['keys/', 'snapshots/'])
    t.equal(cold.gets.length, 3, 'key file, config, newest snapshot')
    const warm = await measure(store, MANY)
    t.same(warm.lists, ['snapshots/'])
    t.same(warm.gets, [])
    const asOf = await measure(store, MANY, { restoreAsOf: new Date(MANY_FIRST + 20 * DAY + 3600_000).toISOString() })
    const asOfListing = listingOf(t, asOf.result)
    t.equal(selectSnapshot(asOfListing.snapshots, { restoreAsOf: new Date(MANY_FIRST + 20 * DAY + 3600_000).toISOString() }).selected?.time, manyJson[20]!.time)
    const all = await measure(store, MANY, { readAll: true })
    t.same(listingOf(t, all.result).snapshots.map(view), manyJson.map(view), 'readAll: the 40 snapshots restic lists')
    t.equal(cold.snapshotGets + asOf.snapshotGets + all.snapshotGets, MANY_COUNT, 'every file fetched once over the three probes')
    const readAllCold = await measure(fresh(t), MANY, { readAll: true })
    t.equal(readAllCold.snapshotGets, MANY_COUNT)
    const stats = readerOf(store).keys.stats
    figures.push(
      `${MANY_COUNT} snapshots: cold default ${cold.lists.length} LIST + ${cold.gets.length} GET (${cold.snapshotGets} snapshot) ${cold.ms} ms; ` +
        `warm ${warm.lists.length} LIST + ${warm.gets.length} GET ${warm.ms} ms; restoreAsOf 20 days back then ${asOf.snapshotGets} more snapshot GET(s) ${asOf.ms} ms; ` +
        `cold readAll ${readAllCold.lists.length} LIST + ${readAllCold.gets.length} GET ${readAllCold.ms} ms; scrypt ${stats.derivations} derivation(s), ${Math.round(stats.derivationMs)} ms`,
    )
  })

  t.test('local directory store (restic local backend)', async (t) => {
    const cfg: StoreConfig = { ...defaultConfig.store, type: 'local', local: { directory: localDir }, probe: { ...defaultConfig.store.probe, mode: 'restic', deadlineMs: DEADLINE_MS, cacheTtlMs: 0 } }
    const localJson = JSON.parse(
      await new Promise<string>((resolve, reject) =>
        execFile(restic!, ['--repo', join(localDir, 'media/local-claim'), 'snapshots', '--json'], { env: { PATH: process.env.PATH, RESTIC_PASSWORD: PW, RESTIC_CACHE_DIR: join(tmp, 'local-cache'), TZ: 'UTC' } }, (err, out) => (err ? reject(err) : resolve(out))),
      ),
    ) as ResticSnapshotJson[]
    t.equal(localJson.length, 2)

    const store = fresh(t, cfg)
    const r = await store.probe('media/local-claim')
    const listing = listingOf(t, r)
    t.equal(listing.version, 2)
    t.same(listing.snapshots.map(view), [view(localJson.at(-1)!)], 'only the newest read')
    t.same(listing.snapshots[0]?.paths, ['/data'])
    t.equal(listing.total, 2)
    t.match(r, { location: `file://${join(localDir, 'media/local-claim')}` })
    const all = listingOf(t, await store.probe('media/local-claim', { readAll: true }))
    t.same(all.snapshots.map(view), localJson.map(view))
    t.equal(readerOf(store).keys.stats.derivations, 1)

    t.match(await fresh(t, cfg, async () => 'wrong').probe('media/local-claim'), { state: 'unreadable', kind: 'password' })
    t.match(await fresh(t, cfg, 'none').probe('media/local-claim'), { state: 'unknown', kind: 'password' })

    // The same repository with its snapshot files gone (forget without prune): none, no password asked.
    await cp(join(localDir, 'media/local-claim'), join(localDir, 'media/local-forgotten'), { recursive: true })
    for (const s of localJson) await rm(join(localDir, 'media/local-forgotten/snapshots', s.id), { force: true })
    t.match(await fresh(t, cfg, 'none').probe('media/local-forgotten'), { state: 'none' })
  })

  t.test('figures', async (t) => {
    t.ok(figures.length > 0)
    for (const f of figures) t.comment(f)
  })
})
