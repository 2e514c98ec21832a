// Writes discover/gateway/crdValidate.generated.ts: the OpenAPI schemas of the pinned Gateway API release's
// HTTPRoute and GRPCRoute CRDs (experimental channel, version v1) compiled by ajv ahead of time (standalone
// code), and the CEL rules (x-kubernetes-validations) those schemas carry, as data, so discover checks routes
// as the API server would without Go, the module cache or ajv's compiler at run time.
// Run after changing the pinned release (gateway/go.mod); test/discover/gateway/validate.test.ts fails while
// the checked-in module is stale.
//   node scripts/generateGatewayValidator.ts [--check]
//
// What is done to the schemas before compiling, so ajv judges an object as the API server does:
// - `default`s are applied while validating (ajv useDefaults), as the API server defaults before it validates;
// - objects with `properties` refuse fields they do not name (kubectl's default strict field validation);
// - `format: int32|int64` become the bounds of those integers; descriptions and `status` are left out;
// - x-kubernetes-validations are taken out into `celRules` (path, rule, message), and x-kubernetes-list-type map
//   and set into `listRules` (path, type, keys), for discover/gateway/validate.ts.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import standalone from 'ajv/dist/standalone/index.js';
import { load as parseYaml } from 'js-yaml';

export const generatedPath = join(import.meta.dirname, '..', 'discover', 'gateway', 'crdValidate.generated.ts');
export const GATEWAY_AJV_OPTIONS = { strict: false, useDefaults: true, allErrors: false } as const;

export interface CelRule {
  kind: 'HTTPRoute' | 'GRPCRoute';
  /** Where the rule sits: dotted fields from the object's root, `[]` for each list item, e.g. spec.rules[].filters[]. */
  path: string;
  rule: string;
  message: string;
}

/** A list the API server keeps unique: `set` by value, `map` by the values of `keys`. */
export interface ListRule {
  kind: CelRule['kind'];
  path: string;
  type: 'map' | 'set';
  keys?: string[];
}

type Schema = Record<string, unknown>;

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The schema as ajv should judge it (see the top of this file); CEL rules go to `cel`. */
export function prepareSchema(schema: Schema, kind: CelRule['kind'], cel: CelRule[], lists: ListRule[], path = ''): Schema {
  const out: Schema = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'description') continue;
    if (k === 'x-kubernetes-validations') {
      for (const r of v as Array<{ rule: string; message?: string; messageExpression?: string }>) {
        cel.push({ kind, path, rule: r.rule, message: r.message ?? r.messageExpression ?? r.rule });
      }
      continue;
    }
    if (k === 'x-kubernetes-list-type' && (v === 'map' || v === 'set')) {
      lists.push({ kind, path, type: v, ...(v === 'map' ? { keys: schema['x-kubernetes-list-map-keys'] as string[] } : {}) });
      continue;
    }
    if (k.startsWith('x-kubernetes-')) continue;
    if (k === 'format') {
      if (v === 'int32')
        Object.assign(out, {
          minimum: Math.max(-2147483648, (schema.minimum as number | undefined) ?? -Infinity),
          maximum: Math.min(2147483647, (schema.maximum as number | undefined) ?? Infinity),
        });
      else if (v === 'int64')
        Object.assign(out, {
          minimum: Math.max(Number.MIN_SAFE_INTEGER, (schema.minimum as number | undefined) ?? -Infinity),
          maximum: Math.min(Number.MAX_SAFE_INTEGER, (schema.maximum as number | undefined) ?? Infinity),
        });
      continue;
    }
    if (k === 'minimum' || k === 'maximum') {
      if (!('format' in schema)) out[k] = v;
      continue;
    }
    if (k === 'properties' && isObject(v)) {
      const props: Schema = {};
      for (const [name, sub] of Object.entries(v)) {
        if (path === '' && name === 'status') continue;
        props[name] = prepareSchema(sub as Schema, kind, cel, lists, path === '' ? name : `${path}.${name}`);
      }
      out.properties = props;
      if (!('additionalProperties' in schema)) out.additionalProperties = false;
      continue;
    }
    if (k === 'items' && isObject(v)) {
      out.items = prepareSchema(v, kind, cel, lists, `${path}[]`);
      continue;
    }
    out[k] = v;
  }
  return out;
}

export interface CrdSchemas {
  bundleVersion: string;
  /** sha256 of the CRD files' text this was generated from. */
  crdHash: string;
  schemas: Record<CelRule['kind'], Schema>;
  cel: CelRule[];
  lists: ListRule[];
}

/** The v1 schemas of the HTTPRoute and GRPCRoute CRDs in `files` (the experimental channel's CRD files). */
export function readCrdSchemas(files: string[]): CrdSchemas {
  const hash = createHash('sha256');
  const schemas: Partial<Record<CelRule['kind'], Schema>> = {};
  const cel: CelRule[] = [];
  const lists: ListRule[] = [];
  let bundleVersion = '';
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const crd = parseYaml(text) as {
      metadata: { annotations?: Record<string, string> };
      spec: { names: { kind: string }; versions: Array<{ name: string; schema: { openAPIV3Schema: Schema } }> };
    };
    const kind = crd.spec.names.kind;
    if (kind !== 'HTTPRoute' && kind !== 'GRPCRoute') continue;
    hash.update(text);
    bundleVersion = crd.metadata.annotations?.['gateway.networking.k8s.io/bundle-version'] ?? '';
    const v1 = crd.spec.versions.find((v) => v.name === 'v1');
    if (!v1) throw new Error(`${file}: no version v1`);
    schemas[kind] = prepareSchema(v1.schema.openAPIV3Schema, kind, cel, lists);
  }
  if (!schemas.HTTPRoute || !schemas.GRPCRoute) throw new Error('the CRD files hold no HTTPRoute or no GRPCRoute');
  return { bundleVersion, crdHash: hash.digest('hex'), schemas: schemas as CrdSchemas['schemas'], cel, lists };
}

