// discover's entry point: wires a source (static file or Kubernetes), the snapshot store and the HTTP API.
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import { createLogger, type Logger } from '../shared/log.ts';
import { createRegistry } from '../shared/metrics.ts';
import type { FlagSpec } from '../shared/flags.ts';
import { createDiscoverMetrics, type DiscoverMetrics } from './metrics.ts';
import { SnapshotStore } from './snapshot/store.ts';
import { StaticSource } from './source/staticSource.ts';
import { createServer } from './http/server.ts';
import type { Topology } from './topology/model.ts';

export const discoverFlags: FlagSpec[] = [
  { name: 'static', type: 'string', description: 'Serve from this topology YAML file (watched for edits)' },
  { name: 'kubernetes', type: 'bool', default: false, description: 'Serve from the Kubernetes API: Services, EndpointSlices and mesh ConfigMaps' },
  { name: 'kubeconfig', type: 'string', description: 'With --kubernetes: a kubeconfig file (default: the in-cluster service account)' },
  { name: 'cluster-domain', type: 'string', default: 'cluster.local', description: 'With --kubernetes: the cluster DNS domain' },
  { name: 'stale-after', type: 'int', default: 60, description: 'With --kubernetes: seconds a watch may stay down before /readyz fails' },
  { name: 'token-audience', type: 'string', default: 'shoal', description: 'With --kubernetes: the audience sidecar tokens must carry' },
  { name: 'insecure-reads', type: 'bool', default: false, description: 'With --kubernetes: serve snapshots without checking the caller\'s token' },
  { name: 'host', type: 'string', default: '0.0.0.0', description: 'Address to listen on' },
  { name: 'port', type: 'int', default: 6100, description: 'Port to listen on' },
  { name: 'write-token', type: 'string', default: '', description: 'Bearer token that PUT /v1/resources requires (and that may read every app); writes are off without one' },
  { name: 'log-level', type: 'string', default: 'info', description: 'Log level: debug, info, warn, error' },
];

export interface DiscoverOptions {
  staticFile?: string;
  kubernetes?: { kubeConfig?: KubeConfig; kubeconfigFile?: string; clusterDomain?: string; staleAfterMs?: number; tokenAudience?: string; insecureReads?: boolean };
  host: string;
  port: number;
  writeToken?: string;
  log?: Logger;
}

export interface Discover {
  url: string;
  port: number;
  store: SnapshotStore;
  server: FastifyInstance;
  close(): Promise<void>;
}

function onTopology(store: SnapshotStore, log: Logger) {
  return (t: Topology, affected?: Set<string>) => {
    const start = performance.now();
    const r = store.apply(t, affected);
    log.info({ apps: t.apps.size, services: t.services.size, ...r, applyMs: +(performance.now() - start).toFixed(2) }, 'topology applied');
  };
}

async function wireSource(opts: DiscoverOptions, store: SnapshotStore, metrics: DiscoverMetrics, log: Logger) {
  if (opts.staticFile) {
    const source = new StaticSource({
      file: opts.staticFile,
      log,
      onTopology: onTopology(store, log),
      onError: (err) => {
        metrics.configErrors.inc({ source: 'static' });
        log.error({ file: opts.staticFile, error: err.message }, 'topology edit refused; the last good state keeps serving');
      },
    });
    await source.start();
    return { close: async () => source.close(), writer: source.write, extra: {} };
  }
  // Loaded only in Kubernetes mode: client-node takes a second to import.
  const { KubernetesSource, loadKubeConfig } = await import('./source/kubernetes/kubernetesSource.ts');
  const { requireReader, tokenReviewer } = await import('./http/readAuth.ts');
  const k = opts.kubernetes!;
  const kubeConfig = k.kubeConfig ?? loadKubeConfig(k.kubeconfigFile);
  const source = new KubernetesSource({
    kubeConfig,
    clusterDomain: k.clusterDomain ?? 'cluster.local',
    log,
    staleAfterMs: k.staleAfterMs ?? 60_000,
    onTopology: onTopology(store, log),
    onConfigError: () => metrics.configErrors.inc({ source: 'kubernetes' }),
  });
  await source.start();
  const readGuard = k.insecureReads ? undefined : requireReader(tokenReviewer(kubeConfig, k.tokenAudience ?? 'shoal', log), opts.writeToken ?? '', (ns, app) => source.readers(ns, app), log);
  return {
    close: () => source.close(),
    writer: source.write,
    extra: { readGuard, readiness: () => source.health(), refusal: (ns: string, app: string) => source.refusal(ns, app) },
  };
}

/** Starts discover. Rejects (with a ConfigError naming the problem) if the first state is invalid. */
export async function startDiscover(opts: DiscoverOptions): Promise<Discover> {
  if (!opts.staticFile === !opts.kubernetes) throw new Error('discover needs exactly one source: a static file or Kubernetes');
  const log = opts.log ?? createLogger('discover');
  const registry = createRegistry('discover');
  const metrics = createDiscoverMetrics(registry);
  const store = new SnapshotStore(metrics, log);
  const source = await wireSource(opts, store, metrics, log);
  const server = await createServer({ store, metrics, registry, log, writer: source.writer, writeToken: opts.writeToken ?? '', ...source.extra });
  try {
    await server.listen({ host: opts.host, port: opts.port });
  } catch (err) {
    await source.close();
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
    server,
    async close() {
      await source.close();
      store.close();
      await server.close();
    },
  };
}
