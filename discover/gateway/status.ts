// The status shoal reports for each Gateway API route it knows: one entry per parentRef naming a Service
// shoal serves, with the Accepted and ResolvedRefs conditions of the spec (apis/v1/shared_types.go), and
// PartiallyInvalid when some of an accepted route's rules are dropped (shoal takes the spec's "Drop Rule(s)"
// approach: the other rules are in force).
// The Kubernetes source writes these (and adds lastTransitionTime); the static source only shows them.
import { routeKey, type Topology } from '../topology/model.ts';
import { attachments, conflictedOn, isServiceParent, refKey, resolveBackend, routeIndex, routeParents } from './compile.ts';
import { checkRoute, inForce, type RouteCheck } from './validate.ts';

export const CONTROLLER_NAME = 'shoal.dev/mesh';

export interface RouteCondition {
  type: 'Accepted' | 'ResolvedRefs' | 'PartiallyInvalid';
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

/** The ResolvedRefs condition's status, reason and message for a route's (valid) spec, its dropped rules left out. */
function resolvedRefs(c: RouteCheck, topology: Topology): { ok: boolean; reason: string; message: string } {
  const spec = c.object.spec as Obj;
  const ns = c.route.metadata.namespace;
  const unsupported = c.unsupported;
  const problems: Array<{ reason: string; message: string }> = [];
  const check = (ref: Obj, where: string) => {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
    if (!ref || typeof ref !== 'object') return;
    const r = resolveBackend(ref, ns, topology.services);
    if (r.problem) problems.push({ reason: r.problem.reason, message: `${where}: ${r.problem.message}` });
  };
  const mirrors = (fs: unknown, where: string) => {
    if (!Array.isArray(fs)) return;
    for (const [k, f] of fs.entries())
      if (f?.type === 'RequestMirror') check(f.requestMirror?.backendRef, `${where}.filters[${k}].requestMirror.backendRef`);
  };
  const rules = Array.isArray(spec.rules) ? (spec.rules as Obj[]) : [];
  for (const [i, rule] of rules.entries()) {
    if (unsupported.has(i)) continue;
    // ExtensionRef filters: shoal defines none, so the reference is to a kind it does not know (InvalidKind).
    for (const [k, f] of (Array.isArray(rule.filters) ? (rule.filters as Obj[]) : []).entries()) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
      if (f?.type === 'ExtensionRef')
        problems.push({ reason: 'InvalidKind', message: `spec.rules[${i}].filters[${k}].extensionRef: ${extensionText(f)}` });
    }
    for (const [j, b] of (Array.isArray(rule.backendRefs) ? (rule.backendRefs as Obj[]) : []).entries()) {
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
      for (const [k, f] of (Array.isArray(b?.filters) ? (b.filters as Obj[]) : []).entries()) {
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
        if (f?.type === 'ExtensionRef')
          problems.push({
            reason: 'InvalidKind',
            message: `spec.rules[${i}].backendRefs[${j}].filters[${k}].extensionRef: ${extensionText(f)}`,
          });
      }
    }
    mirrors(rule.filters, `spec.rules[${i}]`);
    for (const [j, b] of (Array.isArray(rule.backendRefs) ? (rule.backendRefs as Obj[]) : []).entries()) {
      check(b, `spec.rules[${i}].backendRefs[${j}]`);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
      mirrors(b?.filters, `spec.rules[${i}].backendRefs[${j}]`);
    }
  }
  if (problems.length === 0) {
    const inUse = rules.some((_, i) => !unsupported.has(i));
    return {
      ok: true,
      reason: 'ResolvedRefs',
      message: inUse || rules.length === 0 ? 'all backend references resolve' : 'no rule in force: no reference to resolve',
    };
  }
  // InvalidKind before BackendNotFound: the first reason the spec lists.
  const first = problems.find((p) => p.reason === 'InvalidKind') ?? problems[0];
  const more =
    problems.length > 1
      ? ` (and ${problems.length - 1} more: ${problems
          .slice(0, 5)
          .filter((p) => p !== first)
          .map((p) => p.message)
          .join('; ')})`
      : '';
  return {
    ok: false,
    reason: first.reason,
    message: `${first.message}${more}; requests routed to a reference that does not resolve, or that an unresolved filter would have processed, get a 500`,
  };
}

function extensionText(f: Obj): string {
  const r = (f.extensionRef ?? {}) as Obj;
  return `ExtensionRef filter ${typeof r.group === 'string' && r.group !== '' ? r.group : 'core'}/${r.kind} ${r.name} does not resolve (shoal defines no extension filters)`;
}

/** "rule 1", "rules 1, 3" (with their names when they have one). */
function rulesText(check: RouteCheck, rules: number[], word = 'rule'): string {
  const all = (check.object.spec?.rules ?? []) as Obj[];
  return `${word}${rules.length > 1 ? 's' : ''} ${rules.map((i) => (typeof all[i]?.name === 'string' ? `${i} (${all[i].name})` : `${i}`)).join(', ')}`;
}

/** The problems of the dropped rules, at most `n`, and how many more. */
function droppedText(check: RouteCheck, n = 3): string {
  const all = [...check.unsupported.values()].flat();
  return all.slice(0, n).join('; ') + (all.length > n ? ` (and ${all.length - n} more)` : '');
}

/**
 * The routes whose status a change can have changed: those in `changedRoutes` (by routeKey) and every route
 * with a parentRef naming a Service in `parents`. A route's status depends on the route, its parent Services,
 * the other routes on those Services (Conflicted) and the Services its rules name; so `parents` holds the
 * Services changed, the parents (before and after) of the routes changed, and the parents of the routes that
 * name a changed Service (parentsRoutingTo).
 */
