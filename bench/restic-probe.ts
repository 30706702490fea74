/**
 * Probe mode restic (the default `store.probe.mode`): what one decision costs on a repository of 40
 * snapshots, in S3 requests and in time, against list mode on the same repository in the same run.
 *
 * Run by bench/run.ts (scenario id `restic`, after the service's scenarios, when the machine is
 * quiet) or alone: `node --import tsx bench/restic-probe.ts` (prints, writes nothing).
 *
 * The store is the service's own (createBackupStore: S3BackupStore behind the CachedStore), in this
 * process, against its own s3rver on loopback (plain HTTP), with defaultConfig's probe deadline and
 * `cacheTtlMs: 0`, so the CachedStore never answers and a "warm" decision is the reader's caches
 * (master key, decrypted snapshots) only. Requests are counted at s3rver (its request log), by kind.
 *
 * The repository: 40 snapshots of /data a day apart, written with writeResticRepository
 * (src/storage/restic/writer.ts). Its key file uses cheap scrypt parameters (N=1024); real restic
 * calibrates scrypt at `restic init` to ~0.5 s on the machine that runs it, so the key file is
 * re-wrapped here with restic's parameters (RESTIC_SCRYPT below). Each snapshot object's
 * LastModified (s3rver: the file's mtime) is set to its snapshot time + 30 s, as an upload right
 * after the backup leaves it; one copy has every LastModified equal (a bucket copied in one go).
 *
 * Copies under other keys (same config and snapshot files):
 *   bench/restic-40             restic's scrypt, LastModified = time + 30 s  (the repository measured)
 *   bench/restic-40-writer-key  the writer's scrypt                          (cold cost without scrypt)
 *   bench/restic-40-copied      restic's scrypt, every LastModified equal    (the ordering says nothing)
 *   bench/warm-up               the writer's scrypt                          (one untimed pass first)
 *
 * "Snapshot GETs needed": the fewest snapshot files any reader must fetch when S3 LastModified only
 * bounds a snapshot's time from above (time <= LastModified + the reader's clock-skew margin): the
 * selected snapshot and every file that may be newer than it, less those already read. The reader's
 * own stop rule is not used to compute it.
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { cp, utimes } from 'node:fs/promises'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { defaultConfig, type StoreConfig } from '../src/config/schema.js'
import { selectSnapshot, type SnapshotSelection } from '../src/decide/select-snapshot.js'
import { createBackupStore } from '../src/storage/index.js'
import { deriveKey, open, seal, type ScryptParams } from '../src/storage/restic/crypto.js'
import { parseKeyFile, type Snapshot } from '../src/storage/restic/format.js'
import { CLOCK_SKEW_MS, type ResticReader } from '../src/storage/restic/reader.js'
import { writeResticRepository } from '../src/storage/restic/writer.js'
import type { BackupStore, ProbeOptions, ProbeResult } from '../src/storage/types.js'
import { BUCKET, S3RVER_KEY, seedObjects, startS3rver } from '../test/helpers/storage-servers.js'
import { machineBusyMs } from './lib/proc.js'
import { startProxy } from './lib/proxy.js'
import { allowS3rverTruncatedListings } from './lib/s3rver-des.js'
import { fmt, percentiles } from './lib/stats.js'
import { textTable } from './lib/tables.js'

const PASSWORD = 'bench-restic-password'
export const SNAPSHOTS = 40
const FIRST = Date.parse('2026-10-01T02:00:00Z')
const DAY = 86_400_000
/** restore-as-of one hour after the snapshot of day 20 (of 0..39): the middle of the 40. */
const AS_OF_INDEX = 20
const AS_OF = new Date(FIRST + AS_OF_INDEX * DAY + 3_600_000).toISOString()

/**
 * restic's own scrypt parameters. restic 0.14 (internal/crypto/kdf.go, Calibrate with 500 ms and
 * 60 MiB) fixes r = 8 and N = 2^15 and raises p until one derivation takes ~0.5 s (Go's scrypt) on
 * the machine that runs `restic init`. restic 0.14.0 `init` on this bench machine (2 cores, AMD EPYC,
 * 2026-12-05) wrote N=32768 r=8 p=7 in 3 runs of 4 (p=6 in one): those are used, fixed, so runs
 * compare. BENCH_RESTIC_SCRYPT=N,r,p overrides (e.g. the p a faster backup host calibrates).
 */
