// An L7 listener's routes, compiled once per snapshot: host sets, prefixes, header matches and
// weighted backends holding their clusters and metric children directly. Matching allocates nothing.
import type { IncomingHttpHeaders } from 'node:http';
import type { Counter } from 'prom-client';
import type { Route } from '../../shared/snapshot.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { ClusterSet } from '../cluster/clusterSet.ts';
import type { LatencyStats, ProxyMetrics, RequestStats } from '../metrics.ts';
import { deadlineQueue, type DeadlineQueue } from '../policy/deadlines.ts';

/** One weighted backend of a route: where requests go, and where they are counted. */
export class RouteBackend {
  readonly cluster: Cluster;
  readonly route: string;
  readonly stats: RequestStats;
  readonly latency: LatencyStats;
  readonly errors: Counter<'dependency' | 'error'>;
  /** The request deadline (the cluster's RequestTimeoutMS); null: none. */
  readonly deadlines: DeadlineQueue | null;
  readonly requestTimeoutMs: number;
  /** The route allows retrying non-idempotent methods after the request was sent (5xx, reset, timeout). */
  readonly retryNonIdempotent: boolean;

  constructor(cluster: Cluster, route: string, metrics: ProxyMetrics, retryNonIdempotent = false) {
    this.cluster = cluster;
    this.route = route;
    this.requestTimeoutMs = cluster.policy.requestTimeoutMs;
    this.deadlines = deadlineQueue(this.requestTimeoutMs);
    this.retryNonIdempotent = retryNonIdempotent;
    this.stats = metrics.requests(cluster.name, route);
    this.latency = metrics.latency(cluster.name);
    this.errors = metrics.madeUp;
  }
}

export class CompiledRoute {
  readonly name: string;
  /** null: any Host. */
  readonly domains: Set<string> | null;
  readonly prefix: string;
  readonly headerNames: string[];
  readonly headerValues: string[];
  readonly backends: RouteBackend[];
  private readonly cumulative: number[];
  private readonly total: number;

  constructor(listenerName: string, spec: Route, clusters: ClusterSet, metrics: ProxyMetrics) {
    const hdr = spec.headers.map((h) => `${h.name}=${h.value}`).join(',');
    this.name = `${listenerName}${spec.prefix}${hdr === '' ? '' : `{${hdr}}`}`;
    this.domains = spec.domains.includes('*') || spec.domains.length === 0 ? null : new Set(spec.domains.map((d) => d.toLowerCase()));
    this.prefix = spec.prefix;
    this.headerNames = spec.headers.map((h) => h.name.toLowerCase());
    this.headerValues = spec.headers.map((h) => h.value);
    this.backends = [];
    this.cumulative = [];
    let sum = 0;
    for (const b of spec.backends) {
      const c = clusters.get(b.cluster);
      if (!c || b.weight === 0) continue;
      sum += b.weight;
      this.backends.push(new RouteBackend(c, this.name, metrics, spec.retryNonIdempotent === true));
      this.cumulative.push(sum);
    }
    this.total = sum;
  }

  /** headers: node's parsed object, or the fast path's flat raw list. */
  matches(host: string, path: string, headers: IncomingHttpHeaders | string[]): boolean {
    if (this.domains !== null && !this.domains.has(host)) return false;
    if (this.prefix !== '/' && !path.startsWith(this.prefix)) return false;
    for (let i = 0; i < this.headerNames.length; i++) {
      const v = Array.isArray(headers) ? rawHeaderValue(headers, this.headerNames[i]) : headers[this.headerNames[i]];
      if (v !== this.headerValues[i]) return false;
    }
    return true;
  }

  /** A backend by weight; null when every backend has weight 0. */
  backend(): RouteBackend | null {
    const n = this.backends.length;
    if (n <= 1) return n === 1 ? this.backends[0] : null;
    const r = Math.random() * this.total;
    for (let i = 0; i < n; i++) if (this.cumulative[i] > r) return this.backends[i];
    return this.backends[n - 1];
  }
}

export class RouteTable {
  readonly routes: CompiledRoute[];
  /** No route looks at Host: skip parsing it. */
  readonly anyHost: boolean;

  constructor(listenerName: string, specs: readonly Route[], clusters: ClusterSet, metrics: ProxyMetrics) {
    this.routes = specs.map((r) => new CompiledRoute(listenerName, r, clusters, metrics));
    this.anyHost = this.routes.every((r) => r.domains === null);
  }

  match(hostHeader: string | undefined, path: string, headers: IncomingHttpHeaders | string[]): CompiledRoute | null {
    const host = this.anyHost || hostHeader === undefined ? '' : hostOnly(hostHeader);
    const routes = this.routes;
    for (let i = 0; i < routes.length; i++) if (routes[i].matches(host, path, headers)) return routes[i];
    return null;
  }
}

/** "API.example:8080" -> "api.example"; IPv6 literals keep their brackets. */
export function hostOnly(host: string): string {
  const colon = host.lastIndexOf(':');
  const h = colon > 0 && host.indexOf(']') < colon ? host.slice(0, colon) : host;
  return h.toLowerCase();
}

/** A header's value in a flat raw list, repeated ones joined as node joins them. */
function rawHeaderValue(raw: string[], lowerName: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === lowerName.length && raw[i].toLowerCase() === lowerName) out = out === undefined ? raw[i + 1] : `${out}, ${raw[i + 1]}`;
  }
  return out;
}
