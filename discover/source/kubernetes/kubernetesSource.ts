// The Kubernetes source: informers on Services, EndpointSlices, mesh ConfigMaps and the Gateway API's
// HTTPRoutes and GRPCRoutes, kept as an incremental topology. Every burst of events becomes one apply
// that touches only the apps whose dependencies, config or routes changed; after each apply the routes'
// status is written (routeStatus.ts).
import {
  CoreV1Api,
  HttpMethod,
  KubeConfig,
  ListWatch,
  RequestContext,
  Watch,
  type Informer,
  type KubernetesObject,
  type ListPromise,
  type V1ConfigMap,
  type V1EndpointSlice,
  type V1Node,
  type V1Service,
} from '@kubernetes/client-node';
import { fetch } from 'undici';
import type { Logger } from '../../../shared/log.ts';
import type { ResourceSpec } from '../../../shared/meshConfig.ts';
import { appKey, routeKey, serviceKey, type App, type GatewayRoute, type Topology } from '../../topology/model.ts';
import { parentsRoutingTo, routeParents } from '../../gateway/compile.ts';
import { routeStatuses, routesTouched } from '../../gateway/status.ts';
import { RouteStatusWriter, type RouteStatusesFn } from './routeStatus.ts';
import { LABEL_VALUE, WriteRefused } from '../../topology/names.ts';
import {
  APP_LABEL,
  PLUGIN_CONFIG_KEY,
  PLUGIN_LABEL,
  appFromConfigMap,
  serviceKeyOf,
  serviceModel,
  sliceServiceKey,
} from './kubeObjects.ts';

export interface KubernetesSourceOptions {
  kubeConfig: KubeConfig;
  clusterDomain: string;
  log: Logger;
  // Readiness holds through watch reconnects while no informer has been down longer than this.
  staleAfterMs: number;
  onTopology: (t: Topology, affectedApps: Set<string> | undefined) => void;
  onConfigError: (message: string) => void;
  // While the Gateway API is not served (its CRDs not installed: the route list 404s, or RBAC says 403),
  // how often discover looks again. Default 30 s.
  gatewayRecheckMs?: number;
  // The status of each route (default: discover/gateway/status.ts); written after each apply.
  routeStatuses?: RouteStatusesFn;
}

/** The Gateway API route kinds discover watches, and their resources. */
export const ROUTE_KINDS = [
  { kind: 'HTTPRoute', plural: 'httproutes' },
  { kind: 'GRPCRoute', plural: 'grpcroutes' },
] as const satisfies ReadonlyArray<{ kind: GatewayRoute['kind']; plural: string }>;
export const GATEWAY_API_PATH = '/apis/gateway.networking.k8s.io/v1';
const GATEWAY_RECHECK_MS = 30_000;

interface Watched<T extends KubernetesObject> {
  name: string;
  informer: Informer<T>;
  listed: boolean;
  downSince: number | null;
  restartTimer: NodeJS.Timeout | null;
  failures: number;
  // A start() in flight (first list or a restart): close() waits for it and stops again, since
  // client-node opens the watch after its list without checking whether stop() came meanwhile.
  starting: Promise<void> | null;
  // Not needed to serve snapshots (Nodes only give sidecars their zone): readiness does not wait for it.
  optional?: boolean;
  // The status of the last failure (403: RBAC says no, 404: not served), which ends an optional informer's retries.
  lastStatus?: number;
  // A Gateway API route informer: a 404 or 403 means "no routes" (checked again later), not a failure.
  route?: boolean;
  // Set while the route API is not served or not allowed: the status that said so, and the next look.
  unavailable?: { status: number; recheck: NodeJS.Timeout | null } | null;
}

export const ZONE_LABEL = 'topology.kubernetes.io/zone';

const BACKOFF_BASE_MS = 200;
const COALESCE_MS = 5;
// Restarts are cheap (they resume from the last resourceVersion; only a 410 relists), so the
// ceiling stays low: after an API outage the watches are back within seconds of its end.
const BACKOFF_MAX_MS = 8_000;
// A list of a large cluster takes seconds; one that takes minutes is stuck.
const LIST_TIMEOUT_MS = 120_000;
// A write that meets a conflict (409) reads again, at most this many times in all.
const WRITE_ATTEMPTS = 3;

