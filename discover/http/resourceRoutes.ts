// GET and PUT /v1/resources/{namespace}/{app}/{plugin_id}: the app's mesh config, in the earlier mesh's format (docs/static-topology.md).
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { ConfigError, parseMeshConfig, resourceSpecSchema, type ResourceSpec } from '../../shared/meshConfig.ts';
import type { SnapshotStore } from '../snapshot/store.ts';
import { notFound } from './snapshotRoutes.ts';
import { bearer, sameSecret } from './bearer.ts';
import { badResourceName, WriteRefused } from '../topology/names.ts';

/**
 * How a source stores a written mesh config. It resolves once the write is durable; writes are
 * applied one at a time, in the order they resolve. It rejects with WriteRefused (400, 409) when
 * the request cannot be applied, and with any other error when storing failed; either way nothing
 * was changed.
 */
export type ConfigWriter = (namespace: string, app: string, pluginId: string, spec: ResourceSpec) => Promise<void>;

/**
 * The largest PUT body: a mesh config within MESH_CONFIG_LIMITS is far smaller, and a Kubernetes
 * ConfigMap holds at most 1 MiB.
 */
export const MAX_RESOURCE_BODY = 1024 * 1024;

interface Params {
  namespace: string;
  app: string;
  plugin_id: string;
}
const params = {
  type: 'object',
  required: ['namespace', 'app', 'plugin_id'],
  properties: {
    namespace: { type: 'string', description: 'A DNS-1123 label', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' },
    app: { type: 'string', description: 'A DNS-1123 label', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' },
    plugin_id: { type: 'string', pattern: '^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$' },
  },
} as const;
const errorSchema = { type: 'object', properties: { error: { type: 'string' }, message: { type: 'string' } } } as const;

/** Answers 400 naming the bad part of the path before the body is read or anything is looked up. */
async function checkNames(req: FastifyRequest, reply: FastifyReply): Promise<void> {
  const p = req.params as Params;
  const bad = badResourceName(p.namespace, p.app, p.plugin_id);
  if (bad !== null) await reply.code(400).send({ error: 'invalid_name', message: bad });
}

export function resourceRoutes(
  app: FastifyInstance,
  opts: { store: SnapshotStore; writer: ConfigWriter | null; writeToken: string; readGuard?: preHandlerAsyncHookHandler },
): void {
  const { store, writer, writeToken } = opts;
  app.get<{ Params: Params }>(
    '/v1/resources/:namespace/:app/:plugin_id',
    {
      onRequest: checkNames,
      preHandler: opts.readGuard,
      schema: { summary: "The app's mesh config (ResourceSpec)", params, response: { 200: resourceSpecSchema, 404: errorSchema } },
    },
    async (req, reply) => {
      const { namespace, app: name, plugin_id: pluginId } = req.params;
      const entry = store.get(namespace, name);
      if (!entry) return notFound(reply, `no mesh config for app ${namespace}/${name}`);
      if (entry.app.pluginId !== pluginId)
        return notFound(reply, `app ${namespace}/${name} has mesh plugin ${entry.app.pluginId}, not ${pluginId}`);
      return reply.type('application/json; charset=utf-8').send(entry.resource);
    },
  );

  app.put<{ Params: Params; Body: ResourceSpec }>(
    '/v1/resources/:namespace/:app/:plugin_id',
    {
      onRequest: checkNames,
      bodyLimit: MAX_RESOURCE_BODY,
      schema: {
        summary: "Replace the app's mesh config. Needs a bearer token; the config is validated before anything is written.",
        params,
        body: resourceSpecSchema,
        response: {
          200: { type: 'object', properties: { status: { type: 'string' } } },
          400: errorSchema,
          401: errorSchema,
          403: errorSchema,
          404: errorSchema,
          409: errorSchema,
          413: errorSchema,
        },
      },
    },
    async (req, reply) => {
      const { namespace, app: name, plugin_id: pluginId } = req.params;
      if (!writer || writeToken === '') {
        return reply.code(403).send({ error: 'forbidden', message: 'writes are disabled on this discover: start it with --write-token' });
      }
      const token = bearer(req.headers.authorization);
      if (!token || !sameSecret(token, writeToken)) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({ error: 'unauthorized', message: 'a valid bearer token is required to write mesh config' });
      }
      const entry = store.get(namespace, name);
      if (entry && entry.app.pluginId !== pluginId) {
        return reply.code(409).send({
          error: 'conflict',
          message: `app ${namespace}/${name} already has mesh plugin ${entry.app.pluginId}; an app has at most one`,
        });
      }
      try {
        parseMeshConfig(req.body, namespace, name);
      } catch (err) {
        if (err instanceof ConfigError) return reply.code(400).send({ error: 'invalid_config', message: err.message });
        throw err;
      }
      try {
        await writer(namespace, name, pluginId, req.body);
      } catch (err) {
        if (err instanceof WriteRefused)
          return reply.code(err.statusCode).send({ error: err.statusCode === 409 ? 'conflict' : 'invalid_config', message: err.message });
        throw err;
      }
      return { status: 'written' };
    },
  );
}
