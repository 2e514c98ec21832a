// Topology-aware selection over a cluster's balancer: the hint rules (KEP-3015), the failover option,
// and the fall back to the wider set while the local one is ejected or below the panic threshold.
import t from 'tap';
import { localityTiers, type SidecarLocality } from '../../../proxy/balance/locality.ts';
import { Cluster } from '../../../proxy/cluster/cluster.ts';
import type { Endpoint } from '../../../proxy/cluster/endpoint.ts';
import type { Cluster as ClusterSpec, Endpoint as EndpointSpec, LbPolicy } from '../../../shared/snapshot.ts';

const policy = {
  connectTimeoutMs: 250,
  requestTimeoutMs: 15000,
  retryAttempts: 2,
  maxActiveRetries: 3,
  maxConnections: 100,
  maxRequests: 100,
  maxPendingRequests: 100,
  maxRequestsPerConnection: 0,
  consecutiveErrors: 5,
  baseEjectionTimeMs: 30000,
  maxEjectionPercent: 100,
  intervalMs: 10000,
  healthyPanicThreshold: 50,
  tcpIdleTimeoutS: 7200,
};

function ep(i: number, zone: string, extra: Partial<EndpointSpec> = {}): EndpointSpec {
  return { address: `10.0.0.${i}`, port: 80, weight: 1, zone, ready: true, serving: true, terminating: false, ...extra };
}

function spec(endpoints: EndpointSpec[], lbPolicy: LbPolicy = 'least_request', localityFailover = false): ClusterSpec {
  return {
    name: 'api.default:80',
    service: 'api',
    namespace: 'default',
    port: 80,
    protocol: 'http',
    lbPolicy,
    hashHeader: '',
    policy,
    endpoints,
    ...(localityFailover ? { localityFailover: true } : {}),
  };
}

/** Three endpoints in zone a (10.0.0.1-3), three in zone b (10.0.0.4-6), each hinted for its own zone. */
const hinted = () =>
  [1, 2, 3]
    .map((i) => ep(i, 'a', { forZones: ['a'], node: `n${i}` }))
    .concat([4, 5, 6].map((i) => ep(i, 'b', { forZones: ['b'], node: `n${i}` })));

function zonesPicked(c: Cluster, n: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const e = c.pick(undefined)!;
    out[e.zone] = (out[e.zone] ?? 0) + 1;
  }
  return out;
}

function tierKinds(endpoints: EndpointSpec[], here: SidecarLocality, failover = false): string[] {
  const c = new Cluster(spec(endpoints, 'least_request', failover), undefined, here);
  return localityTiers(c.endpoints as Endpoint[], here, failover).map(
    (x) => `${x.kind}:${x.endpoints.map((e) => e.address.split('.')[3]).join(',')}`,
  );
}

t.test('the hint rules, as KEP-3015 states them', async (t) => {
  const a = { node: 'n9', zone: 'a' };
  t.same(tierKinds(hinted(), a), ['zone:1,2,3', 'all:1,2,3,4,5,6'], 'every endpoint has zone hints, some for this zone: those first');
  t.same(tierKinds(hinted(), { node: '', zone: 'c' }), ['all:1,2,3,4,5,6'], 'no endpoint hinted for this zone: all');
  t.same(tierKinds(hinted(), { node: 'n1', zone: '' }), ['all:1,2,3,4,5,6'], 'zone unknown and no node hints: all');
  const oneBare = hinted();
  delete oneBare[5].forZones;
  t.same(tierKinds(oneBare, a), ['all:1,2,3,4,5,6'], 'one endpoint without zone hints: the hints are not used');
  const nodeHinted = hinted().map((e) => ({ ...e, forNodes: [e.node!] }));
  t.same(
    tierKinds(nodeHinted, { node: 'n2', zone: 'a' }),
    ['node:2', 'zone:1,2,3', 'all:1,2,3,4,5,6'],
    'node hints for this node first, then the zone, then all',
  );
  t.same(
    tierKinds(nodeHinted, { node: 'n9', zone: 'a' }),
    ['zone:1,2,3', 'all:1,2,3,4,5,6'],
    'no endpoint hinted for this node: zone hints',
  );
  const someNodeHints = hinted().map((e, i) => (i === 0 ? { ...e, forNodes: ['n1'] } : e));
  t.same(
    tierKinds(someNodeHints, { node: 'n1', zone: 'a' }),
    ['zone:1,2,3', 'all:1,2,3,4,5,6'],
    'not every endpoint has node hints: they are not used',
  );
  const bare = [1, 2, 3].map((i) => ep(i, 'a')).concat([4, 5, 6].map((i) => ep(i, 'b')));
  t.same(tierKinds(bare, a), ['all:1,2,3,4,5,6'], 'no hints and no failover: all');
  t.same(tierKinds(bare, a, true), ['same-zone:1,2,3', 'all:1,2,3,4,5,6'], 'no hints with LOCALITY_FAILOVER: this zone, then any');
  t.same(
    tierKinds(
      hinted().map((e) => ({ ...e, forZones: ['a'] })),
      a,
    ),
    ['all:1,2,3,4,5,6'],
    'every endpoint hinted for this zone: one tier, all',
  );
});

