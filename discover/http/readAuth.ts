// Who may read a snapshot. A sidecar presents its projected service-account token (audience
// --token-audience) and reads the apps of its own namespace named like its service account or
// listing it. Anyone else (a person's kubeconfig token, a platform tool's service account) is
// authenticated with a TokenReview and authorized with a SubjectAccessReview, as kubelet and
// metrics-server delegate to the API server: reading app NS/APP needs `get` on ConfigMap
// NS/shoal-mesh-APP. Both reviews are cached briefly, allowed and denied alike.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { AuthenticationV1Api, AuthorizationV1Api, CoreV1Api, type KubeConfig, type V1UserInfo } from '@kubernetes/client-node';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../shared/log.ts';
import { bearer, sameSecret } from './bearer.ts';

/** Who a token is, as the API server's TokenReview says. */
export interface Identity {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
  /** A service account whose token was issued for discover's audience: a sidecar, to which the sidecar rule applies. */
  sidecar?: { namespace: string; serviceAccount: string };
}

export type TokenReviewer = (token: string) => Promise<Identity | null>;

/** Whether IDENTITY may read app NAMESPACE/APP; rejects when the API server cannot say. */
export type AccessReviewer = (identity: Identity, namespace: string, app: string) => Promise<boolean>;

/** TokenReview results: a token keeps its identity for its lifetime, so a minute is safe and spares long-poll loops an API call each. */
export const TOKEN_CACHE_TTL_MS = 60_000;
/** SubjectAccessReview results, allowed and denied: a RoleBinding's removal takes effect within this (k8s.io/apiserver's delegated authorization default). */
export const ACCESS_CACHE_TTL_MS = 10_000;
const CACHE_MAX = 10_000;

/** A bounded map whose entries expire: the oldest entry goes when it is full. */
class ReviewCache<T> {
  private readonly entries = new Map<string, { at: number; value: T }>();
  private readonly ttlMs: number;

  constructor(ttlMs: number) {
    this.ttlMs = ttlMs;
  }

  get(key: string): { value: T } | undefined {
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    if (Date.now() - hit.at < this.ttlMs) return hit;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, value: T): void {
    this.entries.delete(key);
    if (this.entries.size >= CACHE_MAX) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { at: Date.now(), value });
  }
}

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([^:]+):([^:]+)$/;

function identityOf(user: V1UserInfo | undefined, sidecarAudience: boolean): Identity {
  const username = user?.username ?? '';
  const m = sidecarAudience ? SERVICE_ACCOUNT_USER.exec(username) : null;
  return {
    username,
    uid: user?.uid,
    groups: user?.groups ?? [],
    extra: user?.extra,
    sidecar: m ? { namespace: m[1], serviceAccount: m[2] } : undefined,
  };
}

/**
 * A TokenReview client with a small cache. A token is first reviewed for discover's audience (a
 * sidecar's projected token); failing that, for the API server's own audiences (what a kubeconfig
 * holds: a `kubectl create token` token, an OIDC or exec plugin token).
 */
export function tokenReviewer(kc: KubeConfig, audience: string, log: Logger, ttlMs = TOKEN_CACHE_TTL_MS): TokenReviewer {
  const api = kc.makeApiClient(AuthenticationV1Api);
  const cache = new ReviewCache<Identity | null>(ttlMs);
  const review = async (token: string, audiences: string[] | undefined) =>
    (
      await api.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences } },
      })
    ).status;
  return async (token) => {
    const key = createHash('sha256').update(token).digest('base64');
    const hit = cache.get(key);
    if (hit) return hit.value;
    let identity: Identity | null = null;
    const forShoal = audience ? await review(token, [audience]) : undefined;
    if (forShoal?.authenticated) {
      identity = identityOf(forShoal.user, true);
    } else {
      const forApi = await review(token, undefined);
      if (forApi?.authenticated) identity = identityOf(forApi.user, !audience);
      else log.info({ error: forApi?.error ?? forShoal?.error }, 'token refused');
    }
    cache.set(key, identity);
    return identity;
  };
}

/** The ConfigMap whose `get` permission lets a person read app NAMESPACE/APP (the name PUT /v1/resources writes). */
export function readPermissionName(app: string): string {
  return `shoal-mesh-${app}`;
}

/** A SubjectAccessReview client with a small cache (allowed and denied answers alike). */
export function accessReviewer(kc: KubeConfig, log: Logger, ttlMs = ACCESS_CACHE_TTL_MS): AccessReviewer {
  const api = kc.makeApiClient(AuthorizationV1Api);
  const cache = new ReviewCache<boolean>(ttlMs);
  return async (identity, namespace, app) => {
    const name = readPermissionName(app);
    const key = createHash('sha256')
      .update(JSON.stringify([identity.username, identity.uid, identity.groups, identity.extra, namespace, name]))
      .digest('base64');
    const hit = cache.get(key);
    if (hit) return hit.value;
    const review = await api.createSubjectAccessReview({
      body: {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: identity.username,
          uid: identity.uid,
          groups: identity.groups,
          extra: identity.extra,
          resourceAttributes: { namespace, verb: 'get', group: '', version: 'v1', resource: 'configmaps', name },
        },
      },
    });
    const allowed = review.status?.allowed === true;
    if (review.status?.evaluationError)
      log.warn(
        { user: identity.username, namespace, app, error: review.status.evaluationError },
        'SubjectAccessReview reported an evaluation error',
      );
    cache.set(key, allowed);
    return allowed;
  };
}

