// Who a CSR's bearer token belongs to: Kubernetes TokenReview in a cluster, a tokens file in static
// mode. No cache: a sidecar asks for a certificate about twice a day, and an expired or revoked
// token must be refused at once.
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import type { KubeConfig } from '@kubernetes/client-node';

export type TokenCheck = { namespace: string; serviceAccount: string } | { refused: string };
export type TokenVerifier = (token: string) => Promise<TokenCheck>;

export function kubernetesTokenVerifier(kc: KubeConfig, audience: string): TokenVerifier {
  let api: import('@kubernetes/client-node').AuthenticationV1Api | null = null;
  return async (token) => {
    if (!api) {
      const { AuthenticationV1Api } = await import('@kubernetes/client-node');
      api = kc.makeApiClient(AuthenticationV1Api);
    }
    const review = await api.createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: audience ? [audience] : undefined } },
    });
    if (!review.status?.authenticated) {
      return {
        refused: `TokenReview did not authenticate the token${review.status?.error ? `: ${review.status.error}` : ' (expired, revoked, or for another audience)'}`,
      };
    }
    const user = review.status.user?.username ?? '';
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user);
    if (!m) return { refused: `the token belongs to ${JSON.stringify(user)}, not to a service account` };
    if (audience && review.status.audiences && !review.status.audiences.includes(audience)) {
      return { refused: `the token is not for audience ${JSON.stringify(audience)}` };
    }
    return { namespace: m[1], serviceAccount: m[2] };
  };
}

interface StaticToken {
  token: string;
  namespace: string;
  serviceAccount: string;
  expires?: string;
}

/**
 * Static mode: a YAML/JSON file `tokens: [{token, namespace, serviceAccount, expires?}]`, read at
 * every request (edits apply at once). expires is an ISO date; past it the token is refused.
 */
export function fileTokenVerifier(file: string): TokenVerifier {
  return async (token) => {
    let doc: { tokens?: (StaticToken | null)[] } | null; // an empty file is null
    try {
      doc = parseYaml(await readFile(file, 'utf8')) as { tokens?: (StaticToken | null)[] } | null;
    } catch (err) {
      throw new Error(`identity tokens file ${file}: ${(err as Error).message}`, { cause: err });
    }
    const entry = (doc?.tokens ?? []).find((t) => t && t.token === token);
    if (!entry) return { refused: 'unknown token' };
    if (entry.expires !== undefined && !(Date.parse(entry.expires) > Date.now()))
      return { refused: `the token expired at ${entry.expires}` };
    if (!entry.namespace || !entry.serviceAccount) return { refused: 'the token has no namespace/serviceAccount in the tokens file' };
    return { namespace: entry.namespace, serviceAccount: entry.serviceAccount };
  };
}
