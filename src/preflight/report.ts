/**
 * Says what every restore needs and is missing, where a human looks: the log (once when the
 * watches have listed, then on every change), /readyz's details (without failing readiness:
 * unlabelled work and the deletion guard go on), and a metric. The admission itself asks the
 * pure preflight per PVC (webhook/mutate.ts).
 */
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import { clusterGaps, type PrerequisiteId } from '../decide/preflight.js'
import type { RestorePreflightView } from './view.js'

export interface PrerequisiteReport {
  /** undefined while the preflight watches sync. */
  gaps: Array<{ id: PrerequisiteId; text: string }> | undefined
  /** For /readyz's details. */
  check: string
}

export class PrerequisiteReporter {
  private timer: NodeJS.Timeout | undefined
  private last: string | undefined

  constructor(
    private readonly view: RestorePreflightView,
    private readonly config: Config,
    private readonly logger: Logger,
    // Cheap (a few cached objects), so often enough that the log follows the cluster closely.
    private readonly intervalMs = 2_000,
  ) {}

  report(): PrerequisiteReport {
    const facts = this.view.facts()
    if (!facts.synced) return { gaps: undefined, check: `not known yet: ${facts.unsyncedReason ?? 'syncing'} (restores wait, 503)` }
    const gaps = clusterGaps(facts, { configuredStorageClass: this.config.restore.storageClassName, volumeSnapshotClassName: this.config.restore.volumeSnapshotClassName })
    return { gaps, check: gaps.length ? `missing: ${gaps.map((g) => g.text).join('; ')} (restores are refused, 422)` : 'present' }
  }

  /** Log now and whenever the answer changes. */
  start(): void {
    const tick = () => {
      const { gaps } = this.report()
      if (gaps === undefined) return
      const key = gaps.map((g) => g.id).join(',')
      if (key === this.last) return
      const first = this.last === undefined
      this.last = key
      if (gaps.length) this.logger.warn({ missing: gaps.map((g) => g.text) }, 'restores cannot be populated: they are refused until what is missing is installed')
      else if (!first) this.logger.info('restore prerequisites are all present again')
      else this.logger.info('restore prerequisites present: volume populator, ReplicationDestination and VolumeSnapshot APIs')
    }
    tick()
    this.timer = setInterval(tick, this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
  }
}
