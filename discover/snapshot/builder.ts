// Builds one app's snapshot from the topology: listeners, routes, clusters, DNS names.
import { createHash, randomUUID } from 'node:crypto';
import { allocateListenPorts, allocateLoopbacks } from '../../shared/allocation.ts';
import type { Dependency } from '../../shared/meshConfig.ts';
import {
  SNAPSHOT_SCHEMA_VERSION, clusterName,
  type Cluster, type DnsName, type Endpoint, type InboundListener, type ListenerMode, type OutboundListener,
  type Protocol, type Route, type Snapshot,
} from '../../shared/snapshot.ts';
import { serviceKey, type App, type Service, type Topology } from '../topology/model.ts';
import { addIdentity } from '../identity/snapshotIdentity.ts';
import { backendProtocol, compileFor, routeInputs, type CompiledRoutes } from '../gateway/compile.ts';

function modeOf(protocol: Protocol): ListenerMode {
  return protocol === 'tcp' ? 'l4' : 'l7';
}

/** Ready endpoints take traffic; serving-and-terminating ones only when no endpoint is ready. */
export function usableEndpoints(all: readonly Endpoint[]): Endpoint[] {
  const ready = all.filter((e) => e.ready);
  const chosen = ready.length > 0 ? ready : all.filter((e) => e.serving && e.terminating);
  return chosen
    .map((e) => ({ ...e }))
    .sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
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

/**
 * JSON.stringify(snap), with each cluster's endpoints taken from the shared lists' JSON instead of
 * serialised again. Same text: the placeholder takes the endpoints' place in each cluster's keys.
 */
function stringifySnapshot(snap: Omit<Snapshot, 'version'>, memo: InputsMemo | undefined): string {
  if (memo === undefined) return JSON.stringify(snap);
  const clusters = snap.clusters;
  const text = JSON.stringify({ ...snap, clusters: clusters.map((c, i) => ({ ...c, endpoints: `${ENDPOINTS_MARK}${i}` })) });
  let out = '';
  let from = 0;
  for (let i = 0; i < clusters.length; i++) {
    const mark = `"${ENDPOINTS_MARK}${i}"`;
    const at = text.indexOf(mark, from);
    if (at < 0) throw new Error(`snapshot serialisation lost the endpoints of cluster ${clusters[i].name}`);
    const eps = clusters[i].endpoints;
    let json = memo.endpointJson.get(eps);
    if (json === undefined) {
      json = JSON.stringify(eps);
      memo.endpointJson.set(eps, json);
    }
    out += text.slice(from, at) + json;
    from = at + mark.length;
  }
  return out + text.slice(from);
}

// Most specific first: longer prefixes, then more header matches.
function routeOrder(a: Route, b: Route): number {
  return b.prefix.length - a.prefix.length || b.headers.length - a.headers.length || (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0);
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
   * Gateway API routes compiled for a caller namespace, Service and port (null: none apply), shared by the
   * apps built in this apply: their Route objects are shared between snapshots, nothing may change them.
   */
  routes?: Map<string, CompiledRoutes | null>;
}

export function inputsMemo(): InputsMemo {
  return { services: new Map(), identity: new Map(), endpoints: new Map(), endpointJson: new Map(), routes: new Map() };
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
 * A JSON array of its pieces, each serialised on its own (so shared pieces can be memoised).
 */
export function snapshotInputs(app: App, topology: Topology, memo?: InputsMemo): string {
  let services = '';
  for (const d of app.config.dependencies) {
    const svc = topology.services.get(serviceKey(d.namespace, d.service));
    services += (services === '' ? '' : ',') + (svc ? serviceInput(svc, memo) : JSON.stringify([d.namespace, d.service, null]));
  }
  let out = `[${JSON.stringify(topology.clusterDomain)},${JSON.stringify(app.pluginId)},${JSON.stringify(app.config)},${JSON.stringify(app.problems ?? [])},[${services}]`;
  // Gateway API routes in force for the app's dependencies, and the Services they send to (absent: none).
  const routes = routeInputs(topology, app.namespace, app.config.dependencies, (s) => serviceInput(s, memo));
  if (routes !== '') out += `,${JSON.stringify(routes)}`;
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
        const key = `${app.namespace}\n${serviceKey(d.namespace, d.service)}\n${d.port}`;
        const known = memo?.routes?.get(key);
        compiled = known !== undefined ? known : compileFor(topology, app.namespace, svc, d.port);
        if (known === undefined) memo?.routes?.set(key, compiled);
      }
      if (!compiled) continue;
      if (d.protocol === 'tcp') {
        errors.push(`dependency ${depName(d)}:${d.port}: ${compiled.used.map((a) => `${a.kind} ${a.namespace}/${a.name}`).join(', ')} not applied: the dependency is tcp (routes need http, http2 or grpc)`);
        continue;
      }
      gateway.set(d, compiled);
      const own = clusters.find((c) => c.name === clusterName(d.service, d.namespace, d.port))!;
      for (const b of compiled.backends) {
        if (clusters.some((c) => c.name === b.name)) continue;
        clusters.push({
          ...own, name: b.name, service: b.service.name, namespace: b.service.namespace, port: b.port,
          protocol: backendProtocol(b, d.protocol), policy: { ...own.policy }, endpoints: sharedEndpoints(b.service.endpoints.get(b.port) ?? [], topology.identity !== undefined, memo),
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
      const route: Route = { domains, prefix: d.options.prefix, headers: d.options.headers.map((h) => ({ ...h })), backends: [{ cluster, weight: d.options.weight }] };
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
    if (prev !== undefined && prev !== address) errors.push(`dns name ${name} is claimed by two addresses (${prev}, ${address}); ${prev} kept`);
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
  const content = stringifySnapshot(snap, memo);
  const version = createHash('sha256').update(content).digest('hex').slice(0, 16);
  const head = `{"schemaVersion":${JSON.stringify(snap.schemaVersion)},`;
  if (!content.startsWith(head)) throw new Error('snapshot serialisation does not start with its schemaVersion');
  const body = `${head}"version":${JSON.stringify(version)},${content.slice(head.length)}`;
  const snapshot: Snapshot = {
    schemaVersion: snap.schemaVersion, version, namespace: snap.namespace, app: snap.app, pluginId: snap.pluginId,
    inbound, outbound, clusters, dns, status: snap.status, ...(snap.identity ? { identity: snap.identity } : {}),
  };
  return { snapshot, body };
}
