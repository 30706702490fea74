/**
 * `npm start`: load the configuration (a bad value stops here, naming the field), start the service,
 * and drain on SIGTERM/SIGINT.
 */
import { ConfigError, loadConfig } from './config/load.js'
import { createLogger } from './log.js'
import { startService } from './service.js'

async function main(): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`smart-restore: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  const logger = createLogger(config.logLevel)
  const service = await startService(config, { logger })
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    service.beginDrain()
    logger.info({ signal, delayMs: config.server.shutdownDelayMs }, 'shutting down: readiness false, finishing in-flight admissions')
    setTimeout(() => {
      service.close().then(
        () => {
          logger.info('stopped')
          process.exit(0)
        },
        (err: unknown) => {
          logger.error({ err }, 'error while stopping')
          process.exit(1)
        },
      )
    }, config.server.shutdownDelayMs)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

main().catch((err: unknown) => {
  process.stderr.write(`smart-restore: failed to start: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
