// The HTTP/2 connections to one endpoint, shared by every stream any h2 listener sends there: a
// stream goes on the first connection with room (peer's MAX_CONCURRENT_STREAMS, at most
// STREAMS_PER_SESSION), a new connection opens when all are full (up to MaxConnections).
// node:http2 rather than undici: measured faster here (docs/proxy.md), and it exposes what a gRPC
// proxy needs (RST_STREAM codes, GOAWAY, trailers in both directions).
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import { nodeHttp2 } from '../lazyBuiltins.ts';
import type { Endpoint, EndpointPool } from '../cluster/endpoint.ts';
import { meshH2Connection, type MeshTls } from '../tls/meshTls.ts';

const STREAMS_PER_SESSION = 100;
// Large windows: a 10 MB stream should not stall on 64 KiB round trips; backpressure still holds
// (node stops granting window while a stream's reader is paused).
export const STREAM_WINDOW = 1 << 20;
export const SESSION_WINDOW = 16 << 20;
const IDLE_CLOSE_MS = 30_000;
// A meshed endpoint's TLS handshake, once TCP is up (ConnectTimeoutMS bounds the TCP connect alone,
// as on the HTTP/1.1 path): without a bound, a peer that stalls mid-handshake would hold every
// stream sent to it, since each new one joins the pending session.
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** A stream in flight that must hear when its endpoint is gone for good (after the drain period). */
export interface StreamOwner {
  endpointGone(detail: string): void;
}

export class UpstreamSession {
  readonly session: ClientHttp2Session;
  readonly pool: EndpointSessions;
  active = 0;
  started = 0;
  connected = false;
  /** Takes no new streams (GOAWAY, error, retirement, MaxRequestsPerConnection). */
  closed = false;
  connectTimer: NodeJS.Timeout | null = null;
  /** Meshed endpoint: the sidecar's identity, and the certificate generation this session presented. */
  readonly mesh: MeshTls | null;
  readonly generation: number;

  constructor(pool: EndpointSessions) {
    this.pool = pool;
    const ep = pool.endpoint;
    // Mutual TLS (ALPN h2, the peer's SPIFFE ID checked) to an endpoint the snapshot marks meshed; h2c otherwise.
    const tls = meshH2Connection(ep.cluster.policy, ep.address, ep.port);
    this.mesh = tls?.mesh ?? null;
    this.generation = tls?.mesh.generation ?? 0;
    const s = nodeHttp2().connect(tls ? `https://${ep.key}` : `http://${ep.key}`, {
      settings: { enablePush: false, initialWindowSize: STREAM_WINDOW },
      peerMaxConcurrentStreams: STREAMS_PER_SESSION,
      ...(tls ? { createConnection: tls.connect } : {}),
    });
    this.session = s;
    (s as ClientHttp2Session & { [OWNER]?: UpstreamSession })[OWNER] = this;
    s.on('connect', onSessionConnect);
    s.on('goaway', onSessionGoaway);
    s.on('error', onSessionError);
    s.on('close', onSessionClose);
    s.setTimeout(IDLE_CLOSE_MS, onSessionIdle);
    // Upstream connections never keep the process alive on their own: downstream sockets do.
    s.unref();
    const ms = pool.connectTimeoutMs;
    this.connectTimer = setTimeout(onConnectTimeout, ms, this);
    this.connectTimer.unref();
  }

  get limit(): number {
    if (!this.connected) return STREAMS_PER_SESSION;
    const peer = this.session.remoteSettings.maxConcurrentStreams ?? STREAMS_PER_SESSION;
    return peer < STREAMS_PER_SESSION ? peer : STREAMS_PER_SESSION;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pool.forget(this);
    if (!this.session.closed && !this.session.destroyed) this.session.close();
  }
}

const OWNER = Symbol('shoal.h2.session');
type Tagged = ClientHttp2Session & { [OWNER]: UpstreamSession };

