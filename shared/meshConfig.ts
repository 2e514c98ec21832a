// The per-app mesh config, the ResourceSpec of the earlier mesh shoal replaces (docs/static-topology.md, "The mesh
// config format"), and its parsing into typed values with defaults. Option values may arrive as strings ("80").
import type { HeaderMatch, LbPolicy, Protocol } from './snapshot.ts';
import { parseAuthzPolicy, type AuthzPolicy } from './authzPolicy.ts';
import { parseMtlsMode, type MtlsMode } from './identity.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type OptionValue = string | number | boolean;

export interface ResourceSpec {
  base_ports?: Array<{ port: number | string; listen_port?: number | string; protocol?: string; options?: Record<string, OptionValue> }>;
  base_services?: Array<{ depend_service_alias: string; port: number | string; protocol?: string; options?: Record<string, OptionValue> }>;
  base_normal?: { options?: Record<string, OptionValue> };
}

const optionValueSchema = { anyOf: [{ type: 'string' }, { type: 'number' }, { type: 'boolean' }] } as const;
const portValueSchema = {
  anyOf: [
    { type: 'integer', minimum: 1, maximum: 65535 },
    { type: 'string', pattern: '^[0-9]+$' },
  ],
} as const;

export const resourceSpecSchema = {
  $id: 'shoal/resourceSpec',
  title: 'ResourceSpec',
  description:
    'One app\'s mesh config (the ResourceSpec format: docs/static-topology.md, "The mesh config format"). Option values may be strings or typed values.',
  type: 'object',
  properties: {
    base_ports: {
      type: 'array',
      items: {
        type: 'object',
        required: ['port'],
        properties: {
          port: portValueSchema,
          listen_port: portValueSchema,
          protocol: { type: 'string' },
          options: { type: 'object', additionalProperties: optionValueSchema },
        },
      },
    },
    base_services: {
      type: 'array',
      items: {
        type: 'object',
        required: ['depend_service_alias', 'port'],
        properties: {
          depend_service_alias: { type: 'string', minLength: 1 },
          port: portValueSchema,
          protocol: { type: 'string' },
          options: { type: 'object', additionalProperties: optionValueSchema },
        },
      },
    },
    base_normal: {
      type: 'object',
      properties: { options: { type: 'object', additionalProperties: optionValueSchema } },
    },
  },
} as const;

export interface DependencyOptions {
  domains: string[];
  prefix: string;
  headers: HeaderMatch[];
  weight: number;
  lbPolicy: LbPolicy;
  hashHeader: string;
  requestTimeoutMs: number;
  /** Bound on one attempt (time to its response head); 0: an attempt may use all of requestTimeoutMs that is left. */
  perTryTimeoutMs: number;
  retryAttempts: number;
  maxActiveRetries: number;
  maxConnections: number;
  maxRequests: number;
  maxPendingRequests: number;
  maxRequestsPerConnection: number;
  consecutiveErrors: number;
  baseEjectionTimeMs: number;
  maxEjectionPercent: number;
  intervalMs: number;
  healthyPanicThreshold: number;
  connectTimeoutMs: number;
  tcpIdleTimeoutS: number;
  /** Retry POST and other non-idempotent methods after the request was sent (never once a body was sent). */
  retryNonIdempotent: boolean;
}

export interface Dependency {
  service: string;
  namespace: string;
  port: number;
  protocol: Protocol;
  options: DependencyOptions;
}

export interface InboundPort {
  port: number;
  listenPort: number | null;
  protocol: Protocol;
  limits: { rps: number; burst: number; connections: number };
  /** Port option ALLOW (docs/identity.md); absent: everyone may connect. */
  authz?: AuthzPolicy;
}

export interface MeshConfig {
  ports: InboundPort[];
  dependencies: Dependency[];
  env: Record<string, string>;
  /** base_normal option MTLS_MODE; absent: the mesh default (discover --mtls-mode). */
  mtlsMode?: MtlsMode;
  /** base_normal option LOCALITY_FAILOVER [NO]: without topology hints, prefer endpoints in the sidecar's zone, then any. */
  localityFailover?: boolean;
}

