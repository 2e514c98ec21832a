// The mesh certificate authority: holds the CA key (from the shoal-ca Secret, or generated for a
// dev run) and signs short-lived workload certificates whose only name is a SPIFFE URI SAN. It signs
// what a verified token entitles the caller to, never what the CSR merely asks for.
import 'reflect-metadata'; // @peculiar/x509's dependency injection (tsyringe) needs the Reflect metadata API
import { createPrivateKey, randomBytes, webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import * as x509 from '@peculiar/x509';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
type EcdsaParams = webcrypto.EcdsaParams;
type EcKeyImportParams = webcrypto.EcKeyImportParams;
type RsaHashedImportParams = webcrypto.RsaHashedImportParams;
type Algorithm = webcrypto.Algorithm;
type EcKeyAlgorithm = webcrypto.EcKeyAlgorithm;
import { spiffeId, trustDomainError, type WorkloadId } from '../../shared/identity.ts';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export class CsrError extends Error {
  override name = 'CsrError';
}

export interface IssuedCertificate {
  /** PEM: the workload certificate, then the CA certificate. */
  certificate: string;
  spiffeId: string;
  notAfter: Date;
}

const MIN_TTL_MS = 10_000;
const CLOCK_SKEW_MS = 60_000;

function signingAlgorithmOf(key: CryptoKey): EcdsaParams | Algorithm {
  if (key.algorithm.name === 'ECDSA') {
    const curve = (key.algorithm as EcKeyAlgorithm).namedCurve;
    return { name: 'ECDSA', hash: curve === 'P-384' ? 'SHA-384' : 'SHA-256' } as EcdsaParams;
  }
  return { name: 'RSASSA-PKCS1-v1_5' };
}

function importParams(pem: string): { algorithm: EcKeyImportParams | RsaHashedImportParams } {
  const key = createPrivateKey(pem);
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') {
    const curve = details.namedCurve === 'prime256v1' ? 'P-256' : details.namedCurve === 'secp384r1' ? 'P-384' : null;
    if (!curve) throw new Error(`CA key: unsupported curve ${details.namedCurve}; use P-256 or P-384`);
    return { algorithm: { name: 'ECDSA', namedCurve: curve } };
  }
  if (key.asymmetricKeyType === 'rsa') return { algorithm: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
  throw new Error(`CA key: unsupported key type ${key.asymmetricKeyType}; use EC (P-256, P-384) or RSA`);
}

function randomSerial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive
  return b.toString('hex');
}

export class CertificateAuthority {
  readonly trustDomain: string;
  readonly certPem: string;
  /** Roots sidecars trust: this CA's first, then any supplied for a rotation. */
  readonly trustBundle: string[];
  private readonly cert: x509.X509Certificate;
  private readonly key: CryptoKey;
  /** Certificates signed since start (also what the tests check stays put on a refusal). */
  issued = 0;

  private constructor(trustDomain: string, cert: x509.X509Certificate, key: CryptoKey, extraRoots: string[]) {
    this.trustDomain = trustDomain;
    this.cert = cert;
    this.key = key;
    this.certPem = `${cert.toString('pem').trim()}\n`;
    this.trustBundle = [this.certPem, ...extraRoots.map((r) => `${r.trim()}\n`).filter((r) => r !== this.certPem)];
  }

