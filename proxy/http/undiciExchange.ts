// One request on its way upstream: the undici dispatch handler that streams the response back.
// A handler object carries the request's state (as undici's own handlers do): no closure per request.
// Retries follow the fast path's rule (h1/exchange.ts), with one more: a request whose body was
// sent, even in part, is never retried (bodies are streamed, not kept for a replay).
// Deadlines as on the fast path: RequestTimeoutMS from the request's arrival to the response head,
// over all attempts, and PerTryTimeoutMS per attempt (shared deadline queues, proxy/policy). A client
// that stops sending its body is cut after the listener's body idle bound. Requests pipelined on one
// connection go upstream one after the other, in the order they came.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import type { Logger } from '../../shared/log.ts';
import type { AccessLog } from '../accessLog.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import { disarm, TryDeadline, type DeadlineHolder, type DeadlineQueue } from '../policy/deadlines.ts';
import { clientOf, type ClientConnection } from './h1/clientConnection.ts';
import { Failure, retryAllowed } from '../l7/retry.ts';
import type { Permit } from '../cluster/permit.ts';
import { classify, connectionListed, Hop } from '../l7/hopByHop.ts';
import { nextRequestId } from '../l7/requestId.ts';
import { forwardedClientCert } from '../tls/meshTls.ts';
import { sendMadeUp, upstreamError, type ShoalError } from '../l7/madeUpResponse.ts';
import type { RouteBackend } from '../l7/routeTable.ts';
import { setTraceparent, tracer, type RequestTrace } from '../tracing/tracer.ts';
import { rewriteAuthority, rewriteTarget, sampled } from '../l7/routeFilters.ts';
import { BodyCopy, mirrorH1 } from '../l7/mirror.ts';
import type { MirrorTarget } from '../l7/routeTable.ts';
import { undiciPoolOf } from './undiciPool.ts';

/** What a request needs to know about the listener it came in on. */
export interface ForwardSite {
  readonly name: string;
  readonly direction: 'inbound' | 'outbound';
  draining: boolean;
  readonly accessLog: AccessLog | null;
  readonly log: Logger;
  /** The longest a client may go silent in the middle of a request body (0: no bound). */
  readonly bodyIdleMs: number;
  /** The whole body must have arrived this long after the request did (0: no bound). */
  readonly bodyReceiveMs: number;
}

const FORWARD = Symbol('shoal.forward');
type TaggedResponse = ServerResponse & { [FORWARD]?: UndiciExchange | null };
type TaggedRequest = IncomingMessage & { [FORWARD]?: UndiciExchange | null };
// The last request forwarded from a downstream connection: the next one waits for its turn.
const LAST = Symbol('shoal.forward.last');
type TaggedSocket = Socket & { [LAST]?: UndiciExchange | null };

function onResponseDrain(this: TaggedResponse): void {
  this[FORWARD]?.controller?.resume();
}

function onResponseClose(this: TaggedResponse): void {
  const f = this[FORWARD];
  if (f && !f.done) f.clientGone();
}

const CLIENT_GONE = new Error('client closed the connection');
const TIMED_OUT = new Error('the request deadline passed');
const TRY_TIMED_OUT = new Error('the attempt passed PerTryTimeoutMS');
/** A response head node:http cannot pass on (e.g. a control byte in the reason phrase): the upstream's fault, a 502. */
const MALFORMED_RESPONSE = new Error('malformed response head');

/** The client went silent mid-body for bodyIdleMs (the socket's idle timer; node:http emits it on the request). */
function onBodyIdle(this: TaggedRequest): void {
  const f = this[FORWARD];
  if (f) f.bodyIdle();
}

/** The body has not arrived whole within bodyReceiveMs of the request (a byte at a time keeps the idle timer quiet). */
function onReceiveDeadline(f: UndiciExchange): void {
  f.receiveDeadline();
}

function onBodyEnd(this: TaggedRequest): void {
  this[FORWARD]?.bodyDone();
}

function takeTurn(f: UndiciExchange): void {
  f.takeTurn();
}

function onBackoffOver(f: UndiciExchange): void {
  f.backoffOver();
}

