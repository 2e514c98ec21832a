// `shoal discover --kubernetes` against a real kube-apiserver and kube-controller-manager
// (test/lib/kube.ts): the EndpointSlices are the EndpointSlice controller's, made from Pods whose
// status is written through the status subresource as a kubelet would. Ready Pods become endpoints,
// a Pod turning not Ready leaves the snapshot within 1 s, and deleted and recreated Services and
// Pods end in the right snapshot. Faults (API server restart, etcd down, 410): realApiServerFaults.test.ts.
import t from 'tap';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { kubeForFile } from '../../lib/kube.ts';
import { longPoll, until, waiters } from './discoverClient.ts';
import { Api, endpointsIn, latest, seedApp, startRealDiscover, untilEndpoints } from './realKube.ts';

const kube = kubeForFile(t, import.meta.filename);

if (kube) {
  t.test(
    "3 Ready Pods: 3 endpoints from the controller's EndpointSlice; one turning not Ready leaves the snapshot within 1 s",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await api.node();
      const ns = 'ready';
      await api.namespace(ns);
      const want = await seedApp(api, ns, 1);
      const { d } = await startRealDiscover(t, k);
      const cluster = `api.${ns}:8080`;
      await untilEndpoints(d, ns, cluster, want, 20_000);

      // The endpoints are exactly those of the slice the controller made from the Pods.
      const slices = await api.slicesOf(ns, 'api');
      t.equal(slices.length, 1, 'one EndpointSlice');
      t.equal(
        slices[0].metadata.labels['endpointslice.kubernetes.io/managed-by'],
        'endpointslice-controller.k8s.io',
        'made by the EndpointSlice controller',
      );
      const fromSlice = slices[0].endpoints
        .filter((e: any) => e.conditions.ready)
        .map((e: any) => `${e.addresses[0]}:${slices[0].ports[0].port}`)
        .sort();
      t.same(fromSlice, want, 'the slice has the 3 Ready Pods on port 8080');
      t.same(
        slices[0].endpoints.map((e: any) => e.nodeName),
        ['node-a', 'node-a', 'node-a'],
        'each on the Node the Pod is bound to',
      );
      const first = await latest(d, ns);
      t.same(endpointsIn(first, cluster), fromSlice, "the snapshot has exactly the slice's 3 endpoints");
      t.same(first.status.errors, [], 'no problems');

      // Not Ready and back, three times: from the status write (the kubelet's part) to the long-poll's answer.
      let version = first.version;
      const downMs: number[] = [];
      const upMs: number[] = [];
      for (let round = 0; round < 3; round++) {
        for (const ready of [false, true]) {
          const polled = longPoll(d, ns, 'web', version, 10);
          await waiters(d, ns, 'web');
          const t0 = performance.now();
          await api.setPodStatus(ns, 'api-3', '10.244.1.3', ready);
          const a = await polled;
          t.equal(a.status, 200, `the waiter is woken (${ready ? 'Ready' : 'not Ready'})`);
          const s = a.json as Snapshot;
          const expected = ready ? want : want.slice(0, 2);
          t.same(endpointsIn(s, cluster), expected, ready ? 'api-3 is back' : 'api-3 dropped out, the other 2 stay');
          (ready ? upMs : downMs).push(a.at - t0);
          version = s.version;
        }
      }
      const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(', ');
      t.comment(`status write -> snapshot change (ms): not Ready ${fmt(downMs)}; Ready again ${fmt(upMs)}`);
      t.ok(
        Math.max(...downMs) < 1000,
        `a Pod turning not Ready left the snapshot within 1 s every time (max ${Math.max(...downMs).toFixed(0)} ms)`,
      );
    },
  );

  t.test('a Service and Pods deleted and recreated end in the right snapshot', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'recreate';
    await api.namespace(ns);
    const want = await seedApp(api, ns, 2);
    const { d } = await startRealDiscover(t, k);
    const cluster = `api.${ns}:8080`;
    await untilEndpoints(d, ns, cluster, want, 20_000);

    // The Service goes (the garbage collector takes its slice): web's snapshot names the problem.
    await api.ok('DELETE', `/api/v1/namespaces/${ns}/services/api`);
    await until('the missing Service in the snapshot', async () =>
      /service recreate\/api not found/.test((await latest(d, ns)).status.errors.join('\n')),
    );
    t.same(endpointsIn(await latest(d, ns), cluster), [], 'the missing Service is named as a problem, and its cluster has no endpoint');
    await api.service(ns, 'api');
    await untilEndpoints(d, ns, cluster, want);
    t.same((await latest(d, ns)).status.errors, [], 'the Service is back, with a new EndpointSlice and the same 3 Pods');
    t.equal((await api.slicesOf(ns, 'api')).length, 1, 'one slice, the new one');

    // A Pod deleted and recreated at once under the same name with another IP: the old IP goes.
    await api.deletePodNow(ns, 'api-1');
    await api.pod(ns, 'api-1', 'api');
    await api.setPodStatus(ns, 'api-1', '10.244.2.11', true);
    await untilEndpoints(d, ns, cluster, ['10.244.2.11:8080', want[1], want[2]]);
    t.pass('api-1 recreated with a new IP replaces the old one');

    // A Pod deleted gracefully stays, terminating, until a kubelet would confirm: not an endpoint while others are ready.
    await api.ok('DELETE', `/api/v1/namespaces/${ns}/pods/api-2`);
    await untilEndpoints(d, ns, cluster, ['10.244.2.11:8080', want[2]]);
    const term = (await api.slicesOf(ns, 'api'))[0].endpoints.find((e: any) => e.addresses[0] === '10.244.2.2');
    t.same(term?.conditions, { ready: false, serving: true, terminating: true }, 'the slice has api-2 as terminating and serving');
    t.pass('a terminating Pod leaves the snapshot');

    // Every Pod goes: the cluster stays with no endpoint; then new Pods under new names.
    for (const p of ['api-1', 'api-2', 'api-3']) await api.deletePodNow(ns, p);
    await untilEndpoints(d, ns, cluster, []);
    t.pass('no Pod left: no endpoint');
    for (const i of [4, 5]) {
      await api.pod(ns, `api-${i}`, 'api');
      await api.setPodStatus(ns, `api-${i}`, `10.244.2.${i}`, true);
    }
    await untilEndpoints(d, ns, cluster, ['10.244.2.4:8080', '10.244.2.5:8080']);
    t.pass('new Pods are the endpoints');

    // Service and Pods deleted together and recreated: the same snapshot as a discover started on the final state.
    await api.ok('DELETE', `/api/v1/namespaces/${ns}/services/api`);
    for (const i of [4, 5]) await api.deletePodNow(ns, `api-${i}`);
    await api.service(ns, 'api');
    for (const i of [6, 7, 8]) {
      await api.pod(ns, `api-${i}`, 'api');
      await api.setPodStatus(ns, `api-${i}`, `10.244.2.${i}`, true);
    }
    const final = ['10.244.2.6:8080', '10.244.2.7:8080', '10.244.2.8:8080'];
    await untilEndpoints(d, ns, cluster, final);
    const fresh = await startRealDiscover(t, k);
    const mine = await latest(d, ns);
    const theirs = await latest(fresh.d, ns);
    t.same(endpointsIn(theirs, cluster), final, 'a fresh discover sees the same endpoints');
    t.equal(mine.version, theirs.version, 'and builds the same version');
    t.same(mine, theirs, 'and the same snapshot');
  });
}
