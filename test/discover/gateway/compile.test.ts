// Compiling the mesh profile's routes into the callers' snapshots: precedence, producer and consumer
// routes, port-scoped parents, unresolved backends, GRPCRoute, filters, and the builder's use of them.
import t from 'tap';
import { buildSnapshot, snapshotInputs } from '../../../discover/snapshot/builder.ts';
import { compileFor, precedence } from '../../../discover/gateway/compile.ts';
import { parseStaticTopology } from '../../../discover/topology/staticFile.ts';
import { routeKey, type GatewayRoute, type Topology } from '../../../discover/topology/model.ts';
import { snapshotError, type Route, type Snapshot } from '../../../shared/snapshot.ts';

const SERVICES = `
services:
  - { name: api, namespace: prod, ports: [{ port: 80, protocol: http }, { port: 81, protocol: http }], endpoints: ["10.0.0.1"] }
  - { name: api-v1, namespace: prod, ports: [{ port: 80, protocol: http }], endpoints: ["10.0.1.1"] }
  - { name: api-v2, namespace: prod, ports: [{ port: 80, protocol: http }], endpoints: ["10.0.2.1"] }
  - { name: shadow, namespace: prod, ports: [{ port: 80 }], endpoints: ["10.0.3.1"] }
  - { name: grpc, namespace: prod, ports: [{ port: 50051, protocol: grpc }], endpoints: ["10.0.4.1"] }
`;
const APPS = `
apps:
  - { name: web, namespace: team-a, config: { base_services: [{ depend_service_alias: api.prod, port: 80 }, { depend_service_alias: api.prod, port: 81 }] } }
  - { name: web, namespace: team-b, config: { base_services: [{ depend_service_alias: api.prod, port: 80 }] } }
  - { name: front, namespace: prod, config: { base_services: [{ depend_service_alias: api, port: 80, options: { Prefix: /old, Weight: 7 } }, { depend_service_alias: grpc, port: 50051, protocol: grpc }] } }
`;

let seq = 0;
function mk(kind: GatewayRoute['kind'], ns: string, name: string, spec: Record<string, unknown>, created?: string): GatewayRoute {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind,
    metadata: { name, namespace: ns, generation: 1, uid: `u${seq++}`, ...(created ? { creationTimestamp: created } : {}) },
    spec,
  };
}
/** The base topology with these routes (set directly: unsupported rules are refused by the static file). */
function topo(...routes: GatewayRoute[]): Topology {
  const t = parseStaticTopology(SERVICES + APPS);
  t.routes = new Map(routes.map((r) => [routeKey(r.kind, r.metadata.namespace, r.metadata.name), r]));
  return t;
}
const apiParent = (port?: number) => ({ group: '', kind: 'Service', name: 'api', namespace: 'prod', ...(port ? { port } : {}) });
const to = (name: string, weight?: number) => ({ name, namespace: 'prod', port: 80, ...(weight !== undefined ? { weight } : {}) });
function routesFor(top: Topology, callerNs: string, svc = 'prod/api', port = 80): Route[] {
  return compileFor(top, callerNs, top.services.get(svc)!, port)?.routes ?? [];
}
const sources = (rs: Route[]) => rs.map((r) => r.source);

