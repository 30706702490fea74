/** The service's log line format: ISO timestamps (built cheaply), redaction where secrets can appear. */
import t from 'tap'
import { Writable } from 'node:stream'
import { createLogger, isoTimeCached } from '../../src/log.js'

t.test('isoTimeCached gives what toISOString gives, across seconds and every millisecond width', async (t) => {
  const realNow = Date.now
  t.teardown(() => (Date.now = realNow))
  const time = isoTimeCached()
  const instants = [0, 5, 42, 999, 1000, 1001, 59_999, 60_000, 1_795_000_000_007, 1_795_000_000_070, 1_795_000_000_700, 1_795_000_001_000, 1_795_000_000_999]
  for (let i = 0; i < 2000; i++) instants.push(1_795_000_000_000 + Math.floor(Math.random() * 5_000))
  const wrong: string[] = []
  for (const ms of instants) {
    Date.now = () => ms
    const got = time()
    if (got !== `,"time":"${new Date(ms).toISOString()}"`) wrong.push(`${ms}: ${got}`)
  }
  t.same(wrong, [], `${instants.length} instants, in and out of order`)
})

t.test('a line parses as JSON with the ISO time, and known secret fields are redacted', async (t) => {
  let out = ''
  const sink = new Writable({ write: (chunk, _e, cb) => ((out += chunk.toString()), cb()) })
  const logger = createLogger('info', sink)
  logger.info({ config: { store: { s3: { secretAccessKey: 'S3CR3T' } } }, stringData: { RESTIC_PASSWORD: 'pw' } }, 'hello')
  const line = JSON.parse(out.trim())
  t.match(line.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
  t.ok(Math.abs(Date.parse(line.time) - Date.now()) < 5000, 'now')
  t.notMatch(out, /S3CR3T|"pw"/, 'no secret value')
  t.equal(line.stringData, '[redacted]')
})
