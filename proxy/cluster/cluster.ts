// One cluster (a dependency port, or an inbound target): its endpoints, its balancer and the state of
// its resilience policies (breaker counters, retry budget, outlier detection). The object is stable
// across snapshots, so routes hold it directly; updates swap its endpoint list in place.
import type { Cluster as ClusterSpec, ClusterPolicy, LbPolicy } from '../../shared/snapshot.ts';
import type { Balancer } from '../balance/balancer.ts';
import { createBalancer } from '../balance/createBalancer.ts';
import { localityOf, localityTiers, type LocalityTier, type SidecarLocality } from '../balance/locality.ts';
import { ResilienceStats } from '../metrics.ts';
import { deadlineQueue, type DeadlineQueue } from '../policy/deadlines.ts';
import { OutlierDetector } from '../policy/outlierDetector.ts';
import { RETRY_FLOOR, RETRY_RATIO, RETRY_WINDOW_S, RetryBudget } from '../policy/retryBudget.ts';
import { Endpoint } from './endpoint.ts';

function poolShape(p: ClusterPolicy): string {
  return `${p.maxConnections}/${p.connectTimeoutMs}/${p.requestTimeoutMs}/${p.maxRequestsPerConnection}`;
}

export class Cluster {
  readonly name: string;
  policy: ClusterPolicy;
  lbPolicy: LbPolicy;
  /** Lower-case header whose value the hash policy keys on; '' for other policies. */
  hashHeader: string;
  endpoints: Endpoint[] = [];
  balancer: Balancer<Endpoint>;
  /**
   * Work in flight over all endpoints, including retired ones still finishing (MaxRequests; L4:
   * MaxConnections). This, activeRetries, pending and each endpoint's load change only through
   * permits (permit.ts).
   */
  active = 0;
  /** Retries in flight (MaxActiveRetries). */
  activeRetries = 0;
  /** Requests waiting for a connection (MaxPendingRequests). */
  pending = 0;
  /** The per-attempt deadline (PerTryTimeoutMS); null: none. Resolved per snapshot, not per request. */
  tryDeadlines: DeadlineQueue | null = null;
  readonly stats: ResilienceStats;
  readonly budget = new RetryBudget();
  readonly outlier: OutlierDetector;
  /** Where this sidecar runs (ClusterSet.setLocality), the failover option, and the candidate sets most local first. */
  here: SidecarLocality = { node: '', zone: '' };
  localityFailover = false;
  tiers: LocalityTier[] = [{ kind: 'all', endpoints: [] }];
  /** The tier the balancer holds now; a wider one while the preferred one is unhealthy. */
  tier: LocalityTier['kind'] = 'all';
  /** While a more local tier is chosen: where its retries go (the next tier's healthy endpoints outside it); else empty. */
  spill: Endpoint[] = [];
  private spillNext = 0;
  private readonly retiring = new Set<Promise<void>>();

  constructor(spec: ClusterSpec, stats: ResilienceStats = new ResilienceStats(spec.name), here?: SidecarLocality) {
    this.name = spec.name;
    this.stats = stats;
    this.outlier = new OutlierDetector(this);
    this.policy = spec.policy;
    this.lbPolicy = spec.lbPolicy;
    this.hashHeader = spec.lbPolicy === 'hash' ? spec.hashHeader.toLowerCase() : '';
    this.balancer = createBalancer<Endpoint>(spec.lbPolicy);
    if (here) this.here = here;
    this.update(spec);
  }

  /** Applies a new spec: endpoints that stay keep their pools; removed ones drain, then close. */
  update(spec: ClusterSpec): void {
    const reshaped = poolShape(spec.policy) !== poolShape(this.policy);
    this.policy = spec.policy;
    this.tryDeadlines = deadlineQueue(spec.policy.perTryTimeoutMs ?? 0);
    if (spec.lbPolicy !== this.lbPolicy) {
      this.lbPolicy = spec.lbPolicy;
      this.balancer = createBalancer<Endpoint>(spec.lbPolicy);
    }
    this.hashHeader = spec.lbPolicy === 'hash' ? spec.hashHeader.toLowerCase() : '';
    const old = new Map<string, Endpoint>();
    for (const e of this.endpoints) old.set(`${e.key}/${e.weight}`, e);
    const next: Endpoint[] = [];
    for (const s of spec.endpoints) {
      const id = `${s.address}:${s.port}/${s.weight}`;
      const kept = reshaped ? undefined : old.get(id);
      let e: Endpoint;
      if (kept) {
        old.delete(id);
        next.push((e = kept));
      } else if (!next.some((x) => x.key === `${s.address}:${s.port}`)) {
        next.push((e = new Endpoint(s.address, s.port, s.weight, spec.policy, this)));
      } else continue;
      e.zone = s.zone;
      e.node = s.node ?? '';
      e.forZones = s.forZones ?? null;
      e.forNodes = s.forNodes ?? null;
    }
    this.endpoints = next;
    this.localityFailover = spec.localityFailover === true;
    this.retier();
    this.rebalance();
    for (const e of old.values()) this.retireEndpoint(e);
  }

