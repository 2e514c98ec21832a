// The static topology's routes: end to end. discover serves the compiled routes, shoal get shows them with
// their source, an edit rebuilds only the apps it affects, an invalid route is refused naming route and field.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { request } from 'undici';
import { getCommand } from '../../../cli/get.ts';
import { createDiscoverMetrics } from '../../../discover/metrics.ts';
import { SnapshotStore, type ApplyResult } from '../../../discover/snapshot/store.ts';
import { StaticSource } from '../../../discover/source/staticSource.ts';
import { parseStaticTopology } from '../../../discover/topology/staticFile.ts';
import { buildSnapshot } from '../../../discover/snapshot/builder.ts';
import { createLogger } from '../../../shared/log.ts';
import { ConfigError } from '../../../shared/meshConfig.ts';
import { snapshotError, type Snapshot } from '../../../shared/snapshot.ts';
import { DEMO_TOPOLOGY } from '../../../demo.ts';
import { withDiscover } from '../../lib/discover.ts';

const TOPOLOGY = (v1: number, v2: number) => `
services:
  - { name: api, ports: [{ port: 8080, protocol: http }], endpoints: [10.0.0.1:8080] }
  - { name: api-v1, ports: [{ port: 8080, protocol: http }], endpoints: [10.1.0.1:8080, 10.1.0.2:8080] }
  - { name: api-v2, ports: [{ port: 8080, protocol: http }], endpoints: [10.2.0.1:8080] }
  - { name: db, ports: [5432], endpoints: [10.3.0.1] }
apps:
  - { name: web, config: { base_services: [{ depend_service_alias: api, port: 8080 }] } }
  - { name: batch, namespace: jobs, config: { base_services: [{ depend_service_alias: api.default, port: 8080 }] } }
  - { name: report, config: { base_services: [{ depend_service_alias: db, port: 5432 }] } }
routes:
  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata:
      name: canary
      namespace: default
      labels: { team: api }
    spec:
      parentRefs:
        - group: ""
          kind: Service
          name: api
          port: 8080
      rules:
        - matches:
            - headers:
                - { name: x-canary, value: "1" }
          backendRefs:
            - { name: api-v2, port: 8080 }
        - backendRefs:
            - { name: api-v1, port: 8080, weight: ${v1} }
            - { name: api-v2, port: 8080, weight: ${v2} }
          timeouts: { request: 3s }
`;

async function snapshot(base: string, ns: string, app: string): Promise<Snapshot> {
  const res = await request(`${base}/v2/snapshot/${ns}/${app}`);
  t.equal(res.statusCode, 200);
  return (await res.body.json()) as Snapshot;
}

t.test('discover on a static file serves the compiled routes; shoal get shows where each came from', async (t) => {
  const d = await withDiscover(t, TOPOLOGY(90, 10));
  const web = await snapshot(d.url, 'default', 'web');
  t.equal(snapshotError(web), null);
  const l = web.outbound.find((x) => x.name === 'api:8080')!;
  t.same(
    l.routes.map((r) => [r.headers.map((h) => h.name), r.backends.map((b) => `${b.cluster} ${b.weight}`), r.timeoutMs, r.source]),
    [
      [['x-canary'], ['api-v2.default:8080 1'], undefined, 'HTTPRoute default/canary rule 0 match 0'],
      [[], ['api-v1.default:8080 90', 'api-v2.default:8080 10'], 3000, 'HTTPRoute default/canary rule 1 match 0'],
    ],
  );
  t.same(
    web.clusters.map((c) => [c.name, c.endpoints.length]),
    [
      ['api-v1.default:8080', 2],
      ['api-v2.default:8080', 1],
      ['api.default:8080', 1],
    ],
  );
  const batch = await snapshot(d.url, 'jobs', 'batch');
  t.equal(
    batch.outbound.find((x) => x.name === 'api.default:8080')!.routes.length,
    2,
    'a producer route applies to callers in other namespaces',
  );
  const text = await getCommand(['default/web'], {
    discover: d.url,
    output: 'table',
    token: '',
    'token-file': '',
    kubeconfig: '',
    context: '',
  });
  t.match(
    text,
    /ROUTES\n {2}api:8080 \(127\.[0-9.]+:8080\)\n {4}1\. path \/\* \[x-canary=1\] -> api-v2\.default:8080\n {7}from HTTPRoute default\/canary rule 0 match 0\n {4}2\. path \/\* -> api-v1\.default:8080 90%, api-v2\.default:8080 10%; timeout 3000ms\n {7}from HTTPRoute default\/canary rule 1 match 0/,
  );
  const report = await getCommand(['default/report'], {
    discover: d.url,
    output: 'table',
    token: '',
    'token-file': '',
    kubeconfig: '',
    context: '',
  });
  t.match(
    report,
    /ROUTES\n {2}db:5432 \(127\.[0-9.]+:5432\)\n {4}1\. \*\/ -> db\.default:5432\n {7}from mesh config\n/,
    'a route of the mesh config says so',
  );

  // An edit of the route reaches the callers; the app it does not concern keeps its version.
  const reportBefore = await snapshot(d.url, 'default', 'report');
  d.edit(TOPOLOGY(50, 50));
  const until = Date.now() + 5000;
  let after = web;
  while (Date.now() < until && after.version === web.version) {
    await new Promise((r) => setTimeout(r, 20));
    after = await snapshot(d.url, 'default', 'web');
  }
  t.same(
    after.outbound.find((x) => x.name === 'api:8080')!.routes[1].backends.map((b) => b.weight),
    [50, 50],
    'the new weights are served',
  );
  t.equal((await snapshot(d.url, 'default', 'report')).version, reportBefore.version, 'report (no route concerns it) is unchanged');
});