  /** A fresh self-signed root (dev runs, tests, and the install-time Secret). keyPem is what to store in the Secret. */
  static async generate(trustDomain: string, validDays = 3650): Promise<{ ca: CertificateAuthority; keyPem: string }> {
    const err = trustDomainError(trustDomain);
    if (err) throw new Error(err);
    const alg = { name: 'ECDSA', namedCurve: 'P-256' };
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ O: [trustDomain] }, { CN: ['shoal mesh root CA'] }],
      notBefore: new Date(Date.now() - CLOCK_SKEW_MS),
      notAfter: new Date(Date.now() + validDays * 86_400_000),
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as EcdsaParams,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${trustDomain}` }]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
    const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8
      .toString('base64')
      .replace(/(.{64})/g, '$1\n')
      .replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
    const signer = createPrivateKey(keyPem).toCryptoKey(alg, false, ['sign']) as unknown as CryptoKey;
    return { ca: new CertificateAuthority(trustDomain, cert, signer, []), keyPem };
  }

  /** From the Secret's tls.crt / tls.key (and ca.crt: extra roots to keep trusting during a rotation). */
  static load(trustDomain: string, certPem: string, keyPem: string, extraRootsPem = ''): CertificateAuthority {
    const err = trustDomainError(trustDomain);
    if (err) throw new Error(err);
    let nodeCert: NodeX509;
    try {
      nodeCert = new NodeX509(certPem);
    } catch (e) {
      throw new Error(`CA certificate: not a PEM certificate (${(e as Error).message})`, { cause: e });
    }
    if (!nodeCert.ca) throw new Error('CA certificate: basicConstraints does not say CA:TRUE');
    let priv;
    try {
      priv = createPrivateKey(keyPem);
    } catch (e) {
      throw new Error(`CA key: not a PEM private key (${(e as Error).message})`, { cause: e });
    }
    if (!nodeCert.checkPrivateKey(priv)) throw new Error('CA key does not match the CA certificate');
    if (new Date(nodeCert.validTo).getTime() < Date.now()) throw new Error(`CA certificate expired on ${nodeCert.validTo}`);
    const { algorithm } = importParams(keyPem);
    const signer = priv.toCryptoKey(algorithm, false, ['sign']) as unknown as CryptoKey;
    const extra = extraRootsPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    return new CertificateAuthority(trustDomain, new x509.X509Certificate(certPem), signer, extra);
  }

  get notAfter(): Date {
    return this.cert.notAfter;
  }

  /**
   * Checks the CSR (PEM PKCS#10, self-signature, key type, requested names) and signs a certificate
   * for `who`. Throws CsrError, signing nothing, when the CSR is malformed or asks for another identity.
   */
  /**
   * The leaf's authorityKeyIdentifier is the root's own subjectKeyIdentifier when it has one (RFC 5280
   * 4.2.1.1): a root made elsewhere (Helm's genCA, Go 1.25+) derives it from a truncated SHA-256, not
   * the SHA-1 of the key, and OpenSSL will not chain a leaf whose key ids disagree.
   */
  private async authorityKeyId(): Promise<x509.AuthorityKeyIdentifierExtension> {
    const ski = this.cert.getExtension(x509.SubjectKeyIdentifierExtension);
    return ski ? new x509.AuthorityKeyIdentifierExtension(ski.keyId) : x509.AuthorityKeyIdentifierExtension.create(this.cert.publicKey);
  }

  async sign(csrPem: string, who: Omit<WorkloadId, 'trustDomain'>, ttlMs: number): Promise<IssuedCertificate> {
    const want = spiffeId({ trustDomain: this.trustDomain, ...who });
    let csr: x509.Pkcs10CertificateRequest;
    try {
      if (typeof csrPem !== 'string' || !csrPem.includes('-----BEGIN CERTIFICATE REQUEST-----'))
        throw new Error('no PEM block "CERTIFICATE REQUEST"');
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (e) {
      throw new CsrError(`bad CSR: not a PEM PKCS#10 certificate request (${(e as Error).message})`);
    }
    let ok: boolean;
    try {
      ok = await csr.verify();
    } catch (e) {
      throw new CsrError(`bad CSR: cannot check its signature (${(e as Error).message})`);
    }
    if (!ok) throw new CsrError('bad CSR: its signature does not match its public key (proof of possession failed)');
    const alg = csr.publicKey.algorithm as Algorithm & { namedCurve?: string; modulusLength?: number };
    if (alg.name === 'ECDSA') {
      if (alg.namedCurve !== 'P-256' && alg.namedCurve !== 'P-384')
        throw new CsrError(`bad CSR: EC curve ${alg.namedCurve} not accepted; use P-256 or P-384`);
    } else if (alg.name === 'RSASSA-PKCS1-v1_5' || alg.name === 'RSA-PSS') {
      const bits = alg.modulusLength ?? 0;
      if (bits < 2048) throw new CsrError(`bad CSR: RSA key of ${bits} bits; at least 2048 needed`);
    } else {
      throw new CsrError(`bad CSR: key type ${alg.name} not accepted; use ECDSA P-256`);
    }
    for (const ext of csr.extensions) {
      if (!(ext instanceof x509.SubjectAlternativeNameExtension)) continue;
      for (const n of ext.names.items) {
        if (n.type !== 'url')
          throw new CsrError(
            `bad CSR: asks for a ${n.type} name ${JSON.stringify(n.value)}; workload certificates carry only their SPIFFE ID`,
          );
        if (n.value !== want) throw new CsrError(`CSR asks for ${n.value}, but the token is for ${want}: refused`);
      }
    }
    const now = Date.now();
    const notAfter = new Date(Math.min(now + Math.max(ttlMs, MIN_TTL_MS), this.cert.notAfter.getTime()));
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [{ O: [this.trustDomain] }],
      issuer: this.cert.subjectName.toString(),
      notBefore: new Date(now - CLOCK_SKEW_MS),
      notAfter,
      publicKey: csr.publicKey,
      signingKey: this.key,
      signingAlgorithm: signingAlgorithmOf(this.key),
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: want }], true),
        await this.authorityKeyId(),
      ],
    });
    this.issued++;
    return { certificate: `${cert.toString('pem').trim()}\n${this.certPem}`, spiffeId: want, notAfter };
  }
}
