import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import { isApiReachable, kubeConfigFromEnvironment, probeApi } from '../../src/kube/config.js'
import { startFakeApiServer } from '../helpers/fake-apiserver.js'

function kubeconfigYaml(server: string, token: string, name = 'dev'): string {
  return [
    'apiVersion: v1',
    'kind: Config',
    `clusters: [{name: ${name}, cluster: {server: "${server}", insecure-skip-tls-verify: true}}]`,
    `users: [{name: ${name}-user, user: {token: ${token}}}]`,
    `contexts: [{name: ${name}, context: {cluster: ${name}, user: ${name}-user, namespace: media}}]`,
    `current-context: ${name}`,
    '',
  ].join('\n')
}

t.test('kubeConfigFromEnvironment', async (t) => {
  const dir = t.testdir({
    sa: { token: 'sa-token', 'ca.crt': 'not really a CA', namespace: 'smart-restore\n' },
    emptysa: {},
    home: { '.kube': { config: kubeconfigYaml('https://home.example:6443', 'home-token', 'home') } },
    nohome: {},
    a: { config: kubeconfigYaml('https://a.example:6443', 'a-token', 'a') },
    b: { config: kubeconfigYaml('https://b.example:6443', 'b-token', 'b') },
    broken: { config: 'clusters: [this is: not yaml' },
  })

  t.test('in-cluster when the service host and the token are there', async (t) => {
    const found = kubeConfigFromEnvironment({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: join(dir, 'sa') })
    t.equal(found?.source, 'in-cluster')
    const cluster = found!.kubeConfig.getCurrentCluster()!
    t.equal(cluster.server, 'https://10.96.0.1:443')
    t.equal(cluster.caFile, join(dir, 'sa', 'ca.crt'))
    t.equal(cluster.skipTLSVerify, false)
    t.match(found!.kubeConfig.getCurrentUser(), { authProvider: { name: 'tokenFile', config: { tokenFile: join(dir, 'sa', 'token') } } })
    t.equal(found!.kubeConfig.getContextObject(found!.kubeConfig.getCurrentContext())?.namespace, 'smart-restore')
    const v6 = kubeConfigFromEnvironment({ env: { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, serviceAccountDir: join(dir, 'sa') })
    t.equal(v6!.kubeConfig.getCurrentCluster()!.server, 'https://[fd00::1]:443')
  })

  t.test('no token mounted and no KUBECONFIG: null, and ~/.kube/config is never read', async (t) => {
    const found = kubeConfigFromEnvironment({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', HOME: join(dir, 'home') }, serviceAccountDir: join(dir, 'emptysa') })
    t.equal(found, null)
  })

  t.test('an explicit KUBECONFIG wins over in-cluster credentials', async (t) => {
    const found = kubeConfigFromEnvironment({ env: { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBECONFIG: join(dir, 'a', 'config') }, serviceAccountDir: join(dir, 'sa') })
    t.equal(found?.source, 'kubeconfig')
    t.equal(found!.kubeConfig.getCurrentCluster()!.server, 'https://a.example:6443')
  })

  t.test('KUBECONFIG naming only missing files is an error, not a cue to look elsewhere', async (t) => {
    t.throws(() => kubeConfigFromEnvironment({ env: { KUBECONFIG: join(dir, 'missing') }, serviceAccountDir: join(dir, 'sa') }), { message: /KUBECONFIG names .*missing, and none of it exists/ })
  })

  t.test('KUBECONFIG lists files (missing ones skipped, first one wins the context)', async (t) => {
    const env = { KUBECONFIG: [join(dir, 'missing'), join(dir, 'a', 'config'), join(dir, 'b', 'config')].join(':') }
    const found = kubeConfigFromEnvironment({ env, serviceAccountDir: join(dir, 'emptysa') })
    t.equal(found?.source, 'kubeconfig')
    t.equal(found!.kubeConfig.getCurrentCluster()!.server, 'https://a.example:6443')
    t.strictSame(found!.kubeConfig.getClusters().map((c) => c.name).sort(), ['a', 'b'])
  })

  t.test('nothing at all: null (no invented localhost cluster)', async (t) => {
    t.equal(kubeConfigFromEnvironment({ env: {}, serviceAccountDir: join(dir, 'emptysa') }), null)
  })

  t.test('a kubeconfig that does not parse is an error naming the file', async (t) => {
    t.throws(() => kubeConfigFromEnvironment({ env: { KUBECONFIG: join(dir, 'broken', 'config') }, serviceAccountDir: join(dir, 'emptysa') }), { message: /cannot load kubeconfig .*broken\/config/ })
  })
  t.end()
})

t.test('isApiReachable / probeApi', async (t) => {
  const server = await startFakeApiServer()
  t.teardown(() => server.close())

  t.test('a kubeconfig file pointing at the fake apiserver works end to end', async (t) => {
    const home = t.testdir({})
    writeFileSync(join(home, 'kubeconfig'), kubeconfigYaml(server.url, server.token))
    const found = kubeConfigFromEnvironment({ env: { KUBECONFIG: join(home, 'kubeconfig') }, serviceAccountDir: join(home, 'none') })!
    t.equal(await isApiReachable(found.kubeConfig, 1000), true)
    t.strictSame(await probeApi(found.kubeConfig, 1000), { reachable: true, detail: 'v1.31.0-fake' })
    t.equal(server.requests.at(-1)!.path, '/version')
  })

  t.test('wrong credentials: not usable', async (t) => {
    const kc = new KubeConfig()
    kc.loadFromString(kubeconfigYaml(server.url, 'wrong-token'))
    const probe = await probeApi(kc, 1000)
    t.equal(probe.reachable, false)
    t.match(probe.detail, /unauthorized \(HTTP 401\)/)
  })

  t.test('a hung apiserver: false within the timeout', async (t) => {
    server.fail({ path: '/version' }, { hang: true })
    const started = performance.now()
    const probe = await probeApi(server.kubeConfig, 200)
    t.equal(probe.reachable, false)
    t.match(probe.detail, /timeout: the Kubernetes API did not answer within 200 ms/)
    t.ok(performance.now() - started < 700)
  })

  t.test('nothing listening: false', async (t) => {
    const other = await startFakeApiServer()
    await other.close()
    const probe = await probeApi(other.kubeConfig, 1000)
    t.equal(probe.reachable, false)
    t.match(probe.detail, /network error \(ECONNREFUSED\)/)
  })
  t.end()
})
