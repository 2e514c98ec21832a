// Benchmark: queries per second of the DNS responder against dnsmasq configured with the same
// names, in the same run, driven by dnsperf: local answers, and forwarded names answered from the
// cache (both forwarding to one upstream dnsmasq). Rounds interleave the two servers so machine
// noise hits both; the median of each is reported, with the CPU time each server spent per query.
// A bare Node UDP echo runs beside them as the floor any Node responder stands on.
// Runs the built JavaScript (npm run build).
// --pin runs dnsperf on CPU 0 and both servers on CPU 1 (taskset) to take scheduler moves out.
// The codec way is measured beside it for local answers: dgram with dns-packet decoding and
// encoding every query, and the dns2 server when --dns2 names its folder (it is not a dependency).
//   node bench/dns.ts [--rounds 3] [--duration 5] [--clients 4] [--pin] [--dns2 DIR] [--smoke]
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { randomInt } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    clients: { type: 'string', default: '4' },
    pin: { type: 'boolean', default: false },
    dns2: { type: 'string' },
    smoke: { type: 'boolean', default: false },
  },
});
const smoke = values.smoke;
const rounds = smoke ? 1 : Number(values.rounds);
const duration = smoke ? 1 : Number(values.duration);
const clients = Number(values.clients);
const pin = values.pin;
// Prefixes a command with taskset when pinning.
const pinned = (cpu: number, cmd: string, args: string[]): [string, string[]] => (pin ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args]);

const distMain = join(root, 'dist', 'dns', 'main.js');
if (!existsSync(distMain)) {
  console.error('dist/dns/main.js is missing: run npm run build first');
  process.exit(2);
}
for (const tool of ['dnsperf', 'dnsmasq']) {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
  } catch {
    console.error(`${tool} is missing (apt-get install dnsperf dnsmasq-base)`);
    process.exit(2);
  }
}

// The demo app's names: two dependencies in every search-domain form.
const names: { name: string; address: string }[] = [];
for (const [dep, address] of [['api', '127.0.0.2'], ['cache', '127.0.0.3']]) {
  for (const form of [dep, `${dep}.default`, `${dep}.default.svc`, `${dep}.default.svc.cluster.local`]) names.push({ name: form, address });
}
const forwardedNames = Array.from({ length: 100 }, (_, i) => `n${i}.ext.test`);

const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-dns-'));
const localFile = join(dir, 'local.txt');
const forwardedFile = join(dir, 'forwarded.txt');
// A queries only: dnsmasq refuses AAAA for names it holds only an IPv4 address of when it has no
// upstream, which would make its side cheaper; shoal answers those NOERROR/empty.
writeFileSync(localFile, names.map((n) => `${n.name} A\n`).join(''));
writeFileSync(forwardedFile, forwardedNames.map((n) => `${n} A\n`).join(''));

const children: ChildProcess[] = [];
function stopAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
process.on('exit', stopAll);

