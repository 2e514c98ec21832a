// Points a Service's numeric targetPorts at the sidecars' listen ports (the earlier mesh's scheme: docs/injection.md). Pure: no I/O.
// Named targetPorts need nothing: the injector gives the name to the sidecar's port.
import { allocateListenPorts, LISTEN_PORT_MAX, LISTEN_PORT_MIN } from '../../shared/loopbackAndListenPorts.ts';
import { pointer, setMetadataEntries, type JsonPatchOp } from './jsonPatch.ts';
import type { Service } from './kubeShapes.ts';
import { ANNOTATION_INJECT, ANNOTATION_PORT_MAP, LABEL_ORIGIN_PORT, LABEL_PART_OF } from './injectionNames.ts';

export interface ServiceRewrite {
  outcome: 'rewritten' | 'skipped';
  reason: string;
  patch: JsonPatchOp[];
  warnings: string[];
  portMap?: Record<string, number>;
}

const inListenRange = (p: number) => p >= LISTEN_PORT_MIN && p <= LISTEN_PORT_MAX;

function skipped(reason: string, warnings: string[] = []): ServiceRewrite {
  return { outcome: 'skipped', reason, patch: [], warnings };
}

function previousMap(raw: string | undefined): Record<string, number> {
  if (raw === undefined) return {};
  try {
    const parsed = JSON.parse(raw) as unknown;
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(
      Object.entries(parsed).filter(([k, v]) => /^\d+$/.test(k) && Number.isInteger(v) && inListenRange(v as number)),
    ) as Record<string, number>;
  } catch {
    return {};
  }
}

/**
 * The patch that rewrites each numeric TCP targetPort (or absent one, which means `port`) of `svc` to its
 * listen port with the rule the injector uses, records the originals in label origin_port and annotation
 * shoal.dev/port-map. A targetPort already in 65301-65400 is left alone, so a second pass changes nothing.
 */
export function rewriteService(svc: Service): ServiceRewrite {
  const meta = svc.metadata ?? {};
  const spec = svc.spec;
  if (meta.labels?.[LABEL_PART_OF] === 'shoal') return skipped("shoal's own Service");
  const optIn = meta.annotations?.[ANNOTATION_INJECT]?.trim().toLowerCase();
  if (optIn === 'false' || optIn === 'disabled')
    return skipped(`annotation ${ANNOTATION_INJECT}="${meta.annotations![ANNOTATION_INJECT]}"`);
  if (!spec || !Array.isArray(spec.ports) || spec.ports.length === 0) return skipped('no ports');
  if (spec.type === 'ExternalName') return skipped('ExternalName Service');
  // Without a selector the endpoints are the user's own; headless clients dial pod IPs at the app's port.
  if (!spec.selector || Object.keys(spec.selector).length === 0) return skipped('Service without a selector');
  if (spec.clusterIP === 'None') return skipped('headless Service');

  const targets = spec.ports.map((p) => {
    const protocol = p.protocol ?? 'TCP';
    const target = p.targetPort ?? p.port;
    const numeric = typeof target === 'number' ? target : /^\d+$/.test(String(target)) ? Number(target) : undefined;
    return { protocol, numeric };
  });
  const toRewrite = targets
    .filter((t) => t.protocol === 'TCP' && t.numeric !== undefined && !inListenRange(t.numeric))
    .map((t) => t.numeric!);
  if (toRewrite.length === 0) return skipped('no numeric TCP targetPort to rewrite');

  let listen: Map<number, number>;
  try {
    listen = allocateListenPorts(toRewrite);
  } catch (err) {
    return skipped(`targetPorts left as they are: ${(err as Error).message}`, [
      `shoal: ${(err as Error).message}; targetPorts left as they are`,
    ]);
  }
  const ops: JsonPatchOp[] = [];
  targets.forEach((t, i) => {
    if (t.protocol !== 'TCP' || t.numeric === undefined || inListenRange(t.numeric)) return;
    ops.push({ op: 'add', path: pointer('spec', 'ports', i, 'targetPort'), value: listen.get(t.numeric)! });
  });
  const portMap: Record<string, number> = previousMap(meta.annotations?.[ANNOTATION_PORT_MAP]);
  for (const [port, l] of listen) portMap[String(port)] = l;
  const origins = Object.keys(portMap)
    .map(Number)
    .sort((a, b) => a - b);
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
  const hasMeta = svc.metadata !== undefined && svc.metadata !== null;
  // A label value allows [A-Za-z0-9_.-]: several origins are joined with "_".
  let origin = origins.join('_');
  while (origin.length > 63) origin = origin.slice(0, origin.lastIndexOf('_'));
  setMetadataEntries(ops, meta.labels, 'labels', { [LABEL_ORIGIN_PORT]: origin }, hasMeta);
  const annotations = { [ANNOTATION_PORT_MAP]: JSON.stringify(Object.fromEntries(origins.map((o) => [String(o), portMap[String(o)]]))) };
  if (!hasMeta) ops.push({ op: 'add', path: '/metadata/annotations', value: annotations });
  else setMetadataEntries(ops, meta.annotations, 'annotations', annotations);
  const moved = [...listen].map(([from, to]) => `${from}->${to}`).join(', ');
  const warnings = [`shoal: targetPort ${moved} (sidecar listen ports); pods without a sidecar refuse these connections`];
  return { outcome: 'rewritten', reason: '', patch: ops, warnings, portMap };
}
