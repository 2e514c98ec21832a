// tracing: what spans cost the sidecar. Three sidecars on the same L7 route to the 1 KB nginx backend,
// tracing off, on at 1% and on at 100%, the two traced ones exporting to a real OpenTelemetry Collector
// (scripts/otel.ts: OTLP receiver, file exporter), beside nginx (1 worker) in the same rounds: wrk's max rps
// and the sidecar's RSS after each run; then the sidecars' CPU per 1,000 requests at a fixed 1,000 rps
// (the paced client), which a busy machine disturbs far less than a maximum rate. Opt-in (needs Go for the collector): npm run bench -- --scenario tracing
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { interleave, errorShare, ratio, proxyCpu, profileArgs, atMost, type ScenarioContext } from '../lib/context.ts';
import { startBackend, startNginxProxy, startShoal, type ShoalSidecar } from '../lib/httpPeers.ts';
import { paced, wrk } from '../lib/loadClients.ts';
import { memMb, ProcessGroup } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { figure, median } from '../lib/stats.ts';
import { goMissing, startCollector, type Collector } from '../../scripts/otel.ts';

type Key = 'nginx-1' | 'shoal-off' | 'shoal-1pct' | 'shoal-100pct';

/** Thrown without Go: the collector cannot be built. */
class TracingBenchSkipped extends Error {
  readonly skipped = true;
}

async function metric(adminPort: number, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
  let sum = 0;
  for (const m of text.matchAll(re)) sum += Number(m[1]);
  return sum;
}

