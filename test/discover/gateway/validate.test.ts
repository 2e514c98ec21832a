// Routes are checked as the API server would check them (the pinned CRDs' schemas, compiled ahead of time,
// and their CEL rules), then against what shoal can carry out; every error names the field.
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { load as parseYaml, loadAll } from 'js-yaml';
import { celRules, listRules } from '../../../discover/gateway/crdValidate.generated.ts';
import { celCheck, checkRoute, durationMs, fieldPath, inForce, routeProblems } from '../../../discover/gateway/validate.ts';
import type { GatewayRoute } from '../../../discover/topology/model.ts';
import { BAD, GOOD, UNSUPPORTED, backend, parent } from './cases.ts';

/** A document of the suite's YAML files is of any kind, or null when empty. */
type SuiteDoc = { kind?: unknown; apiVersion?: unknown } | null;
const isRoute = (doc: SuiteDoc): doc is GatewayRoute => doc !== null && (doc.kind === 'HTTPRoute' || doc.kind === 'GRPCRoute');

/** The pinned module's folders, or why they cannot be had (no Go, no module cache): the tests that need them skip. */
async function pinned(): Promise<{ crds: string[]; conformance: string } | string> {
  try {
    const { crdFiles, moduleDir, GATEWAY_CONFORMANCE } = await import('../../../scripts/gateway.ts');
    return { crds: crdFiles('experimental'), conformance: moduleDir(GATEWAY_CONFORMANCE) };
  } catch (err) {
    return (err as Error).message;
  }
}

const module = await pinned();
const noModule = typeof module === 'string' ? `the pinned Gateway API module is not available: ${module}` : false;

let n = 0;
function route(spec: Record<string, unknown>, kind: GatewayRoute['kind'] = 'HTTPRoute', extra: Partial<GatewayRoute> = {}): GatewayRoute {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name: `r${n++}`, namespace: 'default' }, spec, ...extra };
}

t.test('the checked-in validator is what the generator writes from the pinned CRDs now', { skip: noModule }, async (t) => {
  const p = module as Exclude<typeof module, string>;
  const { generateGatewayValidator, generatedPath } = await import('../../../scripts/generateGatewayValidator.ts');
  t.ok(
    readFileSync(generatedPath, 'utf8') === generateGatewayValidator(p.crds),
    'discover/gateway/crdValidate.generated.ts is up to date (if not: npx node scripts/generateGatewayValidator.ts, then commit it)',
  );
});

t.test('every CEL rule of the CRDs has an implementation; the unique lists are known', async (t) => {
  t.ok((listRules as unknown[]).length > 20, `${(listRules as unknown[]).length} lists kept unique`);
  const rules = celRules as Array<{ kind: string; path: string; message: string }>;
  t.ok(rules.length > 50, `${rules.length} rules`);
  const missing = rules.filter((r) => celCheck(r.message) === undefined).map((r) => `${r.kind} ${r.path}: ${r.message}`);
  t.same(missing, [], 'no CEL rule without an implementation in validate.ts');
});

