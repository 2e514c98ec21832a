// The static source: a topology YAML file, watched. An invalid edit is refused and the last good state stays.
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile, rename, open, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseDocument } from 'yaml';
import { ConfigError, type ResourceSpec } from '../../shared/meshConfig.ts';
import { WriteRefused } from '../topology/names.ts';
import type { Logger } from '../../shared/log.ts';
import type { Topology } from '../topology/model.ts';
import { affectedApps, parseStaticTopologyWith, type ParseMemo } from '../topology/staticFile.ts';
import { routeStatuses } from '../gateway/status.ts';

export interface StaticSourceOptions {
  file: string;
  log: Logger;
  /** `affected`: the apps the change can touch (undefined: all of them). */
  onTopology: (t: Topology, affected?: Set<string>) => void;
  onError: (err: Error) => void;
}

const DEBOUNCE_MS = 1;
// A write retried on a file replaced meanwhile gives up after this many reads.
const WRITE_ATTEMPTS = 3;
const ms = (x: number) => Math.round(x * 100) / 100;

export class StaticSource {
  private readonly opts: StaticSourceOptions;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  // The content last read (applied or refused), and the content served.
  private lastHash = '';
  private appliedHash = '';
  // Reloads and writes, one at a time: see write().
  private queue: Promise<void> = Promise.resolve();
  private tmpCounter = 0;
  private current: Topology | null = null;
  private memo: ParseMemo | undefined;
  // The route problems last logged, so an edit elsewhere does not log them again.
  private routeProblems = '';

  constructor(opts: StaticSourceOptions) {
    this.opts = opts;
  }

  /** Loads the file once; throws if it is invalid, so a bad file is refused at start. */
  async start(): Promise<Topology> {
    const text = await readFile(this.opts.file, 'utf8');
    const { topology, memo } = parseStaticTopologyWith(text);
    this.lastHash = this.appliedHash = createHash('sha256').update(text).digest('hex');
    this.commit(topology, memo);
    // Watch the folder: editors and ConfigMap mounts replace the file rather than write into it.
    const name = basename(this.opts.file);
    this.watcher = watch(dirname(this.opts.file), (_event, changed) => {
      if (changed === null || changed === name || changed === '..data') this.schedule();
    });
    this.watcher.on('error', (err) => this.opts.log.error({ err }, 'watching the topology file failed'));
    return topology;
  }

