// Every counter of a cluster's limits returns to zero on every way out of an exchange: requests in
// flight (MaxRequests; L4 MaxConnections), waiting for a connection (MaxPendingRequests), retries in
// flight (MaxActiveRetries), and each endpoint's load (active, slowActive), as /config_dump shows them.
// One sidecar carries every dependency, so a counter left behind by any exit fails every later check.
import { connect as h2connect, constants as h2, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import t, { type Test } from 'tap';
import { Agent, request } from 'undici';
import { freePort, httpBackend, randomLoopback, waitFor, type Backend } from '../fixtures.ts';
import { assertAllZero, clusterState, depSidecar, eventually, h1Backend, h2Backend } from './exitFixtures.ts';

/** A backend that answers after ms. */
function slowBackend(t: Test, name: string, ms: number): Promise<Backend> {
  return httpBackend(t, name, (req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.end(name), ms));
  });
}

/** A backend that takes upgrades: 101 and an open tunnel (echo), or the given refusal. */
async function wsBackend(t: Test, name: string, refuse: boolean): Promise<Backend> {
  const b = await httpBackend(t, name);
  const tunnels = new Set<Socket>();
  b.server.on('upgrade', (_req, socket: Socket) => {
    b.requests++;
    tunnels.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => tunnels.delete(socket));
    if (refuse) {
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbad');
      return;
    }
    socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
    socket.pipe(socket);
  });
  t.teardown(() => {
    for (const so of tunnels) so.destroy();
  });
  return b;
}

/** An upgrade over a raw connection: the status line's code, the socket left open. */
function upgrade(url: string): Promise<{ socket: Socket; status: number }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname, () =>
      socket.write(`GET /ws HTTP/1.1\r\nhost: ${u.host}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n`),
    );
    let head = '';
    socket.on('data', function onData(chunk: Buffer) {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      resolve({ socket, status: Number(head.slice(9, 12)) });
    });
    socket.once('error', reject);
  });
}

/** A raw request the client walks away from once the backend has it (destroys its socket). */
async function abandon(t: Test, admin: number, url: string, raw: string, seen: () => boolean): Promise<void> {
  const u = new URL(url);
  const socket = connect(Number(u.port), u.hostname, () => socket.write(raw.replace('HOST', u.host)));
  socket.on('error', () => {});
  await waitFor(seen, 'the backend to receive the request');
  t.equal((await clusterState(admin, 'abort')).active, 1, 'the request holds its permit until the client leaves');
  socket.destroy();
}

async function tcpEcho(t: Test): Promise<string> {
  const address = randomLoopback();
  const open = new Set<Socket>();
  const server = createNetServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((resolve) => server.listen(0, address, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `${address}:${(server.address() as AddressInfo).port}`;
}

/** Connects, sends "ping", waits for the echo; the socket is left open. */
function tcpPing(address: string, port: number): Promise<{ socket: Socket; got: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, address, () => socket.write('ping'));
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString();
      if (got === 'ping') resolve({ socket, got });
    });
    socket.once('error', reject);
    socket.once('close', () => resolve({ socket, got }));
  });
}

interface H2Answer {
  status: number;
  headers: IncomingHttpHeaders;
}

function h2Call(session: ClientHttp2Session, path: string): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const st = session.request({ ':method': 'GET', ':path': path });
    let headers: IncomingHttpHeaders = {};
    st.on('response', (h) => (headers = h));
    st.resume();
    st.on('error', reject);
    st.on('close', () => resolve({ status: Number(headers[':status'] ?? 0), headers }));
  });
}

