// Topology-aware routing: which of a cluster's endpoints this sidecar should prefer, by the
// EndpointSlice hints (as kube-proxy reads them) or, when asked, by zone alone. Computed when the
// endpoints or the sidecar's locality change, never per request; the cluster then falls back to
// the next wider set while the preferred one is empty, ejected or below the panic threshold.
import type { Endpoint } from '../cluster/endpoint.ts';

/** Where this sidecar runs; '' when unknown. */
export interface SidecarLocality {
  node: string;
  zone: string;
}

/** An endpoint seen from this sidecar: index into the locality counters. */
export const SAME_NODE = 0;
export const SAME_ZONE = 1;
export const OTHER_ZONE = 2;
export const UNKNOWN_LOCALITY = 3;
export const LOCALITY_NAMES = ['same_node', 'same_zone', 'other_zone', 'unknown'] as const;

/** The endpoint's locality relative to `here`. */
export function localityOf(e: { node: string; zone: string }, here: SidecarLocality): number {
  if (here.node !== '' && e.node === here.node) return SAME_NODE;
  if (here.zone === '' || e.zone === '') return UNKNOWN_LOCALITY;
  return e.zone === here.zone ? SAME_ZONE : OTHER_ZONE;
}

/** One candidate set, most local first; the last tier of a cluster is always all of its endpoints. */
export interface LocalityTier {
  /** 'node' and 'zone': chosen by hints; 'same-zone': by the failover option; 'all': everything. */
  kind: 'node' | 'zone' | 'same-zone' | 'all';
  endpoints: readonly Endpoint[];
}

/**
 * The tiers of one cluster. Hints first, as KEP-3015 states it: if every endpoint has node hints and
 * one names this node, those for this node; if every endpoint has zone hints and one names this
 * zone, those for this zone. Without usable hints and with `failover`, the endpoints in this zone.
 * Then all of them.
 */
export function localityTiers(endpoints: readonly Endpoint[], here: SidecarLocality, failover: boolean): LocalityTier[] {
  const tiers: LocalityTier[] = [];
  if (endpoints.length > 0 && (here.node !== '' || here.zone !== '')) {
    let allNodeHints = true;
    let allZoneHints = true;
    for (const e of endpoints) {
      if (e.forNodes === null) allNodeHints = false;
      if (e.forZones === null) allZoneHints = false;
    }
    if (allNodeHints && here.node !== '') {
      const mine = endpoints.filter((e) => e.forNodes!.includes(here.node));
      if (mine.length > 0 && mine.length < endpoints.length) tiers.push({ kind: 'node', endpoints: mine });
    }
    if (allZoneHints && here.zone !== '') {
      const mine = endpoints.filter((e) => e.forZones!.includes(here.zone));
      if (mine.length > 0 && mine.length < endpoints.length) tiers.push({ kind: 'zone', endpoints: mine });
    }
    if (tiers.length === 0 && failover && here.zone !== '') {
      const mine = endpoints.filter((e) => e.zone === here.zone);
      if (mine.length > 0 && mine.length < endpoints.length) tiers.push({ kind: 'same-zone', endpoints: mine });
    }
  }
  tiers.push({ kind: 'all', endpoints });
  return tiers;
}
