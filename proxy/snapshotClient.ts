// The config client: long-polls one app's snapshot from discover, keeps the last good one on disk,
// and starts from that file when discover is unreachable. The sidecar's (proxy/main.ts), which hands each
// snapshot's DNS names to the DNS responder it hosts: dns/ has no client of its own.
import { mkdirSync, readFileSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Logger } from '../shared/log.ts';
import { snapshotError, type Snapshot } from '../shared/snapshot.ts';
import { nodeHttp, nodeHttps } from './lazyBuiltins.ts';

export interface SnapshotClientOptions {
  /** The snapshot URL: http://<discover>:6100/v2/snapshot/{ns}/{app} (see snapshotUrl). */
  url: string;
  /** Where the last applied snapshot is kept; '' keeps none. */
  stateFile: string;
  log: Logger;
  /** Called with every new valid snapshot, in order; a throw refuses the snapshot. */
  onSnapshot(snapshot: Snapshot, source: 'discover' | 'state-file'): void | Promise<void>;
  /** Called once per refused snapshot (invalid, wrong app, unparseable). */
  onRefused?(reason: string): void;
  /** Called once per failed poll (discover unreachable, 5xx, timeout). */
  onPollError?(reason: string): void;
  /** Long-poll hold asked of discover, in seconds (at most 60). */
  waitSeconds?: number;
  /** A file holding the bearer token sent to discover (the projected service-account token); read at every poll, since the kubelet rotates it. */
  tokenFile?: string;
  /** How long the first fetch may take before the state file is used. */
  firstFetchTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

/**
 * Derives the snapshot URL from DISCOVER_URL. Accepts the sidecar env form
 * http://h:6100/v1/resources/{ns}/{app}/{plugin_id}, a /v2/snapshot/{ns}/{app} URL as is,
 * or a bare base URL plus namespace and app.
 */
export function snapshotUrl(discoverUrl: string, namespace = '', app = ''): string {
  let u: URL;
  try {
    u = new URL(discoverUrl);
  } catch {
    throw new Error(
      `invalid DISCOVER_URL ${JSON.stringify(discoverUrl)}: expected http://<discover>:6100/v1/resources/{namespace}/{app}/{plugin_id}`,
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new Error(`invalid DISCOVER_URL ${JSON.stringify(discoverUrl)}: expected an http(s) URL`);
  const parts = u.pathname
    .split('/')
    .filter((p) => p !== '')
    .map(decodeURIComponent);
  let ns = namespace;
  let name = app;
  if (parts[0] === 'v1' && parts[1] === 'resources' && parts.length >= 4) {
    ns = parts[2];
    name = parts[3];
  } else if (parts[0] === 'v2' && parts[1] === 'snapshot' && parts.length >= 4) {
    ns = parts[2];
    name = parts[3];
  } else if (parts.length > 0) {
    throw new Error(`invalid DISCOVER_URL ${JSON.stringify(discoverUrl)}: expected path /v1/resources/{namespace}/{app}/{plugin_id}`);
  }
  if (ns === '' || name === '')
    throw new Error(`DISCOVER_URL ${JSON.stringify(discoverUrl)} names no namespace and app; set NAMESPACE and SERVICE_ALIAS`);
  return `${u.protocol}//${u.host}/v2/snapshot/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

/** Writes a file so that a reader sees the old content or the new, never a torn one. */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  // The rename itself must survive a crash: sync the directory entry too.
  const dir = await open(dirname(file), 'r').catch(() => null);
  if (dir) {
    await dir.sync().catch(() => {});
    await dir.close();
  }
}

/** One GET with node:http (no HTTP client library in the sidecar's steady state): status and body text. */
async function get(url: string, signal: AbortSignal, token: string): Promise<{ status: number; body: string }> {
  // node:https (and TLS with it) is loaded only for an https URL: ~12 MB of RSS otherwise spent for nothing.
  const { request } = url.startsWith('https:') ? nodeHttps() : nodeHttp();
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token !== '') headers.authorization = `Bearer ${token}`;
    const req = request(url, { signal, headers }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (err: Error) => reject(signal.aborted && signal.reason instanceof Error ? signal.reason : err));
    req.end();
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

export class SnapshotClient {
  private readonly opts: SnapshotClientOptions;
  private readonly namespace: string;
  private readonly app: string;
  private readonly abort = new AbortController();
  private current: Snapshot | null = null;
  private failures = 0;
  private loop: Promise<void> | null = null;
  private firstResolve: (() => void) | null = null;
  private readonly first: Promise<void>;

  constructor(opts: SnapshotClientOptions) {
    this.opts = opts;
    const parts = new URL(opts.url).pathname
      .split('/')
      .filter((p) => p !== '')
      .map(decodeURIComponent);
    this.namespace = parts[2] ?? '';
    this.app = parts[3] ?? '';
    this.first = new Promise((resolve) => (this.firstResolve = resolve));
  }

  /** The bearer token, read fresh each poll; a missing file is an error naming it (the poll fails and backs off). */
  private token(): string {
    if (!this.opts.tokenFile) return '';
    try {
      return readFileSync(this.opts.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new Error(
        `cannot read the token file ${this.opts.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        { cause: err },
      );
    }
  }

  get snapshot(): Snapshot | null {
    return this.current;
  }

  get version(): string {
    return this.current?.version ?? '';
  }

  /** Resolves once a snapshot is applied, from discover or, if discover does not answer in time, the state file. */
  firstSnapshot(): Promise<void> {
    return this.first;
  }

  /**
   * Starts polling. Resolves after the first attempt settles: a snapshot applied (from discover, or from the
   * state file when discover is unreachable), or neither available yet (polling goes on in the background).
   */
  async start(): Promise<void> {
    const firstTimeout = this.opts.firstFetchTimeoutMs ?? 3000;
    try {
      const snap = await this.fetch('', 0, firstTimeout);
      if (typeof snap === 'object') await this.apply(snap, 'discover');
      else await this.loadStateFile();
    } catch (err) {
      this.pollFailed(err as Error);
      await this.loadStateFile();
    }
    this.loop = this.run();
  }

  close(): void {
    this.abort.abort();
  }

  private async loadStateFile(): Promise<void> {
    const file = this.opts.stateFile;
    if (file === '' || this.current) return;
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        this.opts.log.error({ file, error: (err as Error).message }, 'state file unreadable');
      else this.opts.log.warn({ file }, 'discover unreachable and no state file yet; waiting for discover');
      return;
    }
    const snap = this.check(text, `state file ${file}`);
    if (!snap) return;
    this.opts.log.warn({ file, version: snap.version }, 'discover unreachable: serving the snapshot from the state file');
    await this.apply(snap, 'state-file');
  }

