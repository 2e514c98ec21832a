// One request/response on the fast path: head written upstream as one string, response head
// parsed and rewritten, body bytes forwarded as they come (chunked framing included) with
// backpressure both ways. A handler object per request; no closures. Resilience lives here too:
// the request deadline (a shared deadline queue, no timer per request), retries on another endpoint
// (connect failures always; resets, timeouts and 502/503/504 for idempotent methods or when the
// route allows), within MaxActiveRetries and the cluster's retry budget, and outlier reports.
import type { Endpoint } from '../../cluster/endpoint.ts';
import { disarm, TryDeadline, type DeadlineHolder, type DeadlineQueue } from '../../policy/deadlines.ts';
import { classify, Hop } from '../../l7/hopByHop.ts';
import { ERROR_STATUS, madeUpHead, type ShoalError } from '../../l7/madeUpResponse.ts';
import { nextRequestId } from '../../l7/requestId.ts';
import { forwardedClientCert } from '../../tls/meshTls.ts';
import type { RouteBackend } from '../../l7/routeTable.ts';
import { ChunkedScanner } from './chunkedScanner.ts';
import { Framing, incompleteHeadError, parseResponseHead } from './responseHead.ts';
import type { ClientConnection } from './clientConnection.ts';
import type { RequestHead } from './requestHead.ts';
import { rawPoolOf, type UpstreamConnection, type UpstreamUser } from './upstreamPool.ts';
import { tracer, type RequestTrace } from '../../tracing/tracer.ts';
import { rewriteAuthority, rewriteTarget, sampled } from '../../l7/routeFilters.ts';
import { mirrorH1 } from '../../l7/mirror.ts';
import { Failure, retryAllowed } from '../../l7/retry.ts';
import type { Permit } from '../../cluster/permit.ts';

function onBackoffOver(ex: Exchange): void {
  ex.backoffOver();
}

const SINGLE_WRITE_MAX = 16 * 1024;
const BODY_NONE = Framing.None;
const BODY_LENGTH = Framing.Length;
const BODY_CHUNKED = Framing.Chunked;
const BODY_UNTIL_CLOSE = Framing.UntilClose;

export class Exchange implements UpstreamUser, DeadlineHolder {
  readonly client: ClientConnection;
  readonly head: RequestHead;
  readonly backend: RouteBackend;
  /** The request's hold on its cluster's limits and its endpoint's load (proxy/cluster/permit.ts); released in finish. */
  readonly permit: Permit;
  /** The endpoint of the current (or last) attempt. */
  endpoint: Endpoint;
  readonly start: number;
  requestId = '';
  deadlineAt = 0;
  deadlineNext: DeadlineHolder | null = null;
  deadlinePrev: DeadlineHolder | null = null;
  deadlineQueue: DeadlineQueue | null = null;
  /** Retries made so far. */
  private attempts = 0;
  /** The current attempt's PerTryTimeoutMS deadline (a holder of its own: proxy/policy/deadlines.ts); null when the cluster has none. */
  private tryDeadline: TryDeadline | null = null;
  /** Waiting in the endpoint pool's queue for a connection. */
  private queued = false;
  private upstream: UpstreamConnection | null = null;
  private upstreamHead = '';
  private retried = false;
  private gotBytes = false;
  private headBuf: Buffer | null = null;
  private status = 0;
  private bodyMode: Framing = BODY_NONE;
  private remaining = 0;
  private scanner: ChunkedScanner | null = null;
  private upstreamKeepAlive = true;
  private closeClient = false;
  private done = false;
  private error: ShoalError | '' = '';
  /** Sampled or propagated trace (proxy/tracing); null when tracing is off. */
  private trace: RequestTrace | null = null;

  constructor(client: ClientConnection, head: RequestHead, backend: RouteBackend, permit: Permit, start: number) {
    this.client = client;
    this.head = head;
    this.backend = backend;
    this.permit = permit;
    this.endpoint = permit.endpoint!;
    this.start = start;
  }