export async function runTracing(ctx: ScenarioContext): Promise<ScenarioResult> {
  const missing = goMissing();
  if (missing) throw new TracingBenchSkipped(`tracing benchmark skipped: ${missing}`);
  const connections = 50;
  const cpu = proxyCpu(ctx);
  const pinNote = cpu ? `, pinned to CPU ${cpu}` : '';
  const group = new ProcessGroup();
  const collectorDir = join(ctx.dir, 'otelcol');
  mkdirSync(collectorDir, { recursive: true });
  let collector: Collector | null = null;
  const sidecars: Partial<Record<Key, ShoalSidecar>> = {};
  const urls: Partial<Record<Key, string>> = {};
  const labels: Record<Key, string> = {
    'nginx-1': `nginx, 1 worker${pinNote}`,
    'shoal-off': `shoal L7, tracing off${pinNote}`,
    'shoal-1pct': `shoal L7, tracing at 1%${pinNote}`,
    'shoal-100pct': `shoal L7, tracing at 100%${pinNote}`,
  };
  const rps: Record<string, number[]> = {};
  const p99: Record<string, number[]> = {};
  const rss: Record<string, number[]> = {};
  const cpuPer1k: Record<string, number[]> = {};
  const pacedRps = 1000;
  const errors: string[] = [];
  const failed = new Set<string>();
  const keys: Key[] = ['nginx-1', 'shoal-off', 'shoal-1pct', 'shoal-100pct'];
  let exported: Record<string, number> = {};
  let dropped: Record<string, number> = {};
  try {
    const started = Date.now();
    collector = await startCollector(collectorDir, (m) => ctx.log(m), { rotateMb: 20 });
    ctx.log(`tracing: collector ready after ${Math.round((Date.now() - started) / 1000)} s (its build included when it had to be built)`);
    const backendPort = await startBackend(group, ctx.dir);
    urls['nginx-1'] = `http://127.0.0.1:${await startNginxProxy(group, ctx.dir, 1, backendPort, cpu)}/`;
    const ratios: Record<Exclude<Key, 'nginx-1'>, number | null> = { 'shoal-off': null, 'shoal-1pct': 0.01, 'shoal-100pct': 1 };
    for (const [key, r] of Object.entries(ratios) as [Exclude<Key, 'nginx-1'>, number | null][]) {
      const dir = join(ctx.dir, key);
      mkdirSync(dir, { recursive: true });
      const s = await startShoal(group, dir, {
        backendPort,
        cpus: cpu,
        nodeOptions: profileArgs(ctx, key),
        sidecarOptions: r === null ? {} : { otlpEndpoint: collector.url, traceSampleRatio: r },
      });
      sidecars[key] = s;
      urls[key] = s.l7Url;
    }
    const warm = ctx.smoke ? 0 : 1;
    for (const k of keys) {
      rps[k] = [];
      p99[k] = [];
      rss[k] = [];
      if (warm) await wrk(urls[k]!, warm, connections).catch(() => undefined);
    }
    await interleave(
      keys,
      ctx.rounds,
      async (key, round) => {
        if (failed.has(key)) return;
        try {
          const res = await wrk(urls[key]!, ctx.duration, connections, undefined, errorShare(ctx));
          rps[key].push(res.rps);
          p99[key].push(res.latencyMs['99']);
          const s = sidecars[key];
          if (s) rss[key].push(memMb(s.pid).rss);
          ctx.log(
            `tracing round ${round + 1} ${key}: ${Math.round(res.rps)} rps, p99 ${res.latencyMs['99']} ms${s ? `, RSS ${memMb(s.pid).rss} MB` : ''}`,
          );
        } catch (err) {
          failed.add(key);
          errors.push(`${labels[key]}: ${(err as Error).message}`);
        }
      },
      ctx.smoke,
    );
    // CPU per request at a fixed rate: the cost of tracing in CPU time, whatever else the machine does.
    const shoals = keys.filter((k) => sidecars[k as Exclude<Key, 'nginx-1'>]) as Exclude<Key, 'nginx-1'>[];
    for (const k of shoals) cpuPer1k[k] = [];
    await interleave(
      shoals,
      ctx.rounds,
      async (key, round) => {
        if (failed.has(key)) return;
        try {
          const s = sidecars[key]!;
          const res = await paced(urls[key]!, ctx.smoke ? 100 : pacedRps, ctx.duration, s.pid, errorShare(ctx));
          cpuPer1k[key].push((res.cpuSeconds! * 1000) / (res.requests / 1000));
          ctx.log(
            `tracing round ${round + 1} ${key} at ${pacedRps} rps: CPU ${(res.cpuSeconds! * 1000).toFixed(0)} ms for ${res.requests} requests`,
          );
        } catch (err) {
          failed.add(key);
          errors.push(`${labels[key]} at ${pacedRps} rps: ${(err as Error).message}`);
        }
      },
      ctx.smoke,
    );
    // Let the last batches go out before the counters are read.
    await new Promise((r) => setTimeout(r, 1500));
    for (const k of ['shoal-1pct', 'shoal-100pct'] as const) {
      const s = sidecars[k];
      if (!s) continue;
      exported = { ...exported, [k]: await metric(s.adminPort, /^shoal_proxy_trace_spans_exported_total(?:\{[^}]*\})? (\d+)/gm) };
      dropped = { ...dropped, [k]: await metric(s.adminPort, /^shoal_proxy_trace_spans_dropped_total\{[^}]*\} (\d+)/gm) };
    }
  } finally {
    for (const s of Object.values(sidecars)) await s.close();
    await group.stop();
    await collector?.stop();
  }
  const med = (k: string) => (rps[k]?.length ? median(rps[k]) : undefined);
  const medRss = (k: string) => (rss[k]?.length ? median(rss[k]) : undefined);
  const rows: Row[] = keys.map((k): Row => {
    if (failed.has(k) || !rps[k]?.length) return { contender: k, label: labels[k], figures: {}, ratios: {}, error: 'failed' };
    return {
      contender: k,
      label: labels[k],
      figures: {
        rps: figure(rps[k], 0),
        p99: figure(p99[k], 3),
        ...(rss[k].length ? { rssMb: figure(rss[k], 1) } : {}),
        ...(cpuPer1k[k]?.length ? { cpuPer1k: figure(cpuPer1k[k], 1) } : {}),
      },
      ratios: { vsNginx1: ratio(med(k), med('nginx-1')), vsOff: k === 'nginx-1' ? null : ratio(med(k), med('shoal-off')) },
      text: k in exported ? { spans: `${exported[k]} exported, ${dropped[k]} dropped` } : {},
    };
  });
  const offRps = med('shoal-off');
  const pctRps = med('shoal-1pct');
  const rpsLoss = offRps && pctRps ? Math.round((1 - pctRps / offRps) * 1000) / 10 : null;
  const offRss = medRss('shoal-off');
  const pctRss = medRss('shoal-1pct');
  const medCpu = (k: string) => (cpuPer1k[k]?.length ? median(cpuPer1k[k]) : undefined);
  const cpuOff = medCpu('shoal-off');
  const cpu1 = medCpu('shoal-1pct');
  const cpuAddedPct = cpuOff && cpu1 ? Math.round((cpu1 / cpuOff - 1) * 1000) / 10 : null;
  const rssAdded = offRss !== undefined && pctRss !== undefined ? Math.round((pctRss - offRss) * 10) / 10 : null;
  return {
    scenario: 'tracing',
    title: 'tracing: the sidecar with tracing off, at 1% and at 100%, beside nginx',
    method: `wrk -t2 -c${connections} for ${ctx.duration} s per contender (keep-alive HTTP/1.1 GET, 1 KB body, no trace headers: every trace starts at the sidecar and the ratio decides), ${ctx.rounds} rounds interleaved with the order rotated each round, after a 1 s warm-up each. Three sidecar processes with the same L7 route to the nginx backend, one per tracing setting, the traced ones exporting OTLP/HTTP JSON to a real OpenTelemetry Collector (OTLP receiver, file exporter; not pinned). RSS of each sidecar is read from /proc right after each of its runs. Then each sidecar gets ${pacedRps} rps from the paced client for ${ctx.duration} s a round, and its user+system CPU seconds over the run, per 1,000 requests, are read from /proc.${cpu ? ` Single-process proxies are pinned to CPU ${cpu}.` : ''}`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: { connections, duration: ctx.duration, rounds: ctx.rounds, pinnedCpu: cpu ?? null },
    columns: [
      { key: 'rps', label: 'rps', unit: '', kind: 'figure' },
      { key: 'vsNginx1', label: '× nginx 1 worker', unit: '', kind: 'ratio' },
      { key: 'vsOff', label: '× tracing off', unit: '', kind: 'ratio' },
      { key: 'p99', label: 'p99', unit: 'ms', kind: 'figure' },
      { key: 'rssMb', label: 'RSS after the run', unit: 'MB', kind: 'figure' },
      { key: 'cpuPer1k', label: `CPU per 1,000 requests at ${pacedRps} rps`, unit: 'ms', kind: 'figure' },
      { key: 'spans', label: 'spans', unit: '', kind: 'text' },
    ],
    rows,
    bars: [{ title: 'Requests per second (higher is better)', figure: 'rps', unit: 'rps' }],
    targets: [atMost('rps lost to tracing at 1%', 5, rpsLoss, '%'), atMost('RSS added by tracing at 1%', 5, rssAdded, 'MB')],
    notes: [
      `At 1%: ${rpsLoss ?? 'n/a'}% fewer rps than tracing off (medians), ${rssAdded ?? 'n/a'} MB more RSS, ${cpuAddedPct ?? 'n/a'}% more CPU per request at ${pacedRps} rps (at saturation, CPU per request is what bounds rps).`,
    ],
    errors,
  };
}
