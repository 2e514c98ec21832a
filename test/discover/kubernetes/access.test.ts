// Who may read and write: PUT /v1/resources into the app's ConfigMap (401, 400 naming the option,
// create, update with conflict retry), sidecar tokens checked by TokenReview, invalid ConfigMaps.
import t from 'tap';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { getCommand } from '../../../discover/get.ts';
import { meshConfigMap } from '../../lib/fakeKubeApi.ts';
import { call, endpointsOf, fakeCluster, longPoll, OPERATOR_TOKEN, seedWebAndApi, sidecarToken, snapshot, startKubeDiscover, until, waiters } from './harness.ts';

const WEB = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }] };

t.test('PUT /v1/resources: 401 without a token, 400 naming a bad option with the ConfigMap unchanged, good -> ConfigMap updated and waiters woken', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const d = await startKubeDiscover(t, env);
  const path = '/v1/resources/default/web/mesh';
  const before = env.api.get('ConfigMap', 'default', 'shoal-mesh-web')!;

  const noToken = await call(d.url, 'PUT', path, { body: WEB });
  t.equal(noToken.status, 401, 'no token: 401');
  const wrong = await call(d.url, 'PUT', path, { body: WEB, token: sidecarToken(env.api, 'default', 'web') });
  t.equal(wrong.status, 401, 'a sidecar token may not write: 401');

  const bad = await call(d.url, 'PUT', path, { token: OPERATOR_TOKEN, body: { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { MaxRequests: 'ten' } }] } });
  t.equal(bad.status, 400, 'a bad option: 400');
  t.match(bad.json.message, /MaxRequests/, 'names the option');
  t.match(bad.json.message, /api/, 'and the dependency');
  const after = env.api.get('ConfigMap', 'default', 'shoal-mesh-web')!;
  t.equal(after.metadata!.resourceVersion, before.metadata!.resourceVersion, 'the ConfigMap is unchanged');
  t.equal(env.api.requests({ method: 'PUT', path: /configmaps/ }).length, 0, 'nothing was written to the API');

  const s = (await snapshot(d, 'default', 'web')).json as Snapshot;
  const polled = longPoll(d, 'default', 'web', s.version);
  await waiters(d, 'default', 'web');
  const good = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RequestTimeoutMS: '2500', Weight: 100 } }], base_normal: { options: { LOG_FORMAT: 'json' } } };
  const ok = await call(d.url, 'PUT', path, { token: OPERATOR_TOKEN, body: good });
  t.equal(ok.status, 200, 'a good config: 200');
  const stored = env.api.get('ConfigMap', 'default', 'shoal-mesh-web')!;
  t.same(JSON.parse(stored.data['plugin-config']), good, 'the ConfigMap holds the new config');
  t.equal(stored.metadata!.labels!['shoal.dev/plugin-id'], 'mesh');
  const woken = await polled;
  t.equal(woken.status, 200, 'the waiter is woken');
  t.equal((woken.json as Snapshot).clusters[0].policy.requestTimeoutMs, 2500, 'with the new config');
  const resource = await call(d.url, 'GET', path, { token: OPERATOR_TOKEN });
  t.same(resource.json, good, 'GET /v1/resources answers what was written');
});

t.test('PUT for an app without a ConfigMap creates one; a concurrent edit (409) is retried on the fresh object', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const d = await startKubeDiscover(t, env);
  const created = await call(d.url, 'PUT', '/v1/resources/default/worker/mesh', { token: OPERATOR_TOKEN, body: WEB });
  t.equal(created.status, 200);
  const cm = env.api.get('ConfigMap', 'default', 'shoal-mesh-worker');
  t.ok(cm, 'ConfigMap shoal-mesh-worker created');
  t.same(cm!.metadata!.labels, { 'shoal.dev/app': 'worker', 'shoal.dev/plugin-id': 'mesh' });
  await until('worker\'s snapshot', async () => (await snapshot(d, 'default', 'worker')).status === 200);
  t.same(endpointsOf((await snapshot(d, 'default', 'worker')).json, 'api.default:8080').length, 3);

  // Someone edits the ConfigMap between discover's read and its replace: the API answers 409.
  env.api.latency(300, (e) => e.method === 'PUT' && /configmaps\/shoal-mesh-web$/.test(e.path));
  const other = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RetryAttempts: 1 } }] };
  const mine = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RetryAttempts: 3 } }] };
  const putting = call(d.url, 'PUT', '/v1/resources/default/web/mesh', { token: OPERATOR_TOKEN, body: mine });
  await until('discover\'s replace in flight', () => env.api.requests({ method: 'PUT', path: /configmaps\/shoal-mesh-web$/ }).length >= 1);
  env.api.apply(meshConfigMap('default', 'web', 'mesh', other));
  const res = await putting;
  env.api.latency(0);
  t.equal(res.status, 200, 'the write succeeded');
  const puts = env.api.requests({ method: 'PUT', path: /configmaps\/shoal-mesh-web$/ });
  t.same(puts.map((e) => e.status), [409, 200], 'one conflict, then the retry on the fresh object');
  t.same(JSON.parse(env.api.get('ConfigMap', 'default', 'shoal-mesh-web')!.data['plugin-config']), mine, 'the last writer wins, nothing merged');
});

