// The processes the HTTP and TCP scenarios measure, all on loopback: one backend (nginx, one worker,
// a 1 KB static file), shoal's sidecar (L7 and L4 listeners, from dist/), nginx and haproxy as
// proxies with one worker or several, and http-proxy with a keep-alive agent.
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, pinned, waitHttp, type ProcessGroup } from './processes.ts';
import { SIDECAR_NODE_OPTIONS } from '../../discover/webhook/podInjector.ts';

/** The Node flags the sidecar runs with in a pod (the image's and the injected NODE_OPTIONS); the bare server gets them too. */
export const DEPLOYED_NODE_FLAGS = SIDECAR_NODE_OPTIONS.split(' ').filter(Boolean);

const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..');

function nginxConf(prefix: string, workers: number, body: string): string {
  return `worker_processes ${workers};
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  keepalive_requests 1000000;
${body}
}
`;
}

export function startNginx(group: ProcessGroup, dir: string, name: string, workers: number, body: string, cpus?: string): void {
  const prefix = join(dir, name);
  rmSync(prefix, { recursive: true, force: true });
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const file = join(prefix, 'nginx.conf');
  writeFileSync(file, nginxConf(prefix, workers, body));
  group.spawn(...pinned(cpus, 'nginx', ['-p', prefix, '-c', file, '-e', `${prefix}/error.log`]));
}

/** The backend every HTTP contender reaches: nginx, one worker, a 1 KB static file. Returns its port. */
export async function startBackend(group: ProcessGroup, dir: string): Promise<number> {
  const port = await freePort();
  const www = join(dir, 'www');
  mkdirSync(www, { recursive: true });
  writeFileSync(join(www, 'index.html'), 'x'.repeat(1024));
  // nginx started as root serves as nobody: the static file must be readable by it.
  chmodSync(dir, 0o755);
  chmodSync(www, 0o755);
  chmodSync(join(www, 'index.html'), 0o644);
  startNginx(group, dir, 'backend', 1, `  server { listen 127.0.0.1:${port}; location / { root ${www}; index index.html; } }`);
  await waitHttp(`http://127.0.0.1:${port}/`);
  return port;
}

/** nginx as a reverse proxy with upstream keep-alive. Returns its port. */
export async function startNginxProxy(
  group: ProcessGroup,
  dir: string,
  workers: number,
  backendPort: number,
  cpus?: string,
): Promise<number> {
  const port = await freePort();
  startNginx(
    group,
    dir,
    `nginx-proxy-${workers}`,
    workers,
    `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }`,
    cpus,
  );
  await waitHttp(`http://127.0.0.1:${port}/`);
  return port;
}

/** haproxy with `threads` threads: mode http in front of the HTTP backend, and mode tcp in front of tcpBackendPort when given. */
export async function startHaproxy(
  group: ProcessGroup,
  dir: string,
  threads: number,
  backendPort: number,
  tcpBackendPort?: number,
  cpus?: string,
): Promise<{ httpPort: number; tcpPort?: number }> {
  const httpPort = await freePort();
  const tcpPort = tcpBackendPort ? await freePort() : undefined;
  const file = join(dir, `haproxy-${threads}.cfg`);
  writeFileSync(
    file,
    `global
  nbthread ${threads}
  maxconn 4096
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend http_in
  mode http
  bind 127.0.0.1:${httpPort}
  default_backend http_backend
backend http_backend
  mode http
  http-reuse always
  server backend 127.0.0.1:${backendPort} maxconn 1000
${
  tcpPort
    ? `listen tcp_in
  mode tcp
  bind 127.0.0.1:${tcpPort}
  server backend 127.0.0.1:${tcpBackendPort}
`
    : ''
}`,
  );
  group.spawn(...pinned(cpus, 'haproxy', ['-db', '-f', file]));
  await waitHttp(`http://127.0.0.1:${httpPort}/`);
  return { httpPort, tcpPort };
}

/** http-proxy (the npm package) with a keep-alive agent, in its own Node process. Returns port and pid. */
export async function startHttpProxy(group: ProcessGroup, backendPort: number, cpus?: string): Promise<{ port: number; pid: number }> {
  const { info } = await group.jsonChild(
    ...pinned(cpus, process.execPath, ['--no-deprecation', join(here, 'httpProxyChild.mjs'), `http://127.0.0.1:${backendPort}`]),
  );
  await waitHttp(`http://127.0.0.1:${info.port}/`);
  return { port: info.port, pid: info.pid };
}

