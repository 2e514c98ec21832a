// Outlier detection for one cluster: ConsecutiveErrors failures in a row (5xx, connect failures,
// timeouts, resets) eject an endpoint at once for BaseEjectionTimeMS x times ejected. At most
// MaxEjectionPercent of the cluster is ejected, but one endpoint always may be, and never the last
// healthy one. A sweep every IntervalMS (running only while something is ejected or remembered)
// returns endpoints whose time is up and lowers the multiplier of those that stayed healthy.
// An endpoint that crossed ConsecutiveErrors but was kept in by that cap is `failing` until a
// success (its count reset) or until its would-be ejection time passes, seen by the same sweep:
// locality (cluster.ts) leaves its set for a wider one on it, which costs no capacity.
import type { Endpoint } from '../cluster/endpoint.ts';
import type { ResilienceStats } from '../metrics.ts';
import type { ClusterPolicy } from '../../shared/snapshot.ts';
import { realClock, type Clock, type IntervalHandle } from './clock.ts';

export interface OutlierHost {
  readonly endpoints: readonly Endpoint[];
  readonly policy: ClusterPolicy;
  readonly stats: ResilienceStats;
  /** The ejected set changed: rebuild the balancer's endpoint list. */
  rebalance(): void;
}

export class OutlierDetector {
  private readonly host: OutlierHost;
  private readonly clock: Clock;
  private sweeper: IntervalHandle | null = null;
  private sweepEveryMs = 0;
  /** Endpoints kept in only by the MaxEjectionPercent cap (or as the last healthy one), and until when they would have been ejected. */
  readonly failing = new Map<Endpoint, number>();

  constructor(host: OutlierHost, clock: Clock = realClock) {
    this.host = host;
    this.clock = clock;
  }

  /** A failed attempt at e (the caller has already bumped nothing). */
  failure(e: Endpoint): void {
    const p = this.host.policy;
    if (++e.consecutiveErrors < p.consecutiveErrors || e.ejectedUntil !== 0 || e.retired || p.baseEjectionTimeMs === 0) return;
    const eps = this.host.endpoints;
    let ejected = 0;
    for (let i = 0; i < eps.length; i++) if (eps[i].ejectedUntil !== 0) ejected++;
    const allowed = Math.max(1, Math.floor((eps.length * p.maxEjectionPercent) / 100));
    if (ejected >= allowed || eps.length - ejected <= 1 || !eps.includes(e)) {
      this.host.stats.ejectionsSkipped++;
      if (!this.failing.has(e) && eps.includes(e)) {
        this.failing.set(e, this.clock.now() + p.baseEjectionTimeMs * (e.timesEjected + 1));
        this.host.rebalance();
        this.ensureSweeping();
      }
      return;
    }
    this.failing.delete(e);
    e.timesEjected++;
    e.ejectedUntil = this.clock.now() + p.baseEjectionTimeMs * e.timesEjected;
    e.consecutiveErrors = 0;
    this.host.stats.ejections++;
    this.host.rebalance();
    this.ensureSweeping();
  }

  private ensureSweeping(): void {
    const every = this.host.policy.intervalMs;
    if (this.sweeper !== null && this.sweepEveryMs === every) return;
    if (this.sweeper !== null) this.clock.clearInterval(this.sweeper);
    this.sweepEveryMs = every;
    this.sweeper = this.clock.setInterval(() => this.sweep(), every);
  }

  /** Returns endpoints whose ejection time is up; healthy ones earn their multiplier back. */
  sweep(now = this.clock.now()): void {
    let changed = false;
    let remembered = false;
    if (this.failing.size > 0) {
      const threshold = this.host.policy.consecutiveErrors;
      for (const [e, until] of this.failing) {
        // A success reset its count (the exchanges set it to 0); or its time is up, as an ejection's would be.
        const expired = now >= until;
        if (expired || e.consecutiveErrors < threshold || e.ejectedUntil !== 0 || e.retired) {
          this.failing.delete(e);
          if (expired) e.consecutiveErrors = 0;
          changed = true;
        } else remembered = true;
      }
    }
    for (const e of this.host.endpoints) {
      if (e.ejectedUntil !== 0) {
        if (now >= e.ejectedUntil) {
          e.ejectedUntil = 0;
          e.consecutiveErrors = 0;
          changed = true;
        }
      } else if (e.timesEjected > 0 && e.consecutiveErrors === 0) {
        e.timesEjected--;
      }
      if (e.ejectedUntil !== 0 || e.timesEjected > 0) remembered = true;
    }
    if (changed) this.host.rebalance();
    if (!remembered) this.stop();
  }

  stop(): void {
    this.failing.clear();
    if (this.sweeper !== null) this.clock.clearInterval(this.sweeper);
    this.sweeper = null;
  }
}
