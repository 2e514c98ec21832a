// Pod injection end to end: AdmissionReview v1 over HTTPS, the JSONPatch applied with fast-json-patch,
// the result checked field by field and validated against the Kubernetes schemas (kubernetes-models).
import t from 'tap';
import { Pod } from 'kubernetes-models/v1';
import { decodePatch, patched, review, send, startTestWebhook, type Started } from './fixtures.ts';

// A Deployment's pod as the ReplicaSet controller submits it: generateName, no metadata.namespace,
// API defaults filled in, the service-account token volume already added.
function deploymentPod(): any {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'checkout-7d9f8b6c4-',
      labels: { 'app.kubernetes.io/name': 'checkout', 'pod-template-hash': '7d9f8b6c4' },
      annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-11-20T10:00:00Z' },
      ownerReferences: [
        {
          apiVersion: 'apps/v1',
          kind: 'ReplicaSet',
          name: 'checkout-7d9f8b6c4',
          uid: '0b6f1c9e-1111-4d2a-9c1e-6f0e2a8b7c11',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'registry.example/checkout:1.4.2',
          imagePullPolicy: 'IfNotPresent',
          ports: [
            { name: 'http', containerPort: 8080, protocol: 'TCP' },
            { containerPort: 9090, protocol: 'TCP' },
            { name: 'gossip', containerPort: 7946, protocol: 'UDP' },
          ],
          env: [
            { name: 'DB_HOST', value: 'orders-db' },
            { name: 'DB_URL', value: 'postgres://$(DB_HOST):5432/orders' },
            { name: 'POD_IP', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } } },
            { name: 'MEM_LIMIT', valueFrom: { resourceFieldRef: { resource: 'limits.memory', divisor: '1Mi' } } },
            { name: 'NAMESPACE', value: 'not-the-sidecars' },
            { name: 'SHOAL_LOG_LEVEL', value: 'debug' },
            { name: 'NODE_OPTIONS', value: '--require /app/tracing.js' },
          ],
          envFrom: [{ configMapRef: { name: 'checkout-settings' } }],
          readinessProbe: {
            httpGet: { path: '/health', port: 'http', scheme: 'HTTP' },
            periodSeconds: 10,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          resources: { requests: { cpu: '200m', memory: '256Mi' }, limits: { memory: '256Mi' } },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
          volumeMounts: [{ name: 'kube-api-access-x7k2p', mountPath: '/var/run/secrets/kubernetes.io/serviceaccount', readOnly: true }],
        },
        {
          name: 'log-shipper',
          image: 'registry.example/fluent-bit:3.1',
          imagePullPolicy: 'IfNotPresent',
          env: [{ name: 'TARGET', value: 'logs.example:24224' }],
          resources: {},
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
        },
      ],
      dnsPolicy: 'ClusterFirst',
      enableServiceLinks: true,
      preemptionPolicy: 'PreemptLowerPriority',
      priority: 0,
      restartPolicy: 'Always',
      schedulerName: 'default-scheduler',
      securityContext: {},
      serviceAccount: 'checkout',
      serviceAccountName: 'checkout',
      terminationGracePeriodSeconds: 30,
      tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
      volumes: [
        {
          name: 'kube-api-access-x7k2p',
          projected: { defaultMode: 420, sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: 'token' } }] },
        },
      ],
    },
  };
}

