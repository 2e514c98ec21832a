// The inbound rate limit (LIMIT_RPS, LIMIT_BURST) on readings chosen by the test: the burst, the
// refill rate to the token, no overdraft from refused requests, and no more than the burst after idling.
import t from 'tap';
import { TokenBucket } from '../../../proxy/policy/tokenBucket.ts';

/** How many of count takes at instant now succeed. */
function takeAt(b: TokenBucket, now: number, count: number): number {
  let ok = 0;
  for (let i = 0; i < count; i++) if (b.take(now)) ok++;
  return ok;
}

t.test('a full bucket admits the burst at once, then nothing until a token is back', async (t) => {
  const b = new TokenBucket(4, 5, 0);
  t.equal(takeAt(b, 0, 5), 5, 'LIMIT_BURST (5) at the same instant');
  t.notOk(b.take(0), 'the sixth is refused');
  t.notOk(b.take(249), '249 ms later at 4 rps: not yet a whole token');
  const fresh = new TokenBucket(4, 5, 0);
  takeAt(fresh, 0, 5);
  t.ok(fresh.take(250), 'one token back exactly 1/rps (250 ms) after the bucket emptied');
  t.notOk(fresh.take(250), 'and only one');
  t.equal(new TokenBucket(10, 0, 0).burst, 1, 'burst 0 means 1: a limit always admits something');
  t.equal(takeAt(new TokenBucket(10, 0, 0), 0, 3), 1);
});

t.test('over 10 s of one attempt a millisecond, admissions follow the rate and never run ahead of it', async (t) => {
  const rps = 100;
  const burst = 10;
  const b = new TokenBucket(rps, burst, 0);
  let admitted = 0;
  let ahead = 0;
  for (let ms = 0; ms <= 10_000; ms++) {
    if (b.take(ms)) admitted++;
    // What a bucket may have admitted by now at most: the burst plus what refilled since the start.
    if (admitted > burst + Math.floor((ms * rps) / 1000)) ahead++;
  }
  t.equal(ahead, 0, 'at no instant more than burst + rps x elapsed');
  t.ok(admitted >= burst + 1000 - 1 && admitted <= burst + 1000, `${admitted} admitted of 10,001 attempts (burst 10 + 1,000 refilled)`);
});

t.test('refused attempts cost nothing: no overdraft', async (t) => {
  // 1,000 rps: a token a millisecond, and readings in 1/1024 ms steps add up exactly.
  const b = new TokenBucket(1000, 1, 0);
  t.ok(b.take(0));
  let refused = 0;
  for (let i = 1; i < 1024; i++) if (!b.take(i / 1024)) refused++;
  t.equal(refused, 1023, '1,023 attempts in the millisecond the token takes to refill: all refused');
  t.ok(b.take(1), 'the token is back on time, as if nobody had knocked');
  t.notOk(b.take(1), 'one token, one request');
});

t.test('a long idle refills to the burst, not beyond', async (t) => {
  const b = new TokenBucket(50, 20, 0);
  takeAt(b, 0, 20);
  const hourLater = 3_600_000;
  t.equal(takeAt(b, hourLater, 100), 20, 'an hour idle: LIMIT_BURST (20) admitted, not 50 x 3,600');
  t.notOk(b.take(hourLater + 1), '1 ms later at 50 rps: nothing back yet (0.05 token)');
  t.ok(b.take(hourLater + 20), 'a whole token after 20 ms');
});

t.test('Retry-After: whole seconds until a token is back, at least 1', async (t) => {
  const slow = new TokenBucket(0.25, 1, 0);
  t.ok(slow.take(0));
  t.notOk(slow.take(0));
  t.equal(slow.retryAfterS(), 4, '0.25 rps, empty: 4 s');
  t.notOk(slow.take(1000));
  t.equal(slow.retryAfterS(), 3, 'a second later: 3 s');
  const fast = new TokenBucket(1000, 1, 0);
  fast.take(0);
  fast.take(0);
  t.equal(fast.retryAfterS(), 1, '1 ms away still says 1 s (the header has whole seconds)');
});
