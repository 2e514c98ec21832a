// Deadlines on every request path (fast path, node:http + undici, HTTP/2): a client that stops
// sending its body cannot hold MaxRequests slots (body idle bound, RequestTimeoutMS from arrival),
// a request head handed to node:http has its bound too, and RequestTimeoutMS is the bound over all
// attempts of a request while PerTryTimeoutMS bounds each one.
import { connect as h2connect, createServer as createH2Server, type Http2Server, type IncomingHttpHeaders } from 'node:http2';
import { connect, type AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { freePort, httpBackend, randomLoopback, service, startSidecar, waitFor, type Backend } from '../fixtures.ts';
import { metric } from '../resilience/load.ts';
import type { ProxyOptions } from '../../../proxy/main.ts';

interface RawResult {
  text: string;
  ms: number;
  closed: boolean;
}

/**
 * A raw client: writes `first`, then (drip) one byte every everyMs; resolves when the server closes
 * the connection, or after maxMs with closed false.
 */
function rawClient(
  address: string,
  port: number,
  first: string,
  maxMs: number,
  drip?: { everyMs: number; bytes: number },
): Promise<RawResult> {
  return new Promise((resolve) => {
    const start = performance.now();
    const s = connect(port, address);
    let text = '';
    let sent = 0;
    let settled = false;
    const timer = drip
      ? setInterval(() => {
          if (sent++ < drip.bytes && !s.destroyed) s.write('x');
        }, drip.everyMs)
      : null;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(stop);
      if (timer) clearInterval(timer);
      s.destroy();
      resolve({ text, ms: performance.now() - start, closed });
    };
    const stop = setTimeout(() => finish(false), maxMs);
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => {});
    s.on('close', () => finish(true));
    s.write(first, 'latin1');
  });
}

/** A backend that reads the whole body, then answers its name. */
function bodyHandler(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse, b: Backend): void {
  req.resume();
  req.on('end', () => res.end(b.name));
}

async function outboundSidecar(t: Test, backend: Backend, options: string, protocol = 'http') {
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(
    t,
    `services:\n${service('api', address, port, [backend.endpoint], protocol)}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: ${protocol}, options: { ${options} } }
`,
  );
  return { s, address, port };
}

t.test('20 uploads that went silent after one byte hold MaxRequests only until RequestTimeoutMS: 408, slots free again', async (t) => {
  const b = await httpBackend(t, 'api', bodyHandler);
  const TIMEOUT = 2000;
  const { s, address, port } = await outboundSidecar(t, b, `MaxRequests: 20, RequestTimeoutMS: ${TIMEOUT}`);
  const started = performance.now();
  const uploads = Array.from({ length: 20 }, () =>
    rawClient(address, port, 'POST /up HTTP/1.1\r\nHost: api\r\nContent-Length: 1000\r\n\r\nx', TIMEOUT + 8000),
  );
  // While they hold every slot, any other request is refused at once.
  let refused = '';
  for (let i = 0; i < 40 && refused === ''; i++) {
    const r = await request(`http://${address}:${port}/other`);
    await r.body.dump();
    if (r.statusCode === 503) refused = String(r.headers['x-shoal-error']);
    else await new Promise((res) => setTimeout(res, 25));
  }
  t.equal(refused, 'overloaded', 'the 20 silent uploads held every MaxRequests slot');
  const results = await Promise.all(uploads);
  const slowest = Math.max(...results.map((r) => r.ms));
  t.ok(
    results.every((r) => r.closed),
    'every silent upload was cut (connection closed)',
  );
  t.same(
    results
      .filter((r) => !/^HTTP\/1\.1 408 /.test(r.text) || !/\r\nx-shoal-error: request-timeout\r\n/i.test(r.text))
      .map((r) => r.text.slice(0, 60)),
    [],
    'each got 408 with x-shoal-error request-timeout',
  );
  t.ok(slowest < TIMEOUT + 3000, `all cut by the deadline (${Math.round(TIMEOUT)} ms; slowest after ${Math.round(slowest)} ms)`);
  const after = await request(`http://${address}:${port}/after`);
  t.equal(after.statusCode, 200, 'the slots are free again: the next request goes through');
  t.equal(await after.body.text(), 'api');
  t.ok(performance.now() - started < TIMEOUT + 5000, 'all within the deadline and a margin');
  // The clients were slow, not the endpoint.
  t.equal(
    await metric(s.proxy.adminPort, 'shoal_proxy_upstream_failures_total', { reason: 'request-timeout' }),
    0,
    'no endpoint failure counted',
  );
  t.equal(
    await metric(s.proxy.adminPort, 'shoal_proxy_errors_total', { error: 'request-timeout' }),
    20,
    'the 20 timeouts counted as made-up answers',
  );
});

