// Upstream resolvers: parsing "ip[:port]" and refusing one that is this responder itself.
import { isIPv4 } from 'node:net';
import { networkInterfaces } from 'node:os';

export interface Upstream {
  host: string;
  port: number;
  // "ip:port", the metric label and the name in logs and errors.
  label: string;
}

export function parseUpstream(text: string): Upstream {
  const m = /^([0-9.]+)(?::([0-9]{1,5}))?$/.exec(text.trim());
  const port = m?.[2] === undefined ? 53 : Number(m[2]);
  if (!m || !isIPv4(m[1]) || port < 1 || port > 65535) {
    throw new Error(
      `invalid DNS upstream ${JSON.stringify(text)}: expected an IPv4 address with an optional port (10.96.0.10 or 10.96.0.10:53)`,
    );
  }
  return { host: m[1], port, label: `${m[1]}:${port}` };
}

function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4') out.add(a.address);
  }
  return out;
}

/**
 * Throws when an upstream is the responder listening on host:port: forwarding there would
 * loop every unknown name back to itself.
 */
export function refuseSelf(upstreams: Upstream[], host: string, port: number): void {
  const wildcard = host === '0.0.0.0';
  const own = wildcard ? localAddresses() : new Set<string>();
  for (const u of upstreams) {
    if (u.port !== port) continue;
    const self = u.host === host || (wildcard && (u.host.startsWith('127.') || u.host === '0.0.0.0' || own.has(u.host)));
    if (self) {
      throw new Error(
        `DNS upstream ${u.label} is this responder itself (listening on ${host}:${port}): forwarding would loop; pass the cluster DNS as the upstream (SHOAL_DNS_UPSTREAM)`,
      );
    }
  }
}
