/** Kubernetes' syntax for names and label keys (apimachinery's validation), in one place. */

/** RFC 1123 label: namespaces, tier names, rule ids (also at most 63 characters, checked by callers). */
export const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** RFC 1123 subdomain: object names such as a PVC's, API groups (at most 253 characters). */
export const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

/** A label (or annotation) key: an optional DNS subdomain prefix and `/`, then the name. */
export const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/
