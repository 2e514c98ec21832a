// Gateway API route filters (HTTPRoute/GRPCRoute rules in the snapshot, shared/snapshot.ts Route), compiled
// once per snapshot and executed the same way by every L7 path: the HTTP/1.1 fast path (proxy/http/h1), node:http
// with undici (proxy/http/undiciExchange.ts, upgrade.ts) and HTTP/2 / gRPC (proxy/h2). Protocol-neutral on purpose:
// header lists are flat [name, value, name, value, ...] arrays or plain records, paths are strings.
import type { HeaderModifier, Mirror, PathModifier, RequestRedirect, Route, UrlRewrite } from '../../shared/snapshot.ts';

/** Header names no filter may touch: framing and connection management stay the sidecar's. */
const PROTECTED = new Set([
  'connection',
  'content-length',
  'transfer-encoding',
  'keep-alive',
  'upgrade',
  'te',
  'proxy-connection',
  'trailer',
]);

/** A HeaderModifier with lower-cased names, protected and pseudo-header names left out. */
export class CompiledHeaderModifier {
  readonly setNames: string[] = [];
  readonly setValues: string[] = [];
  readonly addNames: string[] = [];
  readonly addValues: string[] = [];
  /** Lower-cased: every name set or removed (set replaces every earlier value). */
  readonly drop: Set<string> = new Set();

  constructor(mods: readonly (HeaderModifier | undefined)[]) {
    // Route then backend: each modifier applies to what the one before it left.
    for (const m of mods) {
      if (m === undefined) continue;
      for (const name of m.remove ?? []) {
        const n = name.toLowerCase();
        if (!allowed(n)) continue;
        this.drop.add(n);
        this.forget(n);
      }
      for (const h of m.set ?? []) {
        const n = h.name.toLowerCase();
        if (!allowed(n)) continue;
        this.drop.add(n);
        this.forget(n);
        this.setNames.push(n);
        this.setValues.push(h.value);
      }
      for (const h of m.add ?? []) {
        const n = h.name.toLowerCase();
        if (!allowed(n)) continue;
        this.addNames.push(n);
        this.addValues.push(h.value);
      }
    }
  }

  get empty(): boolean {
    return this.drop.size === 0 && this.addNames.length === 0;
  }

  /** A later set or remove of the same name cancels what earlier modifiers set or added. */
  private forget(n: string): void {
    for (let i = this.setNames.length - 1; i >= 0; i--)
      if (this.setNames[i] === n) {
        this.setNames.splice(i, 1);
        this.setValues.splice(i, 1);
      }
    for (let i = this.addNames.length - 1; i >= 0; i--)
      if (this.addNames[i] === n) {
        this.addNames.splice(i, 1);
        this.addValues.splice(i, 1);
      }
  }

  /** A flat [name, value, ...] list with the modifier applied: names set or removed dropped, then set, then added. */
  applyList(list: readonly string[]): string[] {
    const out: string[] = [];
    for (let i = 0; i < list.length; i += 2) {
      if (this.drop.size > 0 && this.drop.has(list[i].toLowerCase())) continue;
      out.push(list[i], list[i + 1]);
    }
    for (let i = 0; i < this.setNames.length; i++) out.push(this.setNames[i], this.setValues[i]);
    for (let i = 0; i < this.addNames.length; i++) out.push(this.addNames[i], this.addValues[i]);
    return out;
  }

  /** The same on a record of lower-case names (HTTP/2 headers): add appends a value (an array when there is one already). */
  applyRecord(h: Record<string, unknown>): void {
    for (const n of this.drop) delete h[n];
    for (let i = 0; i < this.setNames.length; i++) h[this.setNames[i]] = this.setValues[i];
    for (let i = 0; i < this.addNames.length; i++) {
      const n = this.addNames[i];
      const v = h[n];
      if (v === undefined) h[n] = this.addValues[i];
      else if (Array.isArray(v)) v.push(this.addValues[i]);
      else h[n] = [String(v), this.addValues[i]];
    }
  }

