// `shoal demo`: a local mesh on an embedded static topology; nothing leaves the machine.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FlagSpec } from './shared/flags.ts';
import { createLogger } from './shared/log.ts';
import { createDiscoverLogger } from './discover/log.ts';
import { startDiscover, type Discover } from './discover/main.ts';
import { startProxy, type Proxy } from './proxy/main.ts';

export const demoFlags: FlagSpec[] = [
  { name: 'discover-port', type: 'int', default: 6100, description: 'Port of discover on 127.0.0.1' },
  { name: 'admin-port', type: 'int', default: 65533, description: "Port of the sidecar's admin endpoint on 127.0.0.1" },
  { name: 'dns-port', type: 'int', default: 5353, description: "Port of the sidecar's DNS responder on 127.0.0.1 (UDP and TCP)" },
  { name: 'log-level', type: 'string', default: 'warn', description: "Log level of the demo's pieces" },
];

// namespace default: web depends on api (HTTP, 3 endpoints), cache (TCP, 2 endpoints) and shop (HTTP), whose
// callers an HTTPRoute sends 90/10 to shop-v1 and shop-v2, and always to shop-v2 with the header x-canary: always.
export const DEMO_TOPOLOGY = `# shoal demo topology: edit this file while the demo runs; discover pushes the change.
clusterDomain: cluster.local
services:
  - name: api
    address: 127.0.0.2
    ports: [{ port: 8080, protocol: http }]
    endpoints: [127.0.10.1:8080, 127.0.10.2:8080, 127.0.10.3:8080]
  - name: cache
    address: 127.0.0.3
    ports: [{ port: 6379, protocol: tcp }]
    endpoints: [127.0.11.1:6379, 127.0.11.2:6379]
  # shop is a routing frontend without endpoints of its own: the HTTPRoute below says where its callers go.
  - name: shop
    address: 127.0.0.4
    ports: [{ port: 9080, protocol: http }]
  - name: shop-v1
    ports: [{ port: 9080, protocol: http }]
    endpoints: [127.0.12.1:9080]
  - name: shop-v2
    ports: [{ port: 9080, protocol: http }]
    endpoints: [127.0.12.2:9080]
apps:
  - name: web
    pluginId: mesh
    config:
      base_ports:
        - { port: 8000, protocol: http }
      base_services:
        - { depend_service_alias: api, port: 8080, protocol: http, options: { LBPolicy: round_robin } }
        - { depend_service_alias: cache, port: 6379, protocol: tcp }
        - { depend_service_alias: shop, port: 9080, protocol: http }
# Gateway API routes as applied to Kubernetes (docs/gateway-api.md): a canary of shop, for all its callers.
routes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: { name: shop-canary }
    spec:
      parentRefs: [{ group: "", kind: Service, name: shop, port: 9080 }]
      rules:
        - matches: [{ headers: [{ name: x-canary, value: always }] }]
          backendRefs: [{ name: shop-v2, port: 9080 }]
        - backendRefs:
            - { name: shop-v1, port: 9080, weight: 90 }
            - { name: shop-v2, port: 9080, weight: 10 }
`;

export interface DemoBackends {
  api: HttpServer[];
  cache: TcpServer[];
  /** shop-v1 and shop-v2. */
  shop: HttpServer[];
  web: HttpServer;
  close(): Promise<void>;
}