t.test('a route edit rebuilds exactly the apps it affects', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-routes-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, TOPOLOGY(90, 10));
  const log = createLogger('discover', 'silent');
  const store = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
  t.teardown(() => store.close());
  const results: Array<{ affected: string[] | undefined; result: ApplyResult }> = [];
  const errors: Error[] = [];
  const source = new StaticSource({
    file,
    log,
    onTopology: (top, affected) => results.push({ affected: affected && [...affected].sort(), result: store.apply(top, affected) }),
    onError: (err) => errors.push(err),
  });
  t.teardown(() => source.close());
  await source.start();
  t.equal(results[0].result.rebuilt, 3, 'the first load builds every app');
  const versions = () =>
    Object.fromEntries(
      ['default/web', 'jobs/batch', 'default/report'].map((k) => [k, store.get(k.split('/')[0], k.split('/')[1])!.snapshot.version]),
    );
  const v0 = versions();

  writeFileSync(file, TOPOLOGY(80, 20));
  await source.reload();
  const last = results.at(-1)!;
  t.same(last.affected, ['default/web', 'jobs/batch'], "the callers of the route's Service are the apps affected");
  t.equal(last.result.rebuilt, 2, 'and only they are rebuilt');
  const v1 = versions();
  t.not(v1['default/web'], v0['default/web']);
  t.not(v1['jobs/batch'], v0['jobs/batch']);
  t.equal(v1['default/report'], v0['default/report']);

  // A consumer route in jobs: only batch's snapshot changes.
  writeFileSync(
    file,
    `${TOPOLOGY(80, 20)}  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: { name: mine, namespace: jobs }
    spec:
      parentRefs: [{ group: "", kind: Service, name: api, namespace: default }]
      rules: [{ backendRefs: [{ name: api-v1, namespace: default, port: 8080 }] }]
`,
  );
  await source.reload();
  t.equal(results.at(-1)!.result.rebuilt, 1, 'a consumer route rebuilds the callers in its namespace only');
  const v2 = versions();
  t.not(v2['jobs/batch'], v1['jobs/batch']);
  t.equal(v2['default/web'], v1['default/web']);

  // An endpoint of a route backend: the callers routing there.
  writeFileSync(file, `${TOPOLOGY(80, 20).replace('10.2.0.1:8080]', '10.2.0.9:8080]')}`);
  await source.reload();
  t.same(results.at(-1)!.affected, ['default/web', 'jobs/batch']);

  // An invalid route: refused, naming the route and the field; the last good state stays.
  const before = results.length;
  writeFileSync(file, TOPOLOGY(80, 20).replace('weight: 80', 'weight: -1'));
  await source.reload();
  t.equal(results.length, before, 'nothing applied');
  t.match(
    errors.at(-1)?.message,
    /^route HTTPRoute default\/canary \(routes\[0\]\): spec\.rules\[1\]\.backendRefs\[0\]\.weight: must be >= 0/,
  );
});