t.test('PreferSameZone: every pick lands in the zone; all ejected there, the other zone; back when they return', async (t) => {
  for (const lb of ['least_request', 'round_robin', 'random', 'hash'] as const) {
    const c = new Cluster(spec(hinted(), lb), undefined, { node: 'n9', zone: 'a' });
    t.same(zonesPicked(c, 1000), { a: 1000 }, `${lb}: 1,000 picks all in zone a`);
    t.equal(c.tier, 'zone');
    for (const e of c.endpoints.slice(0, 3)) e.ejectedUntil = performance.now() + 60_000;
    c.rebalance();
    t.same(zonesPicked(c, 300), { b: 300 }, `${lb}: zone a ejected: all in zone b`);
    t.equal(c.tier, 'all');
    t.equal(c.stats.panic, 0, 'half the cluster is healthy: no panic');
    for (const e of c.endpoints.slice(0, 3)) e.ejectedUntil = 0;
    c.rebalance();
    t.same(zonesPicked(c, 300), { a: 300 }, `${lb}: zone a back: all in zone a again`);
  }
});

t.test('below the panic threshold the local set gives way to the wider one; at it, it stays', async (t) => {
  const c = new Cluster(spec(hinted()), undefined, { node: 'n9', zone: 'a' });
  c.endpoints[0].ejectedUntil = performance.now() + 60_000;
  c.rebalance();
  const one = zonesPicked(c, 300);
  t.same(one, { a: 300 }, '2 of 3 healthy (67% >= 50%): still zone a');
  t.notOk(c.pick(undefined) === c.endpoints[0], 'the ejected one is not picked');
  c.endpoints[1].ejectedUntil = performance.now() + 60_000;
  c.rebalance();
  const two = zonesPicked(c, 3000);
  t.equal(c.tier, 'all', '1 of 3 healthy (33% < 50%): the wider set');
  t.ok(two.a > 0 && two.b > 0, `the healthy zone-a endpoint and zone b share the load (${JSON.stringify(two)})`);
  c.policy = { ...c.policy, healthyPanicThreshold: 0 };
  c.rebalance();
  t.equal(c.tier, 'zone', 'threshold 0: one healthy endpoint is enough');
});

t.test('the choice is per cluster and follows endpoint and locality changes', async (t) => {
  const c = new Cluster(spec(hinted()), undefined, { node: '', zone: '' });
  const spread = zonesPicked(c, 3000);
  t.ok(spread.a > 1000 && spread.b > 1000, `zone unknown: spread over all six (${JSON.stringify(spread)})`);
  c.setLocality({ node: '', zone: 'b' });
  t.same(zonesPicked(c, 500), { b: 500 }, 'zone b learned: zone b only');
  t.equal(c.stats.byLocality[1], 500, 'counted as same zone');
  c.update(spec(hinted().slice(0, 3)));
  t.same(zonesPicked(c, 200), { a: 200 }, 'zone b gone from the snapshot: the rest');
  t.equal(c.stats.byLocality[2], 200, 'counted as other zone');
  c.update(spec(hinted()));
  t.same(zonesPicked(c, 200), { b: 200 }, 'zone b back');
  const kept = c.endpoints[3];
  c.update(spec(hinted().map((e) => ({ ...e, forZones: ['a'] as string[] }))));
  t.equal(c.endpoints[3], kept, 'a hint change keeps the endpoint (and its pool)');
  t.same(kept.forZones, ['a'], 'with its new hints');
  const spreadAgain = zonesPicked(c, 3000);
  t.ok(
    spreadAgain.a > 1000 && spreadAgain.b > 1000,
    `every endpoint hinted for zone a: zone b's sidecar uses all (${JSON.stringify(spreadAgain)})`,
  );
});

