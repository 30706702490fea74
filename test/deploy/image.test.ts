/**
 * The image and the one build. The Dockerfile and .dockerignore, read as text (no Docker engine is
 * needed): multi-stage, an LTS Node.js, non-root with the uid the Deployment asks for, a build
 * context that cannot carry keys into the image, and a runtime stage that holds the build alone.
 * Then the build itself (scripts/build.mjs, what `npm run build` runs), into a directory of its own
 * with no node_modules anywhere above it: the file the image's CMD names is the file the build
 * writes and `npm start` runs, the bundle imports nothing but Node's built-ins, and it runs — the
 * service (with the development certificate, so the lazily loaded chunks load too, and the
 * Deployment's NODE_OPTIONS) and the CLI.
 */
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { request } from 'node:https'
import { isBuiltin } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { buildAll, CLI_ENTRY, ENTRY_POINTS, OPTIONAL_EXTERNALS, SERVICE_ENTRY } from '../../scripts/build.mjs'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8')
// Instructions, without comments, continuation lines joined.
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'))
const stages = instructions.filter((l) => /^FROM /i.test(l))
const runtimeStart = instructions.lastIndexOf(stages[stages.length - 1]!)
const runtime = instructions.slice(runtimeStart)
const build = instructions.slice(0, runtimeStart)
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
const deployment = parse(readFileSync(join(ROOT, 'deploy', 'base', 'deployment.yaml'), 'utf8'))
const container = deployment.spec.template.spec.containers[0]
const nodeOptions: string = container.env.find((e: { name: string }) => e.name === 'NODE_OPTIONS')?.value ?? ''

t.test('multi-stage, LTS Node.js, distroless non-root runtime', async (t) => {
  t.ok(stages.length >= 2, `${stages.length} stages`)
  const major = Number(/^ARG NODE_MAJOR=(\d+)$/m.exec(instructions.join('\n'))?.[1])
  t.ok(major >= 22 && major % 2 === 0, `Node.js ${major}: an even (LTS) major, 22 or later`)
  t.match(stages[0]!, /^FROM node:\$\{NODE_MAJOR\}-bookworm-slim AS build$/)
  t.match(stages[stages.length - 1]!, /^FROM gcr\.io\/distroless\/nodejs\$\{NODE_MAJOR\}-debian12:nonroot$/, 'distroless, nonroot, same Node.js major')
  t.ok(build.some((l) => /^RUN npm ci\b(?!.*--omit=dev)/.test(l)), 'the build stage installs everything (npm ci)')
  t.ok(build.some((l) => /^RUN npm run build$/.test(l)), 'and runs npm run build')
  t.notOk(runtime.some((l) => /^RUN /.test(l)), 'the runtime stage runs nothing (it has no shell)')
  t.ok(runtime.includes('WORKDIR /app'))
  t.ok(runtime.includes('ENV NODE_ENV=production'))
  t.ok(runtime.includes('USER 65532:65532'), 'numeric non-root user')
  t.ok(runtime.includes('ENTRYPOINT []'), 'the distroless entrypoint (node itself) is reset, so CMD can name node')
})

t.test('the runtime image holds the build and nothing else', async (t) => {
  const copies = runtime.filter((l) => /^COPY /.test(l))
  t.strictSame(copies, ['COPY --from=build /app/dist ./dist'], 'dist/ from the build stage: no node_modules, no package.json, no sources')
  t.notOk(instructions.some((l) => /node_modules/.test(l) && /^COPY /.test(l)), 'no stage copies node_modules around')
})