  begin(): void {
    if (tracer !== null) this.trace = tracer.beginRaw(this.head.raw, this.start, this.client.listener, false);
    this.upstreamHead = this.buildUpstreamHead();
    // RequestTimeoutMS counts from the request's arrival over every attempt: armed once, here.
    this.backend.deadlines?.arm(this, this.start);
    const tq = this.backend.tryDeadlines;
    if (tq !== null) {
      this.tryDeadline = new TryDeadline(this, tq);
      tq.arm(this.tryDeadline, this.start);
    }
    this.acquire();
  }

  private acquire(): void {
    this.queued = true;
    if (rawPoolOf(this.endpoint).acquire(this, false)) return;
    this.queued = false;
    disarm(this);
    this.fail(
      'circuit-open',
      `${this.backend.cluster.name}: every connection MaxConnections allows to ${this.endpoint.key} is busy and MaxPendingRequests (${this.backend.cluster.policy.maxPendingRequests}) are waiting`,
    );
  }

  /**
   * RequestTimeoutMS passed since the request arrived with no response head (or, mid-body, with no
   * byte) from the upstream. The request's time is up: no retry (retryAllowed sees the deadline gone).
   */
  onDeadline(): void {
    if (this.done) return;
    if (this.backoff !== null) {
      // Waiting to retry: no attempt is out, nothing to blame on an endpoint.
      this.fail(
        'request-timeout',
        `${this.backend.cluster.name}: RequestTimeoutMS (${this.backend.deadlines!.timeoutMs} ms) passed while waiting to retry`,
      );
      return;
    }
    const conn = this.releaseUpstream();
    const detail = `${this.backend.cluster.name} ${this.endpoint.key}: no response within RequestTimeoutMS (${this.backend.deadlines!.timeoutMs} ms)`;
    if (this.status >= 200) {
      // The head is out: the client can only be told by a cut connection.
      this.backend.cluster.outlier.failure(this.endpoint);
      this.backend.cluster.stats.failRequestTimeout++;
      this.error = 'request-timeout';
      this.finish(this.status);
      this.client.abortAfterBrokenResponse(this);
      return;
    }
    this.attemptFailed(
      conn !== null && conn.connected ? Failure.RequestTimeout : Failure.ConnectTimeout,
      conn !== null && conn.connected ? 'request-timeout' : 'connect-timeout',
      detail,
    );
  }

  /** PerTryTimeoutMS passed in this attempt with no response head: the attempt fails, and may be retried while RequestTimeoutMS has time left. */
  onTryDeadline(): void {
    // A response head already came: the per-try bound is met (mid-body silence is RequestTimeoutMS's).
    if (this.done || this.status !== 0 || this.backoff !== null) return;
    const conn = this.releaseUpstream();
    const connected = conn !== null && conn.connected;
    const detail = `${this.backend.cluster.name} ${this.endpoint.key}: no response within PerTryTimeoutMS (${this.tryDeadline!.queue.timeoutMs} ms)`;
    this.attemptFailed(
      connected ? Failure.RequestTimeout : Failure.ConnectTimeout,
      connected ? 'request-timeout' : 'connect-timeout',
      detail,
    );
  }

  /** Counts a failed attempt, reports it to outlier detection, then retries elsewhere or answers with the error. */
  private attemptFailed(why: Failure, kind: ShoalError, detail: string): void {
    const cluster = this.backend.cluster;
    const st = cluster.stats;
    switch (why) {
      case Failure.ConnectFailure:
        st.failConnect++;
        break;
      case Failure.ConnectTimeout:
        st.failConnectTimeout++;
        break;
      case Failure.RequestTimeout:
        st.failRequestTimeout++;
        break;
      default:
        st.failReset++;
        break;
    }
    cluster.outlier.failure(this.endpoint);
    if (this.retryAllowed(why)) {
      this.retry();
      return;
    }
    this.fail(kind, detail);
  }

  /**
   * The retry rule (proxy/l7/retry.ts). RequestTimeoutMS is the bound over all attempts: once it fired
   * (unlinked), no time is left for another. The fast path carries no request body, so no body has to
   * be replayed.
   */
  private retryAllowed(why: Failure): boolean {
    const deadlineLeft = this.deadlineQueue !== null || this.backend.deadlines === null;
    return retryAllowed(this.backend, this.permit, why, this.head.method, this.attempts, deadlineLeft, performance.now());
  }