export class KubernetesSource {
  private readonly opts: KubernetesSourceOptions;
  private readonly core: CoreV1Api;
  private readonly services = new Map<string, V1Service>();
  private readonly slices = new Map<string, Map<string, V1EndpointSlice>>();
  private readonly sliceOwner = new Map<string, string>();
  private readonly configMaps = new Map<string, V1ConfigMap>();
  // routeKey -> the route as last seen (copied into topology.routes at the next flush).
  private readonly routeObjs = new Map<string, GatewayRoute>();
  private readonly statusWriter: RouteStatusWriter;
  // Node name -> its topology.kubernetes.io/zone label ('' without one).
  private readonly nodeZones = new Map<string, string>();
  // App key -> keys of the mesh ConfigMaps labelled for it (normally one).
  private readonly configMapsByApp = new Map<string, Set<string>>();
  private readonly topology: Topology;
  private readonly dependents = new Map<string, Set<string>>();
  private readonly appErrors = new Map<string, string>();
  // App key -> the end of its queue of writes (see write()).
  private readonly writes = new Map<string, Promise<void>>();
  private dirtyServices = new Set<string>();
  private dirtyApps = new Set<string>();
  private dirtyRoutes = new Set<string>();
  private flushScheduled = false;
  private flushTimer: NodeJS.Timeout | null = null;
  private lastFlushAt = -Infinity;
  private started = false;
  private stopped = false;
  private readonly watched: Array<
    Watched<V1Service> | Watched<V1EndpointSlice> | Watched<V1ConfigMap> | Watched<V1Node> | Watched<KubernetesObject>
  > = [];

  constructor(opts: KubernetesSourceOptions) {
    this.opts = opts;
    this.core = opts.kubeConfig.makeApiClient(CoreV1Api);
    this.topology = { clusterDomain: opts.clusterDomain, services: new Map(), apps: new Map(), routes: new Map() };
    const svc = this.informer<V1Service>('/api/v1/services', () => this.list('/api/v1/services'));
    const eps = this.informer<V1EndpointSlice>('/apis/discovery.k8s.io/v1/endpointslices', () =>
      this.list('/apis/discovery.k8s.io/v1/endpointslices'),
    );
    const cms = this.informer<V1ConfigMap>('/api/v1/configmaps', () => this.list('/api/v1/configmaps', APP_LABEL), APP_LABEL);
    svc.on('add', (o) => this.onService(o, false));
    svc.on('update', (o) => this.onService(o, false));
    svc.on('delete', (o) => this.onService(o, true));
    eps.on('add', (o) => this.onSlice(o, false));
    eps.on('update', (o) => this.onSlice(o, false));
    eps.on('delete', (o) => this.onSlice(o, true));
    cms.on('add', (o) => this.onConfigMap(o, false));
    cms.on('update', (o) => this.onConfigMap(o, false));
    cms.on('delete', (o) => this.onConfigMap(o, true));
    const nodes = this.informer<V1Node>('/api/v1/nodes', () => this.list('/api/v1/nodes'));
    nodes.on('add', (o) => this.onNode(o, false));
    nodes.on('update', (o) => this.onNode(o, false));
    nodes.on('delete', (o) => this.onNode(o, true));
    this.watched.push(
      this.watch('services', svc),
      this.watch('endpointslices', eps),
      this.watch('configmaps', cms),
      this.watch('nodes', nodes, true),
    );
    for (const { kind, plural } of ROUTE_KINDS) {
      const path = `${GATEWAY_API_PATH}/${plural}`;
      const inf = this.informer<KubernetesObject>(path, () => this.list(path));
      inf.on('add', (o) => this.onRoute(kind, o, false));
      inf.on('update', (o) => this.onRoute(kind, o, false));
      inf.on('delete', (o) => this.onRoute(kind, o, true));
      const w = this.watch(plural, inf);
      w.route = true;
      this.watched.push(w);
    }
    this.statusWriter = new RouteStatusWriter({
      log: opts.log,
      routeStatuses: opts.routeStatuses ?? routeStatuses,
      send: (method, path, body) => this.send(method, path, body),
      current: (key) => this.routeObjs.get(key),
      onWritten: (key, obj, sentVersion) => this.onStatusWritten(key, obj, sentVersion),
    });
  }

