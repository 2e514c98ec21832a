// One metrics setup for every piece: a prom-client registry of its own, with process metrics.
import { Registry, collectDefaultMetrics } from 'prom-client';

export function createRegistry(piece: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ piece });
  collectDefaultMetrics({ register: registry, prefix: 'shoal_' });
  return registry;
}
