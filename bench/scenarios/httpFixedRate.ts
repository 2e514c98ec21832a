// http-fixed-rate: every contender at a constant 1,000 rps on an open loop, each request timed from
// when it was due (coordinated omission corrected): latency percentiles and what each proxy adds
// over the direct connection measured in the same round.
import { atMost, interleave, errorShare, ratio, type ScenarioContext } from '../lib/context.ts';
import { paced, type PacedResult } from '../lib/loadClients.ts';
import { ProcessGroup } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { CURVE_PERCENTILES, figure, median } from '../lib/stats.ts';
import { startHttpContenders, type HttpContender } from './httpContenders.ts';

export const FIXED_RATE_CONTENDERS: HttpContender[] = ['direct', 'shoal-l7', 'shoal-l4', 'nginx-1', 'haproxy-1', 'http-proxy'];
const SHOWN = ['50', '90', '99', '99.9'];

export async function runHttpFixedRate(
  ctx: ScenarioContext,
  opts: { rate?: number; contenders?: HttpContender[]; sidecarNodeOptions?: string[] } = {},
): Promise<ScenarioResult> {
  const rate = opts.rate ?? (ctx.smoke ? 200 : 1000);
  const group = new ProcessGroup();
  const stage = await startHttpContenders(group, ctx, opts.contenders ?? FIXED_RATE_CONTENDERS, opts);
  const errors = [...stage.errors];
  const runs: Record<string, (PacedResult | null)[]> = Object.fromEntries(stage.contenders.map((c) => [c.key, []]));
  const failed = new Set<string>();
  // Cold figures: the first paced run each contender gets, before its warm-up (kept for the record).
  const cold: Record<string, number> = {};
  try {
    // Warm-up: every contender carries the same rate for 2 s before the measured rounds (JIT,
    // connection pools up to the client's 64 connections).
    if (!ctx.smoke) {
      for (const c of stage.contenders) {
        const res = await paced(c.url, rate, 3).catch(() => undefined);
        if (res) cold[c.key] = res.latencyMs['99'];
      }
    }
    await interleave(
      stage.contenders.map((c) => c.key),
      ctx.rounds,
      async (key, round) => {
        const c = stage.contenders.find((x) => x.key === key)!;
        if (failed.has(key)) return;
        try {
          // One more second than measured: the client drops its first second as warm-up (in smoke, half of one second).
          const res = await paced(c.url, rate, ctx.smoke ? 1 : ctx.duration + 1, undefined, errorShare(ctx));
          runs[key][round] = res;
          ctx.log(
            `http-fixed-rate round ${round + 1} ${key}: p50 ${res.latencyMs['50']} p99 ${res.latencyMs['99']} p99.9 ${res.latencyMs['99.9']} ms`,
          );
        } catch (err) {
          failed.add(key);
          errors.push(`${c.label}: ${(err as Error).message}`);
        }
      },
      ctx.smoke,
    );
  } finally {
    await stage.sidecar?.close();
    await group.stop();
  }
  const direct = runs.direct ?? [];
  const rows: Row[] = stage.contenders.map((c): Row => {
    const list = runs[c.key].filter((x): x is PacedResult => !!x);
    if (failed.has(c.key) || list.length === 0) return { contender: c.key, label: c.label, figures: {}, ratios: {}, error: 'failed' };
    const figures: Row['figures'] = {};
    const ratios: Row['ratios'] = {};
    for (const p of SHOWN) {
      figures[`p${p}`] = figure(
        list.map((x) => x.latencyMs[p]),
        3,
      );
      // Added latency: this contender minus direct in the same round.
      const added = runs[c.key].map((x, i) => (x && direct[i] ? x.latencyMs[p] - direct[i]!.latencyMs[p] : NaN)).filter(Number.isFinite);
      if (c.key !== 'direct' && added.length) figures[`added${p}`] = figure(added, 3);
      ratios[`vsDirect${p}`] = ratio(
        figures[`p${p}`].median,
        direct.length ? median(direct.filter((x): x is PacedResult => !!x).map((x) => x.latencyMs[p])) : undefined,
      );
    }
    const curve: Record<string, number> = {};
    for (const p of CURVE_PERCENTILES) curve[String(p)] = median(list.map((x) => x.latencyMs[String(p)]));
    return { contender: c.key, label: c.label, figures, ratios, curve };
  });
  const added = (key: string) => rows.find((r) => r.contender === key)?.figures.added99?.median ?? null;
  return {
    scenario: 'http-fixed-rate',
    title: `http-fixed-rate: latency each proxy adds at ${rate.toLocaleString('en-US')} rps`,
    method: `An open-loop client (bench/lib/proxyPacedClient.ts, undici, up to 64 connections; wrk2 is not in Debian) sends ${rate} requests per second for ${ctx.duration + 1} s per contender and times every request from the moment it was due, so a stall counts for every request queued behind it (coordinated omission corrected). The first second is warm-up and not measured${ctx.smoke ? '' : ', and before the rounds every contender carries the same rate for 3 s unmeasured'}. ${ctx.rounds} rounds interleaved. Added latency is the contender's percentile minus direct's in the same round; the median over rounds is shown with its spread.${stage.pinnedTo ? ` Single-process proxies are pinned to CPU ${stage.pinnedTo}.` : ''}`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: { rate, seconds: ctx.duration, rounds: ctx.rounds, pinnedCpu: stage.pinnedTo ?? null },
    columns: [
      ...SHOWN.map((p) => ({ key: `p${p}`, label: `p${p}`, unit: 'ms', kind: 'figure' as const })),
      ...SHOWN.map((p) => ({ key: `added${p}`, label: `added p${p}`, unit: 'ms', kind: 'figure' as const })),
      { key: 'vsDirect99', label: 'p99 × direct', unit: '', kind: 'ratio' },
    ],
    rows,
    bars: [{ title: 'Added p99 over direct (lower is better)', figure: 'added99', unit: 'ms' }],
    curveTitle: `Latency by percentile at ${rate} rps (from intended send time)`,
    targets: [
      atMost(`shoal L7 added p99 at ${rate} rps`, 1, added('shoal-l7'), 'ms'),
      atMost(`shoal L4 added p99 at ${rate} rps`, 1, added('shoal-l4'), 'ms'),
    ],
    notes: Object.keys(cold).length
      ? [
          `p99 of each contender's warm-up run (cold, ms): ${Object.entries(cold)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}.`,
        ]
      : [],
    errors,
    raw: { runs, coldP99Ms: cold },
  };
}
