/**
 * `check`'s restore preflight: the same facts the service watches (preflight/view.ts), read once.
 */
import type { PreflightFacts } from '../decide/preflight.js'
import type { ResourceRef } from '../inflight/types.js'
import { RD_RESOURCE } from '../engines/volsync.js'
import { preflightWatchSpecs, snapshotClassFact, SNAPSHOT_CLASSES_SPEC_ID, storageClassFact, STORAGE_CLASSES_SPEC_ID, VOLUME_POPULATORS_SPEC_ID } from '../preflight/view.js'
import type { Reader } from './reader.js'

const spec = (id: string) => preflightWatchSpecs().find((s) => s.id === id)!
/** The resources whose group/versions `check` must discover for the preflight. */
export const PREFLIGHT_RESOURCES: ResourceRef[] = [STORAGE_CLASSES_SPEC_ID, SNAPSHOT_CLASSES_SPEC_ID, VOLUME_POPULATORS_SPEC_ID].map((id) => spec(id).resource)

/** The facts, or the error that kept them from being read (discovery or a LIST failed). */
export async function readPreflightFacts(reader: Reader, served: (r: ResourceRef) => boolean | Error): Promise<PreflightFacts | Error> {
  const installed = (id: string): boolean | Error => served(spec(id).resource)
  const rd = served(RD_RESOURCE)
  const [sc, vsc, vp] = [installed(STORAGE_CLASSES_SPEC_ID), installed(SNAPSHOT_CLASSES_SPEC_ID), installed(VOLUME_POPULATORS_SPEC_ID)]
  for (const v of [sc, vsc, vp, rd]) if (v instanceof Error) return v
  try {
    const storageClasses = sc ? (await reader.list(spec(STORAGE_CLASSES_SPEC_ID).resource, undefined)).map(storageClassFact) : []
    const snapshotClasses = vsc ? (await reader.list(spec(SNAPSHOT_CLASSES_SPEC_ID).resource, undefined)).map(snapshotClassFact) : []
    return { synced: true, volumePopulatorApi: vp === true, replicationDestinationApi: rd === true, volumeSnapshotApi: vsc === true, storageClasses, snapshotClasses }
  } catch (err) {
    return err as Error
  }
}
