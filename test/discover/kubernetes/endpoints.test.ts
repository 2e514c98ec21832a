// What discover builds from a real API server's objects (test/lib/kube.ts): EndpointSlice conditions
// (a Pod deleted gracefully is terminating; with none ready the terminating one serves; a hand-made
// slice without conditions is ready), several slices of one Service, multi-port, headless and
// ExternalName Services, dependencies in another namespace, a missing Service that appears, long-polls
// that only real changes wake; discover's own ConfigMap writes (20 at once) and a ConfigMap over the
// limits; and `shoal discover --kubernetes --webhook` as a process, called by the API server, with the
// app's mesh ConfigMap feeding the sidecar it injects. One control plane, a namespace per test.
import t from 'tap';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import type { Snapshot } from '../../../shared/snapshot.ts';
import { MESH_CONFIG_LIMITS } from '../../../shared/meshConfig.ts';
import { createLogger } from '../../../shared/log.ts';
import { startDiscover } from '../../../discover/main.ts';
import { INJECT_PATH } from '../../../discover/webhook/webhookServer.ts';
import { kubeForFile } from '../../lib/kube.ts';
import { endpointSlice, meshConfigMap, service } from '../../lib/kubeFixtures.ts';
import { makeCerts } from '../webhook/fixtures.ts';
import { endpointsOf, longPoll, OPERATOR_TOKEN, runCli, snapshot, stopCli, until, waiters } from './discoverClient.ts';
import { Api, applyObject, deleteObject, endpointsIn, latest, seedApp, startRealDiscover, untilEndpoints } from './realKube.ts';

// A control plane start and a cold start of the CLI: 90-100 s on a loaded 2-core machine, close to tap's 120 s.
t.setTimeout(240_000);
const kube = kubeForFile(t, import.meta.filename);

/** A Ready Pod APP-I of app APP with IP. */
async function readyPod(api: Api, ns: string, name: string, app: string, ip: string): Promise<void> {
  await api.pod(ns, name, app);
  await api.setPodStatus(ns, name, ip, true);
}