  /** The sidecar's node and zone changed (or became known): recompute the locality tiers. */
  setLocality(here: SidecarLocality): void {
    this.here = here;
    this.retier();
    this.rebalance();
  }

  /** Each endpoint's locality and the candidate sets; on endpoint or locality changes only. */
  private retier(): void {
    for (const e of this.endpoints) e.locality = localityOf(e, this.here);
    this.tiers = localityTiers(this.endpoints, this.here, this.localityFailover);
  }

  /**
   * Gives the balancer the non-ejected endpoints of the most local tier that has enough healthy ones
   * (share at or above HealthyPanicThreshold, counting the failing ones the ejection cap kept in as
   * unhealthy: leaving for a wider set costs no capacity). Else all endpoints less the ejected ones
   * and the failing ones of the narrower sets passed over, or all of them while what is left is below
   * the threshold (panic: better some errors than everything on a few).
   */
  rebalance(): void {
    const all = this.endpoints;
    const failing = this.outlier.failing;
    let healthy = 0;
    for (let i = 0; i < all.length; i++) if (all[i].ejectedUntil === 0) healthy++;
    this.stats.ejected = all.length - healthy;
    const threshold = this.policy.healthyPanicThreshold;
    const tiers = this.tiers;
    for (let t = 0; t < tiers.length - 1; t++) {
      const local = tiers[t].endpoints;
      let notEjected = 0;
      let up = 0;
      for (let i = 0; i < local.length; i++) {
        if (local[i].ejectedUntil !== 0) continue;
        notEjected++;
        if (!failing.has(local[i])) up++;
      }
      if (up > 0 && up * 100 >= threshold * local.length) {
        this.tier = tiers[t].kind;
        this.stats.panic = 0;
        this.balancer.update(notEjected === local.length ? local : local.filter((e) => e.ejectedUntil === 0));
        // Retries go one set wider: the endpoints of the next tier outside this one, healthy.
        const mine = new Set(local);
        this.spill = tiers[t + 1].endpoints.filter((e) => !mine.has(e) && e.ejectedUntil === 0 && !failing.has(e));
        return;
      }
    }
    let usable = healthy === all.length ? all : all.filter((e) => e.ejectedUntil === 0);
    if (tiers.length > 1 && failing.size > 0) {
      const passedOver = new Set<Endpoint>();
      for (let t = 0; t < tiers.length - 1; t++) for (const e of tiers[t].endpoints) if (failing.has(e)) passedOver.add(e);
      if (passedOver.size > 0) usable = usable.filter((e) => !passedOver.has(e));
    }
    const panic = usable.length < all.length && usable.length * 100 < threshold * all.length;
    this.tier = 'all';
    this.stats.panic = panic ? 1 : 0;
    this.spill = [];
    this.balancer.update(panic ? all : usable);
  }

  pick(hashKey: string | undefined): Endpoint | null {
    const e = this.balancer.pick(hashKey);
    if (e !== null) this.stats.byLocality[e.locality]++;
    return e;
  }

  /**
   * An endpoint for a retry. While a more local set is chosen, one of the next wider set outside it
   * (as Envoy's previous_priorities retry priority does): a failure there may be the whole set's,
   * and one dead zone then costs no request while retries are allowed. Else another one than `tried`
   * when there is one.
   */
  pickOther(tried: Endpoint): Endpoint | null {
    const spill = this.spill;
    if (spill.length > 0) {
      let i = this.spillNext % spill.length;
      if (spill[i] === tried) i = (i + 1) % spill.length;
      this.spillNext = i + 1;
      const x = spill[i];
      if (x !== tried) {
        this.stats.byLocality[x.locality]++;
        return x;
      }
    }
    let e = this.balancer.pick(undefined);
    for (let i = 0; i < 4 && e === tried; i++) e = this.balancer.pick(undefined);
    if (e === tried) {
      // The balancer sees only tried (the others are ejected, or other zones): any other endpoint beats a known failure, a healthy one first.
      let other: Endpoint | null = null;
      for (const x of this.endpoints) {
        if (x === tried) continue;
        other ??= x;
        if (x.ejectedUntil === 0 && !this.outlier.failing.has(x)) {
          other = x;
          break;
        }
      }
      if (other !== null) {
        this.stats.byLocality[other.locality]++;
        return other;
      }
    }
    if (e !== null) this.stats.byLocality[e.locality]++;
    return e;
  }

