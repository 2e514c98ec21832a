// The local zone: the snapshot's dependency names, each with its precomputed A record. Built
// whole from a snapshot's dns list and swapped in by one assignment, so a lookup never sees half
// of an update.
import type { DnsName } from '../shared/snapshot.ts';
import { HEADER_LEN, aRecord, nameEquals, nameKey, wireNameHash, type Query } from './wire.ts';

export interface LocalEntry {
  address: string;
  // The answer record appended after the question (16 bytes, TTL included).
  aRecord: Buffer;
}

// An exact name in the hash table: its lower-case wire form, and the next name with the same hash.
interface ExactName {
  wire: Buffer;
  entry: LocalEntry;
  next: ExactName | null;
}

const NAME = /^(\*\.)?[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*$/;

export class LocalZone {
  readonly size: number;
  // Keyed by the hash parseQuery computes, so a lookup builds no string.
  private readonly exact: Map<number, ExactName>;
  // "*.x" entries keyed by x's wire key: they answer names strictly below x.
  private readonly wildcards: Map<string, LocalEntry>;

  private constructor(exact: Map<number, ExactName>, exactCount: number, wildcards: Map<string, LocalEntry>) {
    this.exact = exact;
    this.wildcards = wildcards;
    this.size = exactCount + wildcards.size;
  }

  /**
   * Builds a zone. A bare "*" (HTTP routing's match-anything) and names that are not host names
   * are skipped and reported in `skipped`, never answered.
   */
  static build(names: DnsName[], ttl: number): { zone: LocalZone; skipped: string[] } {
    const exact = new Map<number, ExactName>();
    const seen = new Set<string>();
    const wildcards = new Map<string, LocalEntry>();
    const skipped: string[] = [];
    for (const { name, address } of names) {
      const n = name.toLowerCase().replace(/\.$/, '');
      if (!NAME.test(n)) {
        skipped.push(name);
        continue;
      }
      let entry: LocalEntry;
      try {
        entry = { address, aRecord: aRecord(address, ttl) };
        if (n.startsWith('*.')) {
          wildcards.set(nameKey(n.slice(2)), entry);
        } else {
          const key = nameKey(n);
          if (seen.has(key)) continue;
          seen.add(key);
          const wire = Buffer.from(key, 'latin1');
          const h = wireNameHash(wire);
          exact.set(h, { wire, entry, next: exact.get(h) ?? null });
        }
      } catch {
        skipped.push(name);
      }
    }
    return { zone: new LocalZone(exact, seen.size, wildcards), skipped };
  }

  static empty(): LocalZone {
    return new LocalZone(new Map(), 0, new Map());
  }

  /** The entry for the name of a parsed query: an exact name first, else the closest wildcard. */
  lookupQuery(msg: Buffer, q: Query): LocalEntry | undefined {
    for (let n: ExactName | null | undefined = this.exact.get(q.hash); n; n = n.next) {
      if (n.wire.length === q.nameEnd - HEADER_LEN && nameEquals(msg, HEADER_LEN, n.wire)) return n.entry;
    }
    return this.wildcards.size === 0 ? undefined : this.wildcardFor(q.key);
  }

  /** The entry for a wire key (see nameKey). */
  lookup(key: string): LocalEntry | undefined {
    const wire = Buffer.from(key, 'latin1');
    for (let n: ExactName | null | undefined = this.exact.get(wireNameHash(wire)); n; n = n.next) {
      if (n.wire.equals(wire)) return n.entry;
    }
    return this.wildcards.size === 0 ? undefined : this.wildcardFor(key);
  }

  private wildcardFor(key: string): LocalEntry | undefined {
    // Strip one label at a time: "*.x" matches a.x and a.b.x, never x itself.
    let p = key.charCodeAt(0) + 1;
    while (p < key.length - 1) {
      const w = this.wildcards.get(key.slice(p));
      if (w !== undefined) return w;
      p += key.charCodeAt(p) + 1;
    }
    return undefined;
  }
}