t.test('every counter returns to zero on every exit', async (t) => {
  const ok = await h1Backend(t, 'ok', 'ok');
  const slowMax = await slowBackend(t, 'slow-max', 300);
  const slowPending = await slowBackend(t, 'slow-pending', 300);
  const reset0 = await h1Backend(t, 'reset0', 'reset');
  const resetR = await h1Backend(t, 'reset-r', 'reset');
  const okR = await h1Backend(t, 'ok-r', 'ok');
  const hang = await h1Backend(t, 'hang', 'hang');
  const hangT = await h1Backend(t, 'hang-t', 'hang');
  const hangP = await h1Backend(t, 'hang-p', 'hang');
  const okP = await h1Backend(t, 'ok-p', 'ok');
  const no503 = await h1Backend(t, 'no503', '503');
  const ok503 = await h1Backend(t, 'ok503', 'ok');
  const ws = await wsBackend(t, 'ws', false);
  const wsNo = await wsBackend(t, 'ws-no', true);
  const h2ok = await h2Backend(t, 'h2ok', 'ok');
  const h2hang = await h2Backend(t, 'h2hang', 'hang');
  const h2no = await h2Backend(t, 'h2no', '503');
  const h2yes = await h2Backend(t, 'h2yes', 'ok');
  const echo = await tcpEcho(t);
  const echoR = await tcpEcho(t);
  const closed = `${randomLoopback()}:${await freePort()}`;
  const rr = 'LBPolicy: round_robin';
  const { s, at } = await depSidecar(t, [
    { name: 'fast', protocol: 'http', endpoints: [ok.endpoint] },
    { name: 'maxreq', protocol: 'http', endpoints: [slowMax.endpoint], options: 'MaxRequests: 2' },
    { name: 'pending', protocol: 'http', endpoints: [slowPending.endpoint], options: 'MaxConnections: 1, MaxPendingRequests: 1' },
    { name: 'reset0', protocol: 'http', endpoints: [reset0.endpoint], options: 'RetryAttempts: 0' },
    { name: 'resetr', protocol: 'http', endpoints: [resetR.endpoint, okR.endpoint], options: rr },
    { name: 'abort', protocol: 'http', endpoints: [hang.endpoint] },
    { name: 'timeout', protocol: 'http', endpoints: [hangT.endpoint], options: 'RequestTimeoutMS: 300' },
    {
      name: 'pertry',
      protocol: 'http',
      endpoints: [hangP.endpoint, okP.endpoint],
      options: `${rr}, PerTryTimeoutMS: 200, RequestTimeoutMS: 3000`,
    },
    { name: 'r503', protocol: 'http', endpoints: [no503.endpoint, ok503.endpoint], options: rr },
    { name: 'ws', protocol: 'http', endpoints: [ws.endpoint] },
    { name: 'wsno', protocol: 'http', endpoints: [wsNo.endpoint] },
    { name: 'h2', protocol: 'http2', endpoints: [h2ok.endpoint] },
    { name: 'h2hang', protocol: 'http2', endpoints: [h2hang.endpoint] },
    { name: 'h2r', protocol: 'http2', endpoints: [h2no.endpoint, h2yes.endpoint], options: rr },
    { name: 'tcp', protocol: 'tcp', endpoints: [echo] },
    { name: 'tcpr', protocol: 'tcp', endpoints: [closed, echoR], options: rr },
  ]);
  const admin = s.proxy.adminPort;
  const agent = new Agent({ connections: 8, keepAliveTimeout: 30_000 });
  t.teardown(() => agent.close());
  const get = async (dep: string, opts: { method?: string; body?: string } = {}) => {
    const r = await request(`${at[dep].url}/`, { dispatcher: agent, method: (opts.method ?? 'GET') as 'GET', body: opts.body });
    await r.body.dump();
    return { status: r.statusCode, error: String(r.headers['x-shoal-error'] ?? '') };
  };

  await t.test('success on the fast path (keep-alive GETs)', async (t) => {
    for (let i = 0; i < 3; i++) t.equal((await get('fast')).status, 200);
    await assertAllZero(t, admin, 'fast-path success');
  });

  await t.test('success on the node:http path (POST with a body)', async (t) => {
    t.equal((await get('fast', { method: 'POST', body: 'payload' })).status, 200);
    await assertAllZero(t, admin, 'node:http success');
  });

  await t.test('refusal by MaxRequests (2, six concurrent slow requests)', async (t) => {
    const all = await Promise.all(Array.from({ length: 6 }, () => get('maxreq')));
    const seen = all.map((r) => `${r.status} ${r.error}`.trim()).sort();
    t.same(seen, ['200', '200', '503 overloaded', '503 overloaded', '503 overloaded', '503 overloaded'], 'two admitted, four overloaded');
    await assertAllZero(t, admin, 'MaxRequests refusal');
  });

  await t.test('refusal by MaxPendingRequests (MaxConnections 1, MaxPendingRequests 1)', async (t) => {
    const all = await Promise.all(Array.from({ length: 4 }, () => get('pending')));
    const seen = all.map((r) => `${r.status} ${r.error}`.trim()).sort();
    t.same(seen, ['200', '200', '503 circuit-open', '503 circuit-open'], 'one sent, one waited, two circuit-open');
    await assertAllZero(t, admin, 'MaxPendingRequests refusal');
  });

  await t.test('upstream reset without retry (RetryAttempts 0)', async (t) => {
    const r = await get('reset0');
    t.same(r, { status: 502, error: 'upstream-reset' });
    t.equal(reset0.requests, 1, 'sent once');
    await assertAllZero(t, admin, 'reset, no retry');
  });

  await t.test('upstream reset retried to the other endpoint', async (t) => {
    for (let i = 0; i < 2; i++) t.equal((await get('resetr')).status, 200);
    // Round robin, and the retry moves it on: the reset endpoint gets one or both GETs first, depending on the address order.
    t.ok(resetR.requests >= 1, `the reset endpoint got ${resetR.requests} of them first, each retried`);
    t.equal(okR.requests, 2, 'the other endpoint answered both');
    await assertAllZero(t, admin, 'reset, retried');
  });

  await t.test('client abort mid-request on the fast path', async (t) => {
    const before = hang.requests;
    await abandon(t, admin, at.abort.url, 'GET / HTTP/1.1\r\nhost: HOST\r\n\r\n', () => hang.requests === before + 1);
    await assertAllZero(t, admin, 'fast-path client abort');
  });

  await t.test('client abort mid-request on the node:http path', async (t) => {
    const before = hang.requests;
    await abandon(
      t,
      admin,
      at.abort.url,
      'POST / HTTP/1.1\r\nhost: HOST\r\ncontent-length: 7\r\n\r\npayload',
      () => hang.requests === before + 1,
    );
    await assertAllZero(t, admin, 'node:http client abort');
  });

  await t.test('RequestTimeoutMS (504)', async (t) => {
    t.same(await get('timeout'), { status: 504, error: 'request-timeout' });
    await assertAllZero(t, admin, 'RequestTimeoutMS');
  });

  await t.test('PerTryTimeoutMS, retried to the other endpoint', async (t) => {
    for (let i = 0; i < 2; i++) t.equal((await get('pertry')).status, 200);
    t.ok(hangP.requests >= 1, `${hangP.requests} timed out on the hanging endpoint first`);
    t.equal(okP.requests, 2, 'the other endpoint answered both');
    await assertAllZero(t, admin, 'PerTryTimeoutMS with retry');
  });

  await t.test('a 503 answer, retried', async (t) => {
    for (let i = 0; i < 2; i++) t.equal((await get('r503')).status, 200);
    t.ok(no503.requests >= 1, `${no503.requests} got the 503 first`);
    t.equal(ok503.requests, 2, 'the other endpoint answered both');
    await assertAllZero(t, admin, 'retried 503');
  });

  await t.test('WebSocket upgrade (101 tunnel), then the client closes', async (t) => {
    const up = await upgrade(at.ws.url);
    t.equal(up.status, 101);
    t.equal((await clusterState(admin, 'ws')).active, 1, 'the open tunnel holds its permit');
    up.socket.destroy();
    await assertAllZero(t, admin, 'upgrade, client close');
  });

  await t.test('upgrade refused by the backend (400)', async (t) => {
    const up = await upgrade(at.wsno.url);
    t.equal(up.status, 400);
    await assertAllZero(t, admin, 'upgrade refused (client still connected)');
    up.socket.destroy();
    await assertAllZero(t, admin, 'upgrade refused, client gone');
  });

  await t.test('h2c (protocol http2) success', async (t) => {
    const session = h2connect(at.h2.url);
    t.teardown(() => session.close());
    for (let i = 0; i < 3; i++) t.equal((await h2Call(session, '/')).status, 200);
    await assertAllZero(t, admin, 'h2c success');
  });

  await t.test('h2c client RST_STREAM mid-call', async (t) => {
    const session = h2connect(at.h2hang.url);
    t.teardown(() => session.close());
    const st = session.request({ ':method': 'GET', ':path': '/' });
    st.on('error', () => {});
    await waitFor(() => h2hang.requests === 1, 'the backend to receive the stream');
    t.equal((await clusterState(admin, 'h2hang')).active, 1, 'the call holds its permit');
    st.close(h2.NGHTTP2_CANCEL);
    await assertAllZero(t, admin, 'h2c client reset');
    t.ok(await eventually(async () => h2hang.open.size === 0, 2000), 'the upstream stream was cancelled too');
  });

  await t.test('h2c 503, retried', async (t) => {
    const session = h2connect(at.h2r.url);
    t.teardown(() => session.close());
    for (let i = 0; i < 2; i++) t.equal((await h2Call(session, '/')).status, 200);
    t.ok(h2no.requests >= 1, `${h2no.requests} got the 503 first`);
    t.equal(h2yes.requests, 2, 'the other endpoint answered both');
    await assertAllZero(t, admin, 'h2c retried 503');
  });

  await t.test('TCP: a connection open, then closed', async (t) => {
    const c = await tcpPing(at.tcp.address, at.tcp.port);
    t.equal(c.got, 'ping', 'echoed');
    t.equal((await clusterState(admin, 'tcp')).active, 1, 'the open connection holds its permit');
    c.socket.destroy();
    await assertAllZero(t, admin, 'TCP close');
  });

  await t.test('TCP: connect failure retried to the other endpoint', async (t) => {
    for (let i = 0; i < 2; i++) {
      const c = await tcpPing(at.tcpr.address, at.tcpr.port);
      t.equal(c.got, 'ping', `connection ${i + 1} echoed`);
      c.socket.end();
    }
    await assertAllZero(t, admin, 'TCP connect failure retried');
  });
});
