// Builds one app's snapshot from the topology: listeners, routes, clusters, DNS names.
import { createHash, randomUUID } from 'node:crypto';
import { allocateListenPorts, allocateLoopbacks } from '../../shared/loopbackAndListenPorts.ts';
import type { Dependency } from '../../shared/meshConfig.ts';
import {
  SNAPSHOT_SCHEMA_VERSION,
  clusterName,
  type Cluster,
  type DnsName,
  type Endpoint,
  type InboundListener,
  type ListenerMode,
  type OutboundListener,
  type Protocol,
  type Route,
  type Snapshot,
} from '../../shared/snapshot.ts';
import { serviceKey, type App, type Service, type Topology } from '../topology/model.ts';
import { addIdentity } from '../identity/snapshotIdentity.ts';
import {
  backendProtocol,
  compileFor,
  compiledAt,
  routeIndex,
  routesAt,
  type CompiledRoutes,
  type RouteIndex,
  type RoutesAt,
  type RoutesCache,
} from '../gateway/compile.ts';

function modeOf(protocol: Protocol): ListenerMode {
  return protocol === 'tcp' ? 'l4' : 'l7';
}

/** Ready endpoints take traffic; serving-and-terminating ones only when no endpoint is ready. */
export function usableEndpoints(all: readonly Endpoint[]): Endpoint[] {
  const ready = all.filter((e) => e.ready);
  const chosen = ready.length > 0 ? ready : all.filter((e) => e.serving && e.terminating);
  return chosen.map((e) => ({ ...e })).sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
}

/**
 * A Service port's usable endpoints are the same for every app that depends on it: a change of one
 * Service rebuilds each of its dependents, and without this each would copy, sort and serialise the
 * same list again. Kept per apply (InputsMemo), per source list and per identity state (addIdentity
 * marks meshed endpoints in place, the same way for every app). The lists are shared between the
 * snapshots of one apply: nothing may change them after the build.
 */
function sharedEndpoints(source: readonly Endpoint[], identity: boolean, memo: InputsMemo | undefined): Endpoint[] {
  if (memo === undefined) return usableEndpoints(source);
  let m = memo.endpoints.get(source);
  if (m === undefined) memo.endpoints.set(source, (m = {}));
  const hit = identity ? m.identity : m.plain;
  if (hit !== undefined) return hit;
  const eps = usableEndpoints(source);
  if (identity) m.identity = eps;
  else m.plain = eps;
  return eps;
}

/** Stands in for a cluster's endpoints while the snapshot is serialised; random, so no content can collide with it. */
const ENDPOINTS_MARK = `shoal-endpoints-${randomUUID()}-`;

/** Stands in for a listener's Gateway API routes while the snapshot is serialised; random, as ENDPOINTS_MARK. */
const ROUTES_MARK = `shoal-routes-${randomUUID()}-`;

/**
 * Compiled Gateway API routes -> their JSON, made at their first serialisation. The compiled routes are
 * kept across applies while their inputs are unchanged (RoutesCache) and never changed: neither is their text.
 */
const routesJson = new WeakMap<readonly Route[], string>();

function routesText(routes: readonly Route[]): string {
  let json = routesJson.get(routes);
  if (json === undefined) {
    json = JSON.stringify(routes);
    routesJson.set(routes, json);
  }
  return json;
}

/**
 * JSON.stringify(snap), with each cluster's endpoints taken from the shared lists' JSON, and each listener's
 * Gateway API routes (`gatewayRoutes`: the listener's routes -> the compiled list they copy) from the compiled
 * routes' JSON, instead of serialised again. Same text: each placeholder takes the place of what it stands for
 * in its object's keys (listeners come before clusters in a snapshot's keys, so the marks are met in order).
 */
