// kubernetes (opt-in: npm run bench -- --scenario kubernetes): discover --kubernetes against a fake
// API server holding a large cluster, measured by bench/kubernetes.ts (its owner's script), shown
// as a report like the other scenarios. Its peer is its own target: there is no other discover.
import { runKubernetesBench } from '../kubernetes.ts';
import type { ScenarioContext } from '../lib/context.ts';
import type { Row, ScenarioResult, Target } from '../lib/report.ts';
import { figure } from '../lib/stats.ts';

export async function runKubernetesScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const opts = ctx.smoke
    ? { services: 200, endpoints: 2000, clients: 100, rounds: 2, apps: 50, dependents: 10 }
    : { services: 10000, endpoints: 100000, clients: 1000, rounds: Math.max(ctx.rounds, 5), apps: 1000, dependents: 100 };
  const r = await runKubernetesBench({ ...opts, cpuProfDir: ctx.profileDir, log: ctx.log });
  const targets: Target[] = Object.entries(r.targets).map(([name, t]) => ({
    name, goal: t.target, measured: t.measured, met: t.met, margin: t.met ? 'within the target' : `${t.measured} against ${t.target}`,
  }));
  const row: Row = {
    contender: 'discover-kubernetes',
    label: 'shoal discover --kubernetes',
    figures: {
      p99: figure(r.propagation.p99PerRoundMs, 2),
      max: figure(r.propagation.maxPerRoundMs, 2),
      timeToReadyMs: figure([r.timeToReadyMs], 0),
      rssMb: figure([r.discoverRssMb.afterRounds], 1),
    },
    ratios: {},
  };
  return {
    scenario: 'kubernetes',
    title: `kubernetes: discover on ${r.cluster.services.toLocaleString('en-US')} Services and ${r.cluster.endpoints.toLocaleString('en-US')} endpoints`,
    method: `bench/kubernetes.ts: a fake Kubernetes API server with ${r.cluster.services} Services (${r.cluster.endpointSlices} EndpointSlices), ${r.cluster.apps} apps with mesh ConfigMaps; ${r.cluster.clients} long-poll clients hold snapshots of the ${r.cluster.dependents} apps depending on the Service that changes; ${r.propagation.rounds} EndpointSlice changes, each timed from the API write until every client has the new version. p99 and max per round, median over rounds with the spread.`,
    command: ctx.command,
    date: r.date,
    machine: ctx.machine,
    settings: { cluster: r.cluster },
    columns: [
      { key: 'p99', label: 'propagation p99', unit: 'ms', kind: 'figure' },
      { key: 'max', label: 'propagation max', unit: 'ms', kind: 'figure' },
      { key: 'timeToReadyMs', label: 'time to ready', unit: 'ms', kind: 'figure' },
      { key: 'rssMb', label: 'RSS', unit: 'MB', kind: 'figure' },
    ],
    rows: [row],
    bars: [{ title: 'Propagation p99 per change (lower is better)', figure: 'p99', unit: 'ms' }],
    targets,
    notes: [`discover's RSS: ${r.discoverRssMb.afterReady} MB after ready, ${r.discoverRssMb.afterRounds} MB after the rounds, peak ${r.discoverRssMb.peak} MB; list and build ${r.listAndBuildMs ?? 'n/a'} ms.`],
    errors: [],
    raw: r,
  };
}
