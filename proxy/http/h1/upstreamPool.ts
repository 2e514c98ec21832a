// Keep-alive connections to one endpoint for the fast path: idle ones are reused (most recent
// first), new ones opened up to the cluster's MaxConnections, waiters queued beyond that (up to the
// cluster's MaxPendingRequests); a connection closes after MaxRequestsPerConnection exchanges.
import type { Socket } from 'node:net';
import { meshConnect } from '../../tls/meshTls.ts';
import type { ClusterPolicy } from '../../../shared/snapshot.ts';
import type { Permit } from '../../cluster/permit.ts';
import type { Endpoint, EndpointPool } from '../../cluster/endpoint.ts';

/** What a connection reports to the exchange using it. */
export interface UpstreamUser {
  /** The request's permit: a place in the queue (MaxPendingRequests) is taken and given back through it. */
  readonly permit: Permit;
  /** A new connection is opening for this user (it is told again, by onUpstreamConnected, once open). */
  onUpstreamConnecting(conn: UpstreamConnection): void;
  onUpstreamConnected(conn: UpstreamConnection): void;
  onUpstreamData(conn: UpstreamConnection, chunk: Buffer): void;
  onUpstreamClosed(conn: UpstreamConnection, error: Error | null, timedOut: boolean): void;
}

const IDLE_TIMEOUT_MS = 4000;
const CONN = Symbol('shoal.upstream');
type TaggedSocket = Socket & { [CONN]?: UpstreamConnection };

function onConnect(this: TaggedSocket): void {
  const c = this[CONN];
  if (!c) return;
  c.connected = true;
  // The socket timer was the connect timeout. From here request deadlines are the exchange's (a shared
  // deadline queue, proxy/policy/deadlines.ts) and idle connections close in the pool's sweep.
  this.setTimeout(0);
  c.user?.onUpstreamConnected(c);
}
// Responses are read into one shared buffer (net's onread): no Buffer and no stream machinery per
// read. Safe because each read is handled to the end before the next; whoever keeps bytes copies them.
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

function onRead(c: UpstreamConnection, n: number, buf: Buffer): boolean {
  if (c.user) c.user.onUpstreamData(c, buf.subarray(0, n));
  else c.socket.destroy(); // bytes on an idle connection: the upstream is confused; do not reuse it
  return true;
}
function onError(this: TaggedSocket, err: Error): void {
  const c = this[CONN];
  if (c) c.error = err;
}
function onTimeout(this: TaggedSocket): void {
  const c = this[CONN];
  if (!c) {
    this.destroy();
    return;
  }
  if (!c.connected) {
    // Connect timeout. Judged after the poll phase: after an event loop stall, timers run before the
    // I/O that completed meanwhile, and a connect that succeeded must not be called a timeout.
    setImmediate(confirmConnectTimeout, c);
    return;
  }
  this.destroy();
}
function confirmConnectTimeout(c: UpstreamConnection): void {
  if (c.connected || c.closed) return;
  c.timedOut = c.user !== null;
  c.socket.destroy();
}
function onClose(this: TaggedSocket): void {
  const c = this[CONN];
  if (!c) return;
  c.closed = true;
  c.pool.forget(c);
  const u = c.user;
  c.user = null;
  u?.onUpstreamClosed(c, c.error, c.timedOut);
}

export class UpstreamConnection {
  readonly socket: TaggedSocket;
  readonly pool: UpstreamPool;
  user: UpstreamUser | null = null;
  connected = false;
  closed = false;
  timedOut = false;
  error: Error | null = null;
  /** Exchanges this connection has carried; > 0 means a reused one may have gone stale. */
  uses = 0;
  idleSince = 0;

  constructor(pool: UpstreamPool, host: string, port: number, connectTimeoutMs: number) {
    this.pool = pool;
    // One closure per connection (connections are reused), none per request.
    const s = meshConnect(pool.policy, {
      host,
      port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => onRead(this, n, buf as Buffer) },
    }) as TaggedSocket;
    s[CONN] = this;
    s.setTimeout(connectTimeoutMs);
    s.on('connect', onConnect);
    s.on('error', onError);
    s.on('timeout', onTimeout);
    s.on('close', onClose);
    this.socket = s;
  }
}