t.test('without hints, picks spread over all six; with LOCALITY_FAILOVER they stay in the zone', async (t) => {
  const bare = [1, 2, 3].map((i) => ep(i, 'a')).concat([4, 5, 6].map((i) => ep(i, 'b')));
  const c = new Cluster(spec(bare), undefined, { node: '', zone: 'a' });
  const byEndpoint = new Map<string, number>();
  for (let i = 0; i < 6000; i++) {
    const e = c.pick(undefined)!;
    byEndpoint.set(e.key, (byEndpoint.get(e.key) ?? 0) + 1);
  }
  t.equal(byEndpoint.size, 6, 'all six used');
  for (const [k, n] of byEndpoint) t.ok(n > 600, `${k}: ${n} of 6000`);
  const f = new Cluster(spec(bare, 'least_request', true), undefined, { node: '', zone: 'a' });
  t.same(zonesPicked(f, 1000), { a: 1000 }, 'failover on: zone a');
  for (const e of f.endpoints.slice(0, 3)) e.ejectedUntil = performance.now() + 60_000;
  f.rebalance();
  t.same(zonesPicked(f, 300), { b: 300 }, 'zone a ejected: then any');
});

/** The shipped outlier defaults: ConsecutiveErrors 5, BaseEjectionTimeMS 30 s, MaxEjectionPercent 10%. */
const defaults = { ...policy, maxEjectionPercent: 10 };
const failTimes = (c: Cluster, e: Endpoint, n: number) => {
  for (let i = 0; i < n; i++) c.outlier.failure(e);
};

t.test('default MaxEjectionPercent: a dead zone gives way although only one of its endpoints may be ejected', async (t) => {
  const c = new Cluster({ ...spec(hinted()), policy: defaults }, undefined, { node: 'n9', zone: 'a' });
  const [a1, a2, a3] = c.endpoints;
  failTimes(c, a1, 5);
  t.ok(a1.ejectedUntil > 0, 'the first to cross ConsecutiveErrors is ejected (10% of six, at least one)');
  t.equal(c.tier, 'zone', '2 of 3 left: still zone a');
  failTimes(c, a2, 4);
  t.equal(c.outlier.failing.size, 0, 'below ConsecutiveErrors: not failing');
  c.outlier.failure(a2);
  t.equal(a2.ejectedUntil, 0, 'the second is not ejected: the cap');
  t.ok(c.outlier.failing.has(a2), 'but failing');
  t.equal(c.stats.ejectionsSkipped, 1);
  t.equal(c.tier, 'all', '1 of 3 healthy in zone a (33% < 50%): the wider set at once');
  const mid = new Map<Endpoint, number>();
  for (let i = 0; i < 3000; i++) {
    const e = c.pick(undefined)!;
    mid.set(e, (mid.get(e) ?? 0) + 1);
  }
  t.notOk(mid.has(a1) || mid.has(a2), 'neither the ejected nor the failing zone-a endpoint is picked');
  t.ok(
    (mid.get(a3) ?? 0) > 0 && c.endpoints.slice(3).every((e) => (mid.get(e) ?? 0) > 0),
    'the healthy zone-a endpoint and zone b share the load',
  );
  failTimes(c, a3, 5);
  const start = performance.now();
  t.same(zonesPicked(c, 300), { b: 300 }, 'the whole zone failing: all in zone b');
  t.equal(c.stats.panic, 0, 'zone b is half the cluster: no panic');
  t.equal(
    c.applied().outlierDetection &&
      (c.applied().outlierDetection as { endpoints: Array<{ failing: boolean }> }).endpoints.filter((e) => e.failing).length,
    2,
    '/config_dump shows the two failing ones',
  );

  c.outlier.sweep(start + 10_000);
  t.equal(c.tier, 'all', 'a sweep before the would-be ejection time changes nothing');
  t.equal(c.outlier.failing.size, 2);
  c.outlier.sweep(start + 30_000);
  t.equal(c.outlier.failing.size, 0, 'past BaseEjectionTimeMS x (times ejected + 1): failing ends');
  t.equal(a1.ejectedUntil, 0, 'and the ejection too');
  t.equal(a2.consecutiveErrors, 0, 'counting starts again, as after an ejection');
  t.equal(c.tier, 'zone', 'zone a again');
  t.same(zonesPicked(c, 300), { a: 300 });
});

t.test('a success ends failing at the next sweep; failing needs ConsecutiveErrors again', async (t) => {
  const c = new Cluster({ ...spec(hinted()), policy: { ...defaults, healthyPanicThreshold: 30 } }, undefined, { node: 'n9', zone: 'a' });
  const [a1, a2] = c.endpoints;
  failTimes(c, a1, 5);
  failTimes(c, a2, 5);
  t.ok(c.outlier.failing.has(a2));
  t.equal(c.tier, 'zone', '1 of 3 at threshold 30%: zone a kept');
  const picked = new Set<Endpoint>();
  for (let i = 0; i < 300; i++) picked.add(c.pick(undefined)!);
  t.ok(picked.has(a2), 'the set kept, the cap keeps the failing endpoint in it (its capacity)');
  failTimes(c, c.endpoints[2], 5);
  t.equal(c.tier, 'all', 'no healthy endpoint left in zone a: the wider set');
  a2.consecutiveErrors = 0; // what an exchange does on a response below 500
  c.outlier.failure(a2);
  t.ok(c.outlier.failing.has(a2), 'still failing until the sweep sees it');
  c.outlier.sweep(performance.now());
  t.notOk(c.outlier.failing.has(a2), 'a success since it crossed: failing ends at the sweep');
  t.equal(c.tier, 'zone', 'a2 healthy (1 of 3 at 30%): zone a again');
  failTimes(c, a2, 3);
  t.notOk(c.outlier.failing.has(a2), 'four failures in a row since: not yet');
  c.outlier.failure(a2);
  t.ok(c.outlier.failing.has(a2), 'the fifth: failing again');
  t.equal(c.tier, 'all');
});

