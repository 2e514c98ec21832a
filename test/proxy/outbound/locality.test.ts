// Topology-aware routing through a real sidecar: three endpoints in zone a, three in zone b, the
// sidecar in zone a. PreferSameZone keeps every request in zone a; killing zone a under load moves
// traffic to zone b with no failure beyond the requests in flight, and it comes back when they return:
// with the default outlier options (one endpoint of six may be ejected; the others of the dead zone
// count as failing) and with MaxEjectionPercent 100. Zone a hanging with PerTryTimeoutMS set moves
// it too. Without hints it spreads over all six.
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { loadavg } from 'node:os';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { freePort, randomLoopback, startSidecar } from '../fixtures.ts';
import { configDump, metric, openLoad } from '../resilience/load.ts';

interface ZoneBackend {
  name: string;
  zone: string;
  address: string;
  port: number;
  server: Server | null;
  sockets: Set<Socket>;
  requests: number;
  hang: boolean;
}

async function listen(b: ZoneBackend): Promise<void> {
  const server = createServer((req, res) => {
    req.resume();
    if (b.hang) return; // accepted, read, never answered
    b.requests++;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(b.name) });
    res.end(b.name);
  });
  server.on('connection', (s: Socket) => {
    b.sockets.add(s);
    s.on('close', () => b.sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(b.port, b.address, () => resolve());
  });
  b.server = server;
}

/** Killed: the listening socket closes (connections refused) and open connections are cut. */
function kill(b: ZoneBackend): void {
  b.server?.close();
  for (const s of b.sockets) s.destroy();
  b.server = null;
}

async function sixBackends(t: Test): Promise<ZoneBackend[]> {
  const out: ZoneBackend[] = [];
  for (const [i, zone] of ['a', 'a', 'a', 'b', 'b', 'b'].entries()) {
    const b: ZoneBackend = {
      name: `${zone}-${i + 1}`,
      zone,
      address: randomLoopback(),
      port: await freePort(),
      server: null,
      sockets: new Set(),
      requests: 0,
      hang: false,
    };
    await listen(b);
    out.push(b);
  }
  t.teardown(() => {
    for (const b of out) kill(b);
  });
  return out;
}

const FAST_EJECTION =
  '{ ConsecutiveErrors: 1, MaxEjectionPercent: 100, BaseEjectionTimeMS: 1000, IntervalMS: 200, RetryAttempts: 3, MaxActiveRetries: 100 }';

function topology(bs: ZoneBackend[], address: string, port: number, trafficDistribution: string | null, options = FAST_EJECTION): string {
  return `services:
  - name: api
    address: ${address}
    ports: [{ port: ${port}, protocol: http }]
${trafficDistribution ? `    trafficDistribution: ${trafficDistribution}\n` : ''}    endpoints:
${bs.map((b) => `      - { address: ${b.address}, port: ${b.port}, zone: ${b.zone} }`).join('\n')}
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: ${options} }
`;
}

