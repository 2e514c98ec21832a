// Names the injector writes or reads on Pods and Services: users and scripts rely on them (docs/injection.md).

export const ANNOTATION_INJECT = 'shoal.dev/inject';
export const ANNOTATION_PROXY_CPU = 'shoal.dev/proxy-cpu';
export const ANNOTATION_PROXY_MEMORY = 'shoal.dev/proxy-memory';
export const ANNOTATION_PORT_MAP = 'shoal.dev/port-map';
export const ANNOTATION_APP = 'shoal.dev/app';
export const ANNOTATION_PLUGIN_ID = 'shoal.dev/plugin-id';
/** Marker of an injected pod; its value is the sidecar mode ("native" or "legacy"). */
export const ANNOTATION_INJECTED = 'shoal.dev/injected';
/** The earlier mesh's label on a Service whose numeric targetPort was rewritten: the original port(s) (docs/injection.md). */
export const LABEL_ORIGIN_PORT = 'origin_port';
export const LABEL_PART_OF = 'app.kubernetes.io/part-of';

export const SIDECAR_NAME = 'shoal-proxy';
export const ADMIN_PORT = 65533;
export const ADMIN_PORT_NAME = 'shoal-admin';
export const TOKEN_VOLUME = 'shoal-token';
export const TOKEN_DIR = '/var/run/secrets/shoal';
export const TOKEN_FILE = `${TOKEN_DIR}/token`;
export const STATE_VOLUME = 'shoal-state';
export const STATE_DIR = '/var/lib/shoal';
export const STATE_FILE = `${STATE_DIR}/snapshot.json`;
export const UNPRIVILEGED_PORT_SYSCTL = 'net.ipv4.ip_unprivileged_port_start';
