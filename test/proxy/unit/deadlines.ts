// Request deadlines on a manual clock: a deadline is due exactly at arm time + timeout, fires at the
// first tick at or after that (at most TICK_MS late), in arming order; disarmed or re-armed ones never
// fire early or twice; the shared ticker stops when idle and starts again on the next arm.
import { setImmediate as turn } from 'node:timers/promises';
import t from 'tap';
import {
  deadlineQueue,
  DeadlineScheduler,
  disarm,
  IDLE_TICKS_BEFORE_STOP,
  TICK_MS,
  TryDeadline,
  type DeadlineHolder,
  type DeadlineQueue,
} from '../../../proxy/policy/deadlines.ts';
import { ManualClock } from './manualClock.ts';

/** A request's deadline fields, recording the clock reading when it fires. */
class Holder implements DeadlineHolder {
  deadlineAt = 0;
  deadlineNext: DeadlineHolder | null = null;
  deadlinePrev: DeadlineHolder | null = null;
  deadlineQueue: DeadlineQueue | null = null;
  readonly fired: number[] = [];
  readonly name: string;
  private readonly clock: ManualClock;
  private readonly log: string[];

  constructor(name: string, clock: ManualClock, log: string[] = []) {
    this.name = name;
    this.clock = clock;
    this.log = log;
  }

  onDeadline(): void {
    this.fired.push(this.clock.now());
    this.log.push(this.name);
  }
}

/**
 * Steps the clock to `to` in one go (the ticks it passes run), then lets the checks they scheduled
 * (setImmediate) run: they read the clock at `to`, as after an event loop stall.
 */
async function step(clock: ManualClock, to: number): Promise<void> {
  clock.advanceTo(to);
  await turn();
}

/** Walks the clock to `to` tick by tick, each tick's check running at the tick's instant, as on an idle machine. */
async function walk(clock: ManualClock, to: number): Promise<void> {
  for (let due = clock.nextDue(); due !== null && due <= to; due = clock.nextDue()) {
    clock.advanceTo(due);
    await turn();
  }
  await step(clock, to);
}

t.test('a deadline is due exactly at arm time + timeout', async (t) => {
  const clock = new ManualClock(0);
  const sched = new DeadlineScheduler(clock);
  const q = sched.queue(250)!;
  const h = new Holder('h', clock);
  q.arm(h, 1_000);
  t.equal(h.deadlineAt, 1_250);
  q.expire(1_249.999);
  t.same(h.fired, [], 'not a microsecond early');
  t.equal(q.size, 1);
  clock.advanceTo(1_250);
  q.expire(1_250);
  t.same(h.fired, [1_250], 'at the bound exactly');
  t.equal(q.size, 0);
  t.equal(h.deadlineQueue, null, 'a fired deadline is no longer armed');
  q.expire(5_000);
  t.same(h.fired, [1_250], 'and fires once');
});

t.test('the ticker fires a deadline at the first tick at or after it: on the bound when it falls on a tick', async (t) => {
  const clock = new ManualClock(0);
  const sched = new DeadlineScheduler(clock);
  const q = sched.queue(30)!;
  const h = new Holder('h', clock);
  q.arm(h, clock.now());
  t.equal(clock.timers, 1, 'arming started the shared ticker');
  await step(clock, 29.999);
  t.same(h.fired, [], 'ticks at 10 and 20 ms: not due');
  await step(clock, 30);
  t.same(h.fired, [30], 'the tick at 30 ms fired it, on its bound');

  const late = new Holder('late', clock);
  await step(clock, 35);
  q.arm(late, clock.now());
  await step(clock, 64.999);
  t.same(late.fired, [], 'due at 65 ms: the tick at 60 ms is early');
  await step(clock, 70);
  t.same(late.fired, [70], `the tick at 70 ms: 5 ms late, within TICK_MS (${TICK_MS})`);
});

