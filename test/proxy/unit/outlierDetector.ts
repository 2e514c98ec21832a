// Outlier detection on a manual clock: ConsecutiveErrors ejects, the ejection lasts
// BaseEjectionTimeMS x times ejected and ends at the first sweep at or after it, healthy sweeps earn
// the multiplier back, MaxEjectionPercent and the last healthy endpoint cap it, and the sweeper runs
// only while there is something to sweep. (The panic threshold is the cluster's: cluster.ts
// rebalance(), covered by test/proxy/balance/locality.test.ts.)
import t from 'tap';
import { OutlierDetector } from '../../../proxy/policy/outlierDetector.ts';
import type { Endpoint } from '../../../proxy/cluster/endpoint.ts';
import { endpoints, outlierHost } from './fakes.ts';
import { ManualClock } from './manualClock.ts';

function fail(d: OutlierDetector, e: Endpoint, times: number): void {
  for (let i = 0; i < times; i++) d.failure(e);
}

t.test('ConsecutiveErrors failures in a row eject; a success in between starts the count again', async (t) => {
  const clock = new ManualClock(1_000);
  const eps = endpoints(4);
  const host = outlierHost(eps);
  const d = new OutlierDetector(host, clock);
  fail(d, eps[0], 4);
  t.equal(eps[0].ejectedUntil, 0, 'four failures: still in');
  t.equal(clock.timers, 0, 'no sweeper while nothing is ejected');
  eps[0].consecutiveErrors = 0; // what an exchange does on an answer below 500
  fail(d, eps[0], 4);
  t.equal(eps[0].ejectedUntil, 0, 'a success reset the count: four more are not five in a row');
  d.failure(eps[0]);
  t.equal(eps[0].ejectedUntil, 1_000 + 30_000, 'the fifth in a row: ejected for BaseEjectionTimeMS from now');
  t.equal(eps[0].timesEjected, 1);
  t.equal(eps[0].consecutiveErrors, 0, 'its count starts again');
  t.equal(host.stats.ejections, 1);
  t.equal(host.rebalances, 1, 'the cluster rebuilt its balancer');
  t.equal(clock.timers, 1, 'the sweeper runs');
  fail(d, eps[0], 20);
  t.equal(eps[0].timesEjected, 1, 'failures of requests still in flight to it do not eject it again');
  t.equal(host.stats.ejections, 1);
  d.stop();
  t.equal(clock.timers, 0, 'stop() clears the sweeper');
});

t.test('an ejection ends at the first sweep at or after its time, not a millisecond before', async (t) => {
  const clock = new ManualClock(0);
  const eps = endpoints(4);
  const host = outlierHost(eps, { baseEjectionTimeMs: 30_000, intervalMs: 10_000 });
  const d = new OutlierDetector(host, clock);
  fail(d, eps[1], 5);
  clock.advanceTo(29_999);
  t.equal(eps[1].ejectedUntil, 30_000, 'sweeps at 10 and 20 s left it out');
  t.equal(host.rebalances, 1, 'and changed nothing');
  clock.advanceTo(30_000);
  t.equal(eps[1].ejectedUntil, 0, 'the sweep at 30 s returned it');
  t.equal(host.rebalances, 2, 'the balancer has it back');

  // Ejected between sweeps: it waits for the next sweep (at most IntervalMS late).
  clock.advanceTo(35_000);
  fail(d, eps[2], 5);
  t.equal(eps[2].ejectedUntil, 65_000);
  clock.advanceTo(69_999);
  t.equal(eps[2].ejectedUntil, 65_000, 'its time was up at 65 s, but no sweep has seen it yet');
  clock.advanceTo(70_000);
  t.equal(eps[2].ejectedUntil, 0, 'back at the sweep at 70 s (IntervalMS at most late)');
  d.stop();
});

t.test('repeated ejections last longer; healthy intervals earn the multiplier back, then the sweeper stops', async (t) => {
  const clock = new ManualClock(0);
  const eps = endpoints(4);
  const host = outlierHost(eps, { baseEjectionTimeMs: 30_000, intervalMs: 10_000 });
  const d = new OutlierDetector(host, clock);
  const e = eps[0];
  fail(d, e, 5);
  t.equal(e.ejectedUntil, 30_000, 'first: 1 x 30 s');
  clock.advanceTo(30_000);
  t.equal(e.ejectedUntil, 0);
  fail(d, e, 5);
  t.equal(e.ejectedUntil, 30_000 + 60_000, 'again at once: 2 x 30 s');
  clock.advanceTo(90_000);
  t.equal(e.ejectedUntil, 0, 'back after 60 s');
  fail(d, e, 5);
  t.equal(e.ejectedUntil, 90_000 + 90_000, 'a third time: 3 x 30 s');
  clock.advanceTo(180_000);
  t.equal(e.ejectedUntil, 0);
  t.equal(e.timesEjected, 3);
  clock.advance(10_000);
  t.equal(e.timesEjected, 2, 'one healthy sweep: the multiplier drops by one');
  t.equal(clock.timers, 1, 'the sweeper still runs while it remembers');
  clock.advance(20_000);
  t.equal(e.timesEjected, 0, 'three healthy sweeps: forgotten');
  t.equal(clock.timers, 0, 'nothing ejected or remembered: the sweeper stopped');
  fail(d, e, 5);
  t.equal(e.ejectedUntil, clock.now() + 30_000, 'so the next ejection is 1 x 30 s again');
  d.stop();
});

