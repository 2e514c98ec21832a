// One request through an h2 listener: an upstream HTTP/2 stream on a pooled connection to the chosen
// endpoint, bodies streamed both ways with backpressure, trailers passed through, the gRPC deadline
// enforced, UNAVAILABLE retried on another endpoint when allowed, and errors the sidecar makes up
// itself sent as gRPC statuses (HTTP 200, grpc-status, grpc-message, x-shoal-error) to gRPC clients.
// Deadlines as on the HTTP/1.1 paths: RequestTimeoutMS from arrival over all attempts, PerTryTimeoutMS
// per attempt (a timed-out attempt is retried while time is left), and a body idle bound on the client.
// A handler object per request carries the state; listeners are shared functions, not closures.
import type { IncomingHttpHeaders } from 'node:http';
import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import type { AccessLog } from '../accessLog.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import { Failure, retryRule } from '../l7/retry.ts';
import type { Permit } from '../cluster/permit.ts';
import { ERROR_STATUS, sendMadeUp, type ShoalError } from '../l7/madeUpResponse.ts';
import { nextRequestId } from '../l7/requestId.ts';
import type { RouteBackend } from '../l7/routeTable.ts';
import type { Logger } from '../../shared/log.ts';
import { H1Downstream, NO_ERROR, responseHeaders, type Downstream, type DownstreamOwner } from './downstream.ts';
import {
  H2_CANCEL,
  H2_INTERNAL_ERROR,
  H2_REFUSED_STREAM,
  sessionsOf,
  type EndpointSessions,
  type StreamOwner,
  type UpstreamSession,
} from './endpointSessions.ts';
import { encodeGrpcMessage, grpcStatusOf, formatGrpcTimeout, GrpcStatus, parseGrpcTimeout } from './grpc.ts';
import type { GrpcStats } from './grpcMetrics.ts';
import { tracer, type RequestTrace } from '../tracing/tracer.ts';
import { rewriteAuthority, rewriteTarget, sampled } from '../l7/routeFilters.ts';
import { BodyCopy, mirrorH2 } from '../l7/mirror.ts';
import type { MirrorTarget } from '../l7/routeTable.ts';

function onBackoffOver(ex: H2Exchange): void {
  ex.backoffOver();
}

/** A request body up to this size is kept while it streams, so the call can be sent again elsewhere. */
const REPLAY_LIMIT = 64 * 1024;

/** What an exchange needs from the listener it came in on. */
export interface H2Site {
  readonly name: string;
  readonly direction: 'inbound' | 'outbound';
  readonly draining: boolean;
  readonly accessLog: AccessLog | null;
  readonly log: Logger;
  readonly drainMs: number;
  /** The longest a client may go silent in the middle of a request body (0: no bound). */
  readonly bodyIdleMs: number;
  /** Registers the listener as a user of the pool (so it closes with the last of them). */
  use(pool: EndpointSessions): void;
  grpcStats(backend: RouteBackend): GrpcStats;
}

const EXCHANGE = Symbol('shoal.h2.exchange');
type Up = ClientHttp2Stream & { [EXCHANGE]?: H2Exchange | null };

function onUpResponse(this: Up, headers: IncomingHttpHeaders, flags: number): void {
  this[EXCHANGE]?.upstreamResponse(headers, (flags & 1) === 1);
}
function onUpData(this: Up, chunk: Buffer): void {
  this[EXCHANGE]?.upstreamData(chunk);
}
function onUpTrailers(this: Up, trailers: IncomingHttpHeaders): void {
  this[EXCHANGE]?.upstreamTrailers(trailers);
}
function onUpEnd(this: Up): void {
  this[EXCHANGE]?.upstreamEnd();
}
function onUpClose(this: Up): void {
  this[EXCHANGE]?.upstreamClosed(this);
}
function onUpDrain(this: Up): void {
  this[EXCHANGE]?.down.body.resume();
}
function onUpError(this: Up, err: Error): void {
  const ex = this[EXCHANGE];
  if (ex) ex.upstreamError = err;
}

