// Checks a Gateway API HTTPRoute or GRPCRoute as the API server would (the CRDs' OpenAPI schema, compiled ahead
// of time into crdValidate.generated.ts, then their CEL rules, implemented here one by one), then against what
// shoal can carry out. Errors name the field path (spec.rules[0].matches[1].path.value: ...).
import { routeKey, type GatewayRoute } from '../topology/model.ts';
import { celRules, listRules, validateGRPCRoute, validateHTTPRoute } from './crdValidate.generated.ts';

export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';

/** What checkRoute found. */
export interface RouteCheck {
  key: string;
  route: GatewayRoute;
  /**
   * The object as the API server stores it: the CRD's defaults applied (matches default to PathPrefix "/",
   * weights to 1, backend kind to Service...). Read it only when `errors` is empty.
   */
  object: Record<string, any>;
  /** What the API server would refuse (schema, CEL, metadata): the route changes nothing. */
  errors: string[];
  /**
   * Rules shoal cannot carry out (unsupported filters or fields, regexes ECMAScript cannot compile), by index:
   * they are dropped, and contribute nothing to any snapshot.
   */
  unsupported: Map<number, string[]>;
  /**
   * ExtensionRef filters of the rules that are not dropped, by rule index. shoal defines no extension filters,
   * so their references never resolve, and the spec says such a filter MUST NOT be skipped: the requests it
   * would have processed get an error response (500). `rule`: one on the rule itself (every request the rule
   * matches); `backends`: the backendRefs carrying one (their share of requests). `problems` name the fields.
   */
  extensionRefs: Map<number, ExtensionRefUse>;
}

export interface ExtensionRefUse {
  rule: boolean;
  backends: Set<number>;
  problems: string[];
}

interface SchemaValidator {
  (data: unknown): boolean;
  errors?: Array<{ instancePath: string; keyword: string; message?: string; params: Record<string, unknown> }> | null;
}

const NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** `/spec/rules/0/matches` -> `spec.rules[0].matches` */
export function fieldPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^[0-9]+$/.test(part) ? `[${part}]` : out === '' ? part : `.${part}`;
  }
  return out;
}

function schemaError(v: SchemaValidator): string {
  const e = v.errors?.[0];
  if (!e) return 'does not match the CRD schema';
  const at = fieldPath(e.instancePath) || '(object)';
  if (e.keyword === 'additionalProperties') return `${at}: unknown field ${JSON.stringify(e.params.additionalProperty)}`;
  if (e.keyword === 'required') return `${at === '(object)' ? '' : `${at}.`}${String(e.params.missingProperty)}: Required value`;
  if (e.keyword === 'enum')
    return `${at}: Unsupported value: must be one of ${(e.params.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(', ')}`;
  return `${at}: ${e.message ?? e.keyword}`;
}

// ---- CEL rules (x-kubernetes-validations), by the message the CRD gives each ----

type Obj = Record<string, any>;
const has = (o: Obj | null | undefined, k: string): boolean => o !== undefined && o !== null && o[k] !== undefined && o[k] !== null;
const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

function sameParent(p1: Obj, p2: Obj): boolean {
  return p1.group === p2.group && p1.kind === p2.kind && p1.name === p2.name && str(p1.namespace) === str(p2.namespace);
}

/** Gateway API Duration (GEP-2257): up to four number+unit pairs, h m s ms. Milliseconds. */
export function durationMs(d: string): number {
  let ms = 0;
  for (const m of d.matchAll(/([0-9]+)(ms|h|m|s)/g)) {
    const n = Number(m[1]);
    ms += m[2] === 'h' ? n * 3_600_000 : m[2] === 'm' ? n * 60_000 : m[2] === 's' ? n * 1000 : n;
  }
  return ms;
}

const PATH_CHARS = /^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$/;
const exactOrPrefix = (p: Obj) => p.type === 'Exact' || p.type === 'PathPrefix';
const replacePrefix = (f: Obj, field: string) =>
  has(f, field) && has(f[field], 'path') && f[field].path.type === 'ReplacePrefixMatch' && has(f[field].path, 'replacePrefixMatch');
