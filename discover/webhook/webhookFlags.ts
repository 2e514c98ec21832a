// Flags of `shoal discover --webhook` and the webhook options they give. --cluster-domain and
// --token-audience are discover's own flags and are read from the same values.
import type { FlagSpec, FlagValues } from '../../shared/flags.ts';
import type { InjectorConfig } from './podInjector.ts';
import { startWebhook, type WebhookOptions } from './webhookServer.ts';
import { parseOtlpEndpoint, parseSampleRatio } from '../../proxy/tracing/tracingFlags.ts';

export { startWebhook };
export type { WebhookOptions };

export const webhookFlags: FlagSpec[] = [
  { name: 'webhook', type: 'bool', default: false, description: 'Also serve the sidecar injection webhook over TLS (POST /inject)' },
  { name: 'webhook-port', type: 'int', default: 6443, description: 'With --webhook: port of the webhook' },
  {
    name: 'webhook-cert',
    type: 'string',
    default: '/etc/shoal/webhook/tls.crt',
    description: 'With --webhook: TLS certificate file (PEM), reloaded when it changes',
  },
  {
    name: 'webhook-key',
    type: 'string',
    default: '/etc/shoal/webhook/tls.key',
    description: 'With --webhook: TLS private key file (PEM), reloaded when it changes',
  },
  { name: 'sidecar-image', type: 'string', default: '', description: 'With --webhook: image of the injected sidecar (runs `shoal proxy`)' },
  {
    name: 'sidecar-image-pull-policy',
    type: 'string',
    default: 'IfNotPresent',
    description: 'With --webhook: Always, IfNotPresent or Never',
  },
  {
    name: 'discover-url',
    type: 'string',
    default: 'http://shoal-discover.shoal.svc:6100',
    description: "With --webhook: discover's base URL as sidecars reach it",
  },
  {
    name: 'dns-upstream',
    type: 'string',
    default: '',
    description: "With --webhook: the cluster DNS address (e.g. 10.96.0.10): the sidecar's upstream and the pods' second nameserver",
  },
  {
    name: 'proxy-cpu',
    type: 'string',
    default: '100m',
    description: "With --webhook: the sidecar's CPU request (pod annotation shoal.dev/proxy-cpu overrides)",
  },
  {
    name: 'proxy-memory',
    type: 'string',
    default: '64Mi',
    description: "With --webhook: the sidecar's memory request (pod annotation shoal.dev/proxy-memory overrides)",
  },
  {
    name: 'proxy-memory-limit',
    type: 'string',
    default: '128Mi',
    description: "With --webhook: the sidecar's memory limit when no annotation sets its memory",
  },
  { name: 'proxy-cpu-limit', type: 'string', default: '', description: "With --webhook: the sidecar's CPU limit (none when empty)" },
  {
    name: 'sidecar-token-expiration',
    type: 'int',
    default: 3600,
    description: "With --webhook: lifetime in seconds of the sidecar's projected token",
  },
  {
    name: 'legacy-sidecar',
    type: 'bool',
    default: false,
    description:
      'With --webhook: for Kubernetes before 1.29, inject a regular first container with a postStart wait instead of a native sidecar',
  },
  {
    name: 'sidecar-otlp-endpoint',
    type: 'string',
    default: '',
    description:
      'With --webhook: the OpenTelemetry collector sidecars export spans to by OTLP/HTTP (their --otlp-endpoint); empty: no tracing',
  },
  {
    name: 'sidecar-trace-sample-ratio',
    type: 'string',
    default: '',
    description:
      "With --webhook and --sidecar-otlp-endpoint: the share of new traces sidecars sample, 0 to 1 (their --trace-sample-ratio); empty: the sidecar's default",
  },
  {
    name: 'app-keeps-port-names',
    type: 'bool',
    default: false,
    description: 'With --webhook: for Kubernetes before 1.32, keep target-port names on the app container (pointing at the listen port)',
  },
];

function str(v: unknown, fallback: string): string {
  return v === undefined || v === null ? fallback : String(v);
}

/** Webhook options from parsed flags (webhookFlags plus discover's --cluster-domain, --token-audience, --host). */
export function webhookOptionsFromFlags(values: FlagValues): Pick<WebhookOptions, 'host' | 'port' | 'certFile' | 'keyFile' | 'injector'> {
  const pullPolicy = str(values['sidecar-image-pull-policy'], 'IfNotPresent');
  if (!['Always', 'IfNotPresent', 'Never'].includes(pullPolicy))
    throw new Error(`invalid --sidecar-image-pull-policy=${JSON.stringify(pullPolicy)}: expected Always, IfNotPresent or Never`);
  // Checked here, with the sidecar's own rules, so a bad value stops discover instead of every sidecar.
  const otlpEndpoint = str(values['sidecar-otlp-endpoint'], '');
  const sampleRatio = str(values['sidecar-trace-sample-ratio'], '');
  const flagged = (flag: string, f: () => unknown) => {
    try {
      f();
    } catch (err) {
      throw new Error(`invalid --${flag}: ${(err as Error).message.replace(/^--[-a-z]+ /, '')}`, { cause: err });
    }
  };
  if (otlpEndpoint !== '') flagged('sidecar-otlp-endpoint', () => parseOtlpEndpoint(otlpEndpoint));
  if (sampleRatio !== '') {
    if (otlpEndpoint === '')
      throw new Error('--sidecar-trace-sample-ratio needs --sidecar-otlp-endpoint (without a collector sidecars do not trace)');
    flagged('sidecar-trace-sample-ratio', () => parseSampleRatio(sampleRatio));
  }
  const injector: InjectorConfig = {
    sidecarImage: str(values['sidecar-image'], ''),
    imagePullPolicy: pullPolicy as InjectorConfig['imagePullPolicy'],
    discoverUrl: str(values['discover-url'], 'http://shoal-discover.shoal.svc:6100'),
    dnsUpstream: str(values['dns-upstream'], ''),
    clusterDomain: str(values['cluster-domain'], 'cluster.local'),
    proxyCpu: str(values['proxy-cpu'], '100m'),
    proxyMemory: str(values['proxy-memory'], '64Mi'),
    proxyMemoryLimit: str(values['proxy-memory-limit'], '128Mi'),
    proxyCpuLimit: str(values['proxy-cpu-limit'], ''),
    tokenAudience: str(values['token-audience'], 'shoal'),
    tokenExpirationSeconds: Number(values['sidecar-token-expiration'] ?? 3600),
    legacySidecar: values['legacy-sidecar'] === true,
    appKeepsPortNames: values['app-keeps-port-names'] === true,
    otlpEndpoint,
    traceSampleRatio: sampleRatio,
  };
  return {
    host: str(values.host, '0.0.0.0'),
    port: Number(values['webhook-port'] ?? 6443),
    certFile: str(values['webhook-cert'], '/etc/shoal/webhook/tls.crt'),
    keyFile: str(values['webhook-key'], '/etc/shoal/webhook/tls.key'),
    injector,
  };
}
