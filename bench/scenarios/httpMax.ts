// http-max: keep-alive HTTP/1.1, 1 KB responses, 50 connections, wrk closed loop: maximum rps and
// latency percentiles of every contender in front of the same backend, interleaved over rounds.
import { atLeast, interleave, errorShare, ratio, type ScenarioContext } from '../lib/context.ts';
import { wrk } from '../lib/loadClients.ts';
import { ProcessGroup } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { CURVE_PERCENTILES, figure, median } from '../lib/stats.ts';
import { startHttpContenders, type HttpContender } from './httpContenders.ts';

export const HTTP_MAX_CONTENDERS: HttpContender[] = [
  'direct',
  'shoal-l7',
  'shoal-l4',
  'nginx-1',
  'haproxy-1',
  'http-proxy',
  'nginx-multi',
  'haproxy-multi',
];

export async function runHttpMax(
  ctx: ScenarioContext,
  opts: { connections?: number; contenders?: HttpContender[]; sidecarNodeOptions?: string[] } = {},
): Promise<ScenarioResult> {
  const connections = opts.connections ?? 50;
  const group = new ProcessGroup();
  const stage = await startHttpContenders(group, ctx, opts.contenders ?? HTTP_MAX_CONTENDERS, opts);
  const errors = [...stage.errors];
  const rps: Record<string, number[]> = {};
  const curves: Record<string, Record<string, number>[]> = {};
  const failed = new Set<string>();
  try {
    const warm = ctx.smoke ? 0 : 1;
    for (const c of stage.contenders) {
      rps[c.key] = [];
      curves[c.key] = [];
      if (warm) await wrk(c.url, warm, connections).catch(() => undefined);
    }
    await interleave(
      stage.contenders.map((c) => c.key),
      ctx.rounds,
      async (key, round) => {
        const c = stage.contenders.find((x) => x.key === key)!;
        if (failed.has(key)) return;
        try {
          const res = await wrk(c.url, ctx.duration, connections, undefined, errorShare(ctx));
          rps[key].push(res.rps);
          curves[key].push(res.latencyMs);
          ctx.log(`http-max round ${round + 1} ${key}: ${Math.round(res.rps)} rps, p99 ${res.latencyMs['99']} ms`);
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
  const med = (k: string) => (rps[k]?.length ? median(rps[k]) : undefined);
  const rows: Row[] = stage.contenders.map((c): Row => {
    if (failed.has(c.key) || !rps[c.key].length) return { contender: c.key, label: c.label, figures: {}, ratios: {}, error: 'failed' };
    const curve: Record<string, number> = {};
    for (const p of CURVE_PERCENTILES) curve[String(p)] = median(curves[c.key].map((x) => x[String(p)]));
    return {
      contender: c.key,
      label: c.label,
      figures: {
        rps: figure(rps[c.key], 0),
        p50: figure(
          curves[c.key].map((x) => x['50']),
          3,
        ),
        p99: figure(
          curves[c.key].map((x) => x['99']),
          3,
        ),
      },
      ratios: { vsDirect: ratio(med(c.key), med('direct')), vsNginx1: ratio(med(c.key), med('nginx-1')) },
      curve,
    };
  });
  const pinned = stage.pinnedTo
    ? `Single-process proxies (shoal, nginx 1 worker, haproxy nbthread 1, http-proxy) are pinned with taskset to CPU ${stage.pinnedTo}, so "one worker" means one core, as a 1-CPU limit would; Node's helper threads (GC) cannot borrow the other core. wrk, the backend and the multi-worker peers are not pinned.`
    : 'No process is pinned.';
  return {
    scenario: 'http-max',
    title: 'http-max: maximum requests per second through each proxy',
    method: `wrk -t2 -c${connections} for ${ctx.duration} s per contender (keep-alive HTTP/1.1 GET, 1 KB body), ${ctx.rounds} rounds interleaved with the order rotated each round, after ${ctx.smoke ? 'no' : 'a 1 s'} warm-up per contender. The backend is nginx (1 worker) serving a static 1 KB file; every contender proxies to it. ${pinned} wrk's latency is closed-loop (each connection waits for its answer), so it shows latency at saturation, not at a given rate: see http-fixed-rate for that.`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: { connections, duration: ctx.duration, rounds: ctx.rounds, pinnedCpu: stage.pinnedTo ?? null },
    columns: [
      { key: 'rps', label: 'rps', unit: '', kind: 'figure' },
      { key: 'vsDirect', label: '× direct', unit: '', kind: 'ratio' },
      { key: 'vsNginx1', label: '× nginx 1 worker', unit: '', kind: 'ratio' },
      { key: 'p50', label: 'p50', unit: 'ms', kind: 'figure' },
      { key: 'p99', label: 'p99', unit: 'ms', kind: 'figure' },
    ],
    rows,
    bars: [{ title: 'Requests per second (higher is better)', figure: 'rps', unit: 'rps' }],
    curveTitle: `Latency at saturation by percentile (wrk, ${connections} connections)`,
    targets: [
      atLeast('shoal L7 rps vs single-worker nginx', 0.75, ratio(med('shoal-l7'), med('nginx-1')), 'nginx 1 worker'),
      atLeast('shoal L4 rps vs direct', 0.9, ratio(med('shoal-l4'), med('direct')), 'direct'),
    ],
    notes: [],
    errors,
    raw: { rps, curves },
  };
}
