/** The report's tables: markdown for bench/RESULTS.md, aligned text for the terminal. */

export function markdownTable(h: string[], body: string[][]): string {
  return [`| ${h.join(' | ')} |`, `|${h.map(() => '---').join('|')}|`, ...body.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

export function textTable(h: string[], body: string[][]): string {
  const widths = h.map((c, i) => Math.max(c.length, ...body.map((r) => r[i]!.length)))
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
  return [line(h), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n')
}