t.test('an upload of one byte per 250 ms is cut at RequestTimeoutMS (the deadline counts from arrival)', async (t) => {
  const b = await httpBackend(t, 'api', bodyHandler);
  const TIMEOUT = 1500;
  const { address, port } = await outboundSidecar(t, b, `RequestTimeoutMS: ${TIMEOUT}`);
  const r = await rawClient(address, port, 'POST /drip HTTP/1.1\r\nHost: api\r\nContent-Length: 100000\r\n\r\n', TIMEOUT + 6000, {
    everyMs: 250,
    bytes: 100_000,
  });
  t.ok(r.closed, 'the connection was closed');
  t.match(r.text, /^HTTP\/1\.1 408 /, '408');
  t.match(r.text, /\r\nx-shoal-error: request-timeout\r\n/i);
  t.ok(r.ms >= TIMEOUT - 100 && r.ms < TIMEOUT + 2500, `cut at the deadline (${Math.round(r.ms)} ms, RequestTimeoutMS ${TIMEOUT})`);
});

/** An app that answers how many body bytes it read, behind a sidecar's inbound port: where to reach it. */
async function inboundCounter(t: Test, opts: Partial<ProxyOptions>): Promise<{ address: string; port: number }> {
  const app = createServer((req, res) => {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => res.end(`got ${n}`));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  const appPort = (app.address() as AddressInfo).port;
  t.teardown(() => {
    app.closeAllConnections();
    app.close();
  });
  const inboundAddress = randomLoopback();
  const s = await startSidecar(
    t,
    `services: []
apps:
  - name: web
    config:
      base_ports:
        - { port: ${appPort}, protocol: http }
`,
    { inboundAddress, ...opts },
  );
  let listen = 0;
  s.proxy.onSnapshot((snap) => (listen = snap.inbound[0].listenPort));
  return { address: inboundAddress, port: listen };
}

t.test('inbound (no RequestTimeoutMS): a body silent longer than the body idle bound gets 408; a slow steady one does not', async (t) => {
  const IDLE = 1000;
  const { address: inboundAddress, port: listen } = await inboundCounter(t, { requestHeadTimeoutMs: IDLE });
  const silent = await rawClient(inboundAddress, listen, 'POST /up HTTP/1.1\r\nHost: app\r\nContent-Length: 10\r\n\r\nx', IDLE + 6000);
  t.ok(silent.closed, 'the silent upload was cut');
  t.match(silent.text, /^HTTP\/1\.1 408 [^]*x-shoal-error: request-timeout/i, '408 request-timeout');
  t.ok(silent.ms >= IDLE - 100 && silent.ms < IDLE + 3000, `after the idle bound (${Math.round(silent.ms)} ms, bound ${IDLE} ms)`);
  // A byte every 200 ms for 2.4 s: longer than the bound in all, never silent that long.
  const steady = await rawClient(
    inboundAddress,
    listen,
    'POST /up HTTP/1.1\r\nHost: app\r\nContent-Length: 12\r\nConnection: close\r\n\r\n',
    10_000,
    { everyMs: 200, bytes: 12 },
  );
  t.match(steady.text, /^HTTP\/1\.1 200 [^]*got 12$/, `a steady slow body is not cut (${Math.round(steady.ms)} ms)`);
});

t.test('inbound: a body sent a byte at a time is cut at --request-receive-timeout with 408; a quick one passes', async (t) => {
  const RECEIVE = 1500;
  const { address: inboundAddress, port: listen } = await inboundCounter(t, { requestReceiveTimeoutMs: RECEIVE });
  // A byte every 100 ms: never idle, but 1,000 bytes would take 100 s.
  const trickle = await rawClient(
    inboundAddress,
    listen,
    'POST /up HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\n',
    RECEIVE + 6000,
    { everyMs: 100, bytes: 1000 },
  );
  t.ok(trickle.closed, 'the trickled upload was cut');
  t.match(trickle.text, /^HTTP\/1\.1 408 [^]*x-shoal-error: request-timeout/i, '408 request-timeout');
  t.ok(
    trickle.ms >= RECEIVE - 100 && trickle.ms < RECEIVE + 3000,
    `at the receive bound (${Math.round(trickle.ms)} ms, bound ${RECEIVE} ms)`,
  );
  const quick = await request(`http://${inboundAddress}:${listen}/up`, { method: 'POST', body: 'x'.repeat(100_000) });
  t.equal(await quick.body.text(), 'got 100000', 'a body that arrives in time is forwarded whole');
});

t.test('a request head on a connection handed to node:http has the head bound too', async (t) => {
  const b = await httpBackend(t, 'api', bodyHandler);
  const HEAD = 1000;
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
    { requestHeadTimeoutMs: HEAD },
  );
  const r = await new Promise<{ text: string; closedAfterMs: number }>((resolve) => {
    const c = connect(port, address);
    let text = '';
    let trickleStart = 0;
    let timer: NodeJS.Timeout | null = null;
    const stop = setTimeout(() => c.destroy(), HEAD + 6000);
    c.on('error', () => {});
    c.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (trickleStart === 0 && text.endsWith('api')) {
        // The first request (a body: node:http took the connection) is answered; now a head, one byte per 100 ms.
        trickleStart = performance.now();
        const head = `GET /slow HTTP/1.1\r\nHost: api\r\nX-Pad: ${'p'.repeat(80)}\r\n\r\n`;
        let i = 0;
        timer = setInterval(() => {
          if (i < head.length && !c.destroyed) c.write(head[i++]);
        }, 100);
      }
    });
    c.on('close', () => {
      clearTimeout(stop);
      if (timer) clearInterval(timer);
      resolve({ text, closedAfterMs: trickleStart === 0 ? -1 : performance.now() - trickleStart });
    });
    c.write('POST /first HTTP/1.1\r\nHost: api\r\nContent-Length: 2\r\n\r\nok');
  });
  t.match(r.text, /^HTTP\/1\.1 200 /, 'the first request was answered');
  t.match(r.text, /HTTP\/1\.1 408 /, 'the trickled head got 408');
  t.ok(
    r.closedAfterMs > 0 && r.closedAfterMs < HEAD + 2500,
    `closed ${Math.round(r.closedAfterMs)} ms into the head (bound ${HEAD} ms; the head alone takes ${100 * 110} ms)`,
  );
});