  /** The next attempt, on another endpoint when there is one: a fresh PerTryTimeoutMS, what is left of RequestTimeoutMS. */
  private retry(): void {
    const cluster = this.backend.cluster;
    this.attempts++;
    const next = cluster.pickOther(this.endpoint) ?? this.endpoint;
    this.permit.bind(next);
    this.endpoint = next;
    this.status = 0;
    this.bodyMode = BODY_NONE;
    this.remaining = 0;
    this.scanner = null;
    this.upstreamKeepAlive = true;
    this.closeClient = false;
    this.responseHead = '';
    this.headBuf = null;
    this.gotBytes = false;
    this.retried = false;
    const wait = this.backend.retryBackoffMs;
    if (wait > 0) {
      // The route's retry backoff (Gateway API HTTPRouteRetry.backoff): RequestTimeoutMS keeps counting;
      // the next attempt's PerTryTimeoutMS starts with it.
      if (this.tryDeadline !== null) disarm(this.tryDeadline);
      this.backoff = setTimeout(onBackoffOver, wait, this);
      return;
    }
    this.startAttempt();
  }

  private backoff: NodeJS.Timeout | null = null;

  backoffOver(): void {
    this.backoff = null;
    if (!this.done) this.startAttempt();
  }

  private startAttempt(): void {
    const td = this.tryDeadline;
    if (td !== null) td.queue.arm(td, performance.now());
    this.acquire();
  }

