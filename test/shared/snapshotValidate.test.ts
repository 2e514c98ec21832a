// The snapshot schema is compiled ahead of time (scripts/generateSnapshotValidator.ts) so the sidecar does
// not load ajv's compiler. The checked-in module must be what the generator writes now, and it must judge
// every snapshot as ajv compiling the schema at run time does, with the same first error.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { buildSnapshot } from '../../discover/snapshot/builder.ts';
import { parseStaticTopology } from '../../discover/topology/staticFile.ts';
import { generatedPath, generateSnapshotValidator } from '../../scripts/generateSnapshotValidator.ts';
import { compileSnapshotSchema, snapshotError, snapshotValidatorSource, snapshotVersion, type Snapshot } from '../../shared/snapshot.ts';
import { validate as generated } from '../../shared/snapshotValidate.generated.ts';

t.test('the checked-in validator is what the generator writes from the schema now', async (t) => {
  t.ok(
    readFileSync(generatedPath, 'utf8') === generateSnapshotValidator(),
    'shared/snapshotValidate.generated.ts is up to date (if not: node scripts/generateSnapshotValidator.ts, then commit it)',
  );
  t.equal(snapshotValidatorSource, 'generated', 'snapshot.ts validates with the generated module, not ajv at load');
});

/** A snapshot using every part of the schema, optional fields included. */
function richSnapshot(): Snapshot {
  const topo = parseStaticTopology(`
services:
  - { name: api-v1, ports: [{ port: 8080, protocol: http }], endpoints: [10.1.0.1:8080, 10.1.0.2:8080] }
  - { name: api-v2, ports: [{ port: 8080, protocol: http }], endpoints: [10.2.0.1:8080] }
  - { name: db, namespace: data, ports: [5432], endpoints: [10.3.0.1] }
apps:
  - name: web
    config:
      base_ports: [{ port: 8080 }, { port: 9000, protocol: tcp }]
      base_services:
        - { depend_service_alias: api-v1, port: 8080, options: { Domains: api.example, Weight: 80, Prefix: /v1, Headers: "x-canary:1" } }
        - { depend_service_alias: api-v2, port: 8080, options: { Domains: api.example, Weight: 20 } }
        - { depend_service_alias: db.data, port: 5432, protocol: tcp }
`);
  const s = buildSnapshot(topo.apps.get('default/web')!, topo) as Snapshot;
  s.inbound[0].authz = { rules: [{ namespace: 'default', serviceAccount: 'api', methods: ['GET'], prefixes: ['/v1'] }] };
  s.clusters[0].endpoints[0].meshed = true;
  s.clusters[0].peerIdentities = ['spiffe://cluster.local/ns/default/sa/api'];
  s.outbound.find((l) => l.mode === 'l7')!.routes[0].retryNonIdempotent = true;
  s.identity = {
    trustDomain: 'cluster.local',
    spiffeId: 'spiffe://cluster.local/ns/default/sa/web',
    mtlsMode: 'strict',
    trustBundle: ['-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n'],
  };
  s.status.errors = ['one'];
  return { ...s, version: snapshotVersion(s) };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every path in a JSON value, with the value there. */
function* paths(v: Json, at: Array<string | number> = []): Generator<[Array<string | number>, Json]> {
  yield [at, v];
  if (Array.isArray(v)) for (let i = 0; i < v.length; i++) yield* paths(v[i], [...at, i]);
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) yield* paths(v[k], [...at, k]);
}

/** The value with the node at `at` replaced (undefined: removed; for arrays, spliced out). */
function edit(root: Json, at: Array<string | number>, value: Json | undefined): Json {
  const copy = structuredClone(root);
  if (at.length === 0) return value ?? null;
  let parent = copy as Record<string | number, Json>;
  for (const k of at.slice(0, -1)) parent = parent[k] as Record<string | number, Json>;
  const last = at[at.length - 1];
  if (value !== undefined) parent[last] = value;
  else if (Array.isArray(parent)) parent.splice(last as number, 1);
  else delete parent[last];
  return copy;
}

