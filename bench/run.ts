/**
 * `npm run bench`: smart-restore under load, against a bare fastify baseline measured in the same run.
 *
 * Processes and threads (2 cores: everything is kept small, the whole run is about two minutes):
 *  - this runner's main thread: the stand-ins — s3rver (a real S3 implementation) and the loopback
 *    Kubernetes API (test/helpers/fake-apiserver.ts), each behind a counting TCP proxy (bench/lib/proxy.ts)
 *    that sees every connection the service opens and can add latency to S3;
 *  - a worker thread: the load generator (bench/load-worker.ts: autocannon, HTTPS keep-alive,
 *    HTTP/1.1 without pipelining, real AdmissionReview bodies);
 *  - a child process: the service (bench/serve.ts: what `npm start` runs, compiled into bench/.build
 *    and run by plain node, as the image runs it), so its RSS and CPU are its own, read from /proc;
 *    its per-admission log lines (stdout, to a file) give the server-side handling time
 *    (`durationMs`) and the decisions;
 *  - a child process: the baseline (bench/baseline.ts, compiled the same way), a bare fastify HTTPS
 *    server answering a constant allowed AdmissionReview; measured before and after the throughput
 *    scenarios, then stopped.
 *
 * Then, with the service stopped, probe mode restic (the default store.probe.mode) without the service:
 * the store on a 40-snapshot restic repository in its own s3rver, cold and warm decisions, as-of,
 * readAll, scrypt, against list mode on the same repository (bench/restic-probe.ts; ~25 s).
 *
 * Everything listens on 127.0.0.1 and stops by itself. Figures go to stdout and bench/RESULTS.md.
 * Knobs (environment): BENCH_SECONDS (8), BENCH_WARMUP (2), BENCH_CONNECTIONS (20), BENCH_PVCS (10000),
 * BENCH_RESTORE_SEEDS (4000), BENCH_S3_LATENCY_MS (20), BENCH_RESTIC_RUNS (5: runs per restic figure),
 * BENCH_RESTIC_CONCURRENT (8: cold restic decisions at once), BENCH_ONLY (comma-separated scenario
 * ids, `restic` for the restic section; the baseline always runs), BENCH_CPU_PROF=1 (the service
 * writes one bench/profiles/<scenario>.cpuprofile per measured scenario; profiling slows it, so such
 * a run's figures are not the reference),
 * BENCH_NO_COMPILE=1 (run bench/.build as it is, for experiments on the compiled service),
 * BENCH_SERVICE_NODE_OPTIONS (NODE_OPTIONS of the service, e.g. V8 heap flags), BENCH_RECONCILER=0 (no
 * backup-source reconciler: then no PVC watch, only the deletion guard's caches),
 * BENCH_LOG_LEVEL (the service's, default info: one line per admission, as deployed; the handler
 * column needs it), BENCH_RESULTS (where to write the report; `-` for none; a run with BENCH_ONLY,
 * BENCH_CPU_PROF, BENCH_NO_COMPILE or BENCH_SERVICE_NODE_OPTIONS writes none unless it is given).
 */
