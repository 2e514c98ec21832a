// The sidecar's tracing flags and their parsing. Loaded always (main.ts lists the flags); the tracer
// itself (startTracing.ts) only when --otlp-endpoint is set.
import type { FlagSpec, FlagValues } from '../../shared/flags.ts';

export const DEFAULT_SAMPLE_RATIO = 1;

export const tracingFlags: FlagSpec[] = [
  {
    name: 'otlp-endpoint',
    type: 'string',
    description:
      'Export spans by OTLP/HTTP (JSON) to this collector: a base URL such as http://otel-collector:4318 (/v1/traces is added) or the full traces URL. Unset: no tracing (docs/proxy.md, Tracing)',
  },
  {
    name: 'trace-sample-ratio',
    type: 'string',
    default: String(DEFAULT_SAMPLE_RATIO),
    description: "With --otlp-endpoint, the share of new traces sampled, 0 to 1; a caller's own sampling decision always stands",
  },
];

export interface TracingOptions {
  /** The collector (parsed by parseOtlpEndpoint when a string); unset: tracing off. */
  otlpEndpoint?: URL | string;
  traceSampleRatio?: number;
}

/** --trace-sample-ratio: a number from 0 to 1. */
export function parseSampleRatio(v: unknown): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || n > 1) {
    throw new Error(`--trace-sample-ratio must be a number from 0 to 1 (the share of new traces sampled), got ${JSON.stringify(v)}`);
  }
  return n;
}

/** --otlp-endpoint: the collector's OTLP/HTTP base URL (/v1/traces is added) or its full traces URL. */
export function parseOtlpEndpoint(v: unknown): URL {
  if (typeof v !== 'string' || v === '') throw new Error(`--otlp-endpoint must be an http:// or https:// URL, got ${JSON.stringify(v)}`);
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error(`--otlp-endpoint must be an http:// or https:// URL, got ${JSON.stringify(v)}`);
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '')
    throw new Error(`--otlp-endpoint must be an http:// or https:// URL, got ${JSON.stringify(v)}`);
  if (u.username !== '' || u.password !== '') throw new Error('--otlp-endpoint must not carry credentials in the URL');
  if (u.hash !== '') throw new Error(`--otlp-endpoint must not have a #fragment, got ${JSON.stringify(v)}`);
  // As OTEL_EXPORTER_OTLP_ENDPOINT: a base URL gets the signal's path.
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/traces';
  return u;
}

/** The tracing part of ProxyOptions from parsed flags; throws naming the flag on bad input. */
export function parseTracingFlags(values: FlagValues): TracingOptions {
  const endpoint = values['otlp-endpoint'];
  const ratio = values['trace-sample-ratio'];
  return {
    otlpEndpoint: endpoint === undefined || endpoint === '' ? undefined : parseOtlpEndpoint(endpoint),
    traceSampleRatio: ratio === undefined ? undefined : parseSampleRatio(ratio),
  };
}