t.test('MaxEjectionPercent caps the ejected share; the capped endpoint is failing until its time is up', async (t) => {
  const clock = new ManualClock(0);
  const eps = endpoints(10);
  const host = outlierHost(eps, { maxEjectionPercent: 20 });
  const d = new OutlierDetector(host, clock);
  fail(d, eps[0], 5);
  fail(d, eps[1], 5);
  t.ok(eps[0].ejectedUntil > 0 && eps[1].ejectedUntil > 0, '20% of 10: two ejected');
  fail(d, eps[2], 5);
  t.equal(eps[2].ejectedUntil, 0, 'a third is not');
  t.equal(host.stats.ejectionsSkipped, 1);
  t.equal(d.failing.get(eps[2]), 30_000, 'it is failing until its would-be ejection time');
  t.equal(host.rebalances, 3, 'failing is news to the cluster (locality may leave its set)');
  d.failure(eps[2]);
  t.equal(host.rebalances, 3, 'more failures of a failing endpoint change nothing');
  clock.advanceTo(30_000);
  t.equal(d.failing.size, 0, 'failing ends when its time is up');
  t.equal(eps[2].consecutiveErrors, 0, 'and its count starts again');
  t.ok(eps[0].ejectedUntil === 0 && eps[1].ejectedUntil === 0, 'the two ejected ones are back too');
  fail(d, eps[2], 5);
  t.ok(eps[2].ejectedUntil > 0, 'with room under the cap, it is ejected now');
  d.stop();
  t.equal(d.failing.size, 0);
});

t.test('one endpoint may always be ejected, never the last healthy one; detection off ejects nothing', async (t) => {
  const clock = new ManualClock(0);
  const five = endpoints(5);
  const d5 = new OutlierDetector(outlierHost(five, { maxEjectionPercent: 10 }), clock);
  fail(d5, five[0], 5);
  t.ok(five[0].ejectedUntil > 0, '10% of 5 is 0.5: still one may be ejected');
  fail(d5, five[1], 5);
  t.equal(five[1].ejectedUntil, 0, 'but not two');
  d5.stop();

  const two = endpoints(2);
  const d2 = new OutlierDetector(outlierHost(two, { maxEjectionPercent: 100 }), clock);
  fail(d2, two[0], 5);
  fail(d2, two[1], 5);
  t.ok(two[0].ejectedUntil > 0, 'of two, one is ejected');
  t.equal(two[1].ejectedUntil, 0, 'the last healthy one is not, even at 100%');
  t.ok(d2.failing.has(two[1]), 'it is failing instead');
  d2.stop();

  const one = endpoints(1);
  const d1 = new OutlierDetector(outlierHost(one), clock);
  fail(d1, one[0], 50);
  t.equal(one[0].ejectedUntil, 0, 'a cluster of one never ejects its endpoint');
  d1.stop();

  const off = endpoints(4);
  const dOff = new OutlierDetector(outlierHost(off, { baseEjectionTimeMs: 0 }), clock);
  fail(dOff, off[0], 50);
  t.equal(off[0].ejectedUntil, 0, 'BaseEjectionTimeMS 0: detection off');
  t.equal(dOff.failing.size, 0);
  t.equal(clock.timers, 0, 'and no sweeper');

  const gone = endpoints(4);
  const host = outlierHost(gone.slice(0, 3));
  const dGone = new OutlierDetector(host, clock);
  gone[0].retired = true;
  fail(dGone, gone[0], 5);
  fail(dGone, gone[3], 5);
  t.ok(gone[0].ejectedUntil === 0 && gone[3].ejectedUntil === 0, 'a retired endpoint, or one no longer in the cluster, is not ejected');
  t.equal(dGone.failing.size, 0, 'nor failing');
  dGone.stop();
});

t.test('a new IntervalMS takes effect at the next ejection', async (t) => {
  const clock = new ManualClock(0);
  const eps = endpoints(4);
  const host = outlierHost(eps, { baseEjectionTimeMs: 5_000, intervalMs: 10_000 });
  const d = new OutlierDetector(host, clock);
  fail(d, eps[0], 5);
  host.policy = { ...host.policy, intervalMs: 1_000 };
  fail(d, eps[1], 5);
  t.equal(clock.timers, 1, 'one sweeper, replaced');
  clock.advanceTo(5_000);
  t.ok(eps[0].ejectedUntil === 0 && eps[1].ejectedUntil === 0, 'swept every second now: both back at 5 s, not at 10');
  d.stop();
});