if (kube) {
  t.test(
    '3 Ready Pods; one deleted gracefully is terminating and leaves; with none ready the terminating one serves; a slice without conditions is ready',
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await api.node();
      const ns = 'conditions';
      await api.namespace(ns);
      const want = await seedApp(api, ns, 11, 3, ['api', 'manual']);
      // A Service without selector, whose slice someone else writes (a custom endpoints controller): no conditions at all.
      await applyObject(api, service(ns, 'manual', [{ name: 'http', port: 8080 }], { selector: null }));
      await applyObject(api, endpointSlice(ns, 'manual-1', 'manual', [{ ip: '10.244.12.9' }], [{ name: 'http', port: 8080 }]));
      const { d } = await startRealDiscover(t, k);
      const cluster = `api.${ns}:8080`;
      await untilEndpoints(d, ns, cluster, want, 20_000);
      const first = await latest(d, ns);
      t.same(endpointsIn(first, `manual.${ns}:8080`), ['10.244.12.9:8080'], 'an endpoint without conditions is ready');

      // api-3 is deleted gracefully: with no kubelet to confirm, it stays terminating, and the controller says so.
      const polled = longPoll(d, ns, 'web', first.version, 20);
      await waiters(d, ns, 'web');
      const t0 = performance.now();
      await api.ok('DELETE', `/api/v1/namespaces/${ns}/pods/api-3`);
      const second = await polled;
      const ms = second.at - t0;
      t.comment(`terminating endpoint dropped ${ms.toFixed(0)} ms after the DELETE (the controller's slice update included)`);
      t.equal(second.status, 200, 'the waiter is woken');
      t.same(endpointsOf(second.json, cluster), want.slice(0, 2), '2 endpoints: the terminating one is dropped');
      t.ok(ms < 1000, `woken within 1 s (${ms.toFixed(0)} ms)`);
      const slice = (await api.slicesOf(ns, 'api'))[0];
      t.same(
        slice.endpoints.find((e: any) => e.addresses[0] === '10.244.11.3').conditions,
        { ready: false, serving: true, terminating: true },
        'the controller wrote api-3 as terminating and serving',
      );

      // The other two turn not Ready: the serving, terminating one takes the traffic.
      await api.setPodStatus(ns, 'api-1', '10.244.11.1', false);
      await api.setPodStatus(ns, 'api-2', '10.244.11.2', false);
      await until(
        'only the terminating endpoint',
        async () => JSON.stringify(endpointsIn(await latest(d, ns), cluster)) === JSON.stringify(['10.244.11.3:8080']),
      );
      const eps = (await latest(d, ns)).clusters.find((c) => c.name === cluster)!.endpoints;
      t.same(
        eps.map((e) => [e.address, e.ready, e.serving, e.terminating]),
        [['10.244.11.3', false, true, true]],
        'only the terminating, serving endpoint',
      );
    },
  );

  t.test('a Service with several slices joins them by the service-name label; deleting a slice removes its endpoints', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    const ns = 'slices';
    await api.namespace(ns);
    const http = [{ name: 'http', port: 8080 }];
    const ep = (...last: number[]) => last.map((n) => ({ ip: `10.244.13.${n}`, ready: true, serving: true, terminating: false }));
    await applyObject(api, service(ns, 'api', [{ name: 'http', port: 8080, appProtocol: 'http' }], { selector: null }));
    await applyObject(api, endpointSlice(ns, 'api-a', 'api', ep(1, 2, 3), http));
    await applyObject(api, endpointSlice(ns, 'api-b', 'api', ep(4, 5), http));
    // A slice of another Service with one of the same addresses: not api's.
    await applyObject(api, service(ns, 'other', [{ name: 'http', port: 8080 }], { selector: null }));
    await applyObject(api, endpointSlice(ns, 'other-a', 'other', ep(1, 6), http));
    await applyObject(
      api,
      meshConfigMap(ns, 'web', 'mesh', { base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }] }),
    );
    const { d } = await startRealDiscover(t, k);
    const cluster = `api.${ns}:8080`;
    const all = [1, 2, 3, 4, 5].map((n) => `10.244.13.${n}:8080`);
    await untilEndpoints(d, ns, cluster, all);
    t.pass("the two slices of api joined, the other Service's left out");
    const polled = longPoll(d, ns, 'web', (await latest(d, ns)).version, 20);
    await waiters(d, ns, 'web');
    await deleteObject(api, endpointSlice(ns, 'api-a', 'api', [], []));
    t.same(endpointsOf((await polled).json, cluster), all.slice(3), 'slice api-a deleted: its endpoints go');
  });

  t.test('multi-port Services map port by port; headless and ExternalName Services; a dependency in another namespace', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'ports';
    const other = 'ports-other';
    await api.namespace(ns);
    await api.namespace(other);
    // Two ports whose Pods listen on different target ports: each Service port gets its own.
    await applyObject(
      api,
      service(ns, 'multi', [
        { name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' },
        { name: 'grpc', port: 9090, targetPort: 9000 },
      ]),
    );
    await readyPod(api, ns, 'multi-1', 'multi', '10.244.14.1');
    await readyPod(api, ns, 'multi-2', 'multi', '10.244.14.2');
    // Headless: the Pods' endpoints used directly.
    await applyObject(api, service(ns, 'db', [{ name: 'tcp-pg', port: 5432 }], { clusterIP: 'None' }));
    await readyPod(api, ns, 'db-1', 'db', '10.244.14.7');
    // ExternalName: the sidecar proxies to the external name.
    await applyObject(
      api,
      service(ns, 'payments', [{ name: 'https', port: 443 }], { type: 'ExternalName', externalName: 'payments.example.com.' }),
    );
    // Another namespace.
    await api.service(other, 'api');
    await readyPod(api, other, 'api-1', 'api', '10.244.15.1');
    await readyPod(api, other, 'api-2', 'api', '10.244.15.2');
    await applyObject(
      api,
      meshConfigMap(ns, 'web', 'mesh', {
        base_services: [
          { depend_service_alias: 'multi', port: 80, protocol: 'http' },
          { depend_service_alias: 'multi', port: 9090, protocol: 'grpc' },
          { depend_service_alias: 'db', port: 5432, protocol: 'tcp' },
          { depend_service_alias: 'payments', port: 443, protocol: 'tcp' },
          { depend_service_alias: `api.${other}`, port: 8080, protocol: 'http' },
        ],
      }),
    );
    const { d } = await startRealDiscover(t, k);
    await untilEndpoints(d, ns, `api.${other}:8080`, ['10.244.15.1:8080', '10.244.15.2:8080']);
    await untilEndpoints(d, ns, `multi.${ns}:9090`, ['10.244.14.1:9000', '10.244.14.2:9000']);
    await untilEndpoints(d, ns, `db.${ns}:5432`, ['10.244.14.7:5432']);
    const s = await latest(d, ns);
    t.same(s.status.errors, [], 'no problems');
    t.same(endpointsOf(s, `multi.${ns}:80`), ['10.244.14.1:8080', '10.244.14.2:8080'], 'port 80 -> target 8080 only');
    t.same(endpointsOf(s, `multi.${ns}:9090`), ['10.244.14.1:9000', '10.244.14.2:9000'], 'port 9090 -> target 9000 only');
    t.same(endpointsOf(s, `db.${ns}:5432`), ['10.244.14.7:5432'], 'headless: the pod endpoints');
    t.same(endpointsOf(s, `payments.${ns}:443`), ['payments.example.com:443'], 'ExternalName: the external name, resolved upstream');
    const names = s.dns.map((x) => x.name);
    t.ok(names.includes(`api.${other}`), `DNS answers api.${other}`);
    t.ok(names.includes(`api.${other}.svc.cluster.local`), 'and its cluster-domain form');
    t.ok(names.includes('payments'), 'DNS answers the ExternalName service by its own name');

    // A change in the other namespace wakes web.
    const polled = longPoll(d, ns, 'web', s.version, 20);
    await waiters(d, ns, 'web');
    await api.setPodStatus(other, 'api-2', '10.244.15.2', false);
    t.same(
      endpointsOf((await polled).json, `api.${other}:8080`),
      ['10.244.15.1:8080'],
      'a Pod in the other namespace turning not Ready reaches web',
    );

    // The ExternalName changing its target reaches the snapshot too.
    const now = await latest(d, ns);
    const polled2 = longPoll(d, ns, 'web', now.version, 20);
    await waiters(d, ns, 'web');
    await api.ok(
      'PATCH',
      `/api/v1/namespaces/${ns}/services/payments`,
      { spec: { externalName: 'pay.example.net' } },
      'application/merge-patch+json',
    );
    t.same(endpointsOf((await polled2).json, `payments.${ns}:443`), ['pay.example.net:443']);
  });

  t.test('a missing Service is a problem in the snapshot and heals when it appears; an unrelated change wakes nobody', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'late';
    await api.namespace(ns);
    await api.meshConfig(ns, 'web', ['late']);
    await api.service(ns, 'unrelated');
    const { d } = await startRealDiscover(t, k);
    await until("web's snapshot", async () => (await snapshot(d, ns, 'web')).status === 200);
    const s = await latest(d, ns);
    t.match(s.status.errors.join('\n'), /late.*not found/, 'the problem is named');

    // A Pod of a Service web does not use turning Ready: web's waiter is left waiting.
    const quiet = longPoll(d, ns, 'web', s.version, 2);
    await waiters(d, ns, 'web');
    await readyPod(api, ns, 'unrelated-1', 'unrelated', '10.244.16.9');
    await until('the unrelated endpoint in its slice', async () =>
      (await api.slicesOf(ns, 'unrelated')).some((x) => (x.endpoints ?? []).length > 0),
    );
    t.equal((await quiet).status, 304, 'a change to a Service web does not use leaves it waiting');

    const polled = longPoll(d, ns, 'web', s.version, 20);
    await waiters(d, ns, 'web');
    await api.service(ns, 'late');
    t.same(((await polled).json as Snapshot).status.errors, [], 'the Service appears: no problem left');
    await readyPod(api, ns, 'late-1', 'late', '10.244.16.1');
    await untilEndpoints(d, ns, `late.${ns}:8080`, ['10.244.16.1:8080']);
    t.pass('its Pod is the endpoint');
  });

  t.test(
    '20 concurrent PUTs all answered 200, the ConfigMap, GET and the snapshot end on the last one; default host 0.0.0.0',
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      await api.node();
      const ns = 'writes';
      await api.namespace(ns);
      await seedApp(api, ns, 17, 1);
      const { d } = await startRealDiscover(t, k);
      const webConfig = (timeoutMs: number) => ({
        base_ports: [{ port: 8000, protocol: 'http' }],
        base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RequestTimeoutMS: String(timeoutMs) } }],
      });
      const order: number[] = [];
      const put = (i: number) =>
        request(`${d.url}/v1/resources/${ns}/web/mesh`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${OPERATOR_TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify(webConfig(5000 + i)),
          headersTimeout: 60_000,
          bodyTimeout: 60_000,
        }).then(async (res) => {
          order.push(i);
          return { status: res.statusCode, text: await res.body.text() };
        });
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => put(i)));
      t.same(
        answers.map((a) => a.status),
        Array(20).fill(200),
        `every PUT answered 200 (${answers
          .filter((a) => a.status !== 200)
          .map((a) => a.text)
          .join(', ')})`,
      );
      const last = order.filter((i) => answers[i].status === 200).at(-1)!;
      const expected = webConfig(5000 + last);
      const cm = await api.ok('GET', `/api/v1/namespaces/${ns}/configmaps/shoal-mesh-web`);
      t.same(JSON.parse(cm.data['plugin-config']), expected, 'the ConfigMap in the API server holds the last PUT answered');
      await until(
        'the watch delivered the last write',
        async () => (await snapshot(d, ns, 'web')).json.clusters?.[0]?.policy.requestTimeoutMs === 5000 + last,
      );
      const resource = await request(`${d.url}/v1/resources/${ns}/web/mesh`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
      t.same(await resource.body.json(), expected, 'GET /v1/resources agrees');

      const plain = await startDiscover({
        kubernetes: { kubeconfigFile: k.kubeconfig, tokenAudience: 'shoal' },
        port: 0,
        log: createLogger('discover', 'silent'),
      });
      t.teardown(() => plain.close());
      t.equal(
        (plain.server.server.address() as AddressInfo).address,
        '0.0.0.0',
        'Kubernetes mode still listens on every interface by default',
      );
    },
  );

  t.test('a mesh ConfigMap over the limits is refused and the app keeps its last good config', async (t) => {
    const k = await kube.up();
    const api = new Api(k);
    await api.node();
    const ns = 'limits';
    await api.namespace(ns);
    await seedApp(api, ns, 18, 1);
    const { d } = await startRealDiscover(t, k);
    await untilEndpoints(d, ns, `api.${ns}:8080`, ['10.244.18.1:8080']);
    const before = await latest(d, ns);
    t.equal(before.clusters.length, 1);
    await applyObject(
      api,
      meshConfigMap(ns, 'web', 'mesh', {
        base_services: Array.from({ length: MESH_CONFIG_LIMITS.dependencies + 1 }, (_, i) => ({
          depend_service_alias: `svc-${i}`,
          port: 80,
        })),
      }),
    );
    await until('the refusal in the snapshot', async () => (await latest(d, ns)).status.errors.some((e) => /at most 1000/.test(e)));
    const after = await latest(d, ns);
    t.match(
      after.status.errors[0],
      new RegExp(
        `mesh config refused, last good config in force: ConfigMap ${ns}/shoal-mesh-web: app ${ns}/web: base_services has 1001 entries; at most 1000 are allowed`,
      ),
    );
    t.same(
      after.clusters.map((c) => c.name),
      [`api.${ns}:8080`],
      'the last good config stays in force',
    );
  });

  t.test(
    "shoal discover --kubernetes --webhook as a process: the API server calls it, the app's mesh ConfigMap shapes the sidecar, an event on the pod",
    async (t) => {
      const k = await kube.up();
      const api = new Api(k);
      const ns = 'shop';
      await api.ok('POST', '/api/v1/namespaces', {
        apiVersion: 'v1',
        kind: 'Namespace',
        metadata: { name: ns, labels: { 'shoal.dev/inject': 'enabled' } },
      });
      await until(
        `the default ServiceAccount of ${ns}`,
        async () => (await api.req('GET', `/api/v1/namespaces/${ns}/serviceaccounts/default`)).status === 200,
        30_000,
      );
      await applyObject(
        api,
        meshConfigMap(ns, 'web', 'mesh', {
          base_ports: [{ port: 8080, listen_port: 65399, protocol: 'http' }],
          base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http' }],
          base_normal: { options: { LOG_FORMAT: 'json' } },
        }),
      );
      const certs = makeCerts();
      t.teardown(() => certs.cleanup());
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
        '--webhook',
        '--webhook-port',
        '0',
        '--webhook-cert',
        certs.certFile,
        '--webhook-key',
        certs.keyFile,
        '--sidecar-image',
        'ghcr.io/shoal-mesh/shoal:test',
        '--dns-upstream',
        '10.96.0.10',
      ]);
      t.teardown(() => stopCli(r));
      const webhookPort = (await r.line('webhook listening')).port as number;
      await r.line('first full state loaded: ready');
      // Pods only, in namespaces labelled for injection; Fail, so a webhook the API server cannot call shows here.
      const config = {
        apiVersion: 'admissionregistration.k8s.io/v1',
        kind: 'MutatingWebhookConfiguration',
        metadata: { name: 'shoal-cli-test' },
        webhooks: [
          {
            name: 'pods.inject.shoal.dev',
            admissionReviewVersions: ['v1'],
            sideEffects: 'None',
            failurePolicy: 'Fail',
            timeoutSeconds: 10,
            clientConfig: { url: `https://127.0.0.1:${webhookPort}${INJECT_PATH}`, caBundle: certs.ca.toString('base64') },
            rules: [{ operations: ['CREATE'], apiGroups: [''], apiVersions: ['v1'], resources: ['pods'] }],
            namespaceSelector: { matchLabels: { 'shoal.dev/inject': 'enabled' } },
          },
        ],
      };
      await api.ok('POST', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', config);
      t.teardown(() => api.req('DELETE', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/shoal-cli-test'));

      const pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { generateName: 'web-7d9f-', namespace: ns, labels: { app: 'web' }, annotations: { 'shoal.dev/proxy-cpu': 'lots' } },
        spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
      };
      // The API server picks up a new webhook configuration through its informer: until then pods go through untouched.
      // A dry run of a pod without the bad annotation (so no event comes from it) shows when.
      const probe = { ...pod, metadata: { ...pod.metadata, annotations: {} } };
      await until(
        'a pod the webhook injected',
        async () => {
          const c = await k.kubectl(['create', '-f', '-', '-o', 'json', '--dry-run=server'], { input: JSON.stringify(probe) });
          return c.code === 0 && (JSON.parse(c.stdout).spec.initContainers ?? []).length > 0;
        },
        20_000,
      );
      const created = await k.kubectl(['create', '-f', '-', '-o', 'json'], { input: JSON.stringify(pod) });
      t.equal(created.code, 0, created.stderr);
      const out = JSON.parse(created.stdout);
      const sidecar = [...(out.spec.initContainers ?? []), ...out.spec.containers].find((c: { name: string }) => c.name !== 'web');
      t.ok(sidecar, 'the API server stored the pod with a sidecar');
      const envOf = Object.fromEntries((sidecar.env ?? []).map((e: { name: string; value: string }) => [e.name, e.value]));
      t.equal(envOf.LOG_FORMAT, 'json', 'base_normal options of the ConfigMap reach the sidecar as env vars');
      t.equal(envOf.SERVICE_ALIAS, 'web');
      t.ok(
        (sidecar.ports ?? []).some((p: { containerPort: number }) => p.containerPort === 65399),
        "the listen_port of the mesh ConfigMap is the sidecar's port",
      );
      t.match(created.stderr, /Warning: shoal: annotation shoal\.dev\/proxy-cpu="lots"/, 'the bad annotation is a warning kubectl prints');
      const events = async () =>
        (await api.ok('GET', `/api/v1/namespaces/${ns}/events`)).items.filter((e: any) => e.reason === 'ShoalBadAnnotation');
      await until('the event in the API server', async () => (await events()).length > 0, 10_000);
      const [event] = await events();
      t.equal(event.involvedObject.kind, 'Pod');
      t.match(event.involvedObject.name, /^web-7d9f-/, 'on the pod (named as the webhook saw it)');
      t.match(event.message, /proxy-cpu="lots"/);
      t.equal(await stopCli(r), 0, 'SIGTERM: exit 0');
    },
  );
}
