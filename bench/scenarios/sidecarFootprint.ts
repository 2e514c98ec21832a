// sidecar-footprint: a fresh shoal sidecar (L7 route to the backend) beside a bare node:http server
// answering the same 1 KB body, at 0, 1,000 and 5,000 rps: resident memory and CPU seconds per
// 1,000 requests, each as a ratio to the bare server at the same load.
import { atMost, errorShare, interleave, profileArgs, proxyCpu, ratio, type ScenarioContext } from '../lib/context.ts';
import { DEPLOYED_NODE_FLAGS, startBackend, startBareServer, startShoal, type ShoalSidecar } from '../lib/httpPeers.ts';
import { paced } from '../lib/loadClients.ts';
import { cpuSeconds, memMb, ProcessGroup, sleep } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { figure, median } from '../lib/stats.ts';

interface Sample {
  rssMb: number;
  peakRssMb: number;
  anonMb: number;
  cpuSeconds: number;
  requests: number;
}

export async function runSidecarFootprint(
  ctx: ScenarioContext,
  opts: { rates?: number[]; sidecarNodeOptions?: string[] } = {},
): Promise<ScenarioResult> {
  const rates = opts.rates ?? (ctx.smoke ? [0, 200, 1000] : [0, 1000, 5000]);
  const seconds = ctx.smoke ? 0.5 : ctx.duration;
  const group = new ProcessGroup();
  const cpu = proxyCpu(ctx);
  const errors: string[] = [];
  const targets: { key: string; label: string; url: string; pid: number }[] = [];
  const samples: Record<string, Sample[]> = {};
  const failed = new Set<string>();
  let sidecar: ShoalSidecar | undefined;
  let idleRss: Record<string, number>;
  try {
    const backendPort = await startBackend(group, ctx.dir);
    try {
      sidecar = await startShoal(group, ctx.dir, {
        backendPort,
        cpus: cpu,
        nodeOptions: [...(opts.sidecarNodeOptions ?? []), ...profileArgs(ctx, 'sidecar')],
      });
      targets.push({
        key: 'shoal',
        label: `shoal sidecar, L7 route${cpu ? `, pinned to CPU ${cpu}` : ''}`,
        url: sidecar.l7Url,
        pid: sidecar.pid,
      });
    } catch (err) {
      errors.push(`shoal sidecar: ${(err as Error).message}`);
    }
    try {
      const bare = await startBareServer(group, cpu);
      targets.push({ key: 'bare', label: `bare node:http server${cpu ? `, pinned to CPU ${cpu}` : ''}`, url: bare.url, pid: bare.pid });
    } catch (err) {
      errors.push(`bare node:http: ${(err as Error).message}`);
    }
    idleRss = Object.fromEntries(targets.map((t) => [t.key, memMb(t.pid).rss]));
    for (const rate of rates) {
      for (const t of targets) samples[`${t.key}@${rate}`] = [];
      await interleave(
        targets.map((t) => t.key),
        ctx.rounds,
        async (key, round) => {
          const t = targets.find((x) => x.key === key)!;
          if (failed.has(key)) return;
          try {
            let s: Sample;
            if (rate === 0) {
              const cpu0 = cpuSeconds(t.pid);
              await sleep(seconds * 1000);
              const m = memMb(t.pid);
              s = { rssMb: m.rss, peakRssMb: m.peak, anonMb: m.anon, cpuSeconds: cpuSeconds(t.pid) - cpu0, requests: 0 };
            } else {
              const res = await paced(t.url, rate, seconds, t.pid, errorShare(ctx));
              s = {
                rssMb: res.rssMb!,
                peakRssMb: res.peakRssMb!,
                anonMb: res.anonMb!,
                cpuSeconds: res.cpuSeconds!,
                requests: res.requests,
              };
            }
            samples[`${key}@${rate}`].push(s);
            ctx.log(
              `sidecar-footprint round ${round + 1} ${key} at ${rate} rps: RSS ${s.rssMb} MB, CPU ${s.cpuSeconds.toFixed(2)} s for ${s.requests} requests`,
            );
          } catch (err) {
            failed.add(key);
            errors.push(`${t.label} at ${rate} rps: ${(err as Error).message}`);
          }
        },
        ctx.smoke,
      );
    }
  } finally {
    await sidecar?.close();
    await group.stop();
  }
  const rows: Row[] = [];
  for (const rate of rates) {
    const group = rate === 0 ? 'idle (0 rps)' : `${rate.toLocaleString('en-US')} rps`;
    const stat = (key: string, f: (s: Sample) => number) => {
      const list = samples[`${key}@${rate}`] ?? [];
      return list.length ? median(list.map(f)) : undefined;
    };
    const per1000 = (s: Sample) => (s.requests ? (s.cpuSeconds / s.requests) * 1000 : NaN);
    for (const t of targets) {
      const list = samples[`${t.key}@${rate}`] ?? [];
      if (failed.has(t.key) || list.length === 0) {
        rows.push({ contender: t.key, label: t.label, group, figures: {}, ratios: {}, error: 'failed' });
        continue;
      }
      rows.push({
        contender: t.key,
        label: t.label,
        group,
        figures: {
          rssMb: figure(
            list.map((s) => s.rssMb),
            1,
          ),
          peakRssMb: figure(
            list.map((s) => s.peakRssMb),
            1,
          ),
          anonMb: figure(
            list.map((s) => s.anonMb),
            1,
          ),
          cpuPerSecond: figure(
            list.map((s) => s.cpuSeconds / seconds),
            3,
          ),
          ...(rate > 0 ? { cpuPer1000: figure(list.map(per1000), 4) } : {}),
        },
        ratios: {
          rssVsBare: ratio(
            stat(t.key, (s) => s.rssMb),
            stat('bare', (s) => s.rssMb),
          ),
          cpuVsBare:
            rate > 0
              ? ratio(stat(t.key, per1000), stat('bare', per1000))
              : ratio(
                  stat(t.key, (s) => s.cpuSeconds),
                  stat('bare', (s) => s.cpuSeconds),
                ),
        },
      });
    }
  }
  const rss1000 = rows.find((r) => r.contender === 'shoal' && r.group === '1,000 rps')?.figures.rssMb?.median ?? null;
  return {
    scenario: 'sidecar-footprint',
    title: 'sidecar-footprint: memory and CPU of the sidecar beside a bare node:http server',
    method: `A fresh sidecar (routing to the 1 KB nginx backend over L7) and a bare node:http server answering the same 1 KB body, each driven by the paced client at ${rates.join(', ')} rps for ${seconds} s (0 rps: left idle), ${ctx.rounds} rounds interleaved, loads in rising order. Both run with the Node flags the sidecar gets in a pod (${DEPLOYED_NODE_FLAGS.join(' ')}). RSS is read from /proc at the end of each run (it includes some 38 MB of the node binary's file-backed pages, shared by every Node process; the private, anonymous part is shown too); CPU is user+system seconds of the process over the run, divided by the requests it served (per 1,000). Idle RSS right after start: ${Object.entries(
      idleRss,
    )
      .map(([k, v]) => `${k} ${v} MB`)
      .join(', ')}.${cpu ? ` Both are pinned to CPU ${cpu}.` : ''}`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: { rates, seconds, rounds: ctx.rounds, pinnedCpu: cpu ?? null, idleRssMb: idleRss },
    columns: [
      { key: 'rssMb', label: 'RSS', unit: 'MB', kind: 'figure' },
      { key: 'rssVsBare', label: 'RSS × bare', unit: '', kind: 'ratio' },
      { key: 'cpuPer1000', label: 'CPU per 1,000 req', unit: 's', kind: 'figure' },
      { key: 'cpuVsBare', label: 'CPU × bare', unit: '', kind: 'ratio' },
      { key: 'cpuPerSecond', label: 'CPU per second', unit: 's', kind: 'figure' },
      { key: 'peakRssMb', label: 'peak RSS', unit: 'MB', kind: 'figure' },
      { key: 'anonMb', label: 'private (anon) RSS', unit: 'MB', kind: 'figure' },
    ],
    rows,
    bars: [
      { title: 'Resident memory (lower is better)', figure: 'rssMb', unit: 'MB' },
      { title: 'CPU seconds per 1,000 requests (lower is better)', figure: 'cpuPer1000', unit: 's' },
    ],
    targets: [atMost('sidecar RSS at 1,000 rps', 70, rss1000, 'MB')],
    notes: [],
    errors,
    raw: samples,
  };
}
