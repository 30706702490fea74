/**
 * Writes the files of a minimal restic repository: a key file, the config, and snapshot files,
 * encrypted and named exactly as restic writes them (restic design document). The service never
 * writes to a repository: this is for the demo and for suites that cannot run the restic CLI
 * (an e2e run against external S3). Its output is read back by the real `restic` in the tests.
 *
 * Snapshots point at a tree that is not written, so `restic snapshots` lists them while a restore
 * of one would fail: enough to show which snapshot is selected, not to restore data.
 */
import { createHash, randomBytes, scrypt as scryptCb } from 'node:crypto'
import { promisify } from 'node:util'
import { cryptoKey, seal, type CryptoKey } from './crypto.js'

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number, options: { N: number; r: number; p: number; maxmem: number }) => Promise<Buffer>

export interface SnapshotSpec {
  /** RFC 3339, e.g. `2026-11-22T03:00:41Z` or with nanoseconds and an offset, as restic writes. */
  time: string
  paths?: string[]
  hostname?: string
  tags?: string[]
}

export interface RepositoryFiles {
  /** Path inside the repository (`config`, `keys/<id>`, `snapshots/<id>`) → bytes. */
  files: Map<string, Buffer>
  /** Snapshot ids in the order given. */
  snapshotIds: string[]
}

/** Cheap scrypt parameters: this writes test repositories, not ones to protect data with. */
const TEST_SCRYPT = { N: 1024, r: 8, p: 1 }

function nameOf(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

function sealed(plain: object | Buffer, key: CryptoKey): Buffer {
  const bytes = Buffer.isBuffer(plain) ? plain : Buffer.from(JSON.stringify(plain))
  return seal(bytes, key, randomBytes(16))
}

/** The files of a repository (format version 2, plain-JSON unpacked files) opened by `password`. */
export async function writeResticRepository(password: string, snapshots: SnapshotSpec[] = [], opts: { version?: 1 | 2 } = {}): Promise<RepositoryFiles> {
  const files = new Map<string, Buffer>()
  const master = cryptoKey(randomBytes(32), randomBytes(16), randomBytes(16))
  const masterJson = {
    mac: { k: master.macK.toString('base64'), r: master.macR.toString('base64') },
    encrypt: master.encrypt.toString('base64'),
  }
  const salt = randomBytes(64)
  const derived = await scrypt(password, salt, 64, { ...TEST_SCRYPT, maxmem: 64 * 1024 * 1024 })
  const userKey = cryptoKey(derived.subarray(0, 32), derived.subarray(32, 48), derived.subarray(48, 64))
  const keyFile = Buffer.from(
    JSON.stringify({
      created: new Date().toISOString(),
      username: 'smart-restore',
      hostname: 'smart-restore',
      kdf: 'scrypt',
      ...TEST_SCRYPT,
      salt: salt.toString('base64'),
      data: sealed(masterJson, userKey).toString('base64'),
    }),
  )
  files.set(`keys/${nameOf(keyFile)}`, keyFile)
  files.set('config', sealed({ version: opts.version ?? 2, id: randomBytes(32).toString('hex'), chunker_polynomial: '3da3358b4dc173' }, master))
  const snapshotIds: string[] = []
  for (const s of snapshots) {
    const body = {
      time: s.time,
      tree: randomBytes(32).toString('hex'),
      paths: s.paths ?? ['/data'],
      hostname: s.hostname ?? 'volsync',
      username: 'root',
      ...(s.tags?.length ? { tags: s.tags } : {}),
      program_version: 'smart-restore writer',
    }
    const bytes = sealed(body, master)
    const id = nameOf(bytes)
    files.set(`snapshots/${id}`, bytes)
    snapshotIds.push(id)
  }
  return { files, snapshotIds }
}
