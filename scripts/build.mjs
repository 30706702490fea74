#!/usr/bin/env node
/**
 * `npm run build`: THE build of smart-restore. What `npm start`, the image (Dockerfile) and
 * `npm run bench` run is what this writes; there is no other build. Types are checked separately
 * (`npm run typecheck`, tsc --noEmit): esbuild strips types without checking them.
 *
 *   node scripts/build.mjs [--outdir dir]        (default dist/; the directory is emptied first)
 *
 * One esbuild bundle, two entry points sharing their code (ES modules, code splitting):
 *
 *   dist/src/main.js        the service (`npm start`, the image's CMD)
 *   dist/src/cli/main.js    the CLI (package.json "bin": smart-restore check|status)
 *   dist/chunks/*.js        code shared by both, and what either loads only when it needs it
 *                           (dynamic import(): e.g. the CLI's commands, `selfsigned` for a
 *                           development certificate)
 *   dist/**\/*.js.map       source maps (no sources inside: stack traces name src/ files and lines)
 *   dist/package.json       {"type": "module"}: dist/ runs without the project's package.json
 *   dist/THIRD-PARTY-LICENSES.txt  the license texts of the bundled packages
 *
 * Every dependency is inside the bundle: dist/ alone runs with `node` (the runtime image has no
 * node_modules). None has to stay external (but OPTIONAL_EXTERNALS, below): no native addons, and no package reads its own files
 * at run time (JSON a package imports, e.g. the AWS SDK's package.json for its user agent, is
 * inlined; pino without transports starts no worker; selfsigned/@peculiar/x509 are pure JS).
 *
 * Why a bundle (measured with `npm run bench`, bench/README.md): @kubernetes/client-node 1.x loads
 * its generated index (~5,000 ES modules) from node_modules; bundled and minified, only what is
 * reachable is loaded, once, from a few files: ~40 MiB less RSS, and startup in a fraction of the
 * time.
 *
 * What else is here, and why:
 *  - minify: smaller sources to hold and parse (an unminified bundle measured ~25 MiB more RSS).
 *    Stack traces stay readable through the source maps (NODE_OPTIONS=--enable-source-maps).
 *  - sourcesContent: false: Node parses a module's source map when it loads it (with
 *    --enable-source-maps, Node 20); with the sources inside, that held ~30 MiB instead of ~8.
 *  - whatwg-url → Node's URL: node-fetch 2 (client-node's HTTP) uses `Url.URL || whatwgUrl.URL`,
 *    i.e. Node's own URL on every Node version we run; loading whatwg-url anyway (with tr46's
 *    Unicode table) cost ~2.7 MiB of heap for a fallback that is never taken.
 *  - a `require` for CommonJS dependencies inside the ES module bundle (createRequire banner).
 */
import { build } from 'esbuild'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

/** Output name (under the out directory, without .js) → source. */
export const ENTRY_POINTS = {
  'src/main': 'src/main.ts',
  'src/cli/main': 'src/cli/main.ts',
}
/** What `npm start` and the image run, relative to the out directory. */
export const SERVICE_ENTRY = 'src/main.js'
/** package.json "bin" smart-restore, relative to the out directory. */
export const CLI_ENTRY = 'src/cli/main.js'

/**
 * Optional dependencies that bundled code require()s inside try/catch and does without: ws's native
 * speed-ups (bufferutil, utf-8-validate) and node-fetch's `encoding` (non-UTF-8 bodies of
 * textConverted(), which nothing calls). Not installed, not in the image: the require throws and
 * its caller falls back, as it does in node_modules when they are absent.
 */
export const OPTIONAL_EXTERNALS = ['bufferutil', 'utf-8-validate', 'encoding']

/** The engines' floor (package.json engines: >=20.19); the image runs Node 24. */
const TARGET = 'node20.19'

