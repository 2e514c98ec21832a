// The snapshot: everything one app's sidecar needs, precomputed by discover.
// The JSON schema below is the documentation of its shape. After changing it, regenerate the validator the
// sidecar uses: node scripts/generateSnapshotValidator.ts (test/shared/snapshotValidate.test.ts checks).
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { authzPolicySchema, type AuthzPolicy } from './authzPolicy.ts';
import type { MtlsMode } from './identity.ts';
import { schemaHash as generatedSchemaHash, validate as generatedValidate } from './snapshotValidate.generated.ts';

export const SNAPSHOT_SCHEMA_VERSION = 1;

export type Protocol = 'http' | 'http2' | 'grpc' | 'tcp';
export type ListenerMode = 'l4' | 'l7';
export type LbPolicy = 'least_request' | 'round_robin' | 'random' | 'hash';

export interface InboundListener {
  name: string;
  listenPort: number;
  port: number;
  protocol: Protocol;
  mode: ListenerMode;
  limits: { rps: number; burst: number; connections: number };
  /** Workload identity (docs/identity.md): who may connect; absent means everyone. */
  authz?: AuthzPolicy;
}

/** absent type: Exact. Header names match case-insensitively; RegularExpression values match the whole value. */
export interface HeaderMatch {
  name: string;
  value: string;
  type?: 'Exact' | 'RegularExpression';
}

/** A query parameter match (Gateway API HTTPQueryParamMatch): names match exactly (case-sensitive). */
export interface QueryMatch {
  name: string;
  value: string;
  type?: 'Exact' | 'RegularExpression';
}

/**
 * Gateway API HTTPPathMatch. PathPrefix matches whole segments ("/foo" matches "/foo" and "/foo/bar", not
 * "/foobar"); RegularExpression matches the whole path (without the query), as ECMAScript RegExp.
 */
export interface PathMatch {
  type: 'Exact' | 'PathPrefix' | 'RegularExpression';
  value: string;
}

export interface HeaderValue {
  name: string;
  value: string;
}

/** Gateway API HTTPHeaderFilter: set replaces, add appends, remove deletes (names case-insensitive). */
export interface HeaderModifier {
  set?: HeaderValue[];
  add?: HeaderValue[];
  remove?: string[];
}

/** Gateway API HTTPPathModifier. ReplacePrefixMatch replaces the part the route's PathPrefix match matched. */
export interface PathModifier {
  type: 'ReplaceFullPath' | 'ReplacePrefixMatch';
  value: string;
}

/** Gateway API HTTPRequestRedirectFilter: the sidecar answers itself; absent fields keep the request's. */
export interface RequestRedirect {
  scheme?: string;
  hostname?: string;
  port?: number;
  path?: PathModifier;
  statusCode: 301 | 302 | 303 | 307 | 308;
}

/** Gateway API HTTPURLRewriteFilter. */
export interface UrlRewrite {
  hostname?: string;
  path?: PathModifier;
}

/** Gateway API HTTPRequestMirrorFilter: a copy of the request goes to cluster; its response is dropped. */
export interface Mirror {
  cluster: string;
  /** Share of requests mirrored, 0..100 (fractions allowed: 12.5); absent: 100. */
  percent?: number;
}

/** Gateway API HTTPRouteRetry (experimental), mapped onto the sidecar's retries (and its retry budget). */
export interface RouteRetry {
  /** Response status codes that are retried (the spec's default set when the route names none: none). */
  codes: number[];
  /** Retries after the first attempt. */
  attempts: number;
  /** Wait before each retry; 0: the sidecar's own backoff. */
  backoffMs: number;
}

export interface WeightedBackend {
  cluster: string;
  weight: number;
  /**
   * The backendRef does not resolve (missing Service, port or kind): this backend's share of requests
   * gets a 500 from the sidecar (Gateway API), cluster names nothing the snapshot holds.
   */
  unresolved?: boolean;
  /** Filters of the backendRef itself, applied after the route's. */
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  mirrors?: Mirror[];
}