import { fork, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, openSync, closeSync, readSync, fstatSync, writeFileSync, rmSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { Agent, request as httpsRequest } from 'node:https'
import { loadavg, tmpdir } from 'node:os'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { dirname, join, relative, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { randomBytes } from 'node:crypto'
import { S3Client, PutObjectCommand } from '@aws-sdk/client-s3'
import { parseAllDocuments } from 'yaml'
import type { Metafile } from 'esbuild'
import { buildAll, ROOT, SERVICE_ENTRY } from '../scripts/build.mjs'
import { generateCertificates } from '../src/tls/certificates.js'
import { startFakeApiServer, type RecordedRequest } from '../test/helpers/fake-apiserver.js'
import { BUCKET, S3RVER_KEY, startS3rver } from '../test/helpers/storage-servers.js'
import { installRestorePrerequisites } from '../test/helpers/restore-prerequisites.js'
import { constantBody, makeTemplate, nameOf, render, type BodyTemplate, type Naming } from './lib/bodies.js'
import { cpuMsOf, machine, machineBusyMs, memoryOf } from './lib/proc.js'
import { startProxy, type ConnectionClass } from './lib/proxy.js'
import { fmt, fmtInt, percentiles } from './lib/stats.js'
import { markdownTable, textTable } from './lib/tables.js'
import { measureResticProbe, resticHeader, resticLegend, resticMarkdown, resticNotes, resticTable, resticTargets, type ResticFigures } from './restic-probe.js'
import type { BurstJob, BurstResult, LoadJob, LoadResult } from './load-worker.js'
import type { ProbeMemory } from './serve.js'

const here = dirname(fileURLToPath(import.meta.url))
const env = process.env
const num = (name: string, dflt: number) => (env[name] !== undefined && env[name] !== '' ? Number(env[name]) : dflt)
const SECONDS = num('BENCH_SECONDS', 8)
const WARMUP = num('BENCH_WARMUP', 2)
const CONNECTIONS = num('BENCH_CONNECTIONS', 20)
const PVCS = num('BENCH_PVCS', 10_000)
const RESTORE_SEEDS = num('BENCH_RESTORE_SEEDS', 4000)
const S3_LATENCY_MS = num('BENCH_S3_LATENCY_MS', 20)
const RESTIC_RUNS = num('BENCH_RESTIC_RUNS', 5)
const RESTIC_CONCURRENT = num('BENCH_RESTIC_CONCURRENT', 8)
const SMALL_PVCS = num('BENCH_SMALL_PVCS', 100)
const RESTARTS = num('BENCH_RESTARTS', 3)
const BURST = 200
const CPU_PROF = env.BENCH_CPU_PROF === '1'
const ONLY = env.BENCH_ONLY ? new Set(env.BENCH_ONLY.split(',').map((x) => x.trim())) : undefined
const PROFILES = join(here, 'profiles')
const EXPERIMENT = Boolean(ONLY || CPU_PROF || env.BENCH_NO_COMPILE === '1' || env.BENCH_SERVICE_NODE_OPTIONS || env.BENCH_LOG_LEVEL || env.BENCH_RECONCILER)
/** bench/RESULTS.md holds the figures of the last reference run, not of an experiment. */
const RESULTS = env.BENCH_RESULTS ?? (EXPERIMENT ? '-' : join(here, 'RESULTS.md'))
const RUN = randomBytes(3).toString('hex')
const started = Date.now()
const loadAtStart = loadavg()

const log = (msg: string): void => void process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`)

// ---------------------------------------------------------------------------------------------
// Stand-ins

const work = mkdtempSync(join(tmpdir(), 'smart-restore-bench-'))
const cleanups: Array<() => Promise<void> | void> = [() => rmSync(work, { recursive: true, force: true })]
async function cleanup(): Promise<void> {
  for (const c of cleanups.reverse()) {
    try {
      await c()
    } catch {
      /* best effort */
    }
  }
}

log(`machine: ${machine().cpu}, ${machine().cores} cores; node ${process.version}; run ${RUN}; work dir ${work}`)
const s3 = await startS3rver()
cleanups.push(() => s3.close())
const s3proxy = await startProxy(s3.port)
cleanups.push(() => s3proxy.close())

const restoreNaming: Naming = { prefix: 'r-', modulo: RESTORE_SEEDS, namespacePrefix: 'restore-', namespaceCount: 64 }
const deleteNaming: Naming = { prefix: 'pvc-', modulo: PVCS, namespacePrefix: 'ns-', namespaceCount: 100 }

/**
 * One snapshot per restore name. The first is written with PutObject; the others are copies of the
 * files s3rver wrote for it (object, .md5, metadata), laid out the way s3rver itself stores keys:
 * thousands of PutObjects through s3rver take longer than the rest of the run.
 */
async function seedRestoreKeys(): Promise<void> {
  const client = new S3Client({
    endpoint: s3.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY },
    requestChecksumCalculation: 'WHEN_REQUIRED',
  })
  const keyOf = (i: number) => {
    const { name, namespace } = nameOf(restoreNaming, i)
    return `${namespace}/${name}/snapshots/${randomBytes(32).toString('hex')}`
  }
  const first = keyOf(0)
  await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: first, Body: '{}' }))
  client.destroy()
  const dirOf = (key: string) => join(s3.directory, BUCKET, dirname(key))
  const written = readdirSync(dirOf(first)).map((f) => ({ suffix: f.slice(f.indexOf('._S3rver_')), bytes: readFileSync(join(dirOf(first), f)) }))
  for (let i = 1; i < RESTORE_SEEDS; i++) {
    const key = keyOf(i)
    mkdirSync(dirOf(key), { recursive: true })
    for (const w of written) writeFileSync(join(dirOf(key), `${key.slice(key.lastIndexOf('/') + 1)}${w.suffix}`), w.bytes)
  }
}
const seedStarted = Date.now()
await seedRestoreKeys()
const s3Seeding = s3.requests()
log(`s3rver: ${RESTORE_SEEDS} snapshots seeded for the restore scenario in ${((Date.now() - seedStarted) / 1000).toFixed(1)} s`)

const api = await startFakeApiServer()
cleanups.push(() => api.close())
// What a restore needs (the VolumePopulator and snapshot APIs, StorageClasses): the restore preflight
// refuses a restore VolSync could not populate.
installRestorePrerequisites(api)
const apiPort = Number(new URL(api.url).port)
const apiProxy = await startProxy(apiPort)
cleanups.push(() => apiProxy.close())

const NS = '/api/v1/namespaces'
const PVC = '/api/v1/persistentvolumeclaims'
const RS = '/apis/volsync.backube/v1alpha1/replicationsources'
const b64 = (s: string) => Buffer.from(s).toString('base64')
for (const name of ['media', 'smart-restore', ...Array.from({ length: 100 }, (_, i) => `ns-${String(i).padStart(2, '0')}`), ...Array.from({ length: 64 }, (_, i) => `restore-${String(i).padStart(2, '0')}`)]) {
  api.objects.put(NS, { apiVersion: 'v1', kind: 'Namespace', metadata: { name }, status: { phase: 'Active' } })
}
api.objects.put('/api/v1/secrets', {
  apiVersion: 'v1',
  kind: 'Secret',
  metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
  data: { RESTIC_PASSWORD: b64('bench-password'), AWS_ACCESS_KEY_ID: b64(S3RVER_KEY), AWS_SECRET_ACCESS_KEY: b64(S3RVER_KEY) },
})
const syncing = {
  conditions: [{ type: 'Synchronizing', status: 'True', reason: 'SyncInProgress', message: 'Synchronization in-progress', lastTransitionTime: '2026-11-22T04:40:00Z' }],
  lastSyncStartTime: '2026-11-22T04:40:00Z',
}
const idle = {
  conditions: [{ type: 'Synchronizing', status: 'False', reason: 'WaitingForSchedule', message: 'Waiting for next scheduled synchronization', lastTransitionTime: '2026-11-22T04:45:00Z' }],
  lastSyncTime: '2026-11-22T04:45:00Z',
  nextSyncTime: '2026-11-22T05:00:00Z',
  latestMoverStatus: { result: 'Successful', logs: 'processed 1234 files\nsnapshot 1a2b3c4d saved' },
}
/** Every 100th ReplicationSource (index ≡ 7 mod 100) is mid-backup: its PVC's DELETE is refused. */
const inFlight = (i: number) => i % 100 === 7
const loadStarted = Date.now()
for (let i = 0; i < PVCS; i++) {
  const { name, namespace } = nameOf(deleteNaming, i)
  const spec = { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } }, storageClassName: 'longhorn', volumeMode: 'Filesystem', volumeName: `pvc-${RUN}-${i}` }
  api.objects.put(PVC, {
    apiVersion: 'v1',
    kind: 'PersistentVolumeClaim',
    metadata: {
      name,
      namespace,
      labels: { 'app.kubernetes.io/name': 'bench', 'app.kubernetes.io/instance': name },
      annotations: {
        'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name, namespace }, spec }),
        'pv.kubernetes.io/bind-completed': 'yes',
        'volume.kubernetes.io/storage-provisioner': 'driver.longhorn.io',
      },
      finalizers: ['kubernetes.io/pvc-protection'],
    },
    spec,
    status: { phase: 'Bound', accessModes: ['ReadWriteOnce'], capacity: { storage: '10Gi' } },
  })
  api.objects.put(RS, {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationSource',
    metadata: { name: `${name}-backup`, namespace },
    spec: {
      sourcePVC: name,
      trigger: { schedule: `${i % 60} * * * *` },
      restic: { repository: `${name}-restic`, copyMethod: 'Snapshot', pruneIntervalDays: 7, retain: { hourly: 24, daily: 7, weekly: 4 }, storageClassName: 'longhorn', volumeSnapshotClassName: 'longhorn' },
    },
    status: inFlight(i) ? syncing : idle,
  })
}
log(`fake apiserver: ${PVCS} PVCs and ${PVCS} ReplicationSources (${Array.from({ length: PVCS }, (_, i) => i).filter(inFlight).length} syncing) loaded in ${((Date.now() - loadStarted) / 1000).toFixed(1)} s`)

/** A kubeconfig for the service: token auth, plain HTTP, pointed at `server`. */
function writeKubeconfig(file: string, server: string, token: string): string {
  writeFileSync(
    file,
    `apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: ${server}
    insecure-skip-tls-verify: true
users:
- name: fake
  user:
    token: ${token}
contexts:
- name: fake
  context: { cluster: fake, user: fake }
current-context: fake
`,
  )
  return file
}
const kubeconfigFile = writeKubeconfig(join(work, 'kubeconfig'), apiProxy.url, api.token)

// The serving certificate, as deployed: files (the Deployment mounts the Secret smart-restore-tls),
// so the service never generates a development certificate (and never loads `selfsigned`).
const tls = await generateCertificates(['localhost', '127.0.0.1'], 30)
const tlsCertFile = join(work, 'tls.crt')
const tlsKeyFile = join(work, 'tls.key')
writeFileSync(tlsCertFile, tls.cert)
writeFileSync(tlsKeyFile, tls.key, { mode: 0o600 })

/** A free TCP port on loopback (the service is given fixed ports: the runner must know its URL). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/** The service's configuration file (SMART_RESTORE_CONFIG), with its own ports. */
async function writeServiceConfig(file: string, s3Endpoint: string): Promise<string> {
  writeFileSync(
    file,
    JSON.stringify(
      {
        // No shutdown delay: `stop` (SIGTERM) closes at once.
        server: { host: '127.0.0.1', port: await freePort(), metricsPort: await freePort(), tlsCertFile, tlsKeyFile, shutdownDelayMs: 0 },
        store: {
          type: 's3',
          s3: { endpoint: s3Endpoint, region: 'us-east-1', bucket: BUCKET, forcePathStyle: true, accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_KEY },
          // The admission scenarios measure list mode (one LIST per cold decision; their seeded snapshot
          // files are stand-ins, not restic repositories). The default mode, restic, is measured on its
          // own after them (bench/restic-probe.ts), with list mode as its baseline.
          probe: { mode: 'list' },
        },
        kube: { mode: 'cluster' },
        // On, as deployed: its PVC watch is what puts the 10,000 PVCs in the watched caches. It writes
        // nothing here (the PVCs carry no tier label and their ReplicationSources are not smart-restore's).
        reconciler: { enabled: env.BENCH_RECONCILER !== '0' },
        logLevel: env.BENCH_LOG_LEVEL ?? 'info',
      },
      null,
      2,
    ),
  )
  return file
}
const configFile = await writeServiceConfig(join(work, 'config.json'), s3proxy.url)

// ---------------------------------------------------------------------------------------------
// Children

interface Child {
  pid: number
  url: string
  caCert?: string
  logFile: string
  ask<T>(type: string, payload?: Record<string, unknown>): Promise<T>
  stop(): Promise<void>
}

const BUILD = join(here, '.build')
/** `npm run build`'s output, written by the same script with the same options (scripts/build.mjs). */
const SERVICE_DIR = join(BUILD, 'service')
const SERVICE_FILE = join(SERVICE_DIR, SERVICE_ENTRY)
/** The bench's own helpers (the baseline server, the in-process probe), built with the same options. */
const HELPERS_DIR = join(BUILD, 'helpers')
const PROBE_FILE = join(HELPERS_DIR, 'serve.js')
/** JavaScript the service loads at startup (the static imports of its entry), by package. */
let loadedCode: { files: number; bytes: number; lazyBytes: number; byPackage: Array<[string, number]> } | undefined

/** The files the service entry loads before it runs (static imports, transitively), from the build's metafile. */
function staticCode(metafile: Metafile, entry: string): NonNullable<typeof loadedCode> {
  const outputs = metafile.outputs
  const key = (abs: string) => relative(ROOT, abs).split(sep).join('/')
  const seen = new Set<string>()
  const stack = [key(entry)]
  while (stack.length) {
    const f = stack.pop()!
    if (seen.has(f) || !outputs[f]) continue
    seen.add(f)
    for (const i of outputs[f]!.imports) if (i.kind === 'import-statement' && !i.external) stack.push(i.path)
  }
  const byPackage = new Map<string, number>()
  let bytes = 0
  for (const f of seen) {
    bytes += outputs[f]!.bytes
    for (const [input, v] of Object.entries(outputs[f]!.inputs)) {
      const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input)?.[1] ?? (input.startsWith('src/') ? 'src/ (smart-restore)' : input)
      byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + v.bytesInOutput)
    }
  }
  const all = Object.entries(outputs).filter(([f]) => f.startsWith(key(SERVICE_DIR)) && f.endsWith('.js') && !f.includes('/src/cli/'))
  const lazyBytes = all.filter(([f]) => !seen.has(f)).reduce((a, [, o]) => a + o.bytes, 0)
  return { files: seen.size, bytes, lazyBytes, byPackage: [...byPackage].sort((a, b) => b[1] - a[1]) }
}

/**
 * The service is built by scripts/build.mjs — the script, entry points and options of `npm run build`
 * — into bench/.build/service, and run from there as the image runs dist/ (under tsx the loader's own
 * thread and transforms would add ~70 MiB to the RSS being measured). The bench's helpers are built
 * with the same options into bench/.build/helpers.
 */
async function compile(): Promise<void> {
  if (env.BENCH_NO_COMPILE === '1' && existsSync(SERVICE_FILE) && existsSync(PROBE_FILE)) {
    log('BENCH_NO_COMPILE=1: running the service as built before, in bench/.build/service')
    return
  }
  const t = Date.now()
  const metafile = await buildAll({ outdir: SERVICE_DIR })
  loadedCode = staticCode(metafile, SERVICE_FILE)
  await buildAll({ outdir: HELPERS_DIR, entryPoints: { baseline: 'bench/baseline.ts', serve: 'bench/serve.ts' } })
  log(`built the service (scripts/build.mjs, as npm run build) into bench/.build/service and the bench helpers in ${((Date.now() - t) / 1000).toFixed(1)} s; the service loads ${(loadedCode.bytes / 1024).toFixed(0)} KiB of JavaScript at startup`)
}

const DEPLOYMENT = join(here, '..', 'deploy', 'base', 'deployment.yaml')
/**
 * The NODE_OPTIONS the Deployment gives the service (deploy/base/deployment.yaml): its memory is
 * measured as it runs in a cluster (the young generation's size and the old generation's cap change
 * how far the heap grows).
 */
function deploymentNodeOptions(): string {
  const docs = parseAllDocuments(readFileSync(DEPLOYMENT, 'utf8')).map((d) => d.toJS())
  const deployment = docs.find((d) => d?.kind === 'Deployment')
  const value = deployment?.spec?.template?.spec?.containers?.[0]?.env?.find((e: { name: string }) => e.name === 'NODE_OPTIONS')?.value
  if (typeof value !== 'string') throw new Error('deploy/base/deployment.yaml: the container sets no NODE_OPTIONS')
  return value
}
const SERVICE_NODE_OPTIONS = env.BENCH_SERVICE_NODE_OPTIONS ?? deploymentNodeOptions()

/** The runtime stage's ENV of the Dockerfile (NODE_ENV=production), but PATH: the image's environment. */
function imageEnv(): Record<string, string> {
  const lines = readFileSync(join(here, '..', 'Dockerfile'), 'utf8').split('\n').map((l) => l.trim())
  const runtime = lines.slice(lines.map((l) => /^FROM /i.test(l)).lastIndexOf(true))
  const out: Record<string, string> = {}
  for (const l of runtime) {
    const m = /^ENV\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)$/.exec(l)
    if (m && m[1] !== 'PATH') out[m[1]!] = m[2]!
  }
  return out
}
const IMAGE_ENV = imageEnv()
/** How the service process is started: the image's environment, the Deployment's NODE_OPTIONS, the probe first. */
const serviceEnv = (extra: Record<string, string>) => ({ ...process.env, ...IMAGE_ENV, ...extra, NODE_OPTIONS: SERVICE_NODE_OPTIONS })
// --expose-gc only lets the runner ask for one full collection at the very end (live data vs garbage).
const SERVICE_EXEC_ARGV = ['--expose-gc', '--import', pathToFileURL(PROBE_FILE).href]

/** A keep-alive HTTPS GET (polling /readyz without a TLS handshake each time); resolves with the status, 0 on error. */
const pollAgents = new Map<string, Agent>()
cleanups.push(() => pollAgents.forEach((a) => a.destroy()))
function get(url: string, ca: string | undefined): Promise<number> {
  const agent = pollAgents.get(ca ?? '') ?? new Agent({ keepAlive: true, maxSockets: 1, ca })
  pollAgents.set(ca ?? '', agent)
  return new Promise((resolve) => {
    const req = httpsRequest(url, { agent, timeout: 5000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('timeout', () => req.destroy())
    req.on('error', () => resolve(0))
    req.end()
  })
}

/**
 * A child process: the baseline (it reports its URL over IPC) or the service (`url` given: its
 * configured port; it counts as started once /healthz answers 200, i.e. it listens).
 */
async function startChild(file: string, name: string, opts: { env: NodeJS.ProcessEnv; execArgv?: string[]; url?: string; caCert?: string }): Promise<Child & { startedAt: number; listeningAt: number }> {
  const logFile = join(work, `${name}.log`)
  const out = openSync(logFile, 'w')
  const startedAt = performance.now()
  const child: ChildProcess = fork(file, [], {
    // Its own directory: nothing the service might write lands in the checkout.
    cwd: work,
    execArgv: opts.execArgv ?? [],
    env: opts.env,
    stdio: ['ignore', out, 'pipe', 'ipc'],
  })
  closeSync(out)
  let stderr = ''
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
  let exited = false
  child.once('exit', () => (exited = true))
  const ready = await new Promise<{ url: string; caCert?: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 60 s: ${stderr}`)), 60_000)
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before it was ready: ${stderr}`)))
    if (opts.url) {
      const url = opts.url
      const poll = async () => {
        while (!exited && (await get(`${url}/healthz`, opts.caCert)) !== 200) await new Promise((r) => setTimeout(r, 10))
        if (exited) return
        clearTimeout(timer)
        resolve({ url, caCert: opts.caCert })
      }
      void poll()
    } else {
      child.on('message', (m: { type: string; url: string; caCert?: string }) => {
        if (m.type === 'ready') {
          clearTimeout(timer)
          resolve(m)
        }
      })
    }
  })
  const listeningAt = performance.now()
  child.removeAllListeners('exit')
  const exitedP = new Promise<void>((resolve) => (exited ? resolve() : child.once('exit', () => resolve())))
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  cleanups.push(kill)
  // Also when the runner dies on an error: no service left running.
  process.on('exit', kill)
  return {
    pid: child.pid!,
    url: ready.url,
    caCert: ready.caCert,
    logFile,
    startedAt,
    listeningAt,
    ask: <T>(type: string, payload: Record<string, unknown> = {}) =>
      new Promise<T>((resolve) => {
        const on = (m: { type: string }) => {
          if (m.type === type) {
            child.off('message', on)
            resolve(m as T)
          }
        }
        child.on('message', on)
        child.send({ ...payload, type })
      }),
    async stop() {
      child.send({ type: 'stop' })
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exitedP
      clearTimeout(timer)
    },
  }
}

/** The service as the image runs it, with the bench's probe; resolves once it listens. */
function startService(name: string, extraEnv: Record<string, string>, configPath: string) {
  const url = `https://127.0.0.1:${(JSON.parse(readFileSync(configPath, 'utf8')) as { server: { port: number } }).server.port}`
  return startChild(SERVICE_FILE, name, { env: serviceEnv({ ...extraEnv, SMART_RESTORE_CONFIG: configPath }), execArgv: SERVICE_EXEC_ARGV, url, caCert: tls.caCert })
}

