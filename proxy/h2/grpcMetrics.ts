// grpc-status counts per dependency and route. Like the HTTP counters (proxy/metrics.ts), the request
// path bumps a plain array in an object resolved once per snapshot; series are built at scrape.
import type { ProxyMetrics } from '../metrics.ts';

const CODES = 17;
const HELP = 'gRPC calls by dependency (cluster), route and grpc-status (the status the client saw, made-up ones included)';

export class GrpcStats {
  readonly dependency: string;
  readonly route: string;
  readonly byStatus = new Float64Array(CODES);

  constructor(dependency: string, route: string) {
    this.dependency = dependency;
    this.route = route;
  }

  /** A status outside 0..16 is counted as UNKNOWN (2), as a client would read it. */
  count(status: number): void {
    this.byStatus[status >= 0 && status < CODES ? status | 0 : 2]++;
  }
}

class GrpcMetrics {
  readonly stats = new Map<string, GrpcStats>();

  constructor(metrics: ProxyMetrics) {
    metrics.registry.registerMetric({
      name: 'shoal_proxy_grpc_responses_total',
      help: HELP,
      type: 'counter',
      aggregator: 'sum',
      get: () => {
        const values: Array<{ labels: Record<string, string | number>; value: number }> = [];
        for (const st of this.stats.values()) {
          for (let i = 0; i < CODES; i++)
            if (st.byStatus[i] > 0)
              values.push({ labels: { dependency: st.dependency, route: st.route, grpc_status: i }, value: st.byStatus[i] });
        }
        return { name: 'shoal_proxy_grpc_responses_total', help: HELP, type: 'counter', values, aggregator: 'sum' };
      },
      reset: () => {},
    } as never);
  }
}

const byMetrics = new WeakMap<ProxyMetrics, GrpcMetrics>();

/** The stats object of one dependency and route; the same object across snapshots. */
export function grpcStats(metrics: ProxyMetrics, dependency: string, route: string): GrpcStats {
  let m = byMetrics.get(metrics);
  if (!m) byMetrics.set(metrics, (m = new GrpcMetrics(metrics)));
  const key = `${dependency}\u0000${route}`;
  let st = m.stats.get(key);
  if (!st) m.stats.set(key, (st = new GrpcStats(dependency, route)));
  return st;
}
