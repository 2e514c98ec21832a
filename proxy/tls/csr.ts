// A PKCS#10 certificate request for an EC P-256 key with one URI SAN, DER-encoded by hand: the
// sidecar needs only this one shape, and an X.509 library would cost it about 20 MB of RSS.
import { sign, type KeyObject } from 'node:crypto';

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, content]);
}
const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const OID_EXTENSION_REQUEST = Buffer.from('06092a864886f70d01090e', 'hex');
const OID_SUBJECT_ALT_NAME = Buffer.from('0603551d11', 'hex');
const OID_ECDSA_SHA256 = Buffer.from('06082a8648ce3d040302', 'hex');

/** PEM CSR for `uri`, signed with the private key (which never leaves this process). */
export function createCsr(privateKey: KeyObject, publicKey: KeyObject, uri: string): string {
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const generalNames = seq(tlv(0x86, Buffer.from(uri, 'ascii')));
  const extensions = seq(seq(OID_SUBJECT_ALT_NAME, tlv(0x04, generalNames)));
  const attribute = seq(OID_EXTENSION_REQUEST, tlv(0x31, extensions));
  const info = seq(Buffer.from([0x02, 0x01, 0x00]), seq(), spki, tlv(0xa0, attribute));
  const signature = sign('sha256', info, privateKey);
  const der = seq(info, seq(OID_ECDSA_SHA256), tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const b64 = der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}
