// The sidecar warms its HTTP/1 request path before it reports ready. V8 runs new code in its
// interpreter and compiles it only once it has run for a while, so the first few hundred requests
// after start each cost several times what a warm one does: a fresh sidecar answered its first burst
// of 40 refusals over MaxRequests in 3–5 ms where a warm one takes 1–2 ms. Here the same classes
// (HttpListener, ClientConnection, Exchange, the cluster and its upstream pool) carry a few hundred
// bodiless requests, the common case, between a private listener, a private cluster and a private
// upstream, all on 127.0.0.1 port 0, counted in private metrics the admin endpoint never shows.
// Requests with a body are left out: their path (node:http, undici) loads node:tls, node:http2 and
// node:zlib, about 9 MB a sidecar without such requests never pays. Nothing of the warm-up outlives
// it; a failure in it is logged and never blocks start.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import type { Logger } from '../shared/log.ts';
import { Registry } from '../shared/metricsRegistry.ts';
import type { Cluster as ClusterSpec, Route } from '../shared/snapshot.ts';
import { ClusterSet } from './cluster/clusterSet.ts';
import { HttpListener } from './http/httpListener.ts';
import { RouteTable } from './l7/routeTable.ts';
import { nodeHttp } from './lazyBuiltins.ts';
import { ProxyMetrics } from './metrics.ts';

/** Requests a sidecar sends through itself before it reports ready, unless told otherwise. */
export const DEFAULT_WARM_UP_REQUESTS = 400;
/** Past this the warm-up gives up (a machine so loaded that it would only delay readiness). */
export const WARM_UP_DEADLINE_MS = 5000;
/** MaxRequests of the private cluster: this many held requests make every further one a refusal. */
const LIMIT = 4;

export interface WarmUpResult {
  /** Requests answered, by status and x-shoal-error ("200" through the upstream, "503 overloaded" refused over MaxRequests). */
  answered: Record<string, number>;
  ms: number;
}

/** Parses the requests a number names: 0 (off) up to 100,000. */
export function parseWarmUpRequests(value: unknown, where = '--warm-up-requests'): number {
  const n = typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value.trim()) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 100_000) {
    throw new Error(`${where} must be a whole number of requests from 0 (no warm-up) to 100000, not ${JSON.stringify(value)}`);
  }
  return n;
}

/** One keep-alive connection to the private listener that sends a request and reads its whole answer. */
class WarmClient {
  private buf: Buffer | null = null;
  private waiting: { resolve: (answer: string) => void; reject: (err: Error) => void } | null = null;
  readonly socket: Socket;
  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
      this.parse();
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('the warm-up listener closed a connection')));
  }

  static open(port: number): Promise<WarmClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => {
        s.off('error', reject);
        resolve(new WarmClient(s));
      });
      s.setNoDelay(true);
      s.once('error', reject);
    });
  }

  /** Resolves with the answer's status and its x-shoal-error, if any: "200", "503 overloaded". */
  send(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(request, 'latin1');
    });
  }

  close(): void {
    this.waiting = null;
    this.socket.destroy();
  }

  private parse(): void {
    const buf = this.buf;
    if (buf === null || this.waiting === null) return;
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = buf.toString('latin1', 0, end);
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    const total = end + 4 + (length ? Number(length[1]) : 0);
    if (buf.length < total) return;
    this.buf = buf.length === total ? null : buf.subarray(total);
    const w = this.waiting;
    this.waiting = null;
    const error = /\r\nx-shoal-error: *([a-z-]+)/i.exec(head);
    w.resolve(error ? `${head.slice(9, 12)} ${error[1]}` : head.slice(9, 12));
  }

  private fail(err: Error): void {
    const w = this.waiting;
    this.waiting = null;
    w?.reject(err);
  }
}

function clusterSpec(name: string, port: number, deadlineMs: number): ClusterSpec {
  return {
    name,
    service: name,
    namespace: 'shoal-warm-up',
    port,
    protocol: 'http',
    lbPolicy: 'least_request',
    hashHeader: '',
    policy: {
      connectTimeoutMs: 1000,
      requestTimeoutMs: deadlineMs,
      retryAttempts: 0,
      maxActiveRetries: 0,
      maxConnections: 64,
      maxRequests: LIMIT,
      maxPendingRequests: 64,
      maxRequestsPerConnection: 0,
      consecutiveErrors: 1_000_000,
      baseEjectionTimeMs: 1000,
      maxEjectionPercent: 0,
      intervalMs: 60_000,
      healthyPanicThreshold: 0,
      tcpIdleTimeoutS: 60,
    },
    endpoints: [{ address: '127.0.0.1', port, weight: 1, zone: '', ready: true, serving: true, terminating: false }],
  };
}

/**
 * Sends about `requests` requests through a private listener: keep-alive GETs through the upstream
 * pool, refusals over MaxRequests, and one request per new connection.
 */
