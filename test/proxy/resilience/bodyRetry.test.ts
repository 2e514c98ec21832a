// Requests with a body: a POST whose body reached an endpoint is never retried; one whose endpoint
// refused the connection (nothing sent) is retried on another endpoint.
import t from 'tap';
import { request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from '../fixtures.ts';

const BODY = 'x'.repeat(64 * 1024);

t.test('a POST whose body was sent is never retried', async (t) => {
  const bodies: string[] = [];
  // Every endpoint reads the whole body, then fails: with a 503, or by cutting the connection.
  const bs = await Promise.all(['503', 'reset', 'reset'].map((mode, i) => httpBackend(t, `api-${i + 1}`, (req, res) => {
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
  })));
  const port = await freePort();
  const address = randomLoopback();
  // Retries are generous, and the route flag is off: POST is not idempotent.
  await startSidecar(t, `services:\n${service('api', address, port, bs.map((b) => b.endpoint))}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { RetryAttempts: 5, MaxActiveRetries: 100, ConsecutiveErrors: 1000 } }
`);
  for (let i = 0; i < 20; i++) {
    const r = await request(`http://${address}:${port}/submit`, { method: 'POST', body: BODY, headers: { 'content-type': 'text/plain' } });
    await r.body.dump();
    t.ok(r.statusCode === 503 || r.statusCode === 502, `the failure is passed back (${r.statusCode})`);
  }
  t.equal(bodies.length, 20, 'each POST reached exactly one endpoint');
  t.ok(bodies.every((b) => b === BODY), 'with its whole body');
  t.equal(bs.reduce((n, b) => n + b.requests, 0), 20, 'no endpoint saw a second attempt');
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
  await startSidecar(t, `services:\n${service('api', address, port, [dead, live.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { LBPolicy: round_robin, ConsecutiveErrors: 1000 } }
`);
  for (let i = 0; i < 6; i++) {
    const r = await request(`http://${address}:${port}/submit`, { method: 'POST', body: BODY });
    t.equal(r.statusCode, 200, 'answered by the live endpoint');
    t.equal(await r.body.text(), `got ${BODY.length}`, 'with the whole body');
  }
  t.equal(live.requests, 6);
});
