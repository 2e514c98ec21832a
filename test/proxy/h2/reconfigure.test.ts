// A long-lived gRPC stream across snapshot changes: it survives one that keeps its endpoint, and
// ends with UNAVAILABLE (x-shoal-error in the trailers) a drain period after its endpoint is removed;
// a draining sidecar lets calls in flight finish, and tells HTTP/2 clients with a GOAWAY that still
// takes every stream they have sent, while it goes on accepting until traffic stops.
import { connect, createServer, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { request } from 'undici';
import { DRAIN_QUIET_MS } from '../../../proxy/listener/listenerSet.ts';
import { freePort, randomLoopback, service, startSidecar, waitFor } from '../fixtures.ts';
import { echoClient, echoServer, grpc, unary, type Msg } from './grpcFixtures.ts';

t.test('a server stream survives a snapshot that keeps its endpoint and ends UNAVAILABLE once it is removed', async (t) => {
  const a = await echoServer(t, 'echo-a');
  const b = await echoServer(t, 'echo-b');
  const port = await freePort();
  const address = randomLoopback();
  const topo = (endpoints: string[]) => `services:\n${service('echo', address, port, endpoints, 'grpc')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: echo, port: ${port}, protocol: grpc }
`;
  const drainMs = 1500;
  const sidecar = await startSidecar(t, topo([a.endpoint]), { drainTimeoutMs: drainMs });
  const c = echoClient(t, `${address}:${port}`);
  const call = c.Watch({});
  let received = 0;
  const from = new Set<string>();
  call.on('data', (m: Msg) => {
    received++;
    from.add(m.server);
  });
  const ended = new Promise<{ status: grpc.StatusObject; at: number }>((resolve) => {
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => resolve({ status, at: performance.now() }));
  });
  await waitFor(() => received >= 3, 'the first messages of the stream');

  await sidecar.push(topo([a.endpoint, b.endpoint]));
  const before = received;
  await waitFor(() => received >= before + 5, 'messages after a snapshot that keeps the endpoint');
  t.same([...from], ['echo-a'], 'the stream stayed on its endpoint');
  t.equal(a.watching, 1, 'one stream open at the server');

  const removedAt = performance.now();
  await sidecar.push(topo([b.endpoint]));
  const afterRemoval = received;
  await waitFor(() => received >= afterRemoval + 5, 'messages during the drain period', 5000);
  const { status, at } = await ended;
  t.equal(status.code, grpc.status.UNAVAILABLE, `ended with ${status.code} ${status.details}`);
  t.same(status.metadata.get('x-shoal-error'), ['upstream-reset'], 'x-shoal-error in the trailers');
  t.match(status.details, /left the cluster/);
  const after = at - removedAt;
  t.ok(
    after >= drainMs - 100 && after < drainMs + 3000,
    `ended ${after.toFixed(0)} ms after the endpoint was removed (drain ${drainMs} ms)`,
  );
  await waitFor(() => a.watching === 0, 'the upstream stream to be cancelled at the server', 3000);

  const next = await new Promise<Msg>((resolve, reject) => {
    const s = c.Watch({});
    s.once('data', (m: Msg) => {
      s.cancel();
      resolve(m);
    });
    s.on('error', (e: grpc.ServiceError) => {
      if (e.code !== grpc.status.CANCELLED) reject(e);
    });
  });
  t.equal(next.server, 'echo-b', 'a new stream goes to the remaining endpoint');
});

t.test('draining (SIGTERM): calls in flight on an h2 listener complete; the listener stops accepting', async (t) => {
  const a = await echoServer(t, 'echo-a');
  const port = await freePort();
  const address = randomLoopback();
  const topo = `services:\n${service('echo', address, port, [a.endpoint], 'grpc')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: echo, port: ${port}, protocol: grpc }
`;
  const sidecar = await startSidecar(t, topo, { drainTimeoutMs: 3000, drainQuietMs: 1000 });
  const c = echoClient(t, `${address}:${port}`);
  await unary(c, {});
  const inFlight = Array.from({ length: 5 }, () => unary(c, { delayMs: 600 }));
  await new Promise((r) => setTimeout(r, 100));
  const drained = sidecar.proxy.drain();
  const results = await Promise.all(inFlight);
  t.same(
    results.map((r) => r.err?.message ?? r.msg?.server),
    Array(5).fill('echo-a'),
    'every call started before the drain completed',
  );
  await drained;
  const fresh = echoClient(t, `${address}:${port}`);
  const after = await unary(fresh, {}, { deadline: Date.now() + 1000 });
  t.equal(after.err?.code, grpc.status.UNAVAILABLE, 'a new channel finds nothing listening');
});

