/** restic lock detection (`<key>/locks/<id>` younger than a limit), S3 through s3rver and on disk. */
import t from 'tap'
import { mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createBackupStore, LocalDirectoryStore, S3BackupStore } from '../../src/storage/index.js'
import { defaultConfig } from '../../src/config/schema.js'
import { answer, closedPort, s3ErrorXml, seed, startRaw, startS3rver, storeConfig } from '../helpers/storage-servers.js'

const HALF_HOUR = 30 * 60_000

t.test('S3: a fresh lock, no lock, an old lock, S3 failing', async (t) => {
  const s3 = await startS3rver()
  t.teardown(() => s3.close())
  await seed(s3.endpoint, ['media/busy/config', `media/busy/locks/${'1'.repeat(64)}`, 'media/idle/config', `media/idle/snapshots/${'2'.repeat(64)}`])
  const store = new S3BackupStore(storeConfig(s3.endpoint))
  t.teardown(() => store.close())

  const busy = await store.findRecentLock('media/busy', HALF_HOUR)
  t.equal(busy.state, 'locked')
  if (busy.state === 'locked') {
    t.equal(busy.lock, `media/busy/locks/${'1'.repeat(64)}`)
    t.ok(busy.ageMs >= 0 && busy.ageMs < 60_000, 'just written')
    t.ok(!Number.isNaN(Date.parse(busy.since)))
  }
  t.same(await store.findRecentLock('media/idle', HALF_HOUR), { state: 'none', location: 's3://backups/media/idle' })
  await new Promise((r) => setTimeout(r, 1100)) // S3 LastModified has one-second resolution
  t.equal((await store.findRecentLock('media/busy', 1)).state, 'none', 'a lock older than the limit is stale')

  const cached = createBackupStore(storeConfig(s3.endpoint, { probe: { cacheTtlMs: 60_000 } }))
  t.teardown(() => cached.close())
  t.equal((await cached.findRecentLock!('media/busy', HALF_HOUR)).state, 'locked', 'the cached store passes lock checks through')

  const down = new S3BackupStore(storeConfig(`http://127.0.0.1:${await closedPort()}`))
  t.teardown(() => down.close())
  const unknown = await down.findRecentLock('media/busy', HALF_HOUR)
  t.equal(unknown.state, 'unknown')
  t.equal(unknown.state === 'unknown' && unknown.kind, 'network')

  const forbidden = await startRaw(answer(403, s3ErrorXml('AccessDenied', 'Access Denied')))
  t.teardown(() => forbidden.close())
  const denied = new S3BackupStore(storeConfig(forbidden.endpoint))
  t.teardown(() => denied.close())
  const r = await denied.findRecentLock('media/busy', HALF_HOUR)
  t.equal(r.state === 'unknown' && r.kind, 'forbidden')
})

t.test('local directory: fresh and stale locks by mtime', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sr-locks-'))
  mkdirSync(join(dir, 'media', 'busy', 'locks'), { recursive: true })
  writeFileSync(join(dir, 'media', 'busy', 'locks', 'fresh'), '{}')
  mkdirSync(join(dir, 'media', 'old', 'locks'), { recursive: true })
  writeFileSync(join(dir, 'media', 'old', 'locks', 'stale'), '{}')
  const hourAgo = new Date(Date.now() - 2 * HALF_HOUR)
  utimesSync(join(dir, 'media', 'old', 'locks', 'stale'), hourAgo, hourAgo)
  const store = new LocalDirectoryStore({ ...defaultConfig.store, local: { directory: dir } })
  const busy = await store.findRecentLock('media/busy', HALF_HOUR)
  t.equal(busy.state, 'locked')
  t.match(busy.state === 'locked' && busy.lock, /media\/busy\/locks\/fresh$/)
  t.equal((await store.findRecentLock('media/old', HALF_HOUR)).state, 'none', 'a lock older than 30 minutes is left behind, not running')
  t.equal((await store.findRecentLock('media/never', HALF_HOUR)).state, 'none')
  writeFileSync(join(dir, 'media', 'file-not-dir'), 'x')
  t.equal((await store.findRecentLock('media/file-not-dir', HALF_HOUR)).state, 'unknown', 'a path that is not a directory cannot be read as "no lock"')
})