const onePrefixMatch = (rule: Obj) =>
  Array.isArray(rule.matches) && rule.matches.length === 1 && has(rule.matches[0], 'path') && rule.matches[0].path.type === 'PathPrefix';
const count = <T>(xs: T[] | undefined, f: (x: T) => boolean) => (xs ?? []).filter(f).length;

const CEL: Record<string, (self: any) => boolean> = {
  'sectionName or port must be specified when parentRefs includes 2 or more references to the same parent': (refs: Obj[]) =>
    refs.every((p1) =>
      refs.every(
        (p2) =>
          !sameParent(p1, p2) ||
          ((str(p1.sectionName) === '') === (str(p2.sectionName) === '') && (num(p1.port) === 0) === (num(p2.port) === 0)),
      ),
    ),
  'sectionName or port must be unique when parentRefs includes 2 or more references to the same parent': (refs: Obj[]) =>
    refs.every(
      (p1) => count(refs, (p2) => sameParent(p1, p2) && str(p1.sectionName) === str(p2.sectionName) && num(p1.port) === num(p2.port)) === 1,
    ),
  'While 16 rules and 64 matches per rule are allowed, the total number of matches across all rules in a route must be less than 128': (
    rules: Obj[],
  ) => rules.slice(0, 16).reduce((n, r) => n + (Array.isArray(r.matches) ? r.matches.length : 0), 0) <= 128,
  'Rule name must be unique within the route': (rules: Obj[]) =>
    rules.every((l1) => !has(l1, 'name') || count(rules, (l2) => has(l2, 'name') && l2.name === l1.name) === 1),
  'RequestRedirect filter must not be used together with backendRefs': (r: Obj) =>
    !(Array.isArray(r.backendRefs) && r.backendRefs.length > 0) ||
    !has(r, 'filters') ||
    r.filters.every((f: Obj) => !has(f, 'requestRedirect')),
  'When using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified': (r: Obj) =>
    !(count(r.filters, (f: Obj) => replacePrefix(f, 'requestRedirect')) === 1) || onePrefixMatch(r),
  'When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified': (r: Obj) =>
    !(count(r.filters, (f: Obj) => replacePrefix(f, 'urlRewrite')) === 1) || onePrefixMatch(r),
  'Within backendRefs, when using RequestRedirect filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified': (
    r: Obj,
  ) =>
    !(count(r.backendRefs, (b: Obj) => count(b.filters, (f: Obj) => replacePrefix(f, 'requestRedirect')) === 1) === 1) || onePrefixMatch(r),
  'Within backendRefs, When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified': (
    r: Obj,
  ) => !(count(r.backendRefs, (b: Obj) => count(b.filters, (f: Obj) => replacePrefix(f, 'urlRewrite')) === 1) === 1) || onePrefixMatch(r),
  'Must have port for Service reference': (b: Obj) => !(str(b.group) === '' && b.kind === 'Service') || has(b, 'port'),
  'May specify either httpRouteFilterRequestRedirect or httpRouteFilterRequestRewrite, but not both': (fs: Obj[]) =>
    !(fs.some((f) => f.type === 'RequestRedirect') && fs.some((f) => f.type === 'URLRewrite')),
  "AllowHeaders cannot contain '*' alongside other methods": (xs: string[]) => !(xs.includes('*') && xs.length > 1),
  "AllowMethods cannot contain '*' alongside other methods": (xs: string[]) => !(xs.includes('*') && xs.length > 1),
  "AllowOrigins cannot contain '*' alongside other origins": (xs: string[]) => !(xs.includes('*') && xs.length > 1),
  "grpc must be specified when protocol is set to 'GRPC'": (a: Obj) => a.protocol !== 'GRPC' || has(a, 'grpc'),
  "protocol must be 'GRPC' when grpc is set": (a: Obj) => !has(a, 'grpc') || a.protocol === 'GRPC',
  "http must be specified when protocol is set to 'HTTP'": (a: Obj) => a.protocol !== 'HTTP' || has(a, 'http'),
  "protocol must be 'HTTP' when http is set": (a: Obj) => !has(a, 'http') || a.protocol === 'HTTP',
  'Only one of percent or fraction may be specified in HTTPRequestMirrorFilter': (m: Obj) => !(has(m, 'percent') && has(m, 'fraction')),
  'numerator must be less than or equal to denominator': (f: Obj) => num(f.numerator) <= num(f.denominator),
  "replaceFullPath must be specified when type is set to 'ReplaceFullPath'": (p: Obj) =>
    p.type !== 'ReplaceFullPath' || has(p, 'replaceFullPath'),
  "type must be 'ReplaceFullPath' when replaceFullPath is set": (p: Obj) => !has(p, 'replaceFullPath') || p.type === 'ReplaceFullPath',
  "replacePrefixMatch must be specified when type is set to 'ReplacePrefixMatch'": (p: Obj) =>
    p.type !== 'ReplacePrefixMatch' || has(p, 'replacePrefixMatch'),
  "type must be 'ReplacePrefixMatch' when replacePrefixMatch is set": (p: Obj) =>
    !has(p, 'replacePrefixMatch') || p.type === 'ReplacePrefixMatch',
  "value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']": (p: Obj) =>
    !exactOrPrefix(p) || str(p.value).startsWith('/'),
  "must not contain '//' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).includes('//'),
  "must not contain '/./' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).includes('/./'),
  "must not contain '/../' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).includes('/../'),
  "must not contain '%2f' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).includes('%2f'),
  "must not contain '%2F' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).includes('%2F'),
  "must not contain '#' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).includes('#'),
  "must not end with '/..' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).endsWith('/..'),
  "must not end with '/.' when type one of ['Exact', 'PathPrefix']": (p: Obj) => !exactOrPrefix(p) || !str(p.value).endsWith('/.'),
  "type must be one of ['Exact', 'PathPrefix', 'RegularExpression']": (p: Obj) =>
    ['Exact', 'PathPrefix', 'RegularExpression'].includes(p.type),
  "must only contain valid characters (matching ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$) for types ['Exact', 'PathPrefix']":
    (p: Obj) => !exactOrPrefix(p) || PATH_CHARS.test(str(p.value)),
  'AbsoluteTimeout must be specified when cookie lifetimeType is Permanent': (s: Obj) =>
    !has(s, 'cookieConfig') ||
    !has(s.cookieConfig, 'lifetimeType') ||
    s.cookieConfig.lifetimeType !== 'Permanent' ||
    has(s, 'absoluteTimeout'),
  'cookieConfig can only be set with type Cookie': (s: Obj) => !has(s, 'cookieConfig') || s.type === 'Cookie',
  'backendRequest timeout cannot be longer than request timeout': (t: Obj) =>
    !(has(t, 'request') && has(t, 'backendRequest') && durationMs(t.request) !== 0 && durationMs(t.backendRequest) > durationMs(t.request)),
  "One or both of 'service' or 'method' must be specified": (m: Obj) => !has(m, 'type') || has(m, 'service') || has(m, 'method'),
  'service must only contain valid characters (matching ^(?i)\\.?[a-z_][a-z_0-9]*(\\.[a-z_][a-z_0-9]*)*$)': (m: Obj) =>
    !((!has(m, 'type') || m.type === 'Exact') && has(m, 'service')) || /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i.test(m.service),
  'method must only contain valid characters (matching ^[A-Za-z_][A-Za-z_0-9]*$)': (m: Obj) =>
    !((!has(m, 'type') || m.type === 'Exact') && has(m, 'method')) || /^[A-Za-z_][A-Za-z_0-9]*$/.test(m.method),
};