export const RESTIC_SCRYPT = ((): { N: number; r: number; p: number; source: string } => {
  const over = process.env.BENCH_RESTIC_SCRYPT
  if (over) {
    const [N, r, p] = over.split(',').map(Number)
    if (![N, r, p].every((v) => Number.isInteger(v) && v! > 0)) throw new Error(`BENCH_RESTIC_SCRYPT=${over}: expected N,r,p`)
    return { N: N!, r: r!, p: p!, source: 'BENCH_RESTIC_SCRYPT' }
  }
  return { N: 32768, r: 8, p: 7, source: 'what restic 0.14.0 `init` calibrated on this machine' }
})()

type Mode = 'list' | 'restic'

interface Traffic {
  listSnapshots: number
  listKeys: number
  getKey: number
  getConfig: number
  /** Snapshot ids fetched, in order. */
  snapshotIds: string[]
  other: number
}

export interface Sample extends Traffic {
  /** The answer's state (always exists, except where a row allows others: the concurrent one). */
  state: ProbeResult['state']
  ms: number
  /** scrypt derivations during this decision, and their time (the reader's own stats). */
  derivations: number
  scryptMs: number
  /** Snapshot files any reader needs (see the header), for this decision's selection and cache. */
  needed?: number
}

export interface ResticRow {
  id: string
  title: string
  mode: Mode
  temperature: 'cold' | 'warm'
  latencyMs: number
  /** The row whose p50 the ms are compared with (list mode, same temperature and latency). */
  versus?: string
  /** A decision (default or as-of selection), not a readAll listing. */
  decision: boolean
  /** Its samples ran at the same time (their scrypt times overlap: not shown). */
  concurrent?: boolean
  samples: Sample[]
}

export interface ResticFigures {
  snapshots: number
  runs: number
  latencyMs: number
  deadlineMs: number
  scrypt: {
    restic: { N: number; r: number; p: number; source: string; ms: number[] }
    writer: { N: number; r: number; p: number; ms: number[] }
  }
  rows: ResticRow[]
  /** What the real restic CLI says of the repository measured (undefined: restic not installed). */
  resticCli?: string
  setupMs: number
  wallMs: number
  /** CPU over the measurements, % of one core: this process (store, s3rver, scrypt) and everything else on the machine. */
  cpuPct: { own: number; other: number }
}

interface Repo {
  files: Map<string, Buffer>
  ids: string[]
  /** Ground truth, oldest first (what the files hold). */
  truth: Snapshot[]
}

function snapshotTime(i: number): string {
  return new Date(FIRST + i * DAY).toISOString().replace('.000Z', 'Z')
}

/** The same repository with its key file re-sealed under a key derived with `params` (new salt). */
async function rewrapKey(files: Map<string, Buffer>, params: { N: number; r: number; p: number }): Promise<Map<string, Buffer>> {
  const [path, bytes] = [...files].find(([p]) => p.startsWith('keys/'))!
  const keyFile = parseKeyFile(bytes, path)
  const master = open(keyFile.data, await deriveKey(PASSWORD, keyFile.scrypt), path)
  const salt = randomBytes(64)
  const userKey = await deriveKey(PASSWORD, { ...params, salt })
  const json = { ...JSON.parse(bytes.toString('utf8')), N: params.N, r: params.r, p: params.p, salt: salt.toString('base64'), data: seal(master, userKey, randomBytes(16)).toString('base64') }
  const rewrapped = Buffer.from(JSON.stringify(json))
  const out = new Map([...files].filter(([p]) => !p.startsWith('keys/')))
  out.set(`keys/${createHash('sha256').update(rewrapped).digest('hex')}`, rewrapped)
  return out
}

function ownCpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

function median(xs: number[]): number {
  return percentiles(xs, [50])[0]!
}

/** "a" when every value is a, else "a–b". */
function span(xs: number[]): string {
  const lo = Math.min(...xs)
  const hi = Math.max(...xs)
  return lo === hi ? String(lo) : `${lo}–${hi}`
}

