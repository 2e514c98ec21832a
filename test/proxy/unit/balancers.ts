// The balancers on their own: order and shares over many picks (Math.random seeded, so every run
// draws the same), weights, least request's preference, ring-hash stickiness and how few keys move
// when the endpoint set changes, and the locality tiers. Tolerances are stated in each message.
import t from 'tap';
import { P2cBalancer } from '../../../proxy/balance/p2c.ts';
import { RandomBalancer } from '../../../proxy/balance/random.ts';
import { RingHashBalancer } from '../../../proxy/balance/ringHash.ts';
import { RoundRobinBalancer } from '../../../proxy/balance/roundRobin.ts';
import { localityOf, localityTiers, OTHER_ZONE, SAME_NODE, SAME_ZONE, UNKNOWN_LOCALITY } from '../../../proxy/balance/locality.ts';
import { createBalancer } from '../../../proxy/balance/createBalancer.ts';
import type { Endpoint } from '../../../proxy/cluster/endpoint.ts';
import type { Pickable } from '../../../proxy/balance/balancer.ts';
import { countPicks, endpoint, endpoints } from './fakes.ts';
import { withSeed } from './manualClock.ts';

const share = (counts: Map<string, number>, key: string, n: number): number => (counts.get(key) ?? 0) / n;

t.test('every balancer picks nothing from an empty set and the one endpoint of a set of one', async (t) => {
  for (const policy of ['round_robin', 'random', 'least_request', 'hash'] as const) {
    const b = createBalancer(policy);
    t.equal(b.pick(undefined), null, `${policy}: empty set before any update`);
    b.update([]);
    t.equal(b.pick('k'), null, `${policy}: empty set`);
    const only = endpoint('only', { weight: 3, active: 7 });
    b.update([only]);
    for (let i = 0; i < 5; i++) t.equal(b.pick(i % 2 === 0 ? `k${i}` : undefined), only, `${policy}: the one endpoint`);
  }
  t.type(createBalancer('least_request'), P2cBalancer, 'least_request is power of two choices');
  t.type(createBalancer('hash'), RingHashBalancer);
});

t.test('round robin: equal weights rotate in order, and the rotation survives an update', async (t) => {
  const eps = endpoints(3);
  const b = new RoundRobinBalancer();
  b.update(eps);
  const seq = Array.from({ length: 9 }, () => b.pick()!.key);
  t.same(seq, ['e0', 'e1', 'e2', 'e0', 'e1', 'e2', 'e0', 'e1', 'e2'], 'strict rotation');
  b.pick(); // e0
  b.update(eps);
  t.equal(b.pick()!.key, 'e1', 'an update does not restart the rotation at the first endpoint');
  b.pick(); // e2 -> next is 0
  b.pick(); // e0 -> next is 1
  b.pick(); // e1 -> next is 2
  b.update(eps.slice(0, 2));
  t.equal(b.pick()!.key, 'e0', 'the set shrank below the rotation: it wraps to the first');
});

t.test('round robin: unequal weights interleave (smooth weighted) with exact shares', async (t) => {
  const b = new RoundRobinBalancer();
  b.update([endpoint('a', { weight: 5 }), endpoint('b', { weight: 1 }), endpoint('c', { weight: 1 })]);
  const period = Array.from({ length: 7 }, () => b.pick()!.key).join('');
  t.equal(period, 'aabacaa', 'the nginx sequence for 5:1:1, not aaaaabc');
  const counts = countPicks(() => b.pick(), 7 * 1000);
  t.same([counts.get('a'), counts.get('b'), counts.get('c')], [5000, 1000, 1000], 'exactly 5:1:1 over whole periods');
  const w = new RoundRobinBalancer();
  w.update([endpoint('x', { weight: 2 }), endpoint('y', { weight: 3 })]);
  const c2 = countPicks(() => w.pick(), 5 * 200);
  t.same([c2.get('x'), c2.get('y')], [400, 600], '2:3 exactly');
});

