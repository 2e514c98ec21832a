// Docker cannot run here, so the Dockerfile's structure is checked as text: a build stage on Node 24 that
// installs, builds and prunes; a slim Node 24 runtime with tini as PID 1, a non-root user and only the
// state directory writable; and a .dockerignore that keeps the context small.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const text = readFileSync(join(root, 'Dockerfile'), 'utf8');

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  steps: Instruction[];
}

/** Instructions with continuation lines joined and comments dropped, grouped by FROM. */
function stages(dockerfile: string): Stage[] {
  const joined = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const out: Stage[] = [];
  for (const line of joined) {
    const m = /^([A-Z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`not an instruction: ${line}`);
    const [, op, args] = m;
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args)!;
      out.push({ from: f[1], name: f[2], steps: [] });
    } else {
      if (out.length === 0) throw new Error(`${op} before FROM`);
      out[out.length - 1].steps.push({ op, args });
    }
  }
  return out;
}

const all = stages(text);
const build = all[0];
const runtime = all[all.length - 1];
const runs = (s: Stage) =>
  s.steps
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join(' && ');

t.test('two stages: build on node:24, run on a slim Node 24', async (t) => {
  t.equal(all.length, 2);
  t.match(build.from, /^node:24(\b|-)/, 'build stage on Node 24');
  t.equal(build.name, 'build');
  t.match(runtime.from, /^(node:24[-.\w]*slim|gcr\.io\/distroless\/nodejs24)/, 'runtime on a slim or distroless Node 24');
  t.notMatch(runtime.from, /:latest$|^node:24$/, 'not the full image');
});

t.test('the build stage installs exactly, builds the JavaScript and drops dev dependencies', async (t) => {
  const r = runs(build);
  const ci = r.indexOf('npm ci');
  const compile = r.indexOf('npm run build');
  const prune = r.indexOf('npm prune --omit=dev');
  t.ok(ci >= 0, 'npm ci');
  t.ok(compile > ci, 'npm run build after npm ci');
  t.ok(prune > compile, 'npm prune --omit=dev after the build');
  t.ok(
    build.steps.some((i) => i.op === 'COPY' && /package-lock\.json/.test(i.args)),
    'the lock file is copied for npm ci',
  );
  for (const dir of ['cli/', 'shared/', 'discover/', 'proxy/', 'dns/'])
    t.ok(
      build.steps.some((i) => i.op === 'COPY' && i.args.startsWith(dir)),
      `sources of ${dir} copied`,
    );
});

t.test('the runtime takes only built output from the build stage', async (t) => {
  const copies = runtime.steps.filter((i) => i.op === 'COPY');
  t.ok(copies.length > 0);
  for (const c of copies) t.match(c.args, /--from=build/, `COPY ${c.args} comes from the build stage`);
  t.ok(
    copies.some((c) => /\/src\/dist\s+\.\/dist$/.test(c.args)),
    'dist copied',
  );
  t.ok(
    copies.some((c) => /\/src\/node_modules\s/.test(c.args)),
    'production node_modules copied',
  );
  t.notOk(
    copies.some((c) => /\.ts\b/.test(c.args)),
    'no TypeScript sources in the runtime',
  );
  t.ok(
    copies.every((c) => /--chown=0:0/.test(c.args)),
    'the app is owned by root, so the runtime user cannot change it',
  );
});

t.test('tini is PID 1 and runs the built CLI', async (t) => {
  t.match(runs(runtime), /apt-get install[^&]*\btini\b/, 'tini installed');
  const entry = runtime.steps.filter((i) => i.op === 'ENTRYPOINT');
  t.equal(entry.length, 1);
  t.same(JSON.parse(entry[0].args), ['tini', '--', 'node', '/app/dist/cli.js'], 'exec form, tini first');
  t.match(runs(runtime), /rm -rf \/var\/lib\/apt\/lists/, 'apt lists removed');
});

t.test('a non-root USER (65532) that can write only /var/lib/shoal', async (t) => {
  const users = runtime.steps.filter((i) => i.op === 'USER');
  t.equal(users.length, 1);
  t.match(users[0].args, /^65532(:65532)?$/, 'numeric uid, so runAsNonRoot can verify it');
  const afterUser = runtime.steps.slice(runtime.steps.findIndex((i) => i.op === 'USER') + 1);
  t.notOk(
    afterUser.some((i) => i.op === 'RUN'),
    'nothing runs as root after USER',
  );
  const r = runs(runtime);
  t.match(r, /chown 65532:65532 \/var\/lib\/shoal/, 'the state directory belongs to the runtime user');
  t.equal((r.match(/chown/g) ?? []).length, 1, 'and nothing else is handed to it');
});

t.test('.dockerignore keeps the context to what the build copies', async (t) => {
  const ignored = readFileSync(join(root, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const entry of ['node_modules', 'dist', '.git', 'test']) t.ok(ignored.includes(entry), `${entry} ignored`);
  for (const needed of ['package.json', 'package-lock.json', 'tsconfig.json', 'cli', 'shared', 'discover', 'proxy', 'dns'])
    t.notOk(ignored.includes(needed), `${needed} kept`);
});
