// `shoal discover --kubernetes` against the fake API server: EndpointSlice conditions, multi-port,
// headless and ExternalName Services, and dependencies in another namespace.
import t from 'tap';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { endpointSlice, meshConfigMap, service } from '../../lib/fakeKubeApi.ts';
import { endpointsOf, fakeCluster, ips, longPoll, seedWebAndApi, snapshot, startKubeDiscover, waiters } from './harness.ts';

t.test('3 ready endpoints; a terminating one leaves within 100 ms; with none ready the terminating one serves', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const d = await startKubeDiscover(t, env);

  const first = await snapshot(d, 'default', 'web');
  t.equal(first.status, 200);
  t.same(endpointsOf(first.json, 'api.default:8080'), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080'], 'the 3 ready endpoints');

  // One endpoint starts terminating: measured from the write in the API server to the long-poll's answer.
  const polled = longPoll(d, 'default', 'web', first.json.version);
  await waiters(d, 'default', 'web');
  const t0 = performance.now();
  env.api.apply(endpointSlice('default', 'api-abcde', 'api', [...ips(1, 2), { ip: '10.0.0.3', ready: false, serving: true, terminating: true }], [{ name: 'http', port: 8080 }]));
  const second = await polled;
  const ms = second.at - t0;
  t.comment(`terminating endpoint dropped after ${ms.toFixed(1)} ms (apply in the API server -> long-poll answer)`);
  t.equal(second.status, 200, 'the waiter is woken');
  t.same(endpointsOf(second.json, 'api.default:8080'), ['10.0.0.1:8080', '10.0.0.2:8080'], '2 endpoints: the terminating one is dropped');
  // The target is 100 ms; the assert is generous for a loaded 2-core machine (the figure is reported above).
  t.ok(ms < 1000, `woken in ${ms.toFixed(1)} ms`);

  // The rest become not ready: the serving, terminating one takes the traffic.
  const polled2 = longPoll(d, 'default', 'web', second.json.version);
  await waiters(d, 'default', 'web');
  env.api.apply(endpointSlice('default', 'api-abcde', 'api', [
    { ip: '10.0.0.1', ready: false, serving: false, terminating: false },
    { ip: '10.0.0.2', ready: false, serving: false, terminating: false },
    { ip: '10.0.0.3', ready: false, serving: true, terminating: true },
  ], [{ name: 'http', port: 8080 }]));
  const third = await polled2;
  t.equal(third.status, 200);
  const eps = (third.json as Snapshot).clusters[0].endpoints;
  t.same(eps.map((e) => [e.address, e.ready, e.serving, e.terminating]), [['10.0.0.3', false, true, true]], 'only the terminating, serving endpoint');

  // Nil conditions mean ready (the API omits them on old controllers).
  const polled3 = longPoll(d, 'default', 'web', third.json.version);
  await waiters(d, 'default', 'web');
  env.api.apply(endpointSlice('default', 'api-abcde', 'api', [{ ip: '10.0.0.9' }], [{ name: 'http', port: 8080 }]));
  t.same(endpointsOf((await polled3).json, 'api.default:8080'), ['10.0.0.9:8080'], 'an endpoint without conditions is ready');
});

t.test('a Service with several slices joins them by the service-name label; deleting a slice removes its endpoints', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  env.api.apply(endpointSlice('default', 'api-fghij', 'api', ips(4, 5), [{ name: 'http', port: 8080 }]));
  // A slice of another Service with the same IPs: not api's.
  env.api.apply(endpointSlice('default', 'other-xxxxx', 'other', ips(6), [{ name: 'http', port: 8080 }]));
  const d = await startKubeDiscover(t, env);
  const s = await snapshot(d, 'default', 'web');
  t.same(endpointsOf(s.json, 'api.default:8080'), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080', '10.0.0.4:8080', '10.0.0.5:8080']);
  const polled = longPoll(d, 'default', 'web', s.json.version);
  await waiters(d, 'default', 'web');
  env.api.remove('EndpointSlice', 'default', 'api-abcde');
  t.same(endpointsOf((await polled).json, 'api.default:8080'), ['10.0.0.4:8080', '10.0.0.5:8080']);
});

