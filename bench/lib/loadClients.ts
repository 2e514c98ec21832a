// The load generators: wrk for closed-loop maximum rate (with its latency percentiles through a Lua
// done() hook), the paced open-loop client for fixed rates, iperf3 for bulk TCP.
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { cpuSeconds, memMb, pinned } from './processes.ts';
import { CURVE_PERCENTILES } from './stats.ts';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

let luaFile = '';
function wrkLua(): string {
  if (luaFile) return luaFile;
  luaFile = join(mkdtempSync(join(tmpdir(), 'shoal-bench-wrk-')), 'percentiles.lua');
  writeFileSync(
    luaFile,
    `done = function(summary, latency, requests)
  io.write("WRKJSON {")
  for _, p in ipairs({${CURVE_PERCENTILES.join(', ')}}) do
    io.write(string.format('"p%s":%d,', tostring(p), latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format('"max":%d,"requests":%d,"durationUs":%d,"socketErrors":%d,"non2xx":%d}\\n',
    latency.max, summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status))
end
`,
  );
  return luaFile;
}

export interface WrkResult {
  rps: number;
  /** Percentile (as in CURVE_PERCENTILES) → milliseconds. */
  latencyMs: Record<string, number>;
  maxMs: number;
  requests: number;
  socketErrors: number;
  non2xx: number;
}

/** Closed-loop keep-alive load: `connections` connections, 2 threads, for `seconds`. */
export async function wrk(url: string, seconds: number, connections: number, cpus?: string, maxErrorShare = 0.01): Promise<WrkResult> {
  const [cmd, args] = pinned(cpus, 'wrk', ['-c', String(connections), '-t', '2', '-d', `${seconds}s`, '-s', wrkLua(), url]);
  const { stdout } = await run(cmd, args, { maxBuffer: 1 << 20 });
  const m = /WRKJSON (\{.*\})/.exec(stdout);
  if (!m) throw new Error(`wrk ${url}: no summary in its output: ${stdout.slice(0, 300)}`);
  const j = JSON.parse(m[1]) as Record<string, number>;
  const latencyMs: Record<string, number> = {};
  for (const p of CURVE_PERCENTILES) latencyMs[String(p)] = j[`p${p}`] / 1000;
  const rps = j.requests / (j.durationUs / 1e6);
  if (j.requests === 0) throw new Error(`wrk ${url}: no request completed`);
  if (j.non2xx > maxErrorShare * j.requests || j.socketErrors > maxErrorShare * j.requests) {
    throw new Error(`wrk ${url}: ${j.non2xx} non-2xx responses and ${j.socketErrors} socket errors in ${j.requests} requests`);
  }
  return { rps, latencyMs, maxMs: j.max / 1000, requests: j.requests, socketErrors: j.socketErrors, non2xx: j.non2xx };
}

export interface PacedResult {
  requests: number;
  measured: number;
  errors: number;
  /** Percentile → milliseconds, measured from each request's intended send time. */
  latencyMs: Record<string, number>;
  maxMs: number;
  /** When a pid was watched: its CPU seconds over the run and its memory at the end. */
  cpuSeconds?: number;
  wallSeconds: number;
  rssMb?: number;
  peakRssMb?: number;
  anonMb?: number;
}

let pacedChild: ChildProcess | undefined;
let pacedJobs = 0;
const pacedWaiting = new Map<number, { resolve(r: PacedResult): void; reject(e: Error): void }>();

/** The paced client, forked once and reused (Node's start-up costs seconds on a loaded machine). */
function pacedClient(): ChildProcess {
  if (pacedChild && pacedChild.connected) return pacedChild;
  const child = fork(join(here, 'proxyPacedClient.ts'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  child.on('message', (m: { id: number; result: PacedResult }) => {
    const w = pacedWaiting.get(m.id);
    pacedWaiting.delete(m.id);
    w?.resolve(m.result);
  });
  child.on('exit', (code) => {
    for (const w of pacedWaiting.values()) w.reject(new Error(`the paced client exited ${code}`));
    pacedWaiting.clear();
    if (pacedChild === child) pacedChild = undefined;
  });
  // It must not keep a finished benchmark alive.
  child.unref();
  (child.channel as unknown as { unref?(): void } | undefined)?.unref?.();
  pacedChild = child;
  return child;
}

/** Ends the shared paced client. */
export function closePacedClient(): void {
  pacedChild?.kill('SIGTERM');
  pacedChild = undefined;
}

/**
 * Open-loop load at a fixed rate (bench/lib/proxyPacedClient.ts), coordinated omission corrected:
 * each request is timed from when it was due. The first second warms up and is not measured.
 */
/** `maxErrorShare`: the share of failed requests above which the contender counts as not run. */
export async function paced(url: string, rps: number, seconds: number, watchPid?: number, maxErrorShare = 0.01): Promise<PacedResult> {
  const cpu0 = watchPid ? cpuSeconds(watchPid) : 0;
  const t0 = performance.now();
  const child = pacedClient();
  const id = ++pacedJobs;
  const out = await new Promise<PacedResult>((resolve, reject) => {
    pacedWaiting.set(id, { resolve, reject });
    (child.channel as unknown as { ref?(): void } | undefined)?.ref?.();
    child.send({ id, url, rps, seconds });
  }).finally(() => {
    if (pacedWaiting.size === 0) (child.channel as unknown as { unref?(): void } | undefined)?.unref?.();
  });
  out.wallSeconds = (performance.now() - t0) / 1000;
  if (out.errors > maxErrorShare * out.requests || out.errors === out.requests)
    throw new Error(`paced ${url}: ${out.errors} of ${out.requests} requests failed`);
  if (watchPid) {
    out.cpuSeconds = cpuSeconds(watchPid) - cpu0;
    const m = memMb(watchPid);
    out.rssMb = m.rss;
    out.peakRssMb = m.peak;
    out.anonMb = m.anon;
  }
  return out;
}

/** iperf3 for `seconds` against host:port (a server or a proxy in front of one): received Gbit/s. */
export async function iperf3(host: string, port: number, seconds: number, cpus?: string): Promise<{ gbps: number; retransmits: number }> {
  const [cmd, args] = pinned(cpus, 'iperf3', ['-c', host, '-p', String(port), '-t', String(seconds), '-J']);
  let stdout: string;
  try {
    ({ stdout } = await run(cmd, args, { maxBuffer: 16 << 20 }));
  } catch (err) {
    const e = err as { stdout?: string; message: string };
    const reason = e.stdout ? (JSON.parse(e.stdout) as { error?: string }).error : undefined;
    throw new Error(`iperf3 to port ${port}: ${reason ?? e.message}`, { cause: err });
  }
  const j = JSON.parse(stdout) as {
    end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
    error?: string;
  };
  if (j.error) throw new Error(`iperf3 to port ${port}: ${j.error}`);
  return { gbps: j.end.sum_received.bits_per_second / 1e9, retransmits: j.end.sum_sent.retransmits ?? 0 };
}
