// The optional access log: one JSON line per sampled request (format in docs/proxy.md). Off by
// default; with it off the request path pays one null check.
import type { Logger } from '../shared/log.ts';

export interface AccessEntry {
  direction: 'inbound' | 'outbound';
  listener: string;
  method: string;
  path: string;
  host: string;
  status: number;
  durationMs: number;
  cluster: string;
  upstream: string;
  requestId: string;
  error: string;
}

export class AccessLog {
  private readonly log: Logger;
  private readonly every: number;
  private n = 0;

  /** every: log 1 request in this many (1 logs all). */
  constructor(log: Logger, every: number) {
    this.log = log.child({ log: 'access' });
    this.every = Math.max(1, every | 0);
  }

  sampled(): boolean {
    if (++this.n < this.every) return false;
    this.n = 0;
    return true;
  }

  write(e: AccessEntry): void {
    this.log.info(
      {
        dir: e.direction,
        listener: e.listener,
        method: e.method,
        path: e.path,
        host: e.host,
        status: e.status,
        duration_ms: Math.round(e.durationMs * 1000) / 1000,
        cluster: e.cluster,
        upstream: e.upstream,
        request_id: e.requestId,
        error: e.error || undefined,
      },
      'access',
    );
  }
}
