// gateway-routes (opt-in: npm run bench -- --scenario gateway-routes): discover --kubernetes against the
// real control plane of scripts/kube.ts holding 1,000 HTTPRoutes over 500 Services written through its
// API, measured by bench/gatewayRoutes.ts: the apply time of one route change and its propagation to
// 1,000 long-polling sidecars. Without Go the scenario is skipped (KubernetesBenchSkipped).
import { FULL, runGatewayRoutesBench, SMOKE } from '../gatewayRoutes.ts';
import type { ScenarioContext } from '../lib/context.ts';
import type { Row, ScenarioResult, Target } from '../lib/report.ts';
import { figure } from '../lib/stats.ts';

export async function runGatewayRoutesScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const opts = ctx.smoke ? SMOKE : { ...FULL, rounds: Math.max(ctx.rounds, FULL.rounds) };
  const r = await runGatewayRoutesBench({ ...opts, cpuProfDir: ctx.profileDir, log: ctx.log });
  const targets: Target[] = Object.entries(r.targets).map(([name, t]) => ({
    name,
    goal: t.target,
    measured: t.measured,
    met: t.met,
    margin: t.met ? 'within the target' : `${t.measured} against ${t.target}`,
  }));
  const p = r.propagation;
  const row: Row = {
    contender: 'discover-gateway-routes',
    label: 'shoal discover --kubernetes',
    figures: {
      p99: figure(p.p99PerRoundMs, 2),
      max: figure(p.maxPerRoundMs, 2),
      applyMs: figure(r.apply.applyMsPerRound, 2),
      apiWriteMs: figure(p.apiWriteMs, 2),
      cpuMs: figure(p.discoverCpuMsPerRound, 0),
      rssMb: figure([r.discoverRssMb.peak], 1),
      timeToReadyMs: figure([r.timeToReadyMs], 0),
    },
    ratios: {},
  };
  const b = r.baseline;
  const rows: Row[] = [row];
  if (b !== null) {
    rows.push({
      contender: 'discover-endpoint-change',
      label: 'baseline: EndpointSlice change of the same Service',
      figures: {
        p99: figure(b.p99PerRoundMs, 2),
        applyMs: figure(b.applyMsPerRound, 2),
        apiWriteMs: figure(b.apiWriteMs, 2),
        cpuMs: figure(b.discoverCpuMsPerRound, 0),
      },
      ratios: {},
    });
  }
  const la = r.loadAverage.during;
  const c = r.cluster;
  return {
    scenario: 'gateway-routes',
    title: `gateway-routes: one HTTPRoute change among ${c.httpRoutes.toLocaleString('en-US')} routes over ${c.services.toLocaleString('en-US')} Services, to ${c.clients.toLocaleString('en-US')} sidecars`,
    method: `bench/gatewayRoutes.ts: a real kube-apiserver ${r.controlPlane.kubernetes} with etcd ${r.controlPlane.etcd} and the Gateway API ${r.controlPlane.gatewayApi} CRDs (scripts/kube.ts), loaded through its API with ${r.loading.concurrency} writes in flight: ${c.services} selector-less Services in ${c.namespaces} namespaces, each with one EndpointSlice (${c.endpoints} endpoints in all), ${c.httpRoutes} producer HTTPRoutes (parentRef: a Service; 4 matches and a weighted split between two Services of the namespace), and ${c.apps} apps with mesh ConfigMaps, ${c.dependents} of which depend on svc-0. discover starts from the built JavaScript with the admin kubeconfig; ${c.clients} long-poll clients hold the snapshots of those ${c.dependents} apps. Each round flips the split weights of svc-0-r0 (a PUT through the API), timed from the write until every client has the new version (checked: the new weights are in the snapshot); discover's apply time is its 'topology applied' log line (applyMs, store apply of the rebuilt apps). ${p.rounds} rounds after ${p.warmup.rounds} warm-up rounds (reported apart: p99 ${p.warmup.p99PerRoundMs.join(', ')} ms, apply ${r.apply.warmupApplyMs.join(', ')} ms). Each route change is followed by an EndpointSlice change of svc-0 (same apps rebuilt) as a baseline. p99 and max per round, median over rounds with the spread.`,
    command: ctx.command,
    date: r.date,
    machine: ctx.machine,
    settings: { cluster: r.cluster, controlPlane: r.controlPlane, loading: r.loading },
    columns: [
      { key: 'p99', label: 'propagation p99', unit: 'ms', kind: 'figure' },
      { key: 'max', label: 'propagation max', unit: 'ms', kind: 'figure' },
      { key: 'applyMs', label: 'discover apply', unit: 'ms', kind: 'figure' },
      { key: 'apiWriteMs', label: 'API write', unit: 'ms', kind: 'figure' },
      { key: 'cpuMs', label: 'discover CPU per round', unit: 'ms', kind: 'figure' },
      { key: 'rssMb', label: 'peak RSS', unit: 'MB', kind: 'figure' },
      { key: 'timeToReadyMs', label: 'time to ready', unit: 'ms', kind: 'figure' },
    ],
    rows,
    bars: [{ title: 'Propagation p99 per route change (lower is better)', figure: 'p99', unit: 'ms' }],
    targets,
    notes: [
      ...(b === null
        ? []
        : [
            `Baseline, interleaved with the route changes: ${b.rounds} EndpointSlice updates of svc-0 (one endpoint flips ready; the same ${c.dependents} apps rebuilt): p50 ${b.p50Ms} ms, p99 ${b.p99Ms} ms; p99 per round ${b.p99PerRoundMs.join(', ')} ms; apply ${b.applyMsPerRound.join(', ')} ms; discover CPU ${b.discoverCpuMsPerRound.join(', ')} ms.`,
          ]),
      `Per round: p99 ${p.p99PerRoundMs.join(', ')} ms; apply ${r.apply.applyMsPerRound.join(', ')} ms (rebuilt ${r.apply.rebuiltPerRound.join(', ')} apps); API write ${p.apiWriteMs.join(', ')} ms; discover CPU ${p.discoverCpuMsPerRound.join(', ')} ms (10 ms ticks). Over all rounds: p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms, max ${p.maxMs} ms (${p.samples} samples); with the warm-up rounds counted, p99 ${p.warmup.p99WithWarmupMs} ms.`,
      `Loading: ${r.loading.writes} writes in ${(r.loading.ms / 1000).toFixed(1)} s (${r.loading.writesPerSecond} writes/s, ${r.loading.retries} retried); Services and slices ${(r.loading.phasesMs.servicesAndSlices / 1000).toFixed(1)} s, routes ${(r.loading.phasesMs.routes / 1000).toFixed(1)} s, ConfigMaps ${(r.loading.phasesMs.configMaps / 1000).toFixed(1)} s. app-0's snapshot holds ${c.routeRulesInSnapshot} route entries from HTTPRoutes.`,
      `discover: ready in ${r.timeToReadyMs} ms (lists and first build ${r.listAndBuildMs ?? 'n/a'} ms, ${r.discoverCpuSecondsToReady} CPU-seconds), every HTTPRoute's status written by it ${r.statusWrittenMs} ms later, the rounds started ${r.settleMs} ms after ready; RSS ${r.discoverRssMb.afterReady} MB after ready, ${r.discoverRssMb.afterRounds} MB after the rounds, peak ${r.discoverRssMb.peak} MB.`,
      `Control plane during the rounds (${r.otherRoutesWrittenDuringRounds} HTTPRoutes other than the changed one written): ${Object.entries(
        r.components,
      )
        .map(([n, x]) => `${n} ${x.cpuSecondsRounds} CPU-s, RSS ${x.rssMbEnd} MB`)
        .join('; ')}.`,
      `Load average (1 min, sampled every 5 s) on ${r.machine.cores} shared cores: ${la.load.min}-${la.load.max} loading, ${la.discoverStart.min}-${la.discoverStart.max} during discover's start, ${la.rounds.min}-${la.rounds.max} in the rounds; ${r.loadAverage.atStart.join(' ')} at start, ${r.loadAverage.atEnd.join(' ')} at the end.`,
    ],
    errors: [],
    raw: r,
  };
}
