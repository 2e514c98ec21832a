// Compiles the Gateway API routes of the mesh profile (GAMMA: HTTPRoute/GRPCRoute whose parentRefs name a
// Service) into the snapshot routes of the Services' callers. docs/gateway-api.md says what is supported.
//
// Which routes a caller in namespace N uses for Service S (namespace M), port P (GEP-1294):
// - routes attach to (S, P) through a parentRef {group: "", kind: Service, name: S, namespace: M} whose port
//   is P or absent (all ports), and whose sectionName, if any, is the name of port P;
// - consumer routes (route in N, N != M) apply only to callers in N, producer routes (route in M) to every
//   caller; when N has any consumer route for (S, P), N's callers use those alone;
// - within the group used, GRPCRoutes win over HTTPRoutes on the same (S, P): the HTTPRoutes are Conflicted;
// - routes not in force (invalid for the API server, or with no rule shoal can carry out) attach nowhere, as
//   if absent; a rule shoal cannot carry out is dropped (nothing of it reaches a snapshot); an ExtensionRef
//   filter (shoal defines none) is not skipped: the requests it would have processed get a 500.
import { clusterName, type HeaderModifier, type Mirror, type Protocol, type Route, type WeightedBackend } from '../../shared/snapshot.ts';
import { serviceKey, type GatewayRoute, type Service, type Topology } from '../topology/model.ts';
import { checkRoute, durationMs, inForce, type RouteCheck } from './validate.ts';

type Obj = Record<string, any>;

/** One valid route attached to one port of a Service, through its parentRefs[parentIndex]. */
export interface Attachment {
  check: RouteCheck;
  kind: GatewayRoute['kind'];
  /** The route's namespace. */
  namespace: string;
  name: string;
  service: Service;
  port: number;
  parentIndex: number;
  role: 'producer' | 'consumer';
}

/** A parentRef is the mesh profile's when it names a Service (group "" and kind Service, as the route gives them). */
export function isServiceParent(ref: Obj): boolean {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
  return ref !== null && typeof ref === 'object' && ref.group === '' && ref.kind === 'Service';
}

/** The Service a parentRef or backendRef names, by key (its namespace defaults to the route's). */
export function refKey(ref: Obj, routeNamespace: string): string {
  return serviceKey(typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : routeNamespace, String(ref.name));
}

interface ParentLink {
  check: RouteCheck;
  parentIndex: number;
  /** parentRef.port; 0: every port. */
  port: number;
  /** parentRef.sectionName: for a Service, the port's name; '': any. */
  sectionName: string;
}

/** The routes in force (validate.ts inForce) by the Service keys their parentRefs name (whether or not the Service exists). */
export interface RouteIndex {
  byParent: Map<string, ParentLink[]>;
}

// The index depends on the route objects alone (not on Services), so it is kept per routes map and used
// again while the map holds the same objects (a source may change the map in place: checked each time).
const indexes = new WeakMap<Map<string, GatewayRoute>, { routes: GatewayRoute[]; index: RouteIndex }>();

export function routeIndex(topology: Topology): RouteIndex {
  const routes = topology.routes ?? new Map<string, GatewayRoute>();
  const known = indexes.get(routes);
  if (known && known.routes.length === routes.size) {
    let i = 0;
    let same = true;
    for (const r of routes.values())
      if (known.routes[i++] !== r) {
        same = false;
        break;
      }
    if (same) return known.index;
  }
  const byParent = new Map<string, ParentLink[]>();
  for (const route of routes.values()) {
    const check = checkRoute(route);
    if (!inForce(check)) continue;
    const ns = route.metadata.namespace;
    for (const [i, ref] of ((check.object.spec.parentRefs ?? []) as Obj[]).entries()) {
      if (!isServiceParent(ref)) continue;
      const key = refKey(ref, ns);
      let list = byParent.get(key);
      if (!list) byParent.set(key, (list = []));
      list.push({
        check,
        parentIndex: i,
        port: typeof ref.port === 'number' ? ref.port : 0,
        sectionName: typeof ref.sectionName === 'string' ? ref.sectionName : '',
      });
    }
  }
  const index = { byParent };
  indexes.set(routes, { routes: [...routes.values()], index });
  return index;
}