t.test(
  'draining, node:http2 client: GOAWAY naming the highest stream id, the streams it sent finish; new sessions are served, then told; once quiet, refused',
  async (t) => {
    // An h2c backend: /slow answers after 600 ms; it counts the streams it saw.
    let seen = 0;
    const backend = createServer();
    backend.on('stream', (stream, headers) => {
      seen++;
      stream.on('error', () => {});
      stream.resume();
      const reply = () => {
        if (stream.destroyed) return;
        stream.respond({ ':status': 200 });
        stream.end(`echo ${headers[':path']}`);
      };
      if (headers[':path'] === '/slow') setTimeout(reply, 600);
      else reply();
    });
    const backendAddress = randomLoopback();
    await new Promise<void>((r) => backend.listen(0, backendAddress, r));
    t.teardown(() => new Promise<void>((r) => backend.close(() => r())));
    const port = await freePort();
    const address = randomLoopback();
    const topo = `services:\n${service('api', address, port, [`${backendAddress}:${(backend.address() as AddressInfo).port}`], 'http2')}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: http2 }
`;
    const sidecar = await startSidecar(t, topo, { drainTimeoutMs: 10_000, drainQuietMs: 1000 });
    const url = `http://${address}:${port}`;
    const open = (): ClientHttp2Session => {
      const s = connect(url);
      s.on('error', () => {});
      t.teardown(() => {
        s.destroy();
      });
      return s;
    };
    const get = (s: ClientHttp2Session, path: string) =>
      new Promise<string>((resolve) => {
        const req = s.request({ ':path': path });
        let body = '';
        let status = 0;
        req.setEncoding('utf8');
        req.on('response', (h) => {
          status = Number(h[':status']);
        });
        req.on('data', (d: string) => {
          body += d;
        });
        req.on('end', () => resolve(`${status} ${body}`));
        req.on('error', (e: Error & { code?: string }) => resolve(`${e.code} ${e.message}`));
      });
    const goaway = (s: ClientHttp2Session) =>
      new Promise<[number, number]>((resolve) => s.once('goaway', (code: number, last: number) => resolve([code, last])));

    const a = open();
    t.equal(await get(a, '/'), '200 echo /', 'a request before the drain');
    const aGoaway = goaway(a);
    const inFlight = [get(a, '/slow'), get(a, '/slow'), get(a, '/slow')];
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const drained = sidecar.proxy.drain();
    t.same(await aGoaway, [0, 2 ** 31 - 1], 'the open session gets GOAWAY NO_ERROR naming the highest stream id (a shutdown notice)');
    t.same(await Promise.all(inFlight), Array(3).fill('200 echo /slow'), 'its streams in flight finish');

    const b = open();
    const bGoaway = goaway(b);
    t.equal(await get(b, '/'), '200 echo /', 'a session opened during the drain is served');
    t.same(await bGoaway, [0, 2 ** 31 - 1], 'and told after its first stream');
    const h1 = await request(`${url}/`);
    t.equal(await h1.body.text(), 'echo /', 'HTTP/1.1 on the same listener is served too');
    t.equal(h1.headers.connection, 'close', 'with Connection: close');

    // A client that moves to a new session on each GOAWAY, as gRPC clients do, sending 100 streams a
    // second for a second. node's client closes a session on any GOAWAY, and streams it had queued
    // but not yet written in that moment are then refused by the client itself (REFUSED_STREAM):
    // they never reach the sidecar, which the backend's count shows, and are safe to send again.
    const seenBefore = seen;
    let current: ClientHttp2Session;
    const moveOn = () => {
      current = open();
      current.once('goaway', moveOn);
    };
    moveOn();
    const results: string[] = [];
    const sends: Promise<void>[] = [];
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      sends.push(
        get(current!, '/').then((r) => {
          results.push(r);
        }),
      );
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(sends);
    const ok = results.filter((r) => r === '200 echo /').length;
    const refused = results.filter((r) => /REFUSED_STREAM/.test(r)).length;
    t.same(
      results.filter((r) => r !== '200 echo /' && !/REFUSED_STREAM/.test(r)),
      [],
      `under load: ${ok} streams answered 200, ${refused} refused by the client itself, nothing else`,
    );
    t.ok(ok >= 30, `${ok} streams served during the drain`);
    t.equal(seen - seenBefore, ok, 'the backend saw exactly the streams answered: the refused ones were never sent');

    await drained;
    const ms = Date.now() - started;
    t.ok(
      ms >= DRAIN_QUIET_MS && ms < 10_000 / 2 + 1000,
      `the drain ended ${ms} ms after it began, a quiet ${DRAIN_QUIET_MS} ms after the last stream`,
    );
    const c = connect(url);
    const refusedConnect = await new Promise<string>((resolve) => {
      c.once('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
      c.once('connect', () => resolve('connected'));
    });
    c.destroy();
    t.equal(refusedConnect, 'ECONNREFUSED', 'then the listener no longer accepts');
  },
);
