// Gateway API routes (the mesh profile: parentRefs naming a Service) on a real API server that serves
// the Gateway API CRDs (test/lib/kube.ts installs them): an HTTPRoute applied with kubectl changes the
// snapshot of a caller within 1 s, a change of the endpoints of its backend (no dependency of the caller)
// reaches the caller too, and deleting the route brings back the previous snapshot (same version); the
// status two discover replicas write (controllerName shoal.dev/mesh, observedGeneration, lastTransitionTime
// kept while a condition holds; one write per change between them), read back with kubectl; another
// controller's parents entry survives; shoal's entry
// leaves when the route stops naming the Service; no write loop (the route's resourceVersion stays put); a
// route whose only rule has a regex ECMAScript cannot compile is Accepted False and changes nothing for the
// caller (same snapshot version), and with a good rule beside the bad one it is Accepted True and
// PartiallyInvalid, the good rule alone in force (docs/gateway-api.md);
// a GRPCRoute's status goes through grpcroutes/status.
// Then the CRDs are deleted: a discover started without them is ready, serves, says once that routes are
// off (log and /readyz details), and picks routes up once the CRDs are installed again; deleted once more
// while it runs, the routes leave the snapshots and /readyz says so again.
import t, { type Test } from 'tap';
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { createLogger } from '../../../shared/log.ts';
import { startDiscover, type Discover } from '../../../discover/main.ts';
import { routeKey } from '../../../discover/topology/model.ts';
import { installGatewayCrds } from '../../../scripts/kube.ts';
import { kubeForFile, type TestKube } from '../../lib/kube.ts';
import { endpointSlice, meshConfigMap, service } from '../../lib/kubeFixtures.ts';
import { AUDIENCE, call, longPoll, OPERATOR_TOKEN, until, waiters } from './discoverClient.ts';
import { Api, applyObject, endpointsIn, latest } from './realKube.ts';

// A control plane start with the CRDs, two discovers and many kubectl runs on a loaded 2-core machine.
t.setTimeout(300_000);
const kube = kubeForFile(t, import.meta.filename);

const CONTROLLER = 'shoal.dev/mesh';
const ROUTES = '/apis/gateway.networking.k8s.io/v1';

interface Running {
  d: Discover;
  logs: Array<Record<string, any>>;
}

/** discover --kubernetes in-process with the admin kubeconfig; its log lines kept (printed with SHOAL_TEST_LOG). */
async function startWith(t: Test, k: TestKube, gatewayRecheckMs?: number): Promise<Running> {
  const logs: Array<Record<string, any>> = [];
  const log = createLogger('discover', 'debug', {
    write(line: string) {
      for (const l of line.split('\n')) {
        if (l === '') continue;
        try {
          logs.push(JSON.parse(l));
        } catch {
          logs.push({ msg: l });
        }
      }
      if (process.env.SHOAL_TEST_LOG) process.stderr.write(line);
    },
  });
  const d = await startDiscover({
    kubernetes: { kubeconfigFile: k.kubeconfig, staleAfterMs: 30_000, tokenAudience: AUDIENCE, gatewayRecheckMs },
    host: '127.0.0.1',
    port: 0,
    writeToken: OPERATOR_TOKEN,
    log,
  });
  t.teardown(() => d.close());
  await d.ready;
  return { d, logs };
}

/** Services api and api-v2 (port 8080, http; one hand-made endpoint each) and app web depending on api. */
async function seed(api: Api, ns: string, net: number): Promise<void> {
  await api.namespace(ns);
  for (const [i, name] of ['api', 'api-v2', 'other'].entries()) {
    await applyObject(api, service(ns, name, [{ name: 'http', port: 8080, appProtocol: 'http' }], { selector: null }));
    await applyObject(
      api,
      endpointSlice(ns, `${name}-1`, name, [{ ip: `10.244.${net}.${i + 1}`, ready: true }], [{ name: 'http', port: 8080 }]),
    );
  }
  await applyObject(
    api,
    meshConfigMap(ns, 'web', 'mesh', { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }] }),
  );
}

function httpRoute(
  ns: string,
  name: string,
  rules: unknown[],
  parentRefs: unknown[] = [{ group: '', kind: 'Service', name: 'api', port: 8080 }],
): any {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name, namespace: ns }, spec: { parentRefs, rules } };
}

