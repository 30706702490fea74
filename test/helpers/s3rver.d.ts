// s3rver ships no types; this covers what the storage tests use (it is a Koa application).
declare module 's3rver' {
  import type { Server } from 'node:http'
  import type { AddressInfo } from 'node:net'

  interface S3rverOptions {
    address?: string
    port?: number
    silent?: boolean
    directory?: string
    resetOnClose?: boolean
    allowMismatchedSignatures?: boolean
    vhostBuckets?: boolean
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>
  }

  class S3rver {
    constructor(options?: S3rverOptions)
    httpServer: Server
    run(): Promise<AddressInfo>
    close(): Promise<void>
  }
  export default S3rver
}
