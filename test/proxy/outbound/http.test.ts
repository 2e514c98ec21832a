// L7 outbound driven by undici and curl: balancing policies, routes, weighted split, headers, made-up errors.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import { freePort, httpBackend, listenerUrl, randomLoopback, service, startSidecar, tally, uniqueName, type Backend } from '../fixtures.ts';

const run = promisify(execFile);
const agent = new Agent({ keepAliveTimeout: 1000 });
t.teardown(() => agent.close());

async function get(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const r = await request(url, { dispatcher: agent, headers });
  return { status: r.statusCode, body: await r.body.text(), headers: r.headers };
}

async function threeBackends(t: Test): Promise<Backend[]> {
  return Promise.all([1, 2, 3].map((i) => httpBackend(t, `api-${i}`)));
}

async function oneDependency(t: Test, options: string, endpoints?: string[]) {
  const bs = await threeBackends(t);
  const port = await freePort();
  const address = randomLoopback();
  const topo = `services:\n${service('api', address, port, endpoints ?? bs.map((b) => b.endpoint))}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { ${options} } }
`;
  const s = await startSidecar(t, topo);
  return { bs, url: `http://${address}:${port}`, sidecar: s, port, address };
}

t.test('round robin visits the 3 endpoints in turn', async (t) => {
  const { url, port } = await oneDependency(t, 'LBPolicy: round_robin');
  const bodies: string[] = [];
  for (let i = 0; i < 9; i++) bodies.push((await get(`${url}/`)).body);
  t.same(new Set(bodies.slice(0, 3)).size, 3, 'three different endpoints in the first three requests');
  t.same(bodies.slice(3, 6), bodies.slice(0, 3), 'the same order again');
  t.same(bodies.slice(6, 9), bodies.slice(0, 3));
  const viaLocal = await get(`http://127.0.0.1:${port}/`);
  t.match(viaLocal.body, /^api-[123]$/, '127.0.0.1:<port> answers for a dependency port no other dependency uses');
});

for (const policy of ['least_request', 'random']) {
  t.test(`${policy} spreads over the 3 endpoints`, async (t) => {
    const { url } = await oneDependency(t, `LBPolicy: ${policy}`);
    const counts = await tally(300, async () => (await get(`${url}/`)).body);
    t.same(Object.keys(counts).sort(), ['api-1', 'api-2', 'api-3']);
    for (const [k, v] of Object.entries(counts)) t.ok(v > 50, `${k} got ${v} of 300`);
  });
}

t.test('least request prefers the endpoint with fewer requests in flight', async (t) => {
  let slowTaken = 0;
  const slow = await httpBackend(t, 'slow', (req, res) => {
    slowTaken++;
    req.resume();
    setTimeout(() => {
      res.end('slow');
    }, 300);
  });
  const fast = await Promise.all([1, 2].map((i) => httpBackend(t, `fast-${i}`)));
  const { url } = await oneDependency(t, 'LBPolicy: least_request', [slow.endpoint, ...fast.map((b) => b.endpoint)]);
  const results = await Promise.all(
    Array.from({ length: 60 }, async (_, i) => {
      await new Promise((r) => setTimeout(r, i * 5));
      return (await get(`${url}/`)).body;
    }),
  );
  const slowCount = results.filter((b) => b === 'slow').length;
  t.ok(slowCount < 15, `the slow endpoint got ${slowCount} of 60 (fair share would be 20)`);
  t.equal(slowTaken, slowCount, 'each request the slow endpoint took was answered by it: none was retried elsewhere');
});

t.test('consistent hash on a header sticks a key to one endpoint and spreads keys', async (t) => {
  const { url } = await oneDependency(t, 'LBPolicy: hash, HashHeader: x-user');
  const owners = new Map<string, Set<string>>();
  for (let u = 0; u < 60; u++) {
    for (let k = 0; k < 3; k++) {
      const r = await get(`${url}/`, { 'x-user': `user-${u}` });
      if (!owners.has(`user-${u}`)) owners.set(`user-${u}`, new Set());
      owners.get(`user-${u}`)!.add(r.body);
    }
  }
  t.ok(
    [...owners.values()].every((s) => s.size === 1),
    'every key stays on one endpoint',
  );
  const perEndpoint: Record<string, number> = {};
  for (const s of owners.values()) for (const e of s) perEndpoint[e] = (perEndpoint[e] ?? 0) + 1;
  t.same(Object.keys(perEndpoint).sort(), ['api-1', 'api-2', 'api-3'], 'keys spread over all 3');
  const noKey = await tally(60, async () => (await get(`${url}/`)).body);
  t.ok(Object.keys(noKey).length >= 2, 'requests without the header are spread');
});

