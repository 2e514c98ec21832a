// The static source: a topology YAML file, watched. An invalid edit is refused and the last good state stays.
import { createHash } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { readFile, rename, open } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseDocument } from 'yaml';
import type { ResourceSpec } from '../../shared/meshConfig.ts';
import type { Logger } from '../../shared/log.ts';
import type { Topology } from '../topology/model.ts';
import { affectedApps, parseStaticTopologyWith, type ParseMemo } from '../topology/staticFile.ts';

export interface StaticSourceOptions {
  file: string;
  log: Logger;
  /** `affected`: the apps the change can touch (undefined: all of them). */
  onTopology: (t: Topology, affected?: Set<string>) => void;
  onError: (err: Error) => void;
}

const DEBOUNCE_MS = 1;
const ms = (x: number) => Math.round(x * 100) / 100;

export class StaticSource {
  private readonly opts: StaticSourceOptions;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private lastHash = '';
  private reading: Promise<void> = Promise.resolve();
  private current: Topology | null = null;
  private memo: ParseMemo | undefined;

  constructor(opts: StaticSourceOptions) {
    this.opts = opts;
  }

  /** Loads the file once; throws if it is invalid, so a bad file is refused at start. */
  async start(): Promise<Topology> {
    const text = await readFile(this.opts.file, 'utf8');
    const { topology, memo } = parseStaticTopologyWith(text);
    this.lastHash = createHash('sha256').update(text).digest('hex');
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
      this.reading = this.reading.then(() => this.reload(seen));
    }, DEBOUNCE_MS);
  }

  /** Reads the file again and applies it if it changed and is valid. `seen`: when the watch reported the change. */
  async reload(seen = performance.now()): Promise<void> {
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
    this.lastHash = hash;
    // Where an edit's time goes before the snapshots are rebuilt (the apply logs its own time).
    this.opts.log.info({ file: this.opts.file, debounceMs: ms(start - seen), readParseMs: ms(performance.now() - start) }, 'topology file read');
    this.commit(parsed.topology, parsed.memo);
  }

  /** Hands a valid topology on, with the apps it can change against the one before. */
  private commit(topology: Topology, memo: ParseMemo): void {
    const affected = affectedApps(this.current, topology);
    this.current = topology;
    this.memo = memo;
    this.opts.onTopology(topology, affected);
  }

  /** Writes one app's mesh config into the file, keeping its comments; atomic (temp file, fsync, rename). */
  readonly write = async (namespace: string, app: string, pluginId: string, spec: ResourceSpec): Promise<void> => {
    await this.reading;
    const text = await readFile(this.opts.file, 'utf8');
    const doc = parseDocument(text);
    const apps = (doc.toJS()?.apps ?? []) as Array<{ name?: string; namespace?: string }>;
    const index = apps.findIndex((a) => a.name === app && (a.namespace ?? 'default') === namespace);
    if (index >= 0) doc.setIn(['apps', index, 'config'], doc.createNode(spec));
    else if (doc.hasIn(['apps'])) doc.addIn(['apps'], doc.createNode({ name: app, namespace, pluginId, config: spec }));
    else doc.setIn(['apps'], doc.createNode([{ name: app, namespace, pluginId, config: spec }]));
    const out = doc.toString();
    const { topology, memo } = parseStaticTopologyWith(out, this.memo);
    const tmp = join(dirname(this.opts.file), `.${basename(this.opts.file)}.${process.pid}.tmp`);
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(out);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.opts.file);
    this.lastHash = createHash('sha256').update(out).digest('hex');
    this.commit(topology, memo);
  };

  close(): void {
    this.watcher?.close();
    if (this.timer) clearTimeout(this.timer);
  }
}
