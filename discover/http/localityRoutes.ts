// GET /v2/locality/{namespace}/{app}?node=NAME: the zone of the node a sidecar runs on, from the
// Node's topology.kubernetes.io/zone label, for a sidecar started with --node and no --zone. Read
// like the app's snapshot (same guard), and kept out of the snapshot, which is one per app.
import type { FastifyInstance, preHandlerAsyncHookHandler } from 'fastify';

export interface LocalityRouteOptions {
  readGuard?: preHandlerAsyncHookHandler;
  /** A node's zone ('' when it has no zone label), undefined when the node is not known; absent: no Node information (static topology). */
  nodeZone?: (node: string) => string | undefined;
}

export function localityRoutes(app: FastifyInstance, opts: LocalityRouteOptions): void {
  app.get<{ Params: { namespace: string; app: string }; Querystring: { node: string } }>(
    '/v2/locality/:namespace/:app',
    {
      preHandler: opts.readGuard,
      schema: {
        summary: "The zone of the node a sidecar of this app runs on (the Node's topology.kubernetes.io/zone label).",
        params: {
          type: 'object',
          required: ['namespace', 'app'],
          properties: {
            namespace: { type: 'string', minLength: 1, maxLength: 253 },
            app: { type: 'string', minLength: 1, maxLength: 253 },
          },
        },
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['node'],
          properties: {
            node: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$', description: 'The node name (spec.nodeName)' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['node', 'zone'],
            properties: { node: { type: 'string' }, zone: { type: 'string', description: '"" when the node has no zone label' } },
          },
          404: { type: 'object', properties: { error: { type: 'string' }, message: { type: 'string' } } },
        },
      },
    },
    async (req, reply) => {
      const { node } = req.query;
      if (!opts.nodeZone)
        return reply.code(404).send({
          error: 'no_node_information',
          message: 'this discover serves a static topology and knows no nodes: give the sidecar --zone',
        });
      const zone = opts.nodeZone(node);
      if (zone === undefined) return reply.code(404).send({ error: 'not_found', message: `node ${node} is not known (yet)` });
      return { node, zone };
    },
  );
}
