// The two ways discover meets a real API server (test/lib/kube.ts) outside a test's own process setup:
// the command `shoal discover --kubernetes --kubeconfig FILE` as a process (served, read by `shoal get`
// with a token, stopped cleanly by SIGTERM, its watches gone from the API server), and the in-cluster
// configuration a pod gets (no kubeconfig: a service-account token from TokenRequest, the cluster's CA
// and a namespace file under a temporary prefix, KUBERNETES_SERVICE_HOST/PORT). One file, so one
// control plane for both. Usage errors need no cluster: cliUsage.test.ts.
import t, { type Test } from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { createLogger } from '../../../shared/log.ts';
import { startDiscover, type Discover } from '../../../discover/main.ts';
import { kubeForFile, run } from '../../lib/kube.ts';
import { AUDIENCE, call, childEnv, endpointsOf, OPERATOR_TOKEN, runCli, snapshot, stopCli, until } from './discoverClient.ts';
import { Api, seedApp, serviceAccountToken, untilEndpoints } from './realKube.ts';
import { bindClusterRole, requestToken, serviceAccount } from './kubeUsers.ts';

const kube = kubeForFile(t, import.meta.filename);
const root = join(import.meta.dirname, '..', '..', '..');
const cli = join(root, 'cli.ts');
const INFORMERS = ['services', 'endpointslices', 'configmaps', 'nodes'];

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-k8s-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `node cli.ts ARGS` to its end with ENV added: exit code, stdout, stderr. */
function shoal(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [cli, ...args], { env: { ...childEnv(), ...env }, timeoutMs: 120_000 });
}

