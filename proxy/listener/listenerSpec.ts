// What a listener should be, derived from the snapshot: the reconcile step compares these.
import type { ListenerMode, Route } from '../../shared/snapshot.ts';

export interface ListenerSpec {
  /** address:port, the identity of a listener across snapshots. */
  key: string;
  name: string;
  address: string;
  port: number;
  direction: 'inbound' | 'outbound';
  /** h2: an http2/grpc port (h2c and HTTP/1.1 on one port, proxy/h2). */
  mode: ListenerMode | 'h2';
  routes: Route[];
  /** Inbound OPEN_LIMIT limits (0 = unlimited); null for outbound listeners. */
  limits: ListenerLimits | null;
}

export interface ListenerLimits {
  rps: number;
  burst: number;
  connections: number;
}
