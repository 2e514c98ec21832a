// Readiness: not before every informer's first list, lost past --stale-after, back on resume;
// close() during client-node's reconnect delay; unrelated changes wake nobody.
import t from 'tap';
import { request } from 'undici';
import { endpointSlice, service } from '../../lib/fakeKubeApi.ts';
import { call, endpointsOf, fakeCluster, ips, longPoll, seedWebAndApi, snapshot, startKubeDiscover, until, waiters } from './harness.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readyz(base: string): Promise<number> {
  const res = await request(`${base}/readyz`, { headersTimeout: 5000, bodyTimeout: 5000 });
  await res.body.text();
  return res.statusCode;
}

t.test('/readyz fails once a watch has been down longer than --stale-after, and returns when it resumes; snapshots keep serving', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const d = await startKubeDiscover(t, env, { staleAfterMs: 1000 });
  t.equal(await readyz(d.url), 200);
  env.api.failRequests(3500, 503);
  env.api.dropWatches();
  await until('/readyz to fail', async () => (await readyz(d.url)) === 503, 15_000);
  const body = await call(d.url, 'GET', '/readyz');
  t.match(body.json.message, /down for more than 1000 ms/, 'says which watch and the bound');
  const s = await snapshot(d, 'default', 'web');
  t.equal(s.status, 200, 'the last good snapshot still serves while not ready');
  t.equal(endpointsOf(s.json, 'api.default:8080').length, 3);
  await until('/readyz to return', async () => (await readyz(d.url)) === 200, 30_000);
  t.pass('ready again after the API healed');
});

t.test('/readyz only after every informer\'s first list; /healthz at once; snapshots 503 (not 404) until then', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  // Only the ConfigMap list fails: Services and EndpointSlices list fine.
  env.api.failRequests(120_000, 503, /\/configmaps$/);
  const d = await startKubeDiscover(t, env, { wait: false });
  t.equal((await call(d.url, 'GET', '/healthz')).status, 200, 'alive while listing');
  const r = await call(d.url, 'GET', '/readyz');
  t.equal(r.status, 503, 'not ready');
  t.match(r.json.message, /configmaps/, 'names the informer it waits for');
  const s = await snapshot(d, 'default', 'web');
  t.equal(s.status, 503, 'a snapshot request gets 503 before the first list');
  t.match(s.json.message, /not ready/);
  env.api.healRequests();
  await d.ready;
  t.equal(await readyz(d.url), 200, 'ready after the first full list');
  t.equal((await snapshot(d, 'default', 'web')).status, 200);
  t.ok(env.api.requests({ path: '/api/v1/configmaps' }).filter((e) => e.status === 503).length >= 1, 'the ConfigMap list was retried');
});

t.test('close() leaves no watch behind, even during client-node\'s reconnect delay', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const d = await startKubeDiscover(t, env);
  // Two clean ends with no event between: client-node waits 1 s before the next watch.
  env.api.endWatches();
  await until('resumed', () => env.api.watchCount() === 3);
  env.api.endWatches();
  await sleep(100);
  await d.close();
  await sleep(1500);
  t.equal(env.api.watchCount(), 0, 'no watch opened after close()');
});

t.test('a long-poll waiter is woken by a change and not by an unrelated one', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  env.api.apply(service('default', 'unrelated', [{ name: 'http', port: 8080 }]));
  const d = await startKubeDiscover(t, env);
  const v = (await snapshot(d, 'default', 'web')).json.version;
  const polled = longPoll(d, 'default', 'web', v, 1);
  await waiters(d, 'default', 'web');
  env.api.apply(endpointSlice('default', 'unrelated-aaaaa', 'unrelated', ips(9), [{ name: 'http', port: 8080 }]));
  t.equal((await polled).status, 304, 'a change to a Service web does not use leaves it waiting');
});
