// Workload identity: SPIFFE IDs of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>,
// shared by discover (the CA that signs them) and the sidecar (which presents and checks them).

export interface WorkloadId {
  trustDomain: string;
  namespace: string;
  serviceAccount: string;
}

export type MtlsMode = 'permissive' | 'strict';

// Kubernetes names: DNS-1123 labels (namespaces) and subdomains (service accounts).
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
// SPIFFE trust domains: lower-case letters, digits, dots, dashes, underscores.
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;

export function trustDomainError(td: string): string | null {
  return TRUST_DOMAIN.test(td) ? null : `invalid trust domain ${JSON.stringify(td)}: expected lower-case letters, digits, '.', '-' or '_'`;
}

export function spiffeId(id: WorkloadId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a workload SPIFFE ID; null if it is not one of ours. */
export function parseSpiffeId(uri: string): WorkloadId | null {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (!m || !TRUST_DOMAIN.test(m[1]) || !LABEL.test(m[2]) || !SUBDOMAIN.test(m[3])) return null;
  return { trustDomain: m[1], namespace: m[2], serviceAccount: m[3] };
}

/** The URI SANs of a certificate as node:tls reports them ("URI:spiffe://..., DNS:x"). */
export function uriSans(subjectaltname: string | undefined): string[] {
  if (!subjectaltname) return [];
  const out: string[] = [];
  for (const part of subjectaltname.split(', ')) if (part.startsWith('URI:')) out.push(part.slice(4));
  return out;
}

export function parseMtlsMode(value: unknown, where: string): MtlsMode {
  const v = String(value).trim().toLowerCase();
  if (v === 'permissive' || v === 'strict') return v;
  throw new Error(`${where}: expected PERMISSIVE or STRICT`);
}