/** The implementation of a CEL rule, by its message (and the filter-union rules, by their pattern). */
export function celCheck(message: string): ((self: any) => boolean) | undefined {
  const known = CEL[message];
  if (known) return known;
  let m = /^(\w+) filter cannot be repeated$/.exec(message);
  if (m) {
    const type = m[1];
    return (fs: Obj[]) => count(fs, (f) => f.type === type) <= 1;
  }
  m = /^filter\.(\w+) must be nil if the filter\.type is not (\w+)$/.exec(message);
  if (m) {
    const [, field, type] = m;
    return (f: Obj) => !(has(f, field) && f.type !== type);
  }
  m = /^filter\.(\w+) must be specified for (\w+) filter\.type$/.exec(message);
  if (m) {
    const [, field, type] = m;
    return (f: Obj) => !(!has(f, field) && f.type === type);
  }
  return undefined;
}

/** Each value at `path` (spec.rules[].filters[]) in `obj`, with its concrete field path. */
function* at(obj: unknown, path: string): Generator<[unknown, string]> {
  const parts = path === '' ? [] : path.split('.');
  function* walk(v: unknown, i: number, where: string): Generator<[unknown, string]> {
    if (v === undefined || v === null) return;
    if (i === parts.length) {
      yield [v, where];
      return;
    }
    let part = parts[i];
    const lists = (part.match(/\[\]/g) ?? []).length;
    part = part.replace(/\[\]/g, '');
    const next = (v as Obj)[part];
    const here = where === '' ? part : `${where}.${part}`;
    function* spread(x: unknown, depth: number, w: string): Generator<[unknown, string]> {
      if (depth === 0) {
        yield* walk(x, i + 1, w);
        return;
      }
      if (!Array.isArray(x)) return;
      for (const [j, y] of x.entries()) yield* spread(y, depth - 1, `${w}[${j}]`);
    }
    yield* spread(next, lists, here);
  }
  yield* walk(obj, 0, '');
}