function digOk(port: number, name: string): boolean {
  try {
    return /status: NOERROR/.test(execFileSync('dig', ['@127.0.0.1', '-p', String(port), '+time=1', '+tries=1', name], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}

async function waitFor(port: number, name: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (digOk(port, name)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing answers ${name} on 127.0.0.1:${port}`);
}

async function dnsmasq(args: string[], probe: string): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = randomInt(20000, 60000);
    const child = spawn(...pinned(1, 'dnsmasq', ['--no-daemon', '--conf-file=/dev/null', '--no-resolv', '--no-hosts', '--pid-file=',
      `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--log-facility=-', ...args]), { stdio: 'ignore' });
    children.push(child);
    try {
      await waitFor(port, probe);
      return { port, child };
    } catch {
      child.kill('SIGKILL');
    }
  }
  throw new Error('dnsmasq did not start');
}

// The upstream both forward to: every name under ext.test, TTL one hour so the cache holds.
const upstream = await dnsmasq(['--address=/ext.test/10.9.8.7', '--local-ttl=3600'], 'n0.ext.test');
// The reference: dnsmasq holding the same names (TTL 5 like shoal) and caching forwarded answers.
const reference = await dnsmasq([...names.map((n) => `--host-record=${n.name},${n.address}`), '--local-ttl=5',
  `--server=127.0.0.1#${upstream.port}`, '--cache-size=10000'], 'api.default.svc.cluster.local');

async function nodeChild(script: string, args: string[]): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(...pinned(1, process.execPath, [join(root, 'bench', 'lib', script), ...args]), { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c) => {
      out += c;
      const m = /port ([0-9]+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
  });
  return { port, child };
}

const shoal = await nodeChild('dnsResponderChild.ts', [distMain, `127.0.0.1:${upstream.port}`, JSON.stringify(names)]);
const shoalChild = shoal.child;
const shoalPort = shoal.port;
// The floor: a Node UDP socket that only echoes each query back (no answer, no lookup).
const echo = await nodeChild('dnsUdpEchoChild.ts', []);
const codec = await nodeChild('dnsCodecChild.ts', ['dns-packet', JSON.stringify(names)]);
const dns2 = values.dns2 ? await nodeChild('dnsCodecChild.ts', ['dns2', JSON.stringify(names), values.dns2]) : null;
await waitFor(shoalPort, 'api');

// CPU seconds (user + system) a process has used: the cost per query, which other load on the
// machine disturbs far less than queries per second.
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Run { qps: number; lost: number; latencyMs: number; rcodes: string; cpuUsPerQuery: number }
function dnsperf(port: number, file: string, seconds: number, pid: number): Run {
  const cpuBefore = cpuSeconds(pid);
  const out = execFileSync(...pinned(0, 'dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(seconds),
    '-c', String(clients), '-Q', '200000']), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
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

// Warm both caches with every forwarded name once.
dnsperf(shoalPort, forwardedFile, 1, shoalChild.pid!);
dnsperf(reference.port, forwardedFile, 1, reference.child.pid!);

type Server = 'shoal' | 'dnsmasq' | 'nodeUdpEcho' | 'dgramDnsPacket' | 'dns2';
const servers: Record<Server, number> = { shoal: shoalPort, dnsmasq: reference.port, nodeUdpEcho: echo.port, dgramDnsPacket: codec.port, dns2: dns2?.port ?? 0 };
const pids: Record<Server, number> = { shoal: shoalChild.pid!, dnsmasq: reference.child.pid!, nodeUdpEcho: echo.child.pid!, dgramDnsPacket: codec.child.pid!, dns2: dns2?.child.pid ?? 0 };
const runs: Record<string, Partial<Record<Server, Run[]>>> = {
  local: { shoal: [], dnsmasq: [], nodeUdpEcho: [], dgramDnsPacket: [], ...(dns2 ? { dns2: [] } : {}) },
  forwardedCached: { shoal: [], dnsmasq: [] },
};
for (let r = 0; r < rounds; r++) {
  // Alternate who goes first so a slow moment of the machine does not always hit the same one.
  const all: Server[] = ['shoal', 'dnsmasq', 'nodeUdpEcho', 'dgramDnsPacket', 'dns2'];
  const order = r % 2 === 0 ? all : [...all].reverse();
  for (const [kind, file] of [['local', localFile], ['forwardedCached', forwardedFile]] as const) {
    for (const who of order) {
      const list = runs[kind][who];
      if (!list) continue;
      const run = dnsperf(servers[who], file, duration, pids[who]);
      list.push(run);
      console.error(`round ${r + 1} ${kind.padEnd(15)} ${who.padEnd(7)} ${String(run.qps).padStart(7)} qps  ${run.cpuUsPerQuery} us cpu/query  lost ${run.lost}  avg ${run.latencyMs} ms  ${run.rcodes}`);
    }
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : Math.round((s[s.length / 2 - 1] + s[s.length / 2]) / 2);
};
const medianF = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
function summary(kind: string) {
  const shoal = median(runs[kind].shoal!.map((x) => x.qps));
  const ref = median(runs[kind].dnsmasq!.map((x) => x.qps));
  const shoalCpu = medianF(runs[kind].shoal!.map((x) => x.cpuUsPerQuery));
  const refCpu = medianF(runs[kind].dnsmasq!.map((x) => x.cpuUsPerQuery));
  return {
    shoalQps: shoal, dnsmasqQps: ref, ratio: Math.round((shoal / ref) * 100) / 100,
    // dnsmasq's CPU per query over shoal's: the throughput ratio on a machine where the server is the bottleneck.
    shoalCpuUsPerQuery: shoalCpu, dnsmasqCpuUsPerQuery: refCpu, cpuEfficiencyRatio: Math.round((refCpu / shoalCpu) * 100) / 100,
    runs: runs[kind],
  };
}
// The other Node servers on local answers, each against dnsmasq in the same rounds.
function other(who: Server) {
  const list = runs.local[who];
  if (!list) return null;
  const qps = median(list.map((x) => x.qps));
  const cpu = medianF(list.map((x) => x.cpuUsPerQuery));
  const ref = summary('local');
  return { qps, ratio: Math.round((qps / ref.dnsmasqQps) * 100) / 100, cpuUsPerQuery: cpu, cpuEfficiencyRatio: Math.round((ref.dnsmasqCpuUsPerQuery / cpu) * 100) / 100 };
}
const rssMb = Math.round(Number(/VmRSS:\s+([0-9]+) kB/.exec(readFileSync(`/proc/${shoalChild.pid}/status`, 'utf8'))?.[1]) / 1024);
const result = {
  benchmark: 'dns',
  date: new Date().toISOString(),
  command: `node bench/dns.ts --rounds ${rounds} --duration ${duration} --clients ${clients}${pin ? ' --pin' : ''}${smoke ? ' --smoke' : ''}`,
  machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, note: 'dnsperf, dnsmasq and shoal share these cores: figures are noisy' },
  dnsperf: { durationS: duration, clients, maxQps: 200000, outstanding: 100, pinned: pin },
  local: summary('local'),
  forwardedCached: summary('forwardedCached'),
  localOthers: { nodeUdpEchoFloor: other('nodeUdpEcho'), dgramDnsPacket: other('dgramDnsPacket'), dns2: other('dns2') },
  shoalRssMb: rssMb,
};
console.log(JSON.stringify(result, null, 2));
if (!smoke) {
  const outDir = join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `${new Date().toISOString().slice(0, 10)}-dns.json`), JSON.stringify(result, null, 2) + '\n');
}
stopAll();
process.exit(0);
