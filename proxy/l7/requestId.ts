// x-request-id for requests that come without one: a random per-process prefix and a counter in
// the UUID layout. Unique across sidecars without a random draw per request.
import { randomBytes } from 'node:crypto';

const PREFIX = randomBytes(10).toString('hex');
const HEAD = `${PREFIX.slice(0, 8)}-${PREFIX.slice(8, 12)}-4${PREFIX.slice(13, 16)}-a${PREFIX.slice(17, 20)}-`;
let counter = 0;

export function nextRequestId(): string {
  counter = counter === 0xffffffffffff ? 1 : counter + 1;
  return HEAD + counter.toString(16).padStart(12, '0');
}
