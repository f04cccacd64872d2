// The few parts of s3rver 3.7 (no published types) that the test launcher uses.
declare module 's3rver' {
  interface KoaContext {
    method: string;
    req: import('node:http').IncomingMessage;
    status: number;
    body: unknown;
    type: string;
  }
  type Middleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void> | void;
  export default class S3rver {
    constructor(options: {
      address?: string;
      port?: number;
      silent?: boolean;
      directory: string;
      configureBuckets?: Array<{ name: string }>;
      allowMismatchedSignatures?: boolean;
      /** With both: HTTPS. */
      cert?: Buffer;
      key?: Buffer;
    });
    middleware: Middleware[];
    run(): Promise<{ address: string; port: number }>;
    close(): Promise<void>;
  }
}
