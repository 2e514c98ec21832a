// dns: queries per second of shoal's DNS responder against dnsmasq configured with the same names,
// in the same run, driven by dnsperf: local answers, and forwarded names answered from the cache
// (both forwarding to one upstream dnsmasq). Rounds interleave the servers so machine noise hits
// both; the median of each is reported, with the CPU time each server spent per query. A bare Node
// UDP echo runs beside them as the floor any Node responder stands on; optionally the codec way
// (dgram + dns-packet, and dns2 when its folder is given). Runs the built JavaScript (dist/).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomInt } from 'node:crypto';
import { join } from 'node:path';
import { atLeast, profileArgs, type ScenarioContext } from '../lib/context.ts';
import { root } from '../lib/httpPeers.ts';
import { cpuSeconds, memMb, pinned, ProcessGroup, sleep } from '../lib/processes.ts';
import type { Row, ScenarioResult } from '../lib/report.ts';
import { figure, median } from '../lib/stats.ts';

export interface DnsBenchOptions {
  rounds: number;
  duration: number;
  clients: number;
  /** dnsperf on CPU 0, every server on CPU 1. */
  pin: boolean;
  /** Also measure dgram + dns-packet on local answers. */
  codec: boolean;
  /** Folder of the dns2 package, to measure it on local answers too. */
  dns2?: string;
  /** Node flags for shoal's responder (e.g. --cpu-prof). */
  nodeArgs?: string[];
  log(msg: string): void;
}

type Server = 'shoal' | 'dnsmasq' | 'nodeUdpEcho' | 'dgramDnsPacket' | 'dns2';
export interface DnsRun {
  qps: number;
  lost: number;
  latencyMs: number;
  rcodes: string;
  cpuUsPerQuery: number;
}

