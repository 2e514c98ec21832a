// The static topology file: services with their endpoints, and apps with their mesh config, in YAML
// a person can write by hand. The format is documented in docs/static-topology.md.
// js-yaml parses about ten times faster than yaml, and parsing sits between an edit and the push.
import { load as parseYaml } from 'js-yaml';
import { loadYamlChunked, type ChunkCache } from './yamlChunks.ts';
import { ConfigError, parseInteger, parseMeshConfig, parseProtocol, type ResourceSpec } from '../../shared/meshConfig.ts';
import { isLoopbackAddress } from '../../shared/loopbackAndListenPorts.ts';
import type { Endpoint } from '../../shared/snapshot.ts';
import { PLUGIN_ID } from './names.ts';
import { appKey, routeKey, serviceKey, type App, type GatewayRoute, type Service, type ServicePort, type Topology } from './model.ts';
import { routeProblems } from '../gateway/validate.ts';
import { appsAffectedByRoutes } from '../gateway/compile.ts';

const NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const HOST = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/i;
const IPV4 = /^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function list(v: unknown, where: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ConfigError(`${where} must be a list`);
  return v;
}

function name(v: unknown, where: string): string {
  if (typeof v !== 'string' || !NAME.test(v)) throw new ConfigError(`${where}=${JSON.stringify(v)}: expected a lower-case DNS label`);
  return v;
}

function bool(v: unknown, where: string, fallback: boolean): boolean {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean') throw new ConfigError(`${where}=${JSON.stringify(v)}: expected true or false`);
  return v;
}

// Kubernetes label values (a zone) and node names (DNS subdomains), as the API server checks them.
const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$/;
const NODE_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
export const TRAFFIC_DISTRIBUTIONS = ['PreferClose', 'PreferSameZone', 'PreferSameNode'] as const;
export type TrafficDistribution = (typeof TRAFFIC_DISTRIBUTIONS)[number];

function zoneName(v: unknown, where: string): string {
  if (typeof v !== 'string' || !LABEL_VALUE.test(v))
    throw new ConfigError(
      `${where}=${JSON.stringify(v)}: expected a zone name (a Kubernetes label value: letters, digits, '-', '_', '.', at most 63)`,
    );
  return v;
}

function nodeName(v: unknown, where: string): string {
  if (typeof v !== 'string' || !NODE_NAME.test(v))
    throw new ConfigError(`${where}=${JSON.stringify(v)}: expected a node name (a lower-case DNS subdomain)`);
  return v;
}

/** hints.forZones / hints.forNodes: names, or { name } objects as in an EndpointSlice. */
function hintList(v: unknown, where: string, check: (x: unknown, where: string) => string): string[] {
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError(`${where}: expected a non-empty list of names`);
  const out = v.map((x, i) => {
    if (isObject(x)) {
      checkKeys(x, ['name'], `${where}[${i}]`);
      return check(x.name, `${where}[${i}].name`);
    }
    return check(x, `${where}[${i}]`);
  });
  return [...new Set(out)];
}

function parseHints(v: unknown, where: string): { forZones?: string[]; forNodes?: string[] } {
  if (!isObject(v)) throw new ConfigError(`${where}: expected an object with forZones and/or forNodes`);
  checkKeys(v, ['forZones', 'forNodes'], where);
  const out: { forZones?: string[]; forNodes?: string[] } = {};
  if (v.forZones !== undefined) out.forZones = hintList(v.forZones, `${where}.forZones`, zoneName);
  if (v.forNodes !== undefined) out.forNodes = hintList(v.forNodes, `${where}.forNodes`, nodeName);
  return out;
}

function checkKeys(obj: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw new ConfigError(`${where}: unknown field ${k}; expected ${allowed.join(', ')}`);
  }
}

