/**
 * restic's file formats, as plain decoders (restic design document, "Repository Format"):
 * key files, the master key, the repository config, snapshots, and the version-2 wrapping of
 * "unpacked" files. No I/O, no crypto beyond calling `open`.
 */
import { decompress } from 'fzstd'
import { cryptoKey, type CryptoKey, type ScryptParams } from './crypto.js'

/** Thrown for a file that authenticated but is not what restic writes. */
export class FormatError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'FormatError'
  }
}

/** A snapshot, as the decisions need it. `id` is the file name (SHA-256 of the stored file). */
export interface Snapshot {
  id: string
  /** As restic wrote it (RFC 3339 with nanoseconds and the backup host's offset). */
  time: string
  /** Whole seconds since the epoch: what VolSync's mover compares (it drops the fraction). */
  epochSeconds: number
  /** Nanoseconds within the second, so snapshots of one second still order as restic orders them. */
  nanos: number
  hostname: string
  paths: string[]
  tags: string[]
}

const JSON_START = new Set([0x7b, 0x5b]) // '{' '['

/**
 * The plaintext of an unpacked file (config, snapshot, index). Repository v1 stores JSON as is;
 * v2 prefixes a version byte: 2 = zstd-compressed JSON. A v2 repository may also hold plain JSON
 * (written before `restic migrate upgrade_repo_v2`), recognisable by its first byte.
 */
export function decodeUnpacked(plain: Uint8Array, what: string): unknown {
  if (plain.length === 0) throw new FormatError(`${what} is empty`)
  let json: Uint8Array
  if (JSON_START.has(plain[0]!)) json = plain
  else if (plain[0] === 2) {
    try {
      json = decompress(plain.subarray(1))
    } catch (err) {
      throw new FormatError(`${what}: zstd data does not decompress (${(err as Error).message})`)
    }
  } else throw new FormatError(`${what} starts with byte ${plain[0]}, neither JSON nor restic's compressed format (2)`)
  try {
    return JSON.parse(Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'))
  } catch {
    throw new FormatError(`${what} is not JSON`)
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function base64Field(obj: Record<string, unknown>, field: string, what: string): Buffer {
  const v = obj[field]
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw new FormatError(`${what}: "${field}" is not base64`)
  return Buffer.from(v, 'base64')
}

export interface KeyFile {
  scrypt: ScryptParams
  /** IV ‖ ciphertext ‖ MAC of the master key JSON, under the scrypt-derived key. */
  data: Buffer
}

/** A file under `keys/`: plain JSON (not encrypted) with the KDF parameters and the sealed master key. */
export function parseKeyFile(raw: Uint8Array, what: string): KeyFile {
  let obj: unknown
  try {
    obj = JSON.parse(Buffer.from(raw).toString('utf8'))
  } catch {
    throw new FormatError(`${what} is not JSON`)
  }
  if (!isObject(obj)) throw new FormatError(`${what} is not a JSON object`)
  if (obj.kdf !== 'scrypt') throw new FormatError(`${what}: key derivation "${String(obj.kdf)}" is not scrypt`)
  const int = (f: string) => {
    const v = obj[f]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new FormatError(`${what}: "${f}" is not a positive integer`)
    return v
  }
  return { scrypt: { N: int('N'), r: int('r'), p: int('p'), salt: base64Field(obj, 'salt', what) }, data: base64Field(obj, 'data', what) }
}

/** The master key: `{"mac":{"k":…,"r":…},"encrypt":…}`, all base64. */
export function parseMasterKey(plain: Uint8Array, what: string): CryptoKey {
  let obj: unknown
  try {
    obj = JSON.parse(Buffer.from(plain).toString('utf8'))
  } catch {
    throw new FormatError(`${what}: the master key is not JSON`)
  }
  if (!isObject(obj) || !isObject(obj.mac)) throw new FormatError(`${what}: the master key lacks "mac"`)
  try {
    return cryptoKey(base64Field(obj, 'encrypt', what), base64Field(obj.mac, 'k', what), base64Field(obj.mac, 'r', what))
  } catch (err) {
    throw new FormatError(`${what}: ${(err as Error).message}`)
  }
}

export interface RepositoryConfig {
  version: number
  id: string
}

export function parseConfig(value: unknown, what: string): RepositoryConfig {
  if (!isObject(value)) throw new FormatError(`${what} is not a JSON object`)
  const { version, id } = value
  if (version !== 1 && version !== 2) throw new FormatError(`${what}: repository version ${String(version)} is not 1 or 2`)
  if (typeof id !== 'string') throw new FormatError(`${what}: no repository id`)
  return { version, id }
}

// RFC 3339 as Go writes time.Time: fraction of up to 9 digits, Z or ±hh:mm.
const GO_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/

/** Parses a Go RFC 3339 time to whole epoch seconds and nanoseconds, without losing the fraction. */
export function parseGoTime(time: string): { epochSeconds: number; nanos: number } | undefined {
  const m = GO_TIME.exec(time)
  if (!m) return undefined
  const seconds = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[8]}`)
  if (Number.isNaN(seconds)) return undefined
  return { epochSeconds: Math.floor(seconds / 1000), nanos: Number((m[7] ?? '').padEnd(9, '0')) }
}

export function parseSnapshot(id: string, value: unknown, what: string): Snapshot {
  if (!isObject(value)) throw new FormatError(`${what} is not a JSON object`)
  const time = value.time
  if (typeof time !== 'string') throw new FormatError(`${what}: no "time"`)
  const at = parseGoTime(time)
  if (!at) throw new FormatError(`${what}: "time" ${JSON.stringify(time)} is not an RFC 3339 time`)
  const strings = (f: string): string[] => {
    const v = value[f]
    if (v === undefined || v === null) return []
    if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw new FormatError(`${what}: "${f}" is not a list of strings`)
    return v as string[]
  }
  const paths = strings('paths')
  if (typeof value.tree !== 'string') throw new FormatError(`${what}: no "tree"`)
  return { id, time, ...at, hostname: typeof value.hostname === 'string' ? value.hostname : '', paths, tags: strings('tags') }
}

/** restic's order of snapshots (`restic snapshots`): by time, oldest first. Same time: by id, to be deterministic. */
export function compareSnapshots(a: Snapshot, b: Snapshot): number {
  return a.epochSeconds - b.epochSeconds || a.nanos - b.nanos || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
}