// A Job's pod: one container, no ports, restartPolicy Never, no annotations at all.
function jobPod(): any {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'nightly-report-28871040-',
      labels: {
        app: 'nightly-report',
        'batch.kubernetes.io/job-name': 'nightly-report-28871040',
        'batch.kubernetes.io/controller-uid': '5d1c0c55-2222-4a7e-8f7a-9b3c1d2e4f50',
      },
      ownerReferences: [
        {
          apiVersion: 'batch/v1',
          kind: 'Job',
          name: 'nightly-report-28871040',
          uid: '5d1c0c55-2222-4a7e-8f7a-9b3c1d2e4f50',
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      containers: [
        {
          name: 'report',
          image: 'registry.example/report:2.0',
          command: ['/bin/report', '--since=24h'],
          imagePullPolicy: 'IfNotPresent',
          resources: {},
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
        },
      ],
      dnsPolicy: 'ClusterFirst',
      enableServiceLinks: true,
      restartPolicy: 'Never',
      schedulerName: 'default-scheduler',
      serviceAccountName: 'default',
      terminationGracePeriodSeconds: 30,
    },
  };
}

function withAnnotations(pod: any, annotations: Record<string, string>): any {
  pod.metadata.annotations = { ...(pod.metadata.annotations ?? {}), ...annotations };
  return pod;
}

type Asserts = Pick<typeof t, 'equal'>;

async function admitPod(t: Asserts, w: Started, pod: any, opts: Parameters<typeof review>[1] = {}) {
  const req = review(pod, { namespace: 'shop', ...opts });
  const res = await send(w.webhook.port, w.certs.ca, req);
  t.equal(res.status, 200, 'HTTP 200');
  t.equal(res.body.apiVersion, 'admission.k8s.io/v1');
  t.equal(res.body.kind, 'AdmissionReview');
  t.equal(res.body.response.uid, req.request.uid, 'uid echoed');
  t.equal(res.body.response.allowed, true, 'never rejected');
  return res.body.response;
}

function validates(t: { doesNotThrow(fn: () => void, message: string): unknown }, obj: any) {
  t.doesNotThrow(() => new Pod(obj).validate(), 'the patched pod validates against the Kubernetes schema');
}

