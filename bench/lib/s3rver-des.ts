/**
 * s3rver 3.7 makes ListObjectsV2 continuation tokens with single DES (`createCipheriv('des', …)`),
 * which OpenSSL 3 (Node 17 and later) only has in its legacy provider: every truncated listing (more
 * keys under the prefix than max-keys, e.g. list mode's max-keys 1 on a repository with two snapshot
 * files) answers 500 ERR_OSSL_EVP_UNSUPPORTED. Triple DES with the 8-byte key repeated three times
 * is single DES exactly (encrypt-decrypt-encrypt under one key), and OpenSSL 3 has it by default.
 *
 * This maps the one to the other for callers that look the function up on the CommonJS `crypto`
 * object when they call it, as s3rver does. Every other algorithm passes through untouched, and the
 * service's code (ES-module named imports of node:crypto, bound when loaded) keeps the originals.
 */
import { createRequire } from 'node:module'

const crypto = createRequire(import.meta.url)('node:crypto') as Record<string, unknown>
let installed = false

export function allowS3rverTruncatedListings(): void {
  if (installed) return
  installed = true
  for (const name of ['createCipheriv', 'createDecipheriv']) {
    const original = crypto[name] as (algorithm: string, key: unknown, ...rest: unknown[]) => unknown
    crypto[name] = (algorithm: string, key: unknown, ...rest: unknown[]) =>
      typeof algorithm === 'string' && algorithm.toLowerCase() === 'des' && Buffer.isBuffer(key) && key.length === 8
        ? original('des-ede3-cbc', Buffer.concat([key, key, key]), ...rest)
        : original(algorithm, key, ...rest)
  }
}
