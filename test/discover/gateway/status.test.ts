// routeStatuses(): one entry per parentRef naming a Service shoal serves, with the spec's Accepted,
// ResolvedRefs and PartiallyInvalid conditions and reasons.
import t from 'tap';
import { routeStatuses, type RouteStatusWrite } from '../../../discover/gateway/status.ts';
import { parseStaticTopology } from '../../../discover/topology/staticFile.ts';
import { routeKey, type GatewayRoute, type Topology } from '../../../discover/topology/model.ts';

const BASE = `
services:
  - { name: api, namespace: prod, ports: [{ port: 80, protocol: http }, { port: 81, protocol: http }], endpoints: ["10.0.0.1"] }
  - { name: api-v1, namespace: prod, ports: [{ port: 80, protocol: http }], endpoints: ["10.0.1.1"] }
  - { name: grpc, namespace: prod, ports: [{ port: 50051, protocol: grpc }], endpoints: ["10.0.4.1"] }
`;
function mk(kind: GatewayRoute['kind'], ns: string, name: string, spec: Record<string, unknown>, generation = 4): GatewayRoute {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name, namespace: ns, generation }, spec };
}
function statuses(...routes: GatewayRoute[]): Map<string, RouteStatusWrite> {
  const top: Topology = parseStaticTopology(BASE);
  top.routes = new Map(routes.map((r) => [routeKey(r.kind, r.metadata.namespace, r.metadata.name), r]));
  return routeStatuses(top);
}
const api = (extra: Record<string, unknown> = {}) => ({ group: '', kind: 'Service', name: 'api', ...extra });
const v1 = { name: 'api-v1', port: 80 };
const cond = (s: RouteStatusWrite, parent: number, type: string) => s.parents[parent].conditions.find((c) => c.type === type)!;

t.test('an attached route with resolved references', async (t) => {
  const s = statuses(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [api({ port: 80 }), { name: 'some-gateway' }, api({ name: 'nowhere' })],
      rules: [{ backendRefs: [v1] }],
    }),
  ).get('HTTPRoute/prod/r')!;
  t.equal(s.generation, 4);
  t.equal(s.parents.length, 1, 'a Gateway parent and a Service shoal does not know are skipped');
  t.same(s.parents[0].parentRef, { group: '', kind: 'Service', name: 'api', port: 80 });
  t.equal(s.parents[0].controllerName, 'shoal.dev/mesh');
  t.same(
    s.parents[0].conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration]),
    [
      ['Accepted', 'True', 'Accepted', 4],
      ['ResolvedRefs', 'True', 'ResolvedRefs', 4],
    ],
  );
  t.match(cond(s, 0, 'Accepted').message, /Service prod\/api port 80 \(producer route: applies to every caller\)/);
  t.notOk(
    s.parents[0].conditions.some((c) => 'lastTransitionTime' in c),
    'no lastTransitionTime: the writer adds it',
  );
});

t.test('a consumer route names its namespace; the parentRef is echoed as given', async (t) => {
  const s = statuses(
    mk('HTTPRoute', 'team-a', 'c', { parentRefs: [api({ namespace: 'prod' })], rules: [{ backendRefs: [{ ...v1, namespace: 'prod' }] }] }),
  ).get('HTTPRoute/team-a/c')!;
  t.same(s.parents[0].parentRef, { group: '', kind: 'Service', namespace: 'prod', name: 'api' });
  t.match(cond(s, 0, 'Accepted').message, /ports 80, 81 \(consumer route: applies to callers in namespace team-a\)/);
  t.equal(cond(s, 0, 'ResolvedRefs').status, 'True', 'cross-namespace backends need no ReferenceGrant in the mesh (GEP-1294)');
});

