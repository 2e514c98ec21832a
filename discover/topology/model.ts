// The source-independent view of the mesh: what the static file and the Kubernetes watch both produce.
import type { Endpoint, Protocol } from '../../shared/snapshot.ts';
import type { MeshConfig, ResourceSpec } from '../../shared/meshConfig.ts';

export interface ServicePort {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface Service {
  namespace: string;
  name: string;
  // A loopback address pinned for this service; otherwise one is derived from its identity.
  address: string | null;
  ports: ServicePort[];
  // Service port -> endpoints, with their conditions as the source reports them.
  endpoints: Map<number, Endpoint[]>;
}

export interface App {
  namespace: string;
  name: string;
  pluginId: string;
  spec: ResourceSpec;
  config: MeshConfig;
  // Problems the source found that leave the last good config in force (e.g. a refused edit).
  problems?: string[];
  // Service accounts besides the one named like the app that may read its snapshot (Kubernetes).
  readers?: string[];
}

/**
 * A Gateway API HTTPRoute or GRPCRoute (gateway.networking.k8s.io/v1) exactly as applied: from the
 * Kubernetes watch, or from the static topology's `routes:` list. discover/gateway/ validates and compiles
 * the ones whose parentRefs name a Service (the mesh profile, GAMMA) into the callers' snapshots.
 */
export interface GatewayRoute {
  apiVersion: string;
  kind: 'HTTPRoute' | 'GRPCRoute';
  metadata: {
    name: string;
    namespace: string;
    generation?: number;
    creationTimestamp?: string;
    uid?: string;
    resourceVersion?: string;
  };
  spec: Record<string, unknown>;
  /** As read (Kubernetes): kept so status writes can leave other controllers' parents alone. */
  status?: Record<string, unknown>;
}

export function routeKey(kind: GatewayRoute['kind'], namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

export interface Topology {
  clusterDomain: string;
  /** Workload identity (docs/identity.md): set by discover when it runs the mesh CA. */
  identity?: import('../identity/snapshotIdentity.ts').MeshIdentity;
  services: Map<string, Service>;
  apps: Map<string, App>;
  /** Gateway API routes by routeKey(); absent or empty: none. */
  routes?: Map<string, GatewayRoute>;
}

export function serviceKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function appKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}