t.test('random: uniform and weighted shares within 1.5 percentage points over 20,000 picks', async (t) => {
  withSeed(1, () => {
    const b = new RandomBalancer();
    b.update(endpoints(4));
    const n = 20_000;
    const counts = countPicks(() => b.pick(), n);
    for (let i = 0; i < 4; i++) {
      const s = share(counts, `e${i}`, n);
      t.ok(Math.abs(s - 0.25) < 0.015, `e${i}: ${(s * 100).toFixed(2)}% (25% ± 1.5)`);
    }
    b.update([endpoint('a', { weight: 1 }), endpoint('b', { weight: 2 }), endpoint('c', { weight: 7 }), endpoint('d', { weight: 0 })]);
    const w = countPicks(() => b.pick(), n);
    for (const [key, want] of [
      ['a', 0.1],
      ['b', 0.2],
      ['c', 0.7],
    ] as const) {
      const s = share(w, key, n);
      t.ok(Math.abs(s - want) < 0.015, `weight ${want * 10} of 10: ${(s * 100).toFixed(2)}% (${want * 100}% ± 1.5)`);
    }
    t.notOk(w.has('d'), 'a zero-weight endpoint is never picked');
  });
});

t.test('least request: the less loaded of the two choices wins, per unit of weight', async (t) => {
  withSeed(2, () => {
    const idle = endpoint('idle');
    const busy = endpoint('busy', { active: 10 });
    const b = new P2cBalancer();
    b.update([busy, idle]);
    t.same([...countPicks(() => b.pick(), 1000)], [['idle', 1000]], 'of two, the idle one every time');

    const [l0, l5, l10] = [endpoint('l0'), endpoint('l5', { active: 5 }), endpoint('l10', { active: 10 })];
    b.update([l0, l5, l10]);
    const n = 30_000;
    const c = countPicks(() => b.pick(), n);
    t.notOk(c.has('l10'), 'the most loaded of three is never picked (it loses every pair)');
    const s0 = share(c, 'l0', n);
    t.ok(Math.abs(s0 - 2 / 3) < 0.02, `the least loaded wins every pair it is in: ${(s0 * 100).toFixed(1)}% (66.7% ± 2)`);

    // 4 in flight on weight 4 is less loaded than 2 on weight 1.
    const heavy = endpoint('heavy', { weight: 4, active: 4 });
    const light = endpoint('light', { weight: 1, active: 2 });
    b.update([light, heavy]);
    t.same([...countPicks(() => b.pick(), 500)], [['heavy', 500]], 'active/weight compared, not active alone');
  });
});

t.test('least request at idle honours weights (no requests in flight: a tie on every pair)', async (t) => {
  withSeed(3, () => {
    const b = new P2cBalancer();
    b.update([endpoint('a', { weight: 3 }), endpoint('b', { weight: 1 })]);
    const n = 20_000;
    const c = countPicks(() => b.pick(), n);
    const s = share(c, 'a', n);
    t.ok(Math.abs(s - 0.75) < 0.015, `weight 3 of 4: ${(s * 100).toFixed(2)}% (75% ± 1.5)`);
    b.update([endpoint('x', { weight: 1 }), endpoint('y', { weight: 2 }), endpoint('z', { weight: 5 })]);
    const c3 = countPicks(() => b.pick(), n);
    for (const [key, want] of [
      ['x', 1 / 8],
      ['y', 2 / 8],
      ['z', 5 / 8],
    ] as const) {
      const got = share(c3, key, n);
      t.ok(Math.abs(got - want) < 0.015, `${key}: ${(got * 100).toFixed(2)}% (${(want * 100).toFixed(1)}% ± 1.5)`);
    }
    b.update(endpoints(4));
    const u = countPicks(() => b.pick(), n);
    for (let i = 0; i < 4; i++)
      t.ok(
        Math.abs(share(u, `e${i}`, n) - 0.25) < 0.015,
        `equal weights, idle: e${i} ${(share(u, `e${i}`, n) * 100).toFixed(2)}% (25% ± 1.5)`,
      );
  });
});

t.test('least request under load: requests in flight even out in proportion to weight', async (t) => {
  withSeed(4, () => {
    // Each pick adds a request in flight; the oldest completes once 40 are in flight (same latency everywhere).
    const eps = [endpoint('w1', { weight: 1 }), endpoint('w3', { weight: 3 })];
    const b = new P2cBalancer<Endpoint>();
    b.update(eps);
    const inFlight: Endpoint[] = [];
    const counts = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const e = b.pick()!;
      e.active++;
      counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
      inFlight.push(e);
      if (inFlight.length > 40) inFlight.shift()!.active--;
    }
    const s = (counts.get('w3') ?? 0) / 20_000;
    t.ok(Math.abs(s - 0.75) < 0.03, `weight 3 of 4 under load: ${(s * 100).toFixed(1)}% (75% ± 3)`);
    t.ok(Math.abs(eps[1].active - 3 * eps[0].active) <= 4, `in flight ${eps[0].active} vs ${eps[1].active}: about 1:3`);
  });
});

