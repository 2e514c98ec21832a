// discover --kubernetes as it is run, against a real control plane (test/lib/kube.ts): the CLI as a
// process with a kubeconfig file (serves, a sidecar's TokenRequest token reads its app, `shoal get`
// reads with a token file, SIGTERM stops it cleanly), and in a pod: no kubeconfig, loadFromCluster
// with the service account's token, CA and namespace mounted under a temporary prefix, every call
// made as that service account (RBAC's refusals name it until a binding lets it list).
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { createLogger } from '../../../shared/log.ts';
import { startDiscover } from '../../../discover/main.ts';
import { kubeForFile } from '../../lib/kube.ts';
import { AUDIENCE, call, endpointsOf, execCli, OPERATOR_TOKEN, runCli, snapshot, stopCli, until } from './discoverClient.ts';
import { Api, seedApp, serviceAccountToken, untilEndpoints } from './realKube.ts';

// A control plane start and a cold start of the CLI: past tap's 120 s on a loaded 2-core machine.
t.setTimeout(240_000);
const kube = kubeForFile(t, import.meta.filename);

if (kube) {
  t.test('shoal discover --kubernetes --kubeconfig FILE: serves, a sidecar token and shoal get with a token file read it, SIGTERM stops it cleanly', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'cli';
    await api.namespace(ns);
    const want = await seedApp(api, ns, 31, 3);
    const r = runCli(['discover', '--kubernetes', '--kubeconfig', k.kubeconfig, '--host', '127.0.0.1', '--port', '0', '--write-token', OPERATOR_TOKEN, '--stale-after', '30']);
    t.teardown(() => stopCli(r));
    const port = (await r.line('discover listening')).port as number;
    const base = `http://127.0.0.1:${port}`;
    await r.line('first full state loaded: ready');
    t.equal((await call(base, 'GET', '/readyz')).status, 200, 'ready');
    const sidecar = await serviceAccountToken(api, ns, 'web');
    await until('web\'s 3 endpoints', async () => {
      const s = await call(base, 'GET', `/v2/snapshot/${ns}/web`, { token: sidecar });
      return s.status === 200 && JSON.stringify(endpointsOf(s.json as Snapshot, `api.${ns}:8080`)) === JSON.stringify(want);
    });
    t.pass('a TokenRequest token of web reads web, with the 3 endpoints');
    t.equal((await call(base, 'GET', `/v2/snapshot/${ns}/web`)).status, 401, 'no token: 401');

    const dir = mkdtempSync(join(tmpdir(), 'shoal-cli-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const tokenFile = join(dir, 'operator-token');
    writeFileSync(tokenFile, `${OPERATOR_TOKEN}\n`);
    const got = await execCli(['get', `${ns}/web`, '--discover', base, '--token-file', tokenFile]);
    t.equal(got.code, 0, got.stderr);
    t.match(got.stdout, new RegExp(`APP ${ns}/web`));
    t.match(got.stdout, new RegExp(`api\\.${ns}:8080\\s+http\\s+\\S+\\s+${want.map((e) => e.replaceAll('.', '\\.')).join(' ')}`), 'shoal get lists the endpoints');

    t.equal(await stopCli(r), 0, 'SIGTERM: exit 0');
    t.same(r.logs.filter((l) => l.level >= 40 && !/stopping/.test(l.msg)).map((l) => l.msg), [], 'no warning or error logged, stop included');
  });

  t.test('in-cluster: loadFromCluster with the mounted service account token, CA and namespace; every call made as that account', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'incluster';
    await api.namespace(ns);
    await api.namespace('shoal');
    const want = await seedApp(api, ns, 32, 3);
    // The pod's mounted files, under a temporary prefix: a token for the API server (no audience), its CA, the namespace.
    const prefix = mkdtempSync(join(tmpdir(), 'shoal-in-cluster-'));
    t.teardown(() => rmSync(prefix, { recursive: true, force: true }));
    const sa = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), await serviceAccountToken(api, 'shoal', 'shoal-discover-in-cluster', []));
    writeFileSync(join(sa, 'ca.crt'), readFileSync(k.cluster.caFile));
    writeFileSync(join(sa, 'namespace'), 'shoal');
    const server = new URL(k.cluster.server);
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    Object.assign(process.env, { KUBERNETES_SERVICE_HOST: server.hostname, KUBERNETES_SERVICE_PORT: server.port });
    t.teardown(() => {
      for (const [key, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
        if (v === undefined) delete process.env[key];
        else process.env[key] = v;
      }
    });
    const logs: Array<Record<string, any>> = [];
    const log = createLogger('discover', 'info', { write: (line: string) => { for (const l of line.split('\n')) if (l) logs.push(JSON.parse(l)); } });
    const d = await startDiscover({
      kubernetes: { inClusterPathPrefix: prefix, staleAfterMs: 30_000, tokenAudience: AUDIENCE },
      host: '127.0.0.1', port: 0, writeToken: OPERATOR_TOKEN, log,
    });
    t.teardown(() => d.close());
    // No binding yet: the API server refuses each list, naming who asked.
    const who = 'system:serviceaccount:shoal:shoal-discover-in-cluster';
    await until('the lists refused', () => ['services', 'endpointslices', 'configmaps'].every((i) => logs.some((l) => l.informer === i && l.status === 403)), 20_000);
    // A refused list carries the API server's Status message (a refused watch only its status line).
    const refusals = logs.filter((l) => l.status === 403 && String(l.error).startsWith('list '));
    t.ok(refusals.length >= 3, `the lists were refused (${refusals.length})`);
    t.same(refusals.filter((l) => !String(l.error).includes(`User "${who}"`)).map((l) => l.error), [], `every refused list names ${who}`);
    await api.ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRoleBinding', metadata: { name: 'shoal-test-in-cluster' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ kind: 'ServiceAccount', name: 'shoal-discover-in-cluster', namespace: 'shoal' }],
    });
    await d.ready;
    await untilEndpoints(d, ns, `api.${ns}:8080`, want);
    t.pass('bound, it lists over HTTPS with the mounted CA and serves the 3 endpoints');
    const sidecar = await serviceAccountToken(api, ns, 'web');
    t.equal((await snapshot(d, ns, 'web', sidecar)).status, 200, 'TokenReview of a sidecar\'s token works in-cluster too');
  });
}
