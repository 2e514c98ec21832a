// The chart rendered by a small Go-template interpreter (test/charts/goTemplate.ts; no Helm binary here):
// every document parses as YAML, validates against the Kubernetes schemas (kubernetes-models), and the
// discover container's arguments are flags the shoal CLI knows.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fastJsonPatch from 'fast-json-patch';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ClusterRole, ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { MutatingWebhookConfiguration } from 'kubernetes-models/admissionregistration.k8s.io/v1';
import { ChartRenderer, type RenderContext } from './goTemplate.ts';
import { discoverFlags } from '../../discover/main.ts';
import { webhookFlags } from '../../discover/webhook/webhookFlags.ts';
import { parseFlags } from '../../shared/flags.ts';
import { identityOptionsFromFlags, setupIdentity } from '../../discover/identity/identitySetup.ts';
import { webhookOptionsFromFlags } from '../../discover/webhook/webhookFlags.ts';
import { injectPod } from '../../discover/webhook/podInjector.ts';
import { createCsr } from '../../proxy/tls/csr.ts';
import { createLogger } from '../../shared/log.ts';

const chartDir = join(import.meta.dirname, '..', '..', 'charts', 'shoal');
const templatesDir = join(chartDir, 'templates');
const sources = Object.fromEntries(readdirSync(templatesDir).sort().map((f) => [f, readFileSync(join(templatesDir, f), 'utf8')]));
const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8'));
const defaults = parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8'));

const models: Record<string, new (obj: any) => { validate(): void }> = {
  Deployment, Service, ServiceAccount, Secret, PodDisruptionBudget, ClusterRole, ClusterRoleBinding, MutatingWebhookConfiguration,
};

type Lookup = (apiVersion: string, kind: string, namespace: string, name: string) => Record<string, unknown>;
const kubeDns: Lookup = (_v, kind, ns, name) => (kind === 'Service' && ns === 'kube-system' && name === 'kube-dns' ? { spec: { clusterIP: '10.43.0.10' } } : {});

/** Helm's coalescing: user maps merge into the defaults key by key; a null removes a default key. */
function merge(base: any, over: any): any {
  if (over === null || typeof over !== 'object' || Array.isArray(over)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === null) delete out[k];
    else out[k] = merge(base?.[k], v);
  }
  return out;
}

