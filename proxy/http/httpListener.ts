// An L7 listener (outbound dependency or inbound port): accept, route, balance, forward.
// Connections start on the fast path (h1/clientConnection.ts: bodiless requests, the common case);
// a request it does not take (body, upgrade, HTTP/1.0, oddities) moves the connection to node:http
// with undici upstream (undiciExchange.ts, upgrade.ts). The route table is swapped whole on a new snapshot;
// requests in flight keep the objects they hold.
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../shared/log.ts';
import type { AccessLog } from '../accessLog.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { UndiciExchange, unforwardable, type ForwardSite } from './undiciExchange.ts';
import { madeUpHead, sendMadeUp } from '../l7/madeUpResponse.ts';
import type { CompiledRoute, RouteTable } from '../l7/routeTable.ts';
import { rawMadeUp, UpgradeRequest } from './upgrade.ts';
import { ClientConnection } from './h1/clientConnection.ts';
import { peerOf } from '../tls/meshTls.ts';
import { nodeHttp } from '../lazyBuiltins.ts';
import { admit, Refusal, Reservation } from '../l7/admission.ts';
import type { Gauge } from 'prom-client';
import type { ShoalError } from '../l7/madeUpResponse.ts';
import { REDIRECT_REASON, redirectLocation } from '../l7/routeFilters.ts';
import { TokenBucket } from '../policy/tokenBucket.ts';
import type { ListenerLimits } from '../listener/listenerSpec.ts';

const LISTENER = Symbol('shoal.listener');
type TaggedServer = Server & { [LISTENER]: HttpListener };
type TaggedNetServer = NetServer & { [LISTENER]: HttpListener };
type TaggedSocket = Socket & { [LISTENER]?: HttpListener };

function onRequest(this: TaggedServer, req: IncomingMessage, res: ServerResponse): void {
  this[LISTENER].handle(req, res);
}

function onUpgrade(this: TaggedServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  this[LISTENER].upgrade(req, socket, head);
}

// node:http enforces headersTimeout only on connections it tracks, and it tracks them only once it
// has emitted 'listening' (it never listens here: the fast path hands connections over). Started
// when the fast path's server listens, stopped when it closes.
const HEAD_CHECK_INTERVAL_MS = 1000;

function onNetListening(this: TaggedNetServer): void {
  this[LISTENER].httpServer.emit('listening');
}

function onNetClose(this: TaggedNetServer): void {
  // Clears node's connection-checking interval (which would keep the retired server alive).
  this[LISTENER].httpServer.close();
}

function onConnection(this: TaggedNetServer, socket: TaggedSocket): void {
  const l = this[LISTENER];
  if (l.maxConnections > 0 && l.open >= l.maxConnections) {
    // LIMIT_CONNECTIONS: say why and close, rather than leave the client hanging in the accept queue.
    l.connectionLimited();
    socket.on('error', destroySocket);
    socket.end(madeUpHead('overloaded', `${l.name} has LIMIT_CONNECTIONS (${l.maxConnections}) connections open`, true), 'latin1');
    return;
  }
  l.connections.inc();
  l.open++;
  socket[LISTENER] = l;
  socket.once('close', onSocketClose);
  l.clients.add(new ClientConnection(l, socket));
}

function destroySocket(this: Socket): void {
  this.destroy();
}

function onSocketClose(this: TaggedSocket): void {
  const l = this[LISTENER];
  if (l) {
    l.connections.dec();
    l.open--;
  }
}

function onTunnelClose(this: Duplex & { [LISTENER]?: HttpListener }): void {
  this[LISTENER]?.tunnels.delete(this);
}