t.test("precedence: the spec's order, table-driven", async (t) => {
  // [what, routes, expected sources in order]
  const cases: Array<[string, GatewayRoute[], string[]]> = [
    [
      'Exact before any PathPrefix, PathPrefix by length, RegularExpression last',
      [
        mk('HTTPRoute', 'prod', 'r', {
          parentRefs: [apiParent()],
          rules: [
            { matches: [{ path: { type: 'PathPrefix', value: '/' } }], backendRefs: [to('api-v1')] },
            { matches: [{ path: { type: 'RegularExpression', value: '/a/.*' } }], backendRefs: [to('api-v1')] },
            { matches: [{ path: { type: 'PathPrefix', value: '/a/b/c' } }], backendRefs: [to('api-v1')] },
            { matches: [{ path: { type: 'Exact', value: '/a' } }], backendRefs: [to('api-v1')] },
            { matches: [{ path: { type: 'PathPrefix', value: '/a' } }], backendRefs: [to('api-v1')] },
          ],
        }),
      ],
      [
        'HTTPRoute prod/r rule 3 match 0',
        'HTTPRoute prod/r rule 2 match 0',
        'HTTPRoute prod/r rule 4 match 0',
        'HTTPRoute prod/r rule 0 match 0',
        'HTTPRoute prod/r rule 1 match 0',
      ],
    ],
    [
      'same path: a method match, then most headers, then most query params',
      [
        mk('HTTPRoute', 'prod', 'r', {
          parentRefs: [apiParent()],
          rules: [
            {
              matches: [
                {
                  queryParams: [
                    { name: 'a', value: '1' },
                    { name: 'b', value: '1' },
                  ],
                },
              ],
              backendRefs: [to('api-v1')],
            },
            { matches: [{ headers: [{ name: 'a', value: '1' }] }], backendRefs: [to('api-v1')] },
            {
              matches: [
                {
                  headers: [
                    { name: 'a', value: '1' },
                    { name: 'b', value: '1' },
                  ],
                },
              ],
              backendRefs: [to('api-v1')],
            },
            { matches: [{ method: 'GET' }], backendRefs: [to('api-v1')] },
            { matches: [{ headers: [{ name: 'a', value: '1' }], queryParams: [{ name: 'a', value: '1' }] }], backendRefs: [to('api-v1')] },
          ],
        }),
      ],
      [
        'HTTPRoute prod/r rule 3 match 0',
        'HTTPRoute prod/r rule 2 match 0',
        'HTTPRoute prod/r rule 4 match 0',
        'HTTPRoute prod/r rule 1 match 0',
        'HTTPRoute prod/r rule 0 match 0',
      ],
    ],
    [
      'a longer prefix wins over a method and headers',
      [
        mk('HTTPRoute', 'prod', 'r', {
          parentRefs: [apiParent()],
          rules: [
            {
              matches: [{ path: { type: 'PathPrefix', value: '/a' }, method: 'GET', headers: [{ name: 'a', value: '1' }] }],
              backendRefs: [to('api-v1')],
            },
            { matches: [{ path: { type: 'PathPrefix', value: '/ab' } }], backendRefs: [to('api-v1')] },
          ],
        }),
      ],
      ['HTTPRoute prod/r rule 1 match 0', 'HTTPRoute prod/r rule 0 match 0'],
    ],
    [
      'ties across routes: the oldest first, then namespace/name',
      [
        mk('HTTPRoute', 'prod', 'b-new', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] }, '2025-02-01T00:00:00Z'),
        mk('HTTPRoute', 'prod', 'c-old', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] }, '2025-01-01T00:00:00Z'),
        mk('HTTPRoute', 'prod', 'a-new', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] }, '2025-02-01T00:00:00Z'),
      ],
      ['HTTPRoute prod/c-old rule 0 match 0', 'HTTPRoute prod/a-new rule 0 match 0', 'HTTPRoute prod/b-new rule 0 match 0'],
    ],
    [
      'without timestamps (a static file): namespace/name',
      [
        mk('HTTPRoute', 'prod', 'zeta', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] }),
        mk('HTTPRoute', 'prod', 'alpha', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] }),
      ],
      ['HTTPRoute prod/alpha rule 0 match 0', 'HTTPRoute prod/zeta rule 0 match 0'],
    ],
    [
      'ties within a route: rule order, then match order',
      [
        mk('HTTPRoute', 'prod', 'r', {
          parentRefs: [apiParent()],
          rules: [
            { matches: [{ headers: [{ name: 'a', value: '1' }] }, { headers: [{ name: 'b', value: '1' }] }], backendRefs: [to('api-v1')] },
            { matches: [{ headers: [{ name: 'c', value: '1' }] }], backendRefs: [to('api-v1')] },
          ],
        }),
      ],
      ['HTTPRoute prod/r rule 0 match 0', 'HTTPRoute prod/r rule 0 match 1', 'HTTPRoute prod/r rule 1 match 0'],
    ],
  ];
  for (const [what, routes, expected] of cases) t.same(sources(routesFor(topo(...routes), 'team-b')), expected, what);

  const g = topo(
    mk('GRPCRoute', 'prod', 'g', {
      parentRefs: [{ group: '', kind: 'Service', name: 'grpc' }],
      rules: [
        { backendRefs: [{ name: 'grpc', port: 50051 }] },
        { matches: [{ method: { service: 'shop.Cart' } }], backendRefs: [{ name: 'grpc', port: 50051 }] },
        { matches: [{ method: { service: 'shop.Cart', method: 'Add' } }], backendRefs: [{ name: 'grpc', port: 50051 }] },
        {
          matches: [{ method: { service: 'shop.Cart' }, headers: [{ name: 'x', value: '1' }] }],
          backendRefs: [{ name: 'grpc', port: 50051 }],
        },
        { matches: [{ method: { service: 'shop.CartLong' } }], backendRefs: [{ name: 'grpc', port: 50051 }] },
      ],
    }),
  );
  t.same(
    sources(routesFor(g, 'prod', 'prod/grpc', 50051)),
    [
      'GRPCRoute prod/g rule 4 match 0',
      'GRPCRoute prod/g rule 2 match 0',
      'GRPCRoute prod/g rule 3 match 0',
      'GRPCRoute prod/g rule 1 match 0',
      'GRPCRoute prod/g rule 0 match 0',
    ],
    'GRPCRoute: most characters of service, then of method, then most headers',
  );
  t.equal(typeof precedence, 'function');
});