/** The endpoint each of n keys maps to. */
function mapKeys(b: RingHashBalancer<Pickable>, n: number): string[] {
  return Array.from({ length: n }, (_, i) => b.pick(`user-${i}`)!.key);
}

t.test('ring hash: a key sticks to one endpoint, on every sidecar whatever the endpoint order', async (t) => {
  const eps = endpoints(5);
  const a = new RingHashBalancer();
  a.update(eps);
  const first = mapKeys(a, 2000);
  t.same(mapKeys(a, 2000), first, 'the same key, the same endpoint, pick after pick');
  a.update([...eps]);
  t.same(mapKeys(a, 2000), first, 'and after a rebuild with the same endpoints');
  const other = new RingHashBalancer();
  other.update([...eps].reverse().map((e) => endpoint(e.key)));
  t.same(mapKeys(other, 2000), first, 'another sidecar, endpoints listed in another order: the same mapping');
  const n = 20_000;
  const counts = new Map<string, number>();
  for (const k of mapKeys(a, n)) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const e of eps) {
    const s = share(counts, e.key, n);
    t.ok(s > 0.14 && s < 0.26, `${e.key} holds ${(s * 100).toFixed(1)}% of the keys (20%, within 14..26 for 100 virtual nodes)`);
  }
});

t.test('ring hash: removing an endpoint moves only its own keys; adding one moves only the keys it takes', async (t) => {
  const eps = endpoints(5);
  const b = new RingHashBalancer();
  b.update(eps);
  const n = 20_000;
  const before = mapKeys(b, n);
  b.update(eps.filter((e) => e.key !== 'e2'));
  const after = mapKeys(b, n);
  let moved = 0;
  let movedOther = 0;
  for (let i = 0; i < n; i++) {
    if (before[i] === after[i]) continue;
    moved++;
    if (before[i] !== 'e2') movedOther++;
  }
  t.equal(movedOther, 0, 'no key of the four that stay moved');
  t.equal(moved, before.filter((k) => k === 'e2').length, 'every key of the removed endpoint moved');
  t.ok(moved / n > 0.14 && moved / n < 0.26, `${((moved / n) * 100).toFixed(1)}% of the keys moved (about 1/5)`);
  const spread = new Set(after.filter((_, i) => before[i] === 'e2'));
  t.ok(spread.size >= 3, `the removed endpoint's keys spread over ${spread.size} of the 4 others, not onto one`);

  b.update([...eps, endpoint('e5')]);
  const grown = mapKeys(b, n);
  let changed = 0;
  for (let i = 0; i < n; i++) {
    if (grown[i] === before[i]) continue;
    changed++;
    if (grown[i] !== 'e5') {
      t.fail(`key ${i} moved from ${before[i]} to ${grown[i]}, not to the new endpoint`);
      break;
    }
  }
  t.ok(
    changed / n > 0.11 && changed / n < 0.23,
    `${((changed / n) * 100).toFixed(1)}% of the keys moved to the sixth endpoint (about 1/6)`,
  );
});

t.test("ring hash: weights scale an endpoint's share of keys; no key falls back to weighted random", async (t) => {
  const b = new RingHashBalancer();
  b.update([endpoint('h', { weight: 3 }), endpoint('l1'), endpoint('l2')]);
  const n = 20_000;
  const counts = new Map<string, number>();
  for (const k of mapKeys(b, n)) counts.set(k, (counts.get(k) ?? 0) + 1);
  const s = share(counts, 'h', n);
  t.ok(Math.abs(s - 0.6) < 0.06, `weight 3 of 5 holds ${(s * 100).toFixed(1)}% of the keys (60% ± 6)`);
  withSeed(5, () => {
    const c = countPicks(() => b.pick(undefined), n);
    const sh = share(c, 'h', n);
    t.ok(Math.abs(sh - 0.6) < 0.015, `without the header: weighted random, ${(sh * 100).toFixed(1)}% (60% ± 1.5)`);
  });
  const big = new RingHashBalancer();
  const many = endpoints(1000, { weight: 1 });
  big.update(many);
  const hit = new Set(Array.from({ length: 20_000 }, (_, i) => big.pick(`k${i}`)!.key));
  t.ok(hit.size > 990, `1,000 endpoints (the ring capped at 65,536 virtual nodes): ${hit.size} of them hold keys`);
});

