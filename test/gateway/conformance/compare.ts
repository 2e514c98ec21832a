// What the official mesh runner does with one expected response (utils/echo/pod.go): makeRequest's
// defaults and request line, compareRequest's checks, AwaitConvergence's loop (utils/http), and the
// weight check (utils/weight TestWeightedDistributionBatch), ported as they are.
import type { ClientResult } from '../lib/meshClient.ts';
import { statusCodes, type ExpectedResponse, type RedirectRequest } from './cases.ts';

/** utils/config defaults: RequiredConsecutiveSuccesses and MaxTimeToConsistency. */
export const REQUIRED_CONSECUTIVE_SUCCESSES = 3;
export const MAX_TIME_TO_CONSISTENCY_MS = 30_000;
/** AwaitConvergence waits this long after a failed attempt. */
const RETRY_DELAY_MS = 1_000;

export interface PlannedRequest {
  protocol: 'http' | 'grpc';
  /** What the client connects to: a name (resolved in the pod) or an address. */
  host: string;
  port: number;
  /** The URL's host as the echo client sends it (CalculateHost: no :80 for http). */
  hostHeader: string;
  path: string;
  method: string;
  headers: Record<string, string>;
}

/** makeRequest: Host defaults to "echo", method to GET (not for gRPC), the URL protocol://host+path. */
export function planRequest(exp: ExpectedResponse, podIps: Record<string, string>): PlannedRequest {
  const r = exp.Request;
  let host = r.Host || 'echo';
  host = host.replace(/^POD_IP\(([^)]+)\)/, (_, app: string) => {
    const ip = podIps[app];
    if (!ip) throw new Error(`no pod address for ${app} (known: ${Object.keys(podIps).join(', ')})`);
    return ip.includes(':') ? `[${ip}]` : ip;
  });
  const protocol = r.Protocol === 'grpc' ? 'grpc' : 'http';
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(host);
  if (!m) throw new Error(`cannot parse host ${JSON.stringify(host)}`);
  const name = m[1].replace(/^\[|\]$/g, '');
  const port = m[2] ? Number(m[2]) : 80;
  // CalculateHost: http to port 80 drops the port; any other keeps host:port as given.
  const hostHeader = protocol === 'http' && port === 80 ? m[1] : host;
  return {
    protocol,
    host: name,
    port,
    hostHeader,
    path: r.Path || '/',
    method: protocol === 'grpc' ? '' : r.Method || 'GET',
    headers: { ...(r.Headers ?? {}) },
  };
}

/** Go's http.Header lookups are by canonical name; the echo server's map keys are canonical. */
function lowerKeys(h: Record<string, string[]>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [k, v] of Object.entries(h)) out.set(k.toLowerCase(), [...(out.get(k.toLowerCase()) ?? []), ...v]);
  return out;
}

/** compareRequest: null when the answer is what EXP wants, else why not (the Go messages). */
export function compareRequest(exp: ExpectedResponse, resp: ClientResult): string | null {
  if (resp.code === null) return `no answer: ${resp.error ?? 'unknown error'}`;
  const want = statusCodes(exp);
  if (exp.Request.Protocol === 'grpc') {
    const mapped = want.map((c) => (c === 0 ? 200 : c));
    if (!mapped.includes(resp.code)) return `wanted gRPC status code to be one of [${want.join(' ')}] (mapped to HTTP), got ${resp.code}`;
  } else if (!want.includes(resp.code)) {
    return `wanted status code to be one of [${want.join(' ')}], got ${resp.code}`;
  }
  const wantReq = exp.ExpectedRequest ?? {};
  const reqHeaders = lowerKeys(resp.requestHeaders);
  if (wantReq.Headers) {
    if (Object.keys(resp.requestHeaders).length === 0) return `no headers captured, expected ${Object.keys(wantReq.Headers).length}`;
    for (const [name, expected] of Object.entries(wantReq.Headers)) {
      const actual = reqHeaders.get(name.toLowerCase());
      if (!actual) return `expected ${name} header to be set, actual headers: ${JSON.stringify(resp.requestHeaders)}`;
      if (actual.join(',') !== expected) return `expected ${name} header to be set to ${expected}, got ${actual.join(',')}`;
    }
  }
  for (const name of wantReq.AbsentHeaders ?? []) {
    const v = reqHeaders.get(name.toLowerCase());
    if (v) return `expected ${name} header to not be set, got ${JSON.stringify(v)}`;
  }
  const respHeaders = lowerKeys(resp.responseHeaders);
  for (const name of exp.Response?.AbsentHeaders ?? []) {
    const v = respHeaders.get(name.toLowerCase());
    if (v && v.length > 0) return `expected no header "${name}", got ${JSON.stringify(v)}`;
  }
  for (const [k, v] of Object.entries(exp.Response?.Headers ?? {})) {
    const got = respHeaders.get(k.toLowerCase())?.[0] ?? '';
    if (got !== v) return `expected header ${k}=${v}, got ${got}`;
  }
  if (!resp.hostname.startsWith(exp.Backend ?? '')) return `expected pod name to start with ${exp.Backend}, got ${resp.hostname}`;
  return null;
}

/**
 * What the official mesh runner does not check but the case states: the path the backend saw
 * (ExpectedRequest.Path) and the redirect's Location (RedirectRequest). Reported, never a verdict.
 */
