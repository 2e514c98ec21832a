// One exporter under measurement, in a process of its own (plain .mjs: no type stripper in the measured
// process). argv: variant (none | shoal | sdk), collector URL, request traces per second, seconds. Each request
// trace is two spans (server and client) with the attributes the sidecar records; both exporters batch
// 512 spans, queue at most 2048, send every second, to the same OTLP/HTTP JSON sink.
// Prints one JSON line: RSS before and after loading the exporter, after the run, peak, and CPU.
import { readFileSync } from 'node:fs';

const [variant, url, rateArg, secondsArg] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const mem = () => {
  const s = readFileSync('/proc/self/status', 'utf8');
  const kb = (k) => Number(new RegExp(`${k}:\\s+([0-9]+) kB`).exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 };
};
const root = new URL('../../', import.meta.url);
globalThis.gc?.();
const before = mem().rss;
const cpu0 = process.cpuUsage();
let record;
let flush;
if (variant === 'shoal') {
  const { startTracing } = await import(new URL('dist/proxy/tracing/startTracing.js', root));
  const { createLogger } = await import(new URL('dist/shared/log.js', root));
  const { Registry } = await import(new URL('dist/shared/metricsRegistry.js', root));
  const tracing = startTracing({
    url,
    ratio: 1,
    namespace: 'default',
    app: 'web',
    log: createLogger('bench', 'silent'),
    registry: new Registry(),
  });
  const { tracer } = await import(new URL('dist/proxy/tracing/tracer.js', root));
  const site = { name: 'api.default:8080', direction: 'outbound' };
  const endpoint = { key: '10.0.0.7:8080', address: '10.0.0.7', port: 8080 };
  const raw = ['Host', 'api:8080', 'User-Agent', 'wrk', 'traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'];
  record = () =>
    tracer
      .beginRaw(raw, performance.now(), site, false)
      .end('GET', '/items/7', 'api:8080', '127.0.0.1', 200, '', 'api.default:8080', endpoint, 0, -1);
  flush = () => tracing.close();
} else if (variant === 'sdk') {
  const api = await import('@opentelemetry/api');
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
  const { resourceFromAttributes } = await import('@opentelemetry/resources');
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'web', 'service.namespace': 'default' }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url }), { maxQueueSize: 2048, maxExportBatchSize: 512, scheduledDelayMillis: 1000 }),
    ],
  });
  const tracer = provider.getTracer('shoal-proxy', '0.1.0');
  const parent = api.trace.setSpanContext(api.ROOT_CONTEXT, {
    traceId: '0af7651916cd43dd8448eb211c80319c',
    spanId: 'b7ad6b7169203331',
    traceFlags: 1,
    isRemote: true,
  });
  record = () => {
    const server = tracer.startSpan(
      'GET',
      {
        kind: api.SpanKind.SERVER,
        attributes: {
          'http.request.method': 'GET',
          'url.path': '/items/7',
          'url.scheme': 'http',
          'server.address': 'api',
          'server.port': 8080,
          'client.address': '127.0.0.1',
          'network.peer.address': '127.0.0.1',
          'shoal.listener': 'api.default:8080',
          'shoal.direction': 'outbound',
        },
      },
      parent,
    );
    const client = tracer.startSpan(
      'GET',
      {
        kind: api.SpanKind.CLIENT,
        attributes: {
          'http.request.method': 'GET',
          'url.path': '/items/7',
          'server.address': '10.0.0.7',
          'server.port': 8080,
          'network.peer.address': '10.0.0.7',
          'network.peer.port': 8080,
          'shoal.cluster': 'api.default:8080',
          'shoal.endpoint': '10.0.0.7:8080',
          'shoal.retry_count': 0,
        },
      },
      api.trace.setSpan(parent, server),
    );
    client.setAttribute('http.response.status_code', 200);
    server.setAttribute('http.response.status_code', 200);
    client.end();
    server.end();
  };
  flush = () => provider.shutdown();
} else {
  record = () => {};
  flush = async () => {};
}
globalThis.gc?.();
const loaded = mem().rss;
const cpu1 = process.cpuUsage();
const started = performance.now();
// Paced: rate/100 request traces every 10 ms, as requests would come, so the exporter runs in between.
let count = 0;
const perTick = Math.max(1, Math.round(rate / 100));
for (let tick = 0; tick < seconds * 100; tick++) {
  const due = started + tick * 10;
  const wait = due - performance.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  for (let j = 0; j < perTick; j++) record();
  count += perTick;
}
await flush();
const wall = performance.now() - started;
const cpu = process.cpuUsage(cpu1);
const load = process.cpuUsage(cpu0);
const after = mem();
process.stdout.write(
  `${JSON.stringify({
    variant,
    count,
    rssStartMb: before,
    rssLoadedMb: loaded,
    rssEndMb: after.rss,
    peakMb: after.peak,
    loadCpuMs: (load.user + load.system - cpu.user - cpu.system) / 1000,
    runCpuMs: (cpu.user + cpu.system) / 1000,
    wallMs: wall,
  })}\n`,
);
process.exit(0);
