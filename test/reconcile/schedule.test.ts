/**
 * H-spread schedules: stable per PVC, spread evenly over a population, always acceptable to the
 * VolSync CRD (its own trigger.schedule pattern, read from the CRD fixture rather than copied).
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { validSchedule } from '../../src/config/load.js'
import { defaultConfig } from '../../src/config/schema.js'
import { spreadSchedule } from '../../src/reconcile/schedule.js'

const here = dirname(fileURLToPath(import.meta.url))
const CRD = join(here, '..', '..', '..', 'shared', 'fixtures', 'volsync', 'crds', 'volsync.backube_replicationsources.yaml')
const crd = parse(readFileSync(CRD, 'utf8'))
const patternText: string = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.trigger.properties.schedule.pattern
const CRD_PATTERN = new RegExp(patternText)
// The CRD's `^A|B$` anchors each alternative at one end only; this holds the whole string to
// exactly 5 of the CRD's field forms.
const FIELD = String.raw`((\d+,)*\d+|\d+[/-]\d+|\*(\/\d+)?)`
const STRICT = new RegExp(`^${FIELD}( ${FIELD}){4}$`)

const N = 10_000
const names = Array.from({ length: N }, (_, i) => ({ namespace: `team-${i % 37}`, name: `data-${i}` }))

function chiSquare(counts: number[], expected: number): number {
  return counts.reduce((sum, c) => sum + (c - expected) ** 2 / expected, 0)
}

t.test('the CRD pattern is the one expected', async (t) => {
  t.match(patternText, /@\(annually\|yearly/)
  t.ok(CRD_PATTERN.test('7 3 * * *'))
})

t.test('H and H(a-b) are replaced; macros and plain cron untouched', async (t) => {
  const s = spreadSchedule('H * * * *', 'media', 'data-claim')
  t.match(s, /^\d{1,2} \* \* \* \*$/)
  t.equal(spreadSchedule('@hourly', 'media', 'data-claim'), '@hourly')
  t.equal(spreadSchedule('@daily', 'media', 'data-claim'), '@daily')
  t.equal(spreadSchedule('*/15 * * * *', 'media', 'data-claim'), '*/15 * * * *')
  t.equal(spreadSchedule('5 4 * * 0', 'media', 'data-claim'), '5 4 * * 0')
  t.equal(spreadSchedule('0,30 1-5 * * *', 'media', 'data-claim'), '0,30 1-5 * * *')
  const d = spreadSchedule('H H(0-5) * * *', 'media', 'data-claim').split(' ')
  t.ok(Number(d[0]) >= 0 && Number(d[0]) <= 59, `minute ${d[0]}`)
  t.ok(Number(d[1]) >= 0 && Number(d[1]) <= 5, `hour ${d[1]}`)
  t.same(d.slice(2), ['*', '*', '*'])
  // An H outside minute/hour is invalid config (validSchedule rejects it) and is left as it is.
  t.notOk(validSchedule('0 0 H * *'))
  t.equal(spreadSchedule('0 0 H * *', 'media', 'data-claim'), '0 0 H * *')
})

t.test('stable per PVC, different across PVCs', async (t) => {
  const a = spreadSchedule('H H * * *', 'media', 'data-claim')
  for (let i = 0; i < 5; i++) t.equal(spreadSchedule('H H * * *', 'media', 'data-claim'), a, 'same input, same schedule')
  t.not(spreadSchedule('H H * * *', 'media', 'data-claim'), spreadSchedule('H H * * *', 'other', 'data-claim'), 'namespace counts')
  const distinct = new Set(names.slice(0, 200).map((n) => spreadSchedule('H H * * *', n.namespace, n.name)))
  t.ok(distinct.size > 150, `${distinct.size} distinct schedules for 200 PVCs (1440 possible)`)
})

