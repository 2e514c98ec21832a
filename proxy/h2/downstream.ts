// The client side of an h2 listener's request, whichever protocol the app spoke: an HTTP/2 stream
// (h2c) or an HTTP/1.1 request on the same port. The exchange (h2Exchange.ts) talks to this shape only.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Readable } from 'node:stream';
import { connectionListed } from '../l7/hopByHop.ts';
import { peerOf, type Peer } from '../tls/meshTls.ts';

/** What the exchange is told when the downstream can take more bytes, or goes away. */
export interface DownstreamOwner {
  downstreamDrained(): void;
  downstreamGone(): void;
  /** The client went silent for the idle bound set with watchIdle. */
  downstreamIdle(): void;
}

export interface Downstream {
  readonly h2: boolean;
  /** HTTP/2-style request headers (:method, :path, :authority, :scheme and lower-case names). */
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  /** The request had no body (END_STREAM on its headers; no length or chunking on HTTP/1.1). */
  readonly bodyless: boolean;
  readonly remoteAddress: string;
  /** Inbound with identity on: what the caller's connection proved (proxy/tls); undefined otherwise. */
  readonly peer: Peer | undefined;
  readonly headersSent: boolean;
  readonly gone: boolean;
  attach(owner: DownstreamOwner): void;
  /** Sends the response head; endStream ends the response there (a gRPC trailers-only response). */
  respond(headers: OutgoingHttpHeaders, endStream: boolean, wantTrailers: boolean): void;
  write(chunk: Buffer): boolean;
  /** Ends the response; trailers go out when the head asked for them. */
  end(trailers: OutgoingHttpHeaders | null): void;
  /** The response cannot complete: RST_STREAM on HTTP/2, a closed connection on HTTP/1.1. */
  reset(code: number): void;
  /**
   * Tells the owner (downstreamIdle) when no byte moved for ms: node's idle timer of the stream, or of
   * the HTTP/1.1 connection while the request is read. 0 stops it.
   */
  watchIdle(ms: number): void;
}

// Response headers HTTP/2 forbids (RFC 9113 8.2.2); an HTTP/1.1 upstream never reaches here, but be strict.
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);

/** Upstream response headers as the client should get them: no pseudo-headers but :status, no connection-specific ones. */
export function responseHeaders(up: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name of Object.keys(up)) {
    if (name.charCodeAt(0) === 0x3a /* : */ ? name !== ':status' : CONNECTION_SPECIFIC.has(name)) continue;
    out[name] = up[name];
  }
  return out;
}

type TaggedStream = ServerHttp2Stream & { [DOWN]?: H2Downstream };
const DOWN = Symbol('shoal.h2.downstream');

function onStreamDrain(this: TaggedStream): void {
  this[DOWN]?.owner?.downstreamDrained();
}

function onStreamClose(this: TaggedStream): void {
  const d = this[DOWN];
  if (d === undefined) return;
  d.closed = true;
  d.owner?.downstreamGone();
}

function onWantTrailers(this: TaggedStream): void {
  const d = this[DOWN];
  if (d === undefined || this.destroyed) return;
  this.sendTrailers(d.trailers ?? {});
}

function onStreamError(): void {
  // The close event that follows tells the owner; an unhandled error event must not throw.
}

function onStreamIdle(this: TaggedStream): void {
  this[DOWN]?.owner?.downstreamIdle();
}

export class H2Downstream implements Downstream {
  readonly h2 = true;
  readonly stream: TaggedStream;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  readonly bodyless: boolean;
  readonly remoteAddress: string;
  readonly peer: Peer | undefined;
  owner: DownstreamOwner | null = null;
  trailers: OutgoingHttpHeaders | null = null;
  closed = false;

  constructor(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, endStream: boolean, remoteAddress: string, peer: Peer | undefined) {
    this.stream = stream as TaggedStream;
    this.headers = headers;
    this.body = stream;
    this.bodyless = endStream;
    this.remoteAddress = remoteAddress;
    this.peer = peer;
    this.stream[DOWN] = this;
    stream.on('error', onStreamError);
  }

  get headersSent(): boolean {
    return this.stream.headersSent;
  }

  get gone(): boolean {
    return this.closed || this.stream.destroyed;
  }

  attach(owner: DownstreamOwner): void {
    this.owner = owner;
    this.stream.on('drain', onStreamDrain);
    this.stream.once('close', onStreamClose);
  }

  respond(headers: OutgoingHttpHeaders, endStream: boolean, wantTrailers: boolean): void {
    if (this.gone) return;
    if (wantTrailers && !endStream) this.stream.once('wantTrailers', onWantTrailers);
    this.stream.respond(headers, { endStream, waitForTrailers: wantTrailers && !endStream });
  }

  write(chunk: Buffer): boolean {
    if (this.gone) return true;
    return this.stream.write(chunk);
  }

  end(trailers: OutgoingHttpHeaders | null): void {
    if (this.gone) return;
    this.trailers = trailers;
    this.stream.end();
  }

