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

export interface HeaderMatch { name: string; value: string }

export interface WeightedBackend { cluster: string; weight: number }

export interface Route {
  // Host names this route answers to; ["*"] matches any Host.
  domains: string[];
  prefix: string;
  headers: HeaderMatch[];
  backends: WeightedBackend[];
  // Retry non-idempotent methods (POST...) after the request was sent: on 502/503/504, resets and
  // request timeouts. Absent: false. A request whose body was already sent is never retried.
  retryNonIdempotent?: boolean;
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

export interface DnsName { name: string; address: string }

export interface SnapshotStatus { errors: string[] }

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
        type: 'object', additionalProperties: false, required: ['name', 'value'],
        properties: { name: { type: 'string', minLength: 1 }, value: { type: 'string' } },
      },
    },
    backends: {
      type: 'array', minItems: 1,
      items: {
        type: 'object', additionalProperties: false, required: ['cluster', 'weight'],
        properties: { cluster: { type: 'string', minLength: 1 }, weight: nonNegative },
      },
    },
    retryNonIdempotent: { type: 'boolean', description: 'Retry non-idempotent methods after the request was sent (502/503/504, reset, timeout); absent means false' },
  },
} as const;

export const snapshotSchema = {
  $id: 'shoal/snapshot',
  title: 'Snapshot',
  description: 'Everything one app\'s sidecar needs: listeners, routes, clusters with endpoints, DNS names.',
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
        type: 'object', additionalProperties: false,
        required: ['name', 'listenPort', 'port', 'protocol', 'mode', 'limits'],
        properties: {
          name: { type: 'string' },
          listenPort: portSchema,
          port: portSchema,
          protocol: protocolSchema,
          mode: modeSchema,
          limits: {
            type: 'object', additionalProperties: false, required: ['rps', 'burst', 'connections'],
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
        type: 'object', additionalProperties: false,
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
        type: 'object', additionalProperties: false,
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
            type: 'object', additionalProperties: false,
            required: ['connectTimeoutMs', 'requestTimeoutMs', 'retryAttempts', 'maxActiveRetries', 'maxConnections',
              'maxRequests', 'maxPendingRequests', 'maxRequestsPerConnection', 'consecutiveErrors', 'baseEjectionTimeMs',
              'maxEjectionPercent', 'intervalMs', 'healthyPanicThreshold', 'tcpIdleTimeoutS'],
            properties: {
              connectTimeoutMs: positive, requestTimeoutMs: positive, retryAttempts: nonNegative,
              maxActiveRetries: nonNegative, maxConnections: positive, maxRequests: positive,
              maxPendingRequests: nonNegative, maxRequestsPerConnection: nonNegative, consecutiveErrors: positive,
              baseEjectionTimeMs: nonNegative, maxEjectionPercent: { type: 'integer', minimum: 0, maximum: 100 },
              intervalMs: positive, healthyPanicThreshold: { type: 'integer', minimum: 0, maximum: 100 },
              tcpIdleTimeoutS: positive,
              perTryTimeoutMs: { type: 'integer', minimum: 0, description: 'Bound on one attempt, to its response head; absent or 0 means none' },
            },
          },
          endpoints: {
            type: 'array',
            items: {
              type: 'object', additionalProperties: false,
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
                forZones: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'Zones whose clients should use this endpoint (EndpointSlice hints.forZones)' },
                forNodes: { type: 'array', items: { type: 'string', minLength: 1 }, description: 'Nodes whose clients should use this endpoint (EndpointSlice hints.forNodes)' },
              },
            },
          },
          peerIdentities: { type: 'array', items: { type: 'string', pattern: '^spiffe://' }, description: 'SPIFFE IDs meshed endpoints may present' },
          localityFailover: { type: 'boolean', description: 'Without hints, prefer endpoints in the sidecar\'s zone, then any; absent means false' },
        },
      },
    },
    dns: {
      type: 'array',
      description: 'Lower-case names without the trailing dot; "*.x" matches names below x',
      items: {
        type: 'object', additionalProperties: false, required: ['name', 'address'],
        properties: { name: { type: 'string', minLength: 1 }, address: { type: 'string', pattern: ipv4 } },
      },
    },
    status: {
      type: 'object', additionalProperties: false, required: ['errors'],
      properties: { errors: { type: 'array', items: { type: 'string' } } },
    },
    identity: {
      type: 'object', additionalProperties: false, required: ['trustDomain', 'spiffeId', 'mtlsMode', 'trustBundle'],
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
const validate: SchemaValidator = snapshotValidatorSource === 'generated' ? generatedValidate as SchemaValidator : compileSnapshotSchema();

/** snapshotSchema compiled by ajv now (what the generated module holds, built at load). */
export function compileSnapshotSchema(): SchemaValidator {
  const { Ajv } = createRequire(import.meta.url)('ajv') as typeof import('ajv');
  return new Ajv(SNAPSHOT_AJV_OPTIONS).compile(snapshotSchema);
}

// Checks shape and cross-references; returns null when valid, else a message saying where it is wrong.
export function snapshotError(value: unknown): string | null {
  if (typeof value === 'object' && value !== null && 'schemaVersion' in value &&
      (value as { schemaVersion: unknown }).schemaVersion !== SNAPSHOT_SCHEMA_VERSION) {
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
      for (const b of r.backends) {
        if (!clusters.has(b.cluster)) return `invalid snapshot: listener ${l.name} routes to unknown cluster ${b.cluster}`;
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