type Kind = 'int' | 'list' | 'prefix' | 'headers' | 'lb' | 'string' | 'flag';
interface OptionSpec {
  key: keyof DependencyOptions;
  kind: Kind;
  min?: number;
  max?: number;
}

// Option name (the earlier mesh's) -> typed field. Units are what the name says; ConnectionTimeout is read as ms.
const DEPENDENCY_OPTIONS: Record<string, OptionSpec> = {
  Domains: { key: 'domains', kind: 'list' },
  Prefix: { key: 'prefix', kind: 'prefix' },
  Headers: { key: 'headers', kind: 'headers' },
  Weight: { key: 'weight', kind: 'int', min: 0, max: 10000 },
  LBPolicy: { key: 'lbPolicy', kind: 'lb' },
  HashHeader: { key: 'hashHeader', kind: 'string' },
  RequestTimeoutMS: { key: 'requestTimeoutMs', kind: 'int', min: 1 },
  PerTryTimeoutMS: { key: 'perTryTimeoutMs', kind: 'int', min: 0 },
  RetryAttempts: { key: 'retryAttempts', kind: 'int', min: 0, max: 10 },
  MaxActiveRetries: { key: 'maxActiveRetries', kind: 'int', min: 0 },
  MaxConnections: { key: 'maxConnections', kind: 'int', min: 1 },
  MaxRequests: { key: 'maxRequests', kind: 'int', min: 1 },
  MaxPendingRequests: { key: 'maxPendingRequests', kind: 'int', min: 0 },
  MaxRequestsPerConnection: { key: 'maxRequestsPerConnection', kind: 'int', min: 0 },
  ConsecutiveErrors: { key: 'consecutiveErrors', kind: 'int', min: 1 },
  BaseEjectionTimeMS: { key: 'baseEjectionTimeMs', kind: 'int', min: 0 },
  MaxEjectionPercent: { key: 'maxEjectionPercent', kind: 'int', min: 0, max: 100 },
  IntervalMS: { key: 'intervalMs', kind: 'int', min: 1 },
  HealthyPanicThreshold: { key: 'healthyPanicThreshold', kind: 'int', min: 0, max: 100 },
  ConnectionTimeoutMS: { key: 'connectTimeoutMs', kind: 'int', min: 1 },
  ConnectionTimeout: { key: 'connectTimeoutMs', kind: 'int', min: 1 },
  TCPIdleTimeout: { key: 'tcpIdleTimeoutS', kind: 'int', min: 1 },
  RetryNonIdempotent: { key: 'retryNonIdempotent', kind: 'flag' },
};

export function defaultDependencyOptions(): DependencyOptions {
  return {
    domains: [],
    prefix: '/',
    headers: [],
    weight: 100,
    lbPolicy: 'least_request',
    hashHeader: '',
    requestTimeoutMs: 15000,
    perTryTimeoutMs: 0,
    retryAttempts: 2,
    maxActiveRetries: 3,
    maxConnections: 10240,
    maxRequests: 10240,
    maxPendingRequests: 1024,
    maxRequestsPerConnection: 0,
    consecutiveErrors: 5,
    baseEjectionTimeMs: 30000,
    maxEjectionPercent: 10,
    intervalMs: 10000,
    healthyPanicThreshold: 50,
    connectTimeoutMs: 250,
    tcpIdleTimeoutS: 7200,
    retryNonIdempotent: false,
  };
}

/**
 * Bounds on one app's mesh config. Each dependency becomes a cluster, listeners, routes and DNS
 * names in the app's snapshot, which discover keeps in memory and every sidecar of the app holds:
 * an unbounded config lets one writer grow them all (docs/static-topology.md, "Limits").
 */
export const MESH_CONFIG_LIMITS = {
  /** base_ports entries. */
  ports: 100,
  /** base_services entries. */
  dependencies: 1000,
  /** Domains entries over all of the app's dependencies (each can add a route and a DNS name). */
  domains: 1000,
  /** Headers matches of one dependency. */
  headers: 32,
} as const;