t.test('one entry point: what npm run build writes = the image CMD = npm start (= the bench)', async (t) => {
  t.equal(pkg.scripts.build, 'node scripts/build.mjs', 'npm run build is the build script')
  t.equal(pkg.scripts.prestart, 'npm run build', 'npm start builds first')
  t.equal(pkg.scripts.start, `node dist/${SERVICE_ENTRY}`, 'npm start runs the service entry the build writes')
  t.equal(runtime[runtime.length - 1], `CMD ["node", "dist/${SERVICE_ENTRY}"]`, 'the image runs the same file')
  t.equal(pkg.bin['smart-restore'], `dist/${CLI_ENTRY}`, 'the bin is the CLI entry the build writes')
  t.equal(ENTRY_POINTS[SERVICE_ENTRY.replace(/\.js$/, '')], 'src/main.ts')
  t.equal(ENTRY_POINTS[CLI_ENTRY.replace(/\.js$/, '')], 'src/cli/main.ts')
  t.ok(build.some((l) => /^COPY scripts\/build\.mjs /.test(l)), 'the image builds with the same script')
  const bench = readFileSync(join(ROOT, 'bench', 'run.ts'), 'utf8')
  t.match(bench, /import \{[^}]*\bbuildAll\b[^}]*\} from '\.\.\/scripts\/build\.mjs'/, 'the bench builds with the same script')
  t.match(bench, /buildAll\(\{ outdir: SERVICE_DIR \}\)/, '… with its default entry points and options')
  t.match(bench, /join\(SERVICE_DIR, SERVICE_ENTRY\)/, '… and runs the service entry')
})

