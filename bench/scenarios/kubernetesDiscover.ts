// kubernetes (opt-in: npm run bench -- --scenario kubernetes): discover --kubernetes against the real
// control plane of scripts/kube.ts holding a large cluster written through its API, measured by
// bench/kubernetes.ts (its owner's script), shown as a report like the other scenarios. Its peer is its
// own target: there is no other discover. Without Go the scenario is skipped (KubernetesBenchSkipped).
import { FULL, runKubernetesBench, SMOKE } from '../kubernetes.ts';
import type { ScenarioContext } from '../lib/context.ts';
import type { Row, ScenarioResult, Target } from '../lib/report.ts';
import { figure } from '../lib/stats.ts';

export async function runKubernetesScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const opts = ctx.smoke ? SMOKE : { ...FULL, rounds: Math.max(ctx.rounds, FULL.rounds) };
  const r = await runKubernetesBench({ ...opts, cpuProfDir: ctx.profileDir, log: ctx.log });
  const targets: Target[] = Object.entries(r.targets).map(([name, t]) => ({
    name,
    goal: t.target,
    measured: t.measured,
    met: t.met,
    margin: t.met ? 'within the target' : `${t.measured} against ${t.target}`,
  }));
  const api = r.components['kube-apiserver'];
  const etcd = r.components.etcd;
  const row: Row = {
    contender: 'discover-kubernetes',
    label: 'shoal discover --kubernetes',
    figures: {
      p99: figure(r.propagation.p99PerRoundMs, 2),
      max: figure(r.propagation.maxPerRoundMs, 2),
      timeToReadyMs: figure([r.timeToReadyMs], 0),
      rssMb: figure([r.discoverRssMb.peak], 1),
      loadingS: figure([r.loading.ms / 1000], 1),
      apiCpuS: figure([api.cpuSeconds.total], 1),
      apiRssMb: figure([api.rssMb.peak], 0),
      etcdCpuS: figure([etcd.cpuSeconds.total], 1),
      etcdRssMb: figure([etcd.rssMb.peak], 0),
    },
    ratios: {},
  };
  const la = r.loadAverage.during;
  return {
    scenario: 'kubernetes',
    title: `kubernetes: discover on ${r.cluster.services.toLocaleString('en-US')} Services and ${r.cluster.endpoints.toLocaleString('en-US')} endpoints`,
    method: `bench/kubernetes.ts: a real kube-apiserver ${r.controlPlane.kubernetes} with etcd ${r.controlPlane.etcd} and kube-controller-manager (scripts/kube.ts), loaded through its API with ${r.loading.concurrency} writes in flight: ${r.cluster.services} selector-less Services in ${r.cluster.namespaces} namespaces, each with one EndpointSlice (${r.cluster.endpoints} endpoints in all) managed by the bench, not the controller, and ${r.cluster.apps} apps with mesh ConfigMaps. discover starts from the built JavaScript with the admin kubeconfig; ${r.cluster.clients} long-poll clients hold snapshots of the ${r.cluster.dependents} apps depending on the Service that changes; ${r.propagation.rounds} EndpointSlice updates after ${r.propagation.warmup.rounds} warm-up updates (reported apart: p99 per round ${r.propagation.warmup.p99PerRoundMs.join(', ')} ms; p99 with them counted ${r.propagation.warmup.p99WithWarmupMs} ms), each timed from the API write until every client has the new version. p99 and max per round, median over rounds with the spread. kube-apiserver's and etcd's CPU seconds (whole run) and peak RSS from /proc.`,
    command: ctx.command,
    date: r.date,
    machine: ctx.machine,
    settings: { cluster: r.cluster, controlPlane: r.controlPlane, loading: r.loading },
    columns: [
      { key: 'p99', label: 'propagation p99', unit: 'ms', kind: 'figure' },
      { key: 'max', label: 'propagation max', unit: 'ms', kind: 'figure' },
      { key: 'timeToReadyMs', label: 'time to ready', unit: 'ms', kind: 'figure' },
      { key: 'rssMb', label: 'peak RSS', unit: 'MB', kind: 'figure' },
      { key: 'loadingS', label: 'loading', unit: 's', kind: 'figure' },
      { key: 'apiCpuS', label: 'kube-apiserver CPU', unit: 's', kind: 'figure' },
      { key: 'apiRssMb', label: 'kube-apiserver peak RSS', unit: 'MB', kind: 'figure' },
      { key: 'etcdCpuS', label: 'etcd CPU', unit: 's', kind: 'figure' },
      { key: 'etcdRssMb', label: 'etcd peak RSS', unit: 'MB', kind: 'figure' },
    ],
    rows: [row],
    bars: [{ title: 'Propagation p99 per change (lower is better)', figure: 'p99', unit: 'ms' }],
    targets,
    notes: [
      `Loading: ${r.loading.writes} writes in ${(r.loading.ms / 1000).toFixed(1)} s (${r.loading.writesPerSecond} writes/s, ${r.loading.retries} retried); Services and slices ${(r.loading.phasesMs.servicesAndSlices / 1000).toFixed(1)} s, ConfigMaps ${(r.loading.phasesMs.configMaps / 1000).toFixed(1)} s.`,
      `discover's RSS: ${r.discoverRssMb.afterReady} MB after ready, ${r.discoverRssMb.afterRounds} MB after the rounds, peak ${r.discoverRssMb.peak} MB; list and build ${r.listAndBuildMs ?? 'n/a'} ms; ${r.discoverCpuSecondsToReady} CPU-seconds to ready.`,
      ...(['kube-apiserver', 'etcd', 'kube-controller-manager'] as const).map((n) => {
        const c = r.components[n];
        return `${n}: CPU ${c.cpuSeconds.load} s loading, ${c.cpuSeconds.discoverStart} s during discover's start, ${c.cpuSeconds.rounds} s in the rounds; RSS ${c.rssMb.afterLoad} MB after loading, ${c.rssMb.afterDiscoverReady} MB after discover's start, peak ${c.rssMb.peak} MB.`;
      }),
      `Load average (1 min, sampled every 5 s) on ${r.machine.cores} cores: ${la.load.min}-${la.load.max} loading, ${la.discoverStart.min}-${la.discoverStart.max} during discover's start, ${la.rounds.min}-${la.rounds.max} in the rounds.`,
    ],
    errors: [],
    raw: r,
  };
}
