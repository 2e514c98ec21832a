// A listener for http2 and grpc ports (outbound dependency or inbound port). Each connection's first
// bytes decide its protocol: the HTTP/2 connection preface goes to node:http2 (h2c with prior
// knowledge, as gRPC clients speak it), anything else to node:http (HTTP/1.1). Either way every
// request is routed with the same route table as the HTTP/1.1 listener, balanced per request and
// sent upstream as a stream on a pooled HTTP/2 connection (h2Exchange.ts).
import type { IncomingHttpHeaders, IncomingMessage, Server as HttpServer, ServerResponse } from 'node:http';
import type { Http2Server, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import { nodeHttp, nodeHttp2 } from '../lazyBuiltins.ts';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Gauge } from 'prom-client';
import type { Logger } from '../../shared/log.ts';
import type { AccessLog } from '../accessLog.ts';
import { unforwardable } from '../http/undiciExchange.ts';
import { ERROR_STATUS, sendMadeUp } from '../l7/madeUpResponse.ts';
import type { RouteBackend, RouteTable } from '../l7/routeTable.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { TokenBucket } from '../policy/tokenBucket.ts';
import { H1Downstream, H2Downstream, type Downstream } from './downstream.ts';
import { SESSION_WINDOW, STREAM_WINDOW, type EndpointSessions } from './endpointSessions.ts';
import { encodeGrpcMessage, grpcStatusOf, isGrpc } from './grpc.ts';
import { grpcStats, type GrpcStats } from './grpcMetrics.ts';
import { H2Exchange, type H2Site } from './h2Exchange.ts';
import { peerOf, type Peer } from '../tls/meshTls.ts';
import { redirectLocation } from '../l7/routeFilters.ts';
import { admit, Refusal, Reservation } from '../l7/admission.ts';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
// A shutdown notice: GOAWAY with the highest stream id there is, so every stream the client has sent
// is still served while it learns to open no more here (RFC 9113 6.8, as Envoy and nghttp2 send it).
const NOTICE_LAST_STREAM_ID = 2 ** 31 - 1;
// How often node:http checks request heads against headersTimeout (see onNetListening).
const HEAD_CHECK_INTERVAL_MS = 1000;

const LISTENER = Symbol('shoal.h2.listener');
type TaggedNet = NetServer & { [LISTENER]: H2Listener };
type TaggedH2 = Http2Server & { [LISTENER]: H2Listener };
type TaggedHttp = HttpServer & { [LISTENER]: H2Listener };
type TaggedSocket = Socket & { [LISTENER]?: H2Listener; sniffed?: Buffer | null };
// The client's address and mesh identity, read once per connection (the socket getter costs a syscall and a parse).
type TaggedSession = ServerHttp2Session & { [LISTENER]?: H2Listener; remoteAddress?: string; peer?: Peer };

function onConnection(this: TaggedNet, socket: TaggedSocket): void {
  const l = this[LISTENER];
  if (l.maxConnections > 0 && l.open >= l.maxConnections) {
    // LIMIT_CONNECTIONS: the protocol is not known yet, so there is no head to explain it in; close at once.
    l.metrics.inboundLimited.labels(l.name, 'connections').inc();
    socket.on('error', onSessionError);
    socket.destroy();
    return;
  }
  l.connections.inc();
  l.open++;
  l.sockets.add(socket);
  socket[LISTENER] = l;
  socket.sniffed = null;
  socket.once('close', onSocketClose);
  socket.on('data', onSniff);
  // Until its first bytes say which protocol it speaks, a connection gets the request head's bound.
  socket.setTimeout(l.requestHeadTimeoutMs);
  socket.once('timeout', onSniffTimeout);
}

function onSniffTimeout(this: TaggedSocket): void {
  this.destroy();
}

// node:http enforces headersTimeout only on connections it tracks, and it tracks them only once it
// has emitted 'listening' (it never listens here: connections are handed to it after sniffing).
function onNetListening(this: TaggedNet): void {
  this[LISTENER].httpServer.emit('listening');
}