export interface Route {
  // Host names this route answers to; ["*"] matches any Host.
  domains: string[];
  /** String prefix of the path (mesh config). A route with `path` keeps prefix "/" and matches by `path`. */
  prefix: string;
  headers: HeaderMatch[];
  /** Empty only with `redirect`, or when the rule has no backend at all (every request then gets a 500). */
  backends: WeightedBackend[];
  // Retry non-idempotent methods (POST...) after the request was sent: on 502/503/504, resets and
  // request timeouts. Absent: false. A request whose body was already sent is never retried.
  retryNonIdempotent?: boolean;
  // From here on, Gateway API HTTPRoute/GRPCRoute rules (docs/gateway-api.md); every field is optional and
  // absent means what a mesh-config route does. discover orders routes by the spec's precedence: first match wins.
  path?: PathMatch;
  /** HTTP method, upper case. */
  method?: string;
  query?: QueryMatch[];
  requestHeaders?: HeaderModifier;
  responseHeaders?: HeaderModifier;
  redirect?: RequestRedirect;
  rewrite?: UrlRewrite;
  mirrors?: Mirror[];
  /** HTTPRouteTimeouts.request: the whole exchange, retries included; 0: no timeout. Absent: the cluster's. */
  timeoutMs?: number;
  /** HTTPRouteTimeouts.backendRequest: one attempt; absent: the cluster's per-try timeout. */
  backendTimeoutMs?: number;
  retry?: RouteRetry;
  /** Where the route came from, e.g. "HTTPRoute default/canary rule 0 match 1"; shown by shoal get. */
  source?: string;
}

export interface OutboundListener {
  name: string;
  address: string;
  port: number;
  protocol: Protocol;
  mode: ListenerMode;
  // L7: matched in order, first match wins. L4: one route whose backends split connections by weight.
  routes: Route[];
}

export interface Endpoint {
  address: string;
  port: number;
  weight: number;
  zone: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
  /** Workload identity (docs/identity.md): a sidecar listens here; the peer is reached over mutual TLS. */
  meshed?: boolean;
  /** The node the endpoint runs on (EndpointSlice nodeName); absent: unknown. */
  node?: string;
  /** EndpointSlice hints.forZones / hints.forNodes (topology-aware routing); absent: no hint. */
  forZones?: string[];
  forNodes?: string[];
}

export interface ClusterPolicy {
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  /** PerTryTimeoutMS: bound on one attempt, to its response head; absent or 0: none (an attempt may use what is left of requestTimeoutMs). */
  perTryTimeoutMs?: number;
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
  tcpIdleTimeoutS: number;
}

export interface Cluster {
  name: string;
  service: string;
  namespace: string;
  port: number;
  protocol: Protocol;
  lbPolicy: LbPolicy;
  hashHeader: string;
  policy: ClusterPolicy;
  endpoints: Endpoint[];
  /** Workload identity (docs/identity.md): SPIFFE IDs a meshed endpoint of this cluster may present. */
  peerIdentities?: string[];
  /** Without hints, prefer endpoints in the sidecar's zone, then any (base_normal LOCALITY_FAILOVER); absent: false. */
  localityFailover?: boolean;
}

export interface DnsName {
  name: string;
  address: string;
}

export interface SnapshotStatus {
  errors: string[];
}

/** Workload identity (docs/identity.md): present when discover runs the mesh CA. */
export interface SnapshotIdentity {
  trustDomain: string;
  /** The SPIFFE ID this app's sidecar is expected to hold. */
  spiffeId: string;
  mtlsMode: MtlsMode;
  /** PEM roots the sidecar trusts (more than one while the CA is rotated). */
  trustBundle: string[];
}

export interface Snapshot {
  schemaVersion: number;
  version: string;
  namespace: string;
  app: string;
  pluginId: string;
  inbound: InboundListener[];
  outbound: OutboundListener[];
  clusters: Cluster[];
  dns: DnsName[];
  status: SnapshotStatus;
  identity?: SnapshotIdentity;
}

const ipv4 = '^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$';
const portSchema = { type: 'integer', minimum: 1, maximum: 65535 } as const;
const protocolSchema = { type: 'string', enum: ['http', 'http2', 'grpc', 'tcp'] } as const;
const modeSchema = { type: 'string', enum: ['l4', 'l7'] } as const;
const nonNegative = { type: 'integer', minimum: 0 } as const;
const positive = { type: 'integer', minimum: 1 } as const;

const headerValuesSchema = {
  type: 'array',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'value'],
    properties: { name: { type: 'string', minLength: 1 }, value: { type: 'string' } },
  },
} as const;

const headerModifierSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    set: headerValuesSchema,
    add: headerValuesSchema,
    remove: { type: 'array', items: { type: 'string', minLength: 1 } },
  },
} as const;

const pathModifierSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'value'],
  properties: { type: { type: 'string', enum: ['ReplaceFullPath', 'ReplacePrefixMatch'] }, value: { type: 'string' } },
} as const;

const mirrorsSchema = {
  type: 'array',
  items: {
    type: 'object',
    additionalProperties: false,
    required: ['cluster'],
    properties: { cluster: { type: 'string', minLength: 1 }, percent: { type: 'number', minimum: 0, maximum: 100 } },
  },
} as const;

const matchTypeSchema = { type: 'string', enum: ['Exact', 'RegularExpression'] } as const;

export const routeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['domains', 'prefix', 'headers', 'backends'],
  properties: {
    domains: { type: 'array', items: { type: 'string', minLength: 1 } },
    prefix: { type: 'string', pattern: '^/' },
    headers: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'value'],
        properties: { name: { type: 'string', minLength: 1 }, value: { type: 'string' }, type: matchTypeSchema },
      },
    },
    backends: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['cluster', 'weight'],
        properties: {
          cluster: { type: 'string', minLength: 1 },
          weight: nonNegative,
          unresolved: { type: 'boolean', description: 'The ref does not resolve: its share of requests gets a 500' },
          requestHeaders: headerModifierSchema,
          responseHeaders: headerModifierSchema,
          mirrors: mirrorsSchema,
        },
      },
    },
    retryNonIdempotent: {
      type: 'boolean',
      description: 'Retry non-idempotent methods after the request was sent (502/503/504, reset, timeout); absent means false',
    },
    path: {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'value'],
      properties: { type: { type: 'string', enum: ['Exact', 'PathPrefix', 'RegularExpression'] }, value: { type: 'string', minLength: 1 } },
    },
    method: { type: 'string', pattern: '^[A-Z]+$' },
    query: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'value'],
        properties: { name: { type: 'string', minLength: 1 }, value: { type: 'string' }, type: matchTypeSchema },
      },
    },
    requestHeaders: headerModifierSchema,
    responseHeaders: headerModifierSchema,
    redirect: {
      type: 'object',
      additionalProperties: false,
      required: ['statusCode'],
      properties: {
        scheme: { type: 'string', minLength: 1 },
        hostname: { type: 'string', minLength: 1 },
        port: portSchema,
        path: pathModifierSchema,
        statusCode: { type: 'integer', enum: [301, 302, 303, 307, 308] },
      },
    },
    rewrite: {
      type: 'object',
      additionalProperties: false,
      properties: { hostname: { type: 'string', minLength: 1 }, path: pathModifierSchema },
    },
    mirrors: mirrorsSchema,
    timeoutMs: nonNegative,
    backendTimeoutMs: nonNegative,
    retry: {
      type: 'object',
      additionalProperties: false,
      required: ['codes', 'attempts', 'backoffMs'],
      properties: {
        codes: { type: 'array', items: { type: 'integer', minimum: 400, maximum: 599 } },
        attempts: nonNegative,
        backoffMs: nonNegative,
      },
    },
    source: { type: 'string' },
  },
} as const;

