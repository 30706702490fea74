/**
 * Which snapshot VolSync's restic mover restores (src/decide/select-snapshot.ts), and how the
 * outcome reads (src/decide/snapshot-text.ts).
 *
 * The expectations follow VolSync's `mover-restic/entry.sh`, `select_restic_snapshot_to_restore`:
 * `restic snapshots` (table, oldest first) | grep /data | awk '{print $1 "\t" $2 " " $3}'; each
 * line's time → `date --date=... +%s`; `epochs+=(epoch)`, `epochs_to_snapshots[epoch]=id` (a later
 * line of the same second overwrites the id, the list keeps both); reverse; with RESTORE_AS_OF skip
 * while `epoch > target` (so `<=` is kept); `offset += SELECT_PREVIOUS`; past the end → nothing
 * ("No eligible snapshots found", the PVC comes up empty).
 */
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { accessSync, constants as fsConstants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { asOfEpochSeconds, eligibleForVolSync, selectionSettled, selectSnapshot, type NotSelected, type SnapshotSelection } from '../../src/decide/select-snapshot.js'
import { age, describeSnapshot, noEligibleMessage, snapshotTime, type NoEligibleContext } from '../../src/decide/snapshot-text.js'
import { parseSnapshot, type Snapshot } from '../../src/storage/restic/format.js'

const TREE = '795278e4839e0df5804850b714e5772548eac85cd63af92403144d46ba45b7ec'

/** A snapshot as parseSnapshot makes it from restic's JSON; `name` starts its id (padded with 0s to 64). */
function snap(name: string, time: string, opts: { paths?: string[]; host?: string; tags?: string[] } = {}): Snapshot {
  const json: Record<string, unknown> = { time, tree: TREE, paths: opts.paths ?? ['/data'], hostname: opts.host ?? 'volsync', username: 'root' }
  if (opts.tags) json.tags = opts.tags
  return parseSnapshot(name.padEnd(64, '0'), json, name)
}
const nameOf = (s: Snapshot | undefined) => s?.id.replace(/0+$/, '')

// Four daily VolSync snapshots; d3 has a fraction (the mover only sees its whole second).
const d1 = snap('d1', '2026-11-20T03:00:41Z')
const d2 = snap('d2', '2026-11-21T03:00:41Z')
const d3 = snap('d3', '2026-11-22T03:00:41.5Z')
const d4 = snap('d4', '2026-11-23T03:00:41Z')
const daily = [d3, d1, d4, d2] // not in order: restic lists files in no particular order

// Two snapshots in one second (different nanoseconds), after d4.
const e1 = snap('e1', '2026-11-24T03:00:41.100Z')
const e2 = snap('e2', '2026-11-24T04:00:41.900+01:00')
// Same instant to the nanosecond (only `restic backup --time` makes these): ordered by id.
const f1 = snap('f1', '2026-11-25T03:00:41Z')
const f2 = snap('f2', '2026-11-25T03:00:41Z')

// Other tools' snapshots.
const home = snap('home', '2026-11-24T00:00:00Z', { paths: ['/home/alice'], host: 'laptop' })
const backup = snap('backup', '2026-11-24T01:00:00Z', { paths: ['/backup'], host: 'nas' })
const pg = snap('pg', '2026-11-24T02:00:00Z', { paths: ['/var/lib/postgresql'], host: 'db' })
const srvData = snap('srvdata', '2026-11-23T12:00:00Z', { paths: ['/srv/data'], host: 'files' })
const database = snap('database', '2026-11-23T13:00:00Z', { paths: ['/database'], host: 'files' })
const tagged = snap('tagged', '2026-11-24T05:00:00Z', { paths: ['/home/alice'], host: 'laptop', tags: ['nightly', 'app/data'] })
const otherHost = snap('otherhost', '2026-11-23T20:00:00Z', { host: 'restored-cluster' })

interface Row {
  name: string
  snapshots: Snapshot[]
  selection?: SnapshotSelection
  selected?: string
  why?: NotSelected
  eligible: string[]
  atOrBeforeAsOf: number
}

const rows: Row[] = [
  { name: 'no snapshots', snapshots: [], why: 'empty', eligible: [], atOrBeforeAsOf: 0 },
  { name: 'no snapshots, with as-of and previous', snapshots: [], selection: { restoreAsOf: '2026-11-22T00:00:00Z', previous: 2 }, why: 'empty', eligible: [], atOrBeforeAsOf: 0 },
  { name: 'one /data snapshot', snapshots: [d1], selected: 'd1', eligible: ['d1'], atOrBeforeAsOf: 1 },
  { name: 'newest chosen, whatever the input order', snapshots: daily, selected: 'd4', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'previous 0 is the newest', snapshots: daily, selection: { previous: 0 }, selected: 'd4', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'previous 1', snapshots: daily, selection: { previous: 1 }, selected: 'd3', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'previous = count − 1 is the oldest', snapshots: daily, selection: { previous: 3 }, selected: 'd1', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'previous = count runs off the end', snapshots: daily, selection: { previous: 4 }, why: 'previous-past-oldest', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'previous 9999', snapshots: daily, selection: { previous: 9999 }, why: 'previous-past-oldest', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'as-of after the newest', snapshots: daily, selection: { restoreAsOf: '2030-01-01T00:00:00Z' }, selected: 'd4', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'as-of exactly on a snapshot’s second (<=, included)', snapshots: daily, selection: { restoreAsOf: '2026-11-23T03:00:41Z' }, selected: 'd4', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'as-of one second before it', snapshots: daily, selection: { restoreAsOf: '2026-11-23T03:00:40Z' }, selected: 'd3', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 3 },
  // d3 was taken at 41.5 s; the mover's table shows 03:00:41 and `date` gives that second: as-of 41.0 includes it.
  { name: 'as-of on the second of a snapshot with a fraction (the fraction is dropped)', snapshots: daily, selection: { restoreAsOf: '2026-11-22T03:00:41Z' }, selected: 'd3', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 3 },
  { name: 'as-of with a fraction, same second', snapshots: daily, selection: { restoreAsOf: '2026-11-23T03:00:41.999Z' }, selected: 'd4', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'as-of with a fraction, the second before (floored, not rounded)', snapshots: daily, selection: { restoreAsOf: '2026-11-23T03:00:40.999Z' }, selected: 'd3', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 3 },
  { name: 'as-of with an offset, same instant', snapshots: daily, selection: { restoreAsOf: '2026-11-23T04:00:41+01:00' }, selected: 'd4', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 4 },
  { name: 'as-of with an offset, a second earlier', snapshots: daily, selection: { restoreAsOf: '2026-11-22T22:00:40-05:00' }, selected: 'd3', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 3 },
  { name: 'as-of between snapshots', snapshots: daily, selection: { restoreAsOf: '2026-11-21T12:00:00Z' }, selected: 'd2', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 2 },
  { name: 'as-of on the oldest', snapshots: daily, selection: { restoreAsOf: '2026-11-20T03:00:41Z' }, selected: 'd1', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 1 },
  { name: 'as-of one second before the oldest', snapshots: daily, selection: { restoreAsOf: '2026-11-20T03:00:40Z' }, why: 'as-of-before-oldest', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 0 },
  { name: 'as-of before the oldest, with previous', snapshots: daily, selection: { restoreAsOf: '2020-01-01T00:00:00Z', previous: 1 }, why: 'as-of-before-oldest', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 0 },
  { name: 'as-of and previous', snapshots: daily, selection: { restoreAsOf: '2026-11-22T12:00:00Z', previous: 1 }, selected: 'd2', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 3 },
  { name: 'as-of and previous to the oldest', snapshots: daily, selection: { restoreAsOf: '2026-11-22T12:00:00Z', previous: 2 }, selected: 'd1', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 3 },
  { name: 'as-of and previous past the oldest', snapshots: daily, selection: { restoreAsOf: '2026-11-22T12:00:00Z', previous: 3 }, why: 'previous-past-oldest', eligible: ['d1', 'd2', 'd3', 'd4'], atOrBeforeAsOf: 3 },

  // One second, two snapshots: the later in restic's order owns the epoch; the epoch list has both.
  { name: 'same second, different nanos: the later wins', snapshots: [e2, d4, e1], selected: 'e2', eligible: ['d4', 'e1', 'e2'], atOrBeforeAsOf: 3 },
  { name: 'same second, other input order: still the later', snapshots: [e1, e2, d4], selected: 'e2', eligible: ['d4', 'e1', 'e2'], atOrBeforeAsOf: 3 },
  { name: 'same second: previous 1 lands on the same second again, so the same snapshot', snapshots: [e1, d4, e2], selection: { previous: 1 }, selected: 'e2', eligible: ['d4', 'e1', 'e2'], atOrBeforeAsOf: 3 },
  { name: 'same second: previous 2 is the one before that second', snapshots: [e1, d4, e2], selection: { previous: 2 }, selected: 'd4', eligible: ['d4', 'e1', 'e2'], atOrBeforeAsOf: 3 },
  { name: 'same second: previous counts both entries', snapshots: [e1, d4, e2], selection: { previous: 3 }, why: 'previous-past-oldest', eligible: ['d4', 'e1', 'e2'], atOrBeforeAsOf: 3 },
  { name: 'same second: as-of on that second', snapshots: [e1, d4, e2], selection: { restoreAsOf: '2026-11-24T03:00:41Z' }, selected: 'e2', eligible: ['d4', 'e1', 'e2'], atOrBeforeAsOf: 3 },
  { name: 'same instant to the nanosecond: by id, the larger wins', snapshots: [f2, f1], selected: 'f2', eligible: ['f1', 'f2'], atOrBeforeAsOf: 2 },

  // Which snapshots the mover's `grep /data` keeps.
  { name: 'snapshots of other paths only', snapshots: [home, backup, pg], why: 'no-data-path', eligible: [], atOrBeforeAsOf: 0 },
  { name: 'other paths only, with an as-of before all: still no-data-path', snapshots: [home, backup], selection: { restoreAsOf: '2000-01-01T00:00:00Z' }, why: 'no-data-path', eligible: [], atOrBeforeAsOf: 0 },
  { name: 'mixed paths: /srv/data and /database count (substring), /backup does not', snapshots: [d1, srvData, database, backup, home], selected: 'database', eligible: ['d1', 'srvdata', 'database'], atOrBeforeAsOf: 3 },
  { name: 'mixed paths: previous skips only eligible ones', snapshots: [d1, srvData, database, backup, home], selection: { previous: 1 }, selected: 'srvdata', eligible: ['d1', 'srvdata', 'database'], atOrBeforeAsOf: 3 },
  { name: 'several hosts: the mover lists every host', snapshots: [...daily, otherHost], selected: 'otherhost', eligible: ['d1', 'd2', 'd3', 'd4', 'otherhost'], atOrBeforeAsOf: 5 },
  { name: 'tags containing /data make a foreign snapshot eligible', snapshots: [...daily, tagged, home], selected: 'tagged', eligible: ['d1', 'd2', 'd3', 'd4', 'tagged'], atOrBeforeAsOf: 5 },
]

t.test('selectSnapshot', async (t) => {
  for (const row of rows) {
    t.test(row.name, async (t) => {
      const before = row.snapshots.map((s) => s.id)
      const out = selectSnapshot(row.snapshots, row.selection)
      t.equal(nameOf(out.selected), row.selected, 'selected')
      t.equal(out.why, row.why, 'why')
      t.same(out.eligible.map(nameOf), row.eligible, 'eligible, oldest first')
      t.equal(out.atOrBeforeAsOf, row.atOrBeforeAsOf, 'at or before as-of')
      t.ok(out.selected === undefined ? out.why !== undefined : out.why === undefined, 'exactly one of selected and why')
      t.same(
        row.snapshots.map((s) => s.id),
        before,
        'the caller’s list is not reordered',
      )
    })
  }
  t.same(selectSnapshot(daily), selectSnapshot(daily, {}), 'no selection = the empty selection')
})

t.test('eligibleForVolSync: restic’s table line, first line only', async (t) => {
  const cases: Array<[string, { paths?: string[]; host?: string; tags?: string[] }, boolean]> = [
    ['/data', {}, true],
    ['/srv/data', { paths: ['/srv/data'] }, true],
    ['/database', { paths: ['/database'] }, true],
    ['/data2', { paths: ['/data2'] }, true],
    ['/home/u/my/data', { paths: ['/home/u/my/data'] }, true],
    ['/mnt/Data (grep is case-sensitive)', { paths: ['/mnt/Data'] }, false],
    ['/backup', { paths: ['/backup'] }, false],
    ['/dat/a', { paths: ['/dat/a'] }, false],
    ['/ (root)', { paths: ['/'] }, false],
    ['data without a slash', { paths: ['/srv/mydata'] }, false],
    ['/data first of several paths', { paths: ['/data', '/etc'] }, true],
    // restic prints the second path on a continuation line, which the mover mangles; not modelled (see the module comment).
    ['/data second of several paths (continuation line, not modelled)', { paths: ['/etc', '/data'] }, false],
    ['a host containing /data', { paths: ['/etc'], host: 'nas/data' }, true],
    ['a tag /data', { paths: ['/etc'], tags: ['/data'] }, true],
    ['a tag containing /data among others', { paths: ['/etc'], tags: ['nightly', 'app/data'] }, true],
    ['tags /da and ta: joined with a comma, not concatenated', { paths: ['/etc'], tags: ['/da', 'ta'] }, false],
    ['tags without /data', { paths: ['/etc'], tags: ['data', 'daily'] }, false],
  ]
  for (const [name, opts, want] of cases) t.equal(eligibleForVolSync(snap('x', '2026-11-22T03:00:41Z', opts)), want, name)
})

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

t.test('asOfEpochSeconds: `date --date=<as-of> +%s`', async (t) => {
  const cases: Array<[string, number]> = [
    ['2026-11-22T03:00:41Z', 1795316441],
    ['2026-11-22T03:00:41.999Z', 1795316441],
    ['2026-11-22T04:00:41+01:00', 1795316441],
    ['2026-11-22T03:00:41.123456789-05:30', 1795336241],
    ['1970-01-01T00:00:00Z', 0],
  ]
  for (const [asOf, epoch] of cases) t.equal(asOfEpochSeconds(asOf), epoch, asOf)
  const date = onPath('date')
  t.test('against GNU date, which the mover runs', { skip: date ? false : 'no `date` on PATH' }, async (t) => {
    for (const [asOf] of cases) {
      let out: string
      try {
        out = execFileSync(date!, [`--date=${asOf}`, '+%s'], { env: { ...process.env, TZ: 'Europe/Berlin' } }).toString().trim()
      } catch {
        t.comment(`skipped ${asOf}: this date does not parse it (not GNU date?)`)
        continue
      }
      t.equal(asOfEpochSeconds(asOf), Number(out), `${asOf}: ${out}`)
    }
  })
})

t.test('selectionSettled', async (t) => {
  const e = (s: Snapshot) => s.epochSeconds
  const cases: Array<[string, Snapshot[], SnapshotSelection, number | undefined, boolean]> = [
    ['nothing left unread, nothing loaded', [], {}, undefined, true],
    ['nothing left unread, nothing selectable', [home], { previous: 5 }, undefined, true],
    ['nothing loaded yet', [], {}, e(d4), false],
    ['newest loaded, the rest strictly older', [d4], {}, e(d4) - 1, true],
    ['newest loaded, an unread one may be of the same second (could own the epoch)', [d4], {}, e(d4), false],
    ['an unread one may be newer', [d4], {}, e(d4) + 1, false],
    ['previous 1: the second newest loaded, the rest older', [d4, d3], { previous: 1 }, e(d3) - 1, true],
    ['previous 1: an unread one could sit between them', [d4, d3], { previous: 1 }, e(d3) + 1, false],
    ['previous 1: not enough loaded', [d4], { previous: 1 }, e(d3), false],
    ['as-of: loaded newer ones do not count, the selected is older than every unread', [d4, d3], { restoreAsOf: '2026-11-22T12:00:00Z' }, e(d3) - 1, true],
    ['as-of: nothing loaded is at or before it', [d4], { restoreAsOf: '2026-11-22T12:00:00Z' }, e(d3), false],
    ['only another tool’s snapshots loaded', [home, backup], {}, e(d1), false],
    ['a foreign snapshot does not block: the /data one is selected', [d4, home], {}, e(d4) - 1, true],
    ['same second loaded twice: settled only below that second', [e1, e2], { previous: 1 }, e(e1) - 1, true],
  ]
  for (const [name, loaded, selection, bound, want] of cases) t.equal(selectionSettled(loaded, selection, bound), want, name)

  // The promise the reader relies on: once settled, the unread snapshots cannot change the answer.
  t.test('settled means reading the rest changes nothing (random repositories)', async (t) => {
    // mulberry32: small, deterministic, and good in its low bits (unlike a bare LCG).
    let seed = 0x5eed
    const rand = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
      return (((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * n | 0
    }
    const base = Date.UTC(2026, 10, 20) / 1000
    let settledCount = 0
    let checked = 0
    for (let round = 0; round < 3000; round++) {
      const count = 1 + rand(8)
      const all: Snapshot[] = []
      for (let i = 0; i < count; i++) {
        const second = base + rand(6) // few seconds: many collisions
        const nanos = rand(3) * 300_000_000
        const time = new Date(second * 1000).toISOString().replace('.000Z', `.${String(nanos).padStart(9, '0')}Z`)
        all.push(snap(`r${round}x${i}`, time, { paths: [rand(4) === 0 ? '/home' : '/data'] }))
      }
      const selection: SnapshotSelection = {}
      if (rand(2)) selection.previous = rand(4)
      if (rand(2)) selection.restoreAsOf = new Date((base + rand(7) - 1) * 1000).toISOString()
      const loaded = all.filter(() => rand(2) === 0)
      const unread = all.filter((s) => !loaded.includes(s))
      const bound = unread.length ? Math.max(...unread.map((s) => s.epochSeconds)) + rand(2) : undefined
      checked++
      if (!selectionSettled(loaded, selection, bound)) continue
      settledCount++
      const whole = selectSnapshot(all, selection)
      const partial = selectSnapshot(loaded, selection)
      if (whole.selected?.id !== partial.selected?.id) {
        t.fail(`round ${round}: settled on ${nameOf(partial.selected)}, but all snapshots select ${nameOf(whole.selected)}`, { all: all.map((s) => s.time), loaded: loaded.map((s) => s.time), selection, bound })
        return
      }
    }
    t.ok(settledCount > 300, `settled in ${settledCount} of ${checked} random cases (not a vacuous check)`)
    t.pass('every settled selection equals the selection over all snapshots')
  })
})

// ---- snapshot-text ---------------------------------------------------------------------------

const H = 3_600_000
const real = snap('3f9c01a2', '2026-11-22T04:00:41.734+01:00')

t.test('snapshotTime: the second the mover compares, in UTC', async (t) => {
  t.equal(snapshotTime(real), '2026-11-22T03:00:41Z')
  t.equal(snapshotTime(snap('x', '2026-11-22T03:00:41.999999999Z')), '2026-11-22T03:00:41Z', 'fraction dropped, not rounded')
  t.equal(snapshotTime(snap('x', '2026-01-01T00:30:00+01:00')), '2025-12-31T23:30:00Z', 'across a year boundary')
})

t.test('describeSnapshot', async (t) => {
  const at = Date.UTC(2026, 10, 22, 3, 0, 41)
  t.equal(describeSnapshot(real, at + 5 * H), '3f9c01a2 of /data taken 2026-11-22T03:00:41Z (5h ago)')
  t.equal(describeSnapshot(real, at + 3 * 24 * H), '3f9c01a2 of /data taken 2026-11-22T03:00:41Z (3d ago)')
  t.equal(describeSnapshot(real, at - 2 * 60_000), '3f9c01a2 of /data taken 2026-11-22T03:00:41Z (in 2m)', 'a clock ahead of ours')
  t.equal(describeSnapshot(snap('abcdef0123', '2026-11-22T03:00:41Z', { paths: ['/etc', '/srv/data'] }), at + 30_000), 'abcdef01 of /etc, /srv/data taken 2026-11-22T03:00:41Z (30s ago)')
  t.equal(describeSnapshot(snap('abcdef0123', '2026-11-22T03:00:41Z', { paths: [] }), at), 'abcdef01 of (no path) taken 2026-11-22T03:00:41Z (0s ago)')
})

t.test('age boundaries', async (t) => {
  const m = 60_000
  const cases: Array<[number, string]> = [
    [0, '0s ago'],
    [499, '0s ago'],
    [500, '1s ago'],
    [59_000, '59s ago'],
    [89_000, '89s ago'],
    [89_999, '90s ago'],
    [90_000, '2m ago'],
    [5 * m, '5m ago'],
    [59 * m, '59m ago'],
    [90 * m - 1, '90m ago'],
    [90 * m, '2h ago'],
    [5 * H, '5h ago'],
    [47 * H, '47h ago'],
    [48 * H - 1, '48h ago'],
    [48 * H, '2d ago'],
    [30 * 24 * H, '30d ago'],
    [400 * 24 * H, '400d ago'],
    [-30_000, 'in 30s'],
    [-2 * m, 'in 2m'],
    [-5 * H, 'in 5h'],
    [-3 * 24 * H, 'in 3d'],
  ]
  const now = Date.UTC(2026, 10, 22)
  for (const [ago, text] of cases) t.equal(age(now - ago, now), text, `${ago} ms`)
})

t.test('noEligibleMessage', async (t) => {
  const keys = { asOf: 'smart-restore.io/restore-as-of', previous: 'smart-restore.io/restore-previous', skip: 'smart-restore.io/skip-restore' }
  const location = 's3://backups/media/data-claim'
  const ctx = (snapshots: Snapshot[], selection: SnapshotSelection, total = snapshots.length): NoEligibleContext => ({ location, total, snapshots, selection, keys })
  const message = (snapshots: Snapshot[], selection: SnapshotSelection, total?: number) => {
    const outcome = selectSnapshot(snapshots, selection)
    t.equal(outcome.selected, undefined, 'precondition: nothing selected')
    return { why: outcome.why, text: noEligibleMessage(outcome, ctx(snapshots, selection, total)) }
  }
  const empty = `VolSync's mover would restore nothing and the PVC would come up empty, so it was not created`
  const skip = `annotate it smart-restore.io/skip-restore: "<reason>"`

  t.test('no-data-path: the count, the paths and hosts found, the skip annotation', async (t) => {
    const { why, text } = message([home, backup, pg, snap('home2', '2026-11-24T03:00:00Z', { paths: ['/home/alice'], host: 'laptop' })], {})
    t.equal(why, 'no-data-path')
    t.match(text, `${location} holds 4 snapshot(s), but none of /data`)
    t.match(text, 'Paths found: /home/alice, /backup, /var/lib/postgresql; hosts: laptop, nas, db.', 'distinct paths and hosts, in order')
    t.match(text, empty)
    t.match(text, skip)
    const many = Array.from({ length: 8 }, (_, i) => snap(`p${i}`, '2026-11-24T03:00:00Z', { paths: [`/p${i}`], host: 'h' }))
    const { text: long } = message(many, {})
    t.match(long, 'Paths found: /p0, /p1, /p2, /p3, /p4, and 3 more; hosts: h.', 'at most five named')
  })

  t.test('as-of-before-oldest: the as-of, the oldest and newest times, and advice that works', async (t) => {
    const asOf = '2026-11-19T00:00:00Z'
    const { why, text } = message(daily, { restoreAsOf: asOf })
    t.equal(why, 'as-of-before-oldest')
    t.match(text, `no snapshot of /data in ${location} was taken at or before smart-restore.io/restore-as-of=${asOf}`)
    t.match(text, 'the oldest is d1000000 of 2026-11-20T03:00:41Z, the newest d4000000 of 2026-11-23T03:00:41Z (4 in all)')
    t.match(text, 'Use a smart-restore.io/restore-as-of at or after 2026-11-20T03:00:41Z, or remove it to restore the newest')
    t.match(text, empty)
    t.match(text, skip)
    t.equal(nameOf(selectSnapshot(daily, { restoreAsOf: '2026-11-20T03:00:41Z' }).selected), 'd1', 'the suggested as-of does select the oldest')
  })

  t.test('previous-past-oldest: the count and the range that works', async (t) => {
    const { why, text } = message(daily, { previous: 4 })
    t.equal(why, 'previous-past-oldest')
    t.match(text, `smart-restore.io/restore-previous=4 skips past the oldest snapshot: ${location} has 4 snapshot(s) of /data (oldest d1000000 of 2026-11-20T03:00:41Z, newest d4000000 of 2026-11-23T03:00:41Z), so use 0 to 3 (0 = the newest).`)
    t.match(text, empty)
    t.match(text, skip)
    t.equal(nameOf(selectSnapshot(daily, { previous: 3 }).selected), 'd1', 'the largest suggested value works')
  })

  t.test('previous-past-oldest with an as-of: counts and names only the snapshots at or before it', async (t) => {
    const selection = { restoreAsOf: '2026-11-22T12:00:00Z', previous: 3 }
    const { why, text } = message(daily, selection)
    t.equal(why, 'previous-past-oldest')
    t.match(text, `has 3 snapshot(s) of /data at or before 2026-11-22T12:00:00Z (oldest d1000000 of 2026-11-20T03:00:41Z, newest d3000000 of 2026-11-22T03:00:41Z), so use 0 to 2 (0 = the newest of those).`)
    t.notMatch(text, 'd4000000', 'not the newest overall, which the as-of excludes')
    t.equal(nameOf(selectSnapshot(daily, { ...selection, previous: 0 }).selected), 'd3', '0 restores the newest the message names')
    t.equal(nameOf(selectSnapshot(daily, { ...selection, previous: 2 }).selected), 'd1', 'and 2 the oldest')
  })

  t.test('previous-past-oldest with two snapshots in one second: both entries counted', async (t) => {
    const { text } = message([d4, e1, e2], { previous: 3 })
    t.match(text, 'has 3 snapshot(s) of /data (oldest d4000000 of 2026-11-23T03:00:41Z, newest e2000000 of 2026-11-24T03:00:41Z), so use 0 to 2')
  })

  t.test('empty: a message, not a crash', async (t) => {
    const outcome = selectSnapshot([], {})
    t.equal(outcome.why, 'empty')
    const text = noEligibleMessage(outcome, ctx([], {}))
    t.match(text, `${location} holds no snapshot`)
    t.match(text, "VolSync's mover would restore nothing")
    t.match(text, skip)
  })
})