  private buildUpstreamHead(): string {
    const h = this.head;
    const f = this.backend.filters;
    let raw = h.raw;
    let target = h.path;
    if (f !== null) {
      // Gateway API filters: request header modifiers (route, then backendRef), URL rewrite.
      if (f.requestHeaders !== null) raw = f.requestHeaders.applyList(raw);
      if (f.rewrite !== null) {
        target = rewriteTarget(f.rewrite, target, f.matchedPrefix);
        if (f.rewrite.hostname !== undefined) raw = withHost(raw, rewriteAuthority(f.rewrite, h.host));
      }
    }
    let s = `${h.method} ${target} HTTP/1.1\r\n`;
    let xff: string | null = null;
    let proto = false;
    let requestId = '';
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i];
      switch (classify(name, true)) {
        case Hop.Keep:
          if (h.listed !== null && h.listed.includes(name.toLowerCase())) continue;
          if (this.trace !== null && name.length === 11 && name.toLowerCase() === 'traceparent') continue; // replaced below
          s += `${name}: ${raw[i + 1]}\r\n`;
          continue;
        case Hop.ForwardedFor:
          xff = xff === null ? raw[i + 1] : `${xff}, ${raw[i + 1]}`;
          continue;
        case Hop.ForwardedProto:
          proto = true;
          s += `${name}: ${raw[i + 1]}\r\n`;
          continue;
        case Hop.RequestId:
          requestId = raw[i + 1];
          s += `${name}: ${requestId}\r\n`;
          continue;
        default:
          continue;
      }
    }
    const client = this.client.remoteAddress;
    s += `x-forwarded-for: ${xff === null ? client : `${xff}, ${client}`}\r\n`;
    const xfcc = forwardedClientCert(this.client.socket); // the caller's mesh identity (proxy/tls)
    if (xfcc !== '') s += `x-forwarded-client-cert: ${xfcc}\r\n`;
    if (!proto) s += 'x-forwarded-proto: http\r\n';
    if (requestId === '') {
      // A retry rebuilding the head keeps the id the first attempt made up.
      requestId = this.requestId === '' ? nextRequestId() : this.requestId;
      s += `x-request-id: ${requestId}\r\n`;
    }
    this.requestId = requestId;
    if (this.trace !== null) s += `traceparent: ${this.trace.traceparent}\r\n`;
    if (f !== null && f.mirrors !== null && this.attempts === 0) this.mirror(f.mirrors, target, raw);
    return `${s}\r\n`;
  }

  /** RequestMirror: a bodiless copy (the fast path carries no bodies) to each sampled mirror cluster. */
  private mirror(mirrors: NonNullable<NonNullable<RouteBackend['filters']>['mirrors']>, target: string, raw: string[]): void {
    let headers: string[] | null = null;
    for (const m of mirrors) {
      if (!sampled(m.spec)) continue;
      if (headers === null) {
        headers = [];
        for (let i = 0; i < raw.length; i += 2) if (classify(raw[i], true) !== Hop.Drop) headers.push(raw[i], raw[i + 1]);
        if (!headers.some((v, i) => i % 2 === 0 && v.toLowerCase() === 'x-request-id')) headers.push('x-request-id', this.requestId);
      }
      mirrorH1(m.cluster, this.head.method, target, headers, null, m.cluster.policy.requestTimeoutMs);
    }
  }

  /** A new connection is being opened for this exchange: held so a deadline or an abort can close it. */
  onUpstreamConnecting(conn: UpstreamConnection): void {
    this.queued = false;
    this.upstream = conn;
  }

  onUpstreamConnected(conn: UpstreamConnection): void {
    this.queued = false;
    if (this.done) {
      conn.pool.release(conn, true);
      return;
    }
    this.upstream = conn;
    conn.socket.write(this.upstreamHead, 'latin1');
  }

  /** chunk may be the connection's shared read buffer: bytes kept past this call are copied. */
  onUpstreamData(conn: UpstreamConnection, chunk: Buffer): void {
    this.gotBytes = true;
    if (this.status !== 0) {
      // Mid-body: the deadline now bounds silence, re-armed as bytes arrive (a few field writes).
      if (this.deadlineQueue !== null) this.deadlineQueue.arm(this, performance.now());
      this.writeBody(chunk, 0, false);
      return;
    }
    // A head arriving in pieces: the bytes before `checked` were looked at already.
    let checked = this.headBuf === null ? 0 : this.headBuf.length;
    let buf = this.headBuf === null ? chunk : Buffer.concat([this.headBuf, chunk]);
    this.headBuf = null;
    // Interim (1xx) heads are passed on, rewritten like final ones, until the final head.
    for (;;) {
      const end = buf.indexOf('\r\n\r\n', checked > 3 ? checked - 3 : 0);
      if (end < 0) {
        const bad = incompleteHeadError(buf, checked);
        if (bad !== null) return this.upstreamBroken('upstream-reset', `malformed response head: ${bad}`);
        if (buf.length > 0) this.headBuf = Buffer.from(buf);
        return;
      }
      // A head llhttp would refuse (or RFC 9112 lets a proxy refuse) never reaches the client.
      const r = parseResponseHead(buf, end, this.head.method, this.head.close || this.client.listener.draining);
      if (typeof r === 'string') return this.upstreamBroken('upstream-reset', `malformed response head: ${r}`);
      if (r.status < 200) {
        this.client.socket.write(r.head, 'latin1');
        buf = buf.subarray(end + 4);
        checked = 0;
        continue;
      }
      this.status = r.status;
      this.bodyMode = r.framing;
      this.remaining = r.length;
      this.scanner = r.framing === BODY_CHUNKED ? new ChunkedScanner() : null;
      this.upstreamKeepAlive = r.keepAlive;
      this.closeClient = r.close;
      const f = this.backend.filters;
      this.responseHead = f !== null && f.responseHeaders !== null ? f.responseHeaders.applyHead(r.head) : r.head;
      if (r.status >= 502 && r.status <= 504) {
        const cluster = this.backend.cluster;
        cluster.stats.fail5xx++;
        cluster.outlier.failure(this.endpoint);
      }
      // 502-504, or the route's retry codes (Gateway API HTTPRouteRetry).
      if (this.backend.retriesStatus(r.status) && this.retryAllowed(Failure.Answer)) return this.discardAndRetry(conn, buf, end + 4);
      this.writeBody(buf, end + 4, true);
      return;
    }
  }

  /**
   * A 502/503/504 that will be retried: nothing of it reaches the client. The connection is kept
   * when the whole (small) response is already here, else closed rather than read to the end.
   */
  private discardAndRetry(conn: UpstreamConnection, buf: Buffer, from: number): void {
    const rest = buf.length - from;
    let whole = false;
    if (this.bodyMode === BODY_NONE) whole = rest === 0;
    else if (this.bodyMode === BODY_LENGTH) whole = rest === this.remaining;
    else if (this.bodyMode === BODY_CHUNKED) whole = this.scanner!.scan(buf, from, buf.length) === buf.length && !this.scanner!.close;
    this.upstream = null;
    conn.pool.release(conn, whole && this.upstreamKeepAlive);
    this.retry();
  }

  /** The head for the client, until it is written (with the first body bytes). */
  private responseHead = '';

  /** Forwards body bytes buf[from..]; on the first call the head goes out in the same write. */
  private writeBody(buf: Buffer, from: number, withHead: boolean): void {
    const sock = this.client.socket;
    let to = buf.length;
    let complete = false;
    switch (this.bodyMode) {
      case BODY_NONE:
        to = from;
        complete = true;
        break;
      case BODY_LENGTH:
        if (to - from >= this.remaining) {
          to = from + this.remaining;
          complete = true;
        }
        this.remaining -= to - from;
        break;
      case BODY_CHUNKED: {
        const end = this.scanner!.scan(buf, from, to);
        if (this.scanner!.error) return this.upstreamBroken('upstream-reset', `malformed chunked body: ${this.scanner!.error}`);
        if (end >= 0) {
          to = end;
          complete = true;
          if (this.scanner!.close) {
            // A Connection trailer: the client reads it too, so neither connection is used again.
            this.upstreamKeepAlive = false;
            this.closeClient = true;
          }
        }
        break;
      }
      default:
        break;
    }
    if (to < buf.length && complete) this.upstreamKeepAlive = false; // bytes beyond the response: do not reuse
    let ok: boolean;
    if (withHead) {
      if (to > from && to - from <= SINGLE_WRITE_MAX) {
        // Head and (small) body in one buffer: one plain write instead of a writev of two.
        const headLen = this.responseHead.length;
        const out = Buffer.allocUnsafe(headLen + to - from);
        out.write(this.responseHead, 0, 'latin1');
        buf.copy(out, headLen, from, to);
        ok = sock.write(out);
      } else if (to > from) {
        sock.cork();
        sock.write(this.responseHead, 'latin1');
        ok = sock.write(Buffer.from(buf.subarray(from, to)));
        sock.uncork();
      } else {
        ok = sock.write(this.responseHead, 'latin1');
      }
      this.responseHead = '';
      if (!complete && this.deadlineQueue !== null) this.deadlineQueue.arm(this, performance.now());
    } else {
      ok = to > from ? sock.write(Buffer.from(buf.subarray(from, to))) : true;
    }
    if (complete) {
      this.complete();
      return;
    }
    // The client connection's drain listener resumes it (ClientConnection.onDrain).
    if (!ok && this.upstream) this.upstream.socket.pause();
  }

  /** The client's socket drained: let the upstream send again. */
  resumeUpstream(): void {
    this.upstream?.socket.resume();
  }

  private complete(): void {
    const conn = this.upstream;
    this.upstream = null;
    if (conn) {
      conn.socket.resume();
      conn.pool.release(conn, this.upstreamKeepAlive);
    }
    // 502-504 were reported when their head arrived; any other answer ends the endpoint's error streak.
    if (this.status < 500) this.endpoint.consecutiveErrors = 0;
    else if (this.status < 502 || this.status > 504) this.backend.cluster.outlier.failure(this.endpoint);
    this.finish(this.status);
    this.client.exchangeDone(this, this.closeClient);
  }

  onUpstreamClosed(conn: UpstreamConnection, error: Error | null, timedOut: boolean): void {
    if (this.done) return;
    if (this.upstream !== null && this.upstream !== conn) return;
    this.upstream = null;
    if (this.status >= 200 && this.bodyMode === BODY_UNTIL_CLOSE) {
      this.closeClient = true;
      this.finish(this.status);
      this.client.exchangeDone(this, true);
      return;
    }
    if (this.status >= 200) {
      // Mid-body: the client cannot be told anything but a cut connection.
      this.backend.cluster.stats.failReset++;
      this.backend.cluster.outlier.failure(this.endpoint);
      this.error = 'upstream-reset';
      this.finish(this.status);
      this.client.abortAfterBrokenResponse(this);
      return;
    }
    // A reused keep-alive connection the upstream had already closed: try once on a fresh one.
    if (!this.gotBytes && !timedOut && conn.uses > 0 && !this.retried) {
      this.retried = true;
      this.headBuf = null;
      rawPoolOf(this.endpoint).acquire(this, true);
      return;
    }
    const detail = `${this.backend.cluster.name} ${this.endpoint.key}: ${error?.message ?? (timedOut ? 'timed out' : 'connection closed before a response')}`;
    if (!conn.connected)
      this.attemptFailed(
        timedOut ? Failure.ConnectTimeout : Failure.ConnectFailure,
        timedOut ? 'connect-timeout' : 'upstream-reset',
        detail,
      );
    else this.attemptFailed(timedOut ? Failure.RequestTimeout : Failure.Reset, timedOut ? 'request-timeout' : 'upstream-reset', detail);
  }

  private upstreamBroken(kind: ShoalError, detail: string): void {
    const conn = this.upstream;
    this.upstream = null;
    if (conn) {
      conn.user = null;
      conn.socket.destroy();
    }
    this.backend.cluster.stats.failReset++;
    this.backend.cluster.outlier.failure(this.endpoint);
    if (this.status >= 200 && this.responseHead === '') {
      this.error = kind;
      this.finish(this.status);
      this.client.abortAfterBrokenResponse(this);
      return;
    }
    this.fail(kind, `${this.backend.cluster.name} ${this.endpoint.key}: ${detail}`);
  }

  private fail(kind: ShoalError, detail: string): void {
    this.error = kind;
    this.backend.errors.labels(this.backend.cluster.name, kind).inc();
    const close = this.head.close || this.client.listener.draining;
    this.client.socket.write(madeUpHead(kind, detail, close), 'latin1');
    this.finish(ERROR_STATUS[kind]);
    this.client.exchangeDone(this, close);
  }

  /** Lets go of the upstream: its connection is destroyed (it cannot be reused mid-exchange), or the wait in the pool's queue is cancelled. Returns the connection it had. */
  private releaseUpstream(): typeof this.upstream {
    const conn = this.upstream;
    this.upstream = null;
    if (conn) {
      conn.user = null;
      conn.socket.destroy();
    } else if (this.queued) {
      rawPoolOf(this.endpoint).cancel(this);
    }
    this.queued = false;
    return conn;
  }

  /** The client went away mid-exchange: the upstream connection cannot be reused. */
  abort(): void {
    if (this.done) return;
    this.releaseUpstream();
    this.finish(499);
  }

  private finish(status: number): void {
    if (this.done) return;
    this.done = true;
    if (this.backoff !== null) {
      clearTimeout(this.backoff);
      this.backoff = null;
    }
    if (this.deadlineQueue !== null) disarm(this);
    this.permit.release();
    this.backend.stats.count(status);
    const seconds = (performance.now() - this.start) / 1000;
    this.backend.latency.observe(seconds);
    const l = this.client.listener;
    if (this.trace !== null)
      this.trace.end(
        this.head.method,
        this.head.path,
        this.head.host,
        this.client.remoteAddress,
        status,
        this.error,
        this.backend.cluster.name,
        this.endpoint,
        this.attempts,
        -1,
      );
    const al = l.accessLog;
    if (al !== null && al.sampled()) {
      al.write({
        direction: l.direction,
        listener: l.name,
        method: this.head.method,
        path: this.head.path,
        host: this.head.host,
        status,
        durationMs: seconds * 1000,
        cluster: this.backend.cluster.name,
        upstream: this.endpoint.key,
        requestId: this.requestId,
        error: this.error,
      });
    }
  }
}

/** The raw list with its Host replaced (URLRewrite hostname). */
function withHost(raw: readonly string[], host: string): string[] {
  const out: string[] = [];
  let set = false;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') {
      if (!set) out.push(raw[i], host);
      set = true;
      continue;
    }
    out.push(raw[i], raw[i + 1]);
  }
  if (!set) out.push('host', host);
  return out;
}