/** A request body streaming to the upstream, copied for mirrors on the way (at most MIRROR_BODY_LIMIT bytes). */
type CopiedBody = IncomingMessage & { [MIRROR_COPY]?: { copy: BodyCopy; send: (body: Buffer) => void } | null };
const MIRROR_COPY = Symbol('shoal.mirror.copy');

function onCopyData(this: CopiedBody, chunk: Buffer): void {
  this[MIRROR_COPY]?.copy.add(chunk);
}

function onCopyEnd(this: CopiedBody): void {
  const m = this[MIRROR_COPY];
  this[MIRROR_COPY] = null;
  if (m && !m.copy.over) m.send(m.copy.take());
}

/**
 * Why the sidecar will not forward this request, or null: what undici would refuse to send (more
 * than one Host, a request-target not in origin or absolute form, such as \`*\`) is the client's error
 * (RFC 9112 3.2: 400 for more than one Host), answered before any endpoint is picked.
 */
export function unforwardable(req: IncomingMessage): string | null {
  const url = req.url ?? '';
  if (url.charCodeAt(0) !== 47 /* / */ && !url.startsWith('http://') && !url.startsWith('https://'))
    return `request-target ${JSON.stringify(url)} is not a path or an absolute URL`;
  const raw = req.rawHeaders;
  let hosts = 0;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === 4 && raw[i].toLowerCase() === 'host' && ++hosts > 1) return 'more than one Host header';
  }
  return null;
}

/**
 * The header list sent upstream: the client's raw headers minus hop-by-hop ones, with x-forwarded-for
 * appended to, x-forwarded-proto and x-request-id set when absent. traceparent/tracestate pass as they are.
 * Returns the request id.
 */
export function upstreamHeaders(req: IncomingMessage, out: string[]): string {
  const raw = req.rawHeaders;
  const listed = connectionListed(req.headers.connection);
  let xff: string | null = null;
  let proto = false;
  let requestId = '';
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    switch (classify(name, true)) {
      case Hop.Keep:
        if (listed !== null && listed.includes(name.toLowerCase())) continue;
        out.push(name, raw[i + 1]);
        continue;
      case Hop.ForwardedFor:
        xff = xff === null ? raw[i + 1] : `${xff}, ${raw[i + 1]}`;
        continue;
      case Hop.ForwardedProto:
        proto = true;
        out.push(name, raw[i + 1]);
        continue;
      case Hop.RequestId:
        requestId = raw[i + 1];
        out.push(name, requestId);
        continue;
      default:
        continue;
    }
  }
  const client = req.socket.remoteAddress ?? '';
  out.push('x-forwarded-for', xff === null ? client : `${xff}, ${client}`);
  const xfcc = forwardedClientCert(req.socket); // the caller's mesh identity (proxy/tls)
  if (xfcc !== '') out.push('x-forwarded-client-cert', xfcc);
  if (!proto) out.push('x-forwarded-proto', 'http');
  if (requestId === '') {
    requestId = nextRequestId();
    out.push('x-request-id', requestId);
  }
  return requestId;
}

/** The upstream's response head for the client: raw names kept, hop-by-hop ones removed. */
export function downstreamHeaders(raw: Buffer[] | string[]): string[] {
  const out: string[] = [];
  let listed: string[] | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = typeof raw[i] === 'string' ? (raw[i] as string) : (raw[i] as Buffer).toString('latin1');
    const value = typeof raw[i + 1] === 'string' ? (raw[i + 1] as string) : (raw[i + 1] as Buffer).toString('latin1');
    if (classify(name, false) !== Hop.Keep) {
      if (name.length === 10 && name.toLowerCase() === 'connection') listed = connectionListed(value);
      continue;
    }
    out.push(name, value);
  }
  if (listed !== null) {
    const drop = listed;
    const kept: string[] = [];
    for (let i = 0; i < out.length; i += 2) if (!drop.includes(out[i].toLowerCase())) kept.push(out[i], out[i + 1]);
    return kept;
  }
  return out;
}

/** A body longer than this (by its Content-Length) is not mirrored; a chunked one is cut off at the same size. */
const MIRROR_LIMIT = 64 * 1024;