  /** Parses and validates a body; logs, counts and returns null when it must be refused. */
  private check(body: string, from: string): Snapshot | null {
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch (err) {
      this.refuse(`${from}: not JSON: ${(err as Error).message}`);
      return null;
    }
    const err = snapshotError(value);
    if (err) {
      this.refuse(`${from}: ${err}`);
      return null;
    }
    const snap = value as Snapshot;
    if (snap.namespace !== this.namespace || snap.app !== this.app) {
      this.refuse(`${from}: snapshot is for ${snap.namespace}/${snap.app}, this sidecar serves ${this.namespace}/${this.app}`);
      return null;
    }
    return snap;
  }

  private refuse(reason: string): void {
    this.opts.log.error({ reason, kept: this.version || null }, 'snapshot refused; the last good one stays');
    this.opts.onRefused?.(reason);
  }

  private pollFailed(err: Error): void {
    this.failures++;
    this.opts.onPollError?.(err.message);
    // One warning per outage, then debug: a long outage must not flood the log.
    if (this.failures === 1) this.opts.log.warn({ url: this.opts.url, error: err.message }, 'discover unreachable; retrying with backoff');
    else this.opts.log.debug({ url: this.opts.url, error: err.message, failures: this.failures }, 'discover still unreachable');
  }

  private async apply(snap: Snapshot, source: 'discover' | 'state-file'): Promise<void> {
    if (this.current && this.current.version === snap.version) return;
    try {
      await this.opts.onSnapshot(snap, source);
    } catch (err) {
      this.refuse(`snapshot ${snap.version} could not be applied: ${(err as Error).message}`);
      return;
    }
    this.current = snap;
    this.firstResolve?.();
    this.firstResolve = null;
    if (source === 'discover' && this.opts.stateFile !== '') {
      await writeFileAtomic(this.opts.stateFile, JSON.stringify(snap)).catch((err: Error) => {
        this.opts.log.error({ file: this.opts.stateFile, error: err.message }, 'could not write the state file');
      });
    }
  }

  /** One request: the snapshot on 200, 'unchanged' on 304, 'refused' for a bad body; throws when discover is unreachable or answers 5xx. */
  private async fetch(version: string, waitS: number, timeoutMs: number): Promise<Snapshot | 'unchanged' | 'refused'> {
    const q = version === '' ? '' : `?version=${version}${waitS > 0 ? `&wait=${waitS}s` : ''}`;
    const { status, body } = await get(
      `${this.opts.url}${q}`,
      AbortSignal.any([this.abort.signal, AbortSignal.timeout(timeoutMs)]),
      this.token(),
    );
    if (status === 304) return 'unchanged';
    if (status !== 200) throw new Error(`discover answered ${status}: ${body.slice(0, 200)}`);
    return this.check(body, `discover ${this.opts.url}`) ?? 'refused';
  }

  private async run(): Promise<void> {
    const waitS = Math.min(this.opts.waitSeconds ?? 30, 60);
    const base = this.opts.backoffBaseMs ?? 200;
    const max = this.opts.backoffMaxMs ?? 10_000;
    while (!this.abort.signal.aborted) {
      try {
        const held = this.version;
        const snap = await this.fetch(held, held === '' ? 0 : waitS, (waitS + 10) * 1000);
        if (this.failures > 0) this.opts.log.info({ url: this.opts.url, after: this.failures }, 'discover reachable again');
        this.failures = 0;
        if (typeof snap === 'object') await this.apply(snap, 'discover');
        // A refused snapshot comes back at once on the next poll (ours is older): do not spin on it.
        const refused = snap === 'refused' || (typeof snap === 'object' && this.version !== snap.version);
        if (refused) await sleep(1000, this.abort.signal);
        else if (held === '' && this.version === '') await sleep(base, this.abort.signal);
      } catch (err) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- aborted by stop() while the poll was awaited
        if (this.abort.signal.aborted) break;
        this.pollFailed(err as Error);
        if (!this.current) await this.loadStateFile();
        // Full jitter: sidecars that lost discover together do not come back together.
        const cap = Math.min(max, base * 2 ** Math.min(this.failures, 16));
        await sleep(Math.random() * cap, this.abort.signal);
      }
    }
  }

  /** Resolves when the poll loop has stopped (after close). */
  async closed(): Promise<void> {
    await this.loop;
  }
}
