// npm run bench -- --scenario gateway-routes --smoke: the Gateway API routes benchmark's harness against
// the real control plane (scripts/kube.ts, with the Gateway API CRDs, started and stopped by the
// benchmark): Services, slices, HTTPRoutes and ConfigMaps are written through the API, the routes reach
// the callers' snapshots, every client gets every route change, and discover's apply time of each change
// is read from its log. Bad options are refused with a message naming them. Without Go it is skipped loudly.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { benchRoute, checkOptions, SMOKE, type GatewayRoutesBenchResult } from '../../bench/gatewayRoutes.ts';
import { kubeForFile } from '../lib/kube.ts';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
const env = { ...process.env };
delete env.NODE_OPTIONS;
delete env.NODE_V8_COVERAGE;

t.test('options are checked, the route is a producer route with a weighted split', async (t) => {
  t.doesNotThrow(() => checkOptions(SMOKE));
  t.throws(() => checkOptions({ ...SMOKE, services: 1, apps: 1, dependents: 1 }), /services must be at least 2/);
  t.throws(() => checkOptions({ ...SMOKE, dependents: SMOKE.apps + 1 }), /dependents \(51\) cannot exceed apps \(50\)/);
  t.throws(() => checkOptions({ ...SMOKE, clients: 0 }), /clients must be a positive integer, got 0/);
  t.throws(() => checkOptions({ ...SMOKE, warmupRounds: -1 }), /warmupRounds must be a non-negative integer/);
  t.throws(() => checkOptions({ ...SMOKE, endpointsPerService: 1001 }), /at most 1000/);
  const r = benchRoute('ns-3', 3, 1, 53, [90, 10]);
  t.same(r.spec.parentRefs, [{ group: '', kind: 'Service', name: 'svc-3', port: 80 }]);
  t.same(r.spec.rules[0].backendRefs, [
    { name: 'svc-3', port: 80, weight: 90 },
    { name: 'svc-53', port: 80, weight: 10 },
  ]);
  t.equal(r.spec.rules[0].matches.length, 4);
  t.equal(r.metadata.name, 'svc-3-r1');
});

t.test('a bad option is refused before anything starts, naming it', async (t) => {
  let code = 0;
  let stderr = '';
  try {
    await run(process.execPath, [join(root, 'bench', 'gatewayRoutes.ts'), '--services', '500', '--apps', '10', '--dependents', '20'], {
      cwd: root,
      env,
      timeout: 60_000,
    });
  } catch (err) {
    ({ code, stderr } = err as { code: number; stderr: string });
  }
  t.equal(code, 2);
  t.match(stderr, /dependents \(20\) cannot exceed apps \(10\)/);
});

t.test('without Go the benchmark is skipped with one loud line, and writes nothing', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'shoal-bench-gw-skip-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const file = join(out, 'result.json');
  const { stderr } = await run(process.execPath, [join(root, 'bench', 'gatewayRoutes.ts'), '--smoke', '--out', file], {
    cwd: root,
    env: { ...env, PATH: '/nonexistent' },
    timeout: 60_000,
  });
  t.match(stderr, /^\*\*\* gateway-routes benchmark skipped: no Go toolchain .* \*\*\*$/m);
  t.notOk(existsSync(file), 'no result is written');
});

const kube = kubeForFile(t, import.meta.filename);
if (kube) {
  t.test('--scenario gateway-routes --smoke: routes loaded through the API, every client gets every route change', async (t) => {
    t.setTimeout(300_000);
    if (!existsSync(join(root, 'dist', 'cli.js'))) {
      t.fail('dist/cli.js is missing: run npm run build first (the benchmark runs the built JavaScript)');
      return;
    }
    const out = mkdtempSync(join(tmpdir(), 'shoal-bench-gw-smoke-'));
    t.teardown(() => rmSync(out, { recursive: true, force: true }));
    let stderr: string;
    let code = 0;
    try {
      ({ stderr } = await run(
        process.execPath,
        [join(root, 'bench', 'run.ts'), '--scenario', 'gateway-routes', '--smoke', '--no-pin', '--out', out],
        { cwd: root, env, timeout: 280_000, maxBuffer: 16 << 20 },
      ));
    } catch (err) {
      ({ code, stderr } = err as { code: number; stderr: string });
    }
    t.equal(code, 0, `exit 0; stderr tail:\n${stderr.split('\n').slice(-20).join('\n')}`);
    const name = readdirSync(out).find((f) => f.endsWith('-gateway-routes.json'));
    if (!t.ok(name, 'the report is written')) return;
    const report = JSON.parse(readFileSync(join(out, name!), 'utf8')) as {
      errors: string[];
      raw: GatewayRoutesBenchResult;
      targets: unknown[];
    };
    t.same(report.errors, [], 'it ran');
    const r = report.raw;
    t.match(r.controlPlane, { kubernetes: /^v1\.\d+\.\d+$/, etcd: /^v3\.\d+\.\d+$/, gatewayApi: /^v1\.\d+\.\d+$/ });
    // app-0 depends on 5 Services, each with 2 routes of 4 matches: 40 route entries from HTTPRoutes.
    t.same(r.cluster, {
      namespaces: 50,
      services: 100,
      endpoints: 400,
      httpRoutes: 200,
      routeRulesInSnapshot: 40,
      apps: 50,
      dependents: 10,
      clients: 100,
    });
    // 50 namespaces + 100 Services + 100 slices + 200 routes + 50 ConfigMaps.
    t.equal(r.loading.writes, 500, 'every object was written through the API');
    t.equal(r.propagation.samples, 200, 'every client got every one of the 2 changes');
    t.equal(r.propagation.warmup.p99PerRoundMs.length, 1, 'one warm-up round, reported apart');
    t.ok(r.propagation.p99Ms >= r.propagation.p50Ms && r.propagation.maxMs >= r.propagation.p99Ms, 'p50 <= p99 <= max');
    t.equal(r.apply.applyMsPerRound.length, 2);
    t.ok(
      r.apply.applyMsPerRound.every((ms) => ms > 0),
      `discover's apply per change: ${r.apply.applyMsPerRound.join(', ')} ms`,
    );
    t.same(r.apply.rebuiltPerRound, [10, 10], "each change rebuilt the 10 dependent apps' snapshots");
    t.equal(r.propagation.apiWriteMs.length, 2);
    t.equal(r.baseline?.rounds, 2, 'as many EndpointSlice changes, interleaved, as the baseline');
    t.ok(
      r.baseline!.applyMsPerRound.every((ms) => ms > 0) && r.baseline!.p99Ms > 0,
      `baseline apply ${r.baseline!.applyMsPerRound.join(', ')} ms`,
    );
    t.ok(
      r.statusWrittenMs >= 0 && r.settleMs >= r.statusWrittenMs,
      `every route's status written ${r.statusWrittenMs} ms after ready, rounds from ${r.settleMs} ms`,
    );
    t.equal(r.otherRoutesWrittenDuringRounds, 0, 'a change of one route rewrites no other route');
    t.ok(r.loadAverage.during.rounds.samples >= 1, 'the load average is sampled in the rounds');
    t.equal(report.targets.length, 1, 'the propagation target is judged');
    t.match(readFileSync(join(out, name!.replace(/json$/, 'md')), 'utf8'), /Per round: p99 .* ms; apply .* ms \(rebuilt 10, 10 apps\)/);
  });
}