async function get(url: string): Promise<string> {
  const r = await request(url);
  const body = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}: ${body}`);
  return body;
}

async function zonesOf(url: string, n: number, concurrency = 10): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        const body = await get(url);
        out[body] = (out[body] ?? 0) + 1;
      }
    }),
  );
  return out;
}

const sumZone = (tally: Record<string, number>, zone: string) =>
  Object.entries(tally)
    .filter(([k]) => k.startsWith(`${zone}-`))
    .reduce((s, [, n]) => s + n, 0);

async function tierOf(adminPort: number): Promise<string> {
  const dump = (await configDump(adminPort)) as { policies: { clusters: Array<{ locality: { tier: string } }> } };
  return dump.policies.clusters[0].locality.tier;
}

/** Zone a killed under load at 1.5 s, back at 4 s; then waits (up to returnWithinMs) for the cluster to take zone a back. */
async function killZoneA(t: Test, options: string, returnWithinMs: number): Promise<void> {
  const bs = await sixBackends(t);
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(t, topology(bs, address, port, 'PreferSameZone', options), { zone: 'a' });
  const url = `http://${address}:${port}/`;

  const first = await zonesOf(url, 1000);
  t.equal(sumZone(first, 'a'), 1000, `1,000 requests all in zone a (${JSON.stringify(first)})`);
  t.equal(Object.keys(first).length, 3, 'spread over the three zone-a endpoints');
  t.equal(
    await metric(s.proxy.adminPort, 'shoal_proxy_upstream_requests_by_locality_total', { locality: 'same_zone' }),
    1000,
    'counted as same zone',
  );
  t.equal(
    await metric(s.proxy.adminPort, 'shoal_proxy_upstream_requests_by_locality_total', { locality: 'other_zone' }),
    0,
    'none to the other zone',
  );

  const KILL_AT = 1500;
  const BACK_AT = 4000;
  let killedAt = -1;
  let backAt = -1;
  let restarting: Promise<void> | null = null;
  const zoneA = () => bs.slice(0, 3).reduce((n, b) => n + b.requests, 0);
  const zoneB = () => bs.slice(3).reduce((n, b) => n + b.requests, 0);
  const bBefore = zoneB();
  let bAtKill = 0;
  let bSecondAfter = -1;
  let bAtBack = 0;
  const { outcomes, failed } = await openLoad(url, 200, 6, {
    onTick: (ms) => {
      if (killedAt < 0 && ms >= KILL_AT) {
        killedAt = ms;
        bAtKill = zoneB();
        for (const b of bs.slice(0, 3)) kill(b);
      }
      if (killedAt > 0 && bSecondAfter < 0 && ms >= killedAt + 1000) bSecondAfter = zoneB() - bAtKill;
      if (backAt < 0 && ms >= BACK_AT) {
        backAt = ms;
        bAtBack = zoneB();
        restarting = Promise.all(bs.slice(0, 3).map((b) => listen(b))).then(() => {});
      }
    },
  });
  // eslint-disable-next-line @typescript-eslint/await-thenable -- assigned a Promise by the listener callback while the requests were awaited
  await restarting;
  const retries: Record<string, number> = {};
  for (const result of ['sent', 'budget_exhausted', 'max_active_retries'])
    retries[result] = await metric(s.proxy.adminPort, 'shoal_proxy_retries_total', { result });
  t.comment(
    `retries ${JSON.stringify(retries)}; ejections ${await metric(s.proxy.adminPort, 'shoal_proxy_outlier_ejections_total', { result: 'ejected' })}, skipped ${await metric(s.proxy.adminPort, 'shoal_proxy_outlier_ejections_total', { result: 'skipped' })}; load average ${loadavg()[0].toFixed(1)}`,
  );
  t.ok(killedAt > 0 && backAt > 0, 'killed and restarted during the load');
  // In flight at the kill: sent before it and answered after it.
  const inFlight = outcomes.filter((o) => o.at <= killedAt && o.at + o.ms >= killedAt).length;
  t.ok(
    failed.length <= inFlight,
    `failures (${failed.length}) no more than the requests in flight at the kill (${inFlight}): ${JSON.stringify(failed.slice(0, 3))}`,
  );
  t.same(
    failed.filter((o) => o.at > killedAt),
    [],
    'no request sent after the kill failed',
  );
  t.ok(bSecondAfter >= 150, `zone b took the traffic within a second of the kill (${bSecondAfter} requests in that second, 200 sent)`);
  t.ok(bAtBack - bBefore > 300, `zone b took the traffic while zone a was down (${bAtBack - bBefore} requests)`);

  // The ejections and the failing marks run out, and zone a takes the traffic back.
  const until = Date.now() + returnWithinMs;
  let tier = '';
  while (Date.now() < until && (tier = await tierOf(s.proxy.adminPort)) !== 'zone') await new Promise((r) => setTimeout(r, 200));
  t.equal(tier, 'zone', 'the cluster is back on its zone-a endpoints');
  const aBefore = zoneA();
  const back = await zonesOf(url, 300);
  t.equal(sumZone(back, 'a'), 300, `after the return all in zone a again (${JSON.stringify(back)})`);
  t.equal(zoneA() - aBefore, 300, 'answered by the restarted zone-a servers');
}

t.test(
  'default outlier options: zone a killed under load: zone b within a second, no failure beyond those in flight; back when it returns',
  async (t) => {
    // ConsecutiveErrors 5, MaxEjectionPercent 10 (one of six), BaseEjectionTimeMS 30 s, swept every 10 s: back within 40 s.
    t.setTimeout(180_000);
    await killZoneA(t, '{}', 50_000);
  },
);