  private schedule(): void {
    if (this.timer) return;
    const seen = performance.now();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload(seen).catch((err: Error) => this.opts.onError(err));
    }, DEBOUNCE_MS);
  }

  /**
   * Reads the file again and applies it if it changed and is valid, after the writes and reloads
   * queued before. `seen`: when the watch reported the change. The change a write of ours makes
   * is seen here too, and skipped: its content is the one already applied (lastHash).
   */
  reload(seen = performance.now()): Promise<void> {
    return this.enqueue(async () => this.reloadNow(seen));
  }

  private reloadNow(seen: number): void {
    const start = performance.now();
    let text: string;
    try {
      // Synchronous: the file is parsed synchronously right after, and a thread-pool hop only adds latency.
      text = readFileSync(this.opts.file, 'utf8');
    } catch (err) {
      // Mid-replace the file can be briefly missing; the next event brings it back.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.opts.onError(err as Error);
      return;
    }
    const hash = createHash('sha256').update(text).digest('hex');
    if (hash === this.lastHash) return;
    let parsed: { topology: Topology; memo: ParseMemo };
    try {
      parsed = parseStaticTopologyWith(text, this.memo);
    } catch (err) {
      this.lastHash = hash;
      this.opts.onError(err as Error);
      return;
    }
    this.lastHash = this.appliedHash = hash;
    // Where an edit's time goes before the snapshots are rebuilt (the apply logs its own time).
    this.opts.log.info(
      { file: this.opts.file, debounceMs: ms(start - seen), readParseMs: ms(performance.now() - start) },
      'topology file read',
    );
    this.commit(parsed.topology, parsed.memo);
  }

  /** Hands a valid topology on, with the apps it can change against the one before. */
  private commit(topology: Topology, memo: ParseMemo): void {
    const affected = affectedApps(this.current, topology);
    this.current = topology;
    this.memo = memo;
    this.opts.onTopology(topology, affected);
    this.logRouteProblems(topology);
  }

  /**
   * A static file has no status to write to: what Kubernetes would show in a route's status (a parentRef
   * port the Service lacks, a backend that does not resolve, a route a GRPCRoute wins over) is logged.
   */
  private logRouteProblems(topology: Topology): void {
    if (!topology.routes || topology.routes.size === 0) {
      this.routeProblems = '';
      return;
    }
    const problems: Array<{ route: string; parent: string; condition: string; reason: string; message: string }> = [];
    for (const [route, status] of routeStatuses(topology)) {
      for (const p of status.parents) {
        for (const c of p.conditions) {
          if (c.status === 'False')
            problems.push({
              route,
              parent: `${p.parentRef.namespace ?? ''}${p.parentRef.namespace ? '/' : ''}${p.parentRef.name}${p.parentRef.port ? `:${p.parentRef.port}` : ''}`,
              condition: c.type,
              reason: c.reason,
              message: c.message,
            });
        }
      }
      if (status.parents.length === 0)
        problems.push({
          route,
          parent: '',
          condition: 'Accepted',
          reason: 'NoMatchingParent',
          message: 'no parentRef names a Service in the topology: the route applies to no caller',
        });
    }
    const text = JSON.stringify(problems);
    if (text === this.routeProblems) return;
    this.routeProblems = text;
    for (const p of problems) this.opts.log.warn(p, 'Gateway API route not fully in force');
  }

  /**
   * Writes one app's mesh config into the file, keeping its comments. Writes and reloads run one at
   * a time (this.queue), so a write's read-modify-write of the file and the state it commits are
   * one step: what a 200 reported is what is on disk and what is served, and a write that fails
   * changes neither. The file is replaced atomically: a temporary file of its own name, fsync,
   * rename, fsync of the folder.
   */
  readonly write = (namespace: string, app: string, pluginId: string, spec: ResourceSpec): Promise<void> =>
    this.enqueue(() => this.writeNow(namespace, app, pluginId, spec));

  private async writeNow(namespace: string, app: string, pluginId: string, spec: ResourceSpec): Promise<void> {
    const file = this.opts.file;
    for (let attempt = 1; ; attempt++) {
      const text = await readFile(file, 'utf8');
      const base = createHash('sha256').update(text).digest('hex');
      if (base !== this.appliedHash) {
        // An edit not applied (not seen yet, or refused): written on top of only if it is valid itself.
        try {
          parseStaticTopologyWith(text, this.memo);
        } catch (err) {
          throw new WriteRefused(
            409,
            `the topology file holds an edit that was refused (${(err as Error).message}); fix the file before writing through the API`,
          );
        }
      }
      const doc = parseDocument(text);
      const apps = (doc.toJS()?.apps ?? []) as Array<{ name?: string; namespace?: string; pluginId?: string }>;
      const index = apps.findIndex((a) => a.name === app && (a.namespace ?? 'default') === namespace);
      if (index >= 0 && (apps[index].pluginId ?? 'mesh') !== pluginId) {
        throw new WriteRefused(
          409,
          `app ${namespace}/${app} already has mesh plugin ${apps[index].pluginId ?? 'mesh'}; an app has at most one`,
        );
      }
      if (index >= 0) doc.setIn(['apps', index, 'config'], doc.createNode(spec));
      else if (doc.hasIn(['apps'])) doc.addIn(['apps'], doc.createNode({ name: app, namespace, pluginId, config: spec }));
      else doc.setIn(['apps'], doc.createNode([{ name: app, namespace, pluginId, config: spec }]));
      const out = doc.toString();
      let parsed: { topology: Topology; memo: ParseMemo };
      try {
        parsed = parseStaticTopologyWith(out, this.memo);
      } catch (err) {
        // The request's own fault (e.g. a name the file does not allow): nothing was written.
        if (err instanceof ConfigError) throw new WriteRefused(400, err.message);
        throw err;
      }
      const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${++this.tmpCounter}.${randomBytes(6).toString('hex')}.tmp`);
      try {
        await this.writeTemp(tmp, out);
        // Someone replaced the file since it was read (an editor, a ConfigMap mount): start over on
        // their version rather than overwrite it.
        if ((await readFile(file, 'utf8')) !== text) {
          await rm(tmp, { force: true });
          if (attempt < WRITE_ATTEMPTS) continue;
          throw new WriteRefused(409, `the topology file kept changing during the write (${WRITE_ATTEMPTS} attempts); try again`);
        }
        await rename(tmp, file);
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => undefined);
        throw err;
      }
      // The rename is done and visible: from here on the write stands, even if the folder's fsync fails.
      await this.syncFolder();
      this.lastHash = this.appliedHash = createHash('sha256').update(out).digest('hex');
      this.commit(parsed.topology, parsed.memo);
      return;
    }
  }

  /** The new content in a file no one else uses (O_EXCL), with the mode of the file it replaces, flushed to disk. */
  private async writeTemp(tmp: string, out: string): Promise<void> {
    const mode = (await stat(this.opts.file)).mode & 0o7777;
    const fh = await open(tmp, 'wx', mode);
    try {
      await fh.chmod(mode);
      await fh.writeFile(out);
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  /** Makes the rename durable. Best effort: some filesystems cannot fsync a folder. */
  private async syncFolder(): Promise<void> {
    try {
      const dh = await open(dirname(this.opts.file), 'r');
      try {
        await dh.sync();
      } finally {
        await dh.close();
      }
    } catch (err) {
      this.opts.log.warn(
        { file: this.opts.file, error: (err as Error).message },
        'fsync of the topology folder failed; the write is in place but may not survive a crash',
      );
    }
  }

  /** Runs `step` after every write and reload queued before it. */
  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.queue.then(step);
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  close(): void {
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
  }
}