export const snapshotSchema = {
  $id: 'shoal/snapshot',
  title: 'Snapshot',
  description: "Everything one app's sidecar needs: listeners, routes, clusters with endpoints, DNS names.",
  type: 'object',
  additionalProperties: false,
  required: ['schemaVersion', 'version', 'namespace', 'app', 'pluginId', 'inbound', 'outbound', 'clusters', 'dns', 'status'],
  properties: {
    schemaVersion: { type: 'integer', const: SNAPSHOT_SCHEMA_VERSION },
    version: { type: 'string', pattern: '^[0-9a-f]{16}$', description: 'Content hash; the ETag' },
    namespace: { type: 'string', minLength: 1 },
    app: { type: 'string', minLength: 1 },
    pluginId: { type: 'string' },
    inbound: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'listenPort', 'port', 'protocol', 'mode', 'limits'],
        properties: {
          name: { type: 'string' },
          listenPort: portSchema,
          port: portSchema,
          protocol: protocolSchema,
          mode: modeSchema,
          limits: {
            type: 'object',
            additionalProperties: false,
            required: ['rps', 'burst', 'connections'],
            description: '0 means unlimited',
            properties: { rps: nonNegative, burst: nonNegative, connections: nonNegative },
          },
          authz: authzPolicySchema,
        },
      },
    },
    outbound: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'address', 'port', 'protocol', 'mode', 'routes'],
        properties: {
          name: { type: 'string' },
          address: { type: 'string', pattern: ipv4 },
          port: portSchema,
          protocol: protocolSchema,
          mode: modeSchema,
          routes: { type: 'array', minItems: 1, items: routeSchema },
        },
      },
    },
    clusters: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'service', 'namespace', 'port', 'protocol', 'lbPolicy', 'hashHeader', 'policy', 'endpoints'],
        properties: {
          name: { type: 'string', minLength: 1 },
          service: { type: 'string', minLength: 1 },
          namespace: { type: 'string', minLength: 1 },
          port: portSchema,
          protocol: protocolSchema,
          lbPolicy: { type: 'string', enum: ['least_request', 'round_robin', 'random', 'hash'] },
          hashHeader: { type: 'string' },
          policy: {
            type: 'object',
            additionalProperties: false,
            required: [
              'connectTimeoutMs',
              'requestTimeoutMs',
              'retryAttempts',
              'maxActiveRetries',
              'maxConnections',
              'maxRequests',
              'maxPendingRequests',
              'maxRequestsPerConnection',
              'consecutiveErrors',
              'baseEjectionTimeMs',
              'maxEjectionPercent',
              'intervalMs',
              'healthyPanicThreshold',
              'tcpIdleTimeoutS',
            ],
            properties: {
              connectTimeoutMs: positive,
              requestTimeoutMs: positive,
              retryAttempts: nonNegative,
              maxActiveRetries: nonNegative,
              maxConnections: positive,
              maxRequests: positive,
              maxPendingRequests: nonNegative,
              maxRequestsPerConnection: nonNegative,
              consecutiveErrors: positive,
              baseEjectionTimeMs: nonNegative,
              maxEjectionPercent: { type: 'integer', minimum: 0, maximum: 100 },
              intervalMs: positive,
              healthyPanicThreshold: { type: 'integer', minimum: 0, maximum: 100 },
              tcpIdleTimeoutS: positive,
              perTryTimeoutMs: {
                type: 'integer',
                minimum: 0,
                description: 'Bound on one attempt, to its response head; absent or 0 means none',
              },
            },
          },
          endpoints: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['address', 'port', 'weight', 'zone', 'ready', 'serving', 'terminating'],
              properties: {
                address: { type: 'string', minLength: 1 },
                port: portSchema,
                weight: positive,
                zone: { type: 'string' },
                ready: { type: 'boolean' },
                serving: { type: 'boolean' },
                terminating: { type: 'boolean' },
                meshed: { type: 'boolean', description: 'A sidecar listens here: reached over mutual TLS' },
                node: { type: 'string', minLength: 1, description: 'The node the endpoint runs on' },
                forZones: {
                  type: 'array',
                  items: { type: 'string', minLength: 1 },
                  description: 'Zones whose clients should use this endpoint (EndpointSlice hints.forZones)',
                },
                forNodes: {
                  type: 'array',
                  items: { type: 'string', minLength: 1 },
                  description: 'Nodes whose clients should use this endpoint (EndpointSlice hints.forNodes)',
                },
              },
            },
          },
          peerIdentities: {
            type: 'array',
            items: { type: 'string', pattern: '^spiffe://' },
            description: 'SPIFFE IDs meshed endpoints may present',
          },
          localityFailover: {
            type: 'boolean',
            description: "Without hints, prefer endpoints in the sidecar's zone, then any; absent means false",
          },
        },
      },
    },
    dns: {
      type: 'array',
      description: 'Lower-case names without the trailing dot; "*.x" matches names below x',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'address'],
        properties: { name: { type: 'string', minLength: 1 }, address: { type: 'string', pattern: ipv4 } },
      },
    },
    status: {
      type: 'object',
      additionalProperties: false,
      required: ['errors'],
      properties: { errors: { type: 'array', items: { type: 'string' } } },
    },
    identity: {
      type: 'object',
      additionalProperties: false,
      required: ['trustDomain', 'spiffeId', 'mtlsMode', 'trustBundle'],
      description: 'Workload identity: present when discover runs the mesh CA',
      properties: {
        trustDomain: { type: 'string', minLength: 1 },
        spiffeId: { type: 'string', pattern: '^spiffe://' },
        mtlsMode: { type: 'string', enum: ['permissive', 'strict'] },
        trustBundle: { type: 'array', minItems: 1, items: { type: 'string', pattern: '^-----BEGIN CERTIFICATE-----' } },
      },
    },
  },
} as const;