t.test('valid routes pass, and the CRD defaults are applied as the API server applies them', async (t) => {
  const c = checkRoute(route({ parentRefs: [parent], rules: [{ backendRefs: [backend] }] }));
  t.same(c.errors, []);
  t.same(c.unsupported.size, 0);
  t.same(c.object.spec.rules[0].matches, [{ path: { type: 'PathPrefix', value: '/' } }], 'a rule without matches matches PathPrefix /');
  t.same(
    c.object.spec.rules[0].backendRefs[0],
    { name: 'api-v1', port: 8080, group: '', kind: 'Service', weight: 1 },
    'backendRef defaults',
  );
  const g = checkRoute(
    route(
      {
        parentRefs: [parent],
        rules: [
          { matches: [{ method: { service: 'shop.Cart', method: 'Add' }, headers: [{ name: 'x', value: 'y' }] }], backendRefs: [backend] },
        ],
      },
      'GRPCRoute',
    ),
  );
  t.same(g.errors, []);
  t.equal(g.object.spec.rules[0].matches[0].method.type, 'Exact');
  t.equal(g.object.spec.rules[0].matches[0].headers[0].type, 'Exact');
  const full = checkRoute(
    route({
      parentRefs: [
        { ...parent, port: 8080 },
        { ...parent, port: 9090 },
      ],
      rules: [
        {
          name: 'main',
          matches: [
            {
              path: { type: 'Exact', value: '/a' },
              method: 'GET',
              headers: [{ name: 'x', type: 'RegularExpression', value: '^v[0-9]+$' }],
              queryParams: [{ name: 'q', value: '1' }],
            },
          ],
          filters: [
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: { set: [{ name: 'a', value: 'b' }], add: [{ name: 'c', value: 'd' }], remove: ['e'] },
            },
            { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'a', value: 'b' }] } },
            {
              type: 'RequestMirror',
              requestMirror: { backendRef: { name: 'shadow', port: 80 }, fraction: { numerator: 1, denominator: 8 } },
            },
            { type: 'URLRewrite', urlRewrite: { hostname: 'x.example', path: { type: 'ReplaceFullPath', replaceFullPath: '/b' } } },
          ],
          backendRefs: [
            { ...backend, weight: 90 },
            {
              name: 'api-v2',
              port: 8080,
              weight: 10,
              filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'v', value: '2' }] } }],
            },
          ],
          timeouts: { request: '10s', backendRequest: '2s' },
          retry: { codes: [503], attempts: 2, backoff: '100ms' },
        },
      ],
    }),
  );
  t.same(full.errors, [], 'every field shoal supports, together');
  t.same(full.unsupported.size, 0);
});

t.test('the mesh conformance manifests of the pinned release are valid', { skip: noModule }, async (t) => {
  const p = module as Exclude<typeof module, string>;
  const dir = join(p.conformance, 'tests', 'mesh');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => join(dir, f));
  let count = 0;
  for (const file of files) {
    for (const doc of loadAll(readFileSync(file, 'utf8')) as SuiteDoc[]) {
      if (!isRoute(doc)) continue;
      count++;
      t.same(routeProblems(doc), [], `${file.split('/').pop()}: ${doc.kind} ${doc.metadata.namespace}/${doc.metadata.name}`);
    }
  }
  t.ok(count >= 15, `${count} routes checked`);
});

t.test('every route the pinned conformance suite applies to an API server passes its checks', { skip: noModule }, async (t) => {
  // Gateway-bound routes too: what a real API server accepts, shoal's API-server checks must accept.
  const p = module as Exclude<typeof module, string>;
  const dir = join(p.conformance, 'tests');
  const wrong: string[] = [];
  let count = 0;
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.yaml'))) {
    for (const doc of loadAll(readFileSync(join(dir, f), 'utf8')) as SuiteDoc[]) {
      if (!isRoute(doc) || doc.apiVersion !== 'gateway.networking.k8s.io/v1') continue;
      count++;
      const c = checkRoute(doc);
      if (c.errors.length > 0) wrong.push(`${f}: ${doc.kind} ${doc.metadata.namespace}/${doc.metadata.name}: ${c.errors.join('; ')}`);
    }
  }
  t.ok(count >= 100, `${count} routes checked`);
  t.same(wrong, [], 'none refused');
});

t.test('the good cases pass with no problem at all', async (t) => {
  for (const [what, spec, kind] of GOOD) t.same(routeProblems(route(spec, kind)), [], what);
});

t.test('invalid routes: the first error names the field', async (t) => {
  for (const [what, spec, kind, expected] of BAD) {
    const c = checkRoute(route(spec, kind));
    t.ok(
      c.errors.length > 0 && c.errors[0].startsWith(expected),
      `${what}: ${JSON.stringify(c.errors[0])} starts with ${JSON.stringify(expected)}`,
    );
  }
});

