// A downstream connection on the fast path: reads request heads, runs one exchange at a time
// (pipelined requests wait their turn), and hands the connection to node:http the moment a request
// needs more than the fast path does (a body, an upgrade, HTTP/1.0, anything unusual).
import type { Socket } from 'node:net';
import type { HttpListener } from '../httpListener.ts';
import type { Cluster } from '../../cluster/cluster.ts';
import { Exchange } from './exchange.ts';
import { parseRequestHead, type RequestHead } from './requestHead.ts';
import { peerOf } from '../../tls/meshTls.ts';
import { admit, overloadedDetail, Refusal, Reservation } from '../../l7/admission.ts';
import { ERROR_STATUS, madeUpHead } from '../../l7/madeUpResponse.ts';
import { REDIRECT_REASON, redirectLocation } from '../../l7/routeFilters.ts';

const MAX_HEAD = 16 * 1024;
/**
 * Bytes queued for the client above which the connection stops answering pipelined requests and
 * stops reading until the client has read (a client that pipelines without reading costs at most
 * this much, plus one read of input).
 */
const OUTPUT_HIGH_WATER = 64 * 1024;
/** Answered the same way node:http answers a head that took longer than its headersTimeout. */
const HEAD_TIMEOUT_RESPONSE = 'HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n';

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
    const detail = overloadedDetail(cluster);
    r = {
      policy: cluster.policy,
      keep: Buffer.from(madeUpHead('overloaded', detail, false), 'latin1'),
      close: Buffer.from(madeUpHead('overloaded', detail, true), 'latin1'),
    };
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
  this[CONN]?.onDrain();
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
function onHeadTimeout(c: ClientConnection): void {
  c.headTimedOut();
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
  /** Answers are waiting for the client to read (output above OUTPUT_HIGH_WATER): nothing new is started. */
  private blocked = false;
  /** The connection was ended after an answer that closes it: later bytes are not requests. */
  private ending = false;
  /** Armed while a request head has started but not ended (a head split over reads: rare). */
  private headTimer: NodeJS.Timeout | null = null;

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
    socket.on('drain', onDrain);
  }

  /** Idle: no exchange in flight and nothing buffered. */
  get idle(): boolean {
    if (this.handedOff) return this.handedBusy === 0;
    return this.exchange === null && this.pending === null;
  }

  onData(chunk: Buffer): void {
    if (this.ending) return;
    this.pending = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    if (this.exchange !== null || this.blocked) {
      // Pipelined bytes wait for the exchange in flight (or for the client to read); stop reading if they pile up.
      if (this.pending.length > MAX_HEAD) this.socket.pause();
      return;
    }
    this.next();
  }

  /** The client read what was queued for it: the exchange's upstream may send again, and waiting requests go on. */
  onDrain(): void {
    this.exchange?.resumeUpstream();
    if (!this.blocked) return;
    this.blocked = false;
    if (this.socket.isPaused()) this.socket.resume();
    if (this.exchange === null) this.next();
  }

  /**
   * Starts the requests buffered so far, one after another: a loop, not recursion, however many
   * pipelined requests get a made-up answer. Stops at a request that goes upstream (exchangeDone calls
   * back), at an incomplete head, or while the answers already queued for the client exceed
   * OUTPUT_HIGH_WATER (onDrain calls back).
   */
  private next(): void {
    for (;;) {
      const buf = this.pending;
      if (buf === null || this.closed || this.ending) return;
      if (this.socket.writableLength > OUTPUT_HIGH_WATER) {
        this.blocked = true;
        this.socket.pause();
        return;
      }
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buf.length > MAX_HEAD) return this.handOff();
        if (this.headTimer === null) {
          this.headTimer = setTimeout(onHeadTimeout, this.listener.requestHeadTimeoutMs, this);
          this.headTimer.unref();
        }
        return;
      }
      if (this.headTimer !== null) {
        clearTimeout(this.headTimer);
        this.headTimer = null;
      }
      const head = parseRequestHead(buf, end);
      if (head === null) return this.handOff();
      this.pending = end + 4 === buf.length ? null : buf.subarray(end + 4);
      const response = this.admit(head);
      if (response === null) return; // an exchange started
      const close = head.close || this.listener.draining;
      if (close) {
        this.endWith(response);
        return;
      }
      this.socket.write(response, 'latin1');
    }
  }

  /**
   * Admission of one request (proxy/l7/admission.ts). Returns the made-up answer (a latin1 string or
   * prebuilt bytes) when it is refused or redirected, or null once its exchange has started.
   */
  private admit(head: RequestHead): string | Buffer | null {
    const start = performance.now();
    const l = this.listener;
    const r = admit(l, peerOf(this.socket), head.method, head.path, head.host, head.raw, start, false);
    if (r instanceof Reservation) {
      const ex = new Exchange(this, head, r.backend, r.permit, start);
      this.exchange = ex;
      ex.begin();
      return null;
    }
    const close = head.close || l.draining;
    if (r instanceof Refusal) {
      r.backend?.stats.count(ERROR_STATUS[r.error]);
      if (r.error === 'overloaded') return overloadedResponse(r.backend!.cluster, close);
      return madeUpHead(r.error, r.detail, close, r.retryAfterS > 0 ? `retry-after: ${r.retryAfterS}\r\n` : '');
    }
    // Gateway API RequestRedirect: the sidecar answers itself.
    const location = redirectLocation(r.redirect!, { scheme: 'http', authority: head.host, target: head.path }, r.matchedPrefix);
    const status = r.redirect!.statusCode;
    const h = r.redirectResponse(location);
    let out = `HTTP/1.1 ${status} ${REDIRECT_REASON[status] ?? 'Found'}\r\n`;
    for (let i = 0; i < h.length; i += 2) out += `${h[i]}: ${h[i + 1]}\r\n`;
    return `${out}${close ? 'connection: close\r\n' : ''}\r\n`;
  }

  /** The head begun --request-head-timeout ago has not ended: answer 408 and close, as node:http does. */
  headTimedOut(): void {
    this.headTimer = null;
    if (this.closed || this.handedOff || this.exchange !== null) return;
    this.endWith(HEAD_TIMEOUT_RESPONSE);
  }

  /** The last answer on this connection: nothing read after it is served. */
  private endWith(response: string | Buffer): void {
    this.ending = true;
    this.pending = null;
    this.socket.end(response, 'latin1');
  }

  exchangeDone(ex: Exchange, close: boolean): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
    if (close) {
      this.ending = true;
      this.pending = null;
      this.socket.end();
      return;
    }
    if (this.socket.isPaused() && !this.blocked) this.socket.resume();
    if (this.listener.draining && this.pending === null && !this.listener.server.listening) {
      // No longer accepting: the response said nothing about closing (it was already out); close when
      // idle. While the listener still accepts, the connection stays: the client's next request on it
      // is answered with Connection: close, where closing now could cross a request it is sending.
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
    this.blocked = false;
    if (this.headTimer !== null) {
      clearTimeout(this.headTimer);
      this.headTimer = null;
    }
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
    if (this.headTimer !== null) {
      clearTimeout(this.headTimer);
      this.headTimer = null;
    }
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
