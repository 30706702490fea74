/**
 * restic's crypto and file formats (src/storage/restic/crypto.ts, format.ts), checked against
 * published vectors and against files the real restic CLI writes:
 *
 *  - the Poly1305-AES MAC and the whole IV ‖ AES-256-CTR ‖ MAC construction against restic's own
 *    test vectors (restic `internal/crypto/crypto_int_test.go`: `poly1305Tests`, taken from
 *    Bernstein's Poly1305-AES paper, and `testValues`);
 *  - scrypt against RFC 7914 §12 and Node's crypto.scryptSync;
 *  - the decoders on well-formed and malformed input;
 *  - a local-directory repository made by `restic init`/`restic backup` (skipped without restic):
 *    key file → master key → config and snapshots, compared with `restic cat config`,
 *    `restic snapshots --json` and the order and seconds of `restic snapshots`' table.
 */
import t, { type Test } from 'tap'
import { execFile, execFileSync } from 'node:child_process'
import { createCipheriv, createHash, randomBytes, scryptSync } from 'node:crypto'
import { accessSync, constants as fsConstants, existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { cryptoKey, deriveKey, IV_SIZE, MAC_SIZE, MacMismatchError, MAX_SCRYPT_MEMORY, open, seal, type CryptoKey } from '../../src/storage/restic/crypto.js'
import {
  compareSnapshots,
  decodeUnpacked,
  FormatError,
  parseConfig,
  parseGoTime,
  parseKeyFile,
  parseMasterKey,
  parseSnapshot,
  type Snapshot,
} from '../../src/storage/restic/format.js'
import { resticAvailable } from '../helpers/restic-repos.js'

t.setTimeout(180_000)

const hex = (s: string) => Buffer.from(s, 'hex')
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64')

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue
    try {
      accessSync(join(dir, name), fsConstants.X_OK)
      return join(dir, name)
    } catch {
      // not here
    }
  }
  return undefined
}

/** Asserts `fn` throws a FormatError whose message matches `message`. */
function throwsFormat(t: Test, fn: () => unknown, message: RegExp, what: string): void {
  try {
    fn()
    t.fail(`${what}: no error thrown`)
  } catch (err) {
    if (!(err instanceof FormatError)) return void t.fail(`${what}: not a FormatError but ${(err as Error)?.name}: ${(err as Error)?.message}`)
    t.match(err.message, message, `${what}: FormatError`)
  }
}

/** Asserts `fn` throws a MacMismatchError. */
function throwsMac(t: Test, fn: () => unknown, what: string): void {
  try {
    fn()
    t.fail(`${what}: opened although it should not authenticate`)
  } catch (err) {
    if (err instanceof MacMismatchError) t.pass(`${what}: MacMismatchError`)
    else t.fail(`${what}: not a MacMismatchError but ${(err as Error)?.name}: ${(err as Error)?.message}`)
  }
}

/** AES-256-CTR with `key` and `iv`: its own inverse. */
function ctr(data: Uint8Array, key: Buffer, iv: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-ctr', key, iv)
  return Buffer.concat([c.update(data), c.final()])
}

// ---- crypto ---------------------------------------------------------------------------------

// restic internal/crypto/crypto_int_test.go, `testValues` (restic's known-answer test for Encrypt/Decrypt).
const RESTIC_TEST_VALUE = {
  ekey: '303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef',
  k: 'ef4d8824cb80b2bcc5fbff8a9b12a42c',
  r: 'cc8d4b948ee0ebfe1d415de921d10353',
  ciphertext: '69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf3f75d8c3cc75dddf8750',
  plaintext: 'Dies ist ein Test!',
}

// restic internal/crypto/crypto_int_test.go, `poly1305Tests` (from http://cr.yp.to/mac/poly1305-20050329.pdf):
// MAC = Poly1305_r(msg) + AES-128_k(nonce).
const POLY1305_AES = [
  {
    msg: 'f3f6',
    r: '851fc40c3467ac0be05cc20404f3f700',
    k: 'ec074c835580741701425b623235add6',
    nonce: 'fb447350c4e868c52ac3275cf9d4327e',
    mac: 'f4c633c3044fc145f84f335cb81953de',
  },
  {
    msg: '',
    r: 'a0f3080000f46400d0c7e9076c834403',
    k: '75deaa25c09f208e1dc4ce6b5cad3fbf',
    nonce: '61ee09218d29b0aaed7e154a2c5509cc',
    mac: 'dd3fab2251f11ac759f0887129cc2ee7',
  },
  {
    msg: '663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136',
    r: '48443d0bb0d21109c89a100b5ce2c208',
    k: '6acb5f61a7176dd320c5c1eb2edcdc74',
    nonce: 'ae212a55399729595dea458bc621ff0e',
    mac: '0ee1c16bb73f0f4fd19881753c01cdbe',
  },
  {
    msg: 'ab0812724a7f1e342742cbed374d94d136c6b8795d45b3819830f2c04491faf0990c62e48b8018b2c3e4a0fa3134cb67fa83e158c994d961c4cb21095c1bf9',
    r: '12976a08c4426d0ce8a82407c4f48207',
    k: 'e1a5668a4d5b66a5f68cc5424ed5982d',
    nonce: '9ae831e743978d3a23527c7128149e3a',
    mac: '5154ad0d2cb26e01274fc51148491f1b',
  },
]

