// Sends finished spans to an OTLP/HTTP collector in batches: a bounded queue that drops (and counts)
// rather than grows when the collector is slow or gone, one export in flight at a time, and no way for
// an export's failure to reach a request (spans are recorded after the response is done, and a failed
// export only counts its spans as dropped).
import type { Agent, ClientRequest, IncomingMessage, RequestOptions } from 'node:http';
import type { Logger } from '../../shared/log.ts';
import type { Counter } from '../../shared/metricsRegistry.ts';
import { nodeHttp, nodeHttps } from '../lazyBuiltins.ts';
import { encodeTraces, type OtlpResource, type OtlpSpan } from './otlpJson.ts';

export interface SpanExporterOptions {
  /** The collector's traces URL, e.g. http://otel-collector:4318/v1/traces. */
  url: URL;
  resource: OtlpResource;
  log: Logger;
  /** Counters in the sidecar's registry: spans sent, and spans dropped by reason. */
  exported: Counter<never>;
  dropped: Counter<'reason'>;
  /** Spans kept waiting at most; past it new spans are dropped. */
  maxQueue?: number;
  /** Spans per export request. */
  batchSize?: number;
  /** How long a span waits at most before its batch is sent. */
  intervalMs?: number;
  /** An export that has not been answered by then is abandoned (its spans counted as dropped). */
  timeoutMs?: number;
}

export const DEFAULT_MAX_QUEUE = 2048;
export const DEFAULT_BATCH_SIZE = 512;
export const DEFAULT_INTERVAL_MS = 1000;
export const DEFAULT_TIMEOUT_MS = 10_000;

function onTick(e: SpanExporter): void {
  void e.flush(); // never rejects: a failed export is counted and logged by sendAll
}

export class SpanExporter {
  readonly url: URL;
  private readonly resource: OtlpResource;
  private readonly log: Logger;
  private readonly exported: Counter<never>;
  private readonly dropped: Counter<'reason'>;
  readonly maxQueue: number;
  readonly batchSize: number;
  private readonly timeoutMs: number;
  private queue: OtlpSpan[] = [];
  private inFlight: Promise<void> | null = null;
  private readonly timer: NodeJS.Timeout;
  private readonly agent: Agent;
  private readonly request: (o: RequestOptions, cb: (res: IncomingMessage) => void) => ClientRequest;
  /** The last failure was logged; the next success logs recovery. One line per outage, not per batch. */
  private failing = false;
  private closed = false;

  constructor(o: SpanExporterOptions) {
    this.url = o.url;
    this.resource = o.resource;
    this.log = o.log;
    this.exported = o.exported;
    this.dropped = o.dropped;
    this.maxQueue = o.maxQueue ?? DEFAULT_MAX_QUEUE;
    this.batchSize = o.batchSize ?? DEFAULT_BATCH_SIZE;
    this.timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const mod = (o.url.protocol === 'https:' ? nodeHttps() : nodeHttp()) as typeof import('node:http');
    this.agent = new mod.Agent({ keepAlive: true, maxSockets: 1 });
    this.request = mod.request;
    this.timer = setInterval(onTick, o.intervalMs ?? DEFAULT_INTERVAL_MS, this);
    this.timer.unref();
  }

  /** Spans waiting to be sent. */
  get queued(): number {
    return this.queue.length;
  }

  /** Queues a finished span; drops it (counted) when the queue is full. */
  add(span: OtlpSpan): void {
    if (this.closed || this.queue.length >= this.maxQueue) {
      this.dropped.inc({ reason: this.closed ? 'shutdown' : 'queue_full' });
      return;
    }
    this.queue.push(span);
    if (this.queue.length >= this.batchSize && this.inFlight === null) void this.flush();
  }

  /** Sends what is queued, a batch at a time; resolves when the queue was emptied or an export failed. */
  flush(): Promise<void> {
    if (this.inFlight !== null) return this.inFlight;
    if (this.queue.length === 0) return Promise.resolve();
    this.inFlight = this.sendAll().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private async sendAll(): Promise<void> {
    while (this.queue.length > 0) {
      const n = Math.min(this.batchSize, this.queue.length);
      const batch = this.queue.splice(0, n);
      const failure = await this.post(encodeTraces(this.resource, batch));
      if (failure !== null) {
        this.dropped.inc({ reason: 'export_failed' }, n);
        if (!this.failing)
          this.log.warn(
            { collector: this.url.href, error: failure, spans: n },
            'span export failed: spans dropped (logged once until an export succeeds)',
          );
        this.failing = true;
        return;
      }
      this.exported.inc(n);
      if (this.failing) this.log.info({ collector: this.url.href }, 'span export works again');
      this.failing = false;
    }
  }

  /** One export request; resolves with null on a 2xx, else what went wrong. Never rejects. */
  private post(body: string): Promise<string | null> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (r: string | null) => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const bytes = Buffer.from(body);
      const u = this.url;
      let req: ClientRequest;
      try {
        req = this.request(
          {
            agent: this.agent,
            method: 'POST',
            host: u.hostname.replace(/^\[|\]$/g, ''),
            port: u.port || (u.protocol === 'https:' ? 443 : 80),
            path: `${u.pathname}${u.search}`,
            headers: { 'content-type': 'application/json', 'content-length': bytes.length },
            timeout: this.timeoutMs,
          },
          (res) => {
            const status = res.statusCode ?? 0;
            res.resume();
            res.on('end', () => done(status >= 200 && status < 300 ? null : `collector answered ${status}`));
            res.on('error', (err) => done(err.message));
          },
        );
      } catch (err) {
        done((err as Error).message);
        return;
      }
      req.on('timeout', () => {
        req.destroy(new Error(`no answer within ${this.timeoutMs} ms`));
      });
      req.on('error', (err) => done(err.message));
      req.end(bytes);
    });
  }

  /** Sends what is left (bounded by the export timeout), then stops; later spans are dropped. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    if (!this.closed) {
      await this.flush();
      if (this.queue.length > 0) await this.flush();
    }
    this.closed = true;
    if (this.queue.length > 0) this.dropped.inc({ reason: 'shutdown' }, this.queue.length);
    this.queue = [];
    this.agent.destroy();
  }
}
