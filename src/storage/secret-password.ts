/**
 * RESTIC_PASSWORD from the restore's source Secret, for probe mode restic in cluster mode.
 *
 * The service already reads that Secret to copy it next to each restored PVC; the probe needs the
 * same password to open the repository. It is kept in memory only (never logged, never in an error
 * message), re-read at most every `ttlMs` so a rotated password is picked up, and read once for
 * any number of concurrent probes.
 */
import { PasswordUnavailableError, type PasswordSource } from './restic-probe.js'

export interface SecretPasswordOptions {
  namespace: string
  name: string
  /** The Secret's data as strings (ClusterClient.readSecretData). */
  readSecretData: (namespace: string, name: string) => Promise<Record<string, string>>
  /** How long a read password is reused. Default 60 s. */
  ttlMs?: number
  now?: () => number
}

export function passwordFromSecret(opts: SecretPasswordOptions): PasswordSource {
  const { namespace, name, readSecretData } = opts
  const ttlMs = opts.ttlMs ?? 60_000
  const now = opts.now ?? Date.now
  let cached: { password: string; at: number } | undefined
  let reading: Promise<string> | undefined
  const read = async (): Promise<string> => {
    let data: Record<string, string>
    try {
      data = await readSecretData(namespace, name)
    } catch (err) {
      // The API error names the Secret and the cause (not found, forbidden, timeout), never a value.
      throw new PasswordUnavailableError(`cannot read the repository password from Secret ${namespace}/${name}: ${(err as Error).message}`)
    }
    const password = data.RESTIC_PASSWORD
    if (!password) throw new PasswordUnavailableError(`Secret ${namespace}/${name} (restore.sourceSecret) has no RESTIC_PASSWORD`)
    cached = { password, at: now() }
    return password
  }
  return () => {
    if (cached && now() - cached.at < ttlMs) return Promise.resolve(cached.password)
    reading ??= read().finally(() => {
      reading = undefined
    })
    return reading
  }
}
