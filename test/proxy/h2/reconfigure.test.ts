// A long-lived gRPC stream across snapshot changes: it survives one that keeps its endpoint, and
// ends with UNAVAILABLE (x-shoal-error in the trailers) a drain period after its endpoint is removed;
// a draining sidecar lets calls in flight finish.
import t from 'tap';
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
  t.ok(after >= drainMs - 100 && after < drainMs + 3000, `ended ${after.toFixed(0)} ms after the endpoint was removed (drain ${drainMs} ms)`);
  await waitFor(() => a.watching === 0, 'the upstream stream to be cancelled at the server', 3000);

  const next = await new Promise<Msg>((resolve, reject) => {
    const s = c.Watch({});
    s.once('data', (m: Msg) => {
      s.cancel();
      resolve(m);
    });
    s.on('error', (e: grpc.ServiceError) => { if (e.code !== grpc.status.CANCELLED) reject(e); });
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
  const sidecar = await startSidecar(t, topo, { drainTimeoutMs: 3000 });
  const c = echoClient(t, `${address}:${port}`);
  await unary(c, {});
  const inFlight = Array.from({ length: 5 }, () => unary(c, { delayMs: 600 }));
  await new Promise((r) => setTimeout(r, 100));
  const drained = sidecar.proxy.drain();
  const results = await Promise.all(inFlight);
  t.same(results.map((r) => r.err?.message ?? r.msg?.server), Array(5).fill('echo-a'), 'every call started before the drain completed');
  await drained;
  const fresh = echoClient(t, `${address}:${port}`);
  const after = await unary(fresh, {}, { deadline: Date.now() + 1000 });
  t.equal(after.err?.code, grpc.status.UNAVAILABLE, 'a new channel finds nothing listening');
});
