// The one thing the request paths import for tracing: `tracer`, null unless --otlp-endpoint is set.
// With tracing off a request pays one null check and allocates nothing; the implementation
// (sidecarTracer.ts, the exporter, the encoder) is loaded by main.ts only when tracing is on.
import type { IncomingHttpHeaders } from 'node:http';

/** Where a request came in: the listener's name and direction become span attributes. */
export interface TraceSite {
  readonly name: string;
  readonly direction: 'inbound' | 'outbound';
}

/** The upstream end of the client span. */
export interface TracedEndpoint {
  readonly key: string;
  readonly address: string;
  readonly port: number;
}

/**
 * One request's trace: the sidecar's server span (the request as it arrived) and its client span
 * (the request sent upstream, all attempts), recorded only when sampled.
 */
export interface RequestTrace {
  /** The W3C traceparent to send upstream: this request's trace, the client span's id as parent. */
  readonly traceparent: string;
  /**
   * The request is over: records both spans (when sampled). status is what the client got (499 when
   * it went away), error the x-shoal-error the sidecar made up ('' for none), grpcStatus -1 for none.
   */
  end(
    method: string,
    path: string,
    host: string,
    peer: string,
    status: number,
    error: string,
    cluster: string,
    endpoint: TracedEndpoint | null,
    retries: number,
    grpcStatus: number,
  ): void;
}

export interface Tracer {
  /** The trace of a request whose headers are HTTP/1 raw pairs [name, value, ...]; null: pass the client's trace headers on untouched. */
  beginRaw(raw: readonly string[], start: number, site: TraceSite, grpc: boolean): RequestTrace | null;
  /** The same from node's lower-case header object (HTTP/2, gRPC). */
  beginHeaders(headers: IncomingHttpHeaders, start: number, site: TraceSite, grpc: boolean): RequestTrace | null;
}

/** A live binding: importers read the current value. */
export let tracer: Tracer | null = null;

export function setTracer(t: Tracer | null): void {
  tracer = t;
}

/** Replaces the traceparent pair in an HTTP/1 header list (node:http/undici path) with the trace's. */
export function setTraceparent(headers: string[], trace: RequestTrace): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i].length === 11 && headers[i].toLowerCase() === 'traceparent') {
      headers.splice(i, 2);
      i -= 2;
    }
  }
  headers.push('traceparent', trace.traceparent);
}
