// An L7 listener's routes, compiled once per snapshot: host sets, prefixes, header matches and
// weighted backends holding their clusters and metric children directly. Matching allocates nothing
// for mesh-config routes; Gateway API matches (path Exact/PathPrefix/RegularExpression, method, query,
// header regexes: regexes compiled here, once) cost a substring only for a regex or a query match.
// Filters (proxy/l7/routeFilters.ts) are resolved per backend here, so the paths read fields only.
import type { IncomingHttpHeaders } from 'node:http';
import type { Counter } from 'prom-client';
import type { Mirror, RequestRedirect, Route, RouteRetry, UrlRewrite, WeightedBackend } from '../../shared/snapshot.ts';
import type { Cluster } from '../cluster/cluster.ts';
import type { ClusterSet } from '../cluster/clusterSet.ts';
import type { LatencyStats, ProxyMetrics, RequestStats } from '../metrics.ts';
import { deadlineQueue, type DeadlineQueue } from '../policy/deadlines.ts';
import { CompiledHeaderModifier, queryParam, unsafeFilters } from './routeFilters.ts';

/** One weighted backend of a route: where requests go, and where they are counted. */
export class RouteBackend {
  readonly cluster: Cluster;
  readonly route: string;
  readonly stats: RequestStats;
  readonly latency: LatencyStats;
  readonly errors: Counter<'dependency' | 'error'>;
  /** The request deadline (the route's timeoutMs, else the cluster's RequestTimeoutMS); null: none. */
  readonly deadlines: DeadlineQueue | null;
  readonly requestTimeoutMs: number;
  /** The route allows retrying non-idempotent methods after the request was sent (5xx, reset, timeout). */
  readonly retryNonIdempotent: boolean;
  /**
   * Gateway API filters and policy of the route and of this backendRef (proxy/l7/routeFilters.ts); null
   * for a route that has none (mesh config), so the paths test one field and go on as before.
   */
  readonly filters: BackendFilters | null;
  /** The route's backendTimeoutMs as a deadline queue; undefined: the cluster's PerTryTimeoutMS. */
  private readonly ownTry: DeadlineQueue | null | undefined;
  private readonly retry: RouteRetry | undefined;
  private readonly retryCodes: Set<number> | null;

  constructor(
    cluster: Cluster,
    route: string,
    metrics: ProxyMetrics,
    retryNonIdempotent = false,
    spec?: Route,
    wb?: WeightedBackend,
    clusters?: ClusterSet,
    matchedPrefix = '/',
  ) {
    this.cluster = cluster;
    this.route = route;
    this.requestTimeoutMs = spec?.timeoutMs ?? cluster.policy.requestTimeoutMs;
    this.deadlines = deadlineQueue(this.requestTimeoutMs);
    this.retryNonIdempotent = retryNonIdempotent;
    this.stats = metrics.requests(cluster.name, route);
    this.latency = metrics.latency(cluster.name);
    this.errors = metrics.madeUp;
    this.ownTry = spec?.backendTimeoutMs === undefined ? undefined : deadlineQueue(spec.backendTimeoutMs);
    this.retry = spec?.retry;
    this.retryCodes = spec?.retry === undefined ? null : new Set(spec.retry.codes);
    this.filters = spec !== undefined && clusters !== undefined ? BackendFilters.of(spec, wb, clusters, matchedPrefix) : null;
  }

  /** The per-attempt deadline (the route's backendTimeoutMs, else the cluster's PerTryTimeoutMS); null: none. */
  get tryDeadlines(): DeadlineQueue | null {
    return this.ownTry === undefined ? this.cluster.tryDeadlines : this.ownTry;
  }

  /** The per-attempt bound in ms (0: none), for the paths that keep their own timer (HTTP/2). */
  get perTryTimeoutMs(): number {
    return this.ownTry === undefined ? (this.cluster.policy.perTryTimeoutMs ?? 0) : (this.ownTry?.timeoutMs ?? 0);
  }

  /** Retries after the first attempt: the route's retry.attempts, else the cluster's RetryAttempts. */
  get retryAttempts(): number {
    return this.retry === undefined ? this.cluster.policy.retryAttempts : this.retry.attempts;
  }

