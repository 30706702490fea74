/** The fields of a PersistentVolumeClaim that smart-restore reads. */

export interface TypedObjectReference {
  apiGroup?: string
  kind: string
  name: string
  namespace?: string
}

export interface PersistentVolumeClaim {
  apiVersion?: string
  kind?: string
  metadata: {
    name?: string
    generateName?: string
    namespace?: string
    uid?: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    [key: string]: unknown
  }
  spec: {
    accessModes?: string[]
    resources?: { requests?: Record<string, string>; limits?: Record<string, string> }
    storageClassName?: string | null
    volumeMode?: string
    volumeName?: string
    dataSource?: TypedObjectReference | null
    dataSourceRef?: TypedObjectReference | null
    [key: string]: unknown
  }
  status?: { phase?: string; [key: string]: unknown }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

const isStringMap = (v: unknown): boolean =>
  v === undefined || v === null || (isObject(v) && Object.values(v).every((x) => typeof x === 'string'))

/**
 * Narrow an admission request's object to a PVC, or say what is wrong with it.
 * The apiserver validated the object's schema already for real traffic; this guards hand-made bodies.
 */
export function asPersistentVolumeClaim(obj: unknown): { pvc: PersistentVolumeClaim } | { problem: string } {
  if (!isObject(obj)) return { problem: 'request.object is not an object' }
  if (obj.kind !== undefined && obj.kind !== 'PersistentVolumeClaim') return { problem: `request.object.kind is ${JSON.stringify(obj.kind)}, not PersistentVolumeClaim` }
  if (!isObject(obj.metadata)) return { problem: 'request.object.metadata is missing' }
  if (!isObject(obj.spec)) return { problem: 'request.object.spec is missing' }
  const md = obj.metadata
  if (md.name !== undefined && typeof md.name !== 'string') return { problem: 'metadata.name must be a string' }
  if (md.namespace !== undefined && md.namespace !== null && typeof md.namespace !== 'string') return { problem: 'metadata.namespace must be a string' }
  if (md.generateName !== undefined && md.generateName !== null && typeof md.generateName !== 'string') return { problem: 'metadata.generateName must be a string' }
  if (!isStringMap(md.labels)) return { problem: 'metadata.labels must map strings to strings' }
  if (!isStringMap(md.annotations)) return { problem: 'metadata.annotations must map strings to strings' }
  const spec = obj.spec
  if (spec.accessModes !== undefined && (!Array.isArray(spec.accessModes) || !spec.accessModes.every((m) => typeof m === 'string'))) {
    return { problem: 'spec.accessModes must be a list of strings' }
  }
  if (spec.resources !== undefined && !isObject(spec.resources)) return { problem: 'spec.resources must be an object' }
  if (isObject(spec.resources) && !isStringMap(spec.resources.requests)) return { problem: 'spec.resources.requests must map strings to quantities' }
  if (spec.storageClassName !== undefined && spec.storageClassName !== null && typeof spec.storageClassName !== 'string') {
    return { problem: 'spec.storageClassName must be a string' }
  }
  for (const field of ['dataSource', 'dataSourceRef'] as const) {
    const ref = spec[field]
    if (ref === undefined || ref === null) continue
    if (!isObject(ref) || typeof ref.kind !== 'string' || typeof ref.name !== 'string' || (ref.apiGroup !== undefined && ref.apiGroup !== null && typeof ref.apiGroup !== 'string')) {
      return { problem: `spec.${field} must be an object with string kind and name` }
    }
  }
  if (spec.volumeMode !== undefined && spec.volumeMode !== null && typeof spec.volumeMode !== 'string') return { problem: 'spec.volumeMode must be a string' }
  return { pvc: obj as unknown as PersistentVolumeClaim }
}
