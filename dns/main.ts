// The DNS responder's entry point: wires the local zone, the cache, the forwarder and the
// listeners. The sidecar calls setNames with every snapshot's dns list.
import { createLogger } from '../shared/log.ts';
import type { DnsName } from '../shared/snapshot.ts';
import { AnswerCache } from './cache.ts';
import { Forwarder } from './forwarder.ts';
import { LocalZone } from './localZone.ts';
import { DnsMetrics } from './metrics.ts';
import { checkInt, type DnsResponderOptions } from './options.ts';
import { QueryRouter } from './queryRouter.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { parseUpstream, refuseSelf } from './upstreams.ts';
import { nameKey } from './wire.ts';

export { dnsFlags, dnsOptionsFromFlags, parseStaticNames, type DnsResponderOptions } from './options.ts';

export interface DnsResponder {
  /** Replaces the local names at once (the next query sees the new table). */
  setNames(names: DnsName[]): void;
  udpPort: number;
  tcpPort: number;
  /** TCP connections open now. */
  readonly tcpConnections: number;
  metrics: DnsMetrics;
  close(): Promise<void>;
}

/** Starts the responder. Rejects with a message naming the problem (bad upstream, port taken, loop). */
export async function startDnsResponder(opts: DnsResponderOptions): Promise<DnsResponder> {
  const log = opts.log ?? createLogger('dns');
  const clusterDomain = (opts.clusterDomain ?? 'cluster.local').toLowerCase().replace(/\.$/, '');
  nameKey(clusterDomain);
  const ttl = checkInt('ttl', opts.ttl ?? 5, 0, 86400);
  const upstreams = opts.upstreams.map(parseUpstream);
  checkInt('port', opts.port, 0, 65535);
  // Known before binding when the port is fixed; checked again below for port 0.
  refuseSelf(upstreams, opts.host, opts.port);

  const cache = new AnswerCache({
    maxEntries: checkInt('cacheSize', opts.cacheSize ?? 10000, 0, 10_000_000),
    maxBytes: checkInt('cacheMaxBytes', opts.cacheMaxBytes ?? 16 * 1024 * 1024, 0, 2 ** 31),
    maxTtl: checkInt('cacheMaxTtl', opts.cacheMaxTtl ?? 3600, 0, 604800),
    maxNegativeTtl: checkInt('negativeMaxTtl', opts.negativeMaxTtl ?? 300, 0, 86400),
  });
  let forwarder: Forwarder | null = null;
  let router: QueryRouter | null = null;
  let server: DnsServer | null = null;
  const metrics = new DnsMetrics(opts.registry, {
    cacheEntries: () => cache.size,
    cacheBytes: () => cache.sizeBytes,
    localNames: () => router?.zone?.size ?? 0,
    inflight: () => forwarder?.inflight ?? 0,
    tcpConnections: () => server?.tcpConnections ?? 0,
  });
  if (upstreams.length > 0) {
    forwarder = new Forwarder({
      upstreams,
      timeoutMs: checkInt('upstreamTimeoutMs', opts.upstreamTimeoutMs ?? 2000, 1, 60000),
      maxInflight: checkInt('maxInflight', opts.maxInflight ?? 1024, 1, 60000),
      cache,
      metrics,
      log,
    });
  }
  router = new QueryRouter({ clusterDomain, cache, forwarder, metrics });
  const zoneRouter = router;

  const setNames = (names: DnsName[]): void => {
    const { zone, skipped } = LocalZone.build(names, ttl);
    zoneRouter.zone = zone;
    if (skipped.length > 0) log.warn({ skipped }, 'dns names skipped: a bare "*" or not a host name');
    log.debug({ names: zone.size }, 'dns names applied');
  };
  if (opts.names) setNames(opts.names);

  const listening = await startDnsServer({
    host: opts.host,
    port: opts.port,
    router,
    metrics,
    log,
    allowRemote: opts.allowRemote ?? false,
    tcpIdleMs: checkInt('tcpIdleMs', opts.tcpIdleMs ?? 10000, 1, 3_600_000),
    maxTcpConnections: checkInt('maxTcpConnections', opts.maxTcpConnections ?? 256, 0, 65535),
  });
  server = listening;
  try {
    refuseSelf(upstreams, opts.host, listening.udpPort);
    await forwarder?.start();
  } catch (err) {
    await listening.close();
    throw err;
  }
  log.info({ host: opts.host, port: listening.udpPort, upstreams: upstreams.map((u) => u.label), clusterDomain, ttl }, 'dns listening');
  return {
    setNames,
    udpPort: listening.udpPort,
    tcpPort: listening.tcpPort,
    get tcpConnections() {
      return listening.tcpConnections;
    },
    metrics,
    async close() {
      forwarder?.close();
      await listening.close();
      cache.clear();
    },
  };
}
