// The CA's HTTP face on discover: POST /v1/identity/csr signs a sidecar's CSR for the identity its
// bearer token proves; GET /v1/identity/bundle serves the trust bundle (public).
import type { FastifyInstance } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../../shared/log.ts';
import { bearer } from '../http/bearer.ts';
// Types only: the X.509 library loads when the CA is switched on (setupIdentity), not with every discover.
import type { CertificateAuthority } from './certificateAuthority.ts';
import type { TokenVerifier } from './tokenVerifier.ts';

export interface IdentityService {
  ca: CertificateAuthority;
  verify: TokenVerifier;
  /** Lifetime of workload certificates. */
  ttlMs: number;
  /** Counts refusals by reason and signed certificates. */
  onResult?: (result: 'signed' | 'bad-csr' | 'unauthorized' | 'forbidden' | 'error') => void;
}

const errorBody = {
  type: 'object',
  properties: { error: { type: 'string' }, message: { type: 'string' } },
} as const;

export function identityRoutes(app: FastifyInstance, svc: IdentityService, log: Logger, registry?: Registry): void {
  const results = registry
    ? new Counter({
        name: 'shoal_discover_certificate_requests_total',
        help: 'CSRs by outcome: signed, bad-csr, unauthorized, forbidden, error',
        labelNames: ['result'],
        registers: [registry],
      })
    : null;
  const count = (result: 'signed' | 'bad-csr' | 'unauthorized' | 'forbidden' | 'error') => {
    results?.labels(result).inc();
    svc.onResult?.(result);
  };
  app.post(
    '/v1/identity/csr',
    {
      bodyLimit: 64 * 1024,
      schema: {
        description:
          "Sign a workload certificate. Bearer: the pod's projected service-account token. The certificate's URI SAN is spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> of the token; a CSR asking for anything else is refused.",
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['csr'],
          properties: { csr: { type: 'string', minLength: 1, description: 'PEM PKCS#10 request' } },
        },
        response: {
          200: {
            type: 'object',
            required: ['certificate', 'spiffeId', 'notAfter', 'trustBundle'],
            properties: {
              certificate: { type: 'string' },
              spiffeId: { type: 'string' },
              notAfter: { type: 'string' },
              trustBundle: { type: 'array', items: { type: 'string' } },
            },
          },
          400: errorBody,
          401: errorBody,
          403: errorBody,
          503: errorBody,
        },
      },
    },
    async (req, reply) => {
      const token = bearer(req.headers.authorization);
      if (!token) {
        count('unauthorized');
        return reply.code(401).header('www-authenticate', 'Bearer').send({
          error: 'unauthorized',
          message: "a bearer token (the pod's projected service-account token) is required to get a certificate",
        });
      }
      let who;
      try {
        who = await svc.verify(token);
      } catch (err) {
        count('error');
        log.error({ error: (err as Error).message }, 'token check for a CSR failed');
        return reply.code(503).send({ error: 'unavailable', message: 'cannot verify the token right now' });
      }
      if ('refused' in who) {
        count('unauthorized');
        log.info({ reason: who.refused }, 'CSR refused: token');
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({ error: 'unauthorized', message: `token refused: ${who.refused}; nothing signed` });
      }
      const { csr } = req.body as { csr: string };
      try {
        const issued = await svc.ca.sign(csr, who, svc.ttlMs);
        count('signed');
        log.info({ spiffeId: issued.spiffeId, notAfter: issued.notAfter.toISOString() }, 'certificate signed');
        return {
          certificate: issued.certificate,
          spiffeId: issued.spiffeId,
          notAfter: issued.notAfter.toISOString(),
          trustBundle: svc.ca.trustBundle,
        };
      } catch (err) {
        if ((err as Error).name !== 'CsrError') throw err;
        const message = (err as Error).message;
        const forbidden = message.startsWith('CSR asks for');
        count(forbidden ? 'forbidden' : 'bad-csr');
        log.info({ namespace: who.namespace, serviceAccount: who.serviceAccount, reason: message }, 'CSR refused');
        return reply
          .code(forbidden ? 403 : 400)
          .send({ error: forbidden ? 'forbidden' : 'bad_csr', message: `${message}; nothing signed` });
      }
    },
  );
  app.get(
    '/v1/identity/bundle',
    {
      schema: {
        description: 'The trust bundle: PEM roots of the mesh CA',
        response: {
          200: {
            type: 'object',
            properties: { trustDomain: { type: 'string' }, trustBundle: { type: 'array', items: { type: 'string' } } },
          },
        },
      },
    },
    async () => ({ trustDomain: svc.ca.trustDomain, trustBundle: svc.ca.trustBundle }),
  );
}