  reset(code: number): void {
    if (!this.stream.destroyed) this.stream.close(code);
  }

  watchIdle(ms: number): void {
    if (this.stream.destroyed) return;
    if (ms > 0 && this.stream.listenerCount('timeout') === 0) this.stream.on('timeout', onStreamIdle);
    this.stream.setTimeout(ms);
  }
}

type TaggedResponse = ServerResponse & { [DOWN]?: H1Downstream };

function onResponseDrain(this: TaggedResponse): void {
  this[DOWN]?.owner?.downstreamDrained();
}

function onResponseClose(this: TaggedResponse): void {
  const d = this[DOWN];
  if (d === undefined) return;
  d.closed = true;
  d.owner?.downstreamGone();
}

type TaggedRequest = IncomingMessage & { [DOWN]?: H1Downstream };

// node:http emits the socket's idle timeout on the request while it is still being read.
function onRequestIdle(this: TaggedRequest): void {
  const d = this[DOWN];
  if (d === undefined) return;
  if (d.owner !== null && !d.closed) d.owner.downstreamIdle();
  else d.res.destroy();
}

// Request headers that are hop-by-hop on HTTP/1.1 and have no place in an HTTP/2 request.
const H1_DROP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
  'host',
  'expect',
  'trailer',
]);

/** An HTTP/1.1 request on an h2 listener, forwarded upstream over HTTP/2. */
export class H1Downstream implements Downstream {
  readonly h2 = false;
  readonly req: IncomingMessage;
  readonly res: TaggedResponse;
  readonly headers: IncomingHttpHeaders;
  readonly body: Readable;
  readonly bodyless: boolean;
  readonly remoteAddress: string;
  readonly peer: Peer | undefined;
  readonly closeAfter: () => boolean;
  owner: DownstreamOwner | null = null;
  closed = false;

  constructor(req: IncomingMessage, res: ServerResponse, closeAfter: () => boolean) {
    this.req = req;
    this.res = res as TaggedResponse;
    this.body = req;
    this.remoteAddress = req.socket.remoteAddress ?? '';
    this.peer = peerOf(req.socket);
    this.closeAfter = closeAfter;
    this.bodyless =
      req.headers['content-length'] === undefined || req.headers['content-length'] === '0'
        ? req.headers['transfer-encoding'] === undefined
        : false;
    const h = req.headers;
    const listed = connectionListed(h.connection);
    const out: IncomingHttpHeaders = {
      ':method': req.method,
      ':path': req.url,
      ':authority': h.host ?? '',
      ':scheme': 'http',
    };
    for (const name of Object.keys(h)) {
      if (H1_DROP.has(name) || (listed !== null && listed.includes(name))) continue;
      if (name === 'te') {
        // Only "trailers" may cross into HTTP/2 (RFC 9113 8.2.2).
        if (String(h.te).toLowerCase().includes('trailers')) out.te = 'trailers';
        continue;
      }
      out[name] = h[name];
    }
    this.headers = out;
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  get gone(): boolean {
    return this.closed || this.res.destroyed;
  }

  attach(owner: DownstreamOwner): void {
    this.owner = owner;
    this.res[DOWN] = this;
    this.res.on('drain', onResponseDrain);
    this.res.once('close', onResponseClose);
  }

  respond(headers: OutgoingHttpHeaders, endStream: boolean): void {
    if (this.gone) return;
    if (this.closeAfter()) this.res.shouldKeepAlive = false;
    const flat: string[] = [];
    for (const name of Object.keys(headers)) {
      if (name.charCodeAt(0) === 0x3a) continue;
      const v = headers[name];
      if (Array.isArray(v)) for (const x of v) flat.push(name, x);
      else if (v !== undefined) flat.push(name, String(v));
    }
    this.res.writeHead(Number(headers[':status'] ?? 200), flat);
    if (endStream) this.res.end();
  }

  write(chunk: Buffer): boolean {
    if (this.gone) return true;
    return this.res.write(chunk);
  }

  end(trailers: OutgoingHttpHeaders | null): void {
    if (this.gone) return;
    // Trailers travel only with chunked framing; a response with a length has no place for them.
    if (trailers !== null && !this.res.hasHeader('content-length')) {
      const t: Record<string, string> = {};
      for (const k of Object.keys(trailers)) if (trailers[k] !== undefined) t[k] = String(trailers[k]);
      this.res.addTrailers(t);
    }
    this.res.end();
  }

  reset(): void {
    this.res.destroy();
  }

  watchIdle(ms: number): void {
    const req = this.req as TaggedRequest;
    const socket = req.socket;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- Node's typings say Socket, but req.socket is null once the socket is detached
    if (socket === null || socket.destroyed) return;
    if (ms > 0 && req[DOWN] === undefined) {
      req[DOWN] = this;
      req.on('timeout', onRequestIdle);
    }
    socket.setTimeout(ms);
  }
}

/** RFC 9113 error codes (as literals: node:http2 loads only when a snapshot needs it). */
export const NO_ERROR = 0x0;