function stringifySnapshot(
  snap: Omit<Snapshot, 'version'>,
  memo: InputsMemo | undefined,
  gatewayRoutes?: Map<Route[], readonly Route[]>,
): string {
  if (memo === undefined) return JSON.stringify(snap);
  const clusters = snap.clusters;
  const pieces: Array<{ mark: string; what: string; json: () => string }> = [];
  let outbound = snap.outbound;
  if (gatewayRoutes !== undefined && gatewayRoutes.size > 0) {
    outbound = snap.outbound.map((l) => {
      const compiled = gatewayRoutes.get(l.routes);
      // Only a listener that still holds exactly the compiled routes (same entries, same order).
      if (compiled === undefined || compiled.length !== l.routes.length || !l.routes.every((r, i) => r === compiled[i])) return l;
      const mark = `${ROUTES_MARK}${pieces.length}`;
      pieces.push({ mark: `"${mark}"`, what: `the routes of listener ${l.name}`, json: () => routesText(compiled) });
      return { ...l, routes: mark as unknown as Route[] };
    });
  }
  for (const [i, c] of clusters.entries()) {
    pieces.push({
      mark: `"${ENDPOINTS_MARK}${i}"`,
      what: `the endpoints of cluster ${c.name}`,
      json: () => {
        const eps = c.endpoints;
        let json = memo.endpointJson.get(eps);
        if (json === undefined) {
          json = JSON.stringify(eps);
          memo.endpointJson.set(eps, json);
        }
        return json;
      },
    });
  }
  const text = JSON.stringify({ ...snap, outbound, clusters: clusters.map((c, i) => ({ ...c, endpoints: `${ENDPOINTS_MARK}${i}` })) });
  let out = '';
  let from = 0;
  for (const p of pieces) {
    const at = text.indexOf(p.mark, from);
    if (at < 0) throw new Error(`snapshot serialisation lost ${p.what}`);
    out += text.slice(from, at) + p.json();
    from = at + p.mark.length;
  }
  return out + text.slice(from);
}

// Most specific first: longer prefixes, then more header matches.
function routeOrder(a: Route, b: Route): number {
  return (
    b.prefix.length - a.prefix.length || b.headers.length - a.headers.length || (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0)
  );
}

function matchKey(prefix: string, headers: Dependency['options']['headers']): string {
  return JSON.stringify([prefix, headers.map((h) => [h.name, h.value]).sort()]);
}

/**
 * Per-apply memo of the input pieces that many apps share (a changed Service is a dependency of
 * all of them, the mesh identity of every app): each is serialised once per apply, not per app.
 * Made fresh for each apply, so objects changed in place between applies are read again.
 */
export interface InputsMemo {
  services: Map<Service, string>;
  identity: Map<object, string>;
  /** A Service port's endpoint list -> its usable endpoints, shared by the apps built in this apply. */
  endpoints: Map<readonly Endpoint[], { plain?: Endpoint[]; identity?: Endpoint[] }>;
  /** Each shared list's JSON, made at its first serialisation (after addIdentity). */
  endpointJson: Map<Endpoint[], string>;
  /**
   * Gateway API routes in force for a caller namespace, Service and port (null: none apply), as found in this
   * apply: their compiled Route objects are shared between snapshots, nothing may change them.
   */
  routes: Map<string, RoutesAt | null>;
  /**
   * The same, kept across applies (the store's): an entry is used again while the routes, the parent Service
   * and the Services the routes name are the same objects. `previousRoutes`: a cache being replaced (read only).
   */
  routesCache?: RoutesCache;
  previousRoutes?: RoutesCache;
  /** The routes' index (routeIndex), found once per apply: checking that it is current reads every route. */
  routeIndex?: RouteIndex;
}

export function inputsMemo(routesCache?: RoutesCache, previousRoutes?: RoutesCache): InputsMemo {
  return {
    services: new Map(),
    identity: new Map(),
    endpoints: new Map(),
    endpointJson: new Map(),
    routes: new Map(),
    routesCache,
    previousRoutes,
  };
}

/** The Gateway API routes in force for an app of `callerNamespace` on `svc`:`port` (null: none). */
function routesFor(topology: Topology, callerNamespace: string, svc: Service, port: number, memo: InputsMemo | undefined): RoutesAt | null {
  if (memo === undefined) return routesAt(topology, callerNamespace, svc, port, undefined, (s) => serviceInput(s, undefined));
  const key = `${callerNamespace}\n${serviceKey(svc.namespace, svc.name)}\n${port}`;
  let at = memo.routes.get(key);
  if (at === undefined) {
    memo.routeIndex ??= routeIndex(topology);
    at = routesAt(
      topology,
      callerNamespace,
      svc,
      port,
      memo.routesCache,
      (s) => serviceInput(s, memo),
      memo.previousRoutes,
      memo.routeIndex,
    );
    memo.routes.set(key, at);
  }
  return at;
}

