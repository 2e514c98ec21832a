// What every load-balancing policy implements: pick one of a set (in the proxy, an endpoint of a
// cluster, for a request or a connection). Generic over what it picks: a balancer reads a key (ring
// hash), a weight and the load in flight (least request), nothing else, so it is tested on its own
// with plain objects (test/proxy/unit).

/** What a balancer picks from: a stable key, a weight and the work in flight on it. */
export interface Pickable {
  readonly key: string;
  readonly weight: number;
  readonly active: number;
}

export interface Balancer<T extends Pickable> {
  /** Rebuilds any per-item table; called when the set changes, never per request. */
  update(items: readonly T[]): void;
  /** Picks one, or null when there is none. hashKey is the value of the cluster's hash header. */
  pick(hashKey: string | undefined): T | null;
}

/** Cumulative weights for weighted random choice: one binary search per pick. */
export class WeightTable<T extends Pickable> {
  endpoints: readonly T[] = [];
  cumulative: Float64Array = new Float64Array(0);
  total = 0;
  uniform = true;

  update(endpoints: readonly T[]): void {
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