  /** The route names its own retry (Gateway API HTTPRouteRetry). */
  get retryRoute(): boolean {
    return this.retry !== undefined;
  }

  /** Wait before a retry (ms); 0: none. */
  get retryBackoffMs(): number {
    return this.retry?.backoffMs ?? 0;
  }

  /** Whether a response with this status is retried: the route's retry codes, else 502, 503 and 504. */
  retriesStatus(status: number): boolean {
    return this.retryCodes === null ? status >= 502 && status <= 504 : this.retryCodes.has(status);
  }
}

/** A mirror destination, resolved: the cluster and its share. */
export interface MirrorTarget {
  cluster: Cluster;
  spec: Mirror;
}

/** What the paths do to a request sent to one backend of a Gateway API route, besides forwarding it. */
export class BackendFilters {
  /** Route then backendRef request header modifiers; null: none. */
  readonly requestHeaders: CompiledHeaderModifier | null;
  readonly responseHeaders: CompiledHeaderModifier | null;
  readonly rewrite: UrlRewrite | null;
  readonly mirrors: MirrorTarget[] | null;
  /** The route's PathPrefix value (ReplacePrefixMatch is relative to it); "/" otherwise. */
  readonly matchedPrefix: string;

  private constructor(
    req: CompiledHeaderModifier | null,
    res: CompiledHeaderModifier | null,
    rewrite: UrlRewrite | null,
    mirrors: MirrorTarget[] | null,
    matchedPrefix: string,
  ) {
    this.requestHeaders = req;
    this.responseHeaders = res;
    this.rewrite = rewrite;
    this.mirrors = mirrors;
    this.matchedPrefix = matchedPrefix;
  }

  static of(spec: Route, wb: WeightedBackend | undefined, clusters: ClusterSet, matchedPrefix: string): BackendFilters | null {
    const req = new CompiledHeaderModifier([spec.requestHeaders, wb?.requestHeaders]);
    const res = new CompiledHeaderModifier([spec.responseHeaders, wb?.responseHeaders]);
    const mirrors: MirrorTarget[] = [];
    for (const m of [...(spec.mirrors ?? []), ...(wb?.mirrors ?? [])]) {
      const c = clusters.get(m.cluster);
      // A mirror whose cluster the snapshot does not hold has nowhere to go (and never affects the request).
      if (c !== undefined && (m.percent ?? 100) > 0) mirrors.push({ cluster: c, spec: m });
    }
    const rewrite =
      spec.rewrite !== undefined && (spec.rewrite.hostname !== undefined || spec.rewrite.path !== undefined) ? spec.rewrite : null;
    if (req.empty && res.empty && mirrors.length === 0 && rewrite === null) return null;
    return new BackendFilters(
      req.empty ? null : req,
      res.empty ? null : res,
      rewrite,
      mirrors.length === 0 ? null : mirrors,
      matchedPrefix,
    );
  }
}

/** Compiles a whole-value regular expression; null when it does not compile (the match then never matches). */
function fullMatch(source: string): RegExp | null {
  try {
    return new RegExp(`^(?:${source})$`);
  } catch {
    return null;
  }
}

const NEVER = /(?!)/;

/**
 * The plain characters every match of a (whole-path) regex starts with: "/r13/[0-9]+" -> "/r13/". Stops at
 * the first special character; a character a quantifier follows is not certain, nor is anything before an
 * alternation bar.
 */
export function literalStart(source: string): string {
  // A top-level alternation: no common start is known.
  let depth = 0;
  let inClass = false;
  for (let j = 0; j < source.length; j++) {
    const c = source[j];
    if (c === '\\') j++;
    else if (inClass) inClass = c !== ']';
    else if (c === '[') inClass = true;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === '|' && depth === 0) return '';
  }
  let i = 0;
  while (i < source.length && !'\\^$.|?*+()[]{}'.includes(source[i])) i++;
  const next = source[i];
  if (next === '?' || next === '*' || next === '{') i--;
  return i > 0 ? source.slice(0, i) : '';
}

