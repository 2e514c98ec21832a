// Benchmark of the sidecar on built JavaScript: max rps through shoal L7 and L4 against a direct
// connection and against nginx (1 worker, upstream keep-alive) proxying the same backend; added
// p50/p99 at a fixed 1,000 rps; RSS and CPU of the sidecar beside a bare node:http server under that load.
// Figures as JSON on stdout; progress on stderr.
//   npm run build && node bench/proxy.ts [--rounds 3] [--duration 5] [--connections 50] [--smoke]
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    rate: { type: 'string', default: '1000' },
    smoke: { type: 'boolean', default: false },
    // e.g. --sidecar-node-options=--max-semi-space-size=1 to see what a smaller young generation saves.
    'sidecar-node-options': { type: 'string', default: '' },
  },
});
const sidecarNodeOptions = values['sidecar-node-options']!.split(' ').filter((x) => x !== '');
const smoke = values.smoke;
const rounds = smoke ? 1 : Number(values.rounds);
const duration = smoke ? 1 : Number(values.duration);
const connections = Number(values.connections);
const rate = Number(values.rate);
const pacedSeconds = smoke ? 2 : 8;

if (!existsSync(join(root, 'dist', 'proxy', 'main.js'))) {
  console.error('dist/proxy/main.js is missing: run npm run build first');
  process.exit(2);
}
const log = (msg: string) => process.stderr.write(`${msg}\n`);

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 1/100 s
}

function memMb(pid: number): { rss: number; peak: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+([0-9]+) kB`).exec(s)?.[1] ?? NaN);
  return { rss: Math.round(kb('VmRSS') / 102.4) / 10, peak: Math.round(kb('VmHWM') / 102.4) / 10 };
}

const children: ChildProcess[] = [];
function track(c: ChildProcess): ChildProcess {
  children.push(c);
  return c;
}

/** Starts a child that prints one JSON line when ready. */
function startJsonChild(args: string[]): Promise<{ child: ChildProcess; info: Record<string, number> }> {
  const child = track(spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] }));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve({ child, info: JSON.parse(out.slice(0, nl)) as Record<string, number> });
    });
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out}`)));
  });
}

function startNginx(dir: string, name: string, conf: string): ChildProcess {
  const prefix = join(dir, name);
  rmSync(prefix, { recursive: true, force: true });
  for (const d of ['', 'tmp']) mkdirp(join(prefix, d));
  const file = join(prefix, 'nginx.conf');
  writeFileSync(file, `worker_processes 1;
daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${prefix}/tmp/body;
  proxy_temp_path ${prefix}/tmp/proxy;
  fastcgi_temp_path ${prefix}/tmp/fastcgi;
  uwsgi_temp_path ${prefix}/tmp/uwsgi;
  scgi_temp_path ${prefix}/tmp/scgi;
  keepalive_requests 1000000;
${conf}
}
`);
  return track(spawn('nginx', ['-p', prefix, '-c', file, '-e', `${prefix}/error.log`], { stdio: ['ignore', 'inherit', 'inherit'] }));
}

function mkdirp(d: string): void {
  mkdirSync(d, { recursive: true });
}

async function waitHttp(url: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} did not come up`);
}

async function wrk(url: string, seconds: number): Promise<{ rps: number; latencyMs: number }> {
  const { stdout } = await run('wrk', ['-c', String(connections), '-t', '2', '-d', `${seconds}s`, url], { maxBuffer: 1 << 20 });
  const rps = Number(/Requests\/sec:\s+([0-9.]+)/.exec(stdout)?.[1] ?? NaN);
  const m = /Latency\s+([0-9.]+)(us|ms|s)/.exec(stdout);
  const latencyMs = m ? Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1) : NaN;
  if (/Non-2xx or 3xx responses/.test(stdout) || /Socket errors/.test(stdout)) log(`wrk ${url}: ${stdout.split('\n').filter((l) => /Non-2xx|Socket errors/.test(l)).join('; ')}`);
  return { rps, latencyMs };
}

async function paced(url: string, pid?: number): Promise<Record<string, number>> {
  const cpu0 = pid ? cpuSeconds(pid) : 0;
  const t0 = performance.now();
  const { stdout } = await run(process.execPath, [join(root, 'bench', 'lib', 'proxyPacedClient.ts'), url, String(rate), String(pacedSeconds)]);
  const wall = (performance.now() - t0) / 1000;
  const out = JSON.parse(stdout) as Record<string, number>;
  if (pid) {
    out.cpuPercent = Math.round(((cpuSeconds(pid) - cpu0) / wall) * 1000) / 10;
    const m = memMb(pid);
    out.rssMb = m.rss;
    out.peakRssMb = m.peak;
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const r2 = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'shoal-bench-proxy-'));
  try {
    const backendPort = await freePort();
    const nginxPort = await freePort();
    mkdirp(join(dir, 'www'));
    writeFileSync(join(dir, 'www', 'index.html'), 'x'.repeat(1024));
    // nginx started as root serves as nobody: the static file must be readable by it.
    chmodSync(dir, 0o755);
    chmodSync(join(dir, 'www'), 0o755);
    chmodSync(join(dir, 'www', 'index.html'), 0o644);
    startNginx(dir, 'backend', `  server { listen 127.0.0.1:${backendPort}; location / { root ${dir}/www; index index.html; } }`);
    startNginx(dir, 'proxy', `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 64; }
  server { listen 127.0.0.1:${nginxPort}; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } }`);

    const { startDiscover } = await import(join(root, 'dist', 'discover', 'main.js')) as typeof import('../discover/main.ts');
    const { createLogger } = await import(join(root, 'dist', 'shared', 'log.js')) as typeof import('../shared/log.ts');
    const l7Port = await freePort();
    const l4Port = await freePort();
    const l7Address = '127.77.0.7';
    const l4Address = '127.77.0.4';
    const topology = join(dir, 'topology.yaml');
    writeFileSync(topology, `services:
  - { name: api, address: ${l7Address}, ports: [{ port: ${l7Port}, protocol: http }], endpoints: ["127.0.0.1:${backendPort}"] }
  - { name: cache, address: ${l4Address}, ports: [{ port: ${l4Port}, protocol: tcp }], endpoints: ["127.0.0.1:${backendPort}"] }
