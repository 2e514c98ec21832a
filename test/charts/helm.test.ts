// The chart under real Helm (helm.sh/helm/v4, built from kube/helm/go.mod) and a real API server
// (test/lib/kube.ts): helm lint, helm template with several value sets applied with
// `kubectl apply --dry-run=server`, and install, upgrade and uninstall into the control plane.
// discover's rendered arguments are parsed with the CLI's own flag specs, the certificates Helm
// generates are checked with X509Certificate, and the mesh CA it generates loads into discover's CA.
import t, { type Test } from 'tap';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { kubeForFile, type TestKube } from '../lib/kube.ts';
import { discoverFlags } from '../../discover/main.ts';
import { webhookFlags, webhookOptionsFromFlags } from '../../discover/webhook/webhookFlags.ts';
import { parseFlags } from '../../shared/flags.ts';
import { identityOptionsFromFlags, setupIdentity } from '../../discover/identity/identitySetup.ts';
import { injectPod } from '../../discover/webhook/podInjector.ts';
import { createCsr } from '../../proxy/tls/csr.ts';
import { createLogger } from '../../shared/log.ts';

const chartDir = join(import.meta.dirname, '..', '..', 'charts', 'shoal');
const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8'));
const NS = 'shoal';
const KUBE_DNS = '10.96.0.10';
/** Labels every object of the release `shoal` carries. */
const RELEASE = 'app.kubernetes.io/instance=shoal';

const kube = kubeForFile(t, import.meta.filename);

const work = mkdtempSync(join(tmpdir(), 'shoal-helm-test-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
let nValues = 0;
/** A values file (JSON is YAML) for -f. */
function valuesFile(values: unknown): string {
  const file = join(work, `values-${nValues++}.json`);
  writeFileSync(file, JSON.stringify(values));
  return file;
}

function parseManifests(text: string): any[] {
  const objects: any[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`${doc.errors[0].message}\n${text}`);
    const obj = doc.toJS();
    if (obj !== null && obj !== undefined) objects.push(obj);
  }
  return objects;
}

interface RenderOptions {
  values?: unknown;
  /** Render against the cluster (lookups answered by the API server); otherwise as `helm template` without one. */
  server?: boolean;
  kubeVersion?: string;
}

async function template(k: TestKube, opts: RenderOptions = {}): Promise<any[]> {
  const args = ['template', 'shoal', chartDir, '--namespace', NS];
  if (opts.values !== undefined) args.push('-f', valuesFile(opts.values));
  if (opts.server) args.push('--dry-run=server');
  if (opts.kubeVersion) args.push('--kube-version', opts.kubeVersion);
  return parseManifests(await k.helmOk(args));
}

/** The NOTES Helm prints for an install with these values (a server-side dry run). */
async function notes(k: TestKube, values: unknown = {}): Promise<string> {
  const out = await k.helmOk(['install', 'shoal', chartDir, '--namespace', NS, '--dry-run=server', '-f', valuesFile(values)]);
  const at = out.indexOf('NOTES:');
  return at < 0 ? '' : out.slice(at);
}

/** `kubectl apply --dry-run=server`: what the API server says of each object. */
async function serverDryRun(t: Test, k: TestKube, objects: any[], what: string): Promise<void> {
  const input = objects.map((o) => `---\n${JSON.stringify(o)}\n`).join('');
  const r = await k.kubectl(['apply', '--dry-run=server', '-f', '-'], { input });
  t.equal(r.code, 0, `${what}: the API server accepts every object${r.code === 0 ? '' : `: ${r.stderr.trim()}`}`);
  const lines = r.stdout
    .trim()
    .split('\n')
    .filter((l) => /\(server dry run\)$/.test(l));
  t.equal(lines.length, objects.length, `${what}: ${objects.length} objects checked (${objects.map((o) => o.kind).join(', ')})`);
}

const find = (objects: any[], kind: string) => objects.filter((o) => o.kind === kind);
const discoverArgs = (objects: any[]): string[] => find(objects, 'Deployment')[0].spec.template.spec.containers[0].args;
const flagsOf = (objects: any[]) => parseFlags([...discoverFlags, ...webhookFlags], discoverArgs(objects).slice(1), {}).values;
const b64 = (s: string) => Buffer.from(s, 'base64').toString();

/** The sidecar the rendered discover's webhook would inject into a plain app pod, and that pod's volumes. */
function injectedSidecar(objects: any[]): { sidecar: any; volumes: any[] } {
  const injector = webhookOptionsFromFlags(flagsOf(objects)).injector;
  const pod = {
    metadata: { name: 'web-1', labels: { 'app.kubernetes.io/name': 'web' } },
    spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }] }] },
  };
  const r = injectPod(pod, 'default', injector);
  if (r.outcome !== 'injected') throw new Error(`not injected: ${r.reason}`);
  const out = fastJsonPatch.applyPatch(structuredClone(pod), r.patch as any, true, false).newDocument as any;
  return { sidecar: out.spec.initContainers[0], volumes: out.spec.volumes };
}

