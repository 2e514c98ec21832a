// What reaches the backend from one downstream connection on the node:http + undici path: pipelined
// requests in the order they came (a non-idempotent request is never overtaken), and requests the
// sidecar will not forward (more than one Host, a target that is no path) answered 400 before any
// endpoint is picked, never counted against the endpoint.
import { connect, type AddressInfo } from 'node:net';
import { createServer as createH2Server } from 'node:http2';
import t from 'tap';
import { request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar } from '../fixtures.ts';
import { configDump, metric } from '../resilience/load.ts';

/** Writes `data` on a fresh connection; resolves with all it read when the server closes (or after maxMs). */
function rawExchange(address: string, port: number, data: string, maxMs = 10_000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, address);
    let text = '';
    const stop = setTimeout(() => s.destroy(), maxMs);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(stop);
      resolve(text);
    });
    s.write(data, 'latin1');
  });
}

t.test('pipelined POST /p1 (with a body), GET /p2, DELETE /p3 on one connection reach the backend in that order', async (t) => {
  let seen: string[] = [];
  const b = await httpBackend(t, 'api', (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    // The first answer is slow: a later request sent meanwhile would show up before it is done.
    req.on('end', () => setTimeout(() => res.end(`${req.url}:${n};`), req.url === '/p1' ? 50 : 0));
  });
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('api', address, port, [b.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http }
`,
  );
  const body = 'b'.repeat(32 * 1024);
  const orders: string[] = [];
  const answers: string[] = [];
  for (let i = 0; i < 8; i++) {
    seen = [];
    const text = await rawExchange(
      address,
      port,
      `POST /p1 HTTP/1.1\r\nHost: api\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
        'GET /p2 HTTP/1.1\r\nHost: api\r\n\r\n' +
        'DELETE /p3 HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n',
    );
    orders.push(seen.join(', '));
    answers.push([...text.matchAll(/\/p\d:\d+;/g)].map((m) => m[0]).join(''));
  }
  t.same(orders, Array(8).fill('POST /p1, GET /p2, DELETE /p3'), 'the backend got them in the order they were sent, every time');
  t.same(answers, Array(8).fill(`/p1:${body.length};/p2:0;/p3:0;`), 'and the client got the answers in that order, the body whole');
});

t.test('more than one Host, or a target that is no path: 400 before any endpoint is picked, never an endpoint failure', async (t) => {
  const b = await httpBackend(t, 'api');
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(
    t,
    `services:\n${service('api', address, port, [b.endpoint])}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http, options: { ConsecutiveErrors: 3 } }
`,
  );
  const bad = [
    'GET / HTTP/1.1\r\nHost: api\r\nHost: other\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: api\r\nhost: api\r\n\r\n',
    'POST /form HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\nHOST: x\r\n\r\nabc',
    'GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n',
    'OPTIONS * HTTP/1.1\r\nHost: api\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: api\r\nHost: other\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
  ];
  for (const req of bad) {
    const text = await rawExchange(address, port, req);
    t.match(
      text,
      /^HTTP\/1\.1 400 [^]*\r\nx-shoal-error: bad-request\r\n/i,
      `400 bad-request for ${JSON.stringify(req.split('\r\n').slice(0, 3).join(' | '))}`,
    );
  }
  t.equal(b.requests, 0, 'nothing reached the endpoint');
  t.equal(await metric(s.proxy.adminPort, 'shoal_proxy_upstream_failures_total'), 0, 'no endpoint failure counted');
  const dump = (await configDump(s.proxy.adminPort)) as {
    policies: { clusters: Array<{ cluster: string; outlierDetection: { endpoints: Array<{ consecutiveErrors: number }> } }> };
  };
  const endpoints = dump.policies.clusters.find((c) => c.cluster.startsWith('api.'))!.outlierDetection.endpoints;
  t.same(
    endpoints.map((e) => e.consecutiveErrors),
    [0],
    'outlier detection saw no failure of the endpoint',
  );
  t.equal(
    await metric(s.proxy.adminPort, 'shoal_proxy_errors_total', { error: 'bad-request' }),
    bad.length,
    "counted as the client's errors",
  );
  const ok = await request(`http://${address}:${port}/`);
  t.equal(ok.statusCode, 200, 'a good request still goes through');
  t.equal(await ok.body.text(), 'api');
});

t.test('an http2 listener answers an HTTP/1.1 request with more than one Host 400 too', async (t) => {
  let streams = 0;
  const h2 = createH2Server();
  h2.on('stream', (st) => {
    streams++;
    st.respond({ ':status': 200 });
    st.end('h2');
  });
  const upAddress = randomLoopback();
  await new Promise<void>((r) => h2.listen(0, upAddress, r));
  t.teardown(() => h2.close());
  const port = await freePort();
  const address = randomLoopback();
  await startSidecar(
    t,
    `services:\n${service('api', address, port, [`${upAddress}:${(h2.address() as AddressInfo).port}`], 'http2')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http2 }
`,
  );
  const text = await rawExchange(address, port, 'GET / HTTP/1.1\r\nHost: api\r\nHost: other\r\n\r\n');
  t.match(text, /^HTTP\/1\.1 400 [^]*x-shoal-error: bad-request/i, '400 bad-request');
  t.equal(streams, 0, 'nothing went upstream');
  const good = await rawExchange(address, port, 'GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n');
  t.match(good, /^HTTP\/1\.1 200 [^]*\r\nh2\r\n/, 'one Host goes through');
});