export class CompiledRoute {
  readonly name: string;
  /** null: any Host. */
  readonly domains: Set<string> | null;
  readonly prefix: string;
  readonly headerNames: string[];
  readonly headerValues: string[];
  /** Per header match: its regular expression, or null for an exact one; null when every match is exact. */
  private readonly headerRes: (RegExp | null)[] | null;
  readonly backends: RouteBackend[];
  private readonly cumulative: number[];
  /** Per share in cumulative: its backend, or null for an unresolved backendRef (a 500). */
  private readonly picks: (RouteBackend | null)[];
  private readonly total: number;
  /** The route uses Gateway API matches (path, method, query): checked after the mesh-config ones. */
  private readonly extended: boolean;
  /** 0: none, 1: Exact, 2: PathPrefix, 3: RegularExpression. */
  private readonly pathKind: number;
  private readonly pathValue: string;
  private readonly pathRe: RegExp | null;
  private readonly method: string | null;
  private readonly queryNames: string[];
  private readonly queryValues: string[];
  private readonly queryRes: (RegExp | null)[];
  /** Gateway API RequestRedirect: the sidecar answers itself. */
  readonly redirect: RequestRedirect | null;
  /** The rule's response header modifier, for the redirect the sidecar answers; null: none. */
  readonly redirectHeaders: CompiledHeaderModifier | null;
  /** The route's PathPrefix value (ReplacePrefixMatch is relative to it); "/" otherwise. */
  readonly matchedPrefix: string;
  /**
   * No backend to send to is a 500 (Gateway API: no backendRefs, unresolved ones, all weights 0), not
   * the 503 no-endpoints a mesh-config route gives.
   */
  readonly noBackendIs500: boolean;
  /** Why the rule's filters cannot be executed (then every request gets the 500); null: they can. */
  readonly refused: string | null;

  constructor(listenerName: string, spec: Route, clusters: ClusterSet, metrics: ProxyMetrics) {
    const hdr = spec.headers.map((h) => `${h.name}${h.type === 'RegularExpression' ? '~' : '='}${h.value}`).join(',');
    const ext = `${spec.method ?? ''}${spec.path ? `${spec.path.type === 'Exact' ? '=' : spec.path.type === 'PathPrefix' ? '' : '~'}${spec.path.value}` : ''}${spec.query?.length ? `?${spec.query.map((q) => `${q.name}${q.type === 'RegularExpression' ? '~' : '='}${q.value}`).join('&')}` : ''}`;
    this.name = `${listenerName}${spec.path === undefined ? spec.prefix : ''}${ext === '' ? '' : ext}${hdr === '' ? '' : `{${hdr}}`}`;
    this.domains = spec.domains.includes('*') || spec.domains.length === 0 ? null : new Set(spec.domains.map((d) => d.toLowerCase()));
    this.prefix = spec.prefix;
    this.headerNames = spec.headers.map((h) => h.name.toLowerCase());
    this.headerValues = spec.headers.map((h) => h.value);
    this.headerRes = spec.headers.some((h) => h.type === 'RegularExpression')
      ? spec.headers.map((h) => (h.type === 'RegularExpression' ? (fullMatch(h.value) ?? NEVER) : null))
      : null;
    const p = spec.path;
    this.pathKind = p === undefined ? 0 : p.type === 'Exact' ? 1 : p.type === 'PathPrefix' ? 2 : 3;
    // PathPrefix by whole segments; a trailing "/" of the value is ignored ("/" matches every path).
    this.pathValue =
      p === undefined
        ? ''
        : p.type === 'PathPrefix' && p.value.endsWith('/')
          ? p.value.slice(0, -1)
          : p.type === 'RegularExpression'
            ? literalStart(p.value)
            : p.value;
    this.pathRe = p?.type === 'RegularExpression' ? (fullMatch(p.value) ?? NEVER) : null;
    this.method = spec.method === undefined || spec.method === '' ? null : spec.method.toUpperCase();
    const q = spec.query ?? [];
    this.queryNames = q.map((x) => x.name);
    this.queryValues = q.map((x) => x.value);
    this.queryRes = q.map((x) => (x.type === 'RegularExpression' ? (fullMatch(x.value) ?? NEVER) : null));
    this.extended = this.pathKind !== 0 || this.method !== null || q.length > 0;
    // Filters that would break the head the sidecar writes (a CR in a header value...): the rule answers 500.
    this.refused = unsafeFilters(spec);
    this.redirect = this.refused === null ? (spec.redirect ?? null) : null;
    const rh = this.redirect === null ? null : new CompiledHeaderModifier([spec.responseHeaders]);
    this.redirectHeaders = rh === null || rh.empty ? null : rh;
    this.matchedPrefix = p?.type === 'PathPrefix' ? p.value : '/';
    this.backends = [];
    this.cumulative = [];
    this.picks = [];
    const gateway =
      spec.path !== undefined ||
      spec.method !== undefined ||
      spec.query !== undefined ||
      spec.source !== undefined ||
      spec.backends.length === 0 ||
      spec.backends.some((b) => b.unresolved === true);
    this.noBackendIs500 = gateway || this.refused !== null;
    let sum = 0;
    for (const b of this.refused === null ? spec.backends : []) {
      if (b.weight === 0) continue;
      if (b.unresolved === true) {
        sum += b.weight;
        this.picks.push(null);
        this.cumulative.push(sum);
        continue;
      }
      const c = clusters.get(b.cluster);
      if (!c) {
        if (!gateway) continue;
        // A Gateway API backendRef naming a cluster this snapshot lacks: its share is a 500 too.
        sum += b.weight;
        this.picks.push(null);
        this.cumulative.push(sum);
        continue;
      }
      sum += b.weight;
      const rb = new RouteBackend(
        c,
        this.name,
        metrics,
        spec.retryNonIdempotent === true,
        gateway ? spec : undefined,
        b,
        clusters,
        this.matchedPrefix,
      );
      this.backends.push(rb);
      this.picks.push(rb);
      this.cumulative.push(sum);
    }
    this.total = sum;
  }

