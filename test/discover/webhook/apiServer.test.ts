// The injection webhook called by a real kube-apiserver (test/lib/kube.ts): the chart's own
// MutatingWebhookConfiguration (rendered by Helm against the control plane) is registered with its
// clientConfig pointed at discover's webhook on loopback, and Pods, a Job and Services are created
// through kubectl, so the API server sends the AdmissionReviews, applies the patches and validates the
// result (Pod Security `restricted` included). Then discover stops and the chart's failurePolicy decides.
//
// discover runs in this process (startDiscover, with the chart's own discover arguments and the control
// plane's admin kubeconfig), so stopping it closes the webhook's port at once.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { kubeForFile, type TestKube } from '../../lib/kube.ts';
import { makeCerts } from './fixtures.ts';
import { discoverFlags, discoverOptionsFromFlags, startDiscover, type Discover } from '../../../discover/main.ts';
import { webhookFlags } from '../../../discover/webhook/webhookFlags.ts';
import { parseFlags } from '../../../shared/flags.ts';
import { createLogger } from '../../../shared/log.ts';

const chartDir = join(import.meta.dirname, '..', '..', '..', 'charts', 'shoal');
const RELEASE_NS = 'shoal';
const KUBE_DNS = '10.96.0.10';
/** Labelled for injection, and enforcing Pod Security `restricted` (docs/injection.md says the sidecar meets it). */
const SHOP = 'shop';
/** Not labelled: the webhook's namespaceSelector leaves it out. */
const PLAIN = 'plain';

const kube = kubeForFile(t, import.meta.filename);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function until<T>(what: string, check: () => Promise<T>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

function parseManifests(text: string): any[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS())
    .filter((o) => o !== null && o !== undefined);
}

/** The chart rendered by Helm against the cluster (kube-system/kube-dns looked up, the server's version as capabilities). */
async function render(k: TestKube, set: string[] = []): Promise<any[]> {
  return parseManifests(
    await k.helmOk(['template', 'shoal', chartDir, '--namespace', RELEASE_NS, '--dry-run=server', ...set.flatMap((s) => ['--set', s])]),
  );
}

/** The chart's MutatingWebhookConfiguration with only its clientConfig moved from the Service to URL (with CA). */
function webhookConfiguration(objects: any[], url: string, ca: Buffer): any {
  const config = structuredClone(objects.find((o) => o.kind === 'MutatingWebhookConfiguration'));
  for (const w of config.webhooks) w.clientConfig = { url, caBundle: ca.toString('base64') };
  return config;
}

/** `kubectl create -f -` of OBJ: the object the API server stored (or why it refused it), and kubectl's warnings. */
async function create(k: TestKube, obj: unknown, extra: string[] = []): Promise<{ code: number; obj: any; stderr: string }> {
  const r = await k.kubectl(['create', '-f', '-', '-o', 'json', ...extra], { input: JSON.stringify(obj) });
  return { code: r.code, obj: r.code === 0 ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
}

async function createOk(k: TestKube, obj: unknown): Promise<any> {
  const r = await create(k, obj);
  if (r.code !== 0) throw new Error(`kubectl create refused ${JSON.stringify(obj)}: ${r.stderr}`);
  return r.obj;
}

/** What Pod Security `restricted` asks of the pod and of every container. */
const RESTRICTED_POD = { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } };
const RESTRICTED_CONTAINER = { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } };

function pod(
  name: string,
  namespace: string,
  opts: { labels?: Record<string, string>; annotations?: Record<string, string>; ports?: any[]; container?: any; nodeName?: string } = {},
): any {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      labels: opts.labels ?? { 'app.kubernetes.io/name': name.replace(/-\d+$/, '') },
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    spec: {
      ...(opts.nodeName ? { nodeName: opts.nodeName } : {}),
      securityContext: RESTRICTED_POD,
      containers: [
        {
          name: 'app',
          image: 'registry.example/app:1',
          ports: opts.ports ?? [{ containerPort: 8080 }],
          securityContext: RESTRICTED_CONTAINER,
          ...opts.container,
        },
      ],
    },
  };
}

