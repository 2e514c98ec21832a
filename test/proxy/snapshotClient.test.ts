// The config client against a real HTTP server that plays discover: URL derivation, refusal of bad
// snapshots, the state file, backoff while discover is down.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { createLogger } from '../../shared/log.ts';
import { SNAPSHOT_SCHEMA_VERSION, snapshotVersion, type Snapshot } from '../../shared/snapshot.ts';
import { SnapshotClient, snapshotUrl, writeFileAtomic } from '../../proxy/snapshotClient.ts';

function snap(endpoints: number, app = 'web'): Snapshot {
  const s: Omit<Snapshot, 'version'> = {
    schemaVersion: SNAPSHOT_SCHEMA_VERSION,
    namespace: 'default',
    app,
    pluginId: 'mesh',
    inbound: [],
    outbound: [],
    clusters: [
      {
        name: 'api.default:80',
        service: 'api',
        namespace: 'default',
        port: 80,
        protocol: 'http',
        lbPolicy: 'round_robin',
        hashHeader: '',
        policy: {
          connectTimeoutMs: 250,
          requestTimeoutMs: 15000,
          retryAttempts: 2,
          maxActiveRetries: 3,
          maxConnections: 10240,
          maxRequests: 10240,
          maxPendingRequests: 1024,
          maxRequestsPerConnection: 0,
          consecutiveErrors: 5,
          baseEjectionTimeMs: 30000,
          maxEjectionPercent: 10,
          intervalMs: 10000,
          healthyPanicThreshold: 50,
          tcpIdleTimeoutS: 7200,
        },
        endpoints: Array.from({ length: endpoints }, (_, i) => ({
          address: `10.0.0.${i + 1}`,
          port: 80,
          weight: 1,
          zone: '',
          ready: true,
          serving: true,
          terminating: false,
        })),
      },
    ],
    dns: [],
    status: { errors: [] },
  };
  return { ...s, version: snapshotVersion(s) } as Snapshot;
}

/** A stand-in for discover: serves whatever body the test sets; long-polls are answered on the next set. */
async function fakeDiscover(t: Test) {
  let body = '';
  let version = '';
  let waiting: Array<ServerResponse> = [];
  const seen: string[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    seen.push(req.url ?? '');
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.searchParams.get('version') === version && u.searchParams.has('wait')) {
      waiting.push(res);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    server,
    set(b: string, v: string) {
      body = b;
      version = v;
      for (const res of waiting) res.writeHead(200, { 'content-type': 'application/json' }).end(b);
      waiting = [];
    },
  };
}

function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => (cond() ? resolve() : Date.now() > until ? reject(new Error('timed out')) : setTimeout(tick, 10));
    tick();
  });
}

t.test('snapshotUrl derives the v2 URL from DISCOVER_URL', async (t) => {
  t.equal(snapshotUrl('http://discover.shoal:6100/v1/resources/shop/web/mesh'), 'http://discover.shoal:6100/v2/snapshot/shop/web');
  t.equal(snapshotUrl('http://d:6100/v2/snapshot/shop/web'), 'http://d:6100/v2/snapshot/shop/web');
  t.equal(snapshotUrl('http://d:6100', 'shop', 'web'), 'http://d:6100/v2/snapshot/shop/web');
  t.throws(() => snapshotUrl('http://d:6100'), /names no namespace and app/);
  t.throws(() => snapshotUrl('not a url'), /invalid DISCOVER_URL/);
  t.throws(() => snapshotUrl('http://d:6100/other/path'), /expected path \/v1\/resources/);
});

t.test('applies, long-polls, refuses bad snapshots and keeps the last good one, writes the state file', async (t) => {
  const d = await fakeDiscover(t);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'sub', 'state.json');
  const good = snap(1);
  d.set(JSON.stringify(good), good.version);
  const applied: string[] = [];
  const refused: string[] = [];
  const c = new SnapshotClient({
    url: `${d.url}/v2/snapshot/default/web`,
    stateFile,
    log: createLogger('test', 'silent'),
    onSnapshot: (s) => void applied.push(s.version),
    onRefused: (r) => void refused.push(r),
  });
  t.teardown(() => c.close());
  await c.start();
  t.same(applied, [good.version]);
  await waitFor(() => d.seen.some((u) => u.includes(`version=${good.version}`) && u.includes('wait=30s')));
  t.equal(JSON.parse(readFileSync(stateFile, 'utf8')).version, good.version, 'state file written');

  const bad = { ...snap(2), schemaVersion: 99 };
  d.set(JSON.stringify(bad), 'x');
  await waitFor(() => refused.length >= 1);
  t.match(refused[0], /unsupported snapshot schemaVersion 99/);
  t.equal(c.version, good.version, 'the last good snapshot stays');

  const tampered = { ...snap(3), version: 'ffffffffffffffff' };
  d.set(JSON.stringify(tampered), 'y');
  await waitFor(() => refused.some((r) => /does not match its content/.test(r)));
  t.ok(refused.length <= 4, `a refused snapshot is retried slowly, not in a spin (${refused.length} refusals)`);

  const other = snap(1, 'billing');
  d.set(JSON.stringify(other), 'z');
  await waitFor(() => refused.some((r) => /is for default\/billing/.test(r)));

  d.set('{not json', 'w');
  await waitFor(() => refused.some((r) => /not JSON/.test(r)));
  t.equal(c.version, good.version);
  t.equal(JSON.parse(readFileSync(stateFile, 'utf8')).version, good.version, 'the state file was not overwritten by a refused snapshot');

  const next = snap(4);
  d.set(JSON.stringify(next), next.version);
  await waitFor(() => c.version === next.version);
  t.same(applied, [good.version, next.version]);
  await waitFor(() => JSON.parse(readFileSync(stateFile, 'utf8')).version === next.version);
  t.same(readdirSync(join(dir, 'sub')), ['state.json'], 'no temp files left behind');
});

