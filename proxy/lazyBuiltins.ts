// The node builtins the sidecar loads through require rather than an ESM import, each on its first use.
//
// node:tls and node:http2, loaded the first time a snapshot needs them (mTLS on, an HTTP/2 or gRPC
// listener or cluster). A sidecar with neither never pays for them (their RSS, measured:
// docs/performance.md, "Choices in the code, measured").
//
// node:http and node:https: an ESM import of node:http builds its full namespace, whose lazy getters
// load node's bundled undici (about 14 MB of RSS in a process that never uses it); require returns
// the module without reading them. node:https (and TLS with it) loads only for an https URL.
//
// createRequire keeps each load synchronous, so call sites stay as they were.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
let tlsModule: typeof import('node:tls') | undefined;
let http2Module: typeof import('node:http2') | undefined;
let httpModule: typeof import('node:http') | undefined;
let httpsModule: typeof import('node:https') | undefined;

export function nodeTls(): typeof import('node:tls') {
  return (tlsModule ??= require('node:tls') as typeof import('node:tls'));
}

export function nodeHttp2(): typeof import('node:http2') {
  return (http2Module ??= require('node:http2') as typeof import('node:http2'));
}

/** node:http (createServer, request, Agent, ...) without its ESM namespace's undici getters. */
export function nodeHttp(): typeof import('node:http') {
  return (httpModule ??= require('node:http') as typeof import('node:http'));
}

export function nodeHttps(): typeof import('node:https') {
  return (httpsModule ??= require('node:https') as typeof import('node:https'));
}
