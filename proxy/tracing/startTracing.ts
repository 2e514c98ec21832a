// Turns tracing on (main.ts imports this only when --otlp-endpoint is set): the exporter with its
// counters in the sidecar's registry, and the tracer the request paths read (tracer.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../../shared/log.ts';
import { Counter, type Registry } from '../../shared/metricsRegistry.ts';
import { SidecarTracer } from './sidecarTracer.ts';
import { SpanExporter } from './spanExporter.ts';
import { setTracer } from './tracer.ts';
import { DEFAULT_SAMPLE_RATIO, parseOtlpEndpoint, parseSampleRatio } from './tracingFlags.ts';

export interface Tracing {
  readonly exporter: SpanExporter;
  /** Stops tracing new requests and sends the spans still queued (bounded by the export timeout). */
  close(): Promise<void>;
}

/** The package's version: package.json two folders up from the sources, three from the built dist/. */
function shoalVersion(): string {
  for (const up of [
    ['..', '..'],
    ['..', '..', '..'],
  ]) {
    try {
      const pkg = JSON.parse(readFileSync(join(import.meta.dirname, ...up, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'shoal' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      /* not there */
    }
  }
  return 'unknown';
}

export function startTracing(o: {
  url: URL | string;
  ratio?: number;
  namespace: string;
  app: string;
  log: Logger;
  registry: Registry;
  maxQueue?: number;
  batchSize?: number;
  intervalMs?: number;
}): Tracing {
  const url = typeof o.url === 'string' ? parseOtlpEndpoint(o.url) : o.url;
  const ratio = parseSampleRatio(o.ratio ?? DEFAULT_SAMPLE_RATIO);
  const exported = new Counter({
    name: 'shoal_proxy_trace_spans_exported_total',
    help: 'Spans the collector accepted',
    registers: [o.registry],
  });
  const dropped = new Counter({
    name: 'shoal_proxy_trace_spans_dropped_total',
    help: 'Spans dropped: queue_full (the collector is slower than the traffic), export_failed (the collector refused or could not be reached), shutdown',
    labelNames: ['reason'],
    registers: [o.registry],
  });
  const exporter = new SpanExporter({
    url,
    log: o.log,
    exported: exported as Counter<never>,
    dropped,
    maxQueue: o.maxQueue,
    batchSize: o.batchSize,
    intervalMs: o.intervalMs,
    resource: {
      // The app's name is the service, as in the workload's own telemetry; the sidecar is told apart by its spans' shoal.* attributes.
      attributes: [
        'service.name',
        o.app,
        'service.namespace',
        o.namespace,
        'telemetry.sdk.name',
        'shoal',
        'telemetry.sdk.language',
        'nodejs',
      ],
      scopeName: 'shoal-proxy',
      scopeVersion: shoalVersion(),
    },
  });
  const tracer = new SidecarTracer(ratio, exporter);
  setTracer(tracer);
  o.log.info({ collector: url.href, sampleRatio: ratio }, 'tracing on');
  return {
    exporter,
    async close() {
      setTracer(null);
      await exporter.close();
    },
  };
}
