// One upstream address: its load in flight, its outlier state, and the connection pools the protocol
// layers keep to it. Each layer owns its kind of pool (the fast path's http/h1/upstreamPool.ts,
// undici's http/undiciPool.ts, HTTP/2 sessions in h2/endpointSessions.ts) and makes it here on first
// use; the endpoint only holds them, so that retiring or destroying it reaches every pool.
import type { ClusterPolicy } from '../../shared/snapshot.ts';
import type { Cluster } from './cluster.ts';

/** A connection pool a protocol layer keeps to one endpoint. */
export interface EndpointPool {
  /** The endpoint left its cluster: take no new work; close once what is in flight is done (or its drain period passed). */
  retire(): Promise<void> | void;
  /** Close now, failing what is in flight. */
  destroy(): Promise<void> | void;
}

export class Endpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  /** Requests (L7) or connections (L4) in flight; what least-request compares. Changed only through permits (permit.ts). */
  active = 0;
  retired = false;
  /** Outlier detection: failures in a row, ejected until (performance.now() ms; 0 = in the balancer), times ejected. */
  consecutiveErrors = 0;
  ejectedUntil = 0;
  timesEjected = 0;
  /** Slow-path (undici) requests in flight here (permit.ts). */
  slowActive = 0;
  /** Where it runs and the EndpointSlice hints (null: none), from the snapshot; locality as seen from this sidecar (balance/locality.ts). */
  node = '';
  zone = '';
  forZones: readonly string[] | null = null;
  forNodes: readonly string[] | null = null;
  locality = 3;
  readonly cluster: Cluster;
  /** The cluster's policy when the endpoint was made (a change of pool shape makes new endpoints: Cluster.update). */
  readonly policy: ClusterPolicy;
  /** Pools by kind, one symbol per protocol layer. */
  private readonly pools = new Map<symbol, EndpointPool>();

  constructor(address: string, port: number, weight: number, policy: ClusterPolicy, cluster: Cluster) {
    this.address = address;
    this.port = port;
    this.weight = weight;
    this.key = `${address}:${port}`;
    this.policy = policy;
    this.cluster = cluster;
  }

  /** This endpoint's pool of a kind, made by `make` on first use. */
  pool<P extends EndpointPool>(kind: symbol, make: (e: Endpoint) => P): P {
    let p = this.pools.get(kind) as P | undefined;
    if (p === undefined) {
      p = make(this);
      this.pools.set(kind, p);
    }
    return p;
  }

  /** A pool that closed itself is forgotten: the next use makes a new one. */
  forgetPool(kind: symbol, pool: EndpointPool): void {
    if (this.pools.get(kind) === pool) this.pools.delete(kind);
  }

  /** Takes no new work; the pools close once their requests in flight are done. */
  async retire(): Promise<void> {
    this.retired = true;
    await Promise.all([...this.pools.values()].map(async (p) => p.retire()));
  }

  /** Closes at once, failing what is in flight. */
  async destroy(): Promise<void> {
    this.retired = true;
    await Promise.all([...this.pools.values()].map(async (p) => p.destroy()));
  }
}