  /**
   * A list as plain JSON, authenticated as client-node's own calls are. client-node's typed list
   * runs every field of every object through its ObjectSerializer: for 100,000 endpoints that was
   * most of the CPU to ready. Watch events arrive as plain JSON too, so every object has one shape.
   */
  private async list(path: string, labelSelector?: string): Promise<{ items: unknown[]; metadata?: { resourceVersion?: string } }> {
    const kc = this.opts.kubeConfig;
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const url = new URL(cluster.server.replace(/\/+$/, '') + path);
    if (labelSelector) url.searchParams.set('labelSelector', labelSelector);
    const ctx = new RequestContext(url.toString(), HttpMethod.GET);
    await kc.applySecurityAuthentication(ctx);
    const res = await fetch(url, {
      headers: { ...ctx.getHeaders(), accept: 'application/json' },
      dispatcher: ctx.getDispatcher(),
      signal: AbortSignal.timeout(LIST_TIMEOUT_MS),
    });
    const text = await res.text();
    if (res.status !== 200) {
      let message = text.slice(0, 300);
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? message;
      } catch {
        /* not a Status object */
      }
      throw Object.assign(new Error(`list ${path}: ${res.status} ${message}`), { statusCode: res.status, code: res.status });
    }
    const list = JSON.parse(text) as { items?: unknown[]; metadata?: { resourceVersion?: string } };
    return { items: list.items ?? [], metadata: list.metadata };
  }

  /** One request to the API server with a JSON body, authenticated as the lists are: its status and parsed body. */
  private async send(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
    const kc = this.opts.kubeConfig;
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    const url = new URL(cluster.server.replace(/\/+$/, '') + path);
    const ctx = new RequestContext(url.toString(), method === 'PUT' ? HttpMethod.PUT : HttpMethod.GET);
    await kc.applySecurityAuthentication(ctx);
    const headers: Record<string, string> = { ...ctx.getHeaders(), accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      dispatcher: ctx.getDispatcher(),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let json: unknown = text;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, json };
  }

  /**
   * makeInformer() with one change: the informer's own reconnect delay (after a clean end of a
   * watch) never ends once we stopped, since stop() does not cancel it and the watch would open anyway.
   */
  private informer<T extends KubernetesObject>(path: string, list: () => Promise<unknown>, labelSelector?: string): Informer<T> {
    const delayFn = (ms: number) =>
      new Promise<void>((resolve) => {
        setTimeout(() => {
          if (!this.stopped) resolve();
        }, ms).unref();
      });
    return new ListWatch<T>(
      path,
      new StoppableWatch(this.opts.kubeConfig, () => this.stopped),
      list as ListPromise<T>,
      false,
      labelSelector,
      undefined,
      { delayFn },
    );
  }

  private watch<T extends KubernetesObject>(name: string, informer: Informer<T>, optional = false): Watched<T> {
    const w: Watched<T> = { name, informer, listed: false, downSince: null, restartTimer: null, failures: 0, starting: null, optional };
    // client-node's informer stops after any error but 410 (which it handles by relisting): restart it.
    informer.on('error', (err?: unknown) => this.onWatchError(w, err));
    return w;
  }

  /** informer.start(), remembered so close() can wait for it. */
  private startInformer(w: Watched<KubernetesObject>): Promise<void> {
    const p = w.informer.start().finally(() => {
      if (w.starting === p) w.starting = null;
    });
    w.starting = p;
    return p;
  }

  /** Starts every informer; resolves once each has listed once (the first full state). */
  async start(): Promise<void> {
    for (const w of this.watched) if (w.optional) void this.startOne(w as Watched<KubernetesObject>);
    await Promise.all(this.watched.filter((w) => !w.optional).map((w) => this.startOne(w as Watched<KubernetesObject>)));
    this.started = true;
    this.flush();
  }

  private async startOne(w: Watched<KubernetesObject>): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const before = w.failures;
      await this.startInformer(w);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by stop() while startInformer was awaited (TypeScript keeps the narrowing across await)
      if (this.stopped) return;
      if (w.failures === before) {
        w.listed = true;
        w.downSince = null;
        w.failures = 0;
        if (w.route && w.unavailable) {
          w.unavailable = null;
          this.opts.log.info({ informer: w.name }, `the Gateway API serves ${w.name} now: watching them`);
        }
        return;
      }
      if (w.route && (w.lastStatus === 403 || w.lastStatus === 404)) {
        this.routesUnavailable(w, w.lastStatus);
        return;
      }
      if (w.optional && (w.lastStatus === 403 || w.lastStatus === 404)) {
        this.opts.log.warn(
          { informer: w.name, status: w.lastStatus },
          `cannot list ${w.name}; going on without them (sidecars with --node and no --zone get no zone: give discover ${w.name} get, list, watch)`,
        );
        return;
      }
      // The first list failed; wait out the backoff and try again.
      await new Promise((r) => setTimeout(r, this.backoff(w.failures)).unref());
    }
  }

  private backoff(failures: number): number {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 10));
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  private onWatchError(w: Watched<KubernetesObject>, err: unknown): void {
    // Every stop() is followed by an AbortError callback: not a failure.
    if (this.stopped) return;
    w.failures++;
    w.downSince ??= Date.now();
    const e = err as { message?: string; statusCode?: number; code?: number } | undefined;
    w.lastStatus = e?.statusCode ?? e?.code;
    if (w.route && (w.lastStatus === 404 || w.lastStatus === 403)) {
      // The first list (startOne) says so itself; later, the CRD was deleted or the permission taken away.
      if (w.listed) this.routesUnavailable(w, w.lastStatus);
      return;
    }
    this.opts.log.warn(
      { informer: w.name, error: e?.message ?? String(err), status: e?.statusCode ?? e?.code, failures: w.failures },
      'watch failed; restarting with backoff',
    );
    if (!w.listed || w.restartTimer) return;
    w.restartTimer = setTimeout(() => {
      w.restartTimer = null;
      if (this.stopped) return;
      const before = w.failures;
      this.startInformer(w).then(
        () => {
          if (this.stopped) return;
          if (w.failures === before) {
            w.downSince = null;
            w.failures = 0;
            this.opts.log.info({ informer: w.name }, 'watch resumed');
          }
        },
        (error: unknown) => this.onWatchError(w, error),
      );
    }, this.backoff(w.failures));
  }

  /**
   * Ready once every informer listed (a route API that is not served counts as listed: no routes), and
   * while none has been down longer than staleAfterMs. `details`: what works in part (no routes).
   */
  health(): { ready: boolean; message: string; details?: string[] } {
    const details = this.routeDetails();
    const notListed = this.watched.filter((w) => !w.listed && !w.optional && !w.unavailable).map((w) => w.name);
    if (notListed.length > 0 || !this.started)
      return { ready: false, message: `waiting for the first list of ${notListed.join(', ') || 'the informers'}`, details };
    const now = Date.now();
    const stale = this.watched
      .filter((w) => !w.optional && !w.unavailable && w.downSince !== null && now - w.downSince > this.opts.staleAfterMs)
      .map((w) => w.name);
    if (stale.length > 0)
      return { ready: false, message: `watch of ${stale.join(', ')} down for more than ${this.opts.staleAfterMs} ms`, details };
    return { ready: true, message: 'ready', details };
  }

  private routeDetails(): string[] | undefined {
    const off = this.watched.filter((w) => w.route && w.unavailable);
    if (off.length === 0) return undefined;
    const why = (status: number) =>
      status === 404 ? 'not served: the Gateway API CRDs are not installed' : "forbidden: discover's RBAC lacks get, list, watch on them";
    return [
      `no Gateway API routes: ${off.map((w) => `${w.name} ${w.unavailable!.status} (${why(w.unavailable!.status)})`).join(', ')}; checking again every ${Math.round(this.recheckMs / 1000)} s`,
    ];
  }

  private get recheckMs(): number {
    return this.opts.gatewayRecheckMs ?? GATEWAY_RECHECK_MS;
  }

  /**
   * A route API answered 404 (its CRD is not installed, or was deleted) or 403: discover goes on without
   * those routes, says so once (log and /readyz details), and looks again every recheckMs.
   */
  private routesUnavailable(w: Watched<KubernetesObject>, status: number): void {
    if (this.stopped) return;
    const first = !w.unavailable;
    if (w.unavailable?.recheck) clearTimeout(w.unavailable.recheck);
    w.unavailable = { status, recheck: null };
    if (w.restartTimer) {
      clearTimeout(w.restartTimer);
      w.restartTimer = null;
    }
    if (w.listed) {
      // Served before: the routes went with their CRD (or can no longer be seen).
      w.listed = false;
      void w.informer.stop();
      const kind = ROUTE_KINDS.find((k) => k.plural === w.name)!.kind;
      for (const key of this.routeObjs.keys()) if (key.startsWith(`${kind}/`)) this.markRoute(key, undefined);
    }
    w.downSince = null;
    w.failures = 0;
    if (first) {
      this.opts.log.warn(
        { informer: w.name, status },
        status === 404
          ? `${w.name} are not served (the Gateway API CRDs are not installed): going on without them; checking again every ${Math.round(this.recheckMs / 1000)} s`
          : `${w.name} may not be listed (403): going on without them (give discover get, list, watch on ${w.name}.gateway.networking.k8s.io); checking again every ${Math.round(this.recheckMs / 1000)} s`,
      );
    }
    const timer = setTimeout(() => {
      if (this.stopped || w.unavailable?.recheck !== timer) return;
      w.unavailable.recheck = null;
      void this.startOne(w);
    }, this.recheckMs);
    timer.unref();
    w.unavailable.recheck = timer;
  }

  private onService(svc: V1Service, deleted: boolean): void {
    const key = serviceKeyOf(svc);
    if (deleted) this.services.delete(key);
    else this.services.set(key, svc);
    this.markService(key);
  }

  private onSlice(slice: V1EndpointSlice, deleted: boolean): void {
    const sliceKey = serviceKeyOf(slice);
    const owner = sliceServiceKey(slice);
    const previous = this.sliceOwner.get(sliceKey);
    if (previous && previous !== owner) {
      this.slices.get(previous)?.delete(sliceKey);
      this.markService(previous);
    }
    if (deleted || !owner) {
      this.sliceOwner.delete(sliceKey);
      if (owner) {
        this.slices.get(owner)?.delete(sliceKey);
        this.markService(owner);
      }
      return;
    }
    this.sliceOwner.set(sliceKey, owner);
    let m = this.slices.get(owner);
    if (!m) this.slices.set(owner, (m = new Map()));
    m.set(sliceKey, slice);
    this.markService(owner);
  }

  private onNode(node: V1Node, deleted: boolean): void {
    const name = node.metadata?.name ?? '';
    if (deleted) this.nodeZones.delete(name);
    else this.nodeZones.set(name, node.metadata?.labels?.[ZONE_LABEL] ?? '');
    // The informer caches every Node it saw; only the name and labels matter here, and a Node's
    // status (images, conditions) is tens of KB: drop the rest from the cached object.
    delete node.status;
    delete node.spec;
    if (node.metadata) delete node.metadata.managedFields;
  }

  /** A node's zone label ('' without one); undefined for a node not (yet) seen. */
  nodeZone(name: string): string | undefined {
    return this.nodeZones.get(name);
  }

  private onConfigMap(cm: V1ConfigMap, deleted: boolean): void {
    const key = serviceKeyOf(cm);
    const prev = this.configMaps.get(key);
    const ns = cm.metadata?.namespace ?? 'default';
    const prevApp = prev?.metadata?.labels?.[APP_LABEL];
    if (prevApp) {
      const k = appKey(ns, prevApp);
      this.configMapsByApp.get(k)?.delete(key);
      if (this.configMapsByApp.get(k)?.size === 0) this.configMapsByApp.delete(k);
      this.markApp(k);
    }
    if (deleted) {
      this.configMaps.delete(key);
      return;
    }
    this.configMaps.set(key, cm);
    const app = cm.metadata?.labels?.[APP_LABEL];
    if (app) {
      const k = appKey(ns, app);
      let set = this.configMapsByApp.get(k);
      if (!set) this.configMapsByApp.set(k, (set = new Set()));
      set.add(key);
      this.markApp(k);
    }
  }

  private onRoute(kind: GatewayRoute['kind'], obj: KubernetesObject, deleted: boolean): void {
    const md = obj.metadata ?? {};
    const key = routeKey(kind, md.namespace ?? 'default', md.name ?? '');
    const prev = this.routeObjs.get(key);
    if (deleted) {
      if (prev) this.markRoute(key, undefined);
      return;
    }
    const raw = obj as KubernetesObject & { spec?: Record<string, unknown>; status?: Record<string, unknown> };
    if (
      prev &&
      prev.metadata.uid === md.uid &&
      prev.metadata.generation === md.generation &&
      JSON.stringify(prev.spec) === JSON.stringify(raw.spec ?? {})
    ) {
      // Only the status (a controller's write, shoal's own included) or the metadata changed: nothing
      // that shapes a snapshot, so no apply. Kept in place for the next status comparison.
      prev.status = raw.status;
      prev.metadata.resourceVersion = md.resourceVersion;
      return;
    }
    this.markRoute(key, {
      apiVersion: raw.apiVersion ?? 'gateway.networking.k8s.io/v1',
      kind,
      metadata: {
        name: md.name ?? '',
        namespace: md.namespace ?? 'default',
        generation: md.generation,
        uid: md.uid,
        resourceVersion: md.resourceVersion,
        // The API's text (lists and watch events here are plain JSON); a Date, should one come, as that text.
        creationTimestamp: creationText(md.creationTimestamp as unknown),
      },
      spec: raw.spec ?? {},
      status: raw.status,
    });
  }

  private markRoute(key: string, route: GatewayRoute | undefined): void {
    if (route) this.routeObjs.set(key, route);
    else this.routeObjs.delete(key);
    this.dirtyRoutes.add(key);
    this.schedule();
  }

  /** A status write the API accepted: its answer becomes the cached object, unless the watch brought a newer one. */
  private onStatusWritten(
    key: string,
    obj: { metadata?: { resourceVersion?: string }; status?: Record<string, unknown> },
    sentVersion: string | undefined,
  ): void {
    const r = this.routeObjs.get(key);
    if (!r || r.metadata.resourceVersion !== sentVersion) return;
    r.status = obj.status;
    r.metadata.resourceVersion = obj.metadata?.resourceVersion;
  }

  private markService(key: string): void {
    this.dirtyServices.add(key);
    this.schedule();
  }

  private markApp(key: string): void {
    this.dirtyApps.add(key);
    this.schedule();
  }

  private schedule(): void {
    if (this.flushScheduled || !this.started) return;
    this.flushScheduled = true;
    // One apply per burst: a relist, a multi-slice update or pods of a rolling update landing
    // together become a single change. The first event after a quiet spell applies at the next
    // timer tick (events delivered together still land in it); events within COALESCE_MS of the
    // last apply wait for the rest of that window, so a long burst costs one apply per window.
    const sinceLast = performance.now() - this.lastFlushAt;
    this.flushTimer = setTimeout(
      () => {
        this.flushTimer = null;
        this.flushScheduled = false;
        this.lastFlushAt = performance.now();
        this.flush();
      },
      sinceLast >= COALESCE_MS ? 0 : COALESCE_MS - sinceLast,
    );
  }

  private flush(): void {
    const services = this.dirtyServices;
    const apps = this.dirtyApps;
    const routes = this.dirtyRoutes;
    this.dirtyServices = new Set();
    this.dirtyApps = new Set();
    this.dirtyRoutes = new Set();
    if (services.size === 0 && apps.size === 0 && routes.size === 0) return;
    const topologyRoutes = this.topology.routes!;
    // Parent Services of the routes that changed, before and after: their callers are affected.
    const routeParentKeys = new Set<string>();
    for (const key of routes) {
      const was = topologyRoutes.get(key);
      const r = this.routeObjs.get(key);
      if (was === r) continue;
      for (const p of was ? routeParents(was) : []) routeParentKeys.add(p);
      for (const p of r ? routeParents(r) : []) routeParentKeys.add(p);
      if (r) topologyRoutes.set(key, r);
      else topologyRoutes.delete(key);
    }
    for (const key of services) {
      const svc = this.services.get(key);
      if (svc) this.topology.services.set(key, serviceModel(svc, this.slices.get(key)?.values() ?? []));
      else this.topology.services.delete(key);
    }
    const affected = new Set<string>();
    for (const key of apps) {
      this.rebuildApp(key);
      affected.add(key);
    }
    for (const key of services) for (const a of this.dependents.get(key) ?? []) affected.add(a);
    // Callers of a route's parent Services, when the route changed or a Service it sends to did.
    if (topologyRoutes.size > 0) for (const p of parentsRoutingTo(this.topology, services)) routeParentKeys.add(p);
    for (const p of routeParentKeys) for (const a of this.dependents.get(p) ?? []) affected.add(a);
    this.opts.onTopology(this.topology, affected);
    // Only the routes whose parents, backends or selves changed have their status computed again.
    if (topologyRoutes.size > 0 || routes.size > 0)
      this.statusWriter.reconcile(this.topology, routesTouched(this.topology, routes, new Set([...routeParentKeys, ...services])));
  }

  /** An app's mesh ConfigMaps, oldest first (the first one is in force; client-node parses the timestamps to Dates). */
  private configMapsOf(key: string): V1ConfigMap[] {
    const created = (c: V1ConfigMap) => new Date(c.metadata?.creationTimestamp ?? 0).getTime() || 0;
    return [...(this.configMapsByApp.get(key) ?? [])]
      .map((k) => this.configMaps.get(k)!)
      .sort((a, b) => created(a) - created(b) || String(a.metadata?.name).localeCompare(String(b.metadata?.name)));
  }

  /** Recomputes one app from its mesh ConfigMaps. An invalid config keeps the last good one. */
  private rebuildApp(key: string): void {
    const ns = key.split('/')[0];
    const candidates = this.configMapsOf(key);
    const prev = this.topology.apps.get(key);
    if (candidates.length === 0) {
      this.setApp(key, undefined);
      this.appErrors.delete(key);
      return;
    }
    const problems: string[] = [];
    for (const extra of candidates.slice(1)) {
      problems.push(
        `ConfigMap ${ns}/${extra.metadata?.name} ignored: app ${key} already has mesh plugin ${candidates[0].metadata?.labels?.[PLUGIN_LABEL] ?? 'mesh'} (one per app)`,
      );
    }
    const { app, error } = appFromConfigMap(candidates[0]);
    if (error) {
      this.opts.onConfigError(error);
      this.appErrors.set(key, error);
      this.opts.log.error({ app: key, error }, 'mesh config refused; the app keeps its last good snapshot');
      if (prev) this.setApp(key, { ...prev, problems: [`mesh config refused, last good config in force: ${error}`, ...problems] });
      return;
    }
    this.appErrors.delete(key);
    this.setApp(key, { ...app!, problems });
  }

  private setApp(key: string, app: App | undefined): void {
    const prev = this.topology.apps.get(key);
    for (const d of prev?.config.dependencies ?? []) this.dependents.get(serviceKey(d.namespace, d.service))?.delete(key);
    if (!app) {
      this.topology.apps.delete(key);
      return;
    }
    this.topology.apps.set(key, app);
    for (const d of app.config.dependencies) {
      const sk = serviceKey(d.namespace, d.service);
      let s = this.dependents.get(sk);
      if (!s) this.dependents.set(sk, (s = new Set()));
      s.add(key);
    }
  }

  /** The service accounts that may read an app's snapshot: the one named like the app, and those its ConfigMap lists. */
  readers(namespace: string, app: string): string[] {
    return [app, ...(this.topology.apps.get(appKey(namespace, app))?.readers ?? [])];
  }

  /** The app's base_normal options, which the injector passes to its sidecar as env vars. */
  pluginEnv(namespace: string, app: string): Record<string, string> | undefined {
    return this.topology.apps.get(appKey(namespace, app))?.config.env;
  }

  /** The listen_port choices of the app's base_ports (container port -> listen port), for the injector. */
  explicitListenPorts(namespace: string, app: string): Map<number, number> | undefined {
    const a = this.topology.apps.get(appKey(namespace, app));
    if (!a) return undefined;
    return new Map(a.config.ports.filter((p) => p.listenPort !== null).map((p) => [p.port, p.listenPort as number]));
  }

  /** Why an app has no snapshot, when its only config was refused. */
  refusal(namespace: string, app: string): string | undefined {
    return this.appErrors.get(appKey(namespace, app));
  }

  /**
   * Writes an app's mesh config to its ConfigMap (created if missing). Resolves once the API
   * accepted it. Writes to one app run one at a time (so the last one answered is the one stored),
   * and each replaces the object at the resourceVersion it read: a concurrent writer elsewhere (a
   * replica, kubectl) makes it read again rather than be overwritten.
   */
  readonly write = (namespace: string, app: string, pluginId: string, spec: ResourceSpec): Promise<void> => {
    const key = appKey(namespace, app);
    const run = (this.writes.get(key) ?? Promise.resolve()).then(() => this.writeNow(namespace, app, pluginId, spec));
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.writes.set(key, settled);
    void settled.then(() => {
      if (this.writes.get(key) === settled) this.writes.delete(key);
    });
    return run;
  };

  private async writeNow(namespace: string, app: string, pluginId: string, spec: ResourceSpec): Promise<void> {
    // The plugin id is stored as a label value, which Kubernetes bounds more tightly than the path.
    if (!LABEL_VALUE.test(pluginId))
      throw new WriteRefused(
        400,
        `plugin_id ${JSON.stringify(pluginId)} is not a valid Kubernetes label value: expected at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit`,
      );
    const data = JSON.stringify(spec);
    const fallbackName = `shoal-mesh-${app}`;
    for (let attempt = 1; ; attempt++) {
      const name = this.configMapsOf(appKey(namespace, app))[0]?.metadata?.name ?? fallbackName;
      try {
        let fresh: V1ConfigMap | undefined;
        try {
          fresh = await this.core.readNamespacedConfigMap({ name, namespace });
        } catch (err) {
          if ((err as { code?: number }).code !== 404) throw err;
        }
        if (fresh) {
          const labels = fresh.metadata?.labels ?? {};
          if (labels[APP_LABEL] !== app)
            throw new WriteRefused(409, `ConfigMap ${namespace}/${name} exists and is not labelled ${APP_LABEL}=${app}; it is left alone`);
          if ((labels[PLUGIN_LABEL] ?? 'mesh') !== pluginId)
            throw new WriteRefused(
              409,
              `app ${namespace}/${app} already has mesh plugin ${labels[PLUGIN_LABEL] ?? 'mesh'}; an app has at most one`,
            );
          fresh.data = { ...(fresh.data ?? {}), [PLUGIN_CONFIG_KEY]: data };
          fresh.metadata!.labels = { ...labels, [APP_LABEL]: app, [PLUGIN_LABEL]: pluginId };
          // fresh.metadata.resourceVersion makes this a compare-and-swap: 409 if it changed since the read.
          await this.core.replaceNamespacedConfigMap({ name, namespace, body: fresh });
        } else {
          await this.core.createNamespacedConfigMap({
            namespace,
            body: {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              metadata: { name, namespace, labels: { [APP_LABEL]: app, [PLUGIN_LABEL]: pluginId } },
              data: { [PLUGIN_CONFIG_KEY]: data },
            },
          });
        }
        return;
      } catch (err) {
        // A concurrent writer won (409 on replace, or on a create racing another): read again.
        if ((err as { code?: number }).code !== 409 || err instanceof WriteRefused) throw err;
        if (attempt >= WRITE_ATTEMPTS)
          throw new WriteRefused(
            409,
            `ConfigMap ${namespace}/${name} kept changing during the write (${WRITE_ATTEMPTS} attempts); try again`,
          );
      }
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    for (const w of this.watched) {
      if (w.restartTimer) clearTimeout(w.restartTimer);
      if (w.unavailable?.recheck) clearTimeout(w.unavailable.recheck);
      await w.informer.stop();
    }
    await this.statusWriter.close();
    // A start() in flight opens its watch after the list even when stop() came meanwhile: let it
    // finish (a list is bounded by its request timeout) and stop once more.
    for (const w of this.watched) {
      while (w.starting) {
        await w.starting.catch(() => undefined);
        await w.informer.stop();
      }
    }
  }
}