export async function measureResticProbe(opts: { runs?: number; latencyMs?: number; concurrent?: number; log?: (msg: string) => void } = {}): Promise<ResticFigures> {
  const runs = opts.runs ?? 5
  const concurrent = opts.concurrent ?? 8
  const latencyMs = opts.latencyMs ?? 20
  const log = opts.log ?? (() => {})
  const started = performance.now()
  const deadlineMs = defaultConfig.store.probe.deadlineMs

  // list mode's max-keys 1 on 40 snapshot files is a truncated listing: s3rver needs DES for its token.
  allowS3rverTruncatedListings()
  const s3 = await startS3rver()
  const proxy = await startProxy(s3.port)
  try {
    // ---------------------------------------------------------------------------------------
    // The repositories
    const written = await writeResticRepository(
      PASSWORD,
      Array.from({ length: SNAPSHOTS }, (_, i) => ({ time: snapshotTime(i) })),
    )
    const truth: Snapshot[] = written.snapshotIds.map((id, i) => ({ id, time: snapshotTime(i), epochSeconds: (FIRST + i * DAY) / 1000, nanos: 0, hostname: 'volsync', paths: ['/data'], tags: [] }))
    const writerKey = [...written.files].find(([p]) => p.startsWith('keys/'))!
    const writerParams = parseKeyFile(writerKey[1], writerKey[0]).scrypt
    const withResticKey = await rewrapKey(written.files, RESTIC_SCRYPT)
    const repo = (files: Map<string, Buffer>): Repo => ({ files, ids: written.snapshotIds, truth })
    const MAIN = 'bench/restic-40'
    const WRITER = 'bench/restic-40-writer-key'
    const COPIED = 'bench/restic-40-copied'
    const WARMUP = 'bench/warm-up'
    const repos = new Map<string, Repo>([
      [MAIN, repo(withResticKey)],
      [WRITER, repo(written.files)],
      [COPIED, repo(withResticKey)],
      [WARMUP, repo(written.files)],
    ])
    for (const [key, r] of repos) await seedObjects(s3.endpoint, [...r.files].map(([p, b]) => [`${key}/${p}`, b]))
    /** LastModified of each snapshot object (whole seconds, as S3 reports it). */
    const lastModified = new Map<string, Map<string, number>>()
    const copiedAt = Math.floor(Date.now() / 1000) * 1000
    for (const key of repos.keys()) {
      const lm = new Map<string, number>()
      for (const [i, id] of written.snapshotIds.entries()) {
        const at = key === COPIED ? copiedAt : FIRST + i * DAY + 30_000
        const file = join(s3.directory, BUCKET, key, `snapshots/${id}._S3rver_object`)
        await utimes(file, new Date(at), new Date(at))
        lm.set(id, at)
      }
      lastModified.set(key, lm)
    }
    const setupMs = performance.now() - started
    const cpuAt = { wall: performance.now(), own: ownCpuMs(), machine: machineBusyMs() }
    log(`restic: ${repos.size} copies of a ${SNAPSHOTS}-snapshot repository in s3rver (${Math.round(setupMs)} ms)`)

    // ---------------------------------------------------------------------------------------
    // Measuring one decision
    const storeFor = (mode: Mode, endpoint: string): BackupStore => {
      const cfg: StoreConfig = {
        ...defaultConfig.store,
        type: 's3',
        s3: { endpoint, region: 'us-east-1', bucket: BUCKET, forcePathStyle: true, accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY },
        probe: { ...defaultConfig.store.probe, mode, cacheTtlMs: 0 },
      }
      return createBackupStore(cfg, { password: async () => PASSWORD })
    }
    const readerOf = (store: BackupStore): ResticReader | undefined => (store as unknown as { inner?: { reader?: ResticReader } }).inner?.reader
    /** Snapshot ids each store has read so far (its reader keeps them). */
    const readBy = new WeakMap<BackupStore, Set<string>>()

    /** This repository's requests since `from`; another repository's (decisions running alongside) are not counted. */
    const traffic = (from: number, key: string): Traffic => {
      const out: Traffic = { listSnapshots: 0, listKeys: 0, getKey: 0, getConfig: 0, snapshotIds: [], other: 0 }
      const others = [...repos.keys()].filter((k) => k !== key).map((k) => `${k}/`)
      for (const r of s3.log.slice(from)) {
        const url = new URL(r.path, 'http://s3.invalid')
        const path = decodeURIComponent(url.pathname)
        const base = `/${BUCKET}/${key}/`
        const target = url.searchParams.has('list-type') ? (url.searchParams.get('prefix') ?? '') : path.slice(`/${BUCKET}/`.length)
        if (others.some((o) => target.startsWith(o))) continue
        if (r.method === 'GET' && url.searchParams.has('list-type')) {
          const prefix = url.searchParams.get('prefix')
          if (prefix === `${key}/snapshots/`) out.listSnapshots++
          else if (prefix === `${key}/keys/`) out.listKeys++
          else out.other++
        } else if (r.method === 'GET' && path.startsWith(base)) {
          const rel = path.slice(base.length)
          if (rel.startsWith('keys/')) out.getKey++
          else if (rel === 'config') out.getConfig++
          else if (rel.startsWith('snapshots/')) out.snapshotIds.push(rel.slice('snapshots/'.length))
          else out.other++
        } else out.other++
      }
      return out
    }

    /** The files any reader must fetch for this selection: see the header. */
    const neededFor = (key: string, options: ProbeOptions, cached: Set<string>): number => {
      const lm = lastModified.get(key)!
      const r = repos.get(key)!
      if (options.readAll) return r.ids.filter((id) => !cached.has(id)).length
      const selected = selectSnapshot(r.truth, options).selected!
      return r.ids.filter((id) => !cached.has(id) && Math.floor((lm.get(id)! + CLOCK_SKEW_MS) / 1000) >= selected.epochSeconds).length
    }

    const check = (mode: Mode, key: string, options: ProbeOptions, result: ProbeResult): void => {
      const fail = (why: string) => {
        throw new Error(`restic probe bench: ${mode} probe of ${key} ${JSON.stringify(options)}: ${why}: ${JSON.stringify(result).slice(0, 400)}`)
      }
      if (result.state !== 'exists') fail(`state ${result.state}, expected exists`)
      if (mode === 'list') return
      const listing = result.state === 'exists' ? result.restic : undefined
      if (!listing) return fail('no restic listing')
      if (listing.total !== SNAPSHOTS) fail(`total ${listing.total}`)
      if (options.readAll) {
        if (!listing.complete || listing.snapshots.length !== SNAPSHOTS) fail('readAll did not read every snapshot')
        return
      }
      const want = selectSnapshot(repos.get(key)!.truth, options).selected!.id
      const got = selectSnapshot(listing.snapshots, options).selected?.id
      if (got !== want) fail(`selected ${got}, expected ${want}`)
    }

    const decide = async (mode: Mode, store: BackupStore, key: string, options: ProbeOptions = {}, anyAnswer = false): Promise<Sample> => {
      const cached = readBy.get(store) ?? new Set<string>()
      readBy.set(store, cached)
      const needed = mode === 'restic' ? neededFor(key, options, cached) : undefined
      const stats = readerOf(store)?.keys.stats
      const before = { derivations: stats?.derivations ?? 0, ms: stats?.derivationMs ?? 0 }
      const from = s3.log.length
      const t0 = performance.now()
      const result = await store.probe(key, options)
      const ms = performance.now() - t0
      if (!anyAnswer || result.state === 'exists') check(mode, key, options, result)
      const seen = traffic(from, key)
      for (const id of seen.snapshotIds) cached.add(id)
      return { ...seen, state: result.state, ms, derivations: (stats?.derivations ?? 0) - before.derivations, scryptMs: (stats?.derivationMs ?? 0) - before.ms, needed }
    }

    const rows = new Map<string, ResticRow>()
    const row = (id: string, title: string, mode: Mode, temperature: 'cold' | 'warm', latency: number, decision = true): ResticRow => {
      let r = rows.get(id)
      if (!r) {
        const versus = mode === 'restic' ? `list ${temperature}${latency ? ` +${latency}ms` : ''}` : undefined
        r = { id, title, mode, temperature, latencyMs: latency, versus, decision, samples: [] }
        rows.set(id, r)
      }
      return r
    }
    const withStore = async <T>(mode: Mode, endpoint: string, fn: (store: BackupStore) => Promise<T>): Promise<T> => {
      const store = storeFor(mode, endpoint)
      try {
        return await fn(store)
      } finally {
        store.close()
      }
    }

    /** One pass of every kind of decision (list and restic, cold and warm). */
    const pass = async (endpoint: string, latency: number, key: string, record: boolean): Promise<void> => {
      const sfx = latency ? ` +${latency}ms` : ''
      const add = (r: ResticRow, s: Sample) => {
        if (record) r.samples.push(s)
      }
      await withStore('list', endpoint, async (store) => {
        add(row(`list cold${sfx}`, `list mode (the baseline): new store${latency ? `, S3 +${latency} ms per answer` : ''}`, 'list', 'cold', latency), await decide('list', store, key))
        add(row(`list warm${sfx}`, 'list mode (the baseline): the same store again', 'list', 'warm', latency), await decide('list', store, key))
      })
      await withStore('restic', endpoint, async (store) => {
        add(row(`restic cold${sfx}`, `new store, key file with restic's scrypt (N=${RESTIC_SCRYPT.N} r=${RESTIC_SCRYPT.r} p=${RESTIC_SCRYPT.p})${latency ? `, S3 +${latency} ms per answer` : ''}`, 'restic', 'cold', latency), await decide('restic', store, key))
        add(row(`restic warm${sfx}`, 'the same store again: master key and newest snapshot cached (probe cache off)', 'restic', 'warm', latency), await decide('restic', store, key))
        add(row(`as-of after cold${sfx}`, `restore-as-of day ${AS_OF_INDEX} of 0–${SNAPSHOTS - 1}, on that store (key and newest cached)`, 'restic', 'warm', latency), await decide('restic', store, key, { restoreAsOf: AS_OF }))
        if (latency) return
        add(row('as-of again', 'the same as-of again', 'restic', 'warm', 0), await decide('restic', store, key, { restoreAsOf: AS_OF }))
        add(row('readAll after', 'readAll (every snapshot, as `check` reads) after the decisions above', 'restic', 'warm', 0, false), await decide('restic', store, key, { readAll: true }))
      })
      if (latency) return
      await withStore('restic', endpoint, async (store) => {
        add(row('as-of cold', `restore-as-of day ${AS_OF_INDEX}: new store`, 'restic', 'cold', 0), await decide('restic', store, key, { restoreAsOf: AS_OF }))
      })
      await withStore('restic', endpoint, async (store) => {
        add(row('readAll cold', 'readAll: new store', 'restic', 'cold', 0, false), await decide('restic', store, key, { readAll: true }))
      })
      const cheap = key === MAIN ? WRITER : key
      await withStore('restic', endpoint, async (store) => {
        add(row('restic cold, writer key', `new store, key file with the writer's scrypt (N=${writerParams.N} r=${writerParams.r} p=${writerParams.p})`, 'restic', 'cold', 0), await decide('restic', store, cheap))
      })
      const copied = key === MAIN ? COPIED : key
      await withStore('restic', endpoint, async (store) => {
        add(row('restic cold, LastModified equal', 'new store, every snapshot object with the same LastModified (a bucket copied in one go)', 'restic', 'cold', 0), await decide('restic', store, copied))
      })
    }

    log('restic: untimed warm-up pass (SDK and JIT), then the measured passes')
    await pass(s3.endpoint, 0, WARMUP, false)
    for (let i = 0; i < runs; i++) await pass(s3.endpoint, 0, MAIN, true)

    // Cold decisions on `concurrent` repositories at once, through one store (as the service after a
    // restart, when PVCs of many repositories are created together): the derivations queue (at most
    // two at a time) on the thread pool. Copies of MAIN, files and LastModified kept. One run.
    if (concurrent > 0) {
      const keys = Array.from({ length: concurrent }, (_, i) => `bench/concurrent-${i}`)
      for (const key of keys) {
        await cp(join(s3.directory, BUCKET, MAIN), join(s3.directory, BUCKET, key), { recursive: true, preserveTimestamps: true })
        repos.set(key, repos.get(MAIN)!)
        lastModified.set(key, lastModified.get(MAIN)!)
      }
      log(`restic: ${concurrent} cold decisions at once on ${concurrent} repositories`)
      const r = row(`restic cold ×${concurrent} at once`, `${concurrent} cold decisions at the same time on ${concurrent} repositories (copies), one store; one run, p50 and max over the ${concurrent}`, 'restic', 'cold', 0)
      r.concurrent = true
      await withStore('restic', s3.endpoint, async (store) => {
        r.samples.push(...(await Promise.all(keys.map((key) => decide('restic', store, key, {}, true)))))
      })
    }
    proxy.setDelay(latencyMs)
    for (let i = 0; i < runs; i++) await pass(proxy.url, latencyMs, MAIN, true)
    proxy.setDelay(0)

    // scrypt alone, through the reader's own deriveKey (libuv's thread pool), one untimed first.
    const timeScrypt = async (params: { N: number; r: number; p: number }, n: number): Promise<number[]> => {
      const ms: number[] = []
      for (let i = 0; i <= n; i++) {
        const salt = randomBytes(64)
        const t0 = performance.now()
        await deriveKey(PASSWORD, { ...params, salt } satisfies ScryptParams)
        if (i > 0) ms.push(performance.now() - t0)
      }
      return ms
    }
    log(`restic: scrypt alone (restic's N=${RESTIC_SCRYPT.N} r=${RESTIC_SCRYPT.r} p=${RESTIC_SCRYPT.p}, the writer's N=${writerParams.N} r=${writerParams.r} p=${writerParams.p})`)
    const scryptRestic = await timeScrypt(RESTIC_SCRYPT, runs)
    const scryptWriter = await timeScrypt(writerParams, Math.max(runs, 20))

    const wall = performance.now() - cpuAt.wall
    const own = ownCpuMs() - cpuAt.own
    const cpuPct = { own: (own / wall) * 100, other: Math.max(0, ((machineBusyMs() - cpuAt.machine - own) / wall) * 100) }
    const resticCli = await resticSnapshots(`s3:${s3.endpoint}/${BUCKET}/${MAIN}`)

    return {
      snapshots: SNAPSHOTS,
      runs,
      latencyMs,
      deadlineMs,
      scrypt: {
        restic: { ...RESTIC_SCRYPT, ms: scryptRestic },
        writer: { N: writerParams.N, r: writerParams.r, p: writerParams.p, ms: scryptWriter },
      },
      rows: [...rows.values()],
      resticCli,
      setupMs,
      wallMs: performance.now() - started,
      cpuPct,
    }
  } finally {
    await proxy.close()
    await s3.close()
  }
}