t.test('restic known-answer vector (crypto_int_test.go testValues)', async (t) => {
  const v = RESTIC_TEST_VALUE
  const key = cryptoKey(hex(v.ekey), hex(v.k), hex(v.r))
  const sealed = hex(v.ciphertext)
  t.equal(sealed.length, IV_SIZE + v.plaintext.length + MAC_SIZE, 'IV ‖ 18 bytes ‖ MAC')
  t.equal(open(sealed, key, 'vector').toString('utf8'), v.plaintext, 'open gives restic’s plaintext')
  t.same(seal(Buffer.from(v.plaintext), key, sealed.subarray(0, IV_SIZE)), sealed, 'seal with the same IV gives restic’s exact bytes')

  // The vector's r is not clamped; restic masks it (maskKey) before use, so must cryptoKey.
  // Clamping by hand: bytes 3, 7, 11, 15 &= 0x0f; bytes 4, 8, 12 &= 0xfc.
  t.equal(key.macR.toString('hex'), 'cc8d4b048ce0eb0e1c415d0920d10303', 'r is clamped as Poly1305 requires')
  t.equal(hex(v.r).toString('hex'), v.r, 'the caller’s r buffer is left untouched')

  // restic's own tamper checks from TestCrypto: msg[len-8] ^= 0x23 (MAC), msg[16+5] ^= 0x85 (ciphertext).
  const macTampered = Buffer.from(sealed)
  macTampered[macTampered.length - 8]! ^= 0x23
  throwsMac(t, () => open(macTampered, key, 'vector'), 'MAC byte changed')
  const ctTampered = Buffer.from(sealed)
  ctTampered[16 + 5]! ^= 0x85
  throwsMac(t, () => open(ctTampered, key, 'vector'), 'ciphertext byte changed')
})

t.test('Poly1305-AES against the vectors restic tests its MAC with', async (t) => {
  const encrypt = hex(RESTIC_TEST_VALUE.ekey) // any AES-256 key: the MAC covers the ciphertext only
  for (const [i, v] of POLY1305_AES.entries()) {
    const key = cryptoKey(encrypt, hex(v.k), hex(v.r))
    const msg = hex(v.msg)
    const sealed = Buffer.concat([hex(v.nonce), msg, hex(v.mac)])
    // msg plays the ciphertext: open authenticates it with the vector's MAC and decrypts it.
    t.same(open(sealed, key, `vector ${i}`), ctr(msg, encrypt, hex(v.nonce)), `vector ${i}: the published MAC authenticates`)
    // seal of the plaintext whose ciphertext is msg computes exactly the published MAC.
    const resealed = seal(ctr(msg, encrypt, hex(v.nonce)), key, hex(v.nonce))
    t.equal(resealed.subarray(resealed.length - MAC_SIZE).toString('hex'), v.mac, `vector ${i}: seal computes the published MAC`)
    t.same(resealed.subarray(IV_SIZE, resealed.length - MAC_SIZE), msg, `vector ${i}: and the same ciphertext`)

    const badMac = Buffer.from(sealed)
    badMac[badMac.length - 1]! ^= 0x01
    throwsMac(t, () => open(badMac, key, 'x'), `vector ${i}: last MAC bit flipped`)
    const otherK = Buffer.from(hex(v.k))
    otherK[0]! ^= 0x80
    throwsMac(t, () => open(sealed, cryptoKey(encrypt, otherK, hex(v.r)), 'x'), `vector ${i}: another AES key for s`)
  }
})

t.test('seal/open round trip, sizes and tampering', async (t) => {
  const key = cryptoKey(randomBytes(32), randomBytes(16), randomBytes(16))
  for (const size of [0, 1, 15, 16, 17, 31, 32, 33, 1000, 70_000]) {
    const plain = randomBytes(size)
    const iv = randomBytes(IV_SIZE)
    const sealed = seal(plain, key, iv)
    t.equal(sealed.length, IV_SIZE + size + MAC_SIZE, `${size} bytes: IV + ciphertext + MAC`)
    t.same(sealed.subarray(0, IV_SIZE), iv, `${size} bytes: the IV leads`)
    t.same(open(sealed, key, 'rt'), plain, `${size} bytes: round trip`)
    if (size > 0) t.notSame(sealed.subarray(IV_SIZE, IV_SIZE + size), plain, `${size} bytes: the middle is not the plaintext`)
  }

  const plain = Buffer.from('{"time":"2026-11-22T03:00:41Z","paths":["/data"]}')
  const sealed = seal(plain, key, randomBytes(IV_SIZE))
  // Every single-bit flip anywhere (IV, ciphertext, MAC) must be detected.
  let detected = 0
  for (let byte = 0; byte < sealed.length; byte++) {
    for (let bit = 0; bit < 8; bit++) {
      const damaged = Buffer.from(sealed)
      damaged[byte]! ^= 1 << bit
      try {
        open(damaged, key, 'flip')
      } catch (err) {
        if (err instanceof MacMismatchError) detected++
      }
    }
  }
  t.equal(detected, sealed.length * 8, `all ${sealed.length * 8} single-bit flips are MAC mismatches`)
  throwsMac(t, () => open(Buffer.concat([sealed.subarray(0, 3), Buffer.from([sealed[3]! ^ 4]), sealed.subarray(4)]), key, 'iv'), 'a bit of the IV')
  throwsMac(t, () => open(Buffer.concat([sealed.subarray(0, 20), Buffer.from([sealed[20]! ^ 1]), sealed.subarray(21)]), key, 'ct'), 'a bit of the ciphertext')
  throwsMac(t, () => open(Buffer.concat([sealed.subarray(0, -1), Buffer.from([sealed.at(-1)! ^ 128])]), key, 'mac'), 'a bit of the MAC')
  throwsMac(t, () => open(sealed.subarray(0, sealed.length - 1), key, 'short'), 'one byte cut off')
  throwsMac(t, () => open(Buffer.concat([sealed, Buffer.from([0])]), key, 'long'), 'one byte appended')
  throwsMac(t, () => open(Buffer.alloc(IV_SIZE + MAC_SIZE - 1), key, 'tiny'), 'shorter than IV and MAC')
  throwsMac(t, () => open(Buffer.alloc(0), key, 'empty'), 'empty')
  throwsMac(t, () => open(sealed, cryptoKey(randomBytes(32), randomBytes(16), randomBytes(16)), 'other key'), 'another key')
  t.match(
    (() => {
      try {
        open(Buffer.alloc(5), key, 'snapshots/abc')
      } catch (err) {
        return (err as Error).message
      }
      return ''
    })(),
    /^snapshots\/abc \(5 bytes, shorter than IV and MAC\) does not authenticate/,
    'the message names the file',
  )

  // Same plaintext, different IVs: different ciphertexts, both open.
  const a = seal(plain, key, randomBytes(IV_SIZE))
  const b = seal(plain, key, randomBytes(IV_SIZE))
  t.notSame(a, b)
  t.same(open(a, key, 'a'), open(b, key, 'b'))
})