export interface ShoalSidecar {
  /** URL of the L7 (HTTP) outbound listener in front of the HTTP backend. */
  l7Url: string;
  /** URL of the L4 (TCP) outbound listener in front of the HTTP backend. */
  l4Url: string;
  /** Port of the L4 listener in front of tcpBackendPort, when given. */
  tcpPort?: number;
  pid: number;
  adminPort: number;
  close(): Promise<void>;
}

/**
 * shoal as in a pod: discover (in this process, from dist/) serving a static topology, and the
 * sidecar in its own process (bench/lib/proxySidecarChild.mjs, plain JavaScript from dist/).
 */
export async function startShoal(
  group: ProcessGroup,
  dir: string,
  opts: {
    backendPort: number;
    tcpBackendPort?: number;
    cpus?: string;
    nodeOptions?: string[];
    apiOptions?: string;
    sidecarOptions?: Record<string, unknown>;
  },
): Promise<ShoalSidecar> {
  const { startDiscover } = (await import(join(root, 'dist', 'discover', 'main.js'))) as typeof import('../../discover/main.ts');
  const { createLogger } = (await import(join(root, 'dist', 'shared', 'log.js'))) as typeof import('../../shared/log.ts');
  const l7Port = await freePort();
  const l4Port = await freePort();
  const tcpPort = opts.tcpBackendPort ? await freePort() : undefined;
  const l7Address = '127.77.0.7';
  const l4Address = '127.77.0.4';
  const tcpAddress = '127.77.0.5';
  const topology = join(dir, 'topology.yaml');
  writeFileSync(
    topology,
    `services:
  - { name: api, address: ${l7Address}, ports: [{ port: ${l7Port}, protocol: http }], endpoints: ["127.0.0.1:${opts.backendPort}"] }
  - { name: cache, address: ${l4Address}, ports: [{ port: ${l4Port}, protocol: tcp }], endpoints: ["127.0.0.1:${opts.backendPort}"] }
${tcpPort ? `  - { name: bulk, address: ${tcpAddress}, ports: [{ port: ${tcpPort}, protocol: tcp }], endpoints: ["127.0.0.1:${opts.tcpBackendPort}"] }\n` : ''}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${l7Port}, protocol: http${opts.apiOptions ? `, options: { ${opts.apiOptions} }` : ''} }
        - { depend_service_alias: cache, port: ${l4Port}, protocol: tcp }
${tcpPort ? `        - { depend_service_alias: bulk, port: ${tcpPort}, protocol: tcp }\n` : ''}`,
  );
  const discover = await startDiscover({ staticFile: topology, host: '127.0.0.1', port: 0, log: createLogger('discover', 'warn') });
  try {
    const { info } = await group.jsonChild(
      ...pinned(opts.cpus, process.execPath, [
        ...DEPLOYED_NODE_FLAGS,
        ...(opts.nodeOptions ?? []),
        join(here, 'proxySidecarChild.mjs'),
        JSON.stringify({
          discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
          adminHost: '127.0.0.1',
          adminPort: 0,
          inboundAddress: '127.0.0.1',
          stateFile: join(dir, 'state.json'),
          drainTimeoutMs: 1000,
          ...opts.sidecarOptions,
        }),
      ]),
    );
    const sidecar: ShoalSidecar = {
      l7Url: `http://${l7Address}:${l7Port}/`,
      l4Url: `http://${l4Address}:${l4Port}/`,
      tcpPort,
      pid: info.pid,
      adminPort: info.adminPort,
      close: () => discover.close(),
    };
    await waitHttp(sidecar.l7Url);
    await waitHttp(sidecar.l4Url);
    return sidecar;
  } catch (err) {
    await discover.close();
    throw err;
  }
}

/** The bare node:http server answering the same 1 KB body: the baseline for RSS and CPU. */
export async function startBareServer(group: ProcessGroup, cpus?: string): Promise<{ url: string; pid: number }> {
  const { info } = await group.jsonChild(
    ...pinned(cpus, process.execPath, [...DEPLOYED_NODE_FLAGS, join(here, 'proxyBareServerChild.mjs')]),
  );
  return { url: `http://127.0.0.1:${info.port}/`, pid: info.pid };
}
