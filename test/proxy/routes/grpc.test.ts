// GRPCRoute rules through a grpc listener, with @grpc/grpc-js on both sides: method (path) and metadata
// matches, the weighted split, header modifiers seen by the server, mirrors, unresolved backends (INTERNAL,
// x-shoal-error no-backend), the route's timeout as DEADLINE_EXCEEDED.
import t, { type Test } from 'tap';
import type { Route } from '../../../shared/snapshot.ts';
import { freePort, randomLoopback, startRoutedSidecar, waitFor } from '../fixtures.ts';
import { echoClient, echoServer, grpc, type EchoClient, type EchoServer, type Msg } from '../h2/grpcFixtures.ts';

const UNARY = '/shoal.test.Echo/Unary';

async function setup(t: Test, names: string[]) {
  const servers: Record<string, EchoServer> = {};
  const seenMd: Record<string, grpc.Metadata[]> = {};
  for (const n of ['api', ...names]) {
    seenMd[n] = [];
    servers[n] = await echoServer(t, n, {
      Unary: (call: grpc.ServerUnaryCall<Msg, Msg>, cb: grpc.sendUnaryData<Msg>) => {
        servers[n].calls++;
        seenMd[n].push(call.metadata);
        const reply = () => cb(null, { server: n, data: call.request.data, delayMs: 0 });
        if (call.request.delayMs > 0) setTimeout(reply, call.request.delayMs);
        else reply();
      },
    });
  }
  const port = await freePort();
  const address = randomLoopback();
  let services = '';
  let deps = '';
  for (const n of ['api', ...names]) {
    const a = n === 'api' ? address : randomLoopback();
    const p = n === 'api' ? port : await freePort();
    services += `  - { name: ${n}, address: ${a}, ports: [{ port: ${p}, protocol: grpc }], endpoints: [${JSON.stringify(servers[n].endpoint)}] }\n`;
    deps += `        - { depend_service_alias: ${n}, port: ${p}, protocol: grpc }\n`;
  }
  const sidecar = await startRoutedSidecar(t, `services:\n${services}apps:\n  - name: web\n    config:\n      base_services:\n${deps}`);
  const snap = sidecar.snapshot;
  const l = snap.outbound.find((x) => x.address === address && x.port === port)!;
  const cluster: Record<string, string> = {};
  for (const n of ['api', ...names])
    cluster[n] = snap.clusters.find((c) => c.endpoints.some((e) => `${e.address}:${e.port}` === servers[n].endpoint))!.name;
  const client = echoClient(t, `${address}:${port}`);
  return { servers, seenMd, cluster, client, setRoutes: (r: Route[]) => sidecar.setRoutes(l.name, r) };
}

function call(
  c: EchoClient,
  md: Record<string, string> = {},
  m: Partial<Msg> = {},
): Promise<{ msg: Msg | null; err: grpc.ServiceError | null }> {
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) meta.set(k, v);
  return new Promise((resolve) => c.Unary(m, meta, {}, (err, r) => resolve({ msg: err ? null : r, err })));
}

const rule = (cluster: string, extra: Partial<Route> = {}): Route => ({
  domains: ['*'],
  prefix: '/',
  headers: [],
  backends: [{ cluster, weight: 1 }],
  source: 'GRPCRoute default/test rule 0',
  ...extra,
});

t.test('gRPC: method and metadata matches route all 200 calls right; 90/10 split within 3%', async (t) => {
  const s = await setup(t, ['canary', 'stable', 'other']);
  await s.setRoutes([
    rule(s.cluster.canary, { path: { type: 'Exact', value: UNARY }, headers: [{ name: 'x-canary', value: 'true' }] }),
    rule(s.cluster.other, { path: { type: 'Exact', value: '/shoal.test.Echo/Bidi' } }),
    {
      ...rule(s.cluster.stable),
      path: { type: 'PathPrefix', value: '/shoal.test.Echo' },
      backends: [
        { cluster: s.cluster.stable, weight: 90 },
        { cluster: s.cluster.canary, weight: 10 },
      ],
    },
  ]);
  let right = 0;
  for (let i = 0; i < 200; i++) {
    const r = await call(s.client, { 'x-canary': i % 2 === 0 ? 'true' : 'false' });
    if (i % 2 === 0 ? r.msg?.server === 'canary' : r.msg !== null) right++;
  }
  t.equal(right, 200, 'metadata match: every canary call on canary');
  const got: Record<string, number> = {};
  const n = 2000;
  for (let i = 0; i < n; i += 10) {
    const rs = await Promise.all(Array.from({ length: 10 }, () => call(s.client)));
    for (const r of rs) got[r.msg?.server ?? String(r.err?.code)] = (got[r.msg?.server ?? String(r.err?.code)] ?? 0) + 1;
  }
  t.ok(Math.abs(got.stable / n - 0.9) <= 0.03, `stable ${got.stable}/${n} within 3% of 90%`);
  t.ok(Math.abs(got.canary / n - 0.1) <= 0.03, `canary ${got.canary}/${n} within 3% of 10%`);
});

t.test(
  'gRPC: header modifiers reach the server; mirrors count copies; unresolved is INTERNAL; timeoutMs is DEADLINE_EXCEEDED',
  async (t) => {
    const s = await setup(t, ['main', 'mirror']);
    await s.setRoutes([
      rule(s.cluster.main, { headers: [{ name: 'x-case', value: 'slow' }], timeoutMs: 150 }),
      rule(s.cluster.main, {
        headers: [{ name: 'x-case', value: 'unresolved' }],
        backends: [{ cluster: 'default/missing', weight: 1, unresolved: true }],
      }),
      rule(s.cluster.main, {
        requestHeaders: { set: [{ name: 'x-added', value: 'by-route' }], remove: ['x-secret'] },
        mirrors: [{ cluster: s.cluster.mirror }],
      }),
    ]);
    for (let i = 0; i < 20; i++) {
      const r = await call(s.client, { 'x-secret': 's' });
      t.equal(r.msg?.server, 'main', 'main answered, never the mirror');
    }
    const md = s.seenMd.main.at(-1)!;
    t.same(md.get('x-added'), ['by-route'], 'set header seen by the server');
    t.same(md.get('x-secret'), [], 'removed header not seen');
    await waitFor(() => s.servers.mirror.calls === 20, `the mirror to get 20 copies (has ${s.servers.mirror.calls})`);
    t.same(s.seenMd.mirror.at(-1)!.get('x-added'), ['by-route'], 'the mirror gets the modified request');
    const u = await call(s.client, { 'x-case': 'unresolved' });
    t.equal(u.err?.code, grpc.status.INTERNAL, 'unresolved backend: INTERNAL (HTTP 500)');
    t.same(u.err?.metadata.get('x-shoal-error'), ['no-backend'], 'x-shoal-error no-backend');
    const slow = await call(s.client, { 'x-case': 'slow' }, { delayMs: 1000 });
    t.equal(slow.err?.code, grpc.status.DEADLINE_EXCEEDED, 'timeoutMs: DEADLINE_EXCEEDED');
  },
);