t.test('MaxEjectionPercent 100, one error ejects, 1 s ejections: the same by ejection alone', async (t) => {
  await killZoneA(t, FAST_EJECTION, 20_000);
});

t.test('default outlier options, zone a hanging (accepts, never answers) with PerTryTimeoutMS: traffic moves to zone b', async (t) => {
  const bs = await sixBackends(t);
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(t, topology(bs, address, port, 'PreferSameZone', '{ PerTryTimeoutMS: 200 }'), { zone: 'a' });
  const url = `http://${address}:${port}/`;
  t.same(Object.keys(await zonesOf(url, 300)).sort(), ['a-1', 'a-2', 'a-3'], 'zone a first');
  const HANG_AT = 1000;
  let hungAt = -1;
  let bAtHang = 0;
  let bLastSecond = -1;
  const zoneB = () => bs.slice(3).reduce((n, b) => n + b.requests, 0);
  const { outcomes, failed } = await openLoad(url, 200, 4, {
    onTick: (ms) => {
      if (hungAt < 0 && ms >= HANG_AT) {
        hungAt = ms;
        bAtHang = zoneB();
        for (const b of bs.slice(0, 3)) b.hang = true;
      }
      if (hungAt > 0 && bLastSecond < 0 && ms >= 3000) bLastSecond = zoneB();
    },
  });
  const aAnswered = bs.slice(0, 3).reduce((n, b) => n + b.requests, 0);
  t.equal(await tierOf(s.proxy.adminPort), 'all', 'zone a passed over');
  const lastSecond = zoneB() - bLastSecond;
  t.ok(lastSecond >= 190, `the last second of load all in zone b (${lastSecond} of 200)`);
  t.ok(zoneB() - bAtHang >= 550, `zone b answered the load after the hang (${zoneB() - bAtHang} of 600)`);
  // A request at risk was sent to zone a before its endpoints became failing: its try timed out and it was retried in zone b.
  const atRisk = outcomes.filter((o) => o.at >= hungAt && o.at < hungAt + 1000).length;
  t.same(
    failed,
    [],
    `no failure: each of the ${atRisk} requests sent in the first second of the hang was answered, from zone b after a timed-out try when it went to zone a first`,
  );
  const slow = outcomes.filter((o) => o.at >= hungAt && o.ms >= 200).length;
  t.comment(`${slow} requests waited for a PerTryTimeoutMS; ${failed.length} failed; zone a answered ${aAnswered} in all`);
  t.ok(slow < 100, `only the first attempts after the hang waited for the per-try timeout (${slow})`);
});

t.test('without hints, traffic spreads over all six', async (t) => {
  const bs = await sixBackends(t);
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(t, topology(bs, address, port, null), { zone: 'a' });
  const tally = await zonesOf(`http://${address}:${port}/`, 1200);
  t.equal(Object.keys(tally).length, 6, `all six endpoints used (${JSON.stringify(tally)})`);
  for (const [k, n] of Object.entries(tally)) t.ok(n > 100, `${k}: ${n} of 1200`);
  t.ok(
    (await metric(s.proxy.adminPort, 'shoal_proxy_upstream_requests_by_locality_total', { locality: 'other_zone' })) > 300,
    'other-zone attempts counted',
  );
});

t.test('a sidecar whose zone is unknown uses all six; the locality in /config_dump says why', async (t) => {
  const bs = await sixBackends(t);
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(t, topology(bs, address, port, 'PreferSameZone'));
  const tally = await zonesOf(`http://${address}:${port}/`, 600);
  t.equal(Object.keys(tally).length, 6, `all six endpoints used (${JSON.stringify(tally)})`);
  const dump = (await configDump(s.proxy.adminPort)) as { policies: { clusters: Array<{ locality: Record<string, unknown> }> } };
  t.match(dump.policies.clusters[0].locality, { node: '', zone: '', tier: 'all' });
  t.ok(
    (await metric(s.proxy.adminPort, 'shoal_proxy_upstream_requests_by_locality_total', { locality: 'unknown' })) >= 600,
    'counted as unknown',
  );
});
