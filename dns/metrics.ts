// The responder's metrics. The per-query count is a plain array increment on the hot path;
// prom-client reads the array when scraped.
import type { Registry } from 'prom-client';
import { Counter, Gauge, Histogram } from '../shared/metricsRegistry.ts';
import { typeLabel } from './wire.ts';

export const RESULTS = ['local', 'forwarded', 'cached', 'nxdomain', 'servfail', 'refused', 'notimp', 'malformed', 'dropped'] as const;
export type QueryResult = (typeof RESULTS)[number];
const RESULT_INDEX = new Map<QueryResult, number>(RESULTS.map((r, i) => [r, i]));

// Query types get a slot by number; everything else shares "other".
const TYPE_SLOTS = [1, 2, 5, 6, 12, 15, 16, 28, 33, 35, 43, 48, 64, 65, 251, 252, 255];
const OTHER_SLOT = TYPE_SLOTS.length;
const NONE_SLOT = TYPE_SLOTS.length + 1;
const SLOT_OF = new Int16Array(65536).fill(OTHER_SLOT);
TYPE_SLOTS.forEach((t, i) => {
  SLOT_OF[t] = i;
});
const SLOT_LABELS = [...TYPE_SLOTS.map(typeLabel), 'other', 'none'];

export class DnsMetrics {
  readonly upstreamDuration: Histogram<'upstream' | 'outcome'>;
  readonly upstreamFailures: Counter<'upstream' | 'reason'>;
  readonly tcpRetries: Counter<never>;
  private readonly counts = new Float64Array(SLOT_LABELS.length * RESULTS.length);
  private readonly reported = new Float64Array(SLOT_LABELS.length * RESULTS.length);

  constructor(
    registry: Registry | undefined,
    gauges: {
      cacheEntries: () => number;
      cacheBytes: () => number;
      localNames: () => number;
      inflight: () => number;
      tcpConnections: () => number;
    },
  ) {
    const registers = registry ? [registry] : [];
    const counts = this.counts;
    const reported = this.reported;
    new Counter({
      name: 'shoal_dns_queries_total',
      help: 'DNS queries by query type and result (local, forwarded, cached, nxdomain, servfail, refused, notimp, malformed, dropped)',
      labelNames: ['type', 'result'],
      registers,
      collect() {
        for (let s = 0; s < SLOT_LABELS.length; s++) {
          for (let r = 0; r < RESULTS.length; r++) {
            const i = s * RESULTS.length + r;
            const delta = counts[i] - reported[i];
            if (delta > 0) {
              this.inc({ type: SLOT_LABELS[s], result: RESULTS[r] }, delta);
              reported[i] = counts[i];
            }
          }
        }
      },
    });
    this.upstreamDuration = new Histogram({
      name: 'shoal_dns_upstream_duration_seconds',
      help: 'Time from sending a query upstream to its answer or failure, per try',
      labelNames: ['upstream', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.upstreamFailures = new Counter({
      name: 'shoal_dns_upstream_failures_total',
      help: 'Upstream tries that failed, by reason (timeout, error, malformed, servfail)',
      labelNames: ['upstream', 'reason'],
      registers,
    });
    this.tcpRetries = new Counter({
      name: 'shoal_dns_upstream_tcp_retries_total',
      help: 'Truncated UDP answers from upstream retried over TCP',
      registers,
    });
    new Gauge({
      name: 'shoal_dns_cache_entries',
      help: 'Answers held in the forwarding cache',
      registers,
      collect() {
        this.set(gauges.cacheEntries());
      },
    });
    new Gauge({
      name: 'shoal_dns_cache_bytes',
      help: 'Bytes of answers held in the forwarding cache',
      registers,
      collect() {
        this.set(gauges.cacheBytes());
      },
    });
    new Gauge({
      name: 'shoal_dns_local_names',
      help: 'Names (and wildcards) answered locally',
      registers,
      collect() {
        this.set(gauges.localNames());
      },
    });
    new Gauge({
      name: 'shoal_dns_inflight',
      help: 'Distinct queries waiting for an upstream',
      registers,
      collect() {
        this.set(gauges.inflight());
      },
    });
    new Gauge({
      name: 'shoal_dns_tcp_connections',
      help: 'TCP client connections open',
      registers,
      collect() {
        this.set(gauges.tcpConnections());
      },
    });
  }

  /** Counts one query; qtype -1 for a packet too broken to have one. */
  count(qtype: number, result: QueryResult): void {
    const slot = qtype < 0 ? NONE_SLOT : SLOT_OF[qtype];
    this.counts[slot * RESULTS.length + RESULT_INDEX.get(result)!]++;
  }

  /** The count so far for a result over all types (tests and logs). */
  total(result: QueryResult): number {
    const r = RESULT_INDEX.get(result)!;
    let n = 0;
    for (let s = 0; s < SLOT_LABELS.length; s++) n += this.counts[s * RESULTS.length + r];
    return n;
  }
}