t.test("a Deployment's pod with two containers", async (t) => {
  const w = await startTestWebhook({
    pluginEnv: (ns, app) => (ns === 'shop' && app === 'checkout' ? { REGION: 'eu-west-1', NAMESPACE: 'x' } : undefined),
  });
  t.teardown(() => w.close());
  const pod = deploymentPod();
  const response = await admitPod(t, w, pod);
  t.equal(response.patchType, 'JSONPatch');
  const ops = decodePatch(response);
  t.ok(
    ops.some((o: any) => o.path === '/metadata/annotations/shoal.dev~1injected'),
    'annotation keys escaped per RFC 6901',
  );
  const out = patched(pod, response);
  validates(t, out);

  const sidecar = out.spec.initContainers[0];
  t.equal(out.spec.initContainers.length, 1, 'initContainers created with the sidecar only');
  t.equal(sidecar.name, 'shoal-proxy');
  t.equal(sidecar.restartPolicy, 'Always', 'native sidecar');
  t.same(sidecar.args, ['proxy']);
  t.equal(sidecar.image, 'ghcr.io/shoal-mesh/shoal:0.1.0');
  t.same(sidecar.startupProbe.httpGet, { path: '/ready', port: 65533, scheme: 'HTTP' }, 'startup probe on /ready');
  t.equal(sidecar.lifecycle, undefined, 'no postStart wait in native mode');

  const names = sidecar.env.map((e: any) => e.name);
  t.same(
    names,
    [
      'DB_HOST',
      'DB_URL',
      'POD_IP',
      'MEM_LIMIT',
      'DISCOVER_URL',
      'PLUGIN_ID',
      'NAMESPACE',
      'SERVICE_ALIAS',
      'SHOAL_DNS_UPSTREAM',
      'SHOAL_CLUSTER_DOMAIN',
      'SHOAL_TOKEN_FILE',
      'SHOAL_STATE_FILE',
      'SHOAL_NODE',
      'NODE_OPTIONS',
      'REGION',
    ],
    "app env first, in order; shoal's and Node's own names dropped from the copy; plugin env last",
  );
  const env = Object.fromEntries(sidecar.env.map((e: any) => [e.name, e]));
  t.ok(names.indexOf('DB_HOST') < names.indexOf('DB_URL'), '$(DB_HOST) is defined before DB_URL uses it');
  t.equal(env.DB_URL.value, 'postgres://$(DB_HOST):5432/orders', '$(VAR) reference kept as is');
  t.same(env.POD_IP.valueFrom, { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } }, 'valueFrom kept');
  t.same(
    env.MEM_LIMIT.valueFrom.resourceFieldRef,
    { resource: 'limits.memory', divisor: '1Mi', containerName: 'app' },
    'resource refs still read the app container',
  );
  t.equal(env.DISCOVER_URL.value, 'http://shoal-discover.shoal.svc:6100/v1/resources/shop/checkout/mesh');
  t.equal(env.PLUGIN_ID.value, 'mesh');
  t.equal(env.NAMESPACE.value, 'shop', 'namespace from the request when metadata has none');
  t.equal(env.SERVICE_ALIAS.value, 'checkout');
  t.equal(env.SHOAL_DNS_UPSTREAM.value, '10.96.0.10');
  t.equal(env.SHOAL_TOKEN_FILE.value, '/var/run/secrets/shoal/token');
  t.equal(env.SHOAL_STATE_FILE.value, '/var/lib/shoal/snapshot.json');
  t.same(
    env.SHOAL_NODE.valueFrom,
    { fieldRef: { fieldPath: 'spec.nodeName' } },
    'the node by the downward API, for topology-aware routing',
  );
  t.equal(
    env.NODE_OPTIONS.value,
    '--max-semi-space-size=1 --v8-pool-size=1',
    "the app's NODE_OPTIONS (its --require) never reaches the sidecar",
  );
  t.equal(env.REGION.value, 'eu-west-1', 'plugin variable in the sidecar');
  t.same(sidecar.envFrom, [{ configMapRef: { name: 'checkout-settings' } }], 'envFrom shared too');

  const app = out.spec.containers[0];
  t.same(app.env, pod.spec.containers[0].env, "the app's env is untouched (no plugin variables)");
  t.same(out.spec.containers[1], pod.spec.containers[1], 'the second container is untouched');
  t.same(
    app.ports,
    [
      { containerPort: 8080, protocol: 'TCP' },
      { containerPort: 9090, protocol: 'TCP' },
      { name: 'gossip', containerPort: 7946, protocol: 'UDP' },
    ],
    "the app's TCP port lost its name; UDP untouched",
  );
  t.equal(app.readinessProbe.httpGet.port, 8080, 'probe by name now by number');
  t.same(
    sidecar.ports,
    [
      { name: 'http', containerPort: 65380, protocol: 'TCP' },
      { containerPort: 65390, protocol: 'TCP' },
      { name: 'shoal-admin', containerPort: 65533, protocol: 'TCP' },
    ],
    'the sidecar declares the listen ports; the name moved to it',
  );
  t.same(JSON.parse(out.metadata.annotations['shoal.dev/port-map']), { 8080: 65380, 9090: 65390 });
  t.equal(out.metadata.annotations['shoal.dev/injected'], 'native');
  t.equal(out.metadata.annotations['kubectl.kubernetes.io/restartedAt'], '2026-11-20T10:00:00Z', 'existing annotations kept');
  t.equal(out.metadata.annotations['kubectl.kubernetes.io/default-container'], 'app');
  t.equal(out.metadata.annotations['prometheus.io/port'], '65533');

  t.same(sidecar.resources, { requests: { cpu: '100m', memory: '64Mi' }, limits: { memory: '128Mi' } });
  t.same(sidecar.securityContext.capabilities, { drop: ['ALL'] });
  t.equal(sidecar.securityContext.runAsNonRoot, true);
  t.equal(sidecar.securityContext.allowPrivilegeEscalation, false);
  t.equal(sidecar.securityContext.readOnlyRootFilesystem, true);
  t.same(sidecar.volumeMounts, [
    { name: 'shoal-token', mountPath: '/var/run/secrets/shoal', readOnly: true },
    { name: 'shoal-state', mountPath: '/var/lib/shoal' },
  ]);
  const volumes = Object.fromEntries(out.spec.volumes.map((v: any) => [v.name, v]));
  t.ok(volumes['kube-api-access-x7k2p'], 'existing volume kept');
  t.same(volumes['shoal-token'].projected.sources, [
    { serviceAccountToken: { audience: 'shoal', expirationSeconds: 3600, path: 'token' } },
  ]);
  t.ok(volumes['shoal-state'].emptyDir, 'state dir is an emptyDir');

  t.equal(out.spec.dnsPolicy, 'None');
  t.same(out.spec.dnsConfig, {
    nameservers: ['127.0.0.1', '10.96.0.10'],
    searches: ['shop.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
    options: [{ name: 'ndots', value: '5' }],
  });
  t.same(out.spec.securityContext.sysctls, [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '53' }]);
  t.equal(out.spec.enableServiceLinks, false);
  t.equal(out.spec.restartPolicy, 'Always');

  // Idempotent: the injected pod submitted again gets no patch.
  const again = await admitPod(t, w, out);
  t.equal(again.patch, undefined, 'no patch the second time');
  t.equal(again.warnings, undefined, 'and no warnings');
  t.same(w.events, [], 'no events for a clean injection');
});

