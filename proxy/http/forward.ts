// One request on its way upstream: the undici dispatch handler that streams the response back.
// A handler object carries the request's state (as undici's own handlers do): no closure per request.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Logger } from '../../shared/log.ts';
import type { AccessLog } from '../accessLog.ts';
import type { Endpoint } from '../cluster/endpoint.ts';
import { clientOf } from './h1/clientConnection.ts';
import { classify, connectionListed, Hop } from './hopByHop.ts';
import { nextRequestId } from './requestId.ts';
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

export class ForwardRequest implements Dispatcher.DispatchHandler {
  readonly req: IncomingMessage;
  readonly res: TaggedResponse;
  readonly site: ForwardSite;
  readonly backend: RouteBackend;
  readonly endpoint: Endpoint;
  readonly start: number;
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
    const headers: string[] = [];
    this.requestId = upstreamHeaders(req, headers);
    this.endpoint.active++;
    this.backend.cluster.active++;
    this.res[FORWARD] = this;
    this.res.on('close', onResponseClose);
    const c = clientOf(req.socket);
    if (c) c.handedBusy++;
    this.endpoint.http().dispatch({
      method: req.method as Dispatcher.HttpMethod,
      path: req.url as string,
      headers,
      body: hasBody(req) ? req : null,
    }, this);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, unknown>, statusMessage?: string): void {
    const res = this.res;
    if (this.site.draining) res.shouldKeepAlive = false;
    const raw = controller.rawHeaders;
    const out = Array.isArray(raw) ? downstreamHeaders(raw) : downstreamHeaders(Object.entries(headers).flatMap(([k, v]) => Array.isArray(v) ? v.flatMap((x) => [k, String(x)]) : [k, String(v)]));
    if (statusMessage) res.writeHead(statusCode, statusMessage, out);
    else res.writeHead(statusCode, out);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.res.write(chunk)) {
      controller.pause();
      this.res.once('drain', onResponseDrain);
    }
  }

  onResponseEnd(): void {
    this.res.end();
    this.finish(this.res.statusCode);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.done) return;
    if (err === CLIENT_GONE) {
      this.finish(499);
      return;
    }
    const e = upstreamError(err as Error & { code?: string });
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
    this.res[FORWARD] = null;
    const c = clientOf(this.req.socket);
    if (c && c.handedBusy > 0) c.handedBusy--;
    this.endpoint.active--;
    this.backend.cluster.active--;
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
