// Request deadlines without a timer per request. Each distinct timeout has one queue; since every
// deadline in a queue is "armed at + the same timeout", arming appends and the head expires first.
// One shared ticker (TICK_MS) expires the heads of every queue. Arming and disarming are a few field
// writes on the holder (an intrusive list): nothing is allocated per request (a cluster with
// PerTryTimeoutMS adds one TryDeadline per request, in that timeout's queue).

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
const IDLE_TICKS_BEFORE_STOP = 100;

const queues = new Map<number, DeadlineQueue>();
let ticker: NodeJS.Timeout | null = null;
let idleTicks = 0;

// The interval only schedules the check: run from setImmediate, it comes after the poll phase, so an
// answer that arrived while the event loop was stalled is read before its deadline is judged.
function tick(): void {
  setImmediate(expireAll);
}

function expireAll(): void {
  const now = performance.now();
  let armed = 0;
  for (const q of queues.values()) {
    if (q.size > 0) q.expire(now);
    armed += q.size;
  }
  if (armed > 0) {
    idleTicks = 0;
  } else if (++idleTicks > IDLE_TICKS_BEFORE_STOP && ticker !== null) {
    clearInterval(ticker);
    ticker = null;
  }
}

export class DeadlineQueue {
  readonly timeoutMs: number;
  size = 0;
  private head: DeadlineHolder | null = null;
  private tail: DeadlineHolder | null = null;

  constructor(timeoutMs: number) {
    this.timeoutMs = timeoutMs;
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
    if (ticker === null) {
      idleTicks = 0;
      ticker = setInterval(tick, TICK_MS);
      ticker.unref();
    }
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

/** The shared queue for one timeout; null for 0 (no deadline). Resolve once per snapshot, not per request. */
export function deadlineQueue(timeoutMs: number): DeadlineQueue | null {
  if (!(timeoutMs > 0)) return null;
  let q = queues.get(timeoutMs);
  if (!q) queues.set(timeoutMs, (q = new DeadlineQueue(timeoutMs)));
  return q;
}