/** No trace of shoal on a pod the API server stored. */
function untouched(t: Test, p: any, what: string): void {
  t.equal(p.spec.initContainers, undefined, `${what}: no init container`);
  t.same(
    p.spec.containers.map((c: any) => c.name),
    ['app'],
    `${what}: only the app container`,
  );
  t.equal(p.spec.dnsPolicy, 'ClusterFirst', `${what}: the API server's default dnsPolicy`);
  t.equal(p.spec.enableServiceLinks, true, `${what}: service links as defaulted`);
  t.notOk(
    Object.keys(p.metadata.annotations ?? {}).some((a) => a.startsWith('shoal.dev/') && a !== 'shoal.dev/inject'),
    `${what}: no shoal annotation written`,
  );
  t.notOk(
    (p.spec.volumes ?? []).some((v: any) => v.name.startsWith('shoal-')),
    `${what}: no shoal volume`,
  );
  t.same(p.spec.containers[0].ports, [{ containerPort: 8080, protocol: 'TCP' }], `${what}: ports as given`);
}

if (kube) {
  let k: TestKube;
  let discover: Discover | undefined;
  let objects: any[];
  let failObjects: any[];
  let discoverBase = '';
  const certs = makeCerts();
  t.teardown(async () => {
    await discover?.close();
    certs.cleanup();
  });

  t.test("the chart's webhook configuration is registered, pointing at discover on loopback", async (t) => {
    k = await kube.up();
    // The cluster DNS Service every cluster has: the chart looks it up for the pods' second nameserver.
    await k.kubectlOk(['-n', 'kube-system', 'create', 'service', 'clusterip', 'kube-dns', `--clusterip=${KUBE_DNS}`, '--tcp=53:53']);
    await k.kubectlOk(['create', '-f', '-'], {
      input: [
        {
          apiVersion: 'v1',
          kind: 'Namespace',
          metadata: { name: SHOP, labels: { 'shoal.dev/inject': 'enabled', 'pod-security.kubernetes.io/enforce': 'restricted' } },
        },
        { apiVersion: 'v1', kind: 'Namespace', metadata: { name: PLAIN } },
        // A Node for the pods the EndpointSlice controller should see (there is no kubelet: status is set by the test).
        { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-1' } },
      ]
        .map((o) => `---\n${JSON.stringify(o)}\n`)
        .join(''),
    });
    objects = await render(k);
    // The same chart with webhook.failurePolicy=Fail, for when discover is down (rendered now: once the
    // configuration exists unowned by a release, a server-side render refuses to take it over).
    failObjects = await render(k, ['webhook.failurePolicy=Fail']);
    const deployment = objects.find((o) => o.kind === 'Deployment');
    const args: string[] = deployment.spec.template.spec.containers[0].args;
    t.equal(args[0], 'discover');
    // The chart's discover arguments, with what differs outside a pod: the kubeconfig, loopback, free
    // ports, the test's serving certificate (IP SAN 127.0.0.1) and no fan-out threads.
    const values = parseFlags([...discoverFlags, ...webhookFlags], args.slice(1), {}).values;
    t.equal(values.webhook, true, 'the chart turns the webhook on');
    Object.assign(values, {
      kubeconfig: k.kubeconfig,
      host: '127.0.0.1',
      port: 0,
      'webhook-port': 0,
      'webhook-cert': certs.certFile,
      'webhook-key': certs.keyFile,
      'fanout-threads': '0',
    });
    t.equal(values['dns-upstream'], KUBE_DNS, 'the chart found kube-dns in the cluster');
    const log = createLogger('discover', process.env.SHOAL_TEST_LOG ?? 'silent');
    discover = await startDiscover(discoverOptionsFromFlags(values, log));
    await discover.ready;
    t.ok(discover.webhookPort, 'the webhook listens');

    const chartConfig = objects.find((o) => o.kind === 'MutatingWebhookConfiguration');
    const svc = chartConfig.webhooks[0].clientConfig.service;
    discoverBase = `http://${svc.name}.${svc.namespace}.svc:6100`;
    const config = webhookConfiguration(objects, `https://127.0.0.1:${discover.webhookPort}${svc.path}`, certs.ca);
    await k.kubectlOk(['create', '-f', '-'], { input: JSON.stringify(config) });
    const stored = await k.getJson(['mutatingwebhookconfiguration', config.metadata.name]);
    t.same(
      stored.webhooks.map((w: any) => w.name),
      ['pods.inject.shoal.dev', 'services.inject.shoal.dev'],
    );
    for (const [i, w] of stored.webhooks.entries()) {
      const chart = chartConfig.webhooks[i];
      for (const key of [
        'rules',
        'namespaceSelector',
        'objectSelector',
        'failurePolicy',
        'sideEffects',
        'timeoutSeconds',
        'matchPolicy',
        'reinvocationPolicy',
        'admissionReviewVersions',
      ]) {
        t.same(w[key], chart[key], `${w.name}: ${key} as the chart renders it`);
      }
    }
    // Pods need the namespaces' default ServiceAccount (the ServiceAccount admission plugin), made by the controller.
    await until('default ServiceAccounts', async () => {
      const r = await k.kubectl([
        'get',
        'serviceaccounts',
        '--all-namespaces',
        '--field-selector',
        'metadata.name=default',
        '-o',
        'jsonpath={.items[*].metadata.namespace}',
      ]);
      const have = r.stdout.split(' ');
      return have.includes(SHOP) && have.includes(PLAIN);
    });
  });

  t.test('a Pod in a labelled namespace comes back from the API server with the native sidecar', async (t) => {
    const r = await create(
      k,
      pod('web-0', SHOP, { ports: [{ containerPort: 8080 }], container: { readinessProbe: { httpGet: { path: '/health', port: 8080 } } } }),
    );
    t.equal(r.code, 0, `created (Pod Security restricted enforced)${r.code ? `: ${r.stderr}` : ''}`);
    t.equal(r.stderr.trim(), '', 'no warning');
    const p = r.obj;
    t.equal(p.metadata.annotations['shoal.dev/injected'], 'native');
    t.equal(p.metadata.annotations['kubectl.kubernetes.io/default-container'], 'app');

    const [sidecar, ...otherInits] = p.spec.initContainers;
    t.equal(sidecar.name, 'shoal-proxy', 'the first init container is the sidecar');
    t.equal(otherInits.length, 0);
    t.equal(sidecar.restartPolicy, 'Always', 'a native sidecar');
    t.equal(sidecar.image, `${objects.find((o) => o.kind === 'Deployment').spec.template.spec.containers[0].image}`, "the chart's image");
    t.same(sidecar.args, ['proxy']);
    t.match(
      sidecar.startupProbe,
      { httpGet: { path: '/ready', port: 65533, scheme: 'HTTP' }, periodSeconds: 1, failureThreshold: 120 },
      'startup probe on /ready',
    );
    t.match(sidecar.readinessProbe, { httpGet: { path: '/ready', port: 65533 } });
    const env = Object.fromEntries(sidecar.env.map((e: any) => [e.name, e.value]));
    t.equal(env.DISCOVER_URL, `${discoverBase}/v1/resources/${SHOP}/web/mesh`);
    t.equal(env.NAMESPACE, SHOP);
    t.equal(env.SERVICE_ALIAS, 'web');
    t.equal(env.SHOAL_DNS_UPSTREAM, KUBE_DNS);
    t.equal(env.SHOAL_TOKEN_FILE, '/var/run/secrets/shoal/token');
    t.match(sidecar.securityContext, {
      runAsNonRoot: true,
      runAsUser: 65532,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });

    // The projected token volume, beside the one the ServiceAccount admission plugin added.
    const token = p.spec.volumes.find((v: any) => v.name === 'shoal-token');
    t.same(
      token.projected.sources,
      [{ serviceAccountToken: { audience: 'shoal', expirationSeconds: 3600, path: 'token' } }],
      'projected token, audience shoal',
    );
    t.ok(
      p.spec.volumes.some((v: any) => v.name.startsWith('kube-api-access-')),
      "the API server's own token volume is still there",
    );
    t.ok(
      sidecar.volumeMounts.some((m: any) => m.name === 'shoal-token' && m.mountPath === '/var/run/secrets/shoal' && m.readOnly),
      'mounted into the sidecar',
    );
    t.ok(
      p.spec.volumes.some((v: any) => v.name === 'shoal-state' && v.emptyDir),
      'state volume',
    );

    // The port remap: the app keeps 8080, the sidecar listens on 65380 and forwards to it.
    t.same(p.spec.containers[0].ports, [{ containerPort: 8080, protocol: 'TCP' }], 'the app keeps its port');
    t.same(
      sidecar.ports,
      [
        { containerPort: 65380, protocol: 'TCP' },
        { name: 'shoal-admin', containerPort: 65533, protocol: 'TCP' },
      ],
      "the sidecar's listen and admin ports",
    );
    t.same(JSON.parse(p.metadata.annotations['shoal.dev/port-map']), { 8080: 65380 });
    t.equal(p.spec.containers[0].readinessProbe.httpGet.port, 8080, "the app's probe still reaches the app");

    // DNS through the sidecar's responder, kube-dns second.
    t.equal(p.spec.dnsPolicy, 'None');
    t.same(p.spec.dnsConfig, {
      nameservers: ['127.0.0.1', KUBE_DNS],
      searches: [`${SHOP}.svc.cluster.local`, 'svc.cluster.local', 'cluster.local'],
      options: [{ name: 'ndots', value: '5' }],
    });
    t.same(
      p.spec.securityContext.sysctls,
      [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '53' }],
      'the sysctl passes validation and Pod Security restricted',
    );
    t.equal(p.spec.enableServiceLinks, false);
  });

  t.test('opted out, and in an unlabelled namespace: untouched', async (t) => {
    const optedOut = await createOk(k, pod('batch-0', SHOP, { annotations: { 'shoal.dev/inject': 'false' } }));
    untouched(t, optedOut, 'shoal.dev/inject "false"');
    t.same(optedOut.metadata.annotations, { 'shoal.dev/inject': 'false' }, 'annotations as given');
    untouched(t, await createOk(k, pod('web-0', PLAIN)), 'unlabelled namespace');
  });

  t.test('a bad annotation: injected with the default, a warning kubectl prints and an event on the pod', async (t) => {
    const r = await create(k, pod('cpu-0', SHOP, { annotations: { 'shoal.dev/proxy-cpu': 'lots' } }));
    t.equal(r.code, 0, r.stderr);
    t.match(
      r.stderr,
      /Warning: shoal: annotation shoal\.dev\/proxy-cpu="lots" is not a positive quantity/,
      'the AdmissionReview warning reaches kubectl',
    );
    t.equal(r.obj.spec.initContainers[0].resources.requests.cpu, '100m', "the chart's default CPU request");
    const event = await until(
      'the event',
      async () => (await k.getJson(['events', '-n', SHOP, '--field-selector', 'involvedObject.name=cpu-0'])).items[0],
    );
    t.equal(event.reason, 'ShoalBadAnnotation');
    t.equal(event.involvedObject.kind, 'Pod');
    t.match(event.message, /proxy-cpu="lots"/);
  });

  t.test("a Job's Pod, made by the job controller, gets the native sidecar and the Job completes", async (t) => {
    await createOk(k, {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'report', namespace: SHOP },
      spec: {
        backoffLimit: 0,
        template: {
          metadata: { labels: { app: 'report' } },
          spec: {
            restartPolicy: 'Never',
            securityContext: RESTRICTED_POD,
            containers: [
              { name: 'report', image: 'registry.example/report:1', command: ['/bin/report'], securityContext: RESTRICTED_CONTAINER },
            ],
          },
        },
      },
    });
    const p = await until(
      "the job controller's pod",
      async () => (await k.getJson(['pods', '-n', SHOP, '-l', 'batch.kubernetes.io/job-name=report'])).items[0],
    );
    t.equal(p.metadata.ownerReferences[0].kind, 'Job');
    t.equal(p.spec.initContainers?.[0]?.name, 'shoal-proxy', 'injected');
    t.equal(p.spec.initContainers[0].restartPolicy, 'Always', "as a native sidecar, which does not hold the pod's completion");
    t.same(
      p.spec.containers.map((c: any) => c.name),
      ['report'],
      "the job's container is the only regular one",
    );
    t.equal(p.metadata.annotations['shoal.dev/injected'], 'native');
    // No kubelet here: write what it reports when the job's container exits (and it stops the sidecar).
    await k.kubectlOk([
      '-n',
      SHOP,
      'patch',
      'pod',
      p.metadata.name,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          phase: 'Succeeded',
          initContainerStatuses: [
            {
              name: 'shoal-proxy',
              image: p.spec.initContainers[0].image,
              imageID: '',
              ready: false,
              restartCount: 0,
              started: false,
              state: { terminated: { exitCode: 0, reason: 'Completed' } },
            },
          ],
          containerStatuses: [
            {
              name: 'report',
              image: 'registry.example/report:1',
              imageID: '',
              ready: false,
              restartCount: 0,
              started: false,
              state: { terminated: { exitCode: 0, reason: 'Completed' } },
            },
          ],
        },
      }),
    ]);
    await until('the Job Complete', async () =>
      (await k.getJson(['job', '-n', SHOP, 'report'])).status?.conditions?.some((c: any) => c.type === 'Complete' && c.status === 'True'),
    );
    t.pass('the job controller completes the Job of the injected pod');
  });

  t.test('named ports: the sidecar takes the names, and the EndpointSlice controller resolves them to it', async (t) => {
    const p = await createOk(
      k,
      pod('api-0', SHOP, {
        nodeName: 'node-1',
        ports: [
          { name: 'http', containerPort: 8080 },
          { name: 'metrics', containerPort: 9090 },
        ],
        container: { readinessProbe: { httpGet: { path: '/health', port: 'http' } }, livenessProbe: { tcpSocket: { port: 'metrics' } } },
      }),
    );
    const [sidecar] = p.spec.initContainers;
    t.same(
      sidecar.ports,
      [
        { name: 'http', containerPort: 65380, protocol: 'TCP' },
        { name: 'metrics', containerPort: 65390, protocol: 'TCP' },
        { name: 'shoal-admin', containerPort: 65533, protocol: 'TCP' },
      ],
      "the sidecar's listen ports carry the names",
    );
    t.same(
      p.spec.containers[0].ports,
      [
        { containerPort: 8080, protocol: 'TCP' },
        { containerPort: 9090, protocol: 'TCP' },
      ],
      "the app's ports lose them",
    );
    t.equal(p.spec.containers[0].readinessProbe.httpGet.port, 8080, 'a probe by name now reaches the app by number');
    t.equal(p.spec.containers[0].livenessProbe.tcpSocket.port, 9090);
    t.same(JSON.parse(p.metadata.annotations['shoal.dev/port-map']), { 8080: 65380, 9090: 65390 });

    // A Service targeting the name is left alone by the Service webhook...
    const svc = await createOk(k, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'api', namespace: SHOP },
      spec: { selector: { 'app.kubernetes.io/name': 'api' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
    });
    t.equal(svc.spec.ports[0].targetPort, 'http', 'a named targetPort is not rewritten');
    t.equal(svc.metadata.labels?.origin_port, undefined);
    // ...and once the pod is Ready (written as its kubelet would), its EndpointSlice points at the sidecar.
    await k.kubectlOk([
      '-n',
      SHOP,
      'patch',
      'pod',
      'api-0',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          phase: 'Running',
          podIP: '10.244.0.5',
          podIPs: [{ ip: '10.244.0.5' }],
          conditions: [
            { type: 'Ready', status: 'True' },
            { type: 'ContainersReady', status: 'True' },
          ],
        },
      }),
    ]);
    const slice = await until('the EndpointSlice of api', async () =>
      (await k.getJson(['endpointslices', '-n', SHOP, '-l', 'kubernetes.io/service-name=api'])).items.find(
        (s: any) => (s.endpoints ?? []).length > 0,
      ),
    );
    t.same(slice.ports, [{ name: 'http', port: 65380, protocol: 'TCP' }], "targetPort http resolves to the native sidecar's listen port");
    t.same(slice.endpoints[0].addresses, ['10.244.0.5']);
  });

  t.test('a Service in a labelled namespace: numeric targetPorts remapped, on create and on update', async (t) => {
    const r = await create(k, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: SHOP },
      spec: {
        selector: { 'app.kubernetes.io/name': 'web' },
        ports: [
          { name: 'http', port: 80, targetPort: 8080 },
          { name: 'metrics', port: 9090 },
          { name: 'dns', port: 53, protocol: 'UDP' },
        ],
      },
    });
    t.equal(r.code, 0, r.stderr);
    t.match(r.stderr, /Warning: shoal: targetPort 8080->65380, 9090->65390/, "kubectl shows the webhook's warning");
    const svc = r.obj;
    t.same(
      svc.spec.ports.map((p: any) => [p.port, p.targetPort]),
      [
        [80, 65380],
        [9090, 65390],
        [53, 53],
      ],
      'TCP targets (given or defaulted to port) remapped, UDP left alone',
    );
    t.equal(svc.metadata.labels.origin_port, '8080_9090');
    t.same(JSON.parse(svc.metadata.annotations['shoal.dev/port-map']), { 8080: 65380, 9090: 65390 });

    // An update that puts the original number back (as a re-apply of the manifest would) is rewritten again.
    const out = await k.kubectlOk([
      '-n',
      SHOP,
      'patch',
      'service',
      'web',
      '--type=json',
      '-o',
      'json',
      '-p',
      JSON.stringify([{ op: 'replace', path: '/spec/ports/0/targetPort', value: 8080 }]),
    ]);
    t.equal(JSON.parse(out).spec.ports[0].targetPort, 65380, 'UPDATE rewritten too');

    const plain = await createOk(k, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'web', namespace: PLAIN },
      spec: { selector: { 'app.kubernetes.io/name': 'web' }, ports: [{ port: 80, targetPort: 8080 }] },
    });
    t.equal(plain.spec.ports[0].targetPort, 8080, 'unlabelled namespace: not rewritten');
    t.equal(plain.metadata.labels, undefined);
  });

  t.test("discover down: the chart's failurePolicy (Ignore) admits pods uninjected; Fail would refuse them", async (t) => {
    const chartPolicy = objects.find((o) => o.kind === 'MutatingWebhookConfiguration').webhooks[0].failurePolicy;
    t.equal(chartPolicy, 'Ignore', "the chart's default");
    await discover!.close();
    discover = undefined;
    const started = Date.now();
    const p = await createOk(k, pod('late-0', SHOP));
    untouched(t, p, 'webhook unreachable, failurePolicy Ignore');
    t.ok(Date.now() - started < 5000, "without waiting for the webhook's timeout (the port is closed)");

    // The same chart with webhook.failurePolicy=Fail.
    const name = failObjects.find((o) => o.kind === 'MutatingWebhookConfiguration').metadata.name;
    const stored = await k.getJson(['mutatingwebhookconfiguration', name]);
    const failConfig = webhookConfiguration(failObjects, stored.webhooks[0].clientConfig.url, certs.ca);
    t.same(
      failConfig.webhooks.map((w: any) => w.failurePolicy),
      ['Fail', 'Fail'],
    );
    failConfig.metadata.resourceVersion = stored.metadata.resourceVersion;
    await k.kubectlOk(['replace', '-f', '-'], { input: JSON.stringify(failConfig) });
    // The API server picks up the changed configuration through its informer: a dry run shows when.
    const refused = await until('the Fail policy in effect', async () => {
      const r = await create(k, pod('late-1', SHOP), ['--dry-run=server']);
      return r.code !== 0 ? r : undefined;
    });
    t.match(refused!.stderr, /failed calling webhook "pods\.inject\.shoal\.dev"/, 'refused: the webhook could not be called');
    const r = await create(k, pod('late-1', SHOP));
    t.not(r.code, 0, 'a real create is refused as well');
    t.match(r.stderr, /connection refused/);
    const svc = await create(k, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'late', namespace: SHOP },
      spec: { selector: { app: 'late' }, ports: [{ port: 80 }] },
    });
    t.not(svc.code, 0, 'a Service too');
  });
}
