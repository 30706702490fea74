/**
 * restic's authenticated encryption (restic design document, "Keys, Encryption and MAC"):
 *
 *   file = IV (16) ‖ AES-256-CTR(ciphertext) ‖ Poly1305-AES MAC (16)
 *
 * The MAC is Poly1305 over the ciphertext only, keyed by `r` (clamped) and `s = AES-128_k(IV)`.
 * Key files are sealed the same way under a key derived from the password with scrypt: its 64
 * bytes are the AES-256 key (0..32), the MAC's `k` (32..48) and `r` (48..64).
 *
 * Node's crypto does AES and scrypt (scrypt on libuv's thread pool, off the event loop); Node 20
 * has no stand-alone Poly1305, so it comes from @noble/ciphers (audited, no dependencies).
 */
import { createCipheriv, createDecipheriv, scrypt, timingSafeEqual } from 'node:crypto'
import { poly1305 } from '@noble/ciphers/_poly1305.js'

export const IV_SIZE = 16
export const MAC_SIZE = 16

/** A restic key: the encryption key and the two halves of the Poly1305-AES MAC key. */
export interface CryptoKey {
  encrypt: Buffer // 32 bytes, AES-256-CTR
  macK: Buffer // 16 bytes, AES-128 key that makes the per-message `s`
  macR: Buffer // 16 bytes, Poly1305 `r` (clamped here, as restic does)
}

/** Thrown when a file does not authenticate: wrong key (password) or damaged bytes. */
export class MacMismatchError extends Error {
  constructor(what: string) {
    super(`${what} does not authenticate (MAC mismatch): wrong key, or the file is damaged`)
    this.name = 'MacMismatchError'
  }
}

export function cryptoKey(encrypt: Buffer, macK: Buffer, macR: Buffer): CryptoKey {
  if (encrypt.length !== 32 || macK.length !== 16 || macR.length !== 16) {
    throw new Error(`key sizes are ${encrypt.length}/${macK.length}/${macR.length} bytes; restic uses 32/16/16`)
  }
  return { encrypt, macK, macR: clampR(macR) }
}

/** Poly1305's mask on `r` (restic's maskKey). */
function clampR(r: Buffer): Buffer {
  const m = Buffer.from(r)
  m[3]! &= 15
  m[7]! &= 15
  m[11]! &= 15
  m[15]! &= 15
  m[4]! &= 252
  m[8]! &= 252
  m[12]! &= 252
  return m
}

function mac(ciphertext: Uint8Array, iv: Uint8Array, key: CryptoKey): Uint8Array {
  const aes = createCipheriv('aes-128-ecb', key.macK, null)
  aes.setAutoPadding(false)
  const s = Buffer.concat([aes.update(iv), aes.final()])
  return poly1305(ciphertext, Buffer.concat([key.macR, s]))
}

/** Opens `IV ‖ ciphertext ‖ MAC`; `what` names the file in errors. */
export function open(sealed: Uint8Array, key: CryptoKey, what: string): Buffer {
  if (sealed.length < IV_SIZE + MAC_SIZE) throw new MacMismatchError(`${what} (${sealed.length} bytes, shorter than IV and MAC)`)
  const iv = sealed.subarray(0, IV_SIZE)
  const ciphertext = sealed.subarray(IV_SIZE, sealed.length - MAC_SIZE)
  const tag = sealed.subarray(sealed.length - MAC_SIZE)
  if (!timingSafeEqual(Buffer.from(mac(ciphertext, iv, key)), Buffer.from(tag))) throw new MacMismatchError(what)
  const aes = createDecipheriv('aes-256-ctr', key.encrypt, iv)
  return Buffer.concat([aes.update(ciphertext), aes.final()])
}

/** Seals `plaintext` the way restic does (tests and the local demo store write repositories with it). */
export function seal(plaintext: Uint8Array, key: CryptoKey, iv: Buffer): Buffer {
  const aes = createCipheriv('aes-256-ctr', key.encrypt, iv)
  const ciphertext = Buffer.concat([aes.update(plaintext), aes.final()])
  return Buffer.concat([iv, ciphertext, Buffer.from(mac(ciphertext, iv, key))])
}

export interface ScryptParams {
  N: number
  r: number
  p: number
  salt: Buffer
}

/**
 * Upper bounds on what a key file may ask for; a key file asking for more is refused, not obeyed.
 * restic (simple-scrypt's Calibrate with 60 MiB) fixes r = 8 and N = 2^15, then raises p until a
 * derivation takes about half a second on the machine that ran `restic init`: p = 5..20 is normal,
 * more on faster machines. The p lanes run one after another, so memory is 128·r·(N + p + 2) bytes
 * (what OpenSSL allocates and checks against `maxmem`: 32 MiB for restic's N and r, whatever p),
 * while time grows with N·r·p. Work is capped at 64 lanes of restic's N and r (a few seconds of one
 * thread-pool thread), memory at 512 MiB.
 */
export const MAX_SCRYPT_MEMORY = 512 * 1024 * 1024
export const MAX_SCRYPT_WORK = 2 ** 15 * 8 * 64

/** scrypt(password, salt, N, r, p) → the key that opens a key file. Runs on libuv's thread pool. */
export function deriveKey(password: string, params: ScryptParams): Promise<CryptoKey> {
  if (!Number.isInteger(params.N) || params.N < 2 || (params.N & (params.N - 1)) !== 0) {
    return Promise.reject(new Error(`scrypt N=${params.N} is not a power of two`))
  }
  const memory = 128 * params.r * (params.N + params.p + 2)
  const work = params.N * params.r * params.p
  if (memory > MAX_SCRYPT_MEMORY) {
    return Promise.reject(new Error(`scrypt parameters N=${params.N} r=${params.r} p=${params.p} need ${Math.round(memory / 2 ** 20)} MiB, over the ${MAX_SCRYPT_MEMORY / 2 ** 20} MiB this service allows`))
  }
  if (work > MAX_SCRYPT_WORK) {
    return Promise.reject(new Error(`scrypt parameters N=${params.N} r=${params.r} p=${params.p} ask for ${Math.round(work / 2 ** 18)} times the work of one lane of restic's usual N=32768 r=8, over the ${MAX_SCRYPT_WORK / 2 ** 18} this service allows`))
  }
  return new Promise((resolve, reject) => {
    // maxmem must cover OpenSSL's 128·r·(N + p + 2); Node's default (32 MiB) is just short of it for restic's N and r.
    scrypt(password, params.salt, 64, { N: params.N, r: params.r, p: params.p, maxmem: memory + 1024 * 1024 }, (err, out) => {
      if (err) reject(err)
      else resolve(cryptoKey(out.subarray(0, 32), out.subarray(32, 48), out.subarray(48, 64)))
    })
  })
}
