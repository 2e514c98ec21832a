// Cost of Gateway API routes in a full apply: 1,000 apps over 20 Services, without routes and with one
// two-rule HTTPRoute per Service (header match, 90/10 split, timeout). Not a test: npx node test/discover/gateway/routesBench.ts
import { Registry } from 'prom-client';
import { SnapshotStore } from '../../../discover/snapshot/store.ts';
import { createDiscoverMetrics } from '../../../discover/metrics.ts';
import { parseStaticTopology } from '../../../discover/topology/staticFile.ts';
import { createLogger } from '../../../shared/log.ts';
const N = 1000;
const svcs = Array.from(
  { length: 20 },
  (_, i) => `  - { name: s${i}, ports: [{ port: 80, protocol: http }], endpoints: [10.0.${i}.1:80, 10.0.${i}.2:80] }`,
).join('\n');
const apps = Array.from(
  { length: N },
  (_, i) =>
    `  - { name: app-${i}, config: { base_services: [{ depend_service_alias: s${i % 20}, port: 80 }, { depend_service_alias: s${(i + 1) % 20}, port: 80 }] } }`,
).join('\n');
const routes = Array.from(
  { length: 20 },
  (_, i) => `  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: { name: r${i} }
    spec:
      parentRefs: [{ group: "", kind: Service, name: s${i} }]
      rules:
        - matches: [{ headers: [{ name: x-canary, value: "1" }] }]
          backendRefs: [{ name: s${(i + 5) % 20}, port: 80 }]
        - matches: [{ path: { type: PathPrefix, value: /api } }]
          backendRefs: [{ name: s${i}, port: 80, weight: 90 }, { name: s${(i + 5) % 20}, port: 80, weight: 10 }]
          timeouts: { request: 5s }`,
).join('\n');
const log = createLogger('discover', 'silent');
for (const [label, text] of [
  ['no routes', `services:\n${svcs}\napps:\n${apps}\n`],
  ['20 routes', `services:\n${svcs}\napps:\n${apps}\nroutes:\n${routes}\n`],
] as const) {
  const top = parseStaticTopology(text);
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const store = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
    const t0 = performance.now();
    store.apply(top);
    times.push(performance.now() - t0);
    store.close();
  }
  times.sort((a, b) => a - b);
  console.log(`${label}: full apply of ${N} apps, median ${times[3].toFixed(1)} ms (min ${times[0].toFixed(1)})`);
}