export async function warmUp(requests: number, log: Logger, deadlineMs = WARM_UP_DEADLINE_MS, signal?: AbortSignal): Promise<WarmUpResult> {
  const started = performance.now();
  const answered: Record<string, number> = {};
  // Off, or the sidecar is already closing: nothing to bind or send.
  if (requests <= 0 || signal?.aborted) return { answered, ms: 0 };
  const held: ServerResponse[] = [];
  const upstream = nodeHttp().createServer({ keepAliveTimeout: deadlineMs }, (req: IncomingMessage, res: ServerResponse) => {
    if (req.url === '/hold') {
      held.push(res);
      req.resume();
      return;
    }
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const metrics = new ProxyMetrics(new Registry());
  const clusters = new ClusterSet(0, metrics);
  const clients: WarmClient[] = [];
  let listener: HttpListener | null = null;
  let timer: NodeJS.Timeout | undefined;
  // Set at the deadline: the requests still running stop at their next step.
  let over = false;
  try {
    await new Promise<void>((resolve, reject) => {
      upstream.once('error', reject);
      upstream.listen(0, '127.0.0.1', resolve);
    });
    const name = 'shoal-warm-up';
    clusters.apply([clusterSpec(name, (upstream.address() as AddressInfo).port, deadlineMs)]);
    const routes: Route[] = [{ domains: ['*'], prefix: '/', headers: [], backends: [{ cluster: name, weight: 100 }] }];
    const l = new HttpListener(name, 'outbound', new RouteTable(name, routes, clusters, metrics), { log, metrics, accessLog: null });
    listener = l;
    await new Promise<void>((resolve, reject) => {
      l.server.once('error', reject);
      l.server.listen(0, '127.0.0.1', resolve);
    });
    const port = (l.server.address() as AddressInfo).port;
    const count = (answer: string) => {
      answered[answer] = (answered[answer] ?? 0) + 1;
    };
    const open = async () => {
      const c = await WarmClient.open(port);
      if (over) {
        c.close();
        throw new Error('the warm-up is over');
      }
      clients.push(c);
      return c;
    };
    const get = 'GET /warm-up HTTP/1.1\r\nhost: shoal-warm-up\r\nuser-agent: shoal-warm-up\r\naccept: */*\r\n\r\n';
    const loop = async (c: WarmClient, n: number, request: string) => {
      for (let i = 0; i < n && !over; i++) count(await c.send(request));
    };
    const work = (async () => {
      // Keep-alive GETs through an exchange and the upstream pool, LIMIT at a time.
      const keep = await Promise.all(Array.from({ length: LIMIT }, open));
      await Promise.all(keep.map((c) => loop(c, Math.ceil((requests * 0.5) / LIMIT), get)));
      // Refusals: LIMIT requests held at the upstream fill MaxRequests; every other one is a 503.
      const holders = await Promise.all(Array.from({ length: LIMIT }, open));
      for (const h of holders) void h.send('GET /hold HTTP/1.1\r\nhost: shoal-warm-up\r\n\r\n').then(count, () => {});
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the deadline timer while this loop awaits
      while (held.length < LIMIT && !over) await new Promise((r) => setTimeout(r, 1));
      await Promise.all(keep.map((c) => loop(c, Math.ceil((requests * 0.3) / LIMIT), get)));
      for (const res of held.splice(0)) res.end('held');
      // New connections: accept, the fast path's set-up, one request each.
      const fresh = Math.ceil(requests * 0.2);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the deadline timer while this loop awaits
      for (let i = 0; i < fresh && !over; i += 10) {
        await Promise.all(
          Array.from({ length: Math.min(10, fresh - i) }, async () => {
            const c = await open();
            count(await c.send(get));
            c.close();
          }),
        );
      }
    })();
    await Promise.race([
      work,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          over = true;
          reject(new Error(`not done after ${deadlineMs} ms`));
        }, deadlineMs);
        // The sidecar is closing (SIGTERM during start): stop now rather than at the deadline.
        if (signal?.aborted) reject(signal.reason);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      }),
    ]);
    const ms = performance.now() - started;
    log.info({ answered, ms: Math.round(ms) }, 'request path warmed up');
    return { answered, ms };
  } catch (err) {
    if (signal?.aborted && err === signal.reason) log.info({ answered }, 'warm-up stopped: the sidecar is closing');
    else log.warn({ error: (err as Error).message, answered }, 'the warm-up of the request path failed; starting without it');
    return { answered, ms: performance.now() - started };
  } finally {
    over = true;
    clearTimeout(timer);
    for (const c of clients) c.close();
    for (const res of held) res.destroy();
    if (listener !== null) {
      listener.server.close();
      listener.destroyAll();
    }
    upstream.close();
    upstream.closeAllConnections();
    await clusters.destroy();
  }
}