/** Every valid route attached to `svc`:`port`. */
export function attachments(index: RouteIndex, svc: Service, port: number): Attachment[] {
  const out: Attachment[] = [];
  const sp = svc.ports.find((p) => p.port === port);
  if (!sp) return out;
  for (const l of index.byParent.get(serviceKey(svc.namespace, svc.name)) ?? []) {
    if (l.port !== 0 && l.port !== port) continue;
    if (l.sectionName !== '' && l.sectionName !== sp.name) continue;
    const md = l.check.route.metadata;
    out.push({
      check: l.check,
      kind: l.check.route.kind,
      namespace: md.namespace,
      name: md.name,
      service: svc,
      port,
      parentIndex: l.parentIndex,
      role: md.namespace === svc.namespace ? 'producer' : 'consumer',
    });
  }
  return out;
}

/**
 * The routes a caller in `callerNamespace` uses for one Service port, and the routes left out there because
 * a GRPCRoute wins over them (Conflicted).
 */
export function routesInForce(
  index: RouteIndex,
  callerNamespace: string,
  svc: Service,
  port: number,
): { used: Attachment[]; conflicted: Attachment[] } {
  const all = attachments(index, svc, port);
  const consumer = callerNamespace === svc.namespace ? [] : all.filter((a) => a.role === 'consumer' && a.namespace === callerNamespace);
  const group = consumer.length > 0 ? consumer : all.filter((a) => a.role === 'producer');
  return splitConflicts(group);
}

function splitConflicts(group: Attachment[]): { used: Attachment[]; conflicted: Attachment[] } {
  // One attachment per route (a route naming the same Service port twice, via port and without, counts once).
  const seen = new Set<GatewayRoute>();
  const unique = group.filter((a) => !seen.has(a.check.route) && seen.add(a.check.route));
  if (!unique.some((a) => a.kind === 'GRPCRoute')) return { used: unique, conflicted: [] };
  return { used: unique.filter((a) => a.kind === 'GRPCRoute'), conflicted: unique.filter((a) => a.kind !== 'GRPCRoute') };
}

/** Whether a route is Conflicted on its (Service, port) for the callers it applies to (its own namespace's group). */
export function conflictedOn(index: RouteIndex, a: Attachment): boolean {
  const group = attachments(index, a.service, a.port).filter((b) => b.namespace === a.namespace);
  return splitConflicts(group).conflicted.some((b) => b.check.route === a.check.route);
}

// ---- backends ----

export interface BackendResolution {
  cluster: string;
  /** Absent: resolved. */
  problem?: { reason: 'BackendNotFound' | 'InvalidKind'; message: string };
  service?: Service;
  port?: number;
}

export function resolveBackend(ref: Obj, routeNamespace: string, services: Map<string, Service>): BackendResolution {
  const ns = typeof ref.namespace === 'string' && ref.namespace !== '' ? ref.namespace : routeNamespace;
  const group = typeof ref.group === 'string' ? ref.group : '';
  const kind = typeof ref.kind === 'string' ? ref.kind : 'Service';
  const port = typeof ref.port === 'number' ? ref.port : 0;
  if (group !== '' || kind !== 'Service') {
    return {
      cluster: `${group === '' ? '' : `${group}/`}${kind}/${ref.name}.${ns}:${port}`,
      problem: {
        reason: 'InvalidKind',
        message: `backendRef ${group === '' ? 'core' : group}/${kind} ${ns}/${ref.name}: only Services are supported`,
      },
    };
  }
  const cluster = clusterName(String(ref.name), ns, port);
  const svc = services.get(serviceKey(ns, String(ref.name)));
  if (!svc) return { cluster, problem: { reason: 'BackendNotFound', message: `backendRef Service ${ns}/${ref.name} not found` } };
  if (!svc.ports.some((p) => p.port === port))
    return { cluster, problem: { reason: 'BackendNotFound', message: `backendRef Service ${ns}/${ref.name} has no port ${port}` } };
  return { cluster, service: svc, port };
}

/**
 * The Services the backends and mirrors of a route's rules name, resolved or not (inputs of the callers'
 * snapshots); dropped rules name none.
 */
export function referencedServices(check: RouteCheck): string[] {
  let known = referenced.get(check);
  if (known === undefined) {
    known = referencedOf(check);
    referenced.set(check, known);
  }
  return known;
}

