// One request on its way upstream: the undici dispatch handler that streams the response back.
// A handler object carries the request's state (as undici's own handlers do): no closure per request.
// Retries follow the fast path's rule (h1/exchange.ts), with one more: a request whose body was
// sent, even in part, is never retried (bodies are streamed, not kept for a replay).
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Logger } from '../../shared/log.ts';
import type { AccessLog } from '../accessLog.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import { clientOf, type ClientConnection } from './h1/clientConnection.ts';
import { idempotent } from './h1/exchange.ts';
import { classify, connectionListed, Hop } from './hopByHop.ts';
import { nextRequestId } from './requestId.ts';
import { forwardedClientCert } from '../tls/meshTls.ts';
import { sendMadeUp, upstreamError, type ShoalError } from './madeUpResponse.ts';
import type { RouteBackend } from './routeTable.ts';

/** What a request needs to know about the listener it came in on. */
export interface ForwardSite {
  readonly name: string;
  readonly direction: 'inbound' | 'outbound';
  draining: boolean;
  readonly accessLog: AccessLog | null;
  readonly log: Logger;
}

const FORWARD = Symbol('shoal.forward');
type TaggedResponse = ServerResponse & { [FORWARD]?: ForwardRequest | null };

function onResponseDrain(this: TaggedResponse): void {
  this[FORWARD]?.controller?.resume();
}

function onResponseClose(this: TaggedResponse): void {
  const f = this[FORWARD];
  if (f && !f.done) f.clientGone();
}

const CLIENT_GONE = new Error('client closed the connection');

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
    const name = typeof raw[i] === 'string' ? raw[i] as string : (raw[i] as Buffer).toString('latin1');
    const value = typeof raw[i + 1] === 'string' ? raw[i + 1] as string : (raw[i + 1] as Buffer).toString('latin1');
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

function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return len !== '0';
  return req.headers['transfer-encoding'] !== undefined;
}

/** Failures that happen before the request reached the upstream: always safe to retry. */
function connectFailure(err: Error & { code?: string }): boolean {
  switch (err.code) {
    case 'ECONNREFUSED': case 'UND_ERR_CONNECT_TIMEOUT': case 'EHOSTUNREACH': case 'ENETUNREACH': case 'EADDRNOTAVAIL': return true;
    default: return false;
  }
}

export class ForwardRequest implements Dispatcher.DispatchHandler {
  readonly req: IncomingMessage;
  readonly res: TaggedResponse;
  readonly site: ForwardSite;
  readonly backend: RouteBackend;
  endpoint: Endpoint;
  readonly start: number;
  private headers: string[] = [];
  private client: ClientConnection | null = null;
  private body: IncomingMessage | null = null;
  /** Retries made so far; > 0 also means one of the cluster's active retries is held. */
  private attempts = 0;
  /** A 502/503/504 being read to its end and dropped, because it will be retried. */
  private discarding = false;
  /** Counted in the cluster's pending requests: queued in undici behind MaxConnections busy ones. */
  private pending = false;
  requestId = '';
  controller: Dispatcher.DispatchController | null = null;
  done = false;
  error: ShoalError | '' = '';

  constructor(req: IncomingMessage, res: ServerResponse, site: ForwardSite, backend: RouteBackend, endpoint: Endpoint, start: number) {
    this.req = req;
    this.res = res;
    this.site = site;
    this.backend = backend;
    this.endpoint = endpoint;
    this.start = start;
  }

  /** Sends the request to the endpoint's pool. */
  dispatch(): void {
    const req = this.req;
    this.requestId = upstreamHeaders(req, this.headers);
    this.body = hasBody(req) ? req : null;
    this.endpoint.active++;
    this.endpoint.slowActive++;
    this.backend.cluster.active++;
    this.backend.cluster.budget.request(this.start);
    this.res[FORWARD] = this;
    this.res.on('close', onResponseClose);
    const c = clientOf(req.socket);
    this.client = c ?? null;
    if (c) c.handedBusy++;
    this.send();
  }

