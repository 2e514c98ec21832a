// Loads a topology file's YAML one list item at a time, reusing the items an earlier load parsed.
//
// An edit to a topology file usually changes one line; parsing the whole file again was most of an
// edit's time before the answers go out (measured: docs/performance.md, "Choices in the code,
// measured"). The file is cut where YAML's own structure cuts it: top-level keys at column 0, and the
// items of a top-level block sequence at the sequence's indentation. Each item is parsed on its
// own, and an item whose text is unchanged comes back as the very same object.
//
// Only plain block YAML is cut. Anything that could tie one piece to another or hide structure
// (anchors and aliases, tags, directives, document markers, complex keys, tabs, merge keys, a root
// that is not a mapping of simple keys, a key given twice) makes this return null, and the caller
// parses the whole text as before; so does any piece that fails to parse, so errors always come
// from the whole-file parse, with its line numbers.
import { load } from 'js-yaml';

/** Each piece's text → what it parsed to. */
export type ChunkCache = Map<string, unknown>;

// What makes a file fall back to the whole-text parse: anchors, aliases, tags and tabs anywhere
// (even inside a string, to keep the test simple), directives and document markers.
const TIED = /[&*!\t]|^(%|---|\.\.\.)/m;
const TOP_KEY = /^([A-Za-z_][A-Za-z0-9_.-]*)[ ]*:(?:[ ]+(.*))?$/;

/** Lines [from, to) as the text had them, with the line break after the last one if there was one. */
function slice(lines: string[], from: number, to: number): string {
  return lines.slice(from, to).join('\n') + (to < lines.length ? '\n' : '');
}

function parsePiece(text: string, prev: ChunkCache | undefined, next: ChunkCache): unknown {
  if (next.has(text)) return next.get(text);
  const value = prev?.has(text) ? prev.get(text) : load(text);
  next.set(text, value);
  return value;
}

/** Whether a line holds nothing for YAML: blank or a comment. */
function empty(line: string): boolean {
  const t = line.trimStart();
  return t === '' || t[0] === '#';
}

/**
 * The document `text` holds, built from its pieces; null when the text is not plain enough to
 * cut or a piece does not parse (parse the whole text then). `next` receives this text's pieces.
 */
export function loadYamlChunked(text: string, prev: ChunkCache | undefined, next: ChunkCache): Record<string, unknown> | null {
  if (TIED.test(text)) return null;
  const lines = text.split('\n');
  const doc: Record<string, unknown> = {};
  let i = 0;
  try {
    while (i < lines.length) {
      const line = lines[i];
      if (empty(line)) {
        i++;
        continue;
      }
      const key = TOP_KEY.exec(line.trimEnd());
      if (!key || Object.hasOwn(doc, key[1])) return null;
      // The block under this key: every line up to the next one at column 0 that holds something.
      let end = i + 1;
      while (end < lines.length && (empty(lines[end]) ? true : lines[end][0] === ' ' || lines[end][0] === '-')) end++;
      // A trailing comment that sits at column 0 belongs to no block: fine, but the block ends there.
      const inline = key[2] === undefined ? '' : key[2].trim();
      if (inline !== '' && inline[0] !== '#') {
        // A value on the key's own line (a scalar, a flow collection, maybe over several lines).
        doc[key[1]] = (parsePiece(slice(lines, i, end), prev, next) as Record<string, unknown>)[key[1]];
        i = end;
        continue;
      }
      const first = lines.slice(i + 1, end).findIndex((l) => !empty(l));
      if (first < 0) {
        doc[key[1]] = null;
        i = end;
        continue;
      }
      const start = i + 1 + first;
      const indent = lines[start].length - lines[start].trimStart().length;
      const isItem = (l: string) =>
        l.length > indent &&
        l.startsWith('-', indent) &&
        (l.length === indent + 1 || l[indent + 1] === ' ') &&
        l.slice(0, indent).trim() === '';
      if (!isItem(lines[start])) {
        // A mapping (or anything else) under the key: one piece.
        doc[key[1]] = (parsePiece(slice(lines, i, end), prev, next) as Record<string, unknown>)[key[1]];
        i = end;
        continue;
      }
      // A block sequence: one piece per item, each from its "- " to the next one.
      const items: unknown[] = [];
      let from = start;
      for (let k = start + 1; k <= end; k++) {
        if (k < end) {
          const l = lines[k];
          if (empty(l)) continue;
          const lead = l.length - l.trimStart().length;
          if (lead < indent) return null; // less indented than the items, yet inside the block
          if (lead > indent || !isItem(l)) continue;
        }
        const piece = parsePiece(slice(lines, from, k), prev, next);
        if (!Array.isArray(piece) || piece.length !== 1) return null;
        items.push(piece[0]);
        from = k;
      }
      doc[key[1]] = items;
      i = end;
    }
  } catch {
    return null;
  }
  return doc;
}