/**
 * Memory of a process that loads the probe and `args`, then exits by itself (no IPC): node alone (an
 * empty script) or the service's modules loaded (dist/src/main.js with a configuration file that does
 * not exist: every static import evaluated, then exit 2 before anything starts).
 */
function memoryAtExit(args: string[], extraEnv: Record<string, string>): ProbeMemory {
  const file = join(work, `probe-${randomBytes(4).toString('hex')}.json`)
  const r = spawnSync(process.execPath, ['--import', pathToFileURL(PROBE_FILE).href, ...args], { cwd: work, env: serviceEnv({ ...extraEnv, BENCH_PROBE_EXIT_FILE: file }), encoding: 'utf8', timeout: 60_000 })
  if (!existsSync(file)) throw new Error(`no memory figures from node ${args.join(' ')} (exit ${r.status}): ${r.stderr}`)
  return JSON.parse(readFileSync(file, 'utf8')) as ProbeMemory
}

const sanityAgent = new Agent({ keepAlive: true, rejectUnauthorized: false })
cleanups.push(() => sanityAgent.destroy())
function post(url: string, body: string): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method: 'POST', agent: sanityAgent, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c) => (text += c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

// ---------------------------------------------------------------------------------------------
// The load generator

// Node 20 loads a worker's entry before --import hooks apply, so the worker registers tsx itself.
const worker = new Worker(
  `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(new URL('./load-worker.ts', import.meta.url).href)}) })`,
  { eval: true },
)
cleanups.push(() => worker.terminate().then(() => undefined))
function onWorker<T>(job: LoadJob | BurstJob): Promise<T> {
  return new Promise((resolve, reject) => {
    worker.once('message', (m: { ok: boolean; result?: T; error?: string }) => (m.ok ? resolve(m.result as T) : reject(new Error(m.error))))
    worker.postMessage(job)
  })
}

// ---------------------------------------------------------------------------------------------
// Counters

const isWatch = (r: RecordedRequest) => r.query.watch === 'true' || r.query.watch === '1'
/** Leader election (coordination.k8s.io Leases): the replicas' own renewals, every few seconds, never an admission's. */
const isLease = (r: RecordedRequest) => r.path.startsWith('/apis/coordination.k8s.io/')
const isDiscovery = (r: RecordedRequest) => r.method === 'GET' && /^\/(version|api|apis)(\/[^/]+){0,2}\/?$/.test(r.path) && !/^\/api\/v1\/[^/]+$/.test(r.path)

interface Snapshot {
  at: number
  s3Requests: number
  s3Connections: number
  apiRequests: number
  apiConnections: Record<ConnectionClass, number> & { total: number }
  cpuMs: number
  /** CPU of this runner process (stand-ins, proxies and the load worker), ms. */
  runnerCpuMs: number
  /** CPU all processes of the machine used, ms. */
  machineCpuMs: number
  rssMiB: number
  logOffset: number
}

const ownCpuMs = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

function snapshot(child: Child | undefined, logOffset: number): Snapshot {
  return {
    at: performance.now(),
    s3Requests: s3.requests(),
    s3Connections: s3proxy.connections(),
    apiRequests: api.requests.length,
    apiConnections: { ...apiProxy.byClass(), total: apiProxy.connections() },
    cpuMs: child ? cpuMsOf(child.pid) : NaN,
    runnerCpuMs: ownCpuMs(),
    machineCpuMs: machineBusyMs(),
    rssMiB: child ? memoryOf(child.pid).rssMiB : NaN,
    logOffset,
  }
}

interface ApiDelta {
  /** Requests an admission could have caused: not WATCH streams, not discovery (repeated every minute), not the Lease. */
  decision: number
  writes: number
  discovery: number
  watch: number
  /** Leader election: Lease GETs and renewals. */
  lease: number
  byMethod: Record<string, number>
}

function apiDelta(from: number, to: number): ApiDelta {
  const out: ApiDelta = { decision: 0, writes: 0, discovery: 0, watch: 0, lease: 0, byMethod: {} }
  for (const r of api.requests.slice(from, to)) {
    if (isWatch(r)) out.watch++
    else if (isDiscovery(r)) out.discovery++
    else if (isLease(r)) out.lease++
    else {
      out.decision++
      if (r.method !== 'GET') out.writes++
      const k = `${r.method} ${r.path.replace(/\/namespaces\/[^/]+/, '/namespaces/*').replace(/\/(secrets|replicationdestinations)\/[^/]+$/, '/$1/*')}`
      out.byMethod[k] = (out.byMethod[k] ?? 0) + 1
    }
  }
  return out
}

interface AdmissionLine {
  webhook: string
  decision: string
  durationMs: number
  allowed: boolean
  probe?: { ms: number; state: string }
}

/** The per-admission lines the service logged since `offset`, and the new offset. */
function readAdmissions(file: string, offset: number): { lines: AdmissionLine[]; offset: number; other: number } {
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    const buf = Buffer.alloc(size - offset)
    readSync(fd, buf, 0, buf.length, offset)
    const text = buf.toString('utf8')
    const end = text.lastIndexOf('\n') + 1
    const lines: AdmissionLine[] = []
    let other = 0
    for (const line of text.slice(0, end).split('\n')) {
      if (!line) continue
      try {
        const o = JSON.parse(line)
        if (o.msg === 'admission') lines.push(o)
        else if (o.level >= 40) other++
      } catch {
        other++
      }
    }
    return { lines, offset: offset + Buffer.byteLength(text.slice(0, end)), other }
  } finally {
    closeSync(fd)
  }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Row {
  id: string
  title: string
  connections: number
  rate?: number
  load?: LoadResult
  burst?: BurstResult
  admissions: number
  decisions: Record<string, number>
  /** Server-side handling time of each admission (the log line's durationMs), ms. */
  handler?: { p50: number; p99: number; p999: number }
  /** durationMs minus the probe's own ms (integer ms), for admissions that probed S3. */
  handlerNoS3?: { p50: number; p99: number }
  probeMs?: { p50: number; p99: number }
  s3Requests: number
  s3Connections: number
  api: ApiDelta
  apiConnections: Record<ConnectionClass, number> & { total: number }
  cpuMsPerAdmission: number
  /** Share of one core the service (the child) and this runner used over the window, %. */
  serviceCpuPct: number
  runnerCpuPct: number
  /** Everything else on the machine (other users of these 2 cores), % of one core. */
  otherCpuPct: number
  rssAfterMiB: number
  loop?: { p50: number; p99: number; max: number }
  warnings: number
  note?: string
}

const rows: Row[] = []
const isBase = (r: Row) => r.id.startsWith('baseline')
const offsets = new Map<string, number>()
const nextStart = (key: string) => offsets.get(key) ?? 0

interface Spec {
  id: string
  title: string
  path: '/mutate' | '/validate'
  body: { constant: string } | { template: BodyTemplate; key: string }
  connections?: number
  rate?: number
  seconds?: number
  warmup?: number
  s3DelayMs?: number
  note?: string
}

let logOffset = 0

async function runScenario(target: Child, spec: Spec, isBaseline = false): Promise<Row | undefined> {
  if (!isBaseline && ONLY && !ONLY.has(spec.id)) return undefined
  const connections = spec.connections ?? CONNECTIONS
  s3proxy.setDelay(spec.s3DelayMs ?? 0)
  const job = (seconds: number): LoadJob => {
    const body = 'constant' in spec.body ? { constant: spec.body.constant } : { template: spec.body.template, start: nextStart(spec.body.key) }
    return { type: 'load', url: target.url, path: spec.path, connections, durationSeconds: seconds, overallRate: spec.rate, body }
  }
  const account = (r: LoadResult) => {
    if (!('constant' in spec.body)) offsets.set(spec.body.key, nextStart(spec.body.key) + r.used)
  }
  const warmup = spec.warmup ?? WARMUP
  if (warmup > 0) account(await onWorker<LoadResult>(job(warmup)))
  // Let the warm-up's last admissions finish before counting.
  await new Promise((r) => setTimeout(r, 300))
  if (!isBaseline) {
    logOffset = readAdmissions(target.logFile, logOffset).offset
    await target.ask('loop-reset')
  }
  const before = snapshot(target, logOffset)
  log(`${spec.id}: ${spec.title} — ${connections} connections, ${spec.seconds ?? SECONDS} s${spec.rate ? ` at ${spec.rate} req/s` : ''}${spec.s3DelayMs ? `, S3 +${spec.s3DelayMs} ms` : ''}`)
  if (CPU_PROF && !isBaseline) await target.ask('profile-start')
  const result = await onWorker<LoadResult>(job(spec.seconds ?? SECONDS))
  account(result)
  await new Promise((r) => setTimeout(r, 300))
  if (CPU_PROF && !isBaseline) await target.ask('profile-stop', { file: join(PROFILES, `${spec.id}.cpuprofile`) })
  const row = finishRow(target, spec, before, isBaseline, { load: result })
  if (!isBaseline) row.loop = (await target.ask<{ loop: Row['loop'] }>('stats')).loop
  row.connections = connections
  if (spec.rate) row.rate = spec.rate
  rows.push(row)
  s3proxy.setDelay(0)
  return row
}

function finishRow(target: Child, spec: Pick<Spec, 'id' | 'title' | 'note'>, before: Snapshot, isBaseline: boolean, got: { load?: LoadResult; burst?: BurstResult }): Row {
  const logs = isBaseline ? { lines: [], offset: logOffset, other: 0 } : readAdmissions(target.logFile, before.logOffset)
  if (!isBaseline) logOffset = logs.offset
  const after = snapshot(target, logOffset)
  const decisions: Record<string, number> = {}
  for (const l of logs.lines) decisions[l.decision] = (decisions[l.decision] ?? 0) + 1
  const durations = logs.lines.map((l) => l.durationMs)
  const [h50, h99, h999] = percentiles(durations, [50, 99, 99.9])
  const probed = logs.lines.filter((l) => l.probe)
  const [n50, n99] = percentiles(
    probed.map((l) => l.durationMs - l.probe!.ms),
    [50, 99],
  )
  const [p50, p99] = percentiles(
    probed.map((l) => l.probe!.ms),
    [50, 99],
  )
  // Without per-admission log lines (BENCH_LOG_LEVEL=warn), autocannon's count stands in.
  const admissions = isBaseline ? (got.load?.requests ?? 0) : logs.lines.length || got.load?.requests || 0
  const apiConnections = Object.fromEntries(Object.entries(after.apiConnections).map(([k, v]) => [k, v - before.apiConnections[k as ConnectionClass | 'total']])) as Row['apiConnections']
  return {
    id: spec.id,
    title: spec.title,
    connections: 0,
    ...got,
    admissions,
    decisions,
    handler: durations.length ? { p50: h50!, p99: h99!, p999: h999! } : undefined,
    handlerNoS3: probed.length ? { p50: n50!, p99: n99! } : undefined,
    probeMs: probed.length ? { p50: p50!, p99: p99! } : undefined,
    s3Requests: after.s3Requests - before.s3Requests,
    s3Connections: after.s3Connections - before.s3Connections,
    api: apiDelta(before.apiRequests, after.apiRequests),
    apiConnections,
    cpuMsPerAdmission: admissions ? (after.cpuMs - before.cpuMs) / admissions : NaN,
    serviceCpuPct: ((after.cpuMs - before.cpuMs) / (after.at - before.at)) * 100,
    runnerCpuPct: ((after.runnerCpuMs - before.runnerCpuMs) / (after.at - before.at)) * 100,
    otherCpuPct: Math.max(0, ((after.machineCpuMs - before.machineCpuMs - (after.cpuMs - before.cpuMs) - (after.runnerCpuMs - before.runnerCpuMs)) / (after.at - before.at)) * 100),
    rssAfterMiB: after.rssMiB,
    warnings: logs.other,
    note: spec.note,
  }
}

async function burst(service: Child, id: string, title: string, s3DelayMs: number): Promise<Row | undefined> {
  if (ONLY && !ONLY.has(id)) return undefined
  s3proxy.setDelay(s3DelayMs)
  const template = makeTemplate('create.mutating.json', { prefix: `burst-${RUN}-${id}`, same: true, namespace: 'media' })
  logOffset = readAdmissions(service.logFile, logOffset).offset
  await service.ask('loop-reset')
  const before = snapshot(service, logOffset)
  log(`${id}: ${title}`)
  const result = await onWorker<BurstResult>({ type: 'burst', url: service.url, path: '/mutate', count: BURST, template, start: 1_000_000 * rows.length })
  await new Promise((r) => setTimeout(r, 300))
  const row = finishRow(service, { id, title }, before, false, { burst: result })
  row.connections = BURST
  rows.push(row)
  s3proxy.setDelay(0)
  return row
}

// ---------------------------------------------------------------------------------------------
// The run

const passThroughBody = constantBody('create.mutating.json', (r) => delete r.request.object.metadata.labels.backup)
const freshTemplate = makeTemplate('create.mutating.json', { prefix: `fresh-${RUN}-`, namespace: 'media' })
const restoreTemplate = makeTemplate('create.mutating.json', restoreNaming)
const deleteTemplate = makeTemplate('delete.validating.json', deleteNaming)

await compile()

// ---------------------------------------------------------------------------------------------
// Node alone, the service's code loaded, and a small cluster (a homelab): 100 labelled PVCs

const MiBof = (bytes: number) => bytes / 2 ** 20
const bareNode = memoryAtExit(['-e', ''], {})
const modulesLoaded = memoryAtExit([SERVICE_FILE], { SMART_RESTORE_CONFIG: join(work, 'no-such-config.json') })
log(`memory: node alone ${fmt(MiBof(bareNode.rss), 0)} MiB RSS; the service's modules loaded ${fmt(MiBof(modulesLoaded.rss), 0)} MiB (heap ${fmt(MiBof(modulesLoaded.heapUsed), 1)} MiB used)`)

interface SmallRun {
  /** Process start → listening (/healthz 200) and → ready (/readyz 200), ms. */
  listeningMs: number
  readyMs: number
  rssReadyMiB: number
  /** After the reconciler and the readiness refresh settled (no API request for 1 s, at least 3 s). */
  rssSettledMiB: number
  peakMiB: number
  memory: ProbeMemory
  apiRequests: number
  apiWrites: number
}
interface SmallFigures {
  pvcs: number
  first: SmallRun
  restarts: SmallRun[]
}

/**
 * 100 PVCs labelled with a tier (backup=hourly|daily|weekly) in 10 namespaces, Bound, no backups in
 * S3 yet. The first start writes their ReplicationSources (and repository Secrets); each restart
 * then finds everything in place, as a homelab's webhook does after a rollout or a node drain. The
 * service runs exactly as in phase two (the image's build, environment and NODE_OPTIONS), against a
 * fake apiserver of its own and s3rver directly.
 */
async function smallCluster(): Promise<SmallFigures | undefined> {
  if (ONLY && !ONLY.has('small')) return undefined
  const small = await startFakeApiServer()
  try {
    installRestorePrerequisites(small)
    for (const name of ['smart-restore', ...Array.from({ length: 10 }, (_, i) => `home-${String(i).padStart(2, '0')}`)]) {
      small.objects.put(NS, { apiVersion: 'v1', kind: 'Namespace', metadata: { name }, status: { phase: 'Active' } })
    }
    small.objects.put('/api/v1/secrets', {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'smart-restore-restic', namespace: 'smart-restore' },
      data: { RESTIC_PASSWORD: b64('bench-password'), AWS_ACCESS_KEY_ID: b64(S3RVER_KEY), AWS_SECRET_ACCESS_KEY: b64(S3RVER_KEY) },
    })
    const tiers = ['hourly', 'daily', 'weekly']
    for (let i = 0; i < SMALL_PVCS; i++) {
      const name = `data-${i}`
      const namespace = `home-${String(i % 10).padStart(2, '0')}`
      small.objects.put(PVC, {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name, namespace, labels: { backup: tiers[i % 3]!, 'app.kubernetes.io/name': `app-${i}` }, finalizers: ['kubernetes.io/pvc-protection'] },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '5Gi' } }, storageClassName: 'longhorn', volumeMode: 'Filesystem', volumeName: `pvc-small-${RUN}-${i}` },
        status: { phase: 'Bound', accessModes: ['ReadWriteOnce'], capacity: { storage: '5Gi' } },
      })
    }
    const kubeconfig = writeKubeconfig(join(work, 'kubeconfig-small'), small.url, small.token)
    const config = await writeServiceConfig(join(work, 'config-small.json'), s3.endpoint)
    const runOnce = async (n: number): Promise<SmallRun> => {
      const from = small.requests.length
      const svc = await startService(`small-${n}`, { KUBECONFIG: kubeconfig }, config)
      const listeningMs = svc.listeningAt - svc.startedAt
      const deadline = Date.now() + 60_000
      while ((await get(`${svc.url}/readyz`, svc.caCert)) !== 200) {
        if (Date.now() > deadline) throw new Error('small cluster: the service did not become ready within 60 s')
        await new Promise((r) => setTimeout(r, 10))
      }
      const readyMs = performance.now() - svc.startedAt
      const rssReadyMiB = memoryOf(svc.pid).rssMiB
      // Settled: the reconciler and the readiness refresh have done their first pass.
      const settleStart = Date.now()
      let last = small.requests.length
      let quietSince = Date.now()
      while (Date.now() - settleStart < 30_000 && (Date.now() - settleStart < 3000 || Date.now() - quietSince < 1000)) {
        await new Promise((r) => setTimeout(r, 100))
        if (small.requests.length !== last) {
          last = small.requests.length
          quietSince = Date.now()
        }
      }
      const mem = memoryOf(svc.pid)
      const { memory } = await svc.ask<{ memory: ProbeMemory }>('stats')
      const requests = small.requests.slice(from).filter((r) => !isWatch(r))
      await svc.stop()
      return { listeningMs, readyMs, rssReadyMiB, rssSettledMiB: mem.rssMiB, peakMiB: mem.peakMiB, memory, apiRequests: requests.length, apiWrites: requests.filter((r) => r.method !== 'GET').length }
    }
    const first = await runOnce(0)
    log(`small cluster (${SMALL_PVCS} labelled PVCs): first start ready in ${fmt(first.readyMs, 0)} ms, RSS ${fmt(first.rssSettledMiB, 0)} MiB settled (peak ${fmt(first.peakMiB, 0)}), ${first.apiWrites} API writes`)
    const restarts: SmallRun[] = []
    for (let n = 1; n <= RESTARTS; n++) {
      const r = await runOnce(n)
      restarts.push(r)
      log(`small cluster: restart ${n}: listening after ${fmt(r.listeningMs, 0)} ms, ready after ${fmt(r.readyMs, 0)} ms; RSS ${fmt(r.rssReadyMiB, 0)} MiB ready, ${fmt(r.rssSettledMiB, 0)} MiB settled (peak ${fmt(r.peakMiB, 0)}), heap ${fmt(MiBof(r.memory.heapUsed), 1)} of ${fmt(MiBof(r.memory.heapTotal), 1)} MiB; ${r.apiWrites} API writes`)
    }
    return { pvcs: SMALL_PVCS, first, restarts }
  } finally {
    await small.close()
  }
}
const smallFigures = await smallCluster()

