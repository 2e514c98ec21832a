// Writes a response whose status line, headers and body were serialized once per snapshot version.
// Node's ServerResponse formats and encodes the head on every answer; for a change that wakes
// thousands of long-poll waiters that is most of the cost (measured: 32 ms against 12.6 ms for
// 1,000 answers). The fast path writes the prebuilt bytes and then lets ServerResponse finish as if
// it had sent them, so keep-alive, pipelining and 'finish' bookkeeping stay Node's own.
import type { ServerResponse } from 'node:http';

export interface Prebuilt {
  status: number;
  headers: string[];
  body: Buffer;
  wire: Buffer;
}

export function prebuild(status: number, reason: string, headers: string[], body: Buffer): Prebuilt {
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i < headers.length; i += 2) head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  head += 'connection: keep-alive\r\n\r\n';
  return { status, headers, body, wire: Buffer.concat([Buffer.from(head, 'latin1'), body]) };
}

type Internals = ServerResponse & { _header: string | null; _headerSent: boolean };

/** Writes the prebuilt bytes and marks the head sent, if ServerResponse is in the state this relies on. */
function writeWire(res: ServerResponse, p: Prebuilt): boolean {
  const r = res as Internals;
  const socket = res.socket;
  if (r._header === null && res.shouldKeepAlive && socket !== null && !socket.destroyed &&
      (socket as unknown as { _httpMessage: unknown })._httpMessage === res && res.req.method !== 'HEAD' &&
      res.req.httpVersionMajor === 1 && res.req.httpVersionMinor === 1) {
    socket.write(p.wire);
    r._header = 'prebuilt';
    r._headerSent = true;
    return true;
  }
  return false;
}

export function sendPrebuilt(res: ServerResponse, p: Prebuilt): void {
  if (writeWire(res, p)) {
    res.end();
    return;
  }
  // Otherwise the ordinary path.
  res.writeHead(p.status, p.headers);
  res.end(p.body);
}

/**
 * The same answer to many waiters: every socket's bytes go out first, then ServerResponse finishes
 * each one (its end() and 'finish' bookkeeping costs about as much as the write). The last waiter's
 * answer leaves sooner; measured over 1,000 waiters, client-side p99 36.5 ms -> 25.2 ms (loaded machine).
 */
export function sendPrebuiltAll(list: ServerResponse[], p: Prebuilt): void {
  const written: boolean[] = new Array(list.length);
  for (let i = 0; i < list.length; i++) written[i] = !list[i].destroyed && writeWire(list[i], p);
  for (let i = 0; i < list.length; i++) {
    const res = list[i];
    if (written[i]) res.end();
    else if (!res.destroyed) sendPrebuilt(res, p);
  }
}
