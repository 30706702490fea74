/**
 * Real restic repositories for tests: written by the real `restic` CLI into s3rver (a real S3
 * implementation) on loopback, served over TLS with a test CA.
 *
 * Why TLS: over plain HTTP restic (minio-go) signs uploads with aws-chunked streaming signatures,
 * and s3rver stores such bodies raw, chunk headers and all, which corrupts the repository. Over
 * HTTPS minio-go sends UNSIGNED-PAYLOAD bodies, which s3rver stores as they are.
 *
 * The snapshot's path: VolSync's mover runs `cd /data && restic backup .`, so its snapshots have
 * `paths: ["/data"]` and a tree whose root holds the volume's files. To get exactly that without
 * touching this machine's /data (which need not exist), each backup runs in a private mount
 * namespace (`unshare -m`, or `unshare -r -m` for a non-root user): a tmpfs becomes the new root,
 * the system directories (/usr, /etc, ...) and this helper's temporary directory are bind-mounted
 * into it, the snapshot's files are bind-mounted at the snapshot path (e.g. /data), and restic
 * runs chrooted there as `cd /data && restic backup .`. All of it vanishes with the namespace; the
 * host sees only an empty directory under os.tmpdir(). Verified with restic 0.14.0: `paths` is
 * ["/data"] and `restic ls` shows /a.txt, /sub/b.txt at the tree's root, as VolSync's snapshots.
 *
 * Where mount namespaces are not allowed (an unprivileged container), the fallback is
 * `restic backup --stdin --stdin-filename data`: restic 0.14 records `paths: ["/data"]` for it too,
 * but the tree then holds one FILE named after the path, whose content is the JSON of
 * `SnapshotSpec.files`. Snapshot metadata (time, paths, host, tags, ids) is the same either way;
 * `snapshotTreeMethod()` tells a test which one it gets. SMART_RESTORE_TEST_RESTIC_TREE=stdin
 * forces the fallback.
 *
 * Cost: restic 0.14 offers no way to lower its scrypt parameters (only its own Go tests can), and
 * it calibrates them at `init` to about 0.5 s per derivation: measured here, `init` takes about
 * 2.5 s of CPU and every later command (backup, snapshots, forget) about 0.6-0.7 s.
 */
import { execFile, type ExecFileException } from 'node:child_process'
import { accessSync, constants as fsConstants } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, dirname, isAbsolute, join, normalize, posix } from 'node:path'
import S3rver from 's3rver'
import { generateCertificates } from '../../src/tls/certificates.js'
import { BUCKET, S3RVER_KEY, type RecordedS3Request } from './storage-servers.js'

export interface TlsS3rver {
  /** https://127.0.0.1:<port> */
  endpoint: string
  port: number
  /** The test CA (PEM) that signed the server's certificate. */
  caPem: string
  /** `caPem` written to a temporary file (for `restic --cacert`). */
  caFile: string
  /** s3rver's storage: objects are `<directory>/backups/<key>._S3rver_object`. */
  directory: string
  /** Method and path (with query) of every request s3rver received. */
  log: RecordedS3Request[]
  requests(): number
  /** TCP connections accepted so far. */
  connections(): number
  close(): Promise<void>
}

export interface SnapshotSpec {
  /** RFC3339, whole seconds, e.g. 2026-11-22T03:00:41Z (stored in UTC). */
  time: string
  /** Absolute path the snapshot records; default '/data'. */
  path?: string
  /** default 'volsync' */
  host?: string
  tags?: string[]
  /** Files of the snapshot, relative path → content; default one file, `file.txt`. */
  files?: Record<string, string>
}

export interface RepoSpec {
  /** Repository key under the bucket, e.g. 'media/data-claim'. */
  key: string
  password: string
  /** `restic init --repository-version`; default 2. */
  version?: 1 | 2
  snapshots?: SnapshotSpec[]
  /** After backing up, `restic forget` every snapshot (the objects under snapshots/ are removed). */
  forgetAll?: boolean
}

export interface MadeRepo {
  /** s3:https://127.0.0.1:<port>/backups/<key> */
  repository: string
  /** Full (64 hex) ids, in the order of spec.snapshots. */
  snapshotIds: string[]
}

export interface ResticResult {
  stdout: string
  stderr: string
  code: number
}

const TIMEOUT_MS = 120_000

/** Private state of each server, for the restic runs against it. */
interface Workspace {
  /** Temporary directory: CA file, restic cache and TMPDIR, the namespace's root mountpoint, snapshot sources. */
  work: string
}
const workspaces = new WeakMap<TlsS3rver, Workspace>()

