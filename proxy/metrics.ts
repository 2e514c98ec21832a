// The sidecar's metrics. The request path bumps plain numbers in objects resolved once per snapshot
// (see RouteBackend): no label lookup, no hashing per request. They become Prometheus series at scrape.
import { Counter, Gauge, type Registry } from 'prom-client';
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

interface MetricValue { labels: Record<string, string | number>; value: number; metricName?: string }

/** A prom-client-compatible metric whose values are read from the stats objects at scrape time. */
class ScrapedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator = 'sum';
  private readonly read: () => MetricValue[];

  constructor(name: string, help: string, type: 'counter' | 'histogram', read: () => MetricValue[]) {
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
  readonly madeUp: Counter<'dependency' | 'error'>;
  readonly connections: Gauge<'listener' | 'direction'>;
  readonly connectionsTotal: Counter<'dependency' | 'direction'>;
  readonly endpoints: Gauge<'cluster'>;
  readonly configVersion: Gauge<'version'>;
  readonly configApplied: Counter<'source'>;
  readonly configErrors: Counter<'kind'>;
  readonly listenerErrors: Counter<'listener'>;

  constructor(registry: Registry = createRegistry('proxy')) {
    this.registry = registry;
    const r = [registry];
    registry.registerMetric(new ScrapedMetric('shoal_proxy_requests_total', 'HTTP requests by dependency (cluster), route and status class', 'counter', () => {
      const out: MetricValue[] = [];
      for (const st of this.requestStats.values()) {
        for (let i = 0; i < 5; i++) if (st.byClass[i] > 0) out.push({ labels: { dependency: st.dependency, route: st.route, status_class: CLASSES[i] }, value: st.byClass[i] });
      }
      return out;
    }) as never);
    registry.registerMetric(new ScrapedMetric('shoal_proxy_request_duration_seconds', 'HTTP request latency through the sidecar, first byte in to last byte out, per dependency', 'histogram', () => {
      const out: MetricValue[] = [];
      for (const h of this.latencyStats.values()) {
        let acc = 0;
        for (let i = 0; i < BUCKETS.length; i++) {
          acc += h.buckets[i];
          out.push({ labels: { le: BUCKETS[i], dependency: h.dependency }, value: acc, metricName: 'shoal_proxy_request_duration_seconds_bucket' });
        }
        out.push({ labels: { le: '+Inf', dependency: h.dependency }, value: h.count, metricName: 'shoal_proxy_request_duration_seconds_bucket' });
        out.push({ labels: { dependency: h.dependency }, value: h.sum, metricName: 'shoal_proxy_request_duration_seconds_sum' });
        out.push({ labels: { dependency: h.dependency }, value: h.count, metricName: 'shoal_proxy_request_duration_seconds_count' });
      }
      return out;
    }) as never);
    this.madeUp = new Counter({ name: 'shoal_proxy_errors_total', help: 'Responses the sidecar made up itself, by dependency and x-shoal-error', labelNames: ['dependency', 'error'], registers: r });
    this.connections = new Gauge({ name: 'shoal_proxy_connections_active', help: 'Downstream connections open, by listener and direction', labelNames: ['listener', 'direction'], registers: r });
    this.connectionsTotal = new Counter({ name: 'shoal_proxy_tcp_connections_total', help: 'L4 connections forwarded, by dependency and direction', labelNames: ['dependency', 'direction'], registers: r });
    this.endpoints = new Gauge({ name: 'shoal_proxy_endpoints', help: 'Endpoints per cluster in the applied snapshot', labelNames: ['cluster'], registers: r });
    this.configVersion = new Gauge({ name: 'shoal_proxy_config_version', help: 'The applied snapshot version (value 1 on the current version label)', labelNames: ['version'], registers: r });
    this.configApplied = new Counter({ name: 'shoal_proxy_config_applied_total', help: 'Snapshots applied, by source (discover or state-file)', labelNames: ['source'], registers: r });
    this.configErrors = new Counter({ name: 'shoal_proxy_config_errors_total', help: 'Snapshots refused (invalid, wrong app) and failed polls of discover', labelNames: ['kind'], registers: r });
    this.listenerErrors = new Counter({ name: 'shoal_proxy_listener_errors_total', help: 'Failed attempts to bind a listener', labelNames: ['listener'], registers: r });
  }

  /** The stats object of one dependency and route; the same object across snapshots. */
  requests(dependency: string, route: string): RequestStats {
    const key = `${dependency}\u0000${route}`;
    let st = this.requestStats.get(key);
    if (!st) this.requestStats.set(key, (st = new RequestStats(dependency, route)));
    return st;
  }

  latency(dependency: string): LatencyStats {
    let h = this.latencyStats.get(dependency);
    if (!h) this.latencyStats.set(dependency, (h = new LatencyStats(dependency)));
    return h;
  }
}