/** The CRDs' CEL rules that fail on `obj` (already schema-valid and defaulted), as field path: message. */
export function celErrors(kind: GatewayRoute['kind'], obj: unknown): string[] {
  const out: string[] = [];
  for (const r of celRules as Array<{ kind: string; path: string; rule: string; message: string }>) {
    if (r.kind !== kind) continue;
    const check = celCheck(r.message);
    // A rule this file does not know (a newer CRD): test/discover/gateway/validate.test.ts fails on it.
    if (!check) continue;
    for (const [value, where] of at(obj, r.path)) {
      if (!check(value)) out.push(`${where}: Invalid value: ${r.message}`);
    }
  }
  return out;
}

/**
 * The lists the API server keeps unique (x-kubernetes-list-type): a `map` list may not hold two items with the
 * same keys (two header matches of one name), a `set` list the same value twice.
 */
export function listErrors(kind: GatewayRoute['kind'], obj: unknown): string[] {
  const out: string[] = [];
  for (const r of listRules as Array<{ kind: string; path: string; type: 'map' | 'set'; keys?: string[] }>) {
    if (r.kind !== kind) continue;
    for (const [value, where] of at(obj, r.path)) {
      if (!Array.isArray(value)) continue;
      const seen = new Set<string>();
      for (const [i, item] of value.entries()) {
        const id = r.type === 'map' ? JSON.stringify((r.keys ?? []).map((k) => (item as Obj | null)?.[k] ?? null)) : JSON.stringify(item);
        if (seen.has(id)) {
          const shown =
            r.type === 'map' ? JSON.stringify(Object.fromEntries((r.keys ?? []).map((k) => [k, (item as Obj | null)?.[k]]))) : id;
          out.push(`${where}[${i}]: Duplicate value: ${shown}`);
        }
        seen.add(id);
      }
    }
  }
  return out;
}

// ---- shoal's own checks: what the mesh cannot carry out makes the rule invalid ----

const SUPPORTED_FILTERS: Record<GatewayRoute['kind'], string[]> = {
  HTTPRoute: ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror', 'RequestRedirect', 'URLRewrite'],
  GRPCRoute: ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'],
};
// On a backendRef: the snapshot carries header modifiers and mirrors there, not redirects or rewrites.
const SUPPORTED_BACKEND_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'];

