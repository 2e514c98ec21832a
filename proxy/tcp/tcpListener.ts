// An L4 listener: per-connection balancing, bytes piped both ways with backpressure, half-close
// passed on (each direction ends on its own), connect timeout and idle timeout from the cluster policy.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Gauge, Counter } from 'prom-client';
import type { Logger } from '../../shared/log.ts';
import type { Route } from '../../shared/snapshot.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { ClusterSet } from '../cluster/clusterSet.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import type { ProxyMetrics } from '../metrics.ts';

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
  this[CONN]?.destroy();
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

class TcpConnection {
  readonly client: TaggedSocket;
  readonly upstream: TaggedSocket;
  readonly listener: TcpListener;
  readonly cluster: Cluster;
  readonly endpoint: Endpoint;
  private isConnected = false;
  private open = 2;

  constructor(listener: TcpListener, client: Socket, cluster: Cluster, endpoint: Endpoint) {
    this.listener = listener;
    this.cluster = cluster;
    this.endpoint = endpoint;
    this.client = client as TaggedSocket;
    this.client[CONN] = this;
    endpoint.active++;
    cluster.active++;
    const up = connect({
      host: endpoint.address, port: endpoint.port, allowHalfOpen: true, noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => onUpstreamRead(this, n, buf as Buffer) },
    }) as TaggedSocket;
    up[CONN] = this;
    this.upstream = up;
    up.setTimeout(cluster.policy.connectTimeoutMs);
    up.once('connect', onUpstreamConnect);
    const c = this.client;
    c.on('timeout', onTimeout);
    c.on('error', onError);
    c.once('close', onClose);
    c.on('data', onData);
    c.on('end', onEnd);
    up.on('timeout', onTimeout);
    up.on('error', onError);
    up.once('close', onClose);
    up.on('end', onEnd);
    c.setNoDelay(true);
  }

  connected(): void {
    this.isConnected = true;
    this.upstream.setTimeout(0);
    this.client.setTimeout(this.cluster.policy.tcpIdleTimeoutS * 1000);
  }

  timedOut(socket: TaggedSocket): void {
    if (socket === this.upstream && !this.isConnected) {
      this.listener.log.debug({ listener: this.listener.name, upstream: this.endpoint.key }, 'tcp connect timeout');
      this.client.resetAndDestroy();
      this.upstream.destroy();
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
      this.endpoint.active--;
      this.cluster.active--;
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
  private readonly live = new Set<TcpConnection>();
  private readonly gauge: Gauge.Internal<'listener' | 'direction'>;

  constructor(name: string, direction: 'inbound' | 'outbound', route: TcpRoute, ctx: { log: Logger; metrics: ProxyMetrics }) {
    this.name = name;
    this.direction = direction;
    this.route = route;
    this.log = ctx.log;
    this.gauge = ctx.metrics.connections.labels(name, direction);
    const server = createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }) as TaggedServer;
    server[CONN] = this;
    server.on('connection', onConnection);
    this.server = server;
  }

  get open(): number {
    return this.live.size;
  }

  accept(socket: Socket): void {
    socket.on('error', onError);
    const r = this.route;
    const i = r.index();
    const cluster = i >= 0 ? r.clusters[i] : null;
    const endpoint = cluster ? cluster.pick(undefined) : null;
    if (cluster === null || endpoint === null) {
      // No way to say why on a raw stream: reset, so the client fails fast instead of hanging.
      socket.resetAndDestroy();
      return;
    }
    r.opened[i].inc();
    this.gauge.inc();
    this.live.add(new TcpConnection(this, socket, cluster, endpoint));
  }

  connectionClosed(c: TcpConnection): void {
    if (this.live.delete(c)) this.gauge.dec();
  }

  destroyAll(): void {
    for (const c of this.live) c.destroy();
  }
}
