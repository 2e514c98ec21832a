// The discover HTTP API: fastify with route schemas, OpenAPI at /docs/json.
import Fastify, { type FastifyInstance, type preHandlerAsyncHookHandler } from 'fastify';
import swagger from '@fastify/swagger';
import type { Registry } from 'prom-client';
import type { Logger } from '../../shared/log.ts';
import type { SnapshotStore } from '../snapshot/store.ts';
import type { DiscoverMetrics } from '../metrics.ts';
import { snapshotRoutes } from './snapshotRoutes.ts';
import { resourceRoutes, type ConfigWriter } from './resourceRoutes.ts';
import { healthRoutes, type Readiness } from './healthRoutes.ts';
import { localityRoutes } from './localityRoutes.ts';
import { identityRoutes, type IdentityService } from '../identity/identityRoutes.ts';

export interface ServerOptions {
  store: SnapshotStore;
  metrics: DiscoverMetrics;
  registry: Registry;
  log: Logger;
  writer: ConfigWriter | null;
  writeToken: string;
  readGuard?: preHandlerAsyncHookHandler;
  readiness?: Readiness;
  refusal?: (namespace: string, app: string) => string | undefined;
  /** A node's zone label, for sidecars with --node and no --zone (localityRoutes.ts); absent: no Node information. */
  nodeZone?: (node: string) => string | undefined;
  /** Workload identity (docs/identity.md): the mesh CA's routes, when discover runs it. */
  identity?: IdentityService;
}

export async function createServer(opts: ServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    // No per-request log lines: errors are logged by the error handler below.
    logger: false,
    // Long-poll holds requests up to 60 s; keep sockets open past that.
    requestTimeout: 0,
    keepAliveTimeout: 75_000,
    return503OnClosing: true,
  });
  app.server.headersTimeout = 65_000;
  app.server.maxConnections = 100_000;
  await app.register(swagger, {
    openapi: {
      info: { title: 'shoal discover', version: '1', description: 'Per-app snapshots for shoal sidecars, with long-poll push' },
    },
  });
  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown; code?: string }, req, reply) => {
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = req.routeOptions.bodyLimit; // the route's limit, else the server's
      return reply.code(413).send({
        error: 'too_large',
        message: `the request body is larger than the limit of ${limit} bytes (${+(limit / 1048576).toFixed(2)} MiB)`,
      });
    }
    if (err.validation || (err.statusCode && err.statusCode < 500)) {
      return reply.code(err.statusCode ?? 400).send({ error: 'bad_request', message: err.message });
    }
    opts.log.error({ err, url: req.url }, 'request failed');
    return reply.code(500).send({ error: 'internal', message: 'internal error' });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: 'not_found', message: `no route ${req.method} ${req.url.split('?')[0]}` }),
  );
  snapshotRoutes(app, opts);
  resourceRoutes(app, opts);
  healthRoutes(app, opts);
  localityRoutes(app, opts);
  if (opts.identity) identityRoutes(app, opts.identity, opts.log, opts.registry);
  app.get('/docs/json', { schema: { hide: true } }, async () => app.swagger());
  await app.ready();
  return app;
}