export class UpstreamPool implements EndpointPool {
  private readonly host: string;
  private readonly port: number;
  readonly policy: ClusterPolicy;
  private readonly idle: UpstreamConnection[] = [];
  private readonly waiting: UpstreamUser[] = [];
  private total = 0;
  private sweeper: NodeJS.Timeout | null = null;
  closing = false;

  constructor(host: string, port: number, policy: ClusterPolicy) {
    this.host = host;
    this.port = port;
    this.policy = policy;
  }

  // Idle connections older than IDLE_TIMEOUT_MS close here, once a second, not by a timer per connection.
  private sweep(): void {
    const now = performance.now();
    for (let i = this.idle.length - 1; i >= 0; i--) {
      if (now - this.idle[i].idleSince > IDLE_TIMEOUT_MS) this.idle.splice(i, 1)[0].socket.destroy();
    }
    if (this.idle.length === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /**
   * Gives the user a connection now (idle one) or later (new or freed one), via onUpstreamConnected.
   * False: every connection is busy and the cluster's MaxPendingRequests are already waiting.
   */
  acquire(user: UpstreamUser, fresh: boolean): boolean {
    if (!fresh) {
      while (this.idle.length > 0) {
        const c = this.idle.pop()!;
        if (c.closed) continue;
        c.user = user;
        c.uses++;
        user.onUpstreamConnected(c);
        return true;
      }
    }
    if (this.total < this.policy.maxConnections || fresh) {
      this.total++;
      const c = new UpstreamConnection(this, this.host, this.port, this.policy.connectTimeoutMs);
      c.user = user;
      user.onUpstreamConnecting(c);
      return true;
    }
    // MaxPendingRequests: a place in the queue is the request's permit's (proxy/cluster/permit.ts).
    if (!user.permit.enqueue()) return false;
    this.waiting.push(user);
    return true;
  }

  /** The user gave up waiting (deadline, client gone); true when it was still queued. */
  cancel(user: UpstreamUser): boolean {
    const i = this.waiting.indexOf(user);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    user.permit.dequeue();
    return true;
  }

  private nextWaiting(): UpstreamUser | undefined {
    const next = this.waiting.shift();
    next?.permit.dequeue();
    return next;
  }

  /** The exchange is done with the connection; keepAlive: it may carry another. */
  release(c: UpstreamConnection, keepAlive: boolean): void {
    c.user = null;
    const max = this.policy.maxRequestsPerConnection;
    if (!keepAlive || c.closed || this.closing || (max > 0 && c.uses + 1 >= max)) {
      c.socket.destroy();
      return;
    }
    const next = this.nextWaiting();
    if (next) {
      c.user = next;
      c.uses++;
      next.onUpstreamConnected(c);
      return;
    }
    c.idleSince = performance.now();
    this.idle.push(c);
    if (this.sweeper === null) {
      this.sweeper = setInterval(() => this.sweep(), 1000);
      this.sweeper.unref();
    }
  }

  forget(c: UpstreamConnection): void {
    this.total--;
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.waiting.length > 0 && this.total < this.policy.maxConnections && !this.closing) {
      const next = this.nextWaiting()!;
      this.acquire(next, true);
    }
  }

  /** The endpoint left its cluster: idle connections close now, busy ones when their exchange ends. */
  retire(): void {
    this.close();
  }

  /** As retire: an exchange in flight ends with its own connection. */
  destroy(): void {
    this.close();
  }

  /** Idle connections close now; busy ones when their exchange ends. */
  close(): void {
    this.closing = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    for (const c of this.idle.splice(0)) c.socket.destroy();
  }

  get busy(): number {
    return this.total - this.idle.length;
  }
}

const RAW = Symbol('shoal.pool.h1');

function make(e: Endpoint): UpstreamPool {
  return new UpstreamPool(e.address, e.port, e.policy);
}

/** The fast path's keep-alive connections to this endpoint, made on first use. */
export function rawPoolOf(e: Endpoint): UpstreamPool {
  return e.pool(RAW, make);
}
