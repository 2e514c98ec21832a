// npm run bench -- --scenario kubernetes --smoke: the Kubernetes benchmark's harness against the real
// control plane (scripts/kube.ts, started and stopped by the benchmark itself): the cluster is loaded
// through the API, discover gets ready, every client gets every change, and the report carries the
// API server's and etcd's own figures. Without Go it is skipped loudly, as the benchmark itself is.
import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KubernetesBenchResult } from '../../bench/kubernetes.ts';
import { kubeForFile } from '../lib/kube.ts';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
// Children run without tap's loaders and coverage hooks: the bench measures plain processes.
const env = { ...process.env };
delete env.NODE_OPTIONS;
delete env.NODE_V8_COVERAGE;

t.test('without Go the benchmark is skipped with one loud line naming what is missing, and writes nothing', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'shoal-bench-k8s-skip-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const file = join(out, 'result.json');
  // No PATH: no go, no openssl (node itself is named by its full path).
  const { stderr } = await run(process.execPath, [join(root, 'bench', 'kubernetes.ts'), '--smoke', '--out', file], {
    cwd: root,
    env: { ...env, PATH: '/nonexistent' },
    timeout: 60_000,
  });
  t.match(
    stderr,
    /^\*\*\* kubernetes benchmark skipped: no Go toolchain .*: the Kubernetes control plane is built from Go modules.* \*\*\*$/m,
  );
  t.notOk(existsSync(file), 'no result is written');
});

// The real control plane: the benchmark starts its own, so this file only asks whether it can.
const kube = kubeForFile(t, import.meta.filename);
if (kube) {
  t.test(
    '--scenario kubernetes --smoke: a real API server loaded through its API, figures for discover, kube-apiserver and etcd',
    async (t) => {
      t.setTimeout(300_000);
      if (!existsSync(join(root, 'dist', 'cli.js'))) {
        t.fail('dist/cli.js is missing: run npm run build first (the benchmark runs the built JavaScript)');
        return;
      }
      const out = mkdtempSync(join(tmpdir(), 'shoal-bench-k8s-smoke-'));
      t.teardown(() => rmSync(out, { recursive: true, force: true }));
      let stderr: string;
      let code = 0;
      try {
        ({ stderr } = await run(
          process.execPath,
          [join(root, 'bench', 'run.ts'), '--scenario', 'kubernetes', '--smoke', '--no-pin', '--out', out],
          { cwd: root, env, timeout: 280_000, maxBuffer: 16 << 20 },
        ));
      } catch (err) {
        ({ code, stderr } = err as { code: number; stderr: string });
      }
      t.equal(code, 0, `exit 0; stderr tail:\n${stderr.split('\n').slice(-20).join('\n')}`);
      const name = readdirSync(out).find((f) => f.endsWith('-kubernetes.json'));
      if (!t.ok(name, 'the report is written')) return;
      const report = JSON.parse(readFileSync(join(out, name!), 'utf8')) as {
        errors: string[];
        raw: KubernetesBenchResult;
        targets: unknown[];
      };
      t.same(report.errors, [], 'it ran');
      const r = report.raw;
      t.match(r.controlPlane, { kubernetes: /^v1\.\d+\.\d+$/, etcd: /^v3\.\d+\.\d+$/ }, 'names the control plane it ran against');
      t.same(r.cluster, { namespaces: 50, services: 200, endpoints: 2000, endpointSlices: 200, apps: 50, dependents: 10, clients: 100 });
      // 50 namespaces + 200 Services + 200 slices + 50 ConfigMaps, each answered 201 by the API server.
      t.equal(r.loading.writes, 500, 'every object was written through the API');
      t.ok(r.loading.ms > 0 && r.loading.writesPerSecond > 0, `loading took ${r.loading.ms} ms`);
      t.ok(r.timeToReadyMs > 0 && r.discoverRssMb.peak > 0, `discover ready in ${r.timeToReadyMs} ms, peak RSS ${r.discoverRssMb.peak} MB`);
      t.equal(r.propagation.samples, 200, 'every client got every one of the 2 changes');
      t.equal(r.propagation.p99PerRoundMs.length, 2);
      t.equal(r.propagation.warmup.p99PerRoundMs.length, 1, 'one warm-up round, reported apart');
      t.ok(r.propagation.warmup.p99WithWarmupMs > 0, 'and the p99 with it counted');
      t.ok(r.propagation.p99Ms >= r.propagation.p50Ms && r.propagation.maxMs >= r.propagation.p99Ms, 'p50 <= p99 <= max');
      for (const n of ['kube-apiserver', 'etcd', 'kube-controller-manager'] as const) {
        const c = r.components[n];
        t.ok(c.cpuSeconds.load > 0, `${n} spent CPU on the load (${c.cpuSeconds.load} s)`);
        t.ok(
          c.rssMb.peak >= c.rssMb.afterLoad && c.rssMb.afterLoad > 10,
          `${n}: RSS ${c.rssMb.afterLoad} MB after loading, peak ${c.rssMb.peak} MB`,
        );
      }
      t.ok(
        r.loadAverage.during.load.samples >= 1 && r.loadAverage.during.rounds.samples >= 1,
        'the load average is sampled in every phase',
      );
      t.equal(report.targets.length, 3, 'the three targets are judged');
      t.match(
        readFileSync(join(out, name!.replace(/json$/, 'md')), 'utf8'),
        /kube-apiserver: CPU .* s loading/,
        "the Markdown report has the API server's figures",
      );
    },
  );
}