t.test('minute spread over 10,000 PVCs is uniform', async (t) => {
  const counts = new Array<number>(60).fill(0)
  for (const n of names) counts[Number(spreadSchedule('H * * * *', n.namespace, n.name).split(' ')[0])]!++
  const mean = N / 60
  const min = Math.min(...counts)
  const max = Math.max(...counts)
  const chi = chiSquare(counts, mean)
  t.comment(`minute buckets: mean ${mean.toFixed(1)}, min ${min} (${(((min - mean) / mean) * 100).toFixed(1)}%), max ${max} (+${(((max - mean) / mean) * 100).toFixed(1)}%)`)
  t.comment(`minute chi-square ${chi.toFixed(1)} with 59 degrees of freedom (p=0.001 critical value 98.3)`)
  for (const [minute, c] of counts.entries()) {
    if (Math.abs(c - mean) > 0.35 * mean) t.fail(`minute ${minute}: ${c} PVCs, more than 35% from the mean ${mean.toFixed(1)}`)
  }
  t.ok(min >= mean * 0.65 && max <= mean * 1.35, 'every minute bucket within ±35% of the mean')
  t.ok(chi < 98.3, `chi-square ${chi.toFixed(1)} < 98.3`)
})

t.test('hour spread within H(0-5), independent of the minute', async (t) => {
  const hours = new Array<number>(6).fill(0)
  const joint = new Array<number>(360).fill(0)
  for (const n of names) {
    const [m, h] = spreadSchedule('H H(0-5) * * *', n.namespace, n.name).split(' ').map(Number) as [number, number]
    if (h < 0 || h > 5) t.fail(`hour ${h} outside 0-5 for ${n.namespace}/${n.name}`)
    hours[h]!++
    joint[h * 60 + m]!++
  }
  const mean = N / 6
  const chi = chiSquare(hours, mean)
  t.comment(`hour buckets 0-5: ${hours.join(', ')} (mean ${mean.toFixed(1)}, max deviation ${((Math.max(...hours.map((c) => Math.abs(c - mean))) / mean) * 100).toFixed(1)}%)`)
  t.comment(`hour chi-square ${chi.toFixed(2)} with 5 degrees of freedom (p=0.001 critical value 20.5)`)
  t.ok(chi < 20.5)
  t.equal(hours.reduce((a, b) => a + b, 0), N, 'every hour in 0-5')
  // Minute and hour come from different bits of the hash: the 360 (hour, minute) cells are uniform too.
  const jointChi = chiSquare(joint, N / 360)
  // 359 degrees of freedom: p=0.001 critical ≈ 359 + 3.09·√718 ≈ 442 (normal approximation).
  t.comment(`joint (hour, minute) chi-square ${jointChi.toFixed(1)} with 359 degrees of freedom (p=0.001 critical ≈ 442)`)
  t.ok(jointChi < 442)
})

t.test('H(a-b) in the minute field stays in range', async (t) => {
  const seen = new Set<number>()
  for (const n of names.slice(0, 2000)) {
    const m = Number(spreadSchedule('H(10-20) * * * *', n.namespace, n.name).split(' ')[0])
    if (m < 10 || m > 20) t.fail(`minute ${m} outside 10-20`)
    seen.add(m)
  }
  t.equal(seen.size, 11, 'all of 10..20 used')
  t.equal(spreadSchedule('H(7-7) H(23-23) * * *', 'a', 'b'), '7 23 * * *', 'a one-value range is that value')
})

t.test('every output matches the VolSync trigger.schedule pattern', async (t) => {
  const templates = [...Object.values(defaultConfig.tiers).map((x) => x.schedule), 'H(0-29) H(1-3) * * 1-5', 'H H * * *', '@weekly', '*/10 * * * *']
  let checked = 0
  for (const template of templates) {
    t.ok(validSchedule(template), `${template} is a valid configured schedule`)
    for (const n of names) {
      const s = spreadSchedule(template, n.namespace, n.name)
      checked++
      if (!CRD_PATTERN.test(s)) t.fail(`${template} → ${s} does not match the CRD pattern`)
      if (!s.startsWith('@') && !STRICT.test(s)) t.fail(`${template} → ${s} is not 5 plain cron fields`)
    }
  }
  t.comment(`${checked} spread schedules checked against ${patternText}`)
  t.pass(`${checked} schedules match`)
})
