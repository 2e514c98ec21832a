// The retry budget of a cluster on readings chosen by the test: the floor with no traffic, the
// ratio of requests, the window that gives spent retries back, and late readings.
import t from 'tap';
import { RETRY_FLOOR, RETRY_RATIO, RETRY_WINDOW_S, RetryBudget } from '../../../proxy/policy/retryBudget.ts';
import { ManualClock } from './manualClock.ts';

/** How many of count retries at instant now the budget allows. */
function retriesAt(b: RetryBudget, now: number, count: number): number {
  let ok = 0;
  for (let i = 0; i < count; i++) if (b.tryRetry(now)) ok++;
  return ok;
}

function requestsAt(b: RetryBudget, now: number, count: number): void {
  for (let i = 0; i < count; i++) b.request(now);
}

t.test('the floor: RETRY_FLOOR retries with no requests at all', async (t) => {
  t.equal(RETRY_FLOOR, 10);
  t.equal(retriesAt(new RetryBudget(), 5_000, 50), RETRY_FLOOR, 'ten retries, not one more');
});

t.test('the ratio: RETRY_RATIO of the requests in the window on top of the floor', async (t) => {
  t.equal(RETRY_RATIO, 0.2);
  const b = new RetryBudget();
  requestsAt(b, 1_000, 100);
  t.equal(retriesAt(b, 1_500, 100), 30, '100 requests: 20% (20) + 10');
  requestsAt(b, 2_000, 5);
  t.equal(retriesAt(b, 2_000, 100), 1, 'five more requests: one more retry (20% of 105 + 10 = 31)');
  requestsAt(b, 2_100, 5);
  t.equal(retriesAt(b, 2_100, 100), 1, 'and again (20% of 110 + 10 = 32)');
});

t.test('the window gives spent retries back as their second leaves it', async (t) => {
  t.equal(RETRY_WINDOW_S, 10);
  const clock = new ManualClock(1_000);
  const b = new RetryBudget(clock);
  requestsAt(b, 1_000, 100);
  t.equal(retriesAt(b, 1_200, 100), 30);
  t.same(b.window, { requests: 100, retries: 30 }, 'the config dump reads the window on the injected clock');
  requestsAt(b, 6_000, 50);
  t.equal(retriesAt(b, 6_000, 100), 10, 'five seconds on: the 100 requests still count, 50 more give 10 retries');
  t.equal(retriesAt(b, 10_999, 100), 0, 'the last instant of second 10: all spent');
  t.equal(
    retriesAt(b, 11_000, 100),
    10,
    'second 11: second 1 (100 requests, 30 retries) left the window; 50 requests and 10 spent leave 10',
  );
  clock.advanceTo(11_000);
  t.same(b.window, { requests: 50, retries: 20 });
  clock.advanceTo(16_000);
  t.same(b.window, { requests: 0, retries: 10 }, 'second 16: second 6 left too; the 10 retries of second 11 are still spent');
  t.equal(retriesAt(b, 16_000, 100), 0, 'so the floor is used up');
  clock.advanceTo(21_000);
  t.same(b.window, { requests: 0, retries: 0 }, 'second 21: an empty window');
  t.equal(retriesAt(b, 21_000, 100), RETRY_FLOOR, 'the floor again');
  clock.advanceTo(1_000_000);
  t.same(b.window, { requests: 0, retries: 0 }, 'a long idle clears it at once');
});

t.test('a late reading (a queued request counted with its arrival time) loses no count', async (t) => {
  const b = new RetryBudget();
  requestsAt(b, 10_500, 50);
  b.request(9_900); // its arrival, one second back: it waited behind another request on its connection
  requestsAt(b, 10_600, 49);
  t.equal(retriesAt(b, 10_700, 100), 30, 'all 100 requests count: 20 + 10 retries');
  const c = new RetryBudget(new ManualClock(10_800));
  requestsAt(c, 10_500, 50);
  t.equal(retriesAt(c, 10_500, 5), 5);
  c.request(9_990);
  t.equal(retriesAt(c, 10_600, 100), 15, 'the retries taken in the current second stay spent (51 requests: 10 + 10 = 20)');
  t.same(c.window, { requests: 51, retries: 20 });
});
