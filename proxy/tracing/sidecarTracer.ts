// The sidecar's tracer: continues the caller's trace (W3C Trace Context, else B3) or starts one, decides
// sampling parent-based (the caller's decision stands; a new trace is sampled with --trace-sample-ratio),
// and records two spans per sampled request: a server span for the request as it arrived and a client
// span for the request sent upstream (its id is the parent in the traceparent sent on). Attributes follow
// OpenTelemetry's semantic conventions for HTTP and RPC; mesh attributes are under `shoal.`.
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestTrace, TraceSite, TracedEndpoint, Tracer } from './tracer.ts';
import type { AttributeValue, OtlpSpan } from './otlpJson.ts';
import type { SpanExporter } from './spanExporter.ts';
import { newSpanId, newTraceId, parentOf, traceHeadersOf, traceHeadersOfRaw, type TraceHeaders } from './traceContext.ts';

/** The listener proxy/warmUp.ts sends its requests through before the sidecar is ready. */
const WARM_UP_LISTENER = 'shoal-warm-up';
const KIND_SERVER = 2;
const KIND_CLIENT = 3;
const STATUS_UNSET = 0;
const STATUS_ERROR = 2;
const FLAG_SAMPLED = 0x01;
/** OTLP span flags: the low byte is the W3C flags; 0x100 says whether the parent was remote is known, 0x200 that it was. */
const HAS_IS_REMOTE = 0x100;
const IS_REMOTE = 0x200;

/** The methods semantic conventions name; any other is recorded as _OTHER with the original beside it. */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'TRACE']);
/** gRPC codes a server span marks as errors (semantic conventions for RPC): UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS. */
const GRPC_SERVER_ERRORS = new Set([2, 4, 12, 13, 14, 15]);

function hostOnly(host: string): [string, number] {
  if (host === '') return ['', 0];
  const colon = host.lastIndexOf(':');
  if (colon > 0 && host.indexOf(']', colon) < 0) {
    const port = Number(host.slice(colon + 1));
    return [host.slice(0, colon), Number.isInteger(port) ? port : 0];
  }
  return [host, 0];
}

function pathOnly(path: string): string {
  const q = path.indexOf('?');
  return q < 0 ? path : path.slice(0, q);
}

/** The traceparent of a trace this sidecar does not record: the next hop follows the decision. */
class UnsampledTrace implements RequestTrace {
  readonly traceparent: string;

  constructor(traceparent: string) {
    this.traceparent = traceparent;
  }

  end(): void {}
}

class SampledTrace implements RequestTrace {
  readonly traceparent: string;
  private readonly tracer: SidecarTracer;
  private readonly traceId: string;
  private readonly parentSpanId: string;
  private readonly serverSpanId: string;
  private readonly clientSpanId: string;
  private readonly traceState: string;
  private readonly startMs: number;
  private readonly site: TraceSite;
  private readonly grpc: boolean;

