// Liveness, readiness and metrics.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { SnapshotStore } from '../snapshot/store.ts';

export function healthRoutes(app: FastifyInstance, opts: { store: SnapshotStore; registry: Registry }): void {
  const { store, registry } = opts;
  app.get('/healthz', { schema: { summary: 'Alive' } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { summary: 'Ready once the first full state is loaded' } }, async (_req, reply) =>
    store.ready ? { status: 'ready' } : reply.code(503).send({ status: 'not ready', message: 'the first full state is not loaded yet' }));
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', hide: false } }, async (_req, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()));
}
