// Gateway API RequestMirror: a copy of the request goes to the mirror cluster, fire and forget. Its response
// is read to the end and dropped; it never reaches the client, and a mirror that fails, stalls or is
// refused never touches the main request (no shared state but the endpoint's pool). Over HTTP/1.1 (the
// h1 listener's paths: undici) or as an HTTP/2 stream (the h2 listener's), as the listener speaks upstream.
// Bodies: a copy is kept while the main request streams, up to MIRROR_BODY_LIMIT bytes; a request with a
// longer body is not mirrored (docs/proxy.md).
import type { ClientHttp2Stream, OutgoingHttpHeaders } from 'node:http2';
import type { Dispatcher } from 'undici';
import type { Cluster } from '../cluster/cluster.ts';
import { Permit, PermitKind } from '../cluster/permit.ts';
import { sessionsOf, type EndpointSessions } from '../h2/endpointSessions.ts';
import { MIRROR_BODY_LIMIT } from './routeFilters.ts';
import { undiciPoolOf } from '../http/undiciPool.ts';

/** Mirror requests sent, failed (error or no endpoint), skipped (body over the limit): for tests and shoal get. */
export const mirrorStats = { sent: 0, failed: 0, skipped: 0 };

/** Drains and drops an undici response; counts failures; gives the mirror's permit back when it ends. */
class DropHandler implements Dispatcher.DispatchHandler {
  private readonly permit: Permit;
  private ended = false;

  constructor(permit: Permit) {
    this.permit = permit;
  }

  onRequestStart(): void {}
  onResponseStart(): void {}
  onResponseData(): void {}
  onResponseEnd(): void {
    this.end(false);
  }

  onResponseError(): void {
    this.end(true);
  }

  private end(failed: boolean): void {
    if (this.ended) return;
    this.ended = true;
    this.permit.release();
    if (failed) mirrorStats.failed++;
  }
}

/** Sends an HTTP/1.1 copy: headers a flat list (Host included), body the copied bytes (null: none). */
export function mirrorH1(
  cluster: Cluster,
  method: string,
  target: string,
  headers: string[],
  body: Buffer | null,
  timeoutMs: number,
): void {
  // A mirror in flight holds its cluster's MaxRequests slot like any request, but gives way first (PermitKind.Mirror).
  const permit = Permit.tryAcquire(cluster, PermitKind.Mirror);
  if (permit === null) {
    mirrorStats.skipped++;
    return;
  }
  const ep = cluster.pick(undefined);
  if (ep === null) {
    permit.release();
    mirrorStats.failed++;
    return;
  }
  permit.bind(ep, true);
  mirrorStats.sent++;
  const h = new DropHandler(permit);
  try {
    undiciPoolOf(ep).dispatch(
      {
        method: method as Dispatcher.HttpMethod,
        path: target,
        headers,
        body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      },
      h,
    );
  } catch {
    h.onResponseError();
  }
}

const MIRROR = Symbol('shoal.mirror');
type MirrorStream = ClientHttp2Stream & { [MIRROR]?: Permit | null };

function onMirrorClose(this: MirrorStream): void {
  const p = this[MIRROR];
  if (!p) return;
  this[MIRROR] = null;
  p.release();
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- rstCode is undefined until the stream has closed; Node's typings say number
  if (this.rstCode !== undefined && this.rstCode !== 0) mirrorStats.failed++;
}

function ignore(): void {}

/** Sends an HTTP/2 copy: headers with pseudo-headers; use registers the pool with the listener (its lifecycle). */
export function mirrorH2(
  cluster: Cluster,
  headers: OutgoingHttpHeaders,
  body: Buffer | null,
  drainMs: number,
  use: (pool: EndpointSessions) => void,
): void {
  const permit = Permit.tryAcquire(cluster, PermitKind.Mirror);
  if (permit === null) {
    mirrorStats.skipped++;
    return;
  }
  const ep = cluster.pick(undefined);
  if (ep === null) {
    permit.release();
    mirrorStats.failed++;
    return;
  }
  const p = cluster.policy;
  let stream: MirrorStream;
  try {
    const pool = sessionsOf(ep, {
      connectTimeoutMs: p.connectTimeoutMs,
      maxConnections: p.maxConnections,
      maxRequestsPerConnection: p.maxRequestsPerConnection,
      drainMs,
    });
    use(pool);
    stream = pool.request({ ...headers }, body === null).stream as MirrorStream;
  } catch {
    permit.release();
    mirrorStats.failed++;
    return;
  }
  permit.bind(ep);
  mirrorStats.sent++;
  stream[MIRROR] = permit;
  stream.on('error', ignore);
  stream.once('close', onMirrorClose);
  stream.resume();
  if (p.requestTimeoutMs > 0) stream.setTimeout(p.requestTimeoutMs, () => stream.close());
  if (body !== null) stream.end(body);
}

/** Collects a copy of a body while it streams, up to MIRROR_BODY_LIMIT; null once it went over. */
export class BodyCopy {
  chunks: Buffer[] | null = [];
  bytes = 0;
  /** The body went over the limit: no mirror. */
  over = false;

  add(chunk: Buffer): void {
    if (this.chunks === null) return;
    if (this.bytes + chunk.length > MIRROR_BODY_LIMIT) {
      this.chunks = null;
      this.over = true;
      mirrorStats.skipped++;
      return;
    }
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** The whole copy (check over first). */
  take(): Buffer {
    const c = this.chunks;
    this.chunks = null;
    return c === null ? Buffer.alloc(0) : Buffer.concat(c);
  }
}
