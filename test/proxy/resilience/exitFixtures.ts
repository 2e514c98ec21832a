// Pieces of the permit and retry-rule tests: one sidecar with many dependencies (each its own
// listener and cluster), HTTP/1.1 and h2c backends that fail in a chosen way and count what they saw,
// and the check that every counter of the cluster's limits is back to zero.
import { createServer as createH2Server, constants as h2, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';
import { freePort, httpBackend, randomLoopback, service, startSidecar, type Backend, type Sidecar } from '../fixtures.ts';
import { configDump } from './load.ts';

/** How a backend answers: normally, 503, a reset once the request is in, never (until torn down). */
export type Behaviour = 'ok' | '503' | 'reset' | 'hang' | 'unavailable';

/** An HTTP/1.1 backend with a behaviour; the whole request body is read before it acts. */
export function h1Backend(t: Test, name: string, behaviour: Behaviour, address = randomLoopback()): Promise<Backend> {
  return httpBackend(
    t,
    name,
    (req, res) => {
      req.resume();
      req.on('end', () => {
        switch (behaviour) {
          case 'reset':
            req.socket.destroy();
            return;
          case 'hang':
            return;
          case '503':
            res.writeHead(503, { 'content-length': 2, 'x-backend': name });
            res.end('no');
            return;
          default:
            res.writeHead(200, { 'content-length': Buffer.byteLength(name), 'x-backend': name });
            res.end(name);
        }
      });
    },
    address,
  );
}

export interface H2Backend {
  name: string;
  endpoint: string;
  server: Http2Server;
  /** Streams seen (each one a request or gRPC call). */
  requests: number;
  /** Streams open now. */
  open: Set<ServerHttp2Stream>;
}

/** An h2c backend with a behaviour; gRPC calls (content-type application/grpc) get gRPC answers. */
export async function h2Backend(t: Test, name: string, behaviour: Behaviour, address = randomLoopback()): Promise<H2Backend> {
  const b: H2Backend = { name, endpoint: '', server: createH2Server(), requests: 0, open: new Set() };
  b.server.on('stream', (stream, headers) => {
    b.requests++;
    b.open.add(stream);
    stream.on('close', () => b.open.delete(stream));
    stream.on('error', () => {});
    stream.resume();
    const grpc = String(headers['content-type'] ?? '').startsWith('application/grpc');
    stream.on('end', () => {
      if (stream.destroyed) return;
      switch (behaviour) {
        case 'reset':
          stream.close(h2.NGHTTP2_INTERNAL_ERROR);
          return;
        case 'hang':
          return;
        case '503':
          stream.respond({ ':status': 503, 'x-backend': name }, { endStream: true });
          return;
        case 'unavailable':
          stream.respond(
            {
              ':status': 200,
              'content-type': 'application/grpc',
              'grpc-status': '14',
              'grpc-message': `${name} unavailable`,
              'x-backend': name,
            },
            { endStream: true },
          );
          return;
        default:
          if (grpc) {
            stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'x-backend': name }, { waitForTrailers: true });
            stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
            stream.end(Buffer.alloc(5));
          } else {
            stream.respond({ ':status': 200, 'content-type': 'text/plain', 'x-backend': name });
            stream.end(name);
          }
      }
    });
  });
  await new Promise<void>((resolve) => b.server.listen(0, address, resolve));
  b.endpoint = `${address}:${(b.server.address() as AddressInfo).port}`;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of b.open) s.close(h2.NGHTTP2_CANCEL);
        b.server.close(() => resolve());
      }),
  );
  return b;
}

/** A dependency of web: its own service, listener and cluster. options: a YAML flow map body. */
export interface Dep {
  name: string;
  protocol: 'http' | 'http2' | 'grpc' | 'tcp';
  endpoints: string[];
  options?: string;
}

export interface DepSidecar {
  s: Sidecar;
  /** Each dependency's listener, "address:port" by dependency name. */
  at: Record<string, { address: string; port: number; url: string }>;
}

/** One sidecar of web with every dependency given. */
export async function depSidecar(t: Test, deps: Dep[]): Promise<DepSidecar> {
  const at: DepSidecar['at'] = {};
  let services = '';
  let base = '';
  for (const d of deps) {
    const address = randomLoopback();
    const port = await freePort();
    at[d.name] = { address, port, url: `http://${address}:${port}` };
    services += service(d.name, address, port, d.endpoints, d.protocol);
    base += `        - { depend_service_alias: ${d.name}, port: ${port}, protocol: ${d.protocol}, options: { ${d.options ?? ''} } }\n`;
  }
  const s = await startSidecar(t, `services:\n${services}apps:\n  - name: web\n    config:\n      base_services:\n${base}`);
  return { s, at };
}

interface DumpCluster {
  cluster: string;
  retries: { activeRetries: number };
  circuitBreakers: { active: number; pending: number; load: Array<{ endpoint: string; active: number; slowActive: number }> };
}

/** Every counter of every cluster that is not 0 now, named ("api.default… active=1"). */
export async function nonZero(adminPort: number): Promise<string[]> {
  const dump = (await configDump(adminPort)) as { policies: { clusters: DumpCluster[] } };
  const out: string[] = [];
  for (const c of dump.policies.clusters) {
    const cb = c.circuitBreakers;
    if (cb.active !== 0) out.push(`${c.cluster} active=${cb.active}`);
    if (cb.pending !== 0) out.push(`${c.cluster} pending=${cb.pending}`);
    if (c.retries.activeRetries !== 0) out.push(`${c.cluster} activeRetries=${c.retries.activeRetries}`);
    for (const l of cb.load) {
      if (l.active !== 0) out.push(`${c.cluster} endpoint ${l.endpoint} active=${l.active}`);
      if (l.slowActive !== 0) out.push(`${c.cluster} endpoint ${l.endpoint} slowActive=${l.slowActive}`);
    }
  }
  return out;
}

/** One cluster's counters now (the cluster whose name starts with `<dep>.`). */
export async function clusterState(adminPort: number, dep: string): Promise<{ active: number; pending: number; activeRetries: number }> {
  const dump = (await configDump(adminPort)) as { policies: { clusters: DumpCluster[] } };
  const c = dump.policies.clusters.find((x) => x.cluster.startsWith(`${dep}.`));
  if (!c) throw new Error(`no cluster for ${dep} in ${dump.policies.clusters.map((x) => x.cluster).join(', ')}`);
  return { active: c.circuitBreakers.active, pending: c.circuitBreakers.pending, activeRetries: c.retries.activeRetries };
}

/** Waits up to 3 s for every counter of every cluster to be 0; fails naming the ones that are not. */
export async function assertAllZero(t: Test, adminPort: number, exit: string): Promise<void> {
  const until = Date.now() + 3000;
  let left = await nonZero(adminPort);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 25));
    left = await nonZero(adminPort);
  }
  if (left.length === 0) t.pass(`${exit}: every counter back to 0`);
  else t.fail(`${exit}: still not 0 after 3 s: ${left.join(', ')}`);
}

/** Polls until cond holds (async), up to ms; false when it never did. */
export async function eventually(cond: () => Promise<boolean>, ms = 3000): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}
