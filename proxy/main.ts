// The sidecar's entry point: wires the config client, clusters, listeners, admin and metrics.
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FlagSpec, FlagValues } from '../shared/flags.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import type { Snapshot } from '../shared/snapshot.ts';
import { SnapshotClient, snapshotUrl } from './snapshotClient.ts';
import { AccessLog } from './accessLog.ts';
import { createAdminServer } from './admin/adminServer.ts';
import { ClusterSet } from './cluster/clusterSet.ts';
import { SnapshotApplier } from './listener/snapshotApplier.ts';
import { ListenerSet } from './listener/listenerSet.ts';
import { ProxyMetrics } from './metrics.ts';
import { MeshTls } from './tls/meshTls.ts';
import { lookUpZone, parseLocalityFlags } from './locality/localityLookup.ts';
import { DEFAULT_WARM_UP_REQUESTS, parseWarmUpRequests, warmUp } from './warmUp.ts';
import { parseTracingFlags, tracingFlags, type TracingOptions } from './tracing/tracingFlags.ts';
import type { DnsResponder, DnsResponderOptions } from '../dns/main.ts';

export const proxyFlags: FlagSpec[] = [
  {
    name: 'discover-url',
    type: 'string',
    description: 'Where the mesh config lives: http://<discover>:6100/v1/resources/{ns}/{app}/{plugin_id} (plain DISCOVER_URL is read too)',
  },
  {
    name: 'namespace',
    type: 'string',
    description: "The app's namespace when the discover URL does not name it (plain NAMESPACE is read too)",
  },
  { name: 'app', type: 'string', description: 'The app when the discover URL does not name it (plain SERVICE_ALIAS is read too)' },
  { name: 'plugin-id', type: 'string', description: "The app's mesh plugin id (plain PLUGIN_ID is read too)" },
  {
    name: 'token-file',
    type: 'string',
    description: 'File with the bearer token sent to discover (the projected service-account token; read at every poll)',
  },
  {
    name: 'state-file',
    type: 'string',
    description:
      'Where the last applied snapshot is kept, to start from when discover is down (default: <tmp>/shoal/<ns>_<app>.snapshot.json)',
  },
  { name: 'admin-host', type: 'string', default: '0.0.0.0', description: 'Address of the admin endpoint (/ready, /metrics, /config_dump)' },
  { name: 'admin-port', type: 'int', default: 65533, description: 'Port of the admin endpoint' },
  { name: 'inbound-address', type: 'string', default: '0.0.0.0', description: 'Address the inbound listen ports bind' },
  {
    name: 'drain-timeout',
    type: 'int',
    default: 20,
    description:
      'Seconds a drain (SIGTERM, POST /drain) takes at most: listeners accept until 1 s without traffic (at most half of this), then requests in flight finish',
  },
  {
    name: 'request-receive-timeout',
    type: 'int',
    default: 300,
    description:
      'Seconds an HTTP/1 request may take to arrive whole, body included, from its first byte (408 after that; 0: no bound). Bounds a client that sends a body a byte at a time',
  },
  {
    name: 'request-head-timeout',
    type: 'int',
    default: 60,
    description:
      'Seconds a client has to send a whole request head, from its first byte, and the most a request body may stay silent (408 after that)',
  },
  { name: 'access-log', type: 'bool', default: false, description: 'Log one JSON line per request (format in docs/proxy.md)' },
  { name: 'access-log-sample', type: 'int', default: 1, description: 'With --access-log, log 1 request in this many' },
  {
    name: 'warm-up-requests',
    type: 'int',
    default: DEFAULT_WARM_UP_REQUESTS,
    description:
      'Requests the sidecar sends through a private loopback listener before it reports ready, so its request path is compiled before the first real request (0: none)',
  },
  { name: 'log-level', type: 'string', default: 'info', description: 'Log level: debug, info, warn, error' },
  ...tracingFlags,
  {
    name: 'node',
    type: 'string',
    description: 'The node this pod runs on (the injector passes spec.nodeName): prefer endpoints hinted for it (docs/proxy.md, Locality)',
  },
  {
    name: 'zone',
    type: 'string',
    description: "The zone this pod runs in; without it, discover is asked for the --node's topology.kubernetes.io/zone label",
  },
];

export interface ProxyOptions extends TracingOptions {
  discoverUrl: string;
  namespace?: string;
  app?: string;
  pluginId?: string;
  stateFile?: string;
  tokenFile?: string;
  adminHost?: string;
  adminPort?: number;
  inboundAddress?: string;
  drainTimeoutMs?: number;
  /** A drain stops accepting after this long with nothing new (1 s); in-process test sidecars shorten it. */
  drainQuietMs?: number;
  /** A request head must arrive whole within this long of its first byte. */
  requestHeadTimeoutMs?: number;
  /** An HTTP/1 request, body included, must arrive whole within this long (0: no bound). */
  requestReceiveTimeoutMs?: number;
  accessLog?: boolean;
  accessLogSample?: number;
  logLevel?: string;
  log?: Logger;
  /** Requests sent through a private listener before ready (proxy/warmUp.ts); 0: none. */
  warmUpRequests?: number;
  /** Long-poll hold asked of discover, seconds. */
  waitSeconds?: number;
  /** Host the DNS responder in this process, fed with every snapshot's names (as in a pod). */
  dns?: DnsResponderOptions;
  /** Where this sidecar runs (proxy/balance/locality.ts); a node without a zone asks discover for the zone. */
  node?: string;
  zone?: string;
}

