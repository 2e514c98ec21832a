// Where a query goes: refused, answered from the local zone, from the cache, or forwarded.
// Runs once per query on both transports; the local path allocates only the answer buffer.
import { answerFlags, type AnswerCache } from './cache.ts';
import type { Forwarder, ReplyTarget } from './forwarder.ts';
import type { LocalZone } from './localZone.ts';
import type { DnsMetrics } from './metrics.ts';
import {
  CLASS_IN,
  Query,
  RCODE_NOTIMP,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  TYPE_A,
  TYPE_ANY,
  TYPE_AXFR,
  TYPE_IXFR,
  TYPE_MAILA,
  TYPE_MAILB,
  emptyAnswer,
  localAnswer,
  nameKey,
  parseQuery,
} from './wire.ts';

const RCODE_BADVERS = 16;

export interface QueryRouterOptions {
  clusterDomain: string;
  cache: AnswerCache;
  forwarder: Forwarder | null;
  metrics: DnsMetrics;
}

export class QueryRouter {
  // null until the first snapshot: then names that may be local get SERVFAIL (clients retry).
  zone: LocalZone | null = null;
  private readonly q = new Query();
  private readonly clusterSuffix: string;
  private readonly cache: AnswerCache;
  private readonly forwarder: Forwarder | null;
  private readonly metrics: DnsMetrics;

  constructor(opts: QueryRouterOptions) {
    this.clusterSuffix = nameKey(opts.clusterDomain);
    this.cache = opts.cache;
    this.forwarder = opts.forwarder;
    this.metrics = opts.metrics;
  }

  /**
   * Answers msg now (returns the answer), drops it (returns null, counted as malformed), or hands
   * it to the forwarder, which answers through target later (returns null).
   * Over UDP an answer larger than the client takes goes out truncated (TC=1).
   */
  route(msg: Buffer, target: ReplyTarget, port: number, address: string, tcp: boolean): Buffer | null {
    const q = this.q;
    if (!parseQuery(msg, q)) {
      this.metrics.count(-1, 'malformed');
      return null;
    }
    const qtype = q.qtype;
    if (q.opcode !== 0) {
      this.metrics.count(qtype, 'notimp');
      return emptyAnswer(msg, q, RCODE_NOTIMP);
    }
    if (q.hasOpt && q.ednsVersion !== 0) {
      this.metrics.count(qtype, 'refused');
      return emptyAnswer(msg, q, RCODE_BADVERS);
    }
    // Zone transfers and ANY are refused for every name: no amplification, no zone dumps.
    if (qtype === TYPE_ANY || qtype === TYPE_AXFR || qtype === TYPE_IXFR || qtype === TYPE_MAILA || qtype === TYPE_MAILB) {
      this.metrics.count(qtype, 'refused');
      return emptyAnswer(msg, q, RCODE_REFUSED);
    }
    const zone = this.zone;
    if (zone !== null) {
      const entry = zone.lookupQuery(msg, q);
      if (entry !== undefined) {
        if (q.qclass !== CLASS_IN) {
          this.metrics.count(qtype, 'refused');
          return emptyAnswer(msg, q, RCODE_REFUSED);
        }
        this.metrics.count(qtype, 'local');
        return localAnswer(msg, q, qtype === TYPE_A ? entry.aRecord : null);
      }
    } else if (q.labels === 1 || q.key.endsWith(this.clusterSuffix)) {
      this.metrics.count(qtype, 'servfail');
      return emptyAnswer(msg, q, RCODE_SERVFAIL);
    }
    // Answers differ by type, class and the flags that shape them (EDNS, DO, CD, RD).
    const flags = answerFlags(q);
    const cached = this.cache.answer(msg, q, flags);
    if (cached !== null) {
      this.metrics.count(qtype, 'cached');
      if (!tcp && cached.length > q.udpLimit) return emptyAnswer(msg, q, 0, { tc: true });
      return cached;
    }
    if (this.forwarder === null) {
      this.metrics.count(qtype, 'refused');
      return emptyAnswer(msg, q, RCODE_REFUSED);
    }
    this.forwarder.forward(msg, q, flags, target, port, address, tcp ? 0 : q.udpLimit);
    return null;
  }
}
