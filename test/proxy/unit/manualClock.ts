// A clock that moves only when told (proxy/policy/clock.ts), and a seeded Math.random: the unit tests
// judge deadlines, ejections and distributions at exact instants and on repeatable draws.
import type { Clock, IntervalHandle } from '../../../proxy/policy/clock.ts';

interface Interval {
  fn: () => void;
  every: number;
  due: number;
  cleared: boolean;
}

export class ManualClock implements Clock {
  private t: number;
  private readonly intervals = new Set<Interval>();

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setInterval(fn: () => void, ms: number): IntervalHandle {
    if (!(ms > 0)) throw new Error(`ManualClock.setInterval: the period must be above 0 ms, not ${ms}`);
    const iv: Interval = { fn, every: ms, due: this.t + ms, cleared: false };
    this.intervals.add(iv);
    return iv;
  }

  clearInterval(handle: IntervalHandle): void {
    const iv = handle as Interval;
    iv.cleared = true;
    this.intervals.delete(iv);
  }

  /** When the earliest interval is due next; null while none runs. */
  nextDue(): number | null {
    let due: number | null = null;
    for (const iv of this.intervals) if (due === null || iv.due < due) due = iv.due;
    return due;
  }

  /** Intervals running now. */
  get timers(): number {
    return this.intervals.size;
  }

  /**
   * Moves time forward by ms, running each interval at each of its due instants in time order (the
   * clock reads that instant while it runs), as the event loop would on an idle machine.
   */
  advance(ms: number): void {
    if (!(ms >= 0)) throw new Error(`ManualClock.advance: cannot move time by ${ms} ms`);
    const end = this.t + ms;
    for (;;) {
      let next: Interval | null = null;
      for (const iv of this.intervals) if (iv.due <= end && (next === null || iv.due < next.due)) next = iv;
      if (next === null) break;
      this.t = next.due;
      next.due += next.every;
      next.fn();
    }
    this.t = end;
  }

  /** Moves time to the instant at (not before now). */
  advanceTo(at: number): void {
    this.advance(at - this.t);
  }
}

/** mulberry32: a small seeded generator with a full 2^32 period, good enough to stand in for Math.random. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let r = Math.imul(a ^ (a >>> 15), 1 | a);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs fn with Math.random replaced by a seeded generator, so a distribution check is the same on every run. */
export function withSeed<T>(seed: number, fn: () => T): T {
  const real = Math.random;
  Math.random = seeded(seed);
  try {
    return fn();
  } finally {
    Math.random = real;
  }
}
