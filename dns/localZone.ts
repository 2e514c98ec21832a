// The local zone: the snapshot's dependency names, each with its precomputed A record. Built
// whole from a snapshot's dns list and swapped in by one assignment, so a lookup never sees half
// of an update.
import type { DnsName } from '../shared/snapshot.ts';
import { aRecord, nameKey } from './wire.ts';

export interface LocalEntry {
  address: string;
  // The answer record appended after the question (16 bytes, TTL included).
  aRecord: Buffer;
}

const NAME = /^(\*\.)?[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?(\.[a-z0-9_]([-a-z0-9_]*[a-z0-9_])?)*$/;

export class LocalZone {
  readonly size: number;
  private readonly exact: Map<string, LocalEntry>;
  // "*.x" entries keyed by x's wire key: they answer names strictly below x.
  private readonly wildcards: Map<string, LocalEntry>;

  private constructor(exact: Map<string, LocalEntry>, wildcards: Map<string, LocalEntry>) {
    this.exact = exact;
    this.wildcards = wildcards;
    this.size = exact.size + wildcards.size;
  }

  /**
   * Builds a zone. A bare "*" (HTTP routing's match-anything) and names that are not host names
   * are skipped and reported in `skipped`, never answered.
   */
  static build(names: DnsName[], ttl: number): { zone: LocalZone; skipped: string[] } {
    const exact = new Map<string, LocalEntry>();
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
        if (n.startsWith('*.')) wildcards.set(nameKey(n.slice(2)), entry);
        else exact.set(nameKey(n), entry);
      } catch {
        skipped.push(name);
      }
    }
    return { zone: new LocalZone(exact, wildcards), skipped };
  }

  static empty(): LocalZone {
    return new LocalZone(new Map(), new Map());
  }

  /** The entry for a wire key: an exact name first, else the longest wildcard above it. */
  lookup(key: string): LocalEntry | undefined {
    const hit = this.exact.get(key);
    if (hit !== undefined || this.wildcards.size === 0) return hit;
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
