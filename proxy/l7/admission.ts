// The admission of an L7 request, the same on every path (the HTTP/1.1 fast path, node:http, upgrades
// and HTTP/2): mesh authorization → rate limit → route → (the route's redirect, or its unresolved
// backend) → MaxRequests → endpoint. A request is either refused here, with the made-up answer's error
// and detail (every path then writes it in its own framing), redirected by its route, or admitted with
// a permit (proxy/cluster/permit.ts) already bound to the endpoint chosen. MaxRequests is checked
// before the balancer picks, so a refused request costs no pick and does not move round robin on.
// Refusals are counted here, once.
import type { IncomingHttpHeaders } from 'node:http';
import type { Cluster } from '../cluster/cluster.ts';
import { Permit } from '../cluster/permit.ts';
import { rawHeader } from '../http/h1/requestHead.ts';
import type { ShoalError } from './madeUpResponse.ts';
import type { CompiledRoute, RouteBackend, RouteTable } from './routeTable.ts';
import type { ProxyMetrics } from '../metrics.ts';
import type { TokenBucket } from '../policy/tokenBucket.ts';
import { peerDenied, type Peer } from '../tls/meshTls.ts';

/** What admission needs from the listener a request came in on. */
export interface AdmissionSite {
  readonly name: string;
  readonly table: RouteTable;
  /** Inbound LIMIT_RPS/LIMIT_BURST; null: none. */
  readonly limiter: TokenBucket | null;
  readonly metrics: ProxyMetrics;
}

/** A request refused before any upstream was chosen: the paths answer it with ERROR_STATUS[error] and x-shoal-error. */
export class Refusal {
  readonly error: ShoalError;
  readonly detail: string;
  /** The backend the request was meant for (its request counter counts the answer), when one was chosen. */
  readonly backend: RouteBackend | null;
  /** rate-limited: the Retry-After seconds; else 0. */
  readonly retryAfterS: number;

  constructor(error: ShoalError, detail: string, backend: RouteBackend | null = null, retryAfterS = 0) {
    this.error = error;
    this.detail = detail;
    this.backend = backend;
    this.retryAfterS = retryAfterS;
  }
}

/** An admitted request: its route and backend, and the permit it holds (bound to the endpoint picked). */
export class Reservation {
  readonly route: CompiledRoute;
  readonly backend: RouteBackend;
  readonly permit: Permit;
  /** The hash policy's key (the cluster's hash header), for retries that pick again; undefined: none. */
  readonly hashKey: string | undefined;

  constructor(route: CompiledRoute, backend: RouteBackend, permit: Permit, hashKey: string | undefined) {
    this.route = route;
    this.backend = backend;
    this.permit = permit;
    this.hashKey = hashKey;
  }
}

/** Headers as the route table takes them: node's header object, or a flat raw list [name, value, ...]. */
export type RequestHeaders = IncomingHttpHeaders | string[];

/** One header's first value, from either form. */
export function headerValue(headers: RequestHeaders, lowerName: string): string | undefined {
  if (Array.isArray(headers)) return rawHeader(headers, lowerName);
  const v = headers[lowerName];
  return Array.isArray(v) ? v[0] : v;
}

/** The overloaded refusal's detail. */
export function overloadedDetail(cluster: Cluster): string {
  return `${cluster.name} has MaxRequests (${cluster.policy.maxRequests}) in flight`;
}

/**
 * Admits one request, or says why not (Refusal), or returns its route when the route answers it with
 * a redirect. peer: what the downstream connection proved (mesh authorization; undefined: no policy
 * applies). slow: the request goes on the undici path (its endpoint load counts there too).
 */
export function admit(
  site: AdmissionSite,
  peer: Peer | undefined,
  method: string,
  path: string,
  host: string | undefined,
  headers: RequestHeaders,
  start: number,
  slow: boolean,
): Reservation | Refusal | CompiledRoute {
  const m = site.metrics;
  const denied = peerDenied(peer, method, path);
  if (denied !== null) {
    m.madeUp.labels(site.name, 'denied').inc();
    return new Refusal('denied', denied);
  }
  const limiter = site.limiter;
  if (limiter !== null && !limiter.take(start)) {
    m.inboundLimited.labels(site.name, 'rps').inc();
    return new Refusal('rate-limited', `${site.name} allows ${limiter.rps} requests per second (LIMIT_RPS)`, null, limiter.retryAfterS());
  }
  const route = site.table.match(host, path, headers, method);
  if (route === null) {
    m.madeUp.labels(site.name, 'no-route').inc();
    return new Refusal('no-route', `no route on ${site.name} for host ${JSON.stringify(host ?? '')} path ${JSON.stringify(path)}`);
  }
  if (route.redirect !== null) return route;
  const backend = route.backend();
  if (backend === null) {
    if (route.noBackendIs500) {
      m.madeUp.labels(route.name, 'no-backend').inc();
      return new Refusal('no-backend', route.noBackendDetail());
    }
    m.madeUp.labels(route.name, 'no-endpoints').inc();
    return new Refusal('no-endpoints', `${route.name} has no endpoints`);
  }
  const cluster = backend.cluster;
  const permit = Permit.tryAcquire(cluster);
  if (permit === null) {
    m.madeUp.labels(cluster.name, 'overloaded').inc();
    return new Refusal('overloaded', overloadedDetail(cluster), backend);
  }
  const hashKey = cluster.hashHeader === '' ? undefined : headerValue(headers, cluster.hashHeader);
  const endpoint = cluster.pick(hashKey);
  if (endpoint === null) {
    permit.release();
    m.madeUp.labels(cluster.name, 'no-endpoints').inc();
    return new Refusal('no-endpoints', `${cluster.name} has no endpoints`, backend);
  }
  permit.bind(endpoint, slow);
  cluster.budget.request(start);
  return new Reservation(route, backend, permit, hashKey);
}
