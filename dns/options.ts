// The responder's options: the flags (each with its SHOAL_* env twin), their defaults, and the
// options object the sidecar or `shoal dns` passes to startDnsResponder.
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/log.ts';
import { UsageError, type FlagSpec, type FlagValues } from '../shared/flags.ts';
import type { DnsName } from '../shared/snapshot.ts';

export const dnsFlags: FlagSpec[] = [
  { name: 'dns-host', type: 'string', default: '127.0.0.1', description: 'Address the DNS responder listens on (UDP and TCP)' },
  { name: 'dns-port', type: 'int', default: 53, description: 'Port the DNS responder listens on (UDP and TCP)' },
  {
    name: 'dns-upstream',
    type: 'list',
    default: [],
    description: 'Resolvers for every name that is not local, ip[:port] comma list (the cluster DNS); none: such names are refused',
  },
  { name: 'cluster-domain', type: 'string', default: 'cluster.local', description: "The cluster's DNS domain" },
  { name: 'dns-ttl', type: 'int', default: 5, description: 'TTL in seconds of local answers' },
  { name: 'dns-cache-size', type: 'int', default: 10000, description: 'Forwarded answers kept in the cache (0 turns caching off)' },
  {
    name: 'dns-cache-max-bytes',
    type: 'int',
    default: 16 * 1024 * 1024,
    description: 'Bytes of forwarded answers kept in the cache at most',
  },
  { name: 'dns-cache-max-ttl', type: 'int', default: 3600, description: 'Longest time in seconds a forwarded answer is cached' },
  {
    name: 'dns-negative-max-ttl',
    type: 'int',
    default: 300,
    description: 'Longest time in seconds a negative answer (NXDOMAIN, no data) is cached',
  },
  {
    name: 'dns-upstream-timeout-ms',
    type: 'int',
    default: 2000,
    description: 'Time to wait for one upstream try before the next upstream is tried',
  },
  {
    name: 'dns-max-inflight',
    type: 'int',
    default: 1024,
    description: 'Distinct queries waiting for an upstream at once; more get SERVFAIL',
  },
  {
    name: 'dns-allow-remote',
    type: 'bool',
    default: false,
    description: 'Also answer clients outside 127.0.0.0/8 (off: the responder is no open resolver)',
  },
  {
    name: 'dns-names',
    type: 'list',
    default: [],
    description: 'Static local names, name=address comma list (standalone use; the sidecar takes them from its snapshot)',
  },
];

export interface DnsResponderOptions {
  host: string;
  port: number;
  upstreams: string[];
  clusterDomain?: string;
  ttl?: number;
  cacheSize?: number;
  cacheMaxBytes?: number;
  cacheMaxTtl?: number;
  negativeMaxTtl?: number;
  upstreamTimeoutMs?: number;
  maxInflight?: number;
  allowRemote?: boolean;
  tcpIdleMs?: number;
  maxTcpConnections?: number;
  // Names to answer from the start; without them the responder waits for setNames.
  names?: DnsName[];
  log?: Logger;
  registry?: Registry;
}

/** Parses --dns-names entries ("api=127.0.0.2"). */
export function parseStaticNames(list: string[]): DnsName[] {
  return list.map((item) => {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid --dns-names entry ${JSON.stringify(item)}: expected name=address`);
    return { name: item.slice(0, eq).trim().toLowerCase(), address: item.slice(eq + 1).trim() };
  });
}

/** The options the dnsFlags values describe. */
export function dnsOptionsFromFlags(v: FlagValues): DnsResponderOptions {
  const names = v['dns-names'] as string[] | undefined;
  return {
    host: String(v['dns-host']),
    port: Number(v['dns-port']),
    upstreams: (v['dns-upstream'] as string[] | undefined) ?? [],
    clusterDomain: String(v['cluster-domain']),
    ttl: Number(v['dns-ttl']),
    cacheSize: Number(v['dns-cache-size']),
    cacheMaxBytes: Number(v['dns-cache-max-bytes']),
    cacheMaxTtl: Number(v['dns-cache-max-ttl']),
    negativeMaxTtl: Number(v['dns-negative-max-ttl']),
    upstreamTimeoutMs: Number(v['dns-upstream-timeout-ms']),
    maxInflight: Number(v['dns-max-inflight']),
    allowRemote: Boolean(v['dns-allow-remote']),
    names: names && names.length > 0 ? parseStaticNames(names) : undefined,
  };
}

export function checkInt(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`invalid dns option ${name}=${value}: expected an integer from ${min} to ${max}`);
  }
  return value;
}
