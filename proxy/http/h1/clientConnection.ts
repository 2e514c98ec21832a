// A downstream connection on the fast path: reads request heads, runs one exchange at a time
// (pipelined requests wait their turn), and hands the connection to node:http the moment a request
// needs more than the fast path does (a body, an upgrade, HTTP/1.0, anything unusual).
import type { Socket } from 'node:net';
import type { HttpListener } from '../httpListener.ts';
import type { Cluster } from '../../cluster/cluster.ts';
import { Exchange, madeUpHead } from './exchange.ts';
import { parseRequestHead, rawHeader } from './requestHead.ts';
import { inboundDenied } from '../../tls/meshTls.ts';

const MAX_HEAD = 16 * 1024;

/**
 * The 503 overloaded answer of a cluster, built once per cluster and policy: a burst over
 * MaxRequests is answered from prebuilt bytes. Rebuilt when the cluster's policy object changes.
 */
const OVERLOADED = Symbol('shoal.overloaded');
type RefusingCluster = Cluster & { [OVERLOADED]?: { policy: Cluster['policy']; keep: Buffer; close: Buffer } };
function overloadedResponse(cluster: Cluster, close: boolean): Buffer {
  const c = cluster as RefusingCluster;
  let r = c[OVERLOADED];
  if (r === undefined || r.policy !== cluster.policy) {
    const detail = `${cluster.name} has MaxRequests (${cluster.policy.maxRequests}) in flight`;
    r = { policy: cluster.policy, keep: Buffer.from(madeUpHead('overloaded', detail, false), 'latin1'), close: Buffer.from(madeUpHead('overloaded', detail, true), 'latin1') };
    c[OVERLOADED] = r;
  }
  return close ? r.close : r.keep;
}
const CONN = Symbol('shoal.client');
type TaggedSocket = Socket & { [CONN]?: ClientConnection };

function onData(this: TaggedSocket, chunk: Buffer): void {
  this[CONN]?.onData(chunk);
}
function onDrain(this: TaggedSocket): void {
  this[CONN]?.exchange?.resumeUpstream();
}
function onClose(this: TaggedSocket): void {
  this[CONN]?.onClose();
}
function onError(this: TaggedSocket): void {
  this.destroy();
}
// The keep-alive idle timer runs for the connection's life (no per-request timer work); firing while
// an exchange is in flight means nothing, the next byte re-arms it.
function onTimeout(this: TaggedSocket): void {
  const c = this[CONN];
  if (c && c.exchange === null) this.destroy();
}

/** The fast-path connection a socket started on (also after it was handed to node:http). */
export function clientOf(socket: Socket): ClientConnection | undefined {
  return (socket as TaggedSocket)[CONN];
}

export class ClientConnection {
  readonly socket: TaggedSocket;
  readonly listener: HttpListener;
  readonly remoteAddress: string;
  exchange: Exchange | null = null;
  /** Requests in flight on node:http after the hand-over. */
  handedBusy = 0;
  private pending: Buffer | null = null;
  private handedOff = false;
  private closed = false;

  constructor(listener: HttpListener, socket: Socket) {
    this.listener = listener;
    this.socket = socket as TaggedSocket;
    this.socket[CONN] = this;
    this.remoteAddress = socket.remoteAddress ?? '';
    socket.setNoDelay(true);
    socket.setTimeout(listener.keepAliveTimeoutMs);
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('error', onError);
    socket.on('timeout', onTimeout);
  }

  /** Idle: no exchange in flight and nothing buffered. */
  get idle(): boolean {
    if (this.handedOff) return this.handedBusy === 0;
    return this.exchange === null && this.pending === null;
  }

