// Plain Kubernetes objects for tests that write them to a real API server (or pass them to code
// that reads them): Services, hand-made EndpointSlices and mesh ConfigMaps. Builders only: no
// server, no state.
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
/** Who "manages" the slices these builders make: not the EndpointSlice controller, which would take them over. */
export const TEST_SLICE_MANAGER = 'shoal-test.example';
export const APP_LABEL = 'shoal.dev/app';
export const PLUGIN_LABEL = 'shoal.dev/plugin-id';
export const PLUGIN_CONFIG_KEY = 'plugin-config';

export interface ServicePortSpec {
  name?: string;
  port: number;
  targetPort?: number | string;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

export interface ServiceOptions {
  type?: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  /** 'None' makes it headless. */
  clusterIP?: string;
  externalName?: string;
  /** Pods selected (default app=NAME); null for a Service without selector, whose slices someone else writes. */
  selector?: Record<string, string> | null;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface EndpointSpec {
  ip: string;
  /** Omitted when undefined: Kubernetes reads a nil condition as true for ready and serving. */
  ready?: boolean;
  serving?: boolean;
  terminating?: boolean;
  zone?: string;
  nodeName?: string;
  /** Pod name for targetRef. */
  pod?: string;
}

export interface EndpointPortSpec {
  name?: string;
  port: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
}

/** A Service; ports as numbers (port N named nothing) or full specs. */
export function service(ns: string, name: string, ports: Array<number | ServicePortSpec>, opts: ServiceOptions = {}): any {
  const spec: Record<string, unknown> = {};
  if (opts.type === 'ExternalName') {
    spec.type = 'ExternalName';
    spec.externalName = opts.externalName ?? `${name}.example.com`;
  } else {
    if (opts.type) spec.type = opts.type;
    if (opts.clusterIP) spec.clusterIP = opts.clusterIP;
    if (opts.selector !== null) spec.selector = opts.selector ?? { app: name };
  }
  spec.ports = ports.map((p) => {
    const s = typeof p === 'number' ? { port: p } : p;
    const out: Record<string, unknown> = {};
    if (s.name !== undefined) out.name = s.name;
    out.protocol = s.protocol ?? 'TCP';
    if (s.appProtocol !== undefined) out.appProtocol = s.appProtocol;
    out.port = s.port;
    if (opts.type !== 'ExternalName') out.targetPort = s.targetPort ?? s.port;
    return out;
  });
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name,
      namespace: ns,
      ...(opts.labels ? { labels: opts.labels } : {}),
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    spec,
  };
}

/** An EndpointSlice of serviceName written by hand (as a custom endpoints controller would), not by the EndpointSlice controller. */
export function endpointSlice(
  ns: string,
  name: string,
  serviceName: string,
  endpoints: EndpointSpec[],
  ports: EndpointPortSpec[],
  opts: { addressType?: 'IPv4' | 'IPv6' | 'FQDN'; labels?: Record<string, string> } = {},
): any {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name,
      namespace: ns,
      labels: { [SERVICE_NAME_LABEL]: serviceName, [MANAGED_BY_LABEL]: TEST_SLICE_MANAGER, ...opts.labels },
    },
    addressType: opts.addressType ?? 'IPv4',
    endpoints: endpoints.map((e) => {
      const conditions: Record<string, boolean> = {};
      if (e.ready !== undefined) conditions.ready = e.ready;
      if (e.serving !== undefined) conditions.serving = e.serving;
      if (e.terminating !== undefined) conditions.terminating = e.terminating;
      const out: Record<string, unknown> = { addresses: [e.ip], conditions };
      if (e.pod) out.targetRef = { kind: 'Pod', namespace: ns, name: e.pod };
      if (e.nodeName) out.nodeName = e.nodeName;
      if (e.zone) out.zone = e.zone;
      return out;
    }),
    ports: ports.map((p) => ({
      name: p.name ?? '',
      protocol: p.protocol ?? 'TCP',
      port: p.port,
      ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
    })),
  };
}

/**
 * A mesh ConfigMap: labels shoal.dev/app and shoal.dev/plugin-id, data plugin-config = the spec as
 * JSON (a string spec is stored as it is, to test invalid configs). Named shoal-mesh-<app>, as
 * discover names the ones it creates, unless opts.name says otherwise.
 */
export function meshConfigMap(
  ns: string,
  app: string,
  pluginId: string,
  spec: unknown,
  opts: string | { name?: string; labels?: Record<string, string>; annotations?: Record<string, string> } = {},
): any {
  const o = typeof opts === 'string' ? { name: opts } : opts;
  return {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: {
      name: o.name ?? `shoal-mesh-${app}`,
      namespace: ns,
      labels: { ...o.labels, [APP_LABEL]: app, [PLUGIN_LABEL]: pluginId },
      ...(o.annotations ? { annotations: o.annotations } : {}),
    },
    data: { [PLUGIN_CONFIG_KEY]: typeof spec === 'string' ? spec : JSON.stringify(spec) },
  };
}
