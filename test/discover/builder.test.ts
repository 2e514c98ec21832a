// From topology to snapshot: addresses, routes, weighted splits, DNS names, endpoint conditions.
import t from 'tap';
import { parseStaticTopology } from '../../discover/topology/staticFile.ts';
import { buildSnapshot, usableEndpoints } from '../../discover/snapshot/builder.ts';
import { snapshotError, type Snapshot } from '../../shared/snapshot.ts';
import { ConfigError } from '../../shared/meshConfig.ts';

function snapshotOf(yaml: string, app = 'web', ns = 'default'): Snapshot {
  const topo = parseStaticTopology(yaml);
  const s = buildSnapshot(topo.apps.get(`${ns}/${app}`)!, topo);
  const err = snapshotError(JSON.parse(JSON.stringify(s)));
  if (err) throw new Error(err);
  return s;
}

const CANARY = `
clusterDomain: corp.local
services:
  - { name: api-v1, ports: [{ port: 8080, protocol: http }], endpoints: [10.1.0.1:8080] }
  - { name: api-v2, ports: [{ port: 8080, protocol: http }], endpoints: [10.2.0.1:8080] }
  - { name: db, namespace: data, ports: [5432], endpoints: [10.3.0.1] }
apps:
  - name: web
    config:
      base_ports: [{ port: 8080 }]
      base_services:
        - { depend_service_alias: api-v1, port: 8080, options: { Domains: api.example, Weight: 80 } }
        - { depend_service_alias: api-v2, port: 8080, options: { Domains: api.example, Weight: 20 } }
        - { depend_service_alias: db.data, port: 5432, protocol: tcp }
`;

t.test('weighted split behind a shared domain, cross-namespace names, cluster domain', async (t) => {
  const s = snapshotOf(CANARY);
  const shared = s.outbound.filter((l) => l.name === 'api.example:8080');
  t.equal(shared.length, 1, 'one listener for the shared domain');
  t.same(shared[0].routes, [
    {
      domains: ['api.example'],
      prefix: '/',
      headers: [],
      backends: [
        { cluster: 'api-v1.default:8080', weight: 80 },
        { cluster: 'api-v2.default:8080', weight: 20 },
      ],
    },
  ]);
  const dns = Object.fromEntries(s.dns.map((d) => [d.name, d.address]));
  t.equal(dns['api.example'], shared[0].address, 'the domain resolves to the shared listener');
  t.not(dns['api-v1'], dns['api-v2'], 'each dependency keeps its own address');
  t.not(dns['api-v1'], shared[0].address);
  t.ok(dns['db.data.svc.corp.local'], 'cross-namespace names use the cluster domain');
  t.notOk(dns.db, 'a dependency in another namespace has no bare name');
  t.same(
    s.dns.filter((d) => d.name.startsWith('api-v1')).map((d) => d.name),
    ['api-v1', 'api-v1.default', 'api-v1.default.svc', 'api-v1.default.svc.corp.local'],
  );
  t.notOk(
    s.outbound.some((l) => l.address === '127.0.0.1' && l.port === 8080),
    "no 127.0.0.1 listener on a port shared by two dependencies (and the app's own)",
  );
  t.ok(
    s.outbound.some((l) => l.address === '127.0.0.1' && l.port === 5432 && l.mode === 'l4'),
    '127.0.0.1:5432 for the unique tcp port',
  );
  t.same(s.inbound, [
    { name: 'inbound:8080', listenPort: 65380, port: 8080, protocol: 'http', mode: 'l7', limits: { rps: 0, burst: 0, connections: 0 } },
  ]);
  t.same(s.status.errors, []);
});