t.test("a Job's pod: native sidecar so the Job can complete; annotations created", async (t) => {
  const w = await startTestWebhook();
  t.teardown(() => w.close());
  const pod = jobPod();
  const response = await admitPod(t, w, pod, { namespace: 'reports' });
  const ops = decodePatch(response);
  t.ok(
    ops.some((o: any) => o.op === 'add' && o.path === '/metadata/annotations'),
    'metadata.annotations created when absent',
  );
  const out = patched(pod, response);
  validates(t, out);
  t.equal(out.spec.restartPolicy, 'Never', "the Job's restartPolicy is kept");
  t.equal(out.spec.initContainers[0].restartPolicy, 'Always', 'a native sidecar does not keep the Job alive');
  t.same(out.spec.initContainers[0].ports, [{ name: 'shoal-admin', containerPort: 65533, protocol: 'TCP' }]);
  t.equal(out.spec.initContainers[0].env[0].name, 'DISCOVER_URL', 'no app env to copy');
  t.equal(
    out.spec.initContainers[0].env.find((e: any) => e.name === 'DISCOVER_URL').value,
    'http://shoal-discover.shoal.svc:6100/v1/resources/reports/nightly-report/mesh',
    'app from label app',
  );
  t.equal(out.metadata.annotations['shoal.dev/port-map'], '{}');
  t.same(
    out.spec.securityContext,
    { sysctls: [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '53' }] },
    'pod securityContext created',
  );
  t.same(out.spec.dnsConfig.searches, ['reports.svc.cluster.local', 'svc.cluster.local', 'cluster.local']);
  t.same(out.spec.containers, pod.spec.containers, 'the Job container is untouched');
  const again = await admitPod(t, w, out, { namespace: 'reports' });
  t.equal(again.patch, undefined, 'idempotent');
});

t.test('existing init containers stay after the sidecar; shoal.dev/app and plugin-id annotations', async (t) => {
  const w = await startTestWebhook();
  t.teardown(() => w.close());
  const pod = withAnnotations(jobPod(), { 'shoal.dev/app': 'reporter', 'shoal.dev/plugin-id': 'mesh-v2' });
  pod.metadata.namespace = 'reports';
  pod.spec.initContainers = [{ name: 'migrate', image: 'registry.example/migrate:1', resources: {} }];
  const out = patched(pod, await admitPod(t, w, pod, { namespace: 'ignored-when-metadata-has-one' }));
  validates(t, out);
  t.same(
    out.spec.initContainers.map((c: any) => c.name),
    ['shoal-proxy', 'migrate'],
    'sidecar first',
  );
  const env = Object.fromEntries(out.spec.initContainers[0].env.map((e: any) => [e.name, e.value]));
  t.equal(env.DISCOVER_URL, 'http://shoal-discover.shoal.svc:6100/v1/resources/reports/reporter/mesh-v2');
  t.equal(env.NAMESPACE, 'reports', 'metadata.namespace wins over the request');
  t.equal(env.SERVICE_ALIAS, 'reporter');
});

