/**
 * AdmissionReview bodies for the load: the real kube-apiserver v1.32 captures from
 * ../shared/fixtures, with the PVC's name, namespace and the request uid varied per request so that
 * the probe cache cannot answer for S3 and every DELETE asks about another PVC.
 *
 * A template is the fixture serialised once with markers in place of the varied fields, split on
 * them; a body is the parts joined with the values of request number n. Workers get the template (plain
 * data) and build bodies themselves.
 */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const FIXTURES = join(here, '..', '..', '..', 'shared', 'fixtures', 'admission', 'kube-apiserver-v1.32')

export function fixture(file: string): { apiVersion: string; kind: string; request: Record<string, any> } {
  return JSON.parse(readFileSync(join(FIXTURES, file), 'utf8'))
}

const MARK = { name: '@@NAME@@', namespace: '@@NS@@', uid: '@@UID@@' } as const
type Field = keyof typeof MARK

/** How request number n is named. */
export interface Naming {
  /** `${prefix}${n}`; with `modulo`, n wraps (DELETEs cycle over the preloaded PVCs). */
  prefix: string
  modulo?: number
  /** Fixed namespace, or `${namespacePrefix}${n % namespaceCount}` (zero-padded to 2 digits). */
  namespace?: string
  namespacePrefix?: string
  namespaceCount?: number
  /** Every request names the same PVC (`prefix` itself): the burst. */
  same?: boolean
}

export interface BodyTemplate {
  /** Literal parts, with `fields[i]` between parts[i] and parts[i+1]. */
  parts: string[]
  fields: Field[]
  naming: Naming
}

export const pad = (n: number, width: number) => String(n).padStart(width, '0')

/** The PVC name and namespace of request n. */
export function nameOf(naming: Naming, n: number): { name: string; namespace: string } {
  const i = naming.modulo ? n % naming.modulo : n
  const name = naming.same ? naming.prefix : `${naming.prefix}${naming.modulo ? pad(i, String(naming.modulo - 1).length) : i}`
  const namespace = naming.namespace ?? `${naming.namespacePrefix ?? 'ns-'}${pad(i % (naming.namespaceCount ?? 1), 2)}`
  return { name, namespace }
}

export function uidOf(n: number): string {
  return `0b5e1c2a-7d3f-4c55-9a1e-${pad(n % 1e12, 12)}`
}

/**
 * A template from a fixture: `edit` changes the parsed review (e.g. removes the label); then
 * request.uid/name/namespace and the PVC's metadata name/namespace become markers.
 */
export function makeTemplate(file: string, naming: Naming, edit: (review: { request: Record<string, any> }) => void = () => {}): BodyTemplate {
  const review = fixture(file)
  edit(review)
  const req = review.request
  req.uid = MARK.uid
  req.name = MARK.name
  req.namespace = MARK.namespace
  for (const obj of [req.object, req.oldObject]) {
    if (obj?.metadata) {
      obj.metadata.name = MARK.name
      obj.metadata.namespace = MARK.namespace
    }
  }
  const text = JSON.stringify(review)
  const parts: string[] = []
  const fields: Field[] = []
  const re = /@@(NAME|NS|UID)@@/g
  let last = 0
  for (const m of text.matchAll(re)) {
    parts.push(text.slice(last, m.index))
    fields.push(m[1] === 'NAME' ? 'name' : m[1] === 'NS' ? 'namespace' : 'uid')
    last = (m.index ?? 0) + m[0].length
  }
  parts.push(text.slice(last))
  return { parts, fields, naming }
}

/** The body of request n. */
export function render(t: BodyTemplate, n: number): string {
  const { name, namespace } = nameOf(t.naming, n)
  const uid = uidOf(n)
  let out = t.parts[0]!
  for (let i = 0; i < t.fields.length; i++) {
    const f = t.fields[i]!
    out += (f === 'name' ? name : f === 'namespace' ? namespace : uid) + t.parts[i + 1]!
  }
  return out
}

/** A fixture body unchanged but for `edit` (constant: the same bytes every request). */
export function constantBody(file: string, edit: (review: { request: Record<string, any> }) => void = () => {}): string {
  const review = fixture(file)
  edit(review)
  return JSON.stringify(review)
}
