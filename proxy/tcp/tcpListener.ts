// An L4 listener: per-connection balancing, bytes piped both ways with backpressure, half-close
// passed on (each direction ends on its own), connect timeout and idle timeout from the cluster policy.
// A failed or timed-out connect is reported to outlier detection and retried on another endpoint
// (RetryAttempts, MaxActiveRetries, the retry budget) before the client has sent a byte upstream;
// MaxConnections caps the cluster's connections; inbound listeners apply LIMIT_CONNECTIONS and
// LIMIT_RPS (new connections per second).
import { createServer, type Server, type Socket } from 'node:net';
import { meshConnect } from '../tls/meshTls.ts';
import type { Gauge, Counter } from 'prom-client';
import type { Logger } from '../../shared/log.ts';
import type { Route } from '../../shared/snapshot.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { ClusterSet } from '../cluster/clusterSet.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import { Permit, PermitKind } from '../cluster/permit.ts';
import type { ProxyMetrics } from '../metrics.ts';
import type { ListenerLimits } from '../listener/listenerSpec.ts';
import { TokenBucket } from '../policy/tokenBucket.ts';

/** The weighted clusters connections split over (an L4 listener has one route). */
export class TcpRoute {
  readonly clusters: Cluster[] = [];
  readonly opened: Counter.Internal[] = [];
  private readonly cumulative: number[] = [];
  private total = 0;

  constructor(route: Route | undefined, clusters: ClusterSet, metrics: ProxyMetrics, direction: string) {
    for (const b of route?.backends ?? []) {
      const c = clusters.get(b.cluster);
      if (!c || b.weight === 0) continue;
      this.total += b.weight;
      this.clusters.push(c);
      this.opened.push(metrics.connectionsTotal.labels(c.name, direction));
      this.cumulative.push(this.total);
    }
  }

  index(): number {
    const n = this.clusters.length;
    if (n <= 1) return n - 1;
    const r = Math.random() * this.total;
    for (let i = 0; i < n; i++) if (this.cumulative[i] > r) return i;
    return n - 1;
  }
}

const CONN = Symbol('shoal.tcp');
type TaggedSocket = Socket & { [CONN]?: TcpConnection };
type TaggedServer = Server & { [CONN]: TcpListener };

function onConnection(this: TaggedServer, socket: Socket): void {
  this[CONN].accept(socket);
}
function onUpstreamConnect(this: TaggedSocket): void {
  this[CONN]?.connected();
}
function onTimeout(this: TaggedSocket): void {
  this[CONN]?.timedOut(this);
}
function onError(this: TaggedSocket): void {
  const c = this[CONN];
  if (c === undefined) return;
  if (this === c.upstream && !c.isConnected) c.connectFailed(false);
  else c.destroy();
}
function destroySocket(this: Socket): void {
  this.destroy();
}
function onClose(this: TaggedSocket, hadError: boolean): void {
  this[CONN]?.closed(this, hadError);
}
// Bytes are moved by hand rather than with pipe(): fewer stream layers per chunk on the hot path.
function onData(this: TaggedSocket, chunk: Buffer): void {
  const c = this[CONN];
  if (!c) return;
  const peer = this === c.client ? c.upstream : c.client;
  if (!peer.write(chunk)) {
    this.pause();
    peer.once('drain', onPeerDrain);
  }
}
// Upstream bytes are read into one shared buffer (net's onread) and copied into the client write:
// no Readable machinery per read on that side. Returning false pauses the upstream until the client drains.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
function onUpstreamRead(c: TcpConnection, n: number, buf: Buffer): boolean {
  if (c.client.write(Buffer.from(buf.subarray(0, n)))) return true;
  c.client.once('drain', onPeerDrain);
  return false;
}

