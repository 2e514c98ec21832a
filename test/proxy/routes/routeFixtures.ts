// Shared pieces of the Gateway API route tests: backends behind one dependency's listener, a snapshot the
// test writes routes into (fixtures.ts startRoutedSidecar), and clients for each L7 path of the sidecar:
// the HTTP/1.1 fast path, node:http (the fast path hands a connection over at a header it leaves to node:
// Proxy-Connection here), and h2c.
import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect as h2connect, createServer as createH2Server, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import type { Route } from '../../../shared/snapshot.ts';
import { freePort, httpBackend, randomLoopback, startRoutedSidecar, type Backend, type Handler, type RoutedSidecar } from '../fixtures.ts';

/** What a test backend was sent: method, target, headers, body (the last `keep` of them). */
export interface Seen {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}
export type RouteBackendServer = Backend & { seen: Seen[]; failures: Map<string, number> };

/**
 * One behaviour for HTTP/1.1 and h2c test backends, driven by request headers: x-delay-ms waits;
 * x-fail-times: N with x-fail-key: K answers x-fail-code (default 500) to the first N requests of key K
 * (x-fail-delay-ms: those failures may instead be slow); x-echo: 1 answers what it was sent as JSON;
 * otherwise the body is the backend's name. Every response carries x-backend.
 */
function behave(b: RouteBackendServer, s: Seen, reply: (status: number, headers: Record<string, string>, body: string) => void): void {
  b.requests++;
  b.seen.push(s);
  if (b.seen.length > 500) b.seen.shift();
  const h = s.headers;
  const key = String(h['x-fail-key'] ?? '');
  const times = Number(h['x-fail-times'] ?? 0);
  let status = 200;
  let delay = Number(h['x-delay-ms'] ?? 0);
  if (key !== '' && times > 0) {
    const n = b.failures.get(key) ?? 0;
    b.failures.set(key, n + 1);
    if (n < times) {
      if (h['x-fail-delay-ms'] !== undefined) delay = Number(h['x-fail-delay-ms']);
      else status = Number(h['x-fail-code'] ?? 500);
    }
  }
  const body = h['x-echo'] === '1' ? JSON.stringify({ name: b.name, ...s }) : b.name;
  const go = () => reply(status, { 'content-type': 'text/plain', 'x-backend': b.name, 'x-from-backend': 'kept' }, body);
  if (delay > 0) setTimeout(go, delay);
  else go();
}

async function h1Backend(t: Test, name: string): Promise<RouteBackendServer> {
  let self: RouteBackendServer | null = null;
  const handler: Handler = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      self!.requests--; // httpBackend counted it already
      behave(
        self!,
        { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() },
        (status, headers, body) => {
          if (res.destroyed) return;
          res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(body) });
          res.end(body);
        },
      );
    });
  };
  const b = (await httpBackend(t, name, handler)) as RouteBackendServer;
  b.seen = [];
  b.failures = new Map();
  self = b;
  return b;
}

async function h2cBackend(t: Test, name: string): Promise<RouteBackendServer> {
  const address = randomLoopback();
  const server = createH2Server();
  const b = {
    name,
    address,
    port: 0,
    endpoint: '',
    requests: 0,
    seen: [],
    failures: new Map(),
    server: server as unknown,
  } as unknown as RouteBackendServer;
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('error', () => {});
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      behave(
        b,
        {
          method: String(headers[':method']),
          url: String(headers[':path']),
          headers: headers as IncomingHttpHeaders,
          body: Buffer.concat(chunks).toString(),
        },
        (status, hs, body) => {
          if (stream.destroyed) return;
          stream.respond({ ':status': status, ...hs });
          stream.end(body);
        },
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  b.port = (server.address() as AddressInfo).port;
  b.endpoint = `${address}:${b.port}`;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open sessions keep close from finishing.
        setTimeout(resolve, 200);
      }),
  );
  return b;
}

export type Path = 'fast' | 'node' | 'h2c';

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface RouteSetup {
  sidecar: RoutedSidecar;
  /** Backends by name, each its own service and cluster. */
  backends: Record<string, RouteBackendServer>;
  /** The cluster of each backend's service. */
  cluster: Record<string, string>;
  /** The dependency's listener (the routes under test go here) and the address the app dials. */
  listener: string;
  authority: string;
  url: string;
  setRoutes(routes: Route[]): Promise<void>;
  send(path: Path, method: string, target: string, headers?: Record<string, string>, body?: string): Promise<Reply>;
}

