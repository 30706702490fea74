// Types of scripts/build.mjs, for the TypeScript that imports it (bench/run.ts, test/deploy/image.test.ts).
import type { BuildOptions, Metafile } from 'esbuild'

export declare const ROOT: string
export declare const ENTRY_POINTS: Record<string, string>
export declare const SERVICE_ENTRY: string
export declare const CLI_ENTRY: string
export declare const OPTIONAL_EXTERNALS: string[]
export declare function buildOptions(opts: { outdir: string; entryPoints?: Record<string, string> }): BuildOptions
export declare function buildAll(opts?: { outdir?: string; entryPoints?: Record<string, string>; log?: (message: string) => void }): Promise<Metafile>
