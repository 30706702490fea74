/** Percentiles of raw samples (exact, by sorting: the runs are short). */
export function percentiles(samples: ArrayLike<number>, ps: number[]): number[] {
  const sorted = Float64Array.from(samples).sort()
  if (sorted.length === 0) return ps.map(() => NaN)
  return ps.map((p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!)
}

export function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return '–'
  return n.toFixed(digits)
}

export function fmtInt(n: number): string {
  if (!Number.isFinite(n)) return '–'
  return Math.round(n).toLocaleString('en-US')
}
