// Topology-aware selection over a cluster's balancer: the hint rules (KEP-3015), the failover option,
// and the fall back to the wider set while the local one is ejected or below the panic threshold.
import t from 'tap';
import { localityTiers, type SidecarLocality } from '../../../proxy/balance/locality.ts';
import { Cluster } from '../../../proxy/cluster/cluster.ts';
import type { Endpoint } from '../../../proxy/cluster/endpoint.ts';
import type { Cluster as ClusterSpec, Endpoint as EndpointSpec, LbPolicy } from '../../../shared/snapshot.ts';

const policy = {
  connectTimeoutMs: 250, requestTimeoutMs: 15000, retryAttempts: 2, maxActiveRetries: 3, maxConnections: 100, maxRequests: 100,
  maxPendingRequests: 100, maxRequestsPerConnection: 0, consecutiveErrors: 5, baseEjectionTimeMs: 30000, maxEjectionPercent: 100,
  intervalMs: 10000, healthyPanicThreshold: 50, tcpIdleTimeoutS: 7200,
};

function ep(i: number, zone: string, extra: Partial<EndpointSpec> = {}): EndpointSpec {
  return { address: `10.0.0.${i}`, port: 80, weight: 1, zone, ready: true, serving: true, terminating: false, ...extra };
}

function spec(endpoints: EndpointSpec[], lbPolicy: LbPolicy = 'least_request', localityFailover = false): ClusterSpec {
  return {
    name: 'api.default:80', service: 'api', namespace: 'default', port: 80, protocol: 'http', lbPolicy, hashHeader: '',
    policy, endpoints, ...(localityFailover ? { localityFailover: true } : {}),
  };
}

/** Three endpoints in zone a (10.0.0.1-3), three in zone b (10.0.0.4-6), each hinted for its own zone. */
const hinted = () => [1, 2, 3].map((i) => ep(i, 'a', { forZones: ['a'], node: `n${i}` })).concat([4, 5, 6].map((i) => ep(i, 'b', { forZones: ['b'], node: `n${i}` })));

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
  return localityTiers(c.endpoints as Endpoint[], here, failover).map((x) => `${x.kind}:${x.endpoints.map((e) => e.address.split('.')[3]).join(',')}`);
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
  t.same(tierKinds(nodeHinted, { node: 'n2', zone: 'a' }), ['node:2', 'zone:1,2,3', 'all:1,2,3,4,5,6'], 'node hints for this node first, then the zone, then all');
  t.same(tierKinds(nodeHinted, { node: 'n9', zone: 'a' }), ['zone:1,2,3', 'all:1,2,3,4,5,6'], 'no endpoint hinted for this node: zone hints');
  const someNodeHints = hinted().map((e, i) => (i === 0 ? { ...e, forNodes: ['n1'] } : e));
  t.same(tierKinds(someNodeHints, { node: 'n1', zone: 'a' }), ['zone:1,2,3', 'all:1,2,3,4,5,6'], 'not every endpoint has node hints: they are not used');
  const bare = [1, 2, 3].map((i) => ep(i, 'a')).concat([4, 5, 6].map((i) => ep(i, 'b')));
  t.same(tierKinds(bare, a), ['all:1,2,3,4,5,6'], 'no hints and no failover: all');
  t.same(tierKinds(bare, a, true), ['same-zone:1,2,3', 'all:1,2,3,4,5,6'], 'no hints with LOCALITY_FAILOVER: this zone, then any');
  t.same(tierKinds(hinted().map((e) => ({ ...e, forZones: ['a'] })), a), ['all:1,2,3,4,5,6'], 'every endpoint hinted for this zone: one tier, all');
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
  t.ok(spreadAgain.a > 1000 && spreadAgain.b > 1000, `every endpoint hinted for zone a: zone b's sidecar uses all (${JSON.stringify(spreadAgain)})`);
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