  /**
   * The same on an HTTP/1.1 head block: a status or request line, then "name: value" lines, ending in
   * the blank line (as the fast path builds and reads heads).
   */
  applyHead(head: string): string {
    const lines = head.split('\r\n');
    let out = lines[0];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      if (line === '') continue;
      if (this.drop.size > 0) {
        const colon = line.indexOf(':');
        if (colon > 0 && this.drop.has(line.slice(0, colon).toLowerCase())) continue;
      }
      out += `\r\n${line}`;
    }
    for (let i = 0; i < this.setNames.length; i++) out += `\r\n${this.setNames[i]}: ${this.setValues[i]}`;
    for (let i = 0; i < this.addNames.length; i++) out += `\r\n${this.addNames[i]}: ${this.addValues[i]}`;
    return `${out}\r\n\r\n`;
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Header values as llhttp takes them: HTAB, SP, visible ASCII, obs-text; never CR, LF, NUL or another control.
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
// A path or host the sidecar writes into a request line or a Location: visible ASCII only.
const VISIBLE = /^[\x21-\x7e]*$/;

/**
 * Why a route's filters cannot be executed safely (a header name that is not a token, a value, path or host
 * with a control byte or a space: it would break or smuggle the head the sidecar writes), or null.
 */
export function unsafeFilters(r: Route): string | null {
  const mods: [string, HeaderModifier | undefined][] = [
    ['requestHeaders', r.requestHeaders],
    ['responseHeaders', r.responseHeaders],
  ];
  for (const b of r.backends)
    mods.push([`backend ${b.cluster} requestHeaders`, b.requestHeaders], [`backend ${b.cluster} responseHeaders`, b.responseHeaders]);
  for (const [where, m] of mods) {
    if (m === undefined) continue;
    for (const h of [...(m.set ?? []), ...(m.add ?? [])]) {
      if (!TOKEN.test(h.name)) return `${where}: header name ${JSON.stringify(h.name)} is not a token`;
      if (!FIELD_VALUE.test(h.value)) return `${where}: the value of ${h.name} has a byte a header value cannot hold`;
    }
    for (const n of m.remove ?? []) if (!TOKEN.test(n)) return `${where}: header name ${JSON.stringify(n)} is not a token`;
  }
  const checks: [string, string | undefined][] = [
    ['rewrite hostname', r.rewrite?.hostname],
    ['rewrite path', r.rewrite?.path?.value],
    ['redirect scheme', r.redirect?.scheme],
    ['redirect hostname', r.redirect?.hostname],
    ['redirect path', r.redirect?.path?.value],
  ];
  for (const [where, v] of checks)
    if (v !== undefined && !VISIBLE.test(v)) return `${where} ${JSON.stringify(v)} has a space or a control byte`;
  if (r.redirect?.scheme !== undefined && !/^[A-Za-z][A-Za-z0-9+.-]*$/.test(r.redirect.scheme))
    return `redirect scheme ${JSON.stringify(r.redirect.scheme)} is not a URI scheme`;
  return null;
}

function allowed(lowerName: string): boolean {
  return lowerName !== '' && lowerName.charCodeAt(0) !== 0x3a /* : */ && !PROTECTED.has(lowerName);
}

/** Splits a request-target into path and query ("?..." or ""). */
export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q) };
}

/**
 * ReplacePrefixMatch: the part of path that prefix matched (whole segments; a trailing "/" of either is
 * ignored) becomes replacement. "/foo/bar" with prefix "/foo" and replacement "/xyz" is "/xyz/bar";
 * replacement "/" or "" strips the prefix ("/foo/bar" -> "/bar", "/foo" -> "/").
 */
export function replacePrefix(path: string, prefix: string, replacement: string): string {
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  let rest = path.startsWith(p) ? path.slice(p.length) : path;
  // Prefix "/" matched the whole of "/": nothing is left to append.
  if (p === '' && rest === '/') rest = '';
  const r = replacement.endsWith('/') ? replacement.slice(0, -1) : replacement;
  let out = r + rest;
  if (out === '') out = '/';
  else if (out.charCodeAt(0) !== 47 /* / */) out = `/${out}`;
  return out;
}

/** A path modifier applied to a request-target (query kept); matchedPrefix: the route's PathPrefix, or "/" . */
export function modifyPath(target: string, mod: PathModifier, matchedPrefix: string): string {
  const { path, query } = splitTarget(target);
  const p = mod.type === 'ReplaceFullPath' ? mod.value : replacePrefix(path, matchedPrefix, mod.value);
  return p + query;
}

/** What a redirect needs to know of the request. */
export interface RedirectRequest {
  /** "http" (the sidecar's listeners speak plain HTTP to the app). */
  scheme: string;
  /** The Host header (or :authority) as sent: host and optional port. */
  authority: string;
  /** The request-target (path and query). */
  target: string;
}

