// The sidecar runs in every pod, so what it loads is paid for once per pod. Its modules (proxy/ and the
// DNS responder it hosts) must not pull in the packages discover or the tests use: prom-client (~19 MB RSS;
// shared/metricsRegistry.ts instead), ajv's compiler (~20 MB; the generated snapshot validator instead), fastify,
// the Kubernetes client, YAML parsers; undici only when the slow path first needs it.
import t, { type Test } from 'tap';
import { execFile, spawn } from 'node:child_process';
import { request } from 'undici';
import { withDiscover } from '../lib/discover.ts';
import { freePort, httpBackend, randomLoopback, service } from '../proxy/fixtures.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const root = join(import.meta.dirname, '..', '..');
const FORBIDDEN: Record<string, string> = {
  'prom-client': 'import Counter, Gauge, Histogram and Registry from shared/metricsRegistry.ts',
  ajv: 'validate with the generated module (scripts/generateSnapshotValidator.ts); only ajv/dist/runtime/ helpers may load',
  fastify: 'discover only',
  '@fastify/swagger': 'discover only',
  '@kubernetes/client-node': 'discover only',
  yaml: 'discover and the CLI only',
  'js-yaml': 'discover and the CLI only',
  undici: 'loaded lazily by the slow path, never at start',
  pino: 'discover only (discover/log.ts); the sidecar writes the same JSON lines with shared/log.ts, ~7 MB less RSS',
  // The OpenTelemetry SDK is a devDependency: the encoder is compared with it (docs/performance.md, Tracing).
  '@opentelemetry/api': 'tests only: the sidecar writes OTLP JSON itself (proxy/tracing/otlpJson.ts)',
  '@opentelemetry/core': 'tests only: the sidecar writes OTLP JSON itself (proxy/tracing/otlpJson.ts)',
  '@opentelemetry/sdk-trace-base': 'tests only: the sidecar writes OTLP JSON itself (proxy/tracing/otlpJson.ts)',
  '@opentelemetry/otlp-transformer': 'tests only: the sidecar writes OTLP JSON itself (proxy/tracing/otlpJson.ts)',
  '@opentelemetry/exporter-trace-otlp-http': 'tests only: the sidecar exports with proxy/tracing/spanExporter.ts',
};

// Loaded first (--import): records every package file resolved, by import or require, ESM or CommonJS,
// with the project file that asked for each package, and prints them at exit.
const HOOK = `import { registerHooks } from 'node:module';
const files = new Set();
const askedBy = {};
registerHooks({ resolve(spec, ctx, next) {
  const r = next(spec, ctx);
  const m = /\\/node_modules\\/((@[^/]+\\/)?[^/]+)\\/(.*)$/.exec(r.url);
  if (m) {
    files.add(m[1] + '/' + m[3]);
    const parent = ctx.parentURL ?? '';
    if (!parent.includes('/node_modules/')) (askedBy[m[1]] ??= new Set()).add(parent.replace(${JSON.stringify(`file://${root}/`)}, ''));
  }
  return r;
} });
process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify({ files: [...files], askedBy: Object.fromEntries(Object.entries(askedBy).map(([k, v]) => [k, [...v]])) }) + '\\n'));
`;

interface Loaded {
  files: string[];
  askedBy: Record<string, string[]>;
}

async function loadedBy(t: Test, args: string[]): Promise<Loaded & { stdout: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-modules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'hook.mjs'), HOOK);
  const { stdout, stderr } = await promisify(execFile)(process.execPath, ['--import', join(dir, 'hook.mjs'), ...args], {
    cwd: root,
    maxBuffer: 1 << 24,
  });
  return { ...(JSON.parse(/^LOADED (.*)$/m.exec(stderr)![1]) as Loaded), stdout };
}

const pkg = (f: string) => (f.startsWith('@') ? f.split('/').slice(0, 2).join('/') : f.split('/')[0]);

function checkForbidden(t: Test, { files, askedBy }: Loaded): void {
  t.ok(
    files.some((f) => f.startsWith('ajv/dist/runtime/')),
    "the hook sees packages (the snapshot validator's ajv runtime helpers are one)",
  );
  for (const [name, instead] of Object.entries(FORBIDDEN)) {
    const loaded = files.filter((f) => pkg(f) === name && !(name === 'ajv' && f.startsWith('ajv/dist/runtime/')));
    t.same(loaded, [], `${name} not loaded${loaded.length ? ` (asked by ${(askedBy[name] ?? []).join(', ')}): ${instead}` : ''}`);
  }
}

t.test('importing the sidecar loads none of the packages it does not need', async (t) => {
  const script = `await import(${JSON.stringify(join(root, 'proxy', 'main.ts'))}); await import(${JSON.stringify(join(root, 'dns', 'main.ts'))});`;
  checkForbidden(t, await loadedBy(t, ['--input-type=module', '-e', script]));
});

t.test('the sidecar with tracing on loads none of them either', async (t) => {
  // Tracing's modules are imported only when --otlp-endpoint is set (proxy/main.ts): load and run them.
  const script = `await import(${JSON.stringify(join(root, 'proxy', 'main.ts'))});
