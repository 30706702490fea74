/** Real AdmissionReview bodies captured from kube-apiservers, read from ../shared (never copied). */
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const SHARED = join(here, '..', '..', '..', 'shared')
export const APISERVER_V132 = join(SHARED, 'fixtures', 'admission', 'kube-apiserver-v1.32')

/** The raw body, byte for byte as the apiserver sent it. */
export function fixtureBody(file: string): string {
  return readFileSync(join(APISERVER_V132, file), 'utf8')
}

export function fixtureReview(file: string): { apiVersion: string; kind: string; request: Record<string, any> } {
  return JSON.parse(fixtureBody(file))
}

/** The kubewarden capture (a validating-phase CREATE from another real cluster), wrapped as a review. */
export function kubewardenBody(): string {
  return readFileSync(join(SHARED, 'fixtures', 'admission', 'pvc-create.admissionreview.v1.wrapped-derived.json'), 'utf8')
}