interface H2Backend {
  server: Http2Server;
  endpoint: string;
  streams: number;
}

async function h2Backend(t: Test, mode: 'body' | 'hang'): Promise<H2Backend> {
  const b = { streams: 0 } as H2Backend;
  b.server = createH2Server();
  b.server.on('stream', (stream) => {
    b.streams++;
    stream.on('error', () => {});
    stream.resume();
    if (mode === 'hang') return;
    stream.on('end', () => {
      if (!stream.destroyed) (stream.respond({ ':status': 200 }), stream.end('h2'));
    });
  });
  const address = randomLoopback();
  await new Promise<void>((resolve) => b.server.listen(0, address, resolve));
  b.endpoint = `${address}:${(b.server.address() as AddressInfo).port}`;
  t.teardown(() => new Promise<void>((resolve) => b.server.close(() => resolve())));
  return b;
}

interface H2Answer {
  headers: IncomingHttpHeaders;
  ms: number;
}

t.test('h2c: 20 streams silent after one byte are cut at RequestTimeoutMS with 408, not counted against the endpoint', async (t) => {
  const b = await h2Backend(t, 'body');
  const TIMEOUT = 2000;
  const port = await freePort();
  const address = randomLoopback();
  const s = await startSidecar(
    t,
    `services:\n${service('api', address, port, [b.endpoint], 'http2')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http2, options: { MaxRequests: 20, RequestTimeoutMS: ${TIMEOUT} } }
`,
  );
  const session = h2connect(`http://${address}:${port}`);
  session.on('error', () => {});
  t.teardown(() => session.destroy());
  const open = (path: string, endStream: boolean, first?: string): Promise<H2Answer> =>
    new Promise((resolve) => {
      const start = performance.now();
      const st = session.request({ ':method': 'POST', ':path': path }, { endStream });
      let headers: IncomingHttpHeaders = {};
      st.on('response', (h) => (headers = h));
      st.on('error', () => {});
      st.resume();
      st.on('close', () => resolve({ headers, ms: performance.now() - start }));
      if (first !== undefined) st.write(first);
    });
  const started = performance.now();
  const uploads = Array.from({ length: 20 }, () => open('/up', false, 'x'));
  await waitFor(() => b.streams >= 20, 'the 20 streams to reach the backend', TIMEOUT - 200);
  const refused = await open('/other', true);
  t.equal(refused.headers['x-shoal-error'], 'overloaded', 'meanwhile another request is refused: MaxRequests is held');
  const results = await Promise.race([Promise.all(uploads), new Promise<null>((r) => setTimeout(() => r(null), TIMEOUT + 6000))]);
  t.ok(results !== null, 'every silent stream was answered');
  if (results === null) return;
  t.same(
    results
      .filter((r) => Number(r.headers[':status']) !== 408 || r.headers['x-shoal-error'] !== 'request-timeout')
      .map((r) => r.headers[':status']),
    [],
    'each got 408 request-timeout',
  );
  t.ok(performance.now() - started < TIMEOUT + 3000, `cut by the deadline (${Math.round(performance.now() - started)} ms)`);
  const after = await open('/after', true);
  t.equal(after.headers[':status'], 200, 'the slots are free again');
  t.equal(
    await metric(s.proxy.adminPort, 'shoal_proxy_upstream_failures_total', { reason: 'request-timeout' }),
    0,
    'no endpoint failure counted: the client was slow',
  );
});

