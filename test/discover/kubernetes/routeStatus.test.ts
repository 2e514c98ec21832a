// The route status writer (discover/source/kubernetes/routeStatus.ts) without an API server: what it merges
// (other controllers' entries kept, shoal's replaced or removed, lastTransitionTime kept while a condition's
// status holds, parentRefs compared with the CRD's defaults), and how it writes through a fake API: only a
// difference, at the resourceVersion read; a 409 reads the route again and writes nothing when another
// replica already wrote the same; a 404 ends it; a 5xx is retried; nothing while the status is unchanged.
import t from 'tap';
import { createLogger } from '../../../shared/log.ts';
import type { RouteParentStatus, RouteStatusWrite } from '../../../discover/gateway/status.ts';
import { mergeParents, RouteStatusWriter } from '../../../discover/source/kubernetes/routeStatus.ts';
import { routeKey, type GatewayRoute, type Topology } from '../../../discover/topology/model.ts';

const NOW = new Date('2026-12-07T10:00:00.123Z');
const LATER = new Date('2026-12-07T11:00:00Z');

function route(status?: Record<string, unknown>, resourceVersion = '10'): GatewayRoute {
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: 'r', namespace: 'shop', generation: 2, resourceVersion },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'api', port: 8080 }] },
    ...(status ? { status } : {}),
  };
}

function shoal(
  name: string,
  accepted: 'True' | 'False',
  generation = 2,
  reason = accepted === 'True' ? 'Accepted' : 'UnsupportedValue',
): RouteParentStatus {
  return {
    parentRef: { group: '', kind: 'Service', name, port: 8080 },
    controllerName: 'shoal.dev/mesh',
    conditions: [
      { type: 'Accepted', status: accepted, reason, message: `m ${accepted}`, observedGeneration: generation },
      { type: 'ResolvedRefs', status: 'True', reason: 'ResolvedRefs', message: 'ok', observedGeneration: generation },
    ],
  };
}

const theirs = {
  parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge' },
  controllerName: 'example.com/gateway',
  conditions: [
    {
      type: 'Accepted',
      status: 'True',
      reason: 'Accepted',
      message: 'theirs',
      observedGeneration: 1,
      lastTransitionTime: '2026-01-01T00:00:00Z',
    },
  ],
};

t.test('mergeParents', async (t) => {
  const first = mergeParents(route({ parents: [theirs] }), [shoal('api', 'True')], NOW)!;
  t.same(first[0], theirs, "the other controller's entry first, as it was");
  t.equal(first.length, 2);
  t.same(
    first[1].conditions.map((c: any) => c.lastTransitionTime),
    ['2026-12-07T10:00:00Z', '2026-12-07T10:00:00Z'],
    'lastTransitionTime now, in seconds (metav1.Time)',
  );
  t.equal(mergeParents(route({ parents: first }), [shoal('api', 'True')], LATER), null, 'the same again: nothing to write (null)');

  // The API server hands the object back with its keys sorted and the defaults of the parentRef written out.
  const echoed = JSON.parse(
    JSON.stringify(first, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort()) : v)),
  );
  t.equal(mergeParents(route({ parents: echoed }), [shoal('api', 'True')], LATER), null, 'key order does not count');
  t.equal(
    mergeParents(
      route({ parents: [{ ...first[1], parentRef: { ...first[1].parentRef, namespace: 'shop' } }] }),
      [shoal('api', 'True')],
      LATER,
    ),
    null,
    "a parentRef namespace equal to the route's is the same parent",
  );

  const newGen = mergeParents(route({ parents: first }), [shoal('api', 'True', 3)], LATER)!;
  t.same(
    newGen[1].conditions.map((c: any) => [c.observedGeneration, c.lastTransitionTime]),
    [
      [3, '2026-12-07T10:00:00Z'],
      [3, '2026-12-07T10:00:00Z'],
    ],
    'a new generation with the same statuses: observedGeneration moves, lastTransitionTime stays',
  );
  const flipped = mergeParents(route({ parents: newGen }), [shoal('api', 'False', 3)], LATER)!;
  t.same(
    flipped[1].conditions.map((c: any) => [c.type, c.status, c.lastTransitionTime]),
    [
      ['Accepted', 'False', '2026-12-07T11:00:00Z'],
      ['ResolvedRefs', 'True', '2026-12-07T10:00:00Z'],
    ],
    'Accepted turned False: only its lastTransitionTime moves',
  );

  const moved = mergeParents(route({ parents: newGen }), [shoal('other', 'True', 3)], LATER)!;
  t.same(
    moved.map((p: any) => p.parentRef.name),
    ['edge', 'other'],
    "a parent no longer served loses shoal's entry; the new one gets one",
  );
  t.same(
    moved[1].conditions.map((c: any) => c.lastTransitionTime),
    ['2026-12-07T11:00:00Z', '2026-12-07T11:00:00Z'],
    "a new parent's conditions start now",
  );
  t.same(mergeParents(route({ parents: newGen }), [], LATER), [theirs], "no parent served: only the other controller's entry is left");
  t.equal(mergeParents(route({ parents: [theirs] }), [], LATER), null, 'and nothing to write when shoal had none');
  t.equal(mergeParents(route(), [], LATER), null, 'nor for a route without status');
});

interface Call {
  method: string;
  path: string;
  body?: any;
}

