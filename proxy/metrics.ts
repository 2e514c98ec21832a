// The sidecar's metrics: per request one counter increment and one histogram observation, through
// label children resolved once per snapshot (see RouteBackend), never per request.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createRegistry } from '../shared/metrics.ts';

export type StatusCounters = [Counter.Internal, Counter.Internal, Counter.Internal, Counter.Internal, Counter.Internal];

export class ProxyMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'dependency' | 'route' | 'status_class'>;
  readonly duration: Histogram<'dependency'>;
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
    this.requests = new Counter({ name: 'shoal_proxy_requests_total', help: 'HTTP requests by dependency (cluster), route and status class', labelNames: ['dependency', 'route', 'status_class'], registers: r });
    this.duration = new Histogram({
      name: 'shoal_proxy_request_duration_seconds', help: 'HTTP request latency through the sidecar, first byte in to last byte out, per dependency',
      labelNames: ['dependency'], buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers: r,
    });
    this.madeUp = new Counter({ name: 'shoal_proxy_errors_total', help: 'Responses the sidecar made up itself, by dependency and x-shoal-error', labelNames: ['dependency', 'error'], registers: r });
    this.connections = new Gauge({ name: 'shoal_proxy_connections_active', help: 'Downstream connections open, by listener and direction', labelNames: ['listener', 'direction'], registers: r });
    this.connectionsTotal = new Counter({ name: 'shoal_proxy_tcp_connections_total', help: 'L4 connections forwarded, by dependency and direction', labelNames: ['dependency', 'direction'], registers: r });
    this.endpoints = new Gauge({ name: 'shoal_proxy_endpoints', help: 'Endpoints per cluster in the applied snapshot', labelNames: ['cluster'], registers: r });
    this.configVersion = new Gauge({ name: 'shoal_proxy_config_version', help: 'The applied snapshot version (value 1 on the current version label)', labelNames: ['version'], registers: r });
    this.configApplied = new Counter({ name: 'shoal_proxy_config_applied_total', help: 'Snapshots applied, by source (discover or state-file)', labelNames: ['source'], registers: r });
    this.configErrors = new Counter({ name: 'shoal_proxy_config_errors_total', help: 'Snapshots refused (invalid, wrong app) and failed polls of discover', labelNames: ['kind'], registers: r });
    this.listenerErrors = new Counter({ name: 'shoal_proxy_listener_errors_total', help: 'Failed attempts to bind a listener', labelNames: ['listener'], registers: r });
  }

  statusCounters(dependency: string, route: string): StatusCounters {
    const c = (cls: string) => this.requests.labels(dependency, route, cls);
    return [c('1xx'), c('2xx'), c('3xx'), c('4xx'), c('5xx')];
  }
}
