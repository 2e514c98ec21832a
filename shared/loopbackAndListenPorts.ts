// The loopback addresses (127.x.y.z, one per service) and the sidecar listen ports (65301-65400) that
// discover and the injector allocate, by deterministic rules: the same inputs give the same addresses
// and ports on every replica, whatever the order they arrive in.
import { createHash } from 'node:crypto';

export const LISTEN_PORT_MIN = 65301;
export const LISTEN_PORT_MAX = 65400;
const LISTEN_PORT_SLOTS = LISTEN_PORT_MAX - LISTEN_PORT_MIN + 1;

function hashedLoopback(identity: string, attempt: number): string {
  const digest = createHash('sha256')
    .update(attempt === 0 ? identity : `${identity}#${attempt}`)
    .digest();
  const a = digest[0];
  const b = digest[1];
  const c = digest[2];
  return `127.${a}.${b}.${c}`;
}

function reserved(address: string): boolean {
  // 127.0.0.1 is the app's own loopback; network and broadcast forms confuse some resolvers.
  return (
    address === '127.0.0.1' ||
    address === '127.0.0.0' ||
    address === '127.255.255.255' ||
    address.endsWith('.0') ||
    address.endsWith('.255')
  );
}

export function isLoopbackAddress(address: string): boolean {
  const parts = address.split('.');
  if (parts.length !== 4 || parts[0] !== '127') return false;
  return parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

/**
 * Gives every identity (e.g. "default/api") its own loopback address in 127.0.0.0/8, never 127.0.0.1.
 * The address comes from a hash of the identity, so it does not move when other identities come and go.
 * Pinned addresses are kept as given. On the rare hash collision the identities are taken in sorted
 * order and the later one probes further, so every replica resolves the collision the same way.
 */
export function allocateLoopbacks(identities: Iterable<string>, pinned: ReadonlyMap<string, string> = new Map()): Map<string, string> {
  const result = new Map<string, string>();
  const taken = new Set<string>();
  for (const [identity, address] of pinned) {
    result.set(identity, address);
    taken.add(address);
  }
  const sorted = [...new Set(identities)].filter((i) => !pinned.has(i)).sort();
  for (const identity of sorted) {
    for (let attempt = 0; ; attempt++) {
      const address = hashedLoopback(identity, attempt);
      if (reserved(address) || taken.has(address)) continue;
      result.set(identity, address);
      taken.add(address);
      break;
    }
  }
  return result;
}

/** The preferred listen port of a container port: 65300 + (port mod 100), with 0 mapped to 65400. */
export function preferredListenPort(port: number): number {
  const slot = port % 100;
  return 65300 + (slot === 0 ? 100 : slot);
}

/**
 * Maps each container port to its inbound listen port in 65301-65400. Explicit choices win; the other
 * ports, in ascending order, take their preferred port or the next free one (wrapping around).
 */
export function allocateListenPorts(ports: Iterable<number>, explicit: ReadonlyMap<number, number> = new Map()): Map<number, number> {
  const result = new Map<number, number>();
  const taken = new Set<number>();
  for (const [port, listen] of explicit) {
    if (listen < LISTEN_PORT_MIN || listen > LISTEN_PORT_MAX) {
      throw new RangeError(`listen_port ${listen} for port ${port} is outside ${LISTEN_PORT_MIN}-${LISTEN_PORT_MAX}`);
    }
    if (taken.has(listen)) throw new RangeError(`listen_port ${listen} is given to two ports`);
    result.set(port, listen);
    taken.add(listen);
  }
  const rest = [...new Set(ports)].filter((p) => !explicit.has(p)).sort((a, b) => a - b);
  if (taken.size + rest.length > LISTEN_PORT_SLOTS) {
    throw new RangeError(`${taken.size + rest.length} inbound ports do not fit in ${LISTEN_PORT_SLOTS} listen ports`);
  }
  for (const port of rest) {
    let listen = preferredListenPort(port);
    while (taken.has(listen)) listen = listen === LISTEN_PORT_MAX ? LISTEN_PORT_MIN : listen + 1;
    result.set(port, listen);
    taken.add(listen);
  }
  return result;
}
