// Why a listener could not bind, in words a pod's owner can act on. The usual case in a pod: the app
// listens on the wildcard address (0.0.0.0 or ::) on the same port as one of its dependencies, and
// Linux refuses a specific-address bind (the dependency's 127.x.y.z) under a wildcard listener on the
// same port. The app and the sidecar run as different users, so SO_REUSEPORT cannot share it either.
import { readFileSync } from 'node:fs';

const LISTEN = '0A';
const WILDCARD_V4 = '00000000';
const WILDCARD_V6 = '0'.repeat(32);

/** Is a TCP socket listening on the wildcard address (IPv4 or IPv6) at this port, per /proc/net? */
export function wildcardListenerOn(port: number, procNet = '/proc/net'): 'v4' | 'v6' | null {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const [file, wildcard, family] of [
    ['tcp', WILDCARD_V4, 'v4'],
    ['tcp6', WILDCARD_V6, 'v6'],
  ] as const) {
    let text: string;
    try {
      text = readFileSync(`${procNet}/${file}`, 'latin1');
    } catch {
      continue; // not Linux, or no IPv6
    }
    for (const line of text.split('\n').slice(1)) {
      // "  0: 00000000:1F90 00000000:0000 0A ..." : local address, remote address, state.
      const f = line.trim().split(/\s+/);
      if (f.length > 3 && f[3] === LISTEN && f[1] === `${wildcard}:${hexPort}`) return family;
    }
  }
  return null;
}

/**
 * The reason a bind failed, with what to do when the cause is known: an EADDRINUSE on an address that
 * is not itself the wildcard, under a wildcard listener on the same port.
 */
export function bindFailure(err: NodeJS.ErrnoException, address: string, port: number, procNet?: string): string {
  if (err.code !== 'EADDRINUSE' || address === '0.0.0.0' || address === '::') return err.message;
  const family = wildcardListenerOn(port, procNet);
  if (family === null) return err.message;
  const any = family === 'v4' ? '0.0.0.0' : '[::]';
  return (
    `${err.message}: a process in this pod (the app?) listens on ${any}:${port}, which takes port ${port} on every address, ` +
    `so the sidecar cannot listen on ${address}:${port} for this dependency. An app listening on the wildcard address cannot ` +
    `share a port with a dependency: have it listen on specific addresses instead (127.0.0.1, where the sidecar forwards ` +
    `inbound traffic, and the pod IP if probes reach it directly), or give the dependency another port`
  );
}
