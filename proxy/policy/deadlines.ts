// Request deadlines without a timer per request. Each distinct timeout has one queue; since every
// deadline in a queue is "armed at + the same timeout", arming appends and the head expires first.
// One shared ticker (TICK_MS) expires the heads of every queue. Arming and disarming are a few field
// writes on the holder (an intrusive list): nothing is allocated per request (a cluster with
// PerTryTimeoutMS adds one TryDeadline per request, in that timeout's queue).
import { realClock, type Clock, type IntervalHandle } from './clock.ts';

export interface DeadlineHolder {
  deadlineAt: number;
  deadlineNext: DeadlineHolder | null;
  deadlinePrev: DeadlineHolder | null;
  deadlineQueue: DeadlineQueue | null;
  onDeadline(): void;
}

/** How late a deadline may fire at most, on top of its timeout. */
export const TICK_MS = 10;
// The ticker stops after this many ticks with nothing armed, so an idle sidecar wakes no one.
export const IDLE_TICKS_BEFORE_STOP = 100;

/**
 * The queues of one clock and their shared ticker. The sidecar has one (on the real clock, behind
 * deadlineQueue()); tests make their own on a manual clock.
 */
export class DeadlineScheduler {
  readonly clock: Clock;
  private readonly queues = new Map<number, DeadlineQueue>();
  /** The running ticker; null while stopped (nothing armed for IDLE_TICKS_BEFORE_STOP ticks). */
  ticker: IntervalHandle | null = null;
  private idleTicks = 0;
  // The interval only schedules the check: run from setImmediate, it comes after the poll phase, so an
  // answer that arrived while the event loop was stalled is read before its deadline is judged.
  private readonly expireAllFn = (): void => this.expireAll();
  private readonly tick = (): void => {
    setImmediate(this.expireAllFn);
  };

  constructor(clock: Clock = realClock) {
    this.clock = clock;
  }

  /** The shared queue for one timeout; null for 0 (no deadline). Resolve once per snapshot, not per request. */
  queue(timeoutMs: number): DeadlineQueue | null {
    if (!(timeoutMs > 0)) return null;
    let q = this.queues.get(timeoutMs);
    if (!q) this.queues.set(timeoutMs, (q = new DeadlineQueue(timeoutMs, this)));
    return q;
  }

  /** Starts the ticker; a queue calls it when it arms while the ticker is stopped. */
  start(): void {
    if (this.ticker !== null) return;
    this.idleTicks = 0;
    this.ticker = this.clock.setInterval(this.tick, TICK_MS);
  }

  /** Fires every deadline that is due at the clock's reading; stops the ticker once idle long enough. */
  expireAll(): void {
    const now = this.clock.now();
    let armed = 0;
    for (const q of this.queues.values()) {
      if (q.size > 0) q.expire(now);
      armed += q.size;
    }
    if (armed > 0) {
      this.idleTicks = 0;
    } else if (++this.idleTicks > IDLE_TICKS_BEFORE_STOP && this.ticker !== null) {
      this.clock.clearInterval(this.ticker);
      this.ticker = null;
    }
  }
}

export class DeadlineQueue {
  readonly timeoutMs: number;
  readonly scheduler: DeadlineScheduler;
  size = 0;
  private head: DeadlineHolder | null = null;
  private tail: DeadlineHolder | null = null;

  constructor(timeoutMs: number, scheduler: DeadlineScheduler) {
    this.timeoutMs = timeoutMs;
    this.scheduler = scheduler;
  }

  /** (Re)arms h to fire timeoutMs after now. */
  arm(h: DeadlineHolder, now: number): void {
    if (h.deadlineQueue !== null) disarm(h);
    h.deadlineAt = now + this.timeoutMs;
    h.deadlineQueue = this;
    h.deadlineNext = null;
    h.deadlinePrev = this.tail;
    if (this.tail === null) this.head = h;
    else this.tail.deadlineNext = h;
    this.tail = h;
    this.size++;
    if (this.scheduler.ticker === null) this.scheduler.start();
  }

  unlink(h: DeadlineHolder): void {
    if (h.deadlinePrev === null) this.head = h.deadlineNext;
    else h.deadlinePrev.deadlineNext = h.deadlineNext;
    if (h.deadlineNext === null) this.tail = h.deadlinePrev;
    else h.deadlineNext.deadlinePrev = h.deadlinePrev;
    h.deadlineNext = null;
    h.deadlinePrev = null;
    h.deadlineQueue = null;
    this.size--;
  }

  expire(now: number): void {
    let h = this.head;
    while (h !== null && h.deadlineAt <= now) {
      this.unlink(h);
      h.onDeadline();
      h = this.head;
    }
  }
}

/** What a TryDeadline calls when it fires. */
export interface TryDeadlineOwner {
  onTryDeadline(): void;
}

/**
 * A request's second deadline, per attempt (PerTryTimeoutMS), in the queue of that timeout: a holder
 * of its own, so the request's overall deadline (RequestTimeoutMS from its arrival) keeps its place
 * in its own queue. Each is appended in time order to its queue; whichever comes first fires, so an
 * attempt gets min(per-try, what is left of the overall) without any out-of-order insert.
 */
export class TryDeadline implements DeadlineHolder {
  deadlineAt = 0;
  deadlineNext: DeadlineHolder | null = null;
  deadlinePrev: DeadlineHolder | null = null;
  deadlineQueue: DeadlineQueue | null = null;
  readonly owner: TryDeadlineOwner;
  readonly queue: DeadlineQueue;

  constructor(owner: TryDeadlineOwner, queue: DeadlineQueue) {
    this.owner = owner;
    this.queue = queue;
  }

  onDeadline(): void {
    this.owner.onTryDeadline();
  }
}

export function disarm(h: DeadlineHolder): void {
  h.deadlineQueue?.unlink(h);
}

const sidecarDeadlines = new DeadlineScheduler();

/** The sidecar's shared queue for one timeout; null for 0 (no deadline). Resolve once per snapshot, not per request. */
export function deadlineQueue(timeoutMs: number): DeadlineQueue | null {
  return sidecarDeadlines.queue(timeoutMs);
}