export class ConnectTimeoutError extends Error {
  readonly code = 'SHOAL_CONNECT_TIMEOUT';
}

function onConnectTimeout(u: UpstreamSession): void {
  u.connectTimer = null;
  // Timers run before the poll phase: a busy loop may fire this before it has seen a connect that
  // happened in time. Decide after one poll phase (setImmediate runs after it).
  if (!u.connected) setImmediate(confirmConnectTimeout, u);
}

function confirmConnectTimeout(u: UpstreamSession): void {
  if (u.connected || u.session.destroyed) return;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- an Http2Session's socket is undefined once it is destroyed; Node's typings do not say so
  if (u.session.socket?.connecting === false) {
    if (u.mesh !== null) {
      u.connectTimer = setTimeout(onHandshakeTimeout, HANDSHAKE_TIMEOUT_MS, u);
      u.connectTimer.unref();
    }
    return;
  }
  u.closed = true;
  u.pool.forget(u);
  u.session.destroy(new ConnectTimeoutError(`no connection to ${u.pool.endpoint.key} within ${u.pool.connectTimeoutMs} ms`));
}

function onHandshakeTimeout(u: UpstreamSession): void {
  u.connectTimer = null;
  if (u.connected || u.session.destroyed) return;
  u.closed = true;
  u.pool.forget(u);
  u.session.destroy(new Error(`TLS handshake with ${u.pool.endpoint.key} not finished within ${HANDSHAKE_TIMEOUT_MS} ms`));
}

function onSessionConnect(this: Tagged): void {
  const u = this[OWNER];
  u.connected = true;
  if (u.connectTimer) clearTimeout(u.connectTimer);
  u.connectTimer = null;
  if (!this.destroyed) this.setLocalWindowSize(SESSION_WINDOW);
}

function onSessionGoaway(this: Tagged): void {
  this[OWNER].close();
}

function onSessionError(this: Tagged): void {
  // Streams hear of it through their own error/close; the session only leaves the pool.
  const u = this[OWNER];
  u.closed = true;
  u.pool.forget(u);
}

function onSessionClose(this: Tagged): void {
  const u = this[OWNER];
  u.closed = true;
  if (u.connectTimer) clearTimeout(u.connectTimer);
  u.pool.forget(u);
}

function onSessionIdle(this: Tagged): void {
  const u = this[OWNER];
  if (u.active === 0) u.close();
}

function onStreamClose(this: ClientHttp2Stream & { [OWNER]?: UpstreamSession }): void {
  const u = this[OWNER];
  if (u) u.active--;
}

/** The kind of pool the endpoint holds for this layer (Endpoint.pool). Endpoint objects are per sidecar, so pools are too. */
const H2 = Symbol('shoal.pool.h2');

export class EndpointSessions implements EndpointPool {
  readonly endpoint: Endpoint;
  readonly connectTimeoutMs: number;
  private readonly sessions: UpstreamSession[] = [];
  /** Streams in flight through this pool. */
  readonly owners = new Set<StreamOwner>();
  /** The h2 listeners sending here; the pool closes when the last one is destroyed. */
  readonly users = new Set<object>();
  private readonly maxConnections: number;
  private readonly maxStreamsPerConnection: number;
  readonly drainMs: number;
  retiring = false;
  private drainTimer: NodeJS.Timeout | null = null;

  constructor(
    endpoint: Endpoint,
    opts: { connectTimeoutMs: number; maxConnections: number; maxRequestsPerConnection: number; drainMs: number },
  ) {
    this.endpoint = endpoint;
    this.connectTimeoutMs = opts.connectTimeoutMs;
    this.maxConnections = opts.maxConnections;
    this.maxStreamsPerConnection = opts.maxRequestsPerConnection;
    this.drainMs = opts.drainMs;
  }

  get connections(): number {
    return this.sessions.length;
  }

