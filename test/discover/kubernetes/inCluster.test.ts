// The in-cluster path: no kubeconfig, loadFromCluster with the service account's token, CA and
// namespace under a temporary prefix (as a pod mounts them), against the fake API over HTTPS.
import t from 'tap';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { endpointsOf, fakeCluster, seedWebAndApi, sidecarToken, snapshot, startKubeDiscover } from './harness.ts';

t.test('in-cluster: loadFromCluster with the service account\'s token, CA and namespace under a temporary prefix', async (t) => {
  const env = await fakeCluster(t);
  seedWebAndApi(env.api);
  const token = 'in-cluster-token';
  env.api.addToken(token, { namespace: 'shoal', serviceAccount: 'shoal-discover-in-cluster' });
  const files = await env.api.writeInClusterFiles(env.dir, token, 'shoal');
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  Object.assign(process.env, files.env);
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
  const d = await startKubeDiscover(t, env, { kubernetes: { kubeconfigFile: undefined, inClusterPathPrefix: files.pathPrefix } });
  t.same(endpointsOf((await snapshot(d, 'default', 'web')).json as Snapshot, 'api.default:8080').length, 3, 'listed over HTTPS with the mounted CA');
  const users = new Set(env.api.requests({ path: /endpointslices|services|configmaps/ }).map((e) => e.user));
  t.same([...users], ['system:serviceaccount:shoal:shoal-discover-in-cluster'], 'every request carried the mounted token');
  t.equal((await snapshot(d, 'default', 'web', sidecarToken(env.api, 'default', 'web'))).status, 200, 'TokenReview works in-cluster too');
});
