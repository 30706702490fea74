/**
 * How often a tier backs up, read off its cron schedule: the period of the coarsest restricted
 * field divided by the runs in it (uneven lists such as `0,1` in the hour count as evenly spread).
 * That is how old a restore point may be when everything works; `late` is twice that.
 *
 * The tiers' schedules are simple (`H * * * *`, `H H(0-5) * * *`, `H H(0-5) * * 0`, `*\/15 * * * *`,
 * macros), so this reads the fields instead of enumerating a year of runs: the coarsest field that
 * is restricted sets the period, and a step or a list in it divides it.
 */

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

const MACROS: Record<string, number> = {
  '@hourly': HOUR,
  '@daily': DAY,
  '@midnight': DAY,
  '@weekly': 7 * DAY,
  '@monthly': 31 * DAY,
  '@yearly': 366 * DAY,
  '@annually': 366 * DAY,
}

/** How many values a field selects within its range (`*` → all; `H`, `5`, `H(0-5)` → 1; `*\/15` → n; `1,3` → 2). */
function valuesIn(field: string, size: number): number {
  if (field === '*' || field === '?') return size
  let count = 0
  for (const part of field.split(',')) {
    const step = /^(?:\*|(\d+)-(\d+))\/(\d+)$/.exec(part)
    if (step) {
      const span = step[1] !== undefined ? Number(step[2]) - Number(step[1]) + 1 : size
      count += Math.max(1, Math.ceil(span / Number(step[3])))
      continue
    }
    const range = /^(\d+)-(\d+)$/.exec(part)
    count += range ? Number(range[2]) - Number(range[1]) + 1 : 1 // a value, H or H(a-b): one run
  }
  return Math.min(count, size)
}

/** The expected gap between two runs of `schedule`, in ms. */
export function scheduleIntervalMs(schedule: string): number {
  const s = schedule.trim()
  if (MACROS[s] !== undefined) return MACROS[s]!
  const [minute = '*', hour = '*', dom = '*', month = '*', dow = '*'] = s.split(/\s+/)
  if (month !== '*') return 366 * DAY / valuesIn(month, 12)
  if (dom !== '*') return 31 * DAY / valuesIn(dom, 31)
  if (dow !== '*') return 7 * DAY / valuesIn(dow, 7)
  if (hour !== '*') return DAY / valuesIn(hour, 24)
  return HOUR / valuesIn(minute, 60)
}