/** A writer over a fake API: `answers` are consumed in order; the calls are recorded. */
function writer(current: GatewayRoute | undefined, answers: Array<{ status: number; json?: any }>) {
  const calls: Call[] = [];
  const written: Array<{ obj: any; sent: string | undefined }> = [];
  const logs: Array<Record<string, any>> = [];
  const log = createLogger('discover', 'debug', {
    write: (l: string) => {
      for (const x of l.split('\n')) if (x) logs.push(JSON.parse(x));
    },
  });
  let want: RouteParentStatus[] = [shoal('api', 'True')];
  const w = new RouteStatusWriter({
    log,
    routeStatuses: (topo: Topology) =>
      new Map<string, RouteStatusWrite>([...(topo.routes?.keys() ?? [])].map((k) => [k, { generation: 2, parents: want }])),
    send: async (method, path, body) => {
      calls.push({ method, path, body });
      const a = answers.shift();
      if (!a) throw new Error(`unexpected ${method} ${path}`);
      return { status: a.status, json: a.json ?? {} };
    },
    current: () => current,
    onWritten: (_key, obj, sent) => written.push({ obj, sent }),
    now: () => NOW,
  });
  const topo = (r: GatewayRoute | undefined): Topology => ({
    clusterDomain: 'cluster.local',
    services: new Map(),
    apps: new Map(),
    routes: new Map(r ? [[routeKey('HTTPRoute', 'shop', 'r'), r]] : []),
  });
  return {
    w,
    calls,
    written,
    logs,
    topo,
    setWant: (p: RouteParentStatus[]) => {
      want = p;
    },
  };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

t.test('writes a difference once, at the resourceVersion read', async (t) => {
  const r = route({ parents: [theirs] });
  const f = writer(r, [{ status: 200, json: { metadata: { resourceVersion: '11' }, status: { parents: [] } } }]);
  f.w.reconcile(f.topo(r));
  await settle();
  t.equal(f.calls.length, 1, 'one request');
  t.equal(f.calls[0].method, 'PUT');
  t.equal(f.calls[0].path, '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r/status', 'the status subresource');
  t.equal(f.calls[0].body.metadata.resourceVersion, '10', 'at the resourceVersion read');
  t.same(
    f.calls[0].body.status.parents.map((p: any) => p.controllerName),
    ['example.com/gateway', 'shoal.dev/mesh'],
    "theirs kept, shoal's added",
  );
  t.same(
    f.written.map((x) => x.sent),
    ['10'],
    'the answer handed back with the version written on',
  );
  await f.w.close();
});

t.test('nothing to write: no request', async (t) => {
  const merged = mergeParents(route({ parents: [theirs] }), [shoal('api', 'True')], NOW)!;
  const r = route({ parents: merged });
  const f = writer(r, []);
  f.w.reconcile(f.topo(r));
  f.w.reconcile(f.topo(r));
  await settle();
  t.same(f.calls, [], 'no request while the route holds what shoal would write');
  await f.w.close();
});

t.test('409: reads again; another replica wrote the same: no second PUT', async (t) => {
  const r = route({ parents: [theirs] });
  const sameByOther = mergeParents(route({ parents: [theirs] }), [shoal('api', 'True')], new Date('2026-12-07T09:59:00Z'))!;
  const f = writer(r, [
    { status: 409, json: { message: 'the object has been modified' } },
    { status: 200, json: { metadata: { resourceVersion: '12' }, status: { parents: sameByOther } } },
  ]);
  f.w.reconcile(f.topo(r));
  await settle();
  t.same(
    f.calls.map((c) => c.method),
    ['PUT', 'GET'],
    "PUT refused, GET, and no PUT after it: the other replica's entry, its earlier lastTransitionTime included, is what shoal would write",
  );
  t.same(
    f.logs.filter((l) => l.level >= 40),
    [],
    'nothing logged as a problem',
  );
  await f.w.close();
});

t.test('409 then a different status: written at the fresh resourceVersion', async (t) => {
  const r = route({ parents: [theirs] });
  const f = writer(r, [
    { status: 409 },
    {
      status: 200,
      json: { metadata: { resourceVersion: '12' }, status: { parents: [theirs, { ...theirs, controllerName: 'example.com/other' }] } },
    },
    { status: 200, json: { metadata: { resourceVersion: '13' }, status: {} } },
  ]);
  f.w.reconcile(f.topo(r));
  await settle();
  t.same(
    f.calls.map((c) => c.method),
    ['PUT', 'GET', 'PUT'],
  );
  t.equal(f.calls[2].body.metadata.resourceVersion, '12', 'at the version read again');
  t.same(
    f.calls[2].body.status.parents.map((p: any) => p.controllerName),
    ['example.com/gateway', 'example.com/other', 'shoal.dev/mesh'],
    'both others kept',
  );
  await f.w.close();
});

t.test('404: the route is gone, nothing more; 5xx: retried later, logged', async (t) => {
  const r = route();
  const gone = writer(r, [{ status: 404 }]);
  gone.w.reconcile(gone.topo(r));
  await settle();
  t.same(
    gone.calls.map((c) => c.method),
    ['PUT'],
    '404: one PUT, no retry',
  );
  await gone.w.close();

  const failing = writer(r, [{ status: 503, json: { message: 'unavailable' } }]);
  failing.w.reconcile(failing.topo(r));
  await settle();
  t.match(
    failing.logs.find((l) => l.level === 40),
    { route: 'HTTPRoute/shop/r', msg: 'route status not written; trying again' },
    '5xx: a warning, and a retry scheduled',
  );
  await failing.w.close();
});

t.test("a route shoal no longer serves loses only shoal's entry", async (t) => {
  const merged = mergeParents(route({ parents: [theirs] }), [shoal('api', 'True')], NOW)!;
  const r = route({ parents: merged });
  const f = writer(r, [{ status: 200, json: { metadata: { resourceVersion: '11' }, status: { parents: [theirs] } } }]);
  f.setWant([]);
  f.w.reconcile(f.topo(r));
  await settle();
  t.same(
    f.calls.map((c) => c.body.status.parents),
    [[theirs]],
    "one PUT with the other controller's entry alone",
  );
  await f.w.close();
});