// ---------------------------------------------------------------------------------------------
// The big cluster: 10,000 PVCs and 10,000 ReplicationSources, and the load

log('baseline: starting the bare fastify server')
const baseline = await startChild(join(HELPERS_DIR, 'baseline.js'), 'baseline', { env: { ...process.env, ...IMAGE_ENV } })
const baselineSpec: Spec = { id: 'baseline', title: 'bare fastify HTTPS, constant allowed AdmissionReview', path: '/mutate', body: { constant: passThroughBody } }
if (CPU_PROF) mkdirSync(PROFILES, { recursive: true })
// Measured twice, before and after the throughput scenarios it is compared with (the ratio takes the
// mean): on a shared 2-core machine the capacity left to the benchmark drifts.
await runScenario(baseline, baselineSpec, true)

log('service: starting (cluster mode, watched caches listing)')
const service = await startService('service', { KUBECONFIG: kubeconfigFile }, configFile)
const rssListening = memoryOf(service.pid).rssMiB
const readyDeadline = Date.now() + 120_000
while ((await get(`${service.url}/readyz`, service.caCert)) !== 200) {
  if (Date.now() > readyDeadline) throw new Error('the service did not become ready (watched caches) within 120 s')
  await new Promise((r) => setTimeout(r, 50))
}
const readyAfterMs = performance.now() - service.startedAt
// The reconciler queues every PVC once the caches synced; wait until it has looked at all of them
// (it writes nothing: the PVCs are unlabelled and their ReplicationSources are not smart-restore's).
await new Promise((r) => setTimeout(r, 3000))
const startupApi = apiDelta(0, api.requests.length)
const startupApiConnections = { ...apiProxy.byClass(), total: apiProxy.connections() }
logOffset = readAdmissions(service.logFile, 0).offset
const rssStart = memoryOf(service.pid)
const syncedStats = await service.ask<{ memory: ProbeMemory }>('stats')
const cpuStartup = cpuMsOf(service.pid)
log(`service: ready after ${(readyAfterMs / 1000).toFixed(1)} s; RSS ${rssStart.rssMiB.toFixed(0)} MiB, peak so far ${rssStart.peakMiB.toFixed(0)} MiB (${rssListening.toFixed(0)} MiB when it first answered); startup API requests ${startupApi.decision} lists/gets, ${startupApi.writes} writes, ${startupApi.watch} watches`)

