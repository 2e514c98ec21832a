// Weighted random: stateless, no coordination, good enough when endpoints are alike.
import { WeightTable, type Balancer, type Pickable } from './balancer.ts';

export class RandomBalancer<T extends Pickable> implements Balancer<T> {
  private readonly table = new WeightTable<T>();

  update(endpoints: readonly T[]): void {
    this.table.update(endpoints);
  }

  pick(): T | null {
    const t = this.table;
    if (t.endpoints.length === 0) return null;
    return t.endpoints[t.randomIndex()];
  }
}