/**
 * The schemas with each large subschema that occurs more than once (the filters of a rule and of a backendRef,
 * what HTTPRoute and GRPCRoute share) moved to one definition and referenced, so ajv writes its code once:
 * the module is smaller and loads faster. A `default` stays beside the reference, where ajv applies it.
 */
export function shareSubschemas(roots: Schema[], minChars = 300): { roots: Schema[]; defs: Record<string, Schema> } {
  const counts = new Map<string, number>();
  const count = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(count);
    if (!isObject(v)) return;
    const { default: _d, ...rest } = v;
    const key = JSON.stringify(rest);
    if (key.length >= minChars) counts.set(key, (counts.get(key) ?? 0) + 1);
    for (const x of Object.values(v)) count(x);
  };
  roots.forEach((r) => count(r.properties));
  const defs: Record<string, Schema> = {};
  const names = new Map<string, string>();
  const share = (v: unknown, inSchema: boolean): unknown => {
    if (Array.isArray(v)) return v.map((x) => share(x, inSchema));
    if (!isObject(v)) return v;
    if (inSchema) {
      const { default: dflt, ...rest } = v;
      const key = JSON.stringify(rest);
      if ((counts.get(key) ?? 0) > 1) {
        let name = names.get(key);
        if (name === undefined) {
          name = `s${names.size}`;
          names.set(key, name);
          defs[name] = share(rest, false) as Schema;
        }
        return { $ref: `defs#/$defs/${name}`, ...(dflt !== undefined ? { default: dflt } : {}) };
      }
    }
    const out: Schema = {};
    // Keys whose values are schemas, or maps of them; the rest (enum, required, default...) is data.
    for (const [k, x] of Object.entries(v)) {
      if (k === 'properties') out[k] = Object.fromEntries(Object.entries(x as Schema).map(([n, y]) => [n, share(y, true)]));
      else if (k === 'items' || k === 'additionalProperties') out[k] = isObject(x) ? share(x, true) : x;
      else out[k] = x;
    }
    return out;
  };
  return { roots: roots.map((r) => share(r, false) as Schema), defs };
}

/** The module's text, from the CRD files and the ajv installed now. */
export function generateGatewayValidator(files: string[]): string {
  const { bundleVersion, crdHash, schemas, cel, lists } = readCrdSchemas(files);
  const ajv = new Ajv({ ...GATEWAY_AJV_OPTIONS, code: { source: true, esm: true, lines: false } });
  const shared = shareSubschemas([schemas.HTTPRoute, schemas.GRPCRoute]);
  ajv.addSchema({ $id: 'defs', $defs: shared.defs });
  ajv.addSchema({ ...shared.roots[0], $id: 'HTTPRoute' });
  ajv.addSchema({ ...shared.roots[1], $id: 'GRPCRoute' });
  const code = standalone.default(ajv, { validateHTTPRoute: 'HTTPRoute', validateGRPCRoute: 'GRPCRoute' });
  const ajvVersion = (
    JSON.parse(readFileSync(join(import.meta.dirname, '..', 'node_modules', 'ajv', 'package.json'), 'utf8')) as { version: string }
  ).version;
  const body = code.replace(/^"use strict";\n?/, '');
  return `// @ts-nocheck
// Generated by scripts/generateGatewayValidator.ts from the HTTPRoute and GRPCRoute CRDs (experimental channel, v1)
// of Gateway API ${bundleVersion} with ajv ${ajvVersion} (standalone code). Do not edit: run node scripts/generateGatewayValidator.ts.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const bundleVersion = ${JSON.stringify(bundleVersion)};
/** sha256 of the CRD files this was generated from. */
export const crdHash = ${JSON.stringify(crdHash)};

/** The CRDs' CEL rules (x-kubernetes-validations): discover/gateway/validate.ts implements each by its message. */
export const celRules = ${JSON.stringify(cel, null, 0).replace(/\},\{/g, '},\n  {')};

/** The lists the API server keeps unique (x-kubernetes-list-type map: by their keys; set: by value). */
export const listRules = ${JSON.stringify(lists, null, 0).replace(/\},\{/g, '},\n  {')};

${body}${body.endsWith('\n') ? '' : '\n'}`;
}

if (import.meta.main) {
  const { crdFiles } = await import('./gateway.ts');
  const text = generateGatewayValidator(crdFiles('experimental'));
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(generatedPath, 'utf8');
    } catch {
      /* missing: stale */
    }
    const stale = current !== text;
    process.stdout.write(
      stale ? `${generatedPath} is stale: run node scripts/generateGatewayValidator.ts\n` : `${generatedPath} is up to date\n`,
    );
    process.exit(stale ? 1 : 0);
  }
  writeFileSync(generatedPath, text);
  process.stdout.write(`wrote ${generatedPath} (${text.length} bytes)\n`);
}