/** s3rver over HTTPS on 127.0.0.1, bucket 'backups', in temporary directories removed on close. */
export async function startTlsS3rver(): Promise<TlsS3rver> {
  const directory = await mkdtemp(join(tmpdir(), 'smart-restore-s3rver-tls-'))
  const work = await mkdtemp(join(tmpdir(), 'smart-restore-restic-'))
  try {
    const certs = await generateCertificates(['127.0.0.1', 'localhost'], 2)
    const caFile = join(work, 'ca.pem')
    await writeFile(caFile, certs.caCert)
    await mkdir(join(work, 'cache'))
    await mkdir(join(work, 'tmp'))
    // key/cert make s3rver serve HTTPS (https.createServer); the .d.ts only lists what plain tests use.
    const options: ConstructorParameters<typeof S3rver>[0] & { key: string; cert: string } = {
      address: '127.0.0.1',
      port: 0,
      silent: true,
      directory,
      configureBuckets: [{ name: BUCKET }],
      key: certs.key,
      cert: certs.cert,
    }
    const s3rver = new S3rver(options)
    const { port } = await s3rver.run()
    let count = 0
    let connections = 0
    const log: RecordedS3Request[] = []
    const sockets = new Set<Socket>()
    s3rver.httpServer.on('request', (req: IncomingMessage) => {
      count++
      log.push({ method: req.method ?? '?', path: req.url ?? '' })
    })
    s3rver.httpServer.on('connection', (s: Socket) => {
      connections++
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    })
    let closed = false
    const server: TlsS3rver = {
      endpoint: `https://127.0.0.1:${port}`,
      port,
      caPem: certs.caCert,
      caFile,
      directory,
      log,
      requests: () => count,
      connections: () => connections,
      close: async () => {
        if (closed) return
        closed = true
        const done = s3rver.close()
        for (const s of sockets) s.destroy()
        await done
        await rm(directory, { recursive: true, force: true })
        await removeWorkspace(work)
      },
    }
    workspaces.set(server, { work })
    return server
  } catch (err) {
    await rm(directory, { recursive: true, force: true })
    await removeWorkspace(work)
    throw err
  }
}

/** Refuses to delete recursively while anything is mounted below (a leaked bind mount of /usr...). */
async function removeWorkspace(work: string): Promise<void> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')
  const mounted = mountinfo
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((point) => point === work || point.startsWith(work + '/'))
  if (mounted.length > 0) throw new Error(`not removing ${work}: still mounted there: ${mounted.join(', ')}`)
  await rm(work, { recursive: true, force: true })
}

/** The absolute path of the `restic` binary on PATH, or undefined when restic is not installed. */
export function resticAvailable(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    const candidate = join(dir, 'restic')
    try {
      accessSync(candidate, fsConstants.X_OK)
      return isAbsolute(candidate) ? candidate : join(process.cwd(), candidate)
    } catch {
      // not here
    }
  }
  return undefined
}

function requireRestic(): string {
  const bin = resticAvailable()
  if (bin === undefined) throw new Error('restic is not installed (no executable `restic` on PATH)')
  return bin
}

function workspaceOf(s3: TlsS3rver): Workspace {
  const ws = workspaces.get(s3)
  if (ws === undefined) throw new Error('not a server from startTlsS3rver()')
  return ws
}

export function repositoryUrl(s3: TlsS3rver, key: string): string {
  return `s3:${s3.endpoint}/${BUCKET}/${key}`
}

/** The environment restic runs with: nothing inherited that could point it elsewhere. */
function resticEnv(s3: TlsS3rver, key: string, password: string): NodeJS.ProcessEnv {
  const { work } = workspaceOf(s3)
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('RESTIC_') || name.startsWith('AWS_')) continue
    env[name] = value
  }
  return {
    ...env,
    RESTIC_REPOSITORY: repositoryUrl(s3, key),
    RESTIC_PASSWORD: password,
    AWS_ACCESS_KEY_ID: S3RVER_KEY,
    AWS_SECRET_ACCESS_KEY: S3RVER_KEY,
    RESTIC_CACHE_DIR: join(work, 'cache'),
    TMPDIR: join(work, 'tmp'),
    TZ: 'UTC',
  }
}

/** execFile (no shell) with stdin; resolves with the exit code, rejects only when it could not run or timed out. */
function run(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string }): Promise<ResticResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: options.env, cwd: options.cwd, timeout: TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err: ExecFileException | null, stdout: string, stderr: string) => {
        if (err === null) return resolve({ stdout, stderr, code: 0 })
        if (typeof err.code === 'number' && !err.killed) return resolve({ stdout, stderr, code: err.code })
        const why = err.killed ? `killed (${err.signal ?? 'timeout'} after at most ${TIMEOUT_MS} ms)` : err.message
        reject(new Error(`${file} ${args.join(' ')}: ${why}${stderr ? `\n${stderr}` : ''}`))
      },
    )
    child.stdin?.on('error', () => {}) // restic may exit before reading it all; the exit code tells
    child.stdin?.end(options.input ?? '')
  })
}