t.test('load errors name the route and the field', async (t) => {
  const refuse = (yaml: string, re: RegExp, what: string) => {
    try {
      parseStaticTopology(yaml);
      t.fail(`${what}: accepted`);
    } catch (err) {
      t.ok(err instanceof ConfigError, `${what}: a ConfigError`);
      t.match((err as Error).message, re, what);
    }
  };
  const r = (body: string) => `routes:\n  - apiVersion: gateway.networking.k8s.io/v1\n${body}`;
  refuse(
    r('    kind: HTTPRoute\n    metadata: { name: a }\n    spec: { rules: [{ matches: [{ path: { type: Exact, value: x } }] }] }\n'),
    /^route HTTPRoute default\/a \(routes\[0\]\): spec\.rules\[0\]\.matches\[0\]\.path: Invalid value: value must be an absolute path/,
    'a CEL rule',
  );
  refuse(
    r(
      '    kind: GRPCRoute\n    metadata: { name: g, namespace: x }\n    spec: { rules: [{ filters: [{ type: ExtensionRef, extensionRef: { group: a.io, kind: F, name: f } }] }] }\n',
    ),
    /^route GRPCRoute x\/g \(routes\[0\]\): spec\.rules\[0\]\.filters\[0\]\.type: ExtensionRef filters are not supported by shoal/,
    'an unsupported filter',
  );
  refuse(
    r('    kind: HTTPRoute\n    metadata: { name: a }\n    spec: {}\n    status: {}\n'),
    /^routes\[0\]: unknown field status/,
    'status is not part of what is applied',
  );
  refuse(r('    kind: TCPRoute\n    metadata: { name: a }\n    spec: {}\n'), /kind: Unsupported value "TCPRoute"/, 'another kind');
  refuse(
    r(
      '    kind: HTTPRoute\n    metadata: { name: a }\n    spec: {}\n  - apiVersion: gateway.networking.k8s.io/v1\n    kind: HTTPRoute\n    metadata: { name: a, namespace: default }\n    spec: {}\n',
    ),
    /route HTTPRoute\/default\/a is listed twice/,
    'a duplicate',
  );
  refuse(
    r('    kind: HTTPRoute\n    metadata: { name: a, uid: x }\n    spec: {}\n'),
    /routes\[0\]\.metadata: unknown field uid/,
    'metadata fields the API server sets',
  );
});

t.test('the demo topology: a 90/10 canary and a header match for shop, api as before', async (t) => {
  const top = parseStaticTopology(DEMO_TOPOLOGY);
  const web = buildSnapshot(top.apps.get('default/web')!, top);
  t.equal(snapshotError(web), null);
  t.same(web.status.errors, []);
  const shop = web.outbound.find((l) => l.address === '127.0.0.4' && l.port === 9080)!;
  t.same(
    shop.routes.map((r) => [r.headers, r.backends.map((b) => [b.cluster, b.weight])]),
    [
      [[{ name: 'x-canary', value: 'always' }], [['shop-v2.default:9080', 1]]],
      [
        [],
        [
          ['shop-v1.default:9080', 90],
          ['shop-v2.default:9080', 10],
        ],
      ],
    ],
  );
  const api = web.outbound.find((l) => l.address === '127.0.0.2' && l.port === 8080)!;
  t.same(
    api.routes.map((r) => [r.prefix, r.backends, r.source]),
    [['/', [{ cluster: 'api.default:8080', weight: 100 }], undefined]],
    'api keeps its mesh-config route',
  );
  t.same(
    web.clusters.find((c) => c.name === 'api.default:8080')!.endpoints.map((e) => e.address),
    ['127.0.10.1', '127.0.10.2', '127.0.10.3'],
  );
});

