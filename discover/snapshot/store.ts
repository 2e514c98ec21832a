// snapshotStore: every app's snapshot, pre-serialized, and the long-poll waiters it wakes on change.
import type { ServerResponse } from 'node:http';
import type { Snapshot } from '../../shared/snapshot.ts';
import type { Logger } from '../../shared/log.ts';
import type { DiscoverMetrics } from '../metrics.ts';
import { appKey, type App, type Topology } from '../topology/model.ts';
import { buildSnapshotBody, inputsMemo, snapshotInputs } from './builder.ts';
import { LongPollRegistry, type Waiter } from './longPoll.ts';
import type { RoutesCache } from '../gateway/compile.ts';
import type { FanOutWriters } from '../http/fanOut.ts';
import { AnswerBatches, FAN_OUT_MIN, prebuild, sendPrebuilt, type Prebuilt } from '../http/prebuiltResponse.ts';

/** Past this many entries (apps come and go between full applies) the routes cache is made again. */
const ROUTES_CACHE_MAX = 100_000;

export interface SnapshotEntry {
  app: App;
  snapshot: Snapshot;
  body: Buffer;
  etag: string;
  response: Prebuilt;
  notModified: Prebuilt;
  inputs: string;
  resource: Buffer;
}

export interface ApplyResult {
  rebuilt: number;
  changed: number;
  removed: number;
  woken: number;
}

export class SnapshotStore {
  private entries = new Map<string, SnapshotEntry>();
  private readonly waiters: LongPollRegistry;
  /**
   * Gateway API routes as compiled for each caller namespace and Service port, kept across applies while
   * their inputs are the same objects (builder.ts routesFor): a change compiles only the routes it touches.
   * Made again on each full apply (from the entries still in use), so entries of gone apps do not pile up.
   */
  private routesCache: RoutesCache = new Map();
  private readonly metrics: DiscoverMetrics;
  private readonly log: Logger;
  topology: Topology | null = null;
  /** Workload identity (docs/identity.md): the mesh CA's trust domain and bundle, added to every topology applied. */
  identity: Topology['identity'];
  /** Writer threads that share out the answers of a change that wakes many waiters (fanOut.ts). */
  fanOut: FanOutWriters | undefined;

  constructor(metrics: DiscoverMetrics, log: Logger) {
    this.metrics = metrics;
    this.log = log;
    this.waiters = new LongPollRegistry((w) => this.expire(w));
    metrics.countWaiters(() => this.waiters.size);
  }

  get ready(): boolean {
    return this.topology !== null;
  }

  get(namespace: string, app: string): SnapshotEntry | undefined {
    return this.entries.get(appKey(namespace, app));
  }

