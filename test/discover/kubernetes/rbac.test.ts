// The chart's RBAC, proven on a real API server: the chart is installed with real Helm, discover runs
// with a token of the chart's own ServiceAccount (TokenRequest, as `kubectl create token`), not the
// admin's, and every API call it makes works: lists and watches of Services, EndpointSlices and
// ConfigMaps, ConfigMap create and update (PUT /v1/resources), TokenReviews (sidecar tokens),
// SubjectAccessReviews (people's reads) and Events. Then `kubectl auth can-i --list` for that
// ServiceAccount must show exactly docs/kubernetes.md's RBAC table, beyond what a fresh ServiceAccount
// with no binding gets anyway.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { createLogger } from '../../../shared/log.ts';
import { eventRecorder } from '../../../discover/http/readAuth.ts';
import { loadKubeConfig } from '../../../discover/source/kubernetes/kubernetesSource.ts';
import { kubeForFile, type TestKube } from '../../lib/kube.ts';
import { AUDIENCE, call, longPoll, OPERATOR_TOKEN, snapshot, until, waiters } from './discoverClient.ts';
import { Api, endpointsIn, latest, seedApp } from './realKube.ts';
import { bindRole, requestToken, serviceAccount, startDiscoverAs, userKubeconfig } from './kubeUsers.ts';

const kube = kubeForFile(t, import.meta.filename);
const root = join(import.meta.dirname, '..', '..', '..');
const chartDir = join(root, 'charts', 'shoal');
const RELEASE_NS = 'shoal';
const SA = 'shoal-discover';

/** `kubectl auth can-i --list` rows as "resource[.group] names verb" and "url verb" strings. */
function parseCanIList(out: string): Set<string> {
  const rules = new Set<string>();
  for (const line of out.split('\n').slice(1)) {
    const m = /^(?:(\S+)\s+)?\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$/.exec(line.trim());
    if (!m) continue;
    const [, resource, urls, names, verbs] = m;
    for (const verb of verbs.split(/\s+/).filter(Boolean)) {
      if (resource) rules.add(`${resource} [${names}] ${verb}`);
      for (const url of urls.split(/\s+/).filter(Boolean)) rules.add(`${url} ${verb}`);
    }
  }
  return rules;
}

/** docs/kubernetes.md's RBAC table as the same strings. */
function parseDocTable(doc: string): Set<string> {
  const section = doc.slice(doc.indexOf('\n## RBAC'), doc.indexOf('\n## ', doc.indexOf('\n## RBAC') + 1));
  const rules = new Set<string>();
  for (const line of section.split('\n')) {
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    if (cells.length < 3 || !cells[0].startsWith('`')) continue;
    const groups = cells[0].split(',').map((g) =>
      g
        .trim()
        .replace(/^`(.*)`$/, '$1')
        .replace(/^""$/, ''),
    );
    for (const g of groups) {
      for (const r of cells[1].split(',').map((x) => x.trim())) {
        // kubectl names a subresource after the group: httproutes.gateway.networking.k8s.io/status.
        const [res, sub] = r.split('/');
        for (const v of cells[2].split(',').map((x) => x.trim()))
          rules.add(`${g === '' ? res : `${res}.${g}`}${sub ? `/${sub}` : ''} [] ${v}`);
      }
    }
  }
  return rules;
}

const minus = (a: Set<string>, b: Set<string>) => [...a].filter((x) => !b.has(x)).sort();

async function canIList(k: TestKube, ns: string, sa: string): Promise<Set<string>> {
  return parseCanIList(await k.kubectlOk(['auth', 'can-i', '--list', '-n', ns, `--as=system:serviceaccount:${ns}:${sa}`]));
}