const INBOUND_OPTIONS = ['OPEN_LIMIT', 'LIMIT_RPS', 'LIMIT_BURST', 'LIMIT_CONNECTIONS', 'ALLOW'];
const LB_POLICIES: readonly LbPolicy[] = ['least_request', 'round_robin', 'random', 'hash'];
const PROTOCOL_ALIASES: Record<string, Protocol> = {
  http: 'http',
  'http/1.1': 'http',
  http2: 'http2',
  h2c: 'http2',
  grpc: 'grpc',
  tcp: 'tcp',
  mysql: 'tcp',
  redis: 'tcp',
};
const SERVICE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DOMAIN = /^(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/;

function show(value: unknown): string {
  return JSON.stringify(value);
}

export function parseInteger(value: unknown, where: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\s*-?[0-9]+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n)) throw new ConfigError(`${where}: expected an integer`);
  if (n < min || n > max) throw new ConfigError(`${where}: expected an integer from ${min} to ${max}`);
  return n;
}

export function parseProtocol(value: unknown, where: string, fallback: Protocol): Protocol {
  if (value === undefined || value === null || value === '') return fallback;
  const p = typeof value === 'string' ? PROTOCOL_ALIASES[value.toLowerCase()] : undefined;
  if (!p) throw new ConfigError(`${where}: invalid protocol ${show(value)}: expected one of http, http2, grpc, tcp`);
  return p;
}

function parseHeaders(value: OptionValue, where: string): HeaderMatch[] {
  if (typeof value !== 'string') throw new ConfigError(`${where}: expected "name:value;name2:value2"`);
  const out: HeaderMatch[] = [];
  for (const pair of value.split(';')) {
    if (pair.trim() === '') continue;
    const colon = pair.indexOf(':');
    const name = colon > 0 ? pair.slice(0, colon).trim().toLowerCase() : '';
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) throw new ConfigError(`${where}: header pair ${show(pair)} is not name:value`);
    out.push({ name, value: pair.slice(colon + 1).trim() });
  }
  return out;
}

function parseDependencyOption(opts: DependencyOptions, name: string, value: OptionValue, where: string): void {
  const spec = DEPENDENCY_OPTIONS[name];
  const at = `${where}: invalid option ${name}=${show(value)}`;
  if (!spec) {
    throw new ConfigError(`${where}: unknown option ${name}; known options: ${Object.keys(DEPENDENCY_OPTIONS).join(', ')}`);
  }
  switch (spec.kind) {
    case 'int':
      (opts[spec.key] as number) = parseInteger(value, at, spec.min, spec.max);
      return;
    case 'list': {
      const domains = String(value)
        .split(',')
        .map((d) => d.trim().toLowerCase().replace(/\.$/, ''))
        .filter((d) => d !== '');
      for (const d of domains) {
        if (d !== '*' && !DOMAIN.test(d)) throw new ConfigError(`${at}: ${show(d)} is not a domain name`);
      }
      opts.domains = [...new Set(domains)];
      return;
    }
    case 'prefix':
      if (typeof value !== 'string' || !value.startsWith('/')) throw new ConfigError(`${at}: expected a path starting with /`);
      opts.prefix = value;
      return;
    case 'headers':
      opts.headers = parseHeaders(value, at);
      if (opts.headers.length > MESH_CONFIG_LIMITS.headers)
        throw new ConfigError(`${at}: ${opts.headers.length} header matches; at most ${MESH_CONFIG_LIMITS.headers} are allowed`);
      return;
    case 'lb': {
      const lb = String(value).toLowerCase() as LbPolicy;
      if (!LB_POLICIES.includes(lb)) throw new ConfigError(`${at}: expected one of ${LB_POLICIES.join(', ')}`);
      opts.lbPolicy = lb;
      return;
    }
    case 'string':
      opts.hashHeader = String(value).trim().toLowerCase();
      return;
    case 'flag':
      opts.retryNonIdempotent = parseFlag(value, at);
      return;
  }
}

