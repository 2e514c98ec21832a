// The retry budget of one cluster: over a sliding window, retries may add at most RETRY_RATIO of the
// requests plus a small floor, so retries never multiply an outage. Counted in one-second buckets
// rolled forward from the request's own clock reading: no timer.
import { realClock, type Clock } from './clock.ts';

export const RETRY_RATIO = 0.2;
export const RETRY_FLOOR = 10;
export const RETRY_WINDOW_S = 10;

export class RetryBudget {
  private readonly requests = new Float64Array(RETRY_WINDOW_S);
  private readonly retries = new Float64Array(RETRY_WINDOW_S);
  private second = 0;
  private requestSum = 0;
  private retrySum = 0;
  private readonly clock: Clock;

  /** clock: read only by `window` (config dump); requests and retries bring their own reading. */
  constructor(clock: Clock = realClock) {
    this.clock = clock;
  }

  private roll(now: number): number {
    const s = Math.floor(now / 1000);
    // A reading from a second already rolled past (a request dispatched after it waited, counted with
    // its arrival time) counts in the current second: moving the window back would clear the current
    // second's bucket on the next roll forward, losing its requests and retries.
    if (s <= this.second) return this.second % RETRY_WINDOW_S;
    if (s - this.second >= RETRY_WINDOW_S) {
      this.requests.fill(0);
      this.retries.fill(0);
      this.requestSum = 0;
      this.retrySum = 0;
    } else {
      for (let k = this.second + 1; k <= s; k++) {
        const i = k % RETRY_WINDOW_S;
        this.requestSum -= this.requests[i];
        this.retrySum -= this.retries[i];
        this.requests[i] = 0;
        this.retries[i] = 0;
      }
    }
    this.second = s;
    return s % RETRY_WINDOW_S;
  }

  /** A first attempt (a client request or connection). now: performance.now(). */
  request(now: number): void {
    this.requests[this.roll(now)]++;
    this.requestSum++;
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryRetry(now: number): boolean {
    const i = this.roll(now);
    if (this.retrySum + 1 > RETRY_RATIO * this.requestSum + RETRY_FLOOR) return false;
    this.retries[i]++;
    this.retrySum++;
    return true;
  }

  get window(): { requests: number; retries: number } {
    this.roll(this.clock.now());
    return { requests: this.requestSum, retries: this.retrySum };
  }
}
