// Inbound OPEN_LIMIT: LIMIT_RPS/LIMIT_BURST (token bucket, 429 + Retry-After) and LIMIT_CONNECTIONS.
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { randomLoopback, startSidecar } from '../fixtures.ts';
import { configDump, metric, openLoad } from './load.ts';

async function appWithLimits(t: Test, options: string, arrivals: number[] = []) {
  const app = createServer((req, res) => {
    arrivals.push(performance.now());
    req.resume();
    res.end('app');
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    app.closeAllConnections();
    app.close();
  });
  const appPort = (app.address() as AddressInfo).port;
  const inboundAddress = randomLoopback();
  const s = await startSidecar(
    t,
    `services: []
apps:
  - name: web
    config:
      base_ports:
        - { port: ${appPort}, protocol: http, options: { ${options} } }
`,
    { inboundAddress },
  );
  let listenPort = 0;
  s.proxy.onSnapshot((snap) => (listenPort = snap.inbound[0].listenPort));
  return { s, url: `http://${inboundAddress}:${listenPort}/`, inboundAddress, listenPort };
}

t.test('LIMIT_RPS 100 under 500 rps: about 100 rps pass, the rest get 429 with Retry-After', async (t) => {
  const RPS = 100;
  const BURST = 20;
  const SECONDS = 4;
  const arrivals: number[] = [];
  const { s, url } = await appWithLimits(t, `OPEN_LIMIT: "YES", LIMIT_RPS: ${RPS}, LIMIT_BURST: ${BURST}`, arrivals);
  const { outcomes } = await openLoad(url, 500, SECONDS);
  const passed = outcomes.filter((o) => o.status === 200).length;
  const limited = outcomes.filter((o) => o.status === 429);
  // The bucket refills over the time requests actually reached the sidecar, which on a loaded machine
  // can be longer than the time the client spent sending them: measured where they pass, at the app.
  const elapsed = (arrivals[arrivals.length - 1] - arrivals[0]) / 1000;
  t.comment(`client sent for ${(outcomes[outcomes.length - 1].at / 1000).toFixed(2)} s; the app saw requests over ${elapsed.toFixed(2)} s`);
  const expected = RPS * elapsed + BURST;
  t.comment(
    `${outcomes.length} sent over ${elapsed.toFixed(2)} s: ${passed} passed (${(passed / elapsed).toFixed(1)} rps), ${limited.length} got 429; bucket allows ${expected.toFixed(0)}`,
  );
  t.equal(passed + limited.length, outcomes.length, 'every request either passed or got 429');
  t.ok(
    passed >= expected * 0.85 && passed <= expected * 1.1,
    `passed ${passed} is about ${RPS} rps x ${elapsed.toFixed(2)} s + burst ${BURST}`,
  );
  t.ok(
    limited.every((o) => o.error === 'rate-limited'),
    'x-shoal-error: rate-limited',
  );
  const one = await request(url);
  await one.body.dump();
  const r = await (async () => {
    for (let i = 0; i < 200; i++) {
      const x = await request(url);
      await x.body.dump();
      if (x.statusCode === 429) return x;
    }
    return null;
  })();
  t.ok(r, 'a burst gets a 429');
  t.match(String(r?.headers['retry-after']), /^[1-9][0-9]*$/, 'Retry-After in whole seconds');
  t.ok((await metric(s.proxy.adminPort, 'shoal_proxy_inbound_limited_total', { limit: 'rps' })) >= limited.length, 'counted in metrics');
  const dump = (await configDump(s.proxy.adminPort)) as {
    policies: { inbound: Array<{ limitRps: number; limitBurst: number; limitConnections: number }> };
  };
  t.match(dump.policies.inbound[0], { limitRps: RPS, limitBurst: BURST, limitConnections: 0 }, '/config_dump shows the limits as applied');
});

t.test('LIMIT_CONNECTIONS 2: a third connection is told 503 overloaded and closed', async (t) => {
  const { s, inboundAddress, listenPort } = await appWithLimits(t, 'OPEN_LIMIT: "YES", LIMIT_CONNECTIONS: 2');
  const open = async () => {
    const sock = connect(listenPort, inboundAddress);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    t.teardown(() => sock.destroy());
    return sock;
  };
  const a = await open();
  const b = await open();
  await new Promise((r) => setTimeout(r, 50));
  const c = await open();
  const answer = await new Promise<string>((resolve) => {
    let d = '';
    c.on('data', (x) => (d += x));
    c.on('close', () => resolve(d));
    c.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  });
  t.match(answer, /^HTTP\/1\.1 503 /, 'the third connection gets 503');
  t.match(answer, /x-shoal-error: overloaded/);
  for (const sock of [a, b]) {
    const reply = await new Promise<string>((resolve) => {
      sock.once('data', (x) => resolve(String(x)));
      sock.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    });
    t.match(reply, /^HTTP\/1\.1 200 /, 'the first two are served');
  }
  t.equal(await metric(s.proxy.adminPort, 'shoal_proxy_inbound_limited_total', { limit: 'connections' }), 1);
});