function parseEndpoint(raw: unknown, svc: { where: string; ports: ServicePort[] }, index: number): Map<number, Endpoint> {
  const where = `${svc.where}, endpoints[${index}]`;
  let address: string;
  const targets = new Map<number, number>();
  let weight = 1;
  let zone = '';
  let node = '';
  let hints: { forZones?: string[]; forNodes?: string[] } | null = null;
  let ready = true;
  let serving = true;
  let terminating = false;
  if (typeof raw === 'string') {
    const m = /^([^:]+)(?::([0-9]+))?$/.exec(raw.trim());
    if (!m) throw new ConfigError(`${where}=${JSON.stringify(raw)}: expected address or address:port`);
    address = m[1];
    if (m[2] !== undefined) {
      if (svc.ports.length !== 1)
        throw new ConfigError(`${where}=${JSON.stringify(raw)}: the service has ${svc.ports.length} ports; give a ports map`);
      targets.set(svc.ports[0].port, parseInteger(m[2], `${where}: port`, 1, 65535));
    }
  } else if (isObject(raw)) {
    checkKeys(raw, ['address', 'port', 'ports', 'weight', 'zone', 'node', 'hints', 'ready', 'serving', 'terminating'], where);
    if (typeof raw.address !== 'string') throw new ConfigError(`${where}: address is required`);
    address = raw.address;
    if (raw.port !== undefined) {
      if (svc.ports.length !== 1)
        throw new ConfigError(`${where}: the service has ${svc.ports.length} ports; give a ports map instead of port`);
      targets.set(svc.ports[0].port, parseInteger(raw.port, `${where}: port=${JSON.stringify(raw.port)}`, 1, 65535));
    }
    if (raw.ports !== undefined) {
      if (!isObject(raw.ports)) throw new ConfigError(`${where}: ports must map a service port to the endpoint's port`);
      for (const [k, v] of Object.entries(raw.ports)) {
        const sp = parseInteger(k, `${where}: ports key ${k}`, 1, 65535);
        if (!svc.ports.some((p) => p.port === sp)) throw new ConfigError(`${where}: ports names ${sp}, which the service does not have`);
        targets.set(sp, parseInteger(v, `${where}: ports.${k}=${JSON.stringify(v)}`, 1, 65535));
      }
    }
    if (raw.weight !== undefined) weight = parseInteger(raw.weight, `${where}: weight=${JSON.stringify(raw.weight)}`, 1, 1000000);
    if (raw.zone !== undefined) zone = zoneName(raw.zone, `${where}: zone`);
    if (raw.node !== undefined) node = nodeName(raw.node, `${where}: node`);
    if (raw.hints !== undefined) hints = parseHints(raw.hints, `${where}: hints`);
    ready = bool(raw.ready, `${where}: ready`, true);
    serving = bool(raw.serving, `${where}: serving`, ready);
    terminating = bool(raw.terminating, `${where}: terminating`, false);
  } else {
    throw new ConfigError(`${where}: expected "address:port" or an object with address`);
  }
  if (!IPV4.test(address) && !HOST.test(address))
    throw new ConfigError(`${where}: address ${JSON.stringify(address)} is not an IPv4 address or host name`);
  const out = new Map<number, Endpoint>();
  for (const p of svc.ports) {
    const ep: Endpoint = { address, port: targets.get(p.port) ?? p.port, weight, zone, ready, serving, terminating };
    if (node !== '') ep.node = node;
    if (hints?.forZones) ep.forZones = hints.forZones;
    if (hints?.forNodes) ep.forNodes = hints.forNodes;
    out.set(p.port, ep);
  }
  return out;
}

/**
 * What the EndpointSlice controller does for trafficDistribution, for endpoints that give no hints of
 * their own: PreferSameZone (and its older name PreferClose) hints each endpoint for its own zone, when
 * every endpoint has one; PreferSameNode also hints each for its own node, when every endpoint has one.
 */
function deriveHints(endpoints: Endpoint[], mode: TrafficDistribution): void {
  const bare = endpoints.filter((e) => e.forZones === undefined && e.forNodes === undefined);
  if (bare.length === 0) return;
  if (bare.every((e) => e.zone !== '')) for (const e of bare) e.forZones = [e.zone];
  if (mode === 'PreferSameNode' && bare.every((e) => e.node !== undefined)) for (const e of bare) e.forNodes = [e.node!];
}

