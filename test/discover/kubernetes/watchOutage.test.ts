// Watches that break: a clean end, 410 Expired, every watch cut and the API answering 503 for
// 10 s while the cluster changes; a client long-polls throughout and checks every version.
import t from 'tap';
import { request } from 'undici';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { endpointSlice, meshConfigMap, service } from '../../lib/fakeKubeApi.ts';
import { endpointsOf, fakeCluster, ips, longPoll, seedWebAndApi, snapshot, startKubeDiscover, until, waiters } from './harness.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readyz(base: string): Promise<number> {
  const res = await request(`${base}/readyz`, { headersTimeout: 5000, bodyTimeout: 5000 });
  await res.body.text();
  return res.statusCode;
}

t.test('410, every watch cut, 503 for 10 s: recovers by itself to the API state, and no waiter ever loses an endpoint that exists', async (t) => {
  const env = await fakeCluster(t);
  const { api } = env;
  const httpPort = [{ name: 'http', port: 8080 }];
  seedWebAndApi(api);
  api.apply(service('default', 'cache', [{ name: 'tcp', port: 6379 }]));
  api.apply(endpointSlice('default', 'cache-aaaaa', 'cache', [{ ip: '10.0.1.1' }], [{ name: 'tcp', port: 6379 }]));
  api.apply(meshConfigMap('default', 'web', 'mesh', { base_services: [
    { depend_service_alias: 'api', port: 8080, protocol: 'http' }, { depend_service_alias: 'cache', port: 6379, protocol: 'tcp' },
  ] }));
  const d = await startKubeDiscover(t, env, { staleAfterMs: 30_000 });

  // Endpoints that exist from start to end: no snapshot handed to a waiter may lack them.
  const stable = { 'api.default:8080': ['10.0.0.1:8080', '10.0.0.2:8080'], 'cache.default:6379': ['10.0.1.1:6379'] };
  const received: Snapshot[] = [];
  const violations: string[] = [];
  const readyFailures: number[] = [];
  let polling = true;
  const poller = (async () => {
    let version = (await snapshot(d, 'default', 'web')).json.version as string;
    while (polling) {
      const a = await longPoll(d, 'default', 'web', version, 1);
      if (a.status === 304) continue;
      if (a.status !== 200) {
        violations.push(`long-poll answered ${a.status}: ${JSON.stringify(a.json)}`);
        await sleep(50);
        continue;
      }
      const s = a.json as Snapshot;
      received.push(s);
      for (const [cluster, eps] of Object.entries(stable)) {
        const have = s.clusters.find((c) => c.name === cluster)?.endpoints.map((e) => `${e.address}:${e.port}`) ?? [];
        for (const e of eps) if (!have.includes(e)) violations.push(`version ${s.version}: ${cluster} lacks ${e} (has ${have.join(' ')})`);
      }
      version = s.version;
    }
  })();
  const readyWatch = (async () => {
    while (polling) {
      const code = await readyz(d.url);
      if (code !== 200) readyFailures.push(code);
      await sleep(100);
    }
  })();

  const latest = async () => (await snapshot(d, 'default', 'web')).json as Snapshot;
  const endpoints = async (cluster: string) => endpointsOf(await latest(), cluster);

  // A clean end of every watch (the server's own timeout): resumed, nothing lost, nothing relisted.
  const listsBefore = api.requests({ method: 'GET', watch: false }).length;
  t.equal(api.endWatches(), 3, 'three watches were open');
  await until('the watches to resume', () => api.watchCount() === 3);
  api.apply(endpointSlice('default', 'api-abcde', 'api', ips(1, 2, 3, 4), httpPort));
  await until('endpoint 4 after the clean end', async () => (await endpoints('api.default:8080')).includes('10.0.0.4:8080'));
  t.equal(api.requests({ method: 'GET', watch: false }).length, listsBefore, 'a clean end resumes without a relist');

  // 410 Expired: relist.
  t.equal(api.expireWatches(), 3, 'every watch gets 410 Expired');
  api.apply(endpointSlice('default', 'api-abcde', 'api', ips(1, 2, 3, 4, 6), httpPort));
  await until('endpoint 6 after the relist', async () => (await endpoints('api.default:8080')).includes('10.0.0.6:8080'));
  t.ok(api.requests({ method: 'GET', watch: false }).length > listsBefore, 'the 410 made the informers relist');
  await until('3 watches after the relist', () => api.watchCount() === 3);

  // Cut every watch and answer 503 for 10 s, and compact history so the resumes get 410 and relist.
  // Meanwhile the cluster changes: an endpoint goes, a slice comes, cache moves.
  const outageStart = Date.now();
  api.failRequests(10_000, 503);
  t.equal(api.dropWatches(), 3, 'every watch is cut');
  api.apply(endpointSlice('default', 'api-abcde', 'api', ips(1, 2, 4), httpPort));
  api.apply(endpointSlice('default', 'api-fghij', 'api', ips(5), httpPort));
  api.apply(endpointSlice('default', 'cache-aaaaa', 'cache', [{ ip: '10.0.1.1' }, { ip: '10.0.1.2' }], [{ name: 'tcp', port: 6379 }]));
  api.compact();
  await sleep(3000);
  t.same(await endpoints('api.default:8080'), ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.3:8080', '10.0.0.4:8080', '10.0.0.6:8080'], 'during the outage the last good state keeps serving');
  t.ok(api.requests({ method: 'GET' }).filter((e) => e.status === 503).length > 0, 'discover kept retrying into the 503s');

  const want = ['10.0.0.1:8080', '10.0.0.2:8080', '10.0.0.4:8080', '10.0.0.5:8080'];
  await until('recovery after the outage', async () => JSON.stringify(await endpoints('api.default:8080')) === JSON.stringify(want) &&
    (await endpoints('cache.default:6379')).length === 2, 40_000);
  const recoveredAfter = Date.now() - outageStart;
  t.comment(`recovered ${recoveredAfter} ms after the outage began (${recoveredAfter - 10_000} ms after the API healed)`);
  await until('3 watches again', () => api.watchCount() === 3, 10_000);

  // Identical to the API's state: a fresh discover listing the same API builds the same snapshot.
  const fresh = await startKubeDiscover(t, env);
  const mine = await latest();
  const theirs = (await snapshot(fresh, 'default', 'web')).json as Snapshot;
  t.equal(mine.version, theirs.version, 'same version as a discover started fresh on the recovered API');
  t.same(mine, theirs, 'same snapshot');

  polling = false;
  await Promise.all([poller, readyWatch]);
  t.same(violations, [], 'no waiter was handed a snapshot that lost an endpoint that still existed');
  t.ok(received.length >= 3, `the waiters saw every step (${received.length} versions)`);
  t.same(readyFailures, [], '/readyz stayed ready through the reconnects (outage shorter than --stale-after)');
});
