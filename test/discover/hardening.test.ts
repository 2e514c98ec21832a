// discover under hostile or careless clients: concurrent writes agree with what they were told,
// a failed write changes nothing, bad names and oversized configs are refused with a clear 4xx,
// and a static discover listens on loopback unless told otherwise.
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load as parseYaml } from 'js-yaml';
import { request } from 'undici';
import { createLogger } from '../../shared/log.ts';
import { MESH_CONFIG_LIMITS } from '../../shared/meshConfig.ts';
import type { Snapshot } from '../../shared/snapshot.ts';
import { parseFlags } from '../../shared/flags.ts';
import { discoverFlags, discoverOptionsFromFlags, startDiscover } from '../../discover/main.ts';
import { TWO_APPS, withDiscover, type TestDiscover } from '../lib/discover.ts';
import { childEnv, stopCli, until, type Running } from './kubernetes/discoverClient.ts';

const CLI = join(import.meta.dirname, '..', '..', 'cli.ts');

const TOKEN = 's3cret';

interface Answer {
  status: number;
  json: any;
}

async function call(base: string, method: 'GET' | 'PUT', path: string, body?: string | object): Promise<Answer> {
  const res = await request(base + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    headersTimeout: 60_000,
    bodyTimeout: 60_000,
  });
  const text = await res.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.statusCode, json };
}

/** A config for web whose api dependency carries `timeoutMs`: each body is told apart in the snapshot. */
function webConfig(timeoutMs: number) {
  return {
    base_ports: [{ port: 8000, protocol: 'http' }],
    base_services: [{ depend_service_alias: 'api', port: 8080, protocol: 'http', options: { RequestTimeoutMS: String(timeoutMs) } }],
  };
}

/** The app's config as the topology file holds it. */
function configOnDisk(file: string, ns: string, app: string): unknown {
  const doc = parseYaml(readFileSync(file, 'utf8')) as { apps: Array<{ name: string; namespace?: string; config?: unknown }> };
  return doc.apps.find((a) => a.name === app && (a.namespace ?? 'default') === ns)?.config;
}

async function snapshotOf(base: string, ns: string, app: string): Promise<Snapshot> {
  const res = await request(`${base}/v2/snapshot/${ns}/${app}`);
  return (await res.body.json()) as Snapshot;
}

/**
 * `shoal discover ARGS` as its own process, as it runs in production. tap's process-info hook puts
 * itself into every child's NODE_OPTIONS, and its exit handler re-raises signals Node ignores
 * (SIGXFSZ among them): `env -u` keeps it out.
 */
function discoverProcess(args: string[]): Running {
  const child = spawn('env', ['-u', 'NODE_OPTIONS', process.execPath, CLI, 'discover', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: childEnv(),
  });
  const logs: Array<Record<string, any>> = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      logs.push(JSON.parse(l));
    } catch {
      logs.push({ msg: l });
    }
  });
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  return {
    child,
    logs,
    stderr,
    async line(msg, ms = 90_000) {
      await until(
        `log line "${msg}" (stderr: ${stderr.join(' | ')})`,
        () => logs.some((l) => l.msg === msg) || child.exitCode !== null,
        ms,
      );
      const found = logs.find((l) => l.msg === msg);
      if (!found) throw new Error(`discover exited ${child.exitCode} before "${msg}": ${stderr.join('\n')}`);
      return found;
    },
  };
}

function leftovers(d: TestDiscover): string[] {
  return readdirSync(join(d.file, '..')).filter((f) => f !== 'topology.yaml');
}

