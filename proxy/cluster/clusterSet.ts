// Every cluster of the applied snapshot by name; reconciled per snapshot.
import type { Cluster as ClusterSpec } from '../../shared/snapshot.ts';
import { Cluster } from './cluster.ts';

export class ClusterSet {
  private readonly byName = new Map<string, Cluster>();

  get(name: string): Cluster | undefined {
    return this.byName.get(name);
  }

  values(): IterableIterator<Cluster> {
    return this.byName.values();
  }

  /** Adds, updates and removes clusters; removed ones drain in the background. */
  apply(specs: readonly ClusterSpec[]): void {
    const seen = new Set<string>();
    for (const spec of specs) {
      seen.add(spec.name);
      const c = this.byName.get(spec.name);
      if (c) c.update(spec);
      else this.byName.set(spec.name, new Cluster(spec));
    }
    for (const [name, c] of this.byName) {
      if (seen.has(name)) continue;
      this.byName.delete(name);
      void c.retire();
    }
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.byName.values()].map((c) => c.destroy()));
    this.byName.clear();
  }
}