  /**
   * May this request be retried now? Takes a retry from the budget when it says yes. With locality
   * sets, MaxActiveRetries does not apply, only the budget: a retry there leaves the set that failed
   * (pickOther), and when a zone dies every request caught in it needs one at once.
   */
  admitRetry(now: number): boolean {
    if (this.activeRetries >= this.policy.maxActiveRetries && this.tiers.length === 1) {
      this.stats.retriesMaxActive++;
      return false;
    }
    if (!this.budget.tryRetry(now)) {
      this.stats.retriesBudgetExhausted++;
      return false;
    }
    this.stats.retries++;
    return true;
  }

  /** The policies as applied, with units in the names, and their live state (/config_dump). */
  applied(): Record<string, unknown> {
    const p = this.policy;
    const now = performance.now();
    return {
      cluster: this.name,
      locality: {
        node: this.here.node,
        zone: this.here.zone,
        localityFailover: this.localityFailover,
        tier: this.tier,
        retriesTo: this.spill.map((e) => e.key),
        tiers: this.tiers.map((t) => ({ kind: t.kind, endpoints: t.endpoints.map((e) => e.key) })),
      },
      timeouts: {
        connectTimeoutMs: p.connectTimeoutMs,
        requestTimeoutMs: p.requestTimeoutMs,
        perTryTimeoutMs: p.perTryTimeoutMs ?? 0,
        tcpIdleTimeoutS: p.tcpIdleTimeoutS,
      },
      retries: {
        retryAttempts: p.retryAttempts,
        maxActiveRetries: p.maxActiveRetries,
        activeRetries: this.activeRetries,
        budget: { ratio: RETRY_RATIO, floor: RETRY_FLOOR, windowS: RETRY_WINDOW_S, ...this.budget.window },
      },
      circuitBreakers: {
        maxConnections: p.maxConnections,
        maxRequests: p.maxRequests,
        maxPendingRequests: p.maxPendingRequests,
        maxRequestsPerConnection: p.maxRequestsPerConnection,
        active: this.active,
        pending: this.pending,
        // The load on each endpoint (what least-request compares; slowActive: on the undici path).
        load: this.endpoints.map((e) => ({ endpoint: e.key, active: e.active, slowActive: e.slowActive })),
      },
      outlierDetection: {
        consecutiveErrors: p.consecutiveErrors,
        baseEjectionTimeMs: p.baseEjectionTimeMs,
        maxEjectionPercent: p.maxEjectionPercent,
        intervalMs: p.intervalMs,
        healthyPanicThreshold: p.healthyPanicThreshold,
        panic: this.stats.panic === 1,
        endpoints: this.endpoints.map((e) => ({
          endpoint: e.key,
          ejected: e.ejectedUntil !== 0,
          ejectedForMs: e.ejectedUntil === 0 ? 0 : Math.max(0, Math.round(e.ejectedUntil - now)),
          failing: this.outlier.failing.has(e),
          timesEjected: e.timesEjected,
          consecutiveErrors: e.consecutiveErrors,
        })),
      },
    };
  }

  private retireEndpoint(e: Endpoint): void {
    const p = e.retire().finally(() => this.retiring.delete(p));
    this.retiring.add(p);
  }

  /** Retires every endpoint (the cluster left the snapshot); resolves when they have drained. */
  async retire(): Promise<void> {
    for (const e of this.endpoints) this.retireEndpoint(e);
    this.endpoints = [];
    this.retier();
    this.spill = [];
    this.balancer.update([]);
    this.outlier.stop();
    await Promise.all([...this.retiring]);
  }

  async destroy(): Promise<void> {
    this.outlier.stop();
    await Promise.all(this.endpoints.map((e) => e.destroy()));
    this.endpoints = [];
    this.retier();
    this.spill = [];
    this.balancer.update([]);
  }
}
