/**
 * The service under load, in its own process (bench/run.ts compiles it into bench/.build and forks it),
 * so that its RSS and CPU are its own and the load generator does not share its event loop.
 *
 * What `npm start` runs (src/main.ts), without the signal handling: the configuration from
 * SMART_RESTORE_CONFIG and the environment, the pino logger at the configured level on stdout (the
 * runner points stdout at a file and reads the per-admission lines), startService. Then it reports
 * its URL and CA over the IPC channel, and answers the runner's questions about its event loop.
 */
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector/promises'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { loadConfig } from '../src/config/load.js'
import { createLogger } from '../src/log.js'
import { startService } from '../src/service.js'

// Every module is loaded (static imports run first): what the code alone costs, before any state.
const rssAfterImports = process.memoryUsage().rss
const send = (m: unknown) => process.send?.(m)
const config = loadConfig()
const logger = createLogger(config.logLevel)
const service = await startService(config, { logger })
const loop = monitorEventLoopDelay({ resolution: 1 })
loop.enable()

send({ type: 'ready', url: service.url, port: service.port, caCert: service.caCert, mode: service.mode, metricsUrl: service.metricsUrl, pid: process.pid, rssAfterImports })

// CPU profiles of single scenarios (BENCH_CPU_PROF=1): the runner brackets a scenario with these.
let profiler: Session | undefined
async function profile(m: { type: string; file?: string }): Promise<void> {
  if (m.type === 'profile-start') {
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
    const mem = process.memoryUsage()
    send({ type: 'gc', memory: { rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external, arrayBuffers: mem.arrayBuffers } })
  } else if (m.type === 'stats') {
    const ms = (ns: number) => ns / 1e6
    const mem = process.memoryUsage()
    send({
      type: 'stats',
      loop: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) },
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, heapTotal: mem.heapTotal, external: mem.external, arrayBuffers: mem.arrayBuffers },
    })
  } else if (m.type === 'stop') {
    service.close().then(
      () => process.exit(0),
      () => process.exit(1),
    )
  }
})
