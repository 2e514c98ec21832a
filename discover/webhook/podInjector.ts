// Decides whether a pod gets the shoal sidecar and, if so, the JSON Patch that adds it. Pure: no I/O.
// A bad annotation never rejects a pod: it is admitted uninjected (or with defaults) and warned about.
import { allocateListenPorts, LISTEN_PORT_MAX, LISTEN_PORT_MIN, preferredListenPort } from '../../shared/loopbackAndListenPorts.ts';
import { pointer, setMetadataEntries, type JsonPatchOp } from './jsonPatch.ts';
import type { Container, EnvVar, Handler, Pod } from './kubeShapes.ts';
import {
  ADMIN_PORT,
  ADMIN_PORT_NAME,
  ANNOTATION_APP,
  ANNOTATION_INJECT,
  ANNOTATION_INJECTED,
  ANNOTATION_PLUGIN_ID,
  ANNOTATION_PORT_MAP,
  ANNOTATION_PROXY_CPU,
  ANNOTATION_PROXY_MEMORY,
  LABEL_PART_OF,
  SIDECAR_NAME,
  STATE_DIR,
  STATE_FILE,
  STATE_VOLUME,
  TOKEN_DIR,
  TOKEN_FILE,
  TOKEN_VOLUME,
  UNPRIVILEGED_PORT_SYSCTL,
} from './injectionNames.ts';

export interface InjectorConfig {
  sidecarImage: string;
  /** The sidecar's --otlp-endpoint (SHOAL_OTLP_ENDPOINT); empty or unset: no tracing. */
  otlpEndpoint?: string;
  /** The sidecar's --trace-sample-ratio (SHOAL_TRACE_SAMPLE_RATIO); empty or unset: the sidecar's default. */
  traceSampleRatio?: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** discover's base URL, e.g. http://shoal-discover.shoal.svc:6100 */
  discoverUrl: string;
  /** The cluster DNS the sidecar forwards to and the pod's second nameserver, e.g. 10.96.0.10 */
  dnsUpstream: string;
  clusterDomain: string;
  proxyCpu: string;
  proxyMemory: string;
  /** Memory limit of the sidecar; defaults to its request. */
  proxyMemoryLimit?: string;
  /** CPU limit of the sidecar; none when empty (a ResourceQuota on limits.cpu needs one). */
  proxyCpuLimit?: string;
  tokenAudience: string;
  tokenExpirationSeconds: number;
  /** Before Kubernetes 1.29: a regular first container that holds the app back with a postStart wait. */
  legacySidecar: boolean;
  /**
   * Before Kubernetes 1.32 the EndpointSlice controller ignores ports of native sidecars: keep the
   * target-port name on the app container, pointing at the listen port, instead of moving it to the sidecar.
   */
  appKeepsPortNames?: boolean;
  /** The plugin's own variables (base_normal options): they go into the sidecar only. */
  pluginEnv?: (namespace: string, app: string) => Record<string, string> | undefined;
  /** listen_port choices of the app's mesh config (base_ports), so the pod and discover agree. */
  explicitListenPorts?: (namespace: string, app: string) => ReadonlyMap<number, number> | undefined;
}

export interface InjectionEvent {
  reason: string;
  message: string;
}

export interface PodInjection {
  outcome: 'injected' | 'skipped' | 'refused';
  /** Why the pod was skipped or refused; empty when injected. */
  reason: string;
  patch: JsonPatchOp[];
  warnings: string[];
  events: InjectionEvent[];
  app?: string;
  portMap?: Record<string, number>;
}

const SHOAL_VARS = new Set(['DISCOVER_URL', 'PLUGIN_ID', 'NAMESPACE', 'SERVICE_ALIAS']);
// Node's own settings: the app's NODE_OPTIONS (--require of its tracer, a heap size for its workload)
// would load into or crash the sidecar, which runs the same runtime.
const NODE_RUNTIME_VARS = new Set(['NODE_OPTIONS', 'NODE_PATH']);
const isShoalVar = (name: string) => SHOAL_VARS.has(name) || name.startsWith('SHOAL_') || NODE_RUNTIME_VARS.has(name);
/**
 * The sidecar's Node settings, set explicitly so an envFrom source cannot replace them: 1 MB
 * young-generation semi-spaces (as in the image) and one V8 worker thread instead of four (a
 * sidecar's heap is small). Measured: docs/performance.md, "Choices in the code, measured".
 */