// Sanity: each scenario's body gets the answer it is meant to get.
const expect = async (what: string, path: string, body: string, check: (res: any) => boolean) => {
  const { status, json } = await post(`${service.url}${path}`, body)
  if (status !== 200 || !check(json?.response)) throw new Error(`sanity check failed: ${what}: HTTP ${status} ${JSON.stringify(json)}`)
}
const decisionOf = (res: any): string | undefined => {
  const patch = res?.patch ? JSON.parse(Buffer.from(res.patch, 'base64').toString('utf8')) : []
  for (const op of patch) {
    if (op.path === '/metadata/annotations') return op.value?.['smart-restore.io/decision']
    if (op.path === '/metadata/annotations/smart-restore.io~1decision') return op.value
  }
  return undefined
}
await expect('unlabelled pass-through is allowed unchanged', '/mutate', passThroughBody, (r) => r.allowed === true && !r.patch)
await expect('labelled, no snapshot: fresh', '/mutate', render(freshTemplate, 999_999_999), (r) => r.allowed === true && decisionOf(r) === 'fresh')
await expect('labelled, snapshot: restore', '/mutate', render(restoreTemplate, RESTORE_SEEDS - 1), (r) => r.allowed === true && decisionOf(r) === 'restore')
await expect('DELETE of an idle PVC is allowed', '/validate', render(deleteTemplate, 1), (r) => r.allowed === true)
await expect('DELETE of a PVC mid-backup is refused', '/validate', render(deleteTemplate, 7), (r) => r.allowed === false && r.status?.code === 409)
log('sanity: pass-through, fresh, restore, DELETE allowed and refused answers are as expected')