/** One GET over h2c, timed. */
function h2Get(url: string, path: string): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const session = h2connect(url);
    session.on('error', reject);
    const st = session.request({ ':method': 'GET', ':path': path });
    let headers: IncomingHttpHeaders = {};
    st.on('response', (h) => (headers = h));
    st.on('error', () => {});
    st.resume();
    st.on('close', () => {
      session.close();
      resolve({ headers, ms: performance.now() - start });
    });
  });
}

/** A GET on a raw socket as HTTP/1.0 (which the fast path hands to node:http), timed. */
async function http10Get(address: string, port: number): Promise<{ text: string; ms: number }> {
  const r = await rawClient(address, port, 'GET /h10 HTTP/1.0\r\nHost: api\r\n\r\n', 10_000);
  return { text: r.text, ms: r.ms };
}

/** A sidecar with two dependencies on hanging upstreams, one http, one http2, both with `options`. */
async function hangingDependencies(t: Test, options: string) {
  const hang = { count: 0 };
  const h1 = await httpBackend(t, 'hang', (req) => {
    hang.count++;
    req.resume(); // never answers
  });
  const h2 = await h2Backend(t, 'hang');
  const a1 = randomLoopback();
  const a2 = randomLoopback();
  const port = await freePort();
  const s = await startSidecar(
    t,
    `services:
${service('hang1', a1, port, [h1.endpoint])}${service('hang2', a2, port, [h2.endpoint], 'http2')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: hang1, port: ${port}, protocol: http, options: { ${options} } }
        - { depend_service_alias: hang2, port: ${port}, protocol: http2, options: { ${options} } }
`,
  );
  return { s, hang, h2, a1, a2, port };
}

