// Stand-ins for what the balancers and the outlier detector read of an endpoint and a cluster: plain
// objects with the same fields, so these tests load no pools, sockets or metrics registry.
import type { Pickable } from '../../../proxy/balance/balancer.ts';
import type { Endpoint } from '../../../proxy/cluster/endpoint.ts';
import type { OutlierHost } from '../../../proxy/policy/outlierDetector.ts';
import type { ClusterPolicy } from '../../../shared/snapshot.ts';

export interface FakeEndpointInit {
  weight?: number;
  active?: number;
  node?: string;
  zone?: string;
  forZones?: string[] | null;
  forNodes?: string[] | null;
}

/** An endpoint named `name` (its key), weight 1 and idle unless told otherwise. */
export function endpoint(name: string, init: FakeEndpointInit = {}): Endpoint {
  const e = {
    key: name,
    address: name,
    port: 80,
    weight: init.weight ?? 1,
    active: init.active ?? 0,
    retired: false,
    consecutiveErrors: 0,
    ejectedUntil: 0,
    timesEjected: 0,
    slowActive: 0,
    node: init.node ?? '',
    zone: init.zone ?? '',
    forZones: init.forZones ?? null,
    forNodes: init.forNodes ?? null,
    locality: 3,
  };
  return e as unknown as Endpoint;
}

export function endpoints(n: number, init: FakeEndpointInit = {}): Endpoint[] {
  return Array.from({ length: n }, (_, i) => endpoint(`e${i}`, init));
}

/** Picks n times and counts the picks by endpoint key. */
export function countPicks(pick: () => Pickable | null, n: number): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const e = pick();
    if (e === null) throw new Error('the balancer picked nothing');
    out.set(e.key, (out.get(e.key) ?? 0) + 1);
  }
  return out;
}

/** The outlier settings the tests start from (the cluster policy's other fields are not read). */
export const outlierPolicy = { consecutiveErrors: 5, baseEjectionTimeMs: 30_000, maxEjectionPercent: 100, intervalMs: 10_000 };

export interface FakeHost extends OutlierHost {
  endpoints: Endpoint[];
  policy: ClusterPolicy;
  stats: OutlierHost['stats'];
  rebalances: number;
}

export function outlierHost(eps: Endpoint[], policy: Partial<typeof outlierPolicy> = {}): FakeHost {
  const host = {
    endpoints: eps,
    policy: { ...outlierPolicy, ...policy } as unknown as ClusterPolicy,
    stats: { ejections: 0, ejectionsSkipped: 0 } as unknown as OutlierHost['stats'],
    rebalances: 0,
    rebalance(): void {
      host.rebalances++;
    },
  };
  return host;
}
