// Outbound: one listener per dependency address and port, as the snapshot assigns them.
// The L4/L7 rule is the snapshot's `mode` (discover sets l7 for http dependencies, l4 for tcp);
// http2/grpc listeners in l7 mode are h2 listeners (proxy/h2).
import type { Snapshot } from '../../shared/snapshot.ts';
import type { ListenerSpec } from './listenerSpec.ts';

export function outboundSpecs(snap: Snapshot): ListenerSpec[] {
  return snap.outbound.map((l) => ({
    key: `${l.address}:${l.port}`,
    name: l.name,
    address: l.address,
    port: l.port,
    direction: 'outbound',
    mode: l.mode === 'l7' ? (l.protocol === 'http' ? 'l7' : 'h2') : 'l4',
    routes: l.routes,
    limits: null,
  }));
}
