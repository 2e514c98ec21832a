// One cluster (a dependency port, or an inbound target): its endpoints and its balancer. The object
// is stable across snapshots, so routes hold it directly; updates swap its endpoint list in place.
import type { Cluster as ClusterSpec, ClusterPolicy, LbPolicy } from '../../shared/snapshot.ts';
import type { Balancer } from '../balance/balancer.ts';
import { createBalancer } from '../balance/createBalancer.ts';
import { Endpoint } from './endpoint.ts';

function poolShape(p: ClusterPolicy): string {
  return `${p.maxConnections}/${p.connectTimeoutMs}/${p.requestTimeoutMs}/${p.maxRequestsPerConnection}`;
}

export class Cluster {
  readonly name: string;
  policy: ClusterPolicy;
  lbPolicy: LbPolicy;
  /** Lower-case header whose value the hash policy keys on; '' for other policies. */
  hashHeader: string;
  endpoints: Endpoint[] = [];
  balancer: Balancer;
  /** Work in flight over all endpoints, including retired ones still finishing. */
  active = 0;
  private readonly retiring = new Set<Promise<void>>();

  constructor(spec: ClusterSpec) {
    this.name = spec.name;
    this.policy = spec.policy;
    this.lbPolicy = spec.lbPolicy;
    this.hashHeader = spec.lbPolicy === 'hash' ? spec.hashHeader.toLowerCase() : '';
    this.balancer = createBalancer(spec.lbPolicy);
    this.update(spec);
  }

  /** Applies a new spec: endpoints that stay keep their pools; removed ones drain, then close. */
  update(spec: ClusterSpec): void {
    const reshaped = poolShape(spec.policy) !== poolShape(this.policy);
    this.policy = spec.policy;
    if (spec.lbPolicy !== this.lbPolicy) {
      this.lbPolicy = spec.lbPolicy;
      this.balancer = createBalancer(spec.lbPolicy);
    }
    this.hashHeader = spec.lbPolicy === 'hash' ? spec.hashHeader.toLowerCase() : '';
    const old = new Map<string, Endpoint>();
    for (const e of this.endpoints) old.set(`${e.key}/${e.weight}`, e);
    const next: Endpoint[] = [];
    for (const s of spec.endpoints) {
      const id = `${s.address}:${s.port}/${s.weight}`;
      const kept = reshaped ? undefined : old.get(id);
      if (kept) {
        old.delete(id);
        next.push(kept);
      } else if (!next.some((e) => e.key === `${s.address}:${s.port}`)) {
        next.push(new Endpoint(s.address, s.port, s.weight, spec.policy));
      }
    }
    this.endpoints = next;
    this.balancer.update(next);
    for (const e of old.values()) this.retireEndpoint(e);
  }

  pick(hashKey: string | undefined): Endpoint | null {
    return this.balancer.pick(hashKey);
  }

  private retireEndpoint(e: Endpoint): void {
    const p = e.retire().finally(() => this.retiring.delete(p));
    this.retiring.add(p);
  }

  /** Retires every endpoint (the cluster left the snapshot); resolves when they have drained. */
  async retire(): Promise<void> {
    for (const e of this.endpoints) this.retireEndpoint(e);
    this.endpoints = [];
    this.balancer.update([]);
    await Promise.all([...this.retiring]);
  }

  async destroy(): Promise<void> {
    await Promise.all(this.endpoints.map((e) => e.destroy()));
    this.endpoints = [];
    this.balancer.update([]);
  }
}
