// npm run bench -- --smoke: every scenario runs tiny and side by side, every contender gets figures,
// and the JSON, Markdown and SVG it writes are whole. Proves the harness works, not the figures.
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
const SCENARIOS = ['http-max', 'http-fixed-rate', 'tcp-throughput', 'dns', 'discover-propagation', 'circuit-refusal', 'sidecar-footprint'];

/** Newest modification time of the TypeScript that dist/ is built from. */
function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

// Children run without tap's loaders and coverage hooks: the bench measures plain processes.
const env = { ...process.env };
delete env.NODE_OPTIONS;
delete env.NODE_V8_COVERAGE;

// CI builds before the tests; a working tree may not have, or may have edited sources since.
// (tsc emits even when a type error elsewhere makes it exit non-zero; the bench needs only the output.)
const stamp = join(root, 'dist', 'cli.js');
const sources = Math.max(
  ...['cli', 'shared', 'discover', 'proxy', 'dns'].map((d) => newestSource(join(root, d))),
  ...['cli.ts', 'demo.ts'].map((f) => statSync(join(root, f)).mtimeMs),
);
if (!existsSync(stamp) || statSync(stamp).mtimeMs < sources) {
  try {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.json')], {
      stdio: 'inherit',
      env,
    });
  } catch {
    // judged below by whether the bench can run
  }
}

/** Tags open and close in order (a small well-formedness check; no XML parser is a dependency). */
function balancedTags(svg: string): string | null {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w:-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (!closing) stack.push(name);
    else if (stack.pop() !== name) return `</${name}> closes nothing open at offset ${m.index}`;
  }
  return stack.length ? `unclosed <${stack.join('>, <')}>` : null;
}

t.test('--smoke writes a report, a chart and figures for every contender of every scenario', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'shoal-bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const started = Date.now();
  let stderr: string;
  let code = 0;
  try {
    ({ stderr } = await run(process.execPath, [join(root, 'bench', 'run.ts'), '--smoke', '--out', out], {
      cwd: root,
      env,
      timeout: 100_000,
      maxBuffer: 16 << 20,
    }));
  } catch (err) {
    const e = err as { code: number; stderr: string };
    code = e.code;
    stderr = e.stderr;
  }
  t.equal(code, 0, `exit 0 (every contender ran); stderr tail:\n${stderr.split('\n').slice(-15).join('\n')}`);
  t.comment(`smoke run took ${Math.round((Date.now() - started) / 1000)} s`);

  const date = readdirSync(out)
    .find((f) => f.endsWith('-run.md'))
    ?.slice(0, 10);
  t.ok(date, 'a run summary is written');
  const runMd = readFileSync(join(out, `${date}-run.md`), 'utf8');
  t.match(runMd, /Machine: \d+ cores, .+, Node v\d+/, 'the summary names the machine');
  const runJson = JSON.parse(readFileSync(join(out, `${date}-run.json`), 'utf8')) as { scenarios: { scenario: string }[] };
  t.same(
    runJson.scenarios.map((s) => s.scenario),
    SCENARIOS,
  );

  for (const name of SCENARIOS) {
    const base = join(out, `${date}-${name}`);
    const result = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as {
      scenario: string;
      errors: string[];
      machine: { cores: number; cpuModel: string; node: string };
      rows: {
        contender: string;
        label: string;
        error?: string;
        figures: Record<string, { median: number }>;
        ratios: Record<string, number | null>;
      }[];
    };
    t.equal(result.scenario, name);
    t.same(result.errors, [], `${name}: no contender failed`);
    t.equal(result.machine.node, process.version, `${name}: names the Node version`);
    t.ok(result.rows.length >= 2, `${name}: at least two contenders`);
    for (const row of result.rows) {
      t.notOk(row.error, `${name}/${row.contender}: ran`);
      const finite = Object.values(row.figures).filter((f) => Number.isFinite(f.median));
      t.ok(finite.length > 0, `${name}/${row.contender}: has figures`);
      t.ok(
        Object.values(row.ratios).some((r) => typeof r === 'number' && Number.isFinite(r)),
        `${name}/${row.contender}: has a ratio to a peer`,
      );
    }
    const md = readFileSync(`${base}.md`, 'utf8');
    for (const row of result.rows) t.ok(md.includes(`| ${row.label} |`), `${name}: the Markdown table has ${row.label}`);
    t.ok(md.includes(`](${date}-${name}.svg)`), `${name}: the report shows its chart`);
    const svg = readFileSync(`${base}.svg`, 'utf8');
    t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    t.equal(balancedTags(svg), null, `${name}: the SVG's tags balance`);
    t.ok((svg.match(/<rect /g) ?? []).length > result.rows.length, `${name}: the SVG has a bar per contender`);
  }
  const max = readFileSync(join(out, `${date}-http-max.svg`), 'utf8');
  t.ok((max.match(/<polyline /g) ?? []).length >= 8, 'http-max draws a latency curve per contender');
  const contenders = (JSON.parse(readFileSync(join(out, `${date}-http-max.json`), 'utf8')) as { rows: { contender: string }[] }).rows.map(
    (r) => r.contender,
  );
  t.same(contenders, ['direct', 'shoal-l7', 'shoal-l4', 'nginx-1', 'haproxy-1', 'http-proxy', 'nginx-multi', 'haproxy-multi']);
});

t.test('a bad flag is a usage error naming it', async (t) => {
  const bad = await run(process.execPath, [join(root, 'bench', 'run.ts'), '--scenario', 'nope'], { env }).catch(
    (e: { code: number; stderr: string }) => e,
  );
  t.equal((bad as { code: number }).code, 2);
  t.match((bad as { stderr: string }).stderr, /unknown scenario "nope": expected one of http-max/);
  const dur = await run(process.execPath, [join(root, 'bench', 'run.ts'), '--duration', 'ten'], { env }).catch(
    (e: { code: number; stderr: string }) => e,
  );
  t.equal((dur as { code: number }).code, 2);
  t.match((dur as { stderr: string }).stderr, /--duration must be a whole number of at least 1, got "ten"/);
});
