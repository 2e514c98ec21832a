// Cost of one change's apply at the gateway-routes bench's size (bench/gatewayRoutes.ts), in-process: 500
// Services in 50 namespaces (10 endpoints each), 2 producer HTTPRoutes per Service (4 matches, a 90/10
// split with another Service of the namespace), 500 apps with 5 dependencies, 100 of which depend on svc-0.
// Times store.apply(topology, affected) after one route change of svc-0 and after one endpoint change of
// svc-0 (median of 50 each), and routeStatuses over all routes. Not a test:
//   npx node test/discover/gateway/routesIncrementalBench.ts        (add --cpu-prof before the file to profile)
import { Registry } from 'prom-client';
import { SnapshotStore } from '../../../discover/snapshot/store.ts';
import { createDiscoverMetrics } from '../../../discover/metrics.ts';
import { parseStaticTopology } from '../../../discover/topology/staticFile.ts';
import { appsAffectedByRoutes, callersOf } from '../../../discover/gateway/compile.ts';
import { routeStatuses } from '../../../discover/gateway/status.ts';
import { createLogger } from '../../../shared/log.ts';
import { routeKey, serviceKey, type GatewayRoute, type Topology } from '../../../discover/topology/model.ts';

const SERVICES = 500;
const PER_SERVICE = 10;
const ROUTES_PER_SERVICE = 2;
const APPS = 500;
const DEPENDENTS = 100;
const ROUNDS = Number(process.env.ROUNDS ?? 50);
const nsCount = 50;
const nsOf = (i: number) => `ns-${i % nsCount}`;
const otherOf = (i: number) => (i + nsCount < SERVICES ? i + nsCount : i - nsCount);
const ipOf = (n: number) => `10.${244 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;

function route(i: number, k: number, weights: [number, number]) {
  const matches = [
    { path: { type: 'PathPrefix', value: `/r${k}/api` }, method: 'GET' },
    { path: { type: 'Exact', value: `/r${k}/healthz` } },
    { path: { type: 'PathPrefix', value: `/r${k}` }, headers: [{ type: 'Exact', name: 'x-tenant', value: `t${k}` }] },
    { path: { type: 'PathPrefix', value: `/r${k}/q` }, queryParams: [{ type: 'Exact', name: 'canary', value: '1' }] },
  ];
  return {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'HTTPRoute',
    metadata: { name: `svc-${i}-r${k}`, namespace: nsOf(i) },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: `svc-${i}`, port: 80 }],
      rules: [
        {
          matches,
          backendRefs: [
            { name: `svc-${i}`, port: 80, weight: weights[0] },
            { name: `svc-${otherOf(i)}`, port: 80, weight: weights[1] },
          ],
        },
      ],
    },
  };
}

function service(i: number, flip: boolean) {
  return {
    name: `svc-${i}`,
    namespace: nsOf(i),
    ports: [{ port: 80, name: 'http', protocol: 'http' }],
    endpoints: Array.from({ length: PER_SERVICE }, (_, j) => ({
      address: ipOf(i * PER_SERVICE + j + 1),
      port: 80,
      ready: !(flip && j === 0),
      zone: `zone-${j % 3}`,
    })),
  };
}

function doc(weights: [number, number], flip: boolean) {
  return {
    services: Array.from({ length: SERVICES }, (_, i) => service(i, flip && i === 0)),
    apps: Array.from({ length: APPS }, (_, i) => {
      const others = [...new Set([1, 2, 3, 4, 5, 6].map((k) => (i + k * 97) % SERVICES).filter((j) => j !== 0))];
      const deps = i < DEPENDENTS ? [0, ...others.slice(0, 4)] : others.slice(0, 5);
      return {
        name: `app-${i}`,
        namespace: nsOf(i),
        pluginId: 'mesh',
        config: {
          base_ports: [{ port: 8080, protocol: 'http' }],
          base_services: deps.map((j) => ({
            depend_service_alias: nsOf(j) === nsOf(i) ? `svc-${j}` : `svc-${j}.${nsOf(j)}`,
            port: 80,
            protocol: 'http',
          })),
        },
      };
    }),
    routes: Array.from({ length: SERVICES * ROUTES_PER_SERVICE }, (_, n) => {
      const i = Math.floor(n / ROUTES_PER_SERVICE);
      const k = n % ROUTES_PER_SERVICE;
      return route(i, k, i === 0 && k === 0 ? weights : [90, 10]);
    }),
  };
}

let parsed: Topology;
try {
  parsed = parseStaticTopology(JSON.stringify(doc([90, 10], false)));
} catch (err) {
  // The static file may not take endpoints in this form: say so rather than measure something else.
  console.error(`could not build the topology: ${(err as Error).message}`);
  process.exit(1);
}
// The variants the rounds switch between: the changed route's two versions, svc-0's two endpoint states.
const alt = parseStaticTopology(JSON.stringify(doc([50, 50], true)));
const r0 = routeKey('HTTPRoute', 'ns-0', 'svc-0-r0');
const s0 = serviceKey('ns-0', 'svc-0');
const routeVersions = [parsed.routes!.get(r0)!, alt.routes!.get(r0)!] as GatewayRoute[];
const svcVersions = [parsed.services.get(s0)!, alt.services.get(s0)!];

// Memory at each phase (with --expose-gc, after a collection: what is held, not what waits to be freed).
const mem = (phase: string) => {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  console.log(
    `${phase}: heap used ${(m.heapUsed / 1e6).toFixed(0)} MB, external ${(m.external / 1e6).toFixed(0)} MB, rss ${(m.rss / 1e6).toFixed(0)} MB`,
  );
};
mem('topology parsed');
const log = createLogger('discover', 'silent');
const store = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
// The Kubernetes source's way: one topology object whose maps change in place.
const topology: Topology = { ...parsed, services: new Map(parsed.services), routes: new Map(parsed.routes), apps: new Map(parsed.apps) };
let t0 = performance.now();
store.apply(topology);
console.log(`full apply of ${topology.apps.size} apps: ${(performance.now() - t0).toFixed(1)} ms`);
mem('after the full apply');
const app0 = JSON.parse(store.get('ns-0', 'app-0')!.body.toString());
const entries = app0.outbound.reduce((n: number, l: { routes: unknown[] }) => n + l.routes.length, 0);
console.log(
  `app-0: ${entries} route entries over ${app0.outbound.length} listeners, body ${store.get('ns-0', 'app-0')!.body.length} bytes`,
);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const routeTimes: number[] = [];
const svcTimes: number[] = [];
const statusTimes: number[] = [];
let rebuilt = 0;
for (let round = 0; round < ROUNDS; round++) {
  const v = (round + 1) % 2;
  // A route change: the affected apps are the callers of its parents (what the sources compute).
  const prevRoutes = new Map(topology.routes);
  topology.routes!.set(r0, routeVersions[v]);
  let affected = appsAffectedByRoutes({ ...topology, routes: prevRoutes }, topology, new Set());
  t0 = performance.now();
  const res = store.apply(topology, affected);
  routeTimes.push(performance.now() - t0);
  rebuilt = res.rebuilt;
  t0 = performance.now();
  routeStatuses(topology);
  statusTimes.push(performance.now() - t0);
  // An endpoint change of svc-0: its callers and the callers of Services whose routes send to it.
  topology.services.set(s0, svcVersions[v]);
  affected = new Set([...callersOf(topology, new Set([s0])), ...appsAffectedByRoutes(topology, topology, new Set([s0]))]);
  t0 = performance.now();
  store.apply(topology, affected);
  svcTimes.push(performance.now() - t0);
}
console.log(
  `route change (${rebuilt} apps rebuilt): apply median ${median(routeTimes).toFixed(2)} ms (min ${Math.min(...routeTimes).toFixed(2)})`,
);
console.log(`endpoint change: apply median ${median(svcTimes).toFixed(2)} ms (min ${Math.min(...svcTimes).toFixed(2)})`);
console.log(`routeStatuses over ${topology.routes!.size} routes: median ${median(statusTimes).toFixed(2)} ms`);
console.log(`heap used ${(process.memoryUsage().heapUsed / 1e6).toFixed(0)} MB, rss ${(process.memoryUsage().rss / 1e6).toFixed(0)} MB`);
store.close();