function render(opts: { values?: any; kubeVersion?: string; lookup?: Lookup } = {}): { objects: any[]; notes: string } {
  const renderer = new ChartRenderer(sources, { lookup: opts.lookup ?? kubeDns });
  const version = opts.kubeVersion ?? 'v1.33.1';
  const [major, minor] = version.slice(1).split('.');
  const ctx: RenderContext = {
    Values: merge(defaults, opts.values ?? {}),
    Release: { Name: 'shoal', Namespace: 'shoal', Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1 },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
    Capabilities: { KubeVersion: { Version: version, Major: major, Minor: minor } },
  };
  const objects: any[] = [];
  for (const file of Object.keys(sources).filter((f) => f.endsWith('.yaml'))) {
    const text = renderer.render(file, ctx);
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0].message}\n${text}`);
      const obj = doc.toJS();
      if (obj !== null && obj !== undefined) objects.push(obj);
    }
  }
  return { objects, notes: renderer.render('NOTES.txt', ctx) };
}

const find = (objects: any[], kind: string) => objects.filter((o) => o.kind === kind);
const discoverArgs = (objects: any[]): string[] => find(objects, 'Deployment')[0].spec.template.spec.containers[0].args;

t.test('default values render to valid Kubernetes objects', async (t) => {
  const { objects, notes } = render();
  t.same(objects.map((o) => o.kind).sort(), ['ClusterRole', 'ClusterRoleBinding', 'Deployment', 'MutatingWebhookConfiguration', 'PodDisruptionBudget', 'Secret', 'Service', 'ServiceAccount']);
  for (const o of objects) {
    t.doesNotThrow(() => new models[o.kind](o).validate(), `${o.kind} ${o.metadata.name} validates`);
    t.equal(o.metadata.labels['app.kubernetes.io/part-of'], 'shoal', `${o.kind} is labelled part-of=shoal`);
  }

  const deploy = find(objects, 'Deployment')[0];
  t.equal(deploy.metadata.name, 'shoal-discover', 'the name DESIGN.md\'s discover URL uses');
  t.equal(deploy.spec.replicas, 2);
  const pod = deploy.spec.template.spec;
  t.equal(pod.securityContext.runAsNonRoot, true);
  const c = pod.containers[0];
  t.equal(c.image, `ghcr.io/shoal-mesh/shoal:${chart.appVersion}`);
  t.equal(c.securityContext.readOnlyRootFilesystem, true);
  t.equal(c.readinessProbe.httpGet.path, '/readyz');
  t.equal(c.livenessProbe.httpGet.path, '/healthz');
  t.same(c.ports.map((p: any) => p.containerPort), [6100, 6443]);
  t.same(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchLabels, deploy.spec.selector.matchLabels, 'anti-affinity against its own replicas');
  t.equal(deploy.spec.template.metadata.annotations['prometheus.io/scrape'], 'true');
  t.equal(deploy.spec.template.metadata.annotations['prometheus.io/port'], '6100');

  // The arguments must be flags the CLI knows, with values it accepts.
  const args = discoverArgs(objects);
  t.equal(args[0], 'discover');
  const { values, positional } = parseFlags([...discoverFlags, ...webhookFlags], args.slice(1), {});
  t.same(positional, [], 'every argument is a flag');
  t.equal(values.kubernetes, true);
  t.equal(values.webhook, true);
  t.equal(values['dns-upstream'], '10.43.0.10', 'the cluster DNS found by lookup');
  t.equal(values['discover-url'], 'http://shoal-discover.shoal.svc:6100');
  t.equal(values['legacy-sidecar'], false, 'native sidecars on 1.33');
  t.equal(values['app-keeps-port-names'], false, 'names move to the sidecar on 1.33');
  t.equal(values['webhook-cert'], '/etc/shoal/webhook/tls.crt');
  t.ok(c.volumeMounts.some((m: any) => m.mountPath === '/etc/shoal/webhook'), 'the certificate is mounted where --webhook-cert points');

  const svc = find(objects, 'Service')[0];
  t.same(svc.spec.ports.map((p: any) => [p.port, p.targetPort]), [[6100, 'http'], [6443, 'webhook']]);
  t.same(find(objects, 'PodDisruptionBudget')[0].spec.minAvailable, 1);

  const secret = find(objects, 'Secret')[0];
  t.equal(secret.type, 'kubernetes.io/tls');
  const mwc = find(objects, 'MutatingWebhookConfiguration')[0];
  t.same(mwc.webhooks.map((w: any) => w.name), ['pods.inject.shoal.dev', 'services.inject.shoal.dev']);
  for (const w of mwc.webhooks) {
    t.equal(w.clientConfig.caBundle, secret.data['ca.crt'], `${w.name}: caBundle is the generated CA`);
    t.same(w.clientConfig.service, { name: 'shoal-discover', namespace: 'shoal', path: '/inject', port: 6443 });
    t.equal(w.failurePolicy, 'Ignore');
    t.equal(w.sideEffects, 'NoneOnDryRun');
    t.same(w.admissionReviewVersions, ['v1']);
    t.same(w.namespaceSelector, { matchLabels: { 'shoal.dev/inject': 'enabled' } });
    t.same(w.objectSelector.matchExpressions, [{ key: 'app.kubernetes.io/part-of', operator: 'NotIn', values: ['shoal'] }], 'shoal\'s own objects excluded');
  }
  t.same(mwc.webhooks[0].rules[0].operations, ['CREATE']);
  t.same(mwc.webhooks[0].rules[0].resources, ['pods']);
  t.same(mwc.webhooks[1].rules[0].operations, ['CREATE', 'UPDATE']);
  t.same(mwc.webhooks[1].rules[0].resources, ['services']);
  t.match(Buffer.from(secret.data['tls.crt'], 'base64').toString(), /shoal-discover\.shoal\.svc/, 'serving certificate for the Service\'s name');
  t.match(notes, /kubectl label namespace <ns> shoal\.dev\/inject=enabled/);
  t.match(notes, /Sidecar mode: native/);
});

t.test('Kubernetes version picks the sidecar mode and where port names live', async (t) => {
  const at = (kubeVersion: string) => parseFlags([...discoverFlags, ...webhookFlags], discoverArgs(render({ kubeVersion }).objects).slice(1), {}).values;
  t.equal(at('v1.28.9')['legacy-sidecar'], true, '1.28: legacy');
  t.equal(at('v1.29.0')['legacy-sidecar'], false, '1.29: native');
  t.equal(at('v1.31.4')['app-keeps-port-names'], true, '1.31: names stay on the app container');
  t.equal(at('v1.32.0')['app-keeps-port-names'], false, '1.32: names move to the sidecar');
  const forced = render({ kubeVersion: 'v1.33.0', values: { injector: { sidecarMode: 'legacy', portNamesOnApp: 'always', proxy: { cpuLimit: '500m' } } } });
  const v = parseFlags([...discoverFlags, ...webhookFlags], discoverArgs(forced.objects).slice(1), {}).values;
  t.equal(v['legacy-sidecar'], true);
  t.equal(v['app-keeps-port-names'], true);
  t.equal(v['proxy-cpu-limit'], '500m');
  t.match(forced.notes, /Sidecar mode: legacy/);
});

t.test('values change what they say', async (t) => {
  const { objects } = render({
    values: {
      // Helm merges maps: the default matchLabels must be removed with null to replace the selector.
      webhook: { failurePolicy: 'Fail', namespaceSelector: { matchLabels: null, matchExpressions: [{ key: 'mesh', operator: 'In', values: ['shoal'] }] } },
      discover: { replicas: 3, antiAffinity: 'hard', writeTokenSecret: 'shoal-writer', podDisruptionBudget: { minAvailable: '50%' } },
      injector: { dnsUpstream: '10.96.0.10' },
      metrics: { prometheusScrape: false },
    },
  });
  for (const o of objects) t.doesNotThrow(() => new models[o.kind](o).validate(), `${o.kind} validates`);
  const deploy = find(objects, 'Deployment')[0];
  t.equal(deploy.spec.replicas, 3);
  t.ok(deploy.spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution, 'hard anti-affinity');
  t.same(deploy.spec.template.spec.containers[0].env, [{ name: 'SHOAL_WRITE_TOKEN', valueFrom: { secretKeyRef: { name: 'shoal-writer', key: 'token' } } }]);
  t.notOk(deploy.spec.template.metadata.annotations?.['prometheus.io/scrape'], 'no scrape annotations when off');
  t.equal(find(objects, 'PodDisruptionBudget')[0].spec.minAvailable, '50%');
  const mwc = find(objects, 'MutatingWebhookConfiguration')[0];
  t.same(mwc.webhooks.map((w: any) => w.failurePolicy), ['Fail', 'Fail']);
  t.same(mwc.webhooks[0].namespaceSelector, { matchExpressions: [{ key: 'mesh', operator: 'In', values: ['shoal'] }] });
  t.ok(discoverArgs(objects).includes('--dns-upstream=10.96.0.10'), 'the value wins over the lookup');

  const single = render({ values: { discover: { replicas: 1 } } }).objects;
  t.same(find(single, 'PodDisruptionBudget'), [], 'no PDB for a single replica');

  const off = render({ values: { webhook: { enabled: false } } }).objects;
  t.same(find(off, 'MutatingWebhookConfiguration'), [], 'no webhook when disabled');
  t.same(find(off, 'Secret'), []);
  t.notOk(discoverArgs(off).includes('--webhook'));
  t.same(find(off, 'Service')[0].spec.ports.map((p: any) => p.port), [6100]);
});

t.test('certificates: reused on upgrade, or issued by cert-manager', async (t) => {
  const existing = { data: { 'ca.crt': 'Q0E=', 'tls.crt': 'Q1JU', 'tls.key': 'S0VZ' } };
  const upgrade = render({ lookup: (v, kind, ns, name) => (kind === 'Secret' && ns === 'shoal' && name === 'shoal-discover-webhook-tls' ? existing : kubeDns(v, kind, ns, name)) }).objects;
  t.same(find(upgrade, 'Secret')[0].data, existing.data, 'the earlier certificate is kept');
  t.equal(find(upgrade, 'MutatingWebhookConfiguration')[0].webhooks[0].clientConfig.caBundle, 'Q0E=');

  const cm = render({ values: { webhook: { certificate: { source: 'certManager' } } } }).objects;
  t.same(find(cm, 'Secret'), [], 'no Helm-made Secret');
  const issuer = find(cm, 'Issuer')[0];
  const cert = find(cm, 'Certificate')[0];
  t.same(issuer.spec, { selfSigned: {} });
  t.equal(cert.spec.secretName, 'shoal-discover-webhook-tls', 'cert-manager writes the Secret discover mounts');
  t.same(cert.spec.dnsNames, ['shoal-discover.shoal.svc', 'shoal-discover.shoal.svc.cluster.local']);
  t.same(cert.spec.issuerRef, { name: 'shoal-discover-selfsigned', kind: 'Issuer', group: 'cert-manager.io' });
  t.equal(cert.spec.duration, '87600h');
  const mwc = find(cm, 'MutatingWebhookConfiguration')[0];
  t.equal(mwc.metadata.annotations['cert-manager.io/inject-ca-from'], 'shoal/shoal-discover-webhook');
  t.notOk(mwc.webhooks[0].clientConfig.caBundle, 'the cainjector fills the caBundle');
  t.doesNotThrow(() => new MutatingWebhookConfiguration(mwc).validate());

  const own = render({ values: { webhook: { certificate: { source: 'certManager', certManager: { issuerRef: { name: 'corp-ca', kind: 'ClusterIssuer' } } } } } }).objects;
  t.same(find(own, 'Issuer'), [], 'no Issuer when one is given');
  t.same(find(own, 'Certificate')[0].spec.issuerRef, { name: 'corp-ca', kind: 'ClusterIssuer', group: 'cert-manager.io' });
});

t.test('without a cluster and without injector.dnsUpstream the chart says what to set', async (t) => {
  t.throws(() => render({ lookup: () => ({}) }), /set injector\.dnsUpstream/);
});

const flagsOf = (objects: any[]) => parseFlags([...discoverFlags, ...webhookFlags], discoverArgs(objects).slice(1), {}).values;

/** The sidecar the rendered discover's webhook would inject into a plain app pod, and that pod's volumes. */
function injectedSidecar(objects: any[]): { sidecar: any; volumes: any[] } {
  const injector = webhookOptionsFromFlags(flagsOf(objects)).injector;
  const pod = { metadata: { name: 'web-1', labels: { 'app.kubernetes.io/name': 'web' } }, spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }] }] } };
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

t.test('identity is off by default: no CA flags, no CA mount, no CA Secret', async (t) => {
  const { objects, notes } = render();
  t.notOk(discoverArgs(objects).some((a) => /^--(trust-domain|ca-dir|cert-ttl|mtls-mode)/.test(a)), 'no identity flags');
  t.equal(identityOptionsFromFlags(flagsOf(objects)), undefined, 'discover runs no CA');
  const pod = find(objects, 'Deployment')[0].spec.template.spec;
  t.notOk(pod.volumes.some((v: any) => v.name === 'mesh-ca'), 'no CA volume');
  t.same(find(objects, 'Secret').map((s: any) => s.metadata.name), ['shoal-discover-webhook-tls']);
  t.notMatch(notes, /Workload identity/);
});

t.test('identity on: discover runs the CA from the mounted Secret; the injected sidecar\'s token carries the audience its CSR is checked with', async (t) => {
  const { objects, notes } = render({ values: { identity: { enabled: true } } });
  for (const o of objects) t.doesNotThrow(() => new models[o.kind](o).validate(), `${o.kind} ${o.metadata.name} validates`);
  const values = flagsOf(objects);
  const id = identityOptionsFromFlags(values);
  t.ok(id, 'discover\'s own flag parsing accepts the rendered identity flags');
  t.same({ trustDomain: id?.trustDomain, caDir: id?.caDir, generate: id?.generate, mtlsMode: id?.mtlsMode, certTtlMs: id?.certTtlMs, tokenAudience: id?.tokenAudience },
    { trustDomain: 'cluster.local', caDir: '/etc/shoal/ca', generate: false, mtlsMode: 'permissive', certTtlMs: 86_400_000, tokenAudience: 'shoal' });

  const pod = find(objects, 'Deployment')[0].spec.template.spec;
  const mount = pod.containers[0].volumeMounts.find((m: any) => m.mountPath === id?.caDir);
  t.ok(mount, '--ca-dir is a mounted volume');
  t.equal(mount?.readOnly, true);
  const volume = pod.volumes.find((v: any) => v.name === mount?.name);
  t.same(volume?.secret, { secretName: 'shoal-ca', defaultMode: 0o440 }, 'the CA Secret, key readable by discover\'s group only');
  t.same(find(objects, 'Secret').map((s: any) => s.metadata.name), ['shoal-discover-webhook-tls'], 'the CA Secret is the user\'s unless ca.generate');
  t.match(notes, /Workload identity and mTLS: on \(trust domain cluster\.local; apps without MTLS_MODE are permissive\)/);
  t.match(notes, /kubectl -n shoal create secret tls shoal-ca --cert tls\.crt --key tls\.key/);

  // The injection path: the webhook this discover runs mounts each sidecar's projected token with the
  // audience TokenReview checks CSRs against, at the file the sidecar reads, and points the sidecar at
  // this discover (the CA's routes live beside the snapshots).
  const token = sidecarToken(objects);
  t.equal(token.audience, id?.tokenAudience, 'token audience = the audience the CA checks');
  t.equal(token.mountedAt, token.file, 'SHOAL_TOKEN_FILE is the projected token');
  t.ok(token.expirationSeconds >= 600, 'a lifetime Kubernetes accepts');
  const { sidecar } = injectedSidecar(objects);
  t.equal(new URL(sidecar.env.find((e: any) => e.name === 'DISCOVER_URL').value).origin, 'http://shoal-discover.shoal.svc:6100', 'the sidecar sends its CSR to this discover');
});

t.test('identity values change what they say', async (t) => {
  const { objects, notes } = render({
    values: {
      discover: { tokenAudience: 'mesh.example' },
      identity: { enabled: true, trustDomain: 'prod.example.com', mtlsMode: 'strict', certTtlSeconds: 3600, ca: { secretName: 'corp-mesh-ca' } },
    },
  });
  const id = identityOptionsFromFlags(flagsOf(objects));
  t.equal(id?.trustDomain, 'prod.example.com');
  t.equal(id?.mtlsMode, 'strict');
  t.equal(id?.certTtlMs, 3_600_000);
  t.equal(id?.tokenAudience, 'mesh.example');
  const pod = find(objects, 'Deployment')[0].spec.template.spec;
  t.equal(pod.volumes.find((v: any) => v.name === 'mesh-ca').secret.secretName, 'corp-mesh-ca');
  t.equal(sidecarToken(objects).audience, 'mesh.example', 'the injected token follows discover.tokenAudience');
  t.match(notes, /apps without MTLS_MODE are strict/);
});

t.test('identity.ca.generate: a CA Secret made at install, kept on upgrade (with older roots) and on uninstall', async (t) => {
  const values = { identity: { enabled: true, ca: { generate: true } } };
  const { objects, notes } = render({ values });
  const ca = find(objects, 'Secret').find((s: any) => s.metadata.name === 'shoal-ca');
  t.ok(ca, 'the Secret discover mounts');
  t.doesNotThrow(() => new Secret(ca).validate());
  t.equal(ca.type, 'kubernetes.io/tls');
  t.equal(ca.metadata.namespace, 'shoal');
  t.equal(ca.metadata.annotations['helm.sh/resource-policy'], 'keep', 'uninstall leaves the root in place');
  t.same(Object.keys(ca.data).sort(), ['tls.crt', 'tls.key']);
  // The test renderer's genCA is a stub: its subject shows what the template asked for.
  t.match(Buffer.from(ca.data['tls.crt'], 'base64').toString(), /BEGIN CERTIFICATE[\s\S]*shoal mesh root CA cluster\.local/);
  t.match(Buffer.from(ca.data['tls.key'], 'base64').toString(), /BEGIN RSA PRIVATE KEY/);
  t.equal(find(objects, 'Deployment')[0].spec.template.spec.volumes.find((v: any) => v.name === 'mesh-ca').secret.secretName, ca.metadata.name);
  t.match(notes, /generated into Secret shoal\/shoal-ca; it stays on uninstall/);

  const existing = { data: { 'tls.crt': 'TkVX', 'tls.key': 'S0VZ', 'ca.crt': 'T0xE' } };
  const upgrade = render({ values, lookup: (v, kind, ns, name) => (kind === 'Secret' && ns === 'shoal' && name === 'shoal-ca' ? existing : kubeDns(v, kind, ns, name)) }).objects;
  t.same(find(upgrade, 'Secret').find((s: any) => s.metadata.name === 'shoal-ca').data, existing.data, 'the earlier CA and the older roots of a rotation are kept');
  t.same(find(render({ values: { identity: { enabled: false, ca: { generate: true } } } }).objects, 'Secret').map((s: any) => s.metadata.name), ['shoal-discover-webhook-tls'], 'nothing generated while identity is off');
});

t.test('a CA shaped like Helm\'s genCA (RSA 2048, PKCS#1 key) loads from --ca-dir and signs workload certificates', async (t) => {
  // What sprig's genCA makes: an RSA 2048 key in PKCS#1 PEM, CN only, CA:TRUE, keyUsage digitalSignature, keyEncipherment, certSign.
  const dir = mkdtempSync(join(tmpdir(), 'shoal-chart-ca-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('openssl', ['genrsa', '-traditional', '-out', join(dir, 'tls.key'), '2048'], { stdio: 'ignore' });
  execFileSync('openssl', ['req', '-x509', '-new', '-key', join(dir, 'tls.key'), '-days', '3650', '-subj', '/CN=shoal mesh root CA cluster.local',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign', '-out', join(dir, 'tls.crt')], { stdio: 'ignore' });
  t.match(readFileSync(join(dir, 'tls.key'), 'utf8'), /BEGIN RSA PRIVATE KEY/);
  // discover's flags as the chart renders them, with --ca-dir where this test put the Secret's files.
  const values = flagsOf(render({ values: { identity: { enabled: true } } }).objects);
  const opts = identityOptionsFromFlags({ ...values, 'ca-dir': dir });
  t.ok(opts);
  const { service, mesh } = await setupIdentity(opts!, async () => {
    throw new Error('no cluster in this test: TokenReview is not reached');
  }, createLogger('test', 'silent'));
  t.equal(mesh.trustDomain, 'cluster.local');
  t.equal(mesh.trustBundle.length, 1);
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const want = 'spiffe://cluster.local/ns/default/sa/web';
  const issued = await service.ca.sign(createCsr(privateKey, publicKey, want), { namespace: 'default', serviceAccount: 'web' }, service.ttlMs);
  const leaf = new X509Certificate(issued.certificate);
  const root = new X509Certificate(readFileSync(join(dir, 'tls.crt')));
  t.ok(leaf.checkIssued(root) && leaf.verify(root.publicKey), 'the workload certificate chains to the generated root');
  t.equal(leaf.subjectAltName, `URI:${want}`);
  t.ok(leaf.checkPrivateKey(privateKey));
});