export class HttpListener implements ForwardSite {
  readonly name: string;
  readonly direction: 'inbound' | 'outbound';
  readonly accessLog: AccessLog | null;
  readonly log: Logger;
  /** The listening socket; connections start on the fast path. */
  readonly server: TaggedNetServer;
  /** node:http, fed the connections the fast path hands over; never listens itself. */
  readonly httpServer: TaggedServer;
  readonly clients = new Set<ClientConnection>();
  readonly keepAliveTimeoutMs = 60_000;
  private headTimeoutMs = 60_000;
  readonly connections: Gauge.Internal<'listener' | 'direction'>;
  /** Responses say Connection: close (the sidecar or this listener drains); it may still accept. */
  draining = false;
  /** Downstream connections open now (upgraded ones included). */
  open = 0;
  readonly tunnels = new Set<Duplex>();
  table: RouteTable;
  /** Inbound LIMIT_RPS/LIMIT_BURST; null: no rate limit. */
  limiter: TokenBucket | null = null;
  /** Inbound LIMIT_CONNECTIONS; 0: no limit. */
  maxConnections = 0;
  readonly metrics: ProxyMetrics;

  constructor(
    name: string,
    direction: 'inbound' | 'outbound',
    table: RouteTable,
    ctx: { log: Logger; metrics: ProxyMetrics; accessLog: AccessLog | null },
  ) {
    this.name = name;
    this.direction = direction;
    this.table = table;
    this.log = ctx.log;
    this.metrics = ctx.metrics;
    this.accessLog = ctx.accessLog;
    this.connections = ctx.metrics.connections.labels(name, direction);
    // requestTimeout 0: long uploads are bounded by the cluster's deadline and the body idle bound
    // (undiciExchange.ts), not by node's 5 minutes. headersTimeout: the request head bound, as on the fast path.
    const http = nodeHttp().createServer({
      requestTimeout: 0,
      headersTimeout: this.headTimeoutMs,
      connectionsCheckingInterval: HEAD_CHECK_INTERVAL_MS,
      keepAliveTimeout: this.keepAliveTimeoutMs,
      noDelay: true,
    }) as TaggedServer;
    http[LISTENER] = this;
    http.on('request', onRequest);
    http.on('upgrade', onUpgrade);
    this.httpServer = http;
    const server = createNetServer({ noDelay: true }) as TaggedNetServer;
    server[LISTENER] = this;
    server.on('connection', onConnection);
    server.on('listening', onNetListening);
    server.on('close', onNetClose);
    this.server = server;
  }

  /** A request head must arrive whole within this long of its first byte (--request-head-timeout), on both paths. */
  get requestHeadTimeoutMs(): number {
    return this.headTimeoutMs;
  }

  set requestHeadTimeoutMs(ms: number) {
    this.headTimeoutMs = ms;
    this.httpServer.headersTimeout = ms;
  }

  /** A request, body included, must arrive whole within this long of its head (--request-receive-timeout; 0: no bound). */
  bodyReceiveMs = 300_000;

  /**
   * The longest a client may go silent in the middle of a request body: the head's bound again (as
   * nginx's client_header_timeout and client_body_timeout, 60 s each). 408 request-timeout after it.
   */
  get bodyIdleMs(): number {
    return this.headTimeoutMs;
  }

  /** A request the sidecar will not forward (undiciExchange.ts unforwardable): 400, counted as the client's error. */
  private badRequest(res: ServerResponse, detail: string): void {
    this.metrics.madeUp.labels(this.name, 'bad-request').inc();
    sendMadeUp(res, 'bad-request', detail, true);
  }

  /** Applies OPEN_LIMIT limits (inbound); a bucket whose rate and burst stay keeps its tokens. */
  setLimits(limits: ListenerLimits | null): void {
    const rps = limits?.rps ?? 0;
    const burst = limits?.burst || rps;
    if (rps === 0) this.limiter = null;
    else if (this.limiter === null || this.limiter.rps !== rps || this.limiter.burst !== Math.max(1, burst))
      this.limiter = new TokenBucket(rps, burst);
    this.maxConnections = limits?.connections ?? 0;
  }

  rateLimited(): void {
    this.metrics.inboundLimited.labels(this.name, 'rps').inc();
  }