function regexProblem(re: string, where: string): string | null {
  try {
    new RegExp(re);
    return null;
  } catch (err) {
    return `${where}: regular expression ${JSON.stringify(re)} does not compile as ECMAScript RegExp (${(err as Error).message})`;
  }
}

/** Which of a rule's ExtensionRef filters (rule or backendRef level), with the problems naming them. */
function ruleExtensionRefs(rule: Obj, i: number): ExtensionRefUse | null {
  const w = `spec.rules[${i}]`;
  const use: ExtensionRefUse = { rule: false, backends: new Set(), problems: [] };
  const named = (f: Obj) => {
    const r = (f.extensionRef ?? {}) as Obj;
    return `${str(r.group) === '' ? 'core' : r.group}/${r.kind} ${r.name}`;
  };
  for (const [j, f] of ((rule.filters ?? []) as Obj[]).entries()) {
    if (f.type !== 'ExtensionRef') continue;
    use.rule = true;
    use.problems.push(`${w}.filters[${j}].type: ExtensionRef filters are not supported by shoal (${named(f)} does not resolve)`);
  }
  for (const [j, b] of ((rule.backendRefs ?? []) as Obj[]).entries()) {
    for (const [k, f] of ((b.filters ?? []) as Obj[]).entries()) {
      if (f.type !== 'ExtensionRef') continue;
      use.backends.add(j);
      use.problems.push(
        `${w}.backendRefs[${j}].filters[${k}].type: ExtensionRef filters are not supported by shoal (${named(f)} does not resolve)`,
      );
    }
  }
  return use.problems.length > 0 ? use : null;
}

function ruleProblems(kind: GatewayRoute['kind'], rule: Obj, i: number): string[] {
  const out: string[] = [];
  const w = `spec.rules[${i}]`;
  // ExtensionRef filters are not among these: ruleExtensionRefs() has them.
  for (const [j, f] of ((rule.filters ?? []) as Obj[]).entries()) {
    if (f.type !== 'ExtensionRef' && !SUPPORTED_FILTERS[kind].includes(f.type))
      out.push(`${w}.filters[${j}].type: ${f.type} filters are not supported by shoal`);
  }
  for (const [j, b] of ((rule.backendRefs ?? []) as Obj[]).entries()) {
    for (const [k, f] of ((b.filters ?? []) as Obj[]).entries()) {
      if (f.type !== 'ExtensionRef' && !SUPPORTED_BACKEND_FILTERS.includes(f.type))
        out.push(`${w}.backendRefs[${j}].filters[${k}].type: ${f.type} filters on a backendRef are not supported by shoal`);
    }
  }
  if (has(rule, 'sessionPersistence')) out.push(`${w}.sessionPersistence: session persistence is not supported by shoal`);
  for (const [j, m] of ((rule.matches ?? []) as Obj[]).entries()) {
    const mw = `${w}.matches[${j}]`;
    if (m.path?.type === 'RegularExpression') {
      const p = regexProblem(m.path.value, `${mw}.path.value`);
      if (p) out.push(p);
    }
    for (const [k, h] of ((m.headers ?? []) as Obj[]).entries()) {
      if (h.type === 'RegularExpression') {
        const p = regexProblem(h.value, `${mw}.headers[${k}].value`);
        if (p) out.push(p);
      }
    }
    for (const [k, q] of ((m.queryParams ?? []) as Obj[]).entries()) {
      if (q.type === 'RegularExpression') {
        const p = regexProblem(q.value, `${mw}.queryParams[${k}].value`);
        if (p) out.push(p);
      }
    }
    if (kind === 'GRPCRoute' && m.method?.type === 'RegularExpression') {
      for (const f of ['service', 'method']) {
        if (has(m.method, f)) {
          const p = regexProblem(m.method[f], `${mw}.method.${f}`);
          if (p) out.push(p);
        }
      }
    }
  }
  return out;
}

const checked = new WeakMap<GatewayRoute, RouteCheck>();