t.test('sidecar reads: own namespace and app only (TokenReview); the ConfigMap may name more service accounts', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api, 'team-a');
  seedWebAndApi(env.api, 'team-b');
  env.api.apply(meshConfigMap('team-a', 'batch', 'mesh', WEB, { annotations: { 'shoal.dev/service-accounts': 'runner, cron' } }));
  const d = await startKubeDiscover(t, env);
  const webA = sidecarToken(env.api, 'team-a', 'web');

  t.equal((await snapshot(d, 'team-a', 'web', webA)).status, 200, 'team-a/web reads team-a/web');
  const cross = await snapshot(d, 'team-b', 'web', webA);
  t.equal(cross.status, 403, 'a sidecar token of namespace team-a reading an app of team-b: 403');
  t.match(cross.json.message, /team-a\/web may not read apps of namespace team-b/);
  const crossLong = await longPoll(d, 'team-b', 'web', 'x', 5, webA);
  t.equal(crossLong.status, 403, 'long-poll too');
  t.equal((await call(d.url, 'GET', '/v1/resources/team-b/web/mesh', { token: webA })).status, 403, 'and /v1/resources');
  t.equal((await snapshot(d, 'team-a', 'batch', webA)).status, 403, 'another app of its own namespace: 403');
  t.equal((await snapshot(d, 'team-a', 'batch', sidecarToken(env.api, 'team-a', 'runner'))).status, 200, 'a service account the ConfigMap lists: 200');
  t.equal((await snapshot(d, 'team-a', 'web', '')).status, 401, 'no token: 401');
  const other = 'wrong-audience';
  env.api.addToken(other, { namespace: 'team-a', serviceAccount: 'web' });
  t.equal((await snapshot(d, 'team-a', 'web', other)).status, 401, 'a token for the API server\'s audience, not shoal\'s: 401');
  t.equal((await snapshot(d, 'team-b', 'web', OPERATOR_TOKEN)).status, 200, 'the operator token reads everything');
  const reviews = env.api.requests({ method: 'POST', path: /tokenreviews/ }).length;
  for (let i = 0; i < 5; i++) await snapshot(d, 'team-a', 'web', webA);
  t.equal(env.api.requests({ method: 'POST', path: /tokenreviews/ }).length, reviews, 'TokenReviews are cached: polling costs no API call');
});

t.test('an invalid ConfigMap keeps the last good snapshot, shows in status and in shoal get, and is counted', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  env.api.apply(meshConfigMap('default', 'broken', 'mesh', 'not json {'));
  const d = await startKubeDiscover(t, env);
  const good = (await snapshot(d, 'default', 'web')).json as Snapshot;
  t.same(good.status.errors, []);

  const polled = longPoll(d, 'default', 'web', good.version);
  await waiters(d, 'default', 'web');
  env.api.apply(meshConfigMap('default', 'web', 'mesh', { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { ConsecutiveErrors: 'many' } }] }));
  const next = (await polled).json as Snapshot;
  t.equal(next.clusters[0].policy.consecutiveErrors, good.clusters[0].policy.consecutiveErrors, 'the last good config stays in force');
  t.same(endpointsOf(next, 'api.default:8080'), endpointsOf(good, 'api.default:8080'));
  t.match(next.status.errors.join('\n'), /mesh config refused.*ConfigMap default\/shoal-mesh-web.*ConsecutiveErrors/, 'status names the ConfigMap and the option');

  const table = await getCommand(['default/web'], { discover: d.url, output: 'table', token: OPERATOR_TOKEN });
  t.match(table, /PROBLEMS[\s\S]*ConsecutiveErrors/, 'shoal get shows the problem');
  t.match(table, /10\.0\.0\.1:8080/, 'and the endpoints still served');

  // An app whose only config is invalid has no snapshot; discover and shoal get say why.
  const missing = await snapshot(d, 'default', 'broken');
  t.equal(missing.status, 404);
  t.match(missing.json.message, /refused.*plugin-config is not JSON/);
  await t.rejects(getCommand(['default/broken'], { discover: d.url, output: 'table', token: OPERATOR_TOKEN }), /has no app default\/broken: .*not JSON/);
  await t.rejects(getCommand(['default/web'], { discover: d.url, output: 'table', token: '' }), /wants a token/, 'shoal get without a token is told so');

  const metrics = await call(d.url, 'GET', '/metrics');
  t.match(String(metrics.json ?? ''), /shoal_discover_config_errors_total\{[^}]*source="kubernetes"[^}]*\} [2-9]/, 'both refusals counted');

  // Fixing the ConfigMap clears the problem.
  const now = (await snapshot(d, 'default', 'web')).json as Snapshot;
  const polled2 = longPoll(d, 'default', 'web', now.version);
  await waiters(d, 'default', 'web');
  env.api.apply(meshConfigMap('default', 'web', 'mesh', WEB));
  t.same(((await polled2).json as Snapshot).status.errors, [], 'a valid config clears the problem');
});