/** `restic --cacert <caFile> <args>` against s3rver's `backups/<key>`; never throws for a non-zero exit. */
export async function runRestic(s3: TlsS3rver, key: string, password: string, args: string[]): Promise<ResticResult> {
  return run(requireRestic(), ['--cacert', s3.caFile, ...args], { env: resticEnv(s3, key, password) })
}

/** runRestic that throws with restic's stderr when it fails. */
async function mustRestic(s3: TlsS3rver, key: string, password: string, args: string[], input?: string): Promise<string> {
  const r = await run(requireRestic(), ['--cacert', s3.caFile, ...args], { env: resticEnv(s3, key, password), input })
  if (r.code !== 0) throw new Error(`restic ${args.join(' ')} (repository ${key}) exited ${r.code}:\n${r.stderr}`)
  return r.stdout
}

// ---- the snapshot path ------------------------------------------------------------------------

/** Top-level directories bound into the namespace's root; a snapshot path may not lie below them. */
const SYSTEM_DIRS = ['usr', 'bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32', 'etc', 'dev', 'proc']

/**
 * Run as `sh -eu -c SCRIPT sh ROOT WORK SRC TARGET RESTIC ARGS...` inside the new mount namespace;
 * nothing from outside is interpolated into the script. Mount propagation is private, so none of
 * these mounts is seen outside, and all of them go when the process ends.
 */
const NAMESPACE_SCRIPT = `
root=$1; work=$2; src=$3; target=$4; shift 4
mount -t tmpfs -o mode=0755 smart-restore-root "$root"
for d in ${SYSTEM_DIRS.join(' ')}; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$root/$d"
  elif [ -d "/$d" ]; then mkdir "$root/$d"; mount --rbind "/$d" "$root/$d"
  fi
done
mkdir -p "$root$work" "$root$target"
mount --bind "$work" "$root$work"
if [ ! -x "$root$1" ]; then
  mkdir -p "$root$(dirname "$1")"; : > "$root$1"; mount --bind "$1" "$root$1"
fi
mount --bind "$src" "$root$target"
exec chroot "$root" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$target" "$@"
`

type TreeMethod = 'mount-namespace' | 'stdin'
let unshareFlags: Promise<string[] | undefined> | undefined

/** The `unshare` flags that work here (probed once, with the real script), or undefined. */
function probeNamespace(work: string): Promise<string[] | undefined> {
  unshareFlags ??= (async () => {
    if (process.env.SMART_RESTORE_TEST_RESTIC_TREE === 'stdin') return undefined
    const candidates = process.getuid?.() === 0 ? [['-m'], ['-r', '-m']] : [['-r', '-m']]
    const probe = await mkdtemp(join(work, 'probe-'))
    try {
      await mkdir(join(probe, 'root'))
      await mkdir(join(probe, 'src'))
      await writeFile(join(probe, 'src', 'seen'), '')
      for (const flags of candidates) {
        const r = await run(
          'unshare',
          [...flags, '--propagation', 'private', 'sh', '-eu', '-c', NAMESPACE_SCRIPT, 'sh', join(probe, 'root'), work, join(probe, 'src'), '/data', '/bin/sh', '-c', 'test -e seen && test "$(pwd)" = /data'],
          {},
        ).catch(() => undefined)
        if (r?.code === 0) return flags
      }
      return undefined
    } finally {
      await rm(probe, { recursive: true, force: true })
    }
  })()
  return unshareFlags
}

/** How snapshots' trees are made here (see the file's comment): a mount namespace, or restic --stdin. */
export async function snapshotTreeMethod(s3: TlsS3rver): Promise<TreeMethod> {
  return (await probeNamespace(workspaceOf(s3).work)) === undefined ? 'stdin' : 'mount-namespace'
}

function snapshotPath(spec: SnapshotSpec): string {
  const path = spec.path ?? '/data'
  const clean = posix.normalize(path)
  if (!path.startsWith('/') || clean !== path || path === '/' || path.endsWith('/')) {
    throw new Error(`snapshot path must be an absolute, normalized path other than /: ${JSON.stringify(path)}`)
  }
  const top = path.split('/')[1] ?? ''
  if (SYSTEM_DIRS.includes(top)) throw new Error(`snapshot path may not lie under /${top} (bound into the backup's namespace): ${path}`)
  return path
}