t.test('metadata, apiVersion and kind', async (t) => {
  t.match(
    checkRoute(route({}, 'HTTPRoute', { apiVersion: 'gateway.networking.k8s.io/v1beta1' })).errors[0],
    /^apiVersion: Unsupported value/,
  );
  t.match(checkRoute({ ...route({}), kind: 'TCPRoute' as GatewayRoute['kind'] }).errors[0], /^kind: Unsupported value "TCPRoute"/);
  t.match(
    checkRoute(route({}, 'HTTPRoute', { metadata: { name: 'Bad_Name', namespace: 'default' } })).errors[0],
    /^metadata\.name: Invalid value "Bad_Name"/,
  );
  t.match(
    checkRoute(route({}, 'HTTPRoute', { metadata: { name: 'ok', namespace: 'a.b' } })).errors[0],
    /^metadata\.namespace: Invalid value/,
  );
  t.same(checkRoute(route({})).errors, [], 'an empty spec is valid (it attaches nowhere)');
});

t.test('what shoal cannot carry out makes the rule unsupported (dropped), naming the field; an ExtensionRef is not dropped', async (t) => {
  const cases = UNSUPPORTED;
  for (const [what, spec, kind, expected] of cases) {
    const c = checkRoute(route(spec, kind));
    t.same(c.errors, [], `${what}: valid for the API server`);
    // ExtensionRef filters keep their rule in force (its requests get a 500); the rest drop it.
    const extension = what.includes('ExtensionRef');
    const problems = extension ? [...c.extensionRefs.values()].flatMap((e) => e.problems) : [...c.unsupported.values()].flat();
    t.ok(problems.length === 1 && problems[0].startsWith(expected), `${what}: ${JSON.stringify(problems)}`);
    t.same([...(extension ? c.extensionRefs : c.unsupported).keys()], [0], `${what}: rule 0 is the one`);
    t.same([...(extension ? c.unsupported : c.extensionRefs).keys()], [], `${what}: ${extension ? 'not dropped' : 'no ExtensionRef'}`);
    t.same(routeProblems(route(spec, kind)), problems, `${what}: a static file refuses it`);
    t.equal(inForce(c), extension, `${what}: the route (one rule) is ${extension ? '' : 'not '}in force`);
  }
  const two = checkRoute(route({ rules: [{ backendRefs: [backend] }, { filters: [{ type: 'CORS', cors: {} }], backendRefs: [backend] }] }));
  t.same([...two.unsupported.keys()], [1], 'only the rule with the unsupported filter');
  t.equal(inForce(two), true, 'a route with a good rule is in force');
  const both = checkRoute(
    route({
      rules: [
        {
          filters: [
            { type: 'CORS', cors: {} },
            { type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'F', name: 'f' } },
          ],
          backendRefs: [backend],
        },
      ],
    }),
  );
  t.same(
    [[...both.unsupported.keys()], [...both.extensionRefs.keys()]],
    [[0], []],
    'a rule both unsupported and with an ExtensionRef is dropped',
  );
  const onBackend = checkRoute(
    route({
      rules: [
        {
          backendRefs: [
            backend,
            { ...backend, filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x.io', kind: 'F', name: 'f' } }] },
          ],
        },
      ],
    }),
  );
  t.same(
    [onBackend.extensionRefs.get(0)?.rule, [...(onBackend.extensionRefs.get(0)?.backends ?? [])]],
    [false, [1]],
    'an ExtensionRef on a backendRef: that backend',
  );
  t.equal(inForce(checkRoute(route({ rules: [] }, 'GRPCRoute'))), true, 'no rule at all (a GRPCRoute may have none): nothing dropped');
  t.equal(
    inForce(checkRoute(route({ rules: [{ matches: [{ path: { type: 'PathPrefix', value: 'x' } }] }] }))),
    false,
    'an invalid route is not in force',
  );
});

t.test('helpers', async (t) => {
  t.equal(fieldPath('/spec/rules/0/matches/12/path'), 'spec.rules[0].matches[12].path');
  t.equal(durationMs('1h2m3s4ms'), 3_723_004);
  t.equal(durationMs('0s'), 0);
  t.equal(durationMs('500ms'), 500);
  const r = route({ parentRefs: [parent] });
  t.equal(checkRoute(r), checkRoute(r), 'memoised per object');
  t.same(r.spec, { parentRefs: [parent] }, 'the route itself is not defaulted in place');
  t.same(parseYaml('a: 1'), { a: 1 });
});