export interface Proxy {
  adminPort: number;
  /** The first snapshot is applied and every listener is bound (and not draining). */
  readonly ready: boolean;
  readonly version: string;
  /** Called with every applied snapshot (and at once with the current one), e.g. to feed the DNS responder. */
  onSnapshot(listener: (s: Snapshot) => void): void;
  /** The DNS responder hosted in the sidecar, when options.dns was given. */
  readonly dns: DnsResponder | null;
  /** Resolves when the first snapshot is applied. */
  whenReady(): Promise<void>;
  /** Serves on, discouraging new requests, until traffic stops (listenerSet.ts drain); then stops accepting and lets what is in flight finish, all within the drain timeout. */
  drain(): Promise<void>;
  /** Drains (if not done yet), then closes the admin endpoint, pools and the config client. */
  close(): Promise<void>;
}

/** --request-head-timeout: whole seconds, 1 to 3600. */
function parseRequestHeadTimeout(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 3600)
    throw new Error(`--request-head-timeout must be whole seconds from 1 to 3600, got ${JSON.stringify(v)}`);
  return v * 1000;
}

/** --request-receive-timeout: whole seconds, 0 (no bound) to 86400. */
function parseRequestReceiveTimeout(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 86400)
    throw new Error(`--request-receive-timeout must be whole seconds from 0 (no bound) to 86400, got ${JSON.stringify(v)}`);
  return v * 1000;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** ProxyOptions from parsed flags, with the sidecar's plain env names (DISCOVER_URL, ...) as fallbacks. */
export function proxyOptions(values: FlagValues, env: NodeJS.ProcessEnv = process.env): ProxyOptions {
  const discoverUrl = str(values['discover-url']) ?? str(env.DISCOVER_URL);
  if (!discoverUrl)
    throw new Error('proxy needs --discover-url (or DISCOVER_URL): http://<discover>:6100/v1/resources/{ns}/{app}/{plugin_id}');
  return {
    discoverUrl,
    namespace: str(values.namespace) ?? str(env.NAMESPACE),
    app: str(values.app) ?? str(env.SERVICE_ALIAS),
    pluginId: str(values['plugin-id']) ?? str(env.PLUGIN_ID),
    stateFile: str(values['state-file']),
    tokenFile: str(values['token-file']),
    adminHost: str(values['admin-host']),
    adminPort: typeof values['admin-port'] === 'number' ? values['admin-port'] : undefined,
    inboundAddress: str(values['inbound-address']),
    drainTimeoutMs: typeof values['drain-timeout'] === 'number' ? values['drain-timeout'] * 1000 : undefined,
    requestHeadTimeoutMs:
      values['request-head-timeout'] === undefined ? undefined : parseRequestHeadTimeout(values['request-head-timeout']),
    requestReceiveTimeoutMs:
      values['request-receive-timeout'] === undefined ? undefined : parseRequestReceiveTimeout(values['request-receive-timeout']),
    accessLog: values['access-log'] === true,
    accessLogSample: typeof values['access-log-sample'] === 'number' ? values['access-log-sample'] : undefined,
    logLevel: str(values['log-level']),
    warmUpRequests: values['warm-up-requests'] === undefined ? undefined : parseWarmUpRequests(values['warm-up-requests']),
    ...parseTracingFlags(values),
    ...parseLocalityFlags(values),
  };
}