t.test('locality of an endpoint as seen from the sidecar', async (t) => {
  const here = { node: 'n1', zone: 'a' };
  t.equal(localityOf({ node: 'n1', zone: 'b' }, here), SAME_NODE, 'same node wins over a zone label');
  t.equal(localityOf({ node: 'n2', zone: 'a' }, here), SAME_ZONE);
  t.equal(localityOf({ node: 'n2', zone: 'b' }, here), OTHER_ZONE);
  t.equal(localityOf({ node: 'n2', zone: '' }, here), UNKNOWN_LOCALITY, "the endpoint's zone unknown");
  t.equal(localityOf({ node: 'n2', zone: 'a' }, { node: 'n1', zone: '' }), UNKNOWN_LOCALITY, "the sidecar's zone unknown");
  t.equal(localityOf({ node: '', zone: 'a' }, { node: '', zone: 'a' }), SAME_ZONE, 'an empty node name never matches as the same node');
});

t.test('locality tiers: most local first, always ending with all; failover by zone only without hints', async (t) => {
  const kinds = (eps: Endpoint[], here: { node: string; zone: string }, failover = false): string[] =>
    localityTiers(eps, here, failover).map((x) => `${x.kind}:${x.endpoints.map((e) => e.key).join(',')}`);
  const zoned = [
    endpoint('a1', { zone: 'a', node: 'n1' }),
    endpoint('a2', { zone: 'a', node: 'n2' }),
    endpoint('b1', { zone: 'b', node: 'n3' }),
  ];
  t.same(kinds(zoned, { node: 'n1', zone: 'a' }), ['all:a1,a2,b1'], 'no hints, no failover: one tier');
  t.same(kinds(zoned, { node: 'n1', zone: 'a' }, true), ['same-zone:a1,a2', 'all:a1,a2,b1'], 'failover: this zone, then all');
  t.same(kinds(zoned, { node: 'n1', zone: 'c' }, true), ['all:a1,a2,b1'], 'failover, nothing in this zone: all');
  t.same(kinds(zoned, { node: '', zone: '' }, true), ['all:a1,a2,b1'], 'where the sidecar runs is unknown: all');
  t.same(kinds([], { node: 'n1', zone: 'a' }, true), ['all:'], 'no endpoints: one empty tier');
  const allA = zoned.map((e) => endpoint(e.key, { zone: 'a' }));
  t.same(kinds(allA, { node: 'n1', zone: 'a' }, true), ['all:a1,a2,b1'], 'every endpoint in this zone: no narrower tier');
  const hinted = [
    endpoint('a1', { zone: 'a', forZones: ['a'], forNodes: ['n1'] }),
    endpoint('a2', { zone: 'a', forZones: ['a'], forNodes: ['n2'] }),
    endpoint('b1', { zone: 'b', forZones: ['b'], forNodes: ['n3'] }),
  ];
  t.same(
    kinds(hinted, { node: 'n1', zone: 'a' }, true),
    ['node:a1', 'zone:a1,a2', 'all:a1,a2,b1'],
    'hints: node, zone, all; failover adds nothing',
  );
  t.same(kinds(hinted, { node: 'n9', zone: 'b' }), ['zone:b1', 'all:a1,a2,b1'], 'no node hint here: zone hints');
  const partly = hinted.map((e, i) => (i === 2 ? endpoint(e.key, { zone: 'b' }) : e));
  t.same(kinds(partly, { node: 'n1', zone: 'a' }), ['all:a1,a2,b1'], 'one endpoint without hints: hints ignored, as kube-proxy does');
  t.same(kinds(partly, { node: 'n1', zone: 'a' }, true), ['same-zone:a1,a2', 'all:a1,a2,b1'], 'and failover by zone applies instead');
});
