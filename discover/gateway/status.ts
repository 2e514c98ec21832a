// The status shoal reports for each Gateway API route it knows: one entry per parentRef naming a Service
// shoal serves, with the Accepted and ResolvedRefs conditions of the spec (apis/v1/shared_types.go).
// The Kubernetes source writes these (and adds lastTransitionTime); the static source only shows them.
import { routeKey, type Topology } from '../topology/model.ts';
import { attachments, conflictedOn, isServiceParent, refKey, resolveBackend, routeIndex } from './compile.ts';
import { checkRoute } from './validate.ts';

export const CONTROLLER_NAME = 'shoal.dev/mesh';

export interface RouteCondition {
  type: 'Accepted' | 'ResolvedRefs';
  status: 'True' | 'False';
  reason: string;
  message: string;
  observedGeneration: number;
}

export interface RouteParentStatus {
  /** The parentRef as the route gives it (sectionName, a Service port's name, only when the route sets it). */
  parentRef: { group: ''; kind: 'Service'; namespace?: string; name: string; port?: number; sectionName?: string };
  controllerName: 'shoal.dev/mesh';
  conditions: RouteCondition[];
}

export interface RouteStatusWrite {
  generation: number;
  parents: RouteParentStatus[];
}

type Obj = Record<string, any>;