/** restic's --time wants local "YYYY-MM-DD HH:MM:SS"; restic runs with TZ=UTC. */
function resticTime(time: string): string {
  const when = new Date(time)
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.0+)?(Z|[+-]\d\d:\d\d)$/.test(time) || Number.isNaN(when.getTime())) {
    throw new Error(`snapshot time must be RFC3339 with whole seconds, e.g. 2026-11-22T03:00:41Z: ${JSON.stringify(time)}`)
  }
  return when.toISOString().slice(0, 19).replace('T', ' ')
}

async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, content] of Object.entries(files)) {
    const rel = normalize(name)
    if (isAbsolute(rel) || rel === '.' || rel.startsWith('..')) throw new Error(`snapshot file must be a relative path inside the snapshot: ${JSON.stringify(name)}`)
    const file = join(dir, rel)
    await mkdir(dirname(file), { recursive: true })
    await writeFile(file, content)
  }
}

/** One `restic backup` of `spec`; returns the snapshot id restic prints (short, in 0.14). */
async function backup(s3: TlsS3rver, repo: RepoSpec, spec: SnapshotSpec): Promise<string> {
  const { work } = workspaceOf(s3)
  const path = snapshotPath(spec)
  const files = spec.files ?? { 'file.txt': `snapshot of ${path} at ${spec.time}\n` }
  const options = ['--json', '--time', resticTime(spec.time), '--host', spec.host ?? 'volsync']
  for (const tag of spec.tags ?? []) options.push('--tag', tag)

  if (path === work || path.startsWith(work + '/') || work.startsWith(path + '/')) throw new Error(`snapshot path may not overlap this helper's temporary directory ${work}: ${path}`)
  const flags = await probeNamespace(work)
  let stdout: string
  if (flags === undefined) {
    stdout = await mustRestic(s3, repo.key, repo.password, ['backup', ...options, '--stdin', '--stdin-filename', path.slice(1)], JSON.stringify(files))
  } else {
    const src = await mkdtemp(join(work, 'src-'))
    const root = await mkdtemp(join(work, 'root-'))
    try {
      await writeFiles(src, files)
      const restic = requireRestic()
      const args = [...flags, '--propagation', 'private', 'sh', '-eu', '-c', NAMESPACE_SCRIPT, 'sh', root, work, src, path, restic, '--cacert', s3.caFile, 'backup', ...options, '.']
      const r = await run('unshare', args, { env: resticEnv(s3, repo.key, repo.password) })
      if (r.code !== 0) throw new Error(`restic backup of ${path} (repository ${repo.key}) exited ${r.code}:\n${r.stderr}`)
      stdout = r.stdout
    } finally {
      await rm(src, { recursive: true, force: true })
      await rm(root, { recursive: true, force: true })
    }
  }
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue
    const message = JSON.parse(line) as { message_type?: string; snapshot_id?: string }
    if (message.message_type === 'summary' && message.snapshot_id) return message.snapshot_id
  }
  throw new Error(`restic backup of ${path} (repository ${repo.key}) printed no summary with a snapshot_id:\n${stdout}`)
}

/** What `restic snapshots --json` prints for each snapshot (restic 0.14). */
export interface ResticSnapshotJson {
  time: string
  parent?: string
  tree: string
  paths: string[]
  hostname: string
  username?: string
  tags?: string[]
  id: string
  short_id: string
}

export async function listSnapshots(s3: TlsS3rver, key: string, password: string): Promise<ResticSnapshotJson[]> {
  return JSON.parse(await mustRestic(s3, key, password, ['snapshots', '--json'])) as ResticSnapshotJson[]
}

/**
 * `restic init` a repository at `backups/<spec.key>`, back up each of spec.snapshots in order, and
 * (forgetAll) forget them all again. Throws with restic's stderr when a step fails.
 */
export async function makeResticRepo(s3: TlsS3rver, spec: RepoSpec): Promise<MadeRepo> {
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(spec.key)) throw new Error(`repository key must be a plain S3 key path: ${JSON.stringify(spec.key)}`)
  await mustRestic(s3, spec.key, spec.password, ['init', '--repository-version', String(spec.version ?? 2)])
  const shortIds: string[] = []
  for (const snapshot of spec.snapshots ?? []) shortIds.push(await backup(s3, spec, snapshot))
  let snapshotIds: string[] = []
  if (shortIds.length > 0) {
    const listed = (await listSnapshots(s3, spec.key, spec.password)).map((s) => s.id)
    snapshotIds = shortIds.map((short) => {
      const matches = listed.filter((id) => id.startsWith(short))
      if (matches.length !== 1 || matches[0] === undefined) throw new Error(`snapshot ${short} of ${spec.key}: ${matches.length} full ids match in ${JSON.stringify(listed)}`)
      return matches[0]
    })
    if (spec.forgetAll) await mustRestic(s3, spec.key, spec.password, ['forget', ...snapshotIds])
  }
  return { repository: repositoryUrl(s3, spec.key), snapshotIds }
}