t.test("opted-out, host-network and shoal's own pods are left alone", async (t) => {
  const w = await startTestWebhook();
  t.teardown(() => w.close());
  const optedOut = await admitPod(t, w, withAnnotations(deploymentPod(), { 'shoal.dev/inject': 'false' }));
  t.equal(optedOut.patch, undefined, 'opted out: no patch');
  t.equal(optedOut.warnings, undefined, 'opted out: no warning');

  const host = deploymentPod();
  host.spec.hostNetwork = true;
  host.spec.dnsPolicy = 'ClusterFirstWithHostNet';
  const hostRes = await admitPod(t, w, host);
  t.equal(hostRes.patch, undefined, 'host network: no patch');
  t.match(hostRes.warnings, [/host-network/], 'host network: a warning says why');

  const own = deploymentPod();
  own.metadata.labels['app.kubernetes.io/part-of'] = 'shoal';
  t.equal((await admitPod(t, w, own)).patch, undefined, "shoal's own pod: no patch");

  const explicit = await admitPod(t, w, withAnnotations(jobPod(), { 'shoal.dev/inject': 'true' }));
  t.ok(explicit.patch, 'inject: "true" injects');
  t.same(w.events, []);
});

t.test('bad annotations: defaults or no sidecar, with warnings and events, never a rejection', async (t) => {
  const w = await startTestWebhook();
  t.teardown(() => w.close());
  const pod = withAnnotations(deploymentPod(), { 'shoal.dev/proxy-cpu': 'lots', 'shoal.dev/proxy-memory': '-5Mi' });
  pod.metadata.name = 'checkout-manual';
  const response = await admitPod(t, w, pod);
  const out = patched(pod, response);
  validates(t, out);
  t.same(out.spec.initContainers[0].resources, { requests: { cpu: '100m', memory: '64Mi' }, limits: { memory: '128Mi' } }, 'defaults used');
  t.equal(response.warnings.length, 2);
  t.match(response.warnings[0], /shoal\.dev\/proxy-cpu="lots"/);
  t.match(response.warnings[1], /shoal\.dev\/proxy-memory="-5Mi"/);
  t.same(
    w.events.map((e) => [e.namespace, e.podName, e.reason]),
    [
      ['shop', 'checkout-manual', 'ShoalBadAnnotation'],
      ['shop', 'checkout-manual', 'ShoalBadAnnotation'],
    ],
  );

  w.events.length = 0;
  const unsure = await admitPod(t, w, withAnnotations(deploymentPod(), { 'shoal.dev/inject': 'maybe' }));
  t.equal(unsure.patch, undefined, 'an unreadable inject annotation: admitted without the sidecar');
  t.match(unsure.warnings, [/shoal\.dev\/inject="maybe".*without the shoal sidecar/]);
  t.equal(w.events.length, 1);
  t.equal(w.events[0].podName, 'checkout-7d9f8b6c4-', 'a generated pod is named by its generateName');
  t.equal(w.events[0].reason, 'ShoalInjectionSkipped');

  w.events.length = 0;
  const badApp = deploymentPod();
  badApp.metadata.labels['app.kubernetes.io/name'] = 'Checkout_Service';
  const badAppRes = await admitPod(t, w, badApp);
  t.equal(badAppRes.patch, undefined);
  t.match(badAppRes.warnings, [/app name "Checkout_Service"/]);

  const noApp = jobPod();
  delete noApp.metadata.labels.app;
  const noAppRes = await admitPod(t, w, noApp);
  t.equal(noAppRes.patch, undefined, 'no app name: no sidecar');
  t.match(noAppRes.warnings, [/no app name/]);

  w.events.length = 0;
  const dry = await admitPod(t, w, withAnnotations(deploymentPod(), { 'shoal.dev/proxy-cpu': 'lots' }), { dryRun: true });
  t.equal(dry.warnings.length, 1, 'dry run: warned');
  t.same(w.events, [], 'dry run: no event recorded');

  const good = withAnnotations(deploymentPod(), { 'shoal.dev/proxy-cpu': '250m', 'shoal.dev/proxy-memory': '96Mi' });
  const goodOut = patched(good, await admitPod(t, w, good));
  t.same(
    goodOut.spec.initContainers[0].resources,
    { requests: { cpu: '250m', memory: '96Mi' }, limits: { memory: '96Mi' } },
    "annotations override the chart's resources",
  );
});