t.test('over 200 random edits with routes, applying only the affected apps gives what a full rebuild gives', async (t) => {
  let seed = 7;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return Math.floor(seed / 65536) % n; // the high bits: the low ones of this generator cycle fast
  };
  const NS = ['a', 'b'];
  interface R {
    ns: string;
    parent: string;
    port: number | null;
    backends: Array<[string, number]>;
    header: boolean;
  }
  const svcs = new Map<string, string[]>();
  const apps = new Map<string, string[]>();
  const routes = new Map<string, R>();
  for (let i = 0; i < 6; i++) svcs.set(`${NS[i % 2]}/svc-${i}`, [`10.0.${i}.1`]);
  for (let i = 0; i < 6; i++)
    apps.set(`${NS[i % 2]}/app-${i}`, [`${NS[(i + 1) % 2]}/svc-${(i + 1) % 6}`, `${NS[(i + 2) % 2]}/svc-${(i + 2) % 6}`]);
  const svcName = () => `svc-${rnd(7)}`;
  const anySvc = () => {
    const n = rnd(7);
    return `${NS[n % 2]}/svc-${n}`;
  };
  const render = (): string => {
    const lines = ['services:'];
    for (const [k, eps] of svcs) {
      const [ns, name] = k.split('/');
      lines.push(
        `  - { name: ${name}, namespace: ${ns}, ports: [{ port: 80, protocol: http }, { port: 81, protocol: http }], endpoints: [${eps.join(', ')}] }`,
      );
    }
    lines.push('apps:');
    for (const [k, deps] of apps) {
      const [ns, name] = k.split('/');
      lines.push(
        `  - { name: ${name}, namespace: ${ns}, config: { base_services: [${deps.map((d) => `{ depend_service_alias: ${d.split('/')[1]}.${d.split('/')[0]}, port: 80 }`).join(', ')}] } }`,
      );
    }
    lines.push('routes:');
    for (const [name, r] of routes) {
      const [pns, pname] = r.parent.split('/');
      lines.push(`  - apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: { name: ${name}, namespace: ${r.ns} }
    spec:
      parentRefs: [{ group: "", kind: Service, name: ${pname}, namespace: ${pns}${r.port ? `, port: ${r.port}` : ''} }]
      rules:
        - ${r.header ? 'matches: [{ headers: [{ name: x, value: "1" }] }]\n          ' : ''}backendRefs: [${r.backends.map(([b, w]) => `{ name: ${b.split('/')[1]}, namespace: ${b.split('/')[0]}, port: 80, weight: ${w} }`).join(', ')}]`);
    }
    return `${lines.join('\n')}\n`;
  };
  const edits = [
    () => {
      const k = anySvc();
      const eps = svcs.get(k);
      if (eps) eps.push(`10.1.${rnd(250)}.${rnd(250)}`);
    },
    () => {
      const k = anySvc();
      if (svcs.has(k)) svcs.delete(k);
      else svcs.set(k, [`10.2.${rnd(250)}.1`]);
    },
    () => {
      const k = `${NS[rnd(2)]}/app-${rnd(7)}`;
      if (apps.has(k)) apps.delete(k);
      else apps.set(k, [anySvc()]);
    },
    () => {
      const name = `r-${rnd(5)}`;
      if (routes.has(name)) routes.delete(name);
      else
        routes.set(name, {
          ns: NS[rnd(2)],
          parent: anySvc(),
          port: rnd(3) === 0 ? 81 : rnd(2) === 0 ? 80 : null,
          backends: [[anySvc(), 1 + rnd(9)]],
          header: rnd(2) === 0,
        });
    },
    () => {
      const r = routes.get(`r-${rnd(5)}`);
      if (r)
        r.backends = [
          [anySvc(), 1 + rnd(9)],
          [`${NS[rnd(2)]}/${svcName()}`, rnd(5)],
        ];
    },
    () => {
      const r = routes.get(`r-${rnd(5)}`);
      if (r) {
        r.ns = NS[rnd(2)];
        r.header = !r.header;
      }
    },
  ];
  const log = createLogger('discover', 'silent');
  const dir = mkdtempSync(join(tmpdir(), 'shoal-routes-fuzz-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, render());
  const store = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
  t.teardown(() => store.close());
  let partial = 0;
  let whole = 0;
  const problems: Error[] = [];
  const source = new StaticSource({
    file,
    log,
    onTopology: (top, affected) => {
      if (affected) partial++;
      else whole++;
      store.apply(top, affected);
    },
    onError: (err) => problems.push(err),
  });
  t.teardown(() => source.close());
  await source.start();
  let mismatches = 0;
  let withRoutes = 0;
  for (let i = 0; i < 200; i++) {
    edits[rnd(edits.length)]();
    const text = render();
    writeFileSync(file, text);
    await source.reload();
    const fresh = parseStaticTopology(text);
    if (fresh.routes && fresh.routes.size > 0) withRoutes++;
    const full = new SnapshotStore(createDiscoverMetrics(new Registry()), log);
    full.apply(fresh);
    for (const key of apps.keys()) {
      const [ns, app] = key.split('/');
      if (store.get(ns, app)?.etag !== full.get(ns, app)?.etag) mismatches++;
    }
    full.close();
  }
  t.equal(mismatches, 0, "every app's snapshot matches a full rebuild after every edit");
  t.same(problems, [], 'every file was valid');
  t.equal(whole, 1, `only the first load rebuilt everything; every edit took the partial path (${partial} times)`);
  t.ok(partial > 100, `${partial} edits changed the file`);
  t.ok(withRoutes > 150, `most topologies had routes (${withRoutes} of 200)`);
});
