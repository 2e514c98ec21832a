// AdmissionReview v1 in, AdmissionReview v1 out. Every well-formed review is allowed: shoal never blocks a
// pod or Service for its own mistake; what it could not do comes back as warnings (and events).
import { injectPod, type InjectorConfig } from './podInjector.ts';
import { rewriteService } from './serviceRewriter.ts';
import type { JsonPatchOp } from './jsonPatch.ts';
import type { Pod, Service } from './kubeShapes.ts';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface GroupVersionKind {
  group: string;
  version: string;
  kind: string;
}

export interface AdmissionRequest {
  uid: string;
  kind: GroupVersionKind;
  resource?: { group: string; version: string; resource: string };
  subResource?: string;
  name?: string;
  namespace?: string;
  operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  object?: unknown;
  oldObject?: unknown;
  dryRun?: boolean;
  [key: string]: unknown;
}

export interface AdmissionResponse {
  uid: string;
  allowed: true;
  patchType?: 'JSONPatch';
  patch?: string;
  warnings?: string[];
}

export interface AdmissionReviewOut {
  apiVersion: typeof ADMISSION_API_VERSION;
  kind: 'AdmissionReview';
  response: AdmissionResponse;
}

export interface AdmissionOutcome {
  review: AdmissionReviewOut;
  /** What happened, for the log and metrics: e.g. "pod injected", "pod skipped: host-network pod". */
  summary: string;
  /** Events to record on the pod (none on dry runs). */
  events: Array<{ namespace: string; podName: string; reason: string; message: string }>;
  patch: JsonPatchOp[];
}

export class MalformedReviewError extends Error {
  override name = 'MalformedReviewError';
}

const MAX_WARNINGS = 10;
const MAX_WARNING_LENGTH = 240;

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Checks the envelope the API server sends; throws MalformedReviewError naming the first problem. */
export function parseAdmissionReview(body: unknown): AdmissionRequest {
  if (!isObject(body)) throw new MalformedReviewError('the body is not a JSON object');
  if (body.apiVersion !== ADMISSION_API_VERSION)
    throw new MalformedReviewError(`apiVersion must be ${ADMISSION_API_VERSION}, got ${JSON.stringify(body.apiVersion)}`);
  if (body.kind !== 'AdmissionReview') throw new MalformedReviewError(`kind must be AdmissionReview, got ${JSON.stringify(body.kind)}`);
  const req = body.request;
  if (!isObject(req)) throw new MalformedReviewError('request is missing');
  if (typeof req.uid !== 'string' || req.uid === '') throw new MalformedReviewError('request.uid is missing');
  if (!isObject(req.kind) || typeof req.kind.kind !== 'string' || typeof req.kind.version !== 'string')
    throw new MalformedReviewError('request.kind is missing');
  if (typeof req.operation !== 'string') throw new MalformedReviewError('request.operation is missing');
  if (req.namespace !== undefined && typeof req.namespace !== 'string') throw new MalformedReviewError('request.namespace is not a string');
  if ((req.operation === 'CREATE' || req.operation === 'UPDATE') && !isObject(req.object))
    throw new MalformedReviewError('request.object is missing');
  return req as unknown as AdmissionRequest;
}

function allow(uid: string, patch: JsonPatchOp[], warnings: string[]): AdmissionReviewOut {
  const response: AdmissionResponse = { uid, allowed: true };
  if (patch.length > 0) {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(patch)).toString('base64');
  }
  const kept = warnings.slice(0, MAX_WARNINGS).map((w) => (w.length > MAX_WARNING_LENGTH ? `${w.slice(0, MAX_WARNING_LENGTH - 1)}…` : w));
  if (kept.length > 0) response.warnings = kept;
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

/** Decides one review. Throws MalformedReviewError for a body that is no AdmissionReview v1. */
export function admit(body: unknown, config: InjectorConfig): AdmissionOutcome {
  const req = parseAdmissionReview(body);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
  const core = (req.kind.group ?? '') === '' && req.kind.version === 'v1' && (req.subResource ?? '') === '';
  const object = req.object as Record<string, unknown> | undefined;
  const meta = isObject(object?.metadata) ? object.metadata : {};
  const namespace = typeof meta.namespace === 'string' && meta.namespace !== '' ? meta.namespace : (req.namespace ?? '');

  if (core && req.kind.kind === 'Pod' && req.operation === 'CREATE') {
    const podName = [meta.name, req.name, meta.generateName].find((n): n is string => typeof n === 'string' && n !== '') ?? '';
    let result;
    try {
      result = injectPod(object as Pod, namespace, config);
    } catch (err) {
      const message = `injection failed: ${(err as Error).message}; the pod is admitted without the shoal sidecar`;
      return { review: allow(req.uid, [], [`shoal: ${message}`]), summary: `pod error: ${(err as Error).message}`, events: [], patch: [] };
    }
    const events = req.dryRun === true ? [] : result.events.map((e) => ({ namespace, podName, ...e }));
    const summary = result.outcome === 'injected' ? 'pod injected' : `pod ${result.outcome}: ${result.reason}`;
    return { review: allow(req.uid, result.patch, result.warnings), summary, events, patch: result.patch };
  }
  if (core && req.kind.kind === 'Service' && (req.operation === 'CREATE' || req.operation === 'UPDATE')) {
    let result;
    try {
      result = rewriteService(object as Service);
    } catch (err) {
      return {
        review: allow(req.uid, [], [`shoal: Service rewrite failed: ${(err as Error).message}`]),
        summary: `service error: ${(err as Error).message}`,
        events: [],
        patch: [],
      };
    }
    const summary = result.outcome === 'rewritten' ? 'service rewritten' : `service skipped: ${result.reason}`;
    return { review: allow(req.uid, result.patch, result.warnings), summary, events: [], patch: result.patch };
  }
  return { review: allow(req.uid, [], []), summary: `ignored ${req.kind.kind} ${req.operation}`, events: [], patch: [] };
}
