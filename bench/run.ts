// npm run bench: every contender of every scenario in one run, on loopback, from shoal's built
// JavaScript (dist/). Writes bench/results/<date>-<scenario>.{json,md,svg} and <date>-run.{json,md}.
// Exits non-zero only when a contender could not run, never for a slow figure.
//   npm run bench [-- --scenario NAME[,NAME]] [--duration S] [--rounds N] [--smoke] [--no-pin] [--out DIR]
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ScenarioContext } from './lib/context.ts';
import { machineInfo } from './lib/machine.ts';
import { renderMarkdown, renderSvg, type ScenarioResult, type Target } from './lib/report.ts';
import { ensureTools } from './lib/tools.ts';
import { summarize } from './cpuProfileSummary.ts';
import { runCircuitRefusal } from './scenarios/circuitRefusal.ts';
import { runDiscoverPropagation } from './scenarios/discoverPropagation.ts';
import { runDnsScenario } from './scenarios/dns.ts';
import { runHttpFixedRate } from './scenarios/httpFixedRate.ts';
import { runHttpMax } from './scenarios/httpMax.ts';
import { runKubernetesScenario } from './scenarios/kubernetesDiscover.ts';
import { runGatewayRoutesScenario } from './scenarios/gatewayRoutes.ts';
import { runSidecarFootprint } from './scenarios/sidecarFootprint.ts';
import { runTcpThroughput } from './scenarios/tcpThroughput.ts';
import { runTracing } from './scenarios/tracing.ts';
import { runRouteTable } from './scenarios/routeTable.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Scenario {
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
  tools: string[];
  describe: string;
}

/** A scenario whose toolchain is missing throws an error with `skipped: true` (bench/kubernetes.ts without Go). */
const isSkip = (err: unknown): err is Error => (err as { skipped?: unknown } | null | undefined)?.skipped === true;

const SCENARIOS: Record<string, Scenario> = {
  'http-max': {
    run: runHttpMax,
    tools: ['wrk', 'nginx', 'haproxy'],
    describe: 'max rps and latency: direct, shoal L7/L4, nginx, haproxy, http-proxy',
  },
  'http-fixed-rate': {
    run: runHttpFixedRate,
    tools: ['nginx', 'haproxy'],
    describe: 'added latency at 1,000 rps, coordinated omission corrected',
  },
  'tcp-throughput': {
    run: runTcpThroughput,
    tools: ['iperf3', 'nginx', 'haproxy'],
    describe: 'iperf3 through shoal L4, haproxy mode tcp, direct',
  },
  dns: { run: runDnsScenario, tools: ['dnsperf', 'dnsmasq', 'dig'], describe: "dnsperf against shoal's responder and dnsmasq" },
  'discover-propagation': {
    run: runDiscoverPropagation,
    tools: [],
    describe: 'edit → every long-polling sidecar, 100/1,000/10,000 sidecars',
  },
  'circuit-refusal': {
    run: runCircuitRefusal,
    tools: ['nginx'],
    describe: 'MaxRequests: 40 requests over a limit of 10 refused at once, beside nginx limit_conn',
  },
  'sidecar-footprint': {
    run: runSidecarFootprint,
    tools: ['nginx'],
    describe: 'RSS and CPU per 1,000 requests at 0/1,000/5,000 rps beside bare node:http',
  },
};
/** Scenarios run only when named: not part of the default run's 15-minute budget. */
const OPT_IN: Record<string, Scenario> = {
  tracing: {
    run: runTracing,
    tools: ['wrk', 'nginx'],
    describe: '(opt-in) rps and RSS with tracing off, at 1% and at 100% (spans to a real OpenTelemetry Collector; needs Go), beside nginx',
  },
  'route-table': {
    run: runRouteTable,
    tools: ['wrk', 'nginx'],
    describe: '(opt-in) L7 rps with 20 Gateway API rules (the request matching the last) vs 1 route, same sidecar',
  },
  kubernetes: {
    run: runKubernetesScenario,
    tools: [],
    describe:
      '(opt-in) discover --kubernetes against a real kube-apiserver holding 10,000 Services and 100,000 endpoints (bench/kubernetes.ts; needs Go)',
  },
  'gateway-routes': {
    run: runGatewayRoutesScenario,
    tools: [],
    describe:
      "(opt-in) one HTTPRoute change among 1,000 routes over 500 Services on a real kube-apiserver: discover's apply time and propagation to 1,000 sidecars (bench/gatewayRoutes.ts; needs Go)",
  },
};