t.test('producer and consumer routes', async (t) => {
  const producer = mk('HTTPRoute', 'prod', 'producer', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] });
  const consumer = mk('HTTPRoute', 'team-a', 'consumer', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v2')] }] });
  const both = topo(producer, consumer);
  t.same(
    sources(routesFor(both, 'team-a')),
    ['HTTPRoute team-a/consumer rule 0 match 0'],
    "a caller in the consumer route's namespace: the consumer route alone",
  );
  t.same(sources(routesFor(both, 'team-b')), ['HTTPRoute prod/producer rule 0 match 0'], 'a caller elsewhere: the producer route');
  t.same(
    sources(routesFor(both, 'prod')),
    ['HTTPRoute prod/producer rule 0 match 0'],
    "a caller in the Service's namespace: the producer route",
  );
  t.same(sources(routesFor(topo(consumer), 'team-b')), [], 'a consumer route never applies to other namespaces');
  const c2 = mk('HTTPRoute', 'team-a', 'consumer-2', {
    parentRefs: [apiParent()],
    rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/x' } }], backendRefs: [to('api-v1')] }],
  });
  t.same(
    sources(routesFor(topo(producer, consumer, c2), 'team-a')),
    ['HTTPRoute team-a/consumer-2 rule 0 match 0', 'HTTPRoute team-a/consumer rule 0 match 0'],
    'consumer routes of one namespace merge',
  );
  // A route in a third namespace naming the Service is a consumer route of that namespace only.
  const snapA = buildSnapshot(both.apps.get('team-a/web')!, both);
  const snapB = buildSnapshot(both.apps.get('team-b/web')!, both);
  const l = (s: Snapshot) => s.outbound.find((x) => x.name === 'api.prod:80')!;
  t.same(
    l(snapA).routes.map((r) => r.backends.map((b) => b.cluster)),
    [['api-v2.prod:80']],
  );
  t.same(
    l(snapB).routes.map((r) => r.backends.map((b) => b.cluster)),
    [['api-v1.prod:80']],
  );
  t.equal(snapshotError(snapA), null);
  t.equal(snapshotError(snapB), null);
});

