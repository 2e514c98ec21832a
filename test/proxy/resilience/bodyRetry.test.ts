// Requests with a body: a POST whose body reached an endpoint is never retried; one whose endpoint
// refused the connection (nothing sent) is retried on another endpoint.
import t from 'tap';
import { request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from '../fixtures.ts';

const BODY = 'x'.repeat(64 * 1024);

t.test('a POST whose body was sent is never retried', async (t) => {
  const bodies: string[] = [];
  // Every endpoint reads the whole body, then fails: with a 503, or by cutting the connection.
  const bs = await Promise.all(
    ['503', 'reset', 'reset'].map((mode, i) =>
      httpBackend(t, `api-${i + 1}`, (req, res) => {
        let got = '';
        req.on('data', (d) => (got += d));
        req.on('end', () => {
          bodies.push(got);
          if (mode === '503') {
            res.writeHead(503, { 'content-length': '4' });
            res.end('down');
          } else {
            req.socket.destroy();
          }
        });
      }),
    ),
  );
  const port = await freePort();
  const address = randomLoopback();
  // Retries are generous, and the route flag is off: POST is not idempotent.
  await startSidecar(
    t,
    `services:\n${service(
      'api',
      address,
      port,
      bs.map((b) => b.endpoint),
    )}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { RetryAttempts: 5, MaxActiveRetries: 100, ConsecutiveErrors: 1000 } }
`,
  );
  for (let i = 0; i < 20; i++) {
    const r = await request(`http://${address}:${port}/submit`, { method: 'POST', body: BODY, headers: { 'content-type': 'text/plain' } });
    await r.body.dump();
    t.ok(r.statusCode === 503 || r.statusCode === 502, `the failure is passed back (${r.statusCode})`);
  }
  t.equal(bodies.length, 20, 'each POST reached exactly one endpoint');
  t.ok(
    bodies.every((b) => b === BODY),
    'with its whole body',
  );
  t.equal(
    bs.reduce((n, b) => n + b.requests, 0),
    20,
    'no endpoint saw a second attempt',
  );
});

t.test('a POST refused at connect (nothing sent) is retried on another endpoint', async (t) => {
  const live = await httpBackend(t, 'api-live', (req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => res.end(`got ${n}`));
  });
  const dead = `127.0.0.1:${await freePort()}`;
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('api', address, port, [dead, live.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { LBPolicy: round_robin, ConsecutiveErrors: 1000 } }
`,
  );
  for (let i = 0; i < 6; i++) {
    const r = await request(`http://${address}:${port}/submit`, { method: 'POST', body: BODY });
    t.equal(r.statusCode, 200, 'answered by the live endpoint');
    t.equal(await r.body.text(), `got ${BODY.length}`, 'with the whole body');
  }
  t.equal(live.requests, 6);
});

t.test('RetryNonIdempotent: a bodiless POST answered 503 is retried elsewhere; without it, it is not', async (t) => {
  for (const flag of ['YES', 'NO']) {
    const seen: string[] = [];
    const bad = await httpBackend(t, 'bad', (req, res) => {
      req.resume();
      seen.push('bad');
      res.writeHead(503, { 'content-length': '4' });
      res.end('down');
    });
    const good = await httpBackend(t, 'good', (req, res) => {
      req.resume();
      seen.push('good');
      res.end('good');
    });
    const port = await freePort();
    const address = randomLoopback();
    await startSidecar(
      t,
      `services:\n${service('api', address, port, [bad.endpoint, good.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { LBPolicy: round_robin, ConsecutiveErrors: 1000, RetryNonIdempotent: "${flag}" } }
`,
    );
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await request(`http://${address}:${port}/act`, { method: 'POST' });
      await r.body.dump();
      statuses.push(r.statusCode);
    }
    if (flag === 'YES') {
      t.same(statuses, [200, 200, 200, 200], 'RetryNonIdempotent YES: every POST ends at the good endpoint');
      t.ok(seen.filter((x) => x === 'bad').length >= 1, 'the bad endpoint was tried');
      t.equal(seen.filter((x) => x === 'good').length, 4, 'and each of its 503s retried on the good one');
    } else {
      t.same([...statuses].sort(), [200, 200, 503, 503], 'RetryNonIdempotent NO: the 503 is passed back');
      t.equal(seen.length, 4, 'one attempt per POST');
    }
  }
});
