// Authorization policy for an inbound port: which source identities may connect and, for HTTP, with
// which methods and path prefixes. Written in the mesh config as the port option ALLOW:
//   ALLOW: "ns/web/sa/web"                                  (one identity, any method or path)
//   ALLOW: "ns/web/sa/web GET,HEAD /api/ /health; ns/ops/sa/* GET /metrics"
// Rules are separated by ';'. A rule is a source, then optional METHODS (comma-separated), then
// optional path prefixes (each starting with '/'). A source is ns/<namespace>/sa/<service-account>
// where either part may be '*' or end in '*' (a name prefix), or '*' alone for any mesh identity.
// No ALLOW option: everyone may connect. With one: only callers matching a rule; a caller without a
// verified mesh identity (plaintext in permissive mode) matches no rule.

export interface AuthzRule {
  namespace: string;
  serviceAccount: string;
  /** Upper-case methods; empty means any. */
  methods: string[];
  /** Path prefixes; empty means any. */
  prefixes: string[];
}

export interface AuthzPolicy {
  rules: AuthzRule[];
}

const NAME_PATTERN = /^(\*|[a-z0-9][-a-z0-9.]*\*|[a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/;
const METHOD = /^[A-Z]+$/;

export class AuthzPolicyError extends Error {
  override name = 'AuthzPolicyError';
}

/** Parses an ALLOW option; `l7` false (a TCP port) refuses rules with methods or paths. */
export function parseAuthzPolicy(text: string, where: string, l7: boolean): AuthzPolicy {
  const rules: AuthzRule[] = [];
  for (const raw of text.split(';')) {
    const part = raw.trim();
    if (part === '') continue;
    const [source, ...rest] = part.split(/\s+/);
    let namespace: string;
    let serviceAccount: string;
    if (source === '*') {
      namespace = '*';
      serviceAccount = '*';
    } else {
      const m = /^ns\/([^/]+)\/sa\/([^/]+)$/.exec(source);
      if (!m || !NAME_PATTERN.test(m[1]) || !NAME_PATTERN.test(m[2])) {
        throw new AuthzPolicyError(
          `${where}: invalid ALLOW source ${JSON.stringify(source)}: expected ns/<namespace>/sa/<service-account> ('*' or a trailing '*' allowed) or '*'`,
        );
      }
      namespace = m[1];
      serviceAccount = m[2];
    }
    const methods: string[] = [];
    const prefixes: string[] = [];
    for (const token of rest) {
      if (token.startsWith('/')) prefixes.push(token);
      else if (token === '*') continue;
      else {
        for (const method of token.split(',')) {
          if (!METHOD.test(method))
            throw new AuthzPolicyError(
              `${where}: invalid ALLOW rule ${JSON.stringify(part)}: ${JSON.stringify(method)} is neither an upper-case method nor a path starting with /`,
            );
          methods.push(method);
        }
      }
    }
    if (!l7 && (methods.length > 0 || prefixes.length > 0)) {
      throw new AuthzPolicyError(
        `${where}: invalid ALLOW rule ${JSON.stringify(part)}: a tcp port can only allow sources, not methods or paths`,
      );
    }
    rules.push({ namespace, serviceAccount, methods, prefixes });
  }
  if (rules.length === 0)
    throw new AuthzPolicyError(`${where}: ALLOW is empty: give at least one source (remove the option to allow everyone)`);
  return { rules };
}

function nameMatches(pattern: string, name: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return name.startsWith(pattern.slice(0, -1));
  return pattern === name;
}

/** Whether a caller may pass. source null: no verified identity. method/path undefined: L4 (connection level). */
export function authzAllows(
  policy: AuthzPolicy | undefined,
  source: { namespace: string; serviceAccount: string } | null,
  method?: string,
  path?: string,
): boolean {
  if (policy === undefined) return true;
  if (source === null) return false;
  for (const r of policy.rules) {
    if (!nameMatches(r.namespace, source.namespace) || !nameMatches(r.serviceAccount, source.serviceAccount)) continue;
    if (method !== undefined && r.methods.length > 0 && !r.methods.includes(method)) continue;
    if (path !== undefined && r.prefixes.length > 0 && !r.prefixes.some((p) => path.startsWith(p))) continue;
    return true;
  }
  return false;
}

/** Whether any rule could admit this source at connection level (before a request is seen). */
export function authzMayConnect(policy: AuthzPolicy | undefined, source: { namespace: string; serviceAccount: string } | null): boolean {
  return authzAllows(policy, source);
}

export function renderAuthzPolicy(policy: AuthzPolicy | undefined): string {
  if (policy === undefined) return 'allow all';
  return policy.rules
    .map((r) =>
      [
        r.namespace === '*' && r.serviceAccount === '*' ? '*' : `ns/${r.namespace}/sa/${r.serviceAccount}`,
        r.methods.join(','),
        ...r.prefixes,
      ]
        .filter((x) => x !== '')
        .join(' '),
    )
    .join('; ');
}

export const authzPolicySchema = {
  type: 'object',
  additionalProperties: false,
  required: ['rules'],
  description: 'Who may connect to this inbound port (absent: everyone)',
  properties: {
    rules: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['namespace', 'serviceAccount', 'methods', 'prefixes'],
        properties: {
          namespace: { type: 'string', minLength: 1 },
          serviceAccount: { type: 'string', minLength: 1 },
          methods: { type: 'array', items: { type: 'string', pattern: '^[A-Z]+$' } },
          prefixes: { type: 'array', items: { type: 'string', pattern: '^/' } },
        },
      },
    },
  },
} as const;