/** The ResolvedRefs condition's status, reason and message for a route's (valid) spec. */
function resolvedRefs(spec: Obj, ns: string, topology: Topology, unsupported: Set<number>): { ok: boolean; reason: string; message: string } {
  const problems: Array<{ reason: string; message: string }> = [];
  const check = (ref: Obj, where: string) => {
    if (!ref || typeof ref !== 'object') return;
    const r = resolveBackend(ref, ns, topology.services);
    if (r.problem) problems.push({ reason: r.problem.reason, message: `${where}: ${r.problem.message}` });
  };
  const mirrors = (fs: unknown, where: string) => {
    if (!Array.isArray(fs)) return;
    for (const [k, f] of fs.entries()) if (f?.type === 'RequestMirror') check(f.requestMirror?.backendRef, `${where}.filters[${k}].requestMirror.backendRef`);
  };
  const rules = Array.isArray(spec.rules) ? spec.rules as Obj[] : [];
  for (const [i, rule] of rules.entries()) {
    if (unsupported.has(i)) continue;
    mirrors(rule.filters, `spec.rules[${i}]`);
    for (const [j, b] of (Array.isArray(rule.backendRefs) ? rule.backendRefs as Obj[] : []).entries()) {
      check(b, `spec.rules[${i}].backendRefs[${j}]`);
      mirrors(b?.filters, `spec.rules[${i}].backendRefs[${j}]`);
    }
  }
  if (problems.length === 0) return { ok: true, reason: 'ResolvedRefs', message: 'all backend references resolve' };
  // InvalidKind before BackendNotFound: the first reason the spec lists.
  const first = problems.find((p) => p.reason === 'InvalidKind') ?? problems[0];
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more: ${problems.slice(0, 5).filter((p) => p !== first).map((p) => p.message).join('; ')})` : '';
  return { ok: false, reason: first.reason, message: `${first.message}${more}; requests routed to a reference that does not resolve get a 500` };
}

/** The status of every route in the topology, by routeKey(): what shoal, as the mesh, says of each Service parent. */
export function routeStatuses(topology: Topology): Map<string, RouteStatusWrite> {
  const out = new Map<string, RouteStatusWrite>();
  const index = routeIndex(topology);
  for (const route of topology.routes?.values() ?? []) {
    const md = route.metadata ?? ({} as typeof route.metadata);
    const key = routeKey(route.kind, md.namespace, md.name);
    const generation = typeof md.generation === 'number' ? md.generation : 0;
    const check = checkRoute(route);
    const spec = (check.errors.length === 0 ? check.object.spec : route.spec) as Obj | undefined;
    const refs = Array.isArray(spec?.parentRefs) ? spec!.parentRefs as Obj[] : [];
    const parents: RouteParentStatus[] = [];
    const unsupported = new Set(check.unsupported.keys());
    const rules = Array.isArray(spec?.rules) ? spec!.rules.length as number : 0;
    const refsCondition = check.errors.length === 0 ? resolvedRefs(spec!, md.namespace, topology, unsupported) : null;
    for (const [i, ref] of refs.entries()) {
      if (!isServiceParent(ref) || typeof ref.name !== 'string') continue;
      const svcKey = refKey(ref, md.namespace);
      const svc = topology.services.get(svcKey);
      if (!svc) continue;
      const parentRef: RouteParentStatus['parentRef'] = { group: '', kind: 'Service', name: ref.name };
      if (typeof ref.namespace === 'string' && ref.namespace !== '') parentRef.namespace = ref.namespace;
      if (typeof ref.port === 'number') parentRef.port = ref.port;
      if (typeof ref.sectionName === 'string' && ref.sectionName !== '') parentRef.sectionName = ref.sectionName;
      // sectionName names a Service port; the ports the parentRef selects.
      const selected = svc.ports.filter((p) => (typeof ref.port !== 'number' || p.port === ref.port) && (typeof ref.sectionName !== 'string' || ref.sectionName === '' || p.name === ref.sectionName));
      const cond = (type: RouteCondition['type'], ok: boolean, reason: string, message: string): RouteCondition =>
        ({ type, status: ok ? 'True' : 'False', reason, message, observedGeneration: generation });
      let accepted: RouteCondition;
      if (check.errors.length > 0) {
        accepted = cond('Accepted', false, 'UnsupportedValue', `invalid route: ${check.errors.slice(0, 3).join('; ')}`);
      } else if (selected.length === 0) {
        const wanted = [typeof ref.port === 'number' ? `port ${ref.port}` : '', typeof ref.sectionName === 'string' && ref.sectionName !== '' ? `port named ${ref.sectionName}` : ''].filter(Boolean).join(' and ');
        accepted = cond('Accepted', false, 'NoMatchingParent', `Service ${svcKey} has no ${wanted} (it has ${svc.ports.map((p) => `${p.port} (${p.name})`).join(', ')})`);
      } else if (rules > 0 && unsupported.size === rules) {
        accepted = cond('Accepted', false, 'UnsupportedValue', `${[...check.unsupported.values()].flat().slice(0, 3).join('; ')}; the requests the route matches get a 500 (a filter shoal cannot carry out is not skipped)`);
      } else {
        const mine = selected
          .flatMap((p) => attachments(index, svc, p.port).filter((a) => a.check === check && a.parentIndex === i));
        const conflicted = mine.filter((a) => conflictedOn(index, a));
        const role = md.namespace === svc.namespace ? 'producer route: applies to every caller' : `consumer route: applies to callers in namespace ${md.namespace}`;
        if (mine.length > 0 && conflicted.length === mine.length) {
          accepted = cond('Accepted', false, 'Conflicted', `a GRPCRoute in namespace ${md.namespace} attaches to the same Service port${mine.length > 1 ? 's' : ''} (${mine.map((a) => a.port).join(', ')}); GRPCRoute wins over HTTPRoute`);
        } else {
          let message = `attached to Service ${svcKey} port${mine.length === 1 ? '' : 's'} ${mine.map((a) => a.port).join(', ')} (${role})`;
          if (conflicted.length > 0) message += `; not on port${conflicted.length > 1 ? 's' : ''} ${conflicted.map((a) => a.port).join(', ')}, where a GRPCRoute wins`;
          if (unsupported.size > 0) message += `; rule${unsupported.size > 1 ? 's' : ''} ${[...unsupported].join(', ')} not supported (${[...check.unsupported.values()].flat()[0]}): requests they match get a 500`;
          accepted = cond('Accepted', true, 'Accepted', message);
        }
      }
      const resolved = refsCondition
        ? cond('ResolvedRefs', refsCondition.ok, refsCondition.reason, refsCondition.message)
        : cond('ResolvedRefs', false, 'UnsupportedValue', 'the route is invalid: its references were not resolved');
      parents.push({ parentRef, controllerName: CONTROLLER_NAME, conditions: [accepted, resolved] });
    }
    out.set(key, { generation, parents });
  }
  return out;
}
