/**
 * The DR-readiness metrics, read from the refresher's view at scrape time. Per PVC (labels
 * namespace, pvc, tier) unless metrics.perPvc is false; per tier always, so alerts work either way.
 * The names are the contract of deploy/monitoring/ (alerts and dashboard).
 */
import { Gauge, type Registry } from 'prom-client'
import type { Config } from '../config/schema.js'
import { VERDICTS } from './assess.js'
import { scheduleIntervalMs } from './interval.js'
import type { ReadinessView } from './refresher.js'

export function registerReadinessMetrics(registry: Registry, config: Config, view: () => ReadinessView | undefined): void {
  const registers = [registry]
  const perPvc = config.metrics.perPvc
  const tiers = Object.keys(config.tiers)
  const labelsOf = (r: { namespace: string; name: string; tier: string }) => ({ namespace: r.namespace, pvc: r.name, tier: r.tier })

  if (perPvc) {
    new Gauge({
      name: 'smart_restore_pvc_readiness',
      help: `Would the PVC come back now: 1 for its state (${VERDICTS.join(', ')}), 0 for the others.`,
      labelNames: ['namespace', 'pvc', 'tier', 'state'],
      registers,
      collect() {
        this.reset()
        for (const r of view()?.rows ?? []) for (const state of VERDICTS) this.set({ ...labelsOf(r), state }, r.verdict === state ? 1 : 0)
      },
    })
    new Gauge({
      name: 'smart_restore_pvc_restore_point_timestamp_seconds',
      help: 'When the snapshot VolSync would restore now was taken (Unix seconds); absent without one.',
      labelNames: ['namespace', 'pvc', 'tier'],
      registers,
      collect() {
        this.reset()
        for (const r of view()?.rows ?? []) if (r.restorePoint) this.set(labelsOf(r), Date.parse(r.restorePoint.time) / 1000)
      },
    })
    new Gauge({
      name: 'smart_restore_pvc_last_backup_timestamp_seconds',
      help: "The PVC's ReplicationSource status.lastSyncTime (Unix seconds); absent when it never synced.",
      labelNames: ['namespace', 'pvc', 'tier'],
      registers,
      collect() {
        this.reset()
        for (const r of view()?.rows ?? []) if (r.lastBackup) this.set(labelsOf(r), Date.parse(r.lastBackup.time) / 1000)
      },
    })
    new Gauge({
      name: 'smart_restore_pvc_attention',
      help: 'Whether the PVC needs a human (smart-restore.io/attention set, or a foreign ReplicationSource).',
      labelNames: ['namespace', 'pvc', 'tier'],
      registers,
      collect() {
        this.reset()
        for (const r of view()?.rows ?? []) this.set(labelsOf(r), r.attention.length ? 1 : 0)
      },
    })
  }
  new Gauge({
    name: 'smart_restore_pvcs',
    help: 'Labelled PVCs per tier and readiness state.',
    labelNames: ['tier', 'state'],
    registers,
    collect() {
      const v = view()
      this.reset()
      if (!v) return
      for (const tier of tiers) for (const state of VERDICTS) this.set({ tier, state }, 0)
      for (const r of v.rows) this.inc({ tier: r.tier, state: r.verdict })
    },
  })
  new Gauge({
    name: 'smart_restore_pvcs_attention',
    help: 'Labelled PVCs per tier that need a human.',
    labelNames: ['tier'],
    registers,
    collect() {
      const v = view()
      this.reset()
      if (!v) return
      for (const tier of tiers) this.set({ tier }, 0)
      for (const r of v.rows) if (r.attention.length) this.inc({ tier: r.tier })
    },
  })
  new Gauge({
    name: 'smart_restore_tier_interval_seconds',
    help: "How often a tier backs up (from its schedule); a restore point older than twice this is late.",
    labelNames: ['tier'],
    registers,
    collect() {
      this.reset()
      for (const tier of tiers) this.set({ tier }, scheduleIntervalMs(config.tiers[tier]!.schedule) / 1000)
    },
  })
  new Gauge({
    name: 'smart_restore_readiness_refresh_timestamp_seconds',
    help: 'When the readiness view last finished a full period (every labelled PVC looked at once); 0 before the first.',
    registers,
    collect() {
      const at = view()?.lastRefreshMs
      this.reset()
      if (at !== undefined) this.set(at / 1000)
    },
  })
  new Gauge({
    name: 'smart_restore_readiness_refresh_duration_seconds',
    help: 'Time spent reading the store during the last full period, summed over its slots.',
    registers,
    collect() {
      const ms = view()?.lastRefreshProbeMs
      this.reset()
      if (ms !== undefined) this.set(ms / 1000)
    },
  })
}
