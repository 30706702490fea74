/** A process's own resource use, from /proc (Linux). */
import { readFileSync } from 'node:fs'

/** Resident set size in MiB (VmRSS), and its peak (VmHWM). */
export function memoryOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rssMiB: kb('VmRSS') / 1024, peakMiB: kb('VmHWM') / 1024 }
}

const TICKS_PER_SECOND = 100 // USER_HZ on Linux

/** CPU time (user + system) the process has used, in ms. */
export function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may contain spaces; fields after its closing parenthesis are fixed.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  return ((utime + stime) * 1000) / TICKS_PER_SECOND
}

export function machine(): { cpu: string; cores: number; memGiB: number; kernel: string } {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')
  const cpu = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown'
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length
  const memKb = Number(/^MemTotal:\s+(\d+)/m.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1] ?? 0)
  const kernel = readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()
  return { cpu, cores, memGiB: Math.round(memKb / 1024 / 1024), kernel }
}

/** CPU time all processes of the machine have used (busy, not idle or iowait), in ms. */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  const busy = f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!
  return (busy * 1000) / TICKS_PER_SECOND
}