t.test('parentRef port: that Service port only; without it, every port', async (t) => {
  const scoped = topo(mk('HTTPRoute', 'prod', 'p80', { parentRefs: [apiParent(80)], rules: [{ backendRefs: [to('api-v1')] }] }));
  t.equal(routesFor(scoped, 'team-a', 'prod/api', 80).length, 1);
  t.equal(routesFor(scoped, 'team-a', 'prod/api', 81).length, 0);
  const all = topo(mk('HTTPRoute', 'prod', 'all', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] }));
  t.equal(routesFor(all, 'team-a', 'prod/api', 80).length, 1);
  t.equal(routesFor(all, 'team-a', 'prod/api', 81).length, 1);
  const snap = buildSnapshot(scoped.apps.get('team-a/web')!, scoped);
  t.ok(snap.outbound.find((l) => l.name === 'api.prod:80')!.routes[0].source, 'port 80 carries the route');
  t.equal(snap.outbound.find((l) => l.name === 'api.prod:81')!.routes[0].source, undefined, 'port 81 keeps its mesh-config route');
  const missing = topo(mk('HTTPRoute', 'prod', 'p90', { parentRefs: [apiParent(90)], rules: [{ backendRefs: [to('api-v1')] }] }));
  t.equal(routesFor(missing, 'team-a', 'prod/api', 80).length, 0, 'a port the Service lacks attaches nowhere');
});

t.test('backends that do not resolve get their share of 500s; resolved ones get clusters', async (t) => {
  const top = topo(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [apiParent()],
      rules: [
        {
          backendRefs: [
            to('api-v1', 50),
            to('gone', 20),
            { name: 'api-v1', namespace: 'prod', port: 99, weight: 20 },
            { group: 'x.io', kind: 'Thing', name: 't', weight: 10 },
          ],
        },
      ],
    }),
  );
  const snap = buildSnapshot(top.apps.get('team-b/web')!, top);
  const r = snap.outbound.find((l) => l.name === 'api.prod:80')!.routes[0];
  t.same(
    r.backends.map((b) => [b.cluster, b.weight, b.unresolved ?? false]),
    [
      ['api-v1.prod:80', 50, false],
      ['gone.prod:80', 20, true],
      ['api-v1.prod:99', 20, true],
      ['x.io/Thing/t.prod:0', 10, true],
    ],
  );
  t.ok(
    snap.clusters.some((c) => c.name === 'api-v1.prod:80' && c.endpoints.length === 1),
    'the resolved backend has its cluster and endpoints',
  );
  t.notOk(
    snap.clusters.some((c) => c.name === 'gone.prod:80'),
    'no cluster for what does not resolve',
  );
  t.equal(snapshotError(snap), null, 'the snapshot is valid');
  const none = topo(
    mk('HTTPRoute', 'prod', 'r', { parentRefs: [apiParent()], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/x' } }] }] }),
  );
  const s2 = buildSnapshot(none.apps.get('team-b/web')!, none);
  t.same(s2.outbound.find((l) => l.name === 'api.prod:80')!.routes[0].backends, [], 'a rule without backends: every request gets a 500');
  t.equal(snapshotError(s2), null);
});

