// Every listener of the applied snapshot, reconciled per snapshot: new ones bound, changed ones get a
// new route table in place (no rebind, no dropped connection), removed ones drain then close. The
// whole sidecar's drain (SIGTERM, POST /drain) keeps every listener accepting until traffic stops.
import { Server as NetServer } from 'node:net';
import type { Logger } from '../../shared/log.ts';
import type { AccessLog } from '../accessLog.ts';
import type { ClusterSet } from '../cluster/clusterSet.ts';
import { H2Listener } from '../h2/h2Listener.ts';
import { HttpListener } from '../http/httpListener.ts';
import { RouteTable } from '../l7/routeTable.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { TcpListener, TcpRoute } from '../tcp/tcpListener.ts';
import { bindFailure } from './bindConflict.ts';
import type { ListenerSpec } from './listenerSpec.ts';
import type { MeshTls } from '../tls/meshTls.ts';

const BIND_RETRY_MS = 1000;
// Idle keep-alive connections are closed only after this grace: a request already on the wire but
// not yet read must not meet a closing socket.
const IDLE_CLOSE_GRACE_MS = 500;
// The sidecar's drain stops accepting once it has seen no new connection, no new request and nothing
// in flight for this long: long enough to span a client's pause between requests, short enough that
// a sidecar with no traffic left (its app already exited) is gone in about a second.
export const DRAIN_QUIET_MS = 1000;
const DRAIN_POLL_MS = 50;

type Listener = HttpListener | TcpListener | H2Listener;

interface Entry {
  spec: ListenerSpec;
  listener: Listener;
  bound: boolean;
  retry: NodeJS.Timeout | null;
  /** Why the last bind failed (bindConflict.ts), until it binds. */
  error?: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * Stops accepting, lets work in flight finish (responses say Connection: close, HTTP/2 clients get a
 * final GOAWAY), then closes what is left. Idle connections close after idleGraceMs.
 */
export async function drainListener(l: Listener, timeoutMs: number, idleGraceMs = IDLE_CLOSE_GRACE_MS): Promise<void> {
  l.draining = true;
  // net's close only: http.Server#close would also cut idle keep-alive sockets at once.
  if (l.server.listening) NetServer.prototype.close.call(l.server);
  if (l instanceof H2Listener) l.closeSessions();
  const started = performance.now();
  for (;;) {
    const elapsed = performance.now() - started;
    if (!(l instanceof TcpListener) && (elapsed >= idleGraceMs || elapsed >= timeoutMs)) l.closeIdleConnections();
    if (l.open === 0) return;
    if (elapsed >= timeoutMs) {
      l.destroyAll();
      return;
    }
    await sleep(50);
  }
}

/** Inbound OPEN_LIMIT limits, on the listener kinds that enforce them. */
function setLimits(l: Listener, limits: ListenerSpec['limits']): void {
  if (l instanceof HttpListener || l instanceof TcpListener || l instanceof H2Listener) l.setLimits(limits);
}

export class ListenerSet {
  private readonly entries = new Map<string, Entry>();
  private readonly draining = new Set<Promise<void>>();
  private readonly ctx: { log: Logger; metrics: ProxyMetrics; accessLog: AccessLog | null };
  private readonly drainTimeoutMs: number;
  /** How long nothing new must come before a drain stops accepting (DRAIN_QUIET_MS; tests shorten it). */
  private readonly drainQuietMs: number;
  private readonly requestHeadTimeoutMs: number;
  private readonly requestReceiveTimeoutMs: number;
  private closed = false;
  /** The clusters of the applied snapshot: the drain reads what is in flight from them. */
  private clusters: ClusterSet | null = null;
  /** Workload identity (proxy/tls): the mTLS gate put in front of inbound listeners. */
  meshTls: MeshTls | null = null;

  constructor(ctx: {
    log: Logger;
    metrics: ProxyMetrics;
    accessLog: AccessLog | null;
    drainTimeoutMs: number;
    drainQuietMs?: number;
    requestHeadTimeoutMs?: number;
    requestReceiveTimeoutMs?: number;
  }) {
    this.ctx = ctx;
    this.drainTimeoutMs = ctx.drainTimeoutMs;
    this.drainQuietMs = ctx.drainQuietMs ?? DRAIN_QUIET_MS;
    this.requestHeadTimeoutMs = ctx.requestHeadTimeoutMs ?? 60_000;
    this.requestReceiveTimeoutMs = ctx.requestReceiveTimeoutMs ?? 300_000;
  }

