// Weighted random: stateless, no coordination, good enough when endpoints are alike.
import type { Endpoint } from '../cluster/endpoint.ts';
import { WeightTable, type Balancer } from './balancer.ts';

export class RandomBalancer implements Balancer {
  private readonly table = new WeightTable();

  update(endpoints: readonly Endpoint[]): void {
    this.table.update(endpoints);
  }

  pick(): Endpoint | null {
    const t = this.table;
    if (t.endpoints.length === 0) return null;
    return t.endpoints[t.randomIndex()];
  }
}
