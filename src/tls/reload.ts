/**
 * Follows the serving certificate files and hands a new pair to the HTTPS server without a restart.
 *
 * A Kubernetes Secret volume updates its files by swapping the `..data` symlink of the mount
 * directory (cert-manager renewals, `kubectl apply` of the Secret), so a watch on the files
 * themselves would keep following the old, deleted targets. The directories are watched instead,
 * any change there triggers a re-read (debounced: a swap is several events, and two separately
 * written files arrive one after the other), and a periodic check catches what a watch misses
 * (some volume types and network filesystems send no events).
 *
 * A pair is applied only when it is usable: both files readable, a parseable certificate, and a
 * key that belongs to it. Anything else is logged and the pair in use stays — a half-written
 * rotation must not take the webhook down. Existing TLS connections are not touched; new handshakes
 * get the new certificate (`tls.Server.setSecureContext`).
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { watch, type FSWatcher } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from 'pino'

export interface KeyPair {
  key: string
  cert: string
}

export interface CertificateSummary {
  /** SHA-256 fingerprint of the leaf certificate, as node prints it (AA:BB:...). */
  fingerprint256: string
  subject: string
  issuer: string
  /** Unix seconds. */
  notAfter: number
}

/** Parses the pair and checks the key belongs to the (first) certificate; throws saying what is wrong. */
export function checkKeyPair(pair: KeyPair): CertificateSummary {
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(pair.cert)
  } catch (err) {
    throw new Error(`the certificate file holds no readable PEM certificate (${(err as Error).message})`)
  }
  let key
  try {
    key = createPrivateKey(pair.key)
  } catch (err) {
    throw new Error(`the key file holds no readable PEM private key (${(err as Error).message})`)
  }
  if (!x509.checkPrivateKey(key)) throw new Error('the private key does not belong to the certificate (a rotation half done?)')
  return { fingerprint256: x509.fingerprint256, subject: x509.subject, issuer: x509.issuer, notAfter: Math.floor(new Date(x509.validTo).getTime() / 1000) }
}

export interface CertificateReloaderOptions {
  certFile: string
  keyFile: string
  /** The pair in use at start (already checked by whoever loaded it). */
  initial: KeyPair
  /** Install a checked pair, e.g. `(p) => httpsServer.setSecureContext(p)`. */
  apply: (pair: KeyPair) => void
  logger: Logger
  /** Quiet time after the last file event before re-reading (default 1000 ms). */
  debounceMs?: number
  /** Re-read this often regardless of events (default 60 000 ms). */
  intervalMs?: number
  /** Called after each attempt that found changed files. */
  onReload?: (result: 'applied' | 'rejected') => void
}

const digest = (pair: KeyPair) => createHash('sha256').update(pair.cert).update('\0').update(pair.key).digest('hex')

export class CertificateReloader {
  private current: CertificateSummary
  private currentDigest: string
  /** The digest of the last pair that was rejected, so a bad pair is logged once, not every minute. */
  private rejectedDigest: string | undefined
  private watchers: FSWatcher[] = []
  private debounce: NodeJS.Timeout | undefined
  private interval: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private stopped = false

  constructor(private readonly opts: CertificateReloaderOptions) {
    this.current = checkKeyPair(opts.initial)
    this.currentDigest = digest(opts.initial)
  }

  /** The certificate being served. */
  certificate(): CertificateSummary {
    return this.current
  }

  start(): void {
    for (const dir of new Set([dirname(this.opts.certFile), dirname(this.opts.keyFile)])) {
      try {
        // persistent: false — the watch alone must not keep the process alive.
        const w = watch(dir, { persistent: false }, () => this.schedule())
        w.on('error', (err) => this.opts.logger.warn({ dir, err: err.message }, 'certificate directory watch failed; the periodic check goes on'))
        this.watchers.push(w)
      } catch (err) {
        this.opts.logger.warn({ dir, err: (err as Error).message }, 'cannot watch the certificate directory; relying on the periodic check')
      }
    }
    this.interval = setInterval(() => void this.check(), this.opts.intervalMs ?? 60_000)
    this.interval.unref()
  }

  stop(): void {
    this.stopped = true
    for (const w of this.watchers) w.close()
    this.watchers = []
    clearTimeout(this.debounce)
    clearInterval(this.interval)
  }

  private schedule(): void {
    if (this.stopped) return
    clearTimeout(this.debounce)
    this.debounce = setTimeout(() => void this.check(), this.opts.debounceMs ?? 1000)
    this.debounce.unref()
  }

  /** Re-read the files and apply them if they changed and are a usable pair. One check at a time. */
  check(): Promise<void> {
    if (this.running) {
      this.again = true
      return this.running
    }
    this.running = this.checkOnce().finally(() => {
      this.running = undefined
      if (this.again && !this.stopped) {
        this.again = false
        void this.check()
      }
    })
    return this.running
  }

  private async checkOnce(): Promise<void> {
    if (this.stopped) return
    const { certFile, keyFile, logger } = this.opts
    let pair: KeyPair
    try {
      const [cert, key] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')])
      pair = { cert, key }
    } catch (err) {
      // Between the removal of an old file and the arrival of a new one; the next event or check retries.
      logger.warn({ certFile, keyFile, err: (err as Error).message }, 'cannot read the certificate files; still serving the previous certificate')
      return
    }
    const d = digest(pair)
    if (d === this.currentDigest || d === this.rejectedDigest) return
    let summary: CertificateSummary
    try {
      summary = checkKeyPair(pair)
      this.opts.apply(pair)
    } catch (err) {
      this.rejectedDigest = d
      logger.error({ certFile, keyFile, err: (err as Error).message, serving: this.current.fingerprint256 }, 'rotated certificate files are not a usable pair; still serving the previous certificate')
      this.opts.onReload?.('rejected')
      return
    }
    const previous = this.current
    this.current = summary
    this.currentDigest = d
    this.rejectedDigest = undefined
    logger.info(
      { fingerprint256: summary.fingerprint256, subject: summary.subject, issuer: summary.issuer, notAfter: new Date(summary.notAfter * 1000).toISOString(), previous: previous.fingerprint256 },
      'serving certificate reloaded; new connections use it, open ones keep theirs',
    )
    this.opts.onReload?.('applied')
  }
}
