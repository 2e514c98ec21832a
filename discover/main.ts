// discover's entry point: wires a source, the snapshot store and the HTTP API.
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { createLogger, type Logger } from '../shared/log.ts';
import { createRegistry } from '../shared/metrics.ts';
import type { FlagSpec } from '../shared/flags.ts';
import { createDiscoverMetrics } from './metrics.ts';
import { SnapshotStore } from './snapshot/store.ts';
import { StaticSource } from './source/staticSource.ts';
import { createServer } from './http/server.ts';

export const discoverFlags: FlagSpec[] = [
  { name: 'static', type: 'string', description: 'Serve from this topology YAML file (watched for edits)' },
  { name: 'host', type: 'string', default: '0.0.0.0', description: 'Address to listen on' },
  { name: 'port', type: 'int', default: 6100, description: 'Port to listen on' },
  { name: 'write-token', type: 'string', default: '', description: 'Bearer token that PUT /v1/resources requires; writes are off without one' },
  { name: 'log-level', type: 'string', default: 'info', description: 'Log level: debug, info, warn, error' },
];

export interface DiscoverOptions {
  staticFile: string;
  host: string;
  port: number;
  writeToken?: string;
  log?: Logger;
}

export interface Discover {
  url: string;
  port: number;
  store: SnapshotStore;
  source: StaticSource;
  server: FastifyInstance;
  close(): Promise<void>;
}

/** Starts discover. Rejects (with a ConfigError naming the problem) if the first state is invalid. */
export async function startDiscover(opts: DiscoverOptions): Promise<Discover> {
  const log = opts.log ?? createLogger('discover');
  const registry = createRegistry('discover');
  const metrics = createDiscoverMetrics(registry);
  const store = new SnapshotStore(metrics, log);
  const source = new StaticSource({
    file: opts.staticFile,
    log,
    onTopology: (t) => {
      const start = performance.now();
      const r = store.apply(t);
      log.info({ apps: t.apps.size, services: t.services.size, ...r, applyMs: +(performance.now() - start).toFixed(2) }, 'topology applied');
    },
    onError: (err) => {
      metrics.configErrors.inc({ source: 'static' });
      log.error({ file: opts.staticFile, error: err.message }, 'topology edit refused; the last good state keeps serving');
    },
  });
  await source.start();
  const server = await createServer({ store, metrics, registry, log, writer: source.write, writeToken: opts.writeToken ?? '' });
  try {
    await server.listen({ host: opts.host, port: opts.port });
  } catch (err) {
    source.close();
    store.close();
    throw err;
  }
  const port = (server.server.address() as AddressInfo).port;
  const host = opts.host === '0.0.0.0' ? '127.0.0.1' : opts.host;
  log.info({ host: opts.host, port }, 'discover listening');
  return {
    url: `http://${host}:${port}`,
    port,
    store,
    source,
    server,
    async close() {
      source.close();
      store.close();
      await server.close();
    },
  };
}
