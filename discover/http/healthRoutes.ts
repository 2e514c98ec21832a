// Liveness, readiness and metrics.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { SnapshotStore } from '../snapshot/store.ts';

export type Readiness = () => { ready: boolean; message: string };

export function healthRoutes(app: FastifyInstance, opts: { store: SnapshotStore; registry: Registry; readiness?: Readiness }): void {
  const { store, registry } = opts;
  const readiness: Readiness = opts.readiness ?? (() => ({ ready: store.ready, message: store.ready ? 'ready' : 'the first full state is not loaded yet' }));
  app.get('/healthz', { schema: { summary: 'Alive' } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { summary: 'Ready once the first full state is loaded (and, on Kubernetes, while the watches are fresh)' } }, async (_req, reply) => {
    const r = readiness();
    return r.ready && store.ready ? { status: 'ready' } : reply.code(503).send({ status: 'not ready', message: r.message });
  });
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', hide: false } }, async (_req, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()));
}
