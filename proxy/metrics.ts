// The sidecar's metrics. The request path bumps plain numbers in objects resolved once per snapshot
// (see RouteBackend): no label lookup, no hashing per request. They become Prometheus series at scrape.
import { Counter, Gauge, type Registry } from '../shared/metricsRegistry.ts';
import { createRegistry } from '../shared/metrics.ts';

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'];

/** Requests of one dependency and route, by status class. */
export class RequestStats {
  readonly dependency: string;
  readonly route: string;
  readonly byClass = new Float64Array(5);

  constructor(dependency: string, route: string) {
    this.dependency = dependency;
    this.route = route;
  }

  count(status: number): void {
    const cls = (status / 100) | 0;
    this.byClass[cls < 1 ? 0 : cls > 5 ? 4 : cls - 1]++;
  }
}

/** One dependency's latency histogram: per-bucket counts, made cumulative at scrape. */
export class LatencyStats {
  readonly dependency: string;
  readonly buckets = new Float64Array(BUCKETS.length + 1);
  sum = 0;
  count = 0;

  constructor(dependency: string) {
    this.dependency = dependency;
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < BUCKETS.length && seconds > BUCKETS[i]) i++;
    this.buckets[i]++;
    this.sum += seconds;
    this.count++;
  }
}

/**
 * One cluster's resilience counters (retries, breaker overflows, ejections, failed attempts): plain
 * numbers bumped on the request path, read at scrape. The same object across snapshots.
 */
export class ResilienceStats {
  readonly dependency: string;
  retries = 0;
  retriesBudgetExhausted = 0;
  retriesMaxActive = 0;
  overflowMaxRequests = 0;
  overflowMaxPending = 0;
  overflowMaxConnections = 0;
  /** Requests that waited for a connection (every one MaxConnections allows was busy). */
  queued = 0;
  ejections = 0;
  ejectionsSkipped = 0;
  /** Endpoints ejected now, and 1 while the cluster balances over all endpoints (panic). */
  ejected = 0;
  panic = 0;
  failConnect = 0;
  failConnectTimeout = 0;
  failRequestTimeout = 0;
  failReset = 0;
  fail5xx = 0;
  /** Endpoints picked, by locality as seen from this sidecar (balance/locality.ts LOCALITY_NAMES). */
  readonly byLocality = new Float64Array(4);

  constructor(dependency: string) {
    this.dependency = dependency;
  }
}

interface MetricValue {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
}

/** A prom-client-compatible metric whose values are read from the stats objects at scrape time. */
class ScrapedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram' | 'gauge';
  readonly aggregator = 'sum';
  private readonly read: () => MetricValue[];

  constructor(name: string, help: string, type: 'counter' | 'histogram' | 'gauge', read: () => MetricValue[]) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.read = read;
  }

  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.read(), aggregator: this.aggregator };
  }

  reset(): void {}
}

export class ProxyMetrics {
  readonly registry: Registry;
  private readonly requestStats = new Map<string, RequestStats>();
  private readonly latencyStats = new Map<string, LatencyStats>();
  private readonly resilienceStats = new Map<string, ResilienceStats>();
  readonly madeUp: Counter<'dependency' | 'error'>;
  readonly connections: Gauge<'listener' | 'direction'>;
  readonly connectionsTotal: Counter<'dependency' | 'direction'>;
  readonly endpoints: Gauge<'cluster'>;
  readonly configVersion: Gauge<'version'>;
  readonly configApplied: Counter<'source'>;
  readonly configErrors: Counter<'kind'>;
  readonly listenerErrors: Counter<'listener'>;
  readonly inboundLimited: Counter<'listener' | 'limit'>;