t.test('addresses do not move when other dependencies come and go', async (t) => {
  const a = snapshotOf(CANARY);
  const b = snapshotOf(CANARY.replace(/        - \{ depend_service_alias: api-v2.*\n/, ''));
  const addr = (s: Snapshot, name: string) => s.dns.find((d) => d.name === name)?.address;
  t.equal(addr(a, 'api-v1'), addr(b, 'api-v1'));
  t.equal(addr(a, 'db.data'), addr(b, 'db.data'));
  t.equal(addr(b, 'api.example'), addr(b, 'api-v1'), 'an unshared domain resolves to its dependency');
  t.equal(snapshotOf(CANARY).version, a.version, 'same input, same version');
});

t.test('prefix and header routes are ordered most specific first', async (t) => {
  const s = snapshotOf(`
services:
  - { name: a, ports: [{ port: 80, protocol: http }], endpoints: [10.0.0.1] }
  - { name: b, ports: [{ port: 80, protocol: http }], endpoints: [10.0.0.2] }
  - { name: c, ports: [{ port: 80, protocol: http }], endpoints: [10.0.0.3] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: a, port: 80, options: { Domains: x.test } }
        - { depend_service_alias: b, port: 80, options: { Domains: x.test, Prefix: /v2 } }
        - { depend_service_alias: c, port: 80, options: { Domains: x.test, Prefix: /v2, Headers: "x-canary:1;x-user:me" } }
`);
  const l = s.outbound.find((x) => x.name === 'x.test:80')!;
  t.same(
    l.routes.map((r) => [r.prefix, r.headers.length, r.backends[0].cluster]),
    [
      ['/v2', 2, 'c.default:80'],
      ['/v2', 0, 'b.default:80'],
      ['/', 0, 'a.default:80'],
    ],
  );
});

t.test('endpoint conditions: ready first, serving-terminating only when none is ready', async (t) => {
  const e = (address: string, ready: boolean, serving: boolean, terminating: boolean) => ({
    address,
    port: 80,
    weight: 1,
    zone: '',
    ready,
    serving,
    terminating,
  });
  t.same(
    usableEndpoints([e('a', true, true, false), e('b', false, true, true), e('c', false, false, false)]).map((x) => x.address),
    ['a'],
  );
  t.same(
    usableEndpoints([e('b', false, true, true), e('c', false, false, false)]).map((x) => x.address),
    ['b'],
  );
  t.same(usableEndpoints([e('c', false, false, false)]), []);
});

t.test('missing services show as problems, with an empty cluster so the sidecar answers explicitly', async (t) => {
  const s = snapshotOf(`
services: []
apps:
  - name: web
    config: { base_services: [{ depend_service_alias: ghost, port: 80 }] }
`);
  t.same(s.clusters[0].endpoints, []);
  t.match(s.status.errors[0], /dependency ghost:80: service default\/ghost not found/);
  t.ok(
    s.dns.some((d) => d.name === 'ghost'),
    'the name still resolves, so the app gets a clear 503 rather than NXDOMAIN',
  );
});

const badTopologies: Array<[string, string, RegExp]> = [
  [
    'bad option',
    'apps: [{ name: web, config: { base_services: [{ depend_service_alias: api, port: 80, options: { MaxRequests: ten } }] } }]',
    /app default\/web, dependency api:80: invalid option MaxRequests="ten": expected an integer/,
  ],
  ['unknown field', 'services: [{ name: api, ports: [80], endpoint: [] }]', /unknown field endpoint/],
  ['bad address pin', 'services: [{ name: api, address: 10.0.0.1, ports: [80] }]', /expected a loopback address/],
  ['pin twice', 'services: [{ name: a, address: 127.0.0.9, ports: [80] }, { name: b, address: 127.0.0.9, ports: [80] }]', /already pinned/],
  ['no ports', 'services: [{ name: api, ports: [] }]', /needs at least one port/],
  ['multi-port shorthand', 'services: [{ name: api, ports: [80, 81], endpoints: ["10.0.0.1:80"] }]', /give a ports map/],
  ['duplicate app', 'apps: [{ name: web }, { name: web }]', /listed twice/],
  ['not yaml', 'services: [', /not valid YAML/],
  ['not a mapping', '- a\n- b', /must be a mapping/],
];
for (const [name, yaml, re] of badTopologies) {
  t.test(`topology refused: ${name}`, async (t) => {
    let caught: unknown;
    try {
      parseStaticTopology(yaml);
    } catch (err) {
      caught = err;
    }
    t.type(caught, ConfigError);
    t.match((caught as Error | undefined)?.message, re);
  });
}

t.test('RetryNonIdempotent reaches the route; absent, the route has no such field', async (t) => {
  const yaml = (a: string, b: string) => `
services:
  - { name: api-v1, ports: [{ port: 8080, protocol: http }], endpoints: [10.1.0.1:8080] }
  - { name: api-v2, ports: [{ port: 8080, protocol: http }], endpoints: [10.2.0.1:8080] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api-v1, port: 8080, options: { Domains: api.example, RetryNonIdempotent: ${a} } }
        - { depend_service_alias: api-v2, port: 8080, options: { Domains: api.example, RetryNonIdempotent: ${b} } }
`;
  const both = snapshotOf(yaml('"YES"', '"YES"'));
  const own = both.outbound.find((l) => l.name.startsWith('api-v1'))!;
  t.equal(own.routes[0].retryNonIdempotent, true, "the dependency's own route");
  t.equal(
    both.outbound.find((l) => l.name === 'api.example:8080')!.routes[0].retryNonIdempotent,
    true,
    'a split route where both ask for it',
  );
  const one = snapshotOf(yaml('"YES"', '"NO"'));
  t.notOk(
    'retryNonIdempotent' in one.outbound.find((l) => l.name === 'api.example:8080')!.routes[0],
    'a split route where only one asks: off',
  );
  t.notOk('retryNonIdempotent' in one.outbound.find((l) => l.name.startsWith('api-v2'))!.routes[0], 'NO: no field at all');
});
