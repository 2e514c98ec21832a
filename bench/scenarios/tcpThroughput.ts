// tcp-throughput: iperf3 bulk transfer (one stream) straight to the iperf3 server, through shoal's
// L4 listener and through haproxy mode tcp (nbthread 1): Gbit/s and the proxy's CPU per GB moved.
import { connect } from 'node:net';
import { interleave, profileArgs, proxyCpu, ratio, type ScenarioContext } from '../lib/context.ts';
import { startBackend, startHaproxy, startShoal, type ShoalSidecar } from '../lib/httpPeers.ts';
import { iperf3 } from '../lib/loadClients.ts';
import { cpuSeconds, freePort, ProcessGroup, sleep } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { figure, median } from '../lib/stats.ts';

async function waitTcp(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

interface Contender {
  key: string;
  label: string;
  host: string;
  port: number;
  pid?: number;
}

export async function runTcpThroughput(ctx: ScenarioContext): Promise<ScenarioResult> {
  const group = new ProcessGroup();
  const cpu = proxyCpu(ctx);
  const pinNote = cpu ? `, pinned to CPU ${cpu}` : '';
  const errors: string[] = [];
  const contenders: Contender[] = [];
  let sidecar: ShoalSidecar | undefined;
  const gbps: Record<string, number[]> = {};
  const cpuPerGb: Record<string, number[]> = {};
  const failed = new Set<string>();
  try {
    const serverPort = await freePort();
    const server = group.spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(serverPort)], { stdio: 'ignore' });
    await waitTcp(serverPort);
    contenders.push({ key: 'direct', label: 'direct (no proxy)', host: '127.0.0.1', port: serverPort, pid: server.pid });
    // shoal's sidecar and haproxy also front an HTTP backend (their HTTP listeners are not measured here).
    const backendPort = await startBackend(group, ctx.dir);
    try {
      sidecar = await startShoal(group, ctx.dir, {
        backendPort,
        tcpBackendPort: serverPort,
        cpus: cpu,
        nodeOptions: profileArgs(ctx, 'sidecar'),
      });
      contenders.push({
        key: 'shoal-l4',
        label: `shoal L4 (1 process${pinNote})`,
        host: '127.77.0.5',
        port: sidecar.tcpPort!,
        pid: sidecar.pid,
      });
    } catch (err) {
      errors.push(`shoal L4: ${(err as Error).message}`);
    }
    try {
      const h = await startHaproxy(group, ctx.dir, 1, backendPort, serverPort, cpu);
      const pid = group.children[group.children.length - 1].pid;
      contenders.push({ key: 'haproxy-1', label: `haproxy mode tcp, nbthread 1${pinNote}`, host: '127.0.0.1', port: h.tcpPort!, pid });
    } catch (err) {
      errors.push(`haproxy mode tcp: ${(err as Error).message}`);
    }
    for (const c of contenders) {
      gbps[c.key] = [];
      cpuPerGb[c.key] = [];
      if (!ctx.smoke) await iperf3(c.host, c.port, 1).catch(() => undefined);
    }
    await interleave(
      contenders.map((c) => c.key),
      ctx.rounds,
      async (key, round) => {
        const c = contenders.find((x) => x.key === key)!;
        if (failed.has(key)) return;
        try {
          const cpu0 = c.pid ? cpuSeconds(c.pid) : 0;
          const res = await iperf3(c.host, c.port, ctx.duration);
          gbps[key].push(res.gbps);
          // The proxy's CPU per GB moved (for direct: the iperf3 server's own, as a floor).
          if (c.pid) cpuPerGb[key].push((cpuSeconds(c.pid) - cpu0) / ((res.gbps * ctx.duration) / 8));
          ctx.log(`tcp-throughput round ${round + 1} ${key}: ${res.gbps.toFixed(2)} Gbit/s`);
        } catch (err) {
          failed.add(key);
          errors.push(`${c.label}: ${(err as Error).message}`);
        }
      },
    );
  } finally {
    await sidecar?.close();
    await group.stop();
  }
  const med = (k: string) => (gbps[k]?.length ? median(gbps[k]) : undefined);
  const rows: Row[] = contenders.map((c): Row => {
    if (failed.has(c.key) || !gbps[c.key].length) return { contender: c.key, label: c.label, figures: {}, ratios: {}, error: 'failed' };
    return {
      contender: c.key,
      label: c.label,
      figures: { gbps: figure(gbps[c.key], 2), ...(cpuPerGb[c.key].length ? { cpuPerGb: figure(cpuPerGb[c.key], 3) } : {}) },
      ratios: { vsDirect: ratio(med(c.key), med('direct')), vsHaproxy: ratio(med(c.key), med('haproxy-1')) },
    };
  });
  return {
    scenario: 'tcp-throughput',
    title: 'tcp-throughput: bulk TCP through an L4 proxy',
    method: `iperf3 -c (one stream, ${ctx.duration} s, received rate) to an iperf3 server on loopback: directly, through shoal's L4 listener, and through haproxy mode tcp with nbthread 1. ${ctx.rounds} rounds interleaved, ${ctx.smoke ? 'no' : 'a 1 s'} warm-up each. CPU s/GB is the proxy process's user+system CPU per GB moved (for direct, the iperf3 server's own).${cpu ? ` The proxies are pinned to CPU ${cpu}; iperf3 is not.` : ''}`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: { seconds: ctx.duration, rounds: ctx.rounds, pinnedCpu: cpu ?? null },
    columns: [
      { key: 'gbps', label: 'throughput', unit: 'Gbit/s', kind: 'figure' },
      { key: 'vsDirect', label: '× direct', unit: '', kind: 'ratio' },
      { key: 'vsHaproxy', label: '× haproxy', unit: '', kind: 'ratio' },
      { key: 'cpuPerGb', label: 'CPU per GB', unit: 's', kind: 'figure' },
    ],
    rows,
    bars: [
      { title: 'Throughput (higher is better)', figure: 'gbps', unit: 'Gbit/s' },
      { title: 'Proxy CPU per GB moved (lower is better)', figure: 'cpuPerGb', unit: 's' },
    ],
    targets: [],
    notes: [],
    errors,
    raw: { gbps, cpuPerGb },
  };
}
