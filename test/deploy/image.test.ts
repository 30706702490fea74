/**
 * The Dockerfile and .dockerignore, read as text (no Docker engine is needed): multi-stage, an LTS
 * Node.js, production dependencies only, non-root with the uid the Deployment asks for, the entry
 * point that `npm run build` produces, and a build context that cannot carry keys into the image.
 */
import t from 'tap'
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'

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

t.test('multi-stage, LTS Node.js, distroless non-root runtime', async (t) => {
  t.ok(stages.length >= 2, `${stages.length} stages`)
  const major = Number(/^ARG NODE_MAJOR=(\d+)$/m.exec(instructions.join('\n'))?.[1])
  t.ok(major >= 22 && major % 2 === 0, `Node.js ${major}: an even (LTS) major, 22 or later`)
  t.match(stages[0]!, /^FROM node:\$\{NODE_MAJOR\}-bookworm-slim AS build$/)
  t.match(stages[stages.length - 1]!, /^FROM gcr\.io\/distroless\/nodejs\$\{NODE_MAJOR\}-debian12:nonroot$/, 'distroless, nonroot, same Node.js major')
  t.ok(instructions.some((l) => /^RUN npm ci\b(?!.*--omit=dev)/.test(l)), 'the build stage installs everything (npm ci)')
  t.ok(instructions.some((l) => /^RUN npm run build\b/.test(l)), 'and builds')
  t.ok(instructions.some((l) => /^RUN npm ci .*--omit=dev/.test(l)), 'production dependencies only (npm ci --omit=dev)')
  t.notOk(runtime.some((l) => /^RUN /.test(l)), 'the runtime stage runs nothing (it has no shell)')
  t.ok(runtime.includes('WORKDIR /app'))
  t.ok(runtime.includes('ENV NODE_ENV=production'))
  t.ok(runtime.includes('USER 65532:65532'), 'numeric non-root user')
  t.ok(runtime.includes('ENTRYPOINT []'), 'the distroless entrypoint (node itself) is reset, so CMD can name node')
  t.equal(runtime[runtime.length - 1], 'CMD ["node", "dist/src/main.js"]')
  t.ok(runtime.some((l) => /^COPY --from=\w+ \/app\/package\.json /.test(l)), 'package.json ("type": "module") is in the image')
  t.ok(runtime.some((l) => /^COPY --from=deps \/app\/node_modules /.test(l)), 'node_modules from the production-only stage')
})

t.test('the entry point is what npm run build writes', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  const build = JSON.parse(readFileSync(join(ROOT, 'tsconfig.build.json'), 'utf8'))
  const base = JSON.parse(readFileSync(join(ROOT, 'tsconfig.json'), 'utf8'))
  t.equal(pkg.type, 'module')
  t.equal(pkg.scripts.build, 'tsc -p tsconfig.build.json')
  t.equal(pkg.scripts.start, 'node dist/src/main.js', 'npm start runs the same file')
  t.equal(build.compilerOptions.rootDir, '.', 'rootDir . → dist/src/...')
  t.equal(base.compilerOptions.outDir, 'dist')
  t.strictSame(build.include, ['src'])
  t.ok(readFileSync(join(ROOT, 'src', 'main.ts'), 'utf8').length > 0, 'src/main.ts exists')
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
  for (const secret of ['certs', 'certs/out', '.dev', 'node_modules', '.git']) t.notOk(allowed.some((a) => a === secret || secret.startsWith(`${a}/`)), `${secret} stays out of the build context`)
})

t.test('the Deployment runs the image as its user', async (t) => {
  const deployment = parse(readFileSync(join(ROOT, 'deploy', 'base', 'deployment.yaml'), 'utf8'))
  const uid = Number(/^USER (\d+):(\d+)$/m.exec(runtime.join('\n'))?.[1])
  t.equal(deployment.spec.template.spec.securityContext.runAsUser, uid)
  t.equal(deployment.spec.template.spec.containers[0].securityContext.runAsUser, uid)
  const ports = deployment.spec.template.spec.containers[0].ports.map((p: { containerPort: number }) => p.containerPort)
  const exposed = (/^EXPOSE (.+)$/m.exec(runtime.join('\n'))?.[1] ?? '').split(/\s+/).map(Number)
  t.strictSame(exposed.sort(), ports.sort(), 'EXPOSE names the container ports')
})