/** The API server's open cluster-wide watches of discover's four kinds (apiserver_longrunning_requests), summed. */
async function openWatches(api: Api): Promise<number> {
  const a = await api.req('GET', '/metrics');
  if (a.status !== 200) throw new Error(`GET /metrics: ${a.status}`);
  let sum = 0;
  let seen = false;
  for (const line of String(a.json).split('\n')) {
    if (!line.startsWith('apiserver_longrunning_requests{') || !line.includes('verb="WATCH"') || !line.includes('scope="cluster"'))
      continue;
    seen = true;
    if (INFORMERS.some((r) => line.includes(`resource="${r}"`)) && line.includes('subresource=""'))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  if (!seen) throw new Error("the API server's /metrics has no apiserver_longrunning_requests for WATCH");
  return sum;
}

if (kube) {
  t.test('shoal discover --kubernetes --kubeconfig FILE: serves, shoal get reads it with a token, SIGTERM stops it cleanly', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'cli';
    await api.namespace(ns);
    const want = await seedApp(api, ns, 1);
    const sidecar = await serviceAccountToken(api, ns, 'web');
    const dir = tempDir(t);
    const watchesBefore = await openWatches(api);

    // The admin kubeconfig: it may watch Nodes too, so nothing is missing and nothing is logged as a warning.
    const r = runCli([
      'discover',
      '--kubernetes',
      '--kubeconfig',
      k.kubeconfig,
      '--host',
      '127.0.0.1',
      '--port',
      '0',
      '--write-token',
      OPERATOR_TOKEN,
      '--stale-after',
      '30',
    ]);
    t.teardown(() => stopCli(r));
    const port = (await r.line('discover listening')).port as number;
    const base = `http://127.0.0.1:${port}`;
    await r.line('first full state loaded: ready');
    t.equal((await call(base, 'GET', '/readyz')).status, 200, 'ready');
    const cluster = `api.${ns}:8080`;
    // The controller's EndpointSlice may come after discover's first list: wait for it.
    await until(
      'the 3 endpoints',
      async () => {
        const a = await call(base, 'GET', `/v2/snapshot/${ns}/web`, { token: OPERATOR_TOKEN });
        return a.status === 200 && JSON.stringify(endpointsOf(a.json as Snapshot, cluster)) === JSON.stringify(want);
      },
      30_000,
    );
    const s = await call(base, 'GET', `/v2/snapshot/${ns}/web`, { token: sidecar });
    t.equal(s.status, 200, 'a sidecar token of web (TokenRequest, reviewed by the API server) reads web');
    t.same(endpointsOf(s.json as Snapshot, cluster), want, "the 3 Ready Pods of the controller's EndpointSlice");
    t.equal((await call(base, 'GET', `/v2/snapshot/${ns}/web`)).status, 401, 'no token: 401');
    await until(
      "discover's 4 watches open on the API server",
      async () => (await openWatches(api)) === watchesBefore + INFORMERS.length,
      10_000,
    );
    t.pass(`the API server counts discover's ${INFORMERS.length} watches (${INFORMERS.join(', ')})`);

    const tokenFile = join(dir, 'operator-token');
    writeFileSync(tokenFile, `${OPERATOR_TOKEN}\n`);
    const got = await shoal(['get', `${ns}/web`, '--discover', base, '--token-file', tokenFile]);
    t.equal(got.code, 0, `shoal get with a token file: exit 0 ${got.stderr}`);
    t.match(got.stdout, new RegExp(`APP ${ns}/web`));
    t.match(
      got.stdout,
      /api\.cli:8080\s+http\s+\S+\s+10\.244\.1\.1:8080 10\.244\.1\.2:8080 10\.244\.1\.3:8080/,
      'shoal get lists the endpoints',
    );
    // The admin kubeconfig holds a client certificate, no token: shoal get has nothing to send.
    const denied = await shoal(['get', `${ns}/web`, '--discover', base], { KUBECONFIG: k.kubeconfig });
    t.equal(denied.code, 1, 'shoal get without a token fails');
    t.match(denied.stderr, /wants a token/);

    t.equal(await stopCli(r), 0, 'SIGTERM: exit 0');
    t.same(
      r.logs.filter((l) => l.level >= 40 && !/stopping/.test(l.msg)).map((l) => l.msg),
      [],
      'no warning or error logged, stop included',
    );
    t.same(
      r.stderr.filter((l) => l !== '' && l !== 'SIGTERM: stopping'),
      [],
      'nothing on stderr but the stop',
    );
    await until('the watches closed on the API server', async () => (await openWatches(api)) === watchesBefore, 10_000);
    t.pass('the API server has no watch of discover left');
  });

  t.test(
    "in-cluster: loadFromCluster with a real service-account token, the cluster's CA and a namespace file under a temporary prefix",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await api.node();
      const ns = 'incluster';
      await api.namespace(ns);
      const want = await seedApp(api, ns, 2);
      const saNs = 'shoal';
      const sa = 'shoal-discover-in-cluster';
      const user = `system:serviceaccount:${saNs}:${sa}`;
      await api.namespace(saNs);
      await serviceAccount(api, saNs, sa);

      // What the kubelet mounts: the token (the API server's own audience, as a projected token), the CA, the namespace.
      const prefix = tempDir(t);
      const mount = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
      mkdirSync(mount, { recursive: true });
      writeFileSync(join(mount, 'token'), await requestToken(api, saNs, sa));
      writeFileSync(join(mount, 'ca.crt'), readFileSync(k.cluster.caFile));
      writeFileSync(join(mount, 'namespace'), saNs);
      const server = new URL(k.cluster.server);
      const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
      process.env.KUBERNETES_SERVICE_HOST = server.hostname;
      process.env.KUBERNETES_SERVICE_PORT = server.port;
      t.teardown(() => {
        for (const [key, v] of [
          ['KUBERNETES_SERVICE_HOST', saved.host],
          ['KUBERNETES_SERVICE_PORT', saved.port],
        ] as const) {
          if (v === undefined) delete process.env[key];
          else process.env[key] = v;
        }
      });

      async function inCluster(t: Test, wait: boolean): Promise<{ d: Discover; logs: Array<Record<string, any>> }> {
        const logs: Array<Record<string, any>> = [];
        const log = createLogger('discover', 'info', {
          write(line: string) {
            for (const l of line.split('\n')) if (l !== '') logs.push(JSON.parse(l));
            if (process.env.SHOAL_TEST_LOG) process.stderr.write(line);
          },
        });
        const d = await startDiscover({
          kubernetes: { kubeconfigFile: undefined, inClusterPathPrefix: prefix, staleAfterMs: 30_000, tokenAudience: AUDIENCE },
          host: '127.0.0.1',
          port: 0,
          writeToken: OPERATOR_TOKEN,
          log,
        });
        t.teardown(() => d.close());
        if (wait) await d.ready;
        return { d, logs };
      }

      // With no role yet, every list is refused, and the API server names who asked: the mounted token's ServiceAccount.
      const bare = await inCluster(t, false);
      const forbidden = (r: string) =>
        bare.logs.some((l) => l.informer === r && l.status === 403 && String(l.error).includes(`User "${user}"`));
      await until('a 403 naming the ServiceAccount for each informer', () => INFORMERS.every(forbidden), 30_000);
      t.pass(`the API server saw ${user} on the lists of ${INFORMERS.join(', ')}`);
      t.same(
        bare.logs.filter((l) => l.status !== undefined && l.status !== 403).map((l) => l.msg),
        [],
        'no other failure (the CA verified the server)',
      );
      t.equal((await call(bare.d.url, 'GET', '/readyz')).status, 503, 'not ready while it may not list');
      await bare.d.close();

      // The chart's ClusterRole, as Helm renders it, bound to the ServiceAccount.
      const rendered = await k.helmOk([
        'template',
        'shoal',
        join(root, 'charts', 'shoal'),
        '--namespace',
        saNs,
        '--set',
        'injector.dnsUpstream=10.96.0.10',
        '--show-only',
        'templates/rbac.yaml',
      ]);
      const role = parseAllDocuments(rendered)
        .map((doc) => doc.toJS())
        .find((o) => o?.kind === 'ClusterRole');
      t.ok(role?.rules?.length > 0, 'the chart renders a ClusterRole');
      await bindClusterRole(api, 'shoal-discover-in-cluster', role.rules, { kind: 'ServiceAccount', name: sa, namespace: saNs });
      // The authorizer learns of a binding from its own watch: ask it before discover lists (a 403 on Nodes is final).
      await until(
        'the ServiceAccount may list every kind',
        async () => {
          for (const r of INFORMERS) {
            const review = await api.ok('POST', '/apis/authorization.k8s.io/v1/subjectaccessreviews', {
              apiVersion: 'authorization.k8s.io/v1',
              kind: 'SubjectAccessReview',
              spec: {
                user,
                groups: ['system:serviceaccounts', `system:serviceaccounts:${saNs}`, 'system:authenticated'],
                resourceAttributes: { verb: 'list', resource: r, group: r === 'endpointslices' ? 'discovery.k8s.io' : '' },
              },
            });
            if (!review.status.allowed) return false;
          }
          return true;
        },
        30_000,
      );

      const { d, logs } = await inCluster(t, true);
      await untilEndpoints(d, ns, `api.${ns}:8080`, want, 30_000);
      t.pass("listed over HTTPS with the mounted CA and token: the 3 endpoints of the controller's EndpointSlice");
      t.same((await snapshot(d, ns, 'web')).json.status.errors, [], 'no problems in the snapshot');
      const sidecar = await serviceAccountToken(api, ns, 'web');
      t.equal((await snapshot(d, ns, 'web', sidecar)).status, 200, "TokenReview works in-cluster too: web's sidecar token reads web");
      t.equal((await snapshot(d, ns, 'web', `${sidecar.slice(0, -4)}AAAA`)).status, 401, 'and a forged one is refused');
      t.same(
        logs.filter((l) => l.level >= 40).map((l) => l.msg),
        [],
        "no warning or error logged with the chart's role",
      );
    },
  );
}