/** The file, GET /v1/resources and the snapshot all hold `expected` (web's config). */
async function agree(t: Test, d: TestDiscover, expected: ReturnType<typeof webConfig>, what: string): Promise<void> {
  t.same(configOnDisk(d.file, 'default', 'web'), expected, `${what}: the file`);
  const got = await call(d.url, 'GET', '/v1/resources/default/web/mesh');
  t.equal(got.status, 200);
  t.same(got.json, expected, `${what}: GET /v1/resources`);
  const snap = await snapshotOf(d.url, 'default', 'web');
  t.equal(
    snap.clusters.find((c) => c.name === 'api.default:8080')?.policy.requestTimeoutMs,
    Number(expected.base_services[0].options.RequestTimeoutMS),
    `${what}: the snapshot`,
  );
}

t.test('20 concurrent PUTs to one app: all 200, and the file, GET and the snapshot equal the last one answered', async (t) => {
  const d = await withDiscover(t, TWO_APPS, { writeToken: TOKEN });
  const order: number[] = [];
  const answers = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      call(d.url, 'PUT', '/v1/resources/default/web/mesh', webConfig(1000 + i)).then((a) => {
        order.push(i);
        return a;
      }),
    ),
  );
  t.same(
    answers.map((a) => a.status),
    Array(20).fill(200),
    `every PUT answered 200 (${answers
      .filter((a) => a.status !== 200)
      .map((a) => JSON.stringify(a.json))
      .join(', ')})`,
  );
  const last = order.filter((i) => answers[i].status === 200).at(-1)!;
  await agree(t, d, webConfig(1000 + last), `the last PUT answered (#${last})`);
  t.same(leftovers(d), [], 'no temporary file left beside the topology');
  // The watch sees each of these writes as an edit of the file: none may be applied again later.
  await new Promise((r) => setTimeout(r, 300));
  await agree(t, d, webConfig(1000 + last), 'after the watch events');
});

t.test('concurrent PUTs to different apps: none is lost', async (t) => {
  const d = await withDiscover(t, TWO_APPS, { writeToken: TOKEN });
  const names = Array.from({ length: 12 }, (_, i) => `app-${i}`);
  const answers = await Promise.all(names.map((n, i) => call(d.url, 'PUT', `/v1/resources/default/${n}/mesh`, webConfig(2000 + i))));
  t.same(
    answers.map((a) => a.status),
    Array(names.length).fill(200),
    'every PUT answered 200',
  );
  for (const [i, n] of names.entries()) {
    t.same(configOnDisk(d.file, 'default', n), webConfig(2000 + i), `${n} is in the file`);
    t.same((await call(d.url, 'GET', `/v1/resources/default/${n}/mesh`)).json, webConfig(2000 + i), `${n} is served`);
  }
  t.same(
    configOnDisk(d.file, 'default', 'worker'),
    { base_services: [{ depend_service_alias: 'db', port: 5432, protocol: 'tcp' }] },
    'the apps not written are intact',
  );
});

t.test('writes are checked against the file as it is: a refused edit in it, or another plugin written first, is a 409', async (t) => {
  const d = await withDiscover(t, TWO_APPS, { writeToken: TOKEN });
  // Two writers race to create an app with different plugins: one wins, the other is told so.
  const [a, b] = await Promise.all([
    call(d.url, 'PUT', '/v1/resources/default/fresh/mesh', webConfig(6000)),
    call(d.url, 'PUT', '/v1/resources/default/fresh/other', webConfig(6001)),
  ]);
  t.same([a.status, b.status].sort(), [200, 409], 'one 200, one 409');
  const loser = a.status === 409 ? a : b;
  t.match(loser.json.message, /app default\/fresh already has mesh plugin/);
  const doc = parseYaml(readFileSync(d.file, 'utf8')) as { apps: Array<{ name: string; pluginId?: string }> };
  t.equal(doc.apps.filter((x) => x.name === 'fresh').length, 1, 'the app is in the file once');
  t.equal(doc.apps.find((x) => x.name === 'fresh')!.pluginId, a.status === 200 ? 'mesh' : 'other', "with the winner's plugin");

  const before = await snapshotOf(d.url, 'default', 'web');
  const broken = `${readFileSync(d.file, 'utf8')}  - name: broken\n    config: { base_services: [{ depend_service_alias: api, port: 8080, options: { MaxRequests: ten } }] }\n`;
  d.edit(broken);
  await until(
    'the edit refused',
    async () =>
      (await request(`${d.url}/metrics`).then((r) => r.body.text())).match(
        /shoal_discover_config_errors_total{[^}]*source="static"[^}]*} 1/,
      ) !== null,
  );
  const put = await call(d.url, 'PUT', '/v1/resources/default/web/mesh', webConfig(6002));
  t.equal(put.status, 409, 'a write on top of a refused edit: 409');
  t.match(
    put.json.message,
    /the topology file holds an edit that was refused \(app default\/broken, dependency api:8080: invalid option MaxRequests="ten"/,
    'naming the refused edit',
  );
  t.equal(readFileSync(d.file, 'utf8'), broken, 'the file is left as its author left it');
  t.equal((await snapshotOf(d.url, 'default', 'web')).version, before.version, 'the served state is unchanged');
});

