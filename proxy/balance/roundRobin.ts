// Smooth weighted round robin (as nginx does it): equal weights rotate in order; unequal weights
// interleave instead of sending a burst to the heaviest endpoint.
import type { Balancer, Pickable } from './balancer.ts';

export class RoundRobinBalancer<T extends Pickable> implements Balancer<T> {
  private endpoints: readonly T[] = [];
  private current: Float64Array = new Float64Array(0);
  private total = 0;
  private uniform = true;
  private next = 0;

  update(endpoints: readonly T[]): void {
    this.endpoints = endpoints;
    this.current = new Float64Array(endpoints.length);
    this.total = 0;
    this.uniform = true;
    for (const e of endpoints) {
      this.total += e.weight;
      if (e.weight !== endpoints[0].weight) this.uniform = false;
    }
    // Keep the rotation going across updates so a change does not restart every client at endpoint 0.
    if (this.next >= endpoints.length) this.next = 0;
  }

  pick(): T | null {
    const eps = this.endpoints;
    const n = eps.length;
    if (n === 0) return null;
    if (this.uniform) {
      const e = eps[this.next];
      this.next = this.next + 1 === n ? 0 : this.next + 1;
      return e;
    }
    let best = 0;
    for (let i = 0; i < n; i++) {
      this.current[i] += eps[i].weight;
      if (this.current[i] > this.current[best]) best = i;
    }
    this.current[best] -= this.total;
    return eps[best];
  }
}