const settle = () => new Promise((r) => setTimeout(r, 150));

t.test(
  'by default one try: a hanging upstream gets the request once, the client one 504 at RequestTimeoutMS (fast path, node:http, h2c)',
  async (t) => {
    const { hang, h2, a1, a2, port } = await hangingDependencies(t, 'RequestTimeoutMS: 600, RetryAttempts: 2');
    const start = performance.now();
    const fast = await request(`http://${a1}:${port}/fast`);
    const fastMs = performance.now() - start;
    await fast.body.dump();
    t.equal(fast.statusCode, 504, 'fast path: 504');
    t.equal(fast.headers['x-shoal-error'], 'request-timeout');
    t.ok(
      fastMs >= 550 && fastMs < 1200,
      `fast path: after ${Math.round(fastMs)} ms (RequestTimeoutMS 600; three attempts would take 1800)`,
    );
    await settle();
    t.equal(hang.count, 1, 'fast path: received once');

    const slow = await http10Get(a1, port);
    t.match(slow.text, /^HTTP\/1\.1 504 [^]*x-shoal-error: request-timeout/i, 'node:http path: 504 request-timeout');
    t.ok(slow.ms >= 550 && slow.ms < 1200, `node:http path: after ${Math.round(slow.ms)} ms`);
    await settle();
    t.equal(hang.count, 2, 'node:http path: received once');

    const r = await h2Get(`http://${a2}:${port}`, '/h2');
    t.equal(r.headers[':status'], 504, 'h2c: 504');
    t.equal(r.headers['x-shoal-error'], 'request-timeout');
    t.ok(r.ms >= 550 && r.ms < 1200, `h2c: after ${Math.round(r.ms)} ms`);
    await settle();
    t.equal(h2.streams, 1, 'h2c: received once');
  },
);

t.test(
  'PerTryTimeoutMS 200 within RequestTimeoutMS 1000: retried, at most 5 attempts, one 504 at about 1000 ms (fast path, node:http, h2c)',
  async (t) => {
    const { s, hang, h2, a1, a2, port } = await hangingDependencies(
      t,
      'RequestTimeoutMS: 1000, PerTryTimeoutMS: 200, RetryAttempts: 10, MaxActiveRetries: 100, ConsecutiveErrors: 1000',
    );
    const check = (what: string, status: number, ms: number, attempts: number) => {
      t.equal(status, 504, `${what}: 504`);
      t.ok(ms >= 950 && ms < 1700, `${what}: after ${Math.round(ms)} ms (RequestTimeoutMS 1000)`);
      t.ok(attempts >= 2 && attempts <= 5, `${what}: ${attempts} attempts (per-try 200 ms each, RetryAttempts 10)`);
    };
    const start = performance.now();
    const fast = await request(`http://${a1}:${port}/fast`);
    await fast.body.dump();
    const fastMs = performance.now() - start;
    await settle();
    check('fast path', fast.statusCode, fastMs, hang.count);
    t.equal(fast.headers['x-shoal-error'], 'request-timeout');

    const before = hang.count;
    const slow = await http10Get(a1, port);
    await settle();
    check('node:http path', Number(slow.text.slice(9, 12)), slow.ms, hang.count - before);

    const r = await h2Get(`http://${a2}:${port}`, '/h2');
    await settle();
    check('h2c', Number(r.headers[':status']), r.ms, h2.streams);
    t.ok((await metric(s.proxy.adminPort, 'shoal_proxy_retries_total', { result: 'sent' })) >= 3, 'the retries are counted');
  },
);
