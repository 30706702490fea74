/** The service's pino logger. Secret values never reach a log line: known fields are redacted. */
import { pino, type Logger, type DestinationStream } from 'pino'

export const REDACT_PATHS = [
  'secretAccessKey',
  '*.secretAccessKey',
  '*.*.secretAccessKey',
  '*.*.*.secretAccessKey',
  'stringData',
  '*.stringData',
  'data',
  '*.data',
  'RESTIC_PASSWORD',
  '*.RESTIC_PASSWORD',
  'AWS_SECRET_ACCESS_KEY',
  '*.AWS_SECRET_ACCESS_KEY',
  'req.headers.authorization',
  'headers.authorization',
]

/**
 * pino's isoTime (`new Date().toISOString()` per line) costs ~5 % of a pass-through admission. The
 * same string, built from a prefix made once per second: `,"time":"2026-11-22T07:51:28.191Z"`.
 */
export function isoTimeCached(): () => string {
  let second = -1
  let prefix = ''
  return () => {
    const now = Date.now()
    const s = Math.floor(now / 1000)
    if (s !== second) {
      second = s
      prefix = `,"time":"${new Date(s * 1000).toISOString().slice(0, 20)}`
    }
    const ms = now - s * 1000
    return `${prefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`
  }
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'smart-restore' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: isoTimeCached(),
    },
    destination,
  )
}
