#!/usr/bin/env node
/**
 * The smart-restore CLI. One command for now:
 *
 *   smart-restore check <namespace>/<pvc> [--json] [--config file]
 *
 * Argument parsing, configuration, credentials and output live here; the check itself is
 * src/cli/check.ts (no process.exit there), so tests run it in-process.
 */
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { Config } from '../config/schema.js'
import { DNS1123_LABEL, DNS1123_SUBDOMAIN } from '../engines/name-syntax.js'

/** Exit codes (README, "CLI"). */
export const EXIT = {
  /** The check ran and nothing needs attention. */
  ok: 0,
  /** The check ran and something needs a human: a CREATE would be denied, the reconciler refuses or cannot check the store, the in-flight check is incomplete, ... */
  attention: 1,
  /** Usage, configuration or credentials error: nothing was checked. */
  usage: 2,
  /** The check could not be done: the PVC does not exist, or the Kubernetes API failed. */
  failed: 3,
} as const

export const USAGE = `Usage: smart-restore check <namespace>/<pvc> [--json] [--config <file>]

What smart-restore would decide for a PVC right now, and why: if it were created now (restore,
fresh or denied, and the objects it would create), what the backup-source reconciler would do, and
whether a delete would be refused and by what in-flight backup or restore.

Options:
  --json            print the report as JSON (same content)
  -c, --config <f>  the service's configuration file (default: $SMART_RESTORE_CONFIG; environment
                    variables override it as for the service, e.g. S3_ENDPOINT, S3_BUCKET)
  -h, --help        show this help

Kubernetes access: KUBECONFIG, or in-cluster credentials (~/.kube/config is not read by itself:
run with KUBECONFIG=~/.kube/config). Only GETs and LISTs are made; nothing is written.

Exit codes: 0 nothing needs attention; 1 something needs attention (see "Attention");
2 usage, configuration or credentials error; 3 the PVC was not found or the API failed.
`

export interface RunIo {
  stdout: (text: string) => void
  stderr: (text: string) => void
  env?: NodeJS.ProcessEnv
}


function usageError(io: RunIo, message: string): number {
  io.stderr(`smart-restore: ${message}\n\n${USAGE}`)
  return EXIT.usage
}

/** Runs the CLI with `argv` (without node and the script); resolves with the exit code. */
export async function run(argv: string[], io: RunIo): Promise<number> {
  const env = io.env ?? process.env
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean' },
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    })
  } catch (err) {
    return usageError(io, (err as Error).message)
  }
  const { values, positionals } = parsed
  const [command, ...rest] = positionals
  if (values.help || command === 'help') {
    io.stdout(USAGE)
    return EXIT.ok
  }
  if (command === undefined) return usageError(io, 'a command is required')
  if (command !== 'check') return usageError(io, `unknown command ${JSON.stringify(command)}`)
  if (rest.length !== 1) return usageError(io, rest.length === 0 ? 'check needs <namespace>/<pvc>' : `check takes one <namespace>/<pvc>, got ${rest.length} arguments`)
  const target = rest[0]!
  const parts = target.split('/')
  if (parts.length !== 2 || !DNS1123_LABEL.test(parts[0]!) || parts[0]!.length > 63 || !DNS1123_SUBDOMAIN.test(parts[1]!) || parts[1]!.length > 253) {
    return usageError(io, `${JSON.stringify(target)} is not <namespace>/<pvc> (e.g. media/data-claim)`)
  }
  const [namespace, name] = parts as [string, string]

  // Loaded only now: the Kubernetes client and the AWS SDK take a while, and --help must not wait.
  const [{ ConfigError, loadConfig }, { kubeConfigFromEnvironment }, { createBackupStore, passwordSourceFor }, { CheckError, checkPvc, exitCodeFor }, { renderReport }] = await Promise.all([
    import('../config/load.js'),
    import('../kube/config.js'),
    import('../storage/index.js'),
    import('./check.js'),
    import('./render.js'),
  ])

  let config: Config
  try {
    config = loadConfig({ file: values.config, env })
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr(`smart-restore: ${err.message}\n`)
      return EXIT.usage
    }
    throw err
  }

  let kube
  try {
    kube = kubeConfigFromEnvironment({ env })
  } catch (err) {
    io.stderr(`smart-restore: ${(err as Error).message}\n`)
    return EXIT.usage
  }
  if (!kube) {
    io.stderr('smart-restore: no Kubernetes credentials: set KUBECONFIG (e.g. KUBECONFIG=~/.kube/config), or run in a pod\n')
    return EXIT.usage
  }

  // The repository password, as the service reads it: store.passwordFile, else RESTIC_PASSWORD of
  // the source Secret with the caller's own rights (no right to read it: the store says "cannot tell").
  const { ClusterClient } = await import('../kube/cluster-client.js')
  const { passwordFromSecret } = await import('../storage/secret-password.js')
  const client = new ClusterClient(kube.kubeConfig, { requestTimeoutMs: config.kube.requestTimeoutMs, fieldManager: 'smart-restore-check' })
  const fromSecret = passwordFromSecret({ ...config.restore.sourceSecret, readSecretData: (ns, n) => client.readSecretData(ns, n) })
  const store = createBackupStore(config.store, { password: passwordSourceFor(config, fromSecret) })
  try {
    const report = await checkPvc({ kubeConfig: kube.kubeConfig, store, config, namespace, name })
    io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report))
    return exitCodeFor(report)
  } catch (err) {
    const kind = err instanceof CheckError ? err.kind : 'error'
    const message = err instanceof Error ? err.message : String(err)
    if (values.json) io.stdout(`${JSON.stringify({ error: { kind, message } }, null, 2)}\n`)
    io.stderr(`smart-restore: ${message}\n`)
    return EXIT.failed
  } finally {
    store.close()
  }
}

function isEntry(): boolean {
  const script = process.argv[1]
  if (!script) return false
  try {
    // npm's bin is a symlink to this file.
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url))
  } catch {
    return false
  }
}

if (isEntry()) {
  run(process.argv.slice(2), { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) }).then(
    (code) => {
      // Exit once the output is flushed; idle keep-alive sockets must not hold the process.
      process.stdout.write('', () => process.exit(code))
    },
    (err: unknown) => {
      process.stderr.write(`smart-restore: ${(err as Error).stack ?? String(err)}\n`)
      process.exit(EXIT.failed)
    },
  )
}