t.test('cryptoKey refuses key sizes restic does not use', async (t) => {
  t.throws(() => cryptoKey(randomBytes(16), randomBytes(16), randomBytes(16)), /16\/16\/16 bytes; restic uses 32\/16\/16/)
  t.throws(() => cryptoKey(randomBytes(32), randomBytes(32), randomBytes(16)), /32\/32\/16/)
  t.throws(() => cryptoKey(randomBytes(32), randomBytes(16), randomBytes(15)), /32\/16\/15/)
})

// ---- scrypt ---------------------------------------------------------------------------------

t.test('deriveKey', async (t) => {
  t.test('RFC 7914 §12 vectors, split as restic splits them (encrypt 0..32, k 32..48, r 48..64)', async (t) => {
    const vectors = [
      { P: '', S: '', N: 16, r: 1, p: 1, out: '77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906' },
      { P: 'password', S: 'NaCl', N: 1024, r: 8, p: 16, out: 'fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b3731622eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640' },
    ]
    for (const v of vectors) {
      const key = await deriveKey(v.P, { N: v.N, r: v.r, p: v.p, salt: Buffer.from(v.S) })
      const out = hex(v.out)
      t.same(key.encrypt, out.subarray(0, 32), `${JSON.stringify(v.P)}/${JSON.stringify(v.S)}: encryption key`)
      t.same(key.macK, out.subarray(32, 48), `${JSON.stringify(v.P)}: MAC k`)
      t.same(key.macR, cryptoKey(out.subarray(0, 32), out.subarray(32, 48), out.subarray(48, 64)).macR, `${JSON.stringify(v.P)}: MAC r, clamped`)
    }
  })

  t.test('deterministic and equal to crypto.scryptSync', async (t) => {
    const salt = randomBytes(64)
    const params = { N: 1024, r: 8, p: 2, salt }
    const [a, b] = await Promise.all([deriveKey('s3cr3t pässword', params), deriveKey('s3cr3t pässword', params)])
    t.same(a, b, 'same inputs, same key')
    const expected = scryptSync('s3cr3t pässword', salt, 64, { N: 1024, r: 8, p: 2 })
    t.same(a!.encrypt, expected.subarray(0, 32))
    t.same(a!.macK, expected.subarray(32, 48))
    t.same(a!.macR, cryptoKey(expected.subarray(0, 32), expected.subarray(32, 48), expected.subarray(48, 64)).macR)
    const other = await deriveKey('s3cr3t password', params)
    t.notSame(other.encrypt, a!.encrypt, 'another password, another key')
    const otherSalt = await deriveKey('s3cr3t pässword', { ...params, salt: randomBytes(64) })
    t.notSame(otherSalt.encrypt, a!.encrypt, 'another salt, another key')
  })

  t.test('refuses parameters that are not scrypt’s or that ask too much', async (t) => {
    const salt = Buffer.alloc(64)
    await t.rejects(deriveKey('pw', { N: 1000, r: 8, p: 1, salt }), /N=1000 is not a power of two/)
    await t.rejects(deriveKey('pw', { N: 1, r: 8, p: 1, salt }), /N=1 is not a power of two/)
    await t.rejects(deriveKey('pw', { N: 0, r: 8, p: 1, salt }), /not a power of two/)
    await t.rejects(deriveKey('pw', { N: 2 ** 20, r: 8, p: 1, salt }), new RegExp(`need 1024 MiB, over the ${MAX_SCRYPT_MEMORY / 2 ** 20} MiB`), '1 GiB of memory')
    await t.rejects(deriveKey('pw', { N: 2 ** 15, r: 8, p: 1000, salt }), /N=32768 r=8 p=1000 ask for 1000 times the work/, 'a thousand lanes of work')
  })

  t.test('restic’s usual N=2^15 r=8 with a large p (a fast machine’s calibration) is accepted: p lanes run in turn, memory stays 32 MiB', async (t) => {
    // simple-scrypt's Calibrate (restic init) fixes N = 2^15, r = 8 and raises p to reach ~0.5 s,
    // so a key file made on a fast machine has p = 17 or more.
    const key = await deriveKey('pw', { N: 2 ** 15, r: 8, p: 17, salt: Buffer.alloc(64, 1) })
    t.equal(key.encrypt.length, 32)
  })
})

// ---- decoders -------------------------------------------------------------------------------