function onNetClose(this: TaggedNet): void {
  // Clears node's connection-checking interval (which would keep the retired server alive).
  this[LISTENER].httpServer.close();
}

function onSocketClose(this: TaggedSocket): void {
  const l = this[LISTENER];
  if (l === undefined) return;
  l.connections.dec();
  l.open--;
  l.sockets.delete(this);
}

/** Reads until the bytes either are the HTTP/2 preface or cannot be, then hands the socket over. */
function onSniff(this: TaggedSocket, chunk: Buffer): void {
  const buf = this.sniffed === null || this.sniffed === undefined ? chunk : Buffer.concat([this.sniffed, chunk]);
  const n = buf.length < PREFACE.length ? buf.length : PREFACE.length;
  const isPrefix = buf.compare(PREFACE, 0, n, 0, n) === 0;
  if (isPrefix && n < PREFACE.length) {
    this.sniffed = buf;
    return;
  }
  this.sniffed = null;
  this.removeListener('data', onSniff);
  this.removeListener('timeout', onSniffTimeout);
  this.setTimeout(0);
  this.pause();
  this.unshift(buf);
  const l = this[LISTENER]!;
  if (isPrefix) {
    // Behind the mTLS gate (proxy/tls): node:http2 takes a TLS connection only with ALPN h2. No ALPN
    // at all is h2 with prior knowledge over TLS; ALPN http/1.1 and then a preface contradicts itself.
    const alpn = (this as Socket & { alpnProtocol?: string | false | null }).alpnProtocol;
    if (alpn === 'http/1.1') {
      this.destroy();
      return;
    }
    if (alpn === false) (this as Socket & { alpnProtocol?: string | false | null }).alpnProtocol = 'h2';
    l.h2Server.emit('connection', this);
  } else l.httpServer.emit('connection', this);
  if (!isPrefix && this.isPaused()) this.resume();
}

function onSession(this: TaggedH2, session: TaggedSession): void {
  const l = this[LISTENER];
  session[LISTENER] = l;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- an Http2Session's socket is undefined once it is destroyed; Node's typings do not say so
  session.remoteAddress = session.socket?.remoteAddress ?? '';
  if (l.direction === 'inbound') session.peer = peerOf(session.socket as unknown as Socket);
  l.sessions.add(session);
  session.once('close', onSessionClose);
  session.on('error', onSessionError);
  session.once('connect', onSessionConnect);
  if (l.draining) {
    // Accepted while the sidecar drains: served, told to go after its first stream; once the
    // listener no longer accepts, the final GOAWAY at once.
    if (l.server.listening) session.once('stream', onFirstStreamWhileDraining);
    else session.close();
  }
}

function onFirstStreamWhileDraining(this: TaggedSession): void {
  notice(this);
}

function notice(session: ServerHttp2Session): void {
  if (!session.closed && !session.destroyed) session.goaway(0, NOTICE_LAST_STREAM_ID);
}

function onSessionConnect(this: TaggedSession): void {
  if (!this.destroyed) this.setLocalWindowSize(SESSION_WINDOW);
}

function onSessionClose(this: TaggedSession): void {
  this[LISTENER]?.sessions.delete(this);
}

function onSessionError(): void {
  // A broken client connection: its streams close and their exchanges hear of it.
}

function onStream(this: TaggedH2, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number): void {
  const session = stream.session as TaggedSession | undefined;
  this[LISTENER].handle(new H2Downstream(stream, headers, (flags & 1) === 1, session?.remoteAddress ?? '', session?.peer));
}