function parseFlag(value: OptionValue, where: string): boolean {
  const v = String(value).trim().toLowerCase();
  if (v === 'yes' || v === 'true' || v === '1') return true;
  if (v === 'no' || v === 'false' || v === '0' || v === '') return false;
  throw new ConfigError(`${where}: expected YES or NO`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionsOf(value: unknown, where: string): Record<string, OptionValue> {
  if (value === undefined || value === null) return {};
  if (!isObject(value)) throw new ConfigError(`${where}: options must be an object`);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new ConfigError(`${where}: option ${k} must be a string, number or boolean`);
    }
  }
  return value as Record<string, OptionValue>;
}

/** Parses one app's mesh config. Errors name the app, the dependency or port, the option and what was expected. */
export function parseMeshConfig(raw: unknown, namespace: string, app: string): MeshConfig {
  const appWhere = `app ${namespace}/${app}`;
  if (!isObject(raw)) throw new ConfigError(`${appWhere}: mesh config must be an object with base_ports, base_services, base_normal`);
  const ports: InboundPort[] = [];
  const seenPorts = new Set<number>();
  const basePorts = raw.base_ports ?? [];
  if (!Array.isArray(basePorts)) throw new ConfigError(`${appWhere}: base_ports must be a list`);
  if (basePorts.length > MESH_CONFIG_LIMITS.ports)
    throw new ConfigError(`${appWhere}: base_ports has ${basePorts.length} entries; at most ${MESH_CONFIG_LIMITS.ports} are allowed`);
  for (const [i, entry] of basePorts.entries()) {
    if (!isObject(entry)) throw new ConfigError(`${appWhere}: base_ports[${i}] must be an object`);
    const port = parseInteger(entry.port, `${appWhere}: base_ports[${i}].port=${show(entry.port)}`, 1, 65535);
    const where = `${appWhere}, port ${port}`;
    if (seenPorts.has(port)) throw new ConfigError(`${where}: listed twice in base_ports`);
    seenPorts.add(port);
    const listenPort =
      entry.listen_port === undefined || entry.listen_port === null || entry.listen_port === ''
        ? null
        : parseInteger(entry.listen_port, `${where}: invalid listen_port=${show(entry.listen_port)}`, 65301, 65400);
    const options = optionsOf(entry.options, where);
    for (const k of Object.keys(options)) {
      if (!INBOUND_OPTIONS.includes(k))
        throw new ConfigError(`${where}: unknown option ${k}; known options: ${INBOUND_OPTIONS.join(', ')}`);
    }
    const limitsSet = options.LIMIT_RPS !== undefined || options.LIMIT_BURST !== undefined || options.LIMIT_CONNECTIONS !== undefined;
    // OPEN_LIMIT defaults to NO, but a LIMIT_* value with no OPEN_LIMIT at all is taken as meant.
    const open =
      options.OPEN_LIMIT === undefined
        ? limitsSet
        : parseFlag(options.OPEN_LIMIT, `${where}: invalid option OPEN_LIMIT=${show(options.OPEN_LIMIT)}`);
    const limit = (name: string) =>
      options[name] === undefined ? 0 : parseInteger(options[name], `${where}: invalid option ${name}=${show(options[name])}`, 0);
    const rps = limit('LIMIT_RPS');
    const connections = limit('LIMIT_CONNECTIONS');
    const burst = options.LIMIT_BURST === undefined ? rps : limit('LIMIT_BURST');
    const protocol = parseProtocol(entry.protocol, where, 'http');
    const inboundPort: InboundPort = {
      port,
      listenPort,
      protocol,
      limits: open ? { rps, burst, connections } : { rps: 0, burst: 0, connections: 0 },
    };
    if (options.ALLOW !== undefined) {
      try {
        // HTTP/2 and gRPC ports decide per request too (proxy/h2): methods and paths allowed on every port but tcp.
        inboundPort.authz = parseAuthzPolicy(String(options.ALLOW), `${where}: invalid option ALLOW`, protocol !== 'tcp');
      } catch (err) {
        throw new ConfigError((err as Error).message);
      }
    }
    ports.push(inboundPort);
  }

  const dependencies: Dependency[] = [];
  const seenDeps = new Set<string>();
  const baseServices = raw.base_services ?? [];
  if (!Array.isArray(baseServices)) throw new ConfigError(`${appWhere}: base_services must be a list`);
  if (baseServices.length > MESH_CONFIG_LIMITS.dependencies)
    throw new ConfigError(
      `${appWhere}: base_services has ${baseServices.length} entries; at most ${MESH_CONFIG_LIMITS.dependencies} are allowed`,
    );
  let domains = 0;
  for (const [i, entry] of baseServices.entries()) {
    if (!isObject(entry)) throw new ConfigError(`${appWhere}: base_services[${i}] must be an object`);
    const alias = typeof entry.depend_service_alias === 'string' ? entry.depend_service_alias.trim().toLowerCase() : '';
    const [service, otherNamespace, extra] = alias.split('.');
    if (
      !service ||
      !SERVICE_NAME.test(service) ||
      extra !== undefined ||
      (otherNamespace !== undefined && !SERVICE_NAME.test(otherNamespace))
    ) {
      throw new ConfigError(
        `${appWhere}: base_services[${i}].depend_service_alias=${show(entry.depend_service_alias)}: expected a service name or name.namespace`,
      );
    }
    const port = parseInteger(entry.port, `${appWhere}, dependency ${alias}: invalid port=${show(entry.port)}`, 1, 65535);
    const where = `${appWhere}, dependency ${alias}:${port}`;
    if (seenDeps.has(`${alias}:${port}`)) throw new ConfigError(`${where}: listed twice in base_services`);
    seenDeps.add(`${alias}:${port}`);
    const protocol = parseProtocol(entry.protocol, where, 'http');
    const opts = defaultDependencyOptions();
    for (const [name, value] of Object.entries(optionsOf(entry.options, where))) parseDependencyOption(opts, name, value, where);
    if (opts.lbPolicy === 'hash' && opts.hashHeader === '')
      throw new ConfigError(`${where}: invalid option LBPolicy="hash": needs HashHeader`);
    if (protocol === 'tcp' && (opts.prefix !== '/' || opts.headers.length > 0)) {
      throw new ConfigError(
        `${where}: invalid option ${opts.prefix !== '/' ? 'Prefix' : 'Headers'}: tcp dependencies cannot route by path or header`,
      );
    }
    domains += opts.domains.length;
    if (domains > MESH_CONFIG_LIMITS.domains)
      throw new ConfigError(
        `${where}: invalid option Domains: the app's dependencies name more than ${MESH_CONFIG_LIMITS.domains} domains in all`,
      );
    dependencies.push({ service, namespace: otherNamespace ?? namespace, port, protocol, options: opts });
  }

  const env: Record<string, string> = {};
  let mtlsMode: MtlsMode | undefined;
  let localityFailover = false;
  const normal = raw.base_normal;
  if (normal !== undefined && normal !== null) {
    if (!isObject(normal)) throw new ConfigError(`${appWhere}: base_normal must be an object`);
    for (const [k, v] of Object.entries(optionsOf(normal.options, `${appWhere}, base_normal`))) {
      if (k === 'MTLS_MODE') {
        try {
          mtlsMode = parseMtlsMode(v, `${appWhere}: invalid option MTLS_MODE=${show(v)}`);
        } catch (err) {
          throw new ConfigError((err as Error).message);
        }
      } else if (k === 'LOCALITY_FAILOVER') {
        localityFailover = parseFlag(v, `${appWhere}: invalid option LOCALITY_FAILOVER=${show(v)}`);
      } else env[k] = String(v);
    }
  }
  const config: MeshConfig = mtlsMode === undefined ? { ports, dependencies, env } : { ports, dependencies, env, mtlsMode };
  if (localityFailover) config.localityFailover = true;
  return config;
}
