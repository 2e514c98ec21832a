// The answer cache for forwarded names: upstream answers kept up to their TTL (negative ones per
// the SOA rule), bounded in entries and in bytes; the oldest insert is evicted first. A hit is the stored
// answer with the ID, the client's question spelling and the aged TTLs patched in.
import { HEADER_LEN } from './wire.ts';

interface CachedAnswer {
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
  private readonly entries = new Map<string, CachedAnswer>();
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
  store(key: string, answer: Buffer, ttlOffsets: number[], ttls: number[], ttl: number, negative: boolean): void {
    const capped = Math.min(ttl, negative ? this.maxNegativeTtl : this.maxTtl);
    if (!(capped > 0) || this.maxEntries <= 0 || answer.length > this.maxBytes) return;
    const now = this.now();
    this.remove(key);
    while (this.entries.size >= this.maxEntries || this.bytes + answer.length > this.maxBytes) {
      this.remove(this.entries.keys().next().value as string);
    }
    this.entries.set(key, { answer, ttlOffsets, ttls, storedAt: now, expiresAt: now + capped * 1000 });
    this.bytes += answer.length;
  }

  /**
   * The cached answer for key as a new buffer addressed to this client (ID and question bytes
   * from its query), or null on a miss or an expired entry.
   */
  answer(key: string, query: Buffer, questionEnd: number): Buffer | null {
    const e = this.entries.get(key);
    if (e === undefined) return null;
    const now = this.now();
    if (now >= e.expiresAt) {
      this.remove(key);
      return null;
    }
    const out = Buffer.allocUnsafe(e.answer.length);
    e.answer.copy(out);
    out[0] = query[0];
    out[1] = query[1];
    query.copy(out, HEADER_LEN, HEADER_LEN, questionEnd);
    const aged = Math.floor((now - e.storedAt) / 1000);
    for (let i = 0; i < e.ttlOffsets.length; i++) {
      const t = e.ttls[i] - aged;
      out.writeUInt32BE(t > 0 ? t : 0, e.ttlOffsets[i]);
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

  private remove(key: string): void {
    const e = this.entries.get(key);
    if (e === undefined) return;
    this.entries.delete(key);
    this.bytes -= e.answer.length;
  }
}
