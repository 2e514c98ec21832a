// Random static topologies for differential tests of the snapshot builder: services with ready,
// terminating and sidecar (meshed) endpoints, pinned addresses, missing services and ports, shared
// Domains, weights, prefixes and headers, retries, locality failover, identity on or off.
import { parseStaticTopology } from '../../discover/topology/staticFile.ts';
import type { Topology } from '../../discover/topology/model.ts';

/** A small deterministic generator (mulberry32), so a failure names a seed that replays it. */
export function random(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
}

/**
 * With `routes`, Gateway API HTTPRoutes too (drawn after everything else, so the rest is the same as
 * without): producer and consumer routes on existing, missing and wrong-port parents, path, header and
 * method matches, weighted splits over existing and missing backends, header filters, mirrors, timeouts.
 */
export function randomTopology(seed: number, opts: { routes?: boolean } = {}): Topology {
  const rnd = random(seed);
  const namespaces = ['default', 'shop', 'data'];
  let y = `clusterDomain: ${rnd(3) === 0 ? 'corp.local' : 'cluster.local'}\nservices:\n`;
  const services = 4 + rnd(6);
  const svcs: Array<{ ns: string; port: number }> = [];
  for (let i = 0; i < services; i++) {
    const ns = namespaces[rnd(3)];
    const port = [80, 8080, 5432][rnd(3)];
    svcs.push({ ns, port });
    const protocol = port === 5432 ? 'tcp' : 'http';
    const eps: string[] = [];
    for (let j = 0; j < rnd(5); j++) {
      const target = rnd(4) === 0 ? 65300 + (port % 100 || 100) : port;
      const ready = rnd(4) !== 0;
      eps.push(
        `{ address: 10.${i}.${rnd(3)}.${1 + rnd(200)}, port: ${target}, zone: zone-${rnd(3)}, ready: ${ready}, terminating: ${!ready && rnd(2) === 0} }`,
      );
    }
    const pinned = rnd(5) === 0 ? `, address: 127.9.${i}.${1 + rnd(200)}` : '';
    y += `  - { name: svc-${i}, namespace: ${ns}${pinned}, ports: [{ port: ${port}, protocol: ${protocol} }], endpoints: [${eps.join(', ')}] }\n`;
  }
  y += 'apps:\n';
  const apps = 3 + rnd(5);
  for (let a = 0; a < apps; a++) {
    const ns = namespaces[rnd(3)];
    const deps: string[] = [];
    const seen = new Set<string>();
    for (let k = 0; k < 1 + rnd(5); k++) {
      // Mostly a service that exists, on its port; sometimes one that does not, or a wrong port.
      const j = rnd(services + 1);
      const svc = svcs[j] ?? { ns: namespaces[rnd(3)], port: 80 };
      const port = rnd(6) === 0 ? [80, 8080, 5432][rnd(3)] : svc.port;
      const target = `svc-${j}.${svc.ns}:${port}`;
      if (seen.has(target)) continue;
      seen.add(target);
      const http = port !== 5432;
      const options: string[] = [];
      if (rnd(3) === 0) options.push(`Domains: ${['api.example', 'db.example', 'x.example'][rnd(3)]}`);
      if (rnd(3) === 0) options.push(`Weight: ${1 + rnd(100)}`);
      if (http && rnd(4) === 0) options.push(`Prefix: /v${rnd(3)}`);
      if (http && rnd(5) === 0) options.push('RetryNonIdempotent: "true"');
      deps.push(
        `{ depend_service_alias: svc-${j}.${svc.ns}, port: ${port}, protocol: ${http ? 'http' : 'tcp'}${options.length ? `, options: { ${options.join(', ')} }` : ''} }`,
      );
    }
    const normal = rnd(3) === 0 ? ', base_normal: { LOCALITY_FAILOVER: "true" }' : '';
    y += `  - { name: app-${a}, namespace: ${ns}, config: { base_ports: [{ port: ${8000 + rnd(3)}, protocol: http }], base_services: [${deps.join(', ')}]${normal} } }\n`;
  }
  if (opts.routes) y += randomRoutes(rnd, svcs, namespaces);
  const topology = parseStaticTopology(y);
  if (rnd(2) === 0)
    topology.identity = {
      trustDomain: 'mesh.test',
      trustBundle: [`-----BEGIN CERTIFICATE-----\nMII${seed}\n-----END CERTIFICATE-----\n`],
      defaultMode: 'permissive',
    };
  return topology;
}

/** The `routes:` section of a random topology (JSON flow entries). */
function randomRoutes(rnd: (n: number) => number, svcs: Array<{ ns: string; port: number }>, namespaces: string[]): string {
  let y = 'routes:\n';
  const count = rnd(6);
  for (let r = 0; r < count; r++) {
    const ns = namespaces[rnd(3)];
    const p = rnd(svcs.length + 1);
    const parent = svcs[p] ?? { ns, port: 80 };
    const parentRef: Record<string, unknown> = { group: '', kind: 'Service', name: `svc-${p}` };
    if (parent.ns !== ns || rnd(4) === 0) parentRef.namespace = parent.ns;
    if (rnd(2) === 0) parentRef.port = rnd(6) === 0 ? 9999 : parent.port;
    const rules = [];
    for (let k = 0; k < 1 + rnd(3); k++) {
      const matches = [];
      for (let m = 0; m < rnd(3); m++) {
        const match: Record<string, unknown> = {
          path: { type: ['PathPrefix', 'Exact'][rnd(2)], value: `/p${rnd(4)}${rnd(2) === 0 ? '/x' : ''}` },
        };
        if (rnd(3) === 0) match.headers = [{ name: `x-h${rnd(2)}`, value: `v${rnd(3)}` }];
        if (rnd(4) === 0) match.method = ['GET', 'POST'][rnd(2)];
        matches.push(match);
      }
      const backendRefs = [];
      for (let b = 0; b < 1 + rnd(2); b++) {
        const j = rnd(svcs.length + 1);
        // Mostly a Service of the route's namespace (no ReferenceGrant needed); sometimes a missing one.
        const same = svcs.findIndex((x) => x.ns === ns);
        const target = rnd(4) === 0 ? j : same >= 0 ? same : j;
        backendRefs.push({ name: `svc-${target}`, port: svcs[target]?.port ?? 80, weight: rnd(3) === 0 ? 0 : 1 + rnd(100) });
      }
      const rule: Record<string, unknown> = { backendRefs };
      if (matches.length > 0) rule.matches = matches;
      const filters = [];
      if (rnd(3) === 0)
        filters.push({ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-route', value: `r${r}` }] } });
      if (rnd(4) === 0)
        filters.push({ type: 'RequestMirror', requestMirror: { backendRef: { name: `svc-${rnd(svcs.length)}`, port: 80 } } });
      if (filters.length > 0) rule.filters = filters;
      if (rnd(3) === 0) rule.timeouts = { request: `${1 + rnd(9)}s` };
      rules.push(rule);
    }
    const route = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: `route-${r}`, namespace: ns },
      spec: { parentRefs: [parentRef], rules },
    };
    y += `  - ${JSON.stringify(route)}\n`;
  }
  return y;
}
