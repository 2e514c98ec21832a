// An inbound rate limit (LIMIT_RPS with LIMIT_BURST): a token bucket refilled from the caller's own
// clock reading, so admission costs a few arithmetic operations and no timer.
import { realClock } from './clock.ts';

export class TokenBucket {
  readonly rps: number;
  readonly burst: number;
  private tokens: number;
  private last: number;

  constructor(rps: number, burst: number, now = realClock.now()) {
    this.rps = rps;
    this.burst = Math.max(1, burst);
    this.tokens = this.burst;
    this.last = now;
  }

  /** Takes a token; false when the bucket is empty. now: performance.now(). */
  take(now: number): boolean {
    const t = this.tokens + ((now - this.last) * this.rps) / 1000;
    this.last = now;
    if (t < 1) {
      this.tokens = t;
      return false;
    }
    this.tokens = t > this.burst ? this.burst - 1 : t - 1;
    return true;
  }

  /** Whole seconds until a token is back (Retry-After), at least 1. */
  retryAfterS(): number {
    return Math.max(1, Math.ceil((1 - this.tokens) / this.rps));
  }
}
