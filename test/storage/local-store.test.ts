/**
 * LocalDirectoryStore over real temporary directories laid out like a restic repository.
 */
import t from 'tap'
import { chmod, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { defaultConfig, type StoreConfig } from '../../src/config/schema.js'
import { LocalDirectoryStore } from '../../src/storage/local-store.js'
import { createBackupStore } from '../../src/storage/index.js'

const KEY = 'media/data-claim'

function cfg(directory: string, probe: Partial<StoreConfig['probe']> = {}): StoreConfig {
  return { ...defaultConfig.store, type: 'local', local: { directory }, probe: { ...defaultConfig.store.probe, mode: 'list', deadlineMs: 800, ...probe } }
}

async function file(path: string, body = 'x'): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true })
  await writeFile(path, body)
}

t.test('local directory store', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'smart-restore-local-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await file(join(dir, KEY, 'config'))
  await file(join(dir, KEY, 'keys', 'x'))
  await file(join(dir, KEY, 'snapshots', 'abc'))
  await file(join(dir, 'media/empty-claim/config'))
  await mkdir(join(dir, 'media/empty-claim/snapshots'))
  await file(join(dir, 'media/writing-claim/snapshots/abc-tmp-123'))
  await file(join(dir, 'media/linked-claim/config'))
  await mkdir(join(dir, 'media/linked-claim/snapshots'))
  await symlink(join(dir, KEY, 'snapshots', 'abc'), join(dir, 'media/linked-claim/snapshots/abc'))
  await file(join(dir, 'media/odd-claim'))
  const store = new LocalDirectoryStore(cfg(dir))

  t.match(await store.probe(KEY), { state: 'exists', location: `file://${dir}/${KEY}`, detail: /snapshots\/abc$/ })
  t.match(await store.probe('media/empty-claim'), { state: 'none' }, 'initialised, no snapshot')
  t.match(await store.probe('media/never-backed-up'), { state: 'none' }, 'no repository at all')
  t.match(await store.probe('media/writing-claim'), { state: 'none' }, 'a half-written snapshot is not one')
  t.match(await store.probe('media/linked-claim'), { state: 'exists' }, 'a symlinked snapshot file counts')
  t.match(await store.probe('media/odd-claim'), { state: 'unknown', kind: 'other', reason: /ENOTDIR/ }, 'a file where the repository should be')
  t.match(await store.probe('media/../../etc'), { state: 'unknown', kind: 'other' }, 'no escaping the directory')

  t.equal(store.resticRepository(KEY), `${dir}/${KEY}`)
  t.equal(store.location(`/${KEY}/`), `file://${dir}/${KEY}`)

  t.test('head mode', async (t) => {
    const head = new LocalDirectoryStore(cfg(dir, { mode: 'head', headKeyTemplate: '{key}/config' }))
    t.match(await head.probe(KEY), { state: 'exists' })
    t.match(await head.probe('media/never-backed-up'), { state: 'none' })
    const onDir = new LocalDirectoryStore(cfg(dir, { mode: 'head', headKeyTemplate: '{key}/snapshots' }))
    t.match(await onDir.probe(KEY), { state: 'unknown', kind: 'other' }, 'a directory is not the expected file')
  })

  t.test('unreadable snapshots directory is forbidden, not none', { skip: process.getuid?.() === 0 ? 'root reads through permissions' : false }, async (t) => {
    const locked = join(dir, 'media/locked-claim/snapshots')
    await file(join(locked, 'abc'))
    await chmod(locked, 0o000)
    t.teardown(() => chmod(locked, 0o755))
    t.match(await store.probe('media/locked-claim'), { state: 'unknown', kind: 'forbidden', reason: /EACCES/ })
  })

  t.test('through createBackupStore', async (t) => {
    const s = createBackupStore(cfg(dir))
    t.teardown(() => s.close())
    t.match(await s.probe(KEY), { state: 'exists' })
    t.equal(s.resticRepository(KEY), `${dir}/${KEY}`)
  })
})

t.test('a missing backup directory is a misconfiguration, not "no backup"', async (t) => {
  const store = new LocalDirectoryStore(cfg(join(tmpdir(), 'smart-restore-does-not-exist-' + process.pid)))
  t.match(await store.probe(KEY), { state: 'unknown', kind: 'bucket', reason: /does not exist/ })
})

t.test('a relative directory is made absolute', async (t) => {
  const store = new LocalDirectoryStore(cfg('.dev/backups'))
  t.equal(store.resticRepository(KEY), `${process.cwd()}/.dev/backups/${KEY}`)
})