  /** The table's slot of each header match (HeaderCache); set by the table. */
  headerSlots: number[] = [];

  /** headers: node's parsed object, or the fast path's flat raw list (read through the table's cache). method: upper case as sent. */
  matches(host: string, path: string, headers: HeaderCache, method: string): boolean {
    if (this.domains !== null && !this.domains.has(host)) return false;
    if (this.prefix !== '/' && !path.startsWith(this.prefix)) return false;
    // Path and method before headers: the cheap tests first (a header costs a scan of the list).
    if (this.extended && !this.matchesPath(path, method)) return false;
    for (let i = 0; i < this.headerNames.length; i++) {
      const v = headers.value(this.headerSlots[i]);
      if (this.headerRes !== null && this.headerRes[i] !== null) {
        if (v === undefined || !this.headerRes[i]!.test(typeof v === 'string' ? v : String(v))) return false;
      } else if (v !== this.headerValues[i]) return false;
    }
    return this.queryNames.length === 0 || this.matchesQuery(path);
  }

  private matchesPath(target: string, method: string): boolean {
    if (this.method !== null && method !== this.method) return false;
    if (this.pathKind === 0) return true;
    const q = target.indexOf('?');
    const len = q < 0 ? target.length : q;
    switch (this.pathKind) {
      case 1:
        if (len !== this.pathValue.length || !target.startsWith(this.pathValue)) return false;
        break;
      case 2: {
        const v = this.pathValue;
        if (v.length > len || !target.startsWith(v)) return false;
        if (len !== v.length && target.charCodeAt(v.length) !== 47 /* / */) return false;
        break;
      }
      case 3:
        // The regex's literal start, when it has one, rules most paths out without running it.
        if (!target.startsWith(this.pathValue) || !this.pathRe!.test(q < 0 ? target : target.slice(0, q))) return false;
        break;
      default:
        break;
    }
    return true;
  }

  private matchesQuery(target: string): boolean {
    const names = this.queryNames;
    const q = target.indexOf('?');
    if (q < 0) return false;
    const query = target.slice(q + 1);
    for (let i = 0; i < names.length; i++) {
      const v = queryParam(query, names[i]);
      if (v === null) return false;
      const re = this.queryRes[i];
      if (re === null ? v !== this.queryValues[i] : !re.test(v)) return false;
    }
    return true;
  }

