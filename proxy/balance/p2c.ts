// Least request with the power of two choices: two weighted random picks, the one with fewer
// requests in flight per unit of weight wins. O(1) per pick and no herding on one idle endpoint.
import { WeightTable, type Balancer, type Pickable } from './balancer.ts';

export class P2cBalancer<T extends Pickable> implements Balancer<T> {
  private readonly table = new WeightTable<T>();

  update(endpoints: readonly T[]): void {
    this.table.update(endpoints);
  }

  pick(): T | null {
    const t = this.table;
    const n = t.endpoints.length;
    if (n === 0) return null;
    if (n === 1) return t.endpoints[0];
    const i = t.randomIndex();
    let j = t.randomIndex();
    if (j === i) j = (i + 1 + ((Math.random() * (n - 1)) | 0)) % n;
    const a = t.endpoints[i];
    const b = t.endpoints[j];
    // Compare active/weight without dividing: a.active * b.weight vs b.active * a.weight.
    const la = a.active * b.weight;
    const lb = b.active * a.weight;
    // A tie (always, at idle) goes to the first choice: drawn by weight, so weights hold when nothing is
    // in flight. A coin flip between the two would split 50/50 between any two endpoints, whatever their weights.
    if (la === lb) return a;
    return la < lb ? a : b;
  }
}
