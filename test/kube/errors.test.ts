import t from 'tap'
import { ApiException } from '@kubernetes/client-node'
import { KubeApiError, toKubeApiError } from '../../src/kube/errors.js'

const status = (code: number, reason: string, message: string) => JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', code, reason, message })
const apiError = (code: number, body: unknown) => new ApiException(code, 'Unknown API Status Code!', body, { 'content-type': 'application/json', authorization: 'Bearer leak' })

t.test('ApiException → kind, status, reason and the Status message', async (t) => {
  const cases: Array<[number, string, string]> = [
    [400, 'BadRequest', 'invalid'],
    [401, 'Unauthorized', 'unauthorized'],
    [403, 'Forbidden', 'forbidden'],
    [404, 'NotFound', 'not-found'],
    [409, 'AlreadyExists', 'conflict'],
    [409, 'Conflict', 'conflict'],
    [422, 'Invalid', 'invalid'],
    [429, 'TooManyRequests', 'server'],
    [500, 'InternalError', 'server'],
    [503, 'ServiceUnavailable', 'server'],
    [504, 'Timeout', 'timeout'],
  ]
  for (const [code, reason, kind] of cases) {
    const e = toKubeApiError(apiError(code, status(code, reason, `the ${reason} message`)), 'create', 'Secret media/x')
    t.ok(e instanceof KubeApiError)
    t.equal(e.kind, kind, `${code} ${reason}`)
    t.equal(e.status, code)
    t.equal(e.reason, reason)
    t.equal(e.object, 'Secret media/x')
    t.equal(e.message, `create Secret media/x: ${kind} (HTTP ${code} ${reason}): the ${reason} message`)
    t.notMatch(e.message, 'leak', 'response headers are never part of the message')
  }
})

t.test('bodies that are not a Status', async (t) => {
  t.equal(toKubeApiError(new ApiException(401, 'Unauthorized', undefined, {}), 'read', 'Secret a/b').message, 'read Secret a/b: unauthorized (HTTP 401): Unauthorized')
  t.equal(toKubeApiError(apiError(502, '<html>bad gateway</html>'), 'read', 'Secret a/b').message, 'read Secret a/b: server (HTTP 502): no Status message')
  t.equal(toKubeApiError(apiError(500, { message: 'already parsed' }), 'read', 'Secret a/b').message, 'read Secret a/b: server (HTTP 500): already parsed')
})

t.test('fetch errors, aborts and the unknown', async (t) => {
  const fetchError = Object.assign(new Error('request to http://10.0.0.1/api/v1/namespaces/a/secrets/b failed, reason: connect EHOSTUNREACH'), { name: 'FetchError', type: 'system', code: 'EHOSTUNREACH' })
  const net = toKubeApiError(fetchError, 'read', 'Secret a/b')
  t.match(net, { kind: 'network', retryable: true, status: undefined })
  t.equal(net.message, 'read Secret a/b: network error (EHOSTUNREACH): request to http://10.0.0.1/api/v1/namespaces/a/secrets/b failed, reason: connect EHOSTUNREACH')

  const abort = Object.assign(new Error('The user aborted a request.'), { name: 'AbortError', type: 'aborted' })
  t.match(toKubeApiError(abort, 'read', 'Secret a/b', { timeoutMs: 250 }), { kind: 'timeout', message: 'read Secret a/b: timeout: the Kubernetes API did not answer within 250 ms' })

  const odd = toKubeApiError(new TypeError('x is not a function'), 'read', 'Secret a/b')
  t.match(odd, { kind: 'server', retryable: false, message: 'read Secret a/b: unexpected error: x is not a function' })
  t.equal(toKubeApiError(odd, 'other', 'thing'), odd, 'already mapped errors pass through')
})

t.test('redaction', async (t) => {
  const e = toKubeApiError(apiError(400, status(400, 'BadRequest', 'value s3cr3t-value and its longer s3cr3t-value-2')), 'create', 'Secret a/b', { redact: ['s3cr3t-value', 's3cr3t-value-2', 'ab'] })
  t.equal(e.message, 'create Secret a/b: invalid (HTTP 400 BadRequest): value [redacted] and its longer [redacted]')
})
