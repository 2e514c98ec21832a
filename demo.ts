// `shoal demo`: a local mesh on an embedded static topology; nothing leaves the machine.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FlagSpec } from './shared/flags.ts';
import { createLogger } from './shared/log.ts';
import { startDiscover, type Discover } from './discover/main.ts';

export const demoFlags: FlagSpec[] = [
  { name: 'discover-port', type: 'int', default: 6100, description: 'Port of discover on 127.0.0.1' },
  { name: 'log-level', type: 'string', default: 'warn', description: 'Log level of the demo\'s pieces' },
];

// namespace default: web depends on api (HTTP, 3 endpoints) and cache (TCP, 2 endpoints).
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
apps:
  - name: web
    pluginId: mesh
    config:
      base_ports:
        - { port: 8000, protocol: http }
      base_services:
        - { depend_service_alias: api, port: 8080, protocol: http, options: { LBPolicy: round_robin } }
        - { depend_service_alias: cache, port: 6379, protocol: tcp }
`;

export interface DemoBackends {
  api: HttpServer[];
  cache: TcpServer[];
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

/** The demo's workloads: api-1..3 answer their name over HTTP, cache-1..2 write theirs on connect, web answers "web". */
export async function startDemoBackends(): Promise<DemoBackends> {
  const api = [1, 2, 3].map((i) => createHttpServer((req, res) => {
    req.resume();
    const body = `api-${i}`;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  }));
  const cache = [1, 2].map((i) => createTcpServer((sock) => {
    sock.on('error', () => sock.destroy());
    sock.end(`cache-${i}\n`);
  }));
  const web = createHttpServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 3 });
    res.end('web');
  });
  const all: Array<HttpServer | TcpServer> = [...api, ...cache, web];
  try {
    await Promise.all([
      ...api.map((s, i) => listen(s, `127.0.10.${i + 1}`, 8080)),
      ...cache.map((s, i) => listen(s, `127.0.11.${i + 1}`, 6379)),
      listen(web, '127.0.0.1', 8000),
    ]);
  } catch (err) {
    for (const s of all) s.close();
    throw err;
  }
  return {
    api, cache, web,
    async close() {
      await Promise.all(all.map((s) => new Promise<void>((resolve) => {
        if ('closeAllConnections' in s) s.closeAllConnections();
        s.close(() => resolve());
      })));
    },
  };
}

export interface Demo {
  dir: string;
  topologyFile: string;
  discover: Discover;
  backends: DemoBackends;
  close(): Promise<void>;
}

export async function startDemo(opts: { discoverPort: number; logLevel: string }): Promise<Demo> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-demo-'));
  const topologyFile = join(dir, 'topology.yaml');
  writeFileSync(topologyFile, DEMO_TOPOLOGY);
  const backends = await startDemoBackends();
  let discover: Discover;
  try {
    discover = await startDiscover({ staticFile: topologyFile, host: '127.0.0.1', port: opts.discoverPort, log: createLogger('discover', opts.logLevel) });
  } catch (err) {
    await backends.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    dir, topologyFile, discover, backends,
    async close() {
      await discover.close();
      await backends.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function describeDemo(demo: Demo): string {
  const d = demo.discover.url;
  return [
    'shoal demo is running (namespace default, app web, plugin mesh). Nothing listens beyond loopback.',
    '',
    `  discover         ${d}   (topology: ${demo.topologyFile}; edit it and watch the push)`,
    '  api-1..3         127.0.10.1-3:8080   HTTP, answer api-1, api-2, api-3',
    '  cache-1..2       127.0.11.1-2:6379   TCP, write cache-1, cache-2 on connect',
    '  web (the app)    127.0.0.1:8000      HTTP',
    '',
    'Try:',
    `  curl ${d}/v2/snapshot/default/web`,
    `  curl ${d}/v1/resources/default/web/mesh`,
    `  node cli.ts get default/web --discover ${d}`,
    '',
    'Ctrl-C stops everything.',
    '',
  ].join('\n');
}