export function routesTouched(topology: Topology, changedRoutes: Iterable<string>, parents: Set<string>): Set<string> {
  const out = new Set<string>();
  for (const k of changedRoutes) if (topology.routes?.has(k)) out.add(k);
  if (parents.size === 0) return out;
  for (const [k, r] of topology.routes ?? []) if (!out.has(k) && routeParents(r).some((p) => parents.has(p))) out.add(k);
  return out;
}

/**
 * The status of every route in the topology (or only of those in `only`), by routeKey(): what shoal, as the
 * mesh, says of each Service parent.
 */
export function routeStatuses(topology: Topology, only?: Iterable<string>): Map<string, RouteStatusWrite> {
  const out = new Map<string, RouteStatusWrite>();
  const index = routeIndex(topology);
  const routes =
    only === undefined
      ? (topology.routes?.values() ?? [])
      : [...only].map((k) => topology.routes?.get(k)).filter((r): r is NonNullable<typeof r> => r !== undefined);
  for (const route of routes) {
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the route is what a file or the API server held: any entry may be missing or null whatever the type says
    const md = route.metadata ?? ({} as typeof route.metadata);
    const key = routeKey(route.kind, md.namespace, md.name);
    const generation = typeof md.generation === 'number' ? md.generation : 0;
    const check = checkRoute(route);
    const spec = (check.errors.length === 0 ? check.object.spec : route.spec) as Obj | undefined;
    const refs = Array.isArray(spec?.parentRefs) ? (spec!.parentRefs as Obj[]) : [];
    const parents: RouteParentStatus[] = [];
    const dropped = [...check.unsupported.keys()];
    const refsCondition = check.errors.length === 0 ? resolvedRefs(check, topology) : null;
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
      const selected = svc.ports.filter(
        (p) =>
          (typeof ref.port !== 'number' || p.port === ref.port) &&
          (typeof ref.sectionName !== 'string' || ref.sectionName === '' || p.name === ref.sectionName),
      );
      const cond = (type: RouteCondition['type'], ok: boolean, reason: string, message: string): RouteCondition => ({
        type,
        status: ok ? 'True' : 'False',
        reason,
        message,
        observedGeneration: generation,
      });
      let accepted: RouteCondition;
      let partly: RouteCondition | null = null;
      if (check.errors.length > 0) {
        accepted = cond(
          'Accepted',
          false,
          'UnsupportedValue',
          `invalid route: ${check.errors.slice(0, 3).join('; ')}; it changes nothing for traffic`,
        );
      } else if (!inForce(check)) {
        accepted = cond(
          'Accepted',
          false,
          'UnsupportedValue',
          `no rule shoal can carry out: ${droppedText(check)}; the route changes nothing for traffic`,
        );
      } else if (selected.length === 0) {
        const wanted = [
          typeof ref.port === 'number' ? `port ${ref.port}` : '',
          typeof ref.sectionName === 'string' && ref.sectionName !== '' ? `port named ${ref.sectionName}` : '',
        ]
          .filter(Boolean)
          .join(' and ');
        accepted = cond(
          'Accepted',
          false,
          'NoMatchingParent',
          `Service ${svcKey} has no ${wanted} (it has ${svc.ports.map((p) => `${p.port} (${p.name})`).join(', ')})`,
        );
      } else {
        const mine = selected.flatMap((p) => attachments(index, svc, p.port).filter((a) => a.check === check && a.parentIndex === i));
        const conflicted = mine.filter((a) => conflictedOn(index, a));
        const role =
          md.namespace === svc.namespace
            ? 'producer route: applies to every caller'
            : `consumer route: applies to callers in namespace ${md.namespace}`;
        if (mine.length > 0 && conflicted.length === mine.length) {
          accepted = cond(
            'Accepted',
            false,
            'Conflicted',
            `a GRPCRoute in namespace ${md.namespace} attaches to the same Service port${mine.length > 1 ? 's' : ''} (${mine.map((a) => a.port).join(', ')}); GRPCRoute wins over HTTPRoute`,
          );
        } else {
          let message = `attached to Service ${svcKey} port${mine.length === 1 ? '' : 's'} ${mine.map((a) => a.port).join(', ')} (${role})`;
          if (conflicted.length > 0)
            message += `; not on port${conflicted.length > 1 ? 's' : ''} ${conflicted.map((a) => a.port).join(', ')}, where a GRPCRoute wins`;
          if (dropped.length > 0) {
            message += `; ${rulesText(check, dropped)} dropped (PartiallyInvalid)`;
            // The spec: the message starts with "Dropped Rule" and says which rules; Accepted stays True.
            partly = cond(
              'PartiallyInvalid',
              true,
              'UnsupportedValue',
              `Dropped ${rulesText(check, dropped, 'Rule')}: ${droppedText(check)}; the other rules are in force`,
            );
          }
          accepted = cond('Accepted', true, 'Accepted', message);
        }
      }
      const resolved = refsCondition
        ? cond('ResolvedRefs', refsCondition.ok, refsCondition.reason, refsCondition.message)
        : cond('ResolvedRefs', false, 'UnsupportedValue', 'the route is invalid: its references were not resolved');
      parents.push({
        parentRef,
        controllerName: CONTROLLER_NAME,
        conditions: partly ? [accepted, resolved, partly] : [accepted, resolved],
      });
    }
    out.set(key, { generation, parents });
  }
  return out;
}