await runScenario(service, { id: 'pass-through', title: 'unlabelled PVC CREATE (pass-through)', path: '/mutate', body: { constant: passThroughBody } })
await runScenario(service, { id: 'delete', title: `DELETE guard, ${PVCS.toLocaleString('en-US')} PVCs + RSs cached`, path: '/validate', body: { template: deleteTemplate, key: 'delete' } })
await runScenario(baseline, { ...baselineSpec, id: 'baseline-2', title: 'the baseline again' }, true)
await baseline.stop()
await runScenario(service, { id: 'pass-through@1000', title: 'unlabelled pass-through at 1,000 req/s', path: '/mutate', body: { constant: passThroughBody }, connections: 10, rate: 1000, warmup: 1 })
await runScenario(service, { id: 'delete@1000', title: 'DELETE guard at 1,000 req/s', path: '/validate', body: { template: deleteTemplate, key: 'delete' }, connections: 10, rate: 1000, warmup: 1 })
await runScenario(service, { id: 'fresh', title: 'labelled, no snapshot (S3 list on loopback s3rver)', path: '/mutate', body: { template: freshTemplate, key: 'fresh' }, warmup: 1 })
await runScenario(service, { id: `fresh+${S3_LATENCY_MS}ms`, title: `labelled, no snapshot, S3 +${S3_LATENCY_MS} ms per answer`, path: '/mutate', body: { template: freshTemplate, key: 'fresh' }, connections: 50, warmup: 1, s3DelayMs: S3_LATENCY_MS })
await runScenario(service, { id: 'restore', title: 'labelled, snapshot exists: S3 list + Secret read, Secret apply, RD create', path: '/mutate', body: { template: restoreTemplate, key: 'restore' }, warmup: 1 })
const restoreUsed = nextStart('restore')
await burst(service, 'burst', `${BURST} concurrent CREATEs of one PVC (S3 on loopback)`, 0)
await burst(service, 'burst+100ms', `${BURST} concurrent CREATEs of one PVC (S3 +100 ms, all arrive while the probe is in flight)`, 100)

const rssEnd = memoryOf(service.pid)
type Mem = { memory: ProbeMemory }
const endStats = await service.ask<Mem>('stats')
const afterGc = await service.ask<Mem>('gc')
const totals = {
  s3Requests: s3.requests(),
  s3Connections: s3proxy.connections(),
  api: apiDelta(0, api.requests.length),
  apiConnections: { ...apiProxy.byClass(), total: apiProxy.connections() },
  cpuMs: cpuMsOf(service.pid),
}
await service.stop()
log('service stopped')

// Probe mode restic: the store alone on a 40-snapshot repository, list mode as its baseline.
let restic: ResticFigures | undefined
if (!ONLY || ONLY.has('restic')) {
  log(`restic: probe mode restic on a 40-snapshot repository, ${RESTIC_RUNS} runs per figure (and list mode on it)`)
  restic = await measureResticProbe({ runs: RESTIC_RUNS, latencyMs: S3_LATENCY_MS, concurrent: RESTIC_CONCURRENT, log })
  log(`restic: done in ${((restic.wallMs) / 1000).toFixed(1)} s`)
}

// ---------------------------------------------------------------------------------------------
// Report

const m = machine()
const baselines = rows.filter(isBase)
/** The baseline's throughput: the mean of its two runs (before and after the throughput scenarios). */
const base = { rps: baselines.reduce((a, r) => a + r.load!.rps, 0) / baselines.length, cpuMs: baselines.reduce((a, r) => a + r.cpuMsPerAdmission, 0) / baselines.length }
/**
 * The throughput ratio a CPU-bound server would reach, from CPU time per request: steadier than req/s
 * when other work on the machine takes a varying share of the cores.
 */
const cpuRatio = (r: Row) => base.cpuMs / r.cpuMsPerAdmission
/** Throughput relative to the baseline; not for fixed-rate runs (they get the rate they ask for). */
const ratio = (r: Row) => (r.load && !r.rate ? r.load.rps / base.rps : NaN)
const perAdm = (n: number, r: Row) => (r.admissions ? n / r.admissions : NaN)

const header = ['scenario', 'conns', 'req/s', '× baseline', 'p50 ms', 'p99 ms', 'p99.9 ms', 'handler p50/p99 ms', 'S3 req/adm', 'API req/adm', 'S3 conns', 'API conns', 'CPU ms/adm', 'CPU % svc/runner/other', 'RSS MiB']
const table: string[][] = rows.map((r) => [
  r.id,
  r.rate ? `${r.connections} @${r.rate}/s` : String(r.connections),
  r.load ? fmtInt(r.load.rps) : r.burst ? `${BURST} in ${fmt(r.burst.wallMs, 0)} ms` : '–',
  r.load && !r.rate ? fmt(ratio(r)) : '–',
  r.load ? fmt(r.load.latencyMs.p50) : r.burst ? fmt(r.burst.latencyMs.p50) : '–',
  r.load ? fmt(r.load.latencyMs.p99) : '–',
  r.load ? fmt(r.load.latencyMs.p999) : r.burst ? `max ${fmt(r.burst.latencyMs.max)}` : '–',
  r.handler ? `${fmt(r.handler.p50)} / ${fmt(r.handler.p99)}` : '–',
  isBase(r) ? '–' : r.id.startsWith('burst') ? `${r.s3Requests} total` : fmt(perAdm(r.s3Requests, r), 3),
  isBase(r) ? '–' : r.id.startsWith('burst') ? `${r.api.decision} total` : fmt(perAdm(r.api.decision, r), 3),
  isBase(r) ? '–' : String(r.s3Connections),
  isBase(r) ? '–' : String(r.apiConnections.total),
  fmt(r.cpuMsPerAdmission, 3),
  `${fmt(r.serviceCpuPct, 0)} / ${fmt(r.runnerCpuPct, 0)} / ${fmt(r.otherCpuPct, 0)}`,
  isBase(r) ? '–' : fmt(r.rssAfterMiB, 0),
])

interface Target {
  what: string
  measured: string
  met: boolean
}