export async function startProxy(opts: ProxyOptions): Promise<Proxy> {
  const log = opts.log ?? createLogger('proxy', opts.logLevel ?? 'info');
  const url = snapshotUrl(opts.discoverUrl, opts.namespace, opts.app);
  const [ns, app] = new URL(url).pathname.split('/').slice(3).map(decodeURIComponent);
  const stateFile = opts.stateFile ?? join(tmpdir(), 'shoal', `${ns}_${app}.snapshot.json`);
  const drainTimeoutMs = opts.drainTimeoutMs ?? 20_000;
  const metrics = new ProxyMetrics();
  const accessLog = opts.accessLog ? new AccessLog(log, opts.accessLogSample ?? 1) : null;
  // Tracing's code loads only when it is on: off, the request paths see a null tracer and nothing more.
  const tracing = opts.otlpEndpoint
    ? (await import('./tracing/startTracing.ts')).startTracing({
        url: opts.otlpEndpoint,
        ratio: opts.traceSampleRatio,
        namespace: ns,
        app,
        log,
        registry: metrics.registry,
      })
    : null;
  const clusters = new ClusterSet(drainTimeoutMs + 10_000, metrics);
  clusters.setLocality({ node: opts.node ?? '', zone: opts.zone ?? '' });
  const listeners = new ListenerSet({
    log,
    metrics,
    accessLog,
    drainTimeoutMs,
    drainQuietMs: opts.drainQuietMs,
    requestHeadTimeoutMs: opts.requestHeadTimeoutMs ?? 60_000,
    requestReceiveTimeoutMs: opts.requestReceiveTimeoutMs ?? 300_000,
  });
  const applier = new SnapshotApplier({ clusters, listeners, metrics, log, inboundAddress: opts.inboundAddress ?? '0.0.0.0' });
  // Workload identity (proxy/tls): a certificate from the mesh CA on discover, mTLS to meshed peers, inbound gates.
  const meshTls = new MeshTls({ log, registry: metrics.registry, caUrl: new URL(url).origin, tokenFile: opts.tokenFile });
  listeners.meshTls = meshTls;
  applier.meshTls = meshTls;
  const client = new SnapshotClient({
    url,
    stateFile,
    log,
    waitSeconds: opts.waitSeconds,
    tokenFile: opts.tokenFile,
    onSnapshot: (s, source) => applier.apply(s, source),
    onRefused: () => metrics.configErrors.labels('refused').inc(),
    onPollError: () => metrics.configErrors.labels('unreachable').inc(),
  });

  let draining: Promise<void> | null = null;
  let closing: Promise<void> | null = null;
  const drain = (): Promise<void> => {
    draining ??= (async () => {
      log.info(
        { timeoutMs: drainTimeoutMs, listeners: listeners.size },
        'draining: still accepting, discouraging new requests, until traffic stops',
      );
      await listeners.drain(drainTimeoutMs);
      log.info('drained');
    })();
    return draining;
  };
  const warmUpRequests = parseWarmUpRequests(opts.warmUpRequests ?? DEFAULT_WARM_UP_REQUESTS, 'warmUpRequests');
  let warmed = false;
  let warming: Promise<void> = Promise.resolve();
  const stopWarmUp = new AbortController();
  const isReady = () => warmed && applier.current !== null && listeners.allBound && draining === null;

  const admin = createAdminServer(
    {
      ready: isReady,
      readiness: () => ({
        version: applier.current?.version ?? null,
        warmingUp: !warmed,
        listeners: listeners
          .status()
          .filter((l) => !l.bound)
          .map((l) => `${l.name} (${l.key}) not bound${l.error ? `: ${l.error}` : ''}`),
        draining: draining !== null,
      }),
      configDump: () => ({
        version: applier.current?.version ?? null,
        snapshot: applier.current,
        listeners: listeners.status(),
        // Every resilience policy as the sidecar applies it (units in the names), with its live state.
        policies: { clusters: [...clusters.values()].map((c) => c.applied()), inbound: listeners.limits() },
      }),
      drain,
    },
    metrics.registry,
  );
  await new Promise<void>((resolve, reject) => {
    admin.once('error', reject);
    admin.listen(opts.adminPort ?? 65533, opts.adminHost ?? '0.0.0.0', () => {
      admin.off('error', reject);
      resolve();
    });
  });
  const adminPort = (admin.address() as AddressInfo).port;
  // DNS first: names outside the mesh resolve through it even before the first snapshot arrives.
  let dns: DnsResponder | null = null;
  if (opts.dns) {
    const { startDnsResponder } = await import('../dns/main.ts');
    try {
      dns = await startDnsResponder({ ...opts.dns, log: opts.dns.log ?? log.child({ component: 'dns' }), registry: metrics.registry });
    } catch (err) {
      await new Promise<void>((resolve) => admin.close(() => resolve()));
      throw new Error(`the DNS responder could not start on ${opts.dns.host}:${opts.dns.port}: ${(err as Error).message}`, { cause: err });
    }
    const responder = dns;
    applier.onSnapshot((s) => responder.setNames(s.dns));
  }
  log.info(
    { admin: `${opts.adminHost ?? '0.0.0.0'}:${adminPort}`, discover: url, stateFile, pluginId: opts.pluginId ?? null },
    'sidecar starting',
  );
  // The request path warms up beside the first config fetch; ready waits for both.
  warming = warmUp(warmUpRequests, log, undefined, stopWarmUp.signal).then(() => {
    warmed = true;
  });
  await client.start();
  const zoneLookup =
    opts.node && !opts.zone
      ? lookUpZone({
          url,
          node: opts.node,
          tokenFile: opts.tokenFile,
          log,
          onZone: (zone) => clusters.setLocality({ node: opts.node!, zone }),
        })
      : null;

  return {
    adminPort,
    get ready() {
      return isReady();
    },
    get version() {
      return client.version;
    },
    dns,
    onSnapshot: (fn) => applier.onSnapshot(fn),
    whenReady: () => Promise.all([client.firstSnapshot(), warming]).then(() => {}),
    drain,
    close() {
      closing ??= (async () => {
        stopWarmUp.abort(new Error('closing'));
        zoneLookup?.abort();
        await warming;
        client.close();
        meshTls.close();
        await drain();
        await tracing?.close();
        listeners.destroy();
        await clusters.destroy();
        await dns?.close();
        await new Promise<void>((resolve) => {
          admin.close(() => resolve());
          admin.closeAllConnections();
        });
        await client.closed();
      })();
      return closing;
    },
  };
}
