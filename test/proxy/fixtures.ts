// Shared pieces of the sidecar tests: real backends on loopback, discover from a topology, the sidecar.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { createLogger } from '../../shared/log.ts';
import { startProxy, type Proxy, type ProxyOptions } from '../../proxy/main.ts';
import { withDiscover, type TestDiscover } from '../lib/discover.ts';
import { snapshotError, snapshotVersion, type Route, type Snapshot } from '../../shared/snapshot.ts';

/** A loopback address no other test picks by chance (never 127.0.0.1, no .0/.255). */
export function randomLoopback(): string {
  const b = () => 1 + Math.floor(Math.random() * 253);
  return `127.${b()}.${b()}.${b()}`;
}

/** A port free on 127.0.0.1 now (and so on every loopback address). */
export async function freePort(): Promise<number> {
  const s = createNetServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface Backend {
  name: string;
  server: Server;
  address: string;
  port: number;
  /** "address:port" as a topology endpoint. */
  endpoint: string;
  requests: number;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, b: Backend) => void;

/** Default backend: answers its name; /headers answers the request headers as JSON. */
export const nameHandler: Handler = (req, res, b) => {
  req.resume();
  const body = req.url === '/headers' ? JSON.stringify({ name: b.name, headers: req.headers, rawHeaders: req.rawHeaders }) : b.name;
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'x-backend': b.name });
  res.end(body);
};

export async function httpBackend(t: Test, name: string, handler: Handler = nameHandler, address = randomLoopback()): Promise<Backend> {
  const b = { name, address, port: 0, endpoint: '', requests: 0 } as Backend;
  b.server = createServer((req, res) => {
    b.requests++;
    handler(req, res, b);
  });
  await new Promise<void>((resolve) => b.server.listen(0, address, resolve));
  b.port = (b.server.address() as AddressInfo).port;
  b.endpoint = `${address}:${b.port}`;
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        b.server.closeAllConnections();
        b.server.close(() => resolve());
      }),
  );
  return b;
}

export interface Sidecar {
  discover: TestDiscover;
  proxy: Proxy;
  stateFile: string;
  dir: string;
  /** Pushes a new topology and waits until the sidecar has applied a different version. */
  push(topology: string): Promise<void>;
}

export async function waitFor(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** discover on the topology, and web's sidecar (namespace default, plugin mesh) fed by it. */
export async function startSidecar(t: Test, topology: string, opts: Partial<ProxyOptions> = {}): Promise<Sidecar> {
  const discover = await withDiscover(t, topology);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-proxy-test-'));
  const stateFile = join(dir, 'state.json');
  const proxy = await startProxy({
    discoverUrl: `${discover.url}/v1/resources/default/web/mesh`,
    stateFile,
    adminHost: '127.0.0.1',
    adminPort: 0,
    inboundAddress: randomLoopback(),
    drainTimeoutMs: 2000,
    // Teardown needs no second of quiet: the drain itself is tested with the CLI's (test/proxy/drain.test.ts).
    drainQuietMs: 100,
    log: createLogger('proxy', process.env.SHOAL_TEST_LOG ?? 'silent'),
    ...opts,
  });
  t.teardown(async () => {
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await proxy.whenReady();
  return {
    discover,
    proxy,
    stateFile,
    dir,
    async push(topology: string) {
      const before = proxy.version;
      discover.edit(topology);
      await waitFor(() => proxy.version !== before, 'the sidecar to apply the pushed snapshot');
    },
  };
}

/** A service entry pinned to its own loopback address (the listener the app would dial). */
export function service(name: string, address: string, port: number, endpoints: string[], protocol = 'http'): string {
  return `  - { name: ${name}, address: ${address}, ports: [{ port: ${port}, protocol: ${protocol} }], endpoints: [${endpoints.map((e) => JSON.stringify(e)).join(', ')}] }\n`;
}

/** The address:port of an outbound listener in the applied snapshot, by name. */
export function listenerUrl(proxy: Proxy, name: string): string {
  let found = '';
  proxy.onSnapshot((s) => {
    const l = s.outbound.find((x) => x.name === name);
    if (l) found = `http://${l.address}:${l.port}`;
  });
  if (found === '') throw new Error(`no outbound listener ${name}`);
  return found;
}

/** Counts how often each body comes back over n sequential requests. */
export async function tally(n: number, fetchOne: (i: number) => Promise<string>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const k = await fetchOne(i);
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

export function uniqueName(prefix: string): string {
  return `${prefix}${Math.random().toString(36).slice(2, 8)}`;
}

/** A sidecar fed by a snapshot the test edits directly (routes discover does not write yet, e.g. Gateway API ones). */
export interface RoutedSidecar {
  proxy: Proxy;
  /** The snapshot as served now (edit through setRoutes). */
  snapshot: Snapshot;
  /** Replaces an outbound listener's routes and waits until the sidecar has applied them. */
  setRoutes(listener: string, routes: Route[]): Promise<void>;
}

/**
 * discover builds the snapshot from the topology; a small stand-in then serves it (long-poll as discover
 * does), so a test can put any Route the contract allows on a listener. Cluster names: snapshot.clusters.
 */
export async function startRoutedSidecar(t: Test, topology: string, opts: Partial<ProxyOptions> = {}): Promise<RoutedSidecar> {
  const discover = await withDiscover(t, topology);
  const got = await fetch(`${discover.url}/v2/snapshot/default/web`);
  if (got.status !== 200) throw new Error(`discover answered ${got.status} for web's snapshot`);
  let snapshot = (await got.json()) as Snapshot;
  const waiters = new Set<() => void>();
  const server = createServer((req, res) => {
    const asked = new URL(req.url ?? '/', 'http://x').searchParams.get('version');
    const answer = () => {
      if (asked !== null && asked === snapshot.version) {
        res.writeHead(304);
        res.end();
        return;
      }
      const body = JSON.stringify(snapshot);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    };
    if (asked !== null && asked === snapshot.version) {
      // Long-poll: answer at the next edit, or after a second.
      const done = () => {
        clearTimeout(timer);
        waiters.delete(done);
        answer();
      };
      const timer = setTimeout(done, 1000);
      waiters.add(done);
      return;
    }
    answer();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const w of [...waiters]) w();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const port = (server.address() as AddressInfo).port;
  const dir = mkdtempSync(join(tmpdir(), 'shoal-proxy-test-'));
  const proxy = await startProxy({
    discoverUrl: `http://127.0.0.1:${port}/v2/snapshot/default/web`,
    stateFile: join(dir, 'state.json'),
    adminHost: '127.0.0.1',
    adminPort: 0,
    inboundAddress: randomLoopback(),
    drainTimeoutMs: 2000,
    drainQuietMs: 100,
    waitSeconds: 1,
    log: createLogger('proxy', process.env.SHOAL_TEST_LOG ?? 'silent'),
    ...opts,
  });
  t.teardown(async () => {
    await proxy.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await proxy.whenReady();
  return {
    proxy,
    get snapshot() {
      return snapshot;
    },
    async setRoutes(listener: string, routes: Route[]) {
      const next = structuredClone(snapshot);
      const l = next.outbound.find((x) => x.name === listener);
      if (!l) throw new Error(`no outbound listener ${listener} in ${next.outbound.map((x) => x.name).join(', ')}`);
      l.routes = routes;
      next.version = snapshotVersion(next);
      const err = snapshotError(next);
      if (err !== null) throw new Error(err);
      snapshot = next;
      for (const w of [...waiters]) w();
      await waitFor(() => proxy.version === next.version, `the sidecar to apply ${next.version}`);
    },
  };
}
