// Topology-aware routing against a real kube-apiserver and kube-controller-manager: Nodes labelled
// with zones, Pods bound to them, a Service with trafficDistribution: PreferSameZone. The real
// EndpointSlice controller writes zone, nodeName and hints.forZones; discover carries them into the
// snapshot and answers a node's zone; a sidecar with only --node learns its zone from discover and
// prefers its zone's endpoints, falling back when they go. No traffic is sent: the Pod IPs are not
// on this machine, so the sidecar is checked through its /config_dump.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { createLogger } from '../../../shared/log.ts';
import { startProxy } from '../../../proxy/main.ts';
import { kubeForFile } from '../../lib/kube.ts';
import { configDump } from '../../proxy/resilience/load.ts';
import { OPERATOR_TOKEN, call, until } from './discoverClient.ts';
import { Api, latest, startRealDiscover } from './realKube.ts';

const kube = kubeForFile(t, import.meta.filename);
const ZONE_LABEL = 'topology.kubernetes.io/zone';

if (kube) {
  t.test("PreferSameZone: the controller's hints reach the snapshot and steer a sidecar that knows only its node", async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    const ns = 'locality';
    await api.namespace(ns);
    const nodes: Array<[string, string]> = [
      ['zone-a-1', 'a'],
      ['zone-a-2', 'a'],
      ['zone-b-1', 'b'],
      ['zone-b-2', 'b'],
      ['client-a', 'a'],
    ];
    for (const [name, zone] of nodes) {
      await api.ok('POST', '/api/v1/nodes', {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name, labels: { 'kubernetes.io/hostname': name, [ZONE_LABEL]: zone } },
      });
    }
    await api.ok('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: 'no-zone', labels: { 'kubernetes.io/hostname': 'no-zone' } },
    });
    await api.ok('POST', `/api/v1/namespaces/${ns}/services`, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'api', namespace: ns },
      spec: {
        selector: { app: 'api' },
        trafficDistribution: 'PreferSameZone',
        ports: [{ name: 'http', port: 8080, targetPort: 8080, protocol: 'TCP', appProtocol: 'http' }],
      },
    });
    await api.meshConfig(ns, 'web', ['api']);
    // Three Pods in zone a (10.244.9.1-3), three in zone b (10.244.9.4-6).
    const pods = [
      ['api-1', 'zone-a-1'],
      ['api-2', 'zone-a-2'],
      ['api-3', 'zone-a-1'],
      ['api-4', 'zone-b-1'],
      ['api-5', 'zone-b-2'],
      ['api-6', 'zone-b-1'],
    ];
    for (const [i, [name, node]] of pods.entries()) {
      await api.ok('POST', `/api/v1/namespaces/${ns}/pods`, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: ns, labels: { app: 'api' } },
        spec: {
          nodeName: node,
          automountServiceAccountToken: false,
          containers: [{ name: 'app', image: 'registry.invalid/app:1', ports: [{ name: 'http', containerPort: 8080 }] }],
        },
      });
      await api.setPodStatus(ns, name, `10.244.9.${i + 1}`, true);
    }
    const { d } = await startRealDiscover(t, k);
    const cluster = `api.${ns}:8080`;
    const endpointsOf = (s: Snapshot) => s.clusters.find((c) => c.name === cluster)?.endpoints ?? [];

    let snap: Snapshot | null = null;
    await until(
      'six hinted endpoints in the snapshot',
      async () => {
        snap = await latest(d, ns);
        const eps = endpointsOf(snap);
        return eps.length === 6 && eps.every((e) => e.forZones !== undefined);
      },
      30_000,
    );
    const slices = await api.slicesOf(ns, 'api');
    t.ok(
      slices.every((s: any) => s.metadata.labels['endpointslice.kubernetes.io/managed-by'] === 'endpointslice-controller.k8s.io'),
      "the slices are the EndpointSlice controller's",
    );
    t.same(
      slices.flatMap((s: any) => s.endpoints.map((e: any) => e.hints)).filter((h: any) => !h?.forZones).length,
      0,
      'the controller hinted every endpoint for a zone',
    );
    t.same(
      endpointsOf(snap!).map((e) => [e.address, e.zone, e.node, e.forZones]),
      [
        ['10.244.9.1', 'a', 'zone-a-1', ['a']],
        ['10.244.9.2', 'a', 'zone-a-2', ['a']],
        ['10.244.9.3', 'a', 'zone-a-1', ['a']],
        ['10.244.9.4', 'b', 'zone-b-1', ['b']],
        ['10.244.9.5', 'b', 'zone-b-2', ['b']],
        ['10.244.9.6', 'b', 'zone-b-1', ['b']],
      ],
      'zone, nodeName and hints.forZones of each endpoint in the snapshot',
    );

    // A node's zone, as discover answers it to a sidecar with --node and no --zone.
    const zoneOf = async (node: string) => call(d.url, 'GET', `/v2/locality/${ns}/web?node=${node}`, { token: OPERATOR_TOKEN });
    await until('discover to know the Nodes', async () => (await zoneOf('client-a')).status === 200, 20_000);
    t.same((await zoneOf('client-a')).json, { node: 'client-a', zone: 'a' }, "the Node's zone label");
    t.same((await zoneOf('no-zone')).json, { node: 'no-zone', zone: '' }, 'a Node without the label: no zone');
    t.equal((await zoneOf('nowhere')).status, 404, 'an unknown Node: 404');
    t.equal((await zoneOf('Bad_Name')).status, 400, 'a malformed node name: 400');
    t.equal((await call(d.url, 'GET', `/v2/locality/${ns}/web?node=client-a`)).status, 401, 'read like the snapshot: a token is needed');

    // The sidecar: --node only, the operator token as its credential.
    const dir = mkdtempSync(join(tmpdir(), 'shoal-locality-'));
    writeFileSync(join(dir, 'token'), OPERATOR_TOKEN);
    const proxy = await startProxy({
      discoverUrl: `${d.url}/v1/resources/${ns}/web/mesh`,
      stateFile: join(dir, 'state.json'),
      tokenFile: join(dir, 'token'),
      adminHost: '127.0.0.1',
      adminPort: 0,
      inboundAddress: '127.0.0.1',
      drainTimeoutMs: 500,
      warmUpRequests: 0,
      node: 'client-a',
      log: createLogger('proxy', process.env.SHOAL_TEST_LOG ?? 'silent'),
    });
    t.teardown(async () => {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    });
    await proxy.whenReady();
    type Dump = {
      policies: {
        clusters: Array<{
          cluster: string;
          locality: { node: string; zone: string; tier: string; tiers: Array<{ kind: string; endpoints: string[] }> };
        }>;
      };
    };
    const locality = async () =>
      ((await configDump(proxy.adminPort)) as Dump).policies.clusters.find((c) => c.cluster === cluster)!.locality;
    await until('the sidecar to learn its zone', async () => (await locality()).zone === 'a', 20_000);
    const l = await locality();
    t.match(l, { node: 'client-a', zone: 'a', tier: 'zone' }, 'zone a from the Node label; the zone tier in use');
    t.same(l.tiers[0].endpoints, ['10.244.9.1:8080', '10.244.9.2:8080', '10.244.9.3:8080'], 'the zone tier is the zone-a endpoints');

    // Zone a's Pods turn not Ready: the controller re-hints the rest for zone b; the sidecar uses them.
    for (const i of [1, 2, 3]) await api.setPodStatus(ns, `api-${i}`, `10.244.9.${i}`, false);
    await until(
      'the sidecar to fall back to zone b',
      async () => {
        const x = await locality();
        return x.tier === 'all' && x.tiers.at(-1)!.endpoints.length === 3;
      },
      30_000,
    );
    t.same(
      (await locality()).tiers.at(-1)!.endpoints,
      ['10.244.9.4:8080', '10.244.9.5:8080', '10.244.9.6:8080'],
      "zone a gone: zone b's endpoints",
    );
    for (const i of [1, 2, 3]) await api.setPodStatus(ns, `api-${i}`, `10.244.9.${i}`, true);
    await until(
      'the sidecar back on zone a',
      async () => {
        const x = await locality();
        return x.tier === 'zone' && x.tiers[0].endpoints.length === 3;
      },
      30_000,
    );
    t.same((await locality()).tiers[0].endpoints, ['10.244.9.1:8080', '10.244.9.2:8080', '10.244.9.3:8080'], 'zone a back');
  });
}
