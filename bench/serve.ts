/**
 * The benchmark's eyes inside the service's process. Not the service: bench/run.ts runs the service
 * exactly as the image does — `node <NODE_OPTIONS of the Deployment> dist/src/main.js`, the file
 * `npm run build` writes (scripts/build.mjs, built by the runner into bench/.build/service with the
 * same script and options) — and loads this module first, with `--import`
 * (built into bench/.build/helpers/serve.js the same way):
 *
 *   node --expose-gc --import bench/.build/helpers/serve.js bench/.build/service/src/main.js
 *
 * It imports nothing of the service and only node: builtins, and it answers the runner's questions
 * over the IPC channel (when forked): event-loop delay, memory (process, V8 heap spaces, code),
 * one full GC (--expose-gc: live data vs garbage, at the very end), CPU profiles of single
 * scenarios (BENCH_CPU_PROF=1), and `stop`, which sends the process SIGTERM: the service's own
 * shutdown (src/main.ts; the bench's config sets no shutdown delay).
 *
 * Without an IPC channel (spawned), BENCH_PROBE_EXIT_FILE names a file that gets the process's
 * memory as it exits: the runner uses it for "node alone" (an empty script) and "the service's
 * modules loaded" (dist/src/main.js with a configuration file that does not exist: every static
 * import is evaluated, then loadConfig stops the process with exit code 2, before anything starts).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { getHeapCodeStatistics, getHeapSpaceStatistics } from 'node:v8'
import type { Session } from 'node:inspector/promises'

export interface ProbeMemory {
  rss: number
  /** From /proc/self/status: anonymous memory (heap, malloc, stacks) and file-backed pages (the node binary, libraries). */
  rssAnon: number
  rssFile: number
  heapUsed: number
  heapTotal: number
  external: number
  arrayBuffers: number
  /** V8 heap spaces: bytes used / committed. */
  spaces: Record<string, { used: number; committed: number }>
  /** Bytecode and compiled code with their metadata, and the scripts' sources held outside the heap. */
  code: { bytecodeAndMetadata: number; codeAndMetadata: number; externalScriptSource: number }
}

export function probeMemory(): ProbeMemory {
  const m = process.memoryUsage()
  const status = readFileSync('/proc/self/status', 'utf8')
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024
  const spaces: ProbeMemory['spaces'] = {}
  for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = { used: s.space_used_size, committed: s.physical_space_size }
  const c = getHeapCodeStatistics()
  return {
    rss: m.rss,
    rssAnon: kb('RssAnon'),
    rssFile: kb('RssFile'),
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    spaces,
    code: { bytecodeAndMetadata: c.bytecode_and_metadata_size, codeAndMetadata: c.code_and_metadata_size, externalScriptSource: c.external_script_source_size },
  }
}

const exitFile = process.env.BENCH_PROBE_EXIT_FILE
if (exitFile) process.on('exit', () => writeFileSync(exitFile, JSON.stringify(probeMemory())))

if (process.send) {
  const send = (m: unknown) => process.send?.(m)
  const loop = monitorEventLoopDelay({ resolution: 1 })
  loop.enable()
  // CPU profiles of single scenarios (BENCH_CPU_PROF=1): the runner brackets a scenario with these.
  let profiler: Session | undefined
  const profile = async (m: { type: string; file?: string }): Promise<void> => {
    if (m.type === 'profile-start') {
      const { Session } = await import('node:inspector/promises')
      profiler = new Session()
      profiler.connect()
      await profiler.post('Profiler.enable')
      await profiler.post('Profiler.setSamplingInterval', { interval: 100 })
      await profiler.post('Profiler.start')
    } else if (profiler && m.file) {
      const { profile } = await profiler.post('Profiler.stop')
      writeFileSync(m.file, JSON.stringify(profile))
      profiler.disconnect()
      profiler = undefined
    }
    send({ type: m.type })
  }
  // The runner gone (killed, crashed): nothing is left running.
  process.on('disconnect', () => process.exit(0))
  process.on('message', (m: { type: string; file?: string }) => {
    if (m.type === 'profile-start' || m.type === 'profile-stop') {
      void profile(m)
    } else if (m.type === 'loop-reset') {
      loop.reset()
      send({ type: 'loop-reset' })
    } else if (m.type === 'gc') {
      // The runner starts the service with --expose-gc, only to tell live data from garbage at the end.
      ;(globalThis as { gc?: () => void }).gc?.()
      send({ type: 'gc', memory: probeMemory() })
    } else if (m.type === 'stats') {
      const ms = (ns: number) => ns / 1e6
      send({ type: 'stats', loop: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) }, memory: probeMemory() })
    } else if (m.type === 'stop') {
      // The service's own shutdown path (src/main.ts): drain, close, exit 0.
      process.kill(process.pid, 'SIGTERM')
    }
  })
  // The channel alone does not keep the process alive: the service does, or nothing does.
  process.channel?.unref()
}
