// Liveness, readiness and metrics.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { SnapshotStore } from '../snapshot/store.ts';

// details: what works only in part while ready (e.g. no Gateway API routes: their CRDs are not installed).
export type Readiness = () => { ready: boolean; message: string; details?: string[] };

export function healthRoutes(app: FastifyInstance, opts: { store: SnapshotStore; registry: Registry; readiness?: Readiness }): void {
  const { store, registry } = opts;
  const readiness: Readiness =
    opts.readiness ?? (() => ({ ready: store.ready, message: store.ready ? 'ready' : 'the first full state is not loaded yet' }));
  app.get('/healthz', { schema: { summary: 'Alive' } }, async () => ({ status: 'ok' }));
  app.get(
    '/readyz',
    { schema: { summary: 'Ready once the first full state is loaded (and, on Kubernetes, while the watches are fresh)' } },
    async (_req, reply) => {
      const r = readiness();
      const details = r.details && r.details.length > 0 ? { details: r.details } : {};
      return r.ready && store.ready
        ? { status: 'ready', ...details }
        : reply.code(503).send({ status: 'not ready', message: r.message, ...details });
    },
  );
  app.get('/metrics', { schema: { summary: 'Prometheus metrics', hide: false } }, async (_req, reply) =>
    reply.type(registry.contentType).send(await registry.metrics()),
  );
}