/**
 * A Watch that opens nothing once the source stopped. client-node's informer reopens its watch on
 * its own after a clean end or a 410 relist; its stop() aborts only a request it already holds, so
 * a stop() during that list, or while the watch request is connecting, would leave a watch open
 * after close(). The watch is aborted at once in both cases (no done callback: nothing to restart).
 */
class StoppableWatch extends Watch {
  private readonly isStopped: () => boolean;

  constructor(kc: KubeConfig, isStopped: () => boolean) {
    super(kc);
    this.isStopped = isStopped;
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: any, watchObj?: any) => void,
    done: (err: any) => void,
  ): Promise<AbortController> {
    if (this.isStopped()) {
      const aborted = new AbortController();
      aborted.abort();
      return aborted;
    }
    const controller = await super.watch(path, queryParams, callback, done);
    if (this.isStopped()) controller.abort();
    return controller;
  }
}

function creationText(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (t instanceof Date) return t.toISOString().replace(/\.000Z$/, 'Z');
  return undefined;
}

/** A kubeconfig file, or the pod's service account (token, CA and namespace under pathPrefix). */
export function loadKubeConfig(kubeconfig: string | undefined, pathPrefix?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfig) kc.loadFromFile(kubeconfig);
  else kc.loadFromCluster(pathPrefix);
  return kc;
}