/** The issue's targets, judged on this run (all scenarios ran: not with BENCH_ONLY). */
function judge(): Target[] {
  const row = (id: string) => rows.find((r) => r.id === id)!
  const pass = row('pass-through')
  const pass1k = row('pass-through@1000')
  const del = row('delete')
  const del1k = row('delete@1000')
  const fresh = row('fresh')
  const freshLat = row(`fresh+${S3_LATENCY_MS}ms`)
  const restore = row('restore')
  const burstRow = row('burst')
  const burstSlow = row('burst+100ms')
  const s3ConnsAll = rows.filter((r) => !isBase(r)).reduce((a, r) => a + r.s3Connections, 0)
  const s3ReqAll = rows.filter((r) => !isBase(r)).reduce((a, r) => a + r.s3Requests, 0)
  const apiDecisionConns = rows.filter((r) => !isBase(r)).reduce((a, r) => a + r.apiConnections.get + r.apiConnections.write + r.apiConnections.list, 0)
  const apiDecisionReqs = rows.filter((r) => !isBase(r)).reduce((a, r) => a + r.api.decision, 0)

  return [
    { what: 'pass-through ≥ 0.8× baseline throughput', measured: `${fmt(ratio(pass))}× (${fmtInt(pass.load!.rps)} vs ${fmtInt(base.rps)} req/s); by CPU per admission ${fmt(cpuRatio(pass))}× (${fmt(pass.cpuMsPerAdmission, 3)} vs ${fmt(base.cpuMs, 3)} ms)`, met: ratio(pass) >= 0.8 },
    { what: 'DELETE ≥ 0.8× baseline throughput', measured: `${fmt(ratio(del))}× (${fmtInt(del.load!.rps)} vs ${fmtInt(base.rps)} req/s); by CPU per admission ${fmt(cpuRatio(del))}× (${fmt(del.cpuMsPerAdmission, 3)} vs ${fmt(base.cpuMs, 3)} ms)`, met: ratio(del) >= 0.8 },
    {
      what: 'handler p99 (no S3/API I/O) < 2 ms at 1,000 req/s',
      measured: `pass-through: handler p99 ${fmt(pass1k.handler?.p99 ?? NaN)} ms, client p99 ${fmt(pass1k.load!.latencyMs.p99)} ms (${fmtInt(pass1k.load!.rps)} req/s); DELETE: handler p99 ${fmt(del1k.handler?.p99 ?? NaN)} ms, client p99 ${fmt(del1k.load!.latencyMs.p99)} ms`,
      met: (pass1k.handler?.p99 ?? Infinity) < 2 && (del1k.handler?.p99 ?? Infinity) < 2 && pass1k.load!.rps >= 950,
    },
    {
      what: '≤ 1 S3 request per cold decision',
      measured: `fresh ${fmt(perAdm(fresh.s3Requests, fresh), 3)}, fresh+${S3_LATENCY_MS}ms ${fmt(perAdm(freshLat.s3Requests, freshLat), 3)}, restore ${fmt(perAdm(restore.s3Requests, restore), 3)} per admission`,
      met: [fresh, freshLat, restore].every((r) => r.s3Requests <= r.admissions),
    },
    {
      what: '0 extra S3 requests for concurrent duplicates',
      measured: `${BURST} concurrent CREATEs of one PVC: ${burstRow.s3Requests} S3 request(s) (loopback), ${burstSlow.s3Requests} (S3 +100 ms)`,
      met: burstRow.s3Requests <= 1 && burstSlow.s3Requests <= 1,
    },
    { what: '0 API requests per DELETE decision', measured: `${del.api.decision + del1k.api.decision} API requests for ${del.admissions + del1k.admissions} DELETE decisions (discovery ${del.api.discovery + del1k.api.discovery}, watches ${del.api.watch + del1k.api.watch}, leader-election Lease ${del.api.lease + del1k.api.lease} aside)`, met: del.api.decision + del1k.api.decision === 0 },
    {
      what: 'connections reused: S3',
      measured: `${s3ConnsAll} new TCP connections for ${s3ReqAll} S3 requests during the scenarios (the connections opened before them, at the sanity checks, were reused; whole run below)`,
      met: s3ConnsAll <= Math.max(16, s3ReqAll / 50),
    },
    {
      what: 'connections reused: Kubernetes API',
      measured: `${apiDecisionConns} new TCP connections for ${apiDecisionReqs} admission API requests during the scenarios (restore: ${fmt(perAdm(restore.apiConnections.total, restore), 2)} new connections per admission; whole run below)`,
      met: apiDecisionConns <= Math.max(16, apiDecisionReqs / 50),
    },
  ]
}
/** The issue's memory and startup targets (MiB as /proc reports them: KiB / 1024). */
const TARGET_SMALL_MIB = 90
const TARGET_SYNCED_MIB = 150
const TARGET_PEAK_MIB = 180
const TARGET_READY_MS = 1500
const median = (xs: number[]) => percentiles(xs, [50])[0] ?? NaN
function memoryTargets(): Target[] {
  const out: Target[] = []
  if (smallFigures) {
    const runs = [smallFigures.first, ...smallFigures.restarts]
    const worst = Math.max(...runs.map((r) => r.rssSettledMiB))
    const readyMs = smallFigures.restarts.map((r) => r.readyMs)
    out.push({
      what: `RSS ready with ${smallFigures.pvcs} labelled PVCs ≤ ${TARGET_SMALL_MIB} MiB`,
      measured: `first start (writes their ReplicationSources) ${fmt(smallFigures.first.rssSettledMiB, 0)} MiB, restarts ${smallFigures.restarts.map((r) => fmt(r.rssSettledMiB, 0)).join(' / ')} MiB (settled after ready; at /readyz 200: ${runs.map((r) => fmt(r.rssReadyMiB, 0)).join(' / ')}); the highest: ${fmt(worst, 1)} MiB${worst > TARGET_SMALL_MIB ? `, ${fmt(worst - TARGET_SMALL_MIB, 1)} MiB over` : ''}`,
      met: worst <= TARGET_SMALL_MIB,
    })
    out.push({
      what: `startup to /readyz 200 with ${smallFigures.pvcs} PVCs ≤ ${fmt(TARGET_READY_MS / 1000, 1)} s`,
      measured: `restarts: median ${fmt(median(readyMs), 0)} ms (${readyMs.map((x) => fmt(x, 0)).join(' / ')}; listening after ${smallFigures.restarts.map((r) => fmt(r.listeningMs, 0)).join(' / ')} ms); first start ${fmt(smallFigures.first.readyMs, 0)} ms`,
      met: median(readyMs) <= TARGET_READY_MS,
    })
  }
  if (!ONLY) {
    out.push({
      what: `RSS with ${PVCS.toLocaleString('en-US')} PVCs + ${PVCS.toLocaleString('en-US')} RSs synced ≤ ${TARGET_SYNCED_MIB} MiB`,
      measured: `${fmt(rssStart.rssMiB, 1)} MiB (caches synced, reconciler settled; the peak while listing and settling: ${fmt(rssStart.peakMiB, 0)} MiB)${rssStart.rssMiB > TARGET_SYNCED_MIB ? `, ${fmt(rssStart.rssMiB - TARGET_SYNCED_MIB, 1)} MiB over` : ''}`,
      met: rssStart.rssMiB <= TARGET_SYNCED_MIB,
    })
    out.push({
      what: `peak RSS under the restore load ≤ ${TARGET_PEAK_MIB} MiB`,
      measured: `${fmt(rssEnd.peakMiB, 1)} MiB (VmHWM after every scenario, restore and bursts included; ${fmt(rssEnd.rssMiB, 0)} MiB at the end)${rssEnd.peakMiB > TARGET_PEAK_MIB ? `, ${fmt(rssEnd.peakMiB - TARGET_PEAK_MIB, 1)} MiB over` : ''}`,
      met: rssEnd.peakMiB <= TARGET_PEAK_MIB,
    })
  }
  return out
}

/** Where the memory is: one row per moment, from /proc and the probe in the service's process. */
const memHeader = ['moment', 'RSS MiB', 'anonymous / file-backed', 'V8 heap used / committed', 'bytecode + compiled code', 'outside the V8 heap (external; script sources)', 'rest of anonymous']
function memRow(what: string, rssMiB: number, m: ProbeMemory): string[] {
  const f = (b: number) => fmt(MiBof(b), 1)
  // Anonymous memory the V8 heap and the external buffers do not account for: malloc (OpenSSL,
  // libuv, V8's own tables), thread stacks, the script sources, the young generation's unused half.
  const rest = m.rssAnon - m.heapTotal - m.external
  return [what, fmt(rssMiB, 1), `${f(m.rssAnon)} / ${f(m.rssFile)}`, `${f(m.heapUsed)} / ${f(m.heapTotal)}`, f(m.code.bytecodeAndMetadata + m.code.codeAndMetadata), `${f(m.external)}; ${f(m.code.externalScriptSource)}`, f(rest)]
}
function memoryRows(): string[][] {
  const rows: string[][] = [memRow('node alone (an empty script, same NODE_OPTIONS)', MiBof(bareNode.rss), bareNode), memRow('the service\'s modules loaded (nothing started)', MiBof(modulesLoaded.rss), modulesLoaded)]
  if (smallFigures) {
    rows.push(memRow(`${smallFigures.pvcs} labelled PVCs: first start, settled`, smallFigures.first.rssSettledMiB, smallFigures.first.memory))
    smallFigures.restarts.forEach((r, i) => rows.push(memRow(`${smallFigures!.pvcs} labelled PVCs: restart ${i + 1}, settled`, r.rssSettledMiB, r.memory)))
  }
  rows.push(memRow(`${PVCS.toLocaleString('en-US')} PVCs + RSs: synced, settled`, rssStart.rssMiB, syncedStats.memory))
  rows.push(memRow('… after the load', rssEnd.rssMiB, endStats.memory))
  rows.push(memRow('… then one full GC (live data)', MiBof(afterGc.memory.rss), afterGc.memory))
  return rows
}
const codeLine = loadedCode
  ? `JavaScript the service loads at startup (static imports of ${SERVICE_ENTRY}, minified): ${fmt(loadedCode.bytes / 1024, 0)} KiB in ${loadedCode.files} files — ${loadedCode.byPackage
      .slice(0, 10)
      .map(([p, b]) => `${p} ${fmt(b / 1024, 0)}`)
      .join(', ')} KiB, …; loaded only when needed (the development certificate's selfsigned, S3 event streams, ...): ${fmt(loadedCode.lazyBytes / 1024, 0)} KiB.`
  : 'BENCH_NO_COMPILE=1: the build was not redone, so its code sizes are not known to this run.'
const targets: Target[] = [...memoryTargets(), ...(ONLY ? [] : judge()), ...(restic ? resticTargets(restic) : [])]

const detail = rows
  .filter((r) => !isBase(r))
  .map((r) => {
    const parts = [`decisions ${JSON.stringify(r.decisions)}`]
    if (r.load && r.load.non2xx + r.load.errors + r.load.timeouts > 0) parts.push(`non-2xx ${r.load.non2xx}, errors ${r.load.errors}, timeouts ${r.load.timeouts}`)
    if (r.burst) parts.push(`answers ${JSON.stringify(r.burst.decisions)}`)
    if (r.probeMs) parts.push(`probe p50/p99 ${fmt(r.probeMs.p50, 0)}/${fmt(r.probeMs.p99, 0)} ms, handler without the probe p50/p99 ${fmt(r.handlerNoS3!.p50)}/${fmt(r.handlerNoS3!.p99)} ms (±0.5: probe ms are whole)`)
    if (r.api.decision) parts.push(`API ${JSON.stringify(r.api.byMethod)}`)
    const c = r.apiConnections
    if (c.total) parts.push(`API connections: ${Object.entries(c).filter(([k, v]) => k !== 'total' && v).map(([k, v]) => `${v} ${k}`).join(', ')}`)
    if (r.api.discovery || r.api.watch) parts.push(`(periodic discovery ${r.api.discovery}, watch ${r.api.watch} requests during it)`)
    if (r.loop) parts.push(`event-loop delay p50/p99/max ${fmt(r.loop.p50)}/${fmt(r.loop.p99)}/${fmt(r.loop.max)} ms`)
    if (r.warnings) parts.push(`${r.warnings} warning/error log lines`)
    return `- **${r.id}** (${r.admissions.toLocaleString('en-US')} admissions): ${parts.join('; ')}`
  })
  .join('\n')