t.test('legacy mode (before 1.29): first regular container with a postStart wait', async (t) => {
  const w = await startTestWebhook({}, { legacySidecar: true, proxyCpuLimit: '500m' });
  t.teardown(() => w.close());
  const pod = deploymentPod();
  const out = patched(pod, await admitPod(t, w, pod));
  validates(t, out);
  t.equal(out.spec.initContainers, undefined, 'no init container');
  t.same(
    out.spec.containers.map((c: any) => c.name),
    ['shoal-proxy', 'app', 'log-shipper'],
  );
  const sidecar = out.spec.containers[0];
  t.equal(sidecar.restartPolicy, undefined);
  t.same(sidecar.resources.limits, { cpu: '500m', memory: '128Mi' }, 'a CPU limit when the chart sets one');
  t.same(sidecar.lifecycle.postStart.exec.command.slice(0, 2), ['node', '-e']);
  t.match(sidecar.lifecycle.postStart.exec.command[2], /127\.0\.0\.1:65533\/ready/);
  t.equal(out.spec.containers[1].readinessProbe.httpGet.port, 8080, 'the app (moved to index 1) was patched before the shift');
  t.same(out.spec.containers[1].ports[0], { containerPort: 8080, protocol: 'TCP' });
  t.equal(out.metadata.annotations['shoal.dev/injected'], 'legacy');
  t.equal(out.metadata.annotations['kubectl.kubernetes.io/default-container'], 'app', 'kubectl logs/exec still land in the app');
});

t.test(
  'tracing: the collector and sample ratio the chart sets reach the sidecar as SHOAL_OTLP_ENDPOINT and SHOAL_TRACE_SAMPLE_RATIO',
  async (t) => {
    const w = await startTestWebhook({}, { otlpEndpoint: 'http://otel-collector.observability.svc:4318', traceSampleRatio: '0.01' });
    t.teardown(() => w.close());
    const pod = deploymentPod();
    pod.spec.containers[0].env = [...(pod.spec.containers[0].env ?? []), { name: 'SHOAL_OTLP_ENDPOINT', value: 'http://app-own:4318' }];
    const out = patched(pod, await admitPod(t, w, pod));
    validates(t, out);
    const env = out.spec.initContainers[0].env.filter((e: any) => e.name.startsWith('SHOAL_OTLP') || e.name.startsWith('SHOAL_TRACE'));
    t.same(
      env,
      [
        { name: 'SHOAL_OTLP_ENDPOINT', value: 'http://otel-collector.observability.svc:4318' },
        { name: 'SHOAL_TRACE_SAMPLE_RATIO', value: '0.01' },
      ],
      "the chart's collector and ratio, once each: the app's own SHOAL_* variables never reach the sidecar",
    );
  },
);