export async function runDnsBench(opts: DnsBenchOptions) {
  const { rounds, duration, clients, pin } = opts;
  const cpuOf = (n: number) => (pin ? String(n) : undefined);
  const distMain = join(root, 'dist', 'dns', 'main.js');
  if (!existsSync(distMain)) throw new Error('dist/dns/main.js is missing: run npm run build first');

  // The demo app's names: two dependencies in every search-domain form.
  const names: { name: string; address: string }[] = [];
  for (const [dep, address] of [
    ['api', '127.0.0.2'],
    ['cache', '127.0.0.3'],
  ]) {
    for (const form of [dep, `${dep}.default`, `${dep}.default.svc`, `${dep}.default.svc.cluster.local`])
      names.push({ name: form, address });
  }
  const forwardedNames = Array.from({ length: 100 }, (_, i) => `n${i}.ext.test`);
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-dns-'));
  const localFile = join(dir, 'local.txt');
  const forwardedFile = join(dir, 'forwarded.txt');
  // A queries only: dnsmasq refuses AAAA for names it holds only an IPv4 address of when it has no
  // upstream, which would make its side cheaper; shoal answers those NOERROR/empty.
  writeFileSync(localFile, names.map((n) => `${n.name} A\n`).join(''));
  writeFileSync(forwardedFile, forwardedNames.map((n) => `${n} A\n`).join(''));

  const group = new ProcessGroup();
  const digOk = (port: number, name: string): boolean => {
    try {
      return /status: NOERROR/.test(
        execFileSync('dig', ['@127.0.0.1', '-p', String(port), '+time=1', '+tries=1', name], { encoding: 'utf8' }),
      );
    } catch {
      return false;
    }
  };
  const waitFor = async (port: number, name: string) => {
    for (let i = 0; i < 100; i++) {
      if (digOk(port, name)) return;
      await sleep(50);
    }
    throw new Error(`nothing answers ${name} on 127.0.0.1:${port}`);
  };
  const dnsmasq = async (args: string[], probe: string) => {
    for (let attempt = 0; attempt < 10; attempt++) {
      const port = randomInt(20000, 60000);
      const child = group.spawn(
        ...pinned(cpuOf(1), 'dnsmasq', [
          '--no-daemon',
          '--conf-file=/dev/null',
          '--no-resolv',
          '--no-hosts',
          '--pid-file=',
          `--port=${port}`,
          '--listen-address=127.0.0.1',
          '--bind-interfaces',
          '--log-facility=-',
          ...args,
        ]),
        { stdio: 'ignore' },
      );
      try {
        await waitFor(port, probe);
        return { port, pid: child.pid! };
      } catch {
        child.kill('SIGKILL');
      }
    }
    throw new Error('dnsmasq did not start');
  };
  const nodeChild = async (script: string, args: string[], nodeArgs: string[] = []) => {
    const { child, port } = await group.portChild(
      ...pinned(cpuOf(1), process.execPath, [...nodeArgs, join(root, 'bench', 'lib', script), ...args]),
    );
    return { port, pid: child.pid! };
  };
  function dnsperf(port: number, file: string, seconds: number, pid: number): DnsRun {
    const cpuBefore = cpuSeconds(pid);
    const out = execFileSync(
      ...pinned(cpuOf(0), 'dnsperf', [
        '-s',
        '127.0.0.1',
        '-p',
        String(port),
        '-d',
        file,
        '-l',
        String(seconds),
        '-c',
        String(clients),
        '-Q',
        '200000',
      ]),
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const num = (re: RegExp) => Number(re.exec(out)?.[1] ?? NaN);
    const cpu = cpuSeconds(pid) - cpuBefore;
    return {
      cpuUsPerQuery: Math.round((cpu / num(/Queries completed:\s+([0-9]+)/)) * 1e8) / 100,
      qps: Math.round(num(/Queries per second:\s+([0-9.]+)/)),
      lost: num(/Queries lost:\s+([0-9]+)/),
      latencyMs: Math.round(num(/Average Latency \(s\):\s+([0-9.]+)/) * 1e6) / 1000,
      rcodes: /Response codes:\s+(.*)/.exec(out)?.[1] ?? '',
    };
  }

  try {
    // The upstream both forward to: every name under ext.test, TTL one hour so the cache holds.
    const upstream = await dnsmasq(['--address=/ext.test/10.9.8.7', '--local-ttl=3600'], 'n0.ext.test');
    // The baseline: dnsmasq holding the same names (TTL 5 like shoal) and caching forwarded answers.
    const reference = await dnsmasq(
      [
        ...names.map((n) => `--host-record=${n.name},${n.address}`),
        '--local-ttl=5',
        `--server=127.0.0.1#${upstream.port}`,
        '--cache-size=10000',
      ],
      'api.default.svc.cluster.local',
    );
    const shoal = await nodeChild('dnsResponderChild.ts', [distMain, `127.0.0.1:${upstream.port}`, JSON.stringify(names)], opts.nodeArgs);
    // The floor: a Node UDP socket that only echoes each query back (no answer, no lookup).
    const echo = await nodeChild('dnsUdpEchoChild.ts', []);
    const codec = opts.codec ? await nodeChild('dnsCodecChild.ts', ['dns-packet', JSON.stringify(names)]) : null;
    const dns2 = opts.dns2 ? await nodeChild('dnsCodecChild.ts', ['dns2', JSON.stringify(names), opts.dns2]) : null;
    await waitFor(shoal.port, 'api');

    // Warm both caches with every forwarded name once.
    dnsperf(shoal.port, forwardedFile, Math.min(1, duration), shoal.pid);
    dnsperf(reference.port, forwardedFile, Math.min(1, duration), reference.pid);

    const servers: Partial<Record<Server, { port: number; pid: number }>> = {
      shoal,
      dnsmasq: reference,
      nodeUdpEcho: echo,
      ...(codec ? { dgramDnsPacket: codec } : {}),
      ...(dns2 ? { dns2 } : {}),
    };
    const runs: Record<'local' | 'forwardedCached', Partial<Record<Server, DnsRun[]>>> = {
      local: Object.fromEntries(Object.keys(servers).map((k) => [k, []])),
      forwardedCached: { shoal: [], dnsmasq: [] },
    };
    for (let r = 0; r < rounds; r++) {
      // Alternate who goes first so a slow moment of the machine does not always hit the same one.
      const all = Object.keys(servers) as Server[];
      const order = r % 2 === 0 ? all : [...all].reverse();
      for (const [kind, file] of [
        ['local', localFile],
        ['forwardedCached', forwardedFile],
      ] as const) {
        for (const who of order) {
          const list = runs[kind][who];
          if (!list) continue;
          const run = dnsperf(servers[who]!.port, file, duration, servers[who]!.pid);
          list.push(run);
          opts.log(
            `dns round ${r + 1} ${kind.padEnd(15)} ${who.padEnd(14)} ${String(run.qps).padStart(7)} qps  ${run.cpuUsPerQuery} us cpu/query  lost ${run.lost}  avg ${run.latencyMs} ms  ${run.rcodes}`,
          );
        }
      }
    }
    const r2 = (x: number) => Math.round(x * 100) / 100;
    const summary = (kind: 'local' | 'forwardedCached') => {
      const s = median(runs[kind].shoal!.map((x) => x.qps));
      const ref = median(runs[kind].dnsmasq!.map((x) => x.qps));
      const sCpu = median(runs[kind].shoal!.map((x) => x.cpuUsPerQuery));
      const refCpu = median(runs[kind].dnsmasq!.map((x) => x.cpuUsPerQuery));
      return {
        shoalQps: Math.round(s),
        dnsmasqQps: Math.round(ref),
        ratio: r2(s / ref),
        // dnsmasq's CPU per query over shoal's: the throughput ratio on a machine where the server is the bottleneck.
        shoalCpuUsPerQuery: sCpu,
        dnsmasqCpuUsPerQuery: refCpu,
        cpuEfficiencyRatio: r2(refCpu / sCpu),
        runs: runs[kind],
      };
    };
    const local = summary('local');
    const other = (who: Server) => {
      const list = runs.local[who];
      if (!list) return null;
      const qps = median(list.map((x) => x.qps));
      const cpu = median(list.map((x) => x.cpuUsPerQuery));
      return {
        qps: Math.round(qps),
        ratio: r2(qps / local.dnsmasqQps),
        cpuUsPerQuery: cpu,
        cpuEfficiencyRatio: r2(local.dnsmasqCpuUsPerQuery / cpu),
      };
    };
    return {
      benchmark: 'dns',
      date: new Date().toISOString(),
      dnsperf: { durationS: duration, clients, maxQps: 200000, outstanding: 100, pinned: pin },
      local,
      forwardedCached: summary('forwardedCached'),
      localOthers: { nodeUdpEchoFloor: other('nodeUdpEcho'), dgramDnsPacket: other('dgramDnsPacket'), dns2: other('dns2') },
      shoalRssMb: Math.round(memMb(shoal.pid).rss),
    };
  } finally {
    await group.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const LABELS: Record<string, string> = {
  shoal: 'shoal DNS responder',
  dnsmasq: 'dnsmasq',
  nodeUdpEcho: 'bare Node UDP echo (floor)',
  dgramDnsPacket: 'dgram + dns-packet',
  dns2: 'dns2',
};

/** The dns scenario for run.ts: the same measurement as `node bench/dns.ts`, as a report. */
export async function runDnsScenario(ctx: ScenarioContext): Promise<ScenarioResult> {
  const errors: string[] = [];
  let raw: Awaited<ReturnType<typeof runDnsBench>> | undefined;
  const pin = ctx.pin && (ctx.machine?.cores ?? 0) >= 2;
  try {
    raw = await runDnsBench({
      rounds: ctx.rounds,
      duration: ctx.smoke ? 0.5 : ctx.duration,
      clients: 4,
      pin,
      codec: false,
      nodeArgs: profileArgs(ctx, 'dns'),
      log: ctx.log,
    });
  } catch (err) {
    errors.push(`dns: ${(err as Error).message}`);
  }
  const rows: Row[] = [];
  if (raw) {
    for (const [kind, label] of [
      ['local', 'local names (answered from the zone)'],
      ['forwardedCached', 'forwarded names, answered from the cache'],
    ] as const) {
      const runs = raw[kind].runs;
      const refQps = median(runs.dnsmasq!.map((x) => x.qps));
      const refCpu = median(runs.dnsmasq!.map((x) => x.cpuUsPerQuery));
      for (const [who, list] of Object.entries(runs) as [Server, DnsRun[]][]) {
        rows.push({
          contender: who,
          label: LABELS[who],
          group: label,
          figures: {
            qps: figure(
              list.map((x) => x.qps),
              0,
            ),
            cpuUs: figure(
              list.map((x) => x.cpuUsPerQuery),
              2,
            ),
            latencyMs: figure(
              list.map((x) => x.latencyMs),
              3,
            ),
          },
          ratios: {
            vsDnsmasq: Math.round((median(list.map((x) => x.qps)) / refQps) * 100) / 100,
            cpuVsDnsmasq: Math.round((refCpu / median(list.map((x) => x.cpuUsPerQuery))) * 100) / 100,
          },
        });
      }
    }
  }
  return {
    scenario: 'dns',
    title: "dns: shoal's DNS responder against dnsmasq",
    method: `dnsperf (4 clients, up to 100 queries outstanding) for ${ctx.duration} s per server and kind, ${ctx.rounds} rounds with the order alternating; A queries only. Local: the demo app's 8 names (two dependencies in every search-domain form), which dnsmasq holds as host records. Forwarded: 100 names under ext.test that both forward to one upstream dnsmasq, after a warm-up that fills both caches. ${pin ? 'dnsperf is pinned to CPU 0 and every server to CPU 1 (taskset): both servers are single-threaded, so each gets one whole core and the load generator never competes with it.' : 'Nothing is pinned.'} "CPU efficiency × dnsmasq" is dnsmasq's CPU per query over the server's: the qps ratio a machine would see where the server is the bottleneck.`,
    command: ctx.command,
    date: new Date().toISOString(),
    machine: ctx.machine,
    settings: { seconds: ctx.duration, rounds: ctx.rounds, clients: 4, pinned: pin },
    columns: [
      { key: 'qps', label: 'queries/s', unit: '', kind: 'figure' },
      { key: 'vsDnsmasq', label: '× dnsmasq', unit: '', kind: 'ratio' },
      { key: 'cpuUs', label: 'CPU per query', unit: 'µs', kind: 'figure' },
      { key: 'cpuVsDnsmasq', label: 'CPU efficiency × dnsmasq', unit: '', kind: 'ratio' },
      { key: 'latencyMs', label: 'average latency', unit: 'ms', kind: 'figure' },
    ],
    rows,
    bars: [
      { title: 'Queries per second (higher is better)', figure: 'qps', unit: 'qps' },
      { title: 'Server CPU per query (lower is better)', figure: 'cpuUs', unit: 'µs' },
    ],
    targets: [atLeast('DNS local answers vs dnsmasq', 0.8, raw ? raw.local.ratio : null, 'dnsmasq')],
    notes: [
      'dnsperf reports only the average latency, so this scenario has no percentile curve.',
      ...(raw ? [`shoal responder RSS after the run: ${raw.shoalRssMb} MB.`] : []),
    ],
    errors,
    raw,
  };
}