  /** True when every listener of the applied snapshot is bound. */
  get allBound(): boolean {
    for (const e of this.entries.values()) if (!e.bound) return false;
    return true;
  }

  get size(): number {
    return this.entries.size;
  }

  status(): Array<{ name: string; key: string; mode: string; direction: string; bound: boolean; error?: string }> {
    return [...this.entries.values()].map((e) => ({
      name: e.spec.name,
      key: e.spec.key,
      mode: e.spec.mode,
      direction: e.spec.direction,
      bound: e.bound,
      ...(e.bound || !e.error ? {} : { error: e.error }),
    }));
  }

  /** Inbound limits as applied (/config_dump): 0 = unlimited. */
  limits(): Array<{
    listener: string;
    key: string;
    limitRps: number;
    limitBurst: number;
    limitConnections: number;
    openConnections: number;
  }> {
    const out = [];
    for (const e of this.entries.values()) {
      if (e.spec.direction !== 'inbound') continue;
      const l = e.listener;
      if (!(l instanceof HttpListener || l instanceof TcpListener)) continue;
      const rps = l.limiter?.rps ?? 0;
      out.push({
        listener: e.spec.name,
        key: e.spec.key,
        limitRps: rps,
        limitBurst: rps === 0 ? 0 : l.limiter!.burst,
        limitConnections: l.maxConnections,
        openConnections: l.open,
      });
    }
    return out;
  }

  /** Reconciles to specs. Resolves when every new listener has had its first bind attempt. */
  async apply(specs: readonly ListenerSpec[], clusters: ClusterSet): Promise<void> {
    if (this.closed) return;
    this.clusters = clusters;
    const wanted = new Map(specs.map((s) => [s.key, s]));
    for (const [key, e] of this.entries) {
      const s = wanted.get(key);
      if (s && s.mode === e.spec.mode && s.direction === e.spec.direction) continue;
      this.entries.delete(key);
      this.retire(e);
    }
    const binds: Promise<void>[] = [];
    for (const s of specs) {
      const e = this.entries.get(s.key);
      if (e) {
        e.spec = s;
        if (e.listener instanceof HttpListener || e.listener instanceof H2Listener)
          e.listener.table = new RouteTable(s.name, s.routes, clusters, this.ctx.metrics);
        else e.listener.route = new TcpRoute(s.routes[0], clusters, this.ctx.metrics, s.direction);
        setLimits(e.listener, s.limits);
        continue;
      }
      const listener =
        s.mode === 'h2'
          ? new H2Listener(s.name, s.direction, new RouteTable(s.name, s.routes, clusters, this.ctx.metrics), this.ctx, this.drainTimeoutMs)
          : s.mode === 'l7'
            ? new HttpListener(s.name, s.direction, new RouteTable(s.name, s.routes, clusters, this.ctx.metrics), this.ctx)
            : new TcpListener(s.name, s.direction, new TcpRoute(s.routes[0], clusters, this.ctx.metrics, s.direction), this.ctx);
      setLimits(listener, s.limits);
      if (listener instanceof HttpListener || listener instanceof H2Listener) listener.requestHeadTimeoutMs = this.requestHeadTimeoutMs;
      if (listener instanceof HttpListener) listener.bodyReceiveMs = this.requestReceiveTimeoutMs;
      const entry: Entry = { spec: s, listener, bound: false, retry: null };
      if (s.direction === 'inbound') this.meshTls?.guardInbound(listener.server, s.port);
      this.entries.set(s.key, entry);
      binds.push(this.bind(entry));
    }
    await Promise.all(binds);
  }

