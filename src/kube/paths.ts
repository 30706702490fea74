/** Where the API serves a resource, and how messages and logs name it: one spelling for every module. */

interface GroupVersion {
  group: string // '' for the core group
  version: string
}

/** `/api/v1`, `/apis/volsync.backube/v1alpha1`. */
export const groupVersionPath = (r: GroupVersion): string => (r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`)

/** An apiVersion: `v1`, `volsync.backube/v1alpha1`. */
export const apiVersionOf = (r: GroupVersion): string => (r.group ? `${r.group}/${r.version}` : r.version)

/** The cluster-wide collection: `/api/v1/persistentvolumeclaims`. */
export const collectionPath = (r: GroupVersion & { plural: string }): string => `${groupVersionPath(r)}/${r.plural}`

/** `persistentvolumeclaims/v1`, `replicationsources.volsync.backube/v1alpha1`. */
export const describeResource = (r: GroupVersion & { plural: string }): string => (r.group ? `${r.plural}.${r.group}/${r.version}` : `${r.plural}/${r.version}`)

/** The HTTP status of a failed request, whichever field the error carries it in. */
export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown } | null
  if (typeof e?.statusCode === 'number') return e.statusCode
  if (typeof e?.code === 'number') return e.code
  return undefined
}
