/**
 * store.s3.caBundle reaches the movers: every ReplicationDestination and ReplicationSource
 * smart-restore writes carries restic.customCA pointing at the per-PVC repository Secret, which
 * carries the PEM under its own key. Without a caBundle nothing of it appears.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { loadConfig } from '../../src/config/load.js'
import { buildRepositorySecret, buildReplicationDestination, buildReplicationSource, CUSTOM_CA_KEY, usesCustomCa } from '../../src/engines/volsync.js'
import type { PvcState } from '../../src/reconcile/types.js'

const dir = mkdtempSync(join(tmpdir(), 'custom-ca-'))
const PEM = '-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n'
const caFile = join(dir, 'ca.pem')
writeFileSync(caFile, PEM)

const plain = loadConfig({ env: { SMART_RESTORE_STORE: 's3', S3_BUCKET: 'backups' } })
const withCa = loadConfig({ env: { SMART_RESTORE_STORE: 's3', S3_BUCKET: 'backups', S3_ENDPOINT: 'https://truenas.lan:9000', S3_CA_BUNDLE: caFile } })

const pvcObject = { apiVersion: 'v1', kind: 'PersistentVolumeClaim', metadata: { name: 'data-claim', namespace: 'media' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } } as any
const pvcState: PvcState = { namespace: 'media', name: 'data-claim', uid: 'u1', labels: { backup: 'hourly' }, annotations: {}, phase: 'Bound', storageClassName: 'standard', accessModes: ['ReadWriteOnce'], capacity: '1Gi' }

function rd(config: typeof plain, repositorySecret = 'data-claim-restic') {
  return buildReplicationDestination({ config, pvc: pvcObject, namespace: 'media', pvcName: 'data-claim', name: 'data-claim-restore', repositorySecret, location: 's3://backups/media/data-claim', options: {} })
}

t.test('without store.s3.caBundle: no customCA anywhere, no CA key in the Secret', async (t) => {
  t.equal(usesCustomCa(plain), false)
  t.notOk('customCA' in rd(plain).spec.restic)
  t.notOk('customCA' in (buildReplicationSource({ config: plain, pvc: pvcState, tier: 'hourly', name: 'data-claim-backup', repositorySecret: 'data-claim-restic' }).spec as any).restic)
  const secret = buildRepositorySecret({ config: plain, namespace: 'media', pvcName: 'data-claim', name: 'data-claim-restic', resticRepository: 's3:s3.amazonaws.com/backups/media/data-claim', sourceData: { RESTIC_PASSWORD: 'x' } })
  t.same(Object.keys(secret.stringData).sort(), ['RESTIC_PASSWORD', 'RESTIC_REPOSITORY'])
})

t.test('with store.s3.caBundle: RD, RS and the per-PVC Secret agree on the CA', async (t) => {
  t.equal(usesCustomCa(withCa), true)
  t.same(rd(withCa).spec.restic.customCA, { secretName: 'data-claim-restic', key: CUSTOM_CA_KEY })
  t.same(rd(withCa, 'data-claim-restic-0a1b2c3d').spec.restic.customCA, { secretName: 'data-claim-restic-0a1b2c3d', key: CUSTOM_CA_KEY }, 'a restore-from Secret names itself')
  const rs = buildReplicationSource({ config: withCa, pvc: pvcState, tier: 'hourly', name: 'data-claim-backup', repositorySecret: 'data-claim-restic' })
  t.same((rs.spec as any).restic.customCA, { secretName: 'data-claim-restic', key: CUSTOM_CA_KEY })
  const secret = buildRepositorySecret({ config: withCa, namespace: 'media', pvcName: 'data-claim', name: 'data-claim-restic', resticRepository: 's3:https://truenas.lan:9000/backups/media/data-claim', sourceData: { RESTIC_PASSWORD: 'x' }, caBundle: PEM })
  t.equal(secret.stringData[CUSTOM_CA_KEY], PEM)
  t.equal(CUSTOM_CA_KEY, 'smart-restore-ca.crt')
})

t.test("customCA is what VolSync's CRDs accept: secretName and key, both strings", async (t) => {
  for (const kind of ['replicationdestinations', 'replicationsources']) {
    const crd = parseAllDocuments(readFileSync(`../shared/fixtures/volsync/crds/volsync.backube_${kind}.yaml`, 'utf8'))[0]!.toJS()
    const schema = crd.spec.versions[0].schema.openAPIV3Schema.properties.spec.properties.restic.properties.customCA
    t.same(Object.keys(schema.properties).sort(), ['configMapName', 'key', 'secretName'], kind)
    t.equal(schema.properties.secretName.type, 'string')
    t.equal(schema.properties.key.type, 'string')
  }
})
