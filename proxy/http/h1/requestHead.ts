// The request head as the fast path reads it. Anything it is not sure about (bodies, upgrades,
// odd framing, HTTP/1.0) is left to node:http, which then owns the connection.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

export interface RequestHead {
  method: string;
  path: string;
  /** Header names and values as sent, flat: [name, value, name, value, ...]. */
  raw: string[];
  host: string | undefined;
  /** The client asked to close after this exchange. */
  close: boolean;
  /** Extra names the client's Connection header lists (lower case), or null. */
  listed: string[] | null;
}

/** Parses the head in buf[0, end) (end: index of the blank line). null: leave it to node:http. */
export function parseRequestHead(buf: Buffer, end: number): RequestHead | null {
  const text = buf.toString('latin1', 0, end);
  let lineEnd = text.indexOf('\r\n');
  if (lineEnd < 0) lineEnd = text.length;
  const first = text.slice(0, lineEnd);
  const sp1 = first.indexOf(' ');
  const sp2 = first.lastIndexOf(' ');
  if (sp1 <= 0 || sp2 <= sp1) return null;
  if (first.slice(sp2 + 1) !== 'HTTP/1.1') return null;
  const method = first.slice(0, sp1);
  const path = first.slice(sp1 + 1, sp2);
  if (!TOKEN.test(method) || method === 'CONNECT' || path.charCodeAt(0) !== 47 /* / */ || path.includes(' ')) return null;
  const raw: string[] = [];
  let host: string | undefined;
  let close = false;
  let listed: string[] | null = null;
  let pos = lineEnd + 2;
  while (pos < text.length) {
    let next = text.indexOf('\r\n', pos);
    if (next < 0) next = text.length;
    const colon = text.indexOf(':', pos);
    if (colon <= pos || colon > next) return null;
    const name = text.slice(pos, colon);
    const value = text.slice(colon + 1, next).trim();
    pos = next + 2;
    if (!TOKEN.test(name) || BAD_VALUE.test(value)) return null;
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') {
          if (host !== undefined) return null;
          host = value;
        }
        break;
      case 6:
        if (name.toLowerCase() === 'expect') return null;
        break;
      case 7:
        if (name.toLowerCase() === 'upgrade') return null;
        break;
      case 10:
        if (name.toLowerCase() === 'connection') {
          const v = value.toLowerCase();
          if (v === 'close') close = true;
          else if (v !== 'keep-alive') {
            for (const t of v.split(',')) {
              const n = t.trim();
              if (n === 'close') close = true;
              else if (n === 'upgrade') return null;
              else if (n !== '' && n !== 'keep-alive') (listed ??= []).push(n);
            }
          }
        }
        break;
      case 14:
        if (name.toLowerCase() === 'content-length' && value !== '0') return null;
        break;
      case 17:
        if (name.toLowerCase() === 'transfer-encoding') return null;
        break;
    }
    raw.push(name, value);
  }
  return { method, path, raw, host, close, listed };
}

/** The value of one header (lower-case name) in a flat raw list. */
export function rawHeader(raw: string[], lowerName: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i].length === lowerName.length && raw[i].toLowerCase() === lowerName) return raw[i + 1];
  }
  return undefined;
}
