/**
 * The restic-repos helper makes what it promises: real restic repositories (restic CLI) in s3rver
 * over TLS, with snapshots at the times, paths, hosts and tags asked for, and the objects restic
 * writes (config, keys/, snapshots/) where a reader of the bucket looks for them.
 */
import t from 'tap'
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import {
  makeResticRepo,
  resticAvailable,
  runRestic,
  snapshotTreeMethod,
  startTlsS3rver,
  type ResticSnapshotJson,
  type TlsS3rver,
} from '../helpers/restic-repos.js'

t.setTimeout(180_000)

const restic = resticAvailable()

/** Object keys under `backups/<key>/` as s3rver stores them. */
async function objects(s3: TlsS3rver, key: string): Promise<string[]> {
  const base = join(s3.directory, 'backups', key)
  const found: string[] = []
  const walk = async (dir: string, prefix: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch(() => [])
    for (const e of entries) {
      if (e.isDirectory()) await walk(join(dir, e.name), `${prefix}${e.name}/`)
      else if (e.name.endsWith('._S3rver_object')) found.push(prefix + e.name.slice(0, -'._S3rver_object'.length))
    }
  }
  await walk(base, '')
  return found.sort()
}

async function snapshots(s3: TlsS3rver, key: string, password: string): Promise<ResticSnapshotJson[]> {
  const r = await runRestic(s3, key, password, ['snapshots', '--json'])
  if (r.code !== 0) throw new Error(r.stderr)
  return JSON.parse(r.stdout) as ResticSnapshotJson[]
}

async function configVersion(s3: TlsS3rver, key: string, password: string): Promise<number> {
  const r = await runRestic(s3, key, password, ['cat', 'config'])
  if (r.code !== 0) throw new Error(r.stderr)
  return (JSON.parse(r.stdout) as { version: number }).version
}

