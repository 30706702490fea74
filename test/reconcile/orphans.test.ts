/**
 * findOrphanRestores: which restore RDs the sweep may delete — only smart-restore's, unowned, past
 * the grace period, whose PVC does not exist — row by row.
 */
import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { defaultConfig } from '../../src/config/schema.js'
import type { KubeObject } from '../../src/inflight/types.js'
import { findOrphanRestores, isOurRestoreDestination } from '../../src/reconcile/orphans.js'

const config = validateConfig(structuredClone(defaultConfig))
const NOW = Date.parse('2026-11-22T06:00:00Z')
const minutesAgo = (m: number) => new Date(NOW - m * 60_000).toISOString()

function rd(name: string, over: { pvc?: string; labels?: Record<string, string>; created?: string; owners?: KubeObject['metadata']['ownerReferences']; deleting?: boolean; trigger?: string; namespace?: string } = {}): KubeObject {
  const pvc = over.pvc ?? name.replace(/-restore$/, '')
  return {
    apiVersion: 'volsync.backube/v1alpha1',
    kind: 'ReplicationDestination',
    metadata: {
      name,
      namespace: over.namespace ?? 'media',
      uid: `uid-${name}`,
      creationTimestamp: over.created ?? minutesAgo(11),
      labels: over.labels ?? { 'app.kubernetes.io/managed-by': 'smart-restore', 'smart-restore.io/pvc': pvc },
      annotations: { 'smart-restore.io/pvc': pvc },
      ...(over.owners ? { ownerReferences: over.owners } : {}),
      ...(over.deleting ? { deletionTimestamp: minutesAgo(1) } : {}),
    },
    spec: { trigger: { manual: over.trigger ?? 'smart-restore' } },
  }
}

t.test('only unowned restores of ours, past the grace period, whose PVC does not exist', async (t) => {
  t.equal(config.reconciler.orphanGraceMs, 10 * 60_000, 'default grace: 10 min')
  const existing = new Set(['media/has-pvc'])
  const rds = [
    rd('orphan-restore'),
    rd('young-restore', { created: minutesAgo(9) }),
    rd('exactly-grace-restore', { created: minutesAgo(10) }),
    rd('has-pvc-restore'),
    rd('owned-restore', { owners: [{ apiVersion: 'v1', kind: 'PersistentVolumeClaim', name: 'owned', uid: 'u' }] }),
    rd('foreign-restore', { labels: { 'app.kubernetes.io/managed-by': 'argocd' } }),
    rd('unlabelled-restore', { labels: {} }),
    rd('other-trigger-restore', { trigger: 'manual-1' }),
    rd('deleting-restore', { deleting: true }),
    rd('excluded-restore', { namespace: 'kube-system' }),
    rd('no-time-restore', { created: 'not a time' }),
    { ...rd('long-name-restore', { pvc: 'a'.repeat(80) }), metadata: { ...rd('long-name-restore').metadata, labels: { 'app.kubernetes.io/managed-by': 'smart-restore' }, annotations: { 'smart-restore.io/pvc': 'a'.repeat(80) } } },
  ]
  const found = findOrphanRestores(rds, (ns, name) => existing.has(`${ns}/${name}`), NOW, config)
  t.same(
    found.map((o) => [o.name, o.pvc, o.uid, Math.round(o.ageMs / 60_000)]),
    [
      ['orphan-restore', 'orphan', 'uid-orphan-restore', 11],
      ['exactly-grace-restore', 'exactly-grace', 'uid-exactly-grace-restore', 10],
      ['long-name-restore', 'a'.repeat(80), 'uid-long-name-restore', 11],
    ],
  )
  t.ok(isOurRestoreDestination(rds[0]!, config))
  t.notOk(isOurRestoreDestination(rds[5]!, config), 'a foreign RD is never ours')
  t.notOk(isOurRestoreDestination(rds[7]!, config), 'nor one with another trigger (not a restore of ours)')
})
