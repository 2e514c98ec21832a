// Kubernetes objects to the topology model: Services, their EndpointSlices, and mesh ConfigMaps.
import type { V1ConfigMap, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { Endpoint, Protocol } from '../../../shared/snapshot.ts';
import { ConfigError, parseMeshConfig, type ResourceSpec } from '../../../shared/meshConfig.ts';
import type { App, Service, ServicePort } from '../../topology/model.ts';

export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const APP_LABEL = 'shoal.dev/app';
export const PLUGIN_LABEL = 'shoal.dev/plugin-id';
export const PLUGIN_CONFIG_KEY = 'plugin-config';
export const ADDRESS_ANNOTATION = 'shoal.dev/loopback-address';
export const READERS_ANNOTATION = 'shoal.dev/service-accounts';

/** The protocol of a Service port: appProtocol first, then the port name's prefix (http-web), else tcp. */
export function portProtocol(appProtocol: string | undefined, name: string | undefined): Protocol {
  const candidates = [appProtocol, name].filter((x): x is string => !!x).map((x) => x.toLowerCase());
  for (const c of candidates) {
    const base = c.replace(/^kubernetes\.io\//, '').split(/[-_]/)[0];
    if (base === 'http' || base === 'http1') return 'http';
    if (base === 'http2' || base === 'h2c') return 'http2';
    if (base === 'grpc') return 'grpc';
    if (base === 'tcp') return 'tcp';
  }
  return 'tcp';
}

export function serviceKeyOf(obj: { metadata?: { namespace?: string; name?: string } }): string {
  return `${obj.metadata?.namespace ?? 'default'}/${obj.metadata?.name ?? ''}`;
}

/** The Service a slice belongs to, from its kubernetes.io/service-name label. */
export function sliceServiceKey(slice: V1EndpointSlice): string | null {
  const name = slice.metadata?.labels?.[SERVICE_NAME_LABEL];
  return name ? `${slice.metadata?.namespace ?? 'default'}/${name}` : null;
}

/**
 * Builds the model of one Service from the Service and all its slices. Ports map one by one by name
 * (not balanced across all ports). Conditions: nil ready or serving means true. Duplicate endpoints
 * (a pod in two slices mid-update) are merged, ready winning.
 */
export function serviceModel(svc: V1Service, slices: Iterable<V1EndpointSlice>): Service {
  const namespace = svc.metadata?.namespace ?? 'default';
  const name = svc.metadata?.name ?? '';
  const spec = svc.spec ?? {};
  const pinned = svc.metadata?.annotations?.[ADDRESS_ANNOTATION];
  const ports: ServicePort[] = (spec.ports ?? [])
    .filter((p) => (p.protocol ?? 'TCP') === 'TCP')
    .map((p) => ({ name: p.name ?? '', port: p.port, protocol: portProtocol(p.appProtocol, p.name) }));
  const endpoints = new Map<number, Endpoint[]>(ports.map((p) => [p.port, []]));
  if (spec.type === 'ExternalName' && spec.externalName) {
    // The sidecar proxies to the external name, resolved by the cluster DNS.
    for (const p of ports)
      endpoints.set(p.port, [
        {
          address: spec.externalName.replace(/\.$/, ''),
          port: p.port,
          weight: 1,
          zone: '',
          ready: true,
          serving: true,
          terminating: false,
        },
      ]);
  } else {
    const seen = new Map<string, Endpoint>();
    for (const slice of slices) {
      if (slice.addressType !== 'IPv4' && slice.addressType !== 'FQDN') continue;
      for (const sp of ports) {
        const target = (slice.ports ?? []).find((x) => (x.name ?? '') === sp.name && (x.protocol ?? 'TCP') === 'TCP');
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
        if (!target || target.port === undefined || target.port === null) continue;
        for (const e of slice.endpoints ?? []) {
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
          const address = e.addresses?.[0];
          if (!address) continue;
          const c = e.conditions ?? {};
          const ready = c.ready ?? true;
          const ep: Endpoint = {
            address,
            port: target.port,
            weight: 1,
            zone: e.zone ?? '',
            ready,
            serving: c.serving ?? ready,
            terminating: c.terminating ?? false,
          };
          addTopology(ep, e);
          const key = `${sp.port}|${address}|${target.port}`;
          const prev = seen.get(key);
          if (prev) {
            if (!prev.ready && ep.ready) Object.assign(prev, ep);
            continue;
          }
          seen.set(key, ep);
          endpoints.get(sp.port)!.push(ep);
        }
      }
    }
  }
  return { namespace, name, address: pinned && /^127\./.test(pinned) && pinned !== '127.0.0.1' ? pinned : null, ports, endpoints };
}

/** nodeName and the topology hints (hints.forZones, hints.forNodes) of a slice endpoint, when set. */
function addTopology(
  ep: Endpoint,
  e: { nodeName?: string; hints?: { forZones?: Array<{ name?: string }>; forNodes?: Array<{ name?: string }> } },
): void {
  if (e.nodeName) ep.node = e.nodeName;
  const names = (xs: Array<{ name?: string }> | undefined) => [...new Set((xs ?? []).map((x) => x.name ?? '').filter((x) => x !== ''))];
  const zones = names(e.hints?.forZones);
  const nodes = names(e.hints?.forNodes);
  if (zones.length > 0) ep.forZones = zones;
  if (nodes.length > 0) ep.forNodes = nodes;
}

export interface MeshConfigMapResult {
  app: App | null;
  error: string | null;
}

/** Reads a mesh ConfigMap. An invalid one yields an error naming the ConfigMap, app, dependency and option. */
export function appFromConfigMap(cm: V1ConfigMap): MeshConfigMapResult {
  const namespace = cm.metadata?.namespace ?? 'default';
  const name = cm.metadata?.labels?.[APP_LABEL] ?? '';
  const pluginId = cm.metadata?.labels?.[PLUGIN_LABEL] ?? 'mesh';
  const where = `ConfigMap ${namespace}/${cm.metadata?.name}`;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name))
    return { app: null, error: `${where}: label ${APP_LABEL}=${JSON.stringify(name)} is not an app name` };
  const raw = cm.data?.[PLUGIN_CONFIG_KEY];
  if (raw === undefined) return { app: null, error: `${where}: data key ${PLUGIN_CONFIG_KEY} is missing` };
  let spec: ResourceSpec;
  try {
    spec = JSON.parse(raw) as ResourceSpec;
  } catch (err) {
    return { app: null, error: `${where}: ${PLUGIN_CONFIG_KEY} is not JSON: ${(err as Error).message}` };
  }
  try {
    const config = parseMeshConfig(spec, namespace, name);
    const readers = (cm.metadata?.annotations?.[READERS_ANNOTATION] ?? '')
      .split(',')
      .map((x) => x.trim())
      .filter((x) => x !== '');
    return { app: { namespace, name, pluginId, spec, config, readers }, error: null };
  } catch (err) {
    if (err instanceof ConfigError) return { app: null, error: `${where}: ${err.message}` };
    throw err;
  }
}