  /** Opens a stream on a connection with room (a new one if needed). */
  request(headers: OutgoingHttpHeaders, endStream: boolean): { stream: ClientHttp2Stream; session: UpstreamSession } {
    let best: UpstreamSession | null = null;
    for (let i = 0; i < this.sessions.length; i++) {
      const u = this.sessions[i];
      if (u.closed) continue;
      if (u.mesh !== null && u.generation !== u.mesh.generation) {
        // The certificate was renewed since this session's handshake: its streams finish, new ones go on a new session.
        u.close();
        i--;
        continue;
      }
      if (u.active < u.limit) {
        best = u;
        break;
      }
      if (best === null || u.active < best.active) best = u;
    }
    if (best === null || (best.active >= best.limit && this.sessions.length < this.maxConnections)) {
      best = new UpstreamSession(this);
      this.sessions.push(best);
    }
    let u = best;
    let stream: ClientHttp2Stream;
    try {
      stream = u.session.request(headers, { endStream });
    } catch (err) {
      // The connection went away (GOAWAY, close) since it was chosen: once more on a fresh one.
      // Invalid headers throw again there, and reach the caller.
      if (
        (err as { code?: string }).code === 'ERR_HTTP2_INVALID_HEADER_VALUE' ||
        (err as { code?: string }).code === 'ERR_HTTP2_INVALID_CONNECTION_HEADERS'
      )
        throw err;
      u.close();
      u = new UpstreamSession(this);
      this.sessions.push(u);
      stream = u.session.request(headers, { endStream });
    }
    (stream as ClientHttp2Stream & { [OWNER]?: UpstreamSession })[OWNER] = u;
    stream.once('close', onStreamClose);
    u.active++;
    u.started++;
    if (this.maxStreamsPerConnection > 0 && u.started >= this.maxStreamsPerConnection) u.close();
    return { stream, session: u };
  }

  forget(u: UpstreamSession): void {
    const i = this.sessions.indexOf(u);
    if (i >= 0) this.sessions.splice(i, 1);
  }

  /** The endpoint left its cluster: no new streams; streams still open after the drain period end with UNAVAILABLE. */
  retire(): void {
    if (this.retiring) return;
    this.retiring = true;
    for (const u of [...this.sessions]) u.close();
    if (this.owners.size === 0) {
      this.destroy();
      return;
    }
    this.drainTimer = setTimeout(() => {
      this.drainTimer = null;
      const detail = `endpoint ${this.endpoint.key} left the cluster; stream ended after the ${this.drainMs} ms drain period`;
      for (const o of [...this.owners]) o.endpointGone(detail);
      this.destroy();
    }, this.drainMs);
    this.drainTimer.unref();
  }

  destroy(): void {
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    this.retiring = true;
    for (const u of [...this.sessions]) {
      u.closed = true;
      u.session.destroy();
    }
    this.sessions.length = 0;
    this.endpoint.forgetPool(H2, this);
  }

  release(user: object): void {
    this.users.delete(user);
    if (this.users.size === 0) this.destroy();
  }
}

/**
 * The pool of an endpoint, created on first use with the cluster policy of that moment. A retiring
 * pool (its endpoint left the cluster and came back) takes no new streams: a new one replaces it.
 */
export function sessionsOf(
  endpoint: Endpoint,
  opts: { connectTimeoutMs: number; maxConnections: number; maxRequestsPerConnection: number; drainMs: number },
): EndpointSessions {
  const make = (e: Endpoint) => new EndpointSessions(e, opts);
  const p = endpoint.pool(H2, make);
  if (!p.retiring) return p;
  endpoint.forgetPool(H2, p);
  return endpoint.pool(H2, make);
}

// RFC 9113 error codes (literals: node:http2 loads only when a snapshot needs it).
export const H2_CANCEL = 0x8;
export const H2_REFUSED_STREAM = 0x7;
export const H2_INTERNAL_ERROR = 0x2;