function onRequest(this: TaggedHttp, req: IncomingMessage, res: ServerResponse): void {
  const l = this[LISTENER];
  const bad = unforwardable(req);
  if (bad !== null) {
    // More than one Host, or a target that is no path: the client's error (400), before any endpoint is picked.
    req.resume();
    l.metrics.madeUp.labels(l.name, 'bad-request').inc();
    sendMadeUp(res, 'bad-request', bad, true);
    return;
  }
  l.handle(new H1Downstream(req, res, l.closeAfter));
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export class H2Listener implements H2Site {
  readonly name: string;
  readonly direction: 'inbound' | 'outbound';
  readonly log: Logger;
  readonly accessLog: AccessLog | null;
  readonly drainMs: number;
  readonly server: TaggedNet;
  readonly h2Server: TaggedH2;
  readonly httpServer: TaggedHttp;
  readonly connections: Gauge.Internal<'listener' | 'direction'>;
  readonly sockets = new Set<Socket>();
  readonly sessions = new Set<ServerHttp2Session>();
  /** Upstream pools this listener sends to; released when it is destroyed. */
  private readonly pools = new Set<EndpointSessions>();
  readonly metrics: ProxyMetrics;
  /** Inbound LIMIT_RPS/LIMIT_BURST; null: no rate limit. */
  limiter: TokenBucket | null = null;
  /** Inbound LIMIT_CONNECTIONS; 0: no limit. */
  maxConnections = 0;
  /** Downstream connections open now. */
  open = 0;
  table: RouteTable;
  private isDraining = false;
  private headTimeoutMs = 60_000;
  readonly closeAfter = (): boolean => this.isDraining;

  constructor(
    name: string,
    direction: 'inbound' | 'outbound',
    table: RouteTable,
    ctx: { log: Logger; metrics: ProxyMetrics; accessLog: AccessLog | null },
    drainMs: number,
  ) {
    this.name = name;
    this.direction = direction;
    this.table = table;
    this.log = ctx.log;
    this.metrics = ctx.metrics;
    this.accessLog = ctx.accessLog;
    this.drainMs = drainMs;
    this.connections = ctx.metrics.connections.labels(name, direction);
    const h2 = nodeHttp2().createServer({
      settings: { initialWindowSize: STREAM_WINDOW, enablePush: false },
      // Many concurrent streams per client connection (gRPC channels multiplex everything on one).
      peerMaxConcurrentStreams: 1000,
    }) as TaggedH2;
    h2[LISTENER] = this;
    h2.on('session', onSession);
    h2.on('stream', onStream);
    this.h2Server = h2;
    // As on the L7 listener: no total bound on a request (the deadlines and the body idle bound are
    // the exchange's), headersTimeout for its head.
    const http = nodeHttp().createServer({
      requestTimeout: 0,
      headersTimeout: this.headTimeoutMs,
      connectionsCheckingInterval: HEAD_CHECK_INTERVAL_MS,
      keepAliveTimeout: 60_000,
      noDelay: true,
    }) as TaggedHttp;
    http[LISTENER] = this;
    http.on('request', onRequest);
    this.httpServer = http;
    const server = createNetServer({ noDelay: true }) as TaggedNet;
    server[LISTENER] = this;
    server.on('connection', onConnection);
    server.on('listening', onNetListening);
    server.on('close', onNetClose);
    this.server = server;
  }

  /** An HTTP/1.1 request head must arrive whole within this long (--request-head-timeout). */
  get requestHeadTimeoutMs(): number {
    return this.headTimeoutMs;
  }

  set requestHeadTimeoutMs(ms: number) {
    this.headTimeoutMs = ms;
    this.httpServer.headersTimeout = ms;
  }

  /** The longest a client may go silent in the middle of a request body: the head's bound again, as on the L7 listener. */
  get bodyIdleMs(): number {
    return this.headTimeoutMs;
  }

  get draining(): boolean {
    return this.isDraining;
  }

  /**
   * Draining, still accepting: a shutdown notice to every HTTP/2 client (the streams it has sent are
   * served), Connection: close on HTTP/1.1 responses. closeSessions and closeIdleConnections follow
   * once the listener no longer accepts (listenerSet.ts drainListener).
   */
  set draining(v: boolean) {
    if (!v || this.isDraining) return;
    this.isDraining = true;
    for (const s of this.sessions) notice(s);
  }

  /** No longer accepting: the final GOAWAY (the last stream it processed) to every session; each closes once its streams finish. */
  closeSessions(): void {
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  /** Closes HTTP/1.1 connections between requests, and connections that have sent nothing yet. */
  closeIdleConnections(): void {
    this.httpServer.closeIdleConnections();
    for (const s of this.sockets) if (s.bytesRead === 0) s.destroy();
  }

  /** Applies OPEN_LIMIT limits (inbound), as the HTTP/1.1 listener does. */
  setLimits(limits: { rps: number; burst: number; connections: number } | null): void {
    const rps = limits?.rps ?? 0;
    const burst = limits?.burst || rps;
    if (rps === 0) this.limiter = null;
    else if (this.limiter === null || this.limiter.rps !== rps || this.limiter.burst !== Math.max(1, burst))
      this.limiter = new TokenBucket(rps, burst);
    this.maxConnections = limits?.connections ?? 0;
  }

  use(pool: EndpointSessions): void {
    if (this.pools.has(pool)) return;
    this.pools.add(pool);
    pool.users.add(this);
  }

  grpcStats(backend: RouteBackend): GrpcStats {
    return grpcStats(this.metrics, backend.cluster.name, backend.route);
  }

  handle(down: Downstream): void {
    const start = performance.now();
    const h = down.headers;
    const path = one(h[':path']) ?? '/';
    const grpc = isGrpc(h['content-type']);
    const host = one(h[':authority']) ?? one(h.host);
    // The same admission as the HTTP/1.1 paths (proxy/l7/admission.ts): authorization per request, 403 or PERMISSION_DENIED.
    const r = admit(this, down.peer, one(h[':method']) ?? '', path, host, h, start, false);
    if (r instanceof Reservation) {
      new H2Exchange(down, this, r.backend, r.permit, start, grpc, r.hashKey).run();
      return;
    }
    if (r instanceof Refusal) {
      this.refuse(down, grpc, r);
      return;
    }
    // Gateway API RequestRedirect: the sidecar answers itself.
    down.body.resume();
    const location = redirectLocation(r.redirect!, { scheme: 'http', authority: host ?? '', target: path }, r.matchedPrefix);
    if (down instanceof H1Downstream) {
      if (this.isDraining) down.res.shouldKeepAlive = false;
      down.res.writeHead(r.redirect!.statusCode, r.redirectResponse(location));
      down.res.end();
      return;
    }
    const rh = r.redirectResponse(location);
    const out: Record<string, string | string[] | number> = { ':status': r.redirect!.statusCode };
    for (let i = 0; i < rh.length; i += 2) {
      const prev = out[rh[i]];
      out[rh[i]] = prev === undefined ? rh[i + 1] : Array.isArray(prev) ? [...prev, rh[i + 1]] : [String(prev), rh[i + 1]];
    }
    down.respond(out, true, false);
  }

  /** A made-up answer before any upstream was chosen (counted by admission); the backend it was meant for counts the answer. */
  private refuse(down: Downstream, grpc: boolean, r: Refusal): void {
    const { error, detail, backend } = r;
    down.body.resume();
    if (down instanceof H1Downstream) {
      if (r.retryAfterS > 0) down.res.setHeader('retry-after', String(r.retryAfterS));
      const status = sendMadeUp(down.res, error, detail, this.isDraining);
      backend?.stats.count(status);
      return;
    }
    if (grpc) {
      const code = grpcStatusOf(error);
      down.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc',
          'grpc-status': String(code),
          'grpc-message': encodeGrpcMessage(`${error}: ${detail}`),
          'x-shoal-error': error,
        },
        true,
        false,
      );
      backend?.stats.count(200);
      if (backend) this.grpcStats(backend).count(code);
      return;
    }
    const status = ERROR_STATUS[error];
    const body = `${status} ${error}: ${detail}\n`;
    const head: Record<string, string | number> = {
      ':status': status,
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'x-shoal-error': error,
    };
    if (r.retryAfterS > 0) head['retry-after'] = String(r.retryAfterS);
    down.respond(head, false, false);
    down.write(Buffer.from(body));
    down.end(null);
    backend?.stats.count(status);
  }

  /** Closes every connection now, and lets go of the upstream pools. */
  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
    for (const p of this.pools) p.release(this);
    this.pools.clear();
  }
}
