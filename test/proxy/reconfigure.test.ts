// Hot reconfiguration: 500 rps while 20 snapshots add and remove endpoints and listeners; nothing fails.
import t from 'tap';
import { Agent, request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar, type Backend } from './fixtures.ts';

t.test('500 rps through 20 pushes that add/remove endpoints and listeners: zero failed requests', async (t) => {
  const backends = await Promise.all(
    [1, 2, 3, 4, 5, 6].map((i) =>
      httpBackend(t, `api-${i}`, (req, res, b) => {
        req.resume();
        // A few slow requests are in flight across each push, so removed endpoints really have work to drain.
        setTimeout(() => res.end(b.name), req.url === '/slow' ? 150 : 1);
      }),
    ),
  );
  const extraBackend = await httpBackend(t, 'extra');
  const port = await freePort();
  const extraPort = await freePort();
  const address = randomLoopback();
  const extraAddress = randomLoopback();
  const topo = (eps: Backend[], extra: boolean) => `services:
${service(
  'api',
  address,
  port,
  eps.map((b) => b.endpoint),
)}${service('extra', extraAddress, extraPort, [extraBackend.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { LBPolicy: round_robin } }
${extra ? `        - { depend_service_alias: extra, port: ${extraPort}, protocol: http }\n` : ''}`;
  const s = await startSidecar(t, topo(backends.slice(0, 3), false));
  const agent = new Agent({ connections: 100 });
  t.teardown(() => agent.close());

  let ok = 0;
  const failures: string[] = [];
  let stop = false;
  const inFlight = new Set<Promise<void>>();
  const fire = (path: string) => {
    const p = request(`http://${address}:${port}${path}`, { dispatcher: agent })
      .then(
        async (r) => {
          const body = await r.body.text();
          if (r.statusCode === 200 && body.startsWith('api-')) ok++;
          else failures.push(`${r.statusCode} ${body}`);
        },
        (err: Error) => {
          failures.push(err.message);
        },
      )
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  };
  // 500 rps: 5 requests every 10 ms, paced against the clock.
  const started = Date.now();
  const load = (async () => {
    let sent = 0;
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by another task while this one awaited (TypeScript keeps the narrowing across await)
    while (!stop) {
      const due = Math.floor(((Date.now() - started) / 1000) * 500);
      while (sent < due) fire(sent++ % 10 === 0 ? '/slow' : '/');
      await new Promise((r) => setTimeout(r, 10));
    }
    return sent;
  })();

  let applied = 0;
  // Should a push fail, the load loop must still stop, or the file would hang until tap's timeout.
  t.teardown(() => {
    stop = true;
  });
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    // A different non-empty subset of the six endpoints each time, and the extra listener on every other push.
    const subset = backends.filter((_, j) => (i * 7 + j * 3) % 5 < 3 || j === i % 6);
    await s.push(topo(subset, i % 2 === 0));
    applied++;
    if (i % 2 === 0) {
      // The added listener answers at once, on a new connection: a pooled one may still lead to the
      // listener removed one push ago, which closes its idle connections as it drains.
      const probe = new Agent({ connections: 1 });
      const r = await request(`http://${extraAddress}:${extraPort}/`, { dispatcher: probe });
      t.equal(await r.body.text(), 'extra', `push ${i + 1}: the added listener answers`);
      await probe.close();
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  stop = true;
  const sent = await load;
  await Promise.all([...inFlight]);
  const seconds = (Date.now() - started) / 1000;
  t.equal(applied, 20, 'each of the 20 pushes was applied');
  t.ok(sent / seconds > 400, `${Math.round(sent / seconds)} rps over ${seconds.toFixed(1)} s`);
  t.same(failures.slice(0, 5), [], `zero failed requests (${ok} succeeded, ${failures.length} failed)`);
  t.equal(ok, sent);
  // The last push removed the extra listener: new connections are refused.
  const refused = await request(`http://${extraAddress}:${extraPort}/`).then(
    () => 'answered',
    (e: Error & { code?: string }) => e.code ?? e.message,
  );
  t.equal(refused, 'ECONNREFUSED', 'the removed listener is gone');
  const used = backends.filter((b) => b.requests > 0).length;
  t.equal(used, 6, 'every endpoint took traffic at some point');
});