// A route's check is memoised per route object (validate.ts), and these depend on it alone. Shared: never changed.
const referenced = new WeakMap<RouteCheck, string[]>();

function referencedOf(check: RouteCheck): string[] {
  const out = new Set<string>();
  const ns = check.route.metadata.namespace;
  const fromFilters = (fs: Obj[] | undefined) => {
    for (const f of fs ?? [])
      if (f.type === 'RequestMirror' && f.requestMirror?.backendRef) out.add(refKey(f.requestMirror.backendRef, ns));
  };
  for (const [i, rule] of ((check.object.spec?.rules ?? []) as Obj[]).entries()) {
    if (check.unsupported.has(i)) continue;
    fromFilters(rule.filters);
    for (const b of (rule.backendRefs ?? []) as Obj[]) {
      out.add(refKey(b, ns));
      fromFilters(b.filters);
    }
  }
  return [...out].sort();
}

// ---- compiling rules into snapshot routes ----

/** A cluster a compiled route needs besides the caller's own dependencies. */
export interface BackendCluster {
  name: string;
  service: Service;
  port: number;
  /** A GRPCRoute sends there: the cluster speaks HTTP/2. */
  grpc: boolean;
}

export interface CompiledRoutes {
  /** In precedence order: the first that matches wins. */
  routes: Route[];
  /** Clusters the routes (and their mirrors) send to, resolved ones only. */
  backends: BackendCluster[];
  /** The attachments in force, for shoal get and status. */
  used: Attachment[];
}

function headerModifier(f: Obj | undefined): HeaderModifier | undefined {
  if (!f) return undefined;
  const out: HeaderModifier = {};
  if (Array.isArray(f.set) && f.set.length > 0) out.set = f.set.map((h: Obj) => ({ name: h.name, value: h.value }));
  if (Array.isArray(f.add) && f.add.length > 0) out.add = f.add.map((h: Obj) => ({ name: h.name, value: h.value }));
  if (Array.isArray(f.remove) && f.remove.length > 0) out.remove = [...f.remove];
  return out;
}

function mirrorPercent(m: Obj): number | undefined {
  if (typeof m.percent === 'number') return m.percent === 100 ? undefined : m.percent;
  if (m.fraction) {
    const p = (m.fraction.numerator / (m.fraction.denominator ?? 100)) * 100;
    return p >= 100 ? undefined : p;
  }
  return undefined;
}

interface FilterOut {
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  mirrors?: Mirror[];
  redirect?: Route['redirect'];
  rewrite?: Route['rewrite'];
}

function applyFilters(
  filters: Obj[] | undefined,
  ns: string,
  services: Map<string, Service>,
  need: Map<string, BackendCluster>,
  grpc: boolean,
): FilterOut {
  const out: FilterOut = {};
  for (const f of filters ?? []) {
    if (f.type === 'RequestHeaderModifier') out.requestHeaders = headerModifier(f.requestHeaderModifier);
    else if (f.type === 'ResponseHeaderModifier') out.responseHeaders = headerModifier(f.responseHeaderModifier);
    else if (f.type === 'RequestMirror') {
      const r = resolveBackend(f.requestMirror.backendRef, ns, services);
      // A mirror that does not resolve mirrors nothing (ResolvedRefs False says so).
      if (r.problem) continue;
      need.set(r.cluster, { name: r.cluster, service: r.service!, port: r.port!, grpc });
      const m: Mirror = { cluster: r.cluster };
      const pct = mirrorPercent(f.requestMirror);
      if (pct !== undefined) m.percent = pct;
      (out.mirrors ??= []).push(m);
    } else if (f.type === 'RequestRedirect') {
      const rr = f.requestRedirect as Obj;
      out.redirect = { statusCode: rr.statusCode ?? 302 };
      if (rr.scheme) out.redirect.scheme = rr.scheme;
      if (rr.hostname) out.redirect.hostname = rr.hostname;
      if (typeof rr.port === 'number') out.redirect.port = rr.port;
      if (rr.path)
        out.redirect.path = {
          type: rr.path.type,
          value: rr.path.type === 'ReplaceFullPath' ? rr.path.replaceFullPath : rr.path.replacePrefixMatch,
        };
    } else if (f.type === 'URLRewrite') {
      const ur = f.urlRewrite as Obj;
      out.rewrite = {};
      if (ur.hostname) out.rewrite.hostname = ur.hostname;
      if (ur.path)
        out.rewrite.path = {
          type: ur.path.type,
          value: ur.path.type === 'ReplaceFullPath' ? ur.path.replaceFullPath : ur.path.replacePrefixMatch,
        };
    }
  }
  return out;
}