  /** The redirect's response header list: Location, an empty body, the rule's response header modifier. */
  redirectResponse(location: string): string[] {
    const h = ['location', location, 'content-length', '0'];
    return this.redirectHeaders === null ? h : this.redirectHeaders.applyList(h);
  }

  /** The made-up 500's detail when backend() gives null on a Gateway API route. */
  noBackendDetail(): string {
    return this.refused === null
      ? `${this.name}: no backend to send to (unresolved backendRef or none)`
      : `${this.name}: filters refused: ${this.refused}`;
  }

  /**
   * A backend by weight; null when there is none to send to: every backend has weight 0 (mesh config:
   * 503 no-endpoints), or (noBackendIs500) the draw fell on an unresolved backendRef, or there is none.
   */
  backend(): RouteBackend | null {
    const n = this.picks.length;
    if (n <= 1) return n === 1 ? this.picks[0] : null;
    const r = Math.random() * this.total;
    for (let i = 0; i < n; i++) if (this.cumulative[i] > r) return this.picks[i];
    return this.picks[n - 1];
  }
}

/**
 * The header values the routes of one table look at, each looked up once per request however many routes
 * test it (20 rules on x-tenant: one scan of the list, not 20). Reused from request to request: matching is
 * synchronous, so one per table is enough, and it allocates nothing.
 */
export class HeaderCache {
  readonly names: string[];
  private readonly values: (string | string[] | undefined)[];
  private readonly seen: number[];
  private gen = 0;
  private headers: IncomingHttpHeaders | string[] = [];

  constructor(names: string[]) {
    this.names = names;
    this.values = names.map(() => undefined);
    this.seen = names.map(() => 0);
  }

  reset(headers: IncomingHttpHeaders | string[]): void {
    this.headers = headers;
    // A wrap after 2^53 requests is not a concern.
    this.gen++;
  }

  value(slot: number): string | string[] | undefined {
    if (this.seen[slot] === this.gen) return this.values[slot];
    const h = this.headers;
    const v = Array.isArray(h) ? rawHeaderValue(h, this.names[slot]) : h[this.names[slot]];
    this.values[slot] = v;
    this.seen[slot] = this.gen;
    return v;
  }
}

export class RouteTable {
  readonly routes: CompiledRoute[];
  /** No route looks at Host: skip parsing it. */
  readonly anyHost: boolean;
  private readonly headers: HeaderCache;

  constructor(listenerName: string, specs: readonly Route[], clusters: ClusterSet, metrics: ProxyMetrics) {
    this.routes = specs.map((r) => new CompiledRoute(listenerName, r, clusters, metrics));
    this.anyHost = this.routes.every((r) => r.domains === null);
    const names: string[] = [];
    for (const r of this.routes) {
      r.headerSlots = r.headerNames.map((n) => {
        const i = names.indexOf(n);
        return i >= 0 ? i : names.push(n) - 1;
      });
    }
    this.headers = new HeaderCache(names);
  }

  match(hostHeader: string | undefined, path: string, headers: IncomingHttpHeaders | string[], method: string): CompiledRoute | null {
    const host = this.anyHost || hostHeader === undefined ? '' : hostOnly(hostHeader);
    const routes = this.routes;
    const cache = this.headers;
    cache.reset(headers);
    for (let i = 0; i < routes.length; i++) {
      if (routes[i].matches(host, path, cache, method)) {
        cache.reset(EMPTY); // holds no request's headers past the match
        return routes[i];
      }
    }
    cache.reset(EMPTY);
    return null;
  }
}

const EMPTY: string[] = [];

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
    if (raw[i].length === lowerName.length && sameLower(raw[i], lowerName)) out = out === undefined ? raw[i + 1] : `${out}, ${raw[i + 1]}`;
  }
  return out;
}

/** name equals lowerName ignoring ASCII case, without making a lower-case copy. Same lengths. */
function sameLower(name: string, lowerName: string): boolean {
  if (name === lowerName) return true;
  for (let i = 0; i < name.length; i++) {
    let c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lowerName.charCodeAt(i)) return false;
  }
  return true;
}