function onDownData(this: Downstream['body'] & { [EXCHANGE]?: H2Exchange }, chunk: Buffer): void {
  this[EXCHANGE]?.downstreamData(chunk);
}
function onDownEnd(this: Downstream['body'] & { [EXCHANGE]?: H2Exchange }): void {
  this[EXCHANGE]?.downstreamEnd();
}
function onDeadline(ex: H2Exchange): void {
  ex.deadlineTimer = null;
  if (ex.timerIsTry) ex.tryDeadlineHit();
  else ex.deadlineHit();
}

const NOT_SENT = new Set(['ERR_HTTP2_STREAM_CANCEL', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_INVALID_SESSION']);

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export class H2Exchange implements DownstreamOwner, StreamOwner {
  readonly down: Downstream;
  readonly site: H2Site;
  backend: RouteBackend;
  /** The call's hold on its cluster's limits (proxy/cluster/permit.ts): bound to the endpoint while an attempt is out; released in finish. */
  readonly permit: Permit;
  /** The endpoint of the current (or last) attempt. */
  endpoint: Endpoint;
  readonly grpc: boolean;
  readonly start: number;
  readonly stats: GrpcStats | null;
  private readonly headers: OutgoingHttpHeaders;
  private readonly hashKey: string | undefined;
  private requestId = '';
  /** The call's deadline (performance.now() ms); 0 when none. */
  private deadlineAt = 0;
  /** Whether the deadline came from grpc-timeout (whole call) or RequestTimeoutMS alone (time to the response head). */
  private callDeadline = false;
  /** PerTryTimeoutMS (0: none) and the current attempt's end under it (performance.now() ms). */
  private readonly perTryMs: number;
  private tryDeadlineAt = 0;
  deadlineTimer: NodeJS.Timeout | null = null;
  /** The timer set is the attempt's (PerTryTimeoutMS), not the request's deadline. */
  timerIsTry = false;
  /** The body idle bound is set on the client's stream or connection. */
  private watchingIdle = false;
  upstream: Up | null = null;
  private upSession: UpstreamSession | null = null;
  private pool: EndpointSessions | null = null;
  upstreamError: Error | null = null;
  private attempt = 0;
  /** The request body so far, while it may still be replayed; null once it is over the limit. */
  private replay: Buffer[] | null = [];
  private replayBytes = 0;
  private requestEnded: boolean;
  /** Upstream response head held back while the call may still be retried (gRPC, trailers not yet seen). */
  private held: OutgoingHttpHeaders | null = null;
  private gotResponse = false;
  private status = 0;
  private grpcStatus = -1;
  private trailers: OutgoingHttpHeaders | null = null;
  private error: ShoalError | '' = '';
  done = false;
  /** Sampled or propagated trace (proxy/tracing); null when tracing is off. */
  private trace: RequestTrace | null = null;
  /** RequestMirror destinations sampled for this request; null: none. */
  private mirrors: MirrorTarget[] | null = null;
  /** The request body copied for the mirrors while it streams (bounded: proxy/l7/mirror.ts). */
  private mirrorBody: BodyCopy | null = null;
  private backoff: NodeJS.Timeout | null = null;

  constructor(
    down: Downstream,
    site: H2Site,
    backend: RouteBackend,
    permit: Permit,
    start: number,
    grpc: boolean,
    hashKey: string | undefined,
  ) {
    this.down = down;
    this.site = site;
    this.backend = backend;
    this.permit = permit;
    this.endpoint = permit.endpoint!;
    this.start = start;
    this.grpc = grpc;
    this.hashKey = hashKey;
    this.stats = grpc ? site.grpcStats(backend) : null;
    this.requestEnded = down.bodyless;
    this.perTryMs = backend.perTryTimeoutMs;
    this.headers = this.upstreamHeaders();
    const f = backend.filters;
    if (f !== null) {
      // Gateway API filters: request header modifiers (route, then backendRef), URL rewrite.
      if (f.requestHeaders !== null) f.requestHeaders.applyRecord(this.headers);
      if (f.rewrite !== null) {
        this.headers[':path'] = rewriteTarget(f.rewrite, String(this.headers[':path'] ?? '/'), f.matchedPrefix);
        if (f.rewrite.hostname !== undefined)
          this.headers[':authority'] = rewriteAuthority(f.rewrite, String(this.headers[':authority'] ?? ''));
      }
      if (f.mirrors !== null) this.mirrors = f.mirrors.filter((m) => sampled(m.spec));
    }
    if (tracer !== null && (this.trace = tracer.beginHeaders(down.headers, start, site, grpc)) !== null)
      this.headers.traceparent = this.trace.traceparent;
  }

  /** The client's headers for the upstream: x-forwarded-*, x-request-id added; grpc-timeout capped. */
  private upstreamHeaders(): OutgoingHttpHeaders {
    const h = this.down.headers;
    const out: OutgoingHttpHeaders = {};
    let xff: string | undefined;
    for (const name of Object.keys(h)) {
      switch (name) {
        case 'host':
          continue;
        case 'x-forwarded-for':
          xff = Array.isArray(h[name]) ? (h[name] as string[]).join(', ') : (h[name] as string);
          continue;
        case 'x-request-id':
          this.requestId = one(h[name]) ?? '';
          break;
        case 'grpc-timeout':
          continue;
        // Only the sidecar that verified the caller may say who it is (below).
        case 'x-forwarded-client-cert':
          continue;
        default:
          break;
      }
      out[name] = h[name];
    }
    const xfcc = this.down.peer?.xfcc;
    if (xfcc) out['x-forwarded-client-cert'] = xfcc;
    if (out[':authority'] === undefined || out[':authority'] === '') out[':authority'] = one(h.host) ?? this.backend.cluster.name;
    out[':scheme'] ??= 'http';
    out['x-forwarded-for'] = xff === undefined ? this.down.remoteAddress : `${xff}, ${this.down.remoteAddress}`;
    if (out['x-forwarded-proto'] === undefined) out['x-forwarded-proto'] = 'http';
    if (this.requestId === '') {
      this.requestId = nextRequestId();
      out['x-request-id'] = this.requestId;
    }
    const limit = this.backend.requestTimeoutMs;
    const asked = this.grpc ? parseGrpcTimeout(h['grpc-timeout']) : null;
    const ms = asked === null ? limit : limit > 0 && limit < asked ? limit : asked;
    if (ms > 0) {
      this.deadlineAt = this.start + ms;
      this.callDeadline = asked !== null;
    }
    return out;
  }

  /** Starts the call: deadline, downstream body, first attempt. */
  run(): void {
    const body = this.down.body as Downstream['body'] & { [EXCHANGE]?: H2Exchange };
    this.down.attach(this);
    if (!this.requestEnded) {
      body[EXCHANGE] = this;
      body.on('data', onDownData);
      body.once('end', onDownEnd);
      if (this.site.bodyIdleMs > 0) {
        this.watchingIdle = true;
        this.down.watchIdle(this.site.bodyIdleMs);
      }
    } else if (!this.down.h2) {
      // node:http only reports the response's close after the request was read.
      this.down.body.resume();
    }
    if (this.mirrors !== null && this.mirrors.length > 0) {
      if (this.requestEnded) this.sendMirrors(null);
      else this.mirrorBody = new BodyCopy();
    }
    this.send();
  }

  /** RequestMirror: copies go out once the request (with its body, up to the limit) is whole; never waited for. */
  private sendMirrors(body: Buffer | null): void {
    const headers = { ...this.headers };
    delete headers['grpc-timeout'];
    for (const m of this.mirrors!) mirrorH2(m.cluster, headers, body, this.site.drainMs, (p) => this.site.use(p));
    this.mirrors = null;
  }

  backoffOver(): void {
    this.backoff = null;
    if (!this.done) this.send();
  }

  private send(): void {
    const c = this.backend.cluster;
    const p = c.policy;
    const pool = sessionsOf(this.endpoint, {
      connectTimeoutMs: p.connectTimeoutMs,
      maxConnections: p.maxConnections,
      maxRequestsPerConnection: p.maxRequestsPerConnection,
      drainMs: this.site.drainMs,
    });
    this.site.use(pool);
    this.pool = pool;
    pool.owners.add(this);
    this.permit.bind(this.endpoint);
    const now = performance.now();
    if (this.perTryMs > 0) this.tryDeadlineAt = now + this.perTryMs;
    this.armTimer(now);
    if (this.callDeadline) this.headers['grpc-timeout'] = formatGrpcTimeout(this.deadlineAt - now);
    const replaying = this.attempt > 0 && this.replay !== null && this.replayBytes > 0;
    const endStream = this.requestEnded && !replaying;
    let opened: ReturnType<EndpointSessions['request']>;
    try {
      opened = pool.request(this.headers, endStream);
    } catch (err) {
      // Bad headers for HTTP/2 (node validates them): nothing was sent.
      this.upstream = null;
      this.permit.unbind();
      pool.owners.delete(this);
      this.madeUp('upstream-reset', `${c.name} ${this.endpoint.key}: ${(err as Error).message}`);
      return;
    }
    const up = opened.stream as Up;
    this.upSession = opened.session;
    this.upstream = up;
    up[EXCHANGE] = this;
    up.on('response', onUpResponse);
    up.on('data', onUpData);
    up.on('trailers', onUpTrailers);
    up.on('end', onUpEnd);
    up.on('close', onUpClose);
    up.on('error', onUpError);
    up.on('drain', onUpDrain);
    if (replaying) {
      for (const chunk of this.replay!) up.write(chunk);
      if (this.requestEnded) up.end();
    }
  }

  // Downstream request body -> upstream.

  downstreamData(chunk: Buffer): void {
    if (this.mirrorBody !== null) this.mirrorBody.add(chunk);
    if (this.replay !== null) {
      if (this.replayBytes + chunk.length <= REPLAY_LIMIT) {
        this.replay.push(chunk);
        this.replayBytes += chunk.length;
      } else {
        this.replay = null;
      }
    }
    const up = this.upstream;
    if (up === null || up.destroyed) return;
    if (!up.write(chunk)) this.down.body.pause();
  }

  downstreamEnd(): void {
    this.requestEnded = true;
    const mb = this.mirrorBody;
    if (mb !== null) {
      this.mirrorBody = null;
      if (!mb.over) this.sendMirrors(mb.take());
    }
    this.stopWatchingIdle();
    const up = this.upstream;
    if (up !== null && !up.destroyed) up.end();
  }

  downstreamDrained(): void {
    this.upstream?.resume();
  }

  private stopWatchingIdle(): void {
    if (!this.watchingIdle) return;
    this.watchingIdle = false;
    this.down.watchIdle(0);
  }

  /** The client sent no body byte for the listener's body idle bound: its fault, not the endpoint's. */
  downstreamIdle(): void {
    if (this.done) {
      // Answered already (the upstream did not wait for the body): nothing else will close it.
      this.down.reset(H2_CANCEL);
      return;
    }
    if (this.requestEnded) return;
    this.clientTimedOut(`no request body byte for ${this.site.bodyIdleMs} ms`);
  }

  /** The client did not send its body in time: 408 (gRPC: DEADLINE_EXCEEDED), x-shoal-error request-timeout, no endpoint failure. */
  private clientTimedOut(detail: string): void {
    this.detachUpstream(H2_CANCEL);
    this.madeUp('request-timeout', `${this.backend.cluster.name}: ${detail}`, 408);
    // The answer is complete; RST_STREAM NO_ERROR tells the client to stop sending (RFC 9113 8.1)
    // and closes the stream. (HTTP/1.1: the answer closed the connection.)
    if (this.down.h2) this.down.reset(NO_ERROR);
  }

  /** Sets the one timer to the nearer of the request's deadline and the attempt's (PerTryTimeoutMS); both bound the wait for a response head. */
  private armTimer(now: number): void {
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    const overall = this.deadlineAt > 0 && (this.callDeadline || !this.gotResponse) ? this.deadlineAt : 0;
    const attempt = this.tryDeadlineAt > 0 && !this.gotResponse ? this.tryDeadlineAt : 0;
    if (overall === 0 && attempt === 0) return;
    this.timerIsTry = attempt > 0 && (overall === 0 || attempt < overall);
    const at = this.timerIsTry ? attempt : overall;
    this.deadlineTimer = setTimeout(onDeadline, Math.max(0, at - now), this);
  }

  /** The client went away (RST_STREAM, closed connection): cancel upstream. */
  downstreamGone(): void {
    if (this.done) return;
    this.detachUpstream(H2_CANCEL);
    this.finish(499);
  }

  // Upstream response -> downstream.

  upstreamResponse(headers: IncomingHttpHeaders, endStream: boolean): void {
    this.gotResponse = true;
    this.status = Number(headers[':status']) || 502;
    // RequestTimeoutMS alone and PerTryTimeoutMS bound the wait for the response head; a stream may
    // then live on (only grpc-timeout bounds the whole call).
    if (this.deadlineTimer !== null) this.armTimer(performance.now());
    // A gRPC stream the upstream took up is the upstream's to bound (long quiet streams are normal).
    if (this.grpc) this.stopWatchingIdle();
    const out = responseHeaders(headers);
    const f = this.backend.filters;
    if (f !== null && f.responseHeaders !== null) f.responseHeaders.applyRecord(out);
    if (endStream) {
      if (!this.grpc && this.backend.retriesStatus(this.status) && this.retry(Failure.Answer)) return;
      // Trailers-only (gRPC errors): the head is the trailers.
      const gs = headers['grpc-status'];
      if (gs !== undefined) this.grpcStatus = Number(gs);
      if (this.grpcStatus === GrpcStatus.UNAVAILABLE || this.status >= 500) {
        this.failed(Failure.Answer);
        if (this.grpcStatus === GrpcStatus.UNAVAILABLE && this.retry(Failure.Answer)) return;
      } else {
        this.endpoint.consecutiveErrors = 0;
      }
      this.down.respond(out, true, false);
      this.finish(this.status);
      return;
    }
    if (this.status >= 500) this.failed(Failure.Answer);
    // 502-504, or the route's retry codes (Gateway API HTTPRouteRetry), on plain HTTP/2 as on HTTP/1.1;
    // gRPC retries UNAVAILABLE (below).
    if (!this.grpc && this.backend.retriesStatus(this.status) && this.retry(Failure.Answer)) return;
    if (this.grpc && this.requestEnded && this.backend.retryNonIdempotent && this.mayRetry()) {
      this.held = out;
      return;
    }
    // Trailers are only known at the end: always leave room for them (an empty HEADERS frame when there are none).
    this.down.respond(out, false, true);
  }

  private flushHead(): void {
    const h = this.held;
    if (h === null) return;
    this.held = null;
    this.down.respond(h, false, true);
  }

  upstreamData(chunk: Buffer): void {
    if (this.held !== null) this.flushHead();
    if (!this.down.write(chunk)) this.upstream?.pause();
  }

  upstreamTrailers(trailers: IncomingHttpHeaders): void {
    const gs = trailers['grpc-status'];
    if (gs !== undefined) this.grpcStatus = Number(gs);
    if (this.grpcStatus === GrpcStatus.UNAVAILABLE) {
      this.failed(Failure.Answer);
      if (this.held !== null && this.retry(Failure.Answer)) return;
    } else if (this.status < 500) {
      this.endpoint.consecutiveErrors = 0;
    }
    this.trailers = responseHeaders(trailers);
  }

  upstreamEnd(): void {
    if (this.done) return;
    if (this.held !== null) this.flushHead();
    this.down.end(this.trailers ?? (this.grpc ? {} : null));
    this.finish(this.status);
  }

  upstreamClosed(up: Up): void {
    if (up !== this.upstream || this.done) return;
    // A clean end was handled in upstreamEnd; here the stream was reset or its connection failed.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- rstCode is undefined until the stream has closed; Node's typings say number
    const code = up.rstCode ?? 0;
    const err = this.upstreamError as (Error & { code?: string }) | null;
    const neverConnected = this.upSession !== null && !this.upSession.connected;
    // Never sent: no connection, a refused stream, or a stream still pending when its connection went away.
    const unprocessed =
      !this.gotResponse && (neverConnected || code === H2_REFUSED_STREAM || (err !== null && NOT_SENT.has(err.code ?? '')));
    const kind: ShoalError = err?.code === 'SHOAL_CONNECT_TIMEOUT' ? 'connect-timeout' : 'upstream-reset';
    this.failed(kind === 'connect-timeout' ? Failure.ConnectTimeout : neverConnected ? Failure.ConnectFailure : Failure.Reset);
    // Never sent: always retriable; a reset after the request went out: for idempotent methods or RetryNonIdempotent (proxy/l7/retry.ts).
    if (this.retry(unprocessed ? Failure.ConnectFailure : Failure.Reset)) return;
    // A pending stream cancelled by its failed connection carries the connection's error (e.g. the peer's identity) as its cause.
    const cause = err?.code === 'ERR_HTTP2_STREAM_CANCEL' && err.cause instanceof Error ? err.cause : err;
    const why = cause?.message ?? (code !== 0 ? `stream reset by upstream (code ${code})` : 'upstream closed the stream');
    if (this.site.log.isLevelEnabled('debug'))
      this.site.log.debug({ listener: this.site.name, upstream: this.endpoint.key, error: why }, 'upstream failed');
    this.detachUpstream(0);
    if (!this.grpc && this.down.headersSent && this.down.h2) {
      // A plain HTTP/2 response already under way: pass the reset on.
      this.error = kind;
      this.backend.errors.labels(this.backend.cluster.name, kind).inc();
      this.down.reset(code !== 0 ? code : H2_INTERNAL_ERROR);
      this.finish(this.status || 502);
      return;
    }
    this.madeUp(kind, `${this.backend.cluster.name} ${this.endpoint.key}: ${why}`);
  }

  // Deadline, retry, endpoint removal.

  deadlineHit(): void {
    if (this.done) return;
    const ms = Math.round(this.deadlineAt - this.start);
    if (!this.requestEnded && !this.gotResponse) {
      // The body was still coming: the client's fault, never the endpoint's.
      this.clientTimedOut(`request body not received within ${this.callDeadline ? "the call's deadline" : 'RequestTimeoutMS'} (${ms} ms)`);
      return;
    }
    // The call's own deadline says nothing about the endpoint; RequestTimeoutMS with no response head does.
    // (Not while waiting to retry: no attempt is out then.)
    if (this.backoff === null && (!this.callDeadline || !this.gotResponse)) this.failed(Failure.RequestTimeout);
    this.detachUpstream(H2_CANCEL);
    this.madeUp(
      'request-timeout',
      this.callDeadline
        ? `${this.backend.cluster.name}: deadline of ${ms} ms exceeded (grpc-timeout, at most RequestTimeoutMS)`
        : `${this.backend.cluster.name} ${this.endpoint.key}: no response within RequestTimeoutMS (${ms} ms)`,
    );
  }

  /** PerTryTimeoutMS passed in this attempt with no response head: retried while the deadline has time left, else 504. */
  tryDeadlineHit(): void {
    if (this.done || this.gotResponse || this.backoff !== null) return;
    const now = performance.now();
    if (!this.requestEnded) {
      // Still receiving the body: the attempt is judged from when the endpoint could have answered.
      this.tryDeadlineAt = now + this.perTryMs;
      this.armTimer(now);
      return;
    }
    this.failed(Failure.RequestTimeout);
    // The attempt may have been processed: sent again only for idempotent methods or a route that allows it.
    if (this.retry(Failure.RequestTimeout)) return;
    this.detachUpstream(H2_CANCEL);
    this.madeUp(
      'request-timeout',
      `${this.backend.cluster.name} ${this.endpoint.key}: no response within PerTryTimeoutMS (${this.perTryMs} ms)`,
    );
  }

  endpointGone(detail: string): void {
    if (this.done) return;
    this.detachUpstream(H2_CANCEL);
    this.madeUp('upstream-reset', detail);
  }

  /** Whether a failure now could still be retried (the response has not reached the client). */
  private mayRetry(): boolean {
    return this.attempt < this.backend.retryAttempts && this.replay !== null && !this.down.headersSent;
  }

  /**
   * Sends the call again to another endpoint, when the retry rule (proxy/l7/retry.ts) allows: never-sent
   * attempts (no connection, refused stream) always may be; an answer (a retriable status, UNAVAILABLE),
   * a reset or a timeout only for an idempotent method or a route that allows it (RetryNonIdempotent:
   * every gRPC call is a POST, and UNAVAILABLE does not promise the call had no effect). This path
   * adds: the whole request in hand (REPLAY_LIMIT), nothing sent to the client yet. False when it did not.
   */
  private retry(why: Failure): boolean {
    if (!this.mayRetry() || !this.requestEnded || this.down.gone) return false;
    const now = performance.now();
    const method = one(this.down.headers[':method']) ?? '';
    // The rule first: a call it refuses costs no pick (and does not move round robin on).
    if (!retryRule(this.backend, why, method, this.attempt, this.deadlineAt === 0 || now < this.deadlineAt)) return false;
    const c = this.backend.cluster;
    const next = c.endpoints.length > 1 ? c.pickOther(this.endpoint) : (c.endpoints[0] ?? null);
    if (next === null || next.retired || !this.permit.tryRetry(now)) return false;
    this.detachUpstream(H2_CANCEL);
    this.endpoint = next;
    this.attempt++;
    this.held = null;
    this.trailers = null;
    this.gotResponse = false;
    this.status = 0;
    this.grpcStatus = -1;
    this.upstreamError = null;
    const wait = this.backend.retryBackoffMs;
    if (wait > 0) {
      // The route's retry backoff (Gateway API HTTPRouteRetry.backoff); the deadline keeps counting, the
      // next attempt's PerTryTimeoutMS starts with it (send).
      this.tryDeadlineAt = 0;
      this.armTimer(performance.now());
      this.backoff = setTimeout(onBackoffOver, wait, this);
      return true;
    }
    this.send();
    return true;
  }

  private detachUpstream(code: number): void {
    const up = this.upstream;
    if (up === null) return;
    up[EXCHANGE] = null;
    this.upstream = null;
    this.permit.unbind();
    this.pool?.owners.delete(this);
    this.pool = null;
    if (!up.destroyed) up.close(code === 0 ? H2_CANCEL : code);
  }

  /** A failed attempt: counted, and reported to outlier detection (proxy/policy/outlierDetector.ts). */
  private failed(why: Failure): void {
    const c = this.backend.cluster;
    const st = c.stats;
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
      case Failure.Reset:
        st.failReset++;
        break;
      default:
        st.fail5xx++;
        break;
    }
    c.outlier.failure(this.endpoint);
  }

  /** An error the sidecar makes up: a gRPC status for gRPC calls, an HTTP status otherwise (status: 408 when the client is to blame). */
  madeUp(error: ShoalError, detail: string, clientStatus = 0): void {
    if (this.done) return;
    this.error = error;
    this.backend.errors.labels(this.backend.cluster.name, error).inc();
    const down = this.down;
    if (this.grpc && down.h2) {
      const code = grpcStatusOf(error);
      this.grpcStatus = code;
      const t = { 'grpc-status': String(code), 'grpc-message': encodeGrpcMessage(`${error}: ${detail}`), 'x-shoal-error': error };
      if (!down.headersSent) {
        this.held = null;
        down.respond({ ':status': 200, 'content-type': 'application/grpc', ...t }, true, false);
      } else {
        down.end(t);
      }
      this.finish(200);
      return;
    }
    const status = clientStatus === 408 ? 408 : ERROR_STATUS[error];
    if (down instanceof H1Downstream) {
      this.finish(
        status === 408 ? sendMadeUp(down.res, error, detail, true, 408) : sendMadeUp(down.res, error, detail, this.site.draining),
      );
      return;
    }
    if (down.headersSent) {
      down.reset(H2_INTERNAL_ERROR);
    } else {
      const body = `${status} ${error}: ${detail}\n`;
      down.respond(
        {
          ':status': status,
          'content-type': 'text/plain; charset=utf-8',
          'content-length': Buffer.byteLength(body),
          'x-shoal-error': error,
        },
        false,
        false,
      );
      down.write(Buffer.from(body));
      down.end(null);
    }
    this.finish(status);
  }

  private finish(status: number): void {
    if (this.done) return;
    this.done = true;
    if (this.backoff !== null) {
      clearTimeout(this.backoff);
      this.backoff = null;
    }
    this.mirrorBody = null;
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    // A body still coming keeps its idle bound: a client that then goes silent is cut (downstreamIdle).
    if (this.requestEnded) this.stopWatchingIdle();
    const body = this.down.body as Downstream['body'] & { [EXCHANGE]?: H2Exchange | null };
    if (body[EXCHANGE] === this) {
      body[EXCHANGE] = null;
      body.off('data', onDownData);
      body.off('end', onDownEnd);
      // Anything the client still sends has nowhere to go.
      if (!this.requestEnded) body.resume();
    }
    if (this.upstream !== null) {
      const up = this.upstream;
      up[EXCHANGE] = null;
      this.upstream = null;
      this.pool?.owners.delete(this);
      if (status === 499 && !up.destroyed) up.close(H2_CANCEL);
    }
    this.permit.release();
    this.replay = null;
    const c = this.backend.cluster;
    this.backend.stats.count(status);
    if (this.stats !== null)
      this.stats.count(status === 499 ? GrpcStatus.CANCELLED : this.grpcStatus < 0 ? GrpcStatus.UNKNOWN : this.grpcStatus);
    const seconds = (performance.now() - this.start) / 1000;
    this.backend.latency.observe(seconds);
    if (this.trace !== null) {
      const h = this.down.headers;
      this.trace.end(
        one(h[':method']) ?? '',
        one(h[':path']) ?? '',
        one(h[':authority']) ?? one(h.host) ?? '',
        this.down.remoteAddress,
        status,
        this.error,
        c.name,
        this.endpoint,
        this.attempt,
        this.grpc ? (status === 499 ? 1 : this.grpcStatus) : -1,
      );
    }
    const al = this.site.accessLog;
    if (al !== null && al.sampled()) {
      const h = this.down.headers;
      al.write({
        direction: this.site.direction,
        listener: this.site.name,
        method: one(h[':method']) ?? '',
        path: one(h[':path']) ?? '',
        host: one(h[':authority']) ?? '',
        status,
        durationMs: seconds * 1000,
        cluster: c.name,
        upstream: this.endpoint.key,
        requestId: this.requestId,
        error: this.error,
      });
    }
  }
}