  onData(chunk: Buffer): void {
    this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.exchange !== null) {
      // Pipelined bytes wait for the exchange in flight; stop reading if they pile up.
      if (this.pending.length > MAX_HEAD) this.socket.pause();
      return;
    }
    this.next();
  }

  private next(): void {
    const buf = this.pending;
    if (buf === null || this.closed) return;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) {
      if (buf.length > MAX_HEAD) this.handOff();
      return;
    }
    const head = parseRequestHead(buf, end);
    if (head === null) return this.handOff();
    this.pending = end + 4 === buf.length ? null : buf.subarray(end + 4);
    const start = performance.now();
    const denied = inboundDenied(this.socket, head.method, head.path); // mesh authorization policy (proxy/tls)
    if (denied !== null) {
      this.listener.madeUp(this.listener.name, 'denied');
      return this.respondMadeUp(madeUpHead('denied', denied, head.close || this.listener.draining), head.close || this.listener.draining);
    }
    const l = this.listener;
    if (l.limiter !== null && !l.limiter.take(start)) {
      l.rateLimited();
      return this.respondMadeUp(madeUpHead('rate-limited', `${l.name} allows ${l.limiter.rps} requests per second (LIMIT_RPS)`, head.close || l.draining, `retry-after: ${l.limiter.retryAfterS()}\r\n`), head.close || l.draining);
    }
    const route = l.table.match(head.host, head.path, head.raw);
    if (route === null) {
      l.madeUp(l.name, 'no-route');
      return this.respondMadeUp(madeUpHead('no-route', `no route on ${l.name} for host ${JSON.stringify(head.host ?? '')} path ${JSON.stringify(head.path)}`, head.close || l.draining), head.close || l.draining);
    }
    const backend = route.backend();
    const cluster = backend?.cluster;
    // MaxRequests: over it a request fails at once, it never queues; checked before the balancer
    // picks, so a refused request costs no pick (and does not move round robin on).
    if (backend !== null && cluster!.active >= cluster!.policy.maxRequests) {
      l.countOverloaded(backend);
      const close = head.close || l.draining;
      return this.respondMadeUp(overloadedResponse(cluster!, close), close);
    }
    const endpoint = cluster ? cluster.pick(cluster.hashHeader === '' ? undefined : rawHeader(head.raw, cluster.hashHeader)) : null;
    if (backend === null || endpoint === null) {
      const name = cluster?.name ?? route.name;
      l.madeUp(name, 'no-endpoints');
      if (backend) backend.stats.count(503);
      return this.respondMadeUp(madeUpHead('no-endpoints', `${name} has no endpoints`, head.close || l.draining), head.close || l.draining);
    }
    const ex = new Exchange(this, head, backend, endpoint, start);
    this.exchange = ex;
    ex.begin();
  }

  /** A made-up answer, as a latin1 string or prebuilt bytes (the encoding is ignored for a Buffer). */
  private respondMadeUp(response: string | Buffer, close: boolean): void {
    if (close) {
      this.socket.end(response, 'latin1');
      return;
    }
    this.socket.write(response, 'latin1');
    this.next();
  }

  waitDrain(): void {
    this.socket.once('drain', onDrain);
  }

  exchangeDone(ex: Exchange, close: boolean): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
    if (close) {
      this.socket.end();
      return;
    }
    if (this.socket.isPaused()) this.socket.resume();
    if (this.listener.draining && this.pending === null) {
      // Draining: the response said nothing about closing (it was already out); close when idle.
      this.listener.maybeCloseIdle(this);
      return;
    }
    this.next();
  }

  abortAfterBrokenResponse(ex: Exchange): void {
    if (this.exchange === ex) this.exchange = null;
    this.socket.destroy();
  }

  /** From here on node:http owns the connection; the bytes read so far are given back to it. */
  private handOff(): void {
    this.handedOff = true;
    const s = this.socket;
    s.removeListener('data', onData);
    s.removeListener('timeout', onTimeout);
    s.setTimeout(0);
    s.removeListener('drain', onDrain);
    if (this.pending !== null) s.unshift(this.pending);
    this.pending = null;
    this.listener.httpServer.emit('connection', s);
    if (s.isPaused()) s.resume();
  }

  onClose(): void {
    this.closed = true;
    this.handedBusy = 0;
    const ex = this.exchange;
    this.exchange = null;
    ex?.abort();
    this.listener.clientGone(this);
  }

  /** Closes the connection if it is between requests (drain). */
  closeIfIdle(): boolean {
    if (!this.idle) return false;
    this.socket.end();
    return true;
  }
}