t.test("one queue per timeout, each firing in arming order; the sidecar's queues are shared", async (t) => {
  const clock = new ManualClock(0);
  const sched = new DeadlineScheduler(clock);
  t.equal(sched.queue(100), sched.queue(100), 'the same timeout, the same queue');
  t.equal(sched.queue(0), null, 'timeout 0: no deadline');
  t.equal(sched.queue(-5), null);
  t.equal(sched.queue(Number.NaN), null);
  t.equal(deadlineQueue(15_000), deadlineQueue(15_000), "the sidecar's own scheduler shares queues too");
  t.not(deadlineQueue(15_000), sched.queue(15_000), "a test scheduler is apart from the sidecar's");
  const log: string[] = [];
  const short = sched.queue(20)!;
  const long = sched.queue(50)!;
  const a = new Holder('a', clock, log);
  const b = new Holder('b', clock, log);
  const c = new Holder('c', clock, log);
  const d = new Holder('d', clock, log);
  long.arm(a, 0); // due 50
  short.arm(b, 0); // due 20
  short.arm(c, 10); // due 30
  long.arm(d, 10); // due 60
  await walk(clock, 100);
  t.same(log, ['b', 'c', 'a', 'd'], 'in time order across queues');
  t.same([a.fired, b.fired, c.fired, d.fired], [[50], [20], [30], [60]], 'each on its bound (all fall on ticks)');
});

t.test('disarmed deadlines never fire; re-arming moves a deadline later, never earlier', async (t) => {
  const clock = new ManualClock(0);
  const sched = new DeadlineScheduler(clock);
  const q = sched.queue(40)!;
  const log: string[] = [];
  const hs = ['h0', 'h1', 'h2', 'h3', 'h4'].map((n) => new Holder(n, clock, log));
  for (const h of hs) q.arm(h, 0);
  disarm(hs[0]); // the head
  disarm(hs[2]); // the middle
  disarm(hs[4]); // the tail
  disarm(hs[4]); // twice: nothing
  t.equal(q.size, 2);
  q.arm(hs[1], 20); // re-armed: due 60, behind h3
  await step(clock, 40);
  t.same(log, ['h3'], 'at 40 ms: h3 alone');
  await walk(clock, 1_000);
  t.same(log, ['h3', 'h1'], 'h1 at 60 ms; the disarmed ones never');
  t.same(hs[1].fired, [60]);
  t.equal(q.size, 0);
  const h = new Holder('again', clock, log);
  q.arm(h, clock.now());
  disarm(h);
  q.arm(h, clock.now());
  await step(clock, 1_040);
  t.same(h.fired, [1_040], 'disarmed and armed again: fires once, for the second arming');
});

t.test('a deadline that arms again when it fires is due one timeout later, not in the same pass', async (t) => {
  const clock = new ManualClock(0);
  const sched = new DeadlineScheduler(clock);
  const q = sched.queue(10)!;
  const fired: number[] = [];
  const owner = {
    onTryDeadline(): void {
      fired.push(clock.now());
      if (fired.length < 3) q.arm(tryDeadline, clock.now());
    },
  };
  const tryDeadline = new TryDeadline(owner, q);
  t.equal(tryDeadline.queue, q);
  q.arm(tryDeadline, 0);
  await walk(clock, 100);
  t.same(fired, [10, 20, 30], 'a TryDeadline calls its owner; each re-arm fires a timeout later');
});

t.test('the ticker stops after IDLE_TICKS_BEFORE_STOP idle ticks and starts again on the next arm', async (t) => {
  const clock = new ManualClock(0);
  const sched = new DeadlineScheduler(clock);
  const q = sched.queue(10)!;
  const h = new Holder('h', clock);
  q.arm(h, 0);
  await step(clock, 10);
  t.same(h.fired, [10]);
  // The tick that fired it ended with nothing armed: the first idle tick.
  await walk(clock, 10 + (IDLE_TICKS_BEFORE_STOP - 1) * TICK_MS);
  t.equal(clock.timers, 1, `${IDLE_TICKS_BEFORE_STOP} idle ticks: still running`);
  await walk(clock, 10 + IDLE_TICKS_BEFORE_STOP * TICK_MS);
  t.equal(clock.timers, 0, 'one more: stopped, an idle sidecar wakes no one');
  t.equal(sched.ticker, null);
  const again = new Holder('again', clock);
  const at = clock.now();
  q.arm(again, at);
  t.equal(clock.timers, 1, 'arming started it again');
  await step(clock, at + 10);
  t.same(again.fired, [at + 10], 'and the deadline fires on time');
  const busy = new Holder('busy', clock);
  const slow = sched.queue(25)!;
  const armedAt = clock.now();
  for (let i = 1; i <= IDLE_TICKS_BEFORE_STOP + 20; i++) {
    slow.arm(busy, clock.now()); // re-armed every tick, 25 ms ahead: always armed, never due
    await step(clock, armedAt + i * TICK_MS);
  }
  t.equal(clock.timers, 1, 'a ticker with work never stops');
  t.same(busy.fired, [], 'and a deadline re-armed before it is due never fires');
  disarm(busy);
});