t.test('a parentRef port the Service lacks: NoMatchingParent', async (t) => {
  const s = statuses(
    mk('HTTPRoute', 'prod', 'r', { parentRefs: [api({ port: 80 }), api({ port: 9 })], rules: [{ backendRefs: [v1] }] }),
  ).get('HTTPRoute/prod/r')!;
  t.same(
    s.parents.map((p) => [p.parentRef.port, cond({ ...s, parents: [p] }, 0, 'Accepted').reason]),
    [
      [80, 'Accepted'],
      [9, 'NoMatchingParent'],
    ],
  );
  t.match(s.parents[1].conditions[0].message, /has no port 9/);
  const named = statuses(
    mk('HTTPRoute', 'prod', 'n', {
      parentRefs: [api({ sectionName: '81' }), api({ sectionName: 'grpc' })],
      rules: [{ backendRefs: [v1] }],
    }),
  ).get('HTTPRoute/prod/n')!;
  t.match(named.parents[0].conditions[0].message, /attached to Service prod\/api port 81 /, 'sectionName selects the port of that name');
  t.same(named.parents[0].parentRef, { group: '', kind: 'Service', name: 'api', sectionName: '81' }, 'and is echoed');
  t.same(
    [named.parents[1].conditions[0].reason, named.parents[1].conditions[0].message],
    ['NoMatchingParent', 'Service prod/api has no port named grpc (it has 80 (80), 81 (81))'],
  );
});

t.test("backends that do not resolve: ResolvedRefs False with the spec's reason", async (t) => {
  const missing = statuses(
    mk('HTTPRoute', 'prod', 'r', { parentRefs: [api()], rules: [{ backendRefs: [v1, { name: 'gone', port: 80 }] }] }),
  ).get('HTTPRoute/prod/r')!;
  t.same(
    [cond(missing, 0, 'Accepted').status, cond(missing, 0, 'ResolvedRefs').status, cond(missing, 0, 'ResolvedRefs').reason],
    ['True', 'False', 'BackendNotFound'],
  );
  t.match(cond(missing, 0, 'ResolvedRefs').message, /spec\.rules\[0\]\.backendRefs\[1\]: backendRef Service prod\/gone not found/);
  const port = statuses(
    mk('HTTPRoute', 'prod', 'r', { parentRefs: [api()], rules: [{ backendRefs: [{ name: 'api-v1', port: 99 }] }] }),
  ).get('HTTPRoute/prod/r')!;
  t.equal(cond(port, 0, 'ResolvedRefs').reason, 'BackendNotFound');
  t.match(cond(port, 0, 'ResolvedRefs').message, /has no port 99/);
  const kind = statuses(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [api()],
      rules: [
        {
          backendRefs: [
            { name: 'gone', port: 80 },
            { group: 'x.io', kind: 'Thing', name: 't' },
          ],
        },
      ],
    }),
  ).get('HTTPRoute/prod/r')!;
  t.equal(cond(kind, 0, 'ResolvedRefs').reason, 'InvalidKind', 'InvalidKind first');
  const mirror = statuses(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [api()],
      rules: [{ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'gone', port: 80 } } }], backendRefs: [v1] }],
    }),
  ).get('HTTPRoute/prod/r')!;
  t.match(cond(mirror, 0, 'ResolvedRefs').message, /filters\[0\]\.requestMirror\.backendRef/, 'mirrors count too');
});

