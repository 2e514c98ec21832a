// Who may read and write, against a real API server (test/lib/kube.ts): PUT /v1/resources into the
// app's ConfigMap (401, 400 naming the option, create, update, a real 409 retried), sidecar tokens
// from the TokenRequest API checked by TokenReview, people reading with their own kubeconfig
// credential checked by TokenReview and SubjectAccessReview (granted, denied, revoked, cached),
// reviews that fail (503), and invalid ConfigMaps.
import t, { type Test } from 'tap';
import type { IncomingMessage } from 'node:http';
import { createServer } from 'node:https';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { getCommand } from '../../../cli/get.ts';
import { ACCESS_CACHE_TTL_MS } from '../../../discover/http/readAuth.ts';
import { kubeForFile, run } from '../../lib/kube.ts';
import { makeCerts } from '../webhook/fixtures.ts';
import { AUDIENCE, call, childEnv, longPoll, OPERATOR_TOKEN, snapshot, until, waiters } from './discoverClient.ts';
import { Api, startRealDiscover } from './realKube.ts';
import { apiRequests, bindClusterRole, bindRole, requestToken, serviceAccount, startDiscoverAs, userKubeconfig } from './kubeUsers.ts';

const kube = kubeForFile(t, import.meta.filename);
const cli = join(import.meta.dirname, '..', '..', '..', 'cli.ts');
const WEB = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }] };
const cmPath = (ns: string, name: string) => `/api/v1/namespaces/${ns}/configmaps/${name}`;
const READ_WEB = [{ apiGroups: [''], resources: ['configmaps'], resourceNames: ['shoal-mesh-web'], verbs: ['get'] }];
const INFORMERS = [
  { apiGroups: [''], resources: ['services', 'configmaps'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['get', 'list', 'watch'] },
];

function tempDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `node cli.ts ARGS` with ENV added: exit code, stdout, stderr. */
function shoal(args: string[], env: Record<string, string> = {}) {
  return run(process.execPath, [cli, ...args], { env: { ...childEnv(), ...env }, timeoutMs: 120_000 });
}

/** A namespace with Service api and app web depending on it (no Pods: reads are what matters here). */
async function webApp(api: Api, ns: string): Promise<void> {
  await api.namespace(ns);
  await api.service(ns, 'api');
  await api.meshConfig(ns, 'web', ['api']);
}

if (kube) {
  t.test(
    "PUT /v1/resources: 401 without a token or with a sidecar's, 400 naming a bad option with the ConfigMap unchanged, good -> ConfigMap updated and waiters woken",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'put';
      await webApp(api, ns);
      await serviceAccount(api, ns, 'web');
      const { d } = await startRealDiscover(t, k);
      const path = `/v1/resources/${ns}/web/mesh`;
      const before = await api.ok('GET', cmPath(ns, 'shoal-mesh-web'));

      t.equal((await call(d.url, 'PUT', path, { body: WEB })).status, 401, 'no token: 401');
      const sidecar = await requestToken(api, ns, 'web', { audience: AUDIENCE });
      t.equal((await call(d.url, 'PUT', path, { body: WEB, token: sidecar })).status, 401, 'a sidecar token may not write: 401');

      const bad = await call(d.url, 'PUT', path, {
        token: OPERATOR_TOKEN,
        body: { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { MaxRequests: 'ten' } }] },
      });
      t.equal(bad.status, 400, 'a bad option: 400');
      t.match(bad.json.message, /MaxRequests/, 'names the option');
      t.match(bad.json.message, /api/, 'and the dependency');
      const after = await api.ok('GET', cmPath(ns, 'shoal-mesh-web'));
      t.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, 'the ConfigMap is unchanged');

      const s = (await snapshot(d, ns, 'web')).json as Snapshot;
      const polled = longPoll(d, ns, 'web', s.version);
      await waiters(d, ns, 'web');
      const good = {
        base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RequestTimeoutMS: '2500', Weight: 100 } }],
        base_normal: { options: { LOG_FORMAT: 'json' } },
      };
      const ok = await call(d.url, 'PUT', path, { token: OPERATOR_TOKEN, body: good });
      t.equal(ok.status, 200, 'a good config: 200');
      const stored = await api.ok('GET', cmPath(ns, 'shoal-mesh-web'));
      t.same(JSON.parse(stored.data['plugin-config']), good, 'the ConfigMap holds the new config');
      t.equal(stored.metadata.labels['shoal.dev/plugin-id'], 'mesh');
      const woken = await polled;
      t.equal(woken.status, 200, 'the waiter is woken');
      t.equal((woken.json as Snapshot).clusters[0].policy.requestTimeoutMs, 2500, 'with the new config');
      const resource = await call(d.url, 'GET', path, { token: OPERATOR_TOKEN });
      t.same(resource.json, good, 'GET /v1/resources answers what was written');
    },
  );

  t.test(
    "PUT for an app without a ConfigMap creates one; an edit landing during discover's replace (a real 409) is retried on the fresh object",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'conflict';
      await webApp(api, ns);
      const { d } = await startRealDiscover(t, k);
      const created = await call(d.url, 'PUT', `/v1/resources/${ns}/worker/mesh`, { token: OPERATOR_TOKEN, body: WEB });
      t.equal(created.status, 200);
      const cm = await api.ok('GET', cmPath(ns, 'shoal-mesh-worker'));
      t.same(
        cm.metadata.labels,
        { 'shoal.dev/app': 'worker', 'shoal.dev/plugin-id': 'mesh' },
        'ConfigMap shoal-mesh-worker created with both labels',
      );
      await until("worker's snapshot", async () => (await snapshot(d, ns, 'worker')).status === 200);

      // A validating webhook holds discover's replace of web's ConfigMap until another edit is stored:
      // the API server then finds the object changed under the replace and answers 409.
      const certs = makeCerts();
      t.teardown(() => certs.cleanup());
      const mine = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RetryAttempts: 3 } }] };
      const other = { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RetryAttempts: 1 } }] };
      const seen: string[] = [];
      let release!: () => void;
      const released = new Promise<void>((r) => {
        release = r;
      });
      let held!: () => void;
      const holding = new Promise<void>((r) => {
        held = r;
      });
      let holds = 0;
      const hook = createServer(
        { cert: readFileSync(certs.certFile), key: readFileSync(certs.keyFile) },
        (req: IncomingMessage, res) =>
          void (async () => {
            let body = '';
            for await (const chunk of req) body += chunk;
            const review = JSON.parse(body);
            const data = review.request.object?.data?.['plugin-config'] ?? '';
            const probe = review.request.object?.metadata?.annotations?.probe;
            // discover stores option values as the route's schema coerced them ("3"): told apart by value.
            let attempts = '';
            try {
              attempts = String(JSON.parse(data).base_services[0].options.RetryAttempts);
            } catch {
              /* not ours */
            }
            const which = attempts === '3' ? 'mine' : attempts === '1' ? 'other' : `probe ${probe}`;
            seen.push(which);
            if (which === 'mine' && holds++ === 0) {
              held();
              await released;
            }
            res.setHeader('content-type', 'application/json');
            res.end(
              JSON.stringify({
                apiVersion: 'admission.k8s.io/v1',
                kind: 'AdmissionReview',
                response: { uid: review.request.uid, allowed: true },
              }),
            );
          })().catch((err: unknown) => {
            res.statusCode = 500;
            res.end(String(err));
          }),
      );
      await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
      t.teardown(
        () =>
          new Promise<void>((r) => {
            release();
            hook.closeAllConnections();
            hook.close(() => r());
          }),
      );
      const name = `shoal-test-hold-${ns}`;
      await api.ok('POST', '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations', {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'ValidatingWebhookConfiguration',
        metadata: { name },
        webhooks: [
          {
            name: 'hold.shoal.test',
            admissionReviewVersions: ['v1'],
            sideEffects: 'None',
            failurePolicy: 'Fail',
            timeoutSeconds: 15,
            clientConfig: { url: `https://127.0.0.1:${(hook.address() as AddressInfo).port}/hold`, caBundle: certs.ca.toString('base64') },
            rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['UPDATE'], resources: ['configmaps'], scope: 'Namespaced' }],
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
            objectSelector: { matchLabels: { 'shoal.dev/app': 'web' } },
          },
        ],
      });
      t.teardown(() =>
        api.req('DELETE', `/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/${name}`).then(() => undefined),
      );
      // The API server picks the configuration up through its own watch: edit until the webhook sees one.
      let n = 0;
      await until(
        'the webhook registered',
        async () => {
          await api.ok(
            'PATCH',
            cmPath(ns, 'shoal-mesh-web'),
            { metadata: { annotations: { probe: String(++n) } } },
            'application/merge-patch+json',
          );
          return seen.length > 0;
        },
        30_000,
      );
      seen.length = 0;

      const putting = call(d.url, 'PUT', `/v1/resources/${ns}/web/mesh`, { token: OPERATOR_TOKEN, body: mine });
      const first = await Promise.race([
        holding.then(() => 'held'),
        putting.then((a) => `answered ${a.status} before the webhook held it`),
      ]);
      t.equal(first, 'held', "the webhook holds discover's replace");
      await api.ok(
        'PATCH',
        cmPath(ns, 'shoal-mesh-web'),
        { data: { 'plugin-config': JSON.stringify(other) } },
        'application/merge-patch+json',
      );
      release();
      const res = await putting;
      t.equal(res.status, 200, 'the write succeeded');
      t.same(
        seen,
        ['mine', 'other', 'mine'],
        "discover's replace, the other edit stored meanwhile, then discover's retry on the fresh object (after the 409)",
      );
      t.same(
        JSON.parse((await api.ok('GET', cmPath(ns, 'shoal-mesh-web'))).data['plugin-config']),
        mine,
        'the last writer wins, nothing merged',
      );
    },
  );

  t.test(
    'sidecar tokens (TokenRequest, audience shoal): own namespace and app only; the ConfigMap may name more service accounts; reviews cached',
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      for (const ns of ['team-a', 'team-b']) {
        await webApp(api, ns);
        await serviceAccount(api, ns, 'web');
      }
      await api.ok('POST', '/api/v1/namespaces/team-a/configmaps', {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: 'shoal-mesh-batch',
          namespace: 'team-a',
          labels: { 'shoal.dev/app': 'batch', 'shoal.dev/plugin-id': 'mesh' },
          annotations: { 'shoal.dev/service-accounts': 'runner, cron' },
        },
        data: { 'plugin-config': JSON.stringify(WEB) },
      });
      await serviceAccount(api, 'team-a', 'runner');
      const { d } = await startRealDiscover(t, k);
      await until('team-a/batch', async () => (await snapshot(d, 'team-a', 'batch')).status === 200);
      const webA = await requestToken(api, 'team-a', 'web', { audience: AUDIENCE });

      t.equal((await snapshot(d, 'team-a', 'web', webA)).status, 200, 'team-a/web reads team-a/web');
      const cross = await snapshot(d, 'team-b', 'web', webA);
      t.equal(cross.status, 403, 'a sidecar token of namespace team-a reading an app of team-b: 403');
      t.match(
        cross.json.message,
        /service account team-a\/web may not read app team-b\/web: it needs get on ConfigMap shoal-mesh-web in namespace team-b.*reads apps of its own namespace \(team-a\) only/,
      );
      t.equal((await longPoll(d, 'team-b', 'web', 'x', 5, webA)).status, 403, 'long-poll too');
      t.equal((await call(d.url, 'GET', '/v1/resources/team-b/web/mesh', { token: webA })).status, 403, 'and /v1/resources');
      const batch = await snapshot(d, 'team-a', 'batch', webA);
      t.equal(batch.status, 403, 'another app of its own namespace: 403');
      t.match(batch.json.message, /named like its service account.*shoal\.dev\/service-accounts/);
      t.equal(
        (await snapshot(d, 'team-a', 'batch', await requestToken(api, 'team-a', 'runner', { audience: AUDIENCE }))).status,
        200,
        'a service account the ConfigMap lists: 200',
      );
      const none = await snapshot(d, 'team-a', 'web', '');
      t.equal(none.status, 401, 'no token: 401');
      t.equal(none.json.error, 'unauthorized');
      t.equal((await snapshot(d, 'team-a', 'web', 'not-a-token')).status, 401, 'a token the API server does not know: 401');
      const apiAudience = await snapshot(d, 'team-a', 'web', await requestToken(api, 'team-a', 'web'));
      t.equal(apiAudience.status, 403, "web's token for the API server's audience is no sidecar token: it needs RBAC like anyone (403)");
      t.match(
        apiAudience.json.message,
        /service account team-a\/web may not read app team-a\/web: it needs get on ConfigMap shoal-mesh-web/,
      );
      t.equal((await snapshot(d, 'team-b', 'web', OPERATOR_TOKEN)).status, 200, 'the operator token reads everything');

      const reviews = await apiRequests(api, 'tokenreviews', 'POST');
      const sars = await apiRequests(api, 'subjectaccessreviews', 'POST');
      t.ok(reviews > 0 && sars > 0, `the API server counted discover's reviews (${reviews} TokenReviews, ${sars} SubjectAccessReviews)`);
      for (let i = 0; i < 5; i++) {
        await snapshot(d, 'team-a', 'web', webA);
        await snapshot(d, 'team-b', 'web', webA);
      }
      t.equal(await apiRequests(api, 'tokenreviews', 'POST'), reviews, 'TokenReviews are cached: polling costs no API call');
      t.equal(await apiRequests(api, 'subjectaccessreviews', 'POST'), sars, 'and so are denials');
    },
  );

  t.test(
    "people read with their kubeconfig credential: TokenReview + SubjectAccessReview (get on the app's ConfigMap), 403 naming it, revocation within the cache TTL",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      for (const ns of ['people-a', 'people-b']) await webApp(api, ns);
      await api.meshConfig('people-a', 'other', ['api']);
      await api.namespace('people');
      await serviceAccount(api, 'people', 'alice');
      await bindRole(api, 'people-a', 'read-web', READ_WEB, { kind: 'ServiceAccount', name: 'alice', namespace: 'people' });
      const { d } = await startRealDiscover(t, k);
      await until('people-a/other', async () => (await snapshot(d, 'people-a', 'other')).status === 200);
      const dir = tempDir(t);

      // As `kubectl create token` gives: the API server's audience.
      const token = await requestToken(api, 'people', 'alice');
      const tokenFile = join(dir, 'alice.token');
      writeFileSync(tokenFile, `${token}\n`);
      const credential = join(dir, 'alice.credential.json');
      writeFileSync(
        credential,
        JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token } }),
      );
      const kubeconfigs = {
        token: userKubeconfig(k, dir, 'alice-token', { token }),
        tokenFile: userKubeconfig(k, dir, 'alice-file', { tokenFile }),
        exec: userKubeconfig(k, dir, 'alice-exec', { exec: { command: 'sh', args: ['-c', `cat '${credential}'`] } }),
      };
      const get = (target: string, kubeconfig: string) =>
        getCommand([target], { discover: d.url, output: 'json', token: '', 'token-file': '', kubeconfig, context: '' });
      for (const [how, file] of Object.entries(kubeconfigs)) {
        const s = JSON.parse(await get('people-a/web', file)) as Snapshot;
        t.equal(`${s.namespace}/${s.app}`, 'people-a/web', `shoal get people-a/web reads with the kubeconfig user's ${how}`);
        await t.rejects(
          get('people-b/web', file),
          /denied reading people-b\/web \(reading as kubeconfig user "alice-\w+".*\): service account people\/alice may not read app people-b\/web: it needs get on ConfigMap shoal-mesh-web in namespace people-b/,
          `${how}: people-b/web is 403 naming the permission`,
        );
      }
      await t.rejects(
        get('people-a/other', kubeconfigs.token),
        /may not read app people-a\/other: it needs get on ConfigMap shoal-mesh-other in namespace people-a/,
        'the Role names one ConfigMap: another app of the namespace is 403',
      );
      const shoalAudience = await snapshot(d, 'people-a', 'web', await requestToken(api, 'people', 'alice', { audience: AUDIENCE }));
      t.equal(shoalAudience.status, 200, "a token of alice for discover's own audience (useless to the API server) reads too");
      await t.rejects(
        get('people-a/web', k.kubeconfig),
        /client certificate only, which discover cannot check.*kubectl create token/,
        'a kubeconfig user with only a client certificate: a clear error saying why and what to do',
      );
      t.equal((await call(d.url, 'GET', '/v2/snapshot/people-a/web')).status, 401, 'no token: 401');

      // The real command, the kubeconfig from $KUBECONFIG: sent only after discover asked for a token.
      const [ok, denied, cert] = await Promise.all([
        shoal(['get', 'people-a/web', '--discover', d.url], { KUBECONFIG: kubeconfigs.exec }),
        shoal(['get', 'people-b/web', '--discover', d.url], { KUBECONFIG: kubeconfigs.exec }),
        shoal(['get', 'people-a/web', '--discover', d.url, '--kubeconfig', k.kubeconfig]),
      ]);
      t.equal(ok.code, 0, `shoal get with $KUBECONFIG: exit 0 ${ok.stderr}`);
      t.match(ok.stdout, /APP people-a\/web/);
      t.equal(denied.code, 1, 'shoal get of another namespace: exit 1');
      t.match(denied.stderr, /needs get on ConfigMap shoal-mesh-web in namespace people-b/);
      t.equal(cert.code, 1, 'shoal get with a certificate-only kubeconfig: exit 1');
      t.match(cert.stderr, /client certificate only/);

      // Revocation: a fresh token (its own review) is allowed, the RoleBinding goes, and the cached answer holds for the TTL only.
      const fresh = await requestToken(api, 'people', 'alice');
      t.equal((await snapshot(d, 'people-a', 'web', fresh)).status, 200, 'allowed');
      const reviewedAt = performance.now();
      await api.ok('DELETE', '/apis/rbac.authorization.k8s.io/v1/namespaces/people-a/rolebindings/read-web');
      t.equal(
        (await snapshot(d, 'people-a', 'web', fresh)).status,
        200,
        'right after the RoleBinding is deleted: still allowed from the cache',
      );
      await until(
        'the revocation in force',
        async () => (await snapshot(d, 'people-a', 'web', fresh)).status === 403,
        ACCESS_CACHE_TTL_MS + 10_000,
      );
      const revokedMs = performance.now() - reviewedAt;
      t.comment(`revocation took effect ${revokedMs.toFixed(0)} ms after the allowed review (cache TTL ${ACCESS_CACHE_TTL_MS} ms)`);
      t.ok(revokedMs >= ACCESS_CACHE_TTL_MS - 500 && revokedMs <= ACCESS_CACHE_TTL_MS + 3000, 'at the end of the TTL');
      // Denials are cached as long: granting again takes effect after the TTL too.
      await api.ok('POST', '/apis/rbac.authorization.k8s.io/v1/namespaces/people-a/rolebindings', {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'read-web', namespace: 'people-a' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-web' },
        subjects: [{ kind: 'ServiceAccount', name: 'alice', namespace: 'people' }],
      });
      t.equal((await snapshot(d, 'people-a', 'web', fresh)).status, 403, 'right after the grant: still denied from the cache');
      await until(
        'the grant in force',
        async () => (await snapshot(d, 'people-a', 'web', fresh)).status === 200,
        ACCESS_CACHE_TTL_MS + 10_000,
      );
      t.pass('granted again after the TTL');
    },
  );

  t.test(
    'reviews that fail answer 503: a discover whose service account may not create TokenReviews, then not SubjectAccessReviews',
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await webApp(api, 'weak-app');
      await serviceAccount(api, 'weak-app', 'web');
      await api.namespace('weak');
      await serviceAccount(api, 'weak', 'discover');
      await serviceAccount(api, 'weak', 'bob');
      await bindRole(api, 'weak-app', 'read-web', READ_WEB, { kind: 'ServiceAccount', name: 'bob', namespace: 'weak' });
      const sa = { kind: 'ServiceAccount' as const, name: 'discover', namespace: 'weak' };
      await bindClusterRole(api, 'shoal-test-weak-informers', INFORMERS, sa);
      const dir = tempDir(t);
      const { d, logs } = await startDiscoverAs(
        t,
        userKubeconfig(k, dir, 'weak-discover', { token: await requestToken(api, 'weak', 'discover') }),
      );
      const sidecar = await requestToken(api, 'weak-app', 'web', { audience: AUDIENCE });
      const bob = await requestToken(api, 'weak', 'bob');

      const noReview = await snapshot(d, 'weak-app', 'web', sidecar);
      t.equal(noReview.status, 503, 'TokenReview forbidden to discover: 503');
      t.match(noReview.json.message, /TokenReview failed/);
      t.ok(
        logs.some((l) => l.msg === 'TokenReview failed'),
        'and logged',
      );

      await bindClusterRole(
        api,
        'shoal-test-weak-tokenreviews',
        [{ apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] }],
        sa,
      );
      await until('TokenReviews allowed', async () => (await snapshot(d, 'weak-app', 'web', sidecar)).status === 200);
      t.pass('a sidecar needs no SubjectAccessReview: 200');
      const noSar = await snapshot(d, 'weak-app', 'web', bob);
      t.equal(noSar.status, 503, "SubjectAccessReview forbidden to discover: a person's read is 503, not a denial");
      t.match(noSar.json.message, /SubjectAccessReview failed/);

      await bindClusterRole(
        api,
        'shoal-test-weak-sars',
        [{ apiGroups: ['authorization.k8s.io'], resources: ['subjectaccessreviews'], verbs: ['create'] }],
        sa,
      );
      await until('SubjectAccessReviews allowed', async () => (await snapshot(d, 'weak-app', 'web', bob)).status === 200);
      t.pass('with the permission: bob reads (200)');
    },
  );

  t.test('an invalid ConfigMap keeps the last good snapshot, shows in status and in shoal get, and is counted', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    const ns = 'invalid';
    await webApp(api, ns);
    await api.ok('POST', `/api/v1/namespaces/${ns}/configmaps`, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'shoal-mesh-broken', namespace: ns, labels: { 'shoal.dev/app': 'broken', 'shoal.dev/plugin-id': 'mesh' } },
      data: { 'plugin-config': 'not json {' },
    });
    const { d } = await startRealDiscover(t, k);
    const good = (await snapshot(d, ns, 'web')).json as Snapshot;
    t.same(good.status.errors, []);

    const setWeb = (config: unknown) =>
      api.ok('PATCH', cmPath(ns, 'shoal-mesh-web'), { data: { 'plugin-config': JSON.stringify(config) } }, 'application/merge-patch+json');
    const polled = longPoll(d, ns, 'web', good.version);
    await waiters(d, ns, 'web');
    await setWeb({
      base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { ConsecutiveErrors: 'many' } }],
    });
    const next = (await polled).json as Snapshot;
    t.equal(next.clusters[0].policy.consecutiveErrors, good.clusters[0].policy.consecutiveErrors, 'the last good config stays in force');
    t.match(
      next.status.errors.join('\n'),
      /mesh config refused.*ConfigMap invalid\/shoal-mesh-web.*ConsecutiveErrors/,
      'status names the ConfigMap and the option',
    );

    const table = await getCommand([`${ns}/web`], { discover: d.url, output: 'table', token: OPERATOR_TOKEN });
    t.match(table, /PROBLEMS[\s\S]*ConsecutiveErrors/, 'shoal get shows the problem');
    t.match(table, /CLUSTERS[\s\S]*api\.invalid:8080/, 'and the cluster still served');

    // An app whose only config is invalid has no snapshot; discover and shoal get say why.
    const missing = await snapshot(d, ns, 'broken');
    t.equal(missing.status, 404);
    t.match(missing.json.message, /refused.*plugin-config is not JSON/);
    await t.rejects(
      getCommand([`${ns}/broken`], { discover: d.url, output: 'table', token: OPERATOR_TOKEN }),
      /has no app invalid\/broken: .*not JSON/,
    );

    const metrics = await call(d.url, 'GET', '/metrics');
    t.match(
      String(metrics.json ?? ''),
      /shoal_discover_config_errors_total\{[^}]*source="kubernetes"[^}]*\} [2-9]/,
      'both refusals counted',
    );

    // Fixing the ConfigMap clears the problem.
    const now = (await snapshot(d, ns, 'web')).json as Snapshot;
    const polled2 = longPoll(d, ns, 'web', now.version);
    await waiters(d, ns, 'web');
    await setWeb(WEB);
    t.same(((await polled2).json as Snapshot).status.errors, [], 'a valid config clears the problem');
  });
}
