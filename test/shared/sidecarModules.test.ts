// The sidecar runs in every pod, so what it loads is paid for once per pod. Its modules (proxy/ and the
// DNS responder it hosts) must not pull in the packages discover or the tests use: prom-client (~19 MB RSS;
// shared/promText.ts instead), ajv's compiler (~20 MB; the generated snapshot validator instead), fastify,
// the Kubernetes client, YAML parsers; undici only when the slow path first needs it.
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

const root = join(import.meta.dirname, '..', '..');
const FORBIDDEN: Record<string, string> = {
  'prom-client': 'import Counter, Gauge, Histogram and Registry from shared/promText.ts',
  ajv: 'validate with the generated module (scripts/generateSnapshotValidator.ts); only ajv/dist/runtime/ helpers may load',
  fastify: 'discover only',
  '@fastify/swagger': 'discover only',
  '@kubernetes/client-node': 'discover only',
  yaml: 'discover and the CLI only',
  'js-yaml': 'discover and the CLI only',
  undici: 'loaded lazily by the slow path, never at start',
};

t.test('importing the sidecar loads none of the packages it does not need', async (t) => {
  // CommonJS packages imported from ESM land in require.cache, with the file that first loaded them unknown:
  // a resolve hook records who asked for each package.
  const script = `
    import { createRequire, registerHooks } from 'node:module';
    const askedBy = {};
    registerHooks({ resolve(spec, ctx, next) {
      const r = next(spec, ctx);
      const m = /node_modules\\/((@[^/]+\\/)?[^/]+)\\/(.*)$/.exec(r.url);
      if (m && !(ctx.parentURL ?? '').includes('/node_modules/')) (askedBy[m[1]] ??= []).push(m[3] + ' <- ' + (ctx.parentURL ?? '').replace(${JSON.stringify(`file://${root}/`)}, ''));
      return r;
    } });
    await import(${JSON.stringify(join(root, 'proxy', 'main.ts'))});
    await import(${JSON.stringify(join(root, 'dns', 'main.ts'))});
    const files = Object.keys(createRequire(import.meta.url).cache).filter((f) => f.includes('/node_modules/'));
    process.stdout.write(JSON.stringify({ files: files.map((f) => f.slice(f.lastIndexOf('/node_modules/') + 14)), askedBy }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { cwd: root, maxBuffer: 1 << 24 });
  const { files, askedBy } = JSON.parse(stdout) as { files: string[]; askedBy: Record<string, string[]> };
  const pkg = (f: string) => (f.startsWith('@') ? f.split('/').slice(0, 2).join('/') : f.split('/')[0]);
  t.ok(files.some((f) => pkg(f) === 'pino'), 'the reader sees CommonJS packages (pino is one)');
  for (const [name, instead] of Object.entries(FORBIDDEN)) {
    const loaded = files.filter((f) => pkg(f) === name && !(name === 'ajv' && f.startsWith('ajv/dist/runtime/')));
    t.same(loaded, [], `${name} not loaded${loaded.length ? ` (asked by ${(askedBy[name] ?? []).join(', ')}): ${instead}` : ''}`);
  }
});