t.test('invalid routes and routes with no good rule: Accepted False UnsupportedValue, no PartiallyInvalid', async (t) => {
  const bad = statuses(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [api()],
      rules: [{ matches: [{ path: { type: 'PathPrefix', value: 'x' } }], backendRefs: [v1] }],
    }),
  ).get('HTTPRoute/prod/r')!;
  t.same([cond(bad, 0, 'Accepted').status, cond(bad, 0, 'Accepted').reason], ['False', 'UnsupportedValue']);
  t.match(cond(bad, 0, 'Accepted').message, /spec\.rules\[0\]\.matches\[0\]\.path.*it changes nothing for traffic/);
  t.notOk(cond(bad, 0, 'PartiallyInvalid'), 'an invalid route is not PartiallyInvalid');
  const cors = statuses(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [api()],
      rules: [
        { filters: [{ type: 'CORS', cors: {} }], backendRefs: [v1] },
        { matches: [{ path: { type: 'RegularExpression', value: '/a(' } }], backendRefs: [v1] },
      ],
    }),
  ).get('HTTPRoute/prod/r')!;
  t.same(
    [cond(cors, 0, 'Accepted').status, cond(cors, 0, 'Accepted').reason],
    ['False', 'UnsupportedValue'],
    'no rule shoal can carry out',
  );
  t.match(
    cond(cors, 0, 'Accepted').message,
    /^no rule shoal can carry out: spec\.rules\[0\]\.filters\[0\]\.type: CORS filters are not supported by shoal; spec\.rules\[1\]\.matches\[0\]\.path\.value: regular expression "\/a\(" does not compile.*; the route changes nothing for traffic$/,
    'naming what is unsupported',
  );
  t.notOk(cond(cors, 0, 'PartiallyInvalid'), 'a fully invalid route is not PartiallyInvalid (the spec)');
  t.same(cond(cors, 0, 'ResolvedRefs').status, 'True', 'no rule in force: no reference to resolve');
});

t.test('some rules dropped: Accepted True, PartiallyInvalid True UnsupportedValue naming them ("Dropped Rule")', async (t) => {
  const good = statuses(
    mk('HTTPRoute', 'prod', 'r', { parentRefs: [api()], rules: [{ backendRefs: [v1] }, { name: 'two', backendRefs: [v1] }] }),
  ).get('HTTPRoute/prod/r')!;
  t.same(
    good.parents[0].conditions.map((c) => c.type),
    ['Accepted', 'ResolvedRefs'],
    'all good: no PartiallyInvalid',
  );
  const partly = statuses(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [api()],
      rules: [
        { backendRefs: [v1] },
        { name: 'cors', filters: [{ type: 'CORS', cors: {} }], backendRefs: [{ name: 'gone', port: 80 }] },
        { matches: [{ headers: [{ name: 'x', type: 'RegularExpression', value: '(?P<n>a)' }] }], backendRefs: [v1] },
      ],
    }),
  ).get('HTTPRoute/prod/r')!;
  t.same(
    partly.parents[0].conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration]),
    [
      ['Accepted', 'True', 'Accepted', 4],
      ['ResolvedRefs', 'True', 'ResolvedRefs', 4],
      ['PartiallyInvalid', 'True', 'UnsupportedValue', 4],
    ],
    "a dropped rule's backend (gone) is not looked at: ResolvedRefs True",
  );
  t.match(
    cond(partly, 0, 'PartiallyInvalid').message,
    /^Dropped Rules 1 \(cors\), 2: spec\.rules\[1\]\.filters\[0\]\.type: CORS filters are not supported by shoal; spec\.rules\[2\]\.matches\[0\]\.headers\[0\]\.value: regular expression/,
  );
  t.match(cond(partly, 0, 'Accepted').message, /; rules 1 \(cors\), 2 dropped \(PartiallyInvalid\)$/);
  const one = statuses(
    mk('GRPCRoute', 'prod', 'g', {
      parentRefs: [{ group: '', kind: 'Service', name: 'grpc' }],
      rules: [
        { backendRefs: [{ name: 'grpc', port: 50051 }] },
        { matches: [{ method: { type: 'RegularExpression', method: '(' } }], backendRefs: [{ name: 'grpc', port: 50051 }] },
      ],
    }),
  ).get('GRPCRoute/prod/g')!;
  t.match(
    cond(one, 0, 'PartiallyInvalid').message,
    /^Dropped Rule 1: spec\.rules\[1\]\.matches\[0\]\.method\.method: regular expression/,
    'GRPCRoute too',
  );
  // Not accepted for another reason (no such port): no PartiallyInvalid (the spec: only beside Accepted True).
  const noPort = statuses(
    mk('HTTPRoute', 'prod', 'r', {
      parentRefs: [api({ port: 9 })],
      rules: [{ backendRefs: [v1] }, { filters: [{ type: 'CORS', cors: {} }], backendRefs: [v1] }],
    }),
  ).get('HTTPRoute/prod/r')!;
  t.same(
    noPort.parents[0].conditions.map((c) => [c.type, c.status]),
    [
      ['Accepted', 'False'],
      ['ResolvedRefs', 'True'],
    ],
  );
});