t.test('endpoint weights are honoured', async (t) => {
  const bs = await threeBackends(t);
  const port = await freePort();
  const address = randomLoopback();
  const eps = bs.map((b, i) => `{ address: ${b.address}, port: ${b.port}, weight: ${i === 0 ? 6 : 2} }`).join(', ');
  const topo = `services:\n  - { name: api, address: ${address}, ports: [{ port: ${port}, protocol: http }], endpoints: [${eps}] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { LBPolicy: round_robin } }
`;
  await startSidecar(t, topo);
  const counts = await tally(100, async () => (await get(`http://${address}:${port}/`)).body);
  t.same(counts, { 'api-1': 60, 'api-2': 20, 'api-3': 20 }, 'smooth weighted round robin: exactly 6:2:2');
});

t.test('header and prefix routes, and an 80/20 split, over 1,000 requests', async (t) => {
  const [v1, v2, beta, canary] = await Promise.all(['v1', 'v2', 'beta', 'canary'].map((n) => httpBackend(t, n)));
  const port = await freePort();
  const domain = `${uniqueName('api')}.example`;
  const svc = (name: string, b: Backend) => service(name, randomLoopback(), port, [b.endpoint]);
  const topo = `services:\n${svc('api-v1', v1)}${svc('api-v2', v2)}${svc('api-beta', beta)}${svc('api-canary', canary)}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api-v1, port: ${port}, protocol: http, options: { Domains: ${domain}, Weight: 80 } }
        - { depend_service_alias: api-v2, port: ${port}, protocol: http, options: { Domains: ${domain}, Weight: 20 } }
        - { depend_service_alias: api-beta, port: ${port}, protocol: http, options: { Domains: ${domain}, Prefix: /beta } }
        - { depend_service_alias: api-canary, port: ${port}, protocol: http, options: { Domains: ${domain}, Prefix: /beta, Headers: "x-canary:1;x-user:me" } }
`;
  const s = await startSidecar(t, topo);
  const url = listenerUrl(s.proxy, `${domain}:${port}`);
  const host = { host: `${domain}:${port}` };
  const split = await tally(1000, async () => (await get(`${url}/`, host)).body);
  t.equal(split.v1 + split.v2, 1000);
  // 80/20 over 1,000: sd = sqrt(1000*.8*.2) ~ 12.6; 5 sd either side.
  t.ok(split.v1 > 737 && split.v1 < 863, `v1 got ${split.v1} of 1000 (expected ~800)`);
  const beta10 = await tally(20, async () => (await get(`${url}/beta/x`, host)).body);
  t.same(beta10, { beta: 20 }, 'prefix /beta goes to api-beta');
  const both = await tally(20, async () => (await get(`${url}/beta/x`, { ...host, 'x-canary': '1', 'x-user': 'me' })).body);
  t.same(both, { canary: 20 }, 'prefix plus both header pairs go to api-canary');
  const one = await tally(20, async () => (await get(`${url}/beta/x`, { ...host, 'x-canary': '1' })).body);
  t.same(one, { beta: 20 }, 'one header pair out of two is not a match');
  const wrongHost = await get(`${url}/`, { host: 'other.example' });
  t.equal(wrongHost.status, 404);
  t.equal(wrongHost.headers['x-shoal-error'], 'no-route');
});

