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

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'smart-restore' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  )
}