/** Replaces the Host in a flat header list (URLRewrite hostname). */
function replaceHost(headers: string[], host: string): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i].length === 4 && headers[i].toLowerCase() === 'host') {
      headers[i + 1] = host;
      return;
    }
  }
  headers.push('host', host);
}

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** Failures that happen before the request reached the upstream: always safe to retry. */
function connectFailure(err: Error & { code?: string }): boolean {
  switch (err.code) {
    case 'ECONNREFUSED':
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return true;
    default:
      return false;
  }
}

export class UndiciExchange implements Dispatcher.DispatchHandler, DeadlineHolder {
  readonly req: TaggedRequest;
  readonly res: TaggedResponse;
  readonly site: ForwardSite;
  readonly backend: RouteBackend;
  /** The request's hold on its cluster's limits and its endpoint's load (proxy/cluster/permit.ts); released in finish. */
  readonly permit: Permit;
  /** The endpoint of the current (or last) attempt. */
  endpoint: Endpoint;
  readonly start: number;
  private headers: string[] = [];
  private client: ClientConnection | null = null;
  private body: IncomingMessage | null = null;
  /** Retries made so far. */
  private attempts = 0;
  /** A 502/503/504 being read to its end and dropped, because it will be retried. */
  private discarding = false;
  requestId = '';
  controller: Dispatcher.DispatchController | null = null;
  done = false;
  error: ShoalError | '' = '';
  // RequestTimeoutMS, from arrival to the response head over all attempts (proxy/policy/deadlines.ts).
  deadlineAt = 0;
  deadlineNext: DeadlineHolder | null = null;
  deadlinePrev: DeadlineHolder | null = null;
  deadlineQueue: DeadlineQueue | null = null;
  /** PerTryTimeoutMS of the current attempt; null when the cluster has none. */
  private tryDeadline: TryDeadline | null = null;
  /** The downstream connection (req.socket may be detached later). */
  private sock: TaggedSocket | null = null;
  /** The request pipelined after this one on the same connection, waiting for this one to finish. */
  private nextInLine: UndiciExchange | null = null;
  /** Waiting for the request before it on the connection to finish: not sent yet. */
  private waiting = false;
  /** Finished and handed the connection's turn on. */
  private released = false;
  /** The body idle timer is set on the client socket for this request. */
  private idleArmed = false;
  private receiveTimer: NodeJS.Timeout | null = null;
  /** Sampled or propagated trace (proxy/tracing); null when tracing is off. */
  private trace: RequestTrace | null = null;
  /** The request-target sent upstream (a URLRewrite may change it). */
  private target = '';
  /** The route's retry backoff timer, while it runs. */
  private backoff: NodeJS.Timeout | null = null;

  constructor(req: IncomingMessage, res: ServerResponse, site: ForwardSite, backend: RouteBackend, permit: Permit, start: number) {
    this.req = req;
    this.res = res;
    this.site = site;
    this.backend = backend;
    this.permit = permit;
    this.endpoint = permit.endpoint!;
    this.start = start;
  }

  /** Sends the request to the endpoint's pool, or queues it behind the request before it on the connection. */
  dispatch(): void {
    const req = this.req;
    this.requestId = upstreamHeaders(req, this.headers);
    this.target = req.url as string;
    const f = this.backend.filters;
    if (f !== null) {
      // Gateway API filters: request header modifiers (route, then backendRef), URL rewrite, mirrors.
      if (f.requestHeaders !== null) this.headers = f.requestHeaders.applyList(this.headers);
      if (f.rewrite !== null) {
        this.target = rewriteTarget(f.rewrite, this.target, f.matchedPrefix);
        if (f.rewrite.hostname !== undefined) replaceHost(this.headers, rewriteAuthority(f.rewrite, req.headers.host ?? ''));
      }
      if (f.mirrors !== null) this.mirror(f.mirrors);
    }
    if (tracer !== null && (this.trace = tracer.beginRaw(req.rawHeaders, this.start, this.site, false)) !== null)
      setTraceparent(this.headers, this.trace);
    this.body = hasBody(req) ? req : null;
    this.res[FORWARD] = this;
    this.res.on('close', onResponseClose);
    req[FORWARD] = this;
    const c = clientOf(req.socket);
    this.client = c ?? null;
    if (c) c.handedBusy++;
    this.backend.deadlines?.arm(this, this.start);
    const tq = this.backend.tryDeadlines;
    if (tq !== null) this.tryDeadline = new TryDeadline(this, tq);
    // node:http emits a pipelined request as soon as its head is read, while the one before it may
    // still be streaming its body upstream: sent now, it could overtake that one (another pooled
    // connection). It waits until the one before it has finished.
    const sock = req.socket as TaggedSocket;
    this.sock = sock;
    const prev = sock[LAST];
    sock[LAST] = this;
    if (prev != null && !prev.released) {
      prev.nextInLine = this;
      this.waiting = true;
      return;
    }
    this.send();
  }

