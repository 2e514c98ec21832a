// The retry decision, one for every L7 path (the HTTP/1.1 fast path, node:http with undici, HTTP/2 and
// gRPC). Each path knows what only it can know (whether the request body can still be sent again,
// whether the client has seen any of the answer) and asks here for the rest, in one order:
//   1. RetryAttempts (the route's retry.attempts) left;
//   2. time left under RequestTimeoutMS (the route's timeoutMs, or the gRPC deadline);
//   3. the failure: an attempt that never reached the endpoint (connect failure or connect timeout, a
//      refused HTTP/2 stream) always may be retried; one that may have been processed (a reset, a
//      timeout, a retriable answer) only for an idempotent method (RFC 9110 9.2.2), or when the route
//      allows it (RetryNonIdempotent; every gRPC call is a POST, so gRPC needs it);
//   4. MaxActiveRetries and the retry budget, through the request's permit (proxy/cluster/permit.ts).
// What answer is retriable: the route's retry codes (Gateway API HTTPRouteRetry), else 502, 503 and
// 504; for gRPC, grpc-status UNAVAILABLE.
import type { Permit } from '../cluster/permit.ts';
import type { RouteBackend } from './routeTable.ts';

/** Why an attempt failed: what the retry rule and the metrics look at. */
export const Failure = { ConnectFailure: 0, ConnectTimeout: 1, RequestTimeout: 2, Reset: 3, Answer: 4 } as const;
export type Failure = (typeof Failure)[keyof typeof Failure];

/** gRPC's UNAVAILABLE: the only gRPC status retried. */
export const GRPC_UNAVAILABLE = 14;

/** Methods a retry cannot make worse (RFC 9110 9.2.2). */
export function idempotent(method: string): boolean {
  switch (method) {
    case 'GET':
    case 'HEAD':
    case 'OPTIONS':
    case 'TRACE':
    case 'PUT':
    case 'DELETE':
      return true;
    default:
      return false;
  }
}

/** The attempt never reached the endpoint: nothing can have been processed. */
export function neverSent(why: Failure): boolean {
  return why === Failure.ConnectFailure || why === Failure.ConnectTimeout;
}

/** Whether this answer is one to retry (before anything of it reaches the client). grpcStatus: -1 when not gRPC (or none yet). */
export function retriableAnswer(backend: RouteBackend, status: number, grpcStatus: number): boolean {
  if (grpcStatus >= 0) return grpcStatus === GRPC_UNAVAILABLE;
  return backend.retriesStatus(status);
}

/**
 * Steps 1–3 of the rule: whether this failure may be retried at all, taking nothing. attempts: retries
 * made so far; deadlineLeft: whether the request's deadline still has time.
 */
export function retryRule(backend: RouteBackend, why: Failure, method: string, attempts: number, deadlineLeft: boolean): boolean {
  if (attempts >= backend.retryAttempts) return false;
  if (!deadlineLeft) return false;
  return neverSent(why) || backend.retryNonIdempotent || idempotent(method);
}

/**
 * May the request be sent again after this failure? The rule (retryRule), then MaxActiveRetries and
 * the budget: takes a retry slot and a retry from the budget when it says yes (the permit holds the
 * slot until it is released, or until the next time it asks).
 */
export function retryAllowed(
  backend: RouteBackend,
  permit: Permit,
  why: Failure,
  method: string,
  attempts: number,
  deadlineLeft: boolean,
  now: number,
): boolean {
  return retryRule(backend, why, method, attempts, deadlineLeft) && permit.tryRetry(now);
}