export const SIDECAR_NODE_OPTIONS = '--max-semi-space-size=1 --v8-pool-size=1';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const PLUGIN_ID = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
// The env var names every supported Kubernetes version accepts (newer ones accept more).
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
const QUANTITY = /^(\d+(\.\d*)?|\.\d+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+)?$/;
const TRUE_WORDS = new Set(['true', 'enabled', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', 'disabled', 'no', 'off']);

/** A non-negative Kubernetes quantity ("250m", "64Mi", "0.5"). */
export function isQuantity(value: string): boolean {
  return QUANTITY.test(value);
}

const SUFFIX: Record<string, number> = {
  '': 1,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

/** The value of a quantity in base units (cores, bytes), for comparisons. */
export function quantityValue(value: string): number {
  const m = QUANTITY.exec(value.trim());
  if (!m) throw new RangeError(`${JSON.stringify(value)} is not a quantity`);
  const suffix = m[3] ?? '';
  return Number(m[1]) * (/^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : SUFFIX[suffix]);
}

/** The larger of two quantities: a limit may never sit below its request, or the API server refuses the pod. */
function atLeast(limit: string, request: string): string {
  return quantityValue(limit) >= quantityValue(request) ? limit : request;
}

function skipped(reason: string, warnings: string[] = []): PodInjection {
  return { outcome: 'skipped', reason, patch: [], warnings, events: [] };
}

function refused(reason: string): PodInjection {
  const message = `${reason}; the pod is admitted without the shoal sidecar`;
  return { outcome: 'refused', reason, patch: [], warnings: [`shoal: ${message}`], events: [{ reason: 'ShoalInjectionSkipped', message }] };
}

/** The app a pod belongs to: annotation shoal.dev/app, else label app.kubernetes.io/name, else label app. */
export function appOf(pod: Pod): string | undefined {
  const m = pod.metadata ?? {};
  return m.annotations?.[ANNOTATION_APP] ?? m.labels?.['app.kubernetes.io/name'] ?? m.labels?.app;
}

function isTcp(protocol: string | undefined): boolean {
  return protocol === undefined || protocol === 'TCP';
}

function containerOf(pod: Pod): { container: Container; index: number } {
  const containers = pod.spec!.containers;
  const wanted = pod.metadata?.annotations?.['kubectl.kubernetes.io/default-container'];
  const index = Math.max(
    0,
    containers.findIndex((c) => c.name === wanted),
  );
  return { container: containers[index], index };
}

/** The main container's env for the sidecar: same order, shoal's names left out, resource refs pinned to the main container. */
function sharedEnv(main: Container, pluginNames: Set<string>): EnvVar[] {
  const out: EnvVar[] = [];
  for (const entry of main.env ?? []) {
    if (isShoalVar(entry.name) || pluginNames.has(entry.name)) continue;
    const copy = structuredClone(entry);
    // Without containerName a resourceFieldRef means "this container": in the sidecar that would read the sidecar's limits.
    const ref = copy.valueFrom?.resourceFieldRef;
    if (ref && !ref.containerName) ref.containerName = main.name;
    out.push(copy);
  }
  return out;
}

// Waits for the sidecar's /ready; the kubelet starts the next container only after postStart returns.
const POST_START_WAIT = `const end=Date.now()+120000;(async()=>{for(;;){try{const r=await fetch('http://127.0.0.1:${ADMIN_PORT}/ready');if(r.ok)process.exit(0)}catch{}if(Date.now()>end)process.exit(1);await new Promise((s)=>setTimeout(s,250))}})()`;

function sidecarContainer(opts: {
  config: InjectorConfig;
  namespace: string;
  app: string;
  pluginId: string;
  main: Container;
  ports: Array<{ name?: string; containerPort: number; protocol: 'TCP' }>;
  cpu: string;
  memory: string;
  memoryLimit: string;
  pluginEnv: Record<string, string>;
}): Container {
  const { config, namespace, app, pluginId, main } = opts;
  const pluginNames = new Set(Object.keys(opts.pluginEnv));
  const env: EnvVar[] = [
    ...sharedEnv(main, pluginNames),
    { name: 'DISCOVER_URL', value: `${config.discoverUrl.replace(/\/+$/, '')}/v1/resources/${namespace}/${app}/${pluginId}` },
    { name: 'PLUGIN_ID', value: pluginId },
    { name: 'NAMESPACE', value: namespace },
    { name: 'SERVICE_ALIAS', value: app },
    { name: 'SHOAL_DNS_UPSTREAM', value: config.dnsUpstream },
    { name: 'SHOAL_CLUSTER_DOMAIN', value: config.clusterDomain },
    { name: 'SHOAL_TOKEN_FILE', value: TOKEN_FILE },
    { name: 'SHOAL_STATE_FILE', value: STATE_FILE },
    // The sidecar's node, for topology-aware routing; discover answers its zone (docs/proxy.md, Locality).
    { name: 'SHOAL_NODE', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
    ...(config.otlpEndpoint ? [{ name: 'SHOAL_OTLP_ENDPOINT', value: config.otlpEndpoint }] : []),
    ...(config.otlpEndpoint && config.traceSampleRatio ? [{ name: 'SHOAL_TRACE_SAMPLE_RATIO', value: config.traceSampleRatio }] : []),
    { name: 'NODE_OPTIONS', value: SIDECAR_NODE_OPTIONS },
    ...Object.entries(opts.pluginEnv).map(([name, value]) => ({ name, value })),
  ];
  const ready = { httpGet: { path: '/ready', port: ADMIN_PORT, scheme: 'HTTP' } };
  const container: Container = {
    name: SIDECAR_NAME,
    image: config.sidecarImage,
    imagePullPolicy: config.imagePullPolicy ?? 'IfNotPresent',
    args: ['proxy'],
    ports: [
      ...opts.ports.map((p) => (p.name ? { name: p.name, containerPort: p.containerPort, protocol: p.protocol } : p)),
      { name: ADMIN_PORT_NAME, containerPort: ADMIN_PORT, protocol: 'TCP' },
    ],
    env,
    ...(main.envFrom && main.envFrom.length > 0 ? { envFrom: structuredClone(main.envFrom) } : {}),
    resources: {
      requests: { cpu: opts.cpu, memory: opts.memory },
      limits: {
        ...(config.proxyCpuLimit ? { cpu: atLeast(config.proxyCpuLimit, opts.cpu) } : {}),
        memory: atLeast(opts.memoryLimit, opts.memory),
      },
    },
    // Ready only once the first snapshot is applied: the app starts after that.
    startupProbe: { ...ready, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 120 },
    readinessProbe: { ...ready, periodSeconds: 5, timeoutSeconds: 1, failureThreshold: 3 },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      allowPrivilegeEscalation: false,
      privileged: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: STATE_VOLUME, mountPath: STATE_DIR },
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
  };
  if (config.legacySidecar) {
    container.lifecycle = { postStart: { exec: { command: ['node', '-e', POST_START_WAIT] } } };
  } else {
    container.restartPolicy = 'Always';
  }
  return container;
}

function rewriteHandlerPort(
  ops: JsonPatchOp[],
  handler: Handler | undefined,
  path: Array<string | number>,
  names: Map<string, number>,
): void {
  if (!handler) return;
  for (const kind of ['httpGet', 'tcpSocket', 'grpc'] as const) {
    const port = handler[kind]?.port;
    if (typeof port === 'string' && names.has(port))
      ops.push({ op: 'replace', path: pointer(...path, kind, 'port'), value: names.get(port) });
  }
}

/**
 * The patch that injects the sidecar into `pod` (in `namespace`, from the AdmissionReview when the pod has
 * none yet), or why it is not injected.
 */
export function injectPod(pod: Pod, namespace: string, config: InjectorConfig): PodInjection {
  const meta = pod.metadata ?? {};
  const annotations = meta.annotations ?? {};
  const labels = meta.labels ?? {};
  const spec = pod.spec;
  if (!spec || !Array.isArray(spec.containers) || spec.containers.length === 0) return skipped('the pod has no containers');
  if (labels[LABEL_PART_OF] === 'shoal') return skipped("shoal's own pod");

  const optIn = annotations[ANNOTATION_INJECT];
  if (optIn !== undefined) {
    const word = optIn.trim().toLowerCase();
    if (FALSE_WORDS.has(word)) return skipped(`annotation ${ANNOTATION_INJECT}="${optIn}"`);
    if (!TRUE_WORDS.has(word) && word !== '') return refused(`annotation ${ANNOTATION_INJECT}="${optIn}" is neither "true" nor "false"`);
  }
  const os = (spec.os as { name?: string } | undefined)?.name;
  if (os === 'windows') return skipped('Windows pod', ['shoal: Windows pods get no sidecar']);
  if (spec.hostNetwork === true)
    return skipped('host-network pod', ["shoal: host-network pods get no sidecar (its DNS and ports would be the node's)"]);
  const all = [...spec.containers, ...(spec.initContainers ?? [])];
  if (annotations[ANNOTATION_INJECTED] !== undefined || all.some((c) => c.name === SIDECAR_NAME)) return skipped('already injected');

  const app = appOf(pod);
  if (app === undefined) return refused(`no app name: set annotation ${ANNOTATION_APP} or label app.kubernetes.io/name`);
  if (!DNS_LABEL.test(app)) return refused(`app name "${app}" is not a DNS label`);
  const pluginId = annotations[ANNOTATION_PLUGIN_ID] ?? 'mesh';
  if (!PLUGIN_ID.test(pluginId)) return refused(`annotation ${ANNOTATION_PLUGIN_ID}="${pluginId}" is not a valid plugin id`);
  if (!DNS_LABEL.test(namespace)) return refused(`namespace "${namespace}" is missing or invalid`);
  const volumeNames = new Set((spec.volumes ?? []).map((v) => v.name));
  for (const name of [TOKEN_VOLUME, STATE_VOLUME]) if (volumeNames.has(name)) return refused(`the pod already has a volume named ${name}`);

  const warnings: string[] = [];
  const events: InjectionEvent[] = [];
  const resource = (key: string, fallback: string): { value: string; fromAnnotation: boolean } => {
    const given = annotations[key];
    if (given === undefined) return { value: fallback, fromAnnotation: false };
    if (isQuantity(given.trim()) && !/^0*(\.0*)?[a-zA-Z]*$/.test(given.trim())) return { value: given.trim(), fromAnnotation: true };
    const message = `annotation ${key}="${given}" is not a positive quantity; the sidecar uses the default ${fallback}`;
    warnings.push(`shoal: ${message}`);
    events.push({ reason: 'ShoalBadAnnotation', message });
    return { value: fallback, fromAnnotation: false };
  };
  const cpu = resource(ANNOTATION_PROXY_CPU, config.proxyCpu);
  const memory = resource(ANNOTATION_PROXY_MEMORY, config.proxyMemory);

  // Inbound remap: every TCP port of the app containers gets its listen port.
  const declared: Array<{ ci: number; pi: number; port: number; name?: string }> = [];
  spec.containers.forEach((c, ci) =>
    (c.ports ?? []).forEach((p, pi) => {
      if (isTcp(p.protocol)) declared.push({ ci, pi, port: p.containerPort, name: p.name });
    }),
  );
  for (const d of declared) {
    if ((d.port >= LISTEN_PORT_MIN && d.port <= LISTEN_PORT_MAX) || d.port === ADMIN_PORT) {
      return refused(`container ${spec.containers[d.ci].name} declares port ${d.port}, which shoal's sidecar uses`);
    }
  }
  let listenPorts: Map<number, number>;
  try {
    const explicit = new Map(
      [...(config.explicitListenPorts?.(namespace, app) ?? [])].filter(([port]) => declared.some((d) => d.port === port)),
    );
    listenPorts = allocateListenPorts(
      declared.map((d) => d.port),
      explicit,
    );
  } catch (err) {
    return refused(`cannot map the pod's ports to listen ports: ${(err as Error).message}`);
  }
  for (const [port, listen] of listenPorts) {
    if (listen !== preferredListenPort(port)) {
      warnings.push(`shoal: port ${port} listens on ${listen}, not ${preferredListenPort(port)}: target it by name in Services`);
    }
  }
  const portMap: Record<string, number> = {};
  for (const [port, listen] of [...listenPorts].sort((a, b) => a[0] - b[0])) portMap[String(port)] = listen;

  const ops: JsonPatchOp[] = [];
  const keepNamesOnApp = config.appKeepsPortNames === true && !config.legacySidecar;
  const sidecarPorts: Array<{ name?: string; containerPort: number; protocol: 'TCP' }> = [];
  const sidecarPortOf = new Map<number, { name?: string; containerPort: number; protocol: 'TCP' }>();
  const sidecarNames = new Set<string>([ADMIN_PORT_NAME]);
  const namesByContainer = new Map<number, Map<string, number>>();
  for (const d of declared) {
    const listen = listenPorts.get(d.port)!;
    let entry = sidecarPortOf.get(d.port);
    const named = d.name !== undefined && d.name !== '';
    if (named && keepNamesOnApp) {
      // The name now leads to the listen port; the app's own port stays open, undeclared.
      ops.push({ op: 'replace', path: pointer('spec', 'containers', d.ci, 'ports', d.pi, 'containerPort'), value: listen });
      if (!namesByContainer.has(d.ci)) namesByContainer.set(d.ci, new Map());
      namesByContainer.get(d.ci)!.set(d.name!, d.port);
      continue;
    }
    if (!entry) {
      entry = { containerPort: listen, protocol: 'TCP' };
      sidecarPortOf.set(d.port, entry);
      sidecarPorts.push(entry);
    }
    if (!named) continue;
    // One name per port entry and unique names in the sidecar: a second name stays on the app, bypassing the sidecar.
    if (entry.name !== undefined || sidecarNames.has(d.name!)) {
      warnings.push(
        `shoal: port name ${d.name} of container ${spec.containers[d.ci].name} stays on the app: traffic to it bypasses the sidecar`,
      );
      continue;
    }
    entry.name = d.name;
    sidecarNames.add(d.name!);
    ops.push({ op: 'remove', path: pointer('spec', 'containers', d.ci, 'ports', d.pi, 'name') });
    if (!namesByContainer.has(d.ci)) namesByContainer.set(d.ci, new Map());
    namesByContainer.get(d.ci)!.set(d.name!, d.port);
  }
  // Probes and hooks that named a port now use its number: the name left the container (or points elsewhere).
  for (const [ci, names] of namesByContainer) {
    const c = spec.containers[ci];
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const)
      rewriteHandlerPort(ops, c[probe], ['spec', 'containers', ci, probe], names);
    for (const hook of ['postStart', 'preStop'] as const)
      rewriteHandlerPort(ops, c.lifecycle?.[hook], ['spec', 'containers', ci, 'lifecycle', hook], names);
  }

  const pluginEnv: Record<string, string> = {};
  for (const [name, value] of Object.entries(config.pluginEnv?.(namespace, app) ?? {})) {
    if (isShoalVar(name) || !ENV_NAME.test(name)) {
      warnings.push(`shoal: plugin variable ${name} of ${namespace}/${app} is left out (reserved or invalid name)`);
      continue;
    }
    pluginEnv[name] = String(value);
  }
  const { container: main } = containerOf(pod);
  const sidecar = sidecarContainer({
    config,
    namespace,
    app,
    pluginId,
    main,
    ports: sidecarPorts,
    cpu: cpu.value,
    memory: memory.value,
    pluginEnv,
    // An annotated request is also the limit: a chart-wide limit could sit below it.
    memoryLimit: memory.fromAnnotation ? memory.value : (config.proxyMemoryLimit ?? memory.value),
  });
  // Container ops above use the original indices, so the sidecar goes in after them.
  if (config.legacySidecar) ops.push({ op: 'add', path: '/spec/containers/0', value: sidecar });
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
  else if (spec.initContainers === undefined || spec.initContainers === null)
    ops.push({ op: 'add', path: '/spec/initContainers', value: [sidecar] });
  else ops.push({ op: 'add', path: '/spec/initContainers/0', value: sidecar });

  const volumes = [
    {
      name: TOKEN_VOLUME,
      projected: {
        sources: [
          { serviceAccountToken: { audience: config.tokenAudience, expirationSeconds: config.tokenExpirationSeconds, path: 'token' } },
        ],
      },
    },
    { name: STATE_VOLUME, emptyDir: { sizeLimit: '16Mi' } },
  ];
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
  if (spec.volumes === undefined || spec.volumes === null) ops.push({ op: 'add', path: '/spec/volumes', value: volumes });
  else for (const v of volumes) ops.push({ op: 'add', path: '/spec/volumes/-', value: v });

  // DNS: the sidecar's responder first; the cluster DNS second, for whatever runs before the sidecar.
  if (spec.dnsPolicy === 'None' || spec.dnsPolicy === 'Default')
    warnings.push(`shoal: dnsPolicy ${spec.dnsPolicy} replaced by None with shoal's resolver`);
  const domain = config.clusterDomain;
  const searches = [...new Set([`${namespace}.svc.${domain}`, `svc.${domain}`, domain, ...(spec.dnsConfig?.searches ?? [])])].slice(0, 32);
  const options = [...(spec.dnsConfig?.options ?? []).filter((o) => o.name !== 'ndots'), { name: 'ndots', value: '5' }];
  ops.push({ op: 'add', path: '/spec/dnsPolicy', value: 'None' });
  ops.push({ op: 'add', path: '/spec/dnsConfig', value: { nameservers: ['127.0.0.1', config.dnsUpstream], searches, options } });

  // Lets the non-root sidecar bind 53 (and inbound ports below 1024); a namespaced, safe sysctl.
  const sysctl = { name: UNPRIVILEGED_PORT_SYSCTL, value: '53' };
  const sc = spec.securityContext;
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
  if (sc === undefined || sc === null) ops.push({ op: 'add', path: '/spec/securityContext', value: { sysctls: [sysctl] } });
  else if (!Array.isArray(sc.sysctls)) ops.push({ op: 'add', path: '/spec/securityContext/sysctls', value: [sysctl] });
  else {
    const at = sc.sysctls.findIndex((s) => s.name === UNPRIVILEGED_PORT_SYSCTL);
    if (at < 0) ops.push({ op: 'add', path: '/spec/securityContext/sysctls/-', value: sysctl });
    else if (!(Number(sc.sysctls[at].value) <= 53))
      ops.push({ op: 'replace', path: pointer('spec', 'securityContext', 'sysctls', at, 'value'), value: '53' });
  }
  // *_SERVICE_HOST/_PORT variables would lead the app to cluster IPs, around the mesh.
  ops.push({ op: 'add', path: '/spec/enableServiceLinks', value: false });

  const marks: Record<string, string> = {
    [ANNOTATION_INJECTED]: config.legacySidecar ? 'legacy' : 'native',
    [ANNOTATION_PORT_MAP]: JSON.stringify(portMap),
  };
  if (annotations['kubectl.kubernetes.io/default-container'] === undefined) marks['kubectl.kubernetes.io/default-container'] = main.name;
  if (!Object.keys(annotations).some((k) => k.startsWith('prometheus.io/'))) {
    Object.assign(marks, { 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(ADMIN_PORT), 'prometheus.io/path': '/metrics' });
  }
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the API server's JSON may carry null or omit it whatever the type says
  setMetadataEntries(ops, meta.annotations, 'annotations', marks, pod.metadata !== undefined && pod.metadata !== null);

  return { outcome: 'injected', reason: '', patch: ops, warnings, events, app, portMap };
}
