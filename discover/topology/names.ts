// The names an app is known by: its namespace, its name and its mesh plugin id. They become path
// segments of the API, keys of the topology, Kubernetes object names and label values, so each is
// checked before anything is looked up or written.

/** A DNS-1123 label, as Kubernetes requires of a namespace (and as a ConfigMap name and label value allow). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** A plugin id, as the static topology file has always accepted it. */
export const PLUGIN_ID = /^[A-Za-z0-9][-A-Za-z0-9_.]{0,62}$/;
/** A Kubernetes label value (the plugin id is stored in the label shoal.dev/plugin-id). */
export const LABEL_VALUE = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

const LABEL_RULE = "expected a DNS-1123 label: at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit";

/**
 * Why the namespace, app or plugin id of an API path is not a valid name, or null when all three
 * are. Each part is named with its value as received (JSON-quoted, so control bytes show).
 */
export function badResourceName(namespace: string, app: string, pluginId?: string): string | null {
  if (!DNS_LABEL.test(namespace)) return `namespace ${JSON.stringify(namespace)} is not a valid name: ${LABEL_RULE}`;
  if (!DNS_LABEL.test(app)) return `app ${JSON.stringify(app)} is not a valid name: ${LABEL_RULE}`;
  if (pluginId !== undefined && !PLUGIN_ID.test(pluginId)) {
    return `plugin_id ${JSON.stringify(pluginId)} is not a valid id: expected at most 63 letters, digits, '-', '_' and '.', starting with a letter or digit`;
  }
  return null;
}

/**
 * A write a source refuses for a reason of the request or of the state it would change: it answers
 * `statusCode` (400 invalid, 409 conflict) and nothing was changed.
 */
export class WriteRefused extends Error {
  override name = 'WriteRefused';
  readonly statusCode: 400 | 409;
  constructor(statusCode: 400 | 409, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}
