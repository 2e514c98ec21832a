// Writes what shoal says of each Gateway API route (discover/gateway/status.ts: one parents entry per
// Service parent it serves) into the route's status, through the status subresource.
//
// Safe with several discover replicas and no leader: each replica, after each apply of its topology,
// compares what it would write with the status it holds (its watch's copy) and writes only a
// difference, with the resourceVersion it read (a replace: a conflict, 409, reads the route again and
// compares again). Replicas that see the same state compute the same entries, lastTransitionTime
// included (kept from the entry in place while a condition's status stays), so the second finds
// nothing to do. Entries of other controllers are kept as they are; shoal's entries for parents it
// no longer serves are removed. A status write bumps resourceVersion, not generation: the source
// applies no topology for it (kubernetesSource.ts, onRoute) and so writes nothing in answer.
import type { Logger } from '../../../shared/log.ts';
import type { GatewayRoute, Topology } from '../../topology/model.ts';
import { CONTROLLER_NAME, type RouteParentStatus, type RouteStatusWrite } from '../../gateway/status.ts';

/** The most parents a route's status holds (the CRD's maxItems). */
const MAX_PARENTS = 32;
const WRITE_ATTEMPTS = 3;
const RETRY_MS = 5_000;

/** Every route's status, or (with `only`) at least the status of those routes. */
export type RouteStatusesFn = (topology: Topology, only?: Set<string>) => Map<string, RouteStatusWrite>;

const NO_PARENTS: RouteParentStatus[] = [];

type Obj = Record<string, any>;

export interface RouteStatusWriterOptions {
  log: Logger;
  routeStatuses: RouteStatusesFn;
  send: (method: string, path: string, body?: unknown) => Promise<{ status: number; json: any }>;
  /** The route as the watch last saw it (with the status shoal's own writes left). */
  current: (key: string) => GatewayRoute | undefined;
  /** A write the API accepted: the object it answered, and the resourceVersion the write was made on. */
  onWritten: (key: string, obj: Obj, sentVersion: string | undefined) => void;
  now?: () => Date;
}