function parseService(raw: unknown, index: number): Service {
  const at = `services[${index}]`;
  if (!isObject(raw)) throw new ConfigError(`${at} must be an object`);
  checkKeys(raw, ['name', 'namespace', 'address', 'ports', 'endpoints', 'trafficDistribution'], at);
  const svcName = name(raw.name, `${at}.name`);
  const namespace = raw.namespace === undefined ? 'default' : name(raw.namespace, `${at}.namespace`);
  const where = `service ${namespace}/${svcName}`;
  let address: string | null = null;
  if (raw.address !== undefined && raw.address !== null) {
    if (typeof raw.address !== 'string' || !isLoopbackAddress(raw.address) || raw.address === '127.0.0.1') {
      throw new ConfigError(
        `${where}: address=${JSON.stringify(raw.address)}: expected a loopback address in 127.0.0.0/8 other than 127.0.0.1`,
      );
    }
    address = raw.address;
  }
  const ports: ServicePort[] = [];
  for (const [i, p] of list(raw.ports, `${where}: ports`).entries()) {
    const pw = `${where}, ports[${i}]`;
    const entry = typeof p === 'number' || typeof p === 'string' ? { port: p } : p;
    if (!isObject(entry)) throw new ConfigError(`${pw}: expected a port number or an object with port`);
    checkKeys(entry, ['port', 'name', 'protocol'], pw);
    const port = parseInteger(entry.port, `${pw}: port=${JSON.stringify(entry.port)}`, 1, 65535);
    if (ports.some((q) => q.port === port)) throw new ConfigError(`${pw}: port ${port} listed twice`);
    const protocol = parseProtocol(entry.protocol, pw, 'tcp');
    ports.push({ name: typeof entry.name === 'string' ? entry.name : String(port), port, protocol });
  }
  if (ports.length === 0) throw new ConfigError(`${where}: needs at least one port`);
  let trafficDistribution: TrafficDistribution | null = null;
  if (raw.trafficDistribution !== undefined && raw.trafficDistribution !== null) {
    if (!TRAFFIC_DISTRIBUTIONS.includes(raw.trafficDistribution as TrafficDistribution)) {
      throw new ConfigError(
        `${where}: trafficDistribution=${JSON.stringify(raw.trafficDistribution)}: expected one of ${TRAFFIC_DISTRIBUTIONS.join(', ')}`,
      );
    }
    trafficDistribution = raw.trafficDistribution as TrafficDistribution;
  }
  const endpoints = new Map<number, Endpoint[]>(ports.map((p) => [p.port, []]));
  for (const [i, e] of list(raw.endpoints, `${where}: endpoints`).entries()) {
    for (const [port, ep] of parseEndpoint(e, { where, ports }, i)) endpoints.get(port)!.push(ep);
  }
  if (trafficDistribution !== null) for (const eps of endpoints.values()) deriveHints(eps, trafficDistribution);
  return { namespace, name: svcName, address, ports, endpoints };
}

function parseApp(raw: unknown, index: number): App {
  const at = `apps[${index}]`;
  if (!isObject(raw)) throw new ConfigError(`${at} must be an object`);
  checkKeys(raw, ['name', 'namespace', 'pluginId', 'config'], at);
  const appName = name(raw.name, `${at}.name`);
  const namespace = raw.namespace === undefined ? 'default' : name(raw.namespace, `${at}.namespace`);
  const pluginId = raw.pluginId === undefined ? 'mesh' : String(raw.pluginId);
  if (!PLUGIN_ID.test(pluginId))
    throw new ConfigError(`app ${namespace}/${appName}: pluginId=${JSON.stringify(pluginId)} is not a valid id`);
  const spec = (raw.config ?? {}) as ResourceSpec;
  const config = parseMeshConfig(spec, namespace, appName);
  return { namespace, name: appName, pluginId, spec, config };
}

/**
 * One entry of `routes:`: an HTTPRoute or GRPCRoute as applied to Kubernetes (apiVersion, kind, metadata,
 * spec; the namespace defaults to default). Checked as the API server and shoal would (discover/gateway/
 * validate.ts): anything wrong refuses the file, naming the route and the field.
 */
