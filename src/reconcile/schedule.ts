/**
 * Jenkins-style `H` schedules. A tier's schedule such as `H H(0-5) * * *` is turned, per PVC, into a
 * plain cron expression VolSync accepts, with the `H` fields replaced by values derived from a hash
 * of the PVC's namespace/name: a hundred PVCs of one tier then spread over the hour (and over the
 * night) instead of starting a hundred restic movers, snapshots and S3 uploads in the same second.
 *
 * The value must be stable: the reconciler compares the desired ReplicationSource with the existing
 * one, and a schedule that changed on every run (Math.random) would rewrite every source every time.
 * It must also be the same on every replica and across restarts, so it comes from sha256, not from
 * anything process-local.
 */
import { createHash } from 'node:crypto'

/** `H` or `H(a-b)`: the only forms, and only in minute and hour; `load.ts`'s validSchedule checks schedules with this and FIELD_RANGES. */
export const H_FIELD = /^H(?:\((\d+)-(\d+)\))?$/

/** Allowed range of the fields that may hold `H`: minute, hour. */
export const FIELD_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0, 59],
  [0, 23],
]

/**
 * `template` with `H` in the minute field replaced by hash % 60 and `H(a-b)` by a + hash % (b-a+1);
 * the same for the hour field with another 32 bits of the hash, so the minute does not determine the
 * hour. `@hourly`-style macros and schedules without `H` are returned unchanged.
 *
 * `H` anywhere else (or a reversed/out-of-range `H(a-b)`) is left as it is: the configuration
 * validation (validSchedule) rejects such schedules at startup, so they never get here, and this
 * function stays total rather than throwing in the middle of a reconcile.
 */
export function spreadSchedule(template: string, namespace: string, name: string): string {
  if (!template.includes('H')) return template
  const fields = template.trim().split(/\s+/)
  if (fields.length !== 5) return template
  // Namespaces cannot contain '/', so `<namespace>/<name>` is unambiguous.
  const digest = createHash('sha256').update(`${namespace}/${name}`).digest()
  for (const [i, [min, max]] of FIELD_RANGES.entries()) {
    const m = H_FIELD.exec(fields[i]!)
    if (!m) continue
    const lo = m[1] === undefined ? min : Number(m[1])
    const hi = m[2] === undefined ? max : Number(m[2])
    if (lo > hi || lo < min || hi > max) continue
    // 32 bits per field (bytes 0-3 minute, 4-7 hour). The modulo bias of 2^32 % 60 is ~4e-9: none.
    const slice = digest.readUInt32BE(i * 4)
    fields[i] = String(lo + (slice % (hi - lo + 1)))
  }
  return fields.join(' ')
}