if (kube) {
  t.test(
    "the chart installed by Helm; discover with its ServiceAccount's token: lists, watches, ConfigMap writes, TokenReviews, SubjectAccessReviews and Events all work, no 403",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      // The release, for real (its Deployment never runs: no kubelet here; its RBAC is what matters).
      await k.helmOk([
        'install',
        'shoal',
        chartDir,
        '--namespace',
        RELEASE_NS,
        '--create-namespace',
        '--set',
        'injector.dnsUpstream=10.96.0.10',
        '--wait=false',
      ]);
      const role = await api.ok('GET', `/apis/rbac.authorization.k8s.io/v1/clusterroles/${SA}`);
      t.ok(
        role.rules.some((r: any) => r.resources.includes('subjectaccessreviews')),
        "the chart's ClusterRole is installed",
      );

      const dir = mkdtempSync(join(tmpdir(), 'shoal-rbac-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const token = (await k.kubectlOk(['create', 'token', SA, '-n', RELEASE_NS, '--duration', '1h'])).trim();
      const kubeconfig = userKubeconfig(k, dir, SA, { token });
      t.equal(
        (await k.kubectl(['--kubeconfig', kubeconfig, 'get', 'secrets', '-A'])).code,
        1,
        "the token is the ServiceAccount's, not an admin's: it may not list Secrets",
      );

      const ns = 'rbac-app';
      await api.node();
      await api.namespace(ns);
      const ips = await seedApp(api, ns, 7, 2);
      await serviceAccount(api, ns, 'web');
      const { d, logs } = await startDiscoverAs(t, kubeconfig);
      const cluster = `api.${ns}:8080`;
      await until(
        'both endpoints (lists)',
        async () => JSON.stringify(endpointsIn(await latest(d, ns), cluster)) === JSON.stringify(ips),
        30_000,
      );
      t.pass("lists: the snapshot has the EndpointSlice controller's endpoints");

      // Watches: an endpoint leaving, a Service appearing, a ConfigMap written.
      const v1 = (await latest(d, ns)).version;
      const polled = longPoll(d, ns, 'web', v1, 20);
      await waiters(d, ns, 'web');
      await api.setPodStatus(ns, 'api-2', '10.244.7.2', false);
      t.same(endpointsIn((await polled).json as Snapshot, cluster), [ips[0]], 'watch of EndpointSlices: the not-Ready Pod leaves');
      await api.service(ns, 'db');
      const put = await call(d.url, 'PUT', `/v1/resources/${ns}/web/mesh`, {
        token: OPERATOR_TOKEN,
        body: { base_services: ['api', 'db'].map((s) => ({ depend_service_alias: s, port: 8080, protocol: 'http' })) },
      });
      t.equal(put.status, 200, 'ConfigMap update (PUT /v1/resources on an existing app): 200');
      await until("db in web's snapshot", async () => (await latest(d, ns)).clusters.some((c) => c.name === `db.${ns}:8080`));
      t.same((await latest(d, ns)).status.errors, [], 'watches of ConfigMaps and Services: the new dependency is there with no problem');
      const created = await call(d.url, 'PUT', `/v1/resources/${ns}/worker/mesh`, {
        token: OPERATOR_TOKEN,
        body: { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }] },
      });
      t.equal(created.status, 200, 'ConfigMap create (PUT /v1/resources for a new app): 200');
      await until("worker's snapshot", async () => (await snapshot(d, ns, 'worker')).status === 200);

      // TokenReview (a sidecar) and SubjectAccessReview (a person, allowed and denied).
      t.equal(
        (await snapshot(d, ns, 'web', await requestToken(api, ns, 'web', { audience: AUDIENCE }))).status,
        200,
        "TokenReview: web's sidecar token reads web",
      );
      await serviceAccount(api, ns, 'reader');
      await bindRole(
        api,
        ns,
        'read-web',
        [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['shoal-mesh-web'], verbs: ['get'] }],
        { kind: 'ServiceAccount', name: 'reader', namespace: ns },
      );
      const reader = await requestToken(api, ns, 'reader');
      t.equal((await snapshot(d, ns, 'web', reader)).status, 200, 'SubjectAccessReview: a reader with get on the ConfigMap reads web');
      const denied = await snapshot(d, ns, 'worker', reader);
      t.equal(denied.status, 403, 'SubjectAccessReview: and not worker (a denial, not a failed review)');
      t.match(denied.json.message, /needs get on ConfigMap shoal-mesh-worker/);

      // Events, as the webhook records them, with the same credential.
      const record = eventRecorder(loadKubeConfig(kubeconfig), createLogger('discover', 'silent'));
      record(ns, 'web-1', 'ShoalBadAnnotation', 'shoal.dev/proxy-cpu="lots" is not a CPU quantity');
      await until('the Event in the API', async () =>
        (await api.ok('GET', `/api/v1/namespaces/${ns}/events`)).items.some((e: any) => e.reason === 'ShoalBadAnnotation'),
      );
      t.pass('Events: created');

      const bad = logs.filter((l) => l.level >= 40 || /403|forbidden/i.test(JSON.stringify(l)));
      t.same(bad, [], "no warning, error or 403 in discover's log");
    },
  );

  t.test(
    "kubectl auth can-i --list for the chart's ServiceAccount shows exactly the RBAC table of docs/kubernetes.md, beyond what every ServiceAccount gets",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await serviceAccount(api, RELEASE_NS, 'fresh');
      const mine = await canIList(k, RELEASE_NS, SA);
      const everyone = await canIList(k, RELEASE_NS, 'fresh');
      const doc = parseDocTable(readFileSync(join(root, 'docs', 'kubernetes.md'), 'utf8'));
      t.ok(doc.size >= 10, `the doc's table parsed (${doc.size} rules)`);
      t.ok(everyone.size > 0, `a fresh ServiceAccount with no binding already may: ${[...everyone].sort().join('; ')}`);
      t.same(minus(mine, everyone), minus(doc, everyone), "what the chart grants beyond that is exactly the doc's table");
      t.same(minus(doc, mine), [], 'and everything the doc lists is granted');
      t.comment(`granted by the chart: ${minus(mine, everyone).join('; ')}`);
    },
  );
}