t.test('a write that fails on disk answers 500 and changes nothing; the next write works', async (t) => {
  try {
    execFileSync('prlimit', ['--version'], { stdio: 'ignore' });
  } catch {
    t.fail('prlimit (util-linux) is missing: cannot make a write fail the way root cannot bypass');
    return;
  }
  // discover runs as its own process: its file size limit (RLIMIT_FSIZE, which binds root too)
  // is lowered once it runs, so that its temporary file cannot grow past the topology's size plus 1 KiB.
  const dir = mkdtempSync(join(tmpdir(), 'shoal-hardening-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, TWO_APPS);
  const child = discoverProcess(['--static', file, '--port', '0', '--write-token', TOKEN, '--log-level', 'info']);
  t.teardown(() => stopCli(child));
  const url = `http://127.0.0.1:${(await child.line('discover listening')).port}`;
  t.equal((await call(url, 'PUT', '/v1/resources/default/web/mesh', webConfig(1111))).status, 200);
  const fileBefore = readFileSync(file);
  const versionBefore = (await snapshotOf(url, 'default', 'web')).version;
  const big = webConfig(2222);
  big.base_services.push(
    ...Array.from({ length: 100 }, (_, i) => ({
      depend_service_alias: `svc-${i}`,
      port: 80,
      protocol: 'http',
      options: { RequestTimeoutMS: '3000' },
    })),
  );
  execFileSync('prlimit', ['--pid', String(child.child.pid), `--fsize=${fileBefore.length + 1024}:`]);
  const failed = await call(url, 'PUT', '/v1/resources/default/web/mesh', big);
  execFileSync('prlimit', ['--pid', String(child.child.pid), '--fsize=unlimited:']);
  t.equal(failed.status, 500, 'the failed write answers 500');
  t.ok(readFileSync(file).equals(fileBefore), 'the file is unchanged');
  t.equal((await snapshotOf(url, 'default', 'web')).version, versionBefore, 'the served snapshot is unchanged');
  t.same((await call(url, 'GET', '/v1/resources/default/web/mesh')).json, webConfig(1111), 'GET /v1/resources is unchanged');
  t.same(readdirSync(dir), ['topology.yaml'], 'the partial temporary file was removed');
  t.match(child.logs.find((l) => l.msg === 'request failed')?.err?.message ?? '', /EFBIG|too large/i, 'the cause is logged');
  t.equal((await call(url, 'PUT', '/v1/resources/default/web/mesh', webConfig(3333))).status, 200, 'the next write works');
  t.same(configOnDisk(file, 'default', 'web'), webConfig(3333), 'and is on disk');
  t.same((await call(url, 'GET', '/v1/resources/default/web/mesh')).json, webConfig(3333), 'and served');
});

t.test('bad names in /v1/resources paths are 400 naming the part, on GET and PUT, and nothing is written', async (t) => {
  const d = await withDiscover(t, TWO_APPS, { writeToken: TOKEN });
  const fileBefore = readFileSync(d.file, 'utf8');
  const cases: Array<[string, string]> = [
    ['..%2F../web/mesh', 'namespace'],
    ['default/..%2F../mesh', 'app'],
    ['default/w%C3%A9b/mesh', 'app'],
    ['default/web%0A/mesh', 'app'],
    ['default/Web/mesh', 'app'],
    ['%0Adefault/web/mesh', 'namespace'],
    [`${'a'.repeat(64)}/web/mesh`, 'namespace'],
    ['default/web-/mesh', 'app'],
    ['default/web/me%0Ash', 'plugin_id'],
    ['default/web/%C3%A9', 'plugin_id'],
  ];
  for (const [path, part] of cases) {
    const full = `/v1/resources/${path}`;
    for (const method of ['GET', 'PUT'] as const) {
      const r = await call(d.url, method, full, method === 'PUT' ? webConfig(4000) : undefined);
      t.equal(r.status, 400, `${method} ${full}: 400`);
      t.match(
        r.json,
        { error: 'invalid_name', message: new RegExp(`^${part} ".*" is not a valid`) },
        `${method} ${full}: names the ${part}`,
      );
    }
  }
  // A DNS-1123 label the static file does not allow as a namespace (it must start with a letter).
  const digit = await call(d.url, 'PUT', '/v1/resources/1team/web/mesh', webConfig(4000));
  t.equal(digit.status, 400, 'a namespace the topology file refuses: 400');
  t.match(digit.json.message, /namespace="1team"/);
  t.equal(readFileSync(d.file, 'utf8'), fileBefore, 'the file is unchanged');
  t.same(leftovers(d), []);
});

t.test('limits: PUT bodies over 1 MiB are 413; configs over MESH_CONFIG_LIMITS are 400 naming the limit', async (t) => {
  const d = await withDiscover(t, TWO_APPS, { writeToken: TOKEN });
  const fileBefore = readFileSync(d.file, 'utf8');
  const huge = await call(d.url, 'PUT', '/v1/resources/default/web/mesh', { base_normal: { options: { X: 'a'.repeat(1024 * 1024) } } });
  t.equal(huge.status, 413, 'over 1 MiB: 413');
  t.match(huge.json.message, /limit of 1048576 bytes/, 'naming the limit');

  const deps = (n: number, extra: Record<string, string> = {}) =>
    Array.from({ length: n }, (_, i) => ({ depend_service_alias: `svc-${i}`, port: 80, options: extra }));
  const cases: Array<[string, object, RegExp]> = [
    [
      '1001 dependencies',
      { base_services: deps(MESH_CONFIG_LIMITS.dependencies + 1) },
      /base_services has 1001 entries; at most 1000 are allowed/,
    ],
    [
      '101 ports',
      { base_ports: Array.from({ length: MESH_CONFIG_LIMITS.ports + 1 }, (_, i) => ({ port: 1000 + i })) },
      /base_ports has 101 entries; at most 100 are allowed/,
    ],
    [
      '1001 domains',
      { base_services: deps(11, { Domains: Array.from({ length: 100 }, (_, i) => `d${i}.example`).join(',') }) },
      /dependency svc-10:80: invalid option Domains: .*more than 1000 domains/,
    ],
    [
      '33 header matches',
      { base_services: deps(1, { Headers: Array.from({ length: 33 }, (_, i) => `x-h${i}:v`).join(';') }) },
      /invalid option Headers=.*33 header matches; at most 32/,
    ],
  ];
  for (const [what, body, message] of cases) {
    const r = await call(d.url, 'PUT', '/v1/resources/default/web/mesh', body);
    t.equal(r.status, 400, `${what}: 400`);
    t.match(r.json.message, message, `${what}: names the limit`);
    t.match(r.json.message, /app default\/web/, `${what}: names the app`);
  }
  const atLimit = await call(d.url, 'PUT', '/v1/resources/default/web/mesh', { base_services: deps(MESH_CONFIG_LIMITS.dependencies) });
  t.equal(atLimit.status, 200, 'exactly 1000 dependencies are fine');
  t.not(readFileSync(d.file, 'utf8'), fileBefore);
});

t.test('the static file: a config over the limits is refused at start, and an edit over them keeps the last good state', async (t) => {
  const deps = Array.from(
    { length: MESH_CONFIG_LIMITS.dependencies + 1 },
    (_, i) => `        - { depend_service_alias: svc-${i}, port: 80 }`,
  ).join('\n');
  const tooMany = `${TWO_APPS}  - name: big\n    config:\n      base_services:\n${deps}\n`;
  const dir = mkdtempSync(join(tmpdir(), 'shoal-hardening-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, tooMany);
  await t.rejects(
    startDiscover({ staticFile: file, port: 0, log: createLogger('discover', 'silent') }),
    /app default\/big: base_services has 1001 entries; at most 1000 are allowed/,
    'refused at start, naming the app and the limit',
  );

  const lines: Array<Record<string, any>> = [];
  const log = createLogger('discover', 'info', { write: (l: string) => lines.push(JSON.parse(l)) });
  writeFileSync(file, TWO_APPS);
  const d = await startDiscover({ staticFile: file, port: 0, log });
  t.teardown(() => d.close());
  const before = await snapshotOf(d.url, 'default', 'web');
  const renamed = join(dir, '.edit');
  writeFileSync(renamed, tooMany);
  (await import('node:fs')).renameSync(renamed, file);
  await until('the edit refused', () => lines.some((l) => l.msg?.startsWith('topology edit refused')));
  const refused = lines.find((l) => l.msg?.startsWith('topology edit refused'))!;
  t.match(
    refused.error,
    /app default\/big: base_services has 1001 entries; at most 1000 are allowed/,
    'the log names the app and the limit',
  );
  t.equal((await snapshotOf(d.url, 'default', 'web')).version, before.version, 'the last good state keeps serving');
  t.equal((await request(`${d.url}/v2/snapshot/default/big`)).statusCode, 404, 'the refused app is not served');
});

t.test('static discover listens on 127.0.0.1 by default; --host or SHOAL_HOST serves the network, with a warning', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-hardening-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'topology.yaml');
  writeFileSync(file, TWO_APPS);
  const start = async (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    const lines: Array<Record<string, any>> = [];
    const log = createLogger('discover', 'info', { write: (l: string) => lines.push(JSON.parse(l)) });
    const d = await startDiscover(
      discoverOptionsFromFlags(parseFlags(discoverFlags, ['--static', file, '--port', '0', ...argv], env).values, log),
    );
    t.teardown(() => d.close());
    return { d, lines, address: (d.server.server.address() as AddressInfo).address };
  };
  const byDefault = await start([]);
  t.equal(byDefault.address, '127.0.0.1', 'default: loopback');
  t.match(
    byDefault.lines.find((l) => l.msg === 'discover listening'),
    { source: 'static', host: '127.0.0.1' },
    'the start line says where',
  );
  t.notOk(
    byDefault.lines.some((l) => l.level === 40),
    'no warning on loopback',
  );
  t.equal((await request(`${byDefault.d.url}/readyz`)).statusCode, 200);

  const open = await start(['--host', '0.0.0.0']);
  t.equal(open.address, '0.0.0.0', '--host 0.0.0.0 serves every interface');
  t.equal((await request(`${open.d.url}/readyz`)).statusCode, 200, 'reachable on loopback still');
  const warning = open.lines.find((l) => l.level === 40);
  t.match(warning?.msg, /serves every app's snapshot and mesh config to anyone/, 'with a warning');

  const fromEnv = await start([], { SHOAL_HOST: '0.0.0.0' });
  t.equal(fromEnv.address, '0.0.0.0', 'SHOAL_HOST too');
});