const toV2 = (prefix = '/v2') => [
  { matches: [{ path: { type: 'PathPrefix', value: prefix } }], backendRefs: [{ name: 'api-v2', port: 8080 }] },
];

/** The routes of web's outbound listeners that came from Gateway API route NAME. */
function routesFrom(s: Snapshot, ns: string, name: string): Snapshot['outbound'][number]['routes'] {
  return s.outbound.flatMap((l) => l.routes).filter((r) => r.source?.startsWith(`HTTPRoute ${ns}/${name} `));
}

/**
 * A watch of the API server's own (admin certificate) on HTTPRoute NS/NAME: `added` resolves with
 * performance.now() when its ADDED event arrives, i.e. when the API server committed the object, which
 * times discover's part without kubectl's start-up.
 */
async function watchAdded(k: TestKube, ns: string, name: string): Promise<{ added: Promise<number>; close(): void }> {
  const c = k.cluster;
  const url = new URL(
    `${ROUTES}/namespaces/${ns}/httproutes?watch=1&fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`,
    c.server,
  );
  let close = () => {};
  const added = new Promise<number>((resolveAdded, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname + url.search,
        method: 'GET',
        agent: false,
        ca: readFileSync(c.caFile),
        cert: readFileSync(c.adminCertFile),
        key: readFileSync(c.adminKeyFile),
      },
      (res) => {
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          const at = performance.now();
          buf += d;
          for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.trim() !== '' && JSON.parse(line).type === 'ADDED') resolveAdded(at);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
    close = () => req.destroy();
  });
  added.catch(() => undefined);
  // The watch is open once the API server answered its headers; a short pause covers that.
  await new Promise((r) => setTimeout(r, 300));
  return { added, close };
}

async function kubectlApply(k: TestKube, obj: unknown): Promise<void> {
  await k.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(obj) });
}

/** The route as kubectl reads it. */
function getRoute(k: TestKube, ns: string, name: string): Promise<any> {
  return k.getJson(['httproute', name, '-n', ns]);
}

function shoalEntries(route: any): any[] {
  return (route.status?.parents ?? []).filter((p: any) => p.controllerName === CONTROLLER);
}

function condition(entry: any, type: string): any {
  return entry?.conditions?.find((c: any) => c.type === type);
}