function grpcPath(m: Obj | undefined): Route['path'] {
  if (!m || (!m.service && !m.method)) return { type: 'PathPrefix', value: '/' };
  if ((m.type ?? 'Exact') === 'Exact') {
    if (m.service && m.method) return { type: 'Exact', value: `/${m.service}/${m.method}` };
    if (m.service) return { type: 'PathPrefix', value: `/${m.service}/` };
    return { type: 'RegularExpression', value: `/[^/]+/${m.method}` };
  }
  return { type: 'RegularExpression', value: `/(?:${m.service ?? '[^/]+'})/(?:${m.method ?? '[^/]+'})` };
}

/** Sort keys of one compiled match (the spec's precedence, then the route's age and name, then rule and match order). */
interface Ranked {
  route: Route;
  kind: GatewayRoute['kind'];
  created: string;
  id: string;
  rule: number;
  match: number;
  // HTTPRoute
  pathRank: number;
  pathLen: number;
  method: number;
  headers: number;
  query: number;
  // GRPCRoute
  serviceLen: number;
  methodLen: number;
}

const PATH_RANK: Record<string, number> = { Exact: 0, PathPrefix: 1, RegularExpression: 2 };

/**
 * HTTPRoute (httproute_types.go, HTTPRouteRule.Matches): Exact path; PathPrefix, most characters first;
 * RegularExpression (implementation-specific: after every prefix); a method match; most header matches;
 * most query param matches. GRPCRoute (grpcroute_types.go): most characters of service, then of method;
 * most header matches. Then, for both: the oldest route (creationTimestamp; a route without one, as in a
 * static file, ties), then "{namespace}/{name}" alphabetically, then rule order, then match order.
 */
export function precedence(a: Ranked, b: Ranked): number {
  const spec =
    a.kind === 'GRPCRoute'
      ? b.serviceLen - a.serviceLen || b.methodLen - a.methodLen || b.headers - a.headers
      : a.pathRank - b.pathRank ||
        (a.pathRank === 1 ? b.pathLen - a.pathLen : 0) ||
        b.method - a.method ||
        b.headers - a.headers ||
        b.query - a.query;
  if (spec !== 0) return spec;
  if (a.created !== '' && b.created !== '' && a.created !== b.created) {
    const ta = Date.parse(a.created);
    const tb = Date.parse(b.created);
    if (ta !== tb) return ta - tb;
  }
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return a.rule - b.rule || a.match - b.match;
}

/** Gateway API route source text: "HTTPRoute default/canary rule 0 match 1". */
export function sourceOf(kind: string, ns: string, name: string, rule: number, match: number, ruleName?: string): string {
  return `${kind} ${ns}/${name} rule ${ruleName ? `${rule} (${ruleName})` : rule} match ${match}`;
}