const usage = `usage: npm run bench [-- options]
  --scenario NAME[,NAME]  one or more of: ${Object.keys(SCENARIOS).join(', ')} (default: all of those), or ${Object.keys(OPT_IN).join(', ')}
  --duration S            seconds per measured run of one contender (default 5)
  --rounds N              interleaved rounds per contender (default 3)
  --smoke                 every scenario tiny (1 s, 1 round, small loads) and side by side: proves the harness works
  --no-pin                do not pin single-process contenders with taskset
  --out DIR               where results go (default bench/results)
  --profile               run shoal's processes under node --cpu-prof; profiles and a summary of where
                          the time went go to DIR/<date>-profiles/ (figures then include the profiler's cost)
scenarios:
${Object.entries({ ...SCENARIOS, ...OPT_IN })
  .map(([k, s]) => `  ${k.padEnd(22)}${s.describe}`)
  .join('\n')}`;

function parseFlags() {
  try {
    return parseArgs({
      allowNegative: true,
      options: {
        scenario: { type: 'string' },
        duration: { type: 'string' },
        rounds: { type: 'string' },
        smoke: { type: 'boolean', default: false },
        pin: { type: 'boolean', default: true },
        out: { type: 'string' },
        profile: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage}`);
    process.exit(2);
  }
}
const values = parseFlags();
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const names = values.scenario
  ? values.scenario
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)
  : Object.keys(SCENARIOS);
const unknown = names.filter((n) => !SCENARIOS[n] && !OPT_IN[n]);
if (unknown.length) {
  console.error(
    `unknown scenario ${unknown.map((u) => JSON.stringify(u)).join(', ')}: expected one of ${Object.keys({ ...SCENARIOS, ...OPT_IN }).join(', ')}`,
  );
  process.exit(2);
}
const scenarioOf = (n: string): Scenario => SCENARIOS[n] ?? OPT_IN[n];
const smoke = values.smoke;
const num = (flag: 'duration' | 'rounds', dflt: number): number => {
  const raw = values[flag];
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    console.error(`--${flag} must be a whole number of at least 1, got ${JSON.stringify(raw)}`);
    process.exit(2);
  }
  return n;
};
const duration = smoke ? num('duration', 1) : num('duration', 5);
const rounds = smoke ? num('rounds', 1) : num('rounds', 3);
const outDir = values.out ?? join(root, 'bench', 'results');
const log = (msg: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${msg}\n`);

for (const f of ['dist/cli.js', 'dist/proxy/main.js', 'dist/dns/main.js', 'dist/discover/main.js']) {
  if (!existsSync(join(root, f))) {
    console.error(`${f} is missing: run npm run build first (npm run bench does)`);
    process.exit(2);
  }
}

const startedAt = new Date();
const date = startedAt.toISOString().slice(0, 10);
const needed = [...new Set(names.flatMap((n) => scenarioOf(n).tools).concat(values.pin ? ['taskset'] : []))];
const tools = ensureTools(needed, log);
for (const a of tools.actions) log(a);
const machine = machineInfo();
const pin = values.pin && tools.found.concat(tools.installed).includes('taskset');
const command = `npm run bench --${values.scenario ? ` --scenario ${names.join(',')}` : ''}${values.duration ? ` --duration ${duration}` : ''}${values.rounds ? ` --rounds ${rounds}` : ''}${smoke ? ' --smoke' : ''}${values.pin ? '' : ' --no-pin'}${values.profile ? ' --profile' : ''}`;
log(
  `bench on ${machine.cores} cores (${machine.cpuModel}), Node ${machine.node}; scenarios ${names.join(', ')}; ${duration} s x ${rounds} rounds${pin ? '; pinning single-process contenders' : ''}`,
);

mkdirSync(outDir, { recursive: true });
const summary: { scenario: string; seconds: number; files: string[]; targets: Target[]; errors: string[]; skipped?: string }[] = [];
async function runScenario(name: string): Promise<void> {
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), `shoal-bench-${name}-`));
  const profileDir = values.profile ? join(outDir, `${date}-profiles`, name) : undefined;
  const ctx: ScenarioContext = { duration, rounds, smoke, pin, dir, machine, command, log, profileDir };
  log(`== ${name}`);
  let result: ScenarioResult;
  const missing = scenarioOf(name).tools.filter((t) => tools.missing.includes(t));
  try {
    if (missing.length) throw new Error(`missing tools: ${missing.join(', ')}`);
    result = await scenarioOf(name).run(ctx);
  } catch (err) {
    if (isSkip(err)) {
      // Loud, and no report: a skipped scenario has no figures to write (nor to overwrite).
      log(`*** ${err.message} ***`);
      summary.push({
        scenario: name,
        seconds: Math.round((performance.now() - t0) / 100) / 10,
        files: [],
        targets: [],
        errors: [],
        skipped: err.message,
      });
      return;
    }
    result = {
      scenario: name,
      title: name,
      method: 'The scenario could not run.',
      command,
      date: new Date().toISOString(),
      machine,
      settings: {},
      columns: [],
      rows: [],
      bars: [],
      targets: [],
      notes: [],
      errors: [`${name}: ${(err as Error).stack ?? (err as Error).message}`],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const seconds = Math.round((performance.now() - t0) / 100) / 10;
  const base = `${date}-${name}`;
  writeFileSync(
    join(outDir, `${base}.json`),
    `${JSON.stringify({ ...result, wallSeconds: seconds, toolActions: tools.actions }, null, 2)}\n`,
  );
  writeFileSync(join(outDir, `${base}.svg`), renderSvg(result));
  writeFileSync(join(outDir, `${base}.md`), renderMarkdown(result, `${base}.svg`));
  if (profileDir) writeProfileSummaries(profileDir);
  summary.push({
    scenario: name,
    seconds,
    files: [`${base}.json`, `${base}.md`, `${base}.svg`],
    targets: result.targets,
    errors: result.errors,
  });
  for (const e of result.errors) log(`could not run: ${e}`);
  log(`${name} done in ${seconds} s`);
}
/** Next to every .cpuprofile, a .txt saying where the time went. */
function writeProfileSummaries(dir: string): void {
  if (!existsSync(dir)) return;
  for (const sub of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!sub.endsWith('.cpuprofile')) continue;
    const file = join(dir, sub);
    const s = summarize(JSON.parse(readFileSync(file, 'utf8')));
    const lines = [
      `${file}: busy ${s.totalMs} ms (idle ${s.idleMs} ms not counted)`,
      '',
      'self time by file:',
      ...s.byFile.map(([k, ms]) => `${((ms / s.totalMs) * 100).toFixed(1).padStart(5)}% ${k}`),
      '',
      'self time by function:',
      ...s.byFunction.map(([k, ms]) => `${((ms / s.totalMs) * 100).toFixed(1).padStart(5)}% ${k}`),
    ];
    writeFileSync(file.replace(/\.cpuprofile$/, '.txt'), `${lines.join('\n')}\n`);
    log(`profile summary: ${file.replace(/\.cpuprofile$/, '.txt')}`);
  }
}

// A smoke run proves the harness works, not the figures: its scenarios run side by side.
if (smoke) await Promise.all(names.map(runScenario));
else for (const name of names) await runScenario(name);
summary.sort((a, b) => names.indexOf(a.scenario) - names.indexOf(b.scenario));

const totalSeconds = Math.round((Date.now() - startedAt.getTime()) / 1000);
const targets = summary.flatMap((s) => s.targets.map((t) => ({ scenario: s.scenario, ...t })));
const errors = summary.flatMap((s) => s.errors);
const m = machine;
const md = [
  `# Benchmark run ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
  '',
  `Machine: ${m.cores} cores, ${m.cpuModel}, ${m.memoryGb} GB, Linux ${m.kernel}, Node ${m.node}; load average at start ${m.loadAverageAtStart.join(' ')}.`,
  `Tools: ${Object.entries(m.tools)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')}.${tools.actions.length ? ` ${tools.actions.join('; ')}.` : ' All found, nothing installed.'}`,
  `Command: \`${command}\` (${duration} s per run, ${rounds} rounds; took ${Math.floor(totalSeconds / 60)} min ${totalSeconds % 60} s).`,
  '',
  '| Scenario | Target | Goal | Measured | Met | Margin |',
  '|---|---|---|---:|---|---|',
  ...targets.map(
    (t) =>
      `| ${t.scenario} | ${t.name} | ${t.goal} | ${t.measured === null ? 'n/a' : t.measured} | ${t.met === null ? 'not measured' : t.met ? 'met' : '**missed**'} | ${t.margin} |`,
  ),
  '',
  '| Scenario | Report | Chart | Took |',
  '|---|---|---|---:|',
  ...summary.map((s) =>
    s.skipped
      ? `| ${s.scenario} | ${s.skipped} | | ${s.seconds} s |`
      : `| ${s.scenario} | [${s.files[1]}](${s.files[1]}) | [${s.files[2]}](${s.files[2]}) | ${s.seconds} s |`,
  ),
  '',
  ...(errors.length ? ['Could not run:', '', ...errors.map((e) => `- ${e.split('\n')[0]}`), ''] : []),
].join('\n');
writeFileSync(join(outDir, `${date}-run.md`), md);
writeFileSync(
  join(outDir, `${date}-run.json`),
  `${JSON.stringify({ date: startedAt.toISOString(), command, machine, toolActions: tools.actions, totalSeconds, scenarios: summary }, null, 2)}\n`,
);
log(`wrote ${relative(process.cwd(), outDir) || '.'}/${date}-*.{json,md,svg} in ${totalSeconds} s`);
if (errors.length) {
  log(`${errors.length} contender(s) could not run`);
  process.exit(1);
}
process.exit(0);