  /**
   * RequestMirror: a copy to each sampled mirror cluster. A bodiless request goes at once; a body is
   * copied as it streams to the upstream and the copies go when it has ended, unless it passed
   * MIRROR_BODY_LIMIT (then no mirror: docs/proxy.md).
   */
  private mirror(mirrors: MirrorTarget[]): void {
    const chosen = mirrors.filter((m) => sampled(m.spec));
    if (chosen.length === 0) return;
    const headers = this.headers.slice();
    const method = this.req.method ?? 'GET';
    const target = this.target;
    const send = (body: Buffer | null) => {
      for (const m of chosen) mirrorH1(m.cluster, method, target, headers, body, m.cluster.policy.requestTimeoutMs);
    };
    if (!hasBody(this.req)) {
      send(null);
      return;
    }
    const len = Number(this.req.headers['content-length']);
    if (len > MIRROR_LIMIT) return;
    const b = this.req as CopiedBody;
    b[MIRROR_COPY] = { copy: new BodyCopy(), send };
    b.on('data', onCopyData);
    // on('data') would start the body flowing before undici takes it: undici resumes it when it sends.
    b.pause();
    b.once('end', onCopyEnd);
  }

  /** The request before this one on the connection finished: this one's turn. */
  takeTurn(): void {
    this.waiting = false;
    if (this.done) this.releaseTurn();
    else this.send();
  }

  /** Hands the connection's turn to the request pipelined after this one (on the next tick: no recursion however deep the pipeline). */
  private releaseTurn(): void {
    if (this.waiting || this.released) return;
    this.released = true;
    const sock = this.sock;
    if (sock !== null && sock[LAST] === this) sock[LAST] = null;
    const n = this.nextInLine;
    if (n === null) return;
    this.nextInLine = null;
    process.nextTick(takeTurn, n);
  }

  private send(): void {
    const cluster = this.backend.cluster;
    const td = this.tryDeadline;
    if (td !== null) td.queue.arm(td, performance.now());
    if (this.attempts === 0 && this.body !== null && !this.req.complete && this.site.bodyIdleMs > 0 && this.sock !== null) {
      // The client's silence mid-body: node's socket idle timer (reset by every byte read or written).
      this.idleArmed = true;
      this.req.setTimeout(this.site.bodyIdleMs, onBodyIdle);
      this.req.once('end', onBodyEnd);
      if (this.site.bodyReceiveMs > 0) {
        // One timer, only for a request whose body is still coming when it is sent upstream.
        this.receiveTimer = setTimeout(onReceiveDeadline, Math.max(0, this.start + this.site.bodyReceiveMs - performance.now()), this);
        this.receiveTimer.unref();
      }
    }
    // More requests in flight here than MaxConnections: this one waits in undici's queue for a connection.
    if (this.endpoint.slowActive > cluster.policy.maxConnections) {
      // MaxPendingRequests: the queue place is the permit's.
      if (!this.permit.enqueue()) {
        this.error = 'circuit-open';
        this.backend.errors.labels(cluster.name, 'circuit-open').inc();
        this.req.resume();
        this.finish(
          sendMadeUp(
            this.res,
            'circuit-open',
            `${cluster.name}: every connection MaxConnections allows to ${this.endpoint.key} is busy and MaxPendingRequests (${cluster.policy.maxPendingRequests}) are waiting`,
            this.site.draining,
          ),
        );
        return;
      }
    }
    undiciPoolOf(this.endpoint).dispatch(
      {
        method: this.req.method as Dispatcher.HttpMethod,
        path: this.target,
        headers: this.headers,
        body: this.body,
        // The wait for the head is this request's deadlines (above); RequestTimeoutMS bounds silence mid-body.
        headersTimeout: 0,
        bodyTimeout: this.backend.requestTimeoutMs,
      },
      this,
    );
  }