  constructor(
    tracer: SidecarTracer,
    traceId: string,
    parentSpanId: string,
    traceState: string,
    start: number,
    site: TraceSite,
    grpc: boolean,
  ) {
    this.tracer = tracer;
    this.traceId = traceId;
    this.parentSpanId = parentSpanId;
    this.serverSpanId = newSpanId();
    this.clientSpanId = newSpanId();
    this.traceState = traceState;
    this.startMs = performance.timeOrigin + start;
    this.site = site;
    this.grpc = grpc;
    this.traceparent = `00-${traceId}-${this.clientSpanId}-01`;
  }

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
  ): void {
    const endMs = performance.timeOrigin + performance.now();
    const p = pathOnly(path);
    const known = KNOWN_METHODS.has(method);
    let name = known ? method : 'HTTP';
    let rpcService = '';
    let rpcMethod = '';
    if (this.grpc) {
      // /package.Service/Method
      const slash = p.indexOf('/', 1);
      if (p.charCodeAt(0) === 47 && slash > 1) {
        rpcService = p.slice(1, slash);
        rpcMethod = p.slice(slash + 1);
        name = `${rpcService}/${rpcMethod}`;
      }
    }
    // Common to both spans: method, path, gRPC names and status.
    const common: AttributeValue[] = ['http.request.method', known ? method : '_OTHER'];
    if (!known) common.push('http.request.method_original', method);
    common.push('url.path', p);
    if (this.grpc) {
      common.push('rpc.system', 'grpc');
      if (rpcService !== '') common.push('rpc.service', rpcService, 'rpc.method', rpcMethod);
      if (grpcStatus >= 0) common.push('rpc.grpc.status_code', grpcStatus);
    }
    const [serverHost, serverPort] = hostOnly(host);
    // Server span: the request as the caller sent it; errors are 5xx (and gRPC's server-fault codes).
    const sa = common.slice();
    sa.push('url.scheme', 'http');
    if (serverHost !== '') sa.push('server.address', serverHost);
    if (serverPort > 0) sa.push('server.port', serverPort);
    if (peer !== '') sa.push('client.address', peer, 'network.peer.address', peer);
    if (status > 0) sa.push('http.response.status_code', status);
    sa.push('shoal.listener', this.site.name, 'shoal.direction', this.site.direction);
    const serverError = status >= 500 || (this.grpc && GRPC_SERVER_ERRORS.has(grpcStatus));
    if (serverError) sa.push('error.type', error !== '' ? error : status >= 500 ? String(status) : `grpc:${grpcStatus}`);
    // Client span: the request sent upstream; errors are 4xx/5xx, any non-OK gRPC status, or no answer at all.
    const ca = common.slice();
    if (endpoint !== null)
      ca.push(
        'server.address',
        endpoint.address,
        'server.port',
        endpoint.port,
        'network.peer.address',
        endpoint.address,
        'network.peer.port',
        endpoint.port,
      );
    // A status the sidecar made up (error set) is not the upstream's answer.
    if (error === '' && status > 0) ca.push('http.response.status_code', status);
    ca.push('shoal.cluster', cluster);
    if (endpoint !== null) ca.push('shoal.endpoint', endpoint.key);
    ca.push('shoal.retry_count', retries);
    const clientError = error !== '' || status >= 400 || (this.grpc && grpcStatus > 0);
    if (clientError) ca.push('error.type', error !== '' ? error : status >= 400 ? String(status) : `grpc:${grpcStatus}`);
    // The sidecar's own warm-up requests (proxy/warmUp.ts) run this code so it is compiled, but are nobody's trace.
    if (this.site.name === WARM_UP_LISTENER) return;
    const remote = this.parentSpanId !== '';
    this.tracer.record({
      traceId: this.traceId,
      spanId: this.serverSpanId,
      parentSpanId: this.parentSpanId,
      traceState: this.traceState,
      name,
      kind: KIND_SERVER,
      startMs: this.startMs,
      endMs,
      attributes: sa,
      statusCode: serverError ? STATUS_ERROR : STATUS_UNSET,
      statusMessage: serverError && error !== '' ? error : '',
      flags: FLAG_SAMPLED | (remote ? HAS_IS_REMOTE | IS_REMOTE : HAS_IS_REMOTE),
    });
    this.tracer.record({
      traceId: this.traceId,
      spanId: this.clientSpanId,
      parentSpanId: this.serverSpanId,
      traceState: this.traceState,
      name,
      kind: KIND_CLIENT,
      startMs: this.startMs,
      endMs,
      attributes: ca,
      statusCode: clientError ? STATUS_ERROR : STATUS_UNSET,
      statusMessage: clientError && error !== '' ? error : '',
      flags: FLAG_SAMPLED | HAS_IS_REMOTE,
    });
  }
}

export class SidecarTracer implements Tracer {
  readonly ratio: number;
  private readonly exporter: SpanExporter;
  /** Reused for every request: the headers are read into it, then parsed (one thread, no reentry). */
  private readonly found: TraceHeaders = {
    traceparent: undefined,
    tracestate: undefined,
    b3: undefined,
    b3TraceId: undefined,
    b3SpanId: undefined,
    b3Sampled: undefined,
    b3Flags: undefined,
  };

  constructor(ratio: number, exporter: SpanExporter) {
    this.ratio = ratio;
    this.exporter = exporter;
  }

  record(span: OtlpSpan): void {
    this.exporter.add(span);
  }

  beginRaw(raw: readonly string[], start: number, site: TraceSite, grpc: boolean): RequestTrace | null {
    return this.begin(traceHeadersOfRaw(raw, this.found), start, site, grpc);
  }

  beginHeaders(headers: IncomingHttpHeaders, start: number, site: TraceSite, grpc: boolean): RequestTrace | null {
    return this.begin(traceHeadersOf(headers, this.found), start, site, grpc);
  }

  private begin(h: TraceHeaders, start: number, site: TraceSite, grpc: boolean): RequestTrace | null {
    const parent = parentOf(h);
    const sampled = parent !== null && parent.sampled !== null ? parent.sampled : this.ratio >= 1 || Math.random() < this.ratio;
    if (!sampled) {
      // The caller's own unsampled traceparent goes on as it came; a trace that starts here (or came
      // as B3 only) gets one, so the next sidecar follows this decision instead of drawing again.
      if (parent !== null && parent.w3c) return null;
      return new UnsampledTrace(`00-${parent?.traceId ?? newTraceId()}-${parent?.spanId ?? newSpanId()}-00`);
    }
    return new SampledTrace(
      this,
      parent?.traceId ?? newTraceId(),
      parent?.spanId ?? '',
      parent?.w3c ? (h.tracestate ?? '') : '',
      start,
      site,
      grpc,
    );
  }
}
