// The chart's files as files: plain YAML parses, values.yaml satisfies values.schema.json (and the schema
// refuses bad values), and templates only read values that exist (Helm renders a missing value as empty
// without a word). Rendering, linting and installing with real Helm: helm.test.ts.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';

const chartDir = join(import.meta.dirname, '..', '..', 'charts', 'shoal');
const templatesDir = join(chartDir, 'templates');
const read = (file: string) => readFileSync(join(chartDir, file), 'utf8');

function templateFiles(): string[] {
  return readdirSync(templatesDir)
    .filter((f) => /\.(yaml|tpl|txt)$/.test(f))
    .sort();
}

t.test('Chart.yaml and values.yaml parse', async (t) => {
  const chart = parseYaml(read('Chart.yaml'));
  t.equal(chart.apiVersion, 'v2');
  t.equal(chart.name, 'shoal');
  t.match(chart.version, /^\d+\.\d+\.\d+$/);
  t.type(chart.appVersion, 'string');
  const values = parseYaml(read('values.yaml'));
  t.equal(values.discover.replicas, 2, 'two discover replicas by default');
  t.equal(values.webhook.port, 6443);
  t.same(values.webhook.namespaceSelector, { matchLabels: { 'shoal.dev/inject': 'enabled' } });
});

t.test('values.yaml validates against values.schema.json; bad values do not', async (t) => {
  const schema = JSON.parse(read('values.schema.json'));
  const ajv = new Ajv({ allErrors: true, strict: true });
  const validate = ajv.compile(schema);
  const values = parseYaml(read('values.yaml'));
  t.ok(validate(values), `values.yaml is valid: ${ajv.errorsText(validate.errors)}`);

  const bad = (mutate: (v: any) => void, why: string) => {
    const v = structuredClone(values);
    mutate(v);
    t.notOk(validate(v), `refused: ${why}`);
  };
  bad((v) => {
    v.webhook.failurePolicy = 'Maybe';
  }, 'failurePolicy not Ignore/Fail');
  bad((v) => {
    v.discover.replica = 3;
  }, 'an unknown key (typo)');
  bad((v) => {
    v.extra = true;
  }, 'an unknown top-level key');
  bad((v) => {
    v.injector.proxy.cpu = 'lots';
  }, 'a non-quantity');
  bad((v) => {
    v.injector.dnsUpstream = 'kube-dns';
  }, 'a DNS upstream that is no IP');
  bad((v) => {
    v.injector.sidecarMode = 'sidecar';
  }, 'an unknown sidecar mode');
  bad((v) => {
    v.webhook.certificate.source = 'vault';
  }, 'an unknown certificate source');
  bad((v) => {
    v.discover.replicas = 0;
  }, 'zero replicas');
  bad((v) => {
    v.injector.tokenExpirationSeconds = 60;
  }, 'a token lifetime Kubernetes refuses (< 600 s)');
  bad((v) => {
    v.webhook.namespaceSelector.matchExpressions = [{ key: 'a', operator: 'Near' }];
  }, 'a bad selector operator');
  bad((v) => {
    v.identity.trustDomain = 'Cluster.Local';
  }, 'a trust domain with upper case (SPIFFE refuses it)');
  bad((v) => {
    v.identity.mtlsMode = 'sometimes';
  }, 'an unknown mTLS mode');
  bad((v) => {
    v.identity.certTtlSeconds = 30;
  }, 'a certificate lifetime discover refuses (< 60 s)');
  bad((v) => {
    v.identity.ca.secretName = 'Shoal_CA';
  }, 'a Secret name Kubernetes refuses');
  bad((v) => {
    v.identity.ca.secret = 'shoal-ca';
  }, 'an unknown identity key (typo)');
  bad((v) => {
    delete v.identity.enabled;
  }, 'identity without enabled');
  bad((v) => {
    v.discover.fanoutThreads = 9;
  }, 'more fan-out threads than discover takes');
  bad((v) => {
    v.discover.fanoutThreads = 'many';
  }, 'fan-out threads neither auto nor a number');

  const good = structuredClone(values);
  good.discover.podDisruptionBudget.minAvailable = '50%';
  good.discover.fanoutThreads = 0;
  good.injector.dnsUpstream = '10.96.0.10';
  good.webhook.certificate.source = 'certManager';
  good.identity = {
    enabled: true,
    trustDomain: 'prod.example.com',
    mtlsMode: 'strict',
    certTtlSeconds: 3600,
    ca: { secretName: 'corp-mesh-ca', generate: true, validityDays: 365 },
  };
  t.ok(validate(good), 'percentages, an IP, cert-manager and identity settings are accepted');
  t.equal(values.identity.enabled, false, 'identity is off by default: existing installs do not change');
});

t.test('templates read only values that exist', async (t) => {
  const values = parseYaml(read('values.yaml'));
  const files = templateFiles();
  t.ok(files.length >= 8, 'templates present');
  let seen = 0;
  for (const file of files) {
    const text = readFileSync(join(templatesDir, file), 'utf8');
    for (const m of text.matchAll(/\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)) {
      seen++;
      const path = m[1].slice(1).split('.');
      let node: any = values;
      for (const key of path) {
        t.ok(node !== null && typeof node === 'object' && key in node, `${file}: .Values.${path.join('.')} exists in values.yaml`);
        if (node === null || typeof node !== 'object' || !(key in node)) break;
        node = node[key];
      }
    }
  }
  t.ok(seen > 30, `${seen} value references checked`);
});
