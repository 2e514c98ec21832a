// Every cluster of the applied snapshot by name; reconciled per snapshot.
import type { Cluster as ClusterSpec } from '../../shared/snapshot.ts';
import type { SidecarLocality } from '../balance/locality.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { Cluster } from './cluster.ts';

export class ClusterSet {
  private readonly byName = new Map<string, Cluster>();
  // Removed clusters stay known while listeners that still hold them drain: if the cluster comes back
  // in a later snapshot, the same object is revived, so a draining listener's route sees its endpoints.
  private readonly removed = new Map<string, { cluster: Cluster; timer: NodeJS.Timeout }>();
  private readonly keepRemovedMs: number;
  private readonly metrics: ProxyMetrics | null;
  private here: SidecarLocality = { node: '', zone: '' };

  constructor(keepRemovedMs = 30_000, metrics: ProxyMetrics | null = null) {
    this.keepRemovedMs = keepRemovedMs;
    this.metrics = metrics;
  }

  get(name: string): Cluster | undefined {
    return this.byName.get(name);
  }

  values(): IterableIterator<Cluster> {
    return this.byName.values();
  }

  /** Where this sidecar runs: every cluster, now and later, prefers endpoints near it (balance/locality.ts). */
  setLocality(here: SidecarLocality): void {
    this.here = { node: here.node, zone: here.zone };
    for (const c of this.byName.values()) c.setLocality(this.here);
    for (const r of this.removed.values()) r.cluster.setLocality(this.here);
  }

  get locality(): SidecarLocality {
    return this.here;
  }

  /** Adds, updates and removes clusters; removed ones drain in the background. */
  apply(specs: readonly ClusterSpec[]): void {
    const seen = new Set<string>();
    for (const spec of specs) {
      seen.add(spec.name);
      const c = this.byName.get(spec.name);
      if (c) {
        c.update(spec);
        continue;
      }
      const back = this.removed.get(spec.name);
      if (back) {
        clearTimeout(back.timer);
        this.removed.delete(spec.name);
        back.cluster.update(spec);
        this.byName.set(spec.name, back.cluster);
      } else {
        this.byName.set(spec.name, new Cluster(spec, this.metrics?.resilience(spec.name), this.here));
      }
    }
    for (const [name, c] of this.byName) {
      if (seen.has(name)) continue;
      this.byName.delete(name);
      void c.retire();
      const timer = setTimeout(() => this.removed.delete(name), this.keepRemovedMs);
      timer.unref();
      this.removed.set(name, { cluster: c, timer });
    }
  }

  async destroy(): Promise<void> {
    for (const r of this.removed.values()) clearTimeout(r.timer);
    await Promise.all([...this.byName.values(), ...[...this.removed.values()].map((r) => r.cluster)].map((c) => c.destroy()));
    this.byName.clear();
    this.removed.clear();
  }
}