if (kube) {
  t.test(
    "an HTTPRoute applied with kubectl changes a caller's snapshot within 1 s; deleting it brings the previous snapshot back",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'routes';
      await seed(api, ns, 41);
      const { d, logs } = await startWith(t, k);
      const before = await latest(d, ns);
      t.same(routesFrom(before, ns, 'to-v2'), [], 'no route from the HTTPRoute before it exists');
      t.notOk(
        before.clusters.some((c) => c.name === `api-v2.${ns}:8080`),
        'and no cluster for its backend',
      );

      const polled = longPoll(d, ns, 'web', before.version, 20);
      await waiters(d, ns, 'web');
      const watch = await watchAdded(k, ns, 'to-v2');
      t.teardown(() => watch.close());
      const spawned = performance.now();
      await kubectlApply(k, httpRoute(ns, 'to-v2', toV2()));
      const woken = await polled;
      const committed = await watch.added;
      const ms = woken.at - committed;
      t.equal(woken.status, 200, "the caller's long-poll is woken");
      t.comment(
        `the caller's snapshot changed ${ms.toFixed(0)} ms after the API server's ADDED event (${(woken.at - spawned).toFixed(0)} ms after kubectl apply was started, its own start-up included)`,
      );
      t.ok(ms < 1000, `within 1 s of the API server accepting the route (${ms.toFixed(0)} ms)`);
      t.ok(d.store.topology?.routes?.has(routeKey('HTTPRoute', ns, 'to-v2')), "the route is in discover's topology");
      const withRoute = woken.json as Snapshot;
      const got = routesFrom(withRoute, ns, 'to-v2');
      const listeners = withRoute.outbound.filter((l) => l.routes.some((r) => got.includes(r)));
      t.ok(listeners.length >= 1, `web's snapshot has the route's rule, on ${listeners.map((l) => l.name).join(', ')}`);
      t.ok(
        listeners.every((l) => l.routes.filter((r) => got.includes(r)).length === 1),
        'once per listener',
      );
      t.ok(
        got.every((r) => JSON.stringify(r.path) === JSON.stringify({ type: 'PathPrefix', value: '/v2' })),
        'matching its path',
      );
      t.ok(
        got.every((r) => JSON.stringify(r.backends.map((b) => b.cluster)) === JSON.stringify([`api-v2.${ns}:8080`])),
        'sending to api-v2',
      );
      t.same(endpointsIn(withRoute, `api-v2.${ns}:8080`), ['10.244.41.2:8080'], 'with a cluster for api-v2 and its endpoint');

      // api-v2 is no dependency of web: only the route sends there. A change of its endpoints still reaches web.
      const polledBackend = longPoll(d, ns, 'web', withRoute.version, 20);
      await waiters(d, ns, 'web');
      await applyObject(
        api,
        endpointSlice(
          ns,
          'api-v2-1',
          'api-v2',
          [
            { ip: '10.244.41.2', ready: true },
            { ip: '10.244.41.9', ready: true },
          ],
          [{ name: 'http', port: 8080 }],
        ),
      );
      const moved = await polledBackend;
      t.equal(moved.status, 200, "a new endpoint of the route's backend wakes the caller");
      t.same(
        endpointsIn(moved.json as Snapshot, `api-v2.${ns}:8080`),
        ['10.244.41.2:8080', '10.244.41.9:8080'],
        'with both endpoints of api-v2',
      );
      await applyObject(api, endpointSlice(ns, 'api-v2-1', 'api-v2', [{ ip: '10.244.41.2', ready: true }], [{ name: 'http', port: 8080 }]));
      await until(
        'api-v2 back to one endpoint',
        async () => JSON.stringify(endpointsIn(await latest(d, ns), `api-v2.${ns}:8080`)) === JSON.stringify(['10.244.41.2:8080']),
      );

      const polledBack = longPoll(d, ns, 'web', (await latest(d, ns)).version, 20);
      await waiters(d, ns, 'web');
      await k.kubectlOk(['delete', 'httproute', 'to-v2', '-n', ns]);
      const back = await polledBack;
      t.equal(back.status, 200, 'deleting the route wakes the caller');
      t.equal((back.json as Snapshot).version, before.version, 'with the snapshot it had before the route (same version)');
      t.same(
        logs.filter((l) => l.level >= 40),
        [],
        "no warning or error in discover's log",
      );
    },
  );

  t.test(
    "status from two replicas: shoal's entry with observedGeneration and lastTransitionTime, written once per change; another controller's entry survives; no write loop; a parent no longer served loses shoal's entry",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'status';
      await seed(api, ns, 42);
      // Two replicas, as the chart runs them: no leader, each writes after its own applies.
      const a = await startWith(t, k);
      const b = await startWith(t, k);
      const logs = { filter: (f: (l: Record<string, any>) => boolean) => [...a.logs, ...b.logs].filter(f) };
      await kubectlApply(k, httpRoute(ns, 'to-v2', toV2()));
      let route: any;
      await until("shoal's status entry", async () => shoalEntries((route = await getRoute(k, ns, 'to-v2'))).length === 1, 10_000);
      const [entry] = shoalEntries(route);
      t.same(entry.parentRef, { group: '', kind: 'Service', name: 'api', port: 8080 }, 'for the Service parent');
      t.equal(condition(entry, 'Accepted')?.status, 'True', 'Accepted');
      t.equal(condition(entry, 'ResolvedRefs')?.status, 'True', 'ResolvedRefs');
      t.equal(condition(entry, 'Accepted')?.observedGeneration, route.metadata.generation, "observedGeneration is the route's generation");
      t.match(
        condition(entry, 'Accepted')?.lastTransitionTime,
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
        "lastTransitionTime, in Kubernetes' format",
      );
      const acceptedSince = condition(entry, 'Accepted').lastTransitionTime;

      // Another controller (a Gateway implementation) writes its own entry beside shoal's.
      const theirs = {
        parentRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'edge', namespace: ns },
        controllerName: 'example.com/gateway-controller',
        conditions: [
          {
            type: 'Accepted',
            status: 'True',
            reason: 'Accepted',
            message: 'theirs',
            observedGeneration: 1,
            lastTransitionTime: '2026-01-01T00:00:00Z',
          },
        ],
      };
      const path = `${ROUTES}/namespaces/${ns}/httproutes/to-v2`;
      const fresh = await api.ok('GET', path);
      await api.ok('PUT', `${path}/status`, { ...fresh, status: { parents: [...fresh.status.parents, theirs] } });

      // A spec change (generation 2): shoal's entry follows, theirs stays as they wrote it.
      await kubectlApply(k, httpRoute(ns, 'to-v2', toV2('/v3')));
      await until(
        'observedGeneration 2',
        async () => condition(shoalEntries((route = await getRoute(k, ns, 'to-v2')))[0], 'Accepted')?.observedGeneration === 2,
        10_000,
      );
      t.equal(route.metadata.generation, 2, 'the spec change made generation 2');
      t.same(
        route.status.parents.find((p: any) => p.controllerName === theirs.controllerName),
        theirs,
        "the other controller's entry is untouched",
      );
      t.equal(
        condition(shoalEntries(route)[0], 'Accepted').lastTransitionTime,
        acceptedSince,
        'Accepted stayed True: its lastTransitionTime did not move',
      );

      // Quiet: nothing changes, so nothing is written (a status write would bump resourceVersion and, in a loop, again).
      const rv = route.metadata.resourceVersion;
      await new Promise((r) => setTimeout(r, 2000));
      const quiet = await getRoute(k, ns, 'to-v2');
      t.equal(quiet.metadata.resourceVersion, rv, 'no write in 2 s of quiet: the resourceVersion stayed');
      t.equal(shoalEntries(quiet).length, 1, 'one shoal entry, whichever replica wrote it');
      const writes = logs.filter((l) => l.msg === 'route status written').length;
      t.equal(
        writes,
        2,
        `the two replicas wrote the status ${writes} times in all: once for the first status, once for generation 2 (the other replica found it written, or lost the race with a 409 and found it written on reading again)`,
      );

      // The route moves to another Service: shoal's entry for api goes, one for other comes; theirs stays.
      await kubectlApply(k, httpRoute(ns, 'to-v2', toV2('/v3'), [{ group: '', kind: 'Service', name: 'other', port: 8080 }]));
      await until(
        "shoal's entry for other only",
        async () => {
          const mine = shoalEntries((route = await getRoute(k, ns, 'to-v2')));
          return mine.length === 1 && mine[0].parentRef.name === 'other';
        },
        10_000,
      );
      t.same(
        route.status.parents.find((p: any) => p.controllerName === theirs.controllerName),
        theirs,
        "the other controller's entry is still untouched",
      );
      // And to a Gateway only: shoal serves no parent of it, so it has no entry at all.
      await kubectlApply(k, httpRoute(ns, 'to-v2', toV2('/v3'), [{ name: 'edge' }]));
      await until('no shoal entry', async () => shoalEntries((route = await getRoute(k, ns, 'to-v2'))).length === 0, 10_000);
      t.same(route.status.parents, [theirs], "only the other controller's entry is left");
      t.same(
        logs.filter((l) => l.level >= 40),
        [],
        "no warning or error in discover's log",
      );
    },
  );

  t.test(
    "a route whose only rule has a regex ECMAScript cannot compile: Accepted False with a reason, read back with kubectl, and the caller's snapshot unchanged; with a good rule beside it, that rule is in force and the route PartiallyInvalid",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'invalid';
      await seed(api, ns, 43);
      const { d, logs } = await startWith(t, k);
      const before = await latest(d, ns);
      const badRule = {
        matches: [{ path: { type: 'RegularExpression', value: '/v2/(unclosed' } }],
        backendRefs: [{ name: 'api-v2', port: 8080 }],
      };
      await kubectlApply(k, httpRoute(ns, 'bad-regex', [badRule]));
      let route: any;
      await until("shoal's status entry", async () => shoalEntries((route = await getRoute(k, ns, 'bad-regex'))).length === 1, 10_000);
      const accepted = condition(shoalEntries(route)[0], 'Accepted');
      t.equal(accepted.status, 'False', 'Accepted False');
      t.equal(accepted.reason, 'UnsupportedValue', 'reason UnsupportedValue');
      t.match(
        accepted.message,
        /^no rule shoal can carry out: spec\.rules\[0\]\.matches\[0\]\.path\.value: regular expression "\/v2\/\(unclosed" does not compile/,
        `and a message naming the problem: ${accepted.message}`,
      );
      t.equal(accepted.observedGeneration, route.metadata.generation, 'for this generation');
      t.notOk(condition(shoalEntries(route)[0], 'PartiallyInvalid'), 'no PartiallyInvalid on a route with no good rule');
      // The status is written after an apply of a topology holding the route: the caller's snapshot was
      // built with it, and is the one it had without it (docs/gateway-api.md: a route with no rule shoal can
      // carry out is not in force; web keeps its mesh-config route to api).
      t.ok(d.store.topology?.routes?.has(routeKey('HTTPRoute', ns, 'bad-regex')), "the route is in discover's topology");
      const after = await latest(d, ns);
      t.equal(after.version, before.version, "web's snapshot version did not change");
      t.same(after, before, 'nor its body');
      t.same(routesFrom(after, ns, 'bad-regex'), [], "nothing of the route in web's snapshot");

      // A good rule beside the bad one (generation 2): the good rule is in force, the bad one dropped.
      await kubectlApply(k, httpRoute(ns, 'bad-regex', [badRule, ...toV2()]));
      await until(
        'Accepted True with PartiallyInvalid',
        async () => condition(shoalEntries((route = await getRoute(k, ns, 'bad-regex')))[0], 'PartiallyInvalid')?.status === 'True',
        10_000,
      );
      const entry = shoalEntries(route)[0];
      t.same(
        [condition(entry, 'Accepted').status, condition(entry, 'Accepted').observedGeneration],
        ['True', route.metadata.generation],
        'Accepted True, for generation 2',
      );
      const partly = condition(entry, 'PartiallyInvalid');
      t.same(
        [partly.reason, partly.observedGeneration],
        ['UnsupportedValue', route.metadata.generation],
        'PartiallyInvalid True, UnsupportedValue',
      );
      t.match(
        partly.message,
        /^Dropped Rule 0: spec\.rules\[0\]\.matches\[0\]\.path\.value: regular expression/,
        `naming the dropped rule: ${partly.message}`,
      );
      await until("the good rule in web's snapshot", async () => routesFrom(await latest(d, ns), ns, 'bad-regex').length > 0, 10_000);
      const got = routesFrom(await latest(d, ns), ns, 'bad-regex');
      t.ok(
        got.length > 0 &&
          got.every(
            (r) =>
              r.source === `HTTPRoute ${ns}/bad-regex rule 1 match 0` &&
              JSON.stringify(r.backends.map((b) => b.cluster)) === JSON.stringify([`api-v2.${ns}:8080`]),
          ),
        `only the good rule, sending to api-v2: ${got.map((r) => r.source).join('; ')}`,
      );

      // The bad rule removed (generation 3): PartiallyInvalid leaves shoal's entry.
      await kubectlApply(k, httpRoute(ns, 'bad-regex', toV2()));
      await until(
        'PartiallyInvalid gone',
        async () => {
          const e = shoalEntries((route = await getRoute(k, ns, 'bad-regex')))[0];
          return condition(e, 'Accepted')?.observedGeneration === route.metadata.generation && !condition(e, 'PartiallyInvalid');
        },
        10_000,
      );
      t.same(
        shoalEntries(route)[0].conditions.map((c: any) => [c.type, c.status]),
        [
          ['Accepted', 'True'],
          ['ResolvedRefs', 'True'],
        ],
        'Accepted and ResolvedRefs only',
      );
      t.same(
        logs.filter((l) => l.level >= 50),
        [],
        "no error in discover's log",
      );
    },
  );

  t.test('a GRPCRoute: in the topology, and its status written through grpcroutes/status', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    const ns = 'grpc';
    await seed(api, ns, 45);
    const { d, logs } = await startWith(t, k);
    await kubectlApply(k, {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GRPCRoute',
      metadata: { name: 'greeter', namespace: ns },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'api', port: 8080 }],
        rules: [{ matches: [{ method: { service: 'helloworld.Greeter' } }], backendRefs: [{ name: 'api-v2', port: 8080 }] }],
      },
    });
    await until(
      "the GRPCRoute in discover's topology",
      () => d.store.topology?.routes?.has(routeKey('GRPCRoute', ns, 'greeter')) === true,
      10_000,
    );
    let route: any;
    await until(
      "shoal's status entry",
      async () => shoalEntries((route = await k.getJson(['grpcroute', 'greeter', '-n', ns]))).length === 1,
      10_000,
    );
    const entry = shoalEntries(route)[0];
    t.same(entry.parentRef, { group: '', kind: 'Service', name: 'api', port: 8080 }, 'for the Service parent');
    t.equal(
      condition(entry, 'Accepted')?.observedGeneration,
      route.metadata.generation,
      `Accepted ${condition(entry, 'Accepted')?.status} (${condition(entry, 'Accepted')?.reason}), for this generation`,
    );
    t.same(
      logs.filter((l) => l.level >= 40),
      [],
      "no warning or error in discover's log",
    );
  });

  t.test(
    'without the CRDs: discover starts, serves and says once that routes are off (log, /readyz details); it picks them up when the CRDs come, and drops them when they go',
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'nocrds';
      await seed(api, ns, 44);
      const crds = (await k.kubectlOk(['get', 'crd', '-o', 'name'])).split('\n').filter((x) => x.includes('gateway.networking'));
      t.ok(crds.length >= 2, `the control plane served the Gateway API CRDs (${crds.length})`);
      await k.kubectlOk(['delete', ...crds, '--wait=true']);
      await until('httproutes gone from the API', async () => (await api.req('GET', `${ROUTES}/httproutes`)).status === 404, 60_000);

      const started = performance.now();
      const { d, logs } = await startWith(t, k, 500);
      t.comment(`ready ${(performance.now() - started).toFixed(0)} ms after the start, without the Gateway API`);
      const first = await latest(d, ns);
      t.equal(first.app, 'web', "the caller's snapshot is served");
      const noRoute = first.version;
      const ready = await call(d.url, 'GET', '/readyz');
      t.equal(ready.status, 200, '/readyz: ready');
      t.match(
        ready.json.details?.[0],
        /no Gateway API routes: httproutes 404 .*grpcroutes 404 .*checking again every 1 s/,
        `/readyz details say routes are off: ${ready.json.details?.[0]}`,
      );
      await new Promise((r) => setTimeout(r, 2000));
      const warned = logs.filter((l) => l.level >= 40);
      t.same(
        warned.map((l) => `${l.informer} ${l.status}`).sort(),
        ['grpcroutes 404', 'httproutes 404'],
        'one warning per route kind after several looks again, none else',
      );
      t.match(warned[0]?.msg, /not served \(the Gateway API CRDs are not installed\): going on without them/, 'saying why');

      // The CRDs come: within a look or two, routes apply.
      await installGatewayCrds(k.cluster.dir);
      await kubectlApply(k, httpRoute(ns, 'to-v2', toV2()));
      await until("the route in web's snapshot", async () => routesFrom(await latest(d, ns), ns, 'to-v2').length > 0, 15_000);
      t.pass('the route reached the snapshot after the CRDs were installed');
      t.ok(
        logs.some((l) => l.msg === 'the Gateway API serves httproutes now: watching them'),
        'logged that routes are watched now',
      );
      const readyAgain = await call(d.url, 'GET', '/readyz');
      t.same(readyAgain.json, { status: 'ready' }, '/readyz has no details any more');
      await until("shoal's status entry", async () => shoalEntries(await getRoute(k, ns, 'to-v2')).length === 1, 10_000);
      t.pass('and its status is written');

      // The CRDs deleted while discover runs: their routes leave the snapshots, and the looks resume.
      const withRoute = await latest(d, ns);
      await k.kubectlOk(['delete', 'crd', 'httproutes.gateway.networking.k8s.io', 'grpcroutes.gateway.networking.k8s.io', '--wait=true'], {
        timeoutMs: 120_000,
      });
      await until("the route gone from web's snapshot", async () => routesFrom(await latest(d, ns), ns, 'to-v2').length === 0, 30_000);
      const gone = await latest(d, ns);
      t.not(gone.version, withRoute.version, "the CRD deleted: web's snapshot lost the route");
      t.equal(gone.version, noRoute, 'and is again the one it had before the route (same version)');
      await until(
        '/readyz details again',
        async () => /httproutes 404/.test(String((await call(d.url, 'GET', '/readyz')).json?.details?.[0])),
        30_000,
      );
      const readyWithout = await call(d.url, 'GET', '/readyz');
      t.equal(readyWithout.status, 200, 'still ready, without routes');
      t.match(readyWithout.json.details?.[0], /no Gateway API routes: httproutes 404/, 'and /readyz says routes are off again');
      t.same(
        logs.filter((l) => l.level >= 50),
        [],
        'no error logged',
      );
    },
  );
}
