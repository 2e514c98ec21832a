// Inbound: each app port is reached on its listen port and forwarded to 127.0.0.1:<port>, through the
// same L7/L4 listeners as outbound traffic, with one single-endpoint cluster per port.
import type { Cluster, ClusterPolicy, Snapshot } from '../../shared/snapshot.ts';
import type { ListenerSpec } from './listenerSpec.ts';

// The app is local: connect fast, and leave request deadlines to the caller's sidecar.
const INBOUND_POLICY: ClusterPolicy = {
  connectTimeoutMs: 1000,
  requestTimeoutMs: 0,
  retryAttempts: 0,
  maxActiveRetries: 0,
  maxConnections: 10240,
  maxRequests: 10240,
  maxPendingRequests: 1024,
  maxRequestsPerConnection: 0,
  consecutiveErrors: 5,
  baseEjectionTimeMs: 0,
  maxEjectionPercent: 0,
  intervalMs: 10000,
  healthyPanicThreshold: 0,
  tcpIdleTimeoutS: 7200,
};

export function inboundClusterName(port: number): string {
  return `inbound:${port}`;
}

export function inboundClusters(snap: Snapshot): Cluster[] {
  return snap.inbound.map((i) => ({
    name: inboundClusterName(i.port),
    service: snap.app,
    namespace: snap.namespace,
    port: i.port,
    protocol: i.protocol,
    lbPolicy: 'round_robin',
    hashHeader: '',
    policy: INBOUND_POLICY,
    endpoints: [{ address: '127.0.0.1', port: i.port, weight: 1, zone: '', ready: true, serving: true, terminating: false }],
  }));
}

export function inboundSpecs(snap: Snapshot, address: string): ListenerSpec[] {
  return snap.inbound.map((i) => ({
    key: `${address}:${i.listenPort}`,
    name: i.name,
    address,
    port: i.listenPort,
    direction: 'inbound',
    mode: i.mode === 'l7' ? (i.protocol === 'http' ? 'l7' : 'h2') : 'l4',
    routes: [{ domains: ['*'], prefix: '/', headers: [], backends: [{ cluster: inboundClusterName(i.port), weight: 1 }] }],
    limits: i.limits.rps > 0 || i.limits.connections > 0 ? { ...i.limits } : null,
  }));
}