export function beyondOfficialChecks(exp: ExpectedResponse, plan: PlannedRequest, resp: ClientResult): string[] {
  const notes: string[] = [];
  const wantPath = exp.ExpectedRequest?.Path;
  if (wantPath !== undefined && resp.path !== undefined && resp.path !== wantPath)
    notes.push(`backend saw path ${resp.path}, the case states ${wantPath}`);
  if (exp.RedirectRequest) {
    const location = resp.responseHeaders.location?.[0];
    if (!location) notes.push('no Location header on the redirect');
    else {
      const problem = redirectMismatch(exp.RedirectRequest, plan, location);
      if (problem) notes.push(problem);
    }
  }
  return notes;
}

function redirectMismatch(want: RedirectRequest, plan: PlannedRequest, location: string): string | null {
  let u: URL;
  try {
    u = new URL(location, `http://${plan.hostHeader}${plan.path}`);
  } catch {
    return `Location ${JSON.stringify(location)} is not a URL`;
  }
  const bad: string[] = [];
  if (want.Scheme && u.protocol !== `${want.Scheme}:`) bad.push(`scheme ${u.protocol.slice(0, -1)} (want ${want.Scheme})`);
  if (want.Host && u.hostname !== want.Host) bad.push(`host ${u.hostname} (want ${want.Host})`);
  if (want.Port && u.port !== want.Port) bad.push(`port ${u.port || '(default)'} (want ${want.Port})`);
  if (want.Path && u.pathname !== want.Path) bad.push(`path ${u.pathname} (want ${want.Path})`);
  return bad.length > 0 ? `Location ${location}: ${bad.join(', ')}` : null;
}

export interface Convergence {
  ok: boolean;
  attempts: number;
  ms: number;
  /** Why the last failed attempt failed. */
  last: string | null;
  lastResult: ClientResult | null;
  notes: string[];
}

/**
 * AwaitConvergence: attempts until THRESHOLD consecutive successes; a failure resets the count and
 * waits 1 s; the whole is bounded by MAX_TIME_TO_CONSISTENCY_MS (checked between attempts, as Go does).
 */
export async function awaitConvergence(
  attempt: () => Promise<{ error: string | null; result: ClientResult | null; notes: string[] }>,
  threshold = REQUIRED_CONSECUTIVE_SUCCESSES,
  maxMs = MAX_TIME_TO_CONSISTENCY_MS,
): Promise<Convergence> {
  const start = Date.now();
  let successes = 0;
  let attempts = 0;
  let last: string | null = null;
  let lastResult: ClientResult | null = null;
  let notes: string[] = [];
  for (;;) {
    if (Date.now() - start >= maxMs) return { ok: false, attempts, ms: Date.now() - start, last, lastResult, notes };
    const a = await attempt();
    attempts++;
    lastResult = a.result;
    if (a.error === null) {
      notes = a.notes;
      successes++;
      if (successes >= threshold) return { ok: true, attempts, ms: Date.now() - start, last, lastResult, notes };
      continue;
    }
    last = a.error;
    notes = a.notes;
    successes = 0;
    const left = maxMs - (Date.now() - start);
    if (left <= 0) return { ok: false, attempts, ms: Date.now() - start, last, lastResult, notes };
    await new Promise((r) => setTimeout(r, Math.min(RETRY_DELAY_MS, left)));
  }
}

/** utils/weight extractBackendName: the pod name without its ReplicaSet and pod hashes. */
export function extractBackendName(podName: string): string {
  const parts = podName.split('-');
  if (parts.length < 3) return podName;
  return parts.slice(0, -2).join('-');
}

export const WEIGHT_TOTAL_REQUESTS = 500;
export const WEIGHT_TOLERANCE = 0.05;
export const WEIGHT_MAX_TEST_RETRIES = 10;

/** TestWeightedDistributionBatch over the answering pods of one batch: null when within tolerance, else the errors. */
export function weightedDistribution(podNames: string[], expected: Record<string, number>): string | null {
  if (podNames.length !== WEIGHT_TOTAL_REQUESTS) return `expected ${WEIGHT_TOTAL_REQUESTS} responses but got ${podNames.length}`;
  const seen = new Map<string, number>();
  for (const pod of podNames) {
    const backend = extractBackendName(pod);
    if (!(backend in expected)) return `request was handled by an unexpected pod "${pod}" (extracted backend: "${backend}")`;
    seen.set(backend, (seen.get(backend) ?? 0) + 1);
  }
  const errs: string[] = [];
  const active = Object.values(expected).filter((w) => w > 0).length;
  if (seen.size !== active) errs.push(`expected ${active} backends to receive traffic, but got ${seen.size}`);
  for (const [backend, want] of Object.entries(expected)) {
    const got = seen.get(backend);
    if (got === undefined && want !== 0) {
      errs.push(`expect traffic to hit backend "${backend}" - but none was received`);
      continue;
    }
    const share = (got ?? 0) / WEIGHT_TOTAL_REQUESTS;
    if (Math.abs(share - want) > WEIGHT_TOLERANCE)
      errs.push(`backend "${backend}" weighted traffic of ${share} not within tolerance ${want} (+/-${WEIGHT_TOLERANCE.toFixed(6)})`);
  }
  errs.sort();
  return errs.length > 0 ? errs.join('\n') : null;
}
