// What a snapshot says about identity when discover runs the CA: the app's own SPIFFE ID, its mTLS
// mode and trust bundle, each inbound port's policy, and which endpoints have a sidecar and whom
// they must prove to be.
import { LISTEN_PORT_MAX, LISTEN_PORT_MIN } from '../../shared/loopbackAndListenPorts.ts';
import { spiffeId, type MtlsMode } from '../../shared/identity.ts';
import type { Snapshot } from '../../shared/snapshot.ts';
import { appKey, type App, type Topology } from '../topology/model.ts';

export interface MeshIdentity {
  trustDomain: string;
  trustBundle: string[];
  /** For apps whose mesh config sets no MTLS_MODE. */
  defaultMode: MtlsMode;
}

/**
 * An endpoint has a sidecar when its port is a sidecar listen port (65301-65400: only sidecars bind
 * them, and injection points Services there). Its expected identities are the service accounts
 * allowed to read the app of the same name (readAuth's rule: the one named like the app, plus
 * shoal.dev/service-accounts), since a sidecar can only run where it can read its snapshot.
 */
export function peerIdentities(namespace: string, service: string, topology: Topology, trustDomain: string): string[] {
  const app = topology.apps.get(appKey(namespace, service));
  const accounts = new Set([service, ...(app?.readers ?? [])]);
  return [...accounts].sort().map((serviceAccount) => spiffeId({ trustDomain, namespace, serviceAccount }));
}

export function addIdentity(snap: Omit<Snapshot, 'version'>, app: App, topology: Topology, mesh: MeshIdentity): void {
  snap.identity = {
    trustDomain: mesh.trustDomain,
    spiffeId: spiffeId({ trustDomain: mesh.trustDomain, namespace: app.namespace, serviceAccount: app.name }),
    mtlsMode: app.config.mtlsMode ?? mesh.defaultMode,
    trustBundle: mesh.trustBundle,
  };
  for (const listener of snap.inbound) {
    const port = app.config.ports.find((p) => p.port === listener.port);
    if (port?.authz) listener.authz = port.authz;
  }
  for (const c of snap.clusters) {
    let meshed = false;
    for (const e of c.endpoints) {
      if (e.port >= LISTEN_PORT_MIN && e.port <= LISTEN_PORT_MAX) {
        e.meshed = true;
        meshed = true;
      }
    }
    if (meshed) c.peerIdentities = peerIdentities(c.namespace, c.service, topology, mesh.trustDomain);
  }
}
