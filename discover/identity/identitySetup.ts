// Wiring of the mesh CA into discover: flags, where the CA key comes from, how tokens are checked.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KubeConfig } from '@kubernetes/client-node';
import { UsageError, type FlagSpec, type FlagValues } from '../../shared/flags.ts';
import { parseMtlsMode, trustDomainError, type MtlsMode } from '../../shared/identity.ts';
import type { Logger } from '../../shared/log.ts';
import type { CertificateAuthority } from './certificateAuthority.ts';
import type { IdentityService } from './identityRoutes.ts';
import type { MeshIdentity } from './snapshotIdentity.ts';
import { fileTokenVerifier, kubernetesTokenVerifier, type TokenVerifier } from './tokenVerifier.ts';

export const identityFlags: FlagSpec[] = [
  {
    name: 'trust-domain',
    type: 'string',
    default: '',
    description:
      'Run the mesh CA for this SPIFFE trust domain (e.g. cluster.local): workload certificates and mTLS between sidecars; off without it',
  },
  {
    name: 'ca-dir',
    type: 'string',
    default: '',
    description:
      'With --trust-domain: the CA as a mounted Secret: tls.crt, tls.key, and optionally ca.crt (old roots still trusted during a rotation)',
  },
  {
    name: 'ca-generate',
    type: 'bool',
    default: false,
    description: 'With --trust-domain and no --ca-dir: generate a CA in memory (one replica only: dev runs and tests)',
  },
  {
    name: 'cert-ttl',
    type: 'int',
    default: 86400,
    description: 'Lifetime of workload certificates, seconds (sidecars renew at half-life)',
  },
  {
    name: 'mtls-mode',
    type: 'string',
    default: 'permissive',
    description: 'Default inbound mode for apps whose mesh config sets no MTLS_MODE: permissive (mTLS and plaintext) or strict (mTLS only)',
  },
  {
    name: 'identity-tokens',
    type: 'string',
    default: '',
    description:
      'Static mode: YAML file of the tokens sidecars present for certificates: tokens: [{token, namespace, serviceAccount, expires}]',
  },
];

export interface IdentityOptions {
  trustDomain: string;
  /** A CA already made (tests), else caDir, else generate. */
  ca?: CertificateAuthority;
  caDir?: string;
  generate?: boolean;
  certTtlMs?: number;
  mtlsMode?: MtlsMode;
  /** Static mode: the tokens file. Kubernetes mode uses TokenReview. */
  tokensFile?: string;
  /** Kubernetes mode: the audience tokens must carry. */
  tokenAudience?: string;
}

export function identityOptionsFromFlags(v: FlagValues): IdentityOptions | undefined {
  const trustDomain = String(v['trust-domain'] ?? '');
  if (trustDomain === '') {
    for (const f of ['ca-dir', 'identity-tokens'])
      if (v[f]) throw new UsageError(`--${f} needs --trust-domain (the mesh CA is off without it)`);
    return undefined;
  }
  const err = trustDomainError(trustDomain);
  if (err) throw new UsageError(`--trust-domain: ${err}`);
  const caDir = String(v['ca-dir'] ?? '');
  if (caDir === '' && !v['ca-generate'])
    throw new UsageError('--trust-domain needs the CA: --ca-dir DIR (the shoal-ca Secret mounted) or --ca-generate (in memory, dev only)');
  if (v.static && !v['identity-tokens'])
    throw new UsageError('--trust-domain with --static needs --identity-tokens FILE: how sidecars prove who they are');
  const ttl = Number(v['cert-ttl'] ?? 86400);
  if (ttl < 60) throw new UsageError(`invalid --cert-ttl=${ttl}: at least 60 seconds`);
  let mtlsMode: MtlsMode;
  try {
    mtlsMode = parseMtlsMode(v['mtls-mode'] ?? 'permissive', `invalid --mtls-mode=${JSON.stringify(v['mtls-mode'])}`);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  return {
    trustDomain,
    caDir: caDir || undefined,
    generate: Boolean(v['ca-generate']),
    certTtlMs: ttl * 1000,
    mtlsMode,
    tokensFile: v['identity-tokens'] ? String(v['identity-tokens']) : undefined,
    tokenAudience: v['token-audience'] !== undefined ? String(v['token-audience']) : undefined,
  };
}

function readCaDir(dir: string): { cert: string; key: string; roots: string } {
  const read = (name: string, optional = false) => {
    try {
      return readFileSync(join(dir, name), 'utf8');
    } catch (e) {
      if (optional) return '';
      throw new Error(`CA directory ${dir}: cannot read ${name}: ${(e as Error).message}`, { cause: e });
    }
  };
  return { cert: read('tls.crt'), key: read('tls.key'), roots: read('ca.crt', true) };
}

export async function setupIdentity(
  o: IdentityOptions,
  kubeConfig: (() => Promise<KubeConfig>) | null,
  log: Logger,
): Promise<{ service: IdentityService; mesh: MeshIdentity }> {
  // Loaded here, not at import: @peculiar/x509 costs start-up time and memory (docs/performance.md), only where
  // the CA runs.
  const { CertificateAuthority } = await import('./certificateAuthority.ts');
  let ca = o.ca;
  if (!ca && o.caDir) {
    const { cert, key, roots } = readCaDir(o.caDir);
    ca = CertificateAuthority.load(o.trustDomain, cert, key, roots);
  }
  if (!ca) {
    if (!o.generate) throw new Error('the mesh CA needs --ca-dir or --ca-generate');
    ca = (await CertificateAuthority.generate(o.trustDomain)).ca;
    log.warn(
      { trustDomain: o.trustDomain },
      'mesh CA generated in memory: fine for one replica in development, not for production (use --ca-dir with the shoal-ca Secret)',
    );
  }
  let verify: TokenVerifier;
  if (o.tokensFile) verify = fileTokenVerifier(o.tokensFile);
  else if (kubeConfig) {
    let inner: TokenVerifier | null = null;
    verify = async (token) => (inner ??= kubernetesTokenVerifier(await kubeConfig(), o.tokenAudience ?? 'shoal'))(token);
  } else throw new Error('the mesh CA needs a way to check tokens: --identity-tokens FILE (static mode) or --kubernetes (TokenReview)');
  log.info({ trustDomain: o.trustDomain, caNotAfter: ca.notAfter.toISOString(), roots: ca.trustBundle.length }, 'mesh CA ready');
  return {
    service: { ca, verify, ttlMs: o.certTtlMs ?? 86_400_000 },
    mesh: { trustDomain: o.trustDomain, trustBundle: ca.trustBundle, defaultMode: o.mtlsMode ?? 'permissive' },
  };
}