t.test('discover unreachable: starts from the state file, backs off, recovers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'state.json');
  const saved = snap(2);
  writeFileSync(stateFile, JSON.stringify(saved));
  // A port with nothing behind it (yet).
  const d = await fakeDiscover(t);
  const port = (d.server.address() as AddressInfo).port;
  d.server.closeAllConnections();
  await new Promise<void>((r) => d.server.close(() => r()));
  const errors: string[] = [];
  const sources: string[] = [];
  const c = new SnapshotClient({
    url: `http://127.0.0.1:${port}/v2/snapshot/default/web`,
    stateFile,
    log: createLogger('test', 'silent'),
    onSnapshot: (_s, source) => void sources.push(source),
    onPollError: (e) => void errors.push(e),
    backoffBaseMs: 50,
    backoffMaxMs: 200,
  });
  t.teardown(() => c.close());
  await c.start();
  t.equal(c.version, saved.version, 'serving the state file');
  t.same(sources, ['state-file']);
  await new Promise((r) => setTimeout(r, 700));
  t.ok(errors.length >= 3 && errors.length < 40, `${errors.length} retries in 0.7 s: backoff, not a spin`);

  // discover comes back on the same port with a newer snapshot.
  const newer = snap(5);
  const revived = createServer((req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(newer)));
  await new Promise<void>((r) => revived.listen(port, '127.0.0.1', r));
  t.teardown(() => {
    revived.closeAllConnections();
    revived.close();
  });
  await waitFor(() => c.version === newer.version);
  t.same(sources, ['state-file', 'discover']);
});

t.test('a corrupt state file is refused, not applied', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-client-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const stateFile = join(dir, 'state.json');
  writeFileSync(stateFile, '{"schemaVersion":1');
  const refused: string[] = [];
  const c = new SnapshotClient({
    url: 'http://127.0.0.1:1/v2/snapshot/default/web',
    stateFile,
    log: createLogger('test', 'silent'),
    onSnapshot: () => {},
    onRefused: (r) => void refused.push(r),
    firstFetchTimeoutMs: 300,
  });
  t.teardown(() => c.close());
  await c.start();
  t.equal(c.snapshot, null);
  t.match(refused[0], /state file .*not JSON/);
});

t.test('writeFileAtomic replaces content whole', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-atomic-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const f = join(dir, 'x.json');
  await writeFileAtomic(f, 'one');
  await writeFileAtomic(f, 'two');
  t.equal(readFileSync(f, 'utf8'), 'two');
  t.same(readdirSync(dir), ['x.json']);
});

t.test('sends the bearer token from the token file, read again at every poll (the kubelet rotates it)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-client-token-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, 'token');
  let accepted = 'token-1';
  let current = snap(1);
  const auth: string[] = [];
  const server = createServer((req, res) => {
    auth.push(req.headers.authorization ?? '');
    if (req.headers.authorization !== `Bearer ${accepted}`) return void res.writeHead(401).end('{"error":"unauthorized"}');
    const u = new URL(req.url ?? '/', 'http://x');
    if (u.searchParams.get('version') === current.version) return void res.writeHead(304).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(current));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/snapshot/default/web`;

  // A missing token file fails the poll with an error naming the file; nothing is applied.
  const errors: string[] = [];
  const missing = new SnapshotClient({
    url,
    stateFile: '',
    log: createLogger('test', 'silent'),
    tokenFile: join(dir, 'absent'),
    firstFetchTimeoutMs: 300,
    backoffBaseMs: 20,
    backoffMaxMs: 50,
    onSnapshot: () => void t.fail('nothing may be applied without a token'),
    onPollError: (r) => void errors.push(r),
  });
  void missing.start();
  await waitFor(() => errors.length > 0);
  missing.close();
  t.match(errors[0], new RegExp(`cannot read the token file ${join(dir, 'absent')}: ENOENT`));

  writeFileSync(tokenFile, 'token-1\n');
  const applied: string[] = [];
  const c = new SnapshotClient({
    url,
    stateFile: '',
    log: createLogger('test', 'silent'),
    tokenFile,
    waitSeconds: 0,
    backoffBaseMs: 20,
    backoffMaxMs: 50,
    onSnapshot: (s) => void applied.push(s.version),
  });
  t.teardown(() => c.close());
  await c.start();
  t.same(applied, [current.version]);
  t.equal(auth.at(-1), 'Bearer token-1', 'the token is sent, trimmed of its newline');

  // Rotation: discover now accepts only the new token, and the next poll carries it.
  writeFileSync(tokenFile, 'token-2');
  accepted = 'token-2';
  current = snap(2);
  await waitFor(() => c.version === current.version);
  t.equal(auth.at(-1), 'Bearer token-2');
});