  /** The whole body was read from the client: its silence no longer matters. */
  bodyDone(): void {
    if (this.receiveTimer !== null) {
      clearTimeout(this.receiveTimer);
      this.receiveTimer = null;
    }
    if (!this.idleArmed) return;
    this.idleArmed = false;
    if (!this.done) this.sock?.setTimeout(0);
  }

  /** bodyReceiveMs passed with the body still coming. */
  receiveDeadline(): void {
    this.receiveTimer = null;
    if (this.req.complete) return;
    if (this.done) {
      // Answered already (the upstream did not wait for the body): nothing else will close it.
      this.sock?.destroy();
      return;
    }
    this.clientTimedOut(`the request body did not arrive whole within ${this.site.bodyReceiveMs} ms (--request-receive-timeout)`);
  }

  /** The client sent no body byte for bodyIdleMs. */
  bodyIdle(): void {
    if (this.done) {
      // Answered already (the upstream did not wait for the body): nothing else will close it.
      this.sock?.destroy();
      return;
    }
    this.clientTimedOut(`no request body byte for ${this.site.bodyIdleMs} ms`);
  }

  /**
   * The client is to blame (its body stopped, or did not arrive within RequestTimeoutMS): 408 with
   * x-shoal-error request-timeout, never an endpoint failure; the attempt is abandoned and the slot freed.
   */
  private clientTimedOut(detail: string): void {
    const cluster = this.backend.cluster;
    this.error = 'request-timeout';
    this.backend.errors.labels(cluster.name, 'request-timeout').inc();
    const status = this.res.headersSent ? this.res.statusCode : 408;
    sendMadeUp(this.res, 'request-timeout', `${cluster.name}: ${detail}`, true, 408);
    this.abandon(status);
  }

  /** Finishes with status and stops the attempt in flight, if any (a later start aborts itself: done). */
  private abandon(status: number): void {
    this.finish(status);
    const ctl = this.controller;
    if (ctl !== null && !ctl.aborted) ctl.abort(TIMED_OUT);
  }

  /** RequestTimeoutMS passed since the request arrived, and no response head: the request's time is up. */
  onDeadline(): void {
    if (this.done) return;
    const cluster = this.backend.cluster;
    const ms = this.backend.requestTimeoutMs;
    if (!this.waiting && this.body !== null && !this.req.complete) {
      this.clientTimedOut(`request body not received within RequestTimeoutMS (${ms} ms)`);
      return;
    }
    // The whole request was with the endpoint (or waiting for a connection, or its turn on the
    // client's connection): the upstream side did not answer in time.
    if (this.controller !== null && !this.discarding) {
      cluster.stats.failRequestTimeout++;
      cluster.outlier.failure(this.endpoint);
    }
    this.error = 'request-timeout';
    this.backend.errors.labels(cluster.name, 'request-timeout').inc();
    const detail = this.waiting
      ? `${cluster.name}: the request before this one on the connection took all of RequestTimeoutMS (${ms} ms)`
      : `${cluster.name} ${this.endpoint.key}: no response within RequestTimeoutMS (${ms} ms)`;
    this.abandon(sendMadeUp(this.res, 'request-timeout', detail, this.site.draining));
  }

