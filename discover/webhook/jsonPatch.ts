// RFC 6902 operations as the webhook emits them, with RFC 6901 escaping for keys such as "shoal.dev/inject".

export type JsonPatchOp =
  | { op: 'add'; path: string; value: unknown }
  | { op: 'replace'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'test'; path: string; value: unknown };

/** Escapes one reference token: "~" first, then "/" (RFC 6901 section 4, in reverse). */
export function escapePointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function pointer(...tokens: Array<string | number>): string {
  return tokens.map((t) => `/${escapePointerToken(String(t))}`).join('');
}

/**
 * Sets metadata entries (annotations or labels) one key at a time, creating the map when absent,
 * so keys the user already has stay untouched.
 */
export function setMetadataEntries(
  ops: JsonPatchOp[],
  current: Record<string, string> | null | undefined,
  field: 'annotations' | 'labels',
  entries: Record<string, string>,
  hasMetadata = true,
): void {
  const keys = Object.keys(entries);
  if (keys.length === 0) return;
  if (!hasMetadata) {
    ops.push({ op: 'add', path: '/metadata', value: { [field]: { ...entries } } });
    return;
  }
  if (current === undefined || current === null) {
    ops.push({ op: 'add', path: pointer('metadata', field), value: { ...entries } });
    return;
  }
  for (const key of keys) {
    if (current[key] === entries[key]) continue;
    ops.push({ op: 'add', path: pointer('metadata', field, key), value: entries[key] });
  }
}