t.test("filters, timeouts and retry become the snapshot route's fields", async (t) => {
  const top = topo(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [apiParent()],
      rules: [
        {
          matches: [
            {
              path: { type: 'PathPrefix', value: '/v1' },
              method: 'POST',
              headers: [{ name: 'x-re', type: 'RegularExpression', value: '^a+$' }],
              queryParams: [{ name: 'q', value: '1' }],
            },
          ],
          filters: [
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: { set: [{ name: 'a', value: '1' }], add: [{ name: 'b', value: '2' }], remove: ['c'] },
            },
            { type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['server'] } },
            {
              type: 'RequestMirror',
              requestMirror: { backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 1, denominator: 8 } },
            },
            { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 80 } } },
            { type: 'URLRewrite', urlRewrite: { hostname: 'v1.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/' } } },
          ],
          backendRefs: [
            {
              name: 'api-v1',
              port: 80,
              filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-v', value: '1' }] } }],
            },
          ],
          timeouts: { request: '10s', backendRequest: '1500ms' },
          retry: { codes: [502, 503], attempts: 3, backoff: '100ms' },
        },
        {
          matches: [{ path: { type: 'Exact', value: '/old' } }],
          filters: [
            {
              type: 'RequestRedirect',
              requestRedirect: {
                scheme: 'https',
                hostname: 'new.example',
                port: 8443,
                path: { type: 'ReplaceFullPath', replaceFullPath: '/new' },
                statusCode: 301,
              },
            },
          ],
        },
      ],
    }),
  );
  const snap = buildSnapshot(top.apps.get('team-b/web')!, top);
  t.equal(snapshotError(snap), null);
  const [redirect, main] = snap.outbound.find((l) => l.name === 'api.prod:80')!.routes;
  t.same(main, {
    domains: ['*'],
    prefix: '/',
    headers: [{ name: 'x-re', value: '^a+$', type: 'RegularExpression' }],
    backends: [{ cluster: 'api-v1.prod:80', weight: 1, responseHeaders: { set: [{ name: 'x-v', value: '1' }] } }],
    path: { type: 'PathPrefix', value: '/v1' },
    method: 'POST',
    query: [{ name: 'q', value: '1' }],
    requestHeaders: { set: [{ name: 'a', value: '1' }], add: [{ name: 'b', value: '2' }], remove: ['c'] },
    responseHeaders: { remove: ['server'] },
    rewrite: { hostname: 'v1.internal', path: { type: 'ReplacePrefixMatch', value: '/' } },
    mirrors: [{ cluster: 'shadow.prod:80', percent: 12.5 }, { cluster: 'shadow.prod:80' }],
    timeoutMs: 10000,
    backendTimeoutMs: 1500,
    retry: { codes: [502, 503], attempts: 3, backoffMs: 100 },
    source: 'HTTPRoute prod/r rule 0 match 0',
  });
  t.same(redirect.redirect, {
    statusCode: 301,
    scheme: 'https',
    hostname: 'new.example',
    port: 8443,
    path: { type: 'ReplaceFullPath', value: '/new' },
  });
  t.same(redirect.backends, []);
  const shadow = snap.clusters.find((c) => c.name === 'shadow.prod:80')!;
  t.equal(shadow.protocol, 'http', "a backend port declared tcp speaks the listener's protocol");
  const own = snap.clusters.find((c) => c.name === 'api.prod:80')!;
  t.same(shadow.policy, own.policy, 'backend clusters take the options of the dependency whose routes send there');
  t.equal(main.retryNonIdempotent, undefined);
});