export interface ReadGuardOptions {
  /** null: reads need no token (--insecure-reads). */
  reviewer: TokenReviewer | null;
  /** Authorizes whoever the sidecar rule does not admit; null: nobody else reads. */
  authorizer?: AccessReviewer | null;
  /** --write-token: reads every app. */
  operatorToken: string;
  /** Service accounts that may read an app (the one named like it, and those its ConfigMap lists). */
  readers: (namespace: string, app: string) => string[];
  /** Why nothing can be served yet (the first list is not done), or null. */
  notReady?: () => string | null;
  log: Logger;
}

function who(identity: Identity): string {
  const sa = SERVICE_ACCOUNT_USER.exec(identity.username);
  return sa ? `service account ${sa[1]}/${sa[2]}` : `user ${JSON.stringify(identity.username)}`;
}

/**
 * A fastify preHandler for routes with :namespace and :app params. Before the first full list it
 * answers 503 (a 404 would tell a sidecar its app is gone). The operator token (--write-token)
 * reads everything. A sidecar's token reads an app of its own namespace whose name is the service
 * account's, or that lists it in `shoal.dev/service-accounts`. Any other authenticated identity
 * reads what a SubjectAccessReview allows. No or an unknown token: 401; not allowed: 403 naming
 * the permission; a review that fails: 503.
 */
export function requireReader(opts: ReadGuardOptions) {
  const { reviewer, authorizer, operatorToken, readers, log } = opts;
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const why = opts.notReady?.();
    if (why) {
      await reply
        .code(503)
        .header('retry-after', '1')
        .send({ error: 'unavailable', message: `discover is not ready: ${why}` });
      return;
    }
    if (!reviewer) return;
    const token = bearer(req.headers.authorization);
    if (!token) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({
        error: 'unauthorized',
        message:
          "a bearer token is required: a sidecar's projected service-account token, or a Kubernetes token of yours (shoal get sends the one of your kubeconfig)",
      });
      return;
    }
    if (operatorToken !== '' && sameSecret(token, operatorToken)) return;
    let identity: Identity | null;
    try {
      identity = await reviewer(token);
    } catch (err) {
      log.error({ error: (err as Error).message }, 'TokenReview failed');
      await reply
        .code(503)
        .header('retry-after', '1')
        .send({ error: 'unavailable', message: 'cannot verify the token right now: the TokenReview failed' });
      return;
    }
    if (!identity) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({
        error: 'unauthorized',
        message: 'the API server does not accept this token (expired, revoked, or issued for another audience)',
      });
      return;
    }
    const { namespace: ns, app } = req.params as { namespace: string; app: string };
    const sc = identity.sidecar;
    if (sc && sc.namespace === ns && readers(ns, app).includes(sc.serviceAccount)) return;
    let allowed = false;
    if (authorizer) {
      try {
        allowed = await authorizer(identity, ns, app);
      } catch (err) {
        log.error({ error: (err as Error).message }, 'SubjectAccessReview failed');
        await reply
          .code(503)
          .header('retry-after', '1')
          .send({ error: 'unavailable', message: 'cannot check the permission right now: the SubjectAccessReview failed' });
        return;
      }
    }
    if (allowed) return;
    const cm = readPermissionName(app);
    const sidecarRule = sc
      ? sc.namespace !== ns
        ? `; a sidecar's token reads apps of its own namespace (${sc.namespace}) only`
        : `; as a sidecar's token it reads only the app named like its service account, or one whose ConfigMap lists it in the annotation shoal.dev/service-accounts`
      : '';
    const rbac = authorizer
      ? `it needs get on ConfigMap ${cm} in namespace ${ns} (RBAC: verb get, resource configmaps, namespace ${ns}; check with kubectl auth can-i get configmap/${cm} -n ${ns})`
      : 'only sidecar tokens are checked here';
    await reply.code(403).send({ error: 'forbidden', message: `${who(identity)} may not read app ${ns}/${app}: ${rbac}${sidecarRule}` });
  };
}

/** Records a core/v1 Event on a pod (the webhook's warnings about bad annotations). Fire and forget: failures are logged. */
export function eventRecorder(kc: KubeConfig, log: Logger): (namespace: string, podName: string, reason: string, message: string) => void {
  const api = kc.makeApiClient(CoreV1Api);
  const instance = hostname();
  return (namespace, podName, reason, message) => {
    const now = new Date();
    api
      .createNamespacedEvent({
        namespace,
        body: {
          apiVersion: 'v1',
          kind: 'Event',
          // At admission a pod of a Deployment has only a generateName: the event names that.
          metadata: { generateName: `${podName.replace(/-$/, '') || 'pod'}.`, namespace },
          involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace, name: podName },
          reason,
          message,
          type: 'Warning',
          source: { component: 'shoal-discover' },
          reportingComponent: 'shoal.dev/discover',
          reportingInstance: instance,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((err: Error) => log.warn({ namespace, pod: podName, reason, error: err.message }, 'could not record an event'));
  };
}
