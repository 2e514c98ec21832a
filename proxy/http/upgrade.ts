// Upgrades (WebSocket): the request goes upstream through the endpoint's pool; on 101 both sockets
// are joined and bytes flow as they are. A refusal (any other status) is passed back and the socket closed.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Socket } from 'node:net';
import type { Endpoint } from '../cluster/endpoint.ts';
import { clientOf } from './h1/clientConnection.ts';
import { downstreamHeaders, upstreamHeaders, type ForwardSite } from './undiciExchange.ts';
import { setTraceparent, tracer, type RequestTrace } from '../tracing/tracer.ts';
import { ERROR_STATUS, madeUpHead, upstreamError, type ShoalError } from '../l7/madeUpResponse.ts';
import { rewriteAuthority, rewriteTarget } from '../l7/routeFilters.ts';
import type { RouteBackend } from '../l7/routeTable.ts';
import type { Permit } from '../cluster/permit.ts';
import { undiciPoolOf } from './undiciPool.ts';

function head(status: number, message: string, headers: string[]): string {
  let s = `HTTP/1.1 ${status} ${message}\r\n`;
  for (let i = 0; i < headers.length; i += 2) s += `${headers[i]}: ${headers[i + 1]}\r\n`;
  return `${s}\r\n`;
}

/** Writes a made-up response on a raw socket (upgrade requests have no ServerResponse) and closes it; extra: more header lines, each ending in CRLF. */
export function rawMadeUp(socket: Duplex, error: ShoalError, detail: string, extra = ''): number {
  if (socket.writable) socket.end(madeUpHead(error, detail, true, extra), 'latin1');
  return ERROR_STATUS[error];
}

function destroyPeer(this: Duplex & { peer?: Duplex }): void {
  this.peer?.destroy();
}

export class UpgradeRequest implements Dispatcher.DispatchHandler {
  private readonly req: IncomingMessage;
  private readonly socket: Duplex;
  private readonly head: Buffer;
  private readonly site: ForwardSite;
  private readonly backend: RouteBackend;
  /** The request's hold on its cluster's limits and its endpoint's load (proxy/cluster/permit.ts). */
  private readonly permit: Permit;
  private readonly endpoint: Endpoint;
  private readonly start: number;
  private status = 0;
  private done = false;
  /** Upgraded: the request stays in flight (MaxRequests, least-request balancing) until the tunnel closes. */
  private tunnel = false;
  /** Sampled or propagated trace (proxy/tracing), its spans ending with the handshake; null when tracing is off. */
  private trace: RequestTrace | null = null;
  private error = '';

  constructor(req: IncomingMessage, socket: Duplex, head: Buffer, site: ForwardSite, backend: RouteBackend, permit: Permit, start: number) {
    this.req = req;
    this.socket = socket;
    this.head = head;
    this.site = site;
    this.backend = backend;
    this.permit = permit;
    this.endpoint = permit.endpoint!;
    this.start = start;
  }

  dispatch(): void {
    // A tunnel is never idle: drain leaves it to the drain timeout.
    const c = clientOf(this.socket as Socket);
    if (c) c.handedBusy++;
    let headers: string[] = [];
    upstreamHeaders(this.req, headers);
    let target = this.req.url as string;
    const f = this.backend.filters;
    if (f !== null) {
      // Gateway API filters as on the other paths: request header modifiers, URL rewrite (no mirror of a tunnel).
      if (f.requestHeaders !== null) headers = f.requestHeaders.applyList(headers);
      if (f.rewrite !== null) {
        target = rewriteTarget(f.rewrite, target, f.matchedPrefix);
        if (f.rewrite.hostname !== undefined) {
          const host = rewriteAuthority(f.rewrite, this.req.headers.host ?? '');
          const i = headers.findIndex((n, j) => j % 2 === 0 && n.toLowerCase() === 'host');
          if (i >= 0) headers[i + 1] = host;
          else headers.push('host', host);
        }
      }
    }
    if (tracer !== null && (this.trace = tracer.beginRaw(this.req.rawHeaders, this.start, this.site, false)) !== null)
      setTraceparent(headers, this.trace);
    this.socket.on('error', destroyPeer);
    undiciPoolOf(this.endpoint).dispatch(
      {
        method: this.req.method as Dispatcher.HttpMethod,
        path: target,
        headers,
        body: null,
        upgrade: this.req.headers.upgrade ?? 'websocket',
      },
      this,
    );
  }

  onRequestStart(): void {}

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, upstream: Duplex): void {
    const raw = Array.isArray(controller.rawHeaders) ? controller.rawHeaders : [];
    const out: string[] = [];
    // Keep Connection/Upgrade here: they are what a 101 means.
    for (let i = 0; i < raw.length; i += 2) out.push(String(raw[i]), String(raw[i + 1]));
    this.status = statusCode;
    const client = this.socket as Duplex & { peer?: Duplex };
    const up = upstream as Duplex & { peer?: Duplex };
    client.peer = up;
    up.peer = client;
    up.on('error', destroyPeer);
    client.on('close', destroyPeer);
    up.on('close', destroyPeer);
    this.tunnel = true;
    const release = () => this.release();
    client.once('close', release);
    up.once('close', release);
    // The client left while the upstream answered: nothing will close the upstream side but this.
    if (client.destroyed) up.destroy();
    client.write(head(statusCode, 'Switching Protocols', out));
    if (this.head.length > 0) up.write(this.head);
    up.pipe(client);
    client.pipe(up);
    this.finish();
  }

  // The upstream refused the upgrade: pass its answer on as a plain response, then close.
  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, _headers: unknown, statusMessage?: string): void {
    this.status = statusCode;
    const raw = Array.isArray(controller.rawHeaders) ? downstreamHeaders(controller.rawHeaders) : [];
    raw.push('connection', 'close');
    this.socket.write(head(statusCode, statusMessage || 'Upgrade Refused', raw));
  }

  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    this.socket.write(chunk);
  }

  onResponseEnd(): void {
    this.socket.end();
    this.finish();
  }

  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    const e = upstreamError(err as Error & { code?: string });
    this.error = e;
    this.backend.errors.labels(this.backend.cluster.name, e).inc();
    if (this.status === 0) this.status = rawMadeUp(this.socket, e, `${this.backend.cluster.name} ${this.endpoint.key}: ${err.message}`);
    else this.socket.destroy();
    this.finish();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    if (!this.tunnel) this.release();
    this.backend.stats.count(this.status);
    this.backend.latency.observe((performance.now() - this.start) / 1000);
    // req.socket is null once the socket is detached (Node's typings say Socket).
    if (this.trace !== null)
      this.trace.end(
        this.req.method ?? '',
        this.req.url ?? '',
        this.req.headers.host ?? '',
        (this.req.socket as Socket | null)?.remoteAddress ?? '',
        this.status,
        this.error,
        this.backend.cluster.name,
        this.endpoint,
        0,
        -1,
      );
  }

  private release(): void {
    this.permit.release();
  }
}
