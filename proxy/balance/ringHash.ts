// Consistent hashing on a request header: a ring of virtual nodes (more for heavier endpoints), so
// one key sticks to one endpoint and a change of endpoints moves only about 1/n of the keys.
// Requests without the header fall back to weighted random.
import { WeightTable, type Balancer, type Pickable } from './balancer.ts';

const VNODES_PER_WEIGHT = 100;
const MAX_RING = 65536;
// A virtual node's position in the list, packed below its 32-bit hash in one float64 (2^21 x 2^32 = 2^53, still exact).
const POSITIONS = 2 ** 21;

/** FNV-1a, 32 bits: fast and spreads short keys well enough for a ring. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Final avalanche (murmur3 fmix) so neighbouring keys land far apart.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class RingHashBalancer<T extends Pickable> implements Balancer<T> {
  private hashes: Uint32Array = new Uint32Array(0);
  private owners: T[] = [];
  private readonly fallback = new WeightTable<T>();

  update(endpoints: readonly T[]): void {
    this.fallback.update(endpoints);
    const totalWeight = endpoints.reduce((s, e) => s + e.weight, 0);
    const scale = totalWeight * VNODES_PER_WEIGHT > MAX_RING ? MAX_RING / (totalWeight * VNODES_PER_WEIGHT) : 1;
    let size = 0;
    for (const e of endpoints) size += Math.max(1, Math.round(e.weight * VNODES_PER_WEIGHT * scale));
    // Each virtual node as one number, its hash above its position: a plain numeric sort (no
    // comparator, no tuples) orders by hash and keeps equal hashes in list order, as the stable sort
    // of [hash, endpoint] pairs did (the same ring), three to five times faster for a full ring.
    if (size > POSITIONS) throw new Error(`ring hash: ${endpoints.length} endpoints need ${size} virtual nodes, more than ${POSITIONS}`);
    const packed = new Float64Array(size);
    const byPosition = new Array<T>(size);
    let k = 0;
    for (const e of endpoints) {
      const count = Math.max(1, Math.round(e.weight * VNODES_PER_WEIGHT * scale));
      for (let i = 0; i < count; i++, k++) {
        packed[k] = fnv1a(`${e.key}#${i}`) * POSITIONS + k;
        byPosition[k] = e;
      }
    }
    packed.sort();
    const hashes = new Uint32Array(size);
    const owners = new Array<T>(size);
    for (let j = 0; j < size; j++) {
      const position = packed[j] % POSITIONS;
      hashes[j] = (packed[j] - position) / POSITIONS;
      owners[j] = byPosition[position];
    }
    this.hashes = hashes;
    this.owners = owners;
  }

  pick(hashKey: string | undefined): T | null {
    const n = this.hashes.length;
    if (n === 0) return null;
    if (hashKey === undefined) return this.fallback.endpoints[this.fallback.randomIndex()];
    const h = fnv1a(hashKey);
    // First virtual node at or after h, wrapping around.
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.hashes[mid] < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === n ? 0 : lo];
  }
}
