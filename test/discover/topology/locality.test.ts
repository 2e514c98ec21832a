// The static topology's locality fields: endpoint zone, node and hints, the service's
// trafficDistribution (hints derived as the EndpointSlice controller does), strict errors, and the
// LOCALITY_FAILOVER option; all of it carried into the snapshot.
import t from 'tap';
import { parseStaticTopology } from '../../../discover/topology/staticFile.ts';
import { buildSnapshot } from '../../../discover/snapshot/builder.ts';
import { snapshotError } from '../../../shared/snapshot.ts';

const app = (normal = '') => `apps:
  - name: web
    config:
      base_services: [{ depend_service_alias: api, port: 80 }]
${normal}`;

function snapshotOf(services: string, normal = '') {
  const topo = parseStaticTopology(`services:\n${services}${app(normal)}`);
  const snap = buildSnapshot(topo.apps.get('default/web')!, topo);
  t.equal(snapshotError(snap), null, 'the snapshot is valid');
  return snap;
}

t.test('zone, node and explicit hints (names or { name } as in an EndpointSlice) reach the snapshot', async (t) => {
  const snap = snapshotOf(`  - name: api
    ports: [80]
    endpoints:
      - { address: 10.0.0.1, zone: a, node: n1, hints: { forZones: [a], forNodes: [n1] } }
      - { address: 10.0.0.2, zone: b, node: n2, hints: { forZones: [{ name: b }, { name: b }] } }
      - { address: 10.0.0.3 }
`);
  t.same(
    snap.clusters[0].endpoints.map((e) => [e.address, e.zone, e.node, e.forZones, e.forNodes]),
    [
      ['10.0.0.1', 'a', 'n1', ['a'], ['n1']],
      ['10.0.0.2', 'b', 'n2', ['b'], undefined],
      ['10.0.0.3', '', undefined, undefined, undefined],
    ],
  );
  t.notOk('localityFailover' in snap.clusters[0], 'no failover unless asked');
});

t.test('trafficDistribution derives hints as the EndpointSlice controller does', async (t) => {
  const eps = `    endpoints:
      - { address: 10.0.0.1, zone: a, node: n1 }
      - { address: 10.0.0.2, zone: b, node: n2 }
`;
  const zone = snapshotOf(`  - name: api\n    ports: [80]\n    trafficDistribution: PreferSameZone\n${eps}`);
  t.same(
    zone.clusters[0].endpoints.map((e) => [e.forZones, e.forNodes]),
    [
      [['a'], undefined],
      [['b'], undefined],
    ],
    'PreferSameZone: each endpoint for its zone',
  );
  const close = snapshotOf(`  - name: api\n    ports: [80]\n    trafficDistribution: PreferClose\n${eps}`);
  t.same(
    close.clusters[0].endpoints.map((e) => e.forZones),
    [['a'], ['b']],
    'PreferClose is the older name of PreferSameZone',
  );
  const node = snapshotOf(`  - name: api\n    ports: [80]\n    trafficDistribution: PreferSameNode\n${eps}`);
  t.same(
    node.clusters[0].endpoints.map((e) => [e.forZones, e.forNodes]),
    [
      [['a'], ['n1']],
      [['b'], ['n2']],
    ],
    'PreferSameNode: node and zone hints',
  );
  const missing = snapshotOf(
    `  - name: api\n    ports: [80]\n    trafficDistribution: PreferSameZone\n    endpoints: [{ address: 10.0.0.1, zone: a }, { address: 10.0.0.2 }]\n`,
  );
  t.same(
    missing.clusters[0].endpoints.map((e) => e.forZones),
    [undefined, undefined],
    'an endpoint without a zone: no hints at all',
  );
  const none = snapshotOf(`  - name: api\n    ports: [80]\n${eps}`);
  t.same(
    none.clusters[0].endpoints.map((e) => e.forZones),
    [undefined, undefined],
    'no trafficDistribution: no hints',
  );
});

t.test('LOCALITY_FAILOVER in base_normal marks every cluster of the app', async (t) => {
  const snap = snapshotOf(
    '  - { name: api, ports: [80], endpoints: [10.0.0.1] }\n',
    '      base_normal: { options: { LOCALITY_FAILOVER: "YES" } }\n',
  );
  t.equal(snap.clusters[0].localityFailover, true);
  t.throws(
    () => parseStaticTopology(`services: []\n${app('      base_normal: { options: { LOCALITY_FAILOVER: maybe } }\n')}`),
    /app default\/web: invalid option LOCALITY_FAILOVER="maybe": expected YES or NO/,
  );
});

t.test('bad locality fields get errors naming the field', async (t) => {
  const bad = (svc: string) => () => parseStaticTopology(`services:\n  - name: api\n    ports: [80]\n${svc}`);
  t.throws(
    bad('    trafficDistribution: PreferSameRegion\n'),
    /service default\/api: trafficDistribution="PreferSameRegion": expected one of PreferClose, PreferSameZone, PreferSameNode/,
  );
  t.throws(bad('    trafficDistribution: 3\n'), /trafficDistribution=3: expected one of/);
  t.throws(bad('    endpoints: [{ address: 10.0.0.1, zone: "eu west" }]\n'), /endpoints\[0\]: zone="eu west": expected a zone name/);
  t.throws(bad('    endpoints: [{ address: 10.0.0.1, zone: 7 }]\n'), /endpoints\[0\]: zone=7: expected a zone name/);
  t.throws(bad('    endpoints: [{ address: 10.0.0.1, node: Node_1 }]\n'), /endpoints\[0\]: node="Node_1": expected a node name/);
  t.throws(
    bad('    endpoints: [{ address: 10.0.0.1, hints: [a] }]\n'),
    /endpoints\[0\]: hints: expected an object with forZones and\/or forNodes/,
  );
  t.throws(
    bad('    endpoints: [{ address: 10.0.0.1, hints: { forZone: [a] } }]\n'),
    /endpoints\[0\]: hints: unknown field forZone; expected forZones, forNodes/,
  );
  t.throws(bad('    endpoints: [{ address: 10.0.0.1, hints: { forZones: a } }]\n'), /hints.forZones: expected a non-empty list of names/);
  t.throws(bad('    endpoints: [{ address: 10.0.0.1, hints: { forZones: [] } }]\n'), /hints.forZones: expected a non-empty list of names/);
  t.throws(
    bad('    endpoints: [{ address: 10.0.0.1, hints: { forNodes: [{ name: "-x" }] } }]\n'),
    /hints.forNodes\[0\].name="-x": expected a node name/,
  );
  t.throws(
    bad('    endpoints: [{ address: 10.0.0.1, hints: { forZones: [{ zone: a }] } }]\n'),
    /hints.forZones\[0\]: unknown field zone; expected name/,
  );
});
