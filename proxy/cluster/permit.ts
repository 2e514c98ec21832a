// The cluster's limits as permits, as Envoy's resource manager holds them. A request (L7) or a
// connection (L4) takes one permit when it is admitted (tryAcquire: MaxRequests, or MaxConnections on
// L4), binds it to the endpoint it is sent to (the load least-request compares), moves it when a retry
// goes elsewhere, holds a retry slot while it retries (MaxActiveRetries) and a queue place while it
// waits for a connection (MaxPendingRequests). release() gives everything back, once: it is idempotent,
// and each exchange calls it from the one place it ends. Every change to those counters is in this
// file; the rest of the proxy only reads them.
import type { Cluster } from './cluster.ts';
import type { Endpoint } from './endpoint.ts';

/** Which limit admits the work: an L7 request (MaxRequests), an L4 connection (MaxConnections), a mirror copy (half of MaxRequests). */
export const PermitKind = { Request: 0, Connection: 1, Mirror: 2 } as const;
export type PermitKind = (typeof PermitKind)[keyof typeof PermitKind];

export class Permit {
  readonly cluster: Cluster;
  private ep: Endpoint | null = null;
  /** Counted in the endpoint's slow-path (undici) load as well. */
  private slow = false;
  private retrySlot = false;
  private queued = false;
  private released = false;

  private constructor(cluster: Cluster) {
    this.cluster = cluster;
  }

  /**
   * A permit when the cluster's limit allows one more, else null. A refused request or connection is
   * counted (overflowMaxRequests, overflowMaxConnections); a mirror copy gives way first (over half
   * of MaxRequests in use, none) and is counted by the mirror's own statistics.
   */
  static tryAcquire(cluster: Cluster, kind: PermitKind = PermitKind.Request): Permit | null {
    const p = cluster.policy;
    switch (kind) {
      case PermitKind.Request:
        if (cluster.active >= p.maxRequests) {
          cluster.stats.overflowMaxRequests++;
          return null;
        }
        break;
      case PermitKind.Connection:
        if (cluster.active >= p.maxConnections) {
          cluster.stats.overflowMaxConnections++;
          return null;
        }
        break;
      default:
        if (cluster.active >= p.maxRequests / 2) return null;
    }
    cluster.active++;
    return new Permit(cluster);
  }

  /** The endpoint the current attempt goes to; null before the first and between attempts. */
  get endpoint(): Endpoint | null {
    return this.ep;
  }

  get holdsRetry(): boolean {
    return this.retrySlot;
  }

  /** The attempt goes to this endpoint (slow: on the undici path, which has its own queue bound). Moves the load from the previous one. */
  bind(endpoint: Endpoint, slow = false): void {
    if (this.released) return;
    this.unbind();
    this.ep = endpoint;
    this.slow = slow;
    endpoint.active++;
    if (slow) endpoint.slowActive++;
  }

  /** The attempt is over (a retry waits, or the upstream side is done): the endpoint's load goes down. */
  unbind(): void {
    const e = this.ep;
    if (e === null) return;
    this.ep = null;
    e.active--;
    if (this.slow) e.slowActive--;
  }

  /**
   * May this work be retried now? MaxActiveRetries and the retry budget (Cluster.admitRetry). A
   * permit that already holds a retry slot gives it back while it asks; it holds one again only when
   * the answer is yes, until it is released or the retry has connected (releaseRetry).
   */
  tryRetry(now: number): boolean {
    if (this.released) return false;
    this.releaseRetry();
    if (!this.cluster.admitRetry(now)) return false;
    this.retrySlot = true;
    this.cluster.activeRetries++;
    return true;
  }

  /** The retry is no longer in flight (an L4 retry that connected). */
  releaseRetry(): void {
    if (!this.retrySlot) return;
    this.retrySlot = false;
    this.cluster.activeRetries--;
  }

  /** A place in the queue for a connection, when MaxPendingRequests allows (overflowMaxPending counts a refusal). */
  enqueue(): boolean {
    if (this.released) return false;
    if (this.queued) return true;
    const c = this.cluster;
    if (c.pending >= c.policy.maxPendingRequests) {
      c.stats.overflowMaxPending++;
      return false;
    }
    this.queued = true;
    c.pending++;
    c.stats.queued++;
    return true;
  }

  /** Out of the queue (a connection came, or the wait was given up). */
  dequeue(): void {
    if (!this.queued) return;
    this.queued = false;
    this.cluster.pending--;
  }

  get isQueued(): boolean {
    return this.queued;
  }

  /** Gives back everything the permit holds. Idempotent: only the first call counts. */
  release(): void {
    if (this.released) return;
    this.dequeue();
    this.unbind();
    this.releaseRetry();
    this.released = true;
    this.cluster.active--;
  }

  get isReleased(): boolean {
    return this.released;
  }
}
