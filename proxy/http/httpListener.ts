// An L7 listener (outbound dependency or inbound port): accept, route, balance, forward.
// Connections start on the fast path (h1/clientConnection.ts: bodiless requests, the common case);
// a request it does not take (body, upgrade, HTTP/1.0, oddities) moves the connection to node:http
// with undici upstream (forward.ts, upgrade.ts). The route table is swapped whole on a new snapshot;
// requests in flight keep the objects they hold.
import { createRequire } from 'node:module';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../shared/log.ts';
import type { AccessLog } from '../accessLog.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { ForwardRequest, unforwardable, type ForwardSite } from './forward.ts';
import { sendMadeUp } from './madeUpResponse.ts';
import type { CompiledRoute, RouteBackend, RouteTable } from './routeTable.ts';
import { rawMadeUp, UpgradeRequest } from './upgrade.ts';
import { ClientConnection } from './h1/clientConnection.ts';
import { inboundDenied } from '../tls/meshTls.ts';
import type { Gauge } from 'prom-client';
import type { ShoalError } from './madeUpResponse.ts';
import { madeUpHead } from './h1/exchange.ts';
import { REDIRECT_REASON, redirectLocation } from '../l7/routeFilters.ts';
import { TokenBucket } from '../policy/tokenBucket.ts';
import type { ListenerLimits } from '../listener/listenerSpec.ts';

// node:http through require: an ESM import of it builds its full namespace, whose lazy getters load
// node's bundled undici (about 14 MB of RSS in a process that never uses it).
const { createServer } = createRequire(import.meta.url)('node:http') as typeof import('node:http');

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
  private readonly metrics: ProxyMetrics;

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
    // (forward.ts), not by node's 5 minutes. headersTimeout: the request head bound, as on the fast path.
    const http = createServer({
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

  /** A request the sidecar will not forward (forward.ts unforwardable): 400, counted as the client's error. */
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

  /** Counts a request refused over its cluster's MaxRequests (503 overloaded), on any of the three HTTP/1 paths. */
  countOverloaded(backend: RouteBackend): void {
    backend.cluster.stats.overflowMaxRequests++;
    this.madeUp(backend.cluster.name, 'overloaded');
    backend.stats.count(503);
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

  private route(req: IncomingMessage): CompiledRoute | null {
    return this.table.match(req.headers.host, req.url as string, req.headers, req.method ?? '');
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
    const denied = inboundDenied(req.socket, req.method, req.url); // mesh authorization policy (proxy/tls)
    if (denied !== null) {
      req.resume();
      this.metrics.madeUp.labels(this.name, 'denied').inc();
      sendMadeUp(res, 'denied', denied, this.draining);
      return;
    }
    if (this.limiter !== null && !this.limiter.take(start)) {
      req.resume();
      this.rateLimited();
      res.setHeader('retry-after', String(this.limiter.retryAfterS()));
      sendMadeUp(res, 'rate-limited', `${this.name} allows ${this.limiter.rps} requests per second (LIMIT_RPS)`, this.draining);
      return;
    }
    const route = this.route(req);
    if (route === null) {
      req.resume();
      this.metrics.madeUp.labels(this.name, 'no-route').inc();
      sendMadeUp(
        res,
        'no-route',
        `no route on ${this.name} for host ${JSON.stringify(req.headers.host ?? '')} path ${JSON.stringify(req.url)}`,
        this.draining,
      );
      return;
    }
    if (route.redirect !== null) {
      req.resume();
      if (this.draining) res.shouldKeepAlive = false;
      res.writeHead(route.redirect.statusCode, route.redirectResponse(this.location(route, req)));
      res.end();
      return;
    }
    const backend = route.backend();
    if (backend === null && route.noBackendIs500) {
      req.resume();
      this.metrics.madeUp.labels(route.name, 'no-backend').inc();
      sendMadeUp(res, 'no-backend', route.noBackendDetail(), this.draining);
      return;
    }
    const cluster = backend?.cluster;
    const endpoint = cluster ? cluster.pick(cluster.hashHeader === '' ? undefined : header(req, cluster.hashHeader)) : null;
    if (backend === null || endpoint === null) {
      req.resume();
      const name = cluster?.name ?? route.name;
      this.metrics.madeUp.labels(name, 'no-endpoints').inc();
      sendMadeUp(res, 'no-endpoints', `${name} has no endpoints`, this.draining);
      if (backend) backend.stats.count(503);
      return;
    }
    // MaxRequests, as on the fast path (h1/clientConnection.ts).
    if (cluster!.active >= cluster!.policy.maxRequests) {
      req.resume();
      this.countOverloaded(backend);
      sendMadeUp(res, 'overloaded', `${cluster!.name} has MaxRequests (${cluster!.policy.maxRequests}) in flight`, this.draining);
      return;
    }
    new ForwardRequest(req, res, this, backend, endpoint, start).dispatch();
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
    const route = this.route(req);
    if (route === null) {
      rawMadeUp(socket, 'no-route', `no route on ${this.name} for ${req.url}`);
      return;
    }
    if (route.redirect !== null) {
      const h = route.redirectResponse(this.location(route, req));
      let head = `HTTP/1.1 ${route.redirect.statusCode} ${REDIRECT_REASON[route.redirect.statusCode] ?? 'Found'}\r\n`;
      for (let i = 0; i < h.length; i += 2) head += `${h[i]}: ${h[i + 1]}\r\n`;
      if (socket.writable) socket.end(`${head}connection: close\r\n\r\n`);
      return;
    }
    const backend = route.backend();
    if (backend === null && route.noBackendIs500) {
      this.metrics.madeUp.labels(route.name, 'no-backend').inc();
      rawMadeUp(socket, 'no-backend', route.noBackendDetail());
      return;
    }
    const cluster = backend?.cluster;
    // MaxRequests counts a tunnel for its whole life (upgrade.ts), as the TCP path counts a connection.
    if (backend !== null && cluster!.active >= cluster!.policy.maxRequests) {
      this.countOverloaded(backend);
      rawMadeUp(socket, 'overloaded', `${cluster!.name} has MaxRequests (${cluster!.policy.maxRequests}) in flight`);
      return;
    }
    const endpoint = cluster ? cluster.pick(cluster.hashHeader === '' ? undefined : header(req, cluster.hashHeader)) : null;
    if (backend === null || endpoint === null) {
      rawMadeUp(socket, 'no-endpoints', `${cluster?.name ?? route.name} has no endpoints`);
      return;
    }
    new UpgradeRequest(req, socket, head, this, backend, endpoint, start).dispatch();
  }
}

function rawBadRequest(socket: Duplex, detail: string): void {
  const body = `400 bad-request: ${detail}\n`;
  if (socket.writable)
    socket.end(
      `HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-shoal-error: bad-request\r\nconnection: close\r\n\r\n${body}`,
    );
}

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}
