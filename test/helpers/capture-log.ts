/** A pino logger whose lines are kept in memory, so tests can read what was logged. */
import { Writable } from 'node:stream'
import type { Logger } from 'pino'
import { createLogger } from '../../src/log.js'

export function captureLogger(level = 'info'): { logger: Logger; lines: () => Array<Record<string, any>>; text: () => string } {
  const chunks: string[] = []
  const stream = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(chunk.toString())
      cb()
    },
  })
  const logger = createLogger(level, stream)
  const text = () => chunks.join('')
  const lines = () => text().split('\n').filter(Boolean).map((l) => JSON.parse(l))
  return { logger, lines, text }
}