const { startTracing } = await import(${JSON.stringify(join(root, 'proxy', 'tracing', 'startTracing.ts'))});
const { createLogger } = await import(${JSON.stringify(join(root, 'shared', 'log.ts'))});
const { Registry } = await import(${JSON.stringify(join(root, 'shared', 'metricsRegistry.ts'))});
const tr = startTracing({ url: 'http://127.0.0.1:9', namespace: 'default', app: 'web', log: createLogger('t', 'silent'), registry: new Registry() });
const { tracer } = await import(${JSON.stringify(join(root, 'proxy', 'tracing', 'tracer.ts'))});
tracer.beginRaw(['traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'], performance.now(), { name: 'x', direction: 'outbound' }, false)
  .end('GET', '/', 'x', '127.0.0.1', 200, '', 'x', { key: '127.0.0.2:80', address: '127.0.0.2', port: 80 }, 0, -1);
await tr.close();`;
  checkForbidden(t, await loadedBy(t, ['--input-type=module', '-e', script]));
});

t.test("shoal proxy, as the container runs it, loads only the sidecar's modules", async (t) => {
  // cli.ts imports a command's modules when it runs that command; --help loads them and exits.
  const r = await loadedBy(t, [join(root, 'cli.ts'), 'proxy', '--help']);
  t.match(r.stdout, /--discover-url/, 'the proxy command was loaded');
  checkForbidden(t, r);
});

// node:tls and node:http2 cost a process ~9 MB RSS: a sidecar loads them when its snapshot needs them.
t.test('a running sidecar loads node:tls and node:http2 only when its snapshot needs them', async (t) => {
  const api = await httpBackend(t, 'api-1', (req, res) => {
    req.resume();
    res.end('ok');
  });
  const run = async (protocol: string) => {
    const port = await freePort();
    const address = randomLoopback();
    const d = await withDiscover(
      t,
      `services:\n${service('api', address, port, [api.endpoint], protocol)}apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${port}, protocol: ${protocol} }
`,
    );
    const dir = mkdtempSync(join(tmpdir(), 'shoal-builtins-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const child = spawn(
      process.execPath,
      [
        join(root, 'test', 'proxy', 'sidecarProcess.ts'),
        JSON.stringify({
          discoverUrl: `${d.url}/v1/resources/default/web/mesh`,
          stateFile: join(dir, 'state.json'),
          adminHost: '127.0.0.1',
          adminPort: 0,
          inboundAddress: randomLoopback(),
          drainTimeoutMs: 500,
        }),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    t.teardown(() => child.kill('SIGKILL'));
    const lines: string[] = [];
    let out = '';
    child.stdout!.on('data', (c) => {
      out += c;
      let nl;
      while ((nl = out.indexOf('\n')) >= 0) {
        lines.push(out.slice(0, nl));
        out = out.slice(nl + 1);
      }
    });
    const next = async () => {
      const had = lines.length;
      for (let i = 0; i < 500 && lines.length === had; i++) await new Promise((r) => setTimeout(r, 10));
      return JSON.parse(lines[had]) as { builtins?: string[] };
    };
    await next(); // ready
    if (protocol === 'http') {
      const r = await request(`http://${address}:${port}/`);
      t.equal(await r.body.text(), 'ok', 'traffic flows through the sidecar');
    }
    child.kill('SIGUSR2');
    return (await next()).builtins;
  };
  t.same(await run('http'), [], 'plain HTTP, no identity: neither tls nor http2 (nor zlib)');
  t.same(await run('grpc'), ['tls', 'http2'], 'a gRPC dependency: http2 (which requires node:tls itself)');
});
