// One upstream address: its keep-alive pool (L7, created on first use) and its load in flight.
import { createRequire } from 'node:module';
import type { Pool } from 'undici';
import { UpstreamPool } from '../http/h1/upstreamPool.ts';
import { meshUndiciConnector } from '../tls/meshTls.ts';

// undici carries the slow path only (bodies, upgrades): loaded on first use, it costs a sidecar
// that never needs it no memory (about 28 MB of RSS when loaded).
const require = createRequire(import.meta.url);
let PoolClass: typeof Pool | null = null;
function undiciPool(): typeof Pool {
  return (PoolClass ??= (require('undici') as typeof import('undici')).Pool);
}
import type { ClusterPolicy } from '../../shared/snapshot.ts';
import type { Cluster } from './cluster.ts';

export class Endpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  /** Requests (L7) or connections (L4) in flight; what least-request compares. */
  active = 0;
  retired = false;
  /** Outlier detection: failures in a row, ejected until (performance.now() ms; 0 = in the balancer), times ejected. */
  consecutiveErrors = 0;
  ejectedUntil = 0;
  timesEjected = 0;
  /** Slow-path (undici) requests in flight here. */
  slowActive = 0;
  /** Where it runs and the EndpointSlice hints (null: none), from the snapshot; locality as seen from this sidecar (balance/locality.ts). */
  node = '';
  zone = '';
  forZones: readonly string[] | null = null;
  forNodes: readonly string[] | null = null;
  locality = 3;
  readonly cluster: Cluster;
  private pool: Pool | null = null;
  private raw: UpstreamPool | null = null;
  private readonly policy: ClusterPolicy;

  constructor(address: string, port: number, weight: number, policy: ClusterPolicy, cluster: Cluster) {
    this.address = address;
    this.port = port;
    this.weight = weight;
    this.key = `${address}:${port}`;
    this.policy = policy;
    this.cluster = cluster;
  }

  /** The keep-alive pool to this endpoint. */
  http(): Pool {
    if (this.pool) return this.pool;
    const p = this.policy;
    this.pool = new (undiciPool())(`http://${this.key}`, {
      connections: p.maxConnections,
      pipelining: 1,
      connectTimeout: p.connectTimeoutMs,
      connect: meshUndiciConnector(p, p.connectTimeoutMs), // mTLS to meshed endpoints (proxy/tls)
      // Basic request deadline: the upstream must start answering, and keep sending, within it.
      headersTimeout: p.requestTimeoutMs,
      bodyTimeout: p.requestTimeoutMs,
      keepAliveTimeout: 4000,
      keepAliveMaxTimeout: 60_000,
      maxRequestsPerClient: p.maxRequestsPerConnection > 0 ? p.maxRequestsPerConnection : undefined,
      strictContentLength: false,
    });
    return this.pool;
  }

  /** The fast path's keep-alive connections to this endpoint. */
  rawPool(): UpstreamPool {
    return (this.raw ??= new UpstreamPool(this.address, this.port, this.policy));
  }

  /** Takes no new work; the pools close once their requests in flight are done. */
  retire(): Promise<void> {
    this.retired = true;
    this.raw?.close();
    const p = this.pool;
    if (!p) return Promise.resolve();
    return p.close().catch(() => {});
  }

  /** Closes at once, failing what is in flight. */
  destroy(): Promise<void> {
    this.retired = true;
    this.raw?.close();
    const p = this.pool;
    if (!p) return Promise.resolve();
    return p.destroy().catch(() => {});
  }
}
