// GET /v2/snapshot/{namespace}/{app}: the app's snapshot, with ETag and long-poll.
import type { FastifyInstance, FastifyReply, preHandlerAsyncHookHandler } from 'fastify';
import { snapshotSchema } from '../../shared/snapshot.ts';
import type { SnapshotStore } from '../snapshot/store.ts';
import { sendPrebuilt } from './prebuiltResponse.ts';
import type { DiscoverMetrics } from '../metrics.ts';

export const MAX_WAIT_MS = 60_000;

/** "30" and "30s" are seconds, "500ms" milliseconds; at most 60 s. Returns null when malformed. */
export function parseWait(value: string): number | null {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)?\s*$/.exec(value);
  if (!m) return null;
  const ms = m[2] === 'ms' ? Number(m[1]) : Number(m[1]) * 1000;
  return Math.min(Math.round(ms), MAX_WAIT_MS);
}

/** The versions an If-None-Match header names: quoted, unquoted, W/ forms and lists; '*' matches any. */
export function parseIfNoneMatch(header: string): string[] {
  return header
    .split(',')
    .map((t) =>
      t
        .trim()
        .replace(/^W\//i, '')
        .replace(/^"(.*)"$/, '$1'),
    )
    .filter((t) => t !== '');
}

const errorSchema = {
  type: 'object',
  properties: { error: { type: 'string' }, message: { type: 'string' } },
} as const;

export const notFound = (reply: FastifyReply, message: string) => reply.code(404).send({ error: 'not_found', message });

export interface SnapshotRouteOptions {
  store: SnapshotStore;
  metrics: DiscoverMetrics;
  readGuard?: preHandlerAsyncHookHandler;
  // Why an app has no snapshot, when the source knows (e.g. its only mesh config was refused).
  refusal?: (namespace: string, app: string) => string | undefined;
}

export function snapshotRoutes(app: FastifyInstance, opts: SnapshotRouteOptions): void {
  const { store, metrics } = opts;
  app.get<{ Params: { namespace: string; app: string }; Querystring: { version?: string; wait?: string } }>(
    '/v2/snapshot/:namespace/:app',
    {
      preHandler: opts.readGuard,
      schema: {
        summary:
          "One app's snapshot. With version (or If-None-Match) equal to the current one and wait, held until it changes (200) or wait passes (304).",
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
          properties: {
            version: { type: 'string', maxLength: 64, description: 'The version the client holds' },
            wait: {
              type: 'string',
              pattern: '^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s)?\\s*$',
              description: 'How long to hold the request: 30 or 30s (seconds), 500ms; at most 60 s',
            },
          },
        },
        headers: { type: 'object', properties: { 'if-none-match': { type: 'string' } } },
        response: { 200: snapshotSchema, 304: { type: 'null', description: 'Not modified' }, 404: errorSchema },
      },
    },
    async (req, reply) => {
      const { namespace, app: name } = req.params;
      const entry = store.get(namespace, name);
      if (!entry) {
        metrics.snapshotsServed.inc({ result: 'not_found' });
        const why = opts.refusal?.(namespace, name);
        return notFound(reply, `no snapshot for app ${namespace}/${name}${why ? `: its mesh config was refused: ${why}` : ''}`);
      }
      const held =
        req.query.version !== undefined
          ? [req.query.version.replace(/^"(.*)"$/, '$1')]
          : req.headers['if-none-match']
            ? parseIfNoneMatch(req.headers['if-none-match'])
            : [];
      const current = held.includes(entry.snapshot.version) || held.includes('*');
      if (current && req.query.wait !== undefined) {
        const waitMs = parseWait(req.query.wait)!;
        if (waitMs > 0) {
          reply.hijack();
          store.wait(namespace, name, reply.raw, waitMs);
          return;
        }
      }
      if (current) {
        metrics.snapshotsServed.inc({ result: 'not_modified' });
        reply.hijack();
        sendPrebuilt(reply.raw, entry.notModified);
        return;
      }
      metrics.snapshotsServed.inc({ result: 'full' });
      reply.hijack();
      sendPrebuilt(reply.raw, entry.response);
    },
  );
}