t.test('restic repositories in s3rver over TLS', { skip: restic ? false : 'restic is not installed (apt-get install restic); these tests need the real restic CLI' }, async (t) => {
  const s3 = await startTlsS3rver()
  t.teardown(s3.close)
  t.match(s3.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/)
  t.match(s3.caPem, /BEGIN CERTIFICATE/)
  t.comment(`snapshot trees made by: ${await snapshotTreeMethod(s3)}`)

  const HEX64 = /^[0-9a-f]{64}$/
  const [v2, v1, empty, forgotten] = await Promise.all([
    makeResticRepo(s3, {
      key: 'media/data-claim',
      password: 'pw-v2',
      version: 2,
      snapshots: [
        { time: '2026-11-22T03:00:41Z', files: { 'a.txt': 'hello\n', 'sub/b.txt': 'there\n' } },
        { time: '2026-11-23T04:05:06Z', path: '/srv/files', host: 'files-host', tags: ['daily'] },
      ],
    }),
    makeResticRepo(s3, { key: 'legacy/old-claim', password: 'pw-v1', version: 1, snapshots: [{ time: '2025-01-02T03:04:05Z' }] }),
    makeResticRepo(s3, { key: 'media/never-backed-up', password: 'pw-empty' }),
    makeResticRepo(s3, { key: 'media/all-forgotten', password: 'pw-gone', snapshots: [{ time: '2026-10-01T00:00:00Z' }], forgetAll: true }),
  ])

  t.test('v2 repository with two snapshots', async (t) => {
    t.equal(v2.repository, `s3:${s3.endpoint}/backups/media/data-claim`)
    t.equal(v2.snapshotIds.length, 2)
    for (const id of v2.snapshotIds) t.match(id, HEX64)
    t.equal(await configVersion(s3, 'media/data-claim', 'pw-v2'), 2)
    const list = await snapshots(s3, 'media/data-claim', 'pw-v2')
    t.equal(list.length, 2)
    const [data, files] = list
    t.match(data, { id: v2.snapshotIds[0], time: '2026-11-22T03:00:41Z', paths: ['/data'], hostname: 'volsync' })
    t.same(data?.paths, ['/data'], 'exactly the path VolSync records for `cd /data && restic backup .`')
    t.equal(data?.tags, undefined)
    t.match(files, { id: v2.snapshotIds[1], time: '2026-11-23T04:05:06Z', hostname: 'files-host' })
    t.same(files?.paths, ['/srv/files'])
    t.same(files?.tags, ['daily'])

    // The tree: the volume's files at its root, as VolSync's `restic backup .` (or, without mount
    // namespaces, one file named after the path).
    const ls = await runRestic(s3, 'media/data-claim', 'pw-v2', ['ls', v2.snapshotIds[0] ?? ''])
    t.equal(ls.code, 0, ls.stderr)
    const entries = ls.stdout.split('\n').filter((l) => l.startsWith('/'))
    if ((await snapshotTreeMethod(s3)) === 'mount-namespace') t.same(entries, ['/a.txt', '/sub', '/sub/b.txt'])
    else t.same(entries, ['/data'])

    const check = await runRestic(s3, 'media/data-claim', 'pw-v2', ['check', '--read-data'])
    t.equal(check.code, 0, `restic check --read-data: the repository is intact\n${check.stderr}`)

    const keys = await objects(s3, 'media/data-claim')
    t.ok(keys.includes('config'))
    t.ok(keys.some((k) => k.startsWith('keys/')))
    t.same(keys.filter((k) => k.startsWith('snapshots/')), v2.snapshotIds.map((id) => `snapshots/${id}`).sort())
    t.ok(keys.some((k) => k.startsWith('data/')))
    t.ok(keys.some((k) => k.startsWith('index/')))
  })

  t.test('v1 repository with one snapshot', async (t) => {
    t.equal(await configVersion(s3, 'legacy/old-claim', 'pw-v1'), 1)
    const list = await snapshots(s3, 'legacy/old-claim', 'pw-v1')
    t.equal(list.length, 1)
    t.match(list[0], { id: v1.snapshotIds[0], time: '2025-01-02T03:04:05Z', hostname: 'volsync' })
    t.same(list[0]?.paths, ['/data'])
    const keys = await objects(s3, 'legacy/old-claim')
    t.ok(keys.includes('config'))
    t.ok(keys.some((k) => k.startsWith('keys/')))
    t.same(keys.filter((k) => k.startsWith('snapshots/')), [`snapshots/${v1.snapshotIds[0]}`])
  })

  t.test('initialised, never backed up', async (t) => {
    t.same(empty.snapshotIds, [])
    t.equal(await configVersion(s3, 'media/never-backed-up', 'pw-empty'), 2, 'default repository version 2')
    t.same(await snapshots(s3, 'media/never-backed-up', 'pw-empty'), [])
    const keys = await objects(s3, 'media/never-backed-up')
    t.ok(keys.includes('config'))
    t.ok(keys.some((k) => k.startsWith('keys/')))
    t.same(keys.filter((k) => k.startsWith('snapshots/')), [])
  })

  t.test('every snapshot forgotten', async (t) => {
    t.equal(forgotten.snapshotIds.length, 1)
    t.match(forgotten.snapshotIds[0], HEX64)
    t.same(await snapshots(s3, 'media/all-forgotten', 'pw-gone'), [])
    const keys = await objects(s3, 'media/all-forgotten')
    t.ok(keys.includes('config'))
    t.ok(keys.some((k) => k.startsWith('keys/')))
    t.same(keys.filter((k) => k.startsWith('snapshots/')), [], 'no objects under snapshots/')
    t.ok(keys.some((k) => k.startsWith('data/')), 'forget without prune keeps the data')
    t.ok(
      s3.log.some((r) => r.method === 'DELETE' && r.path.startsWith(`/backups/media/all-forgotten/snapshots/${forgotten.snapshotIds[0]}`)),
      'restic deleted the snapshot object',
    )
  })

  t.test('the request log sees restic over TLS', async (t) => {
    t.ok(s3.requests() > 0)
    t.ok(s3.connections() > 0)
    t.ok(s3.log.some((r) => r.method === 'PUT' && r.path.startsWith('/backups/media/data-claim/config')))
    t.ok(s3.log.some((r) => r.method === 'PUT' && r.path.startsWith('/backups/media/data-claim/keys/')))
  })

  t.test('a wrong password or a missing repository is a non-zero exit, not a throw', async (t) => {
    const wrong = await runRestic(s3, 'media/data-claim', 'not-the-password', ['snapshots', '--json'])
    t.not(wrong.code, 0)
    t.match(wrong.stderr, /wrong password|no key found/)
    const missing = await runRestic(s3, 'media/nothing-here', 'pw', ['snapshots', '--json'])
    t.not(missing.code, 0)
    t.match(missing.stderr, /unable to open config file/)
  })

  t.test('makeResticRepo throws with restic stderr when restic fails', async (t) => {
    await t.rejects(makeResticRepo(s3, { key: 'media/data-claim', password: 'pw-v2' }), /restic init.*exited 1:[\s\S]*already/)
  })
})
