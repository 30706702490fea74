/**
 * passwordFromSecret: RESTIC_PASSWORD of the restore source Secret, read once for concurrent probes,
 * re-read after its TTL (a rotated password counts), and failures that name the Secret, never a value.
 */
import t from 'tap'
import { PasswordUnavailableError } from '../../src/storage/restic-probe.js'
import { passwordFromSecret } from '../../src/storage/secret-password.js'

function secretReader(values: Array<Record<string, string> | Error>) {
  const reads: string[] = []
  let i = 0
  const readSecretData = async (namespace: string, name: string) => {
    reads.push(`${namespace}/${name}`)
    await new Promise((r) => setImmediate(r))
    const v = values[Math.min(i++, values.length - 1)]!
    if (v instanceof Error) throw v
    return v
  }
  return { reads, readSecretData }
}

t.test('concurrent probes share one read; the TTL brings a rotated password', async (t) => {
  let clock = 1_000
  const api = secretReader([{ RESTIC_PASSWORD: 'first' }, { RESTIC_PASSWORD: 'rotated' }])
  const password = passwordFromSecret({ namespace: 'smart-restore', name: 'smart-restore-restic', readSecretData: api.readSecretData, ttlMs: 60_000, now: () => clock })
  t.same(await Promise.all([password(), password(), password()]), ['first', 'first', 'first'])
  t.same(api.reads, ['smart-restore/smart-restore-restic'], 'one read for three concurrent probes')
  clock += 59_999
  t.equal(await password(), 'first', 'within the TTL: no read')
  t.equal(api.reads.length, 1)
  clock += 1
  t.equal(await password(), 'rotated', 'after the TTL: read again')
  t.equal(api.reads.length, 2)
})

t.test('failures name the Secret and are retried on the next probe, not cached', async (t) => {
  const secretValue = 'never-in-a-message'
  const api = secretReader([new Error('secrets "smart-restore-restic" is forbidden'), { AWS_ACCESS_KEY_ID: secretValue }, { RESTIC_PASSWORD: secretValue }])
  const password = passwordFromSecret({ namespace: 'smart-restore', name: 'smart-restore-restic', readSecretData: api.readSecretData })

  const forbidden = await password().catch((e: unknown) => e)
  t.type(forbidden, PasswordUnavailableError)
  t.equal((forbidden as Error).message, 'cannot read the repository password from Secret smart-restore/smart-restore-restic: secrets "smart-restore-restic" is forbidden')

  const missingKey = await password().catch((e: unknown) => e)
  t.type(missingKey, PasswordUnavailableError)
  t.equal((missingKey as Error).message, 'Secret smart-restore/smart-restore-restic (restore.sourceSecret) has no RESTIC_PASSWORD')
  t.notOk((missingKey as Error).message.includes(secretValue), 'no Secret value in the message')

  t.equal(await password(), secretValue, 'the third probe reads again and succeeds')
  t.equal(api.reads.length, 3)
})