/**
 * Checks `route` (memoised per object: routes in a topology are not changed in place). Never throws:
 * whatever is wrong is in `errors` (the whole route), `unsupported` (single rules, dropped) or
 * `extensionRefs` (filters whose requests get a 500).
 */
export function checkRoute(route: GatewayRoute): RouteCheck {
  const known = checked.get(route);
  if (known) return known;
  // What a file or the API server held: any field may be missing, the route itself null.
  const given = route as Partial<GatewayRoute> | null | undefined;
  const md = (given?.metadata ?? {}) as GatewayRoute['metadata'];
  const kind = given?.kind as GatewayRoute['kind']; // anything else is reported just below
  const key = routeKey(kind, md.namespace, md.name);
  const errors: string[] = [];
  const unsupported = new Map<number, string[]>();
  const extensionRefs = new Map<number, ExtensionRefUse>();
  // The CRD schema defaults in place: judge a copy, keep the route as given. A JSON copy, as the API server
  // receives it: no object shared between two places (YAML aliases), which defaulting one would change in both.
  const object = JSON.parse(
    JSON.stringify({ apiVersion: given?.apiVersion, kind, metadata: given?.metadata ?? {}, spec: given?.spec ?? null }),
  ) as Obj;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the kind is what the route held, not yet checked: this is its check
  if (kind !== 'HTTPRoute' && kind !== 'GRPCRoute')
    errors.push(`kind: Unsupported value ${JSON.stringify(kind)}: expected HTTPRoute or GRPCRoute`);
  else if (route.apiVersion !== GATEWAY_API_VERSION)
    errors.push(`apiVersion: Unsupported value ${JSON.stringify(route.apiVersion)}: expected ${GATEWAY_API_VERSION}`);
  if (typeof md.name !== 'string' || md.name.length > 253 || !NAME.test(md.name))
    errors.push(`metadata.name: Invalid value ${JSON.stringify(md.name)}: expected a lower-case DNS subdomain`);
  if (typeof md.namespace !== 'string' || md.namespace.length > 63 || !LABEL.test(md.namespace))
    errors.push(`metadata.namespace: Invalid value ${JSON.stringify(md.namespace)}: expected a lower-case DNS label`);
  if (errors.length === 0) {
    if (object.spec === undefined || object.spec === null) errors.push('spec: Required value');
    else {
      const validate = (kind === 'HTTPRoute' ? validateHTTPRoute : validateGRPCRoute) as SchemaValidator;
      if (!validate(object)) errors.push(schemaError(validate));
      else errors.push(...listErrors(kind, object), ...celErrors(kind, object));
    }
  }
  if (errors.length === 0) {
    for (const [i, rule] of ((object.spec.rules ?? []) as Obj[]).entries()) {
      const p = ruleProblems(kind, rule, i);
      if (p.length > 0) unsupported.set(i, p);
      else {
        const e = ruleExtensionRefs(rule, i);
        if (e) extensionRefs.set(i, e);
      }
    }
  }
  const result: RouteCheck = { key, route, object, errors, unsupported, extensionRefs };
  checked.set(route, result);
  return result;
}

/**
 * Every problem of `route`, refused, unsupported and ExtensionRef alike (for a static file, where any refuses
 * the load). A rule both unsupported and with an ExtensionRef names only its unsupported fields.
 */
export function routeProblems(route: GatewayRoute): string[] {
  const c = checkRoute(route);
  return [...c.errors, ...[...c.unsupported.values()].flat(), ...[...c.extensionRefs.values()].flatMap((e) => e.problems)];
}

/**
 * Whether the route is in force for the callers it attaches to: it is valid for the API server and has a
 * rule shoal carries out (one not dropped), or no rule at all. A route that is not leaves the callers' routing
 * as it would be without it.
 */
export function inForce(c: RouteCheck): boolean {
  if (c.errors.length > 0) return false;
  const rules = Array.isArray(c.object.spec?.rules) ? (c.object.spec.rules as unknown[]).length : 0;
  return rules === 0 || c.unsupported.size < rules;
}
