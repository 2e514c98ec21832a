// Applies a snapshot: clusters first (so routes can hold them), then listeners. Endpoints and
// listeners that stay are kept; what left drains in the background.
import type { Logger } from '../../shared/log.ts';
import type { Snapshot } from '../../shared/snapshot.ts';
import type { ClusterSet } from '../cluster/clusterSet.ts';
import { inboundClusters, inboundSpecs } from './inboundSpecs.ts';
import type { ListenerSet } from './listenerSet.ts';
import type { MeshTls } from '../tls/meshTls.ts';
import type { ProxyMetrics } from '../metrics.ts';
import { outboundSpecs } from './outboundSpecs.ts';

export class SnapshotApplier {
  current: Snapshot | null = null;
  private readonly clusters: ClusterSet;
  private readonly listeners: ListenerSet;
  private readonly metrics: ProxyMetrics;
  private readonly log: Logger;
  private readonly inboundAddress: string;
  private readonly listenersOf = new Set<(s: Snapshot) => void>();
  /** Workload identity (proxy/tls): certificate, trust bundle, meshed endpoints, inbound gates. */
  meshTls: MeshTls | null = null;

  constructor(opts: { clusters: ClusterSet; listeners: ListenerSet; metrics: ProxyMetrics; log: Logger; inboundAddress: string }) {
    this.clusters = opts.clusters;
    this.listeners = opts.listeners;
    this.metrics = opts.metrics;
    this.log = opts.log;
    this.inboundAddress = opts.inboundAddress;
  }

  onSnapshot(fn: (s: Snapshot) => void): void {
    this.listenersOf.add(fn);
    if (this.current) fn(this.current);
  }

  async apply(snap: Snapshot, source: 'discover' | 'state-file'): Promise<void> {
    const previous = this.current;
    await this.meshTls?.apply(snap);
    this.clusters.apply([...snap.clusters, ...inboundClusters(snap)]);
    // Endpoints that just left retire their pools (Endpoint.retire): HTTP/2 streams to them get the drain period, then UNAVAILABLE.
    const specs = [...outboundSpecs(snap), ...inboundSpecs(snap, this.inboundAddress)];
    // Two entries on one address:port would fight over the bind; the first wins, the rest is reported.
    const seen = new Set<string>();
    const unique = specs.filter((s) => {
      if (seen.has(s.key)) {
        this.log.error({ listener: s.name, address: s.key }, 'two listeners on one address and port; the later is left out');
        return false;
      }
      seen.add(s.key);
      return true;
    });
    await this.listeners.apply(unique, this.clusters);
    this.current = snap;
    this.metrics.endpoints.reset();
    for (const c of snap.clusters) this.metrics.endpoints.labels(c.name).set(c.endpoints.length);
    this.metrics.configVersion.reset();
    this.metrics.configVersion.labels(snap.version).set(1);
    this.metrics.configApplied.labels(source).inc();
    for (const e of snap.status.errors) this.log.warn({ problem: e }, "discover reports a problem in this app's mesh config");
    this.log.info(
      { version: snap.version, previous: previous?.version ?? null, source, listeners: unique.length, clusters: snap.clusters.length },
      'snapshot applied',
    );
    for (const fn of this.listenersOf) {
      try {
        fn(snap);
      } catch (err) {
        this.log.error({ error: (err as Error).message }, 'snapshot listener failed');
      }
    }
  }
}
