// Keep-alive connections to one endpoint for the fast path: idle ones are reused (most recent
// first), new ones opened up to the cluster's MaxConnections, waiters queued beyond that.
import { connect, type Socket } from 'node:net';
import type { ClusterPolicy } from '../../../shared/snapshot.ts';

/** What a connection reports to the exchange using it. */
export interface UpstreamUser {
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
  // From here the socket's idle timer is the request deadline: no bytes for RequestTimeoutMS while an
  // exchange waits means 504. It runs for the connection's life, so a request costs no timer work.
  this.setTimeout(c.pool.requestTimeoutMs);
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
  if (c.user) {
    c.timedOut = true;
    this.destroy();
  } else {
    this.destroy(); // idle too long
  }
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
    const s = connect({ host, port, noDelay: true, onread: { buffer: READ_BUFFER, callback: (n: number, buf: Uint8Array) => onRead(this, n, buf as Buffer) } }) as TaggedSocket;
    s[CONN] = this;
    s.setTimeout(connectTimeoutMs);
    s.on('connect', onConnect);
    s.on('error', onError);
    s.on('timeout', onTimeout);
    s.on('close', onClose);
    this.socket = s;
  }
}

export class UpstreamPool {
  private readonly host: string;
  private readonly port: number;
  private readonly policy: ClusterPolicy;
  private readonly idle: UpstreamConnection[] = [];
  private readonly waiting: UpstreamUser[] = [];
  private total = 0;
  private sweeper: NodeJS.Timeout | null = null;
  readonly requestTimeoutMs: number;
  closing = false;

  constructor(host: string, port: number, policy: ClusterPolicy) {
    this.host = host;
    this.port = port;
    this.policy = policy;
    this.requestTimeoutMs = policy.requestTimeoutMs;
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

  /** Gives the user a connection now (idle one) or later (new or freed one), via onUpstreamConnected. */
  acquire(user: UpstreamUser, fresh: boolean): void {
    if (!fresh) {
      while (this.idle.length > 0) {
        const c = this.idle.pop()!;
        if (c.closed) continue;
        c.user = user;
        c.uses++;
        user.onUpstreamConnected(c);
        return;
      }
    }
    if (this.total < this.policy.maxConnections || fresh) {
      this.total++;
      const c = new UpstreamConnection(this, this.host, this.port, this.policy.connectTimeoutMs);
      c.user = user;
      return;
    }
    this.waiting.push(user);
  }

  /** The exchange is done with the connection; keepAlive: it may carry another. */
  release(c: UpstreamConnection, keepAlive: boolean): void {
    c.user = null;
    if (!keepAlive || c.closed || this.closing) {
      c.socket.destroy();
      return;
    }
    const next = this.waiting.shift();
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
      const next = this.waiting.shift()!;
      this.acquire(next, true);
    }
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