t.test('ExtensionRef filters: the route stays accepted, ResolvedRefs False InvalidKind', async (t) => {
  const ext = { type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'Filter', name: 'f' } };
  const s = statuses(mk('HTTPRoute', 'prod', 'r', { parentRefs: [api()], rules: [{ filters: [ext], backendRefs: [v1] }] })).get(
    'HTTPRoute/prod/r',
  )!;
  t.same(
    s.parents[0].conditions.map((c) => [c.type, c.status, c.reason]),
    [
      ['Accepted', 'True', 'Accepted'],
      ['ResolvedRefs', 'False', 'InvalidKind'],
    ],
    'no PartiallyInvalid: the rule is in force (its requests get a 500)',
  );
  t.match(
    cond(s, 0, 'ResolvedRefs').message,
    /^spec\.rules\[0\]\.filters\[0\]\.extensionRef: ExtensionRef filter x\.io\/Filter f does not resolve .*get a 500$/,
  );
  const onBackend = statuses(
    mk('HTTPRoute', 'prod', 'r', { parentRefs: [api()], rules: [{ backendRefs: [{ ...v1, filters: [ext] }] }] }),
  ).get('HTTPRoute/prod/r')!;
  t.match(cond(onBackend, 0, 'ResolvedRefs').message, /^spec\.rules\[0\]\.backendRefs\[0\]\.filters\[0\]\.extensionRef: /);
});

t.test('an HTTPRoute on a Service port a GRPCRoute of its namespace also names: Conflicted', async (t) => {
  const all = statuses(
    mk('GRPCRoute', 'prod', 'g', {
      parentRefs: [{ group: '', kind: 'Service', name: 'grpc' }],
      rules: [{ backendRefs: [{ name: 'grpc', port: 50051 }] }],
    }),
    mk('HTTPRoute', 'prod', 'h', {
      parentRefs: [{ group: '', kind: 'Service', name: 'grpc' }],
      rules: [{ backendRefs: [{ name: 'grpc', port: 50051 }] }],
    }),
    mk('HTTPRoute', 'team-a', 'h', {
      parentRefs: [{ group: '', kind: 'Service', name: 'grpc', namespace: 'prod' }],
      rules: [{ backendRefs: [{ name: 'grpc', namespace: 'prod', port: 50051 }] }],
    }),
  );
  t.same(
    [cond(all.get('GRPCRoute/prod/g')!, 0, 'Accepted').reason, cond(all.get('HTTPRoute/prod/h')!, 0, 'Accepted').reason],
    ['Accepted', 'Conflicted'],
  );
  t.equal(cond(all.get('HTTPRoute/prod/h')!, 0, 'Accepted').status, 'False');
  t.equal(
    cond(all.get('HTTPRoute/team-a/h')!, 0, 'Accepted').reason,
    'Accepted',
    'a consumer HTTPRoute in another namespace is its own group',
  );
});

t.test('a route without Service parents has an entry with no parents', async (t) => {
  const s = statuses(mk('HTTPRoute', 'prod', 'r', { parentRefs: [{ name: 'gw' }], rules: [{ backendRefs: [v1] }] }, 1));
  t.same(s.get('HTTPRoute/prod/r'), { generation: 1, parents: [] });
});

