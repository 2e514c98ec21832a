// What can be checked of the chart without a Helm binary or a cluster: plain YAML parses, values.yaml
// satisfies values.schema.json (and the schema refuses bad values), templates only read values that exist,
// only call functions Helm provides and open as many blocks as they close.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';

const chartDir = join(import.meta.dirname, '..', '..', 'charts', 'shoal');
const templatesDir = join(chartDir, 'templates');
const read = (file: string) => readFileSync(join(chartDir, file), 'utf8');

// Go text/template builtins, Helm's own functions and the sprig functions Helm ships.
const GO_BUILTINS = ['and', 'or', 'not', 'len', 'index', 'slice', 'print', 'printf', 'println', 'html', 'js', 'urlquery', 'call', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'];
const HELM = ['include', 'tpl', 'required', 'lookup', 'toYaml', 'toYamlPretty', 'mustToYaml', 'fromYaml', 'fromYamlArray', 'toJson', 'mustToJson', 'fromJson', 'fromJsonArray', 'toToml', 'fromToml'];
const SPRIG = [
  'default', 'empty', 'coalesce', 'all', 'any', 'compact', 'ternary', 'fail', 'typeOf', 'typeIs', 'kindOf', 'kindIs', 'deepEqual',
  'trim', 'trimAll', 'trimPrefix', 'trimSuffix', 'upper', 'lower', 'title', 'untitle', 'repeat', 'substr', 'nospace', 'trunc', 'abbrev',
  'abbrevboth', 'initials', 'randAlphaNum', 'randAlpha', 'randNumeric', 'randAscii', 'wrap', 'wrapWith', 'contains', 'hasPrefix', 'hasSuffix',
  'quote', 'squote', 'cat', 'indent', 'nindent', 'replace', 'plural', 'snakecase', 'camelcase', 'kebabcase', 'swapcase', 'shuffle',
  'regexMatch', 'regexFindAll', 'regexFind', 'regexReplaceAll', 'regexReplaceAllLiteral', 'regexSplit', 'regexQuoteMeta',
  'split', 'splitList', 'splitn', 'join', 'sortAlpha', 'toString', 'toStrings', 'atoi', 'int', 'int64', 'float64', 'toDecimal',
  'add', 'add1', 'sub', 'div', 'mod', 'mul', 'max', 'min', 'floor', 'ceil', 'round', 'addf', 'add1f', 'subf', 'divf', 'mulf', 'maxf', 'minf',
  'seq', 'until', 'untilStep', 'list', 'first', 'rest', 'last', 'initial', 'append', 'prepend', 'concat', 'reverse', 'uniq', 'without',
  'has', 'mustHas', 'dict', 'get', 'set', 'unset', 'hasKey', 'pluck', 'dig', 'merge', 'mergeOverwrite', 'keys', 'pick', 'omit', 'values', 'deepCopy',
  'b64enc', 'b64dec', 'b32enc', 'b32dec', 'sha1sum', 'sha256sum', 'adler32sum', 'htpasswd', 'derivePassword', 'genPrivateKey',
  'buildCustomCert', 'genCA', 'genCAWithKey', 'genSelfSignedCert', 'genSelfSignedCertWithKey', 'genSignedCert', 'genSignedCertWithKey',
  'encryptAES', 'decryptAES', 'uuidv4', 'semver', 'semverCompare', 'urlParse', 'urlJoin', 'env', 'expandenv', 'base', 'dir', 'clean', 'ext', 'isAbs',
  'now', 'date', 'dateInZone', 'duration', 'durationRound', 'unixEpoch', 'dateModify', 'htmlDate', 'htmlDateInZone', 'toDate', 'ago',
];
const KEYWORDS = ['if', 'else', 'end', 'range', 'with', 'define', 'template', 'block', 'break', 'continue', 'nil', 'true', 'false'];
const KNOWN_FUNCTIONS = new Set([...GO_BUILTINS, ...HELM, ...SPRIG]);
// Built-in objects a template may read besides .Values.
const BUILTIN_OBJECTS = /^\.(Release\.(Name|Namespace|Service|IsUpgrade|IsInstall|Revision)|Chart\.(Name|Version|AppVersion)|Capabilities\.(KubeVersion\.(Version|Major|Minor)|APIVersions\.Has)|Template\.(Name|BasePath)|Files\.[A-Za-z]+)$/;

function templateFiles(): string[] {
  return readdirSync(templatesDir).filter((f) => /\.(yaml|tpl|txt)$/.test(f)).sort();
}

/** The insides of {{ ... }} actions with string literals and comments removed. */
function actions(text: string): string[] {
  return [...text.matchAll(/\{\{-?\s*([\s\S]*?)\s*-?\}\}/g)]
    .map((m) => m[1])
    .filter((a) => !a.startsWith('/*'))
    .map((a) => a.replace(/"(?:[^"\\]|\\.)*"|`[^`]*`/g, '""'));
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
  bad((v) => { v.webhook.failurePolicy = 'Maybe'; }, 'failurePolicy not Ignore/Fail');
  bad((v) => { v.discover.replica = 3; }, 'an unknown key (typo)');
  bad((v) => { v.extra = true; }, 'an unknown top-level key');
  bad((v) => { v.injector.proxy.cpu = 'lots'; }, 'a non-quantity');
  bad((v) => { v.injector.dnsUpstream = 'kube-dns'; }, 'a DNS upstream that is no IP');
  bad((v) => { v.injector.sidecarMode = 'sidecar'; }, 'an unknown sidecar mode');
  bad((v) => { v.webhook.certificate.source = 'vault'; }, 'an unknown certificate source');
  bad((v) => { v.discover.replicas = 0; }, 'zero replicas');
  bad((v) => { v.injector.tokenExpirationSeconds = 60; }, 'a token lifetime Kubernetes refuses (< 600 s)');
  bad((v) => { v.webhook.namespaceSelector.matchExpressions = [{ key: 'a', operator: 'Near' }]; }, 'a bad selector operator');
  bad((v) => { v.identity.trustDomain = 'Cluster.Local'; }, 'a trust domain with upper case (SPIFFE refuses it)');
  bad((v) => { v.identity.mtlsMode = 'sometimes'; }, 'an unknown mTLS mode');
  bad((v) => { v.identity.certTtlSeconds = 30; }, 'a certificate lifetime discover refuses (< 60 s)');
  bad((v) => { v.identity.ca.secretName = 'Shoal_CA'; }, 'a Secret name Kubernetes refuses');
  bad((v) => { v.identity.ca.secret = 'shoal-ca'; }, 'an unknown identity key (typo)');
  bad((v) => { delete v.identity.enabled; }, 'identity without enabled');
  bad((v) => { v.discover.fanoutThreads = 9; }, 'more fan-out threads than discover takes');
  bad((v) => { v.discover.fanoutThreads = 'many'; }, 'fan-out threads neither auto nor a number');

  const good = structuredClone(values);
  good.discover.podDisruptionBudget.minAvailable = '50%';
  good.discover.fanoutThreads = 0;
  good.injector.dnsUpstream = '10.96.0.10';
  good.webhook.certificate.source = 'certManager';
  good.identity = { enabled: true, trustDomain: 'prod.example.com', mtlsMode: 'strict', certTtlSeconds: 3600, ca: { secretName: 'corp-mesh-ca', generate: true, validityDays: 365 } };
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

t.test('templates call only Helm\'s functions and read only built-in objects', async (t) => {
  const defined = new Set<string>();
  const included = new Set<string>();
  for (const file of templateFiles()) {
    const text = readFileSync(join(templatesDir, file), 'utf8');
    for (const a of actions(text)) {
      // Identifiers not preceded by "." or "$" (fields and variables) are functions or keywords.
      for (const m of a.matchAll(/(?<![.$\w])([A-Za-z_][A-Za-z0-9_]*)/g)) {
        const word = m[1];
        if (KEYWORDS.includes(word)) continue;
        t.ok(KNOWN_FUNCTIONS.has(word), `${file}: function ${word} is Helm's`);
      }
      for (const m of a.matchAll(/(?<![\w$)])(\.[A-Z][A-Za-z]*(?:\.[A-Za-z]+)*)/g)) {
        if (m[1].startsWith('.Values')) continue;
        t.match(m[1], BUILTIN_OBJECTS, `${file}: ${m[1]} is a built-in object`);
      }
    }
    for (const m of text.matchAll(/define\s+"([^"]+)"/g)) defined.add(m[1]);
    for (const m of text.matchAll(/include\s+"([^"]+)"/g)) included.add(m[1]);
  }
  for (const name of included) t.ok(defined.has(name), `included template ${name} is defined`);
});

t.test('every template opens as many blocks as it ends', async (t) => {
  for (const file of templateFiles()) {
    const text = readFileSync(join(templatesDir, file), 'utf8');
    let depth = 0;
    let lowest = 0;
    for (const a of actions(text)) {
      if (/^(if|range|with|define|block)\b/.test(a)) depth++;
      else if (/^end\b/.test(a)) depth--;
      lowest = Math.min(lowest, depth);
    }
    t.equal(depth, 0, `${file}: blocks balanced`);
    t.equal(lowest, 0, `${file}: no end before its block`);
  }
});

t.test('the chart carries what the issue asks for', async (t) => {
  const text = (f: string) => readFileSync(join(templatesDir, f), 'utf8');
  const deployment = text('deployment.yaml');
  for (const needle of ['runAsNonRoot: true', 'readOnlyRootFilesystem: true', 'path: /readyz', 'path: /healthz', 'podAntiAffinity', 'prometheus.io/scrape', 'containerPort: 6100', '--webhook']) {
    t.ok(deployment.includes(needle), `deployment has ${needle}`);
  }
  t.match(text('pdb.yaml'), /kind: PodDisruptionBudget/);
  const service = text('service.yaml');
  t.match(service, /port: 6100/);
  t.match(service, /port: \{\{ \.Values\.webhook\.port \}\}/);
  const rbac = parseYaml(text('rbac.yaml').split('---')[0].replace(/\{\{[^}]*\}\}/g, 'x').replace(/^\s*x\s*$/gm, ''));
  const rules = rbac.rules as Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }>;
  const allowed = (group: string, resource: string, verb: string) => rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
  for (const [g, r, v] of [['', 'services', 'watch'], ['discovery.k8s.io', 'endpointslices', 'list'], ['', 'configmaps', 'watch'], ['', 'configmaps', 'update'], ['', 'events', 'create'], ['authentication.k8s.io', 'tokenreviews', 'create']]) {
    t.ok(allowed(g, r, v), `RBAC allows ${v} ${g || 'core'}/${r}`);
  }
  for (const [g, r, v] of [['', 'secrets', 'get'], ['', 'pods', 'list'], ['', 'configmaps', 'delete'], ['', 'services', 'update']]) {
    t.notOk(allowed(g, r, v), `RBAC does not allow ${v} ${g || 'core'}/${r}`);
  }
  t.notOk(rules.some((r) => r.verbs.includes('*') || r.resources.includes('*')), 'no wildcards');
  const webhook = text('webhook.yaml');
  for (const needle of ['kind: MutatingWebhookConfiguration', 'genCA', 'genSignedCert', 'cert-manager.io/inject-ca-from', 'path: /inject', 'failurePolicy: {{ $.Values.webhook.failurePolicy }}', 'operator: NotIn', 'admissionReviewVersions: ["v1"]']) {
    t.ok(webhook.includes(needle), `webhook has ${needle}`);
  }
  t.ok(readFileSync(join(templatesDir, 'NOTES.txt'), 'utf8').includes('shoal.dev/inject=enabled'), 'NOTES say how to enable injection');
});
