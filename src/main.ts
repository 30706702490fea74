/**
 * `npm start`: load the configuration (a bad value stops here, naming the field), start the service,
 * and drain on SIGTERM/SIGINT: readiness false → `server.shutdownDelayMs` still serving → close the
 * listener, finish in-flight admissions → exit 0 (exit 1 if that hangs).
 */
import { ConfigError, loadConfig } from './config/load.js'
import { createLogger } from './log.js'
import { startService } from './service.js'

/**
 * After the shutdown delay, how long closing may take before the process gives up and exits 1:
 * admissions in flight end within their budget (the webhook timeout, 10 s by default), then the
 * watches and the reconciler stop. The Deployment's grace period covers preStop + delay + this.
 */
const SHUTDOWN_GRACE_AFTER_DELAY_MS = 15_000

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
    // 1. Readiness false at once: the endpoints controller drops the pod and kube-proxy stops
    //    routing new connections here. Everything that still arrives is answered
    //    (never a 503), with Connection: close so keep-alive connections move to other replicas.
    service.beginDrain()
    const delayMs = config.server.shutdownDelayMs
    const deadlineMs = delayMs + SHUTDOWN_GRACE_AFTER_DELAY_MS
    logger.info({ signal, delayMs, deadlineMs }, 'shutting down: readiness false, still answering admissions')
    // A hang (a stuck connection, a handler ignoring its deadline) must not outlive the pod's grace
    // period silently: exit 1, with a log line saying so, before the kubelet's SIGKILL.
    setTimeout(() => {
      logger.error({ deadlineMs }, 'shutdown did not finish in time; exiting')
      process.exit(1)
    }, deadlineMs).unref()
    // 2. After the delay: stop listening, finish the admissions in flight, close the connections.
    setTimeout(() => {
      logger.info('closing the listener; finishing admissions in flight')
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
    }, delayMs)
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

main().catch((err: unknown) => {
  process.stderr.write(`smart-restore: failed to start: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