t.test(
  'rules shoal cannot carry out are dropped; a route with none it can is not in force (the snapshot is byte for byte the one without it)',
  async (t) => {
    const plain = topo();
    const snapOf = (top: Topology, app = 'team-b/web') => buildSnapshot(top.apps.get(app)!, top);
    const body = (s: Snapshot) => JSON.stringify(s);
    const apiRoutes = (s: Snapshot) => s.outbound.find((l) => l.name === 'api.prod:80')!.routes;
    const cors = {
      matches: [{ path: { type: 'PathPrefix', value: '/cors' } }],
      filters: [{ type: 'CORS', cors: { allowOrigins: ['https://a.example'] } }],
      backendRefs: [to('api-v1')],
    };
    const auth = {
      filters: [{ type: 'ExternalAuth', externalAuth: { protocol: 'HTTP', http: {}, backendRef: { name: 'shadow', port: 80 } } }],
      backendRefs: [to('api-v1')],
    };
    const badRegex = { matches: [{ path: { type: 'RegularExpression', value: '/x/(unclosed' } }], backendRefs: [to('api-v1')] };
    const re2 = { matches: [{ headers: [{ name: 'x-user', type: 'RegularExpression', value: '(?P<n>a)' }] }], backendRefs: [to('shadow')] };
    const good = { matches: [{ path: { type: 'PathPrefix', value: '/v2' } }], backendRefs: [to('api-v2')] };

    // All good: every rule in force.
    const allGood = topo(mk('HTTPRoute', 'prod', 'r', { parentRefs: [apiParent()], rules: [good, { backendRefs: [to('api-v1')] }] }));
    t.same(
      apiRoutes(snapOf(allGood)).map((r) => [r.path?.value, r.backends.map((b) => b.cluster), r.source]),
      [
        ['/v2', ['api-v2.prod:80'], 'HTTPRoute prod/r rule 0 match 0'],
        ['/', ['api-v1.prod:80'], 'HTTPRoute prod/r rule 1 match 0'],
      ],
      'all good: both rules in force',
    );

    // Partly dropped: the good rules only, exactly as a route holding the good rules alone would give (the
    // sources keep the rule indexes of the route as written).
    const partly = topo(mk('HTTPRoute', 'prod', 'r', { parentRefs: [apiParent()], rules: [cors, good, badRegex, re2, auth] }));
    const sp = snapOf(partly);
    t.same(
      apiRoutes(sp).map((r) => [r.path?.value, r.backends.map((b) => b.cluster), r.source]),
      [['/v2', ['api-v2.prod:80'], 'HTTPRoute prod/r rule 1 match 0']],
      'partly dropped: rule 1 alone is in force; the CORS, bad-regex, RE2-only and ExternalAuth rules contribute nothing',
    );
    t.notOk(
      sp.clusters.some((c) => c.name === 'api-v1.prod:80' || c.name === 'shadow.prod:80'),
      'no cluster for the backends of the dropped rules',
    );
    const alone = topo(mk('HTTPRoute', 'prod', 'r', { parentRefs: [apiParent()], rules: [good] }));
    const unversioned = (x: string) => x.replace(/"version":"[0-9a-f]+"/, '"version":""');
    t.equal(
      unversioned(body(sp).replaceAll('rule 1 match', 'rule 0 match')),
      unversioned(body(snapOf(alone))),
      'the same snapshot as the route with its good rule alone (but for the rule index in the sources, and so the version)',
    );
    t.equal(snapshotError(sp), null);
    // Without the route, a request for /v1 goes to the Service (the mesh config's route); the dropped rules do
    // not take it from there: the route's only snapshot route is /v2.
    t.notOk(
      apiRoutes(sp).some((r) => r.backends.length === 0),
      'no route answering 500',
    );

    // None good: as if the route were absent, for every caller, byte for byte.
    for (const [what, rules] of [
      ['a regex ECMAScript cannot compile', [badRegex]],
      ['CORS', [cors]],
      ['ExternalAuth', [auth]],
      ['all four at once', [cors, badRegex, re2, auth]],
    ] as const) {
      const none = topo(mk('HTTPRoute', 'prod', 'bad', { parentRefs: [apiParent()], rules: [...rules] }));
      for (const app of ['team-a/web', 'team-b/web', 'prod/front']) {
        t.equal(body(snapOf(none, app)), body(snapOf(plain, app)), `none good (${what}): ${app}'s snapshot is the one without the route`);
        t.equal(
          snapshotInputs(none.apps.get(app)!, none),
          snapshotInputs(plain.apps.get(app)!, plain),
          `and its inputs too (${what}, ${app})`,
        );
      }
    }
    // Beside another route: the other route's routing, unchanged.
    const other = mk('HTTPRoute', 'prod', 'other', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v2')] }] });
    const withBad = topo(other, mk('HTTPRoute', 'prod', 'a-bad', { parentRefs: [apiParent()], rules: [badRegex] }));
    t.equal(body(snapOf(withBad)), body(snapOf(topo(other))), "none good beside a good route: the good route's routing alone");
    // A GRPCRoute with no good rule does not win over the HTTPRoutes of its Service port.
    const grpcParent = { group: '', kind: 'Service', name: 'grpc' };
    const h = mk('HTTPRoute', 'prod', 'h', { parentRefs: [grpcParent], rules: [{ backendRefs: [{ name: 'grpc', port: 50051 }] }] });
    const badGrpc = topo(
      h,
      mk('GRPCRoute', 'prod', 'g', {
        parentRefs: [grpcParent],
        rules: [{ matches: [{ method: { type: 'RegularExpression', service: '(' } }], backendRefs: [{ name: 'grpc', port: 50051 }] }],
      }),
    );
    t.equal(
      body(snapOf(badGrpc, 'prod/front')),
      body(snapOf(topo(h), 'prod/front')),
      'a GRPCRoute with no good rule: the HTTPRoute stays in force',
    );

    // Invalid for the API server: not in force either.
    const invalid = topo(
      mk('HTTPRoute', 'prod', 'bad', {
        parentRefs: [apiParent()],
        rules: [{ matches: [{ path: { type: 'PathPrefix', value: 'no-slash' } }], backendRefs: [to('api-v1')] }],
      }),
    );
    t.equal(body(snapOf(invalid)), body(snapOf(plain)), 'an invalid route changes nothing');
  },
);

t.test('ExtensionRef filters are not skipped: the requests they would process get a 500', async (t) => {
  const ext = { type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'Filter', name: 'f' } };
  const top = topo(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [apiParent()],
      rules: [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/ext' } }],
          filters: [ext, { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: 'b' }] } }],
          backendRefs: [to('shadow')],
        },
        { backendRefs: [to('api-v1', 3), { ...to('api-v2', 1), filters: [ext] }] },
      ],
    }),
  );
  const snap = buildSnapshot(top.apps.get('team-b/web')!, top);
  const rs = snap.outbound.find((l) => l.name === 'api.prod:80')!.routes;
  t.same(
    rs.map((r) => [r.path?.value, r.backends, r.requestHeaders, r.source]),
    [
      ['/ext', [], undefined, 'HTTPRoute prod/r rule 0 match 0 (ExtensionRef filter: answers 500)'],
      [
        '/',
        [
          { cluster: 'api-v1.prod:80', weight: 3 },
          { cluster: 'api-v2.prod:80', weight: 1, unresolved: true },
        ],
        undefined,
        'HTTPRoute prod/r rule 1 match 0',
      ],
    ],
    "a rule's ExtensionRef: its matches answer 500, none of its other filters or backends used; a backendRef's: its share answers 500",
  );
  t.notOk(
    snap.clusters.some((c) => c.name === 'shadow.prod:80' || c.name === 'api-v2.prod:80'),
    'no cluster for a backend whose requests get a 500',
  );
  t.equal(snapshotError(snap), null);
});