function onPeerDrain(this: TaggedSocket): void {
  const c = this[CONN];
  if (!c) return;
  (this === c.client ? c.upstream : c.client).resume();
}
// Half-close: one side's FIN is passed on as a FIN; the other direction stays open.
function onEnd(this: TaggedSocket): void {
  const c = this[CONN];
  if (!c) return;
  (this === c.client ? c.upstream : c.client).end();
}

function confirmConnectTimeout(c: TcpConnection, socket: TaggedSocket): void {
  if (socket === c.upstream && !c.isConnected && !socket.destroyed) c.connectFailed(true);
}

class TcpConnection {
  readonly client: TaggedSocket;
  upstream: TaggedSocket;
  readonly listener: TcpListener;
  readonly cluster: Cluster;
  endpoint: Endpoint;
  isConnected = false;
  /** The connection's hold on the cluster's MaxConnections and its endpoint's load (proxy/cluster/permit.ts); released when both sides closed. */
  private readonly permit: Permit;
  private open = 2;
  private attempts = 0;

  constructor(listener: TcpListener, client: Socket, permit: Permit) {
    this.listener = listener;
    this.permit = permit;
    this.cluster = permit.cluster;
    const endpoint = permit.endpoint!;
    this.endpoint = endpoint;
    this.client = client as TaggedSocket;
    this.client[CONN] = this;
    // The client waits until an upstream is connected: its first bytes must survive a retry elsewhere.
    client.pause();
    this.upstream = this.dial(endpoint);
    const c = this.client;
    c.on('timeout', onTimeout);
    c.on('error', onError);
    c.once('close', onClose);
    c.on('data', onData);
    c.on('end', onEnd);
    c.setNoDelay(true);
  }

  private dial(endpoint: Endpoint): TaggedSocket {
    const up = meshConnect(this.cluster.policy, {
      host: endpoint.address,
      port: endpoint.port,
      allowHalfOpen: true,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => onUpstreamRead(this, n, buf as Buffer) },
    }) as TaggedSocket;
    up[CONN] = this;
    up.setTimeout(this.cluster.policy.connectTimeoutMs);
    up.once('connect', onUpstreamConnect);
    up.on('timeout', onTimeout);
    up.on('error', onError);
    up.once('close', onClose);
    up.on('end', onEnd);
    return up;
  }

  connected(): void {
    this.isConnected = true;
    this.endpoint.consecutiveErrors = 0;
    this.permit.releaseRetry();
    this.attempts = -1; // connected: no more retries
    this.upstream.setTimeout(0);
    this.client.setTimeout(this.cluster.policy.tcpIdleTimeoutS * 1000);
    this.client.resume();
  }

  /** The upstream could not be reached: report it, then dial another endpoint or reset the client. */
  connectFailed(timedOut: boolean): void {
    const cluster = this.cluster;
    const failed = this.upstream;
    if (timedOut) cluster.stats.failConnectTimeout++;
    else cluster.stats.failConnect++;
    cluster.outlier.failure(this.endpoint);
    this.listener.log.debug({ listener: this.listener.name, upstream: this.endpoint.key, timedOut }, 'tcp connect failed');
    // A connect failure never reached the endpoint: always retriable, within RetryAttempts, MaxActiveRetries and the budget.
    if (this.attempts >= 0 && this.attempts < cluster.policy.retryAttempts && !this.client.destroyed) {
      const next = this.permit.tryRetry(performance.now()) ? cluster.pickOther(this.endpoint) : null;
      if (next !== null) {
        this.attempts++;
        failed[CONN] = undefined;
        failed.on('error', destroySocket);
        failed.destroy();
        this.permit.bind(next);
        this.endpoint = next;
        this.upstream = this.dial(next);
        return;
      }
    }
    this.client.resetAndDestroy();
    failed.destroy();
  }

  timedOut(socket: TaggedSocket): void {
    if (socket === this.upstream && !this.isConnected) {
      // Judged after the poll phase, so a connect that completed during an event loop stall counts.
      setImmediate(confirmConnectTimeout, this, socket);
      return;
    }
    // Idle in both directions for TCPIdleTimeout: close both.
    this.destroy();
  }

  destroy(): void {
    this.client.destroy();
    this.upstream.destroy();
  }

  closed(socket: TaggedSocket, hadError: boolean): void {
    if (--this.open === 1) {
      const other = socket === this.client ? this.upstream : this.client;
      // A side closed cleanly has passed its FIN on and taken ours: the other side is ending too and
      // must be left to flush what it still holds. After an error or reset, nothing more can follow.
      if (hadError || !other.writableEnded || this.upstream.connecting) other.destroy();
      return;
    }
    if (this.open === 0) {
      this.permit.release();
      this.listener.connectionClosed(this);
    }
  }
}