/** Kubernetes' time format (metav1.Time): seconds, UTC. */
function timeText(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** A parentRef as a comparable text (defaults as the CRD applies them: group gateway.networking.k8s.io, kind Gateway). */
function refText(ref: Obj | undefined, routeNamespace: string): string {
  const r = ref ?? {};
  return JSON.stringify([
    r.group ?? 'gateway.networking.k8s.io',
    r.kind ?? 'Gateway',
    r.namespace || routeNamespace,
    r.name ?? '',
    r.sectionName ?? '',
    r.port ?? 0,
  ]);
}

function entryText(e: Obj, routeNamespace: string): string {
  const conditions = (Array.isArray(e.conditions) ? (e.conditions as Obj[]) : [])
    .map((c) => [c.type, c.status, c.reason, c.message, c.observedGeneration ?? null, c.lastTransitionTime ?? null])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  return JSON.stringify([refText(e.parentRef, routeNamespace), e.controllerName, conditions]);
}

/**
 * The status.parents to write for `route`, given shoal's entries `want`; null when its status already
 * says exactly that. Other controllers' entries stay, in their order, before shoal's; a condition keeps
 * its lastTransitionTime while its status is unchanged.
 */
export function mergeParents(route: Pick<GatewayRoute, 'metadata' | 'status'>, want: RouteParentStatus[], now: Date): Obj[] | null {
  const ns = route.metadata.namespace;
  const existing = Array.isArray(route.status?.parents) ? (route.status.parents as Obj[]) : [];
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- status.parents comes from the API server: an entry may be null
  const others = existing.filter((p) => p?.controllerName !== CONTROLLER_NAME);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- status.parents comes from the API server: an entry may be null
  const mineBefore = existing.filter((p) => p?.controllerName === CONTROLLER_NAME);
  const at = timeText(now);
  const mine = want.map((w) => {
    const old = mineBefore.find((p) => refText(p.parentRef, ns) === refText(w.parentRef, ns));
    const oldConditions = Array.isArray(old?.conditions) ? (old.conditions as Obj[]) : [];
    return {
      parentRef: w.parentRef,
      controllerName: CONTROLLER_NAME,
      conditions: w.conditions.map((c) => {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- status.parents comes from the API server: an entry may be null
        const was = oldConditions.find((o) => o?.type === c.type);
        const since = was && was.status === c.status && typeof was.lastTransitionTime === 'string' ? was.lastTransitionTime : at;
        return {
          type: c.type,
          status: c.status,
          reason: c.reason,
          message: c.message,
          observedGeneration: c.observedGeneration,
          lastTransitionTime: since,
        };
      }),
    };
  });
  const same = mine.length === mineBefore.length && mine.every((m, i) => entryText(m, ns) === entryText(mineBefore[i], ns));
  return same ? null : [...others, ...mine];
}

function plural(kind: GatewayRoute['kind']): string {
  return kind === 'GRPCRoute' ? 'grpcroutes' : 'httproutes';
}

export class RouteStatusWriter {
  private readonly opts: RouteStatusWriterOptions;
  // routeKey -> shoal's entries as last computed.
  private readonly desired = new Map<string, RouteParentStatus[]>();
  // routeKey -> its status as last computed (null: none yet), so an apply recomputes only what it touched.
  private statuses: Map<string, RouteStatusWrite> | null = null;
  // A route whose status said what shoal wants (mergeParents null): the status object and the entries
  // compared. The same three again need no comparison (status objects are replaced, never edited in place).
  private readonly settled = new WeakMap<GatewayRoute, { status: unknown; want: RouteParentStatus[] }>();
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private closed = false;

  constructor(opts: RouteStatusWriterOptions) {
    this.opts = opts;
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /**
   * After an apply: computes the routes' status and writes those that differ from what the route holds.
   * `touched` (status.ts routesTouched): the routes whose status the apply can have changed; the others keep
   * the status last computed. Absent: every route's is computed. Every route is compared with what it holds.
   */
  reconcile(topology: Topology, touched?: Set<string>): void {
    if (this.closed) return;
    let statuses: Map<string, RouteStatusWrite>;
    try {
      if (touched !== undefined && this.statuses !== null) {
        statuses = this.statuses;
        const fresh = this.opts.routeStatuses(topology, touched);
        for (const key of touched) {
          const s = fresh.get(key);
          if (s) statuses.set(key, s);
          else statuses.delete(key);
        }
        for (const key of statuses.keys()) if (!topology.routes?.has(key)) statuses.delete(key);
      } else {
        statuses = this.opts.routeStatuses(topology);
      }
    } catch (err) {
      this.statuses = null;
      this.opts.log.error({ error: (err as Error).message }, "computing the routes' status failed; status not written");
      return;
    }
    this.statuses = statuses;
    const now = this.now();
    for (const key of this.desired.keys()) if (!topology.routes?.has(key)) this.desired.delete(key);
    for (const [key, route] of topology.routes ?? []) {
      const want = statuses.get(key)?.parents ?? NO_PARENTS;
      this.desired.set(key, want);
      const s = this.settled.get(route);
      if (s !== undefined && s.status === route.status && s.want === want) continue;
      if (mergeParents(route, want, now) !== null) this.enqueue(key);
      else this.settled.set(route, { status: route.status, want });
    }
  }

  /** One write at a time per route; a reconcile meanwhile runs it once more afterwards. */
  private enqueue(key: string): void {
    if (this.closed) return;
    if (this.inFlight.has(key)) {
      this.again.add(key);
      return;
    }
    const p = this.write(key)
      .catch((err: unknown) => {
        this.opts.log.warn({ route: key, error: (err as Error).message }, 'route status not written; trying again');
        this.retryLater(key);
      })
      .finally(() => {
        this.inFlight.delete(key);
        if (this.again.delete(key)) this.enqueue(key);
      });
    this.inFlight.set(key, p);
  }

  private retryLater(key: string): void {
    if (this.closed || this.retries.has(key)) return;
    const timer = setTimeout(() => {
      this.retries.delete(key);
      this.enqueue(key);
    }, RETRY_MS);
    timer.unref();
    this.retries.set(key, timer);
  }

  private async write(key: string): Promise<void> {
    let route = this.opts.current(key);
    for (let attempt = 1; route; attempt++) {
      const want = this.desired.get(key);
      if (!want || this.closed) return;
      const parents = mergeParents(route, want, this.now());
      if (parents === null) return;
      if (parents.length > MAX_PARENTS) {
        this.opts.log.error(
          { route: key, parents: parents.length },
          `route status not written: it would have ${parents.length} parents entries, more than the ${MAX_PARENTS} the CRD allows`,
        );
        return;
      }
      const { namespace, name, resourceVersion } = route.metadata;
      const path = `/apis/gateway.networking.k8s.io/v1/namespaces/${namespace}/${plural(route.kind)}/${name}`;
      // A replace of the status subresource: the API server takes only .status from it, and refuses it
      // (409) when the route changed since resourceVersion.
      const body = {
        apiVersion: route.apiVersion,
        kind: route.kind,
        metadata: { name, namespace, resourceVersion },
        spec: route.spec,
        status: { ...route.status, parents },
      };
      const r = await this.opts.send('PUT', `${path}/status`, body);
      if (r.status === 200 || r.status === 201) {
        this.opts.onWritten(key, r.json as Obj, resourceVersion);
        this.opts.log.debug({ route: key, resourceVersion: r.json?.metadata?.resourceVersion }, 'route status written');
        return;
      }
      if (r.status === 404) return; // deleted meanwhile: its delete event follows
      if (r.status === 422 || r.status === 400) {
        this.opts.log.error(
          { route: key, status: r.status, error: r.json?.message ?? String(r.json).slice(0, 300) },
          'route status refused by the API server',
        );
        return;
      }
      if (r.status !== 409) throw new Error(`PUT ${path}/status: ${r.status} ${r.json?.message ?? String(r.json).slice(0, 300)}`);
      if (attempt >= WRITE_ATTEMPTS) throw new Error(`PUT ${path}/status: the route kept changing (${WRITE_ATTEMPTS} attempts)`);
      // Someone wrote in between (another replica, another controller): read it and compare again.
      const fresh = await this.opts.send('GET', path);
      if (fresh.status === 404) return;
      if (fresh.status !== 200) throw new Error(`GET ${path}: ${fresh.status} ${fresh.json?.message ?? ''}`);
      const f = fresh.json as Obj;
      route = { ...route, metadata: { ...route.metadata, resourceVersion: f.metadata?.resourceVersion }, status: f.status };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.retries.values()) clearTimeout(t);
    this.retries.clear();
    await Promise.all([...this.inFlight.values()]);
  }
}
