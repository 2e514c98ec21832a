// discover's metrics: what is served, who waits, how long rebuilds take, what config was refused.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface DiscoverMetrics {
  snapshotsServed: Counter<'result'>;
  /** Read at scrape time: the long-poll path sets nothing per request. */
  countWaiters(read: () => number): void;
  rebuildSeconds: Histogram;
  configErrors: Counter<'source'>;
  apps: Gauge;
}

export function createDiscoverMetrics(registry: Registry): DiscoverMetrics {
  let waiters = () => 0;
  new Gauge({
    name: 'shoal_discover_longpoll_waiters',
    help: 'Long-poll requests waiting for a change',
    registers: [registry],
    collect() {
      this.set(waiters());
    },
  });
  return {
    countWaiters(read) {
      waiters = read;
    },
    snapshotsServed: new Counter({
      name: 'shoal_discover_snapshots_served_total',
      help: 'Snapshot responses by result: full, not_modified, woken (long-poll answered by a change), expired (long-poll 304), not_found',
      labelNames: ['result'],
      registers: [registry],
    }),
    rebuildSeconds: new Histogram({
      name: 'shoal_discover_rebuild_seconds',
      help: 'Time to apply a new topology and rebuild the snapshots it changes',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    configErrors: new Counter({
      name: 'shoal_discover_config_errors_total',
      help: 'Topology or mesh config refused',
      labelNames: ['source'],
      registers: [registry],
    }),
    apps: new Gauge({ name: 'shoal_discover_apps', help: 'Apps with a snapshot', registers: [registry] }),
  };
}