/** `restic snapshots` on the repository measured: the re-wrapped key file is restic's format. */
function resticSnapshots(repository: string): Promise<string | undefined> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, RESTIC_PASSWORD: PASSWORD, AWS_ACCESS_KEY_ID: S3RVER_KEY, AWS_SECRET_ACCESS_KEY: S3RVER_KEY }
  return new Promise((resolve) => {
    execFile('restic', ['version'], { env, timeout: 10_000 }, (err, version) => {
      if (err) return resolve(undefined)
      execFile('restic', ['-r', repository, 'snapshots', '--json', '--no-lock', '--no-cache'], { env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (err2, out, stderr) => {
        const v = version.trim().split(' ').slice(0, 2).join(' ')
        if (err2) return resolve(`${v} could NOT read it: ${String(stderr || err2.message).trim().split('\n')[0]}`)
        try {
          const n = (JSON.parse(out) as unknown[]).length
          resolve(`${v} opens it with the re-wrapped key file and lists ${n} snapshots`)
        } catch {
          resolve(`${v} answered something that is not JSON`)
        }
      })
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Report

export interface ResticTarget {
  what: string
  measured: string
  met: boolean
}

const ms = (xs: number[]) => fmt(median(xs), 1)
const rowOf = (f: ResticFigures, id: string) => f.rows.find((r) => r.id === id)

export const resticHeader = ['decision', 'S3 req', 'LIST snapshots/ · keys/', 'GET key · config · snapshot', 'snapshot GETs needed', 'ms p50', 'ms min / max', 'scrypt ms p50', '× list ms']

/** `titles`: the first column says what each row is (RESULTS.md); else the id only (the terminal, with resticLegend). */
export function resticTable(f: ResticFigures, titles = true): string[][] {
  return f.rows.map((r) => {
    const s = r.samples
    const total = s.map((x) => x.listSnapshots + x.listKeys + x.getKey + x.getConfig + x.snapshotIds.length + x.other)
    const versus = r.versus ? rowOf(f, r.versus) : undefined
    return [
      titles ? `**${r.id}**: ${r.title}` : r.id,
      span(total),
      r.mode === 'list' ? `${span(s.map((x) => x.listSnapshots))} (max-keys 1)` : `${span(s.map((x) => x.listSnapshots))} · ${span(s.map((x) => x.listKeys))}`,
      r.mode === 'list' ? '–' : `${span(s.map((x) => x.getKey))} · ${span(s.map((x) => x.getConfig))} · ${span(s.map((x) => x.snapshotIds.length))}`,
      r.mode === 'list' ? '–' : span(s.map((x) => x.needed ?? NaN)),
      ms(s.map((x) => x.ms)),
      `${fmt(Math.min(...s.map((x) => x.ms)), 1)} / ${fmt(Math.max(...s.map((x) => x.ms)), 1)}`,
      r.mode === 'list' || r.concurrent || s.every((x) => x.derivations === 0) ? '–' : ms(s.map((x) => x.scryptMs)),
      versus && !r.concurrent ? fmt(median(s.map((x) => x.ms)) / median(versus.samples.map((x) => x.ms)), 1) : '–',
    ]
  })
}

export function resticLegend(f: ResticFigures): string[] {
  return f.rows.map((r) => `${r.id}: ${r.title}`)
}

export function resticNotes(f: ResticFigures): string[] {
  const { restic, writer } = f.scrypt
  const together = f.rows.find((r) => r.concurrent)
  const states = (r: ResticRow) => {
    const n: Record<string, number> = {}
    for (const s of r.samples) n[s.state] = (n[s.state] ?? 0) + 1
    return Object.entries(n).map(([k, v]) => `${v} ${k}`).join(', ')
  }
  const mib = (p: { N: number; r: number; p: number }) => fmt((128 * p.r * (p.N + p.p + 2)) / 2 ** 20, 0)
  return [
    `scrypt alone (the reader's deriveKey, libuv's thread pool; p50 of ${restic.ms.length}, min / max): restic's N=${restic.N} r=${restic.r} p=${restic.p} (${restic.source}; ${mib(restic)} MiB) ` +
      `${ms(restic.ms)} ms (${fmt(Math.min(...restic.ms), 1)} / ${fmt(Math.max(...restic.ms), 1)}), ${fmt(median(restic.ms) / restic.p, 1)} ms per lane; ` +
      `the writer's N=${writer.N} r=${writer.r} p=${writer.p} (${mib(writer)} MiB) ${fmt(median(writer.ms), 2)} ms (p50 of ${writer.ms.length}).`,
    `Probe deadline (defaultConfig.store.probe.deadlineMs, what every store here runs with): ${f.deadlineMs} ms.`,
    `CPU while measuring, % of one core: this process (store, s3rver, scrypt threads) ${fmt(f.cpuPct.own, 0)} %, everything else on the machine ${fmt(f.cpuPct.other, 0)} % (2 cores shared: when it is high, the ms are longer).`,
    ...(together
      ? [
          `${together.id}: answers ${states(together)}; first answer ${fmt(Math.min(...together.samples.map((x) => x.ms)), 0)} ms, last ${fmt(Math.max(...together.samples.map((x) => x.ms)), 0)} ms ` +
            `(${fmt((Math.max(...together.samples.map((x) => x.ms)) / f.deadlineMs) * 100, 0)} % of the deadline): the reader derives at most two keys at a time, so each later repository waits for the ones before it.`,
        ]
      : []),
    f.resticCli ? `The repository measured, read by the real CLI: ${f.resticCli}.` : 'restic is not installed: the re-wrapped key file was not checked against the real CLI.',
  ]
}

export function resticTargets(f: ResticFigures): ResticTarget[] {
  const half = f.deadlineMs / 2
  const coldDecisions = f.rows.filter((x) => x.mode === 'restic' && x.temperature === 'cold' && x.decision && !x.concurrent && !x.id.includes('writer key'))
  const maxOf = (x: ResticRow) => Math.max(...x.samples.map((s) => s.ms))
  const coldMax = Math.max(...coldDecisions.map(maxOf))
  const warmDecisions = f.rows.filter((x) => x.mode === 'restic' && x.id.startsWith('restic warm'))
  const warmOk = warmDecisions.every((x) => x.samples.every((s) => s.listSnapshots === 1 && s.listKeys === 0 && s.getKey + s.getConfig + s.snapshotIds.length + s.other === 0))
  const cold = rowOf(f, 'restic cold')!
  const fetched = (x: ResticRow) => span(x.samples.map((s) => s.snapshotIds.length))
  const needed = (x: ResticRow) => span(x.samples.map((s) => s.needed ?? NaN))
  const exact = (x: ResticRow) => x.samples.every((s) => s.snapshotIds.length === s.needed)
  const selections = f.rows.filter((x) => x.mode === 'restic' && x.decision && !x.concurrent)
  const lists = (x: ResticRow) => span(x.samples.map((s) => s.listSnapshots + s.listKeys))
  return [
    {
      what: `cold decision, ${f.snapshots} snapshots, restic's scrypt: well inside the ${f.deadlineMs} ms probe deadline (every run ≤ half of it)`,
      measured:
        coldDecisions.map((x) => `${x.id} p50 ${ms(x.samples.map((s) => s.ms))} / max ${fmt(maxOf(x), 0)} ms`).join('; ') +
        ` — slowest ${fmt(coldMax, 0)} ms = ${fmt((coldMax / f.deadlineMs) * 100, 0)} % of the deadline, scrypt ${ms(cold.samples.map((s) => s.scryptMs))} ms of it`,
      met: coldMax <= half,
    },
    {
      what: 'warm decision: one LIST of snapshots/, no GET',
      measured: warmDecisions.map((x) => `${x.id}: ${span(x.samples.map((s) => s.listSnapshots + s.listKeys))} LIST, ${span(x.samples.map((s) => s.getKey + s.getConfig + s.snapshotIds.length))} GET, p50 ${ms(x.samples.map((s) => s.ms))} ms`).join('; '),
      met: warmOk,
    },
    {
      what: "cold decision: one LIST, of snapshots/ (the issue's ideal)",
      measured: `${lists(cold)} LISTs: snapshots/ and keys/ (restic names key files by their hash: opening a repository lists keys/), then GET key file and config, once per repository and password`,
      met: cold.samples.every((s) => s.listSnapshots + s.listKeys === 1),
    },
    {
      what: 'snapshot GETs: only those the selection needs',
      measured: selections
        .filter((x) => x.samples.some((s) => s.snapshotIds.length + (s.needed ?? 0) > 0))
        .map((x) => `${x.id} ${fetched(x)} of ${needed(x)}`)
        .join('; '),
      met: selections.every(exact),
    },
  ]
}

/** The section of bench/RESULTS.md. */
export function resticMarkdown(f: ResticFigures, markdownTable: (h: string[], body: string[][]) => string): string {
  return `## Probe mode restic: one repository of ${f.snapshots} snapshots

Not through the service: the service's store (createBackupStore, S3BackupStore behind the CachedStore)
in the runner, against its own s3rver on loopback (plain HTTP), with the default probe deadline
(${f.deadlineMs} ms) and \`cacheTtlMs: 0\`, so a *warm* decision is the reader's caches alone (master
key, decrypted snapshots by id). The repository: ${f.snapshots} snapshots of \`/data\` a day apart
(src/storage/restic/writer.ts), its key file re-sealed with restic's scrypt parameters; each
snapshot object's LastModified is its snapshot time + 30 s. *cold* = a new store (nothing cached);
ms are \`store.probe()\` wall time, p50 of ${f.runs} runs after an untimed pass; requests are counted
at s3rver, by kind. *snapshot GETs needed*: the fewest snapshot files any reader must fetch when
LastModified only bounds a snapshot's time from above (the selected one and every file that may be
newer, less those already read). *× list ms*: against list mode (the baseline, \`probe.mode: list\`,
one LIST max-keys 1) on the same repository, same temperature and S3 latency. Rows ending in
*+${f.latencyMs}ms*: every S3 answer delayed ${f.latencyMs} ms at a proxy.

${markdownTable(resticHeader, resticTable(f))}

${resticNotes(f)
  .map((n) => `- ${n}`)
  .join('\n')}
`
}

// ---------------------------------------------------------------------------------------------
// Alone: `node --import tsx bench/restic-probe.ts`

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const t0 = Date.now()
  const log = (msg: string) => void process.stderr.write(`[restic-probe ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`)
  const num = (name: string, dflt: number) => (process.env[name] ? Number(process.env[name]) : dflt)
  const f = await measureResticProbe({ runs: num('BENCH_RESTIC_RUNS', 5), latencyMs: num('BENCH_S3_LATENCY_MS', 20), concurrent: num('BENCH_RESTIC_CONCURRENT', 8), log })
  process.stdout.write(`\n${textTable(resticHeader, resticTable(f, false))}\n\n${resticLegend(f).join('\n')}\n\n${resticNotes(f).join('\n')}\n\n`)
  for (const t of resticTargets(f)) process.stdout.write(`${t.met ? 'MET   ' : 'MISSED'}  ${t.what}: ${t.measured}\n`)
  process.stdout.write(`\n${fmt(f.wallMs / 1000, 1)} s\n`)
  process.exit(0)
}
