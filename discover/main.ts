// discover's entry point: wires a source (static file or Kubernetes), the snapshot store and the HTTP API.
import type { FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../shared/log.ts';
import { createDiscoverLogger } from './log.ts';
import { createRegistry } from '../shared/metrics.ts';
import { readFileSync } from 'node:fs';
import { UsageError, type FlagSpec, type FlagValues } from '../shared/flags.ts';
import { webhookOptionsFromFlags } from './webhook/webhookFlags.ts';
import type { WebhookOptions } from './webhook/webhookServer.ts';
import type { ConfigWriter } from './http/resourceRoutes.ts';
import { createDiscoverMetrics, type DiscoverMetrics } from './metrics.ts';
import { availableParallelism } from 'node:os';
import { FanOutWriters } from './http/fanOut.ts';
import { FAN_OUT_MIN } from './http/prebuiltResponse.ts';
import { SnapshotStore } from './snapshot/store.ts';
import { StaticSource } from './source/staticSource.ts';
import { createServer, type ServerOptions } from './http/server.ts';

type WebhookServerOptions = Pick<WebhookOptions, 'host' | 'port' | 'certFile' | 'keyFile' | 'injector'>;
import type { Topology } from './topology/model.ts';
import { identityFlags, identityOptionsFromFlags, setupIdentity, type IdentityOptions } from './identity/identitySetup.ts';

export const MAX_FANOUT_THREADS = 8;
const AUTO_FANOUT_MAX = 3;

export const discoverFlags: FlagSpec[] = [
  { name: 'static', type: 'string', description: 'Serve from this topology YAML file (watched for edits)' },
  {
    name: 'kubernetes',
    type: 'bool',
    default: false,
    description: 'Serve from the Kubernetes API: Services, EndpointSlices and mesh ConfigMaps',
  },
  { name: 'kubeconfig', type: 'string', description: 'With --kubernetes: a kubeconfig file (default: the in-cluster service account)' },
  { name: 'cluster-domain', type: 'string', default: 'cluster.local', description: 'With --kubernetes: the cluster DNS domain' },
  { name: 'stale-after', type: 'int', default: 60, description: 'With --kubernetes: seconds a watch may stay down before /readyz fails' },
  { name: 'token-audience', type: 'string', default: 'shoal', description: 'With --kubernetes: the audience sidecar tokens must carry' },
  {
    name: 'insecure-reads',
    type: 'bool',
    default: false,
    description: "With --kubernetes: serve snapshots without checking the caller's token",
  },
  {
    name: 'host',
    type: 'string',
    description:
      'Address to listen on (default: 127.0.0.1 with --static, which serves every app to whoever reaches it; 0.0.0.0 with --kubernetes, which checks sidecar tokens)',
  },
  { name: 'port', type: 'int', default: 6100, description: 'Port to listen on' },
  {
    name: 'write-token',
    type: 'string',
    default: '',
    description: 'Bearer token that PUT /v1/resources requires (and that may read every app); writes are off without one',
  },
  {
    name: 'write-token-file',
    type: 'string',
    default: '',
    description: 'A file holding the write token (e.g. a mounted Secret), instead of --write-token',
  },
  { name: 'log-level', type: 'string', default: 'info', description: 'Log level: debug, info, warn, error' },
  {
    name: 'fanout-threads',
    type: 'string',
    default: 'auto',
    description: `Threads that write one change's answers to many long-poll waiters beside the event loop (started at ${FAN_OUT_MIN} waiters): auto (one per CPU beyond the first, at most ${AUTO_FANOUT_MAX}) or 0 to ${MAX_FANOUT_THREADS}`,
  },
  ...identityFlags,
];

export interface DiscoverOptions {
  staticFile?: string;
  kubernetes?: {
    kubeConfig?: KubeConfig;
    kubeconfigFile?: string;
    // Without a kubeconfig: where the pod's service-account files live ('' = /var/run/secrets/...; tests use a temp folder).
    inClusterPathPrefix?: string;
    clusterDomain?: string;
    staleAfterMs?: number;
    // How often to look again for the Gateway API while it is not served (default 30 s; tests shorten it).
    gatewayRecheckMs?: number;
    tokenAudience?: string;
    insecureReads?: boolean;
    // The injection webhook (discover/webhook/): served beside the API when set.
    webhook?: WebhookServerOptions;
  };
  /** Default: 127.0.0.1 for a static file (it has no read authentication), 0.0.0.0 on Kubernetes (pods connect). */
  host?: string;
  port: number;
  writeToken?: string;
  log?: Logger;
  /** Workload identity: run the mesh CA (docs/identity.md). */
  identity?: IdentityOptions;
  /** Fan-out writer threads (discover/http/fanOut.ts); default: defaultFanOutThreads(). */
  fanOutThreads?: number;
}

/**
 * One writer per CPU beyond the one the event loop runs on, at most 3: the event loop still has
 * every other request to serve. (Measured on 2 CPUs, so with 1 writer: bench/discover.ts.)
 */
export function defaultFanOutThreads(): number {
  return Math.min(AUTO_FANOUT_MAX, Math.max(0, availableParallelism() - 1));
}

/** --fanout-threads: auto or a whole number from 0 to MAX_FANOUT_THREADS. */
export function parseFanOutThreads(value: string): number {
  if (value.trim() === 'auto') return defaultFanOutThreads();
  const n = Number(value);
  if (!/^\s*[0-9]+\s*$/.test(value) || n > MAX_FANOUT_THREADS) {
    throw new UsageError(`--fanout-threads must be auto or a whole number from 0 to ${MAX_FANOUT_THREADS} (got ${JSON.stringify(value)})`);
  }
  return n;
}

export interface Discover {
  url: string;
  port: number;
  store: SnapshotStore;
  server: FastifyInstance;
  /** Resolves once the source holds its first full state (at once for a static file). */
  ready: Promise<void>;
  /** The webhook's port, when one runs. */
  webhookPort?: number;
  close(): Promise<void>;
}

/** Options of `shoal discover` from its parsed flags (discoverFlags + webhookFlags). Throws UsageError on a bad combination. */
export function discoverOptionsFromFlags(v: FlagValues, log: Logger): DiscoverOptions {
  if (!v.static === !v.kubernetes) throw new UsageError('discover needs one source: --static FILE.yaml or --kubernetes');
  if (v.webhook && !v.kubernetes)
    throw new UsageError('--webhook needs --kubernetes: the webhook reads mesh configs from the cluster and records events there');
  let writeToken = String(v['write-token'] ?? '');
  const tokenFile = String(v['write-token-file'] ?? '');
  if (tokenFile !== '') {
    if (writeToken !== '') throw new UsageError('give --write-token or --write-token-file, not both');
    try {
      writeToken = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      throw new UsageError(`cannot read --write-token-file ${JSON.stringify(tokenFile)}: ${(err as Error).message}`);
    }
    if (writeToken === '') throw new UsageError(`--write-token-file ${JSON.stringify(tokenFile)} is empty`);
  }
  let webhook: WebhookServerOptions | undefined;
  if (v.webhook) {
    try {
      webhook = webhookOptionsFromFlags(v);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  let identity: IdentityOptions | undefined;
  identity = identityOptionsFromFlags(v);
  return {
    identity,
    staticFile: v.static ? String(v.static) : undefined,
    kubernetes: v.kubernetes
      ? {
          kubeconfigFile: v.kubeconfig ? String(v.kubeconfig) : undefined,
          clusterDomain: String(v['cluster-domain'] ?? 'cluster.local'),
          staleAfterMs: Number(v['stale-after'] ?? 60) * 1000,
          tokenAudience: String(v['token-audience'] ?? 'shoal'),
          insecureReads: Boolean(v['insecure-reads']),
          webhook,
        }
      : undefined,
    host: v.host ? String(v.host) : undefined,
    port: Number(v.port ?? 6100),
    writeToken,
    log,
    fanOutThreads: parseFanOutThreads(String(v['fanout-threads'] ?? 'auto')),
  };
}

/** Whether an address given to --host only reaches this machine. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host);
}

/** Where a client on this machine reaches a server listening on host. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function onTopology(store: SnapshotStore, log: Logger) {
  return (t: Topology, affected?: Set<string>) => {
    const start = performance.now();
    const r = store.apply(t, affected);
    log.info({ apps: t.apps.size, services: t.services.size, ...r, applyMs: +(performance.now() - start).toFixed(2) }, 'topology applied');
  };
}

interface WiredSource {
  close(): Promise<void>;
  writer: ConfigWriter | null;
  extra: Pick<ServerOptions, 'readGuard' | 'readiness' | 'refusal' | 'nodeZone'>;
  // Called once the server listens: loads the first state (Kubernetes) in the background.
  start(): Promise<void>;
  webhook?: () => Promise<{ port: number; close(): Promise<void> }>;
}

async function wireSource(opts: DiscoverOptions, store: SnapshotStore, metrics: DiscoverMetrics, log: Logger): Promise<WiredSource> {
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
    // A static file is read before listening: an invalid first state fails the start.
    await source.start();
    return { close: async () => source.close(), writer: source.write, extra: {}, start: async () => undefined };
  }
  // Loaded only in Kubernetes mode: client-node takes a second to import.
  const { KubernetesSource, loadKubeConfig } = await import('./source/kubernetes/kubernetesSource.ts');
  const { requireReader, tokenReviewer, accessReviewer, eventRecorder } = await import('./http/readAuth.ts');
  const k = opts.kubernetes!;
  const kubeConfig = k.kubeConfig ?? loadKubeConfig(k.kubeconfigFile, k.inClusterPathPrefix);
  const source = new KubernetesSource({
    kubeConfig,
    clusterDomain: k.clusterDomain ?? 'cluster.local',
    log,
    staleAfterMs: k.staleAfterMs ?? 60_000,
    gatewayRecheckMs: k.gatewayRecheckMs,
    onTopology: onTopology(store, log),
    onConfigError: () => metrics.configErrors.inc({ source: 'kubernetes' }),
  });
  // Snapshots are answered 503 until the first full list: a 404 would tell a sidecar its app is gone.
  const notReady = () => (store.ready ? null : source.health().message);
  const reviewer = k.insecureReads ? null : tokenReviewer(kubeConfig, k.tokenAudience ?? 'shoal', log);
  // People (and tools) read with their own Kubernetes credential, authorized by the API server's RBAC.
  const authorizer = k.insecureReads ? null : accessReviewer(kubeConfig, log);
  const readGuard = requireReader({
    reviewer,
    authorizer,
    operatorToken: opts.writeToken ?? '',
    readers: (ns, app) => source.readers(ns, app),
    notReady,
    log,
  });
  const wh = k.webhook;
  return {
    close: () => source.close(),
    writer: source.write,
    extra: {
      readGuard,
      readiness: () => source.health(),
      refusal: (ns: string, app: string) => source.refusal(ns, app),
      nodeZone: (node: string) => source.nodeZone(node),
    },
    start: () => source.start(),
    webhook: wh
      ? async () => {
          const { startWebhook } = await import('./webhook/webhookServer.ts');
          return startWebhook({
            ...wh,
            pluginEnv: (ns, app) => source.pluginEnv(ns, app),
            explicitListenPorts: (ns, app) => source.explicitListenPorts(ns, app),
            recordEvent: eventRecorder(kubeConfig, log),
            log,
          });
        }
      : undefined,
  };
}

/**
 * Starts discover. A static file is loaded before listening (rejects with a ConfigError naming the
 * problem if its first state is invalid); Kubernetes listens at once (/healthz answers, /readyz
 * says 503) and lists in the background, retrying until the API answers: see `ready`.
 */
export async function startDiscover(opts: DiscoverOptions): Promise<Discover> {
  if (!opts.staticFile === !opts.kubernetes) throw new Error('discover needs exactly one source: a static file or Kubernetes');
  const log = opts.log ?? createDiscoverLogger();
  const registry = createRegistry('discover');
  const metrics = createDiscoverMetrics(registry);
  const store = new SnapshotStore(metrics, log);
  // Workload identity (docs/identity.md): the CA first, so the first snapshots already carry the trust bundle.
  const k8s = opts.kubernetes;
  const identity = opts.identity
    ? await setupIdentity(
        opts.identity,
        k8s
          ? async () => k8s.kubeConfig ?? (await import('./source/kubernetes/kubernetesSource.ts')).loadKubeConfig(k8s.kubeconfigFile)
          : null,
        log,
      )
    : undefined;
  store.identity = identity?.mesh;
  const fanOutThreads = opts.fanOutThreads ?? defaultFanOutThreads();
  if (fanOutThreads > 0) store.fanOut = new FanOutWriters(fanOutThreads);
  const listenHost = opts.host ?? (k8s ? '0.0.0.0' : '127.0.0.1');
  const source = await wireSource(opts, store, metrics, log);
  const server = await createServer({
    store,
    metrics,
    registry,
    log,
    writer: source.writer,
    writeToken: opts.writeToken ?? '',
    ...source.extra,
    identity: identity?.service,
  });
  let webhook: { port: number; close(): Promise<void> } | undefined;
  try {
    await server.listen({ host: listenHost, port: opts.port });
    webhook = await source.webhook?.();
  } catch (err) {
    await source.close();
    store.close();
    await server.close();
    throw err;
  }
  const port = (server.server.address() as AddressInfo).port;
  log.info({ source: opts.kubernetes ? 'kubernetes' : 'static', host: listenHost, port }, 'discover listening');
  if (!isLoopbackHost(listenHost)) {
    if (!opts.kubernetes) {
      log.warn(
        { host: listenHost, port, writes: opts.writeToken ? 'need the write token' : 'off' },
        "static discover serves every app's snapshot and mesh config to anyone who can reach this address: it has no read authentication; listen on 127.0.0.1 (the default) unless the network is trusted",
      );
    } else if (opts.kubernetes.insecureReads) {
      log.warn(
        { host: listenHost, port },
        "--insecure-reads: every app's snapshot is served to anyone who can reach this address, without a token",
      );
    }
  }
  const started = performance.now();
  const ready = source.start().then(() => {
    if (opts.kubernetes)
      log.info(
        { ms: Math.round(performance.now() - started), apps: store.topology?.apps.size ?? 0, services: store.topology?.services.size ?? 0 },
        'first full state loaded: ready',
      );
  });
  // Never unhandled: the source retries on its own and only stops when closed.
  ready.catch((err: Error) => log.error({ error: err.message }, 'source failed to start'));
  return {
    url: `http://${urlHost(listenHost)}:${port}`,
    port,
    store,
    server,
    ready,
    webhookPort: webhook?.port,
    async close() {
      await webhook?.close();
      await source.close();
      store.close();
      await server.close();
    },
  };
}