const command = `npm run bench${[['BENCH_SECONDS', SECONDS, 8], ['BENCH_WARMUP', WARMUP, 2], ['BENCH_CONNECTIONS', CONNECTIONS, 20], ['BENCH_PVCS', PVCS, 10000], ['BENCH_RESTORE_SEEDS', RESTORE_SEEDS, 4000], ['BENCH_S3_LATENCY_MS', S3_LATENCY_MS, 20], ['BENCH_RESTIC_RUNS', RESTIC_RUNS, 5], ['BENCH_RESTIC_CONCURRENT', RESTIC_CONCURRENT, 8]]
  .filter(([, v, d]) => v !== d)
  .map(([k, v]) => ` ${k}=${v}`)
  .join('')}`
const summary = {
  load: `load average ${loadAtStart.map((l) => l.toFixed(2)).join(', ')} when the run started`,
  machine: `${m.cpu}, ${m.cores} cores (nproc), ${m.memGiB} GiB, Linux ${m.kernel}`,
  node: process.version,
  date: new Date().toISOString(),
  command,
  wallSeconds: (Date.now() - started) / 1000,
}

const text = textTable(header, table)
process.stdout.write(`\n${text}\n\n${detail}\n\n`)
if (restic) process.stdout.write(`Probe mode restic, ${restic.snapshots} snapshots:\n\n${textTable(resticHeader, resticTable(restic, false))}\n\n${[...resticLegend(restic), '', ...resticNotes(restic)].join('\n')}\n\n`)
for (const t of targets) process.stdout.write(`${t.met ? 'MET   ' : 'MISSED'}  ${t.what}: ${t.measured}\n`)
const MiB = (bytes: number | undefined) => fmt((bytes ?? NaN) / 2 ** 20, 0)
const rssLine =
  `RSS of the service: ${MiB(modulesLoaded.rss)} MiB with its modules loaded (node alone: ${MiB(bareNode.rss)}), ${fmt(rssListening, 0)} MiB when it first answered, ` +
  `${fmt(rssStart.rssMiB, 0)} MiB at the start of the load (caches synced, reconciler settled), ${fmt(rssEnd.rssMiB, 0)} MiB at the end (peak ${fmt(rssEnd.peakMiB, 0)} MiB). ` +
  `V8 heap at the end: ${MiB(endStats.memory.heapUsed)} MiB used of ${MiB(endStats.memory.heapTotal)}; after one full GC ${MiB(afterGc.memory.heapUsed)} MiB live ` +
  `(RSS then ${MiB(afterGc.memory.rss)} MiB), external ${MiB(afterGc.memory.external)} MiB.`
process.stdout.write(`\n${textTable(memHeader, memoryRows())}\n\n${codeLine}\n\n${rssLine}\n`)
process.stdout.write(`${summary.machine}; node ${summary.node}; ${summary.date}; ${fmt(summary.wallSeconds, 0)} s\n`)

if (RESULTS !== '-') {
  writeFileSync(
    RESULTS,
    `# Benchmark results

Written by \`${command}\` (bench/run.ts) — the figures of the last run; do not edit by hand.
How the benchmark works and why the missed targets are missed: bench/README.md.

- **Machine**: ${summary.machine}
- **Node**: ${summary.node}
- **Date**: ${summary.date} (${summary.load}; the *other* CPU column shows what else ran during each scenario)
- **Command**: \`${command}\` (whole run ${fmt(summary.wallSeconds, 0)} s)
- **Load**: autocannon over HTTPS, keep-alive, HTTP/1.1, no pipelining, real AdmissionReview bodies
  (kube-apiserver v1.32 captures from ../shared/fixtures), ${SECONDS} s per scenario after ${WARMUP} s of warm-up
  (1 s for the rate-limited and S3 scenarios); ${CONNECTIONS} connections unless the table says otherwise.
- **Service**: its own process, run as the image runs it: \`node ${SERVICE_ENTRY}\` of the build \`npm run build\` writes
  (scripts/build.mjs, into bench/.build/service), the image's environment (${Object.entries(IMAGE_ENV).map(([k, v]) => `${k}=${v}`).join(' ') || 'none'}) and
  the serving certificate from files; bench/serve.ts is loaded first (\`--import\`) to answer the runner's questions. Cluster mode against a loopback
  Kubernetes API (test/helpers/fake-apiserver.ts) holding ${PVCS.toLocaleString('en-US')} PVCs and ${PVCS.toLocaleString('en-US')} ReplicationSources
  (${Array.from({ length: PVCS }, (_, i) => i).filter(inFlight).length} of them mid-backup), S3 = s3rver on loopback (probe mode list: the restic mode has its own section), reconciler ${env.BENCH_RECONCILER === '0' ? 'off' : 'on'}, log level ${env.BENCH_LOG_LEVEL ?? 'info'}, metrics on,
  \`NODE_OPTIONS=${SERVICE_NODE_OPTIONS}\`${env.BENCH_SERVICE_NODE_OPTIONS ? ' (BENCH_SERVICE_NODE_OPTIONS)' : " (the Deployment's, deploy/base/deployment.yaml)"}.
  Ready (caches synced) ${fmt(readyAfterMs / 1000, 1)} s after start.

## Figures

req/s and client latencies (p50/p99/p99.9, ms, 2xx only) are measured by autocannon in a worker
thread of the runner. *× baseline* divides by the mean of the two baseline runs (before and after the
throughput scenarios). *handler* is the service's own \`durationMs\` per admission (route entry to
answer; S3/API waits included where there are any). Per-admission counts divide by the admissions the
service logged in the window; connections are TCP connections the service opened in the window (S3:
at the proxy in front of s3rver; API: at the proxy in front of the fake apiserver). *CPU ms/adm* is the
server process's CPU time (from /proc) per admission. *CPU %* is % of one core over the window: the
server / this runner (stand-ins, proxies, load generator) / everything else on the machine (other work
sharing the 2 cores; when it is high, throughput figures drift and CPU ms/adm is the steadier measure).
RSS is the service's after the scenario. Bursts: ${BURST} requests on ${BURST} open keep-alive connections,
fired at once (p50 and max latency).

${markdownTable(header, table)}

${detail}

## Memory and startup

As the image runs the service (above). *settled*: after /readyz answered 200, once the reconciler's
and the readiness refresh's first pass made no API request for a second (at least 3 s). The small
cluster: ${SMALL_PVCS} PVCs labelled with a tier (\`backup\`: hourly, daily, weekly) in 10 namespaces, no backups
yet, its own fake apiserver; the first start writes their ReplicationSources, each restart finds them
(as after a rollout). *anonymous* is the process's own memory (V8 heap, malloc, stacks); *file-backed*
is mapped files, mostly the node binary itself. *rest of anonymous* = anonymous − V8 heap committed −
external: allocator and OpenSSL state, thread stacks, the script sources and source maps
(\`--enable-source-maps\`), the young generation's reserve.

${smallFigures ? `Startup of the restarts (process start → listening → /readyz 200): ${smallFigures.restarts.map((r) => `${fmt(r.listeningMs, 0)} → ${fmt(r.readyMs, 0)} ms`).join('; ')}. The first start: ${fmt(smallFigures.first.listeningMs, 0)} → ${fmt(smallFigures.first.readyMs, 0)} ms, then ${smallFigures.first.apiWrites} API writes (restarts: ${smallFigures.restarts.map((r) => r.apiWrites).join(' / ')}).` : ''}

${markdownTable(memHeader, memoryRows())}

${codeLine}

${restic ? resticMarkdown(restic, markdownTable) : ''}
## Targets

| target | measured | |
|---|---|---|
${targets.map((t) => `| ${t.what} | ${t.measured} | ${t.met ? 'met' : '**missed**'} |`).join('\n')}

## Over the whole run

- ${rssLine}
- Startup: ${startupApi.decision} API requests (lists/gets), ${startupApi.writes} writes, ${startupApi.watch} watch streams, ${startupApi.discovery} discovery requests,
  over ${startupApiConnections.total} TCP connections; ${fmt(cpuStartup / 1000, 1)} s of CPU.
- Over the run: ${(totals.s3Requests - s3Seeding).toLocaleString('en-US')} S3 requests by the service over ${totals.s3Connections} TCP connections opened by the service;
  ${totals.api.decision.toLocaleString('en-US')} API requests (${totals.api.writes.toLocaleString('en-US')} writes), ${totals.api.watch} watch streams, ${totals.api.discovery} discovery requests,
  over ${totals.apiConnections.total.toLocaleString('en-US')} TCP connections (${Object.entries(totals.apiConnections).filter(([k, v]) => k !== 'total' && v).map(([k, v]) => `${v} ${k}`).join(', ')}).
  Restore names used: ${restoreUsed.toLocaleString('en-US')} of ${RESTORE_SEEDS.toLocaleString('en-US')} seeded${restoreUsed > RESTORE_SEEDS ? ' (**wrapped: later restores hit the probe cache**)' : ''}.
`,
  )
  log(`wrote ${RESULTS}`)
}

await cleanup()
process.exit(0)