t.test('.dockerignore: an allowlist of what the Dockerfile copies', async (t) => {
  const lines = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
  t.equal(lines[0], '*', 'everything is excluded first')
  const allowed = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''))
  for (const l of instructions.filter((l) => /^COPY /.test(l) && !/--from=/.test(l))) {
    const sources = l.replace(/^COPY\s+(--\S+\s+)*/, '').split(/\s+/).slice(0, -1)
    for (const s of sources) t.ok(allowed.includes(s.replace(/^\.\//, '').replace(/\/$/, '')), `${s} is in the build context`)
  }
  for (const secret of ['certs', 'certs/out', '.dev', 'node_modules', '.git', 'dist']) t.notOk(allowed.some((a) => a === secret || secret.startsWith(`${a}/`)), `${secret} stays out of the build context`)
})

t.test('the Deployment runs the image as its user', async (t) => {
  const uid = Number(/^USER (\d+):(\d+)$/m.exec(runtime.join('\n'))?.[1])
  t.equal(deployment.spec.template.spec.securityContext.runAsUser, uid)
  t.equal(container.securityContext.runAsUser, uid)
  const ports = container.ports.map((p: { containerPort: number }) => p.containerPort)
  const exposed = (/^EXPOSE (.+)$/m.exec(runtime.join('\n'))?.[1] ?? '').split(/\s+/).map(Number)
  t.strictSame(exposed.sort(), ports.sort(), 'EXPOSE names the container ports')
})

t.test('the build: self-contained, and it runs', { timeout: 180_000 }, async (t) => {
  // Outside the checkout: no node_modules in any parent directory, as in the image.
  const out = mkdtempSync(join(tmpdir(), 'smart-restore-build-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  t.notOk(existsSync(join(dirname(out), 'node_modules')), 'no node_modules above the build')
  const metafile = await buildAll({ outdir: out })

  t.ok(existsSync(join(out, SERVICE_ENTRY)), `${SERVICE_ENTRY} written`)
  t.ok(existsSync(join(out, CLI_ENTRY)), `${CLI_ENTRY} written`)
  t.equal(JSON.parse(readFileSync(join(out, 'package.json'), 'utf8')).type, 'module', 'dist/package.json: ES modules without the project package.json')
  const licenses = readFileSync(join(out, 'THIRD-PARTY-LICENSES.txt'), 'utf8')
  for (const p of ['fastify@', '@kubernetes/client-node@', '@aws-sdk/client-s3@', 'pino@']) t.ok(licenses.includes(p), `license of ${p.slice(0, -1)} shipped`)

  const js = Object.entries(metafile.outputs).filter(([f]) => f.endsWith('.js'))
  const external = new Set(js.flatMap(([, o]) => o.imports.filter((i) => i.external).map((i) => i.path)))
  const notBuiltin = [...external].filter((p) => !isBuiltin(p))
  t.strictSame(notBuiltin.filter((p) => !OPTIONAL_EXTERNALS.includes(p)), [], `the bundle imports only Node built-ins besides its own chunks (${external.size - notBuiltin.length} built-ins)`)
  // The optional ones are require()d in try/catch by bundled code that does without them.
  for (const p of notBuiltin) t.ok(OPTIONAL_EXTERNALS.includes(p), `${p}: optional, not in the image`)
  const maps = readdirSync(join(out, 'chunks')).filter((f) => f.endsWith('.js.map'))
  t.ok(maps.length > 0 && existsSync(join(out, `${SERVICE_ENTRY}.map`)), 'source maps next to the code')
  const entryMap = JSON.parse(readFileSync(join(out, `${SERVICE_ENTRY}.map`), 'utf8'))
  t.ok(entryMap.sources.some((s: string) => s.endsWith('src/main.ts')), 'the service entry maps back to src/main.ts')
  t.notOk(entryMap.sourcesContent, 'without the sources inside (Node parses maps on load)')
  // selfsigned is loaded only for a development certificate: not part of the service's startup.
  const entryImports = metafile.outputs[Object.keys(metafile.outputs).find((k) => k.endsWith(`/${SERVICE_ENTRY}`))!]!.imports
  const lazy = entryImports.filter((i) => i.kind === 'dynamic-import').map((i) => i.path)
  t.ok(lazy.some((p) => /selfsigned/.test(p)), 'selfsigned is a chunk of its own, imported dynamically')

  t.test('the CLI runs from the build, its dynamically imported commands too', async (t) => {
    const help = spawnSync(process.execPath, [join(out, CLI_ENTRY), '--help'], { cwd: out, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })
    t.equal(help.status, 0, help.stderr)
    t.match(help.stdout, /^Usage: smart-restore check/)
    const check = spawnSync(process.execPath, [join(out, CLI_ENTRY), 'check', 'media/data', '--config', join(out, 'no-such-config.yaml')], { cwd: out, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } })
    t.equal(check.status, 2, 'a configuration error: exit 2')
    t.match(check.stderr, /SMART_RESTORE_CONFIG: cannot read .*no-such-config\.yaml/, 'named by the configuration loader, which the CLI imports dynamically')
  })

  t.test(`the service runs from the build with the Deployment's NODE_OPTIONS (${nodeOptions})`, async (t) => {
    // Standalone, a local store under its own directory, no certificate files: it generates the
    // development certificate (the selfsigned chunk), listens, answers, and stops on SIGTERM.
    const child = spawn(process.execPath, [join(out, SERVICE_ENTRY)], {
      cwd: out,
      env: { ...process.env, NODE_OPTIONS: nodeOptions, NODE_ENV: 'production', SMART_RESTORE_CONFIG: '', KUBECONFIG: '', SMART_RESTORE_KUBE_MODE: 'standalone', SMART_RESTORE_HOST: '127.0.0.1', SMART_RESTORE_PORT: '0', SMART_RESTORE_METRICS_PORT: '-1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.teardown(() => void child.kill('SIGKILL'))
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c))
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    const port = await new Promise<number>((resolvePort, reject) => {
      const timer = setTimeout(() => reject(new Error(`not listening after 60 s: ${stdout}${stderr}`)), 60_000)
      child.stdout.on('data', (c: Buffer) => {
        stdout += c
        for (const line of stdout.split('\n')) {
          if (!line.includes('"smart-restore listening"')) continue
          clearTimeout(timer)
          resolvePort(JSON.parse(line).port)
        }
      })
      void exited.then((code) => reject(new Error(`exited with ${code}: ${stdout}${stderr}`)))
    })
    const status = await new Promise<number>((r, reject) => {
      request({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false }, (res) => {
        res.resume()
        r(res.statusCode ?? 0)
      })
        .on('error', reject)
        .end()
    })
    t.equal(status, 200, 'GET /healthz over HTTPS with the generated certificate')
    t.match(stdout, /serving a generated development certificate/)
    child.kill('SIGTERM')
    t.equal(await exited, 0, 'SIGTERM: drained and exited 0')
  })
})
