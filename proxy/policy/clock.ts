// Time as the policies read it: a monotonic reading in milliseconds and an interval timer. The
// sidecar uses the real clock, shared at module level (nothing is allocated per request); unit tests
// inject a manual one and step it, so a deadline or an ejection is judged at an exact instant.

/** What setInterval returned; only handed back to clearInterval. */
export type IntervalHandle = unknown;

export interface Clock {
  /** Monotonic milliseconds, as performance.now() reads them (fractional). */
  now(): number;
  /** Calls fn every ms milliseconds until cleared. The real clock's timer keeps no process alive (unref'd). */
  setInterval(fn: () => void, ms: number): IntervalHandle;
  clearInterval(handle: IntervalHandle): void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  setInterval(fn, ms) {
    const h = setInterval(fn, ms);
    h.unref();
    return h;
  },
  clearInterval(handle) {
    clearInterval(handle as NodeJS.Timeout);
  },
};
