// The answer cache for forwarded names: upstream answers kept up to their TTL (negative ones per
// the SOA rule), bounded in entries and in bytes; the oldest insert is evicted first. A hit is the
// stored answer with the ID, the client's question spelling and the aged TTLs patched in.
// Keyed by a number (the name hash parseQuery computed, mixed with type, class and flags), so a
// hit builds no string; two questions with the same number replace each other, never mix.
import { HEADER_LEN, nameEquals, type Query } from './wire.ts';

/** What an answer was for: the question and the flags that shape an answer. */
export interface CacheQuestion {
  hash: number;
  // The name in wire form, lower-cased.
  name: Buffer;
  qtype: number;
  qclass: number;
  flags: number;
}

/** The flags an answer depends on: EDNS present, DO, CD, RD. */
export function answerFlags(q: Query): number {
  return (q.hasOpt ? 1 : 0) | (q.dnssecOk ? 2 : 0) | (q.cd ? 4 : 0) | (q.rd ? 8 : 0);
}

/** The cache's number for a parsed query with these flags. */
export function cacheHash(q: Query, flags: number): number {
  let h = Math.imul(q.hash ^ q.qtype, 0x01000193);
  h = Math.imul(h ^ q.qclass, 0x01000193);
  h = Math.imul(h ^ flags, 0x01000193);
  return h & 0x3fffffff;
}

/** The question of a parsed query, kept by the forwarder for the cache. */
export function cacheQuestion(msg: Buffer, q: Query, flags: number): CacheQuestion {
  // Unpooled: a cache entry lives for minutes, and a slice of the shared pool would keep the
  // whole 8 KiB slab alive with it.
  const name = Buffer.allocUnsafeSlow(q.nameEnd - HEADER_LEN);
  for (let i = 0; i < name.length; i++) {
    const c = msg[HEADER_LEN + i];
    name[i] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
  }
  return { hash: cacheHash(q, flags), name, qtype: q.qtype, qclass: q.qclass, flags };
}

interface CachedAnswer {
  question: CacheQuestion;
  answer: Buffer;
  ttlOffsets: number[];
  ttls: number[];
  storedAt: number;
  expiresAt: number;
}

export interface AnswerCacheOptions {
  maxEntries: number;
  // Answers over TCP reach 64 KiB: the entry bound alone would not bound memory.
  maxBytes: number;
  maxTtl: number;
  maxNegativeTtl: number;
  now?: () => number;
}

export class AnswerCache {
  private readonly entries = new Map<number, CachedAnswer>();
  private readonly maxEntries: number;
  private readonly maxBytes: number;
  private bytes = 0;
  private readonly maxTtl: number;
  private readonly maxNegativeTtl: number;
  private readonly now: () => number;

  constructor(opts: AnswerCacheOptions) {
    this.maxEntries = opts.maxEntries;
    this.maxBytes = opts.maxBytes;
    this.maxTtl = opts.maxTtl;
    this.maxNegativeTtl = opts.maxNegativeTtl;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Stores an answer for ttl seconds (capped); a TTL of 0 or less is not stored. */
  store(question: CacheQuestion, answer: Buffer, ttlOffsets: number[], ttls: number[], ttl: number, negative: boolean): void {
    const capped = Math.min(ttl, negative ? this.maxNegativeTtl : this.maxTtl);
    if (!(capped > 0) || this.maxEntries <= 0 || answer.length > this.maxBytes) return;
    const now = this.now();
    this.remove(question.hash);
    while (this.entries.size >= this.maxEntries || this.bytes + answer.length > this.maxBytes) {
      this.remove(this.entries.keys().next().value as number);
    }
    this.entries.set(question.hash, { question, answer, ttlOffsets, ttls, storedAt: now, expiresAt: now + capped * 1000 });
    this.bytes += answer.length;
  }

  /**
   * The cached answer for key as a new buffer addressed to this client (ID and question bytes
   * from its query), or null on a miss or an expired entry.
   */
  answer(query: Buffer, q: Query, flags: number): Buffer | null {
    const hash = cacheHash(q, flags);
    const e = this.entries.get(hash);
    if (e === undefined) return null;
    const c = e.question;
    if (
      c.qtype !== q.qtype ||
      c.qclass !== q.qclass ||
      c.flags !== flags ||
      c.name.length !== q.nameEnd - HEADER_LEN ||
      !nameEquals(query, HEADER_LEN, c.name)
    )
      return null;
    const now = this.now();
    if (now >= e.expiresAt) {
      this.remove(hash);
      return null;
    }
    const stored = e.answer;
    const out = Buffer.allocUnsafe(stored.length);
    out.set(stored);
    // The client's ID and its spelling of the question.
    for (let i = 0; i < 2; i++) out[i] = query[i];
    for (let i = HEADER_LEN; i < q.questionEnd; i++) out[i] = query[i];
    const aged = ((now - e.storedAt) / 1000) | 0;
    const offsets = e.ttlOffsets;
    for (let i = 0; i < offsets.length; i++) {
      const t = e.ttls[i] - aged;
      const o = offsets[i];
      const v = t > 0 ? t : 0;
      out[o] = v >>> 24;
      out[o + 1] = (v >>> 16) & 0xff;
      out[o + 2] = (v >>> 8) & 0xff;
      out[o + 3] = v & 0xff;
    }
    return out;
  }

  /** Bytes of answers held. */
  get sizeBytes(): number {
    return this.bytes;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }

  private remove(hash: number): void {
    const e = this.entries.get(hash);
    if (e === undefined) return;
    this.entries.delete(hash);
    this.bytes -= e.answer.length;
  }
}