t.test('multi-port Services map port by port; headless and ExternalName Services; a dependency in another namespace', async (t) => {
  const env = await fakeCluster(t);
  const { api } = env;
  // Two ports whose endpoints listen on different target ports: each Service port gets its own.
  api.apply(service('default', 'multi', [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }, { name: 'grpc', port: 9090, targetPort: 9000 }]));
  api.apply(endpointSlice('default', 'multi-aaaaa', 'multi', ips(1, 2), [{ name: 'http', port: 8080 }, { name: 'grpc', port: 9000 }]));
  // Headless: endpoints used directly.
  api.apply(service('default', 'db', [{ name: 'tcp-pg', port: 5432 }], { clusterIP: 'None' }));
  api.apply(endpointSlice('default', 'db-aaaaa', 'db', ips(7), [{ name: 'tcp-pg', port: 5432 }]));
  // ExternalName: the sidecar proxies to the external name.
  api.apply(service('default', 'payments', [{ name: 'https', port: 443 }], { type: 'ExternalName', externalName: 'payments.example.com.' }));
  // Another namespace.
  api.apply(service('other-ns', 'api', [{ name: 'http', port: 8080 }]));
  api.apply(endpointSlice('other-ns', 'api-bbbbb', 'api', [{ ip: '10.9.0.1' }, { ip: '10.9.0.2' }], [{ name: 'http', port: 8080 }]));
  api.apply(meshConfigMap('default', 'web', 'mesh', {
    base_services: [
      { depend_service_alias: 'multi', port: 80, protocol: 'http' },
      { depend_service_alias: 'multi', port: 9090, protocol: 'grpc' },
      { depend_service_alias: 'db', port: 5432, protocol: 'tcp' },
      { depend_service_alias: 'payments', port: 443, protocol: 'tcp' },
      { depend_service_alias: 'api.other-ns', port: 8080, protocol: 'http' },
    ],
  }));
  const d = await startKubeDiscover(t, env);
  const s = (await snapshot(d, 'default', 'web')).json as Snapshot;
  t.same(s.status.errors, [], 'no problems');
  t.same(endpointsOf(s, 'multi.default:80'), ['10.0.0.1:8080', '10.0.0.2:8080'], 'port 80 -> target 8080 only');
  t.same(endpointsOf(s, 'multi.default:9090'), ['10.0.0.1:9000', '10.0.0.2:9000'], 'port 9090 -> target 9000 only');
  t.same(endpointsOf(s, 'db.default:5432'), ['10.0.0.7:5432'], 'headless: the pod endpoints');
  t.same(endpointsOf(s, 'payments.default:443'), ['payments.example.com:443'], 'ExternalName: the external name, resolved upstream');
  t.same(endpointsOf(s, 'api.other-ns:8080'), ['10.9.0.1:8080', '10.9.0.2:8080'], 'api.other-ns');
  const names = s.dns.map((x) => x.name);
  t.ok(names.includes('api.other-ns'), 'DNS answers api.other-ns');
  t.ok(names.includes('api.other-ns.svc.cluster.local'), 'and its cluster-domain form');
  t.ok(names.includes('payments'), 'DNS answers the ExternalName service by its own name');

  // A change in the other namespace wakes web (only the apps depending on it are rebuilt).
  const polled = longPoll(d, 'default', 'web', s.version);
  await waiters(d, 'default', 'web');
  api.apply(endpointSlice('other-ns', 'api-bbbbb', 'api', [{ ip: '10.9.0.1' }], [{ name: 'http', port: 8080 }]));
  t.same(endpointsOf((await polled).json, 'api.other-ns:8080'), ['10.9.0.1:8080']);

  // The ExternalName changing its target reaches the snapshot too.
  const now = (await snapshot(d, 'default', 'web')).json as Snapshot;
  const polled2 = longPoll(d, 'default', 'web', now.version);
  await waiters(d, 'default', 'web');
  api.apply(service('default', 'payments', [{ name: 'https', port: 443 }], { type: 'ExternalName', externalName: 'pay.example.net' }));
  t.same(endpointsOf((await polled2).json, 'payments.default:443'), ['pay.example.net:443']);
});

t.test('a missing Service shows as a problem in the snapshot and heals when the Service appears', async (t) => {
  const env = await fakeCluster(t);
  env.api.apply(meshConfigMap('default', 'web', 'mesh', { base_services: [{ depend_service_alias: 'late', port: 8080, protocol: 'http' }] }));
  const d = await startKubeDiscover(t, env);
  const s = (await snapshot(d, 'default', 'web')).json as Snapshot;
  t.match(s.status.errors.join('\n'), /late.*not found/, 'the problem is named');
  const polled = longPoll(d, 'default', 'web', s.version);
  await waiters(d, 'default', 'web');
  env.api.apply(service('default', 'late', [{ name: 'http', port: 8080 }]));
  env.api.apply(endpointSlice('default', 'late-aaaaa', 'late', ips(1), [{ name: 'http', port: 8080 }]));
  const next = (await polled).json as Snapshot;
  t.same(next.status.errors, []);
  // The Service and its slice may land in two applies; take the latest.
  const latest = next.clusters[0].endpoints.length > 0 ? next : (await longPoll(d, 'default', 'web', next.version, 5)).json as Snapshot;
  t.same(endpointsOf(latest, 'late.default:8080'), ['10.0.0.1:8080']);
});
