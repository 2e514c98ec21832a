// Hop-by-hop headers (RFC 9110 7.6.1) and the x-forwarded-* / x-request-id a proxy sets. Names are
// compared by length first, so most headers are passed on without being lower-cased.

export const Hop = { Keep: 0, Drop: 1, ForwardedFor: 2, ForwardedProto: 3, RequestId: 4 } as const;
export type Hop = (typeof Hop)[keyof typeof Hop];

/** What to do with one header name on the way through. */
export function classify(name: string, request: boolean): Hop {
  switch (name.length) {
    case 2:
      return name.toLowerCase() === 'te' ? Hop.Drop : Hop.Keep;
    case 6:
      return request && name.toLowerCase() === 'expect' ? Hop.Drop : Hop.Keep; // the sidecar answered 100-continue itself
    case 7: {
      const l = name.toLowerCase();
      return l === 'trailer' || l === 'upgrade' ? Hop.Drop : Hop.Keep;
    }
    case 10: {
      const l = name.toLowerCase();
      return l === 'connection' || l === 'keep-alive' ? Hop.Drop : Hop.Keep;
    }
    case 12:
      return request && name.toLowerCase() === 'x-request-id' ? Hop.RequestId : Hop.Keep;
    case 15:
      return request && name.toLowerCase() === 'x-forwarded-for' ? Hop.ForwardedFor : Hop.Keep;
    case 16:
      return name.toLowerCase() === 'proxy-connection' ? Hop.Drop : Hop.Keep;
    case 17: {
      const l = name.toLowerCase();
      if (l === 'transfer-encoding') return Hop.Drop;
      return request && l === 'x-forwarded-proto' ? Hop.ForwardedProto : Hop.Keep;
    }
    // Set by the sidecar from the verified mTLS peer only (proxy/tls): a caller's own value is dropped.
    case 23:
      return request && name.toLowerCase() === 'x-forwarded-client-cert' ? Hop.Drop : Hop.Keep;
    default:
      return Hop.Keep;
  }
}

/** Extra header names a Connection header lists (beyond keep-alive/close), lower-cased; null for none. */
export function connectionListed(value: string | undefined): string[] | null {
  if (value === undefined) return null;
  const v = value.length <= 10 ? value.toLowerCase() : '';
  if (v === 'keep-alive' || v === 'close' || v === 'upgrade') return null;
  let out: string[] | null = null;
  for (const t of value.split(',')) {
    const n = t.trim().toLowerCase();
    if (n === '' || n === 'keep-alive' || n === 'close' || n === 'upgrade') continue;
    (out ??= []).push(n);
  }
  return out;
}
