#!/usr/bin/env node
/**
 * The smart-restore CLI:
 *
 *   smart-restore check <namespace>/<pvc> [--json] [--config file]
 *   smart-restore status [--namespace ns] [--json] [--concurrency n] [--config file]
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
       smart-restore status [--namespace <ns>] [--json] [--concurrency <n>] [--config <file>]

check: what smart-restore would decide for a PVC right now, and why: if it were created now
(restore, fresh or denied, and the objects it would create), what the backup-source reconciler
would do, and whether a delete would be refused and by what in-flight backup or restore.

status: for every labelled PVC, whether it would come back if the cluster died now: its backup
source, its last backup, its restore point (the snapshot VolSync would restore, read from the
store) and a verdict against its tier (ok, late, none, new, unknown), and a summary line.

Options:
  --json            print the report as JSON (same content)
  -n, --namespace   status: only this namespace
  --concurrency <n> status: store probes at once (default 8)
  -c, --config <f>  the service's configuration file (default: $SMART_RESTORE_CONFIG; environment
                    variables override it as for the service, e.g. S3_ENDPOINT, S3_BUCKET)
  -h, --help        show this help

Kubernetes access: KUBECONFIG, or in-cluster credentials (~/.kube/config is not read by itself:
run with KUBECONFIG=~/.kube/config). Only GETs and LISTs are made; nothing is written.

Exit codes: 0 nothing needs attention; 1 something needs attention (check: see "Attention";
status: a PVC late, without backup, unknown or needing a human); 2 usage, configuration or
credentials error; 3 the PVC was not found or the API failed.
`

export interface RunIo {
  stdout: (text: string) => void
  stderr: (text: string) => void
  /** Whether stderr is a terminal (status prints its progress there then). */
  isTty?: () => boolean
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
        namespace: { type: 'string', short: 'n' },
        concurrency: { type: 'string' },
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
  if (command !== 'check' && command !== 'status') return usageError(io, `unknown command ${JSON.stringify(command)}`)
  let namespace: string
  let name = ''
  let concurrency = 8
  if (command === 'status') {
    if (rest.length) return usageError(io, `status takes no arguments (use --namespace), got ${rest.join(' ')}`)
    namespace = values.namespace ?? ''
    if (namespace && (!DNS1123_LABEL.test(namespace) || namespace.length > 63)) return usageError(io, `${JSON.stringify(namespace)} is not a namespace name`)
    if (values.concurrency !== undefined) {
      concurrency = Number(values.concurrency)
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) return usageError(io, `--concurrency must be an integer from 1 to 64, got ${JSON.stringify(values.concurrency)}`)
    }
  } else {
    if (values.namespace !== undefined || values.concurrency !== undefined) return usageError(io, 'check takes <namespace>/<pvc>; --namespace and --concurrency are for status')
    if (rest.length !== 1) return usageError(io, rest.length === 0 ? 'check needs <namespace>/<pvc>' : `check takes one <namespace>/<pvc>, got ${rest.length} arguments`)
    const target = rest[0]!
    const parts = target.split('/')
    if (parts.length !== 2 || !DNS1123_LABEL.test(parts[0]!) || parts[0]!.length > 63 || !DNS1123_SUBDOMAIN.test(parts[1]!) || parts[1]!.length > 253) {
      return usageError(io, `${JSON.stringify(target)} is not <namespace>/<pvc> (e.g. media/data-claim)`)
    }
    ;[namespace, name] = parts as [string, string]
  }

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
    if (command === 'status') {
      const [{ statusReport, statusExitCode }, { renderStatus }] = await Promise.all([import('./status.js'), import('./render-status.js')])
      // A progress line on a terminal for long runs; never in --json or when piped.
      const tty = io.isTty?.() === true && !values.json
      const report = await statusReport({
        kubeConfig: kube.kubeConfig,
        store,
        config,
        ...(namespace ? { namespace } : {}),
        concurrency,
        ...(tty ? { onProgress: (done: number, total: number) => io.stderr(`\r  reading the store: ${done}/${total} PVCs${done === total ? '\n' : ''}`) } : {}),
      })
      io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderStatus(report))
      return statusExitCode(report)
    }
    const report = await checkPvc({ kubeConfig: kube.kubeConfig, store, config, namespace, name })
    io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report))
    return exitCodeFor(report)
  } catch (err) {
    const kind = err instanceof CheckError ? err.kind : err instanceof Error && err.name === 'StatusError' ? 'api' : 'error'
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
  run(process.argv.slice(2), { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t), isTty: () => process.stderr.isTTY === true }).then(
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