const WELL_KNOWN: Record<string, number> = { http: 80, https: 443 };

/**
 * The Location of a RequestRedirect (Gateway API HTTPRequestRedirectFilter). Absent scheme, hostname and
 * path keep the request's. Port: the filter's; else the well-known port of a scheme the filter sets
 * (http 80, https 443); else the port the request was sent to (its Host, or the scheme's default). A port
 * that is the scheme's well-known one is left out.
 */
export function redirectLocation(r: RequestRedirect, req: RedirectRequest, matchedPrefix: string): string {
  const scheme = r.scheme ?? req.scheme;
  const { host: reqHost, port: reqPort } = splitAuthority(req.authority);
  const host = r.hostname ?? reqHost;
  let port: number;
  if (r.port !== undefined) port = r.port;
  else if (r.scheme !== undefined && WELL_KNOWN[r.scheme] !== undefined) port = WELL_KNOWN[r.scheme];
  else port = reqPort ?? WELL_KNOWN[req.scheme] ?? 80;
  const target = r.path === undefined ? req.target : modifyPath(req.target, r.path, matchedPrefix);
  const showPort = WELL_KNOWN[scheme] !== port;
  return `${scheme}://${host}${showPort ? `:${port}` : ''}${target}`;
}

/** "api.example:8080" -> host and port; IPv6 literals keep their brackets; no port: undefined. */
export function splitAuthority(authority: string): { host: string; port: number | undefined } {
  const colon = authority.lastIndexOf(':');
  if (colon > 0 && authority.indexOf(']') < colon) {
    const port = Number(authority.slice(colon + 1));
    if (Number.isInteger(port) && port > 0 && port < 65536) return { host: authority.slice(0, colon), port };
    return { host: authority.slice(0, colon), port: undefined };
  }
  return { host: authority, port: undefined };
}

/** The request a URLRewrite leaves: new target and Host (null: unchanged). */
export function rewriteTarget(rw: UrlRewrite, target: string, matchedPrefix: string): string {
  return rw.path === undefined ? target : modifyPath(target, rw.path, matchedPrefix);
}

/**
 * Rewrites the Host (hostname only: the port the request was sent to is kept, as the Host names the
 * service the app dialled).
 */
export function rewriteAuthority(rw: UrlRewrite, authority: string): string {
  if (rw.hostname === undefined) return authority;
  const { port } = splitAuthority(authority);
  return port === undefined ? rw.hostname : `${rw.hostname}:${port}`;
}

/** Whether this request is mirrored: percent (0..100, fractions allowed) of requests; absent: all. */
export function sampled(m: Mirror): boolean {
  const p = m.percent ?? 100;
  return p >= 100 || (p > 0 && Math.random() * 100 < p);
}

/** The reason phrase of a redirect status. */
export const REDIRECT_REASON: Record<number, string> = {
  301: 'Moved Permanently',
  302: 'Found',
  303: 'See Other',
  307: 'Temporary Redirect',
  308: 'Permanent Redirect',
};

/** A request body is copied for mirrors up to this many bytes; a longer one is not mirrored (docs/proxy.md). */
export const MIRROR_BODY_LIMIT = 64 * 1024;

/** The decoded value of a query parameter (the first when repeated), or null; query without the "?". */
export function queryParam(query: string, name: string): string | null {
  let i = 0;
  const n = query.length;
  while (i <= n) {
    let amp = query.indexOf('&', i);
    if (amp < 0) amp = n;
    const eq = query.indexOf('=', i);
    const nameEnd = eq >= 0 && eq < amp ? eq : amp;
    if (nameEnd > i) {
      const raw = query.slice(i, nameEnd);
      if (
        (raw.length === name.length && raw === name) ||
        (raw.length !== name.length && (raw.includes('%') || raw.includes('+')) && decode(raw) === name)
      ) {
        return nameEnd === amp ? '' : decode(query.slice(nameEnd + 1, amp));
      }
    }
    i = amp + 1;
  }
  return null;
}

/** application/x-www-form-urlencoded decoding, as URLSearchParams: "+" is a space, bad escapes stay as they are. */
function decode(s: string): string {
  const t = s.includes('+') ? s.replaceAll('+', ' ') : s;
  if (!t.includes('%')) return t;
  try {
    return decodeURIComponent(t);
  } catch {
    return t;
  }
}
