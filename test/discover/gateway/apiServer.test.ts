// shoal's API-server checks against a real API server serving the pinned CRDs: every object the validation
// tests call bad, the API server refuses too, and every object they call good (or valid but unsupported by
// shoal) it accepts. A server-side dry run: nothing is stored.
import t from 'tap';
import { checkRoute } from '../../../discover/gateway/validate.ts';
import type { GatewayRoute } from '../../../discover/topology/model.ts';
import { kubeForFile } from '../../lib/kube.ts';
import { BAD, GOOD, UNSUPPORTED } from './cases.ts';

const kube = kubeForFile(t, import.meta.filename);

function object(what: string, i: number, kind: GatewayRoute['kind'], spec: Record<string, unknown>): GatewayRoute {
  return { apiVersion: 'gateway.networking.k8s.io/v1', kind, metadata: { name: `case-${i}`, namespace: 'default' }, spec };
}

if (kube) {
  t.test('the API server and shoal agree on the validation cases', async (t) => {
    const k = await kube.up();
    const apply = async (r: GatewayRoute) =>
      k.kubectl(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], { input: JSON.stringify(r) });
    for (const [i, [what, spec, kind]] of BAD.entries()) {
      const r = object(what, i, kind, spec);
      const res = await apply(r);
      t.not(res.code, 0, `refused by the API server: ${what} (${(res.stderr.trim().split('\n').pop() ?? '').slice(0, 300)})`);
      t.ok(checkRoute(r).errors.length > 0, `refused by shoal: ${what}`);
    }
    for (const [i, [what, spec, kind]] of [...GOOD.map(([w, s, k]) => [w, s, k, ''] as const), ...UNSUPPORTED].entries()) {
      const r = object(what, 100 + i, kind, spec);
      const res = await apply(r);
      t.equal(res.code, 0, `accepted by the API server: ${what}${res.code === 0 ? '' : ` (${res.stderr.trim().slice(0, 300)})`}`);
      t.same(checkRoute(r).errors, [], `accepted by shoal's API-server checks: ${what}`);
    }
  });
}