  /**
   * Applies a new topology: rebuilds only the snapshots whose inputs changed and wakes only their
   * waiters. A source that knows which apps a change can touch passes them as `affected`; the
   * other apps are then not even compared.
   */
  apply(topology: Topology, affected?: Iterable<string>): ApplyResult {
    if (this.identity && !topology.identity) topology = { ...topology, identity: this.identity };
    const end = this.metrics.rebuildSeconds.startTimer();
    const result: ApplyResult = { rebuilt: 0, changed: 0, removed: 0, woken: 0 };
    let next: Map<string, SnapshotEntry>;
    let candidates: Iterable<[string, App | undefined]>;
    if (affected === undefined || this.topology === null) {
      next = new Map();
      candidates = topology.apps;
    } else {
      next = this.entries;
      candidates = [...new Set(affected)].map((k) => [k, topology.apps.get(k)] as [string, App | undefined]);
    }
    const removedKeys: string[] = [];
    let memo;
    if (next === this.entries && this.routesCache.size < ROUTES_CACHE_MAX) memo = inputsMemo(this.routesCache);
    else {
      const previous = this.routesCache;
      this.routesCache = new Map();
      memo = inputsMemo(this.routesCache, previous);
    }
    // The waiters this change wakes, over every app it rebuilt, and each one's answer. A change of a
    // Service that many apps depend on wakes a few waiters of each, and together they are enough to
    // share out to the writer threads (fanOut.ts): they get them in batches as the apps are built,
    // so the first apps' sidecars hear while the event loop builds the rest, and woken.finish()
    // joins them all (it must run before apply returns: no socket a writer holds may be closed).
    //
    // Answering before the loop ends keeps the ordering guarantee (a woken sidecar's next poll sees
    // the committed state): an app's entry is set in `next` before its waiters are added, and no
    // poll can be read, let alone served, before apply returns (it runs synchronously; the writers
    // only write bytes). On the incremental path `next` is this.entries itself; on the full path it
    // is a new map, committed to this.entries below, still before apply returns, so no poll is
    // ever served from the old map after its sidecar got a newer answer. (If a build throws, the
    // answers already handed out stand and the rest of the woken waiters are answered too; on the
    // full path the store then keeps its old map, and such a sidecar's next poll gets that, with
    // its own version: it follows what the store holds.)
    const woken = new AnswerBatches(this.fanOut);
    try {
      for (const [key, app] of candidates) {
        if (!app) {
          if (next.delete(key)) removedKeys.push(key);
          continue;
        }
        const inputs = snapshotInputs(app, topology, memo);
        const prev = this.entries.get(key);
        if (prev && prev.inputs === inputs) {
          next.set(key, prev);
          continue;
        }
        result.rebuilt++;
        const built = buildSnapshotBody(app, topology, memo);
        const snapshot = built.snapshot;
        // The same App object (a change of a Service it depends on) has the same resource.
        const resource = prev && prev.app === app ? prev.resource : Buffer.from(JSON.stringify(app.spec));
        if (prev && prev.snapshot.version === snapshot.version) {
          next.set(key, { ...prev, app, inputs, resource });
          continue;
        }
        const body = Buffer.from(built.body);
        const etag = `"${snapshot.version}"`;
        const entry: SnapshotEntry = {
          app,
          snapshot,
          body,
          etag,
          inputs,
          response: prebuild(
            200,
            'OK',
            [
              'content-type',
              'application/json; charset=utf-8',
              'content-length',
              String(body.length),
              'etag',
              etag,
              'cache-control',
              'no-cache',
            ],
            body,
          ),
          notModified: prebuild(304, 'Not Modified', ['etag', etag, 'cache-control', 'no-cache'], Buffer.alloc(0)),
          resource,
        };
        next.set(key, entry);
        if (snapshot.status.errors.length > 0) this.log.warn({ app: key, errors: snapshot.status.errors }, 'snapshot built with problems');
        if (prev) {
          result.changed++;
          for (const w of this.waiters.take(key)) woken.add(w.res, entry.response);
          woken.flush();
        }
      }
      if (next !== this.entries) for (const k of this.entries.keys()) if (!next.has(k)) removedKeys.push(k);
      this.entries = next;
      this.topology = topology;
    } finally {
      woken.finish();
    }
    if (woken.size > 0) {
      this.metrics.snapshotsServed.inc({ result: 'woken' }, woken.size);
      result.woken = woken.size;
    }
    for (const key of removedKeys) {
      result.removed++;
      for (const w of this.waiters.take(key)) this.answerGone(w.res);
    }
    this.metrics.apps.set(next.size);
    end();
    return result;
  }

  /** Holds a long-poll request until the app's snapshot changes or waitMs passes. */
  wait(namespace: string, app: string, res: ServerResponse, waitMs: number): void {
    this.waiters.add(appKey(namespace, app), res, waitMs);
    // The writer threads boot once there are enough waiters to share out, before a change needs them.
    if (this.fanOut !== undefined && !this.fanOut.isStarted && this.waiters.size >= FAN_OUT_MIN) this.fanOut.start();
  }

  waiting(namespace: string, app: string): number {
    return this.waiters.waiting(appKey(namespace, app));
  }

  private expire(w: Waiter): void {
    if (w.res.destroyed) return;
    const entry = this.entries.get(w.key);
    if (!entry) return this.answerGone(w.res);
    sendPrebuilt(w.res, entry.notModified);
    this.metrics.snapshotsServed.inc({ result: 'expired' });
  }

  private answerGone(res: ServerResponse): void {
    if (res.destroyed) return;
    const body = JSON.stringify({ error: 'not_found', message: 'the app is no longer in the topology' });
    res.writeHead(404, ['content-type', 'application/json; charset=utf-8', 'content-length', String(Buffer.byteLength(body))]);
    res.end(body);
    this.metrics.snapshotsServed.inc({ result: 'not_found' });
  }

  close(): void {
    this.waiters.close();
    void this.fanOut?.close();
    this.fanOut = undefined;
  }
}
