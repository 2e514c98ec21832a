// What every load-balancing policy implements: pick one endpoint of a cluster for a request or a connection.
import type { Endpoint } from '../cluster/endpoint.ts';

export interface Balancer {
  /** Rebuilds any per-endpoint table; called when the endpoint set changes, never per request. */
  update(endpoints: readonly Endpoint[]): void;
  /** Picks an endpoint, or null when there is none. hashKey is the value of the cluster's hash header. */
  pick(hashKey: string | undefined): Endpoint | null;
}

/** Cumulative weights for weighted random choice: one binary search per pick. */
export class WeightTable {
  endpoints: readonly Endpoint[] = [];
  cumulative: Float64Array = new Float64Array(0);
  total = 0;
  uniform = true;

  update(endpoints: readonly Endpoint[]): void {
    this.endpoints = endpoints;
    this.cumulative = new Float64Array(endpoints.length);
    let sum = 0;
    this.uniform = true;
    for (let i = 0; i < endpoints.length; i++) {
      sum += endpoints[i].weight;
      this.cumulative[i] = sum;
      if (endpoints[i].weight !== endpoints[0].weight) this.uniform = false;
    }
    this.total = sum;
  }

  /** Index of a weighted random endpoint; the table must not be empty. */
  randomIndex(): number {
    const n = this.endpoints.length;
    if (this.uniform) return (Math.random() * n) | 0;
    const r = Math.random() * this.total;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cumulative[mid] > r) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}