t.test('GRPCRoute: method matches become paths; GRPCRoute wins over HTTPRoute on the same Service port', async (t) => {
  const grpcParent = { group: '', kind: 'Service', name: 'grpc' };
  const back = [{ name: 'grpc', port: 50051 }];
  const top = topo(
    mk('GRPCRoute', 'prod', 'g', {
      parentRefs: [grpcParent],
      rules: [
        {
          matches: [
            { method: { service: 'shop.Cart', method: 'Add' } },
            { method: { service: 'shop.Cart' } },
            { method: { method: 'Ping' } },
          ],
          backendRefs: back,
        },
        {
          matches: [
            { method: { type: 'RegularExpression', service: 'shop\\..*', method: 'Get.*' }, headers: [{ name: 'x-user', value: 'a' }] },
          ],
          backendRefs: back,
        },
      ],
    }),
    mk('HTTPRoute', 'prod', 'h', { parentRefs: [grpcParent], rules: [{ backendRefs: back }] }),
  );
  const rs = routesFor(top, 'prod', 'prod/grpc', 50051);
  t.same(
    rs.map((r) => [r.path, r.headers, r.method]),
    [
      [{ type: 'Exact', value: '/shop.Cart/Add' }, [], undefined],
      [{ type: 'PathPrefix', value: '/shop.Cart/' }, [], undefined],
      [{ type: 'RegularExpression', value: '/(?:shop\\..*)/(?:Get.*)' }, [{ name: 'x-user', value: 'a' }], undefined],
      [{ type: 'RegularExpression', value: '/[^/]+/Ping' }, [], undefined],
    ],
    'paths, by characters of service (9, 9, 8, 0) then of method; no method match (gRPC is always POST; the spec asks none)',
  );
  t.notOk(
    rs.some((r) => r.source?.startsWith('HTTPRoute')),
    'the HTTPRoute on the same Service port is left out',
  );
  const snap = buildSnapshot(top.apps.get('prod/front')!, top);
  t.equal(snapshotError(snap), null);
  t.equal(snap.outbound.find((l) => l.name === 'grpc:50051')!.protocol, 'grpc');
  // A GRPCRoute backend whose port says http or tcp still speaks HTTP/2.
  const g2 = topo(
    mk('GRPCRoute', 'prod', 'g', {
      parentRefs: [grpcParent],
      rules: [
        {
          backendRefs: [
            { name: 'api-v1', port: 80 },
            { name: 'shadow', port: 80 },
          ],
        },
      ],
    }),
  );
  const s2 = buildSnapshot(g2.apps.get('prod/front')!, g2);
  t.same(
    s2.clusters.filter((c) => c.name !== 'api.prod:80' && c.name !== 'grpc.prod:50051').map((c) => [c.name, c.protocol]),
    [
      ['api-v1.prod:80', 'grpc'],
      ['shadow.prod:80', 'grpc'],
    ],
  );
  t.equal(snapshotError(s2), null);
});