apps:
  - name: web
    config:
      base_services:
        - { depend_service_alias: api, port: ${l7Port}, protocol: http }
        - { depend_service_alias: cache, port: ${l4Port}, protocol: tcp }
`);
    const discover = await startDiscover({ staticFile: topology, host: '127.0.0.1', port: 0, log: createLogger('discover', 'warn') });
    const sidecar = await startJsonChild([...sidecarNodeOptions, join(root, 'bench', 'lib', 'proxySidecarChild.mjs'), JSON.stringify({
      discoverUrl: `${discover.url}/v1/resources/default/web/mesh`, adminHost: '127.0.0.1', adminPort: 0,
      inboundAddress: '127.0.0.1', stateFile: join(dir, 'state.json'), drainTimeoutMs: 1000,
    })]);
    const sidecarPid = sidecar.info.pid;
    const bare = await startJsonChild([join(root, 'bench', 'lib', 'proxyBareServerChild.mjs')]);

    const targets: Record<string, string> = {
      direct: `http://127.0.0.1:${backendPort}/`,
      shoalL7: `http://${l7Address}:${l7Port}/`,
      shoalL4: `http://${l4Address}:${l4Port}/`,
      nginx: `http://127.0.0.1:${nginxPort}/`,
    };
    for (const url of Object.values(targets)) await waitHttp(url);
    const idle = memMb(sidecarPid);
    log(`sidecar idle RSS ${idle.rss} MB`);

    // Warm-up, then interleaved rounds so drift on a shared machine hits every target alike.
    for (const url of Object.values(targets)) await wrk(url, 1);
    const rps: Record<string, number[]> = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
    const wrkLatency: Record<string, number[]> = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
    const names = Object.keys(targets);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < names.length; i++) {
        const name = names[(i + r) % names.length];
        const res = await wrk(targets[name], duration);
        rps[name].push(res.rps);
        wrkLatency[name].push(res.latencyMs);
        log(`round ${r + 1} ${name}: ${Math.round(res.rps)} rps`);
      }
    }
    const afterMax = memMb(sidecarPid);

    log(`paced ${rate} rps for ${pacedSeconds} s ...`);
    const pacedDirect = await paced(targets.direct);
    const pacedL7 = await paced(targets.shoalL7, sidecarPid);
    const pacedL4 = await paced(targets.shoalL4, sidecarPid);
    const pacedNginx = await paced(targets.nginx);
    const pacedBare = await paced(`http://127.0.0.1:${bare.info.port}/`, bare.info.pid);

    const max = Object.fromEntries(names.map((k) => [k, Math.round(median(rps[k]))]));
    const result = {
      benchmark: 'proxy',
      date: new Date().toISOString(),
      node: process.version,
      cpus: (await import('node:os')).cpus().length,
      command: `node bench/proxy.ts --rounds ${rounds} --duration ${duration} --connections ${connections}${sidecarNodeOptions.length ? ` --sidecar-node-options="${sidecarNodeOptions.join(' ')}"` : ''}`,
      backend: 'nginx 1 worker serving a 1 KB static file on 127.0.0.1',
      load: `wrk -c${connections} -t2 -d${duration}s, ${rounds} interleaved rounds, median`,
      maxRps: max,
      maxRpsRounds: rps,
      ratios: {
        l7VsNginx: r2(max.shoalL7 / max.nginx),
        l4VsDirect: r2(max.shoalL4 / max.direct),
        nginxVsDirect: r2(max.nginx / max.direct),
      },
      targets: { l7VsNginx: 0.75, l4VsDirect: 0.9, addedP99Ms: 1, rssMb: 70 },
      pacedAt: { rps: rate, seconds: pacedSeconds, direct: pacedDirect, shoalL7: pacedL7, shoalL4: pacedL4, nginx: pacedNginx, bareNodeHttp: pacedBare },
      addedLatencyMs: {
        l7p50: r2(pacedL7.p50 - pacedDirect.p50),
        l7p99: r2(pacedL7.p99 - pacedDirect.p99),
        l4p50: r2(pacedL4.p50 - pacedDirect.p50),
        l4p99: r2(pacedL4.p99 - pacedDirect.p99),
        nginxP50: r2(pacedNginx.p50 - pacedDirect.p50),
        nginxP99: r2(pacedNginx.p99 - pacedDirect.p99),
      },
      sidecarMemoryMb: { idle: idle.rss, afterMaxLoad: afterMax.rss, peak: memMb(sidecarPid).peak },
      per1000Rps: {
        sidecarL7: { cpuPercent: r2((pacedL7.cpuPercent * 1000) / rate), rssMb: pacedL7.rssMb },
        bareNodeHttp: { cpuPercent: r2((pacedBare.cpuPercent * 1000) / rate), rssMb: pacedBare.rssMb },
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    await discover.close();
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 300));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