t.test('decodeUnpacked', async (t) => {
  const value = { version: 2, id: 'f75667768e6d891318908ee82cdcac3fa82fd86f43431a7b556dae2f155817e4', chunker_polynomial: '3a72e1e371a927' }
  const json = Buffer.from(JSON.stringify(value))

  t.same(decodeUnpacked(json, 'config'), value, 'v1 (and v2 before upgrade_repo_v2): plain JSON object')
  t.same(decodeUnpacked(Buffer.from('[1,"two"]'), 'x'), [1, 'two'], 'plain JSON array')
  t.same(decodeUnpacked(Buffer.from('{"s":"h\\u00e9 ✓"}'), 'x'), { s: 'hé ✓' }, 'UTF-8 and escapes')
  // A subarray: decodeUnpacked must respect byteOffset/byteLength.
  const padded = Buffer.concat([Buffer.from('xx'), json, Buffer.from('yy')])
  t.same(decodeUnpacked(padded.subarray(2, 2 + json.length), 'config'), value, 'a view into a larger buffer')

  throwsFormat(t, () => decodeUnpacked(Buffer.alloc(0), 'config'), /^config is empty$/, 'empty')
  throwsFormat(t, () => decodeUnpacked(Buffer.from([1, 0x7b, 0x7d]), 'snapshots/abc'), /snapshots\/abc starts with byte 1, neither JSON nor restic's compressed format \(2\)/, 'version byte 1')
  throwsFormat(t, () => decodeUnpacked(Buffer.from([3, 0x28, 0xb5, 0x2f, 0xfd]), 'x'), /starts with byte 3/, 'version byte 3')
  throwsFormat(t, () => decodeUnpacked(Buffer.from(' {}'), 'x'), /starts with byte 32/, 'JSON after whitespace is not what restic writes')
  throwsFormat(t, () => decodeUnpacked(Buffer.from('{"oops"'), 'config'), /^config is not JSON$/, 'truncated JSON')
  // fzstd decompresses no bytes to no bytes; either way it is a FormatError.
  throwsFormat(t, () => decodeUnpacked(Buffer.from([2]), 'x'), /^x(: zstd data does not decompress| is not JSON$)/, 'version byte and nothing after it')
  throwsFormat(t, () => decodeUnpacked(Buffer.from([2, 1, 2, 3, 4, 5, 6, 7, 8]), 'x'), /x: zstd data does not decompress/, 'version byte 2, not zstd')

  const zstd = onPath('zstd')
  t.test('version byte 2 + zstd, frames from the zstd CLI', { skip: zstd ? false : 'the zstd CLI is not installed (apt-get install zstd)' }, async (t) => {
    const big = { time: '2026-11-22T03:00:41.123456789Z', tree: 'ab'.repeat(32), paths: ['/data'], hostname: 'volsync', excludes: Array.from({ length: 200 }, (_, i) => `dir-${i}/`) }
    const bigJson = Buffer.from(JSON.stringify(big))
    // From stdin: the frame has no content size. From a file: it has one. restic (klauspost/compress) may write either.
    const streamed = execFileSync(zstd!, ['-q', '-c'], { input: bigJson })
    const dir = await mkdtemp(join(tmpdir(), 'smart-restore-zstd-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 'in.json'), json)
    const fromFile = execFileSync(zstd!, ['-q', '-c', '-19', join(dir, 'in.json')])
    t.same(fromFile.subarray(0, 4), Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'a zstd frame (magic 28 b5 2f fd)')
    t.ok(streamed.length < bigJson.length, 'the repetitive JSON did compress')

    t.same(decodeUnpacked(Buffer.concat([Buffer.from([2]), streamed]), 'snapshot'), big, 'streamed frame (no content size)')
    t.same(decodeUnpacked(Buffer.concat([Buffer.from([2]), fromFile]), 'config'), value, 'frame with content size')
    throwsFormat(t, () => decodeUnpacked(streamed, 'x'), /starts with byte 40/, 'zstd without the version byte')
    throwsFormat(t, () => decodeUnpacked(Buffer.concat([Buffer.from([2]), streamed.subarray(0, streamed.length - 10)]), 'x'), /zstd data does not decompress/, 'truncated frame')
    const notJson = execFileSync(zstd!, ['-q', '-c'], { input: Buffer.from('not json at all') })
    throwsFormat(t, () => decodeUnpacked(Buffer.concat([Buffer.from([2]), notJson]), 'index/1'), /^index\/1 is not JSON$/, 'compressed, but not JSON')
  })
})

/** A key file as restic writes it (restic/internal/repository/key.go): plain JSON, the master key sealed under scrypt. */
async function makeKeyFile(password: string, master: CryptoKey, N = 16, r = 1, p = 1) {
  const salt = randomBytes(64)
  const derived = await deriveKey(password, { N, r, p, salt })
  const masterJson = JSON.stringify({ mac: { k: b64(master.macK), r: b64(master.macR) }, encrypt: b64(master.encrypt) })
  return {
    created: '2026-12-04T22:38:26.161487938Z',
    username: 'root',
    hostname: 'vm',
    kdf: 'scrypt',
    N,
    r,
    p,
    salt: b64(salt),
    data: b64(seal(Buffer.from(masterJson), derived, randomBytes(IV_SIZE))),
  }
}

t.test('parseKeyFile', async (t) => {
  const master = cryptoKey(randomBytes(32), randomBytes(16), randomBytes(16))
  const file = await makeKeyFile('correct horse', master)
  const raw = Buffer.from(JSON.stringify(file))
  const parsed = parseKeyFile(raw, 'keys/abc')
  t.same(parsed.scrypt.N, 16)
  t.same(parsed.scrypt.r, 1)
  t.same(parsed.scrypt.p, 1)
  t.same(parsed.scrypt.salt, Buffer.from(file.salt, 'base64'))
  t.equal(parsed.scrypt.salt.length, 64)
  t.same(parsed.data, Buffer.from(file.data, 'base64'))

  t.test('the whole chain: key file → derived key → master key', async (t) => {
    const derived = await deriveKey('correct horse', parsed.scrypt)
    const opened = parseMasterKey(open(parsed.data, derived, 'keys/abc'), 'keys/abc')
    t.same(opened.encrypt, master.encrypt)
    t.same(opened.macK, master.macK)
    t.same(opened.macR, master.macR)
    const wrong = await deriveKey('correct horse.', parsed.scrypt)
    throwsMac(t, () => open(parsed.data, wrong, 'keys/abc'), 'a wrong password does not open the key file')
  })

  const bad: Array<[string, string | Buffer, RegExp]> = [
    ['not JSON', 'kdf=scrypt', /^keys\/abc is not JSON$/],
    ['binary', Buffer.from([0xff, 0xfe, 0x00]), /is not JSON/],
    ['a JSON array', '[1,2]', /is not a JSON object/],
    ['JSON null', 'null', /is not a JSON object/],
    ['no kdf', JSON.stringify({ ...file, kdf: undefined }), /key derivation "undefined" is not scrypt/],
    ['another kdf', JSON.stringify({ ...file, kdf: 'argon2id' }), /key derivation "argon2id" is not scrypt/],
    ['N missing', JSON.stringify({ ...file, N: undefined }), /"N" is not a positive integer/],
    ['N a string', JSON.stringify({ ...file, N: '32768' }), /"N" is not a positive integer/],
    ['N zero', JSON.stringify({ ...file, N: 0 }), /"N" is not a positive integer/],
    ['N fractional', JSON.stringify({ ...file, N: 16.5 }), /"N" is not a positive integer/],
    ['r negative', JSON.stringify({ ...file, r: -8 }), /"r" is not a positive integer/],
    ['p null', JSON.stringify({ ...file, p: null }), /"p" is not a positive integer/],
    ['salt missing', JSON.stringify({ ...file, salt: undefined }), /"salt" is not base64/],
    ['salt a number', JSON.stringify({ ...file, salt: 12 }), /"salt" is not base64/],
    ['salt not base64', JSON.stringify({ ...file, salt: 'no*such*base64' }), /"salt" is not base64/],
    ['salt URL-safe base64 (Go writes standard)', JSON.stringify({ ...file, salt: 'ab-_' }), /"salt" is not base64/],
    ['data missing', JSON.stringify({ ...file, data: undefined }), /"data" is not base64/],
    ['data with spaces', JSON.stringify({ ...file, data: 'AAAA AAAA' }), /"data" is not base64/],
  ]
  for (const [name, input, message] of bad) throwsFormat(t, () => parseKeyFile(Buffer.from(input), 'keys/abc'), message, name)
})

t.test('parseMasterKey', async (t) => {
  const k = { encrypt: randomBytes(32), macK: randomBytes(16), macR: randomBytes(16) }
  const json = (o: unknown) => Buffer.from(JSON.stringify(o))
  const good = { mac: { k: b64(k.macK), r: b64(k.macR) }, encrypt: b64(k.encrypt) }
  const key = parseMasterKey(json(good), 'keys/abc')
  t.same(key.encrypt, k.encrypt)
  t.same(key.macK, k.macK)
  t.same(key.macR, cryptoKey(k.encrypt, k.macK, k.macR).macR, 'r clamped')
  t.same(parseMasterKey(json({ ...good, extra: 1, mac: { ...good.mac, more: true } }), 'x').encrypt, k.encrypt, 'unknown fields are ignored')

  const bad: Array<[string, Buffer, RegExp]> = [
    ['not JSON', Buffer.from('{"mac":'), /^keys\/abc: the master key is not JSON$/],
    ['an array', json([good]), /the master key lacks "mac"/],
    ['no mac', json({ encrypt: good.encrypt }), /the master key lacks "mac"/],
    ['mac a string', json({ ...good, mac: 'abc' }), /the master key lacks "mac"/],
    ['encrypt missing', json({ mac: good.mac }), /"encrypt" is not base64/],
    ['k not base64', json({ ...good, mac: { ...good.mac, k: '!!' } }), /"k" is not base64/],
    ['r missing', json({ ...good, mac: { k: good.mac.k } }), /"r" is not base64/],
    ['encrypt 16 bytes', json({ ...good, encrypt: b64(randomBytes(16)) }), /key sizes are 16\/16\/16 bytes/],
    ['r 32 bytes', json({ ...good, mac: { ...good.mac, r: b64(randomBytes(32)) } }), /key sizes are 32\/16\/32 bytes/],
  ]
  for (const [name, input, message] of bad) throwsFormat(t, () => parseMasterKey(input, 'keys/abc'), message, name)
})

t.test('parseConfig', async (t) => {
  const id = 'f75667768e6d891318908ee82cdcac3fa82fd86f43431a7b556dae2f155817e4'
  t.same(parseConfig({ version: 2, id, chunker_polynomial: '3a72e1e371a927' }, 'config'), { version: 2, id })
  t.same(parseConfig({ version: 1, id, chunker_polynomial: '3a72e1e371a927' }, 'config'), { version: 1, id })
  const bad: Array<[string, unknown, RegExp]> = [
    ['null', null, /^config is not a JSON object$/],
    ['an array', [{ version: 2, id }], /is not a JSON object/],
    ['a string', '{"version":2}', /is not a JSON object/],
    ['version 3', { version: 3, id }, /repository version 3 is not 1 or 2/],
    ['version 0', { version: 0, id }, /repository version 0 is not 1 or 2/],
    ['version as a string', { version: '2', id }, /repository version 2 is not 1 or 2/],
    ['no version', { id }, /repository version undefined is not 1 or 2/],
    ['no id', { version: 2 }, /config: no repository id/],
    ['numeric id', { version: 2, id: 7 }, /no repository id/],
  ]
  for (const [name, input, message] of bad) throwsFormat(t, () => parseConfig(input, 'config'), message, name)
})

// ---- times and snapshots --------------------------------------------------------------------

t.test('parseGoTime', async (t) => {
  const at = (y: number, mo: number, d: number, h: number, mi: number, s: number) => Date.UTC(y, mo - 1, d, h, mi, s) / 1000
  const base = at(2026, 11, 22, 3, 0, 41)
  t.equal(base, 1795316441, 'the reference second')
  const good: Array<[string, number, number]> = [
    ['2026-11-22T03:00:41Z', base, 0],
    ['2026-11-22T03:00:41.123456789Z', base, 123_456_789],
    ['2026-11-22T03:00:41.5Z', base, 500_000_000],
    ['2026-11-22T03:00:41.000000001Z', base, 1],
    ['2026-11-22T03:00:41.999999999Z', base, 999_999_999],
    ['2026-11-22T04:00:41+01:00', base, 0],
    ['2026-11-22T04:00:41.25+01:00', base, 250_000_000],
    ['2026-11-21T22:00:41.000123-05:00', base, 123_000],
    ['2026-11-22T08:30:41+05:30', base, 0],
    ['2026-11-22T00:00:00.1+01:00', at(2026, 11, 21, 23, 0, 0), 100_000_000],
    ['2024-02-29T23:59:59.999Z', at(2024, 2, 29, 23, 59, 59), 999_000_000],
    ['1970-01-01T00:00:00Z', 0, 0],
    ['1969-12-31T23:59:59.5Z', -1, 500_000_000],
  ]
  for (const [time, epochSeconds, nanos] of good) t.same(parseGoTime(time), { epochSeconds, nanos }, time)
  for (const time of [
    '',
    'yesterday',
    '2026-11-22',
    '2026-11-22 03:00:41Z',
    '2026-11-22T03:00:41',
    '2026-11-22T03:00Z',
    '2026-11-22T03:00:41.Z',
    '2026-11-22T03:00:41.1234567891Z',
    '2026-11-22T03:00:41+0100',
    '2026-11-22T03:00:41+01',
    '2026-13-01T00:00:00Z',
    ' 2026-11-22T03:00:41Z',
    '2026-11-22T03:00:41Z ',
  ]) {
    t.equal(parseGoTime(time), undefined, `rejects ${JSON.stringify(time)}`)
  }
})

const TREE = '795278e4839e0df5804850b714e5772548eac85cd63af92403144d46ba45b7ec'
const ID = (c: string) => c.repeat(64).slice(0, 64)

t.test('parseSnapshot on restic snapshot JSON', async (t) => {
  // What VolSync's mover writes (cd /data && restic backup --host volsync .): one path, no tags, no parent on the first run.
  const first = {
    time: '2026-11-22T03:00:41.123456789Z',
    tree: TREE,
    paths: ['/data'],
    hostname: 'volsync',
    username: 'root',
    excludes: ['lost+found'],
  }
  t.same(parseSnapshot(ID('a'), first, 'snapshots/a'), {
    id: ID('a'),
    time: '2026-11-22T03:00:41.123456789Z',
    epochSeconds: 1795316441,
    nanos: 123456789,
    hostname: 'volsync',
    paths: ['/data'],
    tags: [],
  })
  // A later run: with parent, uid/gid, program_version and summary (restic 0.17).
  const later = {
    time: '2026-11-23T04:00:41.5+01:00',
    parent: ID('a'),
    tree: TREE,
    paths: ['/data'],
    hostname: 'volsync',
    username: 'volsync',
    uid: 1000,
    gid: 1000,
    excludes: ['lost+found'],
    program_version: 'restic 0.17.3',
    summary: { backup_start: '2026-11-23T04:00:41.5+01:00', files_new: 1, data_added: 123 },
  }
  t.match(parseSnapshot(ID('b'), later, 'snapshots/b'), { id: ID('b'), time: later.time, epochSeconds: 1795402841, nanos: 500_000_000, tags: [] })
  // Another tool: several paths (restic sorts them), tags, another host.
  const other = {
    time: '2025-06-01T12:00:00+02:00',
    tree: TREE,
    paths: ['/etc', '/home/alice', '/srv/data'],
    hostname: 'laptop',
    username: 'alice',
    tags: ['nightly', 'app/data'],
  }
  const s = parseSnapshot(ID('c'), other, 'snapshots/c')
  t.same(s.paths, ['/etc', '/home/alice', '/srv/data'], 'all paths, in order')
  t.same(s.tags, ['nightly', 'app/data'])
  t.equal(s.hostname, 'laptop')
  t.equal(s.epochSeconds, Date.UTC(2025, 5, 1, 10, 0, 0) / 1000)
  t.equal(s.nanos, 0)
  t.same(parseSnapshot(ID('d'), { time: first.time, tree: TREE, paths: ['/data'] }, 'x').hostname, '', 'no hostname (omitempty): empty')
  t.same(parseSnapshot(ID('d'), { time: first.time, tree: TREE, paths: ['/data'], tags: null }, 'x').tags, [], 'tags null: none')

  const bad: Array<[string, unknown, RegExp]> = [
    ['null', null, /^snapshots\/x is not a JSON object$/],
    ['an array', [first], /is not a JSON object/],
    ['no time', { ...first, time: undefined }, /snapshots\/x: no "time"/],
    ['time a number', { ...first, time: 1795316441 }, /no "time"/],
    ['time not RFC 3339', { ...first, time: '2026-11-22 03:00:41' }, /"time" "2026-11-22 03:00:41" is not an RFC 3339 time/],
    ['paths a string', { ...first, paths: '/data' }, /"paths" is not a list of strings/],
    ['paths with a number', { ...first, paths: ['/data', 7] }, /"paths" is not a list of strings/],
    ['tags a string', { ...first, tags: 'nightly' }, /"tags" is not a list of strings/],
    ['tags with null', { ...first, tags: [null] }, /"tags" is not a list of strings/],
    ['no tree', { ...first, tree: undefined }, /no "tree"/],
    ['tree null', { ...first, tree: null }, /no "tree"/],
  ]
  for (const [name, input, message] of bad) throwsFormat(t, () => parseSnapshot(ID('x'), input, 'snapshots/x'), message, name)
})

t.test('compareSnapshots orders as restic does: by time to the nanosecond, then by id', async (t) => {
  const snap = (id: string, time: string): Snapshot => parseSnapshot(ID(id), { time, tree: TREE, paths: ['/data'] }, id)
  const a = snap('a', '2026-11-22T03:00:41.900000000Z') // same second as b, later
  const b = snap('b', '2026-11-22T03:00:41.100000000Z')
  const c = snap('c', '2026-11-22T04:00:41.000000001+01:00') // same second as a and b, 1 ns in
  const d = snap('d', '2026-11-22T03:00:40.999999999Z') // the second before, nearly a whole second later in nanos
  const e = snap('e', '2026-11-22T03:00:42Z')
  const f = snap('f', '2026-11-22T03:00:41.9Z') // same instant as a, written with fewer digits
  t.ok(compareSnapshots(b, a) < 0, 'same second: fewer nanos first')
  t.ok(compareSnapshots(a, b) > 0)
  t.ok(compareSnapshots(d, c) < 0, 'an earlier second first, whatever its nanos')
  t.ok(compareSnapshots(c, b) < 0, 'offsets are compared as instants')
  t.ok(compareSnapshots(a, f) < 0 && compareSnapshots(f, a) > 0, 'same instant: by id')
  t.equal(compareSnapshots(a, a), 0)
  const sorted = [e, a, f, b, d, c].sort(compareSnapshots).map((s) => s.id[0])
  t.same(sorted, ['d', 'c', 'b', 'a', 'f', 'e'])
})

// ---- against the real restic ----------------------------------------------------------------

interface ResticJson {
  id: string
  short_id: string
  time: string
  paths: string[]
  hostname: string
  tags?: string[]
  parent?: string
}

const restic = resticAvailable()

t.test('files written by the real restic CLI (local directory repository)', { skip: restic ? false : 'restic is not installed (apt-get install restic); this cross-check needs the real restic CLI' }, async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'smart-restore-restic-format-'))
  t.teardown(() => rm(work, { recursive: true, force: true }))
  // Times are written with the backup host's offset: back up in a zone with summer time when the system has one.
  const zone = existsSync('/usr/share/zoneinfo/Europe/Berlin') ? 'Europe/Berlin' : 'UTC'
  const password = 'format test pw'
  const env = (repo: string): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RESTIC_') && !k.startsWith('AWS_')) e[k] = v
    return { ...e, RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: password, RESTIC_CACHE_DIR: join(work, 'cache'), TZ: zone }
  }
  const run = (repo: string, args: string[], input?: string) =>
    new Promise<string>((resolve, reject) => {
      const child = execFile(restic!, args, { env: env(repo), cwd: work, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`restic ${args.join(' ')}: ${err.message}\n${stderr}`)) : resolve(stdout),
      )
      child.stdin?.on('error', () => {})
      child.stdin?.end(input ?? '')
    })

  await mkdir(join(work, 'etc-like'))
  await mkdir(join(work, 'srv-data'))
  await writeFile(join(work, 'etc-like', 'a.conf'), 'a\n')
  await writeFile(join(work, 'srv-data', 'b.bin'), 'b\n')

  const v2 = join(work, 'repo-v2')
  const v1 = join(work, 'repo-v1')
  await Promise.all([run(v2, ['init', '--repository-version', '2']), run(v1, ['init', '--repository-version', '1'])])
  // VolSync-like: `--stdin-filename data` records paths ["/data"], host volsync, a whole second.
  await run(v2, ['backup', '--host', 'volsync', '--time', '2026-11-22 04:00:41', '--stdin', '--stdin-filename', 'data'], 'volume contents\n')
  // Another tool's: two paths, two tags (one containing "/data"), a summer time (+02:00 in Berlin).
  await run(v2, ['backup', '--host', 'laptop', '--tag', 'nightly', '--tag', 'app/data', '--time', '2025-06-01 12:00:00', join(work, 'etc-like'), join(work, 'srv-data')])
  // Now, as restic stamps it: nanoseconds and the zone's current offset.
  await run(v2, ['backup', '--host', 'volsync', '--stdin', '--stdin-filename', 'data'], 'newer contents\n')
  await run(v1, ['backup', '--host', 'volsync', '--time', '2025-01-02 03:04:05', '--stdin', '--stdin-filename', 'data'], 'old contents\n')

  for (const [repo, version] of [
    [v2, 2],
    [v1, 1],
  ] as const) {
    t.test(`repository version ${version}`, async (t) => {
      const keyNames = await readdir(join(repo, 'keys'))
      t.equal(keyNames.length, 1, 'one key file')
      const keyFile = parseKeyFile(await readFile(join(repo, 'keys', keyNames[0]!)), `keys/${keyNames[0]}`)
      t.equal(keyFile.scrypt.salt.length, 64, 'restic salts are 64 bytes')
      t.ok(keyFile.scrypt.N >= 2 && (keyFile.scrypt.N & (keyFile.scrypt.N - 1)) === 0, `N=${keyFile.scrypt.N} is a power of two`)
      t.comment(`restic calibrated N=${keyFile.scrypt.N} r=${keyFile.scrypt.r} p=${keyFile.scrypt.p}`)

      const derived = await deriveKey(password, keyFile.scrypt)
      const master = parseMasterKey(open(keyFile.data, derived, 'key'), 'key')
      const wrong = await deriveKey(password + '!', keyFile.scrypt)
      throwsMac(t, () => open(keyFile.data, wrong, 'key'), 'a wrong password does not open restic’s key file')

      const configPlain = open(await readFile(join(repo, 'config')), master, 'config')
      t.equal(configPlain[0], 0x7b, 'the config is stored as plain JSON in either version (its version must be readable first)')
      const config = parseConfig(decodeUnpacked(configPlain, 'config'), 'config')
      const catConfig = JSON.parse(await run(repo, ['cat', 'config'])) as { version: number; id: string }
      t.same(config, { version, id: catConfig.id }, 'same version and id as `restic cat config`')
      t.equal(config.version, version)

      const listed = JSON.parse(await run(repo, ['snapshots', '--json'])) as ResticJson[]
      const names = await readdir(join(repo, 'snapshots'))
      t.same(names.sort(), listed.map((s) => s.id).sort(), 'one file per snapshot, named by its id')
      const mine: Snapshot[] = []
      for (const name of names) {
        const raw = await readFile(join(repo, 'snapshots', name))
        t.equal(createHash('sha256').update(raw).digest('hex'), name, `snapshots/${name.slice(0, 8)}: the name is the SHA-256 of the file`)
        const plain = open(raw, master, name)
        t.equal(plain[0], version === 2 ? 2 : 0x7b, version === 2 ? 'v2: version byte 2, zstd-compressed' : 'v1: plain JSON')
        mine.push(parseSnapshot(name, decodeUnpacked(plain, name), name))
      }

      for (const theirs of listed) {
        const s = mine.find((m) => m.id === theirs.id)
        if (!t.ok(s, `snapshot ${theirs.short_id} decoded`)) continue
        t.equal(s!.time, theirs.time, `${theirs.short_id}: time as restic wrote it`)
        t.same(s!.paths, theirs.paths, `${theirs.short_id}: paths`)
        t.equal(s!.hostname, theirs.hostname, `${theirs.short_id}: host`)
        t.same(s!.tags, theirs.tags ?? [], `${theirs.short_id}: tags`)
        t.equal(s!.epochSeconds, Math.floor(Date.parse(theirs.time) / 1000), `${theirs.short_id}: whole seconds`)
        const fraction = /\.(\d+)/.exec(theirs.time)?.[1] ?? ''
        t.equal(s!.nanos, Number(fraction.padEnd(9, '0')), `${theirs.short_id}: nanoseconds`)
      }

      if (version === 2) {
        const byHost = (h: string) => mine.filter((s) => s.hostname === h)
        const [fixed, now] = byHost('volsync').sort(compareSnapshots)
        t.same(fixed?.paths, ['/data'])
        t.equal(fixed?.time, zone === 'UTC' ? '2026-11-22T04:00:41Z' : '2026-11-22T04:00:41+01:00', 'local time with the zone’s offset')
        t.equal(fixed?.epochSeconds, zone === 'UTC' ? Date.UTC(2026, 10, 22, 4, 0, 41) / 1000 : Date.UTC(2026, 10, 22, 3, 0, 41) / 1000)
        t.equal(fixed?.nanos, 0, '--time has whole seconds')
        t.match(now?.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}(Z|[+-]\d\d:\d\d)$/, 'a backup stamped by restic has a fraction')
        t.ok((now?.nanos ?? 0) > 0, 'and nanoseconds')
        const [laptop] = byHost('laptop')
        t.same(laptop?.paths, [join(work, 'etc-like'), join(work, 'srv-data')], 'several paths')
        t.same(laptop?.tags, ['nightly', 'app/data'])
        if (zone !== 'UTC') t.equal(laptop?.time, '2025-06-01T12:00:00+02:00', 'summer-time offset')

        // The table VolSync's mover reads: oldest first, the second shown without a fraction in
        // the local zone. Our order is restic's, and `date --date "<date> <time>" +%s` (the
        // mover's conversion) gives our epochSeconds.
        const table = await run(repo, ['snapshots'])
        const rows = [...table.matchAll(/^([0-9a-f]{8}) +(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d) /gm)].map((m) => ({ short: m[1]!, date: m[2]!, time: m[3]! }))
        t.same(
          rows.map((r) => r.short),
          [...mine].sort(compareSnapshots).map((s) => s.id.slice(0, 8)),
          'compareSnapshots gives the order of `restic snapshots`',
        )
        const gnuDate = onPath('date')
        for (const row of rows) {
          const s = mine.find((m) => m.id.startsWith(row.short))!
          if (gnuDate) {
            const epoch = Number(execFileSync(gnuDate, [`--date=${row.date} ${row.time}`, '+%s'], { env: { ...process.env, TZ: zone } }).toString().trim())
            t.equal(s.epochSeconds, epoch, `${row.short}: the mover's epoch of "${row.date} ${row.time}"`)
          }
        }
        const multi = table.split('\n').filter((l) => l.includes(join(work, 'srv-data')))
        t.equal(multi.length, 1, 'the second path is on a continuation line of its own')
        t.notMatch(multi[0], /^[0-9a-f]{8} /, 'which has no id')
        t.ok(
          table.split('\n').some((l) => l.startsWith(laptop!.id.slice(0, 8)) && l.includes('nightly,app/data')),
          'tags are joined with commas on the snapshot’s first line',
        )
      }
    })
  }
})