function serviceInput(svc: Service, memo: InputsMemo | undefined): string {
  let s = memo?.services.get(svc);
  if (s === undefined) {
    s = JSON.stringify([svc.namespace, svc.name, svc.address, svc.ports, [...svc.endpoints]]);
    memo?.services.set(svc, s);
  }
  return s;
}

/**
 * The input an app's snapshot depends on; equal inputs mean the snapshot need not be rebuilt.
 * A text of its pieces, each serialised on its own (so shared pieces can be memoised).
 */
export function snapshotInputs(app: App, topology: Topology, memo?: InputsMemo): string {
  let services = '';
  for (const d of app.config.dependencies) {
    const svc = topology.services.get(serviceKey(d.namespace, d.service));
    services += (services === '' ? '' : ',') + (svc ? serviceInput(svc, memo) : JSON.stringify([d.namespace, d.service, null]));
  }
  let out = `[${JSON.stringify(topology.clusterDomain)},${JSON.stringify(app.pluginId)},${JSON.stringify(app.config)},${JSON.stringify(app.problems ?? [])},[${services}]`;
  // Gateway API routes in force for the app's dependencies, and the Services they send to (absent: none).
  // (routeInputs() in compile.ts, one Service port's part at a time, kept while nothing it depends on changed.)
  let routes = '';
  if (topology.routes && topology.routes.size > 0) {
    for (const d of app.config.dependencies) {
      const svc = topology.services.get(serviceKey(d.namespace, d.service));
      if (svc) routes += routesFor(topology, app.namespace, svc, d.port, memo)?.text ?? '';
    }
  }
  // Length-prefixed rather than a JSON string: the text is long and full of quotes, and only ever compared.
  if (routes !== '') out += `,${routes.length}:${routes}`;
  // Identity: the CA's bundle and the readers of dependencies shape the snapshot too.
  if (topology.identity) {
    let identity = memo?.identity.get(topology.identity);
    if (identity === undefined) {
      identity = JSON.stringify(topology.identity);
      memo?.identity.set(topology.identity, identity);
    }
    out += `,[${identity},${JSON.stringify(app.config.dependencies.map((d) => topology.apps.get(`${d.namespace}/${d.service}`)?.readers ?? []))}]`;
  }
  return out + ']';
}

// allocateLoopbacks hashes every identity (sha256) on each build; its answer depends only on the
// identities and the pinned addresses, so it is kept per app's set of them (a rebuilt app asks for
// the same set again). Bounded: emptied when full.
const LOOPBACK_MEMO_MAX = 20_000;
const loopbackMemo = new Map<string, Map<string, string>>();

function loopbacksOf(identities: string[], pinned: Map<string, string>): Map<string, string> {
  let key = identities.join('\n') + '\n\n';
  for (const [k, v] of pinned) key += `${k}=${v}\n`;
  let addresses = loopbackMemo.get(key);
  if (addresses === undefined) {
    if (loopbackMemo.size >= LOOPBACK_MEMO_MAX) loopbackMemo.clear();
    addresses = allocateLoopbacks(identities, pinned);
    loopbackMemo.set(key, addresses);
  }
  return addresses;
}

export function buildSnapshot(app: App, topology: Topology): Snapshot {
  return buildSnapshotBody(app, topology).snapshot;
}

/**
 * The snapshot and its body, JSON.stringify(snapshot) exactly. The content is serialised once: the
 * version is the hash of that text (what snapshotVersion computes) and the body is the same text
 * with the version put in its place, second after schemaVersion.
 */