/** The route's rules as snapshot routes with their sort keys. */
function compileAttachment(a: Attachment, services: Map<string, Service>, need: Map<string, BackendCluster>): Ranked[] {
  const out: Ranked[] = [];
  const { check } = a;
  const ns = a.namespace;
  const created = check.route.metadata.creationTimestamp ?? '';
  const id = `${ns}/${a.name}`;
  for (const [ri, rule] of ((check.object.spec.rules ?? []) as Obj[]).entries()) {
    // A rule shoal cannot carry out is dropped: its requests go where they would without it.
    if (check.unsupported.has(ri)) continue;
    const ext = check.extensionRefs.get(ri);
    // An ExtensionRef filter on the rule is not skipped: every request the rule matches gets a 500 (no
    // backends), rather than go through unfiltered or fall to another rule.
    const unresolvedFilter = ext?.rule === true;
    const matches: Obj[] = Array.isArray(rule.matches) && rule.matches.length > 0 ? rule.matches : [{}];
    const grpc = a.kind === 'GRPCRoute';
    const filters = unresolvedFilter ? {} : applyFilters(rule.filters, ns, services, need, grpc);
    const backends: WeightedBackend[] = [];
    if (!unresolvedFilter) {
      for (const [bi, b] of ((rule.backendRefs ?? []) as Obj[]).entries()) {
        const r = resolveBackend(b, ns, services);
        const wb: WeightedBackend = { cluster: r.cluster, weight: typeof b.weight === 'number' ? b.weight : 1 };
        // A backendRef with an ExtensionRef filter: its share of requests gets a 500, as an unresolved one's.
        if (r.problem || ext?.backends.has(bi)) wb.unresolved = true;
        else {
          need.set(r.cluster, { name: r.cluster, service: r.service!, port: r.port!, grpc });
          const bf = applyFilters(b.filters, ns, services, need, grpc);
          if (bf.requestHeaders) wb.requestHeaders = bf.requestHeaders;
          if (bf.responseHeaders) wb.responseHeaders = bf.responseHeaders;
          if (bf.mirrors) wb.mirrors = bf.mirrors;
        }
        backends.push(wb);
      }
    }
    for (const [mi, m] of matches.entries()) {
      const route: Route = { domains: ['*'], prefix: '/', headers: [], backends: backends.map((b) => ({ ...b })) };
      let pathRank = 1;
      let pathLen = 1;
      let serviceLen = 0;
      let methodLen = 0;
      if (a.kind === 'HTTPRoute') {
        const path = (m.path ?? { type: 'PathPrefix', value: '/' }) as {
          type: 'Exact' | 'PathPrefix' | 'RegularExpression';
          value: string;
        };
        route.path = { type: path.type, value: path.value };
        pathRank = PATH_RANK[path.type] ?? 2;
        pathLen = path.value.length;
        if (typeof m.method === 'string') route.method = m.method;
        if (Array.isArray(m.queryParams) && m.queryParams.length > 0) {
          route.query = m.queryParams.map((q: Obj) =>
            q.type === 'RegularExpression'
              ? { name: q.name, value: q.value, type: 'RegularExpression' as const }
              : { name: q.name, value: q.value },
          );
        }
      } else {
        route.path = grpcPath(m.method);
        serviceLen = typeof m.method?.service === 'string' ? m.method.service.length : 0;
        methodLen = typeof m.method?.method === 'string' ? m.method.method.length : 0;
      }
      for (const h of (m.headers ?? []) as Obj[]) {
        route.headers.push(
          h.type === 'RegularExpression' ? { name: h.name, value: h.value, type: 'RegularExpression' } : { name: h.name, value: h.value },
        );
      }
      if (!unresolvedFilter) {
        if (filters.requestHeaders) route.requestHeaders = filters.requestHeaders;
        if (filters.responseHeaders) route.responseHeaders = filters.responseHeaders;
        if (filters.redirect) route.redirect = filters.redirect;
        if (filters.rewrite) route.rewrite = filters.rewrite;
        if (filters.mirrors) route.mirrors = filters.mirrors.map((x) => ({ ...x }));
        if (rule.timeouts?.request !== undefined) route.timeoutMs = durationMs(rule.timeouts.request);
        if (rule.timeouts?.backendRequest !== undefined) route.backendTimeoutMs = durationMs(rule.timeouts.backendRequest);
        if (rule.retry) {
          route.retry = {
            codes: Array.isArray(rule.retry.codes) ? [...rule.retry.codes] : [],
            attempts: typeof rule.retry.attempts === 'number' ? rule.retry.attempts : 1,
            backoffMs: typeof rule.retry.backoff === 'string' ? durationMs(rule.retry.backoff) : 0,
          };
        }
      }
      route.source =
        sourceOf(a.kind, ns, a.name, ri, mi, typeof rule.name === 'string' ? rule.name : undefined) +
        (unresolvedFilter ? ' (ExtensionRef filter: answers 500)' : '');
      out.push({
        route,
        kind: a.kind,
        created,
        id,
        rule: ri,
        match: mi,
        pathRank,
        pathLen,
        method: route.method ? 1 : 0,
        headers: route.headers.length,
        query: route.query?.length ?? 0,
        serviceLen,
        methodLen,
      });
    }
  }
  return out;
}