function listen(server: HttpServer | TcpServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * The demo's workloads: api-1..3 answer their name over HTTP, cache-1..2 write theirs on connect, shop-v1 and
 * shop-v2 answer their name over HTTP, web answers "web".
 */
export async function startDemoBackends(): Promise<DemoBackends> {
  const api = [1, 2, 3].map((i) =>
    createHttpServer((req, res) => {
      req.resume();
      const body = `api-${i}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    }),
  );
  const shop = [1, 2].map((i) =>
    createHttpServer((req, res) => {
      req.resume();
      const body = `shop-v${i}`;
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
      res.end(body);
    }),
  );
  const cache = [1, 2].map((i) =>
    createTcpServer((sock) => {
      sock.on('error', () => sock.destroy());
      sock.end(`cache-${i}\n`);
    }),
  );
  const web = createHttpServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
    res.end('web');
  });
  const all: Array<HttpServer | TcpServer> = [...api, ...cache, ...shop, web];
  try {
    await Promise.all([
      ...api.map((s, i) => listen(s, `127.0.10.${i + 1}`, 8080)),
      ...cache.map((s, i) => listen(s, `127.0.11.${i + 1}`, 6379)),
      ...shop.map((s, i) => listen(s, `127.0.12.${i + 1}`, 9080)),
      listen(web, '127.0.0.1', 8000),
    ]);
  } catch (err) {
    for (const s of all) s.close();
    throw err;
  }
  return {
    api,
    cache,
    shop,
    web,
    async close() {
      await Promise.all(
        all.map(
          (s) =>
            new Promise<void>((resolve) => {
              if ('closeAllConnections' in s) s.closeAllConnections();
              s.close(() => resolve());
            }),
        ),
      );
    },
  };
}

export interface Demo {
  dir: string;
  topologyFile: string;
  discover: Discover;
  proxy: Proxy;
  backends: DemoBackends;
  close(): Promise<void>;
}

export interface DemoOptions {
  discoverPort: number;
  adminPort?: number;
  dnsPort?: number;
  logLevel: string;
}

/** Starts the workloads, discover on the embedded topology, and web's sidecar (proxy + DNS), all on loopback. */
export async function startDemo(opts: DemoOptions): Promise<Demo> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-demo-'));
  const topologyFile = join(dir, 'topology.yaml');
  writeFileSync(topologyFile, DEMO_TOPOLOGY);
  const cleanups: Array<() => Promise<void>> = [async () => rmSync(dir, { recursive: true, force: true })];
  const unwind = async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
  };
  try {
    const backends = await startDemoBackends();
    cleanups.push(() => backends.close());
    const discover = await startDiscover({
      staticFile: topologyFile,
      host: '127.0.0.1',
      port: opts.discoverPort,
      log: createDiscoverLogger(opts.logLevel),
    });
    cleanups.push(() => discover.close());
    // web's sidecar: outbound on the loopbacks the snapshot assigns, inbound on 127.0.0.1:65400 -> web,
    // DNS on 127.0.0.1:<dns-port> with no upstream (the demo sends nothing beyond loopback).
    const proxy = await startProxy({
      discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
      stateFile: join(dir, 'web.snapshot.json'),
      adminHost: '127.0.0.1',
      adminPort: opts.adminPort ?? 65533,
      inboundAddress: '127.0.0.1',
      drainTimeoutMs: 1000,
      log: createLogger('proxy', opts.logLevel),
      dns: {
        host: '127.0.0.1',
        port: opts.dnsPort ?? 5353,
        upstreams: [],
        clusterDomain: 'cluster.local',
        log: createLogger('dns', opts.logLevel),
      },
    });
    cleanups.push(() => proxy.close());
    await proxy.whenReady();
    return {
      dir,
      topologyFile,
      discover,
      proxy,
      backends,
      close: unwind,
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}

export function describeDemo(demo: Demo): string {
  const d = demo.discover.url;
  return [
    'shoal demo is running (namespace default, app web, plugin mesh). Nothing listens beyond loopback.',
    '',
    `  discover         ${d}   (topology: ${demo.topologyFile}; edit it and watch the push)`,
    '  api-1..3         127.0.10.1-3:8080   HTTP, answer api-1, api-2, api-3',
    '  cache-1..2       127.0.11.1-2:6379   TCP, write cache-1, cache-2 on connect',
    '  shop-v1, shop-v2 127.0.12.1-2:9080   HTTP, answer shop-v1, shop-v2',
    '  web (the app)    127.0.0.1:8000      HTTP',
    `  web's sidecar    api -> 127.0.0.2:8080 (HTTP, round robin), cache -> 127.0.0.3:6379 (TCP),`,
    '                   shop -> 127.0.0.4:9080 (HTTP; HTTPRoute shop-canary: 90/10 over shop-v1/shop-v2),',
    `                   inbound 127.0.0.1:65400 -> web, admin http://127.0.0.1:${demo.proxy.adminPort}, DNS 127.0.0.1:${demo.proxy.dns?.udpPort}`,
    '',
    'Try:',
    '  curl http://127.0.0.2:8080/                       # api-1, api-2, api-3 in turn, through the sidecar',
    `  dig @127.0.0.1 -p ${demo.proxy.dns?.udpPort} +short api.default.svc.cluster.local   # 127.0.0.2`,
    "  curl http://127.0.0.1:65400/                      # web, through the sidecar's inbound listener",
    '  curl -s --max-time 1 telnet://127.0.0.3:6379      # cache-1 or cache-2, over TCP',
    '  curl http://127.0.0.4:9080/                       # shop-v1 about nine times in ten, else shop-v2 (HTTPRoute)',
    "  curl -H 'x-canary: always' http://127.0.0.4:9080/   # shop-v2: the route's header match",
    `  curl http://127.0.0.1:${demo.proxy.adminPort}/config_dump`,
    `  curl ${d}/v2/snapshot/default/web`,
    `  curl ${d}/v1/resources/default/web/mesh`,
    `  npx node cli.ts get default/web --discover ${d}`,
    '',
    'Ctrl-C stops everything.',
    '',
  ].join('\n');
}
