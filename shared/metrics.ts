// One metrics setup for every piece: a registry of its own (shared/metricsRegistry.ts, Prometheus text without
// prom-client), every series labelled with the piece, and process metrics read when scraped.
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics } from 'node:v8';
import { Registry, type Collectable, type MetricData, type Sample } from './metricsRegistry.ts';

export function createRegistry(piece: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ piece });
  registerProcessMetrics(registry, 'shoal_');
  return registry;
}

type Read = () => number | Sample[] | Promise<number>;

function metric(name: string, help: string, type: 'counter' | 'gauge', read: Read): Collectable {
  return {
    name,
    async get(): Promise<MetricData> {
      const v = await read();
      return { name, help, type, aggregator: 'sum', values: typeof v === 'number' ? [{ labels: {}, value: v }] : v };
    },
  };
}

const startTime = Math.round(Date.now() / 1000 - process.uptime());
const linux = process.platform === 'linux';
type IntervalHistogram = ReturnType<typeof monitorEventLoopDelay>;
let maxFds: number | undefined;
// One event-loop delay monitor per process (a timer every 10 ms, as prom-client's), reset at each scrape.
let loopDelay: IntervalHistogram | undefined;

/** /proc/self/status fields in bytes (Linux), e.g. VmRSS. */
function procStatus(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of readFileSync('/proc/self/status', 'utf8').matchAll(/^(Vm\w+):\s+(\d+) kB$/gm)) out[m[1]] = Number(m[2]) * 1024;
  return out;
}

function readMaxFds(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  return Number(line?.split(/ {2,}/)[1]);
}

/** The process and Node.js metrics prom-client's collectDefaultMetrics writes, under the same names, minus GC timings. */
export function registerProcessMetrics(registry: Registry, prefix: string): void {
  loopDelay ??= monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const delay = loopDelay;
  const p = prefix;
  const all: Collectable[] = [
    metric(`${p}process_cpu_user_seconds_total`, 'Total user CPU time spent in seconds.', 'counter', () => process.cpuUsage().user / 1e6),
    metric(
      `${p}process_cpu_system_seconds_total`,
      'Total system CPU time spent in seconds.',
      'counter',
      () => process.cpuUsage().system / 1e6,
    ),
    metric(`${p}process_cpu_seconds_total`, 'Total user and system CPU time spent in seconds.', 'counter', () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    }),
    metric(`${p}process_start_time_seconds`, 'Start time of the process since unix epoch in seconds.', 'gauge', () => startTime),
    metric(`${p}process_resident_memory_bytes`, 'Resident memory size in bytes.', 'gauge', () => process.memoryUsage.rss()),
  ];
  if (linux) {
    maxFds ??= readMaxFds();
    const fds = maxFds;
    all.push(
      metric(`${p}process_virtual_memory_bytes`, 'Virtual memory size in bytes.', 'gauge', () => procStatus().VmSize),
      metric(`${p}process_heap_bytes`, 'Process heap size in bytes.', 'gauge', () => procStatus().VmData),
      metric(`${p}process_open_fds`, 'Number of open file descriptors.', 'gauge', () => readdirSync('/proc/self/fd').length - 1),
      metric(`${p}process_max_fds`, 'Maximum number of open file descriptors.', 'gauge', () => fds),
    );
  }
  // The loop's lag now (time to the next turn), and the delays sampled since the last scrape.
  const delays: Array<[string, string, (h: IntervalHistogram) => number]> = [
    ['min', 'The minimum recorded event loop delay.', (h) => h.min],
    ['max', 'The maximum recorded event loop delay.', (h) => h.max],
    ['mean', 'The mean of the recorded event loop delays.', (h) => h.mean],
    ['stddev', 'The standard deviation of the recorded event loop delays.', (h) => h.stddev],
    ['p50', 'The 50th percentile of the recorded event loop delays.', (h) => h.percentile(50)],
    ['p90', 'The 90th percentile of the recorded event loop delays.', (h) => h.percentile(90)],
    ['p99', 'The 99th percentile of the recorded event loop delays.', (h) => h.percentile(99)],
  ];
  let resetQueued = false;
  all.push(
    metric(
      `${p}nodejs_eventloop_lag_seconds`,
      'Lag of event loop in seconds.',
      'gauge',
      () =>
        new Promise<number>((resolve) => {
          const t0 = process.hrtime.bigint();
          setImmediate(() => resolve(Number(process.hrtime.bigint() - t0) / 1e9));
        }),
    ),
  );
  for (const [stat, help, pick] of delays) {
    all.push(
      metric(`${p}nodejs_eventloop_lag_${stat}_seconds`, help, 'gauge', () => {
        // Every statistic of one scrape reads the same interval; the next turn of the loop starts a new one.
        if (!resetQueued) {
          resetQueued = true;
          setImmediate(() => {
            resetQueued = false;
            delay.reset();
          });
        }
        return delay.count > 0 ? pick(delay) / 1e9 : 0;
      }),
    );
  }
  all.push(
    metric(
      `${p}nodejs_active_resources`,
      'Number of active resources that are currently keeping the event loop alive, grouped by async resource type.',
      'gauge',
      () => {
        const byType = new Map<string, number>();
        for (const t of process.getActiveResourcesInfo()) byType.set(t, (byType.get(t) ?? 0) + 1);
        return [...byType].map(([type, value]) => ({ labels: { type }, value }));
      },
    ),
    metric(
      `${p}nodejs_active_resources_total`,
      'Total number of active resources.',
      'gauge',
      () => process.getActiveResourcesInfo().length,
    ),
    metric(`${p}nodejs_heap_size_total_bytes`, 'Process heap size from Node.js in bytes.', 'gauge', () => process.memoryUsage().heapTotal),
    metric(
      `${p}nodejs_heap_size_used_bytes`,
      'Process heap size used from Node.js in bytes.',
      'gauge',
      () => process.memoryUsage().heapUsed,
    ),
    metric(`${p}nodejs_external_memory_bytes`, 'Node.js external memory size in bytes.', 'gauge', () => process.memoryUsage().external),
  );
  for (const [kind, field] of [
    ['total', 'space_size'],
    ['used', 'space_used_size'],
    ['available', 'space_available_size'],
  ] as const) {
    all.push(
      metric(`${p}nodejs_heap_space_size_${kind}_bytes`, `Process heap space size ${kind} from Node.js in bytes.`, 'gauge', () =>
        getHeapSpaceStatistics().map((s) => ({ labels: { space: s.space_name.replace(/_space$/, '') }, value: s[field] })),
      ),
    );
  }
  const [major, minor, patch] = process.versions.node.split('.').map(Number);
  all.push(
    metric(`${p}nodejs_version_info`, 'Node.js version info.', 'gauge', () => [
      { labels: { version: process.version, major, minor, patch }, value: 1 },
    ]),
  );
  for (const m of all) registry.registerMetric(m);
}