export class TcpListener {
  readonly name: string;
  readonly direction: 'inbound' | 'outbound';
  readonly log: Logger;
  readonly server: TaggedServer;
  route: TcpRoute;
  draining = false;
  /** Inbound LIMIT_RPS (new connections per second); null: none. */
  limiter: TokenBucket | null = null;
  /** Inbound LIMIT_CONNECTIONS; 0: none. */
  maxConnections = 0;
  private readonly metrics: ProxyMetrics;
  private readonly live = new Set<TcpConnection>();
  private readonly gauge: Gauge.Internal<'listener' | 'direction'>;

  constructor(name: string, direction: 'inbound' | 'outbound', route: TcpRoute, ctx: { log: Logger; metrics: ProxyMetrics }) {
    this.name = name;
    this.direction = direction;
    this.route = route;
    this.log = ctx.log;
    this.gauge = ctx.metrics.connections.labels(name, direction);
    this.metrics = ctx.metrics;
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }) as TaggedServer;
    server[CONN] = this;
    server.on('connection', onConnection);
    this.server = server;
  }

  get open(): number {
    return this.live.size;
  }

  setLimits(limits: ListenerLimits | null): void {
    const rps = limits?.rps ?? 0;
    const burst = limits?.burst || rps;
    if (rps === 0) this.limiter = null;
    else if (this.limiter === null || this.limiter.rps !== rps || this.limiter.burst !== Math.max(1, burst))
      this.limiter = new TokenBucket(rps, burst);
    this.maxConnections = limits?.connections ?? 0;
  }

  accept(socket: Socket): void {
    socket.on('error', onError);
    // No way to say why on a raw stream: each refusal below resets, so the client fails fast instead of hanging.
    if (this.maxConnections > 0 && this.live.size >= this.maxConnections) {
      this.metrics.inboundLimited.labels(this.name, 'connections').inc();
      socket.resetAndDestroy();
      return;
    }
    if (this.limiter !== null && !this.limiter.take(performance.now())) {
      this.metrics.inboundLimited.labels(this.name, 'rps').inc();
      socket.resetAndDestroy();
      return;
    }
    const r = this.route;
    const i = r.index();
    const cluster = i >= 0 ? r.clusters[i] : null;
    if (cluster === null) {
      socket.resetAndDestroy();
      return;
    }
    // MaxConnections before the pick, as MaxRequests on the L7 paths (proxy/l7/admission.ts).
    const permit = Permit.tryAcquire(cluster, PermitKind.Connection);
    if (permit === null) {
      socket.resetAndDestroy();
      return;
    }
    const endpoint = cluster.pick(undefined);
    if (endpoint === null) {
      permit.release();
      socket.resetAndDestroy();
      return;
    }
    permit.bind(endpoint);
    cluster.budget.request(performance.now());
    r.opened[i].inc();
    this.gauge.inc();
    this.live.add(new TcpConnection(this, socket, permit));
  }

  connectionClosed(c: TcpConnection): void {
    if (this.live.delete(c)) this.gauge.dec();
  }

  destroyAll(): void {
    for (const c of this.live) c.destroy();
  }
}