function parseRoute(raw: unknown, index: number): GatewayRoute {
  const at = `routes[${index}]`;
  if (!isObject(raw)) throw new ConfigError(`${at} must be an object (an HTTPRoute or GRPCRoute)`);
  checkKeys(raw, ['apiVersion', 'kind', 'metadata', 'spec'], at);
  if (!isObject(raw.metadata)) throw new ConfigError(`${at}.metadata: expected an object with name`);
  checkKeys(raw.metadata, ['name', 'namespace', 'labels', 'annotations', 'creationTimestamp', 'generation'], `${at}.metadata`);
  const md = raw.metadata;
  const namespace = md.namespace === undefined ? 'default' : md.namespace;
  let created: string | undefined;
  if (md.creationTimestamp !== undefined) {
    // YAML reads an unquoted timestamp as a date.
    created =
      md.creationTimestamp instanceof Date ? md.creationTimestamp.toISOString().replace(/\.000Z$/, 'Z') : String(md.creationTimestamp);
    if (Number.isNaN(Date.parse(created)))
      throw new ConfigError(`${at}.metadata.creationTimestamp=${JSON.stringify(created)}: expected an RFC 3339 time`);
  }
  const route: GatewayRoute = {
    apiVersion: raw.apiVersion as string,
    kind: raw.kind as GatewayRoute['kind'],
    metadata: {
      name: md.name as string,
      namespace: namespace as string,
      generation: typeof md.generation === 'number' ? md.generation : 1,
      ...(created !== undefined ? { creationTimestamp: created } : {}),
    },
    spec: raw.spec as Record<string, unknown>,
  };
  const problems = routeProblems(route);
  if (problems.length > 0) {
    const what = typeof md.name === 'string' ? `${String(raw.kind)} ${String(namespace)}/${md.name}` : at;
    throw new ConfigError(
      `route ${what} (${at}): ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more: ${problems.slice(1, 4).join('; ')})` : ''}`,
    );
  }
  return route;
}

/**
 * What one parse leaves for the next: each entry's parsed form, keyed by its raw JSON. An entry
 * that did not change is not checked again and comes back as the same object, so a caller can
 * tell changed services and apps apart by identity (parsed entries are never mutated).
 */
export interface ParseMemo {
  services: Map<string, Service>;
  apps: Map<string, App>;
  /** Parsed routes by their raw JSON (absent in a memo made before routes existed). */
  routes?: Map<string, GatewayRoute>;
  /** The file's pieces as loadYamlChunked parsed them: an unchanged item comes back as the same raw object. */
  chunks: ChunkCache;
}

/** Each raw entry's JSON, for the memo's keys: an entry reused from the chunk cache is not serialized again. */
const rawKeys = new WeakMap<object, string>();
function rawKeyOf(raw: unknown): string {
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- JSON.stringify returns undefined for undefined, functions and symbols
  if (typeof raw !== 'object' || raw === null) return JSON.stringify(raw) ?? '';
  let key = rawKeys.get(raw);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- JSON.stringify returns undefined for undefined, functions and symbols
  if (key === undefined) rawKeys.set(raw, (key = JSON.stringify(raw) ?? ''));
  return key;
}

/** Parses the topology YAML. Throws ConfigError naming where the file is wrong. */
export function parseStaticTopology(text: string): Topology {
  return parseStaticTopologyWith(text).topology;
}

/** parseStaticTopology, reusing the entries of an earlier parse (`memo`) that did not change. */
export function parseStaticTopologyWith(text: string, memo?: ParseMemo): { topology: Topology; memo: ParseMemo } {
  const chunks: ChunkCache = new Map();
  let doc: unknown = loadYamlChunked(text, memo?.chunks, chunks);
  if (doc === null) {
    chunks.clear();
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new ConfigError(`topology is not valid YAML: ${(err as Error).message}`);
    }
  }
  if (doc === null || doc === undefined) doc = {};
  if (!isObject(doc)) throw new ConfigError('topology must be a mapping with services and apps');
  checkKeys(doc, ['clusterDomain', 'services', 'apps', 'routes'], 'topology');
  const clusterDomain = doc.clusterDomain === undefined ? 'cluster.local' : String(doc.clusterDomain).replace(/\.$/, '').toLowerCase();
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(clusterDomain))
    throw new ConfigError(`topology: clusterDomain ${JSON.stringify(doc.clusterDomain)} is not a domain`);
  const next: ParseMemo = { services: new Map(), apps: new Map(), routes: new Map(), chunks };
  const services = new Map<string, Service>();
  for (const [i, raw] of list(doc.services, 'services').entries()) {
    const rawKey = rawKeyOf(raw);
    const svc = next.services.get(rawKey) ?? memo?.services.get(rawKey) ?? parseService(raw, i);
    next.services.set(rawKey, svc);
    const key = serviceKey(svc.namespace, svc.name);
    if (services.has(key)) throw new ConfigError(`service ${key} is listed twice`);
    services.set(key, svc);
  }
  const pinned = new Map<string, string>();
  for (const svc of services.values()) {
    if (svc.address === null) continue;
    const other = pinned.get(svc.address);
    if (other) throw new ConfigError(`service ${svc.namespace}/${svc.name}: address ${svc.address} is already pinned by ${other}`);
    pinned.set(svc.address, `${svc.namespace}/${svc.name}`);
  }
  const apps = new Map<string, App>();
  for (const [i, raw] of list(doc.apps, 'apps').entries()) {
    const rawKey = rawKeyOf(raw);
    const app = next.apps.get(rawKey) ?? memo?.apps.get(rawKey) ?? parseApp(raw, i);
    next.apps.set(rawKey, app);
    const key = appKey(app.namespace, app.name);
    if (apps.has(key)) throw new ConfigError(`app ${key} is listed twice`);
    apps.set(key, app);
  }
  const routes = new Map<string, GatewayRoute>();
  for (const [i, raw] of list(doc.routes, 'routes').entries()) {
    const rawKey = rawKeyOf(raw);
    const route = next.routes!.get(rawKey) ?? memo?.routes?.get(rawKey) ?? parseRoute(raw, i);
    next.routes!.set(rawKey, route);
    const key = routeKey(route.kind, route.metadata.namespace, route.metadata.name);
    if (routes.has(key)) throw new ConfigError(`route ${key} is listed twice`);
    routes.set(key, route);
  }
  const topology: Topology = { clusterDomain, services, apps };
  if (routes.size > 0) topology.routes = routes;
  return { topology, memo: next };
}

/**
 * The apps whose snapshots an edit from `prev` to `next` can change: apps added, removed or edited,
 * and apps depending on a service (or on an app, whose readers shape identity) that was. Relies on
 * unchanged entries being the same objects (parseStaticTopologyWith). Undefined: rebuild them all.
 */
export function affectedApps(prev: Topology | null, next: Topology): Set<string> | undefined {
  if (prev === null || prev.clusterDomain !== next.clusterDomain) return undefined;
  const affected = new Set<string>();
  const changed = new Set<string>();
  for (const [k, s] of next.services) if (prev.services.get(k) !== s) changed.add(k);
  for (const k of prev.services.keys()) if (!next.services.has(k)) changed.add(k);
  for (const [k, a] of next.apps)
    if (prev.apps.get(k) !== a) {
      affected.add(k);
      changed.add(k);
    }
  for (const k of prev.apps.keys())
    if (!next.apps.has(k)) {
      affected.add(k);
      changed.add(k);
    }
  // Gateway API routes: callers of the Services whose routes changed, or whose routes send to a changed Service.
  for (const k of appsAffectedByRoutes(prev, next, changed)) affected.add(k);
  if (changed.size === 0) return affected;
  for (const [k, a] of next.apps) {
    if (affected.has(k)) continue;
    for (const d of a.config.dependencies) {
      if (changed.has(serviceKey(d.namespace, d.service))) {
        affected.add(k);
        break;
      }
    }
  }
  return affected;
}