export function buildSnapshotBody(app: App, topology: Topology, memo?: InputsMemo): { snapshot: Snapshot; body: string } {
  const errors: string[] = [...(app.problems ?? [])];
  const { config } = app;
  const depName = (d: Dependency) => (d.namespace === app.namespace ? d.service : `${d.service}.${d.namespace}`);

  // Inbound: each app port on its listen port.
  const listenPorts = allocateListenPorts(
    config.ports.map((p) => p.port),
    new Map(config.ports.filter((p) => p.listenPort !== null).map((p) => [p.port, p.listenPort as number])),
  );
  const inbound: InboundListener[] = config.ports
    .map((p) => ({
      name: `inbound:${p.port}`,
      listenPort: listenPorts.get(p.port)!,
      port: p.port,
      protocol: p.protocol,
      mode: modeOf(p.protocol),
      limits: { ...p.limits },
    }))
    .sort((a, b) => a.port - b.port);

  // Clusters: one per dependency port.
  const clusters: Cluster[] = [];
  const services = new Map<string, Service | undefined>();
  for (const d of config.dependencies) {
    const key = serviceKey(d.namespace, d.service);
    if (!services.has(key)) services.set(key, topology.services.get(key));
    const svc = services.get(key);
    let endpoints: Endpoint[] = [];
    if (!svc) errors.push(`dependency ${depName(d)}:${d.port}: service ${key} not found`);
    else if (!svc.endpoints.has(d.port)) errors.push(`dependency ${depName(d)}:${d.port}: service ${key} has no port ${d.port}`);
    else endpoints = sharedEndpoints(svc.endpoints.get(d.port)!, topology.identity !== undefined, memo);
    const o = d.options;
    clusters.push({
      name: clusterName(d.service, d.namespace, d.port),
      service: d.service,
      namespace: d.namespace,
      port: d.port,
      protocol: d.protocol,
      lbPolicy: o.lbPolicy,
      hashHeader: o.hashHeader,
      policy: {
        connectTimeoutMs: o.connectTimeoutMs,
        requestTimeoutMs: o.requestTimeoutMs,
        perTryTimeoutMs: o.perTryTimeoutMs,
        retryAttempts: o.retryAttempts,
        maxActiveRetries: o.maxActiveRetries,
        maxConnections: o.maxConnections,
        maxRequests: o.maxRequests,
        maxPendingRequests: o.maxPendingRequests,
        maxRequestsPerConnection: o.maxRequestsPerConnection,
        consecutiveErrors: o.consecutiveErrors,
        baseEjectionTimeMs: o.baseEjectionTimeMs,
        maxEjectionPercent: o.maxEjectionPercent,
        intervalMs: o.intervalMs,
        healthyPanicThreshold: o.healthyPanicThreshold,
        tcpIdleTimeoutS: o.tcpIdleTimeoutS,
      },
      endpoints,
      ...(config.localityFailover ? { localityFailover: true } : {}),
    });
  }
  // Gateway API routes (docs/gateway-api.md) in force for each dependency: they replace its mesh-config
  // route. Their backends and mirrors that are not dependencies get clusters of their own, with the options
  // (timeouts, retries, limits) of the dependency whose routes send there and the protocol of their port.
  const gateway = new Map<Dependency, CompiledRoutes>();
  if (topology.routes && topology.routes.size > 0) {
    for (const d of config.dependencies) {
      const svc = services.get(serviceKey(d.namespace, d.service));
      let compiled: CompiledRoutes | null = null;
      if (svc) {
        if (memo === undefined) compiled = compileFor(topology, app.namespace, svc, d.port);
        else {
          const at = routesFor(topology, app.namespace, svc, d.port, memo);
          compiled = at === null ? null : compiledAt(topology, app.namespace, at, d.port);
        }
      }
      if (!compiled) continue;
      if (d.protocol === 'tcp') {
        errors.push(
          `dependency ${depName(d)}:${d.port}: ${compiled.used.map((a) => `${a.kind} ${a.namespace}/${a.name}`).join(', ')} not applied: the dependency is tcp (routes need http, http2 or grpc)`,
        );
        continue;
      }
      gateway.set(d, compiled);
      const own = clusters.find((c) => c.name === clusterName(d.service, d.namespace, d.port))!;
      for (const b of compiled.backends) {
        if (clusters.some((c) => c.name === b.name)) continue;
        clusters.push({
          ...own,
          name: b.name,
          service: b.service.name,
          namespace: b.service.namespace,
          port: b.port,
          protocol: backendProtocol(b, d.protocol),
          policy: { ...own.policy },
          endpoints: sharedEndpoints(b.service.endpoints.get(b.port) ?? [], topology.identity !== undefined, memo),
        });
      }
    }
  }
  clusters.sort((a, b) => (a.name < b.name ? -1 : 1));

  // Domain groups: dependencies that share a Domains entry on a port share one address and listener.
  const groups = new Map<string, { domain: string; port: number; members: Dependency[] }>();
  for (const d of config.dependencies) {
    for (const domain of d.options.domains) {
      if (domain === '*') continue;
      const key = `${domain}:${d.port}`;
      const g = groups.get(key) ?? { domain, port: d.port, members: [] };
      g.members.push(d);
      groups.set(key, g);
    }
  }
  const sharedDomains = new Set([...groups.values()].filter((g) => g.members.length > 1).map((g) => g.domain));

  // Loopback addresses: per dependency service, and per shared domain.
  const pinned = new Map<string, string>();
  for (const [key, svc] of services) if (svc?.address) pinned.set(key, svc.address);
  const identities = [...services.keys(), ...[...sharedDomains].map((d) => `domain/${d}`)];
  const addresses = loopbacksOf(identities, pinned);
  const addressOf = (d: Dependency) => addresses.get(serviceKey(d.namespace, d.service))!;

  const listeners = new Map<string, OutboundListener>();
  // Listeners whose routes are Gateway API routes, already in the spec's precedence order.
  const gatewayListeners = new Set<OutboundListener>();
  // Their routes (a copy) -> the compiled list, whose JSON is spliced into the body (stringifySnapshot).
  const gatewayRoutes = new Map<Route[], readonly Route[]>();
  const addRoute = (address: string, port: number, protocol: Protocol, name: string, domains: string[], d: Dependency) => {
    const key = `${address}:${port}`;
    let l = listeners.get(key);
    if (!l) {
      l = { name, address, port, protocol, mode: modeOf(protocol), routes: [] };
      listeners.set(key, l);
    } else if (l.protocol !== protocol) {
      errors.push(`dependency ${depName(d)}:${port}: protocol ${protocol} conflicts with ${l.protocol} on ${key}; left out`);
      return;
    }
    // On the dependency's own listeners (not a Domains listener shared with others), its Gateway API routes
    // replace the mesh-config route (Prefix, Headers and Weight).
    const compiled = domains.length === 1 && domains[0] === '*' ? gateway.get(d) : undefined;
    if (compiled && l.routes.length === 0) {
      // Shared with the other listeners and snapshots using them (InputsMemo.routes): never changed.
      l.routes = compiled.routes.slice();
      gatewayListeners.add(l);
      gatewayRoutes.set(l.routes, compiled.routes);
      return;
    }
    if (gatewayListeners.has(l)) {
      errors.push(`dependency ${depName(d)}:${port}: listener ${key} carries Gateway API routes; the dependency's mesh route is left out`);
      return;
    }
    const mk = matchKey(d.options.prefix, d.options.headers);
    const cluster = clusterName(d.service, d.namespace, d.port);
    const existing = l.routes.find((r) => matchKey(r.prefix, r.headers) === mk && r.domains.join() === domains.join());
    if (existing) {
      existing.backends.push({ cluster, weight: d.options.weight });
      // A split route retries non-idempotent requests only when every dependency on it says so.
      if (existing.retryNonIdempotent && !d.options.retryNonIdempotent) delete existing.retryNonIdempotent;
    } else {
      const route: Route = {
        domains,
        prefix: d.options.prefix,
        headers: d.options.headers.map((h) => ({ ...h })),
        backends: [{ cluster, weight: d.options.weight }],
      };
      // Set only when asked for: snapshots (and their versions) without the option stay as they were.
      if (d.options.retryNonIdempotent) route.retryNonIdempotent = true;
      l.routes.push(route);
    }
  };

  const portUse = new Map<number, number>();
  for (const d of config.dependencies) portUse.set(d.port, (portUse.get(d.port) ?? 0) + 1);
  const ownPorts = new Set(config.ports.map((p) => p.port));
  for (const d of config.dependencies) {
    addRoute(addressOf(d), d.port, d.protocol, `${depName(d)}:${d.port}`, ['*'], d);
    // Apps written for the earlier mesh dial 127.0.0.1:<port> (docs/static-topology.md); bind it where that is unambiguous and not the app's own port.
    if (portUse.get(d.port) === 1 && !ownPorts.has(d.port)) addRoute('127.0.0.1', d.port, d.protocol, `127.0.0.1:${d.port}`, ['*'], d);
  }
  for (const g of groups.values()) {
    if (g.members.length < 2) continue;
    const address = addresses.get(`domain/${g.domain}`)!;
    for (const d of g.members) addRoute(address, g.port, d.protocol, `${g.domain}:${g.port}`, [g.domain], d);
  }
  const outbound = [...listeners.values()]
    .map((l) => ({ ...l, routes: gatewayListeners.has(l) ? l.routes : l.routes.sort(routeOrder) }))
    .sort((a, b) => (a.address === b.address ? a.port - b.port : a.address < b.address ? -1 : 1));
  for (const l of outbound) {
    if (l.mode === 'l4' && l.routes.length > 1) {
      errors.push(`listener ${l.name}: tcp cannot route by path or header; only the first route is used`);
      l.routes.length = 1;
    }
  }

  // DNS: every name of each dependency, and each Domains entry.
  const dnsMap = new Map<string, string>();
  const addName = (name: string, address: string) => {
    const prev = dnsMap.get(name);
    if (prev !== undefined && prev !== address)
      errors.push(`dns name ${name} is claimed by two addresses (${prev}, ${address}); ${prev} kept`);
    else dnsMap.set(name, address);
  };
  const cd = topology.clusterDomain;
  for (const key of [...services.keys()].sort()) {
    const [ns, name] = key.split('/');
    const address = addresses.get(key)!;
    if (ns === app.namespace) addName(name, address);
    addName(`${name}.${ns}`, address);
    addName(`${name}.${ns}.svc`, address);
    addName(`${name}.${ns}.svc.${cd}`, address);
  }
  for (const d of [...config.dependencies].sort((a, b) => (depName(a) < depName(b) ? -1 : 1))) {
    for (const domain of d.options.domains) {
      if (domain === '*') continue;
      addName(domain, sharedDomains.has(domain) ? addresses.get(`domain/${domain}`)! : addressOf(d));
    }
  }
  const dns: DnsName[] = [...dnsMap].map(([name, address]) => ({ name, address })).sort((a, b) => (a.name < b.name ? -1 : 1));

  const snap: Omit<Snapshot, 'version'> = {
    schemaVersion: SNAPSHOT_SCHEMA_VERSION,
    namespace: app.namespace,
    app: app.name,
    pluginId: app.pluginId,
    inbound,
    outbound,
    clusters,
    dns,
    status: { errors },
  };
  if (topology.identity) addIdentity(snap, app, topology, topology.identity);
  // Key order is fixed here so the content hash is the same on every replica: the text hashed is
  // JSON.stringify of the snapshot without its version, as snapshotVersion hashes it.
  const content = stringifySnapshot(snap, memo, gatewayRoutes);
  const version = createHash('sha256').update(content).digest('hex').slice(0, 16);
  const head = `{"schemaVersion":${JSON.stringify(snap.schemaVersion)},`;
  if (!content.startsWith(head)) throw new Error('snapshot serialisation does not start with its schemaVersion');
  const body = `${head}"version":${JSON.stringify(version)},${content.slice(head.length)}`;
  const snapshot: Snapshot = {
    schemaVersion: snap.schemaVersion,
    version,
    namespace: snap.namespace,
    app: snap.app,
    pluginId: snap.pluginId,
    inbound,
    outbound,
    clusters,
    dns,
    status: snap.status,
    ...(snap.identity ? { identity: snap.identity } : {}),
  };
  return { snapshot, body };
}
