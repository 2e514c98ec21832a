// A real @grpc/grpc-js client through the sidecar to three @grpc/grpc-js servers: per-call balancing
// on one channel, UNAVAILABLE retried elsewhere, deadlines, a 10 MB bidirectional stream, metrics.
import t, { type Test } from 'tap';
import { freePort, randomLoopback, service, startSidecar, type Sidecar } from '../fixtures.ts';
import { echoClient, echoServer, grpc, unary, type EchoServer, type Msg } from './grpcFixtures.ts';

async function threeServers(t: Test, options = ''): Promise<{ servers: EchoServer[]; target: string; sidecar: Sidecar }> {
  const servers = await Promise.all([1, 2, 3].map((i) => echoServer(t, `echo-${i}`)));
  const port = await freePort();
  const address = randomLoopback();
  const topo = `services:\n${service(
    'echo',
    address,
    port,
    servers.map((s) => s.endpoint),
    'grpc',
  )}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: echo, port: ${port}, protocol: grpc, options: { ${options} } }
`;
  const sidecar = await startSidecar(t, topo);
  return { servers, target: `${address}:${port}`, sidecar };
}

async function metricsText(s: Sidecar): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${s.proxy.adminPort}/metrics`);
  return r.text();
}

t.test('1,000 unary calls on one channel spread over the three servers', async (t) => {
  const { servers, target, sidecar } = await threeServers(t, 'LBPolicy: round_robin');
  const c = echoClient(t, target);
  const counts: Record<string, number> = {};
  const failures: string[] = [];
  // 100 calls in flight at a time, multiplexed on the channel's one connection.
  for (let i = 0; i < 1000; i += 100) {
    const batch = await Promise.all(Array.from({ length: 100 }, () => unary(c, { data: Buffer.from('hi') })));
    for (const r of batch) {
      if (r.err) failures.push(r.err.message);
      if (r.msg) counts[r.msg.server] = (counts[r.msg.server] ?? 0) + 1;
    }
  }
  t.same(failures, [], 'every call succeeded');
  t.same(Object.keys(counts).sort(), ['echo-1', 'echo-2', 'echo-3']);
  // Round robin: each gets a third; allow a wide band anyway.
  for (const [k, v] of Object.entries(counts)) t.ok(v > 250 && v < 420, `${k} answered ${v} of 1000`);
  t.equal(
    servers.reduce((n, s) => n + s.calls, 0),
    1000,
    'each call reached exactly one server',
  );
  const m = await metricsText(sidecar);
  t.match(
    m,
    /shoal_proxy_grpc_responses_total\{dependency="echo\.default:\d+",route="[^"]+",grpc_status="0"[^}]*\} 1000/,
    'grpc-status 0 counted per call',
  );
});

t.test('least request (the default) also spreads one channel over all three', async (t) => {
  const { target } = await threeServers(t);
  const c = echoClient(t, target);
  const counts: Record<string, number> = {};
  const all = await Promise.all(Array.from({ length: 150 }, () => unary(c, { data: Buffer.from('x') })));
  for (const r of all) if (r.msg) counts[r.msg.server] = (counts[r.msg.server] ?? 0) + 1;
  t.same(Object.keys(counts).sort(), ['echo-1', 'echo-2', 'echo-3']);
  for (const [k, v] of Object.entries(counts)) t.ok(v > 20, `${k} answered ${v} of 150`);
});

t.test('a server answering UNAVAILABLE is retried on another one when the route marks calls retryable', async (t) => {
  const { servers, target, sidecar } = await threeServers(t, 'LBPolicy: round_robin, RetryAttempts: 2, RetryNonIdempotent: YES');
  servers[0].fail = grpc.status.UNAVAILABLE;
  const c = echoClient(t, target);
  const results = [];
  for (let i = 0; i < 30; i++) results.push(await unary(c, { data: Buffer.from('r') }));
  const failed = results.filter((r) => r.err !== null);
  t.equal(failed.length, 0, `no call failed (${failed.map((r) => r.err?.message).join('; ')})`);
  t.ok(servers[0].calls >= 5, `the failing server was tried (${servers[0].calls} times) and its calls went elsewhere`);
  t.notOk(
    results.some((r) => r.msg?.server === 'echo-1'),
    'no answer came from the failing server',
  );
  const m = await metricsText(sidecar);
  t.notMatch(m, /grpc_status="14"/, 'the client saw no UNAVAILABLE');
});

for (const [what, options] of [
  ['the route does not mark calls retryable', 'LBPolicy: round_robin'],
  ['RetryAttempts is 0', 'LBPolicy: round_robin, RetryAttempts: 0, RetryNonIdempotent: YES'],
])
  t.test(`UNAVAILABLE is passed through when ${what}`, async (t) => {
    const { servers, target } = await threeServers(t, options);
    servers[0].fail = grpc.status.UNAVAILABLE;
    const c = echoClient(t, target);
    const results = [];
    for (let i = 0; i < 9; i++) results.push(await unary(c, {}));
    const codes = results.map((r) => r.err?.code ?? 0);
    t.equal(codes.filter((x) => x === grpc.status.UNAVAILABLE).length, 3, 'one call in three is UNAVAILABLE, as the server said');
    t.ok(
      results.filter((r) => r.err).every((r) => /echo-1 says no/.test(r.err!.details)),
      "with the server's own message",
    );
  });

t.test('a 100 ms deadline against a slow server ends DEADLINE_EXCEEDED at about 100 ms', async (t) => {
  const { target } = await threeServers(t);
  const c = echoClient(t, target);
  await unary(c, {}); // the channel is connected: the deadline measures the call alone
  const r = await unary(c, { delayMs: 2000 }, { deadline: Date.now() + 100 });
  t.equal(r.err?.code, grpc.status.DEADLINE_EXCEEDED, `status ${r.err?.code} ${r.err?.details}`);
  // Bounds for a crowded machine: well before the server's 2 s answer is what matters.
  t.ok(r.ms >= 90 && r.ms < 1500, `ended after ${r.ms.toFixed(0)} ms`);
});

t.test('bidirectional streaming echoes 10 MB', async (t) => {
  const { target } = await threeServers(t);
  const c = echoClient(t, target);
  const call = c.Bidi();
  const chunk = Buffer.alloc(64 * 1024, 7);
  const total = 10 * 1024 * 1024;
  let received = 0;
  let servers = new Set<string>();
  const done = new Promise<void>((resolve, reject) => {
    call.on('data', (m: Msg) => {
      received += m.data.length;
      servers.add(m.server);
    });
    call.on('end', resolve);
    call.on('error', reject);
  });
  let sent = 0;
  while (sent < total) {
    if (!call.write({ data: chunk })) await new Promise((r) => call.once('drain', r));
    sent += chunk.length;
  }
  call.end();
  await done;
  t.equal(received, total, 'every byte came back');
  t.equal(servers.size, 1, 'one stream stays on one server');
  servers = new Set();
});

t.test('an endpoint that refuses connections: calls are retried elsewhere, then it is ejected', async (t) => {
  const servers = await Promise.all([1, 2].map((i) => echoServer(t, `echo-${i}`)));
  const dead = `${randomLoopback()}:${await freePort()}`;
  const port = await freePort();
  const address = randomLoopback();
  const topo = `services:\n${service('echo', address, port, [...servers.map((s) => s.endpoint), dead], 'grpc')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: echo, port: ${port}, protocol: grpc, options: { LBPolicy: round_robin, ConsecutiveErrors: 2, BaseEjectionTimeMS: 30000 } }
`;
  const sidecar = await startSidecar(t, topo);
  const c = echoClient(t, `${address}:${port}`);
  const results = [];
  for (let i = 0; i < 30; i++) results.push(await unary(c, {}));
  t.equal(results.filter((r) => r.err).length, 0, 'no call failed');
  const dump = (await (await fetch(`http://127.0.0.1:${sidecar.proxy.adminPort}/config_dump`)).json()) as {
    policies: { clusters: Array<{ cluster: string; outlierDetection: { endpoints: Array<{ endpoint: string; ejected: boolean }> } }> };
  };
  const cluster = dump.policies.clusters.find((x) => x.cluster.startsWith('echo.'));
  t.same(
    cluster?.outlierDetection.endpoints.filter((e) => e.ejected).map((e) => e.endpoint),
    [dead],
    'the refusing endpoint is ejected',
  );
});
