// node:tls and node:http2, loaded the first time a snapshot needs them (mTLS on, an HTTP/2 or gRPC
// listener or cluster). A sidecar with neither never pays for them (their RSS, measured:
// docs/performance.md, "Choices in the code, measured"). createRequire keeps
// the load synchronous, so call sites stay as they were.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let tlsModule: typeof import('node:tls') | undefined;
let http2Module: typeof import('node:http2') | undefined;

export function nodeTls(): typeof import('node:tls') {
  return (tlsModule ??= require('node:tls') as typeof import('node:tls'));
}

export function nodeHttp2(): typeof import('node:http2') {
  return (http2Module ??= require('node:http2') as typeof import('node:http2'));
}