t.test('headers: x-forwarded-*, x-request-id, traceparent untouched, hop-by-hop removed (curl)', async (t) => {
  const { url } = await oneDependency(t, 'LBPolicy: round_robin');
  const { stdout } = await run('curl', [
    '-sS',
    '-D',
    '-',
    `${url}/headers`,
    '-H',
    'Connection: keep-alive, X-Secret-Hop',
    '-H',
    'X-Secret-Hop: 1',
    '-H',
    'Keep-Alive: timeout=5',
    '-H',
    'TE: trailers',
    '-H',
    'Proxy-Connection: keep-alive',
    '-H',
    'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    '-H',
    'tracestate: congo=t61rcWkgMzE',
    '-H',
    'X-Forwarded-For: 10.9.8.7',
  ]);
  const [head, body] = stdout.split('\r\n\r\n');
  const seen = JSON.parse(body) as { headers: Record<string, string> };
  t.equal(seen.headers.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  t.equal(seen.headers.tracestate, 'congo=t61rcWkgMzE');
  t.equal(seen.headers['x-forwarded-for'], '10.9.8.7, 127.0.0.1', 'the client address is appended');
  t.equal(seen.headers['x-forwarded-proto'], 'http');
  t.match(seen.headers['x-request-id'], /^[0-9a-f-]{36}$/, 'a request id is made up when absent');
  t.notOk(seen.headers['x-secret-hop'], 'a header listed in Connection is removed');
  t.notOk(seen.headers.te);
  t.notOk(seen.headers['proxy-connection']);
  t.not(seen.headers['keep-alive'], 'timeout=5');
  t.match(head, /x-backend: api-/i, 'response headers come back');
  const kept = await get(`${url}/headers`, { 'x-request-id': 'abc-123' });
  t.equal(
    (JSON.parse(kept.body) as { headers: Record<string, string> }).headers['x-request-id'],
    'abc-123',
    'an existing request id is kept',
  );
  const ids = new Set<string>();
  for (let i = 0; i < 5; i++)
    ids.add((JSON.parse((await get(`${url}/headers`)).body) as { headers: Record<string, string> }).headers['x-request-id']);
  t.equal(ids.size, 5, 'made-up request ids differ');
});

t.test('made-up responses carry x-shoal-error', async (t) => {
  const hang = await httpBackend(t, 'hang', (req) => {
    req.resume();
  });
  const port = await freePort();
  const dead = await freePort();
  const [a1, a2, a3] = [randomLoopback(), randomLoopback(), randomLoopback()];
  const topo = `services:
${service('empty', a1, port, [])}${service('dead', a2, port, [`127.0.0.1:${dead}`])}${service('slow', a3, port, [hang.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: empty, port: ${port}, protocol: http }
        - { depend_service_alias: dead, port: ${port}, protocol: http }
        - { depend_service_alias: slow, port: ${port}, protocol: http, options: { RequestTimeoutMS: 300 } }
`;
  await startSidecar(t, topo);
  const none = await get(`http://${a1}:${port}/`);
  t.equal(none.status, 503);
  t.equal(none.headers['x-shoal-error'], 'no-endpoints');
  const reset = await get(`http://${a2}:${port}/`);
  t.equal(reset.status, 502);
  t.equal(reset.headers['x-shoal-error'], 'upstream-reset');
  const started = Date.now();
  const slow = await get(`http://${a3}:${port}/`);
  t.equal(slow.status, 504);
  t.equal(slow.headers['x-shoal-error'], 'request-timeout');
  t.ok(Date.now() - started < 3000, "the deadline is the cluster's RequestTimeoutMS");
  const { stdout } = await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${a1}:${port}/`]);
  t.equal(stdout, '503', 'curl sees the same');
});

t.test('an endpoint that never accepts: 504 connect-timeout after ConnectionTimeoutMS', async (t) => {
  // A listener whose accept queue is full: the SYN is dropped and connect() hangs, as with a dead host.
  const { spawn } = await import('node:child_process');
  const py = spawn(
    'python3',
    [
      '-c',
      `
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)
print(s.getsockname()[1], flush=True)
fill = []
for i in range(3):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(('127.0.0.1', s.getsockname()[1]))
    except BlockingIOError: pass
    fill.append(c)
time.sleep(60)
`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.teardown(() => py.kill());
  const blackhole = await new Promise<number>((resolve) => py.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('dead', address, port, [`127.0.0.1:${blackhole}`])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: dead, port: ${port}, protocol: http, options: { ConnectionTimeoutMS: 200 } }
`,
  );
  const started = Date.now();
  const r = await get(`http://${address}:${port}/`);
  const took = Date.now() - started;
  t.equal(r.status, 504);
  t.equal(r.headers['x-shoal-error'], 'connect-timeout');
  t.ok(took >= 150 && took < 2000, `answered after ${took} ms`);
});