/** whatwg-url, as node-fetch 2 uses it: only its URL, as a fallback for Node's (always there). */
const nodeUrlForWhatwgUrl = {
  name: 'whatwg-url-is-node-url',
  setup(b) {
    b.onResolve({ filter: /^whatwg-url$/ }, () => ({ path: 'whatwg-url', namespace: 'node-url' }))
    b.onLoad({ filter: /.*/, namespace: 'node-url' }, () => ({
      contents: 'module.exports = { URL: globalThis.URL, URLSearchParams: globalThis.URLSearchParams }',
      loader: 'js',
    }))
  },
}

/** The esbuild options of the build; the bench builds its own helpers with these too. */
export function buildOptions({ outdir, entryPoints = ENTRY_POINTS }) {
  return {
    absWorkingDir: ROOT,
    entryPoints,
    outdir,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: TARGET,
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
    minify: true,
    sourcemap: 'linked',
    sourcesContent: false,
    legalComments: 'none',
    external: OPTIONAL_EXTERNALS,
    metafile: true,
    logLevel: 'warning',
    // CommonJS dependencies call require() (for node: builtins); an ES module has none of its own.
    banner: { js: "import { createRequire as __srCreateRequire } from 'node:module'; const require = __srCreateRequire(import.meta.url);" },
    plugins: [nodeUrlForWhatwgUrl],
  }
}

/** The package directory (under node_modules) of each bundled input file. */
function bundledPackages(metafile) {
  const dirs = new Set()
  for (const input of Object.keys(metafile.inputs)) {
    const m = /^(.*node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(input)
    if (m) dirs.add(m[1])
  }
  return [...dirs].sort()
}

function licenseText(dir) {
  const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$|-)/i.test(f))
  return file ? readFileSync(join(dir, file), 'utf8').trim() : undefined
}

/**
 * Builds into `outdir` (emptied first) and returns esbuild's metafile (what went into which file).
 * `entryPoints` other than the default are for the bench's own helpers.
 */
export async function buildAll({ outdir = join(ROOT, 'dist'), entryPoints = ENTRY_POINTS, log = () => {} } = {}) {
  const out = resolve(ROOT, outdir)
  rmSync(out, { recursive: true, force: true })
  mkdirSync(out, { recursive: true })
  const result = await build(buildOptions({ outdir: out, entryPoints }))
  writeFileSync(join(out, 'package.json'), `${JSON.stringify({ type: 'module', private: true }, null, 2)}\n`)
  const notices = []
  for (const rel of bundledPackages(result.metafile)) {
    const dir = join(ROOT, rel)
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
    notices.push(`${pkg.name}@${pkg.version} (${typeof pkg.license === 'string' ? pkg.license : 'see below'})\n\n${licenseText(dir) ?? '(no license file in the package)'}`)
  }
  writeFileSync(join(out, 'THIRD-PARTY-LICENSES.txt'), `Packages bundled into this directory's JavaScript, with their license texts.\n\n${notices.join(`\n\n${'-'.repeat(78)}\n\n`)}\n`)
  const js = Object.entries(result.metafile.outputs).filter(([f]) => f.endsWith('.js'))
  const kib = (n) => `${(n / 1024).toFixed(0)} KiB`
  log(`built ${js.length} files (${kib(js.reduce((a, [, o]) => a + o.bytes, 0))}) into ${relative(process.cwd(), out) || '.'}: ${Object.keys(entryPoints).map((e) => `${e}.js ${kib(result.metafile.outputs[relative(ROOT, join(out, `${e}.js`))]?.bytes ?? 0)}`).join(', ')}`)
  return result.metafile
}

if (process.argv[1] && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  const { values } = parseArgs({ options: { outdir: { type: 'string' } } })
  const outdir = values.outdir ?? join(ROOT, 'dist')
  await buildAll({ outdir, log: (m) => process.stdout.write(`${m}\n`) })
  if (!existsSync(join(resolve(outdir), SERVICE_ENTRY))) throw new Error(`the build wrote no ${SERVICE_ENTRY}`)
}