/** The projected service-account token the sidecar reads (SHOAL_TOKEN_FILE): its audience and where it lands. */
function sidecarToken(objects: any[]): { audience: string; file: string; mountedAt: string; expirationSeconds: number } {
  const { sidecar, volumes } = injectedSidecar(objects);
  const file = sidecar.env.find((e: any) => e.name === 'SHOAL_TOKEN_FILE').value as string;
  const mount = sidecar.volumeMounts.find((m: any) => file.startsWith(`${m.mountPath}/`));
  const source = volumes.find((v: any) => v.name === mount.name).projected.sources[0].serviceAccountToken;
  return { audience: source.audience, file, mountedAt: `${mount.mountPath}/${source.path}`, expirationSeconds: source.expirationSeconds };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls CHECK until it returns a truthy value (returned), or fails after timeoutMs with WHAT. */
async function until<T>(what: string, check: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s`);
    await sleep(200);
  }
}

/** Every listable kind the API server serves (namespaced and cluster-scoped), for a sweep by label. */
async function everyKind(k: TestKube): Promise<string[]> {
  const out = await k.kubectlOk(['api-resources', '--verbs=list', '-o', 'name']);
  // componentstatuses is deprecated and ignores label selectors; events carry no release labels.
  return out
    .trim()
    .split('\n')
    .filter((r) => r !== '' && r !== 'componentstatuses' && !r.startsWith('events'));
}

/** Every object labelled as the release's, of any kind, in any namespace or none: "kind/name" (namespace). */
async function releaseObjects(k: TestKube, kinds: string[]): Promise<string[]> {
  const out = await k.kubectlOk([
    'get',
    kinds.join(','),
    '--all-namespaces',
    '-l',
    RELEASE,
    '-o',
    'jsonpath={range .items[*]}{.kind}/{.metadata.name} ({.metadata.namespace}){"\\n"}{end}',
  ]);
  return out
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .sort();
}

if (kube) {
  t.test('the control plane starts; a kube-dns Service as every cluster has; the release namespace', async (t) => {
    const k = await kube.up();
    // The cluster DNS the chart looks up when injector.dnsUpstream is empty (no DNS server behind it here).
    await k.kubectlOk(['-n', 'kube-system', 'create', 'service', 'clusterip', 'kube-dns', `--clusterip=${KUBE_DNS}`, '--tcp=53:53']);
    await k.kubectlOk(['create', 'namespace', NS]);
    t.match(await k.kubectlOk(['version', '-o', 'json']), /"gitVersion": "v1\.37\.2"/, 'the pinned Kubernetes release answers');
  });

  t.test('helm lint passes with no warning', async (t) => {
    const k = await kube.up();
    for (const [what, values] of [
      ['default values', {}],
      ['identity on', { identity: { enabled: true, ca: { generate: true } } }],
      ['cert-manager', { webhook: { certificate: { source: 'certManager' } } }],
    ] as const) {
      const r = await k.helm(['lint', '--strict', chartDir, '-f', valuesFile(values)]);
      t.equal(r.code, 0, `${what}: lint --strict passes${r.code ? `: ${r.stdout}${r.stderr}` : ''}`);
      t.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      t.notMatch(r.stdout, /\[(WARNING|ERROR)\]/, `${what}: no warning or error`);
      // The one [INFO] left: Chart.yaml has no icon (the project has none to point at).
      t.same(
        r.stdout
          .split('\n')
          .filter((l) => l.includes('[INFO]'))
          .map((l) => l.trim()),
        ['[INFO] Chart.yaml: icon is recommended'],
      );
    }
  });

  t.test('default values: rendered against the cluster, accepted by the API server, saying what they should', async (t) => {
    const k = await kube.up();
    const objects = await template(k, { server: true });
    t.same(objects.map((o) => o.kind).sort(), [
      'ClusterRole',
      'ClusterRoleBinding',
      'Deployment',
      'MutatingWebhookConfiguration',
      'PodDisruptionBudget',
      'Secret',
      'Service',
      'ServiceAccount',
    ]);
    await serverDryRun(t, k, objects, 'default values');
    for (const o of objects) {
      t.equal(o.metadata.labels['app.kubernetes.io/part-of'], 'shoal', `${o.kind} is labelled part-of=shoal`);
      t.equal(o.metadata.labels['app.kubernetes.io/instance'], 'shoal', `${o.kind} carries the release's label`);
    }

    const deploy = find(objects, 'Deployment')[0];
    t.equal(deploy.metadata.name, 'shoal-discover', "the name the sidecars' discover URL uses");
    t.equal(deploy.spec.replicas, 2);
    const pod = deploy.spec.template.spec;
    t.equal(pod.securityContext.runAsNonRoot, true);
    const c = pod.containers[0];
    t.equal(c.image, `ghcr.io/shoal-mesh/shoal:${chart.appVersion}`);
    t.equal(c.securityContext.readOnlyRootFilesystem, true);
    t.equal(c.readinessProbe.httpGet.path, '/readyz');
    t.equal(c.livenessProbe.httpGet.path, '/healthz');
    t.same(
      c.ports.map((p: any) => p.containerPort),
      [6100, 6443],
    );
    t.same(
      pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchLabels,
      deploy.spec.selector.matchLabels,
      'anti-affinity against its own replicas',
    );
    t.equal(deploy.spec.template.metadata.annotations['prometheus.io/scrape'], 'true');
    t.equal(deploy.spec.template.metadata.annotations['prometheus.io/port'], '6100');

    // The arguments must be flags the CLI knows, with values it accepts.
    const args = discoverArgs(objects);
    t.equal(args[0], 'discover');
    const { values, positional } = parseFlags([...discoverFlags, ...webhookFlags], args.slice(1), {});
    t.same(positional, [], 'every argument is a flag');
    t.equal(values.kubernetes, true);
    t.equal(values.webhook, true);
    t.equal(values['dns-upstream'], KUBE_DNS, 'the cluster DNS, looked up in the API server');
    t.equal(values['discover-url'], 'http://shoal-discover.shoal.svc:6100');
    t.equal(values['legacy-sidecar'], false, 'native sidecars on 1.37');
    t.equal(values['app-keeps-port-names'], false, 'names move to the sidecar on 1.37');
    t.equal(values['webhook-cert'], '/etc/shoal/webhook/tls.crt');
    t.ok(
      c.volumeMounts.some((m: any) => m.mountPath === '/etc/shoal/webhook'),
      'the certificate is mounted where --webhook-cert points',
    );

    const svc = find(objects, 'Service')[0];
    t.same(
      svc.spec.ports.map((p: any) => [p.port, p.targetPort]),
      [
        [6100, 'http'],
        [6443, 'webhook'],
      ],
    );
    t.same(find(objects, 'PodDisruptionBudget')[0].spec.minAvailable, 1);

    // RBAC: least privilege, as the template's comment says.
    const rules = find(objects, 'ClusterRole')[0].rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>;
    const allowed = (group: string, resource: string, verb: string) =>
      rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
    for (const [g, r, v] of [
      ['', 'services', 'watch'],
      ['discovery.k8s.io', 'endpointslices', 'list'],
      ['', 'configmaps', 'watch'],
      ['', 'configmaps', 'update'],
      ['', 'events', 'create'],
      ['authentication.k8s.io', 'tokenreviews', 'create'],
    ]) {
      t.ok(allowed(g, r, v), `RBAC allows ${v} ${g || 'core'}/${r}`);
    }
    for (const [g, r, v] of [
      ['', 'secrets', 'get'],
      ['', 'pods', 'list'],
      ['', 'configmaps', 'delete'],
      ['', 'services', 'update'],
    ]) {
      t.notOk(allowed(g, r, v), `RBAC does not allow ${v} ${g || 'core'}/${r}`);
    }
    t.notOk(
      rules.some((r) => r.verbs.includes('*') || r.resources.includes('*')),
      'no wildcards',
    );
    const binding = find(objects, 'ClusterRoleBinding')[0];
    t.same(binding.subjects, [{ kind: 'ServiceAccount', name: 'shoal-discover', namespace: NS }]);
    t.equal(pod.serviceAccountName, 'shoal-discover');

    // The webhook's certificate, made by Helm's genCA and genSignedCert.
    const secret = find(objects, 'Secret')[0];
    t.equal(secret.type, 'kubernetes.io/tls');
    const ca = new X509Certificate(b64(secret.data['ca.crt']));
    const serving = new X509Certificate(b64(secret.data['tls.crt']));
    t.ok(ca.ca, 'ca.crt is a CA');
    t.ok(serving.checkIssued(ca) && serving.verify(ca.publicKey), 'the serving certificate chains to ca.crt');
    t.match(serving.subjectAltName, /DNS:shoal-discover\.shoal\.svc(,|$)/, "for the Service's name");
    t.match(serving.subjectAltName, /DNS:shoal-discover\.shoal\.svc\.cluster\.local/);
    t.ok(serving.checkPrivateKey(createPrivateKey(b64(secret.data['tls.key']))), 'tls.key is its key');
    const days = (Date.parse(serving.validTo) - Date.now()) / 86_400_000;
    t.ok(days > 3640 && days <= 3651, `valid for webhook.certificate.validityDays (${Math.round(days)} days)`);

    const mwc = find(objects, 'MutatingWebhookConfiguration')[0];
    t.same(
      mwc.webhooks.map((w: any) => w.name),
      ['pods.inject.shoal.dev', 'services.inject.shoal.dev'],
    );
    for (const w of mwc.webhooks) {
      t.equal(w.clientConfig.caBundle, secret.data['ca.crt'], `${w.name}: caBundle is the generated CA`);
      t.same(w.clientConfig.service, { name: 'shoal-discover', namespace: NS, path: '/inject', port: 6443 });
      t.equal(w.failurePolicy, 'Ignore');
      t.equal(w.sideEffects, 'NoneOnDryRun');
      t.same(w.admissionReviewVersions, ['v1']);
      t.same(w.namespaceSelector, { matchLabels: { 'shoal.dev/inject': 'enabled' } });
      t.same(
        w.objectSelector.matchExpressions,
        [{ key: 'app.kubernetes.io/part-of', operator: 'NotIn', values: ['shoal'] }],
        "shoal's own objects excluded",
      );
    }
    t.same(mwc.webhooks[0].rules[0].operations, ['CREATE']);
    t.same(mwc.webhooks[0].rules[0].resources, ['pods']);
    t.same(mwc.webhooks[1].rules[0].operations, ['CREATE', 'UPDATE']);
    t.same(mwc.webhooks[1].rules[0].resources, ['services']);

    const text = await notes(k);
    t.match(text, /kubectl label namespace <ns> shoal\.dev\/inject=enabled/);
    t.match(text, /Sidecar mode: native/);
    t.notMatch(text, /Workload identity/);
  });

  t.test('webhook off: renders without a cluster; no webhook, certificate or webhook port', async (t) => {
    const k = await kube.up();
    const objects = await template(k, { values: { webhook: { enabled: false } } });
    await serverDryRun(t, k, objects, 'webhook off');
    t.same(find(objects, 'MutatingWebhookConfiguration'), [], 'no webhook');
    t.same(find(objects, 'Secret'), []);
    t.notOk(discoverArgs(objects).includes('--webhook'));
    t.notOk(
      discoverArgs(objects).some((a) => a.startsWith('--dns-upstream')),
      'no cluster DNS needed',
    );
    t.same(
      find(objects, 'Service')[0].spec.ports.map((p: any) => p.port),
      [6100],
    );
    t.same(
      find(objects, 'Deployment')[0].spec.template.spec.containers[0].ports.map((p: any) => p.containerPort),
      [6100],
    );
  });

  t.test(
    "mTLS on (identity, a generated CA): accepted; discover runs the CA; the sidecar's token carries the audience its CSR is checked with",
    async (t) => {
      const k = await kube.up();
      const values = {
        discover: { tokenAudience: 'mesh.example' },
        identity: { enabled: true, trustDomain: 'prod.example.com', mtlsMode: 'strict', certTtlSeconds: 3600, ca: { generate: true } },
      };
      const objects = await template(k, { values, server: true });
      await serverDryRun(t, k, objects, 'mTLS on');
      const id = identityOptionsFromFlags(flagsOf(objects));
      t.ok(id, "discover's own flag parsing accepts the rendered identity flags");
      t.same(
        {
          trustDomain: id?.trustDomain,
          caDir: id?.caDir,
          generate: id?.generate,
          mtlsMode: id?.mtlsMode,
          certTtlMs: id?.certTtlMs,
          tokenAudience: id?.tokenAudience,
        },
        {
          trustDomain: 'prod.example.com',
          caDir: '/etc/shoal/ca',
          generate: false,
          mtlsMode: 'strict',
          certTtlMs: 3_600_000,
          tokenAudience: 'mesh.example',
        },
      );

      const pod = find(objects, 'Deployment')[0].spec.template.spec;
      const mount = pod.containers[0].volumeMounts.find((m: any) => m.mountPath === id?.caDir);
      t.ok(mount, '--ca-dir is a mounted volume');
      t.equal(mount?.readOnly, true);
      const volume = pod.volumes.find((v: any) => v.name === mount?.name);
      t.same(volume?.secret, { secretName: 'shoal-ca', defaultMode: 0o440 }, "the CA Secret, key readable by discover's group only");

      const ca = find(objects, 'Secret').find((s: any) => s.metadata.name === 'shoal-ca');
      t.ok(ca, 'the generated CA Secret discover mounts');
      t.equal(ca.type, 'kubernetes.io/tls');
      t.equal(ca.metadata.annotations['helm.sh/resource-policy'], 'keep', 'uninstall leaves the root in place');
      t.same(Object.keys(ca.data).sort(), ['tls.crt', 'tls.key']);
      const root = new X509Certificate(b64(ca.data['tls.crt']));
      t.match(root.subject, /CN=shoal mesh root CA prod\.example\.com/);
      t.ok(root.ca, 'a CA certificate');
      t.match(b64(ca.data['tls.key']), /BEGIN RSA PRIVATE KEY/, "genCA's PKCS#1 RSA key");

      // The injection path: the webhook this discover runs mounts each sidecar's projected token with the
      // audience TokenReview checks CSRs against, at the file the sidecar reads, and points the sidecar at
      // this discover (the CA's routes live beside the snapshots).
      const token = sidecarToken(objects);
      t.equal(token.audience, 'mesh.example', 'token audience = the audience the CA checks');
      t.equal(token.mountedAt, token.file, 'SHOAL_TOKEN_FILE is the projected token');
      t.ok(token.expirationSeconds >= 600, 'a lifetime Kubernetes accepts');
      const { sidecar } = injectedSidecar(objects);
      t.equal(
        new URL(sidecar.env.find((e: any) => e.name === 'DISCOVER_URL').value).origin,
        'http://shoal-discover.shoal.svc:6100',
        'the sidecar sends its CSR to this discover',
      );

      // The CA Helm generated loads from --ca-dir and signs workload certificates.
      const dir = mkdtempSync(join(tmpdir(), 'shoal-chart-ca-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      writeFileSync(join(dir, 'tls.crt'), b64(ca.data['tls.crt']));
      writeFileSync(join(dir, 'tls.key'), b64(ca.data['tls.key']), { mode: 0o600 });
      const { service, mesh } = await setupIdentity(
        { ...id!, caDir: dir },
        async () => {
          throw new Error('TokenReview is not reached: the certificate is signed directly');
        },
        createLogger('test', 'silent'),
      );
      t.equal(mesh.trustDomain, 'prod.example.com');
      t.equal(mesh.trustBundle.length, 1);
      const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const want = 'spiffe://prod.example.com/ns/default/sa/web';
      const issued = await service.ca.sign(
        createCsr(privateKey, publicKey, want),
        { namespace: 'default', serviceAccount: 'web' },
        service.ttlMs,
      );
      const leaf = new X509Certificate(issued.certificate);
      t.ok(leaf.verify(root.publicKey), "the workload certificate is signed by the generated root's key");
      // Helm's genCA (Go 1.25 and later) sets the root's subjectKeyIdentifier to a truncated SHA-256 of its
      // key, not the SHA-1: the leaf's authorityKeyIdentifier must repeat the root's own, or OpenSSL
      // (checkIssued, and Node's TLS chain building) does not take the root as the leaf's issuer.
      t.ok(leaf.checkIssued(root), 'the workload certificate chains to the generated root (OpenSSL)');
      t.equal(leaf.subjectAltName, `URI:${want}`);

      const text = await notes(k, values);
      t.match(text, /Workload identity and mTLS: on \(trust domain prod\.example\.com; apps without MTLS_MODE are strict\)/);
      t.match(text, /generated into Secret shoal\/shoal-ca; it stays on uninstall/);

      // Identity on with a CA Secret the user creates: nothing generated, the notes say how.
      const own = await template(k, { values: { identity: { enabled: true } }, server: true });
      t.same(
        find(own, 'Secret').map((s: any) => s.metadata.name),
        ['shoal-discover-webhook-tls'],
        "the CA Secret is the user's unless ca.generate",
      );
      t.match(
        await notes(k, { identity: { enabled: true } }),
        /kubectl -n shoal create secret tls shoal-ca --cert tls\.crt --key tls\.key/,
      );
      const off = await template(k, { values: { identity: { enabled: false, ca: { generate: true } } }, server: true });
      t.notOk(
        discoverArgs(off).some((a) => /^--(trust-domain|ca-dir|cert-ttl|mtls-mode)/.test(a)),
        'identity off: no identity flags',
      );
      t.equal(identityOptionsFromFlags(flagsOf(off)), undefined, 'discover runs no CA');
      t.same(
        find(off, 'Secret').map((s: any) => s.metadata.name),
        ['shoal-discover-webhook-tls'],
        'nothing generated while identity is off',
      );
    },
  );

  t.test('custom resources and settings: accepted, and they change what they say', async (t) => {
    const k = await kube.up();
    const values = {
      fullnameOverride: 'mesh',
      image: { tag: '0.1.1', pullPolicy: 'Always' },
      imagePullSecrets: [{ name: 'regcred' }],
      discover: {
        replicas: 3,
        antiAffinity: 'hard',
        writeTokenSecret: 'shoal-writer',
        fanoutThreads: 0,
        logLevel: 'debug',
        podDisruptionBudget: { minAvailable: '50%' },
        resources: { requests: { cpu: '250m', memory: '256Mi', 'ephemeral-storage': '64Mi' }, limits: { cpu: '2', memory: '1Gi' } },
        nodeSelector: { 'kubernetes.io/os': 'linux' },
        tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'mesh', effect: 'NoSchedule' }],
        priorityClassName: 'system-cluster-critical',
        podLabels: { team: 'platform' },
        podAnnotations: { 'example.com/owner': 'platform' },
      },
      // Helm merges maps: the default matchLabels must be removed with null to replace the selector.
      webhook: {
        failurePolicy: 'Fail',
        timeoutSeconds: 10,
        port: 8443,
        namespaceSelector: { matchLabels: null, matchExpressions: [{ key: 'mesh', operator: 'In', values: ['shoal'] }] },
      },
      injector: {
        dnsUpstream: '10.96.0.53',
        sidecarMode: 'legacy',
        portNamesOnApp: 'always',
        tokenExpirationSeconds: 7200,
        proxy: { cpu: '50m', memory: '32Mi', memoryLimit: '96Mi', cpuLimit: '500m' },
        tracing: { otlpEndpoint: 'http://otel-collector.observability.svc:4318', sampleRatio: 0 },
      },
      metrics: { prometheusScrape: false },
    };
    const objects = await template(k, { values, server: true });
    await serverDryRun(t, k, objects, 'custom settings');
    const deploy = find(objects, 'Deployment')[0];
    t.equal(deploy.metadata.name, 'mesh', 'fullnameOverride names the objects');
    t.equal(deploy.spec.replicas, 3);
    const pod = deploy.spec.template.spec;
    t.same(pod.containers[0].resources, values.discover.resources, "discover's resources as given");
    t.equal(pod.containers[0].image, 'ghcr.io/shoal-mesh/shoal:0.1.1');
    t.equal(pod.containers[0].imagePullPolicy, 'Always');
    t.same(pod.imagePullSecrets, [{ name: 'regcred' }]);
    t.same(find(objects, 'ServiceAccount')[0].imagePullSecrets, [{ name: 'regcred' }]);
    t.same(pod.nodeSelector, values.discover.nodeSelector);
    t.same(pod.tolerations, values.discover.tolerations);
    t.equal(pod.priorityClassName, 'system-cluster-critical');
    t.equal(deploy.spec.template.metadata.labels.team, 'platform');
    t.equal(deploy.spec.template.metadata.annotations['example.com/owner'], 'platform');
    t.ok(pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution, 'hard anti-affinity');
    t.same(pod.containers[0].env, [{ name: 'SHOAL_WRITE_TOKEN', valueFrom: { secretKeyRef: { name: 'shoal-writer', key: 'token' } } }]);
    t.notOk(deploy.spec.template.metadata.annotations['prometheus.io/scrape'], 'no scrape annotations when off');
    t.equal(find(objects, 'PodDisruptionBudget')[0].spec.minAvailable, '50%');
    t.same(
      find(objects, 'Service')[0].spec.ports.map((p: any) => p.port),
      [6100, 8443],
    );
    const mwc = find(objects, 'MutatingWebhookConfiguration')[0];
    t.same(
      mwc.webhooks.map((w: any) => [w.failurePolicy, w.timeoutSeconds]),
      [
        ['Fail', 10],
        ['Fail', 10],
      ],
    );
    t.same(mwc.webhooks[0].namespaceSelector, { matchExpressions: [{ key: 'mesh', operator: 'In', values: ['shoal'] }] });
    t.same(mwc.webhooks[0].clientConfig.service, { name: 'mesh', namespace: NS, path: '/inject', port: 8443 });
    const v = flagsOf(objects);
    t.equal(v['dns-upstream'], '10.96.0.53', 'the value wins over the lookup');
    t.equal(v['discover-url'], 'http://mesh.shoal.svc:6100');
    t.equal(v['legacy-sidecar'], true);
    t.equal(v['app-keeps-port-names'], true);
    t.equal(v['proxy-cpu-limit'], '500m');
    t.equal(v['proxy-memory-limit'], '96Mi');
    t.equal(v['fanout-threads'], '0');
    t.equal(v['log-level'], 'debug');
    t.equal(v['sidecar-otlp-endpoint'], 'http://otel-collector.observability.svc:4318', "the sidecars' collector");
    t.equal(v['sidecar-trace-sample-ratio'], '0', 'a ratio of 0 is passed, not taken for unset');
    t.match(await notes(k, values), /Sidecar mode: legacy/);

    const single = await template(k, { values: { discover: { replicas: 1 } }, server: true });
    t.same(find(single, 'PodDisruptionBudget'), [], 'no PDB for a single replica');
    await serverDryRun(t, k, single, 'one replica');
  });

  t.test("cert-manager: the API server accepts all but cert-manager's own kinds, whose CRDs come with cert-manager", async (t) => {
    const k = await kube.up();
    // Against a cluster without cert-manager, Helm itself refuses to render kinds the API server does not serve.
    const refused = await k.helm([
      'template',
      'shoal',
      chartDir,
      '--namespace',
      NS,
      '--dry-run=server',
      '--set',
      'webhook.certificate.source=certManager',
    ]);
    t.not(refused.code, 0, 'helm template --dry-run=server refuses: no cert-manager here');
    t.match(refused.stderr, /no matches for kind "Certificate" in version "cert-manager\.io\/v1"/);
    const objects = await template(k, {
      values: { webhook: { certificate: { source: 'certManager' } }, injector: { dnsUpstream: KUBE_DNS } },
    });
    t.same(find(objects, 'Secret'), [], 'no Helm-made Secret');
    const issuer = find(objects, 'Issuer')[0];
    const cert = find(objects, 'Certificate')[0];
    t.same(issuer.spec, { selfSigned: {} });
    t.equal(cert.spec.secretName, 'shoal-discover-webhook-tls', 'cert-manager writes the Secret discover mounts');
    t.same(cert.spec.dnsNames, ['shoal-discover.shoal.svc', 'shoal-discover.shoal.svc.cluster.local']);
    t.same(cert.spec.issuerRef, { name: 'shoal-discover-selfsigned', kind: 'Issuer', group: 'cert-manager.io' });
    t.equal(cert.spec.duration, '87600h');
    const mwc = find(objects, 'MutatingWebhookConfiguration')[0];
    t.equal(mwc.metadata.annotations['cert-manager.io/inject-ca-from'], 'shoal/shoal-discover-webhook');
    t.notOk(mwc.webhooks[0].clientConfig.caBundle, 'the cainjector fills the caBundle');
    await serverDryRun(
      t,
      k,
      objects.filter((o) => !o.apiVersion.startsWith('cert-manager.io/')),
      'cert-manager (without its kinds)',
    );
    const r = await k.kubectl(['apply', '--dry-run=server', '-f', '-'], { input: JSON.stringify(cert) });
    t.not(r.code, 0, 'no Certificate kind without cert-manager');
    t.match(r.stderr, /no matches for kind "Certificate" in version "cert-manager\.io\/v1"/);

    const own = await template(k, {
      values: {
        webhook: { certificate: { source: 'certManager', certManager: { issuerRef: { name: 'corp-ca', kind: 'ClusterIssuer' } } } },
        injector: { dnsUpstream: KUBE_DNS },
      },
    });
    t.same(find(own, 'Issuer'), [], 'no Issuer when one is given');
    t.same(find(own, 'Certificate')[0].spec.issuerRef, { name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
  });

  t.test("Kubernetes version picks the sidecar mode and where port names live; the chart's kubeVersion is enforced", async (t) => {
    const k = await kube.up();
    const at = async (kubeVersion: string) => flagsOf(await template(k, { kubeVersion, values: { injector: { dnsUpstream: KUBE_DNS } } }));
    t.equal((await at('v1.28.9'))['legacy-sidecar'], true, '1.28: legacy');
    t.equal((await at('v1.29.0'))['legacy-sidecar'], false, '1.29: native');
    t.equal((await at('v1.31.4'))['app-keeps-port-names'], true, '1.31: names stay on the app container');
    t.equal((await at('v1.32.0'))['app-keeps-port-names'], false, '1.32: names move to the sidecar');
    const old = await k.helm(['template', 'shoal', chartDir, '--kube-version', 'v1.24.9', '--set', `injector.dnsUpstream=${KUBE_DNS}`]);
    t.not(old.code, 0, '1.24 is refused');
    t.match(old.stderr, /kubeVersion|incompatible/i);
  });

  t.test('Helm refuses what the chart refuses: no cluster DNS, and values against values.schema.json', async (t) => {
    const k = await kube.up();
    const r = await k.helm(['template', 'shoal', chartDir, '--namespace', NS]);
    t.not(r.code, 0, 'without a cluster and without injector.dnsUpstream');
    t.match(r.stderr, /set injector\.dnsUpstream/, 'the chart says what to set');
    for (const [set, why] of [
      ['webhook.failurePolicy=Maybe', 'failurePolicy'],
      ['discover.replica=3', 'replica'],
      ['injector.dnsUpstream=kube-dns', 'dnsUpstream'],
      ['injector.tracing.sampleRatio=2', 'sampleRatio'],
      ['injector.tracing.otlpEndpoint=otel:4318', 'otlpEndpoint'],
    ]) {
      const bad = await k.helm(['template', 'shoal', chartDir, '--set', set]);
      t.not(bad.code, 0, `refused: ${set}`);
      t.match(bad.stderr, why, `${set}: the schema's error names the value`);
    }
  });

  let kinds: string[] = [];
  let webhookSecret: any;

  t.test('helm install creates every object; the controllers take it from there', async (t) => {
    const k = await kube.up();
    kinds = await everyKind(k);
    t.same(await releaseObjects(k, kinds), [], 'nothing of the release before');
    const out = await k.helmOk(['install', 'shoal', chartDir, '--namespace', NS]);
    t.match(out, /STATUS: deployed/);
    t.match(out, /kubectl label namespace <ns> shoal\.dev\/inject=enabled/, 'the NOTES');
    for (const [kind, name, ns] of [
      ['deployment', 'shoal-discover', NS],
      ['service', 'shoal-discover', NS],
      ['serviceaccount', 'shoal-discover', NS],
      ['secret', 'shoal-discover-webhook-tls', NS],
      ['poddisruptionbudget', 'shoal-discover', NS],
      ['clusterrole', 'shoal-discover', ''],
      ['clusterrolebinding', 'shoal-discover', ''],
      ['mutatingwebhookconfiguration', 'shoal-discover', ''],
    ]) {
      const obj = await k.getJson([kind, name, ...(ns ? ['-n', ns] : [])]);
      t.equal(obj.metadata.annotations['meta.helm.sh/release-name'], 'shoal', `${kind} ${name} exists, owned by the release`);
    }
    webhookSecret = await k.getJson(['secret', 'shoal-discover-webhook-tls', '-n', NS]);
    const mwc = await k.getJson(['mutatingwebhookconfiguration', 'shoal-discover']);
    t.equal(mwc.webhooks[0].clientConfig.caBundle, webhookSecret.data['ca.crt'], 'the installed caBundle is the installed CA');
    const rs = await until("the Deployment's ReplicaSet", async () => (await k.getJson(['replicaset', '-n', NS, '-l', RELEASE])).items[0]);
    t.equal(rs.metadata.ownerReferences[0].kind, 'Deployment');
    t.equal(rs.spec.replicas, 2);
    const pods = await until('two Pods from the ReplicaSet', async () => {
      const items = (await k.getJson(['pod', '-n', NS, '-l', RELEASE])).items;
      return items.length === 2 ? items : null;
    });
    t.ok(
      pods.every((p: any) => p.spec.serviceAccountName === 'shoal-discover' && p.metadata.ownerReferences[0].name === rs.metadata.name),
      "Pods made by the ReplicaSet, with discover's ServiceAccount",
    );
    const slices = await until(
      'an EndpointSlice for the Service',
      async () => (await k.getJson(['endpointslice', '-n', NS, '-l', 'kubernetes.io/service-name=shoal-discover'])).items[0],
    );
    t.same(slices.endpoints ?? [], [], 'no endpoint: no Pod is ready (there is no kubelet)');
    const objects = await releaseObjects(k, kinds);
    t.ok(objects.length >= 12, `${objects.length} objects carry the release's labels: ${objects.join(', ')}`);
  });

  t.test(
    'helm upgrade with changed values changes them, keeps the webhook certificate and removes what is no longer rendered',
    async (t) => {
      const k = await kube.up();
      const changed = {
        discover: { replicas: 3, podDisruptionBudget: { minAvailable: '50%' } },
        webhook: { failurePolicy: 'Fail' },
        metrics: { prometheusScrape: false },
        identity: { enabled: true, ca: { generate: true } },
      };
      await k.helmOk(['upgrade', 'shoal', chartDir, '--namespace', NS, '-f', valuesFile(changed)]);
      const deploy = await k.getJson(['deployment', 'shoal-discover', '-n', NS]);
      t.equal(deploy.spec.replicas, 3);
      t.notOk(deploy.spec.template.metadata.annotations?.['prometheus.io/scrape'], 'scrape annotations gone');
      t.ok(deploy.spec.template.spec.containers[0].args.includes('--ca-dir=/etc/shoal/ca'), 'identity on');
      t.equal((await k.getJson(['poddisruptionbudget', 'shoal-discover', '-n', NS])).spec.minAvailable, '50%');
      const mwc = await k.getJson(['mutatingwebhookconfiguration', 'shoal-discover']);
      t.same(
        mwc.webhooks.map((w: any) => w.failurePolicy),
        ['Fail', 'Fail'],
      );
      const secret = await k.getJson(['secret', 'shoal-discover-webhook-tls', '-n', NS]);
      t.same(secret.data, webhookSecret.data, 'the webhook certificate is reused (looked up), not rotated under running pods');
      t.equal(mwc.webhooks[0].clientConfig.caBundle, webhookSecret.data['ca.crt']);
      const ca = await k.getJson(['secret', 'shoal-ca', '-n', NS]);
      t.equal(ca.metadata.annotations['helm.sh/resource-policy'], 'keep');
      await until(
        'a second ReplicaSet for the new pod template',
        async () => (await k.getJson(['replicaset', '-n', NS, '-l', RELEASE])).items.length === 2,
      );

      // Upgraded again (same CA values): the generated CA is kept as well.
      await k.helmOk(['upgrade', 'shoal', chartDir, '--namespace', NS, '-f', valuesFile({ ...changed, webhook: { enabled: false } })]);
      t.same((await k.getJson(['secret', 'shoal-ca', '-n', NS])).data, ca.data, 'the mesh CA is reused on upgrade');
      const gone = await k.kubectl(['get', 'mutatingwebhookconfiguration/shoal-discover']);
      t.match(gone.stderr, /NotFound/, 'webhook off: the MutatingWebhookConfiguration is deleted');
      t.match((await k.kubectl(['get', '-n', NS, 'secret/shoal-discover-webhook-tls'])).stderr, /NotFound/, 'and its certificate');
      t.same(
        (await k.getJson(['service', 'shoal-discover', '-n', NS])).spec.ports.map((p: any) => p.port),
        [6100],
        'the webhook port is gone from the Service',
      );
      t.match(await k.helmOk(['history', 'shoal', '--namespace', NS]), /3\s+.*deployed/);
    },
  );

  t.test('helm uninstall leaves nothing of the release behind, but the mesh CA it promises to keep', async (t) => {
    const k = await kube.up();
    await k.helmOk(['uninstall', 'shoal', '--namespace', NS]);
    // ReplicaSets, Pods and EndpointSlices go with the garbage collector, in the background.
    const left = await until('only the kept mesh CA left', async () => {
      const objects = await releaseObjects(k, kinds);
      return objects.length === 1 ? objects : null;
    });
    t.same(left, ['Secret/shoal-ca (shoal)'], 'the CA Secret (helm.sh/resource-policy: keep) stays');
    await k.kubectlOk(['-n', NS, 'delete', 'secret', 'shoal-ca']);
    t.same(await releaseObjects(k, kinds), [], "nothing of any kind, in any namespace or none, carries the release's labels");
    t.same((await k.getJson(['secret', '-n', NS, '-l', 'owner=helm,name=shoal'])).items, [], "Helm's release records are gone");
    for (const kind of ['clusterrole', 'clusterrolebinding', 'mutatingwebhookconfiguration']) {
      t.same((await k.getJson([kind, '-l', RELEASE])).items, [], `no ${kind}`);
    }
    // The control plane serves the Gateway API's CRDs itself (test/lib/kube.ts); the chart installs them only with gatewayAPI.installCRDs.
    const crds = (await k.getJson(['customresourcedefinitions'])).items;
    t.same(
      crds.filter((c: any) => !/^gateway\.networking\.(x-)?k8s\.io$/.test(c.spec.group)).map((c: any) => c.metadata.name),
      [],
      "no CRD but the Gateway API's the control plane serves (the chart installs none by default)",
    );
    t.same(
      crds.filter((c: any) => c.metadata.labels?.['app.kubernetes.io/instance'] === 'shoal').map((c: any) => c.metadata.name),
      [],
      "and none carries the release's labels",
    );
    t.same(
      (await k.getJson(['pods,replicasets,endpointslices', '-n', NS])).items,
      [],
      'no Pod, ReplicaSet or EndpointSlice in the namespace',
    );
    await k.kubectlOk(['delete', 'namespace', NS, '--wait=true', '--timeout=60s']);
  });
}