/**
 * The snapshot routes a caller in `callerNamespace` uses for `svc`:`port`, in precedence order, or null when
 * no route applies there (the caller's mesh config routes as before).
 */
export function compileFor(topology: Topology, callerNamespace: string, svc: Service, port: number): CompiledRoutes | null {
  const index = routeIndex(topology);
  const { used } = routesInForce(index, callerNamespace, svc, port);
  if (used.length === 0) return null;
  const need = new Map<string, BackendCluster>();
  const ranked: Ranked[] = [];
  for (const a of used) ranked.push(...compileAttachment(a, topology.services, need));
  ranked.sort(precedence);
  return { routes: ranked.map((r) => r.route), backends: [...need.values()].sort((x, y) => (x.name < y.name ? -1 : 1)), used };
}

/**
 * The protocol a route's backend cluster speaks: its Service port's, unless that says only tcp (then the
 * listener's). A GRPCRoute's backend speaks HTTP/2 whatever its port says: grpc, or http2 on an http2 listener.
 */
export function backendProtocol(b: BackendCluster, listener: Protocol): Protocol {
  const p = b.service.ports.find((x) => x.port === b.port)?.protocol ?? listener;
  if (b.grpc && p !== 'grpc' && p !== 'http2') return listener === 'http2' ? 'http2' : 'grpc';
  return p === 'tcp' ? listener : p;
}

/**
 * The input of one caller's snapshot that routes shape: for each Service port it depends on, the routes in
 * force there (their objects) and the Services they send to. Equal text, equal compiled routes.
 */
export function routeInputs(
  topology: Topology,
  callerNamespace: string,
  deps: Array<{ namespace: string; service: string; port: number }>,
  serviceText: (s: Service) => string,
): string {
  if (!topology.routes || topology.routes.size === 0) return '';
  let out = '';
  for (const d of deps) {
    const svc = topology.services.get(serviceKey(d.namespace, d.service));
    if (svc) out += routesAt(topology, callerNamespace, svc, d.port, undefined, serviceText)?.text ?? '';
  }
  return out;
}

/**
 * The routes in force for a caller namespace on one Service port, with what they were compiled from: the
 * attachments' checks, and the text of the parent Service and of the Services the routes name (and, with
 * workload identity, those Services' readers). Kept across applies (RoutesCache) while the checks are the
 * same objects (route objects are replaced on change, never edited in place: checkRoute relies on it) and
 * those texts are equal (read afresh each apply, so a Service edited in place is seen).
 */
export interface RoutesAt {
  svc: Service;
  checks: RouteCheck[];
  /** The parent Service's text, then each named Service's text (and, with workload identity, its readers). */
  parts: string[];
  /** This port's part of routeInputs(): equal checks and parts, equal text and compiled routes. */
  text: string;
  /** Compiled on first use (compileFor). */
  compiled?: CompiledRoutes | null;
}

/** RoutesAt by caller namespace, Service key and port. */
export type RoutesCache = Map<string, RoutesAt>;

/**
 * The routes in force for `callerNamespace` on `svc`:`port` (null: none), taken from `cache` (or `previous`,
 * a cache being replaced) when nothing they depend on changed, else made again and put in `cache`.
 * `serviceText` is a Service's input text (builder.ts serviceInput); `index`, routeIndex(topology).
 */