  /** PerTryTimeoutMS passed in this attempt with no response head: retried while RequestTimeoutMS has time left, else 504. */
  onTryDeadline(): void {
    if (this.done || this.waiting || this.discarding || this.res.headersSent || this.backoff !== null) return;
    const td = this.tryDeadline!;
    if (this.body !== null && !this.req.complete) {
      // Still receiving the body: the attempt is judged from when the endpoint could have answered.
      td.queue.arm(td, performance.now());
      return;
    }
    const cluster = this.backend.cluster;
    if (this.controller !== null) {
      cluster.stats.failRequestTimeout++;
      cluster.outlier.failure(this.endpoint);
    }
    // An abort destroys a streamed body, so only a bodiless request is sent again.
    if (this.body === null && this.retryAllowed(this.controller === null ? Failure.ConnectTimeout : Failure.RequestTimeout)) {
      // Abandoned: its end (onResponseError, at once or when undici starts it) sends the next attempt.
      this.discarding = true;
      this.controller?.abort(TRY_TIMED_OUT);
      return;
    }
    this.error = 'request-timeout';
    this.backend.errors.labels(cluster.name, 'request-timeout').inc();
    this.abandon(
      sendMadeUp(
        this.res,
        'request-timeout',
        `${cluster.name} ${this.endpoint.key}: no response within PerTryTimeoutMS (${td.queue.timeoutMs} ms)`,
        this.site.draining,
      ),
    );
  }

  /**
   * Whether this failure may be retried now (proxy/l7/retry.ts); takes a retry from the budget when so.
   * This path adds: nothing of the answer sent yet, and a body that was sent (any of it read from the
   * client) cannot be replayed. RequestTimeoutMS bounds all attempts: once it fired (unlinked), no time
   * is left for another.
   */
  private retryAllowed(why: Failure): boolean {
    if (this.res.headersSent || this.done) return false;
    if (this.body !== null && (this.body.readableDidRead || this.body.readableEnded)) return false;
    const deadlineLeft = this.deadlineQueue !== null || this.backend.deadlines === null;
    return retryAllowed(this.backend, this.permit, why, this.req.method ?? '', this.attempts, deadlineLeft, performance.now());
  }

  private retry(): void {
    const cluster = this.backend.cluster;
    this.unpend();
    this.attempts++;
    const next = cluster.pickOther(this.endpoint) ?? this.endpoint;
    this.permit.bind(next, true);
    this.endpoint = next;
    this.controller = null;
    this.discarding = false;
    const wait = this.backend.retryBackoffMs;
    if (wait > 0) {
      // The route's retry backoff (Gateway API HTTPRouteRetry.backoff): RequestTimeoutMS keeps counting;
      // the next attempt's PerTryTimeoutMS starts with it (send).
      if (this.tryDeadline !== null) disarm(this.tryDeadline);
      this.backoff = setTimeout(onBackoffOver, wait, this);
      return;
    }
    this.send();
  }

  backoffOver(): void {
    this.backoff = null;
    if (!this.done) this.send();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.unpend();
    // Given up on while it waited for a connection: never sent.
    if (this.done) controller.abort(CLIENT_GONE);
    else if (this.discarding) controller.abort(TRY_TIMED_OUT);
  }

