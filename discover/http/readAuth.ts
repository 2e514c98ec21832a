// Who may read a snapshot: in a cluster a sidecar presents its projected service-account token and
// may read only apps of its own namespace (checked with a TokenReview, cached briefly).
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { AuthenticationV1Api, CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from '../../shared/log.ts';
import { bearer, sameSecret } from './bearer.ts';

export interface Identity {
  namespace: string;
  serviceAccount: string;
}

export type TokenReviewer = (token: string) => Promise<Identity | null>;

const CACHE_TTL_MS = 60_000;
const CACHE_MAX = 10_000;


/** A TokenReview client with a small cache, so long-poll loops do not cost an API call each. */
export function tokenReviewer(kc: KubeConfig, audience: string, log: Logger): TokenReviewer {
  const api = kc.makeApiClient(AuthenticationV1Api);
  const cache = new Map<string, { at: number; identity: Identity | null }>();
  return async (token) => {
    const key = createHash('sha256').update(token).digest('base64');
    const hit = cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_TTL_MS) return hit.identity;
    const review = await api.createTokenReview({
      body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: audience ? [audience] : undefined } },
    });
    const user = review.status?.authenticated ? review.status.user?.username ?? '' : '';
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(user);
    const identity = m ? { namespace: m[1], serviceAccount: m[2] } : null;
    if (!identity) log.info({ user, error: review.status?.error }, 'token refused');
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.set(key, { at: Date.now(), identity });
    return identity;
  };
}

export interface ReadGuardOptions {
  /** null: reads need no token (--insecure-reads). */
  reviewer: TokenReviewer | null;
  /** --write-token: reads every app. */
  operatorToken: string;
  /** Service accounts that may read an app (the one named like it, and those its ConfigMap lists). */
  readers: (namespace: string, app: string) => string[];
  /** Why nothing can be served yet (the first list is not done), or null. */
  notReady?: () => string | null;
  log: Logger;
}

/**
 * A fastify preHandler for routes with :namespace and :app params. Before the first full list it
 * answers 503 (a 404 would tell a sidecar its app is gone). The operator token (--write-token)
 * reads everything. A service-account token reads an app of its own namespace whose name is the
 * service account's, or that lists it in `shoal.dev/service-accounts`.
 */
export function requireReader(opts: ReadGuardOptions) {
  const { reviewer, operatorToken, readers, log } = opts;
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const why = opts.notReady?.();
    if (why) {
      await reply.code(503).header('retry-after', '1').send({ error: 'unavailable', message: `discover is not ready: ${why}` });
      return;
    }
    if (!reviewer) return;
    const token = bearer(req.headers.authorization);
    if (!token) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized', message: 'a bearer token (the pod\'s projected service-account token) is required' });
      return;
    }
    if (operatorToken !== '' && sameSecret(token, operatorToken)) return;
    let identity: Identity | null;
    try {
      identity = await reviewer(token);
    } catch (err) {
      log.error({ error: (err as Error).message }, 'TokenReview failed');
      await reply.code(503).send({ error: 'unavailable', message: 'cannot verify the token right now' });
      return;
    }
    if (!identity) {
      await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized', message: 'the token is not a valid service-account token for this audience' });
      return;
    }
    const { namespace: ns, app } = req.params as { namespace: string; app: string };
    if (identity.namespace !== ns) {
      await reply.code(403).send({ error: 'forbidden', message: `service account ${identity.namespace}/${identity.serviceAccount} may not read apps of namespace ${ns}` });
      return;
    }
    if (!readers(ns, app).includes(identity.serviceAccount)) {
      await reply.code(403).send({ error: 'forbidden', message: `service account ${ns}/${identity.serviceAccount} may not read app ${ns}/${app}: name the service account like the app, or list it in the ConfigMap annotation shoal.dev/service-accounts` });
    }
  };
}

/** Records a core/v1 Event on a pod (the webhook's warnings about bad annotations). Fire and forget: failures are logged. */
export function eventRecorder(kc: KubeConfig, log: Logger): (namespace: string, podName: string, reason: string, message: string) => void {
  const api = kc.makeApiClient(CoreV1Api);
  const instance = hostname();
  return (namespace, podName, reason, message) => {
    const now = new Date();
    api.createNamespacedEvent({
      namespace,
      body: {
        apiVersion: 'v1', kind: 'Event',
        // At admission a pod of a Deployment has only a generateName: the event names that.
        metadata: { generateName: `${podName.replace(/-$/, '') || 'pod'}.`, namespace },
        involvedObject: { apiVersion: 'v1', kind: 'Pod', namespace, name: podName },
        reason, message, type: 'Warning',
        source: { component: 'shoal-discover' },
        reportingComponent: 'shoal.dev/discover', reportingInstance: instance,
        firstTimestamp: now, lastTimestamp: now, count: 1,
      },
    }).catch((err: Error) => log.warn({ namespace, pod: podName, reason, error: err.message }, 'could not record an event'));
  };
}