export function routesAt(
  topology: Topology,
  callerNamespace: string,
  svc: Service,
  port: number,
  cache: RoutesCache | undefined,
  serviceText: (s: Service) => string,
  previous?: RoutesCache,
  index = routeIndex(topology),
): RoutesAt | null {
  const { used } = routesInForce(index, callerNamespace, svc, port);
  if (used.length === 0) return null;
  // What the routes depend on besides their checks, compared piece by piece: no text is made when they match.
  const parts = [serviceText(svc)];
  for (const a of used) {
    for (const k of referencedServices(a.check)) {
      const s = topology.services.get(k);
      parts.push(s ? serviceText(s) : JSON.stringify([k, null]));
      // Workload identity: the readers of the app named like a backend shape its cluster's peer identities.
      if (topology.identity) parts.push(JSON.stringify(topology.apps.get(k)?.readers ?? []));
    }
  }
  const key = `${callerNamespace}\n${serviceKey(svc.namespace, svc.name)}\n${port}`;
  const known = cache?.get(key) ?? previous?.get(key);
  if (
    known !== undefined &&
    known.svc === svc &&
    known.checks.length === used.length &&
    known.checks.every((c, i) => c === used[i].check) &&
    known.parts.length === parts.length &&
    known.parts.every((p, i) => p === parts[i])
  ) {
    if (cache !== undefined && cache.get(key) !== known) cache.set(key, known);
    return known;
  }
  let text = `${JSON.stringify([svc.namespace, svc.name, port])}:`;
  let i = 1;
  for (const a of used) {
    text += routeText(a.check);
    for (let n = referencedServices(a.check).length; n > 0; n--) {
      text += parts[i++];
      if (topology.identity) text += parts[i++];
    }
  }
  const at: RoutesAt = { svc, checks: used.map((a) => a.check), parts, text };
  cache?.set(key, at);
  return at;
}

/** The compiled routes of `at` (compiled once, then shared: nothing may change them). */
export function compiledAt(topology: Topology, callerNamespace: string, at: RoutesAt, port: number): CompiledRoutes | null {
  if (at.compiled === undefined) at.compiled = compileFor(topology, callerNamespace, at.svc, port);
  return at.compiled;
}

const texts = new WeakMap<RouteCheck, string>();
function routeText(c: RouteCheck): string {
  let t = texts.get(c);
  if (t === undefined) {
    t = JSON.stringify([c.key, c.route.metadata.creationTimestamp ?? '', c.object.spec, [...c.unsupported.keys()]]);
    texts.set(c, t);
  }
  return t;
}

/** The Services (by key) a route's parentRefs name, as the route gives them (valid or not). */
export function routeParents(route: GatewayRoute): string[] {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
  const spec = (route.spec ?? {}) as Obj;
  if (!Array.isArray(spec.parentRefs)) return [];
  const ns = (route.metadata as GatewayRoute['metadata'] | undefined)?.namespace ?? '';
  const refs = spec.parentRefs as unknown[];
  return refs.filter((p): p is Obj => p !== null && typeof p === 'object' && typeof (p as Obj).name === 'string').map((p) => refKey(p, ns));
}

/** The parent Services of the routes in force that send to (or mirror to) any Service in `services`. */
export function parentsRoutingTo(topology: Topology, services: Set<string>): Set<string> {
  const out = new Set<string>();
  if (services.size === 0) return out;
  for (const r of topology.routes?.values() ?? []) {
    const c = checkRoute(r);
    if (!inForce(c)) continue;
    if (referencedServices(c).some((s) => services.has(s))) for (const p of routeParents(r)) out.add(p);
  }
  return out;
}

/** The apps (by key) with a dependency on any Service in `services`. */
export function callersOf(topology: Topology, services: Set<string>): Set<string> {
  const out = new Set<string>();
  if (services.size === 0) return out;
  for (const [k, app] of topology.apps) {
    if (app.config.dependencies.some((d) => services.has(serviceKey(d.namespace, d.service)))) out.add(k);
  }
  return out;
}

/**
 * The apps whose snapshots a change of routes (or of Services routes send to) can change, from `prev` to
 * `next`: callers of the parent Services of every route added, removed or changed (by object identity), and
 * callers of Services whose routes send to a Service in `changedServices`. For a source that keeps each
 * topology (the static file); one that changes its topology in place can call callersOf(topology,
 * routeParents(old) + routeParents(new) + parentsRoutingTo(topology, changed Services)) itself.
 */
export function appsAffectedByRoutes(prev: Topology | null, next: Topology, changedServices: Set<string>): Set<string> {
  const parents = new Set<string>();
  const prevRoutes = prev?.routes ?? new Map<string, GatewayRoute>();
  const nextRoutes = next.routes ?? new Map<string, GatewayRoute>();
  for (const [k, r] of nextRoutes) if (prevRoutes.get(k) !== r) for (const p of routeParents(r)) parents.add(p);
  for (const [k, r] of prevRoutes) if (nextRoutes.get(k) !== r) for (const p of routeParents(r)) parents.add(p);
  for (const p of parentsRoutingTo(next, changedServices)) parents.add(p);
  return callersOf(next, parents);
}