  private bind(e: Entry): Promise<void> {
    return new Promise((resolve) => {
      const server = e.listener.server;
      const onError = (err: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        this.ctx.metrics.listenerErrors.labels(e.spec.name).inc();
        e.error = bindFailure(err, e.spec.address, e.spec.port);
        this.ctx.log.error(
          { listener: e.spec.name, address: e.spec.key, error: e.error },
          `cannot bind ${e.spec.key}; retrying every ${BIND_RETRY_MS} ms, not ready until bound`,
        );
        if (this.entries.get(e.spec.key) === e && !this.closed) {
          e.retry = setTimeout(() => {
            e.retry = null;
            if (this.entries.get(e.spec.key) === e && !this.closed) void this.bind(e);
          }, BIND_RETRY_MS);
          e.retry.unref();
        }
        resolve();
      };
      const onListening = () => {
        server.off('error', onError);
        e.bound = true;
        e.error = undefined;
        this.ctx.log.debug({ listener: e.spec.name, address: e.spec.key, mode: e.spec.mode }, 'listener bound');
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen({ host: e.spec.address, port: e.spec.port, exclusive: true });
    });
  }

  private retire(e: Entry): void {
    if (e.retry) clearTimeout(e.retry);
    e.retry = null;
    if (!e.bound) {
      e.listener.server.close();
      return;
    }
    const p = drainListener(e.listener, this.drainTimeoutMs).finally(() => this.draining.delete(p));
    this.draining.add(p);
  }

  /**
   * The sidecar's drain (SIGTERM, POST /drain). Every listener keeps accepting, and discourages:
   * HTTP/1 responses say Connection: close, HTTP/2 clients get a GOAWAY that still takes every stream
   * they have sent (a new session gets it after its first stream), TCP is served as before. Clients
   * that have not yet learned the pod is going (an endpoint list not yet updated, an app still
   * shutting down) are served rather than refused. Once nothing has come or been in flight for
   * DRAIN_QUIET_MS, or half the timeout has passed under load that never stops (so the last
   * requests taken have the other half), the listeners stop accepting and what is in flight gets
   * until the timeout.
   */
  async drain(timeoutMs = this.drainTimeoutMs): Promise<void> {
    this.closed = true;
    const started = performance.now();
    const open: Listener[] = [];
    for (const e of this.entries.values()) {
      if (e.retry) clearTimeout(e.retry);
      if (e.bound) open.push(e.listener);
      else e.listener.server.close();
    }
    let lastSeen = started;
    const seen = () => {
      lastSeen = performance.now();
    };
    // Only while draining: a listener of its own on each server marks every new connection.
    for (const l of open) {
      l.draining = true;
      l.server.prependListener('connection', seen);
    }
    const acceptUntil = started + timeoutMs / 2;
    let picks = this.picks();
    // No listener bound (no snapshot yet): nothing to keep accepting on.
    let quiet = open.length === 0;
    while (!quiet) {
      const now = performance.now();
      if (now - lastSeen >= this.drainQuietMs) {
        quiet = true;
        break;
      }
      if (now >= acceptUntil) break;
      await sleep(Math.min(DRAIN_POLL_MS, acceptUntil - now));
      const p = this.picks();
      if (p !== picks || this.inFlight() > 0) seen();
      picks = p;
    }
    for (const l of open) l.server.removeListener('connection', seen);
    const left = Math.max(0, started + timeoutMs - performance.now());
    const why =
      open.length === 0
        ? 'no listener bound'
        : quiet
          ? `nothing new for ${this.drainQuietMs} ms`
          : 'traffic still coming at half the drain timeout';
    this.ctx.log.info(
      { quiet, acceptedForMs: Math.round(performance.now() - started), leftMs: Math.round(left) },
      `drain: ${why}, no longer accepting`,
    );
    // Quiet for a second: an idle connection is not about to carry a request, no grace needed.
    await Promise.all([...this.draining, ...open.map((l) => drainListener(l, left, quiet ? 0 : IDLE_CLOSE_GRACE_MS))]);
  }

  /**
   * Endpoints picked so far over every cluster (a first attempt, a retry, a TCP connection): grows
   * with every routed request, read from counters the request path keeps anyway.
   */
  private picks(): number {
    let n = 0;
    if (this.clusters) for (const c of this.clusters.values()) for (const x of c.stats.byLocality) n += x;
    return n;
  }

  /** Requests, tunnels and TCP connections in flight over every cluster (the MaxRequests/MaxConnections count). */
  private inFlight(): number {
    let n = 0;
    if (this.clusters) for (const c of this.clusters.values()) n += c.active;
    return n;
  }

  /** Closes every listener and connection now. */
  destroy(): void {
    this.closed = true;
    for (const e of this.entries.values()) {
      if (e.retry) clearTimeout(e.retry);
      e.listener.server.close();
      e.listener.destroyAll();
    }
    this.entries.clear();
  }
}