t.test('recomputing only the routes a change touched gives what recomputing every route gives', async (t) => {
  const { randomTopology, random } = await import('../snapshotFixtures.ts');
  const { parentsRoutingTo, routeParents } = await import('../../../discover/gateway/compile.ts');
  const { routesTouched } = await import('../../../discover/gateway/status.ts');
  const text = (m: Map<string, RouteStatusWrite>) => JSON.stringify([...m].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  let steps = 0;
  let partial = 0;
  let bad = 0;
  for (let seed = 1; seed <= 120; seed++) {
    const rnd = random(seed * 104729);
    const topo = randomTopology(seed, { routes: true });
    topo.routes ??= new Map();
    let kept = routeStatuses(topo);
    for (let step = 0; step < 10; step++) {
      const changedRoutes = new Set<string>();
      const parents = new Set<string>();
      const changedServices = new Set<string>();
      const setRoute = (key: string, r: GatewayRoute | undefined) => {
        const was = topo.routes!.get(key);
        for (const p of was ? routeParents(was) : []) parents.add(p);
        for (const p of r ? routeParents(r) : []) parents.add(p);
        if (r) topo.routes!.set(key, r);
        else topo.routes!.delete(key);
        changedRoutes.add(key);
      };
      const routes = [...topo.routes!.entries()];
      const services = [...topo.services.entries()];
      const kind = rnd(6);
      if (kind === 0 && routes.length > 0) {
        // Other weights, or another parent port.
        const [key, r] = routes[rnd(routes.length)];
        const spec = JSON.parse(JSON.stringify(r.spec));
        if (rnd(2) === 0) for (const rule of spec.rules ?? []) for (const b of rule.backendRefs ?? []) b.weight = rnd(50);
        else for (const p of spec.parentRefs ?? []) p.port = [80, 8080, 5432][rnd(3)];
        setRoute(key, { ...r, metadata: { ...r.metadata, generation: step + 2 }, spec });
      } else if (kind === 1 && routes.length > 0) {
        setRoute(routes[rnd(routes.length)][0], undefined);
      } else if (kind === 2 && routes.length > 0) {
        // A GRPCRoute on the parent of an HTTPRoute, in its namespace: Conflicted.
        const [, r] = routes[rnd(routes.length)];
        const g = mk('GRPCRoute', r.metadata.namespace, `g-${step}`, {
          parentRefs: r.spec.parentRefs,
          rules: [{ backendRefs: (r.spec.rules as any[] | undefined)?.[0]?.backendRefs ?? [] }],
        });
        setRoute(routeKey('GRPCRoute', r.metadata.namespace, `g-${step}`), g);
      } else if (kind === 3 && services.length > 0) {
        const [key] = services[rnd(services.length)];
        topo.services.delete(key);
        changedServices.add(key);
      } else if (services.length > 0) {
        // A Service replaced with another port (or, from a deleted one, back).
        const [key, s] = services[rnd(services.length)];
        const port = [80, 8080, 5432][rnd(3)];
        topo.services.set(key, {
          ...s,
          ports: [{ name: String(port), port, protocol: port === 5432 ? 'tcp' : 'http' }],
          endpoints: new Map([[port, []]]),
        });
        changedServices.add(key);
      }
      for (const k of changedServices) parents.add(k);
      for (const p of parentsRoutingTo(topo, changedServices)) parents.add(p);
      const touched = routesTouched(topo, changedRoutes, parents);
      if (touched.size < topo.routes!.size) partial++;
      const fresh = routeStatuses(topo, touched);
      const next = new Map(kept);
      for (const k of touched) next.set(k, fresh.get(k)!);
      for (const k of next.keys()) if (!topo.routes!.has(k)) next.delete(k);
      const full = routeStatuses(topo);
      steps++;
      if (text(next) !== text(full)) {
        bad++;
        if (bad <= 3) t.fail(`seed ${seed}, step ${step} (edit ${kind}): the touched routes' status differs from a full computation`);
      }
      kept = full;
    }
  }
  t.equal(bad, 0, `all ${steps} changes`);
  t.ok(partial > steps / 3, `${partial} of them recomputed only some routes`);
});