  private unpend(): void {
    this.permit.dequeue();
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, unknown>,
    statusMessage?: string,
  ): void {
    if (this.done) {
      controller.abort(CLIENT_GONE);
      return;
    }
    if (statusCode >= 502 && statusCode <= 504) {
      const cluster = this.backend.cluster;
      cluster.stats.fail5xx++;
      cluster.outlier.failure(this.endpoint);
    }
    // 502-504, or the route's retry codes (Gateway API HTTPRouteRetry).
    if (this.backend.retriesStatus(statusCode) && this.retryAllowed(Failure.Answer)) {
      this.discarding = true;
      return;
    }
    // The head is here: the deadline is met (undici's bodyTimeout bounds silence from now on).
    disarm(this);
    const res = this.res;
    if (this.site.draining) res.shouldKeepAlive = false;
    const raw = controller.rawHeaders;
    let out = Array.isArray(raw)
      ? downstreamHeaders(raw)
      : downstreamHeaders(
          Object.entries(headers).flatMap(([k, v]) => (Array.isArray(v) ? v.flatMap((x) => [k, String(x)]) : [k, String(v)])),
        );
    const f = this.backend.filters;
    if (f !== null && f.responseHeaders !== null) out = f.responseHeaders.applyList(out);
    try {
      if (statusMessage) res.writeHead(statusCode, statusMessage, out);
      else res.writeHead(statusCode, out);
    } catch {
      // node:http validates what it writes (ERR_INVALID_CHAR); the fast path refuses the same heads.
      // The refused reason stays on res and would fail the 502 too.
      res.statusMessage = '';
      controller.abort(MALFORMED_RESPONSE);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.discarding) return;
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', onResponseDrain);
    }
  }

  onResponseEnd(): void {
    if (this.discarding) {
      if (this.done) return;
      this.retry();
      return;
    }
    const status = this.res.statusCode;
    if (status < 500) this.endpoint.consecutiveErrors = 0;
    else if (status < 502 || status > 504) this.backend.cluster.outlier.failure(this.endpoint);
    this.res.end();
    this.finish(status);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.done) return;
    if (err === CLIENT_GONE) {
      this.finish(499);
      return;
    }
    if (this.discarding) {
      // The dropped 5xx broke off, or the attempt passed PerTryTimeoutMS; its retry was already granted.
      this.retry();
      return;
    }
    const code = (err as Error & { code?: string }).code;
    if (this.controller === null && (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED')) {
      // undici refused to send it (its header checks): the client's request, not the endpoint, is at fault.
      this.error = 'bad-request';
      this.backend.errors.labels(this.backend.cluster.name, 'bad-request').inc();
      this.site.log.debug({ listener: this.site.name, error: err.message }, 'request refused before sending');
      this.finish(sendMadeUp(this.res, 'bad-request', err.message, true));
      return;
    }
    const e = upstreamError(err as Error & { code?: string });
    const connectFailed = connectFailure(err as Error & { code?: string });
    const cluster = this.backend.cluster;
    if (connectFailed) {
      if (e === 'connect-timeout') cluster.stats.failConnectTimeout++;
      else cluster.stats.failConnect++;
    } else if (e === 'request-timeout') cluster.stats.failRequestTimeout++;
    else cluster.stats.failReset++;
    cluster.outlier.failure(this.endpoint);
    if (this.retryAllowed(connectFailed ? Failure.ConnectFailure : e === 'request-timeout' ? Failure.RequestTimeout : Failure.Reset)) {
      this.retry();
      return;
    }
    this.error = e;
    this.backend.errors.labels(this.backend.cluster.name, e).inc();
    if (this.site.log.isLevelEnabled('debug'))
      this.site.log.debug({ listener: this.site.name, upstream: this.endpoint.key, error: err.message }, 'upstream failed');
    const status = sendMadeUp(this.res, e, `${this.backend.cluster.name} ${this.endpoint.key}: ${err.message}`, this.site.draining);
    this.finish(status);
  }

  /** The client went away before the response was done: stop the upstream side too. */
  clientGone(): void {
    if (this.controller && !this.controller.aborted) this.controller.abort(CLIENT_GONE);
    else this.finish(499);
  }

  private finish(status: number): void {
    if (this.done) return;
    this.done = true;
    if (this.backoff !== null) {
      clearTimeout(this.backoff);
      this.backoff = null;
    }
    this.unpend();
    if (this.deadlineQueue !== null) disarm(this);
    if (this.tryDeadline !== null) disarm(this.tryDeadline);
    this.res[FORWARD] = null;
    if (!this.idleArmed) this.req[FORWARD] = null; // else kept: a body idle timeout after the answer closes the connection
    this.releaseTurn();
    // The connection as found at dispatch: by now node may have detached req.socket (null).
    const c = this.client;
    if (c && c.handedBusy > 0) c.handedBusy--;
    this.permit.release();
    this.backend.stats.count(status);
    const seconds = (performance.now() - this.start) / 1000;
    this.backend.latency.observe(seconds);
    if (this.trace !== null)
      this.trace.end(
        this.req.method ?? '',
        this.req.url ?? '',
        this.req.headers.host ?? '',
        this.sock?.remoteAddress ?? '',
        status,
        this.error,
        this.backend.cluster.name,
        this.endpoint,
        this.attempts,
        -1,
      );
    const al = this.site.accessLog;
    if (al !== null && al.sampled()) {
      al.write({
        direction: this.site.direction,
        listener: this.site.name,
        method: this.req.method ?? '',
        path: this.req.url ?? '',
        host: this.req.headers.host ?? '',
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