/** ajv's options for snapshotSchema, here and in scripts/generateSnapshotValidator.ts. */
export const SNAPSHOT_AJV_OPTIONS = { allErrors: false, strict: true } as const;

export function snapshotSchemaHash(): string {
  return createHash('sha256').update(JSON.stringify(snapshotSchema)).digest('hex');
}

interface SchemaValidator {
  (data: unknown): boolean;
  errors?: Array<{ instancePath: string; message?: string }> | null;
}

// The schema compiled ahead of time (scripts/generateSnapshotValidator.ts), so the sidecar never loads ajv's
// compiler (megabytes of RSS: docs/performance.md). If the schema changed without regenerating (a test says
// so), compile it here.
export const snapshotValidatorSource: 'generated' | 'compiled' = generatedSchemaHash === snapshotSchemaHash() ? 'generated' : 'compiled';
const validate: SchemaValidator =
  snapshotValidatorSource === 'generated' ? (generatedValidate as SchemaValidator) : compileSnapshotSchema();

/** snapshotSchema compiled by ajv now (what the generated module holds, built at load). */
export function compileSnapshotSchema(): SchemaValidator {
  const { Ajv } = createRequire(import.meta.url)('ajv') as typeof import('ajv');
  return new Ajv(SNAPSHOT_AJV_OPTIONS).compile(snapshotSchema);
}

// Checks shape and cross-references; returns null when valid, else a message saying where it is wrong.
export function snapshotError(value: unknown): string | null {
  if (
    typeof value === 'object' &&
    value !== null &&
    'schemaVersion' in value &&
    (value as { schemaVersion: unknown }).schemaVersion !== SNAPSHOT_SCHEMA_VERSION
  ) {
    return `unsupported snapshot schemaVersion ${JSON.stringify((value as { schemaVersion: unknown }).schemaVersion)}: this build reads ${SNAPSHOT_SCHEMA_VERSION}`;
  }
  if (!validate(value)) {
    const e = validate.errors?.[0];
    return `invalid snapshot at ${e?.instancePath || '/'}: ${e?.message ?? 'schema mismatch'}`;
  }
  const snap = value as Snapshot;
  const clusters = new Set(snap.clusters.map((c) => c.name));
  for (const l of snap.outbound) {
    for (const r of l.routes) {
      if (r.backends.length === 0 && (l.mode === 'l4' || (r.redirect === undefined && r.source === undefined))) {
        return `invalid snapshot: listener ${l.name} has a route without backends`;
      }
      for (const b of r.backends) {
        if (b.unresolved !== true && !clusters.has(b.cluster))
          return `invalid snapshot: listener ${l.name} routes to unknown cluster ${b.cluster}`;
        for (const m of b.mirrors ?? [])
          if (!clusters.has(m.cluster)) return `invalid snapshot: listener ${l.name} mirrors to unknown cluster ${m.cluster}`;
      }
      for (const m of r.mirrors ?? [])
        if (!clusters.has(m.cluster)) return `invalid snapshot: listener ${l.name} mirrors to unknown cluster ${m.cluster}`;
      const regexes = [
        ...(r.path?.type === 'RegularExpression' ? [r.path.value] : []),
        ...r.headers.filter((h) => h.type === 'RegularExpression').map((h) => h.value),
        ...(r.query ?? []).filter((q) => q.type === 'RegularExpression').map((q) => q.value),
      ];
      for (const re of regexes) {
        try {
          new RegExp(re);
        } catch (err) {
          return `invalid snapshot: listener ${l.name} has a route with an invalid regular expression ${JSON.stringify(re)}: ${(err as Error).message}`;
        }
      }
    }
  }
  if (snapshotVersion(snap) !== snap.version) return `invalid snapshot: version ${snap.version} does not match its content`;
  return null;
}

// Content hash of everything but the version itself: equal content, equal version, on every replica.
export function snapshotVersion(snap: Omit<Snapshot, 'version'> & { version?: string }): string {
  const { version: _ignored, ...rest } = snap;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16);
}

export function clusterName(service: string, namespace: string, port: number): string {
  return `${service}.${namespace}:${port}`;
}