t.test('the route wins over the mesh config for routing; a tcp dependency keeps its mesh route', async (t) => {
  const top = topo(
    mk('HTTPRoute', 'prod', 'r', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1', 90), to('api-v2', 10)] }] }),
  );
  const snap = buildSnapshot(top.apps.get('prod/front')!, top);
  const l = snap.outbound.find((x) => x.name === 'api:80')!;
  t.same(
    l.routes.map((r) => [r.prefix, r.backends.map((b) => [b.cluster, b.weight])]),
    [
      [
        '/',
        [
          ['api-v1.prod:80', 90],
          ['api-v2.prod:80', 10],
        ],
      ],
    ],
    'Prefix /old and Weight 7 of the mesh config give way',
  );
  t.equal(
    snap.clusters.find((c) => c.name === 'api.prod:80')!.policy.requestTimeoutMs,
    snap.clusters.find((c) => c.name === 'api-v1.prod:80')!.policy.requestTimeoutMs,
  );
  const tcp = parseStaticTopology(`${SERVICES}
apps:
  - { name: raw, namespace: prod, config: { base_services: [{ depend_service_alias: api, port: 80, protocol: tcp }] } }
`);
  tcp.routes = top.routes;
  const s2 = buildSnapshot(tcp.apps.get('prod/raw')!, tcp);
  t.match(s2.status.errors.join('\n'), /HTTPRoute prod\/r not applied: the dependency is tcp/);
  t.equal(s2.outbound.find((x) => x.name === 'api:80')!.routes[0].source, undefined);
});

t.test('snapshot inputs: a route change changes the inputs of exactly the callers it affects', async (t) => {
  const consumer = mk('HTTPRoute', 'team-a', 'c', { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v2')] }] });
  const a = topo(consumer);
  const b = topo({ ...consumer, spec: { parentRefs: [apiParent()], rules: [{ backendRefs: [to('api-v1')] }] } });
  const inputs = (top: Topology) => Object.fromEntries([...top.apps].map(([k, app]) => [k, snapshotInputs(app, top)]));
  const ia = inputs(a);
  const ib = inputs(b);
  t.not(ia['team-a/web'], ib['team-a/web'], "team-a/web (the consumer route's namespace) changes");
  t.equal(ia['team-b/web'], ib['team-b/web'], 'team-b/web does not');
  t.equal(ia['prod/front'], ib['prod/front'], 'prod/front does not');
  t.equal(inputs(topo())['team-b/web'], ia['team-b/web'], 'a route that applies to nobody of an app leaves its inputs as without routes');
  // A backend's endpoints are an input of the callers that route there.
  const c = topo(consumer);
  c.services.set('prod/api-v2', { ...c.services.get('prod/api-v2')!, endpoints: new Map([[80, []]]) });
  const ic = inputs(c);
  t.not(ic['team-a/web'], ia['team-a/web'], 'an endpoint change of a route backend changes the inputs of its callers');
  t.equal(ic['team-b/web'], ia['team-b/web']);
});
