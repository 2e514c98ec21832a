// The identity parts of the contract: optional snapshot fields (old snapshots stay valid, bad new
// ones are refused with where), SPIFFE IDs, discover's identity flags, and the sidecar's CSR.
import t from 'tap';
import { generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { snapshotError, snapshotVersion, type Snapshot } from '../../shared/snapshot.ts';
import { parseSpiffeId, spiffeId, uriSans } from '../../shared/identity.ts';
import { identityOptionsFromFlags } from '../../discover/identity/identitySetup.ts';
import { createCsr } from '../../proxy/tls/csr.ts';

function snapshot(extra: Partial<Snapshot> = {}): Snapshot {
  const s = {
    schemaVersion: 1,
    namespace: 'default',
    app: 'web',
    pluginId: 'mesh',
    inbound: [],
    outbound: [],
    clusters: [],
    dns: [],
    status: { errors: [] },
    ...extra,
  } as Omit<Snapshot, 'version'>;
  return { ...s, version: snapshotVersion(s) } as Snapshot;
}

const ROOT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

t.test('snapshot: identity fields are optional and checked when present', async (t) => {
  t.equal(snapshotError(snapshot()), null, 'a snapshot without identity (older discover) stays valid');
  const withId = snapshot({
    identity: {
      trustDomain: 'cluster.local',
      spiffeId: 'spiffe://cluster.local/ns/default/sa/web',
      mtlsMode: 'strict',
      trustBundle: [ROOT],
    },
    inbound: [
      {
        name: 'inbound:8080',
        listenPort: 65301,
        port: 8080,
        protocol: 'http',
        mode: 'l7',
        limits: { rps: 0, burst: 0, connections: 0 },
        authz: { rules: [{ namespace: 'web', serviceAccount: '*', methods: ['GET'], prefixes: ['/'] }] },
      },
    ],
  });
  t.equal(snapshotError(withId), null);
  t.match(
    snapshotError(snapshot({ identity: { ...withId.identity!, mtlsMode: 'sometimes' as 'strict' } })),
    /invalid snapshot at \/identity\/mtlsMode/,
  );
  t.match(snapshotError(snapshot({ identity: { ...withId.identity!, trustBundle: [] } })), /invalid snapshot at \/identity\/trustBundle/);
  t.match(
    snapshotError(
      snapshot({
        inbound: [{ ...withId.inbound[0], authz: { rules: [{ namespace: 'a', serviceAccount: 'b', methods: ['get'], prefixes: [] }] } }],
      }),
    ),
    /invalid snapshot at \/inbound\/0\/authz/,
  );
});

t.test('SPIFFE IDs', async (t) => {
  const id = spiffeId({ trustDomain: 'cluster.local', namespace: 'web', serviceAccount: 'web-sa' });
  t.equal(id, 'spiffe://cluster.local/ns/web/sa/web-sa');
  t.same(parseSpiffeId(id), { trustDomain: 'cluster.local', namespace: 'web', serviceAccount: 'web-sa' });
  t.equal(parseSpiffeId('spiffe://cluster.local/ns/web/sa/'), null);
  t.equal(parseSpiffeId('spiffe://Cluster/ns/web/sa/x'), null);
  t.equal(parseSpiffeId('https://cluster.local/ns/web/sa/x'), null);
  t.same(uriSans('DNS:a, URI:spiffe://x/ns/a/sa/b, URI:spiffe://y/ns/c/sa/d'), ['spiffe://x/ns/a/sa/b', 'spiffe://y/ns/c/sa/d']);
});

t.test('discover identity flags: clear usage errors', async (t) => {
  t.equal(identityOptionsFromFlags({}), undefined, 'off without --trust-domain');
  t.throws(() => identityOptionsFromFlags({ 'ca-dir': '/x' }), /--ca-dir needs --trust-domain/);
  t.throws(
    () => identityOptionsFromFlags({ 'trust-domain': 'Bad Domain', 'ca-generate': true }),
    /--trust-domain: invalid trust domain "Bad Domain"/,
  );
  t.throws(() => identityOptionsFromFlags({ 'trust-domain': 'mesh.local' }), /needs the CA: --ca-dir DIR .* or --ca-generate/);
  t.throws(
    () => identityOptionsFromFlags({ 'trust-domain': 'mesh.local', 'ca-generate': true, static: 'x.yaml' }),
    /needs --identity-tokens FILE/,
  );
  t.throws(
    () => identityOptionsFromFlags({ 'trust-domain': 'mesh.local', 'ca-generate': true, 'cert-ttl': 10 }),
    /invalid --cert-ttl=10: at least 60 seconds/,
  );
  t.throws(
    () => identityOptionsFromFlags({ 'trust-domain': 'mesh.local', 'ca-generate': true, 'mtls-mode': 'maybe' }),
    /invalid --mtls-mode="maybe": expected PERMISSIVE or STRICT/,
  );
  t.match(identityOptionsFromFlags({ 'trust-domain': 'mesh.local', 'ca-dir': '/etc/shoal/ca', 'cert-ttl': 3600, 'mtls-mode': 'STRICT' }), {
    trustDomain: 'mesh.local',
    caDir: '/etc/shoal/ca',
    certTtlMs: 3_600_000,
    mtlsMode: 'strict',
  });
});

t.test("the sidecar's hand-made CSR is one openssl accepts", async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const dir = mkdtempSync(join(tmpdir(), 'shoal-csr-'));
  writeFileSync(join(dir, 'x.csr'), createCsr(privateKey, publicKey, 'spiffe://cluster.local/ns/web/sa/web'));
  const out = execFileSync('openssl', ['req', '-in', join(dir, 'x.csr'), '-noout', '-verify', '-text'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.match(out, /URI:spiffe:\/\/cluster\.local\/ns\/web\/sa\/web/);
  t.match(out, /ASN1 OID: prime256v1/);
});