t.test('the generated validator and ajv at run time agree on every mutation of a rich snapshot', async (t) => {
  const compiled = compileSnapshotSchema();
  const base = JSON.parse(JSON.stringify(richSnapshot())) as Json;
  const verdict = (v: (d: unknown) => boolean, d: Json) => {
    const fn = v as ((d: unknown) => boolean) & {
      errors?: Array<{ instancePath: string; keyword: string; message?: string; params: unknown }> | null;
    };
    const ok = fn(d);
    const e = fn.errors?.[0];
    return ok ? 'valid' : `${e?.instancePath} ${e?.keyword} ${e?.message} ${JSON.stringify(e?.params)}`;
  };
  t.equal(verdict(generated, base), 'valid', 'the rich snapshot is valid');
  const replacements: Json[] = [
    null,
    true,
    -1,
    0,
    1.5,
    70000,
    '',
    'x y',
    'spiffe://a',
    '-----BEGIN CERTIFICATE-----',
    [],
    [1],
    {},
    { extra: 1 },
  ];
  let cases = 0;
  let invalid = 0;
  const disagreements: string[] = [];
  for (const [at, value] of paths(base)) {
    const mutants: Json[] = replacements.map((r) => edit(base, at, r));
    if (at.length > 0) mutants.push(edit(base, at, undefined));
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) mutants.push(edit(base, at, { ...value, unexpected: 1 }));
    if (Array.isArray(value) && value.length > 0) mutants.push(edit(base, at, [...value, value[0]]));
    for (const m of mutants) {
      cases++;
      const [a, b] = [verdict(generated, m), verdict(compiled, m)];
      if (a !== 'valid') invalid++;
      if (a !== b) disagreements.push(`/${at.join('/')}: generated ${a}; ajv ${b}`);
    }
  }
  t.same(disagreements, [], `${cases} mutations, ${invalid} of them invalid, judged alike`);
  t.ok(cases > 2000 && invalid > 1500, `${cases} cases, ${invalid} invalid: the mutations reach the whole schema`);
});

t.test('snapshotError says what is wrong and where, as before', async (t) => {
  const s = richSnapshot();
  t.equal(snapshotError(JSON.parse(JSON.stringify(s))), null);
  const without = JSON.parse(JSON.stringify(s));
  delete without.clusters[1].endpoints[0].ready;
  t.equal(snapshotError(without), "invalid snapshot at /clusters/1/endpoints/0: must have required property 'ready'");
  t.equal(
    snapshotError({ ...s, identity: { ...s.identity, mtlsMode: 'sometimes' } }),
    'invalid snapshot at /identity/mtlsMode: must be equal to one of the allowed values',
  );
  t.equal(
    snapshotError({ ...s, dns: [{ name: 'x', address: '10.0.0.256' }] }),
    'invalid snapshot at /dns/0/address: must match pattern "^(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$"',
  );
  t.equal(snapshotError({ ...s, extra: 1 }), 'invalid snapshot at /: must NOT have additional properties');
  t.equal(snapshotError([]), 'invalid snapshot at /: must be object');
  t.equal(snapshotError({ ...s, schemaVersion: 2 }), 'unsupported snapshot schemaVersion 2: this build reads 1');
  t.equal(snapshotError({ ...s, version: '0123456789abcdef' }), 'invalid snapshot: version 0123456789abcdef does not match its content');
  const l = s.outbound[0];
  const dangling = {
    ...s,
    outbound: [{ ...l, routes: [{ ...l.routes[0], backends: [{ cluster: 'nowhere.default:1', weight: 1 }] }] }, ...s.outbound.slice(1)],
  };
  t.equal(snapshotError(dangling), `invalid snapshot: listener ${l.name} routes to unknown cluster nowhere.default:1`);
});