t.test('without locality the cap stands: a failing endpoint stays in the balancer', async (t) => {
  const bare = [1, 2, 3].map((i) => ep(i, 'a')).concat([4, 5, 6].map((i) => ep(i, 'b')));
  const c = new Cluster({ ...spec(bare), policy: defaults }, undefined, { node: '', zone: 'a' });
  failTimes(c, c.endpoints[0], 5);
  failTimes(c, c.endpoints[1], 5);
  t.ok(c.endpoints[0].ejectedUntil > 0 && c.outlier.failing.has(c.endpoints[1]), 'one ejected, one failing');
  const picked = new Set<Endpoint>();
  for (let i = 0; i < 3000; i++) picked.add(c.pick(undefined)!);
  t.equal(picked.size, 5, 'every endpoint but the ejected one, the failing one included');
  t.ok(picked.has(c.endpoints[1]));
});

t.test('retries go one set wider while a local set is chosen', async (t) => {
  const c = new Cluster({ ...spec(hinted()), policy: defaults }, undefined, { node: 'n9', zone: 'a' });
  const [a1, , , b1, b2, b3] = c.endpoints;
  t.same(c.spill, [b1, b2, b3], 'zone a chosen: retries to zone b');
  const seen = new Map<Endpoint, number>();
  for (let i = 0; i < 300; i++) {
    const e = c.pickOther(a1)!;
    seen.set(e, (seen.get(e) ?? 0) + 1);
  }
  t.same(
    [...seen.keys()].map((e) => e.zone),
    ['b', 'b', 'b'],
    'a retry after a zone-a attempt: zone b, each of its endpoints',
  );
  for (const n of seen.values()) t.equal(n, 100, 'in turn');
  for (let i = 0; i < 30; i++) t.not(c.pickOther(b2), b2, 'a second retry after a zone-b attempt: another zone-b endpoint');
  failTimes(c, b1, 5);
  t.same(c.spill, [b2, b3], 'an ejected endpoint is not retried to');
  for (const e of c.endpoints.slice(0, 3)) failTimes(c, e, 5);
  t.equal(c.tier, 'all');
  t.equal(c.stats.panic, 1, 'b2 and b3 alone are 33% of six: panic, all six');
  c.policy = { ...c.policy, healthyPanicThreshold: 30 };
  c.rebalance();
  t.equal(c.stats.panic, 0, 'at threshold 30%: b2 and b3');
  t.same(c.spill, [], 'on the widest set: no wider one');
  for (let i = 0; i < 30; i++) {
    const e = c.pickOther(b2)!;
    t.ok(e === b3 || e === b2, `a retry within the balancer's set (${e.key})`);
  }
  const before = c.stats.byLocality[2];
  const c2 = new Cluster({ ...spec(hinted()), policy: defaults }, c.stats, { node: 'n9', zone: 'a' });
  c2.pickOther(c2.endpoints[0]);
  t.equal(c.stats.byLocality[2], before + 1, 'a retry counts its locality once');
});

t.test('with locality sets the retry budget bounds retries, not MaxActiveRetries', async (t) => {
  const zoned = new Cluster({ ...spec(hinted()), policy: defaults }, undefined, { node: 'n9', zone: 'a' });
  const flat = new Cluster({ ...spec(hinted()), policy: defaults }, undefined, { node: '', zone: '' });
  const now = performance.now();
  for (const c of [zoned, flat]) for (let i = 0; i < 1000; i++) c.budget.request(now);
  for (const c of [zoned, flat]) {
    c.activeRetries = defaults.maxActiveRetries;
  }
  t.notOk(flat.admitRetry(now), 'one set: MaxActiveRetries (3) retries in flight refuse a fourth');
  t.equal(flat.stats.retriesMaxActive, 1);
  let admitted = 0;
  while (zoned.admitRetry(now)) admitted++;
  t.equal(admitted, 210, 'zone a preferred: retries go on until the budget (20% of 1,000 + 10) is spent');
  t.equal(zoned.stats.retriesBudgetExhausted, 1);
  t.equal(zoned.stats.retriesMaxActive, 0);
});