/**
 * Services: "api" (the dependency the app dials; its own endpoint answers "api") and one per backend
 * name; the listener of api is the one whose routes the test sets. protocol: http or http2 (h2c listener).
 */
export async function routeSetup(t: Test, names: string[], opts: { protocol?: 'http' | 'http2' } = {}): Promise<RouteSetup> {
  const protocol = opts.protocol ?? 'http';
  const backends: Record<string, RouteBackendServer> = {};
  for (const n of ['api', ...names]) backends[n] = protocol === 'http2' ? await h2cBackend(t, n) : await h1Backend(t, n);
  const port = await freePort();
  const address = randomLoopback();
  let services = '';
  let deps = '';
  for (const n of ['api', ...names]) {
    const a = n === 'api' ? address : randomLoopback();
    const p = n === 'api' ? port : await freePort();
    const proto = protocol;
    services += `  - { name: ${n}, address: ${a}, ports: [{ port: ${p}, protocol: ${proto} }], endpoints: [${JSON.stringify(backends[n].endpoint)}] }\n`;
    deps += `        - { depend_service_alias: ${n}, port: ${p}, protocol: ${proto} }\n`;
  }
  const sidecar = await startRoutedSidecar(t, `services:\n${services}apps:\n  - name: web\n    config:\n      base_services:\n${deps}`);
  const s = sidecar.snapshot;
  const l = s.outbound.find((x) => x.address === address && x.port === port);
  if (!l) throw new Error(`no outbound listener on ${address}:${port}`);
  const cluster: Record<string, string> = {};
  for (const n of ['api', ...names]) {
    const c = s.clusters.find((x) => x.endpoints.some((e) => `${e.address}:${e.port}` === backends[n].endpoint));
    if (!c) throw new Error(`no cluster for ${n}`);
    cluster[n] = c.name;
  }
  const authority = `${address}:${port}`;
  const fastAgent = new Agent({ keepAlive: true, maxSockets: 4 });
  const nodeAgent = new Agent({ keepAlive: true, maxSockets: 4 });
  let h2: ClientHttp2Session | null = null;
  t.teardown(() => {
    fastAgent.destroy();
    nodeAgent.destroy();
    h2?.destroy();
  });
  const send = (path: Path, method: string, target: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> => {
    if (path === 'h2c') {
      if (h2 === null || h2.destroyed || h2.closed) {
        h2 = h2connect(`http://${authority}`);
        h2.on('error', () => {});
      }
      const session = h2;
      return new Promise((resolve, reject) => {
        const st = session.request(
          { ':method': method, ':path': target, ':authority': headers.host ?? authority, ...withoutHost(headers) },
          { endStream: body === undefined },
        );
        let status = 0;
        let hs: IncomingHttpHeaders = {};
        const chunks: Buffer[] = [];
        st.on('response', (h) => {
          status = Number(h[':status']);
          hs = h as IncomingHttpHeaders;
        });
        st.on('data', (c: Buffer) => chunks.push(c));
        st.on('end', () => resolve({ status, headers: hs, body: Buffer.concat(chunks).toString() }));
        st.on('error', reject);
        if (body !== undefined) st.end(body);
      });
    }
    return new Promise((resolve, reject) => {
      const h: Record<string, string> = { ...headers };
      // A header the fast path leaves to node:http: the connection is handed over (proxy/http/h1/requestHead.ts).
      if (path === 'node') h['proxy-connection'] = 'keep-alive';
      if (body !== undefined) h['content-length'] = String(Buffer.byteLength(body));
      const req = httpRequest(
        { host: address, port, method, path: target, headers: h, agent: path === 'fast' ? fastAgent : nodeAgent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  };
  return {
    sidecar,
    backends,
    cluster,
    listener: l.name,
    authority,
    url: `http://${authority}`,
    setRoutes: (routes) => sidecar.setRoutes(l.name, routes),
    send,
  };
}

function withoutHost(h: Record<string, string>): Record<string, string> {
  const out = { ...h };
  delete out.host;
  return out;
}

/** A route to one cluster for every path, plus what the test adds. */
export function route(cluster: string, extra: Partial<Route> = {}): Route {
  return {
    domains: ['*'],
    prefix: '/',
    headers: [],
    backends: [{ cluster, weight: 1 }],
    source: 'HTTPRoute default/test rule 0',
    ...extra,
  };
}

/** The HTTP/1.1 paths, and h2c when the listener speaks it. */
export const H1_PATHS: Path[] = ['fast', 'node'];