  private send(): void {
    const cluster = this.backend.cluster;
    // More requests in flight here than MaxConnections: this one waits in undici's queue for a connection.
    if (this.endpoint.slowActive > cluster.policy.maxConnections) {
      if (cluster.pending >= cluster.policy.maxPendingRequests) {
        cluster.stats.overflowMaxPending++;
        this.error = 'circuit-open';
        this.backend.errors.labels(cluster.name, 'circuit-open').inc();
        this.req.resume();
        this.finish(sendMadeUp(this.res, 'circuit-open', `${cluster.name}: every connection MaxConnections allows to ${this.endpoint.key} is busy and MaxPendingRequests (${cluster.policy.maxPendingRequests}) are waiting`, this.site.draining));
        return;
      }
      this.pending = true;
      cluster.pending++;
      cluster.stats.queued++;
    }
    const t = this.backend.requestTimeoutMs;
    this.endpoint.http().dispatch({
      method: this.req.method as Dispatcher.HttpMethod,
      path: this.req.url as string,
      headers: this.headers,
      body: this.body,
      headersTimeout: t,
      bodyTimeout: t,
    }, this);
  }

  /** Whether this failure may be retried now; takes a retry from the budget when so. */
  private retryAllowed(connectFailed: boolean): boolean {
    const cluster = this.backend.cluster;
    if (this.attempts >= cluster.policy.retryAttempts || this.res.headersSent || this.done) return false;
    // A body that was sent (any of it read from the client) cannot be replayed.
    if (this.body !== null && (this.body.readableDidRead || this.body.readableEnded)) return false;
    if (!connectFailed && !this.backend.retryNonIdempotent && !idempotent(this.req.method ?? '')) return false;
    if (this.attempts > 0) cluster.activeRetries--;
    const ok = cluster.admitRetry(performance.now());
    if (ok || this.attempts > 0) cluster.activeRetries++;
    return ok;
  }

  private retry(): void {
    const cluster = this.backend.cluster;
    this.unpend();
    this.attempts++;
    const next = cluster.pickOther(this.endpoint) ?? this.endpoint;
    this.endpoint.active--;
    this.endpoint.slowActive--;
    next.active++;
    next.slowActive++;
    this.endpoint = next;
    this.controller = null;
    this.discarding = false;
    this.send();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    this.unpend();
  }

  private unpend(): void {
    if (!this.pending) return;
    this.pending = false;
    this.backend.cluster.pending--;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, unknown>, statusMessage?: string): void {
    if (this.done) {
      controller.abort(CLIENT_GONE);
      return;
    }
    if (statusCode >= 502 && statusCode <= 504) {
      const cluster = this.backend.cluster;
      cluster.stats.fail5xx++;
      cluster.outlier.failure(this.endpoint);
      if (this.retryAllowed(false)) {
        this.discarding = true;
        return;
      }
    }
    const res = this.res;
    if (this.site.draining) res.shouldKeepAlive = false;
    const raw = controller.rawHeaders;
    const out = Array.isArray(raw) ? downstreamHeaders(raw) : downstreamHeaders(Object.entries(headers).flatMap(([k, v]) => Array.isArray(v) ? v.flatMap((x) => [k, String(x)]) : [k, String(v)]));
    if (statusMessage) res.writeHead(statusCode, statusMessage, out);
    else res.writeHead(statusCode, out);
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
      // The dropped 5xx broke off; its retry was already granted.
      this.retry();
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
    if (!this.discarding) cluster.outlier.failure(this.endpoint);
    if (this.retryAllowed(connectFailed)) {
      this.retry();
      return;
    }
    this.error = e;
    this.backend.errors.labels(this.backend.cluster.name, e).inc();
    if (this.site.log.isLevelEnabled('debug')) this.site.log.debug({ listener: this.site.name, upstream: this.endpoint.key, error: err.message }, 'upstream failed');
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
    this.unpend();
    this.res[FORWARD] = null;
    // The connection as found at dispatch: by now node may have detached req.socket (null).
    const c = this.client;
    if (c && c.handedBusy > 0) c.handedBusy--;
    this.endpoint.active--;
    this.endpoint.slowActive--;
    this.backend.cluster.active--;
    if (this.attempts > 0) this.backend.cluster.activeRetries--;
    this.backend.stats.count(status);
    const seconds = (performance.now() - this.start) / 1000;
    this.backend.latency.observe(seconds);
    const al = this.site.accessLog;
    if (al !== null && al.sampled()) {
      al.write({
        direction: this.site.direction, listener: this.site.name, method: this.req.method ?? '', path: this.req.url ?? '',
        host: this.req.headers.host ?? '', status, durationMs: seconds * 1000, cluster: this.backend.cluster.name,
        upstream: this.endpoint.key, requestId: this.requestId, error: this.error,
      });
    }
  }
}
