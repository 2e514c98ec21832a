// The sidecar warms its request path before it reports ready (proxy/warmUp.ts): a private listener,
// cluster and upstream on loopback carry every kind of request, then leave nothing behind, neither
// in the process nor in the sidecar's metrics and config dump.
import t from 'tap';
import { request } from 'undici';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { proxyFlags, proxyOptions, startProxy } from '../../proxy/main.ts';
import { DEFAULT_WARM_UP_REQUESTS, parseWarmUpRequests, warmUp } from '../../proxy/warmUp.ts';
import { parseFlags } from '../../shared/flags.ts';
import { createLogger } from '../../shared/log.ts';
import { withDiscover } from '../lib/discover.ts';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from './fixtures.ts';

const silent = createLogger('proxy', 'silent');

/** Open handles of the kinds the warm-up creates. */
function handles(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) if (r.startsWith('TCP')) out[r] = (out[r] ?? 0) + 1;
  return out;
}

t.test('warmUp: keep-alive GETs, refusals over MaxRequests and new connections, all answered; nothing left open', async (t) => {
  const before = handles();
  const r = await warmUp(200, silent);
  // 200 requests: 50% keep-alive GETs on 4 connections (25 each), 30% refusals (15 on each), 20% one
  // per new connection; the 4 held requests are answered at the end.
  t.same(r.answered, { 200: 100 + 4 + 40, '503 overloaded': 60 }, 'every request answered as its kind should be');
  t.ok(r.ms > 0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.same(handles(), before, 'no server or socket of the warm-up is still open');
  t.same(await warmUp(0, silent), { answered: {}, ms: 0 }, '0: no warm-up');
});

t.test('a warm-up past its deadline stops, says so, and leaves nothing open', async (t) => {
  const before = handles();
  const lines: string[] = [];
  const log = createLogger('proxy', 'info', { write: (line: string) => lines.push(line) });
  const started = performance.now();
  const r = await warmUp(100_000, log, 100);
  t.ok(performance.now() - started < 1000, 'returns at the deadline, not after 100,000 requests');
  const answered = Object.values(r.answered).reduce((a, b) => a + b, 0);
  t.ok(answered > 0 && answered < 100_000, `stopped part-way (${answered} answered)`);
  const warned = lines.map((l) => JSON.parse(l) as { level: number; msg: string; error: string }).find((l) => l.level === 40);
  t.same(
    warned && { msg: warned.msg, error: warned.error },
    { msg: 'the warm-up of the request path failed; starting without it', error: 'not done after 100 ms' },
    'a warning names why',
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.same(handles(), before, 'no server or socket of the warm-up is still open');
});

t.test('a warm-up is stopped at once when the sidecar closes', async (t) => {
  const before = handles();
  const lines: string[] = [];
  const log = createLogger('proxy', 'info', { write: (line: string) => lines.push(line) });
  const stop = new AbortController();
  const started = performance.now();
  const running = warmUp(100_000, log, 60_000, stop.signal);
  setTimeout(() => stop.abort(new Error('closing')), 50);
  const r = await running;
  t.ok(performance.now() - started < 1000, 'returns at once, not at the deadline');
  t.ok(Object.values(r.answered).reduce((a, b) => a + b, 0) < 100_000, 'stopped part-way');
  t.ok(
    lines.some((l) => (JSON.parse(l) as { level: number; msg: string }).msg === 'warm-up stopped: the sidecar is closing'),
    'says why, at info',
  );
  t.notOk(
    lines.some((l) => (JSON.parse(l) as { level: number }).level >= 40),
    'no warning for it',
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.same(handles(), before, 'no server or socket of the warm-up is still open');
  const already = new AbortController();
  already.abort(new Error('closing'));
  t.same((await warmUp(100, log, 60_000, already.signal)).answered, {}, 'a sidecar closed before its warm-up began sends nothing');
});

t.test('a sidecar is ready only after its warm-up, which shows nowhere in its metrics or config dump', async (t) => {
  const b = await httpBackend(t, 'api-1');
  const port = await freePort();
  const address = randomLoopback();
  const topology = `services:\n${service('api', address, port, [b.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
`;
  const s = await startSidecar(t, topology);
  t.ok(s.proxy.ready, 'ready once whenReady resolved');
  const ready = await request(`http://127.0.0.1:${s.proxy.adminPort}/ready`);
  t.same(await ready.body.json(), { ready: true, version: s.proxy.version, warmingUp: false, listeners: [], draining: false });
  const metrics = await (await request(`http://127.0.0.1:${s.proxy.adminPort}/metrics`)).body.text();
  t.notMatch(metrics, /warm-up/, 'no warm-up series in /metrics');
  t.match(metrics, /shoal_proxy_listener_connections|shoal_proxy/, 'the scrape itself works');
  const dump = await (await request(`http://127.0.0.1:${s.proxy.adminPort}/config_dump`)).body.text();
  t.notMatch(dump, /warm-up/, 'no warm-up listener or cluster in /config_dump');
  const r = await request(`http://${address}:${port}/`);
  t.equal(r.statusCode, 200, 'real traffic flows');
  t.equal(await r.body.text(), 'api-1');
});

t.test('/ready answers 503 with warmingUp: true while the warm-up runs', async (t) => {
  const b = await httpBackend(t, 'api-1');
  const port = await freePort();
  const address = randomLoopback();
  const d = await withDiscover(
    t,
    `services:\n${service('api', address, port, [b.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
`,
  );
  // 5,000 requests: the first snapshot from a local discover is in long before they are through.
  const proxy = await startProxy({
    discoverUrl: `${d.url}/v1/resources/default/web/mesh`,
    stateFile: join(mkdtempSync(join(tmpdir(), 'shoal-warm-up-')), 'state.json'),
    adminHost: '127.0.0.1',
    adminPort: 0,
    inboundAddress: randomLoopback(),
    drainTimeoutMs: 500,
    log: silent,
    warmUpRequests: 5000,
  });
  t.teardown(() => proxy.close());
  const during = await request(`http://127.0.0.1:${proxy.adminPort}/ready`);
  const body = (await during.body.json()) as { ready: boolean; warmingUp: boolean };
  t.equal(during.statusCode, 503, 'not ready while warming up');
  t.same({ ready: body.ready, warmingUp: body.warmingUp }, { ready: false, warmingUp: true });
  await proxy.whenReady();
  const after = await request(`http://127.0.0.1:${proxy.adminPort}/ready`);
  await after.body.dump();
  t.equal(after.statusCode, 200, 'ready when the warm-up is done');
});

t.test('--warm-up-requests (SHOAL_WARM_UP_REQUESTS) takes 0 to 100000 and names what is wrong', async (t) => {
  const opts = (argv: string[], env: NodeJS.ProcessEnv = {}) =>
    proxyOptions(parseFlags(proxyFlags, argv, env).values, { DISCOVER_URL: 'http://127.0.0.1:1/v1/resources/default/web/mesh', ...env });
  t.equal(opts([]).warmUpRequests, DEFAULT_WARM_UP_REQUESTS, `default ${DEFAULT_WARM_UP_REQUESTS}`);
  t.equal(opts(['--warm-up-requests', '0']).warmUpRequests, 0, '0 turns it off');
  t.equal(opts([], { SHOAL_WARM_UP_REQUESTS: '50' }).warmUpRequests, 50, 'the env twin');
  t.throws(() => opts(['--warm-up-requests', '100001']), {
    message: /--warm-up-requests must be a whole number of requests from 0 \(no warm-up\) to 100000, not 100001/,
  });
  t.throws(() => opts(['--warm-up-requests', '1.5']), { message: /--warm-up-requests="1\.5": expected an integer/ });
  t.throws(() => opts(['--warm-up-requests', '-1']), /warm-up-requests/);
  for (const bad of [-1, 1.5, '12x', 100_001, null])
    t.throws(
      () => parseWarmUpRequests(bad, 'warmUpRequests'),
      { message: /^warmUpRequests must be a whole number of requests/ },
      `refuses ${JSON.stringify(bad)}`,
    );
  t.equal(parseWarmUpRequests(' 7 '), 7, 'a number in a string');
});
