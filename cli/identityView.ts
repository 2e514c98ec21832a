// `shoal get`: the identity part of an app's snapshot, as lines of the table view.
import { renderAuthzPolicy } from '../shared/authzPolicy.ts';
import type { Snapshot } from '../shared/snapshot.ts';

export function identitySection(s: Snapshot): string[] {
  const id = s.identity;
  if (!id) return [];
  const out = ['IDENTITY', `  ${id.spiffeId}   MTLS ${id.mtlsMode}   TRUST DOMAIN ${id.trustDomain}   ROOTS ${id.trustBundle.length}`];
  for (const l of s.inbound) out.push(`  policy ${l.name} (listen ${l.listenPort}): ${renderAuthzPolicy(l.authz)}`);
  for (const c of s.clusters) {
    if (c.peerIdentities && c.endpoints.some((e) => e.meshed)) out.push(`  peer ${c.name}: mtls, expects ${c.peerIdentities.join(' or ')}`);
  }
  return out;
}