  constructor(registry: Registry = createRegistry('proxy')) {
    this.registry = registry;
    const r = [registry];
    registry.registerMetric(
      new ScrapedMetric('shoal_proxy_requests_total', 'HTTP requests by dependency (cluster), route and status class', 'counter', () => {
        const out: MetricValue[] = [];
        for (const st of this.requestStats.values()) {
          for (let i = 0; i < 5; i++)
            if (st.byClass[i] > 0)
              out.push({ labels: { dependency: st.dependency, route: st.route, status_class: CLASSES[i] }, value: st.byClass[i] });
        }
        return out;
      }) as never,
    );
    registry.registerMetric(
      new ScrapedMetric(
        'shoal_proxy_request_duration_seconds',
        'HTTP request latency through the sidecar, first byte in to last byte out, per dependency',
        'histogram',
        () => {
          const out: MetricValue[] = [];
          for (const h of this.latencyStats.values()) {
            let acc = 0;
            for (let i = 0; i < BUCKETS.length; i++) {
              acc += h.buckets[i];
              out.push({
                labels: { le: BUCKETS[i], dependency: h.dependency },
                value: acc,
                metricName: 'shoal_proxy_request_duration_seconds_bucket',
              });
            }
            out.push({
              labels: { le: '+Inf', dependency: h.dependency },
              value: h.count,
              metricName: 'shoal_proxy_request_duration_seconds_bucket',
            });
            out.push({ labels: { dependency: h.dependency }, value: h.sum, metricName: 'shoal_proxy_request_duration_seconds_sum' });
            out.push({ labels: { dependency: h.dependency }, value: h.count, metricName: 'shoal_proxy_request_duration_seconds_count' });
          }
          return out;
        },
      ) as never,
    );
    this.scraped(
      'shoal_proxy_retries_total',
      'Retries by dependency: sent, or not sent because the budget (20% of requests + floor) or MaxActiveRetries said no',
      'counter',
      'result',
      {
        sent: (x) => x.retries,
        budget_exhausted: (x) => x.retriesBudgetExhausted,
        max_active_retries: (x) => x.retriesMaxActive,
      },
    );
    this.scraped(
      'shoal_proxy_circuit_overflow_total',
      'Requests (L7) or connections (L4) refused at once by a circuit breaker limit',
      'counter',
      'limit',
      {
        max_requests: (x) => x.overflowMaxRequests,
        max_pending_requests: (x) => x.overflowMaxPending,
        max_connections: (x) => x.overflowMaxConnections,
      },
    );
    this.scraped(
      'shoal_proxy_pending_requests_total',
      'Requests that waited for an upstream connection (MaxConnections busy)',
      'counter',
      null,
      { '': (x) => x.queued },
    );
    this.scraped('shoal_proxy_upstream_failures_total', 'Failed attempts at an endpoint (retried or not), by reason', 'counter', 'reason', {
      'connect-failure': (x) => x.failConnect,
      'connect-timeout': (x) => x.failConnectTimeout,
      'request-timeout': (x) => x.failRequestTimeout,
      'upstream-reset': (x) => x.failReset,
      '5xx': (x) => x.fail5xx,
    });
    this.scraped(
      'shoal_proxy_outlier_ejections_total',
      'Outlier ejections: done, or skipped because MaxEjectionPercent or the last healthy endpoint forbade them',
      'counter',
      'result',
      {
        ejected: (x) => x.ejections,
        skipped: (x) => x.ejectionsSkipped,
      },
    );
    this.scraped('shoal_proxy_outlier_ejected_endpoints', 'Endpoints ejected now, per dependency', 'gauge', null, { '': (x) => x.ejected });
    this.scraped(
      'shoal_proxy_upstream_requests_by_locality_total',
      'Attempts (L7 requests and retries; L4 connections) by where the endpoint runs as seen from this sidecar: same node, same zone, other zone, unknown (either zone unknown)',
      'counter',
      'locality',
      {
        same_node: (x) => x.byLocality[0],
        same_zone: (x) => x.byLocality[1],
        other_zone: (x) => x.byLocality[2],
        unknown: (x) => x.byLocality[3],
      },
    );
    this.scraped(
      'shoal_proxy_outlier_panic',
      '1 while healthy endpoints are below HealthyPanicThreshold and the dependency balances over all',
      'gauge',
      null,
      { '': (x) => x.panic },
    );
    this.inboundLimited = new Counter({
      name: 'shoal_proxy_inbound_limited_total',
      help: 'Inbound requests (429 rate-limited) or connections refused by OPEN_LIMIT limits, by listener and limit',
      labelNames: ['listener', 'limit'],
      registers: r,
    });
    this.madeUp = new Counter({
      name: 'shoal_proxy_errors_total',
      help: 'Responses the sidecar made up itself, by dependency and x-shoal-error',
      labelNames: ['dependency', 'error'],
      registers: r,
    });
    this.connections = new Gauge({
      name: 'shoal_proxy_connections_active',
      help: 'Downstream connections open, by listener and direction',
      labelNames: ['listener', 'direction'],
      registers: r,
    });
    this.connectionsTotal = new Counter({
      name: 'shoal_proxy_tcp_connections_total',
      help: 'L4 connections forwarded, by dependency and direction',
      labelNames: ['dependency', 'direction'],
      registers: r,
    });
    this.endpoints = new Gauge({
      name: 'shoal_proxy_endpoints',
      help: 'Endpoints per cluster in the applied snapshot',
      labelNames: ['cluster'],
      registers: r,
    });
    this.configVersion = new Gauge({
      name: 'shoal_proxy_config_version',
      help: 'The applied snapshot version (value 1 on the current version label)',
      labelNames: ['version'],
      registers: r,
    });
    this.configApplied = new Counter({
      name: 'shoal_proxy_config_applied_total',
      help: 'Snapshots applied, by source (discover or state-file)',
      labelNames: ['source'],
      registers: r,
    });
    this.configErrors = new Counter({
      name: 'shoal_proxy_config_errors_total',
      help: 'Snapshots refused (invalid, wrong app) and failed polls of discover',
      labelNames: ['kind'],
      registers: r,
    });
    this.listenerErrors = new Counter({
      name: 'shoal_proxy_listener_errors_total',
      help: 'Failed attempts to bind a listener',
      labelNames: ['listener'],
      registers: r,
    });
  }

  /** The stats object of one dependency and route; the same object across snapshots. */
  requests(dependency: string, route: string): RequestStats {
    const key = `${dependency}\u0000${route}`;
    let st = this.requestStats.get(key);
    if (!st) this.requestStats.set(key, (st = new RequestStats(dependency, route)));
    return st;
  }

  /** A metric read at scrape from every dependency's ResilienceStats, one series per field (and label value). */
  private scraped(
    name: string,
    help: string,
    type: 'counter' | 'gauge',
    label: string | null,
    fields: Record<string, (x: ResilienceStats) => number>,
  ): void {
    this.registry.registerMetric(
      new ScrapedMetric(name, help, type, () => {
        const out: MetricValue[] = [];
        for (const st of this.resilienceStats.values()) {
          for (const [value, read] of Object.entries(fields)) {
            const v = read(st);
            if (type === 'counter' && v === 0) continue;
            out.push({ labels: label === null ? { dependency: st.dependency } : { dependency: st.dependency, [label]: value }, value: v });
          }
        }
        return out;
      }) as never,
    );
  }

  resilience(dependency: string): ResilienceStats {
    let st = this.resilienceStats.get(dependency);
    if (!st) this.resilienceStats.set(dependency, (st = new ResilienceStats(dependency)));
    return st;
  }

  latency(dependency: string): LatencyStats {
    let h = this.latencyStats.get(dependency);
    if (!h) this.latencyStats.set(dependency, (h = new LatencyStats(dependency)));
    return h;
  }
}