  connectionLimited(): void {
    this.metrics.inboundLimited.labels(this.name, 'connections').inc();
  }

  madeUp(dependency: string, error: ShoalError): void {
    this.metrics.madeUp.labels(dependency, error).inc();
  }

  clientGone(c: ClientConnection): void {
    this.clients.delete(c);
  }

  maybeCloseIdle(c: ClientConnection): void {
    c.closeIfIdle();
  }

  /** Drain, once the listener no longer accepts: closes connections between requests (or before their first), on both paths. */
  closeIdleConnections(): void {
    this.httpServer.closeIdleConnections();
    for (const c of this.clients) c.closeIfIdle();
  }

  /** Gateway API RequestRedirect: the Location for this request. */
  private location(route: CompiledRoute, req: IncomingMessage): string {
    return redirectLocation(
      route.redirect!,
      { scheme: 'http', authority: req.headers.host ?? '', target: req.url ?? '/' },
      route.matchedPrefix,
    );
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const start = performance.now();
    const bad = unforwardable(req);
    if (bad !== null) {
      req.resume();
      this.badRequest(res, bad);
      return;
    }
    const r = admit(this, peerOf(req.socket), req.method ?? '', req.url as string, req.headers.host, req.headers, start, true);
    if (r instanceof Reservation) {
      new UndiciExchange(req, res, this, r.backend, r.permit, start).dispatch();
      return;
    }
    req.resume();
    if (r instanceof Refusal) {
      if (r.retryAfterS > 0) res.setHeader('retry-after', String(r.retryAfterS));
      const status = sendMadeUp(res, r.error, r.detail, this.draining);
      r.backend?.stats.count(status);
      return;
    }
    if (this.draining) res.shouldKeepAlive = false;
    res.writeHead(r.redirect!.statusCode, r.redirectResponse(this.location(r, req)));
    res.end();
  }

  /** Closes every connection now, upgraded ones included. */
  destroyAll(): void {
    this.httpServer.closeAllConnections();
    for (const s of this.tunnels) s.destroy();
    for (const c of this.clients) c.socket.destroy();
  }

  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const start = performance.now();
    // Upgraded sockets leave node's connection tracking: keep them so drain and close can end them.
    this.tunnels.add(socket);
    (socket as Duplex & { [LISTENER]?: HttpListener })[LISTENER] = this;
    socket.once('close', onTunnelClose);
    const bad = unforwardable(req);
    if (bad !== null) {
      this.metrics.madeUp.labels(this.name, 'bad-request').inc();
      rawBadRequest(socket, bad);
      return;
    }
    // The same admission as every request (mesh authorization and the rate limit included); MaxRequests
    // counts a tunnel for its whole life (upgrade.ts), as the TCP path counts a connection.
    const r = admit(this, peerOf(req.socket), req.method ?? '', req.url as string, req.headers.host, req.headers, start, false);
    if (r instanceof Reservation) {
      new UpgradeRequest(req, socket, head, this, r.backend, r.permit, start).dispatch();
      return;
    }
    if (r instanceof Refusal) {
      const status = rawMadeUp(socket, r.error, r.detail, r.retryAfterS > 0 ? `retry-after: ${r.retryAfterS}\r\n` : '');
      r.backend?.stats.count(status);
      return;
    }
    const h = r.redirectResponse(this.location(r, req));
    let out = `HTTP/1.1 ${r.redirect!.statusCode} ${REDIRECT_REASON[r.redirect!.statusCode] ?? 'Found'}\r\n`;
    for (let i = 0; i < h.length; i += 2) out += `${h[i]}: ${h[i + 1]}\r\n`;
    if (socket.writable) socket.end(`${out}connection: close\r\n\r\n`);
  }
}

function rawBadRequest(socket: Duplex, detail: string): void {
  if (socket.writable) socket.end(madeUpHead('bad-request', detail, true), 'latin1');
}
