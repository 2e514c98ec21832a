// The chart rendered by a small Go-template interpreter (test/charts/goTemplate.ts; no Helm binary here):
// every document parses as YAML, validates against the Kubernetes schemas (kubernetes-models), and the
// discover container's arguments are flags the shoal CLI knows.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
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