t.test('before 1.32: target-port names stay on the app container, pointing at the listen port', async (t) => {
  const w = await startTestWebhook({}, { appKeepsPortNames: true });
  t.teardown(() => w.close());
  const pod = deploymentPod();
  const out = patched(pod, await admitPod(t, w, pod));
  validates(t, out);
  t.same(out.spec.containers[0].ports[0], { name: 'http', containerPort: 65380, protocol: 'TCP' });
  t.equal(out.spec.containers[0].readinessProbe.httpGet.port, 8080, 'the probe still reaches the app itself');
  t.same(
    out.spec.initContainers[0].ports.map((p: any) => p.containerPort),
    [65390, 65533],
    'the named port is not declared twice',
  );
});

t.test('port names the sidecar cannot take stay on the app; Windows pods are skipped', async (t) => {
  const w = await startTestWebhook();
  t.teardown(() => w.close());
  const pod = deploymentPod();
  pod.spec.containers[0].ports = [
    { name: 'http', containerPort: 8080, protocol: 'TCP' },
    { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
  ];
  pod.spec.containers[1].ports = [
    { name: 'metrics', containerPort: 2020, protocol: 'TCP' },
    { name: 'shoal-admin', containerPort: 2021 },
  ];
  const response = await admitPod(t, w, pod);
  const out = patched(pod, response);
  validates(t, out);
  t.same(
    out.spec.initContainers[0].ports,
    [
      { name: 'http', containerPort: 65380, protocol: 'TCP' },
      { name: 'metrics', containerPort: 65390, protocol: 'TCP' },
      { containerPort: 65320, protocol: 'TCP' },
      { containerPort: 65321, protocol: 'TCP' },
      { name: 'shoal-admin', containerPort: 65533, protocol: 'TCP' },
    ],
    'each name once in the sidecar',
  );
  t.same(
    out.spec.containers[1].ports,
    [
      { name: 'metrics', containerPort: 2020, protocol: 'TCP' },
      { name: 'shoal-admin', containerPort: 2021 },
    ],
    'clashing names stay on the app',
  );
  t.equal(response.warnings.length, 2);
  t.match(response.warnings[0], /port name metrics of container log-shipper stays on the app/);

  const windows = jobPod();
  windows.spec.os = { name: 'windows' };
  const res = await admitPod(t, w, windows);
  t.equal(res.patch, undefined, 'no sysctls or sidecar for Windows');
  t.match(res.warnings, [/Windows/]);
});

t.test('limits never below requests; plugin variables with names Kubernetes refuses are left out', async (t) => {
  const w = await startTestWebhook(
    { pluginEnv: () => ({ GOOD_NAME: '1', 'bad name': '2', '1ST': '3' }) },
    { proxyCpuLimit: '500m', proxyMemoryLimit: '128Mi' },
  );
  t.teardown(() => w.close());
  const pod = withAnnotations(deploymentPod(), { 'shoal.dev/proxy-cpu': '1.5', 'shoal.dev/proxy-memory': '0.5Gi' });
  const response = await admitPod(t, w, pod);
  const out = patched(pod, response);
  validates(t, out);
  const sidecar = out.spec.initContainers[0];
  t.same(
    sidecar.resources,
    { requests: { cpu: '1.5', memory: '0.5Gi' }, limits: { cpu: '1.5', memory: '0.5Gi' } },
    'the CPU limit rises to the annotated request',
  );
  const names = sidecar.env.map((e: any) => e.name);
  t.ok(names.includes('GOOD_NAME'));
  t.notOk(names.includes('bad name'));
  t.notOk(names.includes('1ST'));
  t.equal(response.warnings.filter((x: string) => /plugin variable/.test(x)).length, 2);

  const small = withAnnotations(deploymentPod(), { 'shoal.dev/proxy-cpu': '200m' });
  t.same(
    patched(small, await admitPod(t, w, small)).spec.initContainers[0].resources.limits,
    { cpu: '500m', memory: '128Mi' },
    'a higher chart limit is kept',
  );
});
